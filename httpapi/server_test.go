package httpapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"

	"github.com/squallhq/squall/actors"
	"github.com/squallhq/squall/api"
	"github.com/squallhq/squall/httpapi"
	"github.com/squallhq/squall/ingest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// backend serves the debug endpoints from a real engine.
type backend struct{ *actors.Engine }

func (b backend) List(ctx context.Context, prefix, after string, limit int, _ bool) (*api.KeyList, error) {
	return b.Engine.List(ctx, prefix, after, limit)
}

// Replay answers what the kept events allow, without replaying them.
func (b backend) Replay(ctx context.Context, key string) (*api.KeyReplay, error) {
	ke, err := b.Events(ctx, key)
	if err != nil {
		return nil, err
	}
	kr := &api.KeyReplay{Key: key, Node: ke.Node, Complete: ke.Complete, Kept: ke.Kept, Received: ke.Received, Steps: []api.ReplayStep{}, Diff: []string{}}
	if !kr.Complete {
		kr.Error = "incomplete"
	}
	return kr, nil
}

func (b backend) Members(context.Context) (*api.Members, error) {
	return &api.Members{Self: "n1", Members: map[string]api.MemberStatus{"n1": {Ready: true}}}, nil
}

func (b backend) Cluster(context.Context) (*api.Cluster, error) {
	return &api.Cluster{Cluster: "standalone", Self: "n1", Leader: "n1", PartitionCount: b.Partitions()}, nil
}

func (b backend) Rules(context.Context) (*api.Rules, error) {
	return &api.Rules{Node: "n1"}, nil
}

func (b backend) Alerts(_ context.Context, cluster bool) (*api.Alerts, error) {
	return &api.Alerts{Alerts: []api.FiringAlert{{Node: map[bool]string{false: "n1", true: "all"}[cluster], Alert: json.RawMessage(`{"id":"r/k/1/firing"}`)}}}, nil
}

type fixture struct {
	srv *httptest.Server
	api *httpapi.Server
	e   *actors.Engine
}

func newFixture(t testing.TB, mod func(*httpapi.Config, *actors.Config)) *fixture {
	t.Helper()
	ac := actors.DefaultConfig()
	ac.Partitions = 8
	hc := httpapi.DefaultConfig()
	if mod != nil {
		mod(&hc, &ac)
	}
	reg := prometheus.NewRegistry()
	ac.Registerer = reg
	e, err := actors.New(ac)
	if err != nil {
		t.Fatal(err)
	}
	in, err := ingest.New(e, reg, nil)
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	s := httpapi.New(hc, backend{e}, in, reg, log)
	s.SetReady(true)
	ts := httptest.NewServer(s.Handler())
	t.Cleanup(func() { ts.Close(); e.Close() })
	return &fixture{srv: ts, api: s, e: e}
}

func (f *fixture) do(t testing.TB, method, path, ct, body string, hdr ...string) (int, []byte, http.Header) {
	t.Helper()
	req, err := http.NewRequest(method, f.srv.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if ct != "" {
		req.Header.Set("Content-Type", ct)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := f.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b, resp.Header
}

func decode[T any](t testing.TB, b []byte) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("decoding %s: %v", b, err)
	}
	return v
}

func TestIngestAndReadBack(t *testing.T) {
	f := newFixture(t, nil)
	code, b, _ := f.do(t, "POST", "/v1/events", "",
		`[{"key":"web-1.cpu","ts":1764064800000,"value":40},{"key":"web-1.cpu","ts":1764064801000,"value":60}]`)
	if code != http.StatusAccepted {
		t.Fatalf("POST = %d %s", code, b)
	}
	if r := decode[api.IngestResponse](t, b); r.Accepted != 2 || len(r.Rejected) != 0 {
		t.Fatalf("response %+v", r)
	}
	code, b, _ = f.do(t, "GET", "/debug/actors/web-1.cpu", "", "")
	if code != http.StatusOK {
		t.Fatalf("GET = %d %s", code, b)
	}
	st := decode[api.KeyState](t, b)
	if w := st.Window; w.Count != 2 || w.Sum != 100 || w.Min != 40 || w.Max != 60 || w.Mean != 50 {
		t.Fatalf("window %+v", w)
	}
	if st.Key != "web-1.cpu" || st.Node != "standalone" || len(st.Recent) != 2 || st.Subwindows["1m"].Count != 2 {
		t.Fatalf("state %+v", st)
	}
}

