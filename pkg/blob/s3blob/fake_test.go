package s3blob_test

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/jobfleet/jobfleet/pkg/blob/s3blob"
)

// fakeS3 is an s3blob.API (and AdminAPI) that answers as the test says,
// for what moto cannot show: failures in the middle of a multipart upload,
// throttling. A method whose func is nil fails the test, except
// HeadBucket, which by default answers that the bucket exists.
type fakeS3 struct {
	t *testing.T

	mu    sync.Mutex
	calls map[string]int

	putObject               func(context.Context, *s3.PutObjectInput) (*s3.PutObjectOutput, error)
	createMultipartUpload   func(context.Context, *s3.CreateMultipartUploadInput) (*s3.CreateMultipartUploadOutput, error)
	uploadPart              func(context.Context, *s3.UploadPartInput) (*s3.UploadPartOutput, error)
	completeMultipartUpload func(context.Context, *s3.CompleteMultipartUploadInput) (*s3.CompleteMultipartUploadOutput, error)
	abortMultipartUpload    func(context.Context, *s3.AbortMultipartUploadInput) (*s3.AbortMultipartUploadOutput, error)
	getObject               func(context.Context, *s3.GetObjectInput) (*s3.GetObjectOutput, error)
	headObject              func(context.Context, *s3.HeadObjectInput) (*s3.HeadObjectOutput, error)
	deleteObject            func(context.Context, *s3.DeleteObjectInput) (*s3.DeleteObjectOutput, error)
	listObjectsV2           func(context.Context, *s3.ListObjectsV2Input) (*s3.ListObjectsV2Output, error)
	headBucket              func(context.Context, *s3.HeadBucketInput) (*s3.HeadBucketOutput, error)
	createBucket            func(context.Context, *s3.CreateBucketInput) (*s3.CreateBucketOutput, error)
}

var (
	_ s3blob.API      = (*fakeS3)(nil)
	_ s3blob.AdminAPI = (*fakeS3)(nil)
)

func newFake(t *testing.T) *fakeS3 { return &fakeS3{t: t, calls: map[string]int{}} }

// Calls returns how many times op was called.
func (f *fakeS3) Calls(op string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[op]
}

func call[In, Out any](f *fakeS3, op string, fn func(context.Context, In) (Out, error), ctx context.Context, in In) (Out, error) {
	f.mu.Lock()
	f.calls[op]++
	f.mu.Unlock()
	if fn == nil {
		f.t.Errorf("unexpected call to %s", op)
		var zero Out
		return zero, errors.New("unexpected call")
	}
	return fn(ctx, in)
}

func (f *fakeS3) PutObject(ctx context.Context, in *s3.PutObjectInput, _ ...func(*s3.Options)) (*s3.PutObjectOutput, error) {
	return call(f, "PutObject", f.putObject, ctx, in)
}

func (f *fakeS3) CreateMultipartUpload(ctx context.Context, in *s3.CreateMultipartUploadInput, _ ...func(*s3.Options)) (*s3.CreateMultipartUploadOutput, error) {
	return call(f, "CreateMultipartUpload", f.createMultipartUpload, ctx, in)
}

func (f *fakeS3) UploadPart(ctx context.Context, in *s3.UploadPartInput, _ ...func(*s3.Options)) (*s3.UploadPartOutput, error) {
	return call(f, "UploadPart", f.uploadPart, ctx, in)
}

func (f *fakeS3) CompleteMultipartUpload(ctx context.Context, in *s3.CompleteMultipartUploadInput, _ ...func(*s3.Options)) (*s3.CompleteMultipartUploadOutput, error) {
	return call(f, "CompleteMultipartUpload", f.completeMultipartUpload, ctx, in)
}

func (f *fakeS3) AbortMultipartUpload(ctx context.Context, in *s3.AbortMultipartUploadInput, _ ...func(*s3.Options)) (*s3.AbortMultipartUploadOutput, error) {
	return call(f, "AbortMultipartUpload", f.abortMultipartUpload, ctx, in)
}

func (f *fakeS3) GetObject(ctx context.Context, in *s3.GetObjectInput, _ ...func(*s3.Options)) (*s3.GetObjectOutput, error) {
	return call(f, "GetObject", f.getObject, ctx, in)
}

func (f *fakeS3) HeadObject(ctx context.Context, in *s3.HeadObjectInput, _ ...func(*s3.Options)) (*s3.HeadObjectOutput, error) {
	return call(f, "HeadObject", f.headObject, ctx, in)
}

func (f *fakeS3) DeleteObject(ctx context.Context, in *s3.DeleteObjectInput, _ ...func(*s3.Options)) (*s3.DeleteObjectOutput, error) {
	return call(f, "DeleteObject", f.deleteObject, ctx, in)
}

func (f *fakeS3) ListObjectsV2(ctx context.Context, in *s3.ListObjectsV2Input, _ ...func(*s3.Options)) (*s3.ListObjectsV2Output, error) {
	return call(f, "ListObjectsV2", f.listObjectsV2, ctx, in)
}

func (f *fakeS3) HeadBucket(ctx context.Context, in *s3.HeadBucketInput, _ ...func(*s3.Options)) (*s3.HeadBucketOutput, error) {
	fn := f.headBucket
	if fn == nil {
		fn = func(context.Context, *s3.HeadBucketInput) (*s3.HeadBucketOutput, error) {
			return &s3.HeadBucketOutput{}, nil
		}
	}
	return call(f, "HeadBucket", fn, ctx, in)
}

func (f *fakeS3) CreateBucket(ctx context.Context, in *s3.CreateBucketInput, _ ...func(*s3.Options)) (*s3.CreateBucketOutput, error) {
	return call(f, "CreateBucket", f.createBucket, ctx, in)
}

// httpErr is an error as the SDK returns it for an HTTP status, with an
// S3 error code when code is not "".
func httpErr(op string, status int, code string) error {
	var inner error = errors.New(http.StatusText(status))
	if code != "" {
		inner = &smithy.GenericAPIError{Code: code, Message: http.StatusText(status)}
	}
	return &smithy.OperationError{ServiceID: "S3", OperationName: op, Err: &smithyhttp.ResponseError{
		Response: &smithyhttp.Response{Response: &http.Response{StatusCode: status}},
		Err:      inner,
	}}
}
