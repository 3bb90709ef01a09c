package dispatcher

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/jobfleet/jobfleet/pkg/job"
	"github.com/jobfleet/jobfleet/pkg/jobstore"
)

// FuzzDecodeSubmission: the strict decoder of HTTP bodies and ingress
// messages never panics, and what it accepts survives a JSON round trip.
func FuzzDecodeSubmission(f *testing.F) {
	f.Add([]byte(`{"type":"echo","payload":{"hi":1}}`), false)
	f.Add([]byte(`{"type":"echo","payload_ref":"uploads/x.json"}`), true)
	f.Add([]byte(`{"type":"echo","type":"sleep"}`), false)
	f.Add([]byte(`{"Type":"echo"}`), false)
	f.Add([]byte(`{"type":"echo"} trailing`), false)
	f.Add([]byte("{\"type\":\"\xff\"}"), false)
	f.Add([]byte(`{"type":"sleep","timeout":"1h","delay":3.5,"run_at":null,"max_attempts":2,"key":"k"}`), false)
	f.Fuzz(func(t *testing.T, b []byte, allowRef bool) {
		s, rerr := decodeSubmission(b, "the body", allowRef)
		if rerr != nil {
			if rerr.p == nil || rerr.p.Status != 400 {
				t.Fatalf("a refusal must be a 400 problem: %+v", rerr.p)
			}
			return
		}
		if s.PayloadRef != "" && !allowRef {
			t.Fatalf("payload_ref accepted over HTTP: %q", b)
		}
		enc, err := json.Marshal(s)
		if err != nil {
			t.Fatalf("re-encode %+v: %v", s, err)
		}
		if _, rerr := decodeSubmission(enc, "again", true); rerr != nil {
			t.Fatalf("re-decode of %s: %v", enc, rerr.p.Detail)
		}
	})
}

// FuzzParseRange: the logs endpoint's Range header parser never panics and
// only resolves ranges inside the object.
func FuzzParseRange(f *testing.F) {
	for _, h := range []string{"bytes=0-9", "bytes=-5", "bytes=5-", "bytes=9-3", "bytes=0-1,2-3", "items=0-1", "bytes=99999999999999999999-"} {
		f.Add(h, int64(10))
	}
	f.Fuzz(func(t *testing.T, h string, size int64) {
		if size < 0 {
			size = -size
		}
		br, ok := parseRange(h)
		if !ok {
			return
		}
		rng, ok := br.resolve(size)
		if !ok {
			return
		}
		if rng.Offset < 0 || rng.Length < 1 || rng.Offset+rng.Length > size {
			t.Fatalf("%q on %d bytes resolved outside the object: %+v", h, size, rng)
		}
	})
}

// refusal checks that rerr is what a caller can act on: a 400 problem
// that says what is wrong.
func refusal(t *testing.T, in any, rerr *requestError) {
	t.Helper()
	if rerr.p == nil || rerr.p.Status != http.StatusBadRequest || rerr.p.Detail == "" {
		t.Fatalf("%q: a refusal must be a 400 problem with a detail: %+v", in, rerr.p)
	}
	for _, p := range rerr.p.Errors {
		if p.Detail == "" {
			t.Fatalf("%q: problem %+v says nothing", in, p)
		}
	}
}

