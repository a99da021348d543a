// Package deploycheck checks the monitoring files under deploy/ against a
// node: it takes the metric names out of the PromQL expressions of the
// Grafana dashboard and of the Prometheus rules, and reports the names a
// node's /metrics does not expose. A dashboard panel or an alert over a
// metric that does not exist shows nothing and never fires, silently; the
// tests that run a cluster call Missing on what its nodes expose.
//
// Names are found by a tokenizer, not a full PromQL parser (see
// MetricNames), which is enough for the expressions written here.
package deploycheck

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"slices"
	"sort"
	"strings"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"go.yaml.in/yaml/v3"
)

// Errors.
var (
	// ErrSyntax is returned (wrapped) for an expression MetricNames cannot
	// tokenize: an unclosed string, bracket or brace.
	ErrSyntax = errors.New("deploycheck: malformed expression")
	// ErrNoExpr is returned (wrapped) for a dashboard or rules file without
	// a single expression: a file that checks nothing is a mistake.
	ErrNoExpr = errors.New("deploycheck: no expression")
)

// Synthetic are the series Prometheus makes itself for every target: an
// expression may name them though no node exposes them.
var Synthetic = []string{"up", "scrape_duration_seconds", "scrape_samples_scraped",
	"scrape_samples_post_metric_relabeling", "scrape_series_added", "ALERTS", "ALERTS_FOR_STATE"}

// keywords are the PromQL words that are not metric names where an
// identifier may stand: the binary operators, the modifiers and the
// number literals.
var keywords = map[string]bool{
	"and": true, "or": true, "unless": true, "bool": true, "offset": true,
	"by": true, "without": true, "on": true, "ignoring": true, "group_left": true, "group_right": true,
	"inf": true, "nan": true,
}

// aggregations are the PromQL aggregation operators, which may be
// followed by "by" or "without" before their parenthesised argument.
var aggregations = map[string]bool{
	"sum": true, "min": true, "max": true, "avg": true, "group": true, "stddev": true, "stdvar": true,
	"count": true, "count_values": true, "bottomk": true, "topk": true, "quantile": true,
	"limitk": true, "limit_ratio": true,
}

// labelLists are the keywords followed by a parenthesised list of label
// names.
var labelLists = map[string]bool{
	"by": true, "without": true, "on": true, "ignoring": true, "group_left": true, "group_right": true,
}

// MetricNames returns the metric names expr selects, sorted and without
// repeats. It tokenizes PromQL: an identifier is a metric name unless it
// is followed by "(" (a function or an aggregation), is a keyword (and,
// or, unless, bool, offset, by, without, on, ignoring, group_left,
// group_right, inf, nan), is an aggregation followed by by or without
// (sum by (l) (...)), or stands in a label list (by (...), on (...),
// ...), inside a selector's braces (label names), or inside brackets (a
// range or subquery). {__name__="x"} and {__name__=~"x"} name x (a regular
// expression is taken as it is). Strings, numbers, durations, comments
// and Grafana variables ($node, ${node}, $__rate_interval) are skipped.
func MetricNames(expr string) ([]string, error) {
	var names []string
	s := expr
	i := 0
	for i < len(s) {
		c := s[i]
		switch {
		case c == '#':
			for i < len(s) && s[i] != '\n' {
				i++
			}
		case c == '"' || c == '\'' || c == '`':
			end, err := skipString(s, i)
			if err != nil {
				return nil, err
			}
			i = end
		case c == '$':
			i = skipVariable(s, i)
		case c == '{':
			end := closing(s, i, '{', '}')
			if end < 0 {
				return nil, fmt.Errorf("%w: unclosed { at %d in %q", ErrSyntax, i, expr)
			}
			if n := nameMatcher(s[i+1 : end]); n != "" {
				names = append(names, n)
			}
			i = end + 1
		case c == '[':
			end := closing(s, i, '[', ']')
			if end < 0 {
				return nil, fmt.Errorf("%w: unclosed [ at %d in %q", ErrSyntax, i, expr)
			}
			// A subquery's brackets hold durations only.
			i = end + 1
		case isDigit(c) || (c == '.' && i+1 < len(s) && isDigit(s[i+1])):
			i = skipNumber(s, i)
		case isIdentStart(c):
			j := i + 1
			for j < len(s) && isIdent(s[j]) {
				j++
			}
			word := s[i:j]
			next := skipSpace(s, j)
			switch {
			case labelLists[strings.ToLower(word)]:
				if next < len(s) && s[next] == '(' {
					end := closing(s, next, '(', ')')
					if end < 0 {
						return nil, fmt.Errorf("%w: unclosed ( at %d in %q", ErrSyntax, next, expr)
					}
					j = end + 1
				}
			case keywords[strings.ToLower(word)]:
			case aggregations[strings.ToLower(word)] && labelLists[strings.ToLower(wordAt(s, next))]:
				// sum by (label) (expr)
			case next < len(s) && s[next] == '(':
				// A function or an aggregation: its arguments are read on.
			default:
				names = append(names, word)
			}
			i = j
		default:
			i++
		}
	}
	sort.Strings(names)
	return slices.Compact(names), nil
}

