package bench

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unicode/utf8"

	"go.uber.org/goleak"
)

// testReport is a report with rows of every kind, in an order that
// interleaves the groups. The chart tests use it too.
func testReport() *Report {
	kf := func(keys int, eps, base float64) Result {
		return Result{Scenario: "kafka/kfake/" + siNum(float64(keys)) + "-keys", Group: "kafka",
			Setup:        Setup{Keys: keys, EventBytes: 82, Partitions: 12, Nodes: 1, Cores: 2, Broker: "kfake", Events: 3_000_000},
			EventsPerSec: eps, BaselinePerSec: base, RSSBytes: 412 << 20, AllocsPerEvent: 0.36, Duration: 2 * time.Second,
			Figures: []Figure{{"note", "allocs and RSS include the in-process broker"}}}
	}
	return &Report{
		Started: time.Date(2026, 11, 25, 14, 3, 5, 123456789, time.UTC),
		Machine: Machine{CPU: "AMD EPYC 7B13", Cores: 2, MemGiB: 23.47, OS: "linux", Arch: "amd64", Go: "go1.26.8"},
		Commit:  "abc1234",
		Mode:    "full",
		Results: []Result{
			kf(10_000, 1_510_000, 1_600_000),
			{Scenario: "ingest/http/batch-1000", Group: "ingest",
				Setup:        Setup{Keys: 100_000, EventBytes: 62, Batch: 1000, Partitions: 64, Nodes: 1, Cores: 2, Events: 5_000_000},
				EventsPerSec: 12_345, AllocsPerEvent: 1.234, Duration: 5 * time.Second,
				Figures: []Figure{{"clients", "2 HTTP/1.1 keep-alive, same machine"}}},
			kf(100_000, 1_160_000, 1_333_333),
			kf(1_000_000, 757_000, 900_000),
			{Scenario: "kafka/kfake/100K-keys/1-rule", Group: "kafka",
				Setup:        Setup{Keys: 100_000, EventBytes: 82, Partitions: 12, Nodes: 1, Cores: 2, Broker: "kfake", Rules: 1, Events: 3_000_000},
				EventsPerSec: 1_010_000, AllocsPerEvent: 0.5, Duration: 3 * time.Second},
			{Scenario: "kafka/kfake/10K-keys/steady", Group: "kafka",
				Setup:        Setup{Keys: 10_000, EventBytes: 82, Partitions: 12, Nodes: 1, Cores: 2, Broker: "kfake", Events: 600_000},
				EventsPerSec: 1_400_000, BaselinePerSec: 1_700_000, AllocsPerEvent: 0.01,
				Figures: []Figure{{"window", "30s, full"}}},
			{Scenario: "kafka/kfake/latency", Group: "kafka",
				Setup:          Setup{Keys: 100_000, EventBytes: 78, Partitions: 12, Nodes: 1, Cores: 2, Broker: "kfake", Events: 1_000_000},
				Latency:        &Latency{OfferedPerSec: 100_000, P50: 410 * time.Microsecond, P99: 1900 * time.Microsecond, P999: 4 * time.Millisecond, Samples: 1_000_000},
				AllocsPerEvent: -1, Duration: 10 * time.Second,
				Figures: []Figure{{"measured", "produce → applied (acks=all, linger 0)"}}},
			{Scenario: "kafka/kafka/100K-keys", Group: "kafka",
				Setup:        Setup{Keys: 100_000, EventBytes: 82, Partitions: 12, Nodes: 1, Cores: 2, Broker: "kafka 4.4.0", Events: 3_000_000},
				EventsPerSec: 880_000, BaselinePerSec: 1_000_000, AllocsPerEvent: 0.3},
			{Scenario: "kafka/kafka/latency", Group: "kafka",
				Setup:          Setup{Keys: 100_000, EventBytes: 78, Partitions: 12, Nodes: 1, Cores: 2, Broker: "kafka 4.4.0"},
				Latency:        &Latency{OfferedPerSec: 100_000, P50: 2 * time.Millisecond, P99: 12340 * time.Microsecond, P999: 130 * time.Millisecond, Samples: 1000},
				AllocsPerEvent: -1},
			{Scenario: "memory/1M-keys", Group: "memory",
				Setup:    Setup{Keys: 1_000_000, Partitions: 64, Nodes: 1, Cores: 2, Events: 10_000_000},
				RSSBytes: 1536 << 20, BytesPerKey: 734.4, AllocsPerEvent: -1,
				Figures: []Figure{{"RSS growth", "700 MiB (734 B/key)"}, {"target", "≤ 2 GiB RSS for 1M keys"}}},
			{Scenario: "cluster/routing", Group: "cluster",
				Setup:        Setup{Keys: 100_000, EventBytes: 62, Batch: 100, Partitions: 12, Nodes: 3, Cores: 2, Events: 40_000},
				EventsPerSec: 950, AllocsPerEvent: -1,
				Figures: []Figure{{"bytes/routed event", "39 B (0.63× JSON)"}}},
			{Scenario: "failover/kill-9", Group: "failover", Setup: Setup{Cores: 2}, AllocsPerEvent: -1,
				Err: "kill: no such process | pid 42\nsecond line"},
		},
	}
}

