package source

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/squallhq/squall/event"
)

// Errors returned by the package. Test with errors.Is.
var (
	// ErrClosed is returned by calls on a Manager or Producer that is
	// closed or closing.
	ErrClosed = errors.New("source: closed")
	// ErrNotStarted is returned by Stop for a partition that is not
	// consumed (never started, or already stopped).
	ErrNotStarted = errors.New("source: partition not started")
	// ErrTopicNotFound means the topic does not exist on the brokers. It is
	// wrapped with the topic's name.
	ErrTopicNotFound = errors.New("source: topic not found")
	// ErrFenced means a Store refused a partition's commit because another
	// node owns the partition now: nothing more may be committed for it.
	ErrFenced = errors.New("source: partition fenced by a newer owner")
	// ErrConfig means a Config is invalid; it is wrapped with the field.
	ErrConfig = errors.New("source: invalid config")
)

// SASL mechanisms accepted in Config.SASLMechanism.
const (
	SASLScramSHA256 = "SCRAM-SHA-256"
	SASLScramSHA512 = "SCRAM-SHA-512"
)

// Defaults of Config.
const (
	DefaultTopic              = "squall-events"
	DefaultGroup              = "squall"
	DefaultMaxRecordBytes     = 1 << 20
	DefaultMaxBufferedRecords = 10_000
	// DefaultFetchMaxBytes and DefaultFetchMaxPartitionBytes bound a fetch.
	DefaultFetchMaxBytes          = 4 << 20
	DefaultFetchMaxPartitionBytes = 1 << 20
	DefaultCommitInterval         = time.Second
	DefaultRetention              = 10 * time.Minute
)

// Config configures a Manager and a Producer. The zero value of a field
// means its default (DefaultConfig), except Brokers, which is required.
type Config struct {
	// Brokers are the seed brokers, host:port. Required.
	Brokers []string
	// Topic is the events topic. Default "squall-events".
	Topic string
	// Group is the consumer group offsets are committed to (partitions are
	// assigned by the node, not by the group protocol). Default "squall".
	Group string
	// CommitHold, when set, holds a partition's periodic commits back to
	// the offset it returns (ok true): the oldest record whose outputs
	// (alerts) are not delivered yet, so that a crash replays it and they
	// are emitted again. The final commit of Stop and Close (a handoff's
	// starting point) is not held. Called on the partition's goroutine;
	// must be cheap. Default nil.
	CommitHold func(p int32) (offset int64, ok bool)
	// Store, when set, is where a partition's progress is committed first,
	// fenced against other owners (a cluster keeps it in ZooKeeper); the
	// group's offsets are then committed too, for monitoring (lag tools)
	// only, and a commit the Store refuses is not made to the group.
	// Default nil: the group's committed offsets are the progress.
	Store Store
	// OnLive, when set, is called once a started partition is live: at
	// once when there is nothing to replay, else when its replay has
	// reached the committed offset. It runs on the partition's goroutine
	// and must not block. Default nil.
	OnLive func(p int32)
	// DLQTopic receives bad records (malformed, every event invalid,
	// oversized, empty), with a header "squall-error" holding the reason.
	// Default "": bad records are skipped. Either way they are counted in
	// squall_kafka_bad_records_total{reason}.
	DLQTopic string
	// MaxRecordBytes is the largest record value accepted, in bytes; larger
	// records are bad ("oversized"). Default 1 MiB.
	MaxRecordBytes int
	// MaxFuture rejects (field "ts") an event stamped more than this after
	// its record's timestamp, not the clock: a replay after a crash or a
	// handoff then rejects exactly what the first reading did. A record
	// holding only such events is bad ("invalid"); a record without a
	// timestamp is not checked. Default 0: event.DefaultMaxFuture (5m);
	// negative: no limit.
	MaxFuture time.Duration
	// MaxBufferedRecords limits, per partition, the records fetched and not
	// yet applied (back-pressure). The poll loop takes whole fetches, so
	// that the next fetch overlaps the apply of this one; while a
	// partition holds more than MaxBufferedRecords the loop polls no more,
	// and a partition that stays over it without progress for a moment is
	// paused until its actor has drained half of them. A partition thus
	// holds at most MaxBufferedRecords plus what one fetch brings it (see
	// FetchMaxPartitionBytes). Default 10,000.
	MaxBufferedRecords int
	// FetchMaxBytes bounds one fetch response from a broker (record
	// batches, as stored: compressed), and FetchMaxPartitionBytes its part
	// for one partition; a broker still returns a first batch larger than
	// either. With MaxBufferedRecords they bound the memory of consumed
	// records. Defaults 4 MiB and 1 MiB.
	FetchMaxBytes, FetchMaxPartitionBytes int32
	// CommitInterval is how often applied offsets are committed; Stop and
	// Close commit too. Default 1s.
	CommitInterval time.Duration
	// Retention is the key windows' retention, used for the restore offset
	// when a commit carries none (see Manager.Start). Default 10m.
	Retention time.Duration
	// ProduceLinger is how long the Producer lets a partition's batch wait
	// for more records before sending it. Default 0: send at once (records
	// produced while a request is in flight are still batched).
	ProduceLinger time.Duration
	// TLS, when set, is used to dial the brokers. Default nil: plaintext.
	TLS *tls.Config
	// SASLUser, SASLPassword and SASLMechanism ("SCRAM-SHA-256" or
	// "SCRAM-SHA-512") authenticate to the brokers. Default "": none.
	SASLUser, SASLPassword, SASLMechanism string
	// ClientID is the Kafka client id. Default "squall".
	ClientID string
	// Logger receives what cannot be returned (apply retries, commit
	// failures, client warnings). Default slog.Default().
	Logger *slog.Logger
	// Registerer is where the Manager registers its metrics. Default nil:
	// not registered. The Producer registers none.
	Registerer prometheus.Registerer
}

