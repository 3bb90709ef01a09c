package dispatcher_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"github.com/jobfleet/jobfleet/pkg/blob"
	"github.com/jobfleet/jobfleet/pkg/blob/fileblob"
	"github.com/jobfleet/jobfleet/pkg/clock"
	"github.com/jobfleet/jobfleet/pkg/dispatcher"
	"github.com/jobfleet/jobfleet/pkg/errcode"
	"github.com/jobfleet/jobfleet/pkg/handlers"
	"github.com/jobfleet/jobfleet/pkg/job"
	"github.com/jobfleet/jobfleet/pkg/jobstore"
	"github.com/jobfleet/jobfleet/pkg/jobstore/sqlitejobstore"
	"github.com/jobfleet/jobfleet/pkg/metrics"
	"github.com/jobfleet/jobfleet/pkg/queue"
	"github.com/jobfleet/jobfleet/pkg/queue/sqlitequeue"
	"github.com/jobfleet/jobfleet/pkg/worker"
)

// epoch is where the tests' fake clocks start.
var epoch = time.Date(2031, 5, 6, 7, 8, 9, 0, time.UTC)

// Limits the tests' services run with: small payloads, so oversize bodies
// are cheap to send.
const (
	testMaxPayload  = 32 << 10
	testInlineLimit = 1 << 10
	testToken       = "test-token-0123456789abcdef"
)

type env struct {
	t      *testing.T
	clk    *clock.Fake
	store  *jobstore.Store
	work   *queue.Queue
	bucket *blob.Bucket
	m      *metrics.Metrics
	svc    *dispatcher.Service
	api    *dispatcher.API
	srv    *httptest.Server
	policy job.Policy
	token  string // sent as a bearer token when set
}

// setup returns a dispatcher API over fresh local adapters in t's temporary
// directory, served by an httptest server.
func setup(t *testing.T, opts *dispatcher.APIOptions) *env {
	t.Helper()
	ctx := t.Context()
	dir := t.TempDir()
	e := &env{t: t, clk: clock.NewFake(epoch), m: metrics.New(), policy: job.DefaultPolicy}

	store, err := sqlitejobstore.Open(ctx, filepath.Join(dir, "jobs.db"), &sqlitejobstore.Options{Clock: e.clk})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, store.Close()) })
	qdb, err := sqlitequeue.OpenDB(ctx, filepath.Join(dir, "queue.db"), &sqlitequeue.Options{Clock: e.clk})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, qdb.Close()) })
	require.NoError(t, qdb.CreateQueue(ctx, "work", sqlitequeue.Config{}))
	work, err := qdb.Open(ctx, "work")
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, work.Close()) })
	bucket, err := fileblob.Open(filepath.Join(dir, "blobs"), &fileblob.Options{Clock: e.clk})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, bucket.Close()) })
	e.store, e.work, e.bucket = store, work, bucket

	reg := worker.NewRegistry()
	handlers.Register(reg, handlers.Options{})
	limits := job.DefaultLimits
	limits.MaxPayload = testMaxPayload
	limits.KnownType = func(typ string) bool { _, ok := reg.Lookup(typ); return ok }
	e.svc = dispatcher.NewService(store, work, bucket, &dispatcher.Options{
		Limits:      limits,
		Payloads:    reg,
		InlineLimit: testInlineLimit,
		Clock:       e.clk,
		Metrics:     e.m,
		GroupCommit: true, // SQLite, as on the local profile
	})
	e.api = dispatcher.NewAPI(e.svc, opts)
	e.srv = httptest.NewServer(e.api)
	t.Cleanup(e.srv.Close)
	return e
}

// reply is an answer, read whole.
type reply struct {
	status int
	header http.Header
	body   []byte
}

// call sends a request with body (a string, []byte, io.Reader or nil) and
// extra header lines.
func (e *env) call(method, path string, body any, header ...string) reply {
	e.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	case []byte:
		rd = bytes.NewReader(b)
	case io.Reader:
		rd = b
	default:
		e.t.Fatalf("call: body of type %T", body)
	}
	req, err := http.NewRequestWithContext(e.t.Context(), method, e.srv.URL+path, rd)
	require.NoError(e.t, err)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if e.token != "" {
		req.Header.Set("Authorization", "Bearer "+e.token)
	}
	for i := 0; i+1 < len(header); i += 2 {
		if header[i+1] == "" {
			req.Header.Del(header[i])
		} else {
			req.Header.Set(header[i], header[i+1])
		}
	}
	resp, err := e.srv.Client().Do(req)
	require.NoError(e.t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(e.t, err)
	return reply{status: resp.StatusCode, header: resp.Header, body: b}
}

func (r reply) String() string { return fmt.Sprintf("%d %s", r.status, r.body) }

// problem checks that r is a problem document with status and returns it.
func (r reply) problem(t *testing.T, status int) dispatcher.Problem {
	t.Helper()
	require.Equal(t, status, r.status, "%s", r)
	require.Equal(t, "application/problem+json", r.header.Get("Content-Type"), "%s", r)
	var p dispatcher.Problem
	dec := json.NewDecoder(bytes.NewReader(r.body))
	dec.DisallowUnknownFields()
	require.NoError(t, dec.Decode(&p), "%s", r)
	require.Equal(t, status, p.Status)
	require.NotEmpty(t, p.Type)
	require.NotEmpty(t, p.Title)
	return p
}

// view checks that r is a job view with status and returns it.
func (r reply) view(t *testing.T, status int) dispatcher.JobView {
	t.Helper()
	require.Equal(t, status, r.status, "%s", r)
	require.Equal(t, "application/json", r.header.Get("Content-Type"))
	var v dispatcher.JobView
	dec := json.NewDecoder(bytes.NewReader(r.body))
	dec.DisallowUnknownFields()
	require.NoError(t, dec.Decode(&v), "%s", r)
	return v
}

