package dynamojobstore

import (
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/jobfleet/jobfleet/pkg/errcode"
	"github.com/jobfleet/jobfleet/pkg/job"
)

// Attribute names of a job item. Those a job.Patch writes are named by
// job.Field.String(); the rest are identity fields, index keys and the TTL.
const (
	AttrPK          = "pk"           // "job#<id>" or "key#<key>"
	AttrID          = "id"           // job id; sort key of the owned and list indexes
	AttrType        = "type"         // handler type; projected into the list index
	AttrKey         = "key"          // dedup key, absent when none
	AttrPayload     = "payload"      // B, raw bytes
	AttrPayloadRef  = "payload_ref"  // S
	AttrPayloadHash = "payload_hash" // S; also on key items
	AttrPayloadSize = "payload_size" // N
	AttrRev         = "rev"          // N, bumped by every write
	AttrMaxAttempts = "max_attempts" // N
	AttrTimeout     = "timeout"      // N, nanoseconds
	AttrResultRef   = "result_ref"   // S, written with result
	AttrHistory     = "history"      // M, attempt number → entry
	AttrDuePK       = "due_pk"       // "<status>#<shard>" while the job is active; due index partition
	AttrListPK      = "list_pk"      // "jobs#<shard>", written at create; list index partition
	AttrTTL         = "ttl"          // N, epoch seconds of expires_at; the table's TTL attribute
	AttrHolder      = "holder"       // S, on key items: the id of the job holding the key
	AttrStartBy     = "start_by"     // N, epoch ms: start deadline, absent when none

	// The attributes a Patch writes (job.Field.String()) that the indexes use.
	attrStatus    = "status"
	attrAttempt   = "attempt"
	attrFailures  = "failures"
	attrOwner     = "owner" // owned index partition; present only when non-empty
	attrLease     = "lease_until"
	attrDueAt     = "due_at" // N, epoch ms; due index sort key
	attrExpiresAt = "expires_at"
	attrCreatedAt = "created_at"
)

// AttrOwner and AttrDueAt are index key attributes named by job fields.
const (
	AttrOwner = attrOwner
	AttrDueAt = attrDueAt
)

// History entry attributes.
const (
	histAttempt   = "attempt"
	histOwner     = "owner"
	histStartedAt = "started_at"
	histEndedAt   = "ended_at"
	histOutcome   = "outcome"
	histReason    = "reason"
)

const (
	jobPrefix = "job#"
	keyPrefix = "key#"

	// MaxItemBytes is DynamoDB's item size limit (400 KB = 409,600 bytes,
	// attribute names included). Records whose item would exceed it are
	// refused with errcode.InvalidArgument, as sqlitejobstore does.
	MaxItemBytes = 400 << 10
)

func jobPK(id string) string  { return jobPrefix + id }
func keyPK(key string) string { return keyPrefix + key }

// Attribute value constructors.

func s(v string) types.AttributeValue { return &types.AttributeValueMemberS{Value: v} }
func b(v []byte) types.AttributeValue { return &types.AttributeValueMemberB{Value: slices.Clone(v)} }
func n(v int64) types.AttributeValue {
	return &types.AttributeValueMemberN{Value: strconv.FormatInt(v, 10)}
}
func boolean(v bool) types.AttributeValue { return &types.AttributeValueMemberBOOL{Value: v} }

// millis is how a time is stored: Unix milliseconds in UTC. Zero times are
// not stored.
func millis(t time.Time) int64 { return t.UnixMilli() }

// ttlSeconds is the TTL attribute for a record expiring at t: rounded up, so
// DynamoDB never deletes a record before the Store would hide it.
func ttlSeconds(t time.Time) int64 {
	ms := t.UnixMilli()
	sec := ms / 1000
	if ms%1000 > 0 {
		sec++
	}
	return sec
}

func fromMillis(ms int64) time.Time { return time.UnixMilli(ms).UTC() }

