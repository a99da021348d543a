package bench

import (
	"bytes"
	"encoding/xml"
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
)

// Chart geometry, in SVG user units (pixels).
const (
	chartW        = 800
	chartPlotTop  = 64  // top of both plot areas
	chartPlotBot  = 290 // bottom of both plot areas (the x axis)
	chartLegendY  = 352 // first legend row
	chartLegendDY = 20  // legend row height
	chartLegendDX = 250 // legend column width
	chartLegendN  = 3   // legend columns
	chartPadDec   = 0.15
)

// chartPanels are the left and right plot areas: x from, x to.
var chartPanels = [2][2]float64{{80, 372}, {480, 772}}

var (
	chartColors  = []string{"#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf"}
	chartGreys   = []string{"#555555", "#999999", "#bcbd22"}
	chartMarkers = []string{"circle", "square", "triangle", "diamond"}
)

// chartSeries is one line of the chart: Squall with one broker and rule
// count, or a broker's baseline.
type chartSeries struct {
	name     string
	color    string
	marker   string
	baseline bool         // drawn dashed
	thr, lat []chartPoint // throughput (events/s) and p99 (ms), by keys
}

type chartPoint struct {
	keys int
	v    float64
}

// chartAdd adds a point in order of keys unless the series has one at
// those keys already (the steady-state variant of a scenario shares its
// setup: the first wins).
func chartAdd(ps []chartPoint, keys int, v float64) []chartPoint {
	for i, p := range ps {
		if p.keys == keys {
			return ps
		}
		if p.keys > keys {
			return slices.Insert(ps, i, chartPoint{keys, v})
		}
	}
	return append(ps, chartPoint{keys, v})
}

// chartData collects the series of r: of the Results of group "kafka"
// with keys that did not fail and ran on every core (not the cores
// scenarios' rows at a lower GOMAXPROCS), one series per (Broker, Rules) in order of
// first appearance, then one baseline series per broker (from the results
// without rules). Series without a point are left out.
func (r *Report) chartData() []*chartSeries {
	type key struct {
		broker string
		rules  int
	}
	var order []key
	squall := map[key]*chartSeries{}
	var brokers []string
	base := map[string]*chartSeries{}
	for i := range r.Results {
		res := &r.Results[i]
		if res.Group != "kafka" || res.Setup.Keys <= 0 || res.Err != "" || res.Setup.GOMAXPROCS > 0 {
			continue
		}
		k := key{res.Setup.Broker, res.Setup.Rules}
		s := squall[k]
		if s == nil {
			s = &chartSeries{}
			squall[k] = s
			order = append(order, k)
		}
		if res.EventsPerSec > 0 {
			s.thr = chartAdd(s.thr, res.Setup.Keys, res.EventsPerSec)
		}
		if l := res.Latency; l != nil && l.P99 > 0 {
			s.lat = chartAdd(s.lat, res.Setup.Keys, l.P99.Seconds()*1000)
		}
		if res.Setup.Rules == 0 && res.BaselinePerSec > 0 {
			b := base[k.broker]
			if b == nil {
				b = &chartSeries{baseline: true}
				base[k.broker] = b
				brokers = append(brokers, k.broker)
			}
			b.thr = chartAdd(b.thr, res.Setup.Keys, res.BaselinePerSec)
		}
	}
	var out []*chartSeries
	for _, k := range order {
		s := squall[k]
		if len(s.thr)+len(s.lat) == 0 {
			continue
		}
		s.name = "squall · " + orDash(k.broker)
		if k.broker == "" {
			s.name = "squall"
		}
		if k.rules > 0 {
			s.name += " · " + pluralN(k.rules, "rule")
		}
		s.color = chartColors[len(out)%len(chartColors)]
		s.marker = chartMarkers[len(out)%len(chartMarkers)]
		out = append(out, s)
	}
	for i, br := range brokers {
		b := base[br]
		b.name = "baseline (franz-go + map)"
		if len(brokers) > 1 {
			b.name += " · " + orDash(br)
		}
		b.color = chartGreys[i%len(chartGreys)]
		b.marker = chartMarkers[(len(out)+i)%len(chartMarkers)]
		out = append(out, b)
	}
	return out
}

// chartOffered returns the offered load of the charted latencies when they
// all have the same, or 0.
func (r *Report) chartOffered() float64 {
	offered := 0.0
	for i := range r.Results {
		res := &r.Results[i]
		if res.Group != "kafka" || res.Setup.Keys <= 0 || res.Err != "" || res.Latency == nil || res.Latency.P99 <= 0 {
			continue
		}
		if o := res.Latency.OfferedPerSec; offered == 0 {
			offered = o
		} else if o != offered {
			return 0
		}
	}
	return offered
}

