package rules

import (
	"encoding/json"
	"math"
	"strconv"

	"github.com/squallhq/squall/api"
	"github.com/squallhq/squall/window"
)

// Transition states published in alerts.
const (
	Firing   = "firing"
	Resolved = "resolved"
)

// Transition is a rule's move to firing or to resolved for one key: the
// alert document (docs/rules.md).
type Transition struct {
	Rule      string            `json:"rule"`
	Key       string            `json:"key"`
	State     string            `json:"state"` // Firing or Resolved
	Value     float64           `json:"value"` // the aggregate at At (NaN: no data; encoded as null)
	Threshold float64           `json:"threshold"`
	Severity  string            `json:"severity"`
	Labels    map[string]string `json:"labels,omitempty"` // shared with the Rule: do not modify
	// StartedAt is when the alert started: for a threshold rule the event
	// time (ms) its condition began to hold (the pending start); for an
	// absent rule the wall time (ms) the key was last seen.
	StartedAt int64 `json:"started_at"`
	// At is the transition's time (ms): the event time of the evaluation for
	// threshold rules; lastSeen+absent for an absent rule's firing.
	At int64 `json:"at"`
	// Source is the rule that made the transition (not encoded).
	Source *Rule `json:"-"`
}

// ID returns "<rule>/<key>/<at>/<state>", deterministic so that consumers
// can drop duplicates (a replay of the same events yields the same ids).
func (t *Transition) ID() string {
	return t.Rule + "/" + t.Key + "/" + strconv.FormatInt(t.At, 10) + "/" + t.State
}

// Alert returns the alert document (docs/rules.md) of the transition; a
// non-finite Value is nil.
func (t Transition) Alert() api.Alert {
	d := api.Alert{ID: t.ID(), Rule: t.Rule, Key: t.Key, State: t.State, Threshold: t.Threshold,
		Severity: t.Severity, Labels: t.Labels, StartedAt: t.StartedAt, At: t.At}
	if !math.IsNaN(t.Value) && !math.IsInf(t.Value, 0) {
		v := t.Value
		d.Value = &v
	}
	return d
}

// MarshalJSON encodes the alert document (docs/rules.md, api.Alert), id
// first. A non-finite Value is encoded as null.
func (t Transition) MarshalJSON() ([]byte, error) { return json.Marshal(t.Alert()) }

// Value returns r's aggregate of w over r.Over (the whole window when Over
// is 0), or NaN when w is empty or r is an absent rule. count, sum, min,
// max, mean, last and rate come from window.Window.StatsOver (no
// allocation); p50, p95 and p99 from window.Window.Quantile.
func (r *Rule) Value(w *window.Window) float64 {
	if r.Aggregate == AggNone || w.Empty() {
		return math.NaN()
	}
	switch r.Aggregate {
	case AggP50:
		return w.Quantile(0.5, r.Over)
	case AggP95:
		return w.Quantile(0.95, r.Over)
	case AggP99:
		return w.Quantile(0.99, r.Over)
	}
	// Every sub-window holds the newest bucket, which is never empty, so a
	// non-empty window gives Count ≥ 1.
	a := w.StatsOver(r.Over)
	return r.FromStats(&a)
}

// FromStats returns r's aggregate from a's (window.Window.StatsOver over
// r.Over, of a non-empty window). It is not for quantile rules (see
// Aggregate.IsQuantile), whose value StatsOver does not compute.
func (r *Rule) FromStats(a *window.Aggregates) float64 {
	switch r.Aggregate {
	case AggCount:
		return float64(a.Count)
	case AggRate:
		return a.Rate
	case AggLast:
		return a.Last.Value
	case AggSum:
		return a.Sum
	case AggMin:
		return a.Min
	case AggMax:
		return a.Max
	case AggMean:
		return a.Mean
	}
	return math.NaN()
}

// Holds reports whether "v Op Threshold" holds. NaN (no data) never holds.
func (r *Rule) Holds(v float64) bool {
	if math.IsNaN(v) {
		return false
	}
	switch r.Op {
	case OpGT:
		return v > r.Threshold
	case OpGE:
		return v >= r.Threshold
	case OpLT:
		return v < r.Threshold
	case OpLE:
		return v <= r.Threshold
	case OpEQ:
		return v == r.Threshold
	case OpNE:
		return v != r.Threshold
	}
	return false
}

