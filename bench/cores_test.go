package bench

import (
	"reflect"
	"runtime"
	"strings"
	"testing"
	"time"
)

func TestParseProcs(t *testing.T) {
	for _, c := range []struct {
		in   string
		want []int
	}{
		{"1,2", []int{1, 2}},
		{" 2 , 1 ", []int{2, 1}},
		{"4", []int{4}},
		{"1,2,8", []int{1, 2, 8}},
	} {
		got, err := ParseProcs(c.in)
		if err != nil || !reflect.DeepEqual(got, c.want) {
			t.Errorf("ParseProcs(%q) = %v, %v; want %v", c.in, got, err, c.want)
		}
	}
	for _, in := range []string{"", "0", "-1", "1,1", "1,,2", "two", "1.5"} {
		if got, err := ParseProcs(in); err == nil {
			t.Errorf("ParseProcs(%q) = %v, want an error", in, got)
		}
	}
}

// coreSample is a pass of 1M events at perSec, using cpuUS of this
// process's CPU and brokerUS of the broker's per event.
func coreSample(perSec, cpuUS, brokerUS float64) peerSample {
	n := 1_000_000
	return peerSample{events: n, wall: time.Duration(float64(n) / perSec * float64(time.Second)),
		cpu: time.Duration(cpuUS * float64(n) * 1e3), broker: time.Duration(brokerUS * float64(n) * 1e3),
		steal: machineCPU{total: 1000, steal: 20}}
}

func TestCoreRows(t *testing.T) {
	const name = "kafka/kafka/100K-keys/gomaxprocs"
	nodes := map[int][]peerSample{
		1: {coreSample(400_000, 2.5, 0.2), coreSample(500_000, 2, 0.2), coreSample(450_000, 2.2, 0.4)},
		2: {coreSample(700_000, 2.6, 0.3), coreSample(675_000, 2.8, 0.3), coreSample(720_000, 2.7, 0.3)},
	}
	bases := map[int][]peerSample{
		1: {coreSample(300_000, 3, 0), coreSample(300_000, 3, 0), coreSample(320_000, 3, 0)},
		2: {coreSample(330_000, 3, 0), coreSample(360_000, 3, 0), coreSample(345_000, 3, 0)},
	}
	setup := Setup{Keys: 100_000, EventBytes: 97, Partitions: 16, Nodes: 1, Cores: 2, Broker: "kafka 4.4.0", Events: 3_000_000, IDs: "on"}
	rts := map[int][]goCPU{1: {{total: 10, gc: 2, idle: 0}, {total: 10, gc: 1, idle: 1}}}
	rows := coreRows(name, "kafka", []int{1, 2}, nodes, bases, rts, setup)
	if len(rows) != 2 || rows[0].Scenario != name+"-1" || rows[1].Scenario != name+"-2" {
		t.Fatalf("rows %+v", rows)
	}
	relate(rows)
	fig := func(r Result, name string) string {
		for _, f := range r.Figures {
			if f.Name == name {
				return f.Value
			}
		}
		return ""
	}
	one, two := rows[0], rows[1]
	if int(one.EventsPerSec) != 450_000 || int(two.EventsPerSec) != 700_000 || int(one.BaselinePerSec) != 300_000 || int(two.BaselinePerSec) != 345_000 {
		t.Errorf("events/s %v / %v, baselines %v / %v; want the medians 450K / 700K, 300K / 345K",
			one.EventsPerSec, two.EventsPerSec, one.BaselinePerSec, two.BaselinePerSec)
	}
	if got := fig(two, "vs "+name+"-1"); got != "1.56× its throughput, same run" {
		t.Errorf("ratio figure %q", got)
	}
	if got := fig(two, "baseline vs GOMAXPROCS 1"); got != "1.15× its throughput, same run" {
		t.Errorf("baseline ratio figure %q", got)
	}
	if fig(one, "vs "+name+"-1") != "" || fig(one, "baseline vs GOMAXPROCS 1") != "" {
		t.Errorf("the GOMAXPROCS 1 row compares with itself: %+v", one.Figures)
	}
	// Medians of the rounds: CPU 2.2 µs/event; the broker 0.2 µs/event
	// and 0.2 s (of the rounds' 0.2, 0.2 and 0.4 s).
	if got := fig(one, "node CPU"); !strings.HasPrefix(got, "2.20 µs/event, ") {
		t.Errorf("node CPU %q", got)
	}
	if got := fig(one, "broker CPU"); !strings.HasPrefix(got, "0.20 s over the timed part") || !strings.HasSuffix(got, "0.20 µs/event)") {
		t.Errorf("broker CPU %q", got)
	}
	if got := fig(one, "rounds"); got != "400K, 500K, 450K events/s (baseline 300K, 300K, 320K)" {
		t.Errorf("rounds %q", got)
	}
	if got := fig(one, "Ps' time"); !strings.HasPrefix(got, "collector 15%, idle 5%, ") {
		t.Errorf("Ps' time %q", got)
	}
	if got := fig(two, "Ps' time"); got != "unknown" {
		t.Errorf("Ps' time without an account: %q", got)
	}
	runtime.GC() // the account is brought up to date by collections
	if got := readGoCPU(); got.total <= 0 || got.gc < 0 || got.idle < 0 {
		t.Errorf("readGoCPU = %+v", got)
	}
	if got := fig(two, "steal"); !strings.HasPrefix(got, "2.0%") {
		t.Errorf("steal %q", got)
	}
	if !strings.Contains(fig(one, "GOMAXPROCS"), "broker's JVM is a process of its own, not limited") {
		t.Errorf("GOMAXPROCS note %q", fig(one, "GOMAXPROCS"))
	}
	if got := setupString(&two); got != "100K keys · 97 B · 16 parts · 2 cores · GOMAXPROCS 2 · kafka 4.4.0 · ids · 3M events" {
		t.Errorf("setup %q", got)
	}
	if setup.GOMAXPROCS != 0 {
		t.Error("coreRows changed the setup it was given")
	}

	// kfake is limited by the setting: no broker CPU of its own, and the
	// note says so. A setting without a completed round is an error row,
	// and the ratio is against the lowest setting whatever the order.
	rows = coreRows("kafka/kfake/100K-keys/gomaxprocs", "kfake", []int{4, 2, 1}, map[int][]peerSample{2: nodes[2], 1: nodes[1]}, bases, nil, setup)
	relate(rows)
	if rows[0].Err != "no round completed" || rows[0].EventsPerSec != 0 {
		t.Errorf("GOMAXPROCS 4 without rounds: %+v", rows[0])
	}
	if got := fig(rows[1], "vs kafka/kfake/100K-keys/gomaxprocs-1"); got != "1.56× its throughput, same run" {
		t.Errorf("kfake ratio %q", got)
	}
	if fig(rows[2], "broker CPU") != "" || !strings.Contains(fig(rows[2], "GOMAXPROCS"), "limits the broker as well") {
		t.Errorf("kfake figures %+v", rows[2].Figures)
	}
}

