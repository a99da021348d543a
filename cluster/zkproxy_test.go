package cluster

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"testing"
	"time"
)

// zkProxy is a TCP proxy in front of a ZooKeeper server, for tests. It
// learns the session id and password of the sessions established through
// it (from the server's connect responses), can cut its connections, and
// can hold new ones until it is opened again.
type zkProxy struct {
	ln       net.Listener
	upstream string

	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	gate   chan struct{} // closed while new connections pass
	sid    int64
	passwd []byte
	closed bool

	wg sync.WaitGroup
}

// startZKProxy starts a proxy to upstream, stopped by t.Cleanup.
func startZKProxy(t *testing.T, upstream string) *zkProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &zkProxy{ln: ln, upstream: upstream, conns: map[net.Conn]struct{}{}, gate: make(chan struct{})}
	close(p.gate)
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(p.close)
	return p
}

// Addr is the proxy's address.
func (p *zkProxy) Addr() string { return p.ln.Addr().String() }

// Session returns the newest session established through the proxy.
func (p *zkProxy) Session() (int64, []byte) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.sid, p.passwd
}

// Hold makes new connections wait (accepted, but not forwarded) until Open.
func (p *zkProxy) Hold() {
	p.mu.Lock()
	p.gate = make(chan struct{})
	p.mu.Unlock()
}

// Open lets held and new connections through.
func (p *zkProxy) Open() {
	p.mu.Lock()
	select {
	case <-p.gate:
	default:
		close(p.gate)
	}
	p.mu.Unlock()
}

// Cut closes every forwarded connection: the client sees its connection
// drop.
func (p *zkProxy) Cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for c := range p.conns {
		c.Close()
	}
}

func (p *zkProxy) close() {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	p.ln.Close()
	p.Open()
	p.Cut()
	p.wg.Wait()
}

// track registers c, or closes it and reports false once the proxy closed.
func (p *zkProxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		c.Close()
		return false
	}
	p.conns[c] = struct{}{}
	return true
}

func (p *zkProxy) untrack(c net.Conn) {
	p.mu.Lock()
	delete(p.conns, c)
	p.mu.Unlock()
	c.Close()
}

func (p *zkProxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		if !p.track(c) {
			continue
		}
		p.wg.Add(1)
		go p.forward(c)
	}
}

func (p *zkProxy) forward(client net.Conn) {
	defer p.wg.Done()
	defer p.untrack(client)
	p.mu.Lock()
	gate := p.gate
	p.mu.Unlock()
	<-gate
	server, err := net.Dial("tcp", p.upstream)
	if err != nil || !p.track(server) {
		return
	}
	defer p.untrack(server)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, _ = io.Copy(server, client)
		server.Close()
	}()
	// The server's first packet is its connect response: remember the
	// session it grants.
	if pkt, err := readPacket(server); err == nil {
		if sid, pw, ok := parseConnectResponse(pkt); ok && sid != 0 {
			p.mu.Lock()
			p.sid, p.passwd = sid, pw
			p.mu.Unlock()
		}
		if _, err := client.Write(pkt); err == nil {
			_, _ = io.Copy(client, server)
		}
	}
	client.Close()
	<-done
}

// readPacket reads one length-prefixed ZooKeeper packet, prefix included.
func readPacket(r io.Reader) ([]byte, error) {
	var n [4]byte
	if _, err := io.ReadFull(r, n[:]); err != nil {
		return nil, err
	}
	size := binary.BigEndian.Uint32(n[:])
	if size > 1<<20 {
		return nil, fmt.Errorf("packet of %d bytes", size)
	}
	pkt := make([]byte, 4+size)
	copy(pkt, n[:])
	_, err := io.ReadFull(r, pkt[4:])
	return pkt, err
}

// parseConnectResponse decodes a connect response packet: protocol version
// (int32), timeout (int32), session id (int64), password (int32 length and
// bytes).
func parseConnectResponse(pkt []byte) (sid int64, passwd []byte, ok bool) {
	b := pkt[4:]
	if len(b) < 20 {
		return 0, nil, false
	}
	sid = int64(binary.BigEndian.Uint64(b[8:16]))
	n := int(int32(binary.BigEndian.Uint32(b[16:20])))
	if n < 0 || len(b) < 20+n {
		return 0, nil, false
	}
	return sid, append([]byte(nil), b[20:20+n]...), true
}

// killSession ends session sid on the ZooKeeper server at addr, as its
// expiry would: it attaches to the session with its password and closes
// it. The server then deletes the session's ephemeral znodes, and a client
// reconnecting with the session is told it expired.
func killSession(addr string, sid int64, passwd []byte, timeout time.Duration) error {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	if err := c.SetDeadline(time.Now().Add(5 * time.Second)); err != nil {
		return err
	}
	var req bytes.Buffer
	for _, v := range []any{int32(0), int64(0), int32(timeout / time.Millisecond), sid, int32(len(passwd)), passwd} {
		_ = binary.Write(&req, binary.BigEndian, v)
	}
	if err := writePacket(c, req.Bytes()); err != nil {
		return err
	}
	pkt, err := readPacket(c)
	if err != nil {
		return fmt.Errorf("connect response: %w", err)
	}
	if got, _, ok := parseConnectResponse(pkt); !ok || got != sid {
		return fmt.Errorf("attaching to session %#x: got session %#x", sid, got)
	}
	// closeSession: xid 1, opcode -11, no body.
	var hdr [8]byte
	binary.BigEndian.PutUint32(hdr[0:], 1)
	binary.BigEndian.PutUint32(hdr[4:], uint32(0xffffffff-10)) // int32(-11)
	if err := writePacket(c, hdr[:]); err != nil {
		return err
	}
	// The reply: xid, zxid, error code. Watch events may come first.
	for {
		pkt, err := readPacket(c)
		if err != nil {
			return fmt.Errorf("close reply: %w", err)
		}
		if len(pkt) < 20 {
			return errors.New("short close reply")
		}
		if xid := int32(binary.BigEndian.Uint32(pkt[4:8])); xid != 1 {
			continue
		}
		if code := int32(binary.BigEndian.Uint32(pkt[16:20])); code != 0 {
			return fmt.Errorf("close session: error %d", code)
		}
		return nil
	}
}

func writePacket(w io.Writer, body []byte) error {
	pkt := make([]byte, 4+len(body))
	binary.BigEndian.PutUint32(pkt, uint32(len(body)))
	copy(pkt[4:], body)
	_, err := w.Write(pkt)
	return err
}
