package sqsqueue_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"
	"github.com/google/go-cmp/cmp"
	"github.com/stretchr/testify/require"

	"github.com/jobfleet/jobfleet/pkg/errcode"
	"github.com/jobfleet/jobfleet/pkg/queue"
	"github.com/jobfleet/jobfleet/pkg/queue/sqsqueue"
)

func requireCode(t *testing.T, want errcode.Code, err error, msgAndArgs ...any) {
	t.Helper()
	require.Error(t, err, msgAndArgs...)
	require.Equalf(t, want, errcode.Of(err), "error: %v %v", err, msgAndArgs)
}

// openFake opens the queue at testURL on f.
func openFake(t *testing.T, f *fakeSQS, opts *sqsqueue.Options) *queue.Queue {
	t.Helper()
	q, err := sqsqueue.Open(t.Context(), f, testURL, opts)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, q.Close()) })
	return q
}

// opErr wraps err as the SDK does.
func opErr(op string, err error) error {
	return &smithy.OperationError{ServiceID: "SQS", OperationName: op, Err: err}
}

func apiErr(code, msg string, fault smithy.ErrorFault) error {
	return &smithy.GenericAPIError{Code: code, Message: msg, Fault: fault}
}

func TestOpen(t *testing.T) {
	t.Parallel()

	t.Run("ByName", func(t *testing.T) {
		t.Parallel()
		f := newFake(t)
		f.getQueueURL = func(_ context.Context, in *sqs.GetQueueUrlInput) (*sqs.GetQueueUrlOutput, error) {
			require.Equal(t, "work", aws.ToString(in.QueueName))
			return &sqs.GetQueueUrlOutput{QueueUrl: aws.String(testURL)}, nil
		}
		var gotURL string
		f.getQueueAttributes = func(_ context.Context, in *sqs.GetQueueAttributesInput) (*sqs.GetQueueAttributesOutput, error) {
			gotURL = aws.ToString(in.QueueUrl)
			return &sqs.GetQueueAttributesOutput{Attributes: map[string]string{"ReceiveMessageWaitTimeSeconds": "0"}}, nil
		}
		q, err := sqsqueue.Open(t.Context(), f, "work", nil)
		require.NoError(t, err)
		require.Equal(t, "work", q.Name())
		require.Equal(t, testURL, gotURL)
		require.NoError(t, q.Close())
	})

	t.Run("ByURL", func(t *testing.T) {
		t.Parallel()
		f := newFake(t)
		q := openFake(t, f, nil)
		require.Equal(t, "work", q.Name())
		require.Zero(t, f.Calls("GetQueueUrl"), "a URL is used as it is")
		require.Equal(t, 1, f.Calls("GetQueueAttributes"))
	})

	t.Run("ByARN", func(t *testing.T) {
		t.Parallel()
		// A queue of another account: SQS finds it by name and owner.
		const otherURL = "https://sqs.us-east-1.amazonaws.com/210987654321/work"
		f := newFake(t)
		f.getQueueURL = func(_ context.Context, in *sqs.GetQueueUrlInput) (*sqs.GetQueueUrlOutput, error) {
			require.Equal(t, "work", aws.ToString(in.QueueName))
			require.Equal(t, "210987654321", aws.ToString(in.QueueOwnerAWSAccountId))
			return &sqs.GetQueueUrlOutput{QueueUrl: aws.String(otherURL)}, nil
		}
		var gotURL string
		f.getQueueAttributes = func(_ context.Context, in *sqs.GetQueueAttributesInput) (*sqs.GetQueueAttributesOutput, error) {
			gotURL = aws.ToString(in.QueueUrl)
			return &sqs.GetQueueAttributesOutput{Attributes: map[string]string{"ReceiveMessageWaitTimeSeconds": "0"}}, nil
		}
		q, err := sqsqueue.Open(t.Context(), f, "arn:aws:sqs:us-east-1:210987654321:work", nil)
		require.NoError(t, err)
		require.Equal(t, "work", q.Name(), "the name, not the ARN")
		require.Equal(t, otherURL, gotURL)
		require.Equal(t, 1, f.Calls("GetQueueUrl"))
		require.NoError(t, q.Close())
	})

	t.Run("ByARNMissing", func(t *testing.T) {
		t.Parallel()
		f := newFake(t)
		f.getQueueURL = func(context.Context, *sqs.GetQueueUrlInput) (*sqs.GetQueueUrlOutput, error) {
			return nil, opErr("GetQueueUrl", &types.QueueDoesNotExist{Message: aws.String("The specified queue does not exist.")})
		}
		_, err := sqsqueue.Open(t.Context(), f, "arn:aws:sqs:us-east-1:123456789012:gone", nil)
		requireCode(t, errcode.NotFound, err)
		require.ErrorContains(t, err, "arn:aws:sqs:us-east-1:123456789012:gone")
	})

	t.Run("ARNForms", func(t *testing.T) {
		t.Parallel()
		for arn, want := range map[string][2]string{
			"arn:aws:sqs:us-east-1:123456789012:work":                {"work", "123456789012"},
			"arn:aws-cn:sqs:cn-north-1:123456789012:work_2":          {"work_2", "123456789012"},
			"arn:aws-us-gov:sqs:us-gov-west-1:000000000000:w-1":      {"w-1", "000000000000"},
			"arn:aws:sqs:eu-west-1:123456789012:orders.fifo":         {"orders.fifo", "123456789012"},
			"arn:aws:sqs:ap-southeast-2:123456789012:" + name80("q"): {name80("q"), "123456789012"},
		} {
			f := newFake(t)
			f.getQueueURL = func(_ context.Context, in *sqs.GetQueueUrlInput) (*sqs.GetQueueUrlOutput, error) {
				require.Equal(t, want[0], aws.ToString(in.QueueName), arn)
				require.Equal(t, want[1], aws.ToString(in.QueueOwnerAWSAccountId), arn)
				return &sqs.GetQueueUrlOutput{QueueUrl: aws.String(testURL)}, nil
			}
			q, err := sqsqueue.Open(t.Context(), f, arn, nil)
			require.NoError(t, err, arn)
			require.Equal(t, want[0], q.Name())
			require.NoError(t, q.Close())
		}
	})

	t.Run("MalformedARN", func(t *testing.T) {
		t.Parallel()
		for _, arn := range []string{
			"arn:",
			"arn:aws:sqs",
			"arn:aws:sqs:us-east-1:123456789012",   // no name
			"arn:aws:sqs:us-east-1:123456789012:",  // empty name
			"arn::sqs:us-east-1:123456789012:work", // no partition
			"arn:aws:sns:us-east-1:123456789012:work",
			"arn:aws:s3:::work",
			"arn:aws:sqs::123456789012:work",           // no region
			"arn:aws:sqs:us-east-1::work",              // no account
			"arn:aws:sqs:us-east-1:12345:work",         // not 12 digits
			"arn:aws:sqs:us-east-1:12345678901x:work",  // not digits
			"arn:aws:sqs:us-east-1:123456789012:a/b",   // not a queue name
			"arn:aws:sqs:us-east-1:123456789012:a:b",   // nor this
			"arn:aws:sqs:us-east-1:123456789012:.fifo", // nor this
			"arn:aws:sqs:us-east-1:123456789012:" + name80("q") + "x",
		} {
			f := newFake(t)
			_, err := sqsqueue.Open(t.Context(), f, arn, nil)
			requireCode(t, errcode.InvalidArgument, err, arn)
			require.ErrorContains(t, err, strconv.Quote(arn), "the message names the value")
			require.ErrorContains(t, err, "not an SQS queue ARN")
			require.Zero(t, f.Calls("GetQueueUrl")+f.Calls("GetQueueAttributes"), "refused before any call")
		}
	})

	t.Run("ARNOfAnotherRegion", func(t *testing.T) {
		t.Parallel()
		// A client calls one region; SQS would look the name up there and
		// answer QueueDoesNotExist. Open says what is wrong instead.
		f := withOptions{newFake(t), sqs.Options{Region: "us-east-1"}}
		_, err := sqsqueue.Open(t.Context(), f, "arn:aws:sqs:eu-west-1:123456789012:work", nil)
		requireCode(t, errcode.InvalidArgument, err)
		require.ErrorContains(t, err, "arn:aws:sqs:eu-west-1:123456789012:work")
		require.ErrorContains(t, err, "region eu-west-1, but the SQS client calls region us-east-1")
		require.Zero(t, f.Calls("GetQueueUrl")+f.Calls("GetQueueAttributes"))

		// The client's own region is fine; a URL is not checked.
		f.getQueueURL = func(context.Context, *sqs.GetQueueUrlInput) (*sqs.GetQueueUrlOutput, error) {
			return &sqs.GetQueueUrlOutput{QueueUrl: aws.String(testURL)}, nil
		}
		q, err := sqsqueue.Open(t.Context(), f, "arn:aws:sqs:us-east-1:123456789012:work", nil)
		require.NoError(t, err)
		require.NoError(t, q.Close())
	})

	t.Run("MissingName", func(t *testing.T) {
		t.Parallel()
		for _, err := range []error{
			&types.QueueDoesNotExist{Message: aws.String("The specified queue does not exist.")},
			apiErr("AWS.SimpleQueueService.NonExistentQueue", "The specified queue does not exist.", smithy.FaultClient),
		} {
			f := newFake(t)
			f.getQueueURL = func(context.Context, *sqs.GetQueueUrlInput) (*sqs.GetQueueUrlOutput, error) {
				return nil, opErr("GetQueueUrl", err)
			}
			q, openErr := sqsqueue.Open(t.Context(), f, "missing", nil)
			requireCode(t, errcode.NotFound, openErr)
			require.ErrorIs(t, openErr, err, "the SDK error stays in the chain")
			require.Nil(t, q)
		}
	})

	t.Run("MissingURL", func(t *testing.T) {
		t.Parallel()
		f := newFake(t)
		f.getQueueAttributes = func(context.Context, *sqs.GetQueueAttributesInput) (*sqs.GetQueueAttributesOutput, error) {
			return nil, opErr("GetQueueAttributes", &types.QueueDoesNotExist{})
		}
		_, err := sqsqueue.Open(t.Context(), f, testURL, nil)
		requireCode(t, errcode.NotFound, err)
	})

	t.Run("QueueWaitTimeMustBeZero", func(t *testing.T) {
		t.Parallel()
		f := newFake(t)
		f.getQueueAttributes = func(context.Context, *sqs.GetQueueAttributesInput) (*sqs.GetQueueAttributesOutput, error) {
			return &sqs.GetQueueAttributesOutput{Attributes: map[string]string{"ReceiveMessageWaitTimeSeconds": "20"}}, nil
		}
		_, err := sqsqueue.Open(t.Context(), f, testURL, nil)
		requireCode(t, errcode.FailedPrecondition, err)
	})

	t.Run("InvalidArguments", func(t *testing.T) {
		t.Parallel()
		f := newFake(t)
		for _, c := range []struct {
			name string
			opts *sqsqueue.Options
		}{
			{"", nil},
			{"https://sqs.us-east-1.amazonaws.com/", nil},
			{"arn:aws:sqs:us-east-1:123456789012", nil},
			{testURL, &sqsqueue.Options{PollWait: 500 * time.Millisecond}},
			{testURL, &sqsqueue.Options{PollWait: 1500 * time.Millisecond}},
			{testURL, &sqsqueue.Options{PollWait: queue.MaxWait + time.Second}},
			{testURL, &sqsqueue.Options{PollWait: -time.Second}},
		} {
			_, err := sqsqueue.Open(t.Context(), f, c.name, c.opts)
			requireCode(t, errcode.InvalidArgument, err, "%q %+v", c.name, c.opts)
		}
		require.Zero(t, f.Calls("GetQueueAttributes"))
	})
}

