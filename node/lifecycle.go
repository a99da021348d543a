package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/squallhq/squall/actors"
	"github.com/squallhq/squall/api"
	"github.com/squallhq/squall/cluster"
	"github.com/squallhq/squall/ownership"
	"github.com/squallhq/squall/source"
	"github.com/squallhq/squall/transport"
)

// claimRetry is the pause before a claim that failed for a transient
// reason (ZooKeeper unreachable) is tried again.
const claimRetry = 250 * time.Millisecond

// lifecycle runs ownership.Step for every partition of a clustered node:
// one goroutine per partition, which alone changes what the node does with
// it (engine, Kafka source, handoffs, progress record). Everything else
// only tells it what happened. Safe for concurrent use.
type lifecycle struct {
	c     *clustered
	log   *slog.Logger
	parts []*part
	m     *lifecycleMetrics

	ready chan struct{} // closed once c.coord is set
	stop  chan struct{}
	wg    sync.WaitGroup
	once  sync.Once
}

// want is what the newest assignment says of one partition.
type want struct {
	tok   ownership.Token
	owner string
	await bool // moved here from a live node, which hands its state over
}

// chunkReq is a handoff chunk waiting for its partition's goroutine.
type chunkReq struct {
	c     *transport.HandoffChunk
	newer bool // the sender acts on an assignment newer than any seen here
	reply chan error
}

// part is one partition's lifecycle on this node.
type part struct {
	lc *lifecycle
	id int32

	wake   chan struct{} // something in mu's fields changed
	chunks chan chunkReq

	mu     sync.Mutex
	want   *want              // newest assignment's word, not yet stepped
	lost   bool               // session lost, not yet stepped
	queue  []ownership.Input  // outcomes not yet stepped
	st     ownership.Status   // current status (read by describe and reads)
	ver    int32              // progress record version of this node's last write; -1 none
	offset int64              // the offset of that write
	prog   cluster.Progress   // the record as claimed
	gctx   context.Context    // the current grant's actions run in it
	cancel context.CancelFunc // ends them

	// Owned by the partition's goroutine.
	held      []actors.KeySnapshot
	heldCover *transport.Cover
	heldFrom  string
	timer     *time.Timer
	replaying time.Time // when the current replay started
}

func newLifecycle(c *clustered) *lifecycle {
	lc := &lifecycle{c: c, log: c.n.log, ready: make(chan struct{}), stop: make(chan struct{}),
		m: newLifecycleMetrics()}
	lc.parts = make([]*part, c.n.cfg.Partitions)
	for i := range lc.parts {
		lc.parts[i] = &part{lc: lc, id: int32(i), wake: make(chan struct{}, 1), chunks: make(chan chunkReq), ver: -1}
	}
	return lc
}

// start starts the partitions' goroutines; they act once coordReady.
func (lc *lifecycle) start() {
	for _, p := range lc.parts {
		lc.wg.Add(1)
		go p.run()
	}
}

// coordReady says c.coord is set.
func (lc *lifecycle) coordReady() { close(lc.ready) }

// close stops the goroutines (after each one's current action) and waits.
func (lc *lifecycle) close() {
	lc.once.Do(func() {
		close(lc.stop)
		for _, p := range lc.parts {
			p.mu.Lock()
			p.endGrant()
			p.mu.Unlock()
		}
		lc.wg.Wait()
	})
}

// assign hands the newest assignment to every partition. A partition it
// moves here from a live node waits for that node's handoff. prev is the
// assignment applied before it on the same session, if any.
func (lc *lifecycle) assign(a, prev *cluster.Assignment, self string, live map[string]cluster.Member) {
	tok := a.Token()
	for i, owner := range a.Owners {
		from := handoffFrom(a, prev, int32(i))
		_, alive := live[from]
		w := &want{tok: tok, owner: owner, await: owner == self && from != "" && from != self && (alive || live == nil)}
		p := lc.parts[i]
		p.mu.Lock()
		p.want = w
		p.mu.Unlock()
		p.poke()
	}
}

