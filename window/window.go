// Package window holds the state of one key: a sliding window over event
// time, cut into buckets of Shape.Resolution, with exact count, sum, min,
// max, mean and last, approximate quantiles (≤ 1% relative error), id-based
// deduplication and the last few events for inspection.
//
// The package is pure and deterministic: no clock, no goroutines, no I/O.
// Time is the events' own time. A Window is not safe for concurrent use;
// one partition actor owns it.
//
// # Window math
//
// An event with time ts (epoch ms) falls in bucket b = floor(ts / res),
// res = Resolution in ms. newest is the newest bucket ever applied and
// R = Retention/Resolution. The window holds the buckets b > newest − R; an
// event with b ≤ newest − R is Late and dropped. Applying an event with
// b > newest advances newest and evicts the buckets that fall out. A
// sub-window of length W holds the buckets b > newest − W/Resolution.
//
// # Memory layout
//
// Only non-empty buckets are stored, as 8-byte headers in a slice ordered by
// bucket (in-order events append, out-of-order events are inserted by binary
// search, eviction advances a head index). A bucket's values are kept raw, in
// one flat slice shared by all buckets of the window, while the bucket holds
// at most SketchThreshold values; count, sum, min and max are computed from
// them on demand. A bucket that grows beyond SketchThreshold is converted to
// a DataDog DDSketch (relative accuracy 1%) plus exact count, sum, min and
// max. Because each sketch covers one bucket, sub-windows and eviction stay
// exact in which values they include; only the quantile of a range that
// contains a sketch is approximate. The dedup table, the sketches and the
// ids, tags and outcomes of recent events live in a side structure
// allocated on first use, so a key that sends plain values pays for none of
// them.
//
// # Recent events
//
// A window keeps its last Shape.Recent events of any outcome — applied,
// late and duplicate — in the order it received them, with their ids and
// tags (Received): while it has received no more, they are every event
// behind its state, and a new window of the same shape that applies them
// in order is the same window. That is what a replay of one key relies on
// (package replay). Recent shows the applied ones. The ring costs 16 bytes
// per event, its ids 8 bytes each (more for ids that share no prefix), and
// its outcomes one byte per event once a late or duplicate event is among
// them.
//
// Measured with the default shape (runtime.MemStats over 100K windows,
// BenchmarkMemory): ~184 B per key with 1 event, ~472 B with 10 and ~1.7 KB
// with 60 (the 32 recent events are 512 B of it). Ids add 8.5-10 B per id
// live in the window to the dedup table (9.4 B at 600 ids, 1 event/s over
// the default 10 minutes: TestDedupMemoryPerID), 8 B a slot for the recent
// events' ids (the prefix they share is kept once, and a rest of up to 7
// bytes in the slot: a longer one spills to a buffer) and a 256 B side
// structure; tags add their map, shared by consecutive events that repeat
// it.
//
// # Deduplication
//
// An event is a duplicate when its id was applied to a bucket still inside
// the window (Add says exactly when). Ids are remembered as 64-bit words: a
// fingerprint of the id — its xxHash (fixed seed, so it survives
// MarshalBinary and a move to another node) with the low k bits cleared —
// and, in those k bits, the id's bucket modulo 2^k, where 2^k is the
// smallest power of two above 2R (R = Retention/Resolution). Words sit in
// a bucketed cuckoo table (groups of 8 words, two candidate groups per id)
// and expire with their bucket; the table is kept about 90% full: 8.5-10
// bytes per live id.
//
// Two different ids share a fingerprint with probability 2^-(64−k): with n
// ids live in a key's window, a new event is wrongly taken for a duplicate
// with probability about n·2^-(64−k). Default shape (10m at 1s, k = 11,
// 53-bit fingerprints): 6.7·10^-14 per event at 600 live ids (1 event/s),
// under 10^-12 up to 9,000 live ids per key (15 events/s). A 1h window at
// 1s (k = 13) stays under 10^-12 up to 2,250 live ids, a 24h one (k = 18)
// up to 70.
//
// # Queries
//
// Add is O(1) amortised and allocation-free in steady state. Aggregate,
// AggregateOver and Quantile scan the range (raw values and sketch bins)
// and allocate scratch space for the quantiles: ~3 µs for 600 values,
// ~30 µs for 6,000, ~70 µs for 60 sketched buckets of 1,000 values.
package window

import (
	"math"
	"strconv"

	"github.com/squallhq/squall/event"
)

// Outcome is what Window.Add did with an event.
type Outcome uint8

// Outcomes of Window.Add.
const (
	// Applied: the event was added to the window.
	Applied Outcome = iota
	// Late: the event's bucket is older than the window; it was dropped
	// and counted.
	Late
	// Duplicate: an event with the same non-empty id is still inside the
	// window; the event was dropped and counted.
	Duplicate
)

