package actors

// offsetSlots is the number of segments of a key's window whose oldest log
// record offset the key keeps; a power of two, so a segment's slot is its
// low bits (two's complement: the floor modulo, negative segments too).
const offsetSlots = 16

// offsetSegment returns the number of buckets per segment for a window of
// windowBuckets buckets: offsetSlots−1 segments cover the window, so the
// slot a new segment takes always held one the window has evicted.
func offsetSegment(windowBuckets int64) int64 {
	return max(1, (windowBuckets+offsetSlots-2)/(offsetSlots-1))
}

// offsetSlot is one segment of buckets and the oldest offset (+1: 0 marks
// an empty slot) of the log records applied to them.
type offsetSlot struct{ seg, off1 int64 }

// keyOffsets keeps where a replay that rebuilds a key's window must start:
// per segment of consecutive buckets, the oldest offset of the log records
// applied to it. A segment is kept while any of its buckets is in the
// window, so the oldest offset it gives is at or before the oldest record
// still in the window — by less than a segment (a fifteenth of the
// retention) of the key's records. A fixed ring (256 B, allocated with a
// key's first record from a log): tracking a record is a division and a
// compare, whatever the order of event times, and the memory does not grow
// with the key's rate.
type keyOffsets [offsetSlots]offsetSlot

// track records that the record at offset off was applied to bucket.
func (o *keyOffsets) track(bucket, off, segBuckets int64) {
	seg := floorDiv(bucket, segBuckets)
	s := &o[seg&(offsetSlots-1)]
	switch {
	case s.off1 == 0 || s.seg < seg:
		// Empty, or a segment offsetSlots older: every bucket of it is
		// older than the window (see offsetSegment).
		s.seg, s.off1 = seg, off+1
	case s.seg == seg:
		s.off1 = min(s.off1, off+1)
	}
	// s.seg > seg: seg is offsetSlots segments older than one the window
	// holds, so older than the window; a window does not apply such a record.
}

// oldest returns the oldest offset kept for the segments with a bucket
// after cut (buckets up to cut have left the window), or -1.
func (o *keyOffsets) oldest(cut, segBuckets int64) int64 {
	oldest := int64(-1)
	for _, s := range o {
		if s.off1 != 0 && (s.seg+1)*segBuckets-1 > cut && (oldest < 0 || s.off1-1 < oldest) {
			oldest = s.off1 - 1
		}
	}
	return oldest
}

// pairs returns the segments with a bucket after cut as (bucket, oldest
// offset) pairs ordered by bucket, each segment named by its last bucket:
// a receiver that drops the pairs whose bucket has left the window keeps
// a segment as long as this node would. nil when none.
func (o *keyOffsets) pairs(cut, segBuckets int64) []int64 {
	var out []int64
	for _, s := range o {
		if last := (s.seg+1)*segBuckets - 1; s.off1 != 0 && last > cut {
			i := len(out)
			out = append(out, last, s.off1-1)
			for ; i > 0 && out[i-2] > last; i -= 2 { // insertion: at most offsetSlots
				out[i], out[i+1], out[i-2], out[i-1] = out[i-2], out[i-1], out[i], out[i+1]
			}
		}
	}
	return out
}

// load adds (bucket, oldest offset) pairs, as pairs returns them or as
// per-bucket pairs.
func (o *keyOffsets) load(pairs []int64, segBuckets int64) {
	for i := 0; i+1 < len(pairs); i += 2 {
		o.track(pairs[i], pairs[i+1], segBuckets)
	}
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && (a < 0) != (b < 0) {
		q--
	}
	return q
}
