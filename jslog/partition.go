package jslog

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/squallhq/squall/api"
	"github.com/squallhq/squall/event"
	"github.com/squallhq/squall/source"
)

// partition is one consumption of a partition, from Start to Stop. A
// partition started again is a new one.
type partition struct {
	m     *Manager
	id    int32
	label string
	prev  *partition // an instance being stopped, waited for before starting

	readCtx     context.Context // canceled by Stop: no more fetching
	readCancel  context.CancelFunc
	applyCtx    context.Context // canceled when Stop gives up waiting
	applyCancel context.CancelFunc
	queue       chan item     // reader → applier; closed by the reader
	space       chan struct{} // applier → reader: room was made
	done        chan struct{} // closed when run returns
	stopped     chan struct{} // closed when Stop is done with it
	finalErr    error         // set by run before done

	// Set by plan before the reader starts.
	plan    plan
	planned atomic.Bool

	state     atomic.Int32
	applied   atomic.Int64 // one past the last message applied, -1 unknown
	committed atomic.Int64 // last committed, -1 none
	hwm       atomic.Int64 // one past the last stored message as last seen, -1 unknown
	pending   atomic.Int64 // messages on the server after the last delivered
	held      atomic.Int64 // messages fetched and not yet applied
	peak      atomic.Int64 // largest held seen (tests)
	caughtUp  atomic.Bool  // a caught-up marker is queued
	fenced    atomic.Bool
	abandoned atomic.Bool

	lag, replaying, bufGauge prometheus.Gauge // set by initMetrics
	hasMetrics               atomic.Bool
}

// plan says where a partition's consumer starts and what it replays.
type plan struct {
	// startSeq is the first stream sequence to read (≥ 1); when byTime,
	// the consumer starts at startTime instead.
	startSeq  uint64
	byTime    bool
	startTime time.Time
	// replayFrom and replayTo bound the replay as the progress has it
	// (replayFrom -1 when it replays by time); replayEnd is where it
	// really ends: one past the partition's last message below replayTo.
	replayFrom, replayTo, replayEnd int64
	committed                       int64
}

// item is what the reader hands the applier: a message, or (caughtUp) the
// news that the consumer had nothing more to deliver.
type item struct {
	msg      jetstream.Msg
	seq      uint64
	caughtUp bool
}

func newPartition(m *Manager, p int32, prev *partition) *partition {
	part := &partition{m: m, id: p, label: strconv.Itoa(int(p)), prev: prev,
		queue:   make(chan item, m.cfg.MaxBufferedMessages+1), // +1: a caught-up marker
		space:   make(chan struct{}, 1),
		done:    make(chan struct{}),
		stopped: make(chan struct{}),
	}
	part.readCtx, part.readCancel = context.WithCancel(context.Background())
	part.applyCtx, part.applyCancel = context.WithCancel(context.Background())
	part.applied.Store(-1)
	part.committed.Store(-1)
	part.hwm.Store(-1)
	return part
}

// initMetrics creates the partition's metric series once the previous
// instance, which deletes its series, has stopped.
func (p *partition) initMetrics() {
	met := p.m.met
	p.lag = met.lag.WithLabelValues(p.label)
	p.replaying = met.replaying.WithLabelValues(p.label)
	p.bufGauge = met.buffered.WithLabelValues(p.label)
	p.replaying.Set(0)
	p.hasMetrics.Store(true)
}

func (p *partition) status() api.SourceStatus {
	st := api.SourceStatus{
		Partition:     p.id,
		State:         stateNames[p.state.Load()],
		Applied:       p.applied.Load(),
		Committed:     p.committed.Load(),
		ReplayFrom:    -1,
		ReplayTo:      -1,
		HighWatermark: p.hwm.Load(),
		Lag:           p.pending.Load() + p.held.Load(),
		Buffered:      int(p.held.Load()),
	}
	if p.planned.Load() {
		st.ReplayFrom, st.ReplayTo = p.plan.replayFrom, p.plan.replayTo
	}
	return st
}

