// Package testproc holds the machinery shared by the test helpers (zktest,
// kafkatest) that run a server, a JVM started by a script under the module's
// scripts/, as a child process for tests: fetching the server once per
// process, finding the module root and free ports, starting the child so
// that it dies with the test binary, signalling, stopping and reaping it,
// and logging the tail of its output when a test failed.
//
// Linux only: the child is suspended with SIGSTOP and dies with its parent
// through PR_SET_PDEATHSIG.
package testproc

import (
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"syscall"
	"testing"
	"time"
)

// MaxLogged bounds the server output that a failed test prints (its tail).
const MaxLogged = 512 << 10

// Kind names a server and the helper package running it, for the script it
// is run by and for messages.
type Kind struct {
	Pkg    string // the helper package, the prefix of messages: "zktest"
	Name   string // the server in messages: "ZooKeeper"
	Script string // its script in scripts/: "zk.sh"
}

// Fetcher memoises, per process, the module root and a successful fetch of
// the server (scripts/<Script> fetch); the script's lock file serialises
// fetches across processes. Its zero value, with Kind set, is ready for use,
// and it is safe for concurrent use.
type Fetcher struct {
	Kind Kind

	mu   sync.Mutex
	root string // module root, once found and fetched into
}

// Fetch finds the module root and makes sure the server is fetched into it,
// once per process, and returns the root; it fails t when it cannot (Java
// missing, for instance).
func (f *Fetcher) Fetch(t testing.TB) string {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.root != "" {
		return f.root
	}
	k := f.Kind
	if _, err := exec.LookPath("java"); err != nil {
		t.Fatalf("%s: java not found on PATH: the %s of these tests needs Java 17 or later "+
			"(e.g. apt-get install openjdk-17-jre-headless), and Maven to fetch it once (apt-get install maven)", k.Pkg, k.Name)
	}
	root, err := k.ModuleRoot()
	if err != nil {
		t.Fatalf("%s: %v", k.Pkg, err)
	}
	start := time.Now()
	cmd := exec.Command("bash", filepath.Join(root, "scripts", k.Script), "fetch")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s: scripts/%s fetch: %v\n%s", k.Pkg, k.Script, err, out)
	} else if len(out) > 0 {
		t.Logf("%s: fetched %s in %s:\n%s", k.Pkg, k.Name, time.Since(start).Round(time.Millisecond), bytes.TrimRight(out, "\n"))
	}
	f.root = root
	return root
}

// ModuleRoot walks up from the working directory to the directory holding
// go.mod and scripts/<Script>.
func (k Kind) ModuleRoot() (string, error) {
	wd, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for dir := wd; ; {
		if isFile(filepath.Join(dir, "go.mod")) && isFile(filepath.Join(dir, "scripts", k.Script)) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no go.mod with scripts/%s beside it in %s or above", k.Script, wd)
		}
		dir = parent
	}
}

func isFile(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode().IsRegular()
}

// FreePort returns a TCP port on 127.0.0.1 on which nothing listened a
// moment ago (it fails t when it finds none), for a server that a test starts later (a child process, or a
// node restarted on the address it had). The port is taken below the
// kernel's ephemeral range, from which every "127.0.0.1:0" listener and
// outgoing connection gets its port: a port from that range, released for
// the server to take, can be handed by the kernel to anyone else meanwhile
// (a CI run lost a restarted node's address that way). Below the range only
// another test choosing the same random port can take it.
func FreePort(t testing.TB) int {
	t.Helper()
	port, err := freePort()
	if err != nil {
		t.Fatalf("testproc: finding a free port: %v", err)
	}
	return port
}

// FreeAddr is FreePort as "127.0.0.1:port".
func FreeAddr(t testing.TB) string {
	t.Helper()
	return fmt.Sprintf("127.0.0.1:%d", FreePort(t))
}

// The ports FreePort chooses from: [portLow, the ephemeral range's start),
// the same as scripts/kafka.sh's free_port.
const (
	portLow          = 20000
	defaultEphemeral = 32768 // Linux's default ip_local_port_range start
)

func freePort() (int, error) {
	high := ephemeralStart()
	if high-portLow < 1000 {
		// An unusual ip_local_port_range: let the kernel choose.
		return listenAndClose("127.0.0.1:0")
	}
	var lastErr error
	for range 100 {
		port := portLow + rand.IntN(high-portLow)
		if !reserve(port, true) {
			lastErr = fmt.Errorf("port %d reserved already", port)
			continue
		}
		got, err := listenAndClose(fmt.Sprintf("127.0.0.1:%d", port))
		if err == nil {
			return got, nil
		}
		lastErr = err
	}
	return 0, fmt.Errorf("no free port in [%d, %d) after 100 tries: %w", portLow, high, lastErr)
}

// reservations holds the lock files of the ports this process reserved,
// open until it exits.
var reservations struct {
	sync.Mutex
	files map[int]*os.File
}

// Reserve reserves port for this process until it exits, against every
// test process that reserves ports through this package (FreePort does):
// it takes an exclusive lock (flock) on the port's file in a directory they
// share, which the kernel drops when the process exits. A port chosen once
// thus stays this process's even while nothing listens on it — a broker or
// server restarted on the same port (a crash test) cannot find it taken by
// another test package running beside it. It returns false when another
// process holds the port; true when this one does, or when no lock can be
// taken at all (then the probe alone decides, as before).
func Reserve(port int) bool { return reserve(port, false) }

