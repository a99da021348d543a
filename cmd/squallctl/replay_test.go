package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/squallhq/squall/api"
	"github.com/squallhq/squall/client"
	"github.com/squallhq/squall/internal/testutil"
	"github.com/squallhq/squall/node"
	"github.com/squallhq/squall/replay"
)

// replayEvents are web-1.cpu's events — two applied, a duplicate, a third
// applied — and one of web-2.cpu between them.
const replayEvents = `{"key":"web-1.cpu","ts":1764064800000,"value":40,"id":"e1","tags":{"env":"prod"}}
{"key":"web-1.cpu","ts":1764064801000,"value":60,"id":"e2"}
{"key":"web-1.cpu","ts":1764064801500,"value":60,"id":"e2"}
{"key":"web-2.cpu","ts":1764064801600,"value":99}
{"key":"web-1.cpu","ts":1764064802000,"value":75,"id":"e3"}
`

// TestReplayKept: a replay of the node's kept events equals the live key;
// with a rules file of a lower threshold it does not, and --diff says
// where; -f FILE replays a file of the same events.
func TestReplayKept(t *testing.T) {
	n := startNode(t, withRules(t))
	expect(t, ctl(t, n, replayEvents, "send"), 0)

	r := ctl(t, n, "", "replay", "web-1.cpu", "--diff")
	expect(t, r, 0, "DIFF: the replay equals the live key (n1)\n", "key         web-1.cpu\n",
		"events      3 applied, 0 late, 1 duplicate\n")
	if r.err != "" { // the rules are the key's node's: no warning
		t.Fatalf("stderr %q", r.err)
	}
	steps := stepLines(r.out)
	want := []string{
		"#0 2025-11-25T10:00:00Z 40 id=e1 applied  count=1 sum=40 min=40 max=40 mean=40 p99=40",
		"#1 2025-11-25T10:00:01Z 60 id=e2 applied  count=2 sum=100 min=40 max=60 mean=50 p99=40",
		"#2 2025-11-25T10:00:01.5Z 60 id=e2 duplicate  count=2 sum=100 min=40 max=60 mean=50 p99=40",
	}
	if len(steps) != 4 {
		t.Fatalf("%d steps, want 4:\n%s", len(steps), r.out)
	}
	for i, w := range want {
		if steps[i] != w {
			t.Errorf("step %d:\n got %s\nwant %s", i, steps[i], w)
		}
	}
	if !strings.HasPrefix(steps[3], "#3 2025-11-25T10:00:02Z 75 id=e3 applied  count=3 sum=175 min=40 max=75") {
		t.Errorf("step 3: %s", steps[3])
	}

	// A lower threshold: the rule fires in the replay, not live.
	low := writeFile(t, "low.yaml", `rules:
  - {name: high-cpu, match: "*.cpu", aggregate: max, over: 1m, op: ">", threshold: 50, severity: page}
`)
	r = ctl(t, n, "", "replay", "web-1.cpu", "--rules", low, "--diff")
	expect(t, r, 1, "high-cpu firing (60, threshold 50)", "DIFF: 2 differences between the live key (n1) and the replay\n",
		"rules.high-cpu.since: only in replay (\"2025-11-25T10:00:01Z\")\n", "rules.high-cpu.state: live \"inactive\", replay \"firing\"\n")
	if !strings.Contains(r.err, `the replay of "web-1.cpu" differs from the live key`) {
		t.Fatalf("stderr %q", r.err)
	}

	// A file of the same events (web-2's are skipped): the same state.
	f := writeFile(t, "events.ndjson", replayEvents)
	r = ctl(t, n, "", "replay", "web-1.cpu", "-f", f, "--diff")
	expect(t, r, 0, "DIFF: the replay equals the live key (n1)\n")
	if got := stepLines(r.out); len(got) != 4 || got[2] != want[2] {
		t.Fatalf("-f: steps %q", got)
	}
	// Without ts, the file's line is named.
	r = ctl(t, n, "", "replay", "web-1.cpu", "-f", writeFile(t, "bad.ndjson", "\n{\"key\":\"web-1.cpu\",\"value\":1}\n"))
	expect(t, r, 1)
	if !strings.Contains(r.err, "line 2: no ts") {
		t.Fatalf("stderr %q", r.err)
	}

	// -o json: the final state document, and nothing else.
	r = ctl(t, n, "", "replay", "web-1.cpu", "-o", "json")
	expect(t, r, 0)
	var st api.KeyState
	if err := json.Unmarshal([]byte(r.out), &st); err != nil || st.Node != "n1" || st.Window.Count != 3 || st.DuplicatesDropped != 1 {
		t.Fatalf("-o json: %v\n%s", err, r.out)
	}

	expect(t, ctl(t, n, "", "replay", "nope"), 1)
	expect(t, ctl(t, n, "", "replay", "web-1.cpu", "--nats", "nats://127.0.0.1:1"), 2)
	expect(t, ctl(t, n, "", "replay", "web-1.cpu", "--from-log"), 2)
	expect(t, ctl(t, n, "", "replay", "web-1.cpu", "--from-log", "--kafka-brokers", "127.0.0.1:1"), 2)
}

