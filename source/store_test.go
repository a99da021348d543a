package source

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"
)

// memStore is a Store in memory whose partitions can be fenced.
type memStore struct {
	mu       sync.Mutex
	progress map[int32]Progress
	fenced   map[int32]bool
	commits  int
}

func newMemStore() *memStore {
	return &memStore{progress: map[int32]Progress{}, fenced: map[int32]bool{}}
}

func (s *memStore) Commit(_ context.Context, ps []Progress) []error {
	s.mu.Lock()
	defer s.mu.Unlock()
	errs := make([]error, len(ps))
	for i, p := range ps {
		if s.fenced[p.Partition] {
			errs[i] = fmt.Errorf("%w: partition %d", ErrFenced, p.Partition)
			continue
		}
		s.progress[p.Partition] = p
		s.commits++
	}
	return errs
}

func (s *memStore) get(p int32) (Progress, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	pr, ok := s.progress[p]
	return pr, ok
}

func (s *memStore) fence(p int32) {
	s.mu.Lock()
	s.fenced[p] = true
	s.mu.Unlock()
}

// With a Store, a partition starts from the progress it is given (not the
// group's offsets), replays [Restore, Offset) and says when it is live;
// commits go to the Store first and to the group only once stored; a
// fenced partition commits nothing more, anywhere, and its Stop says so.
func TestStoreFencesCommits(t *testing.T) {
	c := newCluster(t, 2)
	prod := newClient(t, c)
	for i := range 100 {
		produce(t, prod, eventRecord(int32(i%2), fmt.Sprintf("k%d", i%2), i))
	}
	commit(t, c, 0, 10, "r=0") // what a fenced-off owner left in the group: ignored
	store := newMemStore()
	var liveMu sync.Mutex
	live := map[int32]int{}
	cfg := testConfig(c)
	cfg.Store = store
	cfg.CommitInterval = 20 * time.Millisecond
	cfg.OnLive = func(p int32) { liveMu.Lock(); live[p]++; liveMu.Unlock() }
	sink := newTestSink(1000)
	m := newManager(t, cfg, sink)
	m.Start(0, StartFrom{Progress: &Progress{Partition: 0, Offset: 30, Restore: 20}})
	m.Start(1, StartFrom{Progress: &Progress{Partition: 1, Offset: -1, Restore: -1}})
	eventually(t, func() bool { return sink.nextOffset(0) == 50 && sink.nextOffset(1) == 50 }, "applied %d, %d",
		sink.nextOffset(0), sink.nextOffset(1))
	evs := sink.events(0)
	if evs[0].off != 20 {
		t.Fatalf("partition 0 started at %d, want the progress's restore offset 20", evs[0].off)
	}
	for _, ev := range evs {
		if ev.replay != (ev.off < 30) {
			t.Fatalf("offset %d replay=%v", ev.off, ev.replay)
		}
	}
	if evs := sink.events(1); evs[0].off != 0 || evs[0].replay {
		t.Fatalf("partition 1 (nothing committed) started at %d replay=%v, want live from 0", evs[0].off, evs[0].replay)
	}
	eventually(t, func() bool {
		liveMu.Lock()
		defer liveMu.Unlock()
		return live[0] == 1 && live[1] == 1
	}, "OnLive calls %v", live)
	eventually(t, func() bool { pr, ok := store.get(0); return ok && pr.Offset == 50 }, "store has %+v", store.progress)
	eventually(t, func() bool { at, _ := committed(t, c, 0); return at == 50 }, "group offset not following the store")

	// Fenced: nothing more lands, in the Store or the group.
	store.fence(1)
	at1, _ := committed(t, c, 1)
	pr1, _ := store.get(1)
	for i := 100; i < 120; i++ {
		produce(t, prod, eventRecord(1, "k1", i))
	}
	eventually(t, func() bool { return sink.nextOffset(1) == 70 }, "applied %d", sink.nextOffset(1))
	_, err := m.Stop(ctxT(t), 1)
	if !errors.Is(err, ErrFenced) {
		t.Fatalf("Stop of a fenced partition: %v, want ErrFenced", err)
	}
	if at, _ := committed(t, c, 1); at != at1 {
		t.Fatalf("group offset of the fenced partition moved %d → %d", at1, at)
	}
	if pr, _ := store.get(1); pr != pr1 {
		t.Fatalf("store progress of the fenced partition moved %+v → %+v", pr1, pr)
	}
	// The other partition's final commit lands.
	for i := 120; i < 130; i++ {
		produce(t, prod, eventRecord(0, "k0", i))
	}
	eventually(t, func() bool { return sink.nextOffset(0) == 60 }, "applied %d", sink.nextOffset(0))
	got, err := m.Stop(ctxT(t), 0)
	if err != nil || got != 60 {
		t.Fatalf("Stop = %d, %v; want 60", got, err)
	}
	if pr, _ := store.get(0); pr.Offset != 60 {
		t.Fatalf("store has %+v after Stop, want offset 60", pr)
	}
}
