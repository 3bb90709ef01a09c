// Package dynamojobstore is the aws profile's job store: a jobstore.Driver
// over one DynamoDB table (default name DefaultTable), through
// aws-sdk-go-v2. Create the table with CreateTable (or mirror
// CreateTableInput in infrastructure code), then Open it.
//
// # Contract
//
// It implements the jobstore contract and passes jobstore/storetest (run
// against a moto server in conformance_test.go):
//
//   - Every entry of a Create or Apply batch is its own DynamoDB call (a
//     batch is not a transaction, and DynamoDB has no conditional batch
//     outside transactions). Entries run concurrently, at most
//     Options.Concurrency at once; entries that touch the same job (or, for
//     Create, claim the same key) run one after another in batch order, so a
//     later entry sees an earlier entry's write, as in sqlitejobstore.
//   - Results are per entry. The call's own error means that no entry got
//     an answer (context ended, table missing, throttled throughout, ...).
//     When only some entries get no answer, those entries carry the error
//     (errcode.Unavailable or errcode.Canceled) and the others their
//     results. An entry without an answer may or may not have been written,
//     as with any DynamoDB call whose response is lost; the conditions make
//     retrying it safe.
//   - A call that fails is not repeated here: the SDK's retryer has
//     already retried what it retries (throttling, server errors). The
//     two follow-up writes described under Writes (a wrong Change.Key, a
//     broken key claim) are other writes, made on an answer.
//
// # Items
//
// One table, partition key pk (S), no sort key. A job is the item
// pk = "job#<id>"; its attributes are native DynamoDB attributes named as in
// the job's JSON (job.Field.String()): strings as S, counters as N, times as
// N in Unix milliseconds (UTC), cancel_requested as BOOL, and payload,
// progress and result as B holding the bytes exactly as given. Empty and zero
// values are not stored (except status, rev, attempt, failures and
// max_attempts, which are always present), so the sparse indexes stay
// sparse. Besides the record: due_pk and list_pk (index keys, below), ttl
// (epoch seconds of expires_at, rounded up: the table's TTL attribute) and
// history, a map from attempt number to entry.
//
// A key claim is the item pk = "key#<key>" with holder (the job id) and
// payload_hash. It exists exactly while its job is active. The item
// pk = "meta#layout" records the table's Layout.
//
// # Writes
//
//   - Create, unkeyed: one PutItem with attribute_not_exists(pk) and
//     ReturnValuesOnConditionCheckFailure=ALL_OLD (the holder's payload hash
//     comes back without a read).
//   - Create, keyed: one TransactWriteItems [Put key item, Put job item],
//     both attribute_not_exists(pk) with ALL_OLD; the cancellation reasons
//     say which was taken (the id wins when both are).
//   - Apply: one UpdateItem. The patch becomes SET/REMOVE clauses (REMOVE
//     for empty values), SET rev = rev + 1, and history.<attempt> upserts
//     with REMOVE history.<attempt-MaxHistory>, which keeps the map bounded
//     without a read and equals job.PutHistory whenever the history's
//     attempts are consecutive, as they are for every history job.Policy
//     writes. The job.Cond becomes the ConditionExpression
//     status = :s AND attempt = :a [AND owner = :o]
//     [AND (attribute_not_exists(lease_until) OR lease_until < :t)]
//     [AND rev = :r]. ReturnValues=ALL_NEW gives the winner its record;
//     ReturnValuesOnConditionCheckFailure=ALL_OLD gives a loser the record as
//     found with no extra read (no record: errcode.NotFound).
//   - A change that makes a job terminal is also conditional on the stored
//     key being Change.Key (absent when Change.Key is ""). With a key it is
//     one TransactWriteItems [Update job item, Delete key item with
//     attribute_not_exists(pk) OR holder = :id], followed by a strongly
//     consistent GetItem for the new record (a transaction returns no
//     values; a terminal record cannot change any more). Its
//     ClientRequestToken is derived from the change, so a repeated call of
//     the same change within DynamoDB's 10-minute idempotency window,
//     whether the SDK's retry or the caller's, applies it once and reports
//     success. If the stored key differs from Change.Key while the rest of
//     the condition holds, the change is retried once with the stored key,
//     so a wrong Change.Key never leaves a claim behind (sqlitejobstore
//     releases whatever key the record holds). If the key item names
//     another holder (a broken claim), the job is updated alone and that
//     claim is left to its holder.
//
// # Indexes
//
// Two sparse global secondary indexes, read with Query (never Scan) and
// followed by a strongly consistent BatchGetItem of the records, which are
// checked again (an index entry that lags a write is dropped rather than
// returned):
//
//	active  due_pk = "<status>#<shard>" (HASH), due_at (RANGE)  INCLUDE owner
//	        only active jobs carry due_pk. Due queries the
//	        Layout.DueShards partitions of a status and merges them by
//	        due_at (ties by id); Owned queries the RUNNING partitions with
//	        a filter on owner (below).
//	list    list_pk = "jobs#<shard>" (HASH), id (RANGE)          INCLUDE type
//	        written once, at create. List merges the Layout.ListShards
//	        partitions newest first and filters by type in the query and by
//	        status on the records.
//
// A job's shard is a hash of its id. The shards spread each index's writes
// over several partition key values, because ids and due times grow
// monotonically and one value would take every write; how many is the
// table's Layout (DefaultLayout: 8 and 8), fixed at CreateTable.
//
// There is no index by owner. Owned is called when a worker stops (the
// reaper, on a fleet event), seldom next to the writes every job makes, so
// it reads the RUNNING partitions of active to their end with
// FilterExpression owner = :o, and the records of the matching entries
// only. So each Owned call reads every RUNNING entry of the table: its cost
// grows with the number of running jobs, not with the table. An entry is
// about 150 bytes with an ECS task ARN as owner, so 10,000 running jobs
// make about 1.5 MB: some 200 read units, in one or two 1 MB pages per
// shard, per stopped worker (more calls for a worker that owned more jobs
// than the caller's limit).
//
// Write cost. DynamoDB bills one write unit per KB of the larger of the old
// and new item, twice that inside a transaction, plus, per index, one unit
// for an entry put or deleted, two when an update changes the entry's key
// (a delete and a put), one when it changes only projected attributes, and
// none when it changes neither. moto reports no index capacity, so
// TestWriteCapacity computes these rules from the items as stored (a no-op
// job's item is about 320-460 bytes). For an unkeyed no-op job:
//
//	create  3  table 1, active 1 (enter), list 1
//	start   3  table 1, active 2 (key changes: status and due_at)
//	renew   3  table 1, active 2 (due_at changes)
//	finish  2  table 1, active 1 (leave)
//
// so create + start + finish is 8 write units (10 with the earlier owned
// index: an entry put at start and deleted at finish). Projecting
// owner into active adds no write: job.Policy changes owner only at start,
// takeover, finish and reclaim, and each of these changes the entry's key
// too (status or due_at), so the entry is rewritten anyway
// (TestProjectedOwnerIsFree checks every change job.Policy makes). A change
// that set owner alone would cost one write more.
//
// The project's goal of 3 is out of reach while the reaper's sweeps are
// index queries. The table alone takes 3 (create, start and finish are
// three conditional writes, at three moments, by three writers), and the
// sweeps need at least 4 index units: a QUEUED job must be in an index from
// create (Due(QUEUED) finds a message lost between store and send, and a
// missed start deadline): 1; a RUNNING job must be found by lease end, a
// sort key other than its resend deadline, so start moves the entry: 2; a
// finished job must leave it, or every sweep would read every finished job
// until TTL deletes it: 1. List must return every job, finished ones too,
// newest first, from an index: 1 entry more, which never changes. 3 + 4 + 1
// = 8. Keeping QUEUED jobs out of active would strand a job whose message
// was never sent; serving List from active (which sorts by due time and
// holds active jobs only) would read every active job per page; serving it
// from the table itself would need a new table keyed by shard and id,
// putting every job write, renewals included, on Layout.ListShards
// partition key values, to save 1 unit.
//
// A keyed job adds its key item and pays double for the transactional
// create and finish: 14 units (create 6, finish 5, counting the index
// writes of a transaction at the ordinary rate). Renewals cost 3 units
// each, so a job that renews its lease three times or more pays more for
// renewals than for the rest of its life. Reads: every Due and List call costs one
// Query per shard, and Owned at least one per RUNNING shard (see above),
// plus strongly consistent reads of the records returned.
//
// List pages are bounded: a page examines at most max(limit+1, 1000)
// records. When a status filter rejects them all before the page is full,
// the page comes back short with Next set after the last record examined,
// so a walk visits every job once and each call does bounded work.
//
// # Naming the table
//
// Open takes the table's name or its ARN
// (arn:aws:dynamodb:us-east-1:123456789012:table/jobfleet-jobs). DynamoDB
// takes a table ARN wherever it takes a table name in the calls the driver
// makes (TableName, and the keys of BatchGetItem's RequestItems); an ARN
// is how a table of another account is named, whose resource-based policy
// must grant this one access. The driver sends the table as it was given;
// index names (IndexName) are the index's alone in either case. A
// malformed ARN (another service, an index or stream ARN, a part missing)
// is errcode.InvalidArgument naming the value, as is the ARN of a table in
// another region than the client's (DynamoDB refuses it with "Invalid AWS
// region"; a client calls one region). The idempotency token of a
// transaction (see Writes) is derived from the table as given, so a
// repeat of a change by a process that names the table the other way is
// reported as a lost condition, as in sqlitejobstore. The jobfleet
// bootstrap creates a table given by name only: one given by ARN is taken
// to exist.
//
// # Tables of the earlier layout
//
// Tables made before the active index have the indexes due (active's keys,
// KEYS_ONLY) and owned (owner, id). DynamoDB cannot change an index's
// projection in place, so active is a new index rather than due changed,
// and Open and CreateTable refuse a table without it with
// errcode.FailedPrecondition, saying what to do. Both versions write the
// items alike, so a table is migrated while everything runs:
//
//  1. Add active (one UpdateTable, GlobalSecondaryIndexUpdates Create as
//     CreateTableInput defines it, with AttributeDefinitions due_pk S and
//     due_at N; or a stack update that adds only it). DynamoDB fills it
//     from the items while the earlier version keeps using due and owned.
//  2. When it is ACTIVE, deploy this version (Open refuses the table while
//     active is being built).
//  3. When no process of the earlier version runs, delete owned, then due
//     (DynamoDB takes one index per UpdateTable). Until then each job
//     also pays their 6 units.
//
// Extra indexes are otherwise no error: Open checks that the indexes it
// reads exist, are queryable, and have their keys and projected
// attributes.
//
// # Differences from sqlitejobstore (and from AWS)
//
//   - Due, Owned and List read global secondary indexes, which lag writes on
//     AWS (moto updates them synchronously). They may miss a job written a
//     moment ago; they never return a record that does not match, since the
//     records are re-read and re-checked.
//   - Owned reads the index entry of every running job, whoever owns it
//     (see Indexes); sqlitejobstore reads an index by owner.
//   - Times are stored to the millisecond (sqlitejobstore: nanoseconds). A
//     lease condition compares whole milliseconds: a lease counts as expired
//     when its millisecond is before the condition's, never early, at most
//     1 ms late (as Due does in both adapters).
//   - The record cap is DynamoDB's item size (attribute names plus values,
//     MaxItemBytes); sqlitejobstore caps its JSON encoding at the same
//     400 KiB, so near the limit the two may disagree by a few hundred bytes.
//   - Changes to one job within a batch run in batch order; changes to
//     different jobs run concurrently, so a batch has no single point in
//     time (sqlitejobstore: one transaction).
//   - A keyed create, or a terminal change of a keyed job, can fail with
//     errcode.Unavailable when a concurrent transaction touches the same
//     item: DynamoDB cancels it with TransactionConflict, which the SDK does
//     not retry. Retry it; a conditional write cannot be applied twice.
//     (On AWS this happens when several submissions race for one key; moto
//     does not produce conflicts.) Repeating the
//     same terminal change of a keyed job within 10 minutes reports success
//     (ClientRequestToken), where sqlitejobstore reports the repeat as a lost
//     condition.
//   - Expired terminal records are deleted by DynamoDB's TTL, lazily (AWS:
//     typically within days; moto: never); jobstore.Store hides them on read
//     meanwhile. There is no Purge.
//   - History entries are kept by attempt number; see Writes for when the
//     trim differs from job.PutHistory (only for histories with gaps, which
//     job.Policy never writes).
//
// Errors are mapped once, here: a failed condition is
// errcode.FailedPrecondition with the record as found; a missing job
// errcode.NotFound; a taken id or key errcode.AlreadyExists naming the
// holder; an item over the size limit or a request DynamoDB refuses as
// invalid (ValidationException) errcode.InvalidArgument; throttling
// (ProvisionedThroughputExceeded, RequestLimitExceeded, ThrottlingException),
// transaction conflicts and server errors errcode.Unavailable, after the
// SDK's own retries; a missing table errcode.NotFound; an ended context
// errcode.Canceled; use after Close errcode.Closed.
package dynamojobstore

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/jobfleet/jobfleet/pkg/clock"
	"github.com/jobfleet/jobfleet/pkg/errcode"
	"github.com/jobfleet/jobfleet/pkg/job"
	"github.com/jobfleet/jobfleet/pkg/jobstore"
)

