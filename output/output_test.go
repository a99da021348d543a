package output

import (
	"context"
	"errors"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"
)

func TestConfigValidate(t *testing.T) {
	for _, c := range []struct {
		name string
		cfg  Config
		ok   bool
	}{
		{"zero is the defaults", Config{}, true},
		{"defaults", DefaultConfig(), true},
		{"batch above buffer is capped", Config{Buffer: 2, Batch: 10}, true},
		{"negative buffer", Config{Buffer: -1}, false},
		{"negative batch", Config{Batch: -1}, false},
		{"negative retry", Config{RetryMin: -time.Second}, false},
		{"max below min", Config{RetryMin: time.Second, RetryMax: time.Millisecond}, false},
		{"min above default max", Config{RetryMin: time.Minute}, true},
	} {
		err := c.cfg.Validate()
		if (err == nil) != c.ok || (err != nil && !errors.Is(err, ErrConfig)) {
			t.Errorf("%s: Validate = %v", c.name, err)
		}
	}
}

func TestNewErrors(t *testing.T) {
	if _, err := New(Config{}, newGateSink("a"), newGateSink("a")); !errors.Is(err, ErrConfig) {
		t.Errorf("duplicate sink names: %v", err)
	}
	if _, err := New(Config{}, nil); !errors.Is(err, ErrConfig) {
		t.Errorf("nil sink: %v", err)
	}
	reg := prometheus.NewRegistry()
	newOutputs(t, Config{Registerer: reg}, newGateSink("a"))
	_, err := New(Config{Registerer: reg}, newGateSink("a"))
	var are prometheus.AlreadyRegisteredError
	if !errors.As(err, &are) {
		t.Errorf("second Outputs on one registry: %v, want AlreadyRegisteredError", err)
	}
}

// Without sinks, Send accepts and discards; nothing is ever pending.
func TestNoSinks(t *testing.T) {
	o, reg := newOutputs(t, Config{})
	for i := range 10 {
		send(t, o, testAlert(t, "k", i, 0, int64(i)))
	}
	if o.Pending() != 0 {
		t.Errorf("Pending = %d", o.Pending())
	}
	if _, ok := o.Hold(0); ok {
		t.Error("Hold without sinks")
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "squall_alerts_sent_total" && mf.GetMetric()[0].GetCounter().GetValue() != 10 {
			t.Errorf("sent = %v, want 10", mf.GetMetric()[0].GetCounter().GetValue())
		}
	}
	if err := o.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := o.Send(context.Background(), Alert{}); !errors.Is(err, ErrClosed) {
		t.Errorf("Send after Close: %v", err)
	}
}

// A Send waiting for room returns when its context ends (queuing nothing)
// or when Outputs close; a Close without a deadline delivers everything.
func TestSendBlocksUntilRoomCtxOrClose(t *testing.T) {
	g := newGateSink("gate")
	o, _ := newOutputs(t, Config{Buffer: 2, Batch: 1}, g)
	send(t, o, testAlert(t, "k", 0, 0, 0))
	send(t, o, testAlert(t, "k", 1, 0, 1))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := o.Send(ctx, testAlert(t, "k", 2, 0, 2)); !errors.Is(err, context.Canceled) {
		t.Fatalf("Send on a full buffer with a canceled context: %v", err)
	}
	if o.Pending() != 2 {
		t.Fatalf("Pending = %d, want 2: a failed Send queues nothing", o.Pending())
	}

	room := make(chan error)
	go func() { room <- o.Send(context.Background(), testAlert(t, "k", 3, 0, 3)) }()
	g.release(1)
	if err := <-room; err != nil {
		t.Fatalf("Send after one delivery: %v", err)
	}

	blocked := make(chan error)
	go func() { blocked <- o.Send(context.Background(), testAlert(t, "k", 4, 0, 4)) }()
	waitFor(t, "the Send to block", func() bool {
		o.mu.Lock()
		defer o.mu.Unlock()
		return o.space != nil
	})
	closed := make(chan error)
	go func() { closed <- o.Close(context.Background()) }()
	if err := <-blocked; !errors.Is(err, ErrClosed) {
		t.Fatalf("blocked Send during Close: %v", err)
	}
	g.release(2) // Close waits for the two buffered alerts
	if err := <-closed; err != nil {
		t.Fatalf("Close after delivering everything: %v", err)
	}
	if o.Pending() != 0 {
		t.Errorf("Pending = %d after Close", o.Pending())
	}
}

