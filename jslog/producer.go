package jslog

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/squallhq/squall/actors"
	"github.com/squallhq/squall/cluster"
	"github.com/squallhq/squall/event"
	"github.com/squallhq/squall/source"
)

const (
	// maxMessageBytes caps a message's body; a partition's events over it
	// are split into several messages. The server's max payload caps it
	// too (less headerRoom).
	maxMessageBytes = 256 << 10
	headerRoom      = 1 << 10
	// publishTimeout bounds the wait for a message's acknowledgement.
	publishTimeout = 10 * time.Second
	// maxPendingPublishes bounds the messages published and not yet
	// acknowledged; a publish past it waits a moment, then fails.
	maxPendingPublishes = 4096
)

// Producer appends events to the log and returns once JetStream has stored
// them: a batch's events are grouped by key partition (cluster.Partition,
// the function the node routes by), each partition's events encoded as one
// message (several when over 256 KiB or the server's max payload) on the
// partition's subject, published asynchronously, and every
// acknowledgement waited for. It implements ingest.Submitter and
// ingest.AppliesLater, for log-first ingest. It is safe for concurrent
// use.
type Producer struct {
	cfg    Config
	js     jetstream.JetStream
	log    *slog.Logger
	maxMsg int
	warned limiter
	calls  sync.Pool // *call

	mu        sync.RWMutex // guards closed against publishing
	closed    bool
	wg        sync.WaitGroup // SubmitAsync waiters
	closeOnce sync.Once
}

// NewProducer returns a Producer for cfg.Stream, creating the stream, or
// updating its configuration, as New does.
func NewProducer(cfg Config) (*Producer, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	js, err := jetstream.New(cfg.Conn,
		jetstream.WithPublishAsyncMaxPending(maxPendingPublishes),
		jetstream.WithPublishAsyncTimeout(publishTimeout))
	if err != nil {
		return nil, fmt.Errorf("jslog: %w", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), apiTimeout)
	defer cancel()
	if err := ensureStream(ctx, js, &cfg); err != nil {
		return nil, err
	}
	maxMsg := maxMessageBytes
	if mp := int(cfg.Conn.MaxPayload()); mp > 0 {
		maxMsg = min(maxMsg, mp-headerRoom)
	}
	return &Producer{cfg: cfg, js: js, log: cfg.Logger, maxMsg: maxMsg}, nil
}

// Submit appends evs to the log and returns once every message is
// acknowledged or failed: out[i] (len(out) must be len(evs)) is
// actors.ResultApplied once evs[i]'s message is stored, actors.ResultFailed
// if it is not (a full store, JetStream unavailable: logged, at most once
// every 10s). It returns an error, with every out[i] failed, when none
// could be stored, when ctx ended before any was, or when the Producer is
// closed (source.ErrClosed).
func (p *Producer) Submit(ctx context.Context, evs []event.Event, out []actors.Result) error {
	if len(out) != len(evs) {
		return fmt.Errorf("jslog: %d results for %d events", len(out), len(evs))
	}
	if len(evs) == 0 {
		return nil
	}
	c := p.getCall()
	c.out = out
	if err := p.publish(c, evs); err != nil {
		p.putCall(c)
		for i := range out {
			out[i] = actors.ResultFailed
		}
		return err
	}
	err := c.wait(ctx, p)
	p.putCall(c)
	return err
}

// SubmitAsync is Submit without the wait: done, when not nil, is called
// with the results once every message is acknowledged or failed (on a
// goroutine of the Producer; it must not block). evs may be reused as soon
// as SubmitAsync returns. An error is returned, and done not called, only
// when the Producer is closed.
func (p *Producer) SubmitAsync(ctx context.Context, evs []event.Event, done func([]actors.Result)) error {
	if len(evs) == 0 {
		if done != nil {
			done(nil)
		}
		return nil
	}
	c := p.getCall()
	c.out = make([]actors.Result, len(evs))
	p.mu.RLock()
	if p.closed {
		p.mu.RUnlock()
		p.putCall(c)
		return source.ErrClosed
	}
	p.wg.Add(1) // under mu: Close waits for it
	p.mu.RUnlock()
	if err := p.publish(c, evs); err != nil {
		p.putCall(c)
		p.wg.Done()
		return err
	}
	go func() {
		defer p.wg.Done()
		_ = c.wait(ctx, p)
		out := c.out
		p.putCall(c)
		if done != nil {
			done(out)
		}
	}()
	return nil
}

// AppliesLater reports true: an event Submit reports actors.ResultApplied
// is stored in the log, and the key actors apply it later. It implements
// ingest.AppliesLater.
func (p *Producer) AppliesLater() bool { return true }

