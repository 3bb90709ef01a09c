// Package job is jobfleet's job model: the record, its states, the legal
// transitions between them, and pure functions that turn a protocol step into
// a conditional write (a Change) for a job store to apply.
//
// # States
//
//	          submit                 start                 success
//	(none) ─────────▶ QUEUED ─────────────────▶ RUNNING ─────────────▶ SUCCEEDED
//	   │   run_at>now   ▲  ▲   retry (attempt+1)  │  │ │ permanent error /
//	   └──▶ SCHEDULED ──┘  └──────────────────────┘  │ │ attempts exhausted ──▶ FAILED
//	                        reclaim (lease expired,   │ └─ cancel ───────────▶ CANCELLED
//	                        task stopped, hand-back)  │
//
// The table of legal transitions is Transitions; every Change names its Event,
// and a store refuses a Change whose event, from-status and to-status are not
// in the table. Terminal states (SUCCEEDED, FAILED, CANCELLED) have no way out:
// they are written once.
//
// # Fencing
//
// Attempt is the fencing token. It grows by one every time the job is started,
// whoever starts it, and every write about a running job is conditional on the
// status, the attempt and (for the owner's own writes) the owner. Failures,
// which count against MaxAttempts, are kept apart: a handler error, a timeout
// or a lease lost to a crash spends one; a hand-back (drain, Spot
// interruption) or a snooze does not.
//
// # Due time
//
// DueAt is when the reaper must next look at a job, by status: SCHEDULED at
// RunAt (promote), QUEUED at its resend deadline (re-send a lost message),
// RUNNING at the earlier of lease expiry and the attempt's deadline (reclaim or
// time out). Stores index (status, due_at) so the reaper's sweeps are queries,
// never scans. Terminal jobs are not due.
package job

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/oklog/ulid/v2"
)

// Status is a job's state.
type Status string

// The states. None is "no job yet", the from-state of a submission.
const (
	None      Status = ""
	Scheduled Status = "SCHEDULED"
	Queued    Status = "QUEUED"
	Running   Status = "RUNNING"
	Succeeded Status = "SUCCEEDED"
	Failed    Status = "FAILED"
	Cancelled Status = "CANCELLED"
)

// Statuses lists every state a stored job can be in.
var Statuses = []Status{Scheduled, Queued, Running, Succeeded, Failed, Cancelled}

// Terminal reports whether s is a final state.
func (s Status) Terminal() bool {
	return s == Succeeded || s == Failed || s == Cancelled
}

// Active reports whether a job in s holds its key (not terminal, not none).
func (s Status) Active() bool {
	return s == Scheduled || s == Queued || s == Running
}

// Valid reports whether s is a state a stored job can be in.
func (s Status) Valid() bool { return s.Active() || s.Terminal() }

// ParseStatus parses a status name, case-insensitively.
func ParseStatus(v string) (Status, error) {
	s := Status(strings.ToUpper(v))
	if !s.Valid() {
		return None, fmt.Errorf("unknown status %q (want one of %s)", v, statusNames())
	}
	return s, nil
}

func statusNames() string {
	names := make([]string, len(Statuses))
	for i, s := range Statuses {
		names[i] = string(s)
	}
	return strings.Join(names, ", ")
}

// Outcome says how an attempt ended.
type Outcome string

// Attempt outcomes, recorded in the history.
const (
	OutcomeSucceeded    Outcome = "succeeded"
	OutcomeFailed       Outcome = "failed"        // handler error; retried if attempts remain
	OutcomePermanent    Outcome = "permanent"     // handler said do not retry
	OutcomeTimeout      Outcome = "timeout"       // ran past its timeout
	OutcomePanic        Outcome = "panic"         // handler panicked
	OutcomeLeaseExpired Outcome = "lease_expired" // owner stopped heartbeating
	OutcomeTaskStopped  Outcome = "task_stopped"  // owner's task stopped (fleet event)
	OutcomeInterrupted  Outcome = "interrupted"   // owner's task stopped by Spot/scale-in: not a failure
	OutcomeHandedBack   Outcome = "handed_back"   // owner drained and gave it back: not a failure
	OutcomeSnoozed      Outcome = "snoozed"       // handler asked to run later: not a failure
	OutcomeCancelled    Outcome = "cancelled"
	OutcomeDeadLetter   Outcome = "dead_letter" // its message reached the DLQ
)