func fields(p dispatcher.Problem) []string {
	var fs []string
	for _, e := range p.Errors {
		fs = append(fs, e.Field)
	}
	return fs
}

// submit posts a submission and returns the new job's view.
func (e *env) submit(body string) dispatcher.JobView {
	e.t.Helper()
	return e.call("POST", "/v1/jobs", body).view(e.t, http.StatusCreated)
}

// start starts the job as a worker would, from its work message.
func (e *env) start(id string) *job.Job {
	e.t.Helper()
	cur, err := e.store.Get(e.t.Context(), id)
	require.NoError(e.t, err)
	j, err := e.store.ApplyOne(e.t.Context(), e.policy.Start(job.Message{ID: id, Attempt: cur.Attempt}, "worker-1", e.clk.Now()))
	require.NoError(e.t, err)
	return j
}

// finish ends the running job's attempt as its owner would.
func (e *env) finish(j *job.Job, end job.End) *job.Job {
	e.t.Helper()
	n, err := e.store.ApplyOne(e.t.Context(), e.policy.Finish(j, e.clk.Now(), end))
	require.NoError(e.t, err)
	return n
}

func TestSubmitAndGet(t *testing.T) {
	t.Parallel()
	e := setup(t, nil)
	r := e.call("POST", "/v1/jobs", `{"type":"echo","payload":{"hello": "world"},"max_attempts":3,"timeout":"90s"}`)
	v := r.view(t, http.StatusCreated)
	require.Equal(t, "/v1/jobs/"+v.ID, r.header.Get("Location"))
	require.Equal(t, "no-store", r.header.Get("Cache-Control"))
	require.True(t, job.ValidID(v.ID))
	want := dispatcher.JobView{
		ID: v.ID, Type: "echo", Status: job.Queued, MaxAttempts: 3, Timeout: job.Duration(90 * time.Second),
		RunAt: epoch, CreatedAt: epoch, UpdatedAt: epoch,
		Payload: json.RawMessage(`{"hello":"world"}`), PayloadSize: 17,
	}
	require.Empty(t, cmp.Diff(want, v))

	got := e.call("GET", r.header.Get("Location"), nil)
	require.Equal(t, "no-store", got.header.Get("Cache-Control"))
	require.Empty(t, cmp.Diff(want, got.view(t, http.StatusOK)))

	// The work message went out.
	msgs, err := e.work.Receive(t.Context(), queue.ReceiveOptions{Max: 10})
	require.NoError(t, err)
	require.Len(t, msgs, 1)
	m, err := job.DecodeMessage(msgs[0].Body)
	require.NoError(t, err)
	require.Equal(t, job.Message{ID: v.ID, Attempt: 0}, m)
}

// `curl -d` sends application/x-www-form-urlencoded unless told otherwise;
// the body is still read as JSON, so the README's one-liner works.
func TestSubmitAcceptsCurlDefaultContentType(t *testing.T) {
	t.Parallel()
	e := setup(t, nil)
	r := e.call("POST", "/v1/jobs", `{"type":"echo","payload":{"hi":1}}`, "Content-Type", "application/x-www-form-urlencoded")
	v := r.view(t, http.StatusCreated)
	require.JSONEq(t, `{"hi":1}`, string(v.Payload))
}

func TestSubmitOptionalFields(t *testing.T) {
	t.Parallel()
	e := setup(t, nil)
	// A delay beyond the queue's reach schedules the job; run_at is kept.
	v := e.submit(`{"type":"sleep","payload":{"seconds":1},"delay":"2h","key":"k-1"}`)
	require.Equal(t, job.Scheduled, v.Status)
	require.Equal(t, epoch.Add(2*time.Hour), v.RunAt)
	require.Equal(t, "k-1", v.Key)
	require.Equal(t, job.Duration(4*time.Hour), v.Timeout, "the default timeout")
	require.Equal(t, 5, v.MaxAttempts, "the default max_attempts")

	at := epoch.Add(10 * time.Minute).Format(time.RFC3339)
	v = e.submit(`{"type":"echo","run_at":"` + at + `","delay":0}`)
	require.Equal(t, job.Queued, v.Status)
	require.Equal(t, epoch.Add(10*time.Minute), v.RunAt)

	// A number of seconds is a duration too, and application/*+json is JSON.
	r := e.call("POST", "/v1/jobs", `{"type":"echo","timeout":120}`, "Content-Type", "application/vnd.jobfleet+json; charset=utf-8")
	require.Equal(t, job.Duration(2*time.Minute), r.view(t, http.StatusCreated).Timeout)
	// No Content-Type at all is accepted.
	r = e.call("POST", "/v1/jobs", `{"type":"echo"}`, "Content-Type", "")
	r.view(t, http.StatusCreated)
}

func TestSubmitLargePayloadGoesToBlobStore(t *testing.T) {
	t.Parallel()
	e := setup(t, nil)
	big := `{"data":"` + strings.Repeat("x", 4<<10) + `"}`
	v := e.submit(`{"type":"echo","payload":` + big + `}`)
	require.Empty(t, v.Payload)
	require.Equal(t, dispatcher.PayloadKey(v.ID), v.PayloadRef)
	require.Equal(t, int64(len(big)), v.PayloadSize)
	stored, err := e.bucket.ReadAll(t.Context(), v.PayloadRef)
	require.NoError(t, err)
	require.JSONEq(t, big, string(stored))
}

