package rules

import (
	"encoding/json"
	"errors"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/squallhq/squall/window"
)

func TestParseErrors(t *testing.T) {
	for _, tc := range []struct {
		name, yaml string
		want       []string // each must appear in the joined error
	}{
		{"unknown aggregate", `rules:
  - name: high-cpu
    match: "*.cpu"
    aggregate: avg
    op: ">"
    threshold: 90
`, []string{`rules.yaml:4: high-cpu: unknown aggregate "avg"`}},
		{"all errors at once", `rules:
  - name: a
    match: "x"
    aggregate: mean
    op: "=>"
    threshold: ninety
  - name: b
    match: "y"
    aggregate: max
    op: ">"
    threshold: 1
    for: 5 minutes
    colour: red
`, []string{`rules.yaml:5: a: unknown op "=>"`, `rules.yaml:6: a: threshold "ninety" is not a finite number`,
			`rules.yaml:12: b: for "5 minutes" is not a duration`, `rules.yaml:13: b: unknown field "colour"`}},
		{"duplicate names", `rules:
  - name: a
    match: x
    absent: 1m
  - name: a
    match: y
    absent: 2m
`, []string{`rules.yaml:5: a: duplicate rule name (first at line 2)`}},
		{"threshold and absent", `rules:
  - name: both
    match: x
    absent: 1m
    aggregate: last
    op: ">"
    threshold: 1
`, []string{`rules.yaml:5: both: aggregate is not allowed in an absent rule`,
			`rules.yaml:6: both: op is not allowed`, `rules.yaml:7: both: threshold is not allowed`}},
		{"neither", `rules:
  - name: none
    match: x
`, []string{`rules.yaml:2: none: missing aggregate`, `rules.yaml:2: none: missing op`, `rules.yaml:2: none: missing threshold`}},
		{"missing name and match", `rules:
  - absent: 1m
`, []string{`rules.yaml:2: rule 1: missing name`, `rules.yaml:2: rule 1: missing match`}},
		{"bad durations", `rules:
  - name: d
    match: x
    aggregate: last
    op: ">"
    threshold: 1
    over: -1m
  - name: z
    match: x
    absent: 0s
`, []string{`rules.yaml:7: d: over "-1m" must not be negative`, `rules.yaml:10: z: absent must be positive`}},
		{"not a list", `rules: {a: 1}`, []string{`rules.yaml:1: rules must be a list`}},
		{"unknown top level", "rulez: []\n", []string{`rules.yaml:1: unknown field "rulez"`}},
		{"syntax", "rules:\n  - name: [\n", []string{`rules.yaml:`}},
		{"bad tags", `rules:
  - name: t
    match: x
    tags: [a, b]
    absent: 1m
`, []string{`rules.yaml:4: t: tags must be a mapping of strings`}},
		{"NaN threshold", `rules:
  - name: n
    match: x
    aggregate: last
    op: ">"
    threshold: .nan
`, []string{`rules.yaml:6: n: threshold ".nan" is not a finite number`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("rules.yaml", []byte(tc.yaml))
			if err == nil {
				t.Fatal("no error")
			}
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("error does not wrap ErrInvalid: %v", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q\ndoes not contain %q", err, w)
				}
			}
		})
	}
}

