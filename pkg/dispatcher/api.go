package dispatcher

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"runtime/debug"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/jobfleet/jobfleet/pkg/blob"
	"github.com/jobfleet/jobfleet/pkg/config"
	"github.com/jobfleet/jobfleet/pkg/errcode"
	"github.com/jobfleet/jobfleet/pkg/job"
	"github.com/jobfleet/jobfleet/pkg/jobstore"
	"github.com/jobfleet/jobfleet/pkg/metrics"
)

// APIOptions configure an API. Zero fields take the defaults noted; nil
// options mean all defaults.
type APIOptions struct {
	// Tokens, when any is non-empty, are the bearer tokens every /v1 route
	// requires (Authorization: Bearer <token>). /healthz, /readyz and
	// /metrics stay open.
	Tokens []string
	// MaxInFlight bounds the /v1 requests served at once; more are answered
	// 429 with Retry-After (default 256; negative: no bound).
	MaxInFlight int
	// MaxBodyBytes bounds a request body, a single submission or a batch
	// (default the Service's Limits.MaxPayload + 64 KiB); larger bodies are
	// answered 413.
	MaxBodyBytes int64
	// MetricsHandler serves GET /metrics (default: the Service's metrics
	// registry).
	MetricsHandler http.Handler
	// Logger logs internal errors and panics (default the Service's).
	Logger *slog.Logger
	// Fleet, when set, answers GET /v1/fleet (FleetStatus); without it the
	// route answers 404.
	Fleet func(ctx context.Context) (*FleetView, error)
}

// DefaultMaxInFlight is the default APIOptions.MaxInFlight.
const DefaultMaxInFlight = 256

// bodyOverhead is what a request body may hold beyond the largest payload.
const bodyOverhead = 64 << 10

// API serves a Service over HTTP. Make one with NewAPI; it is an
// http.Handler, safe for concurrent use.
//
// # Routes
//
//	POST /v1/jobs                 submit: 201 + Location (new job), 200 with
//	                              "deduplicated": true (an active job holds the
//	                              key with the same payload), 409 key-conflict
//	                              (different payload; job_id names the holder),
//	                              400 with errors[] per invalid field
//	POST /v1/jobs/batch           {"jobs": [1..1000 submissions]} → 200
//	                              {"results": [{status, job?, deduplicated?,
//	                              problem?}]} in order, one Service.Submit call
//	GET  /v1/jobs                 ?status=&type=&limit=&cursor= →
//	                              {"jobs": [...], "next_cursor": "..."}
//	GET  /v1/jobs/{id}            the JobView
//	POST /v1/jobs/{id}/cancel     200 with the job (CANCELLED, or
//	                              cancel_requested while RUNNING); 409 when terminal
//	GET  /v1/jobs/{id}/result     the result JSON (streamed from the blob store
//	                              when large); 409 unless SUCCEEDED
//	GET  /v1/jobs/{id}/logs       ?attempt=N (default latest): text/plain,
//	                              honouring one Range (206, 416)
//	GET  /healthz                 200 while the process is up
//	GET  /readyz                  200 once SetReady(true), 503 after SetReady(false)
//	GET  /metrics                 Prometheus exposition
//
// # Contract
//
//   - Errors are RFC 9457 problem details (application/problem+json); see
//     Problem for the members and HTTPStatus for the errcode → status map.
//     A 500 never carries the error's text: it is logged instead.
//   - Request bodies are decoded strictly: members match by exact name
//     (not case-insensitively, unlike encoding/json); unknown or repeated
//     members, anything after the object, invalid UTF-8 and members of the
//     wrong JSON type are 400 naming the field or the byte offset. A
//     Content-Type, when given, must be application/json (or
//     application/*+json) with no charset but UTF-8: else 415. Bodies above
//     MaxBodyBytes are 413. payload_ref (for ingress messages) is not
//     accepted over HTTP.
//   - A submission's own problems (type, payload, key, limits) come from
//     Service.Submit: 400 with errors[] in the same shape.
//   - In a batch, a member that is valid JSON but not a valid submission
//     gets its own 400 result; the others are submitted. A body that is
//     not JSON, or jobs outside 1..1000, fails the whole batch (400).
//   - Range on logs: one range of the forms bytes=a-b, bytes=a- and
//     bytes=-n is served 206 with Content-Range; a range that starts
//     beyond the end (or any range of an empty log) is 416 with
//     Content-Range: bytes */size. A malformed Range, several ranges, or
//     a Range with If-Range are ignored (200 with the whole log), as RFC
//     9110 allows.
//   - Every /v1 response has Cache-Control: no-store and
//     X-Content-Type-Options: nosniff. Authentication (when Tokens are set)
//     comes before the in-flight limit, so refused callers use no slot.
//   - Every request is counted in metrics HTTPRequests{route, code} and
//     HTTPDuration{route}, where route is the matched pattern (e.g.
//     "GET /v1/jobs/{id}"), never the raw path.
//   - A panic in a handler is logged with its stack and answered 500 (or,
//     when the response had already begun, the connection is cut); the
//     server goes on.
type API struct {
	svc     *Service
	mux     *http.ServeMux
	log     *slog.Logger
	m       *metrics.Metrics
	tokens  [][sha256.Size]byte
	slots   chan struct{} // nil: no in-flight bound
	maxBody int64
	ready   atomic.Bool
	fleetFn func(ctx context.Context) (*FleetView, error) // nil: no fleet
}

