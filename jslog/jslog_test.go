package jslog

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/squallhq/squall/actors"
	"github.com/squallhq/squall/api"
	"github.com/squallhq/squall/internal/natstest"
	"github.com/squallhq/squall/source"
)

func TestProduceConsumeInOrder(t *testing.T) {
	e := newEnv(t)
	cfg := e.config(4)
	prod := newProducer(t, cfg)
	sink := newSink()
	var lives atomic.Int32
	cfg.OnLive = func(int32) { lives.Add(1) }
	m := newManager(t, cfg, sink)
	startAll(m, 4)
	for b := range 10 {
		submit(t, prod, events(50, 13, float64(b*50)))
	}
	eventually(t, func() bool { return sink.count(false) == 500 }, "applied %d of 500", sink.count(false))
	checkOrder(t, sink, 4)
	if n := lives.Load(); n != 4 {
		t.Fatalf("OnLive called %d times, want 4", n)
	}
	if got := sink.count(true); got != 500 {
		t.Fatalf("%d live events, want 500", got)
	}
	for _, st := range m.Status() {
		if st.State != source.StateLive {
			t.Fatalf("partition %d: state %s", st.Partition, st.State)
		}
	}
}

// TestRestartReplaysThenLive: a Manager closed and a new one on the same
// stream and bucket replays exactly [Restore, Offset) of each partition,
// then applies live what came after, nothing twice outside the replay.
func TestRestartReplaysThenLive(t *testing.T) {
	e := newEnv(t)
	cfg := e.config(2)
	prod := newProducer(t, cfg)
	for b := range 20 {
		submit(t, prod, events(10, 7, float64(b*10)))
	}
	// The first sink says every window still holds the events from the
	// third message of the partition on.
	s1 := newSink()
	s1.restore = func(p int32) int64 {
		as := s1.of(p)
		offs := distinctOffsets(as)
		if len(offs) < 3 {
			return -1
		}
		return offs[2]
	}
	m1 := newManager(t, cfg, s1)
	startAll(m1, 2)
	eventually(t, func() bool { return s1.count(false) == 200 }, "applied %d of 200", s1.count(false))
	if err := m1.Close(); err != nil {
		t.Fatal(err)
	}
	for b := range 5 {
		submit(t, prod, events(10, 7, float64(1000+b*10)))
	}
	s2 := newSink()
	var lives sync.Map
	cfg2 := cfg
	cfg2.OnLive = func(p int32) {
		if _, dup := lives.LoadOrStore(p, true); dup {
			t.Errorf("OnLive called twice for partition %d", p)
		}
	}
	m2 := newManager(t, cfg2, s2)
	startAll(m2, 2)
	eventually(t, func() bool { return s2.count(true) == 50 }, "live %d of 50", s2.count(true))
	for p := range int32(2) {
		first := s1.of(p)
		offs := distinctOffsets(first)
		restore, committed := offs[2], first[len(first)-1].offset+1
		var want []applied
		for _, a := range first {
			if a.offset >= restore {
				a.replay = true
				want = append(want, a)
			}
		}
		got := s2.of(p)
		n := 0
		for n < len(got) && got[n].replay {
			n++
		}
		if fmt.Sprint(got[:n]) != fmt.Sprint(want) {
			t.Fatalf("partition %d replayed\n%v\nwant\n%v", p, got[:n], want)
		}
		for _, a := range got[n:] {
			if a.replay || a.offset < committed || a.value < 1000 {
				t.Fatalf("partition %d: live %v at or below the committed offset %d", p, a, committed)
			}
		}
		if _, ok := lives.Load(p); !ok {
			t.Fatalf("partition %d never live", p)
		}
	}
	checkOrder(t, s2, 2)
}

func distinctOffsets(as []applied) []int64 {
	var offs []int64
	for _, a := range as {
		if len(offs) == 0 || offs[len(offs)-1] != a.offset {
			offs = append(offs, a.offset)
		}
	}
	return offs
}

