// Package blobtest is the conformance suite for blob.Driver adapters.
//
// Every adapter's conformance_test.go calls Run with a harness that makes a
// fresh, empty, isolated bucket per test (named from t.Name(), cleaned up
// with t.Cleanup). The suite drives the adapter through blob.Bucket, the
// type the services use, and pins down the contract in package blob's doc:
// atomic replacement, ranges, missing objects, listing order and paging,
// odd and rejected keys, failed and cancelled writes, and use after Close.
//
// Beyond blob's package doc, the suite pins these details, which every
// adapter must share:
//
//   - A Put without a content type stores blob.DefaultContentType.
//   - A Put whose PutOptions.Size is positive and differs from the bytes the
//     reader yields fails with errcode.InvalidArgument and writes nothing.
//   - Put returns the key, the size written, the content type and a
//     non-empty ETag; Head and Get report the same ETag for that version.
//   - A List page's Objects carry Key and Size; Next is opaque and "" after
//     the last page.
//   - A pre-cancelled context fails every call with errcode.Canceled
//     (errcode.Of) and changes nothing; a context cancelled during a Put
//     fails it and leaves the previous object.
package blobtest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/jobfleet/jobfleet/pkg/blob"
	"github.com/jobfleet/jobfleet/pkg/errcode"
)

// Harness is one test's bucket. The harness func registers its cleanup
// with t.Cleanup; the suite may Close the bucket itself (Close is safe
// twice).
type Harness struct {
	Bucket *blob.Bucket
}

// Run runs the suite. newHarness must return a fresh, empty bucket that no
// other test uses.
func Run(t *testing.T, newHarness func(t *testing.T) Harness) {
	cases := []struct {
		name string
		fn   func(t *testing.T, b *blob.Bucket)
	}{
		{"RoundTripStreamedUnknownSize", testRoundTripStreamed},
		{"RoundTripSmallAndEmpty", testRoundTripSmall},
		{"OverwriteIsAtomic", testOverwriteAtomic},
		{"Ranges", testRanges},
		{"Head", testHead},
		{"DefaultContentType", testDefaultContentType},
		{"MissingIsNotFound", testMissing},
		{"Delete", testDelete},
		{"ListOrderAndPrefix", testListOrder},
		{"ListPaging", testListPaging},
		{"ListLongSegments", testListLongSegments},
		{"KeyAndKeySlashChildCoexist", testKeyAndChild},
		{"OddKeys", testOddKeys},
		{"RejectedKeys", testRejectedKeys},
		{"SizeMismatch", testSizeMismatch},
		{"FailedReaderKeepsOldObject", testFailedReader},
		{"CancelledContext", testCancelledContext},
		{"CancelDuringPut", testCancelDuringPut},
		{"ConcurrentPutsAndDeletes", testConcurrentPutsDeletes},
		{"UseAfterClose", testUseAfterClose},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t)
			require.NotNil(t, h.Bucket, "harness returned no bucket")
			c.fn(t, h.Bucket)
		})
	}
}

// randomBytes returns n deterministic pseudo-random bytes (every byte value
// occurs).
func randomBytes(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	b := make([]byte, n)
	for i := 0; i+8 <= n; i += 8 {
		v := r.Uint64()
		for j := range 8 {
			b[i+j] = byte(v >> (8 * j))
		}
	}
	for i := n - n%8; i < n; i++ {
		b[i] = byte(r.Uint32())
	}
	return b
}

func put(t *testing.T, b *blob.Bucket, key string, data []byte) blob.Attrs {
	t.Helper()
	a, err := b.PutBytes(t.Context(), key, data, "")
	require.NoError(t, err, "put %q", key)
	return a
}

func readAll(t *testing.T, b *blob.Bucket, key string) []byte {
	t.Helper()
	data, err := b.ReadAll(t.Context(), key)
	require.NoError(t, err, "read %q", key)
	return data
}

func requireCode(t *testing.T, want errcode.Code, err error, format string, args ...any) {
	t.Helper()
	what := fmt.Sprintf(format, args...)
	require.Error(t, err, what)
	require.Equal(t, want, errcode.Of(err), "%s: error %q has code %v, want %v", what, err, errcode.Of(err), want)
	if want == errcode.Canceled {
		// Context errors pass through uncoded; errcode.Of reports them.
		return
	}
	require.ErrorIs(t, err, want, what)
}

// listAll returns every key under prefix, reading pages of limit.
func listAll(t *testing.T, b *blob.Bucket, prefix string, limit int) []string {
	t.Helper()
	var keys []string
	cursor := ""
	for pages := 0; ; pages++ {
		require.Less(t, pages, 10000, "List does not terminate")
		p, err := b.List(t.Context(), prefix, cursor, limit)
		require.NoError(t, err, "list %q after %q", prefix, cursor)
		if limit > 0 {
			require.LessOrEqual(t, len(p.Objects), limit, "page larger than the limit")
		}
		for _, o := range p.Objects {
			keys = append(keys, o.Key)
		}
		if p.Next == "" {
			return keys
		}
		require.NotEmpty(t, p.Objects, "a page with a cursor after it must not be empty")
		cursor = p.Next
	}
}

