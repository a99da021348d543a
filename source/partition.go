package source

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/squallhq/squall/event"
)

// Values of partition.state.
const (
	stateStarting int32 = iota
	stateReplaying
	stateLive
)

var stateNames = [...]string{StateStarting, StateReplaying, StateLive}

// partition is one consumption of a partition, from Start to Stop. A
// partition started again is a new one.
type partition struct {
	m     *Manager
	id    int32
	label string
	prev  *partition // an instance being stopped, waited for before starting

	resolveCtx    context.Context // canceled by Stop: ends the start
	resolveCancel context.CancelFunc
	applyCtx      context.Context // canceled when Stop gives up waiting
	applyCancel   context.CancelFunc
	resolved      chan struct{} // closed when the resolver returns
	stopped       chan struct{} // closed when Stop is done with it

	// Set by the resolver before the actor starts.
	startAt              kgo.Offset
	replayFrom, replayTo int64
	planned              atomic.Bool
	pid                  atomic.Pointer[actor.PID] // nil until the actor runs

	state     atomic.Int32
	applied   atomic.Int64 // one past the last record handled, -1 unknown
	committed atomic.Int64 // last committed, -1 none
	hwm       atomic.Int64 // high watermark of the last fetch, -1 unknown
	queued    atomic.Int64 // records sent to the actor, not yet received
	stopping  atomic.Bool
	abort     atomic.Bool // skip whatever is left: Stop gave up waiting
	commitDue atomic.Bool // the committer wants a commit point

	pubMu  sync.Mutex
	pub    commitPoint
	hasPub bool

	// flow is the back-pressure state; franz-go is called under it.
	flow     sync.Mutex
	buffered int       // records dispatched and not yet applied
	peak     int       // largest buffered seen (tests)
	pauses   int       // times fetching was paused (tests)
	paused   bool      // fetching paused by us
	over     bool      // past pauseAt, the poll loop waits for it (throttle)
	released int       // records applied (or abandoned) so far
	checked  int       // released at the throttle's last progress check
	overAt   time.Time // when it went over
	removed  bool      // no longer consumed: never resume

	lag, replaying, bufGauge prometheus.Gauge // set by initMetrics
	hasMetrics               atomic.Bool
}

func newPartition(m *Manager, p int32, prev *partition) *partition {
	part := &partition{m: m, id: p, label: strconv.Itoa(int(p)), prev: prev,
		resolved: make(chan struct{}), stopped: make(chan struct{}), replayFrom: -1, replayTo: -1}
	part.resolveCtx, part.resolveCancel = context.WithCancel(context.Background())
	part.applyCtx, part.applyCancel = context.WithCancel(context.Background())
	part.applied.Store(-1)
	part.committed.Store(-1)
	part.hwm.Store(-1)
	return part
}

// initMetrics creates the partition's metric series; the resolver calls it
// once the previous instance, which deletes its series, has stopped.
func (p *partition) initMetrics() {
	met := p.m.met
	p.lag = met.lag.WithLabelValues(p.label)
	p.replaying = met.replaying.WithLabelValues(p.label)
	p.bufGauge = met.buffered.WithLabelValues(p.label)
	p.replaying.Set(0)
	p.hasMetrics.Store(true)
}

func (p *partition) status() PartitionStatus {
	st := PartitionStatus{
		Partition:     p.id,
		State:         stateNames[p.state.Load()],
		Applied:       p.applied.Load(),
		Committed:     p.committed.Load(),
		ReplayFrom:    -1,
		ReplayTo:      -1,
		HighWatermark: p.hwm.Load(),
	}
	if p.planned.Load() {
		st.ReplayFrom, st.ReplayTo = p.replayFrom, p.replayTo
	}
	if st.Applied >= 0 && st.HighWatermark >= 0 {
		st.Lag = max(0, st.HighWatermark-st.Applied)
	}
	p.flow.Lock()
	st.Buffered = p.buffered
	p.flow.Unlock()
	return st
}

// hold counts n records dispatched to the actor and reports whether the
// partition is now over its limit: past it, the next poll could take it
// beyond MaxBufferedRecords. The poll loop calls it, and then throttle.
func (p *partition) hold(n int) (over bool) {
	p.flow.Lock()
	p.buffered += n
	p.peak = max(p.peak, p.buffered)
	over = !p.paused && !p.removed && p.buffered > p.m.pauseAt
	if over && !p.over {
		p.over, p.checked, p.overAt = true, p.released, time.Now()
	}
	b := p.buffered
	p.flow.Unlock()
	p.bufGauge.Set(float64(b))
	return over
}

