// Package faultjobstore wraps a jobstore.Driver to inject the failures a
// real backend has: calls refused as unavailable (throttling, a network
// blip), single entries of a batch refused while the rest go through, writes
// that land but whose answer is lost (a timeout after the write: the caller
// sees errcode.Unavailable and cannot tell), and slow calls. The simulation
// (package sim) and the worker's tests use it to check that the protocol
// keeps its invariants when the store misbehaves in every way the contract
// allows. (The chaos e2e runs real binaries; on the aws profile its faults
// come from awsconfig's injected request failures.)
//
// Which calls fail is drawn from a math/rand/v2 source: with a seeded source
// and a single-threaded caller, a run is reproducible. Faults can be changed
// at any time (SetFaults), e.g. turned off for a run's quiescent phase.
//
// The wrapper forwards named leases (jobstore.Leaser), with faults, and no
// other optional interface of the wrapped driver (such as the Purge method
// of the local adapters).
package faultjobstore

import (
	"context"
	"time"

	"github.com/jobfleet/jobfleet/pkg/errcode"
	"github.com/jobfleet/jobfleet/pkg/internal/faultdial"
	"github.com/jobfleet/jobfleet/pkg/job"
	"github.com/jobfleet/jobfleet/pkg/jobstore"
)

// Faults says how often each fault happens; each is a fraction in [0, 1].
// The zero value injects nothing.
type Faults struct {
	// Unavailable: calls (any but Close) that fail with errcode.Unavailable
	// before reaching the store; nothing is applied.
	Unavailable float64
	// EntryUnavailable: entries of a Create or Apply that fail alone with
	// errcode.Unavailable and are not applied, while the others of the
	// batch are (as with per-item throttling of batched writes).
	EntryUnavailable float64
	// Ambiguous: Create and Apply calls that are applied and then fail as a
	// whole with errcode.Unavailable, so the caller cannot tell whether
	// they landed.
	Ambiguous float64
	// Slow: calls that wait a random duration up to MaxLatency (through
	// Options.Sleep) before they reach the store.
	Slow       float64
	MaxLatency time.Duration
}

// Stats counts the faults injected so far.
type Stats struct {
	Unavailable, EntryUnavailable, Ambiguous, Slow int
}

// Options configure Wrap: the initial faults, the random source that
// decides which calls are hit, and how a slow call waits (see
// faultdial.Options). Nil options mean defaults.
type Options = faultdial.Options[Faults]

// Driver is a jobstore.Driver that injects faults into the calls it passes
// to the driver it wraps. It is safe for concurrent use (the draws are
// serialized).
//
// Its methods SetFaults(Faults), which replaces the faults injected from
// now on, Faults() Faults, which returns them, and Stats() Stats, which
// returns how many faults were injected so far, come from the embedded
// dial.
type Driver struct {
	dial
	d jobstore.Driver
}

// dial holds the faults, their counts and the random source.
type dial = faultdial.Dial[Faults, Stats]

var _ jobstore.Driver = (*Driver)(nil)

// Wrap returns a Driver injecting faults into calls to d.
func Wrap(d jobstore.Driver, opts *Options) *Driver {
	fd := &Driver{d: d}
	faultdial.Init(&fd.dial, opts)
	return fd
}

// Unwrap returns the wrapped driver.
func (d *Driver) Unwrap() jobstore.Driver { return d.d }

// plan is what happens to one call.
type plan struct {
	latency     time.Duration
	unavailable bool
	ambiguous   bool
	failEntry   []bool // entries refused alone (writes only)
}

// draw decides the faults of a call with n entries (0 for reads).
func (d *Driver) draw(write bool, n int) plan {
	dr := faultdial.Lock(&d.dial)
	defer dr.Unlock()
	f, st := dr.Faults(), dr.Stats()
	var p plan
	if dr.Chance(f.Slow) && f.MaxLatency > 0 {
		p.latency = time.Duration(dr.Int64N(int64(f.MaxLatency))) + 1
		st.Slow++
	}
	if dr.Hit(f.Unavailable, &st.Unavailable) {
		p.unavailable = true
		return p
	}
	if !write {
		return p
	}
	if f.EntryUnavailable > 0 {
		for i := range n {
			if dr.Hit(f.EntryUnavailable, &st.EntryUnavailable) {
				if p.failEntry == nil {
					p.failEntry = make([]bool, n)
				}
				p.failEntry[i] = true
			}
		}
	}
	p.ambiguous = dr.Hit(f.Ambiguous, &st.Ambiguous)
	return p
}

// before waits out a slow call and refuses an unavailable one.
func (d *Driver) before(ctx context.Context, p plan, op string) error {
	if p.latency > 0 {
		if err := faultdial.Wait(ctx, &d.dial, p.latency); err != nil {
			return err
		}
	}
	if p.unavailable {
		return errcode.New(errcode.Unavailable, "%s: job store unavailable (injected)", op)
	}
	return nil
}

