package main

import (
	"fmt"
	"math/rand/v2"
	"net/http"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/squallhq/squall/internal/natstest"
	"github.com/squallhq/squall/internal/testutil"
	"github.com/squallhq/squall/internal/zktest"
	"github.com/squallhq/squall/jslog"
)

// The cluster without Kafka: a JetStream stream with 3 replicas on an
// external 3-server NATS cluster is the log, ZooKeeper fences ownership
// and progress. Each test posts events with unique ids over HTTP to any
// node, as a client does (a batch refused or unanswered is sent again,
// same ids), injects a fault under load, and checks every key's count and
// sum exactly: 0 lost, 0 double-counted.

const (
	// jsEvents events over jsKeys keys at jsRate events/s: about 20s of
	// load, long enough for each fault to fall inside it.
	jsEvents, jsKeys, jsRate = 200_000, 10_000, 10_000
)

// jsCluster is ZooKeeper, a 3-server JetStream cluster, and the arguments
// a node needs to join them.
type jsCluster struct {
	zk   *zktest.Server
	nats []*server.Server
	urls string // every server's client URL, comma separated
	name string
}

func startJSCluster(t *testing.T, name string) *jsCluster {
	t.Helper()
	jc := &jsCluster{zk: zktest.Start(t), nats: natstest.StartJSCluster(t, 3), name: name}
	jc.urls = natstest.ClientURLs(jc.nats)
	return jc
}

func (jc *jsCluster) node(t *testing.T, id, httpAddr, remoteAddr string) *cnode {
	t.Helper()
	return startMember(t, jc.zk.Addr(), jc.name, id, httpAddr, remoteAddr,
		"--nats-url", jc.urls, "--jetstream-replicas", "3")
}

// jsLoad is a jsCluster with three nodes, n1..n3 on fixed addresses (each
// can restart as itself), posted to in the background by post.
type jsLoad struct {
	*jsCluster
	nodes []*cnode
	addrs [][2]string
	live  *liveNodes // the nodes posted to
	pr    *produced
	done  <-chan struct{} // closed when every batch is acknowledged
}

// startJSLoad starts a jsCluster and its nodes, waits for them to settle,
// and starts posting jsEvents events over jsKeys keys at jsRate.
func startJSLoad(t *testing.T, name string) *jsLoad {
	t.Helper()
	if testing.Short() {
		t.Skip("starts ZooKeeper, a JetStream cluster and three nodes")
	}
	l := &jsLoad{jsCluster: startJSCluster(t, name), pr: newProduced()}
	for i := range 3 {
		l.addrs = append(l.addrs, [2]string{freeAddr(t), freeAddr(t)})
		l.nodes = append(l.nodes, l.node(t, fmt.Sprintf("n%d", i+1), l.addrs[i][0], l.addrs[i][1]))
	}
	waitSettled(t, l.nodes, 30*time.Second)
	l.live = newLiveNodes(l.nodes)
	done := make(chan struct{})
	go func() {
		defer close(done)
		l.pr.post(t, l.live.get, keys(jsKeys), jsEvents, jsRate)
	}()
	l.done = done
	return l
}

// restart starts node i again, as itself, and posts to it.
func (l *jsLoad) restart(t *testing.T, i int) {
	t.Helper()
	l.nodes[i] = l.node(t, fmt.Sprintf("n%d", i+1), l.addrs[i][0], l.addrs[i][1])
	l.live.set(l.nodes)
}

// liveNodes is the set of nodes a client posts to; safe for concurrent
// use.
type liveNodes struct{ p atomic.Pointer[[]*cnode] }

func newLiveNodes(nodes []*cnode) *liveNodes {
	l := &liveNodes{}
	l.set(nodes)
	return l
}

func (l *liveNodes) get() []*cnode { return *l.p.Load() }

func (l *liveNodes) set(nodes []*cnode) { l.p.Store(&nodes) }