func sha(b []byte) [32]byte { return sha256.Sum256(b) }

// chunkedPipe returns a reader of unknown size that yields data in chunks of
// chunk bytes from another goroutine, as a network upload would.
func chunkedPipe(t *testing.T, data []byte, chunk int) io.Reader {
	pr, pw := io.Pipe()
	done := make(chan struct{})
	go func() {
		defer close(done)
		for off := 0; off < len(data); off += chunk {
			if _, err := pw.Write(data[off:min(off+chunk, len(data))]); err != nil {
				return
			}
		}
		pw.Close()
	}()
	t.Cleanup(func() {
		pr.CloseWithError(errors.New("test over"))
		<-done
	})
	return pr
}

func testRoundTripStreamed(t *testing.T, b *blob.Bucket) {
	ctx := t.Context()
	// 12 MiB in odd-sized chunks of unknown total size: an S3 adapter must
	// upload it in parts.
	data := randomBytes(1, 12<<20+12345)
	a, err := b.Put(ctx, "streamed/big.bin", chunkedPipe(t, data, 1<<20-7), &blob.PutOptions{ContentType: "application/x-test", Size: -1})
	require.NoError(t, err)
	require.Equal(t, "streamed/big.bin", a.Key)
	require.Equal(t, int64(len(data)), a.Size)
	require.Equal(t, "application/x-test", a.ContentType)
	require.NotEmpty(t, a.ETag)

	got := readAll(t, b, "streamed/big.bin")
	require.Equal(t, len(data), len(got))
	require.True(t, sha(data) == sha(got), "content differs after a streamed round trip")

	h, err := b.Head(ctx, "streamed/big.bin")
	require.NoError(t, err)
	require.Equal(t, int64(len(data)), h.Size)
	require.Equal(t, a.ETag, h.ETag)
}

func testRoundTripSmall(t *testing.T, b *blob.Bucket) {
	ctx := t.Context()
	all := make([]byte, 256)
	for i := range all {
		all[i] = byte(i)
	}
	cases := []struct {
		name string
		data []byte
		size int64
	}{
		{"every-byte-known-size", all, int64(len(all))},
		{"every-byte-unknown-size", all, -1},
		{"zero-size-means-unknown", all, 0},
		{"empty", []byte{}, 0},
		{"empty-unknown-size", []byte{}, -1},
		{"one-byte", []byte{0}, 1},
	}
	for _, c := range cases {
		key := "small/" + c.name
		a, err := b.Put(ctx, key, bytes.NewReader(c.data), &blob.PutOptions{Size: c.size})
		require.NoError(t, err, key)
		require.Equal(t, int64(len(c.data)), a.Size, key)
		got := readAll(t, b, key)
		require.Equal(t, len(c.data), len(got), key)
		require.True(t, bytes.Equal(c.data, got), "%s: content differs", key)
	}
	// nil options mean defaults.
	_, err := b.Put(ctx, "small/nil-options", bytes.NewReader(all), nil)
	require.NoError(t, err)
	require.Equal(t, all, readAll(t, b, "small/nil-options"))
}

func testOverwriteAtomic(t *testing.T, b *blob.Bucket) {
	ctx := t.Context()
	const versions = 24
	const readers = 4
	key := "atomic/object"
	data := make([][]byte, versions)
	known := make(map[[32]byte]int, versions)
	for i := range data {
		// Sizes differ, so a mix of two versions also shows in the length.
		data[i] = randomBytes(uint64(100+i), 64<<10+i*4099)
		known[sha(data[i])] = i
	}
	first := put(t, b, key, data[0])

	etags := map[string]int{first.ETag: 0}
	type seen struct {
		etag string
		ver  int
	}

	stop := make(chan struct{})
	errs := make(chan error, readers)
	observed := make(chan []seen, readers)
	var wg sync.WaitGroup
	for r := range readers {
		wg.Go(func() {
			var obs []seen
			defer func() { observed <- obs }()
			for n := 0; ; n++ {
				if n > 0 {
					select {
					case <-stop:
						return
					default:
					}
				}
				rc, a, err := b.Get(ctx, key, blob.All)
				if err != nil {
					errs <- fmt.Errorf("reader %d: get: %w", r, err)
					return
				}
				got, err := io.ReadAll(rc)
				rc.Close()
				if err != nil {
					errs <- fmt.Errorf("reader %d: read: %w", r, err)
					return
				}
				v, ok := known[sha(got)]
				if !ok {
					errs <- fmt.Errorf("reader %d: read %d bytes that match no version written: a torn read", r, len(got))
					return
				}
				if a.Size != int64(len(got)) {
					errs <- fmt.Errorf("reader %d: attrs say %d bytes, read %d", r, a.Size, len(got))
					return
				}
				obs = append(obs, seen{a.ETag, v})
			}
		})
	}
	for i := 1; i < versions; i++ {
		etags[put(t, b, key, data[i]).ETag] = i
	}
	close(stop)
	wg.Wait()
	close(errs)
	close(observed)
	for err := range errs {
		require.NoError(t, err)
	}
	total := 0
	for obs := range observed {
		for _, o := range obs {
			total++
			v, ok := etags[o.etag]
			require.True(t, ok, "a reader saw ETag %q, which no Put returned", o.etag)
			require.Equal(t, v, o.ver, "a reader's attrs (ETag of version %d) do not match its content (version %d)", v, o.ver)
		}
	}
	require.GreaterOrEqual(t, total, readers)
	require.True(t, bytes.Equal(data[versions-1], readAll(t, b, key)), "the last Put must win")
}

