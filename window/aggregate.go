package window

import (
	"cmp"
	"math"
	"math/bits"
	"slices"
	"time"
)

// Point is a value at an event time.
type Point struct {
	// TS is the event time in epoch milliseconds.
	TS int64 `json:"ts"`
	// Value is the event's value.
	Value float64 `json:"value"`
}

// Aggregates summarise the events of a window or sub-window, as the
// key-state document shows them.
// All fields are zero for a window that has never applied an event.
type Aggregates struct {
	// FromTS and ToTS are the start times (epoch ms) of the first and last
	// non-empty buckets held. ToTS is the newest bucket's start.
	FromTS int64 `json:"from_ts"`
	ToTS   int64 `json:"to_ts"`
	// Count, Sum, Min, Max and Mean are exact (Sum up to floating-point
	// rounding, which depends on the order of addition).
	Count uint64  `json:"count"`
	Sum   float64 `json:"sum"`
	Min   float64 `json:"min"`
	Max   float64 `json:"max"`
	Mean  float64 `json:"mean"`
	// Last is the event with the greatest time (ties: the latest applied).
	// It is the same for the window and every sub-window.
	Last Point `json:"last"`
	// Rate is Count / W in events per second, W the (sub-)window length.
	Rate float64 `json:"rate"`
	// P50, P95 and P99 are the values at rank floor(q·(Count−1)) of the
	// sorted values: exact while every bucket in range holds raw values,
	// within 1% relative error once a bucket in range is a sketch.
	P50 float64 `json:"p50"`
	P95 float64 `json:"p95"`
	P99 float64 `json:"p99"`
}

// Aggregate returns the aggregates of the whole window (W = Retention).
// It allocates a scratch copy of the values for the quantiles.
func (w *Window) Aggregate() Aggregates {
	return w.AggregateOver(w.shape.Retention)
}

// AggregateOver returns the aggregates of the sub-window of length d: the
// buckets b > newest − d/Resolution. d is rounded down to a multiple of
// Resolution (at least one bucket); d ≤ 0 or d ≥ Retention means the whole
// window. Rate divides by the rounded length.
func (w *Window) AggregateOver(d time.Duration) Aggregates {
	a, r := w.statsOver(d)
	if a.Count == 0 {
		return a
	}
	qs := [3]float64{0.5, 0.95, 0.99}
	var out [3]float64
	r.quantiles(a.Count, a.Min, a.Max, qs[:], out[:])
	a.P50, a.P95, a.P99 = out[0], out[1], out[2]
	return a
}

// StatsOver is AggregateOver without the quantiles (P50, P95 and P99 are
// 0): it allocates nothing, for callers on the per-event path.
func (w *Window) StatsOver(d time.Duration) Aggregates {
	a, _ := w.statsOver(d)
	return a
}

func (w *Window) statsOver(d time.Duration) (Aggregates, valueRange) {
	if w.applied == 0 {
		return Aggregates{}, valueRange{}
	}
	nb, wd := w.spanOf(d)
	r := w.rangeOf(nb)
	res := w.shape.resMs()
	a := Aggregates{FromTS: r.first * res, ToTS: w.newest * res, Last: w.last}
	a.Count, a.Sum, a.Min, a.Max = r.stats()
	a.Mean = a.Sum / float64(a.Count)
	a.Rate = float64(a.Count) / wd.Seconds()
	return a, r
}

// Quantile returns the value at rank floor(q·(n−1)) of the n sorted values
// of the sub-window of length d (as in AggregateOver; d ≤ 0 means the whole
// window): exact while no bucket in range is a sketch, otherwise within 1%
// relative error. q is clamped to [0, 1] (NaN counts as 0). It returns 0
// for an empty window.
func (w *Window) Quantile(q float64, d time.Duration) float64 {
	if w.applied == 0 {
		return 0
	}
	nb, _ := w.spanOf(d)
	r := w.rangeOf(nb)
	n, _, mn, mx := r.stats()
	var out [1]float64
	r.quantiles(n, mn, mx, []float64{q}, out[:])
	return out[0]
}

// spanOf returns the number of buckets and the length of the sub-window
// of length d.
func (w *Window) spanOf(d time.Duration) (int64, time.Duration) {
	s := w.shape
	if d <= 0 || d >= s.Retention {
		return int64(w.span), s.Retention
	}
	nb := max(int64(d/s.Resolution), 1)
	return nb, time.Duration(nb) * s.Resolution
}

