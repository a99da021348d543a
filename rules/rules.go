// Package rules is the pure core of Squall's alert rules (docs/rules.md): it
// parses and validates a rules file, matches rules to keys, and evaluates
// threshold rules in event time and absent (deadman) rules against wall
// times passed in by the caller. It does no I/O besides Load, reads no
// clock and starts no goroutine: the key actor owns a State per (rule, key),
// calls Eval after each event and EvalAbsent from its timers, and publishes
// the returned Transitions.
package rules

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/squallhq/squall/window"
	"go.yaml.in/yaml/v3"
)

// Sentinel errors. Errors returned by Parse and Load wrap ErrInvalid (each
// validation problem is an *Error; several are joined with errors.Join).
var (
	// ErrInvalid is wrapped by every validation error of a rules file.
	ErrInvalid = errors.New("rules: invalid rules file")
	// ErrState is wrapped by State.UnmarshalBinary errors.
	ErrState = errors.New("rules: invalid state encoding")
)

// Error is one validation problem of a rules file. Its text is
// "<file>:<line>: <rule>: <msg>" (the rule part is omitted when the problem
// is not inside a rule). It unwraps to ErrInvalid.
type Error struct {
	File string // File is the name given to Parse (the path for Load).
	Line int    // Line is 1-based; 0 when unknown.
	Rule string // Rule is the rule's name, or "rule N" (1-based) when it has none.
	Msg  string // Msg describes the problem.
}

