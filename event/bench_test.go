package event

import (
	"fmt"
	"runtime"
	"testing"
)

const benchEvents = 1000

// benchBatch returns benchEvents events of about 80 bytes of JSON each:
//
//	{"key":"web-0042.cpu.user","ts":1764065099042,"value":42.25,"id":"e-0000000042"}
func benchBatch() []Event {
	evs := make([]Event, benchEvents)
	for i := range evs {
		evs[i] = Event{
			Key:   fmt.Sprintf("web-%04d.cpu.user", i%500),
			TS:    1764065099000 + int64(i),
			Value: float64(i%1000) + 0.25,
			ID:    fmt.Sprintf("e-%010d", i),
		}
	}
	return evs
}

// benchDecode decodes body b.N times and reports ns and allocations per
// event.
func benchDecode(b *testing.B, body []byte, f Format) {
	b.Helper()
	var d Decoder
	dst := make([]Event, 0, benchEvents)
	rej := make([]Rejection, 0, 16)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	var ms0, ms1 runtime.MemStats
	runtime.ReadMemStats(&ms0)
	b.ResetTimer()
	for b.Loop() {
		var err error
		dst, rej, err = d.Decode(body, f, Options{Now: now}, dst[:0], rej[:0])
		if err != nil || len(dst) != benchEvents {
			b.Fatalf("decoded %d events: %v %+v", len(dst), err, rej)
		}
	}
	b.StopTimer()
	runtime.ReadMemStats(&ms1)
	events := float64(b.N) * benchEvents
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/events, "ns/event")
	b.ReportMetric(float64(ms1.Mallocs-ms0.Mallocs)/events, "allocs/event")
	b.ReportMetric(float64(len(body))/benchEvents, "B/event")
}

func BenchmarkDecodeNDJSON(b *testing.B) {
	benchDecode(b, AppendNDJSON(nil, benchBatch()), FormatNDJSON)
}

// BenchmarkDecodeNDJSONParserPath is BenchmarkDecodeNDJSON with the fast
// path off: what it saves.
func BenchmarkDecodeNDJSONParserPath(b *testing.B) {
	fastPath = false
	defer func() { fastPath = true }()
	benchDecode(b, AppendNDJSON(nil, benchBatch()), FormatNDJSON)
}

// BenchmarkDecodeNDJSONAuto is BenchmarkDecodeNDJSON with the format
// detected from the content.
func BenchmarkDecodeNDJSONAuto(b *testing.B) {
	benchDecode(b, AppendNDJSON(nil, benchBatch()), FormatAuto)
}

// BenchmarkDecodeNDJSONTags decodes events that carry two tags each (a map
// per event).
func BenchmarkDecodeNDJSONTags(b *testing.B) {
	evs := benchBatch()
	for i := range evs {
		evs[i].Tags = map[string]string{"env": "prod", "dc": "ams"}
	}
	benchDecode(b, AppendNDJSON(nil, evs), FormatNDJSON)
}

func BenchmarkDecodeJSONArray(b *testing.B) {
	evs := benchBatch()
	body := []byte{'['}
	for i := range evs {
		if i > 0 {
			body = append(body, ',')
		}
		body = AppendJSON(body, &evs[i])
	}
	body = append(body, ']')
	benchDecode(b, body, FormatJSON)
}

func BenchmarkDecodeProto(b *testing.B) {
	benchDecode(b, AppendProto(nil, benchBatch()), FormatProto)
}

func BenchmarkAppendNDJSON(b *testing.B) {
	evs := benchBatch()
	buf := AppendNDJSON(nil, evs)
	b.SetBytes(int64(len(buf)))
	b.ReportAllocs()
	for b.Loop() {
		buf = AppendNDJSON(buf[:0], evs)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*benchEvents), "ns/event")
}

func BenchmarkAppendProto(b *testing.B) {
	evs := benchBatch()
	buf := AppendProto(nil, evs)
	b.SetBytes(int64(len(buf)))
	b.ReportAllocs()
	for b.Loop() {
		buf = AppendProto(buf[:0], evs)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*benchEvents), "ns/event")
}
