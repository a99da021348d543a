package main

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/squallhq/squall/actors"
	"github.com/squallhq/squall/api"
	"github.com/squallhq/squall/cluster"
	"github.com/squallhq/squall/event"
	"github.com/squallhq/squall/internal/testutil"
	"github.com/squallhq/squall/internal/zktest"
	"github.com/squallhq/squall/transport"
	"github.com/squallhq/squall/window"
)

// The regression tests of fenced partition ownership: each one drives one
// of the failures seen under faults to the point where it lost or doubled
// events, and checks every key exactly.

// assignedTo returns the nodes the assignment seen by n gives partitions to.
func assignedTo(n *cnode) (map[string]int, error) {
	doc, err := clusterDoc(n.httpAddr)
	if err != nil {
		return nil, err
	}
	out := map[string]int{}
	for _, owner := range doc.Assignment {
		out[owner]++
	}
	return out, nil
}

// background produces n events over keys at 150,000 events/s (as produce
// does) on a goroutine of its own, and returns once after of them are
// produced; the channel is closed when all are.
func (pr *produced) background(t *testing.T, brokers, topic string, keys []string, n, after int) <-chan struct{} {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		pr.produce(t, brokers, topic, keys, n, 150_000)
	}()
	// A loaded machine (make test runs packages side by side, under -race)
	// produces far below the rate asked: wait on the count, not a margin.
	testutil.Eventually(t, 10*time.Minute, func() bool {
		pr.mu.Lock()
		defer pr.mu.Unlock()
		return pr.n >= after
	}, "%d events produced", after)
	return done
}

// Failure 1: a node killed with kill -9 and restarted at once, with the
// same id, as systemd or Kubernetes do. Its partitions go to the survivors,
// which start acquiring or replaying them, then come straight back: the
// survivors hand over partial state (or none), and the restarted node must
// rebuild every window exactly from the log.
func TestKafkaCrashQuickRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("starts ZooKeeper, Kafka and three nodes")
	}
	kc := startKafkaCluster(t, "quick")
	httpAddr, remoteAddr := freeAddr(t), freeAddr(t)
	nodes := []*cnode{kc.node(t, "n1", "", ""), kc.node(t, "n2", "", ""), kc.node(t, "n3", httpAddr, remoteAddr)}
	waitSettled(t, nodes, 30*time.Second)
	pr := newProduced()
	// Windows big enough that replaying a partition takes a while.
	done := pr.background(t, kc.kafka.Addr(), "quick-events", keys(20_000), 1_500_000, 1_000_000)
	victim := nodes[2]
	victim.cmd.Process.Kill()
	<-victim.exited
	// The moment the survivors are given the dead node's partitions, it
	// comes back, while they are still replaying them: they move twice
	// within a second, and the survivors hand over partial state.
	testutil.Eventually(t, sessionTimeout+10*time.Second, func() bool {
		owners, err := assignedTo(nodes[0])
		return err == nil && owners["n3"] == 0 && len(owners) == 2
	}, "the dead node's partitions reassigned")
	nodes[2] = kc.node(t, "n3", httpAddr, remoteAddr)
	<-done
	waitSettled(t, nodes, 60*time.Second)
	pr.verify(t, nodes, 60*time.Second)
	t.Logf("%d events over %d keys: every count and sum exact after a crash and a quick restart", pr.n, len(pr.count))
}

// Failure 5: two nodes join within milliseconds of each other, so
// partitions still waiting for their handoff are moved on.
func TestKafkaTwoJoinAtOnce(t *testing.T) {
	if testing.Short() {
		t.Skip("starts ZooKeeper, Kafka and three nodes")
	}
	kc := startKafkaCluster(t, "joins")
	nodes := []*cnode{kc.node(t, "n1", "", "")}
	waitSettled(t, nodes, 30*time.Second)
	pr := newProduced()
	done := pr.background(t, kc.kafka.Addr(), "joins-events", keys(20_000), 1_000_000, 600_000)
	started := make(chan *cnode, 2)
	for _, id := range []string{"n2", "n3"} {
		go func() { started <- kc.node(t, id, "", "") }()
	}
	nodes = append(nodes, <-started, <-started)
	<-done
	waitSettled(t, nodes, 60*time.Second)
	pr.verify(t, nodes, 60*time.Second)
}

// Failure 3: a handoff for a partition the node already serves must be
// refused, never laid over the keys it holds.
func TestHandoffToServingPartitionRefused(t *testing.T) {
	if testing.Short() {
		t.Skip("starts ZooKeeper and two nodes")
	}
	z := zktest.Start(t)
	nodes := startCluster(t, z.Addr(), "refuse", 2)
	s := newSender()
	ks := keys(200)
	s.send(t, func() []*cnode { return nodes }, ks, 1764064800000)
	s.check(t, nodes)
	key := ks[0]
	st, _, err := keyState(nodes[0].httpAddr, key)
	if err != nil {
		t.Fatal(err)
	}
	var owner *cnode
	for _, n := range nodes {
		if n.id == st.Node {
			owner = n
		}
	}
	doc, err := clusterDoc(owner.httpAddr)
	if err != nil {
		t.Fatal(err)
	}
	var remote string
	for _, m := range doc.Members {
		if m.ID == owner.id {
			remote = m.RemoteAddr
		}
	}
	// A snapshot of the key with 1,000 events, from a node that claims to
	// act on a newer assignment.
	shape := window.DefaultShape()
	w := window.New(&shape)
	for i := range 1000 {
		w.Add(&event.Event{Key: key, TS: 1764064800000 + int64(i), Value: 1})
	}
	b, err := w.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	tc := transport.DefaultConfig()
	tc.NodeID, tc.Addr = "intruder", "127.0.0.1:0"
	tc.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	tr, err := transport.Start(tc, nopHandler{})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err = tr.Handoff(ctx, owner.id, remote, st.Partition, doc.Generation+1, &transport.Cover{Offset: 1, Version: 1},
		[]actors.KeySnapshot{{Key: key, Window: b, Activated: time.Now(), LastEvent: time.Now()}})
	if !errors.Is(err, transport.ErrRemote) {
		t.Fatalf("handoff to a serving partition: %v, want refused", err)
	}
	s.check(t, nodes) // unchanged
	if v := metricValue(t, owner.httpAddr, `squall_ownership_refused_total{what="handoff"}`); v < 1 {
		t.Fatalf("refused handoffs counted %v, want ≥ 1", v)
	}
}