func TestReportTable(t *testing.T) {
	var b bytes.Buffer
	if err := testReport().WriteTable(&b); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	t.Logf("\n%s", out)
	for _, want := range []string{
		"**Machine:** AMD EPYC 7B13, 2 cores, 23.5 GiB, linux/amd64, go1.26.8. **Run:** mode full, started 2026-11-25 14:03:05 UTC, commit abc1234.",
		"| scenario ", "| × baseline ", "| figures |",
		"100K keys · 82 B · 12 parts · 2 cores · kfake · 3M events",
		"100K keys · 82 B · 12 parts · 2 cores · kfake · 1 rule · 3M events",
		"100K keys · 62 B · batch 1000 · 64 parts · 2 cores · 5M events",
		"12 parts · 3 nodes · 2 cores",
		"kfake · @100K/s · 1M events",
		"| 1.16M ", "| 0.87× ", "| 757K ", "| 12.3K ", "| 950 ", "| 1.51M ",
		"| 0.41 / 1.90 / 4.00 ms ",
		"| 2.00 / 12.3 / 130 ms ",
		"| 412 ", "| 1536 ", "| 734 ", "| 0.36 ", "| 1.23 ",
		"| note: allocs and RSS include the in-process broker |",
		"| RSS growth: 700 MiB (734 B/key); target: ≤ 2 GiB RSS for 1M keys |",
		`| error: kill: no such process \| pid 42 second line |`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q", want)
		}
	}

	// Rows are grouped by group in order of first appearance.
	order := []string{"kafka/kfake/10K-keys ", "kafka/kfake/100K-keys ", "kafka/kafka/latency", "ingest/http/batch-1000", "memory/1M-keys", "cluster/routing", "failover/kill-9"}
	last := -1
	for _, s := range order {
		i := strings.Index(out, s)
		if i <= last {
			t.Errorf("%q at %d, want after %d", s, i, last)
		}
		last = i
	}

	// A well-formed table: every line of it has the same number of
	// unescaped pipes, starts with "| " or "|-" and ends with " |" or "-|".
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if lines[1] != "" {
		t.Errorf("no blank line after the header: %q", lines[1])
	}
	table := lines[2:]
	if len(table) != 2+len(testReport().Results) {
		t.Errorf("%d table lines, want %d", len(table), 2+len(testReport().Results))
	}
	for _, l := range table {
		if n := strings.Count(l, "|") - strings.Count(l, `\|`); n != 10 {
			t.Errorf("%d cells separators in %q", n, l)
		}
		if !strings.HasPrefix(l, "|") || !strings.HasSuffix(l, "|") {
			t.Errorf("line %q", l)
		}
	}
	// Columns line up: the "|" before the events/s column is at the same
	// rune offset in every line.
	col := func(l string) int {
		n, runes := 0, 0
		for i, r := range l {
			if r == '|' && (i == 0 || l[i-1] != '\\') {
				if n++; n == 3 {
					return runes
				}
			}
			runes++
		}
		return -1
	}
	for _, l := range table[1:] {
		if col(l) != col(table[0]) {
			t.Errorf("column misaligned: %q", l)
		}
	}
}

