package event

import (
	"errors"
	"math"
	"reflect"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/squallhq/squall/messages"
)

func protoEvents() []Event {
	return []Event{
		{Key: "web-1.cpu", TS: 1764065099000, Value: 40.5},
		{Key: "db-3.disk./var", TS: 1, Value: -0.25, ID: "e-1", Tags: map[string]string{"env": "prod", "dc": "ams", "e": ""}},
		{Key: "é😀\"\n", TS: MaxTS, Value: math.MaxFloat64, ID: strings.Repeat("i", MaxIDBytes)},
		{Key: "zero", TS: 5, Value: 0},
		{Key: "minus-zero", TS: 5, Value: math.Copysign(0, -1)},
	}
}

func TestProtoRoundTrip(t *testing.T) {
	evs := protoEvents()
	b, err := proto.Marshal(ToProto(evs))
	if err != nil {
		t.Fatal(err)
	}
	var d Decoder
	got, rej, err := d.Decode(b, FormatProto, Options{Now: now}, nil, nil)
	if err != nil || len(rej) != 0 {
		t.Fatalf("Decode: %v %+v", err, rej)
	}
	if !eventsEqual(got, evs) {
		t.Fatalf("Decode\n got %+v\nwant %+v", got, evs)
	}

	var m messages.EventBatch
	if err := proto.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	got, rej = FromProto(&m, Options{Now: now}, nil, nil)
	if len(rej) != 0 || !eventsEqual(got, evs) {
		t.Fatalf("FromProto\n got %+v %+v\nwant %+v", got, rej, evs)
	}
}

func TestAppendProtoMatchesMarshal(t *testing.T) {
	evs := protoEvents()
	evs = append(evs, Event{}, Event{TS: -5, Value: math.Inf(1)}) // invalid events encode too
	want, err := proto.MarshalOptions{Deterministic: true}.Marshal(ToProto(evs))
	if err != nil {
		t.Fatal(err)
	}
	if got := AppendProto(nil, evs); string(got) != string(want) {
		t.Fatalf("AppendProto\n got %x\nwant %x", got, want)
	}
	buf := make([]byte, 0, 4096)
	if n := testing.AllocsPerRun(100, func() { buf = AppendProto(buf[:0], evs) }); n != 0 {
		t.Errorf("AppendProto allocates %v times", n)
	}
}

func TestProtoSize(t *testing.T) {
	evs := protoEvents()
	evs = append(evs, Event{}, Event{Key: strings.Repeat("k", 200), Tags: map[string]string{strings.Repeat("t", 130): ""}})
	for i := range evs {
		if got, want := ProtoSize(&evs[i]), len(AppendProto(nil, evs[i:i+1])); got != want {
			t.Errorf("event %d: ProtoSize %d, AppendProto appends %d", i, got, want)
		}
	}
}

