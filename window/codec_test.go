package window

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/squallhq/squall/event"
)

// checkInvariants verifies the internal structure of w.
func checkInvariants(t testing.TB, w *Window) {
	t.Helper()
	if w.applied == 0 {
		if len(w.hdr) != int(w.hh) || w.x != nil && len(w.x.sk) != w.x.skh {
			t.Fatal("state in an empty window")
		}
		return
	}
	R := int64(w.span)
	live := w.hdr[w.hh:]
	if len(live) == 0 {
		t.Fatal("no buckets in a non-empty window")
	}
	raw, sk := 0, 0
	for i, h := range live {
		b := w.base + int64(h.rel)
		if b <= w.newest-R || b > w.newest {
			t.Fatalf("bucket %d outside the window (newest %d)", b, w.newest)
		}
		if i > 0 && h.rel <= live[i-1].rel {
			t.Fatal("buckets not ascending")
		}
		if h.n == 0 {
			if w.x == nil || w.x.skh+sk >= len(w.x.sk) || w.x.sk[w.x.skh+sk].b != b {
				t.Fatalf("sketched bucket %d has no sketch", b)
			}
			sk++
		}
		raw += int(h.n)
	}
	if w.base+int64(live[len(live)-1].rel) != w.newest {
		t.Fatal("newest bucket not held")
	}
	if raw != len(w.vals)-int(w.vh) {
		t.Fatalf("headers count %d raw values, slice holds %d", raw, len(w.vals)-int(w.vh))
	}
	if w.x != nil && len(w.x.sk)-w.x.skh != sk {
		t.Fatalf("%d sketches for %d sketched buckets", len(w.x.sk)-w.x.skh, sk)
	}
	if floorDiv(w.last.TS, w.shape.resMs()) != w.newest {
		t.Fatal("last not in the newest bucket")
	}
	if len(w.ring) > w.shape.Recent || int(w.rnext) >= max(len(w.ring), 1) {
		t.Fatal("bad recent ring")
	}
	if x := w.x; x != nil {
		if x.rids != nil && len(x.rids) != len(w.ring) || x.rtags != nil && len(x.rtags) != len(w.ring) {
			t.Fatal("recent ids/tags out of step with the ring")
		}
		if len(x.ids.words)%idGroup != 0 {
			t.Fatal("bad id table")
		}
	}
}

func TestRebase(t *testing.T) {
	s := Shape{Retention: 10 * time.Millisecond, Resolution: time.Millisecond, Subwindows: []time.Duration{3 * time.Millisecond}, Recent: 2}
	w, m := New(&s), newModel(&s)
	rng := rand.New(rand.NewPCG(1, 1))
	add := func(ts int64, id string) {
		t.Helper()
		e := &event.Event{TS: ts, Value: float64(ts % 7), ID: id}
		if got, want := w.Add(e), m.add(e); got != want {
			t.Fatalf("Add(%d) = %v, want %v", ts, got, want)
		}
		checkInvariants(t, w)
		m.check(t, w, &s, rng, fmt.Sprintf("ts %d", ts))
	}
	add(0, "a")
	add(1<<31-12, "b")
	for ts := int64(1<<31 - 11); ts < 1<<31+10; ts++ {
		add(ts, "")
		add(ts-5, fmt.Sprint(ts%3))
	}
	for _, jump := range []int64{1 << 33, 1<<33 + 1, 1<<33 + 2, 1 << 40, 1<<40 + 9, 1<<40 + 3, 1 << 61} {
		add(jump, "b")
		add(jump-2, "a")
	}
	w = roundTrip(t, w, &s)
	add(1<<61+1, "b")
}

// sampleWindows returns windows in various states for codec tests.
func sampleWindows(s *Shape) map[string]*Window {
	out := map[string]*Window{"empty": New(s)}
	rng := rand.New(rand.NewPCG(7, 7))
	tags := []map[string]string{{"env": "prod"}, {"env": "dev", "dc": "a"}}
	for _, n := range []int{1, 10, 100, 3000} {
		w := New(s)
		ts := int64(1_700_000_000_000)
		for i := 0; i < n; i++ {
			e := &event.Event{TS: ts - rng.Int64N(5000), Value: rng.NormFloat64() * 100}
			if i%3 == 0 {
				e.ID = fmt.Sprint("id-", i)
			}
			if i%5 == 0 {
				e.Tags = tags[i%2]
			}
			w.Add(e)
			w.Add(e) // duplicates
			ts += rng.Int64N(30)
		}
		out[fmt.Sprint(n, "events")] = w
	}
	return out
}