// name80 is a queue name of SQS's maximum length, 80 characters.
func name80(c string) string { return strings.Repeat(c, 80) }

// withOptions gives a fake the Options method of *sqs.Client, so Open can
// inspect its HTTP client.
type withOptions struct {
	*fakeSQS
	o sqs.Options
}

func (w withOptions) Options() sqs.Options { return w.o }

func TestOpenChecksHTTPTimeouts(t *testing.T) {
	t.Parallel()
	short := 2 * time.Second
	for _, c := range []struct {
		name     string
		client   sqs.HTTPClient
		pollWait time.Duration
		ok       bool
	}{
		{"SDKDefault", awshttp.NewBuildableClient(), 0, true},
		{"SDKDefaultMaxPollWait", awshttp.NewBuildableClient(), queue.MaxWait, true},
		{"Timeout30s", awshttp.NewBuildableClient().WithTimeout(30 * time.Second), queue.MaxWait, true},
		{"Timeout24sTooShortForMaxPollWait", awshttp.NewBuildableClient().WithTimeout(24 * time.Second), queue.MaxWait, false},
		{"Timeout3s", awshttp.NewBuildableClient().WithTimeout(3 * time.Second), 0, false},
		{"ResponseHeaderTimeout", awshttp.NewBuildableClient().WithTransportOptions(func(tr *http.Transport) { tr.ResponseHeaderTimeout = short }), 0, false},
		{"ReadTimeout", awshttp.NewBuildableClient().WithReadTimeout(short), 0, false},
		{"HTTPClientTimeout", &http.Client{Timeout: short}, 0, false},
		{"HTTPClientHeaderTimeout", &http.Client{Transport: &http.Transport{ResponseHeaderTimeout: short}}, 0, false},
		{"HTTPClientNoTimeout", &http.Client{}, queue.MaxWait, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			f := withOptions{newFake(t), sqs.Options{HTTPClient: c.client}}
			q, err := sqsqueue.Open(t.Context(), f, testURL, &sqsqueue.Options{PollWait: c.pollWait})
			if c.ok {
				require.NoError(t, err)
				require.NoError(t, q.Close())
				return
			}
			requireCode(t, errcode.InvalidArgument, err)
			require.Zero(t, f.Calls("GetQueueAttributes"), "refused before any call")
		})
	}

	t.Run("RealClient", func(t *testing.T) {
		t.Parallel()
		// *sqs.Client is inspected too; the refusal comes before any call.
		client := sqs.New(sqs.Options{Region: "us-east-1", HTTPClient: awshttp.NewBuildableClient().WithTimeout(short)})
		_, err := sqsqueue.Open(t.Context(), client, testURL, nil)
		requireCode(t, errcode.InvalidArgument, err)
	})
}

