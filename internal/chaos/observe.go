package chaos

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Partition lifecycle and source states of /debug/cluster.
const (
	StateServing = "serving"
	SourceLive   = "live"
)

// Token is the grant a node serves a partition under: (epoch,
// generation), ordered by epoch then generation. Epoch is 0 when the node
// does not report per-partition tokens (see Obs.Exact): then only the
// generation is known, which every assignment increments.
type Token struct {
	Epoch, Generation int64
}

// Less orders tokens by epoch, then generation.
func (a Token) Less(b Token) bool {
	return a.Epoch < b.Epoch || (a.Epoch == b.Epoch && a.Generation < b.Generation)
}

func (a Token) String() string {
	if a.Epoch == 0 {
		return "?/" + strconv.FormatInt(a.Generation, 10)
	}
	return strconv.FormatInt(a.Epoch, 10) + "/" + strconv.FormatInt(a.Generation, 10)
}

// ParseToken parses "epoch/generation".
func ParseToken(s string) (Token, error) {
	e, g, ok := strings.Cut(s, "/")
	if !ok {
		return Token{}, fmt.Errorf("chaos: token %q is not epoch/generation", s)
	}
	var t Token
	var err1, err2 error
	t.Epoch, err1 = strconv.ParseInt(e, 10, 64)
	t.Generation, err2 = strconv.ParseInt(g, 10, 64)
	if err1 != nil || err2 != nil {
		return Token{}, fmt.Errorf("chaos: token %q is not epoch/generation", s)
	}
	return t, nil
}

// Serve is one partition a node reports serving, with its grant.
type Serve struct {
	Partition int32
	Token     Token
	// Applying is true when the partition's source is replaying or live
	// on the node: it applies the partition's records.
	Applying bool
	// Granted is true when the token is the grant's own: reported by the
	// node (Exact), or, without that, the node's current assignment names
	// it the owner. False: the node serves under an older grant than
	// Token (it is still giving the partition away).
	Granted bool
}

// Obs is one poll of a node's /debug/cluster: when the request was sent,
// when the answer came, and what it said. What it reports held at some
// instant between Sent and Answered.
type Obs struct {
	Node           string // the node polled
	Sent, Answered time.Time
	Err            string // non-empty: no usable answer; the rest is zero

	Self, Leader      string
	Epoch, Generation int64
	// Exact is true when the node reports per-partition states and tokens
	// (the "partitions" list of /debug/cluster); false: Serves is derived from
	// "serving", the assignment and the document's generation.
	Exact  bool
	Serves []Serve
	// Unsettled lists the partitions held in a state other than serving
	// (acquiring, replaying, releasing); Exact only.
	Unsettled []int32
	Sources   map[int32]SourceState
	// Owners is the node's view of the assignment: partition → owner.
	Owners  map[int32]string
	Members []string
	Ready   *bool // nil when the document has no "ready"
}

// SourceState is one partition's source on a node.
type SourceState struct {
	State   string
	Applied int64
}

// ActingLeader reports whether the node says it is the acting leader.
func (o *Obs) ActingLeader() bool { return o.Err == "" && o.Self != "" && o.Leader == o.Self }

// clusterDoc is the part of /debug/cluster the suite reads. Partitions is
// raw: it is the partition count in older nodes and the list of
// per-partition states in newer ones.
type clusterDoc struct {
	Self       string            `json:"self"`
	Leader     string            `json:"leader"`
	Epoch      int64             `json:"epoch"`
	Generation int64             `json:"generation"`
	Serving    []int32           `json:"serving"`
	Partitions json.RawMessage   `json:"partitions"`
	Assignment map[string]string `json:"assignment"`
	Members    []struct {
		ID string `json:"id"`
	} `json:"members"`
	Sources []struct {
		Partition int32  `json:"partition"`
		State     string `json:"state"`
		Applied   int64  `json:"applied"`
	} `json:"sources"`
	Ready *bool `json:"ready"`
}

type partitionDoc struct {
	Partition int32  `json:"partition"`
	State     string `json:"state"`
	Token     string `json:"token"`
}

