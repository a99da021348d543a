package node

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/squallhq/squall/api"
	"github.com/squallhq/squall/internal/natstest"
	"github.com/squallhq/squall/internal/testutil"
	"github.com/squallhq/squall/internal/zktest"
)

// assertNoSecret fails t when text contains any of secrets.
func assertNoSecret(t *testing.T, where, text string, secrets ...string) {
	t.Helper()
	for _, s := range secrets {
		if strings.Contains(text, s) {
			t.Errorf("%s shows the secret %q:\n%s", where, s, text)
		}
	}
}

// getAll fetches the node's endpoints (with the token) and returns what
// each answered.
func getAll(t *testing.T, n *Node, token string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, p := range []string{api.PathCluster, api.PathMetrics, api.PathHealthz, api.PathReadyz, api.PathAlerts,
		api.PathActors, api.PathActor + "k", api.PathPprof + "cmdline", "/ui/", "/no-such-path"} {
		req, _ := http.NewRequest(http.MethodGet, "http://"+n.HTTPAddr()+p, nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		out[p] = resp.Status + "\n" + string(b)
	}
	return out
}

// A node with every secret set prints none of them: not in its log (at
// debug level), nor in any endpoint's answer.
func TestNoSecretPrinted(t *testing.T) {
	const (
		httpTok = "SECRET-http-7f3a"
		natsPW  = "SECRET-natspw-91c2"
		natsTok = "SECRET-natstok-55d1"
		urlPW   = "SECRET-urlpw-0b8e"
		kafkaPW = "SECRET-kafka-3e6f"
		zkPW    = "SECRET-zk-c4d9"
	)
	z := zktest.Start(t)
	kc, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(4, "events"),
		kfake.EnableSASL(), kfake.Superuser("SCRAM-SHA-256", "squall", kafkaPW))
	if err != nil {
		t.Fatal(err)
	}
	defer kc.Close()
	ext := natstest.StartWith(t, &server.Options{Users: []*server.User{{Username: "squall", Password: urlPW}}})
	extURL := strings.Replace(ext.ClientURL(), "nats://", "nats://squall:"+urlPW+"@", 1)

	for _, c := range []struct {
		name string
		mod  func(*Config)
	}{
		{"cluster-kafka-nats-user", func(c *Config) {
			c.ZK, c.ZKDigest, c.Cluster, c.NodeID = z.Addr(), "squall:"+zkPW, "secrets", "n1"
			c.KafkaBrokers, c.KafkaTopic = kc.ListenAddrs()[0], "events"
			c.KafkaSASLUser, c.KafkaSASLPassword, c.KafkaSASLMechanism = "squall", kafkaPW, "SCRAM-SHA-256"
			c.NATSUser, c.NATSPassword = "squall", natsPW
		}},
		{"nats-token", func(c *Config) { c.NATSToken = natsTok }},
		{"nats-url-password", func(c *Config) { c.NATSURL = extURL }},
	} {
		t.Run(c.name, func(t *testing.T) {
			var logs testutil.LogBuffer
			cfg := DefaultConfig()
			cfg.DataDir = "" // memory only: answers once applied
			cfg.HTTPAddr, cfg.NATSAddr, cfg.Partitions, cfg.AuthToken = "127.0.0.1:0", "127.0.0.1:0", 4, httpTok
			cfg.Rules = writeRules(t)
			cfg.Pprof = true // /debug/pprof/cmdline shows the command line: secrets given as flags
			c.mod(&cfg)
			args := os.Args
			t.Cleanup(func() { os.Args = args })
			os.Args = append(append([]string(nil), args...), "--auth-token", httpTok, "--nats-password="+natsPW,
				"--nats-token", natsTok, "--nats-url", extURL, "--kafka-sasl-password", kafkaPW, "--zk-digest", "squall:"+zkPW)
			n, err := New(cfg, slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
			if err != nil {
				t.Fatal(err)
			}
			testutil.Eventually(t, 30*time.Second, func() bool {
				req, _ := http.NewRequest(http.MethodGet, "http://"+n.HTTPAddr()+api.PathReadyz, nil)
				req.Header.Set("Authorization", "Bearer "+httpTok) // /readyz needed it once
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					return false
				}
				resp.Body.Close()
				return resp.StatusCode == http.StatusOK
			}, "node not ready")
			if _, err := n.in.Ingest(context.Background(), "http", []byte(`{"key":"k","value":99}`), ""); err != nil {
				t.Fatal(err)
			}
			all := getAll(t, n, httpTok)
			if !strings.HasPrefix(all[api.PathPprof+"cmdline"], "200") || !strings.Contains(all[api.PathPprof+"cmdline"], "--kafka-sasl-password") {
				t.Fatalf("/debug/pprof/cmdline: %q", all[api.PathPprof+"cmdline"])
			}
			for p, body := range all {
				assertNoSecret(t, p, body, httpTok, natsPW, natsTok, urlPW, kafkaPW, zkPW)
			}
			if err := n.Close(); err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(logs.String(), "squall node started") {
				t.Fatalf("no start line in\n%s", logs.String())
			}
			assertNoSecret(t, "the log", logs.String(), httpTok, natsPW, natsTok, urlPW, kafkaPW, zkPW)
		})
	}
}

// Errors never show a secret, such as the password in a NATS URL, even
// when the URL cannot be parsed; nor does -h, whatever was set.
func TestNoSecretInErrors(t *testing.T) {
	for _, url := range []string{
		"nats://squall:SECRET-pw-1@127.0.0.1:1",
		"nats://SECRET-tok-2@127.0.0.1:1",
		"nats://squall:SECRET%zz-3@127.0.0.1:1",
		"nats://127.0.0.1:1,nats://squall:SECRET-pw-4@127.0.0.1:1",
	} {
		cfg := DefaultConfig()
		cfg.DataDir = "" // memory only: answers once applied
		cfg.HTTPAddr, cfg.NATSURL, cfg.Partitions = "127.0.0.1:0", url, 2
		n, err := New(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
		if err == nil {
			n.Close()
			t.Fatalf("%s: connected", url)
		}
		if strings.Contains(err.Error(), "SECRET") || !strings.Contains(err.Error(), "--nats-url") {
			t.Errorf("New with --nats-url %s: %v", url, err)
		}
	}

	var usage bytes.Buffer
	_, err := Load([]string{"--auth-token", "SECRET-a", "--zk-digest", "u:SECRET-b", "-h"},
		env(map[string]string{"SQUALL_KAFKA_SASL_PASSWORD": "SECRET-c", "SQUALL_NATS_TOKEN": "SECRET-d"}), &usage)
	if !errors.Is(err, flag.ErrHelp) || !strings.Contains(usage.String(), "-nats-token-file") {
		t.Fatalf("-h: %v\n%s", err, usage.String())
	}
	assertNoSecret(t, "-h", usage.String(), "SECRET")
	_, err = Load([]string{"--zk", "127.0.0.1:2181", "--zk-digest", "SECRET-e", "--nats-user", "u", "--nats-password", "SECRET-f",
		"--nats-token", "SECRET-g"}, env(nil), io.Discard)
	if err == nil {
		t.Fatal("invalid config loaded")
	}
	assertNoSecret(t, "config errors", err.Error(), "SECRET")
}