func testRanges(t *testing.T, b *blob.Bucket) {
	ctx := t.Context()
	data := randomBytes(7, 100)
	put(t, b, "r/obj", data)
	put(t, b, "r/empty", nil)

	ok := []struct {
		name string
		rng  blob.Range
		want []byte
	}{
		{"whole", blob.All, data},
		{"whole-explicit", blob.Range{Offset: 0, Length: 100}, data},
		{"start", blob.Range{Offset: 0, Length: 10}, data[:10]},
		{"middle", blob.Range{Offset: 40, Length: 20}, data[40:60]},
		{"suffix-to-end", blob.Range{Offset: 90, Length: -1}, data[90:]},
		{"last-byte", blob.Range{Offset: 99, Length: 1}, data[99:]},
		{"length-past-end-is-cut", blob.Range{Offset: 95, Length: 10}, data[95:]},
		{"huge-length", blob.Range{Offset: 1, Length: 1 << 40}, data[1:]},
	}
	for _, c := range ok {
		rc, a, err := b.Get(ctx, "r/obj", c.rng)
		require.NoError(t, err, c.name)
		got, err := io.ReadAll(rc)
		require.NoError(t, err, c.name)
		require.NoError(t, rc.Close(), c.name)
		require.Equal(t, c.want, got, c.name)
		require.Equal(t, int64(100), a.Size, "%s: Attrs.Size is the whole object's size", c.name)
		require.Equal(t, "r/obj", a.Key, c.name)
	}

	bad := []struct {
		name string
		rng  blob.Range
	}{
		{"offset-at-end", blob.Range{Offset: 100, Length: -1}},
		{"offset-at-end-with-length", blob.Range{Offset: 100, Length: 5}},
		{"offset-after-end", blob.Range{Offset: 1000, Length: 1}},
		{"negative-offset", blob.Range{Offset: -1, Length: 5}},
		{"zero-length", blob.Range{Offset: 3, Length: 0}},
	}
	for _, c := range bad {
		rc, _, err := b.Get(ctx, "r/obj", c.rng)
		if rc != nil {
			rc.Close()
		}
		requireCode(t, errcode.InvalidArgument, err, "%s", c.name)
	}

	// The whole of an empty object reads fine.
	rc, a, err := b.Get(ctx, "r/empty", blob.All)
	require.NoError(t, err)
	got, err := io.ReadAll(rc)
	require.NoError(t, err)
	require.NoError(t, rc.Close())
	require.Empty(t, got)
	require.Equal(t, int64(0), a.Size)

	// A range of a missing object is NotFound, not a range error.
	_, _, err = b.Get(ctx, "r/missing", blob.Range{Offset: 100, Length: 1})
	requireCode(t, errcode.NotFound, err, "")

	// A partly read reader can be closed early.
	rc, _, err = b.Get(ctx, "r/obj", blob.All)
	require.NoError(t, err)
	var one [1]byte
	_, err = io.ReadFull(rc, one[:])
	require.NoError(t, err)
	require.Equal(t, data[0], one[0])
	require.NoError(t, rc.Close())
}

