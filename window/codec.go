package window

import (
	"encoding/binary"
	"fmt"
	"maps"
	"math"
	"math/bits"
)

// Encoded window, format version 2. Integers are varints (u: unsigned,
// s: zig-zag signed), floats are 8-byte little-endian IEEE 754 bits,
// strings are a uvarint length and the bytes.
//
//	"SW" 0x02                      magic and version
//	u res_ms  u retention_ms       shape the window was built with
//	u applied u late u duplicates  lifetime counters
//	-- only when applied > 0:
//	s newest  s last_ts  f last_value
//	u buckets, ascending; for each:
//	    u distance (first: newest − b; then b − previous b)
//	    u n; n > 0: n raw values f…
//	         n = 0: sketch: u count f sum f min f max u zero_count
//	                u positive_bins (s index u count)…  u negative_bins (s index u count)…
//	u ids; when > 0: u k (bucket tag bits of the fingerprints), then
//	    for each: 8-byte LE fingerprint (low k bits 0), u newest − bucket
//	u tags; when > 0: s ts, then (string key, string value)…
//	u recent, oldest first; for each: s ts, f value, byte flags
//	    (1 id, 2 tags, 4 same tags as the previous entry, 8 late, 16 duplicate),
//	    [string id], [tags as above without ts]
//
// Version 1, still decoded, differs only in its ids: no k, and each id's
// full 64-bit xxHash in place of its fingerprint.
const (
	codecVersion = 2

	recentID        = 1
	recentTags      = 2
	recentSameTags  = 4
	recentLate      = 8
	recentDuplicate = 16
)

// MarshalBinary encodes the window's full state — buckets, sketches, dedup
// ids, tags, recent events and counters — in a versioned format, for
// handing the key to another node. It does not modify the window.
func (w *Window) MarshalBinary() ([]byte, error) {
	s := w.shape
	b := make([]byte, 0, 64+12*(len(w.vals)-int(w.vh))+4*(len(w.hdr)-int(w.hh))+24*len(w.ring))
	b = append(b, 'S', 'W', codecVersion)
	b = binary.AppendUvarint(b, uint64(s.resMs()))
	b = binary.AppendUvarint(b, uint64(s.Retention.Milliseconds()))
	b = binary.AppendUvarint(b, w.applied)
	b = binary.AppendUvarint(b, w.late)
	b = binary.AppendUvarint(b, w.dups)
	if w.applied == 0 {
		return b, nil
	}
	b = binary.AppendVarint(b, w.newest)
	b = binary.AppendVarint(b, w.last.TS)
	b = appendF64(b, w.last.Value)

	x := w.x
	live := w.hdr[w.hh:]
	b = binary.AppendUvarint(b, uint64(len(live)))
	vals := w.vals[w.vh:]
	prev := w.newest
	ski := 0
	if x != nil {
		ski = x.skh
	}
	for i, h := range live {
		bk := w.base + int64(h.rel)
		if i == 0 {
			b = binary.AppendUvarint(b, uint64(w.newest-bk))
		} else {
			b = binary.AppendUvarint(b, uint64(bk-prev))
		}
		prev = bk
		b = binary.AppendUvarint(b, uint64(h.n))
		if h.n > 0 {
			for _, v := range vals[:h.n] {
				b = appendF64(b, v)
			}
			vals = vals[h.n:]
			continue
		}
		sb := &x.sk[ski]
		ski++
		b = binary.AppendUvarint(b, sb.count)
		b = appendF64(b, sb.sum)
		b = appendF64(b, sb.min)
		b = appendF64(b, sb.max)
		b = binary.AppendUvarint(b, uint64(sb.sk.GetZeroCount()))
		for _, st := range []interface {
			ForEach(func(int, float64) bool)
		}{sb.sk.GetPositiveValueStore(), sb.sk.GetNegativeValueStore()} {
			n := 0
			st.ForEach(func(int, float64) bool { n++; return false })
			b = binary.AppendUvarint(b, uint64(n))
			st.ForEach(func(i int, c float64) bool {
				b = binary.AppendVarint(b, int64(i))
				b = binary.AppendUvarint(b, uint64(c))
				return false
			})
		}
	}

	cut := w.newest - int64(w.span)
	if x == nil {
		b = append(b, 0, 0) // no ids, no tags
	} else {
		t := &x.ids
		live := t.live(w.newest, cut)
		b = binary.AppendUvarint(b, uint64(live))
		if live > 0 {
			b = binary.AppendUvarint(b, uint64(bits.Len64(t.mask)))
		}
		for _, wd := range t.words {
			if bk := t.bucket(wd, w.newest); wd != 0 && bk > cut {
				b = binary.LittleEndian.AppendUint64(b, wd&^t.mask)
				b = binary.AppendUvarint(b, uint64(w.newest-bk))
			}
		}
		b = binary.AppendUvarint(b, uint64(len(x.tags)))
		if len(x.tags) > 0 {
			b = binary.AppendVarint(b, x.tagsTS)
			b = appendTags(b, x.tags)
		}
	}

	n := len(w.ring)
	b = binary.AppendUvarint(b, uint64(n))
	var prevTags map[string]string
	for k := 0; k < n; k++ {
		i := (int(w.rnext) + k) % n
		b = binary.AppendVarint(b, w.ring[i].ts)
		b = appendF64(b, w.ring[i].v)
		hasID := x != nil && x.hasRecentID(i)
		var tags map[string]string
		if x != nil && x.rtags != nil {
			tags = x.rtags[i]
		}
		var flags byte
		if hasID {
			flags |= recentID
		}
		if x != nil && x.rout != nil {
			switch x.rout[i] {
			case Late:
				flags |= recentLate
			case Duplicate:
				flags |= recentDuplicate
			}
		}
		if tags != nil {
			flags |= recentTags
			if prevTags != nil && maps.Equal(tags, prevTags) {
				flags |= recentSameTags
			}
		}
		b = append(b, flags)
		if hasID {
			b = binary.AppendUvarint(b, uint64(x.recentIDLen(i)))
			b = x.appendRecentID(b, i)
		}
		if flags&(recentTags|recentSameTags) == recentTags {
			b = binary.AppendUvarint(b, uint64(len(tags)))
			b = appendTags(b, tags)
		}
		if tags != nil {
			prevTags = tags
		}
	}
	return b, nil
}