// Close waits for the SubmitAsync calls in flight (each bounded by the
// acknowledgement timeout, 10s); Submits after Close return
// source.ErrClosed. It does not close the connection. It is idempotent.
func (p *Producer) Close() error {
	p.closeOnce.Do(func() {
		p.mu.Lock()
		p.closed = true
		p.mu.Unlock()
		p.wg.Wait()
	})
	return nil
}

// call is one Submit's messages and results.
type call struct {
	out   []actors.Result
	parts map[int32][]int // event indexes by partition
	order []int32         // partitions in order of first event
	msgs  []pending
}

// pending is one published message and the events it holds.
type pending struct {
	fut jetstream.PubAckFuture
	err error // the publish itself failed
	evs []int
	buf []byte // the message's data
	// acked: the message is stored, and the library will not publish buf
	// again (it may, for a retry, until the future has completed; a
	// message that failed or was given up on keeps its buffer).
	acked bool
}

func (p *Producer) getCall() *call {
	c, _ := p.calls.Get().(*call)
	if c == nil {
		c = &call{parts: make(map[int32][]int)}
	}
	return c
}

func (p *Producer) putCall(c *call) {
	for k, v := range c.parts {
		c.parts[k] = v[:0]
	}
	if len(c.parts) > 4*p.cfg.Partitions {
		clear(c.parts)
	}
	for i := range c.msgs {
		if m := &c.msgs[i]; m.acked && cap(m.buf) <= maxMessageBytes {
			b := m.buf
			bufs.Put(&b)
		}
	}
	clear(c.msgs)
	c.out, c.order, c.msgs = nil, c.order[:0], c.msgs[:0]
	p.calls.Put(c)
}

// publish encodes evs into messages and publishes them asynchronously.
func (p *Producer) publish(c *call, evs []event.Event) error {
	for i := range evs {
		pt := cluster.Partition(evs[i].Key, p.cfg.Partitions)
		idx := c.parts[pt]
		if len(idx) == 0 {
			c.order = append(c.order, pt)
		}
		c.parts[pt] = append(idx, i)
	}
	for i := range c.out {
		c.out[i] = actors.ResultApplied // until its message says otherwise
	}
	p.mu.RLock()
	defer p.mu.RUnlock()
	if p.closed {
		return source.ErrClosed
	}
	for _, pt := range c.order {
		idx := c.parts[pt]
		subj := p.cfg.subject(pt)
		// Messages of at most maxMsg bytes (one event more when a single
		// event is larger), each encoded into a buffer of its exact size.
		start, size := 0, 0
		for j, i := range idx {
			n := event.ProtoSize(&evs[i])
			if size+n > p.maxMsg && j > start {
				p.send(c, subj, evs, idx[start:j], size)
				start, size = j, 0
			}
			size += n
		}
		p.send(c, subj, evs, idx[start:], size)
	}
	return nil
}

// send publishes one message of the events at indexes idx, size bytes
// encoded.
func (p *Producer) send(c *call, subj string, evs []event.Event, idx []int, size int) {
	buf := getBuf(size)
	for _, i := range idx {
		buf = event.AppendProto(buf, evs[i:i+1])
	}
	msg := &nats.Msg{Subject: subj, Data: buf, Header: nats.Header{FormatHeader: []string{FormatProto}}}
	fut, err := p.js.PublishMsgAsync(msg)
	c.msgs = append(c.msgs, pending{fut: fut, err: err, evs: idx, buf: buf})
}

// bufs holds message buffers whose message was acknowledged.
var bufs sync.Pool // *[]byte

// getBuf returns an empty buffer of capacity at least n.
func getBuf(n int) []byte {
	if b, _ := bufs.Get().(*[]byte); b != nil && cap(*b) >= n {
		return (*b)[:0]
	}
	return make([]byte, 0, n)
}

// wait waits for every message's acknowledgement (or ctx), marks the
// events of failed ones, and returns an error when every event failed.
func (c *call) wait(ctx context.Context, p *Producer) error {
	var first error
	failed := 0
	for i := range c.msgs {
		m := &c.msgs[i]
		err := m.err
		if err == nil {
			select {
			case <-m.fut.Ok():
				m.acked = true
			case err = <-m.fut.Err():
			case <-ctx.Done():
				err = ctx.Err()
			}
		}
		if err == nil {
			continue
		}
		if first == nil {
			first = err
		}
		for _, e := range m.evs {
			c.out[e] = actors.ResultFailed
		}
		failed += len(m.evs)
	}
	if first == nil {
		return nil
	}
	if p.warned.allow() {
		p.log.Warn("jetstream log: events not stored", "events", failed, "of", len(c.out), "err", first)
	}
	if failed == len(c.out) {
		if errors.Is(first, nats.ErrConnectionClosed) {
			return fmt.Errorf("%w: %w", source.ErrClosed, first)
		}
		return fmt.Errorf("jslog: publish to %q: %w", p.cfg.Stream, first)
	}
	return nil
}
