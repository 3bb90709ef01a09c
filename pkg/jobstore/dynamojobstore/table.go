package dynamojobstore

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
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
	// IndexActive holds the active jobs by "<status>#<shard>" and due
	// time, with their owner: Due and Owned read it.
	IndexActive = "active"
	// IndexList holds every job by "jobs#<shard>" and id, with its type:
	// List reads it.
	IndexList = "list"
)

// oldIndexes are the indexes of the table's earlier layout, which Open
// names when it finds them instead of IndexActive: "due" had IndexActive's
// keys without owner, and "owned" indexed owner.
var oldIndexes = []string{"due", "owned"}

// tableIndex is one global secondary index of the job table: how
// CreateTableInput defines it, and what Open requires of a table.
type tableIndex struct {
	Name      string
	Hash      string // partition key, a string
	Range     string // sort key, of type RangeType
	RangeType types.ScalarAttributeType
	Include   []string // non-key attributes projected: the queries filter on them
}

var tableIndexes = []tableIndex{
	{Name: IndexActive, Hash: AttrDuePK, Range: AttrDueAt, RangeType: types.ScalarAttributeTypeN, Include: []string{AttrOwner}},
	{Name: IndexList, Hash: AttrListPK, Range: AttrID, RangeType: types.ScalarAttributeTypeS, Include: []string{AttrType}},
}

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
// billing, partition key pk, and the active and list indexes. Time to live
// on AttrTTL is set separately (UpdateTimeToLive). Infrastructure templates
// mirror this.
func CreateTableInput(name string) *dynamodb.CreateTableInput {
	in := &dynamodb.CreateTableInput{
		TableName:   aws.String(name),
		BillingMode: types.BillingModePayPerRequest,
		AttributeDefinitions: []types.AttributeDefinition{
			{AttributeName: aws.String(AttrPK), AttributeType: types.ScalarAttributeTypeS},
		},
		KeySchema: []types.KeySchemaElement{{AttributeName: aws.String(AttrPK), KeyType: types.KeyTypeHash}},
	}
	defined := map[string]bool{AttrPK: true}
	define := func(attr string, t types.ScalarAttributeType) {
		if !defined[attr] {
			defined[attr] = true
			in.AttributeDefinitions = append(in.AttributeDefinitions, types.AttributeDefinition{AttributeName: aws.String(attr), AttributeType: t})
		}
	}
	for _, ix := range tableIndexes {
		define(ix.Hash, types.ScalarAttributeTypeS)
		define(ix.Range, ix.RangeType)
		in.GlobalSecondaryIndexes = append(in.GlobalSecondaryIndexes, types.GlobalSecondaryIndex{
			IndexName: aws.String(ix.Name),
			KeySchema: []types.KeySchemaElement{
				{AttributeName: aws.String(ix.Hash), KeyType: types.KeyTypeHash},
				{AttributeName: aws.String(ix.Range), KeyType: types.KeyTypeRange},
			},
			Projection: &types.Projection{ProjectionType: types.ProjectionTypeInclude, NonKeyAttributes: slices.Clone(ix.Include)},
		})
	}
	return in
}