// encodeJob returns the item for a new job record in a table of layout l.
func (l Layout) encodeJob(j *job.Job) map[string]types.AttributeValue {
	it := map[string]types.AttributeValue{
		AttrPK:          s(jobPK(j.ID)),
		AttrID:          s(j.ID),
		AttrType:        s(j.Type),
		attrStatus:      s(string(j.Status)),
		AttrRev:         n(j.Rev),
		attrAttempt:     n(int64(j.Attempt)),
		attrFailures:    n(int64(j.Failures)),
		AttrMaxAttempts: n(int64(j.MaxAttempts)),
		AttrListPK:      s(l.listPK(j.ID)),
	}
	optS := func(name, v string) {
		if v != "" {
			it[name] = s(v)
		}
	}
	optB := func(name string, v []byte) {
		if len(v) > 0 {
			it[name] = b(v)
		}
	}
	optN := func(name string, v int64) {
		if v != 0 {
			it[name] = n(v)
		}
	}
	optT := func(name string, t time.Time) {
		if !t.IsZero() {
			it[name] = n(millis(t))
		}
	}
	optS(AttrKey, j.Key)
	optB(AttrPayload, j.Payload)
	optS(AttrPayloadRef, j.PayloadRef)
	optS(AttrPayloadHash, j.PayloadHash)
	optN(AttrPayloadSize, j.PayloadSize)
	optN(AttrTimeout, int64(j.Timeout))
	optS(attrOwner, j.Owner)
	optT(attrLease, j.LeaseUntil)
	if j.CancelRequested {
		it[job.FieldCancelRequested.String()] = boolean(true)
	}
	optT(job.FieldRunAt.String(), j.RunAt)
	optT(job.FieldResendAt.String(), j.ResendAt)
	optN(job.FieldResends.String(), int64(j.Resends))
	optN(job.FieldDeadLetters.String(), int64(j.DeadLetters))
	optT(attrDueAt, j.DueAt)
	optT(AttrStartBy, j.StartBy)
	if j.Status.Active() {
		it[AttrDuePK] = s(l.duePK(j.Status, j.ID))
	}
	optS(job.FieldDetail.String(), j.Detail)
	optB(job.FieldProgress.String(), j.Progress)
	optB(job.FieldResult.String(), j.Result)
	optS(AttrResultRef, j.ResultRef)
	optS(job.FieldError.String(), j.Error)
	optT(job.FieldStartedAt.String(), j.StartedAt)
	optT(job.FieldFinishedAt.String(), j.FinishedAt)
	optT(attrExpiresAt, j.ExpiresAt)
	if !j.ExpiresAt.IsZero() {
		it[AttrTTL] = n(ttlSeconds(j.ExpiresAt))
	}
	optT(attrCreatedAt, j.CreatedAt)
	optT(job.FieldUpdatedAt.String(), j.UpdatedAt)
	hist := make(map[string]types.AttributeValue, len(j.History))
	for _, a := range j.History {
		hist[strconv.Itoa(a.Attempt)] = encodeAttempt(a)
	}
	// Always present (possibly empty), so that a change can SET one entry.
	it[AttrHistory] = &types.AttributeValueMemberM{Value: hist}
	return it
}

func encodeAttempt(a job.Attempt) types.AttributeValue {
	m := map[string]types.AttributeValue{histAttempt: n(int64(a.Attempt))}
	if a.Owner != "" {
		m[histOwner] = s(a.Owner)
	}
	if !a.StartedAt.IsZero() {
		m[histStartedAt] = n(millis(a.StartedAt))
	}
	if !a.EndedAt.IsZero() {
		m[histEndedAt] = n(millis(a.EndedAt))
	}
	if a.Outcome != "" {
		m[histOutcome] = s(string(a.Outcome))
	}
	if a.Reason != "" {
		m[histReason] = s(a.Reason)
	}
	return &types.AttributeValueMemberM{Value: m}
}

// decoder reads attributes of one item and remembers the first problem.
type decoder struct {
	item map[string]types.AttributeValue
	err  error
}

