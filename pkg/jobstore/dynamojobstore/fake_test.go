package dynamojobstore

import (
	"context"
	"fmt"
	"sync"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/smithy-go"
)

// fakeClient is a DynamoDBAPI whose answers a test scripts, for what moto
// cannot produce (throttling, transaction conflicts, a lost response, index
// lag). Each call is recorded; a call without a hook fails the call. The
// table has no layout item (DefaultLayout): reading it is answered here and
// not recorded.
type fakeClient struct {
	mu    sync.Mutex
	calls []any // the inputs, in order

	describe func(*dynamodb.DescribeTableInput) (*dynamodb.DescribeTableOutput, error)
	get      func(*dynamodb.GetItemInput) (*dynamodb.GetItemOutput, error)
	put      func(*dynamodb.PutItemInput) (*dynamodb.PutItemOutput, error)
	update   func(*dynamodb.UpdateItemInput) (*dynamodb.UpdateItemOutput, error)
	tx       func(*dynamodb.TransactWriteItemsInput) (*dynamodb.TransactWriteItemsOutput, error)
	query    func(*dynamodb.QueryInput) (*dynamodb.QueryOutput, error)
	batchGet func(*dynamodb.BatchGetItemInput) (*dynamodb.BatchGetItemOutput, error)
	del      func(*dynamodb.DeleteItemInput) (*dynamodb.DeleteItemOutput, error)
}

var _ DynamoDBAPI = (*fakeClient)(nil)

func call[I, O any](f *fakeClient, hook func(I) (O, error), in I) (O, error) {
	f.mu.Lock()
	f.calls = append(f.calls, in)
	f.mu.Unlock()
	if hook == nil {
		var zero O
		return zero, fmt.Errorf("fake DynamoDB: unexpected %T", in)
	}
	return hook(in)
}

func (f *fakeClient) DescribeTable(_ context.Context, in *dynamodb.DescribeTableInput, _ ...func(*dynamodb.Options)) (*dynamodb.DescribeTableOutput, error) {
	return call(f, f.describe, in)
}

func (f *fakeClient) GetItem(_ context.Context, in *dynamodb.GetItemInput, _ ...func(*dynamodb.Options)) (*dynamodb.GetItemOutput, error) {
	if pkOf(in.Key) == layoutPK {
		return &dynamodb.GetItemOutput{}, nil
	}
	return call(f, f.get, in)
}

func (f *fakeClient) PutItem(_ context.Context, in *dynamodb.PutItemInput, _ ...func(*dynamodb.Options)) (*dynamodb.PutItemOutput, error) {
	return call(f, f.put, in)
}

func (f *fakeClient) UpdateItem(_ context.Context, in *dynamodb.UpdateItemInput, _ ...func(*dynamodb.Options)) (*dynamodb.UpdateItemOutput, error) {
	return call(f, f.update, in)
}

func (f *fakeClient) TransactWriteItems(_ context.Context, in *dynamodb.TransactWriteItemsInput, _ ...func(*dynamodb.Options)) (*dynamodb.TransactWriteItemsOutput, error) {
	return call(f, f.tx, in)
}

func (f *fakeClient) Query(_ context.Context, in *dynamodb.QueryInput, _ ...func(*dynamodb.Options)) (*dynamodb.QueryOutput, error) {
	return call(f, f.query, in)
}

func (f *fakeClient) BatchGetItem(_ context.Context, in *dynamodb.BatchGetItemInput, _ ...func(*dynamodb.Options)) (*dynamodb.BatchGetItemOutput, error) {
	return call(f, f.batchGet, in)
}

func (f *fakeClient) DeleteItem(_ context.Context, in *dynamodb.DeleteItemInput, _ ...func(*dynamodb.Options)) (*dynamodb.DeleteItemOutput, error) {
	return call(f, f.del, in)
}

// inputs returns the recorded inputs of type I.
func inputs[I any](f *fakeClient) []I {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []I
	for _, c := range f.calls {
		if in, ok := c.(I); ok {
			out = append(out, in)
		}
	}
	return out
}

