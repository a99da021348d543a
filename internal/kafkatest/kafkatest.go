// Package kafkatest runs a real Apache Kafka broker, as a child process on
// free 127.0.0.1 ports, for tests.
//
// The broker is the release scripts/kafka.sh pins, fetched from Maven Central
// into the module's .cache/kafka/ on first use (Java 17+ and Maven are needed
// for that; afterwards only Java). It is a single KRaft node, broker and only
// controller voter at once, set up for tests: internal topics have
// replication factor 1, consumer groups rebalance without the initial delay,
// topics are created on first use with one partition, and the broker's
// session with its controller times out after 2 s (so that Restart is
// quick). It serves about 1.5 s after Start on an idle machine, with a
// resident size of about 300 MB.
//
// Each Broker has its own data directory under t.TempDir and a cluster id of
// its own, and is killed when the test ends (t.Cleanup), or with the test
// binary if that dies first. Its output is printed only when the test failed.
// Tests in several packages may start brokers at the same time: fetching is
// serialised by a lock file, and a broker is known to be ready only when it
// answers a metadata request with its own cluster id.
//
// Linux only: the broker is suspended with SIGSTOP and dies with its parent
// through PR_SET_PDEATHSIG.
package kafkatest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
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

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// NodeID is the broker's (and controller's) node id.
const NodeID int32 = 1

const (
	// startTimeout bounds how long a broker may take to start serving. It
	// takes about 1.5 s on an idle machine (a storage format and the
	// server: two JVM starts), and a restart about 3 s; the margin is for
	// a machine busy compiling other packages. The first fetch (about 6 s)
	// and class-data archive (about 6 s) come before and are not bounded.
	startTimeout = 90 * time.Second
	// startAttempts is how many pairs of free ports Start tries: another
	// process may take a port between the probe and the broker's bind.
	startAttempts = 3
	// topicTimeout bounds CreateTopic, including the wait for leaders.
	topicTimeout = 60 * time.Second
	// requestTimeout bounds one metadata request while polling.
	requestTimeout = 2 * time.Second
	// pollInterval is the pause between two readiness polls.
	pollInterval = 20 * time.Millisecond
	// maxLogged bounds the broker output that a failed test prints (its tail).
	maxLogged = 512 << 10
)

// errExited reports that the broker process exited while starting.
var errExited = errors.New("kafka exited")

// fetchState is the per-process memo of the module root and of a successful
// fetch; kafka.sh's lock file serialises fetches across processes.
var fetchState struct {
	mu   sync.Mutex
	root string // module root, once found and fetched into
}

// Broker is a running (or stopped) single-node Kafka cluster started by
// Start. Its methods are safe for concurrent use.
type Broker struct {
	root      string // module root
	dir       string // server.properties, data/ and kafka.log
	clusterID string // set when data/ is formatted; survives Restart
	port      int    // broker listener
	cport     int    // controller listener

	mu   sync.Mutex
	proc *process // nil while stopped
}

// process is one run of the broker's JVM.
type process struct {
	pid    int
	done   chan struct{} // closed when the process has exited and been reaped
	err    error         // its exit status; read only after done is closed
	paused bool
}

// Start starts a Kafka broker for t and returns once it serves clients: a
// metadata request answers with its cluster id and lists broker NodeID. It
// fetches Kafka first if needed (scripts/kafka.sh fetch). t fails, rather
// than skips, when Java or (for the first fetch) Maven is missing. The broker
// is stopped by t.Cleanup; its output is logged there if t failed.
func Start(t testing.TB) *Broker {
	t.Helper()
	root := fetch(t)
	b := &Broker{root: root, dir: t.TempDir(), clusterID: newClusterID(t)}
	t.Cleanup(func() {
		b.stop()
		if t.Failed() {
			b.logOutput(t)
		}
	})
	var err error
	for range startAttempts {
		b.port = freePort(t)
		for b.cport = freePort(t); b.cport == b.port; b.cport = freePort(t) {
		}
		if err = b.start(); !errors.Is(err, errExited) {
			break
		}
		// The next attempt starts afresh, with a new format.
		if err := os.RemoveAll(filepath.Join(b.dir, "data")); err != nil {
			t.Fatalf("kafkatest: %v", err)
		}
	}
	if err != nil {
		t.Fatalf("kafkatest: starting Kafka on %s: %v (its output follows at cleanup)", b.Addr(), err)
	}
	return b
}

// Addr returns the broker's bootstrap address, "127.0.0.1:port". The port
// stays the same across Restart.
func (b *Broker) Addr() string {
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(b.port))
}

// ClusterID returns the cluster id the broker's storage was formatted with;
// it stays the same across Restart.
func (b *Broker) ClusterID() string { return b.clusterID }

