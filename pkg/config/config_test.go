package config_test

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/jobfleet/jobfleet/pkg/config"
)

func env(kv map[string]string) func(string) string {
	return func(k string) string { return kv[k] }
}

func TestDefaults(t *testing.T) {
	t.Parallel()
	c, err := config.Load(env(nil))
	require.NoError(t, err)
	require.Equal(t, config.ProfileLocal, c.Profile)
	require.Equal(t, "127.0.0.1:8080", c.HTTPAddr)
	require.Equal(t, 10*time.Second, c.Heartbeat)
	require.Equal(t, 30*time.Second, c.Lease)
	require.Equal(t, 40*time.Second, c.Visibility, "visibility defaults to lease + heartbeat")
	require.Equal(t, 5*time.Second, c.Sweep)
	require.Equal(t, 4*time.Hour, c.DurationCap)
	require.NoError(t, c.Policy().Validate())
	l := c.Limits()
	require.True(t, l.KnownType("sleep"))
	require.False(t, l.KnownType("mystery"))
}

func TestLoad(t *testing.T) {
	t.Parallel()
	c, err := config.Load(env(map[string]string{
		"JOBFLEET_HEARTBEAT":      "2s",
		"JOBFLEET_LEASE":          "7",
		"JOBFLEET_INLINE_LIMIT":   "16KiB",
		"JOBFLEET_JOB_TYPES":      "echo, resize ,",
		"JOBFLEET_WORKER_COMMAND": "bin/jobfleet-worker --flag",
		"JOBFLEET_API_TOKENS":     "0123456789abcdef,fedcba9876543210",
	}))
	require.NoError(t, err)
	require.Equal(t, 7*time.Second, c.Lease)
	require.Equal(t, 9*time.Second, c.Visibility)
	require.Equal(t, 16<<10, c.InlineLimit)
	require.Equal(t, []string{"echo", "resize"}, c.JobTypes)
	require.Equal(t, []string{"bin/jobfleet-worker", "--flag"}, c.WorkerCommand)
	require.Len(t, c.APITokens, 2)
}

func TestValidateNamesTheVariable(t *testing.T) {
	t.Parallel()
	tests := []struct {
		env  map[string]string
		want string
	}{
		{map[string]string{"JOBFLEET_LEASE": "20s"}, "JOBFLEET_LEASE (20s) must be more than 2 × JOBFLEET_HEARTBEAT (10s)"},
		{map[string]string{"JOBFLEET_VISIBILITY": "10s"}, "JOBFLEET_VISIBILITY (10s) must be at least JOBFLEET_LEASE (30s)"},
		{map[string]string{"JOBFLEET_SWEEP": "soon"}, `JOBFLEET_SWEEP="soon": want a duration`},
		{map[string]string{"JOBFLEET_PROFILE": "gcp"}, `JOBFLEET_PROFILE="gcp"`},
		{map[string]string{"JOBFLEET_CONCURRENCY": "lots"}, `JOBFLEET_CONCURRENCY="lots": want an integer`},
		{map[string]string{"JOBFLEET_MAX_WORKERS": "1", "JOBFLEET_MIN_WORKERS": "2"}, "0 ≤ min ≤ max"},
		{map[string]string{"JOBFLEET_API_TOKENS": "short"}, "at least 16 characters"},
		{map[string]string{"JOBFLEET_JOB_TYPES": "ok,9bad"}, `"9bad" is not a valid type name`},
		{map[string]string{"JOBFLEET_HTTP_ADDR": "8080"}, "JOBFLEET_HTTP_ADDR=\"8080\": want host:port"},
		{map[string]string{"JOBFLEET_DRAIN_TIMEOUT": "40s"}, "must be shorter than JOBFLEET_STOP_TIMEOUT"},
		{map[string]string{"JOBFLEET_ECS_TAGS": "team=jobs,oops"}, `JOBFLEET_ECS_TAGS="team=jobs,oops": want key=value`},
	}
	for _, tc := range tests {
		_, err := config.Load(env(tc.env))
		require.ErrorContains(t, err, tc.want, "%v", tc.env)
	}
	// Every problem at once.
	_, err := config.Load(env(map[string]string{"JOBFLEET_LEASE": "1s", "JOBFLEET_PROFILE": "x"}))
	require.ErrorContains(t, err, "JOBFLEET_PROFILE")
	require.ErrorContains(t, err, "JOBFLEET_LEASE")
}

func TestLoopback(t *testing.T) {
	t.Parallel()
	for addr, want := range map[string]bool{
		"127.0.0.1:8080": true, "localhost:1": true, "[::1]:80": true,
		"0.0.0.0:8080": false, ":8080": false, "10.0.0.1:80": false, "nonsense": false,
	} {
		require.Equal(t, want, config.Loopback(addr), addr)
	}
}

