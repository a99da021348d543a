package transport

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Defaults of Config.
const (
	// DefaultAddr is the default listen address: loopback, a free port.
	DefaultAddr = "127.0.0.1:0"
	// DefaultRequestTimeout bounds one request to a peer.
	DefaultRequestTimeout = 10 * time.Second
	// DefaultMaxMessageBytes is the default gRPC message limit.
	DefaultMaxMessageBytes = 16 << 20
	// DefaultMaxInflight is the default bound on requests served at once.
	DefaultMaxInflight = 256
	// MinMaxMessageBytes is the smallest MaxMessageBytes accepted.
	MinMaxMessageBytes = 1 << 20
)

// Config configures a Transport. Build it with DefaultConfig and change
// what differs; Start validates it.
type Config struct {
	// NodeID is this node's id, sent with every request so that peers can
	// attribute traffic to it. Required.
	NodeID string
	// Addr is the host:port the remote server listens on (--remote-addr).
	// Port 0 picks a free port. Default "127.0.0.1:0"; "" means the default.
	Addr string
	// AdvertisedAddr is the host:port peers dial to reach this node.
	// Default "": the bound address. Required when Addr's host is
	// unspecified ("0.0.0.0:7000", ":7000"). Peers must dial exactly this
	// string: protoactor tells local from remote actors by comparing
	// addresses as strings, so "localhost:7000" does not reach a node that
	// advertises "127.0.0.1:7000".
	AdvertisedAddr string
	// ServerTLS, when set, makes the server accept TLS only. If it has
	// ClientCAs and ClientAuth is tls.NoClientCert, ClientAuth is raised to
	// tls.RequireAndVerifyClientCert: peers must present a certificate
	// signed by one of those CAs. Default nil: plaintext.
	ServerTLS *tls.Config
	// ClientTLS, when set, is used to dial peers over TLS. Its ServerName
	// defaults (in gRPC) to the host of the peer's address. Default nil:
	// plaintext.
	ClientTLS *tls.Config
	// RequestTimeout bounds each request to a peer (each chunk of a Forward
	// or Handoff), and each request a peer makes of the Handler. Default
	// 10s.
	RequestTimeout time.Duration
	// MaxMessageBytes is the gRPC send and receive limit, in bytes, on both
	// sides of a connection. protoactor packs up to 16 messages into one
	// gRPC message, so a single request or response carries at most about
	// MaxMessageBytes/16 bytes (Forward and Handoff split larger ones).
	// Default 16 MiB; at least 1 MiB.
	MaxMessageBytes int
	// MaxInflight bounds the peers' requests served at once; beyond it a
	// request is refused and the caller gets ErrBusy. Default 256.
	MaxInflight int
	// Logger receives the transport's logs and protoactor's warnings and
	// errors. Default slog.Default().
	Logger *slog.Logger
	// Registerer, when set, registers the transport's metrics:
	// squall_routed_events_total{peer,direction},
	// squall_routed_bytes_total{peer,direction} and
	// squall_transport_requests_total{peer,kind,result}. Close unregisters
	// them. Default nil: no metrics.
	Registerer prometheus.Registerer

	// dial, when set, replaces the TCP dialer (tests count wire bytes).
	dial func(ctx context.Context, addr string) (net.Conn, error)
}

// DefaultConfig returns a Config with every default set; NodeID is left
// empty.
func DefaultConfig() Config {
	return Config{
		Addr:            DefaultAddr,
		RequestTimeout:  DefaultRequestTimeout,
		MaxMessageBytes: DefaultMaxMessageBytes,
		MaxInflight:     DefaultMaxInflight,
	}
}

// Validate fills the zero fields that have defaults and reports every
// invalid field.
func (c *Config) Validate() error {
	if c.Addr == "" {
		c.Addr = DefaultAddr
	}
	if c.RequestTimeout == 0 {
		c.RequestTimeout = DefaultRequestTimeout
	}
	if c.MaxMessageBytes == 0 {
		c.MaxMessageBytes = DefaultMaxMessageBytes
	}
	if c.MaxInflight == 0 {
		c.MaxInflight = DefaultMaxInflight
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	var errs []error
	if c.NodeID == "" {
		errs = append(errs, errors.New("node id: required"))
	}
	host, port, err := net.SplitHostPort(c.Addr)
	if err == nil {
		_, err = strconv.ParseUint(port, 10, 16)
	}
	if err != nil {
		errs = append(errs, fmt.Errorf("--remote-addr %q: want host:port", c.Addr))
	} else if ip := net.ParseIP(host); (host == "" || ip != nil && ip.IsUnspecified()) && c.AdvertisedAddr == "" {
		errs = append(errs, fmt.Errorf("--remote-addr %q listens on all interfaces: an advertised address is required", c.Addr))
	}
	if c.AdvertisedAddr != "" {
		h, p, err := net.SplitHostPort(c.AdvertisedAddr)
		if err != nil || h == "" || p == "0" {
			errs = append(errs, fmt.Errorf("advertised address %q: want host:port with a fixed port", c.AdvertisedAddr))
		}
	}
	if c.RequestTimeout < 0 {
		errs = append(errs, fmt.Errorf("request timeout %s: must be positive", c.RequestTimeout))
	}
	if c.MaxMessageBytes < MinMaxMessageBytes {
		errs = append(errs, fmt.Errorf("max message bytes %d: must be at least %d", c.MaxMessageBytes, MinMaxMessageBytes))
	}
	if c.MaxInflight < 0 {
		errs = append(errs, fmt.Errorf("max inflight %d: must be positive", c.MaxInflight))
	}
	if len(errs) > 0 {
		return fmt.Errorf("transport: %w", errors.Join(errs...))
	}
	return nil
}
