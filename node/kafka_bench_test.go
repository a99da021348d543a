package node

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/squallhq/squall/internal/kafkatest"
	"github.com/squallhq/squall/internal/testutil"
)

// BenchmarkKafkaToApplied measures a standalone node consuming a real
// Kafka 4.4.0 broker: 2,000,000 ~80-byte JSON events over 100,000 keys,
// produced beforehand to a 12-partition topic, from start to every event
// applied. The broker runs on the same two cores.
func BenchmarkKafkaToApplied(b *testing.B) {
	b.Run("broker=kafka-4.4.0", func(b *testing.B) {
		k := kafkatest.Start(b)
		kafkaToApplied(b, k.Addr(), func(topic string) { k.CreateTopic(b, topic, 12) })
	})
	b.Run("broker=kfake", func(b *testing.B) {
		c, err := kfake.NewCluster(kfake.NumBrokers(1))
		if err != nil {
			b.Fatal(err)
		}
		defer c.Close()
		adm, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...))
		if err != nil {
			b.Fatal(err)
		}
		defer adm.Close()
		kafkaToApplied(b, c.ListenAddrs()[0], func(topic string) {
			if _, err := kadm.NewClient(adm).CreateTopic(context.Background(), 12, 1, nil, topic); err != nil {
				b.Fatal(err)
			}
		})
	})
}

func kafkaToApplied(b *testing.B, broker string, createTopic func(string)) {
	const events, keys = 2_000_000, 100_000
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		topic := fmt.Sprintf("bench-%d", i)
		createTopic(topic)
		cl, err := kgo.NewClient(kgo.SeedBrokers(broker), kgo.DefaultProduceTopic(topic),
			kgo.ProducerLinger(10*time.Millisecond), kgo.ProducerBatchMaxBytes(1<<20))
		if err != nil {
			b.Fatal(err)
		}
		recs := make([]*kgo.Record, 0, 10_000)
		for j := 0; j < events; j++ {
			key := fmt.Sprintf("host-%05d.cpu.user", j%keys)
			recs = append(recs, &kgo.Record{Key: []byte(key),
				Value: []byte(fmt.Sprintf(`{"key":"%s","ts":%d,"value":%d.5}`, key, 1764064800000+int64(j/keys)*1000, j%100))})
			if len(recs) == cap(recs) || j == events-1 {
				if err := cl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
					b.Fatal(err)
				}
				recs = recs[:0]
			}
		}
		cl.Close()
		b.StartTimer()
		start := time.Now()
		n := startNode(b, func(c *Config) {
			c.KafkaBrokers, c.KafkaTopic, c.KafkaGroup = broker, topic, topic
		})
		testutil.Eventually(b, 5*time.Minute, func() bool {
			return n.engine.Live() == keys && applied(n) >= events
		}, "not all applied")
		el := time.Since(start)
		b.StopTimer()
		b.ReportMetric(events/el.Seconds(), "events/s")
		n.Close()
	}
}

// applied sums the source's applied records from the node's metrics.
func applied(n *Node) float64 {
	mfs, err := n.reg.Gather()
	if err != nil {
		return 0
	}
	total := 0.0
	for _, mf := range mfs {
		if mf.GetName() == "squall_key_events_total" {
			for _, m := range mf.Metric {
				total += m.Counter.GetValue()
			}
		}
	}
	return total
}
