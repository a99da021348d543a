package chaos

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strings"
	"testing"
	"time"
)

// FaultKind names a kind of fault.
type FaultKind string

// Fault kinds.
const (
	// KillOne: kill -9 of a node, restarted with the same id after Hold[0].
	KillOne FaultKind = "kill-1"
	// KillTwo: kill -9 of two nodes, each restarted after its Hold.
	KillTwo FaultKind = "kill-2"
	// PauseNode: SIGSTOP of a node for Hold[0] (past the session timeout),
	// then SIGCONT.
	PauseNode FaultKind = "pause-node"
	// PauseLeader: the same for the acting leader.
	PauseLeader FaultKind = "pause-leader"
	// PauseZKShort: SIGSTOP of ZooKeeper shorter than the session timeout.
	PauseZKShort FaultKind = "pause-zk-short"
	// PauseZKLong: SIGSTOP of ZooKeeper longer than the session timeout.
	PauseZKLong FaultKind = "pause-zk-long"
	// RestartBroker: kill -9 of the Kafka broker and a restart at once.
	// LogKafka only.
	RestartBroker FaultKind = "restart-broker"
	// KillNATS: a NATS server of the JetStream cluster shut down at once
	// (its process dying: connections cut, no lame-duck period), restarted
	// on its ports and store after Hold[0]. LogJetStream only.
	KillNATS FaultKind = "kill-nats"
	// LeaveJoin: SIGTERM of a node (a graceful leave), waited for, then a
	// start after Hold[0] (a join).
	LeaveJoin FaultKind = "leave-join"
)

// AllKinds lists every fault kind, of either mode.
var AllKinds = []FaultKind{KillOne, KillTwo, PauseNode, PauseLeader, PauseZKShort, PauseZKLong, RestartBroker, KillNATS, LeaveJoin}

// Kinds returns the fault kinds of a mode; a schedule goes through all of
// them, in a seeded order, before it repeats one. Both modes have the
// faults of the nodes and of ZooKeeper; LogKafka adds RestartBroker,
// LogJetStream KillNATS.
func Kinds(mode LogMode) []FaultKind {
	var out []FaultKind
	for _, k := range AllKinds {
		switch {
		case k == RestartBroker && mode != LogKafka, k == KillNATS && mode != LogJetStream:
		default:
			out = append(out, k)
		}
	}
	return out
}

// healsAtEnd reports whether a kind's recovery is timed from its heal
// (the SIGCONT) rather than its injection.
func (k FaultKind) healsAtEnd() bool {
	return k == PauseNode || k == PauseLeader || k == PauseZKShort || k == PauseZKLong
}

// Fault is one planned fault.
type Fault struct {
	Kind FaultKind
	// Victims are node indexes (kills, pauses of a node, leaves), or the
	// NATS server's index (KillNATS); a leader pause uses Victims[0] only
	// when no leader can be found.
	Victims []int
	// Hold is, per victim (or for ZooKeeper), how long the fault lasts:
	// down time before the restart, pause length, time before the join.
	Hold []time.Duration
	// After is the wait from the previous fault's injection.
	After time.Duration
}

// Plan is the seeded fault schedule: the same seed and form give the same
// faults (kinds, victims, durations, waits). Not safe for concurrent use.
type Plan struct {
	rng *rand.Rand
	// natsRng draws the NATS kills' server and hold, so that rng draws
	// the same in both modes: a seed's JetStream schedule is its Kafka
	// schedule with each broker restart replaced by a NATS kill.
	natsRng *rand.Rand
	short   bool
	nodes   int
	servers int
	kinds   []FaultKind
	cycle   []FaultKind
}

// NewPlan returns the schedule of cfg: its seed, form, nodes and the fault
// kinds of its mode (Kinds). A LogKafka schedule is the same as before
// the JetStream mode existed.
func NewPlan(cfg Config) *Plan {
	return &Plan{rng: rand.New(rand.NewPCG(uint64(cfg.Seed), 0x6e656d65)),
		natsRng: rand.New(rand.NewPCG(uint64(cfg.Seed), 0x6e617473)),
		short:   cfg.Short(), nodes: cfg.Nodes, servers: cfg.NATSServers, kinds: Kinds(cfg.Log)}
}

