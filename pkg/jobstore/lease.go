package jobstore

import (
	"context"
	"time"

	"github.com/jobfleet/jobfleet/pkg/errcode"
)

// Leaser is implemented by drivers that keep named leases: one holder at a
// time, for electing a single active scaler among dispatcher replicas.
//
// AcquireLease takes the lease name for holder until `until` when it is
// free — never taken, expired (its until is not after now), or already
// held by holder (a renewal) — as one atomic conditional write, and
// reports whether holder holds it now. A lease held by another live holder
// is (false, nil). Times come from the caller's clock, so leases must be
// long compared with the clock skew between replicas.
//
// ReleaseLease gives the lease up if holder holds it; otherwise it does
// nothing.
type Leaser interface {
	AcquireLease(ctx context.Context, name, holder string, now, until time.Time) (bool, error)
	ReleaseLease(ctx context.Context, name, holder string) error
}

// AcquireLease takes or renews a named lease; see Leaser. A driver without
// leases is errcode.FailedPrecondition.
func (s *Store) AcquireLease(ctx context.Context, name, holder string, now, until time.Time) (bool, error) {
	l, err := s.leaser(name, holder)
	if err != nil {
		return false, err
	}
	if !until.After(now) {
		return false, errcode.New(errcode.InvalidArgument, "lease %q: until must be after now", name)
	}
	return l.AcquireLease(ctx, name, holder, now, until)
}

// ReleaseLease gives up a named lease; see Leaser.
func (s *Store) ReleaseLease(ctx context.Context, name, holder string) error {
	l, err := s.leaser(name, holder)
	if err != nil {
		return err
	}
	return l.ReleaseLease(ctx, name, holder)
}

func (s *Store) leaser(name, holder string) (Leaser, error) {
	if err := s.check(); err != nil {
		return nil, err
	}
	if name == "" || holder == "" || len(name) > 200 || len(holder) > 1024 {
		return nil, errcode.New(errcode.InvalidArgument, "lease: name and holder must be non-empty (name ≤ 200, holder ≤ 1024 bytes)")
	}
	l, ok := s.d.(Leaser)
	if !ok {
		return nil, errcode.New(errcode.FailedPrecondition, "lease %q: this job store keeps no leases", name)
	}
	return l, nil
}
