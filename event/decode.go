package event

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"time"
	"unsafe"

	"github.com/valyala/fastjson"
)

// Errors returned by Decoder.Decode for a body that cannot be read as a
// whole. Problems with single events are Rejections, never errors.
var (
	// ErrEmpty means the body holds no event: it is empty or blank, an
	// empty JSON array, blank NDJSON, or an EventBatch without events.
	ErrEmpty = errors.New("event: no events in body")
	// ErrMalformed means the body as a whole cannot be read: a JSON array
	// or (with FormatJSON) a JSON object with a syntax error, a JSON body
	// that is neither an object nor an array, or invalid protobuf. It is
	// wrapped with detail; test with errors.Is.
	ErrMalformed = errors.New("event: malformed body")
	// ErrFormat means Decode was given a Format it does not know.
	ErrFormat = errors.New("event: unknown format")
)

// Format is the wire format of a body.
type Format uint8

// Formats understood by Decoder.Decode.
const (
	// FormatAuto detects a JSON object, a JSON array or NDJSON from the
	// content: a body starting with '[' is an array; one starting with '{'
	// is a single object when it holds exactly one JSON value (which may
	// span lines), and NDJSON otherwise. Protobuf is never auto-detected.
	// It is the zero Format.
	FormatAuto Format = iota
	// FormatJSON is one JSON object (one event) or a JSON array of objects.
	FormatJSON
	// FormatNDJSON is one JSON object per line; blank lines are skipped and
	// "\r\n" line ends are accepted.
	FormatNDJSON
	// FormatProto is a protobuf messages.EventBatch.
	FormatProto
)

// String returns the name of f ("auto", "json", "ndjson", "proto").
func (f Format) String() string {
	switch f {
	case FormatAuto:
		return "auto"
	case FormatJSON:
		return "json"
	case FormatNDJSON:
		return "ndjson"
	case FormatProto:
		return "proto"
	}
	return fmt.Sprintf("Format(%d)", uint8(f))
}

// FormatFromContentType maps an HTTP Content-Type to a Format, ignoring
// parameters and case: "application/x-ndjson" (also "application/ndjson",
// "application/jsonl", "application/x-jsonlines") is FormatNDJSON,
// "application/x-protobuf" and "application/protobuf" are FormatProto,
// "application/json" is FormatJSON, and anything else (including "") is
// FormatAuto.
func FormatFromContentType(ct string) Format {
	if i := strings.IndexByte(ct, ';'); i >= 0 {
		ct = ct[:i]
	}
	ct = strings.TrimSpace(ct)
	switch {
	case strings.EqualFold(ct, "application/json"):
		return FormatJSON
	case strings.EqualFold(ct, "application/x-ndjson"),
		strings.EqualFold(ct, "application/ndjson"),
		strings.EqualFold(ct, "application/jsonl"),
		strings.EqualFold(ct, "application/x-jsonlines"):
		return FormatNDJSON
	case strings.EqualFold(ct, "application/x-protobuf"),
		strings.EqualFold(ct, "application/protobuf"):
		return FormatProto
	}
	return FormatAuto
}

// Options of one Decode call.
type Options struct {
	// Now is the arrival time in epoch milliseconds, used as the ts of an
	// event that has none. Default 0 (1970-01-01): callers should set it.
	Now int64
	// DefaultKey is the key of an event that has none (the Kafka record
	// key). Default "": a key is required. It is validated like a key.
	DefaultKey string
	// DefaultKeyBytes, used when DefaultKey is "", is the default key in
	// memory its owner reuses (a pooled Kafka record's key):
	// Decoder.Decode copies it, once per call and only if an event takes
	// it, into a buffer never rewritten, so no event aliases that memory.
	DefaultKeyBytes []byte
	// copyKey: DefaultKey is a view of DefaultKeyBytes (set by Decode).
	copyKey bool
	// MaxRejections caps the rejections appended by one call; the others
	// are only counted (Decoder.Omitted), so a body of millions of bad
	// events cannot cost millions of Rejections. Default 0: no cap.
	MaxRejections int
	// MaxFuture, when positive, rejects (field "ts") an event whose ts is
	// more than MaxFuture after Now, its arrival time: one event stamped
	// years ahead would otherwise move its key's window there, and every
	// real event after it would be late. The inputs set it from the node's
	// --max-future (DefaultMaxFuture). Default 0: no limit but MaxTS.
	MaxFuture time.Duration
	// CheckMinTS rejects a ts the event gives that is before MinTS
	// (1973-03-03): a number, as seconds sent for milliseconds; an RFC 3339
	// string too, so that the accepted range is the same in every encoding
	// (an event re-encoded with its ts as a number reads back the same). A
	// ts taken from Now is not checked. The inputs from outside set it.
	// Default false: any ts from 1970 (batches forwarded between nodes
	// were checked where they came in).
	CheckMinTS bool
}

