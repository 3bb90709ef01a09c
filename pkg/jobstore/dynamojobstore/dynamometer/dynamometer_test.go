package dynamometer_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/stretchr/testify/require"

	"github.com/jobfleet/jobfleet/pkg/jobstore/dynamojobstore"
	"github.com/jobfleet/jobfleet/pkg/jobstore/dynamojobstore/dynamometer"
)

type item = map[string]types.AttributeValue

func s(v string) types.AttributeValue { return &types.AttributeValueMemberS{Value: v} }

func n(v int) types.AttributeValue { return &types.AttributeValueMemberN{Value: fmt.Sprint(v)} }

// sized returns the item with pk and a filler attribute "x" that make it
// size bytes (dynamojobstore.ItemSize) besides the attributes of extra.
func sized(pk string, size int, extra item) item {
	it := item{dynamojobstore.AttrPK: s(pk)}
	maps.Copy(it, extra)
	fill := size - dynamojobstore.ItemSize(it) - len("x")
	if fill < 0 {
		panic("item too small")
	}
	it["x"] = s(strings.Repeat("a", fill))
	return it
}

func key(pk string) item { return item{dynamojobstore.AttrPK: s(pk)} }

// fakeTable is a table in memory. UpdateItem sets each attribute named
// ":a" in ExpressionAttributeValues as a (its expression is not read);
// conditions are not read either: a write fails, unapplied, with failNext.
type fakeTable struct {
	dynamojobstore.DynamoDBAPI // calls the meter does not wrap: unused

	mu       sync.Mutex
	items    map[string]item
	failNext error
	query    []item // what Query returns
}

func newFakeTable() *fakeTable { return &fakeTable{items: map[string]item{}} }

func pkOf(it item) string { return it[dynamojobstore.AttrPK].(*types.AttributeValueMemberS).Value }

// write applies a write, or fails it with failNext.
func (f *fakeTable) write(apply func()) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.failNext; err != nil {
		f.failNext = nil
		return err
	}
	apply()
	return nil
}

func (f *fakeTable) put(it item)  { f.items[pkOf(it)] = maps.Clone(it) }
func (f *fakeTable) del(key item) { delete(f.items, pkOf(key)) }

func (f *fakeTable) update(key item, values item) {
	it := f.items[pkOf(key)]
	if it == nil {
		it = maps.Clone(key)
	}
	for name, v := range values {
		it[strings.TrimPrefix(name, ":")] = v
	}
	f.items[pkOf(key)] = it
}

func (f *fakeTable) GetItem(_ context.Context, in *dynamodb.GetItemInput, _ ...func(*dynamodb.Options)) (*dynamodb.GetItemOutput, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return &dynamodb.GetItemOutput{Item: maps.Clone(f.items[pkOf(in.Key)])}, nil
}

func (f *fakeTable) PutItem(_ context.Context, in *dynamodb.PutItemInput, _ ...func(*dynamodb.Options)) (*dynamodb.PutItemOutput, error) {
	return &dynamodb.PutItemOutput{}, f.write(func() { f.put(in.Item) })
}

func (f *fakeTable) UpdateItem(_ context.Context, in *dynamodb.UpdateItemInput, _ ...func(*dynamodb.Options)) (*dynamodb.UpdateItemOutput, error) {
	return &dynamodb.UpdateItemOutput{}, f.write(func() { f.update(in.Key, in.ExpressionAttributeValues) })
}

func (f *fakeTable) DeleteItem(_ context.Context, in *dynamodb.DeleteItemInput, _ ...func(*dynamodb.Options)) (*dynamodb.DeleteItemOutput, error) {
	return &dynamodb.DeleteItemOutput{}, f.write(func() { f.del(in.Key) })
}

func (f *fakeTable) TransactWriteItems(_ context.Context, in *dynamodb.TransactWriteItemsInput, _ ...func(*dynamodb.Options)) (*dynamodb.TransactWriteItemsOutput, error) {
	return &dynamodb.TransactWriteItemsOutput{}, f.write(func() {
		for _, it := range in.TransactItems {
			switch {
			case it.Put != nil:
				f.put(it.Put.Item)
			case it.Update != nil:
				f.update(it.Update.Key, it.Update.ExpressionAttributeValues)
			case it.Delete != nil:
				f.del(it.Delete.Key)
			}
		}
	})
}

