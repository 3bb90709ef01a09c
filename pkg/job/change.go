package job

import (
	"encoding/json"
	"fmt"
	"slices"
	"time"
)

// Event names a step of the protocol; each is an edge (or several) of the
// state machine.
type Event string

// The protocol's events.
const (
	EventSubmit        Event = "submit"         // (none) → QUEUED | SCHEDULED
	EventPromote       Event = "promote"        // SCHEDULED → QUEUED (reaper, run_at near)
	EventResend        Event = "resend"         // QUEUED → QUEUED (reaper re-sends a lost message)
	EventStart         Event = "start"          // QUEUED → RUNNING (attempt+1)
	EventTakeover      Event = "takeover"       // RUNNING → RUNNING (lease expired; attempt+1)
	EventRenew         Event = "renew"          // RUNNING → RUNNING (owner heartbeat)
	EventRequestCancel Event = "request_cancel" // RUNNING → RUNNING (owner sees it at its next heartbeat)
	EventNote          Event = "note"           // QUEUED → QUEUED (status detail, e.g. waiting for capacity)
	EventFinish        Event = "finish"         // RUNNING → any next state, written by the owner
	EventReclaim       Event = "reclaim"        // RUNNING → QUEUED | FAILED | CANCELLED, by the reaper
	EventCancel        Event = "cancel"         // QUEUED | SCHEDULED → CANCELLED
	EventDeadLetter    Event = "dead_letter"    // QUEUED → FAILED (message reached the DLQ)
	EventExpire        Event = "expire"         // QUEUED → FAILED (start deadline passed)
)

// Transition is one legal edge: Event may move a job From → To.
type Transition struct {
	Event    Event
	From, To Status
}

// Transitions is the state machine. Nothing else is legal; in particular no
// edge leaves a terminal state.
var Transitions = []Transition{
	{EventSubmit, None, Queued},
	{EventSubmit, None, Scheduled},
	{EventPromote, Scheduled, Queued},
	{EventResend, Queued, Queued},
	{EventNote, Queued, Queued},
	{EventStart, Queued, Running},
	{EventTakeover, Running, Running},
	{EventRenew, Running, Running},
	{EventRequestCancel, Running, Running},
	{EventFinish, Running, Succeeded},
	{EventFinish, Running, Failed},
	{EventFinish, Running, Cancelled},
	{EventFinish, Running, Queued},    // retry, hand-back, snooze
	{EventFinish, Running, Scheduled}, // retry or snooze beyond the queue's delay limit
	{EventReclaim, Running, Queued},
	{EventReclaim, Running, Scheduled},
	{EventReclaim, Running, Failed},
	{EventReclaim, Running, Cancelled},
	{EventCancel, Queued, Cancelled},
	{EventCancel, Scheduled, Cancelled},
	{EventDeadLetter, Queued, Failed},
	{EventExpire, Queued, Failed},
}

// Allowed reports whether ev may move a job from → to.
func Allowed(ev Event, from, to Status) bool {
	return slices.Contains(Transitions, Transition{ev, from, to})
}

// Field names one mutable attribute of a job record, for a Patch.
type Field uint32

// The mutable fields. Identity (ID, Type, Key, Payload*, MaxAttempts,
// Timeout, CreatedAt) never changes after submission.
const (
	FieldStatus Field = 1 << iota
	FieldAttempt
	FieldFailures
	FieldOwner
	FieldLeaseUntil
	FieldCancelRequested
	FieldRunAt
	FieldResendAt
	FieldResends
	FieldDueAt
	FieldDetail
	FieldProgress
	FieldResult // Result and ResultRef
	FieldError
	FieldStartedAt
	FieldFinishedAt
	FieldExpiresAt
	FieldUpdatedAt
	FieldDeadLetters
	fieldEnd
)

// AllFields lists every Field, in bit order.
var AllFields = func() []Field {
	var fs []Field
	for f := Field(1); f < fieldEnd; f <<= 1 {
		fs = append(fs, f)
	}
	return fs
}()

