package deploycheck

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

func TestMetricNames(t *testing.T) {
	for _, c := range []struct {
		expr string
		want []string
	}{
		{`up == 0`, []string{"up"}},
		{`squall_ready{job="squall"} == 0`, []string{"squall_ready"}},
		{`sum by (instance, source) (rate(squall_events_in_total{result=~"shed|failed"}[5m])) > 0`,
			[]string{"squall_events_in_total"}},
		{`sum without(partition)(squall_kafka_lag)`, []string{"squall_kafka_lag"}},
		{`histogram_quantile(0.99, sum by (le) (rate(squall_apply_latency_seconds_bucket{instance=~"$node"}[$__rate_interval])))`,
			[]string{"squall_apply_latency_seconds_bucket"}},
		{`rate(go_gc_duration_seconds_sum[5m]) / rate(go_gc_duration_seconds_count[5m])`,
			[]string{"go_gc_duration_seconds_count", "go_gc_duration_seconds_sum"}},
		{`a and on(instance) b or c unless ignoring(x) group_left(y) d`, []string{"a", "b", "c", "d"}},
		{`a > bool 1e-3 + 0x1F - .5 * Inf / NaN`, []string{"a"}},
		{`delta(a[10m:1m] offset 5m) > 0`, []string{"a"}},
		{`a @ start() + b @ 1609746000`, []string{"a", "b"}},
		{`{__name__="x_total", job="j"} + {job='k', __name__=~'y'}`, []string{"x_total", "y"}},
		{`label_replace(a, "dst", "sum(b)", "src", "(.*)")`, []string{"a"}},
		{"count_values(`v`, a) # b is a comment\n+ c", []string{"a", "c"}},
		{`topk(5, a{l="}"}) + ${node} + $__range_s`, []string{"a"}},
		{`min_over_time(squall_zk_session_connected[5m]) == 0 and max(a:recorded)`, []string{"a:recorded", "squall_zk_session_connected"}},
		{`a + a`, []string{"a"}},
	} {
		got, err := MetricNames(c.expr)
		if err != nil || !slices.Equal(got, c.want) {
			t.Errorf("MetricNames(%q) = %q, %v; want %q", c.expr, got, err, c.want)
		}
	}
	for _, bad := range []string{`a{l="x"`, `rate(a[5m)`, `a{l="x}`, `sum by (l (a)`} {
		if got, err := MetricNames(bad); !errors.Is(err, ErrSyntax) {
			t.Errorf("MetricNames(%q) = %q, %v; want ErrSyntax", bad, got, err)
		}
	}
}

func TestDashboardExprs(t *testing.T) {
	dash := `{
  "templating": {"list": [
    {"name": "datasource", "type": "datasource", "query": "prometheus"},
    {"name": "node", "type": "query", "query": "label_values(squall_ready{job=\"a,b\"}, instance)"},
    {"name": "job", "type": "query", "query": {"query": "label_values(job)"}},
    {"name": "q", "type": "query", "query": "query_result(topk(3, squall_kafka_lag))"}
  ]},
  "panels": [
    {"type": "row", "panels": [{"targets": [{"expr": "rate(b_total[5m])"}]}]},
    {"targets": [{"expr": "a"}, {"expr": "c"}]}
  ]
}`
	got, err := DashboardExprs([]byte(dash))
	want := []string{"a", "c", "rate(b_total[5m])", `squall_ready{job="a,b"}`, "topk(3, squall_kafka_lag)"}
	if err != nil || !slices.Equal(got, want) {
		t.Fatalf("DashboardExprs = %q, %v; want %q", got, err, want)
	}
	if _, err := DashboardExprs([]byte(`{"panels": []}`)); !errors.Is(err, ErrNoExpr) {
		t.Fatalf("a dashboard without expressions: %v", err)
	}
	if _, err := DashboardExprs([]byte(`{`)); err == nil {
		t.Fatal("malformed JSON accepted")
	}
}

