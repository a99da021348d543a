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
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

const (
	// startTimeout bounds how long a server may take to start serving. It
	// takes about half a second on an idle machine; the margin is for a
	// machine busy compiling other packages.
	startTimeout = 60 * time.Second
	// startAttempts is how many free ports Start tries: another process may
	// take the port between the probe and the server's bind.
	startAttempts = 3
	// maxLogged bounds the server output that a failed test prints (its tail).
	maxLogged = 512 << 10
	// flwTimeout bounds one four-letter-word exchange.
	flwTimeout = 2 * time.Second
)

// errExited reports that the server process exited while starting.
var errExited = errors.New("zookeeper exited")

// fetchState is the per-process memo of the module root and of a successful
// fetch; zk.sh's lock file serialises fetches across processes.
var fetchState struct {
	mu   sync.Mutex
	root string // module root, once found and fetched into
}

// Server is a running (or stopped) ZooKeeper server started by Start. Its
// methods are safe for concurrent use.
type Server struct {
	root string // module root
	dir  string // zoo.cfg, data/ and zookeeper.log
	port int

	mu   sync.Mutex
	proc *process // nil while stopped
}

// process is one run of the server's JVM.
type process struct {
	pid    int
	done   chan struct{} // closed when the process has exited and been reaped
	err    error         // its exit status; read only after done is closed
	paused bool
}

// Start starts a ZooKeeper server for t and returns once it serves clients.
// It fetches ZooKeeper first if needed (scripts/zk.sh fetch). t fails, rather
// than skips, when Java or (for the first fetch) Maven is missing. The server
// is stopped by t.Cleanup; its output is logged there if t failed.
func Start(t testing.TB) *Server {
	t.Helper()
	root := fetch(t)
	s := &Server{root: root, dir: t.TempDir()}
	t.Cleanup(func() {
		s.stop()
		if t.Failed() {
			s.logOutput(t)
		}
	})
	var err error
	for range startAttempts {
		s.port = freePort(t)
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
	s.signal(t, syscall.SIGSTOP, true)
}

// Resume continues a server suspended by Pause (SIGCONT). Resuming a server
// that is not paused does nothing; t fails if the server is stopped.
func (s *Server) Resume(t testing.TB) {
	t.Helper()
	s.signal(t, syscall.SIGCONT, false)
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
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Setpgid:   true,            // its own group: signals reach the JVM only
		Pdeathsig: syscall.SIGKILL, // dies with the thread that started it
	}
	p := &process{done: make(chan struct{})}
	started := make(chan error, 1)
	// The death signal fires when the thread that forked the child exits, not
	// the process: start and reap it on a locked thread that lives exactly as
	// long as the child.
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends with this goroutine
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		p.pid = cmd.Process.Pid
		started <- nil
		p.err = cmd.Wait()
		close(p.done)
	}()
	if err := <-started; err != nil {
		return fmt.Errorf("zktest: running scripts/zk.sh serve: %w", err)
	}
	s.mu.Lock()
	s.proc = p
	s.mu.Unlock()

	if err := s.waitServing(p); err != nil {
		s.stop()
		return err
	}
	return nil
}

// waitServing polls the server until it serves from our data directory, p
// exits, or startTimeout passes.
func (s *Server) waitServing(p *process) error {
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
		case <-p.done:
			return fmt.Errorf("%w while starting: %v", errExited, p.err)
		case <-tick.C:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not serving after %s", startTimeout)
		}
	}
}

// signal sends sig to the running server and records whether it is paused.
func (s *Server) signal(t testing.TB, sig syscall.Signal, pause bool) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.proc
	if p == nil {
		t.Fatalf("zktest: %v to a stopped ZooKeeper", sig)
		return
	}
	if p.paused == pause {
		return
	}
	if err := syscall.Kill(-p.pid, sig); err != nil {
		t.Fatalf("zktest: %v to ZooKeeper (pid %d): %v", sig, p.pid, err)
	}
	p.paused = pause
}

// stop kills the server's process group, if running, and waits until the
// process is reaped.
func (s *Server) stop() {
	s.mu.Lock()
	p := s.proc
	s.proc = nil
	s.mu.Unlock()
	if p == nil {
		return
	}
	// SIGKILL also ends a stopped (paused) process. ESRCH: already gone.
	_ = syscall.Kill(-p.pid, syscall.SIGKILL)
	<-p.done
}

// logOutput logs the tail of everything the server printed.
func (s *Server) logOutput(t testing.TB) {
	t.Helper()
	f, err := os.Open(filepath.Join(s.dir, "zookeeper.log"))
	if err != nil {
		t.Logf("zktest: ZooKeeper output: %v", err)
		return
	}
	defer f.Close()
	var skipped int64
	if fi, err := f.Stat(); err == nil && fi.Size() > maxLogged {
		skipped = fi.Size() - maxLogged
		if _, err := f.Seek(skipped, io.SeekStart); err != nil {
			t.Logf("zktest: ZooKeeper output: %v", err)
			return
		}
	}
	out, err := io.ReadAll(f)
	if err != nil {
		t.Logf("zktest: ZooKeeper output: %v", err)
		return
	}
	head := "ZooKeeper " + s.Addr() + " output"
	if skipped > 0 {
		head += fmt.Sprintf(" (first %d bytes left out)", skipped)
	}
	t.Logf("%s:\n%s", head, bytes.TrimRight(out, "\n"))
}

// fetch finds the module root and makes sure ZooKeeper is fetched into it,
// once per process; it fails t when it cannot.
func fetch(t testing.TB) string {
	t.Helper()
	fetchState.mu.Lock()
	defer fetchState.mu.Unlock()
	if fetchState.root != "" {
		return fetchState.root
	}
	if _, err := exec.LookPath("java"); err != nil {
		t.Fatalf("zktest: java not found on PATH: the ZooKeeper of these tests needs Java 17 or later " +
			"(e.g. apt-get install openjdk-17-jre-headless), and Maven to fetch it once (apt-get install maven)")
	}
	root, err := moduleRoot()
	if err != nil {
		t.Fatalf("zktest: %v", err)
	}
	start := time.Now()
	cmd := exec.Command("bash", filepath.Join(root, "scripts", "zk.sh"), "fetch")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("zktest: scripts/zk.sh fetch: %v\n%s", err, out)
	} else if len(out) > 0 {
		t.Logf("zktest: fetched ZooKeeper in %s:\n%s", time.Since(start).Round(time.Millisecond), bytes.TrimRight(out, "\n"))
	}
	fetchState.root = root
	return root
}

// moduleRoot walks up from the working directory to the directory holding
// go.mod and scripts/zk.sh.
func moduleRoot() (string, error) {
	wd, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for dir := wd; ; {
		if isFile(filepath.Join(dir, "go.mod")) && isFile(filepath.Join(dir, "scripts", "zk.sh")) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no go.mod with scripts/zk.sh beside it in %s or above", wd)
		}
		dir = parent
	}
}

func isFile(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode().IsRegular()
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("zktest: finding a free port: %v", err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	if err := l.Close(); err != nil {
		t.Fatalf("zktest: finding a free port: %v", err)
	}
	return port
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
