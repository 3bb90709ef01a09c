package dynamojobstore

import (
	"context"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/stretchr/testify/require"

	"github.com/jobfleet/jobfleet/pkg/awstest"
	"github.com/jobfleet/jobfleet/pkg/job"
	"github.com/jobfleet/jobfleet/pkg/jobstore"
)

// meter counts the write units the driver's writes consume, from the items
// themselves: moto's ConsumedCapacity reports no index writes (and 0.5 for
// an update, nothing for a transaction), so the test reads each written
// item before and after the write and applies DynamoDB's documented rules:
//
//   - table: one unit per started KB of the larger of the old and new
//     item, twice that for a write inside a transaction;
//   - each global secondary index: an entry put or deleted costs one unit
//     per started KB of the entry (its key attributes, the table key, the
//     projected attributes and 100 bytes of overhead); an update that
//     changes an entry's key costs a delete and a put; one that changes
//     only projected attributes, a put; any other, nothing.
type meter struct {
	DynamoDBAPI
	raw   *dynamodb.Client
	table string
	gsis  []types.GlobalSecondaryIndex

	mu    sync.Mutex
	units int
	sizes []int // sizes of the job items written, after the write
}

func newMeter(t *testing.T, table string) *meter {
	return &meter{
		DynamoDBAPI: newTestClient(t),
		raw:         dynamodb.NewFromConfig(awstest.Config(t)),
		table:       table,
		gsis:        CreateTableInput(table).GlobalSecondaryIndexes,
	}
}

func (m *meter) take() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	u := m.units
	m.units = 0
	return u
}

func (m *meter) read(ctx context.Context, key map[string]types.AttributeValue) map[string]types.AttributeValue {
	out, err := m.raw.GetItem(ctx, &dynamodb.GetItemInput{TableName: aws.String(m.table), Key: key, ConsistentRead: aws.Bool(true)})
	if err != nil {
		panic(err)
	}
	return out.Item
}

// around meters write, which changes the items with keys.
func (m *meter) around(ctx context.Context, tx bool, keys []map[string]types.AttributeValue, write func() error) error {
	before := make([]map[string]types.AttributeValue, len(keys))
	for i, k := range keys {
		before[i] = m.read(ctx, k)
	}
	if err := write(); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for i, k := range keys {
		after := m.read(ctx, k)
		u := kbUnits(max(ItemSize(before[i]), ItemSize(after)))
		if tx {
			u *= 2
		}
		m.units += u
		for _, g := range m.gsis {
			m.units += gsiUnits(g, before[i], after)
		}
		if strings.HasPrefix(itemPK(after), jobPrefix) {
			m.sizes = append(m.sizes, ItemSize(after))
		}
	}
	return nil
}

func kbUnits(size int) int { return max(1, (size+1023)/1024) }

// gsiEntry is item's entry in index g, nil when the item is not in it.
func gsiEntry(g types.GlobalSecondaryIndex, item map[string]types.AttributeValue) (keys, projected map[string]types.AttributeValue) {
	keys = map[string]types.AttributeValue{}
	for _, k := range g.KeySchema {
		v, ok := item[aws.ToString(k.AttributeName)]
		if !ok {
			return nil, nil
		}
		keys[aws.ToString(k.AttributeName)] = v
	}
	keys[AttrPK] = item[AttrPK]
	projected = map[string]types.AttributeValue{}
	for _, a := range g.Projection.NonKeyAttributes {
		if v, ok := item[a]; ok {
			projected[a] = v
		}
	}
	return keys, projected
}

// gsiUnits is the write units index g takes when an item changes from
// before to after (nil: no item).
func gsiUnits(g types.GlobalSecondaryIndex, before, after map[string]types.AttributeValue) int {
	bk, bp := gsiEntry(g, before)
	ak, ap := gsiEntry(g, after)
	size := func(k, p map[string]types.AttributeValue) int { return kbUnits(ItemSize(k) + ItemSize(p) + 100) }
	switch {
	case bk == nil && ak == nil:
		return 0
	case bk == nil:
		return size(ak, ap)
	case ak == nil:
		return size(bk, bp)
	case !reflect.DeepEqual(bk, ak):
		return size(bk, bp) + size(ak, ap)
	case !reflect.DeepEqual(bp, ap):
		return max(size(bk, bp), size(ak, ap))
	}
	return 0
}

func (m *meter) PutItem(ctx context.Context, in *dynamodb.PutItemInput, opts ...func(*dynamodb.Options)) (out *dynamodb.PutItemOutput, err error) {
	key := map[string]types.AttributeValue{AttrPK: in.Item[AttrPK]}
	err = m.around(ctx, false, []map[string]types.AttributeValue{key}, func() error {
		out, err = m.DynamoDBAPI.PutItem(ctx, in, opts...)
		return err
	})
	return out, err
}

