// Package dynamometer counts the DynamoDB capacity units the job store's
// calls consume, by DynamoDB's documented rules for on-demand tables, where
// the service or emulator in use does not report them: moto reports no
// index writes in ConsumedCapacity, half a unit for an update and nothing
// for a transaction. TestWriteCapacity (package dynamojobstore) and the cost
// benchmark (e2e/bench) use it.
//
// A Client wraps the job store's dynamojobstore.DynamoDBAPI and charges each
// call to its Meter, which several Clients may share (one per service of a
// run, say); Take returns what was charged and starts over.
//
// # Writes
//
// PutItem, UpdateItem, DeleteItem and TransactWriteItems are charged from
// the items themselves: the Client reads each item a write touches before
// the write and again after it, strongly consistent, through a reader of its
// own that nothing meters, and charges
//
//   - the table: one write unit per started KB (1,024 bytes) of the larger
//     of the item's two images (at least one), twice that for an item of a
//     TransactWriteItems (a ConditionCheck included);
//   - each global secondary index of the job table (CreateTableInput):
//     an entry put or deleted costs one write unit per started KB of the
//     entry, which is the index key attributes, the table key, the
//     projected attributes and 100 bytes of overhead. An update that
//     changes an entry's key costs a delete and a put; one that changes only
//     its projected attributes, one put of the larger entry; any other,
//     nothing. An item without one of an index's key attributes is not in
//     that (sparse) index.
//
// A write whose condition fails (ConditionalCheckFailedException,
// TransactionCanceledException) is charged the table units alone, for the
// item as it was; one that fails otherwise is not charged. Item sizes are
// dynamojobstore.ItemSize.
//
// The two extra reads per write double the load on the endpoint and are not
// atomic with the write: a write to the same item by another writer in
// between is charged to this one. This is a tool for tests and benchmarks,
// never for a service.
//
// # Reads
//
// Every read is charged: one read unit per started 4 KB (4,096 bytes), at
// least one, and half of that for an eventually consistent read (an index
// Query always is). GetItem: the item returned. BatchGetItem: each key
// asked for, by the size of the item returned for it. Query: the items
// returned, together; a Query with a filter is charged for what it returns,
// not for all it read, so it is an underestimate.
//
// # Sampling
//
// With New(every) for an every above 1, only the writes to the items whose
// partition key hashes (FNV-1a) to 0 mod every are metered, and all of the
// writes to those items; a write of several items is metered when its first
// item is. Scale the write units by the number of items written
// (Usage.Items) to get units per item. Reads are not sampled.
package dynamometer

import (
	"context"
	"errors"
	"hash/fnv"
	"reflect"
	"sync"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/jobfleet/jobfleet/pkg/jobstore/dynamojobstore"
)

// Meter adds up what its Clients charge. It is safe for concurrent use.
type Meter struct {
	every int

	mu    sync.Mutex
	usage Usage
}

// New returns a Meter that meters the writes to one item in every (all of
// them for every ≤ 1) and every read.
func New(every int) *Meter {
	return &Meter{every: max(every, 1), usage: newUsage()}
}

// Usage is what a Meter was charged.
type Usage struct {
	// Write is the write units of the metered writes by operation
	// ("PutItem", "UpdateItem", "DeleteItem", "TransactWriteItems").
	Write map[string]float64
	// Read is the read units by operation ("GetItem", "BatchGetItem",
	// "Query").
	Read map[string]float64
	// Items are the items the metered writes touched, by partition key
	// value, each with its size in bytes after the last of them (0: deleted).
	Items map[string]int
}

func newUsage() Usage {
	return Usage{Write: map[string]float64{}, Read: map[string]float64{}, Items: map[string]int{}}
}

// WriteUnits is the sum of u.Write.
func (u Usage) WriteUnits() float64 { return sum(u.Write) }

// ReadUnits is the sum of u.Read.
func (u Usage) ReadUnits() float64 { return sum(u.Read) }

func sum(m map[string]float64) float64 {
	s := 0.0
	for _, v := range m {
		s += v
	}
	return s
}

// Take returns what m was charged since New or the last Take, and starts
// over.
func (m *Meter) Take() Usage {
	m.mu.Lock()
	defer m.mu.Unlock()
	u := m.usage
	m.usage = newUsage()
	return u
}

func (m *Meter) chargeRead(op string, units float64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.usage.Read[op] += units
}

