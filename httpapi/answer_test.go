package httpapi_test

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/squallhq/squall/actors"
	"github.com/squallhq/squall/api"
	"github.com/squallhq/squall/event"
	"github.com/squallhq/squall/httpapi"
	"github.com/squallhq/squall/ingest"
	"github.com/squallhq/squall/internal/natstest"
	"github.com/squallhq/squall/source"
	"github.com/squallhq/squall/window"
)

// answerStack serves one Ingester over HTTP (the real handler) and NATS
// request/reply (a real in-process server), so that a test compares the two
// answers to the same body.
type answerStack struct {
	url string
	nc  *nats.Conn
}

// newAnswerStack ingests into sub (the engine when nil) through the engine
// e's API.
func newAnswerStack(t *testing.T, e *actors.Engine, sub ingest.Submitter) *answerStack {
	t.Helper()
	if sub == nil {
		sub = e
	}
	reg := prometheus.NewRegistry()
	in, err := ingest.New(sub, reg, nil)
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	s := httpapi.New(httpapi.DefaultConfig(), backend{e}, in, reg, log)
	s.SetReady(true)
	ts := httptest.NewServer(s.Handler())
	t.Cleanup(ts.Close)
	ns := natstest.Start(t, -1)
	srv := natstest.Connect(t, ns)
	if _, err := ingest.SubscribeNATS(srv, ingest.DefaultNATSConfig(), in, log); err != nil {
		t.Fatal(err)
	}
	return &answerStack{url: ts.URL, nc: natstest.Connect(t, ns)}
}

func newAnswerEngine(t *testing.T, h actors.Handler) *actors.Engine {
	t.Helper()
	cfg := actors.DefaultConfig()
	cfg.Partitions = 4
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	if h != nil {
		cfg.Handler = h
	}
	e, err := actors.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	return e
}

