package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/squallhq/squall/api"
	"github.com/squallhq/squall/cluster"
	"github.com/squallhq/squall/internal/kafkatest"
	"github.com/squallhq/squall/internal/testutil"
	"github.com/squallhq/squall/internal/zktest"
)

const kafkaPartitions = 12

// kafkaCluster is ZooKeeper, a Kafka broker with the input topic, and the
// arguments a node needs to join them.
type kafkaCluster struct {
	zk    *zktest.Server
	kafka *kafkatest.Broker
	name  string
}

func startKafkaCluster(t *testing.T, name string) *kafkaCluster {
	t.Helper()
	kc := &kafkaCluster{zk: zktest.Start(t), kafka: kafkatest.Start(t), name: name}
	kc.kafka.CreateTopic(t, name+"-events", kafkaPartitions)
	return kc
}

func (kc *kafkaCluster) node(t *testing.T, id, httpAddr, remoteAddr string, extra ...string) *cnode {
	t.Helper()
	args := append([]string{"--kafka-brokers", kc.kafka.Addr(), "--kafka-topic", kc.name + "-events",
		"--kafka-group", kc.name}, extra...)
	return startMember(t, kc.zk.Addr(), kc.name, id, httpAddr, remoteAddr, args...)
}

// produced tracks what a test wrote to Kafka, per key.
type produced struct {
	mu      sync.Mutex
	count   map[string]int
	sum     map[string]int64
	n       int
	retries atomic.Int64 // batches post sent again
}

// sent returns how many events produce has handed to the producer so far.
func (pr *produced) sent() int {
	pr.mu.Lock()
	defer pr.mu.Unlock()
	return pr.n
}

func newProduced() *produced { return &produced{count: map[string]int{}, sum: map[string]int64{}} }

// produce writes n events with unique ids over keys to topic at about rate
// events/s, with Kafka's default partitioner, and records them.
func (pr *produced) produce(t *testing.T, brokers, topic string, keys []string, n, rate int) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers), kgo.DefaultProduceTopic(topic),
		kgo.RequiredAcks(kgo.AllISRAcks()), kgo.ProducerLinger(5*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	const batch = 1000
	start := time.Now()
	ts := int64(1764064800000)
	for i := 0; i < n; i += batch {
		recs := make([]*kgo.Record, 0, batch)
		for j := i; j < min(i+batch, n); j++ {
			key := keys[rand.IntN(len(keys))]
			v := int64(j%997) + 1
			pr.mu.Lock()
			id := pr.n // unique across calls
			pr.count[key]++
			pr.sum[key] += v
			pr.n++
			pr.mu.Unlock()
			recs = append(recs, &kgo.Record{Key: []byte(key),
				Value: []byte(fmt.Sprintf(`{"key":%q,"ts":%d,"value":%d,"id":"p%d"}`, key, ts+int64(j%30000), v, id))})
		}
		if err := cl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
			t.Fatalf("produce: %v", err)
		}
		if ahead := time.Duration(float64(i+batch)/float64(rate)*float64(time.Second)) - time.Since(start); ahead > 0 {
			time.Sleep(ahead) // steady rate
		}
	}
}

// verify checks every key's count and sum, read through the nodes, until
// they match or timeout passes (the cluster may still be consuming).
func (pr *produced) verify(t *testing.T, nodes []*cnode, timeout time.Duration) {
	t.Helper()
	pr.mu.Lock()
	defer pr.mu.Unlock()
	deadline := time.Now().Add(timeout)
	type miss struct {
		key        string
		gotN, want int
		gotS, wS   int64
	}
	for {
		var mu sync.Mutex
		var misses []miss
		keys := make(chan string)
		var wg sync.WaitGroup
		for w := 0; w < 8; w++ {
			wg.Add(1)
			go func(w int) {
				defer wg.Done()
				for key := range keys {
					st, code, err := keyState(nodes[w%len(nodes)].httpAddr, key)
					var n int
					var s int64
					if err == nil && code == 200 {
						n, s = int(st.Window.Count), int64(st.Window.Sum)
					}
					if n != pr.count[key] || s != pr.sum[key] {
						mu.Lock()
						misses = append(misses, miss{key, n, pr.count[key], s, pr.sum[key]})
						mu.Unlock()
					}
				}
			}(w)
		}
		for key := range pr.count {
			keys <- key
		}
		close(keys)
		wg.Wait()
		if len(misses) == 0 {
			return
		}
		if time.Now().After(deadline) {
			over, under := 0, 0
			for _, m := range misses {
				if m.gotN > m.want {
					over++
				} else {
					under++
				}
			}
			t.Fatalf("%d of %d keys wrong (%d double-counted, %d short), e.g. %+v", len(misses), len(pr.count), over, under, misses[0])
		}
		time.Sleep(time.Second)
	}
}

