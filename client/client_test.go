package client_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/squallhq/squall/client"
	"github.com/squallhq/squall/event"
	"github.com/squallhq/squall/node"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func startNode(t testing.TB, httpAddr string, mod func(*node.Config)) *node.Node {
	t.Helper()
	cfg := node.DefaultConfig()
	cfg.DataDir = "" // memory only: answers once applied
	cfg.HTTPAddr = httpAddr
	cfg.NATSAddr = "127.0.0.1:0"
	cfg.Partitions = 4
	if mod != nil {
		mod(&cfg)
	}
	n, err := node.New(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	return n
}

// Send retries while the node cannot be reached, and succeeds once it is up.
func TestSendRetriesUntilNodeUp(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	c, err := client.New("http://"+addr, client.WithRetries(8, 20*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := c.Send(context.Background(), event.Event{Key: "k", TS: 1764064800000, Value: 1})
		done <- err
	}()
	time.Sleep(100 * time.Millisecond) // let the first attempts fail
	n := startNode(t, addr, nil)
	if err := <-done; err != nil {
		t.Fatalf("Send = %v", err)
	}
	st, err := client.New("http://" + n.HTTPAddr())
	if err != nil {
		t.Fatal(err)
	}
	if s, err := st.Get(context.Background(), "k"); err != nil || s.Window.Count != 1 {
		t.Fatalf("Get = %+v %v", s, err)
	}
}

// Events with ids are counted once however often they are sent: what makes
// a retry safe.
func TestResendIsDeduplicated(t *testing.T) {
	n := startNode(t, "127.0.0.1:0", nil)
	c, err := client.New("http://" + n.HTTPAddr())
	if err != nil {
		t.Fatal(err)
	}
	evs := []event.Event{{Key: "k", TS: 1764064800000, Value: 1, ID: "a"}, {Key: "k", TS: 1764064800001, Value: 2, ID: "b"}}
	for i := 0; i < 3; i++ {
		if _, err := c.Send(context.Background(), evs...); err != nil {
			t.Fatal(err)
		}
	}
	s, err := c.Get(context.Background(), "k")
	if err != nil || s.Window.Count != 2 || s.DuplicatesDropped != 4 {
		t.Fatalf("state %+v %v", s, err)
	}
}

// A batch refused as a whole is an error that is not retried.
func TestSendErrors(t *testing.T) {
	n := startNode(t, "127.0.0.1:0", func(c *node.Config) { c.AuthToken = "t" })
	c, err := client.New("http://"+n.HTTPAddr(), client.WithRetries(5, time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Send(context.Background(), event.Event{Key: "k", Value: 1})
	var se *client.StatusError
	if !errors.As(err, &se) || se.Status != 401 {
		t.Fatalf("Send without token = %v", err)
	}
	c, _ = client.New("http://"+n.HTTPAddr(), client.WithToken("t"))
	if res, err := c.Send(context.Background(), event.Event{Key: "", Value: 1}); !errors.As(err, &se) || se.Status != 400 || res != nil {
		t.Fatalf("Send of an invalid event = %v", err)
	}
	if _, err := client.New("localhost:8080"); err == nil {
		t.Fatal("New accepted a URL without scheme")
	}
}

// Events returns every event a key received, late and duplicate ones with
// their outcome, ids and tags; a key ending in "/events" is its own key.
func TestEvents(t *testing.T) {
	n := startNode(t, "127.0.0.1:0", nil)
	c, err := client.New("http://" + n.HTTPAddr())
	if err != nil {
		t.Fatal(err)
	}
	const t0 = 1764064800000
	for _, key := range []string{"web/events", "web"} {
		evs := []event.Event{
			{Key: key, TS: t0, Value: 1, ID: "a", Tags: map[string]string{"env": "prod"}},
			{Key: key, TS: t0 + 11*60_000, Value: 2, ID: "x"},
			{Key: key, TS: t0 + 1000, Value: 3, ID: "y"},          // late: 11 minutes behind
			{Key: key, TS: t0 + 11*60_000 + 1, Value: 4, ID: "b"}, // applied
			{Key: key, TS: t0 + 11*60_000 + 2, Value: 5, ID: "b"}, // duplicate
		}
		if _, err := c.Send(context.Background(), evs...); err != nil {
			t.Fatal(err)
		}
		ke, err := c.Events(context.Background(), key)
		if err != nil {
			t.Fatal(err)
		}
		want := []string{"applied", "applied", "late", "applied", "duplicate"}
		if ke.Key != key || ke.Received != 5 || !ke.Complete || ke.Kept != 32 || len(ke.Events) != len(want) {
			t.Fatalf("%s: events %+v", key, ke)
		}
		for i, e := range ke.Events {
			if e.Outcome != want[i] || e.Value != evs[i].Value || e.TS != evs[i].TS || e.ID != evs[i].ID || e.Key != key {
				t.Errorf("%s: event %d = %+v, want %+v %s", key, i, e, evs[i], want[i])
			}
		}
		if ke.Events[0].Tags["env"] != "prod" {
			t.Errorf("%s: tags of the first event = %v", key, ke.Events[0].Tags)
		}
	}
	if _, err := c.Events(context.Background(), "nope"); !errors.Is(err, client.ErrNotFound) {
		t.Fatalf("Events of a missing key: %v", err)
	}
}
