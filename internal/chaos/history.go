package chaos

import (
	"fmt"
	"sort"
	"time"
)

// Kinds of Violation.
const (
	// TwoLeaders: two nodes said they were the acting leader with the same
	// epoch.
	TwoLeaders = "two-leaders"
	// StaleLeader: a node said it was the acting leader with an epoch older
	// than one already reported when its poll was sent.
	StaleLeader = "stale-leader"
	// TwoOwners: two nodes said they served a partition under the same
	// grant.
	TwoOwners = "two-owners"
	// StaleOwner: a node said it served a partition under a grant older
	// than one already reported served when its poll was sent.
	StaleOwner = "stale-owner"
)

// Violation is a breach of the leader or owner invariants, proven by two
// observations.
type Violation struct {
	Kind      string    `json:"kind"`
	Partition int32     `json:"partition"` // -1 for leader violations
	At        time.Time `json:"at"`        // when the later observation was answered
	Detail    string    `json:"detail"`
	// Count is how many pairs of observations proved the same violation
	// (same kind, partition, nodes and tokens); At and Detail are the first.
	Count int `json:"count"`
}

// CheckHistory returns the leader and owner violations that obs prove.
// It is sound under polling skew: an observation's answer held at some
// instant between its request's send and its answer, so
//
//   - two nodes reporting the same epoch as acting leader, or serving the
//     same partition under the same grant, are a violation whenever the
//     reports were made: an epoch and a grant name one node;
//   - an epoch e2 reported in an answer that came at r2 proves that a
//     leader of epoch e2 existed before r2; a node reporting itself acting
//     leader with an older epoch in a request sent after r2 acts on a
//     superseded epoch. Likewise a grant reported served at r2 and an older
//     grant of the partition reported served by a request sent after r2.
//
// Without per-partition tokens (Obs.Exact false), the grant is known only
// as the assignment generation, and only for partitions the node's view
// assigns to it; the older-grant rule then counts only serves whose source
// applies records (replaying or live), because an older node reports a
// partition it awaits a handoff for as served before it applies anything.
func CheckHistory(obs []Obs) []Violation {
	var out violations
	checkLeaders(obs, &out)
	checkOwners(obs, &out)
	return out.list()
}

type violations struct {
	byKey map[string]*Violation
	order []string
}

func (v *violations) add(key string, nv Violation) {
	if v.byKey == nil {
		v.byKey = map[string]*Violation{}
	}
	if old, ok := v.byKey[key]; ok {
		old.Count++
		return
	}
	nv.Count = 1
	v.byKey[key] = &nv
	v.order = append(v.order, key)
}

func (v *violations) list() []Violation {
	out := make([]Violation, 0, len(v.order))
	for _, k := range v.order {
		out = append(out, *v.byKey[k])
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].At.Before(out[j].At) })
	return out
}

// report is one claim made by one observation: "node held x at some
// instant in [sent, answered]".
type report struct {
	node           string
	sent, answered time.Time
	tok            Token
}

func (r report) String() string {
	return fmt.Sprintf("%s %s (sent %s, answered %s)", r.node, r.tok, clock(r.sent), clock(r.answered))
}

func clock(t time.Time) string { return t.Format("15:04:05.000") }

func checkLeaders(obs []Obs, out *violations) {
	var acting, evidence []report
	for i := range obs {
		o := &obs[i]
		if o.Err != "" || o.Epoch <= 0 {
			continue
		}
		r := report{node: o.Node, sent: o.Sent, answered: o.Answered, tok: Token{Epoch: o.Epoch}}
		// Any epoch in a view proves its leader existed: the acting
		// leader's own, or the epoch of the assignment it wrote.
		evidence = append(evidence, r)
		if o.ActingLeader() {
			acting = append(acting, r)
		}
	}
	// Same epoch, two nodes.
	first := map[int64]report{}
	for _, a := range acting {
		f, ok := first[a.tok.Epoch]
		if !ok {
			first[a.tok.Epoch] = a
			continue
		}
		if f.node != a.node {
			out.add(fmt.Sprintf("%s/%d/%s/%s", TwoLeaders, a.tok.Epoch, f.node, a.node), Violation{
				Kind: TwoLeaders, Partition: -1, At: later(f, a),
				Detail: fmt.Sprintf("epoch %d acting on two nodes: %v and %v", a.tok.Epoch, f, a)})
		}
	}
	// Older epoch acting after a newer one was reported.
	for _, v := range staleAfter(acting, evidence, true) {
		out.add(fmt.Sprintf("%s/%d/%s/%d", StaleLeader, v.old.tok.Epoch, v.old.node, v.newer.tok.Epoch), Violation{
			Kind: StaleLeader, Partition: -1, At: v.old.answered,
			Detail: fmt.Sprintf("%s acts as leader with epoch %d in a poll sent after epoch %d was reported: %v, after %v",
				v.old.node, v.old.tok.Epoch, v.newer.tok.Epoch, v.old, v.newer)})
	}
}