func testHead(t *testing.T, b *blob.Bucket) {
	ctx := t.Context()
	before := time.Now()
	data := []byte("héllo, wörld\n")
	p, err := b.PutBytes(ctx, "h/text", data, "text/plain; charset=utf-8")
	require.NoError(t, err)
	after := time.Now()
	require.Equal(t, blob.Attrs{Key: "h/text", Size: int64(len(data)), ContentType: "text/plain; charset=utf-8", ETag: p.ETag, ModTime: p.ModTime}, p)
	require.NotEmpty(t, p.ETag)

	h, err := b.Head(ctx, "h/text")
	require.NoError(t, err)
	require.Equal(t, "h/text", h.Key)
	require.Equal(t, int64(len(data)), h.Size)
	require.Equal(t, "text/plain; charset=utf-8", h.ContentType)
	require.Equal(t, p.ETag, h.ETag)
	// Remote stores keep whole seconds and their own clock: allow slack.
	require.False(t, h.ModTime.IsZero(), "ModTime is not set")
	require.WithinRange(t, h.ModTime, before.Add(-2*time.Minute), after.Add(2*time.Minute))

	rc, g, err := b.Get(ctx, "h/text", blob.Range{Offset: 1, Length: 2})
	require.NoError(t, err)
	rc.Close()
	require.Equal(t, h.Size, g.Size)
	require.Equal(t, h.ContentType, g.ContentType)
	require.Equal(t, h.ETag, g.ETag)
	require.True(t, h.ModTime.Equal(g.ModTime), "Get and Head disagree on ModTime: %v vs %v", g.ModTime, h.ModTime)

	// An overwrite changes the ETag when the content changes, and the
	// content type follows the latest Put.
	p2, err := b.PutBytes(ctx, "h/text", []byte("other"), "application/json")
	require.NoError(t, err)
	require.NotEqual(t, p.ETag, p2.ETag)
	h2, err := b.Head(ctx, "h/text")
	require.NoError(t, err)
	require.Equal(t, int64(5), h2.Size)
	require.Equal(t, "application/json", h2.ContentType)
	require.Equal(t, p2.ETag, h2.ETag)
}

func testDefaultContentType(t *testing.T, b *blob.Bucket) {
	ctx := t.Context()
	p := put(t, b, "ct/none", []byte("x"))
	require.Equal(t, blob.DefaultContentType, p.ContentType)
	h, err := b.Head(ctx, "ct/none")
	require.NoError(t, err)
	require.Equal(t, blob.DefaultContentType, h.ContentType)
}

func testMissing(t *testing.T, b *blob.Bucket) {
	ctx := t.Context()
	put(t, b, "m/present", []byte("x"))
	for _, key := range []string{"m/absent", "m", "m/present/child", "m/presen", "absent"} {
		_, _, err := b.Get(ctx, key, blob.All)
		requireCode(t, errcode.NotFound, err, "get %q", key)
		_, err = b.ReadAll(ctx, key)
		requireCode(t, errcode.NotFound, err, "read all %q", key)
		_, err = b.Head(ctx, key)
		requireCode(t, errcode.NotFound, err, "head %q", key)
	}
}

func testDelete(t *testing.T, b *blob.Bucket) {
	ctx := t.Context()
	put(t, b, "d/a", []byte("a"))
	put(t, b, "d/b/c", []byte("c"))
	put(t, b, "d/b/d/e", []byte("e"))

	require.NoError(t, b.Delete(ctx, "d/a"))
	_, err := b.Head(ctx, "d/a")
	requireCode(t, errcode.NotFound, err, "")
	_, _, err = b.Get(ctx, "d/a", blob.All)
	requireCode(t, errcode.NotFound, err, "")
	require.Equal(t, []string{"d/b/c", "d/b/d/e"}, listAll(t, b, "", 0))

	// Deleting again, or something never there, succeeds.
	require.NoError(t, b.Delete(ctx, "d/a"))
	require.NoError(t, b.Delete(ctx, "never/was/here"))
	// A prefix of existing keys is not an object: deleting it deletes nothing.
	require.NoError(t, b.Delete(ctx, "d/b"))
	require.NoError(t, b.Delete(ctx, "d/b/d"))
	require.Equal(t, []string{"d/b/c", "d/b/d/e"}, listAll(t, b, "", 0))

	// Deleting the deepest object leaves nothing behind under its prefix,
	// and the key can be written again.
	require.NoError(t, b.Delete(ctx, "d/b/d/e"))
	require.Equal(t, []string{"d/b/c"}, listAll(t, b, "", 0))
	require.Empty(t, listAll(t, b, "d/b/d", 0))
	put(t, b, "d/b/d/e", []byte("again"))
	require.Equal(t, []byte("again"), readAll(t, b, "d/b/d/e"))
	require.NoError(t, b.Delete(ctx, "d/b/c"))
	require.NoError(t, b.Delete(ctx, "d/b/d/e"))
	require.Empty(t, listAll(t, b, "", 0))
}

// listKeys are keys whose byte order differs from a per-directory walk:
// '!' < '-' < '.' < '/' < '0' < 'A' < '_' < 'a' < '~' < non-ASCII.
var listKeys = []string{
	"a", "a!", "a-b", "a.b", "a/b", "a/b!x", "a/b/c", "a/b/d", "a/b/c/d", "a/bc", "a/b.c",
	"a0", "aB", "a_b", "ab", "a~", "aé", "b", "b/a", "é/x", "日本/語",
}