func TestReportTableEmptyAndUnknown(t *testing.T) {
	r := &Report{Results: []Result{{Scenario: "x", Group: "g", AllocsPerEvent: -1}}}
	var b bytes.Buffer
	if err := r.WriteTable(&b); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"CPU unknown, 0 cores.", "mode -, started -.", "| x ", "| - "} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("lacks %q:\n%s", want, b.String())
		}
	}
}

func TestReportNumberFormat(t *testing.T) {
	for v, want := range map[float64]string{
		1_160_000: "1.16M", 757_000: "757K", 12_345: "12.3K", 950: "950", 999_600: "1M", 999.6: "1K",
		1_000_000: "1M", 10_000: "10K", 0.36: "0.36", 0: "0", 2_500_000_000: "2.5G", 1_234_567: "1.23M", -1500: "-1.5K",
	} {
		if got := siNum(v); got != want {
			t.Errorf("siNum(%v) = %q, want %q", v, got, want)
		}
	}
	for d, want := range map[time.Duration]string{
		410 * time.Microsecond: "0.41", 1900 * time.Microsecond: "1.90", 41 * time.Microsecond: "0.041",
		12340 * time.Microsecond: "12.3", 130 * time.Millisecond: "130", 0: "0", 4 * time.Second: "4000",
	} {
		if got := fmtMs(d); got != want {
			t.Errorf("fmtMs(%v) = %q, want %q", d, got, want)
		}
	}
	for v, want := range map[float64]string{734.4: "734", 1536: "1536", 0.012345: "0.0123", 3: "3"} {
		if got := fig3(v); got != want {
			t.Errorf("fig3(%v) = %q, want %q", v, got, want)
		}
	}
}

func TestReportJSONRoundTrip(t *testing.T) {
	r := testReport()
	var b bytes.Buffer
	if err := r.WriteJSON(&b); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), "\n  \"machine\": {") || !strings.Contains(b.String(), `"p99_ns": 1900000`) {
		t.Errorf("not indented or wrong names:\n%s", b.String())
	}
	got, err := ReadJSON(bytes.NewReader(b.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, r) {
		t.Errorf("round trip:\n got %+v\nwant %+v", got, r)
	}
	if _, err := ReadJSON(strings.NewReader("{")); err == nil {
		t.Error("ReadJSON of a truncated report: no error")
	}
}

