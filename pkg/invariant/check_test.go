package invariant_test

import (
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/jobfleet/jobfleet/pkg/clock"
	"github.com/jobfleet/jobfleet/pkg/invariant"
	"github.com/jobfleet/jobfleet/pkg/job"
)

var t0 = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

// hist builds a history by hand on a fake clock.
type hist struct {
	clk *clock.Fake
	rec *invariant.Recorder
}

func newHist() *hist {
	clk := clock.NewFake(t0)
	return &hist{clk: clk, rec: invariant.NewRecorder(clk)}
}

func (h *hist) add(e invariant.Event) *hist { h.rec.Record(e); return h }

func (h *hist) after(d time.Duration) *hist { h.clk.Advance(d); return h }

func (h *hist) up(owner string) *hist {
	return h.add(invariant.Event{Kind: invariant.WorkerUp, Owner: owner})
}

func (h *hist) down(owner string) *hist {
	return h.add(invariant.Event{Kind: invariant.WorkerDown, Owner: owner})
}

// submit records a job created and acknowledged.
func (h *hist) submit(id, key string) *hist {
	h.add(invariant.Event{Kind: invariant.Created, Job: id, Key: key, Status: job.Queued})
	return h.add(invariant.Event{Kind: invariant.Submitted, Job: id, Key: key})
}

func (h *hist) write(id string, ev job.Event, attempt int, owner string, to job.Status) *hist {
	return h.add(invariant.Event{Kind: invariant.Write, Job: id, Event: ev, Attempt: attempt, Owner: owner, Accepted: true, Status: to})
}

func (h *hist) refused(id string, ev job.Event, attempt int, owner string, found job.Status) *hist {
	return h.add(invariant.Event{Kind: invariant.Write, Job: id, Event: ev, Attempt: attempt, Owner: owner, Status: found})
}

// start records the start of attempt (fenced on attempt-1) by owner.
func (h *hist) start(id string, attempt int, owner string) *hist {
	return h.write(id, job.EventStart, attempt-1, owner, job.Running)
}

func (h *hist) succeed(id string, attempt int, owner, result string) *hist {
	return h.add(invariant.Event{Kind: invariant.Write, Job: id, Event: job.EventFinish, Attempt: attempt, Owner: owner,
		Accepted: true, Status: job.Succeeded, Result: invariant.Digest([]byte(result), "")})
}

func (h *hist) executed(id string, attempt int, owner string) *hist {
	return h.add(invariant.Event{Kind: invariant.Executed, Job: id, Attempt: attempt, Owner: owner, Outcome: job.OutcomeSucceeded})
}

func (h *hist) check() invariant.Report {
	return invariant.Check(h.rec.History(), h.clk.Now())
}

const (
	j1 = "01HZZZZZZZZZZZZZZZZZZZZZZ1"
	j2 = "01HZZZZZZZZZZZZZZZZZZZZZZ2"
	j3 = "01HZZZZZZZZZZZZZZZZZZZZZZ3"
)

// requireOnly requires the report to hold exactly n violations, all of rule.
func requireOnly(t *testing.T, rep invariant.Report, rule invariant.Rule, n int) {
	t.Helper()
	require.Len(t, rep.Violations, n, "%s", rep.String())
	require.Equal(t, n, rep.Count(rule), "%s", rep.String())
	require.Error(t, rep.Err())
	require.Contains(t, rep.Err().Error(), string(rule))
	require.Contains(t, rep.String(), string(rule))
}