func TestSubmitInvalid(t *testing.T) {
	t.Parallel()
	e := setup(t, nil)
	tooBig := `{"type":"echo","payload":"` + strings.Repeat("y", testMaxPayload+80<<10) + `"}`
	for _, tc := range []struct {
		name   string
		body   any
		header []string
		status int
		typ    string
		fields []string // errors[].field, in order
		detail string   // a part of the detail
	}{
		{name: "unknown type", body: `{"type":"nope"}`, status: 400, typ: dispatcher.ProblemInvalidArgument, fields: []string{"type"}},
		{name: "malformed type", body: `{"type":"9lives"}`, status: 400, typ: dispatcher.ProblemInvalidArgument, fields: []string{"type"}},
		{name: "missing type", body: `{"payload":1}`, status: 400, typ: dispatcher.ProblemInvalidArgument, fields: []string{"type"}},
		{name: "bad payload for a built-in type", body: `{"type":"sleep","payload":{"seconds":"x"}}`, status: 400, typ: dispatcher.ProblemInvalidArgument, fields: []string{"payload"}},
		{name: "unknown payload field for a built-in type", body: `{"type":"sleep","payload":{"secs":1}}`, status: 400, typ: dispatcher.ProblemInvalidArgument, fields: []string{"payload"}},
		{name: "payload over the limit", body: `{"type":"echo","payload":"` + strings.Repeat("z", testMaxPayload) + `"}`, status: 400, typ: dispatcher.ProblemInvalidArgument, fields: []string{"payload"}},
		{name: "several problems at once", body: `{"type":"echo","key":"has space","max_attempts":1000,"timeout":"-1s","delay":"1s","run_at":"2031-05-06T08:00:00Z"}`, status: 400, typ: dispatcher.ProblemInvalidArgument, fields: []string{"key", "max_attempts", "timeout", "delay"}},
		{name: "huge key", body: `{"type":"echo","key":"` + strings.Repeat("k", 300) + `"}`, status: 400, typ: dispatcher.ProblemInvalidArgument, fields: []string{"key"}},
		{name: "oversize body", body: tooBig, status: 413, typ: dispatcher.ProblemTooLarge},
		{name: "unknown field", body: `{"type":"echo","colour":"red"}`, status: 400, typ: dispatcher.ProblemMalformedRequest, fields: []string{"colour"}},
		{name: "field names are case-sensitive", body: `{"Type":"echo"}`, status: 400, typ: dispatcher.ProblemMalformedRequest, fields: []string{"Type"}},
		{name: "payload_ref is for ingress only", body: `{"type":"echo","payload_ref":"payloads/x.json"}`, status: 400, typ: dispatcher.ProblemMalformedRequest, fields: []string{"payload_ref"}},
		{name: "repeated field", body: `{"type":"echo","type":"sleep"}`, status: 400, typ: dispatcher.ProblemMalformedRequest, fields: []string{"type"}},
		{name: "wrong JSON types", body: `{"type":7,"max_attempts":"3","timeout":"soon","run_at":"tomorrow","key":[]}`, status: 400, typ: dispatcher.ProblemMalformedRequest, fields: []string{"type", "max_attempts", "timeout", "run_at", "key"}},
		{name: "trailing garbage", body: `{"type":"echo"} x`, status: 400, typ: dispatcher.ProblemMalformedRequest, detail: "data after the JSON object (at byte offset 16)"},
		{name: "second object", body: `{"type":"echo"}{"type":"echo"}`, status: 400, typ: dispatcher.ProblemMalformedRequest, detail: "data after the JSON object (at byte offset 15)"},
		{name: "not JSON", body: `{"type":"echo",}`, status: 400, typ: dispatcher.ProblemMalformedRequest, detail: "byte offset"},
		{name: "cut short", body: `{"type":"echo"`, status: 400, typ: dispatcher.ProblemMalformedRequest, detail: "unexpected end of input"},
		{name: "not an object", body: `[{"type":"echo"}]`, status: 400, typ: dispatcher.ProblemMalformedRequest, detail: "must be a JSON object, not an array"},
		{name: "empty body", body: ``, status: 400, typ: dispatcher.ProblemMalformedRequest, detail: "empty"},
		{name: "invalid UTF-8", body: []byte("{\"type\":\"echo\",\"key\":\"a\xffb\"}"), status: 400, typ: dispatcher.ProblemMalformedRequest, detail: "not valid UTF-8 (first bad byte at offset 23)"},
		{name: "wrong content type", body: `{"type":"echo"}`, header: []string{"Content-Type", "text/plain"}, status: 415, typ: dispatcher.ProblemUnsupportedMediaType},
		{name: "wrong charset", body: `{"type":"echo"}`, header: []string{"Content-Type", "application/json; charset=latin1"}, status: 415, typ: dispatcher.ProblemUnsupportedMediaType},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := e.call("POST", "/v1/jobs", tc.body, tc.header...).problem(t, tc.status)
			require.Equal(t, tc.typ, p.Type)
			require.Equal(t, "/v1/jobs", p.Instance)
			require.Equal(t, "invalid_argument", p.Code)
			require.Equal(t, tc.fields, fields(p), "%+v", p)
			require.Contains(t, p.Detail, tc.detail)
			for _, pe := range p.Errors {
				require.NotEmpty(t, pe.Detail)
			}
		})
	}
	// Nothing was stored.
	page, err := e.store.List(t.Context(), jobstore.ListQuery{})
	require.NoError(t, err)
	require.Empty(t, page.Jobs)
	require.Contains(t, string(e.call("GET", "/metrics", nil).body), `jobfleet_submissions_rejected_total{reason="too_large",source="http"} 1`)
}

func TestSubmitInvalidExplainsWrongTypes(t *testing.T) {
	t.Parallel()
	e := setup(t, nil)
	p := e.call("POST", "/v1/jobs", `{"type":"echo","max_attempts":"3","timeout":"soon"}`).problem(t, 400)
	require.Equal(t, []job.Problem{
		{Field: "max_attempts", Detail: `must be an integer, not a string "3"`},
		{Field: "timeout", Detail: `must be a duration such as "90s" or a number of seconds, not a string "soon"`},
	}, p.Errors)
	p = e.call("POST", "/v1/jobs", `{"type":"sleep","payload":{"seconds":"x"}}`).problem(t, 400)
	require.Len(t, p.Errors, 1)
	require.Contains(t, p.Errors[0].Detail, "seconds")
}

