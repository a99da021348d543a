package testproc

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
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

// A port one test process reserved is not handed to another while the
// first lives, even while nothing listens on it; it is free again once the
// first exits. Within a process, FreePort never hands a port out twice.
func TestReserveAcrossProcesses(t *testing.T) {
	if os.Getenv("TESTPROC_RESERVE_HELPER") != "" {
		return // the helper's run is TestReserveHelper
	}
	port := FreePort(t)
	if !Reserve(port) {
		t.Fatal("this process's own port is not its own")
	}
	if reserve(port, true) {
		t.Fatal("a port handed out is fresh again")
	}
	// Another process reserves a port this one has not.
	other := port + 1
	for !Reserve(other) || other == port {
		other++
	}
	reservations.Lock()
	reservations.files[other].Close()
	delete(reservations.files, other)
	reservations.Unlock()
	cmd := exec.Command(os.Args[0], "-test.run=^TestReserveHelper$")
	cmd.Env = append(os.Environ(), "TESTPROC_RESERVE_HELPER="+strconv.Itoa(other))
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || strings.TrimSpace(line) != "reserved" {
		t.Fatalf("helper: %q, %v", line, err)
	}
	if Reserve(other) {
		t.Errorf("port %d reserved by another live process was reserved here too", other)
	}
	stdin.Close() // the helper exits
	if err := cmd.Wait(); err != nil {
		t.Fatalf("helper: %v", err)
	}
	if !Reserve(other) {
		t.Errorf("port %d still reserved after its process exited", other)
	}
}

// TestReserveHelper reserves the port it is given, says so, and holds it
// until its standard input closes (run by TestReserveAcrossProcesses).
func TestReserveHelper(t *testing.T) {
	port, err := strconv.Atoi(os.Getenv("TESTPROC_RESERVE_HELPER"))
	if err != nil {
		t.Skip("run by TestReserveAcrossProcesses")
	}
	if !Reserve(port) {
		t.Fatalf("helper could not reserve %d", port)
	}
	fmt.Println("reserved")
	_, _ = io.Copy(io.Discard, os.Stdin)
}
