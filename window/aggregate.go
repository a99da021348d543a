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

// Aggregates summarise the events of a window or sub-window (SPEC §7b).
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
	if w.applied == 0 {
		return Aggregates{}
	}
	nb, wd := w.spanOf(d)
	r := w.rangeOf(nb)
	res := w.shape.resMs()
	a := Aggregates{FromTS: r.first * res, ToTS: w.newest * res, Last: w.last}
	a.Count, a.Sum, a.Min, a.Max = r.stats()
	a.Mean = a.Sum / float64(a.Count)
	a.Rate = float64(a.Count) / wd.Seconds()
	qs := [3]float64{0.5, 0.95, 0.99}
	var out [3]float64
	r.quantiles(a.Count, a.Min, a.Max, qs[:], out[:])
	a.P50, a.P95, a.P99 = out[0], out[1], out[2]
	return a
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
		mn = min(mn, v)
		mx = max(mx, v)
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
	// Ranks in descending order, so that each selection can work on the
	// prefix left by the previous one.
	order := make([]int, len(qs))
	ranks := make([]uint64, len(qs))
	for i, q := range qs {
		order[i], ranks[i] = i, rankOf(q, n)
	}
	slices.SortFunc(order, func(a, b int) int { return cmp.Compare(ranks[b], ranks[a]) })

	if len(r.sk) == 0 {
		// Exact: selection on a copy of the raw values.
		vals := slices.Clone(r.raw)
		hi := len(vals)
		for _, i := range order {
			k := int(ranks[i])
			selectK(vals[:hi], k)
			out[i] = vals[k]
			hi = k + 1
		}
		return
	}

	// Sketches in range: raw values (exact, weight 1) and the sketches'
	// bins (representative value, count), sorted by value. Each element
	// is moved by at most 1% of its magnitude and x ↦ x ± 0.01·|x| are
	// increasing, so the value found at a rank is within 1% of the exact
	// value at that rank.
	type item struct{ v, c float64 }
	items := make([]item, 0, len(r.raw)+64*len(r.sk))
	for _, v := range r.raw {
		items = append(items, item{v, 1})
	}
	for i := range r.sk {
		r.sk[i].sk.forEachBin(func(v, c float64) { items = append(items, item{v, c}) })
	}
	slices.SortFunc(items, func(a, b item) int { return cmp.Compare(a.v, b.v) })
	j, cum := 0, 0.0
	for o := len(order) - 1; o >= 0; o-- { // ascending ranks
		i := order[o]
		k := float64(ranks[i])
		for j < len(items)-1 && cum+items[j].c <= k {
			cum += items[j].c
			j++
		}
		// Exact min and max bound the answer and can only improve it.
		out[i] = min(max(items[j].v, mn), mx)
	}
}

// selectK reorders a so that a[k] is the k-th smallest value, a[:k] ≤ a[k]
// and a[k+1:] ≥ a[k]. Quickselect with a three-way partition (robust to
// many equal values), falling back to sorting after too many rounds.
func selectK(a []float64, k int) {
	lo, hi := 0, len(a)-1
	budget := 2 * bits.Len(uint(len(a)))
	for hi-lo > 16 {
		if budget == 0 {
			slices.Sort(a[lo : hi+1])
			return
		}
		budget--
		m := lo + (hi-lo)/2
		p := median3(a[lo], a[m], a[hi])
		lt, i, gt := lo, lo, hi
		for i <= gt {
			switch v := a[i]; {
			case v < p:
				a[lt], a[i] = a[i], a[lt]
				lt++
				i++
			case v > p:
				a[i], a[gt] = a[gt], a[i]
				gt--
			default:
				i++
			}
		}
		switch {
		case k < lt:
			hi = lt - 1
		case k > gt:
			lo = gt + 1
		default:
			return
		}
	}
	for i := lo + 1; i <= hi; i++ {
		for j := i; j > lo && a[j] < a[j-1]; j-- {
			a[j], a[j-1] = a[j-1], a[j]
		}
	}
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
