package output

import (
	"context"
	"testing"
)

// BenchmarkSend measures Send into one sink that discards every batch.
func BenchmarkSend(b *testing.B) {
	o, _ := newOutputs(b, Config{}, discardSink{})
	a := testAlert(b, "web-1.cpu", 0, 3, 0)
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		a.Offset = int64(i)
		if err := o.Send(ctx, a); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N), "ns/alert")
}

// BenchmarkSendParallel is BenchmarkSend from GOMAXPROCS goroutines (the
// partition actors), into two discarding sinks.
func BenchmarkSendParallel(b *testing.B) {
	o, _ := newOutputs(b, Config{}, discardSink{}, namedDiscard("discard2"))
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		a := testAlert(b, "web-1.cpu", 0, 3, 0)
		for pb.Next() {
			a.Offset++
			if err := o.Send(ctx, a); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N), "ns/alert")
}

type namedDiscard string

func (n namedDiscard) Name() string                         { return string(n) }
func (namedDiscard) Publish(context.Context, []Alert) error { return nil }
