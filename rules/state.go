package rules

import (
	"encoding/binary"
	"fmt"
	"strconv"
)

// Phase is where a (rule, key) pair is in the Prometheus state machine.
// "resolved" is a transition, not a resting phase: a resolved alert is
// Inactive again.
type Phase uint8

// Phases.
const (
	Inactive Phase = iota
	Pending
	FiringPhase
)

// String returns "inactive", "pending" or "firing".
func (p Phase) String() string {
	switch p {
	case Inactive:
		return "inactive"
	case Pending:
		return "pending"
	case FiringPhase:
		return "firing"
	}
	return "Phase(" + strconv.Itoa(int(p)) + ")"
}

// State is the evaluation state of one rule for one key. The zero State is
// inactive. It is 24 bytes (a phase byte and two int64 times, padded) and
// holds no pointer, so a key actor can keep a []State parallel to its
// matched rules. Not safe for concurrent use.
type State struct {
	since  int64 // pending/firing start (event ms; absent rules: last-seen wall ms)
	newest int64 // newest evaluation time seen (threshold), or the last transition's At (absent)
	phase  Phase
}

// Phase returns the current phase.
func (s *State) Phase() Phase { return s.phase }

// Since returns when the current phase's alert started (see
// Transition.StartedAt), or 0 when Inactive.
func (s *State) Since() int64 {
	if s.phase == Inactive {
		return 0
	}
	return s.since
}

// Newest returns the newest evaluation time the State has seen (threshold
// rules), or its last transition's At (absent rules).
func (s *State) Newest() int64 { return s.newest }

const stateVersion = 1

// MarshalBinary encodes s for handoff: a version byte, the phase byte and
// two zigzag varints (at most 22 bytes).
func (s *State) MarshalBinary() ([]byte, error) {
	b := make([]byte, 0, 2+2*binary.MaxVarintLen64)
	b = append(b, stateVersion, byte(s.phase))
	b = binary.AppendVarint(b, s.since)
	b = binary.AppendVarint(b, s.newest)
	return b, nil
}

// UnmarshalBinary decodes what MarshalBinary wrote into s. Errors wrap
// ErrState; on error s is unchanged.
func (s *State) UnmarshalBinary(data []byte) error {
	if len(data) < 2 || data[0] != stateVersion {
		return fmt.Errorf("%w: bad header", ErrState)
	}
	ph := Phase(data[1])
	if ph > FiringPhase {
		return fmt.Errorf("%w: phase %d", ErrState, ph)
	}
	rest := data[2:]
	since, n := binary.Varint(rest)
	if n <= 0 {
		return fmt.Errorf("%w: bad since", ErrState)
	}
	rest = rest[n:]
	newest, n := binary.Varint(rest)
	if n <= 0 || n != len(rest) {
		return fmt.Errorf("%w: bad newest or trailing bytes", ErrState)
	}
	*s = State{since: since, newest: newest, phase: ph}
	return nil
}
