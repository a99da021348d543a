package httpapi_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/squallhq/squall/actors"
	"github.com/squallhq/squall/api"
	"github.com/squallhq/squall/httpapi"
)

// TestKeySeriesReplayAndPages: the endpoints the web console reads beyond
// the others.
func TestKeySeriesReplayAndPages(t *testing.T) {
	f := newFixture(t, func(_ *httpapi.Config, ac *actors.Config) { ac.Shape.Recent = 4 })
	// a/b: 3 events in 2 buckets; c: 5 events, more than it keeps.
	code, b, _ := f.do(t, "POST", "/v1/events", "", `[{"key":"a/b","ts":1764064800000,"value":1},{"key":"a/b","ts":1764064800500,"value":3},
		{"key":"a/b","ts":1764064801000,"value":-2},{"key":"c","ts":1764064800000,"value":1},{"key":"c","ts":1764064800001,"value":1},
		{"key":"c","ts":1764064800002,"value":1},{"key":"c","ts":1764064800003,"value":1},{"key":"c","ts":1764064800004,"value":1}]`)
	if code != http.StatusAccepted {
		t.Fatalf("POST = %d %s", code, b)
	}
	code, b, _ = f.do(t, "GET", "/debug/actors/a%2Fb/series", "", "")
	sr := decode[api.KeySeries](t, b)
	if code != http.StatusOK || sr.Key != "a/b" || sr.ResolutionMs != 1000 || sr.RetentionMs != 600_000 || len(sr.Buckets) != 2 ||
		sr.Buckets[0].TS != 1764064800000 || sr.Buckets[0].Count != 2 || sr.Buckets[0].Mean != 2 || sr.Buckets[0].Min != 1 || sr.Buckets[0].Max != 3 ||
		sr.Buckets[1].Count != 1 || sr.Buckets[1].Mean != -2 {
		t.Fatalf("GET series = %d %s", code, b)
	}
	if code, b, _ = f.do(t, "GET", "/debug/actors/nope/series", "", ""); code != http.StatusNotFound {
		t.Fatalf("GET series of a missing key = %d %s", code, b)
	}
	if code, b, _ = f.do(t, "GET", "/debug/actors/a%2Fb/replay", "", ""); code != http.StatusOK || !decode[api.KeyReplay](t, b).Complete {
		t.Fatalf("GET replay = %d %s", code, b)
	}
	code, b, _ = f.do(t, "GET", "/debug/actors/c/replay", "", "")
	if kr := decode[api.KeyReplay](t, b); code != http.StatusConflict || kr.Complete || kr.Error == "" || kr.Received != 5 || kr.Kept != 4 {
		t.Fatalf("GET replay of a key with events dropped = %d %s, want 409", code, b)
	}
	if code, b, _ = f.do(t, "GET", "/debug/actors/nope/replay", "", ""); code != http.StatusNotFound {
		t.Fatalf("GET replay of a missing key = %d %s", code, b)
	}

	var keys []string
	for i := range 7 {
		keys = append(keys, fmt.Sprintf(`{"key":"p-%d","value":1}`, i))
	}
	if code, b, _ = f.do(t, "POST", "/v1/events", "", "["+strings.Join(keys, ",")+"]"); code != http.StatusAccepted {
		t.Fatalf("POST = %d %s", code, b)
	}
	var seen []string
	for after, pages := "", 0; ; pages++ {
		code, b, _ = f.do(t, "GET", "/debug/actors?prefix=p-&limit=3&after="+after, "", "")
		kl := decode[api.KeyList](t, b)
		if code != http.StatusOK || pages > 3 {
			t.Fatalf("GET page %d = %d %s", pages, code, b)
		}
		for _, k := range kl.Keys {
			seen = append(seen, k.Key)
		}
		if !kl.Truncated {
			break
		}
		after = kl.Next
	}
	if strings.Join(seen, " ") != "p-0 p-1 p-2 p-3 p-4 p-5 p-6" {
		t.Fatalf("pages listed %v", seen)
	}
	code, b, _ = f.do(t, "GET", "/debug/cluster/members", "", "")
	if rd := decode[api.Members](t, b); code != http.StatusOK || !rd.Members["n1"].Ready {
		t.Fatalf("GET members = %d %s", code, b)
	}
}

// TestConsoleFiles: the console's files load without the token, the data
// does not.
func TestConsoleFiles(t *testing.T) {
	f := newFixture(t, func(h *httpapi.Config, _ *actors.Config) { h.AuthToken = "s3cret" })
	for path, want := range map[string]string{"/ui/": "text/html", "/ui/app.js": "javascript", "/ui/style.css": "text/css"} {
		code, b, hdr := f.do(t, "GET", path, "", "")
		if code != http.StatusOK || !strings.Contains(hdr.Get("Content-Type"), want) || len(b) == 0 ||
			!strings.Contains(hdr.Get("Content-Security-Policy"), "default-src 'none'") {
			t.Fatalf("GET %s = %d %s %q", path, code, hdr.Get("Content-Type"), b)
		}
	}
	if code, _, hdr := f.do(t, "GET", "/ui", "", ""); code != http.StatusOK || !strings.Contains(hdr.Get("Content-Type"), "text/html") {
		t.Fatalf("GET /ui (redirected to /ui/) = %d %v", code, hdr)
	}
	if code, _, _ := f.do(t, "GET", "/ui/nope.js", "", ""); code != http.StatusNotFound {
		t.Fatalf("GET /ui/nope.js = %d", code)
	}
	for _, p := range []string{"/debug/cluster/members", "/debug/actors/a/series", "/debug/actors/a/replay"} {
		if code, _, _ := f.do(t, "GET", p, "", ""); code != http.StatusUnauthorized {
			t.Fatalf("GET %s without the token = %d, want 401", p, code)
		}
	}
}
