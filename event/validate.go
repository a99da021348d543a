package event

import (
	"math"
	"time"
	"unicode/utf8"
)

// Limits of an event beyond those in event.go.
const (
	// MaxTagKeyBytes is the longest tag key accepted, in bytes.
	MaxTagKeyBytes = 256
	// MaxTagValueBytes is the longest tag value accepted, in bytes.
	MaxTagValueBytes = 256
	// MaxTS is the latest event time accepted: 9999-12-31T23:59:59.999Z in
	// epoch milliseconds. The earliest is 0 (1970-01-01T00:00:00Z).
	MaxTS int64 = 253402300799999
	// MinTS is the earliest event time accepted from the event itself when
	// Options.CheckMinTS is set (every input from outside sets it):
	// 1973-03-03T09:46:40Z, 1e11 epoch milliseconds. A number below it is
	// almost always a time in seconds sent by mistake (time.Now().Unix(),
	// date +%s): 1764064800 is 1970-01-21 in milliseconds. Backfill of
	// years-old events in milliseconds is well above it.
	MinTS int64 = 100_000_000_000
	// DefaultMaxFuture is the default of Options.MaxFuture at the inputs
	// (the node's --max-future): how far ahead of its arrival time an
	// event's ts may be.
	DefaultMaxFuture = 5 * time.Minute
)

// Rejection says why one event of a batch was rejected.
//
// Reason is one of a small, fixed set of messages (it never echoes input;
// the one for Options.MaxFuture names the configured limit), so Field and
// Reason together are safe to use as metric labels.
type Rejection struct {
	// Index is the position of the event in the batch: the array element,
	// the NDJSON non-blank line, or the EventBatch element, counting from 0.
	// A single JSON object has index 0.
	Index int `json:"index"`
	// Field is "key", "ts", "value", "id" or "tags", or "" when the event as
	// a whole is malformed (not a JSON object, a JSON syntax error).
	Field string `json:"field,omitempty"`
	// Reason is human readable, e.g. "value must be a finite number".
	Reason string `json:"reason"`
	// Retry is true when the event was valid but not taken for a reason of
	// the server's (shed at the key limit, failed on the server, the log
	// unavailable): sending this event again, and only it, may succeed.
	// False (omitted) for an event rejected for what it holds: sending it
	// again fails the same way.
	Retry bool `json:"retry,omitempty"`
}

// Field names used in Rejection.Field.
const (
	fieldKey   = "key"
	fieldTS    = "ts"
	fieldValue = "value"
	fieldID    = "id"
	fieldTags  = "tags"
)

// Rejection reasons. Keep this a fixed set: reasons are metric labels.
const (
	reasonNotObject  = "event must be a JSON object"
	reasonMalformed  = "malformed JSON"
	reasonKeyMissing = "key is required"
	reasonKeyType    = "key must be a string"
	reasonKeyEmpty   = "key must not be empty"
	reasonKeyLong    = "key must be at most 256 bytes"
	reasonKeyUTF8    = "key must be valid UTF-8"
	reasonBadString  = "invalid JSON string (control character, bad escape or invalid UTF-8)"

	reasonTSType      = "ts must be an integer (epoch ms) or an RFC 3339 string"
	reasonTSMalformed = "ts is a malformed number (JSON numbers have no leading '+', no leading zeros, and digits on both sides of '.')"
	reasonTSRFC3339   = "ts string must be RFC 3339"
	reasonTSOffset    = "ts string's UTC offset must be within -23:59..+23:59"
	reasonTSNegative  = "ts must not be before 1970"
	reasonTSRange     = "ts must not be after year 9999"
	reasonTSSeconds   = "ts looks like seconds: it must be epoch milliseconds (at least 100000000000, 1973-03-03)"
	reasonTSEarly     = "ts must not be before 1973-03-03T09:46:40Z (100000000000 epoch ms)"

	reasonValueMissing   = "value is required"
	reasonValue          = "value must be a finite number"
	reasonValueMalformed = "value is a malformed number (JSON numbers have no leading '+', no leading zeros, and digits on both sides of '.')"

	reasonIDType = "id must be a string"
	reasonIDLong = "id must be at most 128 bytes"
	reasonIDUTF8 = "id must be valid UTF-8"

	reasonTagsType     = "tags must be an object of strings"
	reasonTagsCount    = "tags must have at most 32 entries"
	reasonTagKeyEmpty  = "tag keys must not be empty"
	reasonTagKeyLong   = "tag keys must be at most 256 bytes"
	reasonTagValueType = "tag values must be strings"
	reasonTagValueLong = "tag values must be at most 256 bytes"
	reasonTagsUTF8     = "tags must be valid UTF-8"
)

