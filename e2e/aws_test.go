package e2e

import (
	"context"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/stretchr/testify/require"

	"github.com/jobfleet/jobfleet/pkg/awstest"
	"github.com/jobfleet/jobfleet/pkg/client"
	"github.com/jobfleet/jobfleet/pkg/job"
)

// Producers in any language feed jobs through the SQS ingress queue: here
// the Go SDK, the aws CLI and a boto3 script (testdata/produce.py). Each bad
// message lands in the ingress DLQ with its reason, and the good ones
// complete.
func TestIngressOverSQS(t *testing.T) {
	t.Parallel()
	s := start(t, options{"JOBFLEET_PROFILE": "aws"})
	prefix := s.envValue("JOBFLEET_RESOURCE_PREFIX")
	ctx := context.Background()
	c := sqs.NewFromConfig(awstest.Config(t))
	url := func(name string) *string {
		out, err := c.GetQueueUrl(ctx, &sqs.GetQueueUrlInput{QueueName: aws.String(name)})
		require.NoError(t, err)
		return out.QueueUrl
	}
	in, dlq := url(prefix+"-ingress"), url(prefix+"-ingress-dlq")
	// The producers' environment: the suite's endpoint and credentials.
	var producerEnv []string
	for _, kv := range s.env {
		if strings.HasPrefix(kv, "AWS_") {
			producerEnv = append(producerEnv, kv)
		}
	}
	producerEnv = append(producerEnv, "AWS_DEFAULT_REGION="+awstest.Config(t).Region, "PATH="+os.Getenv("PATH"), "HOME="+t.TempDir())
	endpointArgs := func() []string {
		if ep := awstest.Endpoint(t); ep != "" {
			return []string{"--endpoint-url", ep}
		}
		return nil
	}

	good := map[string]string{} // producer → payload it sent
	bad := map[string]string{   // body → what its DLQ reason must say
		`{"type":"echo","nonsense":1}`:                             "nonsense: unknown field",
		`not json at all`:                                          "invalid character",
		`{"type":"no_such_type"}`:                                  `no handler is registered for type "no_such_type"`,
		`{"type":"sleep","payload":{"seconds":"ten"}}`:             "payload",
		`{"type":"echo","key":"` + strings.Repeat("k", 300) + `"}`: "key",
		`{"type":"echo","payload_ref":"../../etc/passwd"}`:         "payload_ref",
	}
	// The Go SDK.
	good["go"] = `{"from":"go"}`
	_, err := c.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: in, MessageBody: aws.String(`{"type":"echo","payload":{"from":"go"}}`)})
	require.NoError(t, err)
	for _, body := range []string{`{"type":"echo","nonsense":1}`, `{"type":"echo","payload_ref":"../../etc/passwd"}`} {
		_, err = c.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: in, MessageBody: aws.String(body)})
		require.NoError(t, err)
	}
	// The aws CLI.
	if cli, err := exec.LookPath("aws"); err == nil {
		good["cli"] = `{"from":"cli"}`
		for _, body := range []string{`{"type":"echo","payload":{"from":"cli"}}`, `not json at all`} {
			cmd := exec.Command(cli, append(endpointArgs(), "sqs", "send-message", "--queue-url", *in, "--message-body", body)...)
			cmd.Env = producerEnv
			out, err := cmd.CombinedOutput()
			require.NoError(t, err, "aws sqs send-message: %s", out)
		}
	} else {
		t.Logf("no aws CLI on PATH: its part of the test is left out")
		delete(bad, `not json at all`)
	}
	// A boto3 script, with a batch that mixes good and bad messages.
	good["boto3"] = `{"from":"boto3"}`
	cmd := exec.Command("python3", "testdata/produce.py", *in,
		`{"type":"echo","payload":{"from":"boto3"}}`,
		`{"type":"no_such_type"}`,
		`{"type":"sleep","payload":{"seconds":"ten"}}`,
		`{"type":"echo","key":"`+strings.Repeat("k", 300)+`"}`)
	cmd.Env = producerEnv
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "produce.py (needs python3 with boto3, which moto brings): %s", out)
	require.Equal(t, 4, strings.Count(string(out), "ok "), "%s", out)

	// Every good message completes.
	require.Eventually(t, func() bool {
		page, err := s.Client.List(ctx, client.ListOptions{Status: job.Succeeded})
		require.NoError(t, err)
		return len(page.Jobs) == len(good)
	}, 60*time.Second, 100*time.Millisecond, "the good ingress jobs never all finished")
	page, err := s.Client.List(ctx, client.ListOptions{Status: job.Succeeded})
	require.NoError(t, err)
	var results []string
	for _, j := range page.Jobs {
		results = append(results, string(j.Result))
	}
	for from, payload := range good {
		require.True(t, slices.ContainsFunc(results, func(r string) bool { return r == payload }), "%s's job: %v", from, results)
	}

	// Every bad one is in the DLQ with its reason.
	reasons := map[string]string{}
	require.Eventually(t, func() bool {
		out, err := c.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: dlq, MessageAttributeNames: []string{"All"}, MaxNumberOfMessages: 10, WaitTimeSeconds: 1})
		require.NoError(t, err)
		for _, m := range out.Messages {
			reasons[aws.ToString(m.Body)] = aws.ToString(m.MessageAttributes["reason"].StringValue)
			_, err := c.DeleteMessage(ctx, &sqs.DeleteMessageInput{QueueUrl: dlq, ReceiptHandle: m.ReceiptHandle})
			require.NoError(t, err)
		}
		return len(reasons) >= len(bad)
	}, 30*time.Second, 100*time.Millisecond, "DLQ: %v", reasons)
	require.Len(t, reasons, len(bad))
	for body, want := range bad {
		require.Contains(t, reasons, body)
		require.Contains(t, reasons[body], want, "the reason for %.60s", body)
	}
}