func TestSubmitDeduplicates(t *testing.T) {
	t.Parallel()
	e := setup(t, nil)
	first := e.submit(`{"type":"echo","key":"order-42","payload":{"n":1}}`)
	require.False(t, first.Deduplicated)

	// The same payload (formatted differently): the same job, 200.
	r := e.call("POST", "/v1/jobs", `{"type":"echo","key":"order-42","payload":{ "n" : 1 }}`)
	again := r.view(t, http.StatusOK)
	require.True(t, again.Deduplicated)
	require.Equal(t, first.ID, again.ID)
	require.Empty(t, r.header.Get("Location"))

	// A different payload: 409, naming the holder.
	p := e.call("POST", "/v1/jobs", `{"type":"echo","key":"order-42","payload":{"n":2}}`).problem(t, http.StatusConflict)
	require.Equal(t, dispatcher.ProblemKeyConflict, p.Type)
	require.Equal(t, "already_exists", p.Code)
	require.Equal(t, first.ID, p.JobID)

	// Once the holder is finished, the key is free again.
	e.call("POST", "/v1/jobs/"+first.ID+"/cancel", nil).view(t, http.StatusOK)
	second := e.submit(`{"type":"echo","key":"order-42","payload":{"n":2}}`)
	require.NotEqual(t, first.ID, second.ID)
}

// jobfleet_submissions_rejected_total counts each refusal once, by reason;
// a deduplicated submission is no refusal.
func TestRejectionsCounted(t *testing.T) {
	t.Parallel()
	e := setup(t, nil)
	e.submit(`{"type":"echo","key":"k","payload":1}`)
	e.call("POST", "/v1/jobs", `{"type":"echo","key":"k","payload":1}`).view(t, http.StatusOK)
	e.call("POST", "/v1/jobs", `{"type":"echo","key":"k","payload":2}`).problem(t, http.StatusConflict)
	e.call("POST", "/v1/jobs", `{"type":"no_such_type"}`).problem(t, http.StatusBadRequest)
	e.call("POST", "/v1/jobs", `{"type":`).problem(t, http.StatusBadRequest)
	r := e.call("POST", "/v1/jobs/batch", `{"jobs":[{"type":"echo"},{"type":"no_such_type"},{"type":"echo","key":"k","payload":3}]}`)
	require.Equal(t, http.StatusOK, r.status, "%s", r.body)
	rejected := func(reason string) float64 { return testutil.ToFloat64(e.m.Rejected.WithLabelValues("http", reason)) }
	require.Equal(t, 2.0, rejected("key_conflict"))
	require.Equal(t, 2.0, rejected("invalid"))
	require.Equal(t, 1.0, rejected("malformed"))
	require.Equal(t, 3, testutil.CollectAndCount(e.m.Rejected))
}

func TestSubmitBatch(t *testing.T) {
	t.Parallel()
	e := setup(t, nil)
	held := e.submit(`{"type":"echo","key":"held","payload":1}`)
	body := `{"jobs":[
		{"type":"echo","payload":"a"},
		{"type":"nope"},
		{"type":"echo","colour":"red"},
		{"type":"echo","key":"held","payload":1},
		{"type":"echo","key":"held","payload":2},
		{"type":"sleep","payload":{"seconds":0.5},"key":"new"}
	]}`
	r := e.call("POST", "/v1/jobs/batch", body)
	require.Equal(t, http.StatusOK, r.status, "%s", r)
	var br dispatcher.BatchResponse
	require.NoError(t, json.Unmarshal(r.body, &br))
	require.Len(t, br.Results, 6)
	var statuses []int
	for _, res := range br.Results {
		statuses = append(statuses, res.Status)
		require.True(t, (res.Job == nil) != (res.Problem == nil), "%+v", res)
		if res.Problem != nil {
			require.Equal(t, res.Status, res.Problem.Status)
			require.Equal(t, "/v1/jobs/batch", res.Problem.Instance)
		}
	}
	require.Equal(t, []int{201, 400, 400, 200, 409, 201}, statuses)
	require.Equal(t, job.Queued, br.Results[0].Job.Status)
	require.Equal(t, []string{"type"}, fields(*br.Results[1].Problem))
	require.Equal(t, dispatcher.ProblemMalformedRequest, br.Results[2].Problem.Type)
	require.Equal(t, []string{"colour"}, fields(*br.Results[2].Problem))
	require.True(t, br.Results[3].Deduplicated)
	require.Equal(t, held.ID, br.Results[3].Job.ID)
	require.Equal(t, held.ID, br.Results[4].Problem.JobID)
	require.Equal(t, "new", br.Results[5].Job.Key)

	page, err := e.store.List(t.Context(), jobstore.ListQuery{})
	require.NoError(t, err)
	require.Len(t, page.Jobs, 3, "held and the two new jobs")

	// The batch as a whole must be well formed.
	many := `{"jobs":[` + strings.TrimSuffix(strings.Repeat(`{"type":"echo"},`, 1001), ",") + `]}`
	for _, tc := range []struct{ name, body string }{
		{"empty", `{"jobs":[]}`},
		{"too many", many},
		{"no jobs", `{}`},
		{"null jobs", `{"jobs":null}`},
		{"jobs not an array", `{"jobs":{"type":"echo"}}`},
		{"unknown member", `{"jobs":[{"type":"echo"}],"dry_run":true}`},
		{"not JSON", `{"jobs":[{"type":"echo"}`},
		{"trailing data", `{"jobs":[{"type":"echo"}]}]`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e.call("POST", "/v1/jobs/batch", tc.body).problem(t, http.StatusBadRequest)
		})
	}
	page, err = e.store.List(t.Context(), jobstore.ListQuery{})
	require.NoError(t, err)
	require.Len(t, page.Jobs, 3, "no refused batch stored anything")
}

