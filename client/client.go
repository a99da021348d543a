// Package client is the Go client of a Squall node: send events over HTTP
// or NATS; read a key's state, list keys, describe the cluster and list the
// firing alerts over HTTP.
//
// # Retries
//
// Send tries a batch again (WithRetries: 3 attempts in all by default) when
// the node could not take all of it for reasons of its own: it was shedding
// load (429), failed or was unavailable (503 and other 5xx), or could not be
// reached. Before each new attempt it waits as long as the node's
// Retry-After asks (else the backoff, doubling from 100 ms), at most
// WithMaxRetryWait (default 10 s), and never past ctx: when the wait would
// end after ctx's deadline, Send returns at once.
//
// When the node's answer names the events a retry may succeed on
// (event.Rejection.Retry: shed, failed on the server), Send sends exactly
// those again, and no event the node took. The answers are merged: the
// IngestResponse Send returns covers the whole batch, its counts summed over
// the attempts and its rejections indexed in the caller's numbering. This
// is exact with or without ids.
//
// When an attempt gets no answer (connection lost, timeout), Send cannot
// know what the node took and sends the whole rest of the batch again. That
// is safe because Send gives every event without an id one by default: the
// key drops a second event with an id it has seen, and counts it as a
// duplicate. With WithoutAutoID, events without ids may be counted twice
// after a lost answer.
package client

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/squallhq/squall/api"
	"github.com/squallhq/squall/event"
)

// Errors returned by the client.
var (
	// ErrNotFound: the key has no live actor.
	ErrNotFound = errors.New("client: key has no live actor")
)

// StatusError is a non-success answer from the node.
type StatusError struct {
	// Status is the HTTP status (0 over NATS).
	Status int
	// Message is the node's error text.
	Message string
	// Response is the ingest answer, when the request was a Send: merged
	// over Send's attempts, it covers the whole batch in the caller's
	// numbering (what was accepted, what was rejected and why, and the
	// events still to retry, with Retry set).
	Response *api.IngestResponse
	// RetryAfter is how long the node asked to wait before a retry
	// (Retry-After), 0 when it did not say.
	RetryAfter time.Duration
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("squall: %d %s: %s", e.Status, http.StatusText(e.Status), e.Message)
}

// retryable reports whether a later attempt may succeed: the node was
// shedding, not ready, or answered with a server error.
func (e *StatusError) retryable() bool {
	return e.Status == http.StatusTooManyRequests || e.Status >= 500
}

// Client talks to one node. It is safe for concurrent use.
type Client struct {
	base     *url.URL
	hc       *http.Client
	token    string
	nc       *nats.Conn
	subject  string
	attempts int
	backoff  time.Duration
	maxWait  time.Duration
	autoID   bool
	idPrefix string
	seq      atomic.Uint64
}

// Option configures a Client.
type Option func(*Client)

// WithHTTPClient sets the HTTP client. Default: one with a 30 s timeout.
func WithHTTPClient(hc *http.Client) Option { return func(c *Client) { c.hc = hc } }

// WithToken sets the bearer token. Default none.
func WithToken(token string) Option { return func(c *Client) { c.token = token } }

// WithNATS makes Send publish to subject on nc as a request, answered once
// the events are applied. Default: Send uses HTTP. Subject "" means
// "squall.events".
func WithNATS(nc *nats.Conn, subject string) Option {
	return func(c *Client) {
		c.nc, c.subject = nc, subject
		if c.subject == "" {
			c.subject = "squall.events"
		}
	}
}

// WithRetries sets how many times Send tries a batch when the node sheds
// load, is not ready, fails, or cannot be reached, with backoff starting at
// backoff and doubling when the node gives no Retry-After. Default 3
// attempts, 100 ms.
func WithRetries(attempts int, backoff time.Duration) Option {
	return func(c *Client) { c.attempts, c.backoff = max(attempts, 1), backoff }
}

// WithMaxRetryWait caps the wait before a retry, whether the node's
// Retry-After or the backoff asks for more. Default 10 s.
func WithMaxRetryWait(d time.Duration) Option { return func(c *Client) { c.maxWait = max(d, 0) } }

// WithoutAutoID stops Send from giving an id to events that have none.
// By default it does, so that a batch sent again after a lost answer is
// not counted twice: the key drops a second event with the same id inside
// its window. Resending the events an answer names (shed, failed) is exact
// without ids too.
func WithoutAutoID() Option { return func(c *Client) { c.autoID = false } }

