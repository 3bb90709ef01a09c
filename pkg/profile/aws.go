package profile

import (
	"context"
	"errors"
	"log/slog"

	"github.com/jobfleet/jobfleet/pkg/config"
	"github.com/jobfleet/jobfleet/pkg/fleet"
)

func openAWS(ctx context.Context, cfg config.Config, log *slog.Logger) (*Backends, error) {
	return nil, errors.New("the aws profile's adapters are not in this build yet")
}

func openECSFleet(ctx context.Context, cfg config.Config, b *Backends, log *slog.Logger) (*fleet.Fleet, error) {
	return nil, errors.New("the aws profile's ECS fleet is not in this build yet")
}
