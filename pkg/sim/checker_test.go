package sim_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/jobfleet/jobfleet/pkg/invariant"
	"github.com/jobfleet/jobfleet/pkg/job"
	"github.com/jobfleet/jobfleet/pkg/jobstore"
	"github.com/jobfleet/jobfleet/pkg/sim"
)

// The simulation must catch a store that breaks the contract: each broken
// store below makes runs fail with the rule it breaks.

// keylessStore claims no keys: every create with a key succeeds.
type keylessStore struct{ jobstore.Driver }

func (s keylessStore) Create(ctx context.Context, jobs []*job.Job) ([]jobstore.CreateResult, error) {
	stripped := make([]*job.Job, len(jobs))
	for i, j := range jobs {
		c := j.Clone()
		c.Key = ""
		stripped[i] = c
	}
	return s.Driver.Create(ctx, stripped)
}

// unfencedStore applies an owner's finish whatever attempt and owner it
// was fenced on: a stale owner's outcome lands.
type unfencedStore struct{ jobstore.Driver }

func (s unfencedStore) Apply(ctx context.Context, changes []job.Change) ([]jobstore.ChangeResult, error) {
	out := make([]job.Change, len(changes))
	for i, c := range changes {
		if c.Event == job.EventFinish {
			if cur, err := s.Driver.Get(ctx, c.ID); err == nil && cur.Status == job.Running {
				c.If.Attempt, c.If.Owner = cur.Attempt, cur.Owner
			}
		}
		out[i] = c
	}
	return s.Driver.Apply(ctx, out)
}

// rewritingStore lets a late finish overwrite a terminal job.
type rewritingStore struct{ jobstore.Driver }

func (s rewritingStore) Apply(ctx context.Context, changes []job.Change) ([]jobstore.ChangeResult, error) {
	out := make([]job.Change, len(changes))
	for i, c := range changes {
		if c.Event == job.EventFinish {
			if cur, err := s.Driver.Get(ctx, c.ID); err == nil && cur.Status.Terminal() {
				c.If = job.Cond{Status: cur.Status, Attempt: cur.Attempt}
			}
		}
		out[i] = c
	}
	return s.Driver.Apply(ctx, out)
}

// blindStore never reports a job due: the reaper's sweeps find nothing to
// re-send, promote or reclaim.
type blindStore struct{ jobstore.Driver }

func (blindStore) Due(context.Context, job.Status, time.Time, int) ([]*job.Job, error) {
	return nil, nil
}

func TestCheckerCatchesBrokenStores(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		wrap func(jobstore.Driver) jobstore.Driver
		rule invariant.Rule
	}{
		{"NoKeyClaims", func(d jobstore.Driver) jobstore.Driver { return keylessStore{d} }, invariant.Dedup},
		{"UnfencedFinish", func(d jobstore.Driver) jobstore.Driver { return unfencedStore{d} }, invariant.Fencing},
		{"TerminalRewritten", func(d jobstore.Driver) jobstore.Driver { return rewritingStore{d} }, invariant.DoubleTerminal},
		{"NothingDue", func(d jobstore.Driver) jobstore.Driver { return blindStore{d} }, invariant.Lost},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			caught := 0
			for seed := uint64(1); seed <= 40 && caught == 0; seed++ {
				res, err := sim.Run(t.Context(), seed, &sim.Config{Metrics: shared, WrapStore: c.wrap})
				require.NoError(t, err)
				if res.Report.Count(c.rule) > 0 {
					caught++
					require.Error(t, res.Err())
				}
			}
			require.Positive(t, caught, "no run noticed a store breaking %s", c.rule)
		})
	}
}
