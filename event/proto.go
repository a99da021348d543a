package event

import (
	"fmt"
	"math"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/squallhq/squall/messages"
)

// Field numbers of squall.messages.Event and EventBatch.
const (
	pbBatchEvents = 1
	pbKey         = 1
	pbTS          = 2
	pbValue       = 3
	pbID          = 4
	pbTags        = 5
	pbMapKey      = 1
	pbMapValue    = 2
)

// ToProto converts evs to a protobuf EventBatch. The messages share the
// events' strings and tags maps. An event with TS 0 reads back as having no
// ts (see FromProto). For the wire bytes alone, AppendProto is faster.
//
// ToProto is safe for concurrent use.
func ToProto(evs []Event) *messages.EventBatch {
	ms := make([]messages.Event, len(evs))
	b := &messages.EventBatch{Events: make([]*messages.Event, len(evs))}
	for i := range evs {
		ev := &evs[i]
		m := &ms[i]
		m.Key, m.Ts, m.Value, m.Id, m.Tags = ev.Key, ev.TS, ev.Value, ev.ID, ev.Tags
		b.Events[i] = m
	}
	return b
}

// FromProto appends the valid events of b to dst and a Rejection for each
// invalid one to rej, with the rules of Decoder.Decode (and its Options): a
// ts of 0 is absent and becomes o.Now, an empty key is absent and becomes
// o.DefaultKey. The events share the messages' strings and tags maps.
//
// FromProto is safe for concurrent use when each call has its own b.
func FromProto(b *messages.EventBatch, o Options, dst []Event, rej []Rejection) ([]Event, []Rejection) {
	for i, m := range b.GetEvents() {
		ev := Event{
			Key:   m.GetKey(),
			TS:    m.GetTs(),
			Value: m.GetValue(),
			ID:    m.GetId(),
			Tags:  m.GetTags(),
		}
		if ev.Key == "" {
			ev.Key = o.DefaultKey
		}
		explicitTS := ev.TS != 0
		if !explicitTS {
			ev.TS = o.Now
		}
		if len(ev.Tags) == 0 {
			ev.Tags = nil
		}
		r := validateArrived(&ev, explicitTS, &o)
		if r != nil {
			if ev.Key == "" && r.Field == fieldKey {
				r.Reason = reasonKeyMissing
			}
			r.Index = i
			rej = append(rej, *r)
			continue
		}
		dst = append(dst, ev)
	}
	return dst, rej
}

// validateArrived is Validate with the checks of the ts under o: those of
// a number when the event gave its ts, and MaxFuture.
func validateArrived(ev *Event, explicitTS bool, o *Options) *Rejection {
	if r := checkKey(ev.Key); r != "" {
		return &Rejection{Field: fieldKey, Reason: r}
	}
	r := checkTS(ev.TS)
	if explicitTS {
		r = checkNumberTS(ev.TS, o)
	}
	if r == "" && future(ev.TS, o) {
		r = futureReason(o.MaxFuture)
	}
	if r != "" {
		return &Rejection{Field: fieldTS, Reason: r}
	}
	return Validate(ev)
}

// AppendProto appends evs encoded as a protobuf EventBatch to dst and
// returns the extended buffer. The bytes are those of
// proto.MarshalOptions{Deterministic: true}.Marshal(ToProto(evs)): tags are
// sorted by key. It does not allocate for events with at most MaxTags tags.
//
// AppendProto is safe for concurrent use.
func AppendProto(dst []byte, evs []Event) []byte {
	for i := range evs {
		ev := &evs[i]
		var buf [MaxTags]string
		keys := sortedKeys(buf[:0], ev.Tags)
		dst = protowire.AppendTag(dst, pbBatchEvents, protowire.BytesType)
		dst = protowire.AppendVarint(dst, uint64(protoEventSize(ev, keys)))
		if ev.Key != "" {
			dst = protowire.AppendTag(dst, pbKey, protowire.BytesType)
			dst = protowire.AppendString(dst, ev.Key)
		}
		if ev.TS != 0 {
			dst = protowire.AppendTag(dst, pbTS, protowire.VarintType)
			dst = protowire.AppendVarint(dst, uint64(ev.TS))
		}
		if bits := math.Float64bits(ev.Value); bits != 0 {
			dst = protowire.AppendTag(dst, pbValue, protowire.Fixed64Type)
			dst = protowire.AppendFixed64(dst, bits)
		}
		if ev.ID != "" {
			dst = protowire.AppendTag(dst, pbID, protowire.BytesType)
			dst = protowire.AppendString(dst, ev.ID)
		}
		for _, k := range keys {
			v := ev.Tags[k]
			dst = protowire.AppendTag(dst, pbTags, protowire.BytesType)
			dst = protowire.AppendVarint(dst, uint64(mapEntrySize(k, v)))
			dst = protowire.AppendTag(dst, pbMapKey, protowire.BytesType)
			dst = protowire.AppendString(dst, k)
			dst = protowire.AppendTag(dst, pbMapValue, protowire.BytesType)
			dst = protowire.AppendString(dst, v)
		}
	}
	return dst
}

