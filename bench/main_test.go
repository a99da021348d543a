package bench

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	ProducerChild()
	goleak.VerifyTestMain(m)
}

// TestSmoke runs every scenario of the smoke mode (tiny sizes, kfake, a
// few seconds) so the harness cannot rot: each must produce its figures,
// and the report must render.
func TestSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the benchmark scenarios")
	}
	rep, err := Run(context.Background(), Options{Mode: "smoke"})
	if err != nil {
		t.Fatal(err)
	}
	groups := map[string]int{}
	for _, r := range rep.Results {
		if r.Err != "" {
			t.Errorf("%s: %s", r.Scenario, r.Err)
			continue
		}
		groups[r.Group]++
		switch {
		case strings.Contains(r.Scenario, "/latency"):
			if r.Latency == nil || r.Latency.Samples == 0 || r.Latency.P99 <= 0 || r.Latency.P50 > r.Latency.P99 {
				t.Errorf("%s: latency %+v", r.Scenario, r.Latency)
			}
		case r.Group == "memory":
			if r.BytesPerKey <= 0 || r.RSSBytes <= 0 {
				t.Errorf("%s: %+v", r.Scenario, r)
			}
		default:
			if r.EventsPerSec <= 0 || r.Setup.Events <= 0 {
				t.Errorf("%s: %v events/s over %d events", r.Scenario, r.EventsPerSec, r.Setup.Events)
			}
		}
		if r.Group == "kafka" && r.Setup.Rules == 0 && r.Latency == nil && r.BaselinePerSec <= 0 && r.versus == "" {
			t.Errorf("%s: no baseline", r.Scenario)
		}
		// What clients send: ids, but in the rows named /no-ids.
		if want := map[bool]string{true: "off", false: "on"}[strings.HasSuffix(r.Scenario, "/no-ids")]; r.Group != "memory" && r.Setup.IDs != want {
			t.Errorf("%s: ids %q, want %q", r.Scenario, r.Setup.IDs, want)
		}
	}
	// The ids-on / ids-off ratio of the same run.
	for _, name := range []string{"kafka/kfake/1K-keys", "ingest/http/batch-1000"} {
		found := false
		for _, r := range rep.Results {
			for _, f := range r.Figures {
				found = found || r.Scenario == name && f.Name == "vs "+name+"/no-ids"
			}
		}
		if !found {
			t.Errorf("%s: no figure against %s/no-ids", name, name)
		}
	}
	// The GOMAXPROCS 2 / 1 ratio of the same run.
	found := false
	for _, r := range rep.Results {
		for _, f := range r.Figures {
			found = found || r.Scenario == "kafka/kfake/1K-keys/gomaxprocs-2" && f.Name == "vs kafka/kfake/1K-keys/gomaxprocs-1"
		}
	}
	if !found {
		t.Error("kafka/kfake/1K-keys/gomaxprocs-2: no figure against gomaxprocs-1")
	}
	if groups["kafka"] < 3 || groups["ingest"] < 5 || groups["memory"] != 1 {
		t.Errorf("scenarios run: %v", groups)
	}
	var b bytes.Buffer
	if err := rep.WriteTable(&b); err != nil || !strings.Contains(b.String(), "kafka/kfake/1K-keys") {
		t.Errorf("table: %v\n%s", err, b.String())
	}
	b.Reset()
	if err := rep.WriteSVG(&b); err != nil || !strings.Contains(b.String(), "<svg") {
		t.Errorf("svg: %v", err)
	}
	t.Logf("\n%s", func() string { var o bytes.Buffer; rep.WriteTable(&o); return o.String() }())
}
