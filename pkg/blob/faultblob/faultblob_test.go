package faultblob_test

import (
	"bytes"
	"context"
	"io"
	"math/rand/v2"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/jobfleet/jobfleet/pkg/blob"
	"github.com/jobfleet/jobfleet/pkg/blob/blobtest"
	"github.com/jobfleet/jobfleet/pkg/blob/faultblob"
	"github.com/jobfleet/jobfleet/pkg/blob/fileblob"
	"github.com/jobfleet/jobfleet/pkg/errcode"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// bucketDriver is a blob.Driver over a Bucket: fileblob keeps its driver to
// itself, and a Bucket does what its driver does once the checks pass.
type bucketDriver struct{ b *blob.Bucket }

func (d bucketDriver) Put(ctx context.Context, key string, r io.Reader, opts blob.PutOptions) (blob.Attrs, error) {
	return d.b.Put(ctx, key, r, &opts)
}

func (d bucketDriver) Get(ctx context.Context, key string, rng blob.Range) (io.ReadCloser, blob.Attrs, error) {
	return d.b.Get(ctx, key, rng)
}

func (d bucketDriver) Head(ctx context.Context, key string) (blob.Attrs, error) {
	return d.b.Head(ctx, key)
}

func (d bucketDriver) Delete(ctx context.Context, key string) error { return d.b.Delete(ctx, key) }

func (d bucketDriver) List(ctx context.Context, prefix, cursor string, limit int) (blob.ListPage, error) {
	return d.b.List(ctx, prefix, cursor, limit)
}

func (d bucketDriver) Close() error { return d.b.Close() }

// open returns a fresh directory bucket, closed at cleanup.
func open(t *testing.T) *blob.Bucket {
	t.Helper()
	b, err := fileblob.Open(filepath.Join(t.TempDir(), "bucket"), nil)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, b.Close()) })
	return b
}

// Without faults the wrapper is transparent: it passes the suite.
func TestConformanceWithoutFaults(t *testing.T) {
	t.Parallel()
	blobtest.Run(t, func(t *testing.T) blobtest.Harness {
		b, _ := faultblob.New(bucketDriver{open(t)}, nil)
		return blobtest.Harness{Bucket: b}
	})
}

type env struct {
	t     *testing.T
	truth *blob.Bucket // the store, without faults
	b     *blob.Bucket // through the faults
	fd    *faultblob.Driver

	mu    sync.Mutex
	slept []time.Duration
}

func setup(t *testing.T, f faultblob.Faults) *env {
	t.Helper()
	e := &env{t: t, truth: open(t)}
	e.b, e.fd = faultblob.New(bucketDriver{e.truth}, &faultblob.Options{
		Faults: f,
		Rand:   rand.New(rand.NewPCG(5, 6)),
		Sleep: func(ctx context.Context, d time.Duration) error {
			e.mu.Lock()
			defer e.mu.Unlock()
			e.slept = append(e.slept, d)
			return ctx.Err()
		},
	})
	return e
}

// put stores data at key in the store, without faults.
func (e *env) put(key, data string) {
	e.t.Helper()
	_, err := e.truth.PutBytes(context.Background(), key, []byte(data), "")
	require.NoError(e.t, err)
}

// exists reports whether key is in the store.
func (e *env) exists(key string) bool {
	e.t.Helper()
	_, err := e.truth.Head(context.Background(), key)
	if errcode.Of(err) == errcode.NotFound {
		return false
	}
	require.NoError(e.t, err)
	return true
}

// countingReader counts the bytes read from it.
type countingReader struct {
	r io.Reader
	n int
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += n
	return n, err
}

// every makes each of the five calls once through the faults, on key "a"
// (stored beforehand) and "new" (not stored), and returns their errors.
func (e *env) every() (errs []error, body *countingReader) {
	ctx := context.Background()
	body = &countingReader{r: bytes.NewReader([]byte("fresh"))}
	_, err := e.b.Put(ctx, "new", body, &blob.PutOptions{Size: 5})
	errs = append(errs, err)
	rc, _, err := e.b.Get(ctx, "a", blob.All)
	if rc != nil {
		rc.Close()
	}
	errs = append(errs, err)
	_, err = e.b.Head(ctx, "a")
	errs = append(errs, err)
	errs = append(errs, e.b.Delete(ctx, "a"))
	_, err = e.b.List(ctx, "", "", 0)
	errs = append(errs, err)
	return errs, body
}

