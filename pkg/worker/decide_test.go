package worker_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/stretchr/testify/require"

	"github.com/jobfleet/jobfleet/pkg/errcode"
	"github.com/jobfleet/jobfleet/pkg/job"
	"github.com/jobfleet/jobfleet/pkg/queue"
	"github.com/jobfleet/jobfleet/pkg/worker"
)

func TestAttemptEnd(t *testing.T) {
	t.Parallel()
	j := &job.Job{ID: job.NewID(t0), Timeout: job.Duration(time.Minute)}
	const retry = 7 * time.Second
	boom := errors.New("boom")
	cases := []struct {
		name  string
		ret   worker.Return
		cause error
		want  job.End
	}{
		{"Success", worker.Return{Result: json.RawMessage(`1`)}, nil,
			job.End{Outcome: job.OutcomeSucceeded, Result: json.RawMessage(`1`)}},
		{"Failure", worker.Return{Err: boom}, nil,
			job.End{Outcome: job.OutcomeFailed, Reason: "boom", Delay: retry}},
		{"Permanent", worker.Return{Err: worker.Permanent(boom)}, nil,
			job.End{Outcome: job.OutcomePermanent, Reason: "boom"}},
		{"Snooze", worker.Return{Err: worker.Snooze(time.Hour)}, nil,
			job.End{Outcome: job.OutcomeSnoozed, Reason: "snooze 1h0m0s", Delay: time.Hour}},
		{"WrappedSnooze", worker.Return{Err: fmt.Errorf("later: %w", worker.Snooze(time.Minute))}, nil,
			job.End{Outcome: job.OutcomeSnoozed, Reason: "later: snooze 1m0s", Delay: time.Minute}},
		{"Panic", worker.Return{Panic: "panic: x"}, nil,
			job.End{Outcome: job.OutcomePanic, Reason: "panic: x", Delay: retry}},
		// A success or a panic counts whatever the context did.
		{"SuccessAfterLeaseLost", worker.Return{Result: json.RawMessage(`2`)}, worker.ErrLeaseLost,
			job.End{Outcome: job.OutcomeSucceeded, Result: json.RawMessage(`2`)}},
		{"PanicAfterTimeout", worker.Return{Panic: "panic: y"}, worker.ErrTimeout,
			job.End{Outcome: job.OutcomePanic, Reason: "panic: y", Delay: retry}},
		// Any other return after the context ended takes the cause's outcome.
		{"LeaseLost", worker.Return{Err: context.Canceled}, worker.ErrLeaseLost,
			job.End{Outcome: job.OutcomeFailed, Reason: "lease lost"}},
		{"CancelRequested", worker.Return{Err: worker.Permanent(boom)}, worker.ErrCancelRequested,
			job.End{Outcome: job.OutcomeCancelled, Reason: "cancel requested"}},
		{"Timeout", worker.Return{Err: worker.Snooze(time.Hour)}, worker.ErrTimeout,
			job.End{Outcome: job.OutcomeTimeout, Reason: "ran past its timeout of 1m0s", Delay: retry}},
		{"HandBack", worker.Return{Err: boom}, worker.ErrHandBack,
			job.End{Outcome: job.OutcomeHandedBack, Reason: "worker stopping"}},
		{"WorkerContextEnded", worker.Return{Err: boom}, context.Canceled,
			job.End{Outcome: job.OutcomeHandedBack, Reason: "worker stopping"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			if d := cmp.Diff(c.want, worker.AttemptEnd(j, c.ret, c.cause, retry)); d != "" {
				t.Errorf("AttemptEnd (-want +got):\n%s", d)
			}
		})
	}
}

func TestBackoff(t *testing.T) {
	t.Parallel()
	base, maxD := time.Second, time.Minute
	for _, c := range []struct {
		failures int
		jitter   float64
		want     time.Duration
	}{
		{1, 0, 500 * time.Millisecond},
		{1, 0.5, 750 * time.Millisecond},
		{2, 0, time.Second},
		{3, 0.999, 4*time.Second - 2*time.Millisecond},
		{6, 0, 16 * time.Second},
		{7, 0, 30 * time.Second}, // capped at a minute, then halved
		{1000, 0, 30 * time.Second},
	} {
		require.Equal(t, c.want, worker.Backoff(c.failures, base, maxD, c.jitter), "failures %d, jitter %v", c.failures, c.jitter)
	}
}

func TestGiveBackDelay(t *testing.T) {
	t.Parallel()
	// The services' settings: 10 receives, a 40 s visibility timeout.
	want := []time.Duration{2, 4, 8, 16, 32, 40, 40, 40, 40, 40}
	total := time.Duration(0)
	for i, w := range want {
		d := worker.GiveBackDelay(i+1, 40*time.Second)
		require.Equal(t, w*time.Second, d, "after receive %d", i+1)
		total += d
	}
	require.Greater(t, total, 4*time.Minute, "ten receives outlast a four-minute outage")
	require.Equal(t, time.Second, worker.GiveBackDelay(3, time.Second), "never past the visibility timeout")
	require.Equal(t, worker.GiveBackBase, worker.GiveBackDelay(0, time.Minute))
}

