package natstest

import (
	"fmt"
	"net"
	"net/url"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
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
// connected. Every server is shut down when the test ends.
func StartJSCluster(t testing.TB, n int) []*server.Server {
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
	servers := make([]*server.Server, 0, n)
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
		s, err := server.NewServer(o)
		if err != nil {
			t.Fatal(err)
		}
		s.Start() // not ready for clients before its cluster has formed
		t.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
		servers = append(servers, s)
	}
	for _, s := range servers {
		if !s.ReadyForConnections(30 * time.Second) {
			t.Fatalf("natstest: server %s did not start", s.Name())
		}
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		ready := 0
		for _, s := range servers {
			if s.JetStreamIsClustered() && s.JetStreamIsCurrent() && s.NumRoutes() >= n-1 {
				ready++
			}
		}
		if ready == n {
			leader := false
			for _, s := range servers {
				leader = leader || s.JetStreamIsLeader()
			}
			if leader {
				return servers
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("natstest: JetStream cluster formed no meta leader within 30s")
		}
		time.Sleep(20 * time.Millisecond) // polling the server's state
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
