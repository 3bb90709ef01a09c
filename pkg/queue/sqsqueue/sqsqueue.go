// Package sqsqueue is the aws profile's queue adapter: package queue's
// contract on an Amazon SQS standard queue, through aws-sdk-go-v2.
//
//	client := sqs.NewFromConfig(cfg) // cfg from awsconfig.Load
//	dlqURL, err := sqsqueue.CreateQueue(ctx, client, "work-dlq", sqsqueue.Config{})
//	_, err = sqsqueue.CreateQueue(ctx, client, "work", sqsqueue.Config{Visibility: time.Minute, DeadLetter: "work-dlq", MaxReceives: 5})
//	work, err := sqsqueue.Open(ctx, client, "work", nil) // a *queue.Queue; a queue URL or ARN works too
//
// Each Driver call is one SQS call: Send is SendMessageBatch, Receive is
// ReceiveMessage (one or more, see below), ChangeVisibility and Delete are
// ChangeMessageVisibilityBatch and DeleteMessageBatch, Depth is
// GetQueueAttributes. Batch calls succeed as a whole while entries fail;
// each entry's failure is mapped to its own error. Errors are mapped to
// errcode once, here (see "Errors"). The SDK retries throttling and
// server errors itself (awsconfig uses its adaptive mode); this package
// adds no retry loop of its own, so a call that still fails after the
// SDK's retries fails with errcode.Unavailable and the caller decides.
//
// # Naming a queue
//
// Open, and CreateQueue for the dead-letter queue, take a queue in any of
// the forms AWS gives it:
//
//   - a name ("work"): resolved with GetQueueUrl, in the client's account
//     and region;
//   - a URL ("https://sqs.us-east-1.amazonaws.com/123456789012/work"): used
//     as it is, with no call;
//   - an ARN ("arn:aws:sqs:us-east-1:123456789012:work"): resolved with
//     GetQueueUrl for its name with QueueOwnerAWSAccountId its account,
//     which is how SQS finds another account's queue (that account's queue
//     policy must grant this one access).
//
// A client calls one region's endpoint and SQS looks names up in that
// region only, so an ARN whose region is not the client's is refused with
// errcode.InvalidArgument saying so, before any call (SQS would answer
// QueueDoesNotExist). A malformed ARN (another service, a part missing, an
// account id that is not 12 digits, an invalid queue name) is
// errcode.InvalidArgument naming the value. The handle's Name is the
// queue's name in every form.
//
// CreateQueue itself takes a plain name: it creates in the client's
// account and region. Its redrive policy names the dead-letter queue by the
// QueueArn SQS reports for it, however it was given (which also checks
// that it exists). AWS advises keeping a dead-letter queue in its source
// queue's account and region; a dead-letter queue given by ARN is resolved
// in the client's region like any other.
//
// # Receiving
//
// Receive asks ReceiveMessage for up to Max messages, with
// MessageSystemAttributeNames ApproximateReceiveCount (ReceiveCount) and
// SentTimestamp (SentAt, milliseconds, UTC), all message attributes, and
// VisibilityTimeout when ReceiveOptions.Visibility is set. Wait is rounded
// up to whole seconds; 0 is a short poll, which on SQS samples a subset of
// servers and may miss messages that are there.
//
// A long poll is made of ReceiveMessage calls that each wait at most
// Options.PollWait (1 s by default), and a call once sent is never
// abandoned: when ctx ends or the queue is closed while a call waits,
// Receive lets that call finish and returns what it got. The reason is how
// SQS treats a client that goes away: the server does not notice, keeps
// polling for the rest of WaitTimeSeconds, and a message it claims then is
// hidden from everyone for its visibility timeout and has used up one of
// its receives (a message claimed that way often enough dead-letters
// without ever being processed). Short calls bound how long Receive takes
// to return after ctx ends (PollWait plus a round trip; the call's wait is
// also cut to fit ctx's deadline) at the price of more requests while a
// queue is idle: an idle receiver makes 60 calls a minute at the default,
// 3 at PollWait 20 s. Messages a call returns after Close are made visible
// again (ChangeMessageVisibility to 0) and Receive fails with
// errcode.Closed.
//
// # The HTTP client
//
// A ReceiveMessage call stays open for up to PollWait before SQS answers
// and sends nothing meanwhile, so no timeout of the HTTP client may be
// shorter: not http.Client.Timeout, not the transport's
// ResponseHeaderTimeout, not the SDK's read (inactivity) timeout. The
// SDK's default client (what sqs.NewFromConfig builds) has no overall
// timeout and is right as it is. If you set one, make it more than 25 s,
// so that PollWait can be raised to SQS's 20 s maximum:
//
//	client := sqs.NewFromConfig(cfg, func(o *sqs.Options) {
//		o.HTTPClient = awshttp.NewBuildableClient().WithTimeout(30 * time.Second)
//	})
//
// Open checks this for an *sqs.Client whose HTTP client is the SDK's
// BuildableClient or an *http.Client, and refuses (errcode.InvalidArgument)
// a timeout shorter than PollWait plus 5 s.
//
// # Errors
//
// Whole calls: throttling (ThrottlingException, RequestThrottled,
// KMS.ThrottlingException), server errors (5xx) and transport failures are
// errcode.Unavailable; OverLimit (the in-flight limit) is
// errcode.ResourceExhausted; QueueDoesNotExist is errcode.NotFound;
// InvalidParameterValue, InvalidAttributeValue, BatchRequestTooLong and the
// other malformed-request codes are errcode.InvalidArgument; an ended ctx
// is errcode.Canceled (the context error stays in the chain); use after
// Close is errcode.Closed. Batch entries: ReceiptHandleIsInvalid is
// errcode.InvalidArgument; for ChangeVisibility, MessageNotInflight and
// InvalidParameterValue "Message does not exist or is not available for
// visibility timeout change" (a stale handle or a deleted message) are
// errcode.FailedPrecondition, any other InvalidParameterValue (such as the
// 12-hour limit) errcode.InvalidArgument; an entry with an unmapped code is
// errcode.InvalidArgument when SQS says the sender is at fault, else
// errcode.Unavailable.
//
// # Differences from sqlitequeue and from the contract
//
// The contract is SQS's, so there are few, all SQS's own:
//
//   - Depth is SQS's Approximate* attributes, which may lag by about a
//     minute after producers stop (sqlitequeue's are exact).
//   - Delivery may duplicate (at least once); order is not kept; a short
//     poll may miss messages; Receive may return fewer than Max even when
//     more are visible.
//   - Delete with an old handle "succeeds, but the message might not be
//     deleted" (SQS's words): usually it is not, as the contract says.
//   - Messages older than the queue's retention period are deleted by SQS.
//     CreateQueue sets it to the maximum, 14 days, so a long outage does
//     not silently drop work; jobfleet also does not rely on it (the reaper
//     re-sends messages for QUEUED jobs).
//   - Message attributes come back as strings; an attribute SQS returns
//     with a Binary data type (not sent by this package) is dropped.
//   - A queue's ReceiveMessageWaitTimeSeconds must be 0 (Open checks it),
//     because the SDK cannot send WaitTimeSeconds=0 and a short poll would
//     otherwise wait the queue's default.
//   - Delete sends each distinct handle of a batch once; duplicates get the
//     same result.
//
// Against moto (the offline test endpoint) more differs: any handle a
// message ever had deletes it and changes its visibility, a deleted
// message's handle is ReceiptHandleIsInvalid, the 12-hour visibility limit
// counts from the send, and concurrent receives may return the same
// message twice. The conformance suite skips the cases those break
// (queuetest.Quirk) and sqsqueue_test pins the SQS behaviour with a fake
// API.
package sqsqueue

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/jobfleet/jobfleet/pkg/errcode"
	"github.com/jobfleet/jobfleet/pkg/queue"
)

