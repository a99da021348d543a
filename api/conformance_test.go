package api_test

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/pb33f/libopenapi"
	validator "github.com/pb33f/libopenapi-validator"
	"github.com/pb33f/libopenapi-validator/config"
	"github.com/pb33f/libopenapi-validator/content"
	vErrors "github.com/pb33f/libopenapi-validator/errors"
	"github.com/pb33f/libopenapi-validator/helpers"
	"github.com/pb33f/libopenapi-validator/paths"
	"github.com/pb33f/libopenapi-validator/schema_validation"
	"github.com/pb33f/libopenapi/datamodel/high/base"
	v3 "github.com/pb33f/libopenapi/datamodel/high/v3"
)

// offDoc names the answers to what the document does not list: a path
// (404) or a method of a path (405). The document describes them as
// components.responses, once for every path.
var offDoc = map[int]string{
	http.StatusNotFound:         "NoSuchEndpoint",
	http.StatusMethodNotAllowed: "MethodNotAllowed",
}

// spec is api/openapi.yaml, its validator and what the exchanges checked
// against it have seen. Its methods are safe for concurrent use.
type spec struct {
	doc     *v3.Document
	v       validator.Validator
	find    *config.ValidationOptions // for paths.FindPath: which template a request matched
	schemas schema_validation.SchemaValidator

	mu        sync.Mutex
	seen      map[string]int // answer (see answerKey) → times seen
	exchanges int
}

