package dispatcher

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"

	"github.com/jobfleet/jobfleet/pkg/errcode"
	"github.com/jobfleet/jobfleet/pkg/job"
)

// Problem is an RFC 9457 problem details object, the body of every error
// the API answers (Content-Type application/problem+json).
//
// Type is a URN naming the kind of problem (the Problem* constants); Title
// is its fixed summary; Detail explains this occurrence; Instance is the
// request path. The extension members: Code is the errcode name of the
// error (e.g. "not_found", "failed_precondition"), so a client can recover
// the exact code where one status covers two (409, 503); Errors lists every
// invalid field of a submission; JobID and JobStatus name the job concerned
// (the holder of a key on a conflict, the job whose state forbids the
// operation).
type Problem struct {
	Type      string        `json:"type"`
	Title     string        `json:"title"`
	Status    int           `json:"status"`
	Detail    string        `json:"detail,omitempty"`
	Instance  string        `json:"instance,omitempty"`
	Code      string        `json:"code,omitempty"`
	Errors    []job.Problem `json:"errors,omitempty"`
	JobID     string        `json:"job_id,omitempty"`
	JobStatus job.Status    `json:"job_status,omitempty"`
}

// Problem types.
const (
	ProblemInvalidArgument      = "urn:jobfleet:problem:invalid-argument"
	ProblemMalformedRequest     = "urn:jobfleet:problem:malformed-request"
	ProblemNotFound             = "urn:jobfleet:problem:not-found"
	ProblemKeyConflict          = "urn:jobfleet:problem:key-conflict"
	ProblemAlreadyExists        = "urn:jobfleet:problem:already-exists"
	ProblemFailedPrecondition   = "urn:jobfleet:problem:failed-precondition"
	ProblemResourceExhausted    = "urn:jobfleet:problem:resource-exhausted"
	ProblemUnavailable          = "urn:jobfleet:problem:unavailable"
	ProblemInternal             = "urn:jobfleet:problem:internal"
	ProblemUnauthorized         = "urn:jobfleet:problem:unauthorized"
	ProblemTooLarge             = "urn:jobfleet:problem:request-too-large"
	ProblemUnsupportedMediaType = "urn:jobfleet:problem:unsupported-media-type"
	ProblemRangeNotSatisfiable  = "urn:jobfleet:problem:range-not-satisfiable"
	ProblemMethodNotAllowed     = "urn:jobfleet:problem:method-not-allowed"
	ProblemTooManyRequests      = "urn:jobfleet:problem:too-many-requests"
	ProblemNotReady             = "urn:jobfleet:problem:not-ready"
)

var problemTitles = map[string]string{
	ProblemInvalidArgument:      "Invalid request",
	ProblemMalformedRequest:     "Malformed request body",
	ProblemNotFound:             "Not found",
	ProblemKeyConflict:          "Key held by a job with a different payload",
	ProblemAlreadyExists:        "Already exists",
	ProblemFailedPrecondition:   "Not possible in the job's current state",
	ProblemResourceExhausted:    "Resource exhausted",
	ProblemUnavailable:          "Service unavailable",
	ProblemInternal:             "Internal server error",
	ProblemUnauthorized:         "Unauthorized",
	ProblemTooLarge:             "Request body too large",
	ProblemUnsupportedMediaType: "Unsupported media type",
	ProblemRangeNotSatisfiable:  "Range not satisfiable",
	ProblemMethodNotAllowed:     "Method not allowed",
	ProblemTooManyRequests:      "Too many requests",
	ProblemNotReady:             "Not ready",
}

// codeNames are the values of Problem.Code.
var codeNames = map[errcode.Code]string{
	errcode.NotFound:           "not_found",
	errcode.AlreadyExists:      "already_exists",
	errcode.FailedPrecondition: "failed_precondition",
	errcode.InvalidArgument:    "invalid_argument",
	errcode.ResourceExhausted:  "resource_exhausted",
	errcode.Unavailable:        "unavailable",
	errcode.Closed:             "closed",
	errcode.Internal:           "internal",
	errcode.Canceled:           "canceled",
	errcode.Unknown:            "unknown",
}

// CodeName returns the Problem.Code value of c.
func CodeName(c errcode.Code) string {
	if n, ok := codeNames[c]; ok {
		return n
	}
	return codeNames[errcode.Unknown]
}