func TestReportCompare(t *testing.T) {
	before := &Report{Commit: "aaa", Mode: "full", Machine: Machine{Cores: 2, OS: "linux", Arch: "amd64"}, Results: []Result{
		{Scenario: "kafka/a", EventsPerSec: 1_000_000},
		{Scenario: "kafka/lat", Latency: &Latency{P99: 2 * time.Millisecond}},
		{Scenario: "gone", EventsPerSec: 5},
		{Scenario: "broken", Err: "boom"},
	}}
	after := &Report{Commit: "bbb", Mode: "full", Machine: Machine{Cores: 2, OS: "linux", Arch: "amd64"}, Results: []Result{
		{Scenario: "kafka/a", EventsPerSec: 1_100_000},
		{Scenario: "kafka/lat", Latency: &Latency{P99: 1 * time.Millisecond}},
		{Scenario: "broken", EventsPerSec: 10},
		{Scenario: "new|one", EventsPerSec: 1},
	}}
	var b bytes.Buffer
	if err := Compare(&b, before, after); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	t.Logf("\n%s", out)
	for _, want := range []string{
		"**Comparison:** commit aaa (-, mode full) → commit bbb (-, mode full).",
		"| kafka/a   | 1M ", "| 1.1M ", "| +10.0% ",
		"| 2.00 ", "| 1.00 ", "| -50.0% |",
		"| broken    | error ",
		"Only in old: gone.", `Only in new: new\|one.`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("comparison lacks %q", want)
		}
	}
	if strings.Contains(out, "machines differ") {
		t.Error("same machine reported as different")
	}
	after.Machine.Cores = 4
	b.Reset()
	if err := Compare(&b, before, after); err != nil || !strings.Contains(b.String(), "machines differ") {
		t.Errorf("different machines not noted (%v):\n%s", err, b.String())
	}
	b.Reset()
	if err := Compare(&b, &Report{}, after); err != nil || !strings.Contains(b.String(), "No scenario is in both reports.") {
		t.Errorf("disjoint reports (%v):\n%s", err, b.String())
	}
	if err := Compare(&b, nil, after); err == nil {
		t.Error("nil report: no error")
	}
}

func TestReportRatio(t *testing.T) {
	r := Result{EventsPerSec: 870, BaselinePerSec: 1000}
	if got := r.Ratio(); got != 0.87 {
		t.Errorf("Ratio = %v", got)
	}
	r.BaselinePerSec = 0
	if got := r.Ratio(); got != 0 {
		t.Errorf("Ratio without a baseline = %v", got)
	}
}

