//go:build race

package transport

// raceEnabled is true when the race detector is on. Each protoactor
// remote.Start writes gRPC's global logger, which the gRPC goroutines of any
// remote started before in the same process read without synchronisation:
// under the race detector a test process may start one Transport only.
// Tests with several run their peers in child processes
// (TestChildProcessPeer).
const raceEnabled = true
