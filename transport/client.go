package transport

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"sync"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/squallhq/squall/actors"
	"github.com/squallhq/squall/api"
	"github.com/squallhq/squall/event"
	"github.com/squallhq/squall/messages"
)

// Request kinds, as in the squall_transport_requests_total metric.
const (
	kindForward  = "forward"
	kindKeyState = "key_state"
	kindList     = "list"
	kindHandoff  = "handoff"
)

// maxPooledBuf is the largest Forward buffer kept for reuse.
const maxPooledBuf = 4 << 20

// Forward sends evs to peer peerID at peerAddr, which applies them, and
// fills out[i] with what became of evs[i] (actors.ResultMoved when the peer
// does not own the event's partition). A batch larger than one message is
// split into chunks, sent one after the other so that the events of a key
// are applied in order; each waits for its answer within
// Config.RequestTimeout.
//
// On error, the events of the chunks that were answered have their results
// and the others are actors.ResultFailed. The failed chunk's events were
// not applied (ErrBusy, ErrPeerClosing, ErrUnreachable, ErrClosed before
// sending), may or may not have been (ErrTimeout, a canceled ctx, ErrClosed
// while waiting), or are as the peer's Handler left them (ErrRemote); those
// of later chunks were not sent. The error names the peer.
//
// Forward is safe for concurrent use; it does not keep evs.
func (t *Transport) Forward(ctx context.Context, peerID, peerAddr string, evs []event.Event, out []actors.Result) error {
	if len(out) != len(evs) {
		return fmt.Errorf("transport: forward: %d results for %d events", len(out), len(evs))
	}
	if len(evs) == 0 {
		return nil
	}
	t.learn(peerAddr, peerID)
	bp := t.bufs.Get().(*[]byte)
	buf, spans, err := t.encode((*bp)[:0], evs)
	if err != nil {
		t.putBuf(bp, buf)
		return fmt.Errorf("%s to peer %s at %s: %w", kindForward, peerID, peerAddr, err)
	}
	reuse := true
	for _, s := range spans {
		if err == nil {
			var answered bool
			answered, err = t.forwardChunk(ctx, peerID, peerAddr, buf[s.off:s.lim], out[s.start:s.end])
			reuse = reuse && answered
			if err != nil {
				err = fmt.Errorf("%s of %d events to peer %s at %s: %w", kindForward, s.end-s.start, peerID, peerAddr, err)
			}
		}
		if err != nil {
			for j := s.start; j < s.end; j++ {
				out[j] = actors.ResultFailed
			}
		}
	}
	if reuse {
		t.putBuf(bp, buf) // else a request may not have been serialised yet
	}
	return err
}

// forwardChunk sends one ForwardRequest and copies its results to out.
// answered reports whether the peer answered (so the batch bytes were
// serialised and may be reused).
func (t *Transport) forwardChunk(ctx context.Context, peerID, peerAddr string, batch []byte, out []actors.Result) (answered bool, err error) {
	req := &messages.ForwardRequest{From: t.cfg.NodeID, Batch: batch}
	n := proto.Size(req)
	m, err := t.call(ctx, peerAddr, req)
	if !errors.Is(err, ErrClosed) {
		t.stats.peer(peerID).sent(n, len(out))
	}
	if err == nil {
		answered = true
		err = t.forwardAnswer(peerID, m, out)
	}
	t.stats.request(peerID, kindForward, err)
	return answered, err
}

// span is one chunk of a Forward: events [start, end) encoded in
// buf[off:lim].
type span struct {
	start, end int
	off, lim   int
}

// encode appends evs in wire form to buf, cut into spans that each fit in
// one message.
func (t *Transport) encode(buf []byte, evs []event.Event) ([]byte, []span, error) {
	limit := t.maxMsg - len(t.cfg.NodeID) - 16 // ForwardRequest's own fields
	spans := make([]span, 0, 1)
	start, off := 0, 0
	for i := range evs {
		mark := len(buf)
		buf = event.AppendProto(buf, evs[i:i+1])
		if len(buf)-mark > limit {
			return buf, nil, fmt.Errorf("event %d (key %q) of %d bytes: %w", i, evs[i].Key, len(buf)-mark, ErrTooLarge)
		}
		if len(buf)-off > limit {
			spans = append(spans, span{start: start, end: i, off: off, lim: mark})
			start, off = i, mark
		}
	}
	spans = append(spans, span{start: start, end: len(evs), off: off, lim: len(buf)})
	return buf, spans, nil
}

func (t *Transport) putBuf(bp *[]byte, buf []byte) {
	if cap(buf) > maxPooledBuf {
		return
	}
	*bp = buf[:0]
	t.bufs.Put(bp)
}

