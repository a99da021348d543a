package actors

import (
	"context"
	"fmt"
	"time"

	"github.com/asynkron/protoactor-go/actor"
)

// Messages that move a partition between nodes.
type (
	// release asks a partition for its keys' snapshots before it stops.
	release struct{}
	// restore delivers a chunk of the previous owner's key state.
	restore struct {
		keys []KeySnapshot
		last bool
	}
	// awaitExpired ends the wait for a handoff that never came.
	awaitExpired struct{}
)

// spawn starts the actor of partition p; with await it holds events until
// Restore delivers its last chunk or AwaitHandoff passes.
func (e *Engine) spawn(p int32, await bool) *actor.PID {
	props := actor.PropsFromProducer(func() actor.Actor {
		pa := newPartition(e, p)
		pa.awaiting = await
		return pa
	}, actor.WithDispatcher(e.workers))
	return e.system.Root.Spawn(props)
}

// Acquire makes the engine serve partition p, if it does not already.
// With await, p holds the events it gets until Restore delivers the
// previous owner's last chunk, or until Config.AwaitHandoff has passed, then
// starts empty. It returns false when p was already served.
func (e *Engine) Acquire(p int32, await bool) (bool, error) {
	if p < 0 || int(p) >= e.cfg.Partitions {
		return false, fmt.Errorf("actors: partition %d out of range", p)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return false, ErrClosed
	}
	if e.pids[p] != nil {
		return false, nil
	}
	pid := e.spawn(p, await)
	e.pids[p] = pid
	e.metrics.owned.Inc()
	if await && e.cfg.AwaitHandoff > 0 {
		e.timers = append(e.timers, time.AfterFunc(e.cfg.AwaitHandoff, func() { e.system.Root.Send(pid, awaitExpired{}) }))
	}
	return true, nil
}

// Release stops serving partition p. Events for p submitted from now on
// get ResultMoved; every event submitted before is applied first, and the
// returned snapshots hold the state they built. The keys leave this node.
// Releasing a partition not served returns (nil, ErrNotOwned).
func (e *Engine) Release(ctx context.Context, p int32) ([]KeySnapshot, error) {
	if p < 0 || int(p) >= e.cfg.Partitions {
		return nil, fmt.Errorf("actors: partition %d out of range", p)
	}
	e.mu.Lock()
	pid := e.pids[p]
	e.pids[p] = nil
	e.mu.Unlock()
	if pid == nil {
		return nil, ErrNotOwned
	}
	e.metrics.owned.Dec()
	// Every send to pid happened under the read lock, so before this.
	res, err := e.system.Root.RequestFuture(pid, release{}, timeout(ctx)).Result()
	_ = e.system.Root.StopFuture(pid).Wait()
	if err != nil {
		return nil, fmt.Errorf("actors: release partition %d: %w", p, err)
	}
	return res.([]KeySnapshot), nil
}

// Restore loads a chunk of partition p's state, handed over by its
// previous owner; last ends p's wait for it. p must be awaiting its state
// (Acquire with await): a partition that serves already refuses it with
// ErrNotAwaiting, so that state it has applied is never overwritten; one
// not served refuses it with ErrNotOwned.
func (e *Engine) Restore(ctx context.Context, p int32, keys []KeySnapshot, last bool) error {
	if p < 0 || int(p) >= e.cfg.Partitions {
		return fmt.Errorf("actors: partition %d out of range", p)
	}
	e.mu.RLock()
	pid := e.pids[p]
	e.mu.RUnlock()
	if pid == nil {
		return ErrNotOwned
	}
	res, err := e.system.Root.RequestFuture(pid, &restore{keys: keys, last: last}, timeout(ctx)).Result()
	if err != nil {
		return fmt.Errorf("actors: restore partition %d: %w", p, err)
	}
	if err, _ := res.(error); err != nil {
		return err
	}
	return nil
}

// Owned returns the partitions the engine serves, ascending.
func (e *Engine) Owned() []int32 {
	e.mu.RLock()
	defer e.mu.RUnlock()
	var out []int32
	for p, pid := range e.pids {
		if pid != nil {
			out = append(out, int32(p))
		}
	}
	return out
}

// RestoreOffset returns the oldest Kafka offset of partition p whose
// record is still in some key's window, or -1 when none is: where a replay
// must start to rebuild every key of p exactly.
func (e *Engine) RestoreOffset(ctx context.Context, p int32) (int64, error) {
	e.mu.RLock()
	pid := e.pids[p]
	e.mu.RUnlock()
	if pid == nil {
		return -1, ErrNotOwned
	}
	res, err := e.system.Root.RequestFuture(pid, restoreOffsetReq{}, timeout(ctx)).Result()
	if err != nil {
		return -1, fmt.Errorf("actors: restore offset of partition %d: %w", p, err)
	}
	return res.(int64), nil
}
