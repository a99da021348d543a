package bench

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/squallhq/squall/cluster"
	"github.com/squallhq/squall/event"
	"github.com/squallhq/squall/internal/kafkatest"
	"github.com/squallhq/squall/node"
	"github.com/squallhq/squall/window"
)

const (
	benchTopic      = "bench-events"
	kafkaPartitions = 16
	t0              = int64(1764064800000)
)

// broker is a Kafka for one scenario: kfake in this process, or a real
// broker (internal/kafkatest) in a child process.
type broker struct {
	kind  string // "kfake" or "kafka"
	addr  string
	label string // for Setup.Broker
	pid   int    // the broker's JVM; 0 for kfake
}

func (r *run) startBroker(kind string) *broker {
	switch kind {
	case "kfake":
		c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(kafkaPartitions, benchTopic))
		if err != nil {
			r.tb.Fatalf("kfake: %v", err)
		}
		r.tb.Cleanup(c.Close)
		return &broker{kind: kind, addr: c.ListenAddrs()[0], label: "kfake"}
	default:
		r.status("starting a Kafka broker")
		// Parallel GC: on 2 cores its young pauses are about half the
		// serial collector's 8-10 ms (the tests' default), which set the
		// produce → ack tail.
		b := kafkatest.Start(r.tb, kafkatest.Env("KAFKA_GC=parallel"))
		b.CreateTopic(r.tb, benchTopic, kafkaPartitions)
		return &broker{kind: kind, addr: b.Addr(), label: "kafka 4.4.0", pid: b.Pid()}
	}
}

// brokerNote says where the broker ran.
func brokerNote(kind string) Figure {
	if kind == "kfake" {
		// The broker's copy of the topic is in this process's heap too.
		return Figure{"broker", "kfake in this process (its allocations and memory count)"}
	}
	return Figure{"broker", "KRaft broker+controller, a child process on the same cores (JVM: C1, parallel GC)"}
}

// keyName is the key of key number i: ~26 bytes, so that events are ~80.
func keyName(i int) string { return fmt.Sprintf("dc1.rack%02d.srv-%07d.cpu", i%50, i) }

// appendEvent appends the JSON of event j of a stream over keys keys, with
// an id (appendID) when ids is set.
func appendEvent(b []byte, keys, j int, rng *rand.Rand, ids bool) []byte {
	k, ts, v := nextEvent(keys, j, rng)
	return appendEventJSON(b, k, ts, v, j, ids)
}

// nextEvent draws event j of a stream over keys keys: its key number, time
// (j/keys seconds after t0, within the second at random) and value.
func nextEvent(keys, j int, rng *rand.Rand) (k int, ts int64, v float64) {
	k = rng.IntN(keys)
	ts = t0 + int64(j/keys)*1000 + int64(rng.IntN(1000))
	return k, ts, rng.Float64() * 100
}

// appendEventJSON appends the JSON of an event of key number k; its value
// with two decimals (eventValue) and, when ids is set, appendID(id).
func appendEventJSON(b []byte, k int, ts int64, v float64, id int, ids bool) []byte {
	b = fmt.Appendf(b, `{"key":%q,"ts":%d,"value":%.2f`, keyName(k), ts, v)
	if ids {
		b = appendID(b, id)
	}
	return append(b, '}')
}

// eventValue is the value a reader of appendEventJSON's JSON gets for v.
func eventValue(v float64) float64 {
	d, _ := strconv.ParseFloat(strconv.FormatFloat(v, 'f', 2, 64), 64) // the digits of %.2f parse
	return d
}

// eventGen appends the JSON of event j of a stream to b; rng is the
// stream's.
type eventGen func(b []byte, j int, rng *rand.Rand) []byte

// preload writes n events over keys keys to the topic, keyed by the
// event key (Kafka's default partitioner), and returns their mean size and
// how many went to each partition.
func (r *run) preload(b *broker, keys, n int, ids bool) (int, [kafkaPartitions]int) {
	var parts [kafkaPartitions]int
	size := r.produce(b.addr, benchTopic, keys, n, func(b []byte, j int, rng *rand.Rand) []byte {
		return appendEvent(b, keys, j, rng, ids)
	}, func(key []byte) {
		parts[cluster.Partition(string(key), kafkaPartitions)]++
	})
	return size, parts
}

