// Command squall-bench runs Squall's benchmark scenarios (package bench)
// and prints one table row per scenario; -json and -svg also write the
// results and a chart of throughput and p99 latency against keys.
//
//	make bench         # full: kfake and a real broker, 10K/100K/1M keys, cluster, failover
//	make bench-quick   # about 30s: kfake, 10K/100K keys, ingest, memory at 100K keys
//	go run ./cmd/squall-bench -only 'kafka/kafka/100K-keys$' -cpuprofile cpu.pprof   # profile one scenario
//	go run ./cmd/squall-bench -only gomaxprocs   # the same Kafka → state at GOMAXPROCS 1 and 2, interleaved: the 2/1 ratio
//	go run ./cmd/squall-bench -only gomaxprocs -gomaxprocs 1 -cpuprofile cpu1.pprof   # profile one setting
//	make bench-peers   # peers: Squall, the baseline, Kafka Streams and Flink on one topic, 3 rounds
//	go run ./cmd/squall-bench -from docs/bench/peers.json -svg docs/bench/peers.svg   # redraw a report, run nothing
//	go run ./cmd/squall-bench -mode peers -peer-events 500000 -peer-rounds 1 -peers kafka-streams   # a quick look
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"regexp"
	"runtime/pprof"
	"strings"
	"syscall"

	"github.com/squallhq/squall/bench"
)

func main() {
	bench.ProducerChild() // when started as the Kafka latency scenario's producer
	mode := flag.String("mode", "full", "full, quick (about 30s), smoke (a few seconds) or peers (Squall against Kafka Streams and Flink)")
	only := flag.String("only", "", "run only the scenarios matching this regular expression")
	realKafka := flag.Bool("real-kafka", true, "full mode: run the Kafka scenarios against a real broker too (needs Java)")
	procs := flag.String("gomaxprocs", "1,2", "the GOMAXPROCS settings of the kafka/*/gomaxprocs scenarios, in the order of each round (one alone: to profile it)")
	nodeBin := flag.String("node-binary", "bin/squall-node", "squall-node binary for the failover scenario")
	jsonOut := flag.String("json", "", "write the results as JSON to this file")
	svgOut := flag.String("svg", "", "write the throughput/latency chart to this SVG file")
	from := flag.String("from", "", "run nothing: print the table of a report written by -json, and write its -svg, -table, -json")
	mdOut := flag.String("table", "", "also write the table to this file")
	compare := flag.String("compare", "", "compare with the results of an earlier -json file")
	commit := flag.String("commit", "", "commit id to record in the results")
	verbose := flag.Bool("v", false, "log the servers' and nodes' warnings to stderr")
	cpuProfile := flag.String("cpuprofile", "", "write a CPU profile of the whole run (in-process nodes included) to this file")
	memProfile := flag.String("memprofile", "", "write an allocation profile of the whole run to this file")
	peerEvents := flag.Int("peer-events", 5_000_000, "peers mode: events in the topic, consumed by each system in each round")
	peerKeys := flag.Int("peer-keys", 100_000, "peers mode: distinct keys")
	peerRounds := flag.Int("peer-rounds", 3, "peers mode: interleaved rounds (the table has their medians)")
	peerParts := flag.Int("peer-partitions", 12, "peers mode: partitions of the topic")
	peers := flag.String("peers", strings.Join(bench.AllPeers, ","), "peers mode: the systems to run, comma-separated")
	peersDir := flag.String("peers-dir", "bench/peers", "peers mode: the Maven project of the JVM peers, built (make bench-peers)")
	flag.Parse()

	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			fatal(err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			fatal(err)
		}
		defer pprof.StopCPUProfile()
	}

	opts := bench.Options{Mode: *mode, RealKafka: *realKafka && *mode == "full", NodeBinary: *nodeBin, Progress: os.Stderr}
	if *verbose {
		opts.Log = os.Stderr
	}
	ps, err := bench.ParseProcs(*procs)
	if err != nil {
		fatal(fmt.Errorf("-gomaxprocs: %w", err))
	}
	opts.Procs = ps
	if *only != "" {
		re, err := regexp.Compile(*only)
		if err != nil {
			fatal(fmt.Errorf("-only: %w", err))
		}
		opts.Only = re
	}
	if _, err := os.Stat(*nodeBin); err != nil {
		opts.NodeBinary = ""
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	var rep *bench.Report
	if *from != "" {
		in, err := os.Open(*from)
		if err != nil {
			fatal(err)
		}
		rep, err = bench.ReadJSON(in)
		in.Close()
		if err != nil {
			fatal(fmt.Errorf("-from: %w", err))
		}
		*commit = rep.Commit
	} else if *mode == "peers" {
		rep, err = bench.RunPeers(ctx, bench.PeerOptions{Events: *peerEvents, Keys: *peerKeys, Partitions: *peerParts,
			Rounds: *peerRounds, Systems: strings.Split(*peers, ","), Dir: *peersDir, Progress: opts.Progress, Log: opts.Log})
	} else {
		rep, err = bench.Run(ctx, opts)
	}
	if err != nil && rep == nil {
		fatal(err)
	}
	rep.Commit = *commit
	if *cpuProfile != "" {
		pprof.StopCPUProfile()
	}
	if *memProfile != "" {
		write := func(f *os.File) error { return pprof.Lookup("allocs").WriteTo(f, 0) }
		out, err := os.Create(*memProfile)
		if err != nil {
			fatal(err)
		}
		if err := write(out); err != nil {
			fatal(err)
		}
		out.Close()
	}
	if err := rep.WriteTable(os.Stdout); err != nil {
		fatal(err)
	}
	write := func(path string, f func(*os.File) error) {
		if path == "" {
			return
		}
		out, err := os.Create(path)
		if err != nil {
			fatal(err)
		}
		if err := f(out); err != nil {
			fatal(err)
		}
		if err := out.Close(); err != nil {
			fatal(err)
		}
	}
	write(*jsonOut, func(f *os.File) error { return rep.WriteJSON(f) })
	write(*svgOut, func(f *os.File) error { return rep.WriteSVG(f) })
	write(*mdOut, func(f *os.File) error { return rep.WriteTable(f) })
	if *compare != "" {
		in, err := os.Open(*compare)
		if err != nil {
			fatal(err)
		}
		old, err := bench.ReadJSON(in)
		in.Close()
		if err != nil {
			fatal(err)
		}
		if err := bench.Compare(os.Stdout, old, rep); err != nil {
			fatal(err)
		}
	}
	failed := 0
	for _, r := range rep.Results {
		if r.Err != "" {
			failed++
		}
	}
	if err != nil {
		fatal(err)
	}
	if failed > 0 {
		fmt.Fprintf(os.Stderr, "squall-bench: %d scenario(s) failed\n", failed)
		os.Exit(1)
	}
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "squall-bench:", err)
	os.Exit(2)
}
