package main

import (
	"strings"
	"testing"

	"github.com/spf13/cobra"
)

func TestRulesCheck(t *testing.T) {
	good := writeFile(t, "good.yaml", `rules:
  - {name: high-cpu, match: "*.cpu", aggregate: max, over: 1m, op: ">", threshold: 90}
  - {name: quiet, match: "*.cpu", absent: 5m}
`)
	expect(t, ctl(t, nil, "", "rules", "check", good), 0, good+": valid, 2 rules: high-cpu, quiet\n")

	bad := writeFile(t, "bad.yaml", `rules:
  - name: a
    match: "*"
    aggregate: maxx
    op: ">"
    threshold: 1
  - name: b
    match: "*"
    aggregate: max
    op: "=>"
    threshold: 1
`)
	r := ctl(t, nil, "", "rules", "check", bad)
	expect(t, r, 1, bad+":4: a: ", bad+":10: b: ")
	if !strings.Contains(r.err, bad+": 2 problems") {
		t.Fatalf("stderr %q", r.err)
	}

	syntax := writeFile(t, "syntax.yaml", "rules:\n  - {name: a\n")
	r = ctl(t, nil, "", "rules", "check", syntax)
	expect(t, r, 1, syntax+":")
	if !strings.Contains(r.err, "1 problem") {
		t.Fatalf("stderr %q", r.err)
	}

	// "over" must fit the nodes' window.
	long := writeFile(t, "long.yaml", `rules:
  - {name: slow, match: "*", aggregate: max, over: 20m, op: ">", threshold: 1}
`)
	expect(t, ctl(t, nil, "", "rules", "check", long), 1, long+":2: slow: over 20m0s is longer than the retention 10m0s")
	expect(t, ctl(t, nil, "", "rules", "check", long, "--retention", "30m"), 0, "valid, 1 rule")
	expect(t, ctl(t, nil, "", "rules", "check", long, "--retention", "30m", "--resolution", "7m"), 2)

	r = ctl(t, nil, "", "rules", "check", "/nonexistent.yaml")
	expect(t, r, 1)
	if !strings.Contains(r.err, "no such file") {
		t.Fatalf("stderr %q", r.err)
	}
	expect(t, ctl(t, nil, "", "rules", "check"), 2)
	expect(t, ctl(t, nil, "", "rules", "frobnicate"), 2)
	expect(t, ctl(t, nil, "", "rules"), 0, "squallctl rules check rules.yaml")
}

func TestCompletion(t *testing.T) {
	for sh, want := range map[string]string{"bash": "__start_squallctl", "zsh": "#compdef squallctl", "fish": "complete -c squallctl"} {
		expect(t, ctl(t, nil, "", "completion", sh), 0, want)
	}
	expect(t, ctl(t, nil, "", "completion", "powershell"), 2)
	expect(t, ctl(t, nil, "", "completion"), 2)
}

// Every command has a help text with examples; bad global options are
// usage errors.
func TestHelpAndUsage(t *testing.T) {
	a := &app{}
	var walk func(*cobra.Command)
	walk = func(c *cobra.Command) {
		if c.Runnable() && c.Example == "" {
			t.Errorf("%q has no example", c.CommandPath())
		}
		for _, s := range c.Commands() {
			if s.Name() != "help" {
				walk(s)
			}
		}
	}
	walk(a.rootCommand())

	expect(t, ctl(t, nil, "", "--help"), 0, "Events and keys:\n", "Cluster and alerts:\n", "send ", "get ", "keys ", "replay ", "cluster ", "alerts ", "rules ", "completion ")
	expect(t, ctl(t, nil, "", "get", "--help"), 0, "Examples:\n  squallctl get web-1.cpu\n")
	expect(t, ctl(t, nil, "", "replay", "--help"), 0, "Examples:\n  squallctl replay web-1.cpu\n", "--from-log", "--partition")
	for _, args := range [][]string{{"-o", "xml", "keys"}, {"--timeout", "0s", "keys"}, {"--nope"}, {"frobnicate"}, {"keys", "--nope"}} {
		r := ctl(t, nil, "", args...)
		expect(t, r, 2)
		if !strings.Contains(r.err, `Run "squallctl --help" for usage.`) {
			t.Fatalf("%v: stderr %q", args, r.err)
		}
	}
	r := ctl(t, nil, "", "--server", "localhost:8080", "keys")
	expect(t, r, 2)
}

func TestRanges(t *testing.T) {
	for _, c := range []struct {
		in   []int32
		want string
	}{
		{nil, ""},
		{[]int32{5}, "5"},
		{[]int32{3, 1, 2, 0}, "0-3"},
		{[]int32{0, 1, 2, 5, 7, 8, 11}, "0-2,5,7-8,11"},
	} {
		if got := ranges(c.in); got != c.want {
			t.Errorf("ranges(%v) = %q, want %q", c.in, got, c.want)
		}
	}
}

// YAML keeps the JSON document's field order and quotes the strings that
// would read as something else.
func TestJSONToYAML(t *testing.T) {
	got, err := jsonToYAML([]byte(`{"z":1,"a":"true","n":"0/0","s":"web-1.cpu","l":[1,{"k":null}],"e":{}}`))
	if err != nil {
		t.Fatal(err)
	}
	want := `z: 1
a: "true"
n: 0/0
s: web-1.cpu
l:
  - 1
  - k: null
e: {}
`
	if string(got) != want {
		t.Fatalf("got:\n%s\nwant:\n%s", got, want)
	}
	if _, err := jsonToYAML([]byte(`{"a":`)); err == nil {
		t.Fatal("no error on broken JSON")
	}
}
