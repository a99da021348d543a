package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"hash/crc32"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/squallhq/squall/api"
	"github.com/squallhq/squall/internal/deploycheck"
	"github.com/squallhq/squall/internal/kafkatest"
	"github.com/squallhq/squall/internal/natstest"
	"github.com/squallhq/squall/internal/testproc"
	"github.com/squallhq/squall/internal/testutil"
	"github.com/squallhq/squall/internal/zktest"
	"github.com/squallhq/squall/replay"
)

// binaries builds bin/squall-node and bin/squallctl as "make build" does,
// into a temporary directory.
func binaries(t *testing.T) (nodeBin, ctlBin string) {
	t.Helper()
	dir := t.TempDir()
	nodeBin, ctlBin = filepath.Join(dir, "squall-node"), filepath.Join(dir, "squallctl")
	for bin, pkg := range map[string]string{nodeBin: "../node", ctlBin: "."} {
		if out, err := exec.Command("go", "build", "-o", bin, pkg).CombinedOutput(); err != nil {
			t.Fatalf("go build %s: %v\n%s", pkg, err, out)
		}
	}
	return nodeBin, ctlBin
}

// nodeProc is a squall-node process.
type nodeProc struct {
	id       string
	httpAddr string
	cmd      *exec.Cmd
	log      testutil.LogBuffer
	done     chan struct{} // closed once the process has exited
}

var startedRE = regexp.MustCompile(`squall node started.*http=(\S+)`)

// startNodeProc starts bin with args and returns once it has logged its
// start; the process is killed when the test ends.
func startNodeProc(t *testing.T, bin, id string, args ...string) *nodeProc {
	t.Helper()
	p := &nodeProc{id: id, cmd: exec.Command(bin, append([]string{"--node-id", id}, args...)...), done: make(chan struct{})}
	stderr, err := p.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	started := make(chan string, 1)
	exited := make(chan error, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			fmt.Fprintln(&p.log, sc.Text())
			if m := startedRE.FindStringSubmatch(sc.Text()); m != nil {
				started <- m[1]
			}
		}
		err := p.cmd.Wait()
		close(p.done)
		exited <- err
	}()
	t.Cleanup(func() {
		p.cmd.Process.Kill()
		<-exited
		if t.Failed() {
			t.Logf("node %s log:\n%s", id, p.log.String())
		}
	})
	select {
	case p.httpAddr = <-started:
	case err := <-exited:
		exited <- err
		t.Fatalf("node %s exited before starting: %v\n%s", id, err, p.log.String())
	case <-time.After(60 * time.Second):
		t.Fatalf("node %s did not log its start within 60s:\n%s", id, p.log.String())
	}
	return p
}

// stop sends p SIGTERM, a graceful stop, and waits for the process to
// exit.
func (p *nodeProc) stop(t *testing.T) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.done:
	case <-time.After(60 * time.Second):
		t.Fatalf("node %s did not stop within 60s of SIGTERM:\n%s", p.id, p.log.String())
	}
}

// ctlProc runs the squallctl binary against node p with stdin and args.
func ctlProc(t *testing.T, bin string, p *nodeProc, stdin string, args ...string) result {
	t.Helper()
	cmd := exec.Command(bin, append([]string{"--server", "http://" + p.httpAddr}, args...)...)
	cmd.Env = append(os.Environ(), envServer+"=", envToken+"=", envNATS+"=")
	cmd.Stdin = strings.NewReader(stdin)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("squallctl %v: %v", args, err)
	}
	return result{out.String(), errOut.String(), code}
}