var fieldNames = map[Field]string{
	FieldStatus: "status", FieldAttempt: "attempt", FieldFailures: "failures",
	FieldOwner: "owner", FieldLeaseUntil: "lease_until", FieldCancelRequested: "cancel_requested",
	FieldRunAt: "run_at", FieldResendAt: "resend_at", FieldResends: "resends",
	FieldDueAt: "due_at", FieldDetail: "detail", FieldProgress: "progress",
	FieldResult: "result", FieldError: "error", FieldStartedAt: "started_at",
	FieldFinishedAt: "finished_at", FieldExpiresAt: "expires_at", FieldUpdatedAt: "updated_at",
	FieldDeadLetters: "dead_letters",
}

// String returns the field's record name (as in the job's JSON).
func (f Field) String() string {
	if n, ok := fieldNames[f]; ok {
		return n
	}
	return fmt.Sprintf("field(%#x)", uint32(f))
}

// Cond is the condition of a conditional write. Status and Attempt are
// always checked; Owner, LeaseExpiredBefore and Rev when set.
type Cond struct {
	Status  Status
	Attempt int
	// Owner, when non-empty, must equal the stored owner.
	Owner string
	// LeaseExpiredBefore, when non-zero, requires lease_until < it.
	LeaseExpiredBefore time.Time
	// Rev, when non-zero, must equal the stored revision: nothing changed
	// since the writer read the job.
	Rev int64
}

// Holds reports whether c holds for the stored record j.
func (c Cond) Holds(j *Job) bool {
	if j.Status != c.Status || j.Attempt != c.Attempt {
		return false
	}
	if c.Owner != "" && j.Owner != c.Owner {
		return false
	}
	if !c.LeaseExpiredBefore.IsZero() && !j.LeaseUntil.Before(c.LeaseExpiredBefore) {
		return false
	}
	return c.Rev == 0 || j.Rev == c.Rev
}

// Patch is what a Change writes: the Fields named in the mask take their
// values from Values, and each History entry is put in the history by its
// attempt number (replacing an entry with the same number). Every write
// also bumps Rev.
type Patch struct {
	Fields  Field
	Values  Job
	History []Attempt
}

// Has reports whether f is in the patch.
func (p Patch) Has(f Field) bool { return p.Fields&f != 0 }

// Apply writes the patch into j and bumps its revision. Adapters that
// read-modify-write use it so every store applies a patch the same way.
func (p Patch) Apply(j *Job) {
	v := &p.Values
	for _, f := range AllFields {
		if !p.Has(f) {
			continue
		}
		switch f {
		case FieldStatus:
			j.Status = v.Status
		case FieldAttempt:
			j.Attempt = v.Attempt
		case FieldFailures:
			j.Failures = v.Failures
		case FieldOwner:
			j.Owner = v.Owner
		case FieldLeaseUntil:
			j.LeaseUntil = v.LeaseUntil
		case FieldCancelRequested:
			j.CancelRequested = v.CancelRequested
		case FieldRunAt:
			j.RunAt = v.RunAt
		case FieldResendAt:
			j.ResendAt = v.ResendAt
		case FieldResends:
			j.Resends = v.Resends
		case FieldDeadLetters:
			j.DeadLetters = v.DeadLetters
		case FieldDueAt:
			j.DueAt = v.DueAt
		case FieldDetail:
			j.Detail = v.Detail
		case FieldProgress:
			j.Progress = cloneBytes(v.Progress)
		case FieldResult:
			j.Result, j.ResultRef = cloneBytes(v.Result), v.ResultRef
		case FieldError:
			j.Error = v.Error
		case FieldStartedAt:
			j.StartedAt = v.StartedAt
		case FieldFinishedAt:
			j.FinishedAt = v.FinishedAt
		case FieldExpiresAt:
			j.ExpiresAt = v.ExpiresAt
		case FieldUpdatedAt:
			j.UpdatedAt = v.UpdatedAt
		}
	}
	for _, h := range p.History {
		j.History = PutHistory(j.History, h)
	}
	j.Rev++
}