func (f *fakeTable) Query(context.Context, *dynamodb.QueryInput, ...func(*dynamodb.Options)) (*dynamodb.QueryOutput, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return &dynamodb.QueryOutput{Items: f.query}, nil
}

func (f *fakeTable) BatchGetItem(_ context.Context, in *dynamodb.BatchGetItemInput, _ ...func(*dynamodb.Options)) (*dynamodb.BatchGetItemOutput, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := &dynamodb.BatchGetItemOutput{Responses: map[string][]item{}}
	for table, ka := range in.RequestItems {
		for _, k := range ka.Keys {
			if it, ok := f.items[pkOf(k)]; ok {
				out.Responses[table] = append(out.Responses[table], maps.Clone(it))
			}
		}
	}
	return out, nil
}

const table = "jobs"

func setup(every int) (*fakeTable, *dynamometer.Meter, *dynamometer.Client) {
	f := newFakeTable()
	m := dynamometer.New(every)
	return f, m, m.Client(f, f, table)
}

// Attributes that put an item in the active index (due_pk, due_at; owner
// projected) and in the list index (list_pk, id; type projected).
func active(due int, owner string) item {
	return item{dynamojobstore.AttrDuePK: s("QUEUED#0"), dynamojobstore.AttrDueAt: n(due), dynamojobstore.AttrOwner: s(owner)}
}

func listed() item {
	return item{dynamojobstore.AttrListPK: s("jobs#0"), dynamojobstore.AttrID: s("01J"), dynamojobstore.AttrType: s("t")}
}

func TestWrites(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	f, m, c := setup(1)
	tx := func(items ...types.TransactWriteItem) error {
		_, err := c.TransactWriteItems(ctx, &dynamodb.TransactWriteItemsInput{TransactItems: items})
		return err
	}
	for _, st := range []struct {
		name  string
		write func() error
		op    string
		units float64
		items map[string]int
	}{
		{"put 1 KB", func() error {
			_, err := c.PutItem(ctx, &dynamodb.PutItemInput{Item: sized("a", 1024, nil)})
			return err
		}, "PutItem", 1, map[string]int{"a": 1024}},
		{"put over 1 KB", func() error {
			_, err := c.PutItem(ctx, &dynamodb.PutItemInput{Item: sized("b", 1025, nil)})
			return err
		}, "PutItem", 2, map[string]int{"b": 1025}},
		{"update: the larger image", func() error {
			_, err := c.UpdateItem(ctx, &dynamodb.UpdateItemInput{Key: key("b"), ExpressionAttributeValues: item{":x": s("")}})
			return err
		}, "UpdateItem", 2, map[string]int{"b": 4}},
		{"put into both indexes", func() error {
			it := sized("c", 500, active(1000, "w1"))
			maps.Copy(it, listed())
			_, err := c.PutItem(ctx, &dynamodb.PutItemInput{Item: it})
			return err
		}, "PutItem", 3, nil},
		{"index key changes", func() error {
			_, err := c.UpdateItem(ctx, &dynamodb.UpdateItemInput{Key: key("c"), ExpressionAttributeValues: item{":" + dynamojobstore.AttrDueAt: n(2000)}})
			return err
		}, "UpdateItem", 1 + 2, nil},
		{"projected attribute changes", func() error {
			_, err := c.UpdateItem(ctx, &dynamodb.UpdateItemInput{Key: key("c"), ExpressionAttributeValues: item{":" + dynamojobstore.AttrOwner: s("w2")}})
			return err
		}, "UpdateItem", 1 + 1, nil},
		{"other attribute changes", func() error {
			_, err := c.UpdateItem(ctx, &dynamodb.UpdateItemInput{Key: key("c"), ExpressionAttributeValues: item{":x": s("y")}})
			return err
		}, "UpdateItem", 1, nil},
		{"delete from both indexes", func() error {
			_, err := c.DeleteItem(ctx, &dynamodb.DeleteItemInput{Key: key("c")})
			return err
		}, "DeleteItem", 3, map[string]int{"c": 0}},
		{"transaction: twice the table units", func() error {
			return tx(
				types.TransactWriteItem{Put: &types.Put{Item: sized("d", 1500, active(1, "w1"))}},
				types.TransactWriteItem{Delete: &types.Delete{Key: key("a")}},
				types.TransactWriteItem{ConditionCheck: &types.ConditionCheck{Key: key("b")}})
		}, "TransactWriteItems", 2*2 + 1 + 2*1 + 2*1, map[string]int{"d": 1500, "a": 0, "b": 4}},
	} {
		require.NoError(t, st.write(), st.name)
		u := m.Take()
		require.Equal(t, map[string]float64{st.op: st.units}, u.Write, st.name)
		require.Equal(t, st.units, u.WriteUnits(), st.name)
		if st.items != nil {
			require.Equal(t, st.items, u.Items, st.name)
		}
		require.Empty(t, u.Read, "%s: the meter's own reads are not charged", st.name)
	}
	require.ElementsMatch(t, []string{"b", "d"}, slices.Collect(maps.Keys(f.items)))
}

