package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/squallhq/squall/api"
	"github.com/squallhq/squall/internal/testutil"
)

// durableNode runs bin/squall-node standalone with a data directory, on
// fixed addresses so that a restart is the same node.
type durableNode struct {
	args     []string
	httpAddr string
	natsURL  string
	p        *proc
}

func startDurable(t *testing.T, dir string, extra ...string) *durableNode {
	t.Helper()
	d := &durableNode{args: append([]string{"--http-addr", freeAddr(t), "--nats-addr", freeAddr(t),
		"--data-dir", dir, "--partitions", "8", "--node-id", "durable"}, extra...)}
	d.start(t)
	return d
}

func (d *durableNode) start(t *testing.T) {
	t.Helper()
	d.p = startProc(t, buildNode(t), d.args...)
	d.httpAddr, d.natsURL = d.p.httpAddr, d.p.natsURL
	waitReadyz(t, d.httpAddr)
}

func (d *durableNode) kill9(t *testing.T) {
	t.Helper()
	if err := d.p.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-d.p.exited
}

// waitReadyz waits for /readyz to answer 200: with a log, every partition
// has replayed it.
func waitReadyz(t *testing.T, addr string) {
	t.Helper()
	testutil.Eventually(t, 2*time.Minute, func() bool {
		resp, err := http.Get("http://" + addr + api.PathReadyz)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}, "%s not ready", addr)
}

