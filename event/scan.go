package event

import (
	"math"
	"strconv"
	"unicode/utf16"
	"unicode/utf8"
	"unsafe"
)

// unescape unescapes the content of a JSON string (between the quotes) in
// place and returns the length of the result. ok is false when b holds a raw
// control character, an invalid escape, an unpaired surrogate escape, or
// when the result is not valid UTF-8 (RFC 8259 §7, §8.1).
func unescape(b []byte) (n int, ok bool) {
	ascii := true
	i := 0
	for ; i < len(b); i++ {
		c := b[i]
		if c < 0x20 || c == '\\' {
			break
		}
		if c >= utf8.RuneSelf {
			ascii = false
		}
	}
	w := i
	for i < len(b) {
		c := b[i]
		switch {
		case c < 0x20:
			return 0, false
		case c != '\\':
			if c >= utf8.RuneSelf {
				ascii = false
			}
			b[w] = c
			w++
			i++
			continue
		}
		if i+1 >= len(b) {
			return 0, false
		}
		switch b[i+1] {
		case '"', '\\', '/':
			b[w] = b[i+1]
		case 'b':
			b[w] = '\b'
		case 'f':
			b[w] = '\f'
		case 'n':
			b[w] = '\n'
		case 'r':
			b[w] = '\r'
		case 't':
			b[w] = '\t'
		case 'u':
			r, ok := hex4(b[i+2:])
			if !ok {
				return 0, false
			}
			i += 6
			if utf16.IsSurrogate(r) {
				if r >= 0xDC00 || i+6 > len(b) || b[i] != '\\' || b[i+1] != 'u' {
					return 0, false
				}
				r2, ok := hex4(b[i+2:])
				if !ok || r2 < 0xDC00 || r2 > 0xDFFF {
					return 0, false
				}
				r = utf16.DecodeRune(r, r2)
				i += 6
			}
			// The encoding is never longer than the escape just read, so
			// it cannot overwrite unread input.
			w += utf8.EncodeRune(b[w:], r)
			continue
		default:
			return 0, false
		}
		w++
		i += 2
	}
	if !ascii && !utf8.Valid(b[:w]) {
		return 0, false
	}
	return w, true
}

// hex4 decodes the 4 hex digits at the start of b.
func hex4(b []byte) (rune, bool) {
	if len(b) < 4 {
		return 0, false
	}
	var r rune
	for _, c := range b[:4] {
		switch {
		case '0' <= c && c <= '9':
			c -= '0'
		case 'a' <= c && c <= 'f':
			c -= 'a' - 10
		case 'A' <= c && c <= 'F':
			c -= 'A' - 10
		default:
			return 0, false
		}
		r = r<<4 | rune(c)
	}
	return r, true
}

// validUTF8 is utf8.Valid with a fast path for ASCII.
func validUTF8(b []byte) bool {
	for _, c := range b {
		if c >= utf8.RuneSelf {
			return utf8.Valid(b)
		}
	}
	return true
}

// number is a JSON number split into its parts: digits of the integer part,
// digits of the fraction (without the '.'), and the exponent.
type number struct {
	neg       bool
	int, frac []byte
	exp       int64 // saturated at ±maxExp
}

const maxExp = 1 << 30

// splitNumber checks b against the JSON number grammar (RFC 8259 §6):
// -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?, rejecting what the parser
// lets through (NaN, Inf, "+1", "01", "1.", ".5", "1-2").
func splitNumber(b []byte) (number, bool) {
	var n number
	i := 0
	if i < len(b) && b[i] == '-' {
		n.neg = true
		i++
	}
	start := i
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case i < len(b) && '1' <= b[i] && b[i] <= '9':
		for i < len(b) && '0' <= b[i] && b[i] <= '9' {
			i++
		}
	default:
		return n, false
	}
	n.int = b[start:i]
	if i < len(b) && b[i] == '.' {
		i++
		start = i
		for i < len(b) && '0' <= b[i] && b[i] <= '9' {
			i++
		}
		if i == start {
			return n, false
		}
		n.frac = b[start:i]
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		eneg := false
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			eneg = b[i] == '-'
			i++
		}
		start = i
		for i < len(b) && '0' <= b[i] && b[i] <= '9' {
			if n.exp < maxExp {
				n.exp = n.exp*10 + int64(b[i]-'0')
			}
			i++
		}
		if i == start {
			return n, false
		}
		if n.exp > maxExp {
			n.exp = maxExp
		}
		if eneg {
			n.exp = -n.exp
		}
	}
	return n, i == len(b)
}