// ProtoSize returns the number of bytes AppendProto appends for ev.
func ProtoSize(ev *Event) int {
	n := protoEventSize(ev, nil)
	for k, v := range ev.Tags {
		n += 1 + protowire.SizeBytes(mapEntrySize(k, v))
	}
	return 1 + protowire.SizeBytes(n)
}

// protoEventSize is the encoded size of ev as an Event message.
func protoEventSize(ev *Event, keys []string) int {
	n := 0
	if ev.Key != "" {
		n += 1 + protowire.SizeBytes(len(ev.Key))
	}
	if ev.TS != 0 {
		n += 1 + protowire.SizeVarint(uint64(ev.TS))
	}
	if math.Float64bits(ev.Value) != 0 {
		n += 1 + protowire.SizeFixed64()
	}
	if ev.ID != "" {
		n += 1 + protowire.SizeBytes(len(ev.ID))
	}
	for _, k := range keys {
		n += 1 + protowire.SizeBytes(mapEntrySize(k, ev.Tags[k]))
	}
	return n
}

// mapEntrySize is the encoded size of one tags map entry.
func mapEntrySize(k, v string) int {
	return 1 + protowire.SizeBytes(len(k)) + 1 + protowire.SizeBytes(len(v))
}

// decodeProto decodes an EventBatch. Like proto.Unmarshal it skips unknown
// fields and fields with an unexpected wire type, and of repeated scalar
// fields the last wins; unlike it, a string that is not valid UTF-8 rejects
// its event only.
func (d *Decoder) decodeProto(b []byte, o *Options, dst []Event, rej []Rejection) ([]Event, []Rejection, error) {
	idx := 0
	for len(b) > 0 {
		num, typ, n := consumeTag(b)
		if n < 0 {
			return dst, rej, protoErr(n)
		}
		b = b[n:]
		if num != pbBatchEvents || typ != protowire.BytesType {
			n = protowire.ConsumeFieldValue(num, typ, b)
			if n < 0 {
				return dst, rej, protoErr(n)
			}
			b = b[n:]
			continue
		}
		m, n := protowire.ConsumeBytes(b)
		if n < 0 {
			return dst, rej, protoErr(n)
		}
		b = b[n:]
		mark := len(d.arena)
		var ev Event
		field, reason, err := d.protoEvent(m, o, &ev)
		if err != nil {
			return dst, rej, err
		}
		if reason != "" {
			d.arena = d.arena[:mark]
			rej = d.reject(rej, Rejection{Index: idx, Field: field, Reason: reason})
		} else {
			dst = append(dst, ev)
		}
		idx++
	}
	if idx == 0 {
		return dst, rej, ErrEmpty
	}
	return dst, rej, nil
}

// consumeTag is protowire.ConsumeTag that also rejects field numbers above
// protowire.MaxValidNumber, as proto.Unmarshal does.
func consumeTag(b []byte) (protowire.Number, protowire.Type, int) {
	num, typ, n := protowire.ConsumeTag(b)
	if n >= 0 && num > protowire.MaxValidNumber {
		return 0, 0, -2 // protowire's code for "invalid field number"
	}
	return num, typ, n
}

func protoErr(n int) error {
	return fmt.Errorf("%w: protobuf: %v", ErrMalformed, protowire.ParseError(n))
}