// CountsAsFailure reports whether an attempt ending with o spends one of the
// job's MaxAttempts.
func (o Outcome) CountsAsFailure() bool {
	switch o {
	case OutcomeFailed, OutcomePermanent, OutcomeTimeout, OutcomePanic,
		OutcomeLeaseExpired, OutcomeTaskStopped, OutcomeDeadLetter:
		return true
	}
	return false
}

// MaxHistory is how many attempts a job record keeps in its history; older
// entries are dropped as new attempts start.
const MaxHistory = 10

// Attempt records one attempt in a job's bounded history.
type Attempt struct {
	Attempt   int       `json:"attempt"`
	Owner     string    `json:"owner"`
	StartedAt time.Time `json:"started_at"`
	EndedAt   time.Time `json:"ended_at,omitzero"`
	Outcome   Outcome   `json:"outcome,omitempty"`
	Reason    string    `json:"reason,omitempty"`
}

// Job is the job record. Times are UTC. Payload and Result hold JSON inline
// when small; otherwise PayloadRef/ResultRef name a blob holding it.
type Job struct {
	ID          string          `json:"id"`
	Type        string          `json:"type"`
	Key         string          `json:"key,omitempty"`
	Payload     json.RawMessage `json:"payload,omitempty"`
	PayloadRef  string          `json:"payload_ref,omitempty"`
	PayloadHash string          `json:"payload_hash,omitempty"`
	PayloadSize int64           `json:"payload_size"`

	Status      Status   `json:"status"`
	Rev         int64    `json:"rev"`      // bumped by every write; optional condition for read-then-write steps
	Attempt     int      `json:"attempt"`  // fencing token: number of starts so far
	Failures    int      `json:"failures"` // attempts that count against MaxAttempts
	MaxAttempts int      `json:"max_attempts"`
	Timeout     Duration `json:"timeout"`

	Owner           string    `json:"owner,omitempty"`
	LeaseUntil      time.Time `json:"lease_until,omitzero"`
	CancelRequested bool      `json:"cancel_requested,omitempty"`
	RunAt           time.Time `json:"run_at,omitzero"`
	ResendAt        time.Time `json:"resend_at,omitzero"`
	Resends         int       `json:"resends,omitempty"`
	// DeadLetters counts the work messages of this queued spell that
	// reached the dead-letter queue without starting the job (reaper,
	// Policy.Redrive); it restarts at 0 when the job starts or is queued
	// again.
	DeadLetters int       `json:"dead_letters,omitempty"`
	DueAt       time.Time `json:"due_at,omitzero"`
	// StartBy, when set, is when a job that never started fails (with a
	// "provisioner:" error): the submission's start_within after run_at.
	StartBy time.Time `json:"start_by,omitzero"`
	Detail  string    `json:"detail,omitempty"` // why it is waiting, e.g. "waiting for capacity: ..."

	Progress  json.RawMessage `json:"progress,omitempty"`
	Result    json.RawMessage `json:"result,omitempty"`
	ResultRef string          `json:"result_ref,omitempty"`
	Error     string          `json:"error,omitempty"`

	CreatedAt  time.Time `json:"created_at"`
	UpdatedAt  time.Time `json:"updated_at"`
	StartedAt  time.Time `json:"started_at,omitzero"`
	FinishedAt time.Time `json:"finished_at,omitzero"`
	ExpiresAt  time.Time `json:"expires_at,omitzero"` // terminal jobs: when the record may be deleted

	History []Attempt `json:"history,omitempty"`
}

// Clone returns a deep copy of j.
func (j *Job) Clone() *Job {
	if j == nil {
		return nil
	}
	c := *j
	c.Payload = cloneBytes(j.Payload)
	c.Progress = cloneBytes(j.Progress)
	c.Result = cloneBytes(j.Result)
	if j.History != nil {
		c.History = append([]Attempt(nil), j.History...)
	}
	return &c
}

func cloneBytes(b json.RawMessage) json.RawMessage {
	if b == nil {
		return nil
	}
	return append(json.RawMessage(nil), b...)
}

