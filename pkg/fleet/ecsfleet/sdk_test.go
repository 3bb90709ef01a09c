package ecsfleet_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/ratelimit"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/ecs"
	"github.com/stretchr/testify/require"

	"github.com/jobfleet/jobfleet/pkg/errcode"
	"github.com/jobfleet/jobfleet/pkg/fleet"
	"github.com/jobfleet/jobfleet/pkg/fleet/ecsfleet"
)

// ecsCall is one request a fake ECS endpoint received.
type ecsCall struct {
	op   string // RunTask, ListTasks, ...
	body map[string]any
}

// fakeEndpoint is an HTTP server speaking ECS's JSON protocol, to test the
// driver with the real SDK client: its serialization and its retries.
type fakeEndpoint struct {
	srv    *httptest.Server
	handle func(w http.ResponseWriter, r *http.Request, c ecsCall)

	mu    sync.Mutex
	calls []ecsCall
}

func newFakeEndpoint(t *testing.T, handle func(w http.ResponseWriter, r *http.Request, c ecsCall)) *fakeEndpoint {
	e := &fakeEndpoint{handle: handle}
	e.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		c := ecsCall{op: r.Header.Get("X-Amz-Target")}
		c.op = c.op[strings.LastIndexByte(c.op, '.')+1:]
		if err := json.Unmarshal(b, &c.body); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		e.mu.Lock()
		e.calls = append(e.calls, c)
		e.mu.Unlock()
		e.handle(w, r, c)
	}))
	t.Cleanup(e.srv.Close)
	return e
}

func (e *fakeEndpoint) recorded() []ecsCall {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]ecsCall(nil), e.calls...)
}

// client is an SDK client for the endpoint whose retries do not back off.
func (e *fakeEndpoint) client() *ecs.Client {
	return ecs.New(ecs.Options{
		Region:       "us-east-1",
		BaseEndpoint: aws.String(e.srv.URL),
		Credentials:  credentials.NewStaticCredentialsProvider("test", "test", ""),
		HTTPClient:   e.srv.Client(),
		Retryer: retry.NewStandard(func(o *retry.StandardOptions) {
			o.Backoff = retry.BackoffDelayerFunc(func(int, error) (time.Duration, error) { return 0, nil })
			o.RateLimiter = ratelimit.None
		}),
	})
}

func reply(w http.ResponseWriter, status int, body string) {
	w.Header().Set("Content-Type", "application/x-amz-json-1.1")
	w.WriteHeader(status)
	_, _ = io.WriteString(w, body)
}

func openFleet(t *testing.T, client ecsfleet.API) *fleet.Fleet {
	t.Helper()
	f, err := ecsfleet.Open(t.Context(), client, ecsfleet.Options{
		Cluster:        "jobs",
		TaskDefinition: "worker:3",
		Subnets:        []string{"subnet-a"},
	})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, f.Close()) })
	return f
}

// TestSDKRetryReusesClientToken: the SDK retries a throttled RunTask with
// the same client token, so ECS can tell the retry from a new request;
// the next Provision has a token of its own.
func TestSDKRetryReusesClientToken(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	attempts := 0
	e := newFakeEndpoint(t, func(w http.ResponseWriter, _ *http.Request, c ecsCall) {
		if c.op != "RunTask" {
			reply(w, http.StatusBadRequest, `{"__type":"InvalidParameterException","message":"unexpected `+c.op+`"}`)
			return
		}
		mu.Lock()
		attempts++
		first := attempts == 1
		mu.Unlock()
		if first {
			reply(w, http.StatusBadRequest, `{"__type":"ThrottlingException","message":"Rate exceeded"}`)
			return
		}
		n := int(c.body["count"].(float64))
		var tasks []string
		for i := range n {
			tasks = append(tasks, fmt.Sprintf(`{"taskArn":"arn:aws:ecs:us-east-1:123456789012:task/jobs/%d-%d","lastStatus":"PROVISIONING","desiredStatus":"RUNNING","createdAt":1772366400.25}`, attempts, i))
		}
		reply(w, http.StatusOK, `{"tasks":[`+strings.Join(tasks, ",")+`],"failures":[]}`)
	})
	f := openFleet(t, e.client())

	p, err := f.Provision(t.Context(), 2)
	require.NoError(t, err)
	require.Len(t, p.Workers, 2)
	require.Equal(t, time.Date(2026, 3, 1, 12, 0, 0, 250e6, time.UTC), p.Workers[0].CreatedAt)

	_, err = f.Provision(t.Context(), 1)
	require.NoError(t, err)

	calls := e.recorded()
	require.Len(t, calls, 3, "one throttled attempt, its retry, and the second Provision")
	first, retried, next := calls[0].body, calls[1].body, calls[2].body
	require.NotEmpty(t, first["clientToken"])
	require.Equal(t, first["clientToken"], retried["clientToken"], "the SDK's retry reuses the token")
	require.NotEqual(t, first["clientToken"], next["clientToken"], "another Provision has another token")

	// The request as ECS sees it; securityGroups is sent even when empty.
	delete(first, "clientToken")
	require.Equal(t, map[string]any{
		"cluster":        "jobs",
		"taskDefinition": "worker:3",
		"count":          float64(2),
		"launchType":     "FARGATE",
		"startedBy":      "jobfleet",
		"networkConfiguration": map[string]any{"awsvpcConfiguration": map[string]any{
			"subnets":        []any{"subnet-a"},
			"securityGroups": []any{},
			"assignPublicIp": "DISABLED",
		}},
	}, first)
}

// TestCallsBoundedByContext: an endpoint that never answers holds no call
// beyond its caller's context.
func TestCallsBoundedByContext(t *testing.T) {
	t.Parallel()
	done := make(chan struct{})
	e := newFakeEndpoint(t, func(w http.ResponseWriter, r *http.Request, _ ecsCall) {
		select {
		case <-r.Context().Done():
		case <-done:
		}
	})
	t.Cleanup(func() { close(done) }) // before the server closes
	f := openFleet(t, e.client())

	calls := map[string]func(context.Context) error{
		"provision": func(ctx context.Context) error { _, err := f.Provision(ctx, 1); return err },
		"list":      func(ctx context.Context) error { _, err := f.List(ctx); return err },
		"stop":      func(ctx context.Context) error { return f.Stop(ctx, "arn:aws:ecs:us-east-1:1:task/jobs/abc", "r") },
	}
	for name, call := range calls {
		ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
		start := time.Now()
		err := call(ctx)
		cancel()
		require.Equal(t, errcode.Canceled, errcode.Of(err), "%s: %v", name, err)
		require.Less(t, time.Since(start), 10*time.Second, "%s outlived its context", name)
	}
}
