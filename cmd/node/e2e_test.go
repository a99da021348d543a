package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/squallhq/squall/api"
	"github.com/squallhq/squall/internal/testutil"
)

// proc is a squall-node process started by a test.
type proc struct {
	cmd      *exec.Cmd
	httpAddr string
	natsURL  string
	exited   chan error
	mu       sync.Mutex
	log      bytes.Buffer
}

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
	binDir    string
)

// buildNode builds bin/squall-node once per test binary.
func buildNode(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		binDir, buildErr = os.MkdirTemp("", "squall-e2e-")
		if buildErr != nil {
			return
		}
		binPath = filepath.Join(binDir, "squall-node")
		out, err := exec.Command("go", "build", "-o", binPath, ".").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

var startedRE = regexp.MustCompile(`squall node started.*http=(\S+) nats=(\S+)`)

func startProc(t *testing.T, bin string, args ...string) *proc {
	t.Helper()
	if !slices.Contains(args, "--data-dir") {
		// Memory only (answered once applied), unless the test says
		// otherwise: never the default ./squall-data.
		args = append(args, "--data-dir", "")
	}
	return launch(t, exec.Command(bin, args...))
}

// launch starts cmd, a node, and returns once it has logged its start.
func launch(t *testing.T, cmd *exec.Cmd) *proc {
	t.Helper()
	p := &proc{cmd: cmd, exited: make(chan error, 1)}
	stderr, err := p.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ready := make(chan [2]string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			line := sc.Text()
			p.mu.Lock()
			p.log.WriteString(line + "\n")
			p.mu.Unlock()
			if m := startedRE.FindStringSubmatch(line); m != nil {
				ready <- [2]string{m[1], m[2]}
			}
		}
		p.exited <- p.cmd.Wait()
	}()
	t.Cleanup(func() {
		if p.cmd.ProcessState == nil {
			p.cmd.Process.Kill()
		}
		if t.Failed() {
			p.mu.Lock()
			t.Logf("node log:\n%s", p.log.String())
			p.mu.Unlock()
		}
	})
	select {
	case m := <-ready:
		p.httpAddr, p.natsURL = m[0], m[1]
	case err := <-p.exited:
		t.Fatalf("node exited before starting: %v\n%s", err, p.log.String())
	case <-time.After(30 * time.Second):
		t.Fatal("node did not log its start within 30s")
	}
	return p
}

type agg struct {
	count         int
	sum, min, max float64
	lastTS        int64
	last          float64
	values        []float64
}

func (a *agg) add(ts int64, v float64) {
	if a.count == 0 || v < a.min {
		a.min = v
	}
	if a.count == 0 || v > a.max {
		a.max = v
	}
	if a.count == 0 || ts >= a.lastTS {
		a.lastTS, a.last = ts, v
	}
	a.count++
	a.sum += v
	a.values = append(a.values, v)
}

