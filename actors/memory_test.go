package actors

import (
	"context"
	"fmt"
	"runtime"
	"testing"

	"github.com/squallhq/squall/event"
)

// BenchmarkMemoryPerKey reports the heap bytes one live key actor costs
// (map entry, Key, window) with 1, 10 and 60 events in its window, the
// events one second apart, over 100,000 keys.
func BenchmarkMemoryPerKey(b *testing.B) {
	const keys = 100_000
	names := make([]string, keys)
	for i := range names {
		names[i] = fmt.Sprintf("host-%05d.cpu.user", i)
	}
	for _, events := range []int{1, 10, 60} {
		b.Run(fmt.Sprintf("events=%d", events), func(b *testing.B) {
			var perKey float64
			for i := 0; i < b.N; i++ {
				perKey = memoryPerKey(b, names, events)
			}
			b.ReportMetric(perKey, "bytes/key")
		})
	}
}

func memoryPerKey(b *testing.B, names []string, events int) float64 {
	before := heapInUse()
	e, err := New(func() Config { c := DefaultConfig(); c.Partitions = 64; return c }())
	if err != nil {
		b.Fatal(err)
	}
	evs := make([]event.Event, len(names))
	out := make([]Result, len(names))
	for j := 0; j < events; j++ {
		for i, n := range names {
			evs[i] = event.Event{Key: n, TS: t0 + int64(j)*1000, Value: float64((i + j) % 100)}
		}
		if err := e.Submit(context.Background(), evs, out); err != nil {
			b.Fatal(err)
		}
	}
	clear(evs)
	after := heapInUse()
	if e.Live() != int64(len(names)) {
		b.Fatalf("live %d", e.Live())
	}
	e.Close()
	return float64(after-before) / float64(len(names))
}

func heapInUse() uint64 {
	var ms runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse
}