func TestSendPerEntryResults(t *testing.T) {
	t.Parallel()
	f := newFake(t)
	var got *sqs.SendMessageBatchInput
	f.sendMessageBatch = func(_ context.Context, in *sqs.SendMessageBatchInput) (*sqs.SendMessageBatchOutput, error) {
		got = in
		// Out of order, as SQS may answer; entry 3 is missing.
		return &sqs.SendMessageBatchOutput{
			Successful: []types.SendMessageBatchResultEntry{
				{Id: aws.String("2"), MessageId: aws.String("m2")},
				{Id: aws.String("0"), MessageId: aws.String("m0")},
			},
			Failed: []types.BatchResultErrorEntry{
				{Id: aws.String("5"), Code: aws.String("SomeFutureServerCode"), SenderFault: false},
				{Id: aws.String("1"), Code: aws.String("SomeFutureClientCode"), SenderFault: true, Message: aws.String("no")},
				{Id: aws.String("4"), Code: aws.String("InternalError"), SenderFault: false},
				{Id: aws.String("6"), Code: aws.String("AWS.SimpleQueueService.RequestThrottled"), SenderFault: true},
			},
		}, nil
	}
	q := openFake(t, f, nil)
	res, err := q.Send(t.Context(),
		queue.SendEntry{Body: []byte("héllo"), Delay: 2500 * time.Millisecond, Attributes: map[string]string{"type": "email"}},
		queue.SendEntry{Body: []byte("b")},
		queue.SendEntry{Body: []byte("c")},
		queue.SendEntry{Body: []byte("d")},
		queue.SendEntry{Body: []byte("e")},
		queue.SendEntry{Body: []byte("f")},
		queue.SendEntry{Body: []byte("g")},
	)
	require.NoError(t, err)
	require.Equal(t, 1, f.Calls("SendMessageBatch"))

	require.Equal(t, testURL, aws.ToString(got.QueueUrl))
	require.Len(t, got.Entries, 7)
	for i, e := range got.Entries {
		require.Equal(t, string(rune('0'+i)), aws.ToString(e.Id), "entries are identified by index")
	}
	e0 := got.Entries[0]
	require.Equal(t, "héllo", aws.ToString(e0.MessageBody))
	require.Equal(t, int32(3), e0.DelaySeconds, "delay in whole seconds, rounded up by Queue")
	require.Equal(t, map[string]types.MessageAttributeValue{
		"type": {DataType: aws.String("String"), StringValue: aws.String("email")},
	}, e0.MessageAttributes)
	require.Zero(t, got.Entries[1].DelaySeconds)
	require.Nil(t, got.Entries[1].MessageAttributes)

	require.Equal(t, "m0", res[0].ID)
	require.NoError(t, res[0].Err)
	requireCode(t, errcode.InvalidArgument, res[1].Err, "unknown code, sender's fault")
	require.ErrorContains(t, res[1].Err, "SomeFutureClientCode: no")
	require.Empty(t, res[1].ID)
	require.Equal(t, "m2", res[2].ID)
	requireCode(t, errcode.Internal, res[3].Err, "no answer for the entry")
	requireCode(t, errcode.Unavailable, res[4].Err, "InternalError")
	requireCode(t, errcode.Unavailable, res[5].Err, "unknown code, not the sender's fault")
	requireCode(t, errcode.Unavailable, res[6].Err, "throttled entry, whatever SenderFault says")
}

