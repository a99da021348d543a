package bench

import (
	"bufio"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// Setup is what a scenario ran with. A zero field means "not applicable"
// and is printed as nothing (or "-" when the whole setup is empty).
type Setup struct {
	Keys       int `json:"keys,omitempty"`        // live keys
	EventBytes int `json:"event_bytes,omitempty"` // mean encoded event size, bytes
	Batch      int `json:"batch,omitempty"`       // events per request / produce batch
	Partitions int `json:"partitions,omitempty"`
	Nodes      int `json:"nodes,omitempty"`
	Cores      int `json:"cores"` // runtime.NumCPU()
	// GOMAXPROCS is the setting the scenario ran with when it set one (the
	// cores scenarios); 0: the runtime's default, the cores.
	GOMAXPROCS int    `json:"gomaxprocs,omitempty"`
	Broker     string `json:"broker,omitempty"` // "kfake", "kafka 4.4.0", ""
	Rules      int    `json:"rules,omitempty"`  // rules in the rules file
	Events     int    `json:"events,omitempty"` // events the measurement covered
	// IDs is "on" when every event sent carries an id (as the Go client
	// sends them), "off" when none does; "" for scenarios that send none
	// over a network (memory).
	IDs string `json:"ids,omitempty"`
}

// Latency is ingest → applied latency measured at a fixed offered load.
// Histogram.Latency fills it.
type Latency struct {
	OfferedPerSec float64       `json:"offered_per_sec"` // offered load, events/s
	P50           time.Duration `json:"p50_ns"`
	P99           time.Duration `json:"p99_ns"`
	P999          time.Duration `json:"p999_ns"`
	Samples       int           `json:"samples"` // latencies recorded
}

// Result is one row of the report: one scenario's figures. The zero
// value of a figure means "not measured", except AllocsPerEvent, where
// that is -1.
type Result struct {
	Scenario string `json:"scenario"` // unique, e.g. "kafka/kfake/100K-keys"
	Group    string `json:"group"`    // "kafka", "ingest", "cluster", "memory", "failover"
	Setup    Setup  `json:"setup"`

	EventsPerSec   float64  `json:"events_per_sec,omitempty"`   // sustained throughput
	BaselinePerSec float64  `json:"baseline_per_sec,omitempty"` // the hand-written baseline on the same data, same run
	Latency        *Latency `json:"latency,omitempty"`          // nil: not measured at a fixed load
	RSSBytes       int64    `json:"rss_bytes,omitempty"`        // resident set size of the process at the end
	BytesPerKey    float64  `json:"bytes_per_key,omitempty"`    // heap per live key
	AllocsPerEvent float64  `json:"allocs_per_event"`           // heap allocations per event; -1 when not measured

	Duration time.Duration `json:"duration_ns"` // how long the measurement ran

	// Peers mode: each round's events/s and the medians of the CPU time
	// per event of the system's process and of the broker, in µs.
	Rounds            []float64 `json:"rounds,omitempty"`
	CPUPerEvent       float64   `json:"cpu_us_per_event,omitempty"`
	BrokerCPUPerEvent float64   `json:"broker_cpu_us_per_event,omitempty"`

	// Figures holds scenario-specific figures in display order, e.g.
	// {"bytes/routed event", "39 B (0.63× JSON)"}, {"failover", "4.2 s"}.
	Figures []Figure `json:"figures,omitempty"`
	// Err is the error of a scenario that failed; the row shows it.
	Err string `json:"error,omitempty"`

	// versus names the row of the run this one is compared with (the
	// ratio of their throughputs becomes a figure); not reported itself.
	versus string
}

// Figure is one named, already formatted, scenario-specific figure.
type Figure struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

// Ratio returns EventsPerSec / BaselinePerSec, or 0 when there is no
// baseline.
func (r *Result) Ratio() float64 {
	if r.BaselinePerSec <= 0 {
		return 0
	}
	return r.EventsPerSec / r.BaselinePerSec
}

// Report is a whole run of the harness.
type Report struct {
	Started time.Time `json:"started"`
	Machine Machine   `json:"machine"`
	Commit  string    `json:"commit,omitempty"`
	Mode    string    `json:"mode"` // "full", "quick", "smoke"
	Results []Result  `json:"results"`
}

// Machine describes the machine a report was measured on.
type Machine struct {
	CPU    string  `json:"cpu"`     // model name from /proc/cpuinfo, "" if unknown
	Cores  int     `json:"cores"`   // runtime.NumCPU()
	MemGiB float64 `json:"mem_gib"` // MemTotal from /proc/meminfo, 0 if unknown
	OS     string  `json:"os"`      // runtime.GOOS
	Arch   string  `json:"arch"`    // runtime.GOARCH
	Go     string  `json:"go"`      // runtime.Version()
}

// ThisMachine describes the machine the process runs on. The CPU model and
// memory are read from /proc and left empty where it does not exist.
func ThisMachine() Machine {
	return Machine{
		CPU:    cpuModel("/proc/cpuinfo"),
		Cores:  runtime.NumCPU(),
		MemGiB: memTotalGiB("/proc/meminfo"),
		OS:     runtime.GOOS,
		Arch:   runtime.GOARCH,
		Go:     runtime.Version(),
	}
}

// procFields calls f with the key and value of each "key : value" line of
// a /proc file until f returns false.
func procFields(path string, f func(k, v string) bool) {
	fh, err := os.Open(path)
	if err != nil {
		return // not Linux: the field stays unknown
	}
	defer fh.Close()
	sc := bufio.NewScanner(fh)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if ok && !f(strings.TrimSpace(k), strings.TrimSpace(v)) {
			return
		}
	}
}

// cpuModel returns the first "model name" of a cpuinfo file (x86), or its
// "Model"/"Hardware" line (ARM boards), or "".
func cpuModel(path string) string {
	var model, other string
	procFields(path, func(k, v string) bool {
		switch k {
		case "model name":
			model = v
			return false
		case "Model", "Hardware":
			if other == "" {
				other = v
			}
		}
		return true
	})
	if model == "" {
		model = other
	}
	return strings.Join(strings.Fields(model), " ")
}

// memTotalGiB returns MemTotal of a meminfo file in GiB, or 0.
func memTotalGiB(path string) float64 {
	var gib float64
	procFields(path, func(k, v string) bool {
		if k != "MemTotal" {
			return true
		}
		kb, err := strconv.ParseInt(strings.TrimSuffix(v, " kB"), 10, 64)
		if err == nil {
			gib = float64(kb) / (1 << 20)
		}
		return false
	})
	return gib
}
