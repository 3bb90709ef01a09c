// Package fileblob is the embedded profile's blob store: a directory on
// this machine, with the semantics of package blob (S3's, for what
// jobfleet uses).
//
// Several processes (dispatcher, workers, reaper) may open the same
// directory at once: every change is a rename, which the filesystem makes
// atomic, so no locks are needed.
//
// # Layout
//
// A key's segments become directories and its last segment a file, with
// names escaped so that every key S3 accepts has a place:
//
//	<dir>/
//	  %tmp/                        Puts in progress
//	  results%2F/                  directory of keys "results/…"
//	    01J9ZQ…%2F/
//	      output.json              object "results/01J9ZQ…/output.json"
//	  a                            object "a"
//	  a%2F/b                       object "a/b": "a" and "a/b" coexist
//	  xxx…x%+/xxx…x                object with a 400-byte segment
//
// In a name, '%', '/' and a leading '.' are escaped as %XX; every other
// byte is kept (non-ASCII stays UTF-8). A directory for the segment "s" is
// named "s%2F", so it never clashes with the object "s". A segment whose
// escaped form would pass the 255-byte name limit is cut into pieces of
// about 250 bytes, each but the last a directory named "<piece>%+". A
// listing walks the tree visiting entries in the byte order of the key
// parts they stand for, which is key order (layout.go explains why).
// Entries whose names this package cannot have written are ignored.
//
// An object file holds the object's bytes, then its attributes (key, size,
// content type, ETag, modification time) as one line of JSON, then a
// 16-byte footer: the JSON's length in hex and "jfblob1\n". Attributes and
// bytes are thus replaced together by one rename. Use Bucket to read
// objects; a file's raw contents are not just the object's bytes.
//
// # Durability
//
// Put streams to a new file in %tmp, fsyncs it, creates missing parent
// directories (fsyncing each parent it changes), renames the file into
// place and fsyncs the destination directory before it returns: an
// acknowledged Put survives a crash or power loss. Delete fsyncs the
// directory it removed the file from, and removes directories left empty.
// A failed or cancelled Put removes its temporary file; files in %tmp
// older than a day, left by a crash, are removed by Open.
//
// # Differences from S3
//
//   - No versioning, user metadata, storage classes, presigned URLs or
//     multipart API: Put of any size writes one file.
//   - The ETag is the quoted hex MD5 of the bytes for every object. S3's
//     ETag of a multipart upload is not an MD5 of the bytes ("…-N"), so
//     ETags are comparable within a profile only.
//   - ModTime comes from Options.Clock at the end of the Put, with
//     nanosecond precision (S3 keeps whole seconds).
//   - The List cursor is the last key returned (S3 returns a continuation
//     token); each page re-reads the directories it walks, so a directory
//     with very many entries costs their number on every page.
//   - Keys are stored byte for byte as file names: the directory must be on
//     a case-sensitive filesystem that does not normalize Unicode (Linux
//     ext4, xfs, btrfs, tmpfs), or keys differing only in case or
//     normalization collide.
//   - A reader returned by Get holds the file open, so it reads the version
//     it opened to the end even if the object is replaced or deleted
//     meanwhile.
//   - A Put without a content type stores "application/octet-stream" (S3
//     itself would store "binary/octet-stream"; the blob contract fixes the
//     former).
package fileblob

import (
	"cmp"
	"context"
	"crypto/md5"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/jobfleet/jobfleet/pkg/blob"
	"github.com/jobfleet/jobfleet/pkg/clock"
	"github.com/jobfleet/jobfleet/pkg/errcode"
)

const (
	// staleTemp is the age after which Open removes a leftover temporary
	// file. A Put writes to its file continuously, so only a crashed (or a
	// day-long stalled) Put leaves one this old.
	staleTemp = 24 * time.Hour
	// commitAttempts bounds the retries of a Put whose parent directory a
	// concurrent Delete removed between creating it and renaming into it.
	commitAttempts = 100
	copyBuffer     = 256 << 10
	dirPerm        = 0o755
	filePerm       = 0o644
)

// Options configure a bucket. The zero value (or nil) means defaults.
type Options struct {
	// Clock stamps objects' ModTime. Default: the system clock.
	Clock clock.Clock
}

type driver struct {
	root  *os.Root
	dir   string
	clock clock.Clock
}

var _ blob.Driver = (*driver)(nil)

