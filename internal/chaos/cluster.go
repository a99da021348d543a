package chaos

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/squallhq/squall/internal/kafkatest"
	"github.com/squallhq/squall/internal/natstest"
	"github.com/squallhq/squall/internal/testproc"
	"github.com/squallhq/squall/internal/zktest"
)

// Errors of the cluster control.
var (
	// ErrNotUp reports a signal or request to a node that is not running.
	ErrNotUp = errors.New("chaos: node not running")
	// ErrStartTimeout reports a node that did not log its start in time.
	ErrStartTimeout = errors.New("chaos: node did not log its start in time")
)

// nodeStartTimeout bounds a node's start until it logs "squall node
// started" (it reads the topic's metadata, or makes sure of the stream,
// and joins ZooKeeper first).
const nodeStartTimeout = 60 * time.Second

// NodeState is what the harness did to a node last.
type NodeState int

// Node states.
const (
	Down   NodeState = iota // not running (never started, killed or exited)
	Up                      // running
	Paused                  // running, suspended with SIGSTOP
)

func (s NodeState) String() string {
	return [...]string{"down", "up", "paused"}[s]
}

// Cluster is ZooKeeper, the log (a Kafka broker with the input topic, or
// a JetStream cluster of NATS servers in the test process) and the
// squall-node processes of a chaos run. Its fields are set by StartCluster
// and read only afterwards.
type Cluster struct {
	ZK  *zktest.Server
	Log LogMode
	// Kafka is the broker in LogKafka mode (nil otherwise).
	Kafka *kafkatest.Broker
	// NATS is the JetStream cluster in LogJetStream mode (nil otherwise):
	// the nodes' --nats-url, their log and their NATS input.
	NATS  *natstest.JSCluster
	Name  string // cluster name, Kafka group; the topic is Name+"-events"
	Topic string // LogKafka only
	Nodes []*Node
	// Timeline records every node state change, for the recovery times.
	Timeline *Timeline

	partitions int32
}

// StartCluster starts ZooKeeper, the log of cfg.Log — Kafka with the topic
// of cfg.Partitions partitions, or cfg.NATSServers NATS servers with
// JetStream — and cfg.Nodes nodes n1..nN from the binary bin, each on
// fixed HTTP and remote addresses it keeps across restarts, and waits
// until they have all logged their start (not until they settle). Their
// logs go to logDir/nN.log. Everything is stopped by t.Cleanup.
func StartCluster(t testing.TB, cfg Config, bin, logDir string) *Cluster {
	t.Helper()
	c := &Cluster{ZK: zktest.Start(t), Log: cfg.Log, Name: "chaos", Timeline: &Timeline{}, partitions: cfg.Partitions}
	var logArgs []string
	switch cfg.Log {
	case LogJetStream:
		c.NATS = natstest.NewJSCluster(t, cfg.NATSServers)
		// The nodes create the stream: no topic to create.
		logArgs = []string{"--nats-url", c.NATS.ClientURLs(), "--jetstream-replicas", strconv.Itoa(jsReplicas),
			"--data-dir", "", "--partitions", strconv.Itoa(int(cfg.Partitions))}
	default:
		c.Kafka = kafkatest.Start(t)
		c.Topic = c.Name + "-events"
		c.Kafka.CreateTopic(t, c.Topic, cfg.Partitions)
		logArgs = []string{"--nats-addr", "127.0.0.1:0",
			"--kafka-brokers", c.Kafka.Addr(), "--kafka-topic", c.Topic, "--kafka-group", c.Name}
	}
	for i := range cfg.Nodes {
		id := fmt.Sprintf("n%d", i+1)
		n := &Node{ID: id, HTTPAddr: testproc.FreeAddr(t), RemoteAddr: testproc.FreeAddr(t),
			bin: bin, logPath: filepath.Join(logDir, id+".log"), tl: c.Timeline,
			proc: testproc.Proc{Kind: testproc.Kind{Pkg: "chaos", Name: "squall-node " + id}}}
		n.args = append(nodeArgs(c, cfg, n), logArgs...)
		c.Nodes = append(c.Nodes, n)
	}
	t.Cleanup(func() {
		for _, n := range c.Nodes {
			n.Kill()
		}
	})
	for _, n := range c.Nodes {
		if err := n.Start(); err != nil {
			t.Fatalf("chaos: %v", err)
		}
	}
	return c
}

// nodeArgs returns n's flags but those of the log.
func nodeArgs(c *Cluster, cfg Config, n *Node) []string {
	return []string{"--zk", c.ZK.Addr(), "--cluster", c.Name, "--node-id", n.ID,
		"--http-addr", n.HTTPAddr, "--remote-addr", n.RemoteAddr,
		"--zk-session-timeout", cfg.SessionTimeout.String(),
		"--retention", cfg.Retention.String(),
		// No key goes idle for this long in a run: a passivated key
		// would read as lost.
		"--idle-ttl", (2 * cfg.Retention).String(),
	}
}

