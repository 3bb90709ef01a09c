package dynamojobstore

import (
	"context"
	"errors"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/smithy-go"

	"github.com/jobfleet/jobfleet/pkg/errcode"
)

// mapErr maps an error of a DynamoDB call to an errcode, once, here. doing
// says what was being done. Conditional check failures and canceled
// transactions are normally decoded by the caller (they carry records);
// mapped here they are FailedPrecondition or what their reasons say.
func mapErr(ctx context.Context, err error, doing string, args ...any) error {
	if err == nil {
		return nil
	}
	msg := fmt.Sprintf(doing, args...)
	if ctx.Err() != nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return errcode.Wrap(errcode.Canceled, err, "%s", msg)
	}
	return errcode.Wrap(codeOf(err), err, "%s", msg)
}

// codeOf classifies a DynamoDB error. The SDK has already retried what it
// retries (throttling, 5xx, transaction conflicts); what is left is reported
// once, never retried here.
func codeOf(err error) errcode.Code {
	var (
		ccf      *types.ConditionalCheckFailedException
		canceled *types.TransactionCanceledException
		notFound *types.ResourceNotFoundException
	)
	switch {
	case errors.As(err, &ccf):
		return errcode.FailedPrecondition
	case errors.As(err, &canceled):
		return reasonsCode(canceled.CancellationReasons)
	case errors.As(err, &notFound):
		return errcode.NotFound
	}
	var apiErr smithy.APIError
	if !errors.As(err, &apiErr) {
		// No answer from DynamoDB: the network, the endpoint, or the SDK's
		// retry budget ran out.
		return errcode.Unavailable
	}
	switch apiErr.ErrorCode() {
	case "TransactionConflictException", "TransactionInProgressException",
		"ProvisionedThroughputExceededException", "RequestLimitExceeded", "ThrottlingException",
		"InternalServerError", "ServiceUnavailable", "ReplicatedWriteConflictException":
		return errcode.Unavailable
	case "ValidationException", "SerializationException":
		return errcode.InvalidArgument
	case "ItemCollectionSizeLimitExceededException", "LimitExceededException":
		return errcode.ResourceExhausted
	case "IdempotentParameterMismatchException":
		return errcode.Internal
	}
	if apiErr.ErrorFault() == smithy.FaultServer {
		return errcode.Unavailable
	}
	return errcode.Unknown
}

// Cancellation reason codes of TransactWriteItems.
const (
	reasonNone        = "None"
	reasonCondition   = "ConditionalCheckFailed"
	reasonConflict    = "TransactionConflict"
	reasonValidation  = "ValidationError"
	reasonThrottling  = "ThrottlingError"
	reasonThroughput  = "ProvisionedThroughputExceeded"
	reasonRequestRate = "RequestLimitExceeded"
	reasonCollection  = "ItemCollectionSizeLimitExceeded"
)

// reasonsCode is what a canceled transaction means when no entry's
// condition decides it: a conflict or throttling is retryable, a
// validation error (an item over the size limit) is the input's fault.
func reasonsCode(reasons []types.CancellationReason) errcode.Code {
	code := errcode.Unknown
	for _, r := range reasons {
		switch aws.ToString(r.Code) {
		case reasonValidation:
			return errcode.InvalidArgument
		case reasonConflict, reasonThrottling, reasonThroughput, reasonRequestRate:
			code = errcode.Unavailable
		case reasonCollection:
			if code == errcode.Unknown {
				code = errcode.ResourceExhausted
			}
		case reasonCondition:
			if code == errcode.Unknown {
				code = errcode.FailedPrecondition
			}
		}
	}
	return code
}

// reasonCode returns the code of the i-th cancellation reason ("" if none).
func reasonCode(reasons []types.CancellationReason, i int) string {
	if i >= len(reasons) {
		return ""
	}
	return aws.ToString(reasons[i].Code)
}
