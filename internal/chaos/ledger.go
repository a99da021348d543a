package chaos

import (
	"encoding/json"
	"fmt"
	"sort"
	"sync"

	"github.com/squallhq/squall/api"
	"github.com/squallhq/squall/event"
)

// Outcome is what a writer knows of an event's fate. Outcomes are ordered:
// when an event with an id is sent more than once, the greatest outcome of
// its attempts is the event's (the node drops the copies by id).
type Outcome int

// Outcomes.
const (
	// Failed: certainly not applied (refused before anything was sent, or
	// rejected for what the client sent).
	Failed Outcome = iota
	// Indeterminate: maybe applied, at most once (a timeout, a 5xx, a
	// broken connection, a failure the node could not pin down).
	Indeterminate
	// Acked: acknowledged: 202 and counted in accepted, not rejected.
	Acked
)

func (o Outcome) String() string {
	return [...]string{"failed", "indeterminate", "acked"}[o]
}

// KeyBook is what was written to one key: the acknowledged events (which
// must each be counted exactly once) and the indeterminate ones (which may
// be counted at most once each). Values are small positive integers, so
// sums are exact.
type KeyBook struct {
	Acked, AckedSum int64
	Indet, IndetSum int64
	Failed          int64
}

// Ledger books every event written, per key, once its outcome is final.
// Safe for concurrent use.
type Ledger struct {
	keys []string

	mu       sync.Mutex
	books    []KeyBook
	events   [3]int64         // final outcomes
	attempts map[string]int64 // events per "transport outcome reason"
}

// NewLedger returns an empty ledger of keys.
func NewLedger(keys []string) *Ledger {
	return &Ledger{keys: keys, books: make([]KeyBook, len(keys)), attempts: map[string]int64{}}
}

// Keys returns the keys, in index order.
func (l *Ledger) Keys() []string { return l.keys }

// Final books one event of key index k with value v and final outcome o.
func (l *Ledger) Final(k int, v int64, o Outcome) {
	l.mu.Lock()
	defer l.mu.Unlock()
	b := &l.books[k]
	switch o {
	case Acked:
		b.Acked++
		b.AckedSum += v
	case Indeterminate:
		b.Indet++
		b.IndetSum += v
	default:
		b.Failed++
	}
	l.events[o]++
}

// Attempt counts n events of one attempt by transport, outcome and reason.
func (l *Ledger) Attempt(transport string, o Outcome, reason string, n int) {
	l.mu.Lock()
	l.attempts[fmt.Sprintf("%s %s %s", transport, o, reason)] += int64(n)
	l.mu.Unlock()
}

// Books returns a copy of the per-key books, in key index order.
func (l *Ledger) Books() []KeyBook {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]KeyBook(nil), l.books...)
}

// Totals returns the number of events booked per final outcome.
func (l *Ledger) Totals() (acked, failed, indet int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.events[Acked], l.events[Failed], l.events[Indeterminate]
}

// Attempts returns the attempt tallies, as "transport outcome reason" →
// events, sorted by key when listed.
func (l *Ledger) Attempts() map[string]int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make(map[string]int64, len(l.attempts))
	for k, v := range l.attempts {
		out[k] = v
	}
	return out
}

// KeyNames returns n key names: mostly "chaos-NNN.cpu", with a few that
// need escaping in a URL path ('/', a space, non-ASCII).
func KeyNames(n int) []string {
	out := make([]string, n)
	for i := range out {
		switch i % 50 {
		case 7:
			out[i] = fmt.Sprintf("chaos/db-%03d.disk./var", i)
		case 13:
			out[i] = fmt.Sprintf("chaos k%03d ünï", i)
		default:
			out[i] = fmt.Sprintf("chaos-%03d.cpu", i)
		}
	}
	return out
}

// classifyIngest returns each event's outcome from an ingest answer (HTTP
// status and body, or a NATS reply with status 0) to a batch of n valid
// events, and the reason, for the tallies. It is conservative: an event is
// acknowledged only when the answer counts it in accepted and does not
// reject it, and failed only when the answer says the node refused it for
// what the client sent (or shed it); everything else is indeterminate.
func classifyIngest(status int, body []byte, n int) ([]Outcome, string) {
	var r api.IngestResponse
	if err := json.Unmarshal(body, &r); err != nil {
		if status == 413 || status == 401 {
			return all(n, Failed), fmt.Sprintf("status %d", status)
		}
		return all(n, Indeterminate), fmt.Sprintf("status %d, unparsable answer", status)
	}
	switch status {
	case 0, 202, 429: // a NATS reply, or an answer per event
		if r.Error != "" {
			// A body refused as a whole: ours are valid, so the node's
			// failure, whatever the status.
			return all(n, Indeterminate), fmt.Sprintf("status %d error", status)
		}
		return perEvent(r, n, status)
	case 400:
		if r.Error == "" && len(r.Rejected) == n {
			outs, reason := perEvent(r, n, status)
			for _, o := range outs {
				if o != Failed {
					return all(n, Indeterminate), "status 400 on valid input"
				}
			}
			return outs, reason
		}
		// Our events are valid: a 400 with an error is a failure of the
		// node answered with a client status (it should be a 503).
		return all(n, Indeterminate), "status 400 on valid input"
	case 503:
		// The node's failure: events it lists (marked retry) may or may not
		// have been applied; the others were accepted when the counts add up.
		if len(r.Rejected) > 0 {
			return perEvent(r, n, status)
		}
		return all(n, Indeterminate), "status 503"
	case 401, 413:
		return all(n, Failed), fmt.Sprintf("status %d", status)
	default:
		return all(n, Indeterminate), fmt.Sprintf("status %d", status)
	}
}

// perEvent maps an answer's rejections onto the batch.
func perEvent(r api.IngestResponse, n, status int) ([]Outcome, string) {
	outs := make([]Outcome, n)
	for i := range outs {
		outs[i] = Acked
	}
	if r.RejectedOmitted > 0 {
		return indetUnlessFailed(outs), fmt.Sprintf("status %d, rejections omitted", status)
	}
	rejected := 0
	reasons := map[string]bool{}
	for _, rej := range r.Rejected {
		if rej.Index < 0 || rej.Index >= n || outs[rej.Index] != Acked {
			return indetUnlessFailed(outs), fmt.Sprintf("status %d, rejections unmappable", status)
		}
		rejected++
		if clientCaused(rej) {
			outs[rej.Index] = Failed
		} else {
			outs[rej.Index] = Indeterminate
		}
		reasons[rej.Reason] = true
	}
	if r.Accepted != n-rejected {
		return indetUnlessFailed(outs), fmt.Sprintf("status %d, accepted %d of %d with %d rejected", status, r.Accepted, n, rejected)
	}
	if rejected == 0 {
		return outs, fmt.Sprintf("status %d", status)
	}
	var rs []string
	for k := range reasons {
		rs = append(rs, k)
	}
	sort.Strings(rs)
	return outs, fmt.Sprintf("status %d, rejected: %v", status, rs)
}

// indetUnlessFailed makes every outcome but Failed indeterminate.
func indetUnlessFailed(outs []Outcome) []Outcome {
	for i, o := range outs {
		if o != Failed {
			outs[i] = Indeterminate
		}
	}
	return outs
}

// clientCaused reports whether a rejection certainly means the event was
// not applied: validation (a field named) or shedding. Other reasons ("the
// handler failed", with Kafka a produce that failed, perhaps after the
// broker had the record) may hide an applied event.
func clientCaused(r event.Rejection) bool {
	return r.Field != "" || r.Reason == api.ReasonShed
}
