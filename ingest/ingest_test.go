package ingest_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"

	"github.com/squallhq/squall/actors"
	"github.com/squallhq/squall/api"
	"github.com/squallhq/squall/ingest"
	"github.com/squallhq/squall/internal/natstest"
	"github.com/squallhq/squall/internal/testutil"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func newIngester(t testing.TB, mod func(*actors.Config)) (*ingest.Ingester, *actors.Engine, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	cfg := actors.DefaultConfig()
	cfg.Partitions = 4
	cfg.Registerer = reg
	if mod != nil {
		mod(&cfg)
	}
	e, err := actors.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	in, err := ingest.New(e, reg, func() time.Time { return time.UnixMilli(1764064800000) })
	if err != nil {
		t.Fatal(err)
	}
	return in, e, reg
}

// Shed events are reported at their index in the body, between the
// validation rejections, marked for a retry.
func TestShedIndexesAmongRejections(t *testing.T) {
	in, _, reg := newIngester(t, func(c *actors.Config) { c.MaxKeys = 1; c.Partitions = 1 })
	body := `{"key":"a","value":1}
{"key":"","value":1}
{"key":"b","value":1}
{"key":"a","value":2}
{"value":1}
{"key":"c","value":1}`
	res, err := in.Ingest(context.Background(), ingest.SourceHTTP, []byte(body), "application/x-ndjson")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range res.Response.Rejected {
		got = append(got, fmt.Sprintf("%d:%s:%t", r.Index, r.Field, r.Retry))
	}
	// Only the shed ones (2 and 5) may succeed when sent again.
	if strings.Join(got, " ") != "1:key:false 2::true 4:key:false 5::true" || res.Shed != 2 || res.Response.Accepted != 2 {
		t.Fatalf("rejections %v shed %d accepted %d", got, res.Shed, res.Response.Accepted)
	}
	if v := value(t, reg, "squall_events_in_total", "http", "shed"); v != 2 {
		t.Fatalf("shed counter %v", v)
	}
}

// value reads the counter name{source, result or reason} from reg.
func value(t testing.TB, reg *prometheus.Registry, name, source, result string) float64 {
	t.Helper()
	v, _ := testutil.MetricValue(t, reg, name, func(l map[string]string) bool {
		return l["source"] == source && (l["result"] == result || l["reason"] == result)
	})
	return v
}

func startNATS(t testing.TB) *natsserver.Server { return natstest.Start(t, -1) }

// subscribe subscribes in to ns's squall.events on a connection closed
// when the test ends, and returns that connection.
func subscribe(t testing.TB, ns *natsserver.Server, in *ingest.Ingester) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	if _, err := ingest.SubscribeNATS(nc, ingest.DefaultNATSConfig(), in, slog.New(slog.DiscardHandler)); err != nil {
		t.Fatal(err)
	}
	return nc
}