// PutHistory puts a in h by attempt number, keeps h sorted by attempt and
// drops entries beyond the newest MaxHistory.
func PutHistory(h []Attempt, a Attempt) []Attempt {
	i, found := slices.BinarySearchFunc(h, a.Attempt, func(e Attempt, n int) int { return e.Attempt - n })
	if found {
		h[i] = a
	} else {
		h = slices.Insert(h, i, a)
	}
	if n := len(h); n > MaxHistory {
		h = append(h[:0:0], h[n-MaxHistory:]...)
	}
	return h
}

// Change is one conditional write to one job: if If holds for the stored
// record, apply Set; otherwise the writer lost and must not act as if it won.
type Change struct {
	ID    string
	Event Event
	// Key is the job's dedup key, if any. When Set makes the job terminal,
	// the store releases the key in the same atomic write.
	Key string
	If  Cond
	Set Patch
}

// To is the status the job has after the change.
func (c Change) To() Status {
	if c.Set.Has(FieldStatus) {
		return c.Set.Values.Status
	}
	return c.If.Status
}

// Releases reports whether the change releases the job's key.
func (c Change) Releases() bool { return c.Key != "" && c.To().Terminal() }

// Validate checks that the change is an edge of the state machine and is
// fenced: writes about running jobs name the attempt they expect.
func (c Change) Validate() error {
	if !ValidID(c.ID) {
		return fmt.Errorf("change %s: invalid job id %q", c.Event, c.ID)
	}
	if !Allowed(c.Event, c.If.Status, c.To()) {
		return fmt.Errorf("change %s of job %s: %s → %s is not a legal transition", c.Event, c.ID, c.If.Status, c.To())
	}
	if c.If.Attempt < 0 {
		return fmt.Errorf("change %s of job %s: negative attempt", c.Event, c.ID)
	}
	return nil
}

// Policy holds the durations the protocol's steps need. The zero value is
// not useful; start from DefaultPolicy.
type Policy struct {
	// Lease is how long a start or a renewal holds the job.
	Lease time.Duration
	// ResendAfter is how long a queued job may wait for its message to be
	// received before the reaper re-sends it; it doubles with each resend,
	// up to MaxResendInterval.
	ResendAfter       time.Duration
	MaxResendInterval time.Duration
	// MaxQueueDelay is the longest delay the work queue can hold a message
	// (SQS: 15 minutes). Longer waits go through SCHEDULED and the reaper.
	MaxQueueDelay time.Duration
	// PromoteLead is how long before run_at the reaper moves a SCHEDULED job
	// to the queue (with a message delay for the rest), so it starts on time.
	PromoteLead time.Duration
	// Retention is how long a terminal job's record is kept.
	Retention time.Duration
}

// DefaultPolicy is the policy the services start from.
var DefaultPolicy = Policy{
	Lease:             30 * time.Second,
	ResendAfter:       time.Minute,
	MaxResendInterval: time.Hour,
	MaxQueueDelay:     15 * time.Minute,
	PromoteLead:       time.Minute,
	Retention:         7 * 24 * time.Hour,
}

// Validate checks the policy for usable values.
func (p Policy) Validate() error {
	switch {
	case p.Lease <= 0:
		return fmt.Errorf("lease must be positive")
	case p.ResendAfter <= 0 || p.MaxResendInterval < p.ResendAfter:
		return fmt.Errorf("resend interval must be positive and at most its maximum")
	case p.MaxQueueDelay <= 0 || p.PromoteLead < 0 || p.PromoteLead > p.MaxQueueDelay:
		return fmt.Errorf("promote lead must be within the queue's delay limit")
	case p.Retention <= 0:
		return fmt.Errorf("retention must be positive")
	}
	return nil
}

// MessageDelay is how long the work message for a queued job should stay
// invisible: until RunAt, never negative.
func MessageDelay(j *Job, now time.Time) time.Duration {
	if d := j.RunAt.Sub(now); d > 0 {
		return d
	}
	return 0
}

