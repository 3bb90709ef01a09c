package dynamojobstore

import (
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/jobfleet/jobfleet/pkg/job"
)

// expr builds expressions: every attribute name goes through a placeholder
// (so reserved words such as status, key, type and owner need no care) and
// every value through a value placeholder.
type expr struct {
	names  map[string]string // placeholder → name
	byName map[string]string // name → placeholder
	values map[string]types.AttributeValue
}

func newExpr() *expr {
	return &expr{names: map[string]string{}, byName: map[string]string{}, values: map[string]types.AttributeValue{}}
}

// name returns the placeholder for an attribute name (or map key).
func (e *expr) name(n string) string {
	if p, ok := e.byName[n]; ok {
		return p
	}
	p := "#n" + strconv.Itoa(len(e.names))
	e.names[p] = n
	e.byName[n] = p
	return p
}

// value returns the placeholder for a value.
func (e *expr) value(v types.AttributeValue) string {
	p := ":v" + strconv.Itoa(len(e.values))
	e.values[p] = v
	return p
}

func (e *expr) namesOrNil() map[string]string {
	if len(e.names) == 0 {
		return nil
	}
	return e.names
}

func (e *expr) valuesOrNil() map[string]types.AttributeValue {
	if len(e.values) == 0 {
		return nil
	}
	return e.values
}

// update is a change turned into DynamoDB expressions.
type update struct {
	e         *expr
	update    string // UpdateExpression
	condition string // ConditionExpression
}

// buildUpdate turns a change into one UpdateItem: the patch becomes SET and
// REMOVE clauses, the condition a ConditionExpression, and key (the job's
// dedup key as the change knows it) guards terminal changes: a change that
// makes a job terminal holds only if the stored key is key (absent when
// key is ""), so that a wrong key can never leave a claim behind.
func (l Layout) buildUpdate(c job.Change, key string) update {
	e := newExpr()
	var set, remove []string
	setV := func(attr string, v types.AttributeValue) {
		set = append(set, e.name(attr)+" = "+e.value(v))
	}
	del := func(attr string) { remove = append(remove, e.name(attr)) }
	str := func(attr, v string) {
		if v == "" {
			del(attr)
		} else {
			setV(attr, s(v))
		}
	}
	num := func(attr string, v int64, keepZero bool) {
		if v == 0 && !keepZero {
			del(attr)
		} else {
			setV(attr, n(v))
		}
	}
	tm := func(attr string, t time.Time) {
		if t.IsZero() {
			del(attr)
		} else {
			setV(attr, n(millis(t)))
		}
	}
	raw := func(attr string, v []byte) {
		if len(v) == 0 {
			del(attr)
		} else {
			setV(attr, b(v))
		}
	}

	p := c.Set
	v := &p.Values
	to := c.To()
	for _, f := range job.AllFields {
		if !p.Has(f) {
			continue
		}
		attr := f.String()
		switch f {
		case job.FieldStatus:
			setV(attr, s(string(v.Status)))
			if v.Status.Active() {
				setV(AttrDuePK, s(l.duePK(v.Status, c.ID)))
			} else {
				del(AttrDuePK)
			}
		case job.FieldAttempt:
			num(attr, int64(v.Attempt), true)
		case job.FieldFailures:
			num(attr, int64(v.Failures), true)
		case job.FieldOwner:
			str(attr, v.Owner)
		case job.FieldLeaseUntil:
			tm(attr, v.LeaseUntil)
		case job.FieldCancelRequested:
			if v.CancelRequested {
				setV(attr, boolean(true))
			} else {
				del(attr)
			}
		case job.FieldRunAt:
			tm(attr, v.RunAt)
		case job.FieldResendAt:
			tm(attr, v.ResendAt)
		case job.FieldResends:
			num(attr, int64(v.Resends), false)
		case job.FieldDeadLetters:
			num(attr, int64(v.DeadLetters), false)
		case job.FieldDueAt:
			tm(attr, v.DueAt)
		case job.FieldDetail:
			str(attr, v.Detail)
		case job.FieldProgress:
			raw(attr, v.Progress)
		case job.FieldResult:
			raw(attr, v.Result)
			str(AttrResultRef, v.ResultRef)
		case job.FieldError:
			str(attr, v.Error)
		case job.FieldStartedAt:
			tm(attr, v.StartedAt)
		case job.FieldFinishedAt:
			tm(attr, v.FinishedAt)
		case job.FieldExpiresAt:
			tm(attr, v.ExpiresAt)
			if v.ExpiresAt.IsZero() {
				del(AttrTTL)
			} else {
				setV(AttrTTL, n(ttlSeconds(v.ExpiresAt)))
			}
		case job.FieldUpdatedAt:
			tm(attr, v.UpdatedAt)
		}
	}
	// History: upsert each entry by attempt number, and drop the entry
	// MaxHistory attempts older, so the map stays bounded without a read.
	written := map[int]types.AttributeValue{}
	var order []int
	for _, h := range p.History {
		if _, ok := written[h.Attempt]; !ok {
			order = append(order, h.Attempt)
		}
		written[h.Attempt] = encodeAttempt(h)
	}
	for _, a := range order {
		set = append(set, e.name(AttrHistory)+"."+e.name(strconv.Itoa(a))+" = "+e.value(written[a]))
	}
	for _, a := range order {
		old := a - job.MaxHistory
		if _, ok := written[old]; ok || old < 0 {
			continue
		}
		remove = append(remove, e.name(AttrHistory)+"."+e.name(strconv.Itoa(old)))
	}
	rev := e.name(AttrRev)
	set = append(set, rev+" = "+rev+" + "+e.value(n(1)))

	u := update{e: e}
	u.update = "SET " + strings.Join(set, ", ")
	if len(remove) > 0 {
		u.update += " REMOVE " + strings.Join(remove, ", ")
	}
	u.condition = buildCondition(e, c.If, to.Terminal(), key)
	return u
}