func TestRuleExprs(t *testing.T) {
	rules := `groups:
  - name: g
    rules:
      - record: job:x:rate5m
        expr: sum(rate(x_total[5m]))
      - alert: XHigh
        expr: job:x:rate5m > 1
        for: 5m
`
	got, err := RuleExprs([]byte(rules))
	if err != nil || len(got) != 2 || got[0] != (Rule{"g", "job:x:rate5m", "sum(rate(x_total[5m]))", true}) ||
		got[1] != (Rule{"g", "XHigh", "job:x:rate5m > 1", false}) {
		t.Fatalf("RuleExprs = %+v, %v", got, err)
	}
	if _, err := RuleExprs([]byte("groups: []\n")); !errors.Is(err, ErrNoExpr) {
		t.Fatalf("a file without rules: %v", err)
	}
	names, recorded, err := References([]byte(`{"panels":[{"targets":[{"expr":"y + up"}]}]}`), []byte(rules))
	if err != nil || !slices.Equal(names, []string{"job:x:rate5m", "up", "x_total", "y"}) || !slices.Equal(recorded, []string{"job:x:rate5m"}) {
		t.Fatalf("References = %q, %q, %v", names, recorded, err)
	}
}

const exposition = `# HELP h_seconds A histogram.
# TYPE h_seconds histogram
h_seconds_bucket{le="1"} 0
h_seconds_bucket{le="+Inf"} 0
h_seconds_sum 0
h_seconds_count 0
# HELP s_seconds A summary.
# TYPE s_seconds summary
s_seconds{quantile="0.5"} 0
s_seconds_sum 0
s_seconds_count 0
# HELP c_total A counter.
# TYPE c_total counter
c_total{l="a"} 1
# HELP empty_total A counter vector without children: no sample.
# TYPE empty_total counter
# HELP g A gauge.
# TYPE g gauge
g 1
`

func TestExposed(t *testing.T) {
	e, err := ParseExposition(strings.NewReader(exposition))
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]bool{
		"h_seconds": true, "h_seconds_bucket": true, "h_seconds_sum": true, "h_seconds_count": true,
		"s_seconds": true, "s_seconds_sum": true, "s_seconds_count": true, "s_seconds_bucket": false,
		"c_total": true, "c": false, "g": true, "g_count": false, "other": false, "empty_total": false,
	} {
		if e.Has(name) != want {
			t.Errorf("Has(%q) = %v", name, !want)
		}
	}
	refs := []string{"up", "g", "other", "rec:g", "g_sum", "c_total", "other"}
	if got := e.Missing(refs, "rec:g"); !slices.Equal(got, []string{"g_sum", "other"}) {
		t.Fatalf("Missing = %q", got)
	}
	more, err := ParseExposition(strings.NewReader("# TYPE other gauge\nother 0\n"))
	if err != nil {
		t.Fatal(err)
	}
	e.Add(more)
	if got := e.Missing(refs, "rec:g"); !slices.Equal(got, []string{"g_sum"}) {
		t.Fatalf("Missing after Add = %q", got)
	}
	if _, err := ParseExposition(strings.NewReader("g{ 1\n")); err == nil {
		t.Fatal("a malformed exposition parsed")
	}
}

func TestCheck(t *testing.T) {
	dash := []byte(`{"panels":[{"targets":[{"expr":"rate(c_total[5m]) + other"}]}]}`)
	rules := []byte("groups:\n  - name: g\n    rules:\n      - alert: A\n        expr: histogram_quantile(0.9, rate(h_seconds_bucket[5m])) > 1 or up == 0\n")
	names, missing, err := Check(dash, rules, strings.NewReader(exposition), strings.NewReader("# TYPE other gauge\nother 1\n"))
	if err != nil || !slices.Equal(names, []string{"c_total", "h_seconds_bucket", "other", "up"}) || len(missing) != 0 {
		t.Fatalf("Check = %q, %q, %v", names, missing, err)
	}
	names, missing, err = Check(dash, rules, strings.NewReader(exposition))
	if err != nil || len(names) != 4 || !slices.Equal(missing, []string{"other"}) {
		t.Fatalf("Check without the second node = %q, %q, %v", names, missing, err)
	}
	if _, _, err := Check(dash, rules, strings.NewReader("x{\n")); err == nil {
		t.Fatal("a malformed exposition checked")
	}
}
