package bench

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
	"strings"

	"github.com/squallhq/squall/node"
	"github.com/squallhq/squall/window"
)

// peerDigestPrefix starts the line a JVM peer prints once it has processed
// every record (squall.peers.Digest.PREFIX in bench/peers/common).
const peerDigestPrefix = "squall-peer digest "

// peerSumTolerance is the relative difference allowed between two window
// sums: the systems add the same values in different orders.
const peerSumTolerance = 1e-9

// errPeerDigest is wrapped by every digest mismatch.
var errPeerDigest = errors.New("wrong digest")

// peerDigest is what a system did with the topic's records and what its
// state holds once it has processed all of them: the keys with a window,
// the records applied, late, duplicate and skipped (undecodable or without
// a key), and the count and sum of the events in every key's window; the
// sum also as WindowCents, every key's window sum in hundredths, rounded,
// added up: exact for the stream's values, which have two decimals; and so
// every key's window minimum, maximum and last value (Min/Max/LastCents). The
// harness computes the digest every system must report (peerModel) and
// fails a system whose digest differs: a system that dropped, misparsed or
// failed to deduplicate records cannot pass for a fast one.
type peerDigest struct {
	Keys, Applied, Late, Duplicates, Skipped int64
	WindowCount, WindowCents                 int64
	MinCents, MaxCents, LastCents            int64
	WindowSum                                float64
}

// digestField is one integer field of the digest line and where it goes.
type digestField struct {
	name string
	n    *int64
}

// digestSum is the name of the line's last field, the window sum.
const digestSum = "window-sum"

// fields are the digest line's integer fields, in order.
func (d *peerDigest) fields() []digestField {
	return []digestField{{"keys", &d.Keys}, {"applied", &d.Applied}, {"late", &d.Late}, {"duplicates", &d.Duplicates},
		{"skipped", &d.Skipped}, {"window-count", &d.WindowCount}, {"window-cents", &d.WindowCents},
		{"min-cents", &d.MinCents}, {"max-cents", &d.MaxCents}, {"last-cents", &d.LastCents}}
}

// String is the digest as a peer prints it, without the prefix.
func (d peerDigest) String() string {
	var b strings.Builder
	for _, f := range d.fields() {
		fmt.Fprintf(&b, "%s=%d ", f.name, *f.n)
	}
	b.WriteString(digestSum + "=" + strconv.FormatFloat(d.WindowSum, 'g', -1, 64))
	return b.String()
}

// addKey adds one key's counters and window.
func (d *peerDigest) addKey(applied, late, dups uint64, a window.Aggregates) {
	d.Keys++
	d.Applied += int64(applied)
	d.Late += int64(late)
	d.Duplicates += int64(dups)
	d.WindowCount += int64(a.Count)
	d.WindowSum += a.Sum
	d.WindowCents += cents(a.Sum)
	if a.Count > 0 {
		d.MinCents += cents(a.Min)
		d.MaxCents += cents(a.Max)
		d.LastCents += cents(a.Last.Value)
	}
}

// cents is v in hundredths, rounded.
func cents(v float64) int64 { return int64(math.Round(v * 100)) }

// parsePeerDigest reads a peer's "squall-peer digest keys=… …" line. ok is
// false for any other line; err says what is wrong with a digest line.
func parsePeerDigest(line string) (d peerDigest, ok bool, err error) {
	rest, ok := strings.CutPrefix(strings.TrimSpace(line), peerDigestPrefix)
	if !ok {
		return d, false, nil
	}
	seen := map[string]bool{}
	for _, kv := range strings.Fields(rest) {
		name, v, found := strings.Cut(kv, "=")
		if !found || seen[name] {
			return d, true, fmt.Errorf("digest %q: field %q repeated or without a value", rest, kv)
		}
		seen[name] = true
		if name == digestSum {
			if d.WindowSum, err = strconv.ParseFloat(v, 64); err != nil {
				return d, true, fmt.Errorf("digest %q: %w", rest, err)
			}
			continue
		}
		var dst *int64
		for _, f := range d.fields() {
			if f.name == name {
				dst = f.n
			}
		}
		if dst == nil {
			continue // a field of a later version: ignored
		}
		if *dst, err = strconv.ParseInt(v, 10, 64); err != nil {
			return d, true, fmt.Errorf("digest %q: %w", rest, err)
		}
	}
	for _, f := range append(d.fields(), digestField{name: digestSum}) {
		if !seen[f.name] {
			return d, true, fmt.Errorf("digest %q: no %s", rest, f.name)
		}
	}
	return d, true, nil
}

// peerOddEvery: in every peerOddEvery records of the peers' topic, two
// are not plain events: a duplicate and a late event (peerStream).
const peerOddEvery = 1000

// peerLateBy is how much older than the record before it a late record of
// the peers' topic is: more than the 10-minute window.
const peerLateBy = 11 * 60_000 // ms

// peerStream is the peers' topic: appendEvent's stream with ids, but for
// the last two records of every peerOddEvery: a copy of the record before
// (a duplicate, as a producer's retry makes) and an event of that record's
// key peerLateBy older, with an id of its own (late). A system that
// ignores ids or event time then reports a wrong digest. m is told every
// event.
func peerStream(keys int, m *peerModel) eventGen {
	var k, id int // the last plain event's key number and id
	var ts int64
	var v float64
	return func(b []byte, j int, rng *rand.Rand) []byte {
		switch j % peerOddEvery {
		case peerOddEvery - 2:
			m.repeat()
			return appendEventJSON(b, k, ts, v, id, true)
		case peerOddEvery - 1:
			m.event(k, ts-peerLateBy, eventValue(v))
			return appendEventJSON(b, k, ts-peerLateBy, v, j, true)
		}
		k, ts, v = nextEvent(keys, j, rng)
		id = j
		m.event(k, ts, eventValue(v))
		return appendEventJSON(b, k, ts, v, id, true)
	}
}