// forwardAnswer checks a Forward chunk's answer and copies its results.
func (t *Transport) forwardAnswer(peerID string, m any, out []actors.Result) error {
	resp, err := answer[*messages.ForwardResponse](t, peerID, m)
	if err != nil {
		return err
	}
	if resp.Error != "" {
		return fmt.Errorf("%w: %s", ErrRemote, resp.Error)
	}
	if len(resp.Results) != len(out) {
		return fmt.Errorf("%w: %d results for %d events", ErrProtocol, len(resp.Results), len(out))
	}
	for i, r := range resp.Results {
		out[i] = actors.Result(r)
		if r >= actors.NumResults {
			out[i] = actors.ResultFailed
		}
	}
	return nil
}

// KeyState returns the state document of key from the peer at peerAddr, or
// an error wrapping actors.ErrNotFound when the key has no live actor
// there. It is safe for concurrent use.
func (t *Transport) KeyState(ctx context.Context, peerAddr, key string) (*api.KeyState, error) {
	return keyDoc[api.KeyState](ctx, t, peerAddr, &messages.KeyStateRequest{Key: key, From: t.cfg.NodeID})
}

// KeyEvents returns the events key's actor keeps (api.KeyEvents) from the
// peer at peerAddr, or an error wrapping actors.ErrNotFound when the key has
// no live actor there. It is safe for concurrent use.
func (t *Transport) KeyEvents(ctx context.Context, peerAddr, key string) (*api.KeyEvents, error) {
	return keyDoc[api.KeyEvents](ctx, t, peerAddr, &messages.KeyStateRequest{Key: key, From: t.cfg.NodeID, Events: true})
}

// KeySeries returns the per-bucket series of key's window (api.KeySeries)
// from the peer at peerAddr, or an error wrapping actors.ErrNotFound when
// the key has no live actor there. It is safe for concurrent use.
func (t *Transport) KeySeries(ctx context.Context, peerAddr, key string) (*api.KeySeries, error) {
	return keyDoc[api.KeySeries](ctx, t, peerAddr, &messages.KeyStateRequest{Key: key, From: t.cfg.NodeID, Series: true})
}

// KeyReplay asks the peer at peerAddr, the key's owner, to replay key's
// kept events (api.KeyReplay), or returns an error wrapping
// actors.ErrNotFound when the key has no live actor there. It is safe for
// concurrent use.
func (t *Transport) KeyReplay(ctx context.Context, peerAddr, key string) (*api.KeyReplay, error) {
	return keyDoc[api.KeyReplay](ctx, t, peerAddr, &messages.KeyStateRequest{Key: key, From: t.cfg.NodeID, Replay: true})
}

// keyDoc asks the peer at peerAddr for a key's JSON document (req says
// which) and decodes it into a D.
func keyDoc[D any](ctx context.Context, t *Transport, peerAddr string, req *messages.KeyStateRequest) (*D, error) {
	key := req.Key
	m, err := t.call(ctx, peerAddr, req)
	resp, peer, err := reply[*messages.KeyStateResponse](t, peerAddr, req, m, err)
	if err == nil && resp.Error != "" {
		err = fmt.Errorf("%w: %s", ErrRemote, resp.Error)
	}
	var doc *D
	if err == nil && resp.Found {
		doc = new(D)
		if e := json.Unmarshal(resp.Json, doc); e != nil {
			err = fmt.Errorf("%w: key document: %v", ErrProtocol, e)
		}
	}
	t.stats.request(peer, kindKeyState, err)
	if err != nil {
		return nil, fmt.Errorf("%s of %q from peer %s at %s: %w", kindKeyState, key, peer, peerAddr, err)
	}
	if !resp.Found {
		return nil, fmt.Errorf("key %q on peer %s at %s: %w", key, peer, peerAddr, actors.ErrNotFound)
	}
	return doc, nil
}

// List returns the live keys of the peer at peerAddr that start with
// prefix, after the key after ("" from the first), at most limit of them
// (fewer, with Truncated set, when they do not fit in one message). It is
// safe for concurrent use.
func (t *Transport) List(ctx context.Context, peerAddr, prefix, after string, limit int) (*api.KeyList, error) {
	req := &messages.ListRequest{Prefix: prefix, After: after, Limit: int32(min(max(limit, 0), math.MaxInt32)), From: t.cfg.NodeID}
	m, err := t.call(ctx, peerAddr, req)
	resp, peer, err := reply[*messages.ListResponse](t, peerAddr, req, m, err)
	if err == nil && resp.Error != "" {
		err = fmt.Errorf("%w: %s", ErrRemote, resp.Error)
	}
	var kl *api.KeyList
	if err == nil {
		kl = new(api.KeyList)
		if e := json.Unmarshal(resp.Json, kl); e != nil {
			err = fmt.Errorf("%w: key list document: %v", ErrProtocol, e)
		}
	}
	t.stats.request(peer, kindList, err)
	if err != nil {
		return nil, fmt.Errorf("%s from peer %s at %s: %w", kindList, peer, peerAddr, err)
	}
	return kl, nil
}

