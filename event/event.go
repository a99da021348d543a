// Package event defines Squall's event type, its validation and its wire
// decoders (JSON object, JSON array, NDJSON, protobuf EventBatch).
//
// Decoding is on the hot path of every input (HTTP, NATS, Kafka), so it is
// built not to allocate per event:
//
//   - JSON is parsed with github.com/valyala/fastjson, a well-kept parser
//     whose Parser is reused between calls (one per pooled Decoder) and
//     costs no allocation per value, unlike encoding/json's reflection.
//     fastjson is lenient about numbers and strings, so the fields Squall
//     reads are checked strictly here: numbers against the RFC 8259 grammar
//     (no NaN, Inf, "+1", "01"), strings for raw control characters, bad
//     escapes, unpaired surrogates and invalid UTF-8.
//   - The strings of a batch's events (keys, ids, tags) are copied into one
//     buffer per Decode call and point into it; see Decoder.
//   - Protobuf is read with protowire straight into events, with the same
//     buffer, instead of through generated message structs.
//
// Every decoder is fuzzed (FuzzDecodeJSON, FuzzDecodeNDJSON,
// FuzzDecodeProto; seed corpus in testdata/fuzz/) and benchmarked
// (BenchmarkDecodeNDJSON and friends).
package event

// Limits of an event.
const (
	// MaxKeyBytes is the longest key accepted, in bytes.
	MaxKeyBytes = 256
	// MaxIDBytes is the longest id accepted, in bytes.
	MaxIDBytes = 128
	// MaxTags is the largest number of tags accepted on one event.
	MaxTags = 32
)

// Event is one keyed measurement: {key, ts, value, id?, tags?}.
//
// Strings produced by the decoders may alias a per-batch buffer; code that
// keeps a string beyond the batch (a new key in a map, a recent-events ring)
// must copy it with strings.Clone.
type Event struct {
	// Key is the non-empty UTF-8 key, at most MaxKeyBytes.
	Key string `json:"key"`
	// TS is the event time in epoch milliseconds.
	TS int64 `json:"ts"`
	// Value is a finite float64.
	Value float64 `json:"value"`
	// ID, when set, makes a second event with the same (key, id) inside the
	// key's window a duplicate.
	ID string `json:"id,omitempty"`
	// Tags are optional string labels, kept with the key's last event.
	Tags map[string]string `json:"tags,omitempty"`
}
