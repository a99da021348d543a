package node

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/squallhq/squall/api"
	"github.com/squallhq/squall/internal/natstest"
	"github.com/squallhq/squall/internal/testutil"
)

// year3000 is the ts of the reproduction: 3000-01-01 in epoch ms.
const year3000 = 32503680000000

// postEvents posts body to the node and decodes its answer, whatever the
// status (the status codes are the HTTP API's business).
func postEvents(t *testing.T, n *Node, body string) api.IngestResponse {
	t.Helper()
	resp, err := http.Post("http://"+n.HTTPAddr()+"/v1/events", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 500 {
		t.Fatalf("POST %s: %s", body, resp.Status)
	}
	var r api.IngestResponse
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		t.Fatal(err)
	}
	return r
}

// checkFutureRejection checks that r rejects event 0 on ts, too far in the
// future by the default limit.
func checkFutureRejection(t *testing.T, what string, r api.IngestResponse) {
	t.Helper()
	if r.Accepted != 0 || len(r.Rejected) != 1 || r.Rejected[0].Index != 0 || r.Rejected[0].Field != "ts" ||
		!strings.Contains(r.Rejected[0].Reason, "future") || !strings.Contains(r.Rejected[0].Reason, "5m0s") {
		t.Fatalf("%s: the year-3000 event: %+v", what, r)
	}
}

// checkKeyUnmoved checks that key holds exactly the normal event(s) sent
// after the rejected one, none late, and that its window is not ahead of
// the clock.
func checkKeyUnmoved(t *testing.T, n *Node, key string, count uint64) {
	t.Helper()
	st, err := n.Get(context.Background(), key)
	if err != nil {
		t.Fatal(err)
	}
	if st.EventsApplied != count || st.LateDropped != 0 || st.Window.Count != count || st.Window.Max != 1 ||
		st.Window.ToTS > time.Now().UnixMilli() {
		t.Fatalf("key %s moved by the rejected event: applied %d late %d window %+v", key, st.EventsApplied, st.LateDropped, st.Window)
	}
}

