package output

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/squallhq/squall/internal/natstest"
	"github.com/squallhq/squall/internal/testproc"
	"github.com/squallhq/squall/internal/testutil"
)

const testTopic = "alerts"

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// logBuffer collects log lines for a test to count.
type logBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// count returns the number of lines holding s.
func (l *logBuffer) count(s string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for line := range strings.Lines(l.b.String()) {
		if strings.Contains(line, s) {
			n++
		}
	}
	return n
}

func (l *logBuffer) logger() *slog.Logger { return slog.New(slog.NewTextHandler(l, nil)) }

// waitFor polls cond until it holds, failing the test after 20s.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// newOutputs starts Outputs on a fresh registry with a quiet logger (unless
// cfg sets them) and closes them when the test ends.
func newOutputs(t testing.TB, cfg Config, sinks ...Sink) (*Outputs, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	if cfg.Registerer == nil {
		cfg.Registerer = reg
	}
	if cfg.Logger == nil {
		cfg.Logger = quietLogger()
	}
	o, err := New(cfg, sinks...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		_ = o.Close(ctx) // a test that cares checks Close itself; here only the goroutines matter
	})
	return o, reg
}

// metricValue returns the value of the gauge or counter name{sink=sink}.
func metricValue(t testing.TB, reg *prometheus.Registry, name, sink string) float64 {
	t.Helper()
	v, ok := testutil.MetricValue(t, reg, name, func(l map[string]string) bool { return l["sink"] == sink })
	if !ok {
		t.Fatalf("no metric %s{sink=%q}", name, sink)
	}
	return v
}

// testAlert returns alert number i of key, with payload {"id": id}.
func testAlert(t testing.TB, key string, i int, part int32, off int64) Alert {
	t.Helper()
	id := fmt.Sprintf("rule/%s/%d/firing", key, i)
	payload, err := json.Marshal(struct {
		ID string `json:"id"`
	}{id})
	if err != nil {
		t.Fatal(err)
	}
	return Alert{Key: key, ID: id, Payload: payload, Partition: part, Offset: off}
}

func send(t testing.TB, o *Outputs, a Alert) {
	t.Helper()
	if err := o.Send(context.Background(), a); err != nil {
		t.Fatalf("send %s: %v", a.ID, err)
	}
}

// freePort returns a loopback port that was free a moment ago, for a NATS
// server restarted on it.
func freePort(t testing.TB) int { return testproc.FreePort(t) }

// startNATS starts an in-process NATS server on port (-1: random), shut
// down when the test ends (Shutdown is idempotent, so tests may shut it
// down earlier).
func startNATS(t testing.TB, port int) *server.Server { return natstest.Start(t, port) }

func stopNATS(s *server.Server) { s.Shutdown(); s.WaitForShutdown() }

// connect returns a connection to url, closed when the test ends.
func connect(t testing.TB, url string, opts ...nats.Option) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// gateDialer dials only while open: it keeps a reconnecting nats.Conn off
// a restarted server until the test is ready for it.
type gateDialer struct {
	open atomic.Bool
	d    net.Dialer
}

func (g *gateDialer) Dial(network, addr string) (net.Conn, error) {
	if !g.open.Load() {
		return nil, errors.New("gate closed")
	}
	return g.d.Dial(network, addr)
}

// reconnecting returns a connection to url that reconnects forever, fast,
// dialing through gate.
func reconnecting(t testing.TB, url string, gate *gateDialer) *nats.Conn {
	t.Helper()
	return connect(t, url, nats.MaxReconnects(-1), nats.ReconnectWait(10*time.Millisecond),
		nats.ReconnectJitter(0, 0), nats.SetCustomDialer(gate))
}

// received is a message a collector got.
type received struct {
	subject, id string
}

// collector records the alert messages a subscription receives, in order.
type collector struct {
	mu   sync.Mutex
	msgs []received
	bad  error
}

// subscribe subscribes to subject on a fresh connection to url and returns
// once the server has registered the subscription.
func subscribe(t testing.TB, url, subject string) *collector {
	t.Helper()
	nc := connect(t, url)
	c := &collector{}
	_, err := nc.Subscribe(subject, func(m *nats.Msg) {
		var doc struct {
			ID string `json:"id"`
		}
		err := json.Unmarshal(m.Data, &doc)
		c.mu.Lock()
		defer c.mu.Unlock()
		if err != nil && c.bad == nil {
			c.bad = fmt.Errorf("message on %s: %w", m.Subject, err)
		}
		c.msgs = append(c.msgs, received{subject: m.Subject, id: doc.ID})
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	return c
}

func (c *collector) got(t testing.TB) []received {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.bad != nil {
		t.Fatal(c.bad)
	}
	return append([]received(nil), c.msgs...)
}

func (c *collector) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.msgs)
}

// ids returns the distinct ids received.
func (c *collector) ids(t testing.TB) map[string]bool {
	t.Helper()
	ids := make(map[string]bool)
	for _, m := range c.got(t) {
		ids[m.id] = true
	}
	return ids
}

// startKafka starts a one-broker kfake cluster with the one-partition topic
// "alerts", closed when the test ends.
func startKafka(t testing.TB) *kfake.Cluster {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, testTopic))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// kafkaClient returns a client of c, closed when the test ends.
func kafkaClient(t testing.TB, c *kfake.Cluster, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(c.ListenAddrs()...)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl
}

// producer returns a client configured as NewKafkaSink requires.
func producer(t testing.TB, c *kfake.Cluster) *kgo.Client {
	t.Helper()
	return kafkaClient(t, c, kgo.RequiredAcks(kgo.AllISRAcks()))
}

// consume reads n records of the alerts topic from the start.
func consume(t testing.TB, c *kfake.Cluster, n int) []*kgo.Record {
	t.Helper()
	cl := kafkaClient(t, c, kgo.ConsumeTopics(testTopic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var recs []*kgo.Record
	for len(recs) < n {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			t.Fatalf("consumed %d records of %d: %v", len(recs), n, err)
		}
		fs.EachError(func(topic string, p int32, err error) { t.Fatalf("fetch %s/%d: %v", topic, p, err) })
		recs = append(recs, fs.Records()...)
	}
	return recs
}

// gateSink is an in-test Sink whose Publish delivers one alert per token
// received on allow, so a test decides exactly what is delivered when.
type gateSink struct {
	name  string
	allow chan struct{}
}

func newGateSink(name string) *gateSink {
	return &gateSink{name: name, allow: make(chan struct{}, 1024)}
}

func (g *gateSink) Name() string { return g.name }

func (g *gateSink) Publish(ctx context.Context, batch []Alert) error {
	for range batch {
		select {
		case <-g.allow:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// release lets n more alerts through.
func (g *gateSink) release(n int) {
	for range n {
		g.allow <- struct{}{}
	}
}

// discardSink takes every batch at once.
type discardSink struct{}

func (discardSink) Name() string                           { return "discard" }
func (discardSink) Publish(context.Context, []Alert) error { return nil }
