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
		u := kbUnits(max(itemSize(before[i]), itemSize(after)))
		if tx {
			u *= 2
		}
		m.units += u
		for _, g := range m.gsis {
			m.units += m.indexUnits(g, before[i], after)
		}
		if strings.HasPrefix(itemPK(after), jobPrefix) {
			m.sizes = append(m.sizes, itemSize(after))
		}
	}
	return nil
}

func kbUnits(size int) int { return max(1, (size+1023)/1024) }

// entry is item's entry in index g, nil when the item is not in it.
func (m *meter) entry(g types.GlobalSecondaryIndex, item map[string]types.AttributeValue) (keys, projected map[string]types.AttributeValue) {
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

func (m *meter) indexUnits(g types.GlobalSecondaryIndex, before, after map[string]types.AttributeValue) int {
	bk, bp := m.entry(g, before)
	ak, ap := m.entry(g, after)
	size := func(k, p map[string]types.AttributeValue) int { return kbUnits(itemSize(k) + itemSize(p) + 100) }
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
		{"", map[string]int{"create": 3, "start": 4, "renew": 3, "finish": 3}},
		{"order-1234", map[string]int{"create": 6, "start": 4, "renew": 3, "finish": 6}},
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
