//go:build jobfleet_noaws

package profile

import (
	"context"
	"log/slog"

	"github.com/jobfleet/jobfleet/pkg/config"
	"github.com/jobfleet/jobfleet/pkg/metrics"
)

// This binary was built without the aws profile (see the package doc).

// Clients: a binary without the aws profile has no SDK clients
// (Backends.AWSClients returns nil).
type Clients struct{}

const noAWS = "jobfleet_noaws"

func openAWS(context.Context, config.Config, *metrics.Metrics) (*Backends, error) {
	return nil, NotBuilt("the aws profile", noAWS)
}

func bootstrapAWS(context.Context, config.Config, *metrics.Metrics, *slog.Logger) error {
	return NotBuilt("the aws profile", noAWS)
}
