// Package jslog uses a JetStream stream as the durable log of a node, with
// the shape of package source (its Kafka counterpart) so that the node
// treats both alike: a Manager consumes the partitions a node owns and
// applies their events through a source.Sink, and a Producer appends HTTP
// and NATS input to the stream first and answers once it is stored.
//
// # The log
//
// One stream (file storage, Config.Replicas replicas) holds every
// partition; partition p's messages are published to "<Subject>.<p>".
// Each message is a batch of one partition's events, encoded as a protobuf
// EventBatch (event.AppendProto) with a header FormatHeader: "proto". An
// offset is a stream sequence, as Kafka's: the next one to read, one past
// the last applied. A partition's sequences have gaps (the other
// partitions' messages interleave), which nothing here assumes away: a
// replay of [Restore, Offset) ends after the partition's last message below
// Offset, and the stream is never asked for sequence Offset−1.
//
// The stream discards new messages when it reaches MaxBytes (a full disk
// fails the Producer's calls, so the node answers 503, instead of silently
// dropping what a replay needs) and drops messages older than MaxAge.
//
// # Consuming
//
// Each started partition has an ephemeral pull consumer of its own,
// filtered to its subject, starting at a stream sequence (or at a time),
// with no acknowledgements (R1, memory storage), and two goroutines: a
// reader that fetches and an applier that decodes (event.Decoder,
// FormatProto) and calls Sink.Apply, retrying with backoff until it
// succeeds or the partition stops.
//
//	stream ─▶ consumer of p ─▶ reader ─▶ queue (≤ MaxBufferedMessages) ─▶ applier ─▶ Sink
//	                              ▲ fetch only the room left                │ applied, restore
//	                              └────────── space ◀───────────────────────┤
//	                                                    commit every CommitInterval ─▶ Store or KV
//
// Why not an ordered consumer: the library's ordered consumer recreates
// its server-side consumer at every Fetch (Fetch is the only way to ask
// for exactly the room left, which is what bounds memory), and its
// Consume/Messages modes buffer messages out of our accounting. The
// reader does what an ordered consumer does (it checks that consumer
// sequences follow each other and, on a gap, an error, a missing heartbeat
// or a vanished consumer, creates a new consumer from one past the last
// stream sequence it read) while keeping one consumer for as long as it
// works: a Fetch per batch and no consumer churn.
//
// Delivery is at-least-once and state is exact, as with Kafka: progress
// (Offset: applied, Restore: Sink.RestoreOffset) is committed only once
// every message below Offset is applied, to the Store when one is set
// (fenced: an error wrapping source.ErrFenced stops the partition, nothing
// more is committed), else to a KV bucket, key "p.<partition>".
//
// Locks: Manager.mu is never held with another lock, nor across a network
// call. Everything else a partition has is owned by its goroutines or
// atomic.
package jslog

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/squallhq/squall/api"
	"github.com/squallhq/squall/source"
)

const (
	// maxApply is the largest number of events passed to one Sink.Apply.
	maxApply = 1000
	// maxGather is the most messages the applier takes from its queue
	// before applying them.
	maxGather = 64
	// fetchWait bounds one fetch when there is nothing to read; the
	// server sends heartbeats every fetchHeartbeat meanwhile, whose
	// absence ends the fetch with an error (the consumer is recreated).
	fetchWait      = 5 * time.Second
	fetchHeartbeat = time.Second
	// consumerInactive is how long the server keeps a partition consumer
	// nobody fetches from (a crashed node's).
	consumerInactive = time.Minute
	// apiTimeout bounds one JetStream API call (stream, consumer, KV).
	apiTimeout = 10 * time.Second
	// streamAttempt bounds one attempt to create or update the stream.
	streamAttempt = 2 * time.Second
	// closeTimeout bounds Close's drain of in-flight messages.
	closeTimeout = 10 * time.Second
	// finalCommitTimeout bounds the commit of Stop and Close.
	finalCommitTimeout = 5 * time.Second
	// logEvery is the least time between two warnings of a kind.
	logEvery = 10 * time.Second
	// Backoffs of retried operations (Apply, consumer creation, start).
	minBackoff = 10 * time.Millisecond
	maxBackoff = 2 * time.Second
)

// Values of partition.state.
const (
	stateStarting int32 = iota
	stateReplaying
	stateLive
)

var stateNames = [...]string{source.StateStarting, source.StateReplaying, source.StateLive}

// Manager runs the consumers of the partitions this node owns. It is safe
// for concurrent use.
type Manager struct {
	cfg    Config
	sink   source.Sink
	log    *slog.Logger
	js     jetstream.JetStream
	kv     jetstream.KeyValue // nil with a Store
	met    *metrics
	warned limiter

	mu       sync.Mutex
	parts    map[int32]*partition // started and not stopping
	stopping map[int32]*partition // being stopped
	closed   bool

	wg        sync.WaitGroup // every partition's goroutines
	closeOnce sync.Once
	closeErr  error
}

