package cluster

// The fenced progress store: one znode a key partition, whose version is the
// fence (docs FENCING.md, recommendation (a)).
//
//	<root>/partitions/<p>   {"owner":"n1","epoch":..,"generation":..,"offset":..,"restore":..}
//
// A new owner claims the record (Claim rewrites it, which bumps its version,
// in one transaction with a check that the assignment granting the partition
// is still the newest); every commit is conditional on the version its writer
// last wrote (Commit), so none by an earlier owner can land after a claim.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"

	"github.com/go-zookeeper/zk"
)

// Errors of the progress store.
var (
	// ErrStaleGrant is returned, wrapped, by Claim when the grant named by
	// its token is not the current one: the assignment znode is no longer
	// at the token's version, does not give the partition to this node
	// under the token's epoch and generation, or the partition's record was
	// written under a newer token. Nothing was written; the caller waits
	// for (or re-reads) the newer assignment.
	ErrStaleGrant = errors.New("cluster: grant superseded by a newer assignment")
	// ErrFenced is returned, wrapped, by Commit for a write whose
	// partition's record is no longer at the version the writer last wrote
	// (another claim, possibly by this same node, bumped it) or is gone.
	// Nothing was written for that partition; the writer must stop serving
	// it and must not write it again without a new Claim.
	ErrFenced = errors.New("cluster: partition progress claimed by a newer owner")
)

// Token identifies one grant of a partition to a node: the assignment that
// granted it.
type Token struct {
	Epoch      int64 // the writing leader's epoch
	Generation int64 // the assignment's generation
	Version    int32 // the assignment znode's version (Assignment.Version)
}

// String returns "epoch/generation", e.g. "17/42".
func (t Token) String() string {
	return strconv.FormatInt(t.Epoch, 10) + "/" + strconv.FormatInt(t.Generation, 10)
}

// Newer reports whether t supersedes u: a larger epoch, or the same epoch
// and a larger generation. Versions are not compared.
func (t Token) Newer(u Token) bool {
	return t.Epoch > u.Epoch || (t.Epoch == u.Epoch && t.Generation > u.Generation)
}

// Token returns the token of a's grants.
func (a *Assignment) Token() Token {
	return Token{Epoch: a.Epoch, Generation: a.Generation, Version: a.Version}
}

// Progress is a partition's durable progress, as stored in its znode:
// under 100 bytes of JSON, e.g. {"owner":"n1","epoch":4294967298,
// "generation":3,"offset":1048576,"restore":1040000}.
type Progress struct {
	Owner      string `json:"owner"` // node that wrote it
	Epoch      int64  `json:"epoch"` // token of the grant it was written under
	Generation int64  `json:"generation"`
	Offset     int64  `json:"offset"`  // every record below Offset is applied; -1: none committed yet
	Restore    int64  `json:"restore"` // a replay from here rebuilds every window; -1: unknown
	Version    int32  `json:"-"`       // the znode version holding this record; -1: no record
}

// noProgress is the Progress of a partition without a record.
var noProgress = Progress{Offset: -1, Restore: -1, Version: -1}

// token returns the token p was written under, without a version.
func (p Progress) token() Token { return Token{Epoch: p.Epoch, Generation: p.Generation} }

// ProgressWrite is one commit: p's new Offset/Restore, written only if p's
// record is still at Version (this node's last write: the mine of its
// Claim, then the version each Commit returned).
type ProgressWrite struct {
	Partition       int32
	Version         int32
	Token           Token
	Offset, Restore int64
}

// claimHook, when set (by tests), runs in Claim between reading the record
// and the transaction that rewrites it.
var claimHook func(p int32)

