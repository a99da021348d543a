package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"runtime/pprof"
	"runtime/trace"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kfake"
	"go.uber.org/goleak"
	"google.golang.org/protobuf/proto"

	"github.com/squallhq/squall/api"
	"github.com/squallhq/squall/client"
	"github.com/squallhq/squall/event"
	"github.com/squallhq/squall/httpapi"
	"github.com/squallhq/squall/internal/testutil"
	"github.com/squallhq/squall/internal/zktest"
	"github.com/squallhq/squall/messages"
	"github.com/squallhq/squall/node"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const token = "t0ken"

// TestOpenAPIConformance drives real nodes — standalone in memory and
// durable, a clustered node that cannot reach ZooKeeper, a 3-node cluster
// over a real ZooKeeper — through every endpoint, checking each request and
// answer against openapi.yaml; then that every answer the document lists
// was seen, and that every route the server registers is in the document.
func TestOpenAPIConformance(t *testing.T) {
	s := loadSpec(t)
	t.Run("routes", func(t *testing.T) { routesDocumented(t, s) })
	t.Run("standalone", func(t *testing.T) { standalone(t, s) })
	t.Run("durable", func(t *testing.T) { durable(t, s) })
	t.Run("shed-no-pprof", func(t *testing.T) { shedNoPprof(t, s) })
	t.Run("kafka", func(t *testing.T) { overKafka(t, s) })
	t.Run("not-joined", func(t *testing.T) { notJoined(t, s) })
	t.Run("failing-backend", func(t *testing.T) { failingBackend(t, s) })
	t.Run("cluster", func(t *testing.T) { threeNodes(t, s) })
	if t.Failed() {
		t.Log("coverage not checked: a scenario failed")
		return
	}
	s.checkCoverage(t)
}

// routesDocumented checks that every route the HTTP server registers is
// a path (and, when the route names one, a method) of the document.
func routesDocumented(t *testing.T, s *spec) {
	srv := httpapi.New(httpapi.Config{Pprof: true}, nil, nil, prometheus.NewRegistry(), slog.New(slog.DiscardHandler))
	for _, r := range srv.Routes() {
		method, path, ok := strings.Cut(r, " ")
		if !ok {
			method, path = "", r
		}
		item := s.doc.Paths.PathItems.GetOrZero(path)
		switch {
		case item == nil:
			t.Errorf("route %q: path %s not in openapi.yaml", r, path)
		case method == "" && item.GetOperations().Len() == 0:
			t.Errorf("route %q: no operation in openapi.yaml", r)
		case method != "" && item.GetOperations().GetOrZero(strings.ToLower(method)) == nil:
			t.Errorf("route %q: %s %s not in openapi.yaml", r, method, path)
		}
	}
}

// caller sends requests to one node through the checking transport.
type caller struct {
	t     *testing.T
	hc    *http.Client
	base  string
	token string // sent as a bearer token when set
}

func newCaller(t *testing.T, s *spec, n *node.Node, tok string) *caller {
	return &caller{t: t, hc: s.client(t), base: "http://" + n.HTTPAddr(), token: tok}
}

// do sends a request that stands to the document as w, with header
// pairs hdr, and returns the answer.
func (c *caller) do(w want, method, path string, body []byte, hdr ...string) (int, http.Header, []byte) {
	c.t.Helper()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, c.base+path, rd)
	if err != nil {
		c.t.Fatal(err)
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := c.hc.Do(as(req, w))
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		c.t.Fatal(err)
	}
	return resp.StatusCode, resp.Header, b
}

// expect sends a request and fails unless it is answered code.
func (c *caller) expect(code int, w want, method, path string, body []byte, hdr ...string) []byte {
	c.t.Helper()
	got, _, b := c.do(w, method, path, body, hdr...)
	if got != code {
		c.t.Errorf("%s %s = %d %s, want %d", method, path, got, b, code)
	}
	return b
}

// get is expect for a GET that follows the document.
func (c *caller) get(code int, path string) []byte {
	c.t.Helper()
	return c.expect(code, conforms, http.MethodGet, path, nil)
}