// retainLimit is the largest parse input whose buffers a Decoder keeps for
// the next call; after a larger one it drops them, so a pooled Decoder does
// not pin the memory of one huge body.
const retainLimit = 1 << 20

// Decoder decodes batches of events from JSON, NDJSON and protobuf bodies.
//
// The zero Decoder is ready to use. A Decoder is reusable but not safe for
// concurrent use: keep one per goroutine or in a sync.Pool.
//
// Decoded events do not allocate per event for key and id: each Decode call
// copies the strings of its events into one new buffer the size of the body
// and the events' strings point into it (tags maps are allocated per event
// that has tags). That buffer is never reused, so the strings stay valid for
// as long as they are referenced, and keep the whole buffer alive: clone a
// string (strings.Clone) that outlives the batch.
//
// A Decoder must not be copied after first use (go vet checks this).
type Decoder struct {
	_ noCopy

	p     fastjson.Parser
	arena []byte // strings of the current batch; never reused across calls
	// shared, set by Ensure, is a buffer the arenas of the next calls are
	// cut from (each from where the previous ended) while they fit.
	shared   []byte
	inShared bool   // the current arena was cut from shared
	num      []byte // scratch for numbers and ts strings
	// keys holds the copies of Options.DefaultKeyBytes, apart
	// from the arena, whose rollback of a rejected event must not take a
	// copy later events share; defKey is this call's copy, if made.
	keys     []byte
	defKey   string
	defKeyOK bool
	big      bool // the parser saw an input over retainLimit

	// listed and omitted count the rejections of the current call that were
	// appended and that were over Options.MaxRejections.
	listed, omitted, maxRej int

	// futFor and futReason cache futureReason(futFor).
	futFor    time.Duration
	futReason string
	fix       []byte // scratch for parse's second attempt

	// Fields of the object being decoded, set by visitField.
	key, ts, value, id, tags *fastjson.Value
	visitFieldFn             func(k []byte, v *fastjson.Value)
}

// Decode decodes body in format f, appends its valid events to dst and a
// Rejection for each invalid one to rej, and returns both slices. A bad
// event never stops the rest of the batch.
//
// err is non-nil only when the body as a whole cannot be read (ErrEmpty,
// ErrMalformed, ErrFormat); then dst and rej are returned unchanged.
//
// Rules: key is a non-empty UTF-8 string of at most 256 bytes
// (o.DefaultKey when absent or null); ts is a number of epoch milliseconds
// (exponent forms such as 1.7640648e12 are accepted) or an RFC 3339 string
// with a UTC offset within ±23:59, sub-millisecond digits truncated in both,
// o.Now when absent or null; it must lie in [1970, 9999], and in
// [1973-03-03, o.Now+o.MaxFuture] with o.CheckMinTS and o.MaxFuture. value
// is a required finite JSON number; id is an optional string of at most 128
// bytes; tags is an optional object of at most 32 string values, keys
// 1..256 bytes and values at most 256 bytes. Numbers follow the JSON
// grammar ("+1", "01", ".5", "1." are malformed); NaN and Infinity, in any
// spelling, are not finite. Field names are case-sensitive, unknown fields
// are ignored, and of duplicated fields the last wins.
//
// In protobuf, ts 0 means absent and an empty key means absent.
func (d *Decoder) Decode(body []byte, f Format, o Options, dst []Event, rej []Rejection) ([]Event, []Rejection, error) {
	d0, r0 := len(dst), len(rej)
	d.listed, d.omitted, d.maxRej = 0, 0, o.MaxRejections
	if o.DefaultKey == "" && len(o.DefaultKeyBytes) > 0 {
		o.DefaultKey, o.copyKey = unsafe.String(&o.DefaultKeyBytes[0], len(o.DefaultKeyBytes)), true
	}
	var err error
	dst, rej, err = d.decode(body, f, &o, dst, rej)
	d.finish()
	if err != nil {
		clear(dst[d0:])
		d.listed, d.omitted = 0, 0
		return dst[:d0], rej[:r0], err
	}
	return dst, rej, nil
}

