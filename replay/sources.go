package replay

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/squallhq/squall/api"
	"github.com/squallhq/squall/event"
)

// ErrIncomplete is returned by KeptEvents when the node no longer keeps
// every event the key received: a replay of them would not rebuild its
// state.
var ErrIncomplete = errors.New("replay: the node keeps only the key's last events")

// sliceSource yields records from a slice.
type sliceSource struct {
	recs []Record
	i    int
}

func (s *sliceSource) Next(ctx context.Context) (Record, error) {
	if err := ctx.Err(); err != nil {
		return Record{}, err
	}
	if s.i == len(s.recs) {
		return Record{}, io.EOF
	}
	s.i++
	return s.recs[s.i-1], nil
}

func (s *sliceSource) Close() error { return nil }

// Records returns a Source of recs, in order.
func Records(recs ...Record) Source { return &sliceSource{recs: recs} }

// KeptEvents returns a Source of the events a key's actor keeps, the
// document of GET /debug/actors/{key}/events (client.Events), in the order
// the key received them. It returns ErrIncomplete when the document is not
// Complete (the key received more than --recent-events events): the log,
// not the node, has the others.
func KeptEvents(ke *api.KeyEvents) (Source, error) {
	if !ke.Complete {
		return nil, fmt.Errorf("%w: %d of %d events kept (--recent-events %d)", ErrIncomplete, len(ke.Events), ke.Received, ke.Kept)
	}
	recs := make([]Record, len(ke.Events))
	for i, e := range ke.Events {
		recs[i] = Record{Event: e.Event, Offset: -1}
		recs[i].Key = ke.Key
	}
	return Records(recs...), nil
}

// fileSource reads NDJSON events.
type fileSource struct {
	sc   *bufio.Scanner
	dec  event.Decoder
	line int
	evs  []event.Event
	rej  []event.Rejection
}

// NewFileSource returns a Source of the events in r, one JSON event per
// line (NDJSON, as POST /v1/events takes it; blank lines skipped), decoded
// and validated by the node's decoder. An event without ts is an error: a
// replay has no arrival time to give it. A line the node would reject is an
// error naming the line. Lines may be up to 1 MiB.
func NewFileSource(r io.Reader) Source {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	return &fileSource{sc: sc}
}

func (f *fileSource) Next(ctx context.Context) (Record, error) {
	for {
		if err := ctx.Err(); err != nil {
			return Record{}, err
		}
		if !f.sc.Scan() {
			if err := f.sc.Err(); err != nil {
				return Record{}, fmt.Errorf("replay: line %d: %w", f.line+1, err)
			}
			return Record{}, io.EOF
		}
		f.line++
		b := f.sc.Bytes()
		if len(bytes.TrimSpace(b)) == 0 {
			continue
		}
		var err error
		// An event without ts gets Now, 0, and is refused below (the node
		// refuses a ts of 0 too: it is before 1973).
		f.evs, f.rej, err = f.dec.Decode(b, event.FormatNDJSON, event.Options{}, f.evs[:0], f.rej[:0])
		switch {
		case err != nil:
			return Record{}, fmt.Errorf("replay: line %d: %w", f.line, err)
		case len(f.rej) > 0:
			return Record{}, fmt.Errorf("replay: line %d: %s: %s", f.line, f.rej[0].Field, f.rej[0].Reason)
		case len(f.evs) != 1:
			return Record{}, fmt.Errorf("replay: line %d: %d events, want one", f.line, len(f.evs))
		case f.evs[0].TS == 0:
			return Record{}, fmt.Errorf("replay: line %d: no ts", f.line)
		}
		return Record{Event: cloneEvent(f.evs[0]), Offset: -1}, nil
	}
}

func (f *fileSource) Close() error { return nil }

// cloneEvent copies ev's strings out of the decoder's buffer.
func cloneEvent(ev event.Event) event.Event {
	out := event.Event{Key: strings.Clone(ev.Key), TS: ev.TS, Value: ev.Value, ID: strings.Clone(ev.ID)}
	if ev.Tags != nil {
		out.Tags = make(map[string]string, len(ev.Tags))
		for k, v := range ev.Tags {
			out.Tags[strings.Clone(k)] = strings.Clone(v)
		}
	}
	return out
}