// produce writes the n events of gen's stream over keys keys to topic,
// keyed by the event key (Kafka's default partitioner), calls each with
// every key, and returns the events' mean size. opts add to the producer's
// options (compression).
func (r *run) produce(addr, topic string, keys, n int, gen eventGen, each func(key []byte), opts ...kgo.Opt) int {
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(addr), kgo.DefaultProduceTopic(topic),
		kgo.ProducerLinger(5 * time.Millisecond), kgo.ProducerBatchMaxBytes(1 << 20), kgo.MaxBufferedRecords(1 << 17)}, opts...)...)
	if err != nil {
		r.tb.Fatalf("producer: %v", err)
	}
	defer cl.Close()
	rng := rand.New(rand.NewPCG(1, uint64(keys)))
	var bytes, failed atomic.Int64
	var scratch []byte
	ctx := context.Background()
	for j := range n {
		if j%10_000 == 0 {
			r.status("preloading %s of %s events", count(j), count(n))
		}
		scratch = gen(scratch[:0], j, rng)
		v := append([]byte(nil), scratch...)
		key := v[8 : 8+len(keyName(0))] // the key string inside the JSON
		if each != nil {
			each(key)
		}
		bytes.Add(int64(len(v)))
		cl.Produce(ctx, &kgo.Record{Key: key, Value: v}, func(_ *kgo.Record, err error) {
			if err != nil {
				failed.Add(1)
			}
		})
	}
	if err := cl.Flush(ctx); err != nil || failed.Load() > 0 {
		r.tb.Fatalf("preload: %d records failed (%v)", failed.Load(), err)
	}
	return int(bytes.Load() / int64(n))
}

// baseline consumes the topic's n records with a plain franz-go consumer
// (direct partition assignment, one goroutine) into a Go map of windows:
// the same decoding and window update as Squall, nothing else.
func (r *run) baseline(b *broker, n int, shape window.Shape) (float64, error) {
	var start time.Time
	_, err := r.consumeBaseline(b.addr, benchTopic, kafkaPartitions, n, shape, func(got int) {
		if start.IsZero() {
			start = time.Now()
		}
	})
	if err != nil {
		return 0, err
	}
	return float64(n) / time.Since(start).Seconds(), nil
}

// consumeBaseline is the baseline's loop over the n records of topic's
// partitions; applied is called with the records applied so far: with 0
// once the first fetch has returned, then after each record. It returns
// the windows, by key.
func (r *run) consumeBaseline(addr, topic string, partitions, n int, shape window.Shape, applied func(got int)) (map[string]*window.Window, error) {
	offsets := map[string]map[int32]kgo.Offset{topic: {}}
	for p := range int32(partitions) {
		offsets[topic][p] = kgo.NewOffset().AtStart()
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.ConsumePartitions(offsets),
		kgo.FetchMaxBytes(64<<20), kgo.FetchMaxPartitionBytes(8<<20))
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	wins := make(map[string]*window.Window)
	var dec event.Decoder
	var evs []event.Event
	got := 0
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	for got < n {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("baseline: %d of %d records after 10m", got, n)
		}
		if got == 0 {
			applied(0)
		}
		fs.EachRecord(func(rec *kgo.Record) {
			// Strings cut from one buffer, the record key copied only
			// when an event takes it, as the node's source does.
			dec.Ensure(len(rec.Value))
			evs, _, _ = dec.Decode(rec.Value, event.FormatAuto,
				event.Options{Now: rec.Timestamp.UnixMilli(), DefaultKeyBytes: rec.Key}, evs[:0], nil)
			for i := range evs {
				w := wins[evs[i].Key]
				if w == nil {
					w = window.New(&shape)
					wins[string([]byte(evs[i].Key))] = w
				}
				w.Add(&evs[i])
			}
			got++
			applied(got)
		})
		r.status("baseline: %s of %s records", count(got), count(n))
	}
	return wins, nil
}

// startNode starts an in-process node fed from b, counting the events it
// applies; rules > 0 gives it a rules file with that many rules matching
// every key (thresholds no event reaches).
func (r *run) startNode(b *broker, rules int, group string, after func([]event.Event)) *node.Node {
	return r.startNodeWith(b, rules, group, after, nil)
}

