package s3blob_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/stretchr/testify/require"

	"github.com/jobfleet/jobfleet/pkg/blob"
	"github.com/jobfleet/jobfleet/pkg/blob/s3blob"
	"github.com/jobfleet/jobfleet/pkg/clock"
	"github.com/jobfleet/jobfleet/pkg/errcode"
)

func requireCode(t *testing.T, want errcode.Code, err error, msgAndArgs ...any) {
	t.Helper()
	require.Error(t, err, msgAndArgs...)
	require.Equalf(t, want, errcode.Of(err), "error: %v %v", err, msgAndArgs)
}

// openFake opens bucket "bkt" on f.
func openFake(t *testing.T, f *fakeS3, opts *s3blob.Options) *blob.Bucket {
	t.Helper()
	b, err := s3blob.Open(t.Context(), f, "bkt", opts)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, b.Close()) })
	return b
}

// multipart makes f a store of multipart uploads that records parts and
// fails UploadPart with failPart's error for that part number (0: none).
type multipart struct {
	mu        sync.Mutex
	parts     map[int32]int // part number → size
	completed bool
	aborted   []string // upload ids
	abortCtx  error    // the abort call's context error
}

func (m *multipart) install(f *fakeS3, failPart int32, failErr error) {
	m.parts = map[int32]int{}
	f.createMultipartUpload = func(_ context.Context, in *s3.CreateMultipartUploadInput) (*s3.CreateMultipartUploadOutput, error) {
		return &s3.CreateMultipartUploadOutput{UploadId: aws.String("upload-1"), Bucket: in.Bucket, Key: in.Key}, nil
	}
	f.uploadPart = func(ctx context.Context, in *s3.UploadPartInput) (*s3.UploadPartOutput, error) {
		n, err := io.Copy(io.Discard, in.Body)
		if err != nil {
			return nil, err
		}
		if aws.ToInt32(in.PartNumber) == failPart {
			return nil, failErr
		}
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		m.mu.Lock()
		m.parts[aws.ToInt32(in.PartNumber)] = int(n)
		m.mu.Unlock()
		return &s3.UploadPartOutput{ETag: aws.String(fmt.Sprintf(`"part-%d"`, aws.ToInt32(in.PartNumber)))}, nil
	}
	f.completeMultipartUpload = func(context.Context, *s3.CompleteMultipartUploadInput) (*s3.CompleteMultipartUploadOutput, error) {
		m.mu.Lock()
		m.completed = true
		m.mu.Unlock()
		return &s3.CompleteMultipartUploadOutput{ETag: aws.String(`"whole-3"`)}, nil
	}
	f.abortMultipartUpload = func(ctx context.Context, in *s3.AbortMultipartUploadInput) (*s3.AbortMultipartUploadOutput, error) {
		m.mu.Lock()
		m.aborted = append(m.aborted, aws.ToString(in.UploadId))
		m.abortCtx = ctx.Err()
		m.mu.Unlock()
		return &s3.AbortMultipartUploadOutput{}, nil
	}
}

// stream is a reader of unknown size (not a Seeker).
type stream struct{ r io.Reader }

func (s stream) Read(p []byte) (int, error) { return s.r.Read(p) }

func TestPutMultipart(t *testing.T) {
	t.Parallel()
	f := newFake(t)
	m := &multipart{}
	m.install(f, 0, nil)
	clk := clock.NewFake(time.Date(2031, 1, 2, 3, 4, 5, 0, time.UTC))
	b := openFake(t, f, &s3blob.Options{PartSize: s3blob.MinPartSize, Prefix: "prod/", Clock: clk})
	data := bytes.Repeat([]byte("0123456789abcdef"), (12<<20)/16+100)
	a, err := b.Put(t.Context(), "k/big", stream{bytes.NewReader(data)}, &blob.PutOptions{Size: -1})
	require.NoError(t, err)
	require.Equal(t, blob.Attrs{Key: "k/big", Size: int64(len(data)), ContentType: blob.DefaultContentType, ETag: `"whole-3"`, ModTime: clk.Now()}, a)
	require.True(t, m.completed)
	require.Equal(t, map[int32]int{1: 5 << 20, 2: 5 << 20, 3: len(data) - 10<<20}, m.parts)
	require.Empty(t, m.aborted)
	require.Zero(t, f.Calls("PutObject"))
}

