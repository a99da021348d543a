package replay_test

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/squallhq/squall/internal/testutil"
	"github.com/squallhq/squall/node"
	"github.com/squallhq/squall/replay"
)

// TestReplayJetStream: a durable standalone node stores its input in its
// JetStream log (one log partition for every key); a replay of the log,
// read with an ordered consumer, equals the live state.
func TestReplayJetStream(t *testing.T) {
	var cfg node.Config
	dir := t.TempDir()
	n, c := liveNode(t, func(nc *node.Config) {
		nc.DataDir = dir
		cfg = *nc
	})
	sendAll(t, c, keyEvents())
	ctx := context.Background()
	live := liveState(t, n, c)

	nc, err := nats.Connect(n.NATSURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	src, err := replay.NewJetStreamSource(ctx, replay.JetStreamConfig{Conn: nc}, key)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	res, steps := run(t, replayConfig(t, cfg, rulesYAML), src)
	checkSteps(t, steps)
	if res.Skipped != 0 || steps[0].Offset < 1 {
		t.Errorf("skipped %d, first offset %d", res.Skipped, steps[0].Offset)
	}
	if d, err := replay.Diff(live, res.State); err != nil || len(d) != 0 {
		t.Fatalf("jetstream: replay differs from live: %v %v", d, err)
	}

	// The range the node's /debug/cluster document gives: the same state.
	// (The source counts a record applied once its batch is: wait for it.)
	var from, to int64
	testutil.Eventually(t, 20*time.Second, func() bool {
		doc, err := n.Cluster(ctx)
		var ok bool
		if err == nil {
			from, to, ok = replay.LogRange(doc, 0)
		}
		return ok && to > steps[len(steps)-1].Offset
	}, "the log's source does not count the last event applied")
	ranged, err := replay.NewJetStreamSource(ctx, replay.JetStreamConfig{Conn: nc, From: uint64(from), To: uint64(to)}, key)
	if err != nil {
		t.Fatal(err)
	}
	defer ranged.Close()
	if res, _ := run(t, replayConfig(t, cfg, rulesYAML), ranged); res.Steps != len(want) {
		t.Fatalf("log range [%d, %d): %d steps", from, to, res.Steps)
	} else if d, err := replay.Diff(live, res.State); err != nil || len(d) != 0 {
		t.Fatalf("log range [%d, %d): replay differs from live: %v %v", from, to, d, err)
	}

	// The key's restore point is the record of its oldest event still in
	// its window: the 4th (11 minutes on, it evicted the first ones).
	ke, err := c.Events(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	if ke.Restore != steps[3].Offset {
		t.Errorf("restore %d, want %d (the 4th event's sequence)", ke.Restore, steps[3].Offset)
	}

	// From the sequence of the third of the key's events: the first two are
	// not replayed, and the state differs from the live one.
	src2, err := replay.NewJetStreamSource(ctx, replay.JetStreamConfig{Conn: nc, From: uint64(steps[2].Offset)}, key)
	if err != nil {
		t.Fatal(err)
	}
	defer src2.Close()
	res2, steps2 := run(t, replayConfig(t, cfg, rulesYAML), src2)
	if len(steps2) != len(want)-2 || steps2[0].Offset != steps[2].Offset {
		t.Fatalf("from %d: %d steps, first %+v", steps[2].Offset, len(steps2), steps2[0])
	}
	if d, _ := replay.Diff(live, res2.State); len(d) == 0 {
		t.Fatal("a partial replay equals the live state")
	}
}