func testListOrder(t *testing.T, b *blob.Bucket) {
	ctx := t.Context()
	for i, k := range listKeys {
		put(t, b, k, bytes.Repeat([]byte{'x'}, i))
	}
	sorted := slices.Clone(listKeys)
	slices.Sort(sorted) // byte order

	p, err := b.List(ctx, "", "", 0)
	require.NoError(t, err)
	require.Empty(t, p.Next)
	got := make([]string, len(p.Objects))
	for i, o := range p.Objects {
		got[i] = o.Key
		want := slices.Index(listKeys, o.Key)
		require.Equal(t, int64(want), o.Size, "size of %q in a listing", o.Key)
	}
	require.Equal(t, sorted, got, "List must return keys in byte order")

	for _, prefix := range []string{
		"a", "a/", "a/b", "a/b/", "a/b/c", "a/b/c/", "a/bc", "a.", "aé", "é", "é/", "日", "日本/", "b/a", "c", "zzz", "a/b/c/d/e",
	} {
		var want []string
		for _, k := range sorted {
			if strings.HasPrefix(k, prefix) {
				want = append(want, k)
			}
		}
		require.Equal(t, want, listAll(t, b, prefix, 0), "prefix %q", prefix)
		require.Equal(t, want, listAll(t, b, prefix, 2), "prefix %q in pages of 2", prefix)
	}
	// The brief's example: a prefix in the middle of a segment.
	require.Equal(t, []string{"a/b", "a/b!x", "a/b.c", "a/b/c", "a/b/c/d", "a/b/d", "a/bc"}, listAll(t, b, "a/b", 0))

	// An invalid prefix is refused.
	_, err = b.List(ctx, "../", "", 0)
	requireCode(t, errcode.InvalidArgument, err, "")
	_, err = b.List(ctx, "/a", "", 0)
	requireCode(t, errcode.InvalidArgument, err, "")
}

func testListPaging(t *testing.T, b *blob.Bucket) {
	ctx := t.Context()
	var keys []string
	for i := range 37 {
		k := fmt.Sprintf("p/%02d", i)
		if i%5 == 0 {
			k = fmt.Sprintf("p/%02d/child", i)
		}
		keys = append(keys, k)
		put(t, b, k, []byte{byte(i)})
	}
	put(t, b, "q/outside", []byte("no"))
	slices.Sort(keys)
	for _, limit := range []int{1, 2, 3, 10, 36, 37, 38, 1000} {
		require.Equal(t, keys, listAll(t, b, "p/", limit), "limit %d", limit)
	}
	// A full page of exactly the remaining keys may or may not say there is
	// more, but the following page is then empty and last.
	p, err := b.List(ctx, "p/", "", 37)
	require.NoError(t, err)
	require.Len(t, p.Objects, 37)
	if p.Next != "" {
		p2, err := b.List(ctx, "p/", p.Next, 37)
		require.NoError(t, err)
		require.Empty(t, p2.Objects)
		require.Empty(t, p2.Next)
	}
	// A page not at the end has a cursor.
	p, err = b.List(ctx, "p/", "", 5)
	require.NoError(t, err)
	require.Len(t, p.Objects, 5)
	require.NotEmpty(t, p.Next)

	// Keys added behind the cursor do not appear; keys added ahead do.
	put(t, b, "p/00a", []byte("behind"))
	put(t, b, "p/99", []byte("ahead"))
	var rest []string
	cursor := p.Next
	for cursor != "" {
		pg, err := b.List(ctx, "p/", cursor, 5)
		require.NoError(t, err)
		for _, o := range pg.Objects {
			rest = append(rest, o.Key)
		}
		cursor = pg.Next
	}
	require.Equal(t, append(slices.Clone(keys[5:]), "p/99"), rest)

	// Empty bucket prefix: no objects, no cursor.
	p, err = b.List(ctx, "none/", "", 10)
	require.NoError(t, err)
	require.Empty(t, p.Objects)
	require.Empty(t, p.Next)
}

// longKeys returns keys with segments around the 255-byte file name limit,
// followed by bytes that sort before and after '/'.
func longKeys() []string {
	var keys []string
	for n := 236; n <= 262; n++ {
		seg := strings.Repeat("x", n)
		keys = append(keys, "long/"+seg, "long/"+seg+"!", "long/"+seg+"/a", "long/"+seg+"0")
	}
	for n := 78; n <= 88; n++ {
		seg := strings.Repeat("é", n) // two bytes each
		keys = append(keys, "long/"+seg, "long/"+seg+"!", "long/"+seg+"/a")
	}
	for n := 80; n <= 86; n++ {
		seg := strings.Repeat("%", n) // escapes expand
		keys = append(keys, "long/"+seg, "long/"+seg+"/b", "long/"+seg+"%")
	}
	slices.Sort(keys)
	return slices.Compact(keys)
}

