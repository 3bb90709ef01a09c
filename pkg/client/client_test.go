package client_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/jobfleet/jobfleet/pkg/blob"
	"github.com/jobfleet/jobfleet/pkg/blob/fileblob"
	"github.com/jobfleet/jobfleet/pkg/client"
	"github.com/jobfleet/jobfleet/pkg/clock"
	"github.com/jobfleet/jobfleet/pkg/dispatcher"
	"github.com/jobfleet/jobfleet/pkg/errcode"
	"github.com/jobfleet/jobfleet/pkg/handlers"
	"github.com/jobfleet/jobfleet/pkg/job"
	"github.com/jobfleet/jobfleet/pkg/jobstore"
	"github.com/jobfleet/jobfleet/pkg/jobstore/sqlitejobstore"
	"github.com/jobfleet/jobfleet/pkg/queue/sqlitequeue"
	"github.com/jobfleet/jobfleet/pkg/worker"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var epoch = time.Date(2031, 5, 6, 7, 8, 9, 0, time.UTC)

const token = "client-test-token-0123456789"

type env struct {
	t      *testing.T
	clk    *clock.Fake
	store  *jobstore.Store
	bucket *blob.Bucket
	srv    *httptest.Server
	c      *client.Client
	policy job.Policy
}

// setup serves a dispatcher API over fresh local adapters (requiring
// token) and returns a client of it.
func setup(t *testing.T, httpClient *http.Client) *env {
	t.Helper()
	ctx := t.Context()
	dir := t.TempDir()
	e := &env{t: t, clk: clock.NewFake(epoch), policy: job.DefaultPolicy}
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
	bucket, err := fileblob.Open(filepath.Join(dir, "blobs"), nil)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, bucket.Close()) })
	e.store, e.bucket = store, bucket

	reg := worker.NewRegistry()
	handlers.Register(reg, handlers.Options{})
	limits := job.DefaultLimits
	limits.KnownType = func(typ string) bool { _, ok := reg.Lookup(typ); return ok }
	svc := dispatcher.NewService(store, work, bucket, &dispatcher.Options{Limits: limits, Payloads: reg, Clock: e.clk})
	e.srv = httptest.NewServer(dispatcher.NewAPI(svc, &dispatcher.APIOptions{Tokens: []string{token}}))
	t.Cleanup(e.srv.Close)
	if httpClient == nil {
		httpClient = e.srv.Client()
	}
	e.c, err = client.New(e.srv.URL, &client.Options{Token: token, HTTPClient: httpClient})
	require.NoError(t, err)
	return e
}

// run starts the job and ends its attempt with end, as a worker would.
func (e *env) run(id string, end job.End) {
	e.t.Helper()
	ctx := e.t.Context()
	cur, err := e.store.Get(ctx, id)
	require.NoError(e.t, err)
	j, err := e.store.ApplyOne(ctx, e.policy.Start(job.Message{ID: id, Attempt: cur.Attempt}, "worker-1", e.clk.Now()))
	require.NoError(e.t, err)
	_, err = e.store.ApplyOne(ctx, e.policy.Finish(j, e.clk.Now(), end))
	require.NoError(e.t, err)
}

func problemOf(t *testing.T, err error) *client.Problem {
	t.Helper()
	var p *client.Problem
	require.ErrorAs(t, err, &p)
	return p
}

func TestSubmitGetCancel(t *testing.T) {
	t.Parallel()
	e := setup(t, nil)
	ctx := t.Context()
	sub := job.Submission{Type: "echo", Key: "invoice-7", Payload: json.RawMessage(`{"n":7}`), Timeout: job.Duration(time.Minute)}
	j, err := e.c.Submit(ctx, sub)
	require.NoError(t, err)
	require.Equal(t, job.Queued, j.Status)
	require.False(t, j.Deduplicated)
	require.Equal(t, job.Duration(time.Minute), j.Timeout)

	again, err := e.c.Submit(ctx, sub)
	require.NoError(t, err)
	require.True(t, again.Deduplicated)
	require.Equal(t, j.ID, again.ID)

	sub.Payload = json.RawMessage(`{"n":8}`)
	_, err = e.c.Submit(ctx, sub)
	require.ErrorIs(t, err, dispatcher.ErrKeyConflict)
	require.ErrorIs(t, err, errcode.AlreadyExists)
	p := problemOf(t, err)
	require.Equal(t, http.StatusConflict, p.Status)
	require.Equal(t, j.ID, p.JobID)

	got, err := e.c.Get(ctx, j.ID)
	require.NoError(t, err)
	require.Equal(t, j.ID, got.ID)
	require.JSONEq(t, `{"n":7}`, string(got.Payload))

	c, err := e.c.Cancel(ctx, j.ID)
	require.NoError(t, err)
	require.Equal(t, job.Cancelled, c.Status)
	_, err = e.c.Cancel(ctx, j.ID)
	require.ErrorIs(t, err, errcode.FailedPrecondition)
	require.NotErrorIs(t, err, dispatcher.ErrKeyConflict)
	require.Equal(t, job.Cancelled, problemOf(t, err).JobStatus)

	_, err = e.c.Get(ctx, job.NewID(epoch))
	require.ErrorIs(t, err, errcode.NotFound)
	require.Equal(t, errcode.NotFound, errcode.Of(err))
	require.False(t, errcode.Retryable(err))
}

