package bench

import (
	"bytes"
	"fmt"
	"io"
	"strings"
)

// The peers chart (make bench-peers -svg): one row per system, two panels
// stacked — throughput (bar: the median of the rounds, dots: each round)
// and CPU per event (the system's process, then the broker's share).
const (
	peerLabelX = 200 // right edge of the system names
	peerBarX0  = 210 // where bars start (value 0)
	peerBarX1  = 700 // the axis's top value
	peerRowH   = 28  // one system
	peerBarH   = 16
	peerPanelY = 70 // top of the first panel
	peerGapY   = 84 // between the panels: axis labels, the second title
)

var peerColors = [2]string{"#1f77b4", "#aec7e8"} // the system, the broker

// peerBar is one system's bar in a panel: stacked segments and dots.
type peerBar struct {
	segs  []float64
	dots  []float64
	label string // printed after the bar
}

// isPeers reports whether r is a peers report (every result of group
// "peers"), which WriteSVG draws as the peers chart.
func (r *Report) isPeers() bool {
	for _, res := range r.Results {
		if res.Group != "peers" {
			return false
		}
	}
	return len(r.Results) > 0
}

// writePeersSVG draws the peers chart of r. Systems that failed are listed
// with their failure and no bar. The same report gives the same bytes.
func (r *Report) writePeersSVG(w io.Writer) error {
	var names []string
	var thr, cpu []peerBar
	for _, res := range r.Results {
		names = append(names, strings.TrimPrefix(res.Scenario, "peers/"))
		if res.Err != "" || res.EventsPerSec <= 0 {
			thr = append(thr, peerBar{label: "failed"})
			cpu = append(cpu, peerBar{label: "failed"})
			continue
		}
		thr = append(thr, peerBar{segs: []float64{res.EventsPerSec}, dots: res.Rounds, label: siNum(res.EventsPerSec)})
		cpu = append(cpu, peerBar{segs: []float64{res.CPUPerEvent, res.BrokerCPUPerEvent},
			label: fmt.Sprintf("%.2f + %.2f µs", res.CPUPerEvent, res.BrokerCPUPerEvent)})
	}
	panelH := len(names)*peerRowH + 8
	top2 := peerPanelY + panelH + peerGapY
	height := top2 + panelH + 60

	var b bytes.Buffer
	what := "Squall and its peers: Kafka → state"
	if len(r.Results) > 0 && r.Results[0].Setup.Keys > 0 {
		what += ", " + siNum(float64(r.Results[0].Setup.Keys)) + " keys"
	}
	r.chartHeader(&b, height, what)
	peerPanel(&b, peerPanelY, "events/s — bar: median of the rounds; dots: each round", names, thr, siNum)
	peerPanel(&b, top2, "CPU per event (µs) — dark: the system's process; light: the broker", names, cpu, plain3)
	b.WriteString("</svg>\n")
	_, err := w.Write(b.Bytes())
	return err
}

// peerPanel draws one panel from y = top: title, a linear axis from 0
// under the rows, and one bar per system.
func peerPanel(b *bytes.Buffer, top int, title string, names []string, bars []peerBar, tick func(float64) string) {
	y0 := float64(top)
	y1 := y0 + float64(len(names)*peerRowH+8)
	fmt.Fprintf(b, `<text x="%d" y="%.1f" text-anchor="start" font-size="13">%s</text>`+"\n", peerBarX0, y0-12, xmlText(title))
	maxV := 0.0
	for _, bar := range bars {
		sum := 0.0
		for _, v := range bar.segs {
			sum += v
		}
		maxV = max(maxV, sum)
		for _, v := range bar.dots {
			maxV = max(maxV, v)
		}
	}
	step, topV := niceScale(maxV)
	xAt := func(v float64) float64 { return peerBarX0 + v/topV*(peerBarX1-peerBarX0) }
	for i := 0; float64(i)*step <= topV*(1+1e-9); i++ {
		v := float64(i) * step
		x := xAt(v)
		fmt.Fprintf(b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#e5e5e5"/>`+"\n", x, y0, x, y1)
		fmt.Fprintf(b, `<text x="%.1f" y="%.1f" text-anchor="middle">%s</text>`+"\n", x, y1+16, xmlText(tick(v)))
	}
	fmt.Fprintf(b, `<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#888888"/>`+"\n", peerBarX0, y1, peerBarX1, y1)
	for i, name := range names {
		yc := y0 + 4 + float64(i*peerRowH) + peerRowH/2
		fmt.Fprintf(b, `<text x="%d" y="%.1f" text-anchor="end">%s</text>`+"\n", peerLabelX, yc+4, xmlText(name))
		bar := bars[i]
		x := float64(peerBarX0)
		for j, v := range bar.segs {
			w := xAt(v) - peerBarX0
			fmt.Fprintf(b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%d" fill="%s"/>`+"\n", x, yc-peerBarH/2, w, peerBarH, peerColors[min(j, 1)])
			x += w
		}
		for _, v := range bar.dots {
			fmt.Fprintf(b, `<circle cx="%.1f" cy="%.1f" r="3" fill="#222222"/>`+"\n", xAt(v), yc)
		}
		end := x
		for _, v := range bar.dots {
			end = max(end, xAt(v))
		}
		fmt.Fprintf(b, `<text x="%.1f" y="%.1f">%s</text>`+"\n", end+8, yc+4, xmlText(bar.label))
	}
}
