package chaos

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sort"
	"sync"
	"time"

	"github.com/squallhq/squall/api"
	"github.com/squallhq/squall/cluster"
)

// Reading retries.
const (
	readAttempts = 5
	readBackoff  = 500 * time.Millisecond
	readWorkers  = 8
)

// KeyReading is one key's state read through one node.
type KeyReading struct {
	Node   string  `json:"node"`
	Status int     `json:"status"` // 200, or 404: no live actor (count 0)
	Count  uint64  `json:"count"`
	Sum    float64 `json:"sum"`
	Dups   uint64  `json:"duplicates_dropped"`
	Owner  string  `json:"owner,omitempty"`
	Err    string  `json:"err,omitempty"` // no usable answer after retries
}

func (r KeyReading) same(o KeyReading) bool {
	return r.Status == o.Status && r.Count == o.Count && r.Sum == o.Sum
}

// ReadKeys reads every key through every node of c (GET
// /debug/actors/{key}), retrying transport errors and 5xx answers a few
// times. It returns, per key index, one reading per node in node order.
func ReadKeys(ctx context.Context, c *Cluster, keys []string) [][]KeyReading {
	hc := &http.Client{Timeout: 10 * time.Second}
	defer hc.CloseIdleConnections()
	out := make([][]KeyReading, len(keys))
	idx := make(chan int)
	var wg sync.WaitGroup
	for range readWorkers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := range idx {
				rs := make([]KeyReading, len(c.Nodes))
				for i, n := range c.Nodes {
					rs[i] = readKey(ctx, hc, n, keys[k])
				}
				out[k] = rs
			}
		}()
	}
	for k := range keys {
		idx <- k
	}
	close(idx)
	wg.Wait()
	return out
}

func readKey(ctx context.Context, hc *http.Client, n *Node, key string) KeyReading {
	r := KeyReading{Node: n.ID}
	for attempt := 0; attempt < readAttempts; attempt++ {
		if attempt > 0 && !sleepUntil(ctx, time.Now().Add(readBackoff)) {
			break
		}
		status, st, err := getKey(ctx, hc, n.HTTPAddr, key)
		if err != nil {
			r.Err = err.Error()
			continue
		}
		switch status {
		case http.StatusOK:
			return KeyReading{Node: n.ID, Status: status, Count: st.Window.Count, Sum: st.Window.Sum,
				Dups: st.DuplicatesDropped, Owner: st.Node}
		case http.StatusNotFound:
			return KeyReading{Node: n.ID, Status: status}
		default:
			r.Err = fmt.Sprintf("status %d", status)
		}
	}
	return r
}

func getKey(ctx context.Context, hc *http.Client, addr, key string) (int, *api.KeyState, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/debug/actors/"+url.PathEscape(key), nil)
	if err != nil {
		return 0, nil, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return 0, nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return resp.StatusCode, nil, nil
	}
	var st api.KeyState
	if err := json.Unmarshal(body, &st); err != nil {
		return 0, nil, err
	}
	return resp.StatusCode, &st, nil
}

// KeyResult is one key's comparison of what was written with what was
// read.
type KeyResult struct {
	Key       string       `json:"key"`
	WithIDs   bool         `json:"with_ids"`
	Partition int32        `json:"partition"`
	Book      KeyBook      `json:"book"`
	Readings  []KeyReading `json:"readings"`
	// Lost is how many acknowledged events the worst reading misses
	// (count below Book.Acked); Doubled how many events it counts beyond
	// every acknowledged and indeterminate one.
	Lost    int64 `json:"lost"`
	Doubled int64 `json:"doubled"`
	// SumOut is true when a reading's sum is outside [acked sum, acked +
	// indeterminate sum] (possible with a count inside its bounds: a loss
	// and a double counting at once).
	SumOut bool `json:"sum_out"`
	// Disagree is true when two nodes answered differently.
	Disagree bool `json:"disagree"`
	// Unreadable is true when a node gave no usable answer.
	Unreadable bool `json:"unreadable"`
	// Log is what the log holds for the key (nil: not audited);
	// LogDiff is true when a reading differs from it, count or sum.
	Log     *LogCount `json:"log,omitempty"`
	LogDiff bool      `json:"log_diff"`
}

