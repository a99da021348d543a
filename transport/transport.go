// Package transport is Squall's node-to-node transport over protoactor-go
// remote (gRPC, protobuf messages of package messages).
//
// Each node runs one actor system with remote listening on --remote-addr
// and one well-known actor, named ServiceName, that serves its peers'
// requests: events forwarded to the owner of their partition, a key's
// state, the list of live keys, and partition handoffs. The serving actor
// never blocks: it hands each request to a goroutine of its own (at most
// Config.MaxInflight at once, beyond which the request is refused with
// ErrBusy), which calls the Handler and sends the response back to the
// requester.
//
// A request carries the requester's reply PID with a request id; all the
// answers to a Transport go to one registered process that matches them to
// their waiting callers by that id. A caller waits at most
// Config.RequestTimeout (and its context); an answer arriving after that is
// dropped.
//
// Forwarded events travel as packed protobuf (event.AppendProto), batched;
// protoactor adds a small envelope per message and packs up to 16 messages
// into one gRPC message. Large batches and handoffs are split into chunks
// that fit the gRPC message limit (Config.MaxMessageBytes).
//
// Lock order: Transport.mu, then replies.mu; the stats' mutex and termMu
// are taken alone. None is held while calling the Handler or waiting for a
// peer.
//
// What protoactor remote imposes:
//   - Peers must dial the exact address a node advertises (it tells local
//     from remote PIDs by string comparison).
//   - A message type the receiver does not know crashes the receiver
//     (protoactor dereferences the missing type): add request types to
//     remote.proto only once every node can read them.
//   - Its shutdown had two crashes (a nil map when a peer's stream ended
//     during Shutdown, a send on a closed channel) and a data race on
//     gRPC's global logger between two remotes in a process: the module is
//     replaced by third_party/protoactor-go, patched (see its PATCHES.md).
//   - A failed connection attempt makes the endpoint wait 2s before its
//     queued requests fail with ErrUnreachable; Close waits for it.
package transport

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/asynkron/protoactor-go/eventstream"
	"github.com/asynkron/protoactor-go/remote"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"

	"github.com/squallhq/squall/actors"
	"github.com/squallhq/squall/api"
	"github.com/squallhq/squall/event"
)

// ServiceName is the name of the actor that serves peers' requests on every
// node.
const ServiceName = "squall-transport"

// replyName is the name of the process that takes the answers to this
// node's requests.
const replyName = "squall-transport-reply"

// Errors returned by a Transport. Errors about a peer name it and wrap one
// of these (or the context's error).
var (
	// ErrClosed is returned by calls on a Transport that is closed or
	// closing.
	ErrClosed = errors.New("transport: closed")
	// ErrTimeout means the peer did not answer within
	// Config.RequestTimeout. The request may or may not have been applied.
	ErrTimeout = errors.New("transport: peer did not answer in time")
	// ErrUnreachable means the request could not be delivered: the peer's
	// address could not be connected to (or refused the TLS handshake).
	ErrUnreachable = errors.New("transport: peer unreachable")
	// ErrBusy means the peer serves its maximum of concurrent requests
	// (Config.MaxInflight) and refused this one without applying it; it may
	// be retried.
	ErrBusy = errors.New("transport: peer busy")
	// ErrPeerClosing means the peer is shutting down and refused the
	// request without applying it.
	ErrPeerClosing = errors.New("transport: peer closing")
	// ErrRemote wraps the error a peer's Handler returned (its message
	// only: the error's type does not cross the wire).
	ErrRemote = errors.New("transport: peer failed")
	// ErrTooLarge means one event, key snapshot or response does not fit
	// in a message (see Config.MaxMessageBytes).
	ErrTooLarge = errors.New("transport: too large for one message")
	// ErrProtocol means a peer answered with something unexpected.
	ErrProtocol = errors.New("transport: unexpected answer")
)