// API is the part of the SQS client a queue uses; *sqs.Client satisfies
// it. Tests substitute fakes for behaviours an emulator cannot produce.
type API interface {
	SendMessageBatch(ctx context.Context, in *sqs.SendMessageBatchInput, optFns ...func(*sqs.Options)) (*sqs.SendMessageBatchOutput, error)
	ReceiveMessage(ctx context.Context, in *sqs.ReceiveMessageInput, optFns ...func(*sqs.Options)) (*sqs.ReceiveMessageOutput, error)
	ChangeMessageVisibilityBatch(ctx context.Context, in *sqs.ChangeMessageVisibilityBatchInput, optFns ...func(*sqs.Options)) (*sqs.ChangeMessageVisibilityBatchOutput, error)
	DeleteMessageBatch(ctx context.Context, in *sqs.DeleteMessageBatchInput, optFns ...func(*sqs.Options)) (*sqs.DeleteMessageBatchOutput, error)
	GetQueueAttributes(ctx context.Context, in *sqs.GetQueueAttributesInput, optFns ...func(*sqs.Options)) (*sqs.GetQueueAttributesOutput, error)
	GetQueueUrl(ctx context.Context, in *sqs.GetQueueUrlInput, optFns ...func(*sqs.Options)) (*sqs.GetQueueUrlOutput, error)
}

