package source

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	promtest "github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/squallhq/squall/cluster"
	"github.com/squallhq/squall/event"
)

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// (1) 100,000 events over 8 partitions: each applied exactly once, in
// partition order, in batches.
func TestConsumeAllOnceInOrder(t *testing.T) {
	const parts, total = 8, 100_000
	c := newCluster(t, parts)
	prod := newClient(t, c, kgo.RecordPartitioner(kgo.StickyKeyPartitioner(nil)))
	recs := make([]*kgo.Record, 0, total)
	for i := range total {
		key := fmt.Sprintf("host-%d.cpu", i%5000)
		r := eventRecord(0, key, i)
		recs = append(recs, r)
	}
	for i := 0; i < total; i += 10_000 {
		produce(t, prod, recs[i:i+10_000]...)
	}

	sink := newTestSink(100)
	m := newManager(t, testConfig(c), sink)
	for p := range int32(parts) {
		m.Start(p, StartFrom{})
	}
	eventually(t, func() bool { return sink.count() >= total }, "applied %d of %d", sink.count(), total)

	seen := make(map[string]bool, total)
	for p := range int32(parts) {
		evs := sink.events(p)
		for i, ev := range evs {
			if ev.replay {
				t.Fatalf("partition %d: event %d applied in restore mode", p, i)
			}
			if i > 0 && ev.off <= evs[i-1].off {
				t.Fatalf("partition %d: offset %d after %d", p, ev.off, evs[i-1].off)
			}
			if got := cluster.Partition(ev.key, parts); got != p {
				t.Fatalf("key %q read from partition %d, murmur2 says %d", ev.key, p, got)
			}
			if seen[ev.id] {
				t.Fatalf("event %s applied twice", ev.id)
			}
			seen[ev.id] = true
		}
	}
	if len(seen) != total {
		t.Fatalf("applied %d distinct events, want %d", len(seen), total)
	}
	sink.mu.Lock()
	applies, maxLen := sink.applies, sink.maxLen
	sink.mu.Unlock()
	if maxLen > maxApply {
		t.Errorf("an Apply got %d events, want at most %d", maxLen, maxApply)
	}
	t.Logf("%d events in %d Apply calls (%.0f per call, max %d)", total, applies, float64(total)/float64(applies), maxLen)
	if applies > total/10 {
		t.Errorf("%d Apply calls for %d events: not batched", applies, total)
	}
	eventually(t, func() bool {
		for _, st := range m.Status() {
			if st.State != StateLive || st.Committed != st.HighWatermark || st.Lag != 0 {
				return false
			}
		}
		return true
	}, "offsets not all committed: %+v", m.Status())
	if got := promtest.ToFloat64(m.met.applied); got != total {
		t.Errorf("records_total{applied} = %v, want %d", got, total)
	}
}

