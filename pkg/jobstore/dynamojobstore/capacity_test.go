package dynamojobstore_test

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/stretchr/testify/require"

	"github.com/jobfleet/jobfleet/pkg/awstest"
	"github.com/jobfleet/jobfleet/pkg/job"
	"github.com/jobfleet/jobfleet/pkg/jobstore"
	"github.com/jobfleet/jobfleet/pkg/jobstore/dynamojobstore"
	"github.com/jobfleet/jobfleet/pkg/jobstore/dynamojobstore/dynamometer"
)

var policy = job.DefaultPolicy

// TestWriteCapacity measures the write units of a no-op job's life, keyed
// and not, and pins the figures the package doc states. moto's
// ConsumedCapacity reports no index writes (and 0.5 for an update, nothing
// for a transaction), so dynamometer computes them from the items.
func TestWriteCapacity(t *testing.T) {
	t.Parallel()
	table := dynamojobstore.NewTestTable(t)
	m := dynamometer.New(1)
	client := m.Client(dynamojobstore.NewTestClient(t), dynamodb.NewFromConfig(awstest.Config(t)), table)
	d, err := dynamojobstore.OpenDriver(t.Context(), client, table, nil)
	require.NoError(t, err)
	store := jobstore.New(d, nil)
	defer store.Close()
	ctx := t.Context()
	var sizes []int // of the job item after each step
	take := func() int {
		u := m.Take()
		for pk, size := range u.Items {
			if strings.HasPrefix(pk, "job#") {
				sizes = append(sizes, size)
			}
		}
		return int(u.WriteUnits())
	}

	for _, c := range []struct {
		key  string
		want map[string]int
	}{
		{"", map[string]int{"create": 3, "start": 3, "renew": 3, "finish": 2}},
		{"order-1234", map[string]int{"create": 6, "start": 3, "renew": 3, "finish": 5}},
	} {
		now := time.Now()
		s := job.Submission{Type: "noop", Key: c.key, Payload: []byte(`{"n":1}`)}
		j := policy.New(&s, job.DefaultLimits, job.NewID(now), now)
		got := map[string]int{}
		res, err := store.Create(ctx, j)
		require.NoError(t, err)
		require.NoError(t, res[0].Err)
		got["create"] = take()
		cur, err := store.ApplyOne(ctx, policy.Start(job.Message{ID: j.ID}, "ip-10-0-0-1.ec2.internal/4242", now))
		require.NoError(t, err)
		got["start"] = take()
		cur, err = store.ApplyOne(ctx, policy.Renew(cur, now.Add(10*time.Second), nil))
		require.NoError(t, err)
		got["renew"] = take()
		_, err = store.ApplyOne(ctx, policy.Finish(cur, now.Add(20*time.Second), job.End{Outcome: job.OutcomeSucceeded}))
		require.NoError(t, err)
		got["finish"] = take()
		t.Logf("key %q: write units %v; create+start+finish = %d; job item sizes %v bytes",
			c.key, got, got["create"]+got["start"]+got["finish"], sizes)
		require.Equal(t, c.want, got, "key %q", c.key)
		sizes = nil
	}
}