func (r *Rule) transition(key, state string, v float64, started, at int64) Transition {
	th := r.Threshold
	if r.IsAbsent() {
		th = r.Absent.Seconds()
	}
	return Transition{Rule: r.Name, Key: key, State: state, Value: v, Threshold: th,
		Severity: r.Severity, Labels: r.Labels, StartedAt: started, At: at}
}

// Eval evaluates threshold rule r for key after an event, with value the
// rule's aggregate (Rule.Value) and at the event's time in epoch ms. It
// updates st and returns a transition when the rule fires or resolves:
//
//   - inactive: when the condition holds, pending starts at at (and, when
//     For is 0, the rule fires at once);
//   - pending: firing when the condition still holds at an event time
//     ≥ start+For; back to inactive, with no transition, when it does not hold;
//   - firing: resolved (then inactive) when the condition does not hold.
//
// Event time never runs backward for a State: an out-of-order event is
// evaluated at the newest event time st has seen (its aggregate still
// counts the late event), so At never decreases and replaying the same
// events gives the same transitions and ids. Eval reads no clock and does
// not allocate. It is a no-op for an absent rule. Not safe for concurrent
// use on the same State.
func (r *Rule) Eval(st *State, key string, value float64, at int64) (Transition, bool) {
	if r.IsAbsent() {
		return Transition{}, false
	}
	if at < st.newest && st.newest != 0 {
		at = st.newest
	} else {
		st.newest = at
	}
	holds := r.Holds(value)
	switch st.phase {
	case Inactive:
		if !holds {
			return Transition{}, false
		}
		st.phase, st.since = Pending, at
		if r.For > 0 {
			return Transition{}, false
		}
		st.phase = FiringPhase
		return r.transition(key, Firing, value, at, at), true
	case Pending:
		if !holds {
			st.phase = Inactive
			return Transition{}, false
		}
		if at-st.since >= r.For.Milliseconds() {
			st.phase = FiringPhase
			return r.transition(key, Firing, value, st.since, at), true
		}
	case FiringPhase:
		if !holds {
			st.phase = Inactive
			return r.transition(key, Resolved, value, st.since, at), true
		}
	}
	return Transition{}, false
}

// EvalAbsent checks absent rule r for a seen key whose last event arrived
// at wall time lastSeenWall (ms), at wall time nowWall (ms). It fires once
// when nowWall − lastSeenWall ≥ Absent; the transition's At is
// lastSeenWall+Absent (the deadline, not nowWall, so a retried check yields
// the same id), StartedAt is lastSeenWall, Value is NaN and Threshold is
// Absent in seconds. The caller's timer should fire at lastSeenWall+Absent.
// It is a no-op for a threshold rule or an already firing State.
func (r *Rule) EvalAbsent(st *State, key string, lastSeenWall, nowWall int64) (Transition, bool) {
	if !r.IsAbsent() || st.phase == FiringPhase {
		return Transition{}, false
	}
	deadline := lastSeenWall + r.Absent.Milliseconds()
	if nowWall < deadline {
		return Transition{}, false
	}
	st.phase, st.since, st.newest = FiringPhase, lastSeenWall, deadline
	return r.transition(key, Firing, math.NaN(), lastSeenWall, deadline), true
}

// Seen tells absent rule r that key got an event at time at (ms; the node
// passes the event's time). A firing State resolves, with At = at (but never
// before the firing's At) and StartedAt the firing's StartedAt; otherwise
// nothing happens. The caller then restarts the key's absent timer. It is a
// no-op for a threshold rule.
func (r *Rule) Seen(st *State, key string, at int64) (Transition, bool) {
	if !r.IsAbsent() || st.phase != FiringPhase {
		return Transition{}, false
	}
	if at < st.newest {
		at = st.newest
	}
	st.phase, st.newest = Inactive, at
	return r.transition(key, Resolved, math.NaN(), st.since, at), true
}