// Error returns "<file>:<line>: <rule>: <msg>".
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	b.WriteByte(':')
	b.WriteString(strconv.Itoa(e.Line))
	b.WriteString(": ")
	if e.Rule != "" {
		b.WriteString(e.Rule)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Unwrap returns ErrInvalid.
func (e *Error) Unwrap() error { return ErrInvalid }

// Aggregate names the window aggregate a threshold rule compares.
type Aggregate uint8

// Aggregates a threshold rule may use: those of the key-state document.
const (
	AggNone Aggregate = iota // absent rules have no aggregate
	AggCount
	AggSum
	AggMin
	AggMax
	AggMean
	AggLast
	AggRate
	AggP50
	AggP95
	AggP99
)

var aggNames = [...]string{"", "count", "sum", "min", "max", "mean", "last", "rate", "p50", "p95", "p99"}

// String returns the aggregate's name as written in a rules file.
func (a Aggregate) String() string {
	if int(a) < len(aggNames) {
		return aggNames[a]
	}
	return "Aggregate(" + strconv.Itoa(int(a)) + ")"
}

// IsQuantile reports whether a is p50, p95 or p99.
func (a Aggregate) IsQuantile() bool { return a >= AggP50 }

// Op is a comparison operator of a threshold rule.
type Op uint8

// Operators: value <op> threshold.
const (
	OpNone Op = iota
	OpGT      // >
	OpGE      // >=
	OpLT      // <
	OpLE      // <=
	OpEQ      // ==
	OpNE      // !=
)

var opNames = [...]string{"", ">", ">=", "<", "<=", "==", "!="}

// String returns the operator as written in a rules file.
func (o Op) String() string {
	if int(o) < len(opNames) {
		return opNames[o]
	}
	return "Op(" + strconv.Itoa(int(o)) + ")"
}

// Rule is one validated rule. It is either a threshold rule (Absent == 0)
// or an absent rule (Absent > 0, and Aggregate == AggNone). A Rule is
// immutable after Parse and safe for concurrent use.
type Rule struct {
	// Name is unique within its Set.
	Name string
	// Match is the glob on the key: '*' any run of characters (dots
	// included), '?' one character.
	Match string
	// Tags, when non-empty, must all be present with equal values in the
	// key's last tags. Default none.
	Tags map[string]string
	// Aggregate is the compared aggregate (threshold rules only).
	Aggregate Aggregate
	// Over is the sub-window length the aggregate is taken over; 0 (the
	// default) means the whole window.
	Over time.Duration
	// Op and Threshold form the condition "value Op Threshold".
	Op        Op
	Threshold float64
	// For is how long, in event time, the condition must hold before the
	// rule fires. Default 0 (fire on the first event where it holds).
	For time.Duration
	// Absent, when > 0, makes this an absent rule: it fires when a seen key
	// gets no event for Absent of wall-clock time.
	Absent time.Duration
	// Severity is copied into transitions. Default "".
	Severity string
	// Labels are copied into transitions (shared, never modified). Default none.
	Labels map[string]string
	// Line is the line of the rule in its file.
	Line int
}

// IsAbsent reports whether r is an absent (deadman) rule.
func (r *Rule) IsAbsent() bool { return r.Absent > 0 }

// Equal reports whether r and o have the same definition (Line aside). On
// reload, a node keeps the State of a (rule, key) whose rule is Equal to the
// old one, and drops it otherwise.
func (r *Rule) Equal(o *Rule) bool {
	return r.Name == o.Name && r.Match == o.Match && mapsEqual(r.Tags, o.Tags) &&
		r.Aggregate == o.Aggregate && r.Over == o.Over && r.Op == o.Op &&
		(r.Threshold == o.Threshold || (math.IsNaN(r.Threshold) && math.IsNaN(o.Threshold))) &&
		r.For == o.For && r.Absent == o.Absent && r.Severity == o.Severity &&
		mapsEqual(r.Labels, o.Labels)
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// Matches reports whether r applies to key with the given last tags.
func (r *Rule) Matches(key string, tags map[string]string) bool {
	for k, v := range r.Tags {
		if w, ok := tags[k]; !ok || w != v {
			return false
		}
	}
	return matchGlob(r.Match, key)
}

// Set is a validated rules file. It is immutable and safe for concurrent use.
type Set struct {
	// File is the name the set was parsed under.
	File string
	// Source is the text the set was parsed from.
	Source []byte
	// Rules are in file order.
	Rules  []*Rule
	byName map[string]*Rule
}

// Len returns the number of rules.
func (s *Set) Len() int { return len(s.Rules) }

// Rule returns the rule named name, or nil.
func (s *Set) Rule(name string) *Rule { return s.byName[name] }

// Match returns the rules, in file order, that apply to key with the given
// last tags (nil when none). Cost: one glob match per rule (linear in the
// lengths of pattern and key, no allocation) plus a tag lookup per rule tag;
// it allocates only the returned slice. The result depends only on (key,
// tags), so a key actor computes it once on activation and again only when
// its tags change (window.Window.Tags returns a new map when they do) or the
// Set is reloaded.
func (s *Set) Match(key string, tags map[string]string) []*Rule {
	return s.AppendMatch(nil, key, tags)
}

// AppendMatch appends the rules that apply to key to dst and returns it.
func (s *Set) AppendMatch(dst []*Rule, key string, tags map[string]string) []*Rule {
	for _, r := range s.Rules {
		if r.Matches(key, tags) {
			dst = append(dst, r)
		}
	}
	return dst
}

// CheckShape reports rules whose Over does not fit the window shape: longer
// than Retention or not a multiple of Resolution. Errors wrap ErrInvalid.
func (s *Set) CheckShape(sh *window.Shape) error {
	var errs []error
	for _, r := range s.Rules {
		if r.Over == 0 {
			continue
		}
		if r.Over > sh.Retention {
			errs = append(errs, &Error{s.File, r.Line, r.Name, fmt.Sprintf("over %v is longer than the retention %v", r.Over, sh.Retention)})
		} else if sh.Resolution > 0 && r.Over%sh.Resolution != 0 {
			errs = append(errs, &Error{s.File, r.Line, r.Name, fmt.Sprintf("over %v is not a multiple of the resolution %v", r.Over, sh.Resolution)})
		}
	}
	return errors.Join(errs...)
}

// Load reads and parses the rules file at path; errors name path.
func Load(path string) (*Set, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("rules: %w", err)
	}
	return Parse(filepath.Clean(path), data)
}

// Parse parses and validates a rules file (docs/rules.md). name is used in error
// messages. It reports every problem at once, joined with errors.Join, each
// an *Error naming the file and line. An empty file or an empty rules list
// is a valid empty Set.
func Parse(name string, data []byte) (*Set, error) {
	s := &Set{File: name, Source: bytes.Clone(data), byName: map[string]*Rule{}}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, &Error{File: name, Line: yamlErrLine(err), Msg: err.Error()}
	}
	if doc.Kind == 0 || len(doc.Content) == 0 {
		return s, nil
	}
	root := doc.Content[0]
	p := &parser{file: name}
	if root.Kind != yaml.MappingNode {
		p.errf(root, "", "top level must be a mapping with a rules list")
		return nil, errors.Join(p.errs...)
	}
	var list *yaml.Node
	for i := 0; i+1 < len(root.Content); i += 2 {
		k, v := root.Content[i], root.Content[i+1]
		if k.Value == "rules" {
			list = v
		} else {
			p.errf(k, "", "unknown field %q", k.Value)
		}
	}
	if list != nil && !(list.Kind == yaml.ScalarNode && list.Tag == "!!null") {
		if list.Kind != yaml.SequenceNode {
			p.errf(list, "", "rules must be a list")
		} else {
			lines := map[string]int{}
			for i, n := range list.Content {
				r := p.rule(i, n)
				if r == nil {
					continue
				}
				if first, dup := lines[r.Name]; dup {
					p.errf(n, r.Name, "duplicate rule name (first at line %d)", first)
					continue
				}
				lines[r.Name] = r.Line
				s.Rules = append(s.Rules, r)
				s.byName[r.Name] = r
			}
		}
	}
	if len(p.errs) > 0 {
		return nil, errors.Join(p.errs...)
	}
	return s, nil
}

