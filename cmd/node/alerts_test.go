package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/squallhq/squall/api"
	"github.com/squallhq/squall/internal/natstest"
	"github.com/squallhq/squall/internal/testproc"
	"github.com/squallhq/squall/internal/testutil"
	"github.com/squallhq/squall/internal/zktest"
)

// alertDoc is the part of a published alert the tests look at.
type alertDoc struct {
	ID        string   `json:"id"`
	Rule      string   `json:"rule"`
	Key       string   `json:"key"`
	State     string   `json:"state"`
	Value     *float64 `json:"value"`
	StartedAt int64    `json:"started_at"`
	At        int64    `json:"at"`
}

// alertLog collects the alerts published on NATS.
type alertLog struct {
	mu   sync.Mutex
	docs []alertDoc
	subj map[string]string // id → subject
}

func subscribeAlerts(t *testing.T, url string) (*alertLog, *nats.Conn) {
	t.Helper()
	nc, err := nats.Connect(url, nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	l := &alertLog{subj: map[string]string{}}
	if _, err := nc.Subscribe("squall.alerts.>", func(m *nats.Msg) {
		var d alertDoc
		if err := json.Unmarshal(m.Data, &d); err != nil {
			t.Errorf("alert %q: %v", m.Data, err)
			return
		}
		l.mu.Lock()
		l.docs = append(l.docs, d)
		l.subj[d.ID] = m.Subject
		l.mu.Unlock()
	}); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	return l, nc
}

func (l *alertLog) ids() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]string, len(l.docs))
	for i, d := range l.docs {
		out[i] = d.ID
	}
	return out
}

// distinct returns the set of ids received.
func (l *alertLog) distinct() map[string]bool {
	m := map[string]bool{}
	for _, id := range l.ids() {
		m[id] = true
	}
	return m
}

func postEvents(t *testing.T, addr string, lines ...string) {
	t.Helper()
	resp, err := http.Post("http://"+addr+"/v1/events", "application/x-ndjson", strings.NewReader(strings.Join(lines, "\n")))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("POST /v1/events = %d", resp.StatusCode)
	}
}

func getDoc(t *testing.T, url string, v any) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s = %d", url, resp.StatusCode)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatal(err)
	}
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

const e2eRules = `rules:
  - name: high-cpu
    match: "*.cpu"
    aggregate: max
    over: 1m
    op: ">"
    threshold: 90
    for: 20s
    severity: critical
    labels: {team: infra}
  - name: heartbeat-missing
    match: "*.hb"
    absent: 2s
    severity: warning
`

