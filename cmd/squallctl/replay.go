package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/squallhq/squall/api"
	"github.com/squallhq/squall/client"
	"github.com/squallhq/squall/replay"
	"github.com/squallhq/squall/rules"
	"github.com/squallhq/squall/source"
)

// replayOptions are the flags of "replay".
type replayOptions struct {
	fromLog      bool
	kafkaBrokers string
	kafkaTopic   string
	kafkaTLS     bool
	kafkaTLSCA   string
	saslUser     string
	saslMech     string
	saslPassFile string
	natsURL      string
	partition    int32
	from, to     int64
	since, until string
	file         string
	rulesFile    string
	diff         bool
}

func (a *app) replayCommand() *cobra.Command {
	var o replayOptions
	cmd := &cobra.Command{
		Use:   "replay KEY",
		Short: "Rebuild a key's state from its events in a fresh local key actor, step by step",
		Long: `Replay a key's events, in order, through a fresh key actor built in this
process with the node's own code (package replay): the same window shape and
partition count as the node's (from GET /debug/actors/{key}/events, which
any node routes to the key's owner), and the owner's alert rules
(GET /debug/rules, asked of the owner) or, with --rules, a changed file to
try.
One line is printed per event — index, log offset (@N, when from a log), ts,
value, id, outcome (applied, late, duplicate), the whole window's aggregates
after it and any rule transition — then the final state as "get" prints it.
With -o json or -o yaml only the final state document is printed.

Where the events come from:
  (default)   the events the node's key actor keeps. They rebuild the state
              only while they are every event the key received (at most the
              node's --recent-events); otherwise the command refuses: use
              --from-log.
  --from-log  the node's log, read by a consumer that commits nothing:
              --kafka-brokers and --kafka-topic for Kafka (with the node's
              --kafka-tls, --kafka-tls-ca and --kafka-sasl-* settings), or --nats for the
              JetStream log of a durable node (a standalone node's
              --nats-addr: log partition 0; a cluster's --nats-url: log
              partition squall.log.<the key's partition>). The range is the
              one the partition's consumer (the node asked, or the
              partition's owner) gives in /debug/cluster, from its restore
              point to the last record applied, unless --from/--to
              (offsets or stream sequences) or --since/--until (RFC 3339
              times) bound it.
  -f FILE     a file of NDJSON events, as "send -f" takes them, each with ts.

The Kafka partition read is the key's murmur2 partition, where the node's
producer and every producer with Kafka's default partitioner put it. A
producer with another partitioner (Sarama's FNV-1a, librdkafka's CRC32) puts
the key's records elsewhere: give that partition with --partition.

--diff compares the final state with the live key's (GET /debug/actors/{key}),
leaving out wall-clock fields, prints one line per difference and exits 1 if
there is any, 0 when they are equal.`,
		Example: `  squallctl replay web-1.cpu
  squallctl replay web-1.cpu --diff
  squallctl replay web-1.cpu --rules new-rules.yaml --diff
  squallctl replay web-1.cpu -f web-1.ndjson
  squallctl replay web-1.cpu --from-log --kafka-brokers 10.0.0.7:9092 --kafka-topic squall-events
  squallctl replay web-1.cpu --from-log --nats nats://127.0.0.1:4222 --from 120 --to 180
  squallctl replay web-1.cpu --from-log --kafka-brokers 10.0.0.7:9092 --kafka-topic squall-events \
      --since 2025-11-25T10:00:00Z --until 2025-11-25T11:00:00Z -o json`,
		Args: exactArgs(1),
		PreRunE: func(cmd *cobra.Command, _ []string) error {
			return o.check(cmd)
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.replay(cmd.Context(), &o, args[0])
		},
	}
	f := cmd.Flags()
	f.BoolVar(&o.fromLog, "from-log", false, "replay from the node's log (Kafka or JetStream) instead of its kept events")
	f.StringVar(&o.kafkaBrokers, "kafka-brokers", "", "with --from-log: the Kafka brokers host:port, comma separated")
	f.StringVar(&o.kafkaTopic, "kafka-topic", "", "with --kafka-brokers: the node's --kafka-topic")
	f.BoolVar(&o.kafkaTLS, "kafka-tls", false, "with --kafka-brokers: connect over TLS (the system's roots)")
	f.StringVar(&o.kafkaTLSCA, "kafka-tls-ca", "", "with --kafka-brokers: connect over TLS trusting this PEM CA file")
	f.StringVar(&o.saslUser, "kafka-sasl-user", "", "with --kafka-brokers: the SASL/SCRAM user")
	f.StringVar(&o.saslMech, "kafka-sasl-mechanism", "", "with --kafka-sasl-user: "+source.SASLScramSHA256+" or "+source.SASLScramSHA512)
	f.StringVar(&o.saslPassFile, "kafka-sasl-password-file", "", "with --kafka-sasl-user: a file holding the password (else $"+envKafkaPassword+")")
	f.StringVar(&o.natsURL, "nats", "", "with --from-log: the NATS server holding a durable node's JetStream log")
	f.Int32Var(&o.partition, "partition", -1, "with --from-log: the log partition to read (default: the key's)")
	f.Int64Var(&o.from, "from", -1, "with --from-log: the first offset (stream sequence) read (default: the node's restore point)")
	f.Int64Var(&o.to, "to", -1, "with --from-log: one past the last offset read (default: the node's last applied)")
	f.StringVar(&o.since, "since", "", "with --from-log: read records stored at or after this RFC 3339 time")
	f.StringVar(&o.until, "until", "", "with --from-log: read records stored before this RFC 3339 time")
	f.StringVarP(&o.file, "file", "f", "", "replay the NDJSON events of this file (- for stdin)")
	f.StringVar(&o.rulesFile, "rules", "", "run this rules file instead of the node's rules")
	f.BoolVar(&o.diff, "diff", false, "compare the final state with the live key's; exit 1 on any difference")
	return cmd
}