// WriteSVG writes a self-contained SVG chart (about 800×400, no external
// fonts or scripts) of the Kafka → applied scenarios against live keys:
// throughput (events/s) on the left with the baseline, p99 latency at a
// fixed offered load (ms) on the right (the load in its title when all
// points share it); keys on a log scale, values on a
// linear scale from 0. A peers report (make bench-peers) is drawn as the
// peers chart instead: a bar per system for its throughput and its CPU per
// event. The same report always gives the same bytes.
func (r *Report) WriteSVG(w io.Writer) error {
	if r.isPeers() {
		return r.writePeersSVG(w)
	}
	series := r.chartData()
	rows := (len(series) + chartLegendN - 1) / chartLegendN
	height := max(chartLegendY+rows*chartLegendDY, 400)

	var b bytes.Buffer
	r.chartHeader(&b, height, "Squall: Kafka → applied, by live keys")

	// One x scale for both panels, so that their points line up.
	kmin, kmax := 0, 0
	for _, s := range series {
		for _, p := range append(append([]chartPoint(nil), s.thr...), s.lat...) {
			if kmin == 0 || p.keys < kmin {
				kmin = p.keys
			}
			kmax = max(kmax, p.keys)
		}
	}
	xs := newLogScale(kmin, kmax)

	thr := func(s *chartSeries) []chartPoint { return s.thr }
	lat := func(s *chartSeries) []chartPoint { return s.lat }
	chartPanel(&b, chartPanels[0], "throughput (events/s)", "no Kafka throughput results", series, thr, xs, siNum)
	latTitle := "p99 latency (ms)"
	if o := r.chartOffered(); o > 0 {
		latTitle += " at " + siNum(o) + " events/s"
	}
	chartPanel(&b, chartPanels[1], latTitle, "no latency at fixed load", series, lat, xs, plain3)

	// Legend.
	for i, s := range series {
		x := 40 + float64(i%chartLegendN)*chartLegendDX
		y := float64(chartLegendY + (i/chartLegendN)*chartLegendDY)
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s" stroke-width="2"%s/>`+"\n",
			x, y-4, x+28, y-4, s.color, chartDash(s))
		chartMarker(&b, s, x+14, y-4)
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f">%s</text>`+"\n", x+36, y, xmlText(s.name))
	}
	b.WriteString("</svg>\n")
	_, err := w.Write(b.Bytes())
	return err
}

