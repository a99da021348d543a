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
type Listener interface {
	// Apply takes a newer assignment.
	Apply(a *Assignment)
	// SessionLost says the ZooKeeper session is gone (expired, or cut for
	// longer than its timeout): the node must stop serving its partitions,
	// which the leader gives to others. A new session follows.
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
type Coordinator struct {
	cfg  Config
	l    Listener
	log  *slog.Logger
	conn *zk.Conn
	acl  []zk.ACL

	root, membersPath, electionPath, leavingPath, assignPath string

	wake chan struct{}
	stop chan struct{}
	done chan struct{}
	once sync.Once

	mu          sync.Mutex
	members     map[string]Member
	leaving     map[string]bool
	assign      *Assignment
	assignVer   int32 // -1: no assignment znode
	leader      bool
	epoch       int64
	leaseUntil  time.Time
	electPath   string
	session     int64
	lostSession bool      // SessionLost told for the current trouble
	discSince   time.Time // zero while connected
	wantLeave   bool

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
	c := &Coordinator{
		cfg: cfg, l: l, log: cfg.Logger,
		root: "/squall/" + cfg.Cluster, wake: make(chan struct{}, 1),
		stop: make(chan struct{}), done: make(chan struct{}), assignVer: -1,
		members: map[string]Member{}, leaving: map[string]bool{},
	}
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
		zk.WithEventCallback(func(zk.Event) { c.poke() }))
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
	return c, nil
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
		c.conn.Close()
	})
	return nil
}

func (c *Coordinator) actingLocked() bool {
	return c.leader && time.Now().Before(c.leaseUntil)
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
	for {
		c.checkSession(&w)
		select {
		case <-c.stop:
			return
		case <-c.wake:
		case <-w.members:
			w.members = nil
			c.readMembers(&w)
			c.lead()
		case <-w.leaving:
			w.leaving = nil
			c.readLeaving(&w)
			c.lead()
		case <-w.assign:
			w.assign = nil
			c.readAssignment(&w)
			c.lead()
		case <-w.pred:
			w.pred = nil
			c.elect(&w)
			c.lead()
		case <-tick.C:
			c.heartbeat()
			c.rearm(&w)
			c.lead()
		}
	}
}

// checkSession reacts to the connection's state: a new session registers
// the node and arms the watches; a disconnection ends the leader's lease at
// once; a session expired, or cut for longer than its timeout, is lost.
func (c *Coordinator) checkSession(w *watches) {
	state := c.conn.State()
	c.m.session.Set(map[bool]float64{true: 1}[state == zk.StateHasSession])
	c.mu.Lock()
	switch {
	case state == zk.StateHasSession:
		c.discSince = time.Time{}
	case c.discSince.IsZero():
		c.discSince = time.Now()
		if c.leader {
			c.leaseUntil = time.Time{} // stop acting at once
			c.log.Warn("zookeeper disconnected: leader stops acting until it can be sure", "epoch", c.epoch)
		}
	}
	// The client notices a silent server about 2/3 of the timeout after it
	// last heard from it; half a timeout later the server may have expired
	// the session and the leader given this node's partitions away.
	lost := state == zk.StateExpired ||
		(!c.discSince.IsZero() && time.Since(c.discSince) > c.cfg.SessionTimeout/2)
	if lost && !c.lostSession && c.session != 0 {
		c.lostSession = true
		c.leader, c.electPath = false, ""
		c.session = 0 // rejoin on whatever session comes next, even this one
		c.mu.Unlock()
		c.m.leader.Set(0)
		c.log.Warn("zookeeper session lost: dropping partitions", "state", state.String())
		c.l.SessionLost()
		c.mu.Lock()
	}
	newSession := state == zk.StateHasSession && c.conn.SessionID() != c.session
	c.mu.Unlock()
	if !newSession {
		return
	}
	*w = watches{}
	if err := c.join(); err != nil {
		c.log.Warn("joining the cluster", "err", err)
		return // retried on the next tick
	}
	c.mu.Lock()
	c.session, c.lostSession = c.conn.SessionID(), false
	c.mu.Unlock()
	c.log.Info("joined the cluster", "cluster", c.cfg.Cluster, "node", c.cfg.Self.ID, "session", fmt.Sprintf("%#x", c.conn.SessionID()))
	c.rearm(w) // reads, and applies, a newer assignment if there is one
	c.mu.Lock()
	current := c.assign
	c.mu.Unlock()
	if current != nil {
		// Serve again what the newest assignment still gives this node. Its
		// state went with the session: nothing will be handed over.
		again := *current
		again.Moves = nil
		c.l.Apply(&again)
	}
	c.elect(w)
	c.lead()
}