// check reports a usage error in o.
func (o *replayOptions) check(cmd *cobra.Command) error {
	logFlags := []string{"kafka-brokers", "kafka-topic", "kafka-tls", "kafka-tls-ca", "kafka-sasl-user", "kafka-sasl-mechanism",
		"kafka-sasl-password-file", "nats", "partition", "from", "to", "since", "until"}
	if !o.fromLog {
		for _, n := range logFlags {
			if cmd.Flags().Changed(n) {
				return usageError{fmt.Errorf("--%s needs --from-log", n)}
			}
		}
		return nil
	}
	switch {
	case o.file != "":
		return usageError{errors.New("give --from-log or -f, not both")}
	case (o.kafkaBrokers == "") == (o.natsURL == ""):
		return usageError{errors.New("--from-log needs --kafka-brokers (Kafka) or --nats (JetStream), one of them")}
	case o.kafkaBrokers != "" && o.kafkaTopic == "":
		return usageError{errors.New("--kafka-brokers needs --kafka-topic")}
	case o.natsURL != "" && (o.kafkaTopic != "" || o.kafkaTLS || o.kafkaTLSCA != "" || o.saslUser != ""):
		return usageError{errors.New("--kafka-topic, --kafka-tls, --kafka-tls-ca and --kafka-sasl-user need --kafka-brokers")}
	case (o.saslUser == "") != (o.saslMech == ""):
		return usageError{errors.New("--kafka-sasl-user and --kafka-sasl-mechanism go together")}
	case o.saslMech != "" && o.saslMech != source.SASLScramSHA256 && o.saslMech != source.SASLScramSHA512:
		return usageError{fmt.Errorf("--kafka-sasl-mechanism %q: want %s or %s", o.saslMech, source.SASLScramSHA256, source.SASLScramSHA512)}
	case o.saslUser == "" && o.saslPassFile != "":
		return usageError{errors.New("--kafka-sasl-password-file needs --kafka-sasl-user")}
	case (o.from >= 0 || o.to >= 0) && (o.since != "" || o.until != ""):
		return usageError{errors.New("give --from/--to or --since/--until, not both")}
	case o.from >= 0 && o.to >= 0 && o.to < o.from:
		return usageError{fmt.Errorf("--to %d is before --from %d", o.to, o.from)}
	}
	for _, t := range []struct{ name, v string }{{"since", o.since}, {"until", o.until}} {
		if t.v == "" {
			continue
		}
		if _, err := time.Parse(time.RFC3339Nano, t.v); err != nil {
			return usageError{fmt.Errorf("--%s %q: want an RFC 3339 time", t.name, t.v)}
		}
	}
	return nil
}

