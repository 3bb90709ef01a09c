package dynamojobstore

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/stretchr/testify/require"

	"github.com/jobfleet/jobfleet/pkg/awstest"
	"github.com/jobfleet/jobfleet/pkg/errcode"
	"github.com/jobfleet/jobfleet/pkg/job"
	"github.com/jobfleet/jobfleet/pkg/jobstore"
)

// Tests against the AWS endpoint (moto) for what the conformance suite does
// not reach.

func TestCreateTable(t *testing.T) {
	t.Parallel()
	c := dynamodb.NewFromConfig(awstest.Config(t))
	name := newTestTable(t) // creates it once
	require.NoError(t, CreateTable(t.Context(), c, name, &TableOptions{Layout: testLayout}), "again: nothing to do")
	err := CreateTable(t.Context(), c, name, nil)
	requireCode(t, errcode.FailedPrecondition, err)
	require.Contains(t, err.Error(), "layout")
	err = CreateTable(t.Context(), c, name, &TableOptions{Layout: Layout{DueShards: MaxShards + 1, ListShards: 1}})
	requireCode(t, errcode.InvalidArgument, err)
	d, err := OpenDriver(t.Context(), c, name, nil)
	require.NoError(t, err)
	require.Equal(t, testLayout, d.layout, "read from the table")

	ttl, err := c.DescribeTimeToLive(t.Context(), &dynamodb.DescribeTimeToLiveInput{TableName: aws.String(name)})
	require.NoError(t, err)
	require.Equal(t, AttrTTL, aws.ToString(ttl.TimeToLiveDescription.AttributeName))
	require.Equal(t, types.TimeToLiveStatusEnabled, ttl.TimeToLiveDescription.TimeToLiveStatus)

	desc, err := c.DescribeTable(t.Context(), &dynamodb.DescribeTableInput{TableName: aws.String(name)})
	require.NoError(t, err)
	require.Equal(t, types.TableStatusActive, desc.Table.TableStatus)
	indexes := map[string]string{}
	for _, ix := range desc.Table.GlobalSecondaryIndexes {
		var keys []string
		for _, k := range ix.KeySchema {
			keys = append(keys, aws.ToString(k.AttributeName)+" "+string(k.KeyType))
		}
		indexes[aws.ToString(ix.IndexName)] = fmt.Sprintf("%v %s %v", keys, ix.Projection.ProjectionType, ix.Projection.NonKeyAttributes)
	}
	require.Equal(t, map[string]string{
		IndexActive: "[due_pk HASH due_at RANGE] INCLUDE [owner]",
		IndexList:   "[list_pk HASH id RANGE] INCLUDE [type]",
	}, indexes)
	attrs := map[string]types.ScalarAttributeType{}
	for _, a := range desc.Table.AttributeDefinitions {
		attrs[aws.ToString(a.AttributeName)] = a.AttributeType
	}
	require.Equal(t, map[string]types.ScalarAttributeType{
		AttrPK: "S", AttrDuePK: "S", AttrDueAt: "N", AttrListPK: "S", AttrID: "S",
	}, attrs, "owner is no key any more")

	_, err = OpenDriver(t.Context(), c, name+"-missing", nil)
	requireCode(t, errcode.NotFound, err)
}

// The history trim removes the entry MaxHistory attempts older than the one
// written, whether or not it exists (DynamoDB accepts REMOVE of a missing
// map key; so must moto).
func TestHistoryTrimOfMissingEntry(t *testing.T) {
	t.Parallel()
	d := openTestDriver(t)
	ctx := t.Context()
	j := newJob("")
	j.Attempt = 20
	j.History = []job.Attempt{
		{Attempt: 3, Owner: "w0", StartedAt: t0.Add(-time.Hour)},
		{Attempt: 20, Owner: "w1", StartedAt: t0.Add(-time.Minute), EndedAt: t0, Outcome: job.OutcomeHandedBack},
	}
	res, err := d.Create(ctx, []*job.Job{j})
	require.NoError(t, err)
	require.NoError(t, res[0].Err)

	start := policy.Start(job.Message{ID: j.ID, Attempt: 20}, "w2", t0)
	u := d.layout.buildUpdate(start, "")
	require.Contains(t, u.update, " REMOVE ")
	require.Equal(t, "11", u.e.names[u.e.byName["11"]], "attempt 21 trims attempt 11, which is not there")

	changed, err := d.Apply(ctx, []job.Change{start})
	require.NoError(t, err)
	require.NoError(t, changed[0].Err)
	want := j.Clone()
	start.Set.Apply(want)
	require.Equal(t, []int{3, 20, 21}, attempts(changed[0].Job.History))
	require.Equal(t, attempts(want.History), attempts(changed[0].Job.History), "as job.PutHistory")

	// Attempts 22 and 23 trim 12 and 13 (not there either) and keep 3: the
	// map is trimmed by attempt number. (job.PutHistory keeps 3 as well,
	// the history being shorter than MaxHistory.)
	next := changed[0].Job
	for range 2 {
		next, err = d.Get(ctx, next.ID)
		require.NoError(t, err)
		c := policy.Finish(next, t0, job.End{Outcome: job.OutcomeHandedBack})
		res, err := d.Apply(ctx, []job.Change{c})
		require.NoError(t, err)
		require.NoError(t, res[0].Err)
		res, err = d.Apply(ctx, []job.Change{policy.Start(job.Message{ID: next.ID, Attempt: res[0].Job.Attempt}, "w3", t0)})
		require.NoError(t, err)
		require.NoError(t, res[0].Err)
		next = res[0].Job
	}
	require.Equal(t, []int{3, 20, 21, 22, 23}, attempts(next.History))
}