// run plans the partition, starts its reader and applies what it reads
// until the reader stops (Stop) or the partition is abandoned; then it
// makes the final commit.
func (p *partition) run(from source.StartFrom) {
	m := p.m
	defer m.wg.Done()
	defer close(p.done)
	if p.prev != nil {
		select {
		case <-p.prev.stopped:
		case <-p.readCtx.Done():
			return
		}
	}
	p.initMetrics()
	for backoff := minBackoff * 10; ; backoff = min(backoff*2, 10*maxBackoff) {
		pl, err := p.makePlan(p.readCtx, from)
		if err == nil {
			p.plan = pl
			break
		}
		if p.readCtx.Err() != nil {
			return
		}
		m.log.Warn("jetstream log: cannot start partition; retrying", "partition", p.id, "err", err, "retry_in", backoff)
		if !sleep(p.readCtx, backoff) {
			return
		}
	}
	p.committed.Store(p.plan.committed)
	p.applied.Store(p.plan.committed)
	p.planned.Store(true)
	if p.plan.byTime || (p.plan.replayFrom >= 0 && p.plan.replayFrom < p.plan.replayEnd) {
		p.state.Store(stateReplaying)
		p.replaying.Set(1)
	} else {
		p.goLive()
	}
	readerDone := make(chan struct{})
	m.wg.Add(1)
	go func() {
		defer close(readerDone)
		p.read()
	}()
	a := &applier{p: p, lastCommit: time.Now()}
	a.loop()
	<-readerDone
	if p.fenced.Load() {
		p.finalErr = fmt.Errorf("jslog: partition %d: %w", p.id, source.ErrFenced)
		return
	}
	p.finalErr = a.finalCommit()
}

// goLive marks the partition live and tells OnLive.
func (p *partition) goLive() {
	p.state.Store(stateLive)
	p.replaying.Set(0)
	if f := p.m.cfg.OnLive; f != nil {
		f(p.id)
	}
}

// makePlan finds where the partition starts (see Manager.Start).
func (p *partition) makePlan(ctx context.Context, from source.StartFrom) (plan, error) {
	m := p.m
	live := func(c int64) plan {
		return plan{startSeq: uint64(max(c, 1)), replayFrom: c, replayTo: c, replayEnd: c, committed: c}
	}
	pr := from.Progress
	if pr == nil {
		if from.Handoff && from.Offset >= 0 {
			return live(from.Offset), nil
		}
		actx, cancel := context.WithTimeout(ctx, apiTimeout)
		got, ok, err := m.readProgress(actx, p.id)
		cancel()
		if err != nil {
			return plan{}, err
		}
		if !ok {
			got = source.Progress{Partition: p.id, Offset: -1, Restore: -1}
		}
		pr = &got
	}
	c, r := pr.Offset, pr.Restore
	if from.Handoff && c >= 0 {
		return live(c), nil
	}
	// The replay ends after the partition's last message below c: read
	// the last message of the subject now (every message below c is
	// stored already, so none below c comes after it). It is the high
	// watermark too: without it a partition started with no progress
	// would look caught up before its reader has fetched anything.
	lastSeq, err := p.lastSeq(ctx)
	if err != nil {
		return plan{}, err
	}
	if c < 0 {
		if lastSeq > 0 {
			p.hwm.Store(lastSeq + 1)
		}
		return live(-1), nil
	}
	p.hwm.Store(lastSeq + 1)
	end := min(c, lastSeq+1)
	if r < 0 || r > c {
		m.log.Info("jetstream log: progress without restore offset; replaying the retention",
			"partition", p.id, "committed", c, "retention", m.cfg.Retention)
		if end <= 0 {
			return live(c), nil
		}
		return plan{byTime: true, startTime: time.Now().Add(-m.cfg.Retention),
			replayFrom: -1, replayTo: c, replayEnd: end, committed: c}, nil
	}
	if end <= r {
		return live(c), nil // nothing of the partition in [r, c)
	}
	return plan{startSeq: uint64(max(r, 1)), replayFrom: r, replayTo: c, replayEnd: end, committed: c}, nil
}

// lastSeq returns the stream sequence of the partition's last message,
// 0 when it has none.
func (p *partition) lastSeq(ctx context.Context) (int64, error) {
	m := p.m
	actx, cancel := context.WithTimeout(ctx, apiTimeout)
	defer cancel()
	st, err := m.js.Stream(actx, m.cfg.Stream)
	if err != nil {
		return 0, fmt.Errorf("last message of partition %d: %w", p.id, err)
	}
	msg, err := st.GetLastMsgForSubject(actx, m.cfg.subject(p.id))
	switch {
	case errors.Is(err, jetstream.ErrMsgNotFound):
		return 0, nil
	case err != nil:
		return 0, fmt.Errorf("last message of partition %d: %w", p.id, err)
	}
	return int64(msg.Sequence), nil
}

