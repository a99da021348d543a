package window

import (
	"fmt"
	"math/rand/v2"
	"os"
	"testing"
	"time"

	"github.com/squallhq/squall/event"
	"github.com/squallhq/squall/internal/testutil"
)

// TestDedupModel drives windows of small spans with ids that repeat, events
// out of order, late events and jumps of many windows (which sweep the
// table and wrap its bucket tags), and checks every outcome against the
// definition: an id is a duplicate while the bucket it was applied to is
// above max(b, newest) − R.
func TestDedupModel(t *testing.T) {
	for _, span := range []int64{1, 2, 3, 10, 600} {
		t.Run(fmt.Sprint(span), func(t *testing.T) {
			s := &Shape{Retention: time.Duration(span) * time.Second, Resolution: time.Second, Recent: 4}
			rng := rand.New(rand.NewPCG(uint64(span), 7))
			w := New(s)
			seen := map[string]int64{} // id → bucket it was applied to
			newest := int64(0)
			pool := int(3*span) + 20
			for i := range 200_000 {
				b := newest
				switch r := rng.IntN(100); {
				case i == 0:
				case r < 40:
					b = newest + int64(rng.IntN(2))
				case r < 70:
					b = newest - int64(rng.IntN(int(span)+2)) // out of order, sometimes late
				case r < 72:
					b = newest + int64(rng.IntN(5000)) // a jump: sweeps, tags wrap
				default:
					b = newest + int64(rng.IntN(int(span)))
				}
				id := fmt.Sprint("id-", rng.IntN(pool))
				want := Applied
				switch prev, ok := seen[id]; {
				case i > 0 && b <= newest-span:
					want = Late
				case ok && prev > max(b, newest)-span:
					want = Duplicate
				}
				got := w.Add(&event.Event{TS: b * 1000, Value: 1, ID: id})
				if got != want {
					t.Fatalf("event %d: bucket %d (newest %d) id %s (applied to %d): %v, want %v", i, b, newest, id, seen[id], got, want)
				}
				if got == Applied {
					seen[id] = b
					newest = max(newest, b)
				}
			}
		})
	}
}

// TestDedupCodecV1 decodes a window encoded by the previous format
// (version 1: each id's full 64-bit hash; testdata/v1-ids.bin, 900 events
// a second apart with ids v1-0…v1-899, every 7th 30 s out of order) and
// checks that it remembers exactly the ids a window that applied the same
// events remembers.
func TestDedupCodecV1(t *testing.T) {
	data, err := os.ReadFile("testdata/v1-ids.bin")
	if err != nil {
		t.Fatal(err)
	}
	s := DefaultShape()
	old := New(&s)
	if err := old.UnmarshalBinary(data); err != nil {
		t.Fatal(err)
	}
	fresh := New(&s)
	for i := range 900 {
		e := event.Event{TS: 1_700_000_000_000 + int64(i)*1000, Value: float64(i), ID: fmt.Sprintf("v1-%d", i)}
		if i%7 == 3 {
			e.TS -= 30_000
		}
		fresh.Add(&e)
	}
	if a, b := old.Aggregate(), fresh.Aggregate(); a.Count != b.Count || a.Sum != b.Sum {
		t.Fatalf("decoded %+v, applied %+v", a, b)
	}
	dups := 0
	for _, w := range []*Window{old, fresh} {
		// Re-send every id at the newest time, each to a copy.
		enc, err := w.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for i := range 900 {
			c := New(&s)
			if err := c.UnmarshalBinary(enc); err != nil {
				t.Fatal(err)
			}
			if c.Add(&event.Event{TS: 1_700_000_000_000 + 899_000, Value: 1, ID: fmt.Sprintf("v1-%d", i)}) == Duplicate {
				n++
			}
		}
		if w == old {
			dups = n
		} else if n != dups {
			t.Fatalf("the decoded version-1 window takes %d re-sent ids as duplicates, the window that applied them %d", dups, n)
		}
	}
	if dups < 590 || dups > 600 {
		t.Fatalf("%d duplicates among 900 ids of which ~600 are in the window", dups)
	}
}

// TestDedupCodecWiderTags hands a window to one of a longer retention
// (wider bucket tags, shorter fingerprints) and back: ids stay duplicates.
func TestDedupCodecWiderTags(t *testing.T) {
	short := &Shape{Retention: 10 * time.Second, Resolution: time.Second}
	long := &Shape{Retention: 10 * time.Hour, Resolution: time.Second}
	a := New(short)
	for i := range 10 {
		mustAdd(t, a, evID(int64(i)*1000, 1, fmt.Sprint("x", i)), Applied)
	}
	for _, hop := range [][2]*Shape{{short, long}, {long, short}} {
		enc, err := a.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		a = New(hop[1])
		if err := a.UnmarshalBinary(enc); err != nil {
			t.Fatal(err)
		}
		for i := range 10 {
			c := New(hop[1])
			if err := c.UnmarshalBinary(enc); err != nil {
				t.Fatal(err)
			}
			mustAdd(t, c, evID(9000, 1, fmt.Sprint("x", i)), Duplicate)
			mustAdd(t, c, evID(9000, 1, fmt.Sprint("y", i)), Applied)
		}
	}
}

// TestDedupMemoryPerID keeps the memory of remembered ids at most 12 bytes
// per id live in the window: keys of 600 events with ids (1 event/s over
// the default 10 minutes) against the same keys without ids, recent events
// off (their copies of the ids are not the dedup table's), heap measured
// after GC like TestMemoryBudget. The side structure an id-carrying key
// allocates once is counted in the figure.
func TestDedupMemoryPerID(t *testing.T) {
	if testing.Short() {
		t.Skip("allocates")
	}
	if testutil.Race {
		t.Skip("heap figures under the race detector measure its allocator; make test runs this test without it")
	}
	const keys, n = 2000, 600
	plain, plainMS := bytesPerKey(memCase{n: n, noRecent: true}, keys)
	withIDs, withMS := bytesPerKey(memCase{n: n, noRecent: true, ids: true}, keys)
	perID, perIDMS := (withIDs-plain)/n, (withMS-plainMS)/n
	t.Logf("ids: %.2f bytes per id live in the window (MemSize: %.2f)", perID, perIDMS)
	if perID > 12 {
		t.Errorf("%.2f bytes per remembered id, budget 12", perID)
	}
}