// 1,000,000 events with unique ids over 10,000 keys at a steady rate; one
// node killed with kill -9 mid-stream and restarted later: 0 lost, 0
// double-counted.
func TestKafkaKill9(t *testing.T) {
	if testing.Short() {
		t.Skip("starts ZooKeeper, Kafka and three nodes")
	}
	kc := startKafkaCluster(t, "kill9")
	httpAddr, remoteAddr := freeAddr(t), freeAddr(t)
	nodes := []*cnode{kc.node(t, "n1", "", ""), kc.node(t, "n2", "", ""), kc.node(t, "n3", httpAddr, remoteAddr)}
	waitSettled(t, nodes, 30*time.Second)
	pr := newProduced()
	done := make(chan struct{})
	go func() {
		defer close(done)
		pr.produce(t, kc.kafka.Addr(), "kill9-events", keys(10_000), 1_000_000, 60_000)
	}()
	// Mid-stream: a quarter of the events are out when the node dies.
	testutil.Eventually(t, 2*time.Minute, func() bool { return pr.sent() >= 250_000 }, "the producer did not get going")
	victim := nodes[2]
	victim.cmd.Process.Kill()
	<-victim.exited
	killedAt := time.Now()
	rest := nodes[:2]
	waitSettled(t, rest, sessionTimeout+10*time.Second)
	owned := time.Since(killedAt)
	// Served with rebuilt state: every partition's source on the survivors
	// has finished its replay.
	var replayDone time.Duration
	for deadline := time.Now().Add(30 * time.Second); ; {
		live := 0
		for _, n := range rest {
			if doc, err := clusterDoc(n.httpAddr); err == nil {
				for _, s := range doc.Sources {
					if s.State == "live" {
						live++
					}
				}
			}
		}
		if live == kafkaPartitions {
			replayDone = time.Since(killedAt)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("only %d of %d partitions live 30s after the kill", live, kafkaPartitions)
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("kill -9 → partitions owned again after %s, served with rebuilt state after %s (session timeout %s)",
		owned.Round(10*time.Millisecond), replayDone.Round(10*time.Millisecond), sessionTimeout)
	time.Sleep(3 * time.Second)
	// The survivors rebuilt the dead node's partitions by replay.
	replayed := metricValue(t, rest[0].httpAddr, "squall_kafka_replay_records_total") +
		metricValue(t, rest[1].httpAddr, "squall_kafka_replay_records_total")
	if replayed == 0 {
		t.Fatal("no record was replayed after the kill")
	}
	t.Logf("records replayed to rebuild the dead node's partitions: %.0f", replayed)
	if n := metricValue(t, rest[0].httpAddr, "squall_partition_replay_seconds_count") +
		metricValue(t, rest[1].httpAddr, "squall_partition_replay_seconds_count"); n == 0 {
		t.Fatal("no replay duration observed")
	}
	nodes[2] = kc.node(t, "n3", httpAddr, remoteAddr)
	<-done
	waitSettled(t, nodes, 30*time.Second)
	pr.verify(t, nodes, 60*time.Second)
	t.Logf("%d events over %d keys: every count and sum exact", pr.n, len(pr.count))
}

// The same with a SIGTERM rolling restart of the three nodes.
func TestKafkaRollingRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("starts ZooKeeper, Kafka and three nodes")
	}
	kc := startKafkaCluster(t, "rolling")
	addrs := [3][2]string{}
	nodes := make([]*cnode, 3)
	for i := range nodes {
		addrs[i] = [2]string{freeAddr(t), freeAddr(t)}
		nodes[i] = kc.node(t, fmt.Sprintf("n%d", i+1), addrs[i][0], addrs[i][1])
	}
	waitSettled(t, nodes, 30*time.Second)
	pr := newProduced()
	done := make(chan struct{})
	go func() {
		defer close(done)
		pr.produce(t, kc.kafka.Addr(), "rolling-events", keys(10_000), 1_000_000, 60_000)
	}()
	for i := range nodes {
		time.Sleep(2 * time.Second)
		nodes[i].cmd.Process.Signal(syscall.SIGTERM)
		if err := <-nodes[i].exited; err != nil {
			t.Fatalf("n%d exit after SIGTERM: %v", i+1, err)
		}
		nodes[i] = kc.node(t, fmt.Sprintf("n%d", i+1), addrs[i][0], addrs[i][1])
		waitSettled(t, nodes, 30*time.Second)
	}
	<-done
	pr.verify(t, nodes, 60*time.Second)
	applied := handoffsUsed(t, nodes)
	t.Logf("%d events over %d keys: every count and sum exact; %.0f handoffs used as they were", pr.n, len(pr.count), applied)
}

