package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/jobfleet/jobfleet/pkg/client"
	"github.com/jobfleet/jobfleet/pkg/dispatcher"
	"github.com/jobfleet/jobfleet/pkg/errcode"
	"github.com/jobfleet/jobfleet/pkg/fleet"
	"github.com/jobfleet/jobfleet/pkg/job"
)

func submit(t *testing.T, s *System, sub job.Submission) *client.Job {
	t.Helper()
	j, err := s.Client.Submit(context.Background(), sub)
	require.NoError(t, err)
	return j
}

// The first thing a user does: submit an echo job to a fleet of zero
// workers and read the result seconds later.
func TestEchoFromZeroWorkers(t *testing.T) {
	t.Parallel()
	profiles(t, testEchoFromZeroWorkers)
}

func testEchoFromZeroWorkers(t *testing.T, opts options) {
	s := start(t, opts)
	require.Empty(t, s.workerPIDs(), "the fleet starts at zero")
	j := submit(t, s, job.Submission{Type: "echo", Payload: json.RawMessage(`{"hi":1}`)})
	require.Equal(t, job.Queued, j.Status)
	done := s.wait(j.ID, 30*time.Second)
	require.Equal(t, job.Succeeded, done.Status, "%+v", done)
	require.JSONEq(t, `{"hi":1}`, string(done.Result))
	res, err := s.Client.Result(context.Background(), j.ID)
	require.NoError(t, err)
	require.JSONEq(t, `{"hi":1}`, string(res))
	require.NotEmpty(t, s.Disp.find(t, "provisioned workers", time.Second))
}

func TestHandlers(t *testing.T) {
	t.Parallel()
	s := start(t, nil)
	ctx := context.Background()
	sleep := submit(t, s, job.Submission{Type: "sleep", Payload: json.RawMessage(`{"seconds":1.5}`)})
	permanent := submit(t, s, job.Submission{Type: "fail", Payload: json.RawMessage(`{"message":"nope","permanent":true}`)})
	retried := submit(t, s, job.Submission{Type: "fail", Payload: json.RawMessage(`{"message":"again"}`), MaxAttempts: 2})
	execOK := submit(t, s, job.Submission{Type: "exec", Payload: json.RawMessage(`{"argv":["sh","-c","echo hello from $JOBFLEET_JOB_ID"]}`)})
	execDenied := submit(t, s, job.Submission{Type: "exec", Payload: json.RawMessage(`{"argv":["rm","-rf","/tmp/x"]}`)})

	// sleep reports progress while it runs.
	s.waitFor(sleep.ID, 20*time.Second, func(j *client.Job) bool { return len(j.Progress) > 0 })
	require.JSONEq(t, `{"slept":1.5}`, string(s.wait(sleep.ID, 20*time.Second).Result))

	p := s.wait(permanent.ID, 20*time.Second)
	require.Equal(t, job.Failed, p.Status)
	require.Equal(t, "nope", p.Error)
	require.Equal(t, 1, p.Attempt)

	r := s.wait(retried.ID, 20*time.Second)
	require.Equal(t, job.Failed, r.Status)
	require.Equal(t, 2, r.Attempt)
	require.Contains(t, r.Error, "attempts exhausted (2 of 2 failed)")

	e := s.wait(execOK.ID, 20*time.Second)
	require.Equal(t, job.Succeeded, e.Status)
	logs, err := s.Client.Logs(ctx, execOK.ID, 0)
	require.NoError(t, err)
	b, _ := io.ReadAll(logs)
	logs.Close()
	require.Equal(t, "hello from "+execOK.ID+"\n", string(b))

	d := s.wait(execDenied.ID, 20*time.Second)
	require.Equal(t, job.Failed, d.Status)
	require.Contains(t, d.Error, `command "rm" is not on this worker's allow-list`)
}

func TestDedupAndCancel(t *testing.T) {
	t.Parallel()
	profiles(t, testDedupAndCancel)
}

