package actors

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/squallhq/squall/event"
	"github.com/squallhq/squall/internal/testutil"
	"github.com/squallhq/squall/window"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const t0 = int64(1764064800000) // 2025-11-25T10:00:00Z

func newEngine(t testing.TB, mod func(*Config)) *Engine {
	t.Helper()
	cfg := DefaultConfig()
	cfg.Partitions = 8
	if mod != nil {
		mod(&cfg)
	}
	e, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	return e
}

func submit(t testing.TB, e *Engine, evs ...event.Event) []Result {
	t.Helper()
	out := make([]Result, len(evs))
	if err := e.Submit(context.Background(), evs, out); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestSubmitAndGet(t *testing.T) {
	e := newEngine(t, nil)
	res := submit(t, e,
		event.Event{Key: "web-1.cpu", TS: t0, Value: 40},
		event.Event{Key: "web-1.cpu", TS: t0 + 1000, Value: 60, ID: "a"},
		event.Event{Key: "web-2.cpu", TS: t0, Value: 1},
		event.Event{Key: "web-1.cpu", TS: t0 + 1000, Value: 60, ID: "a"},
		event.Event{Key: "web-1.cpu", TS: t0 - 11*60*1000, Value: 5},
	)
	want := []Result{ResultApplied, ResultApplied, ResultApplied, ResultDuplicate, ResultLate}
	for i := range want {
		if res[i] != want[i] {
			t.Errorf("result %d = %v, want %v", i, res[i], want[i])
		}
	}
	st, err := e.Get(context.Background(), "web-1.cpu")
	if err != nil {
		t.Fatal(err)
	}
	w := st.Window
	if w.Count != 2 || w.Sum != 100 || w.Min != 40 || w.Max != 60 || w.Mean != 50 {
		t.Errorf("window = %+v", w)
	}
	if st.EventsApplied != 2 || st.DuplicatesDropped != 1 || st.LateDropped != 1 {
		t.Errorf("counters applied=%d dup=%d late=%d", st.EventsApplied, st.DuplicatesDropped, st.LateDropped)
	}
	if st.Subwindows["1m"].Count != 2 || st.Subwindows["5m"].Count != 2 {
		t.Errorf("subwindows = %+v", st.Subwindows)
	}
	if len(st.Recent) != 2 || st.Recent[1].ID != "a" || st.Recent[0].Key != "web-1.cpu" {
		t.Errorf("recent = %+v", st.Recent)
	}
	if _, err := e.Get(context.Background(), "nope"); err != ErrNotFound {
		t.Fatalf("Get(nope) = %v, want ErrNotFound", err)
	}
	if e.Live() != 2 {
		t.Fatalf("live = %d, want 2", e.Live())
	}
}

// Events for one key are applied in submission order, whatever partition
// batching happens, across many concurrent submitters.
func TestOrderPerKeyAndConcurrency(t *testing.T) {
	e := newEngine(t, func(c *Config) { c.Partitions = 16 })
	const writers, perWriter, keys = 8, 200, 50
	var wg sync.WaitGroup
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; i < perWriter; i++ {
				evs := make([]event.Event, keys)
				for k := range evs {
					evs[k] = event.Event{Key: fmt.Sprintf("k%d", k), TS: t0 + int64(i)*1000, Value: float64(w)}
				}
				out := make([]Result, len(evs))
				if err := e.Submit(context.Background(), evs, out); err != nil {
					t.Error(err)
					return
				}
			}
		}(w)
	}
	wg.Wait()
	for k := 0; k < keys; k++ {
		st, err := e.Get(context.Background(), fmt.Sprintf("k%d", k))
		if err != nil {
			t.Fatal(err)
		}
		if st.Window.Count != writers*perWriter {
			t.Fatalf("k%d count = %d, want %d", k, st.Window.Count, writers*perWriter)
		}
	}
}

