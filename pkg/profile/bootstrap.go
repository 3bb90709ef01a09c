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
// Queues given as URLs are taken to exist and are not created.
func BootstrapAWS(ctx context.Context, cfg config.Config, c *Clients, log *slog.Logger) error {
	if err := dynamojobstore.CreateTable(ctx, c.DynamoDB, cfg.Table, nil); err != nil {
		return fmt.Errorf("create table %s: %w", cfg.Table, err)
	}
	log.Info("table ready", "table", cfg.Table)
	for _, q := range []struct {
		name, dlq   string
		visibility  time.Duration
		maxReceives int
	}{
		{cfg.WorkQueue, cfg.WorkDLQ, cfg.Visibility, cfg.MaxReceives},
		{cfg.IngressQueue, cfg.IngressDLQ, 30 * time.Second, 5},
		{cfg.EventsQueue, cfg.EventsDLQ, time.Minute, 5},
	} {
		if isURL(q.dlq) || isURL(q.name) {
			log.Info("queue given as a URL; not created", "queue", q.name, "dlq", q.dlq)
			continue
		}
		if _, err := sqsqueue.CreateQueue(ctx, c.SQS, q.dlq, sqsqueue.Config{}); err != nil {
			return fmt.Errorf("create queue %s: %w", q.dlq, err)
		}
		url, err := sqsqueue.CreateQueue(ctx, c.SQS, q.name, sqsqueue.Config{Visibility: q.visibility, DeadLetter: q.dlq, MaxReceives: q.maxReceives})
		if err != nil {
			return fmt.Errorf("create queue %s: %w", q.name, err)
		}
		log.Info("queue ready", "queue", url, "dlq", q.dlq, "max_receives", q.maxReceives)
	}
	if err := s3blob.CreateBucket(ctx, c.S3, cfg.Bucket); err != nil {
		return fmt.Errorf("create bucket %s: %w", cfg.Bucket, err)
	}
	log.Info("bucket ready", "bucket", cfg.Bucket)
	return nil
}

func isURL(s string) bool {
	return strings.HasPrefix(s, "https://") || strings.HasPrefix(s, "http://") || path.Base(s) != s
}