// buildCondition is c as a ConditionExpression; see condHolds for the same
// rule evaluated on a decoded record.
func buildCondition(e *expr, c job.Cond, guardKey bool, key string) string {
	parts := []string{
		e.name(attrStatus) + " = " + e.value(s(string(c.Status))),
		e.name(attrAttempt) + " = " + e.value(n(int64(c.Attempt))),
	}
	if c.Owner != "" {
		parts = append(parts, e.name(attrOwner)+" = "+e.value(s(c.Owner)))
	}
	if !c.LeaseExpiredBefore.IsZero() {
		lease := e.name(attrLease)
		parts = append(parts, "(attribute_not_exists("+lease+") OR "+lease+" < "+e.value(n(millis(c.LeaseExpiredBefore)))+")")
	}
	if c.Rev != 0 {
		parts = append(parts, e.name(AttrRev)+" = "+e.value(n(c.Rev)))
	}
	if guardKey {
		if key == "" {
			parts = append(parts, "attribute_not_exists("+e.name(AttrKey)+")")
		} else {
			parts = append(parts, e.name(AttrKey)+" = "+e.value(s(key)))
		}
	}
	return strings.Join(parts, " AND ")
}

// condHolds reports whether c holds for the stored record j exactly as the
// ConditionExpression is evaluated: times compare in whole milliseconds, as
// they are stored (a lease is expired when its millisecond is before the
// condition's millisecond: never early, at most 1 ms late).
func condHolds(c job.Cond, j *job.Job) bool {
	if j.Status != c.Status || j.Attempt != c.Attempt {
		return false
	}
	if c.Owner != "" && j.Owner != c.Owner {
		return false
	}
	if !c.LeaseExpiredBefore.IsZero() && !j.LeaseUntil.IsZero() && millis(j.LeaseUntil) >= millis(c.LeaseExpiredBefore) {
		return false
	}
	return c.Rev == 0 || j.Rev == c.Rev
}

// patchSize is a lower bound of the size the patch's values add to an item:
// a patch whose values alone exceed MaxItemBytes can never be written.
func patchSize(u update) int {
	size := 0
	for _, v := range u.e.values {
		size += valueSize(v)
	}
	return size
}
