package cluster

import (
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	promtest "github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/squallhq/squall/internal/testutil"
	"github.com/squallhq/squall/internal/zktest"
)

// Failure 2: the session expires and the client reconnects with a new one
// at once (as after a SIGSTOP of the node or of ZooKeeper past the session
// timeout). The node must hear SessionLost, and say it is not joined,
// before anything on the new session.
func TestExpiredSessionIsLost(t *testing.T) {
	z := zktest.Start(t)
	proxy := startZKProxy(t, z.Addr())
	c1, r1 := startCoord(t, proxy.Addr(), "exp", "n1", "")
	c2, r2 := startCoord(t, z.Addr(), "exp", "n2", "")
	agreed(t, []*Coordinator{c1, c2}, []*recorder{r1, r2}, "n1", "n2")
	sid, passwd := proxy.Session()
	if sid == 0 || sid != c1.conn.SessionID() {
		t.Fatalf("proxy saw session %#x, n1 has %#x", sid, c1.conn.SessionID())
	}
	before := r1.count()

	// Expire n1's session while it cannot reach the server, then let it
	// reconnect: it is told the session expired and gets a new one at once,
	// well within its lease.
	proxy.Hold()
	proxy.Cut()
	if err := killSession(z.Addr(), sid, passwd, 3*time.Second); err != nil {
		t.Fatal(err)
	}
	proxy.Open()
	testutil.Eventually(t, 15*time.Second, func() bool {
		s := c1.conn.SessionID()
		return s != 0 && s != sid
	}, "n1 has no new session")
	testutil.Eventually(t, 15*time.Second, func() bool {
		ev := r1.since(before)
		return len(ev) >= 2 && strings.HasPrefix(ev[len(ev)-1], "apply")
	}, "n1 never applied an assignment on its new session: %v", r1.since(before))
	ev := r1.since(before)
	if ev[0] != "lost (zookeeper session lost)" {
		t.Fatalf("after expiry n1 heard %v; want SessionLost first, not joined", ev)
	}
	if ev[1] != "apply (waiting for an assignment)" {
		t.Fatalf("after SessionLost n1 heard %v; want an Apply while not joined", ev)
	}
	agreed(t, []*Coordinator{c1, c2}, []*recorder{r1, r2}, "n1", "n2")
	if ev := r1.since(before); countOf(ev, "lost") != 1 {
		t.Fatalf("SessionLost %d times: %v", countOf(ev, "lost"), ev)
	}
	if n := promtest.ToFloat64(c1.m.losses); n != 1 {
		t.Fatalf("squall_zk_session_losses_total = %v, want 1", n)
	}
}

// The lease: with the clock past lastHeard + SessionTimeout/2 the node may
// no longer act, at once, and the listener hears SessionLost once. The
// session still lives: the node joins again on it and is given its
// partitions again (the same assignment: a lapse that turns out harmless
// moves nothing).
func TestLeaseLapse(t *testing.T) {
	const timeout = 3 * time.Second
	z := zktest.Start(t)
	clock := testutil.NewClock(time.Now())
	c, r := startCoord(t, z.Addr(), "lease", "n1", "", func(cfg *Config) { cfg.now = clock.Now })
	first := agreed(t, []*Coordinator{c}, []*recorder{r}, "n1")
	sid := c.conn.SessionID()

	// The clock stands still, so the lease does: it ends half a timeout
	// after the newest answered request.
	heard := c.base.Add(time.Duration(c.heard.Load()))
	if !c.LeaseValid(clock.Now()) || !c.LeaseValid(heard.Add(timeout/2-1)) || c.LeaseValid(heard.Add(timeout/2)) {
		t.Fatalf("lease at %v: valid now %v, just before the end %v, at the end %v", heard,
			c.LeaseValid(clock.Now()), c.LeaseValid(heard.Add(timeout/2-1)), c.LeaseValid(heard.Add(timeout/2)))
	}

	// SessionLost waits for the test: until then the node cannot join again.
	entered, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	r.mu.Lock()
	r.onLost = func() {
		once.Do(func() { close(entered) })
		<-release
	}
	r.mu.Unlock()
	before := r.count()

	// As a process resumed after a SIGSTOP finds it: the time is up.
	clock.Set(heard.Add(timeout / 2))
	if c.LeaseValid(clock.Now()) {
		t.Fatal("lease valid past its end")
	}
	if joined, reason := c.Status(); joined || (reason != "lease lapsed: no answer from zookeeper for 1.5s" && reason != "zookeeper session lost") {
		t.Fatalf("Status() = %v, %q", joined, reason)
	}
	select {
	case <-entered:
	case <-time.After(10 * time.Second):
		t.Fatal("no SessionLost after the lease lapsed")
	}
	if c.LeaseValid(clock.Now()) {
		t.Fatal("lease valid in SessionLost")
	}
	if joined, reason := c.Status(); joined || reason != "zookeeper session lost" {
		t.Fatalf("Status() in SessionLost = %v, %q", joined, reason)
	}
	close(release)

	// The next heartbeat (here, the join) answers on the same session.
	agreed(t, []*Coordinator{c}, []*recorder{r}, "n1")
	if c.conn.SessionID() != sid {
		t.Fatalf("session %#x, want the same %#x", c.conn.SessionID(), sid)
	}
	if !c.LeaseValid(clock.Now()) {
		t.Fatal("lease not renewed after joining again")
	}
	// It gave up leading with the session, and leads again on it: it kept
	// its election znode, so its epoch, and nothing was reassigned.
	testutil.Eventually(t, 10*time.Second, func() bool { return c.View().Self }, "n1 does not lead again")
	if a := r.last(); a.Epoch != first.Epoch || a.Generation != first.Generation {
		t.Fatalf("assignment epoch %d generation %d after joining again; was %d, %d", a.Epoch, a.Generation, first.Epoch, first.Generation)
	}
	ev := r.since(before)
	if len(ev) < 2 || ev[0] != "lost (zookeeper session lost)" || countOf(ev, "lost") != 1 || !strings.HasPrefix(ev[1], "apply") {
		t.Fatalf("after the lapse the node heard %v; want one SessionLost, then Apply", ev)
	}
	if n := promtest.ToFloat64(c.m.losses); n != 1 {
		t.Fatalf("squall_zk_session_losses_total = %v, want 1", n)
	}
}