// Open returns a bucket stored in dir, creating the directory if needed.
// Several processes may open the same directory.
func Open(dir string, opts *Options) (*blob.Bucket, error) {
	if opts == nil {
		opts = &Options{}
	}
	if err := os.MkdirAll(dir, dirPerm); err != nil {
		return nil, mapErr(err, "fileblob: create %s", dir)
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, mapErr(err, "fileblob: open %s", dir)
	}
	d := &driver{root: root, dir: dir, clock: clock.Or(opts.Clock)}
	if err := root.Mkdir(tmpDir, dirPerm); err != nil && !errors.Is(err, fs.ErrExist) {
		root.Close()
		return nil, mapErr(err, "fileblob: create %s", path.Join(dir, tmpDir))
	}
	if err := d.removeStaleTemps(); err != nil {
		root.Close()
		return nil, err
	}
	return blob.New(d), nil
}

func (d *driver) removeStaleTemps() error {
	f, err := d.root.Open(tmpDir)
	if err != nil {
		return mapErr(err, "fileblob: open %s", path.Join(d.dir, tmpDir))
	}
	defer f.Close()
	ents, err := f.ReadDir(-1)
	if err != nil {
		return mapErr(err, "fileblob: read %s", path.Join(d.dir, tmpDir))
	}
	for _, e := range ents {
		fi, err := e.Info()
		if err != nil || time.Since(fi.ModTime()) < staleTemp {
			continue
		}
		// Another process may remove it too.
		_ = d.root.Remove(tmpDir + "/" + e.Name())
	}
	return nil
}

// mapErr maps a filesystem error to an errcode, saying what was being done.
func mapErr(err error, format string, args ...any) error {
	if err == nil {
		return nil
	}
	what := fmt.Sprintf(format, args...)
	switch {
	case errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("%s: %w", what, err)
	case errcode.Of(err) != errcode.Unknown:
		return fmt.Errorf("%s: %w", what, err)
	case errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR):
		return errcode.Wrap(errcode.NotFound, err, "%s", what)
	case errors.Is(err, os.ErrClosed):
		return errcode.Wrap(errcode.Closed, err, "%s", what)
	case errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT):
		return errcode.Wrap(errcode.ResourceExhausted, err, "%s", what)
	}
	return fmt.Errorf("%s: %w", what, err)
}

func (d *driver) syncDir(name string) error {
	f, err := d.root.Open(name)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}

// mkdirs creates the directories of dirs (each a name inside the one
// before), fsyncing the parent of each it creates.
func (d *driver) mkdirs(dirs []string) error {
	for i := range dirs {
		err := d.root.Mkdir(joinPath(dirs[:i+1]...), dirPerm)
		switch {
		case err == nil:
			if err := d.syncDir(joinPath(dirs[:i]...)); err != nil {
				return err
			}
		case errors.Is(err, fs.ErrExist):
		default:
			return err
		}
	}
	return nil
}

// source reads a Put's input: it fails once ctx is done and remembers the
// reader's own error, to tell it from a write error.
type source struct {
	ctx context.Context
	r   io.Reader
	err error
}

func (s *source) Read(p []byte) (int, error) {
	if err := s.ctx.Err(); err != nil {
		return 0, err
	}
	n, err := s.r.Read(p)
	if err != nil && err != io.EOF {
		s.err = err
	}
	return n, err
}

func tempName() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails
	return tmpDir + "/" + hex.EncodeToString(b[:])
}