// Node returns the node with id, or nil.
func (c *Cluster) Node(id string) *Node {
	for _, n := range c.Nodes {
		if n.ID == id {
			return n
		}
	}
	return nil
}

// InState returns the nodes in state s, in id order.
func (c *Cluster) InState(s NodeState) []*Node {
	var out []*Node
	for _, n := range c.Nodes {
		if n.State() == s {
			out = append(out, n)
		}
	}
	return out
}

// EndOffsets returns, per partition, the offset its source's applied
// offset reaches once it has consumed the log to its end: the topic's end
// offset, or, in LogJetStream mode, one past the stream sequence of the
// partition's last message (0: none). Nothing in it comes from the nodes.
func (c *Cluster) EndOffsets(ctx context.Context) (map[int32]int64, error) {
	if c.Log == LogJetStream {
		return c.jsEndOffsets(ctx)
	}
	return c.kafkaEndOffsets(ctx)
}

func (c *Cluster) kafkaEndOffsets(ctx context.Context) (map[int32]int64, error) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.Kafka.Addr()))
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	offs, err := kadm.NewClient(cl).ListEndOffsets(ctx, c.Topic)
	if err != nil {
		return nil, err
	}
	out := map[int32]int64{}
	var firstErr error
	offs.Each(func(o kadm.ListedOffset) {
		if o.Err != nil && firstErr == nil {
			firstErr = o.Err
		}
		out[o.Partition] = o.Offset
	})
	return out, firstErr
}

// Node is one squall-node of the cluster: a stable id, HTTP and remote
// address, and at most one running process. Its methods are safe for
// concurrent use, but state changes (Start, Kill, Term, Pause, Resume) are
// made by one goroutine, the nemesis's.
type Node struct {
	ID         string
	HTTPAddr   string // fixed across restarts
	RemoteAddr string // fixed across restarts

	bin     string
	args    []string
	logPath string
	tl      *Timeline
	proc    testproc.Proc

	mu      sync.Mutex
	state   NodeState
	run     *testproc.Run
	pid     int
	natsURL string
	reader  chan struct{} // closed when the current run's log reader has finished
	starts  int
}

var startedRE = regexp.MustCompile(`squall node started.*http=(\S+) nats=(\S+)`)

// State returns the node's state.
func (n *Node) State() NodeState {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.state
}

// NATSURL returns the URL of the node's NATS, as its current run logged
// it ("" when down): its embedded server in LogKafka mode; in LogJetStream
// mode the NATS cluster's URLs, comma-separated, which every node shares.
func (n *Node) NATSURL() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.state == Down {
		return ""
	}
	return n.natsURL
}

// Start starts the node's process and waits until it logs its start (its
// HTTP, NATS and ZooKeeper sides are then up; it may not serve yet). The
// node must be down.
func (n *Node) Start() error {
	n.mu.Lock()
	if n.state != Down {
		n.mu.Unlock()
		return fmt.Errorf("chaos: start %s: it is %s", n.ID, n.state)
	}
	n.starts++
	starts := n.starts
	n.mu.Unlock()

	logf, err := os.OpenFile(n.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	fmt.Fprintf(logf, "=== chaos: start #%d of %s at %s\n", starts, n.ID, time.Now().Format(time.RFC3339Nano))
	pr, pw, err := os.Pipe()
	if err != nil {
		logf.Close()
		return err
	}
	cmd := exec.Command(n.bin, n.args...)
	cmd.Stdout, cmd.Stderr = pw, pw
	run, err := n.proc.Start(cmd)
	pw.Close() // the child has its own copy
	if err != nil {
		pr.Close()
		logf.Close()
		return fmt.Errorf("chaos: start %s: %w", n.ID, err)
	}
	started := make(chan string, 1)
	reader := make(chan struct{})
	go copyLog(pr, logf, started, reader)

	timer := time.NewTimer(nodeStartTimeout)
	defer timer.Stop()
	select {
	case url := <-started:
		now := time.Now()
		n.mu.Lock()
		n.state, n.run, n.pid, n.natsURL, n.reader = Up, run, cmd.Process.Pid, url, reader
		n.mu.Unlock()
		n.tl.add(now, n.ID, Up)
		return nil
	case <-run.Done():
		<-reader
		n.proc.Stop()
		return fmt.Errorf("chaos: %s exited while starting: %v (log %s)", n.ID, run.Err(), n.logPath)
	case <-timer.C:
		n.proc.Stop()
		<-reader
		return fmt.Errorf("%w: %s after %s (log %s)", ErrStartTimeout, n.ID, nodeStartTimeout, n.logPath)
	}
}

// copyLog copies the node's output from r to the log file line by line,
// sends the NATS URL of the start line on started, and closes done at the
// end of the output (the process and its copies of the pipe are gone).
func copyLog(r *os.File, logf *os.File, started chan<- string, done chan<- struct{}) {
	defer close(done)
	defer logf.Close()
	defer r.Close()
	br := bufio.NewReaderSize(r, 64<<10)
	found := false
	for {
		line, err := br.ReadString('\n')
		if len(line) > 0 {
			_, _ = io.WriteString(logf, line)
			if !found {
				if m := startedRE.FindStringSubmatch(line); m != nil {
					found = true
					started <- m[2]
				}
			}
		}
		if err != nil {
			return
		}
	}
}

// Exited reports whether the node's process exited although the harness
// did not stop it (a crash), with its exit status; the node is then marked
// down.
func (n *Node) Exited() (bool, error) {
	n.mu.Lock()
	run, state := n.run, n.state
	n.mu.Unlock()
	if state == Down || run == nil {
		return false, nil
	}
	select {
	case <-run.Done():
		n.Kill()
		return true, run.Err()
	default:
		return false, nil
	}
}

// Kill kills the node's process (SIGKILL, also when paused) and waits
// until it is reaped. Killing a down node does nothing.
func (n *Node) Kill() {
	n.mu.Lock()
	reader, was := n.reader, n.state
	n.state, n.reader = Down, nil
	n.mu.Unlock()
	n.proc.Stop()
	if reader != nil {
		<-reader
	}
	if was != Down {
		n.tl.add(time.Now(), n.ID, Down)
	}
}

// Term sends SIGTERM (a graceful leave) and waits until the process exits,
// at most timeout; then it kills it. It returns the exit status (nil: exit
// 0) and whether the node exited by itself in time.
func (n *Node) Term(timeout time.Duration) (exitErr error, inTime bool, err error) {
	n.mu.Lock()
	run, pid, state := n.run, n.pid, n.state
	n.mu.Unlock()
	if state != Up {
		return nil, false, fmt.Errorf("%w: SIGTERM to %s (%s)", ErrNotUp, n.ID, state)
	}
	if err := syscall.Kill(-pid, syscall.SIGTERM); err != nil {
		return nil, false, fmt.Errorf("chaos: SIGTERM to %s: %w", n.ID, err)
	}
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case <-run.Done():
		inTime = true
		exitErr = run.Err()
	case <-timer.C:
	}
	n.Kill()
	return exitErr, inTime, nil
}

