package s3blob

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"sync"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/s3/transfermanager"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/jobfleet/jobfleet/pkg/blob"
	"github.com/jobfleet/jobfleet/pkg/clock"
	"github.com/jobfleet/jobfleet/pkg/errcode"
)

var _ blob.Driver = (*driver)(nil)

// driver is one open handle on an S3 bucket.
type driver struct {
	client   API
	uploader *transfermanager.Client
	bucket   string
	prefix   string
	clock    clock.Clock

	closeOnce sync.Once
	done      chan struct{}
}

// Close closes this handle: its calls fail with errcode.Closed. Readers
// returned by Get stay readable; the client is not affected.
func (d *driver) Close() error {
	d.closeOnce.Do(func() { close(d.done) })
	return nil
}

// begin checks that the handle is open and ctx has not ended.
func (d *driver) begin(ctx context.Context, doing, key string) error {
	select {
	case <-d.done:
		return errcode.New(errcode.Closed, "%s blob %s: bucket %s is closed", doing, key, d.bucket)
	default:
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%s blob %s: %w", doing, key, err)
	}
	return nil
}

// errSize marks a reader that yielded other than PutOptions.Size bytes.
var errSize = errors.New("the reader's size differs from the size declared")

// source is a Put's input as the uploader reads it: it stops once ctx
// ends, counts the bytes, enforces a declared size and keeps the reader's
// own error apart from the upload's.
type source struct {
	ctx  context.Context
	r    io.Reader
	size int64 // > 0: the bytes the reader must yield
	n    int64
	err  error // the reader's error, or errSize
}

func (s *source) Read(p []byte) (int, error) {
	if s.err != nil {
		return 0, s.err
	}
	if err := s.ctx.Err(); err != nil {
		return 0, err
	}
	if s.size > 0 && s.n >= s.size {
		// Everything declared has been read: the reader must be at its end.
		var probe [1]byte
		k, err := io.ReadFull(s.r, probe[:])
		switch {
		case k > 0:
			s.err = fmt.Errorf("%w: more than %d bytes", errSize, s.size)
		case err == io.EOF || err == io.ErrUnexpectedEOF:
			return 0, io.EOF
		default:
			s.err = err
		}
		return 0, s.err
	}
	if s.size > 0 && int64(len(p)) > s.size-s.n {
		p = p[:s.size-s.n]
	}
	k, err := s.r.Read(p)
	s.n += int64(k)
	switch {
	case err == io.EOF && s.size > 0 && s.n < s.size:
		s.err = fmt.Errorf("%w: %d bytes, not %d", errSize, s.n, s.size)
		return k, s.err
	case err != nil && err != io.EOF:
		s.err = err
	}
	return k, err
}

func (d *driver) Put(ctx context.Context, key string, r io.Reader, opts blob.PutOptions) (blob.Attrs, error) {
	if err := d.begin(ctx, "put", key); err != nil {
		return blob.Attrs{}, err
	}
	contentType := cmp.Or(opts.ContentType, blob.DefaultContentType)
	src := &source{ctx: ctx, r: r, size: opts.Size}
	in := &transfermanager.UploadObjectInput{
		Bucket:      aws.String(d.bucket),
		Key:         aws.String(d.prefix + key),
		Body:        src,
		ContentType: aws.String(contentType),
	}
	if opts.Size > 0 {
		in.ContentLength = aws.Int64(opts.Size)
	}
	out, err := d.uploader.UploadObject(ctx, in)
	switch {
	case err == nil && src.err == nil:
		// Completed: the object is written, even if ctx ended since.
		return blob.Attrs{
			Key:         key,
			Size:        src.n,
			ContentType: contentType,
			ETag:        aws.ToString(out.ETag),
			ModTime:     d.clock.Now().UTC(),
		}, nil
	case err == nil:
		// Cannot happen: the uploader reads to the end before it completes.
		return blob.Attrs{}, errcode.Wrap(errcode.Internal, src.err, "put blob %s: the upload completed after its input failed", key)
	case ctx.Err() != nil:
		return blob.Attrs{}, mapErr(ctx, err, "put blob %s", key)
	case errors.Is(src.err, errSize):
		return blob.Attrs{}, errcode.Wrap(errcode.InvalidArgument, src.err, "put blob %s", key)
	case src.err != nil:
		return blob.Attrs{}, fmt.Errorf("put blob %s: read the input: %w", key, src.err)
	}
	return blob.Attrs{}, mapErr(ctx, err, "put blob %s", key)
}

// rangeHeader is the HTTP Range for rng, or "" for the whole object.
func rangeHeader(rng blob.Range) string {
	switch {
	case rng.Offset == 0 && rng.Length < 0:
		return ""
	case rng.Length < 0 || rng.Length > math.MaxInt64-rng.Offset:
		return "bytes=" + strconv.FormatInt(rng.Offset, 10) + "-"
	default:
		return "bytes=" + strconv.FormatInt(rng.Offset, 10) + "-" + strconv.FormatInt(rng.Offset+rng.Length-1, 10)
	}
}