// Handoff sends a partition's key state to its new owner, peer peerID at
// peerAddr: in chunks of about 1 MiB, one at a time and in order, the last
// with last=true (a single one for zero keys). Each chunk waits for its
// answer within Config.RequestTimeout. On error the new owner has taken the
// chunks before the failed one and possibly that one (which may be the
// last). cover, when not nil, goes with every chunk. It is safe for
// concurrent use.
func (t *Transport) Handoff(ctx context.Context, peerID, peerAddr string, partition int32, generation int64, cover *Cover, keys []actors.KeySnapshot) error {
	t.learn(peerAddr, peerID)
	var cv *messages.Cover
	if cover != nil {
		cv = &messages.Cover{Offset: cover.Offset, Version: cover.Version}
	}
	newReq := func(chunk int) *messages.HandoffRequest {
		return &messages.HandoffRequest{From: t.cfg.NodeID, Partition: partition, Generation: generation,
			Chunk: int32(chunk), Cover: cv}
	}
	base := proto.Size(&messages.HandoffRequest{From: t.cfg.NodeID, Partition: partition, Generation: generation,
		Chunk: 1 << 30, Cover: cv, Last: true})
	req, size, chunk := newReq(0), base, 0
	for i := range keys {
		k := &keys[i]
		m := &messages.KeySnapshot{Key: k.Key, Window: k.Window, ActivatedMs: toMS(k.Activated), LastEventMs: toMS(k.LastEvent), Offsets: k.Offsets, Handler: k.Handler}
		n := proto.Size(m)
		n += 1 + protowire.SizeVarint(uint64(n))
		if base+n > t.maxMsg {
			return fmt.Errorf("%s of partition %d to peer %s at %s: key %q of %d bytes: %w", kindHandoff, partition, peerID, peerAddr, k.Key, n, ErrTooLarge)
		}
		if len(req.Keys) > 0 && size+n > t.chunk {
			if err := t.handoffChunk(ctx, peerID, peerAddr, req); err != nil {
				return fmt.Errorf("%s of partition %d to peer %s at %s, chunk %d (keys before %d of %d): %w", kindHandoff, partition, peerID, peerAddr, chunk, i, len(keys), err)
			}
			chunk++
			req, size = newReq(chunk), base
		}
		req.Keys = append(req.Keys, m)
		size += n
	}
	req.Last = true
	if err := t.handoffChunk(ctx, peerID, peerAddr, req); err != nil {
		return fmt.Errorf("%s of partition %d to peer %s at %s, last chunk %d: %w", kindHandoff, partition, peerID, peerAddr, chunk, err)
	}
	return nil
}

// handoffChunk sends one chunk and waits for its answer.
func (t *Transport) handoffChunk(ctx context.Context, peerID, peerAddr string, req *messages.HandoffRequest) error {
	n := proto.Size(req)
	m, err := t.call(ctx, peerAddr, req)
	t.stats.peer(peerID).sent(n, 0)
	var resp *messages.HandoffResponse
	if err == nil {
		resp, err = answer[*messages.HandoffResponse](t, peerID, m)
	}
	if err == nil && resp.Error != "" {
		err = fmt.Errorf("%w: %s", ErrRemote, resp.Error)
	}
	t.stats.request(peerID, kindHandoff, err)
	return err
}

// reply checks the answer m (or err) to req sent to peerAddr: it counts the
// traffic against the answering peer (or the one known at peerAddr) and
// returns the response and that peer's name.
func reply[T proto.Message](t *Transport, peerAddr string, req proto.Message, m any, err error) (T, string, error) {
	var resp T
	peer := t.peerName(peerAddr)
	if err == nil {
		if r, ok := m.(interface{ GetFrom() string }); ok && r.GetFrom() != "" {
			peer = r.GetFrom()
			t.learn(peerAddr, peer)
		}
		resp, err = answer[T](t, peer, m)
	}
	t.stats.peer(peer).sent(proto.Size(req), 0)
	return resp, peer, err
}

// answer interprets an answer: the expected response, a refusal or a dead
// letter. It counts the answer's bytes as received from peer.
func answer[T proto.Message](t *Transport, peer string, m any) (T, error) {
	var zero T
	switch r := m.(type) {
	case T:
		t.stats.peer(peer).received(proto.Size(r), 0)
		return r, nil
	case *messages.Refused:
		t.stats.peer(peer).received(proto.Size(r), 0)
		switch r.Reason {
		case messages.Refused_REASON_BUSY:
			return zero, ErrBusy
		case messages.Refused_REASON_CLOSING:
			return zero, ErrPeerClosing
		}
		return zero, fmt.Errorf("%w: refused (%s)", ErrProtocol, r.Reason)
	case *actor.DeadLetterResponse:
		return zero, ErrUnreachable
	}
	return zero, fmt.Errorf("%w: %T", ErrProtocol, m)
}

