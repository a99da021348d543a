package chaos

import (
	"slices"
	"testing"
	"time"
)

func TestPlan(t *testing.T) {
	for _, short := range []bool{true, false} {
		p, q := NewPlan(42, short, 3), NewPlan(42, short, 3)
		seen := map[FaultKind]bool{}
		for range len(AllKinds) {
			f, g := p.Next(), q.Next()
			if !slices.Equal(f.Victims, g.Victims) || !slices.Equal(f.Hold, g.Hold) || f.Kind != g.Kind || f.After != g.After {
				t.Fatalf("same seed, different faults: %+v, %+v", f, g)
			}
			seen[f.Kind] = true
			if f.Kind == KillTwo && f.Victims[0] == f.Victims[1] {
				t.Fatalf("double kill of one node: %+v", f)
			}
			if (f.Kind == PauseNode || f.Kind == PauseLeader || f.Kind == PauseZKLong) && f.Hold[0] <= 4*time.Second {
				t.Fatalf("pause not past the session timeout: %+v", f)
			}
			if f.Kind == PauseZKShort && f.Hold[0] >= 4*time.Second {
				t.Fatalf("short ZooKeeper pause past the session timeout: %+v", f)
			}
		}
		if len(seen) != len(AllKinds) {
			t.Fatalf("one round covers %v, want every kind", seen)
		}
	}
}
