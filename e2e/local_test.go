package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/jobfleet/jobfleet/e2e/internal/freeze"
	"github.com/jobfleet/jobfleet/pkg/awstest"
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
	profiles(t, testHandlers)
}

func testHandlers(t *testing.T, opts options) {
	s := start(t, opts)
	ctx := context.Background()
	sleep := submit(t, s, job.Submission{Type: "sleep", Payload: json.RawMessage(`{"seconds":3}`)})
	permanent := submit(t, s, job.Submission{Type: "fail", Payload: json.RawMessage(`{"message":"nope","permanent":true}`)})
	retried := submit(t, s, job.Submission{Type: "fail", Payload: json.RawMessage(`{"message":"again"}`), MaxAttempts: 2})
	execOK := submit(t, s, job.Submission{Type: "exec", Payload: json.RawMessage(`{"argv":["sh","-c","echo hello from $JOBFLEET_JOB_ID"]}`)})
	execDenied := submit(t, s, job.Submission{Type: "exec", Payload: json.RawMessage(`{"argv":["rm","-rf","/tmp/x"]}`)})
	// Fails its first attempt, succeeds on the retry.
	flaky := submit(t, s, job.Submission{Type: "exec", MaxAttempts: 3,
		Payload: json.RawMessage(`{"argv":["sh","-c","echo attempt $JOBFLEET_ATTEMPT; test $JOBFLEET_ATTEMPT -ge 2"]}`)})
	// A payload (and so the echoed result) far above the inline limit goes
	// through the blob store (S3 on the aws profile), unseen by clients.
	bigText := strings.Repeat("0123456789abcdef", 8<<10) // 128 KiB
	big := submit(t, s, job.Submission{Type: "echo", Payload: json.RawMessage(`{"text":"` + bigText + `"}`)})

	// sleep reports progress while it runs.
	s.waitFor(sleep.ID, 20*time.Second, func(j *client.Job) bool { return len(j.Progress) > 0 })
	require.JSONEq(t, `{"slept":3}`, string(s.wait(sleep.ID, 20*time.Second).Result))

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

	f := s.wait(flaky.ID, 30*time.Second)
	require.Equal(t, job.Succeeded, f.Status, "%+v", f)
	require.Equal(t, 2, f.Attempt)
	require.Equal(t, 1, f.Failures)
	require.Len(t, f.History, 2)
	require.Equal(t, job.OutcomeFailed, f.History[0].Outcome)

	g := s.wait(big.ID, 30*time.Second)
	require.Equal(t, job.Succeeded, g.Status, "%+v", g)
	require.Empty(t, g.Result, "a large result is not inline")
	res, err := s.Client.Result(ctx, big.ID)
	require.NoError(t, err)
	require.JSONEq(t, `{"text":"`+bigText+`"}`, string(res))
	got, err := s.Client.Get(ctx, big.ID)
	require.NoError(t, err)
	require.Empty(t, got.Payload, "a large payload is not inline")
	require.NotEmpty(t, got.PayloadRef)
	require.Equal(t, int64(len(`{"text":"`+bigText+`"}`)), got.PayloadSize)
}

// The duration cap bounds every attempt: a job asking for more is refused,
// and one running past it fails with a timeout.
func TestDurationCap(t *testing.T) {
	t.Parallel()
	profiles(t, testDurationCap)
}

func testDurationCap(t *testing.T, opts options) {
	opts["JOBFLEET_DURATION_CAP"] = "1s"
	s := start(t, opts)
	_, err := s.Client.Submit(context.Background(), job.Submission{Type: "sleep", Timeout: job.Duration(5 * time.Second), Payload: json.RawMessage(`{"seconds":1}`)})
	require.ErrorIs(t, err, errcode.InvalidArgument)
	require.ErrorContains(t, err, "the duration cap is 1s")
	j := submit(t, s, job.Submission{Type: "sleep", MaxAttempts: 1, Payload: json.RawMessage(`{"seconds":30}`)})
	done := s.wait(j.ID, 20*time.Second)
	require.Equal(t, job.Failed, done.Status)
	require.Contains(t, done.Error, "timeout")
	require.Equal(t, job.OutcomeTimeout, done.History[0].Outcome)
	require.Less(t, done.History[0].EndedAt.Sub(done.History[0].StartedAt), 10*time.Second, "cut off near the cap, not after the 30 s sleep")
}

func TestDedupAndCancel(t *testing.T) {
	t.Parallel()
	profiles(t, testDedupAndCancel)
}

