package dynamojobstore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/jobfleet/jobfleet/pkg/errcode"
)

// DefaultTable is the job table's conventional name.
const DefaultTable = "jobfleet-jobs"

// The global secondary indexes of the job table (see the package doc).
const (
	IndexDue   = "due"
	IndexOwned = "owned"
	IndexList  = "list"
)

// TableAPI is the part of the DynamoDB client CreateTable uses;
// *dynamodb.Client satisfies it.
type TableAPI interface {
	CreateTable(context.Context, *dynamodb.CreateTableInput, ...func(*dynamodb.Options)) (*dynamodb.CreateTableOutput, error)
	DescribeTable(context.Context, *dynamodb.DescribeTableInput, ...func(*dynamodb.Options)) (*dynamodb.DescribeTableOutput, error)
	UpdateTimeToLive(context.Context, *dynamodb.UpdateTimeToLiveInput, ...func(*dynamodb.Options)) (*dynamodb.UpdateTimeToLiveOutput, error)
	DescribeTimeToLive(context.Context, *dynamodb.DescribeTimeToLiveInput, ...func(*dynamodb.Options)) (*dynamodb.DescribeTimeToLiveOutput, error)
	PutItem(context.Context, *dynamodb.PutItemInput, ...func(*dynamodb.Options)) (*dynamodb.PutItemOutput, error)
}

var _ TableAPI = (*dynamodb.Client)(nil)

// CreateTableInput is the definition of a job table named name: on-demand
// billing, partition key pk, and the due, owned and list indexes. Time to
// live on AttrTTL is set separately (UpdateTimeToLive). Infrastructure
// templates mirror this.
func CreateTableInput(name string) *dynamodb.CreateTableInput {
	attr := func(n string, t types.ScalarAttributeType) types.AttributeDefinition {
		return types.AttributeDefinition{AttributeName: aws.String(n), AttributeType: t}
	}
	keys := func(hash, rng string) []types.KeySchemaElement {
		return []types.KeySchemaElement{
			{AttributeName: aws.String(hash), KeyType: types.KeyTypeHash},
			{AttributeName: aws.String(rng), KeyType: types.KeyTypeRange},
		}
	}
	return &dynamodb.CreateTableInput{
		TableName:   aws.String(name),
		BillingMode: types.BillingModePayPerRequest,
		AttributeDefinitions: []types.AttributeDefinition{
			attr(AttrPK, types.ScalarAttributeTypeS),
			attr(AttrDuePK, types.ScalarAttributeTypeS),
			attr(AttrDueAt, types.ScalarAttributeTypeN),
			attr(AttrOwner, types.ScalarAttributeTypeS),
			attr(AttrID, types.ScalarAttributeTypeS),
			attr(AttrListPK, types.ScalarAttributeTypeS),
		},
		KeySchema: []types.KeySchemaElement{{AttributeName: aws.String(AttrPK), KeyType: types.KeyTypeHash}},
		GlobalSecondaryIndexes: []types.GlobalSecondaryIndex{
			{
				IndexName:  aws.String(IndexDue),
				KeySchema:  keys(AttrDuePK, AttrDueAt),
				Projection: &types.Projection{ProjectionType: types.ProjectionTypeKeysOnly},
			},
			{
				IndexName:  aws.String(IndexOwned),
				KeySchema:  keys(AttrOwner, AttrID),
				Projection: &types.Projection{ProjectionType: types.ProjectionTypeKeysOnly},
			},
			{
				IndexName:  aws.String(IndexList),
				KeySchema:  keys(AttrListPK, AttrID),
				Projection: &types.Projection{ProjectionType: types.ProjectionTypeInclude, NonKeyAttributes: []string{AttrType}},
			},
		},
	}
}

// TableOptions configure CreateTable. Nil options mean defaults.
type TableOptions struct {
	// Layout is the table's index layout; zero means DefaultLayout.
	Layout Layout
	// Tags are set on a table CreateTable creates.
	Tags []types.Tag
	// PollInterval is how often CreateTable checks whether the table is
	// ACTIVE; default 1s.
	PollInterval time.Duration
}

