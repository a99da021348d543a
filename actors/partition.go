package actors

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/squallhq/squall/api"
	"github.com/squallhq/squall/event"
	"github.com/squallhq/squall/window"
)

// applyBatch carries the events of one submission that belong to one
// partition. Results are written at out[idx[i]] for events[i].
type applyBatch struct {
	part    int32
	offsets []int64 // record offsets of events; nil when not from Kafka
	events  []event.Event
	idx     []int32
	sub     *submission
}

type getKey struct{ key string }

type getEvents struct{ key string }

type getSeries struct{ key string }

type listKeys struct {
	prefix string
	after  string
	limit  int
}

type keyList struct {
	keys      []api.KeySummary
	truncated bool
}

type sweep struct{ done chan<- int }

type restoreOffsetReq struct{}

// partition is the protoactor actor that owns the key actors of one
// partition and runs their handlers inline, so an event costs a map lookup
// and a handler call, not a mailbox hop.
type partition struct {
	e    *Engine
	id   int32
	keys map[string]*Key
	// highWater is the largest len(keys) since the map was last rebuilt;
	// Go maps never shrink, so passivation rebuilds a map that has emptied.
	highWater int
	// head is the least recently used key, tail the most recent.
	head, tail *Key
	// resMS is the bucket width in ms; windowBuckets the window's length
	// in buckets; offSeg the buckets per segment of a key's offsets.
	resMS, windowBuckets, offSeg int64
	// tally counts outcomes of the current batch, flushed to metrics.
	tally [NumResults]int
	// awaiting holds events (in stash) until the previous owner's state
	// has arrived.
	awaiting bool
	stash    []*applyBatch
	// replaying suppresses handler outputs while a batch rebuilds state.
	replaying bool
	// offset is the Kafka offset of the record being applied, or -1.
	offset int64
	// sh is the Handler when it is a StatefulHandler; hstate its data
	// for this partition.
	sh     StatefulHandler
	hstate any
}

type tick struct{ done chan<- int }

func newPartition(e *Engine, id int32) *partition {
	res := e.cfg.Shape.Resolution.Milliseconds()
	sh, _ := e.cfg.Handler.(StatefulHandler)
	p := &partition{e: e, id: id, keys: make(map[string]*Key), resMS: res,
		windowBuckets: e.cfg.Shape.Retention.Milliseconds() / res, offset: -1, sh: sh}
	p.offSeg = offsetSegment(p.windowBuckets)
	return p
}

// restoreOffset returns an offset at or before the oldest record still in
// some key's window (see keyOffsets), or -1.
func (p *partition) restoreOffset() int64 {
	oldest := int64(-1)
	for k := p.head; k != nil; k = k.next {
		if o := k.oldestOffset(); o >= 0 && (oldest < 0 || o < oldest) {
			oldest = o
		}
	}
	return oldest
}

// Receive implements actor.Actor.
func (p *partition) Receive(c actor.Context) {
	switch m := c.Message().(type) {
	case *actor.Started:
		if !p.awaiting && p.e.cfg.OnServe != nil {
			p.e.cfg.OnServe(p.id, false)
		}
	case *applyBatch:
		if p.awaiting {
			p.stash = append(p.stash, m)
			return
		}
		p.apply(m)
	case *restore:
		c.Respond(p.restore(m))
	case awaitExpired:
		if p.awaiting {
			p.e.cfg.Logger.Warn("no handoff from the previous owner: partition starts empty", "partition", p.id)
			p.e.metrics.handoffs.WithLabelValues("in", "timeout").Inc()
			p.serve(false)
		}
	case release:
		c.Respond(p.snapshot())
	case *getKey:
		c.Respond(ofLive(p.keys[m.key], p.state))
	case *getEvents:
		c.Respond(ofLive(p.keys[m.key], p.events))
	case *getSeries:
		c.Respond(ofLive(p.keys[m.key], p.series))
	case *listKeys:
		c.Respond(p.list(m))
	case restoreOffsetReq:
		c.Respond(p.restoreOffset())
	case *sweep:
		m.done <- p.passivate(p.e.cfg.Clock.Now())
	case *tick:
		if p.sh != nil && !p.awaiting {
			p.tick()
		}
		m.done <- 0
	case *actor.Stopped:
		p.release()
	}
}

