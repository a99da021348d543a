// Package alerts runs alert rules (package rules) inside key actors: a
// Handler that updates a key's window and evaluates the rules that match
// the key after every applied event, keeps their states with the key (and
// in its handoff snapshot), runs absent (deadman) rules on one timer heap
// per partition, and tracks the node's firing alerts for /debug/alerts.
//
// Transitions leave through the engine's Sink as rules.Transition outputs
// (the engine drops them while a partition replays Kafka records to rebuild
// state); delivery is package output's job.
//
// Cost per applied event, for a key that matches rules: one StatsOver per
// distinct sub-window among its threshold rules (no allocation) or one
// Quantile per quantile rule; one clock read when it has absent rules. A
// key with no matching rule pays a pointer check.
package alerts

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/squallhq/squall/actors"
	"github.com/squallhq/squall/api"
	"github.com/squallhq/squall/event"
	"github.com/squallhq/squall/rules"
	"github.com/squallhq/squall/window"
)

// Handler is an actors.StatefulHandler: the built-in window handler plus
// alert rules. Create it with New; it is safe for concurrent use (the
// engine calls it from every partition).
type Handler struct {
	clock   actors.Clock
	set     atomic.Pointer[ruleSet]
	firing  registry
	metrics *metrics
}

// ruleSet is a rules.Set with a generation: a key's matched rules are
// recomputed when the generation it matched against is not the current one.
type ruleSet struct {
	set *rules.Set
	gen uint64
	// none is the state of every untagged key no rule matches, shared
	// (never written).
	none *keyState
	// shared interns matched-rule lists, by their names.
	mu     sync.Mutex
	shared map[string][]*rules.Rule
}

func newRuleSet(set *rules.Set, gen uint64) *ruleSet {
	return &ruleSet{set: set, gen: gen, none: &keyState{gen: gen}, shared: map[string][]*rules.Rule{}}
}

// intern returns the set's shared copy of a list of matched rules: keys
// that match the same rules share one slice (read-only), which stays in
// cache.
func (rs *ruleSet) intern(matched []*rules.Rule) []*rules.Rule {
	var id [64]byte
	b := id[:0]
	for _, r := range matched {
		b = append(b, r.Name...)
		b = append(b, 0)
	}
	rs.mu.Lock()
	defer rs.mu.Unlock()
	if m, ok := rs.shared[string(b)]; ok {
		return m
	}
	rs.shared[string(b)] = matched
	return matched
}

// New returns a Handler evaluating set (nil: no rules). clock reads wall
// time for absent rules (nil: the system clock); reg registers its
// metrics (nil: none).
func New(set *rules.Set, clock actors.Clock, reg prometheus.Registerer) (*Handler, error) {
	if clock == nil {
		clock = actors.SystemClock{}
	}
	h := &Handler{clock: clock, firing: registry{m: map[alertKey]rules.Transition{}}}
	if set == nil {
		set, _ = rules.Parse("none", nil)
	}
	h.set.Store(newRuleSet(set, 1))
	m, err := newMetrics(reg, h)
	if err != nil {
		return nil, err
	}
	h.metrics = m
	return h, nil
}

// Rules returns the rules in force.
func (h *Handler) Rules() *rules.Set { return h.set.Load().set }

// Reload puts set in force. Each key keeps the state of every rule whose
// definition is unchanged (rules.Rule.Equal, same name) and drops the
// others', without a transition; firing alerts of dropped or changed rules
// leave /debug/alerts at once. Keys pick the new set up at their next
// event, tick or inspection.
func (h *Handler) Reload(set *rules.Set) {
	for {
		old := h.set.Load()
		if h.set.CompareAndSwap(old, newRuleSet(set, old.gen+1)) {
			break
		}
	}
	h.firing.retain(func(t *rules.Transition) bool {
		r := set.Rule(t.Rule)
		return r != nil && t.Source != nil && r.Equal(t.Source)
	})
}

// Firing returns the firing alerts of the keys this node serves, sorted by
// key then rule.
func (h *Handler) Firing() []rules.Transition { return h.firing.list() }