func TestFailedWrites(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	f, m, c := setup(1)
	f.put(sized("a", 2000, active(1, "w1")))

	// A failed condition: the table units for the item as it was.
	f.failNext = &types.ConditionalCheckFailedException{Message: aws.String("no")}
	_, err := c.UpdateItem(ctx, &dynamodb.UpdateItemInput{Key: key("a"), ExpressionAttributeValues: item{":" + dynamojobstore.AttrDueAt: n(2)}})
	var ccf *types.ConditionalCheckFailedException
	require.ErrorAs(t, err, &ccf)
	u := m.Take()
	require.Equal(t, map[string]float64{"UpdateItem": 2}, u.Write)
	require.Equal(t, map[string]int{"a": 2000}, u.Items)

	f.failNext = &types.TransactionCanceledException{Message: aws.String("no")}
	_, err = c.TransactWriteItems(ctx, &dynamodb.TransactWriteItemsInput{TransactItems: []types.TransactWriteItem{
		{Update: &types.Update{Key: key("a")}}, {Put: &types.Put{Item: sized("b", 100, nil)}},
	}})
	var tcx *types.TransactionCanceledException
	require.ErrorAs(t, err, &tcx)
	u = m.Take()
	require.Equal(t, map[string]float64{"TransactWriteItems": 2*2 + 2*1}, u.Write)
	require.Equal(t, map[string]int{"a": 2000, "b": 0}, u.Items)

	// Any other error: nothing charged.
	boom := errors.New("connection reset")
	f.failNext = boom
	_, err = c.PutItem(ctx, &dynamodb.PutItemInput{Item: sized("c", 100, nil)})
	require.ErrorIs(t, err, boom)
	u = m.Take()
	require.Empty(t, u.Write)
	require.Empty(t, u.Items)
}

func TestReads(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	f, m, c := setup(1)
	f.put(sized("a", 5000, nil))
	f.put(sized("b", 100, nil))
	f.query = []item{sized("q1", 4000, nil), sized("q2", 5000, nil)}

	get := func(k string, consistent bool) {
		_, err := c.GetItem(ctx, &dynamodb.GetItemInput{TableName: aws.String(table), Key: key(k), ConsistentRead: aws.Bool(consistent)})
		require.NoError(t, err)
	}
	get("a", true)  // 2
	get("a", false) // 1
	get("x", true)  // missing: 1
	require.Equal(t, map[string]float64{"GetItem": 4}, m.Take().Read)

	_, err := c.BatchGetItem(ctx, &dynamodb.BatchGetItemInput{RequestItems: map[string]types.KeysAndAttributes{
		table: {Keys: []item{key("a"), key("b"), key("x")}, ConsistentRead: aws.Bool(true)},
	}})
	require.NoError(t, err)
	require.Equal(t, map[string]float64{"BatchGetItem": 2 + 1 + 1}, m.Take().Read)

	_, err = c.Query(ctx, &dynamodb.QueryInput{TableName: aws.String(table), ConsistentRead: aws.Bool(true)})
	require.NoError(t, err)
	_, err = c.Query(ctx, &dynamodb.QueryInput{TableName: aws.String(table), IndexName: aws.String(dynamojobstore.IndexActive), ConsistentRead: aws.Bool(true)})
	require.NoError(t, err)
	u := m.Take()
	require.Equal(t, map[string]float64{"Query": 3 + 1.5}, u.Read, "the items together; an index query is eventually consistent")
	require.Equal(t, 4.5, u.ReadUnits())
	require.Empty(t, u.Write)
}

