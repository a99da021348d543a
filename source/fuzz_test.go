package source

import (
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// FuzzRecord feeds arbitrary record values and keys to a partition actor's
// decoding: it never panics, and a record either yields events (all with
// its offset) or is counted bad exactly once.
func FuzzRecord(f *testing.F) {
	for _, s := range []string{
		`{"key":"a","value":1}`, `[{"key":"a","value":1},{"value":2}]`, "{\"value\":1}\n{\"value\":2}",
		`{"key":"a","value":`, `42`, `[]`, ``, `[1,{"key":"b","value":1e999}]`, `{"key":"a","value":"x"}`,
	} {
		f.Add([]byte(s), []byte("rk"))
	}
	met, err := newMetrics(nil)
	if err != nil {
		f.Fatal(err)
	}
	cfg := DefaultConfig().withDefaults()
	cfg.MaxRecordBytes = 4096
	m := &Manager{cfg: cfg, met: met}
	f.Fuzz(func(t *testing.T, value, key []byte) {
		a := &partActor{m: m, part: &partition{m: m}, next: -1}
		r := &kgo.Record{Key: key, Value: value, Offset: 7, Timestamp: time.UnixMilli(1764065000000)}
		a.record(r, false)
		bad := 0
		for _, n := range a.tally.bad {
			bad += n
		}
		switch {
		case len(a.evs) > 0:
			if bad != 0 || a.tally.applied+a.tally.partial != 1 {
				t.Fatalf("%d events, bad %d, tally %+v", len(a.evs), bad, a.tally)
			}
			if len(a.offs) != len(a.evs) {
				t.Fatalf("%d offsets for %d events", len(a.offs), len(a.evs))
			}
			for _, o := range a.offs {
				if o != 7 {
					t.Fatalf("offset %d", o)
				}
			}
		case bad != 1 || a.tally.skipped != 1:
			t.Fatalf("no events, bad %d, tally %+v", bad, a.tally)
		}
	})
}

// FuzzParseMeta: commit metadata from the broker never panics the parser,
// and what it accepts encodes back the same.
func FuzzParseMeta(f *testing.F) {
	for _, s := range []string{"r=0", "r=123", "", "r=", "r=-1", "x=1", "r=99999999999999999999"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, ok := parseMeta(s)
		if ok && (r < 0 || encodeMeta(r) == "") {
			t.Fatalf("%q parsed as %d", s, r)
		}
	})
}