// TestThrottlingNotRetried: the SDK retries throttling; a call that still
// fails is reported once, as Unavailable (OverLimit as ResourceExhausted),
// with no retry loop in the adapter.
func TestThrottlingNotRetried(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		err  error
		want errcode.Code
	}{
		{apiErr("ThrottlingException", "Rate exceeded", smithy.FaultClient), errcode.Unavailable},
		{&types.RequestThrottled{Message: aws.String("Request is throttled.")}, errcode.Unavailable},
		{apiErr("KMS.ThrottlingException", "", smithy.FaultClient), errcode.Unavailable},
		{&types.OverLimit{Message: aws.String("too many messages in flight")}, errcode.ResourceExhausted},
	} {
		f := newFake(t)
		f.sendMessageBatch = func(context.Context, *sqs.SendMessageBatchInput) (*sqs.SendMessageBatchOutput, error) {
			return nil, opErr("SendMessageBatch", c.err)
		}
		f.receiveMessage = func(context.Context, *sqs.ReceiveMessageInput) (*sqs.ReceiveMessageOutput, error) {
			return nil, opErr("ReceiveMessage", c.err)
		}
		f.deleteMessageBatch = func(context.Context, *sqs.DeleteMessageBatchInput) (*sqs.DeleteMessageBatchOutput, error) {
			return nil, opErr("DeleteMessageBatch", c.err)
		}
		q := openFake(t, f, nil)
		_, err := q.Send(t.Context(), queue.SendEntry{Body: []byte("x")})
		requireCode(t, c.want, err, "send")
		require.True(t, errcode.Retryable(err))
		require.ErrorIs(t, err, c.err)
		_, err = q.Receive(t.Context(), queue.ReceiveOptions{Wait: 5 * time.Second})
		requireCode(t, c.want, err, "receive")
		_, err = q.Delete(t.Context(), "h")
		requireCode(t, c.want, err, "delete")
		for _, op := range []string{"SendMessageBatch", "ReceiveMessage", "DeleteMessageBatch"} {
			require.Equal(t, 1, f.Calls(op), "%s called once for %v", op, c.err)
		}
	}
}

func TestErrorMapping(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name string
		err  error
		want errcode.Code
	}{
		{"QueueDoesNotExist", &types.QueueDoesNotExist{}, errcode.NotFound},
		{"NonExistentQueue", apiErr("AWS.SimpleQueueService.NonExistentQueue", "", smithy.FaultClient), errcode.NotFound},
		{"InvalidParameterValue", apiErr("InvalidParameterValue", "bad", smithy.FaultClient), errcode.InvalidArgument},
		{"InvalidAttributeValue", &types.InvalidAttributeValue{}, errcode.InvalidArgument},
		{"InvalidAttributeName", &types.InvalidAttributeName{}, errcode.InvalidArgument},
		{"BatchRequestTooLong", &types.BatchRequestTooLong{}, errcode.InvalidArgument},
		{"BatchRequestTooLongQuery", apiErr("AWS.SimpleQueueService.BatchRequestTooLong", "", smithy.FaultClient), errcode.InvalidArgument},
		{"TooManyEntries", &types.TooManyEntriesInBatchRequest{}, errcode.InvalidArgument},
		{"ServerFault", apiErr("InternalError", "", smithy.FaultServer), errcode.Unavailable},
		{"UnknownServerFault", apiErr("SomethingNew", "", smithy.FaultServer), errcode.Unavailable},
		{"UnknownClientFault", apiErr("AccessDenied", "", smithy.FaultClient), errcode.Unknown},
		{"HTTP503", &smithyhttp.ResponseError{Response: &smithyhttp.Response{Response: &http.Response{StatusCode: 503}}, Err: errors.New("service unavailable")}, errcode.Unavailable},
		{"Network", &net.OpError{Op: "dial", Net: "tcp", Err: errors.New("connection refused")}, errcode.Unavailable},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			f := newFake(t)
			q := openFake(t, f, nil)
			f.getQueueAttributes = func(context.Context, *sqs.GetQueueAttributesInput) (*sqs.GetQueueAttributesOutput, error) {
				return nil, opErr("GetQueueAttributes", c.err)
			}
			_, err := q.Depth(t.Context())
			requireCode(t, c.want, err)
			require.ErrorIs(t, err, c.err, "the SDK error stays in the chain")
			require.ErrorContains(t, err, "depth of work", "the error says what was being done")
		})
	}
}

func TestCanceledContext(t *testing.T) {
	t.Parallel()

	t.Run("BeforeCall", func(t *testing.T) {
		t.Parallel()
		f := newFake(t)
		q := openFake(t, f, nil)
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		_, err := q.Driver().Send(ctx, []queue.SendEntry{{Body: []byte("x")}})
		requireCode(t, errcode.Canceled, err)
		require.ErrorIs(t, err, context.Canceled)
		_, err = q.Driver().Receive(ctx, queue.ReceiveOptions{Wait: time.Second})
		requireCode(t, errcode.Canceled, err)
		_, err = q.Driver().Depth(ctx)
		requireCode(t, errcode.Canceled, err)
		require.Zero(t, f.Calls("SendMessageBatch")+f.Calls("ReceiveMessage"))
	})

	t.Run("DuringCall", func(t *testing.T) {
		t.Parallel()
		f := newFake(t)
		q := openFake(t, f, nil)
		ctx, cancel := context.WithCancel(t.Context())
		f.deleteMessageBatch = func(ctx context.Context, _ *sqs.DeleteMessageBatchInput) (*sqs.DeleteMessageBatchOutput, error) {
			cancel()
			return nil, opErr("DeleteMessageBatch", ctx.Err())
		}
		_, err := q.Delete(ctx, "h")
		requireCode(t, errcode.Canceled, err)
		require.ErrorIs(t, err, context.Canceled, "ctx's error passes through")
	})

	t.Run("OtherErrorAfterCancel", func(t *testing.T) {
		t.Parallel()
		f := newFake(t)
		q := openFake(t, f, nil)
		ctx, cancel := context.WithCancel(t.Context())
		f.deleteMessageBatch = func(context.Context, *sqs.DeleteMessageBatchInput) (*sqs.DeleteMessageBatchOutput, error) {
			cancel()
			return nil, opErr("DeleteMessageBatch", &net.OpError{Op: "read", Err: errors.New("use of closed network connection")})
		}
		_, err := q.Delete(ctx, "h")
		requireCode(t, errcode.Canceled, err, "the caller's context ended: that is the reason")
	})
}

func TestClosed(t *testing.T) {
	t.Parallel()
	f := newFake(t)
	q := openFake(t, f, nil)
	d := q.Driver()
	require.NoError(t, d.Close())
	require.NoError(t, d.Close(), "twice")
	ctx := t.Context()
	_, err := d.Send(ctx, []queue.SendEntry{{Body: []byte("x")}})
	requireCode(t, errcode.Closed, err)
	_, err = d.Receive(ctx, queue.ReceiveOptions{})
	requireCode(t, errcode.Closed, err)
	_, err = d.ChangeVisibility(ctx, []queue.VisibilityChange{{Handle: "h"}})
	requireCode(t, errcode.Closed, err)
	_, err = d.Delete(ctx, []string{"h"})
	requireCode(t, errcode.Closed, err)
	_, err = d.Depth(ctx)
	requireCode(t, errcode.Closed, err)
	require.Equal(t, 1, f.Calls("GetQueueAttributes"), "only Open's")
}

