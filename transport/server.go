package transport

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"

	"github.com/asynkron/protoactor-go/actor"
	"google.golang.org/protobuf/proto"

	"github.com/squallhq/squall/actors"
	"github.com/squallhq/squall/event"
	"github.com/squallhq/squall/messages"
)

// server is the serving actor. It only dispatches: each request is served
// by a goroutine of its own.
type server struct{ t *Transport }

// Receive implements actor.Actor.
func (s *server) Receive(c actor.Context) {
	switch m := c.Message().(type) {
	case *messages.ForwardRequest:
		s.t.dispatch(c.Sender(), m.From, m)
	case *messages.KeyStateRequest:
		s.t.dispatch(c.Sender(), m.From, m)
	case *messages.ListRequest:
		s.t.dispatch(c.Sender(), m.From, m)
	case *messages.HandoffRequest:
		s.t.dispatch(c.Sender(), m.From, m)
	case actor.SystemMessage, actor.AutoReceiveMessage:
	default:
		if sender := c.Sender(); sender != nil {
			s.t.respond(sender, "", &messages.Refused{Reason: messages.Refused_REASON_UNKNOWN, From: s.t.cfg.NodeID})
		}
	}
}

// dispatch starts a goroutine that serves req from peer `from`, or refuses
// req when the transport is closing or serves MaxInflight requests.
func (t *Transport) dispatch(sender *actor.PID, from string, req proto.Message) {
	if sender == nil {
		return // nobody to answer: not one of our requests
	}
	reason := messages.Refused_REASON_UNSPECIFIED
	t.mu.RLock()
	if t.closed {
		reason = messages.Refused_REASON_CLOSING
	} else {
		select {
		case t.sem <- struct{}{}:
			t.served.Add(1)
			go t.serve(sender, from, req)
		default:
			reason = messages.Refused_REASON_BUSY
		}
	}
	t.mu.RUnlock()
	if reason != messages.Refused_REASON_UNSPECIFIED {
		t.stats.peer(from).received(proto.Size(req), 0)
		t.respond(sender, from, &messages.Refused{Reason: reason, From: t.cfg.NodeID})
	}
}

// respond sends resp to the requester sender of peer `from`.
func (t *Transport) respond(sender *actor.PID, from string, resp proto.Message) {
	if from != "" {
		t.stats.peer(from).sent(proto.Size(resp), 0)
	}
	t.system.Root.Send(sender, resp)
}

// serve calls the Handler for req and answers it.
func (t *Transport) serve(sender *actor.PID, from string, req proto.Message) {
	defer func() {
		<-t.sem
		t.served.Done()
	}()
	ctx, cancel := context.WithTimeout(t.ctx, t.cfg.RequestTimeout)
	defer cancel()
	var (
		resp   proto.Message
		events int
	)
	func() {
		defer func() {
			if r := recover(); r != nil {
				t.cfg.Logger.Error("transport: handler panicked", "peer", from, "request", fmt.Sprintf("%T", req), "panic", fmt.Sprint(r))
				resp = failure(req, fmt.Errorf("handler panicked: %v", r))
			}
		}()
		switch r := req.(type) {
		case *messages.ForwardRequest:
			resp, events = t.serveForward(ctx, r)
		case *messages.KeyStateRequest:
			resp = t.serveKeyState(ctx, r)
		case *messages.ListRequest:
			resp = t.serveList(ctx, r)
		case *messages.HandoffRequest:
			resp = t.serveHandoff(ctx, r)
		}
	}()
	t.stats.peer(from).received(proto.Size(req), events)
	t.respond(sender, from, resp)
}

// failure is the response to req that reports err.
func failure(req proto.Message, err error) proto.Message {
	switch req.(type) {
	case *messages.ForwardRequest:
		return &messages.ForwardResponse{Error: err.Error()}
	case *messages.KeyStateRequest:
		return &messages.KeyStateResponse{Error: err.Error()}
	case *messages.ListRequest:
		return &messages.ListResponse{Error: err.Error()}
	default:
		return &messages.HandoffResponse{Error: err.Error()}
	}
}

// forwardBufs are the buffers of one ForwardRequest being served.
type forwardBufs struct {
	dec event.Decoder
	evs []event.Event
	rej []event.Rejection
	out []actors.Result
}

var forwardPool = sync.Pool{New: func() any { return new(forwardBufs) }}