// handoffFrom returns the node expected to hand partition p over under
// assignment a, or "". The leader names it in a's moves, which are the
// moves from the generation before a. A node that missed generations (a
// watch shows only the newest of writes in quick succession) has not seen
// the move that brought p here: the owner it last saw, prev's, still holds
// p's state or has sent it on to the newest owner, so it is awaited.
func handoffFrom(a, prev *cluster.Assignment, p int32) string {
	if from := a.MovedFrom(p); from != "" || prev == nil || a.Generation <= prev.Generation+1 {
		return from
	}
	if int(p) < len(prev.Owners) && prev.Owners[p] != a.Owners[p] {
		return prev.Owners[p]
	}
	return ""
}

// sessionLost drops every partition; what the next assignment grants is
// acquired afresh.
func (lc *lifecycle) sessionLost() {
	for _, p := range lc.parts {
		p.mu.Lock()
		p.lost, p.want, p.queue = true, nil, nil
		p.endGrant()
		p.mu.Unlock()
		p.poke()
	}
}

// outcome queues an outcome of partition p's grant seq.
func (lc *lifecycle) outcome(p int32, in ownership.Input) {
	pt := lc.parts[p]
	pt.mu.Lock()
	pt.queue = append(pt.queue, in)
	pt.mu.Unlock()
	pt.poke()
}

// live says partition p's source has caught up (source.Config.OnLive).
func (lc *lifecycle) live(p int32) {
	pt := lc.parts[p]
	pt.mu.Lock()
	seq := pt.st.Seq
	pt.queue = append(pt.queue, ownership.Input{Kind: ownership.Live, Seq: seq})
	pt.mu.Unlock()
	pt.poke()
}

