package node

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/squallhq/squall/actors"
	"github.com/squallhq/squall/api"
	"github.com/squallhq/squall/cluster"
	"github.com/squallhq/squall/event"
	"github.com/squallhq/squall/ownership"
	"github.com/squallhq/squall/transport"
)

// Errors of a clustered node.
var (
	// ErrNoOwner is returned when a partition had no reachable owner within
	// the routing deadline.
	ErrNoOwner = errors.New("node: no reachable owner for the partition")
	// ErrNotOwner refuses a handoff for a partition this node does not own.
	ErrNotOwner = errors.New("node: not the partition's owner")
	// ErrNotJoined is returned at once, without waiting for an owner, when
	// this node is not a member of the cluster: it has no ZooKeeper
	// session, or has not joined on it, and has no assignment.
	ErrNotJoined = errors.New("node: not joined to the cluster")
)

// routes is the routing table: the owner of each partition and where to
// reach each member. Replaced whole, read without locks.
type routes struct {
	gen      int64 // generation of the assignment the owners come from
	assigned bool  // owners come from an assignment applied on the current session
	owners   []string
	addrs    map[string]string // member id → remote address
}

// clustered is the part of a node that exists with --zk.
type clustered struct {
	n     *Node
	coord *cluster.Coordinator
	tr    *transport.Transport
	route atomic.Pointer[routes]

	lc *lifecycle

	mu       sync.Mutex // serialises the coordinator's calls
	members  map[string]cluster.Member
	assigned *cluster.Assignment // newest applied; nil after a session loss

	async  chan struct{} // bounds SubmitAsync goroutines
	asyncs sync.WaitGroup
}

func (c *clustered) self() string { return c.n.cfg.NodeID }

// Apply implements cluster.Listener: the routes follow the newest
// assignment at once; each partition's lifecycle acts on it (acquire what
// it grants, release what it takes away).
func (c *clustered) Apply(a *cluster.Assignment) {
	c.mu.Lock()
	defer c.mu.Unlock()
	old := c.route.Load()
	c.route.Store(&routes{gen: a.Generation, assigned: true, owners: a.Owners, addrs: old.addrs})
	prev := c.assigned
	c.assigned = a
	c.lc.assign(a, prev, c.self(), c.members)
	mine := 0
	for _, o := range a.Owners {
		if o == c.self() {
			mine++
		}
	}
	c.n.log.Info("applied assignment", "epoch", a.Epoch, "generation", a.Generation,
		"leader", a.Leader, "assigned", mine)
}

// SessionLost implements cluster.Listener: every partition is dropped at
// once — no commit, no handoff — because the leader gives them to others;
// the routes know no owner until the next assignment.
func (c *clustered) SessionLost() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.assigned = nil
	c.lc.sessionLost()
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
	c.route.Store(&routes{gen: old.gen, assigned: old.assigned, owners: old.owners, addrs: addrs})
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

// KeyEvents implements transport.Handler.
func (c *clustered) KeyEvents(ctx context.Context, key string) (*api.KeyEvents, error) {
	return c.n.engine.Events(ctx, key)
}

// List implements transport.Handler.
func (c *clustered) List(ctx context.Context, prefix, after string, limit int) (*api.KeyList, error) {
	return c.n.engine.List(ctx, prefix, after, limit)
}

// Handoff implements transport.Handler: a chunk of a partition's state
// from its previous owner, for the partition's lifecycle, which holds it
// while it acquires the partition and refuses it otherwise. It may arrive
// before this node has applied the assignment that gives it the
// partition: it is held if its sender acts on a newer assignment.
func (c *clustered) Handoff(ctx context.Context, ch *transport.HandoffChunk) error {
	newer := ch.Generation > c.route.Load().gen
	return c.lc.handoff(ctx, ch, newer)
}

// routeDeadline bounds how long an event waits for its partition to have
// a reachable owner: a dead owner is replaced within the session timeout.
func (c *clustered) routeDeadline() time.Duration {
	return 2*c.n.cfg.ZKSessionTimeout + 5*time.Second
}

// notJoined returns ErrNotJoined, with the coordinator's reason, when rt
// comes from no assignment and this node holds no lease: it is not a
// member, so no owner will appear for it soon. A member waiting for an
// assignment, or whose partitions move, holds a lease.
func (c *clustered) notJoined(rt *routes) error {
	if rt.assigned || c.coord.LeaseValid(time.Now()) {
		return nil
	}
	_, why := c.coord.Status()
	return fmt.Errorf("%w: %s", ErrNotJoined, why)
}

// Submit implements ingest.Submitter: events go to their partitions'
// owners, local ones to the engine, others batched per peer. It fails at
// once with ErrNotJoined while the node is not a member, and with
// ErrNoOwner when a partition has no reachable owner within the routing
// deadline (a member's partitions moving).
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
		if err := c.notJoined(rt); err != nil {
			return err
		}
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
	return ownerRead(ctx, c, key, c.n.engine.Get, c.tr.KeyState)
}

