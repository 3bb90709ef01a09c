package storetest

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/jobfleet/jobfleet/pkg/errcode"
	"github.com/jobfleet/jobfleet/pkg/job"
	"github.com/jobfleet/jobfleet/pkg/jobstore"
)

func testContextCanceled(f *fx) {
	t := f.t
	q := f.submit(job.Submission{})
	fresh := f.newJob(job.Submission{Key: "canceled"})
	start := policy.Start(job.Message{ID: q.ID}, "w", f.now)

	canceled, cancel := context.WithCancel(f.ctx)
	cancel()
	expired, cancel2 := context.WithDeadline(f.ctx, time.Now().Add(-time.Second))
	defer cancel2()
	for _, ctx := range []context.Context{canceled, expired} {
		_, err := f.s.Create(ctx, fresh)
		requireCanceled(t, err)
		_, err = f.s.Get(ctx, q.ID)
		requireCanceled(t, err)
		_, err = f.s.Apply(ctx, start)
		requireCanceled(t, err)
		_, err = f.s.Due(ctx, job.Queued, f.now.Add(time.Hour), 10)
		requireCanceled(t, err)
		_, err = f.s.Owned(ctx, "w", 10)
		requireCanceled(t, err)
		_, err = f.s.List(ctx, jobstore.ListQuery{})
		requireCanceled(t, err)
	}

	// A call whose context had ended wrote nothing, and the store still
	// works.
	f.requireNotFound(fresh.ID)
	requireJob(t, q, f.get(q.ID))
	f.create(fresh)
	requireJob(t, fresh, f.get(fresh.ID))
	f.win(q, start)
}

func testUseAfterClose(f *fx) {
	t := f.t
	q := f.submit(job.Submission{})
	d := f.s.Driver()
	require.NoError(t, f.s.Close())
	require.NoError(t, f.s.Close())

	_, err := f.s.Create(f.ctx, f.newJob(job.Submission{}))
	requireCode(t, errcode.Closed, err)
	_, err = f.s.Get(f.ctx, q.ID)
	requireCode(t, errcode.Closed, err)
	_, err = f.s.Apply(f.ctx, policy.Start(job.Message{ID: q.ID}, "w", f.now))
	requireCode(t, errcode.Closed, err)
	_, err = f.s.ApplyOne(f.ctx, policy.Start(job.Message{ID: q.ID}, "w", f.now))
	requireCode(t, errcode.Closed, err)
	_, err = f.s.Due(f.ctx, job.Queued, f.now, 10)
	requireCode(t, errcode.Closed, err)
	_, err = f.s.Owned(f.ctx, "w", 10)
	requireCode(t, errcode.Closed, err)
	_, err = f.s.List(f.ctx, jobstore.ListQuery{})
	requireCode(t, errcode.Closed, err)

	// The driver itself refuses calls after Close, too.
	_, err = d.Create(f.ctx, []*job.Job{f.newJob(job.Submission{})})
	requireCode(t, errcode.Closed, err)
	_, err = d.Get(f.ctx, q.ID)
	requireCode(t, errcode.Closed, err)
	_, err = d.Apply(f.ctx, []job.Change{policy.Start(job.Message{ID: q.ID}, "w", f.now)})
	requireCode(t, errcode.Closed, err)
	_, err = d.Due(f.ctx, job.Queued, f.now, 10)
	requireCode(t, errcode.Closed, err)
	_, err = d.Owned(f.ctx, "w", 10)
	requireCode(t, errcode.Closed, err)
	_, err = d.List(f.ctx, jobstore.ListQuery{Limit: 10})
	requireCode(t, errcode.Closed, err)
}

