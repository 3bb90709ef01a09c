package s3blob

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/jobfleet/jobfleet/pkg/errcode"
)

// codes maps S3 error codes to errcode.
var codes = map[string]errcode.Code{
	"NoSuchKey":    errcode.NotFound,
	"NotFound":     errcode.NotFound, // HeadObject, HeadBucket: a bare 404
	"NoSuchBucket": errcode.NotFound,

	"InvalidRange":              errcode.InvalidArgument,
	"InvalidArgument":           errcode.InvalidArgument,
	"InvalidRequest":            errcode.InvalidArgument,
	"KeyTooLongError":           errcode.InvalidArgument,
	"EntityTooSmall":            errcode.InvalidArgument,
	"EntityTooLarge":            errcode.InvalidArgument,
	"InvalidPart":               errcode.InvalidArgument,
	"InvalidPartOrder":          errcode.InvalidArgument,
	"InvalidDigest":             errcode.InvalidArgument,
	"BadDigest":                 errcode.InvalidArgument,
	"InvalidBucketName":         errcode.InvalidArgument,
	"MalformedXML":              errcode.InvalidArgument,
	"IncompleteBody":            errcode.InvalidArgument,
	"MetadataTooLarge":          errcode.InvalidArgument,
	"XAmzContentSHA256Mismatch": errcode.InvalidArgument,
	"TooManyParts":              errcode.InvalidArgument,

	"SlowDown":            errcode.Unavailable,
	"ServiceUnavailable":  errcode.Unavailable,
	"InternalError":       errcode.Unavailable,
	"RequestTimeout":      errcode.Unavailable,
	"Throttling":          errcode.Unavailable,
	"ThrottlingException": errcode.Unavailable,

	"BucketAlreadyExists":     errcode.AlreadyExists,
	"BucketAlreadyOwnedByYou": errcode.AlreadyExists,

	"PreconditionFailed":         errcode.FailedPrecondition,
	"ConditionalRequestConflict": errcode.FailedPrecondition,
	"NoSuchUpload":               errcode.FailedPrecondition, // the upload was aborted meanwhile
	"InvalidObjectState":         errcode.FailedPrecondition,
}

// statusCode maps HTTP statuses to errcode for errors whose code is not
// in codes (a HEAD response has no body to carry one).
func statusCode(status int) (errcode.Code, bool) {
	switch {
	case status == http.StatusNotFound:
		return errcode.NotFound, true
	case status == http.StatusRequestedRangeNotSatisfiable:
		return errcode.InvalidArgument, true
	case status == http.StatusPreconditionFailed:
		return errcode.FailedPrecondition, true
	case status == http.StatusTooManyRequests || status >= 500:
		return errcode.Unavailable, true
	}
	return 0, false
}

// httpStatus returns the HTTP status of the response err came with, or 0.
func httpStatus(err error) int {
	var resp *smithyhttp.ResponseError
	if errors.As(err, &resp) {
		return resp.HTTPStatusCode()
	}
	return 0
}

// invalidRange reports whether err is S3's answer to an unsatisfiable
// range.
func invalidRange(err error) bool {
	var api smithy.APIError
	return (errors.As(err, &api) && api.ErrorCode() == "InvalidRange") || httpStatus(err) == http.StatusRequestedRangeNotSatisfiable
}

// asType is errors.As.
func asType[T error](err error, target *T) bool { return errors.As(err, target) }

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
		if c, ok := codes[api.ErrorCode()]; ok {
			return errcode.Wrap(c, err, "%s", msg)
		}
	}
	if c, ok := statusCode(httpStatus(err)); ok {
		return errcode.Wrap(c, err, "%s", msg)
	}
	if api == nil {
		// No answer from S3: the network, DNS, TLS, a timeout of the HTTP
		// client, or the SDK's retry quota.
		return errcode.Wrap(errcode.Unavailable, err, "%s", msg)
	}
	if api.ErrorFault() == smithy.FaultServer {
		return errcode.Wrap(errcode.Unavailable, err, "%s", msg)
	}
	return errcode.Wrap(errcode.Unknown, err, "%s", msg)
}
