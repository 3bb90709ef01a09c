package storetest

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/jobfleet/jobfleet/pkg/errcode"
	"github.com/jobfleet/jobfleet/pkg/job"
	"github.com/jobfleet/jobfleet/pkg/jobstore"
)

func testStartOnce(f *fx) {
	t := f.t
	q := f.submit(job.Submission{})
	msg := job.Message{ID: q.ID, Attempt: q.Attempt}
	running := f.win(q, policy.Start(msg, "w1", f.now))
	require.Equal(t, job.Running, running.Status)
	require.Equal(t, 1, running.Attempt)
	require.Equal(t, "w1", running.Owner)
	require.Equal(t, int64(2), running.Rev)

	// The same message again (a redelivery) loses, and shows the winner.
	found := f.lose(policy.Start(msg, "w2", f.now.Add(time.Second)))
	require.Equal(t, "w1", found.Owner)

	// Two starts of one job in one batch: exactly one wins.
	r := f.submit(job.Submission{})
	m := job.Message{ID: r.ID, Attempt: r.Attempt}
	res, err := f.s.Apply(f.ctx, policy.Start(m, "a", f.now), policy.Start(m, "b", f.now))
	require.NoError(t, err)
	require.Len(t, res, 2)
	win, lose := 0, 1
	if res[0].Err != nil {
		win, lose = 1, 0
	}
	require.NoError(t, res[win].Err)
	requireCode(t, errcode.FailedPrecondition, res[lose].Err)
	require.Equal(t, res[win].Job.Owner, res[lose].Job.Owner, "the loser sees the winner's record")
	requireJob(t, res[win].Job, f.get(r.ID))
}

func testStartStaleAttempt(f *fx) {
	t := f.t
	q := f.submit(job.Submission{})
	old := job.Message{ID: q.ID, Attempt: 0}
	cur := f.win(q, policy.Start(old, "w1", f.now))
	cur = f.finish(cur, job.End{Outcome: job.OutcomeHandedBack})
	require.Equal(t, job.Queued, cur.Status)
	require.Equal(t, 1, cur.Attempt)

	f.lose(policy.Start(old, "w2", f.now))                               // older message
	f.lose(policy.Start(job.Message{ID: q.ID, Attempt: 2}, "w2", f.now)) // no such attempt yet
	cur = f.win(cur, policy.Start(job.Message{ID: q.ID, Attempt: 1}, "w2", f.now))
	require.Equal(t, 2, cur.Attempt)
	require.Equal(t, "w2", cur.Owner)
}

func testStartMissing(f *fx) {
	t := f.t
	missing := job.NewID(f.now)
	q := f.submit(job.Submission{})
	res, err := f.s.Apply(f.ctx,
		policy.Start(job.Message{ID: missing}, "w", f.now),
		policy.Start(job.Message{ID: q.ID}, "w", f.now))
	require.NoError(t, err)
	requireCode(t, errcode.NotFound, res[0].Err)
	require.Nil(t, res[0].Job)
	require.NoError(t, res[1].Err)
	f.requireNotFound(missing)

	_, err = f.s.ApplyOne(f.ctx, policy.Start(job.Message{ID: missing}, "w", f.now))
	requireCode(t, errcode.NotFound, err)
}

func testStartRace(f *fx) {
	t := f.t
	q := f.submit(job.Submission{})
	const n = 8
	msg := job.Message{ID: q.ID, Attempt: q.Attempt}
	results := make([]jobstore.ChangeResult, n)
	errs := race(n, func(i int) error {
		res, err := f.s.Apply(f.ctx, policy.Start(msg, fmt.Sprintf("w%d", i), f.now))
		if err == nil {
			results[i] = res[0]
		}
		return err
	})
	winner := -1
	for i, r := range results {
		require.NoError(t, errs[i])
		if r.Err == nil {
			require.Equal(t, -1, winner, "workers %d and %d both started the job", winner, i)
			winner = i
			continue
		}
		requireCode(t, errcode.FailedPrecondition, r.Err)
		require.Equal(t, job.Running, r.Job.Status)
	}
	require.NotEqual(t, -1, winner, "nobody started the job")
	got := f.get(q.ID)
	require.Equal(t, fmt.Sprintf("w%d", winner), got.Owner)
	require.Equal(t, 1, got.Attempt)
	require.Equal(t, int64(2), got.Rev)
	require.Len(t, got.History, 1)
}