func (d *Decoder) decode(body []byte, f Format, o *Options, dst []Event, rej []Rejection) ([]Event, []Rejection, error) {
	if f == FormatProto {
		if len(body) == 0 {
			return dst, rej, ErrEmpty
		}
		d.newArena(len(body))
		return d.decodeProto(body, o, dst, rej)
	}
	if f > FormatProto {
		return dst, rej, fmt.Errorf("%w: %d", ErrFormat, uint8(f))
	}
	body = bytes.TrimPrefix(body, utf8BOM)
	start := skipWS(body, 0)
	if start == len(body) {
		return dst, rej, ErrEmpty
	}
	d.newArena(len(body) - start)
	body = body[start:]

	if f == FormatNDJSON {
		return d.decodeNDJSON(body, o, dst, rej)
	}
	switch body[0] {
	case '[':
		return d.decodeArray(body, o, dst, rej)
	case '{':
		if f == FormatJSON {
			v, err := d.parse(body)
			if err != nil {
				return dst, rej, fmt.Errorf("%w: %v (NDJSON needs Content-Type application/x-ndjson)", ErrMalformed, err)
			}
			dst, rej = d.object(v, 0, o, dst, rej)
			return dst, rej, nil
		}
		// Auto: a first line that is a JSON value on its own means NDJSON
		// (one line is one object either way); otherwise the body may be a
		// single object spread over lines.
		first := body
		if i := bytes.IndexByte(body, '\n'); i >= 0 {
			first = body[:i]
		}
		if len(first) < len(body) {
			if _, err := d.parse(first); err != nil {
				if v, err := d.parse(body); err == nil {
					dst, rej = d.object(v, 0, o, dst, rej)
					return dst, rej, nil
				}
			}
		}
		return d.decodeNDJSON(body, o, dst, rej)
	}
	what := "a JSON object, an array of objects, or NDJSON"
	if f == FormatJSON {
		what = "a JSON object or an array of objects"
	}
	return dst, rej, fmt.Errorf("%w: body must be %s, found %q", ErrMalformed, what, firstChars(body))
}

// Omitted returns how many rejections the last Decode call counted but did
// not append, because of Options.MaxRejections.
func (d *Decoder) Omitted() int { return d.omitted }

// reject appends r to rej unless Options.MaxRejections are already there.
func (d *Decoder) reject(rej []Rejection, r Rejection) []Rejection {
	if d.maxRej > 0 && d.listed >= d.maxRej {
		d.omitted++
		return rej
	}
	d.listed++
	return append(rej, r)
}

// Ensure's buffers: at least minChunk; a body over maxChunk gets an arena
// of its own, as without Ensure, so that no decoder keeps a large buffer.
const (
	minChunk = 64 << 10
	maxChunk = 1 << 20
)

// Ensure makes the next Decode call of a body of up to n bytes cut its
// strings from the decoder's buffer, allocating a new one (of at least 64
// KiB) only when what is left of the current one is smaller than n. The
// buffer is kept across calls, so the strings of many bodies share one
// allocation sized by what they take (a key, an id: a third of a small
// event) rather than by the bodies' length. It is never written twice, so
// earlier strings stay valid; a string a caller keeps keeps its whole
// buffer alive. Bodies over 1 MiB are left to allocate their own.
func (d *Decoder) Ensure(n int) {
	if n > maxChunk || cap(d.shared)-len(d.shared) >= n {
		return
	}
	d.shared = make([]byte, 0, max(n, minChunk))
}

// defaultKey returns o.DefaultKey for an event that takes it: when it
// views o.DefaultKeyBytes, a copy made on the call's first use, into d.keys
// (never rewritten: strings taken from it stay valid).
func (d *Decoder) defaultKey(o *Options) string {
	if !o.copyKey {
		return o.DefaultKey
	}
	if !d.defKeyOK {
		n := len(o.DefaultKey)
		if cap(d.keys)-len(d.keys) < n {
			d.keys = make([]byte, 0, max(n, 4<<10))
		}
		start := len(d.keys)
		d.keys = append(d.keys, o.DefaultKey...)
		d.defKey, d.defKeyOK = unsafe.String(&d.keys[start], n), true
	}
	return d.defKey
}