// Handler serves peers' requests on this node. Implementations are safe for
// concurrent use.
type Handler interface {
	// Forward applies events forwarded by peer `from`; out[i] is what
	// became of evs[i] (actors.ResultMoved when this node does not own the
	// partition). The events' strings alias a buffer of the request: clone
	// those kept beyond the call.
	Forward(ctx context.Context, from string, evs []event.Event, out []actors.Result) error
	// KeyState returns a key's state document, or an error wrapping
	// actors.ErrNotFound when the key has no live actor here.
	KeyState(ctx context.Context, key string) (*api.KeyState, error)
	// KeyEvents returns the events a key's actor keeps, or an error
	// wrapping actors.ErrNotFound when the key has no live actor here.
	KeyEvents(ctx context.Context, key string) (*api.KeyEvents, error)
	// KeySeries returns the per-bucket series of a key's window, or an
	// error wrapping actors.ErrNotFound when the key has no live actor here.
	KeySeries(ctx context.Context, key string) (*api.KeySeries, error)
	// KeyReplay replays a key's kept events and compares the result with
	// the live key, or returns an error wrapping actors.ErrNotFound when
	// the key has no live actor here.
	KeyReplay(ctx context.Context, key string) (*api.KeyReplay, error)
	// List lists this node's live keys that start with prefix, after the
	// key after ("" from the first), at most limit of them.
	List(ctx context.Context, prefix, after string, limit int) (*api.KeyList, error)
	// Handoff receives one chunk of a partition's key state from its
	// previous owner. Chunks of one handoff arrive one at a time, in order;
	// a chunk numbered 0 starts a handoff afresh.
	Handoff(ctx context.Context, c *HandoffChunk) error
}

// Cover is the log position a handed-over partition state is exact at:
// every record below Offset is in it, none at or above. Version is the
// ZooKeeper version of the partition's progress record that the sender's
// final commit wrote; the receiver takes the state only if the record it
// claims is still that one.
type Cover struct {
	Offset  int64
	Version int32
}

// HandoffChunk is one chunk of a partition's state handed over.
type HandoffChunk struct {
	// From is the sending node's id.
	From string
	// Partition is the partition handed over.
	Partition int32
	// Generation is the generation of the assignment the sender acts on.
	Generation int64
	// Index numbers the chunks of one handoff from 0.
	Index int
	// Last marks the final chunk.
	Last bool
	// Cover is what the state covers in the log; nil when the sender cannot
	// vouch for it.
	Cover *Cover
	// Keys are this chunk's keys.
	Keys []actors.KeySnapshot
}

// Sizes that bound messages; see Config.MaxMessageBytes.
const (
	// writerBatch is protoactor's EndpointWriterBatchSize: messages packed
	// into one gRPC message.
	writerBatch = 16
	// batchSlack is kept for the gRPC message's own fields (type names,
	// PIDs, envelopes).
	batchSlack = 64 << 10
	// handoffChunk is the target size of one handoff chunk.
	handoffChunk = 1 << 20
	// deadLetterInterval is protoactor's dead-letter log throttle period.
	deadLetterInterval = 10 * time.Millisecond
)

// Transport connects this node to its peers. It is safe for concurrent use.
type Transport struct {
	cfg     Config
	h       Handler
	system  *actor.ActorSystem
	remote  *remote.Remote
	addr    string     // this node's advertised address
	pid     *actor.PID // the serving actor
	replies *replies
	stats   *stats
	maxMsg  int // the largest payload of one request or response
	chunk   int // the target size of a handoff chunk

	peerPIDs sync.Map // peer address → *actor.PID of its serving actor
	peerIDs  sync.Map // peer address → peer id, as last seen
	bufs     sync.Pool

	mu     sync.RWMutex // guards closed against sends and request dispatch
	closed bool
	done   chan struct{} // closed by Close: callers stop waiting
	ctx    context.Context
	cancel context.CancelFunc // cancels the Handler calls in flight
	sem    chan struct{}      // slots of requests served at once
	served sync.WaitGroup     // the goroutines serving requests
	once   sync.Once

	// termMu orders protoactor's handling of a lost peer connection
	// (endpointManager.removeEndpoint, run by the event stream in the
	// connection's goroutine just before termSub's handler) before
	// Close's remote.Shutdown, which clears the map removeEndpoint reads.
	// protoactor does not synchronise the two; a handling still in
	// progress when Close begins is not covered.
	termMu  sync.Mutex
	termSub *eventstream.Subscription

	deadLetter atomic.Int64 // when the last dead letter was published, Unix ns
	quiet      atomic.Bool  // set by Close: protoactor's logs are dropped
}

