package cluster

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-zookeeper/zk"
	"github.com/prometheus/client_golang/prometheus"
)

// Errors of the coordinator.
var (
	// ErrClosed is returned by calls on a closed Coordinator.
	ErrClosed = errors.New("cluster: coordinator closed")
)

// Member is a live node, as registered in its ephemeral znode.
type Member struct {
	ID         string `json:"id"`
	RemoteAddr string `json:"remote_addr"`
	HTTPAddr   string `json:"http_addr"`
	Version    string `json:"version"`
}

// Assignment is the leader's partition assignment, written with its epoch.
type Assignment struct {
	// Epoch is the writing leader's epoch: the czxid of its election znode,
	// larger for every later leader.
	Epoch int64 `json:"epoch"`
	// Generation counts assignments, across leaders.
	Generation int64 `json:"generation"`
	// Leader is the id of the writing leader.
	Leader string `json:"leader"`
	// Owners holds the owner of each partition.
	Owners []string `json:"owners"`
	// Moves maps a partition (decimal) whose owner changed while its previous
	// owner stayed alive to that previous owner, which hands its state over.
	Moves map[string]string `json:"moves,omitempty"`
	// Version is the assignment znode's version this was read at (not
	// stored in it): part of every grant's token, so that a claim of a
	// partition checks, in the same ZooKeeper transaction, that the
	// assignment granting it is still the newest.
	Version int32 `json:"-"`
}

// newer reports whether a supersedes b.
func (a *Assignment) newer(b *Assignment) bool {
	if b == nil {
		return true
	}
	return a.Epoch > b.Epoch || (a.Epoch == b.Epoch && a.Generation > b.Generation)
}

// MovedFrom returns the node handing partition p over, or "".
func (a *Assignment) MovedFrom(p int32) string { return a.Moves[strconv.Itoa(int(p))] }

// Listener hears what the coordinator learns. Calls are serial, from the
// coordinator's goroutine, and must not block for long.
//
// Every call but SessionLost is made on behalf of the session the node
// joined the cluster with, and only while that session holds: once it is
// gone, SessionLost comes before anything learnt on another session, and
// the next Apply (after the node joined again) gives the assignment anew.
type Listener interface {
	// Apply takes a newer assignment, or, after the node joined again, the
	// current one (with no moves: nothing is handed to a node that lost
	// its session).
	Apply(a *Assignment)
	// SessionLost says the session the node joined with is gone or may be:
	// it expired (even if the client has a new session already), the
	// client has another session, the node's znodes are gone, or its lease
	// lapsed (see Coordinator.LeaseValid). The node must stop serving and
	// committing its partitions at once: the leader gives them to others.
	// It is called once for each such loss; the node then joins again.
	SessionLost()
	// MembersChanged gives the live members.
	MembersChanged(members map[string]Member)
}

// Config configures a Coordinator.
type Config struct {
	// Servers are the ZooKeeper servers, host:port. Required.
	Servers []string
	// Cluster names the cluster; its znodes live under /squall/<Cluster>.
	// Default "squall".
	Cluster string
	// SessionTimeout is the ZooKeeper session timeout. Default 6s.
	SessionTimeout time.Duration
	// Self is this node's member record. Self.ID is required.
	Self Member
	// Partitions is the number of key partitions. Required.
	Partitions int
	// Digest, "user:password", authenticates to ZooKeeper and makes
	// Squall's znodes writable by that user only (readable by all).
	// Default empty: open ACLs.
	Digest string
	// Logger logs. Default slog.Default().
	Logger *slog.Logger
	// Registerer registers metrics. Default none.
	Registerer prometheus.Registerer

	// now reads the clock the leases are measured on. Default time.Now;
	// tests set it.
	now func() time.Time
}

// View is what the coordinator knows now.
type View struct {
	// Leader is the acting leader's id: this node while it holds a valid
	// lease, otherwise the writer of the newest assignment.
	Leader     string
	Epoch      int64
	Self       bool // this node is the acting leader
	Members    map[string]Member
	Assignment *Assignment
	Connected  bool
}