// release counts n records applied (or abandoned). It wakes the poll loop
// waiting for the partition once there is room for another poll, and
// resumes the partition's fetching once half of MaxBufferedRecords is left.
func (p *partition) release(n int) {
	if n == 0 {
		return
	}
	p.flow.Lock()
	p.buffered -= n
	p.released += n
	wake := false
	if p.paused && !p.removed && p.buffered <= p.m.resumeAt {
		p.paused = false
		p.m.cl.ResumeFetchPartitions(map[string][]int32{p.m.cfg.Topic: {p.id}})
	}
	if p.over && p.buffered <= p.m.pauseAt {
		wake, p.over = true, false
	}
	b := p.buffered
	p.flow.Unlock()
	p.bufGauge.Set(float64(b))
	if wake {
		p.m.wakePoll()
	}
}

// drained reports whether the poll loop is done waiting for an over
// partition: it is back to its limit, gone, or paused. With check (the
// throttle's periodic progress check), a partition that applied nothing
// since the previous check, or has been over for maxOverWait, is paused
// now: one that is merely slow must not hold the others' fetching up.
func (p *partition) drained(check bool) bool {
	p.flow.Lock()
	defer p.flow.Unlock()
	if !p.over || p.removed || p.paused || p.buffered <= p.m.pauseAt {
		p.over = false
		return true
	}
	if !check {
		return false
	}
	if p.released != p.checked && time.Since(p.overAt) < maxOverWait {
		p.checked = p.released // busy, not stuck: keep waiting
		return false
	}
	p.over, p.paused = false, true
	p.pauses++
	p.m.cl.PauseFetchPartitions(map[string][]int32{p.m.cfg.Topic: {p.id}})
	return true
}

// publish records a commit point for the committer.
func (p *partition) publish(offset, restore int64) {
	p.pubMu.Lock()
	p.pub, p.hasPub = commitPoint{part: p, offset: offset, restore: restore}, true
	p.pubMu.Unlock()
}

// takePublished returns and clears the last commit point published.
func (p *partition) takePublished() (commitPoint, bool) {
	p.pubMu.Lock()
	defer p.pubMu.Unlock()
	pt, ok := p.pub, p.hasPub
	p.pub, p.hasPub = commitPoint{}, false
	return pt, ok
}

// Messages of the partition actor.
type (
	// batch is the records one poll gave the partition, in offset order.
	batch struct{ recs []*kgo.Record }
	// commitTick asks the actor for a commit point.
	commitTick struct{}
	// drain is answered (done closed) once every batch sent before it is
	// applied.
	drain struct{ done chan struct{} }
)

// partActor is the source actor of one partition: it decodes records,
// applies their events through the Sink, dead-letters bad records and
// tracks the applied offset.
type partActor struct {
	m    *Manager
	part *partition
	dec  event.Decoder
	evs  []event.Event
	offs []int64
	rej  []event.Rejection
	// next is one past the last record decoded (-1 before the first);
	// held counts the records decoded since the last flush.
	next int64
	held int
	// done are the records decoded since the last flush, recycled into
	// the client's pools once their events are applied.
	done   []*kgo.Record
	replay bool // mode of the events in evs
	failed bool // a flush was abandoned: skip everything (abort)
	dlq    dlqBatch
	tally  tally
}

// tally counts records between flushes, added to the metrics at once.
type tally struct {
	applied, partial, skipped, replayed int
	bad                                 [len(badReasonsArr)]int
	invalid                             map[string]int
}

var badReasonsArr = [...]string{ReasonMalformed, ReasonEmpty, ReasonOversized, ReasonInvalid}

func badIndex(reason string) int {
	for i, r := range badReasonsArr {
		if r == reason {
			return i
		}
	}
	return 0
}

// Receive implements actor.Actor.
func (a *partActor) Receive(c actor.Context) {
	switch msg := c.Message().(type) {
	case *batch:
		a.handle(msg)
	case commitTick:
		a.flush()
		a.maybePublish()
	case *drain:
		a.flush()
		close(msg.done)
	}
}