// totalSize reads the whole object's size from a Content-Range header
// ("bytes 0-9/100").
func totalSize(contentRange string) (int64, bool) {
	_, total, ok := strings.Cut(contentRange, "/")
	if !ok {
		return 0, false
	}
	n, err := strconv.ParseInt(total, 10, 64)
	return n, err == nil && n >= 0
}

func (d *driver) Get(ctx context.Context, key string, rng blob.Range) (io.ReadCloser, blob.Attrs, error) {
	if err := d.begin(ctx, "get", key); err != nil {
		return nil, blob.Attrs{}, err
	}
	in := &s3.GetObjectInput{Bucket: aws.String(d.bucket), Key: aws.String(d.prefix + key)}
	if h := rangeHeader(rng); h != "" {
		in.Range = aws.String(h)
	}
	out, err := d.client.GetObject(ctx, in)
	retried := false
	if err != nil && in.Range != nil && rng.Offset == 0 && invalidRange(err) {
		// S3 refuses any range of an empty object; the contract reads an
		// empty object from offset 0. Ask for the whole object instead.
		in.Range, retried = nil, true
		out, err = d.client.GetObject(ctx, in)
	}
	if err != nil {
		return nil, blob.Attrs{}, mapErr(ctx, err, "get blob %s", key)
	}
	a := blob.Attrs{
		Key:         key,
		Size:        aws.ToInt64(out.ContentLength),
		ContentType: aws.ToString(out.ContentType),
		ETag:        aws.ToString(out.ETag),
		ModTime:     aws.ToTime(out.LastModified).UTC(),
	}
	if out.ContentRange != nil {
		n, ok := totalSize(*out.ContentRange)
		if !ok {
			out.Body.Close()
			return nil, blob.Attrs{}, errcode.New(errcode.Internal, "get blob %s: unreadable Content-Range %q", key, *out.ContentRange)
		}
		a.Size = n
	}
	if retried && rng.Length > 0 {
		// A Put may have filled the object since: serve the range asked.
		return limitedBody{io.LimitReader(out.Body, rng.Length), out.Body}, a, nil
	}
	return out.Body, a, nil
}

// limitedBody reads the first bytes of a response body and closes it.
type limitedBody struct {
	io.Reader
	io.Closer
}

func (d *driver) Head(ctx context.Context, key string) (blob.Attrs, error) {
	if err := d.begin(ctx, "head", key); err != nil {
		return blob.Attrs{}, err
	}
	out, err := d.client.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(d.bucket), Key: aws.String(d.prefix + key)})
	if err != nil {
		return blob.Attrs{}, mapErr(ctx, err, "head blob %s", key)
	}
	return blob.Attrs{
		Key:         key,
		Size:        aws.ToInt64(out.ContentLength),
		ContentType: aws.ToString(out.ContentType),
		ETag:        aws.ToString(out.ETag),
		ModTime:     aws.ToTime(out.LastModified).UTC(),
	}, nil
}

func (d *driver) Delete(ctx context.Context, key string) error {
	if err := d.begin(ctx, "delete", key); err != nil {
		return err
	}
	_, err := d.client.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(d.bucket), Key: aws.String(d.prefix + key)})
	if err != nil && errcode.Of(mapErr(ctx, err, "")) == errcode.NotFound && ctx.Err() == nil {
		// S3 answers 204 for a missing key; a store that says 404 means
		// the same.
		return nil
	}
	return mapErr(ctx, err, "delete blob %s", key)
}

func (d *driver) List(ctx context.Context, prefix, cursor string, limit int) (blob.ListPage, error) {
	if err := d.begin(ctx, "list", prefix+"*"); err != nil {
		return blob.ListPage{}, err
	}
	limit = min(max(limit, 1), blob.MaxListLimit) // Bucket has validated it; stay in bounds regardless
	in := &s3.ListObjectsV2Input{
		Bucket:  aws.String(d.bucket),
		Prefix:  aws.String(d.prefix + prefix),
		MaxKeys: aws.Int32(int32(limit)),
	}
	if cursor != "" {
		in.StartAfter = aws.String(d.prefix + cursor)
	}
	out, err := d.client.ListObjectsV2(ctx, in)
	if err != nil {
		return blob.ListPage{}, mapErr(ctx, err, "list blobs %s*", prefix)
	}
	page := blob.ListPage{Objects: make([]blob.Attrs, 0, len(out.Contents))}
	for _, o := range out.Contents {
		key, ok := strings.CutPrefix(aws.ToString(o.Key), d.prefix)
		if !ok {
			return blob.ListPage{}, errcode.New(errcode.Internal, "list blobs %s*: S3 listed %q outside prefix %q", prefix, aws.ToString(o.Key), d.prefix)
		}
		page.Objects = append(page.Objects, blob.Attrs{
			Key:     key,
			Size:    aws.ToInt64(o.Size),
			ETag:    aws.ToString(o.ETag),
			ModTime: aws.ToTime(o.LastModified).UTC(),
		})
	}
	if aws.ToBool(out.IsTruncated) && len(page.Objects) > 0 {
		page.Next = page.Objects[len(page.Objects)-1].Key
	}
	return page, nil
}
