package bench

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// WriteTable writes r as a Markdown table, one row per Result, grouped by
// Group in order of first appearance, preceded by a line describing the
// machine and the run. Cells are padded so that the table also reads well
// in a terminal. Numbers have 3 significant digits (1.16M, 757K, 950); a
// figure that was not measured is "-"; a failed scenario shows its error
// in the figures column.
func (r *Report) WriteTable(w io.Writer) error {
	var b bytes.Buffer
	b.WriteString(r.header())
	b.WriteString("\n\n")
	rows := [][]string{{"scenario", "setup", "events/s", "× baseline", "p50 / p99 / p999", "RSS (MiB)", "B/key", "allocs/event", "figures"}}
	for _, i := range groupOrder(r.Results) {
		rows = append(rows, tableRow(&r.Results[i]))
	}
	writeMarkdown(&b, rows)
	_, err := w.Write(b.Bytes())
	return err
}

// header is the line above the table: machine, mode, start and commit.
func (r *Report) header() string {
	m := r.Machine
	cpu := m.CPU
	if cpu == "" {
		cpu = "CPU unknown"
	}
	mach := []string{cpu, pluralN(m.Cores, "core")}
	if m.MemGiB > 0 {
		mach = append(mach, strconv.FormatFloat(m.MemGiB, 'f', 1, 64)+" GiB")
	}
	if m.OS != "" || m.Arch != "" {
		mach = append(mach, m.OS+"/"+m.Arch)
	}
	if m.Go != "" {
		mach = append(mach, m.Go)
	}
	run := []string{"mode " + orDash(r.Mode), "started " + fmtStarted(r.Started)}
	if r.Commit != "" {
		run = append(run, "commit "+r.Commit)
	}
	return mdEscape("**Machine:** " + strings.Join(mach, ", ") + ". **Run:** " + strings.Join(run, ", ") + ".")
}

func fmtStarted(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.Format("2006-01-02 15:04:05 MST")
}

// groupOrder returns the indexes of rs ordered by group, groups in order
// of first appearance, rows of a group in their order.
func groupOrder(rs []Result) []int {
	var groups []string
	byGroup := map[string][]int{}
	for i := range rs {
		g := rs[i].Group
		if _, ok := byGroup[g]; !ok {
			groups = append(groups, g)
		}
		byGroup[g] = append(byGroup[g], i)
	}
	out := make([]int, 0, len(rs))
	for _, g := range groups {
		out = append(out, byGroup[g]...)
	}
	return out
}

// tableRow formats the cells of one result.
func tableRow(res *Result) []string {
	row := []string{res.Scenario, setupString(res), "-", "-", "-", "-", "-", "-", ""}
	if res.EventsPerSec > 0 {
		row[2] = siNum(res.EventsPerSec)
	}
	if ratio := res.Ratio(); ratio > 0 {
		row[3] = strconv.FormatFloat(ratio, 'f', 2, 64) + "×"
	}
	if l := res.Latency; l != nil {
		row[4] = l.String()
	}
	if res.RSSBytes > 0 {
		row[5] = fig3(float64(res.RSSBytes) / (1 << 20))
	}
	if res.BytesPerKey > 0 {
		row[6] = fig3(res.BytesPerKey)
	}
	if res.AllocsPerEvent >= 0 && res.Err == "" {
		row[7] = fig3(res.AllocsPerEvent)
	}
	var figs []string
	if res.Err != "" {
		figs = append(figs, "error: "+res.Err)
	}
	for _, f := range res.Figures {
		figs = append(figs, f.Name+": "+f.Value)
	}
	row[8] = strings.Join(figs, "; ")
	for i := range row {
		row[i] = mdEscape(row[i])
	}
	return row
}

