package profile

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/jobfleet/jobfleet/pkg/config"
	"github.com/jobfleet/jobfleet/pkg/fleet"
	"github.com/jobfleet/jobfleet/pkg/fleet/procfleet"
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
	cmd := cfg.WorkerCommand
	if len(cmd) == 0 {
		self, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("local fleet: find the worker binary: %w (set JOBFLEET_WORKER_COMMAND)", err)
		}
		cmd = []string{filepath.Join(filepath.Dir(self), WorkerBinary)}
	}
	if _, err := os.Stat(cmd[0]); err != nil && filepath.IsAbs(cmd[0]) {
		return nil, fmt.Errorf("local fleet: worker command %s: %w (set JOBFLEET_WORKER_COMMAND)", cmd[0], err)
	}
	dataDir := b.dataDir
	if dataDir == "" { // a local fleet beside the aws profile's backends
		var err error
		if dataDir, err = filepath.Abs(cfg.DataDir); err != nil {
			return nil, fmt.Errorf("local fleet: data dir %q: %w", cfg.DataDir, err)
		}
	}
	path := filepath.Join(dataDir, "fleet.db")
	f, err := procfleet.Open(ctx, path, &procfleet.Options{
		Command:     cmd,
		Env:         []string{"JOBFLEET_DATA_DIR=" + dataDir, "JOBFLEET_PROFILE=" + cfg.Profile, "JOBFLEET_FLEET=" + config.FleetLocal},
		Events:      b.Events,
		MaxWorkers:  cfg.MaxWorkers,
		StopTimeout: cfg.StopTimeout,
		Logger:      log,
	})
	if err != nil {
		return nil, err
	}
	b.Resources["fleet"] = "local processes: " + cmd[0] + " (registry " + path + ")"
	return f, nil
}