func TestSubmitInvalid(t *testing.T) {
	t.Parallel()
	e := setup(t, nil)
	_, err := e.c.Submit(t.Context(), job.Submission{Type: "sleep", Payload: json.RawMessage(`{"seconds":"x"}`), Key: strings.Repeat("k", 300)})
	require.ErrorIs(t, err, errcode.InvalidArgument)
	p := problemOf(t, err)
	require.Equal(t, http.StatusBadRequest, p.Status)
	var fields []string
	for _, pe := range p.Errors {
		fields = append(fields, pe.Field)
	}
	require.Equal(t, []string{"key"}, fields, "the Service checks a payload against its type once the rest is valid")
	require.Contains(t, err.Error(), "key: is 300 bytes")
	_, err = e.c.Submit(t.Context(), job.Submission{Type: "sleep", Payload: json.RawMessage(`{"seconds":"x"}`)})
	require.ErrorIs(t, err, errcode.InvalidArgument)
	require.Equal(t, "payload", problemOf(t, err).Errors[0].Field)

	// payload_ref is not accepted over HTTP.
	_, err = e.c.Submit(t.Context(), job.Submission{Type: "echo", PayloadRef: "payloads/x.json"})
	require.ErrorIs(t, err, errcode.InvalidArgument)
	require.Equal(t, "payload_ref", problemOf(t, err).Errors[0].Field)
}

func TestSubmitBatchAndList(t *testing.T) {
	t.Parallel()
	e := setup(t, nil)
	ctx := t.Context()
	subs := []job.Submission{
		{Type: "echo", Payload: json.RawMessage(`1`)},
		{Type: "nope"},
		{Type: "fail", Key: "k"},
		{Type: "fail", Key: "k"},
		{Type: "echo", Payload: json.RawMessage(`2`)},
	}
	res, err := e.c.SubmitBatch(ctx, subs)
	require.NoError(t, err)
	require.Len(t, res, len(subs))
	var statuses []int
	for _, r := range res {
		statuses = append(statuses, r.Status)
	}
	require.Equal(t, []int{201, 400, 201, 200, 201}, statuses)
	require.ErrorIs(t, res[1].Err, errcode.InvalidArgument)
	require.True(t, res[3].Deduplicated)
	require.Equal(t, res[2].Job.ID, res[3].Job.ID)

	var ids []string
	opts := client.ListOptions{Limit: 2}
	for {
		page, err := e.c.List(ctx, opts)
		require.NoError(t, err)
		for _, j := range page.Jobs {
			ids = append(ids, j.ID)
		}
		if page.NextCursor == "" {
			break
		}
		opts.Cursor = page.NextCursor
	}
	require.Equal(t, []string{res[4].Job.ID, res[2].Job.ID, res[0].Job.ID}, ids)

	page, err := e.c.List(ctx, client.ListOptions{Type: "fail", Status: job.Queued})
	require.NoError(t, err)
	require.Len(t, page.Jobs, 1)
	_, err = e.c.List(ctx, client.ListOptions{Limit: 5000})
	require.ErrorIs(t, err, errcode.InvalidArgument)
}

// pollSignal is a transport that reports each request it sends.
type pollSignal struct {
	sent chan string
	rt   http.RoundTripper
}

func (p *pollSignal) RoundTrip(r *http.Request) (*http.Response, error) {
	select {
	case p.sent <- r.URL.Path:
	default:
	}
	return p.rt.RoundTrip(r)
}

