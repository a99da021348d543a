package window

import "math"

// BucketStats are the exact statistics of one non-empty bucket of a window.
type BucketStats struct {
	// TS is the bucket's start time, epoch milliseconds.
	TS    int64   `json:"ts"`
	Count uint64  `json:"count"`
	Sum   float64 `json:"sum"`
	Min   float64 `json:"min"`
	Max   float64 `json:"max"`
	Mean  float64 `json:"mean"`
}

// Series returns the statistics of every non-empty bucket the window holds,
// oldest first: what a chart of the key over its retention draws. Raw and
// sketched buckets alike are exact (a sketched bucket keeps its count, sum,
// min and max). It returns nil for an empty window and allocates the
// result only.
func (w *Window) Series() []BucketStats {
	live := w.hdr[w.hh:]
	if w.applied == 0 || len(live) == 0 {
		return nil
	}
	out := make([]BucketStats, len(live))
	res := w.shape.resMs()
	vals := w.vals[w.vh:]
	var sk []skBucket
	if w.x != nil {
		sk = w.x.sk[w.x.skh:]
	}
	for i, h := range live {
		b := w.base + int64(h.rel)
		s := BucketStats{TS: b * res}
		if h.n == 0 { // a sketched bucket: the next one in bucket order
			s.Count, s.Sum, s.Min, s.Max = sk[0].count, sk[0].sum, sk[0].min, sk[0].max
			sk = sk[1:]
		} else {
			s.Min, s.Max = math.Inf(1), math.Inf(-1)
			for _, v := range vals[:h.n] {
				s.Sum += v
				s.Min = min(s.Min, v)
				s.Max = max(s.Max, v)
			}
			s.Count = uint64(h.n)
			vals = vals[h.n:]
		}
		s.Mean = s.Sum / float64(s.Count)
		out[i] = s
	}
	return out
}
