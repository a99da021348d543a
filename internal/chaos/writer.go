package chaos

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
)

// Writer settings.
const (
	// requestTimeout bounds one ingest request, HTTP or NATS.
	requestTimeout = 10 * time.Second
	// maxAttempts bounds the attempts of an event with an id.
	maxAttempts = 4
	// natsSubject is where nodes take events (queue group squall).
	natsSubject = "squall.events"
	// natsSwitchEvery is how many batches a NATS writer sends to one node
	// before it picks another.
	natsSwitchEvery = 20
	ndjson          = "application/x-ndjson"
)

// Transports of writers.
const (
	TransportHTTP = "http"
	TransportNATS = "nats"
)

// Writers write events to the cluster's live nodes at a steady total rate
// and book them in a Ledger. Stop is idempotent and joins them.
type Writers struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup
	once   sync.Once
}

// StartWriters starts cfg.HTTPWriters writers posting NDJSON to
// /v1/events and cfg.NATSWriters writers sending requests to the nodes'
// embedded NATS servers, each to a random node that is up.
func StartWriters(c *Cluster, l *Ledger, cfg Config) *Writers {
	ctx, cancel := context.WithCancel(context.Background())
	ws := &Writers{cancel: cancel}
	total := cfg.HTTPWriters + cfg.NATSWriters
	avg := float64(cfg.BatchMin+cfg.BatchMax) / 2
	interval := time.Duration(avg * float64(total) / float64(cfg.Rate) * float64(time.Second))
	for i := range total {
		w := &writer{idx: i, c: c, l: l, cfg: cfg, transport: TransportHTTP,
			rng: rand.New(rand.NewPCG(uint64(cfg.Seed), uint64(i)+1))}
		if i >= cfg.HTTPWriters {
			w.transport = TransportNATS
		} else {
			w.hc = &http.Client{Timeout: requestTimeout, Transport: &http.Transport{
				// A fresh connection per request: a refused dial then
				// proves nothing was sent.
				DisableKeepAlives: true,
			}}
		}
		ws.wg.Add(1)
		go func() {
			defer ws.wg.Done()
			w.run(ctx, interval)
		}()
	}
	return ws
}

// Stop stops the writers and waits until each has booked every event it
// wrote (a request in flight is waited for, at most requestTimeout).
func (ws *Writers) Stop() {
	ws.once.Do(func() {
		ws.cancel()
		ws.wg.Wait()
	})
}

// pending is an event written at least once whose outcome is not final.
type pending struct {
	key      int
	id       string // "" for keys without ids
	ts, v    int64
	attempts int
	best     Outcome
}

type writer struct {
	idx       int
	transport string
	c         *Cluster
	l         *Ledger
	cfg       Config
	rng       *rand.Rand
	seq       int64
	retry     []*pending

	hc      *http.Client
	nc      *nats.Conn
	ncNode  string
	batches int // sent on nc
}

func (w *writer) run(ctx context.Context, interval time.Duration) {
	defer w.close()
	every(ctx, interval, func() {
		if node := w.pick(); node != nil {
			w.send(node, w.batch())
		}
	})
}

// pick returns the node to send the next batch to: a random one that is
// up; a NATS writer keeps its node for natsSwitchEvery batches while it
// stays up.
func (w *writer) pick() *Node {
	up := w.c.InState(Up)
	if len(up) == 0 {
		return nil
	}
	if w.nc != nil && w.batches < natsSwitchEvery {
		for _, n := range up {
			if n.ID == w.ncNode {
				return n
			}
		}
	}
	return up[w.rng.IntN(len(up))]
}

// batch returns the next batch: events to retry first, then new ones.
func (w *writer) batch() []*pending {
	n := w.cfg.BatchMin + w.rng.IntN(w.cfg.BatchMax-w.cfg.BatchMin+1)
	k := min(n, len(w.retry))
	b := append([]*pending(nil), w.retry[:k]...)
	w.retry = w.retry[k:]
	now := time.Now().UnixMilli()
	for len(b) < n {
		key := w.rng.IntN(w.cfg.Keys)
		p := &pending{key: key, ts: now, v: 1 + w.rng.Int64N(9)}
		if key < w.cfg.KeysWithIDs {
			w.seq++
			p.id = "w" + strconv.Itoa(w.idx) + "-" + strconv.FormatInt(w.seq, 10)
		}
		b = append(b, p)
	}
	return b
}

