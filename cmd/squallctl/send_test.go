package main

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/squallhq/squall/api"
	"github.com/squallhq/squall/client"
	"github.com/squallhq/squall/node"
)

// count returns the key's window count on n (0 when it has no actor).
func count(t *testing.T, n *node.Node, key string) uint64 {
	t.Helper()
	c, err := client.New("http://" + n.HTTPAddr())
	if err != nil {
		t.Fatal(err)
	}
	st, err := c.Get(context.Background(), key)
	if err == client.ErrNotFound {
		return 0
	}
	if err != nil {
		t.Fatal(err)
	}
	return st.Window.Count
}

func TestSendArgs(t *testing.T) {
	n := startNode(t, nil)
	r := ctl(t, n, "", "send", "web-1.cpu=40@1764064800000", "web-1.cpu=60@2025-11-25T10:00:01Z")
	expect(t, r, 0)
	want := `events:       2
accepted:     2
  late:       0
  duplicate:  0
rejected:     0
`
	if r.out != want || r.err != "" {
		t.Fatalf("stdout:\n%s\nwant:\n%s\nstderr: %s", r.out, want, r.err)
	}
	if c := count(t, n, "web-1.cpu"); c != 2 {
		t.Fatalf("count %d, want 2", c)
	}
	// A key with "=" in it: the value is after the last "=".
	expect(t, ctl(t, n, "", "send", "a=b=3"), 0)
	if c := count(t, n, "a=b"); c != 1 {
		t.Fatalf("count of a=b %d, want 1", c)
	}
	// No node there: the client's attempts fail, the exit status is 1.
	r = ctl(t, nil, "", "--server", "http://127.0.0.1:1", "send", "k=1", "k=2")
	expect(t, r, 1, "accepted:     0\n")
	if !strings.Contains(r.err, "stopped at event 0: 2 of 2 events not sent: client: send: ") || !strings.Contains(r.err, "connection refused") {
		t.Fatalf("stderr %q", r.err)
	}
}

// Events the node rejects are listed with their index, field and reason,
// and the exit status is 1; the others are applied.
func TestSendRejected(t *testing.T) {
	n := startNode(t, nil)
	r := ctl(t, n, "", "send", "k=1@1764064800000", "k=NaN@1764064800000", "k=2@1764064800")
	expect(t, r, 1,
		"accepted:     1\n",
		"rejected:     2\n",
		"  event 1: value: value must be a finite number\n",
		"  event 2: ts: ts looks like seconds: it must be epoch milliseconds")
	if !strings.Contains(r.err, "2 of 3 events rejected") {
		t.Fatalf("stderr %q", r.err)
	}
	if c := count(t, n, "k"); c != 1 {
		t.Fatalf("count %d, want 1", c)
	}
	// Arguments that are not events: nothing is sent, usage status.
	for _, args := range [][]string{{"send", "novalue"}, {"send", "k=x"}, {"send", "k=1@yesterday"}, {"send", "--batch", "0", "k=1"}} {
		r := ctl(t, n, "", args...)
		expect(t, r, 2)
		if !strings.Contains(r.err, "squallctl: ") {
			t.Fatalf("%v: stderr %q", args, r.err)
		}
	}
	if c := count(t, n, "k"); c != 1 {
		t.Fatalf("count %d after bad arguments, want 1", c)
	}
}

// NDJSON on standard input, in batches: indexes count over the whole
// input; events the node's decoder rejects are rejected before sending;
// duplicates (same id) are counted.
func TestSendNDJSONBatches(t *testing.T) {
	n := startNode(t, nil)
	in := `{"key":"b","ts":1764064800000,"value":1,"id":"x"}
{"key":"b","ts":1764064800001,"value":2,"id":"x"}
{"key":"b","ts":1764064800002}
{"key":"b","ts":1764064800,"value":3}
{"key":"b","ts":"2025-11-25T10:00:03Z","value":4}
`
	r := ctl(t, n, in, "send", "--batch", "2", "-o", "json")
	expect(t, r, 1)
	var res api.IngestResponse
	if err := json.Unmarshal([]byte(r.out), &res); err != nil {
		t.Fatalf("%v: %s", err, r.out)
	}
	if res.Accepted != 3 || res.Duplicate == nil || *res.Duplicate != 1 || res.Late == nil || *res.Late != 0 || len(res.Rejected) != 2 {
		t.Fatalf("answer %+v", res)
	}
	if r0, r1 := res.Rejected[0], res.Rejected[1]; r0.Index != 2 || r0.Field != "value" || r1.Index != 3 || r1.Field != "ts" {
		t.Fatalf("rejected %+v", res.Rejected)
	}
	if c := count(t, n, "b"); c != 2 {
		t.Fatalf("count %d, want 2", c)
	}
}

