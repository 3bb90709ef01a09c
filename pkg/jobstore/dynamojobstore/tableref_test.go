package dynamojobstore

import (
	"strconv"
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

const testTableARN = "arn:aws:dynamodb:us-east-1:210987654321:table/jobs"

// withRegion gives a fake the Options method of *dynamodb.Client.
type withRegion struct {
	*fakeClient
	region string
}

func (w withRegion) Options() dynamodb.Options { return dynamodb.Options{Region: w.region} }

// A table given by ARN is sent as given in every call: TableName, the key
// of RequestItems; index names stay the index's.
func TestOpenByARN(t *testing.T) {
	t.Parallel()
	j := newJob("")
	for _, answerUnder := range []string{testTableARN, "jobs"} {
		f := &fakeClient{
			describe: func(in *dynamodb.DescribeTableInput) (*dynamodb.DescribeTableOutput, error) {
				require.Equal(t, testTableARN, aws.ToString(in.TableName))
				return describeTable(CreateTableInput("jobs")), nil
			},
			query: func(in *dynamodb.QueryInput) (*dynamodb.QueryOutput, error) {
				require.Equal(t, testTableARN, aws.ToString(in.TableName))
				require.Contains(t, []string{IndexActive, IndexList}, aws.ToString(in.IndexName))
				for _, v := range in.ExpressionAttributeValues {
					if sv, ok := v.(*types.AttributeValueMemberS); ok && (sv.Value == DefaultLayout.duePK(job.Queued, j.ID) || sv.Value == DefaultLayout.listPK(j.ID)) {
						return &dynamodb.QueryOutput{Items: []map[string]types.AttributeValue{
							{AttrPK: s(jobPK(j.ID)), AttrID: s(j.ID), AttrDueAt: n(millis(j.DueAt))},
						}}, nil
					}
				}
				return &dynamodb.QueryOutput{}, nil // the job's shard only
			},
			batchGet: func(in *dynamodb.BatchGetItemInput) (*dynamodb.BatchGetItemOutput, error) {
				require.Len(t, in.RequestItems, 1)
				require.Contains(t, in.RequestItems, testTableARN)
				return &dynamodb.BatchGetItemOutput{Responses: map[string][]map[string]types.AttributeValue{
					answerUnder: {encodeJob(j)},
				}}, nil
			},
			put: func(in *dynamodb.PutItemInput) (*dynamodb.PutItemOutput, error) {
				require.Equal(t, testTableARN, aws.ToString(in.TableName))
				return &dynamodb.PutItemOutput{}, nil
			},
		}
		d, err := OpenDriver(t.Context(), withRegion{f, "us-east-1"}, testTableARN, nil)
		require.NoError(t, err)
		require.Equal(t, "jobs", d.name)
		res, err := d.Create(t.Context(), []*job.Job{j})
		require.NoError(t, err)
		require.NoError(t, res[0].Err)
		due, err := d.Due(t.Context(), job.Queued, j.DueAt.Add(time.Hour), 10)
		require.NoError(t, err)
		require.Equal(t, []string{j.ID}, ids(due), "the answer keyed by %s is read", answerUnder)
		page, err := d.List(t.Context(), jobstore.ListQuery{Limit: 10})
		require.NoError(t, err)
		require.Equal(t, []string{j.ID}, ids(page.Jobs))
		require.NoError(t, d.Close())
	}
}

// Keys left unprocessed are read one by one, under either key.
func TestUnprocessedKeysByARN(t *testing.T) {
	t.Parallel()
	a, b := newJob(""), newJob("")
	f := &fakeClient{
		describe: func(*dynamodb.DescribeTableInput) (*dynamodb.DescribeTableOutput, error) {
			return describeTable(CreateTableInput("jobs")), nil
		},
		batchGet: func(*dynamodb.BatchGetItemInput) (*dynamodb.BatchGetItemOutput, error) {
			return &dynamodb.BatchGetItemOutput{
				UnprocessedKeys: map[string]types.KeysAndAttributes{
					testTableARN: {Keys: []map[string]types.AttributeValue{{AttrPK: s(jobPK(a.ID))}}},
					"jobs":       {Keys: []map[string]types.AttributeValue{{AttrPK: s(jobPK(b.ID))}}},
				},
			}, nil
		},
		get: func(in *dynamodb.GetItemInput) (*dynamodb.GetItemOutput, error) {
			require.Equal(t, testTableARN, aws.ToString(in.TableName))
			for _, j := range []*job.Job{a, b} {
				if pkOf(in.Key) == jobPK(j.ID) {
					return &dynamodb.GetItemOutput{Item: encodeJob(j)}, nil
				}
			}
			return &dynamodb.GetItemOutput{}, nil
		},
	}
	d, err := OpenDriver(t.Context(), f, testTableARN, nil)
	require.NoError(t, err)
	got, err := d.fetch(t.Context(), []string{a.ID, b.ID}, "test")
	require.NoError(t, err)
	require.Len(t, got, 2)
}

func TestOpenRefusesBadTableARN(t *testing.T) {
	t.Parallel()
	for _, bad := range []string{
		"arn:",
		"arn:aws:dynamodb",
		"arn:aws:dynamodb:us-east-1:123456789012",
		"arn::dynamodb:us-east-1:123456789012:table/jobs",                      // no partition
		"arn:aws:sqs:us-east-1:123456789012:jobs",                              // another service
		"arn:aws:dynamodb::123456789012:table/jobs",                            // no region
		"arn:aws:dynamodb:us-east-1::table/jobs",                               // no account
		"arn:aws:dynamodb:us-east-1:123456789012:jobs",                         // no resource type
		"arn:aws:dynamodb:us-east-1:123456789012:global-table/jobs",            // not a table
		"arn:aws:dynamodb:us-east-1:123456789012:table/jobs/index/active",      // an index
		"arn:aws:dynamodb:us-east-1:123456789012:table/jobs/stream/2024-01-01", // a stream
		"arn:aws:dynamodb:us-east-1:123456789012:table/",                       // no name
		"arn:aws:dynamodb:us-east-1:123456789012:table/jo",                     // too short
		"arn:aws:dynamodb:us-east-1:123456789012:table/jobs!",                  // not a name
	} {
		f := &fakeClient{}
		_, err := OpenDriver(t.Context(), f, bad, nil)
		requireCode(t, errcode.InvalidArgument, err)
		require.ErrorContains(t, err, strconv.Quote(bad), "the message names the value")
		require.ErrorContains(t, err, "not a DynamoDB table ARN")
		require.Empty(t, inputs[*dynamodb.DescribeTableInput](f), "refused before any call")
	}

	// A client calls one region.
	f := &fakeClient{}
	_, err := OpenDriver(t.Context(), withRegion{f, "eu-west-1"}, testTableARN, nil)
	requireCode(t, errcode.InvalidArgument, err)
	require.ErrorContains(t, err, testTableARN)
	require.ErrorContains(t, err, "region us-east-1, but the DynamoDB client calls region eu-west-1")
	require.Empty(t, inputs[*dynamodb.DescribeTableInput](f))
}

// A table opened by the ARN DynamoDB reports for it is that table: a keyed
// job goes through create, the indexes, start and a transactional finish.
func TestTableARNOnEndpoint(t *testing.T) {
	t.Parallel()
	name := newTestTable(t)
	desc, err := dynamodb.NewFromConfig(awstest.Config(t)).DescribeTable(t.Context(), &dynamodb.DescribeTableInput{TableName: aws.String(name)})
	require.NoError(t, err)
	arn := aws.ToString(desc.Table.TableArn)
	require.Regexp(t, `^arn:aws:dynamodb:`+awstest.Region+`:\d{12}:table/`+name+`$`, arn)

	ctx := t.Context()
	d, err := OpenDriver(ctx, newTestClient(t), arn, nil)
	require.NoError(t, err)
	defer d.Close()
	require.Equal(t, testLayout, d.layout, "read from the table")
	byName, err := OpenDriver(ctx, newTestClient(t), name, nil)
	require.NoError(t, err)
	defer byName.Close()

	j := policy.New(&job.Submission{Type: "t", Key: "k1"}, job.DefaultLimits, job.NewID(t0), t0)
	res, err := d.Create(ctx, []*job.Job{j})
	require.NoError(t, err)
	require.NoError(t, res[0].Err)
	got, err := byName.Get(ctx, j.ID)
	require.NoError(t, err)
	require.Equal(t, j.ID, got.ID, "one table")

	due, err := d.Due(ctx, job.Queued, t0.Add(time.Hour), 10)
	require.NoError(t, err)
	require.Equal(t, []string{j.ID}, ids(due))
	page, err := d.List(ctx, jobstore.ListQuery{Limit: 10})
	require.NoError(t, err)
	require.Equal(t, []string{j.ID}, ids(page.Jobs))
	changed, err := d.Apply(ctx, []job.Change{policy.Start(job.Message{ID: j.ID}, "w1", t0)})
	require.NoError(t, err)
	require.NoError(t, changed[0].Err)
	owned, err := d.Owned(ctx, "w1", 10)
	require.NoError(t, err)
	require.Equal(t, []string{j.ID}, ids(owned))

	finish := policy.Finish(changed[0].Job, t0.Add(time.Second), job.End{Outcome: job.OutcomeSucceeded})
	finish.Key = "k1"
	changed, err = d.Apply(ctx, []job.Change{finish})
	require.NoError(t, err)
	require.NoError(t, changed[0].Err)
	require.Equal(t, job.Succeeded, changed[0].Job.Status)
	// The key was released: a new job may take it.
	k := policy.New(&job.Submission{Type: "t", Key: "k1", Payload: []byte(`2`)}, job.DefaultLimits, job.NewID(t0.Add(time.Minute)), t0)
	res, err = byName.Create(ctx, []*job.Job{k})
	require.NoError(t, err)
	require.NoError(t, res[0].Err)

	_, err = OpenDriver(ctx, newTestClient(t), arn+"-missing", nil)
	requireCode(t, errcode.NotFound, err)
	_, err = OpenDriver(ctx, newTestClient(t), "arn:aws:dynamodb:eu-west-1:123456789012:table/"+name, nil)
	requireCode(t, errcode.InvalidArgument, err)
}