// ctlFollow starts the squallctl binary against p with args, a command
// that runs until interrupted; stop sends SIGINT and returns its exit
// status.
func ctlFollow(t *testing.T, bin string, p *nodeProc, args ...string) (out, errOut *testutil.LogBuffer, stop func() int) {
	t.Helper()
	cmd := exec.Command(bin, append([]string{"--server", "http://" + p.httpAddr}, args...)...)
	cmd.Env = append(os.Environ(), envServer+"=", envToken+"=", envNATS+"=")
	out, errOut = new(testutil.LogBuffer), new(testutil.LogBuffer)
	cmd.Stdout, cmd.Stderr = out, errOut
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	code := -1
	stop = func() int {
		once.Do(func() {
			cmd.Process.Signal(syscall.SIGINT)
			cmd.Wait()
			code = cmd.ProcessState.ExitCode()
		})
		return code
	}
	t.Cleanup(func() { stop() })
	return out, errOut, stop
}

// crcPartition is where librdkafka's default partitioner (consistent_random:
// CRC32 of the key) puts a keyed record among n partitions.
func crcPartition(key string, n int) int32 {
	return int32(crc32.ChecksumIEEE([]byte(key)) % uint32(n))
}

// TestThreeNodesKafka runs the binaries "make build" produces as an operator
// would: three squall-node processes over a real ZooKeeper consuming a
// topic of a real Kafka broker, sharing a NATS server for input and alerts,
// and every squallctl command run as a process against them. Events come in
// over HTTP, NATS and a third-party producer (kcat, librdkafka) with the
// partitioner setting the operations guide asks for and with its default;
// each key's replay from the log equals its live state.
func TestThreeNodesKafka(t *testing.T) {
	if testing.Short() {
		t.Skip("starts ZooKeeper, Kafka and three node processes")
	}
	const (
		partitions = 8
		topic      = "ctl-events"
		t0         = int64(1764064800000)
	)
	kcat := testproc.NeedCommand(t, "kcat", "kcat")
	nodeBin, ctlBin := binaries(t)
	z := zktest.Start(t)
	k := kafkatest.Start(t)
	k.CreateTopic(t, topic, partitions)
	ns := natstest.Start(t, 0)
	rulesFile := writeFile(t, "rules.yaml", `rules:
  - {name: high-cpu, match: "*.cpu", aggregate: max, over: 1m, op: ">", threshold: 90, severity: page}
`)
	nodes := make([]*nodeProc, 3)
	for i := range nodes {
		nodes[i] = startNodeProc(t, nodeBin, fmt.Sprintf("n%d", i+1),
			"--zk", z.Addr(), "--cluster", "ctl", "--zk-session-timeout", "4s",
			"--http-addr", "127.0.0.1:0", "--remote-addr", "127.0.0.1:0", "--nats-url", ns.ClientURL(),
			"--kafka-brokers", k.Addr(), "--kafka-topic", topic, "--kafka-group", "ctl",
			"--partitions", strconv.Itoa(partitions), "--rules", rulesFile, "--data-dir", "")
	}
	n1, n2, n3 := nodes[0], nodes[1], nodes[2]
	ctl := func(p *nodeProc, stdin string, args ...string) result {
		t.Helper()
		return ctlProc(t, ctlBin, p, stdin, args...)
	}

	// The cluster settles: three members, one leader, every member ready.
	var view clusterView
	testutil.Eventually(t, 60*time.Second, func() bool {
		r := ctl(n1, "", "cluster", "-o", "json")
		view = clusterView{}
		if r.code != 0 || json.Unmarshal([]byte(r.out), &view) != nil || view.Cluster == nil || len(view.Members) != 3 || view.Leader == "" {
			return false
		}
		for _, m := range view.Members {
			if !view.MembersReady[m.ID].Ready {
				return false
			}
		}
		return len(view.Assignment) == partitions
	}, "three members, all ready")
	r := ctl(n1, "", "cluster")
	expect(t, r, 0, "cluster      ctl\n", "answered by  n1\n", "zookeeper    connected\n", "PARTITION MAP\n", "PEERS of n1", "KAFKA SOURCES of n1\n")
	t.Logf("$ squallctl cluster\n%s", r.out)
	owned := 0
	for _, id := range []string{"n1", "n2", "n3"} {
		if f := fields(t, r.out, id); f[len(f)-1] != "yes" {
			t.Fatalf("member row %v", f)
		}
		// The partition map's row: OWNER COUNT PARTITIONS.
		for _, l := range strings.Split(r.out[strings.Index(r.out, "PARTITION MAP"):], "\n") {
			if f := strings.Fields(l); len(f) == 3 && f[0] == id {
				n, err := strconv.Atoi(f[1])
				if err != nil {
					t.Fatalf("partition map row %v", f)
				}
				owned += n
				break
			}
		}
	}
	if owned != partitions {
		t.Fatalf("the partition map covers %d partitions, want %d:\n%s", owned, partitions, r.out)
	}
	byID := map[string]*nodeProc{"n1": n1, "n2": n2, "n3": n3}
	ownerOf := func(key string) *nodeProc {
		return byID[view.Assignment[strconv.Itoa(int(replay.KeyPartition(key, partitions)))]]
	}

	// alerts tail follows the shared NATS server from the start.
	tailOut, tailErr, stopTail := ctlFollow(t, ctlBin, n1, "alerts", "tail", "--nats", ns.ClientURL())

	// Over HTTP to n2: the events go to Kafka first, so the answer cannot
	// say late or duplicate yet.
	want := map[string]struct {
		count uint64
		sum   float64
	}{}
	args := []string{"send"}
	for i := range 10 {
		key := fmt.Sprintf("k%d.cpu", i)
		for j := range 3 {
			args = append(args, fmt.Sprintf("%s=%d@%d", key, 10*i+j, t0+int64(j)*1000))
		}
		want[key] = struct {
			count uint64
			sum   float64
		}{3, float64(30*i + 3)}
	}
	expect(t, ctl(n2, "", args...), 0, "accepted:     30\n", "  late:       not known yet")
	// Over NATS, NDJSON from stdin.
	var nd strings.Builder
	for i := range 4 {
		key := fmt.Sprintf("nats-%d.mem", i)
		for j := range 2 {
			fmt.Fprintf(&nd, `{"key":%q,"ts":%d,"value":%d,"id":"%s-%d"}`+"\n", key, t0+int64(j)*1000, i+j, key, j)
		}
		want[key] = struct {
			count uint64
			sum   float64
		}{2, float64(2*i + 1)}
	}
	expect(t, ctl(n3, nd.String(), "send", "--nats", ns.ClientURL()), 0, "accepted:     8\n")

	// kcat writes straight to the topic: one key with the partitioner the
	// operations guide asks librdkafka producers for (murmur2_random, Kafka's
	// own), one with librdkafka's default (CRC32), which puts it in another
	// partition than the key's.
	crcKey := ""
	for i := 0; crcKey == ""; i++ {
		if key := fmt.Sprintf("crc-%d.cpu", i); crcPartition(key, partitions) != replay.KeyPartition(key, partitions) {
			crcKey = key
		}
	}
	const murmurKey = "kcat.cpu"
	for key, partitioner := range map[string]string{murmurKey: "murmur2_random", crcKey: ""} {
		var in strings.Builder
		for j, v := range []int{20, 95, 40} {
			fmt.Fprintf(&in, `%s|{"ts":%d,"value":%d}`+"\n", key, t0+int64(j)*1000, v)
		}
		args := []string{"-P", "-b", k.Addr(), "-t", topic, "-K", "|"}
		if partitioner != "" {
			args = append(args, "-X", "partitioner="+partitioner)
		}
		cmd := exec.Command(kcat, args...)
		cmd.Stdin = strings.NewReader(in.String())
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("kcat %v: %v\n%s", args, err, out)
		}
		want[key] = struct {
			count uint64
			sum   float64
		}{3, 155}
	}

	// Every key, from every node, once applied by its owner.
	for key, w := range want {
		for _, p := range nodes {
			testutil.Eventually(t, 30*time.Second, func() bool {
				r := ctl(p, "", "get", key, "-o", "json")
				var st api.KeyState
				return r.code == 0 && json.Unmarshal([]byte(r.out), &st) == nil && st.Window.Count == w.count && st.Window.Sum == w.sum
			}, "%s from %s: not %d events summing to %g", key, p.id, w.count, w.sum)
		}
	}
	r = ctl(n3, "", "get", "k9.cpu")
	expect(t, r, 0, "key         k9.cpu\n", "events      3 applied, 0 late, 0 duplicate\n", "high-cpu")
	fields(t, r.out, "all") // the window's row
	t.Logf("$ squallctl get k9.cpu\n%s", r.out)

	// get --watch refreshes until interrupted.
	out, _, stop := ctlFollow(t, ctlBin, n2, "get", "k1.cpu", "--watch", "--interval", "50ms")
	testutil.Eventually(t, 20*time.Second, func() bool { return strings.Count(out.String(), "every 50ms\n") >= 2 }, "two frames of get --watch")
	if code := stop(); code != 0 {
		t.Fatalf("get --watch: exit status %d\n%s", code, out.String())
	}

	// GET /debug/actors/{key}/events from any node: the owner's kept
	// events (crcKey's too: its records, consumed from another partition,
	// are applied at the key's owner).
	for key, w := range want {
		for _, p := range nodes {
			var ke api.KeyEvents
			getJSON(t, "http://"+p.httpAddr+"/debug/actors/"+url.PathEscape(key)+"/events", &ke)
			if uint64(len(ke.Events)) != w.count || !ke.Complete || ke.Node != ownerOf(key).id {
				t.Fatalf("%s's events from %s: node %q, %d events, complete %v; want %d from %s", key, p.id, ke.Node, len(ke.Events), ke.Complete, w.count, ownerOf(key).id)
			}
		}
	}

	// keys: cluster-wide, by prefix, bounded.
	r = ctl(n1, "", "keys", "-o", "json")
	expect(t, r, 0)
	var kl api.KeyList
	if err := json.Unmarshal([]byte(r.out), &kl); err != nil || len(kl.Keys) != len(want) || kl.Live != int64(len(want)) {
		t.Fatalf("keys: %v\n%s", err, r.out)
	}
	servers := map[string]bool{}
	for _, k := range kl.Keys {
		servers[k.Node] = true
	}
	if len(servers) < 2 {
		t.Fatalf("%d keys all on %v: the listing is not cluster-wide", len(kl.Keys), servers)
	}
	r = ctl(n2, "", "keys", "--prefix", "nats-", "-o", "json")
	if kl = (api.KeyList{}); json.Unmarshal([]byte(r.out), &kl) != nil || len(kl.Keys) != 4 {
		t.Fatalf("keys --prefix nats-: %s", r.out)
	}
	expect(t, ctl(n3, "", "keys", "--prefix", "k", "--limit", "3"), 0, "k0.cpu ", "k2.cpu ",
		"3 keys shown of 16 live, more match (raise --limit 3)\n")

	// alerts: firing now, cluster-wide (k9.cpu's max is 92; kcat's keys
	// reached 95), and each transition seen by alerts tail.
	r = ctl(n1, "", "alerts")
	expect(t, r, 0, " k9.cpu ", " high-cpu ", " "+murmurKey+" ", " "+crcKey+" ")
	if strings.Contains(r.out, "k8.cpu") {
		t.Fatalf("k8.cpu (max 82) listed:\n%s", r.out)
	}
	testutil.Eventually(t, 20*time.Second, func() bool { return strings.Count(tailOut.String(), " firing ") == 3 }, "alerts tail: three firing transitions")
	if code := stopTail(); code != 0 || !strings.Contains(tailErr.String(), "following squall.alerts.>") {
		t.Fatalf("alerts tail: exit status %d\n%s", code, tailErr.String())
	}
	for _, key := range []string{"k9.cpu", murmurKey, crcKey} {
		if !strings.Contains(tailOut.String(), " high-cpu  "+key+" ") {
			t.Fatalf("alerts tail lacks %s:\n%s", key, tailOut.String())
		}
	}

	// rules check, offline.
	expect(t, ctl(n1, "", "rules", "check", rulesFile), 0)
	bad := writeFile(t, "bad.yaml", "rules:\n  - {name: x, match: \"*\", aggregate: nope, over: 1m, op: \">\", threshold: 1}\n")
	expect(t, ctl(n1, "", "rules", "check", bad), 1, bad+":2: x: ")
	if r := ctl(n1, "", "completion", "bash"); r.code != 0 || !strings.Contains(r.out, "squallctl") {
		t.Fatalf("completion bash: exit %d", r.code)
	}

	// replay, from a node that is not the key's owner: its kept events,
	// the owner's rules (no warning), equal to the live key.
	asked := n1
	if ownerOf("k9.cpu") == n1 {
		asked = n2
	}
	r = ctl(asked, "", "replay", "k9.cpu", "--diff")
	expect(t, r, 0, "DIFF: the replay equals the live key ("+ownerOf("k9.cpu").id+")\n", "high-cpu firing (91, threshold 90)")
	if r.err != "" {
		t.Fatalf("stderr %q", r.err)
	}
	// From Kafka: every key the node's producer, NATS and kcat with murmur2
	// wrote, each asked of a node that does not own it; the range is the
	// partition's consumer's.
	fromLog := []string{"--from-log", "--kafka-brokers", k.Addr(), "--kafka-topic", topic, "--diff"}
	for _, key := range []string{"k9.cpu", "k4.cpu", "nats-2.mem", murmurKey} {
		asked := n1
		if ownerOf(key) == n1 {
			asked = n3
		}
		r = ctl(asked, "", append([]string{"replay", key}, fromLog...)...)
		expect(t, r, 0, "DIFF: the replay equals the live key ("+ownerOf(key).id+")\n")
		if steps := stepLines(r.out); len(steps) != int(want[key].count) || !strings.HasPrefix(steps[0], "#0 @") {
			t.Fatalf("replay %s from Kafka: steps %q", key, steps)
		}
		if key == murmurKey {
			t.Logf("$ squallctl replay %s --from-log ... --diff\n%s", key, r.out)
		}
	}
	// kcat's default put crcKey in its CRC32 partition: the key's own
	// partition has none of its records; --partition names the one that
	// has them.
	r = ctl(n2, "", append([]string{"replay", crcKey}, fromLog...)...)
	expect(t, r, 1)
	if !strings.Contains(r.err, fmt.Sprintf("no event of %q to replay", crcKey)) {
		t.Fatalf("replay %s from its murmur2 partition: stderr %q", crcKey, r.err)
	}
	p := crcPartition(crcKey, partitions)
	r = ctl(n2, "", append([]string{"replay", crcKey, "--partition", strconv.Itoa(int(p))}, fromLog...)...)
	expect(t, r, 0, "DIFF: the replay equals the live key (")
	if steps := stepLines(r.out); len(steps) != 3 {
		t.Fatalf("replay %s --partition %d: steps %q", crcKey, p, steps)
	}

	// After the traffic: every source of every node has applied what it
	// fetched, and crcKey's events, consumed by the owner of their CRC32
	// partition, went to the key's owner over the network when that is
	// another node.
	from := byID[view.Assignment[strconv.Itoa(int(p))]]
	sent := uint64(0)
	for _, n := range nodes {
		var v clusterView
		r = ctl(n, "", "cluster", "-o", "json")
		if r.code != 0 || json.Unmarshal([]byte(r.out), &v) != nil {
			t.Fatalf("cluster -o json of %s: exit %d\n%s%s", n.id, r.code, r.out, r.err)
		}
		for _, s := range v.Sources {
			if s.Lag != 0 || s.Buffered != 0 {
				t.Fatalf("%s's source of partition %d: lag %d, %d buffered", n.id, s.Partition, s.Lag, s.Buffered)
			}
		}
		if n == from {
			sent = v.Peers[ownerOf(crcKey).id].EventsSent
		}
	}
	if from != ownerOf(crcKey) && sent < 3 {
		t.Fatalf("%s consumed %s's 3 events from partition %d and sent %d to its owner %s", from.id, crcKey, p, sent, ownerOf(crcKey).id)
	}
	r = ctl(from, "", "cluster")
	expect(t, r, 0, "PEERS of "+from.id)
	t.Logf("$ squallctl --server %s cluster   (after the traffic)\n%s", from.id, r.out)

	// The monitoring files under deploy/: every metric the Grafana
	// dashboard and the Prometheus rules name is exposed by the cluster's
	// nodes, now that it has ingested, routed between nodes and fired
	// alerts, and once n3 has left gracefully, handing its partitions over
	// (whether partitions moved while the cluster formed depends on how
	// fast the nodes joined); and each node's /metrics passes promtool's
	// lint.
	var scrapes [][]byte
	for _, p := range nodes {
		scrapes = append(scrapes, scrapeMetrics(t, p))
	}
	n3.stop(t)
	testutil.Eventually(t, 60*time.Second, func() bool {
		for _, p := range []*nodeProc{n1, n2} {
			e, err := deploycheck.ParseExposition(bytes.NewReader(scrapeMetrics(t, p)))
			if err != nil {
				t.Fatal(err)
			}
			if e.Has("squall_partition_handoffs_total") {
				return true
			}
		}
		return false
	}, "n1 and n2 count no handoff from n3")
	for _, p := range []*nodeProc{n1, n2} {
		scrapes = append(scrapes, scrapeMetrics(t, p))
	}
	checkDeployMetrics(t, scrapes)
}

