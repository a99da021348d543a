// Package replay rebuilds one key's state from a sequence of its events, in
// a fresh key actor that runs the node's own code, and shows every step:
// what a bug report about one key needs, and what `squallctl replay` does.
//
// Replay builds an actors.Engine of the node's window shape, partition
// count and alert rules (alerts.Handler, as --rules does), submits the
// events one at a time, reads the key's state after each one, and returns
// the final api.KeyState document — the one GET /debug/actors/{key}
// serves — so that Diff compares it field by field with the live key's.
// The late and duplicate decisions, the window math and the rule
// evaluation are those of the node: nothing is reimplemented here.
//
// The events come from a Source: the node's kept events (KeptEvents, from
// GET /debug/actors/{key}/events), a file of NDJSON events (NewFileSource),
// a Kafka partition (NewKafkaSource) or the JetStream log of a durable node
// (NewJetStreamSource). A replay reproduces the live state when it is given
// every event the key's actor applied since it was activated, in the order
// it received them; see docs/operations.md#replaying-a-key for where to find
// them.
//
// What a replay does not reproduce: wall-clock times (activated_at,
// last_event_at, an absent rule's last_seen and since), which Diff leaves
// out, and absent rules' firing, which needs the clock (the replay engine
// never ticks them).
package replay

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/squallhq/squall/actors"
	"github.com/squallhq/squall/alerts"
	"github.com/squallhq/squall/api"
	"github.com/squallhq/squall/cluster"
	"github.com/squallhq/squall/event"
	"github.com/squallhq/squall/rules"
	"github.com/squallhq/squall/window"
)

// Sentinel errors of the replay package; returned errors wrap them.
var (
	// ErrConfig is wrapped by Config.Validate's errors.
	ErrConfig = errors.New("replay: invalid config")
	// ErrRejected: the replay engine did not take an event (its handler
	// failed on it).
	ErrRejected = errors.New("replay: event not taken")
)

// Config is what the fresh key actor is built with: the node's settings.
type Config struct {
	// Shape is the node's window shape (--retention, --resolution,
	// --subwindows, --recent-events). Default window.DefaultShape().
	Shape window.Shape
	// Partitions is the node's number of key partitions (--partitions, or
	// the Kafka topic's partition count): it names the key's partition in
	// the state document. Default 64.
	Partitions int
	// Rules are the alert rules to run (the node's --rules file, or a
	// changed one to try). Default nil: no rules, as a node without --rules.
	Rules *rules.Set
	// Node names the node in the final state document. Default "replay".
	Node string
}

// DefaultConfig returns the defaults documented on Config.
func DefaultConfig() Config {
	return Config{Shape: window.DefaultShape(), Partitions: 64, Node: "replay"}
}

// ConfigOf returns the configuration of the node that served ke (GET
// /debug/actors/{key}/events): its window shape, partition count and id,
// without rules (the node does not serve its rules file: set Rules from
// it). The result is validated.
func ConfigOf(ke *api.KeyEvents) (Config, error) {
	ms := func(v int64) time.Duration { return time.Duration(v) * time.Millisecond }
	c := Config{Partitions: ke.Partitions, Node: ke.Node, Shape: window.Shape{
		Retention:  ms(ke.Shape.RetentionMs),
		Resolution: ms(ke.Shape.ResolutionMs),
		Recent:     ke.Kept,
	}}
	for _, d := range ke.Shape.SubwindowsMs {
		c.Shape.Subwindows = append(c.Shape.Subwindows, ms(d))
	}
	return c, c.Validate()
}

// RulesOf parses the rules of a node's GET /debug/rules document
// (client.Rules) with the node's parser; nil when the node runs none.
func RulesOf(doc *api.Rules) (*rules.Set, error) {
	if doc.File == "" {
		return nil, nil
	}
	set, err := rules.Parse(doc.File, []byte(doc.YAML))
	if err != nil {
		return nil, fmt.Errorf("replay: rules of node %s: %w", doc.Node, err)
	}
	return set, nil
}

// Validate reports what is wrong with c, wrapping ErrConfig.
func (c *Config) Validate() error {
	if err := c.Shape.Validate(); err != nil {
		return fmt.Errorf("%w: %w", ErrConfig, err)
	}
	if c.Partitions < 1 || c.Partitions > 1<<16 {
		return fmt.Errorf("%w: partitions %d: must be in 1..65536", ErrConfig, c.Partitions)
	}
	if c.Rules != nil {
		if err := c.Rules.CheckShape(&c.Shape); err != nil {
			return fmt.Errorf("%w: %w", ErrConfig, err)
		}
	}
	return nil
}

// Record is one event of a replay's input, with its position in the log.
type Record struct {
	event.Event
	// Offset is the record's Kafka offset or JetStream stream sequence;
	// -1 when the event does not come from a log (kept events, a file).
	Offset int64
}

// Source yields a key's events in the order the key received them.
// Next returns io.EOF after the last one. A Source is used by one
// goroutine; Close releases what it holds and is safe to call twice.
type Source interface {
	Next(ctx context.Context) (Record, error)
	Close() error
}

// Step is what one event did: the event, its outcome and the aggregates
// after it (api.ReplayEvent), and the alert transitions it caused.
type Step struct {
	api.ReplayEvent
	// Transitions are the alert transitions the event caused.
	Transitions []rules.Transition `json:"transitions,omitempty"`
}

