package client_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/squallhq/squall/actors"
	"github.com/squallhq/squall/api"
	"github.com/squallhq/squall/client"
	"github.com/squallhq/squall/event"
	"github.com/squallhq/squall/httpapi"
	"github.com/squallhq/squall/ingest"
	"github.com/squallhq/squall/internal/natstest"
	"github.com/squallhq/squall/internal/testutil"
)

// engineBackend serves the engine's keys; the cluster views are not used.
type engineBackend struct{ *actors.Engine }

func (b engineBackend) List(ctx context.Context, prefix, after string, limit int, _ bool) (*api.KeyList, error) {
	return b.Engine.List(ctx, prefix, after, limit)
}
func (engineBackend) Replay(context.Context, string) (*api.KeyReplay, error) {
	return nil, actors.ErrNotFound
}
func (engineBackend) Members(context.Context) (*api.Members, error)     { return &api.Members{}, nil }
func (engineBackend) Cluster(context.Context) (*api.Cluster, error)     { return &api.Cluster{}, nil }
func (engineBackend) Alerts(context.Context, bool) (*api.Alerts, error) { return &api.Alerts{}, nil }
func (engineBackend) Rules(context.Context) (*api.Rules, error)         { return &api.Rules{}, nil }

// shedNode is a real engine, ingester and HTTP handler (and NATS
// subscription) with a test clock and --max-keys 3, two of them held by
// idle keys. The first answer that sheds events makes room before it
// reaches the client: the clock moves past the idle keys' TTL and a sweep
// passivates them. Each POST body is kept.
type shedNode struct {
	e      *actors.Engine
	url    string
	nc     *nats.Conn
	mu     sync.Mutex
	bodies []string
	sweeps int
}

const (
	relaySubject = "test.relay"
	shedTS       = 1764064800000
)

func newShedNode(t *testing.T) *shedNode {
	t.Helper()
	clock := testutil.NewClock(time.UnixMilli(shedTS))
	cfg := actors.DefaultConfig()
	cfg.Partitions = 1 // the events of a batch meet the key limit in order
	cfg.MaxKeys = 3
	cfg.IdleTTL = time.Minute
	cfg.Clock = clock
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	e, err := actors.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	reg := prometheus.NewRegistry()
	in, err := ingest.New(e, reg, nil)
	if err != nil {
		t.Fatal(err)
	}
	out := make([]actors.Result, 2)
	if err := e.Submit(context.Background(), []event.Event{{Key: "idle-1", TS: shedTS, Value: 1}, {Key: "idle-2", TS: shedTS, Value: 1}}, out); err != nil {
		t.Fatal(err)
	}
	clock.Advance(30 * time.Second) // the batch's keys will be active 30 s after the idle ones
	n := &shedNode{e: e}
	makeRoom := func() {
		n.mu.Lock()
		defer n.mu.Unlock()
		if n.sweeps > 0 {
			return
		}
		n.sweeps++
		clock.Advance(40 * time.Second) // idle keys 70 s idle, the batch's 40 s: TTL 1 m
		if got, err := e.Sweep(context.Background()); got != 2 || err != nil {
			t.Errorf("sweep passivated %d keys (%v), want the 2 idle ones", got, err)
		}
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	s := httpapi.New(httpapi.DefaultConfig(), engineBackend{e}, in, reg, log)
	s.SetReady(true)
	h := s.Handler()
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		n.mu.Lock()
		n.bodies = append(n.bodies, string(b))
		n.mu.Unlock()
		r.Body = io.NopCloser(bytes.NewReader(b))
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, r)
		if rec.Code == http.StatusTooManyRequests {
			makeRoom()
		}
		for k, v := range rec.Header() {
			w.Header()[k] = v
		}
		w.WriteHeader(rec.Code)
		w.Write(rec.Body.Bytes())
	}))
	t.Cleanup(ts.Close)
	n.url = ts.URL

	// NATS: the node answers on squall.events; a relay on relaySubject
	// passes requests on and makes room like the HTTP front.
	ns := natstest.Start(t, -1)
	srv := natstest.Connect(t, ns)
	if _, err := ingest.SubscribeNATS(srv, ingest.DefaultNATSConfig(), in, log); err != nil {
		t.Fatal(err)
	}
	if _, err := srv.Subscribe(relaySubject, func(m *nats.Msg) {
		n.mu.Lock()
		n.bodies = append(n.bodies, string(m.Data))
		n.mu.Unlock()
		fwd := nats.NewMsg("squall.events")
		fwd.Header, fwd.Data = m.Header, m.Data
		reply, err := srv.RequestMsg(fwd, 10*time.Second)
		if err != nil {
			t.Errorf("relay: %v", err)
			return
		}
		if bytes.Contains(reply.Data, []byte(api.ReasonShed)) {
			makeRoom()
		}
		m.Respond(reply.Data)
	}); err != nil {
		t.Fatal(err)
	}
	n.nc = natstest.Connect(t, ns)
	return n
}

