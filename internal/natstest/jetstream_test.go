package natstest

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"
)

// TestJSClusterKillRestart kills a server of a 3-server cluster holding an
// R3 stream, publishes while it is down, restarts it on its ports and
// store, and reads every message back from it alone.
func TestJSClusterKillRestart(t *testing.T) {
	c := NewJSCluster(t, 3)
	urls := c.ClientURLs()
	js := c.JetStream(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "T", Subjects: []string{"t.>"}, Replicas: 3}); err != nil {
		t.Fatal(err)
	}
	publish := func(from, to int) {
		t.Helper()
		for i := from; i < to; i++ {
			// Retried: the stream may be electing a leader after a kill.
			for {
				// Each attempt on its own deadline: a request sent to the
				// server being killed is never answered.
				actx, acancel := context.WithTimeout(ctx, 2*time.Second)
				_, err := js.Publish(actx, "t.x", []byte(fmt.Sprint(i)), jetstream.WithMsgID(fmt.Sprint(i)))
				acancel()
				if err == nil {
					break
				}
				if ctx.Err() != nil {
					t.Fatalf("publish %d: %v", i, err)
				}
			}
		}
	}
	publish(0, 50)
	victim := 1
	c.Kill(victim)
	c.Kill(victim) // a second kill does nothing
	if c.Up(victim) || len(c.Servers()) != 2 {
		t.Fatalf("after Kill: up %v, %d servers", c.Up(victim), len(c.Servers()))
	}
	publish(50, 100)
	if err := c.Restart(victim); err != nil {
		t.Fatal(err)
	}
	if err := c.Restart(victim); err == nil {
		t.Fatal("restart of a server that is up: no error")
	}
	if c.ClientURLs() != urls {
		t.Fatalf("client URLs changed across a restart: %s, then %s", urls, c.ClientURLs())
	}
	// The restarted server's replica catches up with the stream, from
	// its store and the others.
	s := c.Servers()[victim]
	for {
		if jsi, err := s.Jsz(&server.JSzOptions{}); err == nil && jsi.Messages == 100 {
			break
		}
		if ctx.Err() != nil {
			t.Fatal("the restarted server's replica did not catch up")
		}
		time.Sleep(20 * time.Millisecond) // polling the server's state
	}
	if s.ClientURL() != fmt.Sprintf("nats://127.0.0.1:%d", c.opts[victim].Port) {
		t.Fatalf("restarted on %s", s.ClientURL())
	}
}
