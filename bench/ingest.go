package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"runtime"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/squallhq/squall/actors"
	"github.com/squallhq/squall/api"
	"github.com/squallhq/squall/event"
	"github.com/squallhq/squall/node"
)

const ingestKeys = 100_000

// bodies returns count NDJSON bodies of batch events each over ingestKeys
// keys, and the mean event size.
func bodies(count, batch int, seed uint64) ([][]byte, int) {
	rng := rand.New(rand.NewPCG(seed, 7))
	out := make([][]byte, count)
	total := 0
	j := 0
	for i := range out {
		var b []byte
		for range batch {
			n := len(b)
			b = appendEvent(b, ingestKeys, j, rng, false)
			total += len(b) - n
			b = append(b, '\n')
			j++
		}
		out[i] = b
	}
	return out, total / (count * batch)
}

// workers runs f on c goroutines until d has passed and returns how many
// events they reported.
func workers(c int, d time.Duration, f func(w, i int) (int, error)) (int, time.Duration, error) {
	var total atomic.Int64
	var firstErr atomic.Value
	start := time.Now()
	var wg sync.WaitGroup
	for w := range c {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; time.Since(start) < d; i++ {
				n, err := f(w, i)
				if err != nil {
					firstErr.CompareAndSwap(nil, err)
					return
				}
				total.Add(int64(n))
			}
		}()
	}
	wg.Wait()
	if err, _ := firstErr.Load().(error); err != nil {
		return 0, 0, err
	}
	return int(total.Load()), time.Since(start), nil
}

func postBody(cl *http.Client, url string, body []byte) (int, error) {
	resp, err := cl.Post(url, "application/x-ndjson", bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var ir api.IngestResponse
	if err := json.NewDecoder(resp.Body).Decode(&ir); err != nil || resp.StatusCode != http.StatusAccepted {
		return 0, fmt.Errorf("POST: %d %v %s", resp.StatusCode, err, ir.Error)
	}
	return ir.Accepted, nil
}

// warm applies one event per key, so that measurements see live keys.
func warm(cl *http.Client, url string) error {
	var b []byte
	for k := range ingestKeys {
		b = fmt.Appendf(b, `{"key":%q,"ts":%d,"value":1}`+"\n", keyName(k), t0)
		if (k+1)%5000 == 0 {
			if _, err := postBody(cl, url, b); err != nil {
				return err
			}
			b = b[:0]
		}
	}
	return nil
}

// httpThroughput: 4 clients post NDJSON batches over 100K live keys for
// ingestFor; a 202 means the events are applied.
func httpThroughput(batch int) func(r *run) ([]Result, error) {
	return func(r *run) ([]Result, error) {
		n := r.startNode(nil, 0, "", nil)
		return r.httpIngest(n, batch, nil)
	}
}

// httpDurable: httpThroughput on a node with a data directory (the
// embedded JetStream log): a 202 means stored in the log, and the
// measurement ends once the key actors have applied every event posted.
func httpDurable(batch int) func(r *run) ([]Result, error) {
	return func(r *run) ([]Result, error) {
		var applied atomic.Int64
		n := r.startNodeWith(nil, 0, "", func(evs []event.Event) { applied.Add(int64(len(evs))) },
			func(c *node.Config) { c.DataDir = r.tb.TempDir() })
		return r.httpIngest(n, batch, &applied)
	}
}

// httpIngest posts batches to n from 4 clients for ingestFor. With
// applied (the node's applied-event count), the time runs until every
// event posted is applied.
func (r *run) httpIngest(n *node.Node, batch int, applied *atomic.Int64) ([]Result, error) {
	url := "http://" + n.HTTPAddr() + api.PathEvents
	cl := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 16}}
	defer cl.CloseIdleConnections()
	r.status("warming up")
	if err := warm(cl, url); err != nil {
		return nil, err
	}
	if applied != nil {
		// The warm-up is applied before the measurement starts.
		for deadline := time.Now().Add(time.Minute); applied.Load() < ingestKeys; time.Sleep(time.Millisecond) {
			if time.Now().After(deadline) {
				return nil, fmt.Errorf("warm-up: %d of %d events applied after a minute", applied.Load(), ingestKeys)
			}
		}
	}
	const clients = 4
	bs, size := bodies(64, batch, uint64(batch))
	r.status("posting batches of %d", batch)
	var m0 runtime.MemStats
	runtime.ReadMemStats(&m0)
	start := time.Now()
	total, el, err := workers(clients, r.sc.ingestFor, func(w, i int) (int, error) {
		return postBody(cl, url, bs[(w*16+i)%len(bs)])
	})
	if err != nil {
		return nil, err
	}
	how := fmt.Sprintf("%d HTTP/1.1 keep-alive, same machine", clients)
	if applied != nil {
		for applied.Load()-ingestKeys < int64(total) {
			if time.Since(start) > r.sc.ingestFor+time.Minute {
				return nil, fmt.Errorf("%d of %d events applied a minute after the last 202", applied.Load()-ingestKeys, total)
			}
			time.Sleep(time.Millisecond)
		}
		el = time.Since(start)
		how += "; 202 once stored in the log, timed until applied"
	}
	return r.ingestRow(size, batch, total, el, &m0, how), nil
}