// The reproduction against a real node, over HTTP then NATS
// request/reply: the year-3000 event is rejected with its index and field,
// the normal event after it on the same key is applied, and the key's
// window was never moved.
func TestFutureEventOverHTTPAndNATS(t *testing.T) {
	n := startNode(t, nil)
	checkFutureRejection(t, "http", postEvents(t, n, fmt.Sprintf(`{"key":"p","ts":%d,"value":99999}`, year3000)))
	if r := postEvents(t, n, `{"key":"p","value":1}`); r.Accepted != 1 || len(r.Rejected) != 0 {
		t.Fatalf("http: the normal event: %+v", r)
	}
	checkKeyUnmoved(t, n, "p", 1)

	nc, err := nats.Connect(n.NATSURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	checkFutureRejection(t, "nats", natstest.Ingest(t, nc, "squall.events", fmt.Sprintf(`{"key":"q","ts":%d,"value":99999}`, year3000)))
	if r := natstest.Ingest(t, nc, "squall.events", `{"key":"q","value":1}`); r.Accepted != 1 || len(r.Rejected) != 0 {
		t.Fatalf("nats: the normal event: %+v", r)
	}
	checkKeyUnmoved(t, n, "q", 1)
	for src, want := range map[string]float64{"http": 1, "nats": 1} {
		v, _ := testutil.MetricValue(t, n.reg, "squall_events_invalid_total", func(l map[string]string) bool {
			return l["source"] == src && l["reason"] == "ts"
		})
		if v != want {
			t.Errorf("squall_events_invalid_total{source=%s,reason=ts} = %v, want %v", src, v, want)
		}
	}
}

// --max-future 0 lifts the limit.
func TestMaxFutureZeroIsNoLimit(t *testing.T) {
	n := startNode(t, func(c *Config) { c.MaxFuture = 0 })
	if r := postEvents(t, n, fmt.Sprintf(`{"key":"p","ts":%d,"value":1}`, year3000)); r.Accepted != 1 {
		t.Fatalf("with no limit: %+v", r)
	}
}

// Over Kafka, the limit is measured from the record's timestamp, so that a
// replay rejects what the first reading did: a record stamped in the past
// whose event is 10 minutes ahead of it is bad, although that event is
// behind the clock; the year-3000 record and one in seconds are bad too.
// Bad records go to the DLQ, are counted, and never reach the key.
func TestFutureRecordOverKafka(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "events", "dlq"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	n := startNode(t, func(cfg *Config) {
		cfg.KafkaBrokers, cfg.KafkaTopic, cfg.KafkaGroup, cfg.KafkaDLQTopic = c.ListenAddrs()[0], "events", "g", "dlq"
	})
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.DefaultProduceTopic("events"))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	past := time.Now().Add(-time.Hour).Truncate(time.Millisecond)
	now := time.Now().Truncate(time.Millisecond)
	recs := []*kgo.Record{
		{Key: []byte("p"), Timestamp: now, Value: fmt.Appendf(nil, `{"key":"p","ts":%d,"value":99999}`, int64(year3000))},
		{Key: []byte("p"), Timestamp: past, Value: fmt.Appendf(nil, `{"key":"p","ts":%d,"value":99999}`, past.Add(10*time.Minute).UnixMilli())},
		{Key: []byte("p"), Timestamp: now, Value: fmt.Appendf(nil, `{"key":"p","ts":%d,"value":99999}`, now.Unix())},
		{Key: []byte("p"), Timestamp: past, Value: fmt.Appendf(nil, `{"key":"p","ts":%d,"value":1}`, past.Add(4*time.Minute).UnixMilli())},
		{Key: []byte("p"), Timestamp: past, Value: []byte(`{"key":"p","value":1}`)}, // ts: the record's
	}
	if err := cl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 15*time.Second, func() bool {
		st, err := n.Get(context.Background(), "p")
		return err == nil && st.EventsApplied == 2
	}, "the good records not applied")
	checkKeyUnmoved(t, n, "p", 2)
	testutil.Eventually(t, 15*time.Second, func() bool {
		v, _ := testutil.MetricValue(t, n.reg, "squall_kafka_bad_records_total", func(l map[string]string) bool {
			return l["reason"] == "invalid"
		})
		return v == 3
	}, "bad records not counted")

	// The DLQ holds the three, in order, with the reason.
	dl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.ConsumeTopics("dlq"),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer dl.Close()
	var got []*kgo.Record
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	for len(got) < 3 && ctx.Err() == nil {
		dl.PollFetches(ctx).EachRecord(func(r *kgo.Record) { got = append(got, r) })
	}
	if len(got) != 3 {
		t.Fatalf("%d dead letters, want 3", len(got))
	}
	for i, r := range got {
		if !bytes.Equal(r.Value, recs[i].Value) {
			t.Errorf("dead letter %d = %s, want %s", i, r.Value, recs[i].Value)
		}
		found := false
		for _, h := range r.Headers {
			found = found || (h.Key == "squall-error" && string(h.Value) == "invalid")
		}
		if !found {
			t.Errorf("dead letter %d headers %v", i, r.Headers)
		}
	}
}

func TestMaxFutureConfig(t *testing.T) {
	cfg, err := Load(nil, env(nil), io.Discard)
	if err != nil || cfg.MaxFuture != 5*time.Minute {
		t.Fatalf("default max-future %s, %v", cfg.MaxFuture, err)
	}
	cfg, err = Load([]string{"--max-future", "30s"}, env(map[string]string{"SQUALL_MAX_FUTURE": "1m"}), io.Discard)
	if err != nil || cfg.MaxFuture != 30*time.Second {
		t.Fatalf("flag: %s, %v", cfg.MaxFuture, err)
	}
	cfg, err = Load(nil, env(map[string]string{"SQUALL_MAX_FUTURE": "1m"}), io.Discard)
	if err != nil || cfg.MaxFuture != time.Minute {
		t.Fatalf("env: %s, %v", cfg.MaxFuture, err)
	}
	file := t.TempDir() + "/squall.yaml"
	if err := os.WriteFile(file, []byte("max-future: 0s\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err = Load([]string{"--config", file}, env(nil), io.Discard)
	if err != nil || cfg.MaxFuture != 0 {
		t.Fatalf("yaml: %s, %v", cfg.MaxFuture, err)
	}
	if _, err := Load([]string{"--max-future", "-1s"}, env(nil), io.Discard); err == nil || !strings.Contains(err.Error(), "--max-future") {
		t.Fatalf("negative: %v", err)
	}
}
