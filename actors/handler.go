package actors

import (
	"time"

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

// WindowHandler is the built-in Handler: it adds the event to the key's
// window. Embed it to add logic on top.
type WindowHandler struct{}

// Apply adds ev to k's window.
func (WindowHandler) Apply(k *Key, ev *event.Event) window.Outcome {
	return k.win.Add(ev)
}

// Output is what a Handler emits for a key.
type Output struct {
	Key     string
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

	// offsets holds (bucket, oldest record offset) pairs of the Kafka
	// records in the window, by bucket; nil when not fed from Kafka.
	offsets []int64

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

// Emit hands an output to the engine's Sink.
func (k *Key) Emit(payload any) {
	k.p.emit(Output{Key: k.name, Payload: payload})
}

// KeySnapshot is a key actor's state in transit, when its partition moves
// to another node.
type KeySnapshot struct {
	Key       string
	Window    []byte // window.Window.MarshalBinary
	Activated time.Time
	LastEvent time.Time
	// Offsets are the Kafka offsets of the records in the window, as pairs
	// (bucket, oldest offset in that bucket); nil when not fed from Kafka.
	Offsets []int64
}

// trackOffset records that the record at offset off landed in bucket.
// k.offsets holds (bucket, oldest offset) pairs ordered by bucket.
func (k *Key) trackOffset(bucket, off int64, windowBuckets int64) {
	n := len(k.offsets)
	switch {
	case n > 0 && k.offsets[n-2] == bucket:
		k.offsets[n-1] = min(k.offsets[n-1], off)
	case n == 0 || k.offsets[n-2] < bucket:
		k.offsets = append(k.offsets, bucket, off)
	default: // out of order: find its place
		i := 0
		for i < n && k.offsets[i] < bucket {
			i += 2
		}
		if i < n && k.offsets[i] == bucket {
			k.offsets[i+1] = min(k.offsets[i+1], off)
		} else {
			k.offsets = append(k.offsets[:i], append([]int64{bucket, off}, k.offsets[i:]...)...)
		}
	}
	k.evictOffsets(windowBuckets)
}

// evictOffsets drops the pairs of buckets the window no longer holds.
func (k *Key) evictOffsets(windowBuckets int64) {
	cut := k.win.NewestBucket() - windowBuckets
	i := 0
	for i < len(k.offsets) && k.offsets[i] <= cut {
		i += 2
	}
	if i > 0 {
		k.offsets = append(k.offsets[:0], k.offsets[i:]...)
	}
}

// oldestOffset returns the oldest record offset in the key's window, or -1.
func (k *Key) oldestOffset(windowBuckets int64) int64 {
	k.evictOffsets(windowBuckets)
	oldest := int64(-1)
	for i := 1; i < len(k.offsets); i += 2 {
		if oldest < 0 || k.offsets[i] < oldest {
			oldest = k.offsets[i]
		}
	}
	return oldest
}
