package chaos

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/twmb/franz-go/pkg/kgo"
)

// LogCount is what the topic holds for one key: every record, and the
// events a key's state should count (each id once; every event without
// one).
type LogCount struct {
	Records  int64 `json:"records"`
	Expected int64 `json:"expected"`
	ExpSum   int64 `json:"expected_sum"`
}

// AuditLog reads the whole topic, up to the end offsets of the moment, and
// counts per key what a key's state built from it should hold. It is a
// diagnostic beside the ledger: an acknowledged event missing from the log
// was acknowledged before it was durable; a key whose state differs from
// its log count was applied wrongly. Keys not in keys are ignored.
func AuditLog(ctx context.Context, c *Cluster, keys []string) (map[string]*LogCount, error) {
	ends, err := c.EndOffsets(ctx)
	if err != nil {
		return nil, err
	}
	want := map[string]bool{}
	for _, k := range keys {
		want[k] = true
	}
	from := map[string]map[int32]kgo.Offset{c.Topic: {}}
	left := 0
	for p, end := range ends {
		if end > 0 {
			from[c.Topic][p] = kgo.NewOffset().AtStart()
			left++
		}
	}
	out := map[string]*LogCount{}
	if left == 0 {
		return out, nil
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.Kafka.Addr()), kgo.ConsumePartitions(from), kgo.FetchMaxBytes(16<<20))
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	seen := map[string]map[string]bool{}
	done := map[int32]bool{}
	for len(done) < left {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("chaos: reading the topic: %w (%d of %d partitions read)", err, len(done), left)
		}
		var ferr error
		fs.EachError(func(_ string, p int32, err error) { ferr = fmt.Errorf("partition %d: %w", p, err) })
		if ferr != nil {
			return nil, ferr
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
			if !want[ev.Key] {
				return
			}
			lc := out[ev.Key]
			if lc == nil {
				lc = &LogCount{}
				out[ev.Key] = lc
			}
			lc.Records++
			if ev.ID != "" {
				if seen[ev.Key] == nil {
					seen[ev.Key] = map[string]bool{}
				}
				if seen[ev.Key][ev.ID] {
					return
				}
				seen[ev.Key][ev.ID] = true
			}
			lc.Expected++
			lc.ExpSum += int64(ev.Value)
		})
	}
	return out, nil
}
