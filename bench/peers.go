package bench

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/squallhq/squall/event"
	"github.com/squallhq/squall/internal/kafkatest"
	"github.com/squallhq/squall/node"
	"github.com/squallhq/squall/window"
)

// The systems RunPeers compares, in the order of each round.
const (
	PeerSquall          = "squall"
	PeerBaseline        = "baseline"
	PeerStreams         = "kafka-streams"
	PeerStreamsLogged   = "kafka-streams-changelog"
	PeerFlink           = "flink"
	peersTopic          = "peer-events"
	peerLinePrefix      = "squall-peer processed "
	peerTimeout         = 20 * time.Minute // one system's pass over the topic, JVM start included
	peerDigestTimeout   = 3 * time.Minute  // from a JVM peer's last record to its digest line
	peerHeap            = "-Xmx4g"         // every peer JVM's maximum heap
	peerModuleJarSuffix = "-1.jar"         // bench/peers/<module>/target/peers-<module>-1.jar
)

// AllPeers lists every system RunPeers knows, in the order of a round.
var AllPeers = []string{PeerSquall, PeerBaseline, PeerStreams, PeerStreamsLogged, PeerFlink}

// PeerOptions configure RunPeers.
type PeerOptions struct {
	// Events is how many events are preloaded and consumed by each system
	// in each round. Default 5,000,000.
	Events int
	// Keys is how many distinct keys the events spread over. Default 100,000.
	Keys int
	// Partitions of the topic. Default 12.
	Partitions int
	// Rounds is how many times every system consumes the topic; rounds
	// are interleaved (each round runs every system once). Default 3.
	Rounds int
	// Systems to run, among AllPeers. Default: all of them.
	Systems []string
	// Dir is bench/peers, whose modules make bench-peers has built
	// (<module>/target/*.jar and target/lib/). Needed for the JVM peers.
	Dir string
	// Java is the java command. Default "java".
	Java string
	// Progress receives the progress line (nil: none).
	Progress io.Writer
	// Log receives the harness's and the peers' messages (nil: discarded).
	Log io.Writer
}

func (o *PeerOptions) defaults() {
	if o.Events <= 0 {
		o.Events = 5_000_000
	}
	if o.Keys <= 0 {
		o.Keys = 100_000
	}
	if o.Partitions <= 0 {
		o.Partitions = 12
	}
	if o.Rounds <= 0 {
		o.Rounds = 3
	}
	if len(o.Systems) == 0 {
		o.Systems = AllPeers
	}
	if o.Java == "" {
		o.Java = "java"
	}
}

// peerSample is one system's pass over the topic, timed from the first
// tenth of the records processed to the last.
type peerSample struct {
	events int           // records covered by the measurement
	wall   time.Duration // from the mark to the last record
	cpu    time.Duration // CPU time of the system's process over wall
	broker time.Duration // CPU time of the broker over wall
	steal  machineCPU    // the machine's CPU and steal over wall
	rss    int64         // the system's process's resident set size at the end
	digest peerDigest    // the system's state at the end, as checked
}

func (s peerSample) perSec() float64 { return float64(s.events) / s.wall.Seconds() }

// meter takes a peerSample's measurements: start at the mark, stop at the
// last record.
type meter struct {
	pid    int // the system's process; 0: this one
	broker int // the broker's JVM
	from   time.Time
	cpu0   time.Duration
	brk0   time.Duration
	m0     machineCPU
}

func (m *meter) cpu() time.Duration {
	if m.pid == 0 {
		return sampleCPU(0).self
	}
	return procCPU(m.pid)
}

// start begins the measurement of the events records still to come.
func (m *meter) start() {
	m.from, m.cpu0, m.brk0, m.m0 = time.Now(), m.cpu(), procCPU(m.broker), sampleMachine()
}

