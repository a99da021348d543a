package chaos

import (
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"sort"
	"strings"
	"time"
)

// maxListed bounds the wrong keys and violations a report lists (all are
// counted).
const maxListed = 30

// Report is the outcome of a chaos run, as text (String) and JSON.
type Report struct {
	Seed     int64     `json:"seed"`
	Form     string    `json:"form"` // "short" or "long <duration>"
	Log      LogMode   `json:"log"`  // the nodes' log: "kafka" or "jetstream"
	Started  time.Time `json:"started"`
	Elapsed  string    `json:"elapsed"`
	Nodes    int       `json:"nodes"`
	Keys     int       `json:"keys"`
	KeysIDs  int       `json:"keys_with_ids"`
	NodeLogs string    `json:"node_logs"`

	Faults       []FaultRecord     `json:"faults"`
	FaultsByKind map[FaultKind]int `json:"faults_by_kind"`
	HealNotes    []string          `json:"heal_notes,omitempty"`

	Acked         int64            `json:"events_acked"`
	Failed        int64            `json:"events_failed"`
	Indeterminate int64            `json:"events_indeterminate"`
	Attempts      map[string]int64 `json:"attempts"` // events per "transport outcome reason"

	CaughtUp    bool   `json:"caught_up"`
	CaughtUpErr string `json:"caught_up_error,omitempty"`

	Lost              int64       `json:"lost"`
	Doubled           int64       `json:"doubled"`
	KeysLost          int         `json:"keys_lost"`
	KeysDoubled       int         `json:"keys_doubled"`
	KeysWrong         int         `json:"keys_wrong"`
	SumOut            int         `json:"keys_sum_out"`
	Disagreements     int         `json:"node_disagreements"`
	Unreadable        int         `json:"keys_unreadable"`
	DuplicatesDropped uint64      `json:"duplicates_dropped"` // information only
	WrongKeys         []KeyResult `json:"wrong_keys,omitempty"`
	// LostByPartition counts lost events by the key's partition.
	LostByPartition map[int32]int64 `json:"lost_by_partition,omitempty"`

	// The log audit, diagnostics only (see AuditLog and Verification).
	Audited        bool        `json:"audited"`
	AuditErr       string      `json:"audit_error,omitempty"`
	LogShort       int         `json:"keys_log_short"`
	LogShortEvents int64       `json:"events_acked_not_in_log"`
	LogDiffKeys    int         `json:"keys_state_not_log"`
	BelowLog       int64       `json:"events_state_below_log"`
	AboveLog       int64       `json:"events_state_above_log"`
	LogDiffs       []KeyResult `json:"keys_state_not_log_within_bounds,omitempty"`

	Observations      int         `json:"observations"`
	ObservationErrors int         `json:"observation_errors"`
	ExactTokens       bool        `json:"exact_tokens"` // nodes reported per-partition tokens
	LeaderViolations  int         `json:"leader_violations"`
	OwnerViolations   int         `json:"owner_violations"`
	Violations        []Violation `json:"violations,omitempty"`

	Recovery map[FaultKind]RecoveryStats `json:"recovery"`

	// Failures are the reasons the run failed; empty: it passed.
	Failures []string `json:"failures"`
}

// RecoveryStats summarises the recovery times of one fault kind.
type RecoveryStats struct {
	Count        int    `json:"count"`
	Recovered    int    `json:"recovered"`
	Min          string `json:"min"`
	Median       string `json:"median"`
	Max          string `json:"max"`
	MaxToSettled string `json:"max_to_settled"` // the longest from the injection to settled
}

