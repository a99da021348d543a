package bench

import (
	"context"
	"fmt"
	"runtime"
	"runtime/metrics"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"time"
)

// DefaultProcs are the GOMAXPROCS settings of the cores scenarios
// (kafka/<broker>/100K-keys/gomaxprocs), in the order of each round.
var DefaultProcs = []int{1, 2}

// ParseProcs reads a comma-separated list of GOMAXPROCS settings, e.g.
// "1,2": each at least 1, none twice.
func ParseProcs(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			return nil, fmt.Errorf("GOMAXPROCS %q: want a number of at least 1", f)
		}
		if slices.Contains(out, n) {
			return nil, fmt.Errorf("GOMAXPROCS %d given twice", n)
		}
		out = append(out, n)
	}
	return out, nil
}

// procsRow is the row of setting procs of cores scenario name:
// kafka/kafka/100K-keys/gomaxprocs-2.
func procsRow(name string, procs int) string { return name + "-" + strconv.Itoa(procs) }

// coresScaling: the events of kafkaThroughput (n over keys keys, with ids)
// preloaded once, then consumed from the start by the baseline and by a
// fresh node (a new consumer group) with GOMAXPROCS at each of the run's
// settings in turn, for sc.coreRounds rounds (1,2,1,2,...): one row per
// setting with the medians of its rounds. The node runs in this process:
// runtime.GOMAXPROCS limits it (franz-go, the source and partition
// actors, the collector) and not a real broker, whose JVM is a process of
// its own, preloaded before the timed part and measured beside the node.
// kfake is in this process, so the setting limits it too.
func coresScaling(kind string, keys int) func(r *run) ([]Result, error) {
	return func(r *run) ([]Result, error) {
		procs := r.Procs
		if len(procs) == 0 {
			procs = DefaultProcs
		}
		n := max(r.sc.kafkaEvents, 3*keys)
		b := r.startBroker(kind)
		var size int
		pprof.Do(context.Background(), pprof.Labels("phase", "preload"), func(context.Context) {
			size, _ = r.preload(b, keys, n, true)
		})
		nodes, bases, rts := map[int][]peerSample{}, map[int][]peerSample{}, map[int][]goCPU{}
		for round := range r.sc.coreRounds {
			for _, p := range procs {
				r.status("round %d/%d: GOMAXPROCS %d", round+1, r.sc.coreRounds, p)
				nd, bs, rt, err := r.coresPass(b, n, p)
				if err != nil {
					return nil, fmt.Errorf("round %d, GOMAXPROCS %d: %w", round+1, p, err)
				}
				fmt.Fprintf(r.tb.log, "%s: round %d GOMAXPROCS %d: node %.0f events/s (%.2f µs CPU/event, broker %v), baseline %.0f\n",
					r.name, round+1, p, nd.perSec(), float64(nd.cpu.Nanoseconds())/1e3/float64(nd.events), nd.broker, bs.perSec())
				nodes[p] = append(nodes[p], nd)
				bases[p] = append(bases[p], bs)
				rts[p] = append(rts[p], rt)
			}
		}
		setup := Setup{Keys: keys, EventBytes: size, Partitions: kafkaPartitions, Nodes: 1, Cores: runtime.NumCPU(),
			Broker: b.label, Events: n, IDs: idsLabel(true)}
		return coreRows(r.name, kind, procs, nodes, bases, rts, setup), nil
	}
}

// coresPass runs the baseline, then a node, over the topic's n events with
// GOMAXPROCS procs, and restores the setting. Their goroutines carry the
// pprof labels phase=baseline or phase=squall and gomaxprocs=procs (the
// preload's phase=preload; the runtime's, such as the collector's mark
// workers, none). rt is the Go runtime's account of the node's whole pass.
func (r *run) coresPass(b *broker, n, procs int) (node, base peerSample, rt goCPU, err error) {
	prev := runtime.GOMAXPROCS(procs)
	defer runtime.GOMAXPROCS(prev)
	ps := strconv.Itoa(procs)
	pprof.Do(context.Background(), pprof.Labels("phase", "baseline", "gomaxprocs", ps), func(context.Context) {
		base, _, err = r.baselinePass(b.addr, benchTopic, kafkaPartitions, n, &meter{broker: b.pid})
	})
	if err != nil {
		return node, base, rt, fmt.Errorf("baseline: %w", err)
	}
	group := fmt.Sprintf("bench-cores-%d", time.Now().UnixNano())
	// Both passes end with a collection, which brings the runtime's CPU
	// account up to date: rt covers the node's pass exactly.
	rt0 := readGoCPU()
	pprof.Do(context.Background(), pprof.Labels("phase", "squall", "gomaxprocs", ps), func(context.Context) {
		node, _, err = r.squallPass(context.Background(), b.addr, benchTopic, group, n, false, &meter{broker: b.pid})
	})
	return node, base, readGoCPU().sub(rt0), err
}