func attempts(h []job.Attempt) []int {
	out := make([]int, len(h))
	for i, a := range h {
		out[i] = a.Attempt
	}
	return out
}

// A List page with a status filter examines a bounded number of records: it
// comes back short, with a cursor after the last record examined, when the
// filter rejects them all.
func TestListPagesAreBounded(t *testing.T) {
	t.Parallel()
	d := openTestDriver(t)
	d.listBudget = 4
	ctx := t.Context()
	var all []*job.Job
	for i := range 10 {
		j := policy.New(&job.Submission{Type: "t"}, job.DefaultLimits, job.NewID(t0.Add(time.Duration(i)*time.Millisecond)), t0)
		all = append(all, j)
	}
	res, err := d.Create(ctx, all)
	require.NoError(t, err)
	for _, r := range res {
		require.NoError(t, r.Err)
	}
	// The two oldest fail.
	for _, j := range all[:2] {
		res, err := d.Apply(ctx, []job.Change{policy.DeadLetter(j, t0, "dlq")})
		require.NoError(t, err)
		require.NoError(t, res[0].Err)
	}

	q := jobstore.ListQuery{Status: job.Failed, Limit: 2} // a page examines max(limit+1, 4) records
	p, err := d.List(ctx, q)
	require.NoError(t, err)
	require.Empty(t, p.Jobs, "the 4 newest are not failed")
	require.Equal(t, all[6].ID, p.Next, "the page ends after the 4th newest")

	var got []string
	pages := 0
	for {
		p, err := d.List(ctx, q)
		require.NoError(t, err)
		pages++
		got = append(got, ids(p.Jobs)...)
		if p.Next == "" {
			break
		}
		q.Cursor = p.Next
	}
	require.Equal(t, []string{all[1].ID, all[0].ID}, got)
	require.Equal(t, 3, pages)

	// Unfiltered pages are not cut short: every record examined matches.
	p, err = d.List(ctx, jobstore.ListQuery{Limit: 10})
	require.NoError(t, err)
	require.Len(t, p.Jobs, 10)
	require.Empty(t, p.Next)
}

