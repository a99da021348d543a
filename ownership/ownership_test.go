package ownership

import (
	"fmt"
	"slices"
	"strings"
	"testing"
)

var (
	t1 = Token{Epoch: 1, Generation: 5, Version: 4}
	t2 = Token{Epoch: 1, Generation: 6, Version: 5}
	t3 = Token{Epoch: 2, Generation: 7, Version: 6}
)

// step is one input and the actions it must produce.
type step struct {
	in   Input
	acts []Action
}

func TestStep(t *testing.T) {
	cases := []struct {
		name  string
		start Status
		steps []step
		want  Status
	}{
		{"grant without a handoff claims at once", Status{}, []step{
			{Input{Kind: Grant, Tok: t1}, []Action{Claim}},
		}, Status{State: Acquiring, Tok: t1, Seq: 1}},
		{"no held state: replay, then live", Status{}, []step{
			{Input{Kind: Grant, Tok: t1}, []Action{Claim}},
			{Input{Kind: Claimed, Seq: 1}, []Action{ServeReplay}},
			{Input{Kind: Live, Seq: 1}, nil},
		}, Status{State: Serving, Tok: t1, Seq: 1}},
		{"planned move: wait for the handoff, claim, serve what it covers", Status{}, []step{
			{Input{Kind: Grant, Tok: t1, Await: true}, []Action{ArmAwait}},
			{Input{Kind: Chunk, First: true}, []Action{HoldChunk}},
			{Input{Kind: Chunk}, []Action{HoldChunk}},
			{Input{Kind: Chunk, Last: true}, []Action{HoldChunk, Claim}},
			{Input{Kind: Claimed, Seq: 1, Valid: true}, []Action{ServeHeld}},
		}, Status{State: Serving, Tok: t1, Seq: 1}},
		// Failure 1: the survivor hands over an empty or partial snapshot;
		// its cover does not match the claimed record, so it is dropped and
		// the partition replayed.
		{"a handoff whose cover does not match is dropped and the log replayed", Status{}, []step{
			{Input{Kind: Grant, Tok: t2, Await: true}, []Action{ArmAwait}},
			{Input{Kind: Chunk, First: true, Last: true}, []Action{HoldChunk, Claim}},
			{Input{Kind: Claimed, Seq: 1, Valid: false}, []Action{DropHeld, ServeReplay}},
		}, Status{State: Replaying, Tok: t2, Seq: 1}},
		{"the handoff never comes: claim on expiry, replay", Status{}, []step{
			{Input{Kind: Grant, Tok: t1, Await: true}, []Action{ArmAwait}},
			{Input{Kind: Chunk, First: true}, []Action{HoldChunk}},
			{Input{Kind: AwaitExpired, Seq: 1}, []Action{Claim}},
			{Input{Kind: Claimed, Seq: 1, Valid: true}, []Action{DropHeld, ServeReplay}},
		}, Status{State: Replaying, Tok: t1, Seq: 1}},
		{"a partial handoff is never served, even if claimed valid", Status{}, []step{
			{Input{Kind: Grant, Tok: t1}, []Action{Claim}},
			{Input{Kind: Chunk, First: true}, []Action{HoldChunk}},
			{Input{Kind: Claimed, Seq: 1, Valid: true}, []Action{DropHeld, ServeReplay}},
		}, Status{State: Replaying, Tok: t1, Seq: 1}},
		// Failure 3: a handoff for a partition already served is refused,
		// never laid over its live keys.
		{"a chunk for a serving partition is refused", Status{State: Serving, Tok: t1, Seq: 1}, []step{
			{Input{Kind: Chunk, First: true, Last: true}, []Action{RefuseChunk}},
			{Input{Kind: Chunk, First: true, Last: true, Newer: true}, []Action{RefuseChunk}},
		}, Status{State: Serving, Tok: t1, Seq: 1}},
		{"a chunk for a replaying partition is refused", Status{State: Replaying, Tok: t1, Seq: 1}, []step{
			{Input{Kind: Chunk, First: true, Last: true}, []Action{RefuseChunk}},
		}, Status{State: Replaying, Tok: t1, Seq: 1}},
		// Failure 4: a revocation while acquiring drops the partition; the
		// claim's late outcome starts nothing.
		{"revoked while acquiring: a late claim outcome starts no source", Status{}, []step{
			{Input{Kind: Grant, Tok: t1}, []Action{Claim}},
			{Input{Kind: Revoke, Tok: t2}, []Action{Drop}},
			{Input{Kind: Claimed, Seq: 1}, nil},
			{Input{Kind: Live, Seq: 1}, nil},
		}, Status{Seq: 1}},
		{"a grant after a revocation is a new grant: old outcomes are stale", Status{}, []step{
			{Input{Kind: Grant, Tok: t1}, []Action{Claim}},
			{Input{Kind: Revoke, Tok: t2}, []Action{Drop}},
			{Input{Kind: Grant, Tok: t3}, []Action{Claim}},
			{Input{Kind: Claimed, Seq: 1}, nil},
			{Input{Kind: Claimed, Seq: 2}, []Action{ServeReplay}},
		}, Status{State: Replaying, Tok: t3, Seq: 2}},
		// Failure 5: a partition still waiting for its handoff is moved on;
		// it forwards nothing it has not got whole, and the real snapshot
		// arriving later is refused (its sender tries the newest owner).
		{"moved on while awaiting: nothing forwarded, the late snapshot refused", Status{}, []step{
			{Input{Kind: Grant, Tok: t1, Await: true}, []Action{ArmAwait}},
			{Input{Kind: Revoke, Tok: t2}, []Action{Drop}},
			{Input{Kind: Chunk, First: true, Last: true}, []Action{RefuseChunk}},
		}, Status{Seq: 1}},
		{"moved on with a partial handoff held: it is dropped", Status{}, []step{
			{Input{Kind: Grant, Tok: t1, Await: true}, []Action{ArmAwait}},
			{Input{Kind: Chunk, First: true}, []Action{HoldChunk}},
			{Input{Kind: Revoke, Tok: t2}, []Action{Drop, DropHeld}},
		}, Status{Seq: 1}},
		{"moved on with a whole handoff held, before claiming: it is forwarded", Status{Seq: 3}, []step{
			{Input{Kind: Grant, Tok: t1, Await: true}, []Action{ArmAwait}},
			{Input{Kind: Chunk, First: true, Last: true}, []Action{HoldChunk, Claim}},
			{Input{Kind: Revoke, Tok: t2}, []Action{Drop, ForwardHeld}},
		}, Status{Seq: 4}},
		// Failure 6: once fenced, nothing more is committed or handed over.
		{"fenced while serving: dropped without a handoff", Status{State: Serving, Tok: t1, Seq: 2}, []step{
			{Input{Kind: Fenced, Seq: 1}, nil},
			{Input{Kind: Fenced, Seq: 2}, []Action{Drop}},
			{Input{Kind: Revoke, Tok: t2}, nil},
		}, Status{Seq: 2}},
		{"fenced while replaying", Status{State: Replaying, Tok: t1, Seq: 2}, []step{
			{Input{Kind: Fenced, Seq: 2}, []Action{Drop}},
		}, Status{Seq: 2}},
		// Failure 2: session loss is loss, in every state.
		{"session lost while serving", Status{State: Serving, Tok: t1, Seq: 2}, []step{
			{Input{Kind: Lost}, []Action{Drop}},
		}, Status{Seq: 2}},
		{"session lost while acquiring with chunks held", Status{}, []step{
			{Input{Kind: Grant, Tok: t1, Await: true}, []Action{ArmAwait}},
			{Input{Kind: Chunk, First: true}, []Action{HoldChunk}},
			{Input{Kind: Lost}, []Action{Drop, DropHeld}},
			{Input{Kind: AwaitExpired, Seq: 1}, nil},
		}, Status{Seq: 1}},
		{"session lost while idle with chunks held", Status{Holding: true, Held: true}, []step{
			{Input{Kind: Lost}, []Action{DropHeld}},
		}, Status{}},
		{"planned move out", Status{State: Serving, Tok: t1, Seq: 1}, []step{
			{Input{Kind: Revoke, Tok: t2}, []Action{Release}},
			{Input{Kind: Released, Seq: 1}, nil},
		}, Status{Seq: 1}},
		{"revoked while replaying: released (its snapshot's cover will not match)", Status{State: Replaying, Tok: t1, Seq: 1}, []step{
			{Input{Kind: Revoke, Tok: t2}, []Action{Release}},
			{Input{Kind: Live, Seq: 1}, nil},
			{Input{Kind: Released, Seq: 1}, nil},
		}, Status{Seq: 1}},
		// Failure 1 again, at the node that moves twice: the partition comes
		// back during its release; the snapshot is held and offered to the
		// claim like any handoff.
		{"back during the release: the snapshot is held and checked by the claim", Status{State: Serving, Tok: t1, Seq: 1}, []step{
			{Input{Kind: Revoke, Tok: t2}, []Action{Release}},
			{Input{Kind: Released, Seq: 1, Valid: true}, nil},
			{Input{Kind: Grant, Tok: t3, Await: true}, []Action{Claim}},
			{Input{Kind: Claimed, Seq: 2, Valid: true}, []Action{ServeHeld}},
		}, Status{State: Serving, Tok: t3, Seq: 2}},
		{"chunks from a node ahead of this one are held until the grant", Status{}, []step{
			{Input{Kind: Chunk, First: true, Newer: true}, []Action{HoldChunk}},
			{Input{Kind: Chunk, Last: true, Newer: true}, []Action{HoldChunk}},
			{Input{Kind: Grant, Tok: t2, Await: true}, []Action{Claim}},
		}, Status{State: Acquiring, Tok: t2, Seq: 1, Holding: true, Held: true}},
		{"chunks from a node not ahead of this one are refused while idle", Status{}, []step{
			{Input{Kind: Chunk, First: true, Last: true}, []Action{RefuseChunk}},
		}, Status{}},
		{"a handoff's middle without its start is refused", Status{}, []step{
			{Input{Kind: Grant, Tok: t1, Await: true}, []Action{ArmAwait}},
			{Input{Kind: Chunk, Last: true}, []Action{RefuseChunk}},
		}, Status{State: Acquiring, Tok: t1, Seq: 1, Await: true}},
		{"a handoff sent again restarts what is held", Status{}, []step{
			{Input{Kind: Grant, Tok: t1, Await: true}, []Action{ArmAwait}},
			{Input{Kind: Chunk, First: true}, []Action{HoldChunk}},
			{Input{Kind: Chunk, First: true}, []Action{HoldChunk}},
			{Input{Kind: Chunk, Last: true}, []Action{HoldChunk, Claim}},
		}, Status{State: Acquiring, Tok: t1, Seq: 1, Holding: true, Held: true}},
		{"a stale claim failure waits for the newer grant, which claims again", Status{}, []step{
			{Input{Kind: Grant, Tok: t1}, []Action{Claim}},
			{Input{Kind: ClaimFailed, Seq: 1, Stale: true}, nil},
			{Input{Kind: Grant, Tok: t1}, nil},
			{Input{Kind: Grant, Tok: t2}, []Action{Claim}},
		}, Status{State: Acquiring, Tok: t2, Seq: 1}},
		{"a transient claim failure is retried", Status{}, []step{
			{Input{Kind: Grant, Tok: t1}, []Action{Claim}},
			{Input{Kind: ClaimFailed, Seq: 1}, []Action{ArmRetry}},
			{Input{Kind: AwaitExpired, Seq: 1}, []Action{Claim}},
		}, Status{State: Acquiring, Tok: t1, Seq: 1}},
		{"a newer grant of a served partition updates its token only", Status{State: Serving, Tok: t1, Seq: 1}, []step{
			{Input{Kind: Grant, Tok: t2}, nil},
			{Input{Kind: Grant, Tok: t1}, nil},
		}, Status{State: Serving, Tok: t2, Seq: 1}},
		{"releasing ignores everything but its own outcome", Status{State: Releasing, Tok: t1, Seq: 1}, []step{
			{Input{Kind: Fenced, Seq: 1}, nil},
			{Input{Kind: Live, Seq: 1}, nil},
			{Input{Kind: Released, Seq: 0}, nil},
			{Input{Kind: Chunk, First: true, Newer: true}, []Action{RefuseChunk}},
		}, Status{State: Releasing, Tok: t1, Seq: 1}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := c.start
			for i, st := range c.steps {
				var acts []Action
				s, acts = Step(s, st.in)
				if !slices.Equal(acts, st.acts) {
					t.Fatalf("step %d (%s): actions %v, want %v", i, st.in.Kind, acts, st.acts)
				}
			}
			if s != c.want {
				t.Fatalf("status %+v, want %+v", s, c.want)
			}
		})
	}
}

