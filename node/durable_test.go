package node

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/squallhq/squall/api"
	"github.com/squallhq/squall/internal/testutil"
)

// A data directory is refused, with a clear error, when it belongs to
// another cluster, was written with another partition count or format,
// holds something else, or is in use by another node.
func TestDataDirIdentity(t *testing.T) {
	dir := t.TempDir()
	d, err := openDataDir(dir, "prod", 8)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := openDataDir(dir, "prod", 8); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Fatalf("second open while locked: %v", err)
	}
	d.close()
	if d, err = openDataDir(dir, "prod", 8); err != nil {
		t.Fatalf("reopen: %v", err)
	}
	d.close()
	for _, c := range []struct {
		cluster    string
		partitions int
		want       string
	}{
		{"staging", 8, `belongs to cluster "prod", not "staging"`},
		{"prod", 16, "written with 8 partitions, not 16"},
	} {
		if _, err := openDataDir(dir, c.cluster, c.partitions); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("open as %s/%d: %v, want %q", c.cluster, c.partitions, err, c.want)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, identityFile), []byte(`{"format":99,"cluster":"prod","partitions":8}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := openDataDir(dir, "prod", 8); err == nil || !strings.Contains(err.Error(), "format 99") {
		t.Errorf("another format: %v", err)
	}
	other := t.TempDir()
	if err := os.WriteFile(filepath.Join(other, "notes.txt"), []byte("mine"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := openDataDir(other, "prod", 8); err == nil || !strings.Contains(err.Error(), "not a Squall data directory") {
		t.Errorf("a directory of something else: %v", err)
	}
}

// Through New: the node refuses to start on another cluster's data.
func TestNodeRefusesForeignDataDir(t *testing.T) {
	dir := t.TempDir()
	n := startNode(t, func(c *Config) { c.DataDir, c.Cluster = dir, "a" })
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig()
	cfg.HTTPAddr, cfg.NATSAddr, cfg.Partitions, cfg.DataDir, cfg.Cluster = "127.0.0.1:0", "127.0.0.1:0", 8, dir, "b"
	if _, err := New(cfg, slog.New(slog.NewTextHandler(io.Discard, nil))); err == nil || !strings.Contains(err.Error(), `belongs to cluster "a"`) {
		t.Fatalf("New on another cluster's data dir: %v", err)
	}
}

// A log that cannot take more (its byte bound reached, as a full disk
// would) refuses events with 503 and Retry-After, marked retry, and says
// why in the log; every event it accepted before is applied.
func TestDurableLogFull(t *testing.T) {
	var logs testutil.LogBuffer
	cfg := DefaultConfig()
	cfg.HTTPAddr, cfg.NATSAddr, cfg.Partitions = "127.0.0.1:0", "127.0.0.1:0", 2
	cfg.DataDir, cfg.LogMaxBytes = t.TempDir(), 64<<10
	n, err := New(cfg, slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	now := time.Now().UnixMilli()
	accepted := 0
	for i := 0; ; i++ {
		if i > 1000 {
			t.Fatal("the log never filled")
		}
		var body strings.Builder
		for j := range 50 {
			fmt.Fprintf(&body, `{"key":"k%d","ts":%d,"value":1,"id":"%d-%d"}`+"\n", j%4, now, i, j)
		}
		resp, err := http.Post("http://"+n.HTTPAddr()+api.PathEvents, "application/x-ndjson", strings.NewReader(body.String()))
		if err != nil {
			t.Fatal(err)
		}
		var r api.IngestResponse
		_ = json.NewDecoder(resp.Body).Decode(&r)
		resp.Body.Close()
		accepted += r.Accepted
		if resp.StatusCode == http.StatusAccepted {
			continue
		}
		if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" ||
			len(r.Rejected) == 0 || !r.Rejected[len(r.Rejected)-1].Retry {
			t.Fatalf("full log: %d (Retry-After %q) %+v, want 503 with the events marked retry", resp.StatusCode, resp.Header.Get("Retry-After"), r)
		}
		break
	}
	if !strings.Contains(logs.String(), "events not stored") {
		t.Errorf("the log does not say why:\n%s", logs.String())
	}
	testutil.Eventually(t, 30*time.Second, func() bool {
		total := 0
		for j := range 4 {
			if st, err := n.Get(context.Background(), fmt.Sprintf("k%d", j)); err == nil {
				total += int(st.EventsApplied)
			}
		}
		return total == accepted
	}, "not every accepted event was applied (%d accepted)", accepted)
}
