package node

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestLoadDefaults(t *testing.T) {
	cfg, err := Load(nil, env(nil), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	d := DefaultConfig()
	if cfg.HTTPAddr != "127.0.0.1:8080" || cfg.NATSAddr != "127.0.0.1:4222" || cfg.Partitions != 64 ||
		cfg.Retention != 10*time.Minute || cfg.Resolution != time.Second || cfg.IdleTTL != 10*time.Minute ||
		cfg.MaxKeys != 2_000_000 || len(cfg.Subwindows) != 2 || cfg.Subwindows[1] != 5*time.Minute ||
		cfg.MaxBodyBytes != d.MaxBodyBytes {
		t.Fatalf("defaults = %+v", cfg)
	}
}

// Precedence, rising: defaults, YAML file, environment, flags.
func TestLoadPrecedence(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "squall.yaml")
	os.WriteFile(file, []byte("http-addr: 127.0.0.1:9001\npartitions: 12\nmax-keys: 5\nsubwindows: [30s, 2m]\nidle-ttl: 1h\n"), 0o600)
	cfg, err := Load([]string{"--config", file, "--max-keys", "7"}, env(map[string]string{
		"SQUALL_PARTITIONS": "24",
		"SQUALL_MAX_KEYS":   "6",
	}), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.HTTPAddr != "127.0.0.1:9001" { // from the file
		t.Errorf("http-addr %q", cfg.HTTPAddr)
	}
	if cfg.Partitions != 24 { // env beats file
		t.Errorf("partitions %d", cfg.Partitions)
	}
	if cfg.MaxKeys != 7 { // flag beats env and file
		t.Errorf("max-keys %d", cfg.MaxKeys)
	}
	if len(cfg.Subwindows) != 2 || cfg.Subwindows[0] != 30*time.Second || cfg.IdleTTL != time.Hour {
		t.Errorf("subwindows %v idle %s", cfg.Subwindows, cfg.IdleTTL)
	}
	// --jetstream-replicas, like every option, from the file too.
	os.WriteFile(file, []byte("zk: 127.0.0.1:2181\nnats-url: nats://127.0.0.1:4222\njetstream-replicas: 3\n"), 0o600)
	if cfg, err = Load([]string{"--config", file}, env(nil), io.Discard); err != nil || cfg.JetStreamReplicas != 3 {
		t.Fatalf("jetstream-replicas from YAML: %d %v", cfg.JetStreamReplicas, err)
	}
	os.WriteFile(file, []byte("http-addr: 127.0.0.1:9001\npartitions: 12\nmax-keys: 5\nsubwindows: [30s, 2m]\nidle-ttl: 1h\n"), 0o600)
	// SQUALL_CONFIG names the file too.
	cfg, err = Load(nil, env(map[string]string{"SQUALL_CONFIG": file}), io.Discard)
	if err != nil || cfg.Partitions != 12 {
		t.Fatalf("SQUALL_CONFIG: %+v %v", cfg.Partitions, err)
	}
}

func TestLoadErrors(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		os.WriteFile(p, []byte(body), 0o600)
		return p
	}
	cases := []struct {
		args []string
		env  map[string]string
		want string
	}{
		{[]string{"--partitions", "0"}, nil, "--partitions"},
		{[]string{"--http-addr", "nohost"}, nil, "--http-addr"},
		{[]string{"--resolution", "7s"}, nil, "resolution"},
		{[]string{"--subwindows", "11m"}, nil, "subwindows"},
		{[]string{"--idle-ttl", "-1s"}, nil, "--idle-ttl"},
		{[]string{"--max-keys", "x"}, nil, "max-keys"},
		{[]string{"--log-level", "loud"}, nil, "--log-level"},
		{nil, map[string]string{"SQUALL_PARTITIONS": "many"}, "SQUALL_PARTITIONS"},
		{[]string{"--config", write("bad.yaml", "http-addr: 127.0.0.1:1\nno-such-option: 3\n")}, nil, "bad.yaml:2: unknown option"},
		{[]string{"--config", write("bad2.yaml", "partitions: lots\n")}, nil, "bad2.yaml:1: partitions"},
		{[]string{"--config", filepath.Join(dir, "missing.yaml")}, nil, "--config"},
		{[]string{"--auth-token-file", filepath.Join(dir, "missing-token")}, nil, "--auth-token-file"},
		{[]string{"stray"}, nil, "unexpected argument"},
		{[]string{"--jetstream-replicas", "3", "--nats-url", "nats://127.0.0.1:4222"}, nil, "--jetstream-replicas: needs --zk"},
		{[]string{"--jetstream-replicas", "3", "--zk", "127.0.0.1:2181"}, nil, "--jetstream-replicas: needs --nats-url"},
		{[]string{"--jetstream-replicas", "3", "--zk", "127.0.0.1:2181", "--nats-url", "nats://127.0.0.1:4222",
			"--kafka-brokers", "127.0.0.1:9092"}, nil, "--jetstream-replicas: excludes --kafka-brokers"},
		{[]string{"--jetstream-replicas", "6", "--zk", "127.0.0.1:2181", "--nats-url", "nats://127.0.0.1:4222"}, nil, "--jetstream-replicas: 6 must be in 1..5"},
		{nil, map[string]string{"SQUALL_JETSTREAM_REPLICAS": "-1", "SQUALL_ZK": "127.0.0.1:2181", "SQUALL_NATS_URL": "nats://127.0.0.1:4222"}, "--jetstream-replicas: -1 must be in 1..5"},
	}
	for _, c := range cases {
		_, err := Load(c.args, env(c.env), io.Discard)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Load(%v, %v) = %v, want an error containing %q", c.args, c.env, err, c.want)
		}
	}
}

