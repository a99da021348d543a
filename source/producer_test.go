package source

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/squallhq/squall/actors"
	"github.com/squallhq/squall/cluster"
	"github.com/squallhq/squall/event"
	"github.com/squallhq/squall/ingest"
)

var _ ingest.Submitter = (*Producer)(nil)

func newProducer(t *testing.T, cfg Config) *Producer {
	t.Helper()
	p, err := NewProducer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	return p
}

// endOffsets returns the sum of the topic's end offsets.
func endOffsets(t *testing.T, adm *kadm.Client) int64 {
	t.Helper()
	ends, err := adm.ListEndOffsets(ctxT(t), testTopic)
	if err != nil {
		t.Fatal(err)
	}
	var n int64
	ends.Each(func(o kadm.ListedOffset) { n += o.Offset })
	return n
}

// (8) Events produced land on the partition cluster.Partition picks, one
// JSON event per record, and are acknowledged before Submit returns.
func TestProducer(t *testing.T) {
	const parts, n = 7, 2000
	c := newCluster(t, parts)
	p := newProducer(t, testConfig(c))
	adm := kadm.NewClient(newClient(t, c))

	evs := make([]event.Event, n)
	for i := range evs {
		evs[i] = event.Event{Key: fmt.Sprintf("web-%d.cpu", i), TS: 1764065000000 + int64(i), Value: float64(i) / 4, ID: fmt.Sprintf("e-%d", i)}
	}
	evs[3].Tags = map[string]string{"env": "prod"}
	out := make([]actors.Result, n)
	for i := 0; i < n; i += 500 {
		if err := p.Submit(ctxT(t), evs[i:i+500], out[i:i+500]); err != nil {
			t.Fatal(err)
		}
		if got := endOffsets(t, adm); got != int64(i+500) {
			t.Fatalf("after Submit returned, the topic holds %d records, want %d", got, i+500)
		}
	}
	for i, r := range out {
		if r != actors.ResultApplied {
			t.Fatalf("out[%d] = %v", i, r)
		}
	}

	// SubmitAsync.
	done := make(chan []actors.Result, 1)
	if err := p.SubmitAsync(ctxT(t), evs[:10], func(res []actors.Result) { done <- res }); err != nil {
		t.Fatal(err)
	}
	for i, r := range <-done {
		if r != actors.ResultApplied {
			t.Fatalf("async out[%d] = %v", i, r)
		}
	}
	if got := endOffsets(t, adm); got != n+10 {
		t.Fatalf("topic holds %d records", got)
	}

	cons := newClient(t, c, kgo.ConsumeTopics(testTopic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	ctx := ctxT(t)
	seen := 0
	var dec event.Decoder
	for seen < n+10 && ctx.Err() == nil {
		cons.PollFetches(ctx).EachRecord(func(r *kgo.Record) {
			seen++
			if want := cluster.Partition(string(r.Key), parts); r.Partition != want {
				t.Errorf("key %s on partition %d, cluster.Partition says %d", r.Key, r.Partition, want)
			}
			got, rej, err := dec.Decode(r.Value, event.FormatJSON, event.Options{}, nil, nil)
			if err != nil || len(rej) > 0 || len(got) != 1 || got[0].Key != string(r.Key) {
				t.Errorf("record %q: %v %v %v", r.Value, got, rej, err)
				return
			}
			var i int
			fmt.Sscanf(got[0].ID, "e-%d", &i)
			want := evs[i]
			if got[0].TS != want.TS || got[0].Value != want.Value || len(got[0].Tags) != len(want.Tags) {
				t.Errorf("record %q, sent %+v", r.Value, want)
			}
		})
	}
	if seen != n+10 {
		t.Fatalf("consumed %d records", seen)
	}

	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if err := p.Submit(ctxT(t), evs[:1], out[:1]); !errors.Is(err, ErrClosed) || out[0] != actors.ResultFailed {
		t.Fatalf("Submit after Close: %v %v", err, out[0])
	}
}

// A Submit that cannot be written fails every event and returns an error.
func TestProducerFails(t *testing.T) {
	c := newCluster(t, 1)
	cfg := testConfig(c)
	cfg.Topic = "missing"
	p := newProducer(t, cfg)
	out := make([]actors.Result, 2)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := p.Submit(ctx, []event.Event{{Key: "a", Value: 1}, {Key: "b", Value: 2}}, out)
	if err == nil || out[0] != actors.ResultFailed || out[1] != actors.ResultFailed {
		t.Fatalf("Submit: %v %v", err, out)
	}
}

// SASL/SCRAM: the Manager and the Producer authenticate; a wrong password
// fails.
func TestSCRAM(t *testing.T) {
	for _, mech := range []string{SASLScramSHA256, SASLScramSHA512} {
		t.Run(mech, func(t *testing.T) {
			c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(3, testTopic),
				kfake.EnableSASL(), kfake.Superuser(mech, "squall", "s3cret"))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(c.Close)
			cfg := testConfig(c)
			cfg.SASLMechanism, cfg.SASLUser, cfg.SASLPassword = mech, "squall", "s3cret"
			m := newManager(t, cfg, newTestSink(1))
			if n, err := m.PartitionCount(ctxT(t)); err != nil || n != 3 {
				t.Fatalf("PartitionCount = %d, %v", n, err)
			}
			p := newProducer(t, cfg)
			out := make([]actors.Result, 1)
			if err := p.Submit(ctxT(t), []event.Event{{Key: "a", Value: 1}}, out); err != nil || out[0] != actors.ResultApplied {
				t.Fatalf("Submit: %v %v", err, out)
			}
			cfg.SASLPassword = "wrong"
			bad := newManager(t, cfg, newTestSink(1))
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			if _, err := bad.PartitionCount(ctx); err == nil {
				t.Fatal("wrong password accepted")
			}
		})
	}
}
