package bench

import (
	"fmt"
	"io/fs"
	"math/rand/v2"
	"net/http"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/squallhq/squall/api"
	"github.com/squallhq/squall/internal/testproc"
)

// durableReplay: a standalone node process with a data directory takes
// events events over HTTP (batches of 1,000, 4 clients, as fast as it
// stores them); once every partition has applied and committed them, it is
// killed with kill -9 and restarted on the same directory. Figures: disk
// bytes per stored event, the time from the restart to /readyz (every
// partition replayed), and the replay speed it implies.
func durableReplay(events int) func(r *run) ([]Result, error) {
	return func(r *run) ([]Result, error) {
		if r.NodeBinary == "" {
			return nil, fmt.Errorf("no node binary (cmd/squall-bench -node-binary)")
		}
		dir := r.tb.TempDir()
		args := []string{"--http-addr", testproc.FreeAddr(r.tb), "--nats-addr", testproc.FreeAddr(r.tb), "--node-id", "bench",
			"--data-dir", dir, "--max-keys", "4000000"}
		p, err := r.startProc(args...)
		if err != nil {
			return nil, err
		}
		url := "http://" + p.httpAddr + api.PathEvents
		cl := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 16}}
		defer cl.CloseIdleConnections()
		const batch, clients = 1000, 4
		r.status("storing %s events", count(events))
		var next atomic.Int64
		var wg sync.WaitGroup
		var firstErr atomic.Value
		start := time.Now()
		for w := range clients {
			wg.Add(1)
			go func() {
				defer wg.Done()
				rng := rand.New(rand.NewPCG(uint64(w), 3))
				var b []byte
				for {
					j := int(next.Add(batch)) - batch
					if j >= events {
						return
					}
					b = b[:0]
					for i := j; i < min(j+batch, events); i++ {
						b = appendEvent(b, ingestKeys, i, rng, false)
						b = append(b, '\n')
					}
					if _, err := postBody(cl, url, b); err != nil {
						firstErr.CompareAndSwap(nil, err)
						return
					}
				}
			}()
		}
		wg.Wait()
		if err, _ := firstErr.Load().(error); err != nil {
			return nil, err
		}
		stored := time.Since(start)
		r.status("waiting until applied and committed")
		if err := waitLogCommitted(p.httpAddr, 2*time.Minute+time.Duration(events/100_000)*time.Second); err != nil {
			return nil, err
		}
		applied := time.Since(start)
		disk, err := dirBytes(dir)
		if err != nil {
			return nil, err
		}
		r.status("kill -9 and restart")
		_ = p.cmd.Process.Kill()
		<-p.exited
		restart := time.Now()
		p2, err := r.startProc(args...)
		if err != nil {
			return nil, err
		}
		if err := waitReady(p2.httpAddr, 10*time.Minute); err != nil {
			return nil, err
		}
		ready := time.Since(restart)
		perEvent := float64(disk) / float64(events)
		speed := float64(events) / ready.Seconds()
		span := time.Duration(events/ingestKeys) * time.Second // event time covered: one event a second per key
		return []Result{{Scenario: r.name, Group: "durable",
			Setup:        Setup{Keys: ingestKeys, Batch: batch, Partitions: 64, Nodes: 1, Cores: runtime.NumCPU(), Events: events},
			EventsPerSec: speed, Duration: ready, AllocsPerEvent: -1,
			Figures: []Figure{
				{"stored", fmt.Sprintf("%s events stored in %s (%.0f events/s), applied and committed after %s",
					count(events), stored.Round(time.Millisecond), float64(events)/stored.Seconds(), applied.Round(time.Millisecond))},
				{"disk", fmt.Sprintf("%.1f MB in the data directory: %.1f bytes per event (%.0f MB per million events)",
					float64(disk)/1e6, perEvent, perEvent)},
				{"restart to ready", fmt.Sprintf("%s after kill -9 (every partition replayed): %.0f events/s", ready.Round(time.Millisecond), speed)},
				{"data", fmt.Sprintf("%s of event time at %s events/s (one event a second per key)", span, count(ingestKeys))},
			}}}, nil
	}
}

// waitLogCommitted waits until every partition of the node at addr has
// applied its log to the end and committed it.
func waitLogCommitted(addr string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		doc, err := httpDoc(addr)
		if err == nil && len(doc.Sources) > 0 {
			done := true
			for _, s := range doc.Sources {
				if s.Lag != 0 || s.Applied != s.HighWatermark || s.Committed != s.Applied {
					done = false
				}
			}
			if done {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("log not applied and committed after %s", timeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitReady waits for /readyz to answer 200.
func waitReady(addr string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		resp, err := http.Get("http://" + addr + api.PathReadyz)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not ready after %s", addr, timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// dirBytes is the size of the files under dir.
func dirBytes(dir string) (int64, error) {
	var n int64
	err := filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		info, err := d.Info()
		if err == nil {
			n += info.Size()
		}
		return err
	})
	return n, err
}
