package event

import (
	"encoding/json"
	"math"
	"strings"
	"testing"
)

// trickyStrings are strings that need care in JSON.
var trickyStrings = []string{
	"plain",
	`quote " and backslash \ and slash /`,
	"controls \x00\x01\x07\b\f\n\r\t\x1f\x7f",
	"unicode é ß 日本 😀 \u2028\u2029 \ufeff \ufffd",
	`looks escaped \u0041 \n`,
	"</script><!-- & -->",
	strings.Repeat("x", MaxKeyBytes),
}

func TestAppendJSON(t *testing.T) {
	for _, tc := range []struct {
		ev   Event
		want string
	}{
		{Event{Key: "web-1.cpu", TS: 1764065099000, Value: 40.5},
			`{"key":"web-1.cpu","ts":1764065099000,"value":40.5}`},
		{Event{Key: "k", TS: 0, Value: 1e21, ID: "e-1", Tags: map[string]string{"z": "1", "a": "2", "m": ""}},
			`{"key":"k","ts":0,"value":1e+21,"id":"e-1","tags":{"a":"2","m":"","z":"1"}}`},
		{Event{Key: "q\"\\\n\x01", Value: -0.000001},
			`{"key":"q\"\\\n\u0001","ts":0,"value":-1e-06}`},
		{Event{Key: "bad\xffutf8", Value: math.NaN()},
			`{"key":"bad\ufffdutf8","ts":0,"value":null}`},
		{Event{Key: "k", Value: math.Copysign(0, -1), Tags: map[string]string{}},
			`{"key":"k","ts":0,"value":-0}`},
	} {
		if got := string(AppendJSON(nil, &tc.ev)); got != tc.want {
			t.Errorf("AppendJSON(%+v)\n got %s\nwant %s", tc.ev, got, tc.want)
		}
	}
}

// TestAppendJSONRoundTrip encodes tricky events, checks the result is valid
// JSON that encoding/json reads back the same, and that Decode reads it back
// the same.
func TestAppendJSONRoundTrip(t *testing.T) {
	var evs []Event
	for i, s := range trickyStrings {
		id := s
		if len(id) > MaxIDBytes {
			id = id[:MaxIDBytes]
		}
		tagValue := s
		if len(tagValue) > MaxTagValueBytes {
			tagValue = tagValue[:MaxTagValueBytes]
		}
		evs = append(evs, Event{
			Key:   s,
			TS:    int64(i) * 1764065099001,
			Value: []float64{0, -1.5, 1e-300, math.MaxFloat64, 0.1, 1 << 53, -123456789.987654321}[i%7],
			ID:    id,
			Tags:  map[string]string{s: tagValue, "k": "v"},
		})
	}
	buf := AppendNDJSON(nil, evs)
	for i, line := range strings.Split(strings.TrimSuffix(string(buf), "\n"), "\n") {
		var got struct {
			Key   string            `json:"key"`
			TS    int64             `json:"ts"`
			Value float64           `json:"value"`
			ID    string            `json:"id"`
			Tags  map[string]string `json:"tags"`
		}
		if err := json.Unmarshal([]byte(line), &got); err != nil {
			t.Fatalf("line %d is not valid JSON: %v\n%s", i, err, line)
		}
		want := evs[i]
		if got.Key != want.Key || got.TS != want.TS || got.Value != want.Value || got.ID != want.ID || len(got.Tags) != len(want.Tags) {
			t.Errorf("encoding/json read %+v, want %+v", got, want)
		}
		for k, v := range want.Tags {
			if got.Tags[k] != v {
				t.Errorf("tag %q = %q, want %q", k, got.Tags[k], v)
			}
		}
	}
	var d Decoder
	back, rej, err := d.Decode(buf, FormatNDJSON, Options{Now: now}, nil, nil)
	if err != nil || len(rej) != 0 {
		t.Fatalf("Decode: %v %+v", err, rej)
	}
	if !eventsEqual(back, evs) {
		t.Fatalf("round trip\n got %+v\nwant %+v", back, evs)
	}
}

func TestAppendJSONAllocs(t *testing.T) {
	e := Event{Key: "web-1.cpu", TS: 1764065099000, Value: 40.5, ID: "e-1", Tags: map[string]string{"env": "prod", "dc": "ams"}}
	buf := make([]byte, 0, 1024)
	if n := testing.AllocsPerRun(100, func() { buf = AppendJSON(buf[:0], &e) }); n != 0 {
		t.Errorf("AppendJSON allocates %v times", n)
	}
}