// skipString returns the index after the string literal at s[i].
func skipString(s string, i int) (int, error) {
	q := s[i]
	for j := i + 1; j < len(s); j++ {
		switch {
		case s[j] == '\\' && q != '`':
			j++
		case s[j] == q:
			return j + 1, nil
		}
	}
	return 0, fmt.Errorf("%w: unclosed string at %d in %q", ErrSyntax, i, s)
}

// skipVariable returns the index after the Grafana variable at s[i]:
// $name or ${name...}.
func skipVariable(s string, i int) int {
	j := i + 1
	if j < len(s) && s[j] == '{' {
		if end := strings.IndexByte(s[j:], '}'); end >= 0 {
			return j + end + 1
		}
		return len(s)
	}
	for j < len(s) && isIdent(s[j]) {
		j++
	}
	return j
}

// skipNumber returns the index after the number or duration at s[i]:
// 1, 0.5, 1e-3, 0x1f, 5m, 1h30m.
func skipNumber(s string, i int) int {
	j := i
	for j < len(s) {
		c := s[j]
		switch {
		case isIdent(c) || c == '.':
			j++
		case (c == '+' || c == '-') && (s[j-1] == 'e' || s[j-1] == 'E') && !strings.HasPrefix(strings.ToLower(s[i:j]), "0x"):
			j++
		default:
			return j
		}
	}
	return j
}

// closing returns the index of the bracket closing the one at s[i],
// skipping strings, or -1.
func closing(s string, i int, open, close byte) int {
	depth := 0
	for j := i; j < len(s); j++ {
		switch c := s[j]; {
		case c == '"' || c == '\'' || c == '`':
			end, err := skipString(s, j)
			if err != nil {
				return -1
			}
			j = end - 1
		case c == open:
			depth++
		case c == close:
			depth--
			if depth == 0 {
				return j
			}
		}
	}
	return -1
}

// nameMatcherRE is a __name__ matcher of a selector's braces.
var nameMatcherRE = regexp.MustCompile(`(?:^|,)\s*__name__\s*=~?\s*(?:"([^"]*)"|'([^']*)'|` + "`([^`]*)`" + `)`)

// nameMatcher returns the metric a selector's braces name with __name__,
// or "".
func nameMatcher(braces string) string {
	m := nameMatcherRE.FindStringSubmatch(braces)
	if m == nil {
		return ""
	}
	return m[1] + m[2] + m[3]
}

// wordAt returns the identifier at s[i], or "".
func wordAt(s string, i int) string {
	j := i
	for j < len(s) && isIdent(s[j]) {
		j++
	}
	return s[i:j]
}

func skipSpace(s string, i int) int {
	for i < len(s) && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r') {
		i++
	}
	return i
}

func isDigit(c byte) bool      { return c >= '0' && c <= '9' }
func isIdentStart(c byte) bool { return c == '_' || c == ':' || (c|0x20 >= 'a' && c|0x20 <= 'z') }
func isIdent(c byte) bool      { return isIdentStart(c) || isDigit(c) }

// DashboardExprs returns the PromQL expressions of a Grafana dashboard
// (its JSON model): every panel target's "expr", in rows and nested panels
// too, and the metric of each query variable's label_values(metric, label)
// or query_result(expr). It fails with ErrNoExpr when there is none.
func DashboardExprs(dashboard []byte) ([]string, error) {
	var doc any
	if err := json.Unmarshal(dashboard, &doc); err != nil {
		return nil, fmt.Errorf("deploycheck: dashboard: %w", err)
	}
	var exprs []string
	var walk func(v any, key string)
	walk = func(v any, key string) {
		switch v := v.(type) {
		case map[string]any:
			for k, x := range v {
				walk(x, k)
			}
		case []any:
			for _, x := range v {
				walk(x, key)
			}
		case string:
			switch key {
			case "expr":
				exprs = append(exprs, v)
			case "query":
				if e := variableExpr(v); e != "" {
					exprs = append(exprs, e)
				}
			}
		}
	}
	walk(doc, "")
	if len(exprs) == 0 {
		return nil, fmt.Errorf("%w in the dashboard", ErrNoExpr)
	}
	sort.Strings(exprs)
	return exprs, nil
}

// variableRE is a Grafana Prometheus query variable: label_values(label),
// label_values(expr, label), metrics(regex), query_result(expr).
var variableRE = regexp.MustCompile(`^\s*(label_values|query_result|metrics|label_names)\((.*)\)\s*$`)