// DynamoDBAPI is the part of the DynamoDB client the driver uses;
// *dynamodb.Client satisfies it.
type DynamoDBAPI interface {
	DescribeTable(context.Context, *dynamodb.DescribeTableInput, ...func(*dynamodb.Options)) (*dynamodb.DescribeTableOutput, error)
	GetItem(context.Context, *dynamodb.GetItemInput, ...func(*dynamodb.Options)) (*dynamodb.GetItemOutput, error)
	PutItem(context.Context, *dynamodb.PutItemInput, ...func(*dynamodb.Options)) (*dynamodb.PutItemOutput, error)
	UpdateItem(context.Context, *dynamodb.UpdateItemInput, ...func(*dynamodb.Options)) (*dynamodb.UpdateItemOutput, error)
	TransactWriteItems(context.Context, *dynamodb.TransactWriteItemsInput, ...func(*dynamodb.Options)) (*dynamodb.TransactWriteItemsOutput, error)
	Query(context.Context, *dynamodb.QueryInput, ...func(*dynamodb.Options)) (*dynamodb.QueryOutput, error)
	BatchGetItem(context.Context, *dynamodb.BatchGetItemInput, ...func(*dynamodb.Options)) (*dynamodb.BatchGetItemOutput, error)
	DeleteItem(context.Context, *dynamodb.DeleteItemInput, ...func(*dynamodb.Options)) (*dynamodb.DeleteItemOutput, error) // leases
}