// Deadline is when the current attempt runs out of time (StartedAt+Timeout);
// zero when the job is not running or has no timeout.
func (j *Job) Deadline() time.Time {
	if j.Status != Running || j.StartedAt.IsZero() || j.Timeout <= 0 {
		return time.Time{}
	}
	return j.StartedAt.Add(time.Duration(j.Timeout))
}

// LeaseExpired reports whether a running job's lease has run out at now.
func LeaseExpired(j *Job, now time.Time) bool {
	return j.Status == Running && j.LeaseUntil.Before(now)
}

// StartOverdue reports whether a job that never started has passed its
// start deadline at now.
func (j *Job) StartOverdue(now time.Time) bool {
	return j.Status == Queued && j.Attempt == 0 && !j.StartBy.IsZero() && !now.Before(j.StartBy)
}

// AttemptsLeft reports whether another failure would still leave the job
// runnable.
func (j *Job) AttemptsLeft() bool { return j.Failures+1 < j.MaxAttempts }

// Message is the work-queue message body: which job, at which attempt. A
// message whose attempt no longer matches the job is stale.
type Message struct {
	ID      string `json:"id"`
	Attempt int    `json:"attempt"`
}

// Encode returns the message body.
func (m Message) Encode() []byte {
	return []byte(`{"id":"` + m.ID + `","attempt":` + strconv.Itoa(m.Attempt) + `}`)
}

// DecodeMessage parses a work-queue message body.
func DecodeMessage(b []byte) (Message, error) {
	var m Message
	if err := json.Unmarshal(b, &m); err != nil {
		return Message{}, fmt.Errorf("decode work message: %w", err)
	}
	if !ValidID(m.ID) {
		return Message{}, fmt.Errorf("decode work message: invalid job id %q", m.ID)
	}
	if m.Attempt < 0 {
		return Message{}, fmt.Errorf("decode work message: negative attempt %d", m.Attempt)
	}
	return m, nil
}

// ID generation: ULIDs, monotonic within a process so ids sort by creation.
var (
	idMu      sync.Mutex
	idEntropy = ulid.Monotonic(rand.Reader, 0)
)

// NewID returns a new ULID for a job created at t.
func NewID(t time.Time) string {
	idMu.Lock()
	defer idMu.Unlock()
	return ulid.MustNew(ulid.Timestamp(t), idEntropy).String()
}

// DerivedID returns the ULID for a job whose identity comes from outside (an
// ingress message): the same (t, seed) always gives the same id, so a
// redelivered message never makes a second job.
func DerivedID(t time.Time, seed []byte) string {
	h := sha256.Sum256(seed)
	var id ulid.ULID
	_ = id.SetTime(ulid.Timestamp(t))
	_ = id.SetEntropy(h[:10])
	return id.String()
}

// ValidID reports whether s is a well-formed job id (a ULID).
func ValidID(s string) bool {
	if len(s) != ulid.EncodedSize {
		return false
	}
	_, err := ulid.ParseStrict(s)
	return err == nil
}

// Duration is a time.Duration that reads and writes JSON as a Go duration
// string ("90s", "1h30m"); it also reads a number of seconds.
type Duration time.Duration

// MarshalJSON writes d as a duration string.
func (d Duration) MarshalJSON() ([]byte, error) {
	return json.Marshal(time.Duration(d).String())
}

// UnmarshalJSON reads a duration string or a number of seconds.
func (d *Duration) UnmarshalJSON(b []byte) error {
	if len(b) > 0 && b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		v, err := time.ParseDuration(s)
		if err != nil {
			return fmt.Errorf("invalid duration %q (want e.g. \"90s\" or \"1h30m\")", s)
		}
		*d = Duration(v)
		return nil
	}
	var secs float64
	if err := json.Unmarshal(b, &secs); err != nil {
		return fmt.Errorf("invalid duration %s (want a string like \"90s\" or a number of seconds)", b)
	}
	if secs > float64(1<<63-1)/float64(time.Second) || secs < -float64(1<<63-1)/float64(time.Second) {
		return fmt.Errorf("duration %s seconds is out of range", b)
	}
	*d = Duration(secs * float64(time.Second))
	return nil
}

// String formats d like time.Duration.
func (d Duration) String() string { return time.Duration(d).String() }
