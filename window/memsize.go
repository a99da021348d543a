package window

import (
	"reflect"
	"unsafe"
)

// MemSize returns the approximate number of bytes the window retains:
// its own struct, slice capacities, the dedup table, recent events, tag
// maps and an estimate of each sketch. It is meant for metrics and tests;
// it walks the sketches, so it is not free for keys that have many.
func (w *Window) MemSize() int {
	n := int(unsafe.Sizeof(Window{}))
	n += cap(w.hdr)*int(unsafe.Sizeof(bucket{})) + cap(w.vals)*8 + cap(w.ring)*int(unsafe.Sizeof(recentCore{}))
	x := w.x
	if x == nil {
		return n
	}
	n += int(unsafe.Sizeof(extra{}))
	n += cap(x.sk) * int(unsafe.Sizeof(skBucket{}))
	for i := x.skh; i < len(x.sk); i++ {
		// Measured (sketches-go v1.4.8, BufferedPaginatedStore, 128+
		// values): ~1.2 KB for values within one page of 32 bins, up to
		// ~2.7 KB for ~230 bins.
		n += 1024 + 8*x.sk[i].sk.bins()
	}
	n += cap(x.ids.words) * 8
	n += cap(x.rids)*8 + cap(x.rid)
	n += cap(x.rtags)*8 + cap(x.rout)
	seen := make([]map[string]string, 0, 4)
	count := func(m map[string]string) {
		if m == nil {
			return
		}
		for _, s := range seen {
			if equalMapPtr(s, m) {
				return
			}
		}
		seen = append(seen, m)
		n += mapBytes(m)
	}
	count(x.tags)
	count(x.tagsLast)
	for _, m := range x.rtags {
		count(m)
	}
	return n
}

// equalMapPtr reports whether a and b are the same map (not just equal).
func equalMapPtr(a, b map[string]string) bool {
	return reflect.ValueOf(a).UnsafePointer() == reflect.ValueOf(b).UnsafePointer()
}

// mapBytes estimates the memory of a small map[string]string: the map
// header, groups of 8 slots of 32 bytes plus control words, and the
// strings' bytes.
func mapBytes(m map[string]string) int {
	slots := max(8, (len(m)*8+6)/7)
	slots = (slots + 7) &^ 7
	n := 48 + slots*32 + slots/8*8
	for k, v := range m {
		n += len(k) + len(v)
	}
	return n
}
