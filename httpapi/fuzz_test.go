package httpapi_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/squallhq/squall/actors"
	"github.com/squallhq/squall/event"
	"github.com/squallhq/squall/httpapi"
)

// fuzzSeedKeys hold state before every input; an input that does not
// carry events for one of them must leave its state as it was. (Inputs
// run one at a time in each fuzzing process, which has its own engine.)
var fuzzSeedKeys = []string{"seed-a", "seed-b", "seed-c", "db-3.disk./var"}

// FuzzPostEvents drives POST /v1/events end to end (auth, body reading,
// gzip, decoding, a real engine) with random bodies, content types and
// encodings: never a panic, never a 5xx (the documented 503s need a node
// not ready, a closed engine or a full body budget, none of which this
// setup has), and the state of keys the body does not name unchanged.
func FuzzPostEvents(f *testing.F) {
	fx := newFixture(f, func(_ *httpapi.Config, a *actors.Config) { a.IdleTTL = 24 * time.Hour })
	h := fx.api.Handler()
	for i, k := range fuzzSeedKeys {
		kj, _ := json.Marshal(k)
		body := `[{"key":` + string(kj) + `,"ts":1764064800000,"value":1,"id":"x"},{"key":` + string(kj) +
			`,"ts":1764064801000,"value":` + string(rune('2'+i)) + `,"tags":{"t":"v"}}]`
		if code, b, _ := fx.do(f, "POST", "/v1/events", "", body); code != 202 {
			f.Fatalf("seeding %s = %d %s", k, code, b)
		}
	}
	before := map[string]string{}
	for _, k := range fuzzSeedKeys {
		before[k] = fuzzState(f, fx, k)
	}
	for _, s := range []struct{ body, ct, enc string }{
		{`{"key":"a","value":1}`, "", ""},
		{`[{"key":"a","ts":"2025-11-25T10:00:00Z","value":1},{"key":"seed-a","value":2}]`, "application/json", ""},
		{"{\"key\":\"b\",\"value\":1}\n{\"key\":\"\",\"value\":1}\nnot json\n", "application/x-ndjson", ""},
		{`[{"key":`, "application/json; charset=utf-8", ""},
		{``, "", ""},
		{`{"key":"c","value":1}`, "application/x-protobuf", ""},
		{gz(f, []byte(`{"key":"g","value":1}`)), "", "gzip"},
		{`{"key":"g","value":1}`, "", "br"},
		{`{"key":"g","value":NaN,"ts":32503680000000,"id":"` + strings.Repeat("i", 200) + `"}`, "text/plain", "identity"},
	} {
		f.Add([]byte(s.body), s.ct, s.enc)
	}
	f.Fuzz(func(t *testing.T, body []byte, ct, enc string) {
		req := httptest.NewRequest("POST", "/v1/events", bytes.NewReader(body))
		req.Header.Set("Content-Type", ct)
		req.Header.Set("Content-Encoding", enc)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		switch rec.Code {
		case http.StatusAccepted, http.StatusBadRequest, http.StatusRequestEntityTooLarge,
			http.StatusUnsupportedMediaType, http.StatusTooManyRequests:
		default:
			t.Fatalf("POST (Content-Type %q, Content-Encoding %q) = %d %s", ct, enc, rec.Code, rec.Body)
		}
		if !json.Valid(rec.Body.Bytes()) {
			t.Fatalf("answer is not JSON: %q", rec.Body)
		}
		named := keysIn(body, ct, enc)
		for _, k := range fuzzSeedKeys {
			now := fuzzState(t, fx, k)
			if named[k] {
				before[k] = now // the body's to change
				continue
			}
			if now != before[k] {
				t.Fatalf("key %q changed by a body that does not name it:\nbefore %s\nafter  %s", k, before[k], now)
			}
		}
	})
}

// fuzzState is a key's state as JSON.
func fuzzState(t testing.TB, fx *fixture, key string) string {
	t.Helper()
	st, err := fx.e.Get(context.Background(), key)
	if err != nil {
		t.Fatalf("state of %q: %v", key, err)
	}
	b, _ := json.Marshal(st)
	return string(b)
}

// keysIn returns the keys of the valid events of a body, decoded the way
// the server does (gzip is undone; any other encoding carries none).
func keysIn(body []byte, ct, enc string) map[string]bool {
	switch strings.ToLower(strings.TrimSpace(enc)) {
	case "", "identity":
	case "gzip", "x-gzip":
		zr, err := gzip.NewReader(bytes.NewReader(body))
		if err != nil {
			return nil
		}
		if body, err = io.ReadAll(io.LimitReader(zr, 8<<20)); err != nil {
			return nil
		}
	default:
		return nil
	}
	var d event.Decoder
	d.Ensure(len(body))
	evs, _, err := d.Decode(body, event.FormatFromContentType(ct), event.Options{Now: time.Now().UnixMilli()}, nil, nil)
	if err != nil {
		return nil
	}
	keys := map[string]bool{}
	for _, ev := range evs {
		keys[ev.Key] = true
	}
	return keys
}
