// Package scenario reads the alert-rule scenarios of testdata/rules, shared
// by the pure evaluation test (package rules) and the key-actor test
// (package alerts).
package scenario

import (
	"bufio"
	"bytes"
	"encoding/json"
	"os"
	"testing"
)

// Step is one line of a scenario's events.ndjson: an event (key, ts,
// value, optional tags and wall arrival time in ms), or, when Now is set, a
// wall-clock tick at which every absent rule of every seen key is checked.
type Step struct {
	Key   string            `json:"key"`
	TS    int64             `json:"ts"`
	Value float64           `json:"value"`
	Tags  map[string]string `json:"tags"`
	Wall  int64             `json:"wall"`
	Now   *int64            `json:"now"`
}

// Read reads the steps of an events.ndjson file; blank lines and lines
// starting with # are skipped, unknown fields are errors.
func Read(t testing.TB, path string) []Step {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var steps []Step
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 || line[0] == '#' {
			continue
		}
		var s Step
		dec := json.NewDecoder(bytes.NewReader(line))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&s); err != nil {
			t.Fatalf("%s:%d: %v", path, n, err)
		}
		steps = append(steps, s)
	}
	return steps
}