// (2) Commit after apply: no commit ever covers a record the Sink has not
// applied, and the metadata of each commit is the restore offset for it.
func TestCommitAfterApply(t *testing.T) {
	const n, window = 3000, 50
	c := newCluster(t, 1)
	sink := newTestSink(window)
	sink.gate = make(chan struct{})

	var mu sync.Mutex
	var violations []string
	var commits int
	c.ControlKey(int16(kmsg.OffsetCommit), func(req kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		r := req.(*kmsg.OffsetCommitRequest)
		for _, rt := range r.Topics {
			for _, rp := range rt.Partitions {
				sink.mu.Lock()
				applied := sink.nextLocked(rp.Partition)
				sink.mu.Unlock()
				meta := ""
				if rp.Metadata != nil {
					meta = *rp.Metadata
				}
				mu.Lock()
				commits++
				if rp.Offset > applied {
					violations = append(violations, fmt.Sprintf("commit %d with %d applied", rp.Offset, applied))
				}
				// One event per record from offset 0: the restore offset
				// after applying [0, c) is max(0, c-window).
				if want := fmt.Sprintf("r=%d", max(0, rp.Offset-window)); meta != want {
					violations = append(violations, fmt.Sprintf("commit %d with metadata %q, want %q", rp.Offset, meta, want))
				}
				mu.Unlock()
			}
		}
		return nil, nil, false
	})

	// Small batches and fetches: many Apply calls.
	prod := newClient(t, c, kgo.ProducerBatchCompression(kgo.NoCompression()), kgo.ProducerBatchMaxBytes(1024))
	recs := make([]*kgo.Record, n)
	for i := range recs {
		recs[i] = eventRecord(0, "k", i)
	}
	produce(t, prod, recs...)
	cfg := testConfig(c)
	cfg.CommitInterval = 5 * time.Millisecond
	cfg.MaxBufferedRecords = 40
	cfg.FetchMaxBytes, cfg.FetchMaxPartitionBytes = 1024, 1024
	m := newManager(t, cfg, sink)
	m.Start(0, StartFrom{})

	// Let Apply through a few at a time, with commits in between.
	for sink.nextOffset(0) < n {
		select {
		case sink.gate <- struct{}{}:
		case <-time.After(30 * time.Second):
			t.Fatal("Apply not called")
		}
		time.Sleep(time.Millisecond) // pacing only, not synchronisation
		st := status(m, 0)
		if st.Committed > sink.nextOffset(0) {
			t.Fatalf("status: committed %d past applied %d", st.Committed, sink.nextOffset(0))
		}
	}
	close(sink.gate)
	eventually(t, func() bool { return status(m, 0).Committed == n }, "committed %d, want %d", status(m, 0).Committed, n)
	mu.Lock()
	defer mu.Unlock()
	if len(violations) > 0 {
		t.Fatalf("%d bad commits of %d, first: %s", len(violations), commits, violations[0])
	}
	if commits < 3 {
		t.Fatalf("only %d commits", commits)
	}
	at, meta := committed(t, c, 0)
	if at != n || meta != fmt.Sprintf("r=%d", n-window) {
		t.Fatalf("group has %d %q, want %d %q", at, meta, n, fmt.Sprintf("r=%d", n-window))
	}
	t.Logf("%d commits checked", commits)
}

// CommitHold holds periodic commits back to the offset it returns (the
// oldest record whose alerts are undelivered), and lets them advance once
// it releases; Stop's final commit (a handoff's start) is not held.
func TestCommitHold(t *testing.T) {
	const n = 200
	c := newCluster(t, 2)
	prod := newClient(t, c)
	recs := make([]*kgo.Record, 0, 2*n)
	for i := range n {
		recs = append(recs, eventRecord(0, "a", i), eventRecord(1, "b", i))
	}
	produce(t, prod, recs...)
	var hold atomic.Int64
	hold.Store(120)
	cfg := testConfig(c)
	cfg.CommitHold = func(p int32) (int64, bool) {
		if p != 0 || hold.Load() < 0 {
			return 0, false
		}
		return hold.Load(), true
	}
	sink := newTestSink(10)
	m := newManager(t, cfg, sink)
	m.Start(0, StartFrom{})
	m.Start(1, StartFrom{})
	eventually(t, func() bool { return sink.nextOffset(0) == n && status(m, 1).Committed == n }, "not all applied")
	eventually(t, func() bool { at, _ := committed(t, c, 0); return at == 120 }, "held partition not committed at 120")
	time.Sleep(5 * cfg.CommitInterval) // more commit rounds: none may pass the hold
	if at, _ := committed(t, c, 0); at != 120 {
		t.Fatalf("held partition committed at %d, want 120", at)
	}
	hold.Store(-1) // delivered
	eventually(t, func() bool { at, _ := committed(t, c, 0); return at == n }, "commit not released")

	// Stop commits what was applied, hold or not.
	hold.Store(50)
	produce(t, prod, eventRecord(0, "a", n))
	eventually(t, func() bool { return sink.nextOffset(0) == n+1 }, "last record not applied")
	if _, err := m.Stop(ctxT(t), 0); err != nil {
		t.Fatal(err)
	}
	if at, _ := committed(t, c, 0); at != n+1 {
		t.Fatalf("after Stop committed at %d, want %d", at, n+1)
	}
}

