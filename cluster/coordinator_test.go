package cluster

import (
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/squallhq/squall/internal/testutil"
	"github.com/squallhq/squall/internal/zktest"
)

// recorder is a Listener that keeps what it heard.
type recorder struct {
	mu      sync.Mutex
	applied []*Assignment
	lost    int
	events  []string // "apply" and "lost", in order, with the Status then
	status  func() (bool, string)
	onLost  func() // called in SessionLost, if set
}

func (r *recorder) Apply(a *Assignment) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.applied = append(r.applied, a)
	r.events = append(r.events, "apply"+r.statusLocked())
}

func (r *recorder) SessionLost() {
	r.mu.Lock()
	r.lost++
	r.events = append(r.events, "lost"+r.statusLocked())
	hook := r.onLost
	r.mu.Unlock()
	if hook != nil {
		hook()
	}
}

// statusLocked describes the coordinator's Status, if known.
func (r *recorder) statusLocked() string {
	if r.status == nil {
		return ""
	}
	if joined, reason := r.status(); !joined {
		return " (" + reason + ")"
	}
	return " (joined)"
}

func (r *recorder) MembersChanged(map[string]Member) {}

// since returns the events after the first n.
func (r *recorder) since(n int) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.events[n:]...)
}

func (r *recorder) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.events)
}

func (r *recorder) last() *Assignment {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.applied) == 0 {
		return nil
	}
	return r.applied[len(r.applied)-1]
}