// Coordinator runs a node's membership, leader election and, while it
// leads, partition assignment, on ZooKeeper. Safe for concurrent use.
//
// Two goroutines, started by Start and joined by Close: run, which makes
// every ZooKeeper call but the heartbeats and every Listener call, and
// heartbeats, which renews the lease beside it. Lock order: mu is never
// held across a ZooKeeper or Listener call.
type Coordinator struct {
	cfg  Config
	l    Listener
	log  *slog.Logger
	conn *zk.Conn
	acl  []zk.ACL

	root, membersPath, electionPath, leavingPath, assignPath string

	wake  chan struct{}
	stop  chan struct{}
	done  chan struct{} // closed when run returns
	beats chan beat     // heartbeat results, from heartbeats to run
	// beatDone is closed when heartbeats returns.
	beatDone chan struct{}
	once     sync.Once

	// now is cfg.now; base is its reading at Start, from which the lease
	// offsets count.
	now  func() time.Time
	base time.Time

	// expiries counts the StateExpired events of the client, counted by
	// its event callback (which, unlike its event channel, drops none).
	expiries atomic.Int64
	// heard is when (an offset from base, ns) the newest request of the
	// joined session was sent whose answer came back OK; leaseEnd is
	// heard plus half a session timeout while the node holds a session,
	// noLease otherwise. Written by the loop only.
	heard, leaseEnd atomic.Int64

	mu           sync.Mutex
	members      map[string]Member
	leaving      map[string]bool
	assign       *Assignment
	assignVer    int32 // -1: no assignment znode
	leader       bool
	epoch        int64
	leaseUntil   time.Time // the leader's lease
	electPath    string
	session      int64 // the session the node joined with; 0: not joined
	memberSince  int64 // czxid of this session's member znode: assignments written before it name no handoff for this node
	sessionExp   int64 // expiries when it joined
	joins        int64 // counts joins: a heartbeat is for one of them
	lostSession  bool  // a joined session was lost, and none joined since
	applied      bool  // an assignment was applied since joining
	disconnected bool
	wantLeave    bool

	m *coordMetrics
}

