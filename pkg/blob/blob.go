// Package blob is the blob store port: results, logs and large payloads,
// shaped like S3.
//
// Bucket is the portable type the services use; it validates keys and
// ranges and delegates to a Driver. Adapters implement Driver: fileblob (a
// directory, embedded profile) and s3blob (aws profile). The conformance
// suite blob/blobtest pins down the semantics; every adapter runs it.
//
// # Contract
//
//   - Keys are 1..MaxKeyLen bytes of UTF-8 with '/' separating segments. No
//     control characters or backslashes, no leading '/', no empty, "." or
//     ".." segments: such keys fail with errcode.InvalidArgument before any
//     I/O, so no key can escape an adapter's root.
//   - Put streams the reader to the object and replaces it atomically:
//     readers see the old object or the new one, never a part. A failed or
//     cancelled Put leaves the old object (or none). When PutOptions.Size
//     is positive and the reader yields a different number of bytes, Put
//     fails with errcode.InvalidArgument and writes nothing. Put returns the
//     object's Key, Size, ContentType (DefaultContentType when none was
//     given) and a non-empty ETag, the same ones Get and Head report.
//   - Get reads a byte range; a missing object is errcode.NotFound. A range
//     starting at or beyond the end of a non-empty object is
//     errcode.InvalidArgument (S3's 416); a length past the end is cut.
//   - Delete of a missing object succeeds (as in S3).
//   - List returns keys with a prefix in byte order, a page at a time.
//   - Reads after a successful Put or Delete see it (S3 is strongly
//     consistent).
//
// All methods are safe for concurrent use.
package blob

import (
	"bytes"
	"context"
	"io"
	"strings"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/jobfleet/jobfleet/pkg/errcode"
)

// MaxKeyLen is the longest key, in bytes (S3's limit).
const MaxKeyLen = 1024

// DefaultContentType is stored for an object put without a content type
// (S3 itself would store binary/octet-stream; adapters set this one).
const DefaultContentType = "application/octet-stream"

// MaxListLimit is the most keys one List call returns.
const MaxListLimit = 1000

// Attrs describe a stored object.
type Attrs struct {
	Key         string
	Size        int64
	ModTime     time.Time
	ContentType string
	ETag        string
}

// PutOptions are optional attributes of a Put.
type PutOptions struct {
	ContentType string
	// Size, when known (≥ 0), lets an adapter upload in one request; -1 or
	// 0 with a non-empty reader means unknown (streamed in parts).
	Size int64
}

// Range selects bytes of an object: Length < 0 means to the end.
type Range struct {
	Offset, Length int64
}

// All is the range of the whole object.
var All = Range{Offset: 0, Length: -1}

// ListPage is one page of List.
type ListPage struct {
	Objects []Attrs
	Next    string // cursor for the next page; "" after the last
}

// Driver is what an adapter implements. Bucket validates keys, ranges and
// limits before a Driver sees them.
type Driver interface {
	Put(ctx context.Context, key string, r io.Reader, opts PutOptions) (Attrs, error)
	// Get returns a reader for the range and the object's attributes
	// (Attrs.Size is the whole object's size).
	Get(ctx context.Context, key string, rng Range) (io.ReadCloser, Attrs, error)
	Head(ctx context.Context, key string) (Attrs, error)
	Delete(ctx context.Context, key string) error
	List(ctx context.Context, prefix, cursor string, limit int) (ListPage, error)
	Close() error
}

// Bucket is the portable blob store.
type Bucket struct {
	d      Driver
	closed atomic.Bool
}

// New returns a Bucket over d.
func New(d Driver) *Bucket { return &Bucket{d: d} }