// String returns "applied", "late" or "duplicate".
func (o Outcome) String() string {
	switch o {
	case Applied:
		return "applied"
	case Late:
		return "late"
	case Duplicate:
		return "duplicate"
	}
	return "Outcome(" + strconv.Itoa(int(o)) + ")"
}

// SketchThreshold is the number of raw values a bucket keeps before its
// next value converts it to a DDSketch. Measured with sketches-go v1.4.8 and
// its BufferedPaginatedStore over uniform, narrow-normal, small-integer and
// log-normal values: a sketch of n values takes ~500 B at n=32, ~770 B at
// 64, 1.2–1.3 KB at 128, 1.2–2.0 KB at 256 and 1.2–2.7 KB at 1024, against
// 8·n bytes raw (plus slice slack). The crossover lies between 128 and 256;
// 128 keeps quantiles exact for buckets of up to 128 events and bounds the
// raw values a query must select over.
const SketchThreshold = 128

// ts values are clamped to ±maxTS so that bucket arithmetic cannot overflow.
const maxTS = 1 << 62

// relLimit bounds newest − base; beyond it the headers are rebased.
const relLimit = 1 << 31

// bucket is the header of one non-empty bucket: its index relative to
// Window.base and the number of its raw values in Window.vals (0 when the
// bucket has been converted to a sketch).
type bucket struct {
	rel uint32
	n   uint32
}

// recentCore is the part of a recent event that every event has.
type recentCore struct {
	ts int64
	v  float64
}

// Window is the state of one key: the sliding window of Shape over event
// time, lifetime counters and the most recent events.
//
// The zero Window is not usable; build one with New. A Window is not safe
// for concurrent use: one goroutine (the key's partition actor) owns it.
type Window struct {
	shape  *Shape
	base   int64 // bucket index of rel 0; base ≤ newest − R + 1
	newest int64 // newest bucket ever applied; valid when applied > 0

	hdr    []bucket  // live headers are hdr[hh:], ascending by bucket
	vals   []float64 // live raw values are vals[vh:], grouped in header order
	hh, vh int32

	ring  []recentCore // recent events; oldest at rnext once len == Recent
	rnext int32
	span  int32 // Retention/Resolution, cached

	last Point

	applied, late, dups uint64

	x *extra // allocated on first use
}

// idPrefixMax bounds the prefix of the recent ids kept once per window.
const idPrefixMax = 20

// extra holds what most keys never need. What an event with an id touches
// comes first, in its first two cache lines (the structure is 256 bytes, a
// size class whose objects are 64-byte aligned).
type extra struct {
	ids idTable

	rids   []idRef           // ids of recent events, parallel to Window.ring (see idRef)
	npre   uint8             // length of the shared prefix in rpre
	preSet bool              // rpre[:npre] holds the prefix (else no id was kept yet)
	rhas   uint8             // hasTags, hasOutcomes: whether rtags, rout exist
	rpre   [idPrefixMax]byte // the prefix every recent id shares
	rid    []byte            // the rest of each recent id after the shared prefix, in ring order (see setRecentID)

	rtags []map[string]string // tags of recent events, parallel to Window.ring
	rout  []Outcome           // outcomes of recent events, parallel to Window.ring; nil while all were applied

	sk  []skBucket // live sketched buckets are sk[skh:], ascending by bucket
	skh int

	tags     map[string]string // tags of the last (max ts) applied event that had tags
	tagsTS   int64
	tagsLast map[string]string // last cloned tag map, reused while events repeat it

	_ [32]byte // to 256 bytes (TestExtraLayout)
}

// Bits of extra.rhas.
const (
	hasTags     = 1 << iota // extra.rtags is not nil
	hasOutcomes             // extra.rout is not nil
)

// skBucket is a bucket converted to a sketch, with its exact statistics.
type skBucket struct {
	b             int64
	count         uint64
	sum, min, max float64
	sk            sketch
}

// New returns an empty window of shape s. s is kept, not copied: it must
// not be modified afterwards. New panics if s fails Validate. The window
// allocates nothing more until its first event.
func New(s *Shape) *Window {
	if err := s.Validate(); err != nil {
		panic(err)
	}
	return &Window{shape: s, span: int32(s.span())}
}

