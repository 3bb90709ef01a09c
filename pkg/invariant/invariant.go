// Package invariant checks a run of the job system against the promises of
// DESIGN.md ("Invariants"). A run records what happened into a Recorder — as
// it happens, from any number of goroutines — and Check replays the history
// afterwards, a pure function of the events and the end time:
//
//	rec := invariant.NewRecorder(clk)
//	store := jobstore.New(invariant.RecordDriver(driver, rec), nil) // every write, as applied
//	... run: rec.Record(invariant.Event{Kind: invariant.Submitted, Job: id, ...}) ...
//	rep := invariant.Check(rec.History(), clk.Now())
//	if err := rep.Err(); err != nil { t.Fatal(rep.String()) }
//
// # What is checked
//
// Hard invariants, each a Rule; Report.Err is non-nil when any is broken:
//
//   - Lost: a submission was acknowledged and its job never reached a
//     terminal state by the end, although a worker was alive at the end and
//     the job was due (its RunAt not after the end). Jobs left over with no
//     worker alive are counted as Pending, not lost: the promise holds "while
//     workers exist".
//   - Fencing: a write accepted on behalf of an attempt older than the
//     newest started one, a write fenced on an owner accepted for an owner
//     that did not start that attempt, or one attempt number started twice.
//   - DoubleTerminal: two accepted writes made a job terminal.
//   - TerminalChanged: an accepted write changed a terminal job, or a read
//     observed a terminal job with another status or another result than
//     its terminal write (the result no longer readable as written).
//   - Dedup: a job was created with a key while another job holding that
//     key was still active.
//   - Unanswered: a refused submission or a dead letter without a reason.
//
// Measurements, which are not violations: duplicate executions (a job whose
// handler ran to completion with success in more than one attempt; at-least-
// once delivery makes some inevitable, and the rate per 10,000 jobs is what
// to watch) and the time from a worker's death to each job it held running
// again (p50, p99, max).
//
// # Ordering
//
// Check takes the history in Seq order, which is the order Record was
// called in. Where several goroutines record, an event must be recorded
// after what caused it and before what it causes can be recorded elsewhere;
// RecordDriver records each write inside the call that made it, which is
// exact for a single-threaded run (the simulation) and for writers that are
// serialized by the store. In concurrent runs, rely on the store-side events
// of RecordDriver for the dedup and fencing rules.
package invariant

import (
	"crypto/sha256"
	"encoding/hex"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/jobfleet/jobfleet/pkg/clock"
	"github.com/jobfleet/jobfleet/pkg/job"
)

// Kind says what an Event records.
type Kind uint8

// The kinds of events.
const (
	// Submitted: a submission was acknowledged to its producer. Job is the
	// job that answers it (the holder when deduplicated), Key its key,
	// RunAt when it becomes runnable.
	Submitted Kind = iota + 1
	// Rejected: a submission was refused; Reason is the answer given.
	Rejected
	// Created: a job record was stored (with Key claimed, if any).
	Created
	// Write: a conditional write was accepted or refused. Event is the
	// protocol step, Attempt the attempt it was fenced on (job.Cond.Attempt),
	// Owner the owner it was fenced on, or for a start or takeover the new
	// owner; Accepted whether it applied; Status the job's status after it
	// (accepted) or as found (refused); Result a digest of the result of an
	// accepted success; Reason the error it wrote.
	Write
	// Started: attempt Attempt of Job started with owner Owner. Writes of
	// start and takeover events count as Started too; record this kind only
	// when writes are not recorded.
	Started
	// Executed: the handler of Job's attempt Attempt, on Owner, ran to
	// completion with Outcome (a handler that noticed its context ending is
	// not recorded).
	Executed
	// Observed: a read saw Job with Status and Result.
	Observed
	// DeadLetter: a message was dead-lettered (Job, if it named one) with
	// Reason.
	DeadLetter
	// WorkerUp and WorkerDown: worker Owner started or died (crashed,
	// stopped, or lost its host).
	WorkerUp
	WorkerDown
)

var kindNames = [...]string{
	Submitted: "submitted", Rejected: "rejected", Created: "created", Write: "write",
	Started: "started", Executed: "executed", Observed: "observed", DeadLetter: "dead_letter",
	WorkerUp: "worker_up", WorkerDown: "worker_down",
}

// String returns the kind's name.
func (k Kind) String() string {
	if int(k) < len(kindNames) && kindNames[k] != "" {
		return kindNames[k]
	}
	return "kind(" + strconv.Itoa(int(k)) + ")"
}

// Event is one thing that happened in a run. Which fields matter depends on
// Kind (see the constants).
type Event struct {
	Seq      int64     // set by Recorder.Record: the order of events
	Time     time.Time // when it happened; Record sets it from its clock when zero
	Kind     Kind
	Job      string
	Key      string
	Attempt  int
	Owner    string
	Event    job.Event
	Accepted bool
	Status   job.Status
	Outcome  job.Outcome
	Result   string // digest of a result, from Digest
	Reason   string
	RunAt    time.Time
}

// Digest returns the digest of a job's result (inline bytes and blob
// reference) that Write and Observed events carry; empty for no result.
func Digest(result []byte, ref string) string {
	if len(result) == 0 && ref == "" {
		return ""
	}
	h := sha256.New()
	h.Write(result)
	h.Write([]byte{0})
	h.Write([]byte(ref))
	return hex.EncodeToString(h.Sum(nil)[:8])
}

// History is a run's events in the order they were recorded.
type History []Event

// Recorder collects a run's events. It is safe for concurrent use.
type Recorder struct {
	clock clock.Clock

	mu     sync.Mutex
	events History
}

// NewRecorder returns a Recorder that stamps events without a Time with
// c's time (nil: the real clock).
func NewRecorder(c clock.Clock) *Recorder {
	return &Recorder{clock: clock.Or(c)}
}

// Record appends e, setting its Seq (and its Time when zero).
func (r *Recorder) Record(e Event) {
	if e.Time.IsZero() {
		e.Time = r.clock.Now()
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	e.Seq = int64(len(r.events)) + 1
	r.events = append(r.events, e)
}

// Len returns how many events were recorded.
func (r *Recorder) Len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.events)
}

// History returns a copy of the events recorded so far.
func (r *Recorder) History() History {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.events)
}
