// Package s3blob is the aws profile's blob store: package blob's contract
// on an Amazon S3 bucket, through aws-sdk-go-v2.
//
//	client := s3.NewFromConfig(cfg, func(o *s3.Options) {
//		o.UsePathStyle = os.Getenv("AWS_ENDPOINT_URL") != "" // LocalStack, moto
//	})
//	err := s3blob.CreateBucket(ctx, client, "jobfleet-artifacts") // bootstrap
//	b, err := s3blob.Open(ctx, client, "jobfleet-artifacts", &s3blob.Options{Prefix: "prod/"})
//
// # Calls
//
// Put uploads through feature/s3/transfermanager: it reads up to PartSize
// bytes; a reader that ends within them is one PutObject, a longer one a
// multipart upload of PartSize parts, Concurrency of them in flight. The
// memory a Put holds is bounded by about (Concurrency+2) × PartSize,
// whatever the object's size, and a reader of unknown size is streamed.
// When a multipart upload fails or its ctx ends, the upload is aborted
// (with a fresh context, so a cancelled Put still aborts), so no partial
// object or stray parts remain; S3 makes the completed object visible
// atomically. A Put whose PutOptions.Size is positive counts the bytes
// and fails with errcode.InvalidArgument, before anything is completed,
// when the reader yields more or fewer.
//
// Get is GetObject, with a Range header (bytes=a-b, or bytes=a- to the
// end) unless the whole object is asked for; Attrs.Size is the whole
// object's size, from Content-Range. Head is HeadObject, Delete is
// DeleteObject (S3 answers success for a missing key), List is
// ListObjectsV2 with Prefix, StartAfter = the cursor and MaxKeys = limit.
//
// # Addressing and the HTTP client
//
// A custom endpoint (AWS_ENDPOINT_URL pointing at LocalStack or moto)
// needs path-style addressing: build the client with o.UsePathStyle =
// true, as above; awstest's configurations need it too. Against AWS leave
// it false (virtual-hosted style). The SDK's default HTTP client has no
// overall timeout, which suits large transfers; if you set one, it bounds
// each part upload and each Get body read.
//
// # Naming a bucket
//
// Open takes a bucket as AWS names it:
//
//   - a bucket name ("jobfleet-artifacts"), or an access point alias,
//     which S3 takes wherever it takes a bucket name;
//   - a bucket ARN ("arn:aws:s3:::jobfleet-artifacts"): the bucket of that
//     name, which every call names (S3 takes no bucket ARN as Bucket);
//   - a regional access point ARN ("arn:aws:s3:us-east-1:123456789012:accesspoint/jobs",
//     or one of S3 on Outposts): passed as it is to every call, and the SDK
//     sends the call to the access point, whose policy (and the bucket's,
//     which delegates to it) must allow the calls this package makes.
//
// Anything else beginning "arn:" (another service, an object ARN, a part
// missing, a Multi-Region Access Point, which takes no HeadBucket, or an
// Object Lambda one, which takes no writes) is errcode.InvalidArgument
// naming the value, as is an access point ARN the SDK would refuse before
// any request: one of another partition, or of another region than the
// client's (unless the client's UseARNRegion is set), or with
// path-style addressing, which access points do not support (so they
// cannot be used against moto or LocalStack). CreateBucket takes a name
// only.
//
// # Errors
//
// NoSuchKey, NoSuchBucket and a 404 (HeadObject has no error body, so the
// status decides) are errcode.NotFound; InvalidRange (416) and other
// malformed-request codes (KeyTooLongError, EntityTooSmall, ...) are
// errcode.InvalidArgument; SlowDown, 5xx responses and transport failures
// are errcode.Unavailable (after the SDK's own retries; this package adds
// none); an ended ctx is errcode.Canceled (the context error stays in the
// chain); use after Close is errcode.Closed. A Put whose reader fails
// returns the reader's error, wrapped.
//
// # Differences from fileblob
//
//   - The ETag is S3's: the quoted MD5 of the bytes for a single upload,
//     "<md5 of part MD5s>-N" for a multipart one.
//   - ModTime from Head, Get and List is S3's LastModified (whole seconds,
//     the server's clock); Put returns Options.Clock's time at the end of
//     the upload, since S3 does not return LastModified to a PUT.
//   - List's Attrs carry Key, Size, ModTime and ETag but no ContentType
//     (ListObjectsV2 does not return it).
//   - With Options.Prefix, the prefix counts toward S3's 1024-byte key
//     limit: a key may have at most 1024 - len(Prefix) bytes
//     (errcode.InvalidArgument from S3 otherwise).
package s3blob

