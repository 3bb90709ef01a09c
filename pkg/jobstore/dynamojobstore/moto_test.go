package dynamojobstore

import (
	"context"
	"net/http"
	"sync"

	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/stretchr/testify/require"

	"github.com/jobfleet/jobfleet/pkg/awstest"
)

// newTestClient returns a DynamoDB client for the test endpoint; on moto,
// one whose writes are atomic (see atomicWrites).
func newTestClient(t testing.TB) DynamoDBAPI {
	c := dynamodb.NewFromConfig(awstest.Config(t))
	if isMoto(t) {
		return atomicWrites{c}
	}
	return c
}

var (
	motoOnce sync.Once
	motoAt   bool
)

// isMoto reports whether the test endpoint is a moto server: one that
// awstest started, or one named by awstest.EndpointEnv (moto answers
// /moto-api/).
func isMoto(t testing.TB) bool {
	ep := awstest.Endpoint(t)
	motoOnce.Do(func() {
		if awstest.IsMoto(t) {
			motoAt = true
			return
		}
		client := &http.Client{Timeout: 5 * time.Second}
		resp, err := client.Get(ep + "/moto-api/")
		if err != nil {
			return
		}
		resp.Body.Close()
		motoAt = resp.StatusCode == http.StatusOK
	})
	return motoAt
}

// testLayout is the layout of test tables: fewer shards than the default,
// since moto answers an index query by going through the whole table, and
// Due and List query every shard. Two of each still exercise the merging of
// shards.
var testLayout = Layout{DueShards: 2, ListShards: 2}

// newTestTable creates a job table for the test and deletes it at cleanup.
func newTestTable(t testing.TB) string {
	t.Helper()
	name := awstest.Name(t)
	c := dynamodb.NewFromConfig(awstest.Config(t))
	require.NoError(t, CreateTable(t.Context(), c, name, &TableOptions{Layout: testLayout, PollInterval: 100 * time.Millisecond}))
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_, err := c.DeleteTable(ctx, &dynamodb.DeleteTableInput{TableName: aws.String(name)})
		require.NoError(t, err)
	})
	return name
}

// openTestDriver opens a driver on a new test table.
func openTestDriver(t testing.TB) *Driver {
	t.Helper()
	d, err := OpenDriver(t.Context(), newTestClient(t), newTestTable(t), nil)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, d.Close()) })
	return d
}

// atomicWrites makes moto's writes atomic, as DynamoDB's are. moto 5.2.1
// evaluates a condition and then writes without a lock (UpdateItem parses
// the update expression in between), so two concurrent conditional
// updates can both win; and a canceled TransactWriteItems restores a copy
// of the table taken when it began, undoing what other requests wrote
// meanwhile (moto/dynamodb/models/__init__.py: update_item,
// transact_write_items). So that the suite tests the driver rather than
// those races, each write here runs alone among the calls of this process
// to its table (clients of one process share the locks); reads run
// concurrently with each other.
type atomicWrites struct {
	*dynamodb.Client
}

var _ DynamoDBAPI = atomicWrites{}

var (
	tablesMu sync.Mutex
	tables   = map[string]*sync.RWMutex{}
)

func tableLock(name string) *sync.RWMutex {
	tablesMu.Lock()
	defer tablesMu.Unlock()
	l, ok := tables[name]
	if !ok {
		l = new(sync.RWMutex)
		tables[name] = l
	}
	return l
}

func txTable(in *dynamodb.TransactWriteItemsInput) string {
	if len(in.TransactItems) == 0 {
		return ""
	}
	switch it := in.TransactItems[0]; { // the driver's transactions name one table
	case it.Put != nil:
		return aws.ToString(it.Put.TableName)
	case it.Update != nil:
		return aws.ToString(it.Update.TableName)
	case it.Delete != nil:
		return aws.ToString(it.Delete.TableName)
	case it.ConditionCheck != nil:
		return aws.ToString(it.ConditionCheck.TableName)
	}
	return ""
}

func batchTable(in *dynamodb.BatchGetItemInput) string {
	for name := range in.RequestItems {
		return name // the driver reads one table
	}
	return ""
}

func write[I, O any](table string, call func(context.Context, I, ...func(*dynamodb.Options)) (O, error), ctx context.Context, in I, opts []func(*dynamodb.Options)) (O, error) {
	l := tableLock(table)
	l.Lock()
	defer l.Unlock()
	return call(ctx, in, opts...)
}

func read[I, O any](table string, call func(context.Context, I, ...func(*dynamodb.Options)) (O, error), ctx context.Context, in I, opts []func(*dynamodb.Options)) (O, error) {
	l := tableLock(table)
	l.RLock()
	defer l.RUnlock()
	return call(ctx, in, opts...)
}

func (c atomicWrites) TransactWriteItems(ctx context.Context, in *dynamodb.TransactWriteItemsInput, opts ...func(*dynamodb.Options)) (*dynamodb.TransactWriteItemsOutput, error) {
	return write(txTable(in), c.Client.TransactWriteItems, ctx, in, opts)
}

func (c atomicWrites) PutItem(ctx context.Context, in *dynamodb.PutItemInput, opts ...func(*dynamodb.Options)) (*dynamodb.PutItemOutput, error) {
	return write(aws.ToString(in.TableName), c.Client.PutItem, ctx, in, opts)
}

func (c atomicWrites) DeleteItem(ctx context.Context, in *dynamodb.DeleteItemInput, opts ...func(*dynamodb.Options)) (*dynamodb.DeleteItemOutput, error) {
	return write(aws.ToString(in.TableName), c.Client.DeleteItem, ctx, in, opts)
}

func (c atomicWrites) UpdateItem(ctx context.Context, in *dynamodb.UpdateItemInput, opts ...func(*dynamodb.Options)) (*dynamodb.UpdateItemOutput, error) {
	return write(aws.ToString(in.TableName), c.Client.UpdateItem, ctx, in, opts)
}

func (c atomicWrites) GetItem(ctx context.Context, in *dynamodb.GetItemInput, opts ...func(*dynamodb.Options)) (*dynamodb.GetItemOutput, error) {
	return read(aws.ToString(in.TableName), c.Client.GetItem, ctx, in, opts)
}

func (c atomicWrites) BatchGetItem(ctx context.Context, in *dynamodb.BatchGetItemInput, opts ...func(*dynamodb.Options)) (*dynamodb.BatchGetItemOutput, error) {
	return read(batchTable(in), c.Client.BatchGetItem, ctx, in, opts)
}

func (c atomicWrites) Query(ctx context.Context, in *dynamodb.QueryInput, opts ...func(*dynamodb.Options)) (*dynamodb.QueryOutput, error) {
	return read(aws.ToString(in.TableName), c.Client.Query, ctx, in, opts)
}