// protoEvent decodes one Event message into ev. It returns the field and
// reason of the first problem with the event, or err when m cannot be read.
func (d *Decoder) protoEvent(m []byte, o *Options, ev *Event) (field, reason string, err error) {
	var key, id []byte
	var keyPresent, idPresent bool
	for len(m) > 0 {
		num, typ, n := consumeTag(m)
		if n < 0 {
			return "", "", protoErr(n)
		}
		m = m[n:]
		switch {
		case num == pbKey && typ == protowire.BytesType:
			key, n = protowire.ConsumeBytes(m)
			keyPresent = true
		case num == pbTS && typ == protowire.VarintType:
			var v uint64
			v, n = protowire.ConsumeVarint(m)
			ev.TS = int64(v)
		case num == pbValue && typ == protowire.Fixed64Type:
			var v uint64
			v, n = protowire.ConsumeFixed64(m)
			ev.Value = math.Float64frombits(v)
		case num == pbID && typ == protowire.BytesType:
			id, n = protowire.ConsumeBytes(m)
			idPresent = true
		case num == pbTags && typ == protowire.BytesType:
			var e []byte
			e, n = protowire.ConsumeBytes(m)
			if n < 0 {
				break
			}
			var k, v []byte
			k, v, err = mapEntry(e)
			if err != nil {
				return "", "", err
			}
			if reason == "" {
				reason = d.protoTag(ev, k, v)
			}
		default:
			n = protowire.ConsumeFieldValue(num, typ, m)
		}
		if n < 0 {
			return "", "", protoErr(n)
		}
		m = m[n:]
	}

	// Check in the order of the JSON decoder: key, ts, value, id, tags.
	tagReason := reason
	switch {
	case keyPresent && len(key) > 0:
		if len(key) > MaxKeyBytes {
			return fieldKey, reasonKeyLong, nil
		}
		if !validUTF8(key) {
			return fieldKey, reasonKeyUTF8, nil
		}
		ev.Key = d.arenaCopy(key)
	case o.DefaultKey != "":
		ev.Key = d.defaultKey(o)
		if r := checkKey(ev.Key); r != "" {
			return fieldKey, r, nil
		}
	default:
		return fieldKey, reasonKeyMissing, nil
	}
	if ev.TS == 0 {
		ev.TS = o.Now
	} else if r := checkNumberTS(ev.TS, o); r != "" {
		return fieldTS, r, nil
	}
	if r := checkTS(ev.TS); r != "" {
		return fieldTS, r, nil
	}
	if future(ev.TS, o) {
		return fieldTS, d.futureReason(o.MaxFuture), nil
	}
	if math.IsNaN(ev.Value) || math.IsInf(ev.Value, 0) {
		return fieldValue, reasonValue, nil
	}
	if idPresent && len(id) > 0 {
		if len(id) > MaxIDBytes {
			return fieldID, reasonIDLong, nil
		}
		if !validUTF8(id) {
			return fieldID, reasonIDUTF8, nil
		}
		ev.ID = d.arenaCopy(id)
	}
	if tagReason != "" {
		return fieldTags, tagReason, nil
	}
	return "", "", nil
}

// protoTag adds the tag k=v to ev.Tags and returns why it cannot, or "".
func (d *Decoder) protoTag(ev *Event, k, v []byte) string {
	switch {
	case len(k) == 0:
		return reasonTagKeyEmpty
	case len(k) > MaxTagKeyBytes:
		return reasonTagKeyLong
	case len(v) > MaxTagValueBytes:
		return reasonTagValueLong
	case !validUTF8(k) || !validUTF8(v):
		return reasonTagsUTF8
	}
	if ev.Tags == nil {
		ev.Tags = make(map[string]string, 4)
	}
	if old, ok := ev.Tags[string(k)]; ok && old == string(v) {
		return ""
	}
	ev.Tags[d.arenaCopy(k)] = d.arenaCopy(v)
	if len(ev.Tags) > MaxTags {
		return reasonTagsCount
	}
	return ""
}

// mapEntry decodes a map<string,string> entry; a missing key or value is "".
func mapEntry(e []byte) (k, v []byte, err error) {
	for len(e) > 0 {
		num, typ, n := consumeTag(e)
		if n < 0 {
			return nil, nil, protoErr(n)
		}
		e = e[n:]
		switch {
		case num == pbMapKey && typ == protowire.BytesType:
			k, n = protowire.ConsumeBytes(e)
		case num == pbMapValue && typ == protowire.BytesType:
			v, n = protowire.ConsumeBytes(e)
		default:
			n = protowire.ConsumeFieldValue(num, typ, e)
		}
		if n < 0 {
			return nil, nil, protoErr(n)
		}
		e = e[n:]
	}
	return k, v, nil
}

// arenaCopy copies b into the arena and returns it as a string.
func (d *Decoder) arenaCopy(b []byte) string {
	start := len(d.arena)
	d.arena = append(d.arena, b...)
	return d.arenaString(start)
}
