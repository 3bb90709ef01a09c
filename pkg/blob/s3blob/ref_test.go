package s3blob_test

import (
	"context"
	"net/http"
	"strconv"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/stretchr/testify/require"

	"github.com/jobfleet/jobfleet/pkg/blob/s3blob"
	"github.com/jobfleet/jobfleet/pkg/errcode"
)

// withOptions gives a fake the Options method of *s3.Client.
type withOptions struct {
	*fakeS3
	o s3.Options
}

func (w withOptions) Options() s3.Options { return w.o }

// Access point ARNs, as AWS gives them.
const (
	accessPointARN = "arn:aws:s3:us-east-1:123456789012:accesspoint/jobs"
	multiRegionARN = "arn:aws:s3::123456789012:accesspoint/mfzwi23gnjvgw.mrap"
	outpostsARN    = "arn:aws:s3-outposts:us-east-1:123456789012:outpost/op-01ac5d28a6a232904/accesspoint/jobs"
	objectLambda   = "arn:aws:s3-object-lambda:us-east-1:123456789012:accesspoint/jobs-ol"
)

// recordBuckets makes f record the Bucket parameter of the calls Open,
// Put, Head and List make.
func recordBuckets(f *fakeS3) func() []string {
	var mu sync.Mutex
	var got []string
	add := func(b *string) {
		mu.Lock()
		defer mu.Unlock()
		got = append(got, aws.ToString(b))
	}
	f.headBucket = func(_ context.Context, in *s3.HeadBucketInput) (*s3.HeadBucketOutput, error) {
		add(in.Bucket)
		return &s3.HeadBucketOutput{}, nil
	}
	f.putObject = func(_ context.Context, in *s3.PutObjectInput) (*s3.PutObjectOutput, error) {
		add(in.Bucket)
		return &s3.PutObjectOutput{ETag: aws.String(`"e"`)}, nil
	}
	f.headObject = func(_ context.Context, in *s3.HeadObjectInput) (*s3.HeadObjectOutput, error) {
		add(in.Bucket)
		return &s3.HeadObjectOutput{ContentLength: aws.Int64(1), ETag: aws.String(`"e"`)}, nil
	}
	f.listObjectsV2 = func(_ context.Context, in *s3.ListObjectsV2Input) (*s3.ListObjectsV2Output, error) {
		add(in.Bucket)
		return &s3.ListObjectsV2Output{}, nil
	}
	return func() []string {
		mu.Lock()
		defer mu.Unlock()
		return got
	}
}

func TestOpenByARN(t *testing.T) {
	t.Parallel()

	for given, want := range map[string]string{
		"bkt":                        "bkt",
		"arn:aws:s3:::bkt":           "bkt",
		"arn:aws-cn:s3:::bkt.with.d": "bkt.with.d",
		"jobs-abc123-s3alias":        "jobs-abc123-s3alias", // an access point alias is a name
		accessPointARN:               accessPointARN,
		outpostsARN:                  outpostsARN,
	} {
		t.Run(given, func(t *testing.T) {
			t.Parallel()
			f := newFake(t)
			buckets := recordBuckets(f)
			b, err := s3blob.Open(t.Context(), f, given, &s3blob.Options{Prefix: "prod/"})
			require.NoError(t, err)
			defer b.Close()
			_, err = b.PutBytes(t.Context(), "k", []byte("x"), "")
			require.NoError(t, err)
			_, err = b.Head(t.Context(), "k")
			require.NoError(t, err)
			_, err = b.List(t.Context(), "", "", 10)
			require.NoError(t, err)
			require.Equal(t, []string{want, want, want, want}, buckets(), "every call names the bucket so")
		})
	}

	t.Run("Malformed", func(t *testing.T) {
		t.Parallel()
		for _, bad := range []string{
			"arn:",
			"arn:aws:s3",
			"arn:aws:s3::",
			"arn:aws:s3:::",                          // no bucket
			"arn::s3:::bkt",                          // no partition
			"arn:aws:s3:::bkt/key",                   // an object
			"arn:aws:sqs:us-east-1:123456789012:bkt", // another service
			"arn:aws:dynamodb:us-east-1:123456789012:table/t", // and another
			"arn:aws:s3:us-east-1:123456789012:bkt",           // neither bucket nor access point
			"arn:aws:s3:us-east-1::accesspoint/jobs",          // no account
			"arn:aws:s3:us-east-1:123456789012:accesspoint",   // no name
			"arn:aws:s3:us-east-1:123456789012:accesspoint/",  // empty name
			"arn:aws:s3:us-east-1:123456789012:accesspoint/a/b",
			"arn:aws:s3-object-lambda::123456789012:accesspoint/jobs",
			multiRegionARN, // takes no HeadBucket
			objectLambda,   // takes no writes
			"arn:aws:s3-outposts:us-east-1:123456789012:accesspoint/jobs",
			"arn:aws:s3-outposts:us-east-1:123456789012:outpost/op-1/bucket/b",
		} {
			f := newFake(t)
			_, err := s3blob.Open(t.Context(), f, bad, nil)
			requireCode(t, errcode.InvalidArgument, err, bad)
			require.ErrorContains(t, err, strconv.Quote(bad), "the message names the value")
			require.Zero(t, f.Calls("HeadBucket"), "refused before any call")
		}
	})

	t.Run("AccessPointOfAnotherRegion", func(t *testing.T) {
		t.Parallel()
		f := withOptions{newFake(t), s3.Options{Region: "eu-west-1"}}
		_, err := s3blob.Open(t.Context(), f, accessPointARN, nil)
		requireCode(t, errcode.InvalidArgument, err)
		require.ErrorContains(t, err, "region us-east-1, but the S3 client calls region eu-west-1")
		require.Zero(t, f.Calls("HeadBucket"))

		// Another partition is refused whatever UseARNRegion says.
		_, err = s3blob.Open(t.Context(), withOptions{newFake(t), s3.Options{Region: "us-east-1", UseARNRegion: true}},
			"arn:aws-cn:s3:cn-north-1:123456789012:accesspoint/jobs", nil)
		requireCode(t, errcode.InvalidArgument, err)
		require.ErrorContains(t, err, "partition aws-cn")

		// Unless the client follows the ARN's region; a bucket has none.
		for _, c := range []struct {
			bucket string
			o      s3.Options
		}{
			{accessPointARN, s3.Options{Region: "eu-west-1", UseARNRegion: true}},
			{accessPointARN, s3.Options{Region: "us-east-1"}},
			{"arn:aws:s3:::bkt", s3.Options{Region: "eu-west-1"}},
		} {
			b, err := s3blob.Open(t.Context(), withOptions{newFake(t), c.o}, c.bucket, nil)
			require.NoError(t, err, "%s %+v", c.bucket, c.o)
			require.NoError(t, b.Close())
		}
	})

	t.Run("AccessPointPathStyle", func(t *testing.T) {
		t.Parallel()
		f := withOptions{newFake(t), s3.Options{Region: "us-east-1", UsePathStyle: true}}
		_, err := s3blob.Open(t.Context(), f, accessPointARN, nil)
		requireCode(t, errcode.InvalidArgument, err)
		require.ErrorContains(t, err, "path-style")
		b, err := s3blob.Open(t.Context(), f, "arn:aws:s3:::bkt", nil)
		require.NoError(t, err, "a bucket ARN is a name")
		require.NoError(t, b.Close())
	})
}

