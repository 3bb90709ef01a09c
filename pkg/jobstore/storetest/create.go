package storetest

import (
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/stretchr/testify/require"

	"github.com/jobfleet/jobfleet/pkg/errcode"
	"github.com/jobfleet/jobfleet/pkg/job"
	"github.com/jobfleet/jobfleet/pkg/jobstore"
)

// fullJob returns a new (QUEUED, rev 1, attempt 0) job with every other
// field of the record set, so that a round trip covers all of them.
func (f *fx) fullJob() *job.Job {
	now := f.now
	j := f.newJob(job.Submission{
		Type:        "full.Type_1-x",
		Key:         "full-key",
		Payload:     raw(`{"a":[1,2.5e10,"é\u00e9",null,true],"b":{"c":"<&>"}}`),
		MaxAttempts: 7,
		Timeout:     job.Duration(90 * time.Second),
	})
	j.PayloadRef = "payloads/full"
	j.Failures = 2
	j.Owner = "host-1/4242"
	j.LeaseUntil = now.Add(30 * time.Second)
	j.CancelRequested = true
	j.RunAt = now.Add(time.Second)
	j.Resends = 3
	j.DeadLetters = 2
	j.StartBy = now.Add(10 * time.Minute)
	j.Detail = "waiting for capacity: ünïcode ✓"
	j.Progress = raw(`{"done":3,"of":10}`)
	j.Result = raw(`[1,"two",{"three":3}]`)
	j.ResultRef = "results/full"
	j.Error = "failed: boom"
	j.StartedAt = now.Add(-time.Minute)
	j.FinishedAt = now.Add(-time.Second)
	j.ExpiresAt = now.Add(30 * 24 * time.Hour)
	j.History = []job.Attempt{
		{Attempt: 1, Owner: "host-0/1", StartedAt: now.Add(-2 * time.Hour), EndedAt: now.Add(-time.Hour), Outcome: job.OutcomeFailed, Reason: "exit 1"},
		{Attempt: 2, Owner: "host-1/4242", StartedAt: now.Add(-time.Minute), EndedAt: now.Add(-time.Second), Outcome: job.OutcomeHandedBack, Reason: "drain"},
	}
	return j
}

// requireAllSet requires every field of j but Attempt (zero in a new job),
// and of its history entries, to be set: a field added to job.Job must be
// added to fullJob, so the round trip keeps covering the whole record.
func requireAllSet(t *testing.T, j *job.Job) {
	t.Helper()
	check := func(what string, v reflect.Value, skip ...string) {
		for i := range v.NumField() {
			name := v.Type().Field(i).Name
			if v.Field(i).IsZero() && !contains(skip, name) {
				t.Fatalf("fixture leaves %s.%s unset", what, name)
			}
		}
	}
	check("Job", reflect.ValueOf(j).Elem(), "Attempt")
	require.NotEmpty(t, j.History)
	for _, a := range j.History {
		check("Attempt", reflect.ValueOf(a))
	}
}

func contains(list []string, s string) bool {
	for _, e := range list {
		if e == s {
			return true
		}
	}
	return false
}

func testCreateGetRoundTrip(f *fx) {
	t := f.t
	full := f.fullJob()
	requireAllSet(t, full)
	plain := f.newJob(job.Submission{Type: "plain"})
	later := f.newJob(job.Submission{Type: "later", Delay: job.Duration(2 * time.Hour)})
	require.Equal(t, job.Scheduled, later.Status)
	keep := []*job.Job{full.Clone(), plain.Clone(), later.Clone()}

	res, err := f.s.Create(f.ctx, full, plain, later)
	require.NoError(t, err)
	require.Len(t, res, 3)
	for i, r := range res {
		require.NoError(t, r.Err)
		require.Empty(t, r.Holder, "entry %d", i)
	}
	for _, want := range keep {
		requireJob(t, want, f.get(want.ID))
	}

	// The store keeps its own copy: changing the job given to Create or a
	// record returned by Get changes nothing stored.
	full.Payload[2] = 'X'
	full.History[0].Owner = "changed"
	full.Progress[2] = 'X'
	got := f.get(full.ID)
	got.Payload[2] = 'Y'
	got.Result[1] = 'Y'
	got.History[1].Reason = "changed"
	requireJob(t, keep[0], f.get(full.ID))

	missing := job.NewID(f.now)
	f.requireNotFound(missing)
	_, err = f.s.Driver().Get(f.ctx, missing)
	requireCode(t, errcode.NotFound, err)
	for _, bad := range []string{"", "nope", "../etc/passwd", strings.Repeat("Z", 26), missing + "0", missing[:25]} {
		f.requireNotFound(bad)
	}
}

