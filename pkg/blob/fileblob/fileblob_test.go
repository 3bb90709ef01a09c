package fileblob_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/jobfleet/jobfleet/pkg/blob"
	"github.com/jobfleet/jobfleet/pkg/blob/blobtest"
	"github.com/jobfleet/jobfleet/pkg/blob/fileblob"
	"github.com/jobfleet/jobfleet/pkg/clock"
	"github.com/jobfleet/jobfleet/pkg/errcode"
)

type bundle struct {
	dir    string // the bucket's directory
	parent string // holds dir and nothing else
	b      *blob.Bucket
}

func setup(t *testing.T, opts *fileblob.Options) bundle {
	t.Helper()
	parent := t.TempDir()
	dir := filepath.Join(parent, "bucket")
	b, err := fileblob.Open(dir, opts)
	require.NoError(t, err)
	t.Cleanup(func() { b.Close() })
	return bundle{dir: dir, parent: parent, b: b}
}

// tree lists every path under dir, relative to it.
func tree(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		if rel != "." {
			if d.IsDir() {
				rel += "/"
			}
			out = append(out, rel)
		}
		return nil
	})
	require.NoError(t, err)
	return out
}

func TestLayout(t *testing.T) {
	t.Parallel()
	s := setup(t, nil)
	ctx := t.Context()
	for _, k := range []string{"a", "a/b", "results/01J/output.json", ".hidden/x", "100%"} {
		_, err := s.b.PutBytes(ctx, k, []byte("data of "+k), "text/plain")
		require.NoError(t, err)
	}
	got := tree(t, s.dir)
	require.ElementsMatch(t, []string{
		"%tmp/",
		"a", "a%2F/", "a%2F/b",
		"results%2F/", "results%2F/01J%2F/", "results%2F/01J%2F/output.json",
		"%2Ehidden%2F/", "%2Ehidden%2F/x",
		"100%25",
	}, got)

	// The file starts with the object's bytes; the attributes follow.
	raw, err := os.ReadFile(filepath.Join(s.dir, "results%2F", "01J%2F", "output.json"))
	require.NoError(t, err)
	require.True(t, bytes.HasPrefix(raw, []byte("data of results/01J/output.json{")), "%q", raw)
	require.True(t, bytes.HasSuffix(raw, []byte("jfblob1\n")))
	require.Contains(t, string(raw), `"content_type":"text/plain"`)
	require.Contains(t, string(raw), `"key":"results/01J/output.json"`)
}

func TestRejectedKeysWriteNothing(t *testing.T) {
	t.Parallel()
	s := setup(t, nil)
	ctx := t.Context()
	for _, k := range blobtest.RejectedKeys() {
		_, err := s.b.PutBytes(ctx, k, []byte("x"), "")
		require.ErrorIs(t, err, errcode.InvalidArgument, "put %q", k)
		require.ErrorIs(t, s.b.Delete(ctx, k), errcode.InvalidArgument)
	}
	// Keys that would escape the root if used as paths.
	for _, k := range []string{"../escape", "../../tmp/x", "/etc/passwd", "a/../../b"} {
		_, err := s.b.PutBytes(ctx, k, []byte("x"), "")
		require.ErrorIs(t, err, errcode.InvalidArgument, "put %q", k)
	}
	require.Equal(t, []string{"bucket/", "bucket/%tmp/"}, tree(t, s.parent))
}

func TestNoTemporaryFilesLeft(t *testing.T) {
	t.Parallel()
	s := setup(t, nil)
	ctx := t.Context()
	_, err := s.b.PutBytes(ctx, "k", []byte("old"), "")
	require.NoError(t, err)

	// A failing reader, a size mismatch and a cancelled Put.
	_, err = s.b.Put(ctx, "k", io.MultiReader(strings.NewReader("part"), errReader{}), nil)
	require.Error(t, err)
	_, err = s.b.Put(ctx, "k", strings.NewReader("short"), &blob.PutOptions{Size: 100})
	require.ErrorIs(t, err, errcode.InvalidArgument)
	cctx, cancel := context.WithCancel(ctx)
	_, err = s.b.Put(cctx, "k", io.MultiReader(strings.NewReader("part"), cancelReader{cancel}), nil)
	require.Equal(t, errcode.Canceled, errcode.Of(err))

	require.Equal(t, []string{"%tmp/", "k"}, tree(t, s.dir))
	data, err := s.b.ReadAll(ctx, "k")
	require.NoError(t, err)
	require.Equal(t, "old", string(data))
}

type errReader struct{}

func (errReader) Read([]byte) (int, error) { return 0, errors.New("disk on fire") }

type cancelReader struct{ cancel context.CancelFunc }

func (c cancelReader) Read(p []byte) (int, error) {
	c.cancel()
	return copy(p, "more"), nil
}