// hostRecorder is an HTTP transport that answers every request with an
// empty 200 and records where it was sent.
type hostRecorder struct {
	mu    sync.Mutex
	hosts []string
}

func (h *hostRecorder) RoundTrip(r *http.Request) (*http.Response, error) {
	h.mu.Lock()
	h.hosts = append(h.hosts, r.URL.Host+r.URL.Path)
	h.mu.Unlock()
	return &http.Response{StatusCode: http.StatusOK, Header: http.Header{}, Body: http.NoBody, Request: r}, nil
}

func (h *hostRecorder) got() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.hosts
}

// TestARNWithSDK pins what the SDK does with what Open passes as Bucket,
// with a real client and no network: it refuses a bucket ARN (so Open
// passes the name), and sends calls on an access point ARN to the access
// point's endpoint.
func TestARNWithSDK(t *testing.T) {
	t.Parallel()
	newClient := func(rt http.RoundTripper, opts ...func(*s3.Options)) *s3.Client {
		return s3.New(s3.Options{
			Region:      "us-east-1",
			Credentials: credentials.NewStaticCredentialsProvider("AKID", "SECRET", ""),
			HTTPClient:  &http.Client{Transport: rt},
		}, opts...)
	}

	rec := &hostRecorder{}
	client := newClient(rec)
	_, err := client.HeadBucket(t.Context(), &s3.HeadBucketInput{Bucket: aws.String("arn:aws:s3:::bkt")})
	require.ErrorContains(t, err, "Invalid ARN", "the SDK takes no bucket ARN")
	require.Empty(t, rec.got(), "and sends nothing")

	for given, want := range map[string]string{
		"arn:aws:s3:::bkt": "bkt.s3.us-east-1.amazonaws.com/k",
		accessPointARN:     "jobs-123456789012.s3-accesspoint.us-east-1.amazonaws.com/k",
	} {
		rec := &hostRecorder{}
		b, err := s3blob.Open(t.Context(), newClient(rec), given, nil)
		require.NoError(t, err, given)
		_, err = b.Head(t.Context(), "k")
		require.NoError(t, err, given)
		require.NoError(t, b.Close())
		require.Len(t, rec.got(), 2, given)
		require.Equal(t, want, rec.got()[1], given)
	}

	// Another region with UseARNRegion: the SDK follows the ARN.
	rec = &hostRecorder{}
	b, err := s3blob.Open(t.Context(), newClient(rec, func(o *s3.Options) { o.Region, o.UseARNRegion = "eu-west-1", true }), accessPointARN, nil)
	require.NoError(t, err)
	require.NoError(t, b.Close())
	require.Equal(t, []string{"jobs-123456789012.s3-accesspoint.us-east-1.amazonaws.com/"}, rec.got())

	// What Open refuses, the SDK refuses too, before any request; Open says
	// so as InvalidArgument rather than as a failed call.
	for sdkSays, opt := range map[string]func(*s3.Options){
		"does not match client region":                          func(o *s3.Options) { o.Region = "eu-west-1" },
		"Path-style addressing cannot be used with ARN buckets": func(o *s3.Options) { o.UsePathStyle = true },
	} {
		rec := &hostRecorder{}
		client := newClient(rec, opt)
		_, err := client.HeadBucket(t.Context(), &s3.HeadBucketInput{Bucket: aws.String(accessPointARN)})
		require.ErrorContains(t, err, sdkSays)
		_, err = s3blob.Open(t.Context(), client, accessPointARN, nil)
		requireCode(t, errcode.InvalidArgument, err, sdkSays)
		require.Empty(t, rec.got())
	}
}

func TestCreateBucketRefusesARN(t *testing.T) {
	t.Parallel()
	f := newFake(t)
	for _, b := range []string{"arn:aws:s3:::bkt", accessPointARN} {
		err := s3blob.CreateBucket(t.Context(), f, b)
		requireCode(t, errcode.InvalidArgument, err, b)
		require.ErrorContains(t, err, b)
	}
	require.Zero(t, f.Calls("CreateBucket"))
}
