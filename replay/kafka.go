package replay

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/squallhq/squall/event"
	"github.com/squallhq/squall/source"
)

// KafkaConfig says which Kafka records a Kafka source reads.
type KafkaConfig struct {
	// Opts reach the brokers: kgo.SeedBrokers and, as the node's
	// --kafka-tls and --kafka-sasl-* do, TLS and SASL. Required. The
	// source adds its own consuming options: no group, nothing committed.
	Opts []kgo.Opt
	// Topic is the node's --kafka-topic. Required.
	Topic string
	// Partition is the Kafka partition to read: the one the key's records
	// are in. Default −1: KeyPartition(key, the topic's partition count),
	// where the node's own producer and every producer with Kafka's default
	// partitioner (murmur2 of the record key, the event key) put them.
	//
	// A producer with another partitioner (Sarama's FNV-1a hash,
	// librdkafka's CRC32 "consistent_random") puts a key's records in
	// another partition. The node's source of that partition then applies
	// them at the owner of the key's partition as they arrive (counted by
	// squall_kafka_misrouted_events_total), in the order of the partition
	// they are in: set Partition to it (the producer's partitioner says
	// which) and the replay reads them in that order.
	Partition int32
	// From is the first offset read. Default 0 (the start, or the log
	// start offset when older records were deleted).
	From int64
	// To is one past the last offset read. Default −1: the partition's end
	// (high watermark) when the source starts.
	To int64
	// FromTime and ToTime, when not zero, set From and To to the first
	// offset of a record stamped at or after them (the end when none is).
	FromTime, ToTime time.Time
	// MaxFuture is the node's --max-future: events stamped more than this
	// after their record are rejected, as the node rejects them. Default
	// 0: 5m; negative: no limit.
	MaxFuture time.Duration
	// MaxRecordBytes is the node's --kafka-max-record-bytes: larger records
	// are skipped, as the node dead-letters them. Default 1 MiB.
	MaxRecordBytes int
}

// DefaultKafkaConfig returns the defaults documented on KafkaConfig.
func DefaultKafkaConfig() KafkaConfig {
	return KafkaConfig{Partition: -1, To: -1, MaxRecordBytes: source.DefaultMaxRecordBytes}
}

// kafkaSource reads one partition's records from From to To.
type kafkaSource struct {
	cl        *kgo.Client
	key       string
	from, to  int64
	maxFuture time.Duration
	maxBytes  int
	dec       event.Decoder
	evs       []event.Event
	rej       []event.Rejection
	pending   []Record
	done      bool
}

// NewKafkaSource returns a Source of key's events in records [From, To) of
// one partition of cfg.Topic, decoded as the node's Kafka source decodes
// them (source.RecordOptions: the record key as the default key, the same
// ts checks) and filtered to key. Its consumer has no group and commits
// nothing. The source owns a Kafka client until Close.
func NewKafkaSource(ctx context.Context, cfg KafkaConfig, key string) (Source, error) {
	if cfg.Topic == "" || len(cfg.Opts) == 0 {
		return nil, fmt.Errorf("%w: a Kafka source needs a topic and brokers", ErrConfig)
	}
	if cfg.MaxRecordBytes <= 0 {
		cfg.MaxRecordBytes = source.DefaultMaxRecordBytes
	}
	if cfg.MaxFuture == 0 {
		cfg.MaxFuture = event.DefaultMaxFuture
	}
	meta, err := kgo.NewClient(cfg.Opts...)
	if err != nil {
		return nil, fmt.Errorf("replay: kafka: %w", err)
	}
	defer meta.Close()
	adm := kadm.NewClient(meta)
	p, from, to, err := kafkaRange(ctx, adm, &cfg, key)
	if err != nil {
		return nil, err
	}
	s := &kafkaSource{key: key, from: from, to: to, maxFuture: max(cfg.MaxFuture, 0), maxBytes: cfg.MaxRecordBytes}
	if from >= to {
		s.done = true
		return s, nil
	}
	// Control records (transaction markers) are delivered too, so that a
	// range ending in one ends when it is read.
	opts := append(append([]kgo.Opt(nil), cfg.Opts...), kgo.KeepControlRecords(),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{cfg.Topic: {p: kgo.NewOffset().At(from)}}))
	if s.cl, err = kgo.NewClient(opts...); err != nil {
		return nil, fmt.Errorf("replay: kafka: %w", err)
	}
	return s, nil
}