func (r *run) startNodeWith(b *broker, rules int, group string, after func([]event.Event), mod func(*node.Config)) *node.Node {
	cfg := node.DefaultConfig()
	cfg.HTTPAddr, cfg.NATSAddr = "127.0.0.1:0", "127.0.0.1:0"
	cfg.NodeID = "bench"
	cfg.DataDir = "" // memory only unless the scenario says otherwise
	if b != nil {
		cfg.KafkaBrokers, cfg.KafkaTopic, cfg.KafkaGroup = b.addr, benchTopic, group
	}
	cfg.AfterApply = after
	cfg.MaxKeys = 4_000_000
	if rules > 0 {
		dir := r.tb.TempDir()
		f := filepath.Join(dir, "rules.yaml")
		y := "rules:\n"
		for i := range rules {
			y += fmt.Sprintf("  - {name: r%d, match: \"*.cpu\", aggregate: mean, over: 1m, op: \">\", threshold: 1e12}\n", i)
		}
		if err := os.WriteFile(f, []byte(y), 0o644); err != nil {
			r.tb.Fatalf("rules: %v", err)
		}
		cfg.Rules = f
	}
	if mod != nil {
		mod(&cfg)
	}
	n, err := node.New(cfg, r.log)
	if err != nil {
		r.tb.Fatalf("node: %v", err)
	}
	r.tb.Cleanup(func() { _ = n.Close() })
	return n
}

// steadyPerKey is the events per key of the steady scenarios.
const steadyPerKey = 150

// kafkaThroughput: n events preloaded over keys keys; the baseline reads
// them, then a node consumes them from the start; both timed from their
// first tenth to the last record. With steady, windows are 30s long and
// every key gets steadyPerKey events a second apart: from the 31st on, windows are
// full and evict as they take events (steady state), and the figures are
// taken over the last three quarters (long enough that a hiccup of the
// machine does not decide the figure).
//
// With ids every event carries an id (as the Go client sends them); the
// row without (ids false) is compared with the row with ids, when the run
// has it.
func kafkaThroughput(kind string, keys, rules int, steady, ids bool) func(r *run) ([]Result, error) {
	return func(r *run) ([]Result, error) {
		n := max(r.sc.kafkaEvents, 3*keys)
		mark := n / 10
		var mod func(*node.Config)
		shape := window.DefaultShape()
		if steady {
			shape.Retention, shape.Subwindows = 30*time.Second, []time.Duration{10 * time.Second}
			n, mark = steadyPerKey*keys, steadyPerKey*keys/4
			mod = func(c *node.Config) {
				c.Retention, c.Subwindows = shape.Retention, shape.Subwindows
			}
		}
		b := r.startBroker(kind)
		size, parts := r.preload(b, keys, n, ids)
		var base float64
		if rules == 0 {
			var err error
			if base, err = r.baseline(b, n, shape); err != nil {
				return nil, err
			}
		}
		runtime.GC()
		var m0, m1 runtime.MemStats
		// Timed from the first tenth applied (every partition's source has
		// started by then) to the last event.
		var applied, firstN atomic.Int64
		var first, last atomic.Int64
		var cpu0, cpu1 cpuSample
		done := make(chan struct{})
		var once atomic.Bool
		// In steady mode the mark is when every partition has applied 25%
		// of its own events (partitions are consumed unevenly).
		var perPart [kafkaPartitions]atomic.Int64
		var partsPast atomic.Int64
		// The node's goroutines (and those they start) carry the label
		// phase=squall in CPU profiles: pprof -tagfocus phase=squall.
		var nodeCtx context.Context
		pprof.Do(context.Background(), pprof.Labels("phase", "squall"), func(ctx context.Context) { nodeCtx = ctx })
		pprof.SetGoroutineLabels(nodeCtx)
		defer pprof.SetGoroutineLabels(context.Background())
		r.startNodeWith(b, rules, fmt.Sprintf("bench-%d", time.Now().UnixNano()), func(evs []event.Event) {
			now := time.Now().UnixNano()
			a := applied.Add(int64(len(evs)))
			reached := a >= int64(mark)
			if steady && len(evs) > 0 {
				p := cluster.Partition(evs[0].Key, kafkaPartitions) // a batch is one partition's
				want := int64(parts[p]) / 4
				if got := perPart[p].Add(int64(len(evs))); got >= want && got-int64(len(evs)) < want {
					partsPast.Add(1)
				}
				reached = partsPast.Load() == kafkaPartitions
			}
			if reached && first.CompareAndSwap(0, now) {
				firstN.Store(a)
				runtime.ReadMemStats(&m0) // once; partition goroutines wait for it
				cpu0 = sampleCPU(b.pid)
			}
			if a >= int64(n) && once.CompareAndSwap(false, true) {
				cpu1 = sampleCPU(b.pid)
				last.Store(now)
				close(done)
			}
		}, mod)
		if err := r.waitApplied(done, &applied, n); err != nil {
			return nil, err
		}
		runtime.ReadMemStats(&m1)
		el := time.Duration(last.Load() - first.Load())
		res := Result{Scenario: r.name, Group: "kafka",
			Setup: Setup{Keys: keys, EventBytes: size, Partitions: kafkaPartitions, Nodes: 1,
				Cores: runtime.NumCPU(), Broker: b.label, Rules: rules, Events: n, IDs: idsLabel(ids)},
			EventsPerSec: float64(int64(n)-firstN.Load()) / el.Seconds(), BaselinePerSec: base, Duration: el,
			AllocsPerEvent: float64(m1.Mallocs-m0.Mallocs) / float64(int64(n)-firstN.Load()), RSSBytes: rss()}
		if steady {
			res.Figures = append(res.Figures, Figure{"window", "30s, full: every event evicts a bucket (steady state)"})
		}
		if ids && rules == 0 && !steady {
			res.versus = r.name + "/no-ids" // when the run has it
		}
		res.Figures = append(res.Figures, cpuFigure(cpu0, cpu1, el, b.pid > 0), brokerNote(kind))
		return []Result{res}, nil
	}
}

