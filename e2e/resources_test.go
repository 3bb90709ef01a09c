package e2e

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/jobfleet/jobfleet/pkg/awstest"
	"github.com/jobfleet/jobfleet/pkg/config"
)

// testPrefix is the start of every aws-profile test's resource prefix:
// JOBFLEET_RESOURCE_PREFIX from the environment (for a shared account or
// LocalStack), else "e2e". Each test adds its own suffix.
func testPrefix() string {
	if p := os.Getenv("JOBFLEET_RESOURCE_PREFIX"); p != "" {
		return p
	}
	return "e2e"
}

// deleteResources removes what bootstrap created for prefix on an endpoint
// the suite did not start (LocalStack, AWS): the table, the six queues and
// the bucket with its objects. Best effort: a failure is logged, not fatal.
func deleteResources(t *testing.T, prefix string) {
	cfg, err := config.Load(func(name string) string {
		switch name {
		case "JOBFLEET_PROFILE":
			return config.ProfileAWS
		case "JOBFLEET_RESOURCE_PREFIX":
			return prefix
		case "JOBFLEET_ECS_SUBNETS":
			return "unused"
		}
		return ""
	})
	if err != nil {
		t.Logf("delete resources of %s: %v", prefix, err)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	awsCfg := awstest.Config(t)
	logErr := func(what string, err error) {
		if err != nil {
			t.Logf("delete %s: %v", what, err)
		}
	}
	_, err = dynamodb.NewFromConfig(awsCfg).DeleteTable(ctx, &dynamodb.DeleteTableInput{TableName: aws.String(cfg.Table)})
	logErr(cfg.Table, err)
	q := sqs.NewFromConfig(awsCfg)
	for _, name := range []string{cfg.WorkQueue, cfg.WorkDLQ, cfg.IngressQueue, cfg.IngressDLQ, cfg.EventsQueue, cfg.EventsDLQ} {
		url, err := q.GetQueueUrl(ctx, &sqs.GetQueueUrlInput{QueueName: aws.String(name)})
		if err != nil {
			logErr(name, err)
			continue
		}
		_, err = q.DeleteQueue(ctx, &sqs.DeleteQueueInput{QueueUrl: url.QueueUrl})
		logErr(name, err)
	}
	b := s3.NewFromConfig(awsCfg, func(o *s3.Options) { o.UsePathStyle = os.Getenv(awstest.EndpointEnv) != "" })
	pages := s3.NewListObjectsV2Paginator(b, &s3.ListObjectsV2Input{Bucket: aws.String(cfg.Bucket)})
	for pages.HasMorePages() {
		page, err := pages.NextPage(ctx)
		if err != nil {
			logErr(cfg.Bucket, err)
			break
		}
		var ids []s3types.ObjectIdentifier
		for _, o := range page.Contents {
			ids = append(ids, s3types.ObjectIdentifier{Key: o.Key})
		}
		if len(ids) > 0 {
			_, err = b.DeleteObjects(ctx, &s3.DeleteObjectsInput{Bucket: aws.String(cfg.Bucket), Delete: &s3types.Delete{Objects: ids}})
			logErr(cfg.Bucket+" objects", err)
		}
	}
	_, err = b.DeleteBucket(ctx, &s3.DeleteBucketInput{Bucket: aws.String(cfg.Bucket)})
	logErr(cfg.Bucket, err)
}