// New returns a Manager consuming cfg.Stream into sink. It creates the
// stream, or updates its configuration, and without cfg.Store the
// progress bucket; it fails when JetStream cannot be reached.
func New(cfg Config, sink source.Sink) (*Manager, error) {
	if sink == nil {
		return nil, fmt.Errorf("%w: nil Sink", ErrConfig)
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	js, err := jetstream.New(cfg.Conn)
	if err != nil {
		return nil, fmt.Errorf("jslog: %w", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), apiTimeout)
	defer cancel()
	if err := ensureStream(ctx, js, &cfg); err != nil {
		return nil, err
	}
	m := &Manager{cfg: cfg, sink: sink, log: cfg.Logger, js: js,
		parts: make(map[int32]*partition), stopping: make(map[int32]*partition)}
	if cfg.Store == nil {
		m.kv, err = js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
			Bucket:   cfg.ProgressBucket,
			History:  1,
			Storage:  jetstream.FileStorage,
			Replicas: cfg.Replicas,
		})
		if err != nil {
			return nil, fmt.Errorf("jslog: progress bucket %q: %w", cfg.ProgressBucket, err)
		}
	}
	if m.met, err = newMetrics(cfg.Registerer); err != nil {
		return nil, err
	}
	return m, nil
}

// ensureStream creates the log stream or updates its configuration, in
// attempts of at most streamAttempt until ctx ends: when several nodes
// create a replicated stream at once, the server can leave every request
// unanswered although the stream is created (nats-server 2.15, fresh
// 3-server cluster, about one start in two); the next attempt finds it
// and updates it.
func ensureStream(ctx context.Context, js jetstream.JetStream, cfg *Config) error {
	sc := jetstream.StreamConfig{
		Name:      cfg.Stream,
		Subjects:  []string{cfg.Subject + ".*"},
		Storage:   jetstream.FileStorage,
		Replicas:  cfg.Replicas,
		MaxAge:    cfg.MaxAge,
		MaxBytes:  cfg.MaxBytes,
		Discard:   jetstream.DiscardNew,
		Retention: jetstream.LimitsPolicy,
	}
	for {
		actx, cancel := context.WithTimeout(ctx, streamAttempt)
		_, err := js.CreateOrUpdateStream(actx, sc)
		cancel()
		switch {
		case err == nil:
			return nil
		case ctx.Err() != nil || !errors.Is(err, context.DeadlineExceeded):
			return fmt.Errorf("jslog: stream %q: %w", cfg.Stream, err)
		}
	}
}

// Start begins consuming partition p in the background; it does nothing
// when p is already consumed or the Manager is closed. A partition being
// stopped is started again once its Stop is done.
//
// With from.Progress (the Store's), replay [Restore, Offset) in restore
// mode then go on live from Offset; with from.Handoff as well, live from
// Offset at once; an Offset below 0 starts live at the start of the
// stream. Without Progress: with Handoff and Offset ≥ 0, live from Offset;
// otherwise the progress committed to the KV bucket is read (none with a
// Store) and used as above (Handoff: live from it); with none, live at the
// start of the stream. A progress without a restore offset replays the
// messages stored in the last Retention below Offset.
//
// Failures to read progress or create the consumer are logged and retried
// until Stop or Close.
func (m *Manager) Start(p int32, from source.StartFrom) {
	if p < 0 {
		m.log.Error("jetstream log: start of a negative partition ignored", "partition", p)
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
	go part.run(from)
}

// Stop stops consuming p, waits for its fetched messages to be applied,
// commits the applied offset (not held by CommitHold) and returns it: the
// new owner starts there. When ctx ends first, the rest are abandoned (the
// Sink's ctx is canceled), what was applied is committed, and the error
// wraps ctx's. A partition fenced meanwhile returns its last committed
// offset and an error wrapping source.ErrFenced. Stopping a partition not
// consumed returns source.ErrNotStarted (source.ErrClosed once closed).
func (m *Manager) Stop(ctx context.Context, p int32) (committed int64, err error) {
	m.mu.Lock()
	part := m.parts[p]
	if part == nil {
		closed := m.closed
		m.mu.Unlock()
		if closed {
			return -1, source.ErrClosed
		}
		return -1, fmt.Errorf("%w: %d", source.ErrNotStarted, p)
	}
	delete(m.parts, p)
	m.stopping[p] = part
	m.mu.Unlock()
	part.readCancel()
	return m.finish(ctx, part)
}

// finish waits for a partition whose reading is canceled to be done (its
// applier drained and its final commit made) and forgets it.
func (m *Manager) finish(ctx context.Context, part *partition) (int64, error) {
	var errs []error
	select {
	case <-part.done:
	case <-ctx.Done():
		part.applyCancel()
		<-part.done
		if part.abandoned.Load() {
			errs = append(errs, fmt.Errorf("jslog: stop partition %d: in-flight messages abandoned: %w", part.id, ctx.Err()))
		}
	}
	part.applyCancel()
	errs = append(errs, part.finalErr)
	if !part.planned.Load() && m.kv != nil {
		// Never started: the committed offset is the bucket's.
		cctx, cancel := context.WithTimeout(context.Background(), finalCommitTimeout)
		pr, ok, err := m.readProgress(cctx, part.id)
		cancel()
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("jslog: stop partition %d: %w", part.id, err))
		case ok:
			part.committed.Store(pr.Offset)
		}
	}
	m.forget(part)
	return part.committed.Load(), errors.Join(errs...)
}

