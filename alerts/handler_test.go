package alerts

import (
	"bytes"
	"context"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/squallhq/squall/actors"
	"github.com/squallhq/squall/event"
	"github.com/squallhq/squall/internal/scenario"
	"github.com/squallhq/squall/internal/testutil"
	"github.com/squallhq/squall/rules"
	"github.com/squallhq/squall/window"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const scenarioDir = "../testdata/rules"

var nan = math.NaN()

// rig is an engine running the alerts Handler on a manual clock, its
// outputs collected.
type rig struct {
	t     *testing.T
	h     *Handler
	e     *actors.Engine
	clock *testutil.Clock
	mu    sync.Mutex
	out   []rules.Transition
}

func newRig(t *testing.T, set *rules.Set, partitions int, mod func(*actors.Config)) *rig {
	t.Helper()
	return newRigClock(t, set, partitions, testutil.NewClock(time.UnixMilli(1764064800000)), mod)
}

func newRigClock(t *testing.T, set *rules.Set, partitions int, clock *testutil.Clock, mod func(*actors.Config)) *rig {
	t.Helper()
	r := &rig{t: t, clock: clock}
	h, err := New(set, r.clock, nil)
	if err != nil {
		t.Fatal(err)
	}
	r.h = h
	cfg := actors.DefaultConfig()
	cfg.Partitions, cfg.Handler, cfg.Clock = partitions, h, r.clock
	cfg.TickInterval = time.Hour // the test ticks
	cfg.Sink = r.collect
	if mod != nil {
		mod(&cfg)
	}
	e, err := actors.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	r.e = e
	t.Cleanup(func() { _ = e.Close() })
	return r
}

func (r *rig) collect(o actors.Output) {
	r.mu.Lock()
	r.out = append(r.out, o.Payload.(rules.Transition))
	r.mu.Unlock()
}

func (r *rig) send(evs ...event.Event) []actors.Result {
	r.t.Helper()
	out := make([]actors.Result, len(evs))
	if err := r.e.Submit(context.Background(), evs, out); err != nil {
		r.t.Fatal(err)
	}
	return out
}

func (r *rig) tick(now int64) {
	r.t.Helper()
	r.clock.Set(time.UnixMilli(now))
	if err := r.e.Tick(context.Background()); err != nil {
		r.t.Fatal(err)
	}
}

func (r *rig) take() []rules.Transition {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := r.out
	r.out = nil
	return out
}

// byKey orders transitions by key, keeping each key's own order: the
// order between keys depends on partitions and timers, not on semantics.
func byKey(trs []rules.Transition) []byte {
	slices.SortStableFunc(trs, func(a, b rules.Transition) int {
		switch {
		case a.Key < b.Key:
			return -1
		case a.Key > b.Key:
			return 1
		}
		return 0
	})
	var b bytes.Buffer
	for _, tr := range trs {
		j, _ := json.Marshal(tr)
		b.Write(j)
		b.WriteByte('\n')
	}
	return b.Bytes()
}

func goldenByKey(t *testing.T, path string) []byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var trs []rules.Transition
	for _, line := range bytes.Split(bytes.TrimSpace(data), []byte("\n")) {
		if len(line) == 0 {
			continue
		}
		var d struct {
			rules.Transition
			Value *float64 `json:"value"`
		}
		if err := json.Unmarshal(line, &d); err != nil {
			t.Fatal(err)
		}
		d.Transition.Value = nan
		if d.Value != nil {
			d.Transition.Value = *d.Value
		}
		trs = append(trs, d.Transition)
	}
	return byKey(trs)
}