// keyState is a key's rule state, in actors.Key.State.
type keyState struct {
	gen    uint64            // generation of the set rules were matched in
	tags   map[string]string // the tags map they were matched against
	rules  []*rules.Rule
	states []rules.State
	// absent is set when some rule is an absent rule; lastSeen is then the
	// wall time (ms) of the key's last applied event, and deadline the
	// time its entry in the partition's timer heap is due (0: none).
	absent   bool
	lastSeen int64
	deadline int64
	// inline holds states for keys with at most two rules: one allocation
	// (and one cache line fewer per event) instead of two.
	inline [2]rules.State
}

// state returns k's rule state, matching rules again when the set was
// reloaded or the key's tags changed since. It returns nil when no rule
// matches k (the "no match" is remembered like a match).
func (h *Handler) state(k *actors.Key) *keyState {
	rs := h.set.Load()
	ks, _ := k.State.(*keyState)
	if ks == nil || ks.gen != rs.gen || !sameMap(ks.tags, k.Window().Tags()) {
		ks = h.rematch(k, ks, rs)
	}
	if len(ks.rules) == 0 {
		return nil
	}
	return ks
}

func (h *Handler) rematch(k *actors.Key, old *keyState, rs *ruleSet) *keyState {
	tags := k.Window().Tags()
	matched := rs.set.Match(k.Name(), tags)
	if len(matched) == 0 {
		if old != nil {
			h.firing.dropKey(k.Name(), old)
		}
		ks := rs.none
		if len(tags) > 0 {
			ks = &keyState{gen: rs.gen, tags: tags}
		}
		k.State = ks
		return ks
	}
	ks := &keyState{gen: rs.gen, tags: tags, rules: rs.intern(matched)}
	if len(matched) <= len(ks.inline) {
		ks.states = ks.inline[:len(matched)]
	} else {
		ks.states = make([]rules.State, len(matched))
	}
	if old != nil {
		ks.lastSeen, ks.deadline = old.lastSeen, old.deadline
		for i, r := range matched {
			for j, o := range old.rules {
				if o.Name == r.Name && o.Equal(r) {
					ks.states[i] = old.states[j]
					break
				}
			}
		}
		// Alerts of rules that no longer apply leave the registry.
		for j, o := range old.rules {
			if old.states[j].Phase() == rules.FiringPhase && !contains(matched, o) {
				h.firing.remove(o.Name, k.Name())
			}
		}
	}
	for _, r := range matched {
		ks.absent = ks.absent || r.IsAbsent()
	}
	if ks.absent && ks.lastSeen == 0 {
		ks.lastSeen = h.clock.Now().UnixMilli()
	}
	k.State = ks
	h.rearm(k, ks)
	return ks
}

// rearm arms k's timer when its next deadline is not the armed one (an
// older entry is then skipped when it comes due).
func (h *Handler) rearm(k *actors.Key, ks *keyState) {
	if ks.absent && nextDeadline(ks) != ks.deadline {
		h.arm(k, ks)
	}
}

// contains reports whether rs holds a rule Equal to r with its name.
func contains(rs []*rules.Rule, r *rules.Rule) bool {
	for _, x := range rs {
		if x.Name == r.Name && x.Equal(r) {
			return true
		}
	}
	return false
}

