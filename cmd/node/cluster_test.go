package main

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/squallhq/squall/api"
	"github.com/squallhq/squall/internal/testproc"
	"github.com/squallhq/squall/internal/testutil"
	"github.com/squallhq/squall/internal/zktest"
)

const (
	clusterPartitions = 12
	sessionTimeout    = 4 * time.Second
)

// cnode is one squall-node process of a test cluster.
type cnode struct {
	*proc
	id   string
	args []string
}

// freeAddr returns an address for a node that restarts on it later (see
// testproc.FreePort for why not "127.0.0.1:0" closed again).
func freeAddr(t *testing.T) string { return testproc.FreeAddr(t) }

// startMember starts node id in cluster name on ZooKeeper zkAddr. With
// fixed addresses, httpAddr and remoteAddr are used as given.
func startMember(t *testing.T, zkAddr, name, id, httpAddr, remoteAddr string, extra ...string) *cnode {
	t.Helper()
	if httpAddr == "" {
		httpAddr = "127.0.0.1:0"
	}
	if remoteAddr == "" {
		remoteAddr = "127.0.0.1:0"
	}
	args := append([]string{"--zk", zkAddr, "--cluster", name, "--node-id", id,
		"--http-addr", httpAddr, "--nats-addr", "127.0.0.1:0", "--remote-addr", remoteAddr,
		"--partitions", strconv.Itoa(clusterPartitions), "--zk-session-timeout", sessionTimeout.String(),
		"--await-handoff", "5s"}, extra...)
	return &cnode{proc: startProc(t, buildNode(t), args...), id: id, args: args}
}

func startCluster(t *testing.T, zkAddr, name string, n int) []*cnode {
	t.Helper()
	nodes := make([]*cnode, n)
	for i := range nodes {
		nodes[i] = startMember(t, zkAddr, name, fmt.Sprintf("n%d", i+1), "", "")
	}
	waitSettled(t, nodes, 20*time.Second)
	return nodes
}

func clusterDoc(addr string) (*api.Cluster, error) {
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get("http://" + addr + "/debug/cluster")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return nil, fmt.Errorf("status %d", resp.StatusCode)
	}
	var doc api.Cluster
	return &doc, json.NewDecoder(resp.Body).Decode(&doc)
}

// settled checks that the live nodes agree: same members (exactly these),
// one acting leader, every partition owned by one of them, balanced, and
// each node serving exactly what the assignment gives it.
func settled(nodes []*cnode) error {
	var ids []string
	for _, n := range nodes {
		ids = append(ids, n.id)
	}
	sort.Strings(ids)
	var gen int64 = -1
	leaders := 0
	for _, n := range nodes {
		doc, err := clusterDoc(n.httpAddr)
		if err != nil {
			return fmt.Errorf("%s: %v", n.id, err)
		}
		var members []string
		for _, m := range doc.Members {
			members = append(members, m.ID)
		}
		if !slices.Equal(members, ids) {
			return fmt.Errorf("%s sees members %v, want %v", n.id, members, ids)
		}
		if gen >= 0 && doc.Generation != gen {
			return fmt.Errorf("generations differ: %d and %d", gen, doc.Generation)
		}
		gen = doc.Generation
		if doc.Leader == doc.Self {
			leaders++
		}
		var mine []int32
		for p := 0; p < clusterPartitions; p++ {
			owner := doc.Assignment[strconv.Itoa(p)]
			if !slices.Contains(ids, owner) {
				return fmt.Errorf("partition %d owned by %q", p, owner)
			}
			if owner == n.id {
				mine = append(mine, int32(p))
			}
		}
		if !slices.Equal(mine, doc.Serving) {
			return fmt.Errorf("%s serves %v, assigned %v", n.id, doc.Serving, mine)
		}
	}
	if leaders != 1 {
		return fmt.Errorf("%d acting leaders", leaders)
	}
	// The assignment covers every member, balanced: a node that joined is
	// in it (one written before the join is not settled).
	doc, err := clusterDoc(nodes[0].httpAddr)
	if err != nil {
		return err
	}
	owned := map[string]int{}
	for _, owner := range doc.Assignment {
		owned[owner]++
	}
	lo, hi := clusterPartitions, 0
	for _, id := range ids {
		lo, hi = min(lo, owned[id]), max(hi, owned[id])
	}
	if hi-lo > 1 {
		return fmt.Errorf("assignment not balanced over %v: %v", ids, owned)
	}
	return nil
}

