package sqsqueue_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/stretchr/testify/require"

	"github.com/jobfleet/jobfleet/pkg/awstest"
	"github.com/jobfleet/jobfleet/pkg/errcode"
	"github.com/jobfleet/jobfleet/pkg/queue"
	"github.com/jobfleet/jobfleet/pkg/queue/queuetest"
	"github.com/jobfleet/jobfleet/pkg/queue/sqsqueue"
)

// The tests here run against the test endpoint (moto, or what
// awstest.EndpointEnv names), like the conformance suite.

// deleteQueueAtCleanup deletes the queue at url when the test ends.
func deleteQueueAtCleanup(t *testing.T, client *sqs.Client, url string) {
	t.Cleanup(func() {
		// t.Context has ended by now.
		_, err := client.DeleteQueue(context.Background(), &sqs.DeleteQueueInput{QueueUrl: aws.String(url)})
		require.NoError(t, err)
	})
}

func queueAttrs(t *testing.T, client *sqs.Client, url string) map[string]string {
	t.Helper()
	out, err := client.GetQueueAttributes(t.Context(), &sqs.GetQueueAttributesInput{
		QueueUrl: aws.String(url), AttributeNames: []types.QueueAttributeName{types.QueueAttributeNameAll},
	})
	require.NoError(t, err)
	return out.Attributes
}

func TestCreateQueueConverges(t *testing.T) {
	t.Parallel()
	client := sqs.NewFromConfig(awstest.Config(t))
	name := queuetest.Name(t)
	ctx := t.Context()

	_, err := sqsqueue.CreateQueue(ctx, client, name, sqsqueue.Config{DeadLetter: name + "-dlq", MaxReceives: 3})
	requireCode(t, errcode.NotFound, err, "the dead-letter queue must exist first")

	dlqURL, err := sqsqueue.CreateQueue(ctx, client, name+"-dlq", sqsqueue.Config{})
	require.NoError(t, err)
	deleteQueueAtCleanup(t, client, dlqURL)
	cfg := sqsqueue.Config{Visibility: 45 * time.Second, DeadLetter: name + "-dlq", MaxReceives: 3}
	url, err := sqsqueue.CreateQueue(ctx, client, name, cfg)
	require.NoError(t, err)
	deleteQueueAtCleanup(t, client, url)

	again, err := sqsqueue.CreateQueue(ctx, client, name, cfg)
	require.NoError(t, err, "the same configuration again")
	require.Equal(t, url, again)

	attrs := queueAttrs(t, client, url)
	require.Equal(t, "45", attrs["VisibilityTimeout"])
	require.Equal(t, "1209600", attrs["MessageRetentionPeriod"], "14 days")
	require.Equal(t, "1048576", attrs["MaximumMessageSize"])
	require.Equal(t, "0", attrs["ReceiveMessageWaitTimeSeconds"])
	var policy struct {
		DeadLetterTargetArn string          `json:"deadLetterTargetArn"`
		MaxReceiveCount     json.RawMessage `json:"maxReceiveCount"`
	}
	require.NoError(t, json.Unmarshal([]byte(attrs["RedrivePolicy"]), &policy))
	require.Equal(t, queueAttrs(t, client, dlqURL)["QueueArn"], policy.DeadLetterTargetArn)
	require.Contains(t, []string{"3", `"3"`}, string(policy.MaxReceiveCount))

	// Another configuration: the queue is updated to it.
	again, err = sqsqueue.CreateQueue(ctx, client, name, sqsqueue.Config{Visibility: 2 * time.Minute})
	require.NoError(t, err)
	require.Equal(t, url, again)
	attrs = queueAttrs(t, client, url)
	require.Equal(t, "120", attrs["VisibilityTimeout"])
	require.Empty(t, attrs["RedrivePolicy"], "the redrive policy is removed")
}

func TestOpenOnEndpoint(t *testing.T) {
	t.Parallel()
	client := sqs.NewFromConfig(awstest.Config(t))
	name := queuetest.Name(t)
	url, err := sqsqueue.CreateQueue(t.Context(), client, name, sqsqueue.Config{})
	require.NoError(t, err)
	deleteQueueAtCleanup(t, client, url)

	byName, err := sqsqueue.Open(t.Context(), client, name, nil)
	require.NoError(t, err)
	defer byName.Close()
	byURL, err := sqsqueue.Open(t.Context(), client, url, nil)
	require.NoError(t, err)
	defer byURL.Close()
	require.Equal(t, name, byName.Name())
	require.Equal(t, name, byURL.Name())

	// Two handles on one queue: what one sends the other receives.
	res, err := byName.Send(t.Context(), queue.SendEntry{Body: []byte("hello")})
	require.NoError(t, err)
	require.NoError(t, res[0].Err)
	msgs, err := byURL.Receive(t.Context(), queue.ReceiveOptions{Wait: 2 * time.Second})
	require.NoError(t, err)
	require.Len(t, msgs, 1)
	require.Equal(t, res[0].ID, msgs[0].ID)

	_, err = sqsqueue.Open(t.Context(), client, name+"-missing", nil)
	requireCode(t, errcode.NotFound, err, "by name")
	_, err = sqsqueue.Open(t.Context(), client, url+"-missing", nil)
	requireCode(t, errcode.NotFound, err, "by URL")

	// A queue made elsewhere with a default long-poll wait is refused.
	out, err := client.CreateQueue(t.Context(), &sqs.CreateQueueInput{
		QueueName:  aws.String(name + "-lp"),
		Attributes: map[string]string{"ReceiveMessageWaitTimeSeconds": "5"},
	})
	require.NoError(t, err)
	deleteQueueAtCleanup(t, client, aws.ToString(out.QueueUrl))
	_, err = sqsqueue.Open(t.Context(), client, name+"-lp", nil)
	requireCode(t, errcode.FailedPrecondition, err)
}