// Claim makes this node the writer of p's progress under grant tok, which
// must grant p to this node. In one ZooKeeper transaction (Multi) it checks
// that the assignment znode is still at tok.Version and rewrites p's record
// with Owner=self and tok (Offset and Restore unchanged; created with Offset
// -1, Restore -1 when absent), which bumps the record's version and so
// fences every earlier writer, this node's earlier claims included. It
// returns the record as it was before the claim (prev; prev.Version -1 when
// there was none) and the version of the claim's own write (mine), which
// the next Commit expects.
//
// ErrStaleGrant (wrapped) when the grant is not current; a concurrent change
// of the record between read and write is retried internally, until ctx is
// done. Cost: two reads (the assignment, the record; answered by the
// connected server) and one quorum write a try. On an error other than
// these (connection loss) the claim may or may not have landed: claim again.
//
// Safe for concurrent use; it returns ctx.Err() when ctx ends before a call
// (a call already sent is bounded by the session, not by ctx).
func (c *Coordinator) Claim(ctx context.Context, p int32, tok Token) (prev Progress, mine int32, err error) {
	path, err := c.progressPath(p)
	if err != nil {
		return noProgress, -1, err
	}
	if tok.Version < 0 {
		// A check at version -1 would pass whatever the assignment.
		return noProgress, -1, fmt.Errorf("cluster: claim of partition %d: token %s has no assignment version", p, tok)
	}
	if err := c.checkGrant(ctx, p, tok); err != nil {
		return noProgress, -1, err
	}
	for {
		if prev, err = c.readProgress(ctx, path); err != nil {
			return noProgress, -1, err
		}
		if prev.Version >= 0 && prev.token().Newer(tok) {
			return noProgress, -1, staleGrant(p, tok, "the record was written under "+prev.token().String())
		}
		data, err := json.Marshal(Progress{Owner: c.cfg.Self.ID, Epoch: tok.Epoch, Generation: tok.Generation,
			Offset: prev.Offset, Restore: prev.Restore})
		if err != nil {
			return noProgress, -1, fmt.Errorf("cluster: encode progress of partition %d: %w", p, err)
		}
		var write any = &zk.SetDataRequest{Path: path, Data: data, Version: prev.Version}
		if prev.Version < 0 {
			write = &zk.CreateRequest{Path: path, Data: data, Acl: c.acl}
		}
		if claimHook != nil {
			claimHook(p)
		}
		if err := c.ready(ctx); err != nil {
			return noProgress, -1, err
		}
		res, err := c.conn.Multi(&zk.CheckVersionRequest{Path: c.assignPath, Version: tok.Version}, write)
		if err == nil {
			if prev.Version < 0 {
				return prev, 0, nil // a created znode is at version 0
			}
			return prev, res[1].Stat.Version, nil
		}
		i, opErr := multiFailure(res, 2, err)
		switch {
		case i == 0: // the check: the assignment moved on (ErrBadVersion) or is gone (ErrNoNode)
			return noProgress, -1, staleGrant(p, tok, "the assignment znode changed: "+opErr.Error())
		case i == 1 && prev.Version < 0 && errors.Is(opErr, zk.ErrNoNode):
			if err := c.progressParents(ctx); err != nil { // the first record of the cluster
				return noProgress, -1, err
			}
		case i == 1 && (errors.Is(opErr, zk.ErrBadVersion) || errors.Is(opErr, zk.ErrNoNode) || errors.Is(opErr, zk.ErrNodeExists)):
			// The record changed (or came or went) since it was read: again.
		case i == 1:
			return noProgress, -1, fmt.Errorf("cluster: claim of partition %d: %w", p, opErr)
		default:
			return noProgress, -1, fmt.Errorf("cluster: claim of partition %d: %w", p, err)
		}
	}
}

// checkGrant reads the assignment znode and returns ErrStaleGrant unless it
// is at tok's version and gives p to this node under tok.
func (c *Coordinator) checkGrant(ctx context.Context, p int32, tok Token) error {
	if err := c.ready(ctx); err != nil {
		return err
	}
	b, st, err := c.conn.Get(c.assignPath)
	if errors.Is(err, zk.ErrNoNode) {
		return staleGrant(p, tok, "there is no assignment")
	}
	if err != nil {
		return fmt.Errorf("cluster: claim of partition %d: read %s: %w", p, c.assignPath, err)
	}
	if st.Version != tok.Version {
		return staleGrant(p, tok, fmt.Sprintf("the assignment is at version %d", st.Version))
	}
	var a Assignment
	if err := json.Unmarshal(b, &a); err != nil {
		return fmt.Errorf("cluster: claim of partition %d: read %s: %w", p, c.assignPath, err)
	}
	if a.Epoch != tok.Epoch || a.Generation != tok.Generation || int(p) >= len(a.Owners) || a.Owners[p] != c.cfg.Self.ID {
		return staleGrant(p, tok, fmt.Sprintf("the assignment at that version, %s, does not grant it to %s", a.Token(), c.cfg.Self.ID))
	}
	return nil
}