// AdminAPI is the part of the SQS client CreateQueue uses; *sqs.Client
// satisfies it.
type AdminAPI interface {
	CreateQueue(ctx context.Context, in *sqs.CreateQueueInput, optFns ...func(*sqs.Options)) (*sqs.CreateQueueOutput, error)
	GetQueueUrl(ctx context.Context, in *sqs.GetQueueUrlInput, optFns ...func(*sqs.Options)) (*sqs.GetQueueUrlOutput, error)
	GetQueueAttributes(ctx context.Context, in *sqs.GetQueueAttributesInput, optFns ...func(*sqs.Options)) (*sqs.GetQueueAttributesOutput, error)
	SetQueueAttributes(ctx context.Context, in *sqs.SetQueueAttributesInput, optFns ...func(*sqs.Options)) (*sqs.SetQueueAttributesOutput, error)
}

// DefaultPollWait is Options.PollWait's default.
const DefaultPollWait = time.Second

// httpMargin is how much longer than PollWait the HTTP client must allow
// a ReceiveMessage call.
const httpMargin = 5 * time.Second

// Options configure a queue handle. nil means defaults.
type Options struct {
	// PollWait is the longest WaitTimeSeconds of one ReceiveMessage call:
	// whole seconds, 1 s..queue.MaxWait; 0 means DefaultPollWait. A
	// Receive waiting longer makes several calls. It bounds how long a
	// waiting Receive takes to return after its ctx ends or the queue is
	// closed; a longer PollWait costs fewer requests while the queue is
	// idle (see the package doc).
	PollWait time.Duration
}

