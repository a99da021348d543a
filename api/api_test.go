package api

import (
	"fmt"
	"testing"
)

func TestStatusOf(t *testing.T) {
	doc := &Cluster{Ready: false, NotReadyReason: "1 assigned partitions not served yet",
		Partitions: []PartitionState{{Partition: 0, State: "serving"}, {Partition: 1, State: "acquiring", Token: "3/4"}, {Partition: 2, State: "releasing"}},
		Sources:    []SourceStatus{{Partition: 0, State: "live"}, {Partition: 1, State: "replaying", ReplayFrom: 5, ReplayTo: 9}}}
	st := StatusOf(doc)
	if st.Ready || st.Reason != doc.NotReadyReason || len(st.Moving) != 2 || st.Moving[0].Partition != 1 || st.Moving[1].State != "releasing" ||
		len(st.Replaying) != 1 || st.Replaying[0].ReplayTo != 9 {
		t.Fatalf("StatusOf = %+v", st)
	}
	if st := StatusOf(&Cluster{Ready: true}); !st.Ready || st.Moving == nil || st.Replaying == nil {
		t.Fatalf("StatusOf of a serving member = %+v, want empty lists", st)
	}
}

func TestKeyListCut(t *testing.T) {
	l := &KeyList{}
	for _, k := range []string{"d", "b", "a", "c"} {
		l.Keys = append(l.Keys, KeySummary{Key: k})
	}
	l.Cut(4)
	if l.Truncated || l.Next != "" || fmt.Sprint(keys(l)) != "[a b c d]" {
		t.Fatalf("Cut(4) = %+v", l)
	}
	l.Cut(2)
	if !l.Truncated || l.Next != "b" || fmt.Sprint(keys(l)) != "[a b]" {
		t.Fatalf("Cut(2) = %+v", l)
	}
	// Truncated by a partition already: the last key listed is next.
	l = &KeyList{Keys: []KeySummary{{Key: "x"}}, Truncated: true}
	if l.Cut(5); l.Next != "x" {
		t.Fatalf("Cut of a truncated list = %+v", l)
	}
}

func keys(l *KeyList) []string {
	var out []string
	for _, k := range l.Keys {
		out = append(out, k.Key)
	}
	return out
}
