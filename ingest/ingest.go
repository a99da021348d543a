// Package ingest turns bodies from the outside (HTTP, NATS) into events
// submitted to the key actors, counting what became of each by source.
package ingest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/squallhq/squall/actors"
	"github.com/squallhq/squall/api"
	"github.com/squallhq/squall/event"
)

// Sources of events, as metric labels.
const (
	SourceHTTP = "http"
	SourceNATS = "nats"
)

var sources = []string{SourceHTTP, SourceNATS}

// ErrBadBody is matched (errors.Is) by the errors of Ingest and
// IngestAsync that are the sender's fault: the body as a whole could not be
// decoded (malformed, empty, unknown framing). Every other error of theirs
// is the server's (the engine closed, no reachable owner, the log
// unavailable) or the caller's context ending, and worth a retry.
var ErrBadBody = errors.New("ingest: unusable body")

// bodyError marks a decoder's error as ErrBadBody and keeps its message.
type bodyError struct{ err error }

func (e bodyError) Error() string   { return e.err.Error() }
func (e bodyError) Unwrap() []error { return []error{ErrBadBody, e.err} }

// Submitter applies events to key actors; *actors.Engine is one.
type Submitter interface {
	Submit(ctx context.Context, evs []event.Event, out []actors.Result) error
	SubmitAsync(ctx context.Context, evs []event.Event, done func([]actors.Result)) error
}

// AppliesLater is implemented by a Submitter whose actors.ResultApplied
// means only "stored" (in a log), the key actors applying the events later:
// source.Producer, for Kafka-first ingest. When it reports true, the
// Ingester's answers leave the late and duplicate counts out (nil), which
// the Submitter cannot know. A Submitter without the method applies events
// before it returns (*actors.Engine).
type AppliesLater interface {
	AppliesLater() bool
}

// Result is what became of one ingested body.
type Result struct {
	Response api.IngestResponse
	// Shed counts events rejected because the node holds --max-keys keys.
	Shed int
	// Failed counts events rejected for the server's reasons: a handler
	// failed, the key's owner or the log was unavailable. Like shed ones,
	// they are listed with Retry set.
	Failed int
}

// Ingester decodes bodies and submits their events. It is safe for
// concurrent use.
type Ingester struct {
	sub       Submitter
	later     bool // sub only stores events: late and duplicate unknown
	now       func() time.Time
	maxFuture time.Duration
	pool      sync.Pool
	count     map[string]*sourceMetrics
}

// Option configures an Ingester.
type Option func(*Ingester)

// WithMaxFuture rejects (field "ts") events stamped more than d ahead of
// the clock New was given; d <= 0: no limit. Default
// event.DefaultMaxFuture (5m).
func WithMaxFuture(d time.Duration) Option {
	return func(in *Ingester) { in.maxFuture = max(d, 0) }
}

type scratch struct {
	dec     event.Decoder
	evs     []event.Event
	rej     []event.Rejection
	omitted int
	outs    []actors.Result
}

// MaxListedRejections is how many rejections an answer lists at most; the
// others are counted in IngestResponse.RejectedOmitted and in the metrics.
const MaxListedRejections = 1000

type sourceMetrics struct {
	results [actors.NumResults + 1]prometheus.Counter // actors.Result values, then invalid
	invalid *prometheus.CounterVec
	body    *prometheus.CounterVec
}

const resultInvalid = actors.NumResults

// New returns an Ingester submitting to sub and registering its metrics on
// reg (nil: none). now is the node's clock: it reads the arrival time of
// events, the ts of those without one and the reference of the max-future
// check (nil: time.Now). A ts before 1973 given as a number is rejected as
// seconds (see event.Options.CheckMinTS).
func New(sub Submitter, reg prometheus.Registerer, now func() time.Time, opts ...Option) (*Ingester, error) {
	if now == nil {
		now = time.Now
	}
	in := &Ingester{sub: sub, now: now, maxFuture: event.DefaultMaxFuture, count: make(map[string]*sourceMetrics)}
	if l, ok := sub.(AppliesLater); ok {
		in.later = l.AppliesLater()
	}
	for _, o := range opts {
		o(in)
	}
	events := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "squall_events_in_total",
		Help: "Events received, by source and result (applied, late, duplicate, shed, failed, invalid).",
	}, []string{"source", "result"})
	invalid := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "squall_events_invalid_total",
		Help: "Events rejected by validation, by source and offending field (\"event\" for a malformed one).",
	}, []string{"source", "reason"})
	body := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "squall_ingest_body_errors_total",
		Help: "Bodies or messages rejected as a whole, by source and reason.",
	}, []string{"source", "reason"})
	for _, src := range sources {
		m := &sourceMetrics{invalid: invalid.MustCurryWith(prometheus.Labels{"source": src}),
			body: body.MustCurryWith(prometheus.Labels{"source": src})}
		for r := range m.results {
			name := "invalid"
			if r != resultInvalid {
				name = actors.Result(r).String()
			}
			m.results[r] = events.WithLabelValues(src, name)
		}
		in.count[src] = m
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{events, invalid, body} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("ingest: register metrics: %w", err)
			}
		}
	}
	return in, nil
}

// CountBodyError counts a body rejected before decoding (too large, ...).
func (in *Ingester) CountBodyError(source, reason string) {
	in.count[source].body.WithLabelValues(reason).Inc()
}

