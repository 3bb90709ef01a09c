package job_test

import (
	"encoding/json"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/jobfleet/jobfleet/pkg/job"
)

var (
	t0     = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	policy = job.DefaultPolicy
)

var allEvents = []job.Event{
	job.EventSubmit, job.EventPromote, job.EventResend, job.EventStart, job.EventTakeover,
	job.EventRenew, job.EventRequestCancel, job.EventNote, job.EventFinish, job.EventReclaim,
	job.EventCancel, job.EventDeadLetter, job.EventExpire,
}

// TestTransitionsExhaustive walks every (event, from, to) triple and checks
// the table's shape: terminal states are final, every state is reachable
// from a submission, and every active state can reach a terminal one.
func TestTransitionsExhaustive(t *testing.T) {
	t.Parallel()
	from := append([]job.Status{job.None}, job.Statuses...)
	edges := map[job.Status][]job.Status{}
	n := 0
	for _, ev := range allEvents {
		for _, f := range from {
			for _, to := range job.Statuses {
				ok := job.Allowed(ev, f, to)
				inTable := slices.Contains(job.Transitions, job.Transition{Event: ev, From: f, To: to})
				require.Equal(t, inTable, ok, "%s %s→%s", ev, f, to)
				if !ok {
					continue
				}
				n++
				require.False(t, f.Terminal(), "edge %s leaves terminal %s", ev, f)
				if f == job.None {
					require.Equal(t, job.EventSubmit, ev, "only submit starts from none")
				}
				edges[f] = append(edges[f], to)
			}
		}
	}
	require.Equal(t, len(job.Transitions), n, "table has duplicates or unknown events")

	reach := func(start job.Status) map[job.Status]bool {
		seen := map[job.Status]bool{start: true}
		stack := []job.Status{start}
		for len(stack) > 0 {
			s := stack[len(stack)-1]
			stack = stack[:len(stack)-1]
			for _, to := range edges[s] {
				if !seen[to] {
					seen[to] = true
					stack = append(stack, to)
				}
			}
		}
		return seen
	}
	fromNone := reach(job.None)
	for _, s := range job.Statuses {
		require.True(t, fromNone[s], "%s unreachable from a submission", s)
		if s.Active() {
			r := reach(s)
			require.True(t, r[job.Succeeded] && r[job.Failed] && r[job.Cancelled], "%s cannot reach every terminal state", s)
		}
	}
}

func TestStatus(t *testing.T) {
	t.Parallel()
	for _, s := range job.Statuses {
		require.True(t, s.Valid())
		require.NotEqual(t, s.Active(), s.Terminal(), "%s", s)
		p, err := job.ParseStatus(string(s))
		require.NoError(t, err)
		require.Equal(t, s, p)
	}
	p, err := job.ParseStatus("queued")
	require.NoError(t, err)
	require.Equal(t, job.Queued, p)
	_, err = job.ParseStatus("DONE")
	require.ErrorContains(t, err, "unknown status")
	require.False(t, job.None.Valid())
}

func newJob(t *testing.T, sub job.Submission) *job.Job {
	t.Helper()
	require.NoError(t, sub.Validate(job.DefaultLimits, t0))
	return policy.New(&sub, job.DefaultLimits, job.NewID(t0), t0)
}

// apply checks c against j as a store would, applies it and returns the
// new record.
func apply(t *testing.T, j *job.Job, c job.Change) *job.Job {
	t.Helper()
	require.NoError(t, c.Validate())
	require.Equal(t, j.ID, c.ID)
	require.True(t, c.If.Holds(j), "condition %+v does not hold for %+v", c.If, j)
	n := j.Clone()
	c.Set.Apply(n)
	require.Equal(t, c.To(), n.Status)
	require.Equal(t, j.Rev+1, n.Rev)
	checkShape(t, n)
	return n
}

// checkShape checks what must hold of every stored record.
func checkShape(t *testing.T, j *job.Job) {
	t.Helper()
	switch {
	case j.Status == job.Running:
		require.NotEmpty(t, j.Owner)
		require.False(t, j.LeaseUntil.IsZero())
		require.False(t, j.DueAt.After(j.LeaseUntil))
	case j.Status.Terminal():
		require.Empty(t, j.Owner)
		require.True(t, j.DueAt.IsZero())
		require.False(t, j.FinishedAt.IsZero())
		require.True(t, j.ExpiresAt.After(j.FinishedAt))
	default:
		require.Empty(t, j.Owner)
		require.False(t, j.DueAt.IsZero())
	}
	require.LessOrEqual(t, len(j.History), job.MaxHistory)
	require.LessOrEqual(t, j.Failures, j.MaxAttempts)
}