func TestWaitResultLogs(t *testing.T) {
	t.Parallel()
	sig := &pollSignal{sent: make(chan string, 1)}
	hc := &http.Client{Transport: sig}
	e := setup(t, hc)
	sig.rt = e.srv.Client().Transport
	ctx := t.Context()
	j, err := e.c.Submit(ctx, job.Submission{Type: "echo", Payload: json.RawMessage(`{"ok":true}`)})
	require.NoError(t, err)
	<-sig.sent // the submit

	_, err = e.c.Result(ctx, j.ID)
	require.ErrorIs(t, err, errcode.FailedPrecondition)
	require.Equal(t, job.Queued, problemOf(t, err).JobStatus)
	<-sig.sent

	type waited struct {
		j   *client.Job
		err error
	}
	done := make(chan waited, 1)
	go func() {
		j, err := e.c.Wait(ctx, j.ID, 5*time.Millisecond)
		done <- waited{j, err}
	}()
	<-sig.sent // Wait polled and saw QUEUED
	_, err = e.bucket.PutBytes(ctx, worker.LogKey(j.ID, 1), []byte("hello\nworld\n"), "text/plain")
	require.NoError(t, err)
	e.run(j.ID, job.End{Outcome: job.OutcomeSucceeded, Result: json.RawMessage(`{"ok":true}`)})
	w := <-done
	require.NoError(t, w.err)
	require.Equal(t, job.Succeeded, w.j.Status)
	require.Equal(t, "/v1/jobs/"+j.ID+"/result", w.j.ResultURL)

	res, err := e.c.Result(ctx, j.ID)
	require.NoError(t, err)
	require.JSONEq(t, `{"ok":true}`, string(res))

	rc, err := e.c.Logs(ctx, j.ID, 0)
	require.NoError(t, err)
	b, err := io.ReadAll(rc)
	require.NoError(t, err)
	require.NoError(t, rc.Close())
	require.Equal(t, "hello\nworld\n", string(b))
	_, err = e.c.Logs(ctx, j.ID, 2)
	require.ErrorIs(t, err, errcode.NotFound)
}

func TestWaitEndsWithContext(t *testing.T) {
	t.Parallel()
	sig := &pollSignal{sent: make(chan string, 1)}
	e := setup(t, &http.Client{Transport: sig})
	sig.rt = e.srv.Client().Transport
	j, err := e.c.Submit(t.Context(), job.Submission{Type: "echo"})
	require.NoError(t, err)
	<-sig.sent

	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() {
		_, err := e.c.Wait(ctx, j.ID, time.Hour)
		done <- err
	}()
	<-sig.sent // the first poll; the next is an hour away
	cancel()
	err = <-done
	require.ErrorIs(t, err, context.Canceled)
	require.Equal(t, errcode.Canceled, errcode.Of(err))

	// A job that does not exist ends the wait at once.
	_, err = e.c.Wait(t.Context(), job.NewID(epoch), time.Hour)
	require.ErrorIs(t, err, errcode.NotFound)
}

func TestAuthAndForeignErrors(t *testing.T) {
	t.Parallel()
	e := setup(t, nil)
	anon, err := client.New(e.srv.URL+"/", &client.Options{HTTPClient: e.srv.Client()})
	require.NoError(t, err)
	_, err = anon.List(t.Context(), client.ListOptions{})
	p := problemOf(t, err)
	require.Equal(t, http.StatusUnauthorized, p.Status)
	require.Equal(t, dispatcher.ProblemUnauthorized, p.Type)

	// A proxy's answer that is not a problem document.
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		w.Header().Set("Retry-After", "7")
		w.WriteHeader(http.StatusBadGateway)
		_, _ = io.WriteString(w, "<html>upstream down</html>")
	}))
	t.Cleanup(proxy.Close)
	c, err := client.New(proxy.URL, &client.Options{HTTPClient: proxy.Client()})
	require.NoError(t, err)
	_, err = c.Get(t.Context(), job.NewID(epoch))
	p = problemOf(t, err)
	require.Equal(t, http.StatusBadGateway, p.Status)
	require.Equal(t, 7*time.Second, p.RetryAfter)
	require.Contains(t, p.Detail, "upstream down")
	require.ErrorIs(t, err, errcode.Unavailable)
	require.True(t, errcode.Retryable(err))

	for _, bad := range []string{"", "localhost:8080", "ftp://host", "http://"} {
		_, err := client.New(bad, nil)
		require.ErrorIs(t, err, errcode.InvalidArgument, bad)
	}
	// Nothing listening: a transport error, retryable.
	closed := httptest.NewServer(http.NotFoundHandler())
	closed.Close()
	c, err = client.New(closed.URL, nil)
	require.NoError(t, err)
	_, err = c.Get(t.Context(), job.NewID(epoch))
	require.Error(t, err)
	require.False(t, errors.As(err, new(*client.Problem)))
	require.True(t, errcode.Retryable(err))
}