func testListLongSegments(t *testing.T, b *blob.Bucket) {
	keys := longKeys()
	for i, k := range keys {
		put(t, b, k, []byte{byte(i)})
	}
	slices.Sort(keys)
	require.Equal(t, keys, listAll(t, b, "", 0))
	require.Equal(t, keys, listAll(t, b, "long/", 7))
	prefixes := []string{"long/x", "long/é", "long/%%%"}
	for _, n := range []int{236, 240, 245, 246, 247, 248, 249, 250, 251, 252, 253, 254, 255, 256, 262} {
		seg := strings.Repeat("x", n)
		prefixes = append(prefixes, "long/"+seg, "long/"+seg+"/", "long/"+seg+"!")
	}
	for _, n := range []int{80, 82, 84, 86} {
		prefixes = append(prefixes, "long/"+strings.Repeat("é", n), "long/"+strings.Repeat("%", n))
	}
	for _, prefix := range prefixes {
		var want []string
		for _, k := range keys {
			if strings.HasPrefix(k, prefix) {
				want = append(want, k)
			}
		}
		require.Equal(t, want, listAll(t, b, prefix, 3), "prefix of %d bytes", len(prefix))
	}
	for i, k := range keys {
		if i%9 == 0 {
			got := readAll(t, b, k)
			require.Len(t, got, 1)
		}
	}
}

func testKeyAndChild(t *testing.T, b *blob.Bucket) {
	ctx := t.Context()
	// Parent first, then child.
	put(t, b, "a", []byte("parent"))
	put(t, b, "a/b", []byte("child"))
	// Child first, then parent.
	put(t, b, "x/y/z", []byte("deep child"))
	put(t, b, "x/y", []byte("middle"))
	put(t, b, "x", []byte("top"))

	require.Equal(t, []byte("parent"), readAll(t, b, "a"))
	require.Equal(t, []byte("child"), readAll(t, b, "a/b"))
	require.Equal(t, []byte("deep child"), readAll(t, b, "x/y/z"))
	require.Equal(t, []byte("middle"), readAll(t, b, "x/y"))
	require.Equal(t, []byte("top"), readAll(t, b, "x"))
	require.Equal(t, []string{"a", "a/b", "x", "x/y", "x/y/z"}, listAll(t, b, "", 0))

	// Overwrite both; delete one and the other stays.
	put(t, b, "a", []byte("parent 2"))
	put(t, b, "a/b", []byte("child 2"))
	require.NoError(t, b.Delete(ctx, "a"))
	require.Equal(t, []byte("child 2"), readAll(t, b, "a/b"))
	put(t, b, "a", []byte("parent 3"))
	require.NoError(t, b.Delete(ctx, "a/b"))
	require.Equal(t, []byte("parent 3"), readAll(t, b, "a"))
	require.NoError(t, b.Delete(ctx, "x/y"))
	require.Equal(t, []string{"a", "x", "x/y/z"}, listAll(t, b, "", 0))
}

// OddKeys are valid keys that stores must keep exactly.
func OddKeys() []string {
	keys := []string{
		"with space", " leading space", "trailing space ", "100%", "%2F", "%", "%%", "a%2Fb",
		"hash#tag", "q?x=1&y=2", "a+b", "tilde~", "star*", "colon:x", "semi;x", "quote\"x", "apos'x",
		"<angle>", "pipe|x", "brace{x}", "at@x", "eq=x", "comma,x", "excl!", "dollar$x",
		"unicode/日本語/ファイル.txt", "emoji/🎉", "accents/àéîõü", "rtl/שלום", "Case", "case", "CASE",
		".hidden", "..dots", "...", "dir.d/x", "a./b", "-dash", "_under", "nbsp\u00a0x", "zwj\u200dx",
		"CON", "nul", "aux.txt", "trailing.",
	}
	// Long keys: exactly 1024 bytes with long segments; 1024 bytes of
	// characters that need escaping; multibyte runes.
	long := strings.Repeat("a", 300) + "/" + strings.Repeat("b", 400) + "/"
	long += strings.Repeat("c", 1024-len(long))
	pct := strings.Repeat("%", 1024)
	mb := strings.Repeat("日", 341) + "z" // 1024 bytes
	seg := strings.Repeat("s", 255) + "/" + strings.Repeat("t", 256) + "/" + strings.Repeat("u", 254)
	return append(keys, long, pct, mb, seg, strings.Repeat("y", 1024))
}

