package actors

import (
	"time"

	"github.com/squallhq/squall/api"
	"github.com/squallhq/squall/event"
	"github.com/squallhq/squall/window"
)

// Handler is a key's logic, run inline by the partition actor that owns the
// key, one event at a time in arrival order (like a Storm bolt or a Flink
// KeyedProcessFunction). A Go program that embeds Squall supplies its own;
// the built-in WindowHandler maintains the window aggregates. A Handler is
// shared by all keys of a node and called from several partitions at once,
// so per-key data belongs in Key.State, not in the Handler.
type Handler interface {
	// Apply applies ev to the key's state and reports whether it was
	// applied, late or a duplicate.
	Apply(k *Key, ev *event.Event) window.Outcome
}

// StatefulHandler is a Handler with per-key state beyond the window (in
// Key.State) that must move with its partition, be inspectable, outlive
// passivation while it matters, and react to wall-clock time. The engine
// calls every method on the key's partition goroutine, like Apply.
type StatefulHandler interface {
	Handler
	// MarshalState returns k's handler state for a handoff; nil for none.
	MarshalState(k *Key) []byte
	// RestoreState installs the state handed over with k (state may be
	// nil), after k's window has been restored.
	RestoreState(k *Key, state []byte) error
	// Tick runs on each served partition every Config.TickInterval, with
	// the engine clock's time.
	Tick(p PartitionView, now time.Time)
	// Keep reports whether idle key k must stay live for now (for
	// instance while it has a firing alert): passivation skips it.
	Keep(k *Key) bool
	// Dropped is called when k's actor ends: passivated, handed off, or
	// its partition released or stopped.
	Dropped(k *Key)
	// Describe adds the handler's view of k to k's state document.
	Describe(k *Key, st *api.KeyState)
}

// PartitionView is what a StatefulHandler's Tick sees of a partition.
// It is valid during the call only.
type PartitionView struct{ p *partition }

// ID returns the partition.
func (v PartitionView) ID() int32 { return v.p.id }

// Key returns the live key actor named name, or nil.
func (v PartitionView) Key(name string) *Key { return v.p.keys[name] }

// State returns the handler's data for this partition (for instance a
// timer heap): it lives as long as this node serves the partition.
func (v PartitionView) State() *any { return &v.p.hstate }

// WindowHandler is the built-in Handler: it adds the event to the key's
// window. Embed it to add logic on top.
type WindowHandler struct{}

// Apply adds ev to k's window.
func (WindowHandler) Apply(k *Key, ev *event.Event) window.Outcome {
	return k.win.Add(ev)
}

// Output is what a Handler emits for a key.
type Output struct {
	Key       string
	Partition int32
	// Offset is the Kafka offset of the record whose event produced the
	// output, or -1 (not from Kafka, or emitted by Tick).
	Offset  int64
	Payload any
}

// Key is a key's virtual actor: its window and the handler's own state.
// It is only ever touched by its partition's goroutine; a Handler must not
// keep it beyond Apply.
type Key struct {
	name      string
	partition int32
	win       *window.Window
	activated time.Time
	lastEvent time.Time
	p         *partition

	// State is free for the Handler's per-key data; it lives and dies with
	// the key actor.
	State any

	// offs keeps where a replay that rebuilds the window starts; nil
	// until a record from a log is applied.
	offs *keyOffsets

	// prev and next link the partition's keys from least to most recently
	// used, for passivation.
	prev, next *Key
}

// Name returns the key.
func (k *Key) Name() string { return k.name }

// Partition returns the key's partition.
func (k *Key) Partition() int32 { return k.partition }

// Window returns the key's window.
func (k *Key) Window() *window.Window { return k.win }

// Emit hands an output to the engine's Sink. While the partition replays
// Kafka records to rebuild state, outputs are dropped.
func (k *Key) Emit(payload any) {
	k.p.emit(Output{Key: k.name, Partition: k.partition, Offset: k.p.offset, Payload: payload})
}

// Offset returns the Kafka offset of the record being applied, or -1
// outside Apply or when the event did not come from Kafka.
func (k *Key) Offset() int64 { return k.p.offset }

// Replaying reports whether the event being applied is replayed to rebuild
// state (outputs are dropped).
func (k *Key) Replaying() bool { return k.p.replaying }

// PartitionState returns the handler's data for k's partition, as
// PartitionView.State.
func (k *Key) PartitionState() *any { return &k.p.hstate }

// KeySnapshot is a key actor's state in transit, when its partition moves
// to another node.
type KeySnapshot struct {
	Key       string
	Window    []byte // window.Window.MarshalBinary
	Activated time.Time
	LastEvent time.Time
	// Offsets are the log offsets of the records in the window, as pairs
	// (bucket, oldest offset of the records up to that bucket and after
	// the previous pair's), ordered by bucket; nil when not fed from a log.
	Offsets []int64
	// Handler is the key's StatefulHandler state (MarshalState); nil when
	// the Handler keeps none.
	Handler []byte
}

// oldestOffset returns the offset of a log record at or before the oldest
// one in the key's window (see keyOffsets), or -1.
func (k *Key) oldestOffset() int64 {
	if k.offs == nil {
		return -1
	}
	return k.offs.oldest(k.win.NewestBucket()-k.p.windowBuckets, k.p.offSeg)
}

// offsetPairs returns the key's offsets as KeySnapshot.Offsets.
func (k *Key) offsetPairs() []int64 {
	if k.offs == nil {
		return nil
	}
	return k.offs.pairs(k.win.NewestBucket()-k.p.windowBuckets, k.p.offSeg)
}
