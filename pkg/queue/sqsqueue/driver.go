package sqsqueue

import (
	"context"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/jobfleet/jobfleet/pkg/errcode"
	"github.com/jobfleet/jobfleet/pkg/queue"
)

var _ queue.Driver = (*driver)(nil)

const (
	// callGrace is how long a ReceiveMessage call may run past its wait
	// (round trips, the SDK's retries) before Receive gives up on it.
	callGrace = 15 * time.Second
	// releaseTimeout bounds the call that makes messages received after
	// Close visible again.
	releaseTimeout = 10 * time.Second
	// stringType is the data type every attribute is sent with.
	stringType = "String"
)

// receiveAttrs are the system attributes Receive asks for.
var receiveAttrs = []types.MessageSystemAttributeName{
	types.MessageSystemAttributeNameApproximateReceiveCount,
	types.MessageSystemAttributeNameSentTimestamp,
}

// driver is one open handle on an SQS queue.
type driver struct {
	client   API
	url      string
	name     string
	pollWait time.Duration

	closeOnce sync.Once
	done      chan struct{}
}

func (d *driver) Name() string { return d.name }

// Close closes this handle: its calls fail with errcode.Closed, and a
// waiting Receive returns once its call in flight has answered. The
// client and other handles are not affected.
func (d *driver) Close() error {
	d.closeOnce.Do(func() { close(d.done) })
	return nil
}

func (d *driver) closed() bool {
	select {
	case <-d.done:
		return true
	default:
		return false
	}
}

// begin checks that the handle is open and ctx has not ended.
func (d *driver) begin(ctx context.Context) error {
	if d.closed() {
		return errcode.New(errcode.Closed, "queue %s is closed", d.name)
	}
	if err := ctx.Err(); err != nil {
		return errcode.Wrap(errcode.Canceled, err, "queue %s", d.name)
	}
	return nil
}

// id is the batch entry id of the i-th entry.
func id(i int) *string { return aws.String(strconv.Itoa(i)) }

// entryIndex parses a batch entry id back to its index in a batch of n.
func entryIndex(s *string, n int) (int, bool) {
	i, err := strconv.Atoi(aws.ToString(s))
	return i, err == nil && i >= 0 && i < n
}

func (d *driver) Send(ctx context.Context, entries []queue.SendEntry) ([]queue.SendResult, error) {
	if err := d.begin(ctx); err != nil {
		return nil, err
	}
	in := &sqs.SendMessageBatchInput{QueueUrl: aws.String(d.url), Entries: make([]types.SendMessageBatchRequestEntry, len(entries))}
	for i, e := range entries {
		entry := types.SendMessageBatchRequestEntry{
			Id:           id(i),
			MessageBody:  aws.String(string(e.Body)),
			DelaySeconds: int32(e.Delay / time.Second),
		}
		if len(e.Attributes) > 0 {
			entry.MessageAttributes = make(map[string]types.MessageAttributeValue, len(e.Attributes))
			for k, v := range e.Attributes {
				entry.MessageAttributes[k] = types.MessageAttributeValue{DataType: aws.String(stringType), StringValue: aws.String(v)}
			}
		}
		in.Entries[i] = entry
	}
	out, err := d.client.SendMessageBatch(ctx, in)
	if err != nil {
		return nil, mapErr(ctx, err, "send to %s", d.name)
	}
	res := make([]queue.SendResult, len(entries))
	answered := make([]bool, len(entries))
	for _, s := range out.Successful {
		if i, ok := entryIndex(s.Id, len(entries)); ok {
			res[i].ID, answered[i] = aws.ToString(s.MessageId), true
		}
	}
	for _, f := range out.Failed {
		if i, ok := entryIndex(f.Id, len(entries)); ok {
			res[i].Err, answered[i] = entryErr(f, "send to %s", d.name), true
		}
	}
	for i, ok := range answered {
		if !ok || (res[i].Err == nil && res[i].ID == "") {
			res[i] = queue.SendResult{Err: errcode.New(errcode.Internal, "send to %s: SQS returned no result for entry %d", d.name, i)}
		}
	}
	return res, nil
}