func staleGrant(p int32, tok Token, why string) error {
	return fmt.Errorf("%w: partition %d, grant %s at assignment version %d: %s", ErrStaleGrant, p, tok, tok.Version, why)
}

// Commit writes ws, each only if its partition's record is still at
// w.Version, and returns, per write, the record's new version (-1 on
// error) or an error: ErrFenced (wrapped, naming the partition and the
// current owner if readable) when the record is no longer at w.Version or
// gone. Other errors are returned as they are, and the caller retries at
// its next commit: connection loss (the write may or may not have landed;
// if it did, the retry at w.Version fails with ErrFenced, which is safe
// but drops the partition), the coordinator closed (ErrClosed), ctx.Err().
// A write with a negative Version or an out-of-range partition, or one
// naming a partition an earlier write in ws names, fails alone, unsent.
//
// Cost: one quorum write a round, a Multi of one SetData (under 100
// bytes) per partition; 12 partitions take about 1 ms on a loopback
// ZooKeeper. ZooKeeper applies a Multi whole or not at all and names only
// the first op that failed, so when one write is fenced the others are
// sent again without it: one more round (and one read, for the message)
// per fenced partition.
//
// Safe for concurrent use, though two calls writing the same partition
// fence each other.
func (c *Coordinator) Commit(ctx context.Context, ws []ProgressWrite) (versions []int32, errs []error) {
	versions, errs = make([]int32, len(ws)), make([]error, len(ws))
	ops, idx := make([]any, 0, len(ws)), make([]int, 0, len(ws))
	for i, w := range ws {
		versions[i] = -1
		path, err := c.progressPath(w.Partition)
		switch {
		case err != nil:
			errs[i] = err
			continue
		case w.Version < 0:
			// A write at version -1 would not be conditional.
			errs[i] = fmt.Errorf("cluster: commit of partition %d: no claimed version", w.Partition)
			continue
		case slices.ContainsFunc(ws[:i], func(o ProgressWrite) bool { return o.Partition == w.Partition }):
			errs[i] = fmt.Errorf("cluster: commit of partition %d: written twice in one commit", w.Partition)
			continue
		}
		data, err := json.Marshal(Progress{Owner: c.cfg.Self.ID, Epoch: w.Token.Epoch, Generation: w.Token.Generation,
			Offset: w.Offset, Restore: w.Restore})
		if err != nil {
			errs[i] = fmt.Errorf("cluster: encode progress of partition %d: %w", w.Partition, err)
			continue
		}
		ops, idx = append(ops, &zk.SetDataRequest{Path: path, Data: data, Version: w.Version}), append(idx, i)
	}
	var fenced []int
	for len(ops) > 0 {
		if err := c.ready(ctx); err != nil {
			for _, i := range idx {
				errs[i] = err
			}
			break
		}
		res, err := c.conn.Multi(ops...)
		if err == nil {
			for k, i := range idx {
				versions[i] = res[k].Stat.Version
			}
			break
		}
		k, opErr := multiFailure(res, len(ops), err)
		if k < 0 {
			for _, i := range idx {
				errs[i] = err
			}
			break
		}
		if i := idx[k]; errors.Is(opErr, zk.ErrBadVersion) || errors.Is(opErr, zk.ErrNoNode) {
			fenced = append(fenced, i)
		} else {
			errs[i] = fmt.Errorf("cluster: commit of partition %d: %w", ws[i].Partition, opErr)
		}
		ops, idx = slices.Delete(ops, k, k+1), slices.Delete(idx, k, k+1)
	}
	// Only now, so that the reads do not delay the writes that land.
	for _, i := range fenced {
		errs[i] = c.fencedError(ctx, ws[i])
	}
	return versions, errs
}