// reserve is Reserve; fresh: a port this process reserved already is not
// free either (FreePort handed it out).
func reserve(port int, fresh bool) bool {
	reservations.Lock()
	defer reservations.Unlock()
	if _, ok := reservations.files[port]; ok {
		return !fresh
	}
	dir := filepath.Join(os.TempDir(), "squall-test-ports")
	if err := os.MkdirAll(dir, 0o777); err != nil {
		return true
	}
	f, err := os.OpenFile(filepath.Join(dir, fmt.Sprint(port)), os.O_CREATE|os.O_RDWR, 0o666)
	if err != nil {
		return true
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return false
	}
	if reservations.files == nil {
		reservations.files = make(map[int]*os.File)
	}
	reservations.files[port] = f
	return true
}

// ephemeralStart reads the start of the kernel's ephemeral port range.
func ephemeralStart() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return defaultEphemeral
	}
	var lo, hi int
	if _, err := fmt.Sscan(string(b), &lo, &hi); err != nil || lo <= 0 {
		return defaultEphemeral
	}
	return lo
}

func listenAndClose(addr string) (int, error) {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return 0, err
	}
	port := l.Addr().(*net.TCPAddr).Port
	return port, l.Close()
}

// LogOutput logs on t the tail (MaxLogged bytes at most) of the server
// output in the file path, headed with the server's address addr.
func (k Kind) LogOutput(t testing.TB, path, addr string) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Logf("%s: %s output: %v", k.Pkg, k.Name, err)
		return
	}
	defer f.Close()
	var skipped int64
	if fi, err := f.Stat(); err == nil && fi.Size() > MaxLogged {
		skipped = fi.Size() - MaxLogged
		if _, err := f.Seek(skipped, io.SeekStart); err != nil {
			t.Logf("%s: %s output: %v", k.Pkg, k.Name, err)
			return
		}
	}
	out, err := io.ReadAll(f)
	if err != nil {
		t.Logf("%s: %s output: %v", k.Pkg, k.Name, err)
		return
	}
	head := k.Name + " " + addr + " output"
	if skipped > 0 {
		head += fmt.Sprintf(" (first %d bytes left out)", skipped)
	}
	t.Logf("%s:\n%s", head, bytes.TrimRight(out, "\n"))
}

// Proc is a server's child process, running or stopped: at most one run of
// it at a time. Its zero value, with Kind set, is a stopped Proc; it is safe
// for concurrent use.
type Proc struct {
	Kind Kind

	mu  sync.Mutex
	run *Run // nil while stopped
}

// Run is one run of a server's child process.
type Run struct {
	pid    int
	done   chan struct{} // closed when the process has exited and been reaped
	err    error         // its exit status; read only after done is closed
	paused bool          // guarded by the Proc's mu
}

// Done returns a channel closed when the process has exited and been reaped.
func (r *Run) Done() <-chan struct{} { return r.done }

// Err returns the process's exit status; call it only once Done is closed.
func (r *Run) Err() error { return r.err }

// Start starts cmd as the running process of p, in a process group of its
// own (so that signals reach the server only) and with SIGKILL as its death
// signal, so that it dies with the test binary; it overrides
// cmd.SysProcAttr. It returns the run, to wait for, or cmd.Start's error.
// Any run p had must be stopped first.
func (p *Proc) Start(cmd *exec.Cmd) (*Run, error) {
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Setpgid:   true,            // its own group: signals reach the server only
		Pdeathsig: syscall.SIGKILL, // dies with the thread that started it
	}
	r := &Run{done: make(chan struct{})}
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
		r.pid = cmd.Process.Pid
		started <- nil
		r.err = cmd.Wait()
		close(r.done)
	}()
	if err := <-started; err != nil {
		return nil, err
	}
	p.mu.Lock()
	p.run = r
	p.mu.Unlock()
	return r, nil
}

// Pid returns the process id of the running process, or 0 when p is stopped.
func (p *Proc) Pid() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.run == nil {
		return 0
	}
	return p.run.pid
}

// Signal sends sig to the running process's group and records whether it is
// paused (pause: SIGSTOP, else SIGCONT); it does nothing when the process is
// already in that state, and fails t when p is stopped.
func (p *Proc) Signal(t testing.TB, sig syscall.Signal, pause bool) {
	t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	r := p.run
	if r == nil {
		t.Fatalf("%s: %v to a stopped %s", p.Kind.Pkg, sig, p.Kind.Name)
		return
	}
	if r.paused == pause {
		return
	}
	if err := syscall.Kill(-r.pid, sig); err != nil {
		t.Fatalf("%s: %v to %s (pid %d): %v", p.Kind.Pkg, sig, p.Kind.Name, r.pid, err)
	}
	r.paused = pause
}

// Stop kills the process group of the running process, if any, and waits
// until the process is reaped.
func (p *Proc) Stop() {
	p.mu.Lock()
	r := p.run
	p.run = nil
	p.mu.Unlock()
	if r == nil {
		return
	}
	// SIGKILL also ends a stopped (paused) process. ESRCH: already gone.
	_ = syscall.Kill(-r.pid, syscall.SIGKILL)
	<-r.done
}
