package natstest

import (
	"fmt"
	"net"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// StartJS starts a NATS server with JetStream on 127.0.0.1 (a free port),
// its file store in a fresh t.TempDir(), shut down when the test ends.
// maxStore, when positive, is the server's JetStream storage limit in
// bytes (JetStreamMaxStore), to make its store fill up.
func StartJS(t testing.TB, maxStore int64) *server.Server {
	t.Helper()
	return StartWith(t, &server.Options{
		JetStream:         true,
		StoreDir:          t.TempDir(),
		JetStreamMaxStore: maxStore,
	})
}

// clusterName names the cluster of StartJSCluster.
const clusterName = "squall-test"

// StartJSCluster starts n NATS servers with JetStream forming one cluster
// ("squall-test") on random loopback ports, each with its file store in a
// t.TempDir() and routes to all the others, and returns them once
// JetStream has a meta leader. Shutting any one down leaves the others
// connected. Every server is shut down when the test ends. For a cluster
// whose servers can be killed and restarted, use NewJSCluster.
func StartJSCluster(t testing.TB, n int) []*server.Server {
	t.Helper()
	return NewJSCluster(t, n).Servers()
}

// jsClusterTimeout bounds a JetStream cluster's forming, at the start and
// after a restart.
const jsClusterTimeout = 30 * time.Second

// JSCluster is a JetStream cluster of in-process NATS servers, each of
// which can be killed (Kill) and restarted (Restart) on the ports and
// store directory it had, as a server process would be. Its methods are
// safe for concurrent use, but Kill and Restart of one server are meant
// to come from one goroutine.
type JSCluster struct {
	mu      sync.Mutex
	opts    []*server.Options // per server, with its client port fixed after its first start
	servers []*server.Server  // nil while down
}

// NewJSCluster starts n NATS servers with JetStream forming one cluster
// ("squall-test"), s1..sn, on loopback ports picked at random and kept
// across restarts, each with its file store in a t.TempDir() and routes
// to all the others, and returns once JetStream has a meta leader. Every
// server still up is shut down when the test ends.
func NewJSCluster(t testing.TB, n int) *JSCluster {
	t.Helper()
	if n < 1 {
		t.Fatal("natstest: cluster of no server")
	}
	// Cluster ports are picked ahead (each server routes to all), from
	// listeners closed just before the servers bind them.
	routes := make([]*url.URL, n)
	ports := make([]int, n)
	for i := range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ports[i] = l.Addr().(*net.TCPAddr).Port
		l.Close()
		routes[i] = &url.URL{Scheme: "nats-route", Host: fmt.Sprintf("127.0.0.1:%d", ports[i])}
	}
	c := &JSCluster{servers: make([]*server.Server, n)}
	for i := range n {
		o := &server.Options{
			ServerName: fmt.Sprintf("s%d", i+1),
			JetStream:  true,
			StoreDir:   t.TempDir(),
			Cluster: server.ClusterOpts{
				Name: clusterName,
				Host: "127.0.0.1",
				Port: ports[i],
			},
			Routes: routes,
		}
		o.Host, o.NoSigs, o.NoLog, o.Port = "127.0.0.1", true, true, server.RANDOM_PORT
		c.opts = append(c.opts, o)
	}
	// After the t.TempDir calls: the servers stop before their stores go.
	t.Cleanup(func() {
		for i := range n {
			c.Kill(i)
		}
	})
	for i, o := range c.opts {
		s, err := server.NewServer(o.Clone())
		if err != nil {
			t.Fatal(err)
		}
		s.Start() // not ready for clients before its cluster has formed
		c.servers[i] = s
	}
	for i, s := range c.servers {
		if !s.ReadyForConnections(jsClusterTimeout) {
			t.Fatalf("natstest: server %s did not start", s.Name())
		}
		c.opts[i].Port = s.Addr().(*net.TCPAddr).Port // a restart takes the same
	}
	if err := c.WaitFormed(jsClusterTimeout); err != nil {
		t.Fatal(err)
	}
	return c
}

// Len returns the number of servers, up or down.
func (c *JSCluster) Len() int { return len(c.opts) }

// Servers returns the servers that are up, in order.
func (c *JSCluster) Servers() []*server.Server {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []*server.Server
	for _, s := range c.servers {
		if s != nil {
			out = append(out, s)
		}
	}
	return out
}

// Up reports whether server i (0-based) is up.
func (c *JSCluster) Up(i int) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.servers[i] != nil
}

// Name returns server i's name, s1..sn.
func (c *JSCluster) Name(i int) string { return c.opts[i].ServerName }