func checkOwners(obs []Obs, out *violations) {
	granted := map[int32][]report{}  // serves whose token is the grant's
	applying := map[int32][]report{} // evidence for the older-grant rule
	bounded := map[int32][]report{}  // serves under a grant older than tok, applying
	for i := range obs {
		o := &obs[i]
		if o.Err != "" {
			continue
		}
		for _, s := range o.Serves {
			r := report{node: o.Node, sent: o.Sent, answered: o.Answered, tok: s.Token}
			switch {
			case s.Granted:
				granted[s.Partition] = append(granted[s.Partition], r)
				if o.Exact || s.Applying {
					applying[s.Partition] = append(applying[s.Partition], r)
				}
			case s.Applying:
				// Served under a grant older than the view's generation.
				bounded[s.Partition] = append(bounded[s.Partition], r)
			}
		}
	}
	for p, rs := range granted {
		first := map[Token]report{}
		for _, r := range rs {
			f, ok := first[r.tok]
			if !ok {
				first[r.tok] = r
				continue
			}
			if f.node != r.node {
				out.add(fmt.Sprintf("%s/%d/%s/%s/%s", TwoOwners, p, r.tok, f.node, r.node), Violation{
					Kind: TwoOwners, Partition: p, At: later(f, r),
					Detail: fmt.Sprintf("partition %d served under grant %s on two nodes: %v and %v", p, r.tok, f, r)})
			}
		}
	}
	for p, ev := range applying {
		stale := staleAfter(ev, ev, true)
		// A serve under an older grant than the view's generation G is
		// stale once any grant of generation G or newer was reported.
		stale = append(stale, staleAfter(bounded[p], ev, false)...)
		for _, v := range stale {
			out.add(fmt.Sprintf("%s/%d/%s/%s/%s", StaleOwner, p, v.old.node, v.old.tok, v.newer.tok), Violation{
				Kind: StaleOwner, Partition: p, At: v.old.answered,
				Detail: fmt.Sprintf("partition %d served by %s under grant %s%s in a poll sent after grant %s was reported served: %v, after %v",
					p, v.old.node, olderThan(v.old, bounded[p]), v.old.tok, v.newer.tok, v.old, v.newer)})
		}
	}
}

// olderThan returns "older than " when r is one of the bounded serves.
func olderThan(r report, bounded []report) string {
	for _, b := range bounded {
		if b == r {
			return "older than "
		}
	}
	return ""
}

func later(a, b report) time.Time {
	if a.answered.After(b.answered) {
		return a.answered
	}
	return b.answered
}

type staleness struct{ old, newer report }

// staleAfter returns each claim c of claims for which evidence answered
// before c was sent holds a newer token: newer than c.tok when strict,
// newer than or equal to it otherwise (c then stands for a grant older
// than c.tok). Each comes with the newest such evidence.
func staleAfter(claims, evidence []report, strict bool) []staleness {
	ev := append([]report(nil), evidence...)
	sort.Slice(ev, func(i, j int) bool { return ev[i].answered.Before(ev[j].answered) })
	cl := append([]report(nil), claims...)
	sort.Slice(cl, func(i, j int) bool { return cl[i].sent.Before(cl[j].sent) })
	var out []staleness
	var best report
	have := false
	j := 0
	for _, c := range cl {
		for j < len(ev) && ev[j].answered.Before(c.sent) {
			if !have || best.tok.Less(ev[j].tok) {
				best, have = ev[j], true
			}
			j++
		}
		if have && (c.tok.Less(best.tok) || (!strict && c.tok == best.tok)) {
			out = append(out, staleness{old: c, newer: best})
		}
	}
	return out
}

// Recovered returns when, after from, every partition was served again:
// the first answer at or after from such that, taking each node up at that
// moment (tl) by its newest answer sent since both from and its last start
// or resume, every partition is served by one of them with its source
// live. ok is false when that did not happen before until.
func Recovered(obs []Obs, tl []Transition, partitions int32, from, until time.Time) (at time.Time, ok bool) {
	i := sort.Search(len(obs), func(i int) bool { return !obs[i].Answered.Before(from) })
	state := map[string]NodeState{}
	upSince := map[string]time.Time{}
	latest := map[string]*Obs{}
	k := 0
	for ; i < len(obs) && !obs[i].Answered.After(until); i++ {
		o := &obs[i]
		now := o.Answered
		for ; k < len(tl) && !tl[k].At.After(now); k++ {
			state[tl[k].Node] = tl[k].State
			if tl[k].State == Up {
				upSince[tl[k].Node] = tl[k].At
			}
		}
		if o.Err == "" && !o.Sent.Before(from) {
			latest[o.Node] = o
		}
		if covered(state, upSince, latest, partitions) {
			return now, true
		}
	}
	return time.Time{}, false
}

func covered(state map[string]NodeState, upSince map[string]time.Time, latest map[string]*Obs, partitions int32) bool {
	served := make([]bool, partitions)
	up := 0
	for node, s := range state {
		if s != Up {
			continue
		}
		up++
		o := latest[node]
		if o == nil || o.Sent.Before(upSince[node]) {
			return false
		}
		for _, sv := range o.Serves {
			if sv.Partition >= 0 && sv.Partition < partitions && o.Sources[sv.Partition].State == SourceLive {
				served[sv.Partition] = true
			}
		}
	}
	if up == 0 {
		return false
	}
	for _, s := range served {
		if !s {
			return false
		}
	}
	return true
}