// resendAt is the resend deadline for a job queued at now, runnable at runAt,
// after it has been re-sent resends times.
func (p Policy) resendAt(now, runAt time.Time, resends int) time.Time {
	d := p.ResendAfter
	for i := 0; i < resends && d < p.MaxResendInterval; i++ {
		d *= 2
	}
	d = min(d, p.MaxResendInterval)
	return later(now, runAt).Add(d)
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// queuedDue is when the reaper must look at a QUEUED job next: its resend
// deadline, or its start deadline when that comes first and it never
// started.
func queuedDue(resendAt time.Time, j *Job) time.Time {
	if j.Attempt == 0 && !j.StartBy.IsZero() && j.StartBy.Before(resendAt) {
		return j.StartBy
	}
	return resendAt
}

// queueAt returns the patch fields that (re)queue a job at now to run after
// delay: QUEUED with a message delay when the queue can hold it, else
// SCHEDULED for the reaper to promote.
func (p Policy) queueAt(set *Patch, now time.Time, delay time.Duration) {
	runAt := now.Add(max(delay, 0))
	set.Fields |= FieldStatus | FieldRunAt | FieldResendAt | FieldResends | FieldDeadLetters | FieldDueAt
	set.Values.RunAt = runAt
	set.Values.Resends = 0
	set.Values.DeadLetters = 0
	if delay > p.MaxQueueDelay {
		set.Values.Status = Scheduled
		set.Values.ResendAt = time.Time{}
		set.Values.DueAt = runAt.Add(-p.PromoteLead)
		return
	}
	set.Values.Status = Queued
	set.Values.ResendAt = p.resendAt(now, runAt, 0)
	set.Values.DueAt = set.Values.ResendAt
}

// leaveRunning clears the running-only fields and closes the attempt's
// history entry.
func leaveRunning(set *Patch, cur *Job, now time.Time, o Outcome, reason string) {
	set.Fields |= FieldOwner | FieldLeaseUntil | FieldUpdatedAt
	set.Values.Owner = ""
	set.Values.LeaseUntil = time.Time{}
	set.Values.UpdatedAt = now
	set.History = append(set.History, Attempt{
		Attempt: cur.Attempt, Owner: cur.Owner, StartedAt: cur.StartedAt,
		EndedAt: now, Outcome: o, Reason: truncate(reason, maxReasonLen),
	})
}

func (p Policy) terminal(set *Patch, status Status, now time.Time, errMsg string) {
	set.Fields |= FieldStatus | FieldDueAt | FieldFinishedAt | FieldExpiresAt | FieldError | FieldCancelRequested
	set.Values.Status = status
	set.Values.DueAt = time.Time{}
	set.Values.FinishedAt = now
	set.Values.ExpiresAt = now.Add(p.Retention)
	set.Values.Error = truncate(errMsg, maxErrorLen)
	set.Values.CancelRequested = false
}

const (
	maxReasonLen = 512
	maxErrorLen  = 4096
)

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	// cut on a rune boundary
	for n > 0 && s[n]&0xC0 == 0x80 {
		n--
	}
	return s[:n] + "…"
}

// Start is the change that starts a queued job named by a work message: one
// conditional write on status QUEUED and the message's attempt. The writer
// becomes the owner of attempt m.Attempt+1 until now+Lease.
func (p Policy) Start(m Message, owner string, now time.Time) Change {
	c := Change{ID: m.ID, Event: EventStart, If: Cond{Status: Queued, Attempt: m.Attempt}}
	p.startFields(&c.Set, m.Attempt+1, owner, now)
	return c
}

func (p Policy) startFields(set *Patch, attempt int, owner string, now time.Time) {
	lease := now.Add(p.Lease)
	set.Fields |= FieldStatus | FieldAttempt | FieldOwner | FieldLeaseUntil | FieldDueAt |
		FieldStartedAt | FieldUpdatedAt | FieldResendAt | FieldResends | FieldDeadLetters | FieldDetail | FieldProgress
	set.Values.Status = Running
	set.Values.Attempt = attempt
	set.Values.Owner = owner
	set.Values.LeaseUntil = lease
	set.Values.DueAt = lease
	set.Values.StartedAt = now
	set.Values.UpdatedAt = now
	set.Values.ResendAt = time.Time{}
	set.Values.Resends = 0
	set.Values.DeadLetters = 0
	set.Values.Detail = ""
	set.Values.Progress = nil
	set.History = append(set.History, Attempt{Attempt: attempt, Owner: owner, StartedAt: now})
}