// TestProjectedOwnerIsFree checks the claim that projecting owner into the
// active index costs no write: every change job.Policy makes either
// leaves owner as it is or changes the entry's key too (or removes the
// entry), so it costs the index what it would cost a KEYS_ONLY index.
func TestProjectedOwnerIsFree(t *testing.T) {
	t.Parallel()
	var active types.GlobalSecondaryIndex
	for _, g := range dynamojobstore.CreateTableInput("t").GlobalSecondaryIndexes {
		if aws.ToString(g.IndexName) == dynamojobstore.IndexActive {
			active = g
		}
	}
	require.Contains(t, active.Projection.NonKeyAttributes, dynamojobstore.AttrOwner)
	keysOnly := active
	keysOnly.Projection = &types.Projection{ProjectionType: types.ProjectionTypeKeysOnly}

	now := dynamojobstore.T0
	after := func(cur *job.Job, c job.Change) *job.Job {
		n := cur.Clone()
		c.Set.Apply(n)
		return n
	}
	queued := dynamojobstore.NewJob("k")
	timed := policy.New(&job.Submission{Type: "t", Timeout: job.Duration(time.Minute)}, job.DefaultLimits, job.NewID(now), now)
	scheduled := policy.New(&job.Submission{Type: "t", Delay: job.Duration(24 * time.Hour)}, job.DefaultLimits, job.NewID(now), now)
	require.Equal(t, job.Scheduled, scheduled.Status)
	running := after(queued, policy.Start(job.Message{ID: queued.ID}, "arn:aws:ecs:us-east-1:123456789012:task/jobfleet/0123456789abcdef", now))
	expired := now.Add(policy.Lease + time.Second)
	cancelling := after(running, must(policy.RequestCancel(running, now)))
	last := running.Clone()
	last.Failures = last.MaxAttempts - 1

	type step struct {
		name string
		cur  *job.Job
		c    job.Change
	}
	finish := func(cur *job.Job, o job.Outcome, delay time.Duration) job.Change {
		return policy.Finish(cur, now, job.End{Outcome: o, Reason: "r", Delay: delay})
	}
	reclaim := func(cur *job.Job, o job.Outcome) job.Change {
		return policy.Reclaim(cur, expired, job.End{Outcome: o, Reason: "r"})
	}
	steps := []step{
		{"start", queued, policy.Start(job.Message{ID: queued.ID}, "w1", now)},
		{"start with a deadline", timed, policy.Start(job.Message{ID: timed.ID}, "w1", now)},
		{"takeover", running, policy.Takeover(running, "w2", expired)},
		{"renew", running, policy.Renew(running, now.Add(time.Second), nil)},
		{"renew with progress", running, policy.Renew(running, now.Add(time.Second), []byte(`{"p":1}`))},
		{"request cancel", running, must(policy.RequestCancel(running, now))},
		{"cancel queued", queued, must(policy.RequestCancel(queued, now))},
		{"note", running, policy.Note(running, now, "halfway")},
		{"promote", scheduled, policy.Promote(scheduled, scheduled.DueAt)},
		{"resend", queued, policy.Resend(queued, queued.DueAt)},
		{"dead letter", queued, policy.DeadLetter(queued, now, "dlq")},
		{"expire", queued, policy.Expire(queued, now, "provisioner: no capacity")},
	}
	for _, o := range []job.Outcome{job.OutcomeSucceeded, job.OutcomeFailed, job.OutcomePermanent, job.OutcomeTimeout,
		job.OutcomePanic, job.OutcomeHandedBack, job.OutcomeInterrupted, job.OutcomeSnoozed, job.OutcomeCancelled} {
		steps = append(steps,
			step{"finish " + string(o), running, finish(running, o, time.Second)},
			step{"finish " + string(o) + " much later", running, finish(running, o, 24*time.Hour)},
			step{"finish " + string(o) + " while cancelling", cancelling, finish(cancelling, o, 0)},
			step{"finish " + string(o) + " on the last attempt", last, finish(last, o, 0)})
	}
	for _, o := range []job.Outcome{job.OutcomeLeaseExpired, job.OutcomeTaskStopped, job.OutcomeInterrupted,
		job.OutcomeTimeout, job.OutcomeDeadLetter} {
		steps = append(steps,
			step{"reclaim " + string(o), running, reclaim(running, o)},
			step{"reclaim " + string(o) + " on the last attempt", last, reclaim(last, o)})
	}
	ownerChanges := 0
	for _, st := range steps {
		require.NoError(t, st.c.Validate(), st.name)
		before, next := dynamojobstore.EncodeJob(st.cur), dynamojobstore.EncodeJob(after(st.cur, st.c))
		if !reflect.DeepEqual(before[dynamojobstore.AttrOwner], next[dynamojobstore.AttrOwner]) {
			ownerChanges++
		}
		require.Equal(t, dynamometer.IndexUnits(keysOnly, before, next), dynamometer.IndexUnits(active, before, next),
			"%s: owner %v -> %v, %s %v -> %v", st.name, before[dynamojobstore.AttrOwner], next[dynamojobstore.AttrOwner], dynamojobstore.AttrDuePK, before[dynamojobstore.AttrDuePK], next[dynamojobstore.AttrDuePK])
	}
	require.Greater(t, ownerChanges, len(steps)/2, "most steps change the owner")

	// Whereas a change of owner alone would cost a write.
	before := dynamojobstore.EncodeJob(running)
	moved := running.Clone()
	moved.Owner = "w9"
	require.Equal(t, 0, dynamometer.IndexUnits(keysOnly, before, dynamojobstore.EncodeJob(moved)))
	require.Equal(t, 1, dynamometer.IndexUnits(active, before, dynamojobstore.EncodeJob(moved)))
}

func must(c job.Change, ok bool) job.Change {
	if !ok {
		panic("no change")
	}
	return c
}
