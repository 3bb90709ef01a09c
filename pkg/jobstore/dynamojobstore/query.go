package dynamojobstore

import (
	"cmp"
	"context"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/jobfleet/jobfleet/pkg/errcode"
	"github.com/jobfleet/jobfleet/pkg/job"
	"github.com/jobfleet/jobfleet/pkg/jobstore"
)

// maxBatchGet is the most keys one BatchGetItem takes.
const maxBatchGet = 100

// fetch reads the jobs ids strongly consistently, in pages of maxBatchGet,
// and returns those that exist by id. Keys DynamoDB leaves unprocessed
// (throttling, or the 16 MB response limit) are read one by one with
// GetItem, whose failures the SDK retries.
func (d *Driver) fetch(ctx context.Context, ids []string, doing string) (map[string]*job.Job, error) {
	found := make(map[string]*job.Job, len(ids))
	for start := 0; start < len(ids); start += maxBatchGet {
		part := ids[start:min(start+maxBatchGet, len(ids))]
		keys := make([]map[string]types.AttributeValue, len(part))
		for i, id := range part {
			keys[i] = map[string]types.AttributeValue{AttrPK: s(jobPK(id))}
		}
		out, err := d.client.BatchGetItem(ctx, &dynamodb.BatchGetItemInput{
			RequestItems: map[string]types.KeysAndAttributes{
				d.table: {Keys: keys, ConsistentRead: aws.Bool(true)},
			},
		})
		if err != nil {
			return nil, mapErr(ctx, err, "%s: read jobs", doing)
		}
		items, unprocessed := out.Responses[d.table], out.UnprocessedKeys[d.table].Keys
		if d.name != d.table {
			// Asked by ARN. UnprocessedKeys comes in RequestItems' form,
			// but AWS documents Responses only as keyed by "table name or
			// table ARN", and an entry left unread would be jobs silently
			// missing from Due, Owned and List: take the name's entry too.
			items = append(items, out.Responses[d.name]...)
			unprocessed = append(unprocessed, out.UnprocessedKeys[d.name].Keys...)
		}
		for _, item := range items {
			j, err := decodeJob(item)
			if err != nil {
				return nil, errcode.Wrap(errcode.Internal, err, "%s", doing)
			}
			found[j.ID] = j
		}
		for _, key := range unprocessed {
			id := strings.TrimPrefix(itemPK(key), jobPrefix)
			j, err := d.getItem(ctx, id)
			if err != nil {
				return nil, errcode.Wrap(errcode.Of(err), err, "%s", doing)
			}
			if j != nil {
				found[j.ID] = j
			}
		}
	}
	return found, nil
}

