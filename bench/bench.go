// Package bench is Squall's benchmark harness (make bench,
// cmd/squall-bench): it runs each performance scenario against real servers
// started for the run — Kafka → applied on one node (kfake and a real
// broker, with a hand-written franz-go baseline on the same data), HTTP and
// NATS ingest, latency at a fixed offered load, routing between three
// nodes, memory per live key and failover after kill -9 — and reports one
// row per scenario with its setup, as a table, JSON and an SVG chart.
//
// Absolute figures drift between machines and runs: compare rows of one
// run, and Squall against the baseline of the same run.
package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// Options configure a run.
type Options struct {
	// Mode is "full" (make bench), "quick" (make bench-quick: about 30s,
	// kfake only) or "smoke" (make test: a few seconds, tiny sizes, to
	// keep the harness from rotting).
	Mode string
	// Only, when set, runs the scenarios whose name matches.
	Only *regexp.Regexp
	// RealKafka runs the Kafka scenarios against a real broker too
	// (fetched and started by internal/kafkatest; needs Java). Full mode
	// sets it.
	RealKafka bool
	// Procs are the GOMAXPROCS settings of the cores scenarios
	// (kafka/<broker>/100K-keys/gomaxprocs), in the order of each round.
	// Default DefaultProcs (1, 2); one setting alone is for profiling it.
	Procs []int
	// NodeBinary is bin/squall-node, for the failover scenario (separate
	// processes, killed with SIGKILL). Empty: the scenario is skipped.
	NodeBinary string
	// Progress receives the progress line (nil: none).
	Progress io.Writer
	// Log receives the harness's own messages (nil: discarded).
	Log io.Writer
}

// scale is the size of a run's scenarios.
type scale struct {
	kafkaKeys   []int // key counts of the Kafka throughput scenarios
	kafkaEvents int   // events per Kafka throughput scenario (at least 10 per key)
	ingestFor   time.Duration
	latencyFor  time.Duration
	latencyRate int // offered events/s
	memoryKeys  int
	// durableEvents are stored, then replayed after kill -9, by the
	// durable scenario (full mode only: it needs the node binary). 60M
	// over its 100K keys is 10 minutes of data at 100K events/s: one event
	// a second per key, event times spanning the 10-minute retention.
	durableEvents int
	routeFor      time.Duration
	cluster       bool // three nodes on ZooKeeper, failover
	// coreRounds is how many times each GOMAXPROCS setting of the cores
	// scenarios consumes the topic (interleaved: 1,2,1,2,...); 0: the
	// scenarios are not run (quick mode, to stay short).
	coreRounds int
}

func (o *Options) scale() scale {
	switch o.Mode {
	case "smoke":
		return scale{kafkaKeys: []int{1000}, kafkaEvents: 20_000, ingestFor: 500 * time.Millisecond,
			latencyFor: time.Second, latencyRate: 5_000, memoryKeys: 10_000, coreRounds: 1}
	case "quick":
		return scale{kafkaKeys: []int{10_000, 100_000}, kafkaEvents: 1_000_000, ingestFor: 2 * time.Second,
			latencyFor: 3 * time.Second, latencyRate: 100_000, memoryKeys: 100_000}
	}
	return scale{kafkaKeys: []int{10_000, 100_000, 1_000_000}, kafkaEvents: 3_000_000, ingestFor: 5 * time.Second,
		latencyFor: 10 * time.Second, latencyRate: 100_000, memoryKeys: 1_000_000, routeFor: 5 * time.Second, cluster: true,
		durableEvents: 60_000_000, coreRounds: 3}
}

// scenario is one row, or several sharing a setup.
type scenario struct {
	name string
	run  func(r *run) ([]Result, error)
}

// run is the state of one scenario's execution.
type run struct {
	*Options
	sc    scale
	name  string
	tb    *tb
	log   *slog.Logger
	prog  *Progress
	state string
	mu    sync.Mutex
}

// status sets the progress line's text.
func (r *run) status(format string, args ...any) {
	r.mu.Lock()
	r.state = fmt.Sprintf(format, args...)
	r.mu.Unlock()
}

func (r *run) progress() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.state
}