func TestList(t *testing.T) {
	t.Parallel()
	e := setup(t, nil)
	var ids []string
	for i := range 7 {
		typ := "echo"
		if i%2 == 1 {
			typ = "fail"
		}
		ids = append(ids, e.submit(`{"type":"`+typ+`"}`).ID)
	}
	e.call("POST", "/v1/jobs/"+ids[0]+"/cancel", nil).view(t, http.StatusOK)

	list := func(query string) dispatcher.ListResponse {
		t.Helper()
		r := e.call("GET", "/v1/jobs"+query, nil)
		require.Equal(t, http.StatusOK, r.status, "%s", r)
		var lr dispatcher.ListResponse
		require.NoError(t, json.Unmarshal(r.body, &lr))
		return lr
	}
	// Paging by cursor, newest first.
	var got []string
	cursor := ""
	for pages := 0; ; pages++ {
		require.Less(t, pages, 5, "paging does not end")
		lr := list("?limit=3&cursor=" + cursor)
		require.LessOrEqual(t, len(lr.Jobs), 3)
		for _, v := range lr.Jobs {
			got = append(got, v.ID)
		}
		if lr.NextCursor == "" {
			break
		}
		cursor = lr.NextCursor
	}
	want := make([]string, len(ids))
	for i, id := range ids {
		want[len(ids)-1-i] = id
	}
	require.Equal(t, want, got)

	lr := list("?type=fail")
	require.Len(t, lr.Jobs, 3)
	for _, v := range lr.Jobs {
		require.Equal(t, "fail", v.Type)
	}
	lr = list("?status=cancelled") // case-insensitive
	require.Len(t, lr.Jobs, 1)
	require.Equal(t, ids[0], lr.Jobs[0].ID)
	lr = list("?status=QUEUED&type=echo")
	require.Len(t, lr.Jobs, 3)
	require.Empty(t, lr.NextCursor)
	lr = list("?status=RUNNING")
	require.NotNil(t, lr.Jobs)
	require.Empty(t, lr.Jobs)
	require.Equal(t, `{"jobs":[]}`+"\n", string(e.call("GET", "/v1/jobs?status=RUNNING", nil).body))

	for _, tc := range []struct{ query, field string }{
		{"?status=DONE", "status"},
		{"?limit=0", "limit"},
		{"?limit=1001", "limit"},
		{"?limit=ten", "limit"},
		{"?type=9x", "type"},
		{"?stauts=QUEUED", "stauts"},
		{"?limit=1&limit=2", "limit"},
	} {
		p := e.call("GET", "/v1/jobs"+tc.query, nil).problem(t, http.StatusBadRequest)
		require.Equal(t, []string{tc.field}, fields(p), tc.query)
	}
	p := e.call("GET", "/v1/jobs?cursor=not-a-cursor", nil).problem(t, http.StatusBadRequest)
	require.Equal(t, "invalid_argument", p.Code)
}

func TestCancelQueuedMakesTheMessageStale(t *testing.T) {
	t.Parallel()
	e := setup(t, nil)
	v := e.submit(`{"type":"echo"}`)
	e.clk.Advance(time.Second)
	c := e.call("POST", "/v1/jobs/"+v.ID+"/cancel", nil).view(t, http.StatusOK)
	require.Equal(t, job.Cancelled, c.Status)
	require.Equal(t, epoch.Add(time.Second), c.FinishedAt)
	require.False(t, c.ExpiresAt.IsZero())

	// The work message is still in the queue; a worker's start loses.
	msgs, err := e.work.Receive(t.Context(), queue.ReceiveOptions{Max: 10})
	require.NoError(t, err)
	require.Len(t, msgs, 1)
	m, err := job.DecodeMessage(msgs[0].Body)
	require.NoError(t, err)
	_, err = e.store.ApplyOne(t.Context(), e.policy.Start(m, "worker-1", e.clk.Now()))
	require.ErrorIs(t, err, errcode.FailedPrecondition)

	// Cancelling a terminal job is a conflict that says its status.
	p := e.call("POST", "/v1/jobs/"+v.ID+"/cancel", nil).problem(t, http.StatusConflict)
	require.Equal(t, dispatcher.ProblemFailedPrecondition, p.Type)
	require.Equal(t, "failed_precondition", p.Code)
	require.Equal(t, v.ID, p.JobID)
	require.Equal(t, job.Cancelled, p.JobStatus)

	// Unknown and malformed ids are 404.
	e.call("POST", "/v1/jobs/"+job.NewID(epoch)+"/cancel", nil).problem(t, http.StatusNotFound)
	e.call("POST", "/v1/jobs/nope/cancel", nil).problem(t, http.StatusNotFound)
	e.call("GET", "/v1/jobs/nope", nil).problem(t, http.StatusNotFound)
}

func TestCancelRunningRequestsCancel(t *testing.T) {
	t.Parallel()
	e := setup(t, nil)
	v := e.submit(`{"type":"echo"}`)
	e.start(v.ID)
	c := e.call("POST", "/v1/jobs/"+v.ID+"/cancel", nil).view(t, http.StatusOK)
	require.Equal(t, job.Running, c.Status)
	require.True(t, c.CancelRequested)
	require.Equal(t, "worker-1", c.Owner)
	require.Equal(t, 1, c.Attempt)
	require.Equal(t, "/v1/jobs/"+v.ID+"/logs", c.LogsURL)
}