func testTimesAreUTC(f *fx) {
	t := f.t
	zone := time.FixedZone("UTC+5:30", 5*3600+30*60)
	at := f.now.In(zone)
	j := f.newJobAt(job.Submission{Delay: job.Duration(time.Second), StartWithin: job.Duration(time.Minute)}, at)
	require.Equal(t, zone, j.CreatedAt.Location())
	f.create(j)
	got := f.get(j.ID)
	requireJob(t, j, got) // same instants, all in UTC
	require.Equal(t, f.now.UnixMilli(), got.CreatedAt.UnixMilli())

	west := time.FixedZone("UTC-8", -8*3600)
	c := policy.Start(job.Message{ID: j.ID, Attempt: 0}, "w", f.now.Add(2*time.Second).In(west))
	started := f.win(got, c)
	require.Equal(t, time.UTC, started.StartedAt.Location())
	require.Equal(t, time.UTC, started.History[0].StartedAt.Location())
}

func testCreateBatchResults(f *fx) {
	t := f.t
	a := f.submit(job.Submission{Payload: raw(`{"n":"a"}`)})
	// a2 reuses a's id with another payload.
	a2 := f.newJob(job.Submission{Payload: raw(`{"n":"a2"}`)})
	a2.ID = a.ID
	c := f.newJob(job.Submission{Payload: raw(`{"n":"c"}`)})
	d := f.newJob(job.Submission{Payload: raw(`{"n":"d"}`)})
	d2 := d.Clone()
	d2.Payload = raw(`{"n":"d2"}`)
	d2.PayloadHash = job.PayloadHash(d2.Payload, "")
	e := f.newJob(job.Submission{Type: "other", Delay: job.Duration(time.Hour)})

	res, err := f.s.Create(f.ctx, c, a2, d, d2, e)
	require.NoError(t, err)
	require.Len(t, res, 5)
	require.NoError(t, res[0].Err)
	requireCode(t, errcode.AlreadyExists, res[1].Err)
	require.Equal(t, a.ID, res[1].Holder)
	require.Equal(t, a.PayloadHash, res[1].HolderPayloadHash)
	require.NoError(t, res[2].Err)
	requireCode(t, errcode.AlreadyExists, res[3].Err)
	require.Equal(t, d.ID, res[3].Holder)
	require.Equal(t, d.PayloadHash, res[3].HolderPayloadHash)
	require.NoError(t, res[4].Err)

	requireJob(t, a, f.get(a.ID)) // the first record stays
	requireJob(t, c, f.get(c.ID))
	requireJob(t, d, f.get(d.ID))
	requireJob(t, e, f.get(e.ID))
}

func testDuplicateID(f *fx) {
	t := f.t
	// An id stays taken after its job finished.
	done := f.submit(job.Submission{})
	done = f.finish(f.start(done, "w"), job.End{Outcome: job.OutcomeSucceeded})
	again := f.newJob(job.Submission{})
	again.ID = done.ID
	res, err := f.s.Create(f.ctx, again)
	require.NoError(t, err)
	requireCode(t, errcode.AlreadyExists, res[0].Err)
	require.Equal(t, done.ID, res[0].Holder)
	require.Equal(t, done.PayloadHash, res[0].HolderPayloadHash)
	requireJob(t, done, f.get(done.ID))

	// Re-creating a keyed job names itself as the holder.
	a := f.submit(job.Submission{Key: "k1", Payload: raw(`1`)})
	res, err = f.s.Create(f.ctx, a.Clone())
	require.NoError(t, err)
	requireCode(t, errcode.AlreadyExists, res[0].Err)
	require.Equal(t, a.ID, res[0].Holder)
	require.Equal(t, a.PayloadHash, res[0].HolderPayloadHash)

	// When both the id and the key are taken (by different jobs), the id
	// wins: the holder is the job with that id.
	b := f.submit(job.Submission{Key: "k2", Payload: raw(`2`)})
	b2 := b.Clone()
	b2.Key = "k1"
	res, err = f.s.Create(f.ctx, b2)
	require.NoError(t, err)
	requireCode(t, errcode.AlreadyExists, res[0].Err)
	require.Equal(t, b.ID, res[0].Holder)
	require.Equal(t, b.PayloadHash, res[0].HolderPayloadHash)
	requireJob(t, b, f.get(b.ID))
}

