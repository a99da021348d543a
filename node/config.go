package node

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode"

	"go.yaml.in/yaml/v3"

	"github.com/squallhq/squall/actors"
	"github.com/squallhq/squall/event"
	"github.com/squallhq/squall/window"
)

// Version is the node's version, shown in /debug/cluster.
const Version = "0.1.0"

// Config is a node's whole configuration. Flags, SQUALL_*
// environment variables and the YAML file all fill it, by the same names:
// flag --http-addr, environment SQUALL_HTTP_ADDR, YAML key http-addr.
type Config struct {
	// NodeID is the stable member id. Default: host name + ":" + HTTP port.
	NodeID string
	// HTTPAddr is the listen address of the HTTP API, debug and metrics.
	// Default 127.0.0.1:8080; port 0 picks a free port.
	HTTPAddr string
	// NATSURL is an external NATS server to use; empty starts an embedded
	// one on NATSAddr. Default empty.
	NATSURL string
	// NATSAddr is the listen address of the embedded NATS server. Default
	// 127.0.0.1:4222; port 0 picks a free port.
	NATSAddr string
	// NATSSubject is the subject events arrive on (queue group "squall").
	// Default "squall.events".
	NATSSubject string
	// NATSToken is the token the node's NATS connections present, and that
	// the embedded server then requires. Empty: the embedded server
	// requires AuthToken when that is set (an external server never gets
	// AuthToken). Default empty.
	NATSToken string
	// NATSTokenFile names a file holding NATSToken (read by Load). Default empty.
	NATSTokenFile string
	// NATSUser and NATSPassword authenticate the node's NATS connections;
	// the embedded server then requires them instead of a token. Default
	// empty.
	NATSUser, NATSPassword string
	// NATSPasswordFile names a file holding NATSPassword (read by Load).
	// Default empty.
	NATSPasswordFile string
	// NATSNKey names a file holding an nkey seed (SU...): the node's NATS
	// connections sign the server's challenge with it, and the embedded
	// server then accepts only its public key. Default empty.
	NATSNKey string
	// NATSCreds names a credentials file (user JWT and nkey seed, as
	// written by nsc) for an external server (NATSURL). Default empty.
	NATSCreds string
	// NATSTLSCA names a PEM CA file to trust for TLS to an external server
	// (NATSURL; default: the system roots); NATSTLSCert and NATSTLSKey,
	// both or neither, are the client certificate it presents. Default
	// empty: TLS only when the server requires it or the URL is tls://.
	NATSTLSCA, NATSTLSCert, NATSTLSKey string
	// ZK lists the ZooKeeper servers (host:port, comma separated); empty
	// runs the node standalone. Default empty.
	ZK string
	// Cluster names the cluster: its znodes live under /squall/<cluster>.
	// Default "squall".
	Cluster string
	// ZKSessionTimeout is the ZooKeeper session timeout. Default 6s.
	ZKSessionTimeout time.Duration
	// ZKDigest, "user:password", authenticates to ZooKeeper and keeps
	// Squall's znodes writable by that user only. Default empty.
	ZKDigest string
	// ZKDigestFile names a file holding ZKDigest (read by Load). Default empty.
	ZKDigestFile string
	// RemoteAddr is the listen address of node-to-node traffic (protoactor
	// remote). Default 127.0.0.1:0 (a free port).
	RemoteAddr string
	// RemoteTLSCert, RemoteTLSKey and RemoteTLSCA, all set, make
	// node-to-node traffic mutual TLS: each node presents the certificate
	// and accepts peers signed by the CA. Default empty: plaintext.
	RemoteTLSCert, RemoteTLSKey, RemoteTLSCA string
	// AwaitHandoff bounds how long a partition moved to this node waits for
	// its previous owner's state before starting empty. Default 15s.
	AwaitHandoff time.Duration
	// KafkaBrokers lists the Kafka bootstrap brokers (host:port, comma
	// separated); empty runs without Kafka. With Kafka, the topic's
	// partition count is the number of key partitions, each node consumes
	// the partitions it owns, and HTTP and NATS input is written to the
	// topic first. Default empty.
	KafkaBrokers string
	// KafkaTopic is the input topic. Default "squall-events".
	KafkaTopic string
	// KafkaGroup is the consumer group offsets are committed to. Default "squall".
	KafkaGroup string
	// KafkaDLQTopic receives bad records, with the reason in a header;
	// empty: bad records are skipped (and counted). Default empty.
	KafkaDLQTopic string
	// KafkaTLS connects to Kafka over TLS; KafkaTLSCA names a PEM CA file to
	// trust instead of the system roots. Defaults false, empty.
	KafkaTLS   bool
	KafkaTLSCA string
	// KafkaSASLUser, KafkaSASLPassword and KafkaSASLMechanism
	// (SCRAM-SHA-256 or SCRAM-SHA-512) authenticate to Kafka. Default none.
	KafkaSASLUser, KafkaSASLPassword, KafkaSASLMechanism string
	// KafkaSASLPasswordFile names a file holding KafkaSASLPassword (read by
	// Load). Default empty.
	KafkaSASLPasswordFile string
	// KafkaMaxRecordBytes: larger records are bad ("oversized"). Default 1 MiB.
	KafkaMaxRecordBytes int
	// KafkaTimeout bounds Kafka metadata requests at start. Default 15s.
	KafkaTimeout time.Duration
	// Rules names the alert rules file (YAML, docs/rules.md); SIGHUP reloads
	// it. Default empty: no rules.
	Rules string
	// AlertsSubject prefixes the NATS subject of alert transitions:
	// <prefix>.<key>. Default "squall.alerts".
	AlertsSubject string
	// AlertsKafkaTopic, when set (with --kafka-brokers), also receives
	// every alert transition, keyed by the event key. Default empty.
	AlertsKafkaTopic string
	// AlertsBuffer is how many alert transitions wait per output before
	// key actors (and so intake) block. Default 10,000.
	AlertsBuffer int
	// Partitions is the number of key partitions. Default 64; with Kafka,
	// the topic's partition count. Every node of a cluster must give the
	// same number.
	Partitions int
	// Retention is the window length over event time. Default 10m.
	Retention time.Duration
	// Resolution is the window's bucket width. Default 1s.
	Resolution time.Duration
	// Subwindows are the sub-window lengths aggregated besides the whole
	// window. Default 1m,5m.
	Subwindows []time.Duration
	// RecentEvents is how many raw events each key keeps. Default 32.
	RecentEvents int
	// IdleTTL passivates a key actor after this long without events.
	// Default 10m.
	IdleTTL time.Duration
	// MaxKeys is the number of live key actors beyond which new keys are
	// shed (429, counted). Default 2,000,000.
	MaxKeys int
	// MaxBodyBytes is the largest HTTP body accepted (413 beyond). Default 8 MiB.
	MaxBodyBytes int64
	// DataDir holds a standalone node's durable log: the embedded NATS
	// server runs JetStream with its file store there, HTTP and NATS
	// input is appended to it before it is answered, and the key actors
	// consume it, so a restart (kill -9 included) replays every window
	// back. Used only by a standalone node on its embedded NATS server
	// without Kafka (with Kafka, Kafka is the log; a cluster's log is
	// Kafka or, with JetStreamReplicas, JetStream on NATSURL; a cluster or
	// an external NATS server with neither keeps no log). Empty:
	// memory only. Default "squall-data" (relative to the working
	// directory).
	DataDir string
	// JetStreamReplicas, above 0, makes a JetStream stream with that many
	// replicas (1 to 5) on NATSURL the log of a cluster (ZK) without Kafka:
	// every node stores HTTP and NATS input in it before answering, and
	// each partition's owner consumes the partition's subject, its
	// progress committed to ZooKeeper and fenced there, as with Kafka.
	// Needs ZK and NATSURL (a NATS server or cluster with JetStream), and
	// no KafkaBrokers; every node must give the same Partitions. 0: no
	// JetStream log in a cluster. Default 0.
	JetStreamReplicas int
	// LogMaxAge is how long the JetStream log (DataDir or
	// JetStreamReplicas) keeps a batch: at least the retention plus the
	// event-time lag a replay must cover. 0: twice Retention. Default 0.
	LogMaxAge time.Duration
	// LogMaxBytes bounds the JetStream log's size on disk; once it is
	// reached new batches are refused (ingest answers 503). Size it to
	// hold LogMaxAge of input (see docs/operations.md). 0: no bound but
	// the disk. Default 0.
	LogMaxBytes int64
	// MaxFuture rejects events stamped more than this ahead of their
	// arrival: the node's clock for HTTP and NATS, the record's timestamp
	// for Kafka. 0: no limit (up to year 9999). Default 5m.
	MaxFuture time.Duration
	// AuthToken is the bearer token required on every HTTP endpoint but
	// /healthz and /readyz, and by the embedded NATS server unless NATSToken,
	// NATSUser or NATSNKey is set. Default empty: none.
	AuthToken string
	// AuthTokenFile names a file holding the bearer token (read by Load).
	// Default empty.
	//
	// Every secret option has such a -file form: --auth-token-file,
	// --nats-token-file, --nats-password-file, --kafka-sasl-password-file,
	// --zk-digest-file. Load reads the file, trims trailing white space,
	// and refuses an empty file or both forms set.
	AuthTokenFile string
	// Pprof serves /debug/pprof/* on the HTTP address, behind AuthToken
	// when one is set. Default false.
	Pprof bool
	// ShutdownTimeout bounds the graceful shutdown. Default 8s.
	ShutdownTimeout time.Duration
	// LogLevel is debug, info, warn or error. Default info.
	LogLevel string

	// AfterApply is actors.Config.AfterApply, for programs embedding a
	// node (the benchmark harness); it has no flag. Default nil.
	AfterApply func(evs []event.Event)
}

