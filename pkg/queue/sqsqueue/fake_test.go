package sqsqueue_test

import (
	"context"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/jobfleet/jobfleet/pkg/queue/sqsqueue"
)

// fakeSQS is an sqsqueue.API (and AdminAPI) that answers as the test
// says, for what moto cannot show: SQS's answers to stale handles,
// per-entry failures, throttling. A method whose func is nil fails the
// test, except GetQueueAttributes, which by default answers what Open
// needs.
type fakeSQS struct {
	t *testing.T

	mu    sync.Mutex
	calls map[string]int

	sendMessageBatch             func(context.Context, *sqs.SendMessageBatchInput) (*sqs.SendMessageBatchOutput, error)
	receiveMessage               func(context.Context, *sqs.ReceiveMessageInput) (*sqs.ReceiveMessageOutput, error)
	changeMessageVisibilityBatch func(context.Context, *sqs.ChangeMessageVisibilityBatchInput) (*sqs.ChangeMessageVisibilityBatchOutput, error)
	deleteMessageBatch           func(context.Context, *sqs.DeleteMessageBatchInput) (*sqs.DeleteMessageBatchOutput, error)
	getQueueAttributes           func(context.Context, *sqs.GetQueueAttributesInput) (*sqs.GetQueueAttributesOutput, error)
	getQueueURL                  func(context.Context, *sqs.GetQueueUrlInput) (*sqs.GetQueueUrlOutput, error)
	createQueue                  func(context.Context, *sqs.CreateQueueInput) (*sqs.CreateQueueOutput, error)
	setQueueAttributes           func(context.Context, *sqs.SetQueueAttributesInput) (*sqs.SetQueueAttributesOutput, error)
}

var (
	_ sqsqueue.API      = (*fakeSQS)(nil)
	_ sqsqueue.AdminAPI = (*fakeSQS)(nil)
)

func newFake(t *testing.T) *fakeSQS {
	return &fakeSQS{t: t, calls: map[string]int{}}
}

// testURL is the queue URL fakes use.
const testURL = "https://sqs.us-east-1.amazonaws.com/123456789012/work"

func (f *fakeSQS) count(op string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls[op]++
}

// Calls returns how many times op was called.
func (f *fakeSQS) Calls(op string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[op]
}

func call[In, Out any](f *fakeSQS, op string, fn func(context.Context, In) (Out, error), ctx context.Context, in In) (Out, error) {
	f.count(op)
	if fn == nil {
		f.t.Errorf("unexpected call to %s", op)
		var zero Out
		return zero, context.Canceled
	}
	return fn(ctx, in)
}

func (f *fakeSQS) SendMessageBatch(ctx context.Context, in *sqs.SendMessageBatchInput, _ ...func(*sqs.Options)) (*sqs.SendMessageBatchOutput, error) {
	return call(f, "SendMessageBatch", f.sendMessageBatch, ctx, in)
}

func (f *fakeSQS) ReceiveMessage(ctx context.Context, in *sqs.ReceiveMessageInput, _ ...func(*sqs.Options)) (*sqs.ReceiveMessageOutput, error) {
	return call(f, "ReceiveMessage", f.receiveMessage, ctx, in)
}

func (f *fakeSQS) ChangeMessageVisibilityBatch(ctx context.Context, in *sqs.ChangeMessageVisibilityBatchInput, _ ...func(*sqs.Options)) (*sqs.ChangeMessageVisibilityBatchOutput, error) {
	return call(f, "ChangeMessageVisibilityBatch", f.changeMessageVisibilityBatch, ctx, in)
}

func (f *fakeSQS) DeleteMessageBatch(ctx context.Context, in *sqs.DeleteMessageBatchInput, _ ...func(*sqs.Options)) (*sqs.DeleteMessageBatchOutput, error) {
	return call(f, "DeleteMessageBatch", f.deleteMessageBatch, ctx, in)
}

func (f *fakeSQS) GetQueueAttributes(ctx context.Context, in *sqs.GetQueueAttributesInput, _ ...func(*sqs.Options)) (*sqs.GetQueueAttributesOutput, error) {
	fn := f.getQueueAttributes
	if fn == nil {
		fn = func(context.Context, *sqs.GetQueueAttributesInput) (*sqs.GetQueueAttributesOutput, error) {
			return &sqs.GetQueueAttributesOutput{Attributes: map[string]string{"ReceiveMessageWaitTimeSeconds": "0"}}, nil
		}
	}
	return call(f, "GetQueueAttributes", fn, ctx, in)
}

func (f *fakeSQS) GetQueueUrl(ctx context.Context, in *sqs.GetQueueUrlInput, _ ...func(*sqs.Options)) (*sqs.GetQueueUrlOutput, error) {
	return call(f, "GetQueueUrl", f.getQueueURL, ctx, in)
}

func (f *fakeSQS) CreateQueue(ctx context.Context, in *sqs.CreateQueueInput, _ ...func(*sqs.Options)) (*sqs.CreateQueueOutput, error) {
	return call(f, "CreateQueue", f.createQueue, ctx, in)
}

func (f *fakeSQS) SetQueueAttributes(ctx context.Context, in *sqs.SetQueueAttributesInput, _ ...func(*sqs.Options)) (*sqs.SetQueueAttributesOutput, error) {
	return call(f, "SetQueueAttributes", f.setQueueAttributes, ctx, in)
}
