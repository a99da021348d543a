package output

// holdIndex answers Hold: per partition, the smallest offset among its
// buffered alerts (those with Offset >= 0 that some sink has not
// delivered).
//
// It is indexed by buffer slot, so it never allocates after New (except one
// small list head per partition ever seen) and its size is fixed by Buffer.
// Each partition has a monotonic queue (sliding-window minimum), kept as a
// doubly linked list through the slots of its alerts: in seq order, with
// strictly increasing offsets. Pushing an alert first unlinks the alerts at
// the back with an offset >= its own: each is delivered before it (the
// buffer is delivered in seq order) and is no smaller, so it can never be
// the minimum again. Delivery unlinks alerts from the front. The front is
// thus the minimum. In normal operation (offsets non-decreasing) only
// alerts of the same record are unlinked at the back; out-of-order offsets
// need no scan. Every operation is O(1) amortised.
type holdIndex struct {
	next, prev []int32 // list links per slot; -1 ends a list
	in         []bool  // slot is linked in its partition's list
	part       []int32 // partition of the alert in the slot
	off        []int64 // offset of the alert in the slot
	lists      map[int32]*holdList
}

// holdList is one partition's list: its first and last slots, -1 if empty.
type holdList struct{ head, tail int32 }

func newHoldIndex(size int) *holdIndex {
	return &holdIndex{
		next:  make([]int32, size),
		prev:  make([]int32, size),
		in:    make([]bool, size),
		part:  make([]int32, size),
		off:   make([]int64, size),
		lists: make(map[int32]*holdList),
	}
}

// push links the alert in slot, of partition p with offset off >= 0. Its
// seq must be larger than that of every alert linked in p.
func (h *holdIndex) push(slot, p int32, off int64) {
	l := h.lists[p]
	if l == nil {
		l = &holdList{head: -1, tail: -1}
		h.lists[p] = l
	}
	for l.tail >= 0 && h.off[l.tail] >= off {
		t := l.tail
		h.in[t] = false
		l.tail = h.prev[t]
		if l.tail >= 0 {
			h.next[l.tail] = -1
		} else {
			l.head = -1
		}
	}
	h.part[slot], h.off[slot], h.in[slot] = p, off, true
	h.prev[slot], h.next[slot] = l.tail, -1
	if l.tail >= 0 {
		h.next[l.tail] = slot
	} else {
		l.head = slot
	}
	l.tail = slot
}

// delivered unlinks the alert in slot, delivered by every sink, if it is
// linked. Slots must be delivered in seq order: a linked slot is then the
// head of its list.
func (h *holdIndex) delivered(slot int32) {
	if !h.in[slot] {
		return
	}
	h.in[slot] = false
	l := h.lists[h.part[slot]]
	l.head = h.next[slot]
	if l.head >= 0 {
		h.prev[l.head] = -1
	} else {
		l.tail = -1
	}
}

// min returns the smallest offset linked for p, false if none.
func (h *holdIndex) min(p int32) (int64, bool) {
	l := h.lists[p]
	if l == nil || l.head < 0 {
		return 0, false
	}
	return h.off[l.head], true
}
