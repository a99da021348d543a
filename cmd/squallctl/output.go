package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/squallhq/squall/replay"
)

// printDoc prints v as JSON (indented) or YAML, as -o asks.
func (a *app) printDoc(v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return a.printRaw(b)
}

// printRaw prints a JSON document as JSON (indented) or YAML, as -o asks,
// keeping its field order.
func (a *app) printRaw(doc []byte) error {
	if a.output == outYAML {
		y, err := jsonToYAML(doc)
		if err != nil {
			return err
		}
		_, err = a.out.Write(y)
		return err
	}
	var b bytes.Buffer
	if err := json.Indent(&b, doc, "", "  "); err != nil {
		return err
	}
	b.WriteByte('\n')
	_, err := a.out.Write(b.Bytes())
	return err
}

// jsonToYAML converts a JSON document to block-style YAML with the same
// field order; strings that would read as another type are quoted.
func jsonToYAML(doc []byte) ([]byte, error) {
	var n yaml.Node
	if err := yaml.Unmarshal(doc, &n); err != nil {
		return nil, fmt.Errorf("yaml: %w", err)
	}
	var plain func(*yaml.Node)
	plain = func(n *yaml.Node) {
		n.Style = 0
		for _, c := range n.Content {
			plain(c)
		}
	}
	plain(&n)
	var b bytes.Buffer
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(&n); err != nil {
		return nil, fmt.Errorf("yaml: %w", err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("yaml: %w", err)
	}
	return b.Bytes(), nil
}

// table writes aligned columns; rows are tab-separated.
type table struct{ tw *tabwriter.Writer }

func newTable(w io.Writer, header ...string) *table {
	t := &table{tw: tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)}
	if len(header) > 0 {
		t.row(header...)
	}
	return t
}

func (t *table) row(cells ...string) { fmt.Fprintln(t.tw, strings.Join(cells, "\t")) }

func (t *table) flush() error { return t.tw.Flush() }

// num formats a float in the shortest form that reads back the same.
func num(v float64) string {
	if math.IsNaN(v) {
		return "-"
	}
	return replay.FormatValue(v)
}

// msTime formats epoch milliseconds as RFC 3339 UTC with milliseconds.
func msTime(ms int64) string {
	return time.UnixMilli(ms).UTC().Format("2006-01-02T15:04:05.000Z07:00")
}

// wallTime formats a wall-clock time like msTime; "-" when zero.
func wallTime(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return msTime(t.UnixMilli())
}

// isTerminal reports whether f, a stream, is a terminal.
func isTerminal(f any) bool {
	file, ok := f.(*os.File)
	if !ok {
		return false
	}
	st, err := file.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// plural returns "1 rule", "2 rules".
func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return strconv.Itoa(n) + " " + noun + "s"
}