func waitSettled(t *testing.T, nodes []*cnode, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := settled(nodes)
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("cluster not settled after %s: %v", timeout, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// sender posts events with unique ids to the nodes and remembers what each
// key was sent.
type sender struct {
	mu   sync.Mutex
	want map[string]*agg
	seq  atomic.Int64
}

func newSender() *sender { return &sender{want: map[string]*agg{}} }

// send posts events to one of nodes, trying the others when one refuses
// (ids make the retry safe).
func (s *sender) send(t *testing.T, nodes func() []*cnode, keys []string, ts int64) {
	body := strings.Builder{}
	type ev struct {
		key string
		v   float64
	}
	var evs []ev
	for _, k := range keys {
		id := s.seq.Add(1)
		v := float64(id % 1000)
		evs = append(evs, ev{k, v})
		fmt.Fprintf(&body, `{"key":%q,"ts":%d,"value":%v,"id":"e%d"}`+"\n", k, ts, v, id)
	}
	c := http.Client{Timeout: 30 * time.Second}
	for attempt := 0; ; attempt++ {
		ns := nodes()
		n := ns[rand.IntN(len(ns))]
		resp, err := c.Post("http://"+n.httpAddr+"/v1/events", "application/x-ndjson", strings.NewReader(body.String()))
		if err == nil {
			var r api.IngestResponse
			json.NewDecoder(resp.Body).Decode(&r)
			resp.Body.Close()
			if resp.StatusCode == 202 && r.Accepted == len(keys) {
				break
			}
			err = fmt.Errorf("%s: %d %+v", n.id, resp.StatusCode, r)
		}
		if attempt == 20 {
			t.Errorf("send failed: %v", err)
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, e := range evs {
		if s.want[e.key] == nil {
			s.want[e.key] = &agg{}
		}
		s.want[e.key].add(ts, e.v)
	}
}

func keyState(addr, key string) (*api.KeyState, int, error) {
	c := http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get("http://" + addr + "/debug/actors/" + url.PathEscape(key))
	if err != nil {
		return nil, 0, err
	}
	defer resp.Body.Close()
	var st api.KeyState
	if resp.StatusCode == 200 {
		err = json.NewDecoder(resp.Body).Decode(&st)
	}
	return &st, resp.StatusCode, err
}

// check compares every key's count and sum, read through any node, with
// what was sent.
func (s *sender) check(t *testing.T, nodes []*cnode) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	bad := 0
	i := 0
	for key, w := range s.want {
		n := nodes[i%len(nodes)]
		i++
		st, code, err := keyState(n.httpAddr, key)
		if err != nil || code != 200 {
			t.Errorf("GET %s via %s: %d %v", key, n.id, code, err)
			bad++
		} else if st.Window.Count != uint64(w.count) || st.Window.Sum != w.sum {
			t.Errorf("%s: count %d sum %v, sent %d events summing %v (owner %s, partition %d, activated %s, applied %d, dup %d, late %d)", key, st.Window.Count, st.Window.Sum, w.count, w.sum, st.Node, st.Partition, st.ActivatedAt.Format("15:04:05.000"), st.EventsApplied, st.DuplicatesDropped, st.LateDropped)
			bad++
		}
		if bad > 10 {
			t.Fatal("too many wrong keys")
		}
	}
}

func keys(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("srv-%04d.cpu", i)
	}
	return out
}

// Three nodes join; one leader; every partition one owner; events sent to
// every node end on the owners with correct aggregates.
func TestClusterRouting(t *testing.T) {
	if testing.Short() {
		t.Skip("starts ZooKeeper and three nodes")
	}
	z := zktest.Start(t)
	nodes := startCluster(t, z.Addr(), "routing", 3)
	s := newSender()
	ks := keys(1000)
	for i, n := range nodes { // each key gets one event through each node
		one := []*cnode{n}
		s.send(t, func() []*cnode { return one }, ks, 1764064800000+int64(i)*1000)
	}
	s.check(t, nodes)
	// Every node owns what the assignment says, and each key's state lives
	// on its partition's owner.
	doc, err := clusterDoc(nodes[0].httpAddr)
	if err != nil {
		t.Fatal(err)
	}
	st, _, _ := keyState(nodes[2].httpAddr, ks[0])
	if owner := doc.Assignment[strconv.Itoa(int(st.Partition))]; st.Node != owner {
		t.Fatalf("key %s on %s, partition %d owned by %s", ks[0], st.Node, st.Partition, owner)
	}
	// Routed traffic is counted per peer.
	routed := false
	for _, p := range doc.Peers {
		routed = routed || (p.EventsSent > 0 && p.BytesSent > 0)
	}
	if !routed {
		t.Fatalf("no routed traffic in %+v", doc.Peers)
	}
	// The cluster-wide listing sees every key.
	resp, err := http.Get("http://" + nodes[1].httpAddr + "/debug/actors?scope=cluster&limit=5000")
	if err != nil {
		t.Fatal(err)
	}
	var kl api.KeyList
	json.NewDecoder(resp.Body).Decode(&kl)
	resp.Body.Close()
	if kl.Live != 1000 || len(kl.Keys) != 1000 {
		t.Fatalf("cluster listing: live %d keys %d", kl.Live, len(kl.Keys))
	}
}

var wroteRE = regexp.MustCompile(`msg="wrote assignment" epoch=(\d+)`)

// leaderOf returns the acting leader among nodes, as they report it.
func leaderOf(nodes []*cnode) (*cnode, int64) {
	for _, n := range nodes {
		if doc, err := clusterDoc(n.httpAddr); err == nil && doc.Leader == doc.Self {
			return n, doc.Epoch
		}
	}
	return nil, 0
}

// watchLeaders samples every node's view until stop and fails the test if
// two nodes ever act as leader at the same sampled instant.
func watchLeaders(t *testing.T, nodes []*cnode, stop <-chan struct{}) *sync.WaitGroup {
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
			var acting []string
			for _, n := range nodes {
				if doc, err := clusterDoc(n.httpAddr); err == nil && doc.Leader == doc.Self {
					acting = append(acting, fmt.Sprintf("%s@%d", n.id, doc.Epoch))
				}
			}
			if len(acting) > 1 {
				t.Errorf("two acting leaders at once: %v", acting)
			}
		}
	}()
	return &wg
}