// ingestRow is the row of an ingest throughput scenario: total events of
// size bytes in batches of batch applied in el, allocations counted from
// m0 (read when the measurement started).
func (r *run) ingestRow(size, batch, total int, el time.Duration, m0 *runtime.MemStats, clients string) []Result {
	var m1 runtime.MemStats
	runtime.ReadMemStats(&m1)
	return []Result{{Scenario: r.name, Group: "ingest",
		Setup:        Setup{Keys: ingestKeys, EventBytes: size, Batch: batch, Partitions: 64, Nodes: 1, Cores: runtime.NumCPU(), Events: total},
		EventsPerSec: float64(total) / el.Seconds(), Duration: el, RSSBytes: rss(),
		AllocsPerEvent: float64(m1.Mallocs-m0.Mallocs) / float64(total),
		Figures:        []Figure{{"clients", clients}}}}
}

// natsNode starts a node with 100K live keys (after is its AfterApply)
// and returns a NATS connection to its embedded server (closed with the
// scenario).
func (r *run) natsNode(after func([]event.Event)) (*nats.Conn, error) {
	n := r.startNode(nil, 0, "", after)
	hc := &http.Client{}
	defer hc.CloseIdleConnections()
	if err := warm(hc, "http://"+n.HTTPAddr()+api.PathEvents); err != nil {
		return nil, err
	}
	nc, err := nats.Connect(n.NATSURL())
	if err != nil {
		return nil, err
	}
	r.tb.Cleanup(nc.Close)
	return nc, nil
}

// natsPublish: one publisher sends NDJSON batches to squall.events without
// a reply subject (fire and forget, the node applies them asynchronously),
// keeping at most 64 batches ahead of what the node has applied so the
// subscription never overflows; timed until the last event is applied.
func natsPublish(batch int) func(r *run) ([]Result, error) {
	return func(r *run) ([]Result, error) {
		var applied atomic.Int64
		nc, err := r.natsNode(func(evs []event.Event) { applied.Add(int64(len(evs))) })
		if err != nil {
			return nil, err
		}
		bs, size := bodies(64, batch, uint64(batch)+2)
		base := applied.Load()
		var m0 runtime.MemStats
		runtime.ReadMemStats(&m0)
		r.status("publishing batches of %d", batch)
		start := time.Now()
		sent := 0
		for i := 0; time.Since(start) < r.sc.ingestFor; i++ {
			for int64(sent)-(applied.Load()-base) > int64(64*batch) {
				time.Sleep(50 * time.Microsecond)
			}
			if err := nc.Publish("squall.events", bs[i%len(bs)]); err != nil {
				return nil, err
			}
			sent += batch
		}
		for deadline := time.Now().Add(30 * time.Second); applied.Load()-base < int64(sent); {
			if time.Now().After(deadline) {
				return nil, fmt.Errorf("%d of %d published events applied after 30s", applied.Load()-base, sent)
			}
			time.Sleep(100 * time.Microsecond)
		}
		return r.ingestRow(size, batch, sent, time.Since(start), &m0, "1 NATS publisher (no reply), at most 64 batches ahead of apply"), nil
	}
}

// natsThroughput: 4 publishers send NDJSON batches to squall.events as
// requests; the reply comes once the events are applied.
func natsThroughput(batch int) func(r *run) ([]Result, error) {
	return func(r *run) ([]Result, error) {
		nc, err := r.natsNode(nil)
		if err != nil {
			return nil, err
		}
		bs, size := bodies(64, batch, uint64(batch)+1)
		const publishers = 4
		var m0 runtime.MemStats
		runtime.ReadMemStats(&m0)
		r.status("requesting batches of %d", batch)
		total, el, err := workers(publishers, r.sc.ingestFor, func(w, i int) (int, error) {
			msg, err := nc.Request("squall.events", bs[(w*16+i)%len(bs)], 10*time.Second)
			if err != nil {
				return 0, err
			}
			var ir api.IngestResponse
			if err := json.Unmarshal(msg.Data, &ir); err != nil {
				return 0, err
			}
			return ir.Accepted, nil
		})
		if err != nil {
			return nil, err
		}
		return r.ingestRow(size, batch, total, el, &m0, fmt.Sprintf("%d NATS requesters, embedded server", publishers)), nil
	}
}