func testRenewFenced(f *fx) {
	t := f.t
	cur := f.start(f.submit(job.Submission{Timeout: job.Duration(time.Minute)}), "w1")

	other := cur.Clone()
	other.Owner = "w2"
	f.lose(policy.Renew(other, f.now, nil))
	stale := cur.Clone()
	stale.Attempt--
	f.lose(policy.Renew(stale, f.now, nil))

	f.advance(10 * time.Second)
	cur = f.win(cur, policy.Renew(cur, f.now, raw(`{"pct":10}`)))
	require.JSONEq(t, `{"pct":10}`, string(f.get(cur.ID).Progress))
	require.Equal(t, f.now.Add(policy.Lease).UnixMilli(), cur.LeaseUntil.UnixMilli())

	// No progress leaves the last one; past the lease's reach, the attempt's
	// deadline is when the job is due.
	f.advance(40 * time.Second)
	cur = f.win(cur, policy.Renew(cur, f.now, nil))
	require.Equal(t, `{"pct":10}`, string(cur.Progress))
	require.Equal(t, cur.Deadline().UnixMilli(), cur.DueAt.UnixMilli())
}

func testRenewSeesCancelRequest(f *fx) {
	t := f.t
	owners := f.start(f.submit(job.Submission{}), "w1") // the owner's copy
	cur := f.get(owners.ID)
	rc, ok := policy.RequestCancel(cur, f.now)
	require.True(t, ok)
	require.Equal(t, job.EventRequestCancel, rc.Event)
	f.win(cur, rc)

	renewed := f.win(f.get(owners.ID), policy.Renew(owners, f.advance(time.Second), nil))
	require.True(t, renewed.CancelRequested, "the heartbeat reads back the cancel request")
	done := f.finish(renewed, job.End{Outcome: job.OutcomeFailed, Reason: "stopped"})
	require.Equal(t, job.Cancelled, done.Status)
	require.False(t, done.CancelRequested)
}

func testTakeover(f *fx) {
	t := f.t
	old := f.start(f.submit(job.Submission{MaxAttempts: 3}), "w1")

	f.advance(policy.Lease / 2)
	f.lose(policy.Takeover(old, "w2", f.now)) // the lease is alive

	f.advance(policy.Lease)
	cur := f.get(old.ID)
	first, second := policy.Takeover(cur, "w2", f.now), policy.Takeover(cur, "w3", f.now)
	cur = f.win(cur, first)
	f.lose(second)
	require.Equal(t, "w2", cur.Owner)
	require.Equal(t, 2, cur.Attempt)
	require.Equal(t, 1, cur.Failures)
	require.Len(t, cur.History, 2)
	require.Equal(t, job.OutcomeLeaseExpired, cur.History[0].Outcome)
	require.Equal(t, "w1", cur.History[0].Owner)
	require.Equal(t, "w2", cur.History[1].Owner)

	// The old owner is fenced off.
	f.lose(policy.Renew(old, f.now, raw(`"late"`)))
	f.lose(policy.Finish(old, f.now, job.End{Outcome: job.OutcomeSucceeded, Result: raw(`"late"`)}))
	f.lose(policy.Finish(old, f.now, job.End{Outcome: job.OutcomeFailed, Reason: "late"}))
	require.Equal(t, job.Running, f.get(old.ID).Status)
	require.Empty(t, f.get(old.ID).Result)

	// The new owner finishes.
	done := f.finish(cur, job.End{Outcome: job.OutcomeSucceeded, Result: raw(`"ok"`)})
	require.Equal(t, job.Succeeded, done.Status)
	require.Equal(t, 1, done.Failures)
}

