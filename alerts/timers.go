package alerts

import (
	"container/heap"
	"time"

	"github.com/squallhq/squall/actors"
	"github.com/squallhq/squall/rules"
)

// timers is one partition's timer heap for absent rules, in the
// partition's actors.PartitionView.State: only its goroutine touches it.
//
// A key has at most one entry, due at the earliest deadline
// (lastSeen+absent) of its absent rules that are not firing. Events only
// move the key's lastSeen; the entry is not touched. When it comes due, the
// rules whose deadline has passed fire and the entry is pushed again for
// the next deadline, if any: one heap operation per key per absent period,
// none per event. An entry is 16 bytes.
type timers []timer

type timer struct {
	due int64 // wall ms
	k   *actors.Key
}

func (t timers) Len() int           { return len(t) }
func (t timers) Less(i, j int) bool { return t[i].due < t[j].due }
func (t timers) Swap(i, j int)      { t[i], t[j] = t[j], t[i] }
func (t *timers) Push(x any)        { *t = append(*t, x.(timer)) }
func (t *timers) Pop() any {
	old := *t
	x := old[len(old)-1]
	old[len(old)-1] = timer{}
	*t = old[:len(old)-1]
	return x
}

func timersOf(state *any) *timers {
	t, _ := (*state).(*timers)
	if t == nil {
		t = new(timers)
		*state = t
	}
	return t
}

// nextDeadline returns the earliest deadline of ks's absent rules that are
// not firing, or 0.
func nextDeadline(ks *keyState) int64 {
	var next int64
	for i, r := range ks.rules {
		if !r.IsAbsent() || ks.states[i].Phase() == rules.FiringPhase {
			continue
		}
		if d := ks.lastSeen + r.Absent.Milliseconds(); next == 0 || d < next {
			next = d
		}
	}
	return next
}

// arm pushes k's entry for its next deadline, if it has one.
func (h *Handler) arm(k *actors.Key, ks *keyState) {
	ks.deadline = nextDeadline(ks)
	if ks.deadline != 0 {
		heap.Push(timersOf(k.PartitionState()), timer{due: ks.deadline, k: k})
	}
}

// Tick implements actors.StatefulHandler: it fires the absent rules whose
// deadline has passed on partition p and re-arms their keys.
func (h *Handler) Tick(p actors.PartitionView, now time.Time) {
	t := timersOf(p.State())
	ms := now.UnixMilli()
	for len(*t) > 0 && (*t)[0].due <= ms {
		e := heap.Pop(t).(timer)
		if p.Key(e.k.Name()) != e.k {
			continue // passivated or handed off since
		}
		ks := h.state(e.k)
		if ks == nil || ks.deadline != e.due {
			continue // rules reloaded: re-armed, or no absent rule left
		}
		for i, r := range ks.rules {
			if tr, ok := r.EvalAbsent(&ks.states[i], e.k.Name(), ks.lastSeen, ms); ok {
				h.transition(e.k, r, &tr)
			}
		}
		h.arm(e.k, ks)
	}
}