// TestFailedMultipartIsAborted: an upload that fails in the middle is
// aborted, never completed, whatever fails: a part, the reader, the
// declared size, or ctx.
func TestFailedMultipartIsAborted(t *testing.T) {
	t.Parallel()
	data := bytes.Repeat([]byte{7}, 12<<20)
	errRead := errors.New("disk on fire")
	for _, c := range []struct {
		name     string
		failPart int32
		partErr  error
		body     func(cancel context.CancelFunc) io.Reader
		size     int64
		want     errcode.Code
	}{
		{
			name: "SlowDown", failPart: 2, partErr: httpErr("UploadPart", http.StatusServiceUnavailable, "SlowDown"),
			body: func(context.CancelFunc) io.Reader { return stream{bytes.NewReader(data)} }, want: errcode.Unavailable,
		},
		{
			name: "ReaderFails",
			body: func(context.CancelFunc) io.Reader {
				return io.MultiReader(bytes.NewReader(data), iotestErrReader{errRead})
			},
			want: errcode.Unknown,
		},
		{
			name: "FewerBytesThanDeclared", size: int64(len(data)) + 1,
			body: func(context.CancelFunc) io.Reader { return stream{bytes.NewReader(data)} }, want: errcode.InvalidArgument,
		},
		{
			name: "MoreBytesThanDeclared", size: int64(len(data)) - 1,
			body: func(context.CancelFunc) io.Reader { return stream{bytes.NewReader(data)} }, want: errcode.InvalidArgument,
		},
		{
			name: "Cancelled",
			body: func(cancel context.CancelFunc) io.Reader {
				// Cancels once 11 MiB are read: parts are in flight.
				return &cancelAfter{r: bytes.NewReader(data), n: 11 << 20, cancel: cancel}
			},
			want: errcode.Canceled,
		},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			f := newFake(t)
			m := &multipart{}
			m.install(f, c.failPart, c.partErr)
			b := openFake(t, f, &s3blob.Options{PartSize: s3blob.MinPartSize})
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			_, err := b.Put(ctx, "k", c.body(cancel), &blob.PutOptions{Size: c.size})
			requireCode(t, c.want, err)
			if c.name == "ReaderFails" {
				require.ErrorIs(t, err, errRead)
			}
			require.False(t, m.completed, "a failed upload must not be completed")
			require.Equal(t, []string{"upload-1"}, m.aborted, "a failed upload is aborted")
			require.NoError(t, m.abortCtx, "the abort runs on a live context, even when the Put's ended")
		})
	}
}

type iotestErrReader struct{ err error }

func (r iotestErrReader) Read([]byte) (int, error) { return 0, r.err }

// cancelAfter cancels after n bytes and goes on yielding.
type cancelAfter struct {
	r      io.Reader
	n      int
	read   int
	cancel context.CancelFunc
}

func (c *cancelAfter) Read(p []byte) (int, error) {
	k, err := c.r.Read(p)
	c.read += k
	if c.read >= c.n {
		c.cancel()
	}
	return k, err
}

func TestPutSingle(t *testing.T) {
	t.Parallel()
	f := newFake(t)
	var got *s3.PutObjectInput
	var body []byte
	f.putObject = func(_ context.Context, in *s3.PutObjectInput) (*s3.PutObjectOutput, error) {
		got = in
		var err error
		body, err = io.ReadAll(in.Body)
		require.NoError(t, err)
		return &s3.PutObjectOutput{ETag: aws.String(`"md5"`)}, nil
	}
	clk := clock.NewFake(time.Date(2031, 1, 2, 3, 4, 5, 6, time.UTC))
	b := openFake(t, f, &s3blob.Options{Prefix: "staging/", Clock: clk})
	a, err := b.Put(t.Context(), "a/b.json", stream{strings.NewReader(`{"x":1}`)}, &blob.PutOptions{ContentType: "application/json", Size: 7})
	require.NoError(t, err)
	require.Equal(t, blob.Attrs{Key: "a/b.json", Size: 7, ContentType: "application/json", ETag: `"md5"`, ModTime: clk.Now()}, a)
	require.Equal(t, "bkt", aws.ToString(got.Bucket))
	require.Equal(t, "staging/a/b.json", aws.ToString(got.Key))
	require.Equal(t, "application/json", aws.ToString(got.ContentType))
	require.Equal(t, `{"x":1}`, string(body))
	require.Zero(t, f.Calls("CreateMultipartUpload"))

	// No content type: the contract's default, not S3's.
	_, err = b.PutBytes(t.Context(), "c", []byte("x"), "")
	require.NoError(t, err)
	require.Equal(t, blob.DefaultContentType, aws.ToString(got.ContentType))

	// A size mismatch fails before anything is sent.
	_, err = b.Put(t.Context(), "d", strings.NewReader("12345"), &blob.PutOptions{Size: 10})
	requireCode(t, errcode.InvalidArgument, err)
	require.Equal(t, 2, f.Calls("PutObject"))
}

