package node

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"go.uber.org/goleak"

	"github.com/squallhq/squall/api"
	"github.com/squallhq/squall/client"
	"github.com/squallhq/squall/event"
	"github.com/squallhq/squall/internal/testutil"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func startNode(t testing.TB, mod func(*Config)) *Node {
	t.Helper()
	cfg := DefaultConfig()
	cfg.DataDir = "" // memory only: answers once applied
	cfg.HTTPAddr = "127.0.0.1:0"
	cfg.NATSAddr = "127.0.0.1:0"
	cfg.Partitions = 8
	if mod != nil {
		mod(&cfg)
	}
	n, err := New(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := n.Close(); err != nil {
			t.Error(err)
		}
	})
	return n
}

func TestTakenPortNamesTheFlag(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	taken := ln.Addr().String()
	for _, c := range []struct {
		mod  func(*Config)
		flag string
	}{
		{func(c *Config) { c.HTTPAddr = taken; c.NATSAddr = "127.0.0.1:0" }, "--http-addr"},
		{func(c *Config) { c.HTTPAddr = "127.0.0.1:0"; c.NATSAddr = taken }, "--nats-addr"},
	} {
		cfg := DefaultConfig()
		cfg.DataDir = "" // memory only: answers once applied
		c.mod(&cfg)
		_, err := New(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
		if err == nil || !strings.Contains(err.Error(), c.flag) || !strings.Contains(err.Error(), "in use") {
			t.Errorf("New with %s taken = %v", c.flag, err)
		}
	}
}

func TestClientOverHTTPAndNATS(t *testing.T) {
	n := startNode(t, nil)
	ctx := context.Background()
	c, err := client.New("http://" + n.HTTPAddr())
	if err != nil {
		t.Fatal(err)
	}
	res, err := c.Send(ctx, event.Event{Key: "web-1.cpu", TS: 1764064800000, Value: 40},
		event.Event{Key: "web-1.cpu", TS: 1764064801000, Value: 60})
	if err != nil || res.Accepted != 2 {
		t.Fatalf("Send = %+v, %v", res, err)
	}
	nc, err := nats.Connect(n.NATSURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	cn, err := client.New("http://"+n.HTTPAddr(), client.WithNATS(nc, ""))
	if err != nil {
		t.Fatal(err)
	}
	res, err = cn.Send(ctx, event.Event{Key: "web-1.cpu", TS: 1764064802000, Value: 80},
		event.Event{Key: "", TS: 1764064802000, Value: 1})
	if err != nil || res.Accepted != 1 || len(res.Rejected) != 1 || res.Rejected[0].Field != "key" {
		t.Fatalf("Send over NATS = %+v, %v", res, err)
	}
	st, err := c.Get(ctx, "web-1.cpu")
	if err != nil {
		t.Fatal(err)
	}
	if w := st.Window; w.Count != 3 || w.Sum != 180 || w.Min != 40 || w.Max != 80 || w.Mean != 60 {
		t.Fatalf("window %+v", w)
	}
	if _, err := c.Get(ctx, "missing"); err != client.ErrNotFound {
		t.Fatalf("Get(missing) = %v", err)
	}
	// Fire-and-forget publishes are applied too.
	if err := nc.Publish("squall.events", []byte(`{"key":"pub","ts":1764064800000,"value":3}`)); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 5*time.Second, func() bool {
		st, err := c.Get(ctx, "pub")
		return err == nil && st.Window.Count == 1
	}, "published event not applied")
}

// A key idle past --idle-ttl disappears from /debug/actors and the number
// of live actors drops.
func TestPassivationOverHTTP(t *testing.T) {
	n := startNode(t, func(c *Config) { c.IdleTTL = 300 * time.Millisecond })
	base := "http://" + n.HTTPAddr()
	post := func(body string) {
		resp, err := http.Post(base+"/v1/events", "application/x-ndjson", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 202 {
			t.Fatalf("POST = %d", resp.StatusCode)
		}
	}
	var b strings.Builder
	for i := 0; i < 500; i++ {
		fmt.Fprintf(&b, `{"key":"idle-%d","ts":1764064800000,"value":1}`+"\n", i)
	}
	post(b.String())
	list := func() api.KeyList {
		resp, err := http.Get(base + "/debug/actors?limit=1000")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var kl api.KeyList
		if err := json.NewDecoder(resp.Body).Decode(&kl); err != nil {
			t.Fatal(err)
		}
		return kl
	}
	if kl := list(); kl.Live != 500 || len(kl.Keys) != 500 {
		t.Fatalf("live %d keys %d, want 500", kl.Live, len(kl.Keys))
	}
	// Keep one key busy while the others idle out.
	deadline := time.Now().Add(30 * time.Second)
	for {
		post(`{"key":"busy","ts":1764064800000,"value":1}`)
		kl := list()
		if kl.Live == 1 && len(kl.Keys) == 1 && kl.Keys[0].Key == "busy" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("idle keys not passivated: live %d", kl.Live)
		}
		time.Sleep(50 * time.Millisecond)
	}
	resp, err := http.Get(base + "/debug/actors/idle-7")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 404 {
		t.Fatalf("passivated key GET = %d", resp.StatusCode)
	}
}

func TestClusterStandalone(t *testing.T) {
	n := startNode(t, func(c *Config) { c.NodeID = "n1" })
	resp, err := http.Get("http://" + n.HTTPAddr() + "/debug/cluster")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var c api.Cluster
	if err := json.NewDecoder(resp.Body).Decode(&c); err != nil {
		t.Fatal(err)
	}
	if c.Self != "n1" || c.Leader != "n1" || len(c.Members) != 1 || len(c.Members[0].Partitions) != 8 || len(c.Assignment) != 8 || c.Assignment["7"] != "n1" {
		t.Fatalf("cluster %+v", c)
	}
}