// handle decodes a batch; its events are applied once maxApply are held or
// no further batch is queued behind it.
func (a *partActor) handle(b *batch) {
	part := a.part
	part.queued.Add(-int64(len(b.recs)))
	if a.failed || part.abort.Load() {
		a.held += len(b.recs)
		a.abandon()
		return
	}
	for i, r := range b.recs {
		if r.Offset < a.next {
			a.done = append(a.done, r)
			a.held++
			continue // already seen
		}
		replay := r.Offset < part.replayTo
		if replay != a.replay && len(a.evs) > 0 && !a.flush() {
			a.held += len(b.recs) - i
			a.abandon()
			return
		}
		a.replay = replay
		a.done = append(a.done, r) // after that flush: r is not applied yet
		a.record(r, replay)
		a.next = r.Offset + 1
		a.held++
		if len(a.evs) >= 4*maxApply && !a.flush() {
			a.held += len(b.recs) - i - 1
			a.abandon()
			return
		}
	}
	if len(a.evs) >= maxApply || part.queued.Load() == 0 {
		a.flush()
		a.maybePublish()
	}
}

// abandon drops what is held: Stop gave up waiting for it.
func (a *partActor) abandon() {
	a.failed = true
	clear(a.evs)
	a.evs, a.offs = a.evs[:0], a.offs[:0]
	a.part.release(a.held)
	a.held = 0
	// Not recycled: a dead letter of them may still be in flight.
	clear(a.done)
	a.done = a.done[:0]
}

// RecordOptions returns the options the source decodes record r's value
// with (event.Decoder.Decode): the record key as the key of events that
// have none, and the ts checks, the max-future one (maxFuture; 0: none)
// measured from the record's timestamp. A replay of the record outside the
// node (package replay) decodes it with them too, and so takes and rejects
// exactly the events the node did.
//
// The reference of the max-future check is the record's timestamp, not
// the clock: a partition is replayed after a crash or a handoff, and the
// replay must reject exactly what the first reading rejected, which a
// clock read at consume time (or min(timestamp, clock), which moves
// with the clock when the timestamp is ahead of it) cannot promise. The
// timestamp is the producer's clock (CreateTime; our own producer's is
// the node's, once the event passed the same check at HTTP or NATS) or
// the broker's (LogAppendTime); brokers can bound how far ahead a
// CreateTime may be (log.message.timestamp.after.max.ms).
func RecordOptions(r *kgo.Record, maxFuture time.Duration) event.Options {
	o := event.Options{Now: r.Timestamp.UnixMilli(), DefaultKeyBytes: r.Key, MaxFuture: maxFuture, CheckMinTS: true}
	if o.Now < 0 {
		// No timestamp (a pre-0.10 record): the arrival time is the
		// clock's, and no deterministic reference is left to check against.
		o.Now, o.MaxFuture = time.Now().UnixMilli(), 0
	}
	return o
}

// record decodes one record into a.evs, or handles it as bad.
func (a *partActor) record(r *kgo.Record, replay bool) {
	if len(r.Value) > a.m.cfg.MaxRecordBytes {
		a.bad(r, ReasonOversized, replay)
		return
	}
	// The events' strings are cut from the decoder's buffer, shared by
	// records and batches (not one allocation per record or batch). The
	// record's memory is recycled once its events are applied, so an event
	// that takes the record key as its key gets a copy (DefaultKeyBytes).
	a.dec.Ensure(len(r.Value))
	o := RecordOptions(r, max(a.m.cfg.MaxFuture, 0))
	o.MaxRejections = maxListedRejections
	n0 := len(a.evs)
	var err error
	a.evs, a.rej, err = a.dec.Decode(r.Value, event.FormatAuto, o, a.evs, a.rej[:0])
	if err != nil {
		reason := ReasonMalformed
		if errors.Is(err, event.ErrEmpty) {
			reason = ReasonEmpty
		}
		a.bad(r, reason, replay)
		return
	}
	added := len(a.evs) - n0
	if added == 0 {
		// Nothing but JSON that is not an event object (a syntax error, a
		// number...) is malformed; objects that fail validation are
		// invalid.
		reason := ReasonMalformed
		for _, rj := range a.rej {
			if rj.Field != "" {
				reason = ReasonInvalid
				break
			}
		}
		a.bad(r, reason, replay)
		return
	}
	for range added {
		a.offs = append(a.offs, r.Offset)
	}
	switch {
	case replay:
		a.tally.replayed++
	case len(a.rej) == 0 && a.dec.Omitted() == 0:
		a.tally.applied++
	default:
		a.tally.partial++
		if a.tally.invalid == nil {
			a.tally.invalid = make(map[string]int)
		}
		for _, rj := range a.rej {
			f := rj.Field
			if f == "" {
				f = "event"
			}
			a.tally.invalid[f]++
		}
		if n := a.dec.Omitted(); n > 0 {
			a.tally.invalid["unlisted"] += n
		}
	}
}