// Wrong reports whether anything is wrong with the key.
func (r *KeyResult) Wrong() bool {
	return r.Lost > 0 || r.Doubled > 0 || r.SumOut || r.Disagree || r.Unreadable
}

// Verification is the final check's outcome.
type Verification struct {
	Lost, Doubled             int64
	KeysLost, KeysDoubled     int
	KeysWrong, SumOut         int
	Disagreements, Unreadable int
	DuplicatesDropped         uint64 // over the keys with ids, as read through the first readable node
	Wrong                     []KeyResult
	// LostByPartition counts the lost events by the key's partition.
	LostByPartition map[int32]int64

	// The log audit (diagnostics): keys whose log holds fewer events than
	// were acknowledged (LogShort, events LogShortEvents); keys whose state
	// differs from their log (LogDiffKeys; events below and above it);
	// LogDiffs lists those not already in Wrong.
	LogShort, LogDiffKeys     int
	LogShortEvents            int64
	BelowLog, AboveLog        int64
	LogDiffs                  []KeyResult
	ReadingsPerKey, KeysAudit int
}

// Verify compares each key's readings with its book: every reading's
// count must lie in [acked, acked + indeterminate] and its sum likewise
// (a 404 reads as 0), and all readings of a key must be equal. logs, when
// not nil, is the log's audit (AuditLog), compared for diagnostics only.
func Verify(keys []string, withIDs int, partitions int32, books []KeyBook, readings [][]KeyReading, logs map[string]*LogCount) Verification {
	v := Verification{LostByPartition: map[int32]int64{}}
	for k, key := range keys {
		b := books[k]
		r := KeyResult{Key: key, WithIDs: k < withIDs, Partition: cluster.Partition(key, int(partitions)),
			Book: b, Readings: readings[k]}
		if logs != nil {
			r.Log = logs[key]
			if r.Log == nil {
				r.Log = &LogCount{}
			}
			v.KeysAudit++
			if r.Log.Expected < b.Acked {
				v.LogShort++
				v.LogShortEvents += b.Acked - r.Log.Expected
			}
		}
		v.ReadingsPerKey = len(readings[k])
		var first *KeyReading
		for i := range r.Readings {
			rd := &r.Readings[i]
			if rd.Err != "" {
				r.Unreadable = true
				continue
			}
			if first == nil {
				first = rd
				if r.WithIDs {
					v.DuplicatesDropped += rd.Dups
				}
			} else if !rd.same(*first) {
				r.Disagree = true
			}
			count := int64(rd.Count)
			if r.Log != nil && (count != r.Log.Expected || rd.Sum != float64(r.Log.ExpSum)) && !r.LogDiff {
				r.LogDiff = true
				v.LogDiffKeys++
				v.BelowLog += max(0, r.Log.Expected-count)
				v.AboveLog += max(0, count-r.Log.Expected)
			}
			r.Lost = max(r.Lost, b.Acked-count)
			r.Doubled = max(r.Doubled, count-(b.Acked+b.Indet))
			if rd.Sum < float64(b.AckedSum) || rd.Sum > float64(b.AckedSum+b.IndetSum) {
				r.SumOut = true
			}
		}
		if !r.Wrong() {
			if r.LogDiff {
				v.LogDiffs = append(v.LogDiffs, r)
			}
			continue
		}
		v.KeysWrong++
		v.Lost += r.Lost
		if r.Lost > 0 {
			v.LostByPartition[r.Partition] += r.Lost
		}
		v.Doubled += r.Doubled
		if r.Lost > 0 {
			v.KeysLost++
		}
		if r.Doubled > 0 {
			v.KeysDoubled++
		}
		if r.SumOut {
			v.SumOut++
		}
		if r.Disagree {
			v.Disagreements++
		}
		if r.Unreadable {
			v.Unreadable++
		}
		v.Wrong = append(v.Wrong, r)
	}
	sort.SliceStable(v.Wrong, func(i, j int) bool {
		return v.Wrong[i].Lost+v.Wrong[i].Doubled > v.Wrong[j].Lost+v.Wrong[j].Doubled
	})
	return v
}