// Takeover is the change by which owner starts a running job whose lease
// expired (cur as read, LeaseExpired(cur, now)): the expired attempt is
// recorded as lease_expired and counts as a failure. When that failure
// exhausts the job's attempts, use Reclaim instead (see NeedsReclaim).
func (p Policy) Takeover(cur *Job, owner string, now time.Time) Change {
	c := Change{ID: cur.ID, Event: EventTakeover, Key: cur.Key, If: Cond{
		Status: Running, Attempt: cur.Attempt, Owner: cur.Owner, LeaseExpiredBefore: now, Rev: cur.Rev,
	}}
	c.Set.Fields |= FieldFailures
	c.Set.Values.Failures = cur.Failures + 1
	c.Set.History = append(c.Set.History, Attempt{
		Attempt: cur.Attempt, Owner: cur.Owner, StartedAt: cur.StartedAt,
		EndedAt: now, Outcome: OutcomeLeaseExpired, Reason: "lease expired; taken over by " + owner,
	})
	p.startFields(&c.Set, cur.Attempt+1, owner, now)
	return c
}

// CanTakeover reports whether a worker holding a message for cur may take
// the job over at now: it is running, its lease expired, and a failure more
// would leave it attempts and no cancel is pending.
func CanTakeover(cur *Job, now time.Time) bool {
	return LeaseExpired(cur, now) && cur.AttemptsLeft() && !cur.CancelRequested
}

// Renew is the owner's heartbeat: extend the lease (fenced on status,
// attempt and owner) and write progress when non-nil. The stored record that
// comes back carries any cancel request. The reaper looks at the job again at
// the earlier of the new lease's end and the attempt's deadline.
func (p Policy) Renew(cur *Job, now time.Time, progress json.RawMessage) Change {
	c := Change{ID: cur.ID, Event: EventRenew, Key: cur.Key, If: Cond{Status: Running, Attempt: cur.Attempt, Owner: cur.Owner}}
	lease := now.Add(p.Lease)
	due := lease
	if d := cur.Deadline(); !d.IsZero() && d.Before(due) {
		due = d
	}
	c.Set.Fields = FieldLeaseUntil | FieldDueAt | FieldUpdatedAt
	c.Set.Values.LeaseUntil, c.Set.Values.DueAt, c.Set.Values.UpdatedAt = lease, due, now
	if progress != nil {
		c.Set.Fields |= FieldProgress
		c.Set.Values.Progress = progress
	}
	return c
}

// End says how an attempt ended, for Finish and Reclaim.
type End struct {
	Outcome   Outcome
	Reason    string          // error message or why the attempt ended
	Result    json.RawMessage // success: inline result
	ResultRef string          // success: blob holding the result
	// Delay is how long to wait before the next attempt (retry backoff or
	// snooze); hand-backs and reclaims run again at once.
	Delay time.Duration
}

// Finish is the owner's write at the end of its attempt (cur is the owner's
// copy of the running job), fenced on status, attempt and owner. The next
// state follows from the outcome:
//
//   - succeeded → SUCCEEDED;
//   - a pending cancel request → CANCELLED, whatever else happened;
//   - permanent, or a failure that exhausts MaxAttempts → FAILED;
//   - any other failure → QUEUED (or SCHEDULED) after e.Delay, one failure spent;
//   - handed_back, interrupted → QUEUED now; snoozed → after e.Delay; no failure spent.
func (p Policy) Finish(cur *Job, now time.Time, e End) Change {
	c := Change{ID: cur.ID, Event: EventFinish, Key: cur.Key, If: Cond{Status: Running, Attempt: cur.Attempt, Owner: cur.Owner}}
	p.next(&c, cur, now, e)
	return c
}