func startCoord(t *testing.T, zkAddr, cluster, id string, digest string, opts ...func(*Config)) (*Coordinator, *recorder) {
	t.Helper()
	r := &recorder{}
	cfg := Config{
		Servers: []string{zkAddr}, Cluster: cluster, SessionTimeout: 3 * time.Second,
		Self:       Member{ID: id, RemoteAddr: "127.0.0.1:1", HTTPAddr: "127.0.0.1:2", Version: "test"},
		Partitions: 16, Digest: digest, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
	for _, o := range opts {
		o(&cfg)
	}
	c, err := Start(cfg, r)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	r.mu.Lock()
	r.status = c.Status
	r.mu.Unlock()
	return c, r
}

// agreed waits until every coordinator has applied one assignment, of
// generation gen or later, giving partitions to exactly ids, with one
// acting leader; it returns the assignment.
func agreed(t *testing.T, cs []*Coordinator, rs []*recorder, ids ...string) *Assignment {
	t.Helper()
	var a *Assignment
	testutil.Eventually(t, 15*time.Second, func() bool {
		leaders := 0
		for _, c := range cs {
			if c.View().Self {
				leaders++
			}
		}
		a = rs[0].last()
		if leaders != 1 || a == nil {
			return false
		}
		for _, r := range rs {
			if l := r.last(); l == nil || l.Generation != a.Generation || l.Epoch != a.Epoch {
				return false
			}
		}
		for _, c := range cs {
			if joined, _ := c.Status(); !joined {
				return false
			}
		}
		owners := map[string]int{}
		for _, o := range a.Owners {
			owners[o]++
		}
		if len(owners) != len(ids) {
			return false
		}
		for _, id := range ids {
			if owners[id] < 16/len(ids) {
				return false
			}
		}
		return true
	}, "no agreement on an assignment over %v", ids)
	return a
}

func TestElectionAndAssignment(t *testing.T) {
	z := zktest.Start(t)
	var cs []*Coordinator
	var rs []*recorder
	for i := 1; i <= 3; i++ {
		c, r := startCoord(t, z.Addr(), "t1", fmt.Sprintf("n%d", i), "")
		cs, rs = append(cs, c), append(rs, r)
	}
	a := agreed(t, cs, rs, "n1", "n2", "n3")
	var leader int
	for i, c := range cs {
		if c.View().Self {
			leader = i
		}
	}
	if a.Leader != cs[leader].cfg.Self.ID {
		t.Fatalf("assignment by %s, acting leader %s", a.Leader, cs[leader].cfg.Self.ID)
	}
	// The leader leaves (its session closes): another leads with a higher
	// epoch and the partitions go to the two left.
	cs[leader].Close()
	rest, restR := append(append([]*Coordinator{}, cs[:leader]...), cs[leader+1:]...), append(append([]*recorder{}, rs[:leader]...), rs[leader+1:]...)
	var ids []string
	for _, c := range rest {
		ids = append(ids, c.cfg.Self.ID)
	}
	b := agreed(t, rest, restR, ids...)
	if b.Epoch <= a.Epoch || b.Generation <= a.Generation {
		t.Fatalf("epoch %d→%d generation %d→%d", a.Epoch, b.Epoch, a.Generation, b.Generation)
	}
	if len(b.Moves) != 0 {
		t.Fatalf("moves from a dead node: %v", b.Moves)
	}
}

// A graceful leave moves the leaver's partitions, naming it as the source
// of each (for handoff), and no other partition.
func TestLeave(t *testing.T) {
	z := zktest.Start(t)
	var cs []*Coordinator
	var rs []*recorder
	for i := 1; i <= 3; i++ {
		c, r := startCoord(t, z.Addr(), "t2", fmt.Sprintf("n%d", i), "")
		cs, rs = append(cs, c), append(rs, r)
	}
	a := agreed(t, cs, rs, "n1", "n2", "n3")
	cs[2].Leave()
	b := agreed(t, cs, rs, "n1", "n2")
	for p, owner := range a.Owners {
		moved := b.Owners[p] != owner
		if moved != (owner == "n3") {
			t.Fatalf("partition %d: %s → %s", p, owner, b.Owners[p])
		}
		if moved && b.MovedFrom(int32(p)) != "n3" {
			t.Fatalf("partition %d moved from %q", p, b.MovedFrom(int32(p)))
		}
	}
}

// With digest credentials, Squall's znodes are not writable without them.
func TestDigestACL(t *testing.T) {
	z := zktest.Start(t)
	c, r := startCoord(t, z.Addr(), "secure", "n1", "squall:s3cret")
	agreed(t, []*Coordinator{c}, []*recorder{r}, "n1")
	conn, _, err := zk.Connect([]string{z.Addr()}, 5*time.Second, zk.WithLogInfo(false))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.Set("/squall/secure/assignment", []byte("{}"), -1); err != zk.ErrNoAuth {
		t.Fatalf("unauthenticated write = %v, want ErrNoAuth", err)
	}
	if _, err := conn.Create("/squall/secure/members/intruder", nil, zk.FlagEphemeral, zk.WorldACL(zk.PermAll)); err != zk.ErrNoAuth {
		t.Fatalf("unauthenticated create = %v, want ErrNoAuth", err)
	}
	if _, _, err := conn.Get("/squall/secure/assignment"); err != nil {
		t.Fatalf("read = %v", err)
	}
}

// A restarted node with the same id replaces the znodes of its earlier
// session at once.
func TestRejoinSameID(t *testing.T) {
	z := zktest.Start(t)
	c1, r1 := startCoord(t, z.Addr(), "t3", "n1", "")
	c2, r2 := startCoord(t, z.Addr(), "t3", "n2", "")
	agreed(t, []*Coordinator{c1, c2}, []*recorder{r1, r2}, "n1", "n2")
	// Simulate a crash: drop n2's connection without closing its session
	// cleanly is not possible from here, so start a second "n2" while the
	// first is still registered.
	c2b, r2b := startCoord(t, z.Addr(), "t3", "n2", "")
	c2.Close()
	agreed(t, []*Coordinator{c1, c2b}, []*recorder{r1, r2b}, "n1", "n2")
}

// A node that joins while the leader writes the assignment naming it
// applies that assignment once, with its handoffs: it was written after the
// node joined, so the partitions' previous owners hand them over. Applied a
// second time without them, it made the node claim those partitions at
// once and refuse the handoffs on their way.
func TestJoinDuringAssignmentKeepsHandoffs(t *testing.T) {
	z := zktest.Start(t)
	var r1 *recorder
	var r1mu sync.Mutex
	namesN2 := func() bool {
		r1mu.Lock()
		r := r1
		r1mu.Unlock()
		if r == nil {
			return false
		}
		a := r.last()
		return a != nil && slices.Contains(a.Owners, "n2")
	}
	// The leader writes the assignment naming n2 between n2's join and its
	// first read of the assignment: n2's join waits for it.
	joinHook = func(self string) {
		if self != "n2" {
			return
		}
		for deadline := time.Now().Add(time.Minute); !namesN2() && time.Now().Before(deadline); {
			time.Sleep(10 * time.Millisecond)
		}
	}
	t.Cleanup(func() { joinHook = nil }) // after the coordinators closed
	c1, rec1 := startCoord(t, z.Addr(), "t4", "n1", "")
	agreed(t, []*Coordinator{c1}, []*recorder{rec1}, "n1")
	r1mu.Lock()
	r1 = rec1
	r1mu.Unlock()
	c2, r2 := startCoord(t, z.Addr(), "t4", "n2", "")
	want := agreed(t, []*Coordinator{c1, c2}, []*recorder{rec1, r2}, "n1", "n2")

	r2.mu.Lock()
	applied := append([]*Assignment(nil), r2.applied...)
	r2.mu.Unlock()
	seen := map[Token]bool{}
	for _, a := range applied {
		if seen[a.Token()] {
			t.Errorf("n2 applied assignment %s twice", a.Token())
		}
		seen[a.Token()] = true
	}
	if len(applied) == 0 || applied[0].Token() != want.Token() {
		t.Fatalf("n2's first assignment is not the one that named it: applied %d, want %s", len(applied), want.Token())
	}
	moved := 0
	for p, owner := range applied[0].Owners {
		if owner != "n2" {
			continue
		}
		moved++
		if from := applied[0].MovedFrom(int32(p)); from != "n1" {
			t.Errorf("partition %d moved to n2 from %q, want n1 (it hands its state over)", p, from)
		}
	}
	if moved == 0 {
		t.Fatal("the assignment gives n2 no partition")
	}
}
