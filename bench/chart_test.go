package bench

import (
	"bytes"
	"encoding/xml"
	"errors"
	"io"
	"math"
	"strconv"
	"strings"
	"testing"
	"time"
)

// svgDoc is what the chart tests read back from an SVG.
type svgDoc struct {
	root  string
	texts []string // character data of <text> and <title> elements
	elems map[string]int
	// markers: circle centres, to check they lie in a plot area
	circles [][2]float64
}

// parseSVG decodes every token of an SVG, failing the test if it is not
// well-formed XML.
func parseSVG(t *testing.T, b []byte) svgDoc {
	t.Helper()
	doc := svgDoc{elems: map[string]int{}}
	d := xml.NewDecoder(bytes.NewReader(b))
	d.Strict = true
	var stack []string
	for {
		tok, err := d.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("SVG is not well-formed XML: %v\n%s", err, b)
		}
		switch tok := tok.(type) {
		case xml.StartElement:
			if doc.root == "" {
				doc.root = tok.Name.Space + " " + tok.Name.Local
			}
			stack = append(stack, tok.Name.Local)
			doc.elems[tok.Name.Local]++
			if tok.Name.Local == "circle" {
				var c [2]float64
				for _, a := range tok.Attr {
					switch a.Name.Local {
					case "cx":
						c[0], _ = strconv.ParseFloat(a.Value, 64)
					case "cy":
						c[1], _ = strconv.ParseFloat(a.Value, 64)
					}
				}
				doc.circles = append(doc.circles, c)
			}
		case xml.EndElement:
			stack = stack[:len(stack)-1]
		case xml.CharData:
			if n := len(stack); n > 0 && (stack[n-1] == "text" || stack[n-1] == "title") {
				doc.texts = append(doc.texts, string(tok))
			}
		}
	}
	return doc
}

func (d svgDoc) hasText(s string) bool {
	for _, t := range d.texts {
		if t == s {
			return true
		}
	}
	return false
}

func writeSVG(t *testing.T, r *Report) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := r.WriteSVG(&b); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func TestChartSVG(t *testing.T) {
	out := writeSVG(t, testReport())
	doc := parseSVG(t, out)
	if doc.root != "http://www.w3.org/2000/svg svg" {
		t.Errorf("root element %q", doc.root)
	}
	for _, want := range []string{
		"Squall: Kafka → applied, by live keys · 2 cores · 2026-11-25",
		"throughput (events/s)", "p99 latency (ms) at 100K events/s", "live keys (log scale)",
		"squall · kfake", "squall · kfake · 1 rule", "squall · kafka 4.4.0",
		"baseline (franz-go + map) · kfake", "baseline (franz-go + map) · kafka 4.4.0",
		"10K", "100K", "1M", // x ticks
		"0", "500K", "1.5M", // throughput ticks: max 1.6M (a baseline) → step 500K, top 2M
		"2.5", "12.5", // latency ticks: max 12.34 ms → step 2.5, top 12.5
	} {
		if !doc.hasText(want) {
			t.Errorf("SVG lacks text %q", want)
		}
	}
	for _, bad := range []string{"ingest", "memory", "no latency at fixed load", "<script", "@import", "href", "url("} {
		if bytes.Contains(out, []byte(bad)) {
			t.Errorf("SVG has %q", bad)
		}
	}
	if n := bytes.Count(out, []byte("http://")); n != 1 { // the namespace only
		t.Errorf("SVG refers to %d URLs", n)
	}
	// Lines join the points of the series with more than one: kfake (the
	// steady variant folded in) and its baseline.
	if doc.elems["polyline"] != 2 {
		t.Errorf("%d polylines, want 2 (kfake and its baseline)", doc.elems["polyline"])
	}
	for _, c := range doc.circles {
		inLegend := c[1] > chartPlotBot+40
		inPlot := c[1] >= chartPlotTop && c[1] <= chartPlotBot &&
			(c[0] >= chartPanels[0][0] && c[0] <= chartPanels[0][1] || c[0] >= chartPanels[1][0] && c[0] <= chartPanels[1][1])
		if !inLegend && !inPlot {
			t.Errorf("marker at %v outside the plot areas", c)
		}
	}
	if w, h := 800, 400; !bytes.Contains(out, []byte(`width="`+strconv.Itoa(w)+`" height="`+strconv.Itoa(h)+`"`)) {
		t.Errorf("not %d×%d: %.200s", w, h, out)
	}
	t.Logf("%d bytes", len(out))
}

