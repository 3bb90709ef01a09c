package storetest

import (
	"fmt"
	"slices"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/jobfleet/jobfleet/pkg/clock"
	"github.com/jobfleet/jobfleet/pkg/errcode"
	"github.com/jobfleet/jobfleet/pkg/job"
	"github.com/jobfleet/jobfleet/pkg/jobstore"
)

// dueIs requires Due(status, before, limit) to return want, in order.
func (f *fx) dueIs(status job.Status, before time.Time, limit int, want ...*job.Job) {
	f.t.Helper()
	f.settled(func() error {
		got, err := f.s.Due(f.ctx, status, before, limit)
		if err != nil {
			return err
		}
		return sameIDs(fmt.Sprintf("due %s before %s limit %d", status, before.Sub(base), limit), idsOf(want...), got)
	})
}

func testDue(f *fx) {
	t := f.t
	t0 := f.now
	far := t0.Add(24 * time.Hour)
	// Queued jobs are due at their resend deadline; created out of order.
	q2 := f.newJobAt(job.Submission{}, t0.Add(2*time.Second))
	q0 := f.newJobAt(job.Submission{}, t0)
	q1 := f.newJobAt(job.Submission{}, t0.Add(time.Second))
	sch := f.newJobAt(job.Submission{Delay: job.Duration(2 * time.Hour)}, t0)
	f.create(q2, q0, q1, sch)
	require.Equal(t, job.Scheduled, sch.Status)
	r := f.start(f.submit(job.Submission{}), "w")
	f.finish(f.start(f.submit(job.Submission{}), "w"), job.End{Outcome: job.OutcomeSucceeded})

	f.dueIs(job.Queued, far, 100, q0, q1, q2)
	f.dueIs(job.Queued, far, 2, q0, q1)
	f.dueIs(job.Queued, q1.DueAt, 100, q0) // strictly before
	f.dueIs(job.Queued, q1.DueAt.Add(time.Millisecond), 100, q0, q1)
	f.dueIs(job.Queued, t0, 100)
	f.dueIs(job.Scheduled, far, 100, sch)
	f.dueIs(job.Scheduled, sch.DueAt, 100)
	f.dueIs(job.Running, far, 100, r)
	f.dueIs(job.Running, r.DueAt, 100)
	f.dueIs(job.Running, r.DueAt.Add(time.Millisecond), 1, r)
	for _, s := range []job.Status{job.Succeeded, job.Failed, job.Cancelled, job.None, "BOGUS"} {
		_, err := f.s.Due(f.ctx, s, far, 10)
		requireCode(t, errcode.InvalidArgument, err)
	}

	// A status change moves a job from one sweep to another.
	f.advance(3 * time.Second)
	q0r := f.start(f.get(q0.ID), "w")
	f.dueIs(job.Queued, far, 100, q1, q2)
	f.dueIs(job.Running, far, 100, r, q0r)
	f.finish(r, job.End{Outcome: job.OutcomeSucceeded})
	f.dueIs(job.Running, far, 100, q0r)
	// A renewal moves the running job's due time.
	q0r = f.win(q0r, policy.Renew(q0r, f.advance(time.Minute), nil))
	f.dueIs(job.Running, q0r.DueAt, 100)
	f.dueIs(job.Running, q0r.DueAt.Add(time.Millisecond), 100, q0r)
	// A promoted job is due at its resend deadline, after RunAt.
	promoted := f.win(sch, policy.Promote(sch, f.now))
	f.dueIs(job.Scheduled, far, 100)
	f.dueIs(job.Queued, far, 100, q1, q2, promoted)
}

// ownedIs requires Owned(owner) to return exactly want, in any order.
func (f *fx) ownedIs(owner string, want ...*job.Job) {
	f.t.Helper()
	f.settled(func() error {
		got, err := f.s.Owned(f.ctx, owner, 100)
		if err != nil {
			return err
		}
		g, w := ids(got), idsOf(want...)
		slices.Sort(g)
		slices.Sort(w)
		if !slices.Equal(g, w) {
			return fmt.Errorf("owned by %s: got %v, want %v", owner, g, w)
		}
		return nil
	})
}