// Reclaim is the reaper's write for a running job whose owner is gone
// (lease_expired, task_stopped, interrupted), ran past its deadline
// (timeout), or whose message was dead-lettered (dead_letter). cur is the
// record as read; the write is conditional on its revision, and for a lease
// expiry on the lease still being expired at now. The next state follows as
// for Finish.
func (p Policy) Reclaim(cur *Job, now time.Time, e End) Change {
	c := Change{ID: cur.ID, Event: EventReclaim, Key: cur.Key, If: Cond{Status: Running, Attempt: cur.Attempt, Rev: cur.Rev}}
	if e.Outcome == OutcomeLeaseExpired {
		c.If.LeaseExpiredBefore = now
	}
	p.next(&c, cur, now, e)
	return c
}

func (p Policy) next(c *Change, cur *Job, now time.Time, e End) {
	leaveRunning(&c.Set, cur, now, e.Outcome, e.Reason)
	failures := cur.Failures
	if e.Outcome.CountsAsFailure() {
		failures++
		c.Set.Fields |= FieldFailures
		c.Set.Values.Failures = failures
	}
	switch {
	case e.Outcome == OutcomeSucceeded:
		p.terminal(&c.Set, Succeeded, now, "")
		c.Set.Fields |= FieldResult
		c.Set.Values.Result, c.Set.Values.ResultRef = e.Result, e.ResultRef
	case e.Outcome == OutcomeCancelled || cur.CancelRequested:
		p.terminal(&c.Set, Cancelled, now, "cancelled")
	case e.Outcome == OutcomePermanent || e.Outcome == OutcomeDeadLetter ||
		(e.Outcome.CountsAsFailure() && failures >= cur.MaxAttempts):
		msg := e.Reason
		if e.Outcome != OutcomePermanent && e.Outcome != OutcomeDeadLetter {
			msg = fmt.Sprintf("attempts exhausted (%d of %d failed); last: %s: %s", failures, cur.MaxAttempts, e.Outcome, e.Reason)
		}
		p.terminal(&c.Set, Failed, now, msg)
	default:
		delay := e.Delay
		if e.Outcome == OutcomeHandedBack || e.Outcome == OutcomeInterrupted {
			delay = 0
		}
		p.queueAt(&c.Set, now, delay)
		if e.Outcome.CountsAsFailure() {
			c.Set.Fields |= FieldError
			c.Set.Values.Error = truncate(fmt.Sprintf("%s: %s", e.Outcome, e.Reason), maxErrorLen)
		}
	}
}

// RequestCancel asks for a job (cur as read) to be cancelled: a queued or
// scheduled job is cancelled at once; a running one gets a cancel request
// that its owner sees at its next heartbeat. Terminal jobs cannot be
// cancelled (ok is false).
func (p Policy) RequestCancel(cur *Job, now time.Time) (c Change, ok bool) {
	switch cur.Status {
	case Queued, Scheduled:
		c = Change{ID: cur.ID, Event: EventCancel, Key: cur.Key, If: Cond{Status: cur.Status, Attempt: cur.Attempt, Rev: cur.Rev}}
		p.terminal(&c.Set, Cancelled, now, "cancelled")
		c.Set.Fields |= FieldUpdatedAt | FieldResendAt | FieldDetail
		c.Set.Values.UpdatedAt = now
		c.Set.Values.ResendAt = time.Time{}
		c.Set.Values.Detail = ""
		return c, true
	case Running:
		c = Change{ID: cur.ID, Event: EventRequestCancel, Key: cur.Key, If: Cond{Status: Running, Attempt: cur.Attempt}}
		c.Set.Fields = FieldCancelRequested | FieldUpdatedAt
		c.Set.Values.CancelRequested = true
		c.Set.Values.UpdatedAt = now
		return c, true
	}
	return Change{}, false
}

// Promote moves a SCHEDULED job (cur as read) to QUEUED; its message is sent
// with the delay left until RunAt (MessageDelay).
func (p Policy) Promote(cur *Job, now time.Time) Change {
	c := Change{ID: cur.ID, Event: EventPromote, Key: cur.Key, If: Cond{Status: Scheduled, Attempt: cur.Attempt, Rev: cur.Rev}}
	c.Set.Fields = FieldStatus | FieldResendAt | FieldResends | FieldDueAt | FieldUpdatedAt
	c.Set.Values.Status = Queued
	c.Set.Values.ResendAt = p.resendAt(now, cur.RunAt, 0)
	c.Set.Values.DueAt = queuedDue(c.Set.Values.ResendAt, cur)
	c.Set.Values.UpdatedAt = now
	return c
}