// ClientURLs returns the client URLs of every server, up or down,
// comma-separated: they stay valid across restarts.
func (c *JSCluster) ClientURLs() string {
	urls := make([]string, len(c.opts))
	for i, o := range c.opts {
		urls[i] = fmt.Sprintf("nats://127.0.0.1:%d", o.Port)
	}
	return strings.Join(urls, ",")
}

// JetStream returns a JetStream context on a connection to the cluster
// that fails over between its servers and reconnects without limit,
// closed when the test ends.
func (c *JSCluster) JetStream(t testing.TB) jetstream.JetStream {
	t.Helper()
	nc, err := nats.Connect(c.ClientURLs(), nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return js
}

// Kill shuts server i down at once, as if its process died: client and
// route connections are closed, no lame-duck period, and it returns once
// the server has stopped. Killing a server that is down does nothing.
func (c *JSCluster) Kill(i int) {
	c.mu.Lock()
	s := c.servers[i]
	c.servers[i] = nil
	c.mu.Unlock()
	if s != nil {
		s.Shutdown()
		s.WaitForShutdown()
	}
}

// Restart starts server i again, on its ports and with its store
// directory, and waits, at most 30s, until it accepts clients and the
// cluster has formed again (WaitFormed). The server must be down.
func (c *JSCluster) Restart(i int) error {
	c.mu.Lock()
	if c.servers[i] != nil {
		c.mu.Unlock()
		return fmt.Errorf("natstest: restart of %s: it is up", c.opts[i].ServerName)
	}
	s, err := server.NewServer(c.opts[i].Clone())
	if err != nil {
		c.mu.Unlock()
		return fmt.Errorf("natstest: restart of %s: %w", c.opts[i].ServerName, err)
	}
	s.Start()
	c.servers[i] = s
	c.mu.Unlock()
	if !s.ReadyForConnections(jsClusterTimeout) {
		return fmt.Errorf("natstest: %s not ready for clients %s after its restart", s.Name(), jsClusterTimeout)
	}
	return c.WaitFormed(jsClusterTimeout)
}

// WaitFormed waits, at most timeout, until every server that is up has
// routes to all the others that are up, JetStream clustered and current,
// and one of them is the meta leader.
func (c *JSCluster) WaitFormed(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		up := c.Servers()
		ready, leader := 0, false
		for _, s := range up {
			if s.JetStreamIsClustered() && s.JetStreamIsCurrent() && s.NumRoutes() >= len(up)-1 {
				ready++
			}
			leader = leader || s.JetStreamIsLeader()
		}
		if ready == len(up) && leader {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("natstest: JetStream cluster of %d servers up not formed within %s (%d current, meta leader %v)",
				len(up), timeout, ready, leader)
		}
		time.Sleep(20 * time.Millisecond) // polling the servers' state
	}
}

// ClientURLs returns the client URLs of servers, comma-separated, for
// nats.Connect to fail over between them.
func ClientURLs(servers []*server.Server) string {
	s := ""
	for i, srv := range servers {
		if i > 0 {
			s += ","
		}
		s += srv.ClientURL()
	}
	return s
}

// StoppedJS is a server of StartJSCluster shut down by StopJS, to be
// started again by Start.
type StoppedJS struct {
	o *server.Options
}

// StopJS shuts s, a server of StartJSCluster, down and returns what starts
// it again: same name, file store, client port and cluster port, routed to
// the servers of cluster still running. The servers' clients reconnect to
// the others meanwhile, and to it once it is back.
func StopJS(t testing.TB, s *server.Server, cluster []*server.Server) *StoppedJS {
	t.Helper()
	o := &server.Options{
		ServerName: s.Name(),
		JetStream:  true,
		StoreDir:   filepath.Dir(s.StoreDir()), // the server appends "jetstream"
		Cluster: server.ClusterOpts{
			Name: clusterName,
			Host: "127.0.0.1",
			Port: s.ClusterAddr().Port,
		},
	}
	for _, peer := range cluster {
		if a := peer.ClusterAddr(); a != nil {
			o.Routes = append(o.Routes, &url.URL{Scheme: "nats-route", Host: a.String()})
		}
	}
	o.Host, o.NoSigs, o.NoLog, o.Port = "127.0.0.1", true, true, s.Addr().(*net.TCPAddr).Port
	s.Shutdown()
	s.WaitForShutdown()
	return &StoppedJS{o: o}
}

// Start starts the stopped server again and returns it once it accepts
// clients; it is shut down when the test ends.
func (st *StoppedJS) Start(t testing.TB) *server.Server {
	t.Helper()
	s, err := server.NewServer(st.o)
	if err != nil {
		t.Fatal(err)
	}
	s.Start()
	t.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
	if !s.ReadyForConnections(30 * time.Second) {
		t.Fatalf("natstest: server %s did not start again", st.o.ServerName)
	}
	return s
}