// TestSlowDownIsUnavailable: S3's 503 SlowDown (after the SDK's own
// retries) is Unavailable, reported after one call.
func TestSlowDownIsUnavailable(t *testing.T) {
	t.Parallel()
	f := newFake(t)
	slow := func(op string) error { return httpErr(op, http.StatusServiceUnavailable, "SlowDown") }
	f.getObject = func(context.Context, *s3.GetObjectInput) (*s3.GetObjectOutput, error) { return nil, slow("GetObject") }
	f.headObject = func(context.Context, *s3.HeadObjectInput) (*s3.HeadObjectOutput, error) {
		return nil, slow("HeadObject")
	}
	f.deleteObject = func(context.Context, *s3.DeleteObjectInput) (*s3.DeleteObjectOutput, error) {
		return nil, slow("DeleteObject")
	}
	f.listObjectsV2 = func(context.Context, *s3.ListObjectsV2Input) (*s3.ListObjectsV2Output, error) {
		return nil, slow("ListObjectsV2")
	}
	f.putObject = func(context.Context, *s3.PutObjectInput) (*s3.PutObjectOutput, error) { return nil, slow("PutObject") }
	b := openFake(t, f, nil)
	ctx := t.Context()
	_, _, err := b.Get(ctx, "k", blob.Range{Offset: 3, Length: 4})
	requireCode(t, errcode.Unavailable, err, "get")
	require.True(t, errcode.Retryable(err))
	_, err = b.Head(ctx, "k")
	requireCode(t, errcode.Unavailable, err, "head")
	requireCode(t, errcode.Unavailable, b.Delete(ctx, "k"), "delete")
	_, err = b.List(ctx, "", "", 10)
	requireCode(t, errcode.Unavailable, err, "list")
	_, err = b.PutBytes(ctx, "k", []byte("x"), "")
	requireCode(t, errcode.Unavailable, err, "put")
	for _, op := range []string{"GetObject", "HeadObject", "DeleteObject", "ListObjectsV2", "PutObject"} {
		require.Equal(t, 1, f.Calls(op), op)
	}
}

func TestErrorMapping(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name string
		err  error
		want errcode.Code
	}{
		{"NoSuchKey", &types.NoSuchKey{}, errcode.NotFound},
		{"HeadNotFound", httpErr("HeadObject", http.StatusNotFound, "NotFound"), errcode.NotFound},
		{"Bare404", httpErr("HeadObject", http.StatusNotFound, ""), errcode.NotFound},
		{"InvalidRange", httpErr("GetObject", http.StatusRequestedRangeNotSatisfiable, "InvalidRange"), errcode.InvalidArgument},
		{"KeyTooLong", httpErr("HeadObject", http.StatusBadRequest, "KeyTooLongError"), errcode.InvalidArgument},
		{"InternalError", httpErr("HeadObject", http.StatusInternalServerError, "InternalError"), errcode.Unavailable},
		{"Bare502", httpErr("HeadObject", http.StatusBadGateway, ""), errcode.Unavailable},
		{"PreconditionFailed", httpErr("HeadObject", http.StatusPreconditionFailed, "PreconditionFailed"), errcode.FailedPrecondition},
		{"AccessDenied", httpErr("HeadObject", http.StatusForbidden, "AccessDenied"), errcode.Unknown},
		{"Network", errors.New("dial tcp: connection refused"), errcode.Unavailable},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			f := newFake(t)
			f.headObject = func(context.Context, *s3.HeadObjectInput) (*s3.HeadObjectOutput, error) { return nil, c.err }
			b := openFake(t, f, nil)
			_, err := b.Head(t.Context(), "k")
			requireCode(t, c.want, err)
			require.ErrorIs(t, err, c.err, "the SDK error stays in the chain")
			require.ErrorContains(t, err, "head blob k")
		})
	}
}