// Pause suspends the node's process group (SIGSTOP).
func (n *Node) Pause() error { return n.signal(syscall.SIGSTOP, Up, Paused) }

// Resume continues a paused node (SIGCONT).
func (n *Node) Resume() error { return n.signal(syscall.SIGCONT, Paused, Up) }

func (n *Node) signal(sig syscall.Signal, from, to NodeState) error {
	n.mu.Lock()
	pid, state := n.pid, n.state
	if state != from {
		n.mu.Unlock()
		return fmt.Errorf("chaos: %v to %s: it is %s", sig, n.ID, state)
	}
	err := syscall.Kill(-pid, sig)
	if err == nil {
		n.state = to
	}
	n.mu.Unlock()
	if err != nil {
		return fmt.Errorf("chaos: %v to %s: %w", sig, n.ID, err)
	}
	n.tl.add(time.Now(), n.ID, to)
	return nil
}

// Transition is one node state change made by the harness.
type Transition struct {
	At    time.Time
	Node  string
	State NodeState
}

// Timeline is the ordered list of node state changes. Safe for concurrent
// use.
type Timeline struct {
	mu sync.Mutex
	ts []Transition
}

func (tl *Timeline) add(at time.Time, node string, s NodeState) {
	tl.mu.Lock()
	tl.ts = append(tl.ts, Transition{At: at, Node: node, State: s})
	tl.mu.Unlock()
}

// Transitions returns a copy of the transitions so far, in the order they
// were made.
func (tl *Timeline) Transitions() []Transition {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	return append([]Transition(nil), tl.ts...)
}

// BuildNode builds cmd/node into dir and returns the binary's path. It is
// built without the race detector whatever the test binary was built
// with: the nodes are processes of their own, and faster without it.
func BuildNode(t testing.TB, dir string) string {
	t.Helper()
	root, err := testproc.Kind{Pkg: "chaos", Name: "squall-node", Script: "zk.sh"}.ModuleRoot()
	if err != nil {
		t.Fatalf("chaos: %v", err)
	}
	bin := filepath.Join(dir, "squall-node")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/node")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "GOFLAGS="+withoutRace(os.Getenv("GOFLAGS")))
	start := time.Now()
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("chaos: go build ./cmd/node: %v\n%s", err, out)
	}
	t.Logf("chaos: built squall-node (no -race) in %s", time.Since(start).Round(100*time.Millisecond))
	return bin
}

// withoutRace drops -race from a GOFLAGS value.
func withoutRace(goflags string) string {
	var keep []string
	for _, f := range strings.Fields(goflags) {
		if f != "-race" && f != "-race=true" {
			keep = append(keep, f)
		}
	}
	return strings.Join(keep, " ")
}
