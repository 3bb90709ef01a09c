//go:build jobfleet_noaws

package profile

import (
	"context"
	"log/slog"

	"github.com/jobfleet/jobfleet/pkg/config"
	"github.com/jobfleet/jobfleet/pkg/fleet"
	"github.com/jobfleet/jobfleet/pkg/metrics"
)

// This binary was built without the aws profile (see the package doc).

// Clients: a binary without the aws profile has no SDK clients
// (Backends.AWSClients returns nil).
type Clients struct{}

const noAWS = "jobfleet_noaws"

func openAWS(context.Context, config.Config, *metrics.Metrics) (*Backends, error) {
	return nil, notBuilt("the aws profile", noAWS)
}

func bootstrapAWS(context.Context, config.Config, *metrics.Metrics, *slog.Logger) error {
	return notBuilt("the aws profile", noAWS)
}

func openECSFleet(context.Context, config.Config, *Backends, *slog.Logger) (*fleet.Fleet, error) {
	return nil, notBuilt("the ECS fleet", noAWS)
}
