package node

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"time"

	"github.com/squallhq/squall/api"
	"github.com/squallhq/squall/replay"
)

// What the web console reads beyond the other debug endpoints: a key's
// per-bucket series, a replay of a key on its owner, and every member's
// readiness.

// Series implements httpapi.Backend: the per-bucket series of key's
// window, from its owner in a cluster.
func (n *Node) Series(ctx context.Context, key string) (*api.KeySeries, error) {
	if n.cl != nil {
		return ownerRead(ctx, n.cl, key, n.engine.Series, n.cl.tr.KeySeries)
	}
	return n.engine.Series(ctx, key)
}

// Replay implements httpapi.Backend: a replay of key's kept events, run
// by its owner in a cluster.
func (n *Node) Replay(ctx context.Context, key string) (*api.KeyReplay, error) {
	if n.cl != nil {
		return ownerRead(ctx, n.cl, key, n.replayKey, n.cl.tr.KeyReplay)
	}
	return n.replayKey(ctx, key)
}

// KeySeries implements transport.Handler.
func (c *clustered) KeySeries(ctx context.Context, key string) (*api.KeySeries, error) {
	return c.n.engine.Series(ctx, key)
}

// KeyReplay implements transport.Handler.
func (c *clustered) KeyReplay(ctx context.Context, key string) (*api.KeyReplay, error) {
	return c.n.replayKey(ctx, key)
}

// maxReplays bounds the replays a node runs at once (GET
// /debug/actors/{key}/replay); more wait their turn.
const maxReplays = 2

// replayKey replays the events key's actor on this node keeps in a fresh
// key actor of this node's shape, partitions and rules in force (package
// replay, as squallctl replay does), and compares the result with the live
// key. When the kept events are not all the key received, it replays
// nothing and says so in the document (Complete false, Error). Events the
// key receives while the replay runs show as differences.
func (n *Node) replayKey(ctx context.Context, key string) (*api.KeyReplay, error) {
	// Each replay builds an engine of its own: a few at once at most.
	select {
	case n.replays <- struct{}{}:
		defer func() { <-n.replays }()
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	ke, err := n.engine.Events(ctx, key)
	if err != nil {
		return nil, err
	}
	kr := &api.KeyReplay{Key: key, Node: ke.Node, Partition: ke.Partition, Complete: ke.Complete,
		Kept: ke.Kept, Received: ke.Received, Steps: []api.ReplayStep{}, Diff: []string{}}
	src, err := replay.KeptEvents(ke)
	if errors.Is(err, replay.ErrIncomplete) {
		kr.Error = err.Error() + ": replay it from the log (squallctl replay --from-log)"
		return kr, nil
	}
	if err != nil {
		return nil, err
	}
	defer src.Close()
	cfg, err := replay.ConfigOf(ke)
	if err != nil {
		return nil, err
	}
	if n.alerts != nil {
		cfg.Rules = n.alerts.h.Rules()
	}
	var steps []replay.Step
	res, err := replay.Replay(ctx, cfg, key, src, func(s replay.Step) error {
		steps = append(steps, s)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("replay of %q: %w", key, err)
	}
	for _, st := range steps {
		rs := api.ReplayStep{ReplayEvent: st.ReplayEvent}
		for _, tr := range st.Transitions {
			rs.Transitions = append(rs.Transitions, tr.Alert())
		}
		kr.Steps = append(kr.Steps, rs)
	}
	kr.State = res.State
	live, err := n.engine.Get(ctx, key)
	if err != nil {
		return nil, fmt.Errorf("replay of %q: live state: %w", key, err)
	}
	if kr.Diff, err = replay.Diff(live, res.State); err != nil {
		return nil, err
	}
	if kr.Diff == nil {
		kr.Diff = []string{}
	}
	return kr, nil
}

// Members implements httpapi.Backend: this node's readiness and
// partitions in motion, and each peer's, from its GET /debug/cluster on its
// HTTP address, all at once.
func (n *Node) Members(ctx context.Context) (*api.Members, error) {
	self, err := n.Cluster(ctx)
	if err != nil {
		return nil, err
	}
	doc := &api.Members{Self: n.cfg.NodeID, Members: map[string]api.MemberStatus{n.cfg.NodeID: api.StatusOf(self)}}
	if n.cl == nil {
		return doc, nil
	}
	peers := askPeers(n, func(m api.Member) api.MemberStatus {
		var cl api.Cluster
		code, err := n.peerGet(ctx, m.HTTPAddr, api.PathCluster, 2*time.Second, &cl)
		switch {
		case err != nil:
			return api.MemberStatus{Reason: "not reachable: " + err.Error()}
		case code != http.StatusOK:
			return api.MemberStatus{Reason: "not reachable: " + m.HTTPAddr + ": " + http.StatusText(code)}
		}
		return api.StatusOf(&cl)
	})
	maps.Copy(doc.Members, peers)
	return doc, nil
}