// GET /debug/actors/{key}/events: the key's kept events; a "/" of the key
// sent as %2F is the key's own, so a key ending in "/events" has its state
// and its events too.
func TestKeyEvents(t *testing.T) {
	f := newFixture(t, nil)
	code, b, _ := f.do(t, "POST", "/v1/events", "",
		`[{"key":"a/events","ts":1764064800000,"value":1,"id":"x"},{"key":"a/events","ts":1764064801000,"value":2,"id":"x"},{"key":"a","ts":1764064800000,"value":3}]`)
	if code != http.StatusAccepted {
		t.Fatalf("POST = %d %s", code, b)
	}
	code, b, _ = f.do(t, "GET", "/debug/actors/a%2Fevents/events", "", "")
	if code != http.StatusOK {
		t.Fatalf("GET events = %d %s", code, b)
	}
	ke := decode[api.KeyEvents](t, b)
	if ke.Key != "a/events" || ke.Received != 2 || !ke.Complete || len(ke.Events) != 2 || ke.Events[1].Outcome != "duplicate" ||
		ke.Partitions != 8 || ke.Shape.RetentionMs != 600_000 {
		t.Fatalf("events %s", b)
	}
	code, b, _ = f.do(t, "GET", "/debug/actors/a/events", "", "")
	if ke := decode[api.KeyEvents](t, b); code != http.StatusOK || ke.Key != "a" || len(ke.Events) != 1 {
		t.Fatalf("GET events of a = %d %s", code, b)
	}
	code, b, _ = f.do(t, "GET", "/debug/actors/a%2Fevents", "", "")
	if st := decode[api.KeyState](t, b); code != http.StatusOK || st.Key != "a/events" || st.DuplicatesDropped != 1 {
		t.Fatalf("GET state = %d %s", code, b)
	}
	if code, b, _ = f.do(t, "GET", "/debug/actors/nope/events", "", ""); code != http.StatusNotFound {
		t.Fatalf("GET events of a missing key = %d %s", code, b)
	}
	if code, _, _ = f.do(t, "POST", "/debug/actors/a/events", "", ""); code != http.StatusMethodNotAllowed {
		t.Fatalf("POST events = %d", code)
	}
}

func TestIngestFormatsAndPartialRejection(t *testing.T) {
	f := newFixture(t, nil)
	ndjson := `{"key":"a","ts":1764064800000,"value":1}
{"key":"","ts":1764064800000,"value":1}
not json
{"key":"b","ts":"2025-11-25T10:00:01Z","value":2.5}
{"key":"c","value":"x"}
`
	code, b, _ := f.do(t, "POST", "/v1/events", "application/x-ndjson", ndjson)
	if code != http.StatusAccepted {
		t.Fatalf("NDJSON = %d %s", code, b)
	}
	r := decode[api.IngestResponse](t, b)
	if r.Accepted != 2 || len(r.Rejected) != 3 {
		t.Fatalf("response %+v", r)
	}
	wantIdx := []int{1, 2, 4}
	for i, rej := range r.Rejected {
		if rej.Index != wantIdx[i] || rej.Reason == "" {
			t.Errorf("rejection %d = %+v, want index %d", i, rej, wantIdx[i])
		}
	}
	if r.Rejected[0].Field != "key" || r.Rejected[2].Field != "value" {
		t.Errorf("fields %+v", r.Rejected)
	}
	code, b, _ = f.do(t, "POST", "/v1/events", "application/json", `{"key":"single","ts":1764064800000,"value":7}`)
	if code != http.StatusAccepted {
		t.Fatalf("object = %d %s", code, b)
	}
	if code, _, _ := f.do(t, "GET", "/debug/actors/b", "", ""); code != http.StatusOK {
		t.Fatalf("b not applied: %d", code)
	}
}

