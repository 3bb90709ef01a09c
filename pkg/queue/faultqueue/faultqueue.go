// Package faultqueue wraps a queue.Driver to inject what an SQS standard
// queue (and the network to it) may do within its contract: calls refused as
// unavailable or as throttled, slow calls, entries of a batch that fail
// alone while the others succeed, messages delivered twice (stored twice, as
// two messages with one body), messages delivered late (an extra delay),
// messages that never arrive (reported sent, never stored), deletes and
// visibility changes that are acknowledged but do not happen (the message
// comes back after its visibility timeout, or earlier than its receiver
// asked). The simulation (package sim) uses it to check that the job
// protocol keeps its invariants over such a queue. (The chaos runs of the
// e2e suite run the real binaries, which open real queues: their faults are
// killed processes and, on the aws profile, failed AWS requests injected by
// package awsconfig.)
//
// Throttling is errcode.Unavailable, as sqsqueue maps SQS's
// ThrottlingException and RequestThrottled (every adapter in jobfleet maps
// throttling to Unavailable; ResourceExhausted is for quotas). Throttled
// calls are counted apart from other unavailable ones and say so in their
// message. A failed entry of a batch is errcode.Unavailable too, as
// sqsqueue maps an entry SQS reports failed without blaming the sender.
//
// Which calls and entries are hit is drawn from a math/rand/v2 source: with
// a seeded source and a single-threaded caller, a run is reproducible.
// Faults can be changed at any time (SetFaults).
package faultqueue

import (
	"context"
	"fmt"
	"time"

	"github.com/jobfleet/jobfleet/pkg/errcode"
	"github.com/jobfleet/jobfleet/pkg/internal/faultdial"
	"github.com/jobfleet/jobfleet/pkg/queue"
)

// Faults says how often each fault happens; each is a fraction in [0, 1].
// The zero value injects nothing.
type Faults struct {
	// Unavailable: calls (any but Name and Close) that fail with
	// errcode.Unavailable before reaching the queue; nothing happens.
	Unavailable float64
	// Lose: sent entries reported sent (with an id) but never stored.
	Lose float64
	// Duplicate: sent entries stored twice (the second copy's id is not
	// reported), so the body is delivered twice.
	Duplicate float64
	// Delay: sent entries stored with an extra delay of up to MaxDelay
	// (the total capped at queue.MaxDelay).
	Delay    float64
	MaxDelay time.Duration
	// LoseDelete: deleted handles reported deleted but left alone: the
	// message comes back after its visibility timeout.
	LoseDelete float64
	// LoseVisibility: visibility changes reported done but not made.
	LoseVisibility float64
	// Throttled: calls (any but Name and Close) that fail before reaching
	// the queue as SQS refuses a caller going too fast
	// (ThrottlingException): errcode.Unavailable; nothing happens.
	Throttled float64
	// Slow: calls (any but Name and Close) that wait a random duration up
	// to MaxLatency (through Options.Sleep) before they go on.
	Slow       float64
	MaxLatency time.Duration
	// EntryUnavailable: entries of a Send, Delete or ChangeVisibility that
	// fail alone with errcode.Unavailable and are not passed on (not
	// sent, deleted or changed), while the other entries of the batch are.
	// An entry that fails is not also lost, duplicated or delayed.
	EntryUnavailable float64
}

// Stats counts the faults injected so far.
type Stats struct {
	Unavailable, Lost, Duplicated, Delayed, DeletesLost, VisibilityLost int
	Throttled, Slow, EntryUnavailable                                   int
}

// Options configure Wrap: the initial faults, the random source that
// decides which calls are hit, and how a slow call waits (see
// faultdial.Options). Nil options mean defaults.
type Options = faultdial.Options[Faults]

// Driver is a queue.Driver that injects faults into the calls it passes to
// the driver it wraps. It is safe for concurrent use.
//
// Its methods SetFaults(Faults), which replaces the faults injected from
// now on, Faults() Faults, which returns them, and Stats() Stats, which
// returns how many faults were injected so far, come from the embedded
// dial.
type Driver struct {
	dial
	d queue.Driver
}