// serve ends the wait for a handoff and applies what was held meanwhile.
func (p *partition) serve(handedOver bool) {
	p.awaiting = false
	if p.e.cfg.OnServe != nil {
		p.e.cfg.OnServe(p.id, handedOver)
	}
	for _, b := range p.stash {
		p.apply(b)
	}
	p.stash = nil
}

func (p *partition) restore(m *restore) error {
	if !p.awaiting {
		p.e.metrics.handoffs.WithLabelValues("in", "refused").Inc()
		return fmt.Errorf("%w: partition %d", ErrNotAwaiting, p.id)
	}
	for _, ks := range m.keys {
		w := window.New(&p.e.cfg.Shape)
		if err := w.UnmarshalBinary(ks.Window); err != nil {
			return fmt.Errorf("actors: restore key %q: %w", ks.Key, err)
		}
		k := p.keys[ks.Key]
		if k == nil {
			p.e.live.Add(1) // handed over keys are never shed
			k = &Key{name: strings.Clone(ks.Key), partition: p.id, p: p}
			p.keys[k.name] = k
			p.highWater = max(p.highWater, len(p.keys))
		}
		k.win, k.activated, k.lastEvent = w, ks.Activated, ks.LastEvent
		k.offs = nil
		if len(ks.Offsets) > 0 {
			k.offs = new(keyOffsets)
			k.offs.load(ks.Offsets, p.offSeg)
		}
		p.touch(k)
		if p.sh != nil {
			if err := p.sh.RestoreState(k, ks.Handler); err != nil {
				return fmt.Errorf("actors: restore key %q handler state: %w", ks.Key, err)
			}
		}
	}
	if m.last && p.awaiting {
		p.e.metrics.handoffs.WithLabelValues("in", "ok").Inc()
		p.serve(true)
	}
	return nil
}

// snapshot serialises every key for the next owner and answers the events
// held while awaiting with ResultMoved, so they are routed to it.
func (p *partition) snapshot() []KeySnapshot {
	out := make([]KeySnapshot, 0, len(p.keys))
	for k := p.head; k != nil; k = k.next { // least recently used first
		b, err := k.win.MarshalBinary()
		if err != nil {
			p.e.cfg.Logger.Error("snapshot key", "key", k.name, "err", err)
			continue
		}
		ks := KeySnapshot{Key: k.name, Window: b, Activated: k.activated, LastEvent: k.lastEvent,
			Offsets: k.offsetPairs()}
		if p.sh != nil {
			ks.Handler = p.sh.MarshalState(k)
		}
		out = append(out, ks)
	}
	for _, b := range p.stash {
		for _, i := range b.idx {
			b.sub.out[i] = ResultMoved
		}
		p.e.flush(&p.tally, len(b.events), b.sub)
		b.sub.partDone()
	}
	p.stash = nil
	p.awaiting = false
	p.e.metrics.handoffs.WithLabelValues("out", "ok").Inc()
	return out
}

func (p *partition) apply(b *applyBatch) {
	now := p.e.cfg.Clock.Now()
	p.replaying = b.sub.replay
	defer func() { p.replaying, p.offset = false, -1 }()
	for i := 0; i < len(b.events); {
		i = p.applyFrom(b, i, now)
	}
	if f := p.e.cfg.AfterApply; f != nil {
		f(b.events)
	}
	p.e.flush(&p.tally, len(b.events), b.sub)
	b.sub.partDone()
}

