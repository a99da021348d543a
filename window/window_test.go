package window

import (
	"errors"
	"maps"
	"math"
	"slices"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/squallhq/squall/event"
)

// testShape is a small shape: 10 buckets of 1s, sub-windows 2s and 5s.
func testShape() *Shape {
	return &Shape{Retention: 10 * time.Second, Resolution: time.Second, Subwindows: []time.Duration{2 * time.Second, 5 * time.Second}, Recent: 4}
}

func ev(ts int64, v float64) *event.Event { return &event.Event{Key: "k", TS: ts, Value: v} }

func evID(ts int64, v float64, id string) *event.Event {
	return &event.Event{Key: "k", TS: ts, Value: v, ID: id}
}

func evTags(ts int64, v float64, tags map[string]string) *event.Event {
	return &event.Event{Key: "k", TS: ts, Value: v, Tags: tags}
}

func mustAdd(t *testing.T, w *Window, e *event.Event, want Outcome) {
	t.Helper()
	if got := w.Add(e); got != want {
		t.Fatalf("Add(ts=%d v=%v id=%q) = %v, want %v", e.TS, e.Value, e.ID, got, want)
	}
}

func TestShapeValidate(t *testing.T) {
	def := DefaultShape()
	if err := def.Validate(); err != nil {
		t.Fatalf("DefaultShape invalid: %v", err)
	}
	if def.Retention != 10*time.Minute || def.Resolution != time.Second || def.Recent != 32 ||
		len(def.Subwindows) != 2 || def.Subwindows[0] != time.Minute || def.Subwindows[1] != 5*time.Minute {
		t.Fatalf("DefaultShape = %+v", def)
	}
	tests := []struct {
		name  string
		mod   func(s *Shape)
		field string // "" = valid
	}{
		{"default", func(s *Shape) {}, ""},
		{"no subwindows", func(s *Shape) { s.Subwindows = nil }, ""},
		{"recent 0", func(s *Shape) { s.Recent = 0 }, ""},
		{"250ms", func(s *Shape) { s.Resolution = 250 * time.Millisecond }, ""},
		{"zero resolution", func(s *Shape) { s.Resolution = 0 }, "Resolution"},
		{"sub-ms resolution", func(s *Shape) { s.Resolution = 1500 * time.Microsecond }, "Resolution"},
		{"zero retention", func(s *Shape) { s.Retention = 0 }, "Retention"},
		{"retention not multiple", func(s *Shape) { s.Retention = 10*time.Minute + 500*time.Millisecond }, "Retention"},
		{"too many buckets", func(s *Shape) { s.Resolution = time.Millisecond; s.Retention = 2000 * time.Hour }, "Retention"},
		{"subwindow not multiple", func(s *Shape) { s.Subwindows = []time.Duration{1500 * time.Millisecond} }, "Subwindows[0]"},
		{"subwindow too long", func(s *Shape) { s.Subwindows = []time.Duration{time.Minute, time.Hour} }, "Subwindows[1]"},
		{"subwindow zero", func(s *Shape) { s.Subwindows = []time.Duration{0} }, "Subwindows[0]"},
		{"subwindows unsorted", func(s *Shape) { s.Subwindows = []time.Duration{5 * time.Minute, time.Minute} }, "Subwindows"},
		{"subwindows duplicate", func(s *Shape) { s.Subwindows = []time.Duration{time.Minute, time.Minute} }, "Subwindows"},
		{"negative recent", func(s *Shape) { s.Recent = -1 }, "Recent"},
		{"huge recent", func(s *Shape) { s.Recent = MaxRecent + 1 }, "Recent"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := DefaultShape()
			tc.mod(&s)
			err := s.Validate()
			if tc.field == "" {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if !errors.Is(err, ErrInvalidShape) || !strings.Contains(err.Error(), tc.field) {
				t.Fatalf("Validate = %v, want ErrInvalidShape naming %s", err, tc.field)
			}
		})
	}
	var nilShape *Shape
	if err := nilShape.Validate(); !errors.Is(err, ErrInvalidShape) {
		t.Fatalf("nil Validate = %v", err)
	}
	defer func() {
		if recover() == nil {
			t.Fatal("New with an invalid shape did not panic")
		}
	}()
	New(&Shape{})
}