// TestReplayEndsAtGap: the committed offset is past the partition's last
// message (another partition's message holds sequence Offset−1); the replay
// still ends, and OnLive fires at once when there is nothing to replay.
func TestReplayEndsAtGap(t *testing.T) {
	e := newEnv(t)
	cfg := e.config(2)
	prod := newProducer(t, cfg)
	for b := range 10 {
		submit(t, prod, events(4, 4, float64(b*4)))
	}
	js, _ := jetstream.New(e.nc)
	info, err := js.Stream(context.Background(), DefaultStream)
	if err != nil {
		t.Fatal(err)
	}
	last := int64(info.CachedInfo().State.LastSeq)
	lives := make(chan int32, 4)
	cfg.OnLive = func(p int32) { lives <- p }
	sink := newSink()
	m := newManager(t, cfg, sink)
	// Partition 0 replays everything it has; partition 1 has nothing in
	// [last+1, last+1).
	m.Start(0, source.StartFrom{Progress: &source.Progress{Partition: 0, Offset: last + 1, Restore: 1}})
	m.Start(1, source.StartFrom{Progress: &source.Progress{Partition: 1, Offset: last + 1, Restore: last + 1}})
	seen := map[int32]bool{}
	for len(seen) < 2 {
		p := <-lives
		if seen[p] {
			t.Fatalf("OnLive twice for %d", p)
		}
		seen[p] = true
	}
	for _, a := range sink.of(0) {
		if !a.replay {
			t.Fatalf("partition 0: %v not replayed", a)
		}
	}
	if len(sink.of(0)) == 0 || len(sink.of(1)) != 0 {
		t.Fatalf("replayed %d and %d events", len(sink.of(0)), len(sink.of(1)))
	}
}

func TestStopReturnsCommitted(t *testing.T) {
	e := newEnv(t)
	cfg := e.config(1)
	prod := newProducer(t, cfg)
	sink := newSink()
	m := newManager(t, cfg, sink)
	m.Start(0, source.StartFrom{Offset: -1})
	submit(t, prod, events(30, 5, 0))
	eventually(t, func() bool { return sink.count(false) == 30 }, "applied %d of 30", sink.count(false))
	c, err := m.Stop(context.Background(), 0)
	if err != nil {
		t.Fatal(err)
	}
	as := sink.of(0)
	if want := as[len(as)-1].offset + 1; c != want {
		t.Fatalf("Stop returned %d, want %d", c, want)
	}
	pr, ok, err := m.readProgress(context.Background(), 0)
	if err != nil || !ok || pr.Offset != c {
		t.Fatalf("bucket holds %+v %v %v, want offset %d", pr, ok, err, c)
	}
	if _, err := m.Stop(context.Background(), 0); !errors.Is(err, source.ErrNotStarted) {
		t.Fatalf("second Stop: %v", err)
	}
}

// fenceStore is a Store that fences every commit after the first.
type fenceStore struct {
	mu      sync.Mutex
	commits []source.Progress
	refused int
}

func (s *fenceStore) Commit(_ context.Context, ps []source.Progress) []error {
	s.mu.Lock()
	defer s.mu.Unlock()
	errs := make([]error, len(ps))
	for i, p := range ps {
		if len(s.commits) > 0 {
			s.refused++
			errs[i] = fmt.Errorf("%w: partition %d", source.ErrFenced, p.Partition)
			continue
		}
		s.commits = append(s.commits, p)
	}
	return errs
}

func TestFencedStoreStopsCommits(t *testing.T) {
	e := newEnv(t)
	cfg := e.config(1)
	store := &fenceStore{}
	cfg.Store = store
	prod := newProducer(t, cfg)
	sink := newSink()
	m := newManager(t, cfg, sink)
	m.Start(0, source.StartFrom{Progress: &source.Progress{Offset: -1}})
	submit(t, prod, events(5, 5, 0))
	eventually(t, func() bool { store.mu.Lock(); defer store.mu.Unlock(); return len(store.commits) == 1 }, "no commit")
	submit(t, prod, events(5, 5, 100))
	eventually(t, func() bool { store.mu.Lock(); defer store.mu.Unlock(); return store.refused == 1 }, "no refused commit")
	c, err := m.Stop(context.Background(), 0)
	if !errors.Is(err, source.ErrFenced) {
		t.Fatalf("Stop: %v, want ErrFenced", err)
	}
	store.mu.Lock()
	defer store.mu.Unlock()
	if store.refused != 1 || c != store.commits[0].Offset {
		t.Fatalf("refused %d commits, Stop returned %d, committed %+v", store.refused, c, store.commits)
	}
}