// A table of the earlier layout (indexes due, owned, list) is refused by
// Open and CreateTable until it has the active index, and migrates as the
// package doc says: add active (the jobs already stored are in it), open,
// then delete owned and due.
func TestEarlierLayoutMigration(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	c := dynamodb.NewFromConfig(awstest.Config(t))
	name := awstest.Name(t)
	_, err := c.CreateTable(ctx, earlierTableInput(name))
	require.NoError(t, err)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_, err := c.DeleteTable(ctx, &dynamodb.DeleteTableInput{TableName: aws.String(name)})
		require.NoError(t, err)
	})
	_, err = waitActive(ctx, c, name, 100*time.Millisecond)
	require.NoError(t, err)

	// Jobs as the earlier version wrote them (the items are alike): one
	// queued, one running on w1. The table has no layout item.
	queued, run := newJob(""), newJob("")
	policy.Start(job.Message{ID: run.ID}, "w1", t0).Set.Apply(run)
	for _, j := range []*job.Job{queued, run} {
		_, err := c.PutItem(ctx, &dynamodb.PutItemInput{TableName: aws.String(name), Item: DefaultLayout.encodeJob(j)})
		require.NoError(t, err)
	}

	_, err = OpenDriver(ctx, newTestClient(t), name, nil)
	requireCode(t, errcode.FailedPrecondition, err)
	require.Contains(t, err.Error(), `earlier index layout ("due", "owned")`)
	err = CreateTable(ctx, c, name, &TableOptions{PollInterval: 100 * time.Millisecond})
	requireCode(t, errcode.FailedPrecondition, err)
	require.Contains(t, err.Error(), `create job table: table "`+name+`" has the earlier index layout`)

	update := func(u types.GlobalSecondaryIndexUpdate, attrs ...types.AttributeDefinition) {
		t.Helper()
		_, err := c.UpdateTable(ctx, &dynamodb.UpdateTableInput{
			TableName:                   aws.String(name),
			AttributeDefinitions:        attrs,
			GlobalSecondaryIndexUpdates: []types.GlobalSecondaryIndexUpdate{u},
		})
		require.NoError(t, err)
		_, err = waitActive(ctx, c, name, 100*time.Millisecond)
		require.NoError(t, err)
	}
	def := CreateTableInput(name)
	var active types.GlobalSecondaryIndex
	for _, ix := range def.GlobalSecondaryIndexes {
		if aws.ToString(ix.IndexName) == IndexActive {
			active = ix
		}
	}
	update(types.GlobalSecondaryIndexUpdate{Create: &types.CreateGlobalSecondaryIndexAction{
		IndexName: active.IndexName, KeySchema: active.KeySchema, Projection: active.Projection,
	}},
		types.AttributeDefinition{AttributeName: aws.String(AttrDuePK), AttributeType: types.ScalarAttributeTypeS},
		types.AttributeDefinition{AttributeName: aws.String(AttrDueAt), AttributeType: types.ScalarAttributeTypeN})

	check := func() {
		t.Helper()
		d, err := OpenDriver(ctx, newTestClient(t), name, nil)
		require.NoError(t, err)
		defer d.Close()
		require.Equal(t, DefaultLayout, d.layout)
		due, err := d.Due(ctx, job.Queued, queued.DueAt.Add(time.Millisecond), 10)
		require.NoError(t, err)
		require.Equal(t, []string{queued.ID}, ids(due))
		owned, err := d.Owned(ctx, "w1", 10)
		require.NoError(t, err)
		require.Equal(t, []string{run.ID}, ids(owned))
	}
	check() // beside the earlier indexes
	update(types.GlobalSecondaryIndexUpdate{Delete: &types.DeleteGlobalSecondaryIndexAction{IndexName: aws.String("owned")}})
	update(types.GlobalSecondaryIndexUpdate{Delete: &types.DeleteGlobalSecondaryIndexAction{IndexName: aws.String("due")}})
	check()
	require.NoError(t, CreateTable(ctx, c, name, &TableOptions{PollInterval: 100 * time.Millisecond}), "now as it creates it")
}

// Owned reads the RUNNING shards to their end, however the filter leaves
// the pages: with one entry a page, most pages hold no match.
func TestOwnedAmongOthers(t *testing.T) {
	t.Parallel()
	d := openTestDriver(t)
	d.ownedPage = 1
	ctx := t.Context()
	var jobs []*job.Job
	for i := range 12 {
		jobs = append(jobs, policy.New(&job.Submission{Type: "t"}, job.DefaultLimits, job.NewID(t0.Add(time.Duration(i)*time.Millisecond)), t0))
	}
	res, err := d.Create(ctx, jobs)
	require.NoError(t, err)
	var starts []job.Change
	want := map[string][]string{}
	for i, j := range jobs {
		if i == 11 {
			break // stays queued
		}
		owner := []string{"w1", "w2", "w3"}[i%3]
		require.NoError(t, res[i].Err)
		starts = append(starts, policy.Start(job.Message{ID: j.ID}, owner, t0))
		want[owner] = append(want[owner], j.ID)
	}
	changed, err := d.Apply(ctx, starts)
	require.NoError(t, err)
	for _, r := range changed {
		require.NoError(t, r.Err)
	}
	for owner, wantIDs := range want {
		got, err := d.Owned(ctx, owner, 100)
		require.NoError(t, err)
		require.Equal(t, wantIDs, ids(got), owner)
	}
	got, err := d.Owned(ctx, "w1", 2)
	require.NoError(t, err)
	require.Equal(t, want["w1"][:2], ids(got), "the first 2 by id")
	got, err = d.Owned(ctx, "w4", 100)
	require.NoError(t, err)
	require.Empty(t, got)
}