// valueRange is the content of a (sub-)window.
type valueRange struct {
	first int64      // first bucket held
	raw   []float64  // raw values, in bucket order
	sk    []skBucket // sketched buckets
}

// rangeOf returns the buckets b > newest − nb. The window must not be empty.
func (w *Window) rangeOf(nb int64) valueRange {
	relCut := w.newest - nb - w.base // hold rel > relCut
	live := w.hdr[w.hh:]
	lo := 0
	if relCut >= 0 {
		hi := len(live)
		for lo < hi {
			m := int(uint(lo+hi) >> 1)
			if int64(live[m].rel) <= relCut {
				lo = m + 1
			} else {
				hi = m
			}
		}
	}
	m := 0
	for _, h := range live[lo:] {
		m += int(h.n)
	}
	r := valueRange{first: w.base + int64(live[lo].rel), raw: w.vals[len(w.vals)-m:]}
	if x := w.x; x != nil && len(x.sk) > x.skh {
		r.sk = x.sk[x.skh+x.searchSketch(r.first):]
	}
	return r
}

// stats returns count, sum, min and max of the range.
func (r *valueRange) stats() (n uint64, sum, mn, mx float64) {
	mn, mx = math.Inf(1), math.Inf(-1)
	for _, v := range r.raw {
		sum += v
		if v < mn {
			mn = v
		}
		if v > mx {
			mx = v
		}
	}
	n = uint64(len(r.raw))
	for i := range r.sk {
		s := &r.sk[i]
		n += s.count
		sum += s.sum
		mn = min(mn, s.min)
		mx = max(mx, s.max)
	}
	return n, sum, mn, mx
}

// rankOf returns floor(q·(n−1)), with q clamped to [0, 1]; n > 0.
func rankOf(q float64, n uint64) uint64 {
	if !(q > 0) { // also NaN
		return 0
	}
	if q >= 1 {
		return n - 1
	}
	// The explicit conversion forbids a fused multiply-add, as in
	// DDSketch's GetValueAtQuantile.
	k := uint64(float64(q * float64(n-1)))
	return min(k, n-1)
}

// quantiles sets out[i] to the value at rank floor(qs[i]·(n−1)) of the
// range, which holds n values between mn and mx.
func (r *valueRange) quantiles(n uint64, mn, mx float64, qs, out []float64) {
	if n == 0 {
		clear(out)
		return
	}
	// Ranks in ascending order, so that each selection works on the
	// suffix left by the previous one.
	order := make([]int, len(qs))
	ranks := make([]uint64, len(qs))
	for i, q := range qs {
		order[i], ranks[i] = i, rankOf(q, n)
	}
	slices.SortFunc(order, func(a, b int) int { return cmp.Compare(ranks[a], ranks[b]) })

	if len(r.sk) == 0 {
		// Exact: selection on a copy of the raw values.
		vals := slices.Clone(r.raw)
		lo := 0
		for _, i := range order {
			k := int(ranks[i])
			if k >= lo {
				selectK(vals[lo:], k-lo)
				lo = k + 1
			}
			out[i] = vals[k]
		}
		return
	}

	// Sketches in range: the sketches' bins, merged by index, give their
	// values in order as (representative value, count); the raw values are
	// sorted and merged in exactly. Each value is moved by at most 1% of its
	// magnitude and x ↦ x ± 0.01·|x| are increasing, so the value found at
	// a rank is within 1% of the exact value at that rank.
	bins := mergeBins(r.sk)
	raw := slices.Clone(r.raw)
	slices.Sort(raw)
	bi, ri := 0, 0
	cum := 0.0
	var v float64
	for _, i := range order {
		k := float64(ranks[i])
		for ri < len(raw) || bi < len(bins) {
			takeRaw := ri < len(raw) && (bi == len(bins) || raw[ri] <= bins[bi].v)
			c := 1.0
			if takeRaw {
				v = raw[ri]
			} else {
				v, c = bins[bi].v, bins[bi].c
			}
			if cum+c > k {
				break
			}
			// Rank k is further on (when counts run out early, the
			// last value stays).
			cum += c
			if takeRaw {
				ri++
			} else {
				bi++
			}
		}
		// Exact min and max bound the answer and can only improve it.
		out[i] = min(max(v, mn), mx)
	}
}

// bin is a value and its count.
type bin struct{ v, c float64 }

