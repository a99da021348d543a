package testutil

import (
	"syscall"
	"time"
)

// CPUTime returns the CPU time (user + system) this process has used so
// far, every goroutine and the collector included; 0 if it cannot be read.
// Benchmarks on a shared machine report it per operation beside ns/op.
func CPUTime() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