func TestParseSpecExample(t *testing.T) {
	set, err := Parse("rules.yaml", []byte(`rules:
  - name: high-cpu
    match: "*.cpu"            # glob on the key
    tags: {env: prod}         # optional: the key's last tags must match
    aggregate: mean           # count|sum|min|max|mean|last|rate|p50|p95|p99
    over: 5m                  # a sub-window length
    op: ">"                   # > >= < <= == !=
    threshold: 90
    for: 2m                   # event time the condition must hold before firing
    severity: critical
    labels: {team: infra}
  - name: heartbeat-missing
    match: "*.heartbeat"
    absent: 3m                # wall-clock time without events before firing
    severity: warning
`))
	if err != nil {
		t.Fatal(err)
	}
	want := &Rule{Name: "high-cpu", Match: "*.cpu", Tags: map[string]string{"env": "prod"}, Aggregate: AggMean,
		Over: 5 * time.Minute, Op: OpGT, Threshold: 90, For: 2 * time.Minute, Severity: "critical",
		Labels: map[string]string{"team": "infra"}, Line: 2}
	if got := set.Rule("high-cpu"); got == nil || !got.Equal(want) || got.Line != 2 {
		t.Errorf("high-cpu = %+v, want %+v", got, want)
	}
	hb := set.Rule("heartbeat-missing")
	if hb == nil || !hb.IsAbsent() || hb.Absent != 3*time.Minute || hb.Severity != "warning" {
		t.Errorf("heartbeat-missing = %+v", hb)
	}
	if got := set.Match("web-1.cpu", map[string]string{"env": "prod"}); len(got) != 1 || got[0].Name != "high-cpu" {
		t.Errorf("Match(web-1.cpu, prod) = %v", got)
	}
	if got := set.Match("web-1.cpu", nil); len(got) != 0 {
		t.Errorf("Match(web-1.cpu, no tags) = %v", got)
	}
	sh := window.DefaultShape()
	if err := set.CheckShape(&sh); err != nil {
		t.Error(err)
	}
	sh.Retention = time.Minute
	if err := set.CheckShape(&sh); err == nil || !strings.Contains(err.Error(), "rules.yaml:2: high-cpu: over 5m0s is longer") {
		t.Errorf("CheckShape with 1m retention: %v", err)
	}
	for _, empty := range []string{"", "rules:\n", "rules: []\n", "# nothing\n"} {
		s, err := Parse("e.yaml", []byte(empty))
		if err != nil || len(s.Rules) != 0 || s.Match("k", nil) != nil {
			t.Errorf("Parse(%q) = %v, %v", empty, s, err)
		}
	}
}

func TestLoad(t *testing.T) {
	if _, err := Load(filepath.Join(t.TempDir(), "missing.yaml")); err == nil || !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Load(missing) = %v", err)
	}
	p := filepath.Join(t.TempDir(), "r.yaml")
	if err := os.WriteFile(p, []byte("rules:\n  - name: x\n    match: y\n    absent: 1m\n    bogus: 1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(p); err == nil || !strings.HasPrefix(err.Error(), p+":5: x: unknown field") {
		t.Errorf("Load error does not name the path and line: %v", err)
	}
}

func TestGlob(t *testing.T) {
	for _, tc := range []struct {
		p, k string
		want bool
	}{
		{"*.cpu", "web-1.cpu", true},
		{"*.cpu", "eu.web-1.cpu", true},
		{"*.cpu", ".cpu", true},
		{"*.cpu", "web-1.cpux", false},
		{"*", "", true},
		{"*", "anything.at.all", true},
		{"", "", true},
		{"", "a", false},
		{"a?c", "abc", true},
		{"a?c", "aéc", true},
		{"a?c", "ac", false},
		{"db-?.disk", "db-10.disk", false},
		{"*a*b*c", "xxaxxbxxcxxc", true},
		{"*a*b*c", "xxaxxbxx", false},
		{"web-*.cpu", "web-.cpu", true},
		{"**", "x", true},
		{"exact", "exact", true},
	} {
		if got := matchGlob(tc.p, tc.k); got != tc.want {
			t.Errorf("matchGlob(%q, %q) = %v, want %v", tc.p, tc.k, got, tc.want)
		}
	}
}

func TestStateSizeAndCodec(t *testing.T) {
	if n := unsafe.Sizeof(State{}); n != 24 {
		t.Errorf("State is %d bytes, documented as 24", n)
	}
	for _, st := range []State{{}, {since: 1764064800000, newest: 1764064920000, phase: FiringPhase}, {since: -5, newest: math.MaxInt64, phase: Pending}} {
		b, err := st.MarshalBinary()
		if err != nil || len(b) > 22 {
			t.Fatalf("MarshalBinary = %d bytes, %v", len(b), err)
		}
		var got State
		if err := got.UnmarshalBinary(b); err != nil || got != st {
			t.Errorf("round trip %+v → %+v, %v", st, got, err)
		}
	}
	for _, bad := range [][]byte{nil, {1}, {2, 0, 0, 0}, {1, 3, 0, 0}, {1, 0, 0}, {1, 0, 0, 0, 0}, {1, 0, 0x80}} {
		st := State{since: 7}
		if err := st.UnmarshalBinary(bad); !errors.Is(err, ErrState) || st.since != 7 {
			t.Errorf("UnmarshalBinary(%v) = %v, state %+v", bad, err, st)
		}
	}
}