// nopHandler is a transport.Handler that serves nothing.
type nopHandler struct{}

func (nopHandler) Forward(context.Context, string, []event.Event, []actors.Result) error {
	return errors.New("not a node")
}
func (nopHandler) KeyState(context.Context, string) (*api.KeyState, error) {
	return nil, actors.ErrNotFound
}
func (nopHandler) KeyEvents(context.Context, string) (*api.KeyEvents, error) {
	return nil, actors.ErrNotFound
}
func (nopHandler) KeySeries(context.Context, string) (*api.KeySeries, error) {
	return nil, actors.ErrNotFound
}
func (nopHandler) KeyReplay(context.Context, string) (*api.KeyReplay, error) {
	return nil, actors.ErrNotFound
}
func (nopHandler) List(context.Context, string, string, int) (*api.KeyList, error) {
	return &api.KeyList{}, nil
}
func (nopHandler) Handoff(context.Context, *transport.HandoffChunk) error {
	return errors.New("not a node")
}

// Failure 7: readiness follows membership, and a node that wakes up from a
// pause past its session timeout answers no read from the state it had
// before: the key's new owner has applied events since.
func TestReadinessAndNoStaleReads(t *testing.T) {
	if testing.Short() {
		t.Skip("starts ZooKeeper, Kafka and nodes")
	}
	// Cut off from ZooKeeper: alive, not ready, and it says why.
	lone := startProc(t, buildNode(t), "--zk", "127.0.0.1:1", "--http-addr", "127.0.0.1:0", "--nats-addr", "127.0.0.1:0",
		"--remote-addr", "127.0.0.1:0", "--node-id", "lone", "--partitions", "4")
	probe := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	for _, path := range []string{"/healthz", "/readyz"} {
		resp, err := probe.Get("http://" + lone.httpAddr + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		want := map[string]int{"/healthz": 200, "/readyz": 503}[path]
		if resp.StatusCode != want {
			t.Fatalf("%s: %d %s, want %d", path, resp.StatusCode, body, want)
		}
		if path == "/readyz" && !strings.Contains(string(body), "not ready: ") {
			t.Fatalf("/readyz says %s: no reason", body)
		}
	}
	if doc, err := clusterDoc(lone.httpAddr); err != nil || doc.Ready || doc.NotReadyReason == "" {
		t.Fatalf("/debug/cluster of a node cut off: ready %v reason %q (%v)", doc.Ready, doc.NotReadyReason, err)
	}

	kc := startKafkaCluster(t, "stale")
	nodes := []*cnode{kc.node(t, "n1", "", ""), kc.node(t, "n2", "", "")}
	waitSettled(t, nodes, 30*time.Second)
	for _, n := range nodes {
		resp, err := probe.Get("http://" + n.httpAddr + "/readyz")
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("%s /readyz: %v %v", n.id, resp, err)
		}
		resp.Body.Close()
	}
	// A key n2 owns.
	doc, err := clusterDoc(nodes[0].httpAddr)
	if err != nil {
		t.Fatal(err)
	}
	var key string
	for _, k := range keys(100) {
		if doc.Assignment[strconv.Itoa(int(cluster.Partition(k, kafkaPartitions)))] == "n2" {
			key = k
			break
		}
	}
	pr := newProduced()
	pr.produce(t, kc.kafka.Addr(), "stale-events", []string{key}, 1000, 50_000)
	pr.verify(t, nodes, 30*time.Second)
	victim := nodes[1]
	victim.Signal(t, syscall.SIGSTOP)
	// n1 takes every partition over (n2's session expires) and applies more.
	testutil.Eventually(t, sessionTimeout+15*time.Second, func() bool {
		owners, err := assignedTo(nodes[0])
		return err == nil && owners["n1"] == kafkaPartitions
	}, "n1 owns every partition")
	pr.produce(t, kc.kafka.Addr(), "stale-events", []string{key}, 500, 50_000)
	pr.verify(t, nodes[:1], 30*time.Second)
	victim.Signal(t, syscall.SIGCONT)
	// From the first answer on, n2 gives the key's current state (from its
	// owner) or no answer — never the 1,000 events it held before.
	for deadline := time.Now().Add(3 * sessionTimeout); time.Now().Before(deadline); {
		st, code, err := keyState(victim.httpAddr, key)
		if err == nil && code == 200 && st.Window.Count != 1500 {
			t.Fatalf("read through the resumed node: count %d from %s, want 1500 (stale state served)", st.Window.Count, st.Node)
		}
		if err == nil && code == 200 && st.Node == "n1" {
			break
		}
	}
	waitSettled(t, nodes, 30*time.Second)
	pr.verify(t, nodes, 30*time.Second)
}

// signalled is a proc method, here so that fault tests read as they act.
func (p *proc) Signal(t *testing.T, sig syscall.Signal) {
	t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		t.Fatalf("signal %v: %v", sig, err)
	}
}
