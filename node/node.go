// Package node assembles a Squall node: key actors, HTTP API, NATS ingest
// (with an embedded NATS server when none is given) and metrics.
package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/squallhq/squall/actors"
	"github.com/squallhq/squall/api"
	"github.com/squallhq/squall/httpapi"
	"github.com/squallhq/squall/ingest"
)

// Node is one running Squall node. Its methods are safe for concurrent use.
type Node struct {
	cfg     Config
	log     *slog.Logger
	reg     *prometheus.Registry
	engine  *actors.Engine
	in      *ingest.Ingester
	api     *httpapi.Server
	srv     *http.Server
	ln      net.Listener
	nsrv    *server.Server // embedded NATS, nil with --nats-url
	nc      *nats.Conn
	cl      *clustered    // nil standalone
	logs    *logSide      // nil without a log (Kafka or JetStream)
	data    *dataDir      // nil without a durable log of its own
	alerts  *alertSide    // nil without --rules
	ncDone  chan struct{} // closed when nc is closed
	natsURL string
	// natsAuth are the authentication and TLS options of every NATS
	// connection of the node.
	natsAuth []nats.Option

	replays chan struct{} // one token per replay running, see maxReplays

	serveErr chan error
	once     sync.Once
	closeErr error
}

// New starts a node: it binds its listeners, starts NATS (embedded unless
// cfg.NATSURL is set) and the key actors, and starts serving. Close stops it.
func New(cfg Config, log *slog.Logger) (_ *Node, err error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	n := &Node{cfg: cfg, log: log, reg: prometheus.NewRegistry(), serveErr: make(chan error, 1), ncDone: make(chan struct{}),
		replays: make(chan struct{}, maxReplays)}
	defer func() {
		if err != nil {
			n.teardown()
			err = cfg.scrubErr(err) // no secret in errors, such as a URL's password
		}
	}()
	n.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	if n.ln, err = net.Listen("tcp", cfg.HTTPAddr); err != nil {
		return nil, fmt.Errorf("--http-addr %s: %w", cfg.HTTPAddr, err)
	}
	if n.cfg.NodeID == "" {
		host, _ := os.Hostname()
		n.cfg.NodeID = host + ":" + strconv.Itoa(n.ln.Addr().(*net.TCPAddr).Port)
	}
	if cfg.durable() {
		if n.data, err = openDataDir(cfg.DataDir, cfg.Cluster, cfg.Partitions); err != nil {
			return nil, err
		}
	}
	if err = n.startNATS(); err != nil {
		return nil, err
	}
	if cfg.Rules != "" {
		if err = n.startAlerts(); err != nil {
			return nil, err
		}
	}

	if cfg.KafkaBrokers != "" {
		if err = n.startKafka(); err != nil {
			return nil, err
		}
	}
	if n.data != nil || cfg.JetStreamReplicas > 0 {
		if err = n.startJetStream(); err != nil {
			return nil, err
		}
	}
	ec := n.cfg.engineConfig()
	ec.Logger = log
	ec.Registerer = n.reg
	if n.logs != nil && cfg.ZK == "" {
		ec.OnServe = n.logs.onServe
	}
	if cfg.ZK != "" {
		ec.AwaitHandoff = 0 // each partition's lifecycle ends its wait
	}
	if n.alerts != nil {
		ec.Handler, ec.Sink = n.alerts.h, n.alerts.sink
	}
	if n.engine, err = actors.New(ec); err != nil {
		return nil, err
	}
	if n.logs != nil {
		close(n.logs.ready)
	}
	var sub ingest.Submitter = n.engine
	if cfg.ZK != "" {
		if err = n.startCluster(); err != nil {
			return nil, err
		}
		sub = n.cl
	}
	if n.logs != nil {
		sub = n.logs.prod // log first: answered once Kafka or JetStream has it
	}
	if n.in, err = ingest.New(sub, n.reg, nil, ingest.WithMaxFuture(cfg.MaxFuture)); err != nil {
		return nil, err
	}
	nc := ingest.DefaultNATSConfig()
	nc.Subject = cfg.NATSSubject
	if _, err = ingest.SubscribeNATS(n.nc, nc, n.in, log); err != nil {
		return nil, err
	}

	hc := httpapi.DefaultConfig()
	hc.AuthToken = cfg.AuthToken
	hc.MaxBodyBytes = cfg.MaxBodyBytes
	hc.Pprof = cfg.Pprof
	hc.Redact = n.cfg.redactArgs
	httpapi.WarnExposed(log, hc, n.ln.Addr())
	n.api = httpapi.New(hc, n, n.in, n.reg, log)
	n.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "squall_ready", Help: "1 while the node is ready (GET /readyz answers 200), else 0.",
	}, func() float64 {
		if ok, _ := n.api.Ready(); ok {
			return 1
		}
		return 0
	}))
	n.srv = httpapi.NewHTTPServer(hc, n.api.Handler(), log)
	go func() { n.serveErr <- n.srv.Serve(n.ln) }()
	if n.cl != nil {
		n.api.SetReadiness(n.cl.ready)
	} else if n.logs != nil {
		n.api.SetReadiness(n.logReady)
	}
	n.api.SetReady(true)
	remote := ""
	if n.cl != nil {
		remote = n.cl.tr.Addr()
	}
	log.Info("squall node started", "node", n.cfg.NodeID, "http", n.HTTPAddr(), "nats", cfg.scrub(n.natsURL),
		"remote", remote, "zk", cfg.ZK, "kafka", cfg.KafkaBrokers, "jetstream_replicas", cfg.JetStreamReplicas, "embedded_nats", n.nsrv != nil,
		"partitions", n.cfg.Partitions, "version", Version)
	return n, nil
}