var _ http.Handler = (*API)(nil)

// NewAPI returns the HTTP API over svc. It starts not ready: call
// SetReady(true) once the process serves, and SetReady(false) first on
// shutdown.
func NewAPI(svc *Service, opts *APIOptions) *API {
	var o APIOptions
	if opts != nil {
		o = *opts
	}
	a := &API{svc: svc, mux: http.NewServeMux(), log: o.Logger, m: svc.m, maxBody: o.MaxBodyBytes, fleetFn: o.Fleet}
	if a.log == nil {
		a.log = svc.log
	}
	if a.maxBody <= 0 {
		a.maxBody = int64(svc.o.Limits.MaxPayload) + bodyOverhead
	}
	for _, t := range o.Tokens {
		if t != "" {
			a.tokens = append(a.tokens, sha256.Sum256([]byte(t)))
		}
	}
	switch {
	case o.MaxInFlight == 0:
		a.slots = make(chan struct{}, DefaultMaxInFlight)
	case o.MaxInFlight > 0:
		a.slots = make(chan struct{}, o.MaxInFlight)
	}
	metricsHandler := o.MetricsHandler
	if metricsHandler == nil {
		metricsHandler = svc.m.Handler()
	}

	a.route("POST /v1/jobs", true, a.submit)
	a.route("GET /v1/jobs", true, a.list)
	a.route("POST /v1/jobs/batch", true, a.submitBatch)
	a.route("GET /v1/jobs/{id}", true, a.get)
	a.route("POST /v1/jobs/{id}/cancel", true, a.cancel)
	a.route("GET /v1/jobs/{id}/result", true, a.result)
	a.route("GET /v1/jobs/{id}/logs", true, a.logs)
	a.route("GET /v1/fleet", true, a.fleet)
	a.route("GET /healthz", false, a.healthz)
	a.route("GET /readyz", false, a.readyz)
	a.route("GET /metrics", false, metricsHandler.ServeHTTP)

	// Other methods on known paths: 405 with Allow, as problems.
	a.route("/v1/jobs", true, notAllowed("GET, HEAD, POST"))
	a.route("GET /v1/jobs/batch", true, notAllowed("POST"))
	a.route("/v1/jobs/{id}", true, func(w http.ResponseWriter, r *http.Request) {
		if r.PathValue("id") == "batch" {
			notAllowed("POST")(w, r)
			return
		}
		notAllowed("GET, HEAD")(w, r)
	})
	a.route("/v1/jobs/{id}/cancel", true, notAllowed("POST"))
	a.route("/v1/jobs/{id}/result", true, notAllowed("GET, HEAD"))
	a.route("/v1/jobs/{id}/logs", true, notAllowed("GET, HEAD"))
	for _, p := range []string{"/healthz", "/readyz", "/metrics"} {
		a.route(p, false, notAllowed("GET, HEAD"))
	}
	// Everything else: 404 problems.
	a.route("/v1/", true, notFound)
	a.route("/", false, notFound)
	return a
}

