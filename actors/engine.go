// Package actors runs Squall's key actors: one protoactor partition actor
// per key partition owns the virtual actors of its keys and runs their
// handlers inline, in arrival order.
//
// The path of a batch: Submit groups the events by partition (Kafka's
// murmur2 partitioner), sends one message per partition, and each partition
// actor applies its events to their keys; Submit returns once every
// partition has applied its share. A key actor is activated on its first
// event and passivated after IdleTTL without events.
package actors

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/semaphore"

	"github.com/squallhq/squall/api"
	"github.com/squallhq/squall/cluster"
	"github.com/squallhq/squall/event"
	"github.com/squallhq/squall/internal/workers"
	"github.com/squallhq/squall/window"
)

// Errors returned by the Engine.
var (
	// ErrClosed is returned by calls on an Engine that is closed or closing.
	ErrClosed = errors.New("actors: engine closed")
	// ErrNotFound is returned by Get when the key has no live actor.
	ErrNotFound = errors.New("actors: key has no live actor")
	// ErrNotOwned is returned for a partition this node does not serve.
	ErrNotOwned = errors.New("actors: partition not served by this node")
	// ErrNotAwaiting refuses a handoff chunk for a partition that is not
	// waiting for one (it serves already).
	ErrNotAwaiting = errors.New("actors: partition not awaiting a handoff")
)

// Result is what became of one submitted event.
type Result uint8

// Results of a submitted event. The first three equal window.Outcome.
const (
	ResultApplied   = Result(window.Applied)
	ResultLate      = Result(window.Late)
	ResultDuplicate = Result(window.Duplicate)
	// ResultShed: the event's key had no actor and the node holds MaxKeys.
	ResultShed Result = 3
	// ResultFailed: the Handler panicked on the event.
	ResultFailed Result = 4
	// ResultMoved: this node does not own the event's partition (any
	// more); the caller routes it again by the current assignment.
	ResultMoved Result = 5
	// NumResults is the number of Result values.
	NumResults = 6
)

var resultNames = [NumResults]string{"applied", "late", "duplicate", "shed", "failed", "moved"}

// String returns the result's name as used in metric labels.
func (r Result) String() string {
	if r < NumResults {
		return resultNames[r]
	}
	return fmt.Sprintf("result(%d)", r)
}

// Accepted reports whether the event was taken by its key (applied, or
// dropped as late or duplicate by the key's own rules).
func (r Result) Accepted() bool { return r <= ResultDuplicate }

// deadLetterInterval is protoactor's dead-letter log throttle period.
const deadLetterInterval = 10 * time.Millisecond

// requestTimeout bounds a Get or List when the context has no deadline.
const requestTimeout = 10 * time.Second

// Engine owns the partition actors of a node. It is safe for concurrent use.
type Engine struct {
	cfg    Config
	system *actor.ActorSystem
	pids   []*actor.PID
	live   atomic.Int64
	// deadLetter is when protoactor last reported a dead letter (unix ns).
	deadLetter atomic.Int64
	sem        *semaphore.Weighted
	metrics    *metrics
	subs       sync.Pool

	mu       sync.RWMutex // guards closed against Submit's sends
	closed   bool
	timers   []*time.Timer  // handoff waits, stopped by Close
	inflight sync.WaitGroup // submissions sent and not yet applied
	stop     chan struct{}
	workers  *workers.Pool  // the partition actors' dispatcher
	bg       sync.WaitGroup // the passivation and tick loops
	once     sync.Once
}