// Run runs the scenarios of opts.Mode and returns the report; a scenario
// that fails is a row with its error, and the others still run.
func Run(ctx context.Context, opts Options) (*Report, error) {
	if opts.Mode == "" {
		opts.Mode = "full"
	}
	switch opts.Mode {
	case "full", "quick", "smoke":
	default:
		return nil, fmt.Errorf("bench: mode %q: want full, quick or smoke", opts.Mode)
	}
	rep := &Report{Started: time.Now().UTC(), Machine: ThisMachine(), Mode: opts.Mode}
	logw := opts.Log
	if logw == nil {
		logw = io.Discard
	}
	for _, s := range scenarios(&opts) {
		if opts.Only != nil && !opts.Only.MatchString(s.name) {
			continue
		}
		if err := ctx.Err(); err != nil {
			return rep, err
		}
		r := &run{Options: &opts, sc: opts.scale(), name: s.name,
			log: slog.New(slog.NewTextHandler(logw, &slog.HandlerOptions{Level: slog.LevelWarn}))}
		r.tb = &tb{name: s.name, log: logw}
		if opts.Progress != nil {
			r.prog = StartProgress(opts.Progress, s.name, r.progress, 500*time.Millisecond)
		}
		rs, err := r.execute(s)
		if r.prog != nil {
			r.prog.Stop()
		}
		if err != nil {
			rs = append(rs, Result{Scenario: s.name, Group: strings.SplitN(s.name, "/", 2)[0], Err: err.Error(),
				AllocsPerEvent: -1, Setup: Setup{Cores: runtime.NumCPU()}})
		}
		rep.Results = append(rep.Results, rs...)
		runtime.GC()
	}
	relate(rep.Results)
	return rep, nil
}

// relate adds to each row that names another row of the run to compare
// with (Result.versus) the ratio of their throughputs.
func relate(rs []Result) {
	for i := range rs {
		if rs[i].versus == "" || rs[i].EventsPerSec <= 0 {
			continue
		}
		for j := range rs {
			if rs[j].Scenario == rs[i].versus && rs[j].EventsPerSec > 0 {
				rs[i].Figures = append(rs[i].Figures, Figure{"vs " + rs[j].Scenario,
					fmt.Sprintf("%.2f× its throughput, same run", rs[i].EventsPerSec/rs[j].EventsPerSec)})
			}
		}
	}
}

// execute runs s, its cleanups, and turns a Fatal of the server helpers
// into an error.
func (r *run) execute(s scenario) (rs []Result, err error) {
	defer func() {
		if p := recover(); p != nil {
			f, ok := p.(fatal)
			if !ok {
				panic(p)
			}
			err = errors.New(string(f))
		}
		r.tb.cleanup()
	}()
	return s.run(r)
}