// TestChangeVisibilityAsSQS pins what SQS answers and moto does not: a
// handle whose message is no longer in flight under it fails its entry
// with FailedPrecondition; a malformed one, or a timeout over the limit,
// with InvalidArgument.
func TestChangeVisibilityAsSQS(t *testing.T) {
	t.Parallel()
	f := newFake(t)
	var got *sqs.ChangeMessageVisibilityBatchInput
	f.changeMessageVisibilityBatch = func(_ context.Context, in *sqs.ChangeMessageVisibilityBatchInput) (*sqs.ChangeMessageVisibilityBatchOutput, error) {
		got = in
		fail := func(id, code, msg string) types.BatchResultErrorEntry {
			return types.BatchResultErrorEntry{Id: aws.String(id), Code: aws.String(code), Message: aws.String(msg), SenderFault: true}
		}
		return &sqs.ChangeMessageVisibilityBatchOutput{
			Successful: []types.ChangeMessageVisibilityBatchResultEntry{{Id: aws.String("1")}},
			Failed: []types.BatchResultErrorEntry{
				fail("0", "InvalidParameterValue", "Value stale-handle for parameter ReceiptHandle is invalid. Reason: Message does not exist or is not available for visibility timeout change."),
				fail("2", "AWS.SimpleQueueService.MessageNotInflight", ""),
				fail("3", "MessageNotInflight", ""),
				fail("4", "ReceiptHandleIsInvalid", `The input receipt handle "x" is not a valid receipt handle.`),
				fail("5", "InvalidParameterValue", "Value 43200 for parameter VisibilityTimeout is invalid. Reason: Total VisibilityTimeout for the message is beyond the limit [43200 seconds]"),
			},
		}, nil
	}
	q := openFake(t, f, nil)
	errs, err := q.ChangeVisibility(t.Context(),
		queue.VisibilityChange{Handle: "stale-handle"},
		queue.VisibilityChange{Handle: "current", Timeout: 1500 * time.Millisecond},
		queue.VisibilityChange{Handle: "not-inflight-query"},
		queue.VisibilityChange{Handle: "not-inflight"},
		queue.VisibilityChange{Handle: "x"},
		queue.VisibilityChange{Handle: "too-long", Timeout: queue.MaxVisibility},
		queue.VisibilityChange{Handle: "unanswered"},
	)
	require.NoError(t, err)
	require.Len(t, errs, 7)
	requireCode(t, errcode.FailedPrecondition, errs[0], "stale handle")
	require.NoError(t, errs[1])
	requireCode(t, errcode.FailedPrecondition, errs[2], "MessageNotInflight (query code)")
	requireCode(t, errcode.FailedPrecondition, errs[3], "MessageNotInflight")
	requireCode(t, errcode.InvalidArgument, errs[4], "malformed handle")
	requireCode(t, errcode.InvalidArgument, errs[5], "beyond the 12-hour limit")
	requireCode(t, errcode.Internal, errs[6], "no answer")

	require.Equal(t, int32(2), got.Entries[1].VisibilityTimeout, "whole seconds, rounded up")
	require.Equal(t, int32(43200), got.Entries[5].VisibilityTimeout)
	require.Equal(t, "current", aws.ToString(got.Entries[1].ReceiptHandle))
}

// TestDeleteAsSQS: SQS answers a stale handle with success ("succeeds, but
// the message might not be deleted"); a batch sends each handle once.
func TestDeleteAsSQS(t *testing.T) {
	t.Parallel()
	f := newFake(t)
	var sent []string
	f.deleteMessageBatch = func(_ context.Context, in *sqs.DeleteMessageBatchInput) (*sqs.DeleteMessageBatchOutput, error) {
		out := &sqs.DeleteMessageBatchOutput{}
		for _, e := range in.Entries {
			sent = append(sent, aws.ToString(e.ReceiptHandle))
			if aws.ToString(e.ReceiptHandle) == "malformed" {
				out.Failed = append(out.Failed, types.BatchResultErrorEntry{Id: e.Id, Code: aws.String("ReceiptHandleIsInvalid"), SenderFault: true})
				continue
			}
			out.Successful = append(out.Successful, types.DeleteMessageBatchResultEntry{Id: e.Id})
		}
		return out, nil
	}
	q := openFake(t, f, nil)
	errs, err := q.Delete(t.Context(), "h1", "stale", "malformed", "h1", "malformed")
	require.NoError(t, err)
	require.Equal(t, []string{"h1", "stale", "malformed"}, sent)
	require.NoError(t, errs[0])
	require.NoError(t, errs[1], "a stale handle succeeds, as SQS answers")
	requireCode(t, errcode.InvalidArgument, errs[2])
	require.NoError(t, errs[3], "a repeated handle gets its first's result")
	requireCode(t, errcode.InvalidArgument, errs[4])
}