// kafkaRange resolves the partition and the offsets [from, to) to read.
func kafkaRange(ctx context.Context, adm *kadm.Client, cfg *KafkaConfig, key string) (p int32, from, to int64, err error) {
	topics, err := adm.ListTopics(ctx, cfg.Topic)
	if err != nil {
		return 0, 0, 0, fmt.Errorf("replay: kafka: topic %s: %w", cfg.Topic, err)
	}
	td, ok := topics[cfg.Topic]
	if !ok || td.Err != nil || len(td.Partitions) == 0 {
		return 0, 0, 0, fmt.Errorf("replay: kafka: topic %s: not found (%v)", cfg.Topic, td.Err)
	}
	p = cfg.Partition
	if p < 0 {
		p = KeyPartition(key, len(td.Partitions))
	}
	if int(p) >= len(td.Partitions) {
		return 0, 0, 0, fmt.Errorf("%w: partition %d: topic %s has %d", ErrConfig, p, cfg.Topic, len(td.Partitions))
	}
	lookup := func(l kadm.ListedOffsets, err error) (int64, error) {
		if err != nil {
			return 0, fmt.Errorf("replay: kafka: offsets of %s/%d: %w", cfg.Topic, p, err)
		}
		o, ok := l.Lookup(cfg.Topic, p)
		if !ok || o.Err != nil {
			return 0, fmt.Errorf("replay: kafka: offsets of %s/%d: %v", cfg.Topic, p, o.Err)
		}
		return o.Offset, nil
	}
	end, err := lookup(adm.ListEndOffsets(ctx, cfg.Topic))
	if err != nil {
		return 0, 0, 0, err
	}
	at := func(t time.Time) (int64, error) {
		o, err := lookup(adm.ListOffsetsAfterMilli(ctx, t.UnixMilli(), cfg.Topic))
		if o < 0 {
			o = end
		}
		return o, err
	}
	from, to = max(cfg.From, 0), cfg.To
	if !cfg.FromTime.IsZero() {
		if from, err = at(cfg.FromTime); err != nil {
			return 0, 0, 0, err
		}
	}
	if !cfg.ToTime.IsZero() {
		if to, err = at(cfg.ToTime); err != nil {
			return 0, 0, 0, err
		}
	}
	if to < 0 || to > end {
		to = end
	}
	return p, from, to, nil
}

func (s *kafkaSource) Next(ctx context.Context) (Record, error) {
	for len(s.pending) == 0 {
		if s.done {
			return Record{}, io.EOF
		}
		fs := s.cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return Record{}, err
		}
		var ferr error
		fs.EachError(func(t string, p int32, err error) {
			if !errors.Is(err, context.Canceled) {
				ferr = fmt.Errorf("replay: kafka: fetch %s/%d: %w", t, p, err)
			}
		})
		if ferr != nil {
			return Record{}, ferr
		}
		fs.EachRecord(s.record)
	}
	r := s.pending[0]
	s.pending = s.pending[1:]
	return r, nil
}

// record decodes r and keeps key's events, as the node's source would take
// them; records past To end the source.
func (s *kafkaSource) record(r *kgo.Record) {
	if s.done || r.Offset >= s.to {
		s.done = true
		return
	}
	if r.Offset == s.to-1 {
		s.done = true
	}
	if r.Attrs.IsControl() || len(r.Value) > s.maxBytes {
		return // not data, or dead-lettered by the node
	}
	var err error
	s.evs, s.rej, err = s.dec.Decode(r.Value, event.FormatAuto, source.RecordOptions(r, s.maxFuture), s.evs[:0], s.rej[:0])
	if err != nil {
		return // malformed: dead-lettered by the node
	}
	for _, ev := range s.evs {
		if ev.Key == s.key {
			s.pending = append(s.pending, Record{Event: cloneEvent(ev), Offset: r.Offset})
		}
	}
}

// Close closes the source's Kafka client; it is safe to call twice.
func (s *kafkaSource) Close() error {
	if s.cl != nil {
		s.cl.Close()
		s.cl = nil
	}
	return nil
}
