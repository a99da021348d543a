package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/squallhq/squall/client"
)

// Defaults of the global options.
const (
	defaultServer  = "http://127.0.0.1:8080"
	defaultTimeout = 10 * time.Second
	defaultNATS    = "nats://127.0.0.1:4222"
)

// Environment variables read for the options' defaults.
const (
	envServer = "SQUALL_SERVER"
	envToken  = "SQUALL_TOKEN"
	envNATS   = "SQUALL_NATS"
	// envKafkaPassword is the SASL/SCRAM password of replay --from-log.
	envKafkaPassword = "SQUALL_KAFKA_SASL_PASSWORD"
)

// Output formats (-o).
const (
	outTable = "table"
	outJSON  = "json"
	outYAML  = "yaml"
)

// Exit statuses.
const (
	exitOK    = 0
	exitFail  = 1 // the command failed, or found a problem (rejected events, an invalid rules file)
	exitUsage = 2 // the command line is wrong
)

// usageError is a mistake on the command line.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

// app holds the global options and the streams of one run.
type app struct {
	in          io.Reader
	out, errOut io.Writer

	server    string
	token     string
	tokenFile string
	output    string
	timeout   time.Duration
}

// run executes squallctl with args and returns the exit status.
func run(ctx context.Context, args []string, in io.Reader, out, errOut io.Writer) int {
	a := &app{in: in, out: out, errOut: errOut}
	root := a.rootCommand()
	root.SetArgs(args)
	root.SetIn(in)
	root.SetOut(out)
	root.SetErr(errOut)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return exitOK
	}
	fmt.Fprintln(errOut, "squallctl:", err)
	var ue usageError
	if errors.As(err, &ue) || strings.HasPrefix(err.Error(), "unknown command") {
		fmt.Fprintln(errOut, `Run "squallctl --help" for usage.`)
		return exitUsage
	}
	return exitFail
}

func (a *app) rootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:   "squallctl",
		Short: "The command line of Squall: send events, inspect keys, the cluster and alerts",
		Long: `squallctl talks to a Squall node over its HTTP API (and NATS for "send --nats"
and "alerts tail"). Any node of a cluster answers for the whole cluster.`,
		Example: `  squallctl send web-1.cpu=40 web-1.cpu=60
  squallctl get web-1.cpu
  squallctl --server http://10.0.0.5:8080 --token-file /etc/squall/token cluster
  SQUALL_SERVER=http://10.0.0.5:8080 squallctl keys --prefix web- -o json`,
		SilenceErrors: true,
		SilenceUsage:  true,
		PersistentPreRunE: func(*cobra.Command, []string) error {
			switch a.output {
			case outTable, outJSON, outYAML:
			default:
				return usageError{fmt.Errorf("-o %q: want table, json or yaml", a.output)}
			}
			if a.token != "" && a.tokenFile != "" {
				return usageError{errors.New("give --token or --token-file, not both")}
			}
			if a.timeout <= 0 {
				return usageError{fmt.Errorf("--timeout %v: want a positive duration", a.timeout)}
			}
			return nil
		},
	}
	root.CompletionOptions.DisableDefaultCmd = true // see completionCommand
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	f := root.PersistentFlags()
	f.StringVar(&a.server, "server", envOr(envServer, defaultServer), "the node's HTTP API (env "+envServer+")")
	f.StringVar(&a.token, "token", "", "bearer token of the HTTP API (env "+envToken+")")
	f.StringVar(&a.tokenFile, "token-file", "", "read the bearer token from this file")
	f.StringVarP(&a.output, "output", "o", outTable, "output format: table, json or yaml")
	f.DurationVar(&a.timeout, "timeout", defaultTimeout, "how long one request to the node may take")

	root.AddGroup(
		&cobra.Group{ID: "events", Title: "Events and keys:"},
		&cobra.Group{ID: "ops", Title: "Cluster and alerts:"},
		&cobra.Group{ID: "offline", Title: "Offline (no node needed):"},
	)
	add := func(group string, cmds ...*cobra.Command) {
		for _, c := range cmds {
			c.GroupID = group
			root.AddCommand(c)
		}
	}
	// The "events" group holds the commands that work on keys.
	add("events", a.sendCommand(), a.getCommand(), a.keysCommand(), a.replayCommand())
	add("ops", a.clusterCommand(), a.alertsCommand())
	add("offline", a.rulesCommand(), a.completionCommand())
	root.SetHelpCommandGroupID("offline")
	return root
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// bearer returns the token: --token, else the file of --token-file, else
// $SQUALL_TOKEN.
func (a *app) bearer() (string, error) {
	switch {
	case a.token != "":
		return a.token, nil
	case a.tokenFile != "":
		b, err := os.ReadFile(a.tokenFile)
		if err != nil {
			return "", fmt.Errorf("--token-file: %w", err)
		}
		tok := strings.TrimSpace(string(b))
		if tok == "" {
			return "", fmt.Errorf("--token-file %s: the file is empty", a.tokenFile)
		}
		return tok, nil
	}
	return os.Getenv(envToken), nil
}

// client returns a client of the node at base (--server when ""), with the
// token and --timeout per request.
func (a *app) client(base string, opts ...client.Option) (*client.Client, error) {
	if base == "" {
		base = a.server
	}
	tok, err := a.bearer()
	if err != nil {
		return nil, err
	}
	opts = append([]client.Option{client.WithToken(tok), client.WithHTTPClient(&http.Client{Timeout: a.timeout})}, opts...)
	c, err := client.New(base, opts...)
	if err != nil {
		return nil, usageError{fmt.Errorf("--server: %w", err)}
	}
	return c, nil
}

// request returns a context for one request: ctx bounded by --timeout.
func (a *app) request(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, a.timeout)
}

// exactArgs is cobra.ExactArgs whose error is a usage error.
func exactArgs(n int) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if err := cobra.ExactArgs(n)(cmd, args); err != nil {
			return usageError{err}
		}
		return nil
	}
}

// noArgs is cobra.NoArgs whose error is a usage error.
func noArgs(cmd *cobra.Command, args []string) error {
	if err := cobra.NoArgs(cmd, args); err != nil {
		return usageError{err}
	}
	return nil
}

func (a *app) completionCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "completion bash|zsh|fish",
		Short: "Print the shell completion script",
		Example: `  source <(squallctl completion bash)
  squallctl completion zsh > "${fpath[1]}/_squallctl"
  squallctl completion fish > ~/.config/fish/completions/squallctl.fish`,
		ValidArgs: []string{"bash", "zsh", "fish"},
		Args: func(cmd *cobra.Command, args []string) error {
			if err := cobra.MatchAll(cobra.ExactArgs(1), cobra.OnlyValidArgs)(cmd, args); err != nil {
				return usageError{err}
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			root := cmd.Root()
			switch args[0] {
			case "bash":
				return root.GenBashCompletionV2(a.out, true)
			case "zsh":
				return root.GenZshCompletion(a.out)
			default:
				return root.GenFishCompletion(a.out, true)
			}
		},
	}
}