func testFinish(f *fx) {
	const reason = "handler error: ü"
	cases := []struct {
		name        string
		maxAttempts int
		cancel      bool // a cancel request arrives while it runs
		end         job.End
		status      job.Status
		failures    int
		runAfter    time.Duration // for requeued jobs: RunAt - now
		err         string        // error that the record must contain; "" for none
	}{
		{name: "success", end: job.End{Outcome: job.OutcomeSucceeded, Result: raw(`{"ok":true}`)}, status: job.Succeeded},
		{name: "success with result ref", end: job.End{Outcome: job.OutcomeSucceeded, ResultRef: "results/x"}, status: job.Succeeded},
		{name: "permanent", end: job.End{Outcome: job.OutcomePermanent, Reason: reason}, status: job.Failed, failures: 1, err: reason},
		{name: "retry", maxAttempts: 3, end: job.End{Outcome: job.OutcomeFailed, Reason: reason, Delay: 10 * time.Second},
			status: job.Queued, failures: 1, runAfter: 10 * time.Second, err: reason},
		{name: "retry past the queue's delay", maxAttempts: 3, end: job.End{Outcome: job.OutcomeTimeout, Reason: reason, Delay: time.Hour},
			status: job.Scheduled, failures: 1, runAfter: time.Hour, err: reason},
		{name: "attempts exhausted", maxAttempts: 1, end: job.End{Outcome: job.OutcomePanic, Reason: reason},
			status: job.Failed, failures: 1, err: "attempts exhausted"},
		{name: "cancelled", end: job.End{Outcome: job.OutcomeCancelled}, status: job.Cancelled, err: "cancelled"},
		{name: "cancel requested then failed", cancel: true, end: job.End{Outcome: job.OutcomeFailed, Reason: reason},
			status: job.Cancelled, failures: 1, err: "cancelled"},
		{name: "cancel requested then succeeded", cancel: true, end: job.End{Outcome: job.OutcomeSucceeded, Result: raw(`1`)},
			status: job.Succeeded},
		{name: "hand back", maxAttempts: 1, end: job.End{Outcome: job.OutcomeHandedBack, Delay: time.Minute}, status: job.Queued},
		{name: "interrupted", maxAttempts: 1, end: job.End{Outcome: job.OutcomeInterrupted}, status: job.Queued},
		{name: "snooze", maxAttempts: 1, end: job.End{Outcome: job.OutcomeSnoozed, Delay: 5 * time.Minute},
			status: job.Queued, runAfter: 5 * time.Minute},
		{name: "snooze past the queue's delay", maxAttempts: 1, end: job.End{Outcome: job.OutcomeSnoozed, Delay: 2 * time.Hour},
			status: job.Scheduled, runAfter: 2 * time.Hour},
	}
	for _, c := range cases {
		f.t.Run(c.name, func(t *testing.T) {
			f := f.with(t)
			cur := f.start(f.submit(job.Submission{MaxAttempts: c.maxAttempts}), "w")
			if c.cancel {
				rc, ok := policy.RequestCancel(cur, f.now)
				require.True(t, ok)
				cur = f.win(cur, rc)
			}
			f.advance(3 * time.Second)
			got := f.finish(cur, c.end)

			require.Equal(t, c.status, got.Status)
			require.Equal(t, c.failures, got.Failures)
			require.Equal(t, 1, got.Attempt)
			require.Empty(t, got.Owner)
			require.True(t, got.LeaseUntil.IsZero())
			require.Len(t, got.History, 1)
			h := got.History[0]
			require.Equal(t, c.end.Outcome, h.Outcome)
			require.Equal(t, "w", h.Owner)
			require.Equal(t, f.now.UnixMilli(), h.EndedAt.UnixMilli())
			if c.err == "" {
				require.Empty(t, got.Error)
			} else {
				require.Contains(t, got.Error, c.err)
			}
			if c.status.Terminal() {
				require.Equal(t, f.now.UnixMilli(), got.FinishedAt.UnixMilli())
				require.Equal(t, f.now.Add(policy.Retention).UnixMilli(), got.ExpiresAt.UnixMilli())
				require.True(t, got.DueAt.IsZero(), "terminal jobs are never due")
				require.False(t, got.CancelRequested)
			} else {
				require.Equal(t, f.now.Add(c.runAfter).UnixMilli(), got.RunAt.UnixMilli())
				require.False(t, got.DueAt.IsZero())
				require.True(t, got.FinishedAt.IsZero())
			}
			if c.status == job.Succeeded {
				require.Equal(t, string(c.end.Result), string(got.Result))
				require.Equal(t, c.end.ResultRef, got.ResultRef)
			} else {
				require.Empty(t, got.Result)
				require.Empty(t, got.ResultRef)
			}
		})
	}
}

