package main

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/squallhq/squall/rules"
	"github.com/squallhq/squall/window"
)

func (a *app) rulesCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:     "rules",
		Short:   "Work with alert rules files",
		Example: "  squallctl rules check rules.yaml",
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usageError{fmt.Errorf("unknown command %q for %q", args[0], cmd.CommandPath())}
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	def := window.DefaultShape()
	var retention, resolution time.Duration
	check := &cobra.Command{
		Use:   "check FILE",
		Short: "Validate a rules file offline, with the node's own parser",
		Long: `Validate a rules file (docs/rules.md) with the parser the node runs, without a
node: every problem is printed as FILE:LINE: RULE: PROBLEM, and the exit status
is 1 when there is any. Each rule's "over" must also fit the node's window:
give --retention and --resolution when the node does not use the defaults.`,
		Example: `  squallctl rules check /etc/squall/rules.yaml
  squallctl rules check rules.yaml --retention 30m --resolution 5s`,
		Args: exactArgs(1),
		RunE: func(_ *cobra.Command, args []string) error {
			shape := def
			shape.Retention, shape.Resolution = retention, resolution
			if err := shape.Validate(); err != nil {
				return usageError{fmt.Errorf("--retention/--resolution: %w", err)}
			}
			set, err := rules.Load(args[0])
			if err == nil {
				err = set.CheckShape(&shape)
			}
			if err != nil {
				var list []error
				if j, ok := err.(interface{ Unwrap() []error }); ok {
					list = j.Unwrap()
				} else {
					list = []error{err}
				}
				for _, e := range list {
					fmt.Fprintln(a.out, e)
				}
				if !errors.Is(err, rules.ErrInvalid) {
					return err
				}
				return fmt.Errorf("%s: %s", args[0], plural(len(list), "problem"))
			}
			names := make([]string, len(set.Rules))
			for i, r := range set.Rules {
				names[i] = r.Name
			}
			fmt.Fprintf(a.out, "%s: valid, %s", args[0], plural(set.Len(), "rule"))
			if len(names) > 0 {
				fmt.Fprintf(a.out, ": %s", strings.Join(names, ", "))
			}
			fmt.Fprintln(a.out)
			return nil
		},
	}
	check.Flags().DurationVar(&retention, "retention", def.Retention, "the nodes' --retention")
	check.Flags().DurationVar(&resolution, "resolution", def.Resolution, "the nodes' --resolution")
	cmd.AddCommand(check)
	return cmd
}
