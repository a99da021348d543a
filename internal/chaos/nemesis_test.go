package chaos

import (
	"fmt"
	"slices"
	"testing"
	"time"
)

func TestPlan(t *testing.T) {
	for _, mode := range []LogMode{LogKafka, LogJetStream} {
		for _, short := range []bool{true, false} {
			cfg := DefaultConfig()
			cfg.Seed, cfg.Log = 42, mode
			if !short {
				cfg.Duration = 10 * time.Minute
			}
			p, q := NewPlan(cfg), NewPlan(cfg)
			kinds := Kinds(mode)
			seen := map[FaultKind]bool{}
			for range len(kinds) {
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
				if f.Kind == KillNATS {
					if len(f.Victims) != 1 || f.Victims[0] < 0 || f.Victims[0] >= cfg.NATSServers || len(f.Hold) != 1 || f.Hold[0] <= 0 {
						t.Fatalf("NATS kill without one server and a hold: %+v", f)
					}
				}
			}
			if len(seen) != len(kinds) {
				t.Fatalf("%s: one round covers %v, want every kind of %v", mode, seen, kinds)
			}
		}
	}
}

// TestKinds checks the faults of each mode: the same node and ZooKeeper
// faults, the broker restart in Kafka mode only, the NATS server kill in
// JetStream mode only.
func TestKinds(t *testing.T) {
	kafka, js := Kinds(LogKafka), Kinds(LogJetStream)
	want := []FaultKind{KillOne, KillTwo, PauseNode, PauseLeader, PauseZKShort, PauseZKLong, RestartBroker, LeaveJoin}
	if !slices.Equal(kafka, want) {
		// The order matters too: it keeps the Kafka schedule of a seed.
		t.Fatalf("kafka kinds %v, want %v", kafka, want)
	}
	if slices.Contains(js, RestartBroker) || !slices.Contains(js, KillNATS) || len(js) != len(kafka) {
		t.Fatalf("jetstream kinds %v", js)
	}
	for _, k := range js {
		if k != KillNATS && !slices.Contains(kafka, k) {
			t.Fatalf("jetstream kind %s not in kafka mode", k)
		}
	}
}

// TestPlanKafkaUnchanged pins the Kafka schedule of a seed (as the suite
// drew it before the JetStream mode): adding the mode does not change what
// CHAOS_SEED replays.
func TestPlanKafkaUnchanged(t *testing.T) {
	golden := []string{
		"pause-zk-long [] [6.7s] 5.8s", "pause-node [0] [7.8s] 7.9s", "kill-2 [2 1] [2.3s 1.5s] 6.3s",
		"pause-zk-short [] [1.7s] 7.3s", "leave-join [1] [1.3s] 7.6s", "restart-broker [] [] 7.8s",
		"kill-1 [1] [4.1s] 8s", "pause-leader [1] [7.5s] 7.1s", "pause-zk-long [] [7s] 7.6s",
		"pause-leader [2] [7.2s] 5.2s", "leave-join [2] [1.2s] 7.7s", "kill-2 [0 1] [3.4s 5.5s] 5.1s",
		"pause-node [1] [7s] 8s", "pause-zk-short [] [1.9s] 7.1s", "kill-1 [2] [1.7s] 5.2s",
		"restart-broker [] [] 5.6s",
	}
	cfg := DefaultConfig()
	cfg.Seed = 7
	p := NewPlan(cfg)
	var got []FaultKind
	for i, want := range golden {
		f := p.Next()
		if s := fmt.Sprintf("%s %v %v %v", f.Kind, f.Victims, f.Hold, f.After); s != want {
			t.Fatalf("fault %d of seed 7: %s, want %s", i, s, want)
		}
		got = append(got, f.Kind)
	}
	// The JetStream schedule of the same seed replaces the broker restarts
	// with NATS kills, in the same places.
	cfg.Log = LogJetStream
	q := NewPlan(cfg)
	for i, k := range got {
		f := q.Next()
		if (k == RestartBroker) != (f.Kind == KillNATS) || (k != RestartBroker && f.Kind != k) {
			t.Fatalf("fault %d: kafka %s, jetstream %s", i, k, f.Kind)
		}
		if f.Kind != KillNATS && golden[i] != fmt.Sprintf("%s %v %v %v", f.Kind, f.Victims, f.Hold, f.After) {
			t.Fatalf("fault %d: jetstream %+v, kafka %s", i, f, golden[i])
		}
	}
}