func start(t *testing.T, j *job.Job, owner string, now time.Time) *job.Job {
	t.Helper()
	return apply(t, j, policy.Start(job.Message{ID: j.ID, Attempt: j.Attempt}, owner, now))
}

func TestNewJob(t *testing.T) {
	t.Parallel()
	j := newJob(t, job.Submission{Type: "echo", Payload: json.RawMessage(` {"a": 1} `)})
	require.Equal(t, job.Queued, j.Status)
	require.Equal(t, `{"a":1}`, string(j.Payload), "payload is compacted")
	require.Equal(t, 0, j.Attempt)
	require.Equal(t, int64(1), j.Rev)
	require.Equal(t, job.DefaultLimits.DefaultMaxAttempts, j.MaxAttempts)
	require.Equal(t, job.Duration(job.DefaultLimits.DefaultTimeout), j.Timeout)
	require.Equal(t, t0, j.RunAt)
	require.Equal(t, t0.Add(policy.ResendAfter), j.ResendAt)
	require.Equal(t, j.ResendAt, j.DueAt)
	require.Zero(t, job.MessageDelay(j, t0))
	checkShape(t, j)

	d := newJob(t, job.Submission{Type: "echo", Delay: job.Duration(10 * time.Minute)})
	require.Equal(t, job.Queued, d.Status, "a delay the queue can hold stays QUEUED")
	require.Equal(t, 10*time.Minute, job.MessageDelay(d, t0))
	require.Equal(t, t0.Add(10*time.Minute+policy.ResendAfter), d.DueAt)

	runAt := t0.Add(2 * time.Hour)
	s := newJob(t, job.Submission{Type: "echo", RunAt: &runAt})
	require.Equal(t, job.Scheduled, s.Status)
	require.Equal(t, runAt.Add(-policy.PromoteLead), s.DueAt)
	checkShape(t, s)

	// The reaper promotes it a little ahead, with a message delay for the rest.
	now := s.DueAt.Add(time.Second)
	q := apply(t, s, policy.Promote(s, now))
	require.Equal(t, job.Queued, q.Status)
	require.Equal(t, runAt.Sub(now), job.MessageDelay(q, now))
	require.Equal(t, runAt.Add(policy.ResendAfter), q.DueAt)
}

func TestLifecycleSuccess(t *testing.T) {
	t.Parallel()
	j := newJob(t, job.Submission{Type: "echo", Key: "k1"})
	r := start(t, j, "w1", t0.Add(time.Second))
	require.Equal(t, 1, r.Attempt)
	require.Equal(t, "w1", r.Owner)
	require.Equal(t, t0.Add(time.Second+policy.Lease), r.LeaseUntil)
	require.Equal(t, []job.Attempt{{Attempt: 1, Owner: "w1", StartedAt: t0.Add(time.Second)}}, r.History)

	// A second start from the same message loses: the job is no longer QUEUED.
	require.False(t, policy.Start(job.Message{ID: j.ID, Attempt: 0}, "w2", t0).If.Holds(r))

	renew := policy.Renew(r, t0.Add(10*time.Second), json.RawMessage(`{"done":1}`))
	r2 := apply(t, r, renew)
	require.Equal(t, `{"done":1}`, string(r2.Progress))
	require.Equal(t, t0.Add(10*time.Second+policy.Lease), r2.LeaseUntil)

	fin := policy.Finish(r2, t0.Add(11*time.Second), job.End{Outcome: job.OutcomeSucceeded, Result: json.RawMessage(`"ok"`)})
	require.True(t, fin.Releases(), "a finished keyed job releases its key")
	done := apply(t, r2, fin)
	require.Equal(t, job.Succeeded, done.Status)
	require.Equal(t, `"ok"`, string(done.Result))
	require.Equal(t, 0, done.Failures)
	require.Equal(t, job.OutcomeSucceeded, done.History[0].Outcome)
	require.Equal(t, t0.Add(11*time.Second+policy.Retention), done.ExpiresAt)

	// Terminal is final: nothing applies any more.
	for _, c := range []job.Change{
		policy.Finish(r2, t0, job.End{Outcome: job.OutcomeFailed}),
		policy.Renew(r2, t0, nil),
		policy.Reclaim(r2, t0, job.End{Outcome: job.OutcomeTaskStopped}),
	} {
		require.False(t, c.If.Holds(done), "%s applied to a terminal job", c.Event)
	}
	_, ok := policy.RequestCancel(done, t0)
	require.False(t, ok)
}