func testKeyClaim(f *fx) {
	t := f.t
	first := f.submit(job.Submission{Key: "order-42", Payload: raw(`{"v":1}`)})
	second := f.newJob(job.Submission{Key: "order-42", Payload: raw(`{"v":2}`)})
	require.NotEqual(t, first.PayloadHash, second.PayloadHash)
	res, err := f.s.Create(f.ctx, second)
	require.NoError(t, err)
	requireCode(t, errcode.AlreadyExists, res[0].Err)
	require.Equal(t, first.ID, res[0].Holder)
	require.Equal(t, first.PayloadHash, res[0].HolderPayloadHash)
	f.requireNotFound(second.ID)

	// The same payload is a duplicate submission: same answer.
	third := f.newJob(job.Submission{Key: "order-42", Payload: raw(`{"v":1}`)})
	res, err = f.s.Create(f.ctx, third)
	require.NoError(t, err)
	requireCode(t, errcode.AlreadyExists, res[0].Err)
	require.Equal(t, first.ID, res[0].Holder)
	require.Equal(t, third.PayloadHash, res[0].HolderPayloadHash)

	// Keys are compared byte for byte; jobs without a key never conflict.
	f.submit(job.Submission{Key: "ORDER-42"})
	f.submit(job.Submission{Key: "order-4"})
	f.submit(job.Submission{Key: "order-420"})
	f.submit(job.Submission{})
	f.submit(job.Submission{})
	requireJob(t, first, f.get(first.ID))
}

func testKeyClaimWithinBatch(f *fx) {
	t := f.t
	x := f.newJob(job.Submission{Key: "batch-key", Payload: raw(`"x"`)})
	y := f.newJob(job.Submission{Key: "batch-key", Payload: raw(`"y"`)})
	z := f.newJob(job.Submission{Key: "other-key"})
	res, err := f.s.Create(f.ctx, x, y, z)
	require.NoError(t, err)
	require.NoError(t, res[0].Err)
	requireCode(t, errcode.AlreadyExists, res[1].Err)
	require.Equal(t, x.ID, res[1].Holder)
	require.Equal(t, x.PayloadHash, res[1].HolderPayloadHash)
	require.NoError(t, res[2].Err)
	f.requireNotFound(y.ID)
	requireJob(t, x, f.get(x.ID))
}

// requireKeyFree requires key to be free: a new job claims it.
func (f *fx) requireKeyFree(key string) *job.Job {
	f.t.Helper()
	return f.submit(job.Submission{Key: key})
}

// requireKeyHeld requires key to be held by holder.
func (f *fx) requireKeyHeld(key string, holder *job.Job) {
	f.t.Helper()
	j := f.newJob(job.Submission{Key: key, Payload: raw(`"contender"`)})
	res, err := f.s.Create(f.ctx, j)
	require.NoError(f.t, err)
	requireCode(f.t, errcode.AlreadyExists, res[0].Err)
	require.Equal(f.t, holder.ID, res[0].Holder)
	require.Equal(f.t, holder.PayloadHash, res[0].HolderPayloadHash)
	f.requireNotFound(j.ID)
}

func testKeyReleasedByTerminal(f *fx) {
	paths := []struct {
		name string
		sub  job.Submission
		end  func(f *fx, cur *job.Job) *job.Job
		want job.Status
	}{
		{"finish succeeded", job.Submission{}, func(f *fx, cur *job.Job) *job.Job {
			return f.finish(f.start(cur, "w"), job.End{Outcome: job.OutcomeSucceeded, Result: raw(`true`)})
		}, job.Succeeded},
		{"finish permanent", job.Submission{}, func(f *fx, cur *job.Job) *job.Job {
			return f.finish(f.start(cur, "w"), job.End{Outcome: job.OutcomePermanent, Reason: "bad input"})
		}, job.Failed},
		{"finish attempts exhausted", job.Submission{MaxAttempts: 1}, func(f *fx, cur *job.Job) *job.Job {
			return f.finish(f.start(cur, "w"), job.End{Outcome: job.OutcomeFailed, Reason: "boom"})
		}, job.Failed},
		{"finish after cancel request", job.Submission{}, func(f *fx, cur *job.Job) *job.Job {
			running := f.start(cur, "w")
			c, ok := policy.RequestCancel(running, f.now)
			require.True(f.t, ok)
			running = f.win(running, c)
			return f.finish(running, job.End{Outcome: job.OutcomeCancelled})
		}, job.Cancelled},
		{"cancel queued", job.Submission{}, func(f *fx, cur *job.Job) *job.Job {
			c, ok := policy.RequestCancel(cur, f.now)
			require.True(f.t, ok)
			return f.win(cur, c)
		}, job.Cancelled},
		{"cancel scheduled", job.Submission{Delay: job.Duration(time.Hour)}, func(f *fx, cur *job.Job) *job.Job {
			require.Equal(f.t, job.Scheduled, cur.Status)
			c, ok := policy.RequestCancel(cur, f.now)
			require.True(f.t, ok)
			return f.win(cur, c)
		}, job.Cancelled},
		{"dead letter", job.Submission{}, func(f *fx, cur *job.Job) *job.Job {
			return f.win(cur, policy.DeadLetter(cur, f.now, "message dead-lettered after 5 receives"))
		}, job.Failed},
		{"expire", job.Submission{}, func(f *fx, cur *job.Job) *job.Job {
			return f.win(cur, policy.Expire(cur, f.now, "provisioner: no capacity"))
		}, job.Failed},
		{"reclaim to failed", job.Submission{MaxAttempts: 1}, func(f *fx, cur *job.Job) *job.Job {
			running := f.start(cur, "w")
			f.advance(policy.Lease + time.Second)
			return f.win(running, policy.Reclaim(running, f.now, job.End{Outcome: job.OutcomeLeaseExpired}))
		}, job.Failed},
	}
	for i, p := range paths {
		f.t.Run(p.name, func(t *testing.T) {
			f := f.with(t)
			key := fmt.Sprintf("release-%d", i)
			p.sub.Key = key
			cur := f.submit(p.sub)
			f.requireKeyHeld(key, cur)
			end := p.end(f, cur)
			require.Equal(t, p.want, end.Status)
			next := f.requireKeyFree(key)
			f.requireKeyHeld(key, next)
		})
	}
}

