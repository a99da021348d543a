package output

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"
	"unicode/utf8"
)

// subjectCases are keys and the subject tail SubjectToken makes of them.
var subjectCases = []struct{ key, token string }{
	{"web-1.cpu", "web-1.cpu"},
	{"db-3.disk./var", "db-3.disk./var"},
	{"héllo.wörld", "héllo.wörld"},
	{"db 3", "db%203"},
	{"a*b", "a%2Ab"},
	{"*", "%2A"},
	{">", "%3E"},
	{"x.>", "x.%3E"},
	{"tab\there", "tab%09here"},
	{"cr\r\nlf", "cr%0D%0Alf"},
	{"100%", "100%25"},
	{".lead", "%2Elead"},
	{"trail.", "trail%2E"},
	{"a..b", "a.%2Eb"},
	{"a...b", "a.%2E%2Eb"},
	{".", "%2E"},
	{"..", "%2E%2E"},
	{"", "%"},
}

func TestSubjectToken(t *testing.T) {
	for _, c := range subjectCases {
		if got := SubjectToken(c.key); got != c.token {
			t.Errorf("SubjectToken(%q) = %q, want %q", c.key, got, c.token)
		}
		checkToken(t, c.key)
	}
	if n := testing.AllocsPerRun(100, func() { SubjectToken("web-1.cpu") }); n != 0 {
		t.Errorf("SubjectToken of a plain key allocates %v times", n)
	}
}

// FuzzSubjectToken checks, for any key, that the token is a valid NATS
// subject tail (no forbidden byte, no wildcard, no empty token) and that
// unescaping it gives the key back (distinct keys, distinct subjects).
func FuzzSubjectToken(f *testing.F) {
	for _, c := range subjectCases {
		f.Add(c.key)
	}
	f.Fuzz(func(t *testing.T, key string) { checkToken(t, key) })
}

func checkToken(t *testing.T, key string) {
	t.Helper()
	tok := SubjectToken(key)
	for i := 0; i < len(tok); i++ {
		if c := tok[i]; c <= ' ' || c == 0x7F || c == '*' || c == '>' {
			t.Fatalf("SubjectToken(%q) = %q holds byte %#x", key, tok, c)
		}
	}
	for part := range strings.SplitSeq(tok, ".") {
		if part == "" {
			t.Fatalf("SubjectToken(%q) = %q has an empty token", key, tok)
		}
	}
	if key != "" && utf8.ValidString(key) && !utf8.ValidString(tok) {
		t.Fatalf("SubjectToken(%q) = %q is not UTF-8", key, tok)
	}
	if back, ok := unescapeToken(tok); !ok || back != key {
		t.Fatalf("SubjectToken(%q) = %q unescapes to %q (ok %v)", key, tok, back, ok)
	}
}

// unescapeToken reverses SubjectToken.
func unescapeToken(tok string) (string, bool) {
	if tok == "%" {
		return "", true
	}
	var b strings.Builder
	for i := 0; i < len(tok); i++ {
		if tok[i] != '%' {
			b.WriteByte(tok[i])
			continue
		}
		if i+2 >= len(tok) {
			return "", false
		}
		v := 0
		for _, c := range []byte(tok[i+1 : i+3]) {
			switch {
			case c >= '0' && c <= '9':
				v = v<<4 | int(c-'0')
			case c >= 'A' && c <= 'F':
				v = v<<4 | int(c-'A'+10)
			default:
				return "", false
			}
		}
		b.WriteByte(byte(v))
		i += 2
	}
	return b.String(), true
}

// Alerts arrive at a NATS subscriber in Send order, with their payloads, on
// the subject of their key; '.' in a key is subject hierarchy (wildcards
// match it) and unsafe characters are escaped.
func TestNATSDeliversInOrder(t *testing.T) {
	srv := startNATS(t, -1)
	all := subscribe(t, srv.ClientURL(), "squall.alerts.>")
	web := subscribe(t, srv.ClientURL(), "squall.alerts.web-1.*")
	nc := connect(t, srv.ClientURL())
	o, reg := newOutputs(t, Config{Buffer: 64, Batch: 7}, NewNATSSink(nc, "squall.alerts", time.Second))

	const n = 300
	var sent []Alert
	wantWeb := 0
	for i := range n {
		c := subjectCases[i%len(subjectCases)]
		a := testAlert(t, c.key, i, int32(i%4), int64(i))
		send(t, o, a)
		sent = append(sent, a)
		if c.key == "web-1.cpu" {
			wantWeb++
		}
	}
	waitFor(t, "every alert at the subscriber", func() bool { return all.len() >= n })
	got := all.got(t)
	if len(got) != n {
		t.Fatalf("got %d messages, want %d (no failure, so no duplicate)", len(got), n)
	}
	for i, m := range got {
		want := "squall.alerts." + subjectCases[i%len(subjectCases)].token
		if m.id != sent[i].ID || m.subject != want {
			t.Fatalf("message %d: %s on %q, want %s on %q", i, m.id, m.subject, sent[i].ID, want)
		}
	}
	waitFor(t, "the web-1.* wildcard subscriber", func() bool { return web.len() >= wantWeb })
	for _, m := range web.got(t) {
		if m.subject != "squall.alerts.web-1.cpu" {
			t.Errorf("web-1.* got %q", m.subject)
		}
	}
	waitFor(t, "nothing pending", func() bool { return o.Pending() == 0 })
	for p := range int32(4) {
		if off, ok := o.Hold(p); ok {
			t.Errorf("Hold(%d) = %d after delivery", p, off)
		}
	}
	if v := metricValue(t, reg, "squall_alerts_published_total", "nats"); v != n {
		t.Errorf("published = %v, want %d", v, n)
	}
	if v := metricValue(t, reg, "squall_alert_publish_errors_total", "nats"); v != 0 {
		t.Errorf("publish errors = %v", v)
	}
}