func TestChartDeterministic(t *testing.T) {
	a, b := writeSVG(t, testReport()), writeSVG(t, testReport())
	if !bytes.Equal(a, b) {
		t.Error("two charts of the same report differ")
	}
}

func TestChartSeries(t *testing.T) {
	series := testReport().chartData()
	var names []string
	for _, s := range series {
		names = append(names, s.name)
	}
	want := "squall · kfake|squall · kfake · 1 rule|squall · kafka 4.4.0|baseline (franz-go + map) · kfake|baseline (franz-go + map) · kafka 4.4.0"
	if strings.Join(names, "|") != want {
		t.Fatalf("series %q", names)
	}
	// The steady variant at 10K keys does not add a second point there.
	if got := series[0].thr; len(got) != 3 || got[0] != (chartPoint{10_000, 1_510_000}) || got[2].keys != 1_000_000 {
		t.Errorf("kfake throughput %v", got)
	}
	if got := series[0].lat; len(got) != 1 || math.Abs(got[0].v-1.9) > 1e-9 {
		t.Errorf("kfake latency %v", got)
	}
	if got := series[3].thr; len(got) != 3 || got[1] != (chartPoint{100_000, 1_333_333}) {
		t.Errorf("kfake baseline %v", got)
	}

	// The latency panel names the offered load only when it is one.
	r := testReport()
	if got := r.chartOffered(); got != 100_000 {
		t.Errorf("chartOffered = %v, want 100K", got)
	}
	r.Results[8].Latency.OfferedPerSec = 50_000
	if got := r.chartOffered(); got != 0 {
		t.Errorf("chartOffered of mixed loads = %v, want 0", got)
	}

	// With one broker, the baseline has the plain name.
	one := &Report{Results: []Result{{Scenario: "k", Group: "kafka", Setup: Setup{Keys: 1000, Broker: "kfake"}, EventsPerSec: 1, BaselinePerSec: 2}}}
	if s := one.chartData(); len(s) != 2 || s[1].name != "baseline (franz-go + map)" {
		t.Errorf("one broker: %+v", s)
	}
}

func TestChartNoLatency(t *testing.T) {
	r := testReport()
	for i := range r.Results {
		r.Results[i].Latency = nil
	}
	doc := parseSVG(t, writeSVG(t, r))
	if !doc.hasText("no latency at fixed load") || !doc.hasText("squall · kfake") || !doc.hasText("p99 latency (ms)") {
		t.Errorf("no-latency chart texts %q", doc.texts)
	}
}

func TestChartSinglePoint(t *testing.T) {
	r := &Report{Machine: Machine{Cores: 1}, Results: []Result{{
		Scenario: "kafka/kfake/1K-keys", Group: "kafka", Setup: Setup{Keys: 1000, Broker: `k<&>"'`, Cores: 1},
		EventsPerSec: 123_000, Latency: &Latency{P99: 3 * time.Millisecond},
	}}}
	out := writeSVG(t, r)
	doc := parseSVG(t, out)
	for _, want := range []string{"squall · k<&>\"'", "100", "1K", "10K", "Squall: Kafka → applied, by live keys · 1 core", "3", "p99 latency (ms)", "no Kafka throughput results"} {
		if want == "no Kafka throughput results" {
			if doc.hasText(want) {
				t.Errorf("single point: %q shown", want)
			}
			continue
		}
		if !doc.hasText(want) {
			t.Errorf("single point: no text %q in %q", want, doc.texts)
		}
	}
	if doc.elems["polyline"] != 0 || doc.elems["circle"] != 3 { // one marker per panel, one in the legend
		t.Errorf("single point: elements %v", doc.elems)
	}
}

func TestChartEmpty(t *testing.T) {
	for _, r := range []*Report{{}, {Results: []Result{{Scenario: "kafka/x", Group: "kafka", Setup: Setup{Keys: 10}, Err: "boom", EventsPerSec: 5}}}} {
		doc := parseSVG(t, writeSVG(t, r))
		if !doc.hasText("no Kafka throughput results") || !doc.hasText("no latency at fixed load") || doc.elems["circle"] != 0 {
			t.Errorf("empty chart: %q %v", doc.texts, doc.elems)
		}
	}
}