func TestFailingApplyRetried(t *testing.T) {
	e := newEnv(t)
	cfg := e.config(1)
	prod := newProducer(t, cfg)
	sink := newSink()
	sink.fail = func(call int) bool { return call%2 == 1 } // every other call
	m := newManager(t, cfg, sink)
	m.Start(0, source.StartFrom{Offset: -1})
	for b := range 5 {
		submit(t, prod, events(10, 3, float64(b*10)))
	}
	eventually(t, func() bool { return sink.count(false) == 50 }, "applied %d of 50", sink.count(false))
	as := sink.of(0)
	for i, a := range as {
		if a.value != float64(i) {
			t.Fatalf("event %d has value %v: skipped or doubled", i, a.value)
		}
	}
	if sink.failed == 0 {
		t.Fatal("no failure injected")
	}
}

// TestBackPressure: a blocked sink holds the partition at
// MaxBufferedMessages fetched messages, however many are stored.
func TestBackPressure(t *testing.T) {
	e := newEnv(t)
	cfg := e.config(1)
	cfg.MaxBufferedMessages = 8
	prod := newProducer(t, cfg)
	for i := range 100 {
		submit(t, prod, events(1, 1, float64(i)))
	}
	sink := newSink()
	sink.gate = make(chan struct{})
	m := newManager(t, cfg, sink)
	m.Start(0, source.StartFrom{Offset: -1})
	m.mu.Lock()
	part := m.parts[0]
	m.mu.Unlock()
	// The applier holds one gathered group in Apply; the reader fills the
	// rest up to the bound and then waits for room.
	eventually(t, func() bool { return part.held.Load() == 8 }, "held %d, want 8", part.held.Load())
	<-sink.entered
	if st := m.Status()[0]; st.Buffered != 8 || st.Lag < 92 {
		t.Fatalf("status %+v: want 8 buffered, lag ≥ 92", st)
	}
	close(sink.gate)
	eventually(t, func() bool { return sink.count(false) == 100 }, "applied %d of 100", sink.count(false))
	if pk := part.peak.Load(); pk > 8 {
		t.Fatalf("peak of %d buffered messages over the bound 8", pk)
	}
}

// TestProducerStoreFull: a stream at MaxBytes refuses new messages; the
// events fail, and succeed again once there is room.
func TestProducerStoreFull(t *testing.T) {
	e := newEnv(t)
	cfg := e.config(1)
	cfg.MaxBytes = 4 << 10
	prod := newProducer(t, cfg)
	var failed bool
	for i := 0; i < 200 && !failed; i++ {
		evs := events(10, 2, float64(i*10))
		out := make([]actors.Result, len(evs))
		err := prod.Submit(context.Background(), evs, out)
		for _, r := range out {
			failed = failed || r == actors.ResultFailed
		}
		if failed && err == nil {
			t.Fatal("every event failed without an error")
		}
	}
	if !failed {
		t.Fatal("a full stream stored everything")
	}
	js, _ := jetstream.New(e.nc)
	s, err := js.Stream(context.Background(), DefaultStream)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Purge(context.Background()); err != nil {
		t.Fatal(err)
	}
	submit(t, prod, events(10, 2, 0))
}

// TestServerStoreFull: the server's JetStream store limit (a full disk).
func TestServerStoreFull(t *testing.T) {
	s := natstest.StartJS(t, 64<<10)
	nc := natstest.Connect(t, s)
	cfg := Config{Conn: nc, Partitions: 2, MaxBytes: 32 << 10}
	prod := newProducer(t, cfg)
	var failed bool
	for i := 0; i < 500 && !failed; i++ {
		evs := events(20, 5, float64(i*20))
		out := make([]actors.Result, len(evs))
		_ = prod.Submit(context.Background(), evs, out)
		for _, r := range out {
			failed = failed || r == actors.ResultFailed
		}
	}
	if !failed {
		t.Fatal("a full store stored everything")
	}
}