// setupString is the compact setup of a result, e.g.
// "100K keys · 82 B · batch 1000 · 12 parts · 2 cores · kfake · 1 rule".
// Fields that are zero are left out; "-" when all are.
func setupString(res *Result) string {
	s := res.Setup
	var p []string
	if s.Keys > 0 {
		p = append(p, siNum(float64(s.Keys))+" "+pluralWord(s.Keys, "key"))
	}
	if s.EventBytes > 0 {
		p = append(p, strconv.Itoa(s.EventBytes)+" B")
	}
	if s.Batch > 0 {
		p = append(p, "batch "+strconv.Itoa(s.Batch))
	}
	if s.Partitions > 0 {
		p = append(p, pluralN(s.Partitions, "part"))
	}
	if s.Nodes > 1 { // one node is the default and goes without saying
		p = append(p, pluralN(s.Nodes, "node"))
	}
	if s.Cores > 0 {
		p = append(p, pluralN(s.Cores, "core"))
	}
	if s.GOMAXPROCS > 0 {
		p = append(p, "GOMAXPROCS "+strconv.Itoa(s.GOMAXPROCS))
	}
	if s.Broker != "" {
		p = append(p, s.Broker)
	}
	if s.Rules > 0 {
		p = append(p, pluralN(s.Rules, "rule"))
	}
	switch s.IDs {
	case "on":
		p = append(p, "ids")
	case "off":
		p = append(p, "no ids")
	}
	if l := res.Latency; l != nil && l.OfferedPerSec > 0 {
		p = append(p, "@"+siNum(l.OfferedPerSec)+"/s")
	}
	if s.Events > 0 {
		p = append(p, siNum(float64(s.Events))+" "+pluralWord(s.Events, "event"))
	}
	if len(p) == 0 {
		return "-"
	}
	return strings.Join(p, " · ")
}

func pluralN(n int, word string) string { return strconv.Itoa(n) + " " + pluralWord(n, word) }

func pluralWord(n int, word string) string {
	if n == 1 {
		return word
	}
	return word + "s"
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// mdEscape makes s safe in a Markdown table cell: one line, pipes escaped.
func mdEscape(s string) string {
	s = strings.NewReplacer("\r\n", " ", "\n", " ", "\r", " ", "|", `\|`).Replace(s)
	return strings.ToValidUTF8(s, "\uFFFD")
}

// writeMarkdown writes rows (the first is the header) as a Markdown table
// with every column but the last padded to its widest cell.
func writeMarkdown(b *bytes.Buffer, rows [][]string) {
	if len(rows) == 0 {
		return
	}
	width := make([]int, len(rows[0]))
	for _, row := range rows {
		for i, c := range row {
			width[i] = max(width[i], utf8.RuneCountInString(c), 3)
		}
	}
	line := func(row []string) {
		for i, c := range row {
			b.WriteString("| ")
			b.WriteString(c)
			if i < len(row)-1 {
				b.WriteString(strings.Repeat(" ", width[i]-utf8.RuneCountInString(c)+1))
			}
		}
		b.WriteString(" |\n")
	}
	line(rows[0])
	for i := range width {
		b.WriteString("|")
		if i < len(width)-1 {
			b.WriteString(strings.Repeat("-", width[i]+2))
		} else {
			b.WriteString("---")
		}
	}
	b.WriteString("|\n")
	for _, row := range rows[1:] {
		line(row)
	}
}

// round3 rounds v to 3 significant digits.
func round3(v float64) float64 {
	if v == 0 || math.IsInf(v, 0) || math.IsNaN(v) {
		return v
	}
	f, _ := strconv.ParseFloat(strconv.FormatFloat(v, 'g', 3, 64), 64)
	return f
}

// plain3 formats v with at most 3 significant digits, no exponent:
// 950, 12.3, 0.36.
func plain3(v float64) string {
	return strconv.FormatFloat(round3(v), 'f', -1, 64)
}

// siNum formats v with 3 significant digits and a K, M or G suffix:
// 1.16M, 757K, 12.3K, 950, 0.36.
func siNum(v float64) string {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return "-"
	}
	r := round3(v)
	switch a := math.Abs(r); {
	case a >= 1e9:
		return plain3(r/1e9) + "G"
	case a >= 1e6:
		return plain3(r/1e6) + "M"
	case a >= 1e3:
		return plain3(r/1e3) + "K"
	}
	return plain3(r)
}

// fig3 formats a plain figure (MiB, bytes, allocations) with 3
// significant digits below 1000 and as a whole number above.
func fig3(v float64) string {
	if math.Abs(v) >= 1000 {
		return strconv.FormatFloat(v, 'f', 0, 64)
	}
	return plain3(v)
}

// fmtMs formats d in milliseconds with about 3 significant digits and
// the decimals fixed by magnitude: 0.041, 0.41, 1.90, 12.3, 130.
// String is the latency as the table shows it: "p50 / p99 / p999 ms".
func (l *Latency) String() string {
	return fmtMs(l.P50) + " / " + fmtMs(l.P99) + " / " + fmtMs(l.P999) + " ms"
}

func fmtMs(d time.Duration) string {
	ms := float64(d) / float64(time.Millisecond)
	switch a := math.Abs(ms); {
	case a == 0:
		return "0"
	case a < 0.1:
		return strconv.FormatFloat(ms, 'f', 3, 64)
	case a < 10:
		return strconv.FormatFloat(ms, 'f', 2, 64)
	case a < 100:
		return strconv.FormatFloat(ms, 'f', 1, 64)
	}
	return strconv.FormatFloat(ms, 'f', 0, 64)
}

