package bench

import (
	"context"
	"errors"
	"hash/fnv"
	"math"
	"reflect"
	"strings"
	"sync"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/jobfleet/jobfleet/pkg/jobstore/dynamojobstore"
)

// capacityMeter is the job store's DynamoDB client with a meter: it
// charges each call the capacity units DynamoDB's documented rules give,
// because moto reports none for indexes (and half a unit for an update,
// nothing for a transaction).
//
// Writes: the meter reads each item the write touches before and after it
// (strongly consistent, through its own client, which nothing counts) and
// charges one write unit per started KB of the larger of the two images,
// twice that inside a transaction; plus, for each global secondary index,
// one unit per started KB of an entry put or deleted (the entry is its key
// attributes, the table key, the projected attributes and 100 bytes), two
// entries when its key changes, one when only projected attributes change.
// A write whose condition fails is charged the table units alone. Reads:
// one read unit per started 4 KB of the items returned, at least one per
// item asked for, half as much for an eventually consistent read (every
// index Query is one).
//
// The before and after reads are not atomic with the write: another writer
// of the same item in between would be charged to this one. A no-op job's
// items have one writer at a time.
//
// The two reads per write double the load on the emulator, so writes may be
// sampled: with every = k, only the writes to items whose key hashes to 0
// mod k are metered (all writes to those items), and units per job are the
// sampled items' units divided by how many sampled items there were.
type capacityMeter struct {
	dynamojobstore.DynamoDBAPI
	raw   *dynamodb.Client
	table string
	gsis  []types.GlobalSecondaryIndex
	*meterState
}

// meterState is what the meters of one group of roles charge.
type meterState struct {
	every int

	mu      sync.Mutex
	write   map[string]float64 // operation → write units (sampled items)
	read    map[string]float64 // operation → read units (every call)
	sampled map[string]bool    // the sampled items written
}

func newMeterState(every int) *meterState {
	return &meterState{every: max(every, 1), write: map[string]float64{}, read: map[string]float64{}, sampled: map[string]bool{}}
}

func newCapacityMeter(client dynamojobstore.DynamoDBAPI, raw *dynamodb.Client, table string, st *meterState) *capacityMeter {
	return &capacityMeter{
		DynamoDBAPI: client, raw: raw, table: table,
		gsis:       dynamojobstore.CreateTableInput(table).GlobalSecondaryIndexes,
		meterState: st,
	}
}

// take returns the units charged so far, by operation, and the number of
// sampled items written, and starts over.
func (m *meterState) take() (write, read map[string]float64, items int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	write, read, items = m.write, m.read, len(m.sampled)
	m.write, m.read, m.sampled = map[string]float64{}, map[string]float64{}, map[string]bool{}
	return write, read, items
}

func (m *meterState) charge(dst map[string]float64, op string, units float64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	dst[op] += units
}

// metered reports whether writes to the item with key are sampled.
func (m *meterState) metered(key map[string]types.AttributeValue) (string, bool) {
	s, _ := key[dynamojobstore.AttrPK].(*types.AttributeValueMemberS)
	if s == nil {
		return "", false
	}
	h := fnv.New32a()
	h.Write([]byte(s.Value))
	return s.Value, h.Sum32()%uint32(m.every) == 0
}

func (m *capacityMeter) item(ctx context.Context, key map[string]types.AttributeValue) (map[string]types.AttributeValue, error) {
	out, err := m.raw.GetItem(ctx, &dynamodb.GetItemInput{TableName: aws.String(m.table), Key: key, ConsistentRead: aws.Bool(true)})
	if err != nil {
		return nil, err
	}
	return out.Item, nil
}

// around charges op for write, which changes the items with keys, when
// the first of them is sampled.
func (m *capacityMeter) around(ctx context.Context, op string, tx bool, keys []map[string]types.AttributeValue, write func() error) error {
	item, ok := m.metered(keys[0])
	if !ok {
		return write()
	}
	before := make([]map[string]types.AttributeValue, len(keys))
	for i, k := range keys {
		var err error
		if before[i], err = m.item(ctx, k); err != nil {
			return err
		}
	}
	werr := write()
	var ccf *types.ConditionalCheckFailedException
	var tcx *types.TransactionCanceledException
	if werr != nil && !errors.As(werr, &ccf) && !errors.As(werr, &tcx) {
		return werr // no answer, or refused before any condition: not charged
	}
	units := 0
	for i, k := range keys {
		after := before[i]
		if werr == nil {
			var err error
			if after, err = m.item(ctx, k); err != nil {
				return err
			}
		}
		u := kb(max(dynamojobstore.ItemSize(before[i]), dynamojobstore.ItemSize(after)), 1024)
		if tx {
			u *= 2
		}
		units += u
		if werr == nil {
			for _, g := range m.gsis {
				units += indexUnits(g, before[i], after)
			}
		}
	}
	m.mu.Lock()
	m.write[op] += float64(units)
	m.sampled[item] = true
	m.mu.Unlock()
	return werr
}

func kb(size, unit int) int { return max(1, (size+unit-1)/unit) }

func pk(item map[string]types.AttributeValue) map[string]types.AttributeValue {
	return map[string]types.AttributeValue{dynamojobstore.AttrPK: item[dynamojobstore.AttrPK]}
}

func (m *capacityMeter) PutItem(ctx context.Context, in *dynamodb.PutItemInput, opts ...func(*dynamodb.Options)) (out *dynamodb.PutItemOutput, err error) {
	err = m.around(ctx, "PutItem", false, []map[string]types.AttributeValue{pk(in.Item)}, func() error {
		out, err = m.DynamoDBAPI.PutItem(ctx, in, opts...)
		return err
	})
	return out, err
}