// CreateTopic creates topic name with the given number of partitions
// (replication factor 1, broker defaults otherwise) and waits until the
// metadata names a leader for each of them, so that producing to it does
// not race its creation. t fails if the topic exists already, or after a
// minute.
func (b *Broker) CreateTopic(t testing.TB, name string, partitions int32) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), topicTimeout)
	defer cancel()
	adm, err := b.admin()
	if err != nil {
		t.Fatalf("kafkatest: %v", err)
	}
	defer adm.Close()
	if _, err := adm.CreateTopic(ctx, partitions, 1, nil, name); err != nil {
		t.Fatalf("kafkatest: creating topic %q with %d partitions: %v", name, partitions, err)
	}
	tick := time.NewTicker(pollInterval)
	defer tick.Stop()
	for {
		md, err := adm.Metadata(ctx, name)
		if err == nil && leadersKnown(md, name, partitions) {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("kafkatest: topic %q has no leader for each of its %d partitions after %s (last error %v)",
				name, partitions, topicTimeout, err)
		case <-tick.C:
		}
	}
}

// leadersKnown reports whether md lists topic with n partitions, each with a
// leader.
func leadersKnown(md kadm.Metadata, topic string, n int32) bool {
	td, ok := md.Topics[topic]
	if !ok || td.Err != nil || int32(len(td.Partitions)) != n {
		return false
	}
	for _, p := range td.Partitions {
		if p.Err != nil || p.Leader < 0 {
			return false
		}
	}
	return true
}

// Pause suspends the broker (SIGSTOP): it keeps its connections but answers
// nothing, until Resume. Clients see a silent broker and time their requests
// out. Its controller is paused with it; but after a pause longer than the
// broker session timeout (2 s) the controller fences the broker for a moment
// on Resume, and partitions have no leader until its next heartbeat (a
// quarter of a second at most), which clients ride out by retrying. Pausing
// a paused broker does nothing; t fails if the broker is stopped.
func (b *Broker) Pause(t testing.TB) {
	t.Helper()
	b.signal(t, syscall.SIGSTOP, true)
}

// Resume continues a broker suspended by Pause (SIGCONT). Resuming a broker
// that is not paused does nothing; t fails if the broker is stopped.
func (b *Broker) Resume(t testing.TB) {
	t.Helper()
	b.signal(t, syscall.SIGCONT, false)
}

// Stop kills the broker (SIGKILL, like a crash) and waits for it to exit. Its
// data directory is kept, for Restart. Stopping a stopped broker does
// nothing.
func (b *Broker) Stop(t testing.TB) {
	t.Helper()
	b.stop()
}

// Restart stops the broker if it runs, then starts it again on the same
// ports with the same data: the cluster id, topics, records and committed
// offsets survive (those acknowledged with acks=all, at least; the broker
// recovers its logs as after a crash). t fails if it does not serve again in
// time (another process may have taken a port meanwhile).
func (b *Broker) Restart(t testing.TB) {
	t.Helper()
	b.stop()
	if err := b.start(); err != nil {
		t.Fatalf("kafkatest: restarting Kafka on %s: %v (its output follows at cleanup)", b.Addr(), err)
	}
}

// admin returns an admin client of the broker, to be closed by the caller.
// Its metadata cache is kept for a moment only, so that polling sees changes.
func (b *Broker) admin() (*kadm.Client, error) {
	cl, err := kgo.NewClient(
		kgo.SeedBrokers(b.Addr()),
		kgo.MetadataMinAge(pollInterval),
		kgo.DialTimeout(requestTimeout),
	)
	if err != nil {
		return nil, err
	}
	return kadm.NewClient(cl), nil
}

