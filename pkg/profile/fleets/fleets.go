// Package fleets opens the fleet the dispatcher's scaler provisions
// (JOBFLEET_FLEET): local worker processes — their state changes go to the
// events queue, as ECS's would through EventBridge — in either profile, or
// ECS tasks in the aws profile. It is apart from package profile so that
// only the dispatcher links the ECS SDK: a worker or reaper binary is
// smaller, and an idle worker holds about 1 MB less (docs/benchmarks.md,
// Footprint).
package fleets

import (
	"context"
	"log/slog"

	"github.com/jobfleet/jobfleet/pkg/config"
	"github.com/jobfleet/jobfleet/pkg/fleet"
	"github.com/jobfleet/jobfleet/pkg/profile"
)

// Open opens cfg's fleet beside the backends b.
func Open(ctx context.Context, cfg config.Config, b *profile.Backends, log *slog.Logger) (*fleet.Fleet, error) {
	if cfg.Fleet == config.FleetECS {
		return openECS(ctx, cfg, b)
	}
	return profile.OpenLocalFleet(ctx, cfg, b, log)
}