// Every secret has a -file form: read, trailing white space trimmed;
// giving both forms is an error naming both flags, and so is an empty file.
func TestSecretFiles(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	base := func(extra ...string) []string {
		return append([]string{"--kafka-brokers", "127.0.0.1:9092", "--kafka-sasl-user", "u",
			"--kafka-sasl-mechanism", "SCRAM-SHA-256", "--zk", "127.0.0.1:2181"}, extra...)
	}
	for _, c := range []struct {
		flag string
		get  func(*Config) string
	}{
		{"auth-token", func(c *Config) string { return c.AuthToken }},
		{"nats-token", func(c *Config) string { return c.NATSToken }},
		{"nats-password", func(c *Config) string { return c.NATSPassword }},
		{"kafka-sasl-password", func(c *Config) string { return c.KafkaSASLPassword }},
		{"zk-digest", func(c *Config) string { return c.ZKDigest }},
	} {
		args := base("--nats-user", "squall", "--nats-password", "pw")
		switch c.flag {
		case "nats-token": // not with --nats-user
			args = base()
		case "nats-password":
			args = base("--nats-user", "squall")
		}
		file := write(c.flag, " us er:s3 cret \t\n\n")
		cfg, err := Load(append(args, "--"+c.flag+"-file", file), env(nil), io.Discard)
		if err != nil || c.get(&cfg) != " us er:s3 cret" {
			t.Errorf("--%s-file: %q, %v", c.flag, c.get(&cfg), err)
		}
		// Also through the environment.
		cfg, err = Load(args, env(map[string]string{"SQUALL_" + strings.ToUpper(strings.ReplaceAll(c.flag, "-", "_")) + "_FILE": file}), io.Discard)
		if err != nil || c.get(&cfg) != " us er:s3 cret" {
			t.Errorf("SQUALL_..._FILE for --%s: %q, %v", c.flag, c.get(&cfg), err)
		}
		_, err = Load(append(args, "--"+c.flag, "a:b", "--"+c.flag+"-file", file), env(nil), io.Discard)
		if err == nil || !strings.Contains(err.Error(), "--"+c.flag+" ") || !strings.Contains(err.Error(), "--"+c.flag+"-file") {
			t.Errorf("both forms of --%s: %v", c.flag, err)
		}
		_, err = Load(append(args, "--"+c.flag+"-file", write("empty", " \n")), env(nil), io.Discard)
		if err == nil || !strings.Contains(err.Error(), "--"+c.flag+"-file") || !strings.Contains(err.Error(), "empty") {
			t.Errorf("empty --%s-file: %v", c.flag, err)
		}
	}
}

// NATS authentication options that cannot go together are refused.
func TestNATSAuthValidation(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--nats-token", "t", "--nats-user", "u", "--nats-password", "p"}, "at most one of"},
		{[]string{"--nats-url", "nats://h:4222", "--nats-token", "t", "--nats-creds", "c"}, "at most one of"},
		{[]string{"--nats-user", "u"}, "--nats-user and --nats-password"},
		{[]string{"--nats-password", "p"}, "--nats-user and --nats-password"},
		{[]string{"--nats-url", "nats://h:4222", "--nats-tls-cert", "c"}, "--nats-tls-cert and --nats-tls-key"},
		{[]string{"--nats-creds", "c"}, "--nats-creds: needs --nats-url"},
		{[]string{"--nats-tls-ca", "c"}, "--nats-tls-ca: needs --nats-url"},
	} {
		_, err := Load(c.args, env(nil), io.Discard)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Load(%v) = %v, want %q", c.args, err, c.want)
		}
	}
}

func TestPprofOption(t *testing.T) {
	if cfg, err := Load(nil, env(nil), io.Discard); err != nil || cfg.Pprof {
		t.Fatalf("default pprof %v err %v", cfg.Pprof, err)
	}
	for _, c := range []struct {
		args []string
		env  map[string]string
	}{
		{[]string{"--pprof"}, nil},
		{nil, map[string]string{"SQUALL_PPROF": "true"}},
	} {
		if cfg, err := Load(c.args, env(c.env), io.Discard); err != nil || !cfg.Pprof {
			t.Errorf("Load(%v, %v): pprof %v err %v", c.args, c.env, cfg.Pprof, err)
		}
	}
}