// DefaultConfig returns the defaults documented on Config.
func DefaultConfig() Config {
	shape := window.DefaultShape()
	return Config{
		HTTPAddr:            "127.0.0.1:8080",
		NATSAddr:            "127.0.0.1:4222",
		NATSSubject:         "squall.events",
		Cluster:             "squall",
		ZKSessionTimeout:    6 * time.Second,
		RemoteAddr:          "127.0.0.1:0",
		AwaitHandoff:        15 * time.Second,
		KafkaTopic:          "squall-events",
		KafkaGroup:          "squall",
		AlertsSubject:       "squall.alerts",
		AlertsBuffer:        10_000,
		KafkaTimeout:        15 * time.Second,
		KafkaMaxRecordBytes: 1 << 20,
		Partitions:          64,
		Retention:           shape.Retention,
		Resolution:          shape.Resolution,
		Subwindows:          shape.Subwindows,
		RecentEvents:        shape.Recent,
		IdleTTL:             10 * time.Minute,
		MaxKeys:             2_000_000,
		MaxBodyBytes:        8 << 20,
		DataDir:             "squall-data",
		MaxFuture:           event.DefaultMaxFuture,
		ShutdownTimeout:     8 * time.Second,
		LogLevel:            "info",
	}
}

// Shape returns the window shape the config describes.
func (c *Config) Shape() window.Shape {
	return window.Shape{Retention: c.Retention, Resolution: c.Resolution,
		Subwindows: c.Subwindows, Recent: c.RecentEvents}
}