// chartHeader opens an SVG of chartW × height: its title (what, the
// machine's cores and the run's date), a white background and the title
// as a heading.
func (r *Report) chartHeader(b *bytes.Buffer, height int, what string) {
	fmt.Fprintf(b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="11" fill="#222">`+"\n",
		chartW, height, chartW, height)
	title := what + " · " + pluralN(r.Machine.Cores, "core")
	if !r.Started.IsZero() {
		title += " · " + r.Started.Format("2006-01-02")
	}
	fmt.Fprintf(b, "<title>%s</title>\n", xmlText(title))
	fmt.Fprintf(b, `<rect width="%d" height="%d" fill="#ffffff"/>`+"\n", chartW, height)
	fmt.Fprintf(b, `<text x="%d" y="24" text-anchor="middle" font-size="15" font-weight="bold">%s</text>`+"\n", chartW/2, xmlText(title))
}

// logScale maps keys to [0, 1] on a log10 scale over whole decades.
type logScale struct {
	lo, hi int // decades: 10^lo ≤ every key ≤ 10^hi
}

func newLogScale(kmin, kmax int) logScale {
	if kmin <= 0 {
		return logScale{}
	}
	const top = 18 // 10^18 fits an int64
	lo, p := 0, 1
	for lo < top && p*10 <= kmin {
		p *= 10
		lo++
	}
	hi, p := 0, 1
	for hi < top && p < kmax {
		p *= 10
		hi++
	}
	if lo == hi { // one decade exactly: show the ones around it
		lo, hi = max(lo-1, 0), hi+1
	}
	return logScale{lo, hi}
}

func (s logScale) valid() bool { return s.hi > s.lo }

// at returns the position of keys in [0, 1], the decades padded a little
// so that points at either end are not on the frame.
func (s logScale) at(keys float64) float64 {
	from, to := float64(s.lo)-chartPadDec, float64(s.hi)+chartPadDec
	return (math.Log10(keys) - from) / (to - from)
}

// niceScale returns a step of 1, 2, 2.5 or 5 × 10^k and the top of a
// linear axis from 0 covering max in 3 to 5 steps (4 to 6 ticks).
func niceScale(maxV float64) (step, top float64) {
	if !(maxV > 0) || math.IsInf(maxV, 0) {
		return 1, 1
	}
	raw := maxV / 5
	mag := math.Pow(10, math.Floor(math.Log10(raw)))
	for _, m := range []float64{1, 2, 2.5, 5, 10} {
		if step = m * mag; step >= raw*(1-1e-9) {
			break
		}
	}
	n := math.Ceil(maxV/step - 1e-9)
	return step, n * step
}

// chartPanel draws one panel: frame, grid, ticks, title and the series'
// points from pts.
func chartPanel(b *bytes.Buffer, px [2]float64, title, empty string, series []*chartSeries,
	pts func(*chartSeries) []chartPoint, xs logScale, label func(float64) string) {
	x0, x1 := px[0], px[1]
	y0, y1 := float64(chartPlotTop), float64(chartPlotBot)
	mid := (x0 + x1) / 2
	fmt.Fprintf(b, `<text x="%.1f" y="%.1f" text-anchor="middle" font-size="13">%s</text>`+"\n", mid, y0-12, xmlText(title))

	maxV := 0.0
	for _, s := range series {
		for _, p := range pts(s) {
			maxV = max(maxV, p.v)
		}
	}
	fmt.Fprintf(b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="none" stroke="#bbbbbb"/>`+"\n", x0, y0, x1-x0, y1-y0)
	if maxV == 0 || !xs.valid() {
		fmt.Fprintf(b, `<text x="%.1f" y="%.1f" text-anchor="middle" fill="#777777">%s</text>`+"\n", mid, (y0+y1)/2, xmlText(empty))
		return
	}
	xAt := func(keys float64) float64 { return x0 + xs.at(keys)*(x1-x0) }

	// y: linear from 0.
	step, top := niceScale(maxV)
	yAt := func(v float64) float64 { return y1 - v/top*(y1-y0) }
	for i := 0; float64(i)*step <= top*(1+1e-9); i++ {
		v := float64(i) * step
		y := yAt(v)
		if i > 0 {
			fmt.Fprintf(b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#e5e5e5"/>`+"\n", x0, y, x1, y)
		}
		fmt.Fprintf(b, `<text x="%.1f" y="%.1f" text-anchor="end">%s</text>`+"\n", x0-6, y+4, xmlText(label(v)))
	}
	// x: decades.
	for d := xs.lo; d <= xs.hi; d++ {
		k := math.Pow(10, float64(d))
		x := xAt(k)
		fmt.Fprintf(b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#e5e5e5"/>`+"\n", x, y0, x, y1)
		fmt.Fprintf(b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#888888"/>`+"\n", x, y1, x, y1+4)
		fmt.Fprintf(b, `<text x="%.1f" y="%.1f" text-anchor="middle">%s</text>`+"\n", x, y1+16, xmlText(siNum(k)))
	}
	fmt.Fprintf(b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#888888"/>`+"\n", x0, y1, x1, y1)
	fmt.Fprintf(b, `<text x="%.1f" y="%.1f" text-anchor="middle" fill="#555555">live keys (log scale)</text>`+"\n", mid, y1+34)

	for _, s := range series {
		ps := pts(s)
		if len(ps) == 0 {
			continue
		}
		if len(ps) > 1 {
			coords := make([]string, len(ps))
			for i, p := range ps {
				coords[i] = fmt.Sprintf("%.1f,%.1f", xAt(float64(p.keys)), yAt(p.v))
			}
			fmt.Fprintf(b, `<polyline points="%s" fill="none" stroke="%s" stroke-width="2"%s/>`+"\n",
				strings.Join(coords, " "), s.color, chartDash(s))
		}
		for _, p := range ps {
			chartMarker(b, s, xAt(float64(p.keys)), yAt(p.v))
		}
	}
}

func chartDash(s *chartSeries) string {
	if s.baseline {
		return ` stroke-dasharray="6 3"`
	}
	return ""
}

// chartMarker draws s's marker centred on (x, y).
func chartMarker(b *bytes.Buffer, s *chartSeries, x, y float64) {
	const r = 4.0
	switch s.marker {
	case "square":
		fmt.Fprintf(b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s"/>`+"\n", x-r+0.5, y-r+0.5, 2*r-1, 2*r-1, s.color)
	case "triangle":
		fmt.Fprintf(b, `<path d="M%.1f %.1fL%.1f %.1fL%.1f %.1fZ" fill="%s"/>`+"\n", x, y-r-0.5, x+r+0.5, y+r-0.5, x-r-0.5, y+r-0.5, s.color)
	case "diamond":
		fmt.Fprintf(b, `<path d="M%.1f %.1fL%.1f %.1fL%.1f %.1fL%.1f %.1fZ" fill="%s"/>`+"\n", x, y-r-1, x+r+1, y, x, y+r+1, x-r-1, y, s.color)
	default:
		fmt.Fprintf(b, `<circle cx="%.1f" cy="%.1f" r="%.1f" fill="%s"/>`+"\n", x, y, r, s.color)
	}
}

// xmlText escapes s for XML text and attribute values.
func xmlText(s string) string {
	var b strings.Builder
	_ = xml.EscapeText(&b, []byte(s)) // writing to a strings.Builder cannot fail
	return b.String()
}