// ServeHTTP serves the API.
func (a *API) ServeHTTP(w http.ResponseWriter, r *http.Request) { a.mux.ServeHTTP(w, r) }

// SetReady sets what GET /readyz answers: 200 when true, 503 when false.
func (a *API) SetReady(ready bool) { a.ready.Store(ready) }

// NewServer returns an http.Server for h on addr with timeouts that cut off
// slow clients: 5 s to send the headers, 60 s to send the whole request,
// 5 min to receive the response (a log download), 2 min idle keep-alive,
// and 64 KiB of headers.
func NewServer(addr string, h http.Handler) *http.Server {
	return &http.Server{
		Addr:              addr,
		Handler:           h,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       60 * time.Second,
		WriteTimeout:      5 * time.Minute,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
	}
}

// CheckExposure refuses to serve the API beyond loopback without a bearer
// token: addr (host:port) must listen on loopback only, or tokens must hold
// a non-empty token.
func CheckExposure(addr string, tokens []string) error {
	if config.Loopback(addr) {
		return nil
	}
	for _, t := range tokens {
		if t != "" {
			return nil
		}
	}
	return errcode.New(errcode.InvalidArgument,
		"refusing to serve the API on %q without authentication: set JOBFLEET_API_TOKENS, or listen on loopback (e.g. 127.0.0.1:8080)", addr)
}

// route registers h for pattern behind the common middleware: metrics by
// pattern, panic recovery and, for /v1 routes, no-store, authentication and
// the in-flight bound.
func (a *API) route(pattern string, v1 bool, h http.HandlerFunc) {
	a.mux.Handle(pattern, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := &statusRecorder{ResponseWriter: w}
		defer func() {
			v := recover()
			if v != nil && v != http.ErrAbortHandler {
				a.log.Error("panic serving a request", "method", r.Method, "path", r.URL.Path, "route", pattern,
					"panic", fmt.Sprint(v), "stack", string(debug.Stack()))
				if !rec.wrote {
					writeProblem(rec, r, newProblem(ProblemInternal, http.StatusInternalServerError, errcode.Internal, "an internal error occurred; it has been logged"))
					v = nil
				} else {
					rec.code = http.StatusInternalServerError
				}
			}
			a.m.HTTPRequests.WithLabelValues(pattern, strconv.Itoa(rec.status())).Inc()
			a.m.HTTPDuration.WithLabelValues(pattern).Observe(time.Since(start).Seconds())
			if v != nil {
				// The response has begun: cut the connection so the client
				// does not take a partial body for a whole one.
				panic(http.ErrAbortHandler)
			}
		}()
		if v1 {
			hdr := rec.Header()
			hdr.Set("Cache-Control", "no-store")
			hdr.Set("X-Content-Type-Options", "nosniff")
			if !a.authorized(r) {
				a.unauthorized(rec, r)
				return
			}
			if a.slots != nil {
				select {
				case a.slots <- struct{}{}:
					defer func() { <-a.slots }()
				default:
					rec.Header().Set("Retry-After", "1")
					writeProblem(rec, r, newProblem(ProblemTooManyRequests, http.StatusTooManyRequests, errcode.ResourceExhausted,
						fmt.Sprintf("the server is serving its limit of %d requests at once; retry later", cap(a.slots))))
					return
				}
			}
		}
		h(rec, r)
	}))
}

// statusRecorder remembers the status written, for metrics and recovery.
type statusRecorder struct {
	http.ResponseWriter
	code  int
	wrote bool
}

