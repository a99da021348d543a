package node

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/squallhq/squall/actors"
	"github.com/squallhq/squall/api"
	"github.com/squallhq/squall/cluster"
	"github.com/squallhq/squall/event"
	"github.com/squallhq/squall/ingest"
	"github.com/squallhq/squall/source"
)

// logSide is the part of a node that exists with a durable log (Kafka
// with --kafka-brokers, or JetStream with --data-dir or
// --jetstream-replicas): the source actors of its partitions, and the
// producer HTTP and NATS input goes through.
type logSide struct {
	n         *Node
	src       logSource
	prod      logProducer
	misrouted prometheus.Counter
	closeLog  func()      // after src and prod: the log's own connection; nil: none
	caughtUp  atomic.Bool // a standalone node has caught up with its log once
	// single: one log partition (0) carries the events of every key
	// partition (a standalone node's own log: one message per batch, one
	// consumer), instead of one log partition per key partition.
	single    bool
	startOnce sync.Once

	results sync.Pool // *[]actors.Result for Apply

	ready chan struct{} // closed once n.engine is set
}

// logSource consumes the partitions a node serves from its log:
// *source.Manager (Kafka) or *jslog.Manager (JetStream).
type logSource interface {
	Start(p int32, from source.StartFrom)
	Stop(ctx context.Context, p int32) (committed int64, err error)
	Close() error
	Status() []api.SourceStatus
}

// logProducer writes HTTP and NATS input to the log first:
// *source.Producer or *jslog.Producer.
type logProducer interface {
	ingest.Submitter
	Close() error
}

func (n *Node) kafkaConfig() source.Config {
	kc := source.DefaultConfig()
	for _, b := range strings.Split(n.cfg.KafkaBrokers, ",") {
		kc.Brokers = append(kc.Brokers, strings.TrimSpace(b))
	}
	kc.Topic, kc.Group, kc.DLQTopic = n.cfg.KafkaTopic, n.cfg.KafkaGroup, n.cfg.KafkaDLQTopic
	kc.Retention = n.cfg.Retention
	kc.MaxRecordBytes = n.cfg.KafkaMaxRecordBytes
	kc.MaxFuture = n.cfg.MaxFuture
	if kc.MaxFuture == 0 {
		kc.MaxFuture = -1 // no limit
	}
	kc.SASLUser, kc.SASLPassword, kc.SASLMechanism = n.cfg.KafkaSASLUser, n.cfg.KafkaSASLPassword, n.cfg.KafkaSASLMechanism
	kc.ClientID = "squall-" + n.cfg.NodeID
	kc.Logger = n.log
	return kc
}

// kafkaPartitions reads the topic's partition count, which is the number
// of key partitions when Kafka feeds the node.
func (n *Node) kafkaPartitions(src *source.Manager) (int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), n.cfg.KafkaTimeout)
	defer cancel()
	count, err := src.PartitionCount(ctx)
	if err != nil {
		return 0, fmt.Errorf("--kafka-topic %s: %w", n.cfg.KafkaTopic, err)
	}
	return count, nil
}

// newLogSide returns the log side of n, sources and producer to be set.
func (n *Node) newLogSide() (*logSide, error) {
	k := &logSide{n: n, ready: make(chan struct{}),
		results: sync.Pool{New: func() any { return new([]actors.Result) }},
		misrouted: prometheus.NewCounter(prometheus.CounterOpts{Name: "squall_kafka_misrouted_events_total",
			Help: "Events read from a partition other than their key's (a producer not using murmur2), forwarded to the key's owner."})}
	if err := n.reg.Register(k.misrouted); err != nil {
		return nil, err
	}
	return k, nil
}

func (n *Node) startKafka() error {
	k, err := n.newLogSide()
	if err != nil {
		return err
	}
	kc := n.kafkaConfig()
	tls, err := n.kafkaTLS()
	if err != nil {
		return err
	}
	kc.TLS = tls
	kc.Registerer = n.reg
	if n.alerts != nil {
		kc.CommitHold = n.alerts.out.Hold // undelivered alerts are replayed
	}
	if n.cfg.ZK != "" {
		// In a cluster, progress is committed to ZooKeeper, fenced by the
		// partition's lifecycle; sources are started by it too.
		kc.Store, kc.OnLive = k, k.onLive
	}
	src, err := source.New(kc, k)
	if err != nil {
		return fmt.Errorf("--kafka-brokers %s: %w", n.cfg.KafkaBrokers, err)
	}
	k.src = src
	pc := kc
	pc.Registerer = nil
	if k.prod, err = source.NewProducer(pc); err != nil {
		src.Close()
		return fmt.Errorf("--kafka-brokers %s: %w", n.cfg.KafkaBrokers, err)
	}
	n.logs = k
	count, err := n.kafkaPartitions(src)
	if err != nil {
		return err
	}
	if count != n.cfg.Partitions {
		n.log.Info("key partitions follow the Kafka topic", "topic", n.cfg.KafkaTopic, "partitions", count)
	}
	n.cfg.Partitions = count
	return nil
}

