package event

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"
	"unsafe"

	"google.golang.org/protobuf/proto"
)

const now = 1764065000000 // Options.Now in the tests

// decodeCase is one table test of Decoder.Decode.
type decodeCase struct {
	name    string
	body    string
	format  Format
	opts    *Options // nil: Options{Now: now}
	want    []Event
	rej     []Rejection
	wantErr error
}

func runDecodeCases(t *testing.T, cases []decodeCase) {
	t.Helper()
	var d Decoder // shared on purpose: reuse must not leak state between calls
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			o := Options{Now: now}
			if tc.opts != nil {
				o = *tc.opts
			}
			// Existing content of dst and rej must be kept.
			pre := []Event{{Key: "pre", Value: 1}}
			preRej := []Rejection{{Index: 99, Reason: "pre"}}
			evs, rej, err := d.Decode([]byte(tc.body), tc.format, o, pre, preRej)
			if !reflect.DeepEqual(evs[:1], pre) || !reflect.DeepEqual(rej[:1], preRej) {
				t.Fatalf("existing dst/rej changed: %+v %+v", evs, rej)
			}
			evs, rej = evs[1:], rej[1:]
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("err = %v, want %v", err, tc.wantErr)
				}
				if len(evs) != 0 || len(rej) != 0 {
					t.Fatalf("on error got events %+v rejections %+v, want none", evs, rej)
				}
				return
			}
			if err != nil {
				t.Fatalf("unexpected error: %v", err)
			}
			if !eventsEqual(evs, tc.want) {
				t.Errorf("events\n got %+v\nwant %+v", evs, tc.want)
			}
			if len(rej) != 0 || len(tc.rej) != 0 {
				if !reflect.DeepEqual(rej, tc.rej) {
					t.Errorf("rejections\n got %+v\nwant %+v", rej, tc.rej)
				}
			}
			for i := range evs {
				if r := Validate(&evs[i]); r != nil {
					t.Errorf("event %d fails Validate: %+v", i, r)
				}
			}
		})
	}
}

// eventsEqual compares events exactly (value by bits, nil and empty tags
// alike).
func eventsEqual(a, b []Event) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		x, y := a[i], b[i]
		if x.Key != y.Key || x.TS != y.TS || x.ID != y.ID ||
			math.Float64bits(x.Value) != math.Float64bits(y.Value) || len(x.Tags) != len(y.Tags) {
			return false
		}
		for k, v := range x.Tags {
			if w, ok := y.Tags[k]; !ok || w != v {
				return false
			}
		}
	}
	return true
}

func ev(key string, ts int64, value float64) Event { return Event{Key: key, TS: ts, Value: value} }

func rj(idx int, field, reason string) Rejection {
	return Rejection{Index: idx, Field: field, Reason: reason}
}

