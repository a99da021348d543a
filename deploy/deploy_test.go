package deploy

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
	"go.yaml.in/yaml/v3"

	"github.com/squallhq/squall/client"
	"github.com/squallhq/squall/event"
	"github.com/squallhq/squall/internal/deploycheck"
	"github.com/squallhq/squall/internal/testproc"
	"github.com/squallhq/squall/node"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// run runs a command and fails t with its output when it fails.
func run(t *testing.T, stdin []byte, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Stdin = bytes.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", filepath.Base(name), strings.Join(args, " "), err, out)
	}
	return string(out)
}

func read(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// The alerts the rules file must have: one per failure of Squall's own
// that an operator has to hear about.
var wantAlerts = []string{"SquallNodeDown", "SquallNodeNotReady", "SquallKafkaLagGrowing", "SquallReplaySlow",
	"SquallEventsShed", "SquallAlertOutputStuck", "SquallZooKeeperSessionLost", "SquallZooKeeperSessionsLost"}

// promtool accepts the rules, their unit test passes and the example
// Prometheus configuration is valid; every alert has a for:, a severity
// and both annotations, and its unit test makes it fire and not fire.
func TestPrometheusRules(t *testing.T) {
	promtool := testproc.NeedCommand(t, "promtool", "prometheus")
	run(t, nil, promtool, "check", "rules", "prometheus/squall-rules.yml")
	run(t, nil, promtool, "test", "rules", "prometheus/squall-rules_test.yml")
	run(t, nil, promtool, "check", "config", "prometheus/prometheus.example.yml")

	var rules struct {
		Groups []struct {
			Rules []struct {
				Alert       string            `yaml:"alert"`
				For         string            `yaml:"for"`
				Labels      map[string]string `yaml:"labels"`
				Annotations map[string]string `yaml:"annotations"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	if err := yaml.Unmarshal(read(t, "prometheus/squall-rules.yml"), &rules); err != nil {
		t.Fatal(err)
	}
	var tests struct {
		Tests []struct {
			AlertRuleTest []struct {
				Alertname string `yaml:"alertname"`
				ExpAlerts []any  `yaml:"exp_alerts"`
			} `yaml:"alert_rule_test"`
		} `yaml:"tests"`
	}
	if err := yaml.Unmarshal(read(t, "prometheus/squall-rules_test.yml"), &tests); err != nil {
		t.Fatal(err)
	}
	fires, silent := map[string]bool{}, map[string]bool{}
	for _, tc := range tests.Tests {
		for _, a := range tc.AlertRuleTest {
			if len(a.ExpAlerts) > 0 {
				fires[a.Alertname] = true
			} else {
				silent[a.Alertname] = true
			}
		}
	}
	var got []string
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			if r.Alert == "" {
				continue
			}
			got = append(got, r.Alert)
			if d, err := time.ParseDuration(r.For); err != nil || d <= 0 {
				t.Errorf("%s: for: %q, want a positive duration", r.Alert, r.For)
			}
			if s := r.Labels["severity"]; s != "critical" && s != "warning" {
				t.Errorf("%s: severity %q, want critical or warning", r.Alert, s)
			}
			if r.Annotations["summary"] == "" || r.Annotations["description"] == "" {
				t.Errorf("%s: summary and description annotations wanted, got %v", r.Alert, r.Annotations)
			}
			if !fires[r.Alert] || !silent[r.Alert] {
				t.Errorf("%s: squall-rules_test.yml must make it fire (%v) and not fire (%v)", r.Alert, fires[r.Alert], silent[r.Alert])
			}
		}
	}
	if !slices.Equal(got, wantAlerts) {
		t.Fatalf("alerts %q, want %q", got, wantAlerts)
	}
}

// The dashboard has a Prometheus datasource variable that every panel
// uses and a node variable, its expressions are valid PromQL, and its
// panels cover what an operator watches.
// That each metric it names exists is checked against a running cluster
// by cmd/squallctl's TestThreeNodesKafka; here, that each is one the
// code declares.
func TestDashboard(t *testing.T) {
	b := read(t, "grafana/squall.json")
	var dash struct {
		UID        string `json:"uid"`
		Templating struct {
			List []struct {
				Name  string `json:"name"`
				Type  string `json:"type"`
				Query any    `json:"query"`
			} `json:"list"`
		} `json:"templating"`
		Panels []panel `json:"panels"`
	}
	if err := json.Unmarshal(b, &dash); err != nil {
		t.Fatal(err)
	}
	vars := map[string]string{}
	for _, v := range dash.Templating.List {
		q, _ := json.Marshal(v.Query)
		vars[v.Name] = v.Type + " " + string(q)
	}
	if vars["datasource"] != `datasource "prometheus"` || !strings.Contains(vars["node"], "label_values(") || !strings.Contains(vars["node"], ", instance)") {
		t.Fatalf("variables %q: want a Prometheus datasource variable and a node variable over instance", vars)
	}
	ids := map[int]bool{}
	var walk func(ps []panel)
	walk = func(ps []panel) {
		for _, p := range ps {
			if ids[p.ID] {
				t.Errorf("panel id %d twice", p.ID)
			}
			ids[p.ID] = true
			if p.GridPos.X+p.GridPos.W > 24 {
				t.Errorf("panel %q: past the 24 columns", p.Title)
			}
			walk(p.Panels)
			if p.Type == "row" {
				continue
			}
			if p.Datasource.UID != "${datasource}" || len(p.Targets) == 0 || p.Description == "" {
				t.Errorf("panel %q: datasource %q, %d targets, description %q", p.Title, p.Datasource.UID, len(p.Targets), p.Description)
			}
			for _, tg := range p.Targets {
				if tg.Datasource.UID != "${datasource}" || !strings.Contains(tg.Expr, `instance=~"$node"`) {
					t.Errorf("panel %q: target %q on %q does not select $node", p.Title, tg.Expr, tg.Datasource.UID)
				}
			}
		}
	}
	walk(dash.Panels)

	// promtool parses PromQL in rules only: each expression of the
	// dashboard, its range variables given a value, becomes a recording
	// rule of a file promtool checks.
	exprs, err := deploycheck.DashboardExprs(b)
	if err != nil {
		t.Fatal(err)
	}
	var rules strings.Builder
	rules.WriteString("groups:\n  - name: dashboard\n    rules:\n")
	ranges := strings.NewReplacer("$__rate_interval", "5m", "$__range", "1h", "$__interval", "1m")
	for i, x := range exprs {
		q, err := json.Marshal(ranges.Replace(x)) // a JSON string is a YAML string
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&rules, "      - record: dashboard:expr_%d\n        expr: %s\n", i, q)
	}
	f := filepath.Join(t.TempDir(), "dashboard-rules.yml")
	if err := os.WriteFile(f, []byte(rules.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	run(t, nil, testproc.NeedCommand(t, "promtool", "prometheus"), "check", "rules", f)

	names, _, err := deploycheck.References(b, read(t, "prometheus/squall-rules.yml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"squall_events_in_total", "squall_apply_latency_seconds_bucket", "squall_queue_events",
		"squall_kafka_buffered_records", "squall_kafka_lag", "squall_partitions_owned", "squall_partition_handoffs_total",
		"squall_partition_replays_total", "squall_routed_bytes_total", "squall_alert_output_lag_seconds",
		"squall_zk_session_connected", "squall_ready", "go_memstats_heap_inuse_bytes", "go_gc_duration_seconds_count"} {
		if !slices.Contains(names, want) {
			t.Errorf("the dashboard and rules do not use %s", want)
		}
	}
	declared := declaredMetrics(t)
	for _, n := range names {
		if strings.HasPrefix(n, "squall_") && !declared[strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(n, "_bucket"), "_sum"), "_count")] {
			t.Errorf("%s: no metric of that name in the code", n)
		}
	}
	t.Logf("%d metric names referenced: %s", len(names), strings.Join(names, " "))
}

type panel struct {
	ID          int    `json:"id"`
	Type        string `json:"type"`
	Title       string `json:"title"`
	Description string `json:"description"`
	Datasource  struct {
		UID string `json:"uid"`
	} `json:"datasource"`
	GridPos struct {
		X int `json:"x"`
		W int `json:"w"`
	} `json:"gridPos"`
	Targets []struct {
		Expr       string `json:"expr"`
		Datasource struct {
			UID string `json:"uid"`
		} `json:"datasource"`
	} `json:"targets"`
	Panels []panel `json:"panels"`
}

// declaredMetrics returns the "squall_..." string literals of the module's
// Go code (tests left out).
func declaredMetrics(t *testing.T) map[string]bool {
	t.Helper()
	lit := regexp.MustCompile(`"(squall_[a-z0-9_]+)"`)
	out := map[string]bool{}
	err := filepath.WalkDir("..", func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == "third_party" || strings.HasPrefix(d.Name(), ".")) && path != ".." {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		for _, m := range lit.FindAllStringSubmatch(string(read(t, path)), -1) {
			out[m[1]] = true
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// A running node's /metrics passes promtool check metrics (the
// Prometheus naming and help conventions), with alert rules loaded and an
// alert fired, so that the alert metrics have series.
func TestNodeMetricsLint(t *testing.T) {
	promtool := testproc.NeedCommand(t, "promtool", "prometheus")
	rules := filepath.Join(t.TempDir(), "rules.yaml")
	if err := os.WriteFile(rules, []byte(`rules:
  - {name: high-cpu, match: "*.cpu", aggregate: max, over: 1m, op: ">", threshold: 90}
`), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := node.DefaultConfig()
	cfg.HTTPAddr, cfg.NATSAddr, cfg.DataDir, cfg.Partitions, cfg.Rules = "127.0.0.1:0", "127.0.0.1:0", "", 4, rules
	n, err := node.New(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = n.Close() })
	c, err := client.New("http://" + n.HTTPAddr())
	if err != nil {
		t.Fatal(err)
	}
	if res, err := c.Send(t.Context(), event.Event{Key: "web-1.cpu", TS: time.Now().UnixMilli(), Value: 95}); err != nil || res.Accepted != 1 {
		t.Fatalf("send: %+v, %v", res, err)
	}
	body := scrape(t, "http://"+n.HTTPAddr()+"/metrics")
	for _, want := range []string{"squall_ready 1", `squall_alert_transitions_total{state="firing"} 1`} {
		if !strings.Contains(string(body), want+"\n") {
			t.Fatalf("/metrics lacks %q", want)
		}
	}
	run(t, body, promtool, "check", "metrics")
}

func scrape(t *testing.T, url string) []byte {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s %v", url, resp.Status, err)
	}
	return b
}

// nodeFlags returns the flags of bin/squall-node, as its -h lists them.
func nodeFlags(t *testing.T) map[string]bool {
	t.Helper()
	var usage bytes.Buffer
	if _, err := node.Load([]string{"-h"}, func(string) string { return "" }, &usage); !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("-h: %v", err)
	}
	flags := map[string]bool{}
	re := regexp.MustCompile(`^  -([a-z0-9-]+)`)
	sc := bufio.NewScanner(&usage)
	for sc.Scan() {
		if m := re.FindStringSubmatch(sc.Text()); m != nil {
			flags[m[1]] = true
		}
	}
	if !flags["http-addr"] || !flags["kafka-brokers"] {
		t.Fatalf("no flags read from -h:\n%s", usage.String())
	}
	return flags
}

// The example configuration loads through the loader bin/squall-node
// uses, to the Config it describes, with the token from the environment
// the systemd unit sets; every key it names, commented out or not, is a
// flag.
func TestConfigExample(t *testing.T) {
	token := filepath.Join(t.TempDir(), "auth-token")
	if err := os.WriteFile(token, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"SQUALL_AUTH_TOKEN_FILE": token}
	got, err := node.Load([]string{"--config", "config.example.yaml"}, func(k string) string { return env[k] }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	want := node.DefaultConfig()
	want.NodeID = "n1"
	want.HTTPAddr = "0.0.0.0:8080"
	want.AuthToken = "s3cret"
	want.ZK = "zk1:2181,zk2:2181,zk3:2181"
	want.RemoteAddr = "10.0.0.11:7000"
	want.KafkaBrokers = "kafka1:9092,kafka2:9092,kafka3:9092"
	want.KafkaDLQTopic = "squall-dead-letters"
	want.Rules = "/etc/squall/rules.yaml"
	want.AlertsKafkaTopic = "squall-alerts"
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("config.example.yaml loads to\n%+v\nwant\n%+v", got, want)
	}

	flags := nodeFlags(t)
	key := regexp.MustCompile(`^#? ?([a-z0-9-]+):( |$)`)
	keys := 0
	sc := bufio.NewScanner(bytes.NewReader(read(t, "config.example.yaml")))
	for sc.Scan() {
		m := key.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		keys++
		if !flags[m[1]] || m[1] == "config" {
			t.Errorf("config.example.yaml: %q is not an option of squall-node", m[1])
		}
	}
	if keys < 30 {
		t.Fatalf("config.example.yaml: %d keys read", keys)
	}
}

// The systemd unit is hardened, runs the node with its state directory as
// --data-dir and its flags are the node's; systemd-analyze verify accepts
// it (with the binary's path pointing at an executable that exists).
func TestSystemdUnit(t *testing.T) {
	unit := string(read(t, "systemd/squall-node.service"))
	set := map[string]string{}
	for _, l := range strings.Split(unit, "\n") {
		if k, v, ok := strings.Cut(l, "="); ok && !strings.HasPrefix(l, "#") {
			set[k] = v
		}
	}
	for k, v := range map[string]string{
		"DynamicUser": "yes", "ProtectSystem": "strict", "ProtectHome": "yes", "NoNewPrivileges": "yes",
		"PrivateTmp": "yes", "PrivateDevices": "yes", "StateDirectory": "squall", "Restart": "on-failure",
		"LimitNOFILE": "65536", "CapabilityBoundingSet": "", "RestrictSUIDSGID": "yes", "ExecReload": "/bin/kill -HUP $MAINPID",
	} {
		if got, ok := set[k]; !ok || got != v {
			t.Errorf("%s=%q, want %q", k, got, v)
		}
	}
	argv := strings.Fields(set["ExecStart"])
	if i := slices.Index(argv, "--data-dir"); i < 1 || i+1 >= len(argv) || argv[i+1] != "${STATE_DIRECTORY}" {
		t.Fatalf("ExecStart=%q: want --data-dir ${STATE_DIRECTORY}", set["ExecStart"])
	}
	flags := nodeFlags(t)
	for _, a := range argv[1:] {
		if name, ok := strings.CutPrefix(a, "--"); ok && !flags[name] {
			t.Errorf("ExecStart: %s is not a flag of squall-node", a)
		}
	}
	if want := "SQUALL_AUTH_TOKEN_FILE=%d/auth-token"; set["Environment"] != want || !strings.HasPrefix(set["LoadCredential"], "auth-token:") {
		t.Errorf("the token: Environment=%q LoadCredential=%q", set["Environment"], set["LoadCredential"])
	}

	analyze := testproc.NeedCommand(t, "systemd-analyze", "systemd")
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	f := filepath.Join(dir, "squall-node.service")
	if err := os.WriteFile(f, []byte(strings.Replace(unit, "ExecStart="+argv[0], "ExecStart="+self, 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	out := run(t, nil, analyze, "verify", f)
	if strings.Contains(out, "squall-node.service") {
		t.Fatalf("systemd-analyze verify warns:\n%s", out)
	}
}