// serveForward decodes a batch, applies it and returns one result per
// event. An event the decoder rejects (which its sender had validated) is
// actors.ResultFailed.
func (t *Transport) serveForward(ctx context.Context, r *messages.ForwardRequest) (*messages.ForwardResponse, int) {
	b := forwardPool.Get().(*forwardBufs)
	defer func() {
		clear(b.evs) // drop the batch's strings and tags
		if cap(b.evs) > 1<<16 {
			b.evs, b.out = nil, nil
		}
		b.evs, b.rej = b.evs[:0], b.rej[:0]
		forwardPool.Put(b)
	}()
	var err error
	b.evs, b.rej, err = b.dec.Decode(r.Batch, event.FormatProto, event.Options{}, b.evs[:0], b.rej[:0])
	if err != nil {
		return &messages.ForwardResponse{Error: fmt.Sprintf("decode batch: %v", err)}, 0
	}
	n := len(b.evs) + len(b.rej)
	if cap(b.out) < len(b.evs) {
		b.out = make([]actors.Result, len(b.evs))
	}
	out := b.out[:len(b.evs)]
	if len(b.evs) > 0 {
		if err := t.h.Forward(ctx, r.From, b.evs, out); err != nil {
			return &messages.ForwardResponse{Error: err.Error()}, n
		}
	}
	results := make([]byte, n)
	for i, j, k := 0, 0, 0; i < n; i++ {
		if k < len(b.rej) && b.rej[k].Index == i {
			results[i] = byte(actors.ResultFailed)
			k++
			continue
		}
		results[i] = byte(out[j])
		j++
	}
	return &messages.ForwardResponse{Results: results}, n
}

// serveKeyState answers a KeyStateRequest: the key's state document, or
// its kept events, series or replay when the request asks for them.
func (t *Transport) serveKeyState(ctx context.Context, r *messages.KeyStateRequest) *messages.KeyStateResponse {
	resp := &messages.KeyStateResponse{From: t.cfg.NodeID}
	var doc any
	var err error
	switch {
	case r.Events:
		doc, err = t.h.KeyEvents(ctx, r.Key)
	case r.Series:
		doc, err = t.h.KeySeries(ctx, r.Key)
	case r.Replay:
		doc, err = t.h.KeyReplay(ctx, r.Key)
	default:
		doc, err = t.h.KeyState(ctx, r.Key)
	}
	if errors.Is(err, actors.ErrNotFound) {
		return resp
	}
	if err == nil {
		resp.Json, err = json.Marshal(doc)
	}
	if err == nil && len(resp.Json) > t.maxMsg-len(t.cfg.NodeID)-16 {
		err = fmt.Errorf("key state document of %d bytes: %w", len(resp.Json), ErrTooLarge)
	}
	if err != nil {
		resp.Json, resp.Error = nil, err.Error()
		return resp
	}
	resp.Found = true
	return resp
}

// serveList answers a ListRequest. A list that does not fit in a message
// loses keys from its end and is marked truncated.
func (t *Transport) serveList(ctx context.Context, r *messages.ListRequest) *messages.ListResponse {
	resp := &messages.ListResponse{From: t.cfg.NodeID}
	kl, err := t.h.List(ctx, r.Prefix, r.After, int(r.Limit))
	if err == nil {
		resp.Json, err = json.Marshal(kl)
	}
	limit := t.maxMsg - len(t.cfg.NodeID) - 16
	for err == nil && len(resp.Json) > limit && len(kl.Keys) > 0 {
		keep := int(float64(len(kl.Keys)) * float64(limit) / float64(len(resp.Json)) * 0.9)
		kl.Keys, kl.Truncated = kl.Keys[:min(keep, len(kl.Keys)-1)], true
		resp.Json, err = json.Marshal(kl)
	}
	if err != nil {
		resp.Json, resp.Error = nil, err.Error()
	}
	return resp
}

// serveHandoff hands a chunk of a partition's state to the Handler.
func (t *Transport) serveHandoff(ctx context.Context, r *messages.HandoffRequest) *messages.HandoffResponse {
	keys := make([]actors.KeySnapshot, len(r.Keys))
	for i, k := range r.Keys {
		keys[i] = actors.KeySnapshot{
			Key:       k.GetKey(),
			Window:    k.GetWindow(),
			Activated: fromMS(k.GetActivatedMs()),
			LastEvent: fromMS(k.GetLastEventMs()),
			Offsets:   k.GetOffsets(),
			Handler:   k.GetHandler(),
		}
	}
	c := &HandoffChunk{From: r.From, Partition: r.Partition, Generation: r.Generation, Index: int(r.Chunk),
		Last: r.Last, Keys: keys}
	if cv := r.GetCover(); cv != nil {
		c.Cover = &Cover{Offset: cv.Offset, Version: cv.Version}
	}
	if err := t.h.Handoff(ctx, c); err != nil {
		return &messages.HandoffResponse{Error: err.Error()}
	}
	return &messages.HandoffResponse{}
}