func testOwned(f *fx) {
	t := f.t
	a := f.start(f.submit(job.Submission{}), "w1")
	b := f.start(f.submit(job.Submission{}), "w1")
	c := f.start(f.submit(job.Submission{}), "w1")
	d := f.start(f.submit(job.Submission{}), "w2")
	f.finish(f.start(f.submit(job.Submission{}), "w1"), job.End{Outcome: job.OutcomeSucceeded})
	f.finish(f.start(f.submit(job.Submission{}), "w1"), job.End{Outcome: job.OutcomeHandedBack})
	// A record that names an owner while queued is not owned.
	stray := f.newJob(job.Submission{})
	stray.Owner = "w1"
	f.create(stray)

	f.ownedIs("w1", a, b, c)
	f.ownedIs("w2", d)
	f.ownedIs("w3")
	f.ownedIs("W1")
	f.settled(func() error {
		got, err := f.s.Owned(f.ctx, "w1", 2)
		if err != nil {
			return err
		}
		if len(got) != 2 {
			return fmt.Errorf("owned with limit 2: got %d jobs", len(got))
		}
		for _, j := range got {
			if !slices.Contains(idsOf(a, b, c), j.ID) || j.Owner != "w1" || j.Status != job.Running {
				return fmt.Errorf("owned with limit 2: unexpected job %+v", j)
			}
		}
		return nil
	})
	_, err := f.s.Owned(f.ctx, "", 10)
	requireCode(t, errcode.InvalidArgument, err)

	f.finish(b, job.End{Outcome: job.OutcomeHandedBack})
	f.advance(policy.Lease + time.Second)
	f.win(c, policy.Takeover(c, "w2", f.now))
	f.ownedIs("w1", a)
	f.ownedIs("w2", d, f.get(c.ID))
}

// listIs requires List(q) to return want, newest first, on one page.
func (f *fx) listIs(q jobstore.ListQuery, want []*job.Job) {
	f.t.Helper()
	f.settled(func() error {
		p, err := f.s.List(f.ctx, q)
		if err != nil {
			return err
		}
		if p.Next != "" {
			return fmt.Errorf("list %+v: a next page after %d of %d jobs", q, len(p.Jobs), len(want))
		}
		return sameIDs(fmt.Sprintf("list %+v", q), newestFirst(want), p.Jobs)
	})
}

func testListFilters(f *fx) {
	t := f.t
	var all []*job.Job
	add := func(j *job.Job) *job.Job {
		all = append(all, j)
		f.advance(time.Millisecond)
		return j
	}
	alpha := job.Submission{Type: "alpha"}
	beta := job.Submission{Type: "beta"}
	add(f.submit(alpha))
	add(f.submit(beta))
	runA := add(f.submit(alpha))
	add(f.submit(alpha))
	runB := add(f.submit(beta))
	doneA := add(f.submit(alpha))
	add(f.submit(job.Submission{Type: "beta", Delay: job.Duration(time.Hour)}))
	failB := add(f.submit(beta))
	f.start(runA, "w")
	f.start(runB, "w")
	f.finish(f.start(doneA, "w"), job.End{Outcome: job.OutcomeSucceeded})
	f.win(failB, policy.DeadLetter(failB, f.now, "dlq"))
	for i, j := range all {
		all[i] = f.get(j.ID)
	}

	filter := func(keep func(*job.Job) bool) []*job.Job {
		var out []*job.Job
		for _, j := range all {
			if keep(j) {
				out = append(out, j)
			}
		}
		return out
	}
	for _, q := range []jobstore.ListQuery{
		{},
		{Status: job.Queued}, {Status: job.Running}, {Status: job.Scheduled},
		{Status: job.Succeeded}, {Status: job.Failed}, {Status: job.Cancelled},
		{Type: "alpha"}, {Type: "beta"}, {Type: "gamma"}, {Type: "alph"},
		{Status: job.Queued, Type: "alpha"}, {Status: job.Running, Type: "beta"},
		{Status: job.Succeeded, Type: "beta"}, {Status: job.Failed, Type: "beta"},
	} {
		f.listIs(q, filter(func(j *job.Job) bool {
			return (q.Status == job.None || j.Status == q.Status) && (q.Type == "" || j.Type == q.Type)
		}))
	}

	// Listed records are whole records.
	p, err := f.s.List(f.ctx, jobstore.ListQuery{Status: job.Running})
	require.NoError(t, err)
	for _, j := range p.Jobs {
		requireJob(t, f.get(j.ID), j)
	}
}

// walk lists every page of q and returns the jobs in order; between pages
// it calls between (if not nil).
func (f *fx) walk(q jobstore.ListQuery, between func()) []*job.Job {
	f.t.Helper()
	var out []*job.Job
	for pages := 0; ; pages++ {
		require.Less(f.t, pages, 1000, "list never ends")
		p, err := f.s.List(f.ctx, q)
		require.NoError(f.t, err)
		require.LessOrEqual(f.t, len(p.Jobs), q.Limit)
		out = append(out, p.Jobs...)
		if p.Next == "" {
			return out
		}
		require.NotEqual(f.t, q.Cursor, p.Next, "cursor does not advance")
		q.Cursor = p.Next
		if between != nil {
			between()
		}
	}
}

