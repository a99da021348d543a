package rules

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/squallhq/squall/event"
	"github.com/squallhq/squall/internal/scenario"
	"github.com/squallhq/squall/window"
)

var update = flag.Bool("update", false, "rewrite testdata/rules/*/want.golden")

const scenarioDir = "../testdata/rules"

type keyState struct {
	w        *window.Window
	states   map[string]*State
	lastWall int64
}

// runScenario feeds steps through a window per key and evaluates every
// matching rule after each event, as a key actor would. With handoff, every
// State goes through MarshalBinary/UnmarshalBinary after every step.
func runScenario(t *testing.T, set *Set, steps []scenario.Step, handoff bool) []Transition {
	t.Helper()
	shape := window.DefaultShape()
	keys := map[string]*keyState{}
	var out []Transition
	emit := func(tr Transition, ok bool) {
		if ok {
			out = append(out, tr)
		}
	}
	stateOf := func(ks *keyState, r *Rule) *State {
		st := ks.states[r.Name]
		if st == nil {
			st = &State{}
			ks.states[r.Name] = st
		}
		return st
	}
	for i, s := range steps {
		if s.Now != nil {
			names := make([]string, 0, len(keys))
			for k := range keys {
				names = append(names, k)
			}
			slices.Sort(names)
			for _, k := range names {
				ks := keys[k]
				for _, r := range set.Match(k, ks.w.Tags()) {
					emit(r.EvalAbsent(stateOf(ks, r), k, ks.lastWall, *s.Now))
				}
			}
		} else {
			ks := keys[s.Key]
			if ks == nil {
				ks = &keyState{w: window.New(&shape), states: map[string]*State{}}
				keys[s.Key] = ks
			}
			o := ks.w.Add(&event.Event{Key: s.Key, TS: s.TS, Value: s.Value, Tags: s.Tags})
			ks.lastWall = s.Wall
			for _, r := range set.Match(s.Key, ks.w.Tags()) {
				st := stateOf(ks, r)
				if r.IsAbsent() {
					emit(r.Seen(st, s.Key, s.TS))
				} else if o == window.Applied {
					emit(r.Eval(st, s.Key, r.Value(ks.w), s.TS))
				}
			}
		}
		if handoff {
			for _, ks := range keys {
				for name, st := range ks.states {
					b, err := st.MarshalBinary()
					if err != nil {
						t.Fatalf("step %d: marshal: %v", i, err)
					}
					var n State
					if err := n.UnmarshalBinary(b); err != nil {
						t.Fatalf("step %d: unmarshal: %v", i, err)
					}
					if n != *st {
						t.Fatalf("step %d: state round trip: %+v != %+v", i, n, *st)
					}
					ks.states[name] = &n
				}
			}
		}
	}
	return out
}

func encode(t *testing.T, trs []Transition) []byte {
	t.Helper()
	var b bytes.Buffer
	for _, tr := range trs {
		j, err := json.Marshal(tr)
		if err != nil {
			t.Fatal(err)
		}
		b.Write(j)
		b.WriteByte('\n')
	}
	return b.Bytes()
}

func TestScenarios(t *testing.T) {
	dirs, err := filepath.Glob(filepath.Join(scenarioDir, "*", "rules.yaml"))
	if err != nil || len(dirs) == 0 {
		t.Fatalf("no scenarios under %s (%v)", scenarioDir, err)
	}
	for _, rf := range dirs {
		dir := filepath.Dir(rf)
		t.Run(filepath.Base(dir), func(t *testing.T) {
			set, err := Load(rf)
			if err != nil {
				t.Fatal(err)
			}
			shape := window.DefaultShape()
			if err := set.CheckShape(&shape); err != nil {
				t.Fatal(err)
			}
			steps := scenario.Read(t, filepath.Join(dir, "events.ndjson"))
			got := encode(t, runScenario(t, set, steps, false))
			golden := filepath.Join(dir, "want.golden")
			if *update {
				if err := os.WriteFile(golden, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("transitions differ from %s (run with -update to rewrite)\ngot:\n%s\nwant:\n%s", golden, got, want)
			}
			// Replay: the same events give the same transitions and ids,
			// also when every State is handed off after every step.
			if again := encode(t, runScenario(t, set, steps, false)); !bytes.Equal(again, got) {
				t.Errorf("replay differs:\n%s\nfirst run:\n%s", again, got)
			}
			if handed := encode(t, runScenario(t, set, steps, true)); !bytes.Equal(handed, got) {
				t.Errorf("run with state handoff differs:\n%s\nplain run:\n%s", handed, got)
			}
		})
	}
}
