package testproc

import (
	"fmt"
	"net"
	"testing"
)

// The ports handed out lie below the ephemeral range, so that no
// "127.0.0.1:0" listener can be given one, and are free to listen on.
func TestFreePort(t *testing.T) {
	high := ephemeralStart()
	if high-portLow < 1000 {
		t.Skipf("ephemeral range starts at %d: FreePort lets the kernel choose", high)
	}
	seen := map[int]bool{}
	for range 20 {
		port := FreePort(t)
		if port < portLow || port >= high {
			t.Fatalf("port %d outside [%d, %d)", port, portLow, high)
		}
		seen[port] = true
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			t.Fatalf("port %d: %v", port, err)
		}
		l.Close()
	}
	if len(seen) < 10 {
		t.Fatalf("20 calls gave only %d distinct ports", len(seen))
	}
	// A port taken is not handed out.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if _, err := listenAndClose(l.Addr().String()); err == nil {
		t.Fatal("listenAndClose succeeded on a port in use")
	}
}
