package cluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/squallhq/squall/internal/testutil"
	"github.com/squallhq/squall/internal/zktest"
)

// soloCoord starts a ZooKeeper server and a one-node cluster on it, and
// returns the node's coordinator and its assignment, which gives every
// partition to the node. (startCoord and agreed take a *testing.T; the
// benchmark has a *testing.B.)
func soloCoord(t testing.TB, cluster string) (*Coordinator, *Assignment) {
	t.Helper()
	z := zktest.Start(t)
	r := &recorder{}
	c, err := Start(Config{
		Servers: []string{z.Addr()}, Cluster: cluster, SessionTimeout: 3 * time.Second,
		Self: Member{ID: "n1"}, Partitions: 16, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	}, r)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	var a *Assignment
	testutil.Eventually(t, 15*time.Second, func() bool {
		a = r.last()
		return a != nil && !slices.ContainsFunc(a.Owners, func(o string) bool { return o != "n1" })
	}, "no assignment of every partition to n1")
	return c, a
}

func claim(t *testing.T, c *Coordinator, p int32, tok Token) (Progress, int32) {
	t.Helper()
	prev, mine, err := c.Claim(context.Background(), p, tok)
	if err != nil {
		t.Fatalf("%s claims partition %d under %s: %v", c.cfg.Self.ID, p, tok, err)
	}
	return prev, mine
}

func commit(c *Coordinator, w ProgressWrite) (int32, error) {
	vs, errs := c.Commit(context.Background(), []ProgressWrite{w})
	return vs[0], errs[0]
}

func read(t *testing.T, c *Coordinator, p int32) Progress {
	t.Helper()
	pr, err := c.ReadProgress(context.Background(), p)
	if err != nil {
		t.Fatalf("read partition %d: %v", p, err)
	}
	return pr
}

// The first claim of a partition creates its record; commits at the
// version of the writer's last write advance it.
func TestProgressClaimCommit(t *testing.T) {
	c, a := soloCoord(t, "p1")
	tok := a.Token()
	if got := read(t, c, 3); got != noProgress {
		t.Fatalf("fresh partition reads %+v", got)
	}
	prev, mine := claim(t, c, 3, tok)
	if prev != noProgress || mine != 0 {
		t.Fatalf("first claim: prev %+v mine %d", prev, mine)
	}
	want := Progress{Owner: "n1", Epoch: a.Epoch, Generation: a.Generation, Offset: -1, Restore: -1, Version: 0}
	if got := read(t, c, 3); got != want {
		t.Fatalf("claimed record %+v, want %+v", got, want)
	}
	v := mine
	for _, off := range []int64{100, 250} {
		nv, err := commit(c, ProgressWrite{Partition: 3, Version: v, Token: tok, Offset: off, Restore: off - 60})
		if err != nil || nv != v+1 {
			t.Fatalf("commit %d at %d: version %d, %v", off, v, nv, err)
		}
		v = nv
		want.Offset, want.Restore, want.Version = off, off-60, v
		if got := read(t, c, 3); got != want {
			t.Fatalf("after commit: %+v, want %+v", got, want)
		}
	}
	// Claiming again (a new incarnation of the same owner) keeps the
	// progress and fences the earlier claim.
	prev, mine = claim(t, c, 3, tok)
	if prev != want || mine != v+1 {
		t.Fatalf("second claim: prev %+v mine %d, want %+v and %d", prev, mine, want, v+1)
	}
	if _, err := commit(c, ProgressWrite{Partition: 3, Version: v, Token: tok, Offset: 300, Restore: 200}); !errors.Is(err, ErrFenced) {
		t.Fatalf("commit by the earlier claim: %v, want ErrFenced", err)
	}
	if nv, err := commit(c, ProgressWrite{Partition: 3, Version: mine, Token: tok, Offset: 300, Restore: 200}); err != nil || nv != mine+1 {
		t.Fatalf("commit by the later claim: version %d, %v", nv, err)
	}
}

