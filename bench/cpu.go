package bench

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"syscall"
	"time"
)

// clockTick is the unit of /proc/PID/stat's CPU times (USER_HZ, 100 on
// every Linux architecture Go supports).
const clockTick = 10 * time.Millisecond

// cpuSample is the CPU time (user + system) used so far by this process
// and by another one (the broker's JVM; zero when there is none).
type cpuSample struct {
	self, other time.Duration
}

// sampleCPU reads the CPU time used by this process and by process pid
// (0: none). A process that cannot be read counts as zero.
func sampleCPU(pid int) cpuSample {
	var s cpuSample
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) == nil {
		s.self = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	if pid > 0 {
		s.other = procCPU(pid)
	}
	return s
}

// procCPU returns the user + system time of process pid from
// /proc/PID/stat, or 0.
func procCPU(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// The command name (field 2) is in parentheses and may hold spaces:
	// fields are counted from the last ')', which ends it.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0
	}
	f := bytes.Fields(b[i+1:]) // f[0] is field 3 (state): utime is field 14, stime 15
	if len(f) < 13 {
		return 0
	}
	ut, err1 := strconv.ParseInt(string(f[11]), 10, 64)
	st, err2 := strconv.ParseInt(string(f[12]), 10, 64)
	if err1 != nil || err2 != nil {
		return 0
	}
	return time.Duration(ut+st) * clockTick
}

// cpuFigure formats the cores used between two samples taken wall apart:
// "1.62 cores (this process) + 0.21 (broker)".
func cpuFigure(from, to cpuSample, wall time.Duration, broker bool) Figure {
	cores := func(d time.Duration) float64 { return d.Seconds() / wall.Seconds() }
	v := fmt.Sprintf("%.2f cores (this process)", cores(to.self-from.self))
	if broker {
		v += fmt.Sprintf(" + %.2f (broker JVM)", cores(to.other-from.other))
	}
	return Figure{"cpu", v}
}

// machineCPU is the machine's CPU time from /proc/stat's "cpu" line, in
// clock ticks: all of it, and the part stolen by the hypervisor (time a
// virtual CPU was ready to run but the host ran something else).
type machineCPU struct{ total, steal int64 }

// sampleMachine reads the machine's CPU times, or zeros.
func sampleMachine() machineCPU {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return machineCPU{}
	}
	line, _, _ := bytes.Cut(b, []byte("\n"))
	f := bytes.Fields(line)
	if len(f) < 9 || string(f[0]) != "cpu" {
		return machineCPU{}
	}
	var m machineCPU
	for i, v := range f[1:9] { // user nice system idle iowait irq softirq steal
		n, err := strconv.ParseInt(string(v), 10, 64)
		if err != nil {
			return machineCPU{}
		}
		m.total += n
		if i == 7 {
			m.steal = n
		}
	}
	return m
}

// stealFigure is the share of the machine's CPU time stolen between two
// samples: on a shared virtual machine, the tail of a latency measurement
// follows it.
func stealFigure(from, to machineCPU) Figure {
	if to.total <= from.total {
		return Figure{"steal", "unknown"}
	}
	return Figure{"steal", fmt.Sprintf("%.1f%% of the machine's CPU time taken by the hypervisor during the measurement",
		100*float64(to.steal-from.steal)/float64(to.total-from.total))}
}
