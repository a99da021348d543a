package bench

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/squallhq/squall/event"
	"github.com/squallhq/squall/window"
)

func TestParsePeerDigest(t *testing.T) {
	line := func(head, sum string) string {
		return "squall-peer digest " + head + " applied=2 late=3 duplicates=4 skipped=5 window-count=6 window-cents=7" +
			" min-cents=8 max-cents=9 last-cents=10 window-sum=" + sum
	}
	small := peerDigest{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 7.5}
	full := peerDigest{Keys: 99_999, Applied: 5_000_000, WindowCount: 5_000_000, WindowCents: 24_999_875_000,
		MinCents: 123, MaxCents: 456, LastCents: 789, WindowSum: 2.4999875e8}
	for _, c := range []struct {
		line    string
		want    peerDigest
		ok, err bool
	}{
		{line("keys=1", "7.5"), small, true, false},
		{"squall-peer digest keys=99999 applied=5000000 late=0 duplicates=0 skipped=0 window-count=5000000 " +
			"window-cents=24999875000 min-cents=123 max-cents=456 last-cents=789 window-sum=2.4999875E8", full, true, false}, // Java's form
		{"squall-peer digest " + full.String() + "\r", full, true, false}, // Go's own form, a CRLF line
		{line("keys=1", "7.5 spare=8"), small, true, false},               // an unknown field is ignored
		{"squall-peer processed 5000000", peerDigest{}, false, false},
		{"", peerDigest{}, false, false},
		{"squall-peer digest keys=1 applied=2", peerDigest{}, true, true}, // fields missing
		{line("keys=1 keys=1", "7"), peerDigest{}, true, true},            // repeated
		{line("keys=x", "7"), peerDigest{}, true, true},                   // not a number
		{line("keys=1", "NaNish"), peerDigest{}, true, true},              // not a float
		{line("keys", "7"), peerDigest{}, true, true},                     // no value
	} {
		d, ok, err := parsePeerDigest(c.line)
		if ok != c.ok || (err != nil) != c.err || (err == nil && d != c.want) {
			t.Errorf("parsePeerDigest(%q) = %+v, %v, %v; want %+v, %v, error %v", c.line, d, ok, err, c.want, c.ok, c.err)
		}
	}
}

// peerTopic makes the records of the peers' topic and the model's digest.
func peerTopic(keys, n int) ([][]byte, *peerModel) {
	m := newPeerModel()
	gen := peerStream(keys, m)
	rng := rand.New(rand.NewPCG(1, uint64(keys)))
	var recs [][]byte
	for j := range n {
		recs = append(recs, gen(nil, j, rng))
	}
	return recs, m
}

func TestPeerModelOfThePeersTopic(t *testing.T) {
	// 50 events a key over 50 s; 5 duplicates and 5 late events.
	recs, m := peerTopic(100, 5000)
	w := m.expected()
	if w.Applied != 4990 || w.WindowCount != 4990 || w.Late != 5 || w.Duplicates != 5 || w.Skipped != 0 || w.Keys != 100 || m.evicted {
		t.Fatalf("model of 5000 events over 100 keys: %+v, evicted %v", w, m.evicted)
	}
	if w.WindowSum < 4990*40 || w.WindowSum > 4990*60 {
		t.Fatalf("window sum %v of 4990 values uniform in [0, 100)", w.WindowSum)
	}
	if err := m.check(w); err != nil {
		t.Fatalf("the model's own digest: %v", err)
	}
	if !bytes.Equal(recs[998], recs[997]) {
		t.Fatalf("record 998 %s is not a copy of 997 %s", recs[998], recs[997])
	}
	// Squall's window, fed the same records in order (as every system gets
	// them: in order per key), agrees: what windowsDigest reports for the
	// baseline.
	shape := window.DefaultShape()
	wins := map[string]*window.Window{}
	var dec event.Decoder
	for j, rec := range recs {
		evs, _, err := dec.Decode(rec, event.FormatJSON, event.Options{}, nil, nil)
		if err != nil || len(evs) != 1 {
			t.Fatalf("record %d %s: %v", j, rec, err)
		}
		w := wins[evs[0].Key]
		if w == nil {
			w = window.New(&shape)
			wins[evs[0].Key] = w
		}
		w.Add(&evs[0])
	}
	if err := m.check(windowsDigest(wins, len(recs))); err != nil {
		t.Fatalf("Squall's windows: %v", err)
	}
	// A system that ignores ids, or event time, fails.
	d := windowsDigest(wins, len(recs))
	d.Applied, d.Duplicates = d.Applied+d.Duplicates, 0
	if err := m.check(d); !errors.Is(err, errPeerDigest) {
		t.Errorf("no dedup: check = %v", err)
	}
}