func TestCleanRun(t *testing.T) {
	t.Parallel()
	h := newHist().up("w1").submit(j1, "k").submit(j2, "").
		start(j1, 1, "w1").write(j1, job.EventRenew, 1, "w1", job.Running).
		executed(j1, 1, "w1").succeed(j1, 1, "w1", `"ok"`).
		start(j2, 1, "w1").write(j2, job.EventFinish, 1, "w1", job.Queued). // a retry
		refused(j2, job.EventRenew, 1, "w1", job.Queued).                   // a late heartbeat loses
		start(j2, 2, "w1").write(j2, job.EventFinish, 2, "w1", job.Failed).
		add(invariant.Event{Kind: invariant.Observed, Job: j1, Status: job.Succeeded, Result: invariant.Digest([]byte(`"ok"`), "")}).
		add(invariant.Event{Kind: invariant.Observed, Job: j2, Status: job.Failed}).
		submit(j3, "k") // the key is free again
	h.add(invariant.Event{Kind: invariant.Write, Job: j3, Event: job.EventCancel, Accepted: true, Status: job.Cancelled})
	rep := h.check()
	require.NoError(t, rep.Err(), rep.String())
	require.Empty(t, rep.Violations)
	require.Equal(t, 3, rep.Jobs)
	require.Equal(t, 3, rep.Terminal)
	require.Equal(t, 3, rep.Attempts)
	require.Equal(t, 1, rep.Refused)
	require.Equal(t, 1, rep.Executions)
	require.Zero(t, rep.DuplicateExecutions)
	require.Contains(t, rep.String(), "no violations")
}

func TestLost(t *testing.T) {
	t.Parallel()
	t.Run("NeverStarted", func(t *testing.T) {
		t.Parallel()
		rep := newHist().up("w1").submit(j1, "").submit(j2, "").start(j2, 1, "w1").succeed(j2, 1, "w1", "1").check()
		requireOnly(t, rep, invariant.Lost, 1)
		require.Equal(t, j1, rep.Violations[0].Job)
		require.Contains(t, rep.Violations[0].Detail, "QUEUED")
	})
	t.Run("StuckRunning", func(t *testing.T) {
		t.Parallel()
		rep := newHist().up("w1").submit(j1, "").start(j1, 1, "w1").check()
		requireOnly(t, rep, invariant.Lost, 1)
		require.Contains(t, rep.Violations[0].Detail, "RUNNING")
	})
	t.Run("NoWorkerAtTheEnd", func(t *testing.T) {
		t.Parallel()
		rep := newHist().up("w1").submit(j1, "").down("w1").check()
		require.NoError(t, rep.Err(), rep.String())
		require.Equal(t, 1, rep.Pending)
	})
	t.Run("NotDueYet", func(t *testing.T) {
		t.Parallel()
		h := newHist().up("w1")
		h.add(invariant.Event{Kind: invariant.Submitted, Job: j1, RunAt: t0.Add(time.Hour)})
		rep := h.check()
		require.NoError(t, rep.Err(), rep.String())
	})
	t.Run("TerminalByObservationOnly", func(t *testing.T) {
		t.Parallel()
		h := newHist().up("w1")
		h.add(invariant.Event{Kind: invariant.Submitted, Job: j1})
		h.add(invariant.Event{Kind: invariant.Observed, Job: j1, Status: job.Queued})
		requireOnly(t, h.check(), invariant.Lost, 1)
		h.add(invariant.Event{Kind: invariant.Observed, Job: j1, Status: job.Succeeded})
		rep := h.check()
		require.NoError(t, rep.Err(), rep.String())
		require.Equal(t, 1, rep.Terminal)
	})
	t.Run("UnacknowledgedIsNotLost", func(t *testing.T) {
		t.Parallel()
		// Stored, but the producer was told it failed: not a promise.
		h := newHist().up("w1")
		h.add(invariant.Event{Kind: invariant.Created, Job: j1, Status: job.Queued})
		rep := h.check()
		require.NoError(t, rep.Err(), rep.String())
		require.Equal(t, 1, rep.Created)
		require.Zero(t, rep.Jobs)
	})
}