func TestReceiveMapsMessages(t *testing.T) {
	t.Parallel()
	f := newFake(t)
	var got *sqs.ReceiveMessageInput
	f.receiveMessage = func(_ context.Context, in *sqs.ReceiveMessageInput) (*sqs.ReceiveMessageOutput, error) {
		got = in
		return &sqs.ReceiveMessageOutput{Messages: []types.Message{
			{
				MessageId:     aws.String("id-1"),
				ReceiptHandle: aws.String("handle-1"),
				Body:          aws.String("héllo 🚀"),
				Attributes:    map[string]string{"ApproximateReceiveCount": "3", "SentTimestamp": "1700000000123"},
				MessageAttributes: map[string]types.MessageAttributeValue{
					"s": {DataType: aws.String("String"), StringValue: aws.String("v")},
					"n": {DataType: aws.String("Number"), StringValue: aws.String("42")},
					"c": {DataType: aws.String("String.custom"), StringValue: aws.String("x")},
					"b": {DataType: aws.String("Binary"), BinaryValue: []byte{1, 2}},
				},
			},
			{
				MessageId:     aws.String("id-2"),
				ReceiptHandle: aws.String("handle-2"),
				Body:          aws.String("plain"),
				Attributes:    map[string]string{"ApproximateReceiveCount": "1", "SentTimestamp": "1700000000999"},
			},
			{
				// Unreadable: skipped, it comes back after its timeout.
				MessageId: aws.String("id-3"), ReceiptHandle: aws.String("handle-3"), Body: aws.String("?"),
			},
		}}, nil
	}
	q := openFake(t, f, nil)
	msgs, err := q.Receive(t.Context(), queue.ReceiveOptions{Max: 7, Wait: 3 * time.Second, Visibility: 90 * time.Second})
	require.NoError(t, err)
	want := []*queue.Message{
		{ID: "id-1", Body: []byte("héllo 🚀"), Handle: "handle-1", ReceiveCount: 3,
			SentAt: time.UnixMilli(1700000000123).UTC(), Attributes: map[string]string{"s": "v", "n": "42", "c": "x"}},
		{ID: "id-2", Body: []byte("plain"), Handle: "handle-2", ReceiveCount: 1, SentAt: time.UnixMilli(1700000000999).UTC()},
	}
	if diff := cmp.Diff(want, msgs); diff != "" {
		t.Fatalf("messages (-want +got):\n%s", diff)
	}
	require.Equal(t, time.UTC, msgs[0].SentAt.Location())

	require.Equal(t, testURL, aws.ToString(got.QueueUrl))
	require.Equal(t, int32(7), got.MaxNumberOfMessages)
	require.Equal(t, int32(1), got.WaitTimeSeconds, "one slice of PollWait")
	require.Equal(t, int32(90), got.VisibilityTimeout)
	require.Equal(t, []string{"All"}, got.MessageAttributeNames)
	require.ElementsMatch(t, []types.MessageSystemAttributeName{"ApproximateReceiveCount", "SentTimestamp"}, got.MessageSystemAttributeNames)

	t.Run("OnlyUnreadable", func(t *testing.T) {
		f.receiveMessage = func(context.Context, *sqs.ReceiveMessageInput) (*sqs.ReceiveMessageOutput, error) {
			return &sqs.ReceiveMessageOutput{Messages: []types.Message{{MessageId: aws.String("id-3")}}}, nil
		}
		_, err := q.Receive(t.Context(), queue.ReceiveOptions{})
		requireCode(t, errcode.Internal, err)
	})
}

// waits records the WaitTimeSeconds of each ReceiveMessage call and
// answers with no messages at once.
type waits struct {
	mu   sync.Mutex
	got  []int32
	hook func(n int) // after the n-th call (from 1)
}

func (w *waits) receive(_ context.Context, in *sqs.ReceiveMessageInput) (*sqs.ReceiveMessageOutput, error) {
	w.mu.Lock()
	w.got = append(w.got, in.WaitTimeSeconds)
	n := len(w.got)
	w.mu.Unlock()
	if w.hook != nil {
		w.hook(n)
	}
	return &sqs.ReceiveMessageOutput{}, nil
}

func (w *waits) calls() []int32 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]int32(nil), w.got...)
}

func TestReceiveSlices(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name     string
		wait     time.Duration
		pollWait time.Duration
		want     []int32
	}{
		{"ShortPoll", 0, 0, []int32{0}},
		{"UnderASecond", 300 * time.Millisecond, 0, []int32{1}},
		{"DefaultSlices", 3 * time.Second, 0, []int32{1, 1, 1}},
		{"LongerSlices", 5 * time.Second, 2 * time.Second, []int32{2, 2, 1}},
		{"OneCall", queue.MaxWait, queue.MaxWait, []int32{20}},
		{"RoundedUp", 1500 * time.Millisecond, 5 * time.Second, []int32{2}},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			f := newFake(t)
			w := &waits{}
			f.receiveMessage = w.receive
			q := openFake(t, f, &sqsqueue.Options{PollWait: c.pollWait})
			msgs, err := q.Receive(t.Context(), queue.ReceiveOptions{Wait: c.wait})
			require.NoError(t, err)
			require.Empty(t, msgs)
			require.Equal(t, c.want, w.calls())
		})
	}

	t.Run("DeadlineCutsTheWait", func(t *testing.T) {
		t.Parallel()
		f := newFake(t)
		w := &waits{}
		f.receiveMessage = w.receive
		q := openFake(t, f, &sqsqueue.Options{PollWait: 10 * time.Second})
		ctx, cancel := context.WithTimeout(t.Context(), 1500*time.Millisecond)
		defer cancel()
		_, err := q.Receive(ctx, queue.ReceiveOptions{Wait: 10 * time.Second})
		require.NoError(t, err)
		require.Equal(t, int32(2), w.calls()[0], "no call waits past the caller's deadline (rounded up)")
	})

	t.Run("StopsWhenContextEnds", func(t *testing.T) {
		t.Parallel()
		f := newFake(t)
		ctx, cancel := context.WithCancel(t.Context())
		w := &waits{hook: func(n int) {
			if n == 2 {
				cancel()
			}
		}}
		f.receiveMessage = w.receive
		q := openFake(t, f, nil)
		msgs, err := q.Receive(ctx, queue.ReceiveOptions{Wait: queue.MaxWait})
		require.NoError(t, err, "a context that ends during the wait is no error")
		require.Empty(t, msgs)
		require.Len(t, w.calls(), 2, "no call after the context ended")
	})
}

// blockingReceive makes ReceiveMessage block until release is closed, then
// answer with one message. started is closed when the call begins; the
// call's context error at release is reported on callErr.
type blockingReceive struct {
	started, release chan struct{}
	callErr          chan error
}

func newBlockingReceive() *blockingReceive {
	return &blockingReceive{started: make(chan struct{}), release: make(chan struct{}), callErr: make(chan error, 1)}
}

func (b *blockingReceive) receive(ctx context.Context, _ *sqs.ReceiveMessageInput) (*sqs.ReceiveMessageOutput, error) {
	close(b.started)
	<-b.release
	b.callErr <- ctx.Err()
	return &sqs.ReceiveMessageOutput{Messages: []types.Message{{
		MessageId: aws.String("id-1"), ReceiptHandle: aws.String("handle-1"), Body: aws.String("claimed"),
		Attributes: map[string]string{"ApproximateReceiveCount": "1", "SentTimestamp": "1700000000000"},
	}}}, nil
}

