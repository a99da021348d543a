package window

import (
	"github.com/DataDog/sketches-go/ddsketch"
	"github.com/DataDog/sketches-go/ddsketch/mapping"
	"github.com/DataDog/sketches-go/ddsketch/store"
)

// Quantiles of buckets that hold more than SketchThreshold values come from
// DataDog's sketches-go DDSketch: a proven, mergeable quantile sketch with a
// relative-error guarantee, used by Datadog's own agents. All sketches share
// one immutable logarithmic index mapping of relative accuracy 1%, and use
// the BufferedPaginatedStore (the library's default), which never collapses
// bins: every value stays within 1% of its bin's representative value, and
// putting bins of several sketches together keeps that guarantee.

// relativeAccuracy is the sketches' relative accuracy.
const relativeAccuracy = 0.01

// sketchMapping is shared by every sketch; it is immutable.
var sketchMapping = func() *mapping.LogarithmicMapping {
	m, err := mapping.NewLogarithmicMapping(relativeAccuracy)
	if err != nil {
		panic(err) // unreachable: the accuracy is a valid constant
	}
	return m
}()

// sketch is a DDSketch of one bucket's values.
type sketch struct{ *ddsketch.DDSketch }

func newSketch() sketch {
	return sketch{ddsketch.NewDDSketch(sketchMapping, store.NewBufferedPaginatedStore(), store.NewBufferedPaginatedStore())}
}

// add adds v. Magnitudes beyond the mapping's range (above ~1.7e308/1.02)
// are clamped to it; NaN is ignored (events are validated finite).
func (s sketch) add(v float64) {
	if v != v {
		return
	}
	lim := sketchMapping.MaxIndexableValue()
	v = min(max(v, -lim), lim)
	// Cannot fail: v is a number within the indexable range.
	_ = s.DDSketch.Add(v)
}

// forEachBin calls f with each bin's representative value and count:
// zero, positive and negative values. Each value added to the sketch is
// within 1% of its bin's representative value.
func (s sketch) forEachBin(f func(v, count float64)) {
	if z := s.GetZeroCount(); z > 0 {
		f(0, z)
	}
	s.GetPositiveValueStore().ForEach(func(i int, c float64) bool {
		f(sketchMapping.Value(i), c)
		return false
	})
	s.GetNegativeValueStore().ForEach(func(i int, c float64) bool {
		f(-sketchMapping.Value(i), c)
		return false
	})
}

// bins returns the number of non-empty bins (zero bin included).
func (s sketch) bins() int {
	n := 0
	s.forEachBin(func(float64, float64) { n++ })
	return n
}

// Valid bin indexes of sketchMapping, for decoding.
var (
	minSketchIndex = sketchMapping.Index(sketchMapping.MinIndexableValue())
	maxSketchIndex = sketchMapping.Index(sketchMapping.MaxIndexableValue())
)