func (n *Node) startNATS() error {
	var opts []nats.Option
	var err error
	if n.natsAuth, err = n.cfg.natsAuthOptions(); err != nil {
		return err
	}
	url := n.cfg.NATSURL
	if url == "" {
		host, portStr, _ := net.SplitHostPort(n.cfg.NATSAddr) // validated
		port, _ := strconv.Atoi(portStr)
		// nats-server only logs a taken port; probe it to fail clearly.
		if port != 0 {
			probe, err := net.Listen("tcp", n.cfg.NATSAddr)
			if err != nil {
				return fmt.Errorf("--nats-addr %s: %w", n.cfg.NATSAddr, err)
			}
			probe.Close()
		} else {
			port = server.RANDOM_PORT
		}
		so, err := n.cfg.embeddedNATSOptions(host, port)
		if err != nil {
			return err
		}
		if n.data != nil {
			n.data.jetStreamOptions(so)
		}
		ns, err := server.NewServer(so)
		if err != nil {
			return fmt.Errorf("--nats-addr %s: %w", n.cfg.NATSAddr, err)
		}
		if n.cfg.embeddedNATSOpen() && !isLoopback(host) {
			n.log.Warn("the embedded NATS server listens on a non-loopback address without authentication: "+
				"anyone reaching it can publish events and read alerts; set --auth-token or --nats-token",
				"nats_addr", n.cfg.NATSAddr)
		}
		n.nsrv = ns
		ns.Start()
		if !ns.ReadyForConnections(10 * time.Second) {
			return fmt.Errorf("--nats-addr %s: embedded NATS server did not start", n.cfg.NATSAddr)
		}
		url = ns.ClientURL()
	}
	n.natsURL = url
	opts = append(opts, n.natsOptions("")...)
	opts = append(opts, nats.ClosedHandler(func(*nats.Conn) { close(n.ncDone) }),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			if errors.Is(err, nats.ErrSlowConsumer) {
				// Only subscriptions report it, and they start after n.in is set.
				n.in.CountBodyError(ingest.SourceNATS, "slow_consumer")
				return
			}
			n.log.Warn("nats", "err", err)
		}))
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		return fmt.Errorf("--nats-url %s: %w", url, err)
	}
	n.nc = nc
	return nil
}

// natsOptions are the options of every NATS connection of the node; use
// names a second connection ("alerts").
func (n *Node) natsOptions(use string) []nats.Option {
	name := "squall-node " + n.cfg.NodeID
	if use != "" {
		name += " " + use
	}
	opts := []nats.Option{nats.Name(name), nats.MaxReconnects(-1)}
	opts = append(opts, n.natsAuth...)
	if n.nsrv != nil {
		opts = append(opts, nats.InProcessServer(n.nsrv))
	}
	return opts
}

// HTTPAddr returns the bound HTTP address.
func (n *Node) HTTPAddr() string { return n.ln.Addr().String() }

// NATSURL returns the URL of the NATS server the node uses.
func (n *Node) NATSURL() string { return n.natsURL }

// ID returns the node id.
func (n *Node) ID() string { return n.cfg.NodeID }

// Engine returns the node's key-actor engine.
func (n *Node) Engine() *actors.Engine { return n.engine }

// Run blocks until ctx is done or the HTTP server fails, then closes the
// node.
func (n *Node) Run(ctx context.Context) error {
	var err error
	select {
	case <-ctx.Done():
	case err = <-n.serveErr:
		err = fmt.Errorf("http server: %w", err)
	}
	return errors.Join(err, n.Close())
}

