package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/squallhq/squall/actors"
	"github.com/squallhq/squall/api"
	"github.com/squallhq/squall/cluster"
	"github.com/squallhq/squall/event"
	"github.com/squallhq/squall/transport"
)

// Errors of a clustered node.
var (
	// ErrNoOwner is returned when a partition had no reachable owner within
	// the routing deadline.
	ErrNoOwner = errors.New("node: no reachable owner for the partition")
	// ErrNotOwner refuses a handoff for a partition this node does not own.
	ErrNotOwner = errors.New("node: not the partition's owner")
)

// routes is the routing table: the owner of each partition and where to
// reach each member. Replaced whole, read without locks.
type routes struct {
	gen    int64 // generation of the assignment the owners come from
	owners []string
	addrs  map[string]string // member id → remote address
}

// clustered is the part of a node that exists with --zk.
type clustered struct {
	n     *Node
	coord *cluster.Coordinator
	tr    *transport.Transport
	route atomic.Pointer[routes]

	mu      sync.Mutex // serialises Apply's ownership changes
	members map[string]cluster.Member

	moves  sync.WaitGroup // handoffs in flight
	async  chan struct{}  // bounds SubmitAsync goroutines
	asyncs sync.WaitGroup
}

func (c *clustered) self() string { return c.n.cfg.NodeID }

// Apply implements cluster.Listener: serve what the assignment gives this
// node, hand over what it takes away.
func (c *clustered) Apply(a *cluster.Assignment) {
	c.mu.Lock()
	defer c.mu.Unlock()
	old := c.route.Load()
	c.route.Store(&routes{gen: a.Generation, owners: a.Owners, addrs: old.addrs})
	owned := map[int32]bool{}
	for _, p := range c.n.engine.Owned() {
		owned[p] = true
	}
	for i, owner := range a.Owners {
		p := int32(i)
		switch {
		case owner == c.self() && !owned[p]:
			from := a.MovedFrom(p)
			await := from != "" && from != c.self()
			if _, err := c.n.engine.Acquire(p, await); err != nil {
				c.n.log.Error("acquire partition", "partition", p, "err", err)
			}
		case owner != c.self() && owned[p]:
			c.moves.Add(1)
			go c.handOver(p, owner, a.Generation)
		}
	}
	c.n.log.Info("applied assignment", "epoch", a.Epoch, "generation", a.Generation,
		"leader", a.Leader, "owned", len(c.n.engine.Owned()))
}

// handOver releases partition p and sends its keys to its new owner,
// retrying while the owner is unreachable, for up to AwaitHandoff.
func (c *clustered) handOver(p int32, to string, gen int64) {
	defer c.moves.Done()
	ctx, cancel := context.WithTimeout(context.Background(), c.n.cfg.AwaitHandoff)
	defer cancel()
	if k := c.n.kafka; k != nil {
		// Stop consuming first: the source commits every record applied, so
		// the new owner starts where this one stopped.
		if err := k.stop(ctx, p); err != nil {
			c.n.log.Error("stopping the source of a moving partition", "partition", p, "err", err)
		}
	}
	snaps, err := c.n.engine.Release(ctx, p)
	if err != nil {
		if !errors.Is(err, actors.ErrNotOwned) {
			c.n.log.Error("release partition", "partition", p, "err", err)
		}
		return
	}
	for attempt := 0; ; attempt++ {
		rt := c.route.Load()
		if rt.owners[p] == c.self() {
			// A newer assignment gave it back to this node meanwhile: keep the
			// state here, unless the partition already serves again (then it
			// started afresh or by replay, and the snapshot must not be laid
			// over what it applied since).
			if ok, err := c.n.engine.Acquire(p, true); err == nil && ok {
				err = c.n.engine.Restore(ctx, p, snaps, true)
				c.n.log.Info("partition came back during its handoff; state kept", "partition", p, "err", err)
			} else {
				c.n.log.Warn("partition came back during its handoff and already serves: snapshot dropped", "partition", p, "keys", len(snaps))
			}
			return
		}
		if owner := rt.owners[p]; owner != to && owner != "" && owner != c.self() {
			// A newer assignment moved it on (the first new owner died, say):
			// the state goes to whoever owns it now.
			c.n.log.Info("handoff target changed", "partition", p, "from", to, "to", owner)
			to, gen = owner, rt.gen
		}
		addr := rt.addrs[to]
		err = errors.New("new owner not among the members")
		if addr != "" {
			err = c.tr.Handoff(ctx, to, addr, p, gen, snaps)
		}
		if err == nil {
			level := slog.LevelInfo
			if len(snaps) == 0 {
				level = slog.LevelDebug
			}
			c.n.log.Log(ctx, level, "handed partition over", "partition", p, "to", to, "keys", len(snaps))
			return
		}
		select {
		case <-ctx.Done():
			c.n.log.Error("handoff failed: partition state lost", "partition", p, "to", to, "keys", len(snaps), "err", err)
			return
		case <-time.After(min(50*time.Millisecond<<attempt, time.Second)):
		}
	}
}