// With sampling, the same items are metered every time, and all writes to
// them.
func TestSampling(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	_, m, c := setup(4)
	writeAll := func() map[string]int {
		for i := range 40 {
			_, err := c.PutItem(ctx, &dynamodb.PutItemInput{Item: sized(fmt.Sprintf("job#%d", i), 100, nil)})
			require.NoError(t, err)
		}
		u := m.Take()
		require.Equal(t, float64(len(u.Items)), u.WriteUnits(), "one unit per metered put")
		return u.Items
	}
	first := writeAll()
	require.NotEmpty(t, first)
	require.Less(t, len(first), 40)
	require.Equal(t, first, writeAll())
}

// Clients of one Meter add up.
func TestSharedMeter(t *testing.T) {
	t.Parallel()
	f := newFakeTable()
	m := dynamometer.New(1)
	var wg sync.WaitGroup
	errs := make([]error, 4)
	for i := range errs {
		c := m.Client(f, f, table)
		wg.Go(func() {
			for j := range 10 {
				_, err := c.PutItem(t.Context(), &dynamodb.PutItemInput{Item: sized(fmt.Sprintf("%d-%d", i, j), 100, nil)})
				errs[i] = errors.Join(errs[i], err)
			}
		})
	}
	wg.Wait()
	require.NoError(t, errors.Join(errs...))
	u := m.Take()
	require.Equal(t, map[string]float64{"PutItem": 40}, u.Write)
	require.Len(t, u.Items, 40)
	require.Zero(t, m.Take().WriteUnits(), "Take starts over")
}

func TestIndexUnits(t *testing.T) {
	t.Parallel()
	gsi := func(p *types.Projection) types.GlobalSecondaryIndex {
		return types.GlobalSecondaryIndex{
			IndexName: aws.String("i"),
			KeySchema: []types.KeySchemaElement{
				{AttributeName: aws.String("h"), KeyType: types.KeyTypeHash},
				{AttributeName: aws.String("r"), KeyType: types.KeyTypeRange},
			},
			Projection: p,
		}
	}
	include := gsi(&types.Projection{ProjectionType: types.ProjectionTypeInclude, NonKeyAttributes: []string{"p"}})
	keysOnly := gsi(&types.Projection{ProjectionType: types.ProjectionTypeKeysOnly})
	all := gsi(&types.Projection{ProjectionType: types.ProjectionTypeAll})
	in := func(r int, p, other string) item {
		return item{dynamojobstore.AttrPK: s("k"), "h": s("H"), "r": n(r), "p": s(p), "o": s(other)}
	}
	notIn := item{dynamojobstore.AttrPK: s("k"), "p": s("P")}
	big := strings.Repeat("b", 1000)
	for _, c := range []struct {
		name          string
		g             types.GlobalSecondaryIndex
		before, after item
		want          int
	}{
		{"no item", include, nil, nil, 0},
		{"not in the index", include, notIn, notIn, 0},
		{"enters", include, nil, in(1, "P", ""), 1},
		{"enters from a sparse item", include, notIn, in(1, "P", ""), 1},
		{"leaves", include, in(1, "P", ""), nil, 1},
		{"key changes", include, in(1, "P", ""), in(2, "P", ""), 2},
		{"projected changes", include, in(1, "P", ""), in(1, "Q", ""), 1},
		{"projected grows past 1 KB", include, in(1, "P", ""), in(1, big, ""), 2},
		{"other changes", include, in(1, "P", "a"), in(1, "P", "b"), 0},
		{"keys only: projected changes", keysOnly, in(1, "P", ""), in(1, "Q", ""), 0},
		{"keys only: key changes", keysOnly, in(1, "P", ""), in(2, "Q", ""), 2},
		{"all: other changes", all, in(1, "P", "a"), in(1, "P", "b"), 1},
		{"entry over 1 KB enters", include, nil, in(1, big, ""), 2},
	} {
		require.Equal(t, c.want, dynamometer.IndexUnits(c.g, c.before, c.after), c.name)
	}
}
