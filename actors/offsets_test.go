package actors

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/squallhq/squall/event"
)

func submitRecords(t *testing.T, e *Engine, replay bool, evs []event.Event, offs []int64) []Result {
	t.Helper()
	out := make([]Result, len(evs))
	if err := e.SubmitRecords(context.Background(), evs, offs, replay, out); err != nil {
		t.Fatal(err)
	}
	return out
}

// The restore offset is the oldest record offset still in some key's
// window, whatever the order of offsets and event times.
func TestRestoreOffset(t *testing.T) {
	ctx := context.Background()
	e := clustered(t, nil)
	e.Acquire(1, false)
	ks := keysIn(1, 2)
	a, b := ks[0], ks[1]
	if o, err := e.RestoreOffset(ctx, 1); err != nil || o != -1 {
		t.Fatalf("empty partition: %d %v", o, err)
	}
	const min = 60_000
	submitRecords(t, e, false, []event.Event{
		{Key: a, TS: t0, Value: 1},          // offset 100
		{Key: b, TS: t0 + 5*min, Value: 1},  // offset 101
		{Key: a, TS: t0 + 1*min, Value: 1},  // offset 102
		{Key: b, TS: t0 - 3*min, Value: 1},  // offset 103: b's oldest bucket, out of order
		{Key: a, TS: t0 - 20*min, Value: 1}, // offset 104: late for a, not kept
	}, []int64{100, 101, 102, 103, 104})
	if o, _ := e.RestoreOffset(ctx, 1); o != 100 {
		t.Fatalf("restore offset %d, want 100", o)
	}
	// a moves 10 minutes on: its records at offsets 100 and 102 leave its
	// window; b's record 103 is now the oldest needed.
	submitRecords(t, e, false, []event.Event{{Key: a, TS: t0 + 11*min + 1000, Value: 1}}, []int64{105})
	if o, _ := e.RestoreOffset(ctx, 1); o != 101 {
		// b holds 101 (t0+5m) and 103 (t0-3m): its oldest offset is 101.
		t.Fatalf("restore offset %d, want 101", o)
	}
	// Offsets travel with a handoff.
	snaps, err := e.Release(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	f := clustered(t, nil)
	f.Acquire(1, true)
	if err := f.Restore(ctx, 1, snaps, true); err != nil {
		t.Fatal(err)
	}
	if o, _ := f.RestoreOffset(ctx, 1); o != 101 {
		t.Fatalf("after handoff: restore offset %d, want 101", o)
	}
}

// In restore mode handlers rebuild state and emit nothing.
func TestReplayEmitsNothing(t *testing.T) {
	var mu sync.Mutex
	var got []Output
	e := newEngine(t, func(c *Config) {
		c.Handler = threshold{limit: 50}
		c.Sink = func(o Output) { mu.Lock(); got = append(got, o); mu.Unlock() }
	})
	submitRecords(t, e, true, []event.Event{{Key: "x", TS: t0, Value: 100}}, []int64{0})
	submitRecords(t, e, false, []event.Event{{Key: "y", TS: t0, Value: 100}}, []int64{1})
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 1 || got[0].Key != "y" {
		t.Fatalf("outputs %+v", got)
	}
	st, _ := e.Get(context.Background(), "x")
	if st.Window.Count != 1 {
		t.Fatalf("replayed state %+v", st.Window)
	}
}

// keyOffsets against a model that keeps every applied record: whatever the
// order of event times, the oldest offset it gives is the oldest of the
// records in a segment the window still reaches — at or before the oldest
// record in the window, and never before a record a whole segment older
// than the window — and a snapshot's pairs, loaded elsewhere, give the same.
func TestKeyOffsetsModel(t *testing.T) {
	type rec struct{ bucket, off int64 }
	for _, windowBuckets := range []int64{1, 7, 15, 16, 600, 3600} {
		seg := offsetSegment(windowBuckets)
		if (offsetSlots-1)*seg < windowBuckets {
			t.Fatalf("window %d: %d segments of %d buckets do not cover it", windowBuckets, offsetSlots-1, seg)
		}
		rng := rand.New(rand.NewPCG(uint64(windowBuckets), 1))
		for run := range 200 {
			var o keyOffsets
			var recs []rec
			newest, off := int64(rng.IntN(1000))-500, int64(rng.IntN(100))
			started := false
			for step := range 300 {
				// Mostly forward, sometimes a jump, sometimes out of order.
				b := newest
				switch r := rng.IntN(10); {
				case r < 5:
					b += int64(rng.IntN(int(seg) + 2))
				case r < 7:
					b += int64(rng.IntN(int(3*windowBuckets) + 1))
				default:
					b -= int64(rng.IntN(int(windowBuckets) + 2))
				}
				off += 1 + int64(rng.IntN(3))
				if started && b <= newest-windowBuckets {
					continue // late: the window does not apply it
				}
				if !started || b > newest {
					newest, started = b, true
				}
				o.track(b, off, seg)
				recs = append(recs, rec{b, off})
				cut := newest - windowBuckets
				want, inWindow := int64(-1), int64(-1)
				for _, r := range recs {
					if floorDiv(r.bucket, seg)*seg+seg-1 > cut && (want < 0 || r.off < want) {
						want = r.off
					}
					if r.bucket > cut && (inWindow < 0 || r.off < inWindow) {
						inWindow = r.off
					}
				}
				got := o.oldest(cut, seg)
				if got != want {
					t.Fatalf("window %d run %d step %d: oldest %d, want %d", windowBuckets, run, step, got, want)
				}
				if inWindow < 0 || got > inWindow {
					t.Fatalf("window %d run %d step %d: oldest %d after the window's oldest record %d", windowBuckets, run, step, got, inWindow)
				}
				var p keyOffsets
				p.load(o.pairs(cut, seg), seg)
				if pg := p.oldest(cut, seg); pg != got {
					t.Fatalf("window %d run %d step %d: loaded from pairs %d, want %d", windowBuckets, run, step, pg, got)
				}
			}
		}
	}
}

// Pairs come ordered by bucket, and a node that keeps per-bucket pairs
// (and drops those up to its cut) keeps each segment as long as this one.
func TestKeyOffsetsPairs(t *testing.T) {
	var o keyOffsets
	seg := offsetSegment(600) // 40
	for i, b := range []int64{1000, 930, 1001, 880, 1040, 990} {
		o.track(b, int64(100+i), seg)
	}
	got := o.pairs(1000-600, seg)
	want := []int64{919, 103, 959, 101, 999, 105, 1039, 100, 1079, 104}
	if !slices.Equal(got, want) {
		t.Fatalf("pairs %v, want %v", got, want)
	}
	if o.pairs(1079, seg) != nil {
		t.Fatal("pairs of an evicted window")
	}
}

// BenchmarkApplyRecordsSteady measures applying log records to keys whose
// windows are full (10,000 keys, one event a second each for longer than
// the retention), the steady state of a node fed from Kafka: every event
// opens a bucket and evicts one, in the window and in the key's offsets.
func BenchmarkApplyRecordsSteady(b *testing.B) {
	e := newEngine(b, func(c *Config) { c.Partitions = 64 })
	const keys, batch = 10_000, 1000
	names := make([]string, keys)
	for i := range names {
		names[i] = fmt.Sprintf("host-%05d.cpu", i)
	}
	evs := make([]event.Event, batch)
	offs := make([]int64, batch)
	out := make([]Result, batch)
	next := 0
	step := func() {
		for i := range evs {
			j := next + i
			evs[i] = event.Event{Key: names[j%keys], TS: t0 + int64(j/keys)*1000, Value: float64(j % 100)}
			offs[i] = int64(j)
		}
		next += batch
		if err := e.SubmitRecords(context.Background(), evs, offs, false, out); err != nil {
			b.Fatal(err)
		}
	}
	windowSeconds := int(DefaultConfig().Shape.Retention.Seconds())
	before := heapInUse()
	for next < keys*(windowSeconds+10) {
		step()
	}
	perKey := float64(heapInUse()-before) / keys
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for range b.N {
		step()
	}
	b.ReportMetric(float64(time.Since(start).Nanoseconds())/float64(b.N*batch), "ns/event")
	b.ReportMetric(perKey, "heap-B/key") // (ResetTimer drops metrics)
}

// A key fed without a log keeps no offsets (and no ring); one fed from a
// log hands its offsets over.
func TestOffsetsOnlyFromALog(t *testing.T) {
	ctx := context.Background()
	e := clustered(t, nil)
	e.Acquire(1, false)
	ks := keysIn(1, 2)
	if err := e.Submit(ctx, []event.Event{{Key: ks[0], TS: t0, Value: 1}}, make([]Result, 1)); err != nil {
		t.Fatal(err)
	}
	submitRecords(t, e, false, []event.Event{{Key: ks[1], TS: t0, Value: 1}}, []int64{7})
	snaps, err := e.Release(ctx, 1)
	if err != nil || len(snaps) != 2 {
		t.Fatalf("release: %d keys, %v", len(snaps), err)
	}
	for _, s := range snaps {
		switch {
		case s.Key == ks[0] && s.Offsets != nil:
			t.Errorf("key fed without a log hands offsets over: %v", s.Offsets)
		case s.Key == ks[1] && (len(s.Offsets) != 2 || s.Offsets[1] != 7):
			t.Errorf("key fed from a log hands over %v, want one segment at offset 7", s.Offsets)
		}
	}
}