func (m *capacityMeter) UpdateItem(ctx context.Context, in *dynamodb.UpdateItemInput, opts ...func(*dynamodb.Options)) (out *dynamodb.UpdateItemOutput, err error) {
	err = m.around(ctx, "UpdateItem", false, []map[string]types.AttributeValue{in.Key}, func() error {
		out, err = m.DynamoDBAPI.UpdateItem(ctx, in, opts...)
		return err
	})
	return out, err
}

func (m *capacityMeter) DeleteItem(ctx context.Context, in *dynamodb.DeleteItemInput, opts ...func(*dynamodb.Options)) (out *dynamodb.DeleteItemOutput, err error) {
	err = m.around(ctx, "DeleteItem", false, []map[string]types.AttributeValue{in.Key}, func() error {
		out, err = m.DynamoDBAPI.DeleteItem(ctx, in, opts...)
		return err
	})
	return out, err
}

func (m *capacityMeter) TransactWriteItems(ctx context.Context, in *dynamodb.TransactWriteItemsInput, opts ...func(*dynamodb.Options)) (out *dynamodb.TransactWriteItemsOutput, err error) {
	var keys []map[string]types.AttributeValue
	for _, it := range in.TransactItems {
		switch {
		case it.Put != nil:
			keys = append(keys, pk(it.Put.Item))
		case it.Update != nil:
			keys = append(keys, it.Update.Key)
		case it.Delete != nil:
			keys = append(keys, it.Delete.Key)
		case it.ConditionCheck != nil:
			keys = append(keys, it.ConditionCheck.Key)
		}
	}
	err = m.around(ctx, "TransactWriteItems", true, keys, func() error {
		out, err = m.DynamoDBAPI.TransactWriteItems(ctx, in, opts...)
		return err
	})
	return out, err
}

func (m *capacityMeter) GetItem(ctx context.Context, in *dynamodb.GetItemInput, opts ...func(*dynamodb.Options)) (*dynamodb.GetItemOutput, error) {
	out, err := m.DynamoDBAPI.GetItem(ctx, in, opts...)
	if err == nil {
		m.charge(m.read, "GetItem", readUnits(kb(dynamojobstore.ItemSize(out.Item), 4096), aws.ToBool(in.ConsistentRead)))
	}
	return out, err
}

func (m *capacityMeter) BatchGetItem(ctx context.Context, in *dynamodb.BatchGetItemInput, opts ...func(*dynamodb.Options)) (*dynamodb.BatchGetItemOutput, error) {
	out, err := m.DynamoDBAPI.BatchGetItem(ctx, in, opts...)
	if err != nil {
		return out, err
	}
	units := 0.0
	for table, ka := range in.RequestItems {
		found := out.Responses[table]
		for i := range ka.Keys {
			size := 0
			if i < len(found) {
				size = dynamojobstore.ItemSize(found[i])
			}
			units += readUnits(kb(size, 4096), aws.ToBool(ka.ConsistentRead))
		}
	}
	m.charge(m.read, "BatchGetItem", units)
	return out, err
}

func (m *capacityMeter) Query(ctx context.Context, in *dynamodb.QueryInput, opts ...func(*dynamodb.Options)) (*dynamodb.QueryOutput, error) {
	out, err := m.DynamoDBAPI.Query(ctx, in, opts...)
	if err == nil {
		size := 0
		for _, it := range out.Items {
			size += dynamojobstore.ItemSize(it)
		}
		consistent := aws.ToBool(in.ConsistentRead) && in.IndexName == nil
		m.charge(m.read, "Query", readUnits(kb(size, 4096), consistent))
	}
	return out, err
}

func readUnits(blocks int, consistent bool) float64 {
	if consistent {
		return float64(blocks)
	}
	return float64(blocks) / 2
}

// indexUnits is what a write costs index g, from the item before and after.
func indexUnits(g types.GlobalSecondaryIndex, before, after map[string]types.AttributeValue) int {
	bk, bp := indexEntry(g, before)
	ak, ap := indexEntry(g, after)
	size := func(k, p map[string]types.AttributeValue) int { return kb(dynamojobstore.ItemSize(k)+dynamojobstore.ItemSize(p)+100, 1024) }
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

// indexEntry is item's entry in g: nil when the item lacks a key attribute
// of g (sparse index).
func indexEntry(g types.GlobalSecondaryIndex, item map[string]types.AttributeValue) (keys, projected map[string]types.AttributeValue) {
	if item == nil {
		return nil, nil
	}
	keys = map[string]types.AttributeValue{}
	for _, k := range g.KeySchema {
		v, ok := item[aws.ToString(k.AttributeName)]
		if !ok {
			return nil, nil
		}
		keys[aws.ToString(k.AttributeName)] = v
	}
	keys[dynamojobstore.AttrPK] = item[dynamojobstore.AttrPK]
	projected = map[string]types.AttributeValue{}
	if g.Projection != nil {
		for _, a := range g.Projection.NonKeyAttributes {
			if v, ok := item[a]; ok {
				projected[a] = v
			}
		}
	}
	return keys, projected
}



// numberSize: about one byte per two significant digits, plus one.
func numberSize(v string) int {
	digits := strings.Trim(strings.NewReplacer("-", "", ".", "").Replace(v), "0")
	return int(math.Ceil(float64(len(digits))/2)) + 1
}