func testKeyHeldWhileActive(f *fx) {
	t := f.t
	const key = "held"
	cur := f.submit(job.Submission{Key: key, MaxAttempts: 10})
	step := func(what string, c job.Change, want job.Status) {
		t.Helper()
		cur = f.win(cur, c)
		require.Equal(t, want, cur.Status, what)
		f.requireKeyHeld(key, cur)
	}
	startMsg := func() job.Change {
		return policy.Start(job.Message{ID: cur.ID, Attempt: cur.Attempt}, "w", f.now)
	}
	step("note", policy.Note(cur, f.now, "waiting"), job.Queued)
	f.advance(2 * time.Minute)
	step("resend", policy.Resend(cur, f.now), job.Queued)
	step("start", startMsg(), job.Running)
	step("renew", policy.Renew(cur, f.advance(time.Second), raw(`1`)), job.Running)
	step("retry", policy.Finish(cur, f.now, job.End{Outcome: job.OutcomeFailed, Reason: "x", Delay: time.Second}), job.Queued)
	step("start", startMsg(), job.Running)
	step("hand back", policy.Finish(cur, f.now, job.End{Outcome: job.OutcomeHandedBack}), job.Queued)
	step("start", startMsg(), job.Running)
	step("interrupted", policy.Finish(cur, f.now, job.End{Outcome: job.OutcomeInterrupted}), job.Queued)
	step("start", startMsg(), job.Running)
	step("snooze", policy.Finish(cur, f.now, job.End{Outcome: job.OutcomeSnoozed, Delay: time.Minute}), job.Queued)
	step("start", startMsg(), job.Running)
	step("snooze past the queue's delay", policy.Finish(cur, f.now, job.End{Outcome: job.OutcomeSnoozed, Delay: time.Hour}), job.Scheduled)
	f.advance(time.Hour)
	step("promote", policy.Promote(cur, f.now), job.Queued)
	step("start", startMsg(), job.Running)
	f.advance(policy.Lease + time.Second)
	step("takeover", policy.Takeover(cur, "w2", f.now), job.Running)
	f.advance(policy.Lease + time.Second)
	step("reclaim", policy.Reclaim(cur, f.now, job.End{Outcome: job.OutcomeLeaseExpired}), job.Queued)
	step("start", startMsg(), job.Running)
	rc, ok := policy.RequestCancel(cur, f.now)
	require.True(t, ok)
	step("request cancel", rc, job.Running)
	cur = f.win(cur, policy.Finish(cur, f.now, job.End{Outcome: job.OutcomeFailed, Reason: "x"}))
	require.Equal(t, job.Cancelled, cur.Status)
	f.requireKeyFree(key)
}