// TestAlertsEndToEnd: a node with a rules file, events over HTTP, and a
// NATS subscriber that receives exactly the expected firing and resolved
// alerts; the key document and /debug/alerts show the rule states; SIGHUP
// reloads the file, a bad file is rejected and the rules in force stay.
func TestAlertsEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	bin := buildNode(t)
	rulesFile := filepath.Join(t.TempDir(), "rules.yaml")
	writeFile(t, rulesFile, e2eRules)
	p := startProc(t, bin, "--http-addr", "127.0.0.1:0", "--nats-addr", "127.0.0.1:0", "--node-id", "alerts",
		"--rules", rulesFile)
	alerts, _ := subscribeAlerts(t, p.natsURL)
	base := "http://" + p.httpAddr

	const t0 = int64(1764064800000)
	ev := func(key string, dt int64, v float64) string {
		return fmt.Sprintf(`{"key":%q,"ts":%d,"value":%v}`, key, t0+dt, v)
	}
	// max over 1m > 90 from +10s; fires at +31s (held 21s ≥ 20s); the 97
	// leaves the 1m sub-window by +100s: resolved. db-1.mem matches no
	// rule; web-2.cpu crosses only briefly (pending, then inactive).
	postEvents(t, p.httpAddr,
		ev("web-1.cpu", 0, 50), ev("web-1.cpu", 10_000, 95), ev("web-1.cpu", 20_000, 96),
		ev("db-1.mem", 0, 99), ev("web-2.cpu", 0, 99), ev("web-2.cpu", 70_000, 10))
	postEvents(t, p.httpAddr, ev("web-1.cpu", 31_000, 97))
	want := []string{fmt.Sprintf("high-cpu/web-1.cpu/%d/firing", t0+31_000)}
	testutil.Eventually(t, 10*time.Second, func() bool { return len(alerts.ids()) >= 1 }, "no firing alert")

	var ks api.KeyState
	getDoc(t, base+"/debug/actors/web-1.cpu", &ks)
	if len(ks.Rules) != 1 || ks.Rules[0].Rule != "high-cpu" || ks.Rules[0].State != "firing" ||
		ks.Rules[0].Since == nil || ks.Rules[0].Since.UnixMilli() != t0+10_000 || ks.Rules[0].Value == nil || *ks.Rules[0].Value != 97 {
		t.Errorf("web-1.cpu rules = %+v", ks.Rules)
	}
	var fa api.Alerts
	getDoc(t, base+"/debug/alerts", &fa)
	if len(fa.Alerts) != 1 || fa.Alerts[0].Node != "alerts" || !strings.Contains(string(fa.Alerts[0].Alert), want[0]) {
		t.Errorf("/debug/alerts = %+v", fa)
	}

	postEvents(t, p.httpAddr, ev("web-1.cpu", 100_000, 10))
	want = append(want, fmt.Sprintf("high-cpu/web-1.cpu/%d/resolved", t0+100_000))

	// The heartbeat: seen once, silent for 2s (wall clock): firing; the
	// next event resolves it, at its event time but never before the
	// firing (whose time is the wall-clock deadline).
	postEvents(t, p.httpAddr, ev("h-1.hb", 0, 1))
	testutil.Eventually(t, 10*time.Second, func() bool { return len(alerts.ids()) >= 3 }, "no heartbeat alert: %v", alerts.ids())
	postEvents(t, p.httpAddr, ev("h-1.hb", 5_000, 1))
	testutil.Eventually(t, 10*time.Second, func() bool { return len(alerts.ids()) >= 4 }, "no heartbeat resolution: %v", alerts.ids())
	time.Sleep(500 * time.Millisecond) // nothing more may come

	alerts.mu.Lock()
	docs := append([]alertDoc(nil), alerts.docs...)
	alerts.mu.Unlock()
	if len(docs) != 4 {
		t.Fatalf("alerts = %v, want 4", alerts.ids())
	}
	got := []string{docs[0].ID, docs[1].ID}
	sort.Strings(got)
	sort.Strings(want)
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("high-cpu alerts = %v, want %v", got, want)
	}
	hbFire, hbResolve := docs[2], docs[3]
	if hbFire.Rule != "heartbeat-missing" || hbFire.State != "firing" || hbFire.Key != "h-1.hb" || hbFire.At-hbFire.StartedAt != 2000 ||
		hbResolve.State != "resolved" || hbResolve.At != max(t0+5_000, hbFire.At) || hbResolve.StartedAt != hbFire.StartedAt {
		t.Errorf("heartbeat alerts = %+v, %+v", hbFire, hbResolve)
	}
	if s := alerts.subj[want[0]]; s != "squall.alerts.web-1.cpu" {
		t.Errorf("subject = %q", s)
	}

	// SIGHUP with a bad file: rejected, the rules stay in force.
	writeFile(t, rulesFile, "rules:\n  - name: broken\n    match: \"*\"\n    aggregate: median\n")
	if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, func() bool { return p.logContains("rules not reloaded") }, "bad reload not logged")
	if !p.logContains("rules.yaml:4") {
		t.Errorf("the reload error does not name the line")
	}
	getDoc(t, base+"/debug/actors/web-1.cpu", &ks)
	if len(ks.Rules) != 1 {
		t.Errorf("rules after a bad reload = %+v", ks.Rules)
	}
	// A good file: the new rule applies.
	writeFile(t, rulesFile, e2eRules+"  - name: any-mem\n    match: \"*.mem\"\n    aggregate: last\n    op: \">\"\n    threshold: 0\n")
	if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, func() bool { return p.logContains("alert rules reloaded") }, "reload not logged")
	postEvents(t, p.httpAddr, ev("db-1.mem", 1000, 5))
	wantMem := fmt.Sprintf("any-mem/db-1.mem/%d/firing", t0+1000)
	testutil.Eventually(t, 10*time.Second, func() bool { return alerts.distinct()[wantMem] }, "no alert from the reloaded rule: %v", alerts.ids())
}