func (d *decoder) fail(name, want string) {
	if d.err == nil {
		d.err = fmt.Errorf("attribute %q is not %s", name, want)
	}
}

func (d *decoder) str(name string) string {
	v, ok := d.item[name]
	if !ok {
		return ""
	}
	sv, ok := v.(*types.AttributeValueMemberS)
	if !ok {
		d.fail(name, "a string")
		return ""
	}
	return sv.Value
}

func (d *decoder) bytes(name string) json.RawMessage {
	v, ok := d.item[name]
	if !ok {
		return nil
	}
	bv, ok := v.(*types.AttributeValueMemberB)
	if !ok {
		d.fail(name, "binary")
		return nil
	}
	if len(bv.Value) == 0 {
		return nil
	}
	return slices.Clone(bv.Value)
}

func (d *decoder) num(name string) int64 {
	v, ok := d.item[name]
	if !ok {
		return 0
	}
	nv, ok := v.(*types.AttributeValueMemberN)
	if !ok {
		d.fail(name, "a number")
		return 0
	}
	i, err := strconv.ParseInt(nv.Value, 10, 64)
	if err != nil {
		d.fail(name, "an integer")
		return 0
	}
	return i
}

func (d *decoder) integer(name string) int {
	v := d.num(name)
	if v > math.MaxInt32 || v < math.MinInt32 {
		d.fail(name, "a 32-bit integer")
		return 0
	}
	return int(v)
}

func (d *decoder) time(name string) time.Time {
	if _, ok := d.item[name]; !ok {
		return time.Time{}
	}
	return fromMillis(d.num(name))
}

func (d *decoder) flag(name string) bool {
	v, ok := d.item[name]
	if !ok {
		return false
	}
	bv, ok := v.(*types.AttributeValueMemberBOOL)
	if !ok {
		d.fail(name, "a boolean")
		return false
	}
	return bv.Value
}

// decodeJob returns the record in a job item. An item that does not decode
// is errcode.Internal (a corrupt record).
func decodeJob(item map[string]types.AttributeValue) (*job.Job, error) {
	d := &decoder{item: item}
	j := &job.Job{
		ID:              d.str(AttrID),
		Type:            d.str(AttrType),
		Key:             d.str(AttrKey),
		Payload:         d.bytes(AttrPayload),
		PayloadRef:      d.str(AttrPayloadRef),
		PayloadHash:     d.str(AttrPayloadHash),
		PayloadSize:     d.num(AttrPayloadSize),
		Status:          job.Status(d.str(attrStatus)),
		Rev:             d.num(AttrRev),
		Attempt:         d.integer(attrAttempt),
		Failures:        d.integer(attrFailures),
		MaxAttempts:     d.integer(AttrMaxAttempts),
		Timeout:         job.Duration(d.num(AttrTimeout)),
		Owner:           d.str(attrOwner),
		LeaseUntil:      d.time(attrLease),
		CancelRequested: d.flag(job.FieldCancelRequested.String()),
		RunAt:           d.time(job.FieldRunAt.String()),
		ResendAt:        d.time(job.FieldResendAt.String()),
		Resends:         d.integer(job.FieldResends.String()),
		DeadLetters:     d.integer(job.FieldDeadLetters.String()),
		DueAt:           d.time(attrDueAt),
		StartBy:         d.time(AttrStartBy),
		Detail:          d.str(job.FieldDetail.String()),
		Progress:        d.bytes(job.FieldProgress.String()),
		Result:          d.bytes(job.FieldResult.String()),
		ResultRef:       d.str(AttrResultRef),
		Error:           d.str(job.FieldError.String()),
		CreatedAt:       d.time(attrCreatedAt),
		UpdatedAt:       d.time(job.FieldUpdatedAt.String()),
		StartedAt:       d.time(job.FieldStartedAt.String()),
		FinishedAt:      d.time(job.FieldFinishedAt.String()),
		ExpiresAt:       d.time(attrExpiresAt),
	}
	if v, ok := item[AttrHistory]; ok {
		m, ok := v.(*types.AttributeValueMemberM)
		if !ok {
			d.fail(AttrHistory, "a map")
		} else {
			for k, e := range m.Value {
				em, ok := e.(*types.AttributeValueMemberM)
				if !ok {
					d.fail(AttrHistory+"."+k, "a map")
					break
				}
				hd := &decoder{item: em.Value}
				a := job.Attempt{
					Attempt:   hd.integer(histAttempt),
					Owner:     hd.str(histOwner),
					StartedAt: hd.time(histStartedAt),
					EndedAt:   hd.time(histEndedAt),
					Outcome:   job.Outcome(hd.str(histOutcome)),
					Reason:    hd.str(histReason),
				}
				if hd.err != nil {
					d.fail(AttrHistory+"."+k, "a history entry ("+hd.err.Error()+")")
					break
				}
				j.History = append(j.History, a)
			}
			slices.SortFunc(j.History, func(x, y job.Attempt) int { return x.Attempt - y.Attempt })
		}
	}
	if d.err == nil && (!job.ValidID(j.ID) || !j.Status.Valid()) {
		d.err = fmt.Errorf("id %q, status %q", j.ID, j.Status)
	}
	if d.err != nil {
		return nil, errcode.Wrap(errcode.Internal, d.err, "decode job item %s", itemPK(item))
	}
	return j, nil
}