// sampled reports whether the writes to the item with key are metered.
func (m *Meter) sampled(key map[string]types.AttributeValue) bool {
	pk, ok := key[dynamojobstore.AttrPK].(*types.AttributeValueMemberS)
	if !ok {
		return false
	}
	h := fnv.New32a()
	h.Write([]byte(pk.Value))
	return h.Sum32()%uint32(m.every) == 0
}

// ItemReader reads an item; *dynamodb.Client satisfies it.
type ItemReader interface {
	GetItem(context.Context, *dynamodb.GetItemInput, ...func(*dynamodb.Options)) (*dynamodb.GetItemOutput, error)
}

// Client is the job store's DynamoDB client with a meter: it passes every
// call to the client it wraps and charges it to its Meter.
type Client struct {
	dynamojobstore.DynamoDBAPI
	meter   *Meter
	reader  ItemReader
	table   string
	indexes []types.GlobalSecondaryIndex
}

var _ dynamojobstore.DynamoDBAPI = (*Client)(nil)

// Client returns a client for the job table named table that passes calls
// to api and charges them to m. reader reads the items before and after
// each write; it should not be api, nor go through anything that counts
// requests (a plain *dynamodb.Client for the same endpoint will do).
func (m *Meter) Client(api dynamojobstore.DynamoDBAPI, reader ItemReader, table string) *Client {
	return &Client{
		DynamoDBAPI: api, meter: m, reader: reader, table: table,
		indexes: dynamojobstore.CreateTableInput(table).GlobalSecondaryIndexes,
	}
}

func (c *Client) item(ctx context.Context, key map[string]types.AttributeValue) (map[string]types.AttributeValue, error) {
	out, err := c.reader.GetItem(ctx, &dynamodb.GetItemInput{TableName: aws.String(c.table), Key: key, ConsistentRead: aws.Bool(true)})
	if err != nil {
		return nil, err
	}
	return out.Item, nil
}

