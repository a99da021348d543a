package main

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/squallhq/squall/api"
	"github.com/squallhq/squall/internal/kafkatest"
	"github.com/squallhq/squall/internal/testutil"
	"github.com/squallhq/squall/internal/zktest"
	"github.com/squallhq/squall/node"
)

// Every command against a 3-node cluster over ZooKeeper that consumes
// Kafka: events sent to one node, read from the others.
func TestThreeNodesKafka(t *testing.T) {
	if testing.Short() {
		t.Skip("starts ZooKeeper, Kafka and three nodes")
	}
	const partitions = 8
	z := zktest.Start(t)
	k := kafkatest.Start(t)
	k.CreateTopic(t, "ctl-events", partitions)
	rules := withRules(t)
	nodes := make([]*node.Node, 3)
	for i := range nodes {
		nodes[i] = startNode(t, func(c *node.Config) {
			rules(c)
			c.NodeID = fmt.Sprintf("n%d", i+1)
			c.ZK, c.Cluster, c.RemoteAddr = z.Addr(), "ctl", "127.0.0.1:0"
			c.ZKSessionTimeout = 4 * time.Second
			c.KafkaBrokers, c.KafkaTopic, c.KafkaGroup = k.Addr(), "ctl-events", "ctl"
			c.Partitions = partitions
		})
	}

	// The cluster settles: three members, one leader, every member ready.
	var view clusterView
	testutil.Eventually(t, 60*time.Second, func() bool {
		r := ctl(t, nodes[0], "", "cluster", "-o", "json")
		view = clusterView{}
		if r.code != 0 || json.Unmarshal([]byte(r.out), &view) != nil || view.Cluster == nil || len(view.Members) != 3 || view.Leader == "" {
			return false
		}
		for _, m := range view.Members {
			if !view.MembersReady[m.ID].Ready {
				return false
			}
		}
		return len(view.Assignment) == partitions
	}, "three members, all ready")
	r := ctl(t, nodes[0], "", "cluster")
	expect(t, r, 0, "cluster      ctl\n", "answered by  n1\n", "zookeeper    connected\n", "PARTITION MAP\n", "PEERS of n1", "KAFKA SOURCES of n1\n")
	owned := 0
	for _, id := range []string{"n1", "n2", "n3"} {
		if f := fields(t, r.out, id); f[len(f)-1] != "yes" {
			t.Fatalf("member row %v", f)
		}
		// The partition map's row: OWNER COUNT PARTITIONS.
		for _, l := range strings.Split(r.out[strings.Index(r.out, "PARTITION MAP"):], "\n") {
			if f := strings.Fields(l); len(f) == 3 && f[0] == id {
				n, err := strconv.Atoi(f[1])
				if err != nil {
					t.Fatalf("partition map row %v", f)
				}
				owned += n
				break
			}
		}
	}
	if owned != partitions {
		t.Fatalf("the partition map covers %d partitions, want %d:\n%s", owned, partitions, r.out)
	}

	// Events sent to n2 go to Kafka first: the answer cannot say late or
	// duplicate yet.
	args := []string{"send"}
	for i := range 10 {
		for j := range 3 {
			args = append(args, fmt.Sprintf("k%d.cpu=%d@%d", i, 10*i+j, 1764064800000+int64(j)*1000))
		}
	}
	expect(t, ctl(t, nodes[1], "", args...), 0, "accepted:     30\n", "  late:       not known yet")

	// Every key, from any node, once applied by its owner.
	for i := range 10 {
		key := fmt.Sprintf("k%d.cpu", i)
		testutil.Eventually(t, 30*time.Second, func() bool {
			r := ctl(t, nodes[2], "", "get", key, "-o", "json")
			var st api.KeyState
			return r.code == 0 && json.Unmarshal([]byte(r.out), &st) == nil && st.Window.Count == 3 && st.Window.Sum == float64(30*i+3)
		}, "%s applied", key)
	}
	r = ctl(t, nodes[0], "", "keys", "-o", "json")
	expect(t, r, 0)
	var kl api.KeyList
	if err := json.Unmarshal([]byte(r.out), &kl); err != nil || len(kl.Keys) != 10 || kl.Live != 10 {
		t.Fatalf("keys: %v\n%s", err, r.out)
	}
	servers := map[string]bool{}
	for _, k := range kl.Keys {
		servers[k.Node] = true
	}
	if len(servers) < 2 {
		t.Fatalf("10 keys all on %v: the listing is not cluster-wide", servers)
	}
	// k9.cpu's max is 92: high-cpu fires on its owner, seen from n1.
	r = ctl(t, nodes[0], "", "alerts")
	expect(t, r, 0, " k9.cpu ", " high-cpu ")
	if strings.Contains(r.out, "k8.cpu") {
		t.Fatalf("k8.cpu (max 82) listed:\n%s", r.out)
	}
}
