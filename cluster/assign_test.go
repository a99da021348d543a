package cluster

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"testing"
)

// owners returns how many partitions each owner in next has.
func owners(next []string) map[string]int {
	c := map[string]int{}
	for _, o := range next {
		c[o]++
	}
	return c
}

// at returns prev[p], or "" past its end.
func at(prev []string, p int) string {
	if p < len(prev) {
		return prev[p]
	}
	return ""
}

// changed counts the partitions whose owner differs between prev and next.
func changed(prev, next []string) int {
	c := 0
	for p, o := range next {
		if at(prev, p) != o {
			c++
		}
	}
	return c
}

// wantEligible is the eligible set, computed independently of Assign.
func wantEligible(members []string, leaving map[string]bool) map[string]bool {
	all, staying := map[string]bool{}, map[string]bool{}
	for _, m := range members {
		if m == "" {
			continue
		}
		all[m] = true
		if !leaving[m] {
			staying[m] = true
		}
	}
	if len(staying) == 0 {
		return all
	}
	return staying
}

// minMoves is the fewest partitions any balanced assignment must change: every
// partition not owned by an eligible member, plus each eligible member's
// excess over its quota, with the r quotas of q+1 placed at best. It finds the
// best placement by dynamic programming, independently of Assign's greedy
// choice.
func minMoves(n int, prev []string, elig map[string]bool) int {
	if len(elig) == 0 {
		return 0
	}
	owned := map[string]int{}
	orphans := 0
	for p := range n {
		if o := at(prev, p); elig[o] {
			owned[o]++
		} else {
			orphans++
		}
	}
	k := len(elig)
	q, r := n/k, n%k
	const inf = 1 << 30
	best := make([]int, r+1) // best[j]: least excess with j quotas of q+1 given
	for j := 1; j <= r; j++ {
		best[j] = inf
	}
	for m := range elig {
		c := owned[m]
		for j := r; j >= 0; j-- {
			small := best[j] + max(0, c-q)
			if j > 0 && best[j-1] < inf {
				small = min(small, best[j-1]+max(0, c-q-1))
			}
			best[j] = small
		}
	}
	return orphans + best[r]
}

// checkAssign checks every property Assign promises for one input and returns
// its result.
func checkAssign(t testing.TB, n int, prev, members []string, leaving map[string]bool) []string {
	t.Helper()
	prevCopy, membersCopy, leavingCopy := slices.Clone(prev), slices.Clone(members), maps.Clone(leaving)
	next := Assign(n, prev, members, leaving)
	if !slices.Equal(prev, prevCopy) || !slices.Equal(members, membersCopy) || !maps.Equal(leaving, leavingCopy) {
		t.Fatalf("Assign changed its arguments")
	}
	if len(next) != max(n, 0) {
		t.Fatalf("len = %d, want %d", len(next), n)
	}
	elig := wantEligible(members, leaving)
	if len(elig) == 0 {
		for p, o := range next {
			if o != "" {
				t.Fatalf("no members, yet partition %d owned by %q", p, o)
			}
		}
		return next
	}

	// Balanced.
	count := owners(next)
	k := len(elig)
	q, r := n/k, n%k
	for o := range count {
		if !elig[o] {
			t.Fatalf("owner %q is not eligible (%v)", o, elig)
		}
	}
	big := 0
	for m := range elig {
		switch c := count[m]; c {
		case q + 1:
			big++
		case q:
		default:
			t.Fatalf("%q owns %d partitions, want %d or %d: %v", m, c, q, q+1, count)
		}
	}
	if big != r {
		t.Fatalf("%d members own q+1=%d, want %d: %v", big, q+1, r, count)
	}

	// Sticky: each eligible member keeps as many of its partitions as its
	// new share allows.
	owned, kept := map[string]int{}, map[string]int{}
	for p := range n {
		o := at(prev, p)
		owned[o]++
		if next[p] == o {
			kept[o]++
		}
	}
	for m := range elig {
		if want := min(owned[m], count[m]); kept[m] != want {
			t.Fatalf("%q kept %d of its %d partitions, now owns %d: want it to keep %d", m, kept[m], owned[m], count[m], want)
		}
	}

	// Minimal.
	if got, want := changed(prev, next), minMoves(n, prev, elig); got != want {
		t.Fatalf("%d partitions changed owner, the minimum is %d", got, want)
	}

	// Moves lists exactly the partitions taken from an owner.
	moves := Moves(prev, next)
	for p := range n {
		from, ok := moves[int32(p)]
		if wantMove := at(prev, p) != "" && at(prev, p) != next[p]; ok != wantMove || (ok && from != prev[p]) {
			t.Fatalf("Moves[%d] = %q, %v; prev %q next %q", p, from, ok, at(prev, p), next[p])
		}
	}

	// Idempotent, and independent of member order.
	if again := Assign(n, next, members, leaving); !slices.Equal(again, next) {
		t.Fatalf("Assign of its own result moved partitions:\n%v\n%v", next, again)
	}
	shuffled := slices.Clone(members)
	slices.Reverse(shuffled)
	if other := Assign(n, prev, shuffled, leaving); !slices.Equal(other, next) {
		t.Fatalf("result depends on member order:\n%v\n%v", next, other)
	}
	return next
}