// offered is what latencyAt measured at a fixed offered load.
type offered struct {
	sent *Latency // request sent → answered: the headline figure
	due  *Latency // from the time the request was due, with the generator's lateness
	late *Latency // the generator's lateness: due → sent
	size int      // mean event size, bytes
}

// latencyAt offers rate events/s in batches of batch through send, which
// returns once they are applied. It is open loop: each batch is sent on a
// goroutine of its own at the time it is due, whether or not earlier ones
// have been answered (up to 256 outstanding), so a slow answer does not
// delay the next send and hide itself (no coordinated omission). A batch's
// latency runs from when it was sent; the time from when it was due is
// recorded too, with the difference, the generator's own lateness: its
// sleeps end on the runtime's timer, whose wake-ups on this VM land up to
// ~1.2 ms after the due time, and that is not Squall's.
func latencyAt(rate, batch int, d time.Duration, send func(body []byte) error) (*offered, error) {
	bs, size := bodies(256, batch, 99)
	var sentH, dueH, lateH Histogram
	sem := make(chan struct{}, 256)
	var wg sync.WaitGroup
	var firstErr atomic.Value
	start := time.Now()
	perBatch := time.Duration(float64(time.Second) * float64(batch) / float64(rate))
	for i := 0; ; i++ {
		due := start.Add(time.Duration(i) * perBatch)
		if due.Sub(start) >= d {
			break
		}
		if w := time.Until(due); w > 0 {
			time.Sleep(w)
		}
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			sent := time.Now()
			if err := send(bs[i%len(bs)]); err != nil {
				firstErr.CompareAndSwap(nil, err)
				return
			}
			done := time.Now()
			sentH.Record(done.Sub(sent))
			dueH.Record(done.Sub(due))
			lateH.Record(sent.Sub(due))
		}()
	}
	wg.Wait()
	if err, _ := firstErr.Load().(error); err != nil {
		return nil, err
	}
	return &offered{sent: sentH.Latency(float64(rate)), due: dueH.Latency(float64(rate)),
		late: lateH.Latency(float64(rate)), size: size}, nil
}

// latencyNode starts the node the latency scenarios measure: a
// squall-node process of its own when the binary is there (so the load
// generator's garbage is not the node's), in-process otherwise. It returns
// its HTTP address, NATS URL, and how it runs.
func (r *run) latencyNode() (httpAddr, natsURL, where string, err error) {
	return r.latencyNodeIn("")
}

// latencyNodeIn is latencyNode with the data directory dir ("": memory
// only).
func (r *run) latencyNodeIn(dir string) (httpAddr, natsURL, where string, err error) {
	if r.NodeBinary != "" {
		p, err := r.startProc("--http-addr", "127.0.0.1:0", "--nats-addr", "127.0.0.1:0", "--node-id", "bench", "--data-dir", dir)
		if err != nil {
			return "", "", "", err
		}
		return p.httpAddr, p.natsURL, "node process of its own, client in the harness, same 2 cores", nil
	}
	n := r.startNodeWith(nil, 0, "", nil, func(c *node.Config) { c.DataDir = dir })
	return n.HTTPAddr(), n.NATSURL(), "node in the harness's process", nil
}

// httpLatency: HTTP POST → 202 at the fixed offered load, in batches of
// batch events, on a memory-only node (202 once applied).
func httpLatency(batch int) func(r *run) ([]Result, error) {
	return func(r *run) ([]Result, error) {
		return httpLatencyIn(r, "", "POST sent → 202 (events applied)", batch)
	}
}

// httpLatencyDurable: httpLatency on a node with a data directory: the
// 202 comes once the batch is stored in the log.
func httpLatencyDurable(batch int) func(r *run) ([]Result, error) {
	return func(r *run) ([]Result, error) {
		return httpLatencyIn(r, r.tb.TempDir(), "POST sent → 202 (batch stored in the embedded JetStream log)", batch)
	}
}

