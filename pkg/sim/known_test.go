package sim_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/jobfleet/jobfleet/pkg/invariant"
	"github.com/jobfleet/jobfleet/pkg/job"
	"github.com/jobfleet/jobfleet/pkg/sim"
)

// Findings of the simulation, fixed, and pinned here so that they stay
// fixed: a seed that shows the situation, and checks that would fail
// without the fix. Each names the regression test of the real component.

// TestRerunTrackedSeed: a job re-queued while its handler still runs may
// start again on the same worker, and then both runs must stay tracked.
// pkg/worker once keyed its running map by job id, so the old run's return
// deleted the new run, which then ran on with no heartbeat (its lease ran
// out under it) and was neither waited for nor handed back by a drain. The
// real worker's regression test is pkg/worker's
// TestRerunOnSameWorkerStaysTracked.
//
// Seed 110 shows it with no fault injected at all: a job with a timeout
// shorter than its handler is reclaimed by the reaper at its deadline and
// re-queued at once; the worker whose handler is still returning (a
// handler takes a moment to notice its context) receives the new message
// and starts the next attempt before the old handler returns. With the
// running map keyed by job id, this seed counts one untracked run.
func TestRerunTrackedSeed(t *testing.T) {
	t.Parallel()
	res, err := sim.Run(t.Context(), 110, &sim.Config{Metrics: shared, NoFaults: true})
	require.NoError(t, err)
	require.NoError(t, res.Err())
	require.False(t, res.Faults.Any())
	require.Equal(t, 1, res.Notes.Overlaps, "seed 110 no longer starts a job again under its running handler: the model "+
		"changed; find another seed with NoFaults and Notes.Overlaps > 0 (and Notes.Untracked > 0 when the model's map is keyed by job id)")
	require.Zero(t, res.Notes.Untracked, "a run left the running map while its handler ran")
	require.Zero(t, res.Notes.ExpiredUnderOwner)
}

// TestStoreOutageSeed: a store outage must not fail healthy jobs. A worker
// that cannot start a job because the store refuses the write gives its
// message back early, and each receive counts toward the work queue's
// dead-letter limit (10 in the services). With a fixed give-back of 2 s,
// as pkg/worker once had, 20 s of outage sent a message to the dead-letter
// queue and the reaper failed its job for good ("work message moved to the
// dead-letter queue after 10 receives without starting"). The give-back
// now doubles with each receive up to the visibility timeout
// (worker.GiveBackDelay); the real worker's regression test is pkg/worker's
// TestStoreOutageGivesMessagesBackLater.
//
// Seed 798 runs on the services' queue settings, with no clock skew and no
// crash: the store is down for 44 s, and workers give messages back while
// it is; no job is dead-lettered. With a fixed give-back of 2 s this seed
// dead-letters two jobs that never ran.
func TestStoreOutageSeed(t *testing.T) {
	t.Parallel()
	res, err := sim.Run(t.Context(), 798, &sim.Config{Metrics: shared})
	require.NoError(t, err)
	require.NoError(t, res.Err())
	require.True(t, res.Settled)
	const why = "seed 798 no longer shows a long outage on the services' settings: the model changed; find another seed"
	require.Equal(t, 10, res.MaxReceives, why)
	require.Zero(t, res.Faults.Crashes, why)
	require.Zero(t, res.Faults.Skewed, why)
	require.GreaterOrEqual(t, res.Faults.LongestStoreOutage, 40*time.Second, why)
	require.GreaterOrEqual(t, res.Notes.MaxGiveBackReceives, 4, why)
	for _, e := range res.History {
		if e.Kind == invariant.Write && e.Accepted {
			require.NotEqual(t, job.EventDeadLetter, e.Event, "job %s dead-lettered: %s", e.Job, e.Reason)
		}
	}
}
