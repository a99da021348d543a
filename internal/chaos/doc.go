// Package chaos is Squall's fault-injection suite (make chaos), in
// the spirit of Jepsen and of Kafka's OffsetValidationTest: a real
// ZooKeeper, a real Kafka broker and three squall-node processes on
// loopback, writers over HTTP and NATS that book every event as
// acknowledged, failed for sure or indeterminate, a nemesis that injects
// one fault at a time from a seeded schedule, observers that poll every
// node's /debug/cluster, and a checker that reads every key through every
// node at the end.
//
// In JetStream mode (CHAOS_LOG=jetstream, make chaos-jetstream) a
// 3-server JetStream cluster in the test process takes Kafka's place: the
// nodes run with --nats-url to it and --jetstream-replicas 3, their log is
// a stream with a subject per partition (squall.log.<p>), and the NATS
// writers reach the nodes through it. The nemesis kills and restarts a
// NATS server instead of the broker; the catch-up wait and the log audit
// read the stream (last sequence per subject) as they read the topic in
// Kafka mode. The rest — the writers, the observers, the checker and the
// report — is the same.
//
// The pieces:
//
//   - Cluster, Node: the processes, started as an operator would, with
//     stable ids and addresses across restarts (cluster.go); the
//     JetStream mode's reads of the log (jetstream.go).
//   - Ledger, Writers: the acknowledged-set bookkeeping and the writers
//     that fill it (ledger.go, writer.go).
//   - Observer: polls /debug/cluster; each Obs keeps when its request was
//     sent and when its answer came (observe.go).
//   - CheckHistory: leader and owner violations, sound under polling skew;
//     Recovery: per-fault recovery times (history.go). Both are pure
//     functions of the recorded history.
//   - Nemesis: the seeded fault schedule and its execution (nemesis.go).
//   - Verify: the final read and its comparison with the ledger (verify.go).
//   - Report: text and JSON (report.go).
//
// Run ties them together. Everything here is for tests: it takes a
// testing.TB for cleanups, and only the test goroutine calls methods that
// may fail it.
package chaos