func httpLatencyIn(r *run, dir, measured string, batch int) ([]Result, error) {
	addr, _, where, err := r.latencyNodeIn(dir)
	if err != nil {
		return nil, err
	}
	url := "http://" + addr + api.PathEvents
	cl := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 256}}
	defer cl.CloseIdleConnections()
	if err := warm(cl, url); err != nil {
		return nil, err
	}
	res, err := r.latency("HTTP", measured, where, batch, func(b []byte) error {
		_, err := postBody(cl, url, b)
		return err
	})
	if err != nil {
		return nil, err
	}
	// The floor: a request that does nothing, at the same request rate,
	// between the same two processes.
	r.status("the floor: GET %s at the same request rate", api.PathHealthz)
	floor, err := latencyAt(r.sc.latencyRate, batch, r.sc.latencyFor/2, func([]byte) error {
		resp, err := cl.Get("http://" + addr + api.PathHealthz)
		if err != nil {
			return err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		return resp.Body.Close()
	})
	if err != nil {
		return nil, err
	}
	res[0].Figures = append(res[0].Figures, Figure{"floor", "GET " + api.PathHealthz + " at the same request rate: " +
		floor.sent.String() + " (from due: " + floor.due.String() + ")"})
	return res, nil
}

func natsLatency(r *run) ([]Result, error) {
	addr, natsURL, where, err := r.latencyNode()
	if err != nil {
		return nil, err
	}
	hc := &http.Client{}
	defer hc.CloseIdleConnections()
	if err := warm(hc, "http://"+addr+api.PathEvents); err != nil {
		return nil, err
	}
	nc, err := nats.Connect(natsURL)
	if err != nil {
		return nil, err
	}
	defer nc.Close()
	return r.latency("NATS", "request sent → reply (events applied)", where, 100, func(b []byte) error {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, err := nc.RequestWithContext(ctx, "squall.events", b)
		return err
	})
}

// latency offers the scenario's fixed load through send and makes the row.
func (r *run) latency(over, measured, where string, batch int, send func(body []byte) error) ([]Result, error) {
	r.status("offering %s events/s over %s", count(r.sc.latencyRate), over)
	m0 := sampleMachine()
	o, err := latencyAt(r.sc.latencyRate, batch, r.sc.latencyFor, send)
	if err != nil {
		return nil, err
	}
	m1 := sampleMachine()
	return []Result{{Scenario: r.name, Group: "ingest",
		Setup:   Setup{Keys: ingestKeys, EventBytes: o.size, Batch: batch, Partitions: 64, Nodes: 1, Cores: runtime.NumCPU(), Events: o.sent.Samples * batch},
		Latency: o.sent, AllocsPerEvent: -1, Duration: r.sc.latencyFor,
		Figures: []Figure{{"measured", measured}, {"node", where},
			{"from due", o.due.String() + ", the generator's lateness (due → sent) " + o.late.String()},
			stealFigure(m0, m1)}}}, nil
}

// memory: keys live keys with 10 samples each, applied in-process; RSS of
// the process and heap per key.
func memory(r *run) ([]Result, error) {
	n := r.startNode(nil, 0, "", nil)
	keys := r.sc.memoryKeys
	debug.FreeOSMemory() // earlier scenarios' garbage leaves the RSS
	var m0, m1 runtime.MemStats
	runtime.ReadMemStats(&m0)
	rss0 := rss()
	ctx := context.Background()
	const batch = 10_000
	evs := make([]event.Event, 0, batch)
	names := make([]string, keys)
	for k := range names {
		names[k] = keyName(k)
	}
	out := make([]actors.Result, batch)
	for s := range 10 {
		for k := 0; k < keys; k += batch {
			evs = evs[:0]
			for i := k; i < min(k+batch, keys); i++ {
				evs = append(evs, event.Event{Key: names[i], TS: t0 + int64(s)*1000, Value: float64(i%100) + float64(s)})
			}
			if err := n.Engine().Submit(ctx, evs, out[:len(evs)]); err != nil {
				return nil, err
			}
		}
		r.status("sample %d of 10 applied to %s keys", s+1, count(keys))
	}
	names = nil
	debug.FreeOSMemory()
	runtime.ReadMemStats(&m1)
	live := n.Engine().Live()
	if live != int64(keys) {
		return nil, fmt.Errorf("%d keys live, want %d", live, keys)
	}
	total := rss()
	return []Result{{Scenario: r.name, Group: "memory",
		Setup:       Setup{Keys: keys, Partitions: 64, Nodes: 1, Cores: runtime.NumCPU(), Events: 10 * keys},
		RSSBytes:    total,
		BytesPerKey: float64(int64(m1.HeapAlloc)-int64(m0.HeapAlloc)) / float64(keys), AllocsPerEvent: -1,
		Figures: []Figure{{"RSS growth", fmt.Sprintf("%.0f MiB (%.0f B/key)", float64(total-rss0)/(1<<20), float64(total-rss0)/float64(keys))},
			{"target", "≤ 2 GiB RSS for 1M keys"}}}}, nil
}
