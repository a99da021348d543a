package window

import "github.com/cespare/xxhash/v2"

// Deduplication keeps, for each id applied inside the window, a 64-bit
// xxHash of the id (fixed seed, so the hashes survive MarshalBinary and a
// move to another node) and the bucket it was applied to. Two different
// ids collide with probability 2^-64 per pair: with n ids in a window, a
// new event is wrongly taken as a duplicate with probability about
// n·2^-64 (≈ 3·10^-17 for n = 600).
//
// The table is open addressing with linear probing over (hash, bucket)
// slots. A slot whose bucket has left the window counts as absent and may
// be reused; when occupied slots (live or expired) reach 3/4 of the table,
// it is rebuilt in place — or resized when live ids need it — dropping the
// expired ones. A rebuild costs O(table) and happens at most once per
// table/4 inserts, so dedup is O(1) amortised per event and allocates
// nothing in steady state.

// idSlot is one table slot; h == 0 marks an empty slot.
type idSlot struct {
	h uint64
	b int64
}

// idTable is the set of ids applied inside the window.
type idTable struct {
	slots []idSlot // len is 0 or a power of two
	used  int      // slots with h != 0, live or expired
}

// idHash hashes an id; 0 is reserved for empty slots.
func idHash(id string) uint64 {
	h := xxhash.Sum64String(id)
	if h == 0 {
		h = 1
	}
	return h
}

// contains reports whether h was applied to a bucket after cut.
func (t *idTable) contains(h uint64, cut int64) bool {
	if len(t.slots) == 0 {
		return false
	}
	mask := uint64(len(t.slots) - 1)
	for i := h & mask; ; i = (i + 1) & mask {
		s := &t.slots[i]
		if s.h == h {
			return s.b > cut
		}
		if s.h == 0 {
			return false
		}
	}
}

// insert records h as applied to bucket b; h must not be contained.
// Slots of buckets ≤ cut are expired.
func (t *idTable) insert(h uint64, b, cut int64) {
	if (t.used+1)*4 > len(t.slots)*3 {
		t.rebuild(cut)
	}
	mask := uint64(len(t.slots) - 1)
	free := -1
	i := h & mask
	for ; ; i = (i + 1) & mask {
		s := &t.slots[i]
		if s.h == h { // an expired entry of the same id
			s.b = b
			return
		}
		if s.h == 0 {
			break
		}
		if free < 0 && s.b <= cut {
			free = int(i)
		}
	}
	if free >= 0 {
		t.slots[free] = idSlot{h: h, b: b}
		return
	}
	t.slots[i] = idSlot{h: h, b: b}
	t.used++
}

// rebuild drops expired slots and sizes the table so that live ids, plus
// one, fill between 1/8 and 1/2 of it.
func (t *idTable) rebuild(cut int64) {
	live := 0
	for _, s := range t.slots {
		if s.h != 0 && s.b > cut {
			live++
		}
	}
	n := len(t.slots)
	if n < 8 {
		n = 8
	}
	for (live+1)*2 > n {
		n *= 2
	}
	for n > 8 && (live+1)*8 < n {
		n /= 2
	}
	if n != len(t.slots) {
		old := t.slots
		t.slots = make([]idSlot, n)
		t.used = 0
		for _, s := range old {
			if s.h != 0 && s.b > cut {
				t.place(s)
			}
		}
		return
	}
	// Same size: rehash in place. Clear the expired slots, then re-place
	// every live slot, walking the table once starting after an empty
	// slot: a slot is re-placed at or before its current position, and
	// the slots before it on its probe path are already final.
	start := -1
	for i := range t.slots {
		if s := &t.slots[i]; s.h == 0 || s.b <= cut {
			*s = idSlot{}
			start = i
		}
	}
	t.used = 0
	mask := len(t.slots) - 1
	for k := 1; k <= len(t.slots); k++ {
		i := (start + k) & mask
		if s := t.slots[i]; s.h != 0 {
			t.slots[i] = idSlot{}
			t.place(s)
		}
	}
}

// place stores s in the first empty slot of its probe path.
func (t *idTable) place(s idSlot) {
	mask := uint64(len(t.slots) - 1)
	i := s.h & mask
	for t.slots[i].h != 0 {
		i = (i + 1) & mask
	}
	t.slots[i] = s
	t.used++
}

// len returns the number of live ids (bucket > cut).
func (t *idTable) live(cut int64) int {
	n := 0
	for _, s := range t.slots {
		if s.h != 0 && s.b > cut {
			n++
		}
	}
	return n
}
