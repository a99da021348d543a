package jslog

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/squallhq/squall/actors"
	"github.com/squallhq/squall/cluster"
	"github.com/squallhq/squall/event"
	"github.com/squallhq/squall/internal/natstest"
	"github.com/squallhq/squall/internal/testutil"
	"github.com/squallhq/squall/source"
)

const waitFor = 30 * time.Second

// applied is one event a sink applied.
type applied struct {
	key    string
	value  float64
	offset int64
	replay bool
}

// testSink records what it applies, by partition. gate, when set, blocks
// every Apply until it is closed; fail makes Apply fail while it returns
// true; restore gives RestoreOffset's answer (default -1).
type testSink struct {
	mu      sync.Mutex
	got     map[int32][]applied
	calls   int
	failed  int
	gate    chan struct{}
	fail    func(call int) bool
	restore func(p int32) int64
	entered chan struct{} // receives (non-blocking) when Apply is called
}

func newSink() *testSink {
	return &testSink{got: map[int32][]applied{}, entered: make(chan struct{}, 1)}
}

func (s *testSink) Apply(ctx context.Context, p int32, evs []event.Event, offs []int64, replay bool) error {
	select {
	case s.entered <- struct{}{}:
	default:
	}
	if s.gate != nil {
		select {
		case <-s.gate:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls++
	if s.fail != nil && s.fail(s.calls) {
		s.failed++
		return errors.New("sink failure")
	}
	for i := range evs {
		s.got[p] = append(s.got[p], applied{key: evs[i].Key, value: evs[i].Value, offset: offs[i], replay: replay})
	}
	return nil
}

func (s *testSink) RestoreOffset(_ context.Context, p int32) (int64, error) {
	if s.restore != nil {
		return s.restore(p), nil
	}
	return -1, nil
}

func (s *testSink) count(live bool) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, as := range s.got {
		for _, a := range as {
			if !live || !a.replay {
				n++
			}
		}
	}
	return n
}

func (s *testSink) of(p int32) []applied {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.got[p])
}

// jsEnv is a JetStream server and a connection to it.
type jsEnv struct {
	srv *server.Server
	nc  *nats.Conn
}

func newEnv(t testing.TB) *jsEnv {
	t.Helper()
	s := natstest.StartJS(t, 0)
	return &jsEnv{srv: s, nc: natstest.Connect(t, s)}
}

func (e *jsEnv) config(parts int) Config {
	return Config{Conn: e.nc, Partitions: parts, CommitInterval: 20 * time.Millisecond}
}

func newManager(t *testing.T, cfg Config, sink source.Sink) *Manager {
	t.Helper()
	m, err := New(cfg, sink)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

func newProducer(t *testing.T, cfg Config) *Producer {
	t.Helper()
	p, err := NewProducer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

// events returns n events over keys k0..k(keys-1), values from v0 on.
func events(n, keys int, v0 float64) []event.Event {
	evs := make([]event.Event, n)
	for i := range evs {
		evs[i] = event.Event{Key: fmt.Sprintf("k%d", i%keys), TS: 1_700_000_000_000 + int64(i), Value: v0 + float64(i)}
	}
	return evs
}

// submit produces evs and fails the test unless every one is stored.
func submit(t *testing.T, p *Producer, evs []event.Event) {
	t.Helper()
	out := make([]actors.Result, len(evs))
	if err := p.Submit(context.Background(), evs, out); err != nil {
		t.Fatal(err)
	}
	for i, r := range out {
		if r != actors.ResultApplied {
			t.Fatalf("event %d: result %v", i, r)
		}
	}
}

// startAll starts partitions [0, n) from their committed progress.
func startAll(m *Manager, n int) {
	for p := range n {
		m.Start(int32(p), source.StartFrom{Offset: -1})
	}
}

// checkOrder checks that each partition's events are in offset order, that
// each key's values increase, and that every key is on its partition.
func checkOrder(t *testing.T, s *testSink, parts int) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	for p, as := range s.got {
		last := map[string]float64{}
		for i, a := range as {
			if i > 0 && a.offset < as[i-1].offset {
				t.Fatalf("partition %d: offset %d after %d", p, a.offset, as[i-1].offset)
			}
			if v, ok := last[a.key]; ok && a.value <= v {
				t.Fatalf("partition %d key %s: value %v after %v", p, a.key, a.value, v)
			}
			last[a.key] = a.value
			if q := cluster.Partition(a.key, parts); q != p {
				t.Fatalf("key %s on partition %d, routes to %d", a.key, p, q)
			}
		}
	}
}

func eventually(t *testing.T, cond func() bool, msg string, args ...any) {
	t.Helper()
	testutil.Eventually(t, waitFor, cond, msg, args...)
}