// Calls refuse what would not be fenced, and stop on a done context.
func TestProgressBadCalls(t *testing.T) {
	c, a := soloCoord(t, "p2")
	tok := a.Token()
	_, mine := claim(t, c, 1, tok)

	unversioned := tok
	unversioned.Version = -1
	if _, _, err := c.Claim(context.Background(), 1, unversioned); err == nil {
		t.Fatal("claim with no assignment version succeeded")
	}
	if _, _, err := c.Claim(context.Background(), 16, tok); err == nil {
		t.Fatal("claim of partition 16 of 16 succeeded")
	}
	vs, errs := c.Commit(context.Background(), []ProgressWrite{
		{Partition: 2, Version: -1, Token: tok, Offset: 5, Restore: 5},      // unconditional: refused
		{Partition: 1, Version: mine, Token: tok, Offset: 10, Restore: 9},   // lands
		{Partition: 1, Version: mine, Token: tok, Offset: 11, Restore: 10},  // twice: refused
		{Partition: -1, Version: mine, Token: tok, Offset: 11, Restore: 10}, // out of range
	})
	if errs[0] == nil || errs[1] != nil || errs[2] == nil || errs[3] == nil || vs[1] != mine+1 {
		t.Fatalf("commit: versions %v errors %v", vs, errs)
	}
	if got := read(t, c, 1); got.Offset != 10 || got.Version != mine+1 {
		t.Fatalf("record %+v after the commit", got)
	}
	if got := read(t, c, 2); got != noProgress {
		t.Fatalf("unconditional write created %+v", got)
	}
	if errors.Is(errs[0], ErrFenced) || errors.Is(errs[2], ErrFenced) {
		t.Fatalf("refused writes reported as fenced: %v", errs)
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, _, err := c.Claim(ctx, 1, tok); !errors.Is(err, context.Canceled) {
		t.Fatalf("claim with a done context: %v", err)
	}
	if _, errs := c.Commit(ctx, []ProgressWrite{{Partition: 1, Version: mine + 1, Token: tok}}); !errors.Is(errs[0], context.Canceled) {
		t.Fatalf("commit with a done context: %v", errs[0])
	}
	if _, err := c.ReadProgress(ctx, 1); !errors.Is(err, context.Canceled) {
		t.Fatalf("read with a done context: %v", err)
	}
	c.Close()
	if _, errs := c.Commit(context.Background(), []ProgressWrite{{Partition: 1, Version: mine + 1, Token: tok}}); !errors.Is(errs[0], ErrClosed) {
		t.Fatalf("commit on a closed coordinator: %v", errs[0])
	}
}

// A node that loses a partition to another cannot commit it once the other
// claimed it, and the other starts from its last commit exactly.
func TestProgressFencing(t *testing.T) {
	z := zktest.Start(t)
	c1, r1 := startCoord(t, z.Addr(), "p3", "n1", "")
	c2, r2 := startCoord(t, z.Addr(), "p3", "n2", "")
	cs, rs := []*Coordinator{c1, c2}, []*recorder{r1, r2}
	a := agreed(t, cs, rs, "n1", "n2")
	p := int32(-1)
	for i, o := range a.Owners {
		if o == "n1" {
			p = int32(i)
			break
		}
	}
	_, v := claim(t, c1, p, a.Token())
	var err error
	for _, off := range []int64{1000, 2000} {
		if v, err = commit(c1, ProgressWrite{Partition: p, Version: v, Token: a.Token(), Offset: off, Restore: off - 500}); err != nil {
			t.Fatalf("n1 commits %d: %v", off, err)
		}
	}
	last := read(t, c1, p)

	// n2 may not claim it under a grant that does not give it to n2.
	if _, _, err := c2.Claim(context.Background(), p, a.Token()); !errors.Is(err, ErrStaleGrant) {
		t.Fatalf("n2 claims n1's partition: %v, want ErrStaleGrant", err)
	}
	c1.Leave()
	b := agreed(t, cs, rs, "n2")
	prev, mine := claim(t, c2, p, b.Token())
	if prev != last || prev.Owner != "n1" || prev.Offset != 2000 || prev.Restore != 1500 {
		t.Fatalf("n2's prev %+v, want n1's last commit %+v", prev, last)
	}
	claimed := read(t, c2, p)

	// n1, a zombie now, commits: fenced, and the record is n2's claim still.
	_, err = commit(c1, ProgressWrite{Partition: p, Version: v, Token: a.Token(), Offset: 3000, Restore: 2500})
	if !errors.Is(err, ErrFenced) || !strings.Contains(err.Error(), "owner n2") {
		t.Fatalf("n1 commits after n2's claim: %v, want ErrFenced naming n2", err)
	}
	if got := read(t, c1, p); got != claimed {
		t.Fatalf("record %+v after the fenced commit, want %+v", got, claimed)
	}
	if _, err := commit(c2, ProgressWrite{Partition: p, Version: mine, Token: b.Token(), Offset: 2100, Restore: 1500}); err != nil {
		t.Fatalf("n2 commits: %v", err)
	}
}

// A claim under a superseded grant writes nothing.
func TestProgressStaleGrant(t *testing.T) {
	z := zktest.Start(t)
	c1, r1 := startCoord(t, z.Addr(), "p4", "n1", "")
	a := agreed(t, []*Coordinator{c1}, []*recorder{r1}, "n1")
	_, v := claim(t, c1, 0, a.Token())
	if _, err := commit(c1, ProgressWrite{Partition: 0, Version: v, Token: a.Token(), Offset: 42, Restore: 7}); err != nil {
		t.Fatal(err)
	}
	before := read(t, c1, 0)

	c2, r2 := startCoord(t, z.Addr(), "p4", "n2", "")
	b := agreed(t, []*Coordinator{c1, c2}, []*recorder{r1, r2}, "n1", "n2")
	if b.Version == a.Version {
		t.Fatalf("assignment version unchanged: %d", a.Version)
	}
	kept, lost := int32(slices.Index(b.Owners, "n1")), int32(slices.Index(b.Owners, "n2"))
	for _, tc := range []struct {
		name string
		p    int32
		tok  Token
	}{
		{"older assignment", 0, a.Token()},
		{"older assignment, current version", kept, Token{a.Epoch, a.Generation, b.Version}},
		{"current version, newer generation", kept, Token{b.Epoch, b.Generation + 1, b.Version}},
		{"current assignment, partition of another node", lost, b.Token()},
	} {
		if _, _, err := c1.Claim(context.Background(), tc.p, tc.tok); !errors.Is(err, ErrStaleGrant) {
			t.Errorf("%s: claim of partition %d = %v, want ErrStaleGrant", tc.name, tc.p, err)
		}
	}
	for p := range int32(16) {
		want := noProgress
		if p == 0 {
			want = before
		}
		if got := read(t, c1, p); got != want {
			t.Errorf("partition %d: record %+v after stale claims, want %+v", p, got, want)
		}
	}
}

// What happens between Claim's reads and its transaction: a change of the
// record is retried; a change of the assignment fails the transaction's
// check.
func TestProgressClaimRaces(t *testing.T) {
	c, a := soloCoord(t, "p5")
	tok := a.Token()
	_, first := claim(t, c, 2, tok)
	t.Cleanup(func() { claimHook = nil })

	calls := 0
	claimHook = func(p int32) {
		calls++
		if calls == 1 { // the first claim's holder commits meanwhile
			if _, err := commit(c, ProgressWrite{Partition: p, Version: first, Token: tok, Offset: 77, Restore: 70}); err != nil {
				t.Errorf("commit in the hook: %v", err)
			}
		}
	}
	prev, mine := claim(t, c, 2, tok)
	if calls != 2 || prev.Offset != 77 || prev.Restore != 70 || prev.Version != first+1 || mine != first+2 {
		t.Fatalf("claim raced by a commit: %d tries, prev %+v, mine %d", calls, prev, mine)
	}

	// The assignment is rewritten (the same, at a new version) meanwhile:
	// the transaction's check fails, whether it sets or creates the record.
	bump := func(int32) {
		b, _, err := c.conn.Get(c.assignPath)
		if err == nil {
			_, err = c.conn.Set(c.assignPath, b, -1)
		}
		if err != nil {
			t.Errorf("rewriting the assignment: %v", err)
		}
	}
	for _, p := range []int32{2, 9} {
		before := read(t, c, p)
		claimHook = bump
		_, _, err := c.Claim(context.Background(), p, tok)
		claimHook = nil
		if !errors.Is(err, ErrStaleGrant) || !strings.Contains(err.Error(), "znode changed") {
			t.Fatalf("partition %d: claim raced by an assignment: %v, want ErrStaleGrant from the check", p, err)
		}
		if got := read(t, c, p); got != before {
			t.Fatalf("partition %d: record %+v after the failed claim, want %+v", p, got, before)
		}
		tok.Version++
	}
}

// In a batch, a fenced partition fails alone; the others land.
func TestProgressBatchFenced(t *testing.T) {
	c, a := soloCoord(t, "p6")
	tok := a.Token()
	ws := make([]ProgressWrite, 6)
	for p := range ws {
		_, mine := claim(t, c, int32(p), tok)
		ws[p] = ProgressWrite{Partition: int32(p), Version: mine, Token: tok, Offset: int64(100 + p), Restore: int64(p)}
	}
	// Partitions 1 and 4 are claimed again: the writes above are fenced.
	// ZooKeeper reports the first failing op of a Multi with the ops before
	// it unfailed but not applied; those must be written still.
	fenced := map[int32]Progress{}
	for _, p := range []int32{1, 4} {
		claim(t, c, p, tok)
		fenced[p] = read(t, c, p)
	}
	vs, errs := c.Commit(context.Background(), ws)
	for i, w := range ws {
		got := read(t, c, w.Partition)
		if want, ok := fenced[w.Partition]; ok {
			if !errors.Is(errs[i], ErrFenced) || vs[i] != -1 || got != want {
				t.Errorf("fenced partition %d: version %d, %v; record %+v, want %+v", w.Partition, vs[i], errs[i], got, want)
			}
			continue
		}
		want := Progress{Owner: "n1", Epoch: tok.Epoch, Generation: tok.Generation, Offset: w.Offset, Restore: w.Restore, Version: w.Version + 1}
		if errs[i] != nil || vs[i] != w.Version+1 || got != want {
			t.Errorf("partition %d: version %d, %v; record %+v, want %+v", w.Partition, vs[i], errs[i], got, want)
		}
	}
}

// Claims racing under one token are serialised by the record's version:
// only the later one's commits land.
func TestProgressRacingClaims(t *testing.T) {
	c, a := soloCoord(t, "p7")
	tok := a.Token()
	for round := range 8 {
		p := int32(round)
		if round%2 == 1 { // odd partitions have a record before the race
			_, mine := claim(t, c, p, tok)
			if _, err := commit(c, ProgressWrite{Partition: p, Version: mine, Token: tok, Offset: 9, Restore: 3}); err != nil {
				t.Fatal(err)
			}
		}
		var prevs [2]Progress
		var mines [2]int32
		var errs [2]error
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i := range 2 {
			wg.Go(func() {
				<-start
				prevs[i], mines[i], errs[i] = c.Claim(context.Background(), p, tok)
			})
		}
		close(start)
		wg.Wait()
		if errs[0] != nil || errs[1] != nil {
			t.Fatalf("round %d: claims %v", round, errs)
		}
		later, earlier := 0, 1
		if mines[1] > mines[0] {
			later, earlier = 1, 0
		}
		if mines[later] != mines[earlier]+1 || prevs[later].Version != mines[earlier] {
			t.Fatalf("round %d: claims not serialised: mines %v, prevs %+v", round, mines, prevs)
		}
		// Both commit at once: only the later claim's write lands.
		var cerrs [2]error
		for i := range 2 {
			wg.Go(func() {
				_, cerrs[i] = commit(c, ProgressWrite{Partition: p, Version: mines[i], Token: tok, Offset: int64(1000 + i), Restore: 1})
			})
		}
		wg.Wait()
		if cerrs[later] != nil || !errors.Is(cerrs[earlier], ErrFenced) {
			t.Fatalf("round %d: later claim's commit %v, earlier's %v", round, cerrs[later], cerrs[earlier])
		}
		if got := read(t, c, p); got.Offset != int64(1000+later) || got.Version != mines[later]+1 {
			t.Fatalf("round %d: record %+v", round, got)
		}
	}
}

// A writer committing without pause while another claims: every commit
// before the claim lands and shows in the claim's prev, none after it.
func TestProgressCommitterVsClaimer(t *testing.T) {
	c, a := soloCoord(t, "p8")
	tok := a.Token()
	_, v := claim(t, c, 5, tok)
	started, claimed := make(chan struct{}), make(chan struct{})
	var lastOK int64 = -1
	var stopErr error
	var wg sync.WaitGroup
	wg.Go(func() {
		for off := int64(1); ; off++ {
			after := false // the claim had returned before this commit began
			select {
			case <-claimed:
				after = true
			default:
			}
			nv, err := commit(c, ProgressWrite{Partition: 5, Version: v, Token: tok, Offset: off, Restore: off / 2})
			switch {
			case err != nil:
				stopErr = err
				return
			case after:
				stopErr = fmt.Errorf("commit of offset %d at version %d landed after the claim", off, v)
				return
			}
			v, lastOK = nv, off
			if off == 3 {
				close(started)
			}
		}
	})
	<-started
	tries := 0
	claimHook = func(int32) { tries++ }
	t.Cleanup(func() { claimHook = nil })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	prev, mine, err := c.Claim(ctx, 5, tok)
	close(claimed)
	wg.Wait()
	if err != nil {
		t.Fatalf("claim against a busy committer: %v", err)
	}
	t.Logf("claim took %d tries; the committer wrote %d commits", tries, lastOK)
	if !errors.Is(stopErr, ErrFenced) {
		t.Fatalf("committer stopped with %v, want ErrFenced", stopErr)
	}
	if prev.Offset != lastOK || prev.Restore != lastOK/2 || prev.Version != v {
		t.Fatalf("claim's prev %+v; the committer's last write: offset %d at version %d", prev, lastOK, v)
	}
	if got := read(t, c, 5); got.Offset != lastOK || got.Version != mine {
		t.Fatalf("record %+v after the fenced commit, want offset %d at version %d", got, lastOK, mine)
	}
}

// The shape of a failed Multi's reply, on which Claim and Commit rely.
func TestMultiFailureReporting(t *testing.T) {
	c, _ := soloCoord(t, "p9")
	base := c.root + "/multi"
	for _, p := range []string{base, base + "/a", base + "/b"} {
		if _, err := c.conn.Create(p, []byte("0"), 0, c.acl); err != nil {
			t.Fatal(err)
		}
	}
	set := func(n string, v int32) *zk.SetDataRequest {
		return &zk.SetDataRequest{Path: base + "/" + n, Data: []byte("1"), Version: v}
	}
	for _, tc := range []struct {
		name   string
		ops    []any
		failed int
		err    error
	}{
		{"set after a good set", []any{set("a", 0), set("b", 5), set("a", 1)}, 1, zk.ErrBadVersion},
		{"check", []any{&zk.CheckVersionRequest{Path: base + "/a", Version: 3}, set("b", 0)}, 0, zk.ErrBadVersion},
		{"check of a missing znode", []any{set("a", 0), &zk.CheckVersionRequest{Path: base + "/c", Version: 0}}, 1, zk.ErrNoNode},
		{"set of a missing znode", []any{set("c", 0), set("a", 0)}, 0, zk.ErrNoNode},
	} {
		res, err := c.conn.Multi(tc.ops...)
		if !errors.Is(err, tc.err) {
			t.Errorf("%s: Multi = %v, want %v", tc.name, err, tc.err)
		}
		if i, opErr := multiFailure(res, len(tc.ops), err); i != tc.failed || !errors.Is(opErr, tc.err) {
			t.Errorf("%s: failed op %d (%v), want %d (%v); replies %+v", tc.name, i, opErr, tc.failed, tc.err, res)
		}
		for i, r := range res {
			if i < tc.failed && r.Error != nil || i > tc.failed && r.Error == nil {
				t.Errorf("%s: op %d reports %v", tc.name, i, r.Error)
			}
		}
		for _, n := range []string{"a", "b"} {
			if b, st, err := c.conn.Get(base + "/" + n); err != nil || string(b) != "0" || st.Version != 0 {
				t.Errorf("%s: %s is %q at version %v (%v): a failed Multi applied an op", tc.name, n, b, st, err)
			}
		}
	}
}

// BenchmarkProgressCommit measures a commit round of n partitions on a
// loopback ZooKeeper: one Multi, or n Commits of one.
func BenchmarkProgressCommit(b *testing.B) {
	c, a := soloCoord(b, "bench")
	tok := a.Token()
	ws := make([]ProgressWrite, 12)
	for p := range ws {
		_, mine, err := c.Claim(context.Background(), int32(p), tok)
		if err != nil {
			b.Fatal(err)
		}
		ws[p] = ProgressWrite{Partition: int32(p), Version: mine, Token: tok, Restore: 0}
	}
	run := func(b *testing.B, batch []ProgressWrite) {
		for i := 0; b.Loop(); i++ {
			for j := range batch {
				batch[j].Offset, batch[j].Restore = int64(i)*1000, int64(i)*900
			}
			vs, errs := c.Commit(context.Background(), batch)
			for j := range batch {
				if errs[j] != nil {
					b.Fatal(errs[j])
				}
				batch[j].Version = vs[j]
			}
		}
	}
	for _, n := range []int{1, 12} {
		b.Run(fmt.Sprintf("multi=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			run(b, ws[:n])
		})
	}
	b.Run("12x1", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			for j := range ws {
				run1 := ws[j : j+1]
				vs, errs := c.Commit(context.Background(), run1)
				if errs[0] != nil {
					b.Fatal(errs[0])
				}
				run1[0].Version = vs[0]
			}
		}
	})
}