// New starts an Engine with cfg.Partitions partition actors.
func New(cfg Config) (*Engine, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	e := &Engine{
		cfg: cfg,
		system: actor.NewActorSystem(actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger { return quiet }),
			actor.WithDeadLetterThrottleInterval(deadLetterInterval), actor.WithDeadLetterRequestLogging(false)),
		pids: make([]*actor.PID, cfg.Partitions),
		sem:  semaphore.NewWeighted(int64(cfg.MaxInflight)),
		stop: make(chan struct{}),
		// As many as partitions can have a turn at once (GOMAXPROCS of
		// them run), bounded: idle ones cost their stacks only.
		workers: workers.New(min(cfg.Partitions, 256)),
	}
	// protoactor starts a goroutine that lives deadLetterInterval after a
	// dead letter (a reply to a request that timed out, a message to a
	// stopped partition); it cannot be joined, so Close waits it out.
	e.system.EventStream.SubscribeWithPredicate(func(any) {
		e.deadLetter.Store(time.Now().UnixNano())
	}, func(m any) bool {
		_, ok := m.(*actor.DeadLetterEvent)
		return ok
	})
	m, err := newMetrics(cfg.Registerer, e)
	if err != nil {
		e.workers.Stop()
		return nil, err
	}
	e.metrics = m
	if !cfg.Clustered {
		for i := range e.pids {
			e.pids[i] = e.spawn(int32(i), false)
		}
		m.owned.Set(float64(len(e.pids)))
	}
	every := max(min(e.cfg.IdleTTL/4, time.Second), 10*time.Millisecond)
	e.bg.Add(1)
	go e.periodic(every, func(ctx context.Context) error { _, err := e.Sweep(ctx); return err })
	if _, ok := cfg.Handler.(StatefulHandler); ok {
		e.bg.Add(1)
		go e.periodic(cfg.TickInterval, e.Tick)
	}
	return e, nil
}

// Partitions returns the number of key partitions.
func (e *Engine) Partitions() int { return e.cfg.Partitions }

// Live returns the number of live key actors.
func (e *Engine) Live() int64 { return e.live.Load() }

// Submit applies evs to their keys and writes what became of evs[i] to
// out[i]; len(out) must be len(evs). It returns once every event has been
// applied (or shed), or with ctx's error while waiting for room in the
// in-flight bound, in which case nothing was submitted.
func (e *Engine) Submit(ctx context.Context, evs []event.Event, out []Result) error {
	return e.SubmitRecords(ctx, evs, nil, false, out)
}

// SubmitRecords is Submit for events read from Kafka: offsets[i] is the
// record offset of evs[i] (nil: not from Kafka), kept with each key so that
// RestoreOffset can tell how far back a replay must start. With replay the
// events rebuild state and handlers emit nothing (restore mode).
func (e *Engine) SubmitRecords(ctx context.Context, evs []event.Event, offsets []int64, replay bool, out []Result) error {
	if len(out) != len(evs) || (offsets != nil && len(offsets) != len(evs)) {
		return fmt.Errorf("actors: %d results and %d offsets for %d events", len(out), len(offsets), len(evs))
	}
	if len(evs) == 0 {
		return nil
	}
	s := e.getSubmission()
	s.out = out
	s.done = make(chan struct{})
	s.offsets, s.replay = offsets, replay
	if err := e.send(ctx, s, evs); err != nil {
		e.putSubmission(s)
		return err
	}
	<-s.done
	e.putSubmission(s)
	return nil
}

// SubmitAsync is Submit without the wait: once every event has been
// applied, done is called (on a partition goroutine; it must not block)
// with the results. evs may be reused as soon as SubmitAsync returns.
func (e *Engine) SubmitAsync(ctx context.Context, evs []event.Event, done func([]Result)) error {
	if len(evs) == 0 {
		done(nil)
		return nil
	}
	s := e.getSubmission()
	s.out = make([]Result, len(evs))
	s.callback = done
	if err := e.send(ctx, s, evs); err != nil {
		e.putSubmission(s)
		return err
	}
	return nil
}