// mergeBins adds up the bins of sketches by index and returns them in
// ascending order of value: negative, zero, positive.
func mergeBins(sks []skBucket) []bin {
	var zero float64
	var pos, neg denseBins
	for i := range sks {
		sk := sks[i].sk
		zero += sk.GetZeroCount()
		pos.extend(sk.GetPositiveValueStore())
		neg.extend(sk.GetNegativeValueStore())
	}
	pos.alloc()
	neg.alloc()
	for i := range sks {
		sk := sks[i].sk
		sk.GetPositiveValueStore().ForEach(pos.add)
		sk.GetNegativeValueStore().ForEach(neg.add)
	}
	out := make([]bin, 0, 64)
	for j := len(neg.c) - 1; j >= 0; j-- {
		if c := neg.c[j]; c > 0 {
			out = append(out, bin{-sketchMapping.Value(neg.lo + j), c})
		}
	}
	if zero > 0 {
		out = append(out, bin{0, zero})
	}
	for j, c := range pos.c {
		if c > 0 {
			out = append(out, bin{sketchMapping.Value(pos.lo + j), c})
		}
	}
	return out
}

// denseBins accumulates bin counts over an index range.
type denseBins struct {
	lo, hi int // index range, when any
	any    bool
	c      []float64
}

// extend widens the range to cover st's bins.
func (d *denseBins) extend(st interface {
	IsEmpty() bool
	MinIndex() (int, error)
	MaxIndex() (int, error)
}) {
	if st.IsEmpty() {
		return
	}
	lo, err1 := st.MinIndex()
	hi, err2 := st.MaxIndex()
	if err1 != nil || err2 != nil {
		return // unreachable: the store is not empty
	}
	if !d.any {
		d.lo, d.hi, d.any = lo, hi, true
		return
	}
	d.lo, d.hi = min(d.lo, lo), max(d.hi, hi)
}

func (d *denseBins) alloc() {
	if d.any {
		d.c = make([]float64, d.hi-d.lo+1)
	}
}

func (d *denseBins) add(i int, c float64) bool {
	d.c[i-d.lo] += c
	return false
}

// selectK reorders a so that a[k] is the k-th smallest value, a[:k] ≤ a[k]
// and a[k+1:] ≥ a[k]. Quickselect with a branch-free Lomuto partition
// around a ninther pivot; when no value is below the pivot, a second pass
// groups the values equal to it, so many equal values cost O(n). After too
// many rounds it falls back to sorting: the worst case is O(n log n).
func selectK(a []float64, k int) {
	lo, hi := 0, len(a) // a[lo:hi] holds rank k
	budget := 2 * bits.Len(uint(len(a)))
	for hi-lo > 16 {
		if budget == 0 {
			slices.Sort(a[lo:hi])
			return
		}
		budget--
		s := a[lo:hi]
		p := pivot(s)
		lt := lo + partitionLess(s, p)
		if k < lt {
			hi = lt
			continue
		}
		if lt > lo {
			lo = lt
			continue
		}
		// p is the minimum of a[lo:hi]: split off the values equal to it.
		eq := lo + partitionLessEq(s, p)
		if k < eq {
			return // a[lo:eq] are all p
		}
		lo = eq
	}
	for i := lo + 1; i < hi; i++ {
		for j := i; j > lo && a[j] < a[j-1]; j-- {
			a[j], a[j-1] = a[j-1], a[j]
		}
	}
}

// pivot returns the median of three (short slices) or Tukey's ninther.
func pivot(s []float64) float64 {
	n := len(s)
	if n < 128 {
		return median3(s[0], s[n/2], s[n-1])
	}
	e := n / 8
	return median3(
		median3(s[0], s[e], s[2*e]),
		median3(s[3*e], s[4*e], s[5*e]),
		median3(s[6*e], s[7*e], s[n-1]))
}

// partitionLess moves the values < p to the front of a and returns how
// many there are.
func partitionLess(a []float64, p float64) int {
	i := 0
	for j, v := range a {
		a[j] = a[i]
		a[i] = v
		d := 0
		if v < p {
			d = 1
		}
		i += d
	}
	return i
}

// partitionLessEq moves the values ≤ p to the front of a and returns how
// many there are.
func partitionLessEq(a []float64, p float64) int {
	i := 0
	for j, v := range a {
		a[j] = a[i]
		a[i] = v
		d := 0
		if v <= p {
			d = 1
		}
		i += d
	}
	return i
}

func median3(a, b, c float64) float64 {
	if a > b {
		a, b = b, a
	}
	if b > c {
		b = c
	}
	return max(a, b)
}