// TestCoresScenarios checks which modes run the cores scenarios and what
// they are called.
func TestCoresScenarios(t *testing.T) {
	names := func(o Options) []string {
		var out []string
		for _, s := range scenarios(&o) {
			if strings.Contains(s.name, "gomaxprocs") {
				out = append(out, s.name)
			}
		}
		return out
	}
	if got := names(Options{Mode: "full", RealKafka: true}); !reflect.DeepEqual(got, []string{"kafka/kafka/100K-keys/gomaxprocs"}) {
		t.Errorf("full: %q", got)
	}
	if got := names(Options{Mode: "full"}); !reflect.DeepEqual(got, []string{"kafka/kfake/100K-keys/gomaxprocs"}) {
		t.Errorf("full without the real broker: %q", got)
	}
	if got := names(Options{Mode: "smoke"}); !reflect.DeepEqual(got, []string{"kafka/kfake/1K-keys/gomaxprocs"}) {
		t.Errorf("smoke: %q", got)
	}
	if got := names(Options{Mode: "quick"}); len(got) != 0 {
		t.Errorf("quick runs %q", got)
	}
}

// TestChartLeavesOutGOMAXPROCS: a row at a lower GOMAXPROCS is not the
// node's throughput at its keys.
func TestChartLeavesOutGOMAXPROCS(t *testing.T) {
	r := &Report{Results: []Result{
		{Scenario: "kafka/kfake/100K-keys/gomaxprocs-1", Group: "kafka", Setup: Setup{Keys: 100_000, Broker: "kfake", GOMAXPROCS: 1},
			EventsPerSec: 1, BaselinePerSec: 2},
		{Scenario: "kafka/kfake/100K-keys", Group: "kafka", Setup: Setup{Keys: 100_000, Broker: "kfake"}, EventsPerSec: 10, BaselinePerSec: 20},
	}}
	s := r.chartData()
	if len(s) != 2 || len(s[0].thr) != 1 || s[0].thr[0].v != 10 || s[1].thr[0].v != 20 {
		t.Errorf("series %+v", s)
	}
}
