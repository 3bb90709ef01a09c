package awsconfig_test

import (
	"context"
	"os"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/smithy-go/middleware"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"github.com/jobfleet/jobfleet/pkg/awsconfig"
	"github.com/jobfleet/jobfleet/pkg/awstest"
	"github.com/jobfleet/jobfleet/pkg/metrics"
)

func TestMain(m *testing.M) { os.Exit(awstest.Main(m)) }

func TestInstrumentCountsEveryRequest(t *testing.T) {
	t.Parallel()
	m := metrics.New()
	cfg := awstest.Config(t, config.WithAPIOptions([]func(*middleware.Stack) error{awsconfig.Instrument(m)}))
	c := sqs.NewFromConfig(cfg)
	ctx := context.Background()
	name := awstest.Name(t)
	out, err := c.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String(name)})
	require.NoError(t, err)
	for range 3 {
		_, err = c.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: out.QueueUrl, MessageBody: aws.String("x")})
		require.NoError(t, err)
	}
	_, err = c.GetQueueUrl(ctx, &sqs.GetQueueUrlInput{QueueName: aws.String(name + "-missing")})
	require.Error(t, err)

	require.Equal(t, 1.0, testutil.ToFloat64(m.AWSRequests.WithLabelValues("SQS", "CreateQueue", "ok")))
	require.Equal(t, 3.0, testutil.ToFloat64(m.AWSRequests.WithLabelValues("SQS", "SendMessage", "ok")))
	require.Equal(t, 1.0, testutil.ToFloat64(m.AWSRequests.WithLabelValues("SQS", "GetQueueUrl", awsconfig.Outcome(err))))
	require.NotEqual(t, "transport_error", awsconfig.Outcome(err), "an API error is labelled with its code")
}

func TestLoadNeedsRegion(t *testing.T) {
	t.Setenv("AWS_REGION", "")
	t.Setenv("AWS_DEFAULT_REGION", "")
	t.Setenv("AWS_CONFIG_FILE", "/dev/null")
	_, err := awsconfig.Load(context.Background(), metrics.New())
	require.ErrorContains(t, err, "no region")
	t.Setenv("AWS_REGION", "eu-west-1")
	cfg, err := awsconfig.Load(context.Background(), metrics.New())
	require.NoError(t, err)
	require.Equal(t, "eu-west-1", cfg.Region)
	require.Equal(t, aws.RetryModeAdaptive, cfg.RetryMode)
}

func TestInjectFaultsAreRetried(t *testing.T) {
	t.Parallel()
	m := metrics.New()
	cfg := awstest.Config(t, config.WithAPIOptions([]func(*middleware.Stack) error{
		awsconfig.Instrument(m), awsconfig.InjectFaults(0.3, 7),
	}))
	c := sqs.NewFromConfig(cfg)
	ctx := context.Background()
	out, err := c.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String(awstest.Name(t))})
	require.NoError(t, err)
	failed := 0
	for range 40 {
		if _, err := c.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: out.QueueUrl, MessageBody: aws.String("x")}); err != nil {
			failed++
		}
	}
	injected := testutil.ToFloat64(m.AWSRequests.WithLabelValues("SQS", "SendMessage", "ThrottlingException")) +
		testutil.ToFloat64(m.AWSRequests.WithLabelValues("SQS", "SendMessage", "RequestTimeout")) +
		testutil.ToFloat64(m.AWSRequests.WithLabelValues("SQS", "SendMessage", "InternalError"))
	require.Positive(t, injected, "faults were injected and counted")
	require.Positive(t, failed, "internal errors reach the caller")
	require.Less(t, failed, 20, "throttling and timeouts are retried by the SDK")
}