func (s *statusRecorder) WriteHeader(code int) {
	if !s.wrote && code >= 200 {
		s.code, s.wrote = code, true
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusRecorder) Write(b []byte) (int, error) {
	if !s.wrote {
		s.code, s.wrote = http.StatusOK, true
	}
	return s.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (s *statusRecorder) Unwrap() http.ResponseWriter { return s.ResponseWriter }

func (s *statusRecorder) status() int {
	if s.code == 0 {
		return http.StatusOK
	}
	return s.code
}

// authorized reports whether r carries one of the tokens (or none are
// required). Tokens are compared as SHA-256 digests in constant time, all
// of them every time, so timing tells nothing about which or how much
// matched.
func (a *API) authorized(r *http.Request) bool {
	if len(a.tokens) == 0 {
		return true
	}
	scheme, tok, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return false
	}
	tok = strings.TrimSpace(tok)
	sum := sha256.Sum256([]byte(tok))
	match := 0
	for i := range a.tokens {
		match |= subtle.ConstantTimeCompare(sum[:], a.tokens[i][:])
	}
	return match == 1 && tok != ""
}

func (a *API) unauthorized(w http.ResponseWriter, r *http.Request) {
	challenge := `Bearer realm="jobfleet"`
	detail := "this API requires a bearer token: send Authorization: Bearer <token>"
	if r.Header.Get("Authorization") != "" {
		challenge += `, error="invalid_token"`
		detail = "the bearer token is not valid"
	}
	w.Header().Set("WWW-Authenticate", challenge)
	writeProblem(w, r, &Problem{Type: ProblemUnauthorized, Title: problemTitles[ProblemUnauthorized],
		Status: http.StatusUnauthorized, Code: "unauthenticated", Detail: detail})
}

func notAllowed(allow string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Allow", allow)
		writeProblem(w, r, newProblem(ProblemMethodNotAllowed, http.StatusMethodNotAllowed, errcode.InvalidArgument,
			fmt.Sprintf("%s is not allowed on %s; allowed: %s", r.Method, r.URL.Path, allow)))
	}
}

func notFound(w http.ResponseWriter, r *http.Request) {
	writeProblem(w, r, newProblem(ProblemNotFound, http.StatusNotFound, errcode.NotFound,
		fmt.Sprintf("no route for %s %s", r.Method, r.URL.Path)))
}

// fail answers err as a problem; internal errors are logged, not shown.
// about, when non-nil, is the job whose state the error is about.
func (a *API) fail(w http.ResponseWriter, r *http.Request, err error, about *job.Job) {
	writeProblem(w, r, a.problem(r, err, about))
}

func (a *API) problem(r *http.Request, err error, about *job.Job) *Problem {
	p, ok := problemOf(err)
	if !ok {
		a.log.Error("request failed", "method", r.Method, "path", r.URL.Path, "err", err)
		return p
	}
	if about != nil && codeOf(err) == errcode.FailedPrecondition {
		p.JobID, p.JobStatus = about.ID, about.Status
	}
	return p
}

// refuse answers a request the API refused before the Service saw it and
// counts the refusal.
func (a *API) refuse(w http.ResponseWriter, r *http.Request, e *requestError) {
	reason := "malformed"
	switch e.p.Type {
	case ProblemTooLarge:
		reason = "too_large"
	case ProblemUnsupportedMediaType:
		reason = "media_type"
	}
	a.m.Rejected.WithLabelValues("http", reason).Inc()
	writeProblem(w, r, e.p)
}

// outcome turns one submission's result into its status and view, or its
// problem.
func (a *API) outcome(r *http.Request, res Result) (int, *JobView, *Problem) {
	if res.Err != nil {
		if reason := RejectReason(res.Err); reason != "" {
			a.m.Rejected.WithLabelValues("http", reason).Inc()
		}
		p := a.problem(r, res.Err, nil)
		return p.Status, nil, p
	}
	v := ViewOf(res.Job)
	if res.Created {
		return http.StatusCreated, v, nil
	}
	v.Deduplicated = res.Deduplicated
	return http.StatusOK, v, nil
}

func (a *API) submit(w http.ResponseWriter, r *http.Request) {
	body, rerr := readBody(w, r, a.maxBody)
	if rerr != nil {
		a.refuse(w, r, rerr)
		return
	}
	sub, rerr := decodeSubmission(body, "the request body", false)
	if rerr != nil {
		a.refuse(w, r, rerr)
		return
	}
	res, err := a.svc.Submit(r.Context(), Request{Submission: sub, Source: "http"})
	if err != nil {
		a.fail(w, r, err, nil)
		return
	}
	status, v, p := a.outcome(r, res[0])
	if p != nil {
		writeProblem(w, r, p)
		return
	}
	if status == http.StatusCreated {
		w.Header().Set("Location", JobPath(v.ID))
	}
	writeJSON(w, status, v)
}

