//go:build jobfleet_noaws

package fleets

import (
	"context"

	"github.com/jobfleet/jobfleet/pkg/config"
	"github.com/jobfleet/jobfleet/pkg/fleet"
	"github.com/jobfleet/jobfleet/pkg/profile"
)

func openECS(context.Context, config.Config, *profile.Backends) (*fleet.Fleet, error) {
	return nil, profile.NotBuilt("the ECS fleet", "jobfleet_noaws")
}