// Add applies ev to the window and reports what it did. It is the hot path:
// in steady state it does not allocate (ids and tags are copied into
// buffers reused across events; a new distinct tag set is cloned).
//
// An event is Late when its bucket is ≤ newest − R. It is a Duplicate when
// its non-empty id was applied to a bucket that stays inside the window once
// this event is applied (so an id whose bucket this very event evicts is
// accepted again). Late is decided before Duplicate; neither changes the
// window beyond a counter. ev.TS is clamped to ±2^62 ms; ev.Value must be finite (event
// validation rejects NaN and ±Inf). Strings of ev are copied, never
// retained. ev.Key is ignored: a Window does not know its key.
func (w *Window) Add(ev *event.Event) Outcome {
	res := w.shape.resMs()
	ts := ev.TS
	if ts > maxTS {
		ts = maxTS
	} else if ts < -maxTS {
		ts = -maxTS
	}
	R := int64(w.span)
	var b int64
	if w.applied == 0 {
		b = floorDiv(ts, res)
		w.newest = b
		w.base = b - R + 1
	} else {
		switch d := ts - w.newest*res; {
		case d >= 0 && d < res:
			b = w.newest
		case d >= res && d < 2*res:
			b = w.newest + 1
		default:
			b = floorDiv(ts, res)
		}
		if b <= w.newest-R {
			w.late++
			w.keepDropped(ts, ev, Late)
			return Late
		}
	}
	var fp uint64
	at := -1 // fp's word in the id table
	if ev.ID != "" {
		t := &w.ext().ids
		if t.mask == 0 {
			t.init(R, w.newest)
		}
		fp = t.fingerprint(idHash(ev.ID))
		if at = t.find(fp); at >= 0 && t.bucket(t.words[at], w.newest) > max(b, w.newest)-R {
			w.dups++
			w.keepDropped(ts, ev, Duplicate)
			return Duplicate
		}
	}
	if b > w.newest {
		if w.advance(b) {
			at = w.x.ids.find(fp) // the table was swept
		}
	}
	w.insert(b, ev.Value)
	if ev.ID != "" {
		w.x.ids.insert(fp, at, b, w.newest, w.newest-R)
	}
	if w.applied == 0 || ts >= w.last.TS {
		w.last = Point{TS: ts, Value: ev.Value}
	}
	var tags map[string]string
	if len(ev.Tags) > 0 {
		tags = w.noteTags(ts, ev.Tags)
	}
	if n := w.shape.Recent; n > 0 {
		w.pushRecent(n, ts, ev.Value, ev.ID, tags, Applied)
	}
	w.applied++
	return Applied
}

// advance makes b the newest bucket and evicts the buckets that fall out.
// It reports whether it swept the id table.
func (w *Window) advance(b int64) (swept bool) {
	R := int64(w.span)
	if w.x != nil {
		swept = w.x.ids.advance(w.newest, b, R)
	}
	w.newest = b
	if cut := b - R - w.base; cut >= 0 {
		hdr := w.hdr
		i, vh := int(w.hh), int(w.vh)
		for i < len(hdr) && int64(hdr[i].rel) <= cut {
			if n := hdr[i].n; n > 0 {
				vh += int(n)
			} else {
				w.x.popSketch()
			}
			i++
		}
		if i == len(hdr) {
			w.hdr, w.hh = hdr[:0], 0
			w.vals, w.vh = w.vals[:0], 0
		} else {
			w.hh, w.vh = int32(i), int32(vh)
		}
	}
	if b-w.base >= relLimit {
		w.rebase(b - R + 1)
	}
	return swept
}

// rebase moves base up to nb, which must not exceed the oldest live bucket.
func (w *Window) rebase(nb int64) {
	if w.hh == int32(len(w.hdr)) {
		w.base = nb
		return
	}
	d := uint32(nb - w.base)
	for i := int(w.hh); i < len(w.hdr); i++ {
		w.hdr[i].rel -= d
	}
	w.base = nb
}

// insert adds value v to bucket b, which is inside the window.
func (w *Window) insert(b int64, v float64) {
	rel := uint32(b - w.base)
	hdr := w.hdr
	if n := len(hdr); n > int(w.hh) {
		lh := &hdr[n-1]
		switch {
		case lh.rel == rel && lh.n > 0 && lh.n < SketchThreshold:
			// In-order event into the newest bucket: its values are
			// the tail of vals.
			if len(w.vals) < cap(w.vals) {
				w.vals = append(w.vals, v)
			} else {
				w.vals, w.vh = dqInsert(w.vals, w.vh, len(w.vals)-int(w.vh), v)
			}
			lh.n++
			return
		case lh.rel == rel:
			w.addToBucket(n-1, b, v)
			return
		case lh.rel > rel:
			w.insertOutOfOrder(rel, b, v)
			return
		}
	}
	// A new newest bucket.
	if len(w.hdr) < cap(w.hdr) {
		w.hdr = append(w.hdr, bucket{rel: rel, n: 1})
	} else {
		w.hdr, w.hh = dqInsert(w.hdr, w.hh, len(w.hdr)-int(w.hh), bucket{rel: rel, n: 1})
	}
	if len(w.vals) < cap(w.vals) {
		w.vals = append(w.vals, v)
	} else {
		w.vals, w.vh = dqInsert(w.vals, w.vh, len(w.vals)-int(w.vh), v)
	}
}