// send groups evs by partition into s and sends one batch per partition.
func (e *Engine) send(ctx context.Context, s *submission, evs []event.Event) error {
	weight := min(int64(len(evs)), int64(e.cfg.MaxInflight))
	if err := e.sem.Acquire(ctx, weight); err != nil {
		return err
	}
	e.mu.RLock()
	defer e.mu.RUnlock()
	if e.closed {
		e.sem.Release(weight)
		return ErrClosed
	}
	e.inflight.Add(1)
	e.metrics.inflight.Add(float64(len(evs)))
	s.weight = weight
	s.start = time.Now()

	n := len(evs)
	parts := grow(s.parts, n)
	counts := grow(s.counts, e.cfg.Partitions+1)
	clear(counts)
	for i := range evs {
		p := cluster.Partition(evs[i].Key, e.cfg.Partitions)
		parts[i] = p
		counts[p+1]++
	}
	for p := 1; p <= e.cfg.Partitions; p++ {
		counts[p] += counts[p-1]
	}
	buf := grow(s.events, n)
	idx := grow(s.idx, n)
	var offs []int64
	if s.offsets != nil {
		offs = grow(s.offs, n)
		s.offs = offs
	}
	pos := grow(s.pos, e.cfg.Partitions)
	copy(pos, counts[:e.cfg.Partitions])
	for i := range evs {
		p := parts[i]
		buf[pos[p]] = evs[i]
		idx[pos[p]] = int32(i)
		if offs != nil {
			offs[pos[p]] = s.offsets[i]
		}
		pos[p]++
	}
	s.parts, s.counts, s.events, s.idx, s.pos = parts, counts, buf, idx, pos

	s.batches = s.batches[:0]
	moved := 0
	for p := 0; p < e.cfg.Partitions; p++ {
		lo, hi := counts[p], counts[p+1]
		if hi == lo {
			continue
		}
		if e.pids[p] == nil { // not ours: the caller routes these again
			for _, i := range idx[lo:hi] {
				s.out[i] = ResultMoved
			}
			moved += int(hi - lo)
			continue
		}
		b := applyBatch{part: int32(p), events: buf[lo:hi], idx: idx[lo:hi], sub: s}
		if offs != nil {
			b.offsets = offs[lo:hi]
		}
		s.batches = append(s.batches, b)
	}
	if moved > 0 {
		e.metrics.results[ResultMoved].Add(float64(moved))
		e.metrics.inflight.Sub(float64(moved))
	}
	// One extra count, dropped below, so that a submission with no local
	// batch completes here and none completes before every batch is sent.
	s.pending.Store(int32(len(s.batches)) + 1)
	for i := range s.batches {
		b := &s.batches[i]
		e.system.Root.Send(e.pids[b.part], b)
	}
	s.partDone()
	return nil
}

// Get returns the state document of key, or ErrNotFound.
func (e *Engine) Get(ctx context.Context, key string) (*api.KeyState, error) {
	return askKey[*api.KeyState](ctx, e, key, "get", &getKey{key: key})
}

// Events returns the events key's actor keeps (api.KeyEvents), or
// ErrNotFound.
func (e *Engine) Events(ctx context.Context, key string) (*api.KeyEvents, error) {
	return askKey[*api.KeyEvents](ctx, e, key, "events of", &getEvents{key: key})
}

// Series returns the per-bucket statistics of key's window
// (api.KeySeries), or ErrNotFound.
func (e *Engine) Series(ctx context.Context, key string) (*api.KeySeries, error) {
	return askKey[*api.KeySeries](ctx, e, key, "series of", &getSeries{key: key})
}

// askKey asks key's partition actor msg and returns its answer, ErrNotFound
// when the answer is nil (the key has no live actor).
func askKey[T interface{ comparable }](ctx context.Context, e *Engine, key, what string, msg any) (T, error) {
	var zero T
	if e.isClosed() {
		return zero, ErrClosed
	}
	e.mu.RLock()
	pid := e.pids[cluster.Partition(key, e.cfg.Partitions)]
	e.mu.RUnlock()
	if pid == nil {
		return zero, ErrNotOwned
	}
	res, err := e.system.Root.RequestFuture(pid, msg, timeout(ctx)).Result()
	if err != nil {
		return zero, fmt.Errorf("actors: %s %q: %w", what, key, err)
	}
	v, _ := res.(T)
	if v == zero {
		return zero, ErrNotFound
	}
	return v, nil
}