// Store keeps the partitions' progress where ownership is fenced.
type Store interface {
	// Commit stores each partition's progress and returns, per item, nil
	// or why it was not stored: an error wrapping ErrFenced when another
	// node owns the partition now. Commits of one partition are never
	// concurrent.
	Commit(ctx context.Context, ps []Progress) []error
}

// Progress is a partition's progress: every record below Offset is
// applied, and a replay from Restore rebuilds every key's window.
type Progress struct {
	Partition       int32
	Offset, Restore int64
}

// DefaultConfig returns a Config with every default filled in and no
// brokers.
func DefaultConfig() Config {
	return Config{
		Topic:                  DefaultTopic,
		Group:                  DefaultGroup,
		MaxRecordBytes:         DefaultMaxRecordBytes,
		MaxFuture:              event.DefaultMaxFuture,
		MaxBufferedRecords:     DefaultMaxBufferedRecords,
		FetchMaxBytes:          DefaultFetchMaxBytes,
		FetchMaxPartitionBytes: DefaultFetchMaxPartitionBytes,
		CommitInterval:         DefaultCommitInterval,
		Retention:              DefaultRetention,
		ClientID:               "squall",
	}
}

// withDefaults returns c with zero fields set to their defaults.
func (c Config) withDefaults() Config {
	d := DefaultConfig()
	if c.Topic == "" {
		c.Topic = d.Topic
	}
	if c.Group == "" {
		c.Group = d.Group
	}
	if c.MaxRecordBytes == 0 {
		c.MaxRecordBytes = d.MaxRecordBytes
	}
	if c.MaxFuture == 0 {
		c.MaxFuture = d.MaxFuture
	}
	if c.MaxBufferedRecords == 0 {
		c.MaxBufferedRecords = d.MaxBufferedRecords
	}
	if c.FetchMaxBytes == 0 {
		c.FetchMaxBytes = d.FetchMaxBytes
	}
	if c.FetchMaxPartitionBytes == 0 {
		c.FetchMaxPartitionBytes = d.FetchMaxPartitionBytes
	}
	if c.CommitInterval == 0 {
		c.CommitInterval = d.CommitInterval
	}
	if c.Retention == 0 {
		c.Retention = d.Retention
	}
	if c.ClientID == "" {
		c.ClientID = d.ClientID
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
	case len(c.Brokers) == 0:
		return bad("no brokers")
	case c.DLQTopic == c.Topic:
		return bad("dead-letter topic %q is the events topic", c.DLQTopic)
	case c.MaxRecordBytes < 0:
		return bad("MaxRecordBytes %d is negative", c.MaxRecordBytes)
	case c.MaxBufferedRecords < 0:
		return bad("MaxBufferedRecords %d is negative", c.MaxBufferedRecords)
	case c.FetchMaxBytes < 0 || c.FetchMaxPartitionBytes < 0:
		return bad("FetchMaxBytes %d or FetchMaxPartitionBytes %d is negative", c.FetchMaxBytes, c.FetchMaxPartitionBytes)
	case c.CommitInterval < 0:
		return bad("CommitInterval %s is negative", c.CommitInterval)
	case c.Retention < 0:
		return bad("Retention %s is negative", c.Retention)
	case c.ProduceLinger < 0 || c.ProduceLinger > time.Minute:
		return bad("ProduceLinger %s is not in [0, 1m]", c.ProduceLinger)
	}
	for _, b := range c.Brokers {
		if b == "" {
			return bad("empty broker address")
		}
	}
	switch c.SASLMechanism {
	case "":
		if c.SASLUser != "" {
			return bad("SASL user set without a mechanism")
		}
	case SASLScramSHA256, SASLScramSHA512:
		if c.SASLUser == "" {
			return bad("SASL mechanism %s without a user", c.SASLMechanism)
		}
	default:
		return bad("SASL mechanism %q: want %s or %s", c.SASLMechanism, SASLScramSHA256, SASLScramSHA512)
	}
	return nil
}