// (3) After a crash (Close without Stop, then a new Manager), Start
// replays exactly [restore, committed) in restore mode, then goes on live
// from committed; the state rebuilt is the state lost.
func TestCrashReplay(t *testing.T) {
	const window = 40
	c := newCluster(t, 2)
	prod := newClient(t, c)
	for i := range 300 {
		produce(t, prod, eventRecord(1, fmt.Sprintf("k%d", i%7), i))
	}
	sinkA := newTestSink(window)
	mA := newManager(t, testConfig(c), sinkA)
	mA.Start(1, StartFrom{})
	eventually(t, func() bool { return status(mA, 1).Committed == 300 }, "A committed %d", status(mA, 1).Committed)
	if err := mA.Close(); err != nil {
		t.Fatal(err)
	}
	lastA := sinkA.events(1)[300-window:]

	cAt, meta := committed(t, c, 1)
	r, ok := parseMeta(meta)
	if cAt != 300 || !ok || r != 300-window {
		t.Fatalf("committed %d %q, want 300 r=%d", cAt, meta, 300-window)
	}
	for i := 300; i < 350; i++ {
		produce(t, prod, eventRecord(1, fmt.Sprintf("k%d", i%7), i))
	}

	sinkB := newTestSink(window)
	mB := newManager(t, testConfig(c), sinkB)
	mB.Start(1, StartFrom{})
	eventually(t, func() bool { return sinkB.nextOffset(1) == 350 }, "B applied up to %d", sinkB.nextOffset(1))
	evs := sinkB.events(1)
	if len(evs) != 350-int(r) {
		t.Fatalf("B applied %d events, want %d", len(evs), 350-r)
	}
	for i, ev := range evs {
		off := r + int64(i)
		if ev.off != off || ev.replay != (off < cAt) {
			t.Fatalf("event %d: offset %d replay %v, want offset %d replay %v", i, ev.off, ev.replay, off, off < cAt)
		}
		if off < cAt && ev != (appliedEvent{key: lastA[i].key, id: lastA[i].id, value: lastA[i].value, off: off, replay: true}) {
			t.Fatalf("replayed %+v, lost state had %+v", ev, lastA[i])
		}
	}
	st := status(mB, 1)
	if st.ReplayFrom != r || st.ReplayTo != cAt || st.State != StateLive {
		t.Fatalf("status %+v", st)
	}
	if got := promtest.ToFloat64(mB.met.replayRecords); got != float64(cAt-r) {
		t.Fatalf("replay records %v, want %d", got, cAt-r)
	}
	eventually(t, func() bool { return status(mB, 1).Committed == 350 }, "B committed %d", status(mB, 1).Committed)
}

// (3) with a real crash: the dead owner applied records past its last
// commit (its later commits and its final one failed). The new owner
// replays [restore, committed) of the last good commit and re-reads the
// rest live: at-least-once delivery, exact state.
func TestKillReplay(t *testing.T) {
	const window = 25
	c := newCluster(t, 1)
	prod := newClient(t, c)
	recs := make([]*kgo.Record, 200)
	for i := range recs {
		recs[i] = eventRecord(0, fmt.Sprintf("k%d", i%3), i)
	}
	produce(t, prod, recs...)
	sinkA := newTestSink(window)
	mA := newManager(t, testConfig(c), sinkA)
	mA.Start(0, StartFrom{})
	eventually(t, func() bool { return status(mA, 0).Committed == 200 }, "A committed %d", status(mA, 0).Committed)

	// From now on every commit fails, as if the owner died before it.
	var failing atomic.Bool
	failing.Store(true)
	c.ControlKey(int16(kmsg.OffsetCommit), func(req kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		if !failing.Load() {
			return nil, nil, false
		}
		r := req.(*kmsg.OffsetCommitRequest)
		resp := r.ResponseKind().(*kmsg.OffsetCommitResponse)
		for _, rt := range r.Topics {
			st := kmsg.NewOffsetCommitResponseTopic()
			st.Topic, st.TopicID = rt.Topic, rt.TopicID
			for _, rp := range rt.Partitions {
				sp := kmsg.NewOffsetCommitResponseTopicPartition()
				sp.Partition = rp.Partition
				sp.ErrorCode = kerr.OffsetMetadataTooLarge.Code
				st.Partitions = append(st.Partitions, sp)
			}
			resp.Topics = append(resp.Topics, st)
		}
		return resp, nil, true
	})
	for i := range recs[:80] {
		recs[i] = eventRecord(0, fmt.Sprintf("k%d", i%3), 200+i)
	}
	produce(t, prod, recs[:80]...)
	eventually(t, func() bool { return sinkA.nextOffset(0) == 280 }, "A applied up to %d", sinkA.nextOffset(0))
	if err := mA.Close(); err == nil {
		t.Fatal("Close committed through a failing broker")
	}
	failing.Store(false)
	if at, meta := committed(t, c, 0); at != 200 || meta != fmt.Sprintf("r=%d", 200-window) {
		t.Fatalf("group has %d %q", at, meta)
	}

	sinkB := newTestSink(window)
	mB := newManager(t, testConfig(c), sinkB)
	mB.Start(0, StartFrom{})
	eventually(t, func() bool { return status(mB, 0).Committed == 280 }, "B committed %d", status(mB, 0).Committed)
	evs := sinkB.events(0)
	if len(evs) != 280-(200-window) || evs[0].off != 200-window {
		t.Fatalf("B applied %d events from %d", len(evs), evs[0].off)
	}
	for _, ev := range evs {
		if ev.replay != (ev.off < 200) {
			t.Fatalf("offset %d replay %v", ev.off, ev.replay)
		}
	}
	// The rebuilt window is the one lost.
	a := sinkA.events(0)
	for i, ev := range evs[len(evs)-window:] {
		want := a[len(a)-window+i]
		if ev.key != want.key || ev.id != want.id || ev.off != want.off {
			t.Fatalf("rebuilt %+v, lost %+v", ev, want)
		}
	}
}