// SessionLost implements cluster.Listener: drop every partition; the
// leader gives them to others, who start them empty.
func (c *clustered) SessionLost() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, p := range c.n.engine.Owned() {
		if k := c.n.kafka; k != nil {
			if err := k.stop(context.Background(), p); err != nil {
				c.n.log.Error("stopping a source", "partition", p, "err", err)
			}
		}
		if _, err := c.n.engine.Release(context.Background(), p); err != nil {
			c.n.log.Error("drop partition", "partition", p, "err", err)
		}
	}
	old := c.route.Load()
	c.route.Store(&routes{gen: old.gen, owners: make([]string, c.n.cfg.Partitions), addrs: old.addrs})
}

// MembersChanged implements cluster.Listener.
func (c *clustered) MembersChanged(members map[string]cluster.Member) {
	addrs := make(map[string]string, len(members))
	for id, m := range members {
		addrs[id] = m.RemoteAddr
	}
	c.mu.Lock()
	c.members = members
	old := c.route.Load()
	c.route.Store(&routes{gen: old.gen, owners: old.owners, addrs: addrs})
	c.mu.Unlock()
}

// Forward implements transport.Handler: events a peer routed here.
func (c *clustered) Forward(ctx context.Context, from string, evs []event.Event, out []actors.Result) error {
	return c.n.engine.Submit(ctx, evs, out)
}

// KeyState implements transport.Handler.
func (c *clustered) KeyState(ctx context.Context, key string) (*api.KeyState, error) {
	return c.n.engine.Get(ctx, key)
}

// List implements transport.Handler.
func (c *clustered) List(ctx context.Context, prefix string, limit int) (*api.KeyList, error) {
	return c.n.engine.List(ctx, prefix, limit)
}

// Handoff implements transport.Handler: a chunk of a partition's state
// from its previous owner. It may arrive before this node has applied the
// assignment that gives it the partition; it then starts awaiting.
func (c *clustered) Handoff(ctx context.Context, from string, p int32, gen int64, keys []actors.KeySnapshot, last bool) error {
	// Take it if this node owns p, or if the sender acts on an assignment
	// newer than the one applied here (it will give p to this node). A
	// stale handoff is refused: its sender retries with the newest owner.
	if rt := c.route.Load(); rt.owners[p] != c.self() && gen <= rt.gen {
		return fmt.Errorf("%w: partition %d is %s's in generation %d (handoff of generation %d)",
			ErrNotOwner, p, rt.owners[p], rt.gen, gen)
	}
	if _, err := c.n.engine.Acquire(p, true); err != nil {
		return err
	}
	return c.n.engine.Restore(ctx, p, keys, last)
}

// routeDeadline bounds how long an event waits for its partition to have
// a reachable owner: a dead owner is replaced within the session timeout.
func (c *clustered) routeDeadline() time.Duration {
	return 2*c.n.cfg.ZKSessionTimeout + 5*time.Second
}

// Submit implements ingest.Submitter: events go to their partitions'
// owners, local ones to the engine, others batched per peer.
func (c *clustered) Submit(ctx context.Context, evs []event.Event, out []actors.Result) error {
	pending := make([]int32, len(evs))
	for i := range pending {
		pending[i] = int32(i)
	}
	deadline := time.Now().Add(c.routeDeadline())
	var lastErr error
	for attempt := 0; len(pending) > 0; attempt++ {
		if attempt > 0 {
			if time.Now().After(deadline) {
				return errors.Join(ErrNoOwner, lastErr)
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(min(10*time.Millisecond<<attempt, 500*time.Millisecond)):
			}
		}
		rt := c.route.Load()
		groups := map[string][]int32{}
		for _, i := range pending {
			owner := rt.owners[cluster.Partition(evs[i].Key, c.n.cfg.Partitions)]
			groups[owner] = append(groups[owner], i)
		}
		var mu sync.Mutex
		var next []int32
		var wg sync.WaitGroup
		for owner, idx := range groups {
			if owner == "" {
				next = append(next, idx...)
				lastErr = errors.New("partition not assigned yet")
				continue
			}
			wg.Add(1)
			go func(owner string, idx []int32) {
				defer wg.Done()
				sub := make([]event.Event, len(idx))
				for j, i := range idx {
					sub[j] = evs[i]
				}
				res := make([]actors.Result, len(idx))
				var err error
				if owner == c.self() {
					err = c.n.engine.Submit(ctx, sub, res)
				} else if addr := rt.addrs[owner]; addr == "" {
					err = fmt.Errorf("owner %s is not a live member", owner)
				} else {
					err = c.tr.Forward(ctx, owner, addr, sub, res)
				}
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					lastErr = err
					next = append(next, idx...)
					return
				}
				for j, i := range idx {
					if res[j] == actors.ResultMoved {
						next = append(next, i)
					} else {
						out[i] = res[j]
					}
				}
			}(owner, idx)
		}
		wg.Wait()
		if errors.Is(lastErr, actors.ErrClosed) {
			return lastErr
		}
		sort.Slice(next, func(a, b int) bool { return next[a] < next[b] }) // keep per-key order
		pending = next
	}
	return nil
}

