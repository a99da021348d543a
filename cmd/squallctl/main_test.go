package main

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"go.uber.org/goleak"

	"github.com/squallhq/squall/internal/testutil"
	"github.com/squallhq/squall/node"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// startNode starts a memory-only standalone node "n1" with 4 partitions on
// random ports; mod may change its config.
func startNode(t *testing.T, mod func(*node.Config)) *node.Node {
	t.Helper()
	t.Setenv(envServer, "")
	t.Setenv(envToken, "")
	t.Setenv(envNATS, "")
	cfg := node.DefaultConfig()
	cfg.HTTPAddr, cfg.NATSAddr = "127.0.0.1:0", "127.0.0.1:0"
	cfg.DataDir = "" // memory only: answers once applied, with late and duplicate
	cfg.NodeID = "n1"
	cfg.Partitions = 4
	if mod != nil {
		mod(&cfg)
	}
	n, err := node.New(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = n.Close() })
	return n
}

// withRules returns a config change that loads a rules file with one rule:
// high-cpu, max over 1m of "*.cpu" above 90, severity page.
func withRules(t *testing.T) func(*node.Config) {
	t.Helper()
	f := writeFile(t, "rules.yaml", `rules:
  - {name: high-cpu, match: "*.cpu", aggregate: max, over: 1m, op: ">", threshold: 90, severity: page}
`)
	return func(c *node.Config) { c.Rules = f }
}

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	f := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(f, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return f
}

// result is one run of squallctl.
type result struct {
	out, err string
	code     int
}

// ctl runs squallctl against n with stdin and args.
func ctl(t *testing.T, n *node.Node, stdin string, args ...string) result {
	t.Helper()
	if n != nil {
		args = append([]string{"--server", "http://" + n.HTTPAddr()}, args...)
	}
	var out, errOut bytes.Buffer
	code := run(context.Background(), args, strings.NewReader(stdin), &out, &errOut)
	return result{out.String(), errOut.String(), code}
}

// background runs squallctl until stop is called; stop returns its exit
// status.
func background(t *testing.T, n *node.Node, args ...string) (out, errOut *testutil.LogBuffer, stop func() int) {
	t.Helper()
	args = append([]string{"--server", "http://" + n.HTTPAddr()}, args...)
	out, errOut = new(testutil.LogBuffer), new(testutil.LogBuffer)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	go func() { done <- run(ctx, args, strings.NewReader(""), out, errOut) }()
	var once sync.Once
	code := -1
	stop = func() int {
		once.Do(func() { cancel(); code = <-done })
		return code
	}
	t.Cleanup(func() { stop() })
	return out, errOut, stop
}

// expect fails the test unless r has the exit status code and stdout has
// every one of want.
func expect(t *testing.T, r result, code int, want ...string) {
	t.Helper()
	if r.code != code {
		t.Fatalf("exit status %d, want %d\nstdout:\n%s\nstderr:\n%s", r.code, code, r.out, r.err)
	}
	for _, w := range want {
		if !strings.Contains(r.out, w) {
			t.Fatalf("stdout lacks %q:\n%s\nstderr:\n%s", w, r.out, r.err)
		}
	}
}

// fields returns the line of s whose first field is first, split in fields.
func fields(t *testing.T, s, first string) []string {
	t.Helper()
	for _, l := range strings.Split(s, "\n") {
		if f := strings.Fields(l); len(f) > 0 && f[0] == first {
			return f
		}
	}
	t.Fatalf("no line starts with %q in:\n%s", first, s)
	return nil
}
