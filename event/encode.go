package event

import (
	"math"
	"slices"
	"strconv"
	"unicode/utf8"
)

// AppendJSON appends ev encoded as one JSON object to dst and returns the
// extended buffer:
//
//	{"key":"web-1.cpu","ts":1764065099000,"value":40.5,"id":"e-1","tags":{"env":"prod"}}
//
// ts is an integer of epoch milliseconds, value uses the shortest
// representation that reads back exactly (strconv 'g', -1), id and tags are
// omitted when empty, and tags are sorted by key so the output is
// deterministic. Strings are escaped per RFC 8259 ('"', '\\' and control
// characters); invalid UTF-8 is replaced by U+FFFD and a non-finite value is
// written as null, so the output is always valid JSON (a valid event, see
// Validate, never needs either). It does not allocate for events with at
// most MaxTags tags.
//
// AppendJSON is safe for concurrent use.
func AppendJSON(dst []byte, ev *Event) []byte {
	dst = append(dst, `{"key":`...)
	dst = appendString(dst, ev.Key)
	dst = append(dst, `,"ts":`...)
	dst = strconv.AppendInt(dst, ev.TS, 10)
	dst = append(dst, `,"value":`...)
	if math.IsNaN(ev.Value) || math.IsInf(ev.Value, 0) {
		dst = append(dst, "null"...)
	} else {
		dst = strconv.AppendFloat(dst, ev.Value, 'g', -1, 64)
	}
	if ev.ID != "" {
		dst = append(dst, `,"id":`...)
		dst = appendString(dst, ev.ID)
	}
	if len(ev.Tags) > 0 {
		dst = append(dst, `,"tags":{`...)
		var buf [MaxTags]string
		keys := sortedKeys(buf[:0], ev.Tags)
		for i, k := range keys {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = appendString(dst, k)
			dst = append(dst, ':')
			dst = appendString(dst, ev.Tags[k])
		}
		dst = append(dst, '}')
	}
	return append(dst, '}')
}

// AppendNDJSON appends evs to dst as NDJSON, one AppendJSON object per line,
// each line ending in '\n', and returns the extended buffer.
//
// AppendNDJSON is safe for concurrent use.
func AppendNDJSON(dst []byte, evs []Event) []byte {
	for i := range evs {
		dst = AppendJSON(dst, &evs[i])
		dst = append(dst, '\n')
	}
	return dst
}

// sortedKeys appends the keys of m to buf, sorted.
func sortedKeys(buf []string, m map[string]string) []string {
	for k := range m {
		buf = append(buf, k)
	}
	slices.Sort(buf)
	return buf
}

// safeASCII[c] is true for the ASCII bytes that need no escape in a JSON
// string.
var safeASCII = func() (t [utf8.RuneSelf]bool) {
	for c := 0x20; c < utf8.RuneSelf; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

const hexDigits = "0123456789abcdef"

// appendString appends s as a JSON string.
func appendString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if safeASCII[c] {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch c {
			case '"', '\\':
				dst = append(dst, '\\', c)
			case '\b':
				dst = append(dst, '\\', 'b')
			case '\f':
				dst = append(dst, '\\', 'f')
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i++
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}