// Kinds returns the fault kinds the plan goes through.
func (p *Plan) Kinds() []FaultKind { return p.kinds }

func (p *Plan) between(lo, hi time.Duration) time.Duration {
	return between(p.rng, lo, hi)
}

func between(rng *rand.Rand, lo, hi time.Duration) time.Duration {
	return lo + time.Duration(rng.Int64N(int64(hi-lo)+1)).Round(100*time.Millisecond)
}

// Next returns the next fault.
func (p *Plan) Next() Fault {
	if len(p.cycle) == 0 {
		p.cycle = append([]FaultKind(nil), p.kinds...)
		p.rng.Shuffle(len(p.cycle), func(i, j int) { p.cycle[i], p.cycle[j] = p.cycle[j], p.cycle[i] })
	}
	f := Fault{Kind: p.cycle[0]}
	p.cycle = p.cycle[1:]
	down, rejoin, every := 15*time.Second, 15*time.Second, [2]time.Duration{15 * time.Second, 30 * time.Second}
	if p.short {
		down, rejoin, every = 6*time.Second, 4*time.Second, [2]time.Duration{5 * time.Second, 8 * time.Second}
	}
	f.After = p.between(every[0], every[1])
	victim := p.rng.IntN(p.nodes)
	switch f.Kind {
	case KillOne:
		f.Victims, f.Hold = []int{victim}, []time.Duration{p.between(time.Second, down)}
	case KillTwo:
		other := (victim + 1 + p.rng.IntN(p.nodes-1)) % p.nodes
		f.Victims = []int{victim, other}
		f.Hold = []time.Duration{p.between(time.Second, down), p.between(time.Second, down)}
	case PauseNode, PauseLeader:
		f.Victims, f.Hold = []int{victim}, []time.Duration{p.between(6*time.Second, 9*time.Second)}
	case PauseZKShort:
		f.Hold = []time.Duration{p.between(1500*time.Millisecond, 2500*time.Millisecond)}
	case PauseZKLong:
		f.Hold = []time.Duration{p.between(5500*time.Millisecond, 7*time.Second)}
	case RestartBroker:
	case KillNATS:
		f.Victims = []int{p.natsRng.IntN(p.servers)}
		f.Hold = []time.Duration{between(p.natsRng, time.Second, down)}
	case LeaveJoin:
		f.Victims, f.Hold = []int{victim}, []time.Duration{p.between(time.Second, rejoin)}
	}
	return f
}

// FaultRecord is what happened when a fault was injected.
type FaultRecord struct {
	N       int       `json:"n"`
	Kind    FaultKind `json:"kind"`
	Victims []string  `json:"victims,omitempty"`
	Hold    []string  `json:"hold,omitempty"`
	// Injected is when the fault began; Healed when its last part was
	// undone (restart, SIGCONT, join); Settled when the cluster was next
	// seen settled (zero: it was not, within the settle timeout).
	Injected time.Time `json:"injected"`
	Healed   time.Time `json:"healed"`
	Settled  time.Time `json:"settled"`
	// Recovery is the time from the injection (from the heal for the
	// pauses) until every partition was served again with its source live
	// (Recovered); -1 when that was not seen before the next fault.
	Recovery time.Duration `json:"recovery_ns"`
	// Notes are what went wrong in the harness's eyes: a crash, a node not
	// exiting in time after SIGTERM, an unsettled cluster.
	Notes []string `json:"notes,omitempty"`
}

func (r *FaultRecord) note(format string, args ...any) {
	r.Notes = append(r.Notes, fmt.Sprintf(format, args...))
}

// ref is the time recovery is timed from.
func (r *FaultRecord) ref() time.Time {
	if r.Kind.healsAtEnd() {
		return r.Healed
	}
	return r.Injected
}

// Nemesis injects the faults of a Plan into a Cluster, one at a time, and
// heals the cluster and waits for it to settle after each. Run it on the
// test goroutine: ZooKeeper and Kafka faults fail the test when their
// process cannot be signalled or restarted (a NATS server that does not
// come back in time is noted in the fault's record).
type Nemesis struct {
	c      *Cluster
	cfg    Config
	plan   *Plan
	logf   func(format string, args ...any)
	hc     *http.Client
	faults []FaultRecord
}