func ambiguous(op string) error {
	return errcode.New(errcode.Unavailable, "%s: no answer from the job store; the write may have been applied (injected)", op)
}

func entryUnavailable(op, id string) error {
	return errcode.New(errcode.Unavailable, "%s job %s: throttled (injected)", op, id)
}

// Create passes jobs to the wrapped driver, with faults.
func (d *Driver) Create(ctx context.Context, jobs []*job.Job) ([]jobstore.CreateResult, error) {
	p := d.draw(true, len(jobs))
	if err := d.before(ctx, p, "create jobs"); err != nil {
		return nil, err
	}
	out, err := faultdial.Pass(jobs, p.failEntry, func(pass []*job.Job) ([]jobstore.CreateResult, error) { return d.d.Create(ctx, pass) })
	if err != nil {
		return nil, err
	}
	for i, j := range jobs {
		if p.failEntry != nil && p.failEntry[i] {
			out[i].Err = entryUnavailable("create", j.ID)
		}
	}
	if p.ambiguous {
		return nil, ambiguous("create jobs")
	}
	return out, nil
}

// Apply passes changes to the wrapped driver, with faults.
func (d *Driver) Apply(ctx context.Context, changes []job.Change) ([]jobstore.ChangeResult, error) {
	p := d.draw(true, len(changes))
	if err := d.before(ctx, p, "apply changes"); err != nil {
		return nil, err
	}
	out, err := faultdial.Pass(changes, p.failEntry, func(pass []job.Change) ([]jobstore.ChangeResult, error) { return d.d.Apply(ctx, pass) })
	if err != nil {
		return nil, err
	}
	for i, c := range changes {
		if p.failEntry != nil && p.failEntry[i] {
			out[i].Err = entryUnavailable(string(c.Event), c.ID)
		}
	}
	if p.ambiguous {
		return nil, ambiguous("apply changes")
	}
	return out, nil
}

// Get passes the call to the wrapped driver, with faults.
func (d *Driver) Get(ctx context.Context, id string) (*job.Job, error) {
	if err := d.before(ctx, d.draw(false, 0), "get job "+id); err != nil {
		return nil, err
	}
	return d.d.Get(ctx, id)
}

// Due passes the call to the wrapped driver, with faults.
func (d *Driver) Due(ctx context.Context, status job.Status, before time.Time, limit int) ([]*job.Job, error) {
	if err := d.before(ctx, d.draw(false, 0), "due jobs"); err != nil {
		return nil, err
	}
	return d.d.Due(ctx, status, before, limit)
}

// Owned passes the call to the wrapped driver, with faults.
func (d *Driver) Owned(ctx context.Context, owner string, limit int) ([]*job.Job, error) {
	if err := d.before(ctx, d.draw(false, 0), "owned jobs"); err != nil {
		return nil, err
	}
	return d.d.Owned(ctx, owner, limit)
}

// List passes the call to the wrapped driver, with faults.
func (d *Driver) List(ctx context.Context, q jobstore.ListQuery) (jobstore.Page, error) {
	if err := d.before(ctx, d.draw(false, 0), "list jobs"); err != nil {
		return jobstore.Page{}, err
	}
	return d.d.List(ctx, q)
}

var _ jobstore.Leaser = (*Driver)(nil)

// AcquireLease passes the call to the wrapped driver, with faults (an
// ambiguous failure may have taken the lease). A wrapped driver that keeps
// no leases answers errcode.FailedPrecondition, as jobstore.Store does.
func (d *Driver) AcquireLease(ctx context.Context, name, holder string, now, until time.Time) (bool, error) {
	l, ok := d.d.(jobstore.Leaser)
	if !ok {
		return false, errcode.New(errcode.FailedPrecondition, "lease %q: this job store keeps no leases", name)
	}
	p := d.draw(true, 0)
	if err := d.before(ctx, p, "acquire lease "+name); err != nil {
		return false, err
	}
	held, err := l.AcquireLease(ctx, name, holder, now, until)
	if err == nil && p.ambiguous {
		return false, ambiguous("acquire lease " + name)
	}
	return held, err
}

// ReleaseLease passes the call to the wrapped driver, with faults.
func (d *Driver) ReleaseLease(ctx context.Context, name, holder string) error {
	l, ok := d.d.(jobstore.Leaser)
	if !ok {
		return errcode.New(errcode.FailedPrecondition, "lease %q: this job store keeps no leases", name)
	}
	p := d.draw(true, 0)
	if err := d.before(ctx, p, "release lease "+name); err != nil {
		return err
	}
	err := l.ReleaseLease(ctx, name, holder)
	if err == nil && p.ambiguous {
		return ambiguous("release lease " + name)
	}
	return err
}

// Close closes the wrapped driver.
func (d *Driver) Close() error { return d.d.Close() }
