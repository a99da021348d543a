package main

import (
	"context"
	"fmt"
	"net/url"
	"sort"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/squallhq/squall/api"
	"github.com/squallhq/squall/client"
)

// memberReadiness is whether a member is ready, as it says itself.
type memberReadiness struct {
	Ready bool `json:"ready"`
	// Reason says why not: the member's own reason, or why it could not
	// be asked.
	Reason string `json:"reason,omitempty"`
}

// clusterView is the node's cluster document with each member's readiness.
type clusterView struct {
	*api.Cluster
	MembersReady map[string]memberReadiness `json:"members_ready"`
}

func (a *app) clusterCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "cluster",
		Short: "Describe the cluster: members, leader, partition map, traffic, readiness",
		Long: `Describe the cluster as the node asked (--server) sees it: the members, the
leader, the epoch and generation of the partition assignment, the partitions
of each owner, the bytes and events exchanged with each peer, the Kafka
sources when the node consumes Kafka, and whether each member is ready (each
member is asked on its own HTTP address). A standalone node is a cluster of
one that owns every partition.

-o json and -o yaml print the node's cluster document with "members_ready"
added.`,
		Example: `  squallctl cluster
  squallctl --server http://127.0.0.1:8082 cluster -o yaml`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := a.client("")
			if err != nil {
				return err
			}
			ctx, cancel := a.request(cmd.Context())
			defer cancel()
			doc, err := c.Cluster(ctx)
			if err != nil {
				return fmt.Errorf("cluster: %w", err)
			}
			v := clusterView{Cluster: doc, MembersReady: a.readiness(cmd.Context(), doc)}
			if a.output != outTable {
				return a.printDoc(v)
			}
			return a.writeCluster(&v)
		},
	}
}

// readiness asks each member other than the one answering for its own
// cluster document, on the member's HTTP address with --server's scheme.
func (a *app) readiness(ctx context.Context, doc *api.Cluster) map[string]memberReadiness {
	out := make(map[string]memberReadiness, len(doc.Members))
	for _, m := range doc.Members {
		if m.ID == doc.Self {
			out[m.ID] = memberReadiness{Ready: doc.Ready, Reason: doc.NotReadyReason}
			continue
		}
		c, err := a.memberClient(doc, m.ID)
		if err != nil {
			out[m.ID] = memberReadiness{Reason: err.Error()}
			continue
		}
		rctx, cancel := a.request(ctx)
		d, err := c.Cluster(rctx)
		cancel()
		if err != nil {
			out[m.ID] = memberReadiness{Reason: "not reachable: " + err.Error()}
			continue
		}
		out[m.ID] = memberReadiness{Ready: d.Ready, Reason: d.NotReadyReason}
	}
	return out
}

// memberClient returns a client of member id of doc's cluster, on the
// member's HTTP address with --server's scheme and token.
func (a *app) memberClient(doc *api.Cluster, id string) (*client.Client, error) {
	for _, m := range doc.Members {
		if m.ID != id {
			continue
		}
		scheme := "http"
		if u, err := url.Parse(a.server); err == nil && u.Scheme != "" {
			scheme = u.Scheme
		}
		return a.client(scheme + "://" + m.HTTPAddr)
	}
	return nil, fmt.Errorf("node %s is not a member of the cluster as node %s sees it", id, doc.Self)
}

func (a *app) writeCluster(v *clusterView) error {
	w := a.out
	t := newTable(w)
	t.row("cluster", v.Cluster.Cluster)
	t.row("answered by", v.Self)
	t.row("leader", dash(v.Leader))
	t.row("epoch", strconv.FormatInt(v.Epoch, 10))
	t.row("generation", strconv.FormatInt(v.Generation, 10))
	t.row("partitions", strconv.Itoa(v.PartitionCount))
	if v.Cluster.Cluster != "standalone" {
		t.row("zookeeper", map[bool]string{true: "connected", false: "no session"}[v.Connected])
	}
	if err := t.flush(); err != nil {
		return err
	}

	fmt.Fprintln(w)
	t = newTable(w, "MEMBER", "HTTP", "VERSION", "PARTITIONS", "READY")
	for _, m := range v.Members {
		id := m.ID
		if id == v.Leader {
			id += " (leader)"
		}
		r := v.MembersReady[m.ID]
		ready := yesNo(r.Ready)
		if !r.Ready && r.Reason != "" {
			ready += ": " + r.Reason
		}
		t.row(id, dash(m.HTTPAddr), dash(m.Version), strconv.Itoa(len(m.Partitions)), ready)
	}
	if err := t.flush(); err != nil {
		return err
	}

	fmt.Fprintln(w)
	fmt.Fprintln(w, "PARTITION MAP")
	byOwner := map[string][]int32{}
	for p, owner := range v.Assignment {
		n, err := strconv.Atoi(p)
		if err != nil {
			continue
		}
		byOwner[owner] = append(byOwner[owner], int32(n))
	}
	owners := make([]string, 0, len(byOwner))
	for o := range byOwner {
		owners = append(owners, o)
	}
	sort.Strings(owners)
	t = newTable(w, "OWNER", "COUNT", "PARTITIONS")
	for _, o := range owners {
		t.row(o, strconv.Itoa(len(byOwner[o])), ranges(byOwner[o]))
	}
	if len(owners) == 0 {
		t.row("(none assigned)")
	}
	if err := t.flush(); err != nil {
		return err
	}

	fmt.Fprintln(w)
	if len(v.Peers) == 0 {
		fmt.Fprintf(w, "PEERS of %s: none\n", v.Self)
	} else {
		fmt.Fprintf(w, "PEERS of %s\n", v.Self)
		peers := make([]string, 0, len(v.Peers))
		for p := range v.Peers {
			peers = append(peers, p)
		}
		sort.Strings(peers)
		t = newTable(w, "PEER", "BYTES SENT", "BYTES RECEIVED", "EVENTS SENT", "EVENTS RECEIVED")
		for _, p := range peers {
			s := v.Peers[p]
			t.row(p, strconv.FormatUint(s.BytesSent, 10), strconv.FormatUint(s.BytesReceived, 10),
				strconv.FormatUint(s.EventsSent, 10), strconv.FormatUint(s.EventsReceived, 10))
		}
		if err := t.flush(); err != nil {
			return err
		}
	}

	if len(v.Sources) > 0 {
		fmt.Fprintln(w)
		fmt.Fprintf(w, "KAFKA SOURCES of %s\n", v.Self)
		t = newTable(w, "PARTITION", "STATE", "APPLIED", "COMMITTED", "HIGH WATERMARK", "LAG")
		for _, s := range v.Sources {
			t.row(strconv.Itoa(int(s.Partition)), s.State, strconv.FormatInt(s.Applied, 10),
				strconv.FormatInt(s.Committed, 10), strconv.FormatInt(s.HighWatermark, 10), strconv.FormatInt(s.Lag, 10))
		}
		return t.flush()
	}
	return nil
}

// ranges writes partitions as "0-3,8,10-11".
func ranges(ps []int32) string {
	sort.Slice(ps, func(i, j int) bool { return ps[i] < ps[j] })
	var b strings.Builder
	for i := 0; i < len(ps); {
		j := i
		for j+1 < len(ps) && ps[j+1] == ps[j]+1 {
			j++
		}
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.Itoa(int(ps[i])))
		if j > i {
			b.WriteByte('-')
			b.WriteString(strconv.Itoa(int(ps[j])))
		}
		i = j + 1
	}
	return b.String()
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}
