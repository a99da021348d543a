package window

import (
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
				x.rids = append(x.rids, idRef{})
			}
			if x.rtags != nil {
				x.rtags = append(x.rtags, nil)
			}
			if x.rout != nil {
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
	if tags != nil || (x != nil && x.rtags != nil) {
		x = w.ext()
		if x.rtags == nil {
			x.rtags = make([]map[string]string, len(w.ring), cap(w.ring))
		}
		x.rtags[slot] = tags
	}
	if o != Applied || (x != nil && x.rout != nil) {
		x = w.ext()
		if x.rout == nil {
			x.rout = make([]Outcome, len(w.ring), cap(w.ring))
		}
		x.rout[slot] = o
	}
}

// idRef is where the id of a recent event is in extra.rid.
type idRef struct{ off, n uint32 }

// recentID returns the id of the ring's slot i (shared, not a copy).
func (x *extra) recentID(i int) []byte {
	r := x.rids[i]
	return x.rid[r.off : r.off+r.n]
}

// setRecentID makes id the id of the ring's slot, which is being
// overwritten. Ids are appended to one buffer, so that the ids of the
// whole ring cost one allocation; when it is full, the ids of the other
// slots are moved to its front, oldest first (they lie in ring order, so
// each moves down), and it grows (by half, to room for 8 ids at first)
// only when they take over half of it: in steady state setting an id
// allocates nothing and moves O(len(id)) bytes amortised.
func (x *extra) setRecentID(w *Window, slot int, id string) {
	x.rids[slot] = idRef{}
	if id == "" {
		return
	}
	if len(x.rid)+len(id) > cap(x.rid) {
		live := len(id)
		for _, r := range x.rids {
			live += int(r.n)
		}
		buf := x.rid[:0]
		if 2*live > cap(x.rid) {
			buf = allocCap[byte](max(2*live, cap(x.rid)*3/2, 8*len(id)))
		}
		n := len(w.ring)
		start := 0
		if n == w.shape.Recent {
			start = int(w.rnext) // the oldest, once the ring is full
		}
		for k := range n {
			i := (start + k) % n
			r := &x.rids[i]
			if r.n == 0 {
				continue
			}
			off := len(buf)
			buf = append(buf, x.rid[r.off:r.off+r.n]...)
			r.off = uint32(off)
		}
		x.rid = buf
	}
	x.rids[slot] = idRef{off: uint32(len(x.rid)), n: uint32(len(id))}
	x.rid = append(x.rid, id...)
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
		if x.rids != nil && x.rids[i].n > 0 {
			e.ID = string(x.recentID(i))
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