// Start connects to ZooKeeper and starts the coordinator's goroutine.
func Start(cfg Config, l Listener) (*Coordinator, error) {
	if len(cfg.Servers) == 0 || cfg.Self.ID == "" || cfg.Partitions < 1 {
		return nil, errors.New("cluster: Servers, Self.ID and Partitions are required")
	}
	if strings.ContainsAny(cfg.Self.ID, "/") || strings.ContainsAny(cfg.Cluster, "/") {
		return nil, errors.New("cluster: node id and cluster name must not contain '/'")
	}
	if cfg.Cluster == "" {
		cfg.Cluster = "squall"
	}
	if cfg.SessionTimeout <= 0 {
		cfg.SessionTimeout = 6 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.now == nil {
		cfg.now = time.Now
	}
	c := &Coordinator{
		cfg: cfg, l: l, log: cfg.Logger, now: cfg.now, base: cfg.now(),
		root: "/squall/" + cfg.Cluster, wake: make(chan struct{}, 1),
		stop: make(chan struct{}), done: make(chan struct{}), assignVer: -1,
		beats: make(chan beat, 1), beatDone: make(chan struct{}),
		members: map[string]Member{}, leaving: map[string]bool{},
	}
	c.leaseEnd.Store(noLease)
	c.membersPath, c.electionPath = c.root+"/members", c.root+"/election"
	c.leavingPath, c.assignPath = c.root+"/leaving", c.root+"/assignment"
	c.acl = zk.WorldACL(zk.PermAll)
	if cfg.Digest != "" {
		user, pass, ok := strings.Cut(cfg.Digest, ":")
		if !ok || user == "" {
			return nil, errors.New("cluster: digest must be user:password")
		}
		c.acl = append(zk.DigestACL(zk.PermAll, user, pass), zk.WorldACL(zk.PermRead)...)
	}
	m, err := newCoordMetrics(cfg.Registerer)
	if err != nil {
		return nil, err
	}
	c.m = m
	conn, _, err := zk.Connect(cfg.Servers, cfg.SessionTimeout,
		zk.WithLogger(newZKLogger(c.log, time.Now)), zk.WithLogInfo(false),
		zk.WithEventCallback(c.event))
	if err != nil {
		return nil, fmt.Errorf("cluster: connect %v: %w", cfg.Servers, err)
	}
	c.conn = conn
	if cfg.Digest != "" {
		if err := conn.AddAuth("digest", []byte(cfg.Digest)); err != nil {
			conn.Close()
			return nil, fmt.Errorf("cluster: zookeeper auth: %w", err)
		}
	}
	go c.run()
	go c.heartbeats()
	return c, nil
}

// event is the client's event callback. It runs on the client's
// goroutines and must not block.
func (c *Coordinator) event(ev zk.Event) {
	if ev.Type == zk.EventSession && ev.State == zk.StateExpired {
		c.expiries.Add(1)
	}
	c.poke()
}

func (c *Coordinator) poke() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// View returns what the coordinator knows now.
func (c *Coordinator) View() View {
	c.mu.Lock()
	defer c.mu.Unlock()
	v := View{Members: make(map[string]Member, len(c.members)), Assignment: c.assign,
		Connected: c.conn.State() == zk.StateHasSession}
	for id, m := range c.members {
		v.Members[id] = m
	}
	if c.actingLocked() {
		v.Leader, v.Epoch, v.Self = c.cfg.Self.ID, c.epoch, true
	} else if c.assign != nil {
		v.Leader, v.Epoch = c.assign.Leader, c.assign.Epoch
		if v.Leader == c.cfg.Self.ID {
			v.Leader = "" // we wrote it but no longer act: unknown
		}
	}
	return v
}

// Leave announces a graceful leave: the leader moves this node's
// partitions to the others (with handoff). The caller waits until it owns
// none, then closes the coordinator.
func (c *Coordinator) Leave() {
	c.mu.Lock()
	c.wantLeave = true
	c.mu.Unlock()
	c.poke()
}

// Close leaves the cluster at once (the session ends, so the znodes go)
// and waits for the coordinator's goroutine. Safe to call twice.
func (c *Coordinator) Close() error {
	c.once.Do(func() {
		close(c.stop)
		<-c.done
		c.conn.Close() // ends a heartbeat's request
		<-c.beatDone
	})
	return nil
}

// actingLocked reports whether this node acts as the leader: it is one,
// and both its leader's lease and its lease as a node hold.
func (c *Coordinator) actingLocked() bool {
	now := c.now()
	return c.leader && now.Before(c.leaseUntil) && c.LeaseValid(now)
}

// watches are the one-shot ZooKeeper watches the loop holds.
type watches struct {
	members, leaving, assign, pred <-chan zk.Event
}

func (c *Coordinator) run() {
	defer close(c.done)
	var w watches
	tick := time.NewTicker(c.cfg.SessionTimeout / 6)
	defer tick.Stop()
	// lapse wakes the loop when the lease ends, to tell the listener.
	lapse := time.NewTimer(time.Hour)
	defer lapse.Stop()
	c.checkSession(&w)
	for {
		if end := c.leaseEnd.Load(); end != noLease {
			lapse.Reset(time.Duration(end) - c.now().Sub(c.base))
		} else {
			lapse.Stop()
		}
		var step func(*watches)
		select {
		case <-c.stop:
			return
		case <-c.wake:
		case <-lapse.C:
		case <-w.members:
			w.members, step = nil, c.readMembers
		case <-w.leaving:
			w.leaving, step = nil, c.readLeaving
		case <-w.assign:
			w.assign, step = nil, c.readAssignment
		case <-w.pred:
			w.pred, step = nil, c.elect
		case b := <-c.beats:
			step = func(*watches) { c.takeBeat(b) }
		case <-tick.C:
			step = c.rearm
		}
		// First of all, before acting on what woke it: is the session the
		// node joined with still its own? A process resumed after a SIGSTOP
		// finds its lease lapsed here.
		c.checkSession(&w)
		if step != nil {
			step(&w)
			c.lead()
		}
	}
}

// checkSession reacts to the connection's state. A disconnection ends the
// leader's lease at once. A session joined with and gone (expired, another
// one in its place, or its lease lapsed) is lost: the listener hears it
// before anything else. Then, with a session, the node joins the cluster
// (again), arms the watches and serves the current assignment again.
func (c *Coordinator) checkSession(w *watches) {
	state := c.conn.State()
	c.m.session.Set(map[bool]float64{true: 1}[state == zk.StateHasSession])
	c.mu.Lock()
	switch {
	case state == zk.StateHasSession:
		c.disconnected = false
	case !c.disconnected:
		c.disconnected = true
		if c.leader {
			c.leaseUntil = time.Time{} // stop acting at once
			c.log.Warn("zookeeper disconnected: leader stops acting until it can be sure", "epoch", c.epoch)
		}
	}
	c.mu.Unlock()
	if c.live() || state != zk.StateHasSession {
		return
	}
	*w = watches{}
	if err := c.join(); err != nil {
		c.log.Warn("joining the cluster", "err", err)
		return // retried on the next tick
	}
	c.mu.Lock()
	s := c.session
	c.mu.Unlock()
	c.log.Info("joined the cluster", "cluster", c.cfg.Cluster, "node", c.cfg.Self.ID, "session", fmt.Sprintf("%#x", s))
	if joinHook != nil {
		joinHook(c.cfg.Self.ID)
	}
	c.rearm(w) // reads, and applies, a newer assignment if there is one
	c.mu.Lock()
	current, applied := c.assign, c.applied
	c.mu.Unlock()
	if current != nil && !applied {
		// Serve again what the newest assignment still gives this node. Its
		// state went with the session: nothing will be handed over. (An
		// assignment the rearm applied kept only handoffs written after
		// the join, which are for this session: applying it again without
		// them would make the node claim a partition whose previous owner
		// is about to hand it over.)
		again := *current
		again.Moves = nil
		c.apply(&again)
	}
	c.elect(w)
	c.lead()
}

// joinHook, when set (by tests), runs right after the node joined the
// cluster, before it reads the assignment.
var joinHook func(self string)

// join joins the cluster on the client's current session: it creates the
// paths, this node's member znode and its election znode, replacing those
// of an earlier session, or of this one before it was given up. It counts
// only if every request ran on that session (requests queued while the
// client reconnects may run on the next), which then is the node's, with
// a lease from the start of the join.
func (c *Coordinator) join() error {
	s := c.conn.SessionID() // then expiries: it counts every expiry before s
	exp := c.expiries.Load()
	if s == 0 {
		return errors.New("no session")
	}
	start := c.now()
	for _, p := range []string{"/squall", c.root, c.membersPath, c.electionPath, c.leavingPath} {
		if _, err := c.conn.Create(p, nil, 0, c.acl); err != nil && !errors.Is(err, zk.ErrNodeExists) {
			return fmt.Errorf("create %s: %w", p, err)
		}
	}
	data, _ := json.Marshal(c.cfg.Self)
	if err := c.ephemeral(c.memberPath(), data, s); err != nil {
		return err
	}
	c.mu.Lock()
	leave := c.wantLeave
	c.mu.Unlock()
	if leave {
		if err := c.ephemeral(c.leavingPath+"/"+c.cfg.Self.ID, nil, s); err != nil {
			return err
		}
	}
	path, err := c.candidate(s)
	if err != nil {
		return err
	}
	var since int64
	for i, p := range []string{c.memberPath(), path} {
		czxid, err := c.owned(p, s, exp)
		if err != nil {
			return err
		}
		if i == 0 {
			since = czxid
		}
	}
	c.mu.Lock()
	c.session, c.sessionExp, c.electPath = s, exp, path
	c.memberSince = since
	c.lostSession, c.applied = false, false
	c.joins++
	c.mu.Unlock()
	c.renew(start, true)
	return nil
}

// candidate returns this node's election znode for session s: the one s
// holds already (s was given up and joins again: it keeps its place, and
// a leader its epoch), or a new one. Candidates left by an earlier session
// of this node must not lead in its name: it deletes them.
func (c *Coordinator) candidate(s int64) (string, error) {
	names, _, err := c.conn.Children(c.electionPath)
	if err != nil {
		return "", fmt.Errorf("list candidates: %w", err)
	}
	sort.Slice(names, func(i, j int) bool { return seq(names[i]) < seq(names[j]) })
	kept := ""
	for _, n := range names {
		path := c.electionPath + "/" + n
		b, st, err := c.conn.Get(path)
		if err != nil || string(b) != c.cfg.Self.ID {
			continue // not this node's, or gone meanwhile
		}
		if st.EphemeralOwner == s && kept == "" {
			kept = path
			continue
		}
		if err := c.conn.Delete(path, -1); err != nil && !errors.Is(err, zk.ErrNoNode) {
			return "", fmt.Errorf("delete old candidate %s: %w", path, err)
		}
	}
	if kept != "" {
		return kept, nil
	}
	path, err := c.conn.Create(c.electionPath+"/n_", []byte(c.cfg.Self.ID), zk.FlagEphemeral|zk.FlagSequence, c.acl)
	if err != nil {
		return "", fmt.Errorf("create election node: %w", err)
	}
	return path, nil
}

// memberPath is this node's member znode.
func (c *Coordinator) memberPath() string { return c.membersPath + "/" + c.cfg.Self.ID }

// owned checks that path is an ephemeral znode of session s, which has not
// expired (as of exp) nor been replaced meanwhile.
func (c *Coordinator) owned(path string, s, exp int64) (czxid int64, err error) {
	ok, st, err := c.conn.Exists(path)
	switch {
	case err != nil:
		return 0, fmt.Errorf("stat %s: %w", path, err)
	case c.conn.SessionID() != s || c.expiries.Load() != exp:
		return 0, fmt.Errorf("session %#x gone", s)
	case !ok:
		return 0, fmt.Errorf("%s: %w", path, zk.ErrNoNode)
	case st.EphemeralOwner != s:
		return 0, fmt.Errorf("%s: %w (session %#x)", path, errNotOurs, st.EphemeralOwner)
	}
	return st.Czxid, nil
}

// ephemeral creates an ephemeral znode of session s, replacing one left by
// an earlier session of the same node (a restart with the same id); one of
// s already (s was given up and joins again) is kept.
func (c *Coordinator) ephemeral(path string, data []byte, s int64) error {
	for attempt := 0; attempt < 3; attempt++ {
		_, err := c.conn.Create(path, data, zk.FlagEphemeral, c.acl)
		if err == nil {
			return nil
		}
		if !errors.Is(err, zk.ErrNodeExists) {
			return fmt.Errorf("create %s: %w", path, err)
		}
		ok, st, err := c.conn.Exists(path)
		if err != nil {
			return fmt.Errorf("stat %s: %w", path, err)
		}
		if ok && st.EphemeralOwner == s {
			_, err = c.conn.Set(path, data, -1)
			return err
		}
		if ok {
			c.log.Info("replacing the znode of an earlier session of this node", "path", path)
			if err := c.conn.Delete(path, -1); err != nil && !errors.Is(err, zk.ErrNoNode) {
				return fmt.Errorf("delete stale %s: %w", path, err)
			}
		}
	}
	return fmt.Errorf("create %s: still taken", path)
}

// rearm sets every watch that is not set (after a firing or an error).
func (c *Coordinator) rearm(w *watches) {
	c.mu.Lock()
	s := c.session
	c.mu.Unlock()
	if s == 0 || c.conn.State() != zk.StateHasSession {
		return
	}
	if w.members == nil {
		c.readMembers(w)
	}
	if w.leaving == nil {
		c.readLeaving(w)
	}
	if w.assign == nil {
		c.readAssignment(w)
	}
	c.mu.Lock()
	leave, path, leader := c.wantLeave, c.electPath, c.leader
	c.mu.Unlock()
	if leave {
		if ok, _, _ := c.conn.Exists(c.leavingPath + "/" + c.cfg.Self.ID); !ok {
			_ = c.ephemeral(c.leavingPath+"/"+c.cfg.Self.ID, nil, s)
		}
	}
	// A candidate whose predecessor's watch is not set runs the election
	// again; the leader watches nothing, and its heartbeats renew its lease.
	if path != "" && w.pred == nil && !leader {
		c.elect(w)
	}
}

func (c *Coordinator) readMembers(w *watches) {
	ids, _, ch, err := c.conn.ChildrenW(c.membersPath)
	if err != nil {
		return // rearmed on the next tick
	}
	w.members = ch
	members := make(map[string]Member, len(ids))
	for _, id := range ids {
		b, _, err := c.conn.Get(c.membersPath + "/" + id)
		if err != nil {
			continue // gone meanwhile
		}
		var m Member
		if json.Unmarshal(b, &m) == nil && m.ID == id {
			members[id] = m
		}
	}
	c.mu.Lock()
	c.members = members
	for id := range c.leaving {
		if _, member := members[id]; !member {
			delete(c.leaving, id)
		}
	}
	c.mu.Unlock()
	c.m.members.Set(float64(len(members)))
	if c.live() {
		c.l.MembersChanged(members)
	}
}

func (c *Coordinator) readLeaving(w *watches) {
	ids, _, ch, err := c.conn.ChildrenW(c.leavingPath)
	if err != nil {
		return
	}
	w.leaving = ch
	c.mu.Lock()
	// A leaver stays one until its member znode is gone too: both go with
	// its session, but the two watches fire in either order, and a leaver
	// seen as a plain member again would be given partitions back.
	leaving := make(map[string]bool, len(ids))
	for id := range c.leaving {
		if _, member := c.members[id]; member {
			leaving[id] = true
		}
	}
	for _, id := range ids {
		leaving[id] = true
	}
	c.leaving = leaving
	c.mu.Unlock()
}

func (c *Coordinator) readAssignment(w *watches) {
	var b []byte
	var st *zk.Stat
	var ch <-chan zk.Event
	var err error
	for {
		b, st, ch, err = c.conn.GetW(c.assignPath)
		if !errors.Is(err, zk.ErrNoNode) {
			break
		}
		ok, _, ech, err := c.conn.ExistsW(c.assignPath)
		if err != nil {
			return // rearmed on the next tick
		}
		if !ok {
			w.assign = ech // fires when the leader creates it
			return
		}
		// Created between the two calls: read it now.
	}
	if err != nil {
		return
	}
	w.assign = ch
	var a Assignment
	if err := json.Unmarshal(b, &a); err != nil || len(a.Owners) != c.cfg.Partitions {
		c.log.Error("unusable assignment in zookeeper", "path", c.assignPath, "err", err, "partitions", len(a.Owners))
		return
	}
	a.Version = st.Version
	c.mu.Lock()
	if st.Mzxid < c.memberSince && a.Moves != nil {
		// Written before this node joined on its current session: the
		// handoffs it names went to an earlier incarnation of this node
		// (a restart with the same id), and will not come again.
		a.Moves = nil
	}
	c.assignVer = st.Version
	fresh := a.newer(c.assign)
	if fresh {
		c.assign = &a
	} else if a.Epoch < c.assign.Epoch {
		c.log.Warn("ignoring an assignment older than the one applied", "epoch", a.Epoch, "have", c.assign.Epoch)
	}
	c.mu.Unlock()
	if fresh {
		c.m.generation.Set(float64(a.Generation))
		c.m.epoch.Set(float64(a.Epoch))
		c.apply(&a)
	}
}

// elect runs one round of leader election: the lowest sequence leads; any
// other watches its predecessor only (no herd effect).
func (c *Coordinator) elect(w *watches) {
	c.mu.Lock()
	path, s, exp := c.electPath, c.session, c.sessionExp
	c.mu.Unlock()
	if path == "" {
		return
	}
	names, _, err := c.conn.Children(c.electionPath)
	if err != nil {
		return
	}
	sort.Slice(names, func(i, j int) bool { return seq(names[i]) < seq(names[j]) })
	mine := path[strings.LastIndexByte(path, '/')+1:]
	i := slices.Index(names, mine)
	if i < 0 {
		c.drop("election znode " + path + " vanished")
		return
	}
	if i > 0 {
		ok, _, ch, err := c.conn.ExistsW(c.electionPath + "/" + names[i-1])
		if err != nil {
			return
		}
		w.pred = ch
		if !ok {
			c.poke()
		}
		c.setLeader(false, 0)
		return
	}
	start := c.now()
	ok, st, err := c.conn.Exists(path)
	if err != nil || !ok || st.EphemeralOwner != s || c.conn.SessionID() != s || c.expiries.Load() != exp {
		return // the heartbeat or live() sort it out
	}
	c.mu.Lock()
	c.leaseUntil = start.Add(c.cfg.SessionTimeout / 2)
	c.mu.Unlock()
	c.setLeader(true, st.Czxid)
}

func seq(name string) int64 {
	n, _ := strconv.ParseInt(name[strings.LastIndexByte(name, '_')+1:], 10, 64)
	return n
}

func (c *Coordinator) setLeader(on bool, epoch int64) {
	c.mu.Lock()
	was := c.leader
	c.leader = on
	if on {
		c.epoch = epoch
	}
	c.mu.Unlock()
	if on && !was {
		c.log.Info("became leader", "node", c.cfg.Self.ID, "epoch", epoch)
		c.m.leader.Set(1)
	} else if !on && was {
		c.log.Info("stepped down as leader", "node", c.cfg.Self.ID)
		c.m.leader.Set(0)
	}
}

// lead writes a new assignment when this node is the acting leader and the
// members, the leavers or its epoch call for one.
func (c *Coordinator) lead() {
	c.mu.Lock()
	if !c.actingLocked() || c.electPath == "" {
		c.mu.Unlock()
		return
	}
	ids := make([]string, 0, len(c.members))
	for id := range c.members {
		ids = append(ids, id)
	}
	var prev []string
	gen := int64(0)
	if c.assign != nil {
		prev, gen = c.assign.Owners, c.assign.Generation
	}
	next := Assign(c.cfg.Partitions, prev, ids, c.leaving)
	if c.assign != nil && c.assign.Epoch == c.epoch && slices.Equal(next, prev) {
		c.mu.Unlock()
		return
	}
	a := &Assignment{Epoch: c.epoch, Generation: gen + 1, Leader: c.cfg.Self.ID, Owners: next}
	for p, from := range Moves(prev, next) {
		if _, live := c.members[from]; live {
			if a.Moves == nil {
				a.Moves = map[string]string{}
			}
			a.Moves[strconv.Itoa(int(p))] = from
		}
	}
	electPath, ver := c.electPath, c.assignVer
	c.mu.Unlock()

	data, _ := json.Marshal(a)
	var write any = &zk.SetDataRequest{Path: c.assignPath, Data: data, Version: ver}
	if ver < 0 {
		write = &zk.CreateRequest{Path: c.assignPath, Data: data, Acl: c.acl}
	}
	// The check fences the write: it fails unless this session still holds
	// the election znode, i.e. unless this node is still the leader.
	res, err := c.conn.Multi(&zk.CheckVersionRequest{Path: electPath, Version: 0}, write)
	if err == nil {
		c.log.Info("wrote assignment", "epoch", a.Epoch, "generation", a.Generation, "moves", len(a.Moves), "owners", strings.Join(a.Owners, ","), "members", len(ids), "leaving", len(c.leaving))
		c.m.writes.Inc()
		return
	}
	if len(res) > 0 && errors.Is(res[0].Error, zk.ErrNoNode) {
		c.log.Warn("assignment write fenced: no longer leader", "epoch", a.Epoch)
		c.drop("election znode " + electPath + " gone")
		return
	}
	c.log.Info("assignment write failed; rereading", "err", err)
	var w watches
	c.readAssignment(&w) // refreshes the version; the armed watch stays
	c.poke()
}

type coordMetrics struct {
	session, leader, epoch, generation, members prometheus.Gauge
	writes, losses                              prometheus.Counter
}

func newCoordMetrics(reg prometheus.Registerer) (*coordMetrics, error) {
	g := func(name, help string) prometheus.Gauge {
		return prometheus.NewGauge(prometheus.GaugeOpts{Name: name, Help: help})
	}
	m := &coordMetrics{
		session:    g("squall_zk_session_connected", "1 while the ZooKeeper session is connected."),
		leader:     g("squall_leader", "1 while this node is the cluster leader."),
		epoch:      g("squall_assignment_epoch", "Epoch of the newest assignment applied (the leader's epoch)."),
		generation: g("squall_assignment_generation", "Generation of the newest assignment applied."),
		members:    g("squall_cluster_members", "Live members seen in ZooKeeper."),
		writes: prometheus.NewCounter(prometheus.CounterOpts{Name: "squall_assignment_writes_total",
			Help: "Assignments written by this node as leader."}),
		losses: prometheus.NewCounter(prometheus.CounterOpts{Name: "squall_zk_session_losses_total",
			Help: "ZooKeeper sessions this node joined with and lost (expired, replaced or lease lapsed)."}),
	}
	if reg != nil {
		for _, col := range []prometheus.Collector{m.session, m.leader, m.epoch, m.generation, m.members, m.writes, m.losses} {
			if err := reg.Register(col); err != nil {
				return nil, fmt.Errorf("cluster: register metrics: %w", err)
			}
		}
	}
	return m, nil
}