// fencedError returns the ErrFenced of w, naming the record's current
// owner when it can be read.
func (c *Coordinator) fencedError(ctx context.Context, w ProgressWrite) error {
	now := "no record"
	path, _ := c.progressPath(w.Partition) // valid: the write was sent
	switch cur, err := c.readProgress(ctx, path); {
	case err != nil:
		now = "record unreadable: " + err.Error()
	case cur.Version >= 0:
		now = fmt.Sprintf("record at version %d, owner %s, grant %s", cur.Version, cur.Owner, cur.token())
	}
	return fmt.Errorf("%w: partition %d, not at version %d: %s", ErrFenced, w.Partition, w.Version, now)
}

// ReadProgress reads p's record (Offset -1, Restore -1, Version -1 when
// there is none). The read is answered by the connected server, which may
// lag the quorum, though never behind what this session has seen. Safe
// for concurrent use.
func (c *Coordinator) ReadProgress(ctx context.Context, p int32) (Progress, error) {
	path, err := c.progressPath(p)
	if err != nil {
		return noProgress, err
	}
	return c.readProgress(ctx, path)
}

func (c *Coordinator) readProgress(ctx context.Context, path string) (Progress, error) {
	if err := c.ready(ctx); err != nil {
		return noProgress, err
	}
	b, st, err := c.conn.Get(path)
	if errors.Is(err, zk.ErrNoNode) {
		return noProgress, nil
	}
	if err != nil {
		return noProgress, fmt.Errorf("cluster: read %s: %w", path, err)
	}
	var pr Progress
	if err := json.Unmarshal(b, &pr); err != nil {
		return noProgress, fmt.Errorf("cluster: read %s: %w", path, err)
	}
	pr.Version = st.Version
	return pr, nil
}

// progressPath returns the znode of partition p's record.
func (c *Coordinator) progressPath(p int32) (string, error) {
	if p < 0 || int(p) >= c.cfg.Partitions {
		return "", fmt.Errorf("cluster: partition %d out of range [0, %d)", p, c.cfg.Partitions)
	}
	return c.root + "/partitions/" + strconv.Itoa(int(p)), nil
}

// progressParents creates the parents of the records, with c.acl.
func (c *Coordinator) progressParents(ctx context.Context) error {
	for _, p := range []string{"/squall", c.root, c.root + "/partitions"} {
		if err := c.ready(ctx); err != nil {
			return err
		}
		if _, err := c.conn.Create(p, nil, 0, c.acl); err != nil && !errors.Is(err, zk.ErrNodeExists) {
			return fmt.Errorf("cluster: create %s: %w", p, err)
		}
	}
	return nil
}

// ready returns ctx.Err() when ctx is done, ErrClosed when c is closed.
func (c *Coordinator) ready(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	select {
	case <-c.stop:
		return ErrClosed
	default:
		return nil
	}
}

// multiFailure returns the index of the op that failed a Multi of n ops and
// its error, or -1 and err when the Multi failed as a whole (connection
// loss, session expiry, closing: whether it was applied is unknown).
//
// A failed Multi applied nothing, and ZooKeeper reports every op as an
// error result: the ops before the failing one with code 0 (go-zookeeper:
// Error nil, Stat nil; not applied all the same), the failing one with its
// code (a CheckVersionRequest's is zk.ErrBadVersion, or zk.ErrNoNode when
// the znode is gone, like a SetDataRequest's), and the ops after it with
// runtime inconsistency, -2, which go-zookeeper does not name ("unknown
// error: -2"). Multi returns the first op error as its own.
func multiFailure(res []zk.MultiResponse, n int, err error) (int, error) {
	if len(res) == n {
		for i, r := range res {
			if r.Error != nil {
				return i, r.Error
			}
		}
	}
	return -1, err
}
