package chaos

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"time"
)

// Environment variables read by ConfigFromEnv.
const (
	// EnvSeed sets Config.Seed (a decimal int64); unset: a random seed.
	EnvSeed = "CHAOS_SEED"
	// EnvDuration sets Config.Duration (a Go duration, e.g. 10m); unset:
	// the short form.
	EnvDuration = "CHAOS_DURATION"
	// EnvReport names the file the JSON report is written to; unset:
	// chaos-report-<seed>.json (Kafka) or chaos-report-jetstream-<seed>.json
	// in the system's temporary directory.
	EnvReport = "CHAOS_REPORT"
	// EnvLog sets Config.Log: "kafka" or "jetstream"; unset: kafka.
	EnvLog = "CHAOS_LOG"
	// EnvLogs names a directory that keeps the nodes' logs (nN.log); unset:
	// the test's temporary directory, removed at the end.
	EnvLogs = "CHAOS_LOGS"
)

// LogMode is what the cluster's nodes use as their log.
type LogMode string

// Log modes.
const (
	// LogKafka: a Kafka broker, one topic (the nodes' --kafka-brokers).
	LogKafka LogMode = "kafka"
	// LogJetStream: a replicated JetStream stream on a cluster of NATS
	// servers (the nodes' --nats-url and --jetstream-replicas).
	LogJetStream LogMode = "jetstream"
)

// Config describes a chaos run. Start from DefaultConfig.
type Config struct {
	// Seed drives the fault schedule (kinds, victims, durations) and the
	// writers' keys and values. Default: from the clock.
	Seed int64
	// Duration is how long the nemesis injects faults in the long form.
	// Default 0: the short form, which injects faults, with shorter waits,
	// until it has injected one of every kind and ShortFor has passed.
	Duration time.Duration
	// ShortFor is the least time the short form injects faults. Default 2m.
	ShortFor time.Duration
	// Log is the nodes' log: LogKafka (ZooKeeper, a Kafka broker) or
	// LogJetStream (ZooKeeper, NATSServers NATS servers with JetStream, in
	// the test process). Default LogKafka.
	Log LogMode
	// NATSServers is the size of the NATS cluster in LogJetStream mode;
	// the stream has 3 replicas whatever it is. Default 3.
	NATSServers int
	// Nodes is the number of squall-node processes. Default 3.
	Nodes int
	// Partitions is the topic's (and so the cluster's) partition count;
	// in LogJetStream mode the nodes' --partitions. Default 12.
	Partitions int32
	// Keys is the number of keys written; the first KeysWithIDs carry a
	// unique id per event (and may be retried), the others carry none
	// (and are never retried). Defaults 300 and 240.
	Keys, KeysWithIDs int
	// Rate is the total target rate of the writers, in events/s. Default
	// 1,000.
	Rate int
	// HTTPWriters and NATSWriters are the numbers of writers per input.
	// Defaults 4 and 2.
	HTTPWriters, NATSWriters int
	// BatchMin and BatchMax bound the events per request. Defaults 20, 50.
	BatchMin, BatchMax int
	// SessionTimeout is the nodes' --zk-session-timeout. Default 4s.
	SessionTimeout time.Duration
	// Retention is the nodes' --retention: longer than a run, so that no
	// acknowledged event leaves the window. Default 1h.
	Retention time.Duration
	// ObserveInterval is the pause between two polls of a node's
	// /debug/cluster. Default 200ms.
	ObserveInterval time.Duration
	// SettleTimeout bounds the wait for the cluster to settle after a
	// fault's heal. Default 90s.
	SettleTimeout time.Duration
	// CatchUpTimeout bounds the final wait for every source to have
	// applied the log to its end. Default 3m.
	CatchUpTimeout time.Duration
}

// DefaultConfig returns the defaults documented on Config, with a seed
// from the clock.
func DefaultConfig() Config {
	return Config{
		Seed:     time.Now().UnixNano() % 1_000_000_000,
		ShortFor: 2 * time.Minute,
		Log:      LogKafka,
		Nodes:    3, Partitions: 12, NATSServers: 3,
		Keys: 300, KeysWithIDs: 240,
		Rate: 1000, HTTPWriters: 4, NATSWriters: 2,
		BatchMin: 20, BatchMax: 50,
		SessionTimeout:  4 * time.Second,
		Retention:       time.Hour,
		ObserveInterval: 200 * time.Millisecond,
		SettleTimeout:   90 * time.Second,
		CatchUpTimeout:  3 * time.Minute,
	}
}

// ConfigFromEnv returns DefaultConfig with CHAOS_SEED, CHAOS_DURATION and
// CHAOS_LOG applied.
func ConfigFromEnv() (Config, error) {
	cfg := DefaultConfig()
	if v := os.Getenv(EnvSeed); v != "" {
		s, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return cfg, fmt.Errorf("%s=%q: %w", EnvSeed, v, err)
		}
		cfg.Seed = s
	}
	if v := os.Getenv(EnvDuration); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			return cfg, fmt.Errorf("%s=%q: %w", EnvDuration, v, err)
		}
		cfg.Duration = d
	}
	if v := os.Getenv(EnvLog); v != "" {
		cfg.Log = LogMode(v)
	}
	return cfg, cfg.Validate()
}

// Validate reports what is wrong with c.
func (c Config) Validate() error {
	var errs []error
	switch c.Log {
	case LogKafka:
	case LogJetStream:
		if c.NATSServers < jsReplicas {
			errs = append(errs, fmt.Errorf("chaos: NATSServers must be at least %d (the stream's replicas)", jsReplicas))
		}
	default:
		errs = append(errs, fmt.Errorf("chaos: Log %q is neither %q nor %q (%s)", c.Log, LogKafka, LogJetStream, EnvLog))
	}
	if c.Nodes < 3 {
		errs = append(errs, errors.New("chaos: Nodes must be at least 3 (a double kill leaves one)"))
	}
	if c.Partitions < 1 || c.Keys < 1 || c.KeysWithIDs < 0 || c.KeysWithIDs > c.Keys {
		errs = append(errs, errors.New("chaos: need Partitions ≥ 1 and 0 ≤ KeysWithIDs ≤ Keys, Keys ≥ 1"))
	}
	if c.Rate < 1 || c.HTTPWriters+c.NATSWriters < 1 || c.BatchMin < 1 || c.BatchMax < c.BatchMin {
		errs = append(errs, errors.New("chaos: need Rate ≥ 1, a writer, 1 ≤ BatchMin ≤ BatchMax"))
	}
	if c.Duration < 0 || c.SessionTimeout <= 0 || c.Retention <= 0 || c.ObserveInterval <= 0 {
		errs = append(errs, errors.New("chaos: durations must be positive"))
	}
	return errors.Join(errs...)
}

// Short reports whether c is the short form.
func (c Config) Short() bool { return c.Duration == 0 }
