package output

import (
	"context"
	"fmt"

	"github.com/twmb/franz-go/pkg/kgo"
)

// AlertIDHeader is the Kafka record header holding Alert.ID.
const AlertIDHeader = "squall-alert-id"

// kafkaSink produces alerts with franz-go.
type kafkaSink struct {
	cl    *kgo.Client
	topic string
}

// NewKafkaSink returns a Sink named "kafka" that produces each alert to
// topic with key Alert.Key, value Alert.Payload (not copied) and header
// "squall-alert-id" = Alert.ID, and waits until every record of the batch
// is acknowledged (kgo.Client.ProduceSync). cl is the caller's client and
// stays the caller's (the sink never closes it); for the delivery guarantee
// it must require acks from all in-sync replicas
// (kgo.RequiredAcks(kgo.AllISRAcks()), with the idempotent producer that
// franz-go enables by default). The partition is the one cl's partitioner
// picks for the key.
//
// Any failed record fails the batch, which is produced again later. When
// Close's deadline cancels a produce whose request is already in flight,
// franz-go still waits for the broker's answer (an idempotent producer
// cannot fail such records), so Close can overrun its deadline by up to
// the client's request timeout.
func NewKafkaSink(cl *kgo.Client, topic string) Sink {
	return &kafkaSink{cl: cl, topic: topic}
}

func (s *kafkaSink) Name() string { return "kafka" }

func (s *kafkaSink) Publish(ctx context.Context, batch []Alert) error {
	if len(batch) == 0 {
		return nil
	}
	// Four allocations per batch: the records, the pointers ProduceSync
	// takes, the headers, and one arena for every key and id.
	recs := make([]kgo.Record, len(batch))
	ptrs := make([]*kgo.Record, len(batch))
	hdrs := make([]kgo.RecordHeader, len(batch))
	n := 0
	for i := range batch {
		n += len(batch[i].Key) + len(batch[i].ID)
	}
	arena := make([]byte, 0, n)
	for i := range batch {
		a := &batch[i]
		k := len(arena)
		arena = append(arena, a.Key...)
		id := len(arena)
		arena = append(arena, a.ID...)
		end := len(arena)
		hdrs[i] = kgo.RecordHeader{Key: AlertIDHeader, Value: arena[id:end:end]}
		recs[i] = kgo.Record{
			Topic:   s.topic,
			Key:     arena[k:id:id],
			Value:   a.Payload,
			Headers: hdrs[i : i+1 : i+1],
		}
		ptrs[i] = &recs[i]
	}
	if err := s.cl.ProduceSync(ctx, ptrs...).FirstErr(); err != nil {
		return fmt.Errorf("output: kafka produce to %s: %w", s.topic, err)
	}
	return nil
}
