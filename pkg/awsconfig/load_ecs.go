//go:build jobfleet_ecs

package awsconfig

import (
	"context"
	"os"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/smithy-go/middleware"
)

// load is the configuration from the environment and the task's role only
// (the ECS build, see the package doc).
func load(ctx context.Context, apiOpts []func(*middleware.Stack) error) (aws.Config, error) {
	return fromEnv(ctx, environ{get: os.Getenv, all: os.Environ}, apiOpts)
}