func TestRenewDueAtDeadline(t *testing.T) {
	t.Parallel()
	j := newJob(t, job.Submission{Type: "echo", Timeout: job.Duration(20 * time.Second)})
	r := start(t, j, "w1", t0)
	r2 := apply(t, r, policy.Renew(r, t0.Add(10*time.Second), nil))
	require.Equal(t, t0.Add(20*time.Second), r2.DueAt, "due at the deadline when it comes before the lease")
	require.Nil(t, r2.Progress)
}

func TestRetryBackoffAndExhaustion(t *testing.T) {
	t.Parallel()
	j := newJob(t, job.Submission{Type: "echo", MaxAttempts: 3})
	now := t0
	for i := 1; i <= 3; i++ {
		r := start(t, j, "w", now)
		require.Equal(t, i, r.Attempt)
		j = apply(t, r, policy.Finish(r, now, job.End{Outcome: job.OutcomeFailed, Reason: "boom", Delay: time.Minute}))
		require.Equal(t, i, j.Failures)
		if i < 3 {
			require.Equal(t, job.Queued, j.Status)
			require.Equal(t, now.Add(time.Minute), j.RunAt)
			require.Equal(t, time.Minute, job.MessageDelay(j, now))
			require.Contains(t, j.Error, "boom")
		}
		now = now.Add(time.Minute)
	}
	require.Equal(t, job.Failed, j.Status)
	require.Contains(t, j.Error, "attempts exhausted (3 of 3 failed)")
	require.Len(t, j.History, 3)
}

func TestLongRetryGoesThroughScheduled(t *testing.T) {
	t.Parallel()
	j := newJob(t, job.Submission{Type: "echo"})
	r := start(t, j, "w", t0)
	s := apply(t, r, policy.Finish(r, t0, job.End{Outcome: job.OutcomeFailed, Delay: time.Hour}))
	require.Equal(t, job.Scheduled, s.Status)
	require.Equal(t, t0.Add(time.Hour), s.RunAt)
	sn := apply(t, r, policy.Finish(r, t0, job.End{Outcome: job.OutcomeSnoozed, Delay: 2 * time.Hour}))
	require.Equal(t, job.Scheduled, sn.Status)
	require.Equal(t, 0, sn.Failures, "a snooze spends no attempt")
}

func TestNonFailuresSpendNoAttempt(t *testing.T) {
	t.Parallel()
	j := newJob(t, job.Submission{Type: "echo", MaxAttempts: 1})
	now := t0
	for _, o := range []job.Outcome{job.OutcomeHandedBack, job.OutcomeInterrupted, job.OutcomeSnoozed} {
		r := start(t, j, "w", now)
		j = apply(t, r, policy.Finish(r, now, job.End{Outcome: o, Delay: time.Second}))
		require.Equal(t, job.Queued, j.Status, "%s", o)
		require.Equal(t, 0, j.Failures, "%s", o)
		require.Equal(t, o, j.History[len(j.History)-1].Outcome)
		if o != job.OutcomeSnoozed {
			require.Zero(t, job.MessageDelay(j, now), "%s runs again at once", o)
		}
		now = now.Add(time.Minute)
	}
	require.Equal(t, 3, j.Attempt, "the fencing token still grew")
	// One real failure exhausts the single attempt.
	r := start(t, j, "w", now)
	f := apply(t, r, policy.Finish(r, now, job.End{Outcome: job.OutcomeFailed}))
	require.Equal(t, job.Failed, f.Status)
}

func TestPermanentFailsAtOnce(t *testing.T) {
	t.Parallel()
	j := newJob(t, job.Submission{Type: "echo", MaxAttempts: 10})
	r := start(t, j, "w", t0)
	f := apply(t, r, policy.Finish(r, t0, job.End{Outcome: job.OutcomePermanent, Reason: "bad input"}))
	require.Equal(t, job.Failed, f.Status)
	require.Equal(t, "bad input", f.Error)
}