// New returns a client of the node whose HTTP API is at baseURL
// (e.g. "http://127.0.0.1:8080").
func New(baseURL string, opts ...Option) (*Client, error) {
	u, err := url.Parse(strings.TrimRight(baseURL, "/"))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("client: base URL %q: want http(s)://host:port", baseURL)
	}
	var b [6]byte
	if _, err := rand.Read(b[:]); err != nil {
		return nil, fmt.Errorf("client: id prefix: %w", err)
	}
	c := &Client{base: u, hc: &http.Client{Timeout: 30 * time.Second}, attempts: 3,
		backoff: 100 * time.Millisecond, maxWait: 10 * time.Second, autoID: true, idPrefix: hex.EncodeToString(b[:]) + "-"}
	for _, o := range opts {
		o(c)
	}
	return c, nil
}

// Send sends events and returns the node's answer, covering every event
// (merged over its attempts, see the package doc). Events rejected by the
// node are listed in the answer, not returned as an error; an error means
// the batch was refused as a whole, or that some events were still not
// taken when Send gave up: a *StatusError then carries the merged answer,
// listing those events with Retry set.
func (c *Client) Send(ctx context.Context, events ...event.Event) (*api.IngestResponse, error) {
	if len(events) == 0 {
		return &api.IngestResponse{Rejected: []event.Rejection{}}, nil
	}
	if c.autoID {
		events = append([]event.Event(nil), events...)
		for i := range events {
			if events[i].ID == "" {
				events[i].ID = c.idPrefix + strconv.FormatUint(c.seq.Add(1), 36)
			}
		}
	}
	s := newSendState(events)
	wait := c.backoff
	for attempt := 0; ; attempt++ {
		res, err := c.sendOnce(ctx, event.AppendNDJSON(nil, s.batch))
		var se *StatusError
		isStatus := errors.As(err, &se)
		if err != nil && !isStatus && ctx.Err() != nil {
			return nil, s.fail(err)
		}
		if isStatus {
			res = se.Response
			s.status = se.Status
		}
		retry := err != nil && (!isStatus || se.retryable()) // the whole batch, unless res says which
		if res != nil {
			s.answered = true
			switch again, said := s.merge(res); {
			case again > 0:
				retry = true
				if err == nil { // a NATS answer with events shed or failed
					err = &StatusError{Message: fmt.Sprintf("%d events to send again", again)}
				}
			case err == nil:
				return s.total(), nil
			case said:
				retry = false // the node decided on the batch and named nothing to resend
			}
		}
		if !retry || attempt+1 >= c.attempts {
			return nil, s.fail(err)
		}
		d := wait
		if isStatus && se.RetryAfter > 0 {
			d = se.RetryAfter
		}
		d = min(d, c.maxWait)
		if dl, ok := ctx.Deadline(); ok && time.Until(dl) < d {
			return nil, s.fail(fmt.Errorf("client: next attempt in %v would pass the context's deadline: %w", d, err))
		}
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, s.fail(errors.Join(ctx.Err(), err))
		case <-t.C:
		}
		wait *= 2
	}
}

func (c *Client) sendOnce(ctx context.Context, body []byte) (*api.IngestResponse, error) {
	if c.nc != nil {
		return c.sendNATS(ctx, body)
	}
	return c.sendHTTP(ctx, body)
}

// sendState is one Send's progress: the events still to send and the
// answers so far, in the caller's numbering.
type sendState struct {
	events  []event.Event
	batch   []event.Event // the events of the next attempt
	index   []int         // index[i]: the caller's index of batch[i]
	sum     api.IngestResponse
	pending []event.Rejection // the last answer's rejections to retry
	status  int               // the last answer's HTTP status
	// answered is set once the node answered an attempt.
	answered bool
}

func newSendState(events []event.Event) *sendState {
	s := &sendState{events: events, batch: events, index: make([]int, len(events))}
	for i := range s.index {
		s.index[i] = i
	}
	s.sum.Rejected = []event.Rejection{}
	return s
}

// merge adds an answer to the batch just sent to the sum, and makes the
// events it asks to resend the next batch. It returns how many those are,
// and whether the answer decided on any event (an answer that did not,
// such as "not ready", leaves the state as it was).
func (s *sendState) merge(res *api.IngestResponse) (again int, said bool) {
	s.sum.Error = res.Error
	if res.Accepted == 0 && len(res.Rejected) == 0 && res.RejectedOmitted == 0 {
		return 0, false
	}
	s.sum.Accepted += res.Accepted
	s.sum.RejectedOmitted += res.RejectedOmitted
	addCount(&s.sum.Late, res.Late)
	addCount(&s.sum.Duplicate, res.Duplicate)
	var resend []int
	s.pending = s.pending[:0]
	for _, r := range res.Rejected {
		if r.Index >= 0 && r.Index < len(s.index) {
			if r.Retry {
				resend = append(resend, r.Index)
			}
			r.Index = s.index[r.Index]
		} else {
			r.Index = -1 // not one of ours: unknown position
		}
		if r.Retry && r.Index >= 0 {
			s.pending = append(s.pending, r)
		} else {
			s.sum.Rejected = append(s.sum.Rejected, r)
		}
	}
	if len(resend) == 0 {
		return 0, true
	}
	batch, index := make([]event.Event, len(resend)), make([]int, len(resend))
	for i, j := range resend {
		batch[i], index[i] = s.batch[j], s.index[j]
	}
	s.batch, s.index = batch, index
	return len(resend), true
}