func TestStatusCodes(t *testing.T) {
	f := newFixture(t, func(h *httpapi.Config, a *actors.Config) {
		h.MaxBodyBytes = 4096
		a.MaxKeys = 3
	})
	cases := []struct {
		name, method, path, ct, body string
		want                         int
	}{
		{"nothing valid", "POST", "/v1/events", "", `[{"key":"a","value":"NaN"}]`, 400},
		{"malformed body", "POST", "/v1/events", "", `[{"key":`, 400},
		{"empty body", "POST", "/v1/events", "", ``, 400},
		{"too large", "POST", "/v1/events", "", `[` + strings.Repeat(`{"key":"k","value":1},`, 400) + `{"key":"k","value":1}]`, 413},
		{"get unknown key", "GET", "/debug/actors/none", "", "", 404},
		{"bad limit", "GET", "/debug/actors?limit=0", "", "", 400},
		{"bad scope", "GET", "/debug/actors?scope=galaxy", "", "", 400},
		{"list", "GET", "/debug/actors?prefix=x&limit=5", "", "", 200},
		{"cluster", "GET", "/debug/cluster", "", "", 200},
		{"alerts", "GET", "/debug/alerts", "", "", 200},
		{"alerts of the cluster", "GET", "/debug/alerts?scope=cluster", "", "", 200},
		{"alerts bad scope", "GET", "/debug/alerts?scope=x", "", "", 400},
		{"healthz", "GET", "/healthz", "", "", 200},
		{"readyz", "GET", "/readyz", "", "", 200},
		{"metrics", "GET", "/metrics", "", "", 200},
		{"pprof off", "GET", "/debug/pprof/", "", "", 404},
		{"pprof cmdline off", "GET", "/debug/pprof/cmdline", "", "", 404},
		{"wrong method", "GET", "/v1/events", "", "", 405},
		{"wrong method on metrics", "POST", "/metrics", "", "", 405},
		{"actor wrong method", "DELETE", "/debug/actors/x", "", "", 405},
		{"unknown path", "GET", "/nope", "", "", 404},
		{"key at the limit", "GET", "/debug/actors/" + strings.Repeat("k", 256), "", "", 404},
		{"key over the limit", "GET", "/debug/actors/" + strings.Repeat("k", 257), "", "", 400},
		{"escaped key over the limit", "GET", "/debug/actors/" + strings.Repeat("%C3%BC", 129), "", "", 400},
		{"unsupported encoding", "POST", "/v1/events", "", `{"key":"a","value":1}`, 415},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var hdr []string
			if c.name == "unsupported encoding" {
				hdr = []string{"Content-Encoding", "br"}
			}
			code, b, h := f.do(t, c.method, c.path, c.ct, c.body, hdr...)
			if code != c.want {
				t.Fatalf("%s %s = %d %s, want %d", c.method, c.path, code, b, c.want)
			}
			if code < 400 {
				return
			}
			// Every error is JSON with a message, the mux's own included.
			if ct := h.Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type %q, body %q", ct, b)
			}
			if e := decode[api.Error](t, b); e.Error == "" && !strings.Contains(string(b), `"rejected":[{`) {
				t.Errorf("no error message: %s", b)
			}
			if code == 405 && h.Get("Allow") == "" {
				t.Errorf("405 without Allow")
			}
			if strings.Contains(string(b), strings.Repeat("k", 257)) {
				t.Errorf("the long key is echoed: %s", b)
			}
		})
	}
	// The scope reaches the backend.
	if _, b, _ := f.do(t, "GET", "/debug/alerts?scope=cluster", "", ""); !strings.Contains(string(b), `"node":"all"`) {
		t.Errorf("scope=cluster not passed on: %s", b)
	}

	// 429: the node holds MaxKeys keys; shed events are named, others applied.
	body := `[{"key":"k1","value":1},{"key":"k2","value":1},{"key":"k3","value":1},{"key":"k4","value":1},{"key":"k5","value":1}]`
	code, b, hdr := f.do(t, "POST", "/v1/events", "", body)
	if code != http.StatusTooManyRequests || hdr.Get("Retry-After") == "" {
		t.Fatalf("over max-keys = %d %s", code, b)
	}
	r := decode[api.IngestResponse](t, b)
	if r.Accepted != 3 || len(r.Rejected) != 2 {
		t.Fatalf("shed response %+v", r)
	}
	// Partitions race for the last key slots, so which keys are shed varies;
	// the rejections must name exactly the keys that have no actor.
	shed := map[int]bool{}
	for _, rej := range r.Rejected {
		if rej.Reason != api.ReasonShed {
			t.Fatalf("rejection %+v", rej)
		}
		shed[rej.Index] = true
	}
	for i := 0; i < 5; i++ {
		code, _, _ := f.do(t, "GET", fmt.Sprintf("/debug/actors/k%d", i+1), "", "")
		if shed[i] != (code == 404) {
			t.Errorf("k%d: shed=%v but GET = %d", i+1, shed[i], code)
		}
	}

	// 503 while not ready.
	f.api.SetReady(false)
	if code, b, _ := f.do(t, "POST", "/v1/events", "", `{"key":"a","value":1}`); code != 503 {
		t.Fatalf("not ready ingest = %d %s", code, b)
	}
	if code, _, _ := f.do(t, "GET", "/readyz", "", ""); code != 503 {
		t.Fatalf("not ready readyz = %d", code)
	}
}