func TestAWSResourceNames(t *testing.T) {
	t.Parallel()
	c, err := config.Load(env(map[string]string{
		"JOBFLEET_PROFILE": "aws", "JOBFLEET_RESOURCE_PREFIX": "acme",
		"JOBFLEET_WORK_QUEUE":  "https://sqs.eu-west-1.amazonaws.com/1/custom-work",
		"JOBFLEET_WORK_DLQ":    "https://sqs.eu-west-1.amazonaws.com/1/custom-work-dlq",
		"JOBFLEET_ECS_SUBNETS": "subnet-1,subnet-2", "JOBFLEET_ECS_ASSIGN_PUBLIC_IP": "true",
		"JOBFLEET_ECS_TAGS": "team=jobs, cost-center = 42",
	}))
	require.NoError(t, err)
	require.Equal(t, map[string]string{"team": "jobs", "cost-center": "42"}, c.ECSTags)
	require.Equal(t, "acme-jobs", c.Table)
	require.Equal(t, "acme-ingress", c.IngressQueue)
	require.Equal(t, "acme-ingress-dlq", c.IngressDLQ)
	require.Equal(t, "acme-artifacts", c.Bucket)
	require.Equal(t, "https://sqs.eu-west-1.amazonaws.com/1/custom-work", c.WorkQueue)
	require.Equal(t, config.FleetECS, c.Fleet, "the aws profile's fleet is ECS unless told otherwise")
	require.Equal(t, "acme", c.ECSCluster)
	require.Equal(t, "acme-worker", c.ECSTaskDefinition)
	require.True(t, c.ECSAssignPublicIP)

	c, err = config.Load(env(map[string]string{"JOBFLEET_PROFILE": "aws", "JOBFLEET_FLEET": "local"}))
	require.NoError(t, err)
	require.Equal(t, "jobfleet-work", c.WorkQueue)
	_, err = config.Load(env(map[string]string{"JOBFLEET_FLEET": "ecs"}))
	require.ErrorContains(t, err, "needs JOBFLEET_PROFILE=aws")
}

// Resources may be given as AWS names them: a queue URL or ARN, a table
// ARN, a bucket or access point ARN. A DLQ defaults to its queue as given
// with -dlq, so beside it.
func TestAWSResourceARNs(t *testing.T) {
	t.Parallel()
	c, err := config.Load(env(map[string]string{
		"JOBFLEET_PROFILE":       "aws",
		"JOBFLEET_TABLE":         "arn:aws:dynamodb:eu-west-1:210987654321:table/shared-jobs",
		"JOBFLEET_WORK_QUEUE":    "arn:aws:sqs:eu-west-1:210987654321:shared-work",
		"JOBFLEET_INGRESS_QUEUE": "https://sqs.eu-west-1.amazonaws.com/210987654321/shared-ingress",
		"JOBFLEET_EVENTS_DLQ":    "arn:aws:sqs:eu-west-1:210987654321:events-dead",
		"JOBFLEET_BUCKET":        "arn:aws:s3:eu-west-1:210987654321:accesspoint/jobs",
		"JOBFLEET_ECS_SUBNETS":   "subnet-1",
	}))
	require.NoError(t, err)
	require.Equal(t, "arn:aws:dynamodb:eu-west-1:210987654321:table/shared-jobs", c.Table)
	require.Equal(t, "arn:aws:sqs:eu-west-1:210987654321:shared-work-dlq", c.WorkDLQ)
	require.Equal(t, "https://sqs.eu-west-1.amazonaws.com/210987654321/shared-ingress-dlq", c.IngressDLQ)
	require.Equal(t, "jobfleet-events", c.EventsQueue)
	require.Equal(t, "arn:aws:sqs:eu-west-1:210987654321:events-dead", c.EventsDLQ)
	require.Equal(t, "arn:aws:s3:eu-west-1:210987654321:accesspoint/jobs", c.Bucket)

	c, err = config.Load(env(map[string]string{"JOBFLEET_PROFILE": "aws", "JOBFLEET_BUCKET": "arn:aws:s3:::shared-artifacts"}))
	require.NoError(t, err)
	require.Equal(t, "arn:aws:s3:::shared-artifacts", c.Bucket)

	for v, want := range map[string]string{
		"JOBFLEET_TABLE=arn:aws:sqs:us-east-1:123456789012:jobs":       `JOBFLEET_TABLE="arn:aws:sqs:us-east-1:123456789012:jobs": want a DynamoDB table name or ARN; this is an ARN of service "sqs"`,
		"JOBFLEET_TABLE=https://dynamodb.us-east-1.amazonaws.com/jobs": "JOBFLEET_TABLE=\"https://dynamodb.us-east-1.amazonaws.com/jobs\": want a DynamoDB table name or ARN; a URL names no such resource",
		"JOBFLEET_WORK_QUEUE=arn:aws:sqs:us-east-1:work":               "JOBFLEET_WORK_QUEUE=\"arn:aws:sqs:us-east-1:work\": want an SQS queue name, URL or ARN; an ARN has six parts",
		"JOBFLEET_INGRESS_DLQ=arn:aws:sns:us-east-1:123456789012:dlq":  `JOBFLEET_INGRESS_DLQ="arn:aws:sns:us-east-1:123456789012:dlq": want an SQS queue name, URL or ARN; this is an ARN of service "sns"`,
		"JOBFLEET_BUCKET=arn:aws:dynamodb:us-east-1:1:table/t":         `JOBFLEET_BUCKET="arn:aws:dynamodb:us-east-1:1:table/t": want an S3 bucket name, bucket ARN or access point ARN`,
		"JOBFLEET_BUCKET=https://bkt.s3.amazonaws.com":                 `JOBFLEET_BUCKET="https://bkt.s3.amazonaws.com": want an S3 bucket name`,
	} {
		k, val, _ := strings.Cut(v, "=")
		_, err := config.Load(env(map[string]string{"JOBFLEET_PROFILE": "aws", k: val}))
		require.ErrorContains(t, err, want, v)

		// The local profile uses none of them.
		_, err = config.Load(env(map[string]string{k: val}))
		require.NoError(t, err, v)
	}
}