func TestChartScales(t *testing.T) {
	for _, c := range []struct{ kmin, kmax, lo, hi int }{
		{10_000, 1_000_000, 4, 6}, {1000, 1000, 2, 4}, {50_000, 200_000, 4, 6}, {1, 1, 0, 1}, {999, 1001, 2, 4}, {1, math.MaxInt64, 0, 18},
	} {
		if s := newLogScale(c.kmin, c.kmax); s.lo != c.lo || s.hi != c.hi {
			t.Errorf("newLogScale(%d, %d) = %d..%d, want %d..%d", c.kmin, c.kmax, s.lo, s.hi, c.lo, c.hi)
		}
	}
	for _, m := range []float64{0.0123, 0.99, 1, 1.01, 3, 7.7, 12.34, 99, 100, 101, 1_600_000, 2_345_678, 1e9} {
		step, top := niceScale(m)
		ticks := int(math.Round(top/step)) + 1
		mant := step / math.Pow(10, math.Floor(math.Log10(step)))
		nice := false
		for _, n := range []float64{1, 2, 2.5, 5} {
			nice = nice || math.Abs(mant-n) < 1e-9
		}
		if top < m || top-step >= m || ticks < 4 || ticks > 6 || !nice {
			t.Errorf("niceScale(%v) = step %v, top %v (%d ticks)", m, step, top, ticks)
		}
	}
}

// TestPeersSVG draws a peers report: a bar per system in each panel, bars
// proportional to their values, each round a dot, a failed system listed
// without a bar.
func TestPeersSVG(t *testing.T) {
	rep := &Report{Started: time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC), Machine: Machine{Cores: 2}, Results: []Result{
		{Scenario: "peers/squall", Group: "peers", Setup: Setup{Keys: 100_000}, EventsPerSec: 600_000,
			Rounds: []float64{550_000, 600_000, 640_000}, CPUPerEvent: 3, BrokerCPUPerEvent: 0.1},
		{Scenario: "peers/kafka-streams", Group: "peers", Setup: Setup{Keys: 100_000}, EventsPerSec: 150_000,
			Rounds: []float64{140_000, 150_000, 160_000}, CPUPerEvent: 12, BrokerCPUPerEvent: 0.3},
		{Scenario: "peers/flink", Group: "peers", Setup: Setup{Keys: 100_000}, Err: "wrong digest: applied 1, want 2"},
	}}
	var b bytes.Buffer
	if err := rep.WriteSVG(&b); err != nil {
		t.Fatal(err)
	}
	doc := parseSVG(t, b.Bytes())
	text := strings.Join(doc.texts, "|")
	for _, want := range []string{"Squall and its peers", "100K keys", "2 cores", "2026-12-03", "squall", "kafka-streams", "flink", "600K", "150K", "failed", "3.00 + 0.10 µs"} {
		if !strings.Contains(text, want) {
			t.Errorf("chart lacks %q: %s", want, text)
		}
	}
	if n := doc.elems["circle"]; n != 6 {
		t.Errorf("%d dots, want 6 (3 rounds of 2 systems)", n)
	}
	// Bars: the background, then per panel squall's and kafka-streams'
	// segments (throughput: 1 each; CPU: 2 each).
	widths := rectWidths(t, b.Bytes())
	if len(widths) != 1+2+4 {
		t.Fatalf("%d rects, want 7: %v", len(widths), widths)
	}
	if r := widths[1] / widths[2]; math.Abs(r-4) > 0.01 {
		t.Errorf("throughput bars %v: ratio %.3f, want 4", widths[1:3], r)
	}
	if r := widths[5] / widths[3]; math.Abs(r-4) > 0.01 {
		t.Errorf("CPU bars %v: ratio %.3f, want 4", widths[3:], r)
	}
	var again bytes.Buffer
	if err := rep.WriteSVG(&again); err != nil || !bytes.Equal(again.Bytes(), b.Bytes()) {
		t.Error("the same report drew different bytes")
	}
}

// rectWidths returns the width of every <rect> of an SVG, in order.
func rectWidths(t *testing.T, b []byte) []float64 {
	t.Helper()
	var ws []float64
	d := xml.NewDecoder(bytes.NewReader(b))
	for {
		tok, err := d.Token()
		if errors.Is(err, io.EOF) {
			return ws
		}
		if err != nil {
			t.Fatal(err)
		}
		if s, ok := tok.(xml.StartElement); ok && s.Name.Local == "rect" {
			for _, a := range s.Attr {
				if a.Name.Local == "width" {
					w, _ := strconv.ParseFloat(a.Value, 64)
					ws = append(ws, w)
				}
			}
		}
	}
}
