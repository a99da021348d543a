// Package output delivers alert transitions to sinks (NATS, Kafka) through a
// bounded buffer, with retries.
//
// Key actors hand each alert transition, already encoded as JSON, to
// Outputs.Send. Outputs keeps one bounded FIFO shared by every sink and one
// delivery goroutine per sink, which publishes the sink's next batch (at
// most Config.Batch alerts, in Send order) and retries it with exponential
// backoff until the sink takes it.
//
// Guarantees:
//
//   - At-least-once per sink, in Send order: an alert leaves the buffer only
//     once every sink has published it (Sink.Publish returned nil). A failed
//     batch is published again, so a sink can see an alert twice; consumers
//     drop duplicates by Alert.ID. Alerts are lost only when Close's deadline
//     passes (they are then counted in squall_alerts_dropped_total and
//     logged) or the process dies; in both cases Hold kept the Kafka source
//     from committing past them, so replay emits them again.
//   - Back-pressure, not shedding: when the slowest sink has Config.Buffer
//     alerts outstanding, Send blocks until that sink delivers, the caller's
//     context ends, or Close. The caller is a partition actor, so a slow or
//     dead sink slows intake instead of dropping alerts or growing memory.
//   - Bounded memory: at most Config.Buffer alerts are held (one copy of the
//     Alert header for all sinks; the payload is never copied), and each
//     sink publishes a batch that is a window of that buffer.
//
// Hold is for the Kafka source: before committing a partition's offset it
// asks for the smallest record offset of the partition whose alerts some
// sink has not delivered yet, and commits no further than that, so that
// after a crash the replay re-emits every undelivered alert.
//
// Concurrency: every method of Outputs is safe for concurrent use. One
// mutex (Outputs.mu) guards the buffer, the per-sink cursors and the hold
// queues; it is never held while calling a Sink, a logger or a metric of
// another package, and no other lock is taken under it.
package output

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Errors returned by the package. Test with errors.Is.
var (
	// ErrClosed is returned by Send on Outputs that are closed or closing.
	ErrClosed = errors.New("output: closed")
	// ErrConfig means a Config is invalid; it is wrapped with the field.
	ErrConfig = errors.New("output: invalid config")
	// ErrNotConnected is returned by the NATS sink's Publish when the
	// connection is not connected, or reconnected during the publish (what
	// was written before may be lost): the batch is retried.
	ErrNotConnected = errors.New("output: sink not connected")
)

// Defaults of Config.
const (
	DefaultBuffer   = 10_000
	DefaultBatch    = 500
	DefaultRetryMin = 100 * time.Millisecond
	DefaultRetryMax = 5 * time.Second
)

// maxBuffer is the largest Config.Buffer: buffer slots are int32.
const maxBuffer = 1 << 30

// errorLogInterval is the least time between two logged publish errors of a
// sink (the first one is always logged).
const errorLogInterval = 10 * time.Second

// Alert is one alert transition to deliver.
type Alert struct {
	// Key is the event key. The NATS sink publishes to
	// "<prefix>." + SubjectToken(Key); the Kafka sink uses it as the record
	// key.
	Key string
	// ID is the alert's deterministic id, "<rule>/<key>/<at>/<state>":
	// consumers drop duplicates by it. It is logged and sent as the Kafka
	// header "squall-alert-id".
	ID string
	// Payload is the JSON alert document. Send takes ownership: the caller
	// must not modify it afterwards.
	Payload []byte
	// Partition is the key partition the alert came from.
	Partition int32
	// Offset is the Kafka record offset that produced the alert, or -1 when
	// the event did not come from Kafka (such alerts never hold a commit).
	Offset int64
}

// Sink delivers batches of alerts.
//
// Publish returns nil only once every alert of batch is durably handed over
// (NATS: published and a flush round trip to the server succeeded; Kafka:
// acknowledged by all in-sync replicas). On error the batch is published
// again later, from its first alert; duplicates are allowed. Publish must
// return soon after ctx is done (Close's deadline), and must neither modify
// batch nor keep it (or the payloads' backing arrays for writing) after it
// returns. Outputs calls Publish from one goroutine per sink.
type Sink interface {
	// Name names the sink in metrics (label "sink") and logs: "nats",
	// "kafka". Names must be unique within one Outputs.
	Name() string
	// Publish delivers batch; see the type's documentation.
	Publish(ctx context.Context, batch []Alert) error
}

