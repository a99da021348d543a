package output

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
)

// DefaultNATSFlushTimeout is the NATS sink's flush timeout when
// NewNATSSink is given none.
const DefaultNATSFlushTimeout = 5 * time.Second

// natsSink publishes alerts with core NATS.
type natsSink struct {
	nc           *nats.Conn
	prefix       string // subject prefix and its trailing '.'
	flushTimeout time.Duration
}

// NewNATSSink returns a Sink named "nats" that publishes each alert's
// payload to subjectPrefix + "." + SubjectToken(alert.Key) on nc, then
// waits for a flush round trip to the server (at most flushTimeout; <= 0
// means DefaultNATSFlushTimeout). nc stays the caller's: the sink never
// closes it.
//
// A batch fails, and is published again later, when nc is not connected
// (it would otherwise sit in nats.go's reconnect buffer), when a publish or
// the flush fails, and when nc reconnected while the batch was being
// published (messages written to the old connection may be lost even though
// the flush on the new one succeeds). A successful Publish means the server
// received every message; as always with core NATS, only subscribers
// present at that moment get them.
func NewNATSSink(nc *nats.Conn, subjectPrefix string, flushTimeout time.Duration) Sink {
	if flushTimeout <= 0 {
		flushTimeout = DefaultNATSFlushTimeout
	}
	return &natsSink{nc: nc, prefix: subjectPrefix + ".", flushTimeout: flushTimeout}
}

func (s *natsSink) Name() string { return "nats" }

func (s *natsSink) Publish(ctx context.Context, batch []Alert) error {
	// Reconnects is read first: a reconnect anywhere from here to the end
	// of the flush changes it, and the batch is then retried.
	reconnects := s.nc.Stats().Reconnects
	if st := s.nc.Status(); st != nats.CONNECTED {
		return fmt.Errorf("%w: nats connection %s", ErrNotConnected, st)
	}
	for i := range batch {
		a := &batch[i]
		if err := s.nc.Publish(s.prefix+SubjectToken(a.Key), a.Payload); err != nil {
			return fmt.Errorf("output: nats publish alert %s: %w", a.ID, err)
		}
	}
	fctx, cancel := context.WithTimeout(ctx, s.flushTimeout)
	defer cancel()
	if err := s.nc.FlushWithContext(fctx); err != nil {
		return fmt.Errorf("output: nats flush: %w", err)
	}
	if s.nc.Stats().Reconnects != reconnects {
		return fmt.Errorf("%w: nats reconnected during publish", ErrNotConnected)
	}
	return nil
}

// SubjectToken returns key escaped for use as the tail of a NATS subject.
// Keys may hold any bytes; the result is a valid subject tail that is
// unchanged for ordinary keys ("web-1.cpu" stays "web-1.cpu", so '.'
// keeps its meaning as the subject hierarchy and wildcards such as
// "squall.alerts.web-1.*" work) and is distinct for distinct keys
// (the escaping is reversible).
//
// The escape is '%' followed by two upper-case hex digits of the byte, as
// in URLs. Escaped are:
//
//   - '%' itself (so that the escaping is reversible);
//   - space, every other ASCII control byte (0x00-0x1F: tab, CR, LF, ...)
//     and DEL (0x7F), which NATS forbids or which break its protocol line;
//   - '*' and '>', the NATS wildcards, wherever they appear;
//   - every '.' that would make an empty token: a leading '.', a trailing
//     '.', and a '.' right after another '.' ("a..b" becomes "a.%2Eb").
//
// Other bytes, including UTF-8 beyond ASCII, are kept. The empty key, which
// Squall does not produce, becomes "%" (no other key does). SubjectToken is
// safe for concurrent use and allocates only when it escapes something.
func SubjectToken(key string) string {
	if key == "" {
		return "%"
	}
	i := 0
	for ; i < len(key); i++ {
		if escapeAt(key, i) {
			break
		}
	}
	if i == len(key) {
		return key
	}
	const hex = "0123456789ABCDEF"
	b := make([]byte, 0, len(key)+8)
	b = append(b, key[:i]...)
	for ; i < len(key); i++ {
		c := key[i]
		if escapeAt(key, i) {
			b = append(b, '%', hex[c>>4], hex[c&0xF])
		} else {
			b = append(b, c)
		}
	}
	return string(b)
}

// escapeAt reports whether SubjectToken escapes key[i].
func escapeAt(key string, i int) bool {
	switch c := key[i]; {
	case c <= ' ', c == 0x7F, c == '%', c == '*', c == '>':
		return true
	case c == '.':
		return i == 0 || i == len(key)-1 || key[i-1] == '.'
	}
	return false
}