// send sends b to node and books each event's outcome: final, or, for an
// event with an id not yet acknowledged, queued for another attempt.
func (w *writer) send(node *Node, b []*pending) {
	body := encodeBatch(w.l.Keys(), b)
	var outs []Outcome
	var reason string
	if w.transport == TransportHTTP {
		outs, reason = w.postHTTP(node, body, len(b))
	} else {
		outs, reason = w.requestNATS(node, body, len(b))
	}
	tally := map[Outcome]int{}
	for i, p := range b {
		o := outs[i]
		tally[o]++
		p.attempts++
		p.best = max(p.best, o)
		if p.id != "" && p.best != Acked && p.attempts < maxAttempts {
			w.retry = append(w.retry, p)
			continue
		}
		w.l.Final(p.key, p.v, p.best)
	}
	for o, n := range tally {
		w.l.Attempt(w.transport, o, reason, n)
	}
}

// close books the events still queued for a retry with the outcome their
// attempts so far give them, and closes the NATS connection.
func (w *writer) close() {
	for _, p := range w.retry {
		w.l.Final(p.key, p.v, p.best)
	}
	w.retry = nil
	if w.nc != nil {
		w.nc.Close()
	}
	if w.hc != nil {
		w.hc.CloseIdleConnections()
	}
}

// encodeBatch renders b as NDJSON.
func encodeBatch(keys []string, b []*pending) []byte {
	var buf bytes.Buffer
	for _, p := range b {
		k, _ := json.Marshal(keys[p.key]) // a string: cannot fail
		buf.WriteString(`{"key":`)
		buf.Write(k)
		fmt.Fprintf(&buf, `,"ts":%d,"value":%d`, p.ts, p.v)
		if p.id != "" {
			buf.WriteString(`,"id":"` + p.id + `"`)
		}
		buf.WriteString("}\n")
	}
	return buf.Bytes()
}

func all(n int, o Outcome) []Outcome {
	out := make([]Outcome, n)
	for i := range out {
		out[i] = o
	}
	return out
}

func (w *writer) postHTTP(node *Node, body []byte, n int) ([]Outcome, string) {
	req, err := http.NewRequest(http.MethodPost, "http://"+node.HTTPAddr+"/v1/events", bytes.NewReader(body))
	if err != nil {
		return all(n, Failed), "request: " + err.Error()
	}
	req.Header.Set("Content-Type", ndjson)
	resp, err := w.hc.Do(req)
	if err != nil {
		if errors.Is(err, syscall.ECONNREFUSED) {
			return all(n, Failed), "connection refused"
		}
		return all(n, Indeterminate), "transport error: " + errClass(err)
	}
	defer resp.Body.Close()
	rb, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return all(n, Indeterminate), "reading answer: " + errClass(err)
	}
	return classifyIngest(resp.StatusCode, rb, n)
}

func (w *writer) requestNATS(node *Node, body []byte, n int) ([]Outcome, string) {
	if w.nc != nil && (w.nc.IsClosed() || w.batches >= natsSwitchEvery || w.ncNode != node.ID) {
		w.nc.Close()
		w.nc = nil
	}
	if w.nc == nil {
		url := node.NATSURL()
		if url == "" {
			return all(n, Failed), "nats: node down, nothing sent"
		}
		// No reconnect and so no reconnect buffer: a request either goes
		// out on this connection or fails at once.
		nc, err := nats.Connect(url, nats.NoReconnect(), nats.Timeout(2*time.Second),
			nats.Name(fmt.Sprintf("chaos-writer-%d", w.idx)))
		if err != nil {
			return all(n, Failed), "nats: connect failed, nothing sent"
		}
		w.nc, w.ncNode, w.batches = nc, node.ID, 0
	}
	w.batches++
	msg := &nats.Msg{Subject: natsSubject, Data: body, Header: nats.Header{}}
	msg.Header.Set("Content-Type", ndjson)
	reply, err := w.nc.RequestMsg(msg, requestTimeout)
	switch {
	case errors.Is(err, nats.ErrNoResponders):
		// The server delivered the message to no subscriber.
		return all(n, Failed), "nats: no responders"
	case err != nil:
		w.nc.Close()
		w.nc = nil
		return all(n, Indeterminate), "nats: " + errClass(err)
	}
	return classifyIngest(0, reply.Data, n)
}

// errClass shortens an error to its class, for the tallies.
func errClass(err error) string {
	var ne interface{ Timeout() bool }
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, nats.ErrTimeout),
		errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	case errors.Is(err, syscall.ECONNRESET):
		return "connection reset"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "connection closed"
	case errors.Is(err, nats.ErrConnectionClosed):
		return "connection closed"
	}
	return "other"
}
