package transport

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/squallhq/squall/actors"
	"github.com/squallhq/squall/api"
)

// childEnv, when set, makes TestChildPeer run as the peer process of
// TestChildProcessPeer.
const childEnv = "SQUALL_TRANSPORT_TEST_CHILD"

// childReport is what the peer process saw.
type childReport struct {
	Events int            `json:"events"`
	From   map[string]int `json:"from"`
	Chunks int            `json:"chunks"`
	Keys   int            `json:"keys"`
	Lasts  int            `json:"lasts"`
	// Ordered is true when the handoff's keys arrived in order.
	Ordered bool                     `json:"ordered"`
	Peers   map[string]api.PeerStats `json:"peers"`
}

// TestChildPeer is not a test of its own: it is the peer process of
// TestChildProcessPeer. It serves a Transport with a fakeHandler, prints
// "child-addr <addr>", answers each "report" line on stdin with a
// "child-report <json>" line, and closes when stdin does.
func TestChildPeer(t *testing.T) {
	if os.Getenv(childEnv) == "" {
		t.Skip("the peer process of TestChildProcessPeer")
	}
	h := &fakeHandler{states: map[string]*api.KeyState{"k1": {Key: "k1", Node: "child"}}}
	cfg := DefaultConfig()
	cfg.NodeID, cfg.Logger, cfg.MaxMessageBytes = "child", quietLogger(), MinMaxMessageBytes
	tr, err := Start(cfg, h)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Printf("child-addr %s\n", tr.Addr())
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		if sc.Text() != "report" {
			continue
		}
		h.mu.Lock()
		rep := childReport{Events: len(h.events), From: h.from, Chunks: len(h.chunks), Ordered: true, Peers: tr.Peers()}
		prev := ""
		for _, c := range h.chunks {
			rep.Keys += len(c.keys)
			if c.last {
				rep.Lasts++
			}
			for _, k := range c.keys {
				rep.Ordered = rep.Ordered && k.Key > prev
				prev = k.Key
			}
		}
		b, err := json.Marshal(rep)
		h.mu.Unlock()
		if err != nil {
			t.Fatal(err)
		}
		fmt.Printf("child-report %s\n", b)
	}
	if err := tr.Close(); err != nil {
		t.Fatal(err)
	}
}

// child is a peer process.
type child struct {
	addr   string
	stdin  interface{ Write([]byte) (int, error) }
	lines  chan string
	stderr *bytes.Buffer
}

// startChild starts TestChildPeer in a child process and returns once it
// listens; the cleanup closes its stdin and checks that it exited cleanly
// (no race, no leaked goroutine).
func startChild(t *testing.T) *child {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestChildPeer$", "-test.count=1", "-test.timeout=5m")
	cmd.Env = append(os.Environ(), childEnv+"=1")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	c := &child{stdin: stdin, lines: make(chan string, 16), stderr: &bytes.Buffer{}}
	cmd.Stderr = c.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var out []string // the child's other output, for a failure message
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer close(c.lines)
		sc := bufio.NewScanner(stdout)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			if l := sc.Text(); strings.HasPrefix(l, "child-") {
				c.lines <- l
			} else {
				out = append(out, l)
			}
		}
	}()
	t.Cleanup(func() {
		stdin.Close()
		for range c.lines { // drain until the child closes stdout
		}
		wg.Wait()
		if err := cmd.Wait(); err != nil {
			t.Errorf("child process: %v\nstdout:\n%s\nstderr:\n%s", err, strings.Join(out, "\n"), c.stderr)
		}
	})
	l := c.line(t, "child-addr ")
	c.addr = l
	return c
}

// line waits for the child's next line with prefix and returns the rest.
func (c *child) line(t *testing.T, prefix string) string {
	t.Helper()
	select {
	case l, ok := <-c.lines:
		if !ok || !strings.HasPrefix(l, prefix) {
			t.Fatalf("child: got %q, want a line %q…\nstderr:\n%s", l, prefix, c.stderr)
		}
		return strings.TrimPrefix(l, prefix)
	case <-time.After(30 * time.Second):
		t.Fatalf("child: no %q line in 30s", prefix)
	}
	return ""
}

func (c *child) report(t *testing.T) childReport {
	t.Helper()
	if _, err := c.stdin.Write([]byte("report\n")); err != nil {
		t.Fatal(err)
	}
	var rep childReport
	if err := json.Unmarshal([]byte(c.line(t, "child-report ")), &rep); err != nil {
		t.Fatal(err)
	}
	return rep
}

// TestChildProcessPeer runs every kind of request, concurrently, against a
// peer in a child process: the wire between two processes, and this
// process's Transport closing while the peer's connection ends.
func TestChildProcessPeer(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a child process")
	}
	peer := startChild(t)
	cfg := DefaultConfig()
	cfg.NodeID, cfg.Logger, cfg.MaxMessageBytes = "parent", quietLogger(), MinMaxMessageBytes
	tr, err := Start(cfg, &fakeHandler{})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := tr.Close(); err != nil {
			t.Error(err)
		}
	}()
	ctx := context.Background()

	// Concurrent Forwards, each split into chunks of ~60 KiB.
	const workers, rounds, batch = 4, 5, 5000
	evs := makeEvents(batch)
	errs := make(chan error, workers)
	for range workers {
		go func() {
			out := make([]actors.Result, batch)
			for range rounds {
				if err := tr.Forward(ctx, "child", peer.addr, evs, out); err != nil {
					errs <- err
					return
				}
				for i := range evs {
					if want := resultOfEvent(&evs[i]); out[i] != want {
						errs <- fmt.Errorf("out[%d] = %s, want %s", i, out[i], want)
						return
					}
				}
			}
			errs <- nil
		}()
	}
	// Meanwhile, the other requests.
	if _, err := tr.KeyState(ctx, peer.addr, "k1"); err != nil {
		t.Error(err)
	}
	if _, err := tr.KeyState(ctx, peer.addr, "nope"); !errors.Is(err, actors.ErrNotFound) {
		t.Errorf("KeyState(nope) = %v, want ErrNotFound", err)
	}
	if kl, err := tr.List(ctx, peer.addr, "", "", 10); err != nil || len(kl.Keys) != 1 {
		t.Errorf("List = %+v, %v", kl, err)
	}
	keys := make([]actors.KeySnapshot, 3000)
	for i := range keys {
		keys[i] = actors.KeySnapshot{Key: fmt.Sprintf("key-%05d", i), Window: make([]byte, 1024), Activated: time.UnixMilli(int64(i + 1))}
	}
	if err := tr.Handoff(ctx, "child", peer.addr, 5, 1, nil, keys); err != nil {
		t.Error(err)
	}
	for range workers {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}

	rep := peer.report(t)
	total := workers * rounds * batch
	if rep.Events != total || rep.From["parent"] != total {
		t.Errorf("child got %d events (%v), want %d", rep.Events, rep.From, total)
	}
	if rep.Keys != len(keys) || rep.Lasts != 1 || !rep.Ordered || rep.Chunks < 40 {
		t.Errorf("handoff: child got %d keys in %d chunks, %d last, ordered %v", rep.Keys, rep.Chunks, rep.Lasts, rep.Ordered)
	}
	mine, theirs := tr.Peers()["child"], rep.Peers["parent"]
	if mine.EventsSent != uint64(total) || theirs.EventsReceived != uint64(total) ||
		mine.BytesSent != theirs.BytesReceived || mine.BytesReceived != theirs.BytesSent {
		t.Errorf("traffic disagrees: parent sees %+v, child sees %+v", mine, theirs)
	}
}