func TestResolveStart(t *testing.T) {
	t.Parallel()
	p := job.DefaultPolicy
	now := t0.Add(time.Hour)
	running := func(mod func(*job.Job)) *job.Job {
		j := &job.Job{ID: job.NewID(t0), Status: job.Running, Attempt: 2, Failures: 1, MaxAttempts: 5,
			Owner: "w0", LeaseUntil: now.Add(-time.Second), Rev: 9}
		if mod != nil {
			mod(j)
		}
		return j
	}
	cases := []struct {
		name   string
		cur    *job.Job
		want   worker.Resolution
		change func(cur *job.Job) job.Change
	}{
		{"Missing", nil, worker.Stale, nil},
		{"LiveLease", running(func(j *job.Job) { j.LeaseUntil = now.Add(time.Second) }), worker.Stale, nil},
		{"Terminal", running(func(j *job.Job) { j.Status = job.Succeeded }), worker.Stale, nil},
		{"NewerAttemptQueued", running(func(j *job.Job) { j.Status = job.Queued }), worker.Stale, nil},
		{"Expired", running(nil), worker.TakeOver,
			func(cur *job.Job) job.Change { return p.Takeover(cur, "w1", now) }},
		{"ExpiredLastAttempt", running(func(j *job.Job) { j.Failures = 4 }), worker.Settle,
			func(cur *job.Job) job.Change {
				return p.Reclaim(cur, now, job.End{Outcome: job.OutcomeLeaseExpired, Reason: "lease of w0 expired"})
			}},
		{"ExpiredCancelPending", running(func(j *job.Job) { j.CancelRequested = true }), worker.Settle,
			func(cur *job.Job) job.Change {
				return p.Reclaim(cur, now, job.End{Outcome: job.OutcomeLeaseExpired, Reason: "lease of w0 expired"})
			}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			res, change := worker.ResolveStart(p, c.cur, "w1", now)
			require.Equal(t, c.want, res, "got %s", res)
			want := job.Change{}
			if c.change != nil {
				want = c.change(c.cur)
			}
			if d := cmp.Diff(want, change); d != "" {
				t.Errorf("change (-want +got):\n%s", d)
			}
		})
	}
}

func TestRenewalResult(t *testing.T) {
	t.Parallel()
	now := t0
	hb := 10 * time.Second
	cur := &job.Job{LeaseUntil: now.Add(25 * time.Second)}
	nearEnd := &job.Job{LeaseUntil: now.Add(5 * time.Second)}
	unavailable := errcode.New(errcode.Unavailable, "throttled")
	for _, c := range []struct {
		name string
		err  error
		cur  *job.Job
		want worker.Renewal
	}{
		{"Renewed", nil, cur, worker.Renewed},
		{"ConditionFailed", errcode.New(errcode.FailedPrecondition, "lost"), cur, worker.LeaseLost},
		{"Gone", fmt.Errorf("renew: %w", errcode.New(errcode.NotFound, "no job")), cur, worker.LeaseLost},
		{"UnknownLeaseHolds", unavailable, cur, worker.RenewalUnknown},
		{"UnknownLeaseEndsBeforeNextHeartbeat", unavailable, nearEnd, worker.LeaseLost},
	} {
		require.Equal(t, c.want, worker.RenewalResult(c.err, c.cur, now, hb), c.name)
	}
	require.False(t, worker.LostCondition(nil))
	require.False(t, worker.LostCondition(unavailable))
}

func TestNearVisibilityCap(t *testing.T) {
	t.Parallel()
	vis, hb := 40*time.Second, 10*time.Second
	// The cap is 12 h after the receive; a minute of margin, and the next
	// extension (visibility + heartbeat) must fit before it.
	last := t0.Add(queue.MaxVisibility - time.Minute - vis - hb)
	require.False(t, worker.NearVisibilityCap(t0, t0, vis, hb))
	require.False(t, worker.NearVisibilityCap(t0, last, vis, hb))
	require.True(t, worker.NearVisibilityCap(t0, last.Add(time.Millisecond), vis, hb))
}

func TestStartAndFinishResult(t *testing.T) {
	t.Parallel()
	p := job.DefaultPolicy
	q := &job.Job{ID: job.NewID(t0), Type: "t", Status: job.Queued, MaxAttempts: 3, Timeout: job.Duration(time.Minute), Rev: 1}
	apply := func(cur *job.Job, c job.Change) *job.Job {
		n := *cur
		n.History = append([]job.Attempt(nil), cur.History...)
		c.Set.Apply(&n)
		return &n
	}
	running := apply(q, p.Start(job.Message{ID: q.ID}, "w1", t0))
	require.True(t, worker.StartLanded(running, "w1", 1))
	require.False(t, worker.StartLanded(running, "w2", 1), "another worker's start")
	require.False(t, worker.StartLanded(running, "w1", 2), "another attempt")
	require.False(t, worker.StartLanded(q, "w1", 1), "did not land")

	fin := p.Finish(running, t0.Add(time.Second), job.End{Outcome: job.OutcomeFailed, Reason: "boom"})
	require.Equal(t, worker.FinishRetry, worker.FinishResult(running, fin), "did not land: write again")
	require.Equal(t, worker.FinishLanded, worker.FinishResult(apply(running, fin), fin))

	// The reaper ended the attempt after the lease ran out, and the job
	// may have run again since: not ours.
	late := t0.Add(time.Hour)
	reclaimed := apply(running, p.Reclaim(running, late, job.End{Outcome: job.OutcomeLeaseExpired, Reason: "lease expired"}))
	require.Equal(t, worker.FinishLost, worker.FinishResult(reclaimed, fin))
	taken := apply(running, p.Takeover(running, "w2", late))
	require.Equal(t, worker.FinishLost, worker.FinishResult(taken, fin))
	// The same outcome, written by another owner of the attempt, is not ours.
	other := *running
	other.Owner = "w2"
	require.Equal(t, worker.FinishLost, worker.FinishResult(apply(&other, p.Finish(&other, late, job.End{Outcome: job.OutcomeFailed})), fin))
}