// count returns how many events key's window holds.
func (n *shedNode) count(t *testing.T, key string) int64 {
	t.Helper()
	st, err := n.e.Get(context.Background(), key)
	if err != nil {
		t.Fatalf("Get(%s): %v", key, err)
	}
	return int64(st.Window.Count)
}

// shedBatch: k1 takes the last free key, the invalid event (index 1) is
// rejected for good, k2 and k3 are shed until the idle keys go.
var shedBatch = []event.Event{
	{Key: "k1", TS: shedTS, Value: 1},
	{Key: "", TS: shedTS, Value: 9},
	{Key: "k2", TS: shedTS, Value: 2},
	{Key: "k1", TS: shedTS + 1, Value: 3},
	{Key: "k3", TS: shedTS, Value: 4},
}

// checkShedResend checks the merged answer and that each event was
// applied once.
func checkShedResend(t *testing.T, n *shedNode, res *api.IngestResponse, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("Send: %v", err)
	}
	zero := 0
	want := &api.IngestResponse{Accepted: 4, Late: &zero, Duplicate: &zero,
		Rejected: []event.Rejection{{Index: 1, Field: "key", Reason: "key must not be empty"}}}
	if !reflect.DeepEqual(res, want) {
		t.Errorf("answer %+v, want %+v", res, want)
	}
	for key, want := range map[string]int64{"k1": 2, "k2": 1, "k3": 1} {
		if got := n.count(t, key); got != want {
			t.Errorf("%s holds %d events, want %d", key, got, want)
		}
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if len(n.bodies) != 2 || strings.Count(n.bodies[1], "\n") != 2 || !strings.Contains(n.bodies[1], `"k2"`) || !strings.Contains(n.bodies[1], `"k3"`) {
		t.Errorf("bodies sent %q, want the batch, then k2 and k3 alone", n.bodies)
	}
}