// Whatever the inputs, a partition is served only after a claim of its
// current grant landed, and held state is served only if it was complete
// and its cover matched.
func TestStepInvariants(t *testing.T) {
	kinds := []Kind{Grant, Revoke, Lost, Chunk, AwaitExpired, Claimed, ClaimFailed, Live, Fenced, Released}
	toks := []Token{t1, t2, t3}
	var walk func(s Status, depth int, path []string)
	walk = func(s Status, depth int, path []string) {
		if depth == 0 {
			return
		}
		for _, k := range kinds {
			for variant := 0; variant < 8; variant++ {
				in := Input{Kind: k, Tok: toks[variant%3], Seq: s.Seq - uint64(variant%2),
					Await: variant&1 != 0, First: variant&2 != 0, Last: variant&4 != 0,
					Newer: variant&1 != 0, Valid: variant&2 != 0, Stale: variant&4 != 0}
				ns, acts := Step(s, in)
				p := append(path, fmt.Sprintf("%s%+v", k, in))
				for _, a := range acts {
					switch a {
					case ServeHeld:
						if in.Kind != Claimed || !in.Valid || !s.Held || in.Seq != s.Seq || s.State != Acquiring {
							t.Fatalf("ServeHeld after %s from %+v", strings.Join(p, " → "), s)
						}
					case ServeReplay:
						if in.Kind != Claimed || in.Seq != s.Seq || s.State != Acquiring {
							t.Fatalf("ServeReplay after %s from %+v", strings.Join(p, " → "), s)
						}
					case Release:
						if s.State != Serving && s.State != Replaying {
							t.Fatalf("Release from %+v", s)
						}
					}
				}
				if ns.State == Serving && s.State != Serving && s.State != Replaying && !slices.Contains(acts, ServeHeld) {
					t.Fatalf("serving without a claim: %s from %+v", strings.Join(p, " → "), s)
				}
				if ns.Seq < s.Seq {
					t.Fatalf("grant sequence went back: %+v → %+v", s, ns)
				}
				walk(ns, depth-1, p)
			}
		}
	}
	walk(Status{}, 3, nil)
	walk(Status{State: Serving, Tok: t1, Seq: 1}, 3, nil)
}
