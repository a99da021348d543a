// Package source feeds Squall from Kafka: the source actors
// that consume the partitions a node owns and apply their events through a
// Sink, and the Producer that writes HTTP and NATS input to the topic first
// (Kafka-first ingest).
//
// # Consuming
//
// A Manager owns one franz-go client that consumes the topic by direct
// partition assignment (no group protocol: the node adds and removes
// partitions as the cluster assignment changes) and commits offsets to the
// group with kadm. One goroutine polls the client and hands each
// partition's records to that partition's protoactor actor; the actor
// decodes them (event.Decoder), applies their events through the Sink in
// batches of up to 1,000, and tracks the applied offset.
//
//	Kafka ─▶ client ─▶ poll loop ─▶ actor of p (decode, Apply, DLQ) ─▶ Sink
//	                      ▲               │ applied offset, restore offset
//	                      │ pause/resume  ▼
//	                      └──────── committer (every CommitInterval) ─▶ group
//
// Delivery is at-least-once and state is exact: an offset is committed only
// once every record before it has been applied, and with it the restore
// offset the Sink reported after applying them (the oldest record still in a
// key's window), so a new owner can rebuild the windows by replaying
// [restore, committed) in restore mode (see Manager.Start).
//
// A record never blocks its partition: bad records (malformed, every event
// invalid, oversized, empty) go to the dead-letter topic or are skipped, and
// are counted. Memory is bounded: a partition whose fetched, unapplied
// records exceed Config.MaxBufferedRecords has its fetching paused.
//
// Locks: Manager.mu, Manager.cmdMu and partition.flow are never held with
// another lock of the package; partition.pubMu is taken under
// Manager.commitMu only. Commits (network calls) happen under commitMu,
// which orders them so that none moves an offset back. franz-go's pause and
// resume are called under partition.flow; franz-go calls nothing of ours
// back but the dead-letter promises, which take no lock but dlqBatch.mu.
package source

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/squallhq/squall/api"
	"github.com/squallhq/squall/event"
	"github.com/squallhq/squall/internal/workers"
)

// Sink applies a partition's events; the node implements it over its key
// actors. It is called from one goroutine per partition at a time, and from
// several partitions at once.
type Sink interface {
	// Apply applies evs read from partition p, in order; offsets[i] is
	// evs[i]'s record offset. replay marks restore mode: state is rebuilt,
	// nothing is emitted. It returns once they are applied; evs and offsets
	// are valid only during the call (the events' strings may be kept). An
	// error means none of evs was applied: the batch is retried (with
	// backoff) until it succeeds or the partition is stopped. Apply must
	// return when ctx is done. Events whose key belongs to another
	// partition (a producer not using murmur2) are the sink's to forward;
	// it counts them.
	Apply(ctx context.Context, p int32, evs []event.Event, offsets []int64, replay bool) error
	// RestoreOffset returns the oldest offset of partition p whose record
	// can still be in some key's window, or -1 when none is.
	RestoreOffset(ctx context.Context, p int32) (int64, error)
}

// StartFrom says where Manager.Start begins.
type StartFrom struct {
	// Handoff means the previous owner handed p's state over and committed
	// up to Offset: consume live from there, with no replay.
	Handoff bool
	// Offset is the handoff offset; below 0, the group's committed offset
	// is read instead (the previous owner's Stop committed it).
	Offset int64
	// Progress, when set, is the partition's progress as the Store has it
	// (the group's offsets are not read): replay [Restore, Offset) then
	// consume live from Offset; with Handoff, live from Offset at once. An
	// Offset below 0 (nothing committed yet) starts live at the start of
	// the partition.
	Progress *Progress
}

// States of a partition in PartitionStatus.State.
const (
	// StateStarting: reading the committed offset and restore offset.
	StateStarting = "starting"
	// StateReplaying: replaying [ReplayFrom, ReplayTo) in restore mode.
	StateReplaying = "replaying"
	// StateLive: applying records as they come.
	StateLive = "live"
)

// PartitionStatus describes one consumed partition (the document
// /debug/cluster lists); see api.SourceStatus for its fields.
type PartitionStatus = api.SourceStatus

