package rules

import (
	"strconv"
	"testing"
	"time"

	"github.com/squallhq/squall/event"
	"github.com/squallhq/squall/window"
)

func BenchmarkEval(b *testing.B) {
	r := &Rule{Name: "r", Match: "*", Aggregate: AggLast, Op: OpGT, Threshold: 50, For: time.Minute}
	var st State
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		r.Eval(&st, "web-1.cpu", float64(i%100), int64(i)*1000)
	}
}

func BenchmarkMatch10(b *testing.B) {
	var y []byte
	y = append(y, "rules:\n"...)
	for i := range 10 {
		y = append(y, "  - name: r"+strconv.Itoa(i)+"\n    match: \"*.m"+strconv.Itoa(i)+"\"\n    absent: 1m\n"...)
	}
	s, err := Parse("b.yaml", y)
	if err != nil {
		b.Fatal(err)
	}
	dst := make([]*Rule, 0, 10)
	b.ReportAllocs()
	for b.Loop() {
		dst = s.AppendMatch(dst[:0], "eu.web-1.host-17.m3", nil)
	}
}

func BenchmarkValueMean1m(b *testing.B) {
	sh := window.DefaultShape()
	w := window.New(&sh)
	for i := range 600 {
		w.Add(&event.Event{TS: int64(i) * 1000, Value: float64(i % 100)})
	}
	r := &Rule{Aggregate: AggMean, Over: time.Minute}
	b.ReportAllocs()
	for b.Loop() {
		r.Value(w)
	}
}
