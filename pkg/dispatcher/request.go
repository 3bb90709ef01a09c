package dispatcher

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/jobfleet/jobfleet/pkg/errcode"
	"github.com/jobfleet/jobfleet/pkg/job"
)

// requestError is a request the API refuses before the Service sees it:
// its problem is answered as is.
type requestError struct{ p *Problem }

func (e *requestError) Error() string { return e.p.Detail }

func malformed(detail string, probs ...job.Problem) *requestError {
	p := newProblem(ProblemMalformedRequest, http.StatusBadRequest, errcode.InvalidArgument, detail)
	p.Errors = probs
	return &requestError{p}
}

// checkContentType accepts a missing Content-Type, application/json and
// any application/*+json type; a charset, when given, must be UTF-8. It
// also accepts application/x-www-form-urlencoded, which is what `curl -d`
// sends unless told otherwise: the body is still read as JSON, so the
// one-line curl in the README works as typed.
func checkContentType(r *http.Request) *requestError {
	ct := r.Header.Get("Content-Type")
	if ct == "" {
		return nil
	}
	mt, params, err := mime.ParseMediaType(ct)
	bad := func(why string) *requestError {
		return &requestError{newProblem(ProblemUnsupportedMediaType, http.StatusUnsupportedMediaType, errcode.InvalidArgument,
			fmt.Sprintf("Content-Type %q %s; send application/json", ct, why))}
	}
	switch {
	case err != nil:
		return bad("cannot be parsed")
	case mt == "application/x-www-form-urlencoded":
	case mt != "application/json" && !(strings.HasPrefix(mt, "application/") && strings.HasSuffix(mt, "+json")):
		return bad("is not JSON")
	}
	if cs, ok := params["charset"]; ok && !strings.EqualFold(cs, "utf-8") && !strings.EqualFold(cs, "utf8") {
		return bad("has a charset other than UTF-8")
	}
	return nil
}

// readBody reads the whole request body, at most limit bytes, and checks
// that it is non-empty UTF-8.
func readBody(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, *requestError) {
	if err := checkContentType(r); err != nil {
		return nil, err
	}
	tooLarge := func() *requestError {
		return &requestError{newProblem(ProblemTooLarge, http.StatusRequestEntityTooLarge, errcode.InvalidArgument,
			fmt.Sprintf("the request body is larger than the limit of %d bytes", limit))}
	}
	if r.ContentLength > limit {
		return nil, tooLarge()
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &mbe):
		return nil, tooLarge()
	case err != nil:
		return nil, malformed("reading the request body failed: " + err.Error())
	case len(bytes.TrimSpace(body)) == 0:
		return nil, malformed("the request body is empty; want a JSON object")
	}
	if !utf8.Valid(body) {
		return nil, malformed(fmt.Sprintf("the request body is not valid UTF-8 (first bad byte at offset %d)", invalidUTF8At(body)))
	}
	return body, nil
}

func invalidUTF8At(b []byte) int {
	for i := 0; i < len(b); {
		r, n := utf8.DecodeRune(b[i:])
		if r == utf8.RuneError && n <= 1 {
			return i
		}
		i += n
	}
	return -1
}

// jsonError explains a JSON decoding error with where it happened.
func jsonError(err error, offset int64) string {
	var se *json.SyntaxError
	switch {
	case errors.As(err, &se):
		return fmt.Sprintf("not valid JSON: %s (at byte offset %d)", se.Error(), se.Offset)
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
		return fmt.Sprintf("not valid JSON: unexpected end of input (at byte offset %d)", offset)
	}
	return fmt.Sprintf("not valid JSON: %s (at byte offset %d)", err.Error(), offset)
}

// decodeObject reads b as one JSON object and returns its members in
// order. Duplicate names, anything after the object and non-objects are
// refused; what is being read names the object in messages.
func decodeObject(b []byte, what string) (names []string, values []json.RawMessage, rerr *requestError) {
	dec := json.NewDecoder(bytes.NewReader(b))
	tok, err := dec.Token()
	if err != nil {
		return nil, nil, malformed(what + " is " + jsonError(err, dec.InputOffset()))
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, nil, malformed(fmt.Sprintf("%s must be a JSON object, not %s", what, kindOf(b)))
	}
	seen := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, nil, malformed(what + " is " + jsonError(err, dec.InputOffset()))
		}
		name := tok.(string) // inside an object, More then Token yields a name
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, nil, malformed(what + " is " + jsonError(err, dec.InputOffset()))
		}
		if seen[name] {
			return nil, nil, malformed(fmt.Sprintf("%s has the member %q more than once", what, name),
				job.Problem{Field: name, Detail: "appears more than once"})
		}
		seen[name] = true
		names, values = append(names, name), append(values, v)
	}
	if _, err := dec.Token(); err != nil { // the closing brace
		return nil, nil, malformed(what + " is " + jsonError(err, dec.InputOffset()))
	}
	off := dec.InputOffset()
	rest := b[off:]
	if extra := bytes.TrimLeft(rest, " \t\r\n"); len(extra) > 0 {
		return nil, nil, malformed(fmt.Sprintf("%s has data after the JSON object (at byte offset %d)", what, off+int64(len(rest)-len(extra))))
	}
	return names, values, nil
}