func others(nodes []*cnode, x *cnode) []*cnode {
	var out []*cnode
	for _, n := range nodes {
		if n != x {
			out = append(out, n)
		}
	}
	return out
}

// Kill -9 the leader: a new leader with a higher epoch within the session
// timeout + 5 s, the dead node's partitions reassigned, never two leaders.
func TestLeaderKilled(t *testing.T) {
	if testing.Short() {
		t.Skip("starts ZooKeeper and three nodes")
	}
	z := zktest.Start(t)
	nodes := startCluster(t, z.Addr(), "kill", 3)
	leader, epoch := leaderOf(nodes)
	if leader == nil {
		t.Fatal("no leader")
	}
	stop := make(chan struct{})
	wg := watchLeaders(t, nodes, stop)
	defer func() { close(stop); wg.Wait() }()
	killed := time.Now()
	leader.cmd.Process.Kill()
	<-leader.exited
	rest := others(nodes, leader)
	waitSettled(t, rest, sessionTimeout+5*time.Second)
	took := time.Since(killed)
	_, newEpoch := leaderOf(rest)
	if newEpoch <= epoch {
		t.Fatalf("new epoch %d not above %d", newEpoch, epoch)
	}
	t.Logf("kill -9 of the leader → new leader and every partition owned again: %s (session timeout %s)", took.Round(10*time.Millisecond), sessionTimeout)
}