// ValidKey reports why key is not acceptable, or nil.
func ValidKey(key string) error {
	bad := func(why string) error { return errcode.New(errcode.InvalidArgument, "blob key %q: %s", key, why) }
	switch {
	case key == "":
		return bad("is empty")
	case len(key) > MaxKeyLen:
		return bad("is longer than 1024 bytes")
	case !utf8.ValidString(key):
		return bad("is not valid UTF-8")
	case key[0] == '/':
		return bad("must not start with '/'")
	}
	for _, r := range key {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) || r == '\\' {
			return bad("contains a control character or backslash")
		}
	}
	for _, seg := range strings.Split(key, "/") {
		switch seg {
		case "":
			return bad("has an empty path segment")
		case ".", "..":
			return bad("has a '.' or '..' segment")
		}
	}
	return nil
}

func validPrefix(prefix string) error {
	if prefix == "" {
		return nil
	}
	// A prefix may end in '/', or mid-segment; validate it as a key after
	// trimming a trailing separator.
	return ValidKey(strings.TrimSuffix(prefix, "/"))
}

func (b *Bucket) check() error {
	if b.closed.Load() {
		return errcode.New(errcode.Closed, "blob bucket is closed")
	}
	return nil
}

// Put stores r under key.
func (b *Bucket) Put(ctx context.Context, key string, r io.Reader, opts *PutOptions) (Attrs, error) {
	if err := b.check(); err != nil {
		return Attrs{}, err
	}
	if err := ValidKey(key); err != nil {
		return Attrs{}, err
	}
	o := PutOptions{Size: -1}
	if opts != nil {
		o = *opts
	}
	return b.d.Put(ctx, key, r, o)
}

// PutBytes stores data under key.
func (b *Bucket) PutBytes(ctx context.Context, key string, data []byte, contentType string) (Attrs, error) {
	return b.Put(ctx, key, bytes.NewReader(data), &PutOptions{ContentType: contentType, Size: int64(len(data))})
}

// Get returns a reader for rng of the object at key. The caller closes it.
func (b *Bucket) Get(ctx context.Context, key string, rng Range) (io.ReadCloser, Attrs, error) {
	if err := b.check(); err != nil {
		return nil, Attrs{}, err
	}
	if err := ValidKey(key); err != nil {
		return nil, Attrs{}, err
	}
	if rng.Offset < 0 {
		return nil, Attrs{}, errcode.New(errcode.InvalidArgument, "blob %s: negative range offset", key)
	}
	if rng.Length == 0 {
		return nil, Attrs{}, errcode.New(errcode.InvalidArgument, "blob %s: empty range", key)
	}
	return b.d.Get(ctx, key, rng)
}

// ReadAll returns the whole object at key.
func (b *Bucket) ReadAll(ctx context.Context, key string) ([]byte, error) {
	rc, _, err := b.Get(ctx, key, All)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return io.ReadAll(rc)
}

// Head returns the attributes of the object at key.
func (b *Bucket) Head(ctx context.Context, key string) (Attrs, error) {
	if err := b.check(); err != nil {
		return Attrs{}, err
	}
	if err := ValidKey(key); err != nil {
		return Attrs{}, err
	}
	return b.d.Head(ctx, key)
}

// Delete removes the object at key; a missing object is not an error.
func (b *Bucket) Delete(ctx context.Context, key string) error {
	if err := b.check(); err != nil {
		return err
	}
	if err := ValidKey(key); err != nil {
		return err
	}
	return b.d.Delete(ctx, key)
}

// List returns up to limit objects whose keys start with prefix, after
// cursor, in key order.
func (b *Bucket) List(ctx context.Context, prefix, cursor string, limit int) (ListPage, error) {
	if err := b.check(); err != nil {
		return ListPage{}, err
	}
	if err := validPrefix(prefix); err != nil {
		return ListPage{}, err
	}
	if limit <= 0 || limit > MaxListLimit {
		limit = MaxListLimit
	}
	return b.d.List(ctx, prefix, cursor, limit)
}

// Close closes the driver. It is safe to call more than once.
func (b *Bucket) Close() error {
	if b.closed.Swap(true) {
		return nil
	}
	return b.d.Close()
}