// newArena sets the arena for a body of n bytes (no string of it can need
// more): cut from the Ensure buffer when it fits.
func (d *Decoder) newArena(n int) {
	if free := cap(d.shared) - len(d.shared); free >= n && n > 0 {
		d.arena, d.inShared = d.shared[len(d.shared):len(d.shared):cap(d.shared)], true
		return
	}
	d.arena, d.inShared = make([]byte, 0, n), false
}

// finish drops buffers too large to keep for the next call.
func (d *Decoder) finish() {
	if d.inShared {
		// What the arena used of its cut is taken. (It cannot outgrow the
		// cut; if it ever did, append moved it and the cut is not used.)
		if free := cap(d.shared) - len(d.shared); cap(d.arena) == free {
			d.shared = d.shared[:len(d.shared)+len(d.arena)]
		}
		d.inShared = false
	}
	d.arena = nil
	d.defKey, d.defKeyOK = "", false
	d.key, d.ts, d.value, d.id, d.tags = nil, nil, nil, nil, nil
	if d.big {
		d.p = fastjson.Parser{}
		d.big = false
	}
	if cap(d.num) > 4096 {
		d.num = nil
	}
	if cap(d.fix) > 4096 {
		d.fix = nil
	}
}

var utf8BOM = []byte("\xef\xbb\xbf")

// parse parses one JSON value with the reused parser. The result is valid
// until the next parse.
//
// The parser reads NaN and Inf (in any case, signed) as numbers but fails
// on Infinity; a text it cannot parse is tried again with each Infinity
// outside strings spelled Inf, so that Infinity is rejected like NaN, on
// its field, rather than as malformed JSON.
func (d *Decoder) parse(b []byte) (*fastjson.Value, error) {
	if len(b) > retainLimit {
		d.big = true
	}
	v, err := d.p.ParseBytes(b)
	if err == nil {
		return v, nil
	}
	if fixed, ok := d.infinityAsInf(b); ok {
		if v, err2 := d.p.ParseBytes(fixed); err2 == nil {
			return v, nil
		}
	}
	return nil, err
}

// infinityAsInf returns a copy of b (in d.fix) with every "Infinity", in
// any case, outside strings replaced by "Inf" and five spaces, or false
// when b has none.
func (d *Decoder) infinityAsInf(b []byte) ([]byte, bool) {
	const word = "infinity"
	found := false
	for i := 0; i < len(b); i++ {
		switch c := b[i]; {
		case c == '"':
			end := scanString(b, i+1)
			if end < 0 {
				return nil, false
			}
			i = end - 1
		case (c == 'i' || c == 'I') && len(b)-i >= len(word) && bytes.EqualFold(b[i:i+len(word)], []byte(word)):
			if !found {
				d.fix = append(d.fix[:0], b...)
				found = true
			}
			copy(d.fix[i:], "Inf     ")
			i += len(word) - 1
		}
	}
	return d.fix, found
}

// decodeNDJSON decodes one event per non-blank line.
func (d *Decoder) decodeNDJSON(body []byte, o *Options, dst []Event, rej []Rejection) ([]Event, []Rejection, error) {
	idx := 0
	for len(body) > 0 {
		line := body
		if i := bytes.IndexByte(body, '\n'); i >= 0 {
			line, body = body[:i], body[i+1:]
		} else {
			body = nil
		}
		if skipWS(line, 0) == len(line) {
			continue
		}
		if ev, ok := d.fastElement(line, o); ok {
			dst = append(dst, ev)
			idx++
			continue
		}
		v, err := d.parse(line)
		if err != nil {
			rej = d.reject(rej, Rejection{Index: idx, Reason: reasonMalformed})
		} else {
			dst, rej = d.object(v, idx, o, dst, rej)
		}
		idx++
	}
	if idx == 0 {
		return dst, rej, ErrEmpty
	}
	return dst, rej, nil
}

