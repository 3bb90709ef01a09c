// Package faultblob wraps a blob.Driver to inject what S3 (and the network
// to it) may do within its contract: calls refused as unavailable (a server
// error, a connection reset), calls refused as throttled (S3's 503
// SlowDown), and slow calls. A refused call never reaches the wrapped
// driver: nothing is stored or deleted, and a Put reads nothing of its
// reader. It lets a test check that code over the blob store copes with
// such a store.
//
// Throttling is errcode.Unavailable, as s3blob maps SlowDown (every adapter
// in jobfleet maps throttling to Unavailable; ResourceExhausted is for
// quotas and capacity). Throttled calls are counted apart from other
// unavailable ones and say so in their message.
//
// Which calls are hit is drawn from a math/rand/v2 source: with a seeded
// source and a single-threaded caller, a run is reproducible. Faults can be
// changed at any time (SetFaults).
package faultblob

import (
	"context"
	"io"
	"time"

	"github.com/jobfleet/jobfleet/pkg/blob"
	"github.com/jobfleet/jobfleet/pkg/errcode"
	"github.com/jobfleet/jobfleet/pkg/internal/faultdial"
)

// Faults says how often each fault happens; each is a fraction in [0, 1].
// The zero value injects nothing.
type Faults struct {
	// Unavailable: calls (any but Close) that fail with errcode.Unavailable
	// before reaching the store.
	Unavailable float64
	// Throttled: calls (any but Close) that fail before reaching the store
	// as S3 refuses a caller going too fast (SlowDown): errcode.Unavailable.
	Throttled float64
	// Slow: calls (any but Close) that wait a random duration up to
	// MaxLatency (through Options.Sleep) before they go on.
	Slow       float64
	MaxLatency time.Duration
}

// Stats counts the faults injected so far.
type Stats struct {
	Unavailable, Throttled, Slow int
}

// Options configure Wrap: the initial faults, the random source that
// decides which calls are hit, and how a slow call waits (see
// faultdial.Options). Nil options mean defaults.
type Options = faultdial.Options[Faults]

// Driver is a blob.Driver that injects faults into the calls it passes to
// the driver it wraps. It is safe for concurrent use (the draws are
// serialized).
//
// Its methods SetFaults(Faults), which replaces the faults injected from
// now on, Faults() Faults, which returns them, and Stats() Stats, which
// returns how many faults were injected so far, come from the embedded
// dial.
type Driver struct {
	dial
	d blob.Driver
}

// dial holds the faults, their counts and the random source.
type dial = faultdial.Dial[Faults, Stats]

var _ blob.Driver = (*Driver)(nil)

// Wrap returns a Driver injecting faults into calls to d.
func Wrap(d blob.Driver, opts *Options) *Driver {
	fd := &Driver{d: d}
	faultdial.Init(&fd.dial, opts)
	return fd
}

// New returns a blob.Bucket over d wrapped with faults, and the wrapper.
func New(d blob.Driver, opts *Options) (*blob.Bucket, *Driver) {
	fd := Wrap(d, opts)
	return blob.New(fd), fd
}

// Unwrap returns the wrapped driver.
func (d *Driver) Unwrap() blob.Driver { return d.d }

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
		return errcode.New(errcode.Unavailable, "%s: blob store unavailable (injected)", op)
	case throttled:
		return errcode.New(errcode.Unavailable, "%s: SlowDown: throttled, reduce the request rate (injected)", op)
	}
	return nil
}

// Put passes the call to the wrapped driver, with faults.
func (d *Driver) Put(ctx context.Context, key string, r io.Reader, opts blob.PutOptions) (blob.Attrs, error) {
	if err := d.before(ctx, "put blob "+key); err != nil {
		return blob.Attrs{}, err
	}
	return d.d.Put(ctx, key, r, opts)
}

// Get passes the call to the wrapped driver, with faults.
func (d *Driver) Get(ctx context.Context, key string, rng blob.Range) (io.ReadCloser, blob.Attrs, error) {
	if err := d.before(ctx, "get blob "+key); err != nil {
		return nil, blob.Attrs{}, err
	}
	return d.d.Get(ctx, key, rng)
}

// Head passes the call to the wrapped driver, with faults.
func (d *Driver) Head(ctx context.Context, key string) (blob.Attrs, error) {
	if err := d.before(ctx, "head blob "+key); err != nil {
		return blob.Attrs{}, err
	}
	return d.d.Head(ctx, key)
}

// Delete passes the call to the wrapped driver, with faults.
func (d *Driver) Delete(ctx context.Context, key string) error {
	if err := d.before(ctx, "delete blob "+key); err != nil {
		return err
	}
	return d.d.Delete(ctx, key)
}

// List passes the call to the wrapped driver, with faults.
func (d *Driver) List(ctx context.Context, prefix, cursor string, limit int) (blob.ListPage, error) {
	if err := d.before(ctx, "list blobs"); err != nil {
		return blob.ListPage{}, err
	}
	return d.d.List(ctx, prefix, cursor, limit)
}

// Close closes the wrapped driver.
func (d *Driver) Close() error { return d.d.Close() }