// scrapeMetrics returns p's /metrics.
func scrapeMetrics(t *testing.T, p *nodeProc) []byte {
	t.Helper()
	resp, err := http.Get("http://" + p.httpAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics of %s: %s %v", p.id, resp.Status, err)
	}
	return b
}

// checkDeployMetrics lints the nodes' /metrics with promtool and checks
// them against deploy/grafana/squall.json and
// deploy/prometheus/squall-rules.yml.
func checkDeployMetrics(t *testing.T, scrapes [][]byte) {
	t.Helper()
	promtool := testproc.NeedCommand(t, "promtool", "prometheus")
	var rs []io.Reader
	for _, b := range scrapes {
		lint := exec.Command(promtool, "check", "metrics")
		lint.Stdin = bytes.NewReader(b)
		if out, err := lint.CombinedOutput(); err != nil {
			t.Errorf("promtool check metrics: %v\n%s", err, out)
		}
		rs = append(rs, bytes.NewReader(b))
	}
	dashboard, err := os.ReadFile("../../deploy/grafana/squall.json")
	if err != nil {
		t.Fatal(err)
	}
	rules, err := os.ReadFile("../../deploy/prometheus/squall-rules.yml")
	if err != nil {
		t.Fatal(err)
	}
	names, missing, err := deploycheck.Check(dashboard, rules, rs...)
	if err != nil {
		t.Fatal(err)
	}
	if len(missing) > 0 {
		t.Fatalf("deploy/: %d of the %d metrics the dashboard and the rules name are exposed by no node: %s",
			len(missing), len(names), strings.Join(missing, " "))
	}
	t.Logf("deploy/: the %d metrics the dashboard and the rules name are exposed by the nodes", len(names))
}

// getJSON decodes the JSON document at url into v; any status but 200
// fails t.
func getJSON(t *testing.T, url string, v any) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s\n%s", url, resp.Status, b)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("GET %s: %v\n%s", url, err, b)
	}
}
