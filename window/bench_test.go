package window

import (
	"fmt"
	"math/rand/v2"
	"runtime"
	"strconv"
	"testing"
	"time"
	"unsafe"

	"github.com/squallhq/squall/event"
	"github.com/squallhq/squall/internal/testutil"
)

const benchT0 = int64(1_764_064_800_000) // 2025-11-25T10:00:00Z

// steadyWindow returns a default-shape window filled for twice its
// retention with per events per bucket, and the next ts and step.
func steadyWindow(per int, ids []string) (*Window, int64, int64) {
	s := DefaultShape()
	w := New(&s)
	step := int64(1000 / per)
	ts := benchT0
	e := event.Event{Key: "k"}
	for i := 0; i < 2*600*per; i++ {
		e.TS, e.Value = ts, float64(i%100)
		if ids != nil {
			e.ID = ids[i%len(ids)]
		}
		w.Add(&e)
		ts += step
	}
	return w, ts, step
}

func benchIDs() []string {
	ids := make([]string, 1<<14)
	for i := range ids {
		ids[i] = fmt.Sprintf("web-1.cpu-%08d", i)
	}
	return ids
}

// BenchmarkAdd measures the hot path in steady state: in-order events into
// a full default-shape window (10m at 1s), each new bucket evicting one.
func BenchmarkAdd(b *testing.B) {
	for _, per := range []int{1, 10} {
		b.Run(fmt.Sprintf("%dPerBucket", per), func(b *testing.B) {
			w, ts, step := steadyWindow(per, nil)
			e := event.Event{Key: "k"}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				e.TS, e.Value = ts, float64(i&127)
				if w.Add(&e) != Applied {
					b.Fatal("not applied")
				}
				ts += step
			}
		})
	}
	b.Run("OutOfOrder", func(b *testing.B) {
		// Every 4th event is 30s late (30 buckets back).
		w, ts, step := steadyWindow(10, nil)
		e := event.Event{Key: "k"}
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			e.TS, e.Value = ts, float64(i&127)
			if i&3 == 3 {
				e.TS -= 30_000
			}
			w.Add(&e)
			ts += step
		}
	})
	b.Run("WithTags", func(b *testing.B) {
		w, ts, step := steadyWindow(10, nil)
		e := event.Event{Key: "k", Tags: map[string]string{"env": "prod", "dc": "eu-1", "host": "web-1"}}
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			e.TS, e.Value = ts, float64(i&127)
			w.Add(&e)
			ts += step
		}
	})
}

// BenchmarkAddWithID is BenchmarkAdd with a distinct id on every event.
func BenchmarkAddWithID(b *testing.B) {
	ids := benchIDs()
	for _, per := range []int{1, 10} {
		b.Run(fmt.Sprintf("%dPerBucket", per), func(b *testing.B) {
			w, ts, step := steadyWindow(per, ids)
			e := event.Event{Key: "k"}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				e.TS, e.Value, e.ID = ts, float64(i&127), ids[(i+2*600*per)%len(ids)]
				if w.Add(&e) != Applied {
					b.Fatal("not applied")
				}
				ts += step
			}
		})
	}
}

// BenchmarkAggregate measures Aggregate (all fields, quantiles included)
// over a full default-shape window.
func BenchmarkAggregate(b *testing.B) {
	for _, per := range []int{1, 10, 1000} {
		b.Run(fmt.Sprintf("%dPerBucket", per), func(b *testing.B) {
			var w *Window
			if per <= 10 {
				w, _, _ = steadyWindow(per, nil)
			} else {
				// 60 sketched buckets of 1000 values.
				s := DefaultShape()
				w = New(&s)
				r := rand.New(rand.NewPCG(1, 1))
				for i := 0; i < 60*per; i++ {
					w.Add(&event.Event{TS: benchT0 + int64(i/per)*10_000 + int64(i%1000), Value: 1 + 99*r.Float64()})
				}
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				_ = w.Aggregate()
			}
		})
	}
	b.Run("Subwindow1m/10PerBucket", func(b *testing.B) {
		w, _, _ := steadyWindow(10, nil)
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			_ = w.AggregateOver(time.Minute)
		}
	})
}

