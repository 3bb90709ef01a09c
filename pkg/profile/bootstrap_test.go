//go:build !jobfleet_noaws

package profile_test

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"os"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/stretchr/testify/require"

	"github.com/jobfleet/jobfleet/pkg/awstest"
	"github.com/jobfleet/jobfleet/pkg/config"
	"github.com/jobfleet/jobfleet/pkg/profile"
)

func TestMain(m *testing.M) { os.Exit(awstest.Main(m)) }

// loadAWS is the aws profile's configuration with a fresh prefix and the
// given overrides.
func loadAWS(t *testing.T, env map[string]string) config.Config {
	t.Helper()
	var b [4]byte
	_, _ = rand.Read(b[:])
	vars := map[string]string{"JOBFLEET_PROFILE": config.ProfileAWS, "JOBFLEET_RESOURCE_PREFIX": "boot-" + hex.EncodeToString(b[:]),
		"JOBFLEET_FLEET": config.FleetLocal}
	for k, v := range env {
		vars[k] = v
	}
	cfg, err := config.Load(func(k string) string { return vars[k] })
	require.NoError(t, err)
	return cfg
}

// Bootstrap by names creates every resource, twice without harm, and the
// profile opens them; queues get their redrive policies.
func TestBootstrapByName(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	c := profile.NewClients(awstest.Config(t))
	cfg := loadAWS(t, nil)
	for range 2 {
		require.NoError(t, profile.BootstrapAWS(ctx, cfg, c, slog.New(slog.DiscardHandler)))
	}
	_, err := c.DynamoDB.DescribeTable(ctx, &dynamodb.DescribeTableInput{TableName: aws.String(cfg.Table)})
	require.NoError(t, err)
	url, err := c.SQS.GetQueueUrl(ctx, &sqs.GetQueueUrlInput{QueueName: aws.String(cfg.WorkQueue)})
	require.NoError(t, err)
	attrs, err := c.SQS.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{QueueUrl: url.QueueUrl,
		AttributeNames: []sqstypes.QueueAttributeName{sqstypes.QueueAttributeNameRedrivePolicy}})
	require.NoError(t, err)
	require.Contains(t, attrs.Attributes["RedrivePolicy"], cfg.WorkDLQ)
	b, err := profile.OpenAWSWith(ctx, cfg, c)
	require.NoError(t, err)
	require.NoError(t, b.Close())
}

// Resources given as a URL or an ARN are taken to exist: bootstrap leaves
// them alone (and says so), creates the rest, and the profile opens them
// all.
func TestBootstrapLeavesGivenResources(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	c := profile.NewClients(awstest.Config(t))
	// Another deployment's resources, made by name.
	other := loadAWS(t, nil)
	require.NoError(t, profile.BootstrapAWS(ctx, other, c, slog.New(slog.DiscardHandler)))
	workURL, err := c.SQS.GetQueueUrl(ctx, &sqs.GetQueueUrlInput{QueueName: aws.String(other.WorkQueue)})
	require.NoError(t, err)
	dlqURL, err := c.SQS.GetQueueUrl(ctx, &sqs.GetQueueUrlInput{QueueName: aws.String(other.WorkDLQ)})
	require.NoError(t, err)
	dlqAttrs, err := c.SQS.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{QueueUrl: dlqURL.QueueUrl,
		AttributeNames: []sqstypes.QueueAttributeName{sqstypes.QueueAttributeNameQueueArn}})
	require.NoError(t, err)
	table, err := c.DynamoDB.DescribeTable(ctx, &dynamodb.DescribeTableInput{TableName: aws.String(other.Table)})
	require.NoError(t, err)

	cfg := loadAWS(t, map[string]string{
		"JOBFLEET_TABLE":      aws.ToString(table.Table.TableArn),
		"JOBFLEET_WORK_QUEUE": aws.ToString(workURL.QueueUrl),
		"JOBFLEET_WORK_DLQ":   dlqAttrs.Attributes["QueueArn"],
		"JOBFLEET_BUCKET":     "arn:aws:s3:::" + other.Bucket,
	})
	var logs bytes.Buffer
	require.NoError(t, profile.BootstrapAWS(ctx, cfg, c, slog.New(slog.NewTextHandler(&logs, nil))))
	for _, given := range []string{"table given as an ARN", "queue given as a URL or ARN", "bucket given as an ARN"} {
		require.Contains(t, logs.String(), given)
	}
	// What was given by name (the other queues) was created.
	_, err = c.SQS.GetQueueUrl(ctx, &sqs.GetQueueUrlInput{QueueName: aws.String(cfg.IngressQueue)})
	require.NoError(t, err)
	b, err := profile.OpenAWSWith(ctx, cfg, c)
	require.NoError(t, err)
	require.NoError(t, b.Close())
}
