package jslog

import (
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/squallhq/squall/source"
)

// ErrConfig means a Config is invalid; it is wrapped with the field. The
// package's other errors are those of package source: source.ErrClosed,
// source.ErrNotStarted and source.ErrFenced.
var ErrConfig = errors.New("jslog: invalid config")

// Defaults of Config.
const (
	DefaultStream              = "SQUALL_LOG"
	DefaultSubject             = "squall.log"
	DefaultReplicas            = 1
	DefaultRetention           = 10 * time.Minute
	DefaultProgressBucket      = "SQUALL_PROGRESS"
	DefaultCommitInterval      = time.Second
	DefaultMaxBufferedMessages = 256
)

// FormatHeader is the header of every log message that names the encoding
// of its body; FormatProto is its only value so far (a protobuf
// messages.EventBatch, event.AppendProto).
const (
	FormatHeader = "Squall-Format"
	FormatProto  = "proto"
)

// Config configures a Manager and a Producer. The zero value of a field
// means its default, except Conn and Partitions, which are required.
type Config struct {
	// Conn is the connection to a NATS server (or cluster) with JetStream.
	// Required; the Manager and Producer do not close it.
	Conn *nats.Conn
	// Stream is the JetStream stream holding the log. Default "SQUALL_LOG".
	Stream string
	// Subject is the subject prefix: partition p's messages are published
	// to "<Subject>.<p>" and the stream holds "<Subject>.*". Default
	// "squall.log".
	Subject string
	// Partitions is the number of key partitions (cluster.Partition).
	// Required, > 0.
	Partitions int
	// Replicas is the replication factor of the stream and of the progress
	// bucket (1 to 5). Default 1.
	Replicas int
	// MaxAge is how long the stream keeps a message. Default 2 × Retention.
	MaxAge time.Duration
	// MaxBytes bounds the stream's size in bytes; once it is reached new
	// messages are refused (discard-new: ingest fails rather than losing
	// what a replay needs). Default 0: -1, unlimited.
	MaxBytes int64
	// Retention is the key windows' retention; a partition whose progress
	// has no restore offset replays the messages stored in the last
	// Retention. Default 10m.
	Retention time.Duration
	// ProgressBucket is the KV bucket progress is committed to when Store
	// is nil (key "p.<partition>"). Default "SQUALL_PROGRESS".
	ProgressBucket string
	// Store, when set, is where progress is committed, fenced against
	// other owners (a cluster keeps it in ZooKeeper); the KV bucket is then
	// neither created nor used. Default nil.
	Store source.Store
	// OnLive, when set, is called once a started partition is live: at
	// once when there is nothing to replay, else when its replay is done.
	// It runs on the partition's goroutine and must not block. Default nil.
	OnLive func(p int32)
	// CommitHold, when set, holds a partition's periodic commits back to
	// the offset it returns (ok true): the oldest message whose outputs
	// are not delivered yet. The final commit of Stop and Close is not
	// held. Called on the partition's goroutine; must be cheap. Default
	// nil.
	CommitHold func(p int32) (offset int64, ok bool)
	// CommitInterval is how often a partition's applied offset is
	// committed; Stop and Close commit too. Default 1s.
	CommitInterval time.Duration
	// MaxBufferedMessages bounds, per partition, the messages fetched and
	// not yet applied: nothing more is fetched while that many are held.
	// A message holds at most maxMessageBytes (256 KiB) of events, so a
	// partition holds at most MaxBufferedMessages × 256 KiB. Default 256.
	MaxBufferedMessages int
	// Logger receives what cannot be returned (apply retries, commit and
	// consumer failures, rate-limited produce failures). Default
	// slog.Default().
	Logger *slog.Logger
	// Registerer is where the Manager registers its metrics. Default nil:
	// not registered. The Producer registers none.
	Registerer prometheus.Registerer
}

// withDefaults returns c with zero fields set to their defaults.
func (c Config) withDefaults() Config {
	if c.Stream == "" {
		c.Stream = DefaultStream
	}
	if c.Subject == "" {
		c.Subject = DefaultSubject
	}
	if c.Replicas == 0 {
		c.Replicas = DefaultReplicas
	}
	if c.Retention == 0 {
		c.Retention = DefaultRetention
	}
	if c.MaxAge == 0 {
		c.MaxAge = 2 * c.Retention
	}
	if c.MaxBytes == 0 {
		c.MaxBytes = -1
	}
	if c.ProgressBucket == "" {
		c.ProgressBucket = DefaultProgressBucket
	}
	if c.CommitInterval == 0 {
		c.CommitInterval = DefaultCommitInterval
	}
	if c.MaxBufferedMessages == 0 {
		c.MaxBufferedMessages = DefaultMaxBufferedMessages
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

// Validate reports the first invalid field of c (zero fields count as
// their defaults), wrapped in ErrConfig.
func (c Config) Validate() error {
	c = c.withDefaults()
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: "+format, append([]any{ErrConfig}, args...)...)
	}
	switch {
	case c.Conn == nil:
		return bad("no NATS connection")
	case c.Partitions <= 0:
		return bad("Partitions %d is not positive", c.Partitions)
	case c.Replicas < 1 || c.Replicas > 5:
		return bad("Replicas %d is not in [1, 5]", c.Replicas)
	case c.MaxAge < 0:
		return bad("MaxAge %s is negative", c.MaxAge)
	case c.MaxBytes < -1:
		return bad("MaxBytes %d is below -1", c.MaxBytes)
	case c.Retention < 0:
		return bad("Retention %s is negative", c.Retention)
	case c.CommitInterval < 0:
		return bad("CommitInterval %s is negative", c.CommitInterval)
	case c.MaxBufferedMessages < 0:
		return bad("MaxBufferedMessages %d is negative", c.MaxBufferedMessages)
	}
	return nil
}

// subject returns partition p's subject.
func (c *Config) subject(p int32) string {
	return c.Subject + "." + strconv.Itoa(int(p))
}