func TestAuthToken(t *testing.T) {
	f := newFixture(t, func(h *httpapi.Config, _ *actors.Config) { h.AuthToken = "s3cret" })
	for _, p := range []string{"/debug/actors", "/metrics", "/debug/cluster", "/debug/actors/x"} {
		if code, _, hdr := f.do(t, "GET", p, "", ""); code != 401 || hdr.Get("WWW-Authenticate") == "" {
			t.Errorf("GET %s without token = %d", p, code)
		}
		if code, _, _ := f.do(t, "GET", p, "", "", "Authorization", "Bearer wrong"); code != 401 {
			t.Errorf("GET %s with wrong token = %d", p, code)
		}
	}
	if code, _, _ := f.do(t, "POST", "/v1/events", "", `{"key":"a","value":1}`); code != 401 {
		t.Errorf("POST without token = %d", code)
	}
	// Probes send no token.
	for _, p := range []string{"/healthz", "/readyz"} {
		if code, b, _ := f.do(t, "GET", p, "", ""); code != 200 {
			t.Errorf("%s without token = %d %s", p, code, b)
		}
	}
	f.api.SetReady(false)
	if code, b, _ := f.do(t, "GET", "/readyz", "", ""); code != 503 || !strings.Contains(string(b), "not ready") {
		t.Errorf("/readyz not ready without token = %d %s", code, b)
	}
	f.api.SetReady(true)
	// The scheme is case-insensitive (RFC 7235); the token is not.
	for _, auth := range []string{"Bearer s3cret", "bearer s3cret", "BEARER s3cret", "bEaReR  s3cret"} {
		if code, b, _ := f.do(t, "POST", "/v1/events", "", `{"key":"a","value":1}`, "Authorization", auth); code != 202 {
			t.Errorf("POST with %q = %d %s", auth, code, b)
		}
	}
	for _, auth := range []string{"Bearer S3CRET", "Basic s3cret", "Bearers3cret", "s3cret", "Bearer"} {
		if code, _, _ := f.do(t, "POST", "/v1/events", "", `{"key":"a","value":1}`, "Authorization", auth); code != 401 {
			t.Errorf("POST with %q = %d", auth, code)
		}
	}
}