// TestReplayIncomplete: when the node keeps fewer events than the key
// received, the replay of them is refused, and the message says to use the
// log.
func TestReplayIncomplete(t *testing.T) {
	n := startNode(t, func(c *node.Config) { c.RecentEvents = 2 })
	expect(t, ctl(t, n, replayEvents, "send"), 0)
	r := ctl(t, n, "", "replay", "web-1.cpu")
	expect(t, r, 1)
	for _, w := range []string{"the node keeps only the key's last events", "2 of 4 events kept (--recent-events 2)", "--from-log"} {
		if !strings.Contains(r.err, w) {
			t.Fatalf("stderr lacks %q: %q", w, r.err)
		}
	}
	if r.out != "" {
		t.Fatalf("stdout %q", r.out)
	}
}

// TestReplayJetStream: a durable node's JetStream log, over the range its
// /debug/cluster gives, replays to the live state.
func TestReplayJetStream(t *testing.T) {
	dir := t.TempDir()
	n := startNode(t, func(c *node.Config) { c.DataDir = dir })
	expect(t, ctl(t, n, replayEvents, "send"), 0)

	// A durable node answers once the events are stored: wait until the
	// log's source counts them applied.
	ctx := context.Background()
	testutil.Eventually(t, 20*time.Second, func() bool {
		doc, err := n.Cluster(ctx)
		if err != nil || len(doc.Sources) == 0 {
			return false
		}
		s := doc.Sources[0]
		_, to, ok := replay.LogRange(doc, 0)
		return ok && to > 1 && s.Lag == 0 && s.Buffered == 0 && s.HighWatermark == to
	}, "the log's source does not apply the events")

	r := ctl(t, n, "", "replay", "web-1.cpu", "--from-log", "--nats", n.NATSURL(), "--diff")
	expect(t, r, 0, "DIFF: the replay equals the live key (n1)\n", "events      3 applied, 0 late, 1 duplicate\n")
	steps := stepLines(r.out)
	if len(steps) != 4 || !strings.HasPrefix(steps[0], "#0 @") {
		t.Fatalf("steps %q", steps)
	}
	// A range that ends before the first record has no event of the key.
	r = ctl(t, n, "", "replay", "web-1.cpu", "--from-log", "--nats", n.NATSURL(), "--from", "0", "--to", "1")
	expect(t, r, 1)
	if !strings.Contains(r.err, fmt.Sprintf("no event of %q to replay", "web-1.cpu")) {
		t.Fatalf("stderr %q", r.err)
	}
}

// stepLines returns the step lines of a replay's output.
func stepLines(out string) []string {
	var steps []string
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, "#") {
			steps = append(steps, l)
		}
	}
	return steps
}