func appendF64(b []byte, v float64) []byte {
	return binary.LittleEndian.AppendUint64(b, math.Float64bits(v))
}

// appendTags appends the pairs of tags (the count is written by the caller).
func appendTags(b []byte, tags map[string]string) []byte {
	for k, v := range tags {
		b = binary.AppendUvarint(b, uint64(len(k)))
		b = append(b, k...)
		b = binary.AppendUvarint(b, uint64(len(v)))
		b = append(b, v...)
	}
	return b
}

// reader decodes; the first error sticks and later reads return zeros.
type reader struct {
	b       []byte
	version byte
	err     error
}

func (r *reader) fail(format string, args ...any) {
	if r.err == nil {
		r.err = fmt.Errorf("%w: "+format, append([]any{ErrCorrupt}, args...)...)
	}
}

func (r *reader) uvarint() uint64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.fail("bad unsigned varint")
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *reader) varint() int64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Varint(r.b)
	if n <= 0 {
		r.fail("bad signed varint")
		return 0
	}
	r.b = r.b[n:]
	return v
}

// count reads a count of elements taking at least size bytes each.
func (r *reader) count(size int) int {
	n := r.uvarint()
	if n > uint64(len(r.b)/size) {
		r.fail("count %d exceeds the input", n)
		return 0
	}
	return int(n)
}

func (r *reader) byte1() byte {
	if r.err != nil {
		return 0
	}
	if len(r.b) < 1 {
		r.fail("truncated")
		return 0
	}
	c := r.b[0]
	r.b = r.b[1:]
	return c
}

func (r *reader) u64() uint64 {
	if r.err != nil {
		return 0
	}
	if len(r.b) < 8 {
		r.fail("truncated")
		return 0
	}
	v := binary.LittleEndian.Uint64(r.b)
	r.b = r.b[8:]
	return v
}

// f64 reads a finite float.
func (r *reader) f64() float64 {
	v := math.Float64frombits(r.u64())
	if math.IsNaN(v) || math.IsInf(v, 0) {
		r.fail("non-finite value")
		return 0
	}
	return v
}

// str reads a string (copied).
func (r *reader) str() string {
	n := r.count(1)
	if r.err != nil {
		return ""
	}
	s := string(r.b[:n])
	r.b = r.b[n:]
	return s
}

