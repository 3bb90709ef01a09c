package worker

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jobfleet/jobfleet/pkg/errcode"
	"github.com/jobfleet/jobfleet/pkg/job"
	"github.com/jobfleet/jobfleet/pkg/queue"
)

// The worker's decisions, as pure functions of what it knows: the worker
// core calls them, and so does the protocol's simulation (package sim),
// which takes the same steps one at a time on a fake clock. None of them
// does I/O, reads a clock or draws a random number: time and jitter are
// passed in.

// Causes with which a running job's context ends (context.Cause of the
// context a handler gets). A handler may look at them, but needs not: it
// should return promptly whatever the cause.
var (
	// ErrLeaseLost: a renewal lost its condition (the job was reclaimed or
	// taken over), or could not be written before the lease ran out. The
	// attempt commits nothing.
	ErrLeaseLost = errors.New("lease lost")
	// ErrCancelRequested: the job was cancelled while it ran.
	ErrCancelRequested = errors.New("cancel requested")
	// ErrHandBack: the worker is draining and its budget ran out; the job
	// is handed back, no attempt spent.
	ErrHandBack = errors.New("worker draining: handed back")
	// ErrTimeout: the attempt ran past the job's timeout.
	ErrTimeout = errors.New("attempt timed out")
)

// Return is what a handler gave back: its result and error, or the panic
// it raised (with its stack), which then counts as a failed attempt.
type Return struct {
	Result json.RawMessage
	Err    error
	Panic  string
}

// AttemptEnd is how an attempt ended, from what its handler returned and,
// when the handler's context had ended by then, the context's cause (nil
// when it had not). A panic, then a success, count whatever the context
// did; any other return after the context ended takes the context's
// outcome; otherwise the handler's error decides: Snooze, Permanent, or a
// failure retried after retry (Backoff of the job's next failure count).
func AttemptEnd(j *job.Job, ret Return, cause error, retry time.Duration) job.End {
	if ret.Panic != "" {
		return job.End{Outcome: job.OutcomePanic, Reason: ret.Panic, Delay: retry}
	}
	if ret.Err == nil {
		return job.End{Outcome: job.OutcomeSucceeded, Result: ret.Result}
	}
	if cause != nil {
		switch {
		case errors.Is(cause, ErrLeaseLost):
			return job.End{Outcome: job.OutcomeFailed, Reason: "lease lost"}
		case errors.Is(cause, ErrCancelRequested):
			return job.End{Outcome: job.OutcomeCancelled, Reason: "cancel requested"}
		case errors.Is(cause, ErrTimeout):
			return job.End{Outcome: job.OutcomeTimeout, Reason: fmt.Sprintf("ran past its timeout of %s", j.Timeout), Delay: retry}
		default: // ErrHandBack, or the worker's own context ended
			return job.End{Outcome: job.OutcomeHandedBack, Reason: "worker stopping"}
		}
	}
	var sn *snoozeError
	switch {
	case errors.As(ret.Err, &sn):
		return job.End{Outcome: job.OutcomeSnoozed, Reason: ret.Err.Error(), Delay: sn.d}
	case IsPermanent(ret.Err):
		return job.End{Outcome: job.OutcomePermanent, Reason: ret.Err.Error()}
	}
	return job.End{Outcome: job.OutcomeFailed, Reason: ret.Err.Error(), Delay: retry}
}

// Backoff is the retry delay after the given number of failures (at least
// 1): base × 2^(failures−1), capped at maxD, then jittered to between half
// and all of it by jitter, a fraction in [0, 1).
func Backoff(failures int, base, maxD time.Duration, jitter float64) time.Duration {
	d := base
	for i := 1; i < failures && d < maxD; i++ {
		d *= 2
	}
	d = min(d, maxD)
	return d/2 + time.Duration(jitter*float64(d/2))
}

// GiveBackBase is how soon a message comes back after the first receive
// that could not start its job.
const GiveBackBase = 2 * time.Second

// GiveBackDelay is how long a message whose job could not be started
// (the store refused the write, or its entry) stays invisible before it is
// received again: GiveBackBase × 2^(receives−1), receives being the
// message's receive count, capped at maxD (the worker's visibility
// timeout). Each receive counts toward the queue's dead-letter limit, so
// the delay grows: with the services' settings (10 receives, 40 s
// visibility) a message survives an outage of about four minutes, while a
// blip costs a start only seconds.
func GiveBackDelay(receives int, maxD time.Duration) time.Duration {
	d := GiveBackBase
	for i := 1; i < receives && d < maxD; i++ {
		d *= 2
	}
	return min(d, maxD)
}

// Resolution is what a worker does with a work message whose start lost
// its condition (ResolveStart).
type Resolution int

