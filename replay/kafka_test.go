package replay_test

import (
	"context"
	"encoding/json"
	"hash/fnv"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/squallhq/squall/internal/testutil"
	"github.com/squallhq/squall/node"
	"github.com/squallhq/squall/replay"
)

// fnv32a is Sarama's default hash of a record key.
func fnv32a(b []byte) uint32 {
	h := fnv.New32a()
	h.Write(b)
	return h.Sum32()
}

// TestReplayKafka: a producer with Sarama's partitioner (FNV-1a) writes the
// key's records to another partition than the node's partitioner picks; the
// node applies them there as they arrive. A replay of that partition, read
// without a group, equals the live state; the partition the node's
// partitioner names holds none of the key's records.
func TestReplayKafka(t *testing.T) {
	const topic = "events"
	kc, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(4, topic))
	if err != nil {
		t.Fatal(err)
	}
	defer kc.Close()
	var cfg node.Config
	n, c := liveNode(t, func(nc *node.Config) {
		nc.KafkaBrokers, nc.KafkaTopic, nc.KafkaGroup = kc.ListenAddrs()[0], topic, "squall"
		cfg = *nc
	})
	cfg.Partitions = 4 // the topic's

	pr, err := kgo.NewClient(kgo.SeedBrokers(kc.ListenAddrs()...), kgo.DefaultProduceTopic(topic),
		kgo.RecordPartitioner(kgo.StickyKeyPartitioner(kgo.SaramaHasher(fnv32a))))
	if err != nil {
		t.Fatal(err)
	}
	defer pr.Close()
	ctx := context.Background()
	var where int32 = -1
	for _, ev := range keyEvents() {
		b, _ := json.Marshal(ev)
		r, err := pr.ProduceSync(ctx, &kgo.Record{Key: []byte(ev.Key), Value: b}).First()
		if err != nil {
			t.Fatal(err)
		}
		if ev.Key == key {
			where = r.Partition
		}
	}
	if own := replay.KeyPartition(key, 4); where == own {
		t.Fatalf("the key's records are in partition %d, the node's own: the test needs another partitioner or key", where)
	}
	live := liveState(t, n, c)

	kcfg := replay.DefaultKafkaConfig()
	kcfg.Opts, kcfg.Topic, kcfg.Partition = []kgo.Opt{kgo.SeedBrokers(kc.ListenAddrs()...)}, topic, where
	src, err := replay.NewKafkaSource(ctx, kcfg, key)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	res, steps := run(t, replayConfig(t, cfg, rulesYAML), src)
	checkSteps(t, steps)
	for i, s := range steps {
		if s.Offset < 0 {
			t.Errorf("step %d has no offset", i)
		}
	}
	if d, err := replay.Diff(live, res.State); err != nil || len(d) != 0 {
		t.Fatalf("kafka: replay differs from live: %v %v", d, err)
	}

	// The range the node's /debug/cluster document gives for the partition.
	testutil.Eventually(t, 20*time.Second, func() bool {
		doc, err := n.Cluster(ctx)
		var ok bool
		if err == nil {
			kcfg.From, kcfg.To, ok = replay.LogRange(doc, where)
		}
		return ok && kcfg.To > steps[len(steps)-1].Offset
	}, "the partition's source does not count the last record applied")
	ranged, err := replay.NewKafkaSource(ctx, kcfg, key)
	if err != nil {
		t.Fatal(err)
	}
	defer ranged.Close()
	if res, _ := run(t, replayConfig(t, cfg, rulesYAML), ranged); res.Steps != len(want) {
		t.Fatalf("log range [%d, %d): %d steps", kcfg.From, kcfg.To, res.Steps)
	} else if d, err := replay.Diff(live, res.State); err != nil || len(d) != 0 {
		t.Fatalf("log range [%d, %d): replay differs from live: %v %v", kcfg.From, kcfg.To, d, err)
	}

	// From the third of the key's records to the one before the last: the
	// range's records only.
	kcfg.From, kcfg.To = steps[2].Offset, steps[len(steps)-1].Offset
	part, err := replay.NewKafkaSource(ctx, kcfg, key)
	if err != nil {
		t.Fatal(err)
	}
	defer part.Close()
	if _, st := run(t, replayConfig(t, cfg, rulesYAML), part); len(st) != len(want)-3 || st[0].Offset != steps[2].Offset {
		t.Fatalf("offsets [%d, %d): %d steps, want %d", kcfg.From, kcfg.To, len(st), len(want)-3)
	}
	kcfg.From, kcfg.To = 0, -1

	// The node's partitioner's partition has none of them.
	kcfg.Partition = -1
	own, err := replay.NewKafkaSource(ctx, kcfg, key)
	if err != nil {
		t.Fatal(err)
	}
	defer own.Close()
	if res, _ := run(t, replayConfig(t, cfg, rulesYAML), own); res.Steps != 0 {
		t.Fatalf("partition %d: %d steps, want none", replay.KeyPartition(key, 4), res.Steps)
	}
}