func TestOutcomeString(t *testing.T) {
	for o, want := range map[Outcome]string{Applied: "applied", Late: "late", Duplicate: "duplicate", 7: "Outcome(7)"} {
		if got := o.String(); got != want {
			t.Errorf("%d.String() = %q, want %q", o, got, want)
		}
	}
}

func TestEmpty(t *testing.T) {
	w := New(testShape())
	if !w.Empty() || w.NewestBucket() != 0 || w.Recent() != nil || w.Tags() != nil {
		t.Fatal("new window not empty")
	}
	if a := w.Aggregate(); a != (Aggregates{}) {
		t.Fatalf("Aggregate of empty = %+v", a)
	}
	if a := w.AggregateOver(2 * time.Second); a != (Aggregates{}) {
		t.Fatalf("AggregateOver of empty = %+v", a)
	}
	if q := w.Quantile(0.5, 0); q != 0 {
		t.Fatalf("Quantile of empty = %v", q)
	}
	mustAdd(t, w, ev(5, 1), Applied)
	if w.Empty() {
		t.Fatal("Empty after an event")
	}
}

// TestBuckets checks which bucket an event falls in, FromTS/ToTS, and the
// late boundary.
func TestBuckets(t *testing.T) {
	tests := []struct {
		name       string
		ts         []int64
		outcomes   []Outcome
		newest     int64
		from, to   int64
		count      uint64
		last       int64
		resolution time.Duration
	}{
		{"first ms of bucket", []int64{1000}, []Outcome{Applied}, 1, 1000, 1000, 1, 1000, time.Second},
		{"last ms of bucket", []int64{1999}, []Outcome{Applied}, 1, 1000, 1000, 1, 1999, time.Second},
		{"same bucket", []int64{1000, 1999}, []Outcome{Applied, Applied}, 1, 1000, 1000, 2, 1999, time.Second},
		{"next bucket", []int64{1999, 2000}, []Outcome{Applied, Applied}, 2, 1000, 2000, 2, 2000, time.Second},
		{"negative ts", []int64{-1}, []Outcome{Applied}, -1, -1000, -1000, 1, -1, time.Second},
		{"negative boundary", []int64{-1000, -1001}, []Outcome{Applied, Applied}, -1, -2000, -1000, 2, -1000, time.Second},
		{"zero", []int64{0, -1}, []Outcome{Applied, Applied}, 0, -1000, 0, 2, 0, time.Second},
		// newest 10, R 10: bucket 0 (ts 999) is late, bucket 1 is not.
		{"late at newest-R", []int64{10000, 999}, []Outcome{Applied, Late}, 10, 10000, 10000, 1, 10000, time.Second},
		{"in at newest-R+1", []int64{10000, 1000}, []Outcome{Applied, Applied}, 10, 1000, 10000, 2, 10000, time.Second},
		{"late after advance", []int64{1000, 10000, 11000, 1500}, []Outcome{Applied, Applied, Applied, Late}, 11, 10000, 11000, 2, 11000, time.Second},
		{"250ms buckets", []int64{249, 250, 499, 500}, []Outcome{Applied, Applied, Applied, Applied}, 2, 0, 500, 4, 500, 250 * time.Millisecond},
		{"250ms late", []int64{2500, 0, 249, 250}, []Outcome{Applied, Late, Late, Applied}, 10, 250, 2500, 2, 2500, 250 * time.Millisecond},
		{"huge ts clamped", []int64{math.MaxInt64}, []Outcome{Applied}, maxTS / 1000, maxTS / 1000 * 1000, maxTS / 1000 * 1000, 1, maxTS, time.Second},
		{"tiny ts clamped", []int64{math.MinInt64}, []Outcome{Applied}, -maxTS/1000 - 1, (-maxTS/1000 - 1) * 1000, (-maxTS/1000 - 1) * 1000, 1, -maxTS, time.Second},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := testShape()
			s.Resolution = tc.resolution
			s.Subwindows = nil
			if tc.resolution != time.Second {
				s.Retention = 10 * tc.resolution
			}
			w := New(s)
			for i, ts := range tc.ts {
				mustAdd(t, w, ev(ts, float64(i)), tc.outcomes[i])
			}
			a := w.Aggregate()
			if w.NewestBucket() != tc.newest || a.FromTS != tc.from || a.ToTS != tc.to || a.Count != tc.count || a.Last.TS != tc.last {
				t.Fatalf("newest=%d from=%d to=%d count=%d last=%d; want %d %d %d %d %d",
					w.NewestBucket(), a.FromTS, a.ToTS, a.Count, a.Last.TS, tc.newest, tc.from, tc.to, tc.count, tc.last)
			}
		})
	}
}