// post sends an NDJSON body and returns the status and the answer.
func post(addr string, lines []string) (int, api.IngestResponse, error) {
	var r api.IngestResponse
	c := http.Client{Timeout: 30 * time.Second}
	resp, err := c.Post("http://"+addr+api.PathEvents, "application/x-ndjson", strings.NewReader(strings.Join(lines, "\n")))
	if err != nil {
		return 0, r, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	err = json.Unmarshal(b, &r)
	return resp.StatusCode, r, err
}

// stateOf reads each key's document, without what depends on the wall
// clock or the process (node, activation and last-event times).
func stateOf(t *testing.T, addr string, keys []string) map[string]api.KeyState {
	t.Helper()
	out := make(map[string]api.KeyState, len(keys))
	for _, k := range keys {
		st, code, err := keyState(addr, k)
		if err != nil || code != 200 {
			t.Fatalf("GET %s: %d %v", k, code, err)
		}
		st.Node, st.ActivatedAt, st.LastEventAt = "", time.Time{}, time.Time{}
		out[k] = *st
	}
	return out
}

func writeRulesFile(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "rules.yaml")
	rules := "rules:\n  - {name: high, match: \"*.cpu\", aggregate: max, over: 1m, op: \">\", threshold: 90}\n"
	if err := os.WriteFile(p, []byte(rules), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// durableBatches are the test's input: 40 batches of 50 events over 20
// keys, stamped over the last few minutes, with ids; some events repeat
// an earlier id (duplicates), some are older than the window (late), some
// carry tags, and key 3 goes over the alert threshold.
func durableBatches(now int64) (batches [][]string, keys []string) {
	for k := range 20 {
		keys = append(keys, fmt.Sprintf("web-%02d.cpu", k))
	}
	base := now - 4*60_000
	n := 0
	for b := range 40 {
		var lines []string
		for i := range 50 {
			k := keys[(b*50+i)%len(keys)]
			ts := base + int64(n)*100
			v := float64((n*37)%80) + 1
			if k == keys[3] && b == 39 {
				v = 95 // fires "high" on web-03.cpu
			}
			id := fmt.Sprintf("e%d", n)
			switch {
			case i == 10 && n > 100:
				id = fmt.Sprintf("e%d", n-100) // an id seen before, on the same key: a duplicate
				k = keys[(n-100)%len(keys)]
			case i == 20:
				ts = base - 20*60_000 // behind the 10m window: late
			}
			line := fmt.Sprintf(`{"key":%q,"ts":%d,"value":%v,"id":%q`, k, ts, v, id)
			if i == 30 {
				line += fmt.Sprintf(`,"tags":{"batch":"%d"}`, b)
			}
			lines = append(lines, line+"}")
			n++
		}
		batches = append(batches, lines)
	}
	return batches, keys
}

// A standalone node with --data-dir, killed with kill -9 and restarted,
// has every key's state exactly as before: windows, sub-windows, counts of
// late and duplicate events, the dedup set, tags, recent events and alert
// states, equal to those of a memory-only node fed the same input that
// never stopped. Alerts already published are not published again.
func TestDurableKill9(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the binary twice")
	}
	rules := writeRulesFile(t)
	now := time.Now().UnixMilli()
	batches, keys := durableBatches(now)

	ref := startProc(t, buildNode(t), "--http-addr", "127.0.0.1:0", "--nats-addr", "127.0.0.1:0",
		"--data-dir", "", "--partitions", "8", "--node-id", "reference", "--rules", rules)
	d := startDurable(t, t.TempDir(), "--rules", rules)
	alerts, _ := subscribeAlerts(t, d.natsURL)
	for i, b := range batches {
		for _, addr := range []string{ref.httpAddr, d.httpAddr} {
			if code, r, err := post(addr, b); code != http.StatusAccepted || err != nil {
				t.Fatalf("batch %d to %s: %d %+v %v", i, addr, code, r, err)
			}
		}
	}
	want := stateOf(t, ref.httpAddr, keys)
	if want[keys[3]].Rules[0].State != "firing" || want[keys[0]].LateDropped == 0 || want[keys[0]].DuplicatesDropped == 0 {
		t.Fatalf("the input does not exercise alerts, late and duplicate events: %+v", want[keys[0]])
	}
	// The durable node answered once each batch was stored; it applies
	// them a moment later.
	testutil.Eventually(t, time.Minute, func() bool {
		return reflect.DeepEqual(stateOf(t, d.httpAddr, keys), want)
	}, "the durable node never reached the reference state")
	testutil.Eventually(t, 30*time.Second, func() bool { return len(alerts.ids()) == 1 },
		"alerts before the kill: %v", alerts.ids())
	// Every partition has committed all it applied: what follows a commit
	// is applied live after a restart, and its alerts sent again (at least
	// once); this test checks the replay.
	testutil.Eventually(t, 30*time.Second, func() bool {
		doc, err := clusterDoc(d.httpAddr)
		if err != nil || len(doc.Sources) == 0 {
			return false
		}
		for _, s := range doc.Sources {
			if s.Committed != s.Applied || s.Applied != s.HighWatermark {
				return false
			}
		}
		return true
	}, "progress not committed")

	d.kill9(t)
	d.start(t)
	got := stateOf(t, d.httpAddr, keys)
	for _, k := range keys {
		if !reflect.DeepEqual(got[k], want[k]) {
			t.Errorf("key %s after kill -9 and restart:\n got %+v\nwant %+v", k, got[k], want[k])
		}
	}
	// The dedup set came back too: an id seen before the crash is a
	// duplicate after it.
	again := []string{strings.Replace(batches[5][0], `"value":`, `"value":1000,"x":`, 1)}
	if code, r, err := post(d.httpAddr, again); code != http.StatusAccepted || err != nil {
		t.Fatalf("resend: %d %+v %v", code, r, err)
	}
	var k0 struct {
		Key string `json:"key"`
	}
	_ = json.Unmarshal([]byte(again[0]), &k0)
	testutil.Eventually(t, 30*time.Second, func() bool {
		st, _, err := keyState(d.httpAddr, k0.Key)
		return err == nil && st.DuplicatesDropped == want[k0.Key].DuplicatesDropped+1
	}, "an id seen before the crash was not found a duplicate after it")
	if st, _, _ := keyState(d.httpAddr, k0.Key); st.Window.Max == 1000 {
		t.Fatalf("the resent event was applied: %+v", st.Window)
	}
	// Nothing fired again in the replay: the only alert this process sent
	// is a fresh one.
	marker := fmt.Sprintf(`{"key":"marker.cpu","ts":%d,"value":99,"id":"m"}`, now)
	if code, r, err := post(d.httpAddr, []string{marker}); code != http.StatusAccepted || err != nil {
		t.Fatalf("marker: %d %+v %v", code, r, err)
	}
	testutil.Eventually(t, 30*time.Second, func() bool { return metricValue(t, d.httpAddr, "squall_alerts_sent_total") >= 1 },
		"no alert sent for the marker")
	if n := metricValue(t, d.httpAddr, "squall_alerts_sent_total"); n != 1 {
		t.Fatalf("%v alerts sent since the restart, want only the marker's", n)
	}
}

// Acknowledged events survive kill -9 at any moment: writers post batches
// with ids while the node is killed; after the restart the batches not
// acknowledged are sent again (as a client retries), and every key counts
// each event exactly once.
func TestDurableKill9UnderLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the binary twice")
	}
	d := startDurable(t, t.TempDir())
	now := time.Now().UnixMilli()
	const writers, perWriter, batch = 4, 60, 100
	keys := make([]string, 50)
	for i := range keys {
		keys[i] = fmt.Sprintf("k%02d", i)
	}
	type result struct {
		lines []string
		acked bool
	}
	var mu sync.Mutex
	var sent []*result
	wantCount := map[string]int{}
	var wg sync.WaitGroup
	killAt := make(chan struct{})
	var once sync.Once
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for b := range perWriter {
				var lines []string
				for i := range batch {
					n := (w*perWriter+b)*batch + i
					k := keys[n%len(keys)]
					lines = append(lines, fmt.Sprintf(`{"key":%q,"ts":%d,"value":1,"id":"w%d"}`, k, now-60_000+int64(n%50_000), n))
				}
				r := &result{lines: lines}
				code, _, err := post(d.httpAddr, lines)
				r.acked = err == nil && code == http.StatusAccepted
				mu.Lock()
				sent = append(sent, r)
				for i := range lines {
					wantCount[keys[((w*perWriter+b)*batch+i)%len(keys)]]++
				}
				if len(sent) == writers*perWriter/3 {
					once.Do(func() { close(killAt) })
				}
				mu.Unlock()
			}
		}()
	}
	<-killAt
	d.kill9(t)
	wg.Wait()
	d.start(t)
	acked := 0
	for _, r := range sent {
		if r.acked {
			acked++
			continue
		}
		testutil.Eventually(t, time.Minute, func() bool {
			code, _, err := post(d.httpAddr, r.lines)
			return err == nil && code == http.StatusAccepted
		}, "resend refused")
	}
	t.Logf("%d batches acknowledged before, during and after the kill; %d sent again after the restart", acked, len(sent)-acked)
	if acked == 0 || acked == len(sent) {
		t.Fatalf("the kill did not fall among the writes (%d of %d acknowledged)", acked, len(sent))
	}
	testutil.Eventually(t, time.Minute, func() bool {
		for _, k := range keys {
			st, code, err := keyState(d.httpAddr, k)
			if err != nil || code != 200 || st.Window.Count != uint64(wantCount[k]) {
				return false
			}
		}
		return true
	}, "keys do not count each event once")
	for _, k := range keys {
		st, _, _ := keyState(d.httpAddr, k)
		if st.Window.Count != uint64(wantCount[k]) || st.Window.Sum != float64(wantCount[k]) {
			t.Errorf("key %s: count %d sum %v, want %d", k, st.Window.Count, st.Window.Sum, wantCount[k])
		}
	}
}