func TestPeerModelFailsWrongDigests(t *testing.T) {
	_, m := peerTopic(100, 5000)
	for name, change := range map[string]func(d *peerDigest){
		"a record dropped":      func(d *peerDigest) { d.Applied--; d.WindowCount--; d.Skipped++ },
		"a record not parsed":   func(d *peerDigest) { d.Applied--; d.Skipped++ },
		"no dedup (one dup)":    func(d *peerDigest) { d.Duplicates++ },
		"a key lost":            func(d *peerDigest) { d.Keys-- },
		"a value misread":       func(d *peerDigest) { d.WindowSum += 0.01; d.WindowCents++ },
		"a value a cent off":    func(d *peerDigest) { d.WindowCents++ }, // the float sum is within its tolerance
		"a minimum wrong":       func(d *peerDigest) { d.MinCents-- },
		"a maximum wrong":       func(d *peerDigest) { d.MaxCents++ },
		"a last value wrong":    func(d *peerDigest) { d.LastCents += 5 },
		"state not kept":        func(d *peerDigest) { d.WindowCount -= 50 },
		"late by mistake":       func(d *peerDigest) { d.Applied--; d.Late++ },
		"every value read as 0": func(d *peerDigest) { d.WindowSum = 0 },
	} {
		d := m.expected()
		change(&d)
		err := m.check(d)
		if !errors.Is(err, errPeerDigest) {
			t.Errorf("%s: check = %v, want errPeerDigest", name, err)
		}
	}
	// The same values added in another order still pass.
	d := m.expected()
	d.WindowSum *= 1 + 1e-13
	if err := m.check(d); err != nil {
		t.Errorf("a sum 1e-13 off: %v", err)
	}
}

func TestPeerModelLateAndEvicted(t *testing.T) {
	m := newPeerModel()
	m.event(1, 0, 1)       // bucket 0
	m.event(1, 599_999, 2) // bucket 599
	m.event(2, -1, 4)      // bucket -1
	if m.evicted || m.expected().WindowCount != 3 || m.expected().WindowSum != 7 || m.expected().Keys != 2 {
		t.Fatalf("before eviction: %+v, evicted %v", m.expected(), m.evicted)
	}
	m.event(1, 600_000, 3) // bucket 600 evicts bucket 0
	m.event(1, 0, 5)       // bucket 0 ≤ 600 − 600: late
	m.repeat()             // a copy of a late event is late
	m.event(1, 1_000, 6)   // bucket 1: applied
	m.repeat()             // its copy: a duplicate
	want := peerDigest{Keys: 2, Applied: 5, Late: 2, Duplicates: 1, WindowCount: 5, WindowCents: 1600,
		MinCents: 100 + 400, MaxCents: 600 + 400, LastCents: 300 + 400, WindowSum: 16} // key 1's last: the greatest time
	if !m.evicted || m.expected() != want {
		t.Fatalf("after: %+v, evicted %v; want %+v, evicted", m.expected(), m.evicted, want)
	}
	// With a bucket evicted the window's count and sum are not checked;
	// the counters still are.
	got := want
	got.WindowCount, got.WindowCents, got.MinCents, got.WindowSum = 4, 1500, 600, 15
	if err := m.check(got); err != nil {
		t.Errorf("evicted window, counters right: %v", err)
	}
	got.LastCents = 400 + 400 // not evicted, still checked
	if err := m.check(got); err == nil || !strings.Contains(err.Error(), "last-cents 800, want 700") {
		t.Errorf("last wrong: %v", err)
	}
	got.LastCents = want.LastCents
	got.Late = 0
	if err := m.check(got); err == nil || !strings.Contains(err.Error(), "late 0, want 2") {
		t.Errorf("late wrong: %v", err)
	}
}