// events returns the events a key's actor keeps, from its owner.
func (c *clustered) events(ctx context.Context, key string) (*api.KeyEvents, error) {
	return ownerRead(ctx, c, key, c.n.engine.Events, c.tr.KeyEvents)
}

// ownerRead reads a document of key from its owner: with local when this
// node serves the key's partition, else with remote from the owner's
// address, again with the newest routes until the routing deadline while
// the owner is unknown, not serving yet or unreachable.
func ownerRead[D any](ctx context.Context, c *clustered, key string,
	local func(context.Context, string) (*D, error),
	remote func(context.Context, string, string) (*D, error),
) (*D, error) {
	deadline := time.Now().Add(c.routeDeadline())
	for attempt := 0; ; attempt++ {
		rt := c.route.Load()
		owner := rt.owners[cluster.Partition(key, c.n.cfg.Partitions)]
		var doc *D
		var err error
		switch {
		case owner == c.self() && !c.serves(cluster.Partition(key, c.n.cfg.Partitions)):
			err = errNotServing
		case owner == c.self():
			doc, err = local(ctx, key)
		case owner == "":
			if err = c.notJoined(rt); err != nil {
				return nil, err
			}
			err = ErrNoOwner
		case rt.addrs[owner] == "":
			err = ErrNoOwner
		default:
			doc, err = remote(ctx, rt.addrs[owner], key)
		}
		if err == nil || errors.Is(err, actors.ErrNotFound) || time.Now().After(deadline) {
			return doc, err
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(min(10*time.Millisecond<<attempt, 500*time.Millisecond)):
		}
	}
}

// errNotServing: the partition is this node's but not served yet (it is
// acquired or replayed), or the node's lease has lapsed; a read waits.
var errNotServing = errors.New("node: partition not served yet")

// serves reports whether this node may answer for partition p now: it
// serves p and its ZooKeeper lease is valid (a node that was paused or cut
// off must not answer from state another node may have taken over).
func (c *clustered) serves(p int32) bool {
	return c.coord.LeaseValid(time.Now()) && c.lc.state(p).State == ownership.Serving
}

// ready is the cluster part of /readyz.
func (c *clustered) ready() (bool, string) {
	if joined, why := c.coord.Status(); !joined {
		return false, why
	}
	c.mu.Lock()
	a := c.assigned
	c.mu.Unlock()
	if a == nil {
		return false, "waiting for an assignment"
	}
	if ok, missing := c.lc.serving(a.Owners, c.self()); !ok {
		return false, fmt.Sprintf("%d assigned partitions not served yet", missing)
	}
	return true, ""
}

// list merges the live keys of every member.
func (c *clustered) list(ctx context.Context, prefix, after string, limit int) (*api.KeyList, error) {
	out, err := c.n.engine.List(ctx, prefix, after, limit)
	if err != nil {
		return nil, err
	}
	for id, addr := range c.route.Load().addrs {
		if id == c.self() {
			continue
		}
		kl, err := c.tr.List(ctx, addr, prefix, after, limit)
		if err != nil {
			return nil, fmt.Errorf("listing keys on %s: %w", id, err)
		}
		out.Live += kl.Live
		out.Keys = append(out.Keys, kl.Keys...)
		out.Truncated = out.Truncated || kl.Truncated
	}
	out.Cut(limit)
	return out, nil
}

// describe builds the /debug/cluster document.
func (c *clustered) describe() *api.Cluster {
	v := c.coord.View()
	doc := &api.Cluster{
		Cluster: c.n.cfg.Cluster, Self: c.self(), Leader: v.Leader, Epoch: v.Epoch,
		PartitionCount: c.n.cfg.Partitions, Assignment: map[string]string{}, Peers: c.tr.Peers(),
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
	lease := c.coord.LeaseValid(time.Now())
	for _, ps := range c.lc.describe() {
		switch {
		case !lease && (ps.State == ownership.Serving.String() || ps.State == ownership.Replaying.String()):
			// Held, but this node cannot know it still owns them: it
			// answers no read for them until its lifecycle has dropped
			// them or its lease is renewed (a commit lands only if no
			// other node has claimed them meanwhile).
			ps.State = "suspended"
		case ps.State == ownership.Serving.String():
			doc.Serving = append(doc.Serving, ps.Partition)
		}
		doc.Partitions = append(doc.Partitions, ps)
	}
	if doc.Serving == nil {
		doc.Serving = []int32{}
	}
	if doc.Partitions == nil {
		doc.Partitions = []api.PartitionState{}
	}
	doc.Ready, doc.NotReadyReason = c.ready()
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
	for {
		held := len(c.lc.describe())
		if held == 0 {
			return nil
		}
		if v := c.coord.View(); len(v.Members) <= 1 {
			// The others left meanwhile (the view had not seen it yet):
			// nobody is left to hand over to.
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("leaving: %d partitions not handed over: %w", held, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}
