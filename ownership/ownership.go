// Package ownership is the lifecycle of a key partition on a clustered
// node: one state machine per partition decides, from what the node hears
// (grants and revocations in the leader's assignments, handoff chunks from
// the previous owner, the outcome of its own claims, replays and commits),
// what the node does next. Step is pure — no I/O, no clock, no goroutines —
// so the protocol is tested as a table; package node runs it, one
// goroutine per partition, with the engine, the Kafka source, the transport
// and ZooKeeper as its instruments.
//
// The states of a partition on a node:
//
//	Idle ──Grant──▶ Acquiring ──Claimed(valid)──────────────────▶ Serving
//	 ▲                 │  │                                         │  ▲
//	 │                 │  └─Claimed(not valid)─▶ Replaying ──Live───┘  │
//	 │                 │                            │                  │
//	 │◀──Revoke, Lost──┘◀─────────Fenced, Lost──────┴──────────────────┤
//	 │                                                                 │
//	 └◀────────Released──── Releasing ◀────────────Revoke──────────────┘
//
// A grant carries a token (the granting assignment's epoch, generation and
// znode version). Acquiring holds the previous owner's handoff chunks, if
// one is coming, then claims the partition's progress record in ZooKeeper
// under the token: the claim fences every earlier owner's commits, and
// tells where the log must be replayed from. The held state is used only
// if its cover — the log position and record version its sender's final
// commit wrote — is exactly the record claimed (Valid); otherwise it is
// dropped and the partition is rebuilt from the log. So a handoff is an
// optimisation, never the truth: an empty, partial, stale or missing one
// ends in the same state.
package ownership

import (
	"fmt"

	"github.com/squallhq/squall/cluster"
)

// State is a partition's lifecycle state on a node.
type State uint8

// States of a partition on a node.
const (
	// Idle: the node does not hold the partition. It may hold chunks of a
	// handoff sent by a node that acts on a newer assignment.
	Idle State = iota
	// Acquiring: granted; waiting for the previous owner's handoff, then
	// claiming the progress record. No event is applied.
	Acquiring
	// Replaying: claimed; the source rebuilds the windows from the log in
	// restore mode (no outputs, no commits beyond the claimed progress).
	Replaying
	// Serving: applying live events, committing, answering reads.
	Serving
	// Releasing: moving out: the source stops and makes its final commit,
	// the keys are snapshotted and handed to the newest owner.
	Releasing
)

var stateNames = [...]string{"idle", "acquiring", "replaying", "serving", "releasing"}

// String returns the state's name as /debug/cluster shows it.
func (s State) String() string {
	if int(s) < len(stateNames) {
		return stateNames[s]
	}
	return fmt.Sprintf("state(%d)", s)
}

// Kind is the kind of an Input.
type Kind uint8

// Kinds of Input.
const (
	// Grant: the newest assignment gives the partition to this node. Await:
	// its previous owner is alive and hands its state over.
	Grant Kind = iota
	// Revoke: the newest assignment gives the partition to another node.
	Revoke
	// Lost: the node's ZooKeeper session (or its local lease) is gone; the
	// leader will give the partition away, if it has not already.
	Lost
	// Chunk: a chunk of a handoff arrived. First: it starts a handoff
	// (chunk 0); Last: it ends it; Newer: its sender acts on an assignment
	// newer than any this node has seen.
	Chunk
	// AwaitExpired: the timer armed for grant Seq fired (the handoff did not
	// come in time, or a claim is retried).
	AwaitExpired
	// Claimed: the claim of grant Seq landed. Valid: the held state's cover
	// is exactly the progress record claimed.
	Claimed
	// ClaimFailed: the claim of grant Seq did not land. Stale: a newer
	// assignment exists (it will arrive as Grant or Revoke); otherwise the
	// failure is transient and the claim is retried.
	ClaimFailed
	// Live: the source of grant Seq has replayed up to the claimed progress.
	Live
	// Fenced: the store refused a commit of grant Seq: another node has
	// claimed the partition.
	Fenced
	// Released: the release of grant Seq finished. Valid: the partition was
	// given back to this node meanwhile, and the state it snapshotted is
	// held (with its cover) instead of sent.
	Released
)

var kindNames = [...]string{"grant", "revoke", "lost", "chunk", "await-expired", "claimed", "claim-failed",
	"live", "fenced", "released"}

// String returns the kind's name.
func (k Kind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return fmt.Sprintf("kind(%d)", k)
}

// Token identifies a grant: the epoch, generation and znode version of
// the assignment that made it.
type Token = cluster.Token

// Input is something the node heard about one partition.
type Input struct {
	Kind Kind
	// Tok is the assignment's token (Grant, Revoke).
	Tok Token
	// Seq is the grant an outcome belongs to (AwaitExpired, Claimed,
	// ClaimFailed, Live, Fenced, Released): outcomes of an earlier grant
	// are stale and ignored.
	Seq uint64
	// Flags; see each Kind.
	Await, First, Last, Newer, Valid, Stale bool
}

// Status is a partition's lifecycle status on a node.
type Status struct {
	State State
	// Tok is the grant held (every state but Idle).
	Tok Token
	// Seq numbers this node's grants of the partition.
	Seq uint64
	// Await: Acquiring, waiting for the previous owner's handoff.
	Await bool
	// Holding: chunks of a handoff are held; Held: all of them (its last
	// chunk came).
	Holding, Held bool
}

// Action is what the node must do, in order, after a Step.
type Action uint8