// Validate checks an already-built event against the limits of an event
// and returns nil when it is valid, or the first problem found (Index 0).
// It is meant for events built in Go (the client, programs embedding
// Squall); Decoder.Decode validates what it decodes. It does not fill in a
// missing key or ts: a Go-built event must carry both (TS 0 is 1970-01-01,
// a valid time). It applies the checks of a Decode with zero Options: the
// checks that depend on the arrival time (Options.MaxFuture,
// Options.CheckMinTS) are the inputs' to make.
//
// Validate is safe for concurrent use.
func Validate(ev *Event) *Rejection {
	if r := checkKey(ev.Key); r != "" {
		return &Rejection{Field: fieldKey, Reason: r}
	}
	if r := checkTS(ev.TS); r != "" {
		return &Rejection{Field: fieldTS, Reason: r}
	}
	if math.IsNaN(ev.Value) || math.IsInf(ev.Value, 0) {
		return &Rejection{Field: fieldValue, Reason: reasonValue}
	}
	if r := checkID(ev.ID); r != "" {
		return &Rejection{Field: fieldID, Reason: r}
	}
	if len(ev.Tags) > MaxTags {
		return &Rejection{Field: fieldTags, Reason: reasonTagsCount}
	}
	for k, v := range ev.Tags {
		if r := checkTag(k, v); r != "" {
			return &Rejection{Field: fieldTags, Reason: r}
		}
	}
	return nil
}

// checkKey returns why k is not a valid key, or "".
func checkKey(k string) string {
	switch {
	case k == "":
		return reasonKeyEmpty
	case len(k) > MaxKeyBytes:
		return reasonKeyLong
	case !utf8.ValidString(k):
		return reasonKeyUTF8
	}
	return ""
}

// checkTS returns why ts is not a valid event time, or "".
func checkTS(ts int64) string {
	switch {
	case ts < 0:
		return reasonTSNegative
	case ts > MaxTS:
		return reasonTSRange
	}
	return ""
}

// checkNumberTS returns why ts, read as a number (JSON, protobuf), is not
// accepted under o, or "".
func checkNumberTS(ts int64, o *Options) string {
	if r := checkTS(ts); r != "" {
		return r
	}
	if o.CheckMinTS && ts < MinTS {
		return reasonTSSeconds
	}
	return ""
}

// future reports whether ts is more than o.MaxFuture after o.Now.
func future(ts int64, o *Options) bool {
	return o.MaxFuture > 0 && ts-o.Now > o.MaxFuture.Milliseconds()
}

// futureReason is the rejection reason for a ts more than max ahead of
// its arrival time.
func futureReason(max time.Duration) string {
	return "ts is too far in the future: more than " + max.String() + " ahead of its arrival time (--max-future)"
}

// checkID returns why id is not a valid id, or "". The empty id is valid
// (no id).
func checkID(id string) string {
	switch {
	case len(id) > MaxIDBytes:
		return reasonIDLong
	case !utf8.ValidString(id):
		return reasonIDUTF8
	}
	return ""
}

// checkTag returns why the tag k=v is not valid, or "".
func checkTag(k, v string) string {
	switch {
	case k == "":
		return reasonTagKeyEmpty
	case len(k) > MaxTagKeyBytes:
		return reasonTagKeyLong
	case len(v) > MaxTagValueBytes:
		return reasonTagValueLong
	case !utf8.ValidString(k) || !utf8.ValidString(v):
		return reasonTagsUTF8
	}
	return ""
}
