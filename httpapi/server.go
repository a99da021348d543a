// Package httpapi serves Squall's HTTP API: event ingest, the debug
// endpoints, metrics, health and pprof, on a mux of its own.
package httpapi

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"net/url"
	"os"
	"slices"
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
	"github.com/squallhq/squall/ui"
)

// Backend is what the HTTP API serves. It is safe for concurrent use.
type Backend interface {
	// Get returns a key's state; an error wrapping actors.ErrNotFound when
	// the key has no live actor.
	Get(ctx context.Context, key string) (*api.KeyState, error)
	// Events returns the events a key's actor keeps; an error wrapping
	// actors.ErrNotFound when the key has no live actor.
	Events(ctx context.Context, key string) (*api.KeyEvents, error)
	// Series returns the per-bucket series of a key's window; an error
	// wrapping actors.ErrNotFound when the key has no live actor.
	Series(ctx context.Context, key string) (*api.KeySeries, error)
	// Replay replays a key's kept events on its owner and compares the
	// result with the live key; an error wrapping actors.ErrNotFound when
	// the key has no live actor.
	Replay(ctx context.Context, key string) (*api.KeyReplay, error)
	// List returns live keys with prefix, after the key after ("" from
	// the first), at most limit, of this node or, with cluster, of every
	// node.
	List(ctx context.Context, prefix, after string, limit int, cluster bool) (*api.KeyList, error)
	// Members returns every member's readiness and partitions in motion.
	Members(ctx context.Context) (*api.Members, error)
	// Rules returns the alert rules in force on this node.
	Rules(ctx context.Context) (*api.Rules, error)
	// Cluster describes the cluster as this node sees it.
	Cluster(ctx context.Context) (*api.Cluster, error)
	// Alerts returns the firing alerts of this node or, with cluster, of
	// every node.
	Alerts(ctx context.Context, cluster bool) (*api.Alerts, error)
}

// Config configures a Server. Start from DefaultConfig.
type Config struct {
	// AuthToken, when set, is the bearer token every endpoint but /healthz
	// and /readyz requires (the "Bearer" scheme is matched in any case).
	// Default empty: no authentication.
	AuthToken string
	// MaxBodyBytes is the largest request body accepted, after gzip
	// decompression when the body has Content-Encoding: gzip; larger gets
	// 413, at once when Content-Length announces it. Default 8 MiB.
	MaxBodyBytes int64
	// ReadHeaderTimeout, ReadTimeout, WriteTimeout and IdleTimeout are the
	// http.Server timeouts. Defaults 5s, 30s, 30s, 120s.
	ReadHeaderTimeout, ReadTimeout, WriteTimeout, IdleTimeout time.Duration
	// DefaultListLimit and MaxListLimit bound GET /debug/actors. Defaults
	// 100 and 10,000.
	DefaultListLimit, MaxListLimit int
	// MaxConcurrentIngest bounds the POST /v1/events bodies decoded and
	// submitted at once, and so the memory their decoded events take; more
	// wait their turn. A body is read before it takes its turn, so slow
	// clients hold no turn. Default 32.
	MaxConcurrentIngest int
	// MaxBufferedBytes bounds the bytes of POST /v1/events bodies the
	// server holds at once, across all requests: read so far, waiting for
	// a turn or being decoded. Bytes are counted as they arrive, not as
	// Content-Length announces them, so a client must send what it holds;
	// a body that would pass the bound is refused with 503 and
	// Retry-After. Without it, clients trickling bodies would hold up to
	// connections × MaxBodyBytes (the number of connections is not
	// bounded). Buffers grow by doubling, so memory is up to about twice
	// this. 0: no bound. Default 256 MiB.
	MaxBufferedBytes int64
	// Pprof serves /debug/pprof/* (behind AuthToken when it is set).
	// Default false: 404.
	Pprof bool
	// Redact, when set, rewrites the command line that
	// /debug/pprof/cmdline shows, so that secrets given as flags are not
	// served. Default nil: the command line as it is.
	Redact func(args []string) []string
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
		MaxBufferedBytes:    256 << 20,
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
	routes    []string // the mux's patterns, see Routes
	bufs      sync.Pool
	ingests   chan struct{} // one token per ingest request decoded or submitted
	buffered  atomic.Int64  // bytes of bodies held, see Config.MaxBufferedBytes
}

