package window

import (
	"fmt"
	"maps"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/squallhq/squall/event"
)

// model is a brute-force window: it keeps every applied event still inside
// the window and recomputes everything from them.
type model struct {
	res, R              int64
	recentN             int
	has                 bool
	newest              int64
	evs                 []mEvent // applied events inside the window, arrival order
	seq                 int
	applied, late, dups uint64
	recent              []mEvent // received events (any outcome), at most recentN
	tags                map[string]string
	tagsTS              int64
	sketchedChecks      int // checks whose range held a sketched bucket
}

type mEvent struct {
	ts, b int64
	v     float64
	id    string
	tags  map[string]string
	seq   int
	out   Outcome
}

func newModel(s *Shape) *model {
	return &model{res: s.Resolution.Milliseconds(), R: int64(s.Retention / s.Resolution), recentN: s.Recent}
}

// receive keeps e in the model's recent ring with outcome o.
func (m *model) receive(e *event.Event, o Outcome) {
	if m.recentN == 0 {
		return
	}
	var tags map[string]string
	if len(e.Tags) > 0 {
		tags = maps.Clone(e.Tags)
	}
	m.recent = append(m.recent, mEvent{ts: e.TS, v: e.Value, id: e.ID, tags: tags, out: o})
	if len(m.recent) > m.recentN {
		m.recent = m.recent[1:]
	}
}

func (m *model) add(e *event.Event) Outcome {
	o := m.outcome(e)
	m.receive(e, o)
	return o
}

func (m *model) outcome(e *event.Event) Outcome {
	b := floorDiv(e.TS, m.res)
	if m.has && b <= m.newest-m.R {
		m.late++
		return Late
	}
	if e.ID != "" {
		top := b
		if m.has {
			top = max(top, m.newest)
		}
		for _, x := range m.evs {
			if x.id == e.ID && x.b > top-m.R {
				m.dups++
				return Duplicate
			}
		}
	}
	if !m.has || b > m.newest {
		m.newest, m.has = b, true
		m.evs = slices.DeleteFunc(m.evs, func(x mEvent) bool { return x.b <= m.newest-m.R })
	}
	var tags map[string]string
	if len(e.Tags) > 0 {
		tags = maps.Clone(e.Tags)
		if m.tags == nil || e.TS >= m.tagsTS {
			m.tags, m.tagsTS = tags, e.TS
		}
	}
	m.seq++
	x := mEvent{ts: e.TS, b: b, v: e.Value, id: e.ID, tags: tags, seq: m.seq}
	m.evs = append(m.evs, x)
	m.applied++
	return Applied
}

// over returns the values of sub-window nb, its first bucket, Last, and
// whether any bucket in it holds more than SketchThreshold values.
func (m *model) over(nb int64) (vals []float64, first int64, last Point, sketched bool) {
	per := map[int64]int{}
	first = math.MaxInt64
	lastSeq := -1
	for _, x := range m.evs {
		if x.b <= m.newest-nb {
			continue
		}
		vals = append(vals, x.v)
		first = min(first, x.b)
		per[x.b]++
		if lastSeq < 0 || x.ts > last.TS || (x.ts == last.TS && x.seq > lastSeq) {
			last, lastSeq = Point{x.ts, x.v}, x.seq
		}
	}
	for _, n := range per {
		if n > SketchThreshold {
			sketched = true
		}
	}
	return vals, first, last, sketched
}