// TestAlertsSinkOutage: the NATS server alerts go to is down for a while
// (events keep coming over HTTP); the outputs' buffer fills and stays
// bounded, intake slows, and once NATS is back every alert arrives.
func TestAlertsSinkOutage(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	bin := buildNode(t)
	port := freePort(t)
	ns := startNATSServer(t, port)
	rulesFile := filepath.Join(t.TempDir(), "rules.yaml")
	writeFile(t, rulesFile, "rules:\n  - {name: flip, match: \"k-*\", aggregate: last, op: \">\", threshold: 50}\n")
	url := fmt.Sprintf("nats://127.0.0.1:%d", port)
	const buffer = 50
	p := startProc(t, bin, "--http-addr", "127.0.0.1:0", "--nats-url", url, "--node-id", "outage",
		"--rules", rulesFile, "--alerts-buffer", fmt.Sprint(buffer))
	alerts, _ := subscribeAlerts(t, url)

	// Each event flips its key: one transition per event, each id unique.
	const keys, perKey = 20, 30
	const t0 = int64(1764064800000)
	want := map[string]bool{}
	batch := func(i int) []string {
		var lines []string
		for k := range keys {
			v, state := 100, "firing"
			if i%2 == 1 {
				v, state = 0, "resolved"
			}
			ts := t0 + int64(i)*1000
			lines = append(lines, fmt.Sprintf(`{"key":"k-%02d","ts":%d,"value":%d}`, k, ts, v))
			want[fmt.Sprintf("flip/k-%02d/%d/%s", k, ts, state)] = true
		}
		return lines
	}
	postEvents(t, p.httpAddr, batch(0)...)
	testutil.Eventually(t, 10*time.Second, func() bool { return len(alerts.distinct()) == keys }, "first alerts")

	ns.Shutdown()
	ns.WaitForShutdown()
	posted := make(chan int, perKey)
	go func() {
		defer close(posted)
		for i := 1; i < perKey; i++ {
			postEvents(t, p.httpAddr, batch(i)...)
			posted <- i
		}
	}()
	// 580 transitions for a buffer of 50: intake blocks once it is full.
	testutil.Eventually(t, time.Minute, func() bool {
		return metricValue(t, p.httpAddr, `squall_alerts_buffered{sink="nats"}`) >= buffer/2
	}, "the alert buffer never filled while the sink was down")
	if n := len(posted); n >= perKey-1 {
		t.Errorf("all %d batches were accepted while the sink was down", n)
	}
	buffered := metricValue(t, p.httpAddr, `squall_alerts_buffered{sink="nats"}`)
	if buffered < buffer/2 || buffered > buffer {
		t.Errorf("buffered alerts = %v while the sink is down, want ≤ %d and near it", buffered, buffer)
	}
	if lag := metricValue(t, p.httpAddr, `squall_alert_output_lag_seconds{sink="nats"}`); lag <= 0 {
		t.Errorf("output lag = %v while the sink is down", lag)
	}

	ns = startNATSServer(t, port)
	alerts2, _ := subscribeAlerts(t, url) // a fresh subscriber, before the node reconnects
	for range posted {
	}
	testutil.Eventually(t, 60*time.Second, func() bool {
		got := alerts2.distinct()
		for id := range alerts.distinct() {
			got[id] = true
		}
		for id := range want {
			if !got[id] {
				return false
			}
		}
		return true
	}, "alerts lost across the outage")
	if extra := len(alerts.distinct()) + len(alerts2.distinct()); extra < len(want) {
		t.Errorf("received %d distinct ids, want %d", extra, len(want))
	}
	if hw := metricValue(t, p.httpAddr, `squall_alerts_buffered{sink="nats"}`); hw != 0 {
		t.Errorf("buffered after recovery = %v", hw)
	}
}

func freePort(t *testing.T) int { return testproc.FreePort(t) }

func startNATSServer(t *testing.T, port int) *server.Server { return natstest.Start(t, port) }

