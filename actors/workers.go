package actors

import "sync"

// workers is the protoactor dispatcher of the partition actors: a mailbox
// turn runs on an idle long-lived worker goroutine when there is one, and
// on a new goroutine otherwise (protoactor's default, always).
//
// A new goroutine starts with a small stack that the apply path grows, by
// copying it, on every turn, and it must be scheduled afresh: measured, a
// submission of 100 events over 64 partitions spent most of its ~300 µs
// there. A worker's stack stays grown. Schedule never waits for a worker
// (the hand-off is an unbuffered send that only succeeds to an idle one), so
// a turn that blocks (an output's back-pressure) holds up nothing but
// itself, as before.
type workers struct {
	tasks chan func()
	quit  chan struct{}
	wg    sync.WaitGroup
}

// mailboxThroughput is how many messages a mailbox turn processes before
// it yields: protoactor's default.
const mailboxThroughput = 300

func newWorkers(n int) *workers {
	w := &workers{tasks: make(chan func()), quit: make(chan struct{})}
	w.wg.Add(n)
	for range n {
		go w.run()
	}
	return w
}

func (w *workers) run() {
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
func (w *workers) Schedule(fn func()) {
	select {
	case w.tasks <- fn:
	default:
		go fn()
	}
}

// Throughput is the dispatcher's messages per mailbox turn.
func (w *workers) Throughput() int { return mailboxThroughput }

// stop ends the workers once their turns are done; later turns run on
// goroutines of their own.
func (w *workers) stop() {
	close(w.quit)
	w.wg.Wait()
}
