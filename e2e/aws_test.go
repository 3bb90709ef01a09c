package e2e

import (
	"context"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/stretchr/testify/require"

	"github.com/jobfleet/jobfleet/pkg/awstest"
	"github.com/jobfleet/jobfleet/pkg/client"
	"github.com/jobfleet/jobfleet/pkg/job"
)

// Producers in any language feed jobs through the SQS ingress queue; a bad
// message lands in the ingress DLQ with the reason and the rest go on.
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
	for _, body := range []string{`{"type":"echo","payload":{"from":"sqs"}}`, `{"type":"echo","nonsense":1}`} {
		_, err := c.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: in, MessageBody: aws.String(body)})
		require.NoError(t, err)
	}

	var j *client.Job
	require.Eventually(t, func() bool {
		page, err := s.Client.List(ctx, client.ListOptions{Status: job.Succeeded})
		require.NoError(t, err)
		if len(page.Jobs) == 0 {
			return false
		}
		j = page.Jobs[0]
		return true
	}, 60*time.Second, 100*time.Millisecond, "the ingress job never finished")
	require.JSONEq(t, `{"from":"sqs"}`, string(j.Result))

	var bad []sqstypes.Message
	require.Eventually(t, func() bool {
		out, err := c.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: dlq, MessageAttributeNames: []string{"All"}, WaitTimeSeconds: 1})
		require.NoError(t, err)
		bad = out.Messages
		return len(bad) == 1
	}, 30*time.Second, 100*time.Millisecond)
	require.Contains(t, aws.ToString(bad[0].MessageAttributes["reason"].StringValue), "nonsense: unknown field")
}