// Close with a dead sink returns by its deadline, counts and keeps holding
// the dropped alerts, and leaves no goroutine behind, whether the sink
// fails fast (NATS, server gone) or blocks in Publish (Kafka, cluster
// gone: Close must cancel the publish in flight).
func TestCloseDeadSink(t *testing.T) {
	ignore := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, ignore) }) // runs last, after every other cleanup

	t.Run("nats", func(t *testing.T) {
		srv := startNATS(t, -1)
		nc := reconnecting(t, srv.ClientURL(), openGate())
		stopNATS(srv)
		o, reg := newOutputs(t, Config{Buffer: 64, Batch: 8, RetryMin: time.Millisecond, RetryMax: 10 * time.Millisecond},
			NewNATSSink(nc, "squall.alerts", 100*time.Millisecond))
		closeDead(t, o, reg, "nats", func() bool {
			return metricValue(t, reg, "squall_alert_publish_errors_total", "nats") > 0
		})
	})
	t.Run("kafka", func(t *testing.T) {
		c := startKafka(t)
		cl := producer(t, c)
		c.Close()
		o, reg := newOutputs(t, Config{Buffer: 64, Batch: 64}, NewKafkaSink(cl, testTopic))
		closeDead(t, o, reg, "kafka", func() bool { return cl.BufferedProduceRecords() > 0 })
		// The client fails the canceled records (it calls their promises
		// just before it unbuffers them).
		waitFor(t, "the client to drop the canceled records", func() bool { return cl.BufferedProduceRecords() == 0 })
	})
}

func openGate() *gateDialer {
	g := &gateDialer{}
	g.open.Store(true)
	return g
}

// closeDead sends 30 alerts to a dead sink, waits until failing (the sink
// is failing or blocked in Publish), and closes o with a deadline.
func closeDead(t *testing.T, o *Outputs, reg *prometheus.Registry, sink string, failing func() bool) {
	t.Helper()
	for i := range 30 {
		send(t, o, testAlert(t, "k", i, 0, int64(7+i)))
	}
	waitFor(t, "the sink to fail", failing)
	const deadline = 300 * time.Millisecond
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	start := time.Now()
	err := o.Close(ctx)
	if took := time.Since(start); took > deadline+time.Second {
		t.Errorf("Close took %s with a %s deadline", took, deadline)
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Close = %v, want a deadline error", err)
	}
	select {
	case <-o.exited:
	default:
		t.Fatal("Close returned before the delivery goroutines exited")
	}
	if v := metricValue(t, reg, "squall_alerts_dropped_total", sink); v != 30 {
		t.Errorf("dropped = %v, want 30", v)
	}
	if v := metricValue(t, reg, "squall_alerts_buffered", sink); v != 0 {
		t.Errorf("buffered = %v after Close", v)
	}
	if off, ok := o.Hold(0); !ok || off != 7 {
		t.Errorf("Hold(0) = %d, %v after dropping; want 7, true", off, ok)
	}
	if err := o.Send(context.Background(), testAlert(t, "k", 99, 0, 99)); !errors.Is(err, ErrClosed) {
		t.Errorf("Send after Close: %v", err)
	}
	if err2 := o.Close(context.Background()); err2 != err {
		t.Errorf("second Close = %v, want the first's %v", err2, err)
	}
}

// Hold returns the minimum undelivered offset of a partition even when
// offsets arrive out of order; alerts with Offset -1 and alerts of other
// partitions never hold.
func TestHoldOutOfOrder(t *testing.T) {
	g := newGateSink("gate")
	o, _ := newOutputs(t, Config{Buffer: 16, Batch: 1}, g)
	alerts := []struct {
		part int32
		off  int64
		hold int64 // Hold(1) before this alert is delivered; -1: none
	}{
		{1, 10, 7},
		{1, 7, 7},
		{2, -1, 7},
		{1, 12, 7},
		{1, -1, 7},
		{1, 7, 7},
		{1, 15, 15},
		{2, -1, -1},
	}
	for i, a := range alerts {
		send(t, o, testAlert(t, "k", i, a.part, a.off))
	}
	for i, a := range alerts {
		off, ok := o.Hold(1)
		if a.hold < 0 && ok || a.hold >= 0 && (!ok || off != a.hold) {
			t.Fatalf("after %d delivered: Hold(1) = %d, %v; want %d", i, off, ok, a.hold)
		}
		if off, ok := o.Hold(2); ok {
			t.Fatalf("Hold(2) = %d: only offset -1 alerts there", off)
		}
		g.release(1)
		waitFor(t, "one more delivery", func() bool { return o.Pending() == len(alerts)-i-1 })
	}
	if off, ok := o.Hold(1); ok {
		t.Errorf("Hold(1) = %d with nothing pending", off)
	}
}