// Config configures Outputs. The zero value of a field means its default
// (DefaultConfig).
type Config struct {
	// Buffer is the number of alerts a sink may have outstanding (queued or
	// being published) before Send blocks. All sinks share one buffer of
	// this size: it holds every alert that some sink has not delivered.
	// Default 10,000.
	Buffer int
	// Batch is the largest number of alerts passed to one Sink.Publish; it
	// is capped at Buffer. Default 500.
	Batch int
	// RetryMin and RetryMax bound the wait between failed Publish attempts
	// of a sink: RetryMin after the first failure, doubling up to RetryMax,
	// reset by a success. Defaults 100ms and 5s.
	RetryMin, RetryMax time.Duration
	// Logger receives publish errors (the first, then at most one per 10s
	// per sink), recoveries, and the alerts dropped by Close. Default
	// slog.Default().
	Logger *slog.Logger
	// Registerer is where the metrics are registered. Default nil: not
	// registered.
	Registerer prometheus.Registerer
}

// DefaultConfig returns a Config with every default filled in.
func DefaultConfig() Config {
	return Config{
		Buffer:   DefaultBuffer,
		Batch:    DefaultBatch,
		RetryMin: DefaultRetryMin,
		RetryMax: DefaultRetryMax,
	}
}

// withDefaults returns c with zero fields set to their defaults.
func (c Config) withDefaults() Config {
	d := DefaultConfig()
	if c.Buffer == 0 {
		c.Buffer = d.Buffer
	}
	if c.Batch == 0 {
		c.Batch = d.Batch
	}
	if c.RetryMin == 0 {
		c.RetryMin = d.RetryMin
	}
	if c.RetryMax == 0 {
		c.RetryMax = max(d.RetryMax, c.RetryMin)
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

// Validate reports the first invalid field of c (zero fields count as
// their defaults), wrapped in ErrConfig. It does not modify c.
func (c *Config) Validate() error {
	d := c.withDefaults()
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: "+format, append([]any{ErrConfig}, args...)...)
	}
	switch {
	case d.Buffer < 0 || d.Buffer > maxBuffer:
		return bad("Buffer %d is not in [1, %d]", d.Buffer, maxBuffer)
	case d.Batch < 0:
		return bad("Batch %d is negative", d.Batch)
	case d.RetryMin < 0:
		return bad("RetryMin %s is negative", d.RetryMin)
	case d.RetryMax < d.RetryMin:
		return bad("RetryMax %s is below RetryMin %s", d.RetryMax, d.RetryMin)
	}
	return nil
}

// Outputs delivers alerts to its sinks. Create it with New and stop it with
// Close. Its methods are safe for concurrent use.
type Outputs struct {
	log   *slog.Logger
	cfg   Config
	sinks []*sinkState
	m     *metrics
	epoch time.Time // lag is measured on its monotonic clock

	// ctx is passed to Publish; cancel aborts delivery (Close's deadline).
	ctx    context.Context
	cancel context.CancelFunc

	closing   chan struct{} // closed by the first Close
	exited    chan struct{} // closed when the last delivery goroutine returns
	running   atomic.Int32  // delivery goroutines not yet returned
	closeOnce sync.Once
	abortOnce sync.Once
	abortErr  error // why delivery was aborted; written in abortOnce
	endOnce   sync.Once
	closeErr  error // Close's result; written in endOnce

	mu sync.Mutex
	// The buffer: alert seq s (0, 1, ...) lives at ring[s%len(ring)] while
	// some sink has not delivered it, i.e. from done to tail-1.
	ring    []Alert
	at      []int64       // enqueue time of ring[i], nanoseconds since epoch
	tail    int64         // seq of the next alert sent
	done    int64         // every alert below done is delivered by every sink
	space   chan struct{} // closed when done advances; nil if nobody waits
	closed  bool
	ended   bool       // Close finished: buffer released
	holds   *holdIndex // Hold's answers, by buffer slot
	highest int64      // most alerts ever outstanding (never above Buffer), for tests
}

// sinkState is one sink's cursor and delivery state.
type sinkState struct {
	sink Sink
	name string
	wake chan struct{} // cap 1: Send signals new alerts

	head    int64 // guarded by Outputs.mu: alerts below head are delivered
	dropped int64 // guarded by Outputs.mu: alerts dropped at Close

	published, errs, droppedC prometheus.Counter

	// Owned by the sink's goroutine.
	failures int       // consecutive failed Publish calls
	lastLog  time.Time // last publish error logged
	logged   bool      // an error of the current failure streak was logged
}

// New returns Outputs delivering to sinks and starts one delivery goroutine
// per sink. With no sinks, Send counts alerts (squall_alerts_sent_total) and
// discards them. It returns an error for an invalid cfg, a nil sink,
// duplicate or empty sink names, or when the metrics cannot be registered.
func New(cfg Config, sinks ...Sink) (*Outputs, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	cfg.Batch = min(cfg.Batch, cfg.Buffer)
	names := make(map[string]bool, len(sinks))
	for i, s := range sinks {
		if s == nil {
			return nil, fmt.Errorf("%w: sink %d is nil", ErrConfig, i)
		}
		n := s.Name()
		if n == "" || names[n] {
			return nil, fmt.Errorf("%w: sink name %q empty or not unique", ErrConfig, n)
		}
		names[n] = true
	}
	ctx, cancel := context.WithCancel(context.Background())
	o := &Outputs{
		log:     cfg.Logger,
		cfg:     cfg,
		epoch:   time.Now(),
		ctx:     ctx,
		cancel:  cancel,
		closing: make(chan struct{}),
		exited:  make(chan struct{}),
	}
	if len(sinks) > 0 {
		o.ring = make([]Alert, cfg.Buffer)
		o.at = make([]int64, cfg.Buffer)
		o.holds = newHoldIndex(cfg.Buffer)
	}
	for _, s := range sinks {
		o.sinks = append(o.sinks, &sinkState{sink: s, name: s.Name(), wake: make(chan struct{}, 1)})
	}
	m, err := newMetrics(cfg.Registerer, o)
	if err != nil {
		cancel()
		return nil, err
	}
	o.m = m
	if len(o.sinks) == 0 {
		close(o.exited)
		return o, nil
	}
	o.running.Store(int32(len(o.sinks)))
	for _, s := range o.sinks {
		go o.deliver(s)
	}
	return o, nil
}

// Send queues a for every sink. It blocks while the slowest sink has Buffer
// alerts outstanding, until ctx is done (it returns ctx.Err(), and a is not
// queued) or Close (ErrClosed). ctx is consulted only when Send has to
// wait. It takes ownership of a.Payload. The alert's age (the lag gauge)
// counts from the call, waiting included. It allocates nothing unless it
// waits.
func (o *Outputs) Send(ctx context.Context, a Alert) error {
	if len(o.sinks) == 0 {
		select {
		case <-o.closing:
			return ErrClosed
		default:
		}
		o.m.sent.Inc()
		return nil
	}
	now := o.now()
	o.mu.Lock()
	for {
		if o.closed {
			o.mu.Unlock()
			return ErrClosed
		}
		if o.tail-o.done < int64(len(o.ring)) {
			break
		}
		if o.space == nil {
			o.space = make(chan struct{})
		}
		space := o.space
		o.mu.Unlock()
		select {
		case <-space:
		case <-ctx.Done():
			return ctx.Err()
		case <-o.closing:
			return ErrClosed
		}
		o.mu.Lock()
	}
	seq := o.tail
	i := seq % int64(len(o.ring))
	o.ring[i] = a
	o.at[i] = now
	o.tail++
	if a.Offset >= 0 {
		o.holds.push(int32(i), a.Partition, a.Offset)
	}
	o.highest = max(o.highest, o.tail-o.done)
	o.mu.Unlock()
	for _, s := range o.sinks {
		select {
		case s.wake <- struct{}{}:
		default:
		}
	}
	o.m.sent.Inc()
	return nil
}

// Hold returns the smallest Offset among the alerts of partition p that
// some sink has not delivered, and ok=false when there is none. Alerts with
// Offset -1 never hold. Alerts dropped by Close keep holding. It is cheap
// (a lock and a map lookup) and allocates nothing.
func (o *Outputs) Hold(p int32) (offset int64, ok bool) {
	if o.holds == nil {
		return 0, false
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.holds.min(p)
}

// Pending returns the number of alerts that some sink has not delivered,
// including those dropped by Close.
func (o *Outputs) Pending() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return int(o.tail - o.done)
}

// Close stops accepting alerts (Send returns ErrClosed, including Sends
// blocked waiting for room), lets the sinks deliver what is buffered until
// ctx is done, then cancels the publishes in flight and drops what is left.
// Dropped alerts are counted in squall_alerts_dropped_total{sink} and logged
// once with their count; Close then returns an error wrapping ctx's error
// (test with errors.Is(err, context.DeadlineExceeded)), and nil when
// nothing was dropped. It returns after the delivery goroutines have
// exited, and that may be later than ctx's deadline only if a Sink does
// not return promptly once its context is done. Close is idempotent: later
// calls wait likewise and return the same result.
func (o *Outputs) Close(ctx context.Context) error {
	o.closeOnce.Do(func() {
		o.mu.Lock()
		o.closed = true
		o.mu.Unlock()
		close(o.closing)
	})
	select {
	case <-o.exited:
	case <-ctx.Done():
		o.abortOnce.Do(func() {
			o.abortErr = ctx.Err()
			o.cancel()
		})
		<-o.exited
	}
	o.endOnce.Do(o.end)
	return o.closeErr
}

// end runs once, after the delivery goroutines have exited: it logs the
// dropped alerts and releases the buffer.
func (o *Outputs) end() {
	o.cancel()
	o.mu.Lock()
	undelivered := o.tail - o.done
	attrs := make([]any, 0, 2+2*len(o.sinks))
	attrs = append(attrs, "alerts", undelivered)
	for _, s := range o.sinks {
		if s.dropped > 0 {
			attrs = append(attrs, s.name, s.dropped)
		}
	}
	clear(o.ring)
	o.ended = true
	o.mu.Unlock()
	if undelivered == 0 {
		return
	}
	o.log.Warn("output: closed with undelivered alerts; dropped (the Kafka source has not committed past them)", attrs...)
	o.closeErr = fmt.Errorf("output: close: %d alerts dropped undelivered: %w", undelivered, o.abortErr)
}

// deliver is the delivery goroutine of sink s: it publishes s's next batch
// until Close, retrying failures with backoff.
func (o *Outputs) deliver(s *sinkState) {
	defer func() {
		if o.running.Add(-1) == 0 {
			close(o.exited)
		}
	}()
	var (
		delay time.Duration
		timer *time.Timer
	)
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	size := int64(len(o.ring))
	for {
		o.mu.Lock()
		n := o.tail - s.head
		if o.ctx.Err() != nil {
			s.dropped = n
			o.mu.Unlock()
			s.droppedC.Add(float64(n))
			return
		}
		if n == 0 {
			closed := o.closed
			o.mu.Unlock()
			if closed {
				return
			}
			select {
			case <-s.wake:
			case <-o.closing:
			}
			continue
		}
		i := s.head % size
		k := min(n, int64(o.cfg.Batch), size-i)
		batch := o.ring[i : i+k : i+k]
		o.mu.Unlock()

		err := s.sink.Publish(o.ctx, batch)
		if err != nil {
			if o.ctx.Err() != nil {
				continue // aborted by Close: the loop drops what is left
			}
			s.failed(o.log, err, k)
			if delay == 0 {
				delay = o.cfg.RetryMin
			} else {
				delay = min(2*delay, o.cfg.RetryMax)
			}
			if timer == nil {
				timer = time.NewTimer(delay)
			} else {
				timer.Reset(delay)
			}
			select {
			case <-timer.C:
			case <-o.ctx.Done():
			}
			continue
		}
		if s.logged {
			o.log.Info("output: sink recovered", "sink", s.name, "failed_attempts", s.failures)
		}
		s.failures, s.logged, delay = 0, false, 0
		o.delivered(s, k)
	}
}

// failed counts a failed Publish of k alerts and logs it, rate-limited.
func (s *sinkState) failed(log *slog.Logger, err error, k int64) {
	s.errs.Inc()
	s.failures++
	now := time.Now()
	if !s.lastLog.IsZero() && now.Sub(s.lastLog) < errorLogInterval {
		return
	}
	s.lastLog, s.logged = now, true
	log.Warn("output: publish failed; retrying", "sink", s.name, "alerts", k,
		"failed_attempts", s.failures, "err", err)
}

// delivered records that s delivered its next k alerts.
func (o *Outputs) delivered(s *sinkState, k int64) {
	o.mu.Lock()
	s.head += k
	done := s.head
	for _, t := range o.sinks {
		done = min(done, t.head)
	}
	if done > o.done {
		o.release(o.done, done)
		o.done = done
		if o.space != nil {
			close(o.space)
			o.space = nil
		}
	}
	o.mu.Unlock()
	s.published.Add(float64(k))
}

// release frees the buffer slots of alerts from..to-1, delivered by every
// sink: they stop holding, and their payloads can be collected. o.mu is
// held.
func (o *Outputs) release(from, to int64) {
	size := int64(len(o.ring))
	for seq := from; seq < to; seq++ {
		o.holds.delivered(int32(seq % size))
	}
	for from < to {
		i := from % size
		j := min(size, i+(to-from))
		clear(o.ring[i:j])
		from += j - i
	}
}

// now returns the monotonic time since o.epoch in nanoseconds.
func (o *Outputs) now() int64 { return int64(time.Since(o.epoch)) }

// highWater returns the most alerts ever outstanding at once (for tests:
// it must never exceed Buffer).
func (o *Outputs) highWater() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return int(o.highest)
}