// fastNumber reads the common short forms of a JSON number,
// -?(0|[1-9][0-9]*)(\.[0-9]+)? with at most 15 digits in all, as
// mant / 10^frac. ok is false for anything else, valid or not.
func fastNumber(b []byte) (mant int64, frac int, neg, ok bool) {
	if len(b) > 0 && b[0] == '-' {
		neg = true
		b = b[1:]
	}
	if len(b) == 0 || (b[0] == '0' && len(b) > 1 && b[1] != '.') {
		return 0, 0, false, false
	}
	digits := 0
	dot := -1
	for i, c := range b {
		if d := c - '0'; d <= 9 {
			mant = mant*10 + int64(d)
			digits++
			continue
		}
		if c != '.' || dot >= 0 || i == 0 || i == len(b)-1 {
			return 0, 0, false, false
		}
		dot = i
	}
	if digits > 15 {
		return 0, 0, false, false
	}
	if dot >= 0 {
		frac = len(b) - dot - 1
	}
	return mant, frac, neg, true
}

// pow10 holds the powers of ten that float64 represents exactly.
var pow10 = [...]float64{1, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15}

// parseFloat parses a strict JSON number and reports whether it is a valid,
// finite float64.
func parseFloat(b []byte) (float64, bool) {
	if mant, frac, neg, ok := fastNumber(b); ok {
		// Exact operands (mant < 10^15 < 2^53, 10^frac exact), so one
		// IEEE division rounds correctly, as strconv's own fast path does.
		f := float64(mant) / pow10[frac]
		if neg {
			f = -f
		}
		return f, true
	}
	if _, ok := splitNumber(b); !ok {
		return 0, false
	}
	f, err := strconv.ParseFloat(unsafe.String(unsafe.SliceData(b), len(b)), 64)
	if err != nil || math.IsInf(f, 0) || math.IsNaN(f) {
		return 0, false
	}
	return f, true
}

// nonFinite reports whether the number token b, as the parser delimits
// it, is a spelling of NaN or infinity rather than digits: the parser's
// tokens hold only digits, '+', '-', '.', 'e', 'E', or "nan"/"inf" in any
// case (and "Infinity", see Decoder.parse).
func nonFinite(b []byte) bool {
	for _, c := range b {
		switch c {
		case 'n', 'N', 'i', 'I':
			return true
		}
	}
	return false
}

// valueReason returns why the number token b, which parseFloat refused, is
// not a valid value: not finite, or malformed.
func valueReason(b []byte) string {
	if _, ok := splitNumber(b); ok || nonFinite(b) {
		return reasonValue // out of float64's range, NaN or infinite
	}
	return reasonValueMalformed
}

// pow10i holds the powers of ten up to 10^15.
var pow10i = [...]int64{1, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15}

// parseTS parses a JSON number as a ts in epoch milliseconds: sub-millisecond
// digits are dropped (1764064800000.9 is 1764064800000, like the digits past
// the milliseconds of an RFC 3339 string), integral exponent forms are
// accepted (1.7640648e12, 17640648e5); it must not be negative and not
// after MaxTS. It returns the rejection reason, or "".
func parseTS(b []byte) (int64, string) {
	if mant, frac, neg, ok := fastNumber(b); ok {
		switch {
		case neg && mant != 0:
			return 0, reasonTSNegative
		case frac > 0:
			mant /= pow10i[frac]
		}
		if mant > MaxTS {
			return 0, reasonTSRange
		}
		return mant, ""
	}
	n, ok := splitNumber(b)
	if !ok {
		if nonFinite(b) {
			return 0, reasonTSType
		}
		return 0, reasonTSMalformed
	}
	// The value is digits × 10^exp with digits = int ‖ frac and
	// exp = n.exp - len(frac). Drop leading zeros of digits, and trailing
	// zeros into the exponent.
	hi, lo := n.int, n.frac
	exp := n.exp - int64(len(lo))
	for len(lo) > 0 && lo[len(lo)-1] == '0' {
		lo = lo[:len(lo)-1]
		exp++
	}
	if len(lo) == 0 {
		for len(hi) > 0 && hi[len(hi)-1] == '0' {
			hi = hi[:len(hi)-1]
			exp++
		}
	}
	for len(hi) > 0 && hi[0] == '0' {
		hi = hi[1:]
	}
	if len(hi) == 0 {
		for len(lo) > 0 && lo[0] == '0' {
			lo = lo[1:]
		}
	}
	digits := int64(len(hi) + len(lo))
	if digits == 0 {
		return 0, "" // zero, whatever the exponent
	}
	if n.neg {
		return 0, reasonTSNegative
	}
	keep := digits
	if exp < 0 {
		// Truncate the digits past the millisecond.
		keep += exp
		exp = 0
		if keep <= 0 {
			return 0, ""
		}
	}
	if keep+exp > 15 { // at least 10^15 > MaxTS
		return 0, reasonTSRange
	}
	var u int64
	for _, c := range hi {
		if keep == 0 {
			break
		}
		u = u*10 + int64(c-'0')
		keep--
	}
	for _, c := range lo {
		if keep == 0 {
			break
		}
		u = u*10 + int64(c-'0')
		keep--
	}
	for ; exp > 0; exp-- {
		u *= 10
	}
	if u > MaxTS {
		return 0, reasonTSRange
	}
	return u, ""
}
