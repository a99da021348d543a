package bench

import (
	"bytes"
	"strconv"
)

// Every Kafka, HTTP and NATS scenario sends events with ids, as the Go
// client does by default (package client: a random 12-hex-digit prefix,
// '-', a sequence number); the main ones run without ids too (the
// scenarios named /no-ids), compared in the same run. The harness's ids
// are idPrefix, four hex digits of the round and '-' and the event's
// number in base 36: ~23 bytes, unique in a run. A body sent more than once
// (the ingest scenarios cycle through a set of bodies) is stamped with its
// round each time, so that no event is a duplicate.
const idPrefix = "5f3a9c0e21b7-"

// idRoundAt is where the round digits start, from the start of the
// `,"id":"` appendID writes.
const idRoundAt = len(`,"id":"` + idPrefix)

// appendID appends the id field of event j (round 0000) to an event's JSON.
func appendID(b []byte, j int) []byte {
	b = append(b, `,"id":"`+idPrefix+"0000-"...)
	b = strconv.AppendInt(b, int64(j), 36)
	return append(b, '"')
}

// idsLabel is Setup.IDs for scenarios with and without ids.
func idsLabel(ids bool) string {
	if ids {
		return "on"
	}
	return "off"
}

// bodySet is a set of NDJSON bodies sent over and over.
type bodySet struct {
	bs     [][]byte
	rounds [][]int32 // per body, where each id's round digits are; nil without ids
}

// newBodySet makes count bodies of batch events each, event j's JSON
// appended by gen (ids: with appendID), and returns them with their mean
// event size.
func newBodySet(count, batch int, ids bool, gen func(b []byte, j int) []byte) (*bodySet, int) {
	s := &bodySet{bs: make([][]byte, count)}
	if ids {
		s.rounds = make([][]int32, count)
	}
	total, j := 0, 0
	for i := range s.bs {
		var b []byte
		for range batch {
			n := len(b)
			b = gen(b, j)
			if ids {
				s.rounds[i] = append(s.rounds[i], int32(n+bytes.LastIndex(b[n:], []byte(`,"id":"`))+idRoundAt))
			}
			total += len(b) - n
			b = append(b, '\n')
			j++
		}
		s.bs[i] = b
	}
	return s, total / (count * batch)
}

// body returns the body of send number seq: body seq mod count, its ids
// stamped with round seq / count in buf (reused) when it has ids. Sends of
// different numbers carry different ids.
func (s *bodySet) body(seq int, buf []byte) []byte {
	i := seq % len(s.bs)
	if s.rounds == nil {
		return s.bs[i]
	}
	buf = append(buf[:0], s.bs[i]...)
	r := uint16(seq / len(s.bs))
	const hex = "0123456789abcdef"
	for _, at := range s.rounds[i] {
		buf[at], buf[at+1], buf[at+2], buf[at+3] = hex[r>>12], hex[r>>8&15], hex[r>>4&15], hex[r&15]
	}
	return buf
}