// stop ends it and returns the sample of events records.
func (m *meter) stop(events int) peerSample {
	m1 := sampleMachine()
	pid := "self"
	if m.pid != 0 {
		pid = strconv.Itoa(m.pid)
	}
	return peerSample{events: events, wall: time.Since(m.from), cpu: m.cpu() - m.cpu0, broker: procCPU(m.broker) - m.brk0,
		steal: machineCPU{total: m1.total - m.m0.total, steal: m1.steal - m.m0.steal}, rss: procRSS(pid)}
}

// RunPeers compares Squall with the franz-go baseline, Kafka Streams and
// Flink: one Kafka broker, one topic preloaded with o.Events JSON events
// (snappy), and o.Rounds interleaved rounds in which each system consumes
// the whole topic from the beginning doing the same per-key work. The
// report has one row per system with the medians of the rounds.
func RunPeers(ctx context.Context, o PeerOptions) (*Report, error) {
	o.defaults()
	for _, s := range o.Systems {
		if !slices.Contains(AllPeers, s) {
			return nil, fmt.Errorf("bench: peer %q: want one of %s", s, strings.Join(AllPeers, ", "))
		}
	}
	logw := o.Log
	if logw == nil {
		logw = io.Discard
	}
	rep := &Report{Started: time.Now().UTC(), Machine: ThisMachine(), Mode: "peers"}
	r := &run{Options: &Options{Mode: "peers", Progress: o.Progress, Log: o.Log}, name: "peers",
		log: slog.New(slog.NewTextHandler(logw, &slog.HandlerOptions{Level: slog.LevelWarn}))}
	r.tb = &tb{name: "peers", log: logw}
	if o.Progress != nil {
		r.prog = StartProgress(o.Progress, "peers", r.progress, 500*time.Millisecond)
		defer r.prog.Stop()
	}
	rows, err := r.execute(scenario{"peers", func(r *run) ([]Result, error) { return r.peers(ctx, &o) }})
	rep.Results = rows
	return rep, err
}

func (r *run) peers(ctx context.Context, o *PeerOptions) ([]Result, error) {
	r.status("starting a Kafka broker")
	kb := kafkatest.Start(r.tb, kafkatest.Env("KAFKA_GC=parallel"))
	kb.CreateTopic(r.tb, peersTopic, int32(o.Partitions))
	model := newPeerModel()
	size := r.produce(kb.Addr(), peersTopic, o.Keys, o.Events, peerStream(o.Keys, model), nil,
		kgo.ProducerBatchCompression(kgo.SnappyCompression()))
	fmt.Fprintf(r.tb.log, "peers: every system must report the digest %v\n", model.expected())
	samples := map[string][]peerSample{}
	errs := map[string]error{}
	setup := Setup{Keys: o.Keys, EventBytes: size, Partitions: o.Partitions, Nodes: 1, Cores: runtime.NumCPU(),
		Broker: "kafka 4.4.0", Events: o.Events}
	for round := range o.Rounds {
		for _, sys := range o.Systems {
			if err := ctx.Err(); err != nil {
				return peerRows(o.Systems, samples, errs, setup), err // the rounds so far
			}
			if errs[sys] != nil {
				continue // failed in an earlier round
			}
			r.status("round %d/%d: %s", round+1, o.Rounds, sys)
			group := fmt.Sprintf("peer-%s-%d", sys, time.Now().UnixNano())
			s, d, err := r.peerPass(ctx, o, sys, kb.Addr(), group, kb.Pid())
			if err == nil {
				err = model.check(d)
			}
			if err != nil {
				errs[sys] = fmt.Errorf("round %d: %w", round+1, err)
				fmt.Fprintf(r.tb.log, "peers: round %d %s: %v\n", round+1, sys, err)
				continue
			}
			fmt.Fprintf(r.tb.log, "peers: round %d %s: digest %v: as expected\n", round+1, sys, d)
			s.digest = d
			fmt.Fprintf(r.tb.log, "peers: round %d %s: %.0f events/s, %.2f µs CPU/event\n",
				round+1, sys, s.perSec(), float64(s.cpu.Microseconds())/float64(s.events))
			samples[sys] = append(samples[sys], s)
		}
	}
	return peerRows(o.Systems, samples, errs, setup), nil
}

