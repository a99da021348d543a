package chaos

import "testing"

func TestVerify(t *testing.T) {
	keys := []string{"a", "b", "c", "d", "e"}
	books := []KeyBook{
		{Acked: 10, AckedSum: 50, Indet: 2, IndetSum: 4},
		{Acked: 10, AckedSum: 50, Indet: 2, IndetSum: 4},
		{Acked: 10, AckedSum: 50},
		{Acked: 3, AckedSum: 9},
		{Acked: 10, AckedSum: 50},
	}
	rd := func(count uint64, sum float64) KeyReading { return KeyReading{Status: 200, Count: count, Sum: sum} }
	readings := [][]KeyReading{
		{rd(11, 53), rd(11, 53)},             // within bounds: one indeterminate applied
		{rd(13, 58), rd(13, 58)},             // one beyond acked + indeterminate
		{rd(9, 45), rd(10, 50)},              // one lost, as read through the first node
		{{Status: 404}, {Err: "status 503"}}, // 404: all lost; a node unreadable
		{rd(10, 51), rd(10, 51)},             // count right, sum wrong
	}
	v := Verify(keys, 2, 12, books, readings, nil)
	if v.Lost != 1+3 || v.Doubled != 1 || v.KeysWrong != 4 || v.Disagreements != 1 || v.Unreadable != 1 || v.SumOut != 4 {
		t.Fatalf("%+v", v)
	}
}