func testListPaging(f *fx) {
	t := f.t
	var all, even []*job.Job
	for i := range 23 {
		typ := "odd"
		if i%2 == 0 {
			typ = "even"
		}
		j := f.submit(job.Submission{Type: typ})
		all = append(all, j)
		if typ == "even" {
			even = append(even, j)
		}
		f.advance(time.Millisecond)
	}
	f.listIs(jobstore.ListQuery{Limit: 100}, all)

	for _, limit := range []int{1, 5, 22, 23, 24} {
		got := f.walk(jobstore.ListQuery{Limit: limit}, nil)
		require.Equal(t, newestFirst(all), ids(got), "limit %d", limit)
	}
	got := f.walk(jobstore.ListQuery{Type: "even", Limit: 4}, nil)
	require.Equal(t, newestFirst(even), ids(got))
	p, err := f.s.List(f.ctx, jobstore.ListQuery{Limit: 5})
	require.NoError(t, err)
	require.Len(t, p.Jobs, 5)
	require.NotEmpty(t, p.Next)

	// New jobs created while walking do not make the walk repeat or skip
	// a job that was there when it began.
	got = f.walk(jobstore.ListQuery{Limit: 6}, func() {
		for range 2 {
			f.submit(job.Submission{Type: "odd"})
			f.advance(time.Millisecond)
		}
	})
	seen := map[string]int{}
	for _, j := range got {
		seen[j.ID]++
		require.Equal(t, 1, seen[j.ID], "job %s listed twice", j.ID)
	}
	for _, j := range all {
		require.Equal(t, 1, seen[j.ID], "job %s missed", j.ID)
	}
	require.True(t, slices.IsSortedFunc(got, func(a, b *job.Job) int { return -cmpString(a.ID, b.ID) }), "not newest first")
}

func cmpString(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func testListBadInput(f *fx) {
	t := f.t
	for range 3 {
		f.submit(job.Submission{})
	}
	for _, cursor := range []string{"not-a-cursor", "%%%", "\x00", "{}"} {
		_, err := f.s.List(f.ctx, jobstore.ListQuery{Cursor: cursor})
		requireCode(t, errcode.InvalidArgument, err)
	}
	for _, s := range []job.Status{"BOGUS", "queued", " QUEUED"} {
		_, err := f.s.List(f.ctx, jobstore.ListQuery{Status: s})
		requireCode(t, errcode.InvalidArgument, err)
	}
	for _, limit := range []int{-1, jobstore.MaxListLimit + 1} {
		_, err := f.s.List(f.ctx, jobstore.ListQuery{Limit: limit})
		requireCode(t, errcode.InvalidArgument, err)
	}
	f.settled(func() error {
		p, err := f.s.List(f.ctx, jobstore.ListQuery{Limit: 0}) // the default limit
		if err != nil {
			return err
		}
		if len(p.Jobs) != 3 {
			return fmt.Errorf("list with the default limit: %d jobs, want 3", len(p.Jobs))
		}
		return nil
	})
}

func testRetention(f *fx) {
	t := f.t
	fake := clock.NewFake(f.now)
	// A second Store over the same driver, reading through the fake clock.
	// It is not closed: closing it would close the harness's driver.
	s := jobstore.New(f.s.Driver(), &jobstore.Options{Clock: fake})

	done := f.finish(f.start(f.submit(job.Submission{Key: "kept"}), "w"), job.End{Outcome: job.OutcomeSucceeded})
	q := f.submit(job.Submission{})
	failed := f.win(q, policy.DeadLetter(q, f.now, "x"))
	active := f.submit(job.Submission{})
	require.Equal(t, f.now.Add(policy.Retention).UnixMilli(), done.ExpiresAt.UnixMilli())

	listed := func(q jobstore.ListQuery) []string {
		p, err := s.List(f.ctx, q)
		require.NoError(t, err)
		return ids(p.Jobs)
	}

	fake.Set(done.ExpiresAt.Add(-time.Second))
	got, err := s.Get(f.ctx, done.ID)
	require.NoError(t, err)
	requireJob(t, done, got)
	f.settled(func() error {
		if l := listed(jobstore.ListQuery{}); !slices.Contains(l, done.ID) {
			return fmt.Errorf("job %s within its retention is not listed: %v", done.ID, l)
		}
		return nil
	})

	fake.Set(done.ExpiresAt.Add(time.Second))
	_, err = s.Get(f.ctx, done.ID)
	requireCode(t, errcode.NotFound, err)
	require.NotContains(t, listed(jobstore.ListQuery{}), done.ID)
	require.Empty(t, listed(jobstore.ListQuery{Status: job.Succeeded}))
	require.NotContains(t, listed(jobstore.ListQuery{Status: job.Failed}), failed.ID)
	got, err = s.Get(f.ctx, active.ID)
	require.NoError(t, err)
	requireJob(t, active, got)
	f.settled(func() error {
		if l := listed(jobstore.ListQuery{}); !slices.Contains(l, active.ID) {
			return fmt.Errorf("active job %s is not listed: %v", active.ID, l)
		}
		return nil
	})

	// Hiding is a read-time rule of the Store: the record is still there
	// for a Store whose clock has not reached it.
	requireJob(t, done, f.get(done.ID))
}