// recoveryStats summarises rs by kind.
func recoveryStats(rs []FaultRecord) map[FaultKind]RecoveryStats {
	byKind := map[FaultKind][]FaultRecord{}
	for _, r := range rs {
		byKind[r.Kind] = append(byKind[r.Kind], r)
	}
	out := map[FaultKind]RecoveryStats{}
	for k, recs := range byKind {
		st := RecoveryStats{Count: len(recs)}
		var ds []time.Duration
		var settle time.Duration
		for _, r := range recs {
			if r.Recovery >= 0 {
				ds = append(ds, r.Recovery)
			}
			if !r.Settled.IsZero() {
				settle = max(settle, r.Settled.Sub(r.Injected))
			}
		}
		st.Recovered = len(ds)
		if len(ds) > 0 {
			slices.Sort(ds)
			st.Min = round(ds[0])
			st.Median = round(ds[len(ds)/2])
			st.Max = round(ds[len(ds)-1])
		}
		st.MaxToSettled = round(settle)
		out[k] = st
	}
	return out
}

func round(d time.Duration) string { return d.Round(10 * time.Millisecond).String() }

// fail adds a failure reason.
func (r *Report) fail(format string, args ...any) {
	r.Failures = append(r.Failures, fmt.Sprintf(format, args...))
}

// judge sets Failures from the findings.
func (r *Report) judge() {
	r.Failures = nil
	if r.Lost > 0 {
		r.fail("%d acknowledged events lost over %d keys", r.Lost, r.KeysLost)
	}
	if r.Doubled > 0 {
		r.fail("%d events counted twice over %d keys", r.Doubled, r.KeysDoubled)
	}
	if r.SumOut > 0 {
		r.fail("%d keys with a sum out of bounds", r.SumOut)
	}
	if r.Disagreements > 0 {
		r.fail("%d keys read differently through different nodes", r.Disagreements)
	}
	if r.Unreadable > 0 {
		r.fail("%d keys unreadable through some node", r.Unreadable)
	}
	if r.LeaderViolations > 0 {
		r.fail("%d leader violations", r.LeaderViolations)
	}
	if r.OwnerViolations > 0 {
		r.fail("%d owner violations", r.OwnerViolations)
	}
	if !r.CaughtUp {
		r.fail("the cluster did not settle and catch up with the log before the final read: %s", r.CaughtUpErr)
	}
}

// Passed reports whether the run found nothing wrong.
func (r *Report) Passed() bool { return len(r.Failures) == 0 }

// WriteJSON writes the report to path.
func (r *Report) WriteJSON(path string) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