func TestUnavailable(t *testing.T) {
	t.Parallel()
	e := setup(t, faultblob.Faults{Unavailable: 1})
	e.put("a", "old")
	errs, body := e.every()
	for i, err := range errs {
		require.Equal(t, errcode.Unavailable, errcode.Of(err), "call %d: %v", i, err)
		require.True(t, errcode.Retryable(err))
		require.NotContains(t, err.Error(), "SlowDown")
	}
	require.Zero(t, body.n, "a refused Put reads nothing")
	require.False(t, e.exists("new"), "nothing stored")
	require.True(t, e.exists("a"), "nothing deleted")
	require.Equal(t, faultblob.Stats{Unavailable: 5}, e.fd.Stats())

	// Faults change at once.
	e.fd.SetFaults(faultblob.Faults{})
	require.Equal(t, faultblob.Faults{}, e.fd.Faults())
	errs, _ = e.every()
	for _, err := range errs {
		require.NoError(t, err)
	}
	require.True(t, e.exists("new"))
	require.False(t, e.exists("a"))
}

func TestThrottled(t *testing.T) {
	t.Parallel()
	e := setup(t, faultblob.Faults{Throttled: 1})
	e.put("a", "old")
	errs, body := e.every()
	for i, err := range errs {
		require.Equal(t, errcode.Unavailable, errcode.Of(err), "call %d: %v", i, err)
		require.Contains(t, err.Error(), "SlowDown")
	}
	require.Zero(t, body.n)
	require.False(t, e.exists("new"))
	require.True(t, e.exists("a"))
	require.Equal(t, faultblob.Stats{Throttled: 5}, e.fd.Stats())
}

// With every fraction 0 the wrapper changes nothing, and draws and waits
// for nothing even with a latency set.
func TestNoFaults(t *testing.T) {
	t.Parallel()
	e := setup(t, faultblob.Faults{MaxLatency: time.Hour})
	e.put("a", "old")
	errs, body := e.every()
	for _, err := range errs {
		require.NoError(t, err)
	}
	require.Equal(t, 5, body.n)
	got, err := e.truth.ReadAll(context.Background(), "new")
	require.NoError(t, err)
	require.Equal(t, "fresh", string(got))
	require.Empty(t, e.slept)
	require.Equal(t, faultblob.Stats{}, e.fd.Stats())
}

func TestSlow(t *testing.T) {
	t.Parallel()
	e := setup(t, faultblob.Faults{Slow: 1, MaxLatency: 3 * time.Second})
	e.put("a", "old")
	errs, _ := e.every()
	for _, err := range errs {
		require.NoError(t, err, "a slow call goes through")
	}
	require.Len(t, e.slept, 5)
	for _, d := range e.slept {
		require.Positive(t, d)
		require.LessOrEqual(t, d, 3*time.Second)
	}
	require.Equal(t, faultblob.Stats{Slow: 5}, e.fd.Stats())

	// A slow call whose context ends while it waits fails with it and does
	// not reach the store.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := e.b.PutBytes(ctx, "late", []byte("x"), "")
	require.Equal(t, errcode.Canceled, errcode.Of(err))
	require.False(t, e.exists("late"))
}

// The default sleep waits on a real timer and ends with the context.
func TestRealSleep(t *testing.T) {
	t.Parallel()
	truth := open(t)
	b, fd := faultblob.New(bucketDriver{truth}, &faultblob.Options{Faults: faultblob.Faults{Slow: 1, MaxLatency: time.Hour}})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := b.PutBytes(ctx, "k", []byte("x"), "")
	require.Equal(t, errcode.Canceled, errcode.Of(err))
	require.Less(t, time.Since(start), 10*time.Second, "returned when the context ended, not after the latency")
	_, err = truth.Head(context.Background(), "k")
	require.Equal(t, errcode.NotFound, errcode.Of(err), "nothing stored")
	require.Equal(t, 1, fd.Stats().Slow)
}

// Some calls are hit and the others go through; the same seed hits the
// same ones.
func TestPartialAndDeterministic(t *testing.T) {
	t.Parallel()
	run := func() ([]bool, faultblob.Stats) {
		e := setup(t, faultblob.Faults{Unavailable: 0.2, Throttled: 0.2, Slow: 0.3, MaxLatency: time.Second})
		var ok []bool
		for range 100 {
			_, err := e.b.Head(context.Background(), "missing")
			ok = append(ok, errcode.Of(err) == errcode.NotFound)
		}
		return ok, e.fd.Stats()
	}
	ok, s := run()
	failed := 0
	for _, o := range ok {
		if !o {
			failed++
		}
	}
	require.Equal(t, s.Unavailable+s.Throttled, failed)
	require.Positive(t, s.Unavailable)
	require.Positive(t, s.Throttled)
	require.Positive(t, s.Slow)
	require.Less(t, failed, 80)
	ok2, s2 := run()
	require.Equal(t, ok, ok2)
	require.Equal(t, s, s2)
}
