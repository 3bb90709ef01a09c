package dispatcher

import (
	"context"
	"sync"
	"time"

	"github.com/jobfleet/jobfleet/pkg/clock"
	"github.com/jobfleet/jobfleet/pkg/jobstore"
)

// Elector elects one active scaler among dispatcher replicas with a lease
// in the job store (DynamoDB in the aws profile): Leader takes or renews
// the lease and reports whether this replica holds it. A leader renews
// every TTL/3; a replica that stops renewing (crashed, cut off) loses the
// lease after TTL, and another takes over at its next check. Provisioning
// is also safe while two replicas briefly both think they lead: each counts
// the fleet before it provisions, and workers scale in by themselves.
type Elector struct {
	store  *jobstore.Store
	name   string
	holder string
	ttl    time.Duration
	clock  clock.Clock

	mu      sync.Mutex
	leader  bool
	renewed time.Time
}

// NewElector returns an elector for the lease name, held as holder (unique
// per replica), lasting ttl (default 15 s).
func NewElector(store *jobstore.Store, name, holder string, ttl time.Duration, c clock.Clock) *Elector {
	if ttl <= 0 {
		ttl = 15 * time.Second
	}
	return &Elector{store: store, name: name, holder: holder, ttl: ttl, clock: clock.Or(c)}
}

// Leader reports whether this replica holds the lease, taking or renewing
// it when due. An error counts as not leading.
func (e *Elector) Leader(ctx context.Context) (bool, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	now := e.clock.Now()
	if e.leader && now.Sub(e.renewed) < e.ttl/3 {
		return true, nil
	}
	ok, err := e.store.AcquireLease(ctx, e.name, e.holder, now, now.Add(e.ttl))
	if err != nil {
		e.leader = false
		return false, err
	}
	e.leader = ok
	if ok {
		e.renewed = now
	}
	return ok, nil
}

// Resign gives the lease up (on shutdown), so another replica takes over
// at once instead of after the TTL.
func (e *Elector) Resign(ctx context.Context) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.leader = false
	return e.store.ReleaseLease(ctx, e.name, e.holder)
}