// TestScenariosThroughEngine runs every scenario of testdata/rules through
// key actors (the engine, partitions, timer heaps) and expects the golden
// transitions of the pure evaluation, per key in the same order. With
// handoff, every partition's state is handed to a second engine halfway.
func TestScenariosThroughEngine(t *testing.T) {
	dirs, err := filepath.Glob(filepath.Join(scenarioDir, "*", "rules.yaml"))
	if err != nil || len(dirs) == 0 {
		t.Fatalf("no scenarios (%v)", err)
	}
	for _, rf := range dirs {
		dir := filepath.Dir(rf)
		for _, mode := range []string{"one-partition", "seven-partitions", "handoff-every-step"} {
			t.Run(filepath.Base(dir)+"/"+mode, func(t *testing.T) {
				set, err := rules.Load(rf)
				if err != nil {
					t.Fatal(err)
				}
				var got []rules.Transition
				steps := scenario.Read(t, filepath.Join(dir, "events.ndjson"))
				if mode == "handoff-every-step" {
					got = runHandedOff(t, set, steps)
				} else {
					r := newRig(t, set, map[string]int{"one-partition": 1, "seven-partitions": 7}[mode], nil)
					for _, s := range steps {
						r.step(s)
					}
					got = r.take()
				}
				if got, want := byKey(got), goldenByKey(t, filepath.Join(dir, "want.golden")); !bytes.Equal(got, want) {
					t.Errorf("got:\n%s\nwant:\n%s", got, want)
				}
			})
		}
	}
}

func (r *rig) step(s scenario.Step) {
	r.t.Helper()
	if s.Now != nil {
		r.tick(*s.Now)
		return
	}
	r.clock.Set(time.UnixMilli(s.Wall))
	r.send(event.Event{Key: s.Key, TS: s.TS, Value: s.Value, Tags: s.Tags})
}

// runHandedOff runs steps on two clustered engines (two nodes, each with
// its own Handler), moving every partition to the other after each step.
func runHandedOff(t *testing.T, set *rules.Set, steps []scenario.Step) []rules.Transition {
	t.Helper()
	const partitions = 3
	a := newRig(t, set, partitions, func(c *actors.Config) { c.Clustered = true })
	var b *rig
	b = newRigClock(t, set, partitions, a.clock, func(c *actors.Config) {
		c.Clustered, c.Sink = true, a.collect // one stream of outputs, in order
	})
	ctx := context.Background()
	for p := range int32(partitions) {
		if _, err := a.e.Acquire(p, false); err != nil {
			t.Fatal(err)
		}
	}
	from, to := a, b
	for _, s := range steps {
		from.step(s)
		for p := range int32(partitions) {
			keys, err := from.e.Release(ctx, p)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := to.e.Acquire(p, true); err != nil {
				t.Fatal(err)
			}
			if err := to.e.Restore(ctx, p, keys, true); err != nil {
				t.Fatal(err)
			}
		}
		if n := len(from.h.Firing()); n != 0 {
			t.Fatalf("%d firing alerts left on the node that handed everything off", n)
		}
		from, to = to, from
	}
	return a.take()
}

func mustParse(t *testing.T, y string) *rules.Set {
	t.Helper()
	set, err := rules.Parse("test.yaml", []byte(y))
	if err != nil {
		t.Fatal(err)
	}
	return set
}

const cpuRules = `
rules:
  - name: high-cpu
    match: "*.cpu"
    aggregate: max
    over: 1m
    op: ">"
    threshold: 90
  - name: silent
    match: "*.cpu"
    absent: 1m
`

func ids(trs []rules.Transition) []string {
	out := make([]string, len(trs))
	for i := range trs {
		out[i] = trs[i].ID()
	}
	return out
}