// peerPass runs one system over the whole topic, measures it and returns
// the digest of its state at the end.
func (r *run) peerPass(ctx context.Context, o *PeerOptions, sys, addr, group string, broker int) (peerSample, peerDigest, error) {
	m := &meter{broker: broker}
	switch sys {
	case PeerSquall:
		return r.squallPass(ctx, addr, peersTopic, group, o.Events, true, m)
	case PeerBaseline:
		return r.baselinePass(addr, peersTopic, o.Partitions, o.Events, m)
	}
	var module string
	var args []string
	n := strconv.Itoa(o.Events)
	switch sys {
	case PeerStreams:
		module, args = "kafka-streams", []string{"squall.peers.streams.Main", addr, peersTopic, n, group, "no-changelog", "2"}
	case PeerStreamsLogged:
		module, args = "kafka-streams", []string{"squall.peers.streams.Main", addr, peersTopic, n, group, "changelog", "2"}
	case PeerFlink:
		module, args = "flink", []string{"squall.peers.flink.Main", addr, peersTopic, n, group, "2"}
	}
	target := filepath.Join(o.Dir, module, "target")
	jar := filepath.Join(target, "peers-"+module+peerModuleJarSuffix)
	if _, err := os.Stat(jar); err != nil {
		return peerSample{}, peerDigest{}, fmt.Errorf("%s not built (make bench-peers builds it): %w", jar, err)
	}
	cp := jar + string(os.PathListSeparator) + filepath.Join(target, "lib", "*")
	// The JVM's temporary files (Kafka Streams' state directory, Flink's
	// blobs and spill files) go to a directory removed after the run.
	jargs := append([]string{peerHeap, "-Djava.io.tmpdir=" + r.tb.TempDir(), "-cp", cp}, args...)
	if sys == PeerFlink {
		// Flink's own classes reach into the JDK's internals.
		jargs = append([]string{"--add-opens=java.base/java.util=ALL-UNNAMED", "--add-opens=java.base/java.lang=ALL-UNNAMED"}, jargs...)
	}
	return r.jvmPass(ctx, o, sys, m, o.Java, jargs)
}

// squallPass starts a node (defaults, a fresh consumer group) on the
// topic's n events and measures it until it has applied every one; then,
// with digest, it reads the digest of the node's keys. The node is closed
// before it returns.
func (r *run) squallPass(ctx context.Context, addr, topic, group string, n int, digest bool, m *meter) (peerSample, peerDigest, error) {
	mark := int64(n / 10)
	var applied atomic.Int64
	var s peerSample
	var rest int
	done := make(chan struct{})
	var mu sync.Mutex // orders the mark's samples before the end's (different partitions' goroutines)
	nd := r.startNodeWith(nil, 0, group, func(evs []event.Event) {
		a := applied.Add(int64(len(evs)))
		if a-int64(len(evs)) < mark && a >= mark {
			mu.Lock()
			m.start()
			rest = n - int(a)
			mu.Unlock()
		}
		if a-int64(len(evs)) < int64(n) && a >= int64(n) {
			mu.Lock()
			defer mu.Unlock()
			s = m.stop(rest)
			close(done)
		}
	}, func(c *node.Config) {
		c.KafkaBrokers, c.KafkaTopic, c.KafkaGroup = addr, topic, group
	})
	err := r.waitApplied(done, &applied, n)
	var d peerDigest
	if err == nil && digest {
		r.status("squall: reading the digest of its keys")
		d, err = squallDigest(ctx, nd, n)
	}
	_ = nd.Close()
	runtime.GC() // the node's windows are garbage now
	return s, d, err
}

// baselinePass runs the franz-go baseline loop over the n events of the
// topic's partitions and returns the digest of its windows.
func (r *run) baselinePass(addr, topic string, partitions, n int, m *meter) (peerSample, peerDigest, error) {
	rest := -1
	wins, err := r.consumeBaseline(addr, topic, partitions, n, window.DefaultShape(), func(got int) {
		if rest < 0 && got >= n/10 {
			m.start()
			rest = n - got
		}
	})
	if err != nil {
		return peerSample{}, peerDigest{}, err
	}
	s := m.stop(rest)
	d := windowsDigest(wins, n)
	runtime.GC() // the baseline's windows are garbage now
	return s, d, nil
}