// Start starts the remote server on cfg.Addr and the serving actor, which
// calls h for the peers' requests. A listen address that is taken is an
// error naming --remote-addr.
func Start(cfg Config, h Handler) (*Transport, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if h == nil {
		return nil, errors.New("transport: nil Handler")
	}
	t := &Transport{
		cfg:     cfg,
		h:       h,
		replies: &replies{m: make(map[uint32]*pending)},
		maxMsg:  (cfg.MaxMessageBytes - batchSlack) / writerBatch,
		done:    make(chan struct{}),
		sem:     make(chan struct{}, cfg.MaxInflight),
	}
	t.chunk = min(handoffChunk, t.maxMsg)
	st, err := newStats(cfg.Registerer)
	if err != nil {
		return nil, err
	}
	t.stats = st
	t.ctx, t.cancel = context.WithCancel(context.Background())

	plog := slog.New(minLevel{cfg.Logger.Handler(), slog.LevelWarn, &t.quiet}).With("lib", "protoactor")
	t.system = actor.NewActorSystem(
		actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger { return plog }),
		actor.WithDeadLetterRequestLogging(false),
		// Dead letters are logged at Info, which plog drops: a short
		// throttle period costs nothing and ends its goroutine soon.
		actor.WithDeadLetterThrottleInterval(deadLetterInterval),
	)
	host, port, _ := net.SplitHostPort(cfg.Addr) // checked by Validate
	portN, _ := strconv.Atoi(port)
	rc := remote.Configure(host, portN,
		remote.WithAdvertisedHost(cfg.AdvertisedAddr),
		remote.WithEndpointWriterBatchSize(writerBatch),
		remote.WithServerOptions(t.serverOptions()...),
		remote.WithDialOptions(t.dialOptions()...),
	)
	// One connection attempt per endpoint: a failed one dead-letters the
	// queued requests (ErrUnreachable) and the next request dials afresh.
	// protoactor sleeps 2s in the endpoint writer after each failure.
	rc.MaxRetryCount = 1
	t.remote = remote.NewRemote(t.system, rc)
	if err := t.startRemote(); err != nil {
		t.system.Shutdown()
		st.unregister()
		t.cancel()
		return nil, fmt.Errorf("transport: --remote-addr %s: %w", cfg.Addr, err)
	}
	t.addr = t.system.Address()
	t.system.EventStream.SubscribeWithPredicate(func(any) {
		t.deadLetter.Store(time.Now().UnixNano())
	}, func(m any) bool {
		_, ok := m.(*actor.DeadLetterEvent)
		return ok
	})
	// See termMu.
	t.termSub = t.system.EventStream.SubscribeWithPredicate(func(any) {
		t.termMu.Lock()
		t.termMu.Unlock() // an empty critical section: a happens-before edge
	}, func(m any) bool {
		_, ok := m.(*remote.EndpointTerminatedEvent)
		return ok
	})

	if _, ok := t.system.ProcessRegistry.Add(t.replies, replyName); !ok {
		t.stopRemote()
		st.unregister()
		t.cancel()
		return nil, errors.New("transport: reply process already registered")
	}
	props := actor.PropsFromProducer(func() actor.Actor { return &server{t: t} })
	pid, err := t.system.Root.SpawnNamed(props, ServiceName)
	if err != nil {
		t.stopRemote()
		st.unregister()
		t.cancel()
		return nil, fmt.Errorf("transport: spawn %s: %w", ServiceName, err)
	}
	t.pid = pid
	t.bufs.New = func() any { return new([]byte) }
	cfg.Logger.Info("transport listening", "addr", t.addr, "tls", cfg.ServerTLS != nil)
	return t, nil
}

// startRemote runs remote.Start, which panics when it cannot listen.
func (t *Transport) startRemote() (err error) {
	defer func() {
		if r := recover(); r != nil {
			if e, ok := r.(error); ok {
				err = e
			} else {
				err = fmt.Errorf("%v", r)
			}
		}
	}()
	t.remote.Start()
	return nil
}

