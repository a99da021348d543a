package chaos

import (
	"maps"
	"strconv"
	"testing"
	"time"
)

var t0 = time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)

func at(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }

// leaderObs is a poll of node sent at sent ms and answered at ans ms, in
// which leader acts with epoch.
func leaderObs(node string, sent, ans int, leader string, epoch int64) Obs {
	return Obs{Node: node, Sent: at(sent), Answered: at(ans), Self: node, Leader: leader, Epoch: epoch}
}

// serveObs is a poll with per-partition tokens: node serves p under tok.
func serveObs(node string, sent, ans int, p int32, tok Token) Obs {
	return Obs{Node: node, Sent: at(sent), Answered: at(ans), Self: node, Exact: true,
		Serves: []Serve{{Partition: p, Token: tok, Granted: true}}}
}

// wantKinds fails t unless vs has want[kind] violations of each kind.
func wantKinds(t *testing.T, vs []Violation, want map[string]int) {
	t.Helper()
	got := map[string]int{}
	for _, v := range vs {
		got[v.Kind]++
	}
	if !maps.Equal(got, want) {
		t.Fatalf("got %v, want %v: %+v", got, want, vs)
	}
}

func TestCheckHistoryLeaders(t *testing.T) {
	for _, tc := range []struct {
		name string
		obs  []Obs
		want map[string]int
	}{
		{"one leader, followers agree", []Obs{
			leaderObs("n1", 0, 10, "n1", 5), leaderObs("n2", 0, 10, "n1", 5), leaderObs("n3", 0, 12, "n1", 5),
		}, map[string]int{}},
		{"same epoch on two nodes, at any times", []Obs{
			leaderObs("n1", 0, 10, "n1", 5), leaderObs("n2", 5000, 5010, "n2", 5),
		}, map[string]int{TwoLeaders: 1}},
		{"handover: the old leader's poll overlaps the new epoch's answer", []Obs{
			leaderObs("n2", 100, 110, "n2", 9),
			leaderObs("n1", 105, 300, "n1", 5), // sent before 110: may predate it
		}, map[string]int{}},
		{"old epoch acting in a poll sent after a newer epoch was answered", []Obs{
			leaderObs("n3", 100, 110, "n2", 9), // a follower's view proves epoch 9
			leaderObs("n1", 111, 120, "n1", 5),
		}, map[string]int{StaleLeader: 1}},
		{"a failed poll proves nothing", []Obs{
			{Node: "n2", Sent: at(100), Answered: at(110), Err: "timeout", Epoch: 9},
			leaderObs("n1", 111, 120, "n1", 5),
		}, map[string]int{}},
	} {
		t.Run(tc.name, func(t *testing.T) { wantKinds(t, CheckHistory(tc.obs), tc.want) })
	}
}

func TestCheckHistoryOwners(t *testing.T) {
	a, b := Token{Epoch: 5, Generation: 7}, Token{Epoch: 5, Generation: 8}
	for _, tc := range []struct {
		name string
		obs  []Obs
		want map[string]int
	}{
		{"a move in order", []Obs{
			serveObs("n1", 0, 10, 3, a), serveObs("n2", 500, 510, 3, b),
		}, map[string]int{}},
		{"same grant on two nodes", []Obs{
			serveObs("n1", 0, 10, 3, a), serveObs("n2", 9000, 9010, 3, a),
		}, map[string]int{TwoOwners: 1}},
		{"same grant, other partitions", []Obs{
			serveObs("n1", 0, 10, 3, a), serveObs("n2", 0, 10, 4, a),
		}, map[string]int{}},
		{"old grant in a poll overlapping the new one's answer", []Obs{
			serveObs("n2", 500, 510, 3, b), serveObs("n1", 505, 700, 3, a),
		}, map[string]int{}},
		{"old grant in a poll sent after the new one was answered", []Obs{
			serveObs("n2", 500, 510, 3, b), serveObs("n1", 511, 520, 3, a), serveObs("n1", 600, 620, 3, a),
		}, map[string]int{StaleOwner: 1}}, // one violation, seen twice
		{"newer epoch beats a higher generation", []Obs{
			serveObs("n2", 0, 10, 3, Token{Epoch: 9, Generation: 1}), serveObs("n1", 20, 30, 3, Token{Epoch: 5, Generation: 40}),
		}, map[string]int{StaleOwner: 1}},
	} {
		t.Run(tc.name, func(t *testing.T) { wantKinds(t, CheckHistory(tc.obs), tc.want) })
	}
}