func TestMarshalRoundTrip(t *testing.T) {
	s := testShape()
	s.Recent = 8
	for name, w := range sampleWindows(s) {
		t.Run(name, func(t *testing.T) {
			w2 := roundTrip(t, w, s)
			checkInvariants(t, w2)
			// Same dedup behaviour: re-sending every recent id is a
			// duplicate on both.
			for _, e := range w.Recent() {
				if e.ID == "" {
					continue
				}
				e2 := e
				if a, b := w.Add(&e), w2.Add(&e2); a != Duplicate || b != Duplicate {
					t.Fatalf("id %q: %v on the original, %v on the copy", e.ID, a, b)
				}
			}
			// And both evolve identically.
			for i := 0; i < 200; i++ {
				e := &event.Event{TS: 1_700_000_000_000 + int64(i)*50, Value: float64(i), ID: fmt.Sprint("id-", i)}
				e2 := *e
				if a, b := w.Add(e), w2.Add(&e2); a != b {
					t.Fatalf("event %d: %v on the original, %v on the copy", i, a, b)
				}
			}
			sameWindows(t, w, w2, s)
		})
	}
}

func TestUnmarshalShapeChanges(t *testing.T) {
	s := testShape()
	s.Recent = 8
	w := sampleWindows(s)["3000events"]
	b, err := w.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}

	other := *s
	other.Resolution = 500 * time.Millisecond
	if err := New(&other).UnmarshalBinary(b); !errors.Is(err, ErrShapeMismatch) {
		t.Fatalf("different resolution: %v", err)
	}

	// Shorter retention and fewer recent events: the decoded state is cut
	// to the new shape, and matches the original's sub-window.
	short := *s
	short.Retention, short.Recent, short.Subwindows = 2*time.Second, 3, nil
	w2 := New(&short)
	if err := w2.UnmarshalBinary(b); err != nil {
		t.Fatal(err)
	}
	checkInvariants(t, w2)
	a, a2 := w.AggregateOver(2*time.Second), w2.Aggregate()
	a.Rate, a2.Rate = 0, 0
	if a != a2 {
		t.Fatalf("shorter retention:\n%+v\n%+v", a, a2)
	}
	r, r2 := w.Recent(), w2.Recent()
	if len(r2) != 3 || r2[2].TS != r[len(r)-1].TS || r2[0].TS != r[len(r)-3].TS {
		t.Fatalf("recent cut wrong: %+v", r2)
	}
}

func TestUnmarshalCorrupt(t *testing.T) {
	s := testShape()
	for name, w := range sampleWindows(s) {
		b, err := w.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		before := w.Aggregate()
		// Every truncation fails cleanly and leaves the window alone.
		for n := 0; n < len(b); n++ {
			if err := w.UnmarshalBinary(b[:n]); !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrShapeMismatch) {
				t.Fatalf("%s: truncated to %d: %v", name, n, err)
			}
		}
		if err := w.UnmarshalBinary(append(b, 0)); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("%s: trailing byte: %v", name, err)
		}
		// Flipped bytes never panic; when accepted, the state is sound.
		rng := rand.New(rand.NewPCG(3, 3))
		for range 300 {
			c := append([]byte(nil), b...)
			c[rng.IntN(len(c))] ^= byte(1 + rng.IntN(255))
			w2 := New(s)
			if err := w2.UnmarshalBinary(c); err == nil {
				checkInvariants(t, w2)
				_ = w2.Aggregate()
			}
		}
		if w.Aggregate() != before {
			t.Fatalf("%s: a failed UnmarshalBinary changed the window", name)
		}
	}
	bad := map[string][]byte{
		"nil":     nil,
		"magic":   []byte("XX\x01"),
		"version": []byte("SW\x09"),
	}
	for name, b := range bad {
		if err := New(s).UnmarshalBinary(b); !errors.Is(err, ErrCorrupt) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// FuzzUnmarshalBinary feeds arbitrary bytes to the decoder: it must never
// panic, and whatever it accepts must be a sound window that re-encodes to
// an equivalent one.
func FuzzUnmarshalBinary(f *testing.F) {
	s := testShape()
	for _, w := range sampleWindows(s) {
		b, err := w.MarshalBinary()
		if err != nil {
			f.Fatal(err)
		}
		if len(b) < 4096 {
			f.Add(b)
		}
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		w := New(s)
		if err := w.UnmarshalBinary(b); err != nil {
			if !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrShapeMismatch) {
				t.Fatalf("unexpected error type: %v", err)
			}
			return
		}
		checkInvariants(t, w)
		w2 := roundTrip(t, w, s)
		w2.Add(&event.Event{TS: w2.last.TS + 1, Value: 1, ID: "x"})
		checkInvariants(t, w2)
	})
}
