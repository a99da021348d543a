// Package client is the Go client of a Squall node: send events over HTTP
// or NATS, read a key's state over HTTP.
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
	// Response is the ingest answer, when the request was a Send.
	Response *api.IngestResponse
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
// load, is not ready, or cannot be reached, with backoff starting at
// backoff and doubling. Default 3 attempts, 100 ms.
func WithRetries(attempts int, backoff time.Duration) Option {
	return func(c *Client) { c.attempts, c.backoff = max(attempts, 1), backoff }
}

// WithoutAutoID stops Send from giving an id to events that have none.
// By default it does, so that a retried batch is not counted twice: the
// key drops a second event with the same id inside its window.
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
		backoff: 100 * time.Millisecond, autoID: true, idPrefix: hex.EncodeToString(b[:]) + "-"}
	for _, o := range opts {
		o(c)
	}
	return c, nil
}

// Send sends events and returns the node's answer. Events rejected by the
// node are listed in the answer, not returned as an error; an error means
// the batch as a whole was refused or could not be delivered.
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
	body := event.AppendNDJSON(nil, events)
	var lastErr error
	wait := c.backoff
	for attempt := 0; attempt < c.attempts; attempt++ {
		if attempt > 0 {
			select {
			case <-ctx.Done():
				return nil, errors.Join(ctx.Err(), lastErr)
			case <-time.After(wait):
			}
			wait *= 2
		}
		var res *api.IngestResponse
		var err error
		if c.nc != nil {
			res, err = c.sendNATS(ctx, body)
		} else {
			res, err = c.sendHTTP(ctx, body)
		}
		var se *StatusError
		switch {
		case err == nil:
			return res, nil
		case ctx.Err() != nil:
			return nil, err
		case errors.As(err, &se) && !se.retryable():
			return nil, err
		}
		lastErr = err
	}
	return nil, lastErr
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
	var res api.IngestResponse
	if err := json.NewDecoder(io.LimitReader(resp.Body, 64<<20)).Decode(&res); err != nil {
		return nil, &StatusError{Status: resp.StatusCode, Message: "unreadable answer: " + err.Error()}
	}
	if resp.StatusCode != http.StatusAccepted {
		msg := res.Error
		if msg == "" {
			msg = fmt.Sprintf("%d accepted, %d rejected", res.Accepted, len(res.Rejected))
		}
		return nil, &StatusError{Status: resp.StatusCode, Message: msg, Response: &res}
	}
	return &res, nil
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
	req, err := c.request(ctx, http.MethodGet, api.PathActor+url.PathEscape(key), nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("client: get: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusNotFound {
		return nil, ErrNotFound
	}
	if resp.StatusCode != http.StatusOK {
		var e api.Error
		_ = json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&e)
		return nil, &StatusError{Status: resp.StatusCode, Message: e.Error}
	}
	var st api.KeyState
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		return nil, fmt.Errorf("client: get: %w", err)
	}
	return &st, nil
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