func addCount(sum **int, n *int) {
	if n == nil {
		return
	}
	if *sum == nil {
		*sum = new(int)
	}
	**sum += *n
}

// total is the merged answer: the rejections of every attempt and those
// of the last one still to retry, by index.
func (s *sendState) total() *api.IngestResponse {
	t := s.sum
	t.Rejected = append(append([]event.Rejection{}, s.sum.Rejected...), s.pending...)
	sort.SliceStable(t.Rejected, func(i, j int) bool { return t.Rejected[i].Index < t.Rejected[j].Index })
	return &t
}

// fail returns err, the last attempt's, with a *StatusError carrying the
// merged answer when the node answered any attempt.
func (s *sendState) fail(err error) error {
	if !s.answered {
		return err
	}
	var se *StatusError
	if errors.As(err, &se) { // made by this Send: ours to complete
		se.Response = s.total()
		return err
	}
	return &StatusError{Status: s.status, Message: err.Error(), Response: s.total()}
}

func (c *Client) sendHTTP(ctx context.Context, body []byte) (*api.IngestResponse, error) {
	req, err := c.request(ctx, http.MethodPost, api.PathEvents, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/x-ndjson")
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("client: send: %w", err)
	}
	defer resp.Body.Close()
	ra := retryAfter(resp.Header.Get("Retry-After"), time.Now())
	var res api.IngestResponse
	if err := json.NewDecoder(io.LimitReader(resp.Body, 64<<20)).Decode(&res); err != nil {
		return nil, &StatusError{Status: resp.StatusCode, Message: "unreadable answer: " + err.Error(), RetryAfter: ra}
	}
	if resp.StatusCode != http.StatusAccepted {
		msg := res.Error
		if msg == "" {
			msg = fmt.Sprintf("%d accepted, %d rejected", res.Accepted, len(res.Rejected))
		}
		return nil, &StatusError{Status: resp.StatusCode, Message: msg, Response: &res, RetryAfter: ra}
	}
	return &res, nil
}

// retryAfter parses a Retry-After value, seconds or an HTTP date; 0 when
// absent or unreadable.
func retryAfter(v string, now time.Time) time.Duration {
	if v == "" {
		return 0
	}
	if n, err := strconv.Atoi(v); err == nil {
		return time.Duration(max(n, 0)) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(t.Sub(now), 0)
	}
	return 0
}

func (c *Client) sendNATS(ctx context.Context, body []byte) (*api.IngestResponse, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
	}
	msg := nats.NewMsg(c.subject)
	msg.Header.Set("Content-Type", "application/x-ndjson")
	msg.Data = body
	reply, err := c.nc.RequestMsgWithContext(ctx, msg)
	if err != nil {
		return nil, fmt.Errorf("client: nats request: %w", err)
	}
	var res api.IngestResponse
	if err := json.Unmarshal(reply.Data, &res); err != nil {
		return nil, fmt.Errorf("client: unreadable nats answer: %w", err)
	}
	if res.Error != "" {
		return nil, &StatusError{Message: res.Error, Response: &res}
	}
	return &res, nil
}

// Get returns the state of key, or ErrNotFound.
func (c *Client) Get(ctx context.Context, key string) (*api.KeyState, error) {
	var st api.KeyState
	if err := c.getInto(ctx, api.PathActor+url.PathEscape(key), nil, true, &st); err != nil {
		return nil, err
	}
	return &st, nil
}

// GetRaw returns the key-state document of key as the node sent it (the
// JSON of api.KeyState, byte for byte), or ErrNotFound.
func (c *Client) GetRaw(ctx context.Context, key string) (json.RawMessage, error) {
	return c.getBody(ctx, api.PathActor+url.PathEscape(key), nil, true)
}

// Scope says which nodes a listing covers.
type Scope string

// Scopes of Keys and Alerts.
const (
	// ScopeNode covers the node the client talks to.
	ScopeNode Scope = "node"
	// ScopeCluster covers every member of the cluster (the same as
	// ScopeNode on a standalone node).
	ScopeCluster Scope = "cluster"
)

// KeysOptions filters Keys.
type KeysOptions struct {
	// Prefix keeps the keys that start with it. Default "": every key.
	Prefix string
	// Limit is the most keys returned; 0 means the node's default (100).
	// The node refuses more than its maximum (10,000 by default).
	Limit int
	// Scope is ScopeNode or ScopeCluster. Default "": the node's default,
	// ScopeNode.
	Scope Scope
}