// TestAlertsKafkaKill9: three nodes fed from Kafka, alerts to NATS and to
// a Kafka topic; a node is killed with kill -9 during a burst that makes
// an alert transition of every event. After the survivors restore its
// partitions by replay, every expected alert has arrived on both outputs
// (none lost) and nothing else did: duplicates carry the ids of the
// original transitions.
func TestAlertsKafkaKill9(t *testing.T) {
	if testing.Short() {
		t.Skip("starts ZooKeeper, Kafka, NATS and three nodes")
	}
	kc := startKafkaCluster(t, "alertkill")
	kc.kafka.CreateTopic(t, "alertkill-alerts", 3)
	port := freePort(t)
	startNATSServer(t, port)
	url := fmt.Sprintf("nats://127.0.0.1:%d", port)
	sub, _ := subscribeAlerts(t, url)
	rulesFile := filepath.Join(t.TempDir(), "rules.yaml")
	writeFile(t, rulesFile, "rules:\n  - {name: flip, match: \"k-*\", aggregate: last, op: \">\", threshold: 50}\n")
	extra := []string{"--nats-url", url, "--rules", rulesFile, "--alerts-kafka-topic", "alertkill-alerts"}
	nodes := []*cnode{kc.node(t, "n1", "", "", extra...), kc.node(t, "n2", "", "", extra...), kc.node(t, "n3", "", "", extra...)}
	waitSettled(t, nodes, 30*time.Second)

	// 300 keys × 100 events, each flipping its key between 100 and 0: one
	// transition per event, at about 3,000 events/s; the kill comes 4s in.
	const keyCount, rounds = 300, 100
	const t0 = int64(1764064800000)
	want := map[string]bool{}
	cl, err := kgo.NewClient(kgo.SeedBrokers(kc.kafka.Addr()), kgo.DefaultProduceTopic("alertkill-events"),
		kgo.RequiredAcks(kgo.AllISRAcks()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	killed := make(chan struct{})
	go func() {
		time.Sleep(4 * time.Second)
		nodes[2].cmd.Process.Kill()
		<-nodes[2].exited
		close(killed)
	}()
	for i := range rounds {
		recs := make([]*kgo.Record, 0, keyCount)
		for k := range keyCount {
			key := fmt.Sprintf("k-%03d", k)
			v, state := 100, "firing"
			if i%2 == 1 {
				v, state = 0, "resolved"
			}
			ts := t0 + int64(i)*1000
			recs = append(recs, &kgo.Record{Key: []byte(key), Value: []byte(fmt.Sprintf(`{"key":%q,"ts":%d,"value":%d,"id":"e%d"}`, key, ts, v, i))})
			want[fmt.Sprintf("flip/%s/%d/%s", key, ts, state)] = true
		}
		if err := cl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	<-killed

	missing := func(got map[string]bool) []string {
		var m []string
		for id := range want {
			if !got[id] {
				m = append(m, id)
			}
		}
		sort.Strings(m)
		return m
	}
	deadline := time.Now().Add(90 * time.Second)
	for m := missing(sub.distinct()); len(m) > 0; m = missing(sub.distinct()) {
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d alerts never arrived on NATS, e.g. %v", len(m), len(want), m[:min(5, len(m))])
		}
		time.Sleep(time.Second)
	}
	all := sub.ids()
	for _, id := range all {
		if !want[id] {
			t.Fatalf("unexpected alert %s", id)
		}
	}
	t.Logf("NATS: %d alerts received for %d transitions (%d duplicates, all with the original ids)", len(all), len(want), len(all)-len(want))

	// The Kafka output has them too.
	cons, err := kgo.NewClient(kgo.SeedBrokers(kc.kafka.Addr()), kgo.ConsumeTopics("alertkill-alerts"),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cons.Close()
	fromKafka := map[string]bool{}
	for len(missing(fromKafka)) > 0 {
		ctx, cancel := context.WithDeadline(context.Background(), deadline.Add(30*time.Second))
		fs := cons.PollFetches(ctx)
		expired := ctx.Err() != nil
		cancel()
		if expired {
			t.Fatalf("%d alerts missing from the Kafka output", len(missing(fromKafka)))
		}
		fs.EachRecord(func(r *kgo.Record) {
			var d alertDoc
			if err := json.Unmarshal(r.Value, &d); err != nil || string(r.Key) != d.Key {
				t.Errorf("kafka alert %q key %q: %v", r.Value, r.Key, err)
			}
			if !want[d.ID] {
				t.Errorf("unexpected alert on Kafka: %s", d.ID)
			}
			fromKafka[d.ID] = true
		})
	}
}

// TestAlertsClusterHandoff: three nodes sharing one NATS server; keys with
// firing alerts spread over every node. /debug/alerts?scope=cluster on any
// node lists them all; after a node leaves gracefully, its keys' rule
// states move with them: the alerts are still firing (listed, and shown on
// the key documents), no transition is published again, and the next
// events resolve them with the ids a single node would have given.
func TestAlertsClusterHandoff(t *testing.T) {
	if testing.Short() {
		t.Skip("starts ZooKeeper, NATS and three nodes")
	}
	z := zktest.Start(t)
	port := freePort(t)
	startNATSServer(t, port)
	url := fmt.Sprintf("nats://127.0.0.1:%d", port)
	sub, _ := subscribeAlerts(t, url)
	rulesFile := filepath.Join(t.TempDir(), "rules.yaml")
	writeFile(t, rulesFile, e2eRules)
	var nodes []*cnode
	for i := range 3 {
		nodes = append(nodes, startMember(t, z.Addr(), "alerthandoff", fmt.Sprintf("n%d", i+1), "", "",
			"--nats-url", url, "--rules", rulesFile))
	}
	waitSettled(t, nodes, 30*time.Second)

	const t0 = int64(1764064800000)
	keys := make([]string, 60)
	var lines []string
	for i := range keys {
		keys[i] = fmt.Sprintf("host-%02d.cpu", i)
		for _, dt := range []int64{0, 10_000, 20_000} { // fires at +20s (for: 20s)
			lines = append(lines, fmt.Sprintf(`{"key":%q,"ts":%d,"value":95}`, keys[i], t0+dt))
		}
	}
	postEvents(t, nodes[0].httpAddr, lines...)
	testutil.Eventually(t, 10*time.Second, func() bool { return len(sub.ids()) == len(keys) }, "firing alerts: %d", len(sub.ids()))

	firingOn := func(addr string) (map[string]string, *api.Alerts) {
		var doc api.Alerts
		getDoc(t, "http://"+addr+"/debug/alerts?scope=cluster", &doc)
		by := map[string]string{}
		for _, a := range doc.Alerts {
			var d alertDoc
			if err := json.Unmarshal(a.Alert, &d); err != nil {
				t.Fatal(err)
			}
			by[d.Key] = a.Node
		}
		return by, &doc
	}
	by, doc := firingOn(nodes[2].httpAddr)
	holders := map[string]bool{}
	for _, n := range by {
		holders[n] = true
	}
	if len(by) != len(keys) || len(holders) != 3 || len(doc.Errors) != 0 {
		t.Fatalf("scope=cluster: %d keys firing on %v, errors %v", len(by), holders, doc.Errors)
	}

	// n2 leaves gracefully: its partitions, keys and rule states move.
	leaving := nodes[1]
	if err := leaving.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := <-leaving.exited; err != nil {
		t.Fatalf("leaving node: %v", err)
	}
	rest := others(nodes, leaving)
	waitSettled(t, rest, 20*time.Second)
	by, doc = firingOn(rest[0].httpAddr)
	if len(by) != len(keys) || len(doc.Errors) != 0 {
		t.Fatalf("after the leave: %d of %d keys firing (errors %v)", len(by), len(keys), doc.Errors)
	}
	for k, n := range by {
		if n == leaving.id {
			t.Fatalf("%s still listed on the node that left", k)
		}
	}
	var ks api.KeyState
	getDoc(t, "http://"+rest[1].httpAddr+"/debug/actors/"+keys[0], &ks)
	if len(ks.Rules) != 1 || ks.Rules[0].State != "firing" || ks.Rules[0].Since == nil || ks.Rules[0].Since.UnixMilli() != t0 {
		t.Errorf("%s rules after the move = %+v", keys[0], ks.Rules)
	}
	// One more high event per key: still firing, nothing published.
	lines = lines[:0]
	for _, k := range keys {
		lines = append(lines, fmt.Sprintf(`{"key":%q,"ts":%d,"value":99}`, k, t0+30_000))
	}
	postEvents(t, rest[0].httpAddr, lines...)
	// The 1m sub-window empties of high values by +100s: resolved.
	lines = lines[:0]
	for _, k := range keys {
		lines = append(lines, fmt.Sprintf(`{"key":%q,"ts":%d,"value":1}`, k, t0+100_000))
	}
	postEvents(t, rest[1].httpAddr, lines...)
	testutil.Eventually(t, 10*time.Second, func() bool { return len(sub.ids()) >= 2*len(keys) }, "resolved alerts: %d", len(sub.ids()))
	time.Sleep(500 * time.Millisecond)
	want := map[string]bool{}
	for _, k := range keys {
		want[fmt.Sprintf("high-cpu/%s/%d/firing", k, t0+20_000)] = true
		want[fmt.Sprintf("high-cpu/%s/%d/resolved", k, t0+100_000)] = true
	}
	got := sub.ids()
	if len(got) != len(want) {
		t.Errorf("%d alerts published, want %d", len(got), len(want))
	}
	for _, id := range got {
		if !want[id] {
			t.Errorf("unexpected alert %s", id)
		}
	}
}