// SIGSTOP the leader past its session timeout, then SIGCONT: it must not
// write an assignment with its old epoch, and it steps down.
func TestLeaderPausedPastSession(t *testing.T) {
	if testing.Short() {
		t.Skip("starts ZooKeeper and three nodes")
	}
	z := zktest.Start(t)
	nodes := startCluster(t, z.Addr(), "pause", 3)
	leader, oldEpoch := leaderOf(nodes)
	if leader == nil {
		t.Fatal("no leader")
	}
	// Record every assignment version written, with its epoch.
	conn, _, err := zk.Connect([]string{z.Addr()}, 10*time.Second, zk.WithLogInfo(false))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	var mu sync.Mutex
	var epochs []int64
	stopWatch := make(chan struct{})
	watchDone := make(chan struct{})
	go func() {
		defer close(watchDone)
		for {
			b, _, ch, err := conn.GetW("/squall/pause/assignment")
			if err == nil {
				var a struct{ Epoch int64 }
				json.Unmarshal(b, &a)
				mu.Lock()
				epochs = append(epochs, a.Epoch)
				mu.Unlock()
			}
			select {
			case <-stopWatch:
				return
			case <-ch:
			case <-time.After(time.Second):
			}
		}
	}()
	defer func() { close(stopWatch); <-watchDone }()

	stop := make(chan struct{})
	wg := watchLeaders(t, nodes, stop)
	leader.cmd.Process.Signal(syscall.SIGSTOP)
	rest := others(nodes, leader)
	testutil.Eventually(t, sessionTimeout+5*time.Second, func() bool {
		l, e := leaderOf(rest)
		return l != nil && e > oldEpoch
	}, "no new leader while the old one is stopped")
	time.Sleep(sessionTimeout) // well past the stopped leader's session
	leader.mu.Lock()
	before := len(leader.log.String())
	leader.mu.Unlock()
	leader.cmd.Process.Signal(syscall.SIGCONT)
	// It rejoins as a follower and the cluster settles with all three.
	waitSettled(t, nodes, 20*time.Second)
	close(stop)
	wg.Wait()
	if l, _ := leaderOf(nodes); l == leader {
		t.Fatal("the paused leader is leading again")
	}
	leader.mu.Lock()
	after := leader.log.String()[before:]
	leader.mu.Unlock()
	for _, m := range wroteRE.FindAllStringSubmatch(after, -1) {
		if e, _ := strconv.ParseInt(m[1], 10, 64); e <= oldEpoch {
			t.Fatalf("resumed leader wrote an assignment with its old epoch %d:\n%s", e, after)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	for i := 1; i < len(epochs); i++ {
		if epochs[i] < epochs[i-1] {
			t.Fatalf("assignment epochs went back: %v", epochs)
		}
	}
}

// ZooKeeper paused for less than the session timeout: no reassignment.
func TestZooKeeperPauseShort(t *testing.T) {
	if testing.Short() {
		t.Skip("starts ZooKeeper and three nodes")
	}
	z := zktest.Start(t)
	nodes := startCluster(t, z.Addr(), "zkpause", 3)
	before, err := clusterDoc(nodes[0].httpAddr)
	if err != nil {
		t.Fatal(err)
	}
	z.Pause(t)
	time.Sleep(sessionTimeout / 2)
	z.Resume(t)
	time.Sleep(sessionTimeout) // time enough for a wrong reaction to show
	waitSettled(t, nodes, 10*time.Second)
	after, err := clusterDoc(nodes[0].httpAddr)
	if err != nil {
		t.Fatal(err)
	}
	if after.Generation != before.Generation || after.Epoch != before.Epoch {
		t.Fatalf("reassigned: generation %d→%d epoch %d→%d", before.Generation, after.Generation, before.Epoch, after.Epoch)
	}
}

// A graceful leave and a join under steady load: every key's aggregates
// equal what was sent.
func TestLeaveAndJoinUnderLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("starts ZooKeeper and four nodes")
	}
	z := zktest.Start(t)
	nodes := startCluster(t, z.Addr(), "moves", 3)
	var live atomic.Pointer[[]*cnode]
	live.Store(&nodes)
	s := newSender()
	ks := keys(2000)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := 0; w < 2; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for round := 0; ; round++ {
				select {
				case <-stop:
					return
				default:
				}
				lo := (round * 100) % len(ks)
				s.send(t, func() []*cnode { return *live.Load() }, ks[lo:lo+100], 1764064800000+int64(round*2+w)*5) // stays well inside the 10m window
			}
		}(w)
	}
	time.Sleep(time.Second)
	// Graceful leave of n2.
	leaving := nodes[1]
	rest := others(nodes, leaving)
	live.Store(&rest)
	leaving.cmd.Process.Signal(syscall.SIGTERM)
	if err := <-leaving.exited; err != nil {
		t.Fatalf("leaving node exit: %v", err)
	}
	waitSettled(t, rest, 15*time.Second)
	time.Sleep(time.Second)
	// A new node joins.
	n4 := startMember(t, z.Addr(), "moves", "n4", "", "")
	grown := append(append([]*cnode{}, rest...), n4)
	waitSettled(t, grown, 20*time.Second)
	live.Store(&grown)
	time.Sleep(time.Second)
	close(stop)
	wg.Wait()
	s.check(t, grown)
	t.Logf("%d keys, %d events checked", len(s.want), s.seq.Load())
}

