package source

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/squallhq/squall/actors"
	"github.com/squallhq/squall/cluster"
	"github.com/squallhq/squall/event"
)

// producerCloseTimeout bounds how long Close waits for records in flight.
const producerCloseTimeout = 10 * time.Second

// Producer writes events to the topic and returns once the brokers have
// acknowledged them: an idempotent producer with acks from all in-sync
// replicas. Each record is one event as JSON (event.AppendJSON) with the
// event's key as record key, on the partition Kafka's default partitioner
// picks (murmur2, which cluster.Partition computes: the producer calls it).
// It implements ingest.Submitter, for Kafka-first ingest. It is safe for
// concurrent use.
type Producer struct {
	cl    *kgo.Client
	topic string
	calls sync.Pool // *produceCall

	mu        sync.RWMutex // guards closed against Produce
	closed    bool
	closeOnce sync.Once
}

// NewProducer returns a Producer for cfg.Topic. It does not contact the
// brokers until the first Submit.
func NewProducer(cfg Config) (*Producer, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	opts := append(cfg.clientOpts(),
		kgo.DefaultProduceTopic(cfg.Topic),
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.RecordPartitioner(kgo.StickyKeyPartitioner(partitionHasher)),
		kgo.ProducerLinger(cfg.ProduceLinger),
	)
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return nil, fmt.Errorf("source: kafka producer: %w", err)
	}
	return &Producer{cl: cl, topic: cfg.Topic}, nil
}

// partitionHasher is Kafka's default partitioner for keyed records, by way
// of cluster.Partition, so the producer and the cluster agree by
// construction.
func partitionHasher(key []byte, n int) int {
	return int(cluster.Partition(unsafe.String(unsafe.SliceData(key), len(key)), n))
}

// Submit writes evs to the topic and returns once every record is
// acknowledged or failed: out[i] (len(out) must be len(evs)) is
// actors.ResultApplied once evs[i] is acknowledged, actors.ResultFailed
// if it could not be written. It returns an error, with every out[i]
// failed, when none could be written, when ctx ended before any was, or
// when the Producer is closed.
func (p *Producer) Submit(ctx context.Context, evs []event.Event, out []actors.Result) error {
	if len(out) != len(evs) {
		return fmt.Errorf("source: %d results for %d events", len(out), len(evs))
	}
	if len(evs) == 0 {
		return nil
	}
	c := p.getCall(len(evs))
	c.out = out
	c.wait = make(chan struct{})
	if err := p.produce(ctx, c, evs); err != nil {
		p.putCall(c)
		for i := range out {
			out[i] = actors.ResultFailed
		}
		return err
	}
	<-c.wait
	err := c.allFailed()
	p.putCall(c)
	return err
}

// AppliesLater reports true: an event Submit reports actors.ResultApplied
// is stored in the topic, and the key actors apply it later, so whether it
// is late or a duplicate is not known when Submit returns. It implements
// ingest.AppliesLater.
func (p *Producer) AppliesLater() bool { return true }

// SubmitAsync is Submit without the wait: done, when not nil, is called
// with the results once every record is acknowledged or failed (on a
// franz-go goroutine: it must not block). evs may be reused as soon as
// SubmitAsync returns. An error is returned, and done not called, only
// when the Producer is closed.
func (p *Producer) SubmitAsync(ctx context.Context, evs []event.Event, done func([]actors.Result)) error {
	if len(evs) == 0 {
		if done != nil {
			done(nil)
		}
		return nil
	}
	c := p.getCall(len(evs))
	c.out = make([]actors.Result, len(evs))
	c.done = done
	if err := p.produce(ctx, c, evs); err != nil {
		p.putCall(c)
		return err
	}
	return nil
}

// Close waits (at most 10s) for the records in flight, then closes the
// client. Submits after Close return ErrClosed. It is idempotent.
func (p *Producer) Close() error {
	var err error
	p.closeOnce.Do(func() {
		p.mu.Lock()
		p.closed = true
		p.mu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), producerCloseTimeout)
		err = p.cl.Flush(ctx)
		cancel()
		p.cl.Close()
	})
	return err
}

// produce encodes evs into c and produces them.
func (p *Producer) produce(ctx context.Context, c *produceCall, evs []event.Event) error {
	buf := c.buf[:0]
	ends := c.ends[:0]
	for i := range evs {
		buf = event.AppendJSON(buf, &evs[i])
		ends = append(ends, len(buf))
	}
	c.buf, c.ends = buf, ends
	recs := c.recs[:len(evs)]
	start := 0
	for i := range evs {
		k := evs[i].Key
		recs[i] = kgo.Record{
			Topic: p.topic,
			// Read only: franz-go never writes to a record's key.
			Key:   unsafe.Slice(unsafe.StringData(k), len(k)),
			Value: buf[start:ends[i]:ends[i]],
		}
		start = ends[i]
	}
	c.recs = recs
	for i := range c.out {
		c.out[i] = actors.ResultApplied // until its promise says otherwise
	}
	c.pending.Store(int64(len(evs)))
	p.mu.RLock()
	defer p.mu.RUnlock()
	if p.closed {
		return ErrClosed
	}
	for i := range recs {
		p.cl.Produce(ctx, &recs[i], c.promise)
	}
	return nil
}

// produceCall is one Submit's records and results.
type produceCall struct {
	p       *Producer
	buf     []byte
	ends    []int
	recs    []kgo.Record
	out     []actors.Result
	pending atomic.Int64
	wait    chan struct{}            // Submit: closed when all are done
	done    func([]actors.Result)    // SubmitAsync
	mu      sync.Mutex               // guards err, failed
	err     error                    // first failure
	failed  int                      // records failed
	promise func(*kgo.Record, error) // c.finish, bound once
}

func (p *Producer) getCall(n int) *produceCall {
	c, _ := p.calls.Get().(*produceCall)
	if c == nil {
		c = &produceCall{p: p}
		c.promise = c.finish
	}
	if cap(c.recs) < n {
		c.recs = make([]kgo.Record, n)
	}
	return c
}

func (p *Producer) putCall(c *produceCall) {
	clear(c.recs[:cap(c.recs)])
	c.out, c.wait, c.done, c.err, c.failed = nil, nil, nil, nil, 0
	if cap(c.buf) > 1<<20 {
		c.buf, c.ends, c.recs = nil, nil, nil
	}
	p.calls.Put(c)
}

// finish is the promise of every record of the call.
func (c *produceCall) finish(r *kgo.Record, err error) {
	if err != nil {
		c.mu.Lock()
		if c.err == nil {
			c.err = err
		}
		c.failed++
		c.mu.Unlock()
		// r is &c.recs[i].
		i := (uintptr(unsafe.Pointer(r)) - uintptr(unsafe.Pointer(unsafe.SliceData(c.recs)))) / unsafe.Sizeof(kgo.Record{})
		c.out[i] = actors.ResultFailed
	}
	if c.pending.Add(-1) != 0 {
		return
	}
	if c.wait != nil {
		close(c.wait)
		return
	}
	if c.done != nil {
		c.done(c.out)
	}
	c.p.putCall(c)
}

// allFailed returns an error when every record of the call failed.
func (c *produceCall) allFailed() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.failed == len(c.out) && c.err != nil {
		if errors.Is(c.err, kgo.ErrClientClosed) {
			return fmt.Errorf("%w: %w", ErrClosed, c.err)
		}
		return fmt.Errorf("source: produce to %q: %w", c.p.topic, c.err)
	}
	return nil
}
