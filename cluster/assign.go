package cluster

import (
	"cmp"
	"slices"
)

// Assign returns the owner of each of n partitions: a slice of n member ids,
// all "" when there is no member. It is pure and deterministic: the same
// inputs give the same result whatever the order of members, and it neither
// keeps nor changes its arguments. It is safe for concurrent use.
//
// prev[i] is the previous owner of partition i, or "" for none. prev may be
// empty (a first assignment) or hold n owners; entries past n are ignored and
// missing ones count as "". members are the live members' ids, in any order;
// duplicates and "" are ignored. A member in leaving is live but gives up all
// its partitions (a graceful leave), unless every member is leaving, in which
// case they all stay eligible. Ids in leaving that are not members are
// ignored.
//
// The result is:
//   - balanced: with k eligible members, q = n/k and r = n%k, r of them own
//     q+1 partitions and the others q;
//   - sticky and minimal: the q+1 quotas go to the members that own the most
//     already (ties to the smaller id), and a partition keeps its previous
//     owner when that owner is eligible and within its quota (an owner over
//     quota keeps its lowest-numbered partitions). So a join or a leave moves
//     only the partitions it must: those of owners gone or leaving, or beyond
//     an owner's quota.
//
// The partitions that must move are given, in partition order, each to the
// member furthest below its quota (ties to the smaller id).
func Assign(n int, prev []string, members []string, leaving map[string]bool) []string {
	if n <= 0 {
		return []string{}
	}
	next := make([]string, n)
	elig := eligible(members, leaving)
	k := len(elig)
	if k == 0 {
		return next
	}

	// Index the eligible members and count what each owns already.
	type slot struct {
		id    string
		owned int // partitions of prev it owns
		quota int // partitions it gets
		count int // partitions of next given to it so far
	}
	slots := make([]slot, k)
	index := make(map[string]int, k)
	for i, id := range elig {
		slots[i].id = id
		index[id] = i
	}
	prev = prev[:min(len(prev), n)]
	for _, o := range prev {
		if i, ok := index[o]; ok {
			slots[i].owned++
		}
	}

	// The r larger quotas go to the members that own the most, so that the
	// fewest partitions exceed a quota.
	q, r := n/k, n%k
	byOwned := make([]int, k)
	for i := range byOwned {
		byOwned[i] = i
	}
	slices.SortFunc(byOwned, func(a, b int) int {
		if c := cmp.Compare(slots[b].owned, slots[a].owned); c != 0 {
			return c
		}
		return cmp.Compare(slots[a].id, slots[b].id) // elig is sorted: ids differ
	})
	for rank, i := range byOwned {
		slots[i].quota = q
		if rank < r {
			slots[i].quota++
		}
	}

	// Keep what may be kept.
	orphans := n
	for p, o := range prev {
		if i, ok := index[o]; ok && slots[i].count < slots[i].quota {
			next[p] = o
			slots[i].count++
			orphans--
		}
	}

	// Give each orphan, in partition order, to the member furthest below its
	// quota, ties to the smaller id (slots are in id order).
	for p := 0; orphans > 0; p++ {
		if next[p] != "" {
			continue
		}
		best, gap := -1, 0
		for i := range slots {
			if g := slots[i].quota - slots[i].count; g > gap {
				best, gap = i, g
			}
		}
		next[p] = slots[best].id
		slots[best].count++
		orphans--
	}
	return next
}

// eligible returns the sorted, distinct, non-empty ids of members that may own
// partitions: those not leaving or, when all are leaving, all of them.
func eligible(members []string, leaving map[string]bool) []string {
	all := make([]string, 0, len(members))
	for _, m := range members {
		if m != "" {
			all = append(all, m)
		}
	}
	slices.Sort(all)
	all = slices.Compact(all)
	staying := make([]string, 0, len(all))
	for _, m := range all {
		if !leaving[m] {
			staying = append(staying, m)
		}
	}
	if len(staying) == 0 {
		return all
	}
	return staying
}

// Moves returns the partitions whose owner changed from prev to next, each
// mapped to its previous owner, for a handoff from it. Partitions without a
// previous owner ("") are left out; a partition past the end of next counts as
// owned by none. The result is never nil. It is safe for concurrent use.
func Moves(prev, next []string) map[int32]string {
	moves := make(map[int32]string)
	for p, from := range prev {
		if from == "" {
			continue
		}
		to := ""
		if p < len(next) {
			to = next[p]
		}
		if to != from {
			moves[int32(p)] = from
		}
	}
	return moves
}