func testDedupAndCancel(t *testing.T, opts options) {
	opts["JOBFLEET_MAX_WORKERS"], opts["JOBFLEET_CONCURRENCY"] = "1", "1"
	s := start(t, opts)
	ctx := context.Background()
	a := submit(t, s, job.Submission{Type: "sleep", Key: "nightly-report", Payload: json.RawMessage(`{"seconds":30}`)})
	b := submit(t, s, job.Submission{Type: "sleep", Key: "nightly-report", Payload: json.RawMessage(`{"seconds":30}`)})
	require.Equal(t, a.ID, b.ID)
	require.True(t, b.Deduplicated)
	_, err := s.Client.Submit(ctx, job.Submission{Type: "sleep", Key: "nightly-report", Payload: json.RawMessage(`{"seconds":1}`)})
	require.ErrorIs(t, err, errcode.AlreadyExists)
	require.ErrorIs(t, err, dispatcher.ErrKeyConflict)

	// A queued job behind it is cancelled at once.
	queued := submit(t, s, job.Submission{Type: "echo"})
	s.waitFor(a.ID, 20*time.Second, func(j *client.Job) bool { return j.Status == job.Running })
	c, err := s.Client.Cancel(ctx, queued.ID)
	if err == nil {
		require.Equal(t, job.Cancelled, c.Status)
	}
	// The running one is asked to stop and sees it at its next heartbeat.
	c, err = s.Client.Cancel(ctx, a.ID)
	require.NoError(t, err)
	require.True(t, c.CancelRequested)
	done := s.wait(a.ID, 20*time.Second)
	require.Equal(t, job.Cancelled, done.Status)
	// The key is free again.
	again := submit(t, s, job.Submission{Type: "echo", Key: "nightly-report"})
	require.NotEqual(t, a.ID, again.ID)
	require.Equal(t, job.Succeeded, s.wait(again.ID, 20*time.Second).Status)
}

// Killing the worker mid-job: the dispatcher's local fleet sees the exit,
// the reaper reclaims the job from the STOPPED event, and another worker
// runs it. The measured time from kill to the job running again is what the
// README reports.
func TestKilledWorkerJobRunsAgain(t *testing.T) {
	t.Parallel()
	profiles(t, testKilledWorkerJobRunsAgain)
}

func testKilledWorkerJobRunsAgain(t *testing.T, opts options) {
	opts["JOBFLEET_LEASE"], opts["JOBFLEET_HEARTBEAT"], opts["JOBFLEET_VISIBILITY"] = "30s", "10s", "40s"
	s := start(t, opts)
	j := submit(t, s, job.Submission{Type: "sleep", Payload: json.RawMessage(`{"seconds":3}`)})
	running := s.waitFor(j.ID, 20*time.Second, func(j *client.Job) bool { return j.Status == job.Running })
	pid := ownerPID(t, running.Owner)
	killed := time.Now()
	require.NoError(t, syscall.Kill(pid, syscall.SIGKILL))
	again := s.waitFor(j.ID, 20*time.Second, func(j *client.Job) bool { return j.Attempt == 2 && j.Status == job.Running })
	rerun := again.StartedAt.Sub(killed)
	t.Logf("kill -9 → running again: %s (via the fleet event; the lease was 30s)", rerun)
	require.Less(t, rerun, 10*time.Second, "recovered from the fleet event, not the 30s lease")
	done := s.wait(j.ID, 30*time.Second)
	require.Equal(t, job.Succeeded, done.Status)
	require.Equal(t, 1, done.Failures, "a crash spends an attempt")
	require.Equal(t, job.OutcomeTaskStopped, done.History[0].Outcome)

	// GET /v1/fleet lists the killed worker among the recent stops.
	var view dispatcher.FleetView
	resp, err := http.Get(s.URL + "/v1/fleet")
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&view))
	require.True(t, slices.ContainsFunc(view.RecentStops, func(w dispatcher.StoppedWorker) bool {
		return w.ID == running.Owner && w.Class == fleet.StopCrashed
	}), "%+v", view.RecentStops)
	require.NotNil(t, view.Scaler)
}