// stopRemote stops remote and the actor system.
func (t *Transport) stopRemote() {
	t.remote.Shutdown(true)
	t.system.Shutdown()
	// protoactor's dead-letter log throttle runs a goroutine for
	// deadLetterInterval after a dead letter; it cannot be joined, so
	// wait until it has ended.
	if last := t.deadLetter.Load(); last != 0 {
		time.Sleep(time.Until(time.Unix(0, last).Add(deadLetterInterval + 5*time.Millisecond)))
	}
}

func (t *Transport) serverOptions() []grpc.ServerOption {
	opts := []grpc.ServerOption{
		grpc.MaxRecvMsgSize(t.cfg.MaxMessageBytes),
		grpc.MaxSendMsgSize(t.cfg.MaxMessageBytes),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 5 * time.Second, PermitWithoutStream: true}),
	}
	if c := t.cfg.ServerTLS; c != nil {
		c = c.Clone()
		if c.ClientCAs != nil && c.ClientAuth == tls.NoClientCert {
			c.ClientAuth = tls.RequireAndVerifyClientCert
		}
		opts = append(opts, grpc.Creds(credentials.NewTLS(c)))
	}
	return opts
}

func (t *Transport) dialOptions() []grpc.DialOption {
	creds := insecure.NewCredentials()
	if t.cfg.ClientTLS != nil {
		creds = credentials.NewTLS(t.cfg.ClientTLS.Clone())
	}
	connect := min(t.cfg.RequestTimeout, 20*time.Second)
	opts := []grpc.DialOption{
		grpc.WithTransportCredentials(creds),
		grpc.WithDefaultCallOptions(
			grpc.MaxCallRecvMsgSize(t.cfg.MaxMessageBytes),
			grpc.MaxCallSendMsgSize(t.cfg.MaxMessageBytes),
		),
		grpc.WithConnectParams(grpc.ConnectParams{Backoff: backoff.DefaultConfig, MinConnectTimeout: connect}),
		// Find a dead peer (no RST, e.g. a host gone) in about 15s rather
		// than the TCP timeout.
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: 10 * time.Second, Timeout: 5 * time.Second, PermitWithoutStream: true}),
	}
	if t.cfg.dial != nil {
		opts = append(opts, grpc.WithContextDialer(t.cfg.dial))
	}
	return opts
}

// Addr returns the address peers dial to reach this node: the advertised
// address, or the bound host:port.
func (t *Transport) Addr() string { return t.addr }

// Peers returns the traffic exchanged with each peer, by peer id: request
// and response bytes (their protobuf sizes, both ways) and events
// forwarded. It is safe for concurrent use.
func (t *Transport) Peers() map[string]api.PeerStats { return t.stats.snapshot() }

// Close stops serving (peers' requests in flight are answered first, their
// Handler contexts canceled), fails the calls waiting for peers with
// ErrClosed, stops remote and the actor system, and returns once their
// goroutines have exited. It is idempotent and safe for concurrent use.
//
// protoactor makes Close wait for an endpoint that is still retrying a
// failed connection (about 2s), and up to 10s for a connected peer that
// does not close its stream.
func (t *Transport) Close() error {
	t.once.Do(func() {
		t.mu.Lock()
		t.closed = true
		t.mu.Unlock()
		close(t.done)
		t.cancel()
		t.served.Wait()
		if err := t.system.Root.StopFuture(t.pid).Wait(); err != nil {
			t.cfg.Logger.Warn("transport: stop serving actor", "err", err)
		}
		t.quiet.Store(true)
		t.termMu.Lock()
		t.system.EventStream.Unsubscribe(t.termSub)
		t.termMu.Unlock()
		t.stopRemote()
		t.stats.unregister()
	})
	return nil
}

// minLevel is a slog.Handler that drops records below a level (protoactor
// logs every connection at Info), and every record once quiet is set
// (protoactor logs its own shutdown's closed connections as errors).
type minLevel struct {
	slog.Handler
	min   slog.Level
	quiet *atomic.Bool
}

func (h minLevel) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= h.min && !h.quiet.Load() && h.Handler.Enabled(ctx, l)
}

func (h minLevel) WithAttrs(as []slog.Attr) slog.Handler {
	return minLevel{h.Handler.WithAttrs(as), h.min, h.quiet}
}

func (h minLevel) WithGroup(name string) slog.Handler {
	return minLevel{h.Handler.WithGroup(name), h.min, h.quiet}
}
