package transport

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"os"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"go.uber.org/goleak"

	"github.com/squallhq/squall/actors"
	"github.com/squallhq/squall/api"
	"github.com/squallhq/squall/event"
	"github.com/squallhq/squall/internal/testutil"
	"github.com/squallhq/squall/window"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// fakeHandler records what peers send and answers from its fields.
type fakeHandler struct {
	mu       sync.Mutex
	events   []event.Event
	from     map[string]int // events by sender
	states   map[string]*api.KeyState
	chunks   []chunkSeen
	fail     string        // when set, Forward and Handoff fail with it
	block    chan struct{} // when set, Forward waits for it to close
	entered  chan struct{} // when set, Forward signals its entry
	forwards atomic.Int64
}

type chunkSeen struct {
	from       string
	partition  int32
	generation int64
	index      int
	cover      *Cover
	keys       []actors.KeySnapshot
	last       bool
}

// resultOfEvent is the result the fake handler gives an event.
func resultOfEvent(ev *event.Event) actors.Result {
	return actors.Result(int(math.Abs(ev.Value)) % actors.NumResults)
}

func (h *fakeHandler) Forward(ctx context.Context, from string, evs []event.Event, out []actors.Result) error {
	h.forwards.Add(1)
	if h.entered != nil {
		h.entered <- struct{}{}
	}
	if h.block != nil {
		select {
		case <-h.block:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if h.fail != "" {
		return errors.New(h.fail)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.from == nil {
		h.from = map[string]int{}
	}
	h.from[from] += len(evs)
	for i := range evs {
		ev := evs[i]
		ev.Key, ev.ID = strings.Clone(ev.Key), strings.Clone(ev.ID)
		h.events = append(h.events, ev)
		out[i] = resultOfEvent(&evs[i])
	}
	return nil
}

func (h *fakeHandler) KeyState(_ context.Context, key string) (*api.KeyState, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if key == "boom" {
		return nil, errors.New("state unreadable")
	}
	ks, ok := h.states[key]
	if !ok {
		return nil, fmt.Errorf("get %q: %w", key, actors.ErrNotFound)
	}
	return ks, nil
}

// KeyEvents answers with the key's Recent events, all applied.
func (h *fakeHandler) KeyEvents(ctx context.Context, key string) (*api.KeyEvents, error) {
	ks, err := h.KeyState(ctx, key)
	if err != nil {
		return nil, err
	}
	ke := &api.KeyEvents{Key: key, Node: ks.Node, Partition: ks.Partition, Kept: 32, Received: ks.EventsApplied, Events: []api.KeptEvent{}}
	for _, ev := range ks.Recent {
		ke.Events = append(ke.Events, api.KeptEvent{Event: ev, Outcome: "applied"})
	}
	ke.Complete = ke.Received == uint64(len(ke.Events))
	return ke, nil
}

// KeySeries answers with one bucket per Recent event.
func (h *fakeHandler) KeySeries(ctx context.Context, key string) (*api.KeySeries, error) {
	ks, err := h.KeyState(ctx, key)
	if err != nil {
		return nil, err
	}
	sr := &api.KeySeries{Key: key, Node: ks.Node, Partition: ks.Partition, ResolutionMs: 1000, RetentionMs: 600_000}
	for _, ev := range ks.Recent {
		sr.Buckets = append(sr.Buckets, window.BucketStats{TS: ev.TS, Count: 1, Sum: ev.Value, Min: ev.Value, Max: ev.Value, Mean: ev.Value})
	}
	return sr, nil
}

// KeyReplay answers with one step per Recent event and no difference.
func (h *fakeHandler) KeyReplay(ctx context.Context, key string) (*api.KeyReplay, error) {
	ks, err := h.KeyState(ctx, key)
	if err != nil {
		return nil, err
	}
	kr := &api.KeyReplay{Key: key, Node: ks.Node, Partition: ks.Partition, Kept: 32, Received: ks.EventsApplied,
		Complete: ks.EventsApplied == uint64(len(ks.Recent)), State: ks, Diff: []string{}}
	for i, ev := range ks.Recent {
		kr.Steps = append(kr.Steps, api.ReplayStep{ReplayEvent: api.ReplayEvent{Index: i, Offset: -1, TS: ev.TS, Value: ev.Value, Outcome: "applied"}})
	}
	return kr, nil
}

func (h *fakeHandler) List(_ context.Context, prefix, after string, limit int) (*api.KeyList, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	kl := &api.KeyList{Live: int64(len(h.states)), Keys: []api.KeySummary{}}
	for k, ks := range h.states {
		if strings.HasPrefix(k, prefix) && k > after {
			if len(kl.Keys) == limit {
				kl.Truncated = true
				break
			}
			kl.Keys = append(kl.Keys, api.KeySummary{Key: k, Node: ks.Node, Partition: ks.Partition, EventsApplied: ks.EventsApplied})
		}
	}
	return kl, nil
}

func (h *fakeHandler) Handoff(_ context.Context, c *HandoffChunk) error {
	if h.fail != "" {
		return errors.New(h.fail)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.chunks = append(h.chunks, chunkSeen{c.From, c.Partition, c.Generation, c.Index, c.Cover, c.Keys, c.Last})
	return nil
}

// quietLogger discards logs, or with SQUALL_TEST_LOG set, writes warnings
// and errors to stderr.
func quietLogger() *slog.Logger {
	if os.Getenv("SQUALL_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// start starts a Transport on a free loopback port, closed at the end of
// the test.
func start(t testing.TB, id string, h Handler, mod func(*Config)) *Transport {
	t.Helper()
	cfg := DefaultConfig()
	cfg.NodeID = id
	cfg.Logger = quietLogger()
	cfg.RequestTimeout = 5 * time.Second
	if mod != nil {
		mod(&cfg)
	}
	tr, err := Start(cfg, h)
	if err != nil {
		t.Fatalf("Start %s: %v", id, err)
	}
	t.Cleanup(func() {
		if err := tr.Close(); err != nil {
			t.Errorf("Close %s: %v", id, err)
		}
	})
	return tr
}

// makeEvents makes n events of about 80 bytes of JSON each.
func makeEvents(n int) []event.Event {
	evs := make([]event.Event, n)
	for i := range evs {
		evs[i] = event.Event{
			Key:   fmt.Sprintf("sensor-%06d", i%100_000),
			TS:    1_764_064_800_000 + int64(i),
			Value: float64(i%1000) + 0.125,
			ID:    fmt.Sprintf("evt-%08d", i),
		}
	}
	return evs
}

func jsonSize(t testing.TB, evs []event.Event) int {
	t.Helper()
	n := 0
	for i := range evs {
		b, err := json.Marshal(&evs[i])
		if err != nil {
			t.Fatal(err)
		}
		n += len(b)
	}
	return n
}

func TestForwardBatch(t *testing.T) {
	hb := &fakeHandler{}
	a := start(t, "a", &fakeHandler{}, nil)
	b := start(t, "b", hb, nil)
	evs := makeEvents(10_000)
	out := make([]actors.Result, len(evs))
	if err := a.Forward(context.Background(), "b", b.Addr(), evs, out); err != nil {
		t.Fatal(err)
	}
	for i := range evs {
		if want := resultOfEvent(&evs[i]); out[i] != want {
			t.Fatalf("out[%d] = %s, want %s", i, out[i], want)
		}
	}
	hb.mu.Lock()
	defer hb.mu.Unlock()
	if len(hb.events) != len(evs) || hb.from["a"] != len(evs) {
		t.Fatalf("peer got %d events (%v), want %d from a", len(hb.events), hb.from, len(evs))
	}
}

func TestForwardSplitsIntoChunks(t *testing.T) {
	hb := &fakeHandler{}
	small := func(c *Config) { c.MaxMessageBytes = MinMaxMessageBytes }
	a := start(t, "a", &fakeHandler{}, small)
	b := start(t, "b", hb, small)
	evs := makeEvents(20_000) // ~1 MB of protobuf, messages of ~60 KiB
	out := make([]actors.Result, len(evs))
	if err := a.Forward(context.Background(), "b", b.Addr(), evs, out); err != nil {
		t.Fatal(err)
	}
	if n := hb.forwards.Load(); n < 10 {
		t.Fatalf("%d requests, want the batch split into at least 10", n)
	}
	for i := range evs {
		if want := resultOfEvent(&evs[i]); out[i] != want {
			t.Fatalf("out[%d] = %s, want %s", i, out[i], want)
		}
	}
	hb.mu.Lock()
	defer hb.mu.Unlock()
	if !reflect.DeepEqual(hb.events, evs) {
		t.Fatal("events differ or arrived out of order") // chunks go one after the other
	}
}

func TestForwardByteIdentical(t *testing.T) {
	hb := &fakeHandler{}
	a := start(t, "a", &fakeHandler{}, nil)
	b := start(t, "b", hb, nil)
	evs := []event.Event{
		{Key: "k", TS: 1, Value: 0},
		{Key: "ключ/with/slashes", TS: 1_764_064_800_123, Value: -1.5e-300, ID: "id-1"},
		{Key: "日本語キー 🔑", TS: 253_402_300_799_999, Value: math.MaxFloat64, ID: strings.Repeat("i", event.MaxIDBytes)},
		{Key: strings.Repeat("x", event.MaxKeyBytes), TS: 42, Value: math.SmallestNonzeroFloat64,
			Tags: map[string]string{"dc": "eu-1", "ünï": "cödé", "empty": "", "z": strings.Repeat("v", 256)}},
		{Key: "tags-many", TS: 7, Value: 3, Tags: func() map[string]string {
			m := map[string]string{}
			for i := range event.MaxTags {
				m[fmt.Sprintf("t%02d", i)] = fmt.Sprint(i)
			}
			return m
		}()},
		{Key: "neg-zero", TS: 8, Value: math.Copysign(0, -1)},
	}
	out := make([]actors.Result, len(evs))
	if err := a.Forward(context.Background(), "b", b.Addr(), evs, out); err != nil {
		t.Fatal(err)
	}
	hb.mu.Lock()
	defer hb.mu.Unlock()
	if len(hb.events) != len(evs) {
		t.Fatalf("got %d events, want %d", len(hb.events), len(evs))
	}
	for i := range evs {
		got, want := hb.events[i], evs[i]
		if math.Float64bits(got.Value) != math.Float64bits(want.Value) {
			t.Errorf("event %d value bits %x, want %x", i, math.Float64bits(got.Value), math.Float64bits(want.Value))
		}
		got.Value, want.Value = 0, 0
		if !reflect.DeepEqual(got, want) {
			t.Errorf("event %d:\n got %+v\nwant %+v", i, got, want)
		}
		// The encodings must match byte for byte, too.
		if g, w := event.AppendProto(nil, hb.events[i:i+1]), event.AppendProto(nil, evs[i:i+1]); string(g) != string(w) {
			t.Errorf("event %d re-encodes differently", i)
		}
	}
}

func TestForwardRemoteError(t *testing.T) {
	a := start(t, "a", &fakeHandler{}, nil)
	b := start(t, "b", &fakeHandler{fail: "engine on fire"}, nil)
	evs := makeEvents(10)
	out := make([]actors.Result, len(evs))
	err := a.Forward(context.Background(), "b", b.Addr(), evs, out)
	if !errors.Is(err, ErrRemote) || !strings.Contains(err.Error(), "engine on fire") || !strings.Contains(err.Error(), "peer b") {
		t.Fatalf("err = %v, want ErrRemote with the peer's message", err)
	}
	for i, r := range out {
		if r != actors.ResultFailed {
			t.Fatalf("out[%d] = %s, want failed", i, r)
		}
	}
}

func TestKeyStateAndList(t *testing.T) {
	now := time.UnixMilli(1_764_064_800_000).UTC()
	hb := &fakeHandler{states: map[string]*api.KeyState{
		"sensor/1": {Key: "sensor/1", Node: "b", Partition: 3, ActivatedAt: now, LastEventAt: now, EventsApplied: 5,
			Subwindows: map[string]window.Aggregates{}, Rules: []api.RuleState{}, Recent: []event.Event{{Key: "sensor/1", TS: 1, Value: 2}}},
		"sensor/2": {Key: "sensor/2", Node: "b", EventsApplied: 1},
		"other":    {Key: "other", Node: "b"},
	}}
	a := start(t, "a", &fakeHandler{}, nil)
	b := start(t, "b", hb, nil)
	ctx := context.Background()

	ks, err := a.KeyState(ctx, b.Addr(), "sensor/1")
	if err != nil {
		t.Fatal(err)
	}
	want, _ := json.Marshal(hb.states["sensor/1"])
	got, _ := json.Marshal(ks)
	if string(got) != string(want) {
		t.Fatalf("state\n got %s\nwant %s", got, want)
	}

	_, err = a.KeyState(ctx, b.Addr(), "nope")
	if !errors.Is(err, actors.ErrNotFound) || !strings.Contains(err.Error(), "peer b") {
		t.Fatalf("err = %v, want ErrNotFound naming peer b", err)
	}
	ke, err := a.KeyEvents(ctx, b.Addr(), "sensor/1")
	if err != nil {
		t.Fatal(err)
	}
	if ke.Key != "sensor/1" || ke.Partition != 3 || ke.Received != 5 || ke.Complete || len(ke.Events) != 1 ||
		ke.Events[0].Value != 2 || ke.Events[0].Outcome != "applied" {
		t.Fatalf("events = %+v", ke)
	}
	if _, err = a.KeyEvents(ctx, b.Addr(), "nope"); !errors.Is(err, actors.ErrNotFound) {
		t.Fatalf("events of a missing key: err = %v, want ErrNotFound", err)
	}
	sr, err := a.KeySeries(ctx, b.Addr(), "sensor/1")
	if err != nil || sr.Key != "sensor/1" || len(sr.Buckets) != 1 || sr.Buckets[0].Mean != 2 {
		t.Fatalf("series = %+v, %v", sr, err)
	}
	kr, err := a.KeyReplay(ctx, b.Addr(), "sensor/1")
	if err != nil || kr.Key != "sensor/1" || kr.Complete || len(kr.Steps) != 1 || kr.Steps[0].Value != 2 || kr.State == nil {
		t.Fatalf("replay = %+v, %v", kr, err)
	}
	for _, f := range []func(context.Context, string, string) error{
		func(ctx context.Context, addr, k string) error { _, err := a.KeySeries(ctx, addr, k); return err },
		func(ctx context.Context, addr, k string) error { _, err := a.KeyReplay(ctx, addr, k); return err },
	} {
		if err := f(ctx, b.Addr(), "nope"); !errors.Is(err, actors.ErrNotFound) {
			t.Fatalf("series or replay of a missing key: err = %v, want ErrNotFound", err)
		}
	}
	_, err = a.KeyState(ctx, b.Addr(), "boom")
	if !errors.Is(err, ErrRemote) || errors.Is(err, actors.ErrNotFound) || !strings.Contains(err.Error(), "state unreadable") {
		t.Fatalf("err = %v, want ErrRemote", err)
	}

	kl, err := a.List(ctx, b.Addr(), "sensor/", "", 10)
	if err != nil {
		t.Fatal(err)
	}
	if kl.Live != 3 || len(kl.Keys) != 2 || kl.Truncated {
		t.Fatalf("list = %+v, want 2 of 3 live keys", kl)
	}
	kl, err = a.List(ctx, b.Addr(), "", "", 1)
	if err != nil {
		t.Fatal(err)
	}
	if len(kl.Keys) != 1 || !kl.Truncated {
		t.Fatalf("list = %+v, want 1 key, truncated", kl)
	}
	// KeyState and List name only the address: their traffic is counted
	// against the id the peer answered with.
	if p := a.Peers()["b"]; p.BytesSent == 0 || p.BytesReceived == 0 {
		t.Fatalf("peers = %+v, want traffic with b", a.Peers())
	}
}

func TestHandoffChunks(t *testing.T) {
	hb := &fakeHandler{}
	a := start(t, "a", &fakeHandler{}, nil)
	b := start(t, "b", hb, nil)
	const n = 50_000
	keys := make([]actors.KeySnapshot, n)
	base := time.UnixMilli(1_764_064_800_000)
	for i := range keys {
		w := make([]byte, 1024)
		for j := range w {
			w[j] = byte(i + j)
		}
		keys[i] = actors.KeySnapshot{Key: fmt.Sprintf("key-%06d", i), Window: w,
			Activated: base.Add(time.Duration(i) * time.Millisecond), LastEvent: base.Add(time.Hour)}
	}
	keys[7].Activated, keys[7].LastEvent = time.Time{}, time.Time{}
	if err := a.Handoff(context.Background(), "b", b.Addr(), 12, 99, &Cover{Offset: 1234, Version: 7}, keys); err != nil {
		t.Fatal(err)
	}
	hb.mu.Lock()
	defer hb.mu.Unlock()
	if len(hb.chunks) < 40 {
		t.Fatalf("%d chunks, want ~50 of about 1 MiB", len(hb.chunks))
	}
	var got []actors.KeySnapshot
	for i, c := range hb.chunks {
		if c.last != (i == len(hb.chunks)-1) {
			t.Fatalf("chunk %d of %d: last = %v", i, len(hb.chunks), c.last)
		}
		if c.from != "a" || c.partition != 12 || c.generation != 99 || c.index != i {
			t.Fatalf("chunk %d: from %q partition %d generation %d index %d", i, c.from, c.partition, c.generation, c.index)
		}
		if c.cover == nil || *c.cover != (Cover{Offset: 1234, Version: 7}) {
			t.Fatalf("chunk %d: cover %+v, want {1234 7}", i, c.cover)
		}
		size := 0
		for _, k := range c.keys {
			size += len(k.Key) + len(k.Window) + 24
		}
		if size > 1<<20 {
			t.Fatalf("chunk %d: %d bytes, want at most 1 MiB", i, size)
		}
		got = append(got, c.keys...)
	}
	if len(got) != n {
		t.Fatalf("got %d keys, want %d", len(got), n)
	}
	for i := range keys {
		g, w := got[i], keys[i]
		if g.Key != w.Key || string(g.Window) != string(w.Window) || !g.Activated.Equal(w.Activated) || !g.LastEvent.Equal(w.LastEvent) {
			t.Fatalf("key %d: got %s %v %v, want %s %v %v", i, g.Key, g.Activated, g.LastEvent, w.Key, w.Activated, w.LastEvent)
		}
	}
	if !got[7].Activated.IsZero() {
		t.Fatalf("zero time arrived as %v", got[7].Activated)
	}

	// Zero keys: one chunk, last.
	hb.chunks = nil
	hb.mu.Unlock()
	err := a.Handoff(context.Background(), "b", b.Addr(), 13, 100, nil, nil)
	hb.mu.Lock()
	if err != nil {
		t.Fatal(err)
	}
	if len(hb.chunks) != 1 || !hb.chunks[0].last || len(hb.chunks[0].keys) != 0 || hb.chunks[0].partition != 13 || hb.chunks[0].cover != nil {
		t.Fatalf("chunks = %+v, want one empty last chunk", hb.chunks)
	}
}

func TestHandoffError(t *testing.T) {
	a := start(t, "a", &fakeHandler{}, nil)
	b := start(t, "b", &fakeHandler{fail: "not the new owner"}, nil)
	err := a.Handoff(context.Background(), "b", b.Addr(), 1, 1, nil, []actors.KeySnapshot{{Key: "k"}})
	if !errors.Is(err, ErrRemote) || !strings.Contains(err.Error(), "not the new owner") {
		t.Fatalf("err = %v, want ErrRemote", err)
	}
}

func TestPeerDown(t *testing.T) {
	timeout := time.Second
	a := start(t, "a", &fakeHandler{}, func(c *Config) { c.RequestTimeout = timeout })
	b := start(t, "b", &fakeHandler{}, nil)
	evs := makeEvents(10)
	out := make([]actors.Result, len(evs))
	// Connected once, then gone.
	if err := a.Forward(context.Background(), "b", b.Addr(), evs, out); err != nil {
		t.Fatal(err)
	}
	addr := b.Addr()
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	// A peer that was never there.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	never := l.Addr().String()
	l.Close()

	for _, tc := range []struct{ id, addr string }{{"b", addr}, {"c", never}} {
		t0 := time.Now()
		err := a.Forward(context.Background(), tc.id, tc.addr, evs, out)
		took := time.Since(t0)
		if !errors.Is(err, ErrTimeout) && !errors.Is(err, ErrUnreachable) {
			t.Fatalf("%s: err = %v, want ErrTimeout or ErrUnreachable", tc.id, err)
		}
		if !strings.Contains(err.Error(), "peer "+tc.id) || !strings.Contains(err.Error(), tc.addr) {
			t.Fatalf("%s: err = %v, want it to name the peer", tc.id, err)
		}
		if took > timeout+time.Second {
			t.Fatalf("%s: error after %s, want within the %s timeout", tc.id, took, timeout)
		}
		t.Logf("%s: %v after %s", tc.id, err, took.Round(time.Millisecond))
		_, err = a.KeyState(context.Background(), tc.addr, "k")
		if !errors.Is(err, ErrTimeout) && !errors.Is(err, ErrUnreachable) {
			t.Fatalf("%s: KeyState err = %v", tc.id, err)
		}
	}

	// With a longer timeout, the failed connection attempt fails the
	// request as unreachable (after protoactor's 2s retry pause).
	patient := start(t, "patient", &fakeHandler{}, func(c *Config) { c.RequestTimeout = 10 * time.Second })
	t0 := time.Now()
	err = patient.Forward(context.Background(), "c", never, evs, out)
	if !errors.Is(err, ErrUnreachable) || !strings.Contains(err.Error(), "peer c") {
		t.Fatalf("err = %v, want ErrUnreachable naming peer c", err)
	}
	t.Logf("c: %v after %s", err, time.Since(t0).Round(time.Millisecond))
}

func TestContextCanceled(t *testing.T) {
	hb := &fakeHandler{block: make(chan struct{})}
	a := start(t, "a", &fakeHandler{}, nil)
	b := start(t, "b", hb, nil)
	defer close(hb.block)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	evs := makeEvents(3)
	err := a.Forward(ctx, "b", b.Addr(), evs, make([]actors.Result, 3))
	if !errors.Is(err, context.DeadlineExceeded) || errors.Is(err, ErrTimeout) {
		t.Fatalf("err = %v, want the context's deadline", err)
	}
}

func TestBusy(t *testing.T) {
	hb := &fakeHandler{block: make(chan struct{}), entered: make(chan struct{}, 1)}
	a := start(t, "a", &fakeHandler{}, nil)
	b := start(t, "b", hb, func(c *Config) { c.MaxInflight = 1 })
	evs := makeEvents(3)
	first := make(chan error, 1)
	go func() { first <- a.Forward(context.Background(), "b", b.Addr(), evs, make([]actors.Result, 3)) }()
	<-hb.entered
	err := a.Forward(context.Background(), "b", b.Addr(), evs, make([]actors.Result, 3))
	if !errors.Is(err, ErrBusy) {
		t.Fatalf("err = %v, want ErrBusy", err)
	}
	close(hb.block)
	hb.entered = nil
	if err := <-first; err != nil {
		t.Fatal(err)
	}
}

func TestCloseFailsWaitingCalls(t *testing.T) {
	hb := &fakeHandler{block: make(chan struct{}), entered: make(chan struct{}, 1)}
	a := start(t, "a", &fakeHandler{}, nil)
	b := start(t, "b", hb, nil)
	defer close(hb.block)
	done := make(chan error, 1)
	go func() {
		done <- a.Forward(context.Background(), "b", b.Addr(), makeEvents(1), make([]actors.Result, 1))
	}()
	<-hb.entered
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-done; !errors.Is(err, ErrClosed) {
		t.Fatalf("err = %v, want ErrClosed", err)
	}
	if err := a.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := a.KeyState(context.Background(), b.Addr(), "k"); !errors.Is(err, ErrClosed) {
		t.Fatalf("KeyState after Close: %v", err)
	}
}

func TestPeersAndMetrics(t *testing.T) {
	regA, regB := prometheus.NewRegistry(), prometheus.NewRegistry()
	a := start(t, "a", &fakeHandler{}, func(c *Config) { c.Registerer = regA })
	b := start(t, "b", &fakeHandler{}, func(c *Config) { c.Registerer = regB })
	evs := makeEvents(2500)
	out := make([]actors.Result, len(evs))
	for range 4 {
		if err := a.Forward(context.Background(), "b", b.Addr(), evs, out); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Forward(context.Background(), "a", a.Addr(), evs[:100], out[:100]); err != nil {
		t.Fatal(err)
	}
	pa, pb := a.Peers()["b"], b.Peers()["a"]
	if pa.EventsSent != 10_000 || pb.EventsReceived != 10_000 || pa.EventsReceived != 100 || pb.EventsSent != 100 {
		t.Fatalf("a→b %+v, b→a %+v", pa, pb)
	}
	if pa.BytesSent != pb.BytesReceived || pb.BytesSent != pa.BytesReceived {
		t.Fatalf("bytes disagree: a sees %+v, b sees %+v", pa, pb)
	}
	if pa.BytesSent < 10_000*30 || pa.BytesReceived < 10_000 {
		t.Fatalf("a→b %+v: too few bytes", pa)
	}
	if got := counterValue(t, a.stats.events.WithLabelValues("b", "sent")); got != 10_000 {
		t.Fatalf("routed events sent = %v", got)
	}
	if got := counterValue(t, b.stats.bytes.WithLabelValues("a", "received")); got != float64(pb.BytesReceived) {
		t.Fatalf("routed bytes received = %v, want %d", got, pb.BytesReceived)
	}
	if got := counterValue(t, a.stats.requests.WithLabelValues("b", "forward", "ok")); got != 4 {
		t.Fatalf("requests = %v, want 4", got)
	}
	if mfs, err := regA.Gather(); err != nil || len(mfs) != 3 {
		t.Fatalf("gather: %d families, %v", len(mfs), err)
	}
}

func counterValue(t *testing.T, c prometheus.Counter) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

func TestStartErrors(t *testing.T) {
	a := start(t, "a", &fakeHandler{}, nil)
	cfg := DefaultConfig()
	cfg.NodeID, cfg.Addr, cfg.Logger = "b", a.Addr(), quietLogger()
	_, err := Start(cfg, &fakeHandler{})
	if err == nil || !strings.Contains(err.Error(), "--remote-addr") {
		t.Fatalf("taken port: err = %v, want one naming --remote-addr", err)
	}
	cfg.Addr = "0.0.0.0:0"
	if _, err := Start(cfg, &fakeHandler{}); err == nil || !strings.Contains(err.Error(), "advertised") {
		t.Fatalf("all interfaces without advertised address: err = %v", err)
	}
	cfg = DefaultConfig()
	if _, err := Start(cfg, &fakeHandler{}); err == nil || !strings.Contains(err.Error(), "node id") {
		t.Fatalf("no node id: err = %v", err)
	}
	// The metrics of two transports on one registry collide.
	reg := prometheus.NewRegistry()
	start(t, "c", &fakeHandler{}, func(c *Config) { c.Registerer = reg })
	cfg = DefaultConfig()
	cfg.NodeID, cfg.Logger, cfg.Registerer = "d", quietLogger(), reg
	if _, err := Start(cfg, &fakeHandler{}); err == nil {
		t.Fatal("second transport on one registry: no error")
	}
}

func TestAdvertisedAddr(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	_, port, _ := net.SplitHostPort(addr)
	hb := &fakeHandler{}
	b := start(t, "b", hb, func(c *Config) { c.Addr = "0.0.0.0:" + port; c.AdvertisedAddr = addr })
	if b.Addr() != addr {
		t.Fatalf("Addr() = %s, want %s", b.Addr(), addr)
	}
	a := start(t, "a", &fakeHandler{}, nil)
	if err := a.Forward(context.Background(), "b", addr, makeEvents(5), make([]actors.Result, 5)); err != nil {
		t.Fatal(err)
	}
}

func TestTLS(t *testing.T) {
	cert, _, _ := testutil.SelfSignedTLS(t)
	pool := x509.NewCertPool()
	pool.AddCert(cert.Leaf)
	mtls := func(c *Config) {
		c.ServerTLS = &tls.Config{Certificates: []tls.Certificate{cert}, ClientCAs: pool, MinVersion: tls.VersionTLS12}
		c.ClientTLS = &tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: pool, MinVersion: tls.VersionTLS12}
		c.RequestTimeout = time.Second
	}
	hb := &fakeHandler{}
	a := start(t, "a", &fakeHandler{}, mtls)
	b := start(t, "b", hb, mtls)
	evs := makeEvents(100)
	out := make([]actors.Result, len(evs))
	if err := a.Forward(context.Background(), "b", b.Addr(), evs, out); err != nil {
		t.Fatalf("TLS to TLS: %v", err)
	}
	if hb.forwards.Load() != 1 {
		t.Fatal("TLS peer got nothing")
	}

	// Plaintext cannot talk to TLS.
	plain := start(t, "plain", &fakeHandler{}, func(c *Config) { c.RequestTimeout = time.Second })
	err := plain.Forward(context.Background(), "b", b.Addr(), evs, out)
	if !errors.Is(err, ErrTimeout) && !errors.Is(err, ErrUnreachable) {
		t.Fatalf("plaintext to TLS: err = %v, want it refused", err)
	}
	// A TLS client without a certificate cannot talk to a server that
	// requires one (ClientCAs set).
	nocert := start(t, "nocert", &fakeHandler{}, func(c *Config) {
		c.ClientTLS = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
		c.RequestTimeout = time.Second
	})
	err = nocert.Forward(context.Background(), "b", b.Addr(), evs, out)
	if !errors.Is(err, ErrTimeout) && !errors.Is(err, ErrUnreachable) {
		t.Fatalf("no client cert to mTLS: err = %v, want it refused", err)
	}
	if n := hb.forwards.Load(); n != 1 {
		t.Fatalf("TLS peer served %d forwards, want only the TLS one", n)
	}
}

// countingDialer counts the bytes both ways on the connections it dials.
type countingDialer struct{ n atomic.Int64 }

func (d *countingDialer) dial(ctx context.Context, addr string) (net.Conn, error) {
	c, err := (&net.Dialer{}).DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	return &countingConn{Conn: c, n: &d.n}, nil
}

type countingConn struct {
	net.Conn
	n *atomic.Int64
}

func (c *countingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.n.Add(int64(n))
	return n, err
}

func (c *countingConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	c.n.Add(int64(n))
	return n, err
}

// TestWireBytesPerEvent measures the bytes on the wire (TCP payload, both
// ways: requests, responses, gRPC and protoactor framing) per forwarded
// event against the event's JSON size (the target: at most 1.1×).
func TestWireBytesPerEvent(t *testing.T) {
	d := &countingDialer{}
	dial := func(c *Config) { c.dial = d.dial }
	a := start(t, "a", &fakeHandler{}, dial)
	b := start(t, "b", &discardHandler{}, dial)
	const batch, batches = 1000, 50
	evs := makeEvents(batch * batches)
	out := make([]actors.Result, batch)
	// Warm up: connections both ways.
	if err := a.Forward(context.Background(), "b", b.Addr(), evs[:batch], out); err != nil {
		t.Fatal(err)
	}
	n0, p0 := d.n.Load(), a.Peers()["b"]
	for i := range batches {
		if err := a.Forward(context.Background(), "b", b.Addr(), evs[i*batch:(i+1)*batch], out); err != nil {
			t.Fatal(err)
		}
	}
	wire := float64(d.n.Load() - n0)
	p1 := a.Peers()["b"]
	payload := float64(p1.BytesSent - p0.BytesSent + p1.BytesReceived - p0.BytesReceived)
	js := float64(jsonSize(t, evs))
	events := float64(len(evs))
	ratio := wire / js
	t.Logf("~%.0f-byte JSON events, batches of %d: %.1f wire bytes/event (%.1f protobuf payload), JSON %.1f bytes/event: wire/JSON = %.3f, payload/JSON = %.3f",
		js/events, batch, wire/events, payload/events, js/events, ratio, payload/js)
	if ratio > 1.1 {
		t.Fatalf("wire/JSON = %.3f, want ≤ 1.1", ratio)
	}
}

// discardHandler applies nothing and answers applied.
type discardHandler struct{ fakeHandler }

func (*discardHandler) Forward(_ context.Context, _ string, evs []event.Event, out []actors.Result) error {
	for i := range out {
		out[i] = actors.ResultApplied
	}
	return nil
}

// BenchmarkForward measures events/s forwarded between two transports over
// loopback, in batches of 1,000 ~80-byte JSON events, 8 batches in flight,
// and the wire bytes per event.
func BenchmarkForward(b *testing.B) {
	d := &countingDialer{}
	dial := func(c *Config) { c.dial = d.dial }
	ta := start(b, "a", &fakeHandler{}, dial)
	tb := start(b, "b", &discardHandler{}, dial)
	const batch = 1000
	evs := makeEvents(batch)
	if err := ta.Forward(context.Background(), "b", tb.Addr(), evs, make([]actors.Result, batch)); err != nil {
		b.Fatal(err)
	}
	js := jsonSize(b, evs)
	n0 := d.n.Load()
	b.SetParallelism(4)
	b.ReportAllocs()
	b.ResetTimer()
	t0 := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		out := make([]actors.Result, batch)
		for pb.Next() {
			if err := ta.Forward(context.Background(), "b", tb.Addr(), evs, out); err != nil {
				b.Error(err)
				return
			}
		}
	})
	el := time.Since(t0)
	b.StopTimer()
	events := float64(b.N * batch)
	b.ReportMetric(events/el.Seconds(), "events/s")
	b.ReportMetric(float64(d.n.Load()-n0)/events, "wire-B/event")
	b.ReportMetric(float64(d.n.Load()-n0)/float64(b.N*js), "wire/json")
}

func TestForwardToSelf(t *testing.T) {
	ha := &fakeHandler{}
	a := start(t, "a", ha, nil)
	evs := makeEvents(100)
	out := make([]actors.Result, len(evs))
	if err := a.Forward(context.Background(), "a", a.Addr(), evs, out); err != nil {
		t.Fatal(err)
	}
	if n := ha.forwards.Load(); n != 1 || out[7] != resultOfEvent(&evs[7]) {
		t.Fatalf("%d forwards, out[7] = %s", n, out[7])
	}
}

// bigHandler answers with documents larger than one message.
type bigHandler struct{ fakeHandler }

func (*bigHandler) KeyState(_ context.Context, key string) (*api.KeyState, error) {
	return &api.KeyState{Key: key, Recent: makeEvents(5000)}, nil
}

func (*bigHandler) List(_ context.Context, prefix, _ string, limit int) (*api.KeyList, error) {
	kl := &api.KeyList{Live: int64(limit)}
	for i := range limit {
		kl.Keys = append(kl.Keys, api.KeySummary{Key: fmt.Sprintf("%s%08d", prefix, i), Node: "b"})
	}
	return kl, nil
}

func TestResponsesFitInAMessage(t *testing.T) {
	small := func(c *Config) { c.MaxMessageBytes = MinMaxMessageBytes }
	a := start(t, "a", &fakeHandler{}, small)
	b := start(t, "b", &bigHandler{}, small)
	_, err := a.KeyState(context.Background(), b.Addr(), "k")
	if !errors.Is(err, ErrRemote) || !strings.Contains(err.Error(), "too large") {
		t.Fatalf("err = %v, want a too-large error from the peer", err)
	}
	kl, err := a.List(context.Background(), b.Addr(), "key-", "", 10_000)
	if err != nil {
		t.Fatal(err)
	}
	if !kl.Truncated || len(kl.Keys) == 0 || len(kl.Keys) >= 10_000 || kl.Live != 10_000 {
		t.Fatalf("list of %d keys, truncated %v, live %d: want a truncated list", len(kl.Keys), kl.Truncated, kl.Live)
	}
	t.Logf("list cut to %d of 10000 keys", len(kl.Keys))
}