// read fetches the partition's messages into the queue, never more than
// the room left below MaxBufferedMessages, until the partition's reading
// is canceled or it is fenced; it closes the queue when it returns.
func (p *partition) read() {
	m := p.m
	defer m.wg.Done()
	defer close(p.queue)
	var (
		cons    jetstream.Consumer
		name    string
		cursor  uint64 // last stream sequence queued, 0 none
		consSeq uint64 // last consumer sequence seen
	)
	drop := func() {
		if name == "" {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), apiTimeout)
		_ = m.js.DeleteConsumer(ctx, m.cfg.Stream, name) // it expires anyway
		cancel()
		cons, name = nil, ""
	}
	defer drop()
	limit := int64(m.cfg.MaxBufferedMessages)
	backoff := minBackoff
	fail := func(what string, err error) bool {
		if m.warned.allow() {
			m.log.Warn("jetstream log: "+what+"; retrying", "partition", p.id, "err", err, "retry_in", backoff)
		}
		ok := sleep(p.readCtx, backoff)
		backoff = min(backoff*2, maxBackoff)
		return ok
	}
	for p.readCtx.Err() == nil {
		if cons == nil {
			cfg := jetstream.ConsumerConfig{
				Name:              newConsumerName(p.id),
				FilterSubject:     m.cfg.subject(p.id),
				AckPolicy:         jetstream.AckNonePolicy,
				MemoryStorage:     true,
				Replicas:          1,
				InactiveThreshold: consumerInactive,
			}
			switch {
			case cursor > 0:
				cfg.DeliverPolicy, cfg.OptStartSeq = jetstream.DeliverByStartSequencePolicy, cursor+1
			case p.plan.byTime:
				st := p.plan.startTime
				cfg.DeliverPolicy, cfg.OptStartTime = jetstream.DeliverByStartTimePolicy, &st
			default:
				cfg.DeliverPolicy, cfg.OptStartSeq = jetstream.DeliverByStartSequencePolicy, p.plan.startSeq
			}
			ctx, cancel := context.WithTimeout(p.readCtx, apiTimeout)
			c, err := m.js.CreateConsumer(ctx, m.cfg.Stream, cfg)
			cancel()
			if err != nil {
				if p.readCtx.Err() != nil || !fail("cannot create the partition consumer", err) {
					return
				}
				continue
			}
			cons, name, consSeq = c, cfg.Name, 0
		}
		room := limit - p.held.Load()
		if room <= 0 {
			if !p.waitRoom(cons) {
				return
			}
			continue
		}
		fctx, cancel := context.WithTimeout(p.readCtx, fetchWait)
		batch, err := cons.Fetch(int(room), jetstream.FetchContext(fctx), jetstream.FetchHeartbeat(fetchHeartbeat))
		if err != nil {
			cancel()
			drop()
			if p.readCtx.Err() != nil || !fail("fetch failed", err) {
				return
			}
			continue
		}
		got, gap := 0, false
		for msg := range batch.Messages() {
			if gap {
				continue // fetched again by the next consumer
			}
			md, err := msg.Metadata()
			if err != nil || md.Sequence.Consumer != consSeq+1 {
				gap = true
				continue
			}
			consSeq = md.Sequence.Consumer
			seq := md.Sequence.Stream
			if seq <= cursor {
				continue
			}
			cursor = seq
			p.pending.Store(int64(md.NumPending))
			if md.NumPending == 0 {
				p.hwm.Store(int64(seq) + 1)
			}
			h := p.held.Add(1)
			if h > p.peak.Load() {
				p.peak.Store(h)
			}
			p.queue <- item{msg: msg, seq: seq}
			got++
		}
		ferr := batch.Error()
		cancel()
		switch {
		case p.readCtx.Err() != nil:
			return
		case gap || (ferr != nil && !errors.Is(ferr, context.DeadlineExceeded)):
			m.met.resets.Inc()
			drop()
			if got == 0 && !fail("partition consumer lost", errors.Join(ferr, errGap(gap))) {
				return
			}
			continue
		case got > 0:
			backoff = minBackoff
			continue
		}
		// Nothing came: the consumer may have vanished (a server restart
		// answers a fetch at once with no message), or the partition is
		// read to its end.
		ctx, cancel := context.WithTimeout(p.readCtx, apiTimeout)
		info, err := cons.Info(ctx)
		cancel()
		if err != nil {
			m.met.resets.Inc()
			drop()
			if !fail("partition consumer lost", err) {
				return
			}
			continue
		}
		backoff = minBackoff
		p.pending.Store(int64(info.NumPending))
		if info.NumPending == 0 && p.state.Load() == stateReplaying && !p.caughtUp.Swap(true) {
			p.queue <- item{caughtUp: true}
		}
	}
}

func errGap(gap bool) error {
	if gap {
		return errors.New("consumer sequence gap")
	}
	return nil
}