// NewNemesis returns a nemesis for c with cfg's seed and form, logging
// each step through logf.
func NewNemesis(c *Cluster, cfg Config, logf func(format string, args ...any)) *Nemesis {
	return &Nemesis{c: c, cfg: cfg, plan: NewPlan(cfg), logf: logf,
		hc: &http.Client{Timeout: time.Second}}
}

// minQuiet is the least time between a fault's settle and the next one.
const minQuiet = 2 * time.Second

// Run injects faults until the form is done (the short form: one of each
// kind of the mode and ShortFor; the long form: Duration, from the first), and returns
// their records. The cluster is healed after each fault.
func (nm *Nemesis) Run(t testing.TB, ctx context.Context) []FaultRecord {
	t.Helper()
	defer nm.hc.CloseIdleConnections()
	start := time.Now()
	last := start
	for i := 0; ; i++ {
		if nm.cfg.Short() && i >= len(nm.plan.Kinds()) && time.Since(start) >= nm.cfg.ShortFor {
			break
		}
		if !nm.cfg.Short() && time.Since(start) >= nm.cfg.Duration {
			break
		}
		f := nm.plan.Next()
		next := last.Add(f.After)
		if len(nm.faults) > 0 {
			if s := nm.faults[len(nm.faults)-1].Settled; !s.IsZero() && next.Before(s.Add(minQuiet)) {
				next = time.Now().Add(minQuiet)
			}
		}
		if !sleepUntil(ctx, next) {
			break
		}
		rec := nm.inject(t, ctx, i+1, f)
		last = rec.Injected
		nm.heal(t, &rec)
		st, err := WaitSettled(ctx, nm.c, nm.cfg.SettleTimeout, false)
		if err != nil {
			rec.note("not settled %s after the heal: %v", nm.cfg.SettleTimeout, err)
			nm.heal(t, &rec) // a crash found while settling
		} else {
			rec.Settled = st.At
		}
		nm.logf("chaos: fault %d %s %v hold %v: injected %s, healed %s, settled %s%s", rec.N, rec.Kind, rec.Victims, rec.Hold,
			clock(rec.Injected), clock(rec.Healed), clockOrNever(rec.Settled), notes(rec.Notes))
		nm.faults = append(nm.faults, rec)
		if ctx.Err() != nil {
			break
		}
	}
	return nm.faults
}

func clockOrNever(t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	return clock(t)
}

func notes(ns []string) string {
	if len(ns) == 0 {
		return ""
	}
	return " — " + strings.Join(ns, "; ")
}

// sleepUntil waits until t or ctx ends; false when ctx ended.
func sleepUntil(ctx context.Context, t time.Time) bool {
	d := time.Until(t)
	if d <= 0 {
		return ctx.Err() == nil
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-timer.C:
		return true
	}
}

// victim returns node index i, or the next node after it that is up.
func (nm *Nemesis) victim(i int, not ...*Node) *Node {
	for k := range nm.c.Nodes {
		n := nm.c.Nodes[(i+k)%len(nm.c.Nodes)]
		if n.State() == Up && !contains(not, n) {
			return n
		}
	}
	return nil
}

func contains(ns []*Node, n *Node) bool {
	for _, m := range ns {
		if m == n {
			return true
		}
	}
	return false
}

// leader returns the node that says it is the acting leader, polling for
// at most ten seconds.
func (nm *Nemesis) leader(ctx context.Context) *Node {
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		for _, n := range nm.c.InState(Up) {
			if o := fetchCluster(ctx, nm.hc, n.ID, n.HTTPAddr); o.ActingLeader() {
				return n
			}
		}
		sleepUntil(ctx, time.Now().Add(100*time.Millisecond))
	}
	return nil
}

