//go:build !jobfleet_nolocal

package profile

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/jobfleet/jobfleet/pkg/blob/fileblob"
	"github.com/jobfleet/jobfleet/pkg/config"
	"github.com/jobfleet/jobfleet/pkg/fleet"
	"github.com/jobfleet/jobfleet/pkg/fleet/procfleet"
	"github.com/jobfleet/jobfleet/pkg/jobstore/sqlitejobstore"
	"github.com/jobfleet/jobfleet/pkg/queue"
	"github.com/jobfleet/jobfleet/pkg/queue/sqlitequeue"
)

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

// OpenLocalFleet opens the local fleet: worker processes on this machine,
// whose state changes go to b's events queue (package fleets opens the
// configured fleet).
func OpenLocalFleet(ctx context.Context, cfg config.Config, b *Backends, log *slog.Logger) (*fleet.Fleet, error) {
	cmd := cfg.WorkerCommand
	if len(cmd) == 0 {
		self, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("local fleet: find the worker binary: %w (set JOBFLEET_WORKER_COMMAND)", err)
		}
		cmd = []string{filepath.Join(filepath.Dir(self), WorkerBinary)}
	}
	if _, err := os.Stat(cmd[0]); err != nil && filepath.IsAbs(cmd[0]) {
		return nil, fmt.Errorf("local fleet: worker command %s: %w (set JOBFLEET_WORKER_COMMAND)", cmd[0], err)
	}
	dataDir := b.dataDir
	if dataDir == "" { // a local fleet beside the aws profile's backends
		var err error
		if dataDir, err = filepath.Abs(cfg.DataDir); err != nil {
			return nil, fmt.Errorf("local fleet: data dir %q: %w", cfg.DataDir, err)
		}
	}
	path := filepath.Join(dataDir, "fleet.db")
	f, err := procfleet.Open(ctx, path, &procfleet.Options{
		Command:     cmd,
		Env:         []string{"JOBFLEET_DATA_DIR=" + dataDir, "JOBFLEET_PROFILE=" + cfg.Profile, "JOBFLEET_FLEET=" + config.FleetLocal},
		Events:      b.Events,
		MaxWorkers:  cfg.MaxWorkers,
		StopTimeout: cfg.StopTimeout,
		Logger:      log,
	})
	if err != nil {
		return nil, err
	}
	b.Resources["fleet"] = "local processes: " + cmd[0] + " (registry " + path + ")"
	return f, nil
}
