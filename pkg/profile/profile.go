// Package profile opens the backends of a configured profile: the job
// store, the queues, the blob store and (for the dispatcher) the fleet.
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
package profile

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"time"

	"github.com/jobfleet/jobfleet/pkg/blob"
	"github.com/jobfleet/jobfleet/pkg/blob/fileblob"
	"github.com/jobfleet/jobfleet/pkg/config"
	"github.com/jobfleet/jobfleet/pkg/jobstore"
	"github.com/jobfleet/jobfleet/pkg/jobstore/sqlitejobstore"
	"github.com/jobfleet/jobfleet/pkg/metrics"
	"github.com/jobfleet/jobfleet/pkg/queue"
	"github.com/jobfleet/jobfleet/pkg/queue/sqlitequeue"
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

// queueConfigs are the local queues, DLQs first (a redrive target must
// exist before its source).
func queueConfigs(cfg config.Config) []struct {
	name string
	c    sqlitequeue.Config
} {
	return []struct {
		name string
		c    sqlitequeue.Config
	}{
		{WorkQueue + DLQSuffix, sqlitequeue.Config{}},
		{IngressQueue + DLQSuffix, sqlitequeue.Config{}},
		{EventsQueue + DLQSuffix, sqlitequeue.Config{}},
		{WorkQueue, sqlitequeue.Config{Visibility: cfg.Visibility, DeadLetter: WorkQueue + DLQSuffix, MaxReceives: cfg.MaxReceives}},
		{IngressQueue, sqlitequeue.Config{Visibility: 30 * time.Second, DeadLetter: IngressQueue + DLQSuffix, MaxReceives: 5}},
		{EventsQueue, sqlitequeue.Config{Visibility: time.Minute, DeadLetter: EventsQueue + DLQSuffix, MaxReceives: 5}},
	}
}

func openLocal(ctx context.Context, cfg config.Config) (_ *Backends, err error) {
	dir, err := filepath.Abs(cfg.DataDir)
	if err != nil {
		return nil, fmt.Errorf("data dir %q: %w", cfg.DataDir, err)
	}
	b := &Backends{Profile: config.ProfileLocal, dataDir: dir, Resources: map[string]string{}}
	defer func() {
		if err != nil {
			_ = b.Close()
		}
	}()
	jobsPath := filepath.Join(dir, "jobs.db")
	b.Store, err = sqlitejobstore.Open(ctx, jobsPath, nil)
	if err != nil {
		return nil, err
	}
	b.closers = append(b.closers, b.Store.Close)
	b.Resources["store"] = "sqlite:" + jobsPath

	queuePath := filepath.Join(dir, "queue.db")
	qdb, err := sqlitequeue.OpenDB(ctx, queuePath, nil)
	if err != nil {
		return nil, err
	}
	b.closers = append(b.closers, qdb.Close)
	b.Resources["queues"] = "sqlite:" + queuePath
	for _, q := range queueConfigs(cfg) {
		if err := qdb.CreateQueue(ctx, q.name, q.c); err != nil {
			return nil, fmt.Errorf("create queue %s: %w", q.name, err)
		}
	}
	for name, dst := range map[string]**queue.Queue{
		WorkQueue: &b.Work, WorkQueue + DLQSuffix: &b.WorkDLQ,
		IngressQueue: &b.Ingress, IngressQueue + DLQSuffix: &b.IngressDLQ,
		EventsQueue: &b.Events, EventsQueue + DLQSuffix: &b.EventsDLQ,
	} {
		if *dst, err = qdb.Open(ctx, name); err != nil {
			return nil, fmt.Errorf("open queue %s: %w", name, err)
		}
	}
	blobDir := filepath.Join(dir, "blobs")
	b.Blob, err = fileblob.Open(blobDir, nil)
	if err != nil {
		return nil, err
	}
	b.closers = append(b.closers, b.Blob.Close)
	b.Resources["blob"] = "dir:" + blobDir
	return b, nil
}
