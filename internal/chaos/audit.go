package chaos

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/twmb/franz-go/pkg/kgo"
)

// LogCount is what the log holds for one key: every record, and the
// events a key's state should count (each id once; every event without
// one).
type LogCount struct {
	Records  int64 `json:"records"`
	Expected int64 `json:"expected"`
	ExpSum   int64 `json:"expected_sum"`
}

// AuditLog reads the whole log (the Kafka topic, or the JetStream stream),
// up to the end offsets of the moment, and counts per key what a key's
// state built from it should hold. It is a diagnostic beside the ledger:
// an acknowledged event missing from the log was acknowledged before it
// was durable; a key whose state differs from its log count was applied
// wrongly. Keys not in keys are ignored.
func AuditLog(ctx context.Context, c *Cluster, keys []string) (map[string]*LogCount, error) {
	acc := newLogCounter(keys)
	var err error
	if c.Log == LogJetStream {
		err = c.jsAuditLog(ctx, acc)
	} else {
		err = c.kafkaAuditLog(ctx, acc)
	}
	if err != nil {
		return nil, err
	}
	return acc.out, nil
}

// logCounter counts the events of the log per key: every record, and each
// id once.
type logCounter struct {
	want map[string]bool
	seen map[string]map[string]bool
	out  map[string]*LogCount
}

func newLogCounter(keys []string) *logCounter {
	acc := &logCounter{want: map[string]bool{}, seen: map[string]map[string]bool{}, out: map[string]*LogCount{}}
	for _, k := range keys {
		acc.want[k] = true
	}
	return acc
}

// add counts one event of the log.
func (acc *logCounter) add(key, id string, value float64) {
	if !acc.want[key] {
		return
	}
	lc := acc.out[key]
	if lc == nil {
		lc = &LogCount{}
		acc.out[key] = lc
	}
	lc.Records++
	if id != "" {
		if acc.seen[key] == nil {
			acc.seen[key] = map[string]bool{}
		}
		if acc.seen[key][id] {
			return
		}
		acc.seen[key][id] = true
	}
	lc.Expected++
	lc.ExpSum += int64(value)
}

// kafkaAuditLog is AuditLog for the Kafka topic.
func (c *Cluster) kafkaAuditLog(ctx context.Context, acc *logCounter) error {
	ends, err := c.kafkaEndOffsets(ctx)
	if err != nil {
		return err
	}
	from := map[string]map[int32]kgo.Offset{c.Topic: {}}
	left := 0
	for p, end := range ends {
		if end > 0 {
			from[c.Topic][p] = kgo.NewOffset().AtStart()
			left++
		}
	}
	if left == 0 {
		return nil
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.Kafka.Addr()), kgo.ConsumePartitions(from), kgo.FetchMaxBytes(16<<20))
	if err != nil {
		return err
	}
	defer cl.Close()
	done := map[int32]bool{}
	for len(done) < left {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("chaos: reading the topic: %w (%d of %d partitions read)", err, len(done), left)
		}
		var ferr error
		fs.EachError(func(_ string, p int32, err error) { ferr = fmt.Errorf("partition %d: %w", p, err) })
		if ferr != nil {
			return ferr
		}
		fs.EachRecord(func(r *kgo.Record) {
			if r.Offset+1 >= ends[r.Partition] {
				done[r.Partition] = true
			}
			if r.Offset >= ends[r.Partition] {
				return
			}
			var ev struct {
				Key   string  `json:"key"`
				Value float64 `json:"value"`
				ID    string  `json:"id"`
			}
			if json.Unmarshal(r.Value, &ev) != nil {
				return
			}
			if ev.Key == "" {
				ev.Key = string(r.Key)
			}
			acc.add(ev.Key, ev.ID, ev.Value)
		})
	}
	return nil
}