// Without ZooKeeper the node says why it does not join, in its status and
// in its log.
func TestStatusWithoutZooKeeper(t *testing.T) {
	var logs testutil.LogBuffer
	r := &recorder{}
	c, err := Start(Config{
		Servers: []string{"127.0.0.1:1"}, SessionTimeout: 3 * time.Second,
		Self: Member{ID: "n1"}, Partitions: 4, Logger: slog.New(slog.NewTextHandler(&logs, nil)),
	}, r)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if joined, reason := c.Status(); joined || reason != "connecting to zookeeper" {
		t.Fatalf("Status() = %v, %q", joined, reason)
	}
	testutil.Eventually(t, 10*time.Second, func() bool {
		return strings.Contains(logs.String(), `level=WARN msg="zookeeper client: failed to connect to 127.0.0.1:1`)
	}, "no client log line about the failed connection:\n%s", &logs)
	if c.LeaseValid(time.Now()) {
		t.Fatal("lease valid without a session")
	}
}

// countOf counts the events that start with s.
func countOf(events []string, s string) int {
	n := 0
	for _, e := range events {
		if strings.HasPrefix(e, s) {
			n++
		}
	}
	return n
}

// ZooKeeper paused (SIGSTOP) past the session timeout: the node's lease
// lapses while the server is silent, so it stops before the server could
// expire its session; whatever the server decides on resuming (expire the
// session, or keep it), the node hears SessionLost once and joins again.
func TestZooKeeperPausedPastTimeout(t *testing.T) {
	const timeout = 3 * time.Second
	z := zktest.Start(t)
	c, r := startCoord(t, z.Addr(), "paused", "n1", "")
	agreed(t, []*Coordinator{c}, []*recorder{r}, "n1")
	before := r.count()

	z.Pause(t)
	paused := time.Now()
	testutil.Eventually(t, timeout, func() bool { return countOf(r.since(before), "lost") == 1 },
		"no SessionLost within the session timeout of ZooKeeper going silent")
	lost := time.Since(paused)
	if c.LeaseValid(time.Now()) {
		t.Fatal("lease valid after SessionLost")
	}
	if joined, reason := c.Status(); joined {
		t.Fatalf("Status() = %v, %q while ZooKeeper is paused", joined, reason)
	}
	// Past the session timeout, then resume.
	testutil.Eventually(t, 2*timeout, func() bool { return time.Since(paused) > timeout+time.Second }, "time stands still")
	z.Resume(t)
	agreed(t, []*Coordinator{c}, []*recorder{r}, "n1")
	if ev := r.since(before); countOf(ev, "lost") != 1 {
		t.Fatalf("events after the pause: %v; want one SessionLost", ev)
	}
	t.Logf("SessionLost %s after ZooKeeper went silent; session timeout %s", lost.Round(time.Millisecond), timeout)
}
