package source

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/squallhq/squall/actors"
	"github.com/squallhq/squall/event"
)

const (
	benchParts = 8
	benchKeys  = 100_000
)

// countSink applies nothing and counts events.
type countSink struct{ n atomic.Int64 }

func (s *countSink) Apply(_ context.Context, _ int32, evs []event.Event, _ []int64, _ bool) error {
	s.n.Add(int64(len(evs)))
	return nil
}

func (s *countSink) RestoreOffset(context.Context, int32) (int64, error) { return -1, nil }

// benchTopic fills a fake cluster with n ~80-byte JSON events over
// benchKeys keys and returns it and the mean event size.
func benchTopic(b *testing.B, n int) (*kfake.Cluster, int) {
	b.Helper()
	c := newCluster(b, benchParts)
	prod := newClient(b, c, kgo.RecordPartitioner(kgo.StickyKeyPartitioner(nil)), kgo.MaxBufferedRecords(1<<20),
		kgo.ProducerBatchMaxBytes(1<<20))
	size := 0
	const chunk = 100_000
	recs := make([]*kgo.Record, 0, chunk)
	for i := 0; i < n; i++ {
		key := fmt.Sprintf("host-%06d.cpu", i%benchKeys)
		v := fmt.Appendf(nil, `{"key":%q,"ts":%d,"value":%.3f,"id":"e-%08d"}`, key, 1764065000000+int64(i), float64(i%1000)/8, i)
		size += len(v)
		recs = append(recs, &kgo.Record{Topic: testTopic, Key: []byte(key), Value: v})
		if len(recs) == chunk || i == n-1 {
			if err := prod.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
				b.Fatal(err)
			}
			recs = recs[:0]
		}
	}
	return c, size / max(n, 1)
}

// BenchmarkConsume measures kfake → source actors → a Sink that does
// nothing: decode, batching, offsets. One op is one event.
func BenchmarkConsume(b *testing.B) {
	c, size := benchTopic(b, b.N)
	sink := &countSink{}
	cfg := testConfig(c)
	cfg.CommitInterval = time.Second
	if v := os.Getenv("SQUALL_BENCH_MAXBUF"); v != "" {
		cfg.MaxBufferedRecords, _ = strconv.Atoi(v)
	}
	m := newManager(b, cfg, sink)
	runtime.GC()
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for p := range int32(benchParts) {
		m.Start(p, StartFrom{})
	}
	for sink.n.Load() < int64(b.N) {
		time.Sleep(200 * time.Microsecond)
	}
	el := time.Since(start)
	b.StopTimer()
	b.ReportMetric(float64(b.N)/el.Seconds(), "events/s")
	b.ReportMetric(float64(size), "B/event")
	b.Logf("%d events, %d keys, %d partitions, ~%d-byte JSON events, GOMAXPROCS=%d: %.0f events/s (kfake in-process)",
		b.N, min(b.N, benchKeys), benchParts, size, runtime.GOMAXPROCS(0), float64(b.N)/el.Seconds())
}

// BenchmarkConsumeRaw is the baseline: a plain franz-go consumer reading
// the same records from kfake, doing nothing with them.
func BenchmarkConsumeRaw(b *testing.B) {
	c, _ := benchTopic(b, b.N)
	ps := make(map[int32]kgo.Offset)
	for p := range int32(benchParts) {
		ps[p] = kgo.NewOffset().AtStart()
	}
	runtime.GC()
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	cl := newClient(b, c, kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{testTopic: ps}))
	n := 0
	for n < b.N {
		n += cl.PollFetches(context.Background()).NumRecords()
	}
	el := time.Since(start)
	b.StopTimer()
	b.ReportMetric(float64(b.N)/el.Seconds(), "events/s")
}

// BenchmarkConsumeDecode is the baseline plus decoding each record with
// event.Decoder: the work the source must do at least.
func BenchmarkConsumeDecode(b *testing.B) {
	c, _ := benchTopic(b, b.N)
	ps := make(map[int32]kgo.Offset)
	for p := range int32(benchParts) {
		ps[p] = kgo.NewOffset().AtStart()
	}
	runtime.GC()
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	cl := newClient(b, c, kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{testTopic: ps}))
	var dec event.Decoder
	evs := make([]event.Event, 0, 16)
	n := 0
	for n < b.N {
		cl.PollFetches(context.Background()).EachRecord(func(r *kgo.Record) {
			evs, _, _ = dec.Decode(r.Value, event.FormatAuto, event.Options{Now: r.Timestamp.UnixMilli(), DefaultKey: string(r.Key)}, evs[:0], nil)
			n += len(evs)
		})
	}
	el := time.Since(start)
	b.StopTimer()
	b.ReportMetric(float64(b.N)/el.Seconds(), "events/s")
}

// BenchmarkProducerSubmit measures Kafka-first ingest: Submit of batches
// of 1,000 ~80-byte events, acknowledged by kfake (in-process). One op is
// one event.
func BenchmarkProducerSubmit(b *testing.B) {
	c := newCluster(b, benchParts)
	p, err := NewProducer(testConfig(c))
	if err != nil {
		b.Fatal(err)
	}
	defer p.Close()
	const batch = 1000
	evs := make([]event.Event, batch)
	for i := range evs {
		evs[i] = event.Event{Key: fmt.Sprintf("host-%06d.cpu", i*97%benchKeys), TS: 1764065000000 + int64(i), Value: float64(i) / 8, ID: fmt.Sprintf("e-%08d", i)}
	}
	out := make([]actors.Result, batch)
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for done := 0; done < b.N; done += batch {
		n := min(batch, b.N-done)
		if err := p.Submit(context.Background(), evs[:n], out[:n]); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "events/s")
}