// checkIndexes returns errcode.FailedPrecondition, prefixed with doing,
// unless table t has the indexes the driver queries (tableIndexes), with
// their keys, at least their projections, and queryable. Other indexes are
// no error (they only cost writes): that lets a table be migrated from
// oldIndexes while older versions still use them.
func checkIndexes(doing, table string, t *types.TableDescription) error {
	fail := func(format string, args ...any) error {
		return errcode.New(errcode.FailedPrecondition, "%s: table %q %s", doing, table, fmt.Sprintf(format, args...))
	}
	have := map[string]types.GlobalSecondaryIndexDescription{}
	attrTypes := map[string]types.ScalarAttributeType{}
	if t != nil {
		for _, ix := range t.GlobalSecondaryIndexes {
			have[aws.ToString(ix.IndexName)] = ix
		}
		for _, a := range t.AttributeDefinitions {
			attrTypes[aws.ToString(a.AttributeName)] = a.AttributeType
		}
	}
	for _, want := range tableIndexes {
		ix, ok := have[want.Name]
		if !ok {
			var old []string
			for _, name := range oldIndexes {
				if _, ok := have[name]; ok {
					old = append(old, strconv.Quote(name))
				}
			}
			if want.Name == IndexActive && len(old) > 0 {
				return fail("has the earlier index layout (%s) and no index %q, which replaces them: add %q with UpdateTable "+
					"as dynamojobstore.CreateTableInput defines it (earlier versions keep working while it builds), "+
					"then delete %s once no earlier version runs; see the dynamojobstore package doc",
					strings.Join(old, ", "), IndexActive, IndexActive, strings.Join(old, " and "))
			}
			return fail("has no index %q (see dynamojobstore.CreateTableInput)", want.Name)
		}
		if problem := want.mismatch(ix, attrTypes); problem != "" {
			return fail("has an index %q that %s; delete it and add it again as dynamojobstore.CreateTableInput defines it", want.Name, problem)
		}
		if s := ix.IndexStatus; s != types.IndexStatusActive && s != types.IndexStatusUpdating {
			return fail("has an index %q that is %s, not yet (or no longer) queryable; wait until it is ACTIVE", want.Name, s)
		}
	}
	return nil
}

// mismatch says how ix differs from the index i, in what the driver relies
// on: its keys (attrTypes are the table's attribute definitions) and the
// attributes it projects; "" when it does not.
func (i tableIndex) mismatch(ix types.GlobalSecondaryIndexDescription, attrTypes map[string]types.ScalarAttributeType) string {
	var hash, rng string
	for _, k := range ix.KeySchema {
		switch k.KeyType {
		case types.KeyTypeHash:
			hash = aws.ToString(k.AttributeName)
		case types.KeyTypeRange:
			rng = aws.ToString(k.AttributeName)
		}
	}
	if hash != i.Hash || rng != i.Range || len(ix.KeySchema) != 2 {
		return fmt.Sprintf("has the keys %q, %q, not %q, %q", hash, rng, i.Hash, i.Range)
	}
	for attr, want := range map[string]types.ScalarAttributeType{i.Hash: types.ScalarAttributeTypeS, i.Range: i.RangeType} {
		if got, ok := attrTypes[attr]; ok && got != want {
			return fmt.Sprintf("has the key %q of type %s, not %s", attr, got, want)
		}
	}
	var p types.Projection
	if ix.Projection != nil {
		p = *ix.Projection
	}
	if p.ProjectionType == types.ProjectionTypeAll {
		return ""
	}
	for _, attr := range i.Include {
		if p.ProjectionType != types.ProjectionTypeInclude || !slices.Contains(p.NonKeyAttributes, attr) {
			return fmt.Sprintf("does not project %q (projection %s %v)", attr, p.ProjectionType, p.NonKeyAttributes)
		}
	}
	return ""
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
// unless enabled. It is idempotent: an existing table is left as it is, but
// one that Open would refuse (an index missing or different, as in a table
// of the earlier layout; see the package doc), or whose recorded layout
// differs from opts.Layout, is errcode.FailedPrecondition.
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
	desc, err := waitActive(ctx, client, name, poll)
	if err != nil {
		return err
	}
	if err := checkIndexes("create job table", name, desc); err != nil {
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

// waitActive waits until table name and its indexes are ACTIVE, and
// returns its description.
func waitActive(ctx context.Context, client TableAPI, name string, poll time.Duration) (*types.TableDescription, error) {
	for {
		out, err := client.DescribeTable(ctx, &dynamodb.DescribeTableInput{TableName: aws.String(name)})
		var notFound *types.ResourceNotFoundException
		if err != nil && !errors.As(err, &notFound) { // just created: may not be visible yet
			return nil, mapErr(ctx, err, "describe job table %q", name)
		}
		if err == nil && active(out.Table) {
			return out.Table, nil
		}
		select {
		case <-ctx.Done():
			return nil, errcode.Wrap(errcode.Canceled, ctx.Err(), "wait for job table %q to become active", name)
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