// TestReplayRebuildsWithoutEmitting: events replayed from Kafka rebuild
// rule states (the alert is firing on the node) but emit nothing; the live
// event after them resolves with the id a live run would have given.
func TestReplayRebuildsWithoutEmitting(t *testing.T) {
	r := newRig(t, mustParse(t, cpuRules), 4, nil)
	ctx := context.Background()
	t0 := int64(1764064800000)
	evs := []event.Event{{Key: "web.cpu", TS: t0, Value: 50}, {Key: "web.cpu", TS: t0 + 1000, Value: 95}}
	out := make([]actors.Result, len(evs))
	if err := r.e.SubmitRecords(ctx, evs, []int64{10, 11}, true, out); err != nil {
		t.Fatal(err)
	}
	if got := r.take(); len(got) != 0 {
		t.Fatalf("replay emitted %v", ids(got))
	}
	if f := r.h.Firing(); len(f) != 1 || f[0].ID() != "high-cpu/web.cpu/1764064801000/firing" {
		t.Fatalf("firing after replay = %v", ids(f))
	}
	// Live: 61s later the 95 has left the 1m sub-window.
	if err := r.e.SubmitRecords(ctx, []event.Event{{Key: "web.cpu", TS: t0 + 62000, Value: 10}}, []int64{12}, false, out[:1]); err != nil {
		t.Fatal(err)
	}
	got := r.take()
	if len(got) != 1 || got[0].ID() != "high-cpu/web.cpu/1764064862000/resolved" {
		t.Fatalf("live transitions = %v", ids(got))
	}
	if len(r.h.Firing()) != 0 {
		t.Fatalf("still firing: %v", ids(r.h.Firing()))
	}
}

// TestOutputCarriesOffset: an output names the partition and the Kafka
// offset of the record that produced it, so delivery can hold commits.
func TestOutputCarriesOffset(t *testing.T) {
	var mu sync.Mutex
	var outs []actors.Output
	r := newRig(t, mustParse(t, cpuRules), 4, func(c *actors.Config) {
		c.Sink = func(o actors.Output) { mu.Lock(); outs = append(outs, o); mu.Unlock() }
	})
	out := make([]actors.Result, 2)
	evs := []event.Event{{Key: "a.cpu", TS: 1764064800000, Value: 1}, {Key: "a.cpu", TS: 1764064801000, Value: 99}}
	if err := r.e.SubmitRecords(context.Background(), evs, []int64{41, 42}, false, out); err != nil {
		t.Fatal(err)
	}
	r.send(event.Event{Key: "a.cpu", TS: 1764064900000, Value: 1}) // resolves; not from Kafka
	mu.Lock()
	defer mu.Unlock()
	if len(outs) != 2 || outs[0].Offset != 42 || outs[1].Offset != -1 || outs[0].Partition != outs[1].Partition {
		t.Fatalf("outputs = %+v", outs)
	}
}