// (3b) A commit without metadata replays from the first offset whose
// timestamp is at or after (timestamp of record c-1) - Retention; broken
// metadata is ignored the same way.
func TestReplayFallbackByTimestamp(t *testing.T) {
	for _, meta := range []string{"", "garbage", "r=-5", "r=x"} {
		t.Run(fmt.Sprintf("%q", meta), func(t *testing.T) {
			c := newCluster(t, 1)
			prod := newClient(t, c)
			t0 := time.UnixMilli(1764065000000)
			var recs []*kgo.Record
			for i := range 100 {
				r := eventRecord(0, "k", i)
				r.Timestamp = t0.Add(time.Duration(i) * time.Second)
				recs = append(recs, r)
			}
			produce(t, prod, recs...)
			commit(t, c, 0, 50, meta)

			sink := newTestSink(10)
			cfg := testConfig(c)
			cfg.Retention = 10 * time.Second
			m := newManager(t, cfg, sink)
			m.Start(0, StartFrom{})
			eventually(t, func() bool { return sink.nextOffset(0) == 100 }, "applied up to %d", sink.nextOffset(0))
			// ts(49) - 10s = ts(39).
			evs := sink.events(0)
			if evs[0].off != 39 || len(evs) != 61 {
				t.Fatalf("first offset %d, %d events; want 39, 61", evs[0].off, len(evs))
			}
			for _, ev := range evs {
				if ev.replay != (ev.off < 50) {
					t.Fatalf("offset %d replay %v", ev.off, ev.replay)
				}
			}
		})
	}
}

