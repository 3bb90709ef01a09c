//go:build !jobfleet_noaws

package profile

import (
	"context"
	"fmt"
	"log/slog"
	"path"
	"strings"
	"time"

	"github.com/jobfleet/jobfleet/pkg/blob/s3blob"
	"github.com/jobfleet/jobfleet/pkg/config"
	"github.com/jobfleet/jobfleet/pkg/jobstore/dynamojobstore"
	"github.com/jobfleet/jobfleet/pkg/metrics"
	"github.com/jobfleet/jobfleet/pkg/queue/sqsqueue"
)

func bootstrapAWS(ctx context.Context, cfg config.Config, m *metrics.Metrics, log *slog.Logger) error {
	c, err := awsClients(ctx, m)
	if err != nil {
		return err
	}
	return BootstrapAWS(ctx, cfg, c, log)
}

// BootstrapAWS creates the aws profile's resources with the given clients.
// A resource given by name is created (or converged); one given as AWS
// names an existing resource, a queue URL or an ARN, is taken to exist and
// left as it is: it may belong to another account, and CreateTable,
// CreateQueue and CreateBucket take names. Each one skipped is logged.
// A queue created by name whose DLQ is given as a URL or ARN gets that
// DLQ as its dead-letter target.
func BootstrapAWS(ctx context.Context, cfg config.Config, c *Clients, log *slog.Logger) error {
	if existing(cfg.Table) {
		log.Info("table given as an ARN; taken to exist, not created", "table", cfg.Table)
	} else {
		if err := dynamojobstore.CreateTable(ctx, c.DynamoDB, cfg.Table, nil); err != nil {
			return fmt.Errorf("create table %s: %w", cfg.Table, err)
		}
		log.Info("table ready", "table", cfg.Table)
	}
	for _, q := range []struct {
		name, dlq   string
		visibility  time.Duration
		maxReceives int
	}{
		{cfg.WorkQueue, cfg.WorkDLQ, cfg.Visibility, cfg.MaxReceives},
		{cfg.IngressQueue, cfg.IngressDLQ, 30 * time.Second, 5},
		{cfg.EventsQueue, cfg.EventsDLQ, time.Minute, 5},
	} {
		if existing(q.dlq) {
			log.Info("queue given as a URL or ARN; taken to exist, not created", "queue", q.dlq)
		} else if _, err := sqsqueue.CreateQueue(ctx, c.SQS, q.dlq, sqsqueue.Config{}); err != nil {
			return fmt.Errorf("create queue %s: %w", q.dlq, err)
		}
		if existing(q.name) {
			log.Info("queue given as a URL or ARN; taken to exist, not created, its redrive policy left as it is", "queue", q.name, "dlq", q.dlq)
			continue
		}
		url, err := sqsqueue.CreateQueue(ctx, c.SQS, q.name, sqsqueue.Config{Visibility: q.visibility, DeadLetter: q.dlq, MaxReceives: q.maxReceives})
		if err != nil {
			return fmt.Errorf("create queue %s: %w", q.name, err)
		}
		log.Info("queue ready", "queue", url, "dlq", q.dlq, "max_receives", q.maxReceives)
	}
	if existing(cfg.Bucket) {
		log.Info("bucket given as an ARN; taken to exist, not created", "bucket", cfg.Bucket)
	} else {
		if err := s3blob.CreateBucket(ctx, c.S3, cfg.Bucket); err != nil {
			return fmt.Errorf("create bucket %s: %w", cfg.Bucket, err)
		}
		log.Info("bucket ready", "bucket", cfg.Bucket)
	}
	return nil
}

// existing reports whether s names a resource as AWS names an existing
// one, a URL or an ARN (or any other form with a '/'), rather than by a
// name to create it by.
func existing(s string) bool {
	return strings.HasPrefix(s, "https://") || strings.HasPrefix(s, "http://") || strings.HasPrefix(s, "arn:") || path.Base(s) != s
}