// applyFrom applies b.events[i:] and returns len(b.events), or, when a
// Handler panics, the index after the event that made it panic: one bad
// event or handler bug must not take the partition's other keys down.
func (p *partition) applyFrom(b *applyBatch, i int, now time.Time) (next int) {
	defer func() {
		if r := recover(); r != nil {
			p.e.cfg.Logger.Error("handler panicked", "key", b.events[i].Key, "panic", fmt.Sprint(r))
			b.sub.out[b.idx[i]] = ResultFailed
			p.tally[ResultFailed]++
			next = i + 1
		}
	}()
	for ; i < len(b.events); i++ {
		ev := &b.events[i]
		k := p.keys[ev.Key]
		if k == nil {
			if k = p.activate(ev.Key, now); k == nil {
				b.sub.out[b.idx[i]] = ResultShed
				p.tally[ResultShed]++
				continue
			}
		}
		if b.offsets != nil {
			p.offset = b.offsets[i]
		}
		r := Result(p.e.cfg.Handler.Apply(k, ev))
		if r == ResultApplied && b.offsets != nil {
			if k.offs == nil {
				k.offs = new(keyOffsets)
			}
			k.offs.track(ev.TS/p.resMS, b.offsets[i], p.offSeg)
		}
		b.sub.out[b.idx[i]] = r
		p.tally[r]++
		k.lastEvent = now
		p.touch(k)
	}
	return i
}

func (p *partition) activate(name string, now time.Time) *Key {
	if !p.e.reserveKey() {
		return nil
	}
	k := &Key{
		name:      strings.Clone(name),
		partition: p.id,
		win:       window.New(&p.e.cfg.Shape),
		activated: now,
		p:         p,
	}
	p.keys[k.name] = k
	if len(p.keys) > p.highWater {
		p.highWater = len(p.keys)
	}
	p.e.metrics.activations.Inc()
	return k
}

// touch moves k to the tail of the LRU list.
func (p *partition) touch(k *Key) {
	if p.tail == k {
		return
	}
	p.unlink(k)
	k.prev = p.tail
	if p.tail != nil {
		p.tail.next = k
	}
	p.tail = k
	if p.head == nil {
		p.head = k
	}
}

func (p *partition) unlink(k *Key) {
	if k.prev != nil {
		k.prev.next = k.next
	} else if p.head == k {
		p.head = k.next
	}
	if k.next != nil {
		k.next.prev = k.prev
	} else if p.tail == k {
		p.tail = k.prev
	}
	k.prev, k.next = nil, nil
}

// passivate removes the keys idle for IdleTTL or longer and returns how many.
func (p *partition) passivate(now time.Time) int {
	n := 0
	// Each idle key is looked at once: one the handler keeps moves to the
	// most recently used end.
	for left := len(p.keys); left > 0; left-- {
		k := p.head
		if k == nil || now.Sub(k.lastEvent) < p.e.cfg.IdleTTL {
			break
		}
		if p.sh != nil && p.sh.Keep(k) {
			p.touch(k)
			continue
		}
		p.unlink(k)
		delete(p.keys, k.name)
		if p.sh != nil {
			p.sh.Dropped(k)
		}
		n++
	}
	if n > 0 {
		p.e.releaseKeys(n)
		p.e.metrics.passivations.Add(float64(n))
		if p.highWater > 1024 && len(p.keys) < p.highWater/4 {
			m := make(map[string]*Key, len(p.keys))
			for name, k := range p.keys {
				m[name] = k
			}
			p.keys, p.highWater = m, len(m)
		}
	}
	return n
}

// release drops every key when the partition stops.
func (p *partition) release() {
	if p.sh != nil {
		for _, k := range p.keys {
			p.sh.Dropped(k)
		}
	}
	p.e.releaseKeys(len(p.keys))
	p.keys, p.head, p.tail = nil, nil, nil
}

func (p *partition) emit(o Output) {
	if p.replaying {
		return // restore mode: state only
	}
	p.e.metrics.outputs.Inc()
	if p.e.cfg.Sink != nil {
		p.e.cfg.Sink(o)
	}
}

func (p *partition) state(k *Key) *api.KeyState {
	applied, late, dup := k.win.Counts()
	st := &api.KeyState{
		Key:               k.name,
		Node:              p.e.cfg.Node,
		Partition:         p.id,
		ActivatedAt:       k.activated.UTC(),
		LastEventAt:       k.lastEvent.UTC(),
		EventsApplied:     applied,
		LateDropped:       late,
		DuplicatesDropped: dup,
		Window:            k.win.Aggregate(),
		Subwindows:        make(map[string]window.Aggregates, len(p.e.cfg.Shape.Subwindows)),
		Tags:              k.win.Tags(),
		Rules:             []api.RuleState{},
		Recent:            k.win.Recent(),
	}
	for _, d := range p.e.cfg.Shape.Subwindows {
		st.Subwindows[FormatDuration(d)] = k.win.AggregateOver(d)
	}
	if st.Recent == nil {
		st.Recent = []event.Event{}
	}
	for i := range st.Recent {
		st.Recent[i].Key = k.name
	}
	if p.sh != nil {
		p.sh.Describe(k, st)
	}
	return st
}