func TestFencing(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name  string
		build func(h *hist)
		want  string
	}{
		{"StaleFinish", func(h *hist) {
			h.start(j1, 1, "w1").write(j1, job.EventTakeover, 1, "w2", job.Running).
				write(j1, job.EventFinish, 1, "w1", job.Succeeded)
		}, "fenced on attempt 1 accepted after attempt 2"},
		{"StaleRenew", func(h *hist) {
			h.start(j1, 1, "w1").write(j1, job.EventTakeover, 1, "w2", job.Running).
				write(j1, job.EventRenew, 1, "w1", job.Running)
		}, "renew"},
		{"StaleReclaim", func(h *hist) {
			h.start(j1, 1, "w1").write(j1, job.EventFinish, 1, "w1", job.Queued).start(j1, 2, "w2").
				write(j1, job.EventReclaim, 1, "", job.Queued)
		}, "reclaim"},
		{"WrongOwner", func(h *hist) {
			h.start(j1, 1, "w1").write(j1, job.EventFinish, 1, "w2", job.Succeeded)
		}, "which w1 started"},
		{"AttemptStartedTwice", func(h *hist) {
			h.start(j1, 1, "w1").start(j1, 1, "w2")
		}, "attempt 1 started twice"},
		{"StaleStart", func(h *hist) {
			h.start(j1, 1, "w1").start(j1, 2, "w1").write(j1, job.EventFinish, 2, "w1", job.Queued).
				start(j1, 1, "w3")
		}, "start fenced on attempt 0"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			h := newHist().up("w1").submit(j1, "")
			c.build(h)
			rep := h.check()
			require.NotZero(t, rep.Count(invariant.Fencing), rep.String())
			require.Contains(t, rep.String(), c.want)
			for _, v := range rep.Violations {
				require.Contains(t, []invariant.Rule{invariant.Fencing, invariant.Lost}, v.Rule, "%s", v)
			}
		})
	}

	t.Run("DuplicateStartEventIsNotAViolation", func(t *testing.T) {
		t.Parallel()
		h := newHist().up("w1").submit(j1, "").start(j1, 1, "w1")
		h.add(invariant.Event{Kind: invariant.Started, Job: j1, Attempt: 1, Owner: "w1"})
		h.succeed(j1, 1, "w1", "")
		rep := h.check()
		require.NoError(t, rep.Err(), rep.String())
		require.Equal(t, 1, rep.Attempts)
	})
}

func TestDoubleTerminal(t *testing.T) {
	t.Parallel()
	rep := newHist().up("w1").submit(j1, "").start(j1, 1, "w1").
		succeed(j1, 1, "w1", "a").
		add(invariant.Event{Kind: invariant.Write, Job: j1, Event: job.EventFinish, Attempt: 1, Owner: "w1", Accepted: true, Status: job.Failed}).
		check()
	require.Equal(t, 1, rep.Count(invariant.DoubleTerminal), rep.String())
	// The second write also changed a terminal job.
	require.Equal(t, 1, rep.Count(invariant.TerminalChanged), rep.String())
	require.Len(t, rep.Violations, 2)
	require.Contains(t, rep.Err().Error(), "1 double terminal")
}

func TestTerminalChanged(t *testing.T) {
	t.Parallel()
	t.Run("WriteAfterTerminal", func(t *testing.T) {
		t.Parallel()
		rep := newHist().up("w1").submit(j1, "").start(j1, 1, "w1").succeed(j1, 1, "w1", "r").
			write(j1, job.EventRenew, 1, "w1", job.Running).check()
		require.Equal(t, 1, rep.Count(invariant.TerminalChanged), rep.String())
	})
	t.Run("ReadOtherStatus", func(t *testing.T) {
		t.Parallel()
		rep := newHist().up("w1").submit(j1, "").start(j1, 1, "w1").succeed(j1, 1, "w1", "r").
			add(invariant.Event{Kind: invariant.Observed, Job: j1, Status: job.Queued}).check()
		requireOnly(t, rep, invariant.TerminalChanged, 1)
		require.Contains(t, rep.Violations[0].Detail, "read as QUEUED")
	})
	t.Run("ResultNotReadable", func(t *testing.T) {
		t.Parallel()
		rep := newHist().up("w1").submit(j1, "").start(j1, 1, "w1").succeed(j1, 1, "w1", "r").
			add(invariant.Event{Kind: invariant.Observed, Job: j1, Status: job.Succeeded, Result: invariant.Digest(nil, "")}).check()
		requireOnly(t, rep, invariant.TerminalChanged, 1)
		require.Contains(t, rep.Violations[0].Detail, "result")
	})
	t.Run("ObservedTwiceDifferently", func(t *testing.T) {
		t.Parallel()
		h := newHist().up("w1")
		h.add(invariant.Event{Kind: invariant.Submitted, Job: j1})
		h.add(invariant.Event{Kind: invariant.Observed, Job: j1, Status: job.Failed})
		h.add(invariant.Event{Kind: invariant.Observed, Job: j1, Status: job.Succeeded})
		requireOnly(t, h.check(), invariant.TerminalChanged, 1)
	})
}