// Resend records that the reaper re-sends the message of a QUEUED job (cur
// as read) that waited past its resend deadline, and pushes the deadline out
// (doubling). Only one of several reapers wins it.
func (p Policy) Resend(cur *Job, now time.Time) Change {
	c := Change{ID: cur.ID, Event: EventResend, Key: cur.Key, If: Cond{Status: Queued, Attempt: cur.Attempt, Rev: cur.Rev}}
	c.Set.Fields = FieldResendAt | FieldResends | FieldDueAt | FieldUpdatedAt
	c.Set.Values.Resends = cur.Resends + 1
	c.Set.Values.ResendAt = p.resendAt(now, cur.RunAt, cur.Resends+1)
	c.Set.Values.DueAt = queuedDue(c.Set.Values.ResendAt, cur)
	c.Set.Values.UpdatedAt = now
	return c
}

// Redrive records that the work message of a QUEUED job (cur as read)
// reached the dead-letter queue without starting the job: DeadLetters
// counts it, the resend deadline is brought forward, so the reaper's resend
// sweep sends the message again (and handles a pending cancel or a passed
// start deadline first, as for any resend), and detail says what happened.
// The first redrive of a queued spell (no resends yet) is due at once; each
// later one is held back as long as the resend interval it follows
// (ResendAfter doubling, up to MaxResendInterval), or less when the
// deadline already set comes first, so a job whose start keeps being
// refused is tried less and less often.
func (p Policy) Redrive(cur *Job, now time.Time, detail string) Change {
	c := Change{ID: cur.ID, Event: EventResend, Key: cur.Key, If: Cond{Status: Queued, Attempt: cur.Attempt, Rev: cur.Rev}}
	c.Set.Fields = FieldResendAt | FieldDueAt | FieldDeadLetters | FieldDetail | FieldUpdatedAt
	at := later(now, cur.RunAt)
	if cur.Resends > 0 {
		at = p.resendAt(now, cur.RunAt, cur.Resends-1)
	}
	if !cur.ResendAt.IsZero() && cur.ResendAt.Before(at) {
		at = cur.ResendAt
	}
	c.Set.Values.ResendAt = at
	c.Set.Values.DueAt = queuedDue(at, cur)
	c.Set.Values.DeadLetters = cur.DeadLetters + 1
	c.Set.Values.Detail = truncate(detail, maxReasonLen)
	c.Set.Values.UpdatedAt = now
	return c
}

// DeadLetter fails a QUEUED job (cur as read) whose message reached the
// dead-letter queue, with the reason.
func (p Policy) DeadLetter(cur *Job, now time.Time, reason string) Change {
	c := Change{ID: cur.ID, Event: EventDeadLetter, Key: cur.Key, If: Cond{Status: Queued, Attempt: cur.Attempt, Rev: cur.Rev}}
	p.terminal(&c.Set, Failed, now, reason)
	c.Set.Fields |= FieldUpdatedAt | FieldResendAt | FieldDetail
	c.Set.Values.UpdatedAt = now
	c.Set.Values.ResendAt = time.Time{}
	c.Set.Values.Detail = ""
	return c
}

// Expire fails a QUEUED job whose start deadline passed; reason says why it
// never started (e.g. "provisioner: ...").
func (p Policy) Expire(cur *Job, now time.Time, reason string) Change {
	c := p.DeadLetter(cur, now, reason)
	c.Event = EventExpire
	return c
}

// Note sets a queued job's status detail (why it is still waiting). It is
// conditional on the attempt only, so it never blocks the job's progress.
func (p Policy) Note(cur *Job, now time.Time, detail string) Change {
	c := Change{ID: cur.ID, Event: EventNote, Key: cur.Key, If: Cond{Status: Queued, Attempt: cur.Attempt}}
	c.Set.Fields = FieldDetail | FieldUpdatedAt
	c.Set.Values.Detail = truncate(detail, maxReasonLen)
	c.Set.Values.UpdatedAt = now
	return c
}