// movedTo counts the moves whose new owner is each member.
func movedTo(moves map[int32]string, next []string) map[string]int {
	c := map[string]int{}
	for p := range moves {
		c[next[p]]++
	}
	return c
}

func TestAssignFirst(t *testing.T) {
	next := checkAssign(t, 64, nil, []string{"c", "a", "b"}, nil)
	if got, want := owners(next), map[string]int{"a": 22, "b": 21, "c": 21}; !maps.Equal(got, want) {
		t.Fatalf("owners = %v, want %v", got, want)
	}
	if m := Moves(nil, next); len(m) != 0 {
		t.Fatalf("Moves from nothing = %v, want none", m)
	}
	// The tie rules, spelled out: quotas to the smaller ids, each partition
	// to the member furthest below quota.
	if got, want := Assign(5, nil, []string{"b", "c", "a"}, nil), []string{"a", "b", "a", "b", "c"}; !slices.Equal(got, want) {
		t.Fatalf("Assign(5) = %v, want %v", got, want)
	}
}

func TestAssignJoin(t *testing.T) {
	three := checkAssign(t, 64, nil, []string{"a", "b", "c"}, nil) // 22, 21, 21
	four := checkAssign(t, 64, three, []string{"a", "b", "c", "d"}, nil)
	moves := Moves(three, four)
	// The minimum: (22-16) + (21-16) + (21-16).
	if len(moves) != 16 {
		t.Fatalf("%d moves, want 16: %v", len(moves), moves)
	}
	if got := movedTo(moves, four); !maps.Equal(got, map[string]int{"d": 16}) {
		t.Fatalf("moves went to %v, want all to d", got)
	}
	if got := owners(four); !maps.Equal(got, map[string]int{"a": 16, "b": 16, "c": 16, "d": 16}) {
		t.Fatalf("owners = %v", got)
	}
}

func TestAssignLeave(t *testing.T) {
	members := []string{"a", "b", "c", "d"}
	four := checkAssign(t, 64, nil, members, nil)
	for name, tc := range map[string]struct {
		members []string
		leaving map[string]bool
	}{
		"graceful": {members, map[string]bool{"c": true}},
		"crash":    {[]string{"a", "b", "d"}, nil},
	} {
		t.Run(name, func(t *testing.T) {
			three := checkAssign(t, 64, four, tc.members, tc.leaving)
			moves := Moves(four, three)
			if len(moves) != 16 {
				t.Fatalf("%d moves, want c's 16", len(moves))
			}
			for p, from := range moves {
				if from != "c" {
					t.Fatalf("partition %d moved from %q, want only c's to move", p, from)
				}
			}
			if got := owners(three); !maps.Equal(got, map[string]int{"a": 22, "b": 21, "d": 21}) {
				t.Fatalf("owners = %v", got)
			}
		})
	}
}