// Keys lists live keys, sorted by key (GET /debug/actors). The answer's
// Truncated is set when more keys matched than the limit.
func (c *Client) Keys(ctx context.Context, o KeysOptions) (*api.KeyList, error) {
	q := url.Values{}
	if o.Prefix != "" {
		q.Set("prefix", o.Prefix)
	}
	if o.Limit > 0 {
		q.Set("limit", strconv.Itoa(o.Limit))
	}
	if o.Scope != "" {
		q.Set("scope", string(o.Scope))
	}
	var kl api.KeyList
	if err := c.getInto(ctx, api.PathActors, q, false, &kl); err != nil {
		return nil, err
	}
	return &kl, nil
}

// Cluster describes the cluster as the node sees it (GET /debug/cluster):
// members, leader, epoch and generation, the partition assignment, traffic
// with each peer, and whether the node is ready.
func (c *Client) Cluster(ctx context.Context) (*api.Cluster, error) {
	var doc api.Cluster
	if err := c.getInto(ctx, api.PathCluster, nil, false, &doc); err != nil {
		return nil, err
	}
	return &doc, nil
}

// Alerts returns the alerts firing now (GET /debug/alerts) on the node or,
// with ScopeCluster, on every member; members that did not answer are named
// in the answer's Errors. Scope "" is the node's default, ScopeNode. Each
// entry's Alert decodes into an api.Alert.
func (c *Client) Alerts(ctx context.Context, scope Scope) (*api.Alerts, error) {
	q := url.Values{}
	if scope != "" {
		q.Set("scope", string(scope))
	}
	var doc api.Alerts
	if err := c.getInto(ctx, api.PathAlerts, q, false, &doc); err != nil {
		return nil, err
	}
	return &doc, nil
}

// Events returns the events key's actor keeps (GET
// /debug/actors/{key}/events): its last --recent-events events of any
// outcome, with ids and tags, and whether they are all the events behind
// its state (api.KeyEvents.Complete). In a cluster the node asks the key's
// owner. It returns ErrNotFound when the key has no live actor, a
// *StatusError for another non-200 answer. It is safe for concurrent use.
func (c *Client) Events(ctx context.Context, key string) (*api.KeyEvents, error) {
	var doc api.KeyEvents
	if err := c.getInto(ctx, api.PathActor+url.PathEscape(key)+api.PathActorEvents, nil, true, &doc); err != nil {
		return nil, err
	}
	return &doc, nil
}

// Rules returns the alert rules in force on the node (GET /debug/rules):
// its --rules file as last loaded; File is empty when it runs none. Each
// node of a cluster loads its own file: ask the key's node (KeyState.Node,
// its HTTP address in the cluster's members) for the rules a key runs. It
// is safe for concurrent use.
func (c *Client) Rules(ctx context.Context) (*api.Rules, error) {
	var doc api.Rules
	if err := c.getInto(ctx, api.PathRules, nil, false, &doc); err != nil {
		return nil, err
	}
	return &doc, nil
}

// getInto GETs path?q and decodes the JSON answer into v (see getBody).
func (c *Client) getInto(ctx context.Context, path string, q url.Values, notFound bool, v any) error {
	body, err := c.getBody(ctx, path, q, notFound)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(body, v); err != nil {
		return fmt.Errorf("client: GET %s: unreadable answer: %w", path, err)
	}
	return nil
}

// getBody GETs path?q and returns the body of a 200 answer; any other is a
// *StatusError, or ErrNotFound for a 404 when notFound is set.
func (c *Client) getBody(ctx context.Context, path string, q url.Values, notFound bool) ([]byte, error) {
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	req, err := c.request(ctx, http.MethodGet, path, nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("client: GET %s: %w", path, err)
	}
	defer resp.Body.Close()
	if notFound && resp.StatusCode == http.StatusNotFound {
		return nil, ErrNotFound
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, fmt.Errorf("client: GET %s: %w", path, err)
	}
	if resp.StatusCode != http.StatusOK {
		var e api.Error
		if json.Unmarshal(body, &e) != nil || e.Error == "" {
			e.Error = strings.TrimSpace(string(body[:min(len(body), 512)]))
		}
		return nil, &StatusError{Status: resp.StatusCode, Message: e.Error,
			RetryAfter: retryAfter(resp.Header.Get("Retry-After"), time.Now())}
	}
	return body, nil
}

func (c *Client) request(ctx context.Context, method, path string, body io.Reader) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, method, c.base.String()+path, body)
	if err != nil {
		return nil, fmt.Errorf("client: %w", err)
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	return req, nil
}