// loadSpec reads openapi.yaml, fails t unless it is a valid OpenAPI 3.1
// document, and returns its validator.
func loadSpec(t *testing.T) *spec {
	t.Helper()
	b, err := os.ReadFile("openapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	doc, err := libopenapi.NewDocument(b)
	if err != nil {
		t.Fatal(err)
	}
	if v := doc.GetVersion(); !strings.HasPrefix(v, "3.1") {
		t.Fatalf("openapi.yaml is OpenAPI %s, want 3.1", v)
	}
	m, err := doc.BuildV3Model()
	if err != nil {
		t.Fatal(err)
	}
	v, errs := validator.NewValidator(doc,
		config.WithBodyDecoder("application/x-ndjson", ndjsonDecoder()),
		config.WithBodyDecoder("application/ndjson", ndjsonDecoder()),
		config.WithBodyDecoder("application/jsonl", ndjsonDecoder()),
		config.WithBodyDecoder("application/x-jsonlines", ndjsonDecoder()))
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	if ok, verrs := v.ValidateDocument(); !ok {
		t.Fatalf("openapi.yaml is not a valid OpenAPI document:\n%s", describe(verrs))
	}
	return &spec{doc: &m.Model, v: v, find: config.NewValidationOptions(),
		schemas: schema_validation.NewSchemaValidator(), seen: map[string]int{}}
}

// ndjsonDecoder reads an NDJSON body as the array of its non-blank lines,
// which the document's NDJSON schema describes.
func ndjsonDecoder() content.Decoder {
	return content.DecoderFunc(func(in *content.DecodeInput) (any, error) {
		var lines []any
		sc := bufio.NewScanner(in.Body)
		sc.Buffer(nil, 16<<20)
		for sc.Scan() {
			line := bytes.TrimSpace(sc.Bytes())
			if len(line) == 0 {
				continue
			}
			var v any
			if err := json.Unmarshal(line, &v); err != nil {
				return nil, fmt.Errorf("NDJSON line %d: %w", len(lines), err)
			}
			lines = append(lines, v)
		}
		return lines, sc.Err()
	})
}

// answerKey names one documented answer: "GET /debug/actors/{key} 404".
// The answers off the document are "* * 404" and "* * 405".
func answerKey(method, template string, status int) string {
	return method + " " + template + " " + strconv.Itoa(status)
}

// documented lists every answer the document holds.
func (s *spec) documented() []string {
	var out []string
	for tmpl, item := range s.doc.Paths.PathItems.FromOldest() {
		for method, op := range item.GetOperations().FromOldest() {
			for code := range op.Responses.Codes.KeysFromOldest() {
				n, _ := strconv.Atoi(code)
				out = append(out, answerKey(strings.ToUpper(method), tmpl, n))
			}
		}
	}
	for code := range offDoc {
		out = append(out, answerKey("*", "*", code))
	}
	slices.Sort(out)
	return out
}

// want says how a request stands to the document.
type want int

const (
	// conforms: the request follows the document.
	conforms want = iota
	// breaks: the request breaks the document on purpose (a bad event, a
	// limit out of range); the validator must say so.
	breaks
	// unlisted: the path, or its method, is not in the document; the
	// answer is one of offDoc.
	unlisted
)

type wantKey struct{}

// as marks req as standing to the document as w.
func as(req *http.Request, w want) *http.Request {
	return req.WithContext(context.WithValue(req.Context(), wantKey{}, w))
}

// client returns an HTTP client whose every exchange is checked against
// the document, failing t on any mismatch.
func (s *spec) client(t testing.TB) *http.Client {
	return &http.Client{Transport: &checked{s: s, t: t}}
}

// checked is an http.RoundTripper that validates every request and
// answer against the document.
type checked struct {
	s *spec
	t testing.TB
}

func (c *checked) RoundTrip(req *http.Request) (*http.Response, error) {
	w, _ := req.Context().Value(wantKey{}).(want)
	var body []byte
	if req.Body != nil {
		var err error
		if body, err = io.ReadAll(req.Body); err != nil {
			return nil, err
		}
		req.Body.Close()
	}
	fresh := func() *http.Request {
		r := req.Clone(req.Context())
		r.Body = io.NopCloser(bytes.NewReader(body))
		return r
	}
	what := req.Method + " " + req.URL.RequestURI()
	item, tmpl := c.s.route(req)
	var ok bool
	var errs []*vErrors.ValidationError
	if item != nil {
		ok, errs = c.s.v.ValidateHttpRequestWithPathItem(asTyped(req, body), item, tmpl)
	}
	switch {
	case w == conforms && !ok:
		c.t.Errorf("%s: the request breaks the document:\n%s", what, describe(errs))
	case w == breaks && ok:
		c.t.Errorf("%s: the request was meant to break the document, and passes it", what)
	case w == breaks && !brokenBy(errs):
		c.t.Errorf("%s: the request breaks the document, but not by a parameter or its body:\n%s", what, describe(errs))
	case w == unlisted && item != nil && item.GetOperations().GetOrZero(strings.ToLower(req.Method)) != nil:
		c.t.Errorf("%s: the document lists it (%s)", what, tmpl)
	case w != unlisted && item == nil:
		c.t.Errorf("%s: no path of the document matches", what)
	}
	resp, err := http.DefaultTransport.RoundTrip(fresh())
	if err != nil {
		return nil, err
	}
	rb, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	resp.Body = io.NopCloser(bytes.NewReader(rb))
	if err != nil {
		return nil, err
	}
	what += " → " + strconv.Itoa(resp.StatusCode)
	vreq := fresh()
	var key string
	if w == unlisted {
		key = c.checkUnlisted(what, resp, rb)
	} else {
		vresp := *resp
		vresp.Body = io.NopCloser(bytes.NewReader(rb))
		if ok, errs := c.s.v.GetResponseBodyValidator().ValidateResponseBodyWithPathItem(vreq, &vresp, item, tmpl); !ok {
			c.t.Errorf("%s: the answer breaks the document:\n%s\nbody: %.600s", what, describe(errs), rb)
		}
		key = answerKey(req.Method, tmpl, resp.StatusCode)
	}
	c.s.mu.Lock()
	c.s.seen[key]++
	c.s.exchanges++
	c.s.mu.Unlock()
	return resp, nil
}

// route returns the path of the document req is for, and its template;
// nil when none is. A literal path wins over a template, and a template's
// parameter matches no empty segment ("/debug/pprof/" is not
// "/debug/pprof/{profile}").
func (s *spec) route(req *http.Request) (*v3.PathItem, string) {
	if item := s.doc.Paths.PathItems.GetOrZero(req.URL.EscapedPath()); item != nil {
		return item, req.URL.EscapedPath()
	}
	item, errs, tmpl := paths.FindPath(req, s.doc, s.find)
	if len(errs) > 0 || item == nil {
		return nil, ""
	}
	got, want := strings.Split(req.URL.EscapedPath(), "/"), strings.Split(tmpl, "/")
	if len(got) != len(want) {
		return nil, ""
	}
	for i, seg := range want {
		if strings.HasPrefix(seg, "{") && got[i] == "" {
			return nil, ""
		}
	}
	return item, tmpl
}

// brokenBy reports whether errs are all about a parameter's value or the
// body's content: a request broken on purpose must not be refused for its
// path, its security or an unknown Content-Type instead.
func brokenBy(errs []*vErrors.ValidationError) bool {
	for _, e := range errs {
		if (e.ValidationType != helpers.ParameterValidation && e.ValidationType != helpers.RequestBodyValidation) ||
			strings.Contains(e.Message, "content type") {
			return false
		}
	}
	return true
}

// asTyped returns a copy of req, with body, as the document types it: a
// body without Content-Type is application/octet-stream (RFC 9110, 8.3),
// which the node reads as JSON or NDJSON detected from the content; a gzip
// body (Content-Encoding) is decompressed, the coding being no part of the
// media type.
func asTyped(req *http.Request, body []byte) *http.Request {
	r := req.Clone(req.Context())
	if len(body) > 0 && r.Header.Get("Content-Type") == "" {
		r.Header.Set("Content-Type", "application/octet-stream")
	}
	if strings.EqualFold(r.Header.Get("Content-Encoding"), "gzip") {
		if zr, err := gzip.NewReader(bytes.NewReader(body)); err == nil {
			if plain, err := io.ReadAll(zr); err == nil {
				body = plain
				r.Header.Del("Content-Encoding")
			}
		}
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	r.ContentLength = int64(len(body))
	return r
}

// checkUnlisted checks an answer to a path or method the document does
// not list against its offDoc response and returns its answer key.
func (c *checked) checkUnlisted(what string, resp *http.Response, body []byte) string {
	name, ok := offDoc[resp.StatusCode]
	if !ok {
		c.t.Errorf("%s: an unlisted path or method answered %d, want one of %v", what, resp.StatusCode, offDoc)
		return what
	}
	r := c.s.doc.Components.Responses.GetOrZero(name)
	for h, hdr := range r.Headers.FromOldest() {
		if hdr.Required && resp.Header.Get(h) == "" {
			c.t.Errorf("%s: no %s header (response %s)", what, h, name)
		}
	}
	ct := resp.Header.Get("Content-Type")
	mt := r.Content.GetOrZero(ct)
	if mt == nil {
		c.t.Errorf("%s: Content-Type %q, not one of response %s's", what, ct, name)
		return answerKey("*", "*", resp.StatusCode)
	}
	if ok, errs := c.s.schemas.ValidateSchemaBytes(mt.Schema.Schema(), body); !ok {
		c.t.Errorf("%s: the body breaks response %s: %s\nbody: %s", what, name, describe(errs), body)
	}
	return answerKey("*", "*", resp.StatusCode)
}

// schema returns the named component schema.
func (s *spec) schema(name string) *base.Schema {
	return s.doc.Components.Schemas.GetOrZero(name).Schema()
}

// checkCoverage fails t for every documented answer no exchange has seen
// and every answer seen that the document does not hold, and logs the
// counts.
func (s *spec) checkCoverage(t *testing.T) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	doc := s.documented()
	for _, k := range doc {
		if s.seen[k] == 0 {
			t.Errorf("documented, never answered: %s", k)
		}
	}
	for k := range s.seen {
		if !slices.Contains(doc, k) {
			t.Errorf("answered, not documented: %s", k)
		}
	}
	ops := map[string]bool{}
	for _, k := range doc {
		if f := strings.Fields(k); f[0] != "*" {
			ops[f[0]+" "+f[1]] = true
		}
	}
	seen := 0
	for _, k := range doc {
		if s.seen[k] > 0 {
			seen++
		}
	}
	t.Logf("%d exchanges validated; %d operations on %d paths; %d of %d documented answers seen",
		s.exchanges, len(ops), s.doc.Paths.PathItems.Len(), seen, len(doc))
}

func describe(errs []*vErrors.ValidationError) string {
	var b strings.Builder
	for _, e := range errs {
		fmt.Fprintf(&b, "  - %s: %s", e.Message, e.Reason)
		for _, f := range e.SchemaValidationErrors {
			fmt.Fprintf(&b, "\n      %s: %s", f.FieldPath, f.Reason)
		}
		b.WriteByte('\n')
	}
	return b.String()
}
