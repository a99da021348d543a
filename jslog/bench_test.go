package jslog

import (
	"context"
	"sync/atomic"
	"testing"

	"github.com/squallhq/squall/actors"
	"github.com/squallhq/squall/event"
	"github.com/squallhq/squall/source"
)

// countSink counts the events it applies and signals more.
type countSink struct {
	n    atomic.Int64
	more chan struct{}
}

func (s *countSink) Apply(_ context.Context, _ int32, evs []event.Event, _ []int64, _ bool) error {
	s.n.Add(int64(len(evs)))
	select {
	case s.more <- struct{}{}:
	default:
	}
	return nil
}

func (s *countSink) RestoreOffset(context.Context, int32) (int64, error) { return -1, nil }

// BenchmarkProduceConsume measures events through the log: batches of
// 1,000 events over 1,000 keys and 16 partitions produced (Submit waits
// for the acknowledgements) and consumed into a sink that only counts.
func BenchmarkProduceConsume(b *testing.B) {
	e := newEnv(b)
	cfg := Config{Conn: e.nc, Partitions: 16}
	prod, err := NewProducer(cfg)
	if err != nil {
		b.Fatal(err)
	}
	defer prod.Close()
	count := &countSink{more: make(chan struct{}, 1)}
	m, err := New(cfg, count)
	if err != nil {
		b.Fatal(err)
	}
	defer m.Close()
	for p := range 16 {
		m.Start(int32(p), source.StartFrom{Offset: -1})
	}
	evs := events(1000, 1000, 0)
	out := make([]actors.Result, len(evs))
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if err := prod.Submit(context.Background(), evs, out); err != nil {
			b.Fatal(err)
		}
	}
	want := int64(b.N * len(evs))
	for count.n.Load() < want {
		<-count.more
	}
	b.StopTimer()
	b.ReportMetric(float64(want)/b.Elapsed().Seconds(), "events/s")
}