// BatchRequest is the body of POST /v1/jobs/batch.
type BatchRequest struct {
	Jobs []job.Submission `json:"jobs"`
}

// BatchResult is the outcome of one submission of a batch: Status is the
// status a single POST /v1/jobs would have answered (201, 200, 400, 409,
// ...), with the job or the problem.
type BatchResult struct {
	Status       int      `json:"status"`
	Job          *JobView `json:"job,omitempty"`
	Deduplicated bool     `json:"deduplicated,omitempty"`
	Problem      *Problem `json:"problem,omitempty"`
}

// BatchResponse is the answer to POST /v1/jobs/batch: one result per
// submission, in order.
type BatchResponse struct {
	Results []BatchResult `json:"results"`
}

func (a *API) submitBatch(w http.ResponseWriter, r *http.Request) {
	body, rerr := readBody(w, r, a.maxBody)
	if rerr != nil {
		a.refuse(w, r, rerr)
		return
	}
	subs, errs, rerr := decodeBatch(body)
	if rerr != nil {
		a.refuse(w, r, rerr)
		return
	}
	results := make([]BatchResult, len(subs))
	reqs := make([]Request, 0, len(subs))
	idx := make([]int, 0, len(subs))
	for i := range subs {
		if e := errs[i]; e != nil {
			a.m.Rejected.WithLabelValues("http", "malformed").Inc()
			e.p.Instance = r.URL.Path
			results[i] = BatchResult{Status: e.p.Status, Problem: e.p}
			continue
		}
		reqs = append(reqs, Request{Submission: subs[i], Source: "http"})
		idx = append(idx, i)
	}
	if len(reqs) > 0 {
		res, err := a.svc.Submit(r.Context(), reqs...)
		if err != nil {
			a.fail(w, r, err, nil)
			return
		}
		for k, rr := range res {
			status, v, p := a.outcome(r, rr)
			if p != nil {
				p.Instance = r.URL.Path
			}
			results[idx[k]] = BatchResult{Status: status, Job: v, Deduplicated: rr.Deduplicated, Problem: p}
		}
	}
	writeJSON(w, http.StatusOK, BatchResponse{Results: results})
}

func (a *API) get(w http.ResponseWriter, r *http.Request) {
	j, err := a.svc.Get(r.Context(), r.PathValue("id"))
	if err != nil {
		a.fail(w, r, err, nil)
		return
	}
	writeJSON(w, http.StatusOK, ViewOf(j))
}

func (a *API) fleet(w http.ResponseWriter, r *http.Request) {
	if a.fleetFn == nil {
		a.fail(w, r, errcode.New(errcode.NotFound, "this dispatcher has no fleet"), nil)
		return
	}
	v, err := a.fleetFn(r.Context())
	if err != nil {
		a.fail(w, r, err, nil)
		return
	}
	writeJSON(w, http.StatusOK, v)
}

// ListResponse is the answer to GET /v1/jobs: newest first; NextCursor,
// when set, is the cursor of the next page.
type ListResponse struct {
	Jobs       []*JobView `json:"jobs"`
	NextCursor string     `json:"next_cursor,omitempty"`
}

// listQuery parses GET /v1/jobs's query; unknown and repeated parameters,
// and parts that cannot be read (a bad %-escape, a ';' separator), are
// refused, so a misspelt filter does not silently list everything.
func listQuery(r *http.Request) (jobstore.ListQuery, *requestError) {
	var q jobstore.ListQuery
	var probs []job.Problem
	// r.URL.Query would drop what it cannot read.
	params, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		probs = append(probs, job.Problem{Field: "query", Detail: fmt.Sprintf(
			"cannot be read: %v (separate parameters with &; percent-encode %%, & and ; in values)", err)})
	}
	for name, vals := range params {
		if name == "" {
			probs = append(probs, job.Problem{Field: "query", Detail: "a parameter has no name (\"=value\")"})
			continue
		}
		if len(vals) > 1 {
			probs = append(probs, job.Problem{Field: name, Detail: "is given more than once"})
			continue
		}
		v := vals[0]
		switch name {
		case "status":
			if v == "" {
				continue
			}
			s, err := job.ParseStatus(v)
			if err != nil {
				probs = append(probs, job.Problem{Field: "status", Detail: err.Error()})
			}
			q.Status = s
		case "type":
			if v != "" && !job.ValidType(v) {
				probs = append(probs, job.Problem{Field: "type", Detail: fmt.Sprintf("%q is not a valid type name", v)})
			}
			q.Type = v
		case "limit":
			if v == "" {
				continue
			}
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 || n > jobstore.MaxListLimit {
				probs = append(probs, job.Problem{Field: "limit", Detail: fmt.Sprintf("must be an integer from 1 to %d", jobstore.MaxListLimit)})
			}
			q.Limit = n
		case "cursor":
			q.Cursor = v
		default:
			probs = append(probs, job.Problem{Field: name, Detail: "unknown query parameter (want status, type, limit, cursor)"})
		}
	}
	if len(probs) > 0 {
		p := newProblem(ProblemInvalidArgument, http.StatusBadRequest, errcode.InvalidArgument, "the query is invalid; see errors")
		p.Errors = probs
		return q, &requestError{p}
	}
	return q, nil
}

