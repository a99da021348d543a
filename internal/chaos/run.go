package chaos

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"
)

// Run timing.
const (
	// startSettleTimeout bounds the first settle of the fresh cluster.
	startSettleTimeout = 90 * time.Second
	// reportMargin is kept before the test's deadline for the final
	// check and the report.
	reportMargin = 2 * time.Minute
	// readRounds bounds the final reads repeated because the cluster
	// changed while they ran.
	readRounds = 3
)

// Run runs the chaos suite of cfg against a fresh cluster and returns its
// report; it fails t only when the harness cannot run (a server does not
// start, the fresh cluster does not settle), not for what it finds: the
// caller judges the report.
func Run(t testing.TB, cfg Config) *Report {
	t.Helper()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	form := "short"
	if !cfg.Short() {
		form = "long " + cfg.Duration.String()
	}
	rep := &Report{Seed: cfg.Seed, Form: form, Log: cfg.Log, Nodes: cfg.Nodes, Keys: cfg.Keys, KeysIDs: cfg.KeysWithIDs}
	t.Logf("chaos: %s log, seed %d (replay with CHAOS_LOG=%s CHAOS_SEED=%d), %s form", cfg.Log, cfg.Seed, cfg.Log, cfg.Seed, form)

	ctx := context.Background()
	if dl, ok := t.(interface{ Deadline() (time.Time, bool) }); ok {
		if d, ok := dl.Deadline(); ok {
			var cancel context.CancelFunc
			ctx, cancel = context.WithDeadline(ctx, d.Add(-reportMargin))
			defer cancel()
		}
	}
	logDir := os.Getenv(EnvLogs)
	if logDir == "" {
		logDir = t.TempDir()
	} else if err := os.MkdirAll(logDir, 0o755); err != nil {
		t.Fatal(err)
	}
	rep.NodeLogs = logDir
	if os.Getenv(EnvLogs) == "" {
		rep.NodeLogs += " (removed at the end: set " + EnvLogs + " to keep them)"
	}

	bin := BuildNode(t, t.TempDir())
	c := StartCluster(t, cfg, bin, logDir)
	if _, err := WaitSettled(ctx, c, startSettleTimeout, false); err != nil {
		t.Fatalf("chaos: the fresh cluster: %v", err)
	}
	rep.Started = time.Now()

	ledger := NewLedger(KeyNames(cfg.Keys))
	obs := StartObserver(c, cfg.ObserveInterval)
	defer obs.Stop()
	ws := StartWriters(c, ledger, cfg)
	defer ws.Stop()

	nm := NewNemesis(c, cfg, t.Logf)
	rep.Faults = nm.Run(t, ctx)
	rep.HealNotes = nm.HealAll(t)
	ws.Stop()
	rep.Acked, rep.Failed, rep.Indeterminate = ledger.Totals()
	rep.Attempts = ledger.Attempts()
	t.Logf("chaos: writers stopped: %d acked, %d failed, %d indeterminate; waiting for the cluster to catch up",
		rep.Acked, rep.Failed, rep.Indeterminate)

	// The final read, once the cluster has settled and applied the whole
	// log, and again if it changed meanwhile.
	var v Verification
	for round := 1; ; round++ {
		st, err := WaitSettled(ctx, c, cfg.CatchUpTimeout, true)
		if err != nil {
			rep.CaughtUpErr = err.Error()
		} else {
			rep.CaughtUp, rep.CaughtUpErr = true, ""
		}
		readings := ReadKeys(ctx, c, ledger.Keys())
		logs, aerr := AuditLog(ctx, c, ledger.Keys())
		if aerr != nil {
			rep.AuditErr = aerr.Error()
			logs = nil
		}
		v = Verify(ledger.Keys(), cfg.KeysWithIDs, cfg.Partitions, ledger.Books(), readings, logs)
		if err != nil || round == readRounds {
			break
		}
		after, err := WaitSettled(ctx, c, cfg.SettleTimeout, false)
		if err == nil && after.Generation == st.Generation {
			break
		}
		t.Logf("chaos: the cluster changed during the final read (%v); reading again", err)
	}
	rep.Lost, rep.Doubled, rep.KeysLost, rep.KeysDoubled = v.Lost, v.Doubled, v.KeysLost, v.KeysDoubled
	rep.KeysWrong, rep.SumOut, rep.Disagreements, rep.Unreadable = v.KeysWrong, v.SumOut, v.Disagreements, v.Unreadable
	rep.DuplicatesDropped, rep.WrongKeys, rep.LostByPartition = v.DuplicatesDropped, v.Wrong, v.LostByPartition
	rep.Audited, rep.LogShort, rep.LogShortEvents = v.KeysAudit > 0, v.LogShort, v.LogShortEvents
	rep.LogDiffKeys, rep.BelowLog, rep.AboveLog, rep.LogDiffs = v.LogDiffKeys, v.BelowLog, v.AboveLog, v.LogDiffs

	history := obs.Stop()
	rep.Observations = len(history)
	for _, o := range history {
		if o.Err != "" {
			rep.ObservationErrors++
		} else if o.Exact {
			rep.ExactTokens = true
		}
	}
	rep.Violations = CheckHistory(history)
	for _, vi := range rep.Violations {
		if vi.Partition < 0 {
			rep.LeaderViolations++
		} else {
			rep.OwnerViolations++
		}
	}
	tl := c.Timeline.Transitions()
	rep.FaultsByKind = map[FaultKind]int{}
	for i := range rep.Faults {
		f := &rep.Faults[i]
		rep.FaultsByKind[f.Kind]++
		until := time.Now()
		if i+1 < len(rep.Faults) {
			until = rep.Faults[i+1].Injected
		}
		if at, ok := Recovered(history, tl, cfg.Partitions, f.ref(), until); ok {
			f.Recovery = at.Sub(f.ref())
		}
	}
	rep.Recovery = recoveryStats(rep.Faults)
	rep.Elapsed = round(time.Since(rep.Started))
	rep.judge()
	return rep
}

// WriteReport writes rep as JSON to $CHAOS_REPORT, or, when unset, to
// dir/chaos-report-<seed>.json (Kafka) or dir/chaos-report-jetstream-<seed>.json,
// and returns the path.
func WriteReport(rep *Report, dir string) (string, error) {
	path := os.Getenv(EnvReport)
	if path == "" {
		mode := ""
		if rep.Log == LogJetStream {
			mode = "jetstream-"
		}
		path = fmt.Sprintf("%s/chaos-report-%s%d.json", dir, mode, rep.Seed)
	}
	return path, rep.WriteJSON(path)
}