func TestGetRanges(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name      string
		rng       blob.Range
		wantRange string // "" for none
	}{
		{"All", blob.All, ""},
		{"Start", blob.Range{Offset: 0, Length: 10}, "bytes=0-9"},
		{"Middle", blob.Range{Offset: 40, Length: 20}, "bytes=40-59"},
		{"ToEnd", blob.Range{Offset: 90, Length: -1}, "bytes=90-"},
		{"Huge", blob.Range{Offset: 1, Length: 1<<63 - 1}, "bytes=1-"},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			f := newFake(t)
			var got *s3.GetObjectInput
			f.getObject = func(_ context.Context, in *s3.GetObjectInput) (*s3.GetObjectOutput, error) {
				got = in
				out := &s3.GetObjectOutput{
					Body:          io.NopCloser(strings.NewReader("data")),
					ContentLength: aws.Int64(4),
					ContentType:   aws.String("text/plain"),
					ETag:          aws.String(`"e"`),
					LastModified:  aws.Time(time.Date(2030, 1, 1, 0, 0, 0, 0, time.FixedZone("x", 3600))),
				}
				if in.Range != nil {
					out.ContentRange = aws.String("bytes 0-3/100")
				}
				return out, nil
			}
			b := openFake(t, f, &s3blob.Options{Prefix: "p/"})
			rc, a, err := b.Get(t.Context(), "k", c.rng)
			require.NoError(t, err)
			require.NoError(t, rc.Close())
			require.Equal(t, c.wantRange, aws.ToString(got.Range))
			require.Equal(t, "p/k", aws.ToString(got.Key))
			size := int64(100)
			if c.wantRange == "" {
				size = 4
			}
			require.Equal(t, blob.Attrs{Key: "k", Size: size, ContentType: "text/plain", ETag: `"e"`,
				ModTime: time.Date(2029, 12, 31, 23, 0, 0, 0, time.UTC)}, a)
			require.Equal(t, time.UTC, a.ModTime.Location())
		})
	}

	t.Run("EmptyObject", func(t *testing.T) {
		t.Parallel()
		// S3 refuses any range of an empty object with 416; from offset 0
		// the contract reads it. If a Put filled it meanwhile, the range
		// asked is served.
		for _, content := range []string{"", "0123456789abcdef"} {
			f := newFake(t)
			var ranges []string
			f.getObject = func(_ context.Context, in *s3.GetObjectInput) (*s3.GetObjectOutput, error) {
				ranges = append(ranges, aws.ToString(in.Range))
				if in.Range != nil {
					return nil, httpErr("GetObject", http.StatusRequestedRangeNotSatisfiable, "InvalidRange")
				}
				return &s3.GetObjectOutput{Body: io.NopCloser(strings.NewReader(content)), ContentLength: aws.Int64(int64(len(content)))}, nil
			}
			b := openFake(t, f, nil)
			rc, a, err := b.Get(t.Context(), "k", blob.Range{Offset: 0, Length: 5})
			require.NoError(t, err)
			got, err := io.ReadAll(rc)
			require.NoError(t, err)
			require.NoError(t, rc.Close())
			require.Equal(t, content[:min(5, len(content))], string(got))
			require.Equal(t, int64(len(content)), a.Size)
			require.Equal(t, []string{"bytes=0-4", ""}, ranges)

			// From another offset the range error stands.
			_, _, err = b.Get(t.Context(), "k", blob.Range{Offset: 1, Length: 5})
			requireCode(t, errcode.InvalidArgument, err)
		}
	})
}

func TestList(t *testing.T) {
	t.Parallel()
	f := newFake(t)
	var got *s3.ListObjectsV2Input
	truncated := true
	f.listObjectsV2 = func(_ context.Context, in *s3.ListObjectsV2Input) (*s3.ListObjectsV2Output, error) {
		got = in
		return &s3.ListObjectsV2Output{
			IsTruncated: aws.Bool(truncated),
			Contents: []types.Object{
				{Key: aws.String("prod/a/1"), Size: aws.Int64(1), ETag: aws.String(`"1"`), LastModified: aws.Time(time.Unix(10, 0))},
				{Key: aws.String("prod/a/2"), Size: aws.Int64(2), ETag: aws.String(`"2"`), LastModified: aws.Time(time.Unix(20, 0))},
			},
		}, nil
	}
	b := openFake(t, f, &s3blob.Options{Prefix: "prod/"})
	p, err := b.List(t.Context(), "a/", "a/0", 2)
	require.NoError(t, err)
	require.Equal(t, "prod/a/", aws.ToString(got.Prefix))
	require.Equal(t, "prod/a/0", aws.ToString(got.StartAfter))
	require.Equal(t, int32(2), aws.ToInt32(got.MaxKeys))
	require.Equal(t, blob.ListPage{
		Objects: []blob.Attrs{
			{Key: "a/1", Size: 1, ETag: `"1"`, ModTime: time.Unix(10, 0).UTC()},
			{Key: "a/2", Size: 2, ETag: `"2"`, ModTime: time.Unix(20, 0).UTC()},
		},
		Next: "a/2",
	}, p)

	truncated = false
	p, err = b.List(t.Context(), "", "", 0)
	require.NoError(t, err)
	require.Empty(t, p.Next, "the last page has no cursor")
	require.Nil(t, got.StartAfter)
	require.Equal(t, "prod/", aws.ToString(got.Prefix))
	require.Equal(t, int32(blob.MaxListLimit), aws.ToInt32(got.MaxKeys))
}