// handoff gives a chunk to its partition's goroutine and returns whether
// it was taken.
func (lc *lifecycle) handoff(ctx context.Context, c *transport.HandoffChunk, newer bool) error {
	if c.Partition < 0 || int(c.Partition) >= len(lc.parts) {
		return fmt.Errorf("%w: partition %d out of range", ErrNotOwner, c.Partition)
	}
	r := chunkReq{c: c, newer: newer, reply: make(chan error, 1)}
	select {
	case lc.parts[c.Partition].chunks <- r:
	case <-ctx.Done():
		return ctx.Err()
	case <-lc.stop:
		return actors.ErrClosed
	}
	select {
	case err := <-r.reply:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// state returns partition p's lifecycle status.
func (lc *lifecycle) state(p int32) ownership.Status {
	pt := lc.parts[p]
	pt.mu.Lock()
	defer pt.mu.Unlock()
	return pt.st
}

// describe lists the partitions held in any state.
func (lc *lifecycle) describe() []api.PartitionState {
	var out []api.PartitionState
	for _, p := range lc.parts {
		p.mu.Lock()
		st := p.st
		p.mu.Unlock()
		if st.State != ownership.Idle {
			out = append(out, api.PartitionState{Partition: p.id, State: st.State.String(), Token: st.Tok.String()})
		}
	}
	return out
}

// serving returns whether every partition in owners given to self is
// served, and if not, how many are not.
func (lc *lifecycle) serving(owners []string, self string) (bool, int) {
	missing := 0
	for i, owner := range owners {
		if owner == self && lc.state(int32(i)).State != ownership.Serving {
			missing++
		}
	}
	return missing == 0, missing
}

func (p *part) poke() {
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

func (p *part) run() {
	defer p.lc.wg.Done()
	defer p.stopTimer()
	select {
	case <-p.lc.ready:
	case <-p.lc.stop:
		return
	}
	for {
		select {
		case <-p.lc.stop:
			return
		case r := <-p.chunks:
			p.onChunk(r)
		case <-p.wake:
			p.drain()
		}
	}
}

// drain steps what was heard since the last turn, in order: a session
// loss, then outcomes, then the newest assignment.
func (p *part) drain() {
	for {
		p.mu.Lock()
		lost, queue, w := p.lost, p.queue, p.want
		p.lost, p.queue, p.want = false, nil, nil
		p.mu.Unlock()
		if !lost && len(queue) == 0 && w == nil {
			return
		}
		if lost {
			p.step(ownership.Input{Kind: ownership.Lost}, nil)
		}
		for _, in := range queue {
			p.step(in, nil)
		}
		if w != nil {
			p.onWant(w)
		}
	}
}

func (p *part) onWant(w *want) {
	self := p.lc.c.self()
	st := p.status()
	switch {
	case w.owner == self:
		p.step(ownership.Input{Kind: ownership.Grant, Tok: w.tok, Await: w.await}, nil)
	case st.State != ownership.Idle || st.Holding:
		p.step(ownership.Input{Kind: ownership.Revoke, Tok: w.tok}, nil)
	}
}

func (p *part) onChunk(r chunkReq) {
	in := ownership.Input{Kind: ownership.Chunk, First: r.c.Index == 0, Last: r.c.Last, Newer: r.newer}
	p.step(in, &r)
}

func (p *part) status() ownership.Status {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.st
}

// step runs the state machine on in and carries out its actions; the
// outcomes of actions that have one are stepped at once.
func (p *part) step(in ownership.Input, r *chunkReq) {
	for {
		p.mu.Lock()
		before := p.st
		after, acts := ownership.Step(before, in)
		p.st = after
		if after.Seq != before.Seq || after.State == ownership.Idle {
			p.endGrant()
		}
		p.mu.Unlock()
		if before.State == ownership.Replaying && after.State == ownership.Serving && !p.replaying.IsZero() {
			p.lc.m.replaySeconds.Observe(time.Since(p.replaying).Seconds())
			p.replaying = time.Time{}
		}
		if before.State != after.State {
			p.lc.m.transitions.WithLabelValues(before.State.String(), after.State.String()).Inc()
			p.lc.log.Info("partition state", "partition", p.id, "from", before.State.String(), "to", after.State.String(),
				"on", in.Kind.String(), "token", after.Tok.String(), "grant", after.Seq)
		}
		var next *ownership.Input
		for _, a := range acts {
			if out := p.do(a, before, after, r); out != nil {
				next = out
			}
		}
		if next == nil {
			return
		}
		in, r = *next, nil
	}
}

// ctx returns the context of the current grant's actions, canceled when
// the grant ends (revoked, lost, or the node closes).
func (p *part) ctx() context.Context {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.gctx == nil {
		p.gctx, p.cancel = context.WithCancel(context.Background())
	}
	return p.gctx
}

// endGrant cancels the current grant's actions; p.mu must be held.
func (p *part) endGrant() {
	if p.cancel != nil {
		p.cancel()
	}
	p.gctx, p.cancel = nil, nil
}

// do carries out one action of the step from prev to st; it returns the
// outcome to step next, if any.
func (p *part) do(a ownership.Action, prev, st ownership.Status, r *chunkReq) *ownership.Input {
	lc := p.lc
	switch a {
	case ownership.HoldChunk:
		if r.c.Index == 0 {
			p.held, p.heldFrom = nil, r.c.From
		}
		p.held = append(p.held, r.c.Keys...)
		p.heldCover = r.c.Cover
		r.reply <- nil
	case ownership.RefuseChunk:
		lc.m.refused.WithLabelValues("handoff").Inc()
		r.reply <- fmt.Errorf("%w: partition %d is %s here (token %s)", ErrNotOwner, p.id, st.State, st.Tok)
	case ownership.DropHeld:
		lc.m.handoffs.WithLabelValues(handoffKind(p.held, p.heldCover, p.heldCover != nil), "dropped").Inc()
		lc.log.Info("handed-over state dropped: the partition is rebuilt from the log, or not held", "partition", p.id,
			"from", p.heldFrom, "keys", len(p.held), "covered", p.heldCover != nil, "token", st.Tok.String())
		p.dropHeld()
	case ownership.ForwardHeld:
		keys, cover := p.held, p.heldCover
		p.dropHeld()
		p.send(context.Background(), keys, cover, "forwarded")
	case ownership.ArmAwait:
		p.arm(lc.c.n.cfg.AwaitHandoff, st.Seq)
	case ownership.ArmRetry:
		p.arm(claimRetry, st.Seq)
	case ownership.Claim:
		p.stopTimer()
		return p.claim(st)
	case ownership.ServeHeld:
		p.serveHeld(st)
	case ownership.ServeReplay:
		return p.serveReplay(st)
	case ownership.Release:
		return p.release(st, prev.State == ownership.Serving)
	case ownership.Drop:
		p.drop(st)
	}
	return nil
}

func (p *part) dropHeld() {
	p.held, p.heldCover, p.heldFrom = nil, nil, ""
}

func (p *part) arm(d time.Duration, seq uint64) {
	p.stopTimer()
	p.timer = time.AfterFunc(d, func() { p.lc.outcome(p.id, ownership.Input{Kind: ownership.AwaitExpired, Seq: seq}) })
}

func (p *part) stopTimer() {
	if p.timer != nil {
		p.timer.Stop()
		p.timer = nil
	}
}

// claim claims the partition's progress record under the grant (with a
// log), and checks the held state's cover against the record it replaces.
func (p *part) claim(st ownership.Status) *ownership.Input {
	lc := p.lc
	out := &ownership.Input{Kind: ownership.Claimed, Seq: st.Seq}
	if lc.c.n.logs == nil {
		// No log to rebuild from, and no progress to fence: a whole
		// handoff is the state.
		out.Valid = st.Held
		return out
	}
	ctx, cancel := context.WithTimeout(p.ctx(), lc.c.n.cfg.ZKSessionTimeout)
	defer cancel()
	prev, mine, err := lc.c.coord.Claim(ctx, p.id, st.Tok)
	if err != nil {
		stale := errors.Is(err, cluster.ErrStaleGrant)
		lc.log.Info("partition claim failed", "partition", p.id, "token", st.Tok.String(), "stale", stale, "err", err)
		return &ownership.Input{Kind: ownership.ClaimFailed, Seq: st.Seq, Stale: stale}
	}
	p.mu.Lock()
	p.ver, p.offset, p.prog = mine, prev.Offset, prev
	p.mu.Unlock()
	cv := p.heldCover
	out.Valid = st.Held && cv != nil && prev.Version >= 0 && cv.Version == prev.Version && cv.Offset == prev.Offset
	lc.log.Info("partition claimed", "partition", p.id, "token", st.Tok.String(), "offset", prev.Offset,
		"restore", prev.Restore, "previous_owner", prev.Owner, "previous_token", fmt.Sprintf("%d/%d", prev.Epoch, prev.Generation),
		"version", mine, "handoff_keys", len(p.held), "handoff_valid", out.Valid)
	return out
}

// serveHeld makes the engine serve the held state; the source starts live
// where its cover ends.
func (p *part) serveHeld(st ownership.Status) {
	lc := p.lc
	e := lc.c.n.engine
	keys, cover, from := p.held, p.heldCover, p.heldFrom
	p.dropHeld()
	ctx := p.ctx()
	if _, err := e.Acquire(p.id, true); err != nil {
		lc.log.Error("acquire partition", "partition", p.id, "err", err)
		return
	}
	if err := e.Restore(ctx, p.id, keys, true); err != nil {
		lc.log.Error("restore handed-over state", "partition", p.id, "err", err)
	}
	lc.m.handoffs.WithLabelValues(handoffKind(keys, cover, true), "applied").Inc()
	if k := lc.c.n.logs; k != nil {
		k.src.Start(p.id, source.StartFrom{Handoff: true, Progress: &source.Progress{Partition: p.id, Offset: cover.Offset}})
	}
	lc.log.Info("partition serves its handed-over state", "partition", p.id, "token", st.Tok.String(), "from", from,
		"keys", len(keys), "covered", coverString(cover))
}

// serveReplay makes the engine serve the partition empty and starts the
// source replaying from the claimed progress; without a log (Kafka or
// JetStream) the partition is live at once.
func (p *part) serveReplay(st ownership.Status) *ownership.Input {
	lc := p.lc
	if _, err := lc.c.n.engine.Acquire(p.id, false); err != nil {
		lc.log.Error("acquire partition", "partition", p.id, "err", err)
	}
	k := lc.c.n.logs
	if k == nil {
		return &ownership.Input{Kind: ownership.Live, Seq: st.Seq}
	}
	p.mu.Lock()
	prog := p.prog
	p.mu.Unlock()
	from := source.StartFrom{Offset: -1}
	if prog.Version >= 0 {
		from.Progress = &source.Progress{Partition: p.id, Offset: prog.Offset, Restore: prog.Restore}
	}
	lc.m.replays.Inc()
	p.replaying = time.Now()
	lc.log.Info("partition rebuilt from the log", "partition", p.id, "token", st.Tok.String(),
		"restore", prog.Restore, "committed", prog.Offset)
	k.src.Start(p.id, from)
	return nil
}

// release stops the source (its final commit lands only if no other node
// has claimed the partition), snapshots the keys and hands them to the
// newest owner, with a cover when the commit landed and the state is
// exactly what it covers.
func (p *part) release(st ownership.Status, wasServing bool) *ownership.Input {
	lc := p.lc
	ctx, cancel := context.WithTimeout(p.ctx(), lc.c.n.cfg.AwaitHandoff)
	defer cancel()
	out := &ownership.Input{Kind: ownership.Released, Seq: st.Seq}
	var cover *transport.Cover
	if k := lc.c.n.logs; k != nil {
		committed, err := k.src.Stop(ctx, p.id)
		p.mu.Lock()
		ver, offset := p.ver, p.offset
		p.ver = -1
		p.mu.Unlock()
		switch {
		case errors.Is(err, source.ErrFenced):
			lc.m.refused.WithLabelValues("commit").Inc()
			lc.log.Warn("partition fenced at its final commit: nothing handed over", "partition", p.id, "token", st.Tok.String(), "err", err)
			if _, err := lc.c.n.engine.Release(ctx, p.id); err != nil && !errors.Is(err, actors.ErrNotOwned) {
				lc.log.Error("release partition", "partition", p.id, "err", err)
			}
			return out
		case err != nil:
			lc.log.Warn("final commit failed: the next owner rebuilds from the log", "partition", p.id, "err", err)
		case wasServing && committed == offset && ver >= 0:
			cover = &transport.Cover{Offset: committed, Version: ver}
		}
	}
	snaps, err := lc.c.n.engine.Release(ctx, p.id)
	if err != nil {
		if !errors.Is(err, actors.ErrNotOwned) {
			lc.log.Error("release partition", "partition", p.id, "err", err)
		}
		return out
	}
	if p.send(ctx, snaps, cover, "released") {
		// Given back meanwhile: the snapshot is held and checked by the
		// next claim like any handoff.
		p.held, p.heldCover, p.heldFrom = snaps, cover, lc.c.self()
		out.Valid = true
	}
	return out
}

// send hands keys to the partition's newest owner, retrying while it is
// unreachable or not yet ready, for up to AwaitHandoff. It returns true
// when the newest assignment gives the partition back to this node.
func (p *part) send(ctx context.Context, keys []actors.KeySnapshot, cover *transport.Cover, why string) (back bool) {
	lc := p.lc
	c := lc.c
	ctx, cancel := context.WithTimeout(ctx, lc.c.n.cfg.AwaitHandoff)
	defer cancel()
	var err error
	for attempt := 0; ; attempt++ {
		rt := c.route.Load()
		to := rt.owners[p.id]
		switch {
		case to == c.self():
			return true
		case to == "" || rt.addrs[to] == "":
			err = fmt.Errorf("partition %d has no live owner", p.id)
		default:
			err = c.tr.Handoff(ctx, to, rt.addrs[to], p.id, rt.gen, cover, keys)
		}
		if err == nil {
			lc.m.handoffs.WithLabelValues(handoffKind(keys, cover, cover != nil || c.n.logs == nil), "sent").Inc()
			lc.log.Info("handed partition over", "partition", p.id, "to", to, "keys", len(keys), "covered", coverString(cover), "why", why)
			return false
		}
		select {
		case <-ctx.Done():
			lc.log.Warn("handoff not delivered: the next owner rebuilds from the log", "partition", p.id, "to", to,
				"keys", len(keys), "err", err)
			return false
		case <-time.After(min(50*time.Millisecond<<attempt, time.Second)):
		}
	}
}

// drop stops the source and discards the keys.
func (p *part) drop(st ownership.Status) {
	lc := p.lc
	ctx, cancel := context.WithTimeout(context.Background(), lc.c.n.cfg.AwaitHandoff)
	defer cancel()
	// Nothing more is committed: a dropped partition was fenced, or this
	// node's session is gone (its next owner replays what was not).
	p.mu.Lock()
	p.ver = -1
	p.mu.Unlock()
	if k := lc.c.n.logs; k != nil {
		if _, err := k.src.Stop(ctx, p.id); err != nil && !errors.Is(err, source.ErrNotStarted) && !errors.Is(err, source.ErrFenced) {
			lc.log.Info("source stopped with an error", "partition", p.id, "err", err)
		}
	}
	snaps, err := lc.c.n.engine.Release(ctx, p.id)
	if err != nil && !errors.Is(err, actors.ErrNotOwned) {
		lc.log.Error("drop partition", "partition", p.id, "err", err)
	}
	lc.log.Info("partition dropped", "partition", p.id, "token", st.Tok.String(), "keys", len(snaps))
}

// commit implements source.Store: each partition's progress, written only
// if its record is still at this node's last write.
func (lc *lifecycle) commit(ctx context.Context, ps []source.Progress) []error {
	errs := make([]error, len(ps))
	ws := make([]cluster.ProgressWrite, 0, len(ps))
	idx := make([]int, 0, len(ps))
	seqs := make([]uint64, 0, len(ps))
	for i, pr := range ps {
		p := lc.parts[pr.Partition]
		p.mu.Lock()
		ver, tok, seq := p.ver, p.st.Tok, p.st.Seq
		p.mu.Unlock()
		if ver < 0 {
			errs[i] = fmt.Errorf("%w: partition %d is not claimed by this node", source.ErrFenced, pr.Partition)
			continue
		}
		ws = append(ws, cluster.ProgressWrite{Partition: pr.Partition, Version: ver, Token: tok,
			Offset: pr.Offset, Restore: pr.Restore})
		idx = append(idx, i)
		seqs = append(seqs, seq)
	}
	if len(ws) == 0 {
		return errs
	}
	vers, werrs := lc.c.coord.Commit(ctx, ws)
	for j, w := range ws {
		i := idx[j]
		p := lc.parts[w.Partition]
		if err := werrs[j]; err != nil {
			if errors.Is(err, cluster.ErrFenced) {
				lc.m.refused.WithLabelValues("commit").Inc()
				errs[i] = fmt.Errorf("%w: %w", source.ErrFenced, err)
				lc.log.Warn("commit fenced: another node owns the partition", "partition", w.Partition, "err", err)
				lc.outcome(w.Partition, ownership.Input{Kind: ownership.Fenced, Seq: seqs[j]})
			} else {
				errs[i] = err
			}
			continue
		}
		p.mu.Lock()
		if p.ver == w.Version {
			p.ver, p.offset = vers[j], w.Offset
		}
		p.mu.Unlock()
	}
	return errs
}

// handoffKind classifies a handoff: complete (covered), partial (state
// without a cover), or empty.
func handoffKind(keys []actors.KeySnapshot, cover *transport.Cover, complete bool) string {
	switch {
	case len(keys) == 0 && cover == nil:
		return "empty"
	case complete:
		return "complete"
	default:
		return "partial"
	}
}

func coverString(c *transport.Cover) string {
	if c == nil {
		return "none"
	}
	return fmt.Sprintf("offset %d at version %d", c.Offset, c.Version)
}

type lifecycleMetrics struct {
	transitions   *prometheus.CounterVec
	handoffs      *prometheus.CounterVec
	refused       *prometheus.CounterVec
	replays       prometheus.Counter
	replaySeconds prometheus.Histogram
}

func newLifecycleMetrics() *lifecycleMetrics {
	return &lifecycleMetrics{
		transitions: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "squall_partition_transitions_total",
			Help: "Partition lifecycle transitions on this node, by state left and state entered."}, []string{"from", "to"}),
		handoffs: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "squall_partition_handoffs_total",
			Help: "Partition handoffs, by kind (complete: covered by the sender's final commit; partial; empty) and what became of them (sent, applied, dropped)."},
			[]string{"kind", "result"}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "squall_ownership_refused_total",
			Help: "Stale ownership messages refused: handoff chunks for a partition not acquiring here, commits fenced by a newer owner."},
			[]string{"what"}),
		replays: prometheus.NewCounter(prometheus.CounterOpts{Name: "squall_partition_replays_total",
			Help: "Partitions rebuilt by replaying the log (the records replayed are squall_kafka_replay_records_total, or squall_log_replay_messages_total with JetStream)."}),
		replaySeconds: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "squall_partition_replay_seconds",
			Help:    "How long a partition's replay took, from its claim until its source was live.",
			Buckets: prometheus.ExponentialBuckets(0.01, 2, 14)}),
	}
}

func (m *lifecycleMetrics) register(reg prometheus.Registerer) error {
	for _, c := range []prometheus.Collector{m.transitions, m.handoffs, m.refused, m.replays, m.replaySeconds} {
		if err := reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}