// dial holds the faults, their counts and the random source.
type dial = faultdial.Dial[Faults, Stats]

var _ queue.Driver = (*Driver)(nil)

// Wrap returns a Driver injecting faults into calls to d.
func Wrap(d queue.Driver, opts *Options) *Driver {
	fd := &Driver{d: d}
	faultdial.Init(&fd.dial, opts)
	return fd
}

// New returns a queue.Queue over d wrapped with faults, and the wrapper.
func New(d queue.Driver, opts *Options) (*queue.Queue, *Driver) {
	fd := Wrap(d, opts)
	return queue.New(fd), fd
}

// Unwrap returns the wrapped driver.
func (d *Driver) Unwrap() queue.Driver { return d.d }

// before draws a call's faults, waits out a slow call and refuses an
// unavailable or throttled one; op says what the call does.
func (d *Driver) before(ctx context.Context, op string) error {
	var latency time.Duration
	var unavailable, throttled bool
	dr := faultdial.Lock(&d.dial)
	f, st := dr.Faults(), dr.Stats()
	if f.MaxLatency > 0 && dr.Hit(f.Slow, &st.Slow) {
		latency = time.Duration(dr.Int64N(int64(f.MaxLatency))) + 1
	}
	unavailable = dr.Hit(f.Unavailable, &st.Unavailable)
	if !unavailable {
		throttled = dr.Hit(f.Throttled, &st.Throttled)
	}
	dr.Unlock()

	if latency > 0 {
		if err := faultdial.Wait(ctx, &d.dial, latency); err != nil {
			return err
		}
	}
	switch {
	case unavailable:
		return errcode.New(errcode.Unavailable, "%s %s: queue unavailable (injected)", op, d.d.Name())
	case throttled:
		return errcode.New(errcode.Unavailable, "%s %s: ThrottlingException: Rate exceeded (injected)", op, d.d.Name())
	}
	return nil
}

// entryUnavailable is the error of an entry that failed alone.
func (d *Driver) entryUnavailable(op string) error {
	return errcode.New(errcode.Unavailable, "%s %s: batch entry failed: InternalError (injected)", op, d.d.Name())
}

// Name returns the wrapped queue's name.
func (d *Driver) Name() string { return d.d.Name() }

// Close closes the wrapped driver.
func (d *Driver) Close() error { return d.d.Close() }

// fate is what happens to one sent entry.
type fate struct {
	fail, lose, duplicate bool
	n                     int
	extra                 time.Duration
}

// Send passes entries to the wrapped driver: some fail, and some are lost,
// duplicated or delayed.
func (d *Driver) Send(ctx context.Context, entries []queue.SendEntry) ([]queue.SendResult, error) {
	if err := d.before(ctx, "send to"); err != nil {
		return nil, err
	}
	fates := make([]fate, len(entries))
	dr := faultdial.Lock(&d.dial)
	f, st := dr.Faults(), dr.Stats()
	for i := range entries {
		switch {
		case dr.Hit(f.EntryUnavailable, &st.EntryUnavailable):
			fates[i].fail = true
			continue
		case dr.Hit(f.Lose, &st.Lost):
			fates[i].lose, fates[i].n = true, st.Lost // the id reported for it
			continue
		case dr.Hit(f.Duplicate, &st.Duplicated):
			fates[i].duplicate = true
		}
		if f.MaxDelay > 0 && dr.Hit(f.Delay, &st.Delayed) {
			fates[i].extra = queue.Seconds(time.Duration(dr.Int64N(int64(f.MaxDelay))) + 1)
		}
	}
	dr.Unlock()

	out := make([]queue.SendResult, len(entries))
	var pass []queue.SendEntry
	var idx []int // index in entries of each passed entry; -1 for a duplicate copy
	for i, e := range entries {
		if fates[i].fail || fates[i].lose {
			continue
		}
		e.Delay = min(e.Delay+fates[i].extra, queue.MaxDelay)
		pass, idx = append(pass, e), append(idx, i)
		if fates[i].duplicate {
			pass, idx = append(pass, e), append(idx, -1)
		}
	}
	// A duplicate may push the batch past the driver's limit: send in parts.
	for lo := 0; lo < len(pass); lo += queue.MaxBatch {
		hi := min(lo+queue.MaxBatch, len(pass))
		res, err := d.d.Send(ctx, pass[lo:hi])
		if err != nil {
			return nil, err
		}
		for k, r := range res {
			if i := idx[lo+k]; i >= 0 {
				out[i] = r
			}
		}
	}
	for i := range entries {
		switch {
		case fates[i].fail:
			out[i].Err = d.entryUnavailable("send to")
		case fates[i].lose:
			out[i].ID = fmt.Sprintf("lost-%d", fates[i].n)
		}
	}
	return out, nil
}

