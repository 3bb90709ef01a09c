package s3blob

import (
	"context"

	"github.com/jobfleet/jobfleet/pkg/blob"
)

// OpenDriver opens bucket as Open does and returns the Driver itself, so
// tests can call it past Bucket's own checks.
func OpenDriver(ctx context.Context, client API, bucket string, opts *Options) (blob.Driver, error) {
	return open(ctx, client, bucket, opts)
}