// With no fleet event (the reaper restarted after the worker died, say),
// the lease runs out and the job runs again.
func TestLeaseExpiryRecovers(t *testing.T) {
	t.Parallel()
	// One job per worker, so the re-queued job's backlog asks for a second
	// worker while the frozen one still counts as active.
	s := start(t, options{"JOBFLEET_CONCURRENCY": "1"})
	j := submit(t, s, job.Submission{Type: "sleep", Payload: json.RawMessage(`{"seconds":2}`)})
	running := s.waitFor(j.ID, 20*time.Second, func(j *client.Job) bool { return j.Status == job.Running })
	// Freeze the worker: it stops heartbeating but its process lives, so no
	// fleet event comes.
	pid := ownerPID(t, running.Owner)
	require.NoError(t, syscall.Kill(pid, syscall.SIGSTOP))
	stopped := time.Now()
	again := s.waitFor(j.ID, 30*time.Second, func(j *client.Job) bool { return j.Attempt >= 2 })
	t.Logf("frozen worker → running again: %s (lease 2s, sweep 500ms)", again.StartedAt.Sub(stopped))
	done := s.wait(j.ID, 30*time.Second)
	require.Equal(t, job.Succeeded, done.Status)
	_ = syscall.Kill(pid, syscall.SIGCONT)
	_ = syscall.Kill(pid, syscall.SIGKILL)
}

func ownerPID(t *testing.T, owner string) int {
	t.Helper()
	i := strings.LastIndexByte(owner, '/')
	require.Positive(t, i, "owner %q is not host/pid", owner)
	pid, err := strconv.Atoi(owner[i+1:])
	require.NoError(t, err)
	return pid
}

// Restarting the dispatcher keeps every accepted job.
func TestDispatcherRestart(t *testing.T) {
	t.Parallel()
	s := start(t, nil)
	var ids []string
	for i := range 20 {
		ids = append(ids, submit(t, s, job.Submission{Type: "echo", Payload: json.RawMessage(strconv.Itoa(i))}).ID)
	}
	s.Disp.stop(15 * time.Second)
	s.StartDispatcher()
	for _, id := range ids {
		require.Equal(t, job.Succeeded, s.wait(id, 60*time.Second).Status)
	}
}

// Bad input is answered with a clear problem and never breaks the service.
func TestBadInputAnswered(t *testing.T) {
	t.Parallel()
	s := start(t, options{"JOBFLEET_MAX_PAYLOAD": "1024"})
	post := func(body []byte, ctype string) (int, map[string]any) {
		req, err := http.NewRequest(http.MethodPost, s.URL+"/v1/jobs", bytes.NewReader(body))
		require.NoError(t, err)
		if ctype != "" {
			req.Header.Set("Content-Type", ctype)
		}
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		var p map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&p)
		return resp.StatusCode, p
	}
	cases := []struct {
		name   string
		body   []byte
		ctype  string
		status int
		detail string
	}{
		{"unknown type", []byte(`{"type":"mystery"}`), "", 400, "no handler is registered"},
		{"not json", []byte(`{"type":`), "", 400, ""},
		{"wrong type", []byte(`{"type":"sleep","payload":{"seconds":"x"}}`), "", 400, ""},
		{"invalid utf-8", []byte("{\"type\":\"echo\",\"payload\":\"\xff\"}"), "", 400, ""},
		{"oversize", []byte(`{"type":"echo","payload":"` + strings.Repeat("x", 200<<10) + `"}`), "", 413, ""},
		{"huge key", []byte(`{"type":"echo","key":"` + strings.Repeat("k", 5000) + `"}`), "", 400, "key"},
		{"unknown field", []byte(`{"type":"echo","priority":1}`), "", 400, "priority"},
		{"media type", []byte(`{"type":"echo"}`), "text/plain", 415, ""},
	}
	for _, tc := range cases {
		status, p := post(tc.body, tc.ctype)
		require.Equal(t, tc.status, status, "%s: %v", tc.name, p)
		require.NotEmpty(t, p["title"], tc.name)
		if tc.detail != "" {
			b, _ := json.Marshal(p)
			require.Contains(t, string(b), tc.detail, tc.name)
		}
	}
	// Path traversal in ids is just a missing job.
	_, err := s.Client.Get(context.Background(), "../../etc/passwd")
	require.True(t, errors.Is(err, errcode.NotFound) || errors.Is(err, errcode.InvalidArgument), "%v", err)
	// And the service still works.
	j := submit(t, s, job.Submission{Type: "echo"})
	require.Equal(t, job.Succeeded, s.wait(j.ID, 30*time.Second).Status)
}