func testSecondHandle(f *fx) {
	t := f.t
	if f.h.Open == nil {
		t.Skip("the harness cannot open a second handle")
	}
	other := f.h.Open(t, nil)

	// Each handle sees the other's acknowledged writes at once (Get is
	// strongly consistent).
	a := f.submit(job.Submission{})
	got, err := other.Get(f.ctx, a.ID)
	require.NoError(t, err)
	requireJob(t, a, got)
	res, err := other.Apply(f.ctx, policy.Start(job.Message{ID: a.ID}, "w-other", f.now))
	require.NoError(t, err)
	require.NoError(t, res[0].Err)
	requireJob(t, res[0].Job, f.get(a.ID))

	// Racing through both handles: one start wins, one key claim wins.
	q := f.submit(job.Submission{})
	stores := []*jobstore.Store{f.s, other}
	const n = 8
	starts := make([]jobstore.ChangeResult, n)
	errs := race(n, func(i int) error {
		res, err := stores[i%2].Apply(f.ctx, policy.Start(job.Message{ID: q.ID}, fmt.Sprintf("w%d", i), f.now))
		if err == nil {
			starts[i] = res[0]
		}
		return err
	})
	wins := 0
	for i, r := range starts {
		require.NoError(t, errs[i])
		if r.Err == nil {
			wins++
			continue
		}
		requireCode(t, errcode.FailedPrecondition, r.Err)
	}
	require.Equal(t, 1, wins)
	require.Equal(t, 1, f.get(q.ID).Attempt)

	claims := make([]jobstore.CreateResult, n)
	errs = race(n, func(i int) error {
		res, err := stores[i%2].Create(f.ctx, f.newJob(job.Submission{Key: "shared"}))
		if err == nil {
			claims[i] = res[0]
		}
		return err
	})
	wins = 0
	for i, r := range claims {
		require.NoError(t, errs[i])
		if r.Err == nil {
			wins++
			continue
		}
		requireCode(t, errcode.AlreadyExists, r.Err)
	}
	require.Equal(t, 1, wins)

	// Closing one handle leaves the other working.
	require.NoError(t, other.Close())
	_, err = other.Get(f.ctx, a.ID)
	requireCode(t, errcode.Closed, err)
	f.get(a.ID)
}

// keyPunct is every character a key may hold that is not a letter or digit.
const keyPunct = "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~"

func testOddKeys(f *fx) {
	t := f.t
	n := job.DefaultLimits.MaxKeyLen
	long := keyPunct + strings.Repeat("aZ9", n)[:n-len(keyPunct)]
	require.Len(t, long, n)
	keys := []string{long, "%", "%_", "_", "'OR'1'='1", `\`, `"`, "a/b/../c", "NULL", "null", "~"}
	for _, k := range keys {
		s := job.Submission{Type: "t", Key: k}
		require.NoError(t, s.Validate(job.DefaultLimits, f.now), "key %q", k)
	}
	held := map[string]*job.Job{}
	for _, k := range keys {
		j := f.submit(job.Submission{Key: k})
		require.Equal(t, k, j.Key)
		held[k] = j
	}
	for _, k := range keys {
		f.requireKeyHeld(k, held[k])
	}
	// Keys that differ in one byte, or are prefixes, are other keys.
	f.requireKeyFree(long[:n-1] + "X")
	f.requireKeyFree(long[:n-1])
	f.requireKeyFree(strings.ToLower(long))
	f.requireKeyFree("%%")
	f.requireKeyFree("a_")
}

func testOddPayloads(f *fx) {
	t := f.t
	payloads := map[string]string{
		"escapes and NUL escapes": `{"nul":"a\u0000b","ctl":"\u0001\u001f","esc":"\"\\\/\b\f\n\r\t"}`,
		"unicode":                 `{"emoji":"🙂👩‍👩‍👧‍👦","cjk":"漢字","rtl":"עברית","combining":"é","pair":"\ud83d\ude00"}`,
		"html and separators":     "{\"html\":\"<script>a&&b</script>\",\"sep\":\"\u2028\u2029\"}",
		"whitespace":              "{ \"a\" :\t[ 1 ,\n 2 ] }\n",
		"numbers":                 `[1e400,-0,0.1,12345678901234567890123456789,-1.5E-300]`,
		"duplicate names":         `{"a":1,"a":2}`,
		"deep":                    strings.Repeat("[", 200) + strings.Repeat("]", 200),
		"string":                  `"just a string"`,
		"null":                    `null`,
		"empty object":            `{}`,
		"200 KiB":                 string(bigJSON(200 << 10)),
	}
	var jobs []*job.Job
	for _, p := range payloads {
		jobs = append(jobs, f.newJob(job.Submission{Payload: raw(p)}))
	}
	f.create(jobs...)
	for _, j := range jobs {
		got := f.get(j.ID)
		require.True(t, bytes.Equal(j.Payload, got.Payload), "payload of %d bytes came back as %d bytes: %.200q",
			len(j.Payload), len(got.Payload), got.Payload)
	}

	// Progress and results are kept byte for byte, too.
	cur := f.start(f.submit(job.Submission{}), "w")
	for name, p := range payloads {
		cur = f.win(cur, policy.Renew(cur, f.now, raw(p)))
		require.True(t, bytes.Equal([]byte(p), f.get(cur.ID).Progress), "progress %s", name)
	}
	for _, name := range []string{"escapes and NUL escapes", "html and separators", "whitespace"} {
		cur := f.start(f.submit(job.Submission{}), "w")
		done := f.finish(cur, job.End{Outcome: job.OutcomeSucceeded, Result: raw(payloads[name])})
		require.Equal(t, payloads[name], string(f.get(done.ID).Result), "result %s", name)
	}
}
