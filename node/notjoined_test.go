package node

import (
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/squallhq/squall/internal/testutil"
)

// A clustered node that cannot reach ZooKeeper is alive but not ready,
// says why, refuses events at once with 503 and Retry-After (not after the
// routing deadline, not with 400), and logs the ZooKeeper client's errors.
func TestNotJoinedNodeAnswers503(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	zk := ln.Addr().String()
	ln.Close() // nothing listens there now

	var logs testutil.LogBuffer
	cfg := DefaultConfig()
	cfg.DataDir = "" // memory only: answers once applied
	cfg.HTTPAddr, cfg.NATSAddr, cfg.RemoteAddr = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
	cfg.Partitions = 8
	cfg.ZK = zk
	n, err := New(cfg, slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	base := "http://" + n.HTTPAddr()
	get := func(path string) (int, string) {
		t.Helper()
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode == 503 && resp.Header.Get("Retry-After") == "" {
			t.Errorf("GET %s: 503 without Retry-After", path)
		}
		return resp.StatusCode, string(b)
	}
	if code, b := get("/healthz"); code != 200 {
		t.Fatalf("/healthz = %d %s", code, b)
	}
	if code, b := get("/readyz"); code != 503 || !strings.Contains(b, "zookeeper") {
		t.Fatalf("/readyz = %d %s, want 503 naming zookeeper", code, b)
	}
	if v := gauge(t, n, "squall_ready"); v != 0 {
		t.Fatalf("squall_ready = %v on a node not joined", v)
	}
	start := time.Now()
	resp, err := http.Post(base+"/v1/events", "application/json", strings.NewReader(`{"key":"a","value":1}`))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	took := time.Since(start)
	if resp.StatusCode != 503 || resp.Header.Get("Retry-After") == "" || !strings.Contains(string(b), "not joined") {
		t.Fatalf("POST = %d (Retry-After %q) %s, want 503 not joined", resp.StatusCode, resp.Header.Get("Retry-After"), b)
	}
	// The property itself: no wait for an owner (the deadline is 17 s).
	if limit := n.cl.routeDeadline() / 4; took > limit {
		t.Fatalf("POST answered after %s, want at once (under %s)", took, limit)
	}
	if code, b := get("/debug/actors/a"); code != 503 || !strings.Contains(b, "not joined") {
		t.Fatalf("GET key = %d %s", code, b)
	}
	testutil.Eventually(t, 10*time.Second, func() bool {
		return strings.Contains(logs.String(), "level=WARN msg=\"zookeeper client: ") && strings.Contains(logs.String(), zk)
	}, "the ZooKeeper client's errors are not logged:\n%s", logs.String())
}

// --pprof serves /debug/pprof/ (off by default), and a node listening
// beyond loopback without a token warns at start.
func TestPprofFlagAndExposureWarning(t *testing.T) {
	status := func(n *Node, path string) int {
		t.Helper()
		resp, err := http.Get("http://" + n.HTTPAddr() + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	var logs testutil.LogBuffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	quiet := startNode(t, nil)
	if code := status(quiet, "/debug/pprof/"); code != 404 {
		t.Fatalf("pprof without --pprof = %d", code)
	}

	cfg := DefaultConfig()
	cfg.DataDir = "" // memory only: answers once applied
	cfg.HTTPAddr, cfg.NATSAddr, cfg.Partitions, cfg.Pprof = "0.0.0.0:0", "127.0.0.1:0", 8, true
	n, err := New(cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	if code := status(n, "/debug/pprof/"); code != 200 {
		t.Fatalf("pprof with --pprof = %d", code)
	}
	if !strings.Contains(logs.String(), "level=WARN") || !strings.Contains(logs.String(), "without a token") {
		t.Fatalf("no warning for 0.0.0.0 without a token:\n%s", logs.String())
	}
	loopback := cfg
	loopback.HTTPAddr = "127.0.0.1:0"
	var quietLogs testutil.LogBuffer
	m, err := New(loopback, slog.New(slog.NewTextHandler(&quietLogs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if strings.Contains(quietLogs.String(), "without a token") {
		t.Fatalf("warning on loopback:\n%s", quietLogs.String())
	}
}
