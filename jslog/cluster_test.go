package jslog

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/squallhq/squall/actors"
	"github.com/squallhq/squall/internal/natstest"
)

// TestClusterLeaderLoss: with 3 replicas, shutting the stream leader down
// loses no acknowledged message, and consumption goes on.
func TestClusterLeaderLoss(t *testing.T) {
	servers := natstest.StartJSCluster(t, 3)
	nc, err := nats.Connect(natstest.ClientURLs(servers), nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	cfg := Config{Conn: nc, Partitions: 3, Replicas: 3, CommitInterval: 50 * time.Millisecond}
	var prod *Producer
	eventually(t, func() bool {
		p, err := NewProducer(cfg)
		if err != nil {
			return false
		}
		prod = p
		return true
	}, "no stream")
	t.Cleanup(func() { prod.Close() })
	sink := newSink()
	m := newManager(t, cfg, sink)
	startAll(m, 3)

	acked := map[float64]bool{}
	produce := func(from int) {
		evs := events(20, 9, float64(from))
		out := make([]actors.Result, len(evs))
		_ = prod.Submit(context.Background(), evs, out)
		for i, r := range out {
			if r == actors.ResultApplied {
				acked[evs[i].Value] = true
			}
		}
	}
	for b := range 20 {
		produce(b * 20)
	}
	js, _ := jetstream.New(nc)
	s, err := js.Stream(context.Background(), DefaultStream)
	if err != nil {
		t.Fatal(err)
	}
	leader := s.CachedInfo().Cluster.Leader
	for _, srv := range servers {
		if srv.Name() == leader {
			srv.Shutdown()
			srv.WaitForShutdown()
		}
	}
	// Batches go on: some fail while a new leader is elected.
	for b := 20; len(acked) < 800; b++ {
		produce(b * 20)
	}
	eventually(t, func() bool {
		sink.mu.Lock()
		defer sink.mu.Unlock()
		got := map[float64]bool{}
		for _, as := range sink.got {
			for _, a := range as {
				got[a.value] = true
			}
		}
		for v := range acked {
			if !got[v] {
				return false
			}
		}
		return true
	}, "acknowledged events missing after the leader %s stopped", leader)
	checkOrder(t, sink, 3)
}

// TestClusterConcurrentCreate: nodes starting together create the
// replicated stream at once, and every one of them gets it.
func TestClusterConcurrentCreate(t *testing.T) {
	servers := natstest.StartJSCluster(t, 3)
	for round := range 4 { // the server answers none of them about one round in two
		cfg := Config{Partitions: 64, Replicas: 3,
			Stream: fmt.Sprintf("LOG%d", round), Subject: fmt.Sprintf("log%d", round)}
		var wg sync.WaitGroup
		for _, s := range servers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				nc, err := nats.Connect(s.ClientURL())
				if err != nil {
					t.Error(err)
					return
				}
				defer nc.Close()
				c := cfg
				c.Conn = nc
				p, err := NewProducer(c)
				if err != nil {
					t.Errorf("round %d, via %s: %v", round, s.Name(), err)
					return
				}
				p.Close()
			}()
		}
		wg.Wait()
	}
}