func TestDeleteRemovesEmptyDirectories(t *testing.T) {
	t.Parallel()
	s := setup(t, nil)
	ctx := t.Context()
	long := strings.Repeat("L", 600)
	for _, k := range []string{"x/y/z", "x/w", long + "/q"} {
		_, err := s.b.PutBytes(ctx, k, []byte("v"), "")
		require.NoError(t, err)
	}
	require.NoError(t, s.b.Delete(ctx, "x/y/z"))
	require.ElementsMatch(t, []string{"x%2F/", "x%2F/w"}, slices.DeleteFunc(tree(t, s.dir), func(p string) bool {
		return strings.HasPrefix(p, "%tmp") || strings.HasPrefix(p, "L")
	}))
	require.NoError(t, s.b.Delete(ctx, "x/w"))
	require.NoError(t, s.b.Delete(ctx, long+"/q"))
	require.Equal(t, []string{"%tmp/"}, tree(t, s.dir))
}

func TestReopenAndShare(t *testing.T) {
	t.Parallel()
	s := setup(t, nil)
	ctx := t.Context()
	_, err := s.b.PutBytes(ctx, "kept/one", []byte("1"), "application/json")
	require.NoError(t, err)

	// A second bucket on the same directory (another process) sees it, and
	// its writes are seen by the first.
	other, err := fileblob.Open(s.dir, nil)
	require.NoError(t, err)
	defer other.Close()
	h, err := other.Head(ctx, "kept/one")
	require.NoError(t, err)
	require.Equal(t, "application/json", h.ContentType)
	_, err = other.PutBytes(ctx, "kept/two", []byte("2"), "")
	require.NoError(t, err)
	data, err := s.b.ReadAll(ctx, "kept/two")
	require.NoError(t, err)
	require.Equal(t, "2", string(data))

	require.NoError(t, s.b.Close())
	again, err := fileblob.Open(s.dir, nil)
	require.NoError(t, err)
	defer again.Close()
	p, err := again.List(ctx, "kept/", "", 0)
	require.NoError(t, err)
	require.Len(t, p.Objects, 2)
}

func TestStaleTemporaryFilesRemovedAtOpen(t *testing.T) {
	t.Parallel()
	s := setup(t, nil)
	stale := filepath.Join(s.dir, "%tmp", "stale")
	fresh := filepath.Join(s.dir, "%tmp", "fresh")
	require.NoError(t, os.WriteFile(stale, []byte("x"), 0o644))
	require.NoError(t, os.WriteFile(fresh, []byte("x"), 0o644))
	old := time.Now().Add(-25 * time.Hour)
	require.NoError(t, os.Chtimes(stale, old, old))

	b, err := fileblob.Open(s.dir, nil)
	require.NoError(t, err)
	require.NoError(t, b.Close())
	require.NoFileExists(t, stale)
	require.FileExists(t, fresh)
}

func TestModTimeFromClock(t *testing.T) {
	t.Parallel()
	at := time.Date(2030, 1, 2, 3, 4, 5, 6, time.UTC)
	s := setup(t, &fileblob.Options{Clock: clock.NewFake(at)})
	a, err := s.b.PutBytes(t.Context(), "k", []byte("x"), "")
	require.NoError(t, err)
	require.True(t, at.Equal(a.ModTime))
	h, err := s.b.Head(t.Context(), "k")
	require.NoError(t, err)
	require.True(t, at.Equal(h.ModTime))
	require.Equal(t, `"9dd4e461268c8034f5c8564e155c67a6"`, h.ETag) // MD5 of "x"
}

func TestForeignEntriesAreIgnored(t *testing.T) {
	t.Parallel()
	s := setup(t, nil)
	ctx := t.Context()
	_, err := s.b.PutBytes(ctx, "k", []byte("v"), "")
	require.NoError(t, err)
	// Names this package never writes.
	require.NoError(t, os.WriteFile(filepath.Join(s.dir, ".DS_Store"), []byte("x"), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(s.dir, "odd%zz"), []byte("x"), 0o644))
	require.NoError(t, os.Mkdir(filepath.Join(s.dir, "plain-dir"), 0o755))
	require.NoError(t, os.Symlink("k", filepath.Join(s.dir, "link")))
	p, err := s.b.List(ctx, "", "", 0)
	require.NoError(t, err)
	require.Len(t, p.Objects, 1)
	require.Equal(t, "k", p.Objects[0].Key)
}

func TestCorruptObject(t *testing.T) {
	t.Parallel()
	s := setup(t, nil)
	ctx := t.Context()
	_, err := s.b.PutBytes(ctx, "k", []byte("value"), "")
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(s.dir, "k"), []byte("not an object file"), 0o644))
	_, err = s.b.Head(ctx, "k")
	require.ErrorIs(t, err, errcode.Internal)
	_, err = s.b.ReadAll(ctx, "k")
	require.ErrorIs(t, err, errcode.Internal)
	_, err = s.b.List(ctx, "", "", 0)
	require.ErrorIs(t, err, errcode.Internal)
	// Delete still removes it.
	require.NoError(t, s.b.Delete(ctx, "k"))
	_, err = s.b.Head(ctx, "k")
	require.ErrorIs(t, err, errcode.NotFound)
}

func TestLargeContentType(t *testing.T) {
	t.Parallel()
	s := setup(t, nil)
	ct := "application/x-" + strings.Repeat("long", 2000)
	_, err := s.b.PutBytes(t.Context(), "k", []byte("v"), ct)
	require.NoError(t, err)
	h, err := s.b.Head(t.Context(), "k")
	require.NoError(t, err)
	require.Equal(t, ct, h.ContentType)
	require.Equal(t, int64(1), h.Size)
}
