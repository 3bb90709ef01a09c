package ecsfleet

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/aws/smithy-go"

	"github.com/jobfleet/jobfleet/pkg/errcode"
)

// ECS error codes the driver tells apart (smithy.APIError.ErrorCode).
const (
	codeThrottling         = "ThrottlingException"
	codeServer             = "ServerException"
	codeClient             = "ClientException"
	codeInvalidParameter   = "InvalidParameterException"
	codeClusterNotFound    = "ClusterNotFoundException"
	codeLimitExceeded      = "LimitExceededException"
	codeConflict           = "ConflictException"
	codePlatformUnknown    = "PlatformUnknownException"
	codePlatformIncompat   = "PlatformTaskDefinitionIncompatibilityException"
	codeUnsupported        = "UnsupportedFeatureException"
	codeRequestLimit       = "RequestLimitExceeded"
	codeTooManyRequests    = "TooManyRequestsException"
	codeServiceUnavailable = "ServiceUnavailable"
)

// throttled reports whether an ECS message says the caller is going too
// fast. ECS sometimes wraps another service's throttling in a
// ClientException or InvalidParameterException ("Error retrieving security
// group information ...: Request limit exceeded").
func throttled(msg string) bool {
	m := strings.ToLower(msg)
	return strings.Contains(m, "rate exceeded") ||
		strings.Contains(m, "request limit exceeded") ||
		strings.Contains(m, "throttl") ||
		strings.Contains(m, "too many requests")
}

// outOfCapacity reports whether an ECS message or failure reason says
// capacity, a quota or a resource ran out: worth retrying later.
func outOfCapacity(msg string) bool {
	m := strings.ToLower(msg)
	return strings.HasPrefix(m, "resource:") ||
		strings.HasPrefix(m, "agent") ||
		strings.Contains(m, "capacity") ||
		strings.Contains(m, "limit on the number of tasks") ||
		strings.Contains(m, "try again")
}

// failureRetryable classifies a RunTask failures[].reason: capacity
// ("Capacity is unavailable at this time ..."), missing resources
// ("RESOURCE:ENI", "RESOURCE:MEMORY", ...), the container agent ("AGENT")
// and throttling are worth retrying; the rest ("ATTRIBUTE", "MISSING",
// unknown reasons) are not.
func failureRetryable(reason string) bool {
	return outOfCapacity(reason) || throttled(reason)
}

// mapErr turns an ECS call's error into an errcode error, saying what was
// being done. It is the one place ECS errors are interpreted:
//
//   - the caller's context ended: Canceled (the cause stays in the chain);
//   - ThrottlingException and look-alikes, ServerException, server faults
//     and transport errors (after the SDK's own retries): Unavailable;
//   - LimitExceededException, and ClientException or
//     InvalidParameterException whose message is about capacity or
//     "RESOURCE:*": ResourceExhausted;
//   - ClientException and InvalidParameterException otherwise, and the
//     platform and unsupported-feature exceptions: InvalidArgument;
//   - ClusterNotFoundException: NotFound;
//   - ConflictException (a client token reused with other parameters):
//     FailedPrecondition;
//   - a response the SDK cannot read: Internal.
//
// Anything else (AccessDeniedException, say) keeps no code: retrying the
// same call cannot help, and it is not the caller's input either.
func mapErr(ctx context.Context, err error, what string) error {
	if err == nil {
		return nil
	}
	if ctx.Err() != nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return errcode.Wrap(errcode.Canceled, err, "ecsfleet: %s", what)
	}
	var api smithy.APIError
	if !errors.As(err, &api) {
		var de *smithy.DeserializationError
		if errors.As(err, &de) {
			return errcode.Wrap(errcode.Internal, err, "ecsfleet: %s: unreadable response", what)
		}
		// Transport errors the SDK already retried.
		return errcode.Wrap(errcode.Unavailable, err, "ecsfleet: %s", what)
	}
	code, msg := api.ErrorCode(), api.ErrorMessage()
	switch code {
	case codeThrottling, codeRequestLimit, codeTooManyRequests, codeServer, codeServiceUnavailable:
		return errcode.Wrap(errcode.Unavailable, err, "ecsfleet: %s", what)
	case codeLimitExceeded:
		return errcode.Wrap(errcode.ResourceExhausted, err, "ecsfleet: %s", what)
	case codeClusterNotFound:
		return errcode.Wrap(errcode.NotFound, err, "ecsfleet: %s", what)
	case codeConflict:
		return errcode.Wrap(errcode.FailedPrecondition, err, "ecsfleet: %s", what)
	case codeClient, codeInvalidParameter:
		switch {
		case throttled(msg):
			return errcode.Wrap(errcode.Unavailable, err, "ecsfleet: %s", what)
		case outOfCapacity(msg):
			return errcode.Wrap(errcode.ResourceExhausted, err, "ecsfleet: %s", what)
		}
		return errcode.Wrap(errcode.InvalidArgument, err, "ecsfleet: %s", what)
	case codePlatformUnknown, codePlatformIncompat, codeUnsupported:
		return errcode.Wrap(errcode.InvalidArgument, err, "ecsfleet: %s", what)
	}
	if api.ErrorFault() == smithy.FaultServer || throttled(msg) {
		return errcode.Wrap(errcode.Unavailable, err, "ecsfleet: %s", what)
	}
	return fmt.Errorf("ecsfleet: %s: %w", what, err)
}

// taskNotFound reports whether err from StopTask or DescribeTasks of one
// task says that task does not exist or that the id names no task: ECS
// answers InvalidParameterException "The referenced task was not found."
// for an unknown task and "Task Identifier is invalid" (or similar) for an
// id that cannot be one.
func taskNotFound(err error) bool {
	var api smithy.APIError
	if !errors.As(err, &api) || api.ErrorCode() != codeInvalidParameter {
		return false
	}
	m := strings.ToLower(api.ErrorMessage())
	return strings.Contains(m, "not found") || strings.Contains(m, "identifier")
}

// isCode reports whether err is an ECS API error with the code.
func isCode(err error, code string) bool {
	var api smithy.APIError
	return errors.As(err, &api) && api.ErrorCode() == code
}