// onServe starts the source of a partition a standalone engine serves, by
// replay from the restore offset of the last commit.
func (k *logSide) onServe(p int32, _ bool) {
	if k.single {
		k.startOnce.Do(func() { k.src.Start(0, source.StartFrom{Offset: -1}) })
		return
	}
	k.src.Start(p, source.StartFrom{Offset: -1})
}

// logPartitions is the number of partitions of the log.
func (k *logSide) logPartitions() int {
	if k.single {
		return 1
	}
	return k.n.cfg.Partitions
}

// Commit implements source.Store for a clustered node: progress goes to
// ZooKeeper, fenced by each partition's claim.
func (k *logSide) Commit(ctx context.Context, ps []source.Progress) []error {
	return k.n.cl.lc.commit(ctx, ps)
}

// onLive tells a clustered node's partition lifecycle that p's source has
// caught up.
func (k *logSide) onLive(p int32) { k.n.cl.lc.live(p) }

// Apply implements source.Sink.
func (k *logSide) Apply(ctx context.Context, p int32, evs []event.Event, offsets []int64, replay bool) error {
	select {
	case <-k.ready:
	case <-ctx.Done():
		return ctx.Err()
	}
	n := k.n
	// Usually every event is p's (producers use Kafka's partitioner): then
	// evs and offsets go to the engine as they are, with no copy. A single
	// log carries every key partition's.
	mine := 0
	for mine < len(evs) && (k.single || cluster.Partition(evs[mine].Key, n.cfg.Partitions) == p) {
		mine++
	}
	own, ownOffs := evs, offsets
	var elsewhere []event.Event
	if mine < len(evs) {
		own, ownOffs = append([]event.Event(nil), evs[:mine]...), append([]int64(nil), offsets[:mine]...)
		for i := mine; i < len(evs); i++ {
			if cluster.Partition(evs[i].Key, n.cfg.Partitions) == p {
				own = append(own, evs[i])
				ownOffs = append(ownOffs, offsets[i])
			} else if !replay {
				// Forwarded once, live; a replay of p cannot rebuild them
				// (their owner replays its own partition, which does not
				// hold them).
				elsewhere = append(elsewhere, evs[i])
			}
		}
	}
	bp := k.results.Get().(*[]actors.Result)
	defer k.results.Put(bp)
	if cap(*bp) < len(own) {
		*bp = make([]actors.Result, len(own))
	}
	out := (*bp)[:len(own)]
	if err := n.engine.SubmitRecords(ctx, own, ownOffs, replay, out); err != nil {
		return err
	}
	for _, r := range out {
		if r == actors.ResultMoved {
			return fmt.Errorf("partition %d: %w", p, actors.ErrNotOwned)
		}
	}
	if len(elsewhere) > 0 {
		k.misrouted.Add(float64(len(elsewhere)))
		res := make([]actors.Result, len(elsewhere))
		var sub ingest.Submitter = n.engine
		if n.cl != nil {
			sub = n.cl
		}
		// The partition's own events are applied: returning an error now
		// would have the source apply them again. Submit already retried
		// for as long as an owner may take to appear.
		if err := sub.Submit(ctx, elsewhere, res); err != nil {
			n.log.Error("misrouted events not delivered to their owner", "events", len(elsewhere), "err", err)
		}
	}
	return nil
}

// RestoreOffset implements source.Sink.
func (k *logSide) RestoreOffset(ctx context.Context, p int32) (int64, error) {
	select {
	case <-k.ready:
	case <-ctx.Done():
		return -1, ctx.Err()
	}
	if k.single {
		// The oldest of every key partition's: a replay from there
		// rebuilds them all.
		oldest := int64(-1)
		for kp := range int32(k.n.cfg.Partitions) {
			o, err := k.n.engine.RestoreOffset(ctx, kp)
			if err != nil {
				return -1, err
			}
			if o >= 0 && (oldest < 0 || o < oldest) {
				oldest = o
			}
		}
		return oldest, nil
	}
	o, err := k.n.engine.RestoreOffset(ctx, p)
	if errors.Is(err, actors.ErrNotOwned) {
		return -1, err
	}
	return o, err
}

// status lists the source actors for /debug/cluster.
func (k *logSide) status() []api.SourceStatus {
	out := k.src.Status()
	sort.Slice(out, func(i, j int) bool { return out[i].Partition < out[j].Partition })
	return out
}

func (k *logSide) close() {
	k.src.Close()
	k.prod.Close()
	if k.closeLog != nil {
		k.closeLog()
	}
}

// kafkaTLS returns the TLS config for Kafka, or nil without --kafka-tls.
func (n *Node) kafkaTLS() (*tls.Config, error) {
	c, err := source.TLSConfig(n.cfg.KafkaTLS, n.cfg.KafkaTLSCA)
	if err != nil {
		return nil, fmt.Errorf("--kafka-tls-ca: %w", err)
	}
	return c, nil
}

func (n *Node) logStatus() []api.SourceStatus {
	if n.logs == nil {
		return nil
	}
	return n.logs.status()
}
