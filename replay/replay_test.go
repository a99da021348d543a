package replay_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/squallhq/squall/api"
	"github.com/squallhq/squall/client"
	"github.com/squallhq/squall/event"
	"github.com/squallhq/squall/internal/testutil"
	"github.com/squallhq/squall/node"
	"github.com/squallhq/squall/replay"
	"github.com/squallhq/squall/rules"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const (
	key       = "web-1.cpu"
	t0        = 1764064800000
	rulesYAML = "rules:\n  - {name: high-cpu, match: \"*.cpu\", aggregate: max, over: 1m, op: \">\", threshold: 90}\n"
)

// keyEvents are the key's events, with a late one, a duplicate one and a
// rule that fires and resolves; and an event of another key.
func keyEvents() []event.Event {
	return []event.Event{
		{Key: key, TS: t0, Value: 40, ID: "a", Tags: map[string]string{"env": "prod"}},
		{Key: key, TS: t0 + 1000, Value: 95, ID: "b"}, // fires
		{Key: "other.cpu", TS: t0, Value: 1, ID: "o"},
		{Key: key, TS: t0 + 1500, Value: 96, ID: "b"},      // duplicate
		{Key: key, TS: t0 + 11*60_000, Value: 10, ID: "c"}, // resolves: max over 1m is 10
		{Key: key, TS: t0 + 2000, Value: 99, ID: "d"},      // late
		{Key: key, TS: t0 + 11*60_000 + 500, Value: 12.5, ID: "e", Tags: map[string]string{"env": "dev"}},
	}
}

// want are the outcomes of keyEvents' events of key.
var want = []string{"applied", "applied", "duplicate", "applied", "late", "applied"}

