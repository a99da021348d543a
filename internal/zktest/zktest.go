// Package zktest runs a real Apache ZooKeeper server, as a child process on a
// free 127.0.0.1 port, for tests.
//
// The server is the release scripts/zk.sh pins, fetched from Maven Central
// into the module's .cache/zk/ on first use (Java 17+ and Maven are needed for
// that; afterwards only Java). It is standalone, with tickTime 500 ms, so
// session timeouts from 1 s to 60 s are honoured; every four-letter-word
// command is enabled and the AdminServer is off.
//
// Each Server has its own data directory under t.TempDir and is killed when
// the test ends (t.Cleanup), or with the test binary if that dies first. Its
// output is printed only when the test failed. Tests in several packages may
// start servers at the same time: fetching is serialised by a lock file.
//
// Linux only: the server is suspended with SIGSTOP and dies with its parent
// through PR_SET_PDEATHSIG.
package zktest

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/squallhq/squall/internal/testproc"
)

const (
	// startTimeout bounds how long a server may take to start serving. It
	// takes about half a second on an idle machine; the margin is for a
	// machine busy compiling other packages.
	startTimeout = 60 * time.Second
	// startAttempts is how many free ports Start tries: another process may
	// take the port between the probe and the server's bind.
	startAttempts = 3
	// flwTimeout bounds one four-letter-word exchange.
	flwTimeout = 2 * time.Second
)

// errExited reports that the server process exited while starting.
var errExited = errors.New("zookeeper exited")

// kind names ZooKeeper and scripts/zk.sh for testproc.
var kind = testproc.Kind{Pkg: "zktest", Name: "ZooKeeper", Script: "zk.sh"}

// fetcher is the per-process memo of the module root and of a successful
// fetch; zk.sh's lock file serialises fetches across processes.
var fetcher = testproc.Fetcher{Kind: kind}

// Server is a running (or stopped) ZooKeeper server started by Start. Its
// methods are safe for concurrent use.
type Server struct {
	root string // module root
	dir  string // zoo.cfg, data/ and zookeeper.log
	port int

	proc testproc.Proc // the server's JVM
}

// Start starts a ZooKeeper server for t and returns once it serves clients.
// It fetches ZooKeeper first if needed (scripts/zk.sh fetch). t fails, rather
// than skips, when Java or (for the first fetch) Maven is missing. The server
// is stopped by t.Cleanup; its output is logged there if t failed.
func Start(t testing.TB) *Server {
	t.Helper()
	root := fetcher.Fetch(t)
	s := &Server{root: root, dir: t.TempDir(), proc: testproc.Proc{Kind: kind}}
	t.Cleanup(func() {
		s.stop()
		if t.Failed() {
			kind.LogOutput(t, filepath.Join(s.dir, "zookeeper.log"), s.Addr())
		}
	})
	var err error
	for range startAttempts {
		s.port = testproc.FreePort(t)
		if err = s.start(); !errors.Is(err, errExited) {
			break
		}
	}
	if err != nil {
		t.Fatalf("zktest: starting ZooKeeper on %s: %v (its output follows at cleanup)", s.Addr(), err)
	}
	return s
}

// Addr returns the server's client address, "127.0.0.1:port". The port stays
// the same across Restart.
func (s *Server) Addr() string {
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port))
}

// Pause suspends the server (SIGSTOP): it keeps its connections but answers
// nothing, and its clock stops, until Resume. Clients see a silent server,
// time out and lose their connection; once resumed, the server expires the
// sessions whose timeout passed meanwhile. Pausing a paused server does
// nothing; t fails if the server is stopped.
func (s *Server) Pause(t testing.TB) {
	t.Helper()
	s.proc.Signal(t, syscall.SIGSTOP, true)
}

// Resume continues a server suspended by Pause (SIGCONT). Resuming a server
// that is not paused does nothing; t fails if the server is stopped.
func (s *Server) Resume(t testing.TB) {
	t.Helper()
	s.proc.Signal(t, syscall.SIGCONT, false)
}

// Stop kills the server (SIGKILL, like a crash) and waits for it to exit. Its
// data directory is kept, for Restart. Stopping a stopped server does nothing.
func (s *Server) Stop(t testing.TB) {
	t.Helper()
	s.stop()
}

// Restart stops the server if it runs, then starts it again on the same
// address with the same data: znodes, and sessions whose timeout has not
// passed, survive. t fails if it does not serve again in time (another
// process may have taken the port meanwhile).
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	s.stop()
	if err := s.start(); err != nil {
		t.Fatalf("zktest: restarting ZooKeeper on %s: %v (its output follows at cleanup)", s.Addr(), err)
	}
}

// FourLetter sends the four-letter-word command word (ruok, srvr, stat, mntr,
// cons, ...) to the server and returns its answer.
func (s *Server) FourLetter(word string) (string, error) {
	return fourLetter(s.Addr(), word)
}

// start runs the server on s.port and waits until it serves. It returns an
// error wrapping errExited when the process exited meanwhile (for instance
// because the port was taken), after which s is stopped.
func (s *Server) start() error {
	logf, err := os.OpenFile(filepath.Join(s.dir, "zookeeper.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close() // the child has its own copy
	cmd := exec.Command("bash", filepath.Join(s.root, "scripts", "zk.sh"), "serve", strconv.Itoa(s.port), s.dir)
	cmd.Dir = s.root
	cmd.Stdout = logf
	cmd.Stderr = logf
	// In a process group of its own, so that signals reach the JVM only, and
	// dying with the test binary.
	r, err := s.proc.Start(cmd)
	if err != nil {
		return fmt.Errorf("zktest: running scripts/zk.sh serve: %w", err)
	}

	if err := s.waitServing(r.Done(), r.Err); err != nil {
		s.stop()
		return err
	}
	return nil
}

// waitServing polls the server until it serves from our data directory, done
// is closed (the process exited, with status exitErr()), or startTimeout
// passes.
func (s *Server) waitServing(done <-chan struct{}, exitErr func() error) error {
	deadline := time.Now().Add(startTimeout)
	dataDir := filepath.Join(s.dir, "data")
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		// srvr answers "not currently serving" until the database is loaded;
		// conf names the data directory, so that a server of somebody else
		// that took the port is not mistaken for ours.
		if out, err := s.FourLetter("srvr"); err == nil && strings.Contains(out, "Mode: ") {
			if conf, err := s.FourLetter("conf"); err == nil && strings.Contains(conf, dataDir) {
				return nil
			}
		}
		select {
		case <-done:
			return fmt.Errorf("%w while starting: %v", errExited, exitErr())
		case <-tick.C:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not serving after %s", startTimeout)
		}
	}
}

// stop kills the server's process group, if running, and waits until the
// process is reaped.
func (s *Server) stop() {
	s.proc.Stop()
}

// fourLetter sends a four-letter-word command to addr and reads the answer
// until the server closes the connection.
func fourLetter(addr, word string) (string, error) {
	conn, err := net.DialTimeout("tcp", addr, flwTimeout)
	if err != nil {
		return "", err
	}
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(flwTimeout)); err != nil {
		return "", err
	}
	if _, err := io.WriteString(conn, word); err != nil {
		return "", err
	}
	out, err := io.ReadAll(conn)
	return string(out), err
}
