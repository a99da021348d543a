package kafkatest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// newClient returns a franz-go client of b, closed by t.Cleanup.
func newClient(t *testing.T, b *Broker, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(b.Addr())}, opts...)...)
	if err != nil {
		t.Fatalf("kgo.NewClient: %v", err)
	}
	t.Cleanup(cl.Close)
	return cl
}

// rss returns the resident set size of process pid in KiB, or 0 when it
// cannot be read.
func rss(pid int) int {
	status, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0
	}
	for line := range strings.Lines(string(status)) {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kib, _ := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(rest), " kB"))
			return kib
		}
	}
	return 0
}

func (b *Broker) pid() int {
	return b.proc.Pid()
}

// TestBroker produces to and consumes from a real broker, stores an offset
// with metadata the way Squall stores a restore offset with each commit, and
// checks Pause, Restart and Stop.
func TestBroker(t *testing.T) {
	begin := time.Now()
	b := Start(t)
	t.Logf("Kafka serving on %s (cluster %s) after %s, RSS %d MiB",
		b.Addr(), b.ClusterID(), time.Since(begin).Round(time.Millisecond), rss(b.pid())>>10)
	if !strings.HasPrefix(b.Addr(), "127.0.0.1:") {
		t.Fatalf("Addr() = %q, want 127.0.0.1:port", b.Addr())
	}

	const (
		topic      = "events"
		partitions = 4
		n          = 1000
		group      = "squall-restore"
	)
	begin = time.Now()
	b.CreateTopic(t, topic, partitions)
	t.Logf("topic created with leaders after %s", time.Since(begin).Round(time.Millisecond))

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	// Produce with the idempotent producer (franz-go's default with acks=all).
	prod := newClient(t, b, kgo.DefaultProduceTopic(topic), kgo.RequiredAcks(kgo.AllISRAcks()))
	recs := make([]*kgo.Record, n)
	for i := range recs {
		recs[i] = &kgo.Record{Key: []byte("k" + strconv.Itoa(i%37)), Value: []byte(strconv.Itoa(i))}
	}
	begin = time.Now()
	if err := prod.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatalf("ProduceSync: %v", err)
	}
	t.Logf("produced %d records in %s", n, time.Since(begin).Round(time.Millisecond))
	perPartition := make(map[int32]int64)
	for _, r := range recs {
		if r.ProducerID < 0 {
			t.Fatalf("record %q produced without a producer id: not idempotent", r.Value)
		}
		perPartition[r.Partition]++
	}
	if len(perPartition) != partitions {
		t.Fatalf("records went to %d partitions, want %d: %v", len(perPartition), partitions, perPartition)
	}

	// Consume them back by direct assignment, with no group.
	assign := make(map[int32]kgo.Offset)
	for p := range int32(partitions) {
		assign[p] = kgo.NewOffset().AtStart()
	}
	cons := newClient(t, b, kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: assign}))
	seen := make(map[string]bool, n)
	last := make(map[int32]*kgo.Record)
	for len(seen) < n {
		fs := cons.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			t.Fatalf("consumed %d of %d records: %v", len(seen), n, err)
		}
		fs.EachError(func(topic string, p int32, err error) {
			t.Fatalf("fetching %s/%d: %v", topic, p, err)
		})
		fs.EachRecord(func(r *kgo.Record) {
			if prev := last[r.Partition]; prev != nil && r.Offset != prev.Offset+1 {
				t.Errorf("partition %d: offset %d after %d", r.Partition, r.Offset, prev.Offset)
			}
			if seen[string(r.Value)] {
				t.Errorf("record %q consumed twice", r.Value)
			}
			seen[string(r.Value)] = true
			last[r.Partition] = r
		})
	}
	for p, r := range last {
		if r.Offset+1 != perPartition[p] {
			t.Errorf("partition %d ends at offset %d, want %d", p, r.Offset+1, perPartition[p])
		}
	}

	// Commit the next offset of each partition to a group, with metadata,
	// as a client that assigns partitions itself (no member, generation -1),
	// and read them back.
	adm := kadm.NewClient(newClient(t, b))
	var commit kadm.Offsets
	for p, r := range last {
		o := kadm.NewOffsetFromRecord(r) // At: r.Offset+1, LeaderEpoch: r.LeaderEpoch
		o.Metadata = fmt.Sprintf(`{"restore":%d,"partition":%d}`, r.Offset-10, p)
		commit.Add(o)
	}
	resps, err := adm.CommitOffsets(ctx, group, commit)
	if err != nil {
		t.Fatalf("CommitOffsets: %v", err)
	}
	if err := resps.Error(); err != nil {
		t.Fatalf("CommitOffsets: partition error: %v", err)
	}
	checkCommitted := func() {
		t.Helper()
		// Right after a restart the client's connection from before may
		// be the one a request goes out on, and fail (EOF): retried until
		// the answer is not a connection error.
		var fetched kadm.OffsetResponses
		var err error
		for deadline := time.Now().Add(30 * time.Second); ; {
			fetched, err = adm.FetchOffsets(ctx, group)
			if err == nil || !(errors.Is(err, io.EOF) || kgo.IsRetryableBrokerErr(err)) || time.Now().After(deadline) {
				break
			}
			t.Logf("FetchOffsets: %v: again", err)
		}
		if err != nil {
			t.Fatalf("FetchOffsets: %v", err)
		}
		if err := fetched.Error(); err != nil {
			t.Fatalf("FetchOffsets: partition error: %v", err)
		}
		for _, want := range commit.Sorted() {
			got, ok := fetched.Lookup(topic, want.Partition)
			if !ok {
				t.Fatalf("FetchOffsets: no offset for partition %d", want.Partition)
			}
			if got.At != want.At || got.Metadata != want.Metadata || got.LeaderEpoch != want.LeaderEpoch {
				t.Errorf("partition %d: fetched offset %d epoch %d metadata %q, want %d epoch %d metadata %q",
					want.Partition, got.At, got.LeaderEpoch, got.Metadata, want.At, want.LeaderEpoch, want.Metadata)
			}
		}
	}
	checkCommitted()

	// A paused broker answers nothing; resumed, it serves again.
	b.Pause(t)
	b.Pause(t) // no-op
	short, cancelShort := context.WithTimeout(ctx, time.Second)
	if _, err := adm.ListEndOffsets(short, topic); err == nil {
		cancelShort()
		t.Fatal("a paused broker answered")
	}
	cancelShort()
	b.Resume(t)
	b.Resume(t) // no-op
	checkCommitted()

	// After a crash and restart on the same ports the records and the
	// committed offsets, with their metadata, are still there.
	begin = time.Now()
	b.Restart(t)
	t.Logf("restarted after %s", time.Since(begin).Round(time.Millisecond))
	checkCommitted()
	ends, err := adm.ListEndOffsets(ctx, topic)
	if err != nil {
		t.Fatalf("ListEndOffsets: %v", err)
	}
	for p, want := range perPartition {
		if o, ok := ends.Lookup(topic, p); !ok || o.Err != nil || o.Offset != want {
			t.Errorf("partition %d: end offset %+v, want %d", p, o, want)
		}
	}
	t.Logf("RSS after the test's traffic: %d MiB", rss(b.pid())>>10)

	b.Stop(t)
	b.Stop(t) // no-op
	if conn, err := net.DialTimeout("tcp", b.Addr(), time.Second); err == nil {
		conn.Close()
		t.Fatal("a stopped broker still accepts connections")
	}
}

// TestNotFooledByAnotherBroker checks that a broker with another cluster id
// on the port is not taken for ours.
func TestNotFooledByAnotherBroker(t *testing.T) {
	a := Start(t)
	other := &Broker{port: a.port, clusterID: newClusterID(t)}
	never := make(chan struct{}) // a process that never exits
	exitErr := func() error { return nil }
	err := other.waitServing(never, exitErr, 2*time.Second)
	if err == nil || !strings.Contains(err.Error(), a.ClusterID()) {
		t.Fatalf("waitServing with another cluster id = %v, want an error naming cluster %s", err, a.ClusterID())
	}
	if err := a.waitServing(never, exitErr, 10*time.Second); err != nil {
		t.Fatalf("waitServing of the broker itself: %v", err)
	}
}
