package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os/exec"
	"regexp"
	"runtime"
	"strconv"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/squallhq/squall/api"
	"github.com/squallhq/squall/cluster"
	"github.com/squallhq/squall/internal/kafkatest"
	"github.com/squallhq/squall/internal/zktest"
	"github.com/squallhq/squall/node"
)

const clusterPartitions = 12

// settled reports whether the cluster documents agree: want members, all
// partitions assigned, and each node serving exactly its own.
func settled(docs []*api.Cluster, want int) bool {
	if len(docs) == 0 {
		return false
	}
	gen := docs[0].Generation
	for _, d := range docs {
		if d == nil || len(d.Members) != want || d.Generation != gen || len(d.Assignment) != d.PartitionCount {
			return false
		}
		owned := map[string]int{}
		for _, owner := range d.Assignment {
			owned[owner]++
		}
		// Every member is in the assignment, balanced, and serves its part.
		if len(owned) != want || owned[d.Self] != len(d.Serving) {
			return false
		}
		for _, n := range owned {
			if n < d.PartitionCount/want || n > (d.PartitionCount+want-1)/want {
				return false
			}
		}
	}
	return true
}

func httpDoc(addr string) (*api.Cluster, error) {
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get("http://" + addr + api.PathCluster)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var d api.Cluster
	return &d, json.NewDecoder(resp.Body).Decode(&d)
}

// waitSettled polls the nodes' /debug/cluster until they agree.
func waitSettled(addrs []string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		docs := make([]*api.Cluster, len(addrs))
		for i, a := range addrs {
			docs[i], _ = httpDoc(a)
		}
		if settled(docs, len(addrs)) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("cluster of %d not settled after %s", len(addrs), timeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// routing: three in-process nodes on a real ZooKeeper; clients post to n1
// events whose keys n1 does not own, so every event is forwarded to its
// owner over protoactor remote. Reports the forwarded throughput and the
// bytes on the wire per routed event against its JSON size.
func routing(r *run) ([]Result, error) {
	r.status("starting ZooKeeper")
	z := zktest.Start(r.tb)
	var nodes []*node.Node
	var addrs []string
	for i := range 3 {
		cfg := node.DefaultConfig()
		cfg.NodeID = fmt.Sprintf("n%d", i+1)
		cfg.HTTPAddr, cfg.NATSAddr, cfg.RemoteAddr = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
		cfg.ZK, cfg.Cluster, cfg.Partitions = z.Addr(), "bench-routing", clusterPartitions
		n, err := node.New(cfg, r.log)
		if err != nil {
			return nil, err
		}
		r.tb.Cleanup(func() { _ = n.Close() })
		nodes = append(nodes, n)
		addrs = append(addrs, n.HTTPAddr())
	}
	r.status("waiting for the assignment")
	if err := waitSettled(addrs, 30*time.Second); err != nil {
		return nil, err
	}
	doc, err := httpDoc(addrs[0])
	if err != nil {
		return nil, err
	}
	// Keys n1 does not own.
	var keys []string
	for k := 0; len(keys) < ingestKeys; k++ {
		name := keyName(k)
		if doc.Assignment[strconv.Itoa(int(cluster.Partition(name, clusterPartitions)))] != "n1" {
			keys = append(keys, name)
		}
	}
	rng := rand.New(rand.NewPCG(3, 4))
	const batch = 1000
	bodies := make([][]byte, 64)
	jsonBytes := 0
	for i := range bodies {
		var b []byte
		for j := range batch {
			n := len(b)
			b = fmt.Appendf(b, `{"key":%q,"ts":%d,"value":%.2f}`, keys[rng.IntN(len(keys))], t0+int64(i*batch+j), rng.Float64()*100)
			jsonBytes += len(b) - n
			b = append(b, '\n')
		}
		bodies[i] = b
	}
	size := jsonBytes / (len(bodies) * batch)
	cl := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 16}}
	defer cl.CloseIdleConnections()
	url := "http://" + addrs[0] + api.PathEvents
	if _, err := postBody(cl, url, bodies[0]); err != nil { // connections up
		return nil, err
	}
	before, err := httpDoc(addrs[0])
	if err != nil {
		return nil, err
	}
	r.status("posting to the non-owner")
	total, el, err := workers(4, r.sc.routeFor, func(w, i int) (int, error) {
		return postBody(cl, url, bodies[(w*16+i)%len(bodies)])
	})
	if err != nil {
		return nil, err
	}
	after, err := httpDoc(addrs[0])
	if err != nil {
		return nil, err
	}
	var bytes, evs uint64
	for peer, st := range after.Peers {
		b := before.Peers[peer]
		bytes += st.BytesSent - b.BytesSent
		evs += st.EventsSent - b.EventsSent
	}
	if evs == 0 {
		return nil, fmt.Errorf("no event was routed")
	}
	per := float64(bytes) / float64(evs)
	return []Result{{Scenario: r.name, Group: "cluster",
		Setup: Setup{Keys: len(keys), EventBytes: size, Batch: batch, Partitions: clusterPartitions, Nodes: 3,
			Cores: runtime.NumCPU(), Events: total},
		EventsPerSec: float64(total) / el.Seconds(), Duration: el, AllocsPerEvent: -1,
		Figures: []Figure{
			{"bytes/routed event", fmt.Sprintf("%.1f B (%.2f× its %d B of JSON; target ≤ 1.1×)", per, per/float64(size), size)},
			{"path", "HTTP → n1 → protoactor remote → owner (n2/n3), all on 2 cores"}}}}, nil
}