// start runs the broker on b.port and b.cport and waits until it serves. It
// returns an error wrapping errExited when the process exited meanwhile (for
// instance because a port was taken), after which b is stopped.
func (b *Broker) start() error {
	logf, err := os.OpenFile(filepath.Join(b.dir, "kafka.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close() // the child has its own copy
	cmd := exec.Command("bash", filepath.Join(b.root, "scripts", "kafka.sh"), "serve",
		strconv.Itoa(b.port), strconv.Itoa(b.cport), b.dir)
	cmd.Dir = b.root
	cmd.Env = append(os.Environ(), "KAFKA_CLUSTER_ID="+b.clusterID)
	cmd.Stdout = logf
	cmd.Stderr = logf
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Setpgid:   true,            // its own group: signals reach the JVM (and a format in progress) only
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
		return fmt.Errorf("kafkatest: running scripts/kafka.sh serve: %w", err)
	}
	b.mu.Lock()
	b.proc = p
	b.mu.Unlock()

	if err := b.waitServing(p, startTimeout); err != nil {
		b.stop()
		return err
	}
	return nil
}

// waitServing polls the broker until it serves with our cluster id, p exits,
// or timeout passes (the last poll may take requestTimeout more).
func (b *Broker) waitServing(p *process, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(pollInterval)
	defer tick.Stop()
	for {
		err := b.serving()
		if err == nil {
			return nil
		}
		select {
		case <-p.done:
			return fmt.Errorf("%w while starting: %v", errExited, p.err)
		case <-tick.C:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not serving after %s: %v", timeout, err)
		}
	}
}

// serving asks the broker for metadata and reports why it is not (yet) the
// ready broker of b, or nil when it is. The cluster id is random per Broker,
// so a broker of another test that took the port is not mistaken for ours.
func (b *Broker) serving() error {
	ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
	defer cancel()
	// The listener opens once the broker runs: until then a dial is all it
	// costs, rather than a client's retries and backoff.
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", b.Addr())
	if err != nil {
		return err
	}
	if err := conn.Close(); err != nil {
		return err
	}
	adm, err := b.admin()
	if err != nil {
		return err
	}
	defer adm.Close()
	md, err := adm.BrokerMetadata(ctx)
	if err != nil {
		return err
	}
	if md.Cluster != b.clusterID {
		return fmt.Errorf("%s is a broker of cluster %q, not %q", b.Addr(), md.Cluster, b.clusterID)
	}
	for _, bd := range md.Brokers {
		if bd.NodeID == NodeID && int(bd.Port) == b.port {
			return nil
		}
	}
	return fmt.Errorf("metadata lists no broker %d on port %d: %v", NodeID, b.port, md.Brokers)
}

// signal sends sig to the running broker and records whether it is paused.
func (b *Broker) signal(t testing.TB, sig syscall.Signal, pause bool) {
	t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	p := b.proc
	if p == nil {
		t.Fatalf("kafkatest: %v to a stopped Kafka", sig)
		return
	}
	if p.paused == pause {
		return
	}
	if err := syscall.Kill(-p.pid, sig); err != nil {
		t.Fatalf("kafkatest: %v to Kafka (pid %d): %v", sig, p.pid, err)
	}
	p.paused = pause
}

// stop kills the broker's process group, if running, and waits until the
// process is reaped.
func (b *Broker) stop() {
	b.mu.Lock()
	p := b.proc
	b.proc = nil
	b.mu.Unlock()
	if p == nil {
		return
	}
	// SIGKILL also ends a stopped (paused) process. ESRCH: already gone.
	_ = syscall.Kill(-p.pid, syscall.SIGKILL)
	<-p.done
}

// logOutput logs the tail of everything the broker printed.
func (b *Broker) logOutput(t testing.TB) {
	t.Helper()
	f, err := os.Open(filepath.Join(b.dir, "kafka.log"))
	if err != nil {
		t.Logf("kafkatest: Kafka output: %v", err)
		return
	}
	defer f.Close()
	var skipped int64
	if fi, err := f.Stat(); err == nil && fi.Size() > maxLogged {
		skipped = fi.Size() - maxLogged
		if _, err := f.Seek(skipped, io.SeekStart); err != nil {
			t.Logf("kafkatest: Kafka output: %v", err)
			return
		}
	}
	out, err := io.ReadAll(f)
	if err != nil {
		t.Logf("kafkatest: Kafka output: %v", err)
		return
	}
	head := "Kafka " + b.Addr() + " output"
	if skipped > 0 {
		head += fmt.Sprintf(" (first %d bytes left out)", skipped)
	}
	t.Logf("%s:\n%s", head, bytes.TrimRight(out, "\n"))
}

// fetch finds the module root and makes sure Kafka is fetched into it, once
// per process; it fails t when it cannot.
func fetch(t testing.TB) string {
	t.Helper()
	fetchState.mu.Lock()
	defer fetchState.mu.Unlock()
	if fetchState.root != "" {
		return fetchState.root
	}
	if _, err := exec.LookPath("java"); err != nil {
		t.Fatalf("kafkatest: java not found on PATH: the Kafka of these tests needs Java 17 or later " +
			"(e.g. apt-get install openjdk-17-jre-headless), and Maven to fetch it once (apt-get install maven)")
	}
	root, err := moduleRoot()
	if err != nil {
		t.Fatalf("kafkatest: %v", err)
	}
	start := time.Now()
	cmd := exec.Command("bash", filepath.Join(root, "scripts", "kafka.sh"), "fetch")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("kafkatest: scripts/kafka.sh fetch: %v\n%s", err, out)
	} else if len(out) > 0 {
		t.Logf("kafkatest: fetched Kafka in %s:\n%s", time.Since(start).Round(time.Millisecond), bytes.TrimRight(out, "\n"))
	}
	fetchState.root = root
	return root
}

// moduleRoot walks up from the working directory to the directory holding
// go.mod and scripts/kafka.sh.
func moduleRoot() (string, error) {
	wd, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for dir := wd; ; {
		if isFile(filepath.Join(dir, "go.mod")) && isFile(filepath.Join(dir, "scripts", "kafka.sh")) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no go.mod with scripts/kafka.sh beside it in %s or above", wd)
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
		t.Fatalf("kafkatest: finding a free port: %v", err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	if err := l.Close(); err != nil {
		t.Fatalf("kafkatest: finding a free port: %v", err)
	}
	return port
}

// newClusterID returns a random cluster id as Kafka writes them: 16 bytes in
// URL-safe base64 without padding, not starting with '-' (which the storage
// tool would take for an option).
func newClusterID(t testing.TB) string {
	t.Helper()
	var raw [16]byte
	for {
		if _, err := rand.Read(raw[:]); err != nil {
			t.Fatalf("kafkatest: %v", err)
		}
		if id := base64.RawURLEncoding.EncodeToString(raw[:]); !strings.HasPrefix(id, "-") {
			return id
		}
	}
}
