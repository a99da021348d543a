package event

// The fast path: most events are one flat JSON object of short ASCII
// strings and plain numbers, e.g. {"key":"web-1.cpu","ts":1764064800000,
// "value":93.2}. fast decodes exactly those in one pass, without building a
// parse tree, and gives up (ok false) on anything else — escapes, non-ASCII
// bytes, nested values, tags, null, a string ts, an invalid field — leaving
// it to the parser path, which then decides, and reports, as it always has.
// So the fast path only ever produces the event the parser path would have
// produced for the same bytes (FuzzFastPath checks it), never a rejection.

// fastPath enables the fast path; tests turn it off to compare.
var fastPath = true

// fastElement is fast when the fast path is on.
func (d *Decoder) fastElement(b []byte, o *Options) (Event, bool) {
	if !fastPath {
		return Event{}, false
	}
	return d.fast(b, o)
}

// fast decodes b, a whole JSON text, as one event, or reports !ok.
func (d *Decoder) fast(b []byte, o *Options) (ev Event, ok bool) {
	var key, ts, value, id []byte
	hasKey, hasTS := false, false
	i := skipWS(b, 0)
	if i == len(b) || b[i] != '{' {
		return ev, false
	}
	i = skipWS(b, i+1)
	if i < len(b) && b[i] == '}' {
		return ev, false // no value: the parser path rejects it
	}
	for {
		// "name"
		if i == len(b) || b[i] != '"' {
			return ev, false
		}
		name, end := plainString(b, i+1)
		if end < 0 {
			return ev, false
		}
		i = skipWS(b, end)
		if i == len(b) || b[i] != ':' {
			return ev, false
		}
		i = skipWS(b, i+1)
		if i == len(b) {
			return ev, false
		}
		// value
		var v []byte
		switch c := b[i]; {
		case c == '"':
			s, end := plainString(b, i+1)
			if end < 0 {
				return ev, false
			}
			v, i = s, end
			switch string(name) {
			case "key":
				key, hasKey = v, true
			case "id":
				id = v
			case "ts", "value", "tags":
				return ev, false // a string ts, or an error: the parser path
			}
		case c == '-' || (c >= '0' && c <= '9'):
			end := i
			for end < len(b) && numberByte(b[end]) {
				end++
			}
			v, i = b[i:end], end
			// ts and value are checked against the grammar as they are
			// parsed, below; each may appear once here (of duplicates the
			// parser path keeps the last, but checks them all).
			switch string(name) {
			case "ts":
				if hasTS {
					return ev, false
				}
				ts, hasTS = v, true
			case "value":
				if value != nil {
					return ev, false
				}
				value = v
			case "key", "id", "tags":
				return ev, false
			default:
				if _, ok := splitNumber(v); !ok {
					return ev, false
				}
			}
		case c == 't' || c == 'f' || c == 'n':
			end := literal(b, i)
			if end < 0 {
				return ev, false
			}
			i = end
			switch string(name) {
			case "key", "ts", "value", "id", "tags":
				return ev, false // null or a wrong type: the parser path
			}
		default:
			return ev, false // an object or array (tags), or not JSON
		}
		i = skipWS(b, i)
		if i == len(b) {
			return ev, false
		}
		if b[i] == '}' {
			break
		}
		if b[i] != ',' {
			return ev, false
		}
		i = skipWS(b, i+1)
	}
	if skipWS(b, i+1) != len(b) || value == nil {
		return ev, false
	}

	// The same checks as build, in the same order; any failure goes back
	// to the parser path, which reports it.
	mark := len(d.arena)
	if hasKey {
		if len(key) == 0 || len(key) > MaxKeyBytes {
			return ev, false
		}
		ev.Key = d.arenaCopy(key)
	} else {
		if o.DefaultKey == "" || checkKey(o.DefaultKey) != "" {
			return ev, false
		}
		ev.Key = d.defaultKey(o)
	}
	ev.TS = o.Now
	if hasTS {
		t, r := parseTS(ts)
		if r != "" || checkNumberTS(t, o) != "" {
			d.arena = d.arena[:mark]
			return Event{}, false
		}
		ev.TS = t
	}
	f, fok := parseFloat(value)
	if checkTS(ev.TS) != "" || future(ev.TS, o) || !fok || len(id) > MaxIDBytes {
		d.arena = d.arena[:mark]
		return Event{}, false
	}
	ev.Value = f
	if id != nil {
		ev.ID = d.arenaCopy(id)
	}
	return ev, true
}

// plainString reads the JSON string whose content starts at b[i] (just
// past its opening quote) when it holds printable ASCII only, no escape:
// it returns the content and the offset past the closing quote, or end -1.
func plainString(b []byte, i int) (s []byte, end int) {
	for j := i; j < len(b); j++ {
		switch c := b[j]; {
		case c == '"':
			return b[i:j], j + 1
		case c == '\\' || c < 0x20 || c >= 0x80:
			return nil, -1
		}
	}
	return nil, -1
}

// numberByte reports whether c can be part of a JSON number.
func numberByte(c byte) bool {
	return (c >= '0' && c <= '9') || c == '-' || c == '+' || c == '.' || c == 'e' || c == 'E'
}

// literal returns the offset past the literal true, false or null at b[i],
// or -1.
func literal(b []byte, i int) int {
	for _, lit := range [...]string{"true", "false", "null"} {
		if len(b)-i >= len(lit) && string(b[i:i+len(lit)]) == lit {
			return i + len(lit)
		}
	}
	return -1
}