// Receive passes the call to the wrapped driver.
func (d *Driver) Receive(ctx context.Context, opts queue.ReceiveOptions) ([]*queue.Message, error) {
	if err := d.before(ctx, "receive from"); err != nil {
		return nil, err
	}
	return d.d.Receive(ctx, opts)
}

// ChangeVisibility passes the changes to the wrapped driver; some fail,
// and some are reported done without being made.
func (d *Driver) ChangeVisibility(ctx context.Context, changes []queue.VisibilityChange) ([]error, error) {
	const op = "change visibility in"
	if err := d.before(ctx, op); err != nil {
		return nil, err
	}
	skip, failed := d.drop(len(changes), func(f Faults) float64 { return f.LoseVisibility }, func(s *Stats) *int { return &s.VisibilityLost })
	out, err := faultdial.Pass(changes, skip, func(pass []queue.VisibilityChange) ([]error, error) { return d.d.ChangeVisibility(ctx, pass) })
	return d.fail(op, out, failed), err
}

// Delete passes the handles to the wrapped driver; some fail, and some are
// reported deleted without being deleted.
func (d *Driver) Delete(ctx context.Context, handles []string) ([]error, error) {
	const op = "delete from"
	if err := d.before(ctx, op); err != nil {
		return nil, err
	}
	skip, failed := d.drop(len(handles), func(f Faults) float64 { return f.LoseDelete }, func(s *Stats) *int { return &s.DeletesLost })
	out, err := faultdial.Pass(handles, skip, func(pass []string) ([]error, error) { return d.d.Delete(ctx, pass) })
	return d.fail(op, out, failed), err
}

// drop draws, for n entries, which fail (failed) and which are lost; skip
// marks both, the entries not to pass on. p is the loss's probability and
// count its counter. failed is nil when no entry fails.
func (d *Driver) drop(n int, p func(Faults) float64, count func(*Stats) *int) (skip, failed []bool) {
	dr := faultdial.Lock(&d.dial)
	defer dr.Unlock()
	skip = make([]bool, n)
	f, st := dr.Faults(), dr.Stats()
	prob, dropped := p(f), count(st)
	for i := range skip {
		if dr.Hit(f.EntryUnavailable, &st.EntryUnavailable) {
			if failed == nil {
				failed = make([]bool, n)
			}
			failed[i], skip[i] = true, true
			continue
		}
		skip[i] = dr.Hit(prob, dropped)
	}
	return skip, failed
}

// fail sets the error of each failed entry in a batch call's results; out
// nil (the call failed) stays nil.
func (d *Driver) fail(op string, out []error, failed []bool) []error {
	if out == nil {
		return nil
	}
	for i, f := range failed {
		if f {
			out[i] = d.entryUnavailable(op)
		}
	}
	return out
}

// Depth passes the call to the wrapped driver.
func (d *Driver) Depth(ctx context.Context) (queue.Depth, error) {
	if err := d.before(ctx, "depth of"); err != nil {
		return queue.Depth{}, err
	}
	return d.d.Depth(ctx)
}