func TestAssignCases(t *testing.T) {
	all := func(n int, o string) []string {
		s := make([]string, n)
		for i := range s {
			s[i] = o
		}
		return s
	}
	for _, tc := range []struct {
		name    string
		n       int
		prev    []string
		members []string
		leaving map[string]bool
		want    []string // nil: only the properties are checked
	}{
		{name: "no members", n: 4, prev: all(4, "a"), want: all(4, "")},
		{name: "no partitions", n: 0, members: []string{"a"}, want: []string{}},
		{name: "only member leaving keeps all", n: 8, prev: all(8, "a"), members: []string{"a"},
			leaving: map[string]bool{"a": true}, want: all(8, "a")},
		{name: "all leaving stay eligible", n: 4, prev: []string{"a", "a", "b", "b"}, members: []string{"a", "b"},
			leaving: map[string]bool{"a": true, "b": true}, want: []string{"a", "a", "b", "b"}},
		{name: "leaving to the one staying", n: 4, prev: []string{"a", "b", "a", "b"}, members: []string{"a", "b"},
			leaving: map[string]bool{"a": true}, want: all(4, "b")},
		{name: "unknown and empty owners are orphans", n: 6, prev: []string{"x", "", "a", "x", "a", "a"},
			members: []string{"a", "b"}, want: []string{"b", "b", "a", "b", "a", "a"}},
		{name: "over quota keeps its first", n: 4, prev: all(4, "a"), members: []string{"b", "a"},
			want: []string{"a", "a", "b", "b"}},
		{name: "larger quota to the larger owner", n: 5, prev: []string{"b", "b", "b", "a", "c"},
			members: []string{"a", "b", "c"}, want: []string{"b", "b", "a", "a", "c"}},
		{name: "duplicates and empty ids ignored", n: 3, members: []string{"a", "", "a"}, want: all(3, "a")},
		{name: "short prev", n: 4, prev: []string{"b"}, members: []string{"a", "b"}, want: []string{"b", "a", "a", "b"}},
		{name: "long prev", n: 2, prev: []string{"a", "a", "b", "b"}, members: []string{"a", "b"}, want: []string{"a", "b"}},
		{name: "fewer partitions than members", n: 2, prev: []string{"c", ""}, members: []string{"a", "b", "c"},
			want: []string{"c", "a"}},
		{name: "leaving non-member ignored", n: 2, members: []string{"a"}, leaving: map[string]bool{"z": true},
			want: all(2, "a")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := checkAssign(t, tc.n, tc.prev, tc.members, tc.leaving)
			if tc.want != nil && !slices.Equal(got, tc.want) {
				t.Fatalf("Assign = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestMoves(t *testing.T) {
	got := Moves([]string{"a", "", "b", "c", "d"}, []string{"a", "b", "c", ""})
	want := map[int32]string{2: "b", 3: "c", 4: "d"}
	if !maps.Equal(got, want) {
		t.Fatalf("Moves = %v, want %v", got, want)
	}
	if got := Moves(nil, nil); got == nil || len(got) != 0 {
		t.Fatalf("Moves(nil, nil) = %#v, want empty", got)
	}
}

// TestAssignProperties checks Assign's promises over many random inputs,
// including chains of changes fed back as prev.
func TestAssignProperties(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 11))
	pool := []string{"m0", "m1", "m2", "m3", "m4", "m5", "m6", "m7", "m8", "m9", "m10", "m11"}
	iterations := 3000
	if testing.Short() {
		iterations = 300
	}
	for it := range iterations {
		n := rng.IntN(130)
		members := []string{}
		for _, m := range pool[:1+rng.IntN(len(pool))] {
			if rng.IntN(3) > 0 {
				members = append(members, m)
			}
		}
		rng.Shuffle(len(members), func(i, j int) { members[i], members[j] = members[j], members[i] })
		leaving := map[string]bool{}
		for _, m := range pool {
			if rng.IntN(6) == 0 {
				leaving[m] = true
			}
		}
		var prev []string
		switch rng.IntN(4) {
		case 0: // none
		case 1: // a balanced assignment over other members
			prev = Assign(n, nil, pool[:1+rng.IntN(len(pool))], nil)
		default: // anything, skewed towards a few owners
			prev = make([]string, n)
			for p := range prev {
				switch x := rng.IntN(10); {
				case x == 0:
					prev[p] = ""
				case x == 1:
					prev[p] = "gone"
				default:
					prev[p] = pool[rng.IntN(1+rng.IntN(len(pool)))]
				}
			}
		}
		tb := withInputs{t, fmt.Sprintf("iteration %d: n=%d prev=%q members=%q leaving=%v", it, n, prev, members, leaving)}
		next := checkAssign(tb, n, prev, members, leaving)
		// One more change on top: a member crashes or joins.
		if len(members) > 0 && rng.IntN(2) == 0 {
			checkAssign(tb, n, next, members[1:], nil)
		} else {
			checkAssign(tb, n, next, append(slices.Clone(members), "new"), leaving)
		}
	}
}

// withInputs adds the inputs of a random case to a failure's message.
type withInputs struct {
	testing.TB
	inputs string
}

func (w withInputs) Fatalf(format string, args ...any) {
	w.TB.Helper()
	w.TB.Fatalf(format+"\n"+w.inputs, args...)
}

// BenchmarkAssign measures a join to 49 members owning 1024 partitions.
func BenchmarkAssign(b *testing.B) {
	members := make([]string, 50)
	for i := range members {
		members[i] = fmt.Sprintf("node-%02d", i)
	}
	prev := Assign(1024, nil, members[:49], nil)
	b.ReportAllocs()
	for b.Loop() {
		Assign(1024, prev, members, nil)
	}
}