// durable reports whether the node keeps a durable log of its own
// (JetStream in DataDir): standalone, on its embedded NATS server, without
// Kafka, with a data dir.
func (c *Config) durable() bool {
	return c.DataDir != "" && c.ZK == "" && c.KafkaBrokers == "" && c.NATSURL == ""
}

// Validate reports every invalid field, each named by its flag.
func (c *Config) Validate() error {
	var errs []error
	bad := func(flag, format string, a ...any) {
		errs = append(errs, fmt.Errorf("--%s: %s", flag, fmt.Sprintf(format, a...)))
	}
	checkAddr := func(flag, addr string) {
		if _, port, err := net.SplitHostPort(addr); err != nil {
			bad(flag, "%q is not host:port: %v", addr, err)
		} else if p, err := strconv.Atoi(port); err != nil || p < 0 || p > 65535 {
			bad(flag, "port %q must be 0..65535", port)
		}
	}
	checkAddr("http-addr", c.HTTPAddr)
	if c.NATSURL == "" {
		checkAddr("nats-addr", c.NATSAddr)
	}
	if c.NATSSubject == "" || strings.ContainsAny(c.NATSSubject, " \t*>") {
		bad("nats-subject", "%q must be a literal NATS subject", c.NATSSubject)
	}
	if c.ZK != "" {
		for _, s := range strings.Split(c.ZK, ",") {
			checkAddr("zk", strings.TrimSpace(s))
		}
		checkAddr("remote-addr", c.RemoteAddr)
		if c.Cluster == "" || strings.Contains(c.Cluster, "/") {
			bad("cluster", "%q must be non-empty without '/'", c.Cluster)
		}
		if strings.Contains(c.NodeID, "/") {
			bad("node-id", "%q must not contain '/'", c.NodeID)
		}
		if c.ZKSessionTimeout < time.Second || c.ZKSessionTimeout > time.Minute {
			bad("zk-session-timeout", "%s must be in 1s..1m", c.ZKSessionTimeout)
		}
		if u, _, ok := strings.Cut(c.ZKDigest, ":"); c.ZKDigest != "" && (!ok || u == "") {
			bad("zk-digest", "must be user:password")
		}
		if n := btoi(c.RemoteTLSCert != "") + btoi(c.RemoteTLSKey != "") + btoi(c.RemoteTLSCA != ""); n != 0 && n != 3 {
			bad("remote-tls-cert", "--remote-tls-cert, --remote-tls-key and --remote-tls-ca go together")
		}
	}
	if c.AlertsKafkaTopic != "" && c.KafkaBrokers == "" {
		bad("alerts-kafka-topic", "needs --kafka-brokers")
	}
	if c.AlertsKafkaTopic != "" && c.AlertsKafkaTopic == c.KafkaTopic {
		bad("alerts-kafka-topic", "must differ from --kafka-topic")
	}
	if c.AlertsSubject == "" || strings.ContainsAny(c.AlertsSubject, " \t\r\n*>") || strings.HasPrefix(c.AlertsSubject, ".") || strings.HasSuffix(c.AlertsSubject, ".") {
		bad("alerts-subject", "%q is not a NATS subject prefix", c.AlertsSubject)
	}
	if c.AlertsBuffer < 1 {
		bad("alerts-buffer", "%d must be positive", c.AlertsBuffer)
	}
	if c.KafkaBrokers != "" {
		for _, s := range strings.Split(c.KafkaBrokers, ",") {
			checkAddr("kafka-brokers", strings.TrimSpace(s))
		}
		if c.KafkaTopic == "" || c.KafkaGroup == "" {
			bad("kafka-topic", "--kafka-topic and --kafka-group must not be empty")
		}
		if c.KafkaDLQTopic == c.KafkaTopic {
			bad("kafka-dlq-topic", "must differ from --kafka-topic")
		}
		switch c.KafkaSASLMechanism {
		case "", "SCRAM-SHA-256", "SCRAM-SHA-512":
		default:
			bad("kafka-sasl-mechanism", "%q must be SCRAM-SHA-256 or SCRAM-SHA-512", c.KafkaSASLMechanism)
		}
		if (c.KafkaSASLUser == "") != (c.KafkaSASLMechanism == "") {
			bad("kafka-sasl-user", "--kafka-sasl-user and --kafka-sasl-mechanism go together")
		}
		if c.KafkaMaxRecordBytes < 64 {
			bad("kafka-max-record-bytes", "%d must be at least 64", c.KafkaMaxRecordBytes)
		}
		if c.KafkaTimeout <= 0 {
			bad("kafka-timeout", "%s must be positive", c.KafkaTimeout)
		}
	}
	if c.AwaitHandoff <= 0 {
		bad("await-handoff", "%s must be positive", c.AwaitHandoff)
	}
	if c.Partitions < 1 || c.Partitions > 1<<16 {
		bad("partitions", "%d must be in 1..65536", c.Partitions)
	}
	shape := c.Shape()
	if err := shape.Validate(); err != nil {
		bad("retention/--resolution/--subwindows/--recent-events", "%v", err)
	}
	if c.IdleTTL <= 0 {
		bad("idle-ttl", "%s must be positive", c.IdleTTL)
	}
	if c.MaxKeys < 1 {
		bad("max-keys", "%d must be positive", c.MaxKeys)
	}
	if c.MaxBodyBytes < 1024 {
		bad("max-body-bytes", "%d must be at least 1024", c.MaxBodyBytes)
	}
	if c.JetStreamReplicas != 0 {
		if c.JetStreamReplicas < 1 || c.JetStreamReplicas > 5 {
			bad("jetstream-replicas", "%d must be in 1..5 (0: no JetStream log)", c.JetStreamReplicas)
		}
		if c.ZK == "" {
			bad("jetstream-replicas", "needs --zk: it makes JetStream a cluster's log (a standalone node's log is its --data-dir)")
		}
		if c.NATSURL == "" {
			bad("jetstream-replicas", "needs --nats-url: a NATS server or cluster with JetStream, shared by every node")
		}
		if c.KafkaBrokers != "" {
			bad("jetstream-replicas", "excludes --kafka-brokers: a cluster's log is Kafka or JetStream, not both")
		}
	}
	if c.LogMaxAge < 0 {
		bad("log-max-age", "%s must not be negative", c.LogMaxAge)
	} else if c.LogMaxAge > 0 && c.LogMaxAge < c.Retention {
		bad("log-max-age", "%s is shorter than --retention %s: a replay could not rebuild the windows", c.LogMaxAge, c.Retention)
	}
	if c.LogMaxBytes < 0 {
		bad("log-max-bytes", "%d must not be negative", c.LogMaxBytes)
	}
	if c.MaxFuture < 0 {
		bad("max-future", "%s must not be negative (0: no limit)", c.MaxFuture)
	}
	for _, s := range c.secrets() {
		if *s.value != "" && *s.file != "" {
			errs = append(errs, s.bothErr())
		}
	}
	c.validateNATSAuth(bad)
	if c.ShutdownTimeout <= 0 {
		bad("shutdown-timeout", "%s must be positive", c.ShutdownTimeout)
	}
	if _, err := parseLevel(c.LogLevel); err != nil {
		bad("log-level", "%v", err)
	}
	return errors.Join(errs...)
}

