package chaos

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"time"
)

// settlePoll is the pause between two checks of a settling cluster.
const settlePoll = 250 * time.Millisecond

// Settled is what WaitSettled found: when the cluster was first seen
// settled, and its generation then.
type Settled struct {
	At         time.Time
	Generation int64
}

// WaitSettled polls until every node of c is up and the nodes agree (see
// settledErr), and, with caughtUp, every partition's source has applied the
// log up to its end offset; twice in a row with the same generation (and
// end offsets), so that a cluster passing through a settled-looking moment
// is not taken for settled. It returns when it was first seen so, or the
// last reason it was not after timeout. A node that exited on its own ends
// the wait at once.
func WaitSettled(ctx context.Context, c *Cluster, timeout time.Duration, caughtUp bool) (Settled, error) {
	hc := &http.Client{Timeout: 2 * time.Second}
	defer hc.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	tick := time.NewTicker(settlePoll)
	defer tick.Stop()
	var prev *Settled
	var prevEnds map[int32]int64
	var last error
	for {
		for _, n := range c.Nodes {
			if exited, err := n.Exited(); exited {
				return Settled{}, fmt.Errorf("%s exited on its own: %v", n.ID, err)
			}
		}
		at := time.Now()
		views, gen, err := settledNow(ctx, c, hc)
		var ends map[int32]int64
		if err == nil && caughtUp {
			ends, err = c.EndOffsets(ctx)
			if err == nil {
				err = caughtUpErr(views, ends)
			}
		}
		switch {
		case err != nil:
			prev, last = nil, err
		case prev != nil && prev.Generation == gen && maps.Equal(prevEnds, ends):
			return *prev, nil
		default:
			prev, prevEnds = &Settled{At: at, Generation: gen}, ends
		}
		select {
		case <-ctx.Done():
			if last == nil {
				last = ctx.Err()
			}
			return Settled{}, fmt.Errorf("not settled after %s: %w", timeout, last)
		case <-tick.C:
		}
	}
}

// settledNow fetches every node's view and checks that they agree.
func settledNow(ctx context.Context, c *Cluster, hc *http.Client) (map[string]*Obs, int64, error) {
	views := map[string]*Obs{}
	for _, n := range c.Nodes {
		if s := n.State(); s != Up {
			return nil, 0, fmt.Errorf("%s is %s", n.ID, s)
		}
		o := fetchCluster(ctx, hc, n.ID, n.HTTPAddr)
		if o.Err != "" {
			return nil, 0, fmt.Errorf("%s: %s", n.ID, o.Err)
		}
		views[n.ID] = &o
	}
	gen, err := settledErr(views, c.Partitions())
	return views, gen, err
}

// Partitions returns the cluster's partition count.
func (c *Cluster) Partitions() int32 { return c.partitions }

// settledErr reports why views, one per node, are not those of a settled
// cluster: every node sees all of them as members and the same
// generation; one acts as leader; the assignment gives every partition to
// one of them, balanced; each node serves exactly what it is assigned,
// holds no partition in another state, and runs a live source for each;
// and says it is ready when it says. It returns the generation.
func settledErr(views map[string]*Obs, partitions int32) (int64, error) {
	var ids []string
	for id := range views {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	gen := int64(-1)
	leaders := 0
	for _, id := range ids {
		o := views[id]
		if !slices.Equal(o.Members, ids) {
			return 0, fmt.Errorf("%s sees members %v, want %v", id, o.Members, ids)
		}
		if gen >= 0 && o.Generation != gen {
			return 0, fmt.Errorf("generations differ: %d and %d", gen, o.Generation)
		}
		gen = o.Generation
		if o.ActingLeader() {
			leaders++
		}
		if o.Ready != nil && !*o.Ready {
			return 0, fmt.Errorf("%s not ready", id)
		}
		if len(o.Unsettled) > 0 {
			return 0, fmt.Errorf("%s holds partitions %v in a state other than serving", id, o.Unsettled)
		}
		var mine, serving []int32
		for p := range partitions {
			owner := o.Owners[p]
			if !slices.Contains(ids, owner) {
				return 0, fmt.Errorf("%s: partition %d owned by %q", id, p, owner)
			}
			if owner == id {
				mine = append(mine, p)
				if st := o.Sources[p].State; st != SourceLive {
					return 0, fmt.Errorf("%s: source of partition %d is %q", id, p, st)
				}
			}
		}
		for _, s := range o.Serves {
			serving = append(serving, s.Partition)
		}
		slices.Sort(serving)
		if !slices.Equal(mine, serving) {
			return 0, fmt.Errorf("%s serves %v, assigned %v", id, serving, mine)
		}
		if len(o.Sources) != len(mine) {
			return 0, fmt.Errorf("%s runs %d sources for %d partitions", id, len(o.Sources), len(mine))
		}
	}
	if leaders != 1 {
		return 0, fmt.Errorf("%d acting leaders", leaders)
	}
	owned := map[string]int{}
	for _, owner := range views[ids[0]].Owners {
		owned[owner]++
	}
	lo, hi := int(partitions), 0
	for _, id := range ids {
		lo, hi = min(lo, owned[id]), max(hi, owned[id])
	}
	if hi-lo > 1 {
		return 0, fmt.Errorf("assignment not balanced over %v: %v", ids, owned)
	}
	return gen, nil
}

// caughtUpErr reports a partition whose owner has not applied the log up
// to ends. The ends are read from the log itself (Cluster.EndOffsets: the
// topic's end offsets, or the stream's last sequence per subject), not
// taken from the high watermark the nodes report: a node that
// under-reported its log's end would otherwise pass as caught up.
func caughtUpErr(views map[string]*Obs, ends map[int32]int64) error {
	var errs []error
	for _, o := range views {
		for p, owner := range o.Owners {
			if owner != o.Node {
				continue
			}
			if got, want := o.Sources[p].Applied, ends[p]; got < want {
				errs = append(errs, fmt.Errorf("partition %d: %s applied up to %d of %d", p, o.Node, got, want))
			}
		}
	}
	return errors.Join(errs...)
}
