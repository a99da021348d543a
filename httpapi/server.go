// Package httpapi serves Squall's HTTP API: event ingest, the debug
// endpoints, metrics, health and pprof, on a mux of its own.
package httpapi

import (
	"bytes"
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/pprof"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/squallhq/squall/actors"
	"github.com/squallhq/squall/api"
	"github.com/squallhq/squall/event"
	"github.com/squallhq/squall/ingest"
)

// Backend is what the HTTP API serves. It is safe for concurrent use.
type Backend interface {
	// Get returns a key's state; an error wrapping actors.ErrNotFound when
	// the key has no live actor.
	Get(ctx context.Context, key string) (*api.KeyState, error)
	// List returns live keys with prefix, at most limit, of this node or,
	// with cluster, of every node.
	List(ctx context.Context, prefix string, limit int, cluster bool) (*api.KeyList, error)
	// Cluster describes the cluster as this node sees it.
	Cluster(ctx context.Context) (*api.Cluster, error)
	// Alerts returns the firing alerts of this node or, with cluster, of
	// every node.
	Alerts(ctx context.Context, cluster bool) (*api.Alerts, error)
}

// Config configures a Server. Start from DefaultConfig.
type Config struct {
	// AuthToken, when set, is the bearer token every endpoint but /healthz
	// requires. Default empty: no authentication.
	AuthToken string
	// MaxBodyBytes is the largest request body accepted; larger gets 413.
	// Default 8 MiB.
	MaxBodyBytes int64
	// ReadHeaderTimeout, ReadTimeout, WriteTimeout and IdleTimeout are the
	// http.Server timeouts. Defaults 5s, 30s, 30s, 120s.
	ReadHeaderTimeout, ReadTimeout, WriteTimeout, IdleTimeout time.Duration
	// DefaultListLimit and MaxListLimit bound GET /debug/actors. Defaults
	// 100 and 10,000.
	DefaultListLimit, MaxListLimit int
	// MaxConcurrentIngest bounds the POST /v1/events bodies read and
	// decoded at once, and so the memory they take (each up to
	// MaxBodyBytes plus its decoded events); more wait their turn.
	// Default 32.
	MaxConcurrentIngest int
}

// DefaultConfig returns the defaults documented on Config.
func DefaultConfig() Config {
	return Config{
		MaxBodyBytes:        8 << 20,
		ReadHeaderTimeout:   5 * time.Second,
		ReadTimeout:         30 * time.Second,
		WriteTimeout:        30 * time.Second,
		IdleTimeout:         120 * time.Second,
		DefaultListLimit:    100,
		MaxListLimit:        10_000,
		MaxConcurrentIngest: 32,
	}
}

// Server is the HTTP API of a node.
type Server struct {
	cfg     Config
	backend Backend
	in      *ingest.Ingester
	gather  prometheus.Gatherer
	log     *slog.Logger
	ready   atomic.Bool
	// readiness, when set, is asked by /readyz once ready is set.
	readiness func() (bool, string)
	mux       *http.ServeMux
	bufs      sync.Pool
	ingests   chan struct{} // one token per ingest request in progress
}