func TestPassivationReleasesKeys(t *testing.T) {
	clock := testutil.NewClock(time.Unix(1764064800, 0))
	e := newEngine(t, func(c *Config) { c.Clock = clock; c.IdleTTL = time.Minute })
	for i := 0; i < 3000; i++ {
		submit(t, e, event.Event{Key: fmt.Sprintf("k%d", i), TS: t0, Value: 1})
	}
	clock.Advance(30 * time.Second)
	submit(t, e, event.Event{Key: "k0", TS: t0 + 1000, Value: 1}) // keeps k0 alive
	clock.Advance(30 * time.Second)
	n, err := e.Sweep(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if n != 2999 || e.Live() != 1 {
		t.Fatalf("passivated %d, live %d; want 2999 and 1", n, e.Live())
	}
	if _, err := e.Get(context.Background(), "k1"); err != ErrNotFound {
		t.Fatalf("k1 still live: %v", err)
	}
	if st, err := e.Get(context.Background(), "k0"); err != nil || st.Window.Count != 2 {
		t.Fatalf("k0 = %+v, %v", st, err)
	}
	// A passivated key starts afresh.
	submit(t, e, event.Event{Key: "k1", TS: t0, Value: 1})
	if st, _ := e.Get(context.Background(), "k1"); st.Window.Count != 1 {
		t.Fatalf("reactivated k1 count = %d", st.Window.Count)
	}
}

func TestMaxKeysSheds(t *testing.T) {
	e := newEngine(t, func(c *Config) { c.MaxKeys = 10 })
	evs := make([]event.Event, 15)
	for i := range evs {
		evs[i] = event.Event{Key: fmt.Sprintf("k%d", i), TS: t0, Value: 1}
	}
	res := submit(t, e, evs...)
	shed := 0
	for _, r := range res {
		if r == ResultShed {
			shed++
		}
	}
	if shed != 5 || e.Live() != 10 {
		t.Fatalf("shed %d live %d, want 5 and 10", shed, e.Live())
	}
	// Existing keys still take events.
	for i, r := range res {
		if r == ResultApplied {
			if got := submit(t, e, evs[i])[0]; got != ResultApplied {
				t.Fatalf("existing key %s: %v", evs[i].Key, got)
			}
		}
	}
}

type panicky struct{ WindowHandler }

func (h panicky) Apply(k *Key, ev *event.Event) window.Outcome {
	if ev.Value < 0 {
		panic("negative")
	}
	return h.WindowHandler.Apply(k, ev)
}

func TestHandlerPanicFailsOnlyItsEvent(t *testing.T) {
	e := newEngine(t, func(c *Config) { c.Handler = panicky{}; c.Partitions = 1 })
	res := submit(t, e,
		event.Event{Key: "a", TS: t0, Value: 1},
		event.Event{Key: "a", TS: t0, Value: -1},
		event.Event{Key: "b", TS: t0, Value: 2},
	)
	if res[0] != ResultApplied || res[1] != ResultFailed || res[2] != ResultApplied {
		t.Fatalf("results %v", res)
	}
}

// threshold is a custom Handler as a program embedding Squall would write:
// it keeps per-key state and emits when a key's mean crosses a limit.
type threshold struct {
	WindowHandler
	limit float64
}

func (h threshold) Apply(k *Key, ev *event.Event) window.Outcome {
	out := h.WindowHandler.Apply(k, ev)
	above := k.Window().Aggregate().Mean > h.limit
	if was, _ := k.State.(bool); above && !was {
		k.Emit(fmt.Sprintf("%s above %.0f", k.Name(), h.limit))
	}
	k.State = above
	return out
}

func TestCustomHandlerEmits(t *testing.T) {
	var mu sync.Mutex
	var got []Output
	e := newEngine(t, func(c *Config) {
		c.Handler = threshold{limit: 50}
		c.Sink = func(o Output) { mu.Lock(); got = append(got, o); mu.Unlock() }
	})
	submit(t, e,
		event.Event{Key: "x", TS: t0, Value: 10},
		event.Event{Key: "x", TS: t0 + 1, Value: 200}, // mean 105: emits
		event.Event{Key: "x", TS: t0 + 2, Value: 100}, // still above: no emit
		event.Event{Key: "y", TS: t0, Value: 1},
	)
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 1 || got[0].Key != "x" || got[0].Payload != "x above 50" {
		t.Fatalf("outputs = %+v", got)
	}
}

func TestListAndClose(t *testing.T) {
	e := newEngine(t, nil)
	for i := 0; i < 30; i++ {
		submit(t, e, event.Event{Key: fmt.Sprintf("host-%02d.cpu", i), TS: t0, Value: 1})
	}
	submit(t, e, event.Event{Key: "other", TS: t0, Value: 1})
	kl, err := e.List(context.Background(), "host-", "", 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(kl.Keys) != 10 || !kl.Truncated || kl.Keys[0].Key != "host-00.cpu" || kl.Keys[9].Key != "host-09.cpu" || kl.Live != 31 {
		t.Fatalf("list = %+v", kl)
	}
	// Pages follow Next until the last, which is not truncated.
	var seen []string
	for after := ""; ; {
		kl, err := e.List(context.Background(), "host-", after, 7)
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range kl.Keys {
			seen = append(seen, k.Key)
		}
		if !kl.Truncated {
			if kl.Next != "" {
				t.Fatalf("last page: next = %q", kl.Next)
			}
			break
		}
		if kl.Next != kl.Keys[len(kl.Keys)-1].Key {
			t.Fatalf("next = %q, last key %q", kl.Next, kl.Keys[len(kl.Keys)-1].Key)
		}
		after = kl.Next
	}
	if len(seen) != 30 || seen[0] != "host-00.cpu" || seen[29] != "host-29.cpu" || !slices.IsSorted(seen) {
		t.Fatalf("pages listed %v", seen)
	}
	sr, err := e.Series(context.Background(), "host-03.cpu")
	if err != nil || len(sr.Buckets) != 1 || sr.Buckets[0].Count != 1 || sr.Key != "host-03.cpu" || sr.ResolutionMs != 1000 {
		t.Fatalf("series = %+v, %v", sr, err)
	}
	if _, err := e.Series(context.Background(), "nope"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("series of a missing key: %v", err)
	}
	e.Close()
	e.Close()
	if err := e.Submit(context.Background(), []event.Event{{Key: "a", TS: t0}}, make([]Result, 1)); err != ErrClosed {
		t.Fatalf("Submit after Close = %v", err)
	}
}

func TestSubmitAsync(t *testing.T) {
	e := newEngine(t, nil)
	done := make(chan []Result, 1)
	evs := []event.Event{{Key: "a", TS: t0, Value: 1}, {Key: "b", TS: t0, Value: math.Pi}}
	if err := e.SubmitAsync(context.Background(), evs, func(r []Result) { done <- r }); err != nil {
		t.Fatal(err)
	}
	evs[0].Key = "mutated" // the engine copied the batch
	r := <-done
	if len(r) != 2 || r[0] != ResultApplied || r[1] != ResultApplied {
		t.Fatalf("results %v", r)
	}
	if _, err := e.Get(context.Background(), "a"); err != nil {
		t.Fatal(err)
	}
}

// BenchmarkApply measures in-process throughput from decoded events to
// applied state: batches of 1,000 events over 100K keys, 64 partitions,
// submitted by 2×GOMAXPROCS concurrent submitters.
func BenchmarkApply100KKeys(b *testing.B) {
	e := newEngine(b, func(c *Config) { c.Partitions = 64 })
	const keys, batch = 100_000, 1000
	names := make([]string, keys)
	for i := range names {
		names[i] = fmt.Sprintf("host-%05d.cpu", i)
	}
	// Activate every key first, so the run measures steady state.
	warm := make([]event.Event, 0, keys)
	for _, n := range names {
		warm = append(warm, event.Event{Key: n, TS: t0, Value: 1})
	}
	submit(b, e, warm...)
	testutil.SubmitParallel(b, names, t0, batch, func(evs []event.Event, out []Result) error {
		return e.Submit(context.Background(), evs, out)
	})
}