func TestResult(t *testing.T) {
	t.Parallel()
	e := setup(t, nil)
	v := e.submit(`{"type":"echo","payload":{"x":1}}`)
	p := e.call("GET", "/v1/jobs/"+v.ID+"/result", nil).problem(t, http.StatusConflict)
	require.Equal(t, job.Queued, p.JobStatus)
	require.Equal(t, v.ID, p.JobID)
	require.Contains(t, p.Detail, "QUEUED")

	j := e.start(v.ID)
	p = e.call("GET", "/v1/jobs/"+v.ID+"/result", nil).problem(t, http.StatusConflict)
	require.Equal(t, job.Running, p.JobStatus)

	e.finish(j, job.End{Outcome: job.OutcomeSucceeded, Result: json.RawMessage(`{"x":1}`)})
	r := e.call("GET", "/v1/jobs/"+v.ID+"/result", nil)
	require.Equal(t, http.StatusOK, r.status)
	require.Equal(t, "application/json", r.header.Get("Content-Type"))
	require.Equal(t, `{"x":1}`, string(r.body))
	got := e.call("GET", "/v1/jobs/"+v.ID, nil).view(t, http.StatusOK)
	require.Equal(t, job.Succeeded, got.Status)
	require.JSONEq(t, `{"x":1}`, string(got.Result))
	require.Equal(t, "/v1/jobs/"+v.ID+"/result", got.ResultURL)
	require.Len(t, got.History, 1)
	require.Equal(t, job.OutcomeSucceeded, got.History[0].Outcome)

	// A large result is streamed from the blob store.
	v = e.submit(`{"type":"echo"}`)
	j = e.start(v.ID)
	big := []byte(`{"rows":"` + strings.Repeat("r", 200<<10) + `"}`)
	key := worker.ResultKey(v.ID, j.Attempt)
	_, err := e.bucket.PutBytes(t.Context(), key, big, "application/json")
	require.NoError(t, err)
	e.finish(j, job.End{Outcome: job.OutcomeSucceeded, ResultRef: key})
	r = e.call("GET", "/v1/jobs/"+v.ID+"/result", nil)
	require.Equal(t, http.StatusOK, r.status)
	require.Equal(t, "application/json", r.header.Get("Content-Type"))
	require.Equal(t, big, r.body)
	got = e.call("GET", "/v1/jobs/"+v.ID, nil).view(t, http.StatusOK)
	require.Empty(t, got.Result)
	require.Equal(t, "/v1/jobs/"+v.ID+"/result", got.ResultURL)

	// A failed job has no result.
	v = e.submit(`{"type":"fail","max_attempts":1}`)
	j = e.start(v.ID)
	e.finish(j, job.End{Outcome: job.OutcomePermanent, Reason: "boom"})
	p = e.call("GET", "/v1/jobs/"+v.ID+"/result", nil).problem(t, http.StatusConflict)
	require.Equal(t, job.Failed, p.JobStatus)
	e.call("GET", "/v1/jobs/"+job.NewID(epoch)+"/result", nil).problem(t, http.StatusNotFound)
}

func TestLogs(t *testing.T) {
	t.Parallel()
	e := setup(t, nil)
	v := e.submit(`{"type":"echo"}`)
	path := "/v1/jobs/" + v.ID + "/logs"
	// Not started: no attempt, no log.
	e.call("GET", path, nil).problem(t, http.StatusNotFound)
	j := e.start(v.ID)
	// Started, log not written yet.
	e.call("GET", path, nil).problem(t, http.StatusNotFound)

	var lines strings.Builder
	for i := range 10 {
		fmt.Fprintf(&lines, "line %02d\n", i) // 8 bytes a line
	}
	log := lines.String()
	_, err := e.bucket.PutBytes(t.Context(), worker.LogKey(v.ID, 1), []byte(log), "text/plain; charset=utf-8")
	require.NoError(t, err)

	r := e.call("GET", path, nil)
	require.Equal(t, http.StatusOK, r.status)
	require.Equal(t, log, string(r.body))
	require.Equal(t, "text/plain; charset=utf-8", r.header.Get("Content-Type"))
	require.Equal(t, "bytes", r.header.Get("Accept-Ranges"))
	require.Equal(t, "nosniff", r.header.Get("X-Content-Type-Options"))

	for _, tc := range []struct {
		rng, want, contentRange string
	}{
		{"bytes=0-7", log[:8], "bytes 0-7/80"},
		{"bytes=72-", log[72:], "bytes 72-79/80"},
		{"bytes=-8", log[72:], "bytes 72-79/80"},
		{"bytes=-500", log, "bytes 0-79/80"},
		{"bytes=75-1000", log[75:], "bytes 75-79/80"},
		{"bytes=79-79", log[79:], "bytes 79-79/80"},
	} {
		r := e.call("GET", path, nil, "Range", tc.rng)
		require.Equal(t, http.StatusPartialContent, r.status, tc.rng)
		require.Equal(t, tc.want, string(r.body), tc.rng)
		require.Equal(t, tc.contentRange, r.header.Get("Content-Range"), tc.rng)
		require.Equal(t, fmt.Sprint(len(tc.want)), r.header.Get("Content-Length"), tc.rng)
	}
	for _, rng := range []string{"bytes=80-", "bytes=500-600", "bytes=-0"} {
		r := e.call("GET", path, nil, "Range", rng)
		r.problem(t, http.StatusRequestedRangeNotSatisfiable)
		require.Equal(t, "bytes */80", r.header.Get("Content-Range"), rng)
	}
	// Ranges the API ignores: the whole log.
	for _, rng := range []string{"bytes=abc", "bytes=5-2", "items=0-1", "bytes=0-1,4-5"} {
		r := e.call("GET", path, nil, "Range", rng)
		require.Equal(t, http.StatusOK, r.status, rng)
		require.Equal(t, log, string(r.body), rng)
	}
	r = e.call("GET", path, nil, "Range", "bytes=0-3", "If-Range", `"some-etag"`)
	require.Equal(t, http.StatusOK, r.status)

	// Attempts: the latest by default, or the one asked for.
	e.finish(j, job.End{Outcome: job.OutcomeHandedBack, Reason: "drain"})
	j = e.start(v.ID)
	require.Equal(t, 2, j.Attempt)
	_, err = e.bucket.PutBytes(t.Context(), worker.LogKey(v.ID, 2), nil, "text/plain; charset=utf-8")
	require.NoError(t, err)
	r = e.call("GET", path, nil)
	require.Equal(t, http.StatusOK, r.status)
	require.Empty(t, r.body)
	r = e.call("GET", path, nil, "Range", "bytes=0-")
	r.problem(t, http.StatusRequestedRangeNotSatisfiable)
	require.Equal(t, "bytes */0", r.header.Get("Content-Range"))
	r = e.call("GET", path+"?attempt=1", nil, "Range", "bytes=-8")
	require.Equal(t, http.StatusPartialContent, r.status)
	require.Equal(t, "line 09\n", string(r.body))
	e.call("GET", path+"?attempt=3", nil).problem(t, http.StatusNotFound)
	for _, q := range []string{"?attempt=0", "?attempt=x", "?attempt=1&attempt=2", "?tail=1"} {
		e.call("GET", path+q, nil).problem(t, http.StatusBadRequest)
	}
	e.call("GET", "/v1/jobs/"+job.NewID(epoch)+"/logs", nil).problem(t, http.StatusNotFound)
}