// Receive receives with ReceiveMessage calls that each wait at most
// PollWait, until a call returns messages or Wait has passed. A call in
// flight is never abandoned (see the package doc): when ctx ends or the
// handle is closed, Receive returns after that call answers.
func (d *driver) Receive(ctx context.Context, opts queue.ReceiveOptions) ([]*queue.Message, error) {
	if err := d.begin(ctx); err != nil {
		return nil, err
	}
	opts.Max = min(max(opts.Max, 1), queue.MaxBatch) // Queue has validated it; stay in bounds regardless
	left := queue.Seconds(opts.Wait)
	for {
		wait := min(left, d.pollWait)
		if dl, ok := ctx.Deadline(); ok && wait > 0 {
			// No point waiting past the caller's deadline.
			wait = max(min(wait, queue.Seconds(time.Until(dl))), time.Second)
		}
		start := time.Now()
		msgs, err := d.receiveOnce(ctx, opts, wait)
		switch {
		case d.closed():
			d.release(ctx, msgs)
			return nil, errcode.New(errcode.Closed, "queue %s was closed during receive", d.name)
		case err != nil && ctx.Err() != nil:
			return nil, nil // ctx ended during the wait
		case err != nil:
			return nil, err
		case len(msgs) > 0 || ctx.Err() != nil:
			return msgs, nil
		}
		// A call that answered early without messages counts as its whole
		// wait, so the number of calls stays bounded.
		left -= max(wait, time.Since(start))
		if left < time.Second/2 {
			return nil, nil
		}
		left = left.Round(time.Second)
	}
}

// receiveOnce makes one ReceiveMessage call that waits up to wait. It runs
// on ctx's values but not its cancellation, bounded by wait + callGrace.
func (d *driver) receiveOnce(ctx context.Context, opts queue.ReceiveOptions, wait time.Duration) ([]*queue.Message, error) {
	callCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), wait+callGrace)
	defer cancel()
	out, err := d.client.ReceiveMessage(callCtx, &sqs.ReceiveMessageInput{
		QueueUrl:                    aws.String(d.url),
		MaxNumberOfMessages:         int32(opts.Max),
		WaitTimeSeconds:             int32(wait / time.Second),
		VisibilityTimeout:           int32(opts.Visibility / time.Second),
		MessageSystemAttributeNames: receiveAttrs,
		MessageAttributeNames:       []string{"All"},
	})
	if err != nil {
		if callCtx.Err() != nil && ctx.Err() == nil {
			return nil, errcode.Wrap(errcode.Unavailable, err, "receive from %s: no answer within %s", d.name, wait+callGrace)
		}
		return nil, mapErr(callCtx, err, "receive from %s", d.name)
	}
	msgs := make([]*queue.Message, 0, len(out.Messages))
	var bad error
	for _, m := range out.Messages {
		msg, err := d.message(m)
		if err != nil {
			// Skip it: it comes back after its visibility timeout and, if
			// it stays unreadable, dead-letters.
			bad = err
			continue
		}
		msgs = append(msgs, msg)
	}
	if len(msgs) == 0 && bad != nil {
		return nil, bad
	}
	return msgs, nil
}

// message converts a received SQS message.
func (d *driver) message(m types.Message) (*queue.Message, error) {
	msg := &queue.Message{
		ID:     aws.ToString(m.MessageId),
		Body:   []byte(aws.ToString(m.Body)),
		Handle: aws.ToString(m.ReceiptHandle),
	}
	rc, err := strconv.Atoi(m.Attributes[string(types.MessageSystemAttributeNameApproximateReceiveCount)])
	if err != nil {
		return nil, errcode.Wrap(errcode.Internal, err, "receive from %s: message %s: ApproximateReceiveCount", d.name, msg.ID)
	}
	msg.ReceiveCount = rc
	sent, err := strconv.ParseInt(m.Attributes[string(types.MessageSystemAttributeNameSentTimestamp)], 10, 64)
	if err != nil {
		return nil, errcode.Wrap(errcode.Internal, err, "receive from %s: message %s: SentTimestamp", d.name, msg.ID)
	}
	msg.SentAt = time.UnixMilli(sent).UTC()
	for k, v := range m.MessageAttributes {
		if v.StringValue == nil || strings.HasPrefix(aws.ToString(v.DataType), "Binary") {
			continue
		}
		if msg.Attributes == nil {
			msg.Attributes = make(map[string]string, len(m.MessageAttributes))
		}
		msg.Attributes[k] = *v.StringValue
	}
	return msg, nil
}

// release makes messages received after Close visible again, best effort:
// if it fails they come back after their visibility timeout.
func (d *driver) release(ctx context.Context, msgs []*queue.Message) {
	if len(msgs) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), releaseTimeout)
	defer cancel()
	in := &sqs.ChangeMessageVisibilityBatchInput{QueueUrl: aws.String(d.url)}
	for i, m := range msgs {
		in.Entries = append(in.Entries, types.ChangeMessageVisibilityBatchRequestEntry{Id: id(i), ReceiptHandle: aws.String(m.Handle)})
	}
	_, _ = d.client.ChangeMessageVisibilityBatch(ctx, in)
}

