package node

import (
	"flag"
	"fmt"
	"net"
	"net/url"
	"os"
	"strings"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"
)

// bindNATSAuth declares the NATS authentication and TLS flags.
func bindNATSAuth(fs *flag.FlagSet, c *Config, sec map[string]secret) {
	secretVar(fs, sec["nats-token"], "token for NATS (the embedded server then requires it; default for it: --auth-token)")
	fs.StringVar(&c.NATSUser, "nats-user", c.NATSUser, "NATS user (with --nats-password; the embedded server then requires them)")
	secretVar(fs, sec["nats-password"], "NATS password of --nats-user")
	fs.StringVar(&c.NATSNKey, "nats-nkey", c.NATSNKey, "file holding a NATS nkey seed (the embedded server then accepts only its public key)")
	fs.StringVar(&c.NATSCreds, "nats-creds", c.NATSCreds, "NATS credentials file (JWT and seed) for --nats-url")
	fs.StringVar(&c.NATSTLSCA, "nats-tls-ca", c.NATSTLSCA, "PEM CA file for TLS to --nats-url (default: system roots)")
	fs.StringVar(&c.NATSTLSCert, "nats-tls-cert", c.NATSTLSCert, "PEM client certificate for TLS to --nats-url")
	fs.StringVar(&c.NATSTLSKey, "nats-tls-key", c.NATSTLSKey, "PEM client key for TLS to --nats-url")
}

// validateNATSAuth reports inconsistent NATS authentication options.
func (c *Config) validateNATSAuth(bad func(flag, format string, a ...any)) {
	if btoi(c.NATSToken != "")+btoi(c.NATSUser != "")+btoi(c.NATSNKey != "")+btoi(c.NATSCreds != "") > 1 {
		bad("nats-token", "give at most one of --nats-token, --nats-user, --nats-nkey and --nats-creds")
	}
	if (c.NATSUser == "") != (c.NATSPassword == "") {
		bad("nats-user", "--nats-user and --nats-password go together")
	}
	if (c.NATSTLSCert == "") != (c.NATSTLSKey == "") {
		bad("nats-tls-cert", "--nats-tls-cert and --nats-tls-key go together")
	}
	if c.NATSURL == "" {
		for flag, v := range map[string]string{"nats-creds": c.NATSCreds, "nats-tls-ca": c.NATSTLSCA,
			"nats-tls-cert": c.NATSTLSCert, "nats-tls-key": c.NATSTLSKey} {
			if v != "" {
				bad(flag, "needs --nats-url (the embedded server has neither TLS nor JWT accounts)")
			}
		}
	}
}

// embeddedNATSToken is the token the embedded server requires: NATSToken,
// else AuthToken unless a user or nkey is configured.
func (c *Config) embeddedNATSToken() string {
	if c.NATSToken != "" || c.NATSUser != "" || c.NATSNKey != "" {
		return c.NATSToken
	}
	return c.AuthToken
}

// natsAuthOptions are the authentication and TLS options of every NATS
// connection of the node.
func (c *Config) natsAuthOptions() ([]nats.Option, error) {
	var opts []nats.Option
	token := c.NATSToken
	if c.NATSURL == "" {
		token = c.embeddedNATSToken()
	}
	if token != "" {
		opts = append(opts, nats.Token(token))
	}
	if c.NATSUser != "" {
		opts = append(opts, nats.UserInfo(c.NATSUser, c.NATSPassword))
	}
	if c.NATSNKey != "" {
		o, err := nats.NkeyOptionFromSeed(c.NATSNKey)
		if err != nil {
			return nil, fmt.Errorf("--nats-nkey: %w", err)
		}
		opts = append(opts, o)
	}
	if c.NATSCreds != "" {
		if _, err := os.Stat(c.NATSCreds); err != nil {
			return nil, fmt.Errorf("--nats-creds: %w", err)
		}
		opts = append(opts, nats.UserCredentials(c.NATSCreds))
	}
	if c.NATSTLSCA != "" {
		opts = append(opts, nats.RootCAs(c.NATSTLSCA))
	}
	if c.NATSTLSCert != "" {
		opts = append(opts, nats.ClientCert(c.NATSTLSCert, c.NATSTLSKey))
	}
	return opts, nil
}