// engineConfig is the actors.Config the node runs.
func (c *Config) engineConfig() actors.Config {
	ec := actors.DefaultConfig()
	ec.Node = c.NodeID
	ec.Partitions = c.Partitions
	ec.Shape = c.Shape()
	ec.IdleTTL = c.IdleTTL
	ec.MaxKeys = c.MaxKeys
	ec.Clustered = c.ZK != ""
	ec.AwaitHandoff = c.AwaitHandoff
	ec.AfterApply = c.AfterApply
	return ec
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

func parseLevel(s string) (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return 0, fmt.Errorf("%q is not debug, info, warn or error", s)
	}
	return l, nil
}

// Load fills a Config from, in rising precedence, defaults, the YAML file
// named by --config (or SQUALL_CONFIG), SQUALL_* environment variables and
// args, then validates it. getenv is os.Getenv outside tests.
func Load(args []string, getenv func(string) string, usage io.Writer) (Config, error) {
	cfg := DefaultConfig()
	fs := flag.NewFlagSet("squall-node", flag.ContinueOnError)
	fs.SetOutput(usage)
	configFile := bind(fs, &cfg)
	if err := fs.Parse(args); err != nil {
		return Config{}, err
	}
	if fs.NArg() > 0 {
		return Config{}, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	// Flags given on the command line win; remember them, then rebuild from
	// the defaults upwards through the same flag.Value parsers.
	given := map[string]string{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = f.Value.String() })
	cfg = DefaultConfig()
	fs = flag.NewFlagSet("squall-node", flag.ContinueOnError)
	configFile = bind(fs, &cfg)
	path := given["config"]
	if path == "" {
		path = getenv("SQUALL_CONFIG")
	}
	if path != "" {
		if err := loadYAML(fs, path); err != nil {
			return Config{}, err
		}
	}
	var errs []error
	fs.VisitAll(func(f *flag.Flag) {
		env := "SQUALL_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		if v := getenv(env); v != "" && f.Name != "config" {
			if err := fs.Set(f.Name, v); err != nil {
				errs = append(errs, fmt.Errorf("%s=%q: %w", env, v, err))
			}
		}
	})
	names := make([]string, 0, len(given))
	for name := range given {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		if err := fs.Set(name, given[name]); err != nil {
			errs = append(errs, fmt.Errorf("--%s: %w", name, err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return Config{}, err
	}
	*configFile = path
	if err := cfg.readSecretFiles(); err != nil {
		return Config{}, err
	}
	return cfg, cfg.Validate()
}

// secret is an option holding a secret, with its -file form.
type secret struct {
	flag        string // the value's flag; the file's is flag + "-file"
	value, file *string
}

// secrets lists every secret option of c.
func (c *Config) secrets() []secret {
	return []secret{
		{"auth-token", &c.AuthToken, &c.AuthTokenFile},
		{"nats-token", &c.NATSToken, &c.NATSTokenFile},
		{"nats-password", &c.NATSPassword, &c.NATSPasswordFile},
		{"kafka-sasl-password", &c.KafkaSASLPassword, &c.KafkaSASLPasswordFile},
		{"zk-digest", &c.ZKDigest, &c.ZKDigestFile},
	}
}

func (s secret) bothErr() error {
	return fmt.Errorf("--%s-file: give either --%s or --%s-file, not both", s.flag, s.flag, s.flag)
}

// readSecretFiles replaces each secret's -file form by the file's
// content, trailing white space trimmed.
func (c *Config) readSecretFiles() error {
	var errs []error
	for _, s := range c.secrets() {
		if *s.file == "" {
			continue
		}
		if *s.value != "" {
			errs = append(errs, s.bothErr())
			continue
		}
		b, err := os.ReadFile(*s.file)
		if err != nil {
			errs = append(errs, fmt.Errorf("--%s-file: %w", s.flag, err))
			continue
		}
		v := strings.TrimRightFunc(string(b), unicode.IsSpace)
		if v == "" {
			errs = append(errs, fmt.Errorf("--%s-file %s: empty", s.flag, *s.file))
			continue
		}
		*s.value, *s.file = v, ""
	}
	return errors.Join(errs...)
}

// secretVar declares a secret's flag and its -file form.
func secretVar(fs *flag.FlagSet, s secret, usage string) {
	fs.StringVar(s.value, s.flag, *s.value, usage+" (or --"+s.flag+"-file)")
	fs.StringVar(s.file, s.flag+"-file", *s.file, "file holding --"+s.flag+" (trailing white space trimmed)")
}

func loadYAML(fs *flag.FlagSet, path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("--config: %w", err)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(b, &doc); err != nil {
		return fmt.Errorf("--config %s: %w", path, err)
	}
	if len(doc.Content) == 0 {
		return nil
	}
	root := doc.Content[0]
	if root.Kind != yaml.MappingNode {
		return fmt.Errorf("--config %s:%d: top level must be a mapping of option: value", path, root.Line)
	}
	for i := 0; i+1 < len(root.Content); i += 2 {
		k, v := root.Content[i], root.Content[i+1]
		if fs.Lookup(k.Value) == nil || k.Value == "config" {
			return fmt.Errorf("--config %s:%d: unknown option %q", path, k.Line, k.Value)
		}
		var val string
		switch v.Kind {
		case yaml.ScalarNode:
			val = v.Value
		case yaml.SequenceNode:
			parts := make([]string, len(v.Content))
			for j, item := range v.Content {
				if item.Kind != yaml.ScalarNode {
					return fmt.Errorf("--config %s:%d: %s: list items must be scalars", path, item.Line, k.Value)
				}
				parts[j] = item.Value
			}
			val = strings.Join(parts, ",")
		default:
			return fmt.Errorf("--config %s:%d: %s: must be a scalar or a list", path, v.Line, k.Value)
		}
		if err := fs.Set(k.Value, val); err != nil {
			return fmt.Errorf("--config %s:%d: %s: %w", path, v.Line, k.Value, err)
		}
	}
	return nil
}

// bind declares every flag on fs, pointing at cfg's fields, and returns
// where --config lands.
func bind(fs *flag.FlagSet, c *Config) *string {
	sec := map[string]secret{}
	for _, s := range c.secrets() {
		sec[s.flag] = s
	}
	configFile := new(string)
	fs.StringVar(configFile, "config", "", "YAML file of options (same names as the flags)")
	fs.StringVar(&c.NodeID, "node-id", c.NodeID, "stable member id (default host name + HTTP port)")
	fs.StringVar(&c.HTTPAddr, "http-addr", c.HTTPAddr, "HTTP API, debug and metrics listen address (port 0: any free port)")
	fs.StringVar(&c.NATSURL, "nats-url", c.NATSURL, "external NATS server URL (empty: start an embedded server)")
	fs.StringVar(&c.NATSAddr, "nats-addr", c.NATSAddr, "embedded NATS server listen address (port 0: any free port)")
	fs.StringVar(&c.NATSSubject, "nats-subject", c.NATSSubject, "NATS subject events arrive on (queue group squall)")
	bindNATSAuth(fs, c, sec)
	fs.StringVar(&c.ZK, "zk", c.ZK, "ZooKeeper servers host:port, comma separated (empty: standalone)")
	fs.StringVar(&c.Cluster, "cluster", c.Cluster, "cluster name (ZooKeeper root /squall/<cluster>)")
	fs.DurationVar(&c.ZKSessionTimeout, "zk-session-timeout", c.ZKSessionTimeout, "ZooKeeper session timeout")
	secretVar(fs, sec["zk-digest"], "ZooKeeper digest credentials user:password (znodes then writable by that user only)")
	fs.StringVar(&c.RemoteAddr, "remote-addr", c.RemoteAddr, "node-to-node listen address (protoactor remote; port 0: any free port)")
	fs.StringVar(&c.RemoteTLSCert, "remote-tls-cert", c.RemoteTLSCert, "PEM certificate for node-to-node mutual TLS")
	fs.StringVar(&c.RemoteTLSKey, "remote-tls-key", c.RemoteTLSKey, "PEM key for node-to-node mutual TLS")
	fs.StringVar(&c.RemoteTLSCA, "remote-tls-ca", c.RemoteTLSCA, "PEM CA that signs the peers' certificates")
	fs.DurationVar(&c.AwaitHandoff, "await-handoff", c.AwaitHandoff, "how long a moved partition waits for its previous owner's state")
	fs.StringVar(&c.KafkaBrokers, "kafka-brokers", c.KafkaBrokers, "Kafka bootstrap brokers host:port, comma separated (empty: no Kafka)")
	fs.StringVar(&c.KafkaTopic, "kafka-topic", c.KafkaTopic, "Kafka input topic")
	fs.StringVar(&c.KafkaGroup, "kafka-group", c.KafkaGroup, "Kafka consumer group for committed offsets")
	fs.StringVar(&c.KafkaDLQTopic, "kafka-dlq-topic", c.KafkaDLQTopic, "topic for bad records (empty: skip them)")
	fs.BoolVar(&c.KafkaTLS, "kafka-tls", c.KafkaTLS, "connect to Kafka over TLS")
	fs.StringVar(&c.KafkaTLSCA, "kafka-tls-ca", c.KafkaTLSCA, "PEM CA file for Kafka TLS (default: system roots)")
	fs.StringVar(&c.KafkaSASLUser, "kafka-sasl-user", c.KafkaSASLUser, "Kafka SASL/SCRAM user")
	secretVar(fs, sec["kafka-sasl-password"], "Kafka SASL/SCRAM password")
	fs.StringVar(&c.KafkaSASLMechanism, "kafka-sasl-mechanism", c.KafkaSASLMechanism, "SCRAM-SHA-256 or SCRAM-SHA-512")
	fs.IntVar(&c.KafkaMaxRecordBytes, "kafka-max-record-bytes", c.KafkaMaxRecordBytes, "larger Kafka records are bad (DLQ or skipped)")
	fs.DurationVar(&c.KafkaTimeout, "kafka-timeout", c.KafkaTimeout, "bound on Kafka metadata requests at start")
	fs.StringVar(&c.Rules, "rules", c.Rules, "alert rules file (YAML); SIGHUP reloads it")
	fs.StringVar(&c.AlertsSubject, "alerts-subject", c.AlertsSubject, "NATS subject prefix of alert transitions (<prefix>.<key>)")
	fs.StringVar(&c.AlertsKafkaTopic, "alerts-kafka-topic", c.AlertsKafkaTopic, "Kafka topic that also receives alert transitions (needs --kafka-brokers)")
	fs.IntVar(&c.AlertsBuffer, "alerts-buffer", c.AlertsBuffer, "alert transitions held per output before intake blocks")
	fs.IntVar(&c.Partitions, "partitions", c.Partitions, "number of key partitions (with Kafka: the topic's count)")
	fs.DurationVar(&c.Retention, "retention", c.Retention, "window length over event time")
	fs.DurationVar(&c.Resolution, "resolution", c.Resolution, "window bucket width")
	fs.Var((*durations)(&c.Subwindows), "subwindows", "sub-window lengths, comma separated")
	fs.IntVar(&c.RecentEvents, "recent-events", c.RecentEvents, "raw events kept per key for inspection")
	fs.DurationVar(&c.IdleTTL, "idle-ttl", c.IdleTTL, "passivate a key actor after this long without events")
	fs.IntVar(&c.MaxKeys, "max-keys", c.MaxKeys, "live key actors per node; beyond it new keys are shed")
	fs.Int64Var(&c.MaxBodyBytes, "max-body-bytes", c.MaxBodyBytes, "largest HTTP request body (413 beyond)")
	fs.StringVar(&c.DataDir, "data-dir", c.DataDir, "durable log of a standalone node (embedded JetStream); empty: memory only")
	fs.IntVar(&c.JetStreamReplicas, "jetstream-replicas", c.JetStreamReplicas, "with --zk and --nats-url: a JetStream stream of this many replicas (1..5) is the cluster's log (0: none)")
	fs.DurationVar(&c.LogMaxAge, "log-max-age", c.LogMaxAge, "how long the JetStream log keeps a batch (0: twice --retention)")
	fs.Int64Var(&c.LogMaxBytes, "log-max-bytes", c.LogMaxBytes, "bound on the JetStream log's size on disk; past it ingest answers 503 (0: none but the disk)")
	fs.DurationVar(&c.MaxFuture, "max-future", c.MaxFuture, "reject events stamped further ahead of their arrival (0: no limit)")
	secretVar(fs, sec["auth-token"], "bearer token required by every HTTP endpoint but /healthz and /readyz, and by the embedded NATS server")
	fs.BoolVar(&c.Pprof, "pprof", c.Pprof, "serve /debug/pprof/* (behind the token when one is set)")
	fs.DurationVar(&c.ShutdownTimeout, "shutdown-timeout", c.ShutdownTimeout, "bound on graceful shutdown")
	fs.StringVar(&c.LogLevel, "log-level", c.LogLevel, "debug, info, warn or error")
	return configFile
}

// durations is a flag.Value of comma-separated durations.
type durations []time.Duration

func (d *durations) String() string {
	if d == nil {
		return ""
	}
	parts := make([]string, len(*d))
	for i, v := range *d {
		parts[i] = actors.FormatDuration(v)
	}
	return strings.Join(parts, ",")
}

func (d *durations) Set(s string) error {
	var out []time.Duration
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p == "" {
			continue
		}
		v, err := time.ParseDuration(p)
		if err != nil {
			return err
		}
		out = append(out, v)
	}
	*d = out
	return nil
}