func testDedupAndCancel(t *testing.T, opts options) {
	opts["JOBFLEET_MAX_WORKERS"], opts["JOBFLEET_CONCURRENCY"] = "1", "1"
	// The sleeping job must keep the one slot for the whole test, also
	// while an emulator under the suite's load answers slowly: a longer
	// lease than the suite's 2 s (the cancel is still seen within a
	// heartbeat).
	opts["JOBFLEET_LEASE"], opts["JOBFLEET_VISIBILITY"] = "10s", "11s"
	s := start(t, opts)
	ctx := context.Background()
	// 50 concurrent submissions of one key make one job.
	const n = 50
	sub := job.Submission{Type: "sleep", Key: "nightly-report", Payload: json.RawMessage(`{"seconds":30}`)}
	got := make([]*client.Job, n)
	// moto's TransactWriteItems is not atomic across concurrent requests:
	// a losing request restores a copy of the table it took at its start,
	// which can undo another's write or bring back a loser's job item (an
	// orphan job without its key). DynamoDB serializes them. So on moto the
	// submissions go one at a time (still one job, 49 deduplicated);
	// storetest's KeyConcurrentCreates runs the race on every adapter, and
	// the local profile runs it here.
	concurrent := !(opts["JOBFLEET_PROFILE"] == "aws" && awstest.IsMoto(t))
	var wg sync.WaitGroup
	for i := range n {
		submit := func() {
			j, err := s.Client.Submit(ctx, sub)
			if err == nil {
				got[i] = j
			} else {
				t.Errorf("submission %d: %v", i, err)
			}
		}
		if concurrent {
			wg.Go(submit)
		} else {
			submit()
		}
	}
	wg.Wait()
	require.False(t, t.Failed())
	a := got[0]
	created := 0
	for _, j := range got {
		require.Equal(t, a.ID, j.ID, "one key, one job")
		if !j.Deduplicated {
			created++
		}
	}
	require.Equal(t, 1, created, "one submission created it; the others were deduplicated")
	page, err := s.Client.List(ctx, client.ListOptions{Type: "sleep"})
	require.NoError(t, err)
	require.Len(t, page.Jobs, 1)
	_, err = s.Client.Submit(ctx, job.Submission{Type: "sleep", Key: "nightly-report", Payload: json.RawMessage(`{"seconds":1}`)})
	require.ErrorIs(t, err, errcode.AlreadyExists)
	require.ErrorIs(t, err, dispatcher.ErrKeyConflict)

	// A queued job behind it (the one worker's one slot is taken) is
	// cancelled at once.
	s.waitFor(a.ID, 20*time.Second, func(j *client.Job) bool { return j.Status == job.Running })
	queued := submit(t, s, job.Submission{Type: "echo"})
	c, err := s.Client.Cancel(ctx, queued.ID)
	require.NoError(t, err)
	require.Equal(t, job.Cancelled, c.Status)
	require.Equal(t, 0, c.Attempt, "it never ran")
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
	bound := 3 * time.Second // the fleet event's goal
	if opts["JOBFLEET_PROFILE"] == "aws" {
		// Through the SQS events queue and the orphaned-poll guard's second
		// send, on an emulator (README, Failure and recovery).
		bound = 10 * time.Second
	}
	require.Less(t, rerun, bound, "recovered from the fleet event, not the 30s lease")
	done := s.wait(j.ID, 30*time.Second)
	require.Equal(t, job.Succeeded, done.Status)
	require.Equal(t, 1, done.Failures, "a crash spends an attempt")
	require.Equal(t, job.OutcomeTaskStopped, done.History[0].Outcome)

	// GET /v1/fleet lists the killed worker among the recent stops.
	view := fleetView(t, s)
	require.True(t, slices.ContainsFunc(view.RecentStops, func(w dispatcher.StoppedWorker) bool {
		// SIGKILL (exit 137) is what the OOM killer sends: classed oom.
		return w.ID == running.Owner && w.Class == fleet.StopOOM && *w.ExitCode == 137
	}), "%+v", view.RecentStops)
	require.NotNil(t, view.Scaler)
}

// With no fleet event (the reaper restarted after the worker died, say),
// the lease runs out and the job runs again.
func TestLeaseExpiryRecovers(t *testing.T) {
	t.Parallel()
	profiles(t, testLeaseExpiryRecovers)
}