func (d *driver) Put(ctx context.Context, key string, r io.Reader, opts blob.PutOptions) (blob.Attrs, error) {
	if err := blob.ValidKey(key); err != nil {
		return blob.Attrs{}, err
	}
	if err := ctx.Err(); err != nil {
		return blob.Attrs{}, fmt.Errorf("put blob %s: %w", key, err)
	}
	tmp := tempName()
	f, err := d.root.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, filePerm)
	if err != nil {
		return blob.Attrs{}, mapErr(err, "put blob %s: create temporary file", key)
	}
	committed := false
	defer func() {
		if !committed {
			f.Close()
			_ = d.root.Remove(tmp)
		}
	}()

	src := &source{ctx: ctx, r: r}
	in := io.Reader(src)
	if opts.Size > 0 {
		in = io.LimitReader(src, opts.Size+1)
	}
	sum := md5.New()
	n, err := io.CopyBuffer(io.MultiWriter(f, sum), in, make([]byte, copyBuffer))
	if ctxErr := ctx.Err(); ctxErr != nil {
		return blob.Attrs{}, fmt.Errorf("put blob %s: %w", key, ctxErr)
	}
	if src.err != nil {
		return blob.Attrs{}, fmt.Errorf("put blob %s: read the input: %w", key, src.err)
	}
	if err != nil {
		return blob.Attrs{}, mapErr(err, "put blob %s: write", key)
	}
	if opts.Size > 0 && n != opts.Size {
		return blob.Attrs{}, errcode.New(errcode.InvalidArgument, "put blob %s: the reader yielded %s bytes, not the %d declared", key, countString(n, opts.Size), opts.Size)
	}
	a := attrs{
		Key:         key,
		Size:        n,
		ContentType: cmp.Or(opts.ContentType, blob.DefaultContentType),
		ETag:        `"` + hex.EncodeToString(sum.Sum(nil)) + `"`,
		ModTime:     d.clock.Now().UTC(),
	}
	if _, err := f.Write(trailer(a)); err != nil {
		return blob.Attrs{}, mapErr(err, "put blob %s: write attributes", key)
	}
	if err := f.Sync(); err != nil {
		return blob.Attrs{}, mapErr(err, "put blob %s: sync", key)
	}
	if err := f.Close(); err != nil {
		return blob.Attrs{}, mapErr(err, "put blob %s: close", key)
	}
	if err := ctx.Err(); err != nil {
		return blob.Attrs{}, fmt.Errorf("put blob %s: %w", key, err)
	}

	dirs, obj := objectPath(key)
	for attempt := 1; ; attempt++ {
		err := d.mkdirs(dirs)
		if err == nil {
			err = d.root.Rename(tmp, obj)
		}
		if err == nil {
			break
		}
		// A concurrent Delete removed a directory that had just become
		// empty: create it again.
		if errors.Is(err, fs.ErrNotExist) && attempt < commitAttempts {
			continue
		}
		return blob.Attrs{}, mapErr(err, "put blob %s: move into place", key)
	}
	committed = true
	// A directory gone by now was emptied and removed by a concurrent
	// Delete of this very key, which came after this Put: nothing is left
	// to make durable (Delete tolerates the same).
	if err := d.syncDir(joinPath(dirs...)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return blob.Attrs{}, mapErr(err, "put blob %s: sync directory", key)
	}
	return a.blob(), nil
}

func countString(n, size int64) string {
	if n > size {
		return "more"
	}
	return fmt.Sprint(n)
}

// open opens the object file of key and reads its attributes.
func (d *driver) open(ctx context.Context, key, doing string) (*os.File, attrs, error) {
	if err := blob.ValidKey(key); err != nil {
		return nil, attrs{}, err
	}
	if err := ctx.Err(); err != nil {
		return nil, attrs{}, fmt.Errorf("%s blob %s: %w", doing, key, err)
	}
	_, obj := objectPath(key)
	f, err := d.root.Open(obj)
	if err != nil {
		return nil, attrs{}, mapErr(err, "%s blob %s", doing, key)
	}
	a, err := statAttrs(f, obj)
	if err != nil {
		f.Close()
		return nil, attrs{}, mapErr(err, "%s blob %s", doing, key)
	}
	return f, a, nil
}

func (d *driver) Get(ctx context.Context, key string, rng blob.Range) (io.ReadCloser, blob.Attrs, error) {
	f, a, err := d.open(ctx, key, "get")
	if err != nil {
		return nil, blob.Attrs{}, err
	}
	if rng.Offset < 0 || rng.Length == 0 || (a.Size > 0 && rng.Offset >= a.Size) || (a.Size == 0 && rng.Offset > 0) {
		f.Close()
		return nil, blob.Attrs{}, errcode.New(errcode.InvalidArgument, "get blob %s: range at %d is outside the object's %d bytes", key, rng.Offset, a.Size)
	}
	n := a.Size - rng.Offset
	if rng.Length > 0 && rng.Length < n {
		n = rng.Length
	}
	return &objectReader{ctx: ctx, r: io.NewSectionReader(f, rng.Offset, n), f: f}, a.blob(), nil
}

// objectReader reads a range of an open object file.
type objectReader struct {
	ctx context.Context
	r   *io.SectionReader
	f   *os.File
}

func (o *objectReader) Read(p []byte) (int, error) {
	if err := o.ctx.Err(); err != nil {
		return 0, err
	}
	return o.r.Read(p)
}

func (o *objectReader) Close() error { return o.f.Close() }

func (d *driver) Head(ctx context.Context, key string) (blob.Attrs, error) {
	f, a, err := d.open(ctx, key, "head")
	if err != nil {
		return blob.Attrs{}, err
	}
	f.Close()
	return a.blob(), nil
}