func sameMap(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	if len(a) == 0 {
		return true
	}
	// Window.Tags returns the same map until the tags change.
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// Apply implements actors.Handler: the event goes into the window, then
// every matching rule is evaluated: threshold rules at the event's time
// when the event was applied (a late or duplicate event changes no
// aggregate), absent rules told the key was seen (by any event).
func (h *Handler) Apply(k *actors.Key, ev *event.Event) window.Outcome {
	out := k.Window().Add(ev)
	ks := h.state(k)
	if ks == nil {
		return out
	}
	var c valueCache
	for i, r := range ks.rules {
		st := &ks.states[i]
		var tr rules.Transition
		var ok bool
		switch {
		case r.IsAbsent():
			tr, ok = r.Seen(st, k.Name(), ev.TS)
		case out == window.Applied:
			tr, ok = r.Eval(st, k.Name(), c.value(r, k.Window()), ev.TS)
		}
		if ok {
			h.transition(k, r, &tr)
		}
	}
	if ks.absent {
		ks.lastSeen = h.clock.Now().UnixMilli()
		if ks.deadline == 0 {
			h.arm(k, ks)
		}
	}
	return out
}

// valueCache computes StatsOver once per sub-window for the threshold
// rules of one evaluation.
type valueCache struct {
	n    int
	over [4]time.Duration
	agg  [4]window.Aggregates
}

func (c *valueCache) value(r *rules.Rule, w *window.Window) float64 {
	if r.Aggregate.IsQuantile() || w.Empty() {
		return r.Value(w)
	}
	for i := range c.n {
		if c.over[i] == r.Over {
			return r.FromStats(&c.agg[i])
		}
	}
	a := w.StatsOver(r.Over)
	if c.n < len(c.over) {
		c.over[c.n], c.agg[c.n] = r.Over, a
		c.n++
	}
	return r.FromStats(&a)
}

// transition records tr in the registry and emits it (the engine drops it
// while replaying).
func (h *Handler) transition(k *actors.Key, r *rules.Rule, tr *rules.Transition) {
	tr.Source = r
	if tr.State == rules.Firing {
		h.firing.put(*tr)
	} else {
		h.firing.remove(tr.Rule, tr.Key)
	}
	if !k.Replaying() {
		h.metrics.transitions.WithLabelValues(tr.State).Inc()
	}
	k.Emit(*tr)
}

// Keep implements actors.StatefulHandler: a key stays live while it has a
// firing alert (so that its resolution is seen and published) or an absent
// rule (which watches every key it has seen, idle or not).
func (h *Handler) Keep(k *actors.Key) bool {
	ks := h.state(k)
	if ks == nil {
		return false
	}
	if ks.absent {
		return true
	}
	for i := range ks.states {
		if ks.states[i].Phase() == rules.FiringPhase {
			return true
		}
	}
	return false
}

// Dropped implements actors.StatefulHandler: the key's alerts leave this
// node's registry (a handoff registers them again on the new owner).
func (h *Handler) Dropped(k *actors.Key) {
	if ks, _ := k.State.(*keyState); ks != nil {
		h.firing.dropKey(k.Name(), ks)
	}
}

// Describe implements actors.StatefulHandler: one entry per matching rule.
func (h *Handler) Describe(k *actors.Key, st *api.KeyState) {
	ks := h.state(k)
	if ks == nil {
		return
	}
	for i, r := range ks.rules {
		s := &ks.states[i]
		rs := api.RuleState{Rule: r.Name, State: s.Phase().String(), Severity: r.Severity}
		if r.IsAbsent() {
			rs.Kind = "absent"
			last := time.UnixMilli(ks.lastSeen).UTC()
			rs.LastSeen = &last
		} else {
			rs.Kind = "threshold"
			if v := r.Value(k.Window()); !math.IsNaN(v) {
				rs.Value = &v
			}
		}
		if since := s.Since(); since != 0 {
			t := time.UnixMilli(since).UTC()
			rs.Since = &t
		}
		st.Rules = append(st.Rules, rs)
	}
}

// stateVersion prefixes MarshalState's encoding.
const stateVersion = 1

// MarshalState implements actors.StatefulHandler: the version, lastSeen,
// then per rule its name and rules.State encoding, all length-prefixed.
func (h *Handler) MarshalState(k *actors.Key) []byte {
	ks, _ := k.State.(*keyState)
	if ks == nil || len(ks.rules) == 0 {
		return nil
	}
	b := []byte{stateVersion}
	b = binary.AppendVarint(b, ks.lastSeen)
	b = binary.AppendUvarint(b, uint64(len(ks.rules)))
	for i, r := range ks.rules {
		st, _ := ks.states[i].MarshalBinary()
		b = binary.AppendUvarint(b, uint64(len(r.Name)))
		b = append(b, r.Name...)
		b = binary.AppendUvarint(b, uint64(len(st)))
		b = append(b, st...)
	}
	return b
}

// errState is wrapped by RestoreState's decoding errors.
var errState = errors.New("alerts: invalid key rule state")

// RestoreState implements actors.StatefulHandler: the rules matching k now
// take the states handed over for rules of the same name (the sender's
// definition may differ during a rolling reload: the state is kept, as the
// rule name is the alert's identity), then absent timers are armed.
func (h *Handler) RestoreState(k *actors.Key, data []byte) error {
	k.State = nil
	if len(data) == 0 {
		h.state(k)
		return nil
	}
	if data[0] != stateVersion {
		return fmt.Errorf("%w: version %d", errState, data[0])
	}
	rest := data[1:]
	lastSeen, n := binary.Varint(rest)
	if n <= 0 {
		return fmt.Errorf("%w: last seen", errState)
	}
	rest = rest[n:]
	count, n := binary.Uvarint(rest)
	if n <= 0 || count > uint64(len(rest)) {
		return fmt.Errorf("%w: rule count", errState)
	}
	rest = rest[n:]
	byName := make(map[string]rules.State, count)
	for range count {
		var name, st []byte
		var err error
		if name, rest, err = field(rest); err != nil {
			return err
		}
		if st, rest, err = field(rest); err != nil {
			return err
		}
		var s rules.State
		if err := s.UnmarshalBinary(st); err != nil {
			return fmt.Errorf("%w: rule %q: %v", errState, name, err)
		}
		byName[string(name)] = s
	}
	if len(rest) != 0 {
		return fmt.Errorf("%w: %d trailing bytes", errState, len(rest))
	}
	ks := h.state(k)
	if ks == nil {
		return nil
	}
	ks.lastSeen = lastSeen
	for i, r := range ks.rules {
		if s, ok := byName[r.Name]; ok {
			ks.states[i] = s
			if s.Phase() == rules.FiringPhase {
				h.firing.put(firingOf(r, k.Name(), &s))
			}
		}
	}
	h.rearm(k, ks)
	return nil
}

// firingOf rebuilds the registry entry of a firing state handed over.
func firingOf(r *rules.Rule, key string, s *rules.State) rules.Transition {
	tr := rules.Transition{Rule: r.Name, Key: key, State: rules.Firing, Value: math.NaN(),
		Threshold: r.Threshold, Severity: r.Severity, Labels: r.Labels, StartedAt: s.Since(), At: s.Newest(), Source: r}
	if r.IsAbsent() {
		tr.Threshold = r.Absent.Seconds()
	}
	return tr
}

func field(b []byte) (f, rest []byte, err error) {
	l, n := binary.Uvarint(b)
	if n <= 0 || l > uint64(len(b)-n) {
		return nil, nil, fmt.Errorf("%w: truncated", errState)
	}
	return b[n : n+int(l)], b[n+int(l):], nil
}

// registry holds the node's firing alerts, by (rule, key).
type registry struct {
	mu sync.Mutex
	m  map[alertKey]rules.Transition
}

type alertKey struct{ rule, key string }

func (r *registry) put(t rules.Transition) {
	r.mu.Lock()
	r.m[alertKey{t.Rule, t.Key}] = t
	r.mu.Unlock()
}

func (r *registry) remove(rule, key string) {
	r.mu.Lock()
	delete(r.m, alertKey{rule, key})
	r.mu.Unlock()
}

func (r *registry) dropKey(key string, ks *keyState) {
	for i, ru := range ks.rules {
		if ks.states[i].Phase() == rules.FiringPhase {
			r.remove(ru.Name, key)
		}
	}
}

func (r *registry) retain(keep func(*rules.Transition) bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for k, t := range r.m {
		if !keep(&t) {
			delete(r.m, k)
		}
	}
}

func (r *registry) len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.m)
}

func (r *registry) list() []rules.Transition {
	r.mu.Lock()
	out := make([]rules.Transition, 0, len(r.m))
	for _, t := range r.m {
		out = append(out, t)
	}
	r.mu.Unlock()
	sort.Slice(out, func(i, j int) bool {
		if out[i].Key != out[j].Key {
			return out[i].Key < out[j].Key
		}
		return out[i].Rule < out[j].Rule
	})
	return out
}

type metrics struct {
	transitions *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer, h *Handler) (*metrics, error) {
	m := &metrics{
		transitions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "squall_alert_transitions_total",
			Help: "Alert transitions emitted by key actors, by state (firing, resolved); replays not counted.",
		}, []string{"state"}),
	}
	firing := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "squall_alerts_firing", Help: "Firing alerts of the keys this node serves.",
	}, func() float64 { return float64(h.firing.len()) })
	if reg != nil {
		for _, c := range []prometheus.Collector{m.transitions, firing} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("alerts: metrics: %w", err)
			}
		}
	}
	return m, nil
}