// decodeArray decodes a JSON array, body[0] == '['. Elements are delimited
// by a light scan and parsed one at a time, so the parser's memory is
// bounded by the largest element, not the body.
func (d *Decoder) decodeArray(body []byte, o *Options, dst []Event, rej []Rejection) ([]Event, []Rejection, error) {
	i := skipWS(body, 1)
	if i < len(body) && body[i] == ']' {
		if j := skipWS(body, i+1); j < len(body) {
			return dst, rej, fmt.Errorf("%w: unexpected data after array at offset %d", ErrMalformed, j)
		}
		return dst, rej, ErrEmpty
	}
	for idx := 0; ; idx++ {
		end := scanValue(body, i)
		if end < 0 {
			return dst, rej, fmt.Errorf("%w: unterminated array element %d", ErrMalformed, idx)
		}
		if ev, ok := d.fastElement(body[i:end], o); ok {
			dst = append(dst, ev)
		} else {
			v, err := d.parse(body[i:end])
			if err != nil {
				return dst, rej, fmt.Errorf("%w: array element %d: %v", ErrMalformed, idx, err)
			}
			dst, rej = d.object(v, idx, o, dst, rej)
		}
		i = skipWS(body, end)
		if i == len(body) {
			return dst, rej, fmt.Errorf("%w: missing ']' at end of array", ErrMalformed)
		}
		switch body[i] {
		case ',':
			i = skipWS(body, i+1)
		case ']':
			if j := skipWS(body, i+1); j < len(body) {
				return dst, rej, fmt.Errorf("%w: unexpected data after array at offset %d", ErrMalformed, j)
			}
			return dst, rej, nil
		default:
			return dst, rej, fmt.Errorf("%w: missing ',' after array element %d", ErrMalformed, idx)
		}
	}
}

// scanValue returns the offset just past the JSON value starting at b[i],
// or -1 when it does not end inside b. It only delimits: brackets are
// counted without matching their kind and scalars are not checked, the
// parser validates the value afterwards.
func scanValue(b []byte, i int) int {
	if i >= len(b) {
		return -1
	}
	switch b[i] {
	case '"':
		return scanString(b, i+1)
	case '{', '[':
	default:
		for ; i < len(b); i++ {
			switch b[i] {
			case ',', ']', '}', ' ', '\t', '\r', '\n':
				return i
			}
		}
		return i
	}
	depth := 0
	for i < len(b) {
		switch b[i] {
		case '{', '[':
			depth++
		case '}', ']':
			depth--
			if depth == 0 {
				return i + 1
			}
		case '"':
			i = scanString(b, i+1)
			if i < 0 {
				return -1
			}
			continue
		}
		i++
	}
	return -1
}

// scanString returns the offset just past the closing quote of the string
// whose content starts at b[i], or -1.
func scanString(b []byte, i int) int {
	for {
		j := bytes.IndexByte(b[i:], '"')
		if j < 0 {
			return -1
		}
		j += i
		// The quote is escaped when preceded by an odd number of '\'.
		k := j
		for k > i && b[k-1] == '\\' {
			k--
		}
		if (j-k)%2 == 0 {
			return j + 1
		}
		i = j + 1
	}
}

// skipWS returns the offset of the first non-whitespace byte of b at or
// after i, or len(b).
func skipWS(b []byte, i int) int {
	for ; i < len(b); i++ {
		switch b[i] {
		case ' ', '\t', '\r', '\n':
		default:
			return i
		}
	}
	return i
}

// firstChars returns at most the first 16 bytes of b, for error messages.
func firstChars(b []byte) string {
	if len(b) > 16 {
		b = b[:16]
	}
	return string(b)
}

// visitField records the fields of an event object.
func (d *Decoder) visitField(k []byte, v *fastjson.Value) {
	switch string(k) {
	case "key":
		d.key = v
	case "ts":
		d.ts = v
	case "value":
		d.value = v
	case "id":
		d.id = v
	case "tags":
		d.tags = v
	}
}

// object turns the parsed JSON value v, element idx of the batch, into an
// event appended to dst or a rejection appended to rej.
func (d *Decoder) object(v *fastjson.Value, idx int, o *Options, dst []Event, rej []Rejection) ([]Event, []Rejection) {
	if v.Type() != fastjson.TypeObject {
		return dst, d.reject(rej, Rejection{Index: idx, Reason: reasonNotObject})
	}
	obj, _ := v.Object()
	if d.visitFieldFn == nil {
		d.visitFieldFn = d.visitField
	}
	d.key, d.ts, d.value, d.id, d.tags = nil, nil, nil, nil, nil
	obj.Visit(d.visitFieldFn)

	mark := len(d.arena)
	var ev Event
	field, reason := d.build(&ev, o)
	if reason != "" {
		d.arena = d.arena[:mark]
		return dst, d.reject(rej, Rejection{Index: idx, Field: field, Reason: reason})
	}
	return append(dst, ev), rej
}