func testHistoryBounded(f *fx) {
	t := f.t
	cur := f.submit(job.Submission{MaxAttempts: 2})
	const attempts = job.MaxHistory + 3
	for range attempts {
		cur = f.start(cur, "w")
		f.advance(time.Second)
		cur = f.finish(cur, job.End{Outcome: job.OutcomeHandedBack, Reason: "drain"})
	}
	require.Equal(t, attempts, cur.Attempt)
	require.Zero(t, cur.Failures)
	require.Len(t, cur.History, job.MaxHistory)
	for i, h := range cur.History {
		require.Equal(t, attempts-job.MaxHistory+1+i, h.Attempt)
		require.Equal(t, job.OutcomeHandedBack, h.Outcome)
	}
	requireJob(t, cur, f.get(cur.ID))
}

func testTerminalWrittenOnce(f *fx) {
	ends := []struct {
		name string
		end  func(f *fx, cur *job.Job) (running, done *job.Job)
	}{
		{"succeeded", func(f *fx, cur *job.Job) (*job.Job, *job.Job) {
			r := f.start(cur, "w")
			return r, f.finish(r, job.End{Outcome: job.OutcomeSucceeded, Result: raw(`"once"`)})
		}},
		{"failed", func(f *fx, cur *job.Job) (*job.Job, *job.Job) {
			r := f.start(cur, "w")
			return r, f.finish(r, job.End{Outcome: job.OutcomePermanent, Reason: "no"})
		}},
		{"cancelled", func(f *fx, cur *job.Job) (*job.Job, *job.Job) {
			r := f.start(cur, "w")
			rc, _ := policy.RequestCancel(r, f.now)
			r = f.win(r, rc)
			return r, f.finish(r, job.End{Outcome: job.OutcomeCancelled})
		}},
	}
	for _, e := range ends {
		f.t.Run(e.name, func(t *testing.T) {
			f := f.with(t)
			running, done := e.end(f, f.submit(job.Submission{MaxAttempts: 3}))
			require.True(t, done.Status.Terminal())
			_, ok := policy.RequestCancel(done, f.now)
			require.False(t, ok)
			f.advance(time.Hour)
			now := f.now
			changes := []job.Change{
				// The owner's stale copy.
				policy.Renew(running, now, raw(`"late"`)),
				policy.Finish(running, now, job.End{Outcome: job.OutcomeSucceeded, Result: raw(`"twice"`)}),
				policy.Finish(running, now, job.End{Outcome: job.OutcomeFailed, Reason: "late"}),
				policy.Finish(running, now, job.End{Outcome: job.OutcomeHandedBack}),
				policy.Reclaim(running, now, job.End{Outcome: job.OutcomeTaskStopped}),
				policy.Takeover(running, "w2", now),
				// Anything built from the terminal record itself.
				policy.Start(job.Message{ID: done.ID, Attempt: done.Attempt}, "w2", now),
				policy.Renew(done, now, nil),
				policy.Finish(done, now, job.End{Outcome: job.OutcomeSucceeded}),
				policy.Reclaim(done, now, job.End{Outcome: job.OutcomeLeaseExpired}),
				policy.Takeover(done, "w2", now),
				policy.Promote(done, now),
				policy.Resend(done, now),
				policy.Note(done, now, "late"),
				policy.DeadLetter(done, now, "late"),
				policy.Expire(done, now, "late"),
			}
			for _, c := range changes {
				found := f.lose(c)
				requireJob(t, done, found)
			}
			// In one batch, too.
			res, err := f.s.Apply(f.ctx, changes...)
			require.NoError(t, err)
			require.Len(t, res, len(changes))
			for _, r := range res {
				requireCode(t, errcode.FailedPrecondition, r.Err)
				requireJob(t, done, r.Job)
			}
			requireJob(t, done, f.get(done.ID))
		})
	}
}