type receiveResult struct {
	msgs []*queue.Message
	err  error
}

// TestReceiveDoesNotAbandonCall: when ctx ends while a ReceiveMessage call
// waits, the call is let finish (SQS would claim messages for an
// abandoned poll and hide them) and what it claimed is returned.
func TestReceiveDoesNotAbandonCall(t *testing.T) {
	t.Parallel()
	f := newFake(t)
	b := newBlockingReceive()
	f.receiveMessage = b.receive
	q := openFake(t, f, nil)

	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan receiveResult, 1)
	go func() {
		msgs, err := q.Receive(ctx, queue.ReceiveOptions{Wait: 10 * time.Second})
		done <- receiveResult{msgs, err}
	}()
	<-b.started
	cancel()
	close(b.release)
	r := <-done
	require.NoError(t, <-b.callErr, "the call's context was not canceled with the caller's")
	require.NoError(t, r.err)
	require.Len(t, r.msgs, 1, "the claimed message is returned, not stranded")
	require.Equal(t, "claimed", string(r.msgs[0].Body))
	require.Equal(t, 1, f.Calls("ReceiveMessage"))
}

// TestReceiveCloseReleases: messages a call returns after Close are made
// visible again and Receive fails with Closed.
func TestReceiveCloseReleases(t *testing.T) {
	t.Parallel()
	f := newFake(t)
	b := newBlockingReceive()
	f.receiveMessage = b.receive
	released := make(chan *sqs.ChangeMessageVisibilityBatchInput, 1)
	f.changeMessageVisibilityBatch = func(ctx context.Context, in *sqs.ChangeMessageVisibilityBatchInput) (*sqs.ChangeMessageVisibilityBatchOutput, error) {
		require.NoError(t, ctx.Err())
		released <- in
		return &sqs.ChangeMessageVisibilityBatchOutput{Successful: []types.ChangeMessageVisibilityBatchResultEntry{{Id: in.Entries[0].Id}}}, nil
	}
	q, err := sqsqueue.Open(t.Context(), f, testURL, nil)
	require.NoError(t, err)

	done := make(chan receiveResult, 1)
	go func() {
		msgs, err := q.Receive(t.Context(), queue.ReceiveOptions{Wait: 10 * time.Second})
		done <- receiveResult{msgs, err}
	}()
	<-b.started
	require.NoError(t, q.Close())
	close(b.release)
	r := <-done
	requireCode(t, errcode.Closed, r.err)
	require.Empty(t, r.msgs)
	in := <-released
	require.Len(t, in.Entries, 1)
	require.Equal(t, "handle-1", aws.ToString(in.Entries[0].ReceiptHandle))
	require.Zero(t, in.Entries[0].VisibilityTimeout)
}

func TestDepth(t *testing.T) {
	t.Parallel()
	f := newFake(t)
	q := openFake(t, f, nil)
	attrs := map[string]string{
		"ApproximateNumberOfMessages":           "5",
		"ApproximateNumberOfMessagesNotVisible": "2",
		"ApproximateNumberOfMessagesDelayed":    "1",
	}
	f.getQueueAttributes = func(_ context.Context, in *sqs.GetQueueAttributesInput) (*sqs.GetQueueAttributesOutput, error) {
		require.ElementsMatch(t, []types.QueueAttributeName{
			"ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible", "ApproximateNumberOfMessagesDelayed",
		}, in.AttributeNames)
		return &sqs.GetQueueAttributesOutput{Attributes: attrs}, nil
	}
	d, err := q.Depth(t.Context())
	require.NoError(t, err)
	require.Equal(t, queue.Depth{Visible: 5, InFlight: 2, Delayed: 1}, d)

	attrs["ApproximateNumberOfMessagesDelayed"] = "many"
	_, err = q.Depth(t.Context())
	requireCode(t, errcode.Internal, err)
}

