// Package client is the Go client of the dispatcher's HTTP API (see
// dispatcher.API for the routes and their contract).
//
//	c, err := client.New("http://127.0.0.1:8080", &client.Options{Token: tok})
//	j, err := c.Submit(ctx, job.Submission{Type: "echo", Payload: json.RawMessage(`{"hi":1}`)})
//	j, err = c.Wait(ctx, j.ID, time.Second)
//	res, err := c.Result(ctx, j.ID)
//
// Every error the API answers is a *Problem: its fields are the problem
// details, and errors.Is(err, errcode.NotFound) (or any errcode code) tells
// what happened. Errors before an answer (connection refused, ctx ended)
// are returned as the HTTP client gave them, wrapped.
//
// The client does not retry: a caller that wants to retries errors for
// which errcode.Retryable is true (429, 503), after Problem.RetryAfter.
// A Client is safe for concurrent use.
package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/jobfleet/jobfleet/pkg/dispatcher"
	"github.com/jobfleet/jobfleet/pkg/errcode"
	"github.com/jobfleet/jobfleet/pkg/job"
)

// Job is a job as the API shows it.
type Job = dispatcher.JobView

// Options configure a Client. Nil options mean defaults.
type Options struct {
	// Token is sent as Authorization: Bearer <Token> when non-empty.
	Token string
	// HTTPClient makes the requests (default: a client with a 5 minute
	// timeout, enough for a large log).
	HTTPClient *http.Client
}

// Client calls the dispatcher's API.
type Client struct {
	base  *url.URL
	token string
	hc    *http.Client
}

// New returns a client of the API at baseURL (scheme and host, and a path
// prefix if the API is mounted below one).
func New(baseURL string, opts *Options) (*Client, error) {
	u, err := url.Parse(baseURL)
	if err != nil {
		return nil, errcode.Wrap(errcode.InvalidArgument, err, "client: base URL")
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, errcode.New(errcode.InvalidArgument, "client: base URL %q: want http(s)://host[:port]", baseURL)
	}
	u.Path = strings.TrimSuffix(u.Path, "/")
	c := &Client{base: u, hc: &http.Client{Timeout: 5 * time.Minute}}
	if opts != nil {
		c.token = opts.Token
		if opts.HTTPClient != nil {
			c.hc = opts.HTTPClient
		}
	}
	return c, nil
}

// Problem is an error the API answered: RFC 9457 problem details plus the
// HTTP status. errors.Is matches the errcode code of the problem (from its
// "code" member, else from the status).
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
	// RetryAfter is the server's Retry-After, when it sent one.
	RetryAfter time.Duration `json:"-"`
}

func (p *Problem) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d %s", p.Status, cmpOr(p.Title, http.StatusText(p.Status)))
	if p.Detail != "" {
		b.WriteString(": " + p.Detail)
	}
	for _, e := range p.Errors {
		fmt.Fprintf(&b, "; %s: %s", e.Field, e.Detail)
	}
	return b.String()
}

// ErrCode returns the problem's errcode code.
func (p *Problem) ErrCode() errcode.Code {
	if c, ok := dispatcher.ParseCodeName(p.Code); ok && c != errcode.Unknown {
		return c
	}
	switch p.Status {
	case http.StatusBadRequest, http.StatusRequestEntityTooLarge, http.StatusUnsupportedMediaType,
		http.StatusRequestedRangeNotSatisfiable, http.StatusMethodNotAllowed, http.StatusUnprocessableEntity:
		return errcode.InvalidArgument
	case http.StatusNotFound:
		return errcode.NotFound
	case http.StatusConflict:
		return errcode.FailedPrecondition
	case http.StatusTooManyRequests:
		return errcode.ResourceExhausted
	case http.StatusServiceUnavailable, http.StatusBadGateway, http.StatusGatewayTimeout:
		return errcode.Unavailable
	case http.StatusInternalServerError:
		return errcode.Internal
	}
	return errcode.Unknown
}

// Is reports whether target is the problem's errcode code, so that
// errors.Is(err, errcode.NotFound) works. A key conflict also matches
// dispatcher.ErrKeyConflict.
func (p *Problem) Is(target error) bool {
	if target == dispatcher.ErrKeyConflict {
		return p.Type == dispatcher.ProblemKeyConflict
	}
	c, ok := target.(errcode.Code)
	return ok && c == p.ErrCode()
}