// TestEvictionAndSubwindows fills buckets 0..9 with value k in bucket k and
// checks the whole window, the sub-windows and eviction on advance.
func TestEvictionAndSubwindows(t *testing.T) {
	w := New(testShape())
	for k := int64(0); k < 10; k++ {
		mustAdd(t, w, ev(k*1000+500, float64(k)), Applied)
	}
	type want struct {
		d        time.Duration
		count    uint64
		sum      float64
		min, max float64
		from     int64
		rate     float64
	}
	check := func(ws []want) {
		t.Helper()
		for _, x := range ws {
			a := w.AggregateOver(x.d)
			if a.Count != x.count || a.Sum != x.sum || a.Min != x.min || a.Max != x.max || a.FromTS != x.from || a.Rate != x.rate {
				t.Errorf("AggregateOver(%v) = %+v, want %+v", x.d, a, x)
			}
			if a.Mean != x.sum/float64(x.count) {
				t.Errorf("AggregateOver(%v).Mean = %v", x.d, a.Mean)
			}
		}
	}
	check([]want{
		{10 * time.Second, 10, 45, 0, 9, 0, 1},
		{0, 10, 45, 0, 9, 0, 1},
		{time.Hour, 10, 45, 0, 9, 0, 1},
		{5 * time.Second, 5, 35, 5, 9, 5000, 1},
		{2 * time.Second, 2, 17, 8, 9, 8000, 1},
		{time.Second, 1, 9, 9, 9, 9000, 1},
		{1500 * time.Millisecond, 1, 9, 9, 9, 9000, 1}, // rounded down to 1s
		{time.Millisecond, 1, 9, 9, 9, 9000, 1},        // at least one bucket
	})
	if a := w.Aggregate(); a != w.AggregateOver(0) {
		t.Fatalf("Aggregate %+v != AggregateOver(0) %+v", a, w.AggregateOver(0))
	}
	// Advancing to bucket 10 evicts bucket 0.
	mustAdd(t, w, ev(10000, 10), Applied)
	check([]want{
		{0, 10, 55, 1, 10, 1000, 1},
		{2 * time.Second, 2, 19, 9, 10, 9000, 1},
	})
	// Advancing to bucket 13 evicts buckets 1..3; sub-window 5s = 9..13
	// holds 9, 10 and 13.
	mustAdd(t, w, ev(13999, 13), Applied)
	check([]want{
		{0, 8, 4 + 5 + 6 + 7 + 8 + 9 + 10 + 13, 4, 13, 4000, 0.8},
		{5 * time.Second, 3, 32, 9, 13, 9000, 0.6},
		{2 * time.Second, 1, 13, 13, 13, 13000, 0.5},
	})
	// An out-of-order event fills an empty bucket inside the window.
	mustAdd(t, w, ev(11000, -2), Applied)
	check([]want{
		{5 * time.Second, 4, 30, -2, 13, 9000, 0.8},
		{3 * time.Second, 2, 11, -2, 13, 11000, 2.0 / 3},
	})
	// A jump far ahead evicts everything else.
	mustAdd(t, w, ev(1_000_000, 7), Applied)
	check([]want{{0, 1, 7, 7, 7, 1_000_000, 0.1}})
	if ap, late, dup := w.Counts(); ap != 14 || late != 0 || dup != 0 {
		t.Fatalf("Counts = %d %d %d", ap, late, dup)
	}
}