import (
	"cmp"
	"context"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/s3/transfermanager"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/jobfleet/jobfleet/pkg/blob"
	"github.com/jobfleet/jobfleet/pkg/clock"
	"github.com/jobfleet/jobfleet/pkg/errcode"
)

// API is the part of the S3 client a bucket uses; *s3.Client satisfies
// it. It includes what feature/s3/transfermanager calls
// (transfermanager.S3APIClient). Tests substitute fakes for behaviours an
// emulator cannot produce.
type API interface {
	PutObject(ctx context.Context, in *s3.PutObjectInput, optFns ...func(*s3.Options)) (*s3.PutObjectOutput, error)
	CreateMultipartUpload(ctx context.Context, in *s3.CreateMultipartUploadInput, optFns ...func(*s3.Options)) (*s3.CreateMultipartUploadOutput, error)
	UploadPart(ctx context.Context, in *s3.UploadPartInput, optFns ...func(*s3.Options)) (*s3.UploadPartOutput, error)
	CompleteMultipartUpload(ctx context.Context, in *s3.CompleteMultipartUploadInput, optFns ...func(*s3.Options)) (*s3.CompleteMultipartUploadOutput, error)
	AbortMultipartUpload(ctx context.Context, in *s3.AbortMultipartUploadInput, optFns ...func(*s3.Options)) (*s3.AbortMultipartUploadOutput, error)
	GetObject(ctx context.Context, in *s3.GetObjectInput, optFns ...func(*s3.Options)) (*s3.GetObjectOutput, error)
	HeadObject(ctx context.Context, in *s3.HeadObjectInput, optFns ...func(*s3.Options)) (*s3.HeadObjectOutput, error)
	DeleteObject(ctx context.Context, in *s3.DeleteObjectInput, optFns ...func(*s3.Options)) (*s3.DeleteObjectOutput, error)
	ListObjectsV2(ctx context.Context, in *s3.ListObjectsV2Input, optFns ...func(*s3.Options)) (*s3.ListObjectsV2Output, error)
	HeadBucket(ctx context.Context, in *s3.HeadBucketInput, optFns ...func(*s3.Options)) (*s3.HeadBucketOutput, error)
}

var _ transfermanager.S3APIClient = API(nil)

// AdminAPI is the part of the S3 client CreateBucket uses; *s3.Client
// satisfies it.
type AdminAPI interface {
	CreateBucket(ctx context.Context, in *s3.CreateBucketInput, optFns ...func(*s3.Options)) (*s3.CreateBucketOutput, error)
}

const (
	// MinPartSize is S3's smallest part (but the last) of a multipart
	// upload.
	MinPartSize = 5 << 20
	// DefaultPartSize is Options.PartSize's default.
	DefaultPartSize = 8 << 20
	// DefaultConcurrency is Options.Concurrency's default.
	DefaultConcurrency = 4
	// abortTimeout bounds the AbortMultipartUpload of a failed Put, which
	// runs on a fresh context so that a cancelled Put still cleans up.
	abortTimeout = 30 * time.Second
)

// Options configure a bucket handle. nil means defaults.
type Options struct {
	// Prefix is prepended to every key and stripped from listed keys, so
	// several deployments can share a bucket ("prod/", "staging/"). It
	// must be a valid key prefix; ending it with "/" is usual.
	Prefix string
	// PartSize is the size of a multipart upload's parts, and the size
	// from which a Put is a multipart upload: at least MinPartSize; 0
	// means DefaultPartSize. S3 allows 10,000 parts, so it also bounds the
	// largest object of unknown size (80 GB at 8 MiB); a Put of known size
	// grows its parts as needed.
	PartSize int64
	// Concurrency is how many parts a Put uploads at once; 0 means
	// DefaultConcurrency.
	Concurrency int
	// Clock stamps the ModTime that Put returns; nil means the system
	// clock.
	Clock clock.Clock
}