// New returns a Server; it is not ready (503 on ingest and /readyz) until
// SetReady(true).
func New(cfg Config, backend Backend, in *ingest.Ingester, gather prometheus.Gatherer, log *slog.Logger) *Server {
	s := &Server{cfg: cfg, backend: backend, in: in, gather: gather, log: log, mux: http.NewServeMux(),
		ingests: make(chan struct{}, max(cfg.MaxConcurrentIngest, 1))}
	s.mux.HandleFunc("POST "+api.PathEvents, s.postEvents)
	s.mux.HandleFunc("GET "+api.PathActors, s.listActors)
	s.mux.HandleFunc("GET "+api.PathCluster, s.cluster)
	s.mux.HandleFunc("GET "+api.PathAlerts, s.alerts)
	s.mux.Handle("GET "+api.PathMetrics, promhttp.HandlerFor(gather, promhttp.HandlerOpts{}))
	s.mux.HandleFunc("GET "+api.PathHealthz, func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	s.mux.HandleFunc("GET "+api.PathReadyz, s.readyz)
	s.mux.HandleFunc(api.PathPprof, pprof.Index)
	s.mux.HandleFunc(api.PathPprof+"cmdline", pprof.Cmdline)
	s.mux.HandleFunc(api.PathPprof+"profile", pprof.Profile)
	s.mux.HandleFunc(api.PathPprof+"symbol", pprof.Symbol)
	s.mux.HandleFunc(api.PathPprof+"trace", pprof.Trace)
	return s
}

// SetReady marks the node ready (or not) to take events.
func (s *Server) SetReady(ok bool) { s.ready.Store(ok) }

// SetReadiness sets a check /readyz makes once the node is ready (SetReady):
// a clustered node is ready only while it is a member and serves every
// partition it is assigned; reason says why not. Call it before serving.
func (s *Server) SetReadiness(check func() (ok bool, reason string)) { s.readiness = check }

// Handler returns the API's handler, for an http.Server or httptest.
func (s *Server) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != api.PathHealthz && !s.authorized(r) {
			w.Header().Set("WWW-Authenticate", `Bearer realm="squall"`)
			writeJSON(w, http.StatusUnauthorized, api.Error{Error: "missing or wrong bearer token"})
			return
		}
		// A key may contain "/", "//", ".." or any percent-encoded byte,
		// which ServeMux would clean and redirect: route it before the mux.
		if rest, ok := strings.CutPrefix(r.URL.EscapedPath(), api.PathActor); ok && rest != "" {
			if r.Method != http.MethodGet && r.Method != http.MethodHead {
				w.Header().Set("Allow", "GET, HEAD")
				writeJSON(w, http.StatusMethodNotAllowed, api.Error{Error: "method not allowed"})
				return
			}
			s.getActor(w, r, rest)
			return
		}
		s.mux.ServeHTTP(w, r)
	})
}

// NewHTTPServer returns an http.Server for h with cfg's timeouts.
func NewHTTPServer(cfg Config, h http.Handler, log *slog.Logger) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: cfg.ReadHeaderTimeout,
		ReadTimeout:       cfg.ReadTimeout,
		WriteTimeout:      cfg.WriteTimeout,
		IdleTimeout:       cfg.IdleTimeout,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
}

func (s *Server) authorized(r *http.Request) bool {
	if s.cfg.AuthToken == "" {
		return true
	}
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	return ok && subtle.ConstantTimeCompare([]byte(tok), []byte(s.cfg.AuthToken)) == 1
}

func (s *Server) readyz(w http.ResponseWriter, _ *http.Request) {
	if !s.ready.Load() {
		writeJSON(w, http.StatusServiceUnavailable, api.Error{Error: "not ready"})
		return
	}
	if s.readiness != nil {
		if ok, why := s.readiness(); !ok {
			w.Header().Set("Retry-After", "1")
			writeJSON(w, http.StatusServiceUnavailable, api.Error{Error: "not ready: " + why})
			return
		}
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
}

func (s *Server) postEvents(w http.ResponseWriter, r *http.Request) {
	if !s.ready.Load() {
		w.Header().Set("Retry-After", "1")
		writeJSON(w, http.StatusServiceUnavailable, api.IngestResponse{Error: "node not ready", Rejected: []event.Rejection{}})
		return
	}
	select {
	case s.ingests <- struct{}{}:
		defer func() { <-s.ingests }()
	case <-r.Context().Done():
		return // the client is gone
	}
	buf := s.getBuf()
	defer s.bufs.Put(buf)
	_, err := buf.ReadFrom(http.MaxBytesReader(w, r.Body, s.cfg.MaxBodyBytes))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			s.in.CountBodyError(ingest.SourceHTTP, "too_large")
			writeJSON(w, http.StatusRequestEntityTooLarge, api.IngestResponse{
				Error: "body larger than " + strconv.FormatInt(s.cfg.MaxBodyBytes, 10) + " bytes"})
			return
		}
		writeJSON(w, http.StatusBadRequest, api.IngestResponse{Error: "reading body: " + err.Error()})
		return
	}
	res, err := s.in.Ingest(r.Context(), ingest.SourceHTTP, buf.Bytes(), r.Header.Get("Content-Type"))
	switch {
	case errors.Is(err, actors.ErrClosed):
		w.Header().Set("Retry-After", "1")
		writeJSON(w, http.StatusServiceUnavailable, api.IngestResponse{Error: err.Error(), Rejected: []event.Rejection{}})
	case err != nil && r.Context().Err() != nil:
		// The client went away while waiting for room; nothing was applied.
		writeJSON(w, http.StatusServiceUnavailable, api.IngestResponse{Error: err.Error()})
	case err != nil:
		writeJSON(w, http.StatusBadRequest, api.IngestResponse{Error: err.Error(), Rejected: []event.Rejection{}})
	case res.Shed > 0:
		w.Header().Set("Retry-After", "1")
		writeJSON(w, http.StatusTooManyRequests, res.Response)
	case res.Failed > 0: // the server's fault: the answer lists them, marked for retry
		w.Header().Set("Retry-After", "1")
		writeJSON(w, http.StatusServiceUnavailable, res.Response)
	case res.Response.Accepted == 0:
		writeJSON(w, http.StatusBadRequest, res.Response)
	default:
		writeJSON(w, http.StatusAccepted, res.Response)
	}
}