func itemPK(item map[string]types.AttributeValue) string {
	if v, ok := item[AttrPK].(*types.AttributeValueMemberS); ok {
		return v.Value
	}
	return "(no pk)"
}

// toUTC puts every time in j in UTC (and drops monotonic readings), so that
// what is hashed and compared is what is stored.
func toUTC(j *job.Job) {
	for _, t := range []*time.Time{&j.LeaseUntil, &j.RunAt, &j.ResendAt, &j.DueAt,
		&j.CreatedAt, &j.UpdatedAt, &j.StartedAt, &j.FinishedAt, &j.ExpiresAt} {
		*t = utc(*t)
	}
	for i := range j.History {
		j.History[i].StartedAt = utc(j.History[i].StartedAt)
		j.History[i].EndedAt = utc(j.History[i].EndedAt)
	}
}

func utc(t time.Time) time.Time {
	if t.IsZero() {
		return time.Time{}
	}
	return t.UTC()
}

// ItemSize is the size DynamoDB counts for an item: attribute names plus
// values, as its developer guide describes (strings and binary by length,
// numbers about one byte per two significant digits plus one, lists and maps
// three bytes plus one per element).
func ItemSize(item map[string]types.AttributeValue) int {
	size := 0
	for name, v := range item {
		size += len(name) + valueSize(v)
	}
	return size
}

func valueSize(v types.AttributeValue) int {
	switch v := v.(type) {
	case *types.AttributeValueMemberS:
		return len(v.Value)
	case *types.AttributeValueMemberB:
		return len(v.Value)
	case *types.AttributeValueMemberN:
		return numberSize(v.Value)
	case *types.AttributeValueMemberBOOL, *types.AttributeValueMemberNULL:
		return 1
	case *types.AttributeValueMemberM:
		size := 3
		for k, e := range v.Value {
			size += 1 + len(k) + valueSize(e)
		}
		return size
	case *types.AttributeValueMemberL:
		size := 3
		for _, e := range v.Value {
			size += 1 + valueSize(e)
		}
		return size
	case *types.AttributeValueMemberSS:
		size := 0
		for _, e := range v.Value {
			size += len(e)
		}
		return size
	case *types.AttributeValueMemberNS:
		size := 0
		for _, e := range v.Value {
			size += numberSize(e)
		}
		return size
	case *types.AttributeValueMemberBS:
		size := 0
		for _, e := range v.Value {
			size += len(e)
		}
		return size
	}
	return 0
}

func numberSize(v string) int {
	digits := strings.Trim(strings.NewReplacer("-", "", ".", "").Replace(v), "0")
	return (len(digits)+1)/2 + 1
}