// around charges op for write, which touches the items with keys (in a
// transaction when tx), if the first of them is sampled.
func (c *Client) around(ctx context.Context, op string, tx bool, keys []map[string]types.AttributeValue, write func() error) error {
	if len(keys) == 0 || !c.meter.sampled(keys[0]) {
		return write()
	}
	before := make([]map[string]types.AttributeValue, len(keys))
	for i, k := range keys {
		var err error
		if before[i], err = c.item(ctx, k); err != nil {
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
	sizes := make([]int, len(keys))
	for i, k := range keys {
		after := before[i]
		if werr == nil {
			var err error
			if after, err = c.item(ctx, k); err != nil {
				return err
			}
		}
		sizes[i] = dynamojobstore.ItemSize(after)
		u := blocks(max(dynamojobstore.ItemSize(before[i]), sizes[i]), writeBlock)
		if tx {
			u *= 2
		}
		units += u
		if werr == nil {
			for _, g := range c.indexes {
				units += IndexUnits(g, before[i], after)
			}
		}
	}
	c.meter.mu.Lock()
	defer c.meter.mu.Unlock()
	c.meter.usage.Write[op] += float64(units)
	for i, k := range keys {
		if pk, ok := k[dynamojobstore.AttrPK].(*types.AttributeValueMemberS); ok {
			c.meter.usage.Items[pk.Value] = sizes[i]
		}
	}
	return werr
}

// Block sizes of a write unit and a read unit.
const (
	writeBlock = 1024
	readBlock  = 4096
)

// blocks is how many blocks of unit bytes size takes, at least one.
func blocks(size, unit int) int { return max(1, (size+unit-1)/unit) }

// readUnits is the read units of reading n blocks.
func readUnits(n int, consistent bool) float64 {
	if consistent {
		return float64(n)
	}
	return float64(n) / 2
}

func tableKey(item map[string]types.AttributeValue) map[string]types.AttributeValue {
	return map[string]types.AttributeValue{dynamojobstore.AttrPK: item[dynamojobstore.AttrPK]}
}

// PutItem passes the call on, charging its write.
func (c *Client) PutItem(ctx context.Context, in *dynamodb.PutItemInput, opts ...func(*dynamodb.Options)) (out *dynamodb.PutItemOutput, err error) {
	err = c.around(ctx, "PutItem", false, []map[string]types.AttributeValue{tableKey(in.Item)}, func() error {
		out, err = c.DynamoDBAPI.PutItem(ctx, in, opts...)
		return err
	})
	return out, err
}

// UpdateItem passes the call on, charging its write.
func (c *Client) UpdateItem(ctx context.Context, in *dynamodb.UpdateItemInput, opts ...func(*dynamodb.Options)) (out *dynamodb.UpdateItemOutput, err error) {
	err = c.around(ctx, "UpdateItem", false, []map[string]types.AttributeValue{in.Key}, func() error {
		out, err = c.DynamoDBAPI.UpdateItem(ctx, in, opts...)
		return err
	})
	return out, err
}

// DeleteItem passes the call on, charging its write.
func (c *Client) DeleteItem(ctx context.Context, in *dynamodb.DeleteItemInput, opts ...func(*dynamodb.Options)) (out *dynamodb.DeleteItemOutput, err error) {
	err = c.around(ctx, "DeleteItem", false, []map[string]types.AttributeValue{in.Key}, func() error {
		out, err = c.DynamoDBAPI.DeleteItem(ctx, in, opts...)
		return err
	})
	return out, err
}

// TransactWriteItems passes the call on, charging its writes.
func (c *Client) TransactWriteItems(ctx context.Context, in *dynamodb.TransactWriteItemsInput, opts ...func(*dynamodb.Options)) (out *dynamodb.TransactWriteItemsOutput, err error) {
	var keys []map[string]types.AttributeValue
	for _, it := range in.TransactItems {
		switch {
		case it.Put != nil:
			keys = append(keys, tableKey(it.Put.Item))
		case it.Update != nil:
			keys = append(keys, it.Update.Key)
		case it.Delete != nil:
			keys = append(keys, it.Delete.Key)
		case it.ConditionCheck != nil:
			keys = append(keys, it.ConditionCheck.Key)
		}
	}
	err = c.around(ctx, "TransactWriteItems", true, keys, func() error {
		out, err = c.DynamoDBAPI.TransactWriteItems(ctx, in, opts...)
		return err
	})
	return out, err
}

// GetItem passes the call on, charging its read.
func (c *Client) GetItem(ctx context.Context, in *dynamodb.GetItemInput, opts ...func(*dynamodb.Options)) (*dynamodb.GetItemOutput, error) {
	out, err := c.DynamoDBAPI.GetItem(ctx, in, opts...)
	if err == nil {
		c.meter.chargeRead("GetItem", readUnits(blocks(dynamojobstore.ItemSize(out.Item), readBlock), aws.ToBool(in.ConsistentRead)))
	}
	return out, err
}

// BatchGetItem passes the call on, charging its reads.
func (c *Client) BatchGetItem(ctx context.Context, in *dynamodb.BatchGetItemInput, opts ...func(*dynamodb.Options)) (*dynamodb.BatchGetItemOutput, error) {
	out, err := c.DynamoDBAPI.BatchGetItem(ctx, in, opts...)
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
			units += readUnits(blocks(size, readBlock), aws.ToBool(ka.ConsistentRead))
		}
	}
	c.meter.chargeRead("BatchGetItem", units)
	return out, err
}

// Query passes the call on, charging its read.
func (c *Client) Query(ctx context.Context, in *dynamodb.QueryInput, opts ...func(*dynamodb.Options)) (*dynamodb.QueryOutput, error) {
	out, err := c.DynamoDBAPI.Query(ctx, in, opts...)
	if err == nil {
		size := 0
		for _, it := range out.Items {
			size += dynamojobstore.ItemSize(it)
		}
		consistent := aws.ToBool(in.ConsistentRead) && in.IndexName == nil
		c.meter.chargeRead("Query", readUnits(blocks(size, readBlock), consistent))
	}
	return out, err
}

// IndexUnits is the write units a write costs global secondary index g,
// from the item before and after it (nil: no item), by the rules in the
// package doc.
func IndexUnits(g types.GlobalSecondaryIndex, before, after map[string]types.AttributeValue) int {
	bk, bp := indexEntry(g, before)
	ak, ap := indexEntry(g, after)
	size := func(k, p map[string]types.AttributeValue) int {
		return blocks(dynamojobstore.ItemSize(k)+dynamojobstore.ItemSize(p)+100, writeBlock)
	}
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

// indexEntry is item's entry in g, its keys (the index's and the table's)
// and its projected attributes; nil when the item lacks a key attribute of
// g (sparse index) or there is no item.
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
	switch {
	case g.Projection == nil:
	case g.Projection.ProjectionType == types.ProjectionTypeAll:
		for a, v := range item {
			if _, ok := keys[a]; !ok {
				projected[a] = v
			}
		}
	default:
		for _, a := range g.Projection.NonKeyAttributes {
			if v, ok := item[a]; ok {
				projected[a] = v
			}
		}
	}
	return keys, projected
}