// build fills ev from the recorded fields and returns the field and reason
// of the first problem, or "", "".
func (d *Decoder) build(ev *Event, o *Options) (field, reason string) {
	// key
	useDefault := d.key == nil
	if !useDefault {
		s, st := d.str(d.key)
		switch st {
		case strNull:
			useDefault = true
		case strOther:
			return fieldKey, reasonKeyType
		case strInvalid:
			return fieldKey, reasonBadString
		default:
			// str returns valid UTF-8.
			switch {
			case s == "":
				return fieldKey, reasonKeyEmpty
			case len(s) > MaxKeyBytes:
				return fieldKey, reasonKeyLong
			}
			ev.Key = s
		}
	}
	if useDefault {
		if o.DefaultKey == "" {
			return fieldKey, reasonKeyMissing
		}
		if r := checkKey(o.DefaultKey); r != "" {
			return fieldKey, r
		}
		ev.Key = d.defaultKey(o)
	}

	// ts
	ev.TS = o.Now
	if d.ts != nil {
		switch d.ts.Type() {
		case fastjson.TypeNull:
		case fastjson.TypeNumber:
			d.num = d.ts.MarshalTo(d.num[:0])
			ts, r := parseTS(d.num)
			if r == "" {
				r = checkNumberTS(ts, o)
			}
			if r != "" {
				return fieldTS, r
			}
			ev.TS = ts
		case fastjson.TypeString:
			b, _ := d.ts.StringBytes()
			ts, r := parseTSString(b)
			if r == "" {
				r = checkTS(ts)
			}
			if r == "" && o.CheckMinTS && ts < MinTS {
				r = reasonTSEarly
			}
			if r != "" {
				return fieldTS, r
			}
			ev.TS = ts
		default:
			return fieldTS, reasonTSType
		}
	}
	if r := checkTS(ev.TS); r != "" {
		return fieldTS, r
	}
	if future(ev.TS, o) {
		return fieldTS, d.futureReason(o.MaxFuture)
	}

	// value
	if d.value == nil {
		return fieldValue, reasonValueMissing
	}
	if d.value.Type() != fastjson.TypeNumber {
		return fieldValue, reasonValue
	}
	d.num = d.value.MarshalTo(d.num[:0])
	f, ok := parseFloat(d.num)
	if !ok {
		return fieldValue, valueReason(d.num)
	}
	ev.Value = f

	// id
	if d.id != nil {
		s, st := d.str(d.id)
		switch st {
		case strNull:
		case strOther:
			return fieldID, reasonIDType
		case strInvalid:
			return fieldID, reasonBadString
		default:
			if len(s) > MaxIDBytes {
				return fieldID, reasonIDLong
			}
			ev.ID = s
		}
	}

	// tags
	if d.tags != nil {
		switch d.tags.Type() {
		case fastjson.TypeNull:
		case fastjson.TypeObject:
			tags, r := d.tagsObject(d.tags)
			if r != "" {
				return fieldTags, r
			}
			ev.Tags = tags
		default:
			return fieldTags, reasonTagsType
		}
	}
	return "", ""
}

// parseTSString parses an RFC 3339 ts string into epoch milliseconds,
// truncating sub-millisecond digits. It returns the rejection reason, or "".
// time.Parse is laxer than RFC 3339 in two ways checked here: it takes a
// ',' before the fraction, and offsets up to ±24:59.
func parseTSString(b []byte) (int64, string) {
	t, err := time.Parse(time.RFC3339Nano, unsafe.String(unsafe.SliceData(b), len(b)))
	if err != nil || bytes.IndexByte(b, ',') >= 0 {
		return 0, reasonTSRFC3339
	}
	// time.Parse checked the zone's form: "Z" or ±hh:mm at the end.
	if n := len(b); b[n-1] != 'Z' {
		hh := int(b[n-5]-'0')*10 + int(b[n-4]-'0')
		mm := int(b[n-2]-'0')*10 + int(b[n-1]-'0')
		if hh > 23 || mm > 59 {
			return 0, reasonTSOffset
		}
	}
	return t.UnixMilli(), ""
}