// Open opens bucket, which must exist (errcode.NotFound otherwise; Open
// calls HeadBucket): a bucket name, a bucket ARN or an access point ARN
// (see "Naming a bucket"; a malformed ARN is errcode.InvalidArgument). The
// returned Bucket is safe for concurrent use; closing it does not affect
// client, which the caller owns.
func Open(ctx context.Context, client API, bucket string, opts *Options) (*blob.Bucket, error) {
	d, err := open(ctx, client, bucket, opts)
	if err != nil {
		return nil, err
	}
	return blob.New(d), nil
}

func open(ctx context.Context, client API, bucket string, opts *Options) (*driver, error) {
	if opts == nil {
		opts = &Options{}
	}
	partSize := cmp.Or(opts.PartSize, DefaultPartSize)
	concurrency := cmp.Or(opts.Concurrency, DefaultConcurrency)
	switch {
	case bucket == "":
		return nil, errcode.New(errcode.InvalidArgument, "open bucket: empty name")
	case partSize < MinPartSize:
		return nil, errcode.New(errcode.InvalidArgument, "open bucket %s: PartSize %d is less than S3's minimum %d", bucket, partSize, MinPartSize)
	case concurrency < 1:
		return nil, errcode.New(errcode.InvalidArgument, "open bucket %s: Concurrency %d is less than 1", bucket, concurrency)
	}
	if p := opts.Prefix; p != "" {
		if err := blob.ValidKey(strings.TrimSuffix(p, "/")); err != nil {
			return nil, errcode.Wrap(errcode.InvalidArgument, err, "open bucket %s: invalid prefix", bucket)
		}
	}
	param, err := bucketParam(client, bucket)
	if err != nil {
		return nil, errcode.Wrap(errcode.Of(err), err, "open bucket %q", bucket)
	}
	if _, err := client.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: aws.String(param)}); err != nil {
		return nil, mapErr(ctx, err, "open bucket %s", bucket)
	}
	return &driver{
		client: client,
		bucket: param,
		prefix: opts.Prefix,
		clock:  clock.Or(opts.Clock),
		done:   make(chan struct{}),
		uploader: transfermanager.New(client, func(o *transfermanager.Options) {
			o.PartSizeBytes = partSize
			o.MultipartUploadThreshold = partSize
			o.Concurrency = concurrency
			o.FailTimeout = abortTimeout
		}),
	}, nil
}

// CreateBucket creates bucket if it does not exist (idempotent: a bucket
// this account already owns is success). Outside us-east-1 the bucket is
// created in the client's region. bucket is a name: a bucket or access
// point given by ARN is one to use, not to create (errcode.InvalidArgument).
func CreateBucket(ctx context.Context, client AdminAPI, bucket string) error {
	if strings.HasPrefix(bucket, "arn:") {
		return errcode.New(errcode.InvalidArgument, "create bucket %s: give a bucket name; a bucket or access point given by ARN is taken to exist", bucket)
	}
	in := &s3.CreateBucketInput{Bucket: aws.String(bucket)}
	if c, ok := client.(interface{ Options() s3.Options }); ok {
		// us-east-1 takes no LocationConstraint; other regions need theirs.
		if r := c.Options().Region; r != "" && r != "us-east-1" {
			in.CreateBucketConfiguration = &types.CreateBucketConfiguration{LocationConstraint: types.BucketLocationConstraint(r)}
		}
	}
	_, err := client.CreateBucket(ctx, in)
	var owned *types.BucketAlreadyOwnedByYou
	if err == nil || asType(err, &owned) {
		return nil
	}
	return mapErr(ctx, err, "create bucket %s", bucket)
}
