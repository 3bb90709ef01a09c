//go:build jobfleet_nolocal

package profile

import (
	"context"
	"log/slog"

	"github.com/jobfleet/jobfleet/pkg/config"
	"github.com/jobfleet/jobfleet/pkg/fleet"
)

// This binary was built without the local profile and the local fleet (see
// the package doc).

const noLocal = "jobfleet_nolocal"

func openLocal(context.Context, config.Config) (*Backends, error) {
	return nil, NotBuilt("the local profile", noLocal)
}

// OpenLocalFleet: not in this binary.
func OpenLocalFleet(context.Context, config.Config, *Backends, *slog.Logger) (*fleet.Fleet, error) {
	return nil, NotBuilt("the local fleet", noLocal)
}
