package actors

import (
	"context"
	"sync"
	"testing"

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