// String renders the report as text.
func (r *Report) String() string {
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	verdict := "PASS"
	if !r.Passed() {
		verdict = "FAIL"
	}
	p("chaos report: %s — %s log, seed %d (replay: CHAOS_LOG=%s CHAOS_SEED=%d), %s form, %s, %d nodes",
		verdict, r.Log, r.Seed, r.Log, r.Seed, r.Form, r.Elapsed, r.Nodes)
	p("faults: %d %s", len(r.Faults), kindCounts(r.FaultsByKind))
	for _, f := range r.Faults {
		rec := "not seen"
		if f.Recovery >= 0 {
			rec = round(f.Recovery)
		}
		settled := "never"
		if !f.Settled.IsZero() {
			settled = round(f.Settled.Sub(f.Injected))
		}
		p("  %2d %-15s %-12s hold %-16s at +%-8s recovery %-8s settled +%s%s", f.N, f.Kind, strings.Join(f.Victims, ","),
			strings.Join(f.Hold, ","), round(f.Injected.Sub(r.Started)), rec, settled, notes(f.Notes))
	}
	if len(r.HealNotes) > 0 {
		p("final heal: %s", strings.Join(r.HealNotes, "; "))
	}
	p("recovery (injection, or heal for pauses → every partition served with a live source):")
	kinds := make([]FaultKind, 0, len(r.Recovery))
	for k := range r.Recovery {
		kinds = append(kinds, k)
	}
	slices.Sort(kinds)
	for _, k := range kinds {
		s := r.Recovery[k]
		p("  %-15s n=%d recovered=%d min %s median %s max %s; injection → settled max %s", k, s.Count, s.Recovered, s.Min, s.Median, s.Max, s.MaxToSettled)
	}
	p("events: %d acked, %d failed, %d indeterminate (%d keys, %d with ids)", r.Acked, r.Failed, r.Indeterminate, r.Keys, r.KeysIDs)
	var att []string
	for k, v := range r.Attempts {
		att = append(att, fmt.Sprintf("%s: %d", k, v))
	}
	sort.Strings(att)
	p("attempts (events): %s", strings.Join(att, "; "))
	if !r.CaughtUp {
		p("NOT caught up before the final read: %s", r.CaughtUpErr)
	}
	p("final read (every key through every node): lost %d (keys %d), doubled %d (keys %d), sum out of bounds %d keys, node disagreements %d keys, unreadable %d keys; duplicates dropped by id (info) %d",
		r.Lost, r.KeysLost, r.Doubled, r.KeysDoubled, r.SumOut, r.Disagreements, r.Unreadable, r.DuplicatesDropped)
	if len(r.LostByPartition) > 0 {
		p("lost by partition: %v", r.LostByPartition)
	}
	listKeys(p, r.WrongKeys, "wrong keys")
	switch {
	case r.AuditErr != "":
		p("log audit failed: %s", r.AuditErr)
	case r.Audited:
		p("log audit (diagnostic): %d keys with fewer events in the log than acked (%d events); %d keys whose state is not what their log holds (%d events below, %d above), %d of them within the ledger's bounds",
			r.LogShort, r.LogShortEvents, r.LogDiffKeys, r.BelowLog, r.AboveLog, len(r.LogDiffs))
		listKeys(p, r.LogDiffs, "keys off their log")
	}
	tokens := "per-partition tokens"
	if !r.ExactTokens {
		tokens = "no per-partition tokens: grants from serving + assignment generation"
	}
	p("observations: %d (%d errors; %s); leader violations %d, owner violations %d",
		r.Observations, r.ObservationErrors, tokens, r.LeaderViolations, r.OwnerViolations)
	for i, v := range r.Violations {
		if i == maxListed {
			p("  ... %d more in the JSON report", len(r.Violations)-maxListed)
			break
		}
		p("  %s at +%s (×%d): %s", v.Kind, round(v.At.Sub(r.Started)), v.Count, v.Detail)
	}
	p("node logs: %s", r.NodeLogs)
	for _, f := range r.Failures {
		p("FAILURE: %s", f)
	}
	return b.String()
}

// listKeys prints at most maxListed key results.
func listKeys(p func(string, ...any), ks []KeyResult, what string) {
	for i, k := range ks {
		if i == maxListed {
			p("  ... %d more %s in the JSON report", len(ks)-maxListed, what)
			break
		}
		var rs []string
		for _, rd := range k.Readings {
			if rd.Err != "" {
				rs = append(rs, fmt.Sprintf("%s: %s", rd.Node, rd.Err))
			} else {
				rs = append(rs, fmt.Sprintf("%s: %d %d/%g owner %s dups %d", rd.Node, rd.Status, rd.Count, rd.Sum, rd.Owner, rd.Dups))
			}
		}
		log := ""
		if k.Log != nil {
			log = fmt.Sprintf(", log %d records → %d events (sum %d)", k.Log.Records, k.Log.Expected, k.Log.ExpSum)
		}
		p("  %q p%d ids=%v acked %d (sum %d) indet %d (sum %d)%s: lost %d doubled %d sum-out %v disagree %v — %s",
			k.Key, k.Partition, k.WithIDs, k.Book.Acked, k.Book.AckedSum, k.Book.Indet, k.Book.IndetSum, log,
			k.Lost, k.Doubled, k.SumOut, k.Disagree, strings.Join(rs, "; "))
	}
}

func kindCounts(m map[FaultKind]int) string {
	var parts []string
	for _, k := range AllKinds {
		if m[k] > 0 {
			parts = append(parts, fmt.Sprintf("%s×%d", k, m[k]))
		}
	}
	return "(" + strings.Join(parts, ", ") + ")"
}
