//go:build jobfleet_noaws

package main

import (
	"context"
	"log/slog"

	"github.com/jobfleet/jobfleet/pkg/config"
	"github.com/jobfleet/jobfleet/pkg/dispatcher"
	"github.com/jobfleet/jobfleet/pkg/profile"
)

// publishBacklog: a binary without the aws profile publishes nothing to
// CloudWatch.
func publishBacklog(context.Context, *profile.Backends, config.Config, *slog.Logger) (func(dispatcher.Decision), func()) {
	return nil, nil
}