var _ DynamoDBAPI = (*dynamodb.Client)(nil)

// Options configure Open. Nil options mean defaults.
type Options struct {
	// Clock is the Store's clock, for hiding records past their retention;
	// default real time.
	Clock clock.Clock
	// Concurrency is how many DynamoDB calls one Create, Apply or query
	// makes at once; default 16.
	Concurrency int
}

// Open checks that the job table exists and returns a Store over it. table
// is the table's name or its ARN (see "Naming the table").
func Open(ctx context.Context, client DynamoDBAPI, table string, opts *Options) (*jobstore.Store, error) {
	d, err := OpenDriver(ctx, client, table, opts)
	if err != nil {
		return nil, err
	}
	var c clock.Clock
	if opts != nil {
		c = opts.Clock
	}
	return jobstore.New(d, &jobstore.Options{Clock: c}), nil
}

// Driver is the DynamoDB job store driver. Its methods are safe for
// concurrent use. It does not own the client.
type Driver struct {
	client DynamoDBAPI
	// table is the table as given to Open, a name or an ARN, and is what
	// every call sends; name is its name.
	table       string
	name        string
	layout      Layout
	concurrency int
	// listBudget bounds the records one List call examines: at most
	// max(limit+1, listBudget).
	listBudget int
	// ownedPage is the Limit of Owned's queries; 0 leaves DynamoDB's 1 MB
	// pages (tests set it to reach further pages).
	ownedPage int32
	closed    atomic.Bool
}