// Open opens the queue q: a queue URL ("https://..."), used as it is; a
// queue ARN, resolved with GetQueueUrl for its name in its account; or a
// queue name, resolved with GetQueueUrl in the client's account (see
// "Naming a queue" in the package doc). A queue that does not exist is
// errcode.NotFound; a malformed URL or ARN, or an ARN of another region
// than the client's, is errcode.InvalidArgument. Open reads the queue's
// ReceiveMessageWaitTimeSeconds, which must be 0
// (errcode.FailedPrecondition otherwise), and checks the client's HTTP
// timeouts (see the package doc).
//
// The returned Queue is safe for concurrent use. Closing it does not
// affect client, which the caller owns, or other handles on the queue.
func Open(ctx context.Context, client API, q string, opts *Options) (*queue.Queue, error) {
	if opts == nil {
		opts = &Options{}
	}
	pollWait := cmp.Or(opts.PollWait, DefaultPollWait)
	if pollWait < time.Second || pollWait > queue.MaxWait || pollWait%time.Second != 0 {
		return nil, errcode.New(errcode.InvalidArgument, "open queue %s: PollWait %s is not whole seconds in 1s..%s", q, pollWait, queue.MaxWait)
	}
	if err := checkHTTPTimeouts(client, pollWait+httpMargin); err != nil {
		return nil, errcode.Wrap(errcode.InvalidArgument, err, "open queue %s", q)
	}
	r, err := parseRef(q)
	if err != nil {
		return nil, errcode.Wrap(errcode.Of(err), err, "open queue %q", q)
	}
	d := &driver{client: client, name: r.name, pollWait: pollWait, done: make(chan struct{})}
	if d.url, err = r.resolve(ctx, client); err != nil {
		return nil, errcode.Wrap(errcode.Of(err), err, "open queue %s", q)
	}

	out, err := client.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{
		QueueUrl:       aws.String(d.url),
		AttributeNames: []types.QueueAttributeName{types.QueueAttributeNameReceiveMessageWaitTimeSeconds},
	})
	if err != nil {
		return nil, mapErr(ctx, err, "open queue %s", q)
	}
	if w := out.Attributes[string(types.QueueAttributeNameReceiveMessageWaitTimeSeconds)]; w != "" && w != "0" {
		return nil, errcode.New(errcode.FailedPrecondition,
			"open queue %s: its ReceiveMessageWaitTimeSeconds is %s; it must be 0 so that a receive with Wait 0 is a short poll", q, w)
	}
	return queue.New(d), nil
}

// checkHTTPTimeouts returns an error when client is an *sqs.Client whose
// HTTP client would cut off a call that waits less than need.
func checkHTTPTimeouts(client API, need time.Duration) error {
	c, ok := client.(interface{ Options() sqs.Options })
	if !ok {
		return nil
	}
	type limit struct {
		name string
		d    time.Duration
	}
	var limits []limit
	switch h := c.Options().HTTPClient.(type) {
	case *awshttp.BuildableClient:
		limits = append(limits,
			limit{"HTTP client timeout", h.GetTimeout()},
			limit{"transport ResponseHeaderTimeout", h.GetTransport().ResponseHeaderTimeout})
		if rt, ok := h.GetReadTimeout(); ok {
			limits = append(limits, limit{"read timeout", rt})
		}
	case *http.Client:
		limits = append(limits, limit{"http.Client.Timeout", h.Timeout})
		if tr, ok := h.Transport.(*http.Transport); ok {
			limits = append(limits, limit{"transport ResponseHeaderTimeout", tr.ResponseHeaderTimeout})
		}
	}
	for _, l := range limits {
		if l.d > 0 && l.d < need {
			return errors.New(l.name + " " + l.d.String() + " would cut off long polls: it must be at least " + need.String() + " (none, or more than 25s, is best)")
		}
	}
	return nil
}

// Config is a queue's configuration (queue.Config).
type Config = queue.Config

// DefaultVisibility is SQS's default visibility timeout (queue.DefaultVisibility).
const DefaultVisibility = queue.DefaultVisibility

// MaxMaxReceives is queue.MaxMaxReceives.
const MaxMaxReceives = queue.MaxMaxReceives

// Retention is the message retention period CreateQueue sets: SQS's
// maximum, 14 days, so that messages outlive a long outage.
const Retention = 14 * 24 * time.Hour