func (a *API) list(w http.ResponseWriter, r *http.Request) {
	q, rerr := listQuery(r)
	if rerr != nil {
		writeProblem(w, r, rerr.p)
		return
	}
	page, err := a.svc.List(r.Context(), q)
	if err != nil {
		a.fail(w, r, err, nil)
		return
	}
	out := ListResponse{Jobs: make([]*JobView, len(page.Jobs)), NextCursor: page.Next}
	for i, j := range page.Jobs {
		out.Jobs[i] = ViewOf(j)
	}
	writeJSON(w, http.StatusOK, out)
}

func (a *API) cancel(w http.ResponseWriter, r *http.Request) {
	j, err := a.svc.Cancel(r.Context(), r.PathValue("id"))
	if err != nil {
		a.fail(w, r, err, j)
		return
	}
	writeJSON(w, http.StatusOK, ViewOf(j))
}

func (a *API) result(w http.ResponseWriter, r *http.Request) {
	j, rc, err := a.svc.Result(r.Context(), r.PathValue("id"))
	if err != nil {
		a.fail(w, r, err, j)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	if rc == nil {
		body := []byte(j.Result)
		if len(body) == 0 {
			body = []byte("null")
		}
		h.Set("Content-Length", strconv.Itoa(len(body)))
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write(body)
		return
	}
	defer rc.Close()
	w.WriteHeader(http.StatusOK)
	if _, err := io.Copy(w, rc); err != nil && r.Context().Err() == nil {
		a.log.Warn("stream a result", "job_id", j.ID, "err", err)
	}
}

// byteRange is one parsed Range: first-last, first- (last < 0), or the
// suffix -n (suffix true, last = n).
type byteRange struct {
	first, last int64
	suffix      bool
}

// parseRange parses a Range header holding exactly one byte range; ok is
// false for anything else (which the API then ignores).
func parseRange(h string) (br byteRange, ok bool) {
	unit, spec, found := strings.Cut(strings.TrimSpace(h), "=")
	if !found || !strings.EqualFold(strings.TrimSpace(unit), "bytes") || strings.Contains(spec, ",") {
		return br, false
	}
	first, last, found := strings.Cut(strings.TrimSpace(spec), "-")
	if !found {
		return br, false
	}
	num := func(s string) (int64, bool) {
		if s == "" || strings.TrimLeft(s, "0123456789") != "" {
			return 0, false
		}
		n, err := strconv.ParseInt(s, 10, 64)
		return n, err == nil
	}
	if first == "" {
		n, ok := num(last)
		return byteRange{last: n, suffix: true}, ok
	}
	f, ok := num(first)
	if !ok {
		return br, false
	}
	if last == "" {
		return byteRange{first: f, last: -1}, true
	}
	l, ok := num(last)
	if !ok || l < f {
		return br, false
	}
	return byteRange{first: f, last: l}, true
}

// resolve returns the blob range br selects in an object of size bytes,
// or false when it is unsatisfiable.
func (br byteRange) resolve(size int64) (blob.Range, bool) {
	if size == 0 {
		return blob.Range{}, false
	}
	if br.suffix {
		if br.last == 0 {
			return blob.Range{}, false
		}
		n := min(br.last, size)
		return blob.Range{Offset: size - n, Length: n}, true
	}
	if br.first >= size {
		return blob.Range{}, false
	}
	last := size - 1
	if br.last >= 0 && br.last < last {
		last = br.last
	}
	return blob.Range{Offset: br.first, Length: last - br.first + 1}, true
}

func (a *API) logs(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	attempt := 0
	for name, vals := range r.URL.Query() {
		if name != "attempt" || len(vals) != 1 {
			p := newProblem(ProblemInvalidArgument, http.StatusBadRequest, errcode.InvalidArgument, "the query is invalid; the only parameter is attempt, once")
			p.Errors = []job.Problem{{Field: name, Detail: "unknown or repeated query parameter"}}
			writeProblem(w, r, p)
			return
		}
		n, err := strconv.Atoi(vals[0])
		if err != nil || n < 1 {
			p := newProblem(ProblemInvalidArgument, http.StatusBadRequest, errcode.InvalidArgument, "attempt must be a positive integer")
			p.Errors = []job.Problem{{Field: "attempt", Detail: "must be a positive integer"}}
			writeProblem(w, r, p)
			return
		}
		attempt = n
	}
	h := w.Header()
	h.Set("Accept-Ranges", "bytes")
	br, ranged := parseRange(r.Header.Get("Range"))
	if r.Header.Get("If-Range") != "" {
		ranged = false
	}
	ctx := r.Context()
	if !ranged {
		j, rc, attrs, err := a.svc.Logs(ctx, id, attempt, blob.All)
		if err != nil {
			a.fail(w, r, err, nil)
			return
		}
		a.sendLog(w, r, j, rc, http.StatusOK, attrs.Size, "")
		return
	}
	// Learn the log's size with a one-byte read, then read the range (a
	// log is written once, when its attempt ends, so both reads see the
	// same object).
	j, rc, attrs, err := a.svc.Logs(ctx, id, attempt, blob.Range{Offset: 0, Length: 1})
	size := attrs.Size
	switch {
	case codeOf(err) == errcode.InvalidArgument && j != nil:
		size = 0 // an adapter that refuses even byte 0: the log is empty
	case err != nil:
		a.fail(w, r, err, nil)
		return
	default:
		rc.Close()
	}
	rng, ok := br.resolve(size)
	if !ok {
		h.Set("Content-Range", fmt.Sprintf("bytes */%d", size))
		writeProblem(w, r, newProblem(ProblemRangeNotSatisfiable, http.StatusRequestedRangeNotSatisfiable, errcode.InvalidArgument,
			fmt.Sprintf("the range %q is outside the log, which is %d bytes", r.Header.Get("Range"), size)))
		return
	}
	if attempt == 0 {
		attempt = j.Attempt
	}
	j, rc, attrs, err = a.svc.Logs(ctx, id, attempt, rng)
	if err != nil {
		a.fail(w, r, err, nil)
		return
	}
	a.sendLog(w, r, j, rc, http.StatusPartialContent, rng.Length,
		fmt.Sprintf("bytes %d-%d/%d", rng.Offset, rng.Offset+rng.Length-1, attrs.Size))
}

func (a *API) sendLog(w http.ResponseWriter, r *http.Request, j *job.Job, rc io.ReadCloser, status int, length int64, contentRange string) {
	defer rc.Close()
	h := w.Header()
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("Content-Length", strconv.FormatInt(length, 10))
	if contentRange != "" {
		h.Set("Content-Range", contentRange)
	}
	w.WriteHeader(status)
	if _, err := io.CopyN(w, rc, length); err != nil && r.Context().Err() == nil && !errors.Is(err, context.Canceled) {
		a.log.Warn("stream a log", "job_id", j.ID, "err", err)
	}
}

func (a *API) healthz(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = io.WriteString(w, "ok\n")
}

func (a *API) readyz(w http.ResponseWriter, r *http.Request) {
	if !a.ready.Load() {
		writeProblem(w, r, newProblem(ProblemNotReady, http.StatusServiceUnavailable, errcode.Unavailable,
			"the dispatcher is starting or shutting down"))
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = io.WriteString(w, "ready\n")
}
