package workers

import (
	"sync"
	"testing"
	"time"
)

// A turn goes to an idle worker; with every worker busy (even blocked) it
// runs on a goroutine of its own, so Schedule never waits; stop joins the
// workers (goleak checks the rest).
func TestWorkers(t *testing.T) {
	w := New(2)
	block := make(chan struct{})
	var started sync.WaitGroup
	started.Add(2)
	deadline := time.Now().Add(10 * time.Second)
	for range 2 { // both workers blocked
		for {
			var ok bool
			select {
			case w.tasks <- func() { started.Done(); <-block }:
				ok = true
			default:
			}
			if ok {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("no idle worker")
			}
			time.Sleep(time.Millisecond)
		}
	}
	started.Wait()
	done := make(chan struct{})
	w.Schedule(func() { close(done) }) // must not wait for a worker
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Schedule waited for a busy worker")
	}
	close(block)
	w.Stop()
	if w.Throughput() != Throughput {
		t.Errorf("Throughput %d", w.Throughput())
	}
	ran := make(chan struct{})
	w.Schedule(func() { close(ran) }) // after stop: a goroutine of its own
	<-ran
}
