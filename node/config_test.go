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
	}
	for _, c := range cases {
		_, err := Load(c.args, env(c.env), io.Discard)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Load(%v, %v) = %v, want an error containing %q", c.args, c.env, err, c.want)
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

func TestAuthTokenFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "token")
	os.WriteFile(p, []byte("tok-123\n"), 0o600)
	cfg, err := Load([]string{"--auth-token-file", p}, env(nil), io.Discard)
	if err != nil || cfg.AuthToken != "tok-123" {
		t.Fatalf("token %q err %v", cfg.AuthToken, err)
	}
}