// kafkaLatency: events produced at a fixed rate by a producer process of
// its own, one record each, each carrying its send time; the node (in
// this process) records produce → applied.
func kafkaLatency(kind string, keys int) func(r *run) ([]Result, error) {
	return func(r *run) ([]Result, error) {
		b := r.startBroker(kind)
		var h Histogram
		// Warm up for half the measured time (keys activated, connections
		// made, the broker's JIT compiled), then measure.
		from := time.Now().Add(r.sc.latencyFor/2 + 500*time.Millisecond)
		fromUS := from.UnixMicro()
		r.startNode(b, 0, fmt.Sprintf("bench-lat-%d", time.Now().UnixNano()), func(evs []event.Event) {
			now := time.Now().UnixMicro()
			for i := range evs {
				if sent := int64(evs[i].Value); sent >= fromUS {
					h.Record(time.Duration(now-sent) * time.Microsecond)
				}
			}
		})
		ctx, cancel := context.WithCancel(context.Background())
		r.tb.Cleanup(cancel) // kills the producer if the scenario fails
		wait, err := startProducer(ctx, b.addr, keys, r.sc.latencyRate, from, r.sc.latencyFor)
		if err != nil {
			return nil, err
		}
		r.status("warming up")
		time.Sleep(time.Until(from))
		r.status("offering %s events/s", count(r.sc.latencyRate))
		pr, err := wait()
		if err != nil {
			return nil, err
		}
		time.Sleep(time.Second) // the last records applied
		return []Result{{Scenario: r.name, Group: "kafka",
			Setup: Setup{Keys: keys, EventBytes: pr.Size, Partitions: kafkaPartitions, Nodes: 1, Cores: runtime.NumCPU(),
				Broker: b.label, Events: pr.Sent, IDs: "on"},
			Latency: h.Latency(float64(r.sc.latencyRate)), AllocsPerEvent: -1, Duration: r.sc.latencyFor,
			Figures: []Figure{{"measured", "produce → applied (acks=all, linger 0; the producer a process of its own)"},
				{"produce → ack", pr.Ack.String() + " (the broker's answer to the producer, same records)"},
				brokerNote(kind)}}}, nil
	}
}

// pace calls send(j) for j = 0, 1, ... at rate per second for d, in ticks
// of 1ms (open loop: a slow send does not lower the offered rate, later
// ticks catch up), and returns how many it sent.
func pace(rate int, d time.Duration, send func(j int)) int {
	start := time.Now()
	j := 0
	for {
		el := time.Since(start)
		if el >= d {
			return j
		}
		due := int(float64(rate) * el.Seconds())
		for ; j < due; j++ {
			send(j)
		}
		time.Sleep(time.Millisecond)
	}
}

// rss returns this process's resident set size, or 0.
func rss() int64 { return procRSS("self") }

// procRSS returns the resident set size of process pid ("self": this
// one), or 0.
func procRSS(pid string) int64 {
	b, err := os.ReadFile("/proc/" + pid + "/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10
		}
	}
	return 0
}