func TestLast(t *testing.T) {
	tests := []struct {
		name string
		evs  []*event.Event
		want Point
	}{
		{"single", []*event.Event{ev(1000, 1)}, Point{1000, 1}},
		{"in order", []*event.Event{ev(1000, 1), ev(2000, 2)}, Point{2000, 2}},
		{"out of order older", []*event.Event{ev(2000, 2), ev(1000, 1)}, Point{2000, 2}},
		{"older in same bucket", []*event.Event{ev(2500, 2), ev(2100, 1)}, Point{2500, 2}},
		{"tie: latest arrival", []*event.Event{ev(2000, 2), ev(2000, 3)}, Point{2000, 3}},
		{"tie after newer", []*event.Event{ev(2000, 2), ev(1000, 1), ev(2000, 5)}, Point{2000, 5}},
		{"late does not count", []*event.Event{ev(20000, 2), ev(5000, 9)}, Point{20000, 2}},
		{"duplicate does not count", []*event.Event{evID(2000, 2, "a"), evID(2000, 9, "a")}, Point{2000, 2}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			w := New(testShape())
			for _, e := range tc.evs {
				w.Add(e)
			}
			if got := w.Aggregate().Last; got != tc.want {
				t.Fatalf("Last = %+v, want %+v", got, tc.want)
			}
			if got := w.AggregateOver(time.Second).Last; got != tc.want {
				t.Fatalf("sub-window Last = %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestDuplicates(t *testing.T) {
	type step struct {
		ts   int64
		id   string
		want Outcome
	}
	tests := []struct {
		name  string
		steps []step
		dups  uint64
	}{
		{"same id same bucket", []step{{1000, "a", Applied}, {1000, "a", Duplicate}}, 1},
		{"same id other bucket", []step{{1000, "a", Applied}, {5000, "a", Duplicate}}, 1},
		{"same id out of order", []step{{5000, "a", Applied}, {1000, "a", Duplicate}}, 1},
		{"different ids", []step{{1000, "a", Applied}, {1000, "b", Applied}}, 0},
		{"no id never duplicate", []step{{1000, "", Applied}, {1000, "", Applied}}, 0},
		// bucket 1 evicted once newest reaches 11: the id is accepted again.
		{"evicted id accepted again", []step{{1000, "a", Applied}, {11000, "", Applied}, {11000, "a", Applied}, {11500, "a", Duplicate}}, 1},
		// The id's bucket is still held (newest 10, R 10: bucket 1 held).
		{"id at oldest held bucket", []step{{1000, "a", Applied}, {10000, "", Applied}, {10000, "a", Duplicate}}, 1},
		// Applying the event would evict the bucket holding the id: not a
		// duplicate, and the window advances.
		{"id evicted by the event itself", []step{{1000, "a", Applied}, {11000, "a", Applied}}, 0},
		// Late is checked before Duplicate.
		{"late before duplicate", []step{{1000, "a", Applied}, {10000, "", Applied}, {500, "a", Late}}, 0},
		{"duplicate is not applied", []step{{1000, "a", Applied}, {9000, "a", Duplicate}, {9500, "b", Applied}}, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			w := New(testShape())
			for _, s := range tc.steps {
				mustAdd(t, w, evID(s.ts, 1, s.id), s.want)
			}
			if _, _, dups := w.Counts(); dups != tc.dups {
				t.Fatalf("duplicates = %d, want %d", dups, tc.dups)
			}
		})
	}
	t.Run("duplicate does not advance", func(t *testing.T) {
		w := New(testShape())
		mustAdd(t, w, evID(1000, 1, "a"), Applied)
		mustAdd(t, w, evID(5000, 1, "a"), Duplicate)
		if w.NewestBucket() != 1 {
			t.Fatalf("newest = %d after a duplicate", w.NewestBucket())
		}
	})
	t.Run("many ids over many evictions", func(t *testing.T) {
		// Exercises table rebuilds: 5 ids per bucket for 1000 buckets,
		// each id re-sent once inside the window and once after eviction.
		w := New(testShape())
		id := func(i int) string { return "id-" + strings.Repeat("x", i%7) + string(rune('a'+i%26)) + itoa(i) }
		for i := 0; i < 5000; i++ {
			ts := int64(i/5) * 1000
			mustAdd(t, w, evID(ts, 1, id(i)), Applied)
			if i >= 5 {
				mustAdd(t, w, evID(ts, 1, id(i-5)), Duplicate) // one bucket old
			}
			if i >= 60 {
				mustAdd(t, w, evID(ts, 1, id(i-60)), Applied) // 12 buckets old: evicted
			}
		}
		if n := len(w.x.ids.words); n > 256 {
			t.Fatalf("id table grew to %d slots for ~100 live ids", n)
		}
	})
}

func itoa(i int) string {
	if i == 0 {
		return "0"
	}
	var b []byte
	for ; i > 0; i /= 10 {
		b = append([]byte{byte('0' + i%10)}, b...)
	}
	return string(b)
}

func TestTags(t *testing.T) {
	w := New(testShape())
	mustAdd(t, w, ev(1000, 1), Applied)
	if w.Tags() != nil {
		t.Fatal("tags without tagged events")
	}
	mustAdd(t, w, evTags(2000, 1, map[string]string{"env": "prod"}), Applied)
	mustAdd(t, w, evTags(1500, 1, map[string]string{"env": "old"}), Applied) // older: ignored for Tags
	if got := w.Tags()["env"]; got != "prod" {
		t.Fatalf("Tags = %v", w.Tags())
	}
	mustAdd(t, w, evTags(2000, 1, map[string]string{"env": "tie"}), Applied) // tie: latest arrival
	if got := w.Tags()["env"]; got != "tie" {
		t.Fatalf("Tags = %v", w.Tags())
	}
	mustAdd(t, w, ev(3000, 1), Applied) // untagged newer event keeps the last tags
	if got := w.Tags()["env"]; got != "tie" {
		t.Fatalf("Tags = %v", w.Tags())
	}
	mustAdd(t, w, evTags(50000, 1, map[string]string{"env": "new", "dc": "x"}), Applied)
	if got := w.Tags(); len(got) != 2 || got["env"] != "new" || got["dc"] != "x" {
		t.Fatalf("Tags = %v", got)
	}
	mustAdd(t, w, evTags(100, 1, map[string]string{"env": "late"}), Late)
	if got := w.Tags()["env"]; got != "new" {
		t.Fatalf("late event changed Tags: %v", w.Tags())
	}
}

// TestNoAliasing checks that the window copies the strings it keeps.
func TestNoAliasing(t *testing.T) {
	buf := []byte("id-1envprod")
	s := string(buf) // a real program aliases a shared buffer with unsafe.String
	e := &event.Event{TS: 1000, Value: 1, ID: s[:4], Tags: map[string]string{s[4:7]: s[7:]}}
	w := New(testShape())
	mustAdd(t, w, e, Applied)
	e.Tags["env"] = "changed" // the caller reuses its map
	e.ID = "id-2"
	if got := w.Tags()["env"]; got != "prod" {
		t.Fatalf("Tags aliased the event's map: %v", w.Tags())
	}
	r := w.Recent()
	if r[0].ID != "id-1" || r[0].Tags["env"] != "prod" {
		t.Fatalf("Recent = %+v", r)
	}
	r[0].Tags["env"] = "mutated"
	if w.Recent()[0].Tags["env"] != "prod" {
		t.Fatal("Recent returned the window's own tag map")
	}
	mustAdd(t, w, evID(1000, 1, "id-1"), Duplicate)
}

func TestRecent(t *testing.T) {
	w := New(testShape()) // Recent 4
	mustAdd(t, w, evID(1000, 1, "a"), Applied)
	mustAdd(t, w, ev(2000, 2), Applied)
	mustAdd(t, w, evID(2000, 2, "a"), Duplicate)
	got := w.Recent()
	if len(got) != 2 || got[0].ID != "a" || got[0].Value != 1 || got[1].ID != "" || got[1].TS != 2000 {
		t.Fatalf("Recent = %+v", got)
	}
	for i := 3; i <= 7; i++ {
		mustAdd(t, w, evTags(int64(i)*1000, float64(i), map[string]string{"i": itoa(i % 2)}), Applied)
	}
	mustAdd(t, w, ev(500, 0), Applied) // out of order: recent is arrival order
	got = w.Recent()
	var vals []float64
	for _, e := range got {
		vals = append(vals, e.Value)
	}
	if len(got) != 4 || vals[0] != 5 || vals[1] != 6 || vals[2] != 7 || vals[3] != 0 {
		t.Fatalf("Recent values = %v", vals)
	}
	if got[0].Tags["i"] != "1" || got[1].Tags["i"] != "0" || got[3].Tags != nil || got[0].ID != "" {
		t.Fatalf("Recent = %+v", got)
	}

	s := testShape()
	s.Recent = 0
	w = New(s)
	mustAdd(t, w, evID(1000, 1, "a"), Applied)
	if w.Recent() != nil {
		t.Fatal("Recent with Recent=0")
	}
}

// TestReceived checks that the ring keeps late and duplicate events with
// their outcome, ids and tags, that Recent shows only the applied ones, that
// both survive an encoding, and that re-applying the received events to a
// new window rebuilds the same state while they are all of them.
func TestReceived(t *testing.T) {
	s := testShape()
	s.Recent = 8
	w := New(s)
	evs := []*event.Event{
		evTags(20_000, 1, map[string]string{"env": "prod"}),
		evID(21_000, 2, "a"),
		evID(21_500, 3, "a"), // duplicate
		evTags(5_000, 4, map[string]string{"env": "late"}), // late: bucket 5 ≤ 21 − 10
		ev(22_000, 5),
	}
	want := []Outcome{Applied, Applied, Duplicate, Late, Applied}
	for i, e := range evs {
		mustAdd(t, w, e, want[i])
	}
	got := w.Received()
	if len(got) != len(evs) {
		t.Fatalf("Received = %+v", got)
	}
	for i, r := range got {
		if r.Outcome != want[i] || r.TS != evs[i].TS || r.Value != evs[i].Value || r.ID != evs[i].ID || !maps.Equal(r.Tags, evs[i].Tags) {
			t.Errorf("Received[%d] = %+v, want %+v %v", i, r, *evs[i], want[i])
		}
	}
	if tags := w.Tags(); tags["env"] != "prod" {
		t.Errorf("a late event's tags became the window's: %v", tags)
	}
	if r := w.Recent(); len(r) != 3 || r[0].Value != 1 || r[1].Value != 2 || r[2].Value != 5 {
		t.Errorf("Recent = %+v", r)
	}
	w2 := roundTrip(t, w, s)
	w3 := New(s)
	for _, r := range w2.Received() {
		mustAdd(t, w3, &r.Event, r.Outcome)
	}
	sameWindows(t, w, w3, s)

	// Once more events arrived than the ring holds, the oldest go.
	for i := range 10 {
		mustAdd(t, w, ev(23_000+int64(i), float64(i)), Applied)
	}
	if got := w.Received(); len(got) != 8 || got[0].Value != 2 || got[0].Outcome != Applied {
		t.Errorf("Received after overflow = %+v", got)
	}
}

// The example docs/semantics.md gives: of the values 40 and 60, p50, p95
// and p99 are all 40 (rank floor(q·1) = 0, no interpolation), where
// linear interpolation would give 50, 59 and 59.8.
func TestQuantilesOfTwoValues(t *testing.T) {
	w := New(testShape())
	mustAdd(t, w, ev(1_764_064_800_000, 40), Applied)
	mustAdd(t, w, ev(1_764_064_801_000, 60), Applied)
	if a := w.Aggregate(); a.P50 != 40 || a.P95 != 40 || a.P99 != 40 || a.Mean != 50 {
		t.Fatalf("Aggregate of 40, 60 = %+v", a)
	}
	if got := w.Quantile(1, 0); got != 60 {
		t.Fatalf("Quantile(1) = %v, want the maximum 60", got)
	}
}

func TestQuantilesExact(t *testing.T) {
	w := New(testShape())
	// Values 1..100 spread over buckets 0..9, out of order inside.
	for i := 100; i >= 1; i-- {
		mustAdd(t, w, ev(int64(i%10)*1000+int64(i), float64(i)), Applied)
	}
	a := w.Aggregate()
	// ranks floor(q·99): 49, 94, 98.
	if a.P50 != 50 || a.P95 != 95 || a.P99 != 99 || a.Min != 1 || a.Max != 100 || a.Sum != 5050 {
		t.Fatalf("Aggregate = %+v", a)
	}
	for _, tc := range []struct{ q, want float64 }{{0, 1}, {-1, 1}, {math.NaN(), 1}, {1, 100}, {2, 100}, {0.5, 50}, {0.999, 99}} {
		if got := w.Quantile(tc.q, 0); got != tc.want {
			t.Errorf("Quantile(%v) = %v, want %v", tc.q, got, tc.want)
		}
	}
	// Sub-window 1s = bucket 9 holds 9, 19, ..., 99.
	if got := w.Quantile(0.5, time.Second); got != 49 {
		t.Errorf("Quantile(0.5, 1s) = %v, want 49", got)
	}
}

// TestSketchedBucket puts far more values than SketchThreshold in buckets
// and checks quantiles within 1%, exact count/sum/min/max, and eviction.
func TestSketchedBucket(t *testing.T) {
	w := New(testShape())
	var all []float64
	for b := int64(0); b < 3; b++ {
		for i := 0; i < 1000; i++ {
			v := float64((i*7919)%1000) - 300 + float64(b)*0.5 // negatives, zero-ish, positives
			all = append(all, v)
			mustAdd(t, w, ev(b*1000+int64(i%1000), v), Applied)
		}
	}
	if w.x == nil || len(w.x.sk)-w.x.skh != 3 {
		t.Fatal("buckets were not converted to sketches")
	}
	a := w.Aggregate()
	checkAgg(t, "sketched", a, bruteForce(all), true)
	// Bucket 0 evicted: only buckets 1, 2 remain.
	mustAdd(t, w, ev(10500, 1), Applied)
	a = w.AggregateOver(0)
	checkAgg(t, "after eviction", a, bruteForce(append(append([]float64(nil), all[1000:]...), 1)), true)
	if len(w.x.sk)-w.x.skh != 2 {
		t.Fatalf("%d sketches after eviction", len(w.x.sk)-w.x.skh)
	}
}

// expected holds brute-force aggregates of a set of values.
type expected struct {
	count         uint64
	sum, sumAbs   float64
	min, max      float64
	p50, p95, p99 float64
}

func bruteForce(vals []float64) expected {
	s := append([]float64(nil), vals...)
	slices.Sort(s)
	e := expected{count: uint64(len(s)), min: s[0], max: s[len(s)-1]}
	for _, v := range s {
		e.sum += v
		e.sumAbs += math.Abs(v)
	}
	at := func(q float64) float64 { return s[int(float64(q*float64(len(s)-1)))] }
	e.p50, e.p95, e.p99 = at(0.5), at(0.95), at(0.99)
	return e
}

// checkAgg compares a against brute force: exact count/min/max, sum and
// mean to 1e-9 of the sum of magnitudes, quantiles exact or within 1%.
func checkAgg(t *testing.T, what string, a Aggregates, e expected, approx bool) {
	t.Helper()
	if a.Count != e.count || a.Min != e.min || a.Max != e.max {
		t.Fatalf("%s: count/min/max = %d %v %v, want %d %v %v", what, a.Count, a.Min, a.Max, e.count, e.min, e.max)
	}
	tol := 1e-9 * math.Max(e.sumAbs, 1e-300)
	if math.Abs(a.Sum-e.sum) > tol || math.Abs(a.Mean-e.sum/float64(e.count)) > tol/float64(e.count) {
		t.Fatalf("%s: sum/mean = %v %v, want %v %v", what, a.Sum, a.Mean, e.sum, e.sum/float64(e.count))
	}
	for _, q := range []struct {
		name      string
		got, want float64
	}{{"p50", a.P50, e.p50}, {"p95", a.P95, e.p95}, {"p99", a.P99, e.p99}} {
		if !approx {
			if q.got != q.want {
				t.Fatalf("%s: %s = %v, want exactly %v", what, q.name, q.got, q.want)
			}
			continue
		}
		if math.Abs(q.got-q.want) > relativeAccuracy*math.Abs(q.want)*(1+1e-9) {
			t.Fatalf("%s: %s = %v, want %v within 1%%", what, q.name, q.got, q.want)
		}
	}
}

// StatsOver gives AggregateOver's figures but the quantiles, and allocates
// nothing.
func TestStatsOver(t *testing.T) {
	s := DefaultShape()
	w := New(&s)
	for i := 0; i < 500; i++ {
		w.Add(&event.Event{TS: 1764064800000 + int64(i)*700, Value: float64(i%37) - 3})
	}
	for _, d := range []time.Duration{0, time.Minute, 5 * time.Minute} {
		full, stats := w.AggregateOver(d), w.StatsOver(d)
		full.P50, full.P95, full.P99 = 0, 0, 0
		if full != stats {
			t.Fatalf("over %s: StatsOver %+v, AggregateOver %+v", d, stats, full)
		}
	}
	if n := testing.AllocsPerRun(100, func() { w.StatsOver(time.Minute) }); n != 0 {
		t.Fatalf("StatsOver allocates %v times", n)
	}
}

// TestExtraLayout keeps what an event with an id touches in the side
// structure within two cache lines: the structure's size must be a size
// class whose objects are 64-byte aligned, and the hot fields must come
// before byte 128.
func TestExtraLayout(t *testing.T) {
	var x extra
	if n := unsafe.Sizeof(x); n != 256 {
		t.Errorf("extra is %d bytes, want 256 (adjust its padding)", n)
	}
	if end := unsafe.Offsetof(x.rid) + unsafe.Sizeof(x.rid); end > 128 {
		t.Errorf("hot fields end at byte %d, want ≤ 128", end)
	}
}