// (4) Start with a handoff begins live at the given offset: no replay.
func TestStartHandoff(t *testing.T) {
	c := newCluster(t, 1)
	prod := newClient(t, c)
	for i := range 60 {
		produce(t, prod, eventRecord(0, "k", i))
	}

	for _, tc := range []struct {
		from  StartFrom
		first int64
	}{
		{StartFrom{Handoff: true, Offset: 30}, 30},
		{StartFrom{Handoff: true, Offset: -1}, 45}, // the group's committed offset
	} {
		commit(t, c, 0, 45, "r=10")
		sink := newTestSink(10)
		m := newManager(t, testConfig(c), sink)
		m.Start(0, tc.from)
		eventually(t, func() bool { return sink.nextOffset(0) == 60 }, "applied up to %d", sink.nextOffset(0))
		evs := sink.events(0)
		if evs[0].off != tc.first || len(evs) != int(60-tc.first) {
			t.Fatalf("%+v: first offset %d, %d events", tc.from, evs[0].off, len(evs))
		}
		for _, ev := range evs {
			if ev.replay {
				t.Fatalf("%+v: offset %d replayed", tc.from, ev.off)
			}
		}
		if st := status(m, 0); st.ReplayFrom != st.ReplayTo || st.State != StateLive {
			t.Fatalf("status %+v", st)
		}
		if _, err := m.Stop(ctxT(t), 0); err != nil {
			t.Fatal(err)
		}
		if err := m.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

// (5) Stop returns the committed offset, which is the applied one, and a
// Start on another Manager with that handoff goes on from there.
func TestStopCommitsApplied(t *testing.T) {
	c := newCluster(t, 4)
	prod := newClient(t, c)
	for i := range 500 {
		produce(t, prod, eventRecord(int32(i%4), fmt.Sprintf("k%d", i), i))
	}
	sink := newTestSink(20)
	cfg := testConfig(c)
	cfg.CommitInterval = time.Hour // only Stop commits
	m := newManager(t, cfg, sink)
	for p := range int32(4) {
		m.Start(p, StartFrom{})
	}
	eventually(t, func() bool { return sink.count() == 500 }, "applied %d", sink.count())
	got, err := m.Stop(ctxT(t), 2)
	if err != nil {
		t.Fatal(err)
	}
	if got != 125 || got != sink.nextOffset(2) {
		t.Fatalf("Stop returned %d, applied %d, want 125", got, sink.nextOffset(2))
	}
	if at, meta := committed(t, c, 2); at != 125 || meta != "r=105" {
		t.Fatalf("group has %d %q", at, meta)
	}
	if _, err := m.Stop(ctxT(t), 2); !errors.Is(err, ErrNotStarted) {
		t.Fatalf("second Stop: %v, want ErrNotStarted", err)
	}
	if len(m.Status()) != 3 {
		t.Fatalf("status lists %d partitions, want 3", len(m.Status()))
	}

	// A new owner with the handoff gets only what comes next.
	for i := 500; i < 510; i++ {
		produce(t, prod, eventRecord(2, fmt.Sprintf("k%d", i), i))
	}
	sink2 := newTestSink(20)
	m2 := newManager(t, testConfig(c), sink2)
	m2.Start(2, StartFrom{Handoff: true, Offset: got})
	eventually(t, func() bool { return sink2.nextOffset(2) == 135 }, "applied up to %d", sink2.nextOffset(2))
	if evs := sink2.events(2); len(evs) != 10 || evs[0].off != 125 {
		t.Fatalf("new owner applied %d events from %d", len(evs), evs[0].off)
	}

	// Stop then Start again on the same Manager resumes where it was.
	m2.Start(2, StartFrom{}) // already started: no-op
	if _, err := m2.Stop(ctxT(t), 2); err != nil {
		t.Fatal(err)
	}
	m2.Start(2, StartFrom{Handoff: true, Offset: -1})
	produce(t, prod, eventRecord(2, "again", 999))
	eventually(t, func() bool { return sink2.nextOffset(2) == 136 }, "applied up to %d", sink2.nextOffset(2))
	if n := len(sink2.events(2)); n != 11 {
		t.Fatalf("applied %d events, want 11", n)
	}
}

// A Stop whose context ends while the Sink is stuck abandons the rest and
// commits what was applied.
func TestStopTimeout(t *testing.T) {
	c := newCluster(t, 1)
	prod := newClient(t, c)
	for i := range 20 {
		produce(t, prod, eventRecord(0, "k", i))
	}
	sink := newTestSink(5)
	sink.gate = make(chan struct{})
	m := newManager(t, testConfig(c), sink)
	m.Start(0, StartFrom{})
	eventually(t, func() bool { return status(m, 0).Buffered > 0 }, "nothing fetched")
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	got, err := m.Stop(ctx, 0)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Stop: %v, want deadline exceeded", err)
	}
	if got != -1 || sink.count() != 0 {
		t.Fatalf("Stop returned %d with %d applied", got, sink.count())
	}
	if at, _ := committed(t, c, 0); at != -1 {
		t.Fatalf("committed %d", at)
	}
}

// (6) Bad records go to the DLQ (with the reason) or are skipped, are
// counted, and never block the partition; a partially valid record
// applies its valid events.
func TestBadRecords(t *testing.T) {
	for _, dlq := range []string{testDLQ, ""} {
		t.Run("dlq="+dlq, func(t *testing.T) {
			c := newCluster(t, 1)
			prod := newClient(t, c)
			big := `{"key":"big","value":1,"id":"` + strings.Repeat("x", 2000) + `"}`
			bad := []struct{ value, reason string }{
				{`{"key":"a","value":`, ReasonMalformed},
				{`42`, ReasonMalformed},
				{`"str"`, ReasonMalformed},
				{`{"key":"a","value":"x"}`, ReasonInvalid},
				{`[{"value":1},{"key":"b","value":null}]`, ReasonInvalid},
				{`[1,2]`, ReasonMalformed},
				{`[{"key":"a","value":1e999}, 7]`, ReasonInvalid},
				{big, ReasonOversized},
				{``, ReasonEmpty},
				{"  \n", ReasonEmpty},
				{`[]`, ReasonEmpty},
			}
			recs := []*kgo.Record{eventRecord(0, "first", 0)}
			for _, b := range bad {
				recs = append(recs, &kgo.Record{Value: []byte(b.value), Headers: []kgo.RecordHeader{{Key: "h", Value: []byte("v")}}})
			}
			// Partially valid: two good events (one keyed by the record
			// key), one bad.
			recs = append(recs, &kgo.Record{Key: []byte("rk"), Value: []byte(`[{"key":"p1","value":1},{"key":"p2","value":"no"},{"value":3}]`)})
			recs = append(recs, eventRecord(0, "last", 99))
			produce(t, prod, recs...)

			sink := newTestSink(5)
			cfg := testConfig(c)
			cfg.DLQTopic = dlq
			cfg.MaxRecordBytes = 1024
			m := newManager(t, cfg, sink)
			m.Start(0, StartFrom{})
			end := int64(len(recs))
			eventually(t, func() bool { return status(m, 0).Committed == end }, "committed %d", status(m, 0).Committed)

			var keys []string
			for _, ev := range sink.events(0) {
				keys = append(keys, ev.key)
			}
			if got := strings.Join(keys, ","); got != "first,p1,rk,last" {
				t.Fatalf("applied %s", got)
			}
			wantBad := map[string]float64{}
			for _, b := range bad {
				wantBad[b.reason]++
			}
			for reason, n := range wantBad {
				if got := promtest.ToFloat64(m.met.bad[reason]); got != n {
					t.Errorf("bad_records{%s} = %v, want %v", reason, got, n)
				}
			}
			if got := promtest.ToFloat64(m.met.partial); got != 1 {
				t.Errorf("records{partial} = %v", got)
			}
			if got := promtest.ToFloat64(m.met.invalid.WithLabelValues("value")); got != 1 {
				t.Errorf("invalid_events{value} = %v", got)
			}
			if got := promtest.ToFloat64(m.met.applied); got != 2 {
				t.Errorf("records{applied} = %v", got)
			}
			dead, skipped := promtest.ToFloat64(m.met.deadLettered), promtest.ToFloat64(m.met.skipped)
			if dlq == "" {
				if dead != 0 || skipped != float64(len(bad)) {
					t.Fatalf("dead-lettered %v, skipped %v", dead, skipped)
				}
				return
			}
			if dead != float64(len(bad)) || skipped != 0 {
				t.Fatalf("dead-lettered %v, skipped %v", dead, skipped)
			}
			cons := newClient(t, c, kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{testDLQ: {0: kgo.NewOffset().AtStart()}}))
			var got []*kgo.Record
			ctx := ctxT(t)
			for len(got) < len(bad) && ctx.Err() == nil {
				got = append(got, cons.PollFetches(ctx).Records()...)
			}
			if len(got) != len(bad) {
				t.Fatalf("DLQ holds %d records, want %d", len(got), len(bad))
			}
			for i, r := range got {
				hs := map[string]string{}
				for _, h := range r.Headers {
					hs[h.Key] = string(h.Value)
				}
				want := map[string]string{"h": "v", ErrorHeader: bad[i].reason, "squall-topic": testTopic,
					"squall-partition": "0", "squall-offset": fmt.Sprint(i + 1)}
				for k, v := range want {
					if hs[k] != v {
						t.Errorf("DLQ record %d: header %s = %q, want %q", i, k, hs[k], v)
					}
				}
				if string(r.Value) != bad[i].value {
					t.Errorf("DLQ record %d value %q, want %q", i, r.Value, bad[i].value)
				}
			}
		})
	}
}