// insertOutOfOrder adds v to bucket b (relative index rel), older than the
// newest held bucket.
func (w *Window) insertOutOfOrder(rel uint32, b int64, v float64) {
	live := w.hdr[w.hh:]
	lo, hi := 0, len(live)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if live[m].rel < rel {
			lo = m + 1
		} else {
			hi = m
		}
	}
	if lo < len(live) && live[lo].rel == rel {
		w.addToBucket(int(w.hh)+lo, b, v)
		return
	}
	// A new bucket at live position lo; its value goes after the raw
	// values of the buckets before it.
	off := w.rawEnd(int(w.hh) + lo - 1)
	w.hdr, w.hh = dqInsert(w.hdr, w.hh, lo, bucket{rel: rel, n: 1})
	w.vals, w.vh = dqInsert(w.vals, w.vh, off, v)
}

// rawEnd returns the live offset in vals just past the raw values of the
// header at absolute position i (i may be hh−1: offset 0). It walks from the
// back, so it is cheap for recent buckets.
func (w *Window) rawEnd(i int) int {
	end := len(w.vals) - int(w.vh)
	for j := len(w.hdr) - 1; j > i; j-- {
		end -= int(w.hdr[j].n)
	}
	return end
}

// addToBucket adds v to the existing bucket b at absolute header position i.
func (w *Window) addToBucket(i int, b int64, v float64) {
	h := &w.hdr[i]
	if h.n == 0 {
		w.x.sketchAt(b).add(v)
		return
	}
	end := w.rawEnd(i)
	if h.n < SketchThreshold {
		w.vals, w.vh = dqInsert(w.vals, w.vh, end, v)
		h.n++
		return
	}
	// Convert the bucket to a sketch.
	start := end - int(h.n)
	live := w.vals[w.vh:]
	sb := skBucket{b: b, sk: newSketch(), min: math.Inf(1), max: math.Inf(-1)}
	for _, x := range live[start:end] {
		sb.add(x)
	}
	sb.add(v)
	w.vals = dqRemove(w.vals, w.vh, start, end-start)
	h.n = 0
	w.ext().insertSketch(sb)
}

// add adds v to a sketched bucket.
func (s *skBucket) add(v float64) {
	s.count++
	s.sum += v
	s.min = min(s.min, v)
	s.max = max(s.max, v)
	s.sk.add(v)
}

// popSketch drops the oldest sketched bucket.
func (x *extra) popSketch() {
	x.sk[x.skh] = skBucket{}
	x.skh++
	if x.skh == len(x.sk) {
		x.sk, x.skh = x.sk[:0], 0
	}
}

// sketchAt returns the sketched bucket b, which must exist.
func (x *extra) sketchAt(b int64) *skBucket {
	if n := len(x.sk); x.sk[n-1].b == b {
		return &x.sk[n-1]
	}
	i := x.skh + x.searchSketch(b)
	return &x.sk[i]
}

// searchSketch returns the live position of the first sketched bucket ≥ b.
func (x *extra) searchSketch(b int64) int {
	live := x.sk[x.skh:]
	lo, hi := 0, len(live)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if live[m].b < b {
			lo = m + 1
		} else {
			hi = m
		}
	}
	return lo
}

// insertSketch adds a new sketched bucket in bucket order.
func (x *extra) insertSketch(sb skBucket) {
	if x.skh > 0 && x.skh >= len(x.sk)/2 {
		n := copy(x.sk, x.sk[x.skh:])
		clear(x.sk[n:])
		x.sk, x.skh = x.sk[:n], 0
	}
	pos := x.skh + x.searchSketch(sb.b)
	x.sk = append(x.sk, skBucket{})
	copy(x.sk[pos+1:], x.sk[pos:])
	x.sk[pos] = sb
}

// ext returns the side structure, allocating it on first use.
func (w *Window) ext() *extra {
	if w.x == nil {
		w.x = &extra{}
	}
	return w.x
}

// Counts returns the lifetime counters: events applied, dropped as late and
// dropped as duplicates.
func (w *Window) Counts() (applied, late, duplicates uint64) {
	return w.applied, w.late, w.dups
}

// NewestBucket returns the newest bucket ever applied, floor(ts/Resolution)
// of the newest event. Its start time is
// NewestBucket()·Resolution. It is 0 when the window is Empty.
func (w *Window) NewestBucket() int64 {
	if w.applied == 0 {
		return 0
	}
	return w.newest
}

// Empty reports whether the window has never applied an event. Once an
// event is applied the window is never empty again: the newest bucket is
// never evicted.
func (w *Window) Empty() bool { return w.applied == 0 }

// floorDiv returns floor(a/b) for b > 0.
func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && a < 0 {
		q--
	}
	return q
}