// ParseCodeName returns the code whose CodeName is name, and whether there
// is one.
func ParseCodeName(name string) (errcode.Code, bool) {
	for c, n := range codeNames {
		if n == name {
			return c, true
		}
	}
	return errcode.Unknown, false
}

// HTTPStatus is the status the API answers an error of code c with:
//
//	InvalidArgument 400, NotFound 404, AlreadyExists 409,
//	FailedPrecondition 409, ResourceExhausted 429, Unavailable 503,
//	Closed 503, Canceled 503, anything else 500.
//
// Canceled is 503 rather than the non-standard 499 or 408: the server did
// not finish the request (its context ended, usually because the process is
// shutting down or the client went away), and the same request may succeed
// when retried. 408 would blame a slow client, which is not what happened.
func HTTPStatus(c errcode.Code) int {
	switch c {
	case errcode.InvalidArgument:
		return http.StatusBadRequest
	case errcode.NotFound:
		return http.StatusNotFound
	case errcode.AlreadyExists, errcode.FailedPrecondition:
		return http.StatusConflict
	case errcode.ResourceExhausted:
		return http.StatusTooManyRequests
	case errcode.Unavailable, errcode.Closed, errcode.Canceled:
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}

func problemType(c errcode.Code) string {
	switch c {
	case errcode.InvalidArgument:
		return ProblemInvalidArgument
	case errcode.NotFound:
		return ProblemNotFound
	case errcode.AlreadyExists:
		return ProblemAlreadyExists
	case errcode.FailedPrecondition:
		return ProblemFailedPrecondition
	case errcode.ResourceExhausted:
		return ProblemResourceExhausted
	case errcode.Unavailable, errcode.Closed, errcode.Canceled:
		return ProblemUnavailable
	}
	return ProblemInternal
}

// newProblem returns a problem of type typ.
func newProblem(typ string, status int, code errcode.Code, detail string) *Problem {
	return &Problem{Type: typ, Title: problemTitles[typ], Status: status, Code: CodeName(code), Detail: detail}
}

// problemOf turns err into the problem answered for it. ok is false when
// the error is internal (500): its message must not reach the client, and
// the caller logs it.
func problemOf(err error) (p *Problem, ok bool) {
	code := codeOf(err)
	status := HTTPStatus(code)
	if status == http.StatusInternalServerError {
		return newProblem(ProblemInternal, status, errcode.Internal, "an internal error occurred; it has been logged"), false
	}
	p = newProblem(problemType(code), status, code, err.Error())
	var verr *job.ValidationError
	if errors.As(err, &verr) {
		p.Errors = verr.Problems
		p.Detail = "the submission is invalid; see errors"
	}
	var kc *KeyConflictError
	if errors.As(err, &kc) {
		p.Type, p.Title = ProblemKeyConflict, problemTitles[ProblemKeyConflict]
		p.JobID = kc.Holder
	}
	return p, true
}

// codeOf is errcode.Of, also recognizing errors that only match a code
// with errors.Is (job.ValidationError is an InvalidArgument that way).
func codeOf(err error) errcode.Code {
	if c := errcode.Of(err); c != errcode.Unknown {
		return c
	}
	for c := range codeNames {
		if c != errcode.Unknown && errors.Is(err, c) {
			return c
		}
	}
	return errcode.Unknown
}

// writeProblem writes p as the response.
func writeProblem(w http.ResponseWriter, r *http.Request, p *Problem) {
	if p.Instance == "" && r != nil {
		p.Instance = r.URL.Path
	}
	h := w.Header()
	h.Set("Content-Type", "application/problem+json")
	h.Del("Content-Length")
	if p.Status == http.StatusServiceUnavailable || p.Status == http.StatusTooManyRequests {
		if h.Get("Retry-After") == "" {
			h.Set("Retry-After", "1")
		}
	}
	writeJSONBody(w, p.Status, p)
}

// writeJSON writes v as a JSON response with status.
func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	writeJSONBody(w, status, v)
}

func writeJSONBody(w http.ResponseWriter, status int, v any) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		// Only a bug can get here (every value written is encodable).
		status = http.StatusInternalServerError
		w.Header().Set("Content-Type", "application/problem+json")
		buf.Reset()
		buf.WriteString(`{"type":"` + ProblemInternal + `","title":"Internal server error","status":500}` + "\n")
	}
	w.Header().Set("Content-Length", strconv.Itoa(buf.Len()))
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}
