package source

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/squallhq/squall/event"
)

func TestPoolClasses(t *testing.T) {
	for _, tc := range []struct{ n, get, put int }{
		{1, 0, 0}, {2, 1, 1}, {3, 2, 1}, {4, 2, 2}, {5, 3, 2}, {1000, 10, 9}, {1024, 10, 10},
	} {
		if c, ok := getClass(tc.n, 1, recClasses); !ok || c != tc.get || 1<<c < tc.n {
			t.Errorf("getClass(%d) = %d, %v; want %d", tc.n, c, ok, tc.get)
		}
		if c, ok := putClass(tc.n, 1, recClasses); !ok || c != tc.put || 1<<c > tc.n {
			t.Errorf("putClass(%d) = %d, %v; want %d", tc.n, c, ok, tc.put)
		}
	}
	if _, ok := getClass(1<<recClasses+1, 1, recClasses); ok {
		t.Error("a size over the largest class has a class")
	}
	if _, ok := putClass(minBuf-1, minBuf, byteClasses); ok {
		t.Error("a buffer under the smallest class is kept")
	}
	var p fetchPools
	b := p.GetDecompressBytes(make([]byte, 3000), kgo.CodecSnappy)
	if cap(b) < 12000 || len(b) != 0 {
		t.Fatalf("GetDecompressBytes: len %d cap %d", len(b), cap(b))
	}
	p.PutDecompressBytes(append(b[:cap(b)], 1)) // grown by append: any capacity
	rs := p.GetRecords(300)
	if cap(rs) < 300 {
		t.Fatalf("GetRecords(300): cap %d", cap(rs))
	}
	p.PutRecords(rs)
}

// retainingSink keeps the applied events as they are, strings not copied,
// as a key actor or an alert may: with pooled fetch memory, a string that
// aliased a recycled record would change under it.
type retainingSink struct {
	mu  sync.Mutex
	evs []event.Event
}

func (s *retainingSink) Apply(_ context.Context, _ int32, evs []event.Event, _ []int64, _ bool) error {
	s.mu.Lock()
	s.evs = append(s.evs, evs...)
	s.mu.Unlock()
	return nil
}

func (s *retainingSink) RestoreOffset(context.Context, int32) (int64, error) { return -1, nil }

func (s *retainingSink) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.evs)
}

// Fetch memory is pooled and recycled once events are applied: what the
// sink kept of many compressed batches — keys from the JSON and default
// keys from the record key, ids — still reads as produced once later
// fetches have reused the buffers.
func TestPooledFetchMemoryNotAliased(t *testing.T) {
	c := newCluster(t, 2)
	sink := &retainingSink{}
	m := newManager(t, testConfig(c), sink)
	m.Start(0, StartFrom{})
	m.Start(1, StartFrom{})
	cl := newClient(t, c, kgo.ProducerBatchCompression(kgo.SnappyCompression()))
	const batches, per = 40, 250
	want := make(map[string]string) // id → key
	for b := range batches {
		recs := make([]*kgo.Record, 0, per)
		for i := range per {
			n := b*per + i
			key, id := fmt.Sprintf("host-%05d.cpu-%s", n, "xxxxxxxxxxxxxxxx"), fmt.Sprintf("e-%06d", n)
			var v []byte
			if n%2 == 0 {
				v = fmt.Appendf(nil, `{"key":%q,"ts":%d,"value":%d,"id":%q}`, key, 1764065000000+int64(n), n, id)
			} else {
				v = fmt.Appendf(nil, `{"ts":%d,"value":%d,"id":%q}`, 1764065000000+int64(n), n, id)
			}
			want[id] = key
			recs = append(recs, &kgo.Record{Partition: int32(n % 2), Key: []byte(key), Value: v})
		}
		produce(t, cl, recs...)
	}
	eventually(t, func() bool { return sink.count() == batches*per }, "applied %d of %d", sink.count(), batches*per)
	time.Sleep(100 * time.Millisecond) // let later recycles land
	sink.mu.Lock()
	defer sink.mu.Unlock()
	bad := 0
	for _, ev := range sink.evs {
		if k, ok := want[ev.ID]; !ok || k != ev.Key {
			if bad++; bad <= 3 {
				t.Errorf("event id %q key %q, produced key %q", ev.ID, ev.Key, k)
			}
		}
	}
	if bad > 0 {
		t.Fatalf("%d of %d events changed after their records were recycled", bad, len(sink.evs))
	}
}
