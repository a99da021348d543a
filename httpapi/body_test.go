package httpapi_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/squallhq/squall/actors"
	"github.com/squallhq/squall/api"
	"github.com/squallhq/squall/event"
	"github.com/squallhq/squall/httpapi"
	"github.com/squallhq/squall/ingest"
	"github.com/squallhq/squall/internal/testutil"
)

// failing is a submitter whose log is unavailable, like the Kafka
// producer of a node whose brokers are down.
type failing struct{ err error }

func (f failing) Submit(context.Context, []event.Event, []actors.Result) error { return f.err }
func (f failing) SubmitAsync(context.Context, []event.Event, func([]actors.Result)) error {
	return f.err
}

// A failure that is the server's answers 503 with Retry-After; only what
// the client sent gets 400.
func TestServerFaultsAre503(t *testing.T) {
	reg := prometheus.NewRegistry()
	in, err := ingest.New(failing{errors.New("kafka: not enough replicas")}, reg, nil)
	if err != nil {
		t.Fatal(err)
	}
	s := httpapi.New(httpapi.DefaultConfig(), nil, in, reg, slog.New(slog.DiscardHandler))
	s.SetReady(true)
	ts := httptest.NewServer(s.Handler())
	defer ts.Close()
	f := &fixture{srv: ts, api: s}
	code, b, hdr := f.do(t, "POST", "/v1/events", "", `{"key":"a","value":1}`)
	if code != 503 || hdr.Get("Retry-After") == "" || !strings.Contains(string(b), "not enough replicas") {
		t.Fatalf("log unavailable = %d (Retry-After %q) %s", code, hdr.Get("Retry-After"), b)
	}
	if code, b, _ := f.do(t, "POST", "/v1/events", "", `[{"key":`); code != 400 {
		t.Fatalf("malformed body = %d %s", code, b)
	}

	// A closed engine, and a node not ready, are the server's too.
	e := newFixture(t, nil)
	e.e.Close()
	if code, b, hdr := e.do(t, "POST", "/v1/events", "", `{"key":"a","value":1}`); code != 503 || hdr.Get("Retry-After") == "" {
		t.Fatalf("closed engine = %d %s", code, b)
	}
	e.api.SetReady(false)
	for _, p := range []string{"/v1/events", "/readyz"} {
		method := map[bool]string{true: "POST", false: "GET"}[p == "/v1/events"]
		if code, b, hdr := e.do(t, method, p, "", `{"key":"a","value":1}`); code != 503 || hdr.Get("Retry-After") == "" {
			t.Fatalf("%s not ready = %d %s", p, code, b)
		}
	}
}

func gz(t testing.TB, b []byte) string {
	t.Helper()
	return string(testutil.Gzip(t, b))
}

// A gzip body is accepted; its decompressed size counts against the
// limit, so a gzip bomb gets 413. Other encodings get 415.
func TestContentEncoding(t *testing.T) {
	f := newFixture(t, func(h *httpapi.Config, _ *actors.Config) { h.MaxBodyBytes = 64 << 10 })
	body := `[{"key":"z","value":1},{"key":"z","value":2}]`
	code, b, _ := f.do(t, "POST", "/v1/events", "", gz(t, []byte(body)), "Content-Encoding", "gzip")
	if code != 202 || decode[api.IngestResponse](t, b).Accepted != 2 {
		t.Fatalf("gzip = %d %s", code, b)
	}
	bomb := gz(t, append([]byte(`[{"key":"z","value":1}`), bytes.Repeat([]byte(" "), 10<<20)...))
	if len(bomb) > 64<<10 {
		t.Fatalf("bomb of %d bytes is not under the limit compressed", len(bomb))
	}
	if code, b, _ := f.do(t, "POST", "/v1/events", "", bomb, "Content-Encoding", "gzip"); code != 413 {
		t.Fatalf("gzip bomb = %d %s", code, b)
	}
	if code, b, _ := f.do(t, "POST", "/v1/events", "", body, "Content-Encoding", "gzip"); code != 400 {
		t.Fatalf("not gzip = %d %s", code, b)
	}
	if code, b, _ := f.do(t, "POST", "/v1/events", "", gz(t, []byte(body))[:20], "Content-Encoding", "gzip"); code != 400 {
		t.Fatalf("truncated gzip = %d %s", code, b)
	}
	for _, enc := range []string{"br", "deflate", "gzip, br", "compress"} {
		if code, b, _ := f.do(t, "POST", "/v1/events", "", body, "Content-Encoding", enc); code != 415 {
			t.Fatalf("%s = %d %s", enc, code, b)
		}
	}
	if code, b, _ := f.do(t, "GET", "/debug/actors/z", "", ""); code != 200 || decode[api.KeyState](t, b).Window.Count != 2 {
		t.Fatalf("only the first gzip body is applied: %d %s", code, b)
	}
}