func TestAuth(t *testing.T) {
	t.Parallel()
	e := setup(t, &dispatcher.APIOptions{Tokens: []string{"", "other-token-0123456789", testToken}})
	e.api.SetReady(true)

	r := e.call("GET", "/v1/jobs", nil)
	p := r.problem(t, http.StatusUnauthorized)
	require.Equal(t, dispatcher.ProblemUnauthorized, p.Type)
	require.Equal(t, `Bearer realm="jobfleet"`, r.header.Get("WWW-Authenticate"))
	require.Equal(t, "no-store", r.header.Get("Cache-Control"))

	for _, auth := range []string{"Bearer wrong-token", "Bearer ", "Basic " + testToken, testToken, "Bearer " + testToken + "x"} {
		r = e.call("POST", "/v1/jobs", `{"type":"echo"}`, "Authorization", auth)
		r.problem(t, http.StatusUnauthorized)
		if strings.HasPrefix(auth, "Bearer") || strings.HasPrefix(auth, "Basic") {
			require.Contains(t, r.header.Get("WWW-Authenticate"), `error="invalid_token"`, auth)
		}
	}
	// Unauthenticated callers learn nothing about routes or jobs.
	e.call("GET", "/v1/nothing-here", nil).problem(t, http.StatusUnauthorized)
	e.call("DELETE", "/v1/jobs", nil).problem(t, http.StatusUnauthorized)

	e.token = testToken
	v := e.submit(`{"type":"echo"}`)
	e.call("GET", "/v1/jobs/"+v.ID, nil).view(t, http.StatusOK)
	require.Equal(t, http.StatusOK, e.call("GET", "/v1/jobs", nil, "Authorization", "bearer other-token-0123456789").status)

	// Health, readiness and metrics need no token.
	e.token = ""
	for _, path := range []string{"/healthz", "/readyz", "/metrics"} {
		require.Equal(t, http.StatusOK, e.call("GET", path, nil).status, path)
	}
}

func TestMetricsCountRequestsByRoute(t *testing.T) {
	t.Parallel()
	e := setup(t, nil)
	v := e.submit(`{"type":"echo"}`)
	e.call("GET", "/v1/jobs/"+v.ID, nil).view(t, http.StatusOK)
	e.call("GET", "/v1/jobs/"+v.ID, nil).view(t, http.StatusOK)
	e.call("GET", "/v1/jobs/"+job.NewID(epoch), nil).problem(t, http.StatusNotFound)
	e.call("GET", "/nowhere/"+v.ID, nil).problem(t, http.StatusNotFound)

	r := e.call("GET", "/metrics", nil)
	require.Equal(t, http.StatusOK, r.status)
	text := string(r.body)
	for _, want := range []string{
		`jobfleet_http_requests_total{code="201",route="POST /v1/jobs"} 1`,
		`jobfleet_http_requests_total{code="200",route="GET /v1/jobs/{id}"} 2`,
		`jobfleet_http_requests_total{code="404",route="GET /v1/jobs/{id}"} 1`,
		`jobfleet_http_requests_total{code="404",route="/"} 1`,
		`jobfleet_http_request_seconds_count{route="GET /v1/jobs/{id}"} 3`,
		`jobfleet_jobs_submitted_total{type="echo"} 1`,
	} {
		require.Contains(t, text, want)
	}
	require.NotContains(t, text, v.ID, "routes are patterns, never raw paths")
}

func TestMethodNotAllowedAndUnknownRoutes(t *testing.T) {
	t.Parallel()
	e := setup(t, nil)
	id := job.NewID(epoch)
	for _, tc := range []struct{ method, path, allow string }{
		{"DELETE", "/v1/jobs", "GET, HEAD, POST"},
		{"GET", "/v1/jobs/batch", "POST"},
		{"PUT", "/v1/jobs/batch", "POST"},
		{"DELETE", "/v1/jobs/" + id, "GET, HEAD"},
		{"GET", "/v1/jobs/" + id + "/cancel", "POST"},
		{"POST", "/v1/jobs/" + id + "/result", "GET, HEAD"},
		{"POST", "/v1/jobs/" + id + "/logs", "GET, HEAD"},
		{"POST", "/healthz", "GET, HEAD"},
	} {
		r := e.call(tc.method, tc.path, nil)
		r.problem(t, http.StatusMethodNotAllowed)
		require.Equal(t, tc.allow, r.header.Get("Allow"), tc.method+" "+tc.path)
	}
	for _, path := range []string{"/v1/queues", "/v2/jobs", "/v1/jobs/" + id + "/output", "/"} {
		e.call("GET", path, nil).problem(t, http.StatusNotFound)
	}
}

func TestHealthAndReadiness(t *testing.T) {
	t.Parallel()
	e := setup(t, nil)
	require.Equal(t, http.StatusOK, e.call("GET", "/healthz", nil).status)
	e.call("GET", "/readyz", nil).problem(t, http.StatusServiceUnavailable)
	e.api.SetReady(true)
	r := e.call("GET", "/readyz", nil)
	require.Equal(t, http.StatusOK, r.status)
	e.api.SetReady(false) // shutting down: readiness drops first
	e.call("GET", "/readyz", nil).problem(t, http.StatusServiceUnavailable)
	require.Equal(t, http.StatusOK, e.call("GET", "/healthz", nil).status)
}

