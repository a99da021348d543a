package chaos

import (
	"slices"
	"testing"
)

func TestClassifyIngest(t *testing.T) {
	for _, tc := range []struct {
		name   string
		status int
		body   string
		want   []Outcome
	}{
		{"all accepted", 202, `{"accepted":3,"rejected":[]}`, []Outcome{Acked, Acked, Acked}},
		{"NATS reply", 0, `{"accepted":3,"rejected":[]}`, []Outcome{Acked, Acked, Acked}},
		{"one invalid", 202, `{"accepted":2,"rejected":[{"index":1,"field":"value","reason":"bad"}]}`,
			[]Outcome{Acked, Failed, Acked}},
		{"one failed in the node", 503, `{"accepted":2,"rejected":[{"index":2,"reason":"failed on the server: retry later","retry":true}],"error":"1 event failed"}`,
			[]Outcome{Acked, Acked, Indeterminate}},
		{"one not stored", 503, `{"accepted":1,"rejected":[{"index":0,"field":"ts","reason":"bad"},{"index":2,"reason":"not stored: the log is unavailable, retry later","retry":true}],"error":"kafka down"}`,
			[]Outcome{Failed, Acked, Indeterminate}},
		{"shed", 429, `{"accepted":2,"rejected":[{"index":0,"reason":"shed: node at --max-keys live keys"}]}`,
			[]Outcome{Failed, Acked, Acked}},
		{"accepted does not add up", 202, `{"accepted":1,"rejected":[]}`,
			[]Outcome{Indeterminate, Indeterminate, Indeterminate}},
		{"rejection out of range", 202, `{"accepted":2,"rejected":[{"index":7,"field":"key"}]}`,
			[]Outcome{Indeterminate, Indeterminate, Indeterminate}},
		{"NATS error", 0, `{"accepted":0,"rejected":[],"error":"kafka: timed out"}`,
			[]Outcome{Indeterminate, Indeterminate, Indeterminate}},
		{"400 for a failure of the node", 400, `{"accepted":0,"rejected":[],"error":"produce: broker down"}`,
			[]Outcome{Indeterminate, Indeterminate, Indeterminate}},
		{"400, every event invalid", 400, `{"accepted":0,"rejected":[{"index":0,"field":"key"},{"index":1,"field":"key"},{"index":2,"field":"ts"}]}`,
			[]Outcome{Failed, Failed, Failed}},
		{"503", 503, `{"accepted":0,"rejected":[],"error":"node not ready"}`,
			[]Outcome{Indeterminate, Indeterminate, Indeterminate}},
		{"502 without a body", 502, ``, []Outcome{Indeterminate, Indeterminate, Indeterminate}},
		{"413", 413, `{"error":"too big"}`, []Outcome{Failed, Failed, Failed}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, reason := classifyIngest(tc.status, []byte(tc.body), 3)
			if !slices.Equal(got, tc.want) {
				t.Fatalf("got %v (%s), want %v", got, reason, tc.want)
			}
		})
	}
}
