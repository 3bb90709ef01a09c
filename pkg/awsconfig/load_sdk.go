//go:build !jobfleet_ecs

package awsconfig

import (
	"context"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/smithy-go/middleware"
)

// load is the SDK's default configuration (the default build).
func load(ctx context.Context, apiOpts []func(*middleware.Stack) error) (aws.Config, error) {
	return config.LoadDefaultConfig(ctx,
		config.WithRetryMode(aws.RetryModeAdaptive),
		config.WithAPIOptions(apiOpts))
}