// A node killed and restarted with the same id and address rejoins and
// serves partitions again.
func TestRestartSameID(t *testing.T) {
	if testing.Short() {
		t.Skip("starts ZooKeeper and three nodes")
	}
	z := zktest.Start(t)
	httpAddr, remoteAddr := freeAddr(t), freeAddr(t)
	nodes := []*cnode{
		startMember(t, z.Addr(), "restart", "n1", "", ""),
		startMember(t, z.Addr(), "restart", "n2", "", ""),
		startMember(t, z.Addr(), "restart", "n3", httpAddr, remoteAddr),
	}
	waitSettled(t, nodes, 20*time.Second)
	nodes[2].cmd.Process.Kill()
	<-nodes[2].exited
	nodes[2] = startMember(t, z.Addr(), "restart", "n3", httpAddr, remoteAddr)
	waitSettled(t, nodes, sessionTimeout+15*time.Second)
	doc, err := clusterDoc(httpAddr)
	if err != nil {
		t.Fatal(err)
	}
	if len(doc.Serving) == 0 {
		t.Fatal("restarted node serves nothing")
	}
	s := newSender()
	s.send(t, func() []*cnode { return nodes }, keys(300), 1764064800000)
	s.check(t, nodes)
}

// Node-to-node traffic over mutual TLS: events sent to any node reach
// their owners.
func TestClusterRemoteTLS(t *testing.T) {
	if testing.Short() {
		t.Skip("starts ZooKeeper and two nodes")
	}
	z := zktest.Start(t)
	_, cert, key := testutil.SelfSignedTLS(t)
	tlsArgs := []string{"--remote-tls-cert", cert, "--remote-tls-key", key, "--remote-tls-ca", cert}
	nodes := []*cnode{
		startMember(t, z.Addr(), "tls", "n1", "", "", tlsArgs...),
		startMember(t, z.Addr(), "tls", "n2", "", "", tlsArgs...),
	}
	waitSettled(t, nodes, 20*time.Second)
	s := newSender()
	for i, n := range nodes {
		one := []*cnode{n}
		s.send(t, func() []*cnode { return one }, keys(200), 1764064800000+int64(i)*1000)
	}
	s.check(t, nodes)
}