func TestDecodeProto(t *testing.T) {
	enc := func(ms ...*messages.Event) string {
		b, err := proto.Marshal(&messages.EventBatch{Events: ms})
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	tags := map[string]string{}
	for i := range MaxTags + 1 {
		tags[strings.Repeat("t", i+1)] = "v"
	}
	// raw builds an EventBatch with one Event holding the given raw fields.
	raw := func(fields ...[]byte) string {
		var m []byte
		for _, f := range fields {
			m = append(m, f...)
		}
		b := protowire.AppendTag(nil, 1, protowire.BytesType)
		return string(protowire.AppendBytes(b, m))
	}
	str := func(num protowire.Number, s string) []byte {
		return protowire.AppendString(protowire.AppendTag(nil, num, protowire.BytesType), s)
	}
	varint := func(num protowire.Number, v uint64) []byte {
		return protowire.AppendVarint(protowire.AppendTag(nil, num, protowire.VarintType), v)
	}
	fixed := func(num protowire.Number, v float64) []byte {
		return protowire.AppendFixed64(protowire.AppendTag(nil, num, protowire.Fixed64Type), math.Float64bits(v))
	}
	entry := func(k, v string) []byte {
		e := append(str(1, k), str(2, v)...)
		return protowire.AppendBytes(protowire.AppendTag(nil, 5, protowire.BytesType), e)
	}
	P := FormatProto
	runDecodeCases(t, []decodeCase{
		{name: "ok", format: P, body: enc(&messages.Event{Key: "k", Ts: 7, Value: 1.5, Id: "i", Tags: map[string]string{"a": "b"}}),
			want: []Event{{Key: "k", TS: 7, Value: 1.5, ID: "i", Tags: map[string]string{"a": "b"}}}},
		{name: "ts zero is now", format: P, body: enc(&messages.Event{Key: "k", Value: 1}), want: []Event{ev("k", now, 1)}},
		{name: "value zero ok", format: P, body: enc(&messages.Event{Key: "k", Ts: 3}), want: []Event{ev("k", 3, 0)}},
		{name: "key missing", format: P, body: enc(&messages.Event{Value: 1}), rej: []Rejection{rj(0, "key", reasonKeyMissing)}},
		{name: "default key", format: P, body: enc(&messages.Event{Value: 1}), opts: &Options{Now: now, DefaultKey: "rec"},
			want: []Event{ev("rec", now, 1)}},
		{name: "key too long", format: P, body: enc(&messages.Event{Key: strings.Repeat("k", 257)}), rej: []Rejection{rj(0, "key", reasonKeyLong)}},
		{name: "key invalid UTF-8", format: P, body: raw(str(1, "\xff")), rej: []Rejection{rj(0, "key", reasonKeyUTF8)}},
		{name: "ts negative", format: P, body: enc(&messages.Event{Key: "k", Ts: -1}), rej: []Rejection{rj(0, "ts", reasonTSNegative)}},
		{name: "ts too late", format: P, body: enc(&messages.Event{Key: "k", Ts: MaxTS + 1}), rej: []Rejection{rj(0, "ts", reasonTSRange)}},
		{name: "value NaN", format: P, body: enc(&messages.Event{Key: "k", Value: math.NaN()}), rej: []Rejection{rj(0, "value", reasonValue)}},
		{name: "value Inf", format: P, body: enc(&messages.Event{Key: "k", Value: math.Inf(-1)}), rej: []Rejection{rj(0, "value", reasonValue)}},
		{name: "id too long", format: P, body: enc(&messages.Event{Key: "k", Id: strings.Repeat("i", 129)}), rej: []Rejection{rj(0, "id", reasonIDLong)}},
		{name: "id invalid UTF-8", format: P, body: raw(str(1, "k"), str(4, "\xc3")), rej: []Rejection{rj(0, "id", reasonIDUTF8)}},
		{name: "tags too many", format: P, body: enc(&messages.Event{Key: "k", Tags: tags}), rej: []Rejection{rj(0, "tags", reasonTagsCount)}},
		{name: "tag empty key", format: P, body: enc(&messages.Event{Key: "k", Tags: map[string]string{"": "v"}}), rej: []Rejection{rj(0, "tags", reasonTagKeyEmpty)}},
		{name: "tag long value", format: P, body: enc(&messages.Event{Key: "k", Tags: map[string]string{"a": strings.Repeat("v", 257)}}), rej: []Rejection{rj(0, "tags", reasonTagValueLong)}},
		{name: "tag invalid UTF-8", format: P, body: raw(str(1, "k"), entry("a", "\xff")), rej: []Rejection{rj(0, "tags", reasonTagsUTF8)}},
		{name: "tag repeated: last wins", format: P, body: raw(str(1, "k"), entry("a", "1"), entry("a", "2")),
			want: []Event{{Key: "k", TS: now, Tags: map[string]string{"a": "2"}}}},
		{name: "tag entry without value", format: P,
			body: raw(str(1, "k"), protowire.AppendBytes(protowire.AppendTag(nil, 5, protowire.BytesType), str(1, "a"))),
			want: []Event{{Key: "k", TS: now, Tags: map[string]string{"a": ""}}}},
		{name: "repeated scalar: last wins", format: P, body: raw(str(1, "a"), varint(2, 1), str(1, "b"), varint(2, 2), fixed(3, 1), fixed(3, 2)),
			want: []Event{ev("b", 2, 2)}},
		{name: "unknown and mistyped fields skipped", format: P, body: raw(str(1, "k"), str(9, "x"), fixed(2, 1), varint(3, 1), varint(1, 5)),
			want: []Event{ev("k", now, 0)}},
		{name: "mixed good and bad", format: P, body: enc(
			&messages.Event{Key: "a", Value: 1}, &messages.Event{Value: 2}, &messages.Event{Key: "b", Value: math.NaN()}, &messages.Event{Key: "c", Value: 3}),
			want: []Event{ev("a", now, 1), ev("c", now, 3)},
			rej:  []Rejection{rj(1, "key", reasonKeyMissing), rj(2, "value", reasonValue)}},
		{name: "empty body", format: P, body: "", wantErr: ErrEmpty},
		{name: "no events", format: P, body: string(str(2, "x")), wantErr: ErrEmpty},
		{name: "truncated", format: P, body: enc(&messages.Event{Key: "k"})[:3], wantErr: ErrMalformed},
		{name: "bad tag", format: P, body: "\x00", wantErr: ErrMalformed},
		{name: "bad inner", format: P, body: raw([]byte{0x0a, 0x05, 'a'}), wantErr: ErrMalformed},
		{name: "json is not proto", format: P, body: `{"key":"k","value":1}`, wantErr: ErrMalformed},
	})
}

func TestFromProtoRejections(t *testing.T) {
	b := &messages.EventBatch{Events: []*messages.Event{
		{Key: "a", Value: 1},
		{Value: 1},
		{Key: "b", Ts: -1},
		nil,
		{Key: "c", Tags: map[string]string{}},
	}}
	got, rej := FromProto(b, Options{Now: now}, nil, nil)
	want := []Event{ev("a", now, 1), ev("c", now, 0)}
	if !eventsEqual(got, want) {
		t.Errorf("events %+v, want %+v", got, want)
	}
	wantRej := []Rejection{rj(1, "key", reasonKeyMissing), rj(2, "ts", reasonTSNegative), rj(3, "key", reasonKeyMissing)}
	if !reflect.DeepEqual(rej, wantRej) {
		t.Errorf("rejections %+v, want %+v", rej, wantRej)
	}
	if got[1].Tags != nil {
		t.Errorf("empty tags map kept: %#v", got[1].Tags)
	}
}

func TestDecodeProtoError(t *testing.T) {
	var d Decoder
	_, _, err := d.Decode([]byte{0xff}, FormatProto, Options{}, nil, nil)
	if !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), "protobuf") {
		t.Fatalf("err = %v", err)
	}
}

func TestDecodeProtoFieldNumberTooLarge(t *testing.T) {
	var d Decoder
	_, _, err := d.Decode(protowire.AppendTag(nil, protowire.MaxValidNumber+1, protowire.VarintType), FormatProto, Options{}, nil, nil)
	if !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), "invalid field number") {
		t.Fatalf("err = %v", err)
	}
}