// FuzzDecodeBatch: the decoder of POST /v1/jobs/batch bodies never panics;
// it refuses the whole body with a 400 problem, or accepts 1..maxBatch
// submissions, each decoded as a submission over HTTP (no payload_ref) that
// survives a JSON round trip, or refused alone with a 400 problem that
// names its place in the array.
func FuzzDecodeBatch(f *testing.F) {
	f.Add([]byte(`{"jobs":[{"type":"echo","payload":{"hi":1}},{"type":"sleep","delay":"5s"}]}`))
	f.Add([]byte(`{"jobs":[{"type":"echo"},{"type":"echo","payload_ref":"x"},7]}`))
	f.Add([]byte(`{"jobs":[]}`))
	f.Add([]byte(`{"jobs":null}`))
	f.Add([]byte(`{"jobs":[{}],"jobs":[{}]}`))
	f.Add([]byte(`{"Jobs":[{}]}`))
	f.Add([]byte(`[{"type":"echo"}]`))
	f.Fuzz(func(t *testing.T, b []byte) {
		subs, errs, rerr := decodeBatch(b)
		if rerr != nil {
			refusal(t, b, rerr)
			if subs != nil || errs != nil {
				t.Fatalf("%q: refused, yet returned %d submissions", b, len(subs))
			}
			return
		}
		if !json.Valid(b) {
			t.Fatalf("accepted a body that is not JSON: %q", b)
		}
		if n := len(subs); n < 1 || n > maxBatch || len(errs) != n {
			t.Fatalf("%q: accepted %d submissions and %d errors; want 1..%d of each", b, n, len(errs), maxBatch)
		}
		for i, s := range subs {
			if errs[i] != nil {
				refusal(t, b, errs[i])
				if where := fmt.Sprintf("jobs[%d]", i); !strings.Contains(errs[i].p.Detail, where) {
					t.Fatalf("%q: the problem of submission %d does not name %s: %q", b, i, where, errs[i].p.Detail)
				}
				continue
			}
			if s.PayloadRef != "" {
				t.Fatalf("%q: payload_ref accepted over HTTP in submission %d", b, i)
			}
			enc, err := json.Marshal(s)
			if err != nil {
				t.Fatalf("re-encode %+v: %v", s, err)
			}
			if _, rerr := decodeSubmission(enc, "again", false); rerr != nil {
				t.Fatalf("re-decode of %s: %v", enc, rerr.p.Detail)
			}
		}
	})
}

// listParams are the parameters GET /v1/jobs knows.
var listParams = map[string]bool{"status": true, "type": true, "limit": true, "cursor": true}

// FuzzListQuery: the parser of GET /v1/jobs's query never panics; it
// refuses a query with a 400 problem, or accepts one whose every parameter
// it read (known, given once, and nothing dropped as unparsable) into a
// query within the documented limits: limit 0 (the default) or
// 1..jobstore.MaxListLimit, a known status or none, a valid type name or
// none, the cursor as given.
func FuzzListQuery(f *testing.F) {
	f.Add("")
	f.Add("status=queued&type=echo&limit=50&cursor=abc")
	f.Add("limit=0")
	f.Add("limit=1001")
	f.Add("status=RUNNING&status=QUEUED")
	f.Add("Status=RUNNING")
	f.Fuzz(func(t *testing.T, raw string) {
		// The server hands the handler the raw query as the client sent it;
		// setting it directly also covers bytes that could not be sent in a
		// request line (httptest.NewRequest would panic on those).
		r := httptest.NewRequest(http.MethodGet, "/v1/jobs", nil)
		r.URL.RawQuery = raw
		q, rerr := listQuery(r)
		if rerr != nil {
			refusal(t, raw, rerr)
			if len(rerr.p.Errors) == 0 {
				t.Fatalf("%q: refused without naming a parameter", raw)
			}
			for _, e := range rerr.p.Errors {
				if e.Field == "" {
					t.Fatalf("%q: a problem names no field: %+v", raw, e)
				}
			}
			return
		}
		vals, err := url.ParseQuery(raw)
		if err != nil {
			t.Fatalf("accepted %q, which has parameters that cannot be read (%v): they were ignored", raw, err)
		}
		for name, vs := range vals {
			if !listParams[name] || len(vs) != 1 {
				t.Fatalf("accepted %q, with parameter %q given %d times", raw, name, len(vs))
			}
		}
		switch {
		case q.Limit < 0 || q.Limit > jobstore.MaxListLimit:
			t.Fatalf("%q: limit %d is outside 0..%d", raw, q.Limit, jobstore.MaxListLimit)
		case q.Status != job.None && !q.Status.Valid():
			t.Fatalf("%q: status %q is not a status", raw, q.Status)
		case q.Type != "" && !job.ValidType(q.Type):
			t.Fatalf("%q: type %q is not a valid type name", raw, q.Type)
		case q.Cursor != vals.Get("cursor"):
			t.Fatalf("%q: cursor %q, want %q", raw, q.Cursor, vals.Get("cursor"))
		}
	})
}