// variableExpr returns the PromQL expression of a query variable's
// query, or "" when it has none.
func variableExpr(q string) string {
	m := variableRE.FindStringSubmatch(q)
	if m == nil {
		return ""
	}
	switch m[1] {
	case "query_result":
		return m[2]
	case "label_values":
		if k := strings.LastIndexByte(m[2], ','); k >= 0 {
			return m[2][:k]
		}
	}
	return ""
}

// Rule is one rule of a Prometheus rules file.
type Rule struct {
	Group  string // the group's name
	Name   string // the alert's or the recording rule's name
	Expr   string
	Record bool // a recording rule (its Name is a metric name then)
}

// RuleExprs returns the rules of a Prometheus rules file. It fails with
// ErrNoExpr when there is none.
func RuleExprs(rulesFile []byte) ([]Rule, error) {
	var doc struct {
		Groups []struct {
			Name  string `yaml:"name"`
			Rules []struct {
				Alert  string `yaml:"alert"`
				Record string `yaml:"record"`
				Expr   string `yaml:"expr"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	if err := yaml.Unmarshal(rulesFile, &doc); err != nil {
		return nil, fmt.Errorf("deploycheck: rules: %w", err)
	}
	var out []Rule
	for _, g := range doc.Groups {
		for _, r := range g.Rules {
			name := r.Alert
			if r.Record != "" {
				name = r.Record
			}
			out = append(out, Rule{Group: g.Name, Name: name, Expr: r.Expr, Record: r.Record != ""})
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%w in the rules file", ErrNoExpr)
	}
	return out, nil
}

// Exposed is what a node's /metrics exposes: metric family names and
// their types. Add merges another node's.
type Exposed map[string]dto.MetricType

// ParseExposition reads a Prometheus text exposition (GET /metrics) and
// returns its families that have at least one sample.
func ParseExposition(r io.Reader) (Exposed, error) {
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(r)
	if err != nil {
		return nil, fmt.Errorf("deploycheck: /metrics: %w", err)
	}
	out := make(Exposed, len(fams))
	for name, f := range fams {
		if len(f.GetMetric()) > 0 {
			out[name] = f.GetType()
		}
	}
	return out, nil
}

// Add adds the families of o to e.
func (e Exposed) Add(o Exposed) {
	for k, v := range o {
		e[k] = v
	}
}

// Has reports whether name is exposed: a family of that name, or a
// series of a histogram (name_bucket, _sum, _count) or summary (_sum,
// _count) family.
func (e Exposed) Has(name string) bool {
	if _, ok := e[name]; ok {
		return true
	}
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		base, ok := strings.CutSuffix(name, suffix)
		if !ok {
			continue
		}
		switch e[base] {
		case dto.MetricType_HISTOGRAM, dto.MetricType_GAUGE_HISTOGRAM:
			return true
		case dto.MetricType_SUMMARY:
			if suffix != "_bucket" {
				return true
			}
		}
	}
	return false
}

// Missing returns the names among refs that e does not expose, sorted,
// leaving out Synthetic names and the names of recording rules given in
// recorded (they exist once Prometheus evaluates the rule).
func (e Exposed) Missing(refs []string, recorded ...string) []string {
	var out []string
	for _, n := range refs {
		if slices.Contains(Synthetic, n) || slices.Contains(recorded, n) || e.Has(n) {
			continue
		}
		out = append(out, n)
	}
	sort.Strings(out)
	return slices.Compact(out)
}

// References returns the metric names referenced by the dashboard and the
// rules file, sorted and without repeats, and the names the rules file
// records.
func References(dashboard, rulesFile []byte) (names, recorded []string, err error) {
	exprs, err := DashboardExprs(dashboard)
	if err != nil {
		return nil, nil, err
	}
	rules, err := RuleExprs(rulesFile)
	if err != nil {
		return nil, nil, err
	}
	for _, r := range rules {
		exprs = append(exprs, r.Expr)
		if r.Record {
			recorded = append(recorded, r.Name)
		}
	}
	for _, x := range exprs {
		ns, err := MetricNames(x)
		if err != nil {
			return nil, nil, err
		}
		names = append(names, ns...)
	}
	sort.Strings(names)
	return slices.Compact(names), recorded, nil
}

// Check reads the dashboard and the rules file and the /metrics
// expositions of the nodes of a cluster, and returns the metric names the
// files reference and those that no node exposes (Missing over the union
// of the nodes).
func Check(dashboard, rulesFile []byte, metrics ...io.Reader) (names, missing []string, err error) {
	names, recorded, err := References(dashboard, rulesFile)
	if err != nil {
		return nil, nil, err
	}
	exposed := Exposed{}
	for _, m := range metrics {
		e, err := ParseExposition(m)
		if err != nil {
			return nil, nil, err
		}
		exposed.Add(e)
	}
	return names, exposed.Missing(names, recorded...), nil
}