// newFakeDriver returns a driver over f (whose DescribeTable, unless
// scripted, reports the table CreateTableInput defines).
func newFakeDriver(f *fakeClient) *Driver {
	if f.describe == nil {
		f.describe = func(*dynamodb.DescribeTableInput) (*dynamodb.DescribeTableOutput, error) {
			return describeTable(CreateTableInput("jobs")), nil
		}
	}
	d, err := OpenDriver(context.Background(), f, "jobs", nil)
	if err != nil {
		panic(err)
	}
	return d
}

// describeTable is how DynamoDB describes the table in defines, ACTIVE with
// its indexes.
func describeTable(in *dynamodb.CreateTableInput) *dynamodb.DescribeTableOutput {
	t := &types.TableDescription{
		TableName:            in.TableName,
		TableStatus:          types.TableStatusActive,
		AttributeDefinitions: in.AttributeDefinitions,
		KeySchema:            in.KeySchema,
	}
	for _, ix := range in.GlobalSecondaryIndexes {
		t.GlobalSecondaryIndexes = append(t.GlobalSecondaryIndexes, types.GlobalSecondaryIndexDescription{
			IndexName:   ix.IndexName,
			KeySchema:   ix.KeySchema,
			Projection:  ix.Projection,
			IndexStatus: types.IndexStatusActive,
		})
	}
	return &dynamodb.DescribeTableOutput{Table: t}
}

// earlierTableInput is the definition of a job table of the earlier layout:
// the indexes due (the keys of active, KEYS_ONLY), owned and list.
func earlierTableInput(name string) *dynamodb.CreateTableInput {
	attr := func(n string, t types.ScalarAttributeType) types.AttributeDefinition {
		return types.AttributeDefinition{AttributeName: aws.String(n), AttributeType: t}
	}
	keys := func(hash, rng string) []types.KeySchemaElement {
		return []types.KeySchemaElement{
			{AttributeName: aws.String(hash), KeyType: types.KeyTypeHash},
			{AttributeName: aws.String(rng), KeyType: types.KeyTypeRange},
		}
	}
	keysOnly := &types.Projection{ProjectionType: types.ProjectionTypeKeysOnly}
	return &dynamodb.CreateTableInput{
		TableName:   aws.String(name),
		BillingMode: types.BillingModePayPerRequest,
		AttributeDefinitions: []types.AttributeDefinition{
			attr(AttrPK, types.ScalarAttributeTypeS), attr(AttrDuePK, types.ScalarAttributeTypeS),
			attr(AttrDueAt, types.ScalarAttributeTypeN), attr(AttrOwner, types.ScalarAttributeTypeS),
			attr(AttrID, types.ScalarAttributeTypeS), attr(AttrListPK, types.ScalarAttributeTypeS),
		},
		KeySchema: []types.KeySchemaElement{{AttributeName: aws.String(AttrPK), KeyType: types.KeyTypeHash}},
		GlobalSecondaryIndexes: []types.GlobalSecondaryIndex{
			{IndexName: aws.String("due"), KeySchema: keys(AttrDuePK, AttrDueAt), Projection: keysOnly},
			{IndexName: aws.String("owned"), KeySchema: keys(AttrOwner, AttrID), Projection: keysOnly},
			{IndexName: aws.String(IndexList), KeySchema: keys(AttrListPK, AttrID),
				Projection: &types.Projection{ProjectionType: types.ProjectionTypeInclude, NonKeyAttributes: []string{AttrType}}},
		},
	}
}

// Errors as the SDK returns them.

func throttled() error {
	return &types.ThrottlingException{Message: aws.String("Rate exceeded")}
}

func apiError(code string) error {
	return &smithy.GenericAPIError{Code: code, Message: code, Fault: smithy.FaultClient}
}

func canceledTx(reasons ...types.CancellationReason) error {
	return &types.TransactionCanceledException{Message: aws.String("Transaction cancelled"), CancellationReasons: reasons}
}

func reason(code string, item map[string]types.AttributeValue) types.CancellationReason {
	return types.CancellationReason{Code: aws.String(code), Item: item}
}

// pkOf returns the pk of a key map.
func pkOf(key map[string]types.AttributeValue) string { return itemPK(key) }