// yamlErrLine extracts the line from a yaml syntax error ("yaml: line 3: ...").
func yamlErrLine(err error) int {
	msg := err.Error()
	if _, rest, ok := strings.Cut(msg, "line "); ok {
		end := strings.IndexFunc(rest, func(r rune) bool { return r < '0' || r > '9' })
		if end > 0 {
			n, _ := strconv.Atoi(rest[:end])
			return n
		}
	}
	return 0
}

type parser struct {
	file string
	errs []error
}

func (p *parser) errf(n *yaml.Node, rule, format string, args ...any) {
	p.errs = append(p.errs, &Error{File: p.file, Line: n.Line, Rule: rule, Msg: fmt.Sprintf(format, args...)})
}

// rule parses one list item; it returns nil when the item has errors.
func (p *parser) rule(i int, n *yaml.Node) *Rule {
	label := "rule " + strconv.Itoa(i+1)
	if n.Kind != yaml.MappingNode {
		p.errf(n, label, "a rule must be a mapping")
		return nil
	}
	// Find the name first so every later error names the rule.
	for j := 0; j+1 < len(n.Content); j += 2 {
		if n.Content[j].Value == "name" && n.Content[j+1].Kind == yaml.ScalarNode && n.Content[j+1].Value != "" {
			label = n.Content[j+1].Value
		}
	}
	before := len(p.errs)
	r := &Rule{Line: n.Line}
	seen := map[string]*yaml.Node{}
	for j := 0; j+1 < len(n.Content); j += 2 {
		k, v := n.Content[j], n.Content[j+1]
		if _, dup := seen[k.Value]; dup {
			p.errf(k, label, "duplicate field %q", k.Value)
			continue
		}
		seen[k.Value] = k
		switch k.Value {
		case "name":
			r.Name = p.str(v, label, "name")
		case "match":
			r.Match = p.str(v, label, "match")
		case "tags":
			r.Tags = p.strMap(v, label, "tags")
		case "labels":
			r.Labels = p.strMap(v, label, "labels")
		case "severity":
			r.Severity = p.str(v, label, "severity")
		case "aggregate":
			s := p.str(v, label, "aggregate")
			for a := AggCount; a <= AggP99; a++ {
				if a.String() == s {
					r.Aggregate = a
				}
			}
			if r.Aggregate == AggNone && s != "" {
				p.errf(v, label, "unknown aggregate %q (want count|sum|min|max|mean|last|rate|p50|p95|p99)", s)
			}
		case "op":
			s := p.str(v, label, "op")
			for o := OpGT; o <= OpNE; o++ {
				if o.String() == s {
					r.Op = o
				}
			}
			if r.Op == OpNone && s != "" {
				p.errf(v, label, "unknown op %q (want > >= < <= == !=)", s)
			}
		case "threshold":
			f, err := strconv.ParseFloat(v.Value, 64)
			if v.Kind != yaml.ScalarNode || err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
				p.errf(v, label, "threshold %q is not a finite number", v.Value)
			}
			r.Threshold = f
		case "over":
			r.Over = p.dur(v, label, "over")
		case "for":
			r.For = p.dur(v, label, "for")
		case "absent":
			n0 := len(p.errs)
			r.Absent = p.dur(v, label, "absent")
			if r.Absent == 0 && len(p.errs) == n0 {
				p.errf(v, label, "absent must be positive")
			}
		default:
			p.errf(k, label, "unknown field %q", k.Value)
		}
	}
	if r.Name == "" && seen["name"] == nil {
		p.errf(n, label, "missing name")
	}
	if r.Match == "" && seen["match"] == nil {
		p.errf(n, label, "missing match")
	}
	if seen["absent"] != nil {
		for _, f := range []string{"aggregate", "op", "threshold", "over", "for"} {
			if k := seen[f]; k != nil {
				p.errf(k, label, "%s is not allowed in an absent rule (a rule has either absent or a threshold)", f)
			}
		}
	} else {
		for _, f := range []string{"aggregate", "op", "threshold"} {
			if seen[f] == nil {
				p.errf(n, label, "missing %s (a threshold rule needs aggregate, op and threshold, or use absent)", f)
			}
		}
	}
	if len(p.errs) > before {
		return nil
	}
	return r
}