func TestClosedStoreIsUnavailable(t *testing.T) {
	t.Parallel()
	e := setup(t, nil)
	v := e.submit(`{"type":"echo"}`)
	require.NoError(t, e.store.Close())
	r := e.call("GET", "/v1/jobs/"+v.ID, nil)
	p := r.problem(t, http.StatusServiceUnavailable)
	require.Equal(t, "closed", p.Code)
	require.Equal(t, "1", r.header.Get("Retry-After"))
	e.call("POST", "/v1/jobs", `{"type":"echo"}`).problem(t, http.StatusServiceUnavailable)
}

// syncBuffer is a bytes.Buffer safe for a logger in another goroutine.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestPanicRecovery(t *testing.T) {
	t.Parallel()
	var logs syncBuffer
	boom := http.HandlerFunc(func(http.ResponseWriter, *http.Request) { panic("secret internals") })
	e := setup(t, &dispatcher.APIOptions{MetricsHandler: boom, Logger: slog.New(slog.NewJSONHandler(&logs, nil))})

	p := e.call("GET", "/metrics", nil).problem(t, http.StatusInternalServerError)
	require.Equal(t, dispatcher.ProblemInternal, p.Type)
	require.NotContains(t, p.Detail, "secret")
	require.Contains(t, logs.String(), "secret internals")
	require.Contains(t, logs.String(), "goroutine", "the stack is logged")
	// The server goes on.
	e.submit(`{"type":"echo"}`)

	// A panic inside a /v1 handler: a Service with no store.
	broken := dispatcher.NewService(nil, nil, nil, &dispatcher.Options{Logger: slog.New(slog.NewJSONHandler(&logs, nil))})
	srv := httptest.NewServer(dispatcher.NewAPI(broken, nil))
	t.Cleanup(srv.Close)
	resp, err := srv.Client().Get(srv.URL + "/v1/jobs/" + job.NewID(epoch))
	require.NoError(t, err)
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusInternalServerError, resp.StatusCode)
	require.Equal(t, "no-store", resp.Header.Get("Cache-Control"))
	require.Contains(t, string(body), dispatcher.ProblemInternal)
	require.NotContains(t, string(body), "nil pointer")
}

// gateReader is a request body that blocks on its first read until
// released, holding its request inside the handler.
type gateReader struct {
	entered chan struct{}
	release chan struct{}
	once    sync.Once
	r       io.Reader
}

func (g *gateReader) Read(p []byte) (int, error) {
	g.once.Do(func() {
		close(g.entered)
		<-g.release
	})
	return g.r.Read(p)
}

func TestInFlightLimit(t *testing.T) {
	t.Parallel()
	e := setup(t, &dispatcher.APIOptions{MaxInFlight: 1})
	gate := &gateReader{entered: make(chan struct{}), release: make(chan struct{}), r: strings.NewReader(`{"type":"echo"}`)}
	slow := httptest.NewRecorder()
	done := make(chan struct{})
	go func() {
		defer close(done)
		e.api.ServeHTTP(slow, httptest.NewRequestWithContext(t.Context(), "POST", "/v1/jobs", gate))
	}()
	<-gate.entered // the slow request holds the only slot

	r := e.call("GET", "/v1/jobs", nil)
	p := r.problem(t, http.StatusTooManyRequests)
	require.Equal(t, dispatcher.ProblemTooManyRequests, p.Type)
	require.Equal(t, "resource_exhausted", p.Code)
	require.Equal(t, "1", r.header.Get("Retry-After"))
	// Health is not limited.
	require.Equal(t, http.StatusOK, e.call("GET", "/healthz", nil).status)

	close(gate.release)
	<-done
	require.Equal(t, http.StatusCreated, slow.Code, slow.Body.String())
	require.Equal(t, http.StatusOK, e.call("GET", "/v1/jobs", nil).status, "the slot is free again")
}

func TestHTTPStatus(t *testing.T) {
	t.Parallel()
	for code, status := range map[errcode.Code]int{
		errcode.InvalidArgument:    400,
		errcode.NotFound:           404,
		errcode.AlreadyExists:      409,
		errcode.FailedPrecondition: 409,
		errcode.ResourceExhausted:  429,
		errcode.Unavailable:        503,
		errcode.Closed:             503,
		errcode.Canceled:           503,
		errcode.Internal:           500,
		errcode.Unknown:            500,
	} {
		require.Equal(t, status, dispatcher.HTTPStatus(code), code.String())
		back, ok := dispatcher.ParseCodeName(dispatcher.CodeName(code))
		require.True(t, ok)
		require.Equal(t, code, back)
	}
}

func TestCheckExposure(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		addr   string
		tokens []string
		ok     bool
	}{
		{"127.0.0.1:8080", nil, true},
		{"[::1]:8080", nil, true},
		{"localhost:8080", nil, true},
		{"0.0.0.0:8080", nil, false},
		{":8080", nil, false},
		{"10.1.2.3:8080", []string{""}, false},
		{"10.1.2.3:8080", []string{testToken}, true},
		{":8080", []string{testToken}, true},
	} {
		err := dispatcher.CheckExposure(tc.addr, tc.tokens)
		require.Equal(t, tc.ok, err == nil, "%s %q: %v", tc.addr, tc.tokens, err)
	}
}

func TestNewServerTimeouts(t *testing.T) {
	t.Parallel()
	s := dispatcher.NewServer("127.0.0.1:0", http.NotFoundHandler())
	require.Equal(t, 5*time.Second, s.ReadHeaderTimeout)
	require.Equal(t, 60*time.Second, s.ReadTimeout)
	require.Equal(t, 5*time.Minute, s.WriteTimeout)
	require.Equal(t, 2*time.Minute, s.IdleTimeout)
	require.Equal(t, 64<<10, s.MaxHeaderBytes)
}