func TestCreateQueue(t *testing.T) {
	t.Parallel()
	const dlqURL = "https://sqs.us-east-1.amazonaws.com/123456789012/work-dlq"
	const dlqARN = "arn:aws:sqs:us-east-1:123456789012:work-dlq"
	base := map[string]string{
		"VisibilityTimeout":             "60",
		"MessageRetentionPeriod":        "1209600",
		"MaximumMessageSize":            "1048576",
		"ReceiveMessageWaitTimeSeconds": "0",
	}
	with := func(k, v string) map[string]string {
		m := map[string]string{k: v}
		for k, v := range base {
			m[k] = v
		}
		return m
	}
	newAdmin := func(t *testing.T) *fakeSQS {
		f := newFake(t)
		f.getQueueURL = func(_ context.Context, in *sqs.GetQueueUrlInput) (*sqs.GetQueueUrlOutput, error) {
			switch aws.ToString(in.QueueName) {
			case "work-dlq":
				return &sqs.GetQueueUrlOutput{QueueUrl: aws.String(dlqURL)}, nil
			case "work":
				return &sqs.GetQueueUrlOutput{QueueUrl: aws.String(testURL)}, nil
			}
			return nil, opErr("GetQueueUrl", &types.QueueDoesNotExist{})
		}
		f.getQueueAttributes = func(_ context.Context, in *sqs.GetQueueAttributesInput) (*sqs.GetQueueAttributesOutput, error) {
			require.Equal(t, dlqURL, aws.ToString(in.QueueUrl))
			require.Equal(t, []types.QueueAttributeName{"QueueArn"}, in.AttributeNames)
			return &sqs.GetQueueAttributesOutput{Attributes: map[string]string{"QueueArn": dlqARN}}, nil
		}
		return f
	}

	t.Run("Plain", func(t *testing.T) {
		t.Parallel()
		f := newAdmin(t)
		f.createQueue = func(_ context.Context, in *sqs.CreateQueueInput) (*sqs.CreateQueueOutput, error) {
			require.Equal(t, "work", aws.ToString(in.QueueName))
			require.Equal(t, base, in.Attributes, "no RedrivePolicy on a new queue without one")
			return &sqs.CreateQueueOutput{QueueUrl: aws.String(testURL)}, nil
		}
		url, err := sqsqueue.CreateQueue(t.Context(), f, "work", sqsqueue.Config{Visibility: 59500 * time.Millisecond})
		require.NoError(t, err)
		require.Equal(t, testURL, url)
	})

	t.Run("DeadLetter", func(t *testing.T) {
		t.Parallel()
		f := newAdmin(t)
		f.createQueue = func(_ context.Context, in *sqs.CreateQueueInput) (*sqs.CreateQueueOutput, error) {
			require.Equal(t, with("RedrivePolicy", `{"deadLetterTargetArn":"`+dlqARN+`","maxReceiveCount":"5"}`), in.Attributes)
			return &sqs.CreateQueueOutput{QueueUrl: aws.String(testURL)}, nil
		}
		_, err := sqsqueue.CreateQueue(t.Context(), f, "work", sqsqueue.Config{Visibility: time.Minute, DeadLetter: "work-dlq", MaxReceives: 5})
		require.NoError(t, err)
	})

	t.Run("DeadLetterByARNOrURL", func(t *testing.T) {
		t.Parallel()
		// However the dead-letter queue is given, the redrive policy names
		// it by the QueueArn SQS reports, which also checks that it exists.
		for _, c := range []struct {
			dlq          string
			owner        string
			getQueueURLs int
		}{
			{dlq: dlqARN, owner: "123456789012", getQueueURLs: 1},
			{dlq: dlqURL, getQueueURLs: 0},
		} {
			f := newAdmin(t)
			get := f.getQueueURL
			f.getQueueURL = func(ctx context.Context, in *sqs.GetQueueUrlInput) (*sqs.GetQueueUrlOutput, error) {
				require.Equal(t, "work-dlq", aws.ToString(in.QueueName))
				require.Equal(t, c.owner, aws.ToString(in.QueueOwnerAWSAccountId))
				return get(ctx, in)
			}
			f.createQueue = func(_ context.Context, in *sqs.CreateQueueInput) (*sqs.CreateQueueOutput, error) {
				require.Equal(t, "work", aws.ToString(in.QueueName))
				require.Equal(t, with("RedrivePolicy", `{"deadLetterTargetArn":"`+dlqARN+`","maxReceiveCount":"5"}`), in.Attributes)
				return &sqs.CreateQueueOutput{QueueUrl: aws.String(testURL)}, nil
			}
			_, err := sqsqueue.CreateQueue(t.Context(), f, "work", sqsqueue.Config{Visibility: time.Minute, DeadLetter: c.dlq, MaxReceives: 5})
			require.NoError(t, err, c.dlq)
			require.Equal(t, c.getQueueURLs, f.Calls("GetQueueUrl"), c.dlq)
			require.Equal(t, 1, f.Calls("GetQueueAttributes"), c.dlq)
		}
	})

	t.Run("DeadLetterARNInvalid", func(t *testing.T) {
		t.Parallel()
		f := newAdmin(t)
		for _, dlq := range []string{"arn:aws:sns:us-east-1:123456789012:work-dlq", "arn:aws:sqs:us-east-1:123456789012"} {
			_, err := sqsqueue.CreateQueue(t.Context(), f, "work", sqsqueue.Config{DeadLetter: dlq, MaxReceives: 3})
			requireCode(t, errcode.InvalidArgument, err, dlq)
			require.ErrorContains(t, err, dlq)
		}
		missing := "arn:aws:sqs:us-east-1:123456789012:nope"
		_, err := sqsqueue.CreateQueue(t.Context(), f, "work", sqsqueue.Config{DeadLetter: missing, MaxReceives: 3})
		requireCode(t, errcode.NotFound, err)
		require.Zero(t, f.Calls("CreateQueue"))
	})

	t.Run("ExistsWithOtherAttributes", func(t *testing.T) {
		t.Parallel()
		f := newAdmin(t)
		f.createQueue = func(context.Context, *sqs.CreateQueueInput) (*sqs.CreateQueueOutput, error) {
			return nil, opErr("CreateQueue", &types.QueueNameExists{Message: aws.String("A queue already exists with the same name and a different value for attribute VisibilityTimeout")})
		}
		var set *sqs.SetQueueAttributesInput
		f.setQueueAttributes = func(_ context.Context, in *sqs.SetQueueAttributesInput) (*sqs.SetQueueAttributesOutput, error) {
			set = in
			return &sqs.SetQueueAttributesOutput{}, nil
		}
		url, err := sqsqueue.CreateQueue(t.Context(), f, "work", sqsqueue.Config{Visibility: time.Minute})
		require.NoError(t, err)
		require.Equal(t, testURL, url)
		require.Equal(t, testURL, aws.ToString(set.QueueUrl))
		require.Equal(t, with("RedrivePolicy", ""), set.Attributes, "converges, removing a redrive policy it no longer has")
	})

	t.Run("MissingDeadLetter", func(t *testing.T) {
		t.Parallel()
		f := newAdmin(t)
		_, err := sqsqueue.CreateQueue(t.Context(), f, "work", sqsqueue.Config{DeadLetter: "nope", MaxReceives: 3})
		requireCode(t, errcode.NotFound, err)
		require.Zero(t, f.Calls("CreateQueue"))
	})

	t.Run("Invalid", func(t *testing.T) {
		t.Parallel()
		f := newAdmin(t)
		for _, c := range []struct {
			name string
			cfg  sqsqueue.Config
		}{
			{"", sqsqueue.Config{}},
			{"has space", sqsqueue.Config{}},
			{string(make([]byte, 81)), sqsqueue.Config{}},
			{"work", sqsqueue.Config{Visibility: queue.MaxVisibility + time.Second}},
			{"work", sqsqueue.Config{Visibility: -time.Second}},
			{"work", sqsqueue.Config{MaxReceives: 3}},
			{"work", sqsqueue.Config{DeadLetter: "work-dlq"}},
			{"work", sqsqueue.Config{DeadLetter: "work-dlq", MaxReceives: sqsqueue.MaxMaxReceives + 1}},
			{"work", sqsqueue.Config{DeadLetter: "work", MaxReceives: 3}},
		} {
			_, err := sqsqueue.CreateQueue(t.Context(), f, c.name, c.cfg)
			requireCode(t, errcode.InvalidArgument, err, "%q %+v", c.name, c.cfg)
		}
		require.Zero(t, f.Calls("CreateQueue")+f.Calls("GetQueueUrl"))
	})
}