// New returns a Server; it is not ready (503 on ingest and /readyz) until
// SetReady(true).
func New(cfg Config, backend Backend, in *ingest.Ingester, gather prometheus.Gatherer, log *slog.Logger) *Server {
	s := &Server{cfg: cfg, backend: backend, in: in, gather: gather, log: log, mux: http.NewServeMux(),
		ingests: make(chan struct{}, max(cfg.MaxConcurrentIngest, 1))}
	s.handle("POST "+api.PathEvents, s.postEvents)
	s.handle("GET "+api.PathActors, s.listActors)
	s.handle("GET "+api.PathCluster, serveDoc(s, Backend.Cluster))
	s.handle("GET "+api.PathMembers, serveDoc(s, Backend.Members))
	s.handle("GET "+api.PathUI, jsonErrors(ui.Handler().ServeHTTP)) // a missing file: 404 in JSON
	s.handle("GET "+api.PathAlerts, s.alerts)
	s.handle("GET "+api.PathRules, serveDoc(s, Backend.Rules))
	s.handle("GET "+api.PathMetrics, promhttp.HandlerFor(gather, promhttp.HandlerOpts{}).ServeHTTP)
	s.handle("GET "+api.PathHealthz, func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	s.handle("GET "+api.PathReadyz, s.readyz)
	if cfg.Pprof {
		s.handle(api.PathPprof, jsonErrors(pprof.Index))
		s.handle(api.PathPprof+"cmdline", s.cmdline)
		s.handle(api.PathPprof+"profile", jsonErrors(pprof.Profile))
		s.handle(api.PathPprof+"symbol", jsonErrors(pprof.Symbol))
		s.handle(api.PathPprof+"trace", jsonErrors(pprof.Trace))
	}
	return s
}

// keyRoutes are the routes of one key, served before the mux (see
// Handler), with the key as "{key}".
var keyRoutes = []string{
	"GET " + api.PathActor + "{key}",
	"GET " + api.PathActor + "{key}" + api.PathActorEvents,
	"GET " + api.PathActor + "{key}" + api.PathActorSeries,
	"GET " + api.PathActor + "{key}" + api.PathActorReplay,
}

// handle registers h on the mux for pattern and lists it in Routes.
func (s *Server) handle(pattern string, h http.HandlerFunc) {
	s.mux.HandleFunc(pattern, h)
	s.routes = append(s.routes, pattern)
}

// Routes returns the routes the server answers, as ServeMux patterns:
// "GET /debug/cluster" (GET also answers HEAD), "/debug/pprof/" (any
// method, and every path below it), "GET /debug/actors/{key}" (the key
// percent-encoded as one segment). api/openapi.yaml documents each one.
func (s *Server) Routes() []string { return append(slices.Clone(s.routes), keyRoutes...) }

// HeldBodyBytes returns the bytes of POST /v1/events bodies held now (see
// Config.MaxBufferedBytes). Safe for concurrent use.
func (s *Server) HeldBodyBytes() int64 { return s.buffered.Load() }

// SetReady marks the node ready (or not) to take events.
func (s *Server) SetReady(ok bool) { s.ready.Store(ok) }

// SetReadiness sets a check /readyz makes once the node is ready (SetReady):
// a clustered node is ready only while it is a member and serves every
// partition it is assigned; reason says why not. Call it before serving.
func (s *Server) SetReadiness(check func() (ok bool, reason string)) { s.readiness = check }

// Handler returns the API's handler, for an http.Server or httptest.
func (s *Server) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !public(r.URL.Path) && !s.authorized(r) {
			w.Header().Set("WWW-Authenticate", `Bearer realm="squall"`)
			writeJSON(w, http.StatusUnauthorized, api.Error{Error: "missing or wrong bearer token"})
			return
		}
		// A key may contain "/", "//", ".." or any percent-encoded byte,
		// which ServeMux would clean and redirect: route it before the mux.
		// A document of one key added here is listed in keyRoutes too.
		if rest, ok := strings.CutPrefix(r.URL.EscapedPath(), api.PathActor); ok && rest != "" {
			if r.Method != http.MethodGet && r.Method != http.MethodHead {
				w.Header().Set("Allow", "GET, HEAD")
				writeJSON(w, http.StatusMethodNotAllowed, api.Error{Error: "method not allowed"})
				return
			}
			// "{key}/events", "{key}/series", "{key}/replay", the "/"
			// literal (a key's own "/" is sent as %2F by the Go client and
			// the console): the key's kept events, series, replay.
			if k, ok := strings.CutSuffix(rest, api.PathActorEvents); ok && k != "" {
				serveKey(w, r, k, s.backend.Events, nil)
				return
			}
			if k, ok := strings.CutSuffix(rest, api.PathActorSeries); ok && k != "" {
				serveKey(w, r, k, s.backend.Series, nil)
				return
			}
			if k, ok := strings.CutSuffix(rest, api.PathActorReplay); ok && k != "" {
				serveKey(w, r, k, s.backend.Replay, replayStatus)
				return
			}
			serveKey(w, r, rest, s.backend.Get, nil)
			return
		}
		if h, pattern := s.mux.Handler(r); pattern == "" {
			// The mux's own 404 or 405 (with Allow): answer it in JSON.
			jw := &errorWriter{ResponseWriter: w}
			h.ServeHTTP(jw, r)
			code, msg := jw.code, "no such endpoint"
			if code == http.StatusMethodNotAllowed {
				msg = "method not allowed"
			} else if code == 0 {
				code = http.StatusNotFound
			}
			writeJSON(w, code, api.Error{Error: msg})
			return
		}
		s.mux.ServeHTTP(w, r)
	})
}

