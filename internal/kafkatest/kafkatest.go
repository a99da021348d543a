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
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
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
)

// errExited reports that the broker process exited while starting.
var errExited = errors.New("kafka exited")

// kind names Kafka and scripts/kafka.sh for testproc.
var kind = testproc.Kind{Pkg: "kafkatest", Name: "Kafka", Script: "kafka.sh"}

// fetcher is the per-process memo of the module root and of a successful
// fetch; kafka.sh's lock file serialises fetches across processes.
var fetcher = testproc.Fetcher{Kind: kind}

// Broker is a running (or stopped) single-node Kafka cluster started by
// Start. Its methods are safe for concurrent use.
type Broker struct {
	root      string // module root
	dir       string // server.properties, data/ and kafka.log
	clusterID string // set when data/ is formatted; survives Restart
	port      int    // broker listener
	cport     int    // controller listener

	proc testproc.Proc // the broker's JVM
	env  []string      // extra environment of scripts/kafka.sh
}

// Option changes how Start runs the broker.
type Option func(*Broker)

// Env adds variables ("NAME=value") to the environment of scripts/kafka.sh,
// which documents those it reads: for instance KAFKA_GC=parallel, the
// benchmarks' choice for shorter pauses.
func Env(kv ...string) Option {
	return func(b *Broker) { b.env = append(b.env, kv...) }
}

// Start starts a Kafka broker for t and returns once it serves clients: a
// metadata request answers with its cluster id and lists broker NodeID. It
// fetches Kafka first if needed (scripts/kafka.sh fetch). t fails, rather
// than skips, when Java or (for the first fetch) Maven is missing. The broker
// is stopped by t.Cleanup; its output is logged there if t failed.
func Start(t testing.TB, opts ...Option) *Broker {
	t.Helper()
	root := fetcher.Fetch(t)
	b := &Broker{root: root, dir: t.TempDir(), clusterID: newClusterID(t), proc: testproc.Proc{Kind: kind}}
	for _, o := range opts {
		o(b)
	}
	t.Cleanup(func() {
		b.stop()
		if t.Failed() {
			kind.LogOutput(t, filepath.Join(b.dir, "kafka.log"), b.Addr())
		}
	})
	var err error
	for range startAttempts {
		b.port = testproc.FreePort(t)
		for b.cport = testproc.FreePort(t); b.cport == b.port; b.cport = testproc.FreePort(t) {
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
	b.proc.Signal(t, syscall.SIGSTOP, true)
}

// Resume continues a broker suspended by Pause (SIGCONT). Resuming a broker
// that is not paused does nothing; t fails if the broker is stopped.
func (b *Broker) Resume(t testing.TB) {
	t.Helper()
	b.proc.Signal(t, syscall.SIGCONT, false)
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
	cmd.Env = append(append(os.Environ(), b.env...), "KAFKA_CLUSTER_ID="+b.clusterID)
	cmd.Stdout = logf
	cmd.Stderr = logf
	// In a process group of its own, so that signals reach the JVM (and a
	// format in progress) only, and dying with the test binary.
	r, err := b.proc.Start(cmd)
	if err != nil {
		return fmt.Errorf("kafkatest: running scripts/kafka.sh serve: %w", err)
	}

	if err := b.waitServing(r.Done(), r.Err, startTimeout); err != nil {
		b.stop()
		return err
	}
	return nil
}

// waitServing polls the broker until it serves with our cluster id, done is
// closed (the process exited, with status exitErr()), or timeout passes (the
// last poll may take requestTimeout more).
func (b *Broker) waitServing(done <-chan struct{}, exitErr func() error, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(pollInterval)
	defer tick.Stop()
	for {
		err := b.serving()
		if err == nil {
			return nil
		}
		select {
		case <-done:
			return fmt.Errorf("%w while starting: %v", errExited, exitErr())
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

// stop kills the broker's process group, if running, and waits until the
// process is reaped.
func (b *Broker) stop() {
	b.proc.Stop()
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

// Pid returns the process id of the broker's JVM, or 0 when it is stopped.
func (b *Broker) Pid() int { return b.proc.Pid() }