func TestDecodeFields(t *testing.T) {
	long := func(n int) string { return strings.Repeat("k", n) }
	tags := func(n int) string {
		var b strings.Builder
		b.WriteString(`{`)
		for i := range n {
			if i > 0 {
				b.WriteString(",")
			}
			fmt.Fprintf(&b, `"t%d":"v"`, i)
		}
		b.WriteString(`}`)
		return b.String()
	}
	tagMap := func(n int) map[string]string {
		m := map[string]string{}
		for i := range n {
			m[fmt.Sprintf("t%d", i)] = "v"
		}
		return m
	}
	obj := func(fields string) string { return `{"value":1,` + fields + `}` }
	runDecodeCases(t, []decodeCase{
		// key
		{name: "key", body: `{"key":"web-1.cpu","value":1}`, want: []Event{ev("web-1.cpu", now, 1)}},
		{name: "key missing", body: `{"value":1}`, rej: []Rejection{rj(0, "key", reasonKeyMissing)}},
		{name: "key null", body: `{"key":null,"value":1}`, rej: []Rejection{rj(0, "key", reasonKeyMissing)}},
		{name: "key empty", body: `{"key":"","value":1}`, rej: []Rejection{rj(0, "key", reasonKeyEmpty)}},
		{name: "key number", body: `{"key":12,"value":1}`, rej: []Rejection{rj(0, "key", reasonKeyType)}},
		{name: "key object", body: `{"key":{"a":"b"},"value":1}`, rej: []Rejection{rj(0, "key", reasonKeyType)}},
		{name: "key array", body: `{"key":["a"],"value":1}`, rej: []Rejection{rj(0, "key", reasonKeyType)}},
		{name: "key bool", body: `{"key":true,"value":1}`, rej: []Rejection{rj(0, "key", reasonKeyType)}},
		{name: "key 256 bytes", body: obj(`"key":"` + long(256) + `"`), want: []Event{ev(long(256), now, 1)}},
		{name: "key 257 bytes", body: obj(`"key":"` + long(257) + `"`), rej: []Rejection{rj(0, "key", reasonKeyLong)}},
		{name: "key escapes count unescaped", body: obj(`"key":"` + strings.Repeat(`\u006b`, 256) + `"`), want: []Event{ev(long(256), now, 1)}},
		{name: "key unicode", body: obj(`"key":"dé/😀 \"q\" \\ \/ \b\f\n\r\t \u00e9 \ud83d\ude00"`),
			want: []Event{ev("dé/😀 \"q\" \\ / \b\f\n\r\t é 😀", now, 1)}},
		{name: "key NUL escape", body: obj(`"key":"a\u0000b"`), want: []Event{ev("a\x00b", now, 1)}},
		{name: "key invalid UTF-8", body: obj("\"key\":\"a\xffb\""), rej: []Rejection{rj(0, "key", reasonBadString)}},
		{name: "key raw control char", body: obj("\"key\":\"a\tb\""), rej: []Rejection{rj(0, "key", reasonBadString)}},
		{name: "key bad escape", body: obj(`"key":"a\qb"`), rej: []Rejection{rj(0, "key", reasonBadString)}},
		{name: "key short unicode escape", body: obj(`"key":"a\u12"`), rej: []Rejection{rj(0, "key", reasonBadString)}},
		{name: "key lone high surrogate", body: obj(`"key":"a\ud83d"`), rej: []Rejection{rj(0, "key", reasonBadString)}},
		{name: "key lone low surrogate", body: obj(`"key":"a\ude00"`), rej: []Rejection{rj(0, "key", reasonBadString)}},
		{name: "key surrogate then non-low", body: obj(`"key":"\ud83d\u0041"`), rej: []Rejection{rj(0, "key", reasonBadString)}},
		{name: "default key when missing", body: `{"value":1}`, opts: &Options{Now: now, DefaultKey: "rec"},
			want: []Event{ev("rec", now, 1)}},
		{name: "default key when null", body: `{"key":null,"value":1}`, opts: &Options{Now: now, DefaultKey: "rec"},
			want: []Event{ev("rec", now, 1)}},
		{name: "own key beats default", body: `{"key":"own","value":1}`, opts: &Options{Now: now, DefaultKey: "rec"},
			want: []Event{ev("own", now, 1)}},
		{name: "empty key not replaced by default", body: `{"key":"","value":1}`, opts: &Options{Now: now, DefaultKey: "rec"},
			rej: []Rejection{rj(0, "key", reasonKeyEmpty)}},
		{name: "default key too long", body: `{"value":1}`, opts: &Options{Now: now, DefaultKey: long(300)},
			rej: []Rejection{rj(0, "key", reasonKeyLong)}},
		{name: "default key invalid UTF-8", body: `{"value":1}`, opts: &Options{Now: now, DefaultKey: "\xff"},
			rej: []Rejection{rj(0, "key", reasonKeyUTF8)}},
		{name: "duplicate key: last wins", body: `{"key":"a","key":"b","value":1}`, want: []Event{ev("b", now, 1)}},
		{name: "field names are case-sensitive", body: `{"Key":"a","key":"b","VALUE":7,"value":1}`, want: []Event{ev("b", now, 1)}},

		// ts
		{name: "ts integer", body: obj(`"key":"k","ts":1764064800000`), want: []Event{ev("k", 1764064800000, 1)}},
		{name: "ts missing", body: obj(`"key":"k"`), want: []Event{ev("k", now, 1)}},
		{name: "ts null", body: obj(`"key":"k","ts":null`), want: []Event{ev("k", now, 1)}},
		{name: "ts zero", body: obj(`"key":"k","ts":0`), want: []Event{ev("k", 0, 1)}},
		{name: "ts minus zero", body: obj(`"key":"k","ts":-0`), want: []Event{ev("k", 0, 1)}},
		{name: "ts exponent", body: obj(`"key":"k","ts":1.7640648e12`), want: []Event{ev("k", 1764064800000, 1)}},
		{name: "ts exponent capital", body: obj(`"key":"k","ts":17640648E+5`), want: []Event{ev("k", 1764064800000, 1)}},
		{name: "ts trailing zero fraction", body: obj(`"key":"k","ts":1764064800000.000`), want: []Event{ev("k", 1764064800000, 1)}},
		{name: "ts fraction then exponent", body: obj(`"key":"k","ts":0.00017640648e16`), want: []Event{ev("k", 1764064800000, 1)}},
		{name: "ts zero with huge exponent", body: obj(`"key":"k","ts":0e999999999999`), want: []Event{ev("k", 0, 1)}},
		{name: "ts max", body: obj(`"key":"k","ts":253402300799999`), want: []Event{ev("k", MaxTS, 1)}},
		{name: "ts after 9999", body: obj(`"key":"k","ts":253402300800000`), rej: []Rejection{rj(0, "ts", reasonTSRange)}},
		{name: "ts huge", body: obj(`"key":"k","ts":99999999999999999999999`), rej: []Rejection{rj(0, "ts", reasonTSRange)}},
		{name: "ts huge exponent", body: obj(`"key":"k","ts":1e999999999999`), rej: []Rejection{rj(0, "ts", reasonTSRange)}},
		// Sub-millisecond digits are truncated, in numbers as in strings.
		{name: "ts fractional truncated", body: obj(`"key":"k","ts":1764064800000.5`), want: []Event{ev("k", 1764064800000, 1)}},
		{name: "ts fractional .999 truncated", body: obj(`"key":"k","ts":1764064800123.999`), want: []Event{ev("k", 1764064800123, 1)}},
		{name: "ts fractional exponent truncated", body: obj(`"key":"k","ts":1.76406480012399e12`), want: []Event{ev("k", 1764064800123, 1)}},
		{name: "ts fractional long truncated", body: obj(`"key":"k","ts":1764064800123.99999999999999999999`), want: []Event{ev("k", 1764064800123, 1)}},
		{name: "ts tiny is zero", body: obj(`"key":"k","ts":1e-7`), want: []Event{ev("k", 0, 1)}},
		{name: "ts tiny huge negative exponent", body: obj(`"key":"k","ts":5e-999999999999`), want: []Event{ev("k", 0, 1)}},
		{name: "ts negative fraction", body: obj(`"key":"k","ts":-0.5`), rej: []Rejection{rj(0, "ts", reasonTSNegative)}},
		{name: "ts negative fraction exponent", body: obj(`"key":"k","ts":-5e-1`), rej: []Rejection{rj(0, "ts", reasonTSNegative)}},
		{name: "ts fraction over max", body: obj(`"key":"k","ts":253402300800000.5`), rej: []Rejection{rj(0, "ts", reasonTSRange)}},
		{name: "ts fraction at max", body: obj(`"key":"k","ts":253402300799999.9`), want: []Event{ev("k", MaxTS, 1)}},
		{name: "ts negative", body: obj(`"key":"k","ts":-1`), rej: []Rejection{rj(0, "ts", reasonTSNegative)}},
		{name: "ts negative exponent", body: obj(`"key":"k","ts":-1e3`), rej: []Rejection{rj(0, "ts", reasonTSNegative)}},
		{name: "ts bool", body: obj(`"key":"k","ts":true`), rej: []Rejection{rj(0, "ts", reasonTSType)}},
		{name: "ts object", body: obj(`"key":"k","ts":{}`), rej: []Rejection{rj(0, "ts", reasonTSType)}},
		{name: "ts leading zero", body: obj(`"key":"k","ts":0123`), rej: []Rejection{rj(0, "ts", reasonTSMalformed)}},
		{name: "ts plus sign", body: obj(`"key":"k","ts":+123`), rej: []Rejection{rj(0, "ts", reasonTSMalformed)}},
		{name: "ts leading dot", body: obj(`"key":"k","ts":.5`), rej: []Rejection{rj(0, "ts", reasonTSMalformed)}},
		{name: "ts trailing dot", body: obj(`"key":"k","ts":1764064800000.`), rej: []Rejection{rj(0, "ts", reasonTSMalformed)}},
		{name: "ts double minus", body: obj(`"key":"k","ts":--1`), rej: []Rejection{rj(0, "ts", reasonTSMalformed)}},
		{name: "ts NaN", body: obj(`"key":"k","ts":NaN`), rej: []Rejection{rj(0, "ts", reasonTSType)}},
		{name: "ts Infinity", body: obj(`"key":"k","ts":Infinity`), rej: []Rejection{rj(0, "ts", reasonTSType)}},
		{name: "ts RFC 3339", body: obj(`"key":"k","ts":"2025-11-25T10:00:00Z"`), want: []Event{ev("k", 1764064800000, 1)}},
		{name: "ts RFC 3339 millis", body: obj(`"key":"k","ts":"2025-11-25T10:00:00.123Z"`), want: []Event{ev("k", 1764064800123, 1)}},
		{name: "ts RFC 3339 nanos truncate", body: obj(`"key":"k","ts":"2025-11-25T10:00:00.123999999Z"`), want: []Event{ev("k", 1764064800123, 1)}},
		{name: "ts RFC 3339 offset", body: obj(`"key":"k","ts":"2025-11-25T12:30:00+02:30"`), want: []Event{ev("k", 1764064800000, 1)}},
		{name: "ts RFC 3339 offset +23:59", body: obj(`"key":"k","ts":"2025-11-26T09:59:00+23:59"`), want: []Event{ev("k", 1764064800000, 1)}},
		{name: "ts RFC 3339 offset -23:59", body: obj(`"key":"k","ts":"2025-11-24T10:01:00-23:59"`), want: []Event{ev("k", 1764064800000, 1)}},
		{name: "ts RFC 3339 offset +24:00", body: obj(`"key":"k","ts":"2025-11-26T10:00:00+24:00"`), rej: []Rejection{rj(0, "ts", reasonTSOffset)}},
		{name: "ts RFC 3339 offset -24:00", body: obj(`"key":"k","ts":"2025-11-24T10:00:00-24:00"`), rej: []Rejection{rj(0, "ts", reasonTSOffset)}},
		{name: "ts RFC 3339 offset minutes 60", body: obj(`"key":"k","ts":"2025-11-25T10:00:00+01:60"`), rej: []Rejection{rj(0, "ts", reasonTSOffset)}},
		{name: "ts RFC 3339 offset hours 99", body: obj(`"key":"k","ts":"2025-11-25T10:00:00+99:00"`), rej: []Rejection{rj(0, "ts", reasonTSRFC3339)}},
		{name: "ts RFC 3339 comma fraction", body: obj(`"key":"k","ts":"2025-11-25T10:00:00,5Z"`), rej: []Rejection{rj(0, "ts", reasonTSRFC3339)}},
		{name: "ts RFC 3339 lower-case z", body: obj(`"key":"k","ts":"2025-11-25T10:00:00z"`), rej: []Rejection{rj(0, "ts", reasonTSRFC3339)}},
		{name: "ts RFC 3339 epoch", body: obj(`"key":"k","ts":"1970-01-01T00:00:00Z"`), want: []Event{ev("k", 0, 1)}},
		{name: "ts RFC 3339 before 1970", body: obj(`"key":"k","ts":"1969-12-31T23:59:59Z"`), rej: []Rejection{rj(0, "ts", reasonTSNegative)}},
		{name: "ts RFC 3339 last ms", body: obj(`"key":"k","ts":"9999-12-31T23:59:59.999Z"`), want: []Event{ev("k", MaxTS, 1)}},
		{name: "ts RFC 3339 past 9999 in UTC", body: obj(`"key":"k","ts":"9999-12-31T23:59:59-01:00"`), rej: []Rejection{rj(0, "ts", reasonTSRange)}},
		{name: "ts date only", body: obj(`"key":"k","ts":"2025-11-25"`), rej: []Rejection{rj(0, "ts", reasonTSRFC3339)}},
		{name: "ts no zone", body: obj(`"key":"k","ts":"2025-11-25T10:00:00"`), rej: []Rejection{rj(0, "ts", reasonTSRFC3339)}},
		{name: "ts digits string", body: obj(`"key":"k","ts":"1764064800000"`), rej: []Rejection{rj(0, "ts", reasonTSRFC3339)}},
		{name: "ts empty string", body: obj(`"key":"k","ts":""`), rej: []Rejection{rj(0, "ts", reasonTSRFC3339)}},

		// value
		{name: "value float", body: `{"key":"k","value":-42.125}`, want: []Event{ev("k", now, -42.125)}},
		{name: "value exponent", body: `{"key":"k","value":1.5e-7}`, want: []Event{ev("k", now, 1.5e-7)}},
		{name: "value big integer", body: `{"key":"k","value":12345678901234567890}`, want: []Event{ev("k", now, 12345678901234567890)}},
		{name: "value minus zero", body: `{"key":"k","value":-0}`, want: []Event{ev("k", now, math.Copysign(0, -1))}},
		{name: "value underflow is zero", body: `{"key":"k","value":1e-400}`, want: []Event{ev("k", now, 0)}},
		{name: "value max float", body: `{"key":"k","value":1.7976931348623157e308}`, want: []Event{ev("k", now, math.MaxFloat64)}},
		{name: "value missing", body: `{"key":"k"}`, rej: []Rejection{rj(0, "value", reasonValueMissing)}},
		{name: "value null", body: `{"key":"k","value":null}`, rej: []Rejection{rj(0, "value", reasonValue)}},
		{name: "value string", body: `{"key":"k","value":"1"}`, rej: []Rejection{rj(0, "value", reasonValue)}},
		{name: "value bool", body: `{"key":"k","value":false}`, rej: []Rejection{rj(0, "value", reasonValue)}},
		{name: "value array", body: `{"key":"k","value":[1]}`, rej: []Rejection{rj(0, "value", reasonValue)}},
		{name: "value overflow", body: `{"key":"k","value":1e400}`, rej: []Rejection{rj(0, "value", reasonValue)}},
		{name: "value NaN", body: `{"key":"k","value":NaN}`, rej: []Rejection{rj(0, "value", reasonValue)}},
		{name: "value nan", body: `{"key":"k","value":nan}`, rej: []Rejection{rj(0, "value", reasonValue)}},
		{name: "value Inf", body: `{"key":"k","value":Inf}`, rej: []Rejection{rj(0, "value", reasonValue)}},
		{name: "value -inf", body: `{"key":"k","value":-inf}`, rej: []Rejection{rj(0, "value", reasonValue)}},
		{name: "value Infinity", body: `{"key":"k","value":Infinity}`, rej: []Rejection{rj(0, "value", reasonValue)}},
		{name: "value -Infinity", body: `{"key":"k","value":-Infinity}`, rej: []Rejection{rj(0, "value", reasonValue)}},
		{name: "value +Infinity", body: `{"key":"k","value":+Infinity}`, rej: []Rejection{rj(0, "value", reasonValue)}},
		{name: "value infinity spaced", body: `{"key":"k", "value" : infinity }`, rej: []Rejection{rj(0, "value", reasonValue)}},
		{name: "value Infinity, key Infinity kept", body: `{"key":"Infinity","value":Infinity}`, rej: []Rejection{rj(0, "value", reasonValue)}},
		{name: "value Infinity in another field is ignored like NaN", body: `{"key":"k","x":[NaN,Infinity],"value":1}`, want: []Event{ev("k", now, 1)}},
		{name: "Infinity as a name stays malformed", body: `{"key":"k",Infinity:1,"value":1}`, rej: []Rejection{rj(0, "", reasonMalformed)}},
		{name: "value 1-2", body: `{"key":"k","value":1-2}`, rej: []Rejection{rj(0, "value", reasonValueMalformed)}},
		{name: "value trailing dot", body: `{"key":"k","value":1.}`, rej: []Rejection{rj(0, "value", reasonValueMalformed)}},
		{name: "value leading dot", body: `{"key":"k","value":.5}`, rej: []Rejection{rj(0, "value", reasonValueMalformed)}},
		{name: "value bare exponent", body: `{"key":"k","value":1e}`, rej: []Rejection{rj(0, "value", reasonValueMalformed)}},
		{name: "value plus sign", body: `{"key":"k","value":+1}`, rej: []Rejection{rj(0, "value", reasonValueMalformed)}},
		{name: "value leading zero", body: `{"key":"k","value":01}`, rej: []Rejection{rj(0, "value", reasonValueMalformed)}},
		{name: "value negative leading zero", body: `{"key":"k","value":-01.5}`, rej: []Rejection{rj(0, "value", reasonValueMalformed)}},
		{name: "value double minus", body: `{"key":"k","value":--1}`, rej: []Rejection{rj(0, "value", reasonValueMalformed)}},
		{name: "value fraction in exponent", body: `{"key":"k","value":1e5.5}`, rej: []Rejection{rj(0, "value", reasonValueMalformed)}},

		// id
		{name: "id", body: `{"key":"k","value":1,"id":"e-1"}`, want: []Event{{Key: "k", TS: now, Value: 1, ID: "e-1"}}},
		{name: "id empty", body: `{"key":"k","value":1,"id":""}`, want: []Event{ev("k", now, 1)}},
		{name: "id null", body: `{"key":"k","value":1,"id":null}`, want: []Event{ev("k", now, 1)}},
		{name: "id 128 bytes", body: `{"key":"k","value":1,"id":"` + long(128) + `"}`, want: []Event{{Key: "k", TS: now, Value: 1, ID: long(128)}}},
		{name: "id 129 bytes", body: `{"key":"k","value":1,"id":"` + long(129) + `"}`, rej: []Rejection{rj(0, "id", reasonIDLong)}},
		{name: "id number", body: `{"key":"k","value":1,"id":7}`, rej: []Rejection{rj(0, "id", reasonIDType)}},
		{name: "id bad escape", body: `{"key":"k","value":1,"id":"\x"}`, rej: []Rejection{rj(0, "id", reasonBadString)}},

		// tags
		{name: "tags", body: `{"key":"k","value":1,"tags":{"env":"prod","dc":"ams\n1"}}`,
			want: []Event{{Key: "k", TS: now, Value: 1, Tags: map[string]string{"env": "prod", "dc": "ams\n1"}}}},
		{name: "tags empty", body: `{"key":"k","value":1,"tags":{}}`, want: []Event{ev("k", now, 1)}},
		{name: "tags null", body: `{"key":"k","value":1,"tags":null}`, want: []Event{ev("k", now, 1)}},
		{name: "tags empty value", body: `{"key":"k","value":1,"tags":{"a":""}}`,
			want: []Event{{Key: "k", TS: now, Value: 1, Tags: map[string]string{"a": ""}}}},
		{name: "tags escaped key", body: `{"key":"k","value":1,"tags":{"\u00e9\n":"v"}}`,
			want: []Event{{Key: "k", TS: now, Value: 1, Tags: map[string]string{"é\n": "v"}}}},
		{name: "tags 32", body: `{"key":"k","value":1,"tags":` + tags(32) + `}`,
			want: []Event{{Key: "k", TS: now, Value: 1, Tags: tagMap(32)}}},
		{name: "tags 33", body: `{"key":"k","value":1,"tags":` + tags(33) + `}`, rej: []Rejection{rj(0, "tags", reasonTagsCount)}},
		{name: "tags array", body: `{"key":"k","value":1,"tags":["a"]}`, rej: []Rejection{rj(0, "tags", reasonTagsType)}},
		{name: "tags string", body: `{"key":"k","value":1,"tags":"a=b"}`, rej: []Rejection{rj(0, "tags", reasonTagsType)}},
		{name: "tags number value", body: `{"key":"k","value":1,"tags":{"a":1}}`, rej: []Rejection{rj(0, "tags", reasonTagValueType)}},
		{name: "tags null value", body: `{"key":"k","value":1,"tags":{"a":null}}`, rej: []Rejection{rj(0, "tags", reasonTagValueType)}},
		{name: "tags nested", body: `{"key":"k","value":1,"tags":{"a":{"b":"c"}}}`, rej: []Rejection{rj(0, "tags", reasonTagValueType)}},
		{name: "tags empty key", body: `{"key":"k","value":1,"tags":{"":"v"}}`, rej: []Rejection{rj(0, "tags", reasonTagKeyEmpty)}},
		{name: "tags key 256", body: `{"key":"k","value":1,"tags":{"` + long(256) + `":"v"}}`,
			want: []Event{{Key: "k", TS: now, Value: 1, Tags: map[string]string{long(256): "v"}}}},
		{name: "tags key 257", body: `{"key":"k","value":1,"tags":{"` + long(257) + `":"v"}}`, rej: []Rejection{rj(0, "tags", reasonTagKeyLong)}},
		{name: "tags value 257", body: `{"key":"k","value":1,"tags":{"a":"` + long(257) + `"}}`, rej: []Rejection{rj(0, "tags", reasonTagValueLong)}},
		{name: "tags key invalid UTF-8", body: "{\"key\":\"k\",\"value\":1,\"tags\":{\"\xc3\":\"v\"}}", rej: []Rejection{rj(0, "tags", reasonBadString)}},
		{name: "tags key bad escape", body: `{"key":"k","value":1,"tags":{"a\q":"v"}}`, rej: []Rejection{rj(0, "tags", reasonBadString)}},
		{name: "tags key raw control", body: "{\"key\":\"k\",\"value\":1,\"tags\":{\"a\tb\":\"v\"}}", rej: []Rejection{rj(0, "tags", reasonBadString)}},
		{name: "tags key escaped quote", body: `{"key":"k","value":1,"tags":{"a\"b\\":"\"","c":"d"}}`,
			want: []Event{{Key: "k", TS: now, Value: 1, Tags: map[string]string{`a"b\`: `"`, "c": "d"}}}},
		{name: "tags key empty after escape", body: `{"key":"k","value":1,"tags":{"\u0041":"v"}}`,
			want: []Event{{Key: "k", TS: now, Value: 1, Tags: map[string]string{"A": "v"}}}},
		{name: "tags duplicate name", body: `{"key":"k","value":1,"tags":{"a":"1","a":"2"}}`,
			want: []Event{{Key: "k", TS: now, Value: 1, Tags: map[string]string{"a": "2"}}}},
		{name: "tags bool value", body: `{"key":"k","value":1,"tags":{"a":true}}`, rej: []Rejection{rj(0, "tags", reasonTagValueType)}},
		{name: "tags array value", body: `{"key":"k","value":1,"tags":{"a":["x"]}}`, rej: []Rejection{rj(0, "tags", reasonTagValueType)}},
		{name: "tags spaced", body: `{"key":"k","value":1,"tags": { "a" : "1" , "b":"2" } }`,
			want: []Event{{Key: "k", TS: now, Value: 1, Tags: map[string]string{"a": "1", "b": "2"}}}},
		{name: "tags value invalid UTF-8", body: "{\"key\":\"k\",\"value\":1,\"tags\":{\"a\":\"\xc3\"}}", rej: []Rejection{rj(0, "tags", reasonBadString)}},

		// first problem wins, in field order key, ts, value, id, tags
		{name: "order key first", body: `{"tags":1,"id":2,"value":"x","ts":-1,"key":3}`, rej: []Rejection{rj(0, "key", reasonKeyType)}},
		{name: "order ts second", body: `{"tags":1,"id":2,"value":"x","ts":-1,"key":"k"}`, rej: []Rejection{rj(0, "ts", reasonTSNegative)}},
		{name: "order value third", body: `{"tags":1,"id":2,"value":"x","key":"k"}`, rej: []Rejection{rj(0, "value", reasonValue)}},
		{name: "order id fourth", body: `{"tags":1,"id":2,"value":1,"key":"k"}`, rej: []Rejection{rj(0, "id", reasonIDType)}},

		// unknown fields
		{name: "unknown fields ignored", body: `{"key":"k","x":{"y":[1,2,{"z":null}]},"value":1,"host":"h"}`, want: []Event{ev("k", now, 1)}},
		{name: "all fields", body: `{"key":"web-1.cpu","ts":1764064800000,"value":93.2,"id":"e-1","tags":{"env":"prod"}}`,
			want: []Event{{Key: "web-1.cpu", TS: 1764064800000, Value: 93.2, ID: "e-1", Tags: map[string]string{"env": "prod"}}}},
	})
}

func TestDecodeFormats(t *testing.T) {
	a := `{"key":"a","value":1}`
	b := `{"key":"b","value":2}`
	bad := `{"key":"c","value":"x"}`
	evA, evB := ev("a", now, 1), ev("b", now, 2)
	runDecodeCases(t, []decodeCase{
		// single object
		{name: "object", body: a, want: []Event{evA}},
		{name: "object surrounded by space", body: " \n\t" + a + " \r\n ", want: []Event{evA}},
		{name: "object with BOM", body: "\xef\xbb\xbf" + a, want: []Event{evA}},
		{name: "object over lines", body: "{\n  \"key\": \"a\",\n  \"value\": 1\n}\n", want: []Event{evA}},
		{name: "object invalid event", body: bad, rej: []Rejection{rj(0, "value", reasonValue)}},
		{name: "object syntax error is a rejection", body: `{"key":"a",`, rej: []Rejection{rj(0, "", reasonMalformed)}},
		{name: "json object", body: a, format: FormatJSON, want: []Event{evA}},
		{name: "json object syntax error", body: `{"key":"a",`, format: FormatJSON, wantErr: ErrMalformed},
		{name: "json with NDJSON body", body: a + "\n" + b, format: FormatJSON, wantErr: ErrMalformed},
		{name: "json scalar", body: `12`, format: FormatJSON, wantErr: ErrMalformed},

		// array
		{name: "array", body: "[" + a + "," + b + "]", want: []Event{evA, evB}},
		{name: "array spaced", body: " [ \n" + a + " ,\r\n\t" + b + " ] \n", want: []Event{evA, evB}},
		{name: "array json format", body: "[" + a + "]", format: FormatJSON, want: []Event{evA}},
		{name: "array mixed", body: "[" + a + ",3," + bad + `,"s",null,[1],` + b + `,{}]`, want: []Event{evA, evB},
			rej: []Rejection{rj(1, "", reasonNotObject), rj(2, "value", reasonValue), rj(3, "", reasonNotObject),
				rj(4, "", reasonNotObject), rj(5, "", reasonNotObject), rj(7, "key", reasonKeyMissing)}},
		{name: "array strings with brackets", body: `[{"key":"a]}\"[{","value":1},{"key":"\\","value":2}]`,
			want: []Event{ev("a]}\"[{", now, 1), ev(`\`, now, 2)}},
		{name: "array nested", body: `[{"key":"a","x":[[{}],{"y":"]"}],"value":1}]`, want: []Event{evA}},
		{name: "array empty", body: `[]`, wantErr: ErrEmpty},
		{name: "array empty spaced", body: ` [ ] `, wantErr: ErrEmpty},
		{name: "array syntax error in element", body: "[" + a + `,{"key":}]`, wantErr: ErrMalformed},
		{name: "array trailing comma", body: "[" + a + ",]", wantErr: ErrMalformed},
		{name: "array leading comma", body: "[," + a + "]", wantErr: ErrMalformed},
		{name: "array missing comma", body: "[" + a + " " + b + "]", wantErr: ErrMalformed},
		{name: "array unterminated", body: "[" + a, wantErr: ErrMalformed},
		{name: "array unterminated after comma", body: "[" + a + ",", wantErr: ErrMalformed},
		{name: "array unterminated string", body: `[{"key":"a`, wantErr: ErrMalformed},
		{name: "array unterminated object", body: `[{"key":"a"`, wantErr: ErrMalformed},
		{name: "array tail", body: "[" + a + "]x", wantErr: ErrMalformed},
		{name: "array then array", body: "[" + a + "]\n[" + b + "]", wantErr: ErrMalformed},
		{name: "empty array then more", body: "[]x", wantErr: ErrMalformed},
		{name: "array scalar elements", body: `[1,2,"x"]`, rej: []Rejection{rj(0, "", reasonNotObject), rj(1, "", reasonNotObject), rj(2, "", reasonNotObject)}},
		{name: "array bad scalar", body: `[1x]`, wantErr: ErrMalformed},
		{name: "array in ndjson format is a rejected line", body: "[" + a + "]", format: FormatNDJSON, rej: []Rejection{rj(0, "", reasonNotObject)}},

		// NDJSON
		{name: "ndjson auto", body: a + "\n" + b + "\n", want: []Event{evA, evB}},
		{name: "ndjson explicit", body: a + "\n" + b, format: FormatNDJSON, want: []Event{evA, evB}},
		{name: "ndjson one line", body: a, format: FormatNDJSON, want: []Event{evA}},
		{name: "ndjson CRLF", body: a + "\r\n" + b + "\r\n", want: []Event{evA, evB}},
		{name: "ndjson blank lines skipped", body: "\n\n" + a + "\n\n \t\r\n\r\n" + b + "\n\n", format: FormatNDJSON, want: []Event{evA, evB}},
		{name: "ndjson bad lines keep going", body: a + "\n{bad\n" + bad + "\n\n3\n" + b + "\n" + `{"value":1}` + "\n",
			want: []Event{evA, evB},
			rej:  []Rejection{rj(1, "", reasonMalformed), rj(2, "value", reasonValue), rj(3, "", reasonNotObject), rj(5, "key", reasonKeyMissing)}},
		{name: "ndjson first line bad", body: "{bad\n" + a + "\n", want: []Event{evA}, rej: []Rejection{rj(0, "", reasonMalformed)}},
		{name: "ndjson first line bad CRLF", body: "{\"key\":\r\n" + a + "\r\n", want: []Event{evA}, rej: []Rejection{rj(0, "", reasonMalformed)}},
		{name: "ndjson two objects on a line", body: a + " " + b + "\n" + a, want: []Event{evA}, rej: []Rejection{rj(0, "", reasonMalformed)}},
		{name: "ndjson raw newline in string splits", body: "{\"key\":\"a\nb\",\"value\":1}\n" + b, format: FormatNDJSON,
			want: []Event{evB}, rej: []Rejection{rj(0, "", reasonMalformed), rj(1, "", reasonMalformed)}},
		{name: "ndjson only blank", body: "\n \r\n\t\n", format: FormatNDJSON, wantErr: ErrEmpty},
		{name: "ndjson starting with a scalar is not auto", body: "3\n" + a, wantErr: ErrMalformed},
		{name: "ndjson explicit starting with a scalar", body: "3\n" + a, format: FormatNDJSON, want: []Event{evA}, rej: []Rejection{rj(0, "", reasonNotObject)}},

		// whole-body errors
		{name: "empty", body: "", wantErr: ErrEmpty},
		{name: "blank", body: " \r\n\t ", wantErr: ErrEmpty},
		{name: "BOM only", body: "\xef\xbb\xbf", wantErr: ErrEmpty},
		{name: "json empty", body: "", format: FormatJSON, wantErr: ErrEmpty},
		{name: "scalar body", body: `42`, wantErr: ErrMalformed},
		{name: "string body", body: `"x"`, wantErr: ErrMalformed},
		{name: "garbage body", body: `hello`, wantErr: ErrMalformed},
		{name: "unknown format", body: a, format: Format(42), wantErr: ErrFormat},
	})
}

func TestDecodeDeepNesting(t *testing.T) {
	deep := strings.Repeat("[", 100000) + strings.Repeat("]", 100000)
	for _, body := range []string{
		`{"key":"k","value":1,"x":` + deep + `}`,
		"[" + deep + "]",
		deep,
	} {
		var d Decoder
		_, _, _ = d.Decode([]byte(body), FormatAuto, Options{Now: now}, nil, nil) // must not panic or overflow the stack
	}
}

func TestDecodeLargeBodyReleasesParser(t *testing.T) {
	var d Decoder
	line := `{"key":"k","value":1,"pad":"` + strings.Repeat("x", retainLimit) + `"}`
	evs, _, err := d.Decode([]byte(line), FormatJSON, Options{Now: now}, nil, nil)
	if err != nil || len(evs) != 1 {
		t.Fatalf("got %v %v", evs, err)
	}
	if d.big {
		t.Fatal("big flag not cleared")
	}
	// The decoder still works afterwards.
	evs, _, err = d.Decode([]byte(`{"key":"k","value":2}`), FormatJSON, Options{Now: now}, nil, nil)
	if err != nil || len(evs) != 1 || evs[0].Value != 2 {
		t.Fatalf("got %v %v", evs, err)
	}
}

// TestDecodeStringsSurviveReuse checks that decoded strings do not alias the
// reused parser: decoding another batch must not change them.
func TestDecodeStringsSurviveReuse(t *testing.T) {
	var d Decoder
	first, _, err := d.Decode([]byte(`{"key":"first\u00e9","value":1,"id":"id-1","tags":{"a\u00e9":"b\n"}}`), FormatAuto, Options{Now: now}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if _, _, err := d.Decode([]byte(`{"key":"zzzzzzzzzzzz","value":2,"id":"zzzz","tags":{"zzz":"zzz"}}`), FormatAuto, Options{Now: now}, nil, nil); err != nil {
			t.Fatal(err)
		}
	}
	want := Event{Key: "firsté", TS: now, Value: 1, ID: "id-1", Tags: map[string]string{"aé": "b\n"}}
	if !eventsEqual(first, []Event{want}) {
		t.Fatalf("got %+v, want %+v", first, want)
	}
}

func TestFormatFromContentType(t *testing.T) {
	for ct, want := range map[string]Format{
		"":                                  FormatAuto,
		"text/plain":                        FormatAuto,
		"application/x-www-form-urlencoded": FormatAuto,
		"application/json":                  FormatJSON,
		"Application/JSON; charset=utf-8":   FormatJSON,
		"application/x-ndjson":              FormatNDJSON,
		" application/x-ndjson ;q=1":        FormatNDJSON,
		"application/ndjson":                FormatNDJSON,
		"application/jsonl":                 FormatNDJSON,
		"application/x-protobuf":            FormatProto,
		"application/protobuf":              FormatProto,
		"application/x-protobuf; messageType=squall.messages.EventBatch": FormatProto,
	} {
		if got := FormatFromContentType(ct); got != want {
			t.Errorf("FormatFromContentType(%q) = %v, want %v", ct, got, want)
		}
	}
	for f, s := range map[Format]string{FormatAuto: "auto", FormatJSON: "json", FormatNDJSON: "ndjson", FormatProto: "proto", 9: "Format(9)"} {
		if f.String() != s {
			t.Errorf("%d.String() = %q, want %q", uint8(f), f.String(), s)
		}
	}
}

func TestValidate(t *testing.T) {
	ok := Event{Key: "k", TS: 1, Value: 1, ID: "i", Tags: map[string]string{"a": "b"}}
	with := func(f func(*Event)) Event {
		e := ok
		e.Tags = map[string]string{"a": "b"}
		f(&e)
		return e
	}
	many := map[string]string{}
	for i := range MaxTags + 1 {
		many[fmt.Sprint(i)] = ""
	}
	for _, tc := range []struct {
		name  string
		ev    Event
		field string
	}{
		{"ok", ok, ""},
		{"zero ts", with(func(e *Event) { e.TS = 0 }), ""},
		{"max ts", with(func(e *Event) { e.TS = MaxTS }), ""},
		{"no id no tags", Event{Key: "k", Value: 1}, ""},
		{"empty key", with(func(e *Event) { e.Key = "" }), "key"},
		{"long key", with(func(e *Event) { e.Key = strings.Repeat("x", MaxKeyBytes+1) }), "key"},
		{"bad utf8 key", with(func(e *Event) { e.Key = "\xff" }), "key"},
		{"negative ts", with(func(e *Event) { e.TS = -1 }), "ts"},
		{"late ts", with(func(e *Event) { e.TS = MaxTS + 1 }), "ts"},
		{"nan", with(func(e *Event) { e.Value = math.NaN() }), "value"},
		{"inf", with(func(e *Event) { e.Value = math.Inf(-1) }), "value"},
		{"long id", with(func(e *Event) { e.ID = strings.Repeat("x", MaxIDBytes+1) }), "id"},
		{"bad utf8 id", with(func(e *Event) { e.ID = "\xc3" }), "id"},
		{"too many tags", with(func(e *Event) { e.Tags = many }), "tags"},
		{"empty tag key", with(func(e *Event) { e.Tags[""] = "v" }), "tags"},
		{"long tag key", with(func(e *Event) { e.Tags[strings.Repeat("x", MaxTagKeyBytes+1)] = "v" }), "tags"},
		{"long tag value", with(func(e *Event) { e.Tags["a"] = strings.Repeat("x", MaxTagValueBytes+1) }), "tags"},
		{"bad utf8 tag", with(func(e *Event) { e.Tags["a"] = "\xff" }), "tags"},
	} {
		r := Validate(&tc.ev)
		switch {
		case tc.field == "" && r != nil:
			t.Errorf("%s: unexpected rejection %+v", tc.name, r)
		case tc.field != "" && (r == nil || r.Field != tc.field || r.Reason == "" || r.Index != 0):
			t.Errorf("%s: got %+v, want a rejection of %q", tc.name, r, tc.field)
		}
	}
}

// TestParseFloatMatchesStrconv checks the number fast paths against
// strconv.ParseFloat, bit for bit.
func TestParseFloatMatchesStrconv(t *testing.T) {
	inputs := []string{"0", "-0", "0.0", "1", "-1", "0.1", "0.3", "42.25", "123456789012345", "1234567890123456",
		"0.000000000000001", "999999999999999", "99999999999999.9", "-0.5", "3.141592653589793", "2.2250738585072014e-308",
		"5e-324", "1e22", "1e23", "9007199254740993", "0.1e1", "1E-2"}
	r := rand.New(rand.NewPCG(1, 2))
	for range 20000 {
		ip := r.Uint64N(1_000_000_000)
		s := strconv.FormatUint(ip, 10)
		if r.IntN(2) == 0 {
			s += "." + strconv.FormatUint(r.Uint64N(1_000_000_000), 10)
		}
		if r.IntN(4) == 0 {
			s = "-" + s
		}
		inputs = append(inputs, s)
	}
	for _, s := range inputs {
		want, err := strconv.ParseFloat(s, 64)
		if err != nil {
			t.Fatalf("%s: %v", s, err)
		}
		got, ok := parseFloat([]byte(s))
		if !ok || math.Float64bits(got) != math.Float64bits(want) {
			t.Errorf("parseFloat(%s) = %v %v, want %v", s, got, ok, want)
		}
	}
}

// TestDecodeAllocs checks that a batch without tags costs one allocation
// (the string buffer), whatever the forms of its fields.
func TestDecodeAllocs(t *testing.T) {
	var b strings.Builder
	for i := range 100 {
		fmt.Fprintf(&b, `{"key":"h-%d.cpu\u00e9\n","ts":"2025-11-25T10:00:%02d.5Z","value":%d.125e-1,"id":"e\"%d","x":[1,{"y":null}]}`+"\n", i, i%60, i, i)
		fmt.Fprintf(&b, `{"key":"h-%d","ts":1.7640648e12,"value":-%d.5}`+"\n", i, i)
	}
	body := []byte(b.String())
	var d Decoder
	dst := make([]Event, 0, 200)
	dst, _, err := d.Decode(body, FormatNDJSON, Options{Now: now}, dst, nil)
	if err != nil || len(dst) != 200 {
		t.Fatalf("decoded %d: %v", len(dst), err)
	}
	for _, f := range []Format{FormatNDJSON, FormatAuto} {
		if n := testing.AllocsPerRun(20, func() {
			dst, _, _ = d.Decode(body, f, Options{Now: now}, dst[:0], nil)
		}); n != 1 {
			t.Errorf("%v: %v allocations per Decode, want 1", f, n)
		}
	}
}

// TestEnsure: with Ensure before each call, bodies share one buffer across
// calls (no allocation per call), a new one is taken only when the rest is
// too small, and every event's strings stay intact across buffers.
func TestEnsure(t *testing.T) {
	var d Decoder
	bodies := make([][]byte, 3000) // ~250 KB of bodies: several 64 KiB buffers
	for i := range bodies {
		bodies[i] = fmt.Appendf(nil, `{"key":"k-%04d","ts":1764064800000,"value":%d,"id":"e-%d","tags":{"dc":"eu%d"}}`, i, i, i, i)
	}
	evs := make([]Event, 0, len(bodies))
	buffers := 0
	for _, b := range bodies {
		before := cap(d.shared)
		d.Ensure(len(b))
		if cap(d.shared) != before || len(d.shared) == 0 {
			buffers++
		}
		var err error
		if evs, _, err = d.Decode(b, FormatAuto, Options{}, evs, nil); err != nil {
			t.Fatal(err)
		}
	}
	for i, ev := range evs {
		if ev.Key != fmt.Sprintf("k-%04d", i) || ev.ID != fmt.Sprintf("e-%d", i) || ev.Tags["dc"] != fmt.Sprintf("eu%d", i) {
			t.Fatalf("event %d = %+v", i, ev)
		}
	}
	// Strings take ~20 of each ~85-byte body: a 64 KiB buffer lasts ~3,000.
	if buffers < 1 || buffers > 2 {
		t.Errorf("%d buffers for %d bodies", buffers, len(bodies))
	}
	// Less room than asked: a new buffer, at least minChunk.
	d.shared = d.shared[:cap(d.shared)-10]
	d.Ensure(100)
	if len(d.shared) != 0 || cap(d.shared) < minChunk {
		t.Errorf("Ensure with 10 bytes left: len %d cap %d", len(d.shared), cap(d.shared))
	}
	// A body over maxChunk is left to its own arena: the buffer stays.
	kept := cap(d.shared)
	d.Ensure(maxChunk + 1)
	if cap(d.shared) != kept {
		t.Errorf("Ensure(maxChunk+1) replaced the buffer: cap %d, was %d", cap(d.shared), kept)
	}
	body := []byte(`{"key":"some.key","ts":1764064800000,"value":1}`)
	evs = make([]Event, 0, 1)
	allocs := testing.AllocsPerRun(1000, func() {
		d.Ensure(len(body))
		evs, _, _ = d.Decode(body, FormatAuto, Options{}, evs[:0], nil)
	})
	if allocs > 0.01 {
		t.Errorf("Ensure + Decode: %v allocs per call, want 0 (one buffer per ~5,000 calls)", allocs)
	}
}

func protoBody(t *testing.T, evs []Event) []byte {
	t.Helper()
	b, err := proto.Marshal(ToProto(evs))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// With DefaultKeyBytes the events that take the default key get a copy,
// made once per call, that outlives the caller's reuse of its memory, on
// every path (fast, parser, protobuf) and after a rejected event rolled the
// arena back; a DefaultKey string is used as given.
func TestDefaultKeyBytes(t *testing.T) {
	var d Decoder
	for _, c := range []struct {
		name string
		body []byte
		f    Format
	}{
		{"fast", []byte(`{"ts":1764064800000,"value":1,"id":"x"}` + "\n" + `{"ts":1764064800000,"value":2}`), FormatNDJSON},
		{"parser", []byte(`{"ts":1764064800000,"value":1,"tags":{"a":"b"}}` + "\n" + `{"ts":"x","value":1}` + "\n" + `{"value":3,"tags":{"c":"d"}}`), FormatNDJSON},
		{"proto", protoBody(t, []Event{{TS: 1764064800000, Value: 1}, {TS: 1764064800000, Value: 2, ID: "y"}}), FormatProto},
	} {
		rk := []byte("record.key")
		evs, _, err := d.Decode(c.body, c.f, Options{Now: 5, DefaultKeyBytes: rk}, nil, nil)
		if err != nil || len(evs) < 2 {
			t.Fatalf("%s: %v %+v", c.name, err, evs)
		}
		copy(rk, "XXXXXXXXXX") // the owner reuses its memory
		for _, ev := range evs {
			if ev.Key != "record.key" {
				t.Errorf("%s: key %q after the owner reused it", c.name, ev.Key)
			}
		}
		if unsafe.StringData(evs[0].Key) != unsafe.StringData(evs[len(evs)-1].Key) {
			t.Errorf("%s: one copy per call expected", c.name)
		}
	}
	rk := []byte("record.key")
	evs, _, _ := d.Decode([]byte(`{"ts":1,"value":1}`), FormatJSON, Options{DefaultKey: unsafe.String(&rk[0], len(rk))}, nil, nil)
	if unsafe.StringData(evs[0].Key) != &rk[0] {
		t.Error("a DefaultKey string was copied")
	}
}

// The fast path takes the common shapes (and the parser path the rest).
func TestFastPathTaken(t *testing.T) {
	o := Options{Now: 5, DefaultKey: "rk"}
	for _, c := range []struct {
		in   string
		want Event
		ok   bool
	}{
		{`{"key":"web-1.cpu","ts":1764064800000,"value":93.2}`, Event{Key: "web-1.cpu", TS: 1764064800000, Value: 93.2}, true},
		{` { "value" : 1 , "id" : "e-1" , "extra" : [1] } `, Event{}, false},
		{`{"value":-2.5,"id":"e-1","extra":"x","n":null}`, Event{Key: "rk", TS: 5, Value: -2.5, ID: "e-1"}, true},
		{`{"key":"a","value":1,"tags":{"env":"prod"}}`, Event{}, false},
		{`{"key":"a\n","value":1}`, Event{}, false},
	} {
		var d Decoder
		d.newArena(len(c.in))
		got, ok := d.fast([]byte(c.in), &o)
		if ok != c.ok || (ok && !eventsEqual([]Event{got}, []Event{c.want})) {
			t.Errorf("fast(%s) = %+v, %v; want %+v, %v", c.in, got, ok, c.want, c.ok)
		}
	}
}

// oneCase is an event text and what becomes of it: an event, or a
// rejection of Field with Reason.
type oneCase struct {
	name          string
	elem          string
	want          *Event
	field, reason string
}

// runEveryFormat decodes each case as a single object (auto and JSON), as
// element 1 of a JSON array and as line 1 of NDJSON between two good
// events, under o: every format must treat it the same.
func runEveryFormat(t *testing.T, o Options, cases []oneCase) {
	t.Helper()
	good := `{"key":"good","value":7}`
	evGood := ev("good", o.Now, 7)
	var dc []decodeCase
	for _, c := range cases {
		var want []Event
		var rej []Rejection
		if c.want != nil {
			want = []Event{*c.want}
		} else {
			rej = []Rejection{rj(0, c.field, c.reason)}
		}
		wantMid := []Event{evGood, evGood}
		var rejMid []Rejection
		if c.want != nil {
			wantMid = []Event{evGood, *c.want, evGood}
		} else {
			rejMid = []Rejection{rj(1, c.field, c.reason)}
		}
		dc = append(dc,
			decodeCase{name: c.name + "/object", body: c.elem, opts: &o, want: want, rej: rej},
			decodeCase{name: c.name + "/json", body: c.elem, format: FormatJSON, opts: &o, want: want, rej: rej},
			decodeCase{name: c.name + "/array", body: "[" + good + ",\n" + c.elem + " , " + good + "]", opts: &o, want: wantMid, rej: rejMid},
			decodeCase{name: c.name + "/ndjson", body: good + "\n" + c.elem + "\r\n" + good, format: FormatNDJSON, opts: &o, want: wantMid, rej: rejMid},
			decodeCase{name: c.name + "/ndjson-auto", body: good + "\n" + c.elem + "\n" + good + "\n", opts: &o, want: wantMid, rej: rejMid},
		)
	}
	runDecodeCases(t, dc)
}

func evp(key string, ts int64, value float64) *Event { e := ev(key, ts, value); return &e }

// Numbers, non-finite values and RFC 3339 strings are judged the same in
// every format, on the field they belong to.
func TestDecodeNumbersEveryFormat(t *testing.T) {
	runEveryFormat(t, Options{Now: now}, []oneCase{
		{name: "value Infinity", elem: `{"key":"k","value":Infinity}`, field: "value", reason: reasonValue},
		{name: "value -Infinity", elem: `{"key":"k","value":-Infinity}`, field: "value", reason: reasonValue},
		{name: "value NaN", elem: `{"key":"k","value":NaN}`, field: "value", reason: reasonValue},
		{name: "value overflow", elem: `{"key":"k","value":-1e999}`, field: "value", reason: reasonValue},
		{name: "value +1", elem: `{"key":"k","value":+1}`, field: "value", reason: reasonValueMalformed},
		{name: "value 01", elem: `{"key":"k","value":01}`, field: "value", reason: reasonValueMalformed},
		{name: "value .5", elem: `{"key":"k","value":.5}`, field: "value", reason: reasonValueMalformed},
		{name: "value 1.", elem: `{"key":"k","value":1.}`, field: "value", reason: reasonValueMalformed},
		{name: "ts +1", elem: `{"key":"k","ts":+1764064800000,"value":1}`, field: "ts", reason: reasonTSMalformed},
		{name: "ts 01", elem: `{"key":"k","ts":01764064800000,"value":1}`, field: "ts", reason: reasonTSMalformed},
		{name: "ts .5", elem: `{"key":"k","ts":.5,"value":1}`, field: "ts", reason: reasonTSMalformed},
		{name: "ts 1.", elem: `{"key":"k","ts":1764064800000.,"value":1}`, field: "ts", reason: reasonTSMalformed},
		{name: "ts Infinity", elem: `{"key":"k","ts":Infinity,"value":1}`, field: "ts", reason: reasonTSType},
		{name: "ts fraction truncated", elem: `{"key":"k","ts":1764064800123.9,"value":1}`, want: evp("k", 1764064800123, 1)},
		{name: "ts string fraction truncated", elem: `{"key":"k","ts":"2025-11-25T10:00:00.1239Z","value":1}`, want: evp("k", 1764064800123, 1)},
		{name: "ts offset +24:00", elem: `{"key":"k","ts":"2025-11-26T10:00:00+24:00","value":1}`, field: "ts", reason: reasonTSOffset},
		{name: "ts offset -23:60", elem: `{"key":"k","ts":"2025-11-24T10:00:00-23:60","value":1}`, field: "ts", reason: reasonTSOffset},
	})
}

// The checks of the inputs (Options.CheckMinTS and MaxFuture), in every
// text format.
func TestDecodeArrivalChecksEveryFormat(t *testing.T) {
	const limit = 5 * time.Minute
	o := Options{Now: now, MaxFuture: limit, CheckMinTS: true}
	fut := futureReason(limit)
	edge := now + limit.Milliseconds()
	runEveryFormat(t, o, []oneCase{
		// The reproduction: year 3000.
		{name: "year 3000", elem: `{"key":"p","ts":32503680000000,"value":99999}`, field: "ts", reason: fut},
		{name: "year 3000 string", elem: `{"key":"p","ts":"3000-01-01T00:00:00Z","value":99999}`, field: "ts", reason: fut},
		{name: "at the limit", elem: fmt.Sprintf(`{"key":"k","ts":%d,"value":1}`, edge), want: evp("k", edge, 1)},
		{name: "1 ms past the limit", elem: fmt.Sprintf(`{"key":"k","ts":%d,"value":1}`, edge+1), field: "ts", reason: fut},
		{name: "fraction past the limit truncated", elem: fmt.Sprintf(`{"key":"k","ts":%d.999,"value":1}`, edge), want: evp("k", edge, 1)},
		{name: "no ts", elem: `{"key":"k","value":1}`, want: evp("k", now, 1)},
		{name: "seconds", elem: `{"key":"k","ts":1764065000,"value":1}`, field: "ts", reason: reasonTSSeconds},
		{name: "seconds exponent", elem: `{"key":"k","ts":1.764065e9,"value":1}`, field: "ts", reason: reasonTSSeconds},
		{name: "seconds fraction", elem: `{"key":"k","ts":1764065000.25,"value":1}`, field: "ts", reason: reasonTSSeconds},
		{name: "zero", elem: `{"key":"k","ts":0,"value":1}`, field: "ts", reason: reasonTSSeconds},
		{name: "just below 1e11", elem: `{"key":"k","ts":99999999999,"value":1}`, field: "ts", reason: reasonTSSeconds},
		{name: "1e11", elem: `{"key":"k","ts":1e11,"value":1}`, want: evp("k", MinTS, 1)},
		{name: "negative", elem: `{"key":"k","ts":-1,"value":1}`, field: "ts", reason: reasonTSNegative},
		{name: "backfill 2019 ms", elem: `{"key":"k","ts":1546300800000,"value":1}`, want: evp("k", 1546300800000, 1)},
		{name: "backfill 2019 string", elem: `{"key":"k","ts":"2019-01-01T00:00:00Z","value":1}`, want: evp("k", 1546300800000, 1)},
		{name: "string 1970", elem: `{"key":"k","ts":"1970-01-01T00:00:00Z","value":1}`, field: "ts", reason: reasonTSEarly},
		{name: "string before 1970", elem: `{"key":"k","ts":"1969-01-01T00:00:00Z","value":1}`, field: "ts", reason: reasonTSNegative},
		{name: "string at MinTS", elem: `{"key":"k","ts":"1973-03-03T09:46:40Z","value":1}`, want: evp("k", MinTS, 1)},
		{name: "ts checked before value", elem: `{"key":"k","ts":32503680000000,"value":"x"}`, field: "ts", reason: fut},
		{name: "key checked before ts", elem: `{"ts":32503680000000,"value":1}`, field: "key", reason: reasonKeyMissing},
	})
	// Without the checks (zero Options but Now), the old range holds.
	runEveryFormat(t, Options{Now: now}, []oneCase{
		{name: "unchecked year 3000", elem: `{"key":"p","ts":32503680000000,"value":1}`, want: evp("p", 32503680000000, 1)},
		{name: "unchecked zero", elem: `{"key":"k","ts":0,"value":1}`, want: evp("k", 0, 1)},
	})
	// The arrival time is not checked against MinTS: a node clock is not
	// seconds.
	runEveryFormat(t, Options{Now: 5, MaxFuture: limit, CheckMinTS: true}, []oneCase{
		{name: "small now", elem: `{"key":"k","value":1}`, want: evp("k", 5, 1)},
	})
}

// The reproduction at the decoder: the year-3000 event is rejected
// with its index and field, the next one on the same key is decoded.
func TestDecodeFutureThenNormal(t *testing.T) {
	var d Decoder
	o := Options{Now: now, MaxFuture: DefaultMaxFuture, CheckMinTS: true}
	body := `{"key":"p","ts":32503680000000,"value":99999}` + "\n" + `{"key":"p","value":1}`
	evs, rej, err := d.Decode([]byte(body), FormatAuto, o, nil, nil)
	if err != nil || !eventsEqual(evs, []Event{ev("p", now, 1)}) ||
		!rejectionsEqual(rej, []Rejection{rj(0, "ts", futureReason(DefaultMaxFuture))}) {
		t.Fatalf("got %+v %+v %v", evs, rej, err)
	}
	if !strings.Contains(rej[0].Reason, "5m0s") || !strings.Contains(rej[0].Reason, "future") {
		t.Errorf("reason %q does not give the limit", rej[0].Reason)
	}
}

// The same checks in protobuf, through Decode and FromProto alike; a ts
// of 0 is absent there (the arrival time).
func TestDecodeProtoArrivalChecks(t *testing.T) {
	const limit = 5 * time.Minute
	o := Options{Now: now, MaxFuture: limit, CheckMinTS: true}
	fut := futureReason(limit)
	edge := now + limit.Milliseconds()
	evs := []Event{
		ev("year3000", 32503680000000, 1),
		ev("edge", edge, 2),
		ev("past-edge", edge+1, 3),
		ev("seconds", 1764065000, 4),
		ev("absent", 0, 5),
		ev("backfill", 1546300800000, 6),
		ev("below-1e11", MinTS-1, 7),
		ev("min", MinTS, 8),
		{Key: "future-and-nan", TS: edge + 1, Value: math.NaN()},
		{Key: "", TS: edge + 1, Value: 1},
	}
	wantEvs := []Event{ev("edge", edge, 2), ev("absent", now, 5), ev("backfill", 1546300800000, 6), ev("min", MinTS, 8)}
	wantRej := []Rejection{rj(0, "ts", fut), rj(2, "ts", fut), rj(3, "ts", reasonTSSeconds), rj(6, "ts", reasonTSSeconds),
		rj(8, "ts", fut), rj(9, "key", reasonKeyMissing)}
	body := protoBody(t, evs)
	var d Decoder
	got, rej, err := d.Decode(body, FormatProto, o, nil, nil)
	if err != nil || !eventsEqual(got, wantEvs) || !rejectionsEqual(rej, wantRej) {
		t.Errorf("Decode:\n got  %+v %+v %v\n want %+v %+v", got, rej, err, wantEvs, wantRej)
	}
	got, rej = FromProto(ToProto(evs), o, nil, nil)
	if !eventsEqual(got, wantEvs) || !rejectionsEqual(rej, wantRej) {
		t.Errorf("FromProto:\n got  %+v %+v\n want %+v %+v", got, rej, wantEvs, wantRej)
	}
	// Without the checks, all but the NaN and the keyless event pass.
	got, rej, err = d.Decode(body, FormatProto, Options{Now: now}, nil, nil)
	if err != nil || len(got) != 8 || len(rej) != 2 {
		t.Errorf("unchecked: %d events, %+v, %v", len(got), rej, err)
	}
}