// ofLive returns doc(k), or a nil *D when k is nil (no live actor).
func ofLive[D any](k *Key, doc func(*Key) *D) *D {
	if k == nil {
		return nil
	}
	return doc(k)
}

// events returns k's kept-events document.
func (p *partition) events(k *Key) *api.KeyEvents {
	applied, late, dup := k.win.Counts()
	rec := k.win.Received()
	ke := &api.KeyEvents{
		Key:       k.name,
		Node:      p.e.cfg.Node,
		Partition: p.id,
		Kept:      p.e.cfg.Shape.Recent,
		Received:  applied + late + dup,
		Restore:   k.oldestOffset(),
		Events:    make([]api.KeptEvent, len(rec)),
		Shape: api.WindowShape{
			RetentionMs:  p.e.cfg.Shape.Retention.Milliseconds(),
			ResolutionMs: p.e.cfg.Shape.Resolution.Milliseconds(),
			SubwindowsMs: make([]int64, len(p.e.cfg.Shape.Subwindows)),
		},
		Partitions: p.e.cfg.Partitions,
	}
	for i, d := range p.e.cfg.Shape.Subwindows {
		ke.Shape.SubwindowsMs[i] = d.Milliseconds()
	}
	ke.Complete = ke.Received == uint64(len(rec))
	for i, r := range rec {
		r.Key = k.name
		ke.Events[i] = api.KeptEvent{Event: r.Event, Outcome: r.Outcome.String()}
	}
	return ke
}

// series returns k's per-bucket series document.
func (p *partition) series(k *Key) *api.KeySeries {
	sh := &p.e.cfg.Shape
	return &api.KeySeries{
		Key: k.name, Node: p.e.cfg.Node, Partition: p.id,
		ResolutionMs: sh.Resolution.Milliseconds(), RetentionMs: sh.Retention.Milliseconds(),
		Buckets: append([]window.BucketStats{}, k.win.Series()...),
	}
}

// tick runs the StatefulHandler's Tick; a panic is logged, not fatal.
func (p *partition) tick() {
	defer func() {
		if r := recover(); r != nil {
			p.e.cfg.Logger.Error("handler Tick panicked", "partition", p.id, "panic", fmt.Sprint(r))
		}
	}()
	p.sh.Tick(PartitionView{p}, p.e.cfg.Clock.Now())
}

func (p *partition) list(m *listKeys) keyList {
	var out keyList
	for name, k := range p.keys {
		if !strings.HasPrefix(name, m.prefix) || name <= m.after {
			continue
		}
		applied, _, _ := k.win.Counts()
		out.keys = append(out.keys, api.KeySummary{
			Key: name, Node: p.e.cfg.Node, Partition: p.id,
			EventsApplied: applied, LastEventAt: k.lastEvent.UTC(),
		})
	}
	sort.Slice(out.keys, func(i, j int) bool { return out.keys[i].Key < out.keys[j].Key })
	if len(out.keys) > m.limit {
		out.keys, out.truncated = out.keys[:m.limit], true
	}
	return out
}

// FormatDuration prints a sub-window length the way it is configured:
// "1m", "5m", "90s", "1h", "250ms".
func FormatDuration(d time.Duration) string {
	switch {
	case d%time.Hour == 0:
		return fmt.Sprintf("%dh", d/time.Hour)
	case d%time.Minute == 0:
		return fmt.Sprintf("%dm", d/time.Minute)
	case d%time.Second == 0:
		return fmt.Sprintf("%ds", d/time.Second)
	default:
		return fmt.Sprintf("%dms", d/time.Millisecond)
	}
}
