package cluster

import (
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/go-zookeeper/zk"
)

// noLease is leaseEnd while the node holds no session: before every time.
const noLease = math.MinInt64

// errNotOurs says a znode of this node belongs to another session.
var errNotOurs = errors.New("znode of another session")

// LeaseValid reports whether this node may act on its grants at now: it
// joined the cluster on its ZooKeeper session and has not lost it, and
// ZooKeeper answered a request of that session sent less than half a
// session timeout before now. The server cannot expire the session before
// a whole timeout after that request, and the leader gives the node's
// partitions away only after expiry. A process resumed after a pause (a
// SIGSTOP, a long GC) finds its lease lapsed at once, before the
// coordinator has run. Cheap (one atomic load); safe for concurrent use.
func (c *Coordinator) LeaseValid(now time.Time) bool {
	return now.Sub(c.base) < time.Duration(c.leaseEnd.Load())
}

// Status reports whether this node is joined to the cluster, for a
// readiness check: its ZooKeeper session is connected, its member znode
// was created on that session, its lease holds (see LeaseValid) and an
// assignment was applied since it joined. Otherwise reason says why not,
// in a few words ("connecting to zookeeper", "zookeeper session lost",
// "lease lapsed: no answer from zookeeper for 3.1s", "waiting for an
// assignment"). Safe for concurrent use.
func (c *Coordinator) Status() (joined bool, reason string) {
	now := c.now()
	c.mu.Lock()
	s, exp, lost, applied := c.session, c.sessionExp, c.lostSession, c.applied
	c.mu.Unlock()
	switch {
	case s == 0 && lost:
		return false, "zookeeper session lost"
	case c.conn.State() != zk.StateHasSession:
		return false, "connecting to zookeeper"
	case s == 0:
		return false, "joining the cluster"
	case c.conn.SessionID() != s || c.expiries.Load() != exp:
		return false, "zookeeper session lost"
	case !c.LeaseValid(now):
		return false, c.lapsed(now)
	case !applied:
		return false, "waiting for an assignment"
	}
	return true, ""
}

// lapsed says how long ZooKeeper has not answered.
func (c *Coordinator) lapsed(now time.Time) string {
	silent := now.Sub(c.base) - time.Duration(c.heard.Load())
	return fmt.Sprintf("lease lapsed: no answer from zookeeper for %.1fs", silent.Seconds())
}

// renew extends the lease: a request of the joined session sent at start
// came back OK. A lease lapsed by start stays lapsed (the loop gives the
// session up) unless the request was part of a join. Loop only.
func (c *Coordinator) renew(start time.Time, join bool) {
	at := int64(start.Sub(c.base))
	if !join && at >= c.leaseEnd.Load() {
		return
	}
	c.heard.Store(max(at, c.heard.Load()))
	c.leaseEnd.Store(c.heard.Load() + int64(c.cfg.SessionTimeout/2))
}

// live reports whether the node holds the session it joined with: the
// client has not seen it expire, still has it, and the lease holds. If
// the node joined one and it is gone, the listener hears so first. Loop
// only; every listener call but SessionLost goes through it.
func (c *Coordinator) live() bool {
	c.mu.Lock()
	s, exp := c.session, c.sessionExp
	c.mu.Unlock()
	if s == 0 {
		return false
	}
	var why string
	now := c.now()
	switch cur := c.conn.SessionID(); {
	case c.expiries.Load() != exp:
		why = "session expired"
	case cur != s:
		why = fmt.Sprintf("the client has session %#x now", cur)
	case !c.LeaseValid(now):
		why = c.lapsed(now)
	default:
		return true
	}
	c.lose(s, why)
	return false
}

// drop gives the joined session up, if any: the node's znodes on it are
// gone, so it cannot be sure of anything it was granted. Loop only.
func (c *Coordinator) drop(why string) {
	c.mu.Lock()
	s := c.session
	c.mu.Unlock()
	if s != 0 {
		c.lose(s, why)
	}
}

// lose ends the node's hold on session s and tells the listener, once:
// the node joins again on whatever session comes next, even s. Loop only.
func (c *Coordinator) lose(s int64, why string) {
	c.leaseEnd.Store(noLease)
	c.mu.Lock()
	c.session, c.lostSession, c.applied, c.electPath = 0, true, false, ""
	c.leaseUntil = time.Time{}
	c.mu.Unlock()
	c.setLeader(false, 0)
	c.m.losses.Inc()
	c.log.Warn("zookeeper session lost: dropping partitions", "session", fmt.Sprintf("%#x", s), "reason", why)
	c.l.SessionLost()
}

// apply gives a to the listener while the node holds its session. Loop
// only.
func (c *Coordinator) apply(a *Assignment) {
	if !c.live() {
		return
	}
	c.l.Apply(a)
	c.mu.Lock()
	c.applied = true
	c.mu.Unlock()
}

// beat is the outcome of one heartbeat.
type beat struct {
	join     int64     // the join it was for
	start    time.Time // when the member znode's check was sent
	member   error     // the member znode's check
	leader   bool      // the election znode was checked too
	electAt  time.Time // when that check was sent
	election error     // its outcome
	path     string    // the election znode
}

// heartbeats checks, every sixth of a session timeout, that the member
// znode (and, on a leader, the election znode) is still the joined
// session's, and hands the outcome to the loop. It runs beside the loop,
// so that a request the silent server does not answer holds up neither
// the loop nor its lapse timer. Ends when the coordinator closes.
func (c *Coordinator) heartbeats() {
	defer close(c.beatDone)
	tick := time.NewTicker(c.cfg.SessionTimeout / 6)
	defer tick.Stop()
	for {
		select {
		case <-c.stop:
			return
		case <-tick.C:
		}
		c.mu.Lock()
		s, exp, path, leader, join := c.session, c.sessionExp, c.electPath, c.leader, c.joins
		c.mu.Unlock()
		if s == 0 {
			continue
		}
		b := beat{join: join, start: c.now()}
		_, b.member = c.owned(c.memberPath(), s, exp)
		if b.member == nil && leader && path != "" {
			b.leader, b.electAt, b.path = true, c.now(), path
			_, b.election = c.owned(path, s, exp)
		}
		select {
		case c.beats <- b:
		case <-c.stop:
			return
		}
	}
}

// takeBeat takes a heartbeat's outcome: ZooKeeper heard from the joined
// session at or after its start, so the session cannot expire before
// start+timeout; the leases end halfway there. A znode of the session
// gone or replaced means the session is given up; a failed request
// changes nothing (the lease runs out unless a later one succeeds). Loop
// only.
func (c *Coordinator) takeBeat(b beat) {
	c.mu.Lock()
	current, path := c.session != 0 && c.joins == b.join, c.electPath
	c.mu.Unlock()
	if !current {
		return // for a session since given up
	}
	gone := func(err error) bool { return errors.Is(err, zk.ErrNoNode) || errors.Is(err, errNotOurs) }
	switch {
	case gone(b.member):
		c.drop("member znode: " + b.member.Error())
		return
	case b.member != nil:
		return
	}
	c.renew(b.start, false)
	switch {
	case !b.leader || b.path != path:
	case gone(b.election):
		c.drop("election znode: " + b.election.Error())
	case b.election == nil:
		c.mu.Lock()
		if c.leader && !c.disconnected { // a disconnection ends it at once
			c.leaseUntil = b.electAt.Add(c.cfg.SessionTimeout / 2)
		}
		c.mu.Unlock()
	}
}
