package bench

import (
	"bytes"
	"encoding/json"
	"testing"
)

// TestBodySetIDs checks that bodies sent over and over carry an id on every
// event, a different one on every send, and none without ids.
func TestBodySetIDs(t *testing.T) {
	set, _ := bodies(4, 50, 1, true)
	seen := map[string]bool{}
	var buf []byte
	for seq := range 3 * 4 { // every body three times
		buf = set.body(seq, buf)
		lines := bytes.Split(bytes.TrimSuffix(buf, []byte("\n")), []byte("\n"))
		if len(lines) != 50 {
			t.Fatalf("send %d: %d events", seq, len(lines))
		}
		for _, l := range lines {
			var ev struct {
				Key, ID string
				TS      int64
			}
			if err := json.Unmarshal(l, &ev); err != nil || ev.Key == "" {
				t.Fatalf("send %d: %q: %v", seq, l, err)
			}
			if ev.ID == "" || seen[ev.ID] {
				t.Fatalf("send %d: id %q empty or sent before", seq, ev.ID)
			}
			seen[ev.ID] = true
		}
	}
	plain, _ := bodies(4, 50, 1, false)
	if b := plain.body(5, nil); bytes.Contains(b, []byte(`"id"`)) || !bytes.Equal(b, plain.bs[1]) {
		t.Fatalf("body without ids: %q", b[:80])
	}
}