func (r *reader) bytes() []byte {
	n := r.count(1)
	if r.err != nil {
		return nil
	}
	s := append([]byte(nil), r.b[:n]...)
	r.b = r.b[n:]
	return s
}

// tags reads n pairs.
func (r *reader) tags(n int) map[string]string {
	m := make(map[string]string, min(n, 64))
	for range n {
		k := r.str()
		m[k] = r.str()
	}
	return m
}

// UnmarshalBinary replaces the window's state with one encoded by
// MarshalBinary. The encoded window must have the receiver's Resolution
// (else ErrShapeMismatch); a different Retention or Recent is applied to the
// decoded state (buckets, ids and recent events beyond them are dropped).
// Malformed input returns an error wrapping ErrCorrupt and leaves the
// window unchanged; decoding never panics and its work is bounded by the
// input length.
func (w *Window) UnmarshalBinary(data []byte) error {
	s := w.shape
	if len(data) < 3 || data[0] != 'S' || data[1] != 'W' {
		return fmt.Errorf("%w: bad magic", ErrCorrupt)
	}
	if data[2] != codecVersion && data[2] != 1 {
		return fmt.Errorf("%w: unknown version %d", ErrCorrupt, data[2])
	}
	r := &reader{b: data[3:], version: data[2]}
	res := int64(r.uvarint())
	ret := int64(r.uvarint())
	if r.err != nil {
		return r.err
	}
	if res != s.resMs() {
		return fmt.Errorf("%w: encoded %dms, window %dms", ErrShapeMismatch, res, s.resMs())
	}
	if ret <= 0 || ret%res != 0 {
		return fmt.Errorf("%w: bad retention %dms", ErrCorrupt, ret)
	}
	nw := Window{shape: s, span: w.span}
	nw.applied, nw.late, nw.dups = r.uvarint(), r.uvarint(), r.uvarint()
	if r.err != nil {
		return r.err
	}
	if nw.applied == 0 {
		if len(r.b) != 0 || nw.late != 0 || nw.dups != 0 {
			return fmt.Errorf("%w: state after an empty window", ErrCorrupt)
		}
		*w = nw
		return nil
	}
	if err := nw.decodeState(r); err != nil {
		return err
	}
	*w = nw
	return nil
}