// join creates the paths, this node's member znode and its election znode.
func (c *Coordinator) join() error {
	for _, p := range []string{"/squall", c.root, c.membersPath, c.electionPath, c.leavingPath} {
		if _, err := c.conn.Create(p, nil, 0, c.acl); err != nil && !errors.Is(err, zk.ErrNodeExists) {
			return fmt.Errorf("create %s: %w", p, err)
		}
	}
	data, _ := json.Marshal(c.cfg.Self)
	if err := c.ephemeral(c.membersPath+"/"+c.cfg.Self.ID, data); err != nil {
		return err
	}
	c.mu.Lock()
	leave := c.wantLeave
	c.mu.Unlock()
	if leave {
		if err := c.ephemeral(c.leavingPath+"/"+c.cfg.Self.ID, nil); err != nil {
			return err
		}
	}
	// Candidates left by this node before (an earlier session, or this one
	// before it was lost) must not lead in its name.
	if names, _, err := c.conn.Children(c.electionPath); err == nil {
		for _, n := range names {
			if b, _, err := c.conn.Get(c.electionPath + "/" + n); err == nil && string(b) == c.cfg.Self.ID {
				_ = c.conn.Delete(c.electionPath+"/"+n, -1)
			}
		}
	}
	path, err := c.conn.Create(c.electionPath+"/n_", []byte(c.cfg.Self.ID), zk.FlagEphemeral|zk.FlagSequence, c.acl)
	if err != nil {
		return fmt.Errorf("create election node: %w", err)
	}
	c.mu.Lock()
	c.electPath = path
	c.mu.Unlock()
	return nil
}

// ephemeral creates an ephemeral znode of this session, replacing one
// left by an earlier session of the same node (a restart with the same id).
func (c *Coordinator) ephemeral(path string, data []byte) error {
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
		if ok && st.EphemeralOwner == c.conn.SessionID() {
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
	if c.conn.State() != zk.StateHasSession {
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
	leave, path := c.wantLeave, c.electPath
	c.mu.Unlock()
	if leave {
		if ok, _, _ := c.conn.Exists(c.leavingPath + "/" + c.cfg.Self.ID); !ok {
			_ = c.ephemeral(c.leavingPath+"/"+c.cfg.Self.ID, nil)
		}
	}
	if path != "" && w.pred == nil {
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
	c.l.MembersChanged(members)
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
		c.l.Apply(&a)
	}
}

// elect runs one round of leader election: the lowest sequence leads; any
// other watches its predecessor only (no herd effect).
func (c *Coordinator) elect(w *watches) {
	c.mu.Lock()
	path := c.electPath
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
		c.log.Warn("election znode vanished; rejoining", "path", path)
		c.mu.Lock()
		c.electPath, c.leader = "", false
		c.session = 0 // forces a fresh join
		c.mu.Unlock()
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
	start := time.Now()
	ok, st, err := c.conn.Exists(path)
	if err != nil || !ok {
		return
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

// heartbeat renews the leader's lease: ZooKeeper heard from this session at
// or after start, so the session cannot expire before start+timeout; the
// lease ends halfway there.
func (c *Coordinator) heartbeat() {
	c.mu.Lock()
	path, leader := c.electPath, c.leader
	c.mu.Unlock()
	if !leader || path == "" {
		return
	}
	start := time.Now()
	ok, _, err := c.conn.Exists(path)
	if err != nil {
		return
	}
	if !ok {
		c.setLeader(false, 0)
		c.mu.Lock()
		c.session = 0 // our election znode is gone: rejoin
		c.mu.Unlock()
		return
	}
	c.mu.Lock()
	c.leaseUntil = start.Add(c.cfg.SessionTimeout / 2)
	c.mu.Unlock()
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
		c.setLeader(false, 0)
		c.mu.Lock()
		c.session = 0
		c.mu.Unlock()
		return
	}
	c.log.Info("assignment write failed; rereading", "err", err)
	var w watches
	c.readAssignment(&w) // refreshes the version; the armed watch stays
	c.poke()
}

type coordMetrics struct {
	session, leader, epoch, generation, members prometheus.Gauge
	writes                                      prometheus.Counter
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
	}
	if reg != nil {
		for _, col := range []prometheus.Collector{m.session, m.leader, m.epoch, m.generation, m.members, m.writes} {
			if err := reg.Register(col); err != nil {
				return nil, fmt.Errorf("cluster: register metrics: %w", err)
			}
		}
	}
	return m, nil
}