// waitRoom waits until the applier has made room, refreshing the lag
// from the server every CommitInterval meanwhile (nothing is fetched while
// the partition is full). It returns false when reading is canceled.
func (p *partition) waitRoom(cons jetstream.Consumer) bool {
	t := time.NewTimer(p.m.cfg.CommitInterval)
	defer t.Stop()
	select {
	case <-p.space:
		return true
	case <-p.readCtx.Done():
		return false
	case <-t.C:
	}
	ctx, cancel := context.WithTimeout(p.readCtx, apiTimeout)
	if info, err := cons.Info(ctx); err == nil {
		p.pending.Store(int64(info.NumPending))
		p.lag.Set(float64(info.NumPending) + float64(p.held.Load()))
	}
	cancel()
	return p.readCtx.Err() == nil
}

// applier decodes and applies a partition's messages and commits its
// progress; it runs on the partition's run goroutine.
type applier struct {
	p          *partition
	dec        event.Decoder
	evs        []event.Event
	offs       []int64
	rej        []event.Rejection
	replay     bool  // mode of the events in evs
	n          int64 // messages taken since the last flush
	next       int64 // one past the last message taken
	tallyLive  int   // live messages since the last flush
	tallyRe    int   // replayed messages since the last flush
	tallyBad   int   // undecodable messages since the last flush
	lastCommit time.Time
	failed     bool // abandoned or fenced: drop everything
}

// loop applies what the reader queues until it closes the queue, or the
// partition is abandoned.
func (a *applier) loop() {
	p := a.p
	tick := time.NewTicker(p.m.cfg.CommitInterval)
	defer tick.Stop()
	for {
		var it item
		var ok bool
		select {
		case it, ok = <-p.queue:
		case <-tick.C:
			a.maybeCommit()
			continue
		case <-p.applyCtx.Done():
			a.abandon()
			return
		}
		if !ok {
			return
		}
		a.take(it)
	gather:
		for range maxGather - 1 {
			select {
			case it, ok = <-p.queue:
				if !ok {
					break gather
				}
				a.take(it)
			default:
				break gather
			}
		}
		a.flush()
		if !ok {
			return
		}
		if time.Since(a.lastCommit) >= p.m.cfg.CommitInterval {
			a.maybeCommit()
		}
	}
}

// take decodes one queued item into a.evs, applying what is held first
// when the mode changes.
func (a *applier) take(it item) {
	p := a.p
	if a.failed {
		if !it.caughtUp {
			a.release(1)
		}
		return
	}
	if it.caughtUp {
		p.caughtUp.Store(false)
		if p.state.Load() == stateReplaying && a.flush() && p.state.Load() == stateReplaying {
			p.goLive() // every message below the replay's end is applied
		}
		return
	}
	replay := p.state.Load() == stateReplaying && int64(it.seq) < p.plan.replayEnd
	if p.state.Load() == stateReplaying && !replay {
		// Past the replay's end (what lay before it expired): live now.
		if !a.flush() {
			a.release(1)
			return
		}
		if p.state.Load() == stateReplaying {
			p.goLive()
		}
	}
	if replay != a.replay && len(a.evs) > 0 && !a.flush() {
		a.release(1)
		return
	}
	a.replay = replay
	a.n++
	a.next = int64(it.seq) + 1
	if f := it.msg.Headers().Get(FormatHeader); f != FormatProto {
		a.bad(it, fmt.Errorf("format %q", f))
		return
	}
	data := it.msg.Data()
	n0 := len(a.evs)
	a.dec.Ensure(len(data))
	var err error
	a.evs, a.rej, err = a.dec.Decode(data, event.FormatProto, event.Options{}, a.evs, a.rej[:0])
	if err != nil {
		a.bad(it, err)
		return
	}
	for range len(a.evs) - n0 {
		a.offs = append(a.offs, int64(it.seq))
	}
	if replay {
		a.tallyRe++
	} else {
		a.tallyLive++
	}
	if len(a.evs) >= 4*maxApply {
		a.flush()
	}
}

// bad counts a message that cannot be decoded; it is skipped (replayed
// ones were counted by the owner that read them live).
func (a *applier) bad(it item, err error) {
	if a.replay {
		a.tallyRe++
		return
	}
	a.tallyBad++
	if a.p.m.warned.allow() {
		a.p.m.log.Warn("jetstream log: message skipped: not decodable", "partition", a.p.id, "sequence", it.seq, "err", err)
	}
}

// release counts n messages applied or dropped and tells the reader.
func (a *applier) release(n int64) {
	if n == 0 {
		return
	}
	p := a.p
	h := p.held.Add(-n)
	p.bufGauge.Set(float64(h))
	select {
	case p.space <- struct{}{}:
	default:
	}
}