// memCase describes keys for the memory measurements: n events spread
// evenly over the default 10m window.
type memCase struct {
	name       string
	n          int
	spanMs     int64 // events spread over this much time; 0: the 10m window
	ids, tags  bool
	maxPerKey  float64 // budget asserted by TestMemoryBudget; 0: none
	keysInTest int
	noRecent   bool // Shape.Recent 0
}

var memCases = []memCase{
	{"1event", 1, 0, false, false, 300, 20000, false},
	{"10events", 10, 0, false, false, 600, 20000, false},
	{"60events", 60, 0, false, false, 0, 5000, false},
	{"10events+ids", 10, 0, true, false, 0, 5000, false},
	{"10events+tags", 10, 0, false, true, 0, 5000, false},
	{"600events", 600, 0, false, false, 0, 1000, false},
	{"600events+ids", 600, 0, true, false, 0, 1000, false},
	{"3000events/10s(sketched)", 3000, 10_000, false, false, 0, 200, false},
}

// bytesPerKey builds keys windows for c and returns the heap bytes per key
// and the mean MemSize.
func bytesPerKey(c memCase, keys int) (float64, float64) {
	s := DefaultShape()
	if c.noRecent {
		s.Recent = 0
	}
	tags := map[string]string{"env": "prod", "host": "web-1"}
	ws := make([]*Window, keys)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	span := c.spanMs
	if span == 0 {
		span = 600_000
	}
	gap := float64(span) / float64(c.n)
	for k := range ws {
		w := New(&s)
		for i := 0; i < c.n; i++ {
			e := event.Event{Key: "k", TS: benchT0 + int64(float64(i)*gap), Value: float64(k%100 + i)}
			if c.ids {
				e.ID = fmt.Sprintf("e-%d-%d", k, i)
			}
			if c.tags {
				e.Tags = tags
			}
			w.Add(&e)
		}
		ws[k] = w
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	memSize := 0
	for _, w := range ws {
		memSize += w.MemSize()
	}
	runtime.KeepAlive(ws)
	heap := float64(after.HeapAlloc) - float64(before.HeapAlloc) - float64(8*keys)
	return heap / float64(keys), float64(memSize) / float64(keys)
}

// BenchmarkMemory reports heap bytes per key (runtime.MemStats over 100K
// windows) for keys with 1, 10 and 60 events in the default shape.
func BenchmarkMemory(b *testing.B) {
	for _, c := range memCases {
		b.Run(c.name, func(b *testing.B) {
			var per, ms float64
			for i := 0; i < b.N; i++ {
				per, ms = bytesPerKey(c, 100_000)
			}
			b.ReportMetric(per, "bytes/key")
			b.ReportMetric(ms, "memsize/key")
		})
	}
}

// TestMemoryBudget keeps the per-key memory within the memory budget
// (1M keys × 10 samples ≤ 2 GiB with everything else) and checks that
// MemSize is a fair estimate.
func TestMemoryBudget(t *testing.T) {
	if testing.Short() {
		t.Skip("allocates")
	}
	if testutil.Race {
		t.Skip("heap figures under the race detector measure its allocator; make test runs this test without it")
	}
	for _, c := range memCases {
		per, ms := bytesPerKey(c, c.keysInTest)
		t.Logf("%s: %.0f bytes/key (MemSize %.0f)", c.name, per, ms)
		if c.maxPerKey > 0 && per > c.maxPerKey {
			t.Errorf("%s: %.0f bytes/key, budget %.0f", c.name, per, c.maxPerKey)
		}
		if ms < per*0.7 || ms > per*1.3 {
			t.Errorf("%s: MemSize %.0f, measured %.0f", c.name, ms, per)
		}
	}
}

// TestAddDoesNotAllocate checks the steady-state hot path allocates
// nothing: plain events, events with ids and events with repeating tags.
func TestAddDoesNotAllocate(t *testing.T) {
	ids := benchIDs()
	for _, tc := range []struct {
		name string
		ids  []string
		tags map[string]string
	}{
		{"plain", nil, nil},
		{"ids", ids, nil},
		{"tags", nil, map[string]string{"env": "prod"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w, ts, step := steadyWindow(10, tc.ids)
			e := event.Event{Key: "k", Tags: tc.tags}
			i := 2 * 600 * 10
			add := func() {
				e.TS, e.Value = ts, float64(i&127)
				if tc.ids != nil {
					e.ID = tc.ids[i%len(tc.ids)]
				}
				if w.Add(&e) != Applied {
					t.Fatal("not applied")
				}
				ts += step
				i++
			}
			for range 20000 { // let the id table and recent buffers settle
				add()
			}
			if n := testing.AllocsPerRun(20000, add); n != 0 {
				t.Fatalf("%v allocations per Add", n)
			}
		})
	}
}

// BenchmarkFill is a new key's first 10 events, one a second (the
// harness's Kafka scenarios at 100K keys are mostly this): with an id on
// each and without.
func BenchmarkFill(b *testing.B) {
	ids := benchIDs()
	s := DefaultShape()
	for _, withIDs := range []bool{false, true} {
		b.Run(map[bool]string{false: "plain", true: "ids"}[withIDs], func(b *testing.B) {
			b.ReportAllocs()
			e := event.Event{Key: "k"}
			for i := 0; i < b.N; i++ {
				w := New(&s)
				for j := range 10 {
					e.TS, e.Value = benchT0+int64(j)*1000, float64(j)
					if withIDs {
						e.ID = ids[(i*10+j)%len(ids)]
					}
					w.Add(&e)
				}
			}
		})
	}
}

// BenchmarkManyKeys is the harness's Kafka scenario at 100K keys seen from
// the windows alone: 100K new keys receive 30 events each, one a second, in
// a shuffled key order every second, so no key's state is in cache when
// its next event comes. ns/op is per event, with an id on each and without;
// cpu-ns/op is the process's CPU time per event (the collector's workers
// included), steadier than ns/op on a shared machine.
func BenchmarkManyKeys(b *testing.B) {
	const keys, rounds = 100_000, 30
	s := DefaultShape()
	order := rand.New(rand.NewPCG(1, 2)).Perm(keys)
	ids := make([]string, keys*rounds)
	for i := range ids {
		ids[i] = fmt.Sprintf("5f3a9c0e21b7-0000-%x", i)
	}
	for _, withIDs := range []bool{false, true} {
		b.Run(map[bool]string{false: "plain", true: "ids"}[withIDs], func(b *testing.B) {
			ws := make([]*Window, keys)
			e := event.Event{Key: "k"}
			var cpu time.Duration
			t0 := testutil.CPUTime()
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				j := i % (keys * rounds)
				if j == 0 {
					b.StopTimer()
					cpu += testutil.CPUTime() - t0
					for k := range ws {
						ws[k] = New(&s)
					}
					runtime.GC()
					t0 = testutil.CPUTime()
					b.StartTimer()
				}
				r, k := j/keys, order[j%keys]
				e.TS, e.Value = benchT0+int64(r)*1000, float64(j&127)
				if withIDs {
					e.ID = ids[j]
				}
				ws[k].Add(&e)
			}
			b.StopTimer()
			cpu += testutil.CPUTime() - t0
			b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N), "cpu-ns/op")
		})
	}
}