// pprof is served only with Pprof, and then behind the token.
func TestPprof(t *testing.T) {
	f := newFixture(t, func(h *httpapi.Config, _ *actors.Config) { h.AuthToken = "s3cret"; h.Pprof = true })
	for _, p := range []string{"/debug/pprof/", "/debug/pprof/cmdline"} {
		if code, _, _ := f.do(t, "GET", p, "", ""); code != 401 {
			t.Errorf("GET %s without token = %d", p, code)
		}
		if code, _, _ := f.do(t, "GET", p, "", "", "Authorization", "Bearer s3cret"); code != 200 {
			t.Errorf("GET %s with token = %d", p, code)
		}
	}
	off := newFixture(t, func(h *httpapi.Config, _ *actors.Config) { h.AuthToken = "s3cret" })
	if code, b, _ := off.do(t, "GET", "/debug/pprof/cmdline", "", "", "Authorization", "Bearer s3cret"); code != 404 {
		t.Errorf("pprof off: GET cmdline = %d %s", code, b)
	}
}

// pprof's own errors are answered in JSON like every other error, and its
// answers pass through unchanged.
func TestPprofErrorsAreJSON(t *testing.T) {
	f := newFixture(t, func(h *httpapi.Config, _ *actors.Config) { h.Pprof = true })
	for _, c := range []struct {
		path string
		code int
		msg  string
	}{
		{"/debug/pprof/no-such-profile", 404, "Unknown profile"},
		{"/debug/pprof/heap?seconds=x", 400, `invalid value for "seconds"`},
		{"/debug/pprof/heap?seconds=1&debug=1", 400, "incompatible"},
	} {
		code, b, hdr := f.do(t, "GET", c.path, "", "")
		if code != c.code || hdr.Get("Content-Type") != "application/json" ||
			!strings.Contains(decode[api.Error](t, b).Error, c.msg) {
			t.Errorf("GET %s = %d %s %s, want %d and JSON naming %q", c.path, code, hdr.Get("Content-Type"), b, c.code, c.msg)
		}
	}
	code, b, hdr := f.do(t, "GET", "/debug/pprof/goroutine?debug=1", "", "")
	if code != 200 || !strings.HasPrefix(hdr.Get("Content-Type"), "text/plain") || !strings.Contains(string(b), "goroutine profile:") {
		t.Errorf("GET goroutine?debug=1 = %d %s %.80s", code, hdr.Get("Content-Type"), b)
	}
}

// Keys may hold "/", "//", "..", spaces, "%" and any UTF-8.
func TestKeysWithAwkwardBytes(t *testing.T) {
	f := newFixture(t, nil)
	keys := []string{"db-3.disk./var", "a//b/../c", "space key", "per%cent", "ключ/ü", "?q#frag"}
	var body bytes.Buffer
	for _, k := range keys {
		kj, _ := json.Marshal(k)
		fmt.Fprintf(&body, `{"key":%s,"ts":1764064800000,"value":1}`+"\n", kj)
	}
	if code, b, _ := f.do(t, "POST", "/v1/events", "application/x-ndjson", body.String()); code != 202 {
		t.Fatalf("POST = %d %s", code, b)
	}
	for _, k := range keys {
		code, b, _ := f.do(t, "GET", "/debug/actors/"+url.PathEscape(k), "", "")
		if code != 200 {
			t.Fatalf("GET %q = %d %s", k, code, b)
		}
		if st := decode[api.KeyState](t, b); st.Key != k {
			t.Fatalf("GET %q returned key %q", k, st.Key)
		}
	}
	// Unescaped slashes work too: the key is the rest of the path.
	if code, _, _ := f.do(t, "GET", "/debug/actors/db-3.disk./var", "", ""); code != 200 {
		t.Fatalf("raw slash key = %d", code)
	}
}

