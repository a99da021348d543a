package bench

import (
	"math"
	"math/bits"
	"sync/atomic"
	"time"
)

// The histogram's buckets are log-linear, as in HDR histograms: each power
// of two of nanoseconds from 2^histMinExp to 2^histMaxExp is split into
// histSub equal buckets, so a bucket is at most 1/histSub = 0.78% of the
// values it holds wide.
const (
	histMin     = time.Microsecond // smaller durations count as this
	histMax     = 60 * time.Second // larger durations count as this
	histSubBits = 7
	histSub     = 1 << histSubBits // linear sub-buckets per power of two
	histMinExp  = 9                // 2^9 ns ≤ histMin < 2^10 ns
	histMaxExp  = 35               // 2^35 ns ≤ histMax < 2^36 ns
	histBuckets = (histMaxExp - histMinExp + 1) * histSub
)

// Histogram records durations from 1µs to 60s with at most 0.78% relative
// error. Record is safe for concurrent use by any number of goroutines and
// takes no lock and allocates nothing; Count, Quantile and Latency may run
// concurrently with it and see a recent state. The zero value is an empty
// histogram ready to use; it must not be copied after first use.
type Histogram struct {
	counts [histBuckets]atomic.Int64
	max    atomic.Int64 // largest recorded value, ns (after clamping)
}

// histIndex returns the bucket of v, histMin ≤ v ≤ histMax nanoseconds.
func histIndex(v int64) int {
	e := bits.Len64(uint64(v)) - 1 // 2^e ≤ v < 2^(e+1)
	sub := int(v>>(e-histSubBits)) - histSub
	return (e-histMinExp)*histSub + sub
}

// histUpper returns the largest value bucket i holds, in nanoseconds.
func histUpper(i int) int64 {
	e := i/histSub + histMinExp
	sub := int64(i%histSub) + histSub
	return (sub+1)<<(e-histSubBits) - 1
}

// Record adds one duration: below 1µs (and negative) counts as 1µs, above
// 60s as 60s. It is safe for concurrent use and allocates nothing.
func (h *Histogram) Record(d time.Duration) {
	v := int64(min(max(d, histMin), histMax))
	h.counts[histIndex(v)].Add(1)
	for m := h.max.Load(); v > m; m = h.max.Load() {
		if h.max.CompareAndSwap(m, v) {
			return
		}
	}
}

// Count returns the number of durations recorded since the last Reset.
func (h *Histogram) Count() int {
	var n int64
	for i := range h.counts {
		n += h.counts[i].Load()
	}
	return int(n)
}

// Quantile returns the q-quantile (0 ≤ q ≤ 1) of the recorded durations:
// the upper edge of the bucket holding the value of rank ceil(q·n) in
// ascending order, capped at the largest value recorded. It is thus never
// below the exact quantile and at most 0.78% above it. 0 when nothing was
// recorded.
func (h *Histogram) Quantile(q float64) time.Duration {
	var s histSnapshot
	s.take(h)
	return s.quantile(q)
}

// Latency returns the histogram's median, p99 and p99.9 and its count as
// the latency measured at offered events/s.
func (h *Histogram) Latency(offered float64) *Latency {
	var s histSnapshot
	s.take(h)
	return &Latency{
		OfferedPerSec: offered,
		P50:           s.quantile(0.5),
		P99:           s.quantile(0.99),
		P999:          s.quantile(0.999),
		Samples:       int(s.n),
	}
}

// Reset empties the histogram. Durations recorded while it runs may be
// kept or dropped.
func (h *Histogram) Reset() {
	for i := range h.counts {
		h.counts[i].Store(0)
	}
	h.max.Store(0)
}

// histSnapshot is a copy of a histogram's counters, so that the quantiles
// of one Latency agree with each other and with its Samples.
type histSnapshot struct {
	counts [histBuckets]int64
	n      int64
	max    int64
}

func (s *histSnapshot) take(h *Histogram) {
	s.max = h.max.Load()
	for i := range h.counts {
		c := h.counts[i].Load()
		s.counts[i] = c
		s.n += c
	}
}

func (s *histSnapshot) quantile(q float64) time.Duration {
	if s.n == 0 {
		return 0
	}
	if !(q > 0) { // and NaN
		q = 0
	}
	rank := max(int64(math.Ceil(min(q, 1)*float64(s.n))), 1)
	var seen int64
	last := 0
	for i, c := range s.counts {
		if c == 0 {
			continue
		}
		seen += c
		last = i
		if seen >= rank {
			break
		}
	}
	up := histUpper(last)
	// The largest value caps its own bucket's edge. (A max read before a
	// larger value was counted lies in a lower bucket and is ignored.)
	if s.max > 0 && histIndex(s.max) == last {
		up = s.max
	}
	return time.Duration(up)
}
