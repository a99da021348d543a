package bench

import (
	"os"
	"os/exec"
	"testing"
	"time"
)

// TestSampleCPU checks the two readers against each other and against CPU
// spent on purpose (on a loaded machine too): this process spins until
// getrusage says it used 200 ms, which /proc/self/stat must confirm, and a
// child shell spins until /proc says it used 50 ms.
func TestSampleCPU(t *testing.T) {
	cmd := exec.Command("sh", "-c", "while :; do :; done")
	if err := cmd.Start(); err != nil {
		t.Skipf("no sh: %v", err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	a := sampleCPU(cmd.Process.Pid)
	proc0 := procCPU(os.Getpid())
	deadline := time.Now().Add(20 * time.Second)
	for sampleCPU(0).self-a.self < 200*time.Millisecond {
		if time.Now().After(deadline) {
			t.Fatalf("getrusage: %v of CPU after 20s of spinning", sampleCPU(0).self-a.self)
		}
	}
	if d := procCPU(os.Getpid()) - proc0; d < 150*time.Millisecond {
		t.Errorf("/proc/self/stat: %v of CPU while getrusage counted 200ms", d)
	}
	for sampleCPU(cmd.Process.Pid).other-a.other < 50*time.Millisecond {
		if time.Now().After(deadline) {
			t.Fatalf("child: %v of CPU after 20s of spinning", sampleCPU(cmd.Process.Pid).other-a.other)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if procCPU(1<<30) != 0 {
		t.Errorf("procCPU of a missing process is not 0")
	}
	f := cpuFigure(cpuSample{}, cpuSample{self: time.Second, other: time.Second / 2}, 2*time.Second, true)
	if f.Value != "0.50 cores (this process) + 0.25 (broker JVM)" {
		t.Errorf("cpuFigure: %q", f.Value)
	}
}

func TestSampleMachine(t *testing.T) {
	m0 := sampleMachine()
	if m0.total <= 0 || m0.steal < 0 || m0.steal > m0.total {
		t.Fatalf("sampleMachine = %+v", m0)
	}
	if f := stealFigure(machineCPU{total: 1000, steal: 10}, machineCPU{total: 3000, steal: 110}); f.Value[:4] != "5.0%" {
		t.Errorf("stealFigure = %q, want 5.0%%…", f.Value)
	}
	if f := stealFigure(m0, m0); f.Value != "unknown" {
		t.Errorf("stealFigure without time passing = %q", f.Value)
	}
}
