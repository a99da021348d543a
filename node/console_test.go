package node

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/squallhq/squall/actors"
	"github.com/squallhq/squall/api"
	"github.com/squallhq/squall/event"
)

// TestReplayKey: GET /debug/actors/{key}/replay replays the kept events
// with the node's rules (the transition is in the steps) and finds the
// replay equal to the live key; once the key has received more events
// than it keeps, 409 and why.
func TestReplayKey(t *testing.T) {
	n := startNode(t, func(c *Config) { c.Rules = writeRules(t); c.RecentEvents = 3 })
	t0 := time.Now().Add(-time.Minute).UnixMilli()
	submit := func(evs ...event.Event) {
		t.Helper()
		if err := n.engine.Submit(context.Background(), evs, make([]actors.Result, len(evs))); err != nil {
			t.Fatal(err)
		}
	}
	submit(event.Event{Key: "k", TS: t0, Value: 10}, event.Event{Key: "k", TS: t0 + 1000, Value: 60, ID: "a"},
		event.Event{Key: "k", TS: t0 + 1500, Value: 70, ID: "a"})

	var kr api.KeyReplay
	if code := getJSON(t, n, "/debug/actors/k/replay", &kr); code != http.StatusOK || !kr.Complete || len(kr.Diff) != 0 ||
		len(kr.Steps) != 3 || kr.Steps[2].Outcome != "duplicate" || kr.State == nil || kr.State.Window.Count != 2 {
		t.Fatalf("replay = %d %+v", code, kr)
	}
	if tr := kr.Steps[1].Transitions; len(tr) != 1 || tr[0].Rule != "hot" || tr[0].State != "firing" || *tr[0].Value != 60 {
		t.Fatalf("step 1 transitions %+v, want hot firing at 60", tr)
	}
	var sr api.KeySeries
	if code := getJSON(t, n, "/debug/actors/k/series", &sr); code != http.StatusOK || len(sr.Buckets) != 2 || sr.Buckets[1].Count != 1 {
		t.Fatalf("series = %d %+v", code, sr)
	}

	submit(event.Event{Key: "k", TS: t0 + 2000, Value: 1})
	kr = api.KeyReplay{}
	if code := getJSON(t, n, "/debug/actors/k/replay", &kr); code != http.StatusConflict || kr.Complete || kr.Received != 4 ||
		kr.Kept != 3 || !strings.Contains(kr.Error, "--from-log") || kr.State != nil {
		t.Fatalf("replay of a key with events dropped = %d %+v, want 409", code, kr)
	}
	var ms api.Members
	if code := getJSON(t, n, "/debug/cluster/members", &ms); code != http.StatusOK || ms.Self != n.ID() || !ms.Members[n.ID()].Ready ||
		len(ms.Members[n.ID()].Moving) != 0 || ms.Members[n.ID()].Replaying == nil {
		t.Fatalf("members = %d %+v", code, ms)
	}
}

// getJSON decodes the answer of GET path on n into v and returns its status.
func getJSON(t *testing.T, n *Node, path string, v any) int {
	t.Helper()
	resp, err := http.Get("http://" + n.HTTPAddr() + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatalf("GET %s: %s: %v", path, resp.Status, err)
	}
	return resp.StatusCode
}
