package client_test

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/squallhq/squall/api"
	"github.com/squallhq/squall/client"
	"github.com/squallhq/squall/event"
	"github.com/squallhq/squall/node"
)

// Keys, Cluster, Alerts and GetRaw read what the node serves, with the
// token, and fail with the node's status and message without it.
func TestReads(t *testing.T) {
	rulesFile := filepath.Join(t.TempDir(), "rules.yaml")
	if err := os.WriteFile(rulesFile, []byte(`rules:
  - {name: high, match: "web-*", aggregate: max, over: 1m, op: ">", threshold: 90}
`), 0o644); err != nil {
		t.Fatal(err)
	}
	n := startNode(t, "127.0.0.1:0", func(c *node.Config) { c.AuthToken = "tok"; c.Rules = rulesFile; c.NodeID = "n1" })
	c, err := client.New("http://"+n.HTTPAddr(), client.WithToken("tok"))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := c.Send(ctx,
		event.Event{Key: "web-1", TS: 1764064800000, Value: 95},
		event.Event{Key: "web-2", TS: 1764064800000, Value: 5},
		event.Event{Key: "db-1", TS: 1764064800000, Value: 1}); err != nil {
		t.Fatal(err)
	}

	kl, err := c.Keys(ctx, client.KeysOptions{Prefix: "web-", Limit: 1, Scope: client.ScopeCluster})
	if err != nil || len(kl.Keys) != 1 || kl.Keys[0].Key != "web-1" || !kl.Truncated || kl.Live != 3 {
		t.Fatalf("Keys(web-, 1) = %+v, %v", kl, err)
	}
	kl, err = c.Keys(ctx, client.KeysOptions{})
	if err != nil || len(kl.Keys) != 3 || kl.Truncated {
		t.Fatalf("Keys() = %+v, %v", kl, err)
	}
	var se *client.StatusError
	if _, err := c.Keys(ctx, client.KeysOptions{Limit: 1_000_000}); !errors.As(err, &se) || se.Status != 400 || !strings.Contains(se.Message, "limit") {
		t.Fatalf("Keys(limit 1e6) = %v", err)
	}

	cl, err := c.Cluster(ctx)
	if err != nil || cl.Self != "n1" || cl.Leader != "n1" || !cl.Ready || cl.PartitionCount != 4 || len(cl.Members) != 1 {
		t.Fatalf("Cluster() = %+v, %v", cl, err)
	}

	al, err := c.Alerts(ctx, client.ScopeCluster)
	if err != nil || len(al.Alerts) != 1 || al.Alerts[0].Node != "n1" {
		t.Fatalf("Alerts() = %+v, %v", al, err)
	}
	var doc api.Alert
	if err := json.Unmarshal(al.Alerts[0].Alert, &doc); err != nil || doc.Rule != "high" || doc.Key != "web-1" || doc.State != "firing" ||
		doc.Value == nil || *doc.Value != 95 || doc.ID != "high/web-1/1764064800000/firing" {
		t.Fatalf("alert %s: %v", al.Alerts[0].Alert, err)
	}

	raw, err := c.GetRaw(ctx, "web-1")
	if err != nil {
		t.Fatal(err)
	}
	var st struct {
		Key    string
		Window struct{ Count int }
	}
	if err := json.Unmarshal(raw, &st); err != nil || st.Key != "web-1" || st.Window.Count != 1 {
		t.Fatalf("GetRaw = %s, %v", raw, err)
	}
	if _, err := c.GetRaw(ctx, "nope"); !errors.Is(err, client.ErrNotFound) {
		t.Fatalf("GetRaw(nope) = %v", err)
	}

	anon, err := client.New("http://" + n.HTTPAddr())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := anon.Cluster(ctx); !errors.As(err, &se) || se.Status != 401 || se.Message != "missing or wrong bearer token" {
		t.Fatalf("Cluster without token = %v", err)
	}
	if _, err := anon.Get(ctx, "web-1"); !errors.As(err, &se) || se.Status != 401 {
		t.Fatalf("Get without token = %v", err)
	}
}