func (d *driver) Delete(ctx context.Context, key string) error {
	if err := blob.ValidKey(key); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("delete blob %s: %w", key, err)
	}
	dirs, obj := objectPath(key)
	if fi, err := d.root.Lstat(obj); err != nil || !fi.Mode().IsRegular() {
		if err == nil || errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
			return nil
		}
		return mapErr(err, "delete blob %s", key)
	}
	if err := d.root.Remove(obj); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return mapErr(err, "delete blob %s", key)
	}
	if err := d.syncDir(joinPath(dirs...)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return mapErr(err, "delete blob %s: sync directory", key)
	}
	// Remove the directories this left empty, deepest first; stop at the
	// first that is not empty. A Put racing into one of them recreates it.
	for i := len(dirs); i > 0; i-- {
		if err := d.root.Remove(joinPath(dirs[:i]...)); err != nil {
			break
		}
		_ = d.syncDir(joinPath(dirs[:i-1]...))
	}
	return nil
}

// entry is a directory entry decoded into the part of a key it stands for.
type entry struct {
	name string
	tok  string
	kind kind
}

type walker struct {
	ctx    context.Context
	d      *driver
	cursor string
	want   int
	out    []blob.Attrs
}

func (d *driver) List(ctx context.Context, prefix, cursor string, limit int) (blob.ListPage, error) {
	if err := ctx.Err(); err != nil {
		return blob.ListPage{}, fmt.Errorf("list blobs %q: %w", prefix, err)
	}
	toks, rest := split(prefix)
	dirs := make([]string, len(toks))
	for i, tok := range toks {
		dirs[i] = entryName(tok, tokenKind(tok))
	}
	w := &walker{ctx: ctx, d: d, cursor: cursor, want: limit + 1}
	if err := w.walk(joinPath(dirs...), prefix[:len(prefix)-len(rest)], rest); err != nil {
		return blob.ListPage{}, mapErr(err, "list blobs %q", prefix)
	}
	page := blob.ListPage{Objects: w.out}
	if len(w.out) > limit {
		page.Objects = w.out[:limit]
		page.Next = page.Objects[limit-1].Key
	}
	return page, nil
}

// walk appends to w.out, in key order, the objects under dir (which holds
// the keys starting with keyPrefix) whose next token starts with filter and
// whose key is after the cursor, until it has w.want.
func (w *walker) walk(dir, keyPrefix, filter string) error {
	if err := w.ctx.Err(); err != nil {
		return err
	}
	f, err := w.d.root.Open(dir)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
			return nil // removed meanwhile, or never there
		}
		return err
	}
	des, err := f.ReadDir(-1)
	f.Close()
	if err != nil {
		return err
	}
	ents := make([]entry, 0, len(des))
	for _, de := range des {
		if !de.IsDir() && !de.Type().IsRegular() {
			continue
		}
		tok, k, ok := decodeName(de.Name(), de.IsDir())
		if ok && strings.HasPrefix(tok, filter) {
			ents = append(ents, entry{name: de.Name(), tok: tok, kind: k})
		}
	}
	// An object "s" comes before the continuation "s…" of a longer key.
	slices.SortFunc(ents, func(a, b entry) int {
		return cmp.Or(strings.Compare(a.tok, b.tok), cmp.Compare(a.kind, b.kind))
	})
	for _, e := range ents {
		key := keyPrefix + e.tok
		p := dir + "/" + e.name
		if dir == "." {
			p = e.name
		}
		if e.kind == kindObject {
			if key <= w.cursor {
				continue
			}
			a, err := w.d.headPath(p)
			if errcode.Of(err) == errcode.NotFound {
				continue // deleted meanwhile
			}
			if err != nil {
				return err
			}
			a.Key = key
			w.out = append(w.out, a.blob())
		} else {
			// Every key below starts with key: skip the directory when all
			// of them come before the cursor.
			if key < w.cursor && !strings.HasPrefix(w.cursor, key) {
				continue
			}
			if err := w.walk(p, key, ""); err != nil {
				return err
			}
		}
		if len(w.out) >= w.want {
			return nil
		}
	}
	return nil
}

func (d *driver) headPath(p string) (attrs, error) {
	f, err := d.root.Open(p)
	if err != nil {
		return attrs{}, mapErr(err, "read %s", p)
	}
	defer f.Close()
	return statAttrs(f, p)
}

func (d *driver) Close() error {
	if err := d.root.Close(); err != nil {
		return mapErr(err, "fileblob: close %s", d.dir)
	}
	return nil
}