const (
	// maxApply is the largest number of events passed to one Sink.Apply.
	maxApply = 1000
	// maxListedRejections caps the rejections decoded per record.
	maxListedRejections = 64
	// fetchMaxWait bounds how long a fetch waits for data. A fetch in
	// flight to a broker delays a partition added or resumed on it by up
	// to this much (measured: 400 ms at 500 ms); idle, it costs 10 fetch
	// requests a second per broker.
	fetchMaxWait = 100 * time.Millisecond
	// sourceWorkers is the size of the source actors' worker pool: the
	// partitions a node usually consumes (more take new goroutines).
	sourceWorkers = 32
	// closeTimeout bounds Close's drain of in-flight records.
	closeTimeout = 10 * time.Second
	// finalCommitTimeout bounds the commit of Stop and Close once their
	// context has expired.
	finalCommitTimeout = 5 * time.Second
	// pauseGrace is how long the poll loop waits for a partition over
	// its limit to make progress (apply anything) before pausing its
	// fetching.
	pauseGrace = 25 * time.Millisecond
	// maxOverWait is how long the poll loop waits for a partition over
	// its limit that does make progress before pausing it anyway (a whole
	// fetch's excess takes ~0.1 s to apply at 100K events/s).
	maxOverWait = 250 * time.Millisecond
	// probeTimeout bounds the read of one record for the restore offset
	// fallback.
	probeTimeout = 10 * time.Second
	// Backoffs of retried operations (Apply, DLQ produce, start).
	minBackoff = 10 * time.Millisecond
	maxBackoff = 2 * time.Second
)

// deadLetterInterval is protoactor's dead-letter log throttle period.
const deadLetterInterval = 10 * time.Millisecond

// Manager runs the source actors of the partitions this node consumes. It
// is safe for concurrent use.
type Manager struct {
	// deadLetter is when protoactor last reported a dead letter (unix ns).
	deadLetter atomic.Int64

	cfg  Config
	sink Sink
	log  *slog.Logger
	cl   *kgo.Client
	adm  *kadm.Client
	sys  *actor.ActorSystem
	// workers run the source actors' turns (an idle one, else a new
	// goroutine): a turn decodes and waits for its apply, a deep stack a
	// fresh goroutine would grow every time.
	workers *workers.Pool
	met     *metrics

	// Back-pressure: a poll takes everything franz-go has fetched (it
	// fetches again only once its buffered fetch is taken, so that the
	// next fetch overlaps the apply of this one). Past pauseAt
	// (MaxBufferedRecords) buffered records a partition is over its limit:
	// the poll loop stops polling until it is back to pauseAt; one that
	// applies nothing for pauseGrace meanwhile, or is still over after
	// maxOverWait, is paused until it is down to resumeAt (pausing makes
	// franz-go drop, and later fetch again, what it fetched for the
	// partition meanwhile, so it is kept for partitions that are stuck or
	// slow, not merely busy). A partition holds at most pauseAt plus one
	// fetch's records.
	pauseAt, resumeAt int
	wake              chan struct{} // wakes a throttled poll loop

	ctx    context.Context // canceled by Close: the poll loop and committer
	cancel context.CancelFunc

	mu       sync.Mutex
	parts    map[int32]*partition // started and not stopping
	stopping map[int32]*partition // being stopped
	closed   bool

	cmdMu      sync.Mutex // guards cmds, pollCancel, pollExited
	cmds       []*command
	pollCancel context.CancelFunc
	pollExited bool

	commitMu sync.Mutex // serialises commits, so none regresses

	wg        sync.WaitGroup // poll loop, committer, start resolvers
	closeOnce sync.Once
	closeErr  error
}

// New returns a Manager consuming cfg.Topic into sink. It does not contact
// the brokers: Start does, and retries until it can.
func New(cfg Config, sink Sink) (*Manager, error) {
	if sink == nil {
		return nil, fmt.Errorf("%w: nil Sink", ErrConfig)
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	met, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, err
	}
	opts := append(cfg.clientOpts(),
		kgo.FetchMaxWait(fetchMaxWait),
		kgo.FetchMaxBytes(cfg.FetchMaxBytes),
		kgo.FetchMaxPartitionBytes(cfg.FetchMaxPartitionBytes),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.ProducerLinger(0),          // dead letters are waited for
		kgo.WithPools(new(fetchPools)), // records recycled once applied
	)
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return nil, fmt.Errorf("source: kafka client: %w", err)
	}
	m := &Manager{
		cfg:  cfg,
		sink: sink,
		log:  cfg.Logger,
		cl:   cl,
		adm:  kadm.NewClient(cl),
		sys: actor.NewActorSystem(actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger { return quietLogger }),
			actor.WithDeadLetterThrottleInterval(deadLetterInterval), actor.WithDeadLetterRequestLogging(false)),
		met:      met,
		parts:    make(map[int32]*partition),
		stopping: make(map[int32]*partition),
		wake:     make(chan struct{}, 1),
		workers:  workers.New(sourceWorkers),
	}
	m.sys.EventStream.SubscribeWithPredicate(func(any) {
		m.deadLetter.Store(time.Now().UnixNano())
	}, func(msg any) bool {
		_, ok := msg.(*actor.DeadLetterEvent)
		return ok
	})
	m.pauseAt = cfg.MaxBufferedRecords
	m.resumeAt = cfg.MaxBufferedRecords / 2
	m.ctx, m.cancel = context.WithCancel(context.Background())
	m.wg.Add(2)
	go m.pollLoop()
	go m.commitLoop()
	return m, nil
}

