package testproc

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
)

// aptMu serialises installs within a process; aptLock (a file lock) across
// the test binaries that go test runs in parallel: two apt-get runs at
// once fail on dpkg's own lock.
var (
	aptMu   sync.Mutex
	aptLock = filepath.Join(os.TempDir(), "squall-apt.lock")
)

// NeedCommand returns the path of the command name, installing the Debian
// package pkg that provides it when it is not on PATH: a test that needs a
// third-party tool (kcat, chromium, promtool) sets it up itself, so that the
// suite passes on a fresh machine. It runs apt-get (through sudo -n when not
// root) and fails t, with apt-get's output, when the install fails.
func NeedCommand(t testing.TB, name, pkg string) string {
	t.Helper()
	if path, err := exec.LookPath(name); err == nil {
		return path
	}
	aptMu.Lock()
	defer aptMu.Unlock()
	f, err := os.OpenFile(aptLock, os.O_CREATE|os.O_RDWR, 0o666)
	if err != nil {
		t.Fatalf("testproc: %s is missing and the install lock %s: %v", name, aptLock, err)
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatalf("testproc: %s is missing and the install lock %s: %v", name, aptLock, err)
	}
	defer syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
	if path, err := exec.LookPath(name); err == nil { // another test binary installed it
		return path
	}
	if err := aptInstall(t, pkg); err != nil {
		t.Fatalf("testproc: %s is not on PATH and installing the Debian package %s failed: %v", name, pkg, err)
	}
	path, err := exec.LookPath(name)
	if err != nil {
		t.Fatalf("testproc: the Debian package %s is installed but %s is not on PATH: %v", pkg, name, err)
	}
	return path
}

func aptInstall(t testing.TB, pkg string) error {
	var prefix []string
	if os.Geteuid() != 0 {
		if _, err := exec.LookPath("sudo"); err != nil {
			return fmt.Errorf("not root and no sudo: install it with apt-get install %s", pkg)
		}
		prefix = []string{"sudo", "-n"}
	}
	for _, args := range [][]string{
		{"apt-get", "update", "-qq"},
		{"apt-get", "install", "-y", "-qq", "--no-install-recommends", pkg},
	} {
		args = append(prefix, args...)
		cmd := exec.Command(args[0], args[1:]...)
		cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
		out, err := cmd.CombinedOutput()
		if err != nil {
			return fmt.Errorf("%v: %v\n%s", args, err, out)
		}
	}
	t.Logf("testproc: installed the Debian package %s", pkg)
	return nil
}
