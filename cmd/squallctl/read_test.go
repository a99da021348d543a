package main

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/squallhq/squall/api"
	"github.com/squallhq/squall/internal/testutil"
	"github.com/squallhq/squall/node"
)

func TestGet(t *testing.T) {
	n := startNode(t, withRules(t))
	expect(t, ctl(t, n, `{"key":"web-1.cpu","ts":1764064800000,"value":40,"id":"e1","tags":{"env":"prod"}}
{"key":"web-1.cpu","ts":1764064801000,"value":60,"id":"e2","tags":{"env":"prod"}}
{"key":"web-1.cpu","ts":1764064801500,"value":60,"id":"e2"}
`, "send"), 0)

	r := ctl(t, n, "", "get", "web-1.cpu")
	expect(t, r, 0, "key         web-1.cpu\n", "node        n1\n", "events      2 applied, 0 late, 1 duplicate\n", "tags        env=prod\n")
	// count sum min max mean last rate p50 p95 p99 from to
	want := map[string]string{
		"all":                      "all 2 100 40 60 50 60 0.003333 40 40 40 2025-11-25T10:00:00.000Z 2025-11-25T10:00:01.000Z",
		"1m":                       "1m 2 100 40 60 50 60 0.03333 40 40 40 2025-11-25T10:00:00.000Z 2025-11-25T10:00:01.000Z",
		"5m":                       "5m 2 100 40 60 50 60 0.006667 40 40 40 2025-11-25T10:00:00.000Z 2025-11-25T10:00:01.000Z",
		"high-cpu":                 "high-cpu threshold inactive page 60 -",
		"2025-11-25T10:00:01.000Z": "2025-11-25T10:00:01.000Z 60 e2 env=prod",
	}
	for first, w := range want {
		if got := strings.Join(fields(t, r.out, first), " "); got != w {
			t.Errorf("line %q, want %q", got, w)
		}
	}
	if !strings.Contains(r.out, "WINDOW  COUNT") || !strings.Contains(r.out, "RECENT EVENTS (2, oldest first)") {
		t.Errorf("stdout:\n%s", r.out)
	}

	// -o json: the node's document, byte for byte.
	resp, err := http.Get("http://" + n.HTTPAddr() + api.PathActor + "web-1.cpu")
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	r = ctl(t, n, "", "get", "web-1.cpu", "-o", "json")
	expect(t, r, 0)
	if r.out != string(body) {
		t.Fatalf("-o json:\n%s\nthe node's document:\n%s", r.out, body)
	}

	r = ctl(t, n, "", "get", "web-1.cpu", "-o", "yaml")
	expect(t, r, 0, "key: web-1.cpu\n")
	var doc api.KeyState
	var y map[string]any
	if err := yaml.Unmarshal([]byte(r.out), &y); err != nil || y["events_applied"] != 2 || y["duplicates_dropped"] != 1 {
		t.Fatalf("-o yaml: %v\n%s", err, r.out)
	}
	if err := json.Unmarshal(body, &doc); err != nil || doc.Window.Count != 2 {
		t.Fatalf("document %s: %v", body, err)
	}

	r = ctl(t, n, "", "get", "nope")
	expect(t, r, 1)
	if !strings.Contains(r.err, `squallctl: key "nope" has no live actor`) {
		t.Fatalf("stderr %q", r.err)
	}
	expect(t, ctl(t, n, "", "get"), 2)
	expect(t, ctl(t, n, "", "get", "a", "b"), 2)
}

