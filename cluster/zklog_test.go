package cluster

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/squallhq/squall/internal/testutil"
)

// The client's lines reach the node's log at Warn, one per format per
// zkLogEvery, with a count of those dropped.
func TestZKLoggerRateLimit(t *testing.T) {
	var buf bytes.Buffer
	clock := testutil.NewClock(time.Unix(1000, 0))
	l := newZKLogger(slog.New(slog.NewTextHandler(&buf, nil)), clock.Now)
	for i := 0; i < 5; i++ {
		l.Printf("failed to connect to %s: %v", "127.0.0.1:1", "connection refused")
	}
	l.Printf("authentication failed: %s", "EOF")
	clock.Advance(zkLogEvery)
	l.Printf("failed to connect to %s: %v", "127.0.0.1:1", "connection refused")

	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	want := []string{
		`level=WARN msg="zookeeper client: failed to connect to 127.0.0.1:1: connection refused"`,
		`level=WARN msg="zookeeper client: authentication failed: EOF"`,
		`level=WARN msg="zookeeper client: failed to connect to 127.0.0.1:1: connection refused" similar_dropped=4`,
	}
	if len(lines) != len(want) {
		t.Fatalf("logged %d lines, want %d:\n%s", len(lines), len(want), buf.String())
	}
	for i, w := range want {
		if !strings.HasSuffix(lines[i], w) {
			t.Errorf("line %d = %s\nwant suffix %s", i, lines[i], w)
		}
	}
}
