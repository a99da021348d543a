package ingest_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
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
// validation rejections.
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
		got = append(got, fmt.Sprintf("%d:%s", r.Index, r.Field))
	}
	if strings.Join(got, " ") != "1:key 2: 4:key 5:" || res.Shed != 2 || res.Response.Accepted != 2 {
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

// Bad NATS messages are counted by reason and never stop good ones.
func TestNATSBadMessagesCounted(t *testing.T) {
	in, e, reg := newIngester(t, nil)
	ns := startNATS(t)
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if _, err := ingest.SubscribeNATS(nc, ingest.DefaultNATSConfig(), in, log); err != nil {
		t.Fatal(err)
	}
	pub, err := nats.Connect(ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	for i := 0; i < 100; i++ {
		pub.Publish("squall.events", []byte(`[{"key":`))                                         // malformed body
		pub.Publish("squall.events", []byte(`{"key":"k","ts":1764064800000,"value":"high"}`))    // bad value
		pub.Publish("squall.events", []byte(fmt.Sprintf(`{"key":"good","ts":%d,"value":1}`, i))) // good
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

// Only an undecodable body is the sender's fault; a closed engine is not.
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
	_, err := in.Ingest(context.Background(), ingest.SourceHTTP, []byte(`{"key":"a","value":1}`), "")
	if err == nil || errors.Is(err, ingest.ErrBadBody) {
		t.Fatalf("closed engine: err %v, want an error that is not ErrBadBody", err)
	}
}