// liveNode starts a memory-only node with the rules, feeds it the events
// and returns a client of it.
func liveNode(t *testing.T, mod func(*node.Config)) (*node.Node, *client.Client) {
	t.Helper()
	dir := t.TempDir()
	rf := filepath.Join(dir, "rules.yaml")
	if err := os.WriteFile(rf, []byte(rulesYAML), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := node.DefaultConfig()
	cfg.DataDir = ""
	cfg.HTTPAddr, cfg.NATSAddr = "127.0.0.1:0", "127.0.0.1:0"
	cfg.Partitions = 8
	cfg.Rules = rf
	if mod != nil {
		mod(&cfg)
	}
	n, err := node.New(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	c, err := client.New("http://" + n.HTTPAddr())
	if err != nil {
		t.Fatal(err)
	}
	return n, c
}

// replayConfig is the node's configuration for a replay, with rules.
func replayConfig(t *testing.T, cfg node.Config, rulesText string) replay.Config {
	t.Helper()
	rc := replay.DefaultConfig()
	rc.Shape, rc.Partitions = cfg.Shape(), cfg.Partitions
	set, err := rules.Parse("rules.yaml", []byte(rulesText))
	if err != nil {
		t.Fatal(err)
	}
	rc.Rules = set
	return rc
}

// checkSteps checks the steps of a replay of keyEvents.
func checkSteps(t *testing.T, steps []replay.Step) {
	t.Helper()
	if len(steps) != len(want) {
		t.Fatalf("%d steps, want %d", len(steps), len(want))
	}
	var fired, resolved bool
	for i, s := range steps {
		if s.Outcome != want[i] || s.Index != i {
			t.Errorf("step %d: %+v, want outcome %s", i, s, want[i])
		}
		for _, tr := range s.Transitions {
			fired = fired || (i == 1 && tr.State == "firing" && tr.Value == 95)
			resolved = resolved || (i == 3 && tr.State == "resolved")
		}
	}
	if !fired || !resolved {
		t.Errorf("transitions: fired at step 1 %v, resolved at step 3 %v: %+v", fired, resolved, steps)
	}
	const line = "#1 2025-11-25T10:00:01Z 95 id=b applied  count=2 sum=135 min=40 max=95 mean=67.5 p99=40  high-cpu firing (95, threshold 90)"
	if got := steps[1].String(); steps[1].Offset < 0 && got != line {
		t.Errorf("step 1 line\n got %s\nwant %s", got, line)
	}
	if s := steps[1]; s.Window.Max != 95 || s.Window.Count != 2 || s.Subwindows["1m"].Max != 95 {
		t.Errorf("aggregates after step 1: %+v", s)
	}
}

func run(t *testing.T, rc replay.Config, src replay.Source) (*replay.Result, []replay.Step) {
	t.Helper()
	var steps []replay.Step
	res, err := replay.Replay(context.Background(), rc, key, src, func(s replay.Step) error {
		steps = append(steps, s)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return res, steps
}

// liveState waits until n has applied every event of key in keyEvents
// (fed through a log, the node applies them after it answers) and returns
// the key's state as the node serves it over HTTP.
func liveState(t *testing.T, n *node.Node, c *client.Client) *api.KeyState {
	t.Helper()
	ctx := context.Background()
	testutil.Eventually(t, 20*time.Second, func() bool {
		st, err := n.Get(ctx, key)
		return err == nil && st.EventsApplied+st.LateDropped+st.DuplicatesDropped == uint64(len(want))
	}, "the key's events not applied")
	live, err := c.Get(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	return live
}

func sendAll(t *testing.T, c *client.Client, evs []event.Event) {
	t.Helper()
	for _, ev := range evs { // one by one: the order the key receives them
		if _, err := c.Send(context.Background(), ev); err != nil {
			t.Fatal(err)
		}
	}
}

// TestReplayEqualsLive replays a live key from the node's kept events and
// from a file, and finds no difference with the live state; with another
// rules file, the diff names what differs.
func TestReplayEqualsLive(t *testing.T) {
	var cfg node.Config
	_, c := liveNode(t, func(nc *node.Config) { cfg = *nc })
	sendAll(t, c, keyEvents())
	ctx := context.Background()
	live, err := c.Get(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	if live.LateDropped != 1 || live.DuplicatesDropped != 1 || live.EventsApplied != 4 {
		t.Fatalf("live state %+v", live)
	}
	rc := replayConfig(t, cfg, rulesYAML)

	ke, err := c.Events(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	if ke.Restore != -1 {
		t.Errorf("restore %d without a log, want -1", ke.Restore)
	}
	src, err := replay.KeptEvents(ke)
	if err != nil {
		t.Fatal(err)
	}
	// The node's settings, as the document gives them.
	of, err := replay.ConfigOf(ke)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(of.Shape, rc.Shape) || of.Partitions != rc.Partitions {
		t.Fatalf("ConfigOf = %+v, want the node's %+v", of, rc)
	}
	// The node's rules, as it serves them.
	rd, err := c.Rules(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if rd.Count != 1 || rd.YAML != rulesYAML {
		t.Fatalf("rules %+v", rd)
	}
	if of.Rules, err = replay.RulesOf(rd); err != nil {
		t.Fatal(err)
	}
	res, steps := run(t, of, src)
	checkSteps(t, steps)
	if d, err := replay.Diff(live, res.State); err != nil || len(d) != 0 {
		t.Fatalf("kept events: replay differs from live: %v %v", d, err)
	}

	var file bytes.Buffer
	for _, ev := range keyEvents() {
		b, _ := json.Marshal(ev)
		file.Write(append(b, '\n'))
	}
	res, steps = run(t, rc, replay.NewFileSource(&file))
	checkSteps(t, steps)
	if res.Skipped != 1 {
		t.Errorf("skipped %d events of other keys, want 1", res.Skipped)
	}
	if d, err := replay.Diff(live, res.State); err != nil || len(d) != 0 {
		t.Fatalf("file: replay differs from live: %v %v", d, err)
	}

	// A lower threshold: the rule fires on the first event and stays
	// firing (max over 1m is 12.5 at the end, above 11).
	src, _ = replay.KeptEvents(ke)
	other := strings.Replace(rulesYAML, "threshold: 90", "threshold: 11", 1)
	res, _ = run(t, replayConfig(t, cfg, other), src)
	d, err := replay.Diff(live, res.State)
	if err != nil {
		t.Fatal(err)
	}
	if len(d) == 0 || !strings.Contains(strings.Join(d, "\n"), `rules.high-cpu.state: live "inactive", replay "firing"`) {
		t.Fatalf("diff with other rules = %q", d)
	}
}

// TestKeptEventsIncomplete: once a key received more events than it keeps,
// its kept events are not offered for a replay.
func TestKeptEventsIncomplete(t *testing.T) {
	_, c := liveNode(t, func(nc *node.Config) { nc.RecentEvents = 3 })
	sendAll(t, c, keyEvents())
	ke, err := c.Events(context.Background(), key)
	if err != nil {
		t.Fatal(err)
	}
	if ke.Complete || len(ke.Events) != 3 || ke.Received != 6 {
		t.Fatalf("kept events %+v", ke)
	}
	if _, err := replay.KeptEvents(ke); err == nil {
		t.Fatal("KeptEvents of an incomplete document: no error")
	}
}

// TestDiff names each differing field and leaves out wall-clock ones.
func TestDiff(t *testing.T) {
	a := &api.KeyState{Key: "k", Node: "n1", EventsApplied: 2, Tags: map[string]string{"env": "prod"}}
	b := &api.KeyState{Key: "k", Node: "replay", EventsApplied: 3}
	b.Window.Max = 7
	d, err := replay.Diff(a, b)
	if err != nil {
		t.Fatal(err)
	}
	wantD := []string{`events_applied: live 2, replay 3`, `tags: only live ({"env":"prod"})`, `window.max: live 0, replay 7`}
	if strings.Join(d, "\n") != strings.Join(wantD, "\n") {
		t.Fatalf("Diff =\n%s\nwant\n%s", strings.Join(d, "\n"), strings.Join(wantD, "\n"))
	}
}

// A file's blank lines are skipped; a line without ts, or one the node
// would reject, is an error naming its line.
func TestFileSourceErrors(t *testing.T) {
	for _, tc := range []struct{ file, err string }{
		{"\n{\"key\":\"k\",\"ts\":1764064800000,\"value\":1}\n\n{\"key\":\"k\",\"value\":2}\n", "line 4: no ts"},
		{"{\"key\":\"k\",\"ts\":1764064800000,\"value\":1}\n{\"key\":\"\",\"ts\":1764064800000,\"value\":1}\n", "line 2: key"},
		{"{\"key\":\"k\",\"ts\":1764064800000,\"value\":1}\nnot json\n", "line 2"},
	} {
		res, err := replay.Replay(context.Background(), replay.DefaultConfig(), "k", replay.NewFileSource(strings.NewReader(tc.file)), nil)
		if err == nil || !strings.Contains(err.Error(), tc.err) || res.Steps != 1 {
			t.Errorf("%q: steps %d, err %v, want %q after one step", tc.file, res.Steps, err, tc.err)
		}
	}
}

func TestFormatValue(t *testing.T) {
	for v, want := range map[float64]string{
		155.0 / 3: "51.66666667", 0.1 + 0.2: "0.3", 1764064800000: "1764064800000", -40: "-40",
		1e20: "1e+20", 2.5e-7: "2.5e-07", 61.25: "61.25",
	} {
		if got := replay.FormatValue(v); got != want {
			t.Errorf("FormatValue(%v) = %q, want %q", v, got, want)
		}
	}
}