// WriteJSON writes r as indented JSON; ReadJSON reads it back.
func (r *Report) WriteJSON(w io.Writer) error {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(r); err != nil {
		return fmt.Errorf("bench: encode report: %w", err)
	}
	_, err := w.Write(b.Bytes())
	return err
}

// ReadJSON reads a report written by WriteJSON. Unknown fields (from a
// later version) are ignored.
func ReadJSON(rd io.Reader) (*Report, error) {
	var r Report
	if err := json.NewDecoder(rd).Decode(&r); err != nil {
		return nil, fmt.Errorf("bench: read report: %w", err)
	}
	return &r, nil
}

// Compare writes a Markdown table comparing the events/s and p99 latency
// of the scenarios present in both before and after (in after's order), each
// with the change in percent, and lists the scenarios present in only
// one of them. A note says when the reports come from different machines.
func Compare(w io.Writer, before, after *Report) error {
	if before == nil || after == nil {
		return errors.New("bench: compare: nil report")
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "**Comparison:** %s → %s.\n", runName(before), runName(after))
	if before.Machine != after.Machine {
		fmt.Fprintf(&b, "\n**Note:** the machines differ (%s vs %s): compare with care.\n",
			mdEscape(machineShort(before.Machine)), mdEscape(machineShort(after.Machine)))
	}
	olds := map[string]*Result{}
	for i := range before.Results {
		if _, dup := olds[before.Results[i].Scenario]; !dup {
			olds[before.Results[i].Scenario] = &before.Results[i]
		}
	}
	rows := [][]string{{"scenario", "events/s old", "events/s new", "change", "p99 old (ms)", "p99 new (ms)", "change"}}
	seen := map[string]bool{}
	var onlyNew []string
	for i := range after.Results {
		n := &after.Results[i]
		if seen[n.Scenario] {
			continue
		}
		seen[n.Scenario] = true
		o, ok := olds[n.Scenario]
		if !ok {
			onlyNew = append(onlyNew, n.Scenario)
			continue
		}
		row := []string{n.Scenario, rateCell(o), rateCell(n), "-", p99Cell(o), p99Cell(n), "-"}
		if o.Err == "" && n.Err == "" {
			row[3] = pctChange(o.EventsPerSec, n.EventsPerSec)
			if o.Latency != nil && n.Latency != nil {
				row[6] = pctChange(float64(o.Latency.P99), float64(n.Latency.P99))
			}
		}
		for j := range row {
			row[j] = mdEscape(row[j])
		}
		rows = append(rows, row)
	}
	var onlyOld []string
	for i := range before.Results {
		if s := before.Results[i].Scenario; !seen[s] {
			seen[s] = true
			onlyOld = append(onlyOld, s)
		}
	}
	b.WriteString("\n")
	if len(rows) == 1 {
		b.WriteString("No scenario is in both reports.\n")
	} else {
		writeMarkdown(&b, rows)
	}
	if len(onlyOld) > 0 {
		fmt.Fprintf(&b, "\nOnly in old: %s.\n", mdEscape(strings.Join(onlyOld, ", ")))
	}
	if len(onlyNew) > 0 {
		fmt.Fprintf(&b, "\nOnly in new: %s.\n", mdEscape(strings.Join(onlyNew, ", ")))
	}
	_, err := w.Write(b.Bytes())
	return err
}

// runName names a report in a comparison: commit, start and mode.
func runName(r *Report) string {
	name := "commit " + orDash(r.Commit)
	return mdEscape(name + " (" + fmtStarted(r.Started) + ", mode " + orDash(r.Mode) + ")")
}

func machineShort(m Machine) string {
	return fmt.Sprintf("%s, %s, %s/%s", orDash(m.CPU), pluralN(m.Cores, "core"), m.OS, m.Arch)
}

func rateCell(r *Result) string {
	switch {
	case r.Err != "":
		return "error"
	case r.EventsPerSec <= 0:
		return "-"
	}
	return siNum(r.EventsPerSec)
}

func p99Cell(r *Result) string {
	switch {
	case r.Err != "":
		return "error"
	case r.Latency == nil:
		return "-"
	}
	return fmtMs(r.Latency.P99)
}

// pctChange formats the change from a to b in percent, "-" when either
// is 0.
func pctChange(a, b float64) string {
	if a <= 0 || b <= 0 {
		return "-"
	}
	return fmt.Sprintf("%+.1f%%", (b-a)/a*100)
}