const (
	// Stale: the message cannot start its job (terminal, at a newer
	// attempt, running under a live lease, gone): delete it.
	Stale Resolution = iota
	// TakeOver: the job runs under an expired lease: apply the takeover
	// and run the job (attempt+1, a failure spent). A takeover that loses
	// leaves the message stale.
	TakeOver
	// Settle: the job runs under an expired lease, but a failure more
	// exhausts it or a cancel is pending: apply the reclaim (and send the
	// next message if it is queued again); the message is stale either way.
	Settle
)

func (r Resolution) String() string {
	switch r {
	case Stale:
		return "stale"
	case TakeOver:
		return "takeover"
	case Settle:
		return "settle"
	}
	return fmt.Sprintf("resolution(%d)", int(r))
}

// ResolveStart decides what to do with a message whose start lost its
// condition, from the record the failed write found (cur, nil when none)
// at the worker's now. For TakeOver and Settle it returns the change to
// apply: the takeover by owner, or the reclaim as lease_expired.
func ResolveStart(p job.Policy, cur *job.Job, owner string, now time.Time) (Resolution, job.Change) {
	switch {
	case cur == nil || !job.LeaseExpired(cur, now):
		return Stale, job.Change{}
	case job.CanTakeover(cur, now):
		return TakeOver, p.Takeover(cur, owner, now)
	}
	return Settle, p.Reclaim(cur, now, job.End{Outcome: job.OutcomeLeaseExpired, Reason: "lease of " + cur.Owner + " expired"})
}

// LostCondition reports whether err from a fenced write (a renewal or a
// finish) means that the writer no longer owns the attempt: the condition
// failed, or the job is gone. Any other error leaves it unknown whether
// the write landed.
func LostCondition(err error) bool {
	return errors.Is(err, errcode.FailedPrecondition) || errors.Is(err, errcode.NotFound)
}

// StartLanded reports whether j, read after a start or takeover by owner
// that got no answer, shows the write landed: the job is RUNNING at
// attempt, owned by owner. The owner then runs it; otherwise its lease
// would run out unused and spend an attempt.
func StartLanded(j *job.Job, owner string, attempt int) bool {
	return j != nil && j.Status == job.Running && j.Owner == owner && j.Attempt == attempt
}

// Finished is what a read after an outcome write that got no answer shows
// (FinishResult).
type Finished int

const (
	// FinishLanded: the outcome is recorded; go on as if it had answered.
	FinishLanded Finished = iota
	// FinishRetry: the write did not land and its condition still holds:
	// write it again.
	FinishRetry
	// FinishLost: someone else ended the attempt (a reclaim or takeover
	// after the lease ran out): as for a lost condition.
	FinishLost
)

// FinishResult decides from j, read after the outcome write c (a
// job.Policy Finish) got no answer, whether that write landed: the
// attempt's history entry was closed by its owner with c's outcome.
func FinishResult(j *job.Job, c job.Change) Finished {
	if c.If.Holds(j) {
		return FinishRetry
	}
	var want job.Outcome
	for _, h := range c.Set.History {
		if h.Attempt == c.If.Attempt {
			want = h.Outcome
		}
	}
	for _, h := range j.History {
		if h.Attempt == c.If.Attempt && h.Owner == c.If.Owner && h.Outcome == want && !h.EndedAt.IsZero() {
			return FinishLanded
		}
	}
	return FinishLost
}

// Renewal is what a heartbeat's lease renewal means for the run
// (RenewalResult).
type Renewal int

const (
	// Renewed: the lease is held until the new record's LeaseUntil.
	Renewed Renewal = iota
	// RenewalUnknown: it is not known whether the renewal landed, and the
	// lease as last written outlives the next heartbeat: keep running and
	// try again then (with the progress not yet written).
	RenewalUnknown
	// LeaseLost: cancel the handler (ErrLeaseLost) and commit nothing.
	LeaseLost
)

// RenewalResult says what the renewal of cur (the owner's copy of the
// record) at now meant, from its error: nil is Renewed; a lost condition is
// LeaseLost; any other error is RenewalUnknown while the lease already
// held lasts past the next heartbeat, and LeaseLost once it does not (the
// worker gives the job up before the lease can run out under it).
func RenewalResult(err error, cur *job.Job, now time.Time, heartbeat time.Duration) Renewal {
	switch {
	case err == nil:
		return Renewed
	case LostCondition(err):
		return LeaseLost
	case cur.LeaseUntil.Before(now.Add(heartbeat)):
		return LeaseLost
	}
	return RenewalUnknown
}

// visibilityMargin keeps the last visibility extension clear of SQS's cap.
const visibilityMargin = time.Minute

// NearVisibilityCap reports whether a message received at receivedAt can
// no longer be kept invisible by the heartbeat at now (extensions of
// visibility, one each heartbeat) without passing queue.MaxVisibility
// after its receive. The worker then deletes the message, and the job goes
// on under its lease alone; if its owner dies, the reaper re-queues it
// with a new message.
func NearVisibilityCap(receivedAt, now time.Time, visibility, heartbeat time.Duration) bool {
	return receivedAt.Add(queue.MaxVisibility - visibilityMargin).Before(now.Add(visibility + heartbeat))
}