// Without per-partition tokens, grants come from the assignment view and
// the older-grant rule counts only serves whose source applies records.
func TestCheckHistoryOwnersFromAssignment(t *testing.T) {
	doc := func(node string, sent, ans int, gen int64, owner string, source string) Obs {
		o := Obs{Node: node, Sent: at(sent), Answered: at(ans), Self: node, Generation: gen,
			Owners: map[int32]string{3: owner}, Sources: map[int32]SourceState{}}
		if source != "" {
			o.Sources[3] = SourceState{State: source}
		}
		body := []byte(`{"self":"` + node + `","generation":` + itoa(gen) + `,"serving":[3],"partitions":12,` +
			`"assignment":{"3":"` + owner + `"}` + sourcesJSON(source) + `}`)
		var parsed Obs
		if err := parseCluster(body, &parsed); err != nil {
			t.Fatal(err)
		}
		o.Serves, o.Owners, o.Sources = parsed.Serves, parsed.Owners, parsed.Sources
		return o
	}
	for _, tc := range []struct {
		name string
		obs  []Obs
		want map[string]int
	}{
		{"the new owner awaits the handoff while the old one still applies", []Obs{
			doc("n2", 0, 10, 8, "n2", ""),        // holds 3, no source yet
			doc("n1", 20, 30, 7, "n1", "live"),   // has not seen generation 8
			doc("n1", 40, 50, 8, "n2", "live"),   // stopping its source
			doc("n2", 60, 70, 8, "n2", "live"),   // serving after the handoff
			doc("n1", 80, 90, 8, "n2", ""),       // released
			doc("n3", 80, 90, 8, "n2", ""),       // serves 3? no: assignment says n2; not applying
			doc("n2", 100, 110, 8, "n2", "live"), // still
		}, map[string]int{}},
		{"the old owner applies after the new one applied", []Obs{
			doc("n2", 60, 70, 8, "n2", "live"),
			doc("n1", 80, 90, 7, "n1", "live"), // resumed after a pause, still live
		}, map[string]int{StaleOwner: 1}},
		{"the old owner, knowing it lost the partition, applies after the new one did", []Obs{
			doc("n2", 60, 70, 8, "n2", "live"),
			doc("n1", 80, 90, 8, "n2", "live"),
		}, map[string]int{StaleOwner: 1}},
		{"two nodes granted one generation", []Obs{
			doc("n2", 0, 10, 8, "n2", ""),
			doc("n1", 0, 10, 8, "n1", ""),
		}, map[string]int{TwoOwners: 1}},
	} {
		t.Run(tc.name, func(t *testing.T) { wantKinds(t, CheckHistory(tc.obs), tc.want) })
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

func sourcesJSON(state string) string {
	if state == "" {
		return ""
	}
	return `,"sources":[{"partition":3,"state":"` + state + `","applied":10}]`
}

func TestParseClusterExact(t *testing.T) {
	body := []byte(`{"self":"n1","leader":"n2","epoch":17,"generation":42,"serving":[0,3],
		"partitions":[{"partition":0,"state":"serving","token":"17/42"},{"partition":3,"state":"serving","token":"15/40"},
		{"partition":6,"state":"replaying","token":"17/42"}],
		"assignment":{"0":"n1","3":"n1","6":"n1"},"members":[{"id":"n2"},{"id":"n1"}],
		"sources":[{"partition":0,"state":"live","applied":12}],"ready":true}`)
	var o Obs
	if err := parseCluster(body, &o); err != nil {
		t.Fatal(err)
	}
	if !o.Exact || len(o.Serves) != 2 || o.Serves[1].Token != (Token{15, 40}) || !o.Serves[0].Applying ||
		o.Serves[1].Applying || len(o.Unsettled) != 1 || o.Unsettled[0] != 6 || o.Ready == nil || !*o.Ready ||
		o.Members[0] != "n1" || o.Sources[0].Applied != 12 {
		t.Fatalf("parsed %+v", o)
	}
}

func TestRecovered(t *testing.T) {
	full := func(node string, sent, ans int, parts ...int32) Obs {
		o := Obs{Node: node, Sent: at(sent), Answered: at(ans), Self: node, Sources: map[int32]SourceState{}}
		for _, p := range parts {
			o.Serves = append(o.Serves, Serve{Partition: p})
			o.Sources[p] = SourceState{State: SourceLive}
		}
		return o
	}
	tl := []Transition{{at(-1000), "n1", Up}, {at(-1000), "n2", Up}, {at(0), "n2", Down}}
	obs := []Obs{
		full("n1", -100, -50, 0, 1), full("n2", -100, -50, 2, 3), // before the fault: ignored
		full("n1", 100, 110, 0, 1),
		full("n1", 300, 310, 0, 1, 2),
		{Node: "n1", Sent: at(400), Answered: at(410), Err: "timeout"},
		full("n1", 500, 520, 0, 1, 2, 3),
	}
	got, ok := Recovered(obs, tl, 4, at(0), at(10_000))
	if !ok || !got.Equal(at(520)) {
		t.Fatalf("recovered %v %v, want at +520ms", got.Sub(t0), ok)
	}
	// A source not live does not count.
	obs[len(obs)-1].Sources[3] = SourceState{State: "replaying"}
	if _, ok := Recovered(obs, tl, 4, at(0), at(10_000)); ok {
		t.Fatal("recovered with a replaying source")
	}
	// A node up again must answer from its new run.
	tl = append(tl, Transition{at(200), "n2", Up})
	obs[len(obs)-1].Sources[3] = SourceState{State: SourceLive}
	if _, ok := Recovered(obs, tl, 4, at(0), at(10_000)); ok {
		t.Fatal("recovered without an answer from n2's new run")
	}
}
