package transport

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/squallhq/squall/api"
)

// Directions, as in the metrics' direction label.
const (
	dirSent     = "sent"
	dirReceived = "received"
)

// stats counts traffic per peer, and exports it as metrics when a
// Registerer is set.
type stats struct {
	reg      prometheus.Registerer
	events   *prometheus.CounterVec // nil without a Registerer
	bytes    *prometheus.CounterVec
	requests *prometheus.CounterVec

	mu    sync.RWMutex
	peers map[string]*peerStats
}

// peerStats is the traffic with one peer.
type peerStats struct {
	bytesSent, bytesReceived, eventsSent, eventsReceived atomic.Uint64

	// The metrics' children, nil without a Registerer.
	mBytesSent, mBytesReceived, mEventsSent, mEventsReceived prometheus.Counter
}

func newStats(reg prometheus.Registerer) (*stats, error) {
	s := &stats{peers: make(map[string]*peerStats)}
	if reg == nil {
		return s, nil
	}
	s.reg = reg
	s.events = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "squall_routed_events_total",
		Help: "Events forwarded between this node and a peer, by peer and direction (sent, received).",
	}, []string{"peer", "direction"})
	s.bytes = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "squall_routed_bytes_total",
		Help: "Bytes of requests and responses (protobuf sizes) exchanged with a peer, by peer and direction (sent, received).",
	}, []string{"peer", "direction"})
	s.requests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "squall_transport_requests_total",
		Help: "Requests this node made of a peer, by peer, kind (forward, key_state, list, handoff) and result (ok, error, busy, closing, timeout, unreachable, canceled, closed).",
	}, []string{"peer", "kind", "result"})
	for i, c := range []prometheus.Collector{s.events, s.bytes, s.requests} {
		if err := reg.Register(c); err != nil {
			for _, r := range []prometheus.Collector{s.events, s.bytes, s.requests}[:i] {
				reg.Unregister(r)
			}
			return nil, fmt.Errorf("transport: register metrics: %w", err)
		}
	}
	return s, nil
}

// unregister removes the metrics from the Registerer.
func (s *stats) unregister() {
	if s.reg == nil {
		return
	}
	s.reg.Unregister(s.events)
	s.reg.Unregister(s.bytes)
	s.reg.Unregister(s.requests)
}

// peer returns the counters of peer id, made on first use.
func (s *stats) peer(id string) *peerStats {
	s.mu.RLock()
	p := s.peers[id]
	s.mu.RUnlock()
	if p != nil {
		return p
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if p = s.peers[id]; p != nil {
		return p
	}
	p = &peerStats{}
	if s.events != nil {
		p.mBytesSent = s.bytes.WithLabelValues(id, dirSent)
		p.mBytesReceived = s.bytes.WithLabelValues(id, dirReceived)
		p.mEventsSent = s.events.WithLabelValues(id, dirSent)
		p.mEventsReceived = s.events.WithLabelValues(id, dirReceived)
	}
	s.peers[id] = p
	return p
}

// sent counts a message of n bytes carrying events events sent to the peer.
func (p *peerStats) sent(n, events int) {
	p.bytesSent.Add(uint64(n))
	p.eventsSent.Add(uint64(events))
	if p.mBytesSent != nil {
		p.mBytesSent.Add(float64(n))
		if events > 0 {
			p.mEventsSent.Add(float64(events))
		}
	}
}

// received counts a message of n bytes carrying events events received from
// the peer.
func (p *peerStats) received(n, events int) {
	p.bytesReceived.Add(uint64(n))
	p.eventsReceived.Add(uint64(events))
	if p.mBytesReceived != nil {
		p.mBytesReceived.Add(float64(n))
		if events > 0 {
			p.mEventsReceived.Add(float64(events))
		}
	}
}

// request counts a request of a kind made of peer, by its outcome.
func (s *stats) request(peer, kind string, err error) {
	if s.requests != nil {
		s.requests.WithLabelValues(peer, kind, resultOf(err)).Inc()
	}
}

// resultOf is the result label of a request's error.
func resultOf(err error) string {
	switch {
	case err == nil:
		return "ok"
	case errors.Is(err, ErrBusy):
		return "busy"
	case errors.Is(err, ErrPeerClosing):
		return "closing"
	case errors.Is(err, ErrTimeout):
		return "timeout"
	case errors.Is(err, ErrUnreachable):
		return "unreachable"
	case errors.Is(err, ErrClosed):
		return "closed"
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return "canceled"
	}
	return "error"
}

// snapshot returns the traffic per peer.
func (s *stats) snapshot() map[string]api.PeerStats {
	s.mu.RLock()
	defer s.mu.RUnlock()
	m := make(map[string]api.PeerStats, len(s.peers))
	for id, p := range s.peers {
		m[id] = api.PeerStats{
			BytesSent:      p.bytesSent.Load(),
			BytesReceived:  p.bytesReceived.Load(),
			EventsSent:     p.eventsSent.Load(),
			EventsReceived: p.eventsReceived.Load(),
		}
	}
	return m
}