// List returns up to limit live keys with the given prefix, sorted, after
// the key after ("" from the first); KeyList.Next names the next page's.
func (e *Engine) List(ctx context.Context, prefix, after string, limit int) (*api.KeyList, error) {
	if e.isClosed() {
		return nil, ErrClosed
	}
	var futures []*actor.Future
	for _, pid := range e.owned() {
		futures = append(futures, e.system.Root.RequestFuture(pid, &listKeys{prefix: prefix, after: after, limit: limit}, timeout(ctx)))
	}
	out := &api.KeyList{Live: e.Live(), Keys: []api.KeySummary{}}
	for _, f := range futures {
		res, err := f.Result()
		if err != nil {
			return nil, fmt.Errorf("actors: list: %w", err)
		}
		kl := res.(keyList)
		out.Keys = append(out.Keys, kl.keys...)
		out.Truncated = out.Truncated || kl.truncated
	}
	out.Cut(limit)
	return out, nil
}

// Sweep passivates every key idle for IdleTTL or longer, now, and returns
// how many it passivated. The engine also sweeps on its own, every
// IdleTTL/4 (at most every second).
func (e *Engine) Sweep(ctx context.Context) (int, error) {
	return e.broadcast(ctx, func(done chan<- int) any { return &sweep{done: done} })
}

// Tick runs the StatefulHandler's Tick on every served partition, now, and
// returns once they all have. The engine also ticks on its own every
// TickInterval when the Handler is a StatefulHandler.
func (e *Engine) Tick(ctx context.Context) error {
	_, err := e.broadcast(ctx, func(done chan<- int) any { return &tick{done: done} })
	return err
}

// broadcast sends msg(done) to every served partition and sums what they
// send on done.
func (e *Engine) broadcast(ctx context.Context, msg func(done chan<- int) any) (int, error) {
	e.mu.RLock()
	if e.closed {
		e.mu.RUnlock()
		return 0, ErrClosed
	}
	pids := make([]*actor.PID, 0, len(e.pids))
	for _, pid := range e.pids {
		if pid != nil {
			pids = append(pids, pid)
		}
	}
	done := make(chan int, len(pids))
	for _, pid := range pids {
		e.system.Root.Send(pid, msg(done))
	}
	e.mu.RUnlock()
	total := 0
	for range pids {
		select {
		case n := <-done:
			total += n
		case <-ctx.Done():
			return total, ctx.Err()
		}
	}
	return total, nil
}

// periodic runs f every interval until the engine closes.
func (e *Engine) periodic(every time.Duration, f func(context.Context) error) {
	defer e.bg.Done()
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-e.stop:
			return
		case <-t.C:
			ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
			err := f(ctx)
			cancel()
			if errors.Is(err, ErrClosed) {
				return
			}
		}
	}
}

// Close stops intake, waits for submitted events to be applied, then stops
// the partition actors; their keys are dropped. It is safe to call twice.
func (e *Engine) Close() error {
	e.once.Do(func() {
		e.mu.Lock()
		e.closed = true
		for _, t := range e.timers {
			t.Stop()
		}
		e.mu.Unlock()
		close(e.stop)
		e.bg.Wait()
		e.inflight.Wait()
		e.shutdownActors()
	})
	return nil
}

func (e *Engine) shutdownActors() {
	for _, pid := range e.pids {
		if pid != nil {
			_ = e.system.Root.StopFuture(pid).Wait()
		}
	}
	e.system.Shutdown()
	e.workers.Stop()
	if last := e.deadLetter.Load(); last != 0 {
		time.Sleep(time.Until(time.Unix(0, last).Add(deadLetterInterval + 5*time.Millisecond)))
	}
}

// owned returns the PIDs of the partitions served now.
func (e *Engine) owned() []*actor.PID {
	e.mu.RLock()
	defer e.mu.RUnlock()
	pids := make([]*actor.PID, 0, len(e.pids))
	for _, pid := range e.pids {
		if pid != nil {
			pids = append(pids, pid)
		}
	}
	return pids
}

func (e *Engine) isClosed() bool {
	e.mu.RLock()
	defer e.mu.RUnlock()
	return e.closed
}

func (e *Engine) reserveKey() bool {
	if e.live.Add(1) > int64(e.cfg.MaxKeys) {
		e.live.Add(-1)
		return false
	}
	return true
}

func (e *Engine) releaseKeys(n int) { e.live.Add(-int64(n)) }

