package sqsqueue_test

import (
	"context"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/stretchr/testify/require"

	"github.com/jobfleet/jobfleet/pkg/awstest"
	"github.com/jobfleet/jobfleet/pkg/queue"
	"github.com/jobfleet/jobfleet/pkg/queue/queuetest"
	"github.com/jobfleet/jobfleet/pkg/queue/sqsqueue"
)

func TestConformance(t *testing.T) {
	t.Parallel()
	client := sqs.NewFromConfig(awstest.Config(t))
	var quirks []queuetest.Quirk
	if awstest.IsMoto(t) {
		// moto accepts every receipt handle a message ever had, answers
		// ReceiptHandleIsInvalid for a deleted message's handle, and its
		// receives and deletes race (AWS_NOTES §1; seen here: handles it
		// returned then unknown to it, deleted messages back in flight).
		// TestChangeVisibilityAsSQS and TestDeleteAsSQS pin what SQS does.
		quirks = []queuetest.Quirk{queuetest.OldHandlesAct, queuetest.DeletedHandleMalformed, queuetest.ConcurrentCallsRace}
	}
	queuetest.Run(t, func(t *testing.T, cfg queuetest.Config) queuetest.Harness {
		name := queuetest.Name(t)
		h := queuetest.Harness{
			Advance: time.Sleep, // SQS runs on real time
			Quirks:  quirks,
			Open: func(ctx context.Context, name string) (*queue.Queue, error) {
				return sqsqueue.Open(ctx, client, name, nil)
			},
		}
		qc := sqsqueue.Config{Visibility: cfg.Visibility}
		if cfg.MaxReceives > 0 {
			qc.DeadLetter, qc.MaxReceives = name+"-dlq", cfg.MaxReceives
			h.DLQ = createQueue(t, client, qc.DeadLetter, sqsqueue.Config{Visibility: cfg.Visibility})
		}
		h.Queue = createQueue(t, client, name, qc)
		return h
	})
}

// createQueue creates the queue name, deleted at cleanup, and opens it.
func createQueue(t *testing.T, client *sqs.Client, name string, cfg sqsqueue.Config) *queue.Queue {
	t.Helper()
	url, err := sqsqueue.CreateQueue(t.Context(), client, name, cfg)
	require.NoError(t, err)
	t.Cleanup(func() {
		// t.Context has ended by now.
		_, err := client.DeleteQueue(context.Background(), &sqs.DeleteQueueInput{QueueUrl: aws.String(url)})
		require.NoError(t, err)
	})
	q, err := sqsqueue.Open(t.Context(), client, url, nil)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, q.Close()) })
	return q
}