// parallel runs fn(i) for i in [0, n), at most d.concurrency at once, and
// returns the first error.
func (d *Driver) parallel(n int, fn func(i int) error) error {
	errs := make([]error, n)
	sem := make(chan struct{}, d.concurrency)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			errs[i] = fn(i)
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// indexEntry is one entry read from an index: the job's id and the index's
// sort key.
type indexEntry struct {
	id  string
	due int64 // due index only
}

func entryOf(item map[string]types.AttributeValue) (indexEntry, bool) {
	pk := itemPK(item)
	if !strings.HasPrefix(pk, jobPrefix) {
		return indexEntry{}, false
	}
	e := indexEntry{id: strings.TrimPrefix(pk, jobPrefix)}
	if v, ok := item[AttrDueAt].(*types.AttributeValueMemberN); ok {
		e.due, _ = strconv.ParseInt(v.Value, 10, 64)
	}
	return e, true
}

// Due returns up to limit jobs in status whose DueAt, in whole
// milliseconds, is before `before`, earliest first (ties by id); see
// jobstore.Driver. It queries every shard of the status in the due index,
// takes the earliest entries, reads their records and keeps those that
// still match.
func (d *Driver) Due(ctx context.Context, status job.Status, before time.Time, limit int) ([]*job.Job, error) {
	if err := d.check(); err != nil {
		return nil, err
	}
	doing := "due " + string(status) + " jobs"
	bound := millis(before)
	shards := make([][]indexEntry, d.layout.DueShards)
	err := d.parallel(len(shards), func(i int) error {
		e := newExpr()
		out, err := d.client.Query(ctx, &dynamodb.QueryInput{
			TableName:                 aws.String(d.table),
			IndexName:                 aws.String(IndexActive),
			KeyConditionExpression:    aws.String(e.name(AttrDuePK) + " = " + e.value(s(dueShardPK(status, i))) + " AND " + e.name(AttrDueAt) + " < " + e.value(n(bound))),
			ExpressionAttributeNames:  e.names,
			ExpressionAttributeValues: e.values,
			Limit:                     aws.Int32(int32(limit)),
		})
		if err != nil {
			return mapErr(ctx, err, "%s", doing)
		}
		for _, item := range out.Items {
			if en, ok := entryOf(item); ok {
				shards[i] = append(shards[i], en)
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	all := slices.Concat(shards...)
	slices.SortFunc(all, func(a, b indexEntry) int { return cmp.Or(cmp.Compare(a.due, b.due), strings.Compare(a.id, b.id)) })
	all = all[:min(limit, len(all))]
	ids := make([]string, len(all))
	for i, en := range all {
		ids[i] = en.id
	}
	found, err := d.fetch(ctx, ids, doing)
	if err != nil {
		return nil, err
	}
	var jobs []*job.Job
	for _, id := range ids {
		j := found[id]
		if j != nil && j.Status == status && !j.DueAt.IsZero() && millis(j.DueAt) < bound {
			jobs = append(jobs, j)
		}
	}
	slices.SortFunc(jobs, func(a, b *job.Job) int {
		return cmp.Or(cmp.Compare(millis(a.DueAt), millis(b.DueAt)), strings.Compare(a.ID, b.ID))
	})
	return jobs, nil
}

// Owned returns up to limit RUNNING jobs whose owner is owner, by id; see
// jobstore.Driver. There is no index by owner: it queries every RUNNING
// shard of the active index (where owner is projected) to its end with a
// filter on owner, so each call reads every RUNNING entry of the table (see
// the package doc), then reads the records of the matching entries and keeps
// those still RUNNING and owned by owner.
func (d *Driver) Owned(ctx context.Context, owner string, limit int) ([]*job.Job, error) {
	if err := d.check(); err != nil {
		return nil, err
	}
	doing := "jobs owned by " + owner
	shards := make([][]string, d.layout.DueShards)
	err := d.parallel(len(shards), func(i int) error {
		var start map[string]types.AttributeValue
		for {
			e := newExpr()
			in := &dynamodb.QueryInput{
				TableName:                 aws.String(d.table),
				IndexName:                 aws.String(IndexActive),
				KeyConditionExpression:    aws.String(e.name(AttrDuePK) + " = " + e.value(s(dueShardPK(job.Running, i)))),
				FilterExpression:          aws.String(e.name(AttrOwner) + " = " + e.value(s(owner))),
				ProjectionExpression:      aws.String(e.name(AttrPK)),
				ExpressionAttributeNames:  e.names,
				ExpressionAttributeValues: e.values,
				ExclusiveStartKey:         start,
			}
			if d.ownedPage > 0 {
				in.Limit = aws.Int32(d.ownedPage)
			}
			out, err := d.client.Query(ctx, in)
			if err != nil {
				return mapErr(ctx, err, "%s", doing)
			}
			for _, item := range out.Items {
				if en, ok := entryOf(item); ok {
					shards[i] = append(shards[i], en.id)
				}
			}
			// A page can hold no match and still not be the last: the
			// filter applies after the page is read.
			if start = out.LastEvaluatedKey; len(start) == 0 {
				return nil
			}
		}
	})
	if err != nil {
		return nil, err
	}
	ids := slices.Concat(shards...)
	slices.Sort(ids)
	ids = slices.Compact(ids)
	var jobs []*job.Job
	for start := 0; start < len(ids) && len(jobs) < limit; start += maxBatchGet {
		part := ids[start:min(start+maxBatchGet, len(ids))]
		found, err := d.fetch(ctx, part, doing)
		if err != nil {
			return nil, err
		}
		for _, id := range part {
			if j := found[id]; j != nil && j.Status == job.Running && j.Owner == owner && len(jobs) < limit {
				jobs = append(jobs, j)
			}
		}
	}
	return jobs, nil
}

// listShard walks one shard of the list index, newest first, below the
// cursor.
type listShard struct {
	d      *Driver
	q      jobstore.ListQuery
	pk     string
	page   int32
	buf    []string
	start  map[string]types.AttributeValue
	primed bool // the first page was read
}

// head returns the shard's next id, reading a page when its buffer is
// empty; "" when the shard is exhausted.
func (l *listShard) head(ctx context.Context) (string, error) {
	for len(l.buf) == 0 {
		if l.primed && len(l.start) == 0 {
			return "", nil
		}
		e := newExpr()
		cond := e.name(AttrListPK) + " = " + e.value(s(l.pk))
		if l.q.Cursor != "" {
			cond += " AND " + e.name(AttrID) + " < " + e.value(s(l.q.Cursor))
		}
		in := &dynamodb.QueryInput{
			TableName:              aws.String(l.d.table),
			IndexName:              aws.String(IndexList),
			KeyConditionExpression: aws.String(cond),
			ScanIndexForward:       aws.Bool(false),
			ExclusiveStartKey:      l.start,
			Limit:                  aws.Int32(l.page),
		}
		if l.q.Type != "" {
			in.FilterExpression = aws.String(e.name(AttrType) + " = " + e.value(s(l.q.Type)))
		}
		in.ExpressionAttributeNames, in.ExpressionAttributeValues = e.names, e.values
		out, err := l.d.client.Query(ctx, in)
		if err != nil {
			return "", mapErr(ctx, err, "list jobs")
		}
		l.primed = true
		l.start = out.LastEvaluatedKey
		for _, item := range out.Items {
			if en, ok := entryOf(item); ok {
				l.buf = append(l.buf, en.id)
			}
		}
	}
	return l.buf[0], nil
}

// List returns one page of jobs matching q, newest first; see
// jobstore.Driver and the package doc. The cursor is the id after which the
// page starts (exclusive); anything but a job id is errcode.InvalidArgument.
func (d *Driver) List(ctx context.Context, q jobstore.ListQuery) (jobstore.Page, error) {
	if err := d.check(); err != nil {
		return jobstore.Page{}, err
	}
	if q.Cursor != "" && !job.ValidID(q.Cursor) {
		return jobstore.Page{}, errcode.New(errcode.InvalidArgument, "list jobs: invalid cursor %q", q.Cursor)
	}
	want := q.Limit + 1 // one more than asked, to know whether a next page exists
	shards := make([]*listShard, d.layout.ListShards)
	for i := range shards {
		shards[i] = &listShard{d: d, q: q, pk: listShardPK(i), page: int32(min(want, 1000))}
	}
	// Read every shard's first page at once; later pages as needed.
	if err := d.parallel(len(shards), func(i int) error {
		_, err := shards[i].head(ctx)
		return err
	}); err != nil {
		return jobstore.Page{}, err
	}
	budget := max(want, d.listBudget)
	var (
		matched  []*job.Job
		examined int
		last     string
	)
	for len(matched) < want && examined < budget {
		// The next candidates, newest first: as many as still needed (all
		// of them match when nothing filters on status), at most a
		// BatchGetItem's worth.
		chunk := maxBatchGet
		if q.Status == job.None {
			chunk = min(chunk, want-len(matched))
		}
		chunk = min(chunk, budget-examined)
		var ids []string
		for len(ids) < chunk {
			best := -1
			var bestID string
			for i, sh := range shards {
				id, err := sh.head(ctx)
				if err != nil {
					return jobstore.Page{}, err
				}
				if id != "" && id > bestID {
					best, bestID = i, id
				}
			}
			if best < 0 {
				break
			}
			shards[best].buf = shards[best].buf[1:]
			ids = append(ids, bestID)
		}
		if len(ids) == 0 {
			break
		}
		found, err := d.fetch(ctx, ids, "list jobs")
		if err != nil {
			return jobstore.Page{}, err
		}
		for _, id := range ids {
			examined++
			last = id
			j := found[id]
			if j == nil || (q.Status != job.None && j.Status != q.Status) || (q.Type != "" && j.Type != q.Type) {
				continue
			}
			matched = append(matched, j)
			if len(matched) == want {
				break
			}
		}
	}
	var p jobstore.Page
	switch {
	case len(matched) > q.Limit:
		p.Jobs = matched[:q.Limit]
		p.Next = p.Jobs[len(p.Jobs)-1].ID
	case examined >= budget && last != "" && !d.exhausted(ctx, shards):
		p.Jobs = matched
		p.Next = last
	default:
		p.Jobs = matched
	}
	return p, nil
}

// exhausted reports whether every shard has been read to its end.
func (d *Driver) exhausted(ctx context.Context, shards []*listShard) bool {
	for _, sh := range shards {
		if id, err := sh.head(ctx); err != nil || id != "" {
			return false
		}
	}
	return true
}