func testOddKeys(t *testing.T, b *blob.Bucket) {
	ctx := t.Context()
	keys := OddKeys()
	for _, k := range keys {
		require.NoError(t, blob.ValidKey(k), "bad test key %q", k)
		require.LessOrEqual(t, len(k), blob.MaxKeyLen)
		_, err := b.PutBytes(ctx, k, []byte("v:"+k), "text/plain")
		require.NoError(t, err, "put %q", k)
	}
	for _, k := range keys {
		require.Equal(t, "v:"+k, string(readAll(t, b, k)), "read %q", k)
		h, err := b.Head(ctx, k)
		require.NoError(t, err, "head %q", k)
		require.Equal(t, k, h.Key)
		require.Equal(t, int64(len(k)+2), h.Size)
	}
	sorted := slices.Clone(keys)
	slices.Sort(sorted)
	require.Equal(t, sorted, listAll(t, b, "", 0))
	require.Equal(t, sorted, listAll(t, b, "", 4))
	for _, k := range keys {
		require.NoError(t, b.Delete(ctx, k), "delete %q", k)
	}
	require.Empty(t, listAll(t, b, "", 0))
}

// RejectedKeys are keys every adapter refuses with InvalidArgument.
func RejectedKeys() []string {
	return []string{
		"", ".", "..", "../x", "a/../b", "a/..", "./a", "a/./b", "a/.",
		"/abs", "/", "a//b", "a/", "//",
		"nul\x00x", "line\nbreak", "tab\tx", "cr\rx", "del\x7fx", "c1\u0085x",
		"back\\slash", "..\\x", "bad\xffutf8", "\xc3", "half\xe6\x97",
		strings.Repeat("k", blob.MaxKeyLen+1),
		strings.Repeat("a/", 512) + "b", // 1025 bytes
	}
}

func testRejectedKeys(t *testing.T, b *blob.Bucket) {
	ctx := t.Context()
	for _, k := range RejectedKeys() {
		_, err := b.PutBytes(ctx, k, []byte("nope"), "")
		requireCode(t, errcode.InvalidArgument, err, "put %q", k)
		_, err = b.Put(ctx, k, chunkedPipe(t, []byte("nope"), 2), nil)
		requireCode(t, errcode.InvalidArgument, err, "streamed put %q", k)
		_, _, err = b.Get(ctx, k, blob.All)
		requireCode(t, errcode.InvalidArgument, err, "get %q", k)
		_, err = b.Head(ctx, k)
		requireCode(t, errcode.InvalidArgument, err, "head %q", k)
		requireCode(t, errcode.InvalidArgument, b.Delete(ctx, k), "delete %q", k)
	}
	require.Empty(t, listAll(t, b, "", 0), "a rejected key wrote something")
}

func testSizeMismatch(t *testing.T, b *blob.Bucket) {
	ctx := t.Context()
	put(t, b, "sz/k", []byte("old"))
	for _, c := range []struct {
		name string
		data []byte
		size int64
	}{
		{"short", []byte("12345"), 10},
		{"long", []byte("1234567890ab"), 10},
	} {
		_, err := b.Put(ctx, "sz/k", bytes.NewReader(c.data), &blob.PutOptions{Size: c.size})
		requireCode(t, errcode.InvalidArgument, err, "%s", c.name)
		require.Equal(t, []byte("old"), readAll(t, b, "sz/k"), c.name)
		_, err = b.Put(ctx, "sz/new-"+c.name, bytes.NewReader(c.data), &blob.PutOptions{Size: c.size})
		requireCode(t, errcode.InvalidArgument, err, "%s", c.name)
	}
	require.Equal(t, []string{"sz/k"}, listAll(t, b, "", 0))
}

var errBoom = errors.New("reader failed")

// failingReader yields n bytes, then fails.
type failingReader struct {
	r io.Reader
}

func (f *failingReader) Read(p []byte) (int, error) {
	n, err := f.r.Read(p)
	if err == io.EOF {
		return n, errBoom
	}
	return n, err
}

func testFailedReader(t *testing.T, b *blob.Bucket) {
	ctx := t.Context()
	old := randomBytes(3, 1000)
	put(t, b, "f/k", old)
	for _, size := range []int64{-1, 3 << 20} {
		r := &failingReader{r: bytes.NewReader(randomBytes(4, 3<<20))}
		_, err := b.Put(ctx, "f/k", r, &blob.PutOptions{Size: size})
		require.Error(t, err, "size %d", size)
		require.True(t, bytes.Equal(old, readAll(t, b, "f/k")), "a failed Put changed the object (size %d)", size)

		r = &failingReader{r: bytes.NewReader(randomBytes(5, 3<<20))}
		_, err = b.Put(ctx, "f/new", r, &blob.PutOptions{Size: size})
		require.Error(t, err)
		_, err = b.Head(ctx, "f/new")
		requireCode(t, errcode.NotFound, err, "a failed Put created an object")
	}
	// A reader failing before any byte.
	_, err := b.Put(ctx, "f/k", &failingReader{r: bytes.NewReader(nil)}, nil)
	require.Error(t, err)
	require.True(t, bytes.Equal(old, readAll(t, b, "f/k")))
	require.Equal(t, []string{"f/k"}, listAll(t, b, "", 0))
}