// Close stops every partition as Stop does (waiting at most 10s for
// in-flight messages) and commits what was applied. It is idempotent; it
// returns the commit errors.
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
		for _, part := range parts {
			part.readCancel()
		}
		ctx, cancel := context.WithTimeout(context.Background(), closeTimeout)
		var errs []error
		for _, part := range parts {
			if _, err := m.finish(ctx, part); err != nil {
				errs = append(errs, err)
			}
		}
		cancel()
		for _, part := range others {
			<-part.stopped
		}
		m.wg.Wait()
		m.closeErr = errors.Join(errs...)
	})
	return m.closeErr
}

// Status returns the state of every consumed partition, by partition.
// HighWatermark is one past the partition's last stored message as last
// seen (-1 unknown) and Lag counts messages (pending on the server plus
// buffered), not sequence numbers, which have gaps.
func (m *Manager) Status() []api.SourceStatus {
	m.mu.Lock()
	parts := make([]*partition, 0, len(m.parts))
	for _, part := range m.parts {
		parts = append(parts, part)
	}
	m.mu.Unlock()
	out := make([]api.SourceStatus, 0, len(parts))
	for _, part := range parts {
		out = append(out, part.status())
	}
	slices.SortFunc(out, func(a, b api.SourceStatus) int { return int(a.Partition - b.Partition) })
	return out
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

// progressKey is partition p's key in the progress bucket.
func progressKey(p int32) string { return "p." + strconv.Itoa(int(p)) }

// encodeProgress encodes a progress as "<offset>,<restore>", or
// "<offset>" when the restore offset is unknown (negative).
func encodeProgress(offset, restore int64) []byte {
	b := strconv.AppendInt(nil, offset, 10)
	if restore >= 0 {
		b = append(b, ',')
		b = strconv.AppendInt(b, restore, 10)
	}
	return b
}

// decodeProgress reads what encodeProgress wrote; restore is -1 when
// absent.
func decodeProgress(b []byte) (offset, restore int64, err error) {
	s := string(b)
	os, rs, hasR := strings.Cut(s, ",")
	if offset, err = strconv.ParseInt(os, 10, 64); err != nil || offset < 0 {
		return 0, 0, fmt.Errorf("jslog: malformed progress %q", s)
	}
	restore = -1
	if hasR {
		if restore, err = strconv.ParseInt(rs, 10, 64); err != nil || restore < 0 {
			return 0, 0, fmt.Errorf("jslog: malformed progress %q", s)
		}
	}
	return offset, restore, nil
}

// readProgress reads p's progress from the bucket; ok is false when there
// is none.
func (m *Manager) readProgress(ctx context.Context, p int32) (source.Progress, bool, error) {
	if m.kv == nil {
		return source.Progress{}, false, nil
	}
	e, err := m.kv.Get(ctx, progressKey(p))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return source.Progress{}, false, nil
	}
	if err != nil {
		return source.Progress{}, false, fmt.Errorf("read progress of partition %d: %w", p, err)
	}
	o, r, err := decodeProgress(e.Value())
	if err != nil {
		return source.Progress{}, false, err
	}
	return source.Progress{Partition: p, Offset: o, Restore: r}, true, nil
}

// commit stores p's progress in the Store or the bucket.
func (m *Manager) commit(ctx context.Context, pr source.Progress) error {
	if m.cfg.Store != nil {
		errs := m.cfg.Store.Commit(ctx, []source.Progress{pr})
		if len(errs) != 1 {
			return fmt.Errorf("jslog: store answered %d results for 1 commit", len(errs))
		}
		return errs[0]
	}
	_, err := m.kv.Put(ctx, progressKey(pr.Partition), encodeProgress(pr.Offset, pr.Restore))
	return err
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

// limiter lets a warning through at most once every logEvery.
type limiter struct{ last atomic.Int64 }

// allow reports whether a warning may be logged now.
func (l *limiter) allow() bool {
	now := time.Now().UnixNano()
	last := l.last.Load()
	return now-last >= int64(logEvery) && l.last.CompareAndSwap(last, now)
}

// newConsumerName returns a unique name for a partition consumer.
func newConsumerName(p int32) string {
	return "squall_p" + strconv.Itoa(int(p)) + "_" + strconv.FormatUint(rand.Uint64(), 36)
}