// check compares every aggregate of w with the model.
func (m *model) check(t *testing.T, w *Window, s *Shape, rng *rand.Rand, where string) {
	t.Helper()
	checkInvariants(t, w)
	if ap, late, dups := w.Counts(); ap != m.applied || late != m.late || dups != m.dups {
		t.Fatalf("%s: Counts = %d %d %d, want %d %d %d", where, ap, late, dups, m.applied, m.late, m.dups)
	}
	if !m.has {
		if !w.Empty() {
			t.Fatalf("%s: not Empty", where)
		}
		return
	}
	if w.NewestBucket() != m.newest {
		t.Fatalf("%s: NewestBucket = %d, want %d", where, w.NewestBucket(), m.newest)
	}
	ds := append([]time.Duration{0}, s.Subwindows...)
	ds = append(ds, time.Duration(1+rng.Int64N(m.R))*s.Resolution)
	for _, d := range ds {
		nb := m.R
		if d > 0 {
			nb = int64(d / s.Resolution)
		}
		wd := time.Duration(nb) * s.Resolution
		vals, first, last, sketched := m.over(nb)
		if sketched {
			m.sketchedChecks++
		}
		a := w.AggregateOver(d)
		what := fmt.Sprintf("%s: AggregateOver(%v)", where, d)
		if a.FromTS != first*m.res || a.ToTS != m.newest*m.res || a.Last != last {
			t.Fatalf("%s: from/to/last = %d %d %+v, want %d %d %+v", what, a.FromTS, a.ToTS, a.Last, first*m.res, m.newest*m.res, last)
		}
		if a.Rate != float64(len(vals))/wd.Seconds() {
			t.Fatalf("%s: rate %v", what, a.Rate)
		}
		e := bruteForce(vals)
		checkAgg(t, what, a, e, sketched)
		q := rng.Float64()
		sorted := slices.Clone(vals)
		slices.Sort(sorted)
		want := sorted[int(float64(q*float64(len(sorted)-1)))]
		got := w.Quantile(q, d)
		if (!sketched && got != want) || math.Abs(got-want) > relativeAccuracy*math.Abs(want)*(1+1e-9) {
			t.Fatalf("%s: Quantile(%v) = %v, want %v (sketched %v)", what, q, got, want, sketched)
		}
	}
	rec := w.Received()
	if len(rec) != len(m.recent) {
		t.Fatalf("%s: %d received events, want %d", where, len(rec), len(m.recent))
	}
	var applied []mEvent
	for i, x := range m.recent {
		r := rec[i]
		if r.TS != x.ts || r.Value != x.v || r.ID != x.id || r.Outcome != x.out || !maps.Equal(r.Tags, x.tags) {
			t.Fatalf("%s: Received[%d] = %+v, want %+v", where, i, r, x)
		}
		if x.out == Applied {
			applied = append(applied, x)
		}
	}
	if app := w.Recent(); len(app) != len(applied) {
		t.Fatalf("%s: %d recent events, want %d", where, len(app), len(applied))
	}
	if !maps.Equal(w.Tags(), m.tags) {
		t.Fatalf("%s: Tags = %v, want %v", where, w.Tags(), m.tags)
	}
}

// gen produces a random event stream for a shape.
type gen struct {
	rng     *rand.Rand
	res     int64
	retMs   int64
	t       int64
	step    int64 // max in-order step, ms
	idPool  int
	idForm  int // how ids look: see id
	jumps   int // per 10000 events
	tagSets []map[string]string
}

func (g *gen) next() *event.Event {
	r := g.rng
	e := &event.Event{Key: "k"}
	switch p := r.IntN(10000); {
	case p < g.jumps: // jump ahead, evicting much or all
		g.t += r.Int64N(3*g.retMs + 1)
		e.TS = g.t
	case p < 7000: // in order
		g.t += r.Int64N(g.step + 1)
		e.TS = g.t
	case p < 9000: // out of order, sometimes late
		e.TS = g.t - r.Int64N(g.retMs*13/10+1)
	default: // same ts as the cursor (Last ties)
		e.TS = g.t
	}
	switch p := r.IntN(10); {
	case p < 3:
		e.Value = float64(r.IntN(11))
	case p < 5:
		e.Value = -r.ExpFloat64() * 50
	case p < 6:
		e.Value = 0
	case p < 8:
		e.Value = math.Exp(r.NormFloat64()*3) * 100
	default:
		e.Value = r.Float64() * 1e-6
	}
	if r.IntN(2) == 0 {
		e.ID = g.id(r.IntN(g.idPool))
	}
	if r.IntN(5) == 0 {
		e.Tags = g.tagSets[r.IntN(len(g.tagSets))]
	}
	return e
}

// id returns id number i in the generator's form: short ids, a client's
// (shared prefix, sequence number), a prefix longer than the window keeps
// once, or the three mixed with ids that are each other's prefixes — so
// that the recent ring's shared prefix is set, kept, shortened and reset.
func (g *gen) id(i int) string {
	form := g.idForm
	if form == 3 {
		form = i % 4
	}
	switch form {
	case 0:
		return fmt.Sprintf("id-%d", i)
	case 1:
		return fmt.Sprintf("5f3a9c0e21b7-%x", i)
	case 2:
		return fmt.Sprintf("a-prefix-longer-than-the-window-keeps-%d", i)
	}
	return strings.Repeat("x", i%7+1)
}