var _ jobstore.Driver = (*Driver)(nil)

const defaultListBudget = 1000

// OpenDriver checks that the job table exists, with the indexes the driver
// queries, reads its Layout, and returns a driver for it: errcode.NotFound
// when the table does not exist, errcode.FailedPrecondition when it lacks an
// index, has one with other keys or without an attribute the driver reads
// in it, or one not yet queryable (a table of the earlier layout is refused
// so; the message says how to migrate it). Most callers want Open.
func OpenDriver(ctx context.Context, client DynamoDBAPI, table string, opts *Options) (*Driver, error) {
	if opts == nil {
		opts = &Options{}
	}
	if client == nil || table == "" {
		return nil, errcode.New(errcode.InvalidArgument, "open job store: a client and a table name are required")
	}
	name, err := tableName(client, table)
	if err != nil {
		return nil, errcode.Wrap(errcode.Of(err), err, "open job store: table %q", table)
	}
	out, err := client.DescribeTable(ctx, &dynamodb.DescribeTableInput{TableName: aws.String(table)})
	var notFound *types.ResourceNotFoundException
	if errors.As(err, &notFound) {
		return nil, errcode.Wrap(errcode.NotFound, err,
			"open job store: table %q not found (create it with dynamojobstore.CreateTable or the infrastructure template)", table)
	}
	if err != nil {
		return nil, mapErr(ctx, err, "open job store: describe table %q", table)
	}
	if err := checkIndexes("open job store", table, out.Table); err != nil {
		return nil, err
	}
	layout, err := readLayout(ctx, client, table)
	if err != nil {
		return nil, fmt.Errorf("open job store: %w", err)
	}
	conc := opts.Concurrency
	if conc <= 0 {
		conc = 16
	}
	return &Driver{client: client, table: table, name: name, layout: layout, concurrency: conc, listBudget: defaultListBudget}, nil
}