func TestDedup(t *testing.T) {
	t.Parallel()
	t.Run("TwoActive", func(t *testing.T) {
		t.Parallel()
		rep := newHist().up("w1").submit(j1, "k").submit(j2, "k").
			start(j1, 1, "w1").succeed(j1, 1, "w1", "").start(j2, 1, "w1").succeed(j2, 1, "w1", "").check()
		requireOnly(t, rep, invariant.Dedup, 1)
		require.Equal(t, j2, rep.Violations[0].Job)
		require.Contains(t, rep.Violations[0].Detail, j1)
	})
	t.Run("ReleasedByTerminal", func(t *testing.T) {
		t.Parallel()
		rep := newHist().up("w1").submit(j1, "k").start(j1, 1, "w1").
			write(j1, job.EventFinish, 1, "w1", job.Failed).submit(j2, "k").
			start(j2, 1, "w1").succeed(j2, 1, "w1", "").check()
		require.NoError(t, rep.Err(), rep.String())
	})
	t.Run("DeduplicatedAnswerIsTheHolder", func(t *testing.T) {
		t.Parallel()
		h := newHist().up("w1").submit(j1, "k")
		h.add(invariant.Event{Kind: invariant.Submitted, Job: j1, Key: "k"}) // a second producer, answered with j1
		h.start(j1, 1, "w1").succeed(j1, 1, "w1", "")
		rep := h.check()
		require.NoError(t, rep.Err(), rep.String())
		require.Equal(t, 1, rep.Jobs)
	})
	t.Run("OtherKeys", func(t *testing.T) {
		t.Parallel()
		rep := newHist().up("w1").submit(j1, "k").submit(j2, "K").submit(j3, "").
			write(j1, job.EventCancel, 0, "", job.Cancelled).write(j2, job.EventCancel, 0, "", job.Cancelled).
			write(j3, job.EventCancel, 0, "", job.Cancelled).check()
		require.NoError(t, rep.Err(), rep.String())
	})
}

func TestUnanswered(t *testing.T) {
	t.Parallel()
	rep := newHist().up("w1").
		add(invariant.Event{Kind: invariant.Rejected, Reason: "type: is required"}).
		add(invariant.Event{Kind: invariant.Rejected, Reason: " "}).
		add(invariant.Event{Kind: invariant.DeadLetter, Job: j1, Reason: "dead-lettered after 10 receives"}).
		add(invariant.Event{Kind: invariant.DeadLetter}).
		check()
	requireOnly(t, rep, invariant.Unanswered, 2)
	require.Equal(t, 2, rep.Rejected)
	require.Equal(t, 2, rep.DeadLetter)
}

