// Command jobfleet-dispatcher is the front door: the HTTP API and the
// ingress queue consumer for producers, and the scaler that provisions workers for the backlog (local worker
// processes in the local profile, ECS tasks in the aws profile). It listens
// on JOBFLEET_HTTP_ADDR (default 127.0.0.1:8080) and refuses to listen
// beyond loopback without JOBFLEET_API_TOKENS.
//
// On SIGTERM or SIGINT it drops readiness, finishes requests in flight,
// stops scaling and stops the local workers it started (they drain).
//
// `jobfleet-dispatcher bootstrap` creates the profile's resources
// (idempotently) and exits: in the aws profile the DynamoDB table, the SQS
// queues with their dead-letter queues, and the S3 bucket, on the endpoint
// the SDK is configured for (AWS_ENDPOINT_URL for LocalStack or moto).
package main

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/jobfleet/jobfleet/pkg/config"
	"github.com/jobfleet/jobfleet/pkg/daemon"
	"github.com/jobfleet/jobfleet/pkg/dispatcher"
	"github.com/jobfleet/jobfleet/pkg/fleet"
	"github.com/jobfleet/jobfleet/pkg/handlers"
	"github.com/jobfleet/jobfleet/pkg/job"
	"github.com/jobfleet/jobfleet/pkg/metrics"
	"github.com/jobfleet/jobfleet/pkg/profile"
	"github.com/jobfleet/jobfleet/pkg/profile/fleets"
)

func main() {
	if err := run(context.Background(), os.Args, os.Getenv); err != nil {
		fmt.Fprintln(os.Stderr, "jobfleet-dispatcher:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, getenv func(string) string) error {
	cfg, err := config.Load(getenv)
	if err != nil {
		return fmt.Errorf("configuration:\n%w", err)
	}
	switch {
	case len(args) == 2 && args[1] == "bootstrap":
		return profile.Bootstrap(ctx, cfg, metrics.New(), daemon.Logger("bootstrap", cfg.LogLevel))
	case len(args) > 1:
		return fmt.Errorf("usage: %s [bootstrap]", args[0])
	}
	if err := dispatcher.CheckExposure(cfg.HTTPAddr, cfg.APITokens); err != nil {
		return err
	}
	log := daemon.Logger("dispatcher", cfg.LogLevel)
	soft, _, stop := daemon.Signals(ctx)
	defer stop()
	m := metrics.New()
	b, err := profile.Open(soft, cfg, m)
	if err != nil {
		return err
	}
	defer b.Close()
	fl, err := fleets.Open(soft, cfg, b, log)
	if err != nil {
		return err
	}
	defer fl.Close()

	host, _ := os.Hostname()
	replica := fleet.LocalID(host, os.Getpid()) + "/" + job.NewID(time.Now())
	scalerOpts := &dispatcher.ScalerOptions{
		PerWorker: cfg.Concurrency, Min: cfg.MinWorkers, Max: cfg.MaxWorkers,
		Interval: cfg.ScaleInterval, Logger: log, Metrics: m,
		Elector: dispatcher.NewElector(b.Store, "scaler", replica, 0, nil),
		Store:   b.Store, Policy: cfg.Policy(),
	}
	if observe, stop := publishBacklog(soft, b, cfg, log); observe != nil {
		defer stop()
		scalerOpts.OnDecision = observe
	}
	scaler := dispatcher.NewScaler(fl, b.Work, scalerOpts)
	svc := dispatcher.NewService(b.Store, b.Work, b.Blob, &dispatcher.Options{
		Policy: cfg.Policy(), Limits: cfg.Limits(), Payloads: handlers.Validator(),
		InlineLimit: cfg.InlineLimit, Logger: log, Metrics: m, OnEnqueue: scaler.Wake,
		GroupCommit: cfg.Profile == config.ProfileLocal,
	})
	api := dispatcher.NewAPI(svc, &dispatcher.APIOptions{Tokens: cfg.APITokens, MaxInFlight: cfg.MaxInFlight, Logger: log,
		Fleet: dispatcher.CachedFleetStatus(fl, scaler, time.Second)})
	srv, err := daemon.Listen(cfg.HTTPAddr, api, dispatcher.NewServer(cfg.HTTPAddr, api))
	if err != nil {
		return err
	}
	if err := scaler.Start(soft); err != nil {
		return err
	}
	ingress := dispatcher.NewIngress(svc, b.Ingress, &dispatcher.IngressOptions{DLQ: b.IngressDLQ, Logger: log, Metrics: m})
	if err := ingress.Start(soft); err != nil {
		return err
	}
	api.SetReady(true)
	log.Info("dispatcher ready", append([]any{"addr", srv.Addr(), "auth", len(cfg.APITokens) > 0,
		"min_workers", cfg.MinWorkers, "max_workers", cfg.MaxWorkers}, b.LogAttrs()...)...)

	<-soft.Done()
	log.Info("signal received: shutting down")
	api.SetReady(false)
	err = srv.Shutdown(10 * time.Second)
	ingress.Stop()
	scaler.Stop()
	return err
}
