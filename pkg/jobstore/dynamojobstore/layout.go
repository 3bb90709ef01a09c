package dynamojobstore

import (
	"context"
	"errors"
	"hash/fnv"
	"strconv"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/jobfleet/jobfleet/pkg/errcode"
	"github.com/jobfleet/jobfleet/pkg/job"
)

// Layout is how a job table spreads its index entries over index
// partitions: job ids and due times grow monotonically, so one partition
// key value would take every write of an index (about 1,000 write units a
// second at most). More shards allow more writes a second; fewer make
// Due and List cheaper (one Query per shard per call).
//
// The layout is fixed when the table is created: CreateTable records it in
// the table (item pk = "meta#layout"), and Open reads it, so that every
// client of a table agrees on it. A table without that item (made by an
// infrastructure template) has DefaultLayout.
type Layout struct {
	// DueShards is how many partitions of the due index each status has.
	DueShards int
	// ListShards is how many partitions the list index has.
	ListShards int
}

// DefaultLayout: 8 shards each, room for some thousands of job starts a
// second.
var DefaultLayout = Layout{DueShards: 8, ListShards: 8}

// MaxShards bounds Layout's shard counts.
const MaxShards = 64

const (
	layoutPK       = "meta#layout"
	attrDueShards  = "due_shards"
	attrListShards = "list_shards"
)

func (l Layout) valid() bool {
	return l.DueShards >= 1 && l.DueShards <= MaxShards && l.ListShards >= 1 && l.ListShards <= MaxShards
}

func shard(id string, n int) int {
	h := fnv.New32a()
	h.Write([]byte(id))
	return int(h.Sum32() % uint32(n))
}

// duePK is the due index partition of job id in status s.
func (l Layout) duePK(s job.Status, id string) string { return dueShardPK(s, shard(id, l.DueShards)) }

func dueShardPK(s job.Status, i int) string { return string(s) + "#" + strconv.Itoa(i) }

// listPK is the list index partition of job id.
func (l Layout) listPK(id string) string { return listShardPK(shard(id, l.ListShards)) }

func listShardPK(i int) string { return "jobs#" + strconv.Itoa(i) }

func (l Layout) item() map[string]types.AttributeValue {
	return map[string]types.AttributeValue{
		AttrPK:         s(layoutPK),
		attrDueShards:  n(int64(l.DueShards)),
		attrListShards: n(int64(l.ListShards)),
	}
}

func layoutOf(item map[string]types.AttributeValue) (Layout, error) {
	d := &decoder{item: item}
	l := Layout{DueShards: d.integer(attrDueShards), ListShards: d.integer(attrListShards)}
	if d.err == nil && !l.valid() {
		d.err = errors.New("shard counts out of range")
	}
	if d.err != nil {
		return Layout{}, errcode.Wrap(errcode.Internal, d.err, "decode the job table's layout item %v", l)
	}
	return l, nil
}

// readLayout returns the layout recorded in table, or DefaultLayout.
func readLayout(ctx context.Context, client interface {
	GetItem(context.Context, *dynamodb.GetItemInput, ...func(*dynamodb.Options)) (*dynamodb.GetItemOutput, error)
}, table string) (Layout, error) {
	out, err := client.GetItem(ctx, &dynamodb.GetItemInput{
		TableName:      aws.String(table),
		Key:            map[string]types.AttributeValue{AttrPK: s(layoutPK)},
		ConsistentRead: aws.Bool(true),
	})
	if err != nil {
		return Layout{}, mapErr(ctx, err, "read the layout of job table %q", table)
	}
	if len(out.Item) == 0 {
		return DefaultLayout, nil
	}
	return layoutOf(out.Item)
}