func (m *meter) UpdateItem(ctx context.Context, in *dynamodb.UpdateItemInput, opts ...func(*dynamodb.Options)) (out *dynamodb.UpdateItemOutput, err error) {
	err = m.around(ctx, false, []map[string]types.AttributeValue{in.Key}, func() error {
		out, err = m.DynamoDBAPI.UpdateItem(ctx, in, opts...)
		return err
	})
	return out, err
}

func (m *meter) TransactWriteItems(ctx context.Context, in *dynamodb.TransactWriteItemsInput, opts ...func(*dynamodb.Options)) (out *dynamodb.TransactWriteItemsOutput, err error) {
	var keys []map[string]types.AttributeValue
	for _, it := range in.TransactItems {
		switch {
		case it.Put != nil:
			keys = append(keys, map[string]types.AttributeValue{AttrPK: it.Put.Item[AttrPK]})
		case it.Update != nil:
			keys = append(keys, it.Update.Key)
		case it.Delete != nil:
			keys = append(keys, it.Delete.Key)
		}
	}
	err = m.around(ctx, true, keys, func() error {
		out, err = m.DynamoDBAPI.TransactWriteItems(ctx, in, opts...)
		return err
	})
	return out, err
}

// TestWriteCapacity measures the write units of a no-op job's life, keyed
// and not, and pins the figures the package doc states.
func TestWriteCapacity(t *testing.T) {
	t.Parallel()
	table := newTestTable(t)
	m := newMeter(t, table)
	d, err := OpenDriver(t.Context(), m, table, nil)
	require.NoError(t, err)
	store := jobstore.New(d, nil)
	defer store.Close()
	ctx := t.Context()

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
		got["create"] = m.take()
		cur, err := store.ApplyOne(ctx, policy.Start(job.Message{ID: j.ID}, "ip-10-0-0-1.ec2.internal/4242", now))
		require.NoError(t, err)
		got["start"] = m.take()
		cur, err = store.ApplyOne(ctx, policy.Renew(cur, now.Add(10*time.Second), nil))
		require.NoError(t, err)
		got["renew"] = m.take()
		_, err = store.ApplyOne(ctx, policy.Finish(cur, now.Add(20*time.Second), job.End{Outcome: job.OutcomeSucceeded}))
		require.NoError(t, err)
		got["finish"] = m.take()
		t.Logf("key %q: write units %v; create+start+finish = %d; job item sizes %v bytes",
			c.key, got, got["create"]+got["start"]+got["finish"], m.sizes)
		require.Equal(t, c.want, got, "key %q", c.key)
		m.sizes = nil
	}
}

// TestProjectedOwnerIsFree checks the claim that projecting owner into the
// active index costs no write: every change job.Policy makes either
// leaves owner as it is or changes the entry's key too (or removes the
// entry), so it costs the index what it would cost a KEYS_ONLY index.
func TestProjectedOwnerIsFree(t *testing.T) {
	t.Parallel()
	var active types.GlobalSecondaryIndex
	for _, g := range CreateTableInput("t").GlobalSecondaryIndexes {
		if aws.ToString(g.IndexName) == IndexActive {
			active = g
		}
	}
	require.Contains(t, active.Projection.NonKeyAttributes, AttrOwner)
	keysOnly := active
	keysOnly.Projection = &types.Projection{ProjectionType: types.ProjectionTypeKeysOnly}

	now := t0
	after := func(cur *job.Job, c job.Change) *job.Job {
		n := cur.Clone()
		c.Set.Apply(n)
		return n
	}
	queued := newJob("k")
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
		before, next := encodeJob(st.cur), encodeJob(after(st.cur, st.c))
		if !reflect.DeepEqual(before[AttrOwner], next[AttrOwner]) {
			ownerChanges++
		}
		require.Equal(t, gsiUnits(keysOnly, before, next), gsiUnits(active, before, next),
			"%s: owner %v -> %v, %s %v -> %v", st.name, before[AttrOwner], next[AttrOwner], AttrDuePK, before[AttrDuePK], next[AttrDuePK])
	}
	require.Greater(t, ownerChanges, len(steps)/2, "most steps change the owner")

	// Whereas a change of owner alone would cost a write.
	before := encodeJob(running)
	moved := running.Clone()
	moved.Owner = "w9"
	require.Equal(t, 0, gsiUnits(keysOnly, before, encodeJob(moved)))
	require.Equal(t, 1, gsiUnits(active, before, encodeJob(moved)))
}

func must(c job.Change, ok bool) job.Change {
	if !ok {
		panic("no change")
	}
	return c
}