func TestTakeoverFencesOldOwner(t *testing.T) {
	t.Parallel()
	j := newJob(t, job.Submission{Type: "echo", Key: "k"})
	r := start(t, j, "w1", t0)
	before := r.LeaseUntil
	require.False(t, job.CanTakeover(r, before), "lease still live at its last instant")
	require.False(t, policy.Takeover(r, "w2", before).If.Holds(r))
	now := before.Add(time.Millisecond)
	require.True(t, job.CanTakeover(r, now))
	tk := policy.Takeover(r, "w2", now)
	require.False(t, tk.Releases())
	r2 := apply(t, r, tk)
	require.Equal(t, 2, r2.Attempt)
	require.Equal(t, 1, r2.Failures)
	require.Equal(t, "w2", r2.Owner)
	require.Equal(t, job.OutcomeLeaseExpired, r2.History[0].Outcome)
	require.Equal(t, "w2", r2.History[1].Owner)

	// The old owner's writes all fail now.
	for _, c := range []job.Change{
		policy.Renew(r, now, nil),
		policy.Finish(r, now, job.End{Outcome: job.OutcomeSucceeded}),
		policy.Takeover(r, "w3", now.Add(time.Hour)),
	} {
		require.False(t, c.If.Holds(r2), "stale %s holds", c.Event)
	}
}

func TestTakeoverNotWhenExhaustedOrCancelled(t *testing.T) {
	t.Parallel()
	j := newJob(t, job.Submission{Type: "echo", MaxAttempts: 1})
	r := start(t, j, "w1", t0)
	late := r.LeaseUntil.Add(time.Second)
	require.False(t, job.CanTakeover(r, late), "a failure more would exhaust the job")
	f := apply(t, r, policy.Reclaim(r, late, job.End{Outcome: job.OutcomeLeaseExpired, Reason: "lease expired"}))
	require.Equal(t, job.Failed, f.Status)

	j2 := newJob(t, job.Submission{Type: "echo"})
	r2 := start(t, j2, "w1", t0)
	c, ok := policy.RequestCancel(r2, t0)
	require.True(t, ok)
	r3 := apply(t, r2, c)
	require.True(t, r3.CancelRequested)
	require.False(t, job.CanTakeover(r3, late))
	cancelled := apply(t, r3, policy.Reclaim(r3, late, job.End{Outcome: job.OutcomeLeaseExpired}))
	require.Equal(t, job.Cancelled, cancelled.Status)
}

func TestReclaim(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		outcome  job.Outcome
		failures int
		leaseOK  bool // the write needs the lease to have expired
	}{
		{"lease expired", job.OutcomeLeaseExpired, 1, true},
		{"task stopped", job.OutcomeTaskStopped, 1, false},
		{"spot interruption", job.OutcomeInterrupted, 0, false},
		{"timeout", job.OutcomeTimeout, 1, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			j := newJob(t, job.Submission{Type: "echo"})
			r := start(t, j, "w1", t0)
			live := t0.Add(time.Second)
			c := policy.Reclaim(r, live, job.End{Outcome: tc.outcome, Reason: tc.name})
			require.Equal(t, !tc.leaseOK, c.If.Holds(r), "holds while the lease is live")
			if tc.leaseOK {
				c = policy.Reclaim(r, r.LeaseUntil.Add(time.Second), job.End{Outcome: tc.outcome})
			}
			q := apply(t, r, c)
			require.Equal(t, job.Queued, q.Status)
			require.Equal(t, tc.failures, q.Failures)
			// Reclaim is fenced on the revision read: a second reaper with
			// the same read loses.
			require.False(t, c.If.Holds(q))
		})
	}
}

func TestDeadLetterExpireCancelQueued(t *testing.T) {
	t.Parallel()
	j := newJob(t, job.Submission{Type: "echo", Key: "k"})
	dl := policy.DeadLetter(j, t0, "received 5 times")
	require.True(t, dl.Releases())
	f := apply(t, j, dl)
	require.Equal(t, job.Failed, f.Status)
	require.Equal(t, "received 5 times", f.Error)

	e := apply(t, j, policy.Expire(j, t0, "provisioner: no capacity"))
	require.Equal(t, job.Failed, e.Status)
	require.Equal(t, "provisioner: no capacity", e.Error)

	c, ok := policy.RequestCancel(j, t0)
	require.True(t, ok)
	x := apply(t, j, c)
	require.Equal(t, job.Cancelled, x.Status)

	n := apply(t, j, policy.Note(j, t0, "waiting for capacity: RESOURCE:ENI"))
	require.Equal(t, "waiting for capacity: RESOURCE:ENI", n.Detail)
	// A note is fenced on the attempt only, so it never blocks progress.
	require.True(t, policy.Note(j, t0, "x").If.Holds(n))
}