// flush adds a partition batch's tally to the metrics and resets it.
func (e *Engine) flush(tally *[NumResults]int, n int, s *submission) {
	for r, c := range tally {
		if c > 0 {
			e.metrics.results[r].Add(float64(c))
			tally[r] = 0
		}
	}
	e.metrics.latency.Observe(time.Since(s.start).Seconds())
	e.metrics.inflight.Sub(float64(n))
}

func timeout(ctx context.Context) time.Duration {
	if d, ok := ctx.Deadline(); ok {
		return max(time.Until(d), time.Millisecond)
	}
	return requestTimeout
}

// submission is one Submit call in flight; pooled with its buffers.
type submission struct {
	e        *Engine
	out      []Result
	offsets  []int64 // the caller's, parallel to its events; nil: not from Kafka
	replay   bool
	done     chan struct{}
	callback func([]Result)
	pending  atomic.Int32
	weight   int64
	start    time.Time

	parts   []int32
	counts  []int32
	pos     []int32
	events  []event.Event
	idx     []int32
	offs    []int64
	batches []applyBatch
}

// partDone is called by each partition once it has applied its batch; the
// last one completes the submission.
func (s *submission) partDone() {
	if s.pending.Add(-1) != 0 {
		return
	}
	e := s.e
	e.sem.Release(s.weight)
	if s.callback != nil {
		cb, out := s.callback, s.out
		e.putSubmission(s)
		cb(out)
	} else {
		close(s.done)
	}
	e.inflight.Done()
}

func (e *Engine) getSubmission() *submission {
	if s, ok := e.subs.Get().(*submission); ok {
		return s
	}
	return &submission{e: e}
}

func (e *Engine) putSubmission(s *submission) {
	clear(s.events) // drop references to the caller's strings and tags
	s.out, s.done, s.callback, s.offsets, s.replay = nil, nil, nil, nil, false
	if cap(s.events) > 1<<16 { // do not pin a huge batch's buffers
		s.events, s.idx, s.parts, s.offs = nil, nil, nil, nil
	}
	e.subs.Put(s)
}

func grow[T any](s []T, n int) []T {
	if cap(s) < n {
		return make([]T, n)
	}
	return s[:n]
}

type metrics struct {
	results      [NumResults]prometheus.Counter
	activations  prometheus.Counter
	passivations prometheus.Counter
	outputs      prometheus.Counter
	latency      prometheus.Histogram
	inflight     prometheus.Gauge
	owned        prometheus.Gauge
	handoffs     *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer, e *Engine) (*metrics, error) {
	results := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "squall_key_events_total",
		Help: "Events handed to key actors, by result (applied, late, duplicate, shed, failed).",
	}, []string{"result"})
	m := &metrics{
		activations: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "squall_key_activations_total", Help: "Key actors activated.",
		}),
		passivations: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "squall_key_passivations_total", Help: "Key actors passivated after --idle-ttl without events.",
		}),
		outputs: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "squall_handler_outputs_total", Help: "Outputs emitted by key handlers.",
		}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "squall_apply_latency_seconds",
			Help:    "Time from submission to applied, per partition batch.",
			Buckets: prometheus.ExponentialBuckets(10e-6, 2.5, 14),
		}),
		inflight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "squall_queue_events", Help: "Events submitted to partition actors and not yet applied (queue depth).",
		}),
		owned: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "squall_partitions_owned", Help: "Key partitions this node serves.",
		}),
		handoffs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "squall_handoffs_total", Help: "Partition state handoffs, by direction (in, out) and result (ok, timeout).",
		}, []string{"direction", "result"}),
	}
	for r := range m.results {
		m.results[r] = results.WithLabelValues(Result(r).String())
	}
	if reg == nil {
		return m, nil
	}
	live := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "squall_key_actors_live", Help: "Live key actors on this node.",
	}, func() float64 { return float64(e.Live()) })
	for _, c := range []prometheus.Collector{results, m.activations, m.passivations, m.outputs, m.latency, m.inflight, m.owned, m.handoffs, live} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("actors: register metrics: %w", err)
		}
	}
	return m, nil
}