func testLeaseExpiryRecovers(t *testing.T, opts options) {
	// One job per worker, so the re-queued job's backlog asks for a second
	// worker while the frozen one still counts as active.
	opts["JOBFLEET_CONCURRENCY"] = "1"
	if opts["JOBFLEET_PROFILE"] == "aws" {
		// Attempt 2 must keep its lease on an emulator slowed by the
		// suite's load (a renewal slower than about half the lease loses it).
		opts["JOBFLEET_LEASE"], opts["JOBFLEET_VISIBILITY"] = "4s", "5s"
	}
	s := start(t, opts)
	j := submit(t, s, job.Submission{Type: "sleep", Payload: json.RawMessage(`{"seconds":2}`)})
	running := s.waitFor(j.ID, 20*time.Second, func(j *client.Job) bool { return j.Status == job.Running })
	// Freeze the worker: it stops heartbeating but its process lives, so no
	// fleet event comes.
	pid := ownerPID(t, running.Owner)
	t.Cleanup(func() { _ = syscall.Kill(pid, syscall.SIGCONT); _ = syscall.Kill(pid, syscall.SIGKILL) })
	// Not while it holds a SQLite write lock (a heartbeat's): that would
	// stall every process for the busy timeout (see package freeze).
	stopped, _, err := freeze.Stop(pid, filepath.Join(s.Dir, "data"))
	require.NoError(t, err)
	again := s.waitFor(j.ID, 30*time.Second, func(j *client.Job) bool { return j.Attempt >= 2 && j.Status == job.Running })
	t.Logf("frozen worker → running again: %s (lease %s, sweep %s)", again.StartedAt.Sub(stopped), s.envValue("JOBFLEET_LEASE"), s.envValue("JOBFLEET_SWEEP"))
	require.NotEqual(t, running.Owner, again.Owner)
	// Thaw the old worker while attempt 2 runs: its next renewal or its
	// outcome write is fenced off, and it commits nothing.
	require.NoError(t, syscall.Kill(pid, syscall.SIGCONT))
	require.Eventually(t, func() bool {
		for _, l := range s.Disp.logs() { // workers log to the dispatcher's stderr
			if msg, _ := l["msg"].(string); strings.HasPrefix(msg, "lease lost") && l["owner"] == running.Owner {
				return true
			}
		}
		return false
	}, 10*time.Second, 10*time.Millisecond, "the thawed worker did not find its lease lost:\n%s", s.Disp.output())
	done := s.wait(j.ID, 30*time.Second)
	require.Equal(t, job.Succeeded, done.Status)
	require.Equal(t, 2, done.Attempt)
	require.Len(t, done.History, 2)
	require.Equal(t, again.Owner, done.History[1].Owner)
	require.Equal(t, job.OutcomeSucceeded, done.History[1].Outcome, "the outcome is attempt 2's")
	require.Equal(t, job.OutcomeLeaseExpired, done.History[0].Outcome, "attempt 1's record is the reaper's, not the stale worker's")
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
	profiles(t, testDispatcherRestart)
}

func testDispatcherRestart(t *testing.T, opts options) {
	s := start(t, opts)
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
	profiles(t, testBadInputAnswered)
}

func testBadInputAnswered(t *testing.T, opts options) {
	opts["JOBFLEET_MAX_PAYLOAD"] = "1024"
	s := start(t, opts)
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
	// Raw paths, as a client that does not clean them sends them: never a
	// file's content, never a 5xx.
	for _, path := range []string{
		"/v1/jobs/../../../../etc/passwd",
		"/v1/jobs/..%2F..%2F..%2F..%2Fetc%2Fpasswd",
		"/v1/jobs/..%2F..%2Fdata%2Fjobs.db/result",
		"/v1/jobs/%2e%2e/logs",
		"/v1/jobs/x/logs?attempt=../../1",
	} {
		status, body := rawGet(t, strings.TrimPrefix(s.URL, "http://"), path)
		require.True(t, status >= 300 && status < 500, "%s: %d %s", path, status, body)
		require.NotContains(t, body, "root:", path)
		require.NotContains(t, body, "SQLite format", path)
	}
	// And the service still works.
	j := submit(t, s, job.Submission{Type: "echo"})
	require.Equal(t, job.Succeeded, s.wait(j.ID, 30*time.Second).Status)
}