// handoffsUsed returns how many complete handoffs nodes used, failing t
// when none was: planned moves hand the state over, used, not rebuilt.
func handoffsUsed(t *testing.T, nodes []*cnode) float64 {
	t.Helper()
	applied := 0.0
	for _, n := range nodes {
		applied += metricValue(t, n.httpAddr, `squall_partition_handoffs_total{kind="complete",result="applied"}`)
	}
	if applied == 0 {
		t.Fatal("no handed-over partition state was used: every planned move replayed")
	}
	return applied
}

// Malformed and oversized records go to the DLQ with a reason, are
// counted, and never block their partition.
func TestKafkaBadRecords(t *testing.T) {
	if testing.Short() {
		t.Skip("starts ZooKeeper, Kafka and a node")
	}
	kc := startKafkaCluster(t, "bad")
	kc.kafka.CreateTopic(t, "bad-dlq", 1)
	n := kc.node(t, "n1", "", "", "--kafka-dlq-topic", "bad-dlq", "--kafka-max-record-bytes", "65536")
	waitSettled(t, []*cnode{n}, 30*time.Second)
	cl, err := kgo.NewClient(kgo.SeedBrokers(kc.kafka.Addr()), kgo.DefaultProduceTopic("bad-events"),
		kgo.ProducerBatchMaxBytes(4<<20), kgo.MaxBufferedBytes(64<<20))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	bad := [][]byte{
		[]byte(`{"key":`), []byte(`[1,2,3]`), []byte(`{"key":"k","value":"NaN"}`), []byte(``),
		[]byte(`{"key":"big","value":1,"tags":{"x":"` + strings.Repeat("y", 100<<10) + `"}}`),
	}
	var recs []*kgo.Record
	for i := 0; i < 200; i++ {
		recs = append(recs, &kgo.Record{Key: []byte(fmt.Sprintf("k%d", i%20)), Value: bad[i%len(bad)]})
		recs = append(recs, &kgo.Record{Key: []byte(fmt.Sprintf("k%d", i%20)),
			Value: []byte(fmt.Sprintf(`{"ts":1764064800000,"value":1,"id":"g%d"}`, i))}) // key from the record
	}
	if err := cl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	// Every good event is applied (the record key stands in for the key).
	pr := newProduced()
	for i := 0; i < 200; i++ {
		pr.count[fmt.Sprintf("k%d", i%20)]++
		pr.sum[fmt.Sprintf("k%d", i%20)]++
	}
	pr.verify(t, []*cnode{n}, 30*time.Second)
	// The bad records are in the DLQ with their reason.
	dlq, err := kgo.NewClient(kgo.SeedBrokers(kc.kafka.Addr()), kgo.ConsumeTopics("bad-dlq"),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxBytes(16<<20))
	if err != nil {
		t.Fatal(err)
	}
	defer dlq.Close()
	got := 0
	reasons := map[string]bool{}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for got < 200 && ctx.Err() == nil {
		dlq.PollFetches(ctx).EachRecord(func(r *kgo.Record) {
			got++
			for _, h := range r.Headers {
				if h.Key == "squall-error" {
					reasons[string(h.Value)] = true
				}
			}
		})
	}
	if got != 200 || len(reasons) < 3 {
		t.Fatalf("DLQ holds %d records with reasons %v", got, reasons)
	}
	resp, err := http.Get("http://" + n.httpAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b strings.Builder
	buf := make([]byte, 1<<16)
	for {
		k, err := resp.Body.Read(buf)
		b.Write(buf[:k])
		if err != nil {
			break
		}
	}
	if !strings.Contains(b.String(), "squall_kafka_bad_records_total") {
		t.Fatal("no bad-record metric")
	}
}

// metricValue reads an unlabelled metric from a node's /metrics.
func metricValue(t *testing.T, addr, name string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			f, _ := strconv.ParseFloat(v, 64)
			return f
		}
	}
	return 0
}

