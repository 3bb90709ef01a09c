package sqsqueue

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/jobfleet/jobfleet/pkg/errcode"
)

// queryPrefix is how SQS's query-compatible error codes begin
// ("AWS.SimpleQueueService.NonExistentQueue"); the SDK may report either
// form.
const queryPrefix = "AWS.SimpleQueueService."

// codes maps SQS error codes (without queryPrefix) to errcode.
var codes = map[string]errcode.Code{
	// Throttling and capacity: retry later.
	"ThrottlingException":     errcode.Unavailable,
	"RequestThrottled":        errcode.Unavailable,
	"Throttling":              errcode.Unavailable,
	"KMS.ThrottlingException": errcode.Unavailable,
	"ServiceUnavailable":      errcode.Unavailable,
	"InternalError":           errcode.Unavailable,
	"InternalFailure":         errcode.Unavailable,
	"RequestTimeout":          errcode.Unavailable,
	"OverLimit":               errcode.ResourceExhausted,

	// The queue.
	"QueueDoesNotExist":  errcode.NotFound,
	"NonExistentQueue":   errcode.NotFound,
	"QueueNameExists":    errcode.AlreadyExists,
	"QueueAlreadyExists": errcode.AlreadyExists,
	// A queue of that name was deleted less than 60 s ago.
	"QueueDeletedRecently": errcode.FailedPrecondition,
	"PurgeQueueInProgress": errcode.FailedPrecondition,

	// The message named by a receipt handle is not in flight.
	"MessageNotInflight": errcode.FailedPrecondition,

	// Malformed or out-of-range input.
	"InvalidParameterValue":        errcode.InvalidArgument,
	"InvalidAttributeValue":        errcode.InvalidArgument,
	"InvalidAttributeName":         errcode.InvalidArgument,
	"BatchRequestTooLong":          errcode.InvalidArgument,
	"TooManyEntriesInBatchRequest": errcode.InvalidArgument,
	"EmptyBatchRequest":            errcode.InvalidArgument,
	"BatchEntryIdsNotDistinct":     errcode.InvalidArgument,
	"InvalidBatchEntryId":          errcode.InvalidArgument,
	"InvalidMessageContents":       errcode.InvalidArgument,
	"ReceiptHandleIsInvalid":       errcode.InvalidArgument,
	"InvalidIdFormat":              errcode.InvalidArgument,
	"InvalidAddress":               errcode.InvalidArgument,
	"MissingParameter":             errcode.InvalidArgument,
	"ValidationError":              errcode.InvalidArgument,
	"InvalidParameterCombination":  errcode.InvalidArgument,
	"UnsupportedOperation":         errcode.InvalidArgument,
}

// codeOf returns the errcode for an SQS error code, and whether it is known.
func codeOf(code string) (errcode.Code, bool) {
	c, ok := codes[strings.TrimPrefix(code, queryPrefix)]
	return c, ok
}

// mapErr maps an SDK error from a call made with ctx to an errcode error
// that says what was being done (format, args) and keeps err in the chain.
func mapErr(ctx context.Context, err error, format string, args ...any) error {
	if err == nil {
		return nil
	}
	msg := fmt.Sprintf(format, args...)
	if ctx.Err() != nil {
		// The caller's context ended; whatever the SDK says, that is why.
		if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
			return fmt.Errorf("%s: %w", msg, err)
		}
		return errcode.Wrap(errcode.Canceled, fmt.Errorf("%w (%w)", ctx.Err(), err), "%s", msg)
	}
	var api smithy.APIError
	if errors.As(err, &api) {
		if c, ok := codeOf(api.ErrorCode()); ok {
			return errcode.Wrap(c, err, "%s", msg)
		}
		if api.ErrorFault() == smithy.FaultServer {
			return errcode.Wrap(errcode.Unavailable, err, "%s", msg)
		}
	}
	var resp *smithyhttp.ResponseError
	if errors.As(err, &resp) {
		if resp.HTTPStatusCode() >= 500 {
			return errcode.Wrap(errcode.Unavailable, err, "%s", msg)
		}
		if resp.HTTPStatusCode() == 429 {
			return errcode.Wrap(errcode.Unavailable, err, "%s", msg)
		}
	}
	if api == nil {
		// No answer from SQS: the network, DNS, TLS, a timeout of the
		// HTTP client, or the SDK's retry quota.
		return errcode.Wrap(errcode.Unavailable, err, "%s", msg)
	}
	return errcode.Wrap(errcode.Unknown, err, "%s", msg)
}

// entryError is a failed batch entry as an error.
type entryError struct {
	code, message string
}

func (e *entryError) Error() string {
	if e.message == "" {
		return e.code
	}
	return e.code + ": " + e.message
}

// entryErr maps a failed batch entry: by its code when known, else by
// who SQS says is at fault.
func entryErr(f types.BatchResultErrorEntry, format string, args ...any) error {
	cause := &entryError{code: aws.ToString(f.Code), message: aws.ToString(f.Message)}
	c, ok := codeOf(cause.code)
	switch {
	case ok:
	case f.SenderFault:
		c = errcode.InvalidArgument
	default:
		c = errcode.Unavailable
	}
	return errcode.Wrap(c, cause, format, args...)
}

// changeVisibilityErr maps a failed ChangeMessageVisibility entry. SQS
// answers a handle whose message is no longer in flight under it (an old
// handle, a deleted message) with InvalidParameterValue "Message does not
// exist or is not available for visibility timeout change", or with
// MessageNotInflight; both are the contract's FailedPrecondition. Other
// InvalidParameterValue entries (the 12-hour limit) are InvalidArgument.
func changeVisibilityErr(f types.BatchResultErrorEntry, format string, args ...any) error {
	err := entryErr(f, format, args...)
	if strings.TrimPrefix(aws.ToString(f.Code), queryPrefix) == "InvalidParameterValue" && notAvailable(aws.ToString(f.Message)) {
		return errcode.Wrap(errcode.FailedPrecondition, errors.Unwrap(err), format, args...)
	}
	return err
}

// notAvailable reports whether an InvalidParameterValue message says the
// message is not in flight under the handle.
func notAvailable(msg string) bool {
	msg = strings.ToLower(msg)
	return strings.Contains(msg, "does not exist") || strings.Contains(msg, "not available for visibility timeout change")
}