// clientOpts returns the kgo options every client of c shares: brokers,
// client id, TLS, SASL and logging.
// NewClient returns a Kafka client for c's brokers with c's TLS and SASL
// settings and extra options: for the node's other topics (alert output).
func (c *Config) NewClient(extra ...kgo.Opt) (*kgo.Client, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	d := c.withDefaults()
	return kgo.NewClient(append(d.clientOpts(), extra...)...)
}

func (c *Config) clientOpts() []kgo.Opt {
	opts := []kgo.Opt{
		kgo.SeedBrokers(c.Brokers...),
		kgo.ClientID(c.ClientID),
		kgo.WithLogger(kgoLogger{c.Logger}),
	}
	if c.TLS != nil {
		opts = append(opts, kgo.DialTLSConfig(c.TLS.Clone()))
	}
	if c.SASLMechanism != "" {
		opts = append(opts, SCRAM(c.SASLUser, c.SASLPassword, c.SASLMechanism))
	}
	return opts
}

// SCRAM returns the option authenticating a client with SASL/SCRAM:
// mechanism SASLScramSHA512, or else SASLScramSHA256.
func SCRAM(user, password, mechanism string) kgo.Opt {
	auth := scram.Auth{User: user, Pass: password}
	if mechanism == SASLScramSHA512 {
		return kgo.SASL(auth.AsSha512Mechanism())
	}
	return kgo.SASL(auth.AsSha256Mechanism())
}

// TLSConfig returns the TLS configuration of a Kafka client: nil (plain
// TCP) unless on or caFile; with caFile, the PEM certificates in it are
// the only roots trusted, else the system's are.
func TLSConfig(on bool, caFile string) (*tls.Config, error) {
	if !on && caFile == "" {
		return nil, nil
	}
	c := &tls.Config{MinVersion: tls.VersionTLS12}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, err
		}
		c.RootCAs = x509.NewCertPool()
		if !c.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%s: no PEM certificate found", caFile)
		}
	}
	return c, nil
}

// kgoLogger passes franz-go's warnings and errors to a slog.Logger.
type kgoLogger struct{ l *slog.Logger }

func (k kgoLogger) Level() kgo.LogLevel { return kgo.LogLevelWarn }

func (k kgoLogger) Log(level kgo.LogLevel, msg string, keyvals ...any) {
	lv := slog.LevelWarn
	switch level {
	case kgo.LogLevelError:
		lv = slog.LevelError
	case kgo.LogLevelInfo:
		lv = slog.LevelInfo
	case kgo.LogLevelDebug:
		lv = slog.LevelDebug
	}
	k.l.Log(context.Background(), lv, "kafka client: "+msg, keyvals...)
}

// quietLogger silences the actor system, as actors/engine.go does.
var quietLogger = slog.New(slog.NewTextHandler(io.Discard, nil))