func (d *Driver) check() error {
	if d.closed.Load() {
		return errcode.New(errcode.Closed, "job store %s is closed", d.table)
	}
	return nil
}

// Close marks the driver closed: later calls fail with errcode.Closed.
// Calls in flight finish. The client is the caller's.
func (d *Driver) Close() error {
	d.closed.Store(true)
	return nil
}

// entry is the outcome of one entry of a batch: noAnswer is set when the
// entry failed without an answer from DynamoDB about its item.
type entry struct {
	noAnswer error
}

// runBatch runs fn for entries 0..n-1, at most d.concurrency at once. An
// entry starts after the entries listed in after[i] have finished.
func (d *Driver) runBatch(n int, after [][]int, fn func(i int)) {
	done := make([]chan struct{}, n)
	for i := range done {
		done[i] = make(chan struct{})
	}
	sem := make(chan struct{}, d.concurrency)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			defer close(done[i])
			for _, j := range after[i] {
				<-done[j]
			}
			sem <- struct{}{}
			defer func() { <-sem }()
			fn(i)
		})
	}
	wg.Wait()
}

// dependencies returns, for each entry, the earlier entries that share one
// of its conflict keys (an empty key conflicts with nothing).
func dependencies(n int, keys func(i int) []string) [][]int {
	last := map[string]int{}
	after := make([][]int, n)
	for i := range n {
		for _, k := range keys(i) {
			if k == "" {
				continue
			}
			if j, ok := last[k]; ok && !slices.Contains(after[i], j) {
				after[i] = append(after[i], j)
			}
			last[k] = i
		}
	}
	return after
}

// callErr returns the call's error when no entry got an answer.
func callErr(ctx context.Context, entries []entry) error {
	for _, e := range entries {
		if e.noAnswer == nil {
			return nil
		}
	}
	if len(entries) == 0 {
		return nil
	}
	if ctx.Err() != nil {
		return errcode.Wrap(errcode.Canceled, ctx.Err(), "job store batch")
	}
	return entries[0].noAnswer
}

// Create stores new jobs; see jobstore.Driver and the package doc.
func (d *Driver) Create(ctx context.Context, jobs []*job.Job) ([]jobstore.CreateResult, error) {
	if err := d.check(); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, errcode.Wrap(errcode.Canceled, err, "create jobs")
	}
	out := make([]jobstore.CreateResult, len(jobs))
	entries := make([]entry, len(jobs))
	after := dependencies(len(jobs), func(i int) []string {
		keys := []string{"id:" + jobs[i].ID}
		if jobs[i].Key != "" {
			keys = append(keys, "key:"+jobs[i].Key)
		}
		return keys
	})
	d.runBatch(len(jobs), after, func(i int) {
		out[i], entries[i].noAnswer = d.create(ctx, jobs[i])
	})
	if err := callErr(ctx, entries); err != nil {
		return nil, err
	}
	return out, nil
}