// --watch shows the state again, with what changed, until interrupted.
func TestGetWatch(t *testing.T) {
	n := startNode(t, nil)
	expect(t, ctl(t, n, "", "send", "w=1@1764064800000"), 0)
	out, _, stop := background(t, n, "get", "w", "--watch", "--interval", "10ms")
	testutil.Eventually(t, 10*time.Second, func() bool { return strings.Contains(out.String(), "1 applied") }, "first state")
	expect(t, ctl(t, n, "", "send", "w=2@1764064801000"), 0)
	testutil.Eventually(t, 10*time.Second, func() bool { return strings.Contains(out.String(), "2 applied") }, "the state after a second event")
	if code := stop(); code != 0 {
		t.Fatalf("exit status %d", code)
	}
	if frames := strings.Count(out.String(), "every 10ms\n"); frames < 2 {
		t.Fatalf("%d frames:\n%s", frames, out.String())
	}

	// -o json: one document per line, nothing else.
	out, _, stop = background(t, n, "get", "w", "--watch", "--interval", "10ms", "-o", "json")
	testutil.Eventually(t, 10*time.Second, func() bool { return strings.Count(out.String(), "\n") >= 2 }, "two documents")
	if code := stop(); code != 0 {
		t.Fatalf("-o json: exit status %d", code)
	}
	for _, l := range strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n") {
		var st api.KeyState
		if err := json.Unmarshal([]byte(l), &st); err != nil || st.Key != "w" || st.Window.Count != 2 {
			t.Fatalf("line %q: %v", l, err)
		}
	}
}

func TestKeys(t *testing.T) {
	n := startNode(t, nil)
	expect(t, ctl(t, n, "", "send", "web-1=1@1764064800000", "web-2=1@1764064800000", "web-2=2@1764064800000", "db-1=1@1764064800000"), 0)

	r := ctl(t, n, "", "keys", "--prefix", "web-")
	expect(t, r, 0, "KEY    NODE  PARTITION  EVENTS  LAST EVENT\n", "2 keys shown of 3 live\n")
	if f := fields(t, r.out, "web-2"); f[1] != "n1" || f[3] != "2" {
		t.Fatalf("web-2 row %v", f)
	}
	if strings.Contains(r.out, "db-1") {
		t.Fatalf("db-1 listed under prefix web-:\n%s", r.out)
	}
	expect(t, ctl(t, n, "", "keys", "--limit", "1"), 0, "db-1 ", "1 key shown of 3 live, more match (raise --limit 1)\n")
	expect(t, ctl(t, n, "", "keys", "--local"), 0, "3 keys shown of 3 live\n")

	r = ctl(t, n, "", "keys", "-o", "json")
	expect(t, r, 0)
	var kl api.KeyList
	if err := json.Unmarshal([]byte(r.out), &kl); err != nil || len(kl.Keys) != 3 || kl.Keys[0].Key != "db-1" || kl.Truncated {
		t.Fatalf("-o json: %v\n%s", err, r.out)
	}
	r = ctl(t, n, "", "keys", "--limit", "1000000")
	expect(t, r, 1)
	if !strings.Contains(r.err, "400") || !strings.Contains(r.err, "limit must be an integer") {
		t.Fatalf("stderr %q", r.err)
	}
	expect(t, ctl(t, n, "", "keys", "--limit", "0"), 2)
	expect(t, ctl(t, n, "", "keys", "extra"), 2)
}

func TestCluster(t *testing.T) {
	n := startNode(t, nil)
	r := ctl(t, n, "", "cluster")
	expect(t, r, 0, "cluster      standalone\n", "answered by  n1\n", "leader       n1\n", "epoch        0\n", "partitions   4\n",
		"PARTITION MAP\n", "PEERS of n1: none\n")
	if f := fields(t, r.out, "n1"); strings.Join(f, " ") != "n1 (leader) "+n.HTTPAddr()+" "+node.Version+" 4 yes" {
		t.Fatalf("member row %v", f)
	}
	if i := strings.Index(r.out, "PARTITION MAP\nOWNER  COUNT  PARTITIONS\nn1     4      0-3\n"); i < 0 {
		t.Fatalf("partition map:\n%s", r.out)
	}

	r = ctl(t, n, "", "cluster", "-o", "json")
	expect(t, r, 0)
	var v struct {
		api.Cluster
		MembersReady map[string]memberReadiness `json:"members_ready"`
	}
	if err := json.Unmarshal([]byte(r.out), &v); err != nil || v.Self != "n1" || v.PartitionCount != 4 || !v.MembersReady["n1"].Ready || len(v.Assignment) != 4 {
		t.Fatalf("-o json: %v\n%s", err, r.out)
	}
	// A node that is not there.
	r = ctl(t, nil, "", "--server", "http://127.0.0.1:1", "cluster")
	expect(t, r, 1)
	if !strings.Contains(r.err, "cluster: client: GET /debug/cluster") {
		t.Fatalf("stderr %q", r.err)
	}
}