// PartitionCount returns the number of partitions of the topic; an error
// wrapping ErrTopicNotFound, naming the topic, when it does not exist.
func (m *Manager) PartitionCount(ctx context.Context) (int, error) {
	return partitionCount(ctx, m.adm, m.cfg.Topic)
}

func partitionCount(ctx context.Context, adm *kadm.Client, topic string) (int, error) {
	tds, err := adm.ListTopics(ctx, topic)
	if err != nil {
		return 0, fmt.Errorf("source: topic %q: %w", topic, err)
	}
	td, ok := tds[topic]
	if !ok || errors.Is(td.Err, kerr.UnknownTopicOrPartition) {
		return 0, fmt.Errorf("%w: %q", ErrTopicNotFound, topic)
	}
	if td.Err != nil {
		return 0, fmt.Errorf("source: topic %q: %w", topic, td.Err)
	}
	if len(td.Partitions) == 0 {
		return 0, fmt.Errorf("%w: %q has no partitions", ErrTopicNotFound, topic)
	}
	return len(td.Partitions), nil
}

// Start begins consuming partition p in the background; it does nothing
// when p is already consumed or the Manager is closed. A partition being
// stopped is started again once its Stop is done.
//
// With from.Handoff, the previous owner handed the state over and
// committed up to from.Offset (or, when it is negative, the group's
// committed offset): consume live from there, no replay. Otherwise the
// committed offset c and its metadata are read; the metadata holds the
// restore offset r written with that commit; [r, c) is replayed in restore
// mode (Sink.Apply with replay set), then consumption goes on live from c.
// With a commit but no usable metadata, r is the first offset whose
// timestamp is at or after (timestamp of record c−1) − Retention. With no
// commit, consumption starts live at the start of the partition.
//
// Failures to read offsets are logged and retried until Stop or Close.
func (m *Manager) Start(p int32, from StartFrom) {
	if p < 0 {
		m.log.Error("kafka source: start of a negative partition ignored", "partition", p)
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed || m.parts[p] != nil {
		return
	}
	part := newPartition(m, p, m.stopping[p])
	m.parts[p] = part
	m.wg.Add(1)
	go m.resolve(part, from)
}

// Stop stops consuming p, waits for its in-flight records to be applied,
// commits the applied offset (with the restore offset as metadata) and
// returns it: the new owner starts there. When ctx ends before the
// records are applied, the rest are abandoned (the Sink's ctx is
// canceled), what was applied is committed, and the error wraps ctx's.
// Stopping a partition not consumed returns ErrNotStarted.
func (m *Manager) Stop(ctx context.Context, p int32) (committed int64, err error) {
	m.mu.Lock()
	part := m.parts[p]
	if part == nil {
		closed := m.closed
		m.mu.Unlock()
		if closed {
			return -1, ErrClosed
		}
		return -1, fmt.Errorf("%w: %d", ErrNotStarted, p)
	}
	delete(m.parts, p)
	m.stopping[p] = part
	m.mu.Unlock()
	res, err := m.stopParts(ctx, []*partition{part})
	return res[p], err
}

// Close stops every partition as Stop does (waiting at most 10s for
// in-flight records), commits what was applied, and closes the client.
// It is idempotent; it returns the first commit error.
func (m *Manager) Close() error {
	m.closeOnce.Do(func() {
		m.mu.Lock()
		m.closed = true
		var others []*partition // being stopped by a Stop call
		for _, part := range m.stopping {
			others = append(others, part)
		}
		parts := make([]*partition, 0, len(m.parts))
		for p, part := range m.parts {
			parts = append(parts, part)
			if prev := m.stopping[p]; prev != nil {
				others = append(others, prev) // part waits for it
			}
			m.stopping[p] = part
		}
		clear(m.parts)
		m.mu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), closeTimeout)
		_, m.closeErr = m.stopParts(ctx, parts)
		cancel()
		for _, part := range others {
			<-part.stopped
		}
		m.cancel()
		m.cl.Close()
		m.wg.Wait()
		m.sys.Shutdown()
		m.workers.Stop()
		// protoactor's dead-letter throttle goroutine lives
		// deadLetterInterval after a dead letter and cannot be joined.
		if last := m.deadLetter.Load(); last != 0 {
			time.Sleep(time.Until(time.Unix(0, last).Add(deadLetterInterval + 5*time.Millisecond)))
		}
	})
	return m.closeErr
}

