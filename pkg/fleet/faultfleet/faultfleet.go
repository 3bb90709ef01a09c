// Package faultfleet wraps a fleet.Driver to inject what ECS (and the
// network to it) may do within its contract: calls refused as unavailable
// (a server error, a connection reset), calls refused as throttled (ECS's
// ThrottlingException), provisioning that starts only some of the workers
// asked for and reports the others as retryable failures (no capacity, no
// network interface left), and slow calls. A refused call never reaches the
// wrapped driver: nothing starts or stops. It lets a test check that code
// over the fleet (the scaler, the fleet view) copes with such a fleet.
//
// Throttling is errcode.Unavailable, as ecsfleet maps ThrottlingException
// (every adapter in jobfleet maps throttling to Unavailable;
// ResourceExhausted is for quotas and capacity). Throttled calls are counted
// apart from other unavailable ones and say so in their message.
//
// Which calls and workers are hit is drawn from a math/rand/v2 source: with
// a seeded source and a single-threaded caller, a run is reproducible.
// Faults can be changed at any time (SetFaults).
package faultfleet

import (
	"context"
	"time"

	"github.com/jobfleet/jobfleet/pkg/errcode"
	"github.com/jobfleet/jobfleet/pkg/fleet"
	"github.com/jobfleet/jobfleet/pkg/internal/faultdial"
)

// The reasons of the failures NoCapacity reports, as ECS words them in
// RunTask's failures[]; both are retryable.
const (
	ReasonCapacity = "Capacity is unavailable at this time"
	ReasonENI      = "RESOURCE:ENI"
)

// reasons are the failure reasons NoCapacity draws from, in the order its
// failures are reported.
var reasons = [...]string{ReasonCapacity, ReasonENI}

// Faults says how often each fault happens; each is a fraction in [0, 1].
// The zero value injects nothing.
type Faults struct {
	// Unavailable: calls (any but Close) that fail with errcode.Unavailable
	// before reaching the fleet.
	Unavailable float64
	// Throttled: calls (any but Close) that fail before reaching the fleet
	// as ECS refuses a caller going too fast (ThrottlingException, "Rate
	// exceeded"): errcode.Unavailable.
	Throttled float64
	// NoCapacity: workers of a Provision that do not start. The wrapped
	// driver is asked for the others only, and each one refused comes back
	// in a Retryable fleet.Failure with ReasonCapacity or ReasonENI (drawn),
	// one Failure per reason, so started plus failed still add up to what
	// was asked. When every worker is refused, the driver is not called.
	NoCapacity float64
	// Slow: calls (any but Close) that wait a random duration up to
	// MaxLatency (through Options.Sleep) before they go on.
	Slow       float64
	MaxLatency time.Duration
}

// Stats counts the faults injected so far; NotStarted counts workers.
type Stats struct {
	Unavailable, Throttled, NotStarted, Slow int
}

// Options configure Wrap: the initial faults, the random source that
// decides which calls are hit, and how a slow call waits (see
// faultdial.Options). Nil options mean defaults.
type Options = faultdial.Options[Faults]

// Driver is a fleet.Driver that injects faults into the calls it passes to
// the driver it wraps. It is safe for concurrent use (the draws are
// serialized).
//
// Its methods SetFaults(Faults), which replaces the faults injected from
// now on, Faults() Faults, which returns them, and Stats() Stats, which
// returns how many faults were injected so far, come from the embedded
// dial.
type Driver struct {
	dial
	d fleet.Driver
}

// dial holds the faults, their counts and the random source.
type dial = faultdial.Dial[Faults, Stats]

var _ fleet.Driver = (*Driver)(nil)

// Wrap returns a Driver injecting faults into calls to d.
func Wrap(d fleet.Driver, opts *Options) *Driver {
	fd := &Driver{d: d}
	faultdial.Init(&fd.dial, opts)
	return fd
}

// New returns a fleet.Fleet over d wrapped with faults, and the wrapper.
func New(d fleet.Driver, opts *Options) (*fleet.Fleet, *Driver) {
	fd := Wrap(d, opts)
	return fleet.New(fd), fd
}

// Unwrap returns the wrapped driver.
func (d *Driver) Unwrap() fleet.Driver { return d.d }

// plan is what happens to one call.
type plan struct {
	latency                time.Duration
	unavailable, throttled bool
	refused                [len(reasons)]int // workers not started, by reason
}

// draw decides the faults of a call that provisions n workers (0 for the
// other calls).
func (d *Driver) draw(n int) plan {
	dr := faultdial.Lock(&d.dial)
	defer dr.Unlock()
	f, st := dr.Faults(), dr.Stats()
	var p plan
	if f.MaxLatency > 0 && dr.Hit(f.Slow, &st.Slow) {
		p.latency = time.Duration(dr.Int64N(int64(f.MaxLatency))) + 1
	}
	if p.unavailable = dr.Hit(f.Unavailable, &st.Unavailable); p.unavailable {
		return p
	}
	if p.throttled = dr.Hit(f.Throttled, &st.Throttled); p.throttled {
		return p
	}
	for range n {
		if dr.Hit(f.NoCapacity, &st.NotStarted) {
			p.refused[dr.Int64N(int64(len(reasons)))]++
		}
	}
	return p
}

// before waits out a slow call and refuses an unavailable or throttled
// one; op says what the call does.
func (d *Driver) before(ctx context.Context, p plan, op string) error {
	if p.latency > 0 {
		if err := faultdial.Wait(ctx, &d.dial, p.latency); err != nil {
			return err
		}
	}
	switch {
	case p.unavailable:
		return errcode.New(errcode.Unavailable, "%s: fleet unavailable (injected)", op)
	case p.throttled:
		return errcode.New(errcode.Unavailable, "%s: ThrottlingException: Rate exceeded (injected)", op)
	}
	return nil
}

// Provision asks the wrapped driver for the workers no fault refused and
// reports the refused ones as failures.
func (d *Driver) Provision(ctx context.Context, n int) (fleet.Provisioned, error) {
	p := d.draw(n)
	if err := d.before(ctx, p, "provision workers"); err != nil {
		return fleet.Provisioned{}, err
	}
	refused := 0
	for _, k := range p.refused {
		refused += k
	}
	var out fleet.Provisioned
	if refused < n {
		var err error
		if out, err = d.d.Provision(ctx, n-refused); err != nil {
			return out, err
		}
	}
	for i, k := range p.refused {
		if k > 0 {
			out.Failures = append(out.Failures, fleet.Failure{Count: k, Reason: reasons[i], Retryable: true})
		}
	}
	return out, nil
}

// List passes the call to the wrapped driver, with faults.
func (d *Driver) List(ctx context.Context) ([]fleet.Worker, error) {
	if err := d.before(ctx, d.draw(0), "list workers"); err != nil {
		return nil, err
	}
	return d.d.List(ctx)
}

// Stop passes the call to the wrapped driver, with faults.
func (d *Driver) Stop(ctx context.Context, id, reason string) error {
	if err := d.before(ctx, d.draw(0), "stop worker "+id); err != nil {
		return err
	}
	return d.d.Stop(ctx, id, reason)
}

// Close closes the wrapped driver.
func (d *Driver) Close() error { return d.d.Close() }
