package node

import (
	"net/http"
	"testing"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// gauge returns the value of the unlabelled gauge name on n's /metrics.
func gauge(t *testing.T, n *Node, name string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + n.HTTPAddr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	f := fams[name]
	if f == nil || len(f.GetMetric()) != 1 {
		t.Fatalf("/metrics: %s missing or labelled: %v", name, f)
	}
	return f.GetMetric()[0].GetGauge().GetValue()
}

// squall_ready follows /readyz: 1 on a started standalone node, 0 once it
// is no longer ready (as when it starts shutting down). The clustered side
// is checked by TestNotJoinedNodeAnswers503.
func TestReadyGauge(t *testing.T) {
	n := startNode(t, nil)
	if v := gauge(t, n, "squall_ready"); v != 1 {
		t.Fatalf("squall_ready = %v on a ready node", v)
	}
	n.api.SetReady(false)
	if v := gauge(t, n, "squall_ready"); v != 0 {
		t.Fatalf("squall_ready = %v on a node that is not ready", v)
	}
	n.api.SetReady(true)
}