func (p *parser) str(v *yaml.Node, label, field string) string {
	if v.Kind != yaml.ScalarNode || v.Tag == "!!null" {
		p.errf(v, label, "%s must be a string", field)
		return ""
	}
	if v.Value == "" {
		p.errf(v, label, "%s must not be empty", field)
	}
	return v.Value
}

func (p *parser) strMap(v *yaml.Node, label, field string) map[string]string {
	if v.Kind == yaml.ScalarNode && v.Tag == "!!null" {
		return nil
	}
	if v.Kind != yaml.MappingNode {
		p.errf(v, label, "%s must be a mapping of strings", field)
		return nil
	}
	m := make(map[string]string, len(v.Content)/2)
	for j := 0; j+1 < len(v.Content); j += 2 {
		k, x := v.Content[j], v.Content[j+1]
		if k.Kind != yaml.ScalarNode || x.Kind != yaml.ScalarNode {
			p.errf(k, label, "%s must be a mapping of strings", field)
			continue
		}
		if _, dup := m[k.Value]; dup {
			p.errf(k, label, "duplicate %s key %q", field, k.Value)
		}
		m[k.Value] = x.Value
	}
	if len(m) == 0 {
		return nil
	}
	return m
}

func (p *parser) dur(v *yaml.Node, label, field string) time.Duration {
	if v.Kind != yaml.ScalarNode {
		p.errf(v, label, "%s must be a duration like 5m", field)
		return 0
	}
	d, err := time.ParseDuration(v.Value)
	if err != nil {
		p.errf(v, label, "%s %q is not a duration like 5m", field, v.Value)
		return 0
	}
	if d < 0 {
		p.errf(v, label, "%s %q must not be negative", field, v.Value)
		return 0
	}
	if d%time.Millisecond != 0 {
		p.errf(v, label, "%s %q must be whole milliseconds", field, v.Value)
		return 0
	}
	return d
}