// create stores one job. The error is set (and equal to the result's) when
// DynamoDB gave no answer about the job.
func (d *Driver) create(ctx context.Context, in *job.Job) (jobstore.CreateResult, error) {
	j := in.Clone()
	toUTC(j)
	item := d.layout.encodeJob(j)
	if size := ItemSize(item); size > MaxItemBytes {
		return jobstore.CreateResult{Err: errcode.New(errcode.InvalidArgument,
			"create job %s: item is %d bytes; the limit is %d (keep large payloads and results in the blob store)",
			j.ID, size, MaxItemBytes)}, nil
	}
	e := newExpr()
	notExists := "attribute_not_exists(" + e.name(AttrPK) + ")"
	if j.Key == "" {
		_, err := d.client.PutItem(ctx, &dynamodb.PutItemInput{
			TableName:                           aws.String(d.table),
			Item:                                item,
			ConditionExpression:                 aws.String(notExists),
			ExpressionAttributeNames:            e.names,
			ReturnValuesOnConditionCheckFailure: types.ReturnValuesOnConditionCheckFailureAllOld,
		})
		var ccf *types.ConditionalCheckFailedException
		if errors.As(err, &ccf) {
			return idTaken(j, ccf.Item), nil
		}
		if err != nil {
			err = mapErr(ctx, err, "create job %s", j.ID)
			return jobstore.CreateResult{Err: err}, unanswered(err)
		}
		return jobstore.CreateResult{}, nil
	}
	claim := map[string]types.AttributeValue{
		AttrPK:     s(keyPK(j.Key)),
		AttrHolder: s(j.ID),
	}
	if j.PayloadHash != "" {
		claim[AttrPayloadHash] = s(j.PayloadHash)
	}
	_, err := d.client.TransactWriteItems(ctx, &dynamodb.TransactWriteItemsInput{
		TransactItems: []types.TransactWriteItem{
			{Put: &types.Put{
				TableName:                           aws.String(d.table),
				Item:                                claim,
				ConditionExpression:                 aws.String(notExists),
				ExpressionAttributeNames:            e.names,
				ReturnValuesOnConditionCheckFailure: types.ReturnValuesOnConditionCheckFailureAllOld,
			}},
			{Put: &types.Put{
				TableName:                           aws.String(d.table),
				Item:                                item,
				ConditionExpression:                 aws.String(notExists),
				ExpressionAttributeNames:            e.names,
				ReturnValuesOnConditionCheckFailure: types.ReturnValuesOnConditionCheckFailureAllOld,
			}},
		},
	})
	if err == nil {
		return jobstore.CreateResult{}, nil
	}
	var canceled *types.TransactionCanceledException
	if errors.As(err, &canceled) {
		r := canceled.CancellationReasons
		switch {
		case reasonCode(r, 1) == reasonCondition: // the id wins
			return idTaken(j, r[1].Item), nil
		case reasonCode(r, 0) == reasonCondition:
			dec := &decoder{item: r[0].Item}
			holder, hash := dec.str(AttrHolder), dec.str(AttrPayloadHash)
			if dec.err != nil || holder == "" {
				return jobstore.CreateResult{Err: errcode.New(errcode.Internal,
					"create job %s: key %q is taken, by an unreadable claim %v", j.ID, j.Key, dec.err)}, nil
			}
			return jobstore.CreateResult{
				Err:               errcode.New(errcode.AlreadyExists, "create job %s: key %q is held by job %s", j.ID, j.Key, holder),
				Holder:            holder,
				HolderPayloadHash: hash,
			}, nil
		}
	}
	err = mapErr(ctx, err, "create job %s", j.ID)
	return jobstore.CreateResult{Err: err}, unanswered(err)
}

// unanswered returns err when it says that DynamoDB gave no answer about
// the item (the call did not get through, was throttled, or ended with its
// context), and nil when err is an answer: the request was refused as
// invalid, or a condition decided it.
func unanswered(err error) error {
	switch errcode.Of(err) {
	case errcode.InvalidArgument, errcode.FailedPrecondition, errcode.AlreadyExists, errcode.Internal:
		return nil
	}
	return err
}

func idTaken(j *job.Job, old map[string]types.AttributeValue) jobstore.CreateResult {
	dec := &decoder{item: old}
	return jobstore.CreateResult{
		Err:               errcode.New(errcode.AlreadyExists, "create job %s: id exists", j.ID),
		Holder:            j.ID,
		HolderPayloadHash: dec.str(AttrPayloadHash),
	}
}

// Get returns the job with id, read strongly consistently; see
// jobstore.Driver.
func (d *Driver) Get(ctx context.Context, id string) (*job.Job, error) {
	if err := d.check(); err != nil {
		return nil, err
	}
	j, err := d.getItem(ctx, id)
	if err != nil {
		return nil, err
	}
	if j == nil {
		return nil, errcode.New(errcode.NotFound, "job %s not found", id)
	}
	return j, nil
}

// getItem reads one job; nil when it does not exist.
func (d *Driver) getItem(ctx context.Context, id string) (*job.Job, error) {
	out, err := d.client.GetItem(ctx, &dynamodb.GetItemInput{
		TableName:      aws.String(d.table),
		Key:            map[string]types.AttributeValue{AttrPK: s(jobPK(id))},
		ConsistentRead: aws.Bool(true),
	})
	if err != nil {
		return nil, mapErr(ctx, err, "get job %s", id)
	}
	if len(out.Item) == 0 {
		return nil, nil
	}
	return decodeJob(out.Item)
}

// Apply performs changes, each one conditional write; see jobstore.Driver
// and the package doc.
func (d *Driver) Apply(ctx context.Context, changes []job.Change) ([]jobstore.ChangeResult, error) {
	if err := d.check(); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, errcode.Wrap(errcode.Canceled, err, "apply changes")
	}
	out := make([]jobstore.ChangeResult, len(changes))
	entries := make([]entry, len(changes))
	after := dependencies(len(changes), func(i int) []string { return []string{changes[i].ID} })
	d.runBatch(len(changes), after, func(i int) {
		out[i], entries[i].noAnswer = d.apply(ctx, changes[i])
	})
	if err := callErr(ctx, entries); err != nil {
		return nil, err
	}
	return out, nil
}