func (nm *Nemesis) inject(t testing.TB, ctx context.Context, n int, f Fault) FaultRecord {
	t.Helper()
	rec := FaultRecord{N: n, Kind: f.Kind, Recovery: -1}
	for _, h := range f.Hold {
		rec.Hold = append(rec.Hold, h.String())
	}
	switch f.Kind {
	case KillOne, KillTwo:
		var vs []*Node
		for _, i := range f.Victims {
			if v := nm.victim(i, vs...); v != nil {
				vs = append(vs, v)
			}
		}
		rec.Injected = time.Now()
		for _, v := range vs {
			rec.Victims = append(rec.Victims, v.ID)
			v.Kill()
		}
		// Restart each after its hold, the shorter first.
		order := []int{0, 1}[:len(vs)]
		if len(vs) == 2 && f.Hold[1] < f.Hold[0] {
			order = []int{1, 0}
		}
		for _, k := range order {
			if !sleepUntil(ctx, rec.Injected.Add(f.Hold[k])) {
				break
			}
			nm.start(&rec, vs[k])
		}
	case PauseNode, PauseLeader:
		var v *Node
		if f.Kind == PauseLeader {
			if v = nm.leader(ctx); v == nil {
				rec.note("no acting leader found in 10s: pausing a node instead")
			}
		}
		if v == nil {
			v = nm.victim(f.Victims[0])
		}
		if v == nil {
			rec.note("no node up to pause")
			break
		}
		rec.Victims = []string{v.ID}
		rec.Injected = time.Now()
		if err := v.Pause(); err != nil {
			rec.note("%v", err)
			break
		}
		sleepUntil(ctx, rec.Injected.Add(f.Hold[0]))
		if err := v.Resume(); err != nil {
			rec.note("%v", err)
		}
	case PauseZKShort, PauseZKLong:
		rec.Victims = []string{"zookeeper"}
		rec.Injected = time.Now()
		nm.c.ZK.Pause(t)
		sleepUntil(ctx, rec.Injected.Add(f.Hold[0]))
		nm.c.ZK.Resume(t)
	case RestartBroker:
		rec.Victims = []string{"kafka"}
		rec.Injected = time.Now()
		nm.c.Kafka.Restart(t)
	case KillNATS:
		i := f.Victims[0]
		rec.Victims = []string{"nats-" + nm.c.NATS.Name(i)}
		rec.Injected = time.Now()
		nm.c.NATS.Kill(i)
		sleepUntil(ctx, rec.Injected.Add(f.Hold[0]))
		if err := nm.c.NATS.Restart(i); err != nil {
			rec.note("%v", err)
		}
	case LeaveJoin:
		v := nm.victim(f.Victims[0])
		if v == nil {
			rec.note("no node up to leave")
			break
		}
		rec.Victims = []string{v.ID}
		rec.Injected = time.Now()
		// --shutdown-timeout is 8s by default: twice that and more.
		exitErr, inTime, err := v.Term(30 * time.Second)
		switch {
		case err != nil:
			rec.note("%v", err)
		case !inTime:
			rec.note("%s did not exit within 30s of SIGTERM (killed)", v.ID)
		case exitErr != nil:
			rec.note("%s exit after SIGTERM: %v", v.ID, exitErr)
		}
		if sleepUntil(ctx, time.Now().Add(f.Hold[0])) {
			nm.start(&rec, v)
		}
	}
	if rec.Injected.IsZero() {
		rec.Injected = time.Now()
	}
	rec.Healed = time.Now()
	return rec
}

// start starts v, trying three times (its port may be taken for a moment).
func (nm *Nemesis) start(rec *FaultRecord, v *Node) {
	var err error
	for range 3 {
		if err = v.Start(); err == nil {
			return
		}
	}
	rec.note("restart of %s: %v", v.ID, err)
}

// heal undoes whatever is left of a fault: ZooKeeper resumed, NATS
// servers that are down restarted, paused nodes resumed, nodes that are
// down (killed, or crashed: noted) started.
func (nm *Nemesis) heal(t testing.TB, rec *FaultRecord) {
	t.Helper()
	nm.c.ZK.Resume(t)
	if nm.c.NATS != nil {
		for i := range nm.c.NATS.Len() {
			if !nm.c.NATS.Up(i) {
				if err := nm.c.NATS.Restart(i); err != nil {
					rec.note("%v", err)
				}
			}
		}
	}
	for _, n := range nm.c.Nodes {
		if exited, err := n.Exited(); exited {
			rec.note("%s exited on its own: %v", n.ID, err)
		}
		switch n.State() {
		case Paused:
			if err := n.Resume(); err != nil {
				rec.note("%v", err)
			}
		case Down:
			nm.start(rec, n)
		}
	}
}

// HealAll heals the cluster at the end of a run.
func (nm *Nemesis) HealAll(t testing.TB) []string {
	t.Helper()
	var rec FaultRecord
	nm.heal(t, &rec)
	return rec.Notes
}