func TestRandomized(t *testing.T) {
	shapes := []struct {
		name   string
		shape  Shape
		step   int64 // ms
		idPool int
		jumps  int // per 10000 events
		events int
	}{
		{"1s", Shape{Retention: 10 * time.Second, Resolution: time.Second, Subwindows: []time.Duration{2 * time.Second, 5 * time.Second}, Recent: 8}, 700, 40, 300, 6000},
		{"250ms", Shape{Retention: 5 * time.Second, Resolution: 250 * time.Millisecond, Subwindows: []time.Duration{250 * time.Millisecond, time.Second, 3 * time.Second}, Recent: 4}, 200, 30, 300, 6000},
		{"1ms", Shape{Retention: 50 * time.Millisecond, Resolution: time.Millisecond, Subwindows: []time.Duration{time.Millisecond, 10 * time.Millisecond}}, 3, 60, 300, 6000},
		{"default", DefaultShape(), 15000, 100, 300, 4000},
		// Hundreds of values per bucket: sketches in and out of range.
		{"dense", Shape{Retention: 4 * time.Second, Resolution: time.Second, Subwindows: []time.Duration{time.Second, 2 * time.Second}, Recent: 16}, 6, 5000, 3, 20000},
		{"dense 250ms", Shape{Retention: time.Second, Resolution: 250 * time.Millisecond, Subwindows: []time.Duration{500 * time.Millisecond}, Recent: 2}, 1, 3000, 3, 15000},
	}
	tagSets := []map[string]string{{"env": "prod"}, {"env": "dev", "dc": "a"}, {"env": "prod", "dc": "b"}}
	for _, sc := range shapes {
		for seed := uint64(1); seed <= 3; seed++ {
			t.Run(fmt.Sprintf("%s/seed%d", sc.name, seed), func(t *testing.T) {
				s := sc.shape
				rng := rand.New(rand.NewPCG(seed, 42))
				g := &gen{rng: rng, res: s.Resolution.Milliseconds(), retMs: s.Retention.Milliseconds(), step: sc.step, idPool: sc.idPool, idForm: rng.IntN(4), jumps: sc.jumps, tagSets: tagSets}
				g.t = rng.Int64N(4e12) - 1e12 // negative times too
				w, m := New(&s), newModel(&s)
				nextCheck := 1
				for i := 0; i < sc.events; i++ {
					e := g.next()
					want := m.add(e)
					if got := w.Add(e); got != want {
						t.Fatalf("event %d %+v: Add = %v, want %v", i, e, got, want)
					}
					if i == nextCheck {
						m.check(t, w, &s, rng, fmt.Sprintf("event %d", i))
						nextCheck += 1 + rng.IntN(50)
					}
					if i%997 == 500 {
						w = roundTrip(t, w, &s)
					}
				}
				m.check(t, w, &s, rng, "end")
				// The stream must exercise what it is meant to.
				if m.late == 0 || m.dups == 0 || m.applied < uint64(sc.events/2) {
					t.Fatalf("stream too tame: applied %d late %d dups %d", m.applied, m.late, m.dups)
				}
				if strings.HasPrefix(sc.name, "dense") && m.sketchedChecks < 50 {
					t.Fatalf("only %d checks covered sketched buckets", m.sketchedChecks)
				}
				t.Logf("applied %d late %d dups %d, sketched checks %d", m.applied, m.late, m.dups, m.sketchedChecks)
			})
		}
	}
}

// roundTrip encodes w, decodes it into a new window, checks that both give
// identical answers, and returns the decoded one.
func roundTrip(t *testing.T, w *Window, s *Shape) *Window {
	t.Helper()
	b, err := w.MarshalBinary()
	if err != nil {
		t.Fatalf("MarshalBinary: %v", err)
	}
	w2 := New(s)
	if err := w2.UnmarshalBinary(b); err != nil {
		t.Fatalf("UnmarshalBinary: %v", err)
	}
	sameWindows(t, w, w2, s)
	b2, err := w2.MarshalBinary()
	if err != nil {
		t.Fatalf("MarshalBinary: %v", err)
	}
	if len(b2) != len(b) {
		t.Fatalf("re-encoding gives %d bytes, first encoding %d", len(b2), len(b))
	}
	return w2
}

// sameWindows checks that two windows answer every query identically.
func sameWindows(t *testing.T, w, w2 *Window, s *Shape) {
	t.Helper()
	for _, d := range append([]time.Duration{0}, s.Subwindows...) {
		a, a2 := w.AggregateOver(d), w2.AggregateOver(d)
		if a != a2 {
			t.Fatalf("AggregateOver(%v) differs after round trip:\n%+v\n%+v", d, a, a2)
		}
	}
	if w.NewestBucket() != w2.NewestBucket() || w.Empty() != w2.Empty() {
		t.Fatal("newest/empty differ after round trip")
	}
	a1, l1, d1 := w.Counts()
	a2, l2, d2 := w2.Counts()
	if a1 != a2 || l1 != l2 || d1 != d2 {
		t.Fatal("counts differ after round trip")
	}
	r1, r2 := w.Received(), w2.Received()
	if len(r1) != len(r2) {
		t.Fatalf("recent differs: %d vs %d", len(r1), len(r2))
	}
	for i := range r1 {
		if r1[i].TS != r2[i].TS || r1[i].Value != r2[i].Value || r1[i].ID != r2[i].ID ||
			r1[i].Outcome != r2[i].Outcome || !maps.Equal(r1[i].Tags, r2[i].Tags) {
			t.Fatalf("recent[%d] differs: %+v vs %+v", i, r1[i], r2[i])
		}
	}
	if !maps.Equal(w.Tags(), w2.Tags()) {
		t.Fatal("tags differ after round trip")
	}
}
