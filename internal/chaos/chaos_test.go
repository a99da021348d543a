package chaos

import (
	"os"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestChaos is the fault-injection suite: ZooKeeper, the log (Kafka, or
// with CHAOS_LOG=jetstream a 3-server JetStream cluster) and three nodes
// under HTTP and NATS writers while a seeded nemesis kills, pauses and
// restarts them; then every key is read through every node and compared
// with what was acknowledged. CHAOS_SEED replays a schedule;
// CHAOS_DURATION (make chaos: 10m) selects the long form, else the short
// one runs faults for two minutes, at least one of each kind (about 3-4
// minutes).
func TestChaos(t *testing.T) {
	if testing.Short() {
		t.Skip("starts ZooKeeper, the log and three nodes for minutes")
	}
	cfg, err := ConfigFromEnv()
	if err != nil {
		t.Fatal(err)
	}
	// The cluster lives in a subtest, so that what the run finds does not
	// count as a failure of its servers: their cleanups would print their
	// logs (the nodes' are in the directory the report names).
	var rep *Report
	t.Run("run", func(t *testing.T) { rep = Run(t, cfg) })
	if rep == nil {
		return // the harness failed; the subtest says why
	}
	// Without CHAOS_REPORT, the report goes to the system's temporary
	// directory, kept after the test, under the path printed.
	path, err := WriteReport(rep, os.TempDir())
	if err != nil {
		t.Errorf("chaos: writing the JSON report: %v", err)
	}
	t.Logf("\n%s\nJSON report: %s", rep, path)
	if !rep.Passed() {
		t.Errorf("chaos (seed %d): %d failures, see the report above", rep.Seed, len(rep.Failures))
	}
}