// Bad NATS messages are counted by reason and never stop good ones.
func TestNATSBadMessagesCounted(t *testing.T) {
	in, e, reg := newIngester(t, nil)
	ns := startNATS(t)
	nc := subscribe(t, ns, in)
	pub, err := nats.Connect(ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	for i := 0; i < 100; i++ {
		pub.Publish("squall.events", []byte(`[{"key":`))                                                       // malformed body
		pub.Publish("squall.events", []byte(`{"key":"k","ts":1764064800000,"value":"high"}`))                  // bad value
		pub.Publish("squall.events", []byte(fmt.Sprintf(`{"key":"good","ts":%d,"value":1}`, 1764064700000+i))) // good
	}
	// A request gets the ingest answer.
	msg, err := pub.Request("squall.events", []byte(`[{"key":"r","value":1},{"key":"r","value":null}]`), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var r api.IngestResponse
	if err := json.Unmarshal(msg.Data, &r); err != nil || r.Accepted != 1 || len(r.Rejected) != 1 || r.Rejected[0].Field != "value" {
		t.Fatalf("reply %s (%v)", msg.Data, err)
	}
	msg, err = pub.Request("squall.events", []byte(`nope`), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(msg.Data, &r); err != nil || r.Error == "" {
		t.Fatalf("reply to a malformed body %s", msg.Data)
	}
	testutil.Eventually(t, 5*time.Second, func() bool {
		st, err := e.Get(context.Background(), "good")
		return err == nil && st.Window.Count == 100
	}, "good events not applied")
	for _, c := range []struct {
		metric, result string
		want           float64
	}{
		{"squall_ingest_body_errors_total", "malformed", 101},
		{"squall_events_invalid_total", "value", 101},
		{"squall_events_in_total", "invalid", 101},
		{"squall_events_in_total", "applied", 101},
	} {
		if v := value(t, reg, c.metric, "nats", c.result); v != c.want {
			t.Errorf("%s{%s} = %v, want %v", c.metric, c.result, v, c.want)
		}
	}
	nc.Drain()
	testutil.Eventually(t, 5*time.Second, nc.IsClosed, "drain")
}

// Events without ts get the arrival time.
func TestArrivalTime(t *testing.T) {
	in, e, _ := newIngester(t, nil)
	if _, err := in.Ingest(context.Background(), ingest.SourceHTTP, []byte(`{"key":"now","value":1}`), ""); err != nil {
		t.Fatal(err)
	}
	st, err := e.Get(context.Background(), "now")
	if err != nil {
		t.Fatal(err)
	}
	if st.Window.Last.TS != 1764064800000 {
		t.Fatalf("ts %d", st.Window.Last.TS)
	}
}

// A body of many bad events lists the first MaxListedRejections and counts
// the rest.
func TestRejectionsCapped(t *testing.T) {
	in, _, reg := newIngester(t, nil)
	body := strings.Repeat("{}\n", 5000) + `{"key":"ok","value":1}`
	res, err := in.Ingest(context.Background(), ingest.SourceHTTP, []byte(body), "")
	if err != nil {
		t.Fatal(err)
	}
	r := res.Response
	if r.Accepted != 1 || len(r.Rejected) != ingest.MaxListedRejections || r.RejectedOmitted != 5000-ingest.MaxListedRejections {
		t.Fatalf("accepted %d listed %d omitted %d", r.Accepted, len(r.Rejected), r.RejectedOmitted)
	}
	if v := value(t, reg, "squall_events_in_total", "http", "invalid"); v != 5000 {
		t.Fatalf("invalid counter %v", v)
	}
}

// The reproduction over NATS request/reply: an event stamped in
// year 3000 is rejected (index, field ts, a reason giving the limit) and
// never reaches the key's window; the next event on the key is applied.
// A ts in seconds is rejected too; backfill in ms is not.
func TestNATSFutureEventRejected(t *testing.T) {
	const now = 1764064800000
	in, e, reg := newIngester(t, nil)
	nc := subscribe(t, startNATS(t), in)
	r := natstest.Ingest(t, nc, "squall.events", `{"key":"p","ts":32503680000000,"value":99999}`)
	if r.Accepted != 0 || len(r.Rejected) != 1 || r.Rejected[0].Index != 0 || r.Rejected[0].Field != "ts" ||
		!strings.Contains(r.Rejected[0].Reason, "future") || !strings.Contains(r.Rejected[0].Reason, "5m0s") {
		t.Fatalf("year 3000: %+v", r)
	}
	if r = natstest.Ingest(t, nc, "squall.events", `{"key":"p","value":1}`); r.Accepted != 1 || len(r.Rejected) != 0 {
		t.Fatalf("normal event: %+v", r)
	}
	st, err := e.Get(context.Background(), "p")
	if err != nil {
		t.Fatal(err)
	}
	if st.EventsApplied != 1 || st.LateDropped != 0 || st.Window.Count != 1 || st.Window.Max != 1 || st.Window.ToTS > now {
		t.Fatalf("key p moved by the rejected event: applied %d late %d window %+v", st.EventsApplied, st.LateDropped, st.Window)
	}
	// Seconds for milliseconds, at index 1 of an array; 2019 backfill and
	// an event at the limit pass.
	r = natstest.Ingest(t, nc, "squall.events", fmt.Sprintf(`[{"key":"q","ts":1546300800000,"value":1},{"key":"q","ts":1764064800,"value":2},{"key":"q","ts":%d,"value":3}]`,
		now+5*60_000))
	if r.Accepted != 2 || len(r.Rejected) != 1 || r.Rejected[0].Index != 1 || r.Rejected[0].Field != "ts" ||
		!strings.Contains(r.Rejected[0].Reason, "seconds") {
		t.Fatalf("seconds: %+v", r)
	}
	if v := value(t, reg, "squall_events_invalid_total", "nats", "ts"); v != 2 {
		t.Errorf("squall_events_invalid_total{nats,ts} = %v, want 2", v)
	}
}

// WithMaxFuture sets the limit; 0 lifts it.
func TestWithMaxFuture(t *testing.T) {
	const now = 1764064800000
	for _, c := range []struct {
		d        time.Duration
		ts       int64
		accepted int
	}{
		{time.Minute, now + 60_000, 1},
		{time.Minute, now + 60_001, 0},
		{0, 32503680000000, 1},
	} {
		cfg := actors.DefaultConfig()
		cfg.Partitions = 1
		e, err := actors.New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		in, err := ingest.New(e, nil, func() time.Time { return time.UnixMilli(now) }, ingest.WithMaxFuture(c.d))
		if err != nil {
			t.Fatal(err)
		}
		res, err := in.Ingest(context.Background(), ingest.SourceHTTP, fmt.Appendf(nil, `{"key":"k","ts":%d,"value":1}`, c.ts), "")
		e.Close()
		if err != nil || res.Response.Accepted != c.accepted {
			t.Errorf("max future %s, ts %d: %+v %v", c.d, c.ts, res.Response, err)
		}
	}
}

// Only an undecodable body is the sender's fault: it alone matches
// ErrBadBody. A closed engine is the server's: no error, every event
// failed and marked for retry.
func TestErrBadBody(t *testing.T) {
	in, e, _ := newIngester(t, nil)
	for _, body := range []string{`[{"key":`, ``, `[{"key":"a","value":1}`} {
		_, err := in.Ingest(context.Background(), ingest.SourceHTTP, []byte(body), "")
		if !errors.Is(err, ingest.ErrBadBody) {
			t.Errorf("body %q: err %v, want ErrBadBody", body, err)
		}
		if err != nil && strings.Contains(err.Error(), ingest.ErrBadBody.Error()) {
			t.Errorf("body %q: message %q repeats the sentinel's", body, err)
		}
	}
	e.Close()
	res, err := in.Ingest(context.Background(), ingest.SourceHTTP, []byte(`{"key":"a","value":1}`), "")
	if err != nil || res.Failed != 1 || len(res.Response.Rejected) != 1 || !res.Response.Rejected[0].Retry {
		t.Fatalf("closed engine: %+v %v, want one failed event marked retry", res, err)
	}
}
