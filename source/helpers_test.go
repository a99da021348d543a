package source

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/goleak"

	"github.com/squallhq/squall/event"
	"github.com/squallhq/squall/internal/testutil"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const (
	testTopic = "squall-events"
	testDLQ   = "squall-dlq"
)

// newCluster starts an in-process fake Kafka with the events topic (parts
// partitions) and the DLQ topic, closed when the test ends.
func newCluster(t testing.TB, parts int32) *kfake.Cluster {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(parts, testTopic), kfake.SeedTopics(1, testDLQ))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// testConfig returns a Config for c with a quiet logger and fast commits.
func testConfig(c *kfake.Cluster) Config {
	cfg := DefaultConfig()
	cfg.Brokers = c.ListenAddrs()
	cfg.CommitInterval = 50 * time.Millisecond
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	return cfg
}

// newManager starts a Manager, closed when the test ends.
func newManager(t testing.TB, cfg Config, sink Sink) *Manager {
	t.Helper()
	if cfg.Registerer == nil {
		cfg.Registerer = prometheus.NewRegistry()
	}
	m, err := New(cfg, sink)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Close() })
	return m
}

// newClient returns a plain franz-go client on c (manual partitioning),
// closed when the test ends.
func newClient(t testing.TB, c *kfake.Cluster, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(c.ListenAddrs()...),
		kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.ProducerLinger(0)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl
}

// produce writes recs (Topic defaults to the events topic) and waits for
// the acks.
func produce(t testing.TB, cl *kgo.Client, recs ...*kgo.Record) {
	t.Helper()
	for _, r := range recs {
		if r.Topic == "" {
			r.Topic = testTopic
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
}

// eventRecord returns a record on partition p holding one JSON event.
func eventRecord(p int32, key string, i int) *kgo.Record {
	return &kgo.Record{Partition: p, Key: []byte(key),
		Value: fmt.Appendf(nil, `{"key":%q,"ts":%d,"value":%d,"id":"e-%d"}`, key, 1764065000000+int64(i), i, i)}
}

// appliedEvent is one event a testSink applied.
type appliedEvent struct {
	key, id string
	value   float64
	off     int64
	replay  bool
}

// testSink keeps every applied event per partition. RestoreOffset is the
// offset of the oldest of the last window events applied to the
// partition, as if each key's window held that many.
type testSink struct {
	window int
	gate   chan struct{} // when set, each Apply takes a token first
	delay  time.Duration // per Apply

	mu      sync.Mutex
	parts   map[int32][]appliedEvent
	applies int
	maxLen  int
	onApply func(p int32) // called under mu after each Apply
}

func newTestSink(window int) *testSink {
	return &testSink{window: window, parts: make(map[int32][]appliedEvent)}
}

func (s *testSink) Apply(ctx context.Context, p int32, evs []event.Event, offsets []int64, replay bool) error {
	if len(evs) != len(offsets) {
		return fmt.Errorf("%d events, %d offsets", len(evs), len(offsets))
	}
	if s.gate != nil {
		select {
		case <-s.gate:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if s.delay > 0 {
		select {
		case <-time.After(s.delay):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := range evs {
		s.parts[p] = append(s.parts[p], appliedEvent{key: strings.Clone(evs[i].Key), id: strings.Clone(evs[i].ID),
			value: evs[i].Value, off: offsets[i], replay: replay})
	}
	s.applies++
	s.maxLen = max(s.maxLen, len(evs))
	if s.onApply != nil {
		s.onApply(p)
	}
	return nil
}

func (s *testSink) RestoreOffset(_ context.Context, p int32) (int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.restoreLocked(p), nil
}

func (s *testSink) restoreLocked(p int32) int64 {
	evs := s.parts[p]
	if len(evs) == 0 {
		return -1
	}
	return evs[max(0, len(evs)-s.window)].off
}

// events returns a copy of what p applied.
func (s *testSink) events(p int32) []appliedEvent {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.parts[p])
}

// count returns the number of events applied over all partitions.
func (s *testSink) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, evs := range s.parts {
		n += len(evs)
	}
	return n
}

// nextOffset returns one past the largest offset p applied, or -1.
func (s *testSink) nextOffset(p int32) int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.nextLocked(p)
}

func (s *testSink) nextLocked(p int32) int64 {
	evs := s.parts[p]
	if len(evs) == 0 {
		return -1
	}
	return evs[len(evs)-1].off + 1
}

// committed reads the group's committed offset and metadata of p.
func committed(t testing.TB, c *kfake.Cluster, p int32) (int64, string) {
	t.Helper()
	adm := kadm.NewClient(newClient(t, c))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := adm.FetchOffsets(ctx, DefaultGroup)
	if errors.Is(err, kerr.GroupIDNotFound) {
		return -1, ""
	}
	if err != nil {
		t.Fatal(err)
	}
	o, ok := resp.Lookup(testTopic, p)
	if !ok {
		return -1, ""
	}
	if o.Err != nil {
		t.Fatal(o.Err)
	}
	return o.At, o.Metadata
}

// commit commits offset at (with metadata meta) for p to the group.
func commit(t testing.TB, c *kfake.Cluster, p int32, at int64, meta string) {
	t.Helper()
	adm := kadm.NewClient(newClient(t, c))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	offs := make(kadm.Offsets)
	offs.Add(kadm.Offset{Topic: testTopic, Partition: p, At: at, LeaderEpoch: -1, Metadata: meta})
	if err := adm.CommitAllOffsets(ctx, DefaultGroup, offs); err != nil {
		t.Fatal(err)
	}
}

func status(m *Manager, p int32) PartitionStatus {
	for _, st := range m.Status() {
		if st.Partition == p {
			return st
		}
	}
	return PartitionStatus{Partition: p, State: "absent", Applied: -1, Committed: -1}
}

func eventually(t testing.TB, cond func() bool, msg string, args ...any) {
	t.Helper()
	testutil.Eventually(t, 30*time.Second, cond, msg, args...)
}
