package main

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/squallhq/squall/internal/testproc"
	"github.com/squallhq/squall/internal/testutil"
)

// make cluster, stopped with Ctrl-C: the terminal sends SIGINT to the
// script's whole process group. The nodes stop one by one, then
// ZooKeeper; a second Ctrl-C while they stop kills what is left. Either
// way nothing is left running and every port is free again.
func TestClusterScriptCtrlC(t *testing.T) {
	if testing.Short() {
		t.Skip("starts ZooKeeper and three nodes through scripts/cluster.sh")
	}
	for _, presses := range []int{1, 2} {
		t.Run(fmt.Sprintf("ctrl-c×%d", presses), func(t *testing.T) {
			sc := startClusterScript(t)
			if err := syscall.Kill(-sc.cmd.Process.Pid, syscall.SIGINT); err != nil {
				t.Fatal(err)
			}
			if presses == 2 {
				testutil.Eventually(t, time.Minute, func() bool { return strings.Contains(sc.out.String(), "stopping n3") },
					"the script did not start stopping n3:\n%s", sc.out.String())
				if err := syscall.Kill(-sc.cmd.Process.Pid, syscall.SIGINT); err != nil {
					t.Fatal(err)
				}
			}
			select {
			case <-sc.exited:
			case <-time.After(2 * time.Minute):
				t.Fatalf("the script did not exit:\n%s", sc.out.String())
			}
			out := sc.out.String()
			for _, pid := range sc.children {
				// Reaped by the script, or gone to init and reaped there.
				testutil.Eventually(t, 30*time.Second, func() bool { return !alive(pid) },
					"process %d outlived the script:\n%s", pid, out)
			}
			for _, port := range sc.ports {
				testutil.Eventually(t, 30*time.Second, func() bool { return portFree(port) },
					"port %d still taken after the script exited", port)
			}
			if presses == 1 {
				// In order: n3, n2, n1 (each hands its partitions to the
				// others), then ZooKeeper.
				last := -1
				for _, step := range []string{"stopping n3", "n3 stopped", "stopping n2", "n2 stopped",
					"stopping n1", "n1 stopped", "stopping zookeeper", "zookeeper stopped"} {
					i := strings.Index(out, "cluster.sh: "+step)
					if i < last {
						t.Fatalf("%q missing or out of order:\n%s", step, out)
					}
					last = i
				}
				if strings.Contains(out, "not handed over") {
					t.Errorf("a node stopped with partitions not handed over:\n%s", out)
				}
			}
		})
	}
}

type clusterScript struct {
	cmd      *exec.Cmd
	out      *testutil.LogBuffer
	exited   chan struct{}
	children []int // the script's child processes: ZooKeeper and the nodes
	ports    []int
}

func startClusterScript(t *testing.T) *clusterScript {
	t.Helper()
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	zk, http0, nats0, remote0 := freePortRun(t, 1), freePortRun(t, 4), freePortRun(t, 4), freePortRun(t, 4)
	sc := &clusterScript{out: new(testutil.LogBuffer), exited: make(chan struct{}), ports: []int{zk}}
	for i := 1; i <= 3; i++ {
		sc.ports = append(sc.ports, http0+i, nats0+i, remote0+i)
	}
	sc.cmd = exec.Command(filepath.Join(root, "scripts", "cluster.sh"))
	sc.cmd.Dir = root
	sc.cmd.Env = append(os.Environ(), "ZK_PORT="+strconv.Itoa(zk), "HTTP_PORT0="+strconv.Itoa(http0),
		"NATS_PORT0="+strconv.Itoa(nats0), "REMOTE_PORT0="+strconv.Itoa(remote0))
	sc.cmd.Stdout, sc.cmd.Stderr = sc.out, sc.out
	// A process group of its own, as a terminal gives a foreground job.
	sc.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := sc.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		_ = sc.cmd.Wait()
		close(sc.exited)
	}()
	t.Cleanup(func() {
		select {
		case <-sc.exited:
		default:
			_ = syscall.Kill(-sc.cmd.Process.Pid, syscall.SIGKILL)
			<-sc.exited
		}
		for _, pid := range sc.children {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	})
	for i := 1; i <= 3; i++ {
		url := fmt.Sprintf("http://127.0.0.1:%d/readyz", http0+i)
		testutil.Eventually(t, 3*time.Minute, func() bool {
			resp, err := http.Get(url)
			if err != nil {
				return false
			}
			resp.Body.Close()
			return resp.StatusCode == http.StatusOK
		}, "node %d never ready:\n%s", i, sc.out)
	}
	sc.children = childrenOf(t, sc.cmd.Process.Pid)
	if len(sc.children) != 4 {
		t.Fatalf("script children %v, want ZooKeeper and three nodes", sc.children)
	}
	return sc
}

// freePortRun returns p such that p .. p+n-1 are free loopback ports.
func freePortRun(t *testing.T, n int) int {
	t.Helper()
	for range 100 {
		p := freePort(t)
		ok := true
		for i := range n {
			if p+i > 65535 || !testproc.Reserve(p+i) || !portFree(p+i) {
				ok = false
				break
			}
		}
		if ok {
			return p
		}
	}
	t.Fatalf("no run of %d free ports", n)
	return 0
}

func portFree(port int) bool {
	ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port))
	if err != nil {
		return false
	}
	ln.Close()
	return true
}

func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// A zombie has exited; its parent has yet to reap it.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] != 'Z'
}

// childrenOf lists the processes whose parent is pid.
func childrenOf(t *testing.T, pid int) []int {
	t.Helper()
	dirs, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	var kids []int
	for _, d := range dirs {
		c, err := strconv.Atoi(d.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", d.Name(), "stat"))
		if err != nil {
			continue
		}
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(s[i+1:]) // state, ppid, ...
		if len(f) > 1 && f[1] == strconv.Itoa(pid) {
			kids = append(kids, c)
		}
	}
	return kids
}