func TestEvalEdges(t *testing.T) {
	r := &Rule{Name: "r", Match: "*", Aggregate: AggLast, Op: OpGT, Threshold: 1, For: time.Second}
	var st State
	// NaN never holds; a threshold rule ignores absent calls.
	if _, ok := r.Eval(&st, "k", math.NaN(), 1000); ok || st.Phase() != Inactive {
		t.Fatal("NaN started pending")
	}
	if _, ok := r.EvalAbsent(&st, "k", 0, 1<<40); ok {
		t.Fatal("EvalAbsent fired a threshold rule")
	}
	if _, ok := r.Seen(&st, "k", 5); ok {
		t.Fatal("Seen resolved a threshold rule")
	}
	r.Eval(&st, "k", 2, 2000)
	if st.Phase() != Pending || st.Since() != 2000 {
		t.Fatalf("state %+v", st)
	}
	// An out-of-order event does not move time backward.
	if _, ok := r.Eval(&st, "k", 2, 1500); ok {
		t.Fatal("fired on an older event")
	}
	tr, ok := r.Eval(&st, "k", 2, 3000)
	if !ok || tr.State != Firing || tr.StartedAt != 2000 || tr.At != 3000 || tr.ID() != "r/k/3000/firing" {
		t.Fatalf("transition %+v %v", tr, ok)
	}
	tr, ok = r.Eval(&st, "k", 0, 2500)
	if !ok || tr.State != Resolved || tr.At != 3000 || st.Phase() != Inactive || st.Since() != 0 {
		t.Fatalf("resolve %+v %v, state %+v", tr, ok, st)
	}
	// The alert document of docs/rules.md.
	tr = Transition{Rule: "high-cpu", Key: "web-1.cpu", State: Firing, Value: 93.2, Threshold: 90, Severity: "critical",
		Labels: map[string]string{"team": "infra"}, StartedAt: 1764064980000, At: 1764065100000}
	got, err := json.Marshal(tr)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"id":"high-cpu/web-1.cpu/1764065100000/firing","rule":"high-cpu","key":"web-1.cpu","state":"firing","value":93.2,"threshold":90,"severity":"critical","labels":{"team":"infra"},"started_at":1764064980000,"at":1764065100000}`
	if string(got) != want {
		t.Errorf("JSON\n got %s\nwant %s", got, want)
	}
	if n := testing.AllocsPerRun(100, func() { r.Eval(&st, "k", 2, 4000); r.Eval(&st, "k", 0, 4000) }); n != 0 {
		t.Errorf("Eval allocates %v per run", n)
	}
}

func TestRuleValueEmpty(t *testing.T) {
	sh := window.DefaultShape()
	w := window.New(&sh)
	for a := AggCount; a <= AggP99; a++ {
		if v := (&Rule{Aggregate: a}).Value(w); !math.IsNaN(v) {
			t.Errorf("%v of an empty window = %v, want NaN", a, v)
		}
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte("rules:\n  - name: a\n    match: '*'\n    aggregate: p99\n    op: '<='\n    threshold: 1e3\n    for: 1m\n"))
	f.Add([]byte("rules:\n  - name: h\n    match: '*.heartbeat'\n    absent: 3m\n    labels: {a: b}\n"))
	f.Add([]byte("rules: [1, {name: x}]\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := Parse("f.yaml", data)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error does not wrap ErrInvalid: %v", err)
			}
			return
		}
		for _, r := range s.Rules {
			if r.Name == "" || r.Match == "" || r.IsAbsent() == (r.Aggregate != AggNone) {
				t.Fatalf("invalid rule accepted: %+v", r)
			}
			s.Match(r.Match, r.Tags)
		}
	})
}

func FuzzStateUnmarshal(f *testing.F) {
	f.Add([]byte{1, 2, 4, 6})
	f.Add([]byte{1, 0, 0, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		var st State
		if st.UnmarshalBinary(data) != nil {
			return
		}
		b, _ := st.MarshalBinary()
		var again State
		if err := again.UnmarshalBinary(b); err != nil || again != st {
			t.Fatalf("re-encode: %v %+v %+v", err, again, st)
		}
	})
}