// public reports whether path is served without the token: the probes,
// which send none, and the web console's static files, which hold no data
// (the console sends the token with every data request).
func public(path string) bool {
	return path == api.PathHealthz || path == api.PathReadyz ||
		path == strings.TrimSuffix(api.PathUI, "/") || strings.HasPrefix(path, api.PathUI)
}

// errorWriter passes a handler's answer through unless its status is an
// error (400 and up): then it keeps the status and the headers set, and
// holds the plain-text body back in msg, for the error to be answered in
// JSON.
type errorWriter struct {
	http.ResponseWriter
	code int // the error status; 0 until the handler writes one
	msg  bytes.Buffer
}

func (w *errorWriter) WriteHeader(code int) {
	if code >= http.StatusBadRequest {
		w.code = code
		return
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *errorWriter) Write(b []byte) (int, error) {
	if w.code != 0 {
		return w.msg.Write(b)
	}
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the connection (pprof sets
// its write deadline).
func (w *errorWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// jsonErrors answers the errors of h, a net/http/pprof handler (404 for an
// unknown profile, 400 for a bad parameter, 500 when the profiler is in
// use), in JSON like every other error of the API, with pprof's text as
// the message.
func jsonErrors(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		ew := &errorWriter{ResponseWriter: w}
		h(ew, r)
		if ew.code != 0 {
			writeJSON(w, ew.code, api.Error{Error: strings.TrimSpace(ew.msg.String())})
		}
	}
}

// WarnExposed logs a warning when addr, the bound HTTP address, is not a
// loopback one and cfg has no AuthToken: anyone who can reach it may
// send events and read every key. It reports whether it warned.
func WarnExposed(log *slog.Logger, cfg Config, addr net.Addr) bool {
	ta, ok := addr.(*net.TCPAddr)
	if cfg.AuthToken != "" || (ok && ta.IP.IsLoopback()) {
		return false
	}
	log.Warn("HTTP API listens on a non-loopback address without a token: anyone who reaches it can send events and read state; set --auth-token",
		"http", addr.String())
	return true
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
	// The scheme is case-insensitive (RFC 7235).
	scheme, tok, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	tok = strings.TrimLeft(tok, " ")
	return ok && strings.EqualFold(scheme, "Bearer") &&
		subtle.ConstantTimeCompare([]byte(tok), []byte(s.cfg.AuthToken)) == 1
}

// Ready reports what /readyz answers: whether the node is ready (SetReady)
// and passes its readiness check (SetReadiness), and why not. Safe for
// concurrent use once serving.
func (s *Server) Ready() (ok bool, reason string) {
	if !s.ready.Load() {
		return false, ""
	}
	if s.readiness != nil {
		if ok, why := s.readiness(); !ok {
			return false, why
		}
	}
	return true, ""
}

func (s *Server) readyz(w http.ResponseWriter, _ *http.Request) {
	if ok, why := s.Ready(); !ok {
		msg := "not ready"
		if why != "" {
			msg += ": " + why
		}
		unavailable(w, api.Error{Error: msg})
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
}

// retryAfter is the Retry-After, in seconds, of every 503 and 429.
const retryAfter = "1"

// unavailable answers 503 with Retry-After and body: a failure that is
// the server's.
func unavailable(w http.ResponseWriter, body any) {
	w.Header().Set("Retry-After", retryAfter)
	writeJSON(w, http.StatusServiceUnavailable, body)
}

// ingestUnavailable is unavailable for POST /v1/events.
func ingestUnavailable(w http.ResponseWriter, msg string) {
	unavailable(w, bodyError(msg))
}

func (s *Server) postEvents(w http.ResponseWriter, r *http.Request) {
	if !s.ready.Load() {
		ingestUnavailable(w, "node not ready")
		return
	}
	// Read the body before taking a turn: a slow client holds none.
	buf, ok := s.readBody(w, r)
	if !ok {
		return
	}
	defer s.putBuf(buf)
	select {
	case s.ingests <- struct{}{}:
		defer func() { <-s.ingests }()
	case <-r.Context().Done():
		return // the client is gone
	}
	res, err := s.in.Ingest(r.Context(), ingest.SourceHTTP, buf.Bytes(), r.Header.Get("Content-Type"))
	switch {
	case errors.Is(err, ingest.ErrBadBody):
		writeJSON(w, http.StatusBadRequest, bodyError(err.Error()))
	case err != nil:
		// The server's (engine closed, not joined, no reachable owner, log
		// unavailable), or the client went away; nothing was applied.
		ingestUnavailable(w, err.Error())
	case res.Shed > 0:
		w.Header().Set("Retry-After", retryAfter)
		writeJSON(w, http.StatusTooManyRequests, res.Response)
	case res.Failed > 0: // the server's fault: the answer lists them, marked for retry
		w.Header().Set("Retry-After", retryAfter)
		writeJSON(w, http.StatusServiceUnavailable, res.Response)
	case res.Response.Accepted == 0:
		writeJSON(w, http.StatusBadRequest, res.Response)
	default:
		writeJSON(w, http.StatusAccepted, res.Response)
	}
}

// cmdline is pprof.Cmdline with every argument passed through Redact.
func (s *Server) cmdline(w http.ResponseWriter, _ *http.Request) {
	args := append([]string(nil), os.Args...)
	if s.cfg.Redact != nil {
		args = s.cfg.Redact(args)
	}
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = io.WriteString(w, strings.Join(args, "\x00")) // the client may be gone
}

// bodyError is the answer to a body refused as a whole: nothing taken,
// nothing listed.
func bodyError(msg string) api.IngestResponse {
	return api.IngestResponse{Error: msg, Rejected: []event.Rejection{}}
}

// errBusy: the bodies held would pass Config.MaxBufferedBytes.
var errBusy = errors.New("too many request bytes held")

// readBody reads r's body, decompressing gzip, into a pooled buffer whose
// bytes count against MaxBufferedBytes until putBuf. Otherwise it answers
// (413, 415, 400, 503) and returns ok false.
func (s *Server) readBody(w http.ResponseWriter, r *http.Request) (_ *heldBuf, ok bool) {
	limit := s.cfg.MaxBodyBytes
	tooLarge := func() {
		s.in.CountBodyError(ingest.SourceHTTP, "too_large")
		writeJSON(w, http.StatusRequestEntityTooLarge, bodyError("body larger than "+strconv.FormatInt(limit, 10)+" bytes"))
	}
	if r.ContentLength > limit {
		tooLarge()
		return nil, false
	}
	var src io.Reader = http.MaxBytesReader(w, r.Body, limit)
	switch enc := strings.ToLower(strings.TrimSpace(r.Header.Get("Content-Encoding"))); enc {
	case "", "identity":
	case "gzip", "x-gzip":
		zr, err := gzip.NewReader(src)
		if err != nil {
			if _, big := errors.AsType[*http.MaxBytesError](err); big {
				tooLarge()
				return nil, false
			}
			writeJSON(w, http.StatusBadRequest, bodyError("body is not gzip: "+err.Error()))
			return nil, false
		}
		src = io.LimitReader(zr, limit+1) // decompressed, the same limit
	default:
		s.in.CountBodyError(ingest.SourceHTTP, "unsupported_encoding")
		writeJSON(w, http.StatusUnsupportedMediaType, bodyError(
			"Content-Encoding "+strconv.Quote(enc[:min(len(enc), 32)])+" not supported (gzip or none)"))
		return nil, false
	}
	buf := s.getBuf()
	_, err := buf.ReadFrom(&heldReader{r: src, s: s, buf: buf})
	switch _, big := errors.AsType[*http.MaxBytesError](err); {
	case big || (err == nil && int64(buf.Len()) > limit):
		tooLarge()
	case errors.Is(err, errBusy):
		s.in.CountBodyError(ingest.SourceHTTP, "busy")
		ingestUnavailable(w, "server busy: "+errBusy.Error())
	case err != nil:
		writeJSON(w, http.StatusBadRequest, bodyError("reading body: "+err.Error()))
	default:
		return buf, true
	}
	s.putBuf(buf)
	return nil, false
}

// heldReader counts the bytes read into buf against MaxBufferedBytes.
type heldReader struct {
	r   io.Reader
	s   *Server
	buf *heldBuf
}

func (h *heldReader) Read(p []byte) (int, error) {
	n, err := h.r.Read(p)
	if n > 0 && !h.s.hold(h.buf, n) {
		return n, errBusy
	}
	return n, err
}

// serveKey answers a read of one key's document, the key percent-encoded
// in escaped, with the status status gives the document (nil: 200).
func serveKey[D any](w http.ResponseWriter, r *http.Request, escaped string, read func(context.Context, string) (*D, error), status func(*D) int) {
	key, err := url.PathUnescape(escaped)
	if err != nil {
		writeJSON(w, http.StatusBadRequest, api.Error{Error: "bad key escape: " + err.Error()})
		return
	}
	if len(key) > event.MaxKeyBytes {
		writeJSON(w, http.StatusBadRequest, api.Error{Error: "key longer than " + strconv.Itoa(event.MaxKeyBytes) + " bytes"})
		return
	}
	doc, err := read(r.Context(), key)
	switch {
	case errors.Is(err, actors.ErrNotFound):
		writeJSON(w, http.StatusNotFound, api.Error{Error: "key " + strconv.Quote(key) + " has no live actor"})
	case err != nil:
		unavailable(w, api.Error{Error: err.Error()})
	case status != nil:
		writeJSON(w, status(doc), doc)
	default:
		writeJSON(w, http.StatusOK, doc)
	}
}

// replayStatus is 409 when the replay could not run: the owner no longer
// keeps every event of the key.
func replayStatus(kr *api.KeyReplay) int {
	if !kr.Complete {
		return http.StatusConflict
	}
	return http.StatusOK
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
	kl, err := s.backend.List(r.Context(), q.Get("prefix"), q.Get("after"), limit, cl)
	if err != nil {
		unavailable(w, api.Error{Error: err.Error()})
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

// serveDoc returns a handler that answers the document read gets from
// s's backend: 200, or 503 when read fails.
func serveDoc[D any](s *Server, read func(Backend, context.Context) (*D, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		doc, err := read(s.backend, r.Context())
		if err != nil {
			unavailable(w, api.Error{Error: err.Error()})
			return
		}
		writeJSON(w, http.StatusOK, doc)
	}
}

func (s *Server) alerts(w http.ResponseWriter, r *http.Request) {
	cl, ok := scope(w, r)
	if !ok {
		return
	}
	a, err := s.backend.Alerts(r.Context(), cl)
	if err != nil {
		unavailable(w, api.Error{Error: err.Error()})
		return
	}
	writeJSON(w, http.StatusOK, a)
}

// heldBuf is a pooled body buffer and the bytes it counts in
// Server.buffered.
type heldBuf struct {
	bytes.Buffer
	held int64
}

func (s *Server) getBuf() *heldBuf {
	if b, ok := s.bufs.Get().(*heldBuf); ok {
		b.Reset()
		return b
	}
	return new(heldBuf)
}

// hold counts n more bytes of b as held; it reports false when the bytes
// held now pass MaxBufferedBytes.
func (s *Server) hold(b *heldBuf, n int) bool {
	b.held += int64(n)
	total := s.buffered.Add(int64(n))
	return s.cfg.MaxBufferedBytes <= 0 || total <= s.cfg.MaxBufferedBytes
}

// putBuf releases b's held bytes and pools it.
func (s *Server) putBuf(b *heldBuf) {
	s.buffered.Add(-b.held)
	b.held = 0
	s.bufs.Put(b)
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	_ = enc.Encode(v) // the client may be gone; nothing to do about it
}
