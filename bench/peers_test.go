package bench

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestParsePeerLine(t *testing.T) {
	for _, c := range []struct {
		line string
		n    int64
		ok   bool
	}{
		{"squall-peer processed 500000", 500000, true},
		{"  squall-peer processed 12\r", 12, true},
		{"squall-peer processed 0", 0, false},
		{"squall-peer processed -3", 0, false},
		{"squall-peer processed 1e6", 0, false},
		{"SLF4J: Defaulting to no-operation (NOP) logger implementation", 0, false},
		{"", 0, false},
	} {
		n, ok := parsePeerLine(c.line)
		if n != c.n || ok != c.ok {
			t.Errorf("parsePeerLine(%q) = %d, %v; want %d, %v", c.line, n, ok, c.n, c.ok)
		}
	}
}

func TestMedian(t *testing.T) {
	for _, c := range []struct {
		xs   []float64
		want float64
	}{
		{nil, 0},
		{[]float64{3}, 3},
		{[]float64{5, 1, 3}, 3},
		{[]float64{4, 1, 3, 2}, 2.5},
	} {
		if got := median(c.xs); got != c.want {
			t.Errorf("median(%v) = %v, want %v", c.xs, got, c.want)
		}
	}
}

func TestPeerRows(t *testing.T) {
	s := func(perSec float64, cpuUS float64) peerSample {
		n := 1_000_000
		return peerSample{events: n, wall: time.Duration(float64(n) / perSec * float64(time.Second)),
			cpu: time.Duration(cpuUS * float64(n) * 1e3), steal: machineCPU{total: 1000, steal: 10}}
	}
	samples := map[string][]peerSample{
		PeerSquall:   {s(400_000, 4), s(500_000, 3), s(450_000, 5)},
		PeerBaseline: {s(900_000, 1)},
		PeerStreams:  {s(100_000, 20), s(90_000, 22), s(110_000, 18)},
	}
	errs := map[string]error{PeerFlink: errors.New("round 1: boom")}
	rows := peerRows([]string{PeerSquall, PeerBaseline, PeerStreams, PeerFlink}, samples, errs, Setup{Cores: 2})
	if len(rows) != 4 {
		t.Fatalf("%d rows, want 4", len(rows))
	}
	fig := func(r Result, name string) string {
		for _, f := range r.Figures {
			if f.Name == name {
				return f.Value
			}
		}
		return ""
	}
	sq, ks, fl := rows[0], rows[2], rows[3]
	if int(sq.EventsPerSec) != 450_000 || int(sq.BaselinePerSec) != 900_000 {
		t.Errorf("squall: %v events/s, baseline %v; want the medians 450000, 900000", sq.EventsPerSec, sq.BaselinePerSec)
	}
	if got := fig(sq, "CPU/event"); !strings.HasPrefix(got, "4.00 µs") {
		t.Errorf("squall CPU/event %q, want the median 4.00 µs", got)
	}
	if got := fig(ks, "Squall ÷ this"); got != "4.50×" {
		t.Errorf("kafka-streams: Squall ÷ this %q, want 4.50×", got)
	}
	if got := fig(ks, "steal"); !strings.HasPrefix(got, "1.0%") {
		t.Errorf("kafka-streams steal %q, want 1.0%%", got)
	}
	if fig(sq, "Squall ÷ this") != "" {
		t.Error("squall row compares with itself")
	}
	if fl.Err != "round 1: boom" || fl.EventsPerSec != 0 {
		t.Errorf("flink row %+v, want its error and no figures", fl)
	}
}