// decodeState decodes what follows the counters of a non-empty window.
func (w *Window) decodeState(r *reader) error {
	res := w.shape.resMs()
	R := int64(w.span)
	w.newest = r.varint()
	lastTS := r.varint()
	w.last = Point{TS: lastTS, Value: r.f64()}
	if r.err != nil {
		return r.err
	}
	if lastTS > maxTS || lastTS < -maxTS || floorDiv(lastTS, res) != w.newest {
		return fmt.Errorf("%w: last event %d is not in the newest bucket %d", ErrCorrupt, lastTS, w.newest)
	}
	w.base = w.newest - R + 1
	cut := w.newest - R // keep buckets > cut

	nb := r.count(2)
	prev := int64(0)
	for i := 0; i < nb && r.err == nil; i++ {
		d := r.uvarint()
		var bk int64
		if i == 0 {
			if d > 1<<62 {
				return fmt.Errorf("%w: bucket distance %d", ErrCorrupt, d)
			}
			bk = w.newest - int64(d)
		} else {
			if d == 0 || d > uint64(w.newest-prev) {
				return fmt.Errorf("%w: buckets not ascending within the window", ErrCorrupt)
			}
			bk = prev + int64(d)
		}
		prev = bk
		n := r.uvarint()
		keep := bk > cut
		if n > 0 {
			if n > math.MaxUint32 || n > uint64(len(r.b)/8) {
				return fmt.Errorf("%w: raw bucket of %d values exceeds the input", ErrCorrupt, n)
			}
			if keep {
				w.hdr = append(w.hdr, bucket{rel: uint32(bk - w.base), n: uint32(n)})
			}
			for range n {
				v := r.f64()
				if keep {
					w.vals = append(w.vals, v)
				}
			}
			continue
		}
		sb := skBucket{b: bk, sk: newSketch()}
		sb.count = r.uvarint()
		sb.sum, sb.min, sb.max = r.f64(), r.f64(), r.f64()
		if r.err != nil {
			return r.err
		}
		if sb.count == 0 || sb.min > sb.max {
			return fmt.Errorf("%w: bad sketch statistics", ErrCorrupt)
		}
		total := r.uvarint()
		if total > 0 {
			_ = sb.sk.AddWithCount(0, float64(total)) // zero: cannot fail
		}
		for _, st := range []interface{ AddWithCount(int, float64) }{sb.sk.GetPositiveValueStore(), sb.sk.GetNegativeValueStore()} {
			nbins := r.count(2)
			for range nbins {
				idx, c := r.varint(), r.uvarint()
				if r.err != nil {
					return r.err
				}
				if idx < int64(minSketchIndex) || idx > int64(maxSketchIndex) || c == 0 || c > 1<<53 {
					return fmt.Errorf("%w: bad sketch bin", ErrCorrupt)
				}
				total += c
				if total > 1<<53 {
					return fmt.Errorf("%w: bad sketch bin", ErrCorrupt)
				}
				st.AddWithCount(int(idx), float64(c))
			}
		}
		if r.err == nil && total != sb.count {
			return fmt.Errorf("%w: sketch holds %d values, expected %d", ErrCorrupt, total, sb.count)
		}
		if keep {
			w.hdr = append(w.hdr, bucket{rel: uint32(bk - w.base), n: 0})
			w.ext().sk = append(w.ext().sk, sb)
		}
	}
	if r.err != nil {
		return r.err
	}
	if nb == 0 || prev != w.newest {
		return fmt.Errorf("%w: newest bucket %d holds no values", ErrCorrupt, w.newest)
	}

	if nids := r.count(9); nids > 0 {
		t := &w.ext().ids
		t.init(R, w.newest)
		if r.version >= 2 {
			k := r.uvarint()
			if r.err == nil && (k == 0 || k > 62) {
				return fmt.Errorf("%w: bad fingerprint width %d", ErrCorrupt, k)
			}
			if m := uint64(1)<<k - 1; m > t.mask {
				t.mask = m
			}
		}
		for range nids {
			h := r.u64()
			d := r.uvarint()
			if r.err != nil {
				return r.err
			}
			if h == 0 || d > 1<<62 {
				return fmt.Errorf("%w: bad id entry", ErrCorrupt)
			}
			if bk := w.newest - int64(d); bk > cut {
				fp := t.fingerprint(h)
				if at := t.find(fp); at < 0 || t.bucket(t.words[at], w.newest) <= cut {
					t.insert(fp, at, bk, w.newest, cut)
				}
			}
		}
	}

	if nt := r.count(2); nt > 0 {
		ts := r.varint()
		m := r.tags(nt)
		if r.err != nil {
			return r.err
		}
		x := w.ext()
		x.tags, x.tagsTS, x.tagsLast = m, ts, m
	}

	nr := r.count(10)
	keepFrom := max(0, nr-w.shape.Recent)
	var prevTags map[string]string
	for k := range nr {
		ts := r.varint()
		v := r.f64()
		flags := r.byte1()
		var id []byte
		var tags map[string]string
		if flags&^(recentID|recentTags|recentSameTags|recentLate|recentDuplicate) != 0 ||
			flags&(recentTags|recentSameTags) == recentSameTags ||
			flags&(recentLate|recentDuplicate) == recentLate|recentDuplicate {
			r.fail("bad recent flags %#x", flags)
		}
		o := Applied
		switch {
		case flags&recentLate != 0:
			o = Late
		case flags&recentDuplicate != 0:
			o = Duplicate
		}
		if flags&recentID != 0 {
			id = r.bytes()
		}
		switch {
		case flags&recentSameTags != 0:
			if prevTags == nil {
				r.fail("recent tags refer to no previous tags")
			}
			tags = prevTags
		case flags&recentTags != 0:
			tags = r.tags(r.count(2))
			if x := w.x; x != nil && maps.Equal(tags, x.tags) {
				tags = x.tags // share, as Add does
			}
		}
		if r.err != nil {
			return r.err
		}
		if tags != nil {
			prevTags = tags
		}
		if k >= keepFrom && w.shape.Recent > 0 {
			w.pushRecent(w.shape.Recent, ts, v, string(id), tags, o)
		}
	}
	if r.err != nil {
		return r.err
	}
	if len(r.b) != 0 {
		return fmt.Errorf("%w: %d trailing bytes", ErrCorrupt, len(r.b))
	}
	return nil
}
