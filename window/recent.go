package window

import (
	"encoding/binary"
	"maps"
	"strings"

	"github.com/squallhq/squall/event"
)

// pushRecent records an event the window received, with its outcome, in
// the recent ring of capacity n. The ring grows on demand up to n. Ids are
// copied into per-slot byte buffers that are reused, and tags are the
// window's shared immutable copies, so a full ring records an event without
// allocating. Outcomes are kept only once an event was not applied.
func (w *Window) pushRecent(n int, ts int64, v float64, id string, tags map[string]string, o Outcome) {
	var slot int
	x := w.x
	if len(w.ring) < n {
		if len(w.ring) == cap(w.ring) {
			need := len(w.ring) + 1
			nc := min(n, need+need/2)
			if cap(w.ring) == 0 {
				nc = 1
			}
			nr := allocCap[recentCore](nc)[:len(w.ring)]
			copy(nr, w.ring)
			w.ring = nr
		}
		slot = len(w.ring)
		w.ring = append(w.ring, recentCore{ts: ts, v: v})
		if x != nil {
			if x.rids != nil {
				x.rids = append(x.rids, 0)
			}
			if x.rhas&hasTags != 0 {
				x.rtags = append(x.rtags, nil)
			}
			if x.rhas&hasOutcomes != 0 {
				x.rout = append(x.rout, Applied)
			}
		}
	} else {
		slot = int(w.rnext)
		w.ring[slot] = recentCore{ts: ts, v: v}
		w.rnext++
		if int(w.rnext) >= len(w.ring) {
			w.rnext = 0
		}
	}
	if id != "" || (x != nil && x.rids != nil) {
		x = w.ext()
		if x.rids == nil {
			// Room for 8 events at first (ids come in runs), not grown
			// with every growth of the ring.
			x.rids = make([]idRef, len(w.ring), min(n, max(8, cap(w.ring))))
		}
		x.setRecentID(w, slot, id)
	}
	if tags != nil || (x != nil && x.rhas&hasTags != 0) {
		x = w.ext()
		if x.rhas&hasTags == 0 {
			x.rtags = make([]map[string]string, len(w.ring), cap(w.ring))
			x.rhas |= hasTags
		}
		x.rtags[slot] = tags
	}
	if o != Applied || (x != nil && x.rhas&hasOutcomes != 0) {
		x = w.ext()
		if x.rhas&hasOutcomes == 0 {
			x.rout = make([]Outcome, len(w.ring), cap(w.ring))
			x.rhas |= hasOutcomes
		}
		x.rout[slot] = o
	}
}

// idRef says where the id of a recent event is: 0 for no id; else its low
// byte is 1 + the length of the id's rest (what follows the prefix all
// recent ids share, extra.prefix()), and the rest is in its other 7 bytes
// when it fits there, else at offset ref>>32 of extra.rid.
type idRef uint64

// idInline is the longest rest an idRef holds itself.
const idInline = 7

// restLen returns the length of the rest of r, which is not 0.
func (r idRef) restLen() int { return int(uint8(r)) - 1 }

// inlineRef returns the idRef holding rest (≤ idInline bytes) itself.
func inlineRef[S string | []byte](rest S) idRef {
	var r uint64
	for i := len(rest) - 1; i >= 0; i-- {
		r = r<<8 | uint64(rest[i])
	}
	return idRef(r<<8 | uint64(len(rest)+1))
}

// appendRest appends the rest of r (not 0), kept inline or in buf.
func (r idRef) appendRest(dst, buf []byte) []byte {
	n := r.restLen()
	if n <= idInline {
		var b [8]byte
		binary.LittleEndian.PutUint64(b[:], uint64(r))
		return append(dst, b[1:1+n]...)
	}
	off := int(r >> 32)
	return append(dst, buf[off:off+n]...)
}

// hasRecentID reports whether the ring's slot i has an id.
func (x *extra) hasRecentID(i int) bool { return x.rids != nil && x.rids[i] != 0 }

// appendRecentID appends the id of the ring's slot i to dst.
func (x *extra) appendRecentID(dst []byte, i int) []byte {
	r := x.rids[i]
	if r == 0 {
		return dst
	}
	return r.appendRest(append(dst, x.prefix()...), x.rid)
}