// futureReason returns futureReason(max), cached.
func (d *Decoder) futureReason(max time.Duration) string {
	if d.futFor != max || d.futReason == "" {
		d.futFor, d.futReason = max, futureReason(max)
	}
	return d.futReason
}

// tagsObject reads the tags object v. It returns nil for an empty object,
// or the reason it is invalid.
//
// Like str, it works on the raw text: the object is copied into the arena
// as the parser's compact form {"k":"v",...} (its names still escaped) and
// each name and value is unescaped in place, so names are checked as
// strictly as values and no string is copied twice.
func (d *Decoder) tagsObject(v *fastjson.Value) (map[string]string, string) {
	obj, _ := v.Object()
	n := obj.Len()
	if n == 0 {
		return nil, ""
	}
	if n > MaxTags {
		// Duplicated names could bring it under; not worth a map.
		return nil, reasonTagsCount
	}
	start := len(d.arena)
	d.arena = v.MarshalTo(d.arena)
	b := d.arena[start:]
	m := make(map[string]string, n)
	for i := 1; i < len(b) && b[i] != '}'; {
		k, end, r := arenaToken(b, i)
		switch {
		case r != "":
			return nil, r
		case k == "":
			return nil, reasonTagKeyEmpty
		case len(k) > MaxTagKeyBytes:
			return nil, reasonTagKeyLong
		case end >= len(b) || b[end] != ':':
			return nil, reasonTagsType // not the parser's compact form; cannot happen
		}
		val, end, r := arenaToken(b, end+1)
		switch {
		case r == reasonTagsType:
			return nil, reasonTagValueType
		case r != "":
			return nil, r
		case len(val) > MaxTagValueBytes:
			return nil, reasonTagValueLong
		}
		m[k] = val
		i = end
		if i < len(b) && b[i] == ',' {
			i++
		}
	}
	return m, ""
}

// arenaToken unescapes in place the JSON string starting at b[i] == '"'
// and returns it (pointing into b), and the offset just past it; r is
// reasonTagsType when b[i] does not start a string, reasonBadString when
// the string is invalid.
func arenaToken(b []byte, i int) (s string, end int, r string) {
	if i >= len(b) || b[i] != '"' {
		return "", i, reasonTagsType
	}
	end = scanString(b, i+1)
	if end < 0 {
		return "", i, reasonTagsType
	}
	n, ok := unescape(b[i+1 : end-1])
	if !ok {
		return "", end, reasonBadString
	}
	if n == 0 {
		return "", end, ""
	}
	return unsafe.String(&b[i+1], n), end, ""
}

// arenaString returns d.arena[start:] as a string without copying.
func (d *Decoder) arenaString(start int) string {
	n := len(d.arena) - start
	if n == 0 {
		return ""
	}
	return unsafe.String(&d.arena[start], n)
}

// strResult classifies a JSON value read as a string.
type strResult uint8

const (
	strOK      strResult = iota // a valid string
	strNull                     // JSON null
	strOther                    // not a string
	strInvalid                  // a string with a raw control character, a bad escape or invalid UTF-8
)

// str copies the string value v into the arena, unescaped, and returns it.
//
// It works on the raw JSON text of v (MarshalTo of a string the parser has
// not unescaped yet), so it must be called at most once per value and
// before anything calls v.Type on it.
func (d *Decoder) str(v *fastjson.Value) (string, strResult) {
	start := len(d.arena)
	d.arena = v.MarshalTo(d.arena)
	raw := d.arena[start:]
	if len(raw) < 2 || raw[0] != '"' {
		d.arena = d.arena[:start]
		if len(raw) == 4 && string(raw) == "null" {
			return "", strNull
		}
		return "", strOther
	}
	// The string's content is raw[1:len(raw)-1]: unescape it in place and
	// let the result start after the opening quote.
	n, ok := unescape(raw[1 : len(raw)-1])
	if !ok {
		d.arena = d.arena[:start]
		return "", strInvalid
	}
	d.arena = d.arena[:start+1+n]
	return d.arenaString(start + 1), strOK
}

// noCopy makes go vet's copylocks check flag copies of a Decoder, whose
// cached method values point at the original.
type noCopy struct{}

func (*noCopy) Lock()   {}
func (*noCopy) Unlock() {}