func TestReportThisMachine(t *testing.T) {
	m := ThisMachine()
	if m.Cores != runtime.NumCPU() || m.OS != runtime.GOOS || m.Arch != runtime.GOARCH || m.Go != runtime.Version() {
		t.Errorf("ThisMachine = %+v", m)
	}
	if runtime.GOOS == "linux" && m.MemGiB <= 0 {
		t.Errorf("no memory on Linux: %+v", m)
	}

	dir := t.TempDir()
	write := func(name, s string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	x86 := write("x86", "processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC   7B13 64-Core Processor\nflags\t\t: fpu\n\nprocessor\t: 1\nmodel name\t: other\n")
	if got := cpuModel(x86); got != "AMD EPYC 7B13 64-Core Processor" {
		t.Errorf("cpuModel(x86) = %q", got)
	}
	arm := write("arm", "processor\t: 0\nBogoMIPS\t: 108.00\n\nHardware\t: BCM2835\nModel\t\t: Raspberry Pi 4 Model B Rev 1.4\n")
	if got := cpuModel(arm); got != "BCM2835" {
		t.Errorf("cpuModel(arm) = %q", got)
	}
	mem := write("mem", "MemTotal:       24589416 kB\nMemFree:         1000 kB\n")
	if got := memTotalGiB(mem); got < 23.4 || got > 23.5 {
		t.Errorf("memTotalGiB = %v", got)
	}
	if got, got2 := cpuModel(filepath.Join(dir, "none")), memTotalGiB(filepath.Join(dir, "none")); got != "" || got2 != 0 {
		t.Errorf("missing files: %q %v", got, got2)
	}
}

// syncBuffer is a bytes.Buffer safe for the progress goroutine and the
// test to use at once.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// progressWait polls cond until it holds, failing the test after 10s.
func progressWait(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestProgressTerminal(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	var out syncBuffer
	var status atomic.Value
	status.Store("applied 1.2M of 3M events")
	p := startProgress(&out, "kafka/kfake/100K-keys", func() string { return status.Load().(string) }, 5*time.Millisecond, true)
	long := "\r  kafka/kfake/100K-keys: applied 1.2M of 3M events"
	progressWait(t, "the first line", func() bool { return strings.HasPrefix(out.String(), long) })
	status.Store("done")
	// The shorter line is padded to clear the longer one.
	short := "\r  kafka/kfake/100K-keys: done" + strings.Repeat(" ", len("applied 1.2M of 3M events")-len("done"))
	progressWait(t, "the shorter line", func() bool { return strings.Contains(out.String(), short) })
	p.Stop()
	got := out.String()
	width := utf8.RuneCountInString("  kafka/kfake/100K-keys: done")
	if clear := "\r" + strings.Repeat(" ", width) + "\r"; !strings.HasSuffix(got, clear) {
		t.Errorf("Stop did not clear the line: %q", got[max(len(got)-100, 0):])
	}
	if strings.Contains(got, "\n") {
		t.Errorf("a terminal progress line has a newline: %q", got)
	}
	p.Stop() // a second Stop does nothing
	if out.String() != got {
		t.Error("second Stop wrote")
	}
}

func TestProgressTruncates(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	var out syncBuffer
	p := startProgress(&out, "n", func() string { return strings.Repeat("x", 200) + "\nmore" }, time.Hour, true)
	progressWait(t, "the line", func() bool { return strings.Contains(out.String(), "…") })
	p.Stop()
	line, _, _ := strings.Cut(strings.TrimPrefix(out.String(), "\r"), "\r")
	if n := utf8.RuneCountInString(line); n != progressWidth {
		t.Errorf("line of %d runes, want %d: %q", n, progressWidth, line)
	}
}

func TestProgressPlain(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	var out syncBuffer
	var n atomic.Int64
	p := startProgress(&out, "ingest/http", func() string { return "sent " + siNum(float64(n.Add(1000))) }, 5*time.Millisecond, false)
	progressWait(t, "two lines", func() bool { return strings.Count(out.String(), "\n") >= 2 })
	p.Stop()
	got := out.String()
	if !strings.HasPrefix(got, "  ingest/http: sent 1K\n  ingest/http: sent 2K\n") || strings.Contains(got, "\r") {
		t.Errorf("plain progress: %q", got)
	}
}

func TestProgressStartNotTerminal(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	var out syncBuffer
	p := StartProgress(&out, "x", nil, time.Millisecond)
	if p.tty || p.every != progressPlainEvery {
		t.Errorf("tty %v, every %v; want a plain line every %v", p.tty, p.every, progressPlainEvery)
	}
	p.Stop()
	if out.String() != "" {
		t.Errorf("wrote %q before the first period", out.String())
	}

	f, err := os.Create(filepath.Join(t.TempDir(), "f"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer pr.Close()
	defer pw.Close()
	for _, w := range []io.Writer{&out, f, pw} {
		if isTerminal(w) {
			t.Errorf("%T is a terminal", w)
		}
	}
	if dn, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0); err == nil {
		defer dn.Close()
		if !isTerminal(dn) {
			t.Errorf("%s is not a character device", os.DevNull)
		}
	}
}

func TestRelate(t *testing.T) {
	rs := []Result{
		{Scenario: "kafka/kafka/100K-keys", EventsPerSec: 800},
		{Scenario: "kafka/jetstream-1xR1/100K-keys", EventsPerSec: 1000, versus: "kafka/kafka/100K-keys"},
		{Scenario: "kafka/jetstream-3xR3/100K-keys", EventsPerSec: 900, versus: "kafka/kafka/1M-keys"}, // not in the run
	}
	relate(rs)
	want := []Figure{{"vs kafka/kafka/100K-keys", "1.25× its throughput, same run"}}
	if !reflect.DeepEqual(rs[1].Figures, want) {
		t.Errorf("figures %+v, want %+v", rs[1].Figures, want)
	}
	if len(rs[0].Figures)+len(rs[2].Figures) != 0 {
		t.Errorf("figures added to rows without a comparison: %+v, %+v", rs[0].Figures, rs[2].Figures)
	}
}