// TestFiringKeysOutlivePassivation: an idle key with a firing alert stays
// live (its resolution must be seen); the others are passivated.
func TestFiringKeysOutlivePassivation(t *testing.T) {
	r := newRig(t, mustParse(t, cpuRules), 4, func(c *actors.Config) { c.IdleTTL = time.Minute })
	t0 := int64(1764064800000)
	r.clock.Set(time.UnixMilli(t0))
	r.send(event.Event{Key: "hot.cpu", TS: t0, Value: 99}, event.Event{Key: "cool.cpu", TS: t0, Value: 1},
		event.Event{Key: "other", TS: t0, Value: 1})
	r.clock.Set(time.UnixMilli(t0 + 2*60_000))
	n, err := r.e.Sweep(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	// hot.cpu has a firing alert, cool.cpu an absent rule waiting to fire:
	// both stay; other goes.
	if n != 1 || r.e.Live() != 2 {
		t.Fatalf("passivated %d, live %d; want 1 and 2", n, r.e.Live())
	}
}

// TestReload: unchanged rules keep their state, a changed rule starts
// over (its firing alert leaves the registry), a new rule applies at once.
func TestReload(t *testing.T) {
	r := newRig(t, mustParse(t, cpuRules), 4, nil)
	t0 := int64(1764064800000)
	r.send(event.Event{Key: "web.cpu", TS: t0, Value: 99})
	if got := ids(r.take()); len(got) != 1 {
		t.Fatalf("transitions %v", got)
	}
	// Same high-cpu, a new rule: high-cpu stays firing (no new firing).
	r.h.Reload(mustParse(t, cpuRules+`
  - name: any-count
    match: "web.*"
    aggregate: count
    op: ">="
    threshold: 2
`))
	if len(r.h.Firing()) != 1 {
		t.Fatalf("firing after same-rule reload: %v", ids(r.h.Firing()))
	}
	r.send(event.Event{Key: "web.cpu", TS: t0 + 1000, Value: 98})
	if got := ids(r.take()); len(got) != 1 || got[0] != "any-count/web.cpu/1764064801000/firing" {
		t.Fatalf("after reload: %v", got)
	}
	// high-cpu's threshold changes: its state is dropped without a
	// transition, and it fires again under the new definition.
	r.h.Reload(mustParse(t, `
rules:
  - name: high-cpu
    match: "*.cpu"
    aggregate: max
    over: 1m
    op: ">"
    threshold: 95
`))
	// any-count is gone from the set: its alert leaves at once too.
	if f := ids(r.h.Firing()); len(f) != 0 {
		t.Fatalf("firing after changed reload: %v", f)
	}
	r.send(event.Event{Key: "web.cpu", TS: t0 + 2000, Value: 97})
	if got := ids(r.take()); len(got) != 1 || got[0] != "high-cpu/web.cpu/1764064802000/firing" {
		t.Fatalf("after changed reload: %v", got)
	}
}

// TestDescribe: the key document lists each matching rule's state.
func TestDescribe(t *testing.T) {
	r := newRig(t, mustParse(t, cpuRules), 4, nil)
	t0 := int64(1764064800000)
	r.send(event.Event{Key: "web.cpu", TS: t0, Value: 99})
	st, err := r.e.Get(context.Background(), "web.cpu")
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Rules) != 2 {
		t.Fatalf("rules = %+v", st.Rules)
	}
	hc, sl := st.Rules[0], st.Rules[1]
	if hc.Rule != "high-cpu" || hc.Kind != "threshold" || hc.State != "firing" || hc.Value == nil || *hc.Value != 99 ||
		hc.Since == nil || hc.Since.UnixMilli() != t0 {
		t.Errorf("high-cpu = %+v", hc)
	}
	if sl.Rule != "silent" || sl.Kind != "absent" || sl.State != "inactive" || sl.Value != nil || sl.LastSeen == nil || sl.Since != nil {
		t.Errorf("silent = %+v", sl)
	}
	if _, err := json.Marshal(st); err != nil {
		t.Fatal(err)
	}
	r.send(event.Event{Key: "other", TS: t0, Value: 1})
	if st, err := r.e.Get(context.Background(), "other"); err != nil || len(st.Rules) != 0 {
		t.Fatalf("other: %+v %v", st, err)
	}
}

// TestRestoreStateErrors: a handoff whose rule state is corrupt is
// refused with an error naming the key.
func TestRestoreStateErrors(t *testing.T) {
	r := newRig(t, mustParse(t, cpuRules), 1, func(c *actors.Config) { c.Clustered = true })
	if _, err := r.e.Acquire(0, true); err != nil {
		t.Fatal(err)
	}
	shape := window.DefaultShape()
	win, _ := window.New(&shape).MarshalBinary()
	for _, b := range [][]byte{{9}, {1}, {1, 2, 200}, {1, 2, 1, 5, 'a'}, {1, 2, 1, 1, 'x', 1, 9}} {
		err := r.e.Restore(context.Background(), 0, []actors.KeySnapshot{{Key: "x.cpu", Window: win, Handler: b}}, false)
		if err == nil || !strings.Contains(err.Error(), "x.cpu") || !strings.Contains(err.Error(), "rule state") {
			t.Errorf("Restore with handler state %v: %v", b, err)
		}
	}
}