func testCancelledContext(t *testing.T, b *blob.Bucket) {
	put(t, b, "c/k", []byte("old"))
	ctx, cancel := context.WithCancel(t.Context())
	cancel()

	_, err := b.PutBytes(ctx, "c/k", []byte("new"), "")
	requireCode(t, errcode.Canceled, err, "put")
	_, err = b.PutBytes(ctx, "c/new", []byte("new"), "")
	requireCode(t, errcode.Canceled, err, "put new")
	_, _, err = b.Get(ctx, "c/k", blob.All)
	requireCode(t, errcode.Canceled, err, "get")
	_, err = b.Head(ctx, "c/k")
	requireCode(t, errcode.Canceled, err, "head")
	requireCode(t, errcode.Canceled, b.Delete(ctx, "c/k"), "delete")
	_, err = b.List(ctx, "", "", 0)
	requireCode(t, errcode.Canceled, err, "list")

	require.Equal(t, []byte("old"), readAll(t, b, "c/k"))
	require.Equal(t, []string{"c/k"}, listAll(t, b, "", 0))
}

// cancellingReader cancels its context after n bytes and then keeps
// yielding bytes up to limit.
type cancellingReader struct {
	n, limit int
	read     int
	cancel   context.CancelFunc
}

func (c *cancellingReader) Read(p []byte) (int, error) {
	if c.read >= c.limit {
		return 0, io.EOF
	}
	k := min(len(p), c.limit-c.read)
	for i := range p[:k] {
		p[i] = byte(c.read + i)
	}
	c.read += k
	if c.read >= c.n {
		c.cancel()
	}
	return k, nil
}

func testCancelDuringPut(t *testing.T, b *blob.Bucket) {
	put(t, b, "cd/k", []byte("old"))
	for _, key := range []string{"cd/k", "cd/new"} {
		ctx, cancel := context.WithCancel(t.Context())
		r := &cancellingReader{n: 1 << 20, limit: 16 << 20, cancel: cancel}
		_, err := b.Put(ctx, key, r, nil)
		cancel()
		requireCode(t, errcode.Canceled, err, "put %q", key)
	}
	require.Equal(t, []byte("old"), readAll(t, b, "cd/k"))
	require.Equal(t, []string{"cd/k"}, listAll(t, b, "", 0))
}

func testConcurrentPutsDeletes(t *testing.T, b *blob.Bucket) {
	ctx := t.Context()
	// Writers and deleters race on keys sharing directories; each key's
	// final state is decided by its last operation.
	const workers = 6
	const rounds = 15
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Go(func() {
			for i := range rounds {
				key := fmt.Sprintf("cc/shared/%d/%d", w%2, i%3)
				own := fmt.Sprintf("cc/own/%d/x", w)
				var err error
				if (w+i)%2 == 0 {
					_, err = b.PutBytes(ctx, key, []byte(key), "")
				} else {
					err = b.Delete(ctx, key)
				}
				if err == nil {
					_, err = b.PutBytes(ctx, own, []byte{byte(i)}, "")
				}
				if err == nil && i%2 == 1 {
					err = b.Delete(ctx, own)
				}
				if err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	// Every own key ended with a Put (rounds is odd: the last i is even).
	for w := range workers {
		require.Equal(t, []byte{rounds - 1}, readAll(t, b, fmt.Sprintf("cc/own/%d/x", w)))
	}
	// Shared keys hold their key or are gone; the listing agrees with Head.
	listed := listAll(t, b, "cc/shared/", 0)
	for g := range 2 {
		for i := range 3 {
			key := fmt.Sprintf("cc/shared/%d/%d", g, i)
			data, err := b.ReadAll(ctx, key)
			if errcode.Of(err) == errcode.NotFound {
				require.NotContains(t, listed, key)
				continue
			}
			require.NoError(t, err)
			require.Equal(t, key, string(data))
			require.Contains(t, listed, key)
		}
	}
}

func testUseAfterClose(t *testing.T, b *blob.Bucket) {
	ctx := t.Context()
	put(t, b, "z/k", []byte("x"))
	require.NoError(t, b.Close())
	_, err := b.PutBytes(ctx, "z/k", []byte("y"), "")
	requireCode(t, errcode.Closed, err, "put")
	_, _, err = b.Get(ctx, "z/k", blob.All)
	requireCode(t, errcode.Closed, err, "get")
	_, err = b.Head(ctx, "z/k")
	requireCode(t, errcode.Closed, err, "head")
	requireCode(t, errcode.Closed, b.Delete(ctx, "z/k"), "delete")
	_, err = b.List(ctx, "", "", 0)
	requireCode(t, errcode.Closed, err, "list")
	require.NoError(t, b.Close(), "a second Close")
}