// Status returns the state of every consumed partition, by partition.
func (m *Manager) Status() []PartitionStatus {
	m.mu.Lock()
	parts := make([]*partition, 0, len(m.parts))
	for _, part := range m.parts {
		parts = append(parts, part)
	}
	m.mu.Unlock()
	out := make([]PartitionStatus, 0, len(parts))
	for _, part := range parts {
		out = append(out, part.status())
	}
	slices.SortFunc(out, func(a, b PartitionStatus) int { return int(a.Partition - b.Partition) })
	return out
}

// resolve finds where part starts, starts its actor and has the poll loop
// add it. It runs on its own goroutine, retrying until it succeeds or
// part is stopped.
func (m *Manager) resolve(part *partition, from StartFrom) {
	defer m.wg.Done()
	defer close(part.resolved)
	ctx := part.resolveCtx
	if part.prev != nil {
		select {
		case <-part.prev.stopped:
		case <-ctx.Done():
			return
		}
	}
	part.initMetrics()
	for backoff := minBackoff * 10; ; backoff = min(backoff*2, 10*maxBackoff) {
		err := m.plan(ctx, part, from)
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			return
		}
		m.log.Warn("kafka source: cannot start partition; retrying", "partition", part.id, "err", err, "retry_in", backoff)
		if !sleep(ctx, backoff) {
			return
		}
	}
	a := &partActor{m: m, part: part, next: -1}
	pid := m.sys.Root.Spawn(actor.PropsFromProducer(func() actor.Actor { return a }, actor.WithDispatcher(m.workers)))
	part.pid.Store(pid)
	m.enqueue(&command{add: part})
}

// plan sets part's start offset, replay range, applied and committed
// offsets (see Start).
func (m *Manager) plan(ctx context.Context, part *partition, from StartFrom) error {
	set := func(start kgo.Offset, replayFrom, replayTo, committed int64) {
		part.startAt = start
		part.replayFrom, part.replayTo = replayFrom, replayTo
		part.committed.Store(committed)
		part.applied.Store(committed)
		part.planned.Store(true)
		if replayFrom < replayTo {
			part.state.Store(stateReplaying)
			part.replaying.Set(1)
		} else {
			part.state.Store(stateLive)
			if m.cfg.OnLive != nil {
				m.cfg.OnLive(part.id)
			}
		}
	}
	if pr := from.Progress; pr != nil {
		switch c, r := pr.Offset, pr.Restore; {
		case c < 0:
			set(kgo.NewOffset().AtStart(), -1, -1, -1)
		case from.Handoff:
			set(kgo.NewOffset().At(c), c, c, c)
		default:
			if r < 0 || r > c {
				var err error
				if r, err = m.fallbackRestore(ctx, part.id, c); err != nil {
					return err
				}
				m.log.Info("kafka source: progress without restore offset; replaying by timestamp",
					"partition", part.id, "committed", c, "restore", r)
			}
			set(kgo.NewOffset().At(r), r, c, c)
		}
		return nil
	}
	if from.Handoff && from.Offset >= 0 {
		set(kgo.NewOffset().At(from.Offset), from.Offset, from.Offset, from.Offset)
		return nil
	}
	c, meta, ok, err := m.fetchCommitted(ctx, part.id)
	if err != nil {
		return err
	}
	switch {
	case !ok:
		set(kgo.NewOffset().AtStart(), -1, -1, -1)
		return nil
	case from.Handoff:
		set(kgo.NewOffset().At(c), c, c, c)
		return nil
	}
	r, ok := parseMeta(meta)
	if !ok {
		if r, err = m.fallbackRestore(ctx, part.id, c); err != nil {
			return err
		}
		m.log.Info("kafka source: commit without restore offset; replaying by timestamp",
			"partition", part.id, "committed", c, "restore", r, "metadata", meta)
	}
	r = min(r, c)
	set(kgo.NewOffset().At(r), r, c, c)
	return nil
}

// fetchCommitted reads the group's committed offset of p and its metadata;
// ok is false when there is none.
func (m *Manager) fetchCommitted(ctx context.Context, p int32) (offset int64, meta string, ok bool, err error) {
	resp, err := m.adm.FetchOffsets(ctx, m.cfg.Group)
	if errors.Is(err, kerr.GroupIDNotFound) {
		return 0, "", false, nil // no commit yet
	}
	if err != nil {
		return 0, "", false, fmt.Errorf("fetch committed offsets of group %q: %w", m.cfg.Group, err)
	}
	o, exists := resp.Lookup(m.cfg.Topic, p)
	if !exists {
		return 0, "", false, nil
	}
	if o.Err != nil {
		return 0, "", false, fmt.Errorf("fetch committed offset of partition %d: %w", p, o.Err)
	}
	if o.At < 0 {
		return 0, "", false, nil
	}
	return o.At, o.Metadata, true, nil
}