// replay runs the replay of key that o describes and prints it.
func (a *app) replay(ctx context.Context, o *replayOptions, key string) error {
	c, err := a.client("")
	if err != nil {
		return err
	}
	rctx, cancel := a.request(ctx)
	ke, err := c.Events(rctx, key)
	cancel()
	if errors.Is(err, client.ErrNotFound) {
		return fmt.Errorf("key %q has no live actor on the node: its events, window shape and partitions come from it", key)
	}
	if err != nil {
		return fmt.Errorf("events of %q: %w", key, err)
	}
	cfg, err := replay.ConfigOf(ke)
	if err != nil {
		return err
	}
	if cfg.Rules, err = a.replayRules(ctx, c, o.rulesFile, ke.Node); err != nil {
		return err
	}
	if err := cfg.Validate(); err != nil {
		return err
	}

	src, err := a.replaySource(ctx, c, o, ke, key)
	if err != nil {
		return err
	}
	defer src.Close()
	var step func(replay.Step) error
	if a.output == outTable {
		step = func(s replay.Step) error {
			_, err := fmt.Fprintln(a.out, s.String())
			return err
		}
	}
	res, err := replay.Replay(ctx, cfg, key, src, step)
	if err != nil {
		return err
	}
	if res.State == nil {
		return fmt.Errorf("no event of %q to replay (%d events of other keys)", key, res.Skipped)
	}
	if a.output == outTable {
		fmt.Fprintln(a.out)
		if err := writeKeyState(a.out, res.State); err != nil {
			return err
		}
	} else if err := a.printDoc(res.State); err != nil {
		return err
	}
	if !o.diff {
		return nil
	}

	rctx, cancel = a.request(ctx)
	live, err := c.Get(rctx, key)
	cancel()
	if err != nil {
		return fmt.Errorf("live state of %q: %w", key, err)
	}
	d, err := replay.Diff(live, res.State)
	if err != nil {
		return err
	}
	w := a.out
	if a.output != outTable {
		w = a.errOut // stdout holds one document
	}
	if len(d) == 0 {
		fmt.Fprintf(w, "\nDIFF: the replay equals the live key (%s)\n", live.Node)
		return nil
	}
	fmt.Fprintf(w, "\nDIFF: %s between the live key (%s) and the replay\n", plural(len(d), "difference"), live.Node)
	for _, l := range d {
		fmt.Fprintln(w, l)
	}
	return fmt.Errorf("the replay of %q differs from the live key: %s", key, plural(len(d), "difference"))
}

// replayRules returns the rules of file, or the key's node's (owner) when
// file is "". Each node of a cluster loads its own rules file: when the
// node asked is another, the owner is asked on its HTTP address; when it
// cannot be reached from here, the node asked answers and a warning says
// whose rules run.
func (a *app) replayRules(ctx context.Context, c *client.Client, file, owner string) (*rules.Set, error) {
	if file != "" {
		set, err := rules.Load(file)
		if err != nil {
			return nil, fmt.Errorf("--rules: %w", err)
		}
		return set, nil
	}
	rctx, cancel := a.request(ctx)
	defer cancel()
	doc, err := c.Rules(rctx)
	if err != nil {
		return nil, fmt.Errorf("rules of the node: %w", err)
	}
	if doc.Node != owner {
		od, err := a.ownerRules(ctx, c, owner)
		if err != nil {
			fmt.Fprintf(a.errOut, "squallctl: warning: the rules are node %s's, the key is on node %s (%v): if their rules files differ, give --server of %s or --rules\n", doc.Node, owner, err, owner)
		} else {
			doc = od
		}
	}
	return replay.RulesOf(doc)
}

// ownerRules asks node owner for its rules, on its HTTP address as the
// cluster document of the node c talks to gives it.
func (a *app) ownerRules(ctx context.Context, c *client.Client, owner string) (*api.Rules, error) {
	oc, err := a.peer(ctx, c, owner)
	if err != nil {
		return nil, err
	}
	rctx, cancel := a.request(ctx)
	defer cancel()
	return oc.Rules(rctx)
}

// peer returns a client of member id of the cluster of the node c talks to.
func (a *app) peer(ctx context.Context, c *client.Client, id string) (*client.Client, error) {
	rctx, cancel := a.request(ctx)
	defer cancel()
	doc, err := c.Cluster(rctx)
	if err != nil {
		return nil, fmt.Errorf("cluster: %w", err)
	}
	return a.memberClient(doc, id)
}