func TestMetricsCountIngest(t *testing.T) {
	f := newFixture(t, nil)
	f.do(t, "POST", "/v1/events", "", `[{"key":"a","value":1},{"key":"","value":1}]`)
	_, b, _ := f.do(t, "GET", "/metrics", "", "")
	for _, want := range []string{
		`squall_events_in_total{result="applied",source="http"} 1`,
		`squall_events_in_total{result="invalid",source="http"} 1`,
		`squall_events_invalid_total{reason="key",source="http"} 1`,
		`squall_key_actors_live 1`,
		`squall_apply_latency_seconds_count`,
	} {
		if !strings.Contains(string(b), want) {
			t.Errorf("metrics lack %q", want)
		}
	}
}

// BenchmarkIngestNDJSON measures HTTP NDJSON ingest through a real
// loopback server: batches of 1,000 ~80-byte events over 100K keys, each key
// one event per second of event time, posted by two concurrent clients on
// the same two cores.
func BenchmarkIngestNDJSON(b *testing.B) {
	f := newFixture(b, func(_ *httpapi.Config, a *actors.Config) { a.Partitions = 64 })
	const keys, batch, rounds = 100_000, 1000, 10
	var bodies [][]byte
	for r := 0; r < rounds; r++ {
		for i := 0; i < keys/batch; i++ {
			var buf bytes.Buffer
			for j := 0; j < batch; j++ {
				fmt.Fprintf(&buf, `{"key":"host-%05d.cpu.user","ts":%d,"value":%d.25}`+"\n", i*batch+j, 1764064800000+int64(r)*1000+int64(j), (j*7+r)%100)
			}
			bodies = append(bodies, buf.Bytes())
		}
	}
	client := f.srv.Client()
	post := func(body []byte) {
		resp, err := client.Post(f.srv.URL+"/v1/events", "application/x-ndjson", bytes.NewReader(body))
		if err != nil {
			b.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 202 {
			b.Fatalf("status %d", resp.StatusCode)
		}
	}
	for _, body := range bodies[:keys/batch] { // activate the keys
		post(body)
	}
	b.SetBytes(int64(len(bodies[0])))
	b.ReportAllocs()
	b.ResetTimer()
	var next atomic.Int64
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			post(bodies[int(next.Add(1))%len(bodies)])
		}
	})
	b.ReportMetric(float64(b.N)*batch/b.Elapsed().Seconds(), "events/s")
}

// Every answer of POST /v1/events is the ingest document with a list of
// rejections, never null, whatever refused the body.
func TestIngestErrorsListRejections(t *testing.T) {
	f := newFixture(t, func(h *httpapi.Config, _ *actors.Config) { h.MaxBodyBytes = 4096 })
	for _, c := range []struct {
		name, ct, body string
		hdr            []string
		code           int
	}{
		{"malformed", "", `[{"key":`, nil, 400},
		{"too large", "", strings.Repeat(" ", 5000), nil, 413},
		{"not gzip", "", `{"key":"a","value":1}`, []string{"Content-Encoding", "gzip"}, 400},
		{"unknown encoding", "", `{}`, []string{"Content-Encoding", "br"}, 415},
	} {
		code, b, _ := f.do(t, "POST", "/v1/events", c.ct, c.body, c.hdr...)
		if code != c.code {
			t.Errorf("%s: %d %s, want %d", c.name, code, b, c.code)
		}
		var m map[string]json.RawMessage
		if err := json.Unmarshal(b, &m); err != nil || string(m["rejected"]) != "[]" || len(m["error"]) == 0 {
			t.Errorf("%s: answer %s, want an error and \"rejected\":[]", c.name, b)
		}
	}
}