// rawPost opens a connection and sends a POST's headers announcing
// length bytes, then part of the body.
func rawPost(t *testing.T, addr string, length int64, part string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	fmt.Fprintf(c, "POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", length, part)
	return c
}

// readResponse reads the answer on c; the deadline only keeps a failing
// test from hanging.
func readResponse(t *testing.T, c net.Conn) (int, string) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(20 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("no answer: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// Slow clients hold no ingest turn: with 64 clients trickling bodies and
// more announcing huge ones, a normal POST is answered while every
// trickling client is still connected and unanswered.
func TestSlowClientsDoNotStarveIngest(t *testing.T) {
	f := newFixture(t, func(h *httpapi.Config, _ *actors.Config) { h.MaxConcurrentIngest = 2 })
	addr := f.srv.Listener.Addr().String()
	const slow = 64
	var conns []net.Conn
	var rests []string
	for i := range slow {
		body := fmt.Sprintf(`{"key":"slow-%02d","value":1}`, i)
		conns = append(conns, rawPost(t, addr, int64(len(body)), body[:10]))
		rests = append(rests, body[10:])
	}
	// Announcing more than the limit gets 413 before the body is read.
	for range 16 {
		c := rawPost(t, addr, 10_000_000_000, `[{"`)
		if code, b := readResponse(t, c); code != 413 {
			t.Fatalf("Content-Length over the limit = %d %s", code, b)
		}
	}
	// Every trickling client is inside the handler, reading its body.
	testutil.Eventually(t, 10*time.Second, func() bool { return f.api.HeldBodyBytes() == slow*10 },
		"held body bytes %d, want %d", f.api.HeldBodyBytes(), slow*10)

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "POST", f.srv.URL+"/v1/events", strings.NewReader(`{"key":"normal","value":1}`))
	resp, err := f.srv.Client().Do(req)
	if err != nil {
		t.Fatalf("normal POST while %d slow clients are connected: %v", slow, err)
	}
	resp.Body.Close()
	if resp.StatusCode != 202 {
		t.Fatalf("normal POST = %d", resp.StatusCode)
	}
	// The slow clients were unanswered: each now finishes its body and
	// gets its own answer.
	for i, c := range conns {
		if _, err := io.WriteString(c, rests[i]); err != nil {
			t.Fatal(err)
		}
	}
	for i, c := range conns {
		if code, b := readResponse(t, c); code != 202 {
			t.Fatalf("slow client %d = %d %s", i, code, b)
		}
	}
	if got := f.api.HeldBodyBytes(); got != 0 {
		t.Fatalf("%d body bytes still held", got)
	}
}

// Bodies held at once are bounded by MaxBufferedBytes: past it, 503.
func TestHeldBodyBytesBounded(t *testing.T) {
	f := newFixture(t, func(h *httpapi.Config, _ *actors.Config) { h.MaxBufferedBytes = 100 })
	addr := f.srv.Listener.Addr().String()
	body := `{"key":"held","value":1}` + strings.Repeat(" ", 76) // 100 bytes
	c := rawPost(t, addr, int64(len(body)), body[:90])
	testutil.Eventually(t, 10*time.Second, func() bool { return f.api.HeldBodyBytes() == 90 },
		"held body bytes %d", f.api.HeldBodyBytes())
	code, b, hdr := f.do(t, "POST", "/v1/events", "", `{"key":"other","value":1}`)
	if code != 503 || hdr.Get("Retry-After") == "" {
		t.Fatalf("over the held bytes = %d %s", code, b)
	}
	io.WriteString(c, body[90:])
	if code, b := readResponse(t, c); code != 202 {
		t.Fatalf("held body = %d %s", code, b)
	}
	if code, b, _ := f.do(t, "POST", "/v1/events", "", `{"key":"other","value":1}`); code != 202 {
		t.Fatalf("after release = %d %s", code, b)
	}
}

// A node listening beyond loopback without a token says so at start.
func TestWarnExposed(t *testing.T) {
	var logs testutil.LogBuffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	cfg := httpapi.DefaultConfig()
	cases := []struct {
		addr  string
		token string
		warn  bool
	}{
		{"127.0.0.1:8080", "", false},
		{"[::1]:8080", "", false},
		{"0.0.0.0:8080", "", true},
		{"10.1.2.3:8080", "", true},
		{"0.0.0.0:8080", "s3cret", false},
	}
	for _, c := range cases {
		before := len(logs.String())
		cfg.AuthToken = c.token
		addr, err := net.ResolveTCPAddr("tcp", c.addr)
		if err != nil {
			t.Fatal(err)
		}
		warned := httpapi.WarnExposed(log, cfg, addr)
		line := logs.String()[before:]
		if warned != c.warn || strings.Contains(line, "level=WARN") != c.warn {
			t.Errorf("%s token %q: warned %v, log %q", c.addr, c.token, warned, line)
		}
		if c.warn && !strings.Contains(line, c.addr) {
			t.Errorf("warning does not name the address: %q", line)
		}
	}
}
