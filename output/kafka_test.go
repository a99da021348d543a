package output

import (
	"context"
	"errors"
	"testing"
	"time"
)

// Every alert reaches the topic in Send order, with its key, payload and
// id header.
func TestKafkaSink(t *testing.T) {
	c := startKafka(t)
	o, reg := newOutputs(t, Config{Buffer: 32, Batch: 5}, NewKafkaSink(producer(t, c), testTopic))
	keys := []string{"web-1.cpu", "db-3.disk./var", "a key with spaces", "héllo"}
	const n = 100
	var sent []Alert
	for i := range n {
		a := testAlert(t, keys[i%len(keys)], i, int32(i%3), int64(i))
		send(t, o, a)
		sent = append(sent, a)
	}
	waitFor(t, "nothing pending", func() bool { return o.Pending() == 0 })
	recs := consume(t, c, n)
	if len(recs) != n {
		t.Fatalf("got %d records, want %d (no failure, so no duplicate)", len(recs), n)
	}
	for i, r := range recs {
		a := sent[i]
		if string(r.Key) != a.Key || string(r.Value) != string(a.Payload) {
			t.Fatalf("record %d: key %q value %s, want %q %s", i, r.Key, r.Value, a.Key, a.Payload)
		}
		if len(r.Headers) != 1 || r.Headers[0].Key != AlertIDHeader || string(r.Headers[0].Value) != a.ID {
			t.Fatalf("record %d: headers %v, want %s=%s", i, r.Headers, AlertIDHeader, a.ID)
		}
	}
	for p := range int32(3) {
		if off, ok := o.Hold(p); ok {
			t.Errorf("Hold(%d) = %d after delivery", p, off)
		}
	}
	if v := metricValue(t, reg, "squall_alerts_published_total", "kafka"); v != n {
		t.Errorf("published = %v, want %d", v, n)
	}
}

// With two sinks, an alert is delivered only once both have it: Kafka
// taking every alert does not move Hold while the NATS sink (a closed
// connection) fails; Close then drops the alerts NATS never took, and only
// those.
func TestTwoSinksOneFailing(t *testing.T) {
	c := startKafka(t)
	srv := startNATS(t, -1)
	nc := connect(t, srv.ClientURL())
	nc.Close()
	var logs logBuffer
	o, reg := newOutputs(t, Config{Buffer: 32, Batch: 4, RetryMin: time.Millisecond, RetryMax: 5 * time.Millisecond, Logger: logs.logger()},
		NewNATSSink(nc, "squall.alerts", time.Second), NewKafkaSink(producer(t, c), testTopic))

	for i := range 5 {
		send(t, o, testAlert(t, "web-1.cpu", i, 2, int64(100+i)))
	}
	send(t, o, testAlert(t, "no-kafka-offset", 0, 3, -1))
	waitFor(t, "Kafka has every alert and NATS failed", func() bool {
		return metricValue(t, reg, "squall_alerts_published_total", "kafka") == 6 &&
			metricValue(t, reg, "squall_alert_publish_errors_total", "nats") >= 5
	})
	if n := logs.count("publish failed"); n != 1 {
		t.Errorf("%d publish errors logged, want 1 (the first; then one per 10s)", n)
	}
	if recs := consume(t, c, 6); len(recs) != 6 {
		t.Errorf("Kafka has %d records, want 6", len(recs))
	}
	if off, ok := o.Hold(2); !ok || off != 100 {
		t.Errorf("Hold(2) = %d, %v; want 100, true while NATS has not delivered", off, ok)
	}
	if off, ok := o.Hold(3); ok {
		t.Errorf("Hold(3) = %d: an alert with offset -1 holds", off)
	}
	if p := o.Pending(); p != 6 {
		t.Errorf("Pending = %d, want 6", p)
	}
	if v := metricValue(t, reg, "squall_alerts_buffered", "nats"); v != 6 {
		t.Errorf("buffered{nats} = %v, want 6", v)
	}
	if v := metricValue(t, reg, "squall_alerts_buffered", "kafka"); v != 0 {
		t.Errorf("buffered{kafka} = %v, want 0", v)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := o.Close(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Close = %v, want a deadline error", err)
	}
	if v := metricValue(t, reg, "squall_alerts_dropped_total", "nats"); v != 6 {
		t.Errorf("dropped{nats} = %v, want 6", v)
	}
	if v := metricValue(t, reg, "squall_alerts_dropped_total", "kafka"); v != 0 {
		t.Errorf("dropped{kafka} = %v, want 0", v)
	}
	if n := logs.count("dropped"); n != 1 {
		t.Errorf("the drop was logged %d times, want once", n)
	}
	if off, ok := o.Hold(2); !ok || off != 100 {
		t.Errorf("Hold(2) = %d, %v after Close; want 100, true (dropped alerts keep holding)", off, ok)
	}
}

// Hold moves only once both sinks have delivered: while the NATS server is
// down Kafka takes every alert and Hold stays; when it is back, Hold is
// released.
func TestTwoSinksHoldUntilBoth(t *testing.T) {
	c := startKafka(t)
	port := freePort(t)
	srv := startNATS(t, port)
	gate := &gateDialer{}
	gate.open.Store(true)
	nc := reconnecting(t, srv.ClientURL(), gate)
	o, reg := newOutputs(t, Config{Buffer: 32, Batch: 4, RetryMin: time.Millisecond, RetryMax: 10 * time.Millisecond},
		NewNATSSink(nc, "squall.alerts", 200*time.Millisecond), NewKafkaSink(producer(t, c), testTopic))
	gate.open.Store(false)
	stopNATS(srv)

	for i := range 8 {
		send(t, o, testAlert(t, "web-1.cpu", i, 1, int64(40+i)))
	}
	waitFor(t, "Kafka has every alert and NATS failed", func() bool {
		return metricValue(t, reg, "squall_alerts_published_total", "kafka") == 8 &&
			metricValue(t, reg, "squall_alert_publish_errors_total", "nats") > 0
	})
	if off, ok := o.Hold(1); !ok || off != 40 {
		t.Fatalf("Hold(1) = %d, %v; want 40, true while NATS is down", off, ok)
	}

	startNATS(t, port)
	gate.open.Store(true)
	waitFor(t, "NATS delivered", func() bool { return o.Pending() == 0 })
	if off, ok := o.Hold(1); ok {
		t.Errorf("Hold(1) = %d after both sinks delivered", off)
	}
}