func (s *Server) getActor(w http.ResponseWriter, r *http.Request, escaped string) {
	key, err := url.PathUnescape(escaped)
	if err != nil {
		writeJSON(w, http.StatusBadRequest, api.Error{Error: "bad key escape: " + err.Error()})
		return
	}
	st, err := s.backend.Get(r.Context(), key)
	switch {
	case errors.Is(err, actors.ErrNotFound):
		writeJSON(w, http.StatusNotFound, api.Error{Error: "key " + strconv.Quote(key) + " has no live actor"})
	case err != nil:
		writeJSON(w, http.StatusServiceUnavailable, api.Error{Error: err.Error()})
	default:
		writeJSON(w, http.StatusOK, st)
	}
}

func (s *Server) listActors(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	limit := s.cfg.DefaultListLimit
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > s.cfg.MaxListLimit {
			writeJSON(w, http.StatusBadRequest, api.Error{
				Error: "limit must be an integer in 1.." + strconv.Itoa(s.cfg.MaxListLimit)})
			return
		}
		limit = n
	}
	cl, ok := scope(w, r)
	if !ok {
		return
	}
	kl, err := s.backend.List(r.Context(), q.Get("prefix"), limit, cl)
	if err != nil {
		writeJSON(w, http.StatusServiceUnavailable, api.Error{Error: err.Error()})
		return
	}
	writeJSON(w, http.StatusOK, kl)
}

// scope reads the scope parameter: "node" (default) or "cluster". On a bad
// value it answers 400 and returns ok false.
func scope(w http.ResponseWriter, r *http.Request) (cluster, ok bool) {
	switch r.URL.Query().Get("scope") {
	case "", "node":
		return false, true
	case "cluster":
		return true, true
	}
	writeJSON(w, http.StatusBadRequest, api.Error{Error: `scope must be "node" or "cluster"`})
	return false, false
}

func (s *Server) alerts(w http.ResponseWriter, r *http.Request) {
	cl, ok := scope(w, r)
	if !ok {
		return
	}
	a, err := s.backend.Alerts(r.Context(), cl)
	if err != nil {
		writeJSON(w, http.StatusServiceUnavailable, api.Error{Error: err.Error()})
		return
	}
	writeJSON(w, http.StatusOK, a)
}

func (s *Server) cluster(w http.ResponseWriter, r *http.Request) {
	c, err := s.backend.Cluster(r.Context())
	if err != nil {
		writeJSON(w, http.StatusServiceUnavailable, api.Error{Error: err.Error()})
		return
	}
	writeJSON(w, http.StatusOK, c)
}

func (s *Server) getBuf() *bytes.Buffer {
	if b, ok := s.bufs.Get().(*bytes.Buffer); ok {
		b.Reset()
		return b
	}
	return new(bytes.Buffer)
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	_ = enc.Encode(v) // the client may be gone; nothing to do about it
}
