package reaper

import (
	"sync"
	"time"

	"github.com/jobfleet/jobfleet/pkg/fleet"
	"github.com/jobfleet/jobfleet/pkg/metrics"
)

// fleetView is the reaper's picture of the fleet, built from state-change
// events: each worker's latest status (by event version, so duplicates and
// late arrivals change nothing), exported as jobfleet_fleet_tasks, and each
// worker's start latency (created → running) as jobfleet_task_start_seconds.
type fleetView struct {
	mu      sync.Mutex
	workers map[string]viewEntry
	m       *metrics.Metrics
}

type viewEntry struct {
	status  string
	version int64
	seen    time.Time
}

// forgetStopped is how long a stopped worker stays in the view (to spot
// duplicates of its events).
const forgetStopped = time.Hour

func newFleetView(m *metrics.Metrics) *fleetView {
	return &fleetView{workers: map[string]viewEntry{}, m: m}
}

// fresh reports whether e is news: not a duplicate of, or older than, an
// event already recorded for that worker.
func (v *fleetView) fresh(e fleet.Event) bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	old, known := v.workers[e.WorkerID]
	return !known || e.Version == 0 || e.Version > old.version
}

// record puts e in the view (call it once e has been handled, so an event
// whose handling failed is not taken for a duplicate when it comes back).
func (v *fleetView) record(e fleet.Event, now time.Time) {
	v.mu.Lock()
	defer v.mu.Unlock()
	old, known := v.workers[e.WorkerID]
	if known && e.Version != 0 && e.Version <= old.version {
		return
	}
	if e.LastStatus == fleet.StatusRunning && old.status != fleet.StatusRunning &&
		!e.CreatedAt.IsZero() && e.StartedAt.After(e.CreatedAt) {
		v.m.TaskStart.Observe(e.StartedAt.Sub(e.CreatedAt).Seconds())
	}
	v.workers[e.WorkerID] = viewEntry{status: e.LastStatus, version: e.Version, seen: now}
	counts := map[string]int{}
	for id, w := range v.workers {
		if w.status == fleet.StatusStopped && now.Sub(w.seen) > forgetStopped {
			delete(v.workers, id)
			continue
		}
		counts[w.status]++
	}
	for _, st := range []string{fleet.StatusProvisioning, fleet.StatusPending, fleet.StatusActivating, fleet.StatusRunning,
		fleet.StatusDeactivating, fleet.StatusStopping, fleet.StatusStopped} {
		v.m.FleetTasks.WithLabelValues(st).Set(float64(counts[st]))
	}
}