// With Kafka, HTTP input is written to the topic before the 202: a node
// killed right after answering loses none of the accepted events.
func TestKafkaHTTPIngestSurvivesKill(t *testing.T) {
	if testing.Short() {
		t.Skip("starts ZooKeeper, Kafka and three nodes")
	}
	kc := startKafkaCluster(t, "ingest")
	nodes := []*cnode{kc.node(t, "n1", "", ""), kc.node(t, "n2", "", ""), kc.node(t, "n3", "", "")}
	waitSettled(t, nodes, 30*time.Second)
	pr := newProduced()
	keys := keys(500)
	var body strings.Builder
	for i := 0; i < 5000; i++ {
		key := keys[i%len(keys)]
		fmt.Fprintf(&body, `{"key":%q,"ts":1764064800000,"value":2,"id":"h%d"}`+"\n", key, i)
		pr.count[key]++
		pr.sum[key] += 2
	}
	victim := nodes[0]
	resp, err := http.Post("http://"+victim.httpAddr+"/v1/events", "application/x-ndjson", strings.NewReader(body.String()))
	if err != nil {
		t.Fatal(err)
	}
	var r api.IngestResponse
	json.NewDecoder(resp.Body).Decode(&r)
	resp.Body.Close()
	if resp.StatusCode != 202 || r.Accepted != 5000 {
		t.Fatalf("POST = %d %+v", resp.StatusCode, r)
	}
	victim.cmd.Process.Kill() // right after the 202
	<-victim.exited
	rest := nodes[1:]
	waitSettled(t, rest, sessionTimeout+10*time.Second)
	pr.verify(t, rest, 60*time.Second)
}

// A standalone node (no ZooKeeper) with Kafka consumes every partition and
// shows its source actors on /debug/cluster.
func TestKafkaStandalone(t *testing.T) {
	if testing.Short() {
		t.Skip("starts Kafka and a node")
	}
	k := kafkatest.Start(t)
	k.CreateTopic(t, "solo-events", 4)
	p := startProc(t, buildNode(t), "--http-addr", "127.0.0.1:0", "--nats-addr", "127.0.0.1:0",
		"--kafka-brokers", k.Addr(), "--kafka-topic", "solo-events", "--kafka-group", "solo")
	n := &cnode{proc: p, id: "solo"}
	pr := newProduced()
	pr.produce(t, k.Addr(), "solo-events", keys(1000), 20_000, 100_000)
	pr.verify(t, []*cnode{n}, 30*time.Second)
	doc, err := clusterDoc(p.httpAddr)
	if err != nil {
		t.Fatal(err)
	}
	if doc.PartitionCount != 4 || len(doc.Sources) != 4 || doc.Sources[0].State != "live" {
		t.Fatalf("partitions %d sources %+v", doc.PartitionCount, doc.Sources)
	}
	// Records on the wrong partition (a producer not using murmur2) still
	// reach their key, and are counted as misrouted.
	cl, err := kgo.NewClient(kgo.SeedBrokers(k.Addr()), kgo.DefaultProduceTopic("solo-events"),
		kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	mis := newProduced()
	for i := 0; i < 10; i++ {
		key := fmt.Sprintf("mis-%d", i)
		wrong := (cluster.Partition(key, 4) + 1) % 4
		if err := cl.ProduceSync(context.Background(), &kgo.Record{Key: []byte(key), Partition: wrong,
			Value: []byte(`{"ts":1764064800000,"value":5}`)}).FirstErr(); err != nil {
			t.Fatal(err)
		}
		mis.count[key], mis.sum[key] = 1, 5
	}
	mis.verify(t, []*cnode{n}, 15*time.Second)
	if v := metricValue(t, p.httpAddr, "squall_kafka_misrouted_events_total"); v != 10 {
		t.Fatalf("misrouted counter %v, want 10", v)
	}
}