// (7) Back-pressure: with a slow Sink a partition never buffers more than
// MaxBufferedRecords plus one fetch, and everything is applied in the end.
// A partition that stays slow is paused and does not hold the others up.
func TestBackPressure(t *testing.T) {
	const n, maxBuf = 20_000, 400
	// One fetch brings a partition at most fetchBytes of batches, or one
	// batch when larger: records are over 50 bytes, uncompressed.
	const fetchBytes, batchBytes = 1024, 1024
	const limit = maxBuf + (fetchBytes+batchBytes)/50
	c := newCluster(t, 2)
	prod := newClient(t, c, kgo.ProducerBatchCompression(kgo.NoCompression()), kgo.ProducerBatchMaxBytes(batchBytes))
	recs := make([]*kgo.Record, n)
	for i := range recs {
		recs[i] = eventRecord(int32(i%2), fmt.Sprintf("k%d", i%100), i)
	}
	produce(t, prod, recs...)
	// Partition 0 is stuck: its Apply blocks until the gate opens.
	// Partition 1 is free. No clock decides the outcome: partition 1 must
	// finish while partition 0 applies nothing, and partition 0 must be
	// paused meanwhile.
	sink := &gatedSink{testSink: newTestSink(10), gated: 0, gate: make(chan struct{})}
	cfg := testConfig(c)
	cfg.MaxBufferedRecords = maxBuf
	cfg.FetchMaxBytes, cfg.FetchMaxPartitionBytes = 4*fetchBytes, fetchBytes
	m := newManager(t, cfg, sink)
	m.Start(0, StartFrom{})
	m.Start(1, StartFrom{})
	var samples, maxSeen int
	check := func() {
		for _, st := range m.Status() {
			maxSeen = max(maxSeen, st.Buffered)
			if st.Buffered > limit {
				t.Fatalf("partition %d buffers %d records, limit %d", st.Partition, st.Buffered, limit)
			}
		}
		samples++
	}
	pausesOf := func(p int32) int {
		m.mu.Lock()
		defer m.mu.Unlock()
		part := m.parts[p]
		part.flow.Lock()
		defer part.flow.Unlock()
		return part.pauses
	}
	// The free partition finishes while the stuck one is held at the gate
	// (a hang here is the bug: the stuck partition holds up the other).
	eventually(t, func() bool { check(); return len(sink.events(1)) == n/2 },
		"the fast partition did not apply its %d events while the slow one was stuck: held up", n/2)
	eventually(t, func() bool { check(); return pausesOf(0) > 0 }, "the stuck partition was never paused")
	if got := len(sink.events(0)); got != 0 {
		t.Fatalf("the gated partition applied %d events", got)
	}
	close(sink.gate)
	eventually(t, func() bool { check(); return sink.count() == n }, "not every one of %d events applied once the gate opened", n)
	m.mu.Lock()
	var peaks []int
	for p := range int32(2) {
		part := m.parts[p]
		part.flow.Lock()
		peaks = append(peaks, part.peak)
		part.flow.Unlock()
	}
	m.mu.Unlock()
	for _, pk := range peaks {
		if pk > limit {
			t.Fatalf("peak buffered %d > %d", pk, limit)
		}
	}
	t.Logf("limit %d (+ one fetch: %d): peak buffered per partition %v, max sampled %d over %d samples; pauses of the stuck partition %d",
		maxBuf, limit, peaks, maxSeen, samples, pausesOf(0))
}

