// Package workers is a protoactor dispatcher that runs mailbox turns on
// idle long-lived goroutines.
package workers

import "sync"

// Pool is a protoactor dispatcher (actor.Dispatcher): a mailbox turn runs
// on an idle long-lived worker goroutine when there is one, and on a new
// goroutine otherwise (protoactor's default, always).
//
// A new goroutine starts with a small stack that the apply path grows, by
// copying it, on every turn, and it must be scheduled afresh: measured, a
// submission of 100 events over 64 partitions spent most of its ~300 µs
// there. A worker's stack stays grown. Schedule never waits for a worker
// (the hand-off is an unbuffered send that only succeeds to an idle one), so
// a turn that blocks (an output's back-pressure) holds up nothing but
// itself, as before.
type Pool struct {
	tasks chan func()
	quit  chan struct{}
	wg    sync.WaitGroup
}

// Throughput is how many messages a mailbox turn processes before
// it yields: protoactor's default.
const Throughput = 300

// New starts a pool of n workers.
func New(n int) *Pool {
	w := &Pool{tasks: make(chan func()), quit: make(chan struct{})}
	w.wg.Add(n)
	for range n {
		go w.run()
	}
	return w
}

func (w *Pool) run() {
	defer w.wg.Done()
	for {
		select {
		case fn := <-w.tasks:
			fn()
		case <-w.quit:
			return
		}
	}
}

// Schedule runs fn on an idle worker, or on a goroutine of its own.
func (w *Pool) Schedule(fn func()) {
	select {
	case w.tasks <- fn:
	default:
		go fn()
	}
}

// Throughput is the dispatcher's messages per mailbox turn.
func (w *Pool) Throughput() int { return Throughput }

// Stop ends the workers once their turns are done; later turns run on
// goroutines of their own.
func (w *Pool) Stop() {
	close(w.quit)
	w.wg.Wait()
}