func TestDuplicateExecutions(t *testing.T) {
	t.Parallel()
	h := newHist().up("w1").up("w2").submit(j1, "").submit(j2, "").
		start(j1, 1, "w1").executed(j1, 1, "w1").
		// w1 lost its lease after its handler finished; w2 ran it again.
		write(j1, job.EventTakeover, 1, "w2", job.Running).executed(j1, 2, "w2").executed(j1, 2, "w2").
		succeed(j1, 2, "w2", "").
		start(j2, 1, "w1")
	h.add(invariant.Event{Kind: invariant.Executed, Job: j2, Attempt: 1, Owner: "w1", Outcome: job.OutcomeFailed})
	h.write(j2, job.EventFinish, 1, "w1", job.Queued).start(j2, 2, "w1").executed(j2, 2, "w1").succeed(j2, 2, "w1", "")
	rep := h.check()
	require.NoError(t, rep.Err(), rep.String())
	require.Equal(t, 3, rep.Executions)
	require.Equal(t, 1, rep.DuplicateExecutions, "a failed run and a repeated record are not duplicates")
	require.InDelta(t, 5000, rep.DuplicatesPer10k(), 0.01)
}

func TestRecovery(t *testing.T) {
	t.Parallel()
	h := newHist().up("w1").up("w2").submit(j1, "").submit(j2, "").submit(j3, "").
		start(j1, 1, "w1").start(j2, 1, "w1").start(j3, 1, "w2")
	h.after(time.Second).down("w1")
	h.after(10*time.Second).write(j1, job.EventReclaim, 1, "", job.Queued).start(j1, 2, "w2")
	h.after(20*time.Second).write(j2, job.EventReclaim, 1, "", job.Queued).start(j2, 2, "w2")
	h.succeed(j1, 2, "w2", "").succeed(j2, 2, "w2", "")
	h.down("w2")
	rep := h.check()
	require.Equal(t, 2, rep.Recovery.Samples)
	require.Equal(t, 10*time.Second, rep.Recovery.P50)
	require.Equal(t, 30*time.Second, rep.Recovery.P99)
	require.Equal(t, 30*time.Second, rep.Recovery.Max)
	require.Equal(t, 1, rep.Recovery.Waiting, "j3's owner died with it running")
	// j3 is stuck RUNNING, but no worker is left: pending, not lost.
	require.NoError(t, rep.Err(), rep.String())
	require.Equal(t, 1, rep.Pending)

	h.up("w3").write(j3, job.EventReclaim, 1, "", job.Failed)
	rep = h.check()
	require.NoError(t, rep.Err(), rep.String())
	require.Equal(t, 1, rep.Recovery.Settled)
	require.Zero(t, rep.Recovery.Waiting)
}

func TestRecorderConcurrent(t *testing.T) {
	t.Parallel()
	rec := invariant.NewRecorder(nil)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 50 {
				rec.Record(invariant.Event{Kind: invariant.Executed, Job: j1, Attempt: g*100 + i})
			}
		})
	}
	wg.Wait()
	h := rec.History()
	require.Len(t, h, 400)
	require.Equal(t, 400, rec.Len())
	for i, e := range h {
		require.Equal(t, int64(i+1), e.Seq)
		require.False(t, e.Time.IsZero())
	}
	// The copy is the caller's.
	h[0].Job = "changed"
	require.Equal(t, j1, rec.History()[0].Job)
}

func TestCheckIsPure(t *testing.T) {
	t.Parallel()
	h := newHist().up("w1").submit(j1, "k").submit(j2, "k")
	hist := h.rec.History()
	// Check orders by Seq, whatever order it is given.
	rev := append(invariant.History(nil), hist...)
	for i, j := 0, len(rev)-1; i < j; i, j = i+1, j-1 {
		rev[i], rev[j] = rev[j], rev[i]
	}
	a := invariant.Check(hist, h.clk.Now())
	b := invariant.Check(rev, h.clk.Now())
	require.Equal(t, a.String(), b.String())
	require.Equal(t, hist, h.rec.History(), "Check leaves its input alone")
	require.Equal(t, 1, a.Count(invariant.Dedup))
	require.Equal(t, 2, a.Count(invariant.Lost))
	require.True(t, strings.HasPrefix(a.Err().Error(), "invariants broken: 2 lost, 1 dedup"), a.Err().Error())
}