// apply performs one change. The error is set (and equal to the result's)
// when DynamoDB gave no answer about the job.
func (d *Driver) apply(ctx context.Context, c job.Change) (jobstore.ChangeResult, error) {
	res, storedKey, err := d.applyWithKey(ctx, c, c.Key)
	if storedKey != nil {
		// Everything but the key held: the change names the wrong key.
		// Redo it with the stored one, once; if that loses too, it lost.
		res, _, err = d.applyWithKey(ctx, c, *storedKey)
	}
	return res, err
}

// applyWithKey performs c, guarding a terminal change on the stored key
// being key. storedKey is set when the change lost only on that guard.
func (d *Driver) applyWithKey(ctx context.Context, c job.Change, key string) (res jobstore.ChangeResult, storedKey *string, err error) {
	u := d.layout.buildUpdate(c, key)
	if size := patchSize(u); size > MaxItemBytes {
		return jobstore.ChangeResult{Err: errcode.New(errcode.InvalidArgument,
			"%s job %s: the change writes %d bytes; the item limit is %d (keep large progress and results in the blob store)",
			c.Event, c.ID, size, MaxItemBytes)}, nil, nil
	}
	if !c.To().Terminal() || key == "" {
		return d.updateItem(ctx, c, key, u)
	}
	e := u.e
	_, err = d.client.TransactWriteItems(ctx, &dynamodb.TransactWriteItemsInput{
		ClientRequestToken: aws.String(requestToken(d.table, c.ID, key, u)),
		TransactItems: []types.TransactWriteItem{
			{Update: &types.Update{
				TableName:                           aws.String(d.table),
				Key:                                 map[string]types.AttributeValue{AttrPK: s(jobPK(c.ID))},
				UpdateExpression:                    aws.String(u.update),
				ConditionExpression:                 aws.String(u.condition),
				ExpressionAttributeNames:            e.namesOrNil(),
				ExpressionAttributeValues:           e.valuesOrNil(),
				ReturnValuesOnConditionCheckFailure: types.ReturnValuesOnConditionCheckFailureAllOld,
			}},
			{Delete: &types.Delete{
				TableName:                           aws.String(d.table),
				Key:                                 map[string]types.AttributeValue{AttrPK: s(keyPK(key))},
				ConditionExpression:                 aws.String("attribute_not_exists(#pk) OR #holder = :holder"),
				ExpressionAttributeNames:            map[string]string{"#pk": AttrPK, "#holder": AttrHolder},
				ExpressionAttributeValues:           map[string]types.AttributeValue{":holder": s(c.ID)},
				ReturnValuesOnConditionCheckFailure: types.ReturnValuesOnConditionCheckFailureAllOld,
			}},
		},
	})
	if err == nil {
		// A transaction returns no values; read the record it wrote. A
		// terminal record cannot change any more.
		j, err := d.getItem(ctx, c.ID)
		switch {
		case err != nil:
			return jobstore.ChangeResult{Err: fmt.Errorf("%s job %s: written; read back: %w", c.Event, c.ID, err)}, nil, nil
		case j == nil:
			return jobstore.ChangeResult{Err: errcode.New(errcode.Internal, "%s job %s: written, then not found", c.Event, c.ID)}, nil, nil
		}
		return jobstore.ChangeResult{Job: j}, nil, nil
	}
	var canceled *types.TransactionCanceledException
	if errors.As(err, &canceled) {
		r := canceled.CancellationReasons
		switch {
		case reasonCode(r, 0) == reasonCondition:
			res, storedKey := lost(c, key, r[0].Item)
			return res, storedKey, nil
		case reasonCode(r, 0) == reasonNone && reasonCode(r, 1) == reasonCondition:
			// The claim names another job: this job's claim is gone
			// already, and the other holder's is not this change's to
			// release. Write the job alone.
			return d.updateItem(ctx, c, key, u)
		}
	}
	err = mapErr(ctx, err, "%s job %s", c.Event, c.ID)
	return jobstore.ChangeResult{Err: err}, nil, unanswered(err)
}

