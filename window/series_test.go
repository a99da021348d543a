package window

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

func TestSeriesEmpty(t *testing.T) {
	if s := New(testShape()).Series(); s != nil {
		t.Fatalf("Series of an empty window = %v, want nil", s)
	}
}

// TestSeries checks Series against a brute-force model of the buckets in
// the window: raw and sketched buckets, events out of order, late events,
// eviction, negative times.
func TestSeries(t *testing.T) {
	for seed := range uint64(20) {
		r := rand.New(rand.NewPCG(seed, 1))
		w := New(testShape()) // 10 buckets of 1s
		model := map[int64][]float64{}
		newest := int64(math.MinInt64)
		base := int64(r.IntN(3)-1) * 1_000_000 // also negative times
		ts := base
		for range 3000 {
			switch r.IntN(10) {
			case 0:
				ts += int64(r.IntN(4000)) // ahead, may evict
			case 1:
				ts -= int64(r.IntN(12000)) // behind, may be late
			default:
				ts += int64(r.IntN(20))
			}
			v := r.NormFloat64() * 100
			b := floorDiv(ts, 1000)
			if w.Add(ev(ts, v)) != Applied {
				continue
			}
			model[b] = append(model[b], v)
			newest = max(newest, b)
			for k := range model {
				if k <= newest-10 {
					delete(model, k)
				}
			}
		}
		got := w.Series()
		keys := make([]int64, 0, len(model))
		for k := range model {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		if len(got) != len(keys) {
			t.Fatalf("seed %d: %d buckets, want %d", seed, len(got), len(keys))
		}
		var count uint64
		for i, k := range keys {
			vals := model[k]
			want := BucketStats{TS: k * 1000, Count: uint64(len(vals)), Min: slices.Min(vals), Max: slices.Max(vals)}
			for _, v := range vals {
				want.Sum += v
			}
			want.Mean = want.Sum / float64(want.Count)
			g := got[i]
			if g.TS != want.TS || g.Count != want.Count || g.Min != want.Min || g.Max != want.Max ||
				math.Abs(g.Sum-want.Sum) > 1e-9*math.Max(1, math.Abs(want.Sum)) || math.Abs(g.Mean-want.Mean) > 1e-9*math.Max(1, math.Abs(want.Mean)) {
				t.Fatalf("seed %d: bucket %d = %+v, want %+v", seed, i, g, want)
			}
			count += g.Count
		}
		if a := w.StatsOver(0); a.Count != count {
			t.Fatalf("seed %d: buckets count %d events, the window %d", seed, count, a.Count)
		}
	}
}

// TestSeriesSketched: a bucket converted to a sketch keeps its exact
// count, min, max and mean, between raw buckets.
func TestSeriesSketched(t *testing.T) {
	w := New(testShape())
	mustAdd(t, w, ev(500, 7), Applied)
	for i := range SketchThreshold + 50 {
		mustAdd(t, w, ev(1000+int64(i%1000), float64(i)), Applied)
	}
	mustAdd(t, w, ev(2500, -3), Applied)
	if w.x == nil || len(w.x.sk)-w.x.skh != 1 {
		t.Fatal("bucket 1 was not converted to a sketch")
	}
	n := float64(SketchThreshold + 50)
	want := []BucketStats{
		{TS: 0, Count: 1, Sum: 7, Min: 7, Max: 7, Mean: 7},
		{TS: 1000, Count: uint64(n), Sum: n * (n - 1) / 2, Min: 0, Max: n - 1, Mean: (n - 1) / 2},
		{TS: 2000, Count: 1, Sum: -3, Min: -3, Max: -3, Mean: -3},
	}
	if got := w.Series(); !slices.Equal(got, want) {
		t.Fatalf("Series = %+v, want %+v", got, want)
	}
}