// fallbackRestore returns the restore offset of p for a commit at c
// without one: the first offset at or after (timestamp of record c−1) −
// Retention, or at or after now − Retention when record c−1 cannot be
// read. It is c when nothing before c is left in the log.
func (m *Manager) fallbackRestore(ctx context.Context, p int32, c int64) (int64, error) {
	if c <= 0 {
		return c, nil
	}
	starts, err := m.adm.ListStartOffsets(ctx, m.cfg.Topic)
	if err != nil {
		return 0, fmt.Errorf("list start offsets: %w", err)
	}
	ends, err := m.adm.ListEndOffsets(ctx, m.cfg.Topic)
	if err != nil {
		return 0, fmt.Errorf("list end offsets: %w", err)
	}
	so, ok1 := starts.Lookup(m.cfg.Topic, p)
	eo, ok2 := ends.Lookup(m.cfg.Topic, p)
	if !ok1 || !ok2 || so.Err != nil || eo.Err != nil {
		return 0, fmt.Errorf("list offsets of partition %d: %w", p, errors.Join(so.Err, eo.Err, errMissing(!ok1 || !ok2)))
	}
	if c-1 < so.Offset || c-1 >= eo.Offset {
		return c, nil
	}
	ts, found, err := m.recordTime(ctx, p, c-1)
	if err != nil {
		return 0, err
	}
	if !found {
		ts = time.Now().UnixMilli()
		m.log.Warn("kafka source: record before the committed offset not found; restoring by wall clock",
			"partition", p, "committed", c)
	}
	target := max(0, ts-m.cfg.Retention.Milliseconds())
	after, err := m.adm.ListOffsetsAfterMilli(ctx, target, m.cfg.Topic)
	if err != nil {
		return 0, fmt.Errorf("list offsets after %d ms: %w", target, err)
	}
	o, ok := after.Lookup(m.cfg.Topic, p)
	if !ok || o.Err != nil {
		return 0, fmt.Errorf("list offsets after %d ms of partition %d: %w", target, p, errors.Join(o.Err, errMissing(!ok)))
	}
	if o.Offset < 0 || o.Offset > c {
		return c, nil
	}
	return o.Offset, nil
}

func errMissing(missing bool) error {
	if missing {
		return errors.New("partition missing from the response")
	}
	return nil
}

// recordTime reads the timestamp (epoch ms) of the first record of p at or
// after offset off, with a short-lived client of its own; found is false
// when that record is past off or none comes within probeTimeout.
func (m *Manager) recordTime(ctx context.Context, p int32, off int64) (ts int64, found bool, err error) {
	opts := append(m.cfg.clientOpts(),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{m.cfg.Topic: {p: kgo.NewOffset().At(off)}}),
		kgo.ConsumeResetOffset(kgo.NoResetOffset()),
		kgo.FetchMaxWait(100*time.Millisecond),
	)
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return 0, false, fmt.Errorf("probe client: %w", err)
	}
	defer cl.Close()
	pctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	for {
		fs := cl.PollFetches(pctx)
		if ctx.Err() != nil {
			return 0, false, ctx.Err()
		}
		if pctx.Err() != nil {
			return 0, false, nil
		}
		var rec *kgo.Record
		var ferr error
		fs.EachError(func(_ string, _ int32, e error) { ferr = e })
		fs.EachRecord(func(r *kgo.Record) {
			if rec == nil {
				rec = r
			}
		})
		switch {
		case rec != nil:
			return rec.Timestamp.UnixMilli(), rec.Offset <= off, nil
		case ferr != nil:
			m.log.Warn("kafka source: reading the record before the committed offset", "partition", p, "offset", off, "err", ferr)
			return 0, false, nil
		}
	}
}

// stopParts stops parts (already moved to m.stopping) as Stop does and
// returns their committed offsets.
func (m *Manager) stopParts(ctx context.Context, parts []*partition) (map[int32]int64, error) {
	res := make(map[int32]int64, len(parts))
	if len(parts) == 0 {
		return res, nil
	}
	for _, part := range parts {
		part.stopping.Store(true)
		part.resolveCancel()
	}
	var running []*partition
	for _, part := range parts {
		<-part.resolved // the resolver returns promptly once canceled
		if part.pid.Load() != nil {
			running = append(running, part)
		}
	}
	var errs []error
	if len(running) > 0 {
		<-m.enqueue(&command{remove: running})
		dones := make([]chan struct{}, len(running))
		for i, part := range running {
			dones[i] = make(chan struct{})
			m.sys.Root.Send(part.pid.Load(), &drain{done: dones[i]})
		}
		for i, part := range running {
			select {
			case <-dones[i]:
				continue
			case <-ctx.Done():
			}
			for _, q := range running[i:] {
				q.abort.Store(true)
				q.applyCancel()
			}
			errs = append(errs, fmt.Errorf("source: stop partition %d: in-flight records abandoned: %w", part.id, ctx.Err()))
			break
		}
		for _, d := range dones {
			<-d
		}
	}
	if err := m.finalCommit(ctx, running); err != nil {
		errs = append(errs, err)
	}
	for _, part := range running {
		_ = m.sys.Root.StopFuture(part.pid.Load()).Wait()
	}
	for _, part := range parts {
		if !part.planned.Load() {
			// Never started: the committed offset is the group's.
			cctx, cancel := detached(ctx)
			c, _, ok, err := m.fetchCommitted(cctx, part.id)
			cancel()
			switch {
			case err != nil:
				errs = append(errs, fmt.Errorf("source: stop partition %d: %w", part.id, err))
			case ok:
				part.committed.Store(c)
			}
		}
		res[part.id] = part.committed.Load()
		part.applyCancel()
		m.forget(part)
	}
	return res, errors.Join(errs...)
}

