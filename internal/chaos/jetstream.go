package chaos

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/squallhq/squall/event"
	"github.com/squallhq/squall/jslog"
)

// The JetStream mode's log, as the nodes keep it (package jslog's
// defaults): partition p's messages go to "squall.log.<p>", one stream
// holds them all, with jsReplicas replicas.
const (
	jsSubject  = jslog.DefaultSubject
	jsReplicas = 3
	// jsFetchWait bounds one fetch of the log audit.
	jsFetchWait = 2 * time.Second
)

// jsSubjectOf returns partition p's subject.
func jsSubjectOf(p int32) string { return jsSubject + "." + strconv.Itoa(int(p)) }

// jsPartitionOf returns the partition of a log subject, or false.
func jsPartitionOf(subject string) (int32, bool) {
	s, ok := strings.CutPrefix(subject, jsSubject+".")
	if !ok {
		return 0, false
	}
	p, err := strconv.ParseInt(s, 10, 32)
	return int32(p), err == nil
}

// jsConnect connects to the NATS cluster and finds the stream that holds
// the log (by its subjects, so that whatever name the nodes give it).
// Close the connection.
func (c *Cluster) jsConnect(ctx context.Context) (*nats.Conn, jetstream.Stream, error) {
	nc, err := nats.Connect(c.NATS.ClientURLs(), nats.Name("chaos-checker"), nats.Timeout(2*time.Second),
		nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond))
	if err != nil {
		return nil, nil, fmt.Errorf("chaos: connecting to NATS: %w", err)
	}
	js, err := jetstream.New(nc)
	var st jetstream.Stream
	if err == nil {
		err = jsRetry(ctx, func(ctx context.Context) error {
			name, err := js.StreamNameBySubject(ctx, jsSubjectOf(0))
			if err == nil {
				st, err = js.Stream(ctx, name)
			}
			return err
		})
	}
	if err == nil {
		return nc, st, nil
	}
	nc.Close()
	return nil, nil, fmt.Errorf("chaos: the stream of %s.*: %w", jsSubject, err)
}

// jsAttempt bounds one JetStream request of the checker: a request sent
// to a server that is being killed, or while the cluster elects a leader,
// is never answered, and must not take the whole deadline.
const jsAttempt = 2 * time.Second

// backoffStop ends jsRetry with its error: an answer, not a failure.
type backoffStop struct{ err error }

func (b backoffStop) Error() string { return b.err.Error() }

// jsRetry runs f, each attempt with its own jsAttempt deadline, until it
// succeeds, returns a backoffStop, or ctx is done.
func jsRetry(ctx context.Context, f func(ctx context.Context) error) error {
	for {
		actx, cancel := context.WithTimeout(ctx, jsAttempt)
		err := f(actx)
		cancel()
		var stop backoffStop
		if err == nil || errors.As(err, &stop) || ctx.Err() != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// jsEndOffsets returns, per partition, one past the stream sequence of its
// subject's last message (0: none): the high watermark the nodes' sources
// report, and what their applied offset reaches once they have consumed
// the partition to its end.
func (c *Cluster) jsEndOffsets(ctx context.Context) (map[int32]int64, error) {
	nc, st, err := c.jsConnect(ctx)
	if err != nil {
		return nil, err
	}
	defer nc.Close()
	out := make(map[int32]int64, c.partitions)
	for p := range c.partitions {
		var msg *jetstream.RawStreamMsg
		err := jsRetry(ctx, func(ctx context.Context) error {
			var err error
			msg, err = st.GetLastMsgForSubject(ctx, jsSubjectOf(p))
			if errors.Is(err, jetstream.ErrMsgNotFound) {
				return backoffStop{err}
			}
			return err
		})
		var stop backoffStop
		if errors.As(err, &stop) {
			err = stop.err
		}
		switch {
		case errors.Is(err, jetstream.ErrMsgNotFound):
			out[p] = 0
		case err != nil:
			return nil, fmt.Errorf("chaos: last message of partition %d: %w", p, err)
		default:
			out[p] = int64(msg.Sequence) + 1
		}
	}
	return out, nil
}

// jsAuditLog is AuditLog for the JetStream log: an ordered consumer reads
// the stream from its start up to the end offsets of the moment, and every
// message is decoded as the nodes decode it.
func (c *Cluster) jsAuditLog(ctx context.Context, acc *logCounter) error {
	ends, err := c.jsEndOffsets(ctx)
	if err != nil {
		return err
	}
	var last int64 // one past the last sequence to read
	for _, end := range ends {
		last = max(last, end)
	}
	if last == 0 {
		return nil
	}
	nc, st, err := c.jsConnect(ctx)
	if err != nil {
		return err
	}
	defer nc.Close()
	var cons jetstream.Consumer
	err = jsRetry(ctx, func(ctx context.Context) error {
		var err error
		cons, err = st.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{
			FilterSubjects: []string{jsSubject + ".*"}, DeliverPolicy: jetstream.DeliverAllPolicy})
		return err
	})
	if err != nil {
		return fmt.Errorf("chaos: reading the stream: %w", err)
	}
	var dec event.Decoder
	var evs []event.Event
	var rej []event.Rejection
	var lastErr error
	for seq := int64(0); seq+1 < last; {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("chaos: reading the stream: %w (at sequence %d of %d; last error %v)", err, seq, last-1, lastErr)
		}
		batch, err := cons.Fetch(256, jetstream.FetchMaxWait(jsFetchWait))
		if err != nil {
			// A server killed, a leader being elected: the ordered
			// consumer resumes after the last message it delivered.
			lastErr = err
			time.Sleep(100 * time.Millisecond) // polling the stream again
			continue
		}
		for msg := range batch.Messages() {
			md, err := msg.Metadata()
			if err != nil {
				return fmt.Errorf("chaos: reading the stream: %w", err)
			}
			seq = int64(md.Sequence.Stream)
			p, ok := jsPartitionOf(msg.Subject())
			if !ok || seq >= ends[p] || msg.Headers().Get(jslog.FormatHeader) != jslog.FormatProto {
				continue
			}
			dec.Ensure(len(msg.Data()))
			evs, rej, err = dec.Decode(msg.Data(), event.FormatProto, event.Options{}, evs[:0], rej[:0])
			if err != nil {
				continue // the nodes skip it too
			}
			for _, ev := range evs {
				acc.add(ev.Key, ev.ID, ev.Value)
			}
		}
		if err := batch.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) {
			lastErr = err // as above: fetched again from where it stopped
		}
	}
	return nil
}
