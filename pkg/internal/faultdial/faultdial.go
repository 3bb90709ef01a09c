// Package faultdial is what the fault-injecting wrappers (faultjobstore,
// faultqueue, faultblob, faultfleet) share. A Dial is the control a wrapper keeps beside the driver
// it wraps: the faults it injects (F, a struct of probabilities), the counts
// of the faults it has injected (S, a struct of int counters), and the
// math/rand/v2 source that decides each fault, all behind one mutex. Pass
// forwards the entries of a batch that no fault took.
//
// A wrapper embeds a Dial, which gives it SetFaults, Faults and Stats, and
// sets it up with Init. Each call it wraps takes the Dial with Lock, draws
// its faults on the Draw (Hit draws a fault of probability p and counts it)
// and unlocks it. The draws of concurrent calls are serialized, so with a
// seeded source and a single-threaded caller a run is reproducible.
//
// Lock and Init are functions rather than methods so that an embedding
// wrapper exports SetFaults, Faults and Stats and nothing else.
package faultdial

import (
	"context"
	"math/rand/v2"
	"sync"
	"time"
)

// Dial holds a wrapper's faults, its counts, its random source and how it
// waits out an injected latency. Set it up with Init before use; it must
// not be copied after.
type Dial[F, S any] struct {
	mu     sync.Mutex
	rnd    *rand.Rand
	faults F
	stats  S
	sleep  func(ctx context.Context, d time.Duration) error
}

// Options configure a wrapper whose faults are an F. Nil options mean
// defaults.
type Options[F any] struct {
	// Faults are the initial faults (default none).
	Faults F
	// Rand decides which calls (and entries) are hit (default: randomly
	// seeded).
	Rand *rand.Rand
	// Sleep waits d for a slow call; it may return early with ctx's error,
	// which the call then returns. The default (Sleep) waits on a real
	// timer; a simulation passes a function that advances its fake clock.
	Sleep func(ctx context.Context, d time.Duration) error
}

// Init sets d up from o (nil: defaults): its initial faults, the source its
// draws come from and its wait. The counts start at zero.
func Init[F, S any](d *Dial[F, S], o *Options[F]) {
	if o == nil {
		o = &Options[F]{}
	}
	rnd, sleep := o.Rand, o.Sleep
	if rnd == nil {
		rnd = rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))
	}
	if sleep == nil {
		sleep = Sleep
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.rnd, d.faults, d.sleep = rnd, o.Faults, sleep
	var zero S
	d.stats = zero
}

// Wait waits out an injected latency of dur with d's wait.
func Wait[F, S any](ctx context.Context, d *Dial[F, S], dur time.Duration) error {
	return d.sleep(ctx, dur)
}

// SetFaults replaces the faults injected from now on.
func (d *Dial[F, S]) SetFaults(f F) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.faults = f
}

// Faults returns the faults being injected.
func (d *Dial[F, S]) Faults() F {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.faults
}

// Stats returns how many faults were injected so far.
func (d *Dial[F, S]) Stats() S {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.stats
}

// Draw is a Dial held by one call while it draws its faults. Unlock it when
// done; it must not be used after.
type Draw[F, S any] struct{ d *Dial[F, S] }

// Lock waits for d and returns it held for one call's draws.
func Lock[F, S any](d *Dial[F, S]) Draw[F, S] {
	d.mu.Lock()
	return Draw[F, S]{d}
}

// Unlock releases the Dial.
func (dr Draw[F, S]) Unlock() { dr.d.mu.Unlock() }

// Faults returns the faults being injected.
func (dr Draw[F, S]) Faults() F { return dr.d.faults }

// Stats returns the counts, for a call to update.
func (dr Draw[F, S]) Stats() *S { return &dr.d.stats }

// Chance draws whether a fault of probability p happens. A p of 0 or less
// draws nothing from the source, so a fault that is off leaves the sequence
// of the other draws as it was.
func (dr Draw[F, S]) Chance(p float64) bool {
	return p > 0 && dr.d.rnd.Float64() < p
}

// Hit draws whether a fault of probability p happens, as Chance does, and
// counts it in *n (a field of Stats()) when it does.
func (dr Draw[F, S]) Hit(p float64, n *int) bool {
	if !dr.Chance(p) {
		return false
	}
	*n++
	return true
}

// Int64N draws an int64 in [0, n) from the source, e.g. a fault's extent
// (a latency, a delay). It panics if n <= 0.
func (dr Draw[F, S]) Int64N(n int64) int64 { return dr.d.rnd.Int64N(n) }

// Pass forwards the entries of a batch call that no fault took: it calls
// call with the entries skip does not mark (skip[i]; a nil skip marks
// none), in their order, and returns call's results each at the index of its
// entry, with the zero R at a skipped entry's index for the caller to fill
// in. call is not made when every entry is skipped; its error is returned
// alone.
func Pass[E, R any](entries []E, skip []bool, call func([]E) ([]R, error)) ([]R, error) {
	out := make([]R, len(entries))
	var pass []E
	var idx []int
	for i, e := range entries {
		if skip == nil || !skip[i] {
			pass, idx = append(pass, e), append(idx, i)
		}
	}
	if len(pass) == 0 {
		return out, nil
	}
	res, err := call(pass)
	if err != nil {
		return nil, err
	}
	for k, r := range res {
		out[idx[k]] = r
	}
	return out, nil
}

// Sleep is the wrappers' default wait for an injected latency: d, or less
// when ctx ends first (then ctx's error).
func Sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