// TestARNOnEndpoint: a queue opened by the ARN SQS reports for it is the
// queue of that name, and a dead-letter queue given by ARN is the redrive
// target. moto resolves every name in its one account and ignores
// QueueOwnerAWSAccountId, so another account's queue cannot be shown here;
// TestOpen pins what Open sends for one.
func TestARNOnEndpoint(t *testing.T) {
	t.Parallel()
	client := sqs.NewFromConfig(awstest.Config(t))
	name := queuetest.Name(t)
	ctx := t.Context()

	dlqURL, err := sqsqueue.CreateQueue(ctx, client, name+"-dlq", sqsqueue.Config{})
	require.NoError(t, err)
	deleteQueueAtCleanup(t, client, dlqURL)
	dlqARN := queueAttrs(t, client, dlqURL)["QueueArn"]
	parts := strings.SplitN(dlqARN, ":", 6)
	require.Len(t, parts, 6, dlqARN)
	require.Equal(t, []string{"arn", "aws", "sqs", awstest.Region}, parts[:4], dlqARN)
	require.Equal(t, name+"-dlq", parts[5], dlqARN)
	url, err := sqsqueue.CreateQueue(ctx, client, name, sqsqueue.Config{DeadLetter: dlqARN, MaxReceives: 2})
	require.NoError(t, err)
	deleteQueueAtCleanup(t, client, url)
	var policy struct {
		DeadLetterTargetArn string `json:"deadLetterTargetArn"`
	}
	attrs := queueAttrs(t, client, url)
	require.NoError(t, json.Unmarshal([]byte(attrs["RedrivePolicy"]), &policy))
	require.Equal(t, dlqARN, policy.DeadLetterTargetArn)

	byARN, err := sqsqueue.Open(ctx, client, attrs["QueueArn"], nil)
	require.NoError(t, err)
	defer byARN.Close()
	require.Equal(t, name, byARN.Name(), "the name, not the ARN")
	byName, err := sqsqueue.Open(ctx, client, name, nil)
	require.NoError(t, err)
	defer byName.Close()
	res, err := byARN.Send(ctx, queue.SendEntry{Body: []byte("by ARN")})
	require.NoError(t, err)
	require.NoError(t, res[0].Err)
	msgs, err := byName.Receive(ctx, queue.ReceiveOptions{Wait: 2 * time.Second})
	require.NoError(t, err)
	require.Len(t, msgs, 1)
	require.Equal(t, res[0].ID, msgs[0].ID, "one queue")
	dlq, err := sqsqueue.Open(ctx, client, dlqARN, nil)
	require.NoError(t, err)
	require.NoError(t, dlq.Close())

	_, err = sqsqueue.Open(ctx, client, attrs["QueueArn"]+"-missing", nil)
	requireCode(t, errcode.NotFound, err)
	other := strings.Replace(attrs["QueueArn"], ":"+awstest.Region+":", ":eu-west-1:", 1)
	_, err = sqsqueue.Open(ctx, client, other, nil)
	requireCode(t, errcode.InvalidArgument, err, "the client calls %s", awstest.Region)
	_, err = sqsqueue.Open(ctx, client, strings.Replace(attrs["QueueArn"], ":sqs:", ":sns:", 1), nil)
	requireCode(t, errcode.InvalidArgument, err)
}

// TestConcurrentUseOnEndpoint: goroutines share handles to send while a
// receiver drains; every message arrives. (The suite's concurrent-receive
// case is skipped on moto, whose receives and deletes race; this keeps
// the adapter's own concurrent use covered there.)
func TestConcurrentUseOnEndpoint(t *testing.T) {
	t.Parallel()
	client := sqs.NewFromConfig(awstest.Config(t))
	name := queuetest.Name(t)
	url, err := sqsqueue.CreateQueue(t.Context(), client, name, sqsqueue.Config{})
	require.NoError(t, err)
	deleteQueueAtCleanup(t, client, url)
	handles := make([]*queue.Queue, 2)
	for i := range handles {
		handles[i], err = sqsqueue.Open(t.Context(), client, url, nil)
		require.NoError(t, err)
		defer handles[i].Close()
	}

	const senders, each = 4, 30
	var wg sync.WaitGroup
	for s := range senders {
		q := handles[s%2]
		wg.Go(func() {
			for i := range each {
				res, err := q.Send(t.Context(), queue.SendEntry{Body: fmt.Appendf(nil, "%d-%d", s, i)})
				if err == nil {
					err = res[0].Err
				}
				if err != nil {
					t.Errorf("sender %d: %v", s, err)
					return
				}
			}
		})
	}
	got := map[string]int{}
	for len(got) < senders*each {
		msgs, err := handles[0].Receive(t.Context(), queue.ReceiveOptions{Max: queue.MaxBatch, Wait: 2 * time.Second})
		require.NoError(t, err)
		if len(msgs) == 0 {
			wg.Wait() // all sent and nothing left to receive: stop
			msgs, err = handles[1].Receive(t.Context(), queue.ReceiveOptions{Max: queue.MaxBatch, Wait: 2 * time.Second})
			require.NoError(t, err)
			if len(msgs) == 0 {
				break
			}
		}
		hs := make([]string, len(msgs))
		for i, m := range msgs {
			got[string(m.Body)]++
			hs[i] = m.Handle
		}
		errs, err := handles[1].Delete(t.Context(), hs...)
		require.NoError(t, err)
		for _, err := range errs {
			require.NoError(t, err)
		}
	}
	wg.Wait()
	require.Len(t, got, senders*each, "every message arrived")
	d, err := handles[0].Depth(t.Context())
	require.NoError(t, err)
	require.Equal(t, queue.Depth{}, d)
}
