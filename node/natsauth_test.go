package node

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/squallhq/squall/internal/natstest"
	"github.com/squallhq/squall/internal/testutil"
)

// sysPing sends the $SYS requests a client account can reach when the
// server has a system account; it returns the first error other than "no
// responders", or an error naming a subject that was answered.
func sysPing(nc *nats.Conn) error {
	for _, subj := range []string{"$SYS.REQ.SERVER.PING", "$SYS.REQ.SERVER.PING.CONNZ",
		"$SYS.REQ.ACCOUNT.PING.CONNZ", "$SYS.REQ.ACCOUNT.PING.STATZ", "$SYS.REQ.USER.INFO"} {
		m, err := nc.Request(subj, nil, 5*time.Second)
		if err == nil {
			return fmt.Errorf("%s answered: %.200s", subj, m.Data)
		}
		if !errors.Is(err, nats.ErrNoResponders) {
			return fmt.Errorf("%s: %w", subj, err)
		}
	}
	return nil
}

// writeRules writes a rules file with one rule firing on a last value
// over 50, and returns its path.
func writeRules(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "rules.yaml")
	if err := os.WriteFile(p, []byte("rules:\n  - {name: hot, match: \"*\", aggregate: last, op: \">\", threshold: 50}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// roundTrip publishes an event that fires the rule over nc and waits for
// its alert on squall.alerts.> and for the key's state.
func roundTrip(t *testing.T, n *Node, nc *nats.Conn, key string) {
	t.Helper()
	sub, err := nc.SubscribeSync("squall.alerts.>")
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	ts := time.Now().UnixMilli()
	if err := nc.Publish("squall.events", []byte(`{"key":"`+key+`","ts":`+strconv.FormatInt(ts, 10)+`,"value":99}`)); err != nil {
		t.Fatal(err)
	}
	m, err := sub.NextMsg(15 * time.Second)
	if err != nil {
		t.Fatalf("no alert for %s: %v", key, err)
	}
	if m.Subject != "squall.alerts."+key {
		t.Fatalf("alert on %s", m.Subject)
	}
	st, err := n.Get(context.Background(), key)
	if err != nil || st.Window.Count != 1 {
		t.Fatalf("state of %s: %+v %v", key, st, err)
	}
}

// The embedded NATS server requires the node's NATS credentials: a raw
// client without them (or with wrong ones) cannot connect, so can neither
// publish events nor read alerts; with them it can, and the node ingests
// and publishes alerts through its own authenticated connections. $SYS is
// closed to everyone.
func TestEmbeddedNATSAuth(t *testing.T) {
	seed := filepath.Join(t.TempDir(), "user.nk")
	ukp, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	useed, _ := ukp.Seed()
	if err := os.WriteFile(seed, useed, 0o600); err != nil {
		t.Fatal(err)
	}
	upub, _ := ukp.PublicKey()
	other, _ := nkeys.CreateUser()
	opub, _ := other.PublicKey()

	for _, c := range []struct {
		name       string
		mod        func(*Config)
		good, bad  nats.Option
		alsoRefuse nats.Option // a credential the server must not take
	}{
		{"auth-token", func(c *Config) { c.AuthToken = "http-and-nats" },
			nats.Token("http-and-nats"), nats.Token("nope"), nil},
		{"nats-token", func(c *Config) { c.AuthToken, c.NATSToken = "http-only", "nats-only" },
			nats.Token("nats-only"), nats.Token("nope"), nats.Token("http-only")},
		{"nats-user", func(c *Config) { c.AuthToken, c.NATSUser, c.NATSPassword = "http-only", "squall", "pw" },
			nats.UserInfo("squall", "pw"), nats.UserInfo("squall", "nope"), nats.Token("http-only")},
		{"nats-nkey", func(c *Config) { c.NATSNKey = seed },
			nats.Nkey(upub, ukp.Sign), nats.Nkey(opub, other.Sign), nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			n := startNode(t, func(cfg *Config) { cfg.Rules = writeRules(t); c.mod(cfg) })
			for _, opts := range [][]nats.Option{nil, {c.bad}, {c.alsoRefuse}} {
				if len(opts) == 1 && opts[0] == nil {
					continue
				}
				nc, err := nats.Connect(n.NATSURL(), opts...)
				if err == nil {
					nc.Close()
					t.Fatalf("connected with %d wrong options", len(opts))
				}
				if !errors.Is(err, nats.ErrAuthorization) {
					t.Fatalf("refused with %v, want an authorization violation", err)
				}
			}
			nc, err := nats.Connect(n.NATSURL(), c.good)
			if err != nil {
				t.Fatal(err)
			}
			defer nc.Close()
			roundTrip(t, n, nc, "k-"+c.name)
			if err := sysPing(nc); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// Without any auth option the embedded server stays open on loopback, but
// $SYS answers no one.
func TestEmbeddedNATSOpenWithoutSys(t *testing.T) {
	n := startNode(t, func(cfg *Config) { cfg.Rules = writeRules(t) })
	nc, err := nats.Connect(n.NATSURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	roundTrip(t, n, nc, "open")
	if err := sysPing(nc); err != nil {
		t.Fatal(err)
	}
}

// An open embedded server on a non-loopback address is logged as a
// warning; on loopback, or with auth, it is not.
func TestEmbeddedNATSOpenWarning(t *testing.T) {
	for _, c := range []struct {
		addr, token string
		warn        bool
	}{
		{"0.0.0.0:0", "", true},
		{"127.0.0.1:0", "", false},
		{"0.0.0.0:0", "t", false},
	} {
		var logs testutil.LogBuffer
		cfg := DefaultConfig()
		cfg.DataDir = "" // memory only: answers once applied
		cfg.HTTPAddr, cfg.NATSAddr, cfg.Partitions, cfg.AuthToken = "127.0.0.1:0", c.addr, 2, c.token
		n, err := New(cfg, slog.New(slog.NewTextHandler(&logs, nil)))
		if err != nil {
			t.Fatal(err)
		}
		if err := n.Close(); err != nil {
			t.Fatal(err)
		}
		if got := strings.Contains(logs.String(), "non-loopback address without authentication"); got != c.warn {
			t.Errorf("%s token %q: warned %v\n%s", c.addr, c.token, got, logs.String())
		}
	}
}

// A node reaches an external NATS server over mutual TLS with a user and
// password, ingesting and publishing alerts through it; without its
// client certificate it cannot.
func TestExternalNATSTLSAndUser(t *testing.T) {
	cert, certFile, keyFile := testutil.SelfSignedTLS(t)
	pool := x509.NewCertPool()
	pool.AddCert(cert.Leaf)
	s := natstest.StartWith(t, &server.Options{
		TLS: true, TLSVerify: true, TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert},
			ClientCAs: pool, ClientAuth: tls.RequireAndVerifyClientCert, MinVersion: tls.VersionTLS12},
		Users: []*server.User{{Username: "squall", Password: "tls-pw"}},
	})
	url := strings.Replace(s.ClientURL(), "nats://", "tls://", 1)
	n := startNode(t, func(cfg *Config) {
		cfg.NATSURL, cfg.Rules = url, writeRules(t)
		cfg.NATSTLSCA, cfg.NATSTLSCert, cfg.NATSTLSKey = certFile, certFile, keyFile
		cfg.NATSUser, cfg.NATSPassword = "squall", "tls-pw"
	})
	nc, err := nats.Connect(url, nats.RootCAs(certFile), nats.ClientCert(certFile, keyFile), nats.UserInfo("squall", "tls-pw"))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	roundTrip(t, n, nc, "tls")

	// Without the client certificate, or the password, the node does not start.
	for _, mod := range []func(*Config){
		func(c *Config) { c.NATSTLSCert, c.NATSTLSKey = "", "" },
		func(c *Config) { c.NATSUser, c.NATSPassword = "", "" },
	} {
		cfg := DefaultConfig()
		cfg.DataDir = "" // memory only: answers once applied
		cfg.HTTPAddr, cfg.Partitions, cfg.NATSURL = "127.0.0.1:0", 2, url
		cfg.NATSTLSCA, cfg.NATSTLSCert, cfg.NATSTLSKey = certFile, certFile, keyFile
		cfg.NATSUser, cfg.NATSPassword = "squall", "tls-pw"
		mod(&cfg)
		if n, err := New(cfg, slog.New(slog.NewTextHandler(io.Discard, nil))); err == nil {
			n.Close()
			t.Fatal("node connected without its client certificate or password")
		}
	}
}

// A node authenticates to an external server in operator (JWT) mode with
// a credentials file.
func TestExternalNATSCreds(t *testing.T) {
	okp, _ := nkeys.CreateOperator()
	opub, _ := okp.PublicKey()
	oc := jwt.NewOperatorClaims(opub)
	akp, _ := nkeys.CreateAccount()
	apub, _ := akp.PublicKey()
	ajwt, err := jwt.NewAccountClaims(apub).Encode(okp)
	if err != nil {
		t.Fatal(err)
	}
	ukp, _ := nkeys.CreateUser()
	upub, _ := ukp.PublicKey()
	uc := jwt.NewUserClaims(upub)
	uc.IssuerAccount = apub
	ujwt, err := uc.Encode(akp)
	if err != nil {
		t.Fatal(err)
	}
	useed, _ := ukp.Seed()
	creds, err := jwt.FormatUserConfig(ujwt, useed)
	if err != nil {
		t.Fatal(err)
	}
	credsFile := filepath.Join(t.TempDir(), "squall.creds")
	if err := os.WriteFile(credsFile, creds, 0o600); err != nil {
		t.Fatal(err)
	}
	res := &server.MemAccResolver{}
	s := natstest.StartWith(t, &server.Options{TrustedOperators: []*jwt.OperatorClaims{oc},
		AccountResolver: res, NoSystemAccount: true})
	if err := res.Store(apub, ajwt); err != nil {
		t.Fatal(err)
	}
	if nc, err := nats.Connect(s.ClientURL()); err == nil {
		nc.Close()
		t.Fatal("anonymous client connected to the operator-mode server")
	}
	n := startNode(t, func(cfg *Config) { cfg.NATSURL, cfg.NATSCreds, cfg.Rules = s.ClientURL(), credsFile, writeRules(t) })
	nc, err := nats.Connect(s.ClientURL(), nats.UserCredentials(credsFile))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	roundTrip(t, n, nc, "creds")
}