// bad dead-letters or skips a bad record. Replayed records were handled
// by the owner that read them live: they are only counted as replayed.
func (a *partActor) bad(r *kgo.Record, reason string, replay bool) {
	if replay {
		a.tally.replayed++
		return
	}
	a.tally.bad[badIndex(reason)]++
	if a.m.cfg.DLQTopic == "" {
		a.tally.skipped++
		return
	}
	a.dlq.produce(a.m, a.part, deadLetter(a.m.cfg, r, reason))
}

// deadLetter returns the DLQ record for a bad record r.
func deadLetter(cfg Config, r *kgo.Record, reason string) *kgo.Record {
	h := make([]kgo.RecordHeader, 0, len(r.Headers)+4)
	h = append(h, r.Headers...)
	h = append(h,
		kgo.RecordHeader{Key: ErrorHeader, Value: []byte(reason)},
		kgo.RecordHeader{Key: "squall-topic", Value: []byte(r.Topic)},
		kgo.RecordHeader{Key: "squall-partition", Value: strconv.AppendInt(nil, int64(r.Partition), 10)},
		kgo.RecordHeader{Key: "squall-offset", Value: strconv.AppendInt(nil, r.Offset, 10)},
	)
	return &kgo.Record{Topic: cfg.DLQTopic, Key: r.Key, Value: r.Value, Headers: h, Timestamp: r.Timestamp}
}

// flush applies the held events in chunks of maxApply, waits for the
// dead letters to be acknowledged, then marks every held record applied.
// It returns false when the partition was aborted meanwhile.
func (a *partActor) flush() bool {
	if a.held == 0 {
		return !a.failed
	}
	if a.failed || a.part.abort.Load() {
		a.abandon()
		return false
	}
	for i := 0; i < len(a.evs); i += maxApply {
		j := min(i+maxApply, len(a.evs))
		if !a.apply(a.evs[i:j], a.offs[i:j]) {
			a.abandon()
			return false
		}
	}
	clear(a.evs)
	a.evs, a.offs = a.evs[:0], a.offs[:0]
	dead, ok := a.dlq.wait(a.m, a.part)
	if !ok {
		a.abandon()
		return false
	}
	part := a.part
	part.applied.Store(a.next)
	a.count(dead)
	if part.state.Load() == stateReplaying {
		if hwm := part.hwm.Load(); a.next >= part.replayTo || (hwm >= 0 && a.next >= hwm) {
			part.state.Store(stateLive)
			part.replaying.Set(0)
			if f := a.m.cfg.OnLive; f != nil {
				f(part.id)
			}
		}
	}
	if hwm := part.hwm.Load(); hwm >= 0 {
		part.lag.Set(float64(max(0, hwm-a.next)))
	}
	part.release(a.held)
	a.held = 0
	// Applied, and dead letters acknowledged: nothing refers to the
	// records' memory any more.
	for i, r := range a.done {
		r.Recycle()
		a.done[i] = nil
	}
	a.done = a.done[:0]
	return true
}

// apply calls Sink.Apply until it succeeds or the partition is aborted.
func (a *partActor) apply(evs []event.Event, offs []int64) bool {
	part := a.part
	for backoff := minBackoff; ; backoff = min(backoff*2, maxBackoff) {
		err := a.m.sink.Apply(part.applyCtx, part.id, evs, offs, a.replay)
		if err == nil {
			return true
		}
		if part.abort.Load() || part.applyCtx.Err() != nil {
			return false
		}
		a.m.log.Warn("kafka source: apply failed; retrying", "partition", part.id, "events", len(evs), "err", err, "retry_in", backoff)
		if !sleep(part.applyCtx, backoff) {
			return false
		}
	}
}