// With two sinks, Hold follows the slower one.
func TestHoldFollowsSlowestSink(t *testing.T) {
	fast, slow := newGateSink("fast"), newGateSink("slow")
	o, reg := newOutputs(t, Config{Buffer: 16, Batch: 1}, fast, slow)
	for i := range 3 {
		send(t, o, testAlert(t, "k", i, 0, int64(1+i)))
	}
	fast.release(3)
	waitFor(t, "the fast sink", func() bool { return metricValue(t, reg, "squall_alerts_published_total", "fast") == 3 })
	if off, ok := o.Hold(0); !ok || off != 1 {
		t.Fatalf("Hold(0) = %d, %v; want 1 (slow sink has delivered nothing)", off, ok)
	}
	slow.release(2)
	waitFor(t, "the slow sink", func() bool { return o.Pending() == 1 })
	if off, ok := o.Hold(0); !ok || off != 3 {
		t.Fatalf("Hold(0) = %d, %v; want 3", off, ok)
	}
	slow.release(1)
	waitFor(t, "nothing pending", func() bool { return o.Pending() == 0 })
	if _, ok := o.Hold(0); ok {
		t.Fatal("Hold(0) with nothing pending")
	}
}

// The hold index gives the same answer as a scan of the undelivered
// alerts, for random partitions, offsets and deliveries, slots being reused
// as in the buffer.
func TestHoldIndexMatchesScan(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for range 200 {
		size := 1 + r.IntN(40)
		h := newHoldIndex(size)
		type alert struct {
			part int32
			off  int64
		}
		var (
			all        []alert // by seq
			tail, done int
		)
		for range 1 + r.IntN(400) {
			if tail-done < size && r.IntN(3) > 0 {
				a := alert{part: int32(r.IntN(3)), off: r.Int64N(50)}
				switch r.IntN(4) {
				case 0: // mostly increasing, like Kafka
					a.off = int64(tail)
				case 1:
					a.off = -1
				}
				if a.off >= 0 {
					h.push(int32(tail%size), a.part, a.off)
				}
				all = append(all, a)
				tail++
			} else {
				for to := min(tail, done+r.IntN(5)); done < to; done++ {
					h.delivered(int32(done % size))
				}
			}
			for p := range int32(3) {
				got, ok := h.min(p)
				want, wantOK := int64(0), false
				for _, a := range all[done:] {
					if a.part == p && a.off >= 0 && (!wantOK || a.off < want) {
						want, wantOK = a.off, true
					}
				}
				if got != want || ok != wantOK {
					t.Fatalf("min(%d) = %d, %v; want %d, %v", p, got, ok, want, wantOK)
				}
			}
		}
	}
}

// Send, Hold and the delivery path allocate nothing in steady state.
func TestSendAllocs(t *testing.T) {
	o, _ := newOutputs(t, Config{Buffer: 1024, Batch: 64}, discardSink{})
	a := testAlert(t, "web-1.cpu", 0, 3, 0)
	ctx := context.Background()
	for range 4096 { // warm up the hold queue
		if err := o.Send(ctx, a); err != nil {
			t.Fatal(err)
		}
	}
	n := testing.AllocsPerRun(1000, func() {
		a.Offset++
		if err := o.Send(ctx, a); err != nil {
			t.Fatal(err)
		}
		o.Hold(3)
	})
	// AllocsPerRun rounds down: a rare allocation (a Send that finds the
	// buffer full makes a channel to wait on) does not count.
	if n != 0 {
		t.Errorf("Send allocates %v times per alert", n)
	}
}
