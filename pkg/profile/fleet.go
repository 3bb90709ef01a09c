package profile

import (
	"context"
	"log/slog"

	"github.com/jobfleet/jobfleet/pkg/config"
	"github.com/jobfleet/jobfleet/pkg/fleet"
)

// WorkerBinary is the stock worker's file name; the local fleet runs it from
// beside the dispatcher's own binary unless JOBFLEET_WORKER_COMMAND says
// otherwise.
const WorkerBinary = "jobfleet-worker"

// OpenFleet opens the fleet the dispatcher's scaler provisions
// (JOBFLEET_FLEET): local worker processes — their state changes go to the
// events queue, as ECS's would through EventBridge — in either profile, or
// ECS tasks in the aws profile.
func OpenFleet(ctx context.Context, cfg config.Config, b *Backends, log *slog.Logger) (*fleet.Fleet, error) {
	if cfg.Fleet == config.FleetECS {
		return openECSFleet(ctx, cfg, b, log)
	}
	return openLocalFleet(ctx, cfg, b, log)
}