// jvmPass runs a peer JVM and reads its "processed N" lines: the first
// (a tenth of the records) starts the measurement and a sample of the
// JVM's CPU time, the one with every record ends it; then it waits (at
// most peerDigestTimeout) for the peer's digest line, and kills the JVM.
func (r *run) jvmPass(ctx context.Context, o *PeerOptions, sys string, m *meter, java string, args []string) (peerSample, peerDigest, error) {
	ctx, cancel := context.WithTimeout(ctx, peerTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, java, args...)
	logf, err := os.CreateTemp("", "squall-peer-*.log")
	if err != nil {
		return peerSample{}, peerDigest{}, err
	}
	defer os.Remove(logf.Name())
	defer logf.Close()
	cmd.Stderr = logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return peerSample{}, peerDigest{}, err
	}
	if err := cmd.Start(); err != nil {
		return peerSample{}, peerDigest{}, err
	}
	m.pid = cmd.Process.Pid
	defer func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	}()
	rest := -1
	var s peerSample
	done := false // every record processed: s is the sample
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		line := sc.Text()
		fmt.Fprintln(logf, line)
		if done {
			d, ok, err := parsePeerDigest(line)
			if ok {
				return s, d, err
			}
			continue
		}
		got, ok := parsePeerLine(line)
		if !ok {
			continue
		}
		if got >= int64(o.Events) {
			if rest < 0 {
				return peerSample{}, peerDigest{}, errors.New("the peer reported every record without the first tenth")
			}
			s, done = m.stop(rest), true
			r.status("%s: waiting for its digest", sys)
			// The scan ends when the JVM does: kill it if it has no
			// digest to say in time.
			t := time.AfterFunc(peerDigestTimeout, func() { _ = cmd.Process.Kill() })
			defer t.Stop()
			continue
		}
		m.start()
		rest = o.Events - int(got)
		r.status("%s: a tenth of the records processed", sys)
	}
	_ = cmd.Process.Kill()
	werr := cmd.Wait()
	what := "before processing every record"
	if done {
		what = "without printing its digest (within " + peerDigestTimeout.String() + " of its last record)"
	}
	return peerSample{}, peerDigest{}, fmt.Errorf("the peer ended %s (%v; %v): %s", what, werr, ctx.Err(), tail(logf.Name(), 2000))
}

