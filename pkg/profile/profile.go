// Package profile opens the backends of a configured profile: the job
// store, the queues and the blob store (the dispatcher's fleet: package fleets).
// Only configuration differs between profiles; the cores get the same
// portable types either way.
//
// The local profile keeps everything under JOBFLEET_DATA_DIR:
//
//	jobs.db    job store (SQLite, WAL, synchronous=FULL)
//	queue.db   queues work, ingress, events and their -dlq queues
//	blobs/     blob store (payloads, results, logs)
//	fleet.db   the local fleet's registry of worker processes
//
// Several processes (dispatcher, workers, reaper) open the same files.
//
// # Slim binaries
//
// A default build holds both profiles. Two build tags leave one out, for a
// smaller binary and a smaller resident footprint (docs/benchmarks.md,
// Footprint): -tags jobfleet_noaws drops the AWS SDK (the local profile
// only), -tags jobfleet_nolocal drops SQLite (the aws profile with the ECS
// fleet only: no local profile, no local fleet). A binary asked for a
// profile or fleet it was built without says so when it opens it. A third
// tag, jobfleet_ecs, trims the aws profile itself: the AWS configuration
// comes from the environment and the task's role only, without the SDK's
// config package (package awsconfig, The ECS build). The images for ECS
// are built with -tags jobfleet_nolocal,jobfleet_ecs.
package profile

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/jobfleet/jobfleet/pkg/blob"
	"github.com/jobfleet/jobfleet/pkg/config"
	"github.com/jobfleet/jobfleet/pkg/jobstore"
	"github.com/jobfleet/jobfleet/pkg/metrics"
	"github.com/jobfleet/jobfleet/pkg/queue"
)

// Queue names (the aws profile adds its resource prefix).
const (
	WorkQueue    = "work"
	IngressQueue = "ingress"
	EventsQueue  = "events"
	DLQSuffix    = "-dlq"
)

// Backends are a profile's open adapters.
type Backends struct {
	Profile                                               string
	Store                                                 *jobstore.Store
	Work, WorkDLQ, Ingress, IngressDLQ, Events, EventsDLQ *queue.Queue
	Blob                                                  *blob.Bucket
	// Resources names what each backend is, for the startup log.
	Resources map[string]string
	// OrphanPoll is how long a dead receiver's long poll may stay open at
	// the queue service (see reaper.Options.OrphanPoll); 0 for the local
	// queue, which claims messages in the receiving process.
	OrphanPoll time.Duration

	dataDir string
	clients *Clients
	closers []func() error
}

// AWSClients returns the backends' SDK clients (nil in the local profile).
func (b *Backends) AWSClients() *Clients { return b.clients }

// DataDir is the local profile's data directory (absolute), "" otherwise.
func (b *Backends) DataDir() string { return b.dataDir }

// Close closes every backend.
func (b *Backends) Close() error {
	var errs []error
	for i := len(b.closers) - 1; i >= 0; i-- {
		errs = append(errs, b.closers[i]())
	}
	return errors.Join(errs...)
}

// LogAttrs returns the resolved profile and resources as log attributes.
func (b *Backends) LogAttrs() []any {
	attrs := []any{"profile", b.Profile}
	for k, v := range b.Resources {
		attrs = append(attrs, k, v)
	}
	return attrs
}

// Open opens the backends of cfg's profile. AWS requests are counted in m.
func Open(ctx context.Context, cfg config.Config, m *metrics.Metrics) (*Backends, error) {
	switch cfg.Profile {
	case config.ProfileLocal:
		return openLocal(ctx, cfg)
	case config.ProfileAWS:
		return openAWS(ctx, cfg, m)
	}
	return nil, fmt.Errorf("unknown profile %q", cfg.Profile)
}

// Bootstrap creates every resource of cfg's profile, idempotently: in the
// aws profile the job table (with its indexes and TTL), the six queues
// (each DLQ first, then its source with the redrive policy) and the bucket,
// on whatever endpoint the SDK is configured for (AWS_ENDPOINT_URL for
// LocalStack or moto). The local profile's files are created on open, so
// there it only opens and closes them. Routing ECS task state change events
// to the events queue (an EventBridge rule) is infrastructure: see
// infra/cloudformation.
func Bootstrap(ctx context.Context, cfg config.Config, m *metrics.Metrics, log *slog.Logger) error {
	if cfg.Profile == config.ProfileAWS {
		return bootstrapAWS(ctx, cfg, m, log)
	}
	b, err := Open(ctx, cfg, m)
	if err != nil {
		return err
	}
	log.Info("bootstrapped", b.LogAttrs()...)
	return b.Close()
}
