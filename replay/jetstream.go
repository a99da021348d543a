package replay

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/squallhq/squall/event"
	"github.com/squallhq/squall/jslog"
)

// JetStreamConfig says which messages of a node's JetStream log (package
// jslog) a JetStream source reads.
type JetStreamConfig struct {
	// Conn is a connection to the NATS server or cluster holding the log:
	// a durable standalone node's embedded server (its --nats-addr), or
	// the cluster's --nats-url. Required. The source does not close it.
	Conn *nats.Conn
	// Stream is the log's stream. Default jslog.DefaultStream
	// ("SQUALL_LOG").
	Stream string
	// Subject is the log's subject prefix: log partition p is
	// "<Subject>.<p>". Default jslog.DefaultSubject ("squall.log").
	Subject string
	// Partition is the log partition the key's events are in. A durable
	// standalone node's log has one partition, 0, for every key: the
	// default. A cluster's log (--jetstream-replicas) has one per key
	// partition: set it to KeyPartition(key, --partitions).
	Partition int32
	// From is the first stream sequence read. Default 0: the first.
	From uint64
	// To is one past the last stream sequence read. Default 0: the
	// partition's last message when the source starts.
	To uint64
	// FromTime and ToTime, when not zero, bound the messages read by the
	// time they were stored, instead of From and To.
	FromTime, ToTime time.Time
}

// jsSource reads one log partition's messages.
type jsSource struct {
	cons    jetstream.Consumer
	key     string
	last    uint64 // stream sequence of the last message to read
	toTime  time.Time
	dec     event.Decoder
	evs     []event.Event
	rej     []event.Rejection
	pending []Record
	done    bool
}

// NewJetStreamSource returns a Source of key's events in the messages of
// one partition of a node's JetStream log, decoded as the node's log
// source decodes them (protobuf EventBatch) and filtered to key. It reads
// with an ordered consumer: ephemeral, nothing acknowledged, no effect on
// the node's own consumers.
func NewJetStreamSource(ctx context.Context, cfg JetStreamConfig, key string) (Source, error) {
	if cfg.Conn == nil {
		return nil, fmt.Errorf("%w: a JetStream source needs a connection", ErrConfig)
	}
	if cfg.Stream == "" {
		cfg.Stream = jslog.DefaultStream
	}
	if cfg.Subject == "" {
		cfg.Subject = jslog.DefaultSubject
	}
	js, err := jetstream.New(cfg.Conn)
	if err != nil {
		return nil, fmt.Errorf("replay: jetstream: %w", err)
	}
	stream, err := js.Stream(ctx, cfg.Stream)
	if err != nil {
		return nil, fmt.Errorf("replay: jetstream: stream %s: %w", cfg.Stream, err)
	}
	subject := cfg.Subject + "." + strconv.Itoa(int(cfg.Partition))
	s := &jsSource{key: key, toTime: cfg.ToTime}
	lastMsg, err := stream.GetLastMsgForSubject(ctx, subject)
	switch {
	case errors.Is(err, jetstream.ErrMsgNotFound):
		s.done = true
		return s, nil
	case err != nil:
		return nil, fmt.Errorf("replay: jetstream: last message of %s: %w", subject, err)
	}
	s.last = lastMsg.Sequence
	if cfg.To > 0 {
		s.last = min(s.last, cfg.To-1)
	}
	oc := jetstream.OrderedConsumerConfig{FilterSubjects: []string{subject}}
	switch {
	case !cfg.FromTime.IsZero():
		t := cfg.FromTime
		oc.DeliverPolicy, oc.OptStartTime = jetstream.DeliverByStartTimePolicy, &t
	case cfg.From > 0:
		oc.DeliverPolicy, oc.OptStartSeq = jetstream.DeliverByStartSequencePolicy, cfg.From
	}
	if cfg.From > s.last {
		s.done = true
		return s, nil
	}
	if s.cons, err = stream.OrderedConsumer(ctx, oc); err != nil {
		return nil, fmt.Errorf("replay: jetstream: consumer on %s: %w", subject, err)
	}
	return s, nil
}

func (s *jsSource) Next(ctx context.Context) (Record, error) {
	for len(s.pending) == 0 {
		if s.done {
			return Record{}, io.EOF
		}
		msg, err := s.cons.Next(jetstream.FetchContext(ctx))
		if err != nil {
			return Record{}, fmt.Errorf("replay: jetstream: %w", err)
		}
		md, err := msg.Metadata()
		if err != nil {
			return Record{}, fmt.Errorf("replay: jetstream: %w", err)
		}
		seq := md.Sequence.Stream
		if seq > s.last || (!s.toTime.IsZero() && !md.Timestamp.Before(s.toTime)) {
			s.done = true
			break
		}
		if seq == s.last {
			s.done = true
		}
		if f := msg.Headers().Get(jslog.FormatHeader); f != jslog.FormatProto {
			continue // the node's source skips it too
		}
		s.evs, s.rej, err = s.dec.Decode(msg.Data(), event.FormatProto, event.Options{}, s.evs[:0], s.rej[:0])
		if err != nil {
			continue // the node's source skips it too
		}
		for _, ev := range s.evs {
			if ev.Key == s.key {
				s.pending = append(s.pending, Record{Event: cloneEvent(ev), Offset: int64(seq)})
			}
		}
	}
	if len(s.pending) == 0 {
		return Record{}, io.EOF
	}
	r := s.pending[0]
	s.pending = s.pending[1:]
	return r, nil
}

// Close ends the source; the ordered consumer is ephemeral and goes away
// with it. It is safe to call twice.
func (s *jsSource) Close() error { return nil }