// CreateTable creates the job table name (CreateTableInput) unless it
// exists, waits until the table and its indexes are ACTIVE or ctx ends,
// records its Layout unless recorded, and enables time to live on AttrTTL
// unless enabled. It is idempotent: an existing table is left as it is (its
// indexes are not checked here; Open checks them), but a table whose
// recorded layout differs from opts.Layout is errcode.FailedPrecondition.
func CreateTable(ctx context.Context, client TableAPI, name string, opts *TableOptions) error {
	if opts == nil {
		opts = &TableOptions{}
	}
	layout := opts.Layout
	if layout == (Layout{}) {
		layout = DefaultLayout
	}
	if !layout.valid() {
		return errcode.New(errcode.InvalidArgument, "create job table %q: shard counts must be 1..%d, not %+v", name, MaxShards, layout)
	}
	poll := opts.PollInterval
	if poll <= 0 {
		poll = time.Second
	}
	in := CreateTableInput(name)
	in.Tags = opts.Tags
	_, err := client.CreateTable(ctx, in)
	var inUse *types.ResourceInUseException
	if err != nil && !errors.As(err, &inUse) {
		return mapErr(ctx, err, "create job table %q", name)
	}
	if err := waitActive(ctx, client, name, poll); err != nil {
		return err
	}
	if err := recordLayout(ctx, client, name, layout); err != nil {
		return err
	}
	ttl, err := client.DescribeTimeToLive(ctx, &dynamodb.DescribeTimeToLiveInput{TableName: aws.String(name)})
	if err != nil {
		return mapErr(ctx, err, "describe time to live of job table %q", name)
	}
	if d := ttl.TimeToLiveDescription; d != nil && aws.ToString(d.AttributeName) == AttrTTL &&
		(d.TimeToLiveStatus == types.TimeToLiveStatusEnabled || d.TimeToLiveStatus == types.TimeToLiveStatusEnabling) {
		return nil
	}
	_, err = client.UpdateTimeToLive(ctx, &dynamodb.UpdateTimeToLiveInput{
		TableName:               aws.String(name),
		TimeToLiveSpecification: &types.TimeToLiveSpecification{AttributeName: aws.String(AttrTTL), Enabled: aws.Bool(true)},
	})
	return mapErr(ctx, err, "enable time to live on job table %q", name)
}

// recordLayout writes the table's layout item unless it exists, and checks
// an existing one.
func recordLayout(ctx context.Context, client TableAPI, name string, layout Layout) error {
	_, err := client.PutItem(ctx, &dynamodb.PutItemInput{
		TableName:                           aws.String(name),
		Item:                                layout.item(),
		ConditionExpression:                 aws.String("attribute_not_exists(#pk)"),
		ExpressionAttributeNames:            map[string]string{"#pk": AttrPK},
		ReturnValuesOnConditionCheckFailure: types.ReturnValuesOnConditionCheckFailureAllOld,
	})
	var ccf *types.ConditionalCheckFailedException
	if errors.As(err, &ccf) {
		have, err := layoutOf(ccf.Item)
		if err != nil {
			return fmt.Errorf("create job table %q: %w", name, err)
		}
		if have != layout {
			return errcode.New(errcode.FailedPrecondition, "create job table %q: it exists with layout %+v, not %+v", name, have, layout)
		}
		return nil
	}
	return mapErr(ctx, err, "record the layout of job table %q", name)
}

func waitActive(ctx context.Context, client TableAPI, name string, poll time.Duration) error {
	for {
		out, err := client.DescribeTable(ctx, &dynamodb.DescribeTableInput{TableName: aws.String(name)})
		var notFound *types.ResourceNotFoundException
		if err != nil && !errors.As(err, &notFound) { // just created: may not be visible yet
			return mapErr(ctx, err, "describe job table %q", name)
		}
		if err == nil && active(out.Table) {
			return nil
		}
		select {
		case <-ctx.Done():
			return errcode.Wrap(errcode.Canceled, ctx.Err(), "wait for job table %q to become active", name)
		case <-time.After(poll):
		}
	}
}

func active(t *types.TableDescription) bool {
	if t == nil || t.TableStatus != types.TableStatusActive {
		return false
	}
	for _, ix := range t.GlobalSecondaryIndexes {
		if ix.IndexStatus != types.IndexStatusActive {
			return false
		}
	}
	return true
}