// updateItem performs c as one conditional UpdateItem.
func (d *Driver) updateItem(ctx context.Context, c job.Change, key string, u update) (jobstore.ChangeResult, *string, error) {
	out, err := d.client.UpdateItem(ctx, &dynamodb.UpdateItemInput{
		TableName:                           aws.String(d.table),
		Key:                                 map[string]types.AttributeValue{AttrPK: s(jobPK(c.ID))},
		UpdateExpression:                    aws.String(u.update),
		ConditionExpression:                 aws.String(u.condition),
		ExpressionAttributeNames:            u.e.namesOrNil(),
		ExpressionAttributeValues:           u.e.valuesOrNil(),
		ReturnValues:                        types.ReturnValueAllNew,
		ReturnValuesOnConditionCheckFailure: types.ReturnValuesOnConditionCheckFailureAllOld,
	})
	var ccf *types.ConditionalCheckFailedException
	if errors.As(err, &ccf) {
		res, storedKey := lost(c, key, ccf.Item)
		return res, storedKey, nil
	}
	if err != nil {
		err = mapErr(ctx, err, "%s job %s", c.Event, c.ID)
		return jobstore.ChangeResult{Err: err}, nil, unanswered(err)
	}
	j, err := decodeJob(out.Attributes)
	if err != nil {
		return jobstore.ChangeResult{Err: fmt.Errorf("%s job %s: written; %w", c.Event, c.ID, err)}, nil, nil
	}
	return jobstore.ChangeResult{Job: j}, nil, nil
}

// lost is the result of a change whose condition failed on the item old
// (ALL_OLD; empty when the job does not exist): FailedPrecondition with the
// record as found. storedKey is also set when only the key guard failed.
func lost(c job.Change, key string, old map[string]types.AttributeValue) (jobstore.ChangeResult, *string) {
	if len(old) == 0 {
		return jobstore.ChangeResult{Err: errcode.New(errcode.NotFound, "%s job %s: not found", c.Event, c.ID)}, nil
	}
	j, err := decodeJob(old)
	if err != nil {
		return jobstore.ChangeResult{Err: fmt.Errorf("%s job %s: %w", c.Event, c.ID, err)}, nil
	}
	want := condExtra(c.If)
	if c.To().Terminal() {
		want += fmt.Sprintf(" key %q", key)
	}
	res := jobstore.ChangeResult{Job: j, Err: errcode.New(errcode.FailedPrecondition,
		"%s job %s: condition failed: want status %s attempt %d%s, found status %s attempt %d owner %q rev %d key %q",
		c.Event, c.ID, c.If.Status, c.If.Attempt, want, j.Status, j.Attempt, j.Owner, j.Rev, j.Key)}
	if c.To().Terminal() && j.Key != key && condHolds(c.If, j) {
		return res, &j.Key
	}
	return res, nil
}

func condExtra(c job.Cond) string {
	var s string
	if c.Owner != "" {
		s += fmt.Sprintf(" owner %q", c.Owner)
	}
	if !c.LeaseExpiredBefore.IsZero() {
		s += fmt.Sprintf(" lease expired before %d ms", millis(c.LeaseExpiredBefore))
	}
	if c.Rev != 0 {
		s += fmt.Sprintf(" rev %d", c.Rev)
	}
	return s
}

// requestToken is the ClientRequestToken of the transaction that performs
// the change of job id with key as u: a hash of everything the transaction
// writes and checks, so that the same change gets the same token (an
// idempotent repeat) and any other change another one.
func requestToken(table, id, key string, u update) string {
	h := sha256.New()
	field := func(v string) {
		fmt.Fprintf(h, "%d:%s;", len(v), v)
	}
	field(table)
	field(id)
	field(key)
	field(u.update)
	field(u.condition)
	for _, p := range slices.Sorted(maps.Keys(u.e.names)) {
		field(p)
		field(u.e.names[p])
	}
	for _, p := range slices.Sorted(maps.Keys(u.e.values)) {
		field(p)
		hashValue(h, u.e.values[p])
	}
	return hex.EncodeToString(h.Sum(nil))[:32]
}

// hashValue writes an unambiguous encoding of v to w.
func hashValue(w io.Writer, v types.AttributeValue) {
	field := func(tag, v string) { fmt.Fprintf(w, "%s%d:%s;", tag, len(v), v) }
	switch v := v.(type) {
	case *types.AttributeValueMemberS:
		field("S", v.Value)
	case *types.AttributeValueMemberN:
		field("N", v.Value)
	case *types.AttributeValueMemberB:
		field("B", string(v.Value))
	case *types.AttributeValueMemberBOOL:
		field("BOOL", strconv.FormatBool(v.Value))
	case *types.AttributeValueMemberM:
		fmt.Fprintf(w, "M%d{", len(v.Value))
		for _, k := range slices.Sorted(maps.Keys(v.Value)) {
			field("K", k)
			hashValue(w, v.Value[k])
		}
		fmt.Fprint(w, "}")
	default:
		field("?", fmt.Sprintf("%T %v", v, v))
	}
}
