package testutil

import (
	"sync"
	"testing"
	"time"

	"github.com/squallhq/squall/event"
)

// SubmitParallel is the body of the key-actor throughput benchmarks: two
// goroutines submit batches of batch events round-robin over keys (each
// key's events a second apart from t0), b.N batches in all, through
// submit; it reports events/s and ns/event. The keys should be live
// already (warm them before calling).
func SubmitParallel[R any](b *testing.B, keys []string, t0 int64, batch int, submit func(evs []event.Event, out []R) error) {
	b.ReportAllocs()
	b.ResetTimer()
	var mu sync.Mutex
	next := 0
	b.SetParallelism(2)
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		evs := make([]event.Event, batch)
		out := make([]R, batch)
		for pb.Next() {
			mu.Lock()
			base := next
			next += batch
			mu.Unlock()
			for i := range evs {
				j := base + i
				evs[i] = event.Event{Key: keys[j%len(keys)], TS: t0 + int64(j/len(keys))*1000, Value: float64(j % 100)}
			}
			if err := submit(evs, out); err != nil {
				b.Fatal(err)
			}
		}
	})
	el := time.Since(start)
	b.ReportMetric(float64(b.N*batch)/el.Seconds(), "events/s")
	b.ReportMetric(float64(el.Nanoseconds())/float64(b.N*batch), "ns/event")
}