// While the NATS server is down, Send blocks once Buffer alerts are
// outstanding, the gauges show it and Hold holds the oldest undelivered
// offset; once a server is back on the same port every alert arrives, Send
// unblocks and the hold is released. The buffer never holds more than
// Buffer alerts.
func TestNATSOutageBackPressure(t *testing.T) {
	const (
		buffer = 40
		before = 10
		during = buffer + 25 // more than the buffer holds
	)
	port := freePort(t)
	srv := startNATS(t, port)
	first := subscribe(t, srv.ClientURL(), "squall.alerts.>")
	gate := &gateDialer{}
	gate.open.Store(true)
	nc := reconnecting(t, srv.ClientURL(), gate)
	o, reg := newOutputs(t, Config{Buffer: buffer, Batch: 8, RetryMin: 5 * time.Millisecond, RetryMax: 50 * time.Millisecond},
		NewNATSSink(nc, "squall.alerts", 200*time.Millisecond))

	for i := range before {
		send(t, o, testAlert(t, "web-1.cpu", i, 0, int64(i)))
	}
	waitFor(t, "the first alerts delivered", func() bool { return o.Pending() == 0 && first.len() == before })

	gate.open.Store(false)
	stopNATS(srv)
	var (
		sent    atomic.Int64
		sendErr error
		done    = make(chan struct{})
		more    []Alert
	)
	for i := before; i < before+during; i++ {
		more = append(more, testAlert(t, "web-1.cpu", i, 0, int64(i)))
	}
	go func() {
		defer close(done)
		for _, a := range more {
			if sendErr = o.Send(context.Background(), a); sendErr != nil {
				return
			}
			sent.Add(1)
		}
	}()

	waitFor(t, "the buffer to fill", func() bool { return o.Pending() == buffer })
	waitFor(t, "a publish error", func() bool {
		return metricValue(t, reg, "squall_alert_publish_errors_total", "nats") > 0
	})
	select {
	case <-done:
		t.Fatalf("the sender finished while the sink is down (err %v)", sendErr)
	default:
	}
	if got := sent.Load(); got != buffer {
		t.Fatalf("%d Sends returned with the sink down, want %d (the buffer)", got, buffer)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	err := o.Send(ctx, testAlert(t, "other", 0, 0, 0))
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Send with a full buffer and a deadline: %v", err)
	}
	if v := metricValue(t, reg, "squall_alerts_buffered", "nats"); v != buffer {
		t.Errorf("buffered gauge = %v, want %d", v, buffer)
	}
	if v := metricValue(t, reg, "squall_alert_output_lag_seconds", "nats"); v <= 0 {
		t.Errorf("lag gauge = %v, want > 0", v)
	}
	if off, ok := o.Hold(0); !ok || off != before {
		t.Errorf("Hold(0) = %d, %v; want %d, true (the oldest undelivered)", off, ok, before)
	}

	srv2 := startNATS(t, port)
	second := subscribe(t, srv2.ClientURL(), "squall.alerts.>")
	gate.open.Store(true) // only now may the sink's connection reconnect

	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("Send still blocked after the server came back")
	}
	if sendErr != nil {
		t.Fatal(sendErr)
	}
	waitFor(t, "nothing pending", func() bool { return o.Pending() == 0 })
	if off, ok := o.Hold(0); ok {
		t.Errorf("Hold(0) = %d after delivery", off)
	}
	// Delivered means published and flushed; the subscriber's callback
	// gets them a moment later.
	var missing []string
	waitFor(t, "every alert at the subscriber", func() bool {
		ids := second.ids(t)
		missing = missing[:0]
		for _, a := range more {
			if !ids[a.ID] {
				missing = append(missing, a.ID)
			}
		}
		return len(missing) == 0
	})
	if v := metricValue(t, reg, "squall_alerts_buffered", "nats"); v != 0 {
		t.Errorf("buffered gauge = %v after delivery", v)
	}
	if v := metricValue(t, reg, "squall_alert_output_lag_seconds", "nats"); v != 0 {
		t.Errorf("lag gauge = %v after delivery", v)
	}
	if hw := o.highWater(); hw > buffer {
		t.Errorf("the buffer held %d alerts, more than %d", hw, buffer)
	}
}