// goCPU is the Go runtime's account of its Ps' time (runtime/metrics
// /cpu/classes/..., in seconds of a P): updated at each collection only.
type goCPU struct {
	total, gc, idle float64
}

// goCPUMetrics are the runtime/metrics goCPU reads, in its fields' order.
var goCPUMetrics = []string{"/cpu/classes/total:cpu-seconds", "/cpu/classes/gc/total:cpu-seconds", "/cpu/classes/idle:cpu-seconds"}

// readGoCPU reads the runtime's account (zeros where a metric is missing).
func readGoCPU() goCPU {
	s := make([]metrics.Sample, len(goCPUMetrics))
	for i, name := range goCPUMetrics {
		s[i].Name = name
	}
	metrics.Read(s)
	v := func(i int) float64 {
		if s[i].Value.Kind() != metrics.KindFloat64 {
			return 0
		}
		return s[i].Value.Float64()
	}
	return goCPU{total: v(0), gc: v(1), idle: v(2)}
}

func (c goCPU) sub(o goCPU) goCPU { return goCPU{c.total - o.total, c.gc - o.gc, c.idle - o.idle} }

// goCPUFigure gives the shares of the Ps' time the collector and idleness
// took over the node's passes (summed).
func goCPUFigure(rts []goCPU) Figure {
	var sum goCPU
	for _, c := range rts {
		sum.total, sum.gc, sum.idle = sum.total+c.total, sum.gc+c.gc, sum.idle+c.idle
	}
	if sum.total <= 0 {
		return Figure{"Ps' time", "unknown"}
	}
	return Figure{"Ps' time", fmt.Sprintf("collector %.0f%%, idle %.0f%%, the rest goroutines running "+
		"(runtime/metrics over the node's whole passes, start and the first tenth included)", 100*sum.gc/sum.total, 100*sum.idle/sum.total)}
}

// coreRows makes the rows of cores scenario name: one per setting of
// procs with the medians of its rounds; every row but the lowest
// setting's is compared with it (the node's ratio through relate, the
// baseline's as a figure).
func coreRows(name, kind string, procs []int, nodes, bases map[int][]peerSample, rts map[int][]goCPU, setup Setup) []Result {
	low := slices.Min(procs)
	lowBase := statsOf(bases[low]).perSec
	var rows []Result
	for _, p := range procs {
		res := Result{Scenario: procsRow(name, p), Group: "kafka", Setup: setup, AllocsPerEvent: -1}
		res.Setup.GOMAXPROCS = p
		if len(nodes[p]) == 0 {
			res.Err = "no round completed"
			rows = append(rows, res)
			continue
		}
		st, bs := statsOf(nodes[p]), statsOf(bases[p])
		res.EventsPerSec, res.BaselinePerSec, res.Duration, res.RSSBytes = st.perSec, bs.perSec, st.wall, st.rss
		res.Figures = append(res.Figures,
			Figure{"GOMAXPROCS", procsNote(kind, p)},
			Figure{"node CPU", fmt.Sprintf("%.2f µs/event, %.2f cores (%.2f s over %.2f s timed)",
				st.cpuUS, st.cpu.Seconds()/st.wall.Seconds(), st.cpu.Seconds(), st.wall.Seconds())})
		if kind != "kfake" {
			res.Figures = append(res.Figures, Figure{"broker CPU", fmt.Sprintf("%.2f s over the timed part (%.2f cores, %.2f µs/event)",
				st.broker.Seconds(), st.broker.Seconds()/st.wall.Seconds(), st.brokerUS)})
		}
		res.Figures = append(res.Figures,
			Figure{"rounds", strings.Join(st.rounds, ", ") + " events/s (baseline " + strings.Join(bs.rounds, ", ") + ")"},
			goCPUFigure(rts[p]), stealFigure(machineCPU{}, st.steal))
		if p != low {
			res.versus = procsRow(name, low)
			if lowBase > 0 && bs.perSec > 0 {
				res.Figures = append(res.Figures, Figure{"baseline vs GOMAXPROCS " + strconv.Itoa(low),
					fmt.Sprintf("%.2f× its throughput, same run", bs.perSec/lowBase)})
			}
		}
		rows = append(rows, res)
	}
	return rows
}

// procsNote says what GOMAXPROCS procs limited.
func procsNote(kind string, procs int) string {
	s := strconv.Itoa(procs) + ", set with runtime.GOMAXPROCS in the harness process around each pass (the node and the baseline run in it)"
	if kind == "kfake" {
		return s + "; kfake is in it too: the setting limits the broker as well, and its CPU is in the node's"
	}
	return s + "; the broker's JVM is a process of its own, not limited, topic preloaded before the timed part"
}