func TestAlerts(t *testing.T) {
	n := startNode(t, withRules(t))
	expect(t, ctl(t, n, "", "alerts"), 0, "no alert is firing\n")
	expect(t, ctl(t, n, "", "send", "web-1.cpu=95@1764064800000", "web-2.cpu=50@1764064800000"), 0)
	r := ctl(t, n, "", "alerts")
	expect(t, r, 0, "NODE  KEY        RULE      SEVERITY  VALUE  THRESHOLD  SINCE\n")
	if f := strings.Join(fields(t, r.out, "n1"), " "); f != "n1 web-1.cpu high-cpu page 95 90 2025-11-25T10:00:00.000Z" {
		t.Fatalf("row %q", f)
	}
	if strings.Contains(r.out, "web-2.cpu") {
		t.Fatalf("web-2.cpu listed:\n%s", r.out)
	}
	r = ctl(t, n, "", "alerts", "--local", "-o", "json")
	expect(t, r, 0)
	var doc api.Alerts
	if err := json.Unmarshal([]byte(r.out), &doc); err != nil || len(doc.Alerts) != 1 || doc.Alerts[0].Node != "n1" {
		t.Fatalf("-o json: %v\n%s", err, r.out)
	}
	var a api.Alert
	if err := json.Unmarshal(doc.Alerts[0].Alert, &a); err != nil || a.ID != "high-cpu/web-1.cpu/1764064800000/firing" {
		t.Fatalf("alert %s: %v", doc.Alerts[0].Alert, err)
	}
}

// alerts tail prints one line per transition, as published on NATS.
func TestAlertsTail(t *testing.T) {
	n := startNode(t, withRules(t))
	for _, o := range []string{"table", "json"} {
		out, errOut, stop := background(t, n, "alerts", "tail", "--nats", n.NATSURL(), "-o", o)
		testutil.Eventually(t, 10*time.Second, func() bool { return strings.Contains(errOut.String(), "following squall.alerts.> on ") }, "subscription")
		key := "tail-" + o + ".cpu"
		expect(t, ctl(t, n, "", "send", key+"=99@1764064800000"), 0)
		expect(t, ctl(t, n, "", "send", key+"=10@1764064900000"), 0)
		testutil.Eventually(t, 10*time.Second, func() bool { return strings.Count(out.String(), "\n") >= 2 }, "two transitions")
		if code := stop(); code != 0 {
			t.Fatalf("-o %s: exit status %d", o, code)
		}
		lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
		if o == "table" {
			want := []string{
				"2025-11-25T10:00:00.000Z firing high-cpu " + key + " value=99 threshold=90 severity=page",
				"2025-11-25T10:01:40.000Z resolved high-cpu " + key + " value=10 threshold=90 severity=page",
			}
			for i, l := range lines {
				if got := strings.Join(strings.Fields(l), " "); got != want[i] {
					t.Fatalf("line %d %q, want %q", i, got, want[i])
				}
			}
			continue
		}
		for i, state := range []string{"firing", "resolved"} {
			var a api.Alert
			if err := json.Unmarshal([]byte(lines[i]), &a); err != nil || a.Key != key || a.State != state {
				t.Fatalf("line %d %q: %v", i, lines[i], err)
			}
		}
	}
	r := ctl(t, n, "", "--timeout", "1s", "alerts", "tail", "--nats", "nats://127.0.0.1:1")
	expect(t, r, 1)
}