// A batch partly shed: the client sends the shed events again, and only
// them, so each event counts once even without ids; the answer it returns
// covers the whole batch in the caller's numbering.
func TestSendResendsOnlyShedEvents(t *testing.T) {
	n := newShedNode(t)
	c, err := client.New(n.url, client.WithoutAutoID(), client.WithMaxRetryWait(time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	res, err := c.Send(context.Background(), shedBatch...)
	checkShedResend(t, n, res, err)
}

// The same over NATS request/reply, whose answer has no status.
func TestSendResendsOnlyShedEventsNATS(t *testing.T) {
	n := newShedNode(t)
	c, err := client.New("http://127.0.0.1:1", client.WithNATS(n.nc, relaySubject), client.WithoutAutoID(),
		client.WithMaxRetryWait(time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	res, err := c.Send(context.Background(), shedBatch...)
	checkShedResend(t, n, res, err)
}

// When the retries run out, the error carries the merged answer: what was
// taken, and the events still to send with Retry set.
func TestSendGivesUpWithMergedAnswer(t *testing.T) {
	n := newShedNode(t)
	n.sweeps = 1 // no room ever appears
	c, err := client.New(n.url, client.WithRetries(3, time.Millisecond), client.WithMaxRetryWait(time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Send(context.Background(), shedBatch...)
	var se *client.StatusError
	if !errors.As(err, &se) || se.Status != http.StatusTooManyRequests || se.Response == nil {
		t.Fatalf("Send = %v, want a 429 StatusError with the answer", err)
	}
	var got []int
	for _, r := range se.Response.Rejected {
		if r.Retry {
			got = append(got, r.Index)
		}
	}
	if se.Response.Accepted != 2 || *se.Response.Duplicate != 0 || !reflect.DeepEqual(got, []int{2, 4}) || len(se.Response.Rejected) != 3 {
		t.Fatalf("answer %+v: want 2 accepted, none duplicate, events 2 and 4 to retry, 1 invalid", se.Response)
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if len(n.bodies) != 3 || strings.Count(n.bodies[2], "\n") != 2 {
		t.Errorf("bodies sent %q, want the batch, then twice the 2 shed events", n.bodies)
	}
}

// unavailableOnce answers the first POST with 503 and Retry-After: after,
// then passes requests to h. It counts the requests.
type unavailableOnce struct {
	h     http.Handler
	after string
	mu    sync.Mutex
	n     int
}

func (u *unavailableOnce) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	u.mu.Lock()
	u.n++
	first := u.n == 1
	u.mu.Unlock()
	if first && r.Method == http.MethodPost {
		w.Header().Set("Retry-After", u.after)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusServiceUnavailable)
		io.WriteString(w, `{"accepted":0,"rejected":[],"error":"node not ready"}`)
		return
	}
	u.h.ServeHTTP(w, r)
}

func (u *unavailableOnce) requests() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.n
}

// frontNode returns a real node behind an unavailableOnce front.
func frontNode(t *testing.T, after string) (*unavailableOnce, string) {
	t.Helper()
	n := startNode(t, "127.0.0.1:0", nil)
	target, err := url.Parse("http://" + n.HTTPAddr())
	if err != nil {
		t.Fatal(err)
	}
	u := &unavailableOnce{h: httputil.NewSingleHostReverseProxy(target), after: after}
	ts := httptest.NewServer(u)
	t.Cleanup(ts.Close)
	return u, ts.URL
}

// A 503 is retried, after the Retry-After (capped), and succeeds.
func TestSendRetries503(t *testing.T) {
	u, base := frontNode(t, "3600")
	c, err := client.New(base, client.WithMaxRetryWait(time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	res, err := c.Send(ctx, event.Event{Key: "k", TS: shedTS, Value: 1})
	if err != nil || res.Accepted != 1 || u.requests() != 2 {
		t.Fatalf("Send = %+v, %v after %d requests; want accepted after a retry", res, err, u.requests())
	}
	st, err := c.Get(ctx, "k")
	if err != nil || st.Window.Count != 1 {
		t.Fatalf("Get = %+v %v", st, err)
	}
}

// Retry-After is honoured: a wait that would end past the context's
// deadline is not started, and Send returns at once with the 503.
func TestSendRetryAfterNeverPastContext(t *testing.T) {
	u, base := frontNode(t, "3600")
	c, err := client.New(base, client.WithRetries(5, time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err = c.Send(ctx, event.Event{Key: "k", TS: shedTS, Value: 1})
	var se *client.StatusError
	if !errors.As(err, &se) || se.Status != http.StatusServiceUnavailable || se.RetryAfter != time.Hour || u.requests() != 1 {
		t.Fatalf("Send = %v after %d requests; want the 503 at once, not retried", err, u.requests())
	}
	if ctx.Err() != nil {
		t.Fatal("Send waited until the context ended")
	}
}