func TestResendBacksOff(t *testing.T) {
	t.Parallel()
	j := newJob(t, job.Submission{Type: "echo"})
	now := j.DueAt
	var gaps []time.Duration
	for i := 0; i < 10; i++ {
		n := apply(t, j, policy.Resend(j, now))
		require.Equal(t, i+1, n.Resends)
		gaps = append(gaps, n.DueAt.Sub(now))
		require.False(t, policy.Resend(j, now).If.Holds(n), "two reapers resend once")
		j, now = n, n.DueAt
	}
	require.Equal(t, 2*policy.ResendAfter, gaps[0])
	require.Equal(t, 4*policy.ResendAfter, gaps[1])
	require.Equal(t, policy.MaxResendInterval, gaps[9])
}

// A redrive brings the resend deadline forward: at once the first time,
// then held back as long as the resend interval it follows.
func TestRedriveBringsTheResendForward(t *testing.T) {
	t.Parallel()
	j := newJob(t, job.Submission{Type: "echo"})
	now := j.RunAt.Add(10 * time.Second)
	r := apply(t, j, policy.Redrive(j, now, "dead-lettered"))
	require.Equal(t, job.Queued, r.Status)
	require.Equal(t, now, r.ResendAt, "due at once")
	require.Equal(t, now, r.DueAt)
	require.Equal(t, "dead-lettered", r.Detail)
	require.Equal(t, 1, r.DeadLetters)
	require.Equal(t, 0, r.Resends, "the resend sweep counts the send")
	require.False(t, policy.Redrive(j, now, "x").If.Holds(r), "fenced on the revision read")

	s := apply(t, r, policy.Resend(r, now))
	s = apply(t, s, policy.Resend(s, now))
	later := now.Add(time.Minute)
	r2 := apply(t, s, policy.Redrive(s, later, "again"))
	require.Equal(t, later.Add(2*policy.ResendAfter), r2.ResendAt, "after two resends: the second's interval")
	require.Equal(t, 2, r2.DeadLetters)
	r3 := apply(t, r2, policy.Redrive(r2, later.Add(time.Hour), "x"))
	require.Equal(t, r2.ResendAt, r3.ResendAt, "never later than the deadline already set")
	require.Zero(t, start(t, r3, "w", later).DeadLetters, "a start restarts the count")

	delayed := newJob(t, job.Submission{Type: "echo", Delay: job.Duration(time.Minute)})
	d := apply(t, delayed, policy.Redrive(delayed, t0, "x"))
	require.Equal(t, delayed.RunAt, d.ResendAt, "not before run_at")
}

func TestHistoryBounded(t *testing.T) {
	t.Parallel()
	j := newJob(t, job.Submission{Type: "echo", MaxAttempts: 100})
	for i := 0; i < 3*job.MaxHistory; i++ {
		r := start(t, j, fmt.Sprintf("w%d", i), t0)
		j = apply(t, r, policy.Finish(r, t0, job.End{Outcome: job.OutcomeHandedBack}))
	}
	require.Len(t, j.History, job.MaxHistory)
	require.Equal(t, 2*job.MaxHistory+1, j.History[0].Attempt, "keeps the newest")
	require.Equal(t, 3*job.MaxHistory, j.History[job.MaxHistory-1].Attempt)
	for i := 1; i < len(j.History); i++ {
		require.Less(t, j.History[i-1].Attempt, j.History[i].Attempt)
	}
}

func TestChangeValidate(t *testing.T) {
	t.Parallel()
	j := newJob(t, job.Submission{Type: "echo"})
	c := policy.Start(job.Message{ID: j.ID}, "w", t0)
	require.NoError(t, c.Validate())

	bad := c
	bad.Event = job.EventCancel
	require.ErrorContains(t, bad.Validate(), "not a legal transition")

	bad = c
	bad.ID = "nope"
	require.ErrorContains(t, bad.Validate(), "invalid job id")

	fromTerminal := job.Change{ID: j.ID, Event: job.EventFinish, If: job.Cond{Status: job.Succeeded}}
	fromTerminal.Set.Fields = job.FieldStatus
	fromTerminal.Set.Values.Status = job.Queued
	require.Error(t, fromTerminal.Validate())
}

func TestFieldNames(t *testing.T) {
	t.Parallel()
	seen := map[string]bool{}
	for _, f := range job.AllFields {
		n := f.String()
		require.NotContains(t, n, "field(", "field %#x has no name", uint32(f))
		require.False(t, seen[n])
		seen[n] = true
	}
}

func TestPolicyValidate(t *testing.T) {
	t.Parallel()
	require.NoError(t, job.DefaultPolicy.Validate())
	p := job.DefaultPolicy
	p.PromoteLead = time.Hour
	require.Error(t, p.Validate())
	p = job.DefaultPolicy
	p.Lease = 0
	require.Error(t, p.Validate())
}
