package natstest

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/squallhq/squall/api"
)

// Ingest sends body as a request on subject and returns the node's answer,
// failing the test when there is none within 10 s or it is not an
// api.IngestResponse.
func Ingest(t testing.TB, nc *nats.Conn, subject, body string) api.IngestResponse {
	t.Helper()
	msg, err := nc.Request(subject, []byte(body), 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var r api.IngestResponse
	if err := json.Unmarshal(msg.Data, &r); err != nil {
		t.Fatalf("reply %s: %v", msg.Data, err)
	}
	return r
}
