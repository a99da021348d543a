package chaos

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/squallhq/squall/event"
	"github.com/squallhq/squall/internal/natstest"
	"github.com/squallhq/squall/jslog"
)

// TestJetStreamLogReads checks the JetStream mode's reads of the log —
// the end offsets (last sequence per partition subject) and the audit —
// against a stream written as the nodes write it, with a NATS server
// killed, as the nemesis does, between writes.
func TestJetStreamLogReads(t *testing.T) {
	c := &Cluster{Log: LogJetStream, NATS: natstest.NewJSCluster(t, 3), partitions: 4}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	js := c.NATS.JetStream(t)
	// A name of its own: the checker finds the stream by its subjects.
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "CHAOS_TEST_LOG", Subjects: []string{jsSubject + ".*"},
		Replicas: jsReplicas}); err != nil {
		t.Fatal(err)
	}
	publish := func(p int32, evs []event.Event) {
		t.Helper()
		msg := &nats.Msg{Subject: jsSubjectOf(p), Data: event.AppendProto(nil, evs), Header: nats.Header{}}
		msg.Header.Set(jslog.FormatHeader, jslog.FormatProto)
		// Retried, each attempt on its own deadline: the stream may be
		// electing a leader after a kill. The id makes a resend harmless.
		msg.Header.Set(jetstream.MsgIDHeader, fmt.Sprintf("%s-%d", msg.Subject, len(msg.Data)))
		if err := jsRetry(ctx, func(ctx context.Context) error { _, err := js.PublishMsg(ctx, msg); return err }); err != nil {
			t.Fatalf("publish to %s: %v", msg.Subject, err)
		}
	}
	ev := func(key, id string, v float64) event.Event {
		return event.Event{Key: key, TS: 1_700_000_000_000, Value: v, ID: id}
	}
	publish(0, []event.Event{ev("a", "1", 2), ev("a", "1", 2), ev("b", "", 3)}) // seq 1: a duplicate id
	publish(2, []event.Event{ev("c", "", 5)})                                   // seq 2
	c.NATS.Kill(0)
	publish(0, []event.Event{ev("b", "", 4), ev("zz", "", 1)}) // seq 3; "zz" is not a key of the run
	bad := &nats.Msg{Subject: jsSubjectOf(2), Data: []byte("not proto"), Header: nats.Header{}}
	bad.Header.Set(jetstream.MsgIDHeader, "bad")
	if err := jsRetry(ctx, func(ctx context.Context) error { _, err := js.PublishMsg(ctx, bad); return err }); err != nil { // seq 4: no format header, skipped
		t.Fatal(err)
	}

	ends, err := c.EndOffsets(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if want := map[int32]int64{0: 4, 1: 0, 2: 5, 3: 0}; fmt.Sprint(ends) != fmt.Sprint(want) {
		t.Fatalf("end offsets %v, want %v", ends, want)
	}
	if err := c.NATS.Restart(0); err != nil {
		t.Fatal(err)
	}
	logs, err := AuditLog(ctx, c, []string{"a", "b", "c", "d"})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]LogCount{"a": {Records: 2, Expected: 1, ExpSum: 2}, "b": {Records: 2, Expected: 2, ExpSum: 7},
		"c": {Records: 1, Expected: 1, ExpSum: 5}}
	if len(logs) != len(want) {
		t.Fatalf("audit of %d keys, want %d: %v", len(logs), len(want), logs)
	}
	for k, w := range want {
		if logs[k] == nil || *logs[k] != w {
			t.Fatalf("audit of %q: %+v, want %+v", k, logs[k], w)
		}
	}
}