// kindOf describes the JSON value v for messages: `a string "x"`.
func kindOf(v []byte) string {
	v = bytes.TrimSpace(v)
	if len(v) == 0 {
		return "nothing"
	}
	show := string(v)
	if len(show) > 40 {
		show = show[:37] + "..."
	}
	switch v[0] {
	case '"':
		return "a string " + show
	case '{':
		return "an object"
	case '[':
		return "an array"
	case 't', 'f':
		return "a boolean " + show
	case 'n':
		return "null"
	}
	return "a number " + show
}

// submissionFields are the members a submission over HTTP may have, with
// what each must be. payload_ref is for ingress messages only: over HTTP it
// is an unknown field.
var submissionFields = map[string]string{
	"type":         "a string",
	"payload":      "any JSON value",
	"key":          "a string",
	"max_attempts": "an integer",
	"timeout":      `a duration such as "90s" or a number of seconds`,
	"delay":        `a duration such as "90s" or a number of seconds`,
	"run_at":       `an RFC 3339 time such as "2030-01-02T15:04:05Z"`,
	"start_within": `a duration such as "10m" or a number of seconds`,
}

// decodeSubmission reads one submission strictly: members are matched by
// exact name, unknown and duplicate members are refused, and every member of
// the wrong JSON type is reported (field by field) at once.
//
// payload_ref (a payload already in the blob store) is accepted only when
// allowRef is set: from the ingress queue, never over HTTP, so API callers
// cannot point a job at an arbitrary blob.
func decodeSubmission(b []byte, what string, allowRef bool) (job.Submission, *requestError) {
	var s job.Submission
	names, values, rerr := decodeObject(b, what)
	if rerr != nil {
		return s, rerr
	}
	var probs []job.Problem
	for i, name := range names {
		raw := values[i]
		want, known := submissionFields[name]
		if allowRef && name == "payload_ref" {
			want, known = "a blob key (string)", true
		}
		if !known {
			probs = append(probs, job.Problem{Field: name, Detail: "unknown field"})
			continue
		}
		var err error
		switch name {
		case "type":
			err = json.Unmarshal(raw, &s.Type)
		case "payload":
			s.Payload = raw
		case "key":
			err = json.Unmarshal(raw, &s.Key)
		case "max_attempts":
			err = json.Unmarshal(raw, &s.MaxAttempts)
		case "timeout":
			err = json.Unmarshal(raw, &s.Timeout)
		case "delay":
			err = json.Unmarshal(raw, &s.Delay)
		case "payload_ref":
			err = json.Unmarshal(raw, &s.PayloadRef)
		case "start_within":
			err = json.Unmarshal(raw, &s.StartWithin)
		case "run_at":
			if string(raw) != "null" {
				var t time.Time
				if err = json.Unmarshal(raw, &t); err == nil {
					s.RunAt = &t
				}
			}
		}
		if err != nil {
			probs = append(probs, job.Problem{Field: name, Detail: fmt.Sprintf("must be %s, not %s", want, kindOf(raw))})
		}
	}
	if len(probs) > 0 {
		return job.Submission{}, malformed(what+" has fields that are unknown or of the wrong type; see errors", probs...)
	}
	return s, nil
}

// maxBatch is the most submissions one POST /v1/jobs/batch may carry.
const maxBatch = 1000

// decodeBatch reads {"jobs": [submission, ...]}. A member of the array that
// is valid JSON but not a valid submission does not fail the batch: its
// error is in its place in errs.
func decodeBatch(b []byte) (subs []job.Submission, errs []*requestError, rerr *requestError) {
	names, values, rerr := decodeObject(b, "the request body")
	if rerr != nil {
		return nil, nil, rerr
	}
	var items []json.RawMessage
	found := false
	for i, name := range names {
		if name != "jobs" {
			return nil, nil, malformed(fmt.Sprintf("the request body has the unknown member %q; want {\"jobs\": [...]}", name),
				job.Problem{Field: name, Detail: "unknown field"})
		}
		found = true
		if err := json.Unmarshal(values[i], &items); err != nil || items == nil {
			return nil, nil, malformed("jobs must be an array of submissions, not "+kindOf(values[i]),
				job.Problem{Field: "jobs", Detail: "must be an array"})
		}
	}
	switch {
	case !found:
		return nil, nil, malformed(`the request body has no "jobs"; want {"jobs": [...]}`, job.Problem{Field: "jobs", Detail: "is required"})
	case len(items) == 0 || len(items) > maxBatch:
		return nil, nil, malformed(fmt.Sprintf("jobs has %d submissions; send 1 to %d", len(items), maxBatch),
			job.Problem{Field: "jobs", Detail: fmt.Sprintf("must hold 1 to %d submissions", maxBatch)})
	}
	subs = make([]job.Submission, len(items))
	errs = make([]*requestError, len(items))
	for i, it := range items {
		subs[i], errs[i] = decodeSubmission(it, fmt.Sprintf("jobs[%d]", i), false)
	}
	return subs, errs, nil
}
