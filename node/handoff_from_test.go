package node

import (
	"testing"

	"github.com/squallhq/squall/cluster"
)

// A node awaits the handoff of a partition moved to it: from the owner the
// leader names, or — when it missed the generation that moved it — from
// the owner it last saw.
func TestHandoffFrom(t *testing.T) {
	gen := func(g int64, moves map[string]string, owners ...string) *cluster.Assignment {
		return &cluster.Assignment{Epoch: 3, Generation: g, Owners: owners, Moves: moves}
	}
	for _, tc := range []struct {
		name    string
		a, prev *cluster.Assignment
		want    [2]string // partitions 0 and 1
	}{
		{"first assignment, moves named", gen(2, map[string]string{"1": "n1"}, "n1", "n2"), nil, [2]string{"", "n1"}},
		{"first assignment, none named", gen(2, nil, "n1", "n2"), nil, [2]string{"", ""}},
		{"next generation: its moves only", gen(3, map[string]string{"0": "n2"}, "n3", "n2"), gen(2, nil, "n2", "n1"),
			[2]string{"n2", ""}},
		{"a generation missed: the owner last seen", gen(4, nil, "n1", "n2"), gen(2, nil, "n1", "n1"),
			[2]string{"", "n1"}},
		{"a generation missed, the move named", gen(4, map[string]string{"1": "n3"}, "n1", "n2"), gen(2, nil, "n1", "n1"),
			[2]string{"", "n3"}},
		{"a generation missed, no owner seen", gen(4, nil, "n1", "n2"), gen(2, nil, "n1", ""), [2]string{"", ""}},
		{"the same assignment again", gen(2, nil, "n1", "n2"), gen(2, nil, "n1", "n1"), [2]string{"", ""}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for p := range 2 {
				if got := handoffFrom(tc.a, tc.prev, int32(p)); got != tc.want[p] {
					t.Errorf("partition %d: handoff from %q, want %q", p, got, tc.want[p])
				}
			}
		})
	}
}