// As lets errors.As (and so errcode.Of and errcode.Retryable) read the
// problem's errcode code.
func (p *Problem) As(target any) bool {
	if c, ok := target.(*errcode.Code); ok {
		*c = p.ErrCode()
		return true
	}
	return false
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// do sends a request and returns the response when its status is one of
// ok; any other answer becomes a *Problem (and the body is closed).
func (c *Client) do(ctx context.Context, method, path string, query url.Values, body any, hdr http.Header, ok ...int) (*http.Response, error) {
	u := *c.base
	u.Path += path
	u.RawQuery = query.Encode()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, errcode.Wrap(errcode.InvalidArgument, err, "%s %s: encode the request", method, path)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), rd)
	if err != nil {
		return nil, errcode.Wrap(errcode.InvalidArgument, err, "%s %s", method, path)
	}
	for k, vs := range hdr {
		req.Header[k] = vs
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("%s %s: %w", method, path, ctx.Err())
		}
		return nil, errcode.Wrap(errcode.Unavailable, err, "%s %s", method, path)
	}
	for _, s := range ok {
		if resp.StatusCode == s {
			return resp, nil
		}
	}
	defer resp.Body.Close()
	return nil, readProblem(resp)
}

// readProblem makes a *Problem of an error response, whatever its body.
func readProblem(resp *http.Response) *Problem {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	p := &Problem{}
	if err := json.Unmarshal(b, p); err != nil || p.Status == 0 {
		// Not a problem document (a proxy's page, say): keep the start.
		detail := strings.TrimSpace(string(b))
		if len(detail) > 512 {
			detail = detail[:512] + "..."
		}
		p = &Problem{Title: http.StatusText(resp.StatusCode), Detail: detail}
	}
	p.Status = resp.StatusCode
	if s := resp.Header.Get("Retry-After"); s != "" {
		if n, err := strconv.Atoi(s); err == nil && n >= 0 {
			p.RetryAfter = time.Duration(n) * time.Second
		}
	}
	return p
}

// decode reads a JSON response into v and closes it.
func decode(resp *http.Response, v any) error {
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		return errcode.Wrap(errcode.Internal, err, "decode the answer to %s %s", resp.Request.Method, resp.Request.URL.Path)
	}
	return nil
}

// Submit submits a job. The answer is the new job, or the active job that
// already held the key with the same payload (Deduplicated set). A key
// held with a different payload is a *Problem matching
// dispatcher.ErrKeyConflict and errcode.AlreadyExists, whose JobID is the
// holder; an invalid submission one matching errcode.InvalidArgument, with
// Errors listing the fields.
func (c *Client) Submit(ctx context.Context, s job.Submission) (*Job, error) {
	resp, err := c.do(ctx, http.MethodPost, "/v1/jobs", nil, s, nil, http.StatusCreated, http.StatusOK)
	if err != nil {
		return nil, err
	}
	var j Job
	if err := decode(resp, &j); err != nil {
		return nil, err
	}
	return &j, nil
}

// BatchResult is the outcome of one submission of a batch: the job (with
// Deduplicated), or the error (a *Problem).
type BatchResult struct {
	Status       int // what a single Submit would have been answered: 201, 200, 400, 409, ...
	Job          *Job
	Deduplicated bool
	Err          error
}

// SubmitBatch submits 1 to 1000 jobs in one request; results are in order.
// The error is for the request as a whole.
func (c *Client) SubmitBatch(ctx context.Context, subs []job.Submission) ([]BatchResult, error) {
	resp, err := c.do(ctx, http.MethodPost, "/v1/jobs/batch", nil, dispatcher.BatchRequest{Jobs: subs}, nil, http.StatusOK)
	if err != nil {
		return nil, err
	}
	var br struct {
		Results []struct {
			Status       int      `json:"status"`
			Job          *Job     `json:"job"`
			Deduplicated bool     `json:"deduplicated"`
			Problem      *Problem `json:"problem"`
		} `json:"results"`
	}
	if err := decode(resp, &br); err != nil {
		return nil, err
	}
	if len(br.Results) != len(subs) {
		return nil, errcode.New(errcode.Internal, "submit batch: %d results for %d submissions", len(br.Results), len(subs))
	}
	out := make([]BatchResult, len(br.Results))
	for i, r := range br.Results {
		out[i] = BatchResult{Status: r.Status, Job: r.Job, Deduplicated: r.Deduplicated}
		if r.Problem != nil {
			r.Problem.Status = r.Status
			out[i].Err = r.Problem
		}
	}
	return out, nil
}