// post sends n events with unique ids over keys to the nodes as NDJSON over
// HTTP, in batches of 500 from 4 clients at about rate events/s, and
// records each batch once a node has acknowledged it (202, every event
// accepted): sent then counts acknowledged events. A batch refused or
// unanswered (its node killed, the log unavailable: 503) is sent again
// with the same ids to a node nodes returns, as a client retries, for up
// to a minute.
func (pr *produced) post(t *testing.T, nodes func() []*cnode, keys []string, n, rate int) {
	const batch, clients = 500, 4
	run := rand.Uint64() // ids unique across calls
	start := time.Now()
	var next atomic.Int64
	var wg sync.WaitGroup
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				lo := int(next.Add(1)-1) * batch
				if lo >= n {
					return
				}
				if ahead := time.Duration(float64(lo)/float64(rate)*float64(time.Second)) - time.Since(start); ahead > 0 {
					time.Sleep(ahead) // steady rate
				}
				hi := min(lo+batch, n)
				lines := make([]string, 0, hi-lo)
				count, sum := map[string]int{}, map[string]int64{}
				for j := lo; j < hi; j++ {
					key := keys[rand.IntN(len(keys))]
					v := int64(j%997) + 1
					lines = append(lines, fmt.Sprintf(`{"key":%q,"ts":%d,"value":%d,"id":"h%x-%d"}`, key, 1764064800000+int64(j%30000), v, run, j))
					count[key]++
					sum[key] += v
				}
				var last string
				acked := false
				for deadline := time.Now().Add(time.Minute); !acked && time.Now().Before(deadline); {
					ns := nodes()
					to := ns[rand.IntN(len(ns))]
					code, r, err := post(to.httpAddr, lines)
					if acked = err == nil && code == http.StatusAccepted && r.Accepted == len(lines); !acked {
						last = fmt.Sprintf("%s: %d %+v %v", to.id, code, r, err)
						pr.retries.Add(1)
						time.Sleep(50 * time.Millisecond) // a client's backoff
					}
				}
				if !acked {
					t.Errorf("batch of events %d..%d not acknowledged within a minute: %s", lo, hi, last)
					return
				}
				pr.mu.Lock()
				for k, c := range count {
					pr.count[k] += c
					pr.sum[k] += sum[k]
				}
				pr.n += hi - lo
				pr.mu.Unlock()
			}
		}()
	}
	wg.Wait()
}

// waitAcked waits for n events to be acknowledged.
func (pr *produced) waitAcked(t *testing.T, n int) {
	t.Helper()
	testutil.Eventually(t, 2*time.Minute, func() bool { return pr.sent() >= n }, "%d events acknowledged", n)
}

// waitSourcesLive waits for every partition's source on nodes to be live
// (its replay done) and returns how long that took.
func waitSourcesLive(t *testing.T, nodes []*cnode, timeout time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	testutil.Eventually(t, timeout, func() bool {
		live := 0
		for _, n := range nodes {
			doc, err := clusterDoc(n.httpAddr)
			if err != nil {
				return false
			}
			for _, s := range doc.Sources {
				if s.State == "live" {
					live++
				}
			}
		}
		return live == clusterPartitions
	}, "not every partition's source is live")
	return time.Since(start)
}