func TestCloseIdempotent(t *testing.T) {
	e := newEnv(t)
	cfg := e.config(2)
	m := newManager(t, cfg, newSink())
	startAll(m, 2)
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Stop(context.Background(), 0); !errors.Is(err, source.ErrClosed) {
		t.Fatalf("Stop after Close: %v", err)
	}
	prod := newProducer(t, cfg)
	prod.Close()
	prod.Close()
	if err := prod.Submit(context.Background(), events(1, 1, 0), make([]actors.Result, 1)); !errors.Is(err, source.ErrClosed) {
		t.Fatalf("Submit after Close: %v", err)
	}
}

// TestProducerBuffersReused: concurrent Submits of batches of different
// sizes (some split over several messages, so message buffers of every
// size are pooled and reused) store every event exactly as submitted: a
// buffer reused while its message was still being published would show
// as a changed or lost event.
func TestProducerBuffersReused(t *testing.T) {
	e := newEnv(t)
	cfg := e.config(3)
	prod := newProducer(t, cfg)
	prod.maxMsg = 2 << 10 // a batch of 200 events is several messages
	sink := newSink()
	m := newManager(t, cfg, sink)
	startAll(m, 3)
	const workers, batches = 4, 60
	var wg sync.WaitGroup
	want := 0
	for w := range workers {
		for b := range batches {
			want += 1 + (b*37+w*11)%200
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for b := range batches {
				n := 1 + (b*37+w*11)%200
				evs := events(n, 7+b%5, float64((w*batches+b)*1000))
				for i := range evs {
					evs[i].Key = fmt.Sprintf("%s-%0*d", evs[i].Key, 1+b%30, w) // keys of many lengths
				}
				out := make([]actors.Result, n)
				if err := prod.Submit(context.Background(), evs, out); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	eventually(t, func() bool { return sink.count(false) == want }, "applied %d of %d", sink.count(false), want)
	seen := map[float64]string{}
	for p := range int32(3) {
		for _, a := range sink.of(p) {
			if k, dup := seen[a.value]; dup {
				t.Fatalf("value %v applied twice (keys %q, %q)", a.value, k, a.key)
			}
			seen[a.value] = a.key
		}
	}
	for w := range workers {
		for b := range batches {
			n := 1 + (b*37+w*11)%200
			for i, ev := range events(n, 7+b%5, float64((w*batches+b)*1000)) {
				key := fmt.Sprintf("%s-%0*d", ev.Key, 1+b%30, w)
				if got, ok := seen[ev.Value]; !ok || got != key {
					t.Fatalf("worker %d batch %d event %d: stored key %q (found %v), want %q", w, b, i, got, ok, key)
				}
			}
		}
	}
	checkOrder(t, sink, 3)
}

// A partition started with no progress committed (a node killed before its
// first commit) knows the stream's end before it has applied anything:
// its status is behind, so a node's readiness waits for the whole log
// rather than answering ready while the partition is still applying it.
func TestStartWithoutProgressKnowsHighWatermark(t *testing.T) {
	e := newEnv(t)
	cfg := e.config(1)
	prod := newProducer(t, cfg)
	for b := range 5 {
		submit(t, prod, events(10, 3, float64(b*10)))
	}
	sink := newSink()
	// The status the moment the partition goes live, before its reader
	// has fetched anything.
	atLive := make(chan api.SourceStatus, 1)
	var m *Manager
	cfg.OnLive = func(int32) { atLive <- m.Status()[0] }
	m = newManager(t, cfg, sink)
	startAll(m, 1)
	st := <-atLive
	if st.HighWatermark != 6 || st.Applied >= st.HighWatermark {
		t.Fatalf("when live, before anything is read: high watermark %d, applied %d; want 6 and below it", st.HighWatermark, st.Applied)
	}
	eventually(t, func() bool { st := m.Status()[0]; return st.Applied == st.HighWatermark },
		"never caught up: %+v", m.Status())
	if got := sink.count(false); got != 50 {
		t.Fatalf("applied %d events, want 50", got)
	}
}