func jobPath(id string) string { return "/v1/jobs/" + url.PathEscape(id) }

// Get returns the job with id.
func (c *Client) Get(ctx context.Context, id string) (*Job, error) {
	resp, err := c.do(ctx, http.MethodGet, jobPath(id), nil, nil, nil, http.StatusOK)
	if err != nil {
		return nil, err
	}
	var j Job
	if err := decode(resp, &j); err != nil {
		return nil, err
	}
	return &j, nil
}

// ListOptions filter List. Zero fields do not filter.
type ListOptions struct {
	Status job.Status
	Type   string
	Limit  int    // 1..1000; 0: the server's default (100)
	Cursor string // from Page.NextCursor
}

// Page is one page of List.
type Page struct {
	Jobs       []*Job
	NextCursor string // "" after the last page
}

// List returns one page of jobs, newest first.
func (c *Client) List(ctx context.Context, o ListOptions) (*Page, error) {
	q := url.Values{}
	if o.Status != job.None {
		q.Set("status", string(o.Status))
	}
	if o.Type != "" {
		q.Set("type", o.Type)
	}
	if o.Limit != 0 {
		q.Set("limit", strconv.Itoa(o.Limit))
	}
	if o.Cursor != "" {
		q.Set("cursor", o.Cursor)
	}
	resp, err := c.do(ctx, http.MethodGet, "/v1/jobs", q, nil, nil, http.StatusOK)
	if err != nil {
		return nil, err
	}
	var lr dispatcher.ListResponse
	if err := decode(resp, &lr); err != nil {
		return nil, err
	}
	return &Page{Jobs: lr.Jobs, NextCursor: lr.NextCursor}, nil
}

// Cancel cancels a queued or scheduled job, or asks a running one to stop
// (the answer then has CancelRequested set). A job already finished is a
// *Problem matching errcode.FailedPrecondition, with JobStatus.
func (c *Client) Cancel(ctx context.Context, id string) (*Job, error) {
	resp, err := c.do(ctx, http.MethodPost, jobPath(id)+"/cancel", nil, nil, nil, http.StatusOK)
	if err != nil {
		return nil, err
	}
	var j Job
	if err := decode(resp, &j); err != nil {
		return nil, err
	}
	return &j, nil
}

// Result returns a succeeded job's result. Any other job's is a *Problem
// matching errcode.FailedPrecondition, with JobStatus.
func (c *Client) Result(ctx context.Context, id string) (json.RawMessage, error) {
	resp, err := c.do(ctx, http.MethodGet, jobPath(id)+"/result", nil, nil, nil, http.StatusOK)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, errcode.Wrap(errcode.Unavailable, err, "read the result of job %s", id)
	}
	if !json.Valid(b) {
		return nil, errcode.New(errcode.Internal, "the result of job %s is not JSON", id)
	}
	return b, nil
}

// Logs returns a reader of the log of an attempt of the job (0: the latest
// attempt). The caller closes it. A job with no log (yet) is a *Problem
// matching errcode.NotFound.
func (c *Client) Logs(ctx context.Context, id string, attempt int) (io.ReadCloser, error) {
	var q url.Values
	if attempt != 0 {
		q = url.Values{"attempt": {strconv.Itoa(attempt)}}
	}
	resp, err := c.do(ctx, http.MethodGet, jobPath(id)+"/logs", q, nil, nil, http.StatusOK)
	if err != nil {
		return nil, err
	}
	return resp.Body, nil
}

// Wait polls the job every poll (default 1 s) until it reaches a terminal
// state, and returns it. It returns early, with ctx's error, when ctx ends;
// and with the error of a poll that fails (a not-found job, say), except
// 429 and 503 answers, after which it goes on polling.
func (c *Client) Wait(ctx context.Context, id string, poll time.Duration) (*Job, error) {
	if poll <= 0 {
		poll = time.Second
	}
	t := time.NewTicker(poll)
	defer t.Stop()
	for {
		j, err := c.Get(ctx, id)
		var p *Problem
		switch {
		case err == nil && j.Status.Terminal():
			return j, nil
		case err != nil && !(errors.As(err, &p) && errcode.Retryable(p)):
			return nil, fmt.Errorf("wait for job %s: %w", id, err)
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("wait for job %s: %w", id, ctx.Err())
		case <-t.C:
		}
	}
}