// parsePeerLine reads a peer's "squall-peer processed N" line.
func parsePeerLine(line string) (int64, bool) {
	v, ok := strings.CutPrefix(strings.TrimSpace(line), peerLinePrefix)
	if !ok {
		return 0, false
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n <= 0 {
		return 0, false
	}
	return n, true
}

// tail returns the last max bytes of a file.
func tail(path string, max int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	if len(b) > max {
		b = b[len(b)-max:]
	}
	return string(b)
}

// sampleStats sums up the rounds of one system: medians, and the steal
// over all of them.
type sampleStats struct {
	perSec    float64       // events/s
	cpuUS     float64       // CPU of the system's process per event, µs
	brokerUS  float64       // CPU of the broker per event, µs
	cpu       time.Duration // CPU of the system's process over the measurement
	broker    time.Duration // CPU of the broker over the measurement
	wall      time.Duration // the measurement's length
	rss       int64         // the system's process's resident set size at the end
	steal     machineCPU    // the machine's CPU and steal, summed over the rounds
	rounds    []string      // each round's events/s, in the order run
	perSecAll []float64     // each round's events/s, in the order run
}

// statsOf sums up samples (zero for none).
func statsOf(samples []peerSample) sampleStats {
	var st sampleStats
	var cpus, brokers, cpuS, brokerS, walls, rsss []float64
	for _, s := range samples {
		st.rounds = append(st.rounds, siNum(s.perSec()))
		st.perSecAll = append(st.perSecAll, s.perSec())
		cpus = append(cpus, float64(s.cpu.Nanoseconds())/1e3/float64(s.events))
		brokers = append(brokers, float64(s.broker.Nanoseconds())/1e3/float64(s.events))
		cpuS = append(cpuS, s.cpu.Seconds())
		brokerS = append(brokerS, s.broker.Seconds())
		walls = append(walls, s.wall.Seconds())
		rsss = append(rsss, float64(s.rss))
		st.steal.total += s.steal.total
		st.steal.steal += s.steal.steal
	}
	sec := func(xs []float64) time.Duration { return time.Duration(median(xs) * float64(time.Second)) }
	st.perSec, st.cpuUS, st.brokerUS = median(st.perSecAll), median(cpus), median(brokers)
	st.cpu, st.broker, st.wall, st.rss = sec(cpuS), sec(brokerS), sec(walls), int64(median(rsss))
	return st
}

// median returns the median of xs (the mean of the middle two for an even
// count), or 0.
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// peerWork says what each system does per event, for the table.
var peerWork = map[string]string{
	PeerSquall:        "a node with defaults: its window (1s buckets over 10 min, count/sum/min/max/last, raw values for quantiles, dedup by id, last 32 events)",
	PeerBaseline:      "one goroutine, franz-go, Squall's decoder and window in a Go map: no node around them",
	PeerStreams:       "Processor API, 2 stream threads, in-memory store without changelog; the window (de)serialised on every get/put",
	PeerStreamsLogged: "as kafka-streams, with the store's changelog topic and the record cache in front of it",
	PeerFlink:         "local MiniCluster, parallelism 2, heap state backend, KafkaSource → keyBy (serialised shuffle) → KeyedProcessFunction",
}

// peerRows makes the report's rows: one per system with the medians of
// its rounds, its CPU per event and Squall's throughput over its own.
func peerRows(systems []string, samples map[string][]peerSample, errs map[string]error, setup Setup) []Result {
	squall := statsOf(samples[PeerSquall]).perSec
	var rows []Result
	for _, sys := range systems {
		res := Result{Scenario: "peers/" + sys, Group: "peers", Setup: setup, AllocsPerEvent: -1}
		ss := samples[sys]
		if len(ss) == 0 {
			res.Err = "no round completed"
			if errs[sys] != nil {
				res.Err = errs[sys].Error()
			}
			rows = append(rows, res)
			continue
		}
		st := statsOf(ss)
		res.EventsPerSec = st.perSec
		if sys == PeerSquall {
			res.BaselinePerSec = statsOf(samples[PeerBaseline]).perSec
		}
		res.Duration = st.wall
		// For squall and the baseline, the harness's process: the broker's
		// client buffers and the Go heap left by earlier passes included.
		res.RSSBytes = st.rss
		res.Rounds, res.CPUPerEvent, res.BrokerCPUPerEvent = st.perSecAll, st.cpuUS, st.brokerUS
		res.Figures = append(res.Figures,
			Figure{"CPU/event", fmt.Sprintf("%.2f µs (%.2f cores)", st.cpuUS, st.cpuUS*res.EventsPerSec/1e6)},
			Figure{"broker CPU/event", fmt.Sprintf("%.2f µs", st.brokerUS)},
			Figure{"rounds", strings.Join(st.rounds, ", ") + " events/s"})
		if sys != PeerSquall && squall > 0 {
			res.Figures = append(res.Figures, Figure{"Squall ÷ this", fmt.Sprintf("%.2f×", squall/res.EventsPerSec)})
		}
		res.Figures = append(res.Figures, stealFigure(machineCPU{}, st.steal), Figure{"work", peerWork[sys]},
			Figure{"checked", "every round's digest as expected; the last: " + ss[len(ss)-1].digest.String()})
		if errs[sys] != nil {
			res.Figures = append(res.Figures, Figure{"failed", errs[sys].Error()})
		}
		rows = append(rows, res)
	}
	return rows
}