// TestEndToEnd builds bin/squall-node, runs it on free ports, sends 100,000
// events for 1,000 keys, half over HTTP (NDJSON) and half over NATS, checks
// a sample of keys and the metrics, and stops it with SIGTERM.
func TestEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	bin := buildNode(t)
	p := startProc(t, bin, "--http-addr", "127.0.0.1:0", "--nats-addr", "127.0.0.1:0", "--node-id", "e2e")
	base := "http://" + p.httpAddr

	const keys, perKey = 1000, 100
	const t0 = int64(1764064800000)
	rng := rand.New(rand.NewPCG(7, 11))
	want := make(map[string]*agg, keys)
	var httpLines, natsLines []string
	for i := 0; i < perKey; i++ {
		for k := 0; k < keys; k++ {
			key := fmt.Sprintf("host-%03d.cpu", k)
			ts := t0 + int64(i)*1000 + int64(rng.IntN(1000))
			v := math.Round(rng.Float64()*10000) / 100
			if want[key] == nil {
				want[key] = &agg{}
			}
			want[key].add(ts, v)
			line := fmt.Sprintf(`{"key":%q,"ts":%d,"value":%v}`, key, ts, v)
			if (i+k)%2 == 0 {
				httpLines = append(httpLines, line)
			} else {
				natsLines = append(natsLines, line)
			}
		}
	}

	var wg sync.WaitGroup
	wg.Add(2)
	go func() { // HTTP, NDJSON batches of 1,000
		defer wg.Done()
		for i := 0; i < len(httpLines); i += 1000 {
			body := strings.Join(httpLines[i:min(i+1000, len(httpLines))], "\n")
			resp, err := http.Post(base+"/v1/events", "application/x-ndjson", strings.NewReader(body))
			if err != nil {
				t.Error(err)
				return
			}
			var r api.IngestResponse
			json.NewDecoder(resp.Body).Decode(&r)
			resp.Body.Close()
			if resp.StatusCode != 202 || r.Accepted != 1000 {
				t.Errorf("POST = %d %+v", resp.StatusCode, r)
				return
			}
		}
	}()
	go func() { // NATS, batches of 100 published to squall.events
		defer wg.Done()
		nc, err := nats.Connect(p.natsURL)
		if err != nil {
			t.Error(err)
			return
		}
		defer nc.Close()
		for i := 0; i < len(natsLines); i += 100 {
			if err := nc.Publish("squall.events", []byte(strings.Join(natsLines[i:min(i+100, len(natsLines))], "\n"))); err != nil {
				t.Error(err)
				return
			}
		}
		if err := nc.Flush(); err != nil {
			t.Error(err)
		}
	}()
	wg.Wait()
	if t.Failed() {
		return
	}

	metrics := func() string {
		resp, err := http.Get(base + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	testutil.Eventually(t, 20*time.Second, func() bool {
		return strings.Contains(metrics(), `squall_events_in_total{result="applied",source="nats"} 50000`)
	}, "NATS events not all applied")

	for k := 0; k < keys; k += 37 {
		key := fmt.Sprintf("host-%03d.cpu", k)
		resp, err := http.Get(base + "/debug/actors/" + url.PathEscape(key))
		if err != nil {
			t.Fatal(err)
		}
		var st api.KeyState
		json.NewDecoder(resp.Body).Decode(&st)
		resp.Body.Close()
		w, g := want[key], st.Window
		if resp.StatusCode != 200 || st.Key != key || st.Node != "e2e" {
			t.Fatalf("GET %s = %d %+v", key, resp.StatusCode, st)
		}
		if g.Count != uint64(w.count) || g.Min != w.min || g.Max != w.max || g.Last.TS != w.lastTS || g.Last.Value != w.last ||
			math.Abs(g.Sum-w.sum) > 1e-9*math.Abs(w.sum) || math.Abs(g.Mean-w.sum/float64(w.count)) > 1e-9 {
			t.Errorf("%s: got %+v, want count %d sum %v min %v max %v last %v@%d", key, g, w.count, w.sum, w.min, w.max, w.last, w.lastTS)
		}
		sort.Float64s(w.values)
		if p50 := w.values[int(0.5*float64(len(w.values)-1))]; math.Abs(g.P50-p50) > 0.01*math.Abs(p50) {
			t.Errorf("%s: p50 %v, want %v ±1%%", key, g.P50, p50)
		}
		if st.EventsApplied != perKey || len(st.Recent) != 32 {
			t.Errorf("%s: applied %d recent %d", key, st.EventsApplied, len(st.Recent))
		}
	}
	m := metrics()
	for _, want := range []string{
		`squall_events_in_total{result="applied",source="http"} 50000`,
		`squall_events_in_total{result="applied",source="nats"} 50000`,
		`squall_key_actors_live 1000`,
		`squall_key_activations_total 1000`,
		`squall_key_events_total{result="applied"} 100000`,
	} {
		if !strings.Contains(m, want) {
			t.Errorf("metrics lack %q", want)
		}
	}

	start := time.Now()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-p.exited:
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v", err)
		}
		if d := time.Since(start); d > 10*time.Second {
			t.Fatalf("took %s to exit", d)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("node did not exit within 10s of SIGTERM")
	}
}

// A taken port is a clear error naming the flag, and the process fails.
func TestTakenPortExits(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	bin := buildNode(t)
	p := startProc(t, bin, "--http-addr", "127.0.0.1:0", "--nats-addr", "127.0.0.1:0")
	cmd := exec.Command(bin, "--http-addr", p.httpAddr, "--nats-addr", "127.0.0.1:0")
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "--http-addr") || !strings.Contains(string(out), "address already in use") {
		t.Fatalf("second node on the same port: %v\n%s", err, out)
	}
	p.cmd.Process.Signal(syscall.SIGINT)
	if err := <-p.exited; err != nil {
		t.Fatalf("exit after SIGINT: %v", err)
	}
}

// logContains reports whether the node has logged s.
func (p *proc) logContains(s string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return strings.Contains(p.log.String(), s)
}