// replaySource returns the source of key's events that o names.
func (a *app) replaySource(ctx context.Context, c *client.Client, o *replayOptions, ke *api.KeyEvents, key string) (replay.Source, error) {
	switch {
	case o.file == "-":
		return replay.NewFileSource(a.in), nil
	case o.file != "":
		b, err := os.ReadFile(o.file)
		if err != nil {
			return nil, fmt.Errorf("-f: %w", err)
		}
		return replay.NewFileSource(bytes.NewReader(b)), nil
	case !o.fromLog:
		src, err := replay.KeptEvents(ke)
		if errors.Is(err, replay.ErrIncomplete) {
			return nil, fmt.Errorf("%w: replay from the log with --from-log", err)
		}
		return src, err
	}

	// From the log: the partition, then the range.
	var doc *api.Cluster
	if o.partition < 0 || (o.from < 0 && o.to < 0 && o.since == "" && o.until == "") {
		rctx, cancel := a.request(ctx)
		var err error
		doc, err = c.Cluster(rctx)
		cancel()
		if err != nil {
			return nil, fmt.Errorf("cluster: %w", err)
		}
	}
	p := o.partition
	if p < 0 {
		p = replay.KeyPartition(key, doc.PartitionCount)
		if o.natsURL != "" && doc.Cluster == "standalone" {
			p = 0 // a standalone node's log has one partition
		}
	}
	from, to := o.from, o.to
	if from < 0 && to < 0 && o.since == "" && o.until == "" {
		var ok bool
		if from, to, ok = a.logRange(ctx, doc, p); !ok {
			return nil, fmt.Errorf("node %s consumes no log partition %d and its owner could not say what it applied: ask the owner with --server, or give --from/--to", doc.Self, p)
		}
		if to <= from {
			return nil, fmt.Errorf("no event of %q to replay: its consumer has applied no record of log partition %d since it began (--from/--to or --since/--until read another range)", key, p)
		}
	}
	var since, until time.Time
	if o.since != "" {
		since, _ = time.Parse(time.RFC3339Nano, o.since) // checked by check
	}
	if o.until != "" {
		until, _ = time.Parse(time.RFC3339Nano, o.until)
	}

	if o.kafkaBrokers != "" {
		kc := replay.DefaultKafkaConfig()
		var err error
		if kc.Opts, err = o.kafkaOpts(); err != nil {
			return nil, err
		}
		kc.Topic, kc.Partition = o.kafkaTopic, p
		kc.From, kc.To = max(from, 0), to
		kc.FromTime, kc.ToTime = since, until
		return replay.NewKafkaSource(ctx, kc, key)
	}
	nc, err := nats.Connect(o.natsURL, nats.Name("squallctl replay"), nats.Timeout(a.timeout))
	if err != nil {
		return nil, fmt.Errorf("nats %s: %w", o.natsURL, err)
	}
	jc := replay.JetStreamConfig{Conn: nc, Partition: p, FromTime: since, ToTime: until}
	if from > 0 {
		jc.From = uint64(from)
	}
	if to > 0 {
		jc.To = uint64(to)
	}
	src, err := replay.NewJetStreamSource(ctx, jc, key)
	if err != nil {
		nc.Close()
		return nil, err
	}
	return &connSource{Source: src, nc: nc}, nil
}

// logRange returns the range of log partition p that its consumer has
// applied: doc's node's, or else that of the partition's owner in doc's
// assignment, asked on its HTTP address.
func (a *app) logRange(ctx context.Context, doc *api.Cluster, p int32) (from, to int64, ok bool) {
	if from, to, ok = replay.LogRange(doc, p); ok {
		return from, to, true
	}
	owner := doc.Assignment[strconv.Itoa(int(p))]
	if owner == "" || owner == doc.Self {
		return 0, 0, false
	}
	oc, err := a.memberClient(doc, owner)
	if err != nil {
		return 0, 0, false
	}
	rctx, cancel := a.request(ctx)
	defer cancel()
	od, err := oc.Cluster(rctx)
	if err != nil {
		fmt.Fprintf(a.errOut, "squallctl: partition %d's owner %s: %v\n", p, owner, err)
		return 0, 0, false
	}
	return replay.LogRange(od, p)
}

// kafkaOpts returns the options of a client of o's brokers: TLS and
// SASL/SCRAM as the node's --kafka-tls, --kafka-tls-ca and --kafka-sasl-*.
func (o *replayOptions) kafkaOpts() ([]kgo.Opt, error) {
	opts := []kgo.Opt{kgo.SeedBrokers(strings.Split(o.kafkaBrokers, ",")...)}
	tc, err := source.TLSConfig(o.kafkaTLS, o.kafkaTLSCA)
	if err != nil {
		return nil, fmt.Errorf("--kafka-tls-ca: %w", err)
	}
	if tc != nil {
		opts = append(opts, kgo.DialTLSConfig(tc))
	}
	if o.saslUser == "" {
		return opts, nil
	}
	pass := os.Getenv(envKafkaPassword)
	if o.saslPassFile != "" {
		b, err := os.ReadFile(o.saslPassFile)
		if err != nil {
			return nil, fmt.Errorf("--kafka-sasl-password-file: %w", err)
		}
		pass = strings.TrimRight(string(b), "\r\n")
	}
	if pass == "" {
		return nil, fmt.Errorf("--kafka-sasl-user %s: no password (--kafka-sasl-password-file or $%s)", o.saslUser, envKafkaPassword)
	}
	return append(opts, source.SCRAM(o.saslUser, pass, o.saslMech)), nil
}

// connSource is a source that owns its NATS connection.
type connSource struct {
	replay.Source
	nc *nats.Conn
}

func (s *connSource) Close() error {
	err := s.Source.Close()
	s.nc.Close()
	return err
}