// kfakeBrokers starts an in-process Kafka cluster of one broker (kfake)
// with topic of 4 partitions and opts, closed when the test ends, and
// returns its address.
func kfakeBrokers(t *testing.T, topic string, opts ...kfake.Opt) string {
	t.Helper()
	kc, err := kfake.NewCluster(append([]kfake.Opt{kfake.NumBrokers(1), kfake.SeedTopics(4, topic)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(kc.Close)
	return kc.ListenAddrs()[0]
}

// TestReplayKafka: a node consuming a Kafka topic; the replay of the key's
// partition over the range the node's /debug/cluster gives equals the live
// key, for events the node's own producer wrote (murmur2, the key's
// partition) and, with --partition, for records a producer with Sarama's
// partitioner (FNV-1a) wrote to another partition.
func TestReplayKafka(t *testing.T) {
	const topic = "events"
	brokers := kfakeBrokers(t, topic)
	n := startNode(t, func(c *node.Config) {
		c.KafkaBrokers, c.KafkaTopic, c.KafkaGroup = brokers, topic, "squall"
	})
	c, err := client.New("http://" + n.HTTPAddr())
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	// applied waits until key has count events in its window and the
	// source of Kafka partition p has applied every record it fetched.
	applied := func(key string, count uint64, p int32) {
		t.Helper()
		testutil.Eventually(t, 20*time.Second, func() bool {
			st, err := c.Get(ctx, key)
			if err != nil || st.Window.Count != count {
				return false
			}
			doc, err := n.Cluster(ctx)
			if err != nil {
				return false
			}
			for _, s := range doc.Sources {
				if s.Partition == p {
					return s.Applied > 0 && s.Applied == s.HighWatermark && s.Buffered == 0
				}
			}
			return false
		}, "key %s: not %d events applied from partition %d", key, count, p)
	}

	// Every record is stamped at or after start (Kafka's produce time).
	start := time.Now().UTC().Truncate(time.Millisecond).Format(time.RFC3339Nano)
	expect(t, ctl(t, n, replayEvents, "send"), 0)
	p := replay.KeyPartition("web-1.cpu", 4)
	applied("web-1.cpu", 3, p)
	args := []string{"replay", "web-1.cpu", "--from-log", "--kafka-brokers", brokers, "--kafka-topic", topic}
	r := ctl(t, n, "", append(args, "--diff")...)
	expect(t, r, 0, "DIFF: the replay equals the live key (n1)\n")
	steps := stepLines(r.out)
	if len(steps) != 4 || !strings.HasPrefix(steps[0], "#0 @") {
		t.Fatalf("steps %q", steps)
	}
	// From the second of the key's records: three steps.
	var second int64
	if _, err := fmt.Sscanf(steps[1], "#1 @%d", &second); err != nil {
		t.Fatal(err)
	}
	r = ctl(t, n, "", append(args, "--from", fmt.Sprint(second), "-o", "json")...)
	expect(t, r, 0)
	var st api.KeyState
	if err := json.Unmarshal([]byte(r.out), &st); err != nil || st.Window.Count != 2 || st.Window.Min != 60 {
		t.Fatalf("--from %d: %v\n%s", second, err, r.out)
	}

	// By time: since start, every record; until start, none.
	expect(t, ctl(t, n, "", append(args, "--since", start, "--diff")...), 0, "DIFF: the replay equals the live key (n1)\n")
	r = ctl(t, n, "", append(args, "--until", start)...)
	expect(t, r, 1)
	if !strings.Contains(r.err, `no event of "web-1.cpu" to replay`) {
		t.Fatalf("--until %s: stderr %q", start, r.err)
	}
	expect(t, ctl(t, n, "", append(args, "--since", "yesterday")...), 2)
	expect(t, ctl(t, n, "", append(args, "--since", start, "--from", "0")...), 2)

	// Sarama's partitioner puts db-1.cpu in another partition.
	const key = "db-1.cpu"
	pr, err := kgo.NewClient(kgo.SeedBrokers(brokers), kgo.DefaultProduceTopic(topic),
		kgo.RecordPartitioner(kgo.StickyKeyPartitioner(kgo.SaramaHasher(func(b []byte) uint32 {
			h := fnv.New32a()
			h.Write(b)
			return h.Sum32()
		}))))
	if err != nil {
		t.Fatal(err)
	}
	defer pr.Close()
	where := int32(-1)
	for i, v := range []float64{10, 30, 20} {
		rec := &kgo.Record{Key: []byte(key), Value: []byte(fmt.Sprintf(`{"key":%q,"ts":%d,"value":%g}`, key, 1764064800000+int64(i)*1000, v))}
		res, err := pr.ProduceSync(ctx, rec).First()
		if err != nil {
			t.Fatal(err)
		}
		where = res.Partition
	}
	if where == replay.KeyPartition(key, 4) {
		t.Fatalf("the key's records are in its murmur2 partition %d: the test needs another key", where)
	}
	applied(key, 3, where)
	args = []string{"replay", key, "--from-log", "--kafka-brokers", brokers, "--kafka-topic", topic}
	r = ctl(t, n, "", append(args, "--partition", fmt.Sprint(where), "--diff")...)
	expect(t, r, 0, "DIFF: the replay equals the live key (n1)\n", "all     3      60   10   30")
	// Its murmur2 partition has none of its records.
	r = ctl(t, n, "", append(args, "--from", "0")...)
	expect(t, r, 1)
	if !strings.Contains(r.err, `no event of "db-1.cpu" to replay`) {
		t.Fatalf("stderr %q", r.err)
	}
}

// TestReplayKafkaTLSAndSCRAM: a node reaching Kafka over TLS with
// SASL/SCRAM; the replay reaches it with the same settings, the password
// from a file or the environment, and not without them.
func TestReplayKafkaTLSAndSCRAM(t *testing.T) {
	const topic = "secure-events"
	cert, caFile, _ := testutil.SelfSignedTLS(t)
	brokers := kfakeBrokers(t, topic, kfake.TLS(&tls.Config{Certificates: []tls.Certificate{cert}}),
		kfake.EnableSASL(), kfake.Superuser("SCRAM-SHA-512", "squall", "s3cret"))
	n := startNode(t, func(c *node.Config) {
		c.KafkaBrokers, c.KafkaTopic, c.KafkaGroup = brokers, topic, "squall"
		c.KafkaTLSCA = caFile
		c.KafkaSASLUser, c.KafkaSASLPassword, c.KafkaSASLMechanism = "squall", "s3cret", "SCRAM-SHA-512"
	})
	expect(t, ctl(t, n, replayEvents, "send"), 0)
	testutil.Eventually(t, 20*time.Second, func() bool {
		r := ctl(t, n, "", "get", "web-1.cpu", "-o", "json")
		var st api.KeyState
		return r.code == 0 && json.Unmarshal([]byte(r.out), &st) == nil && st.Window.Count == 3
	}, "web-1.cpu applied")

	args := []string{"replay", "web-1.cpu", "--from-log", "--kafka-brokers", brokers, "--kafka-topic", topic,
		"--kafka-tls-ca", caFile, "--kafka-sasl-user", "squall", "--kafka-sasl-mechanism", "SCRAM-SHA-512", "--diff"}
	pass := writeFile(t, "password", "s3cret\n")
	testutil.Eventually(t, 20*time.Second, func() bool {
		// The node commits the range it applied every second.
		return ctl(t, n, "", append(args, "--kafka-sasl-password-file", pass)...).code == 0
	}, "replay over TLS and SCRAM")
	expect(t, ctl(t, n, "", append(args, "--kafka-sasl-password-file", pass)...), 0, "DIFF: the replay equals the live key (n1)\n")
	t.Setenv(envKafkaPassword, "s3cret")
	expect(t, ctl(t, n, "", args...), 0, "DIFF: the replay equals the live key (n1)\n")

	// A wrong password, no TLS: refused by the broker, exit 1.
	t.Setenv(envKafkaPassword, "wrong")
	r := ctl(t, n, "", append([]string{"--timeout", "5s"}, args...)...)
	expect(t, r, 1)
	if !strings.Contains(r.err, "replay: kafka: topic secure-events") {
		t.Fatalf("wrong password: stderr %q", r.err)
	}
	r = ctl(t, n, "", "--timeout", "5s", "replay", "web-1.cpu", "--from-log", "--kafka-brokers", brokers, "--kafka-topic", topic)
	expect(t, r, 1)
	if !strings.Contains(r.err, "is TLS missing?") {
		t.Fatalf("no TLS: stderr %q", r.err)
	}
	// Usage errors.
	expect(t, ctl(t, n, "", "replay", "web-1.cpu", "--kafka-tls"), 2)
	expect(t, ctl(t, n, "", "replay", "web-1.cpu", "--from-log", "--nats", n.NATSURL(), "--kafka-tls"), 2)
	expect(t, ctl(t, n, "", append(args[:6:6], "--kafka-sasl-user", "squall")...), 2)
	expect(t, ctl(t, n, "", append(args[:6:6], "--kafka-sasl-user", "squall", "--kafka-sasl-mechanism", "PLAIN")...), 2)
	t.Setenv(envKafkaPassword, "")
	r = ctl(t, n, "", args...)
	expect(t, r, 1)
	if !strings.Contains(r.err, "no password") {
		t.Fatalf("stderr %q", r.err)
	}
}
