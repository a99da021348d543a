package node

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/squallhq/squall/actors"
	"github.com/squallhq/squall/cluster"
	"github.com/squallhq/squall/event"
	"github.com/squallhq/squall/internal/testutil"
	"github.com/squallhq/squall/internal/zktest"
)

// BenchmarkRouting compares events sent to their partition's owner with
// the same events sent to another node, which forwards them over
// protoactor remote: two in-process nodes on loopback, 8 partitions,
// batches of 1,000 ~80-byte events over 10,000 keys, all owned by n2.
func BenchmarkRouting(b *testing.B) {
	z := zktest.Start(b)
	start := func(id string) *Node {
		return startNode(b, func(c *Config) {
			c.ZK, c.NodeID, c.Cluster, c.RemoteAddr = z.Addr(), id, "bench", "127.0.0.1:0"
		})
	}
	n1, n2 := start("n1"), start("n2")
	testutil.Eventually(b, 20*time.Second, func() bool {
		return len(n1.engine.Owned())+len(n2.engine.Owned()) == 8 && len(n1.engine.Owned()) == 4 &&
			n1.cl.route.Load().gen == n2.cl.route.Load().gen && n1.cl.route.Load().gen > 0
	}, "two nodes did not settle")
	owners := n1.cl.route.Load().owners
	var keys []string
	for i := 0; len(keys) < 10_000; i++ {
		k := fmt.Sprintf("host-%05d.cpu.user", i)
		if owners[cluster.Partition(k, 8)] == "n2" {
			keys = append(keys, k)
		}
	}
	batch := func(round int) []event.Event {
		evs := make([]event.Event, 1000)
		for i := range evs {
			evs[i] = event.Event{Key: keys[(round*1000+i)%len(keys)], TS: 1764064800000 + int64(round), Value: float64(i%100) + 0.25}
		}
		return evs
	}
	var jsonBytes int
	for _, ev := range batch(0) {
		jsonBytes += len(event.AppendJSON(nil, &ev))
	}
	for _, c := range []struct {
		name string
		via  *Node
	}{{"to-owner", n2}, {"to-non-owner", n1}} {
		b.Run(c.name, func(b *testing.B) {
			out := make([]actors.Result, 1000)
			before := c.via.cl.tr.Peers()["n2"]
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if err := c.via.cl.Submit(context.Background(), batch(i), out); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N)*1000/b.Elapsed().Seconds(), "events/s")
			if after := c.via.cl.tr.Peers()["n2"]; after.EventsSent > before.EventsSent {
				wire := float64(after.BytesSent-before.BytesSent) / float64(after.EventsSent-before.EventsSent)
				b.ReportMetric(wire, "wire-bytes/event")
				b.ReportMetric(wire/(float64(jsonBytes)/1000), "wire/json")
			}
		})
	}
}
