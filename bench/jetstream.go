package bench

import (
	"context"
	"fmt"
	"math/rand/v2"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/squallhq/squall/actors"
	"github.com/squallhq/squall/event"
	"github.com/squallhq/squall/internal/natstest"
	"github.com/squallhq/squall/internal/zktest"
	"github.com/squallhq/squall/jslog"
	"github.com/squallhq/squall/node"
)

// jsPreloadBatch is the events per Submit of the JetStream preload: what
// an HTTP or NATS batch of 1,000 events gives a cluster node's ingest.
const jsPreloadBatch = 1000

// jetstreamThroughput is kafkaThroughput with a JetStream stream as the
// log: servers NATS servers with JetStream (a cluster when more than one;
// in this process, on loopback), the stream replicated replicas times, preloaded with the
// events of the Kafka scenario of the same key count (same generator, same
// seed) through the Producer a node's ingest uses; then a node of a
// one-node cluster (ZooKeeper, --jetstream-replicas) consumes its 16
// partitions from the start, timed from its first tenth to the last event.
// Compare it with kafka/kafka/<keys> of the same run.
func jetstreamThroughput(servers, replicas, keys int) func(r *run) ([]Result, error) {
	return func(r *run) ([]Result, error) {
		n := max(r.sc.kafkaEvents, 3*keys)
		r.status("starting ZooKeeper and %d NATS servers", servers)
		z := zktest.Start(r.tb)
		var urls string
		if servers == 1 {
			urls = natstest.StartJS(r.tb, 0).ClientURL() // one server is no cluster
		} else {
			urls = natstest.NewJSCluster(r.tb, servers).ClientURLs()
		}
		nc, err := nats.Connect(urls)
		if err != nil {
			return nil, err
		}
		defer nc.Close()
		size, err := r.preloadJS(nc, replicas, keys, n)
		if err != nil {
			return nil, err
		}
		runtime.GC()
		var m0, m1 runtime.MemStats
		var applied, firstN, first, last atomic.Int64
		var cpu0, cpu1 cpuSample
		done := make(chan struct{})
		var once atomic.Bool
		mark := int64(n / 10)
		r.startNodeWith(nil, 0, "", func(evs []event.Event) {
			now := time.Now().UnixNano()
			a := applied.Add(int64(len(evs)))
			if a >= mark && first.CompareAndSwap(0, now) {
				firstN.Store(a)
				runtime.ReadMemStats(&m0)
				cpu0 = sampleCPU(0)
			}
			if a >= int64(n) && once.CompareAndSwap(false, true) {
				cpu1 = sampleCPU(0)
				last.Store(now)
				close(done)
			}
		}, func(c *node.Config) {
			c.ZK, c.Cluster, c.Partitions = z.Addr(), "bench-jetstream", kafkaPartitions
			c.NATSURL, c.JetStreamReplicas = urls, replicas
		})
		if err := r.waitApplied(done, &applied, n); err != nil {
			return nil, err
		}
		runtime.ReadMemStats(&m1)
		el := time.Duration(last.Load() - first.Load())
		measured := int64(n) - firstN.Load()
		return []Result{{Scenario: r.name, Group: "kafka",
			Setup: Setup{Keys: keys, EventBytes: size, Batch: jsPreloadBatch, Partitions: kafkaPartitions, Nodes: 1,
				Cores: runtime.NumCPU(), Broker: fmt.Sprintf("jetstream %d×R%d", servers, replicas), Events: n, IDs: "on"},
			EventsPerSec: float64(measured) / el.Seconds(), Duration: el, versus: "kafka/kafka/" + count(keys) + "-keys",
			AllocsPerEvent: float64(m1.Mallocs-m0.Mallocs) / float64(measured), RSSBytes: rss(),
			Figures: []Figure{cpuFigure(cpu0, cpu1, el, false),
				{"log", fmt.Sprintf("%s in this process (its CPU and allocations count), %s; "+
					"protobuf messages, one per partition per batch of %d events, as a cluster node's ingest writes them "+
					"(the Kafka rows decode one JSON record per event)", pluralN(servers, "NATS server"), pluralN(replicas, "replica"), jsPreloadBatch)}}}}, nil
	}
}

// preloadJS stores n events over keys keys (appendEvent's stream: same
// keys, times and values) in the node's log stream through a jslog
// Producer, in batches of jsPreloadBatch with up to 32 batches in flight,
// and returns the stream's bytes per event.
func (r *run) preloadJS(nc *nats.Conn, replicas, keys, n int) (int, error) {
	cfg := jslog.Config{Conn: nc, Partitions: kafkaPartitions, Replicas: replicas, MaxBytes: -1, Logger: r.log}
	prod, err := jslog.NewProducer(cfg)
	if err != nil {
		return 0, err
	}
	defer prod.Close()
	names := make([]string, keys)
	for k := range names {
		names[k] = keyName(k)
	}
	rng := rand.New(rand.NewPCG(1, uint64(keys)))
	sem := make(chan struct{}, 32)
	var wg sync.WaitGroup
	var failed atomic.Int64
	ctx := context.Background()
	evs := make([]event.Event, 0, jsPreloadBatch)
	for j := 0; j < n; j += jsPreloadBatch {
		if j%100_000 == 0 {
			r.status("preloading %s of %s events", count(j), count(n))
		}
		evs = evs[:0]
		for i := j; i < min(j+jsPreloadBatch, n); i++ {
			k := rng.IntN(keys)
			evs = append(evs, event.Event{Key: names[k], TS: t0 + int64(i/keys)*1000 + int64(rng.IntN(1000)),
				Value: float64(int(rng.Float64()*10000)) / 100, ID: idPrefix + "0000-" + strconv.FormatInt(int64(i), 36)})
		}
		sem <- struct{}{}
		wg.Add(1)
		err := prod.SubmitAsync(ctx, evs, func(out []actors.Result) {
			for _, o := range out {
				if o != actors.ResultApplied {
					failed.Add(1)
				}
			}
			<-sem
			wg.Done()
		})
		if err != nil {
			return 0, err
		}
	}
	wg.Wait()
	if f := failed.Load(); f > 0 {
		return 0, fmt.Errorf("preload: %d events not stored", f)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return 0, err
	}
	st, err := js.Stream(ctx, jslog.DefaultStream)
	if err != nil {
		return 0, err
	}
	info, err := st.Info(ctx)
	if err != nil {
		return 0, err
	}
	return int(info.State.Bytes / uint64(n)), nil
}

// waitApplied waits until done is closed (n events applied), showing the
// count, for at most 10 minutes.
func (r *run) waitApplied(done <-chan struct{}, applied *atomic.Int64, n int) error {
	deadline := time.After(10 * time.Minute)
	for {
		select {
		case <-done:
			return nil
		case <-deadline:
			return fmt.Errorf("%d of %d events applied after 10m", applied.Load(), n)
		case <-time.After(500 * time.Millisecond):
			r.status("squall: %s of %s events applied", count(int(applied.Load())), count(n))
		}
	}
}
