//go:build !jobfleet_noaws

package main

import (
	"context"
	"log/slog"

	"github.com/jobfleet/jobfleet/pkg/config"
	"github.com/jobfleet/jobfleet/pkg/cwmetrics"
	"github.com/jobfleet/jobfleet/pkg/dispatcher"
	"github.com/jobfleet/jobfleet/pkg/profile"
)

// publishBacklog publishes the scaler's backlog per worker to CloudWatch,
// for users who prefer ECS service auto scaling, when the profile is aws. It
// returns the scaler's decision hook and what stops the publisher, or nil.
func publishBacklog(ctx context.Context, b *profile.Backends, cfg config.Config, log *slog.Logger) (func(dispatcher.Decision), func()) {
	c := b.AWSClients()
	if c == nil {
		return nil, nil
	}
	pub := cwmetrics.New(cwmetrics.NewClient(c.Config), cfg.ResourcePrefix, 0, log)
	pub.Start(ctx)
	return func(d dispatcher.Decision) {
		pub.Observe(cwmetrics.Sample{Backlog: int(d.Backlog), Active: d.Active, Desired: d.Desired})
	}, pub.Stop
}