func testKeyConcurrentCreates(f *fx) {
	t := f.t
	const n = 8
	jobs := make([]*job.Job, n)
	for i := range jobs {
		jobs[i] = f.newJob(job.Submission{Key: "contended", Payload: json.RawMessage(fmt.Sprint(i))})
	}
	results := make([]jobstore.CreateResult, n)
	errs := race(n, func(i int) error {
		res, err := f.s.Create(f.ctx, jobs[i])
		if err == nil {
			results[i] = res[0]
		}
		return err
	})
	winner := -1
	for i := range n {
		require.NoError(t, errs[i])
		if results[i].Err == nil {
			require.Equal(t, -1, winner, "jobs %d and %d both claimed the key", winner, i)
			winner = i
		}
	}
	require.NotEqual(t, -1, winner, "nobody claimed the key")
	for i, r := range results {
		if i == winner {
			continue
		}
		requireCode(t, errcode.AlreadyExists, r.Err)
		require.Equal(t, jobs[winner].ID, r.Holder)
		require.Equal(t, jobs[winner].PayloadHash, r.HolderPayloadHash)
		f.requireNotFound(jobs[i].ID)
	}
	requireJob(t, jobs[winner], f.get(jobs[winner].ID))
}

func testCreateMoreThanMaxBatch(f *fx) {
	t := f.t
	n := 2*jobstore.MaxBatch + 17
	jobs := make([]*job.Job, n)
	for i := range jobs {
		jobs[i] = f.newJob(job.Submission{Key: fmt.Sprintf("bulk-%d", i), Payload: json.RawMessage(fmt.Sprint(i))})
	}
	// Conflicts with entries of earlier driver batches.
	dupKey, keyHolder := jobstore.MaxBatch+50, 40
	jobs[dupKey].Key = jobs[keyHolder].Key
	dupID, idHolder := 2*jobstore.MaxBatch+3, 10
	jobs[dupID].ID = jobs[idHolder].ID

	res, err := f.s.Create(f.ctx, jobs...)
	require.NoError(t, err)
	require.Len(t, res, n)
	var stored []*job.Job
	for i, r := range res {
		switch i {
		case dupKey:
			requireCode(t, errcode.AlreadyExists, r.Err)
			require.Equal(t, jobs[keyHolder].ID, r.Holder)
		case dupID:
			requireCode(t, errcode.AlreadyExists, r.Err)
			require.Equal(t, jobs[idHolder].ID, r.Holder)
			require.Equal(t, jobs[idHolder].PayloadHash, r.HolderPayloadHash)
		default:
			require.NoError(t, r.Err, "entry %d", i)
			stored = append(stored, jobs[i])
		}
	}
	requireJob(t, jobs[n-1], f.get(jobs[n-1].ID))
	requireJob(t, jobs[idHolder], f.get(jobs[idHolder].ID))
	f.settled(func() error {
		p, err := f.s.List(f.ctx, jobstore.ListQuery{Limit: jobstore.MaxListLimit})
		if err != nil {
			return err
		}
		return sameIDs("list after bulk create", newestFirst(stored), p.Jobs)
	})
}

// bigJSON returns a JSON string value of about n bytes.
func bigJSON(n int) json.RawMessage {
	const chunk = "0123456789abcdefghijklmnopqrstuvwxyz-ÄÖÜ-€-🙂 "
	b := strings.Repeat(chunk, n/len(chunk)+1)[:n]
	for !utf8.ValidString(b) { // do not cut a rune
		b = b[:len(b)-1]
	}
	return raw(`"` + b + `"`)
}

func testRecordSizeLimit(f *fx) {
	t := f.t
	ok := f.newJob(job.Submission{Payload: bigJSON(300 << 10)})
	tooBig := f.newJob(job.Submission{Payload: bigJSON(500 << 10)})
	small := f.newJob(job.Submission{})
	res, err := f.s.Create(f.ctx, ok, tooBig, small)
	require.NoError(t, err)
	require.NoError(t, res[0].Err)
	requireCode(t, errcode.InvalidArgument, res[1].Err)
	require.NoError(t, res[2].Err)
	requireJob(t, ok, f.get(ok.ID))
	f.requireNotFound(tooBig.ID)
	requireJob(t, small, f.get(small.ID))

	// A write that would grow a record past the limit fails and writes
	// nothing; the same job takes a write that fits.
	running := f.start(f.get(small.ID), "w")
	for _, c := range []job.Change{
		policy.Renew(running, f.now, bigJSON(500<<10)),
		policy.Finish(running, f.now, job.End{Outcome: job.OutcomeSucceeded, Result: bigJSON(500 << 10)}),
	} {
		res, err := f.s.Apply(f.ctx, c)
		require.NoError(t, err)
		requireCode(t, errcode.InvalidArgument, res[0].Err)
		requireJob(t, running, f.get(running.ID))
	}
	f.finish(running, job.End{Outcome: job.OutcomeSucceeded, Result: bigJSON(200 << 10)})
}