// flush applies the held events in chunks of maxApply and marks every
// message taken applied. It returns false when the partition was
// abandoned or fenced meanwhile.
func (a *applier) flush() bool {
	p := a.p
	if a.failed {
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
	if a.n > 0 {
		p.applied.Store(a.next)
		a.release(a.n)
		a.n = 0
	}
	met := p.m.met
	if a.tallyLive > 0 {
		met.applied.Add(float64(a.tallyLive))
	}
	if a.tallyRe > 0 {
		met.replayed.Add(float64(a.tallyRe))
	}
	if a.tallyBad > 0 {
		met.bad.Add(float64(a.tallyBad))
	}
	a.tallyLive, a.tallyRe, a.tallyBad = 0, 0, 0
	if p.state.Load() == stateReplaying && p.applied.Load() >= p.plan.replayEnd {
		p.goLive()
	}
	p.lag.Set(float64(p.pending.Load() + p.held.Load()))
	return true
}

// apply calls Sink.Apply until it succeeds or the partition is abandoned.
func (a *applier) apply(evs []event.Event, offs []int64) bool {
	p := a.p
	for backoff := minBackoff; ; backoff = min(backoff*2, maxBackoff) {
		err := p.m.sink.Apply(p.applyCtx, p.id, evs, offs, a.replay)
		if err == nil {
			return true
		}
		if p.applyCtx.Err() != nil {
			return false
		}
		p.m.log.Warn("jetstream log: apply failed; retrying", "partition", p.id, "events", len(evs), "err", err, "retry_in", backoff)
		if !sleep(p.applyCtx, backoff) {
			return false
		}
	}
}

// abandon drops what is held: Stop gave up waiting, or the partition is
// fenced.
func (a *applier) abandon() {
	p := a.p
	if !a.failed && !p.fenced.Load() {
		p.abandoned.Store(true)
	}
	a.failed = true
	clear(a.evs)
	a.evs, a.offs = a.evs[:0], a.offs[:0]
	a.release(a.n)
	a.n = 0
	// Drop what is queued; the reader stops once reading is canceled.
	for {
		select {
		case it, ok := <-p.queue:
			if !ok {
				return
			}
			if !it.caughtUp {
				a.release(1)
			}
		default:
			return
		}
	}
}

// maybeCommit commits the applied offset, held back by CommitHold.
func (a *applier) maybeCommit() {
	p := a.p
	if a.failed {
		return
	}
	a.lastCommit = time.Now()
	applied := p.applied.Load()
	if applied <= p.committed.Load() {
		return
	}
	if hold := p.m.cfg.CommitHold; hold != nil {
		if h, ok := hold(p.id); ok && h < applied {
			applied = h
			if applied <= p.committed.Load() {
				return
			}
		}
	}
	ctx, cancel := context.WithTimeout(p.applyCtx, max(p.m.cfg.CommitInterval, finalCommitTimeout))
	defer cancel()
	if err := a.commit(ctx, applied); err != nil && p.applyCtx.Err() == nil && !p.fenced.Load() {
		p.m.log.Warn("jetstream log: commit failed; retrying at the next interval", "partition", p.id, "err", err)
	}
}

// finalCommit commits the applied offset at Stop or Close, not held.
func (a *applier) finalCommit() error {
	p := a.p
	applied := p.applied.Load()
	if applied <= p.committed.Load() {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), finalCommitTimeout)
	defer cancel()
	if err := a.commit(ctx, applied); err != nil {
		return fmt.Errorf("jslog: final commit of partition %d: %w", p.id, err)
	}
	return nil
}

// commit stores offset with the Sink's restore offset. A fenced partition
// stops reading and commits nothing more.
func (a *applier) commit(ctx context.Context, offset int64) error {
	p, m := a.p, a.p.m
	r, err := m.sink.RestoreOffset(ctx, p.id)
	if err != nil {
		// Committed without one: a new owner replays the retention.
		m.log.Warn("jetstream log: restore offset unknown; committing without it", "partition", p.id, "err", err)
		r = -2
	}
	switch {
	case r == -1 || r > offset:
		r = offset
	case r < 0:
		r = -1
	}
	err = m.commit(ctx, source.Progress{Partition: p.id, Offset: offset, Restore: r})
	if err != nil {
		m.met.commitErrors.Inc()
		if errors.Is(err, source.ErrFenced) {
			p.fenced.Store(true)
			a.failed = true
			p.readCancel()
			m.log.Warn("jetstream log: partition fenced by a newer owner; stopped", "partition", p.id)
		}
		return err
	}
	p.committed.Store(offset)
	m.met.commits.Inc()
	return nil
}