// peerModel computes the digest every system must report from the events
// the harness produced, in their order per key (a key's records share a
// partition): the window rules of window/window.go with 1-second buckets
// over 10 minutes. It keeps no ids: the only repeated id in the stream is
// peerStream's copy of the record just before it. When a key's events span
// the 10 minutes, its window has evicted buckets and the model, which keeps
// no buckets, no longer knows the windows' count, sum, minimum and maximum:
// the check then covers the counters and the last values only (the
// harness's default events span 50 seconds).
type peerModel struct {
	keys    map[int]*keyModel
	sum     float64    // of the applied values
	want    peerDigest // the counters and WindowCents; expected adds the rest
	evicted bool       // some key's window evicted a bucket: its window figures are unknown
	applied bool       // the last event was applied
}

// keyModel is what the model knows of one key's window.
type keyModel struct {
	oldest, newest int64   // buckets applied
	min, max       float64 // of the values applied
	lastTS         int64   // the applied event with the greatest time (ties: the latest)
	last           float64
}

const (
	peerResolutionMs = 1000 // the peers' bucket, Squall's default Resolution
	peerBuckets      = 600  // the peers' window in buckets, Squall's default Retention
)

func newPeerModel() *peerModel { return &peerModel{keys: map[int]*keyModel{}} }

// event applies an event of key number k with an id of its own.
func (m *peerModel) event(k int, ts int64, v float64) {
	b := floorDiv(ts, peerResolutionMs)
	km := m.keys[k]
	if km == nil {
		km = &keyModel{oldest: b, newest: b, min: v, max: v, lastTS: ts, last: v}
		m.keys[k] = km
	} else if b <= km.newest-peerBuckets {
		m.want.Late++
		m.applied = false
		return
	}
	km.oldest, km.newest = min(km.oldest, b), max(km.newest, b)
	if km.oldest <= km.newest-peerBuckets {
		m.evicted = true
	}
	km.min, km.max = min(km.min, v), max(km.max, v)
	if ts >= km.lastTS {
		km.lastTS, km.last = ts, v
	}
	m.want.Applied++
	m.want.WindowCents += cents(v) // exact: v has two decimals, so a key's sum in hundredths is the sum of these
	m.sum += v
	m.applied = true
}

// repeat applies a copy of the last event: a duplicate if that was applied
// (its bucket is the newest or inside the window), else late as it was.
func (m *peerModel) repeat() {
	if m.applied {
		m.want.Duplicates++
	} else {
		m.want.Late++
	}
}

// floorDiv is a/b rounded toward −∞, as the bucket of a time.
func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && (a < 0) != (b < 0) {
		q--
	}
	return q
}

// expected is the digest every system must report; with evicted, its
// window count, sum, minimum and maximum are unknown.
func (m *peerModel) expected() peerDigest {
	d := m.want
	d.Keys = int64(len(m.keys))
	d.WindowCount, d.WindowSum = d.Applied, m.sum
	for _, km := range m.keys {
		d.MinCents += cents(km.min)
		d.MaxCents += cents(km.max)
		d.LastCents += cents(km.last)
	}
	return d
}

// check compares a system's digest with the model's.
func (m *peerModel) check(got peerDigest) error {
	want := m.expected()
	var bad []string
	for i, f := range want.fields() {
		g := got.fields()[i]
		if m.evicted && (f.n == &want.WindowCount || f.n == &want.WindowCents || f.n == &want.MinCents || f.n == &want.MaxCents) {
			continue
		}
		if *f.n != *g.n {
			bad = append(bad, fmt.Sprintf("%s %d, want %d", f.name, *g.n, *f.n))
		}
	}
	if !m.evicted && !sumsAgree(got.WindowSum, want.WindowSum) {
		bad = append(bad, fmt.Sprintf("window-sum %g, want %g", got.WindowSum, want.WindowSum))
	}
	if len(bad) > 0 {
		return fmt.Errorf("%w: %s (got %v)", errPeerDigest, strings.Join(bad, ", "), got)
	}
	return nil
}

// sumsAgree says whether two sums of the same values, added in different
// orders, are equal within peerSumTolerance.
func sumsAgree(a, b float64) bool {
	return math.Abs(a-b) <= peerSumTolerance*max(math.Abs(a), math.Abs(b), 1)
}

// squallDigest reads the digest of a node's keys: every live key's
// counters and window (Node.Get), after the pass.
func squallDigest(ctx context.Context, nd *node.Node, records int) (peerDigest, error) {
	var d peerDigest
	list, err := nd.Engine().List(ctx, "", "", math.MaxInt32)
	if err != nil {
		return d, err
	}
	for _, k := range list.Keys {
		st, err := nd.Get(ctx, k.Key)
		if err != nil {
			return d, err
		}
		d.addKey(st.EventsApplied, st.LateDropped, st.DuplicatesDropped, st.Window)
	}
	d.Skipped = int64(records) - d.Applied - d.Late - d.Duplicates
	return d, nil
}

// windowsDigest is the digest of the baseline's windows.
func windowsDigest(wins map[string]*window.Window, records int) peerDigest {
	var d peerDigest
	for _, w := range wins {
		a, l, dups := w.Counts()
		d.addKey(a, l, dups, w.StatsOver(0))
	}
	d.Skipped = int64(records) - d.Applied - d.Late - d.Duplicates
	return d
}