// Close shuts the node down gracefully within ShutdownTimeout: it stops
// intake (HTTP, NATS), lets in-flight requests and messages finish, waits
// for their events to be applied, then stops everything. Safe to call twice.
func (n *Node) Close() error {
	n.once.Do(func() {
		start := time.Now()
		n.log.Info("squall node stopping", "node", n.cfg.NodeID)
		ctx, cancel := context.WithTimeout(context.Background(), n.cfg.ShutdownTimeout)
		defer cancel()
		n.api.SetReady(false)
		if n.alerts != nil {
			// Key actors blocked on full alert outputs give up at the deadline.
			context.AfterFunc(ctx, n.alerts.cancel)
		}
		var errs []error
		if err := n.srv.Shutdown(ctx); err != nil {
			errs = append(errs, fmt.Errorf("http shutdown: %w", err))
		}
		if err := n.nc.Drain(); err != nil {
			errs = append(errs, fmt.Errorf("nats drain: %w", err))
		}
		select {
		case <-n.ncDone:
		case <-ctx.Done():
			errs = append(errs, errors.New("nats drain: timed out"))
		}
		if n.cl != nil {
			n.cl.asyncs.Wait()
			if err := n.cl.leave(ctx); err != nil {
				errs = append(errs, err)
			}
		}
		n.teardown()
		n.closeErr = errors.Join(errs...)
		n.log.Info("squall node stopped", "node", n.cfg.NodeID, "took", time.Since(start).Round(time.Millisecond))
	})
	return n.closeErr
}

// teardown releases whatever New started, in reverse order.
func (n *Node) teardown() {
	if n.srv != nil {
		_ = n.srv.Close()
	} else if n.ln != nil {
		_ = n.ln.Close()
	}
	if n.nc != nil {
		n.nc.Close()
	}
	if n.cl != nil {
		if n.cl.coord != nil {
			n.cl.coord.Close()
		}
		n.cl.asyncs.Wait()
		n.cl.lc.close()
		if n.cl.tr != nil {
			n.cl.tr.Close()
		}
	}
	if n.logs != nil {
		n.logs.close() // commits what each partition applied
	}
	if n.engine != nil {
		_ = n.engine.Close()
	}
	if n.alerts != nil {
		ctx, cancel := context.WithTimeout(context.Background(), n.cfg.ShutdownTimeout/2)
		n.alerts.close(ctx)
		cancel()
	}
	if n.nsrv != nil {
		n.nsrv.Shutdown()
		n.nsrv.WaitForShutdown()
	}
	n.data.close()
}

// Get implements httpapi.Backend.
func (n *Node) Get(ctx context.Context, key string) (*api.KeyState, error) {
	if n.cl != nil {
		return n.cl.get(ctx, key)
	}
	return n.engine.Get(ctx, key)
}

// Events implements httpapi.Backend: the events key's actor keeps, from
// its owner in a cluster.
func (n *Node) Events(ctx context.Context, key string) (*api.KeyEvents, error) {
	if n.cl != nil {
		return n.cl.events(ctx, key)
	}
	return n.engine.Events(ctx, key)
}

// List implements httpapi.Backend.
func (n *Node) List(ctx context.Context, prefix, after string, limit int, cluster bool) (*api.KeyList, error) {
	if n.cl != nil && cluster {
		return n.cl.list(ctx, prefix, after, limit)
	}
	return n.engine.List(ctx, prefix, after, limit)
}

// Cluster implements httpapi.Backend: standalone, the node is the only
// member, its own leader, and owns every partition.
func (n *Node) Cluster(context.Context) (*api.Cluster, error) {
	if n.cl != nil {
		doc := n.cl.describe()
		if n.logs != nil {
			doc.Sources = n.logs.status()
		}
		return doc, nil
	}
	parts := make([]int32, n.cfg.Partitions)
	states := make([]api.PartitionState, n.cfg.Partitions)
	assign := make(map[string]string, n.cfg.Partitions)
	for i := range parts {
		parts[i] = int32(i)
		states[i] = api.PartitionState{Partition: int32(i), State: "serving", Token: "0/0"}
		assign[strconv.Itoa(i)] = n.cfg.NodeID
	}
	return &api.Cluster{
		Cluster: "standalone", Self: n.cfg.NodeID, Leader: n.cfg.NodeID, Epoch: 0,
		PartitionCount: n.cfg.Partitions, Serving: parts, Partitions: states, Connected: true, Ready: true,
		Members: []api.Member{{ID: n.cfg.NodeID, HTTPAddr: n.HTTPAddr(), Version: Version,
			Partitions: parts}},
		Assignment: assign,
		Peers:      map[string]api.PeerStats{},
		Sources:    n.logStatus(),
	}, nil
}