func (d *driver) ChangeVisibility(ctx context.Context, changes []queue.VisibilityChange) ([]error, error) {
	if err := d.begin(ctx); err != nil {
		return nil, err
	}
	in := &sqs.ChangeMessageVisibilityBatchInput{QueueUrl: aws.String(d.url), Entries: make([]types.ChangeMessageVisibilityBatchRequestEntry, len(changes))}
	for i, c := range changes {
		in.Entries[i] = types.ChangeMessageVisibilityBatchRequestEntry{
			Id:                id(i),
			ReceiptHandle:     aws.String(c.Handle),
			VisibilityTimeout: int32(c.Timeout / time.Second),
		}
	}
	out, err := d.client.ChangeMessageVisibilityBatch(ctx, in)
	if err != nil {
		return nil, mapErr(ctx, err, "change visibility in %s", d.name)
	}
	return entryErrs(len(changes), out.Successful, out.Failed, func(s types.ChangeMessageVisibilityBatchResultEntry) *string { return s.Id },
		changeVisibilityErr, "change visibility in %s", d.name), nil
}

func (d *driver) Delete(ctx context.Context, handles []string) ([]error, error) {
	if err := d.begin(ctx); err != nil {
		return nil, err
	}
	// Each distinct handle once: deleting twice is deleting once, and SQS
	// (and moto) may refuse a batch that repeats a handle.
	first := make(map[string]int, len(handles))
	in := &sqs.DeleteMessageBatchInput{QueueUrl: aws.String(d.url)}
	var unique []int // index in handles of each entry sent
	for i, h := range handles {
		if _, dup := first[h]; dup {
			continue
		}
		first[h] = len(unique)
		in.Entries = append(in.Entries, types.DeleteMessageBatchRequestEntry{Id: id(len(unique)), ReceiptHandle: aws.String(h)})
		unique = append(unique, i)
	}
	out, err := d.client.DeleteMessageBatch(ctx, in)
	if err != nil {
		return nil, mapErr(ctx, err, "delete from %s", d.name)
	}
	sent := entryErrs(len(unique), out.Successful, out.Failed, func(s types.DeleteMessageBatchResultEntry) *string { return s.Id },
		entryErr, "delete from %s", d.name)
	errs := make([]error, len(handles))
	for i, h := range handles {
		errs[i] = sent[first[h]]
	}
	return errs, nil
}

// entryErrs maps a batch call's per-entry results to one error per entry
// (nil on success); an entry SQS did not answer is errcode.Internal.
func entryErrs[S any](n int, ok []S, failed []types.BatchResultErrorEntry, okID func(S) *string,
	mapEntry func(types.BatchResultErrorEntry, string, ...any) error, format string, args ...any) []error {
	errs := make([]error, n)
	answered := make([]bool, n)
	for _, s := range ok {
		if i, valid := entryIndex(okID(s), n); valid {
			answered[i] = true
		}
	}
	for _, f := range failed {
		if i, valid := entryIndex(f.Id, n); valid {
			errs[i], answered[i] = mapEntry(f, format, args...), true
		}
	}
	for i, a := range answered {
		if !a {
			errs[i] = errcode.New(errcode.Internal, format+": SQS returned no result for entry %d", append(args, i)...)
		}
	}
	return errs
}

func (d *driver) Depth(ctx context.Context) (queue.Depth, error) {
	if err := d.begin(ctx); err != nil {
		return queue.Depth{}, err
	}
	out, err := d.client.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{
		QueueUrl: aws.String(d.url),
		AttributeNames: []types.QueueAttributeName{
			types.QueueAttributeNameApproximateNumberOfMessages,
			types.QueueAttributeNameApproximateNumberOfMessagesNotVisible,
			types.QueueAttributeNameApproximateNumberOfMessagesDelayed,
		},
	})
	if err != nil {
		return queue.Depth{}, mapErr(ctx, err, "depth of %s", d.name)
	}
	var depth queue.Depth
	for _, f := range []struct {
		name types.QueueAttributeName
		to   *int64
	}{
		{types.QueueAttributeNameApproximateNumberOfMessages, &depth.Visible},
		{types.QueueAttributeNameApproximateNumberOfMessagesNotVisible, &depth.InFlight},
		{types.QueueAttributeNameApproximateNumberOfMessagesDelayed, &depth.Delayed},
	} {
		s, ok := out.Attributes[string(f.name)]
		if !ok {
			continue
		}
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return queue.Depth{}, errcode.Wrap(errcode.Internal, err, "depth of %s: %s", d.name, f.name)
		}
		*f.to = n
	}
	return depth, nil
}
