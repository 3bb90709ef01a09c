package dispatcher

import (
	"cmp"
	"context"
	"slices"
	"sync"
	"time"

	"github.com/jobfleet/jobfleet/pkg/fleet"
)

// FleetView is the answer to GET /v1/fleet: the workers by state, the
// active ones, the recently stopped ones with why, and the scaler's last
// decision (with why provisioning falls short, while it does).
type FleetView struct {
	// Workers counts the workers by last status (RUNNING, PENDING, ...,
	// STOPPED for the recent stops the backend still reports).
	Workers     map[string]int  `json:"workers"`
	Active      []fleet.Worker  `json:"active"`
	RecentStops []StoppedWorker `json:"recent_stops"`
	Scaler      *ScalerView     `json:"scaler,omitempty"`
}

// StoppedWorker is a stopped worker and the class of its stop reason.
type StoppedWorker struct {
	fleet.Worker
	Class fleet.StopClass `json:"class"`
}

// ScalerView is the scaler's last check.
type ScalerView struct {
	Backlog int64 `json:"backlog"`
	Active  int   `json:"active"`
	Desired int   `json:"desired"`
	// Follower: another dispatcher replica's scaler leads.
	Follower bool `json:"follower,omitempty"`
	// WaitingFor is why provisioning last fell short ("" when it did not):
	// a capacity, ENI or throttling reason the jobs wait out, or one that
	// needs an operator (a bad task definition, missing permissions).
	WaitingFor string `json:"waiting_for,omitempty"`
}

// FleetStatus builds the fleet view from the fleet's listing and, when s is
// not nil, the scaler's last check.
func FleetStatus(ctx context.Context, f *fleet.Fleet, s *Scaler) (*FleetView, error) {
	ws, err := f.List(ctx)
	if err != nil {
		return nil, err
	}
	v := &FleetView{Workers: map[string]int{}, Active: []fleet.Worker{}, RecentStops: []StoppedWorker{}}
	for _, w := range ws {
		v.Workers[w.LastStatus]++
		switch {
		case w.LastStatus == fleet.StatusStopped:
			class := fleet.Classify(fleet.Event{LastStatus: w.LastStatus, DesiredStatus: w.DesiredStatus, StopCode: w.StopCode,
				Reason: w.Reason, ExitCode: w.ExitCode, ContainerReason: w.ContainerReason})
			v.RecentStops = append(v.RecentStops, StoppedWorker{Worker: w, Class: class})
		case w.Active():
			v.Active = append(v.Active, w)
		}
	}
	slices.SortFunc(v.Active, func(a, b fleet.Worker) int { return cmp.Compare(a.ID, b.ID) })
	slices.SortFunc(v.RecentStops, func(a, b StoppedWorker) int { return b.StoppedAt.Compare(a.StoppedAt) })
	if s != nil {
		d, why := s.Last()
		v.Scaler = &ScalerView{Backlog: d.Backlog, Active: d.Active, Desired: d.Desired, Follower: d.Follower, WaitingFor: why}
	}
	return v, nil
}

// CachedFleetStatus returns FleetStatus for f and s that lists the fleet at
// most once per ttl (a listing is one or more ECS calls, which share their
// rate limits with the scaler's own listing); callers within ttl of the
// last listing get its view. Errors are not cached.
func CachedFleetStatus(f *fleet.Fleet, s *Scaler, ttl time.Duration) func(context.Context) (*FleetView, error) {
	var mu sync.Mutex
	var last *FleetView
	var at time.Time
	return func(ctx context.Context) (*FleetView, error) {
		mu.Lock()
		defer mu.Unlock()
		if last != nil && time.Since(at) < ttl {
			return last, nil
		}
		v, err := FleetStatus(ctx, f, s)
		if err != nil {
			return nil, err
		}
		last, at = v, time.Now()
		return v, nil
	}
}