// count adds the tally to the metrics.
func (a *partActor) count(deadLettered int) {
	t, met := &a.tally, a.m.met
	add := func(c prometheus.Counter, n int) {
		if n > 0 {
			c.Add(float64(n))
		}
	}
	add(met.applied, t.applied)
	add(met.partial, t.partial)
	add(met.skipped, t.skipped)
	add(met.deadLettered, deadLettered)
	add(met.replayRecords, t.replayed)
	for i, n := range t.bad {
		add(met.bad[badReasonsArr[i]], n)
	}
	for f, n := range t.invalid {
		met.invalid.WithLabelValues(f).Add(float64(n))
	}
	clear(t.invalid)
	t.applied, t.partial, t.skipped, t.replayed, t.bad = 0, 0, 0, 0, [len(badReasonsArr)]int{}
}

// maybePublish publishes a commit point when the committer asked for one
// and something was applied since the last commit, held back by
// Config.CommitHold. The restore offset is asked now, after every record
// before the point was applied.
func (a *partActor) maybePublish() {
	part := a.part
	if !part.commitDue.Load() || a.held > 0 {
		return
	}
	applied := part.applied.Load()
	if applied <= part.committed.Load() {
		part.commitDue.Store(false)
		return
	}
	if hold := a.m.cfg.CommitHold; hold != nil {
		// Outputs of records from h on are not delivered yet: commit
		// before h, so that a crash replays and emits them again.
		if h, ok := hold(part.id); ok && h < applied {
			applied = h
			if applied <= part.committed.Load() {
				return // commitDue stays set: asked again next round
			}
		}
	}
	r, err := a.m.sink.RestoreOffset(part.applyCtx, part.id)
	if err != nil {
		if part.applyCtx.Err() == nil {
			a.m.log.Warn("kafka source: restore offset failed; commit postponed", "partition", part.id, "err", err)
		}
		return
	}
	part.commitDue.Store(false)
	part.publish(applied, r)
}

// dlqBatch tracks the dead letters produced since the last flush.
type dlqBatch struct {
	wg     sync.WaitGroup
	mu     sync.Mutex
	ok     int
	failed []*kgo.Record
	errs   []error
}

func (d *dlqBatch) produce(m *Manager, part *partition, r *kgo.Record) {
	d.wg.Add(1)
	m.cl.Produce(part.applyCtx, r, d.promise)
}

func (d *dlqBatch) promise(r *kgo.Record, err error) {
	d.mu.Lock()
	if err == nil {
		d.ok++
	} else {
		d.failed = append(d.failed, r)
		d.errs = append(d.errs, err)
	}
	d.mu.Unlock()
	d.wg.Done()
}

// wait returns once every dead letter is acknowledged, producing failed
// ones again (with backoff), and returns how many were written; ok is
// false when the partition was aborted first. A record too large for the
// brokers is dead-lettered without its value.
func (d *dlqBatch) wait(m *Manager, part *partition) (n int, ok bool) {
	for backoff := minBackoff; ; backoff = min(backoff*2, maxBackoff) {
		d.wg.Wait()
		d.mu.Lock()
		failed, errs := d.failed, d.errs
		d.failed, d.errs = nil, nil
		d.mu.Unlock()
		if len(failed) == 0 {
			n, d.ok = d.ok, 0
			return n, true
		}
		if part.abort.Load() || part.applyCtx.Err() != nil {
			d.ok = 0
			return 0, false
		}
		m.log.Warn("kafka source: dead-letter produce failed; retrying", "partition", part.id,
			"topic", m.cfg.DLQTopic, "records", len(failed), "err", errs[0], "retry_in", backoff)
		if !sleep(part.applyCtx, backoff) {
			d.ok = 0
			return 0, false
		}
		for i, r := range failed {
			if errors.Is(errs[i], kerr.MessageTooLarge) || errors.Is(errs[i], kerr.RecordListTooLarge) {
				r.Headers = append(r.Headers, kgo.RecordHeader{Key: "squall-value-dropped",
					Value: strconv.AppendInt(nil, int64(len(r.Value)), 10)})
				r.Value = nil
			}
			d.produce(m, part, r)
		}
	}
}