func scenarios(o *Options) []scenario {
	sc := o.scale()
	var out []scenario
	brokers := []string{"kfake"}
	if o.RealKafka {
		brokers = append(brokers, "kafka")
	}
	for _, b := range brokers {
		for _, keys := range sc.kafkaKeys {
			out = append(out, scenario{fmt.Sprintf("kafka/%s/%s-keys", b, count(keys)), kafkaThroughput(b, keys, 0, false, true)})
		}
		mid := sc.kafkaKeys[len(sc.kafkaKeys)/2]
		out = append(out,
			scenario{fmt.Sprintf("kafka/%s/%s-keys/no-ids", b, count(mid)), kafkaThroughput(b, mid, 0, false, false)},
			scenario{fmt.Sprintf("kafka/%s/%s-keys/1-rule", b, count(mid)), kafkaThroughput(b, mid, 1, false, true)},
			scenario{fmt.Sprintf("kafka/%s/%s-keys/steady", b, count(sc.kafkaKeys[0])), kafkaThroughput(b, sc.kafkaKeys[0], 0, true, true)})
		for _, keys := range sc.kafkaKeys {
			out = append(out, scenario{fmt.Sprintf("kafka/%s/%s-keys/latency", b, count(keys)), kafkaLatency(b, keys)})
		}
		// Against the real broker when the run has one (its CPU is apart
		// from the node's, and the setting does not limit it), else kfake.
		if sc.coreRounds > 0 && b == brokers[len(brokers)-1] {
			out = append(out, scenario{fmt.Sprintf("kafka/%s/%s-keys/gomaxprocs", b, count(mid)), coresScaling(b, mid)})
		}
	}
	if sc.cluster {
		// The log of a cluster without Kafka, next to kafka/kafka/100K-keys.
		mid := count(sc.kafkaKeys[len(sc.kafkaKeys)/2])
		out = append(out,
			scenario{"kafka/jetstream-1xR1/" + mid + "-keys", jetstreamThroughput(1, 1, sc.kafkaKeys[len(sc.kafkaKeys)/2])},
			scenario{"kafka/jetstream-3xR3/" + mid + "-keys", jetstreamThroughput(3, 3, sc.kafkaKeys[len(sc.kafkaKeys)/2])})
	}
	out = append(out,
		scenario{"ingest/http/batch-1000", httpThroughput(1000, true)},
		scenario{"ingest/http/batch-1000/no-ids", httpThroughput(1000, false)},
		scenario{"ingest/http-durable/batch-1000", httpDurable(1000)},
		scenario{"ingest/http/batch-100", httpThroughput(100, true)},
		scenario{"ingest/nats/batch-1000", natsThroughput(1000)},
		scenario{"ingest/nats-publish/batch-1000", natsPublish(1000)},
		scenario{"ingest/http/latency", httpLatency(100)},
		scenario{"ingest/http-durable/latency", httpLatencyDurable(100)},
		scenario{"ingest/http/latency/batch-1000", httpLatency(1000)},
		scenario{"ingest/http-durable/latency/batch-1000", httpLatencyDurable(1000)},
		scenario{"ingest/nats/latency", natsLatency},
		scenario{"memory/" + count(sc.memoryKeys) + "-keys", memory},
	)
	if sc.cluster {
		out = append(out,
			scenario{"cluster/routing", routing},
			scenario{"failover/kill-9", failover},
			scenario{"durable/kill-9-replay", durableReplay(sc.durableEvents)},
		)
	}
	return out
}

// count prints 10000 as 10K, 1000000 as 1M.
func count(n int) string {
	switch {
	case n >= 1_000_000 && n%1_000_000 == 0:
		return fmt.Sprintf("%dM", n/1_000_000)
	case n >= 1000 && n%1000 == 0:
		return fmt.Sprintf("%dK", n/1000)
	}
	return fmt.Sprint(n)
}

// fatal is what tb.Fatalf panics with.
type fatal string

// tb lets the servers of internal/kafkatest and internal/zktest, written
// for tests, run under the harness: Fatalf aborts the scenario, Cleanup
// runs when it ends. Other testing.TB methods are not used by them.
type tb struct {
	testing.TB // nil: only the methods below are called
	name       string
	log        io.Writer
	mu         sync.Mutex
	cleanups   []func()
	dirs       []string
	failed     bool
}

func (t *tb) Helper()      {}
func (t *tb) Name() string { return t.name }
func (t *tb) Failed() bool { t.mu.Lock(); defer t.mu.Unlock(); return t.failed }
func (t *tb) Logf(format string, args ...any) {
	fmt.Fprintf(t.log, t.name+": "+format+"\n", args...)
}
func (t *tb) Fatalf(format string, args ...any) {
	t.mu.Lock()
	t.failed = true
	t.mu.Unlock()
	panic(fatal(fmt.Sprintf(format, args...)))
}
func (t *tb) Fatal(args ...any) { t.Fatalf("%s", fmt.Sprint(args...)) }
func (t *tb) Cleanup(f func()) {
	t.mu.Lock()
	t.cleanups = append(t.cleanups, f)
	t.mu.Unlock()
}
func (t *tb) TempDir() string {
	d, err := os.MkdirTemp("", "squall-bench-")
	if err != nil {
		t.Fatalf("temp dir: %v", err)
	}
	t.mu.Lock()
	t.dirs = append(t.dirs, d)
	t.mu.Unlock()
	return d
}

func (t *tb) cleanup() {
	t.mu.Lock()
	cs, dirs := t.cleanups, t.dirs
	t.cleanups, t.dirs = nil, nil
	t.mu.Unlock()
	for i := len(cs) - 1; i >= 0; i-- {
		cs[i]()
	}
	for _, d := range dirs {
		os.RemoveAll(d)
	}
}