// String returns the step as one line: index, offset (when from a log),
// ts (RFC 3339, UTC), value, id, outcome, then the whole window's count,
// sum, min, max, mean and p99 after it, and each rule transition, for
// example:
//
//	#1 @17 2025-11-25T10:00:01Z 95 id=b applied  count=2 sum=135 min=40 max=95 mean=67.5 p99=40  high-cpu firing (95, threshold 90)
func (s Step) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "#%d", s.Index)
	if s.Offset >= 0 {
		fmt.Fprintf(&b, " @%d", s.Offset)
	}
	fmt.Fprintf(&b, " %s %s", time.UnixMilli(s.TS).UTC().Format(time.RFC3339Nano), num(s.Value))
	if s.ID != "" {
		fmt.Fprintf(&b, " id=%s", s.ID)
	}
	w := s.Window
	fmt.Fprintf(&b, " %s  count=%d sum=%s min=%s max=%s mean=%s p99=%s", s.Outcome, w.Count,
		num(w.Sum), num(w.Min), num(w.Max), num(w.Mean), num(w.P99))
	for _, tr := range s.Transitions {
		fmt.Fprintf(&b, "  %s %s (%s, threshold %s)", tr.Rule, tr.State, num(tr.Value), num(tr.Threshold))
	}
	return b.String()
}

func num(v float64) string { return FormatValue(v) }

// FormatValue formats a value or an aggregate for people: an integer in
// full (below 10^15), any other number to 10 significant digits (a mean of
// 155/3 is 51.66666667, not 51.666666666666664). Documents (JSON) carry
// the exact value.
func FormatValue(v float64) string {
	if v == math.Trunc(v) && math.Abs(v) < 1e15 {
		return strconv.FormatFloat(v, 'f', 0, 64)
	}
	return strconv.FormatFloat(v, 'g', 10, 64)
}

// Result is the outcome of a replay.
type Result struct {
	// State is the key's state after the last event, as the node serves
	// it; nil when no event of the key was replayed.
	State *api.KeyState
	// Steps counts the key's events replayed; Skipped the events of other
	// keys the source yielded.
	Steps, Skipped int
}

// Replay applies the events of key from src, in order, to a fresh key actor
// built with cfg, calls step (when not nil) after each one, and returns the
// key's final state. Events of other keys are skipped. An error of step or
// of the source ends the replay and is returned. Replay does not close src.
func Replay(ctx context.Context, cfg Config, key string, src Source, step func(Step) error) (*Result, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	var mu sync.Mutex
	var trs []rules.Transition
	ac := actors.DefaultConfig()
	ac.Node, ac.Partitions, ac.Shape = cfg.Node, cfg.Partitions, cfg.Shape
	ac.MaxInflight = 1
	ac.TickInterval = 24 * time.Hour // absent rules need the wall clock: not replayed
	ac.IdleTTL = 24 * time.Hour
	ac.Logger = slog.New(slog.DiscardHandler)
	ac.Sink = func(o actors.Output) {
		if tr, ok := o.Payload.(rules.Transition); ok {
			mu.Lock()
			trs = append(trs, tr)
			mu.Unlock()
		}
	}
	if cfg.Rules != nil {
		h, err := alerts.New(cfg.Rules, nil, nil)
		if err != nil {
			return nil, fmt.Errorf("replay: rules: %w", err)
		}
		ac.Handler = h
	}
	e, err := actors.New(ac)
	if err != nil {
		return nil, fmt.Errorf("replay: engine: %w", err)
	}
	defer e.Close()

	res := &Result{}
	out := make([]actors.Result, 1)
	for {
		rec, err := src.Next(ctx)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return res, err
		}
		if rec.Key != key {
			res.Skipped++
			continue
		}
		if err := e.Submit(ctx, []event.Event{rec.Event}, out); err != nil {
			return res, fmt.Errorf("replay: event %d: %w", res.Steps, err)
		}
		if !out[0].Accepted() {
			return res, fmt.Errorf("%w: event %d: %s", ErrRejected, res.Steps, out[0])
		}
		st, err := e.Get(ctx, key)
		if err != nil {
			return res, fmt.Errorf("replay: state after event %d: %w", res.Steps, err)
		}
		res.State = st
		mu.Lock()
		s := Step{ReplayEvent: api.ReplayEvent{Index: res.Steps, Offset: rec.Offset, TS: rec.TS, Value: rec.Value, ID: rec.ID,
			Tags: rec.Tags, Outcome: out[0].String(), Window: st.Window, Subwindows: st.Subwindows}, Transitions: trs}
		trs = nil
		mu.Unlock()
		res.Steps++
		if step != nil {
			if err := step(s); err != nil {
				return res, err
			}
		}
	}
	return res, nil
}

// LogRange returns, from a node's GET /debug/cluster document, the range
// [from, to) of its log partition p (Kafka offsets, or JetStream stream
// sequences) behind what the node holds now: from where the partition's
// source began (replay_from, the restore point of the progress it started
// from) to one past the last record it applied (applied); from == to when it
// has applied none yet. ok is false when the node consumes no log partition
// p (no log, or another node owns it).
//
// A key whose actor was activated later (its first event, or again after
// passivation) counts only the events since: its window and rules match a
// replay of the range, its lifetime counters may not.
func LogRange(cl *api.Cluster, p int32) (from, to int64, ok bool) {
	for _, s := range cl.Sources {
		if s.Partition == p {
			from = max(s.ReplayFrom, 0)
			return from, max(s.Applied, from), true
		}
	}
	return 0, 0, false
}

// KeyPartition returns the key partition of key among n, as the node
// computes it for every input (Kafka's murmur2 partitioner): the partition
// whose actor holds the key and, when producers use Kafka's default
// partitioner (the node's own producer does), the Kafka partition and
// JetStream subject (squall.log.<p>) its records are in.
func KeyPartition(key string, n int) int32 { return cluster.Partition(key, n) }
