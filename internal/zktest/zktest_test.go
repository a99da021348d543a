package zktest

import (
	"bytes"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// testLogger sends the zk client's log lines to t until the test ends, and
// drops those that its goroutines print after (t.Logf would panic then).
type testLogger struct {
	mu   sync.Mutex
	t    testing.TB
	done bool
}

func newTestLogger(t testing.TB) *testLogger {
	l := &testLogger{t: t}
	t.Cleanup(func() {
		l.mu.Lock()
		l.done = true
		l.mu.Unlock()
	})
	return l
}

func (l *testLogger) Printf(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.done {
		l.t.Logf("zk: "+format, args...)
	}
}

// connect opens a zk session to s, closed by t.Cleanup, and returns it with a
// channel of its state changes.
func connect(t *testing.T, s *Server, timeout time.Duration) (*zk.Conn, *states) {
	t.Helper()
	conn, events, err := zk.Connect([]string{s.Addr()}, timeout, zk.WithLogger(newTestLogger(t)))
	if err != nil {
		t.Fatalf("zk.Connect: %v", err)
	}
	st := &states{ch: make(chan zk.State, 64)}
	done := make(chan struct{})
	go func() { // ends when conn.Close closes events
		defer close(done)
		for ev := range events {
			if ev.Type == zk.EventSession {
				select {
				case st.ch <- ev.State:
				default: // a test that stopped reading does not block the client
				}
			}
		}
	}()
	t.Cleanup(func() {
		conn.Close()
		<-done
	})
	return conn, st
}

// states is a connection's session state changes, in order.
type states struct{ ch chan zk.State }

// await waits for state want, failing t after timeout.
func (s *states) await(t *testing.T, want zk.State, timeout time.Duration) {
	t.Helper()
	deadline := time.After(timeout)
	for {
		select {
		case got := <-s.ch:
			if got == want {
				return
			}
		case <-deadline:
			t.Fatalf("no %v within %s", want, timeout)
		}
	}
}

func TestServer(t *testing.T) {
	begin := time.Now()
	s := Start(t)
	t.Logf("ZooKeeper serving on %s after %s", s.Addr(), time.Since(begin).Round(time.Millisecond))
	if !strings.HasPrefix(s.Addr(), "127.0.0.1:") {
		t.Fatalf("Addr() = %q, want 127.0.0.1:port", s.Addr())
	}
	if out, err := s.FourLetter("ruok"); err != nil || out != "imok" {
		t.Fatalf("ruok = %q, %v; want imok", out, err)
	}

	const sessionTimeout = 2 * time.Second
	conn, st := connect(t, s, sessionTimeout)
	st.await(t, zk.StateHasSession, time.Minute) // a bound for a hang, not a margin: a loaded machine is slow
	if got := conn.SessionID(); got == 0 {
		t.Fatal("no session id")
	}

	want := []byte("hello")
	if _, err := conn.Create("/zktest", want, 0, zk.WorldACL(zk.PermAll)); err != nil {
		t.Fatalf("Create: %v", err)
	}
	get := func() {
		t.Helper()
		got, _, err := conn.Get("/zktest")
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("Get = %q, %v; want %q", got, err, want)
		}
	}
	get()

	// A paused server is silent: the client gives up its connection, and
	// finds the server again once it is resumed.
	s.Pause(t)
	s.Pause(t) // no-op
	st.await(t, zk.StateDisconnected, 3*sessionTimeout)
	s.Resume(t)
	s.Resume(t)                                  // no-op
	st.await(t, zk.StateHasSession, time.Minute) // a bound for a hang, not a margin: a loaded machine is slow
	get()

	// Persistent znodes survive a crash and restart on the same address.
	s.Restart(t)
	st.await(t, zk.StateHasSession, time.Minute) // a bound for a hang, not a margin: a loaded machine is slow
	get()

	s.Stop(t)
	s.Stop(t) // no-op
	st.await(t, zk.StateDisconnected, 3*sessionTimeout)
	if _, err := s.FourLetter("ruok"); err == nil {
		t.Fatal("stopped server still answers")
	}
}

// TestTwoServers checks that servers of one test are independent.
func TestTwoServers(t *testing.T) {
	a, b := Start(t), Start(t)
	if a.Addr() == b.Addr() {
		t.Fatalf("both servers on %s", a.Addr())
	}
	ca, sta := connect(t, a, 5*time.Second)
	cb, stb := connect(t, b, 5*time.Second)
	sta.await(t, zk.StateHasSession, time.Minute)
	stb.await(t, zk.StateHasSession, time.Minute)
	if _, err := ca.Create("/only-a", nil, zk.FlagEphemeral, zk.WorldACL(zk.PermAll)); err != nil {
		t.Fatalf("Create on a: %v", err)
	}
	if _, _, err := cb.Get("/only-a"); !errors.Is(err, zk.ErrNoNode) {
		t.Fatalf("Get on b = %v, want %v", err, zk.ErrNoNode)
	}
}