// finalCommit commits the applied offsets of stopped parts. Their actors
// are drained, so the Sink's restore offsets are final: they are asked
// before taking commitMu.
func (m *Manager) finalCommit(ctx context.Context, parts []*partition) error {
	ctx, cancel := detached(ctx)
	defer cancel()
	var points []commitPoint
	for _, part := range parts {
		applied := part.applied.Load()
		if applied <= part.committed.Load() {
			continue
		}
		r, err := m.sink.RestoreOffset(ctx, part.id)
		if err != nil {
			// Commit without metadata: a new owner that replays falls
			// back to the timestamp rule.
			m.log.Warn("kafka source: restore offset unknown at stop; committing without it", "partition", part.id, "err", err)
			r = -2
		}
		points = append(points, commitPoint{part: part, offset: applied, restore: r})
	}
	m.commitMu.Lock()
	defer m.commitMu.Unlock()
	if err := m.commit(ctx, points); err != nil {
		return fmt.Errorf("source: final commit: %w", err)
	}
	return nil
}

// detached returns ctx, or when it has ended a context that is not, for
// the cleanup that must still happen.
func detached(ctx context.Context) (context.Context, context.CancelFunc) {
	if ctx.Err() == nil {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(context.WithoutCancel(ctx), finalCommitTimeout)
}

// forget drops a stopped part: its metric series and its stopping entry.
func (m *Manager) forget(part *partition) {
	if part.hasMetrics.Load() {
		m.met.lag.DeleteLabelValues(part.label)
		m.met.replaying.DeleteLabelValues(part.label)
		m.met.buffered.DeleteLabelValues(part.label)
	}
	m.mu.Lock()
	if m.stopping[part.id] == part {
		delete(m.stopping, part.id)
	}
	m.mu.Unlock()
	close(part.stopped)
}

// commitPoint is an offset to commit for a partition, with the restore
// offset to store with it (-1: none in a window, stored as the offset
// itself; -2: unknown, no metadata).
type commitPoint struct {
	part            *partition
	offset, restore int64
}

// encodeMeta encodes the restore offset as commit metadata.
func encodeMeta(restore int64) string {
	if restore < 0 {
		return ""
	}
	return "r=" + strconv.FormatInt(restore, 10)
}

// parseMeta reads the restore offset from commit metadata.
func parseMeta(meta string) (int64, bool) {
	s, ok := strings.CutPrefix(meta, "r=")
	if !ok {
		return 0, false
	}
	r, err := strconv.ParseInt(s, 10, 64)
	if err != nil || r < 0 {
		return 0, false
	}
	return r, true
}

// commit commits points in one request; m.commitMu must be held. A point
// never moves a partition's committed offset back.
func (m *Manager) commit(ctx context.Context, points []commitPoint) error {
	offs := make(kadm.Offsets)
	n := 0
	for _, pt := range points {
		if pt.offset <= pt.part.committed.Load() {
			continue
		}
		restore := pt.restore
		if restore == -1 || restore > pt.offset {
			restore = pt.offset
		}
		offs.Add(kadm.Offset{Topic: m.cfg.Topic, Partition: pt.part.id, At: pt.offset, LeaderEpoch: -1, Metadata: encodeMeta(restore)})
		n++
	}
	if n == 0 {
		return nil
	}
	if m.cfg.Store != nil {
		return m.commitStore(ctx, points, offs)
	}
	resp, err := m.adm.CommitOffsets(ctx, m.cfg.Group, offs)
	if err != nil {
		m.met.commitErrors.Add(float64(n))
		return err
	}
	var errs []error
	for _, pt := range points {
		o, ok := resp.Lookup(m.cfg.Topic, pt.part.id)
		if !ok || pt.offset <= pt.part.committed.Load() {
			continue
		}
		if o.Err != nil {
			m.met.commitErrors.Inc()
			errs = append(errs, fmt.Errorf("partition %d: %w", pt.part.id, o.Err))
			continue
		}
		pt.part.committed.Store(pt.offset)
		m.met.commits.Inc()
	}
	return errors.Join(errs...)
}

// commitStore commits points to the Store, then those it stored to the
// group (offs holds them all), for monitoring: a failure there is counted,
// not returned.
func (m *Manager) commitStore(ctx context.Context, points []commitPoint, offs kadm.Offsets) error {
	var ps []Progress
	var pts []commitPoint
	for _, pt := range points {
		if o, ok := offs.Lookup(m.cfg.Topic, pt.part.id); ok && pt.offset > pt.part.committed.Load() {
			restore, ok := parseMeta(o.Metadata)
			if !ok {
				restore = -1
			}
			ps = append(ps, Progress{Partition: pt.part.id, Offset: pt.offset, Restore: restore})
			pts = append(pts, pt)
		}
	}
	errs := m.cfg.Store.Commit(ctx, ps)
	stored := make(kadm.Offsets)
	var failed []error
	for i, pt := range pts {
		if err := errs[i]; err != nil {
			m.met.commitErrors.Inc()
			failed = append(failed, fmt.Errorf("partition %d: %w", pt.part.id, err))
			continue
		}
		pt.part.committed.Store(pt.offset)
		m.met.commits.Inc()
		o, _ := offs.Lookup(m.cfg.Topic, pt.part.id)
		stored.Add(o)
	}
	if len(stored) > 0 {
		if resp, err := m.adm.CommitOffsets(ctx, m.cfg.Group, stored); err != nil || resp.Error() != nil {
			m.met.groupCommitErrors.Inc()
		}
	}
	return errors.Join(failed...)
}

// commitLoop commits, every CommitInterval, the offsets the actors
// published since the last round, then asks them for the next ones.
func (m *Manager) commitLoop() {
	defer m.wg.Done()
	t := time.NewTicker(m.cfg.CommitInterval)
	defer t.Stop()
	for {
		select {
		case <-m.ctx.Done():
			return
		case <-t.C:
		}
		m.commitRound()
	}
}

func (m *Manager) commitRound() {
	m.mu.Lock()
	parts := make([]*partition, 0, len(m.parts))
	for _, part := range m.parts {
		if part.pid.Load() != nil {
			parts = append(parts, part)
		}
	}
	m.mu.Unlock()
	m.commitMu.Lock()
	var points []commitPoint
	for _, part := range parts {
		if part.stopping.Load() {
			continue // Stop commits it
		}
		if pt, ok := part.takePublished(); ok {
			points = append(points, pt)
		}
	}
	if len(points) > 0 {
		ctx, cancel := context.WithTimeout(m.ctx, max(m.cfg.CommitInterval, finalCommitTimeout))
		if err := m.commit(ctx, points); err != nil && m.ctx.Err() == nil {
			m.log.Warn("kafka source: commit failed; retrying at the next interval", "err", err)
		}
		cancel()
	}
	m.commitMu.Unlock()
	m.refreshHighWatermarks(parts)
	for _, part := range parts {
		if part.applied.Load() > part.committed.Load() {
			part.commitDue.Store(true)
			m.sys.Root.Send(part.pid.Load(), commitTick{})
		}
	}
}

// refreshHighWatermarks reads the end offsets of parts, so that the lag
// of a partition that is paused or stuck is shown too (fetches only report
// the high watermark of partitions they return records for).
func (m *Manager) refreshHighWatermarks(parts []*partition) {
	if len(parts) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(m.ctx, max(m.cfg.CommitInterval, finalCommitTimeout))
	defer cancel()
	ends, err := m.adm.ListEndOffsets(ctx, m.cfg.Topic)
	if err != nil {
		return // the next round tries again; fetches keep them fresh meanwhile
	}
	for _, part := range parts {
		o, ok := ends.Lookup(m.cfg.Topic, part.id)
		if !ok || o.Err != nil {
			continue
		}
		for {
			h := part.hwm.Load()
			if o.Offset <= h || part.hwm.CompareAndSwap(h, o.Offset) {
				break
			}
		}
		if applied := part.applied.Load(); applied >= 0 {
			part.lag.Set(float64(max(0, part.hwm.Load()-applied)))
		}
	}
}

// command changes what the poll loop consumes; done is closed once done.
type command struct {
	add    *partition
	remove []*partition
	done   chan struct{}
}

// enqueue hands c to the poll loop, waking it, and returns c.done.
func (m *Manager) enqueue(c *command) <-chan struct{} {
	c.done = make(chan struct{})
	m.cmdMu.Lock()
	defer m.cmdMu.Unlock()
	if m.pollExited {
		close(c.done)
		return c.done
	}
	m.cmds = append(m.cmds, c)
	if m.pollCancel != nil {
		m.pollCancel()
	}
	m.wakePoll()
	return c.done
}

// wakePoll wakes the poll loop if it is throttled.
func (m *Manager) wakePoll() {
	select {
	case m.wake <- struct{}{}:
	default:
	}
}

// throttle waits, before the next poll, until the over partitions are
// back to their limit; every pauseGrace, those that applied nothing since
// the previous check are paused. It returns the partitions still over
// when a command interrupts the wait (the poll loop runs it and comes
// back), else none.
func (m *Manager) throttle(over []*partition, deadline time.Time) []*partition {
	for {
		check := !time.Now().Before(deadline)
		over = slices.DeleteFunc(over, func(p *partition) bool { return p.drained(check) })
		if len(over) == 0 {
			return over
		}
		if check {
			deadline = time.Now().Add(pauseGrace)
		}
		wait := time.Until(deadline)
		t := time.NewTimer(wait)
		select {
		case <-m.wake:
		case <-t.C:
		case <-m.ctx.Done():
			t.Stop()
			return over[:0]
		}
		t.Stop()
		m.cmdMu.Lock()
		pending := len(m.cmds) > 0
		m.cmdMu.Unlock()
		if pending {
			return over
		}
	}
}

// pollLoop is the only goroutine that polls the client and changes its
// partitions, so no record of a removed partition is dispatched after
// its removal.
func (m *Manager) pollLoop() {
	defer m.wg.Done()
	active := make(map[int32]*partition)
	var over []*partition // partitions over their limit
	var deadline time.Time
	for {
		m.cmdMu.Lock()
		cmds := m.cmds
		m.cmds = nil
		if m.ctx.Err() != nil {
			m.pollExited = true
			m.cmdMu.Unlock()
			for _, c := range cmds {
				close(c.done)
			}
			return
		}
		ctx, cancel := context.WithCancel(m.ctx)
		m.pollCancel = cancel
		m.cmdMu.Unlock()
		for _, c := range cmds {
			m.run(c, active)
		}
		if len(over) > 0 {
			if over = m.throttle(over, deadline); len(over) > 0 {
				cancel()
				continue // a command came: run it first
			}
		}
		fetches := m.cl.PollFetches(ctx)
		cancel()
		if over = m.dispatch(fetches, active, over[:0]); len(over) > 0 {
			deadline = time.Now().Add(pauseGrace)
		}
	}
}

// run applies a command in the poll loop.
func (m *Manager) run(c *command, active map[int32]*partition) {
	defer close(c.done)
	topic := m.cfg.Topic
	if part := c.add; part != nil {
		active[part.id] = part
		m.cl.AddConsumePartitions(map[string]map[int32]kgo.Offset{topic: {part.id: part.startAt}})
	}
	if len(c.remove) == 0 {
		return
	}
	ps := make([]int32, 0, len(c.remove))
	for _, part := range c.remove {
		if active[part.id] == part {
			delete(active, part.id)
			ps = append(ps, part.id)
		}
	}
	if len(ps) == 0 {
		return
	}
	m.cl.RemoveConsumePartitions(map[string][]int32{topic: ps})
	for _, part := range c.remove {
		part.flow.Lock()
		part.removed = true
		part.paused = false
		part.flow.Unlock()
	}
	// A partition added again later must not start paused.
	m.cl.ResumeFetchPartitions(map[string][]int32{topic: ps})
}

// dispatch sends each partition's records to its actor and appends to
// over the partitions now over their limit.
func (m *Manager) dispatch(fetches kgo.Fetches, active map[int32]*partition, over []*partition) []*partition {
	for i := range fetches {
		for j := range fetches[i].Topics {
			ft := &fetches[i].Topics[j]
			for k := range ft.Partitions {
				fp := &ft.Partitions[k]
				if fp.Err != nil && !errors.Is(fp.Err, context.Canceled) && !errors.Is(fp.Err, kgo.ErrClientClosed) {
					m.log.Warn("kafka source: fetch error", "topic", ft.Topic, "partition", fp.Partition, "err", fp.Err)
				}
				part := active[fp.Partition]
				if part == nil || ft.Topic != m.cfg.Topic {
					continue
				}
				if fp.HighWatermark >= 0 {
					part.hwm.Store(fp.HighWatermark)
				}
				if len(fp.Records) == 0 {
					continue
				}
				if part.hold(len(fp.Records)) {
					over = append(over, part)
				}
				part.queued.Add(int64(len(fp.Records)))
				m.sys.Root.Send(part.pid.Load(), &batch{recs: fp.Records})
			}
		}
	}
	return over
}

// sleep waits d or until ctx ends; it reports whether d passed.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