// proc is a squall-node child process.
type proc struct {
	cmd      *exec.Cmd
	httpAddr string
	natsURL  string
	exited   chan struct{}
}

var startedRE = regexp.MustCompile(`squall node started.*http=(\S+) nats=(\S+)`)

func (r *run) startProc(args ...string) (*proc, error) {
	p := &proc{cmd: exec.Command(r.NodeBinary, args...), exited: make(chan struct{})}
	stderr, err := p.cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	if err := p.cmd.Start(); err != nil {
		return nil, err
	}
	r.tb.Cleanup(func() {
		_ = p.cmd.Process.Kill()
		<-p.exited
	})
	ready := make(chan []string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			if m := startedRE.FindStringSubmatch(sc.Text()); m != nil {
				ready <- m[1:]
			}
		}
		_ = p.cmd.Wait()
		close(p.exited)
	}()
	select {
	case m := <-ready:
		p.httpAddr, p.natsURL = m[0], m[1]
		return p, nil
	case <-p.exited:
		return nil, fmt.Errorf("%s exited before starting", r.NodeBinary)
	case <-time.After(30 * time.Second):
		return nil, fmt.Errorf("%s did not start within 30s", r.NodeBinary)
	}
}

// failover: three node processes on a real ZooKeeper and Kafka under a
// steady 20K events/s; the owner of some partitions is killed with
// SIGKILL. Reports the time until the survivors own its partitions, and
// until every partition is served with rebuilt state (its replay done).
func failover(r *run) ([]Result, error) {
	if r.NodeBinary == "" {
		return nil, fmt.Errorf("no node binary (cmd/squall-bench -node-binary)")
	}
	r.status("starting ZooKeeper and Kafka")
	z := zktest.Start(r.tb)
	b := kafkatest.Start(r.tb)
	b.CreateTopic(r.tb, benchTopic, clusterPartitions)
	const session = 4 * time.Second
	var procs []*proc
	for i := range 3 {
		p, err := r.startProc("--zk", z.Addr(), "--cluster", "bench-failover", "--node-id", fmt.Sprintf("n%d", i+1),
			"--http-addr", "127.0.0.1:0", "--nats-addr", "127.0.0.1:0", "--remote-addr", "127.0.0.1:0",
			"--zk-session-timeout", session.String(), "--kafka-brokers", b.Addr(), "--kafka-topic", benchTopic,
			"--kafka-group", "bench-failover")
		if err != nil {
			return nil, err
		}
		procs = append(procs, p)
	}
	addrs := []string{procs[0].httpAddr, procs[1].httpAddr, procs[2].httpAddr}
	if err := waitSettled(addrs, 30*time.Second); err != nil {
		return nil, err
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(b.Addr()), kgo.DefaultProduceTopic(benchTopic), kgo.ProducerLinger(5*time.Millisecond))
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	stop := make(chan struct{})
	var produced atomic.Int64
	go func() {
		rng := rand.New(rand.NewPCG(5, 6))
		for j := 0; ; j++ {
			select {
			case <-stop:
				return
			default:
			}
			v := appendEvent(nil, 10_000, j, rng, false)
			cl.Produce(context.Background(), &kgo.Record{Key: v[8 : 8+len(keyName(0))], Value: v}, nil)
			produced.Add(1)
			if j%200 == 0 {
				time.Sleep(10 * time.Millisecond) // ~20K events/s
			}
		}
	}()
	defer close(stop)
	r.status("loading for 5s")
	time.Sleep(5 * time.Second)
	victim := procs[2]
	_ = victim.cmd.Process.Signal(syscall.SIGKILL)
	<-victim.exited
	killed := time.Now()
	r.status("n3 killed; waiting for the survivors")
	if err := waitSettled(addrs[:2], 2*session+20*time.Second); err != nil {
		return nil, err
	}
	owned := time.Since(killed)
	var served time.Duration
	for deadline := time.Now().Add(60 * time.Second); ; {
		live := 0
		for _, a := range addrs[:2] {
			if d, err := httpDoc(a); err == nil {
				for _, s := range d.Sources {
					if s.State == "live" {
						live++
					}
				}
			}
		}
		if live == clusterPartitions {
			served = time.Since(killed)
			break
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("%d of %d partitions live 60s after the kill", live, clusterPartitions)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return []Result{{Scenario: r.name, Group: "failover",
		Setup:          Setup{Keys: 10_000, Partitions: clusterPartitions, Nodes: 3, Cores: runtime.NumCPU(), Broker: "kafka 4.4.0", Events: int(produced.Load())},
		AllocsPerEvent: -1, Duration: served,
		Figures: []Figure{
			{"kill -9 → partitions owned again", fmt.Sprintf("%.2f s", owned.Seconds())},
			{"kill -9 → served with rebuilt state", fmt.Sprintf("%.2f s (target ≤ session %s + 5 s)", served.Seconds(), session)}}}}, nil
}