// What `make run` starts, the node binary with its defaults (but for the
// ports: free ones rather than 8080 and 4222), is durable: run in a
// working directory, it keeps its log in ./squall-data there; killed with
// kill -9 before it has committed what it applied and started again the
// same way, it shows every key's state as before.
func TestMakeRunDefaultsSurviveKill9(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the binary twice")
	}
	bin, dir := buildNode(t), t.TempDir()
	run := func() *proc {
		cmd := exec.Command(bin, "--http-addr", freeAddr(t), "--nats-addr", freeAddr(t))
		cmd.Dir = dir
		p := launch(t, cmd)
		waitReadyz(t, p.httpAddr)
		return p
	}
	p := run()
	batches, keys := durableBatches(time.Now().UnixMilli())
	for i, b := range batches {
		if code, r, err := post(p.httpAddr, b); code != http.StatusAccepted || err != nil {
			t.Fatalf("batch %d: %d %+v %v", i, code, r, err)
		}
	}
	testutil.Eventually(t, time.Minute, func() bool {
		doc, err := clusterDoc(p.httpAddr)
		if err != nil || len(doc.Sources) == 0 {
			return false
		}
		for _, s := range doc.Sources {
			if s.Applied != s.HighWatermark {
				return false
			}
		}
		return true
	}, "the node never applied what it stored")
	want := stateOf(t, p.httpAddr, keys)
	if want[keys[0]].Window.Count == 0 {
		t.Fatalf("no state to keep: %+v", want[keys[0]])
	}
	if st, err := os.Stat(filepath.Join(dir, "squall-data")); err != nil || !st.IsDir() {
		t.Fatalf("no ./squall-data in the working directory: %v", err)
	}
	if err := p.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-p.exited
	p = run()
	got := stateOf(t, p.httpAddr, keys)
	for _, k := range keys {
		if !reflect.DeepEqual(got[k], want[k]) {
			t.Errorf("key %s after kill -9 and the same command again:\n got %+v\nwant %+v", k, got[k], want[k])
		}
	}
}
