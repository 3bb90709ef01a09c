package dynamojobstore

import (
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
	indexes := map[string]types.ProjectionType{}
	for _, ix := range desc.Table.GlobalSecondaryIndexes {
		indexes[aws.ToString(ix.IndexName)] = ix.Projection.ProjectionType
	}
	require.Equal(t, map[string]types.ProjectionType{
		IndexDue: types.ProjectionTypeKeysOnly, IndexOwned: types.ProjectionTypeKeysOnly, IndexList: types.ProjectionTypeInclude,
	}, indexes)

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