func TestSendFileFormats(t *testing.T) {
	n := startNode(t, nil)
	arr := writeFile(t, "events.json", `[{"key":"c","ts":1764064800000,"value":1},{"key":"c","ts":1764064801000,"value":2}]`)
	expect(t, ctl(t, n, "", "send", "-f", arr), 0, "accepted:     2\n")

	csvFile := writeFile(t, "events.csv", "key,ts,value\nc,1764064802000,3\nc,2025-11-25T10:00:03Z,4\nc,1764064803000,four\nc,1\n")
	r := ctl(t, n, "", "send", "-f", csvFile)
	expect(t, r, 1, "accepted:     2\n", "  event 2: value: \"four\" is not a number\n", "  event 3: 2 fields: want 3, key,ts,value\n")
	if c := count(t, n, "c"); c != 4 {
		t.Fatalf("count %d, want 4", c)
	}
	// CSV on standard input, detected from its first byte; no ts: now.
	expect(t, ctl(t, n, "now,,5\n", "send"), 0, "accepted:     1\n")
	if c := count(t, n, "now"); c != 1 {
		t.Fatalf("count %d, want 1", c)
	}
	// YAML output of the same answer.
	expect(t, ctl(t, n, "c,1764064805000,6\n", "send", "-o", "yaml"), 0, "accepted: 1\n", "rejected: []\n")

	expect(t, ctl(t, n, "", "send", "-f", "/nonexistent/events.json"), 1)
	r = ctl(t, n, "   \n", "send")
	expect(t, r, 1)
	if !strings.Contains(r.err, "standard input: no events") {
		t.Fatalf("stderr %q", r.err)
	}
	expect(t, ctl(t, n, "", "send", "-f", arr, "c=1"), 2)
}

// --nats sends as a NATS request and prints the same answer.
func TestSendNATS(t *testing.T) {
	n := startNode(t, nil)
	r := ctl(t, n, "", "send", "--nats", n.NATSURL(), "d=1@1764064800000", "d=2@1764064800000")
	expect(t, r, 0, "accepted:     2\n")
	if c := count(t, n, "d"); c != 2 {
		t.Fatalf("count %d, want 2", c)
	}
	r = ctl(t, n, "", "send", "--nats", n.NATSURL(), "d=NaN@1764064800000")
	expect(t, r, 1, "event 0: value: value must be a finite number")
	expect(t, ctl(t, n, "", "--timeout", "1s", "send", "--nats", "nats://127.0.0.1:1", "d=1"), 1)
}

// The token comes from --token, --token-file or $SQUALL_TOKEN; without it
// the node's refusal is the error.
func TestToken(t *testing.T) {
	n := startNode(t, func(c *node.Config) { c.AuthToken = "s3cret" })
	r := ctl(t, n, "", "keys")
	expect(t, r, 1)
	if !strings.Contains(r.err, "401") || !strings.Contains(r.err, "missing or wrong bearer token") {
		t.Fatalf("stderr %q", r.err)
	}
	r = ctl(t, n, "", "send", "t=1")
	expect(t, r, 1)
	if !strings.Contains(r.err, "stopped at event 0: 1 of 1 event not sent: squall: 401 Unauthorized: missing or wrong bearer token") {
		t.Fatalf("stderr %q", r.err)
	}
	expect(t, ctl(t, n, "", "--token", "s3cret", "send", "t=1"), 0, "accepted:     1\n")
	expect(t, ctl(t, n, "", "--token-file", writeFile(t, "token", "s3cret\n"), "keys"), 0, "t  ")
	t.Setenv(envToken, "s3cret")
	expect(t, ctl(t, n, "", "keys"), 0, "t  ")
	expect(t, ctl(t, n, "", "--token-file", writeFile(t, "empty", "\n"), "keys"), 1)
	expect(t, ctl(t, n, "", "--token", "a", "--token-file", "f", "keys"), 2)
}