// One node killed with kill -9 mid-stream and restarted later: the
// survivors rebuild its partitions by replaying the JetStream log from the
// progress in ZooKeeper, and every key counts each event exactly once.
func TestJetStreamClusterKill9(t *testing.T) {
	l := startJSLoad(t, "jskill9")
	nodes, pr := l.nodes, l.pr
	pr.waitAcked(t, jsEvents/4) // mid-stream
	victim := nodes[2]
	t.Logf("kill -9 after %d events acknowledged", pr.sent())
	rest := nodes[:2]
	victim.cmd.Process.Kill()
	<-victim.exited
	killedAt := time.Now()
	// Batches in flight to it, and those sent to it until the cluster
	// settles without it, are sent again to another node.
	waitSettled(t, rest, sessionTimeout+10*time.Second)
	l.live.set(rest) // as a load balancer does once its health check fails
	owned := time.Since(killedAt)
	waitSourcesLive(t, rest, 30*time.Second)
	t.Logf("kill -9 → partitions owned again after %s, served with rebuilt state after %s (session timeout %s)",
		owned.Round(10*time.Millisecond), time.Since(killedAt).Round(10*time.Millisecond), sessionTimeout)
	// The survivors rebuilt the dead node's partitions by replay.
	replayed := metricValue(t, rest[0].httpAddr, "squall_log_replay_messages_total") +
		metricValue(t, rest[1].httpAddr, "squall_log_replay_messages_total")
	if replayed == 0 {
		t.Fatal("no log message was replayed after the kill")
	}
	t.Logf("log messages replayed to rebuild the dead node's partitions: %.0f", replayed)
	l.restart(t, 2)
	<-l.done
	waitSettled(t, l.nodes, 30*time.Second)
	pr.verify(t, l.nodes, 60*time.Second)
	t.Logf("%d events over %d keys: every count and sum exact; %d batches sent again", pr.n, len(pr.count), pr.retries.Load())
}

// Each node in turn stopped with SIGTERM and started again under load:
// planned moves hand the state over, and every key counts each event
// exactly once.
func TestJetStreamClusterRollingRestart(t *testing.T) {
	l := startJSLoad(t, "jsrolling")
	nodes, pr := l.nodes, l.pr
	for i := range nodes {
		pr.waitAcked(t, (i+1)*jsEvents/5) // each restart under load
		l.live.set(others(nodes, nodes[i]))
		nodes[i].cmd.Process.Signal(syscall.SIGTERM)
		if err := <-nodes[i].exited; err != nil {
			t.Fatalf("n%d exit after SIGTERM: %v", i+1, err)
		}
		l.restart(t, i)
		waitSettled(t, nodes, 30*time.Second)
	}
	<-l.done
	pr.verify(t, nodes, 60*time.Second)
	applied := handoffsUsed(t, nodes)
	t.Logf("%d events over %d keys: every count and sum exact; %.0f handoffs used as they were; %d batches sent again",
		pr.n, len(pr.count), applied, pr.retries.Load())
}

// The stream's leader, one of the three NATS servers, shut down under load
// and started again: the stream elects another leader (publishes wait for
// it, or fail and are sent again), the nodes' connections move to the other
// servers, the restarted server catches up, and every key counts each
// event exactly once.
func TestJetStreamClusterNATSServerRestart(t *testing.T) {
	l := startJSLoad(t, "jsnats")
	nodes, pr := l.nodes, l.pr
	pr.waitAcked(t, jsEvents/4)
	leader := -1
	for i, s := range l.nats {
		if s.JetStreamIsStreamLeader(server.DEFAULT_GLOBAL_ACCOUNT, jslog.DefaultStream) {
			leader = i
		}
	}
	if leader < 0 {
		t.Fatal("the log stream has no leader")
	}
	name := l.nats[leader].Name()
	stopped := natstest.StopJS(t, l.nats[leader], l.nats)
	down := pr.sent()
	// The log goes on with two of its three replicas.
	pr.waitAcked(t, down+jsEvents/4)
	l.nats[leader] = stopped.Start(t)
	testutil.Eventually(t, time.Minute, func() bool {
		for _, s := range l.nats {
			if !s.JetStreamIsStreamCurrent(server.DEFAULT_GLOBAL_ACCOUNT, jslog.DefaultStream) {
				return false
			}
		}
		return true
	}, "the restarted server %s did not catch up with the stream", name)
	<-l.done
	pr.verify(t, nodes, 60*time.Second)
	resets := 0.0
	for _, n := range nodes {
		resets += metricValue(t, n.httpAddr, "squall_log_consumer_resets_total")
	}
	t.Logf("stream leader %s stopped after %d events acknowledged, started again after %d more; %d events over %d keys: every count and sum exact; %d batches sent again; %.0f partition consumers recreated",
		name, down, jsEvents/4, pr.n, len(pr.count), pr.retries.Load(), resets)
}