// SubmitAsync implements ingest.Submitter.
func (c *clustered) SubmitAsync(ctx context.Context, evs []event.Event, done func([]actors.Result)) error {
	select {
	case c.async <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	evs = append([]event.Event(nil), evs...)
	c.asyncs.Add(1)
	go func() {
		defer c.asyncs.Done()
		defer func() { <-c.async }()
		out := make([]actors.Result, len(evs))
		if err := c.Submit(context.Background(), evs, out); err != nil {
			c.n.log.Warn("events not applied", "events", len(evs), "err", err)
			for i := range out {
				out[i] = actors.ResultFailed
			}
		}
		done(out)
	}()
	return nil
}

// get returns a key's state from its owner, wherever it is.
func (c *clustered) get(ctx context.Context, key string) (*api.KeyState, error) {
	deadline := time.Now().Add(c.routeDeadline())
	for attempt := 0; ; attempt++ {
		rt := c.route.Load()
		owner := rt.owners[cluster.Partition(key, c.n.cfg.Partitions)]
		var st *api.KeyState
		var err error
		switch {
		case owner == c.self():
			st, err = c.n.engine.Get(ctx, key)
		case owner == "" || rt.addrs[owner] == "":
			err = ErrNoOwner
		default:
			st, err = c.tr.KeyState(ctx, rt.addrs[owner], key)
		}
		if err == nil || errors.Is(err, actors.ErrNotFound) || time.Now().After(deadline) {
			return st, err
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(min(10*time.Millisecond<<attempt, 500*time.Millisecond)):
		}
	}
}

// list merges the live keys of every member.
func (c *clustered) list(ctx context.Context, prefix string, limit int) (*api.KeyList, error) {
	out, err := c.n.engine.List(ctx, prefix, limit)
	if err != nil {
		return nil, err
	}
	for id, addr := range c.route.Load().addrs {
		if id == c.self() {
			continue
		}
		kl, err := c.tr.List(ctx, addr, prefix, limit)
		if err != nil {
			return nil, fmt.Errorf("listing keys on %s: %w", id, err)
		}
		out.Live += kl.Live
		out.Keys = append(out.Keys, kl.Keys...)
		out.Truncated = out.Truncated || kl.Truncated
	}
	sort.Slice(out.Keys, func(i, j int) bool { return out.Keys[i].Key < out.Keys[j].Key })
	if len(out.Keys) > limit {
		out.Keys, out.Truncated = out.Keys[:limit], true
	}
	return out, nil
}

// describe builds the /debug/cluster document.
func (c *clustered) describe() *api.Cluster {
	v := c.coord.View()
	doc := &api.Cluster{
		Cluster: c.n.cfg.Cluster, Self: c.self(), Leader: v.Leader, Epoch: v.Epoch,
		Partitions: c.n.cfg.Partitions, Assignment: map[string]string{}, Peers: c.tr.Peers(),
		Members: []api.Member{},
	}
	owned := map[string][]int32{}
	if v.Assignment != nil {
		doc.Generation = v.Assignment.Generation
		for p, owner := range v.Assignment.Owners {
			doc.Assignment[strconv.Itoa(p)] = owner
			owned[owner] = append(owned[owner], int32(p))
		}
	}
	for _, m := range v.Members {
		doc.Members = append(doc.Members, api.Member{ID: m.ID, RemoteAddr: m.RemoteAddr, HTTPAddr: m.HTTPAddr,
			Version: m.Version, Partitions: append([]int32{}, owned[m.ID]...)})
	}
	sort.Slice(doc.Members, func(i, j int) bool { return doc.Members[i].ID < doc.Members[j].ID })
	doc.Serving = c.n.engine.Owned()
	doc.Connected = v.Connected
	return doc
}

// leave hands every partition over and waits until none is left here, or
// ctx ends.
func (c *clustered) leave(ctx context.Context) error {
	if v := c.coord.View(); len(v.Members) <= 1 {
		return nil // nobody to hand over to
	}
	c.coord.Leave()
	for len(c.n.engine.Owned()) > 0 {
		select {
		case <-ctx.Done():
			return fmt.Errorf("leaving: %d partitions not handed over: %w", len(c.n.engine.Owned()), ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
	done := make(chan struct{})
	go func() { c.moves.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("leaving: handoffs unfinished: %w", ctx.Err())
	}
}
