package event

import (
	"bytes"
	"errors"
	"slices"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/squallhq/squall/messages"
)

// Seed corpora live in testdata/fuzz/<FuzzName>/.

func FuzzDecodeJSON(f *testing.F) {
	f.Add([]byte(`{"key":"web-1.cpu","ts":1764064800000,"value":93.2,"id":"e-1","tags":{"env":"prod"}}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		for _, format := range []Format{FormatAuto, FormatJSON} {
			_, _, _ = checkDecode(t, body, format)
		}
	})
}

func FuzzDecodeNDJSON(f *testing.F) {
	f.Add([]byte("{\"key\":\"a\",\"value\":1}\n{bad\r\n\n{\"key\":\"b\",\"value\":2,\"ts\":\"2025-11-25T10:00:00Z\"}\n"))
	f.Fuzz(func(t *testing.T, body []byte) {
		evs, rej, ok := checkDecode(t, body, FormatNDJSON)
		if !ok {
			return
		}
		// One result per non-blank line.
		lines := 0
		for line := range bytes.SplitSeq(bytes.TrimPrefix(body, utf8BOM), []byte("\n")) {
			if len(bytes.TrimLeft(line, " \t\r\n")) > 0 {
				lines++
			}
		}
		if len(evs)+len(rej) != lines {
			t.Fatalf("%d events + %d rejections for %d lines", len(evs), len(rej), lines)
		}
	})
}

func FuzzDecodeProto(f *testing.F) {
	f.Add(AppendProto(nil, []Event{{Key: "k", TS: 1, Value: 2, ID: "i", Tags: map[string]string{"a": "b"}}}))
	f.Fuzz(func(t *testing.T, body []byte) {
		evs, rej, ok := checkDecode(t, body, FormatProto)

		// Differential check against the generated code.
		var m messages.EventBatch
		if err := proto.Unmarshal(body, &m); err != nil {
			if ok && !strings.Contains(err.Error(), "UTF-8") {
				t.Fatalf("proto.Unmarshal fails (%v) where Decode does not", err)
			}
			return
		}
		if !ok && len(m.GetEvents()) > 0 {
			t.Fatalf("proto.Unmarshal reads %d events where Decode fails", len(m.GetEvents()))
		}
		pevs, prej := FromProto(&m, fuzzOptions, nil, nil)
		if !eventsEqual(evs, pevs) || !rejectionsEqual(rej, prej) {
			t.Fatalf("Decode and FromProto differ\n Decode    %+v %+v\n FromProto %+v %+v", evs, rej, pevs, prej)
		}

		// Re-encoding the valid events reads back the same.
		if len(evs) > 0 {
			var d Decoder
			back, brej, err := d.Decode(AppendProto(nil, evs), FormatProto, fuzzOptions, nil, nil)
			if err != nil || len(brej) != 0 || !eventsEqual(back, evs) {
				t.Fatalf("AppendProto round trip: %v %+v\n got  %+v\n want %+v", err, brej, back, evs)
			}
		}
	})
}

// fuzzOptions are those of the inputs: with the arrival checks.
var fuzzOptions = Options{Now: now, MaxFuture: DefaultMaxFuture, CheckMinTS: true}

// checkDecode decodes body and checks the properties every decode must have.
// ok is false when the body is rejected as a whole.
func checkDecode(t *testing.T, body []byte, format Format) (evs []Event, rej []Rejection, ok bool) {
	t.Helper()
	var d Decoder
	orig := bytes.Clone(body)
	evs, rej, err := d.Decode(body, format, fuzzOptions, nil, nil)
	if !bytes.Equal(body, orig) {
		t.Fatal("Decode modified its input")
	}
	if err != nil {
		if !errors.Is(err, ErrEmpty) && !errors.Is(err, ErrMalformed) {
			t.Fatalf("unexpected error %v", err)
		}
		if len(evs) != 0 || len(rej) != 0 {
			t.Fatalf("error %v with %d events and %d rejections", err, len(evs), len(rej))
		}
		return nil, nil, false
	}
	if len(evs)+len(rej) == 0 {
		t.Fatal("no error, no event and no rejection")
	}
	last := -1
	for _, r := range rej {
		if r.Index <= last || r.Reason == "" {
			t.Fatalf("bad rejections %+v", rej)
		}
		last = r.Index
	}
	for i := range evs {
		if r := Validate(&evs[i]); r != nil {
			t.Fatalf("event %d %+v fails Validate: %+v", i, evs[i], r)
		}
	}
	snapshot := cloneEvents(evs)

	// The decoder is reusable: the same body decodes the same way again,
	// and decoding must not change the events of an earlier call.
	again, rej2, err := d.Decode(body, format, fuzzOptions, nil, nil)
	if err != nil || !eventsEqual(again, evs) || !rejectionsEqual(rej2, rej) {
		t.Fatalf("second decode differs: %v\n%+v %+v\n%+v %+v", err, again, rej2, evs, rej)
	}
	if !eventsEqual(evs, snapshot) {
		t.Fatalf("events changed by a later Decode:\n got  %+v\n want %+v", evs, snapshot)
	}

	// Re-encoding the valid events reads back the same events.
	nd := AppendNDJSON(nil, evs)
	if len(evs) > 0 {
		back, brej, err := d.Decode(nd, FormatNDJSON, Options{Now: -1}, nil, nil)
		if err != nil || len(brej) != 0 || !eventsEqual(back, evs) {
			t.Fatalf("NDJSON round trip: %v %+v\n%s\n got  %+v\n want %+v", err, brej, nd, back, evs)
		}
	}
	return evs, rej, true
}

func cloneEvents(evs []Event) []Event {
	out := make([]Event, len(evs))
	for i, e := range evs {
		out[i] = Event{Key: strings.Clone(e.Key), TS: e.TS, Value: e.Value, ID: strings.Clone(e.ID)}
		if e.Tags != nil {
			out[i].Tags = make(map[string]string, len(e.Tags))
			for k, v := range e.Tags {
				out[i].Tags[strings.Clone(k)] = strings.Clone(v)
			}
		}
	}
	return out
}

func rejectionsEqual(a, b []Rejection) bool { return slices.Equal(a, b) }

// FuzzFastPath: the fast path decodes exactly as the parser path does —
// same events, same rejections, same errors — for any body, in every
// text format, with and without a default key.
func FuzzFastPath(f *testing.F) {
	for _, s := range []string{
		`{"key":"dc1.rack07.srv-0012345.cpu","ts":1764064800000,"value":93.25}`,
		`{"key":"a","value":1}` + "\n" + ` { "value" : -0.5e3 , "ts" : 17640648e5, "id":"x" } ` + "\r\n" + `{"key":"b","value":2,"ts":"2025-11-25T10:00:00Z"}`,
		`[{"key":"a","value":1,"other":true,"n":null,"f":false,"s":"x","x":1e9},{"key":"a","value":01}]`,
		`{"key":"a","key":"b","value":1,"value":2,"ts":1,"ts":2,"id":"","id":"i"}`,
		`{"key":"","value":1}`, `{"value":1}`, `{"key":"k","value":1,"ts":-1}`, `{"key":"k","value":1,"ts":1.5}`,
		`{"key":"k","value":1e999}`, `{"key":"k","value":NaN}`, `{"key":"k","value":1,"tags":{"a":"b"}}`,
		`{"key":"k\u0041","value":1}`, `{"key":"ké","value":1}`, `{"key":"k","value":1}x`, `{"key":"k","value":1,}`,
		`{"key":"k","value":1,"ts":null,"id":null,"key":null}`, `{"key":"k","value":truex}`, `{}`, `{"key" "k"}`,
		`{"key":"k","ts":01,"ts":1,"value":1}`, `{"key":"k","value":1-2,"value":1}`, `{"key":"k","x":01,"value":1}`,
		`{"key":"p","ts":32503680000000,"value":99999}`, `{"key":"k","ts":1764065000,"value":1}`, `{"key":"k","ts":1764065000123.5,"value":1}`,
		`{"key":"k","ts":1764065300000,"value":1}`, `{"key":"k","ts":1764065300001,"value":1}`, `{"key":"k","value":Infinity}`,
		`[{"key":"k","value":-Infinity},{"key":"k","value":+1}]`, `{"key":"k","ts":"2025-11-26T10:00:00+24:00","value":1}`,
	} {
		f.Add([]byte(s), false)
		f.Add([]byte(s), true)
	}
	f.Fuzz(func(t *testing.T, body []byte, defaultKey bool) {
		for _, o := range []Options{fuzzOptions, {Now: now}} {
			if defaultKey {
				o.DefaultKey = "record-key"
			}
			fastMatchesParser(t, body, o)
		}
	})
}

// fastMatchesParser checks that body decodes the same with and without
// the fast path under o, in every text format.
func fastMatchesParser(t *testing.T, body []byte, o Options) {
	t.Helper()
	for _, format := range []Format{FormatAuto, FormatJSON, FormatNDJSON} {
		var d Decoder
		evs, rej, err := d.Decode(body, format, o, nil, nil)
		evs = cloneEvents(evs)
		fastPath = false
		slow, srej, serr := d.Decode(body, format, o, nil, nil)
		fastPath = true
		if (err == nil) != (serr == nil) || (err != nil && err.Error() != serr.Error()) {
			t.Fatalf("format %v: error %v, parser path %v", format, err, serr)
		}
		if !eventsEqual(evs, slow) || !rejectionsEqual(rej, srej) {
			t.Fatalf("format %v:\n fast   %+v %+v\n parser %+v %+v", format, evs, rej, slow, srej)
		}
	}
}
