//go:build !jobfleet_noaws

package profile

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/jobfleet/jobfleet/pkg/awsconfig"
	"github.com/jobfleet/jobfleet/pkg/blob/s3blob"
	"github.com/jobfleet/jobfleet/pkg/config"
	"github.com/jobfleet/jobfleet/pkg/errcode"
	"github.com/jobfleet/jobfleet/pkg/jobstore/dynamojobstore"
	"github.com/jobfleet/jobfleet/pkg/metrics"
	"github.com/jobfleet/jobfleet/pkg/queue"
	"github.com/jobfleet/jobfleet/pkg/queue/sqsqueue"
)

// Clients are the AWS SDK clients of the aws profile.
type Clients struct {
	Config   aws.Config
	DynamoDB *dynamodb.Client
	SQS      *sqs.Client
	S3       *s3.Client
}

// NewClients returns the SDK clients for cfg, with what custom endpoints
// need: S3 path-style addressing when AWS_ENDPOINT_URL (or an endpoint in
// cfg) points at LocalStack or moto.
func NewClients(cfg aws.Config) *Clients {
	custom := cfg.BaseEndpoint != nil && *cfg.BaseEndpoint != ""
	return &Clients{
		Config:   cfg,
		DynamoDB: dynamodb.NewFromConfig(cfg),
		SQS:      sqs.NewFromConfig(cfg),
		S3:       s3.NewFromConfig(cfg, func(o *s3.Options) { o.UsePathStyle = custom }),
	}
}

// Each SQS long-poll call's wait. A receiver that stops (SIGTERM, idle
// exit) returns within it; an idle receiver makes 60/wait requests a
// minute. A receiver that dies leaves its call open at SQS for the rest of
// the wait, and a message arriving then is lost to everyone until its
// visibility timeout: so the work queue, whose receivers (workers) are the
// ones that die, polls in short calls, and the reaper re-sends a dead
// worker's jobs once more after that window (Backends.OrphanPoll). The
// dispatcher's and reaper's queues use longer calls: fewer requests.
const (
	WorkPollWait  = time.Second
	OtherPollWait = 5 * time.Second
)

func openAWS(ctx context.Context, cfg config.Config, m *metrics.Metrics) (*Backends, error) {
	c, err := awsClients(ctx, m)
	if err != nil {
		return nil, err
	}
	return retryOpen(ctx, func() (*Backends, error) { return OpenAWSWith(ctx, cfg, c) })
}

// openPatience is how long a service keeps trying to open its backends
// when AWS answers with errors worth retrying (the SDK has already retried
// each call): a blip at start-up should not crash-loop a service.
const openPatience = time.Minute

func retryOpen(ctx context.Context, open func() (*Backends, error)) (*Backends, error) {
	deadline := time.Now().Add(openPatience)
	wait := 500 * time.Millisecond
	for {
		b, err := open()
		if err == nil || !errcode.Retryable(err) || time.Now().Add(wait).After(deadline) {
			return b, err
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, err
		case <-t.C:
		}
		wait = min(2*wait, 5*time.Second)
	}
}

func awsClients(ctx context.Context, m *metrics.Metrics) (*Clients, error) {
	awsCfg, err := awsconfig.Load(ctx, m)
	if err != nil {
		return nil, err
	}
	return NewClients(awsCfg), nil
}

// OpenAWSWith opens the aws profile's backends with the given clients (tests
// pass clients pointed at a moto server).
func OpenAWSWith(ctx context.Context, cfg config.Config, c *Clients) (_ *Backends, err error) {
	b := &Backends{Profile: config.ProfileAWS, Resources: map[string]string{}, clients: c, OrphanPoll: WorkPollWait + time.Second}
	defer func() {
		if err != nil {
			_ = b.Close()
		}
	}()
	if ep := c.Config.BaseEndpoint; ep != nil && *ep != "" {
		b.Resources["endpoint"] = *ep
	}
	b.Resources["region"] = c.Config.Region
	b.Store, err = dynamojobstore.Open(ctx, c.DynamoDB, cfg.Table, nil)
	if err != nil {
		return nil, fmt.Errorf("job table %s: %w", cfg.Table, err)
	}
	b.closers = append(b.closers, b.Store.Close)
	b.Resources["store"] = "dynamodb:" + cfg.Table
	for _, q := range []struct {
		name string
		dst  **queue.Queue
		wait time.Duration
	}{
		{cfg.WorkQueue, &b.Work, WorkPollWait}, {cfg.WorkDLQ, &b.WorkDLQ, OtherPollWait},
		{cfg.IngressQueue, &b.Ingress, OtherPollWait}, {cfg.IngressDLQ, &b.IngressDLQ, OtherPollWait},
		{cfg.EventsQueue, &b.Events, OtherPollWait}, {cfg.EventsDLQ, &b.EventsDLQ, OtherPollWait},
	} {
		*q.dst, err = sqsqueue.Open(ctx, c.SQS, q.name, &sqsqueue.Options{PollWait: q.wait})
		if err != nil {
			return nil, fmt.Errorf("queue %s: %w", q.name, err)
		}
		b.closers = append(b.closers, (*q.dst).Close)
	}
	b.Resources["queues"] = "sqs:" + strings.Join([]string{cfg.WorkQueue, cfg.IngressQueue, cfg.EventsQueue}, ",")
	b.Blob, err = s3blob.Open(ctx, c.S3, cfg.Bucket, &s3blob.Options{Prefix: cfg.BlobPrefix})
	if err != nil {
		return nil, fmt.Errorf("bucket %s: %w", cfg.Bucket, err)
	}
	b.closers = append(b.closers, b.Blob.Close)
	b.Resources["blob"] = "s3://" + cfg.Bucket + "/" + cfg.BlobPrefix
	return b, nil
}