func startNode(t *testing.T, mod func(*node.Config)) *node.Node {
	t.Helper()
	cfg := node.DefaultConfig()
	cfg.DataDir = "" // memory only: answers once applied
	cfg.HTTPAddr, cfg.NATSAddr, cfg.Partitions = "127.0.0.1:0", "127.0.0.1:0", 8
	if mod != nil {
		mod(&cfg)
	}
	n, err := node.New(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := n.Close(); err != nil {
			t.Error(err)
		}
	})
	return n
}

func writeRules(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "rules.yaml")
	rules := "rules:\n" +
		"  - {name: hot, match: \"*.cpu\", aggregate: max, op: \">\", threshold: 90, severity: critical, labels: {team: infra}}\n" +
		"  - {name: quiet, match: \"*.heartbeat\", absent: 1h}\n"
	if err := os.WriteFile(p, []byte(rules), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func decode[T any](t *testing.T, b []byte) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("decoding %s: %v", b, err)
	}
	return v
}

// standalone: a node in memory with a token, rules and pprof; every
// endpoint, its successes and the errors a client can cause.
func standalone(t *testing.T, s *spec) {
	n := startNode(t, func(c *node.Config) {
		c.AuthToken, c.Rules, c.Pprof, c.MaxBodyBytes = token, writeRules(t), true, 64<<10
	})
	c := newCaller(t, s, n, token)
	ctx := context.Background()
	now := time.Now().UnixMilli()

	// The Go client, over the same checking transport: NDJSON, reads.
	gc, err := client.New(c.base, client.WithHTTPClient(c.hc), client.WithToken(token))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := gc.Send(ctx, event.Event{Key: "web-1.cpu", TS: now - 2000, Value: 40},
		event.Event{Key: "web-1.cpu", TS: now - 1000, Value: 60, Tags: map[string]string{"env": "prod"}},
		event.Event{Key: "web-1.cpu", TS: now, Value: 95}); err != nil {
		t.Fatal(err)
	}
	if _, err := gc.Get(ctx, "web-1.cpu"); err != nil {
		t.Fatal(err)
	}
	if _, err := gc.Events(ctx, "web-1.cpu"); err != nil {
		t.Fatal(err)
	}
	if _, err := gc.Keys(ctx, client.KeysOptions{Prefix: "web-"}); err != nil {
		t.Fatal(err)
	}
	if _, err := gc.Rules(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := gc.Cluster(ctx); err != nil {
		t.Fatal(err)
	}

	// Every request format: a JSON object, an array (RFC 3339 ts, id,
	// tags), a retried id (duplicate), a late event, NDJSON, protobuf,
	// gzip, no Content-Type (detected).
	ts := strconv.FormatInt(now, 10)
	post := func(code int, w want, body []byte, hdr ...string) api.IngestResponse {
		t.Helper()
		return decode[api.IngestResponse](t, c.expect(code, w, http.MethodPost, api.PathEvents, body, hdr...))
	}
	post(202, conforms, []byte(`{"key":"web-2.cpu","ts":`+ts+`,"value":12.5}`), "Content-Type", "application/json")
	batch := `[{"key":"db-3.disk./var","ts":"` + time.UnixMilli(now).UTC().Format(time.RFC3339Nano) + `","value":71.5,"id":"e-1","tags":{"env":"prod"}},` +
		`{"key":"ünï/çødé €","ts":` + ts + `,"value":-3}]`
	post(202, conforms, []byte(batch), "Content-Type", "application/json")
	if r := post(202, conforms, []byte(batch), "Content-Type", "application/json"); r.Duplicate == nil || *r.Duplicate != 1 {
		t.Errorf("the same id again: %+v, want 1 duplicate", r)
	}
	old := strconv.FormatInt(now-time.Hour.Milliseconds(), 10)
	if r := post(202, conforms, []byte(`{"key":"web-1.cpu","ts":`+old+`,"value":1}`), "Content-Type", "application/json"); r.Late == nil || *r.Late != 1 {
		t.Errorf("an event an hour behind: %+v, want 1 late", r)
	}
	post(202, conforms, []byte(`{"key":"web-1.heartbeat","value":1}`+"\n\n"+`{"key":"web-3.cpu","ts":null,"value":2}`+"\r\n"), "Content-Type", "application/x-ndjson")
	pb, err := proto.Marshal(&messages.EventBatch{Events: []*messages.Event{{Key: "web-4.cpu", Ts: now, Value: 7}}})
	if err != nil {
		t.Fatal(err)
	}
	post(202, conforms, pb, "Content-Type", "application/x-protobuf")
	post(202, conforms, testutil.Gzip(t, []byte(`[{"key":"web-5.cpu","value":3}]`)), "Content-Type", "application/json", "Content-Encoding", "gzip")
	post(202, conforms, []byte(`{"key":"web-6.cpu","value":4}`))

	// Rejected events: some (202), all (400); bodies refused as a whole.
	if r := post(202, breaks, []byte(`[{"key":"a.cpu","value":1},{"key":"","value":2}]`), "Content-Type", "application/json"); len(r.Rejected) != 1 || r.Rejected[0].Field != "key" {
		t.Errorf("one bad event of two: %+v", r)
	}
	post(400, breaks, []byte(`{"key":"p","ts":1764064800,"value":1}`), "Content-Type", "application/json")
	post(400, breaks, []byte(`[{"key":`), "Content-Type", "application/json")
	post(400, breaks, []byte(`[]`), "Content-Type", "application/json")
	post(400, conforms, []byte("not gzip"), "Content-Type", "text/plain", "Content-Encoding", "gzip")
	post(413, conforms, bytes.Repeat([]byte(" "), 65<<10), "Content-Type", "text/plain")
	post(413, conforms, testutil.Gzip(t, bytes.Repeat([]byte(" "), 1<<20)), "Content-Type", "text/plain", "Content-Encoding", "gzip")
	post(415, conforms, []byte(`{"key":"a","value":1}`), "Content-Encoding", "br")

	// Reads.
	testutil.Eventually(t, 10*time.Second, func() bool {
		a := decode[api.Alerts](t, c.get(200, api.PathAlerts))
		return len(a.Alerts) == 1
	}, "the rule hot did not fire on web-1.cpu")
	c.get(200, api.PathAlerts+"?scope=cluster")
	c.get(200, api.PathActor+"web-1.cpu")
	c.get(200, api.PathActor+"web-1.heartbeat") // an absent rule: value null
	for _, k := range []string{"db-3.disk./var", "ünï/çødé €", "web-1.cpu"} {
		st := decode[api.KeyState](t, c.get(200, api.PathActor+url.PathEscape(k)))
		if st.Key != k {
			t.Errorf("GET key %q answered key %q", k, st.Key)
		}
		ke := decode[api.KeyEvents](t, c.get(200, api.PathActor+url.PathEscape(k)+api.PathActorEvents))
		if ke.Key != k || ke.Restore != -1 {
			t.Errorf("GET events of %q: key %q restore %d, want -1 without a log", k, ke.Key, ke.Restore)
		}
	}
	for _, k := range []string{"db-3.disk./var", "web-1.cpu"} {
		if ks := decode[api.KeySeries](t, c.get(200, api.PathActor+url.PathEscape(k)+api.PathActorSeries)); ks.Key != k || len(ks.Buckets) == 0 {
			t.Errorf("GET series of %q: %+v", k, ks)
		}
		if kr := decode[api.KeyReplay](t, c.get(200, api.PathActor+url.PathEscape(k)+api.PathActorReplay)); kr.Key != k || !kr.Complete || len(kr.Diff) != 0 {
			t.Errorf("GET replay of %q: %+v", k, kr)
		}
	}
	// More events than a key keeps: no replay (409).
	var many strings.Builder
	for i := range 40 {
		fmt.Fprintf(&many, `{"key":"many.cpu","ts":%d,"value":%d}`+"\n", now+int64(i), i)
	}
	post(202, conforms, []byte(many.String()), "Content-Type", "application/x-ndjson")
	if kr := decode[api.KeyReplay](t, c.get(409, api.PathActor+"many.cpu"+api.PathActorReplay)); kr.Complete || kr.Error == "" || kr.State != nil {
		t.Errorf("GET replay of a key with more events than kept: %+v", kr)
	}
	for _, sub := range []string{"", api.PathActorEvents, api.PathActorSeries, api.PathActorReplay} {
		c.get(404, api.PathActor+"no-such-key"+sub)
		c.expect(400, breaks, http.MethodGet, api.PathActor+strings.Repeat("k", event.MaxKeyBytes+1)+sub, nil)
	}
	kl := decode[api.KeyList](t, c.get(200, api.PathActors+"?prefix=web-&limit=1"))
	if !kl.Truncated || len(kl.Keys) != 1 || kl.Next != kl.Keys[0].Key {
		t.Errorf("limit=1: %+v", kl)
	}
	if next := decode[api.KeyList](t, c.get(200, api.PathActors+"?prefix=web-&limit=1&after="+url.QueryEscape(kl.Next))); len(next.Keys) != 1 || next.Keys[0].Key <= kl.Next {
		t.Errorf("the page after %q: %+v", kl.Next, next)
	}
	if m := decode[api.Members](t, c.get(200, api.PathMembers)); len(m.Members) != 1 || !m.Members[m.Self].Ready {
		t.Errorf("members of a standalone node: %+v", m)
	}
	// The console's files, without the token.
	console := &caller{t: t, hc: c.hc, base: c.base}
	console.get(200, api.PathUI)
	console.get(200, api.PathUI+"app.js")
	console.get(200, api.PathUI+"style.css")
	console.get(404, api.PathUI+"no-such-file.js")
	c.get(200, api.PathActors+"?scope=cluster")
	c.expect(400, breaks, http.MethodGet, api.PathActors+"?limit=0", nil)
	c.expect(400, breaks, http.MethodGet, api.PathActors+"?limit=many", nil)
	c.expect(400, breaks, http.MethodGet, api.PathActors+"?scope=galaxy", nil)
	c.expect(400, breaks, http.MethodGet, api.PathAlerts+"?scope=galaxy", nil)
	c.get(200, api.PathCluster)
	c.get(200, api.PathRules)
	c.get(200, api.PathMetrics)
	c.get(200, api.PathHealthz)
	c.get(200, api.PathReadyz)

	// pprof, its errors in JSON; 500 while the test itself profiles.
	c.get(200, api.PathPprof)
	c.get(200, api.PathPprof+"cmdline")
	c.get(200, api.PathPprof+"symbol")
	c.expect(200, conforms, http.MethodPost, api.PathPprof+"symbol", []byte("0x1"), "Content-Type", "text/plain")
	c.get(200, api.PathPprof+"heap")
	c.get(200, api.PathPprof+"goroutine?debug=1")
	c.get(200, api.PathPprof+"profile?seconds=1")
	c.get(200, api.PathPprof+"trace?seconds=0.01")
	c.expect(400, breaks, http.MethodGet, api.PathPprof+"heap?seconds=soon", nil)
	c.expect(404, breaks, http.MethodGet, api.PathPprof+"no-such-profile", nil)
	if err := pprof.StartCPUProfile(io.Discard); err != nil {
		t.Fatal(err)
	}
	c.get(500, api.PathPprof+"profile?seconds=1")
	pprof.StopCPUProfile()
	if err := trace.Start(io.Discard); err != nil {
		t.Fatal(err)
	}
	c.get(500, api.PathPprof+"trace?seconds=0.01")
	trace.Stop()

	// Paths and methods the document does not list.
	c.expect(404, unlisted, http.MethodGet, "/no/such/path", nil)
	c.expect(404, unlisted, http.MethodGet, api.PathActor, nil)
	c.expect(405, unlisted, http.MethodGet, api.PathEvents, nil)
	c.expect(405, unlisted, http.MethodDelete, api.PathActors, nil)
	c.expect(405, unlisted, http.MethodPost, api.PathActor+"web-1.cpu", []byte("{}"))
	c.expect(405, unlisted, http.MethodPut, api.PathActor+"web-1.cpu"+api.PathActorEvents, nil)
	c.expect(405, unlisted, http.MethodPost, api.PathActor+"web-1.cpu"+api.PathActorReplay, nil)
	c.expect(405, unlisted, http.MethodPost, api.PathMembers, nil)
	c.expect(405, unlisted, http.MethodPost, api.PathHealthz, nil)

	// Without the token, or with another: 401 on every operation that has
	// security, whatever its parameters.
	anon := newCaller(t, s, n, "")
	wrong := newCaller(t, s, n, "not-"+token)
	for tmpl, item := range s.doc.Paths.PathItems.FromOldest() {
		for method, op := range item.GetOperations().FromOldest() {
			if op.Security != nil && len(op.Security) == 0 {
				continue // /healthz, /readyz
			}
			path := strings.NewReplacer("{key}", "web-1.cpu", "{profile}", "heap", "{file}", "app.js").Replace(tmpl)
			var body []byte
			var hdr []string
			if op.RequestBody != nil {
				body, hdr = []byte(`{"key":"a","value":1}`), []string{"Content-Type", op.RequestBody.Content.First().Key()}
			}
			anon.expect(401, conforms, strings.ToUpper(method), path, body, hdr...)
			wrong.expect(401, conforms, strings.ToUpper(method), path, body, hdr...)
		}
	}
	anon.get(200, api.PathHealthz)
	anon.get(200, api.PathReadyz)
	headAsGet(t, s, c)
}

// headAsGet checks what the document says of HEAD, which it does not list
// as an operation: every GET answers it with GET's status and no body.
// The profiles that take seconds to answer are left out.
func headAsGet(t *testing.T, s *spec, c *caller) {
	plain := &caller{t: t, hc: http.DefaultClient, base: c.base, token: c.token}
	for tmpl, item := range s.doc.Paths.PathItems.FromOldest() {
		if item.Get == nil || tmpl == api.PathPprof+"profile" || tmpl == api.PathPprof+"trace" {
			continue
		}
		path := strings.NewReplacer("{key}", "web-1.cpu", "{profile}", "heap", "{file}", "app.js").Replace(tmpl)
		get, _, _ := plain.do(conforms, http.MethodGet, path, nil)
		head, _, b := plain.do(conforms, http.MethodHead, path, nil)
		if head != get || len(b) != 0 {
			t.Errorf("HEAD %s = %d with %d bytes, want GET's %d and no body", path, head, len(b), get)
		}
	}
}

// durable: a node with a log of its own (--data-dir).
func durable(t *testing.T, s *spec) {
	n := startNode(t, func(c *node.Config) { c.DataDir, c.Partitions = t.TempDir(), 4 })
	withLog(t, newCaller(t, s, n, ""), 1) // one stream
}

// overKafka: a node that writes events to Kafka first.
func overKafka(t *testing.T, s *spec) {
	kc, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(4, "events"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(kc.Close)
	n := startNode(t, func(c *node.Config) {
		c.KafkaBrokers, c.KafkaTopic, c.KafkaGroup, c.Partitions = kc.ListenAddrs()[0], "events", "g", 4
	})
	withLog(t, newCaller(t, s, n, ""), 4) // a source a topic partition
}

// withLog drives a node with a log (its --data-dir, or Kafka): it is
// ready once it has replayed the log, answers once events are stored (late
// and duplicate not known yet), gives its keys' restore offsets and lists
// the partitions of the log it consumes.
func withLog(t *testing.T, c *caller, sources int) {
	t.Helper()
	testutil.Eventually(t, 30*time.Second, func() bool {
		code, _, _ := c.do(conforms, http.MethodGet, api.PathReadyz, nil)
		return code == 200
	}, "the node is not ready")
	r := decode[api.IngestResponse](t, c.expect(202, conforms, http.MethodPost, api.PathEvents,
		[]byte(`{"key":"d.cpu","value":1,"id":"x"}`+"\n"+`{"key":"d.cpu","value":2,"id":"x"}`), "Content-Type", "application/x-ndjson"))
	if r.Late != nil || r.Duplicate != nil || r.Accepted != 2 {
		t.Errorf("ingest: %+v, want 2 accepted, late and duplicate absent", r)
	}
	testutil.Eventually(t, 15*time.Second, func() bool {
		code, _, _ := c.do(conforms, http.MethodGet, api.PathActor+"d.cpu", nil)
		return code == 200
	}, "d.cpu not applied")
	if ke := decode[api.KeyEvents](t, c.get(200, api.PathActor+"d.cpu"+api.PathActorEvents)); ke.Restore < 0 {
		t.Errorf("restore %d, want an offset of the log", ke.Restore)
	}
	if cl := decode[api.Cluster](t, c.get(200, api.PathCluster)); len(cl.Sources) != sources {
		t.Errorf("%d log partitions listed, want %d", len(cl.Sources), sources)
	}
	c.get(200, api.PathActors)
}

// shedNoPprof: a node at its --max-keys sheds new keys (429), and without
// --pprof answers 404 on every /debug/pprof/ path.
func shedNoPprof(t *testing.T, s *spec) {
	n := startNode(t, func(c *node.Config) { c.MaxKeys = 1 })
	c := newCaller(t, s, n, "")
	c.expect(202, conforms, http.MethodPost, api.PathEvents, []byte(`{"key":"first","value":1}`))
	_, hdr, b := c.do(conforms, http.MethodPost, api.PathEvents, []byte(`[{"key":"first","value":2},{"key":"second","value":1}]`))
	r := decode[api.IngestResponse](t, b)
	if r.Accepted != 1 || len(r.Rejected) != 1 || !r.Rejected[0].Retry || hdr.Get("Retry-After") == "" {
		t.Errorf("a new key past --max-keys: %s (Retry-After %q), want one shed with retry", b, hdr.Get("Retry-After"))
	}
	for tmpl, item := range s.doc.Paths.PathItems.FromOldest() {
		if !strings.HasPrefix(tmpl, api.PathPprof) {
			continue
		}
		for method := range item.GetOperations().KeysFromOldest() {
			path := strings.ReplaceAll(tmpl, "{profile}", "heap")
			c.expect(404, conforms, strings.ToUpper(method), path, nil)
		}
	}
	c.get(200, api.PathRules) // no rules: an empty file
	c.get(200, api.PathAlerts)
}

// notJoined: a clustered node that cannot reach ZooKeeper answers 503
// with Retry-After at once: not ready, no owner for a key.
func notJoined(t *testing.T, s *spec) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	zk := ln.Addr().String()
	ln.Close() // nothing listens there now
	n := startNode(t, func(c *node.Config) { c.ZK, c.RemoteAddr = zk, "127.0.0.1:0" })
	c := newCaller(t, s, n, "")
	c.get(503, api.PathReadyz)
	c.expect(503, conforms, http.MethodPost, api.PathEvents, []byte(`{"key":"a","value":1}`))
	c.get(503, api.PathActor+"a")
	c.get(503, api.PathActor+"a"+api.PathActorEvents)
	c.get(200, api.PathCluster)
	c.get(200, api.PathHealthz)
}

// failingBackend: answers of the handlers that no scenario of a real node
// provokes at will (a member that stops answering during a
// scope=cluster listing), from an httpapi.Server over a backend that fails.
func failingBackend(t *testing.T, s *spec) {
	srv := httpapi.New(httpapi.DefaultConfig(), failing{}, nil, prometheus.NewRegistry(), slog.New(slog.DiscardHandler))
	ts := httptest.NewServer(srv.Handler())
	t.Cleanup(ts.Close)
	c := &caller{t: t, hc: s.client(t), base: ts.URL}
	c.get(503, api.PathActors+"?scope=cluster")
	for _, path := range []string{api.PathCluster, api.PathMembers, api.PathRules,
		api.PathActor + "k" + api.PathActorSeries, api.PathActor + "k" + api.PathActorReplay} {
		c.get(503, path)
	}
}

// failing is a Backend whose every call fails as a member that does not
// answer does.
type failing struct{}

var errPeer = errors.New("listing keys on n3: no answer")

func (failing) Get(context.Context, string) (*api.KeyState, error)     { return nil, errPeer }
func (failing) Events(context.Context, string) (*api.KeyEvents, error) { return nil, errPeer }
func (failing) Series(context.Context, string) (*api.KeySeries, error) { return nil, errPeer }
func (failing) Replay(context.Context, string) (*api.KeyReplay, error) { return nil, errPeer }
func (failing) Members(context.Context) (*api.Members, error)          { return nil, errPeer }
func (failing) List(context.Context, string, string, int, bool) (*api.KeyList, error) {
	return nil, errPeer
}
func (failing) Rules(context.Context) (*api.Rules, error)         { return nil, errPeer }
func (failing) Cluster(context.Context) (*api.Cluster, error)     { return nil, errPeer }
func (failing) Alerts(context.Context, bool) (*api.Alerts, error) { return nil, errPeer }

// threeNodes: a cluster of three nodes over a real ZooKeeper, where every
// node answers every read, routed to the key's owner.
func threeNodes(t *testing.T, s *spec) {
	z := zktest.Start(t)
	rules := writeRules(t)
	var nodes []*node.Node
	var callers []*caller
	for _, id := range []string{"n1", "n2", "n3"} {
		n := startNode(t, func(c *node.Config) {
			c.ZK, c.NodeID, c.Cluster, c.RemoteAddr = z.Addr(), id, "conformance", "127.0.0.1:0"
			c.AuthToken, c.Rules = token, rules
		})
		nodes = append(nodes, n)
		callers = append(callers, newCaller(t, s, n, token))
	}
	testutil.Eventually(t, 60*time.Second, func() bool {
		gens := map[int64]bool{}
		for _, c := range callers {
			if code, _, _ := c.do(conforms, http.MethodGet, api.PathReadyz, nil); code != 200 {
				return false
			}
			cl := decode[api.Cluster](t, c.get(200, api.PathCluster))
			if len(cl.Members) != 3 || len(cl.Assignment) != 8 {
				return false
			}
			gens[cl.Generation] = true
		}
		return len(gens) == 1
	}, "three nodes did not settle")

	now := time.Now().UnixMilli()
	var body strings.Builder
	keys := []string{"c1.cpu", "c2.cpu", "c3.cpu", "c4.cpu", "c5.cpu", "c6.cpu", "db/7.cpu"}
	for _, k := range keys {
		body.WriteString(`{"key":"` + k + `","ts":` + strconv.FormatInt(now, 10) + `,"value":99}` + "\n")
	}
	r := decode[api.IngestResponse](t, callers[0].expect(202, conforms, http.MethodPost, api.PathEvents,
		[]byte(body.String()), "Content-Type", "application/x-ndjson"))
	if r.Accepted != len(keys) {
		t.Fatalf("cluster ingest: %+v", r)
	}
	owners := map[string]bool{}
	for _, k := range keys {
		var owner string
		for i, c := range callers {
			st := decode[api.KeyState](t, c.get(200, api.PathActor+url.PathEscape(k)))
			ke := decode[api.KeyEvents](t, c.get(200, api.PathActor+url.PathEscape(k)+api.PathActorEvents))
			ks := decode[api.KeySeries](t, c.get(200, api.PathActor+url.PathEscape(k)+api.PathActorSeries))
			kr := decode[api.KeyReplay](t, c.get(200, api.PathActor+url.PathEscape(k)+api.PathActorReplay))
			if i == 0 {
				owner = st.Node
			}
			if st.Node != owner || ke.Node != owner || ks.Node != owner || kr.Node != owner {
				t.Errorf("key %s: n%d answers from %s, %s, %s and %s, n1 from %s", k, i+1, st.Node, ke.Node, ks.Node, kr.Node, owner)
			}
			if len(kr.Diff) != 0 {
				t.Errorf("key %s: the replay on %s differs from the live key: %q", k, kr.Node, kr.Diff)
			}
		}
		owners[owner] = true
	}
	if len(owners) < 2 {
		t.Errorf("every key on %v: no read was routed to another node", owners)
	}
	for _, c := range callers {
		if kl := decode[api.KeyList](t, c.get(200, api.PathActors+"?scope=cluster")); len(kl.Keys) != len(keys) {
			t.Errorf("scope=cluster lists %d keys, want %d", len(kl.Keys), len(keys))
		}
		c.get(200, api.PathActors)
		c.get(404, api.PathActor+"no-such-key")
		c.get(200, api.PathRules)
		if m := decode[api.Members](t, c.get(200, api.PathMembers)); len(m.Members) != 3 {
			t.Errorf("members: %+v", m)
		}
	}
	testutil.Eventually(t, 10*time.Second, func() bool {
		a := decode[api.Alerts](t, callers[1].get(200, api.PathAlerts+"?scope=cluster"))
		return len(a.Alerts) == len(keys) && len(a.Errors) == 0
	}, "the cluster's alerts are not all listed")
}