// Ingest decodes body (format from contentType, see event.FormatFromContentType)
// and applies its valid events, returning once they are applied. err is
// non-nil when the body as a whole is unusable (it matches ErrBadBody;
// nothing applied), or when
// ctx ended while waiting (for room, for an owner, for the log).
//
// When the Submitter fails otherwise (engine closed, no owner reachable,
// the log unavailable), that is the server's fault, not the body's: err is
// nil, every event the Submitter did not report taken is counted in
// Result.Failed and listed as retryable, and Response.Error says why.
func (in *Ingester) Ingest(ctx context.Context, source string, body []byte, contentType string) (Result, error) {
	sc, err := in.decode(source, body, contentType)
	if err != nil {
		return Result{}, err
	}
	defer in.pool.Put(sc)
	sc.outs = grow(sc.outs, len(sc.evs))
	for i := range sc.outs {
		sc.outs[i] = actors.ResultFailed // until the Submitter says otherwise
	}
	if err := in.sub.Submit(ctx, sc.evs, sc.outs); err != nil {
		if ctx.Err() != nil {
			return Result{}, err
		}
		res := in.result(source, sc.outs, sc.rej, sc.omitted)
		res.Response.Error = "events not submitted: " + err.Error()
		return res, nil
	}
	return in.result(source, sc.outs, sc.rej, sc.omitted), nil
}

// IngestAsync is Ingest without waiting for the events to be applied:
// done, when not nil, is called with the result once they are. An error is
// returned, and done not called, when the body is unusable or nothing could
// be submitted.
func (in *Ingester) IngestAsync(ctx context.Context, source string, body []byte, contentType string, done func(Result)) error {
	sc, err := in.decode(source, body, contentType)
	if err != nil {
		return err
	}
	defer in.pool.Put(sc)
	rej, omitted := append([]event.Rejection(nil), sc.rej...), sc.omitted
	return in.sub.SubmitAsync(ctx, sc.evs, func(outs []actors.Result) {
		res := in.result(source, outs, rej, omitted)
		if done != nil {
			done(res)
		}
	})
}

func (in *Ingester) decode(source string, body []byte, contentType string) (*scratch, error) {
	m := in.count[source]
	sc, _ := in.pool.Get().(*scratch)
	if sc == nil {
		sc = new(scratch)
	}
	var err error
	sc.dec.Ensure(len(body)) // strings cut from a buffer the pooled decoder keeps
	sc.evs, sc.rej, err = sc.dec.Decode(body, event.FormatFromContentType(contentType),
		event.Options{Now: in.now().UnixMilli(), MaxRejections: MaxListedRejections,
			MaxFuture: in.maxFuture, CheckMinTS: true}, sc.evs[:0], sc.rej[:0])
	sc.omitted = sc.dec.Omitted()
	if err != nil {
		in.pool.Put(sc)
		m.body.WithLabelValues("malformed").Inc()
		return nil, bodyError{err}
	}
	for _, r := range sc.rej {
		reason := r.Field
		if reason == "" {
			reason = "event"
		}
		m.invalid.WithLabelValues(reason).Inc()
	}
	if sc.omitted > 0 {
		m.invalid.WithLabelValues("unlisted").Add(float64(sc.omitted))
	}
	m.results[resultInvalid].Add(float64(len(sc.rej) + sc.omitted))
	return sc, nil
}

// result counts outs by result and builds the response. Shed and failed
// events are added to the rejections, marked for retry, at their position
// in the body (-1 when omitted rejections make that position unknown).
func (in *Ingester) result(source string, outs []actors.Result, rej []event.Rejection, omitted int) Result {
	m := in.count[source]
	var tally [actors.NumResults]int
	for _, r := range outs {
		tally[r]++
	}
	for r, n := range tally {
		if n > 0 {
			m.results[r].Add(float64(n))
		}
	}
	res := Result{Shed: tally[actors.ResultShed], Failed: tally[actors.ResultFailed]}
	res.Response.RejectedOmitted = omitted
	res.Response.Accepted = tally[actors.ResultApplied] + tally[actors.ResultLate] + tally[actors.ResultDuplicate]
	if !in.later {
		late, dup := tally[actors.ResultLate], tally[actors.ResultDuplicate]
		res.Response.Late, res.Response.Duplicate = &late, &dup
	}
	if res.Shed == 0 && res.Failed == 0 {
		res.Response.Rejected = append([]event.Rejection{}, rej...)
		return res
	}
	// Valid event j sits at the j-th body index not taken by a rejection.
	all := make([]event.Rejection, 0, len(rej)+res.Shed+res.Failed)
	failed := api.ReasonFailed
	if in.later {
		failed = api.ReasonNotStored
	}
	ri, bodyIdx := 0, 0
	for _, r := range outs {
		for ri < len(rej) && rej[ri].Index == bodyIdx {
			all = append(all, rej[ri])
			ri++
			bodyIdx++
		}
		idx := bodyIdx
		if omitted > 0 {
			idx = -1
		}
		switch r {
		case actors.ResultShed:
			all = append(all, event.Rejection{Index: idx, Reason: api.ReasonShed, Retry: true})
		case actors.ResultFailed:
			all = append(all, event.Rejection{Index: idx, Reason: failed, Retry: true})
		}
		bodyIdx++
	}
	res.Response.Rejected = append(all, rej[ri:]...)
	return res
}

func grow[T any](s []T, n int) []T {
	if cap(s) < n {
		return make([]T, n)
	}
	return s[:n]
}