// BenchmarkManyKeysSteady is BenchmarkManyKeys in steady state: 20K keys
// whose windows are full (one event a second for over 10 minutes), each
// receiving its next second's event in a shuffled order, so every event
// evicts a bucket and, with ids, expires an id.
func BenchmarkManyKeysSteady(b *testing.B) {
	const keys, warm = 20_000, 700
	s := DefaultShape()
	order := rand.New(rand.NewPCG(1, 2)).Perm(keys)
	for _, withIDs := range []bool{false, true} {
		b.Run(map[bool]string{false: "plain", true: "ids"}[withIDs], func(b *testing.B) {
			ws := make([]*Window, keys)
			for k := range ws {
				ws[k] = New(&s)
			}
			e := event.Event{Key: "k"}
			var idb []byte
			add := func(j int) {
				r, k := j/keys, order[j%keys]
				e.TS, e.Value = benchT0+int64(r)*1000, float64(j&127)
				if withIDs {
					idb = strconv.AppendInt(append(idb[:0], "5f3a9c0e21b7-"...), int64(j), 36)
					e.ID = unsafe.String(unsafe.SliceData(idb), len(idb))
				}
				ws[k].Add(&e)
			}
			for j := range keys * warm {
				add(j)
			}
			runtime.GC()
			t0 := testutil.CPUTime()
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				add(keys*warm + i)
			}
			b.StopTimer()
			b.ReportMetric(float64((testutil.CPUTime()-t0).Nanoseconds())/float64(b.N), "cpu-ns/op")
		})
	}
}