// A backlog scales the fleet from zero up to the max; the jobs finish and
// the workers exit once idle, leaving the fleet at zero again.
func TestFleetScalesOutAndIn(t *testing.T) {
	t.Parallel()
	s := start(t, options{"JOBFLEET_MAX_WORKERS": "3", "JOBFLEET_CONCURRENCY": "2", "JOBFLEET_IDLE_TIMEOUT": "2s"})
	require.Empty(t, s.workerPIDs())
	var ids []string
	for range 20 {
		ids = append(ids, submit(t, s, job.Submission{Type: "sleep", Payload: json.RawMessage(`{"seconds":1}`)}).ID)
	}
	peak := 0
	require.Eventually(t, func() bool {
		peak = max(peak, len(s.workerPIDs()))
		return peak == 3
	}, 20*time.Second, 20*time.Millisecond, "the fleet never reached its max of 3")
	// Never beyond the max while the jobs run.
	done := make(chan struct{})
	over := make(chan int, 1)
	go func() {
		for {
			select {
			case <-done:
				close(over)
				return
			case <-time.After(20 * time.Millisecond):
				if n := len(s.workerPIDs()); n > 3 {
					select {
					case over <- n:
					default:
					}
				}
			}
		}
	}()
	for _, id := range ids {
		require.Equal(t, job.Succeeded, s.wait(id, 60*time.Second).Status)
	}
	close(done)
	n, beyond := <-over
	require.False(t, beyond, "%d workers, beyond the max of 3", n)
	require.Eventually(t, func() bool { return len(s.workerPIDs()) == 0 }, 20*time.Second, 50*time.Millisecond, "idle workers did not exit")
	// The fleet's registry says so once the dispatcher has reaped them.
	var view dispatcher.FleetView
	require.Eventually(t, func() bool {
		view = fleetView(t, s)
		return len(view.Active) == 0 && len(view.RecentStops) >= 3
	}, 20*time.Second, 1100*time.Millisecond, "the fleet view: %+v", view)
	for _, w := range view.RecentStops {
		require.Equal(t, fleet.StopExited, w.Class, "an idle exit is a clean exit: %+v", w)
	}
	require.Equal(t, 0, view.Scaler.Desired)
}

// SIGTERM: the worker stops taking work, answers /health with 503 while it
// drains, hands back the job it could not finish in its drain budget (no
// attempt spent), and exits; another worker runs the job.
func TestWorkerDrainsOnSIGTERM(t *testing.T) {
	t.Parallel()
	// The drain (and /health's 503) lasts 2 s, the job longer: it is
	// handed back.
	s := start(t, options{"JOBFLEET_DRAIN_TIMEOUT": "2s", "JOBFLEET_CONCURRENCY": "1"})
	j := submit(t, s, job.Submission{Type: "sleep", Payload: json.RawMessage(`{"seconds":5}`)})
	running := s.waitFor(j.ID, 20*time.Second, func(j *client.Job) bool { return j.Status == job.Running })
	var addr string
	require.Eventually(t, func() bool {
		for _, l := range s.Disp.logs() { // workers log to the dispatcher's stderr
			if l["msg"] == "worker ready" && l["owner"] == running.Owner {
				addr, _ = l["addr"].(string)
				return true
			}
		}
		return false
	}, 10*time.Second, 10*time.Millisecond)
	health := func() int {
		resp, err := http.Get("http://" + addr + "/health")
		if err != nil {
			return 0 // gone
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	require.Equal(t, http.StatusOK, health())
	pid := ownerPID(t, running.Owner)
	require.NoError(t, syscall.Kill(pid, syscall.SIGTERM))
	require.Eventually(t, func() bool { return health() == http.StatusServiceUnavailable }, 5*time.Second, 10*time.Millisecond, "/health while draining")
	require.Eventually(t, func() bool { return !slices.Contains(s.workerPIDs(), pid) }, 10*time.Second, 20*time.Millisecond, "the worker did not exit")
	done := s.wait(j.ID, 30*time.Second)
	require.Equal(t, job.Succeeded, done.Status)
	require.Equal(t, 0, done.Failures, "a hand-back spends no attempt")
	require.Equal(t, job.OutcomeHandedBack, done.History[0].Outcome)
	require.NotEqual(t, running.Owner, done.History[len(done.History)-1].Owner)
}

// fleetView reads GET /v1/fleet.
func fleetView(t *testing.T, s *System) dispatcher.FleetView {
	t.Helper()
	var view dispatcher.FleetView
	resp, err := http.Get(s.URL + "/v1/fleet")
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&view))
	return view
}

// rawGet sends GET path exactly as given (no cleaning, no escaping) and
// returns the status and body.
func rawGet(t *testing.T, addr, path string) (int, string) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	require.NoError(t, err)
	defer conn.Close()
	require.NoError(t, conn.SetDeadline(time.Now().Add(10*time.Second)))
	_, err = fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", path, addr)
	require.NoError(t, err)
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}
