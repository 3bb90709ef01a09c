// Package awsconfig loads the aws-sdk-go-v2 configuration for the aws
// profile and counts every AWS request.
//
// Load uses the SDK's default credential chain and region, its adaptive
// retry mode (client-side rate limiting under throttling, on top of the
// standard retries: jobfleet adds no retry loops of its own), and
// AWS_ENDPOINT_URL — the SDK's own setting — to point every client at
// LocalStack or a moto server.
//
// # The ECS build
//
// Binaries built with -tags jobfleet_ecs (the container images for ECS:
// infra/Dockerfile) load the configuration from the environment and the
// task's role only, without the SDK's config package: no shared config
// or credentials files, no SSO, no assume-role, no web identity. Leaving
// those out (and the STS, SSO and sign-in clients they bring) makes an
// idle worker about 2 MiB smaller (docs/benchmarks.md, Footprint). Such
// a build reads, in the SDK's order of precedence:
//
//   - the region from AWS_REGION, else AWS_DEFAULT_REGION;
//   - the endpoint from AWS_ENDPOINT_URL (unless
//     AWS_IGNORE_CONFIGURED_ENDPOINT_URLS=true); AWS_MAX_ATTEMPTS (the
//     retry mode is adaptive either way); AWS_CA_BUNDLE (the certificates
//     to trust instead of the system's); AWS_REQUEST_CHECKSUM_CALCULATION,
//     AWS_RESPONSE_CHECKSUM_VALIDATION and AWS_ACCOUNT_ID_ENDPOINT_MODE;
//   - credentials from AWS_ACCESS_KEY_ID (or AWS_ACCESS_KEY),
//     AWS_SECRET_ACCESS_KEY (or AWS_SECRET_KEY), AWS_SESSION_TOKEN and
//     AWS_ACCOUNT_ID; else from the container credentials endpoint
//     (AWS_CONTAINER_CREDENTIALS_RELATIVE_URI: the ECS task role; or
//     AWS_CONTAINER_CREDENTIALS_FULL_URI with
//     AWS_CONTAINER_AUTHORIZATION_TOKEN[_FILE], the file read at each
//     fetch, over http only to loopback and the ECS and EKS link-local
//     hosts, as the SDK allows); else from the EC2 instance role (IMDS),
//     unless AWS_EC2_METADATA_DISABLED=true.
//
// A setting that the default chain would honour and this build cannot is
// an error at start that names it, not silently ignored: AWS_PROFILE and
// AWS_DEFAULT_PROFILE, AWS_WEB_IDENTITY_TOKEN_FILE, any
// AWS_ENDPOINT_URL_<SERVICE>, FIPS or dual-stack endpoints, and the
// instance metadata settings (AWS_EC2_METADATA_SERVICE_ENDPOINT[_MODE],
// AWS_EC2_METADATA_V1_DISABLED). So is a boolean that is not true or
// false, and one key variable set without the other (where the SDK would
// go on to the next source).
//
// Instrument adds a middleware to every client that counts each request
// attempt by service, operation and outcome in jobfleet_aws_requests_total,
// and observes its latency in jobfleet_aws_request_seconds. That is what
// the cost benchmark reads: requests are what AWS bills.
package awsconfig

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	"github.com/aws/smithy-go"
	"github.com/aws/smithy-go/middleware"

	"github.com/jobfleet/jobfleet/pkg/metrics"
)

// Load returns the SDK configuration from the environment, instrumented
// with m: the SDK's default chain, or in a -tags jobfleet_ecs build the
// environment and the task's role only (see the package doc).
func Load(ctx context.Context, m *metrics.Metrics) (aws.Config, error) {
	apiOpts := []func(*middleware.Stack) error{Instrument(m)}
	faults, err := faultsFromEnv()
	if err != nil {
		return aws.Config{}, err
	}
	if faults != nil {
		// Added after the accounting, so it sits inside it: injected
		// failures are counted as the attempts they replace.
		apiOpts = append(apiOpts, faults)
	}
	cfg, err := load(ctx, apiOpts)
	if err != nil {
		return aws.Config{}, fmt.Errorf("load AWS configuration: %w", err)
	}
	if cfg.Region == "" {
		return aws.Config{}, errors.New("load AWS configuration: no region (set AWS_REGION)")
	}
	return cfg, nil
}

// Instrument returns the request-accounting middleware for m, for
// aws.Config.APIOptions (Load adds it). It runs once per attempt, after
// the retry middleware, so retried attempts count as the requests they are.
func Instrument(m *metrics.Metrics) func(*middleware.Stack) error {
	return func(s *middleware.Stack) error {
		return s.Finalize.Add(middleware.FinalizeMiddlewareFunc("jobfleetRequestAccounting",
			func(ctx context.Context, in middleware.FinalizeInput, next middleware.FinalizeHandler) (middleware.FinalizeOutput, middleware.Metadata, error) {
				start := time.Now()
				out, md, err := next.HandleFinalize(ctx, in)
				svc, op := awsmiddleware.GetServiceID(ctx), awsmiddleware.GetOperationName(ctx)
				m.AWSRequests.WithLabelValues(svc, op, Outcome(err)).Inc()
				m.AWSLatency.WithLabelValues(svc, op).Observe(time.Since(start).Seconds())
				return out, md, err
			}), middleware.After)
	}
}

// Outcome labels a request's result: "ok", the AWS error code
// ("ConditionalCheckFailedException", "ThrottlingException", ...),
// "canceled", or "transport_error".
func Outcome(err error) string {
	if err == nil {
		return "ok"
	}
	var api smithy.APIError
	if errors.As(err, &api) && api.ErrorCode() != "" {
		return api.ErrorCode()
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return "canceled"
	}
	return "transport_error"
}