// gatedSink blocks Apply on partition gated until gate is closed.
type gatedSink struct {
	*testSink
	gated int32
	gate  chan struct{}
}

func (s *gatedSink) Apply(ctx context.Context, p int32, evs []event.Event, offsets []int64, replay bool) error {
	if p == s.gated {
		select {
		case <-s.gate:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return s.testSink.Apply(ctx, p, evs, offsets, replay)
}

// An Apply error is retried, not skipped.
func TestApplyRetried(t *testing.T) {
	c := newCluster(t, 1)
	prod := newClient(t, c)
	produce(t, prod, eventRecord(0, "a", 0), eventRecord(0, "b", 1))
	sink := &failingSink{testSink: newTestSink(5), fails: 3}
	m := newManager(t, testConfig(c), sink)
	m.Start(0, StartFrom{})
	eventually(t, func() bool { return status(m, 0).Committed == 2 }, "committed %d", status(m, 0).Committed)
	if got := len(sink.events(0)); got != 2 {
		t.Fatalf("applied %d events", got)
	}
}

type failingSink struct {
	*testSink
	mu    sync.Mutex
	fails int
}

func (s *failingSink) Apply(ctx context.Context, p int32, evs []event.Event, offsets []int64, replay bool) error {
	s.mu.Lock()
	fail := s.fails > 0
	s.fails--
	s.mu.Unlock()
	if fail {
		return errors.New("not now")
	}
	return s.testSink.Apply(ctx, p, evs, offsets, replay)
}

// (9) PartitionCount reads the topic's partitions and names a missing
// topic.
func TestPartitionCount(t *testing.T) {
	c := newCluster(t, 6)
	m := newManager(t, testConfig(c), newTestSink(1))
	n, err := m.PartitionCount(ctxT(t))
	if err != nil || n != 6 {
		t.Fatalf("PartitionCount = %d, %v", n, err)
	}
	cfg := testConfig(c)
	cfg.Topic = "nope"
	m2 := newManager(t, cfg, newTestSink(1))
	_, err = m2.PartitionCount(ctxT(t))
	if !errors.Is(err, ErrTopicNotFound) || !strings.Contains(err.Error(), `"nope"`) {
		t.Fatalf("missing topic: %v", err)
	}
}

func TestConfigValidate(t *testing.T) {
	ok := DefaultConfig()
	ok.Brokers = []string{"127.0.0.1:9092"}
	if err := ok.Validate(); err != nil {
		t.Fatal(err)
	}
	for name, mod := range map[string]func(*Config){
		"no brokers":   func(c *Config) { c.Brokers = nil },
		"dlq is topic": func(c *Config) { c.DLQTopic = c.Topic },
		"mechanism":    func(c *Config) { c.SASLMechanism, c.SASLUser = "PLAIN", "u" },
		"no user":      func(c *Config) { c.SASLMechanism = SASLScramSHA256 },
		"user only":    func(c *Config) { c.SASLUser = "u" },
		"negative":     func(c *Config) { c.MaxBufferedRecords = -1 },
	} {
		c := ok
		mod(&c)
		if err := c.Validate(); !errors.Is(err, ErrConfig) {
			t.Errorf("%s: %v, want ErrConfig", name, err)
		}
	}
	if _, err := New(ok, nil); !errors.Is(err, ErrConfig) {
		t.Errorf("nil sink: %v", err)
	}
}

func TestCloseIdempotent(t *testing.T) {
	c := newCluster(t, 2)
	m := newManager(t, testConfig(c), newTestSink(1))
	m.Start(0, StartFrom{})
	m.Start(1, StartFrom{})
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	m.Start(0, StartFrom{}) // ignored
	if _, err := m.Stop(ctxT(t), 0); !errors.Is(err, ErrClosed) {
		t.Fatalf("Stop after Close: %v", err)
	}
}

func TestMeta(t *testing.T) {
	for _, r := range []int64{0, 1, 1 << 40} {
		got, ok := parseMeta(encodeMeta(r))
		if !ok || got != r {
			t.Fatalf("%d: %d %v", r, got, ok)
		}
	}
	if encodeMeta(-2) != "" {
		t.Fatal("unknown restore offset encoded")
	}
}

// The throttle's pause policy: a partition over its limit is waited for
// while it makes progress, paused when it made none since the last check,
// and paused anyway once it has been over for maxOverWait.
func TestThrottlePausePolicy(t *testing.T) {
	c := newCluster(t, 1)
	cfg := testConfig(c)
	cfg.MaxBufferedRecords = 100
	m := newManager(t, cfg, newTestSink(1))
	m.Start(0, StartFrom{})
	var part *partition
	eventually(t, func() bool {
		m.mu.Lock()
		defer m.mu.Unlock()
		part = m.parts[0]
		return part != nil && part.hasMetrics.Load() // its resolver is done with it
	}, "partition 0 not started")

	set := func(released, checked int, overFor time.Duration) {
		part.flow.Lock()
		part.over, part.paused, part.removed = true, false, false
		part.buffered = m.pauseAt + 1
		part.released, part.checked, part.overAt = released, checked, time.Now().Add(-overFor)
		part.flow.Unlock()
	}
	paused := func() bool { part.flow.Lock(); defer part.flow.Unlock(); return part.paused }

	set(5, 0, 0)
	if part.drained(false) || paused() {
		t.Fatal("waited for without a check: done or paused")
	}
	if part.drained(true) || paused() {
		t.Fatal("progress since the last check: paused")
	}
	// released == checked now: no progress since the check above.
	if !part.drained(true) || !paused() {
		t.Fatalf("no progress since the last check: not paused (paused %v)", paused())
	}
	set(9, 0, maxOverWait)
	if !part.drained(true) || !paused() {
		t.Fatal("over for maxOverWait while progressing: not paused")
	}
	part.release(part.buffered) // resumes it
	if paused() {
		t.Fatal("drained: still paused")
	}
}