// call sends req to the peer at addr and waits for its answer.
func (t *Transport) call(ctx context.Context, addr string, req proto.Message) (any, error) {
	ctx, cancel := context.WithTimeoutCause(ctx, t.cfg.RequestTimeout, ErrTimeout)
	defer cancel()
	id, p, err := t.send(addr, req)
	if err != nil {
		return nil, err
	}
	return t.await(ctx, id, p)
}

// send sends req to the serving actor at addr with a reply PID that routes
// the answer to p.
func (t *Transport) send(addr string, req proto.Message) (uint32, *pending, error) {
	p := &pending{ch: make(chan any, 1)}
	id := t.replies.add(p)
	t.mu.RLock()
	defer t.mu.RUnlock()
	if t.closed {
		t.replies.remove(id)
		return 0, nil, ErrClosed
	}
	t.system.Root.RequestWithCustomSender(t.peerPID(addr), req, &actor.PID{Address: t.addr, Id: replyName, RequestId: id})
	return id, p, nil
}

// await waits for the answer to request id.
func (t *Transport) await(ctx context.Context, id uint32, p *pending) (any, error) {
	select {
	case m := <-p.ch:
		return m, nil
	case <-ctx.Done():
		t.replies.remove(id)
		if err := context.Cause(ctx); errors.Is(err, ErrTimeout) {
			return nil, fmt.Errorf("%w (%s)", ErrTimeout, t.cfg.RequestTimeout)
		}
		return nil, fmt.Errorf("transport: %w", ctx.Err())
	case <-t.done:
		t.replies.remove(id)
		return nil, ErrClosed
	}
}

// peerPID returns the serving actor's PID at addr, cached so that
// protoactor resolves its process once.
func (t *Transport) peerPID(addr string) *actor.PID {
	if pid, ok := t.peerPIDs.Load(addr); ok {
		return pid.(*actor.PID)
	}
	pid, _ := t.peerPIDs.LoadOrStore(addr, actor.NewPID(addr, ServiceName))
	return pid.(*actor.PID)
}

// learn records that peer id serves at addr, for the requests (KeyState,
// List) that name only the address.
func (t *Transport) learn(addr, id string) {
	if old, ok := t.peerIDs.Load(addr); !ok || old.(string) != id {
		t.peerIDs.Store(addr, id)
	}
}

// peerName returns the id of the peer known at addr, or addr.
func (t *Transport) peerName(addr string) string {
	if id, ok := t.peerIDs.Load(addr); ok {
		return id.(string)
	}
	return addr
}

// pending is a request waiting for its answer.
type pending struct {
	ch chan any // of capacity 1; receives the one answer
}

// replies is the process that takes the answers to this node's requests.
// Each request's reply PID carries a request id; the answer comes back to
// this process with the same id, and goes to the request's pending. An
// answer to a request no longer waited for is dropped.
type replies struct {
	mu   sync.Mutex
	next uint32
	m    map[uint32]*pending
}

var _ actor.Process = (*replies)(nil)

func (r *replies) add(p *pending) uint32 {
	r.mu.Lock()
	defer r.mu.Unlock()
	for {
		r.next++
		if _, taken := r.m[r.next]; r.next != 0 && !taken {
			break
		}
	}
	r.m[r.next] = p
	return r.next
}

func (r *replies) remove(id uint32) {
	r.mu.Lock()
	delete(r.m, id)
	r.mu.Unlock()
}

// SendUserMessage implements actor.Process: an answer arrives.
func (r *replies) SendUserMessage(pid *actor.PID, message any) {
	r.mu.Lock()
	p, ok := r.m[pid.RequestId]
	delete(r.m, pid.RequestId)
	r.mu.Unlock()
	if ok {
		p.ch <- actor.UnwrapEnvelopeMessage(message)
	}
}

// SendSystemMessage implements actor.Process; system messages are ignored.
func (r *replies) SendSystemMessage(*actor.PID, any) {}

// Stop implements actor.Process; the process lives as long as the
// Transport.
func (r *replies) Stop(*actor.PID) {}

// toMS converts a time to epoch milliseconds, the zero time to 0.
func toMS(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMilli()
}

// fromMS converts epoch milliseconds to a time, 0 to the zero time.
func fromMS(ms int64) time.Time {
	if ms == 0 {
		return time.Time{}
	}
	return time.UnixMilli(ms)
}