func testReclaimOnce(f *fx) {
	t := f.t
	// A lease-expiry reclaim needs the lease to have expired.
	alive := f.start(f.submit(job.Submission{}), "w")
	f.lose(policy.Reclaim(alive, f.now.Add(time.Second), job.End{Outcome: job.OutcomeLeaseExpired}))
	// A stopped task's jobs are reclaimed at once.
	back := f.win(alive, policy.Reclaim(alive, f.now.Add(time.Second), job.End{Outcome: job.OutcomeTaskStopped, Reason: "OOM"}))
	require.Equal(t, job.Queued, back.Status)
	require.Equal(t, 1, back.Failures)

	// Two reapers read the same expired job and reclaim it: one wins.
	cur := f.start(f.submit(job.Submission{MaxAttempts: 3}), "w")
	f.advance(policy.Lease + time.Second)
	cur = f.get(cur.ID)
	changes := []job.Change{
		policy.Reclaim(cur, f.now, job.End{Outcome: job.OutcomeLeaseExpired}),
		policy.Reclaim(cur, f.now, job.End{Outcome: job.OutcomeLeaseExpired}),
	}
	results := make([]jobstore.ChangeResult, len(changes))
	errs := race(len(changes), func(i int) error {
		res, err := f.s.Apply(f.ctx, changes[i])
		if err == nil {
			results[i] = res[0]
		}
		return err
	})
	wins := 0
	for i, r := range results {
		require.NoError(t, errs[i])
		if r.Err == nil {
			wins++
			continue
		}
		requireCode(t, errcode.FailedPrecondition, r.Err)
	}
	require.Equal(t, 1, wins)
	got := f.get(cur.ID)
	require.Equal(t, job.Queued, got.Status)
	require.Equal(t, 1, got.Failures)
	require.Equal(t, cur.Rev+1, got.Rev)

	// Later, the loser's change (same revision) still loses.
	f.lose(changes[0])
}

func testApplyBatchIndependent(f *fx) {
	t := f.t
	a := f.submit(job.Submission{})
	b := f.submit(job.Submission{})
	c := f.submit(job.Submission{})
	d := f.submit(job.Submission{})
	missing := job.NewID(f.now)
	// One entry per job: the order in which a driver applies the entries of
	// a batch is not part of the contract.
	res, err := f.s.Apply(f.ctx,
		policy.Start(job.Message{ID: a.ID, Attempt: 0}, "w", f.now),
		policy.Start(job.Message{ID: b.ID, Attempt: 3}, "w", f.now), // stale
		policy.Start(job.Message{ID: missing}, "w", f.now),
		policy.Note(d, f.now, "still waiting"),
		policy.Start(job.Message{ID: c.ID, Attempt: 0}, "w", f.now),
	)
	require.NoError(t, err)
	require.Len(t, res, 5)
	require.NoError(t, res[0].Err)
	requireCode(t, errcode.FailedPrecondition, res[1].Err)
	requireJob(t, b, res[1].Job)
	requireCode(t, errcode.NotFound, res[2].Err)
	require.Nil(t, res[2].Job)
	require.NoError(t, res[3].Err)
	require.NoError(t, res[4].Err)

	require.Equal(t, job.Running, f.get(a.ID).Status)
	requireJob(t, b, f.get(b.ID))
	require.Equal(t, "still waiting", f.get(d.ID).Detail)
	requireJob(t, res[3].Job, f.get(d.ID))
	require.Equal(t, job.Running, f.get(c.ID).Status)
	requireJob(t, res[4].Job, f.get(c.ID))
}

func testIllegalTransition(f *fx) {
	t := f.t
	done := f.finish(f.start(f.submit(job.Submission{}), "w"), job.End{Outcome: job.OutcomeSucceeded})
	other := f.submit(job.Submission{})

	reopen := job.Change{ID: done.ID, Event: job.EventFinish, If: job.Cond{Status: job.Succeeded, Attempt: done.Attempt}}
	reopen.Set.Fields = job.FieldStatus
	reopen.Set.Values.Status = job.Queued
	_, err := f.s.Apply(f.ctx, reopen)
	requireCode(t, errcode.InvalidArgument, err)

	// An illegal entry fails the whole call before anything is written.
	_, err = f.s.Apply(f.ctx, policy.Note(other, f.now, "x"), reopen)
	requireCode(t, errcode.InvalidArgument, err)

	badID := policy.Note(other, f.now, "x")
	badID.ID = "not-a-job-id"
	_, err = f.s.Apply(f.ctx, badID)
	requireCode(t, errcode.InvalidArgument, err)

	wrongEvent := policy.Note(other, f.now, "x")
	wrongEvent.Event = job.EventStart // start must move QUEUED to RUNNING
	_, err = f.s.Apply(f.ctx, wrongEvent)
	requireCode(t, errcode.InvalidArgument, err)

	requireJob(t, done, f.get(done.ID))
	requireJob(t, other, f.get(other.ID))
}