// recentIDLen returns the length of the id of the ring's slot i.
func (x *extra) recentIDLen(i int) int {
	if r := x.rids[i]; r != 0 {
		return int(x.npre) + r.restLen()
	}
	return 0
}

// prefix returns the prefix all recent ids share.
func (x *extra) prefix() []byte { return x.rpre[:x.npre] }

// setRecentID makes id the id of the ring's slot, which is being
// overwritten.
//
// Ids from one client share a prefix (the Go client's are a random prefix
// and a sequence number), so the ring keeps, once, the longest prefix that
// all its ids share, up to idPrefixMax bytes, in the side structure itself
// (no cache line more to compare with), and per id only the rest: 1-4 bytes
// for the client's ids, held in the slot's own 8-byte idRef. The prefix
// only ever shortens (to what a new id shares with it), except that the
// first id after a ring with none sets it afresh; ids with nothing in
// common keep all their bytes.
//
// Rests longer than idInline are appended to one buffer, so that they cost
// one allocation for the whole ring; when it is full, the rests of the
// other slots are moved to its front, oldest first (they lie in ring
// order, so each moves down), and it grows (doubling) only when they take
// over half of it: in steady state setting an id allocates nothing and
// moves O(len(id)) bytes amortised. A shorter prefix rewrites the rests
// (into a new buffer if any must be spilled); with sequence numbers that
// happens when the number gains a digit.
func (x *extra) setRecentID(w *Window, slot int, id string) {
	x.rids[slot] = 0
	if id == "" {
		return
	}
	if pre := x.prefix(); !x.preSet || len(id) < len(pre) || id[:len(pre)] != string(pre) {
		if x.preSet && x.anyRecentID() {
			x.shortenRecentPrefix(w, id)
		} else {
			x.npre, x.preSet = uint8(copy(x.rpre[:], id)), true
		}
	}
	rest := id[x.npre:]
	if len(rest) <= idInline {
		x.rids[slot] = inlineRef(rest)
		return
	}
	if len(x.rid)+len(rest) > cap(x.rid) {
		x.compactRecentIDs(w, len(rest), nil)
	}
	x.rids[slot] = idRef(uint64(len(rest)+1) | uint64(len(x.rid))<<32)
	x.rid = append(x.rid, rest...)
}

// anyRecentID reports whether a slot of the ring has an id.
func (x *extra) anyRecentID() bool {
	for _, r := range x.rids {
		if r != 0 {
			return true
		}
	}
	return false
}

// shortenRecentPrefix cuts the prefix to what it shares with id, moving the
// cut bytes to the front of every rest.
func (x *extra) shortenRecentPrefix(w *Window, id string) {
	pre := x.prefix()
	n := 0
	for n < len(pre) && n < len(id) && pre[n] == id[n] {
		n++
	}
	var cut [idPrefixMax]byte
	x.compactRecentIDs(w, len(id)-n, cut[:copy(cut[:], pre[n:])])
	x.npre = uint8(n)
}

// compactRecentIDs moves the spilled rests of the ring's ids to the front
// of their buffer, oldest first, each preceded by head, leaving room for
// more bytes after them; the buffer is replaced by a larger one when they
// would take over half of it, and by a new one when head is not empty and
// some rests were spilled (the rests grow, so they cannot move down in
// place).
func (x *extra) compactRecentIDs(w *Window, more int, head []byte) {
	live, spilled := 0, false // bytes of the rests to spill; whether any was
	for _, r := range x.rids {
		if r != 0 && r.restLen() > idInline {
			spilled = true
		}
		if n := len(head) + r.restLen(); r != 0 && n > idInline {
			live += n
		}
	}
	if more > idInline {
		live += more
	}
	old := x.rid
	buf := old[:0]
	if live > 0 && (2*live > cap(old) || len(head) > 0 && spilled) {
		buf = allocCap[byte](max(2*live, 2*cap(old), 16*more))
	}
	n := len(w.ring)
	start := 0
	if n == w.shape.Recent {
		start = int(w.rnext) // the oldest, once the ring is full
	}
	var scratch [idPrefixMax + event.MaxIDBytes]byte
	for k := range n {
		i := (start + k) % n
		r := x.rids[i]
		if r == 0 || len(head) == 0 && r.restLen() <= idInline {
			continue
		}
		rest := r.appendRest(append(scratch[:0], head...), old)
		if len(rest) <= idInline {
			x.rids[i] = inlineRef(rest)
			continue
		}
		off := len(buf)
		buf = append(buf, rest...)
		x.rids[i] = idRef(uint64(len(rest)+1) | uint64(off)<<32)
	}
	x.rid = buf
}