// embeddedNATSOptions are the options of the embedded NATS server. It has
// no system account, so no client can reach $SYS, and it requires the
// node's NATS credentials when there are any.
func (c *Config) embeddedNATSOptions(host string, port int) (*server.Options, error) {
	o := &server.Options{Host: host, Port: port, NoSigs: true, NoLog: true, MaxPayload: 8 << 20,
		NoSystemAccount: true}
	switch {
	case c.NATSNKey != "":
		b, err := os.ReadFile(c.NATSNKey)
		if err != nil {
			return nil, fmt.Errorf("--nats-nkey: %w", err)
		}
		kp, err := nkeys.ParseDecoratedNKey(b)
		if err != nil {
			return nil, fmt.Errorf("--nats-nkey %s: %w", c.NATSNKey, err)
		}
		pub, err := kp.PublicKey()
		kp.Wipe()
		if err != nil {
			return nil, fmt.Errorf("--nats-nkey %s: %w", c.NATSNKey, err)
		}
		o.Nkeys = []*server.NkeyUser{{Nkey: pub}}
	case c.NATSUser != "":
		o.Username, o.Password = c.NATSUser, c.NATSPassword
	default:
		o.Authorization = c.embeddedNATSToken()
	}
	return o, nil
}

// embeddedNATSOpen reports whether the embedded server takes anonymous
// clients.
func (c *Config) embeddedNATSOpen() bool {
	return c.NATSNKey == "" && c.NATSUser == "" && c.embeddedNATSToken() == ""
}

// isLoopback reports whether a listen host only takes local connections.
func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

const redacted = "xxxxx"

// secretValues are the secrets of c that must never be printed: every
// secret option, the password part of the ZooKeeper digest, and the user
// information of NATSURL (a password, or a lone user name: a token).
func (c *Config) secretValues() []string {
	var out []string
	for _, s := range c.secrets() {
		if *s.value != "" {
			out = append(out, *s.value)
		}
	}
	if _, pw, ok := strings.Cut(c.ZKDigest, ":"); ok && pw != "" {
		out = append(out, pw)
	}
	for _, u := range strings.Split(c.NATSURL, ",") {
		_, rest, ok := strings.Cut(u, "://")
		if !ok {
			rest = u
		}
		at := strings.LastIndex(rest, "@")
		if at < 0 {
			continue
		}
		info := rest[:at]
		if _, pw, ok := strings.Cut(info, ":"); ok {
			info = pw
		}
		if info == "" {
			continue
		}
		out = append(out, info)
		if dec, err := url.PathUnescape(info); err == nil && dec != info {
			out = append(out, dec)
		}
	}
	return out
}

// scrub replaces every secret of c in s.
func (c *Config) scrub(s string) string {
	for _, v := range c.secretValues() {
		s = strings.ReplaceAll(s, v, redacted)
	}
	return s
}

// redactArgs returns a copy of a command line with the value of every
// secret flag (-flag V, --flag V, --flag=V) replaced, whatever it is, and
// every secret of c scrubbed from the other arguments (a NATS URL's
// password).
func (c *Config) redactArgs(args []string) []string {
	secret := map[string]bool{}
	for _, s := range c.secrets() {
		secret[s.flag] = true
	}
	out := make([]string, len(args))
	next := false // the previous argument was a secret flag without =value
	for i, a := range args {
		if next {
			out[i], next = redacted, false
			continue
		}
		name, value, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
		switch {
		case !strings.HasPrefix(a, "-") || !secret[name]:
			out[i] = redactUserinfo(c.scrub(a))
		case hasValue:
			out[i] = a[:len(a)-len(value)] + redacted
		default:
			out[i], next = a, true
		}
	}
	return out
}

// redactUserinfo replaces the user information (user:password@, or a
// token@) of every URL in a comma-separated list.
func redactUserinfo(a string) string {
	urls := strings.Split(a, ",")
	for i, u := range urls {
		scheme, rest, ok := strings.Cut(u, "://")
		if !ok {
			continue
		}
		if at := strings.LastIndex(rest, "@"); at >= 0 {
			urls[i] = scheme + "://" + redacted + rest[at:]
		}
	}
	return strings.Join(urls, ",")
}

// scrubbedError is an error whose message has the node's secrets
// replaced; it unwraps to the original.
type scrubbedError struct {
	msg string
	err error
}

func (e *scrubbedError) Error() string { return e.msg }
func (e *scrubbedError) Unwrap() error { return e.err }

// scrubErr returns err with the secrets of c replaced in its message.
func (c *Config) scrubErr(err error) error {
	if err == nil {
		return nil
	}
	if msg := c.scrub(err.Error()); msg != err.Error() {
		return &scrubbedError{msg: msg, err: err}
	}
	return err
}
