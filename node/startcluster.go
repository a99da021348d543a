package node

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/squallhq/squall/cluster"
	"github.com/squallhq/squall/transport"
)

// startCluster starts the node-to-node transport and joins the cluster.
func (n *Node) startCluster() error {
	cl := &clustered{n: n, async: make(chan struct{}, 256)}
	cl.route.Store(&routes{owners: make([]string, n.cfg.Partitions), addrs: map[string]string{}})
	cl.lc = newLifecycle(cl)
	if err := cl.lc.m.register(n.reg); err != nil {
		return err
	}
	n.cl = cl
	tc := transport.DefaultConfig()
	tc.NodeID = n.cfg.NodeID
	tc.Addr = n.cfg.RemoteAddr
	tc.Logger = n.log
	tc.Registerer = n.reg
	if n.cfg.RemoteTLSCert != "" {
		var err error
		if tc.ServerTLS, tc.ClientTLS, err = remoteTLS(n.cfg.RemoteTLSCert, n.cfg.RemoteTLSKey, n.cfg.RemoteTLSCA); err != nil {
			return err
		}
	}
	cl.lc.start()
	tr, err := transport.Start(tc, cl)
	if err != nil {
		return err
	}
	cl.tr = tr
	var servers []string
	for _, s := range strings.Split(n.cfg.ZK, ",") {
		servers = append(servers, strings.TrimSpace(s))
	}
	coord, err := cluster.Start(cluster.Config{
		Servers: servers, Cluster: n.cfg.Cluster, SessionTimeout: n.cfg.ZKSessionTimeout,
		Self:       cluster.Member{ID: n.cfg.NodeID, RemoteAddr: tr.Addr(), HTTPAddr: n.HTTPAddr(), Version: Version},
		Partitions: n.cfg.Partitions, Digest: n.cfg.ZKDigest, Logger: n.log, Registerer: n.reg,
	}, cl)
	if err != nil {
		return fmt.Errorf("--zk %s: %w", n.cfg.ZK, err)
	}
	cl.coord = coord
	cl.lc.coordReady()
	return nil
}

// remoteTLS builds mutual-TLS configs from PEM files: each side presents
// its certificate and trusts peers signed by the CA.
func remoteTLS(certFile, keyFile, caFile string) (server, client *tls.Config, err error) {
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, nil, fmt.Errorf("--remote-tls-cert/--remote-tls-key: %w", err)
	}
	ca, err := os.ReadFile(caFile)
	if err != nil {
		return nil, nil, fmt.Errorf("--remote-tls-ca: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(ca) {
		return nil, nil, errors.New("--remote-tls-ca: no PEM certificate found")
	}
	server = &tls.Config{Certificates: []tls.Certificate{cert}, ClientCAs: pool,
		ClientAuth: tls.RequireAndVerifyClientCert, MinVersion: tls.VersionTLS12}
	client = &tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: pool, MinVersion: tls.VersionTLS12}
	return server, client, nil
}