// keepDropped records a late or duplicate event in the recent ring, so that
// the ring holds every event the window received, in order. Its tags are
// kept (shared with the last tag copy when equal) but do not become the
// window's tags.
func (w *Window) keepDropped(ts int64, ev *event.Event, o Outcome) {
	n := w.shape.Recent
	if n == 0 {
		return
	}
	var tags map[string]string
	if len(ev.Tags) > 0 {
		x := w.ext()
		if tags = x.tagsLast; tags == nil || !maps.Equal(tags, ev.Tags) {
			tags = cloneTags(ev.Tags)
		}
	}
	w.pushRecent(n, ts, ev.Value, ev.ID, tags, o)
}

// noteTags records the tags of an applied event with time ts and returns
// the window's immutable copy of them. Consecutive events with equal tags
// share one copy, so repeating tags cost no allocation.
func (w *Window) noteTags(ts int64, tags map[string]string) map[string]string {
	x := w.ext()
	m := x.tagsLast
	if m == nil || !maps.Equal(m, tags) {
		m = cloneTags(tags)
		x.tagsLast = m
	}
	if x.tags == nil || ts >= x.tagsTS {
		x.tags, x.tagsTS = m, ts
	}
	return m
}

// cloneTags deep-copies tags, so that no string aliases the caller's buffer.
func cloneTags(tags map[string]string) map[string]string {
	m := make(map[string]string, len(tags))
	for k, v := range tags {
		m[strings.Clone(k)] = strings.Clone(v)
	}
	return m
}

// Received is one event a window received, with what Add did with it.
type Received struct {
	event.Event
	Outcome Outcome
}

// Received returns the last Shape.Recent events the window received —
// applied, late and duplicate — oldest (earliest received) first, with
// their ids, tags and outcomes: what a replay of the key needs. ts is as Add
// clamped it. The events are copies the caller may keep and modify. Key is
// left empty: a Window does not know its key.
//
// When the window has received no more than Shape.Recent events in all
// (applied + late + duplicates of Counts equals the length returned), they
// are every event behind its state, and applying them in order to a new
// window of the same shape rebuilds it exactly.
func (w *Window) Received() []Received {
	n := len(w.ring)
	if n == 0 {
		return nil
	}
	out := make([]Received, 0, n)
	start := int(w.rnext) // 0 until the ring is full
	for k := 0; k < n; k++ {
		out = append(out, w.received((start+k)%n))
	}
	return out
}

// received returns the ring's slot i.
func (w *Window) received(i int) Received {
	e := Received{Event: event.Event{TS: w.ring[i].ts, Value: w.ring[i].v}}
	if x := w.x; x != nil {
		if x.hasRecentID(i) {
			e.ID = string(x.appendRecentID(make([]byte, 0, x.recentIDLen(i)), i))
		}
		if x.rtags != nil && x.rtags[i] != nil {
			e.Tags = maps.Clone(x.rtags[i])
		}
		if x.rout != nil {
			e.Outcome = x.rout[i]
		}
	}
	return e
}

// Recent returns the applied events among the last Shape.Recent events the
// window received (see Received), oldest (earliest applied) first. The
// events are copies the caller may keep and modify. Key is left empty: a
// Window does not know its key.
func (w *Window) Recent() []event.Event {
	n := len(w.ring)
	if n == 0 {
		return nil
	}
	out := make([]event.Event, 0, n)
	start := int(w.rnext) // 0 until the ring is full
	for k := 0; k < n; k++ {
		i := (start + k) % n
		if x := w.x; x != nil && x.rout != nil && x.rout[i] != Applied {
			continue
		}
		out = append(out, w.received(i).Event)
	}
	return out
}

// Tags returns the tags of the applied event with the greatest time among
// those that carried tags (ties: the latest applied), or nil when no
// applied event had tags. When the Last event has tags, they are its tags.
// Tags are kept for the window's lifetime, not evicted with buckets.
//
// The map is shared with the window and must not be modified.
func (w *Window) Tags() map[string]string {
	if w.x == nil {
		return nil
	}
	return w.x.tags
}