// Actions. The node's outcome of Claim, ServeReplay and Release comes back
// as an Input carrying the Status's Seq.
const (
	// HoldChunk keeps the chunk (a first chunk replaces what was held).
	HoldChunk Action = iota
	// RefuseChunk answers the sender that the chunk was not taken; the
	// sender tries the newest owner.
	RefuseChunk
	// DropHeld discards the held chunks.
	DropHeld
	// ForwardHeld sends the held state, complete and never applied, on to
	// the partition's newest owner, with its cover; then discards it.
	ForwardHeld
	// ArmAwait starts the handoff timer of grant Seq (→ AwaitExpired).
	ArmAwait
	// ArmRetry starts a short timer of grant Seq to retry a claim
	// (→ AwaitExpired).
	ArmRetry
	// Claim claims the partition's progress under Tok (→ Claimed or
	// ClaimFailed), and checks the held state's cover against it.
	Claim
	// ServeHeld makes the engine serve the held state and starts the
	// source live from its cover.
	ServeHeld
	// ServeReplay makes the engine serve the partition empty and starts
	// the source replaying from the claimed progress (→ Live).
	ServeReplay
	// Release stops the source (final commit), snapshots the keys and
	// hands them to the newest owner (→ Released).
	Release
	// Drop stops the source and discards the partition's keys, handing
	// nothing over.
	Drop
)

var actionNames = [...]string{"hold-chunk", "refuse-chunk", "drop-held", "forward-held", "arm-await", "arm-retry",
	"claim", "serve-held", "serve-replay", "release", "drop"}

// String returns the action's name.
func (a Action) String() string {
	if int(a) < len(actionNames) {
		return actionNames[a]
	}
	return fmt.Sprintf("action(%d)", a)
}

// Step returns the status after in and the actions that carry it out. It
// is pure: what Step does not know (time, the store, the network) comes
// back as later inputs.
func Step(s Status, in Input) (Status, []Action) {
	switch in.Kind {
	case Lost:
		// Session loss is loss: nothing is committed or handed over, and
		// whatever was held goes too.
		var acts []Action
		if s.State != Idle {
			acts = append(acts, Drop)
		}
		if s.Holding {
			acts = append(acts, DropHeld)
		}
		return Status{Seq: s.Seq}, acts
	case Chunk:
		return chunk(s, in)
	}
	switch s.State {
	case Idle:
		switch in.Kind {
		case Grant:
			s = Status{State: Acquiring, Tok: in.Tok, Seq: s.Seq + 1, Await: in.Await && !s.Held,
				Holding: s.Holding, Held: s.Held}
			if s.Await {
				return s, []Action{ArmAwait}
			}
			return s, []Action{Claim}
		case Revoke:
			// Held chunks were sent for an assignment this one supersedes.
			return drop(s)
		}
	case Acquiring:
		switch in.Kind {
		case Grant:
			if !in.Tok.Newer(s.Tok) {
				return s, nil
			}
			s.Tok = in.Tok
			if s.Await {
				return s, nil
			}
			return s, []Action{Claim} // a claim refused as stale is retried
		case Revoke:
			// Nothing applied yet: nothing to hand over but what was held.
			s.State, s.Await = Idle, false
			ns, acts := drop(s)
			return ns, append([]Action{Drop}, acts...)
		case AwaitExpired:
			if in.Seq != s.Seq {
				return s, nil
			}
			s.Await = false
			return s, []Action{Claim}
		case Claimed:
			if in.Seq != s.Seq {
				return s, nil
			}
			if in.Valid && s.Held {
				return Status{State: Serving, Tok: s.Tok, Seq: s.Seq}, []Action{ServeHeld}
			}
			acts := []Action{ServeReplay}
			if s.Holding {
				acts = []Action{DropHeld, ServeReplay}
			}
			return Status{State: Replaying, Tok: s.Tok, Seq: s.Seq}, acts
		case ClaimFailed:
			if in.Seq != s.Seq || in.Stale {
				return s, nil // the newer assignment decides
			}
			return s, []Action{ArmRetry}
		}
	case Replaying, Serving:
		switch in.Kind {
		case Grant:
			if in.Tok.Newer(s.Tok) {
				s.Tok = in.Tok
			}
			return s, nil
		case Revoke:
			s.State = Releasing
			return s, []Action{Release}
		case Live:
			if in.Seq == s.Seq && s.State == Replaying {
				s.State = Serving
			}
			return s, nil
		case Fenced:
			if in.Seq != s.Seq {
				return s, nil
			}
			return Status{Seq: s.Seq}, []Action{Drop}
		}
	case Releasing:
		if in.Kind == Released && in.Seq == s.Seq {
			// Valid: the partition came back meanwhile; its snapshot is held.
			return Status{Seq: s.Seq, Holding: in.Valid, Held: in.Valid}, nil
		}
	}
	return s, nil // an outcome of an earlier grant, or nothing to do
}

// chunk handles a handoff chunk: held while the node is acquiring, or idle
// and behind its sender; refused once the node has claimed (state it has
// applied is never overwritten).
func chunk(s Status, in Input) (Status, []Action) {
	switch {
	case s.State == Acquiring, s.State == Idle && in.Newer:
	default:
		return s, []Action{RefuseChunk}
	}
	if !in.First && !s.Holding {
		// The start of this handoff went elsewhere: take it whole or not.
		return s, []Action{RefuseChunk}
	}
	s.Holding, s.Held = true, in.Last
	if in.Last && s.State == Acquiring && s.Await {
		s.Await = false
		return s, []Action{HoldChunk, Claim}
	}
	return s, []Action{HoldChunk}
}

// drop leaves s idle: complete held state goes on to the newest owner,
// partial held state is discarded.
func drop(s Status) (Status, []Action) {
	var acts []Action
	switch {
	case s.Held:
		acts = []Action{ForwardHeld}
	case s.Holding:
		acts = []Action{DropHeld}
	}
	return Status{Seq: s.Seq}, acts
}
