package actors

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/squallhq/squall/cluster"
	"github.com/squallhq/squall/event"
)

func clustered(t testing.TB, mod func(*Config)) *Engine {
	return newEngine(t, func(c *Config) {
		c.Clustered = true
		c.Partitions = 4
		if mod != nil {
			mod(c)
		}
	})
}

// keysIn returns n keys of partition p (of 4).
func keysIn(p int32, n int) []string {
	var out []string
	for i := 0; len(out) < n; i++ {
		k := fmt.Sprintf("key-%d", i)
		if cluster.Partition(k, 4) == p {
			out = append(out, k)
		}
	}
	return out
}

func TestNotOwnedIsMoved(t *testing.T) {
	e := clustered(t, nil)
	if ok, err := e.Acquire(1, false); !ok || err != nil {
		t.Fatal(ok, err)
	}
	if ok, _ := e.Acquire(1, false); ok {
		t.Fatal("acquired twice")
	}
	in1, in2 := keysIn(1, 1)[0], keysIn(2, 1)[0]
	res := submit(t, e, event.Event{Key: in1, TS: t0, Value: 1}, event.Event{Key: in2, TS: t0, Value: 1})
	if res[0] != ResultApplied || res[1] != ResultMoved {
		t.Fatalf("results %v", res)
	}
	if _, err := e.Get(context.Background(), in2); err != ErrNotOwned {
		t.Fatalf("Get in unowned partition = %v", err)
	}
	if got := e.Owned(); len(got) != 1 || got[0] != 1 {
		t.Fatalf("owned %v", got)
	}
}

// A partition handed from one engine to another keeps every key's state,
// and events sent to the new owner while it awaits the state are applied
// after it, in order.
func TestHandoffKeepsState(t *testing.T) {
	ctx := context.Background()
	a, b := clustered(t, nil), clustered(t, nil)
	a.Acquire(2, false)
	keys := keysIn(2, 200)
	for i := 0; i < 10; i++ {
		evs := make([]event.Event, len(keys))
		for j, k := range keys {
			evs[j] = event.Event{Key: k, TS: t0 + int64(i)*1000, Value: float64(i), ID: fmt.Sprint(i)}
		}
		submit(t, a, evs...)
	}
	b.Acquire(2, true)
	// Sent to b before the state arrives: held, then applied on top of it.
	held := make(chan []Result, 1)
	b.SubmitAsync(ctx, []event.Event{{Key: keys[0], TS: t0 + 10000, Value: 100, ID: "late-comer"}, {Key: keys[1], TS: t0, Value: 5, ID: "0"}},
		func(r []Result) { held <- r })
	select {
	case r := <-held:
		t.Fatalf("applied before the handoff: %v", r)
	case <-time.After(50 * time.Millisecond):
	}
	snaps, err := a.Release(ctx, 2)
	if err != nil || len(snaps) != len(keys) {
		t.Fatalf("release: %d snapshots, %v", len(snaps), err)
	}
	if r := submit(t, a, event.Event{Key: keys[0], TS: t0, Value: 1}); r[0] != ResultMoved {
		t.Fatalf("after release: %v", r)
	}
	if a.Live() != 0 {
		t.Fatalf("old owner still holds %d keys", a.Live())
	}
	if err := b.Restore(ctx, 2, snaps[:100], false); err != nil {
		t.Fatal(err)
	}
	if err := b.Restore(ctx, 2, snaps[100:], true); err != nil {
		t.Fatal(err)
	}
	r := <-held
	if r[0] != ResultApplied || r[1] != ResultDuplicate { // id "0" came with the state
		t.Fatalf("held results %v", r)
	}
	st, err := b.Get(ctx, keys[0])
	if err != nil || st.Window.Count != 11 || st.Window.Sum != 145 || st.Window.Last.Value != 100 {
		t.Fatalf("state after handoff %+v %v", st, err)
	}
	if st, _ := b.Get(ctx, keys[5]); st.Window.Count != 10 || st.EventsApplied != 10 {
		t.Fatalf("key 5 %+v", st)
	}
	if b.Live() != int64(len(keys)) {
		t.Fatalf("new owner live %d", b.Live())
	}
}

func TestAwaitTimesOut(t *testing.T) {
	e := clustered(t, func(c *Config) { c.AwaitHandoff = 100 * time.Millisecond })
	e.Acquire(3, true)
	k := keysIn(3, 1)[0]
	start := time.Now()
	if r := submit(t, e, event.Event{Key: k, TS: t0, Value: 1}); r[0] != ResultApplied {
		t.Fatalf("result %v", r)
	}
	if d := time.Since(start); d < 90*time.Millisecond {
		t.Fatalf("applied after %s, before the await timeout", d)
	}
}

// Releasing a partition that still awaits its state sends its held events
// back as moved.
func TestReleaseWhileAwaiting(t *testing.T) {
	e := clustered(t, nil)
	e.Acquire(0, true)
	done := make(chan []Result, 1)
	e.SubmitAsync(context.Background(), []event.Event{{Key: keysIn(0, 1)[0], TS: t0, Value: 1}}, func(r []Result) { done <- r })
	if _, err := e.Release(context.Background(), 0); err != nil {
		t.Fatal(err)
	}
	if r := <-done; r[0] != ResultMoved {
		t.Fatalf("held event result %v", r)
	}
	if _, err := e.Release(context.Background(), 0); err != ErrNotOwned {
		t.Fatalf("second release %v", err)
	}
}

func TestOnServe(t *testing.T) {
	type call struct {
		p      int32
		handed bool
	}
	calls := make(chan call, 10)
	e := clustered(t, func(c *Config) {
		c.AwaitHandoff = 100 * time.Millisecond
		c.OnServe = func(p int32, handed bool) { calls <- call{p, handed} }
	})
	next := func() call {
		select {
		case c := <-calls:
			return c
		case <-time.After(2 * time.Second):
			t.Fatal("OnServe not called")
			return call{}
		}
	}
	e.Acquire(0, false)
	if c := next(); c != (call{0, false}) {
		t.Fatalf("plain acquire: %+v", c)
	}
	e.Acquire(1, true)
	e.Restore(context.Background(), 1, nil, true)
	if c := next(); c != (call{1, true}) {
		t.Fatalf("handed over: %+v", c)
	}
	e.Acquire(2, true) // nothing comes: the wait times out
	if c := next(); c != (call{2, false}) {
		t.Fatalf("timed out: %+v", c)
	}
}