// parseCluster turns a /debug/cluster body into o's fields.
func parseCluster(body []byte, o *Obs) error {
	var d clusterDoc
	if err := json.Unmarshal(body, &d); err != nil {
		return err
	}
	o.Self, o.Leader, o.Epoch, o.Generation, o.Ready = d.Self, d.Leader, d.Epoch, d.Generation, d.Ready
	o.Owners = make(map[int32]string, len(d.Assignment))
	for p, owner := range d.Assignment {
		n, err := strconv.ParseInt(p, 10, 32)
		if err != nil {
			return fmt.Errorf("assignment key %q: %w", p, err)
		}
		o.Owners[int32(n)] = owner
	}
	for _, m := range d.Members {
		o.Members = append(o.Members, m.ID)
	}
	sort.Strings(o.Members)
	o.Sources = make(map[int32]SourceState, len(d.Sources))
	for _, s := range d.Sources {
		o.Sources[s.Partition] = SourceState{State: s.State, Applied: s.Applied}
	}
	applying := func(p int32) bool {
		st := o.Sources[p].State
		return st == "replaying" || st == SourceLive
	}
	if raw := bytes.TrimSpace(d.Partitions); len(raw) > 0 && raw[0] == '[' {
		var parts []partitionDoc
		if err := json.Unmarshal(raw, &parts); err != nil {
			return fmt.Errorf("partitions: %w", err)
		}
		o.Exact = true
		for _, p := range parts {
			if p.State != StateServing {
				o.Unsettled = append(o.Unsettled, p.Partition)
				continue
			}
			tok, err := ParseToken(p.Token)
			if err != nil {
				return err
			}
			o.Serves = append(o.Serves, Serve{Partition: p.Partition, Token: tok, Applying: applying(p.Partition), Granted: true})
		}
		return nil
	}
	// Without per-partition tokens: a partition served and assigned to
	// this node in its current view is served under that assignment's
	// generation; one served but assigned elsewhere under an older one.
	for _, p := range d.Serving {
		o.Serves = append(o.Serves, Serve{Partition: p, Token: Token{Generation: d.Generation},
			Applying: applying(p), Granted: o.Owners[p] == d.Self})
	}
	return nil
}

// fetchCluster GETs a node's /debug/cluster into an Obs.
func fetchCluster(ctx context.Context, hc *http.Client, node, addr string) Obs {
	o := Obs{Node: node, Sent: time.Now()}
	err := func() error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/debug/cluster", nil)
		if err != nil {
			return err
		}
		resp, err := hc.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
		if err != nil {
			return err
		}
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("status %d", resp.StatusCode)
		}
		return parseCluster(body, &o)
	}()
	o.Answered = time.Now()
	if err != nil {
		o = Obs{Node: node, Sent: o.Sent, Answered: o.Answered, Err: err.Error()}
	}
	return o
}

// Observer polls every node's /debug/cluster while the node is up, and
// keeps every observation. Start it with StartObserver; Stop is
// idempotent and joins its goroutines. Safe for concurrent use.
type Observer struct {
	hc     *http.Client
	cancel context.CancelFunc
	wg     sync.WaitGroup
	once   sync.Once

	mu  sync.Mutex
	obs []Obs
}

// StartObserver starts one poller per node of c, each polling every
// interval with a request timeout of a second. A paused or down node is
// not polled: a request sent to a paused node would be answered only after
// its resume, with a send time from before it.
func StartObserver(c *Cluster, interval time.Duration) *Observer {
	ctx, cancel := context.WithCancel(context.Background())
	o := &Observer{hc: &http.Client{Timeout: time.Second}, cancel: cancel}
	for _, n := range c.Nodes {
		o.wg.Add(1)
		go o.poll(ctx, n, interval)
	}
	return o
}

func (o *Observer) poll(ctx context.Context, n *Node, interval time.Duration) {
	defer o.wg.Done()
	every(ctx, interval, func() {
		if n.State() != Up {
			return
		}
		ob := fetchCluster(ctx, o.hc, n.ID, n.HTTPAddr)
		if ctx.Err() != nil {
			return // cut short by Stop
		}
		o.mu.Lock()
		o.obs = append(o.obs, ob)
		o.mu.Unlock()
	})
}

// every calls fn every interval (ticks missed while fn runs are dropped)
// until ctx ends.
func every(ctx context.Context, interval time.Duration, fn func()) {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			fn()
		}
	}
}

// Stop stops the pollers, waits for them, and returns every observation in
// the order answers came.
func (o *Observer) Stop() []Obs {
	o.once.Do(func() {
		o.cancel()
		o.wg.Wait()
		o.hc.CloseIdleConnections()
	})
	o.mu.Lock()
	defer o.mu.Unlock()
	out := append([]Obs(nil), o.obs...)
	sort.SliceStable(out, func(i, j int) bool { return out[i].Answered.Before(out[j].Answered) })
	return out
}