func TestOpen(t *testing.T) {
	t.Parallel()

	t.Run("MissingBucket", func(t *testing.T) {
		t.Parallel()
		f := newFake(t)
		f.headBucket = func(context.Context, *s3.HeadBucketInput) (*s3.HeadBucketOutput, error) {
			return nil, httpErr("HeadBucket", http.StatusNotFound, "")
		}
		_, err := s3blob.Open(t.Context(), f, "nope", nil)
		requireCode(t, errcode.NotFound, err)
	})

	t.Run("InvalidOptions", func(t *testing.T) {
		t.Parallel()
		f := newFake(t)
		for _, c := range []struct {
			bucket string
			opts   *s3blob.Options
		}{
			{"", nil},
			{"bkt", &s3blob.Options{PartSize: s3blob.MinPartSize - 1}},
			{"bkt", &s3blob.Options{Concurrency: -1}},
			{"bkt", &s3blob.Options{Prefix: "/abs/"}},
			{"bkt", &s3blob.Options{Prefix: "a/../b/"}},
			{"bkt", &s3blob.Options{Prefix: "a//"}},
		} {
			_, err := s3blob.Open(t.Context(), f, c.bucket, c.opts)
			requireCode(t, errcode.InvalidArgument, err, "%q %+v", c.bucket, c.opts)
		}
		require.Zero(t, f.Calls("HeadBucket"))
	})

	t.Run("Closed", func(t *testing.T) {
		t.Parallel()
		f := newFake(t)
		d, err := s3blob.OpenDriver(t.Context(), f, "bkt", nil)
		require.NoError(t, err)
		require.NoError(t, d.Close())
		require.NoError(t, d.Close(), "twice")
		_, err = d.Put(t.Context(), "k", strings.NewReader("x"), blob.PutOptions{Size: -1})
		requireCode(t, errcode.Closed, err)
		_, _, err = d.Get(t.Context(), "k", blob.All)
		requireCode(t, errcode.Closed, err)
		_, err = d.Head(t.Context(), "k")
		requireCode(t, errcode.Closed, err)
		requireCode(t, errcode.Closed, d.Delete(t.Context(), "k"))
		_, err = d.List(t.Context(), "", "", 1)
		requireCode(t, errcode.Closed, err)
	})
}

// withRegion gives a fake the Options method of *s3.Client.
type withRegion struct {
	*fakeS3
	region string
}

func (w withRegion) Options() s3.Options { return s3.Options{Region: w.region} }

func TestCreateBucket(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name       string
		region     string
		err        error
		want       errcode.Code // Unknown: success
		constraint types.BucketLocationConstraint
	}{
		{"Created", "us-east-1", nil, errcode.Unknown, ""},
		{"OwnedByYou", "us-east-1", &types.BucketAlreadyOwnedByYou{}, errcode.Unknown, ""},
		{"OtherRegion", "eu-west-1", nil, errcode.Unknown, "eu-west-1"},
		{"TakenByOthers", "us-east-1", &types.BucketAlreadyExists{}, errcode.AlreadyExists, ""},
		{"BadName", "us-east-1", httpErr("CreateBucket", http.StatusBadRequest, "InvalidBucketName"), errcode.InvalidArgument, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			f := newFake(t)
			var got *s3.CreateBucketInput
			f.createBucket = func(_ context.Context, in *s3.CreateBucketInput) (*s3.CreateBucketOutput, error) {
				got = in
				return &s3.CreateBucketOutput{}, c.err
			}
			err := s3blob.CreateBucket(t.Context(), withRegion{f, c.region}, "bkt")
			if c.want == errcode.Unknown {
				require.NoError(t, err)
			} else {
				requireCode(t, c.want, err)
			}
			require.Equal(t, "bkt", aws.ToString(got.Bucket))
			if c.constraint == "" {
				require.Nil(t, got.CreateBucketConfiguration)
			} else {
				require.Equal(t, c.constraint, got.CreateBucketConfiguration.LocationConstraint)
			}
		})
	}
}