// post sends body over HTTP and returns the status, Retry-After and answer.
func (s *answerStack) post(t *testing.T, body string) (int, string, string) {
	t.Helper()
	resp, err := http.Post(s.url+api.PathEvents, "application/x-ndjson", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header.Get("Retry-After"), strings.TrimSpace(string(b))
}

// request sends body as a NATS request and returns the reply.
func (s *answerStack) request(t *testing.T, body string) string {
	t.Helper()
	msg := nats.NewMsg("squall.events")
	msg.Header.Set("Content-Type", "application/x-ndjson")
	msg.Data = []byte(body)
	reply, err := s.nc.RequestMsg(msg, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	return string(reply.Data)
}

const t0 = 1764064800000

// lateDupBody is, for key, an applied event, one 20 minutes behind the
// window (late), one with a seen id (duplicate) and another applied one.
func lateDupBody(key string) string {
	return fmt.Sprintf(`{"key":%[1]q,"ts":%[2]d,"value":1,"id":"a"}
{"key":%[1]q,"ts":%[3]d,"value":2}
{"key":%[1]q,"ts":%[4]d,"value":3,"id":"a"}
{"key":%[1]q,"ts":%[5]d,"value":4}`, key, t0, t0-20*60*1000, t0+1, t0+2)
}

// The answer counts late and duplicate events, over HTTP and NATS alike.
func TestAnswerCountsLateAndDuplicate(t *testing.T) {
	s := newAnswerStack(t, newAnswerEngine(t, nil), nil)
	const want = `{"accepted":4,"late":1,"duplicate":1,"rejected":[]}`
	code, _, got := s.post(t, lateDupBody("http"))
	if code != http.StatusAccepted || got != want {
		t.Fatalf("HTTP: %d %s, want 202 %s", code, got, want)
	}
	if got := s.request(t, lateDupBody("nats")); got != want {
		t.Fatalf("NATS: %s, want %s", got, want)
	}
}

// Kafka-first, the answer means "in the log": late and duplicate are left
// out, not given as 0.
func TestAnswerKafkaFirstOmitsLateAndDuplicate(t *testing.T) {
	c := newKafka(t)
	s := newAnswerStack(t, newAnswerEngine(t, nil), newProducer(t, c))
	const want = `{"accepted":4,"rejected":[]}`
	code, _, got := s.post(t, lateDupBody("http"))
	if code != http.StatusAccepted || got != want {
		t.Fatalf("HTTP: %d %s, want 202 %s", code, got, want)
	}
	if got := s.request(t, lateDupBody("nats")); got != want {
		t.Fatalf("NATS: %s, want %s", got, want)
	}
}

// A batch Kafka refuses is the server's failure: 503 with Retry-After,
// every valid event listed for a retry (the invalid one not), and the same
// document over NATS. Once Kafka takes records again, the retry succeeds.
func TestAnswerKafkaProduceFailure(t *testing.T) {
	c := newKafka(t)
	s := newAnswerStack(t, newAnswerEngine(t, nil), newProducer(t, c))
	refuse := make(chan bool, 1)
	refuse <- true
	c.ControlKey(int16(kmsg.Produce), func(req kmsg.Request) (kmsg.Response, error, bool) {
		on := <-refuse
		refuse <- on
		if !on {
			return nil, nil, false // the cluster handles it
		}
		c.KeepControl()
		return refuseProduce(req.(*kmsg.ProduceRequest)), nil, true
	})
	body := `{"key":"a","ts":1764064800000,"value":1}
{"key":"b","ts":1764064800000,"value":"x"}
{"key":"c","ts":1764064800000,"value":3}`
	code, retryAfter, got := s.post(t, body)
	if code != http.StatusServiceUnavailable || retryAfter == "" {
		t.Fatalf("HTTP: %d (Retry-After %q) %s, want 503 with Retry-After", code, retryAfter, got)
	}
	r := decodeAnswer(t, got)
	want := []event.Rejection{
		{Index: 0, Reason: api.ReasonNotStored, Retry: true},
		{Index: 1, Field: "value", Reason: "value must be a finite number"},
		{Index: 2, Reason: api.ReasonNotStored, Retry: true},
	}
	if r.Accepted != 0 || r.Late != nil || r.Duplicate != nil || !reflect.DeepEqual(r.Rejected, want) || !strings.Contains(r.Error, "INVALID_RECORD") {
		t.Fatalf("HTTP answer %s", got)
	}
	if n := decodeAnswer(t, s.request(t, body)); !reflect.DeepEqual(n, r) {
		t.Fatalf("NATS answer %+v, HTTP %+v", n, r)
	}

	<-refuse
	refuse <- false
	if code, _, got := s.post(t, `{"key":"a","ts":1764064800000,"value":1}`); code != http.StatusAccepted {
		t.Fatalf("after Kafka recovered: %d %s", code, got)
	}
}

// An event the server fails on (here its handler panics) is neither a 400
// nor a silent 202: 503 with Retry-After lists it for a retry, and counts
// the others.
func TestAnswerServerFailureIs503(t *testing.T) {
	s := newAnswerStack(t, newAnswerEngine(t, panicOn{13}), nil)
	body := `{"key":"a","ts":1764064800000,"value":1}
{"key":"b","ts":1764064800000,"value":13}
{"key":"c","ts":1764064800000,"value":3}`
	const want = `{"accepted":2,"late":0,"duplicate":0,"rejected":[{"index":1,"reason":"` + api.ReasonFailed + `","retry":true}]}`
	code, retryAfter, got := s.post(t, body)
	if code != http.StatusServiceUnavailable || retryAfter == "" || got != want {
		t.Fatalf("HTTP: %d (Retry-After %q) %s, want 503 with Retry-After %s", code, retryAfter, got, want)
	}
	if got := s.request(t, body); got != want {
		t.Fatalf("NATS: %s, want %s", got, want)
	}
}

// panicOn is the window handler, but it panics on events of value v.
type panicOn struct{ v float64 }

func (h panicOn) Apply(k *actors.Key, ev *event.Event) window.Outcome {
	if ev.Value == h.v {
		panic("test: poisoned event")
	}
	return actors.WindowHandler{}.Apply(k, ev)
}

func decodeAnswer(t *testing.T, s string) api.IngestResponse {
	t.Helper()
	var r api.IngestResponse
	if err := json.Unmarshal([]byte(s), &r); err != nil {
		t.Fatalf("answer %s: %v", s, err)
	}
	return r
}

// refuseProduce answers req with a non-retriable error on every partition.
func refuseProduce(req *kmsg.ProduceRequest) *kmsg.ProduceResponse {
	resp := req.ResponseKind().(*kmsg.ProduceResponse)
	resp.SetVersion(req.GetVersion())
	for _, rt := range req.Topics {
		st := kmsg.NewProduceResponseTopic()
		st.Topic, st.TopicID = rt.Topic, rt.TopicID
		for _, rp := range rt.Partitions {
			sp := kmsg.NewProduceResponseTopicPartition()
			sp.Partition = rp.Partition
			sp.ErrorCode = kerr.InvalidRecord.Code
			st.Partitions = append(st.Partitions, sp)
		}
		resp.Topics = append(resp.Topics, st)
	}
	return resp
}

const kafkaTopic = "squall-events"

func newKafka(t *testing.T) *kfake.Cluster {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(4, kafkaTopic))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

func newProducer(t *testing.T, c *kfake.Cluster) *source.Producer {
	t.Helper()
	cfg := source.DefaultConfig()
	cfg.Brokers = c.ListenAddrs()
	cfg.Topic = kafkaTopic
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	p, err := source.NewProducer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	return p
}
