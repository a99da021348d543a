package bench

import (
	"math"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"
)

// TestHistogramQuantileExact compares Quantile with the exact quantiles
// of random data: never below, at most 1% above.
func TestHistogramQuantileExact(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	dists := map[string]func() time.Duration{
		"log-uniform 1µs..60s": func() time.Duration {
			return time.Duration(math.Exp(math.Log(1e3) + rng.Float64()*(math.Log(60e9)-math.Log(1e3))))
		},
		"normal 2ms±0.5ms": func() time.Duration {
			return time.Duration((2 + 0.5*rng.NormFloat64()) * 1e6)
		},
		"exponential mean 300µs": func() time.Duration {
			return time.Duration(rng.ExpFloat64() * 300e3)
		},
		"few distinct": func() time.Duration {
			return []time.Duration{5 * time.Microsecond, time.Millisecond, 7 * time.Millisecond}[rng.IntN(3)]
		},
	}
	for name, gen := range dists {
		t.Run(name, func(t *testing.T) {
			for _, n := range []int{1, 7, 1000, 100_000} {
				var h Histogram
				vals := make([]time.Duration, n)
				for i := range vals {
					vals[i] = gen()
					h.Record(vals[i])
					vals[i] = min(max(vals[i], histMin), histMax) // as recorded
				}
				slices.Sort(vals)
				if h.Count() != n {
					t.Fatalf("Count = %d, want %d", h.Count(), n)
				}
				for _, q := range []float64{0, 0.001, 0.1, 0.5, 0.9, 0.99, 0.999, 0.9999, 1} {
					rank := max(int(math.Ceil(q*float64(n))), 1)
					exact := vals[rank-1]
					got := h.Quantile(q)
					if got < exact || float64(got-exact) > 0.01*float64(exact) {
						t.Errorf("n=%d q=%v: Quantile = %v, exact %v (%.3f%% off)", n, q, got, exact, 100*float64(got-exact)/float64(exact))
					}
				}
				if got := h.Quantile(1); got != vals[n-1] {
					t.Errorf("n=%d: Quantile(1) = %v, want the maximum %v", n, got, vals[n-1])
				}
			}
		})
	}
}

func TestHistogramClamp(t *testing.T) {
	var h Histogram
	for _, d := range []time.Duration{-5 * time.Second, 0, 500 * time.Nanosecond, time.Microsecond} {
		h.Record(d)
	}
	if got := h.Quantile(1); got != time.Microsecond {
		t.Errorf("below 1µs: Quantile(1) = %v, want 1µs", got)
	}
	h.Record(2 * time.Minute)
	h.Record(math.MaxInt64)
	if got := h.Quantile(1); got != time.Minute {
		t.Errorf("above 60s: Quantile(1) = %v, want 1m", got)
	}
	near1µs := func(d time.Duration) bool { return d >= time.Microsecond && d <= 1010*time.Nanosecond }
	if got := h.Quantile(0.5); !near1µs(got) {
		t.Errorf("Quantile(0.5) = %v, want 1µs (+1%%)", got)
	}
	if h.Count() != 6 {
		t.Errorf("Count = %d", h.Count())
	}
	// Out-of-range q is clamped.
	if !near1µs(h.Quantile(-1)) || !near1µs(h.Quantile(math.NaN())) || h.Quantile(2) != time.Minute {
		t.Errorf("q out of range: %v %v %v", h.Quantile(-1), h.Quantile(math.NaN()), h.Quantile(2))
	}
}

// TestHistogramBuckets checks that the buckets from 1µs to 60s tile the
// range, each at most 1/128 of its values wide.
func TestHistogramBuckets(t *testing.T) {
	first, last := histIndex(int64(histMin)), histIndex(int64(histMax))
	if first < 0 || last >= histBuckets {
		t.Fatalf("buckets %d..%d of %d", first, last, histBuckets)
	}
	if want := histBuckets - 1; histIndex(1<<(histMaxExp+1)-1) != want {
		t.Errorf("top of the last power of two in bucket %d, want %d", histIndex(1<<(histMaxExp+1)-1), want)
	}
	for i := first; i <= last; i++ {
		up := histUpper(i)
		if histIndex(up) != i || histIndex(up+1) != i+1 {
			t.Fatalf("bucket %d: upper edge %d in %d, next value in %d", i, up, histIndex(up), histIndex(up+1))
		}
		lo := histUpper(i-1) + 1
		if w := float64(up-lo+1) / float64(lo); w > 1.0/histSub {
			t.Fatalf("bucket %d [%d, %d]: relative width %v", i, lo, up, w)
		}
	}
}

func TestHistogramConcurrent(t *testing.T) {
	var h Histogram
	const workers, per = 8, 20_000
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range per {
				h.Record(time.Duration(w*per+i+1) * time.Microsecond)
			}
		})
	}
	// Readers run alongside the writers.
	wg.Go(func() {
		for range 100 {
			if l := h.Latency(1); l.P50 > l.P99 || l.P99 > l.P999 {
				t.Errorf("inconsistent snapshot %+v", l)
			}
		}
	})
	wg.Wait()
	l := h.Latency(100_000)
	if l.Samples != workers*per || h.Count() != workers*per {
		t.Errorf("Samples %d, Count %d, want %d", l.Samples, h.Count(), workers*per)
	}
	n := float64(workers * per)
	for _, c := range []struct {
		got time.Duration
		q   float64
	}{{l.P50, 0.5}, {l.P99, 0.99}, {l.P999, 0.999}} {
		exact := time.Duration(math.Ceil(c.q*n)) * time.Microsecond
		if c.got < exact || float64(c.got-exact) > 0.01*float64(exact) {
			t.Errorf("q=%v: %v, exact %v", c.q, c.got, exact)
		}
	}
	if l.OfferedPerSec != 100_000 {
		t.Errorf("OfferedPerSec = %v", l.OfferedPerSec)
	}
}

func TestHistogramEmptyAndReset(t *testing.T) {
	var h Histogram
	if h.Count() != 0 || h.Quantile(0.99) != 0 {
		t.Errorf("empty: Count %d, p99 %v", h.Count(), h.Quantile(0.99))
	}
	if l := h.Latency(5); *l != (Latency{OfferedPerSec: 5}) {
		t.Errorf("empty: Latency %+v", l)
	}
	h.Record(time.Second)
	h.Reset()
	h.Record(time.Millisecond)
	if h.Count() != 1 || h.Quantile(1) != time.Millisecond {
		t.Errorf("after Reset: Count %d, max %v", h.Count(), h.Quantile(1))
	}
}

func TestHistogramRecordAllocs(t *testing.T) {
	var h Histogram
	d := time.Duration(0)
	if n := testing.AllocsPerRun(1000, func() {
		d += 7919 * time.Nanosecond
		h.Record(d)
	}); n != 0 {
		t.Errorf("Record allocates %v times", n)
	}
}

func BenchmarkRecord(b *testing.B) {
	durs := make([]time.Duration, 1024)
	rng := rand.New(rand.NewPCG(3, 4))
	for i := range durs {
		durs[i] = time.Duration(rng.ExpFloat64() * 500e3)
	}
	b.Run("serial", func(b *testing.B) {
		var h Histogram
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			h.Record(durs[i&1023])
			i++
		}
	})
	b.Run("parallel", func(b *testing.B) {
		var h Histogram
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			i := 0
			for pb.Next() {
				h.Record(durs[i&1023])
				i++
			}
		})
	})
}