// CreateQueue creates the standard queue name with cfg and returns its
// URL. It is idempotent: if the queue exists, its attributes are set to
// cfg (SQS's CreateQueue alone refuses different attributes). name is a
// plain name: the queue is created in the client's account and region.
// The dead-letter queue cfg.DeadLetter must exist first (errcode.NotFound
// otherwise); it may be given as a name, URL or ARN, as to Open, and the
// redrive policy names it by the QueueArn SQS reports for it.
//
// Besides cfg it sets MessageRetentionPeriod to Retention,
// MaximumMessageSize to queue.MaxMessageSize and
// ReceiveMessageWaitTimeSeconds to 0 (Open requires it).
func CreateQueue(ctx context.Context, client AdminAPI, name string, cfg Config) (string, error) {
	cfg, err := cfg.Normalize(name)
	if err != nil {
		return "", err
	}
	attrs := map[string]string{
		string(types.QueueAttributeNameVisibilityTimeout):             seconds(cfg.Visibility),
		string(types.QueueAttributeNameMessageRetentionPeriod):        seconds(Retention),
		string(types.QueueAttributeNameMaximumMessageSize):            strconv.Itoa(queue.MaxMessageSize),
		string(types.QueueAttributeNameReceiveMessageWaitTimeSeconds): "0",
		string(types.QueueAttributeNameRedrivePolicy):                 "",
	}
	if cfg.DeadLetter != "" {
		arn, err := queueARN(ctx, client, cfg.DeadLetter)
		if err != nil {
			return "", errcode.Wrap(errcode.Of(err), err, "create queue %s: dead-letter queue %s", name, cfg.DeadLetter)
		}
		policy, err := json.Marshal(struct {
			DeadLetterTargetArn string `json:"deadLetterTargetArn"`
			MaxReceiveCount     string `json:"maxReceiveCount"`
		}{arn, strconv.Itoa(cfg.MaxReceives)})
		if err != nil {
			return "", errcode.Wrap(errcode.Internal, err, "create queue %s: redrive policy", name)
		}
		attrs[string(types.QueueAttributeNameRedrivePolicy)] = string(policy)
	}
	create := attrs
	if cfg.DeadLetter == "" {
		// An empty RedrivePolicy removes one from an existing queue; a new
		// queue needs none.
		create = make(map[string]string, len(attrs))
		for k, v := range attrs {
			if v != "" {
				create[k] = v
			}
		}
	}
	out, err := client.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String(name), Attributes: create})
	if err == nil {
		return aws.ToString(out.QueueUrl), nil
	}
	if errcode.Of(mapErr(ctx, err, "")) != errcode.AlreadyExists {
		return "", mapErr(ctx, err, "create queue %s", name)
	}
	// It exists with other attributes: converge them.
	got, err := client.GetQueueUrl(ctx, &sqs.GetQueueUrlInput{QueueName: aws.String(name)})
	if err != nil {
		return "", mapErr(ctx, err, "create queue %s", name)
	}
	if _, err := client.SetQueueAttributes(ctx, &sqs.SetQueueAttributesInput{QueueUrl: got.QueueUrl, Attributes: attrs}); err != nil {
		return "", mapErr(ctx, err, "create queue %s: update attributes", name)
	}
	return aws.ToString(got.QueueUrl), nil
}

// queueARN returns the ARN of the queue q (a name, URL or ARN), as SQS
// reports it.
func queueARN(ctx context.Context, client AdminAPI, q string) (string, error) {
	r, err := parseRef(q)
	if err != nil {
		return "", err
	}
	u, err := r.resolve(ctx, client)
	if err != nil {
		return "", err
	}
	out, err := client.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{
		QueueUrl:       aws.String(u),
		AttributeNames: []types.QueueAttributeName{types.QueueAttributeNameQueueArn},
	})
	if err != nil {
		return "", mapErr(ctx, err, "get queue ARN")
	}
	arn := out.Attributes[string(types.QueueAttributeNameQueueArn)]
	if arn == "" {
		return "", errcode.New(errcode.Internal, "queue %s has no QueueArn attribute", q)
	}
	return arn, nil
}

func seconds(d time.Duration) string { return strconv.FormatInt(int64(d/time.Second), 10) }
