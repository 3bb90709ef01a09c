package groupcommit

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// recorder is a Func that records its batches. A stepped one blocks each
// batch, after telling started, until the test sends a token on step.
type recorder struct {
	mu      sync.Mutex
	batches [][]string
	step    chan struct{} // nil: batches run at once
	started chan struct{}
	fail    func(items []string) error
}

func stepped() *recorder {
	return &recorder{step: make(chan struct{}), started: make(chan struct{}, 64)}
}

func (r *recorder) fn(ctx context.Context, items []string) ([]string, error) {
	r.mu.Lock()
	r.batches = append(r.batches, items)
	r.mu.Unlock()
	if r.step != nil {
		r.started <- struct{}{}
		<-r.step
	}
	if r.fail != nil {
		if err := r.fail(items); err != nil {
			return nil, err
		}
	}
	out := make([]string, len(items))
	for i, it := range items {
		out[i] = strings.ToUpper(it)
	}
	return out, nil
}

// next lets the running batch finish.
func (r *recorder) next() { r.step <- struct{}{} }

func (r *recorder) seen() [][]string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([][]string(nil), r.batches...)
}

// busy returns a stepped recorder and a group over it with a batch of
// "first" in flight, and that call's outcome.
func busy(t *testing.T, r *recorder, opts *Options) (*Group[string, string], chan outcome) {
	t.Helper()
	g := New(r.fn, opts)
	first := goDo(g, t.Context(), "first")
	<-r.started
	return g, first
}

func (g *Group[T, R]) waitPending(t *testing.T, n int) {
	t.Helper()
	require.Eventually(t, func() bool {
		g.mu.Lock()
		defer g.mu.Unlock()
		return len(g.pending) == n
	}, 5*time.Second, time.Millisecond)
}

type outcome struct {
	res []string
	err error
}

func goDo(g *Group[string, string], ctx context.Context, items ...string) chan outcome {
	ch := make(chan outcome, 1)
	go func() {
		res, err := g.Do(ctx, items)
		ch <- outcome{res, err}
	}()
	return ch
}

func TestLoneCallRunsAtOnce(t *testing.T) {
	t.Parallel()
	r := &recorder{}
	g := New(r.fn, nil)
	res, err := g.Do(t.Context(), []string{"a", "b"})
	require.NoError(t, err)
	require.Equal(t, []string{"A", "B"}, res)
	res, err = g.Do(t.Context(), []string{"c"})
	require.NoError(t, err)
	require.Equal(t, []string{"C"}, res)
	require.Equal(t, [][]string{{"a", "b"}, {"c"}}, r.seen())
}

// Calls that arrive while a batch runs go out together in the next one,
// and each gets its own results.
func TestCallsGatherWhileABatchRuns(t *testing.T) {
	t.Parallel()
	r := stepped()
	g, first := busy(t, r, nil)
	var waiting []chan outcome
	for i := range 5 {
		waiting = append(waiting, goDo(g, t.Context(), fmt.Sprintf("w%d", i), fmt.Sprintf("x%d", i)))
		g.waitPending(t, i+1)
	}
	r.next()
	require.Equal(t, outcome{res: []string{"FIRST"}}, <-first)
	<-r.started
	r.next()
	for i, ch := range waiting {
		require.Equal(t, outcome{res: []string{fmt.Sprintf("W%d", i), fmt.Sprintf("X%d", i)}}, <-ch)
	}
	b := r.seen()
	require.Len(t, b, 2, "one batch for the five that waited")
	require.Equal(t, []string{"w0", "x0", "w1", "x1", "w2", "x2", "w3", "x3", "w4", "x4"}, b[1])
}

func TestMaxItemsSplitsBatches(t *testing.T) {
	t.Parallel()
	r := stepped()
	g, first := busy(t, r, &Options{MaxItems: 3})
	var waiting []chan outcome
	for i, items := range [][]string{{"b", "c"}, {"d"}, {"e", "f", "g", "h"}, {"i"}} {
		waiting = append(waiting, goDo(g, t.Context(), items...))
		g.waitPending(t, i+1)
	}
	for range 3 { // the batch in flight lets the next start
		r.next()
		<-r.started
	}
	r.next()
	require.NoError(t, (<-first).err)
	for _, ch := range waiting {
		require.NoError(t, (<-ch).err)
	}
	require.Equal(t, [][]string{{"first"}, {"b", "c", "d"}, {"e", "f", "g", "h"}, {"i"}}, r.seen(),
		"at most 3 items, except a call with more, which runs alone")
}

func TestCancelWhilePending(t *testing.T) {
	t.Parallel()
	r := stepped()
	g, first := busy(t, r, nil)
	ctx, cancel := context.WithCancel(t.Context())
	gone := goDo(g, ctx, "never")
	g.waitPending(t, 1)
	kept := goDo(g, t.Context(), "b")
	g.waitPending(t, 2)
	cancel()
	require.ErrorIs(t, (<-gone).err, context.Canceled)
	g.waitPending(t, 1)
	r.next()
	require.NoError(t, (<-first).err)
	<-r.started
	r.next()
	require.Equal(t, outcome{res: []string{"B"}}, <-kept)
	require.Equal(t, [][]string{{"first"}, {"b"}}, r.seen(), "a call cancelled before its batch never runs")
}

// A caller whose batch runs returns when its context ends; the batch goes
// on for the others on its own context.
func TestCancelWhileRunning(t *testing.T) {
	t.Parallel()
	r := stepped()
	g, first := busy(t, r, nil)
	other := goDo(g, t.Context(), "b") // runs the next batch
	g.waitPending(t, 1)
	ctx, cancel := context.WithCancel(t.Context())
	mine := goDo(g, ctx, "c")
	g.waitPending(t, 2)
	r.next()
	require.NoError(t, (<-first).err)
	<-r.started // the batch of "b" and "c" runs
	cancel()
	require.ErrorIs(t, (<-mine).err, context.Canceled)
	r.next()
	require.Equal(t, outcome{res: []string{"B"}}, <-other)
}

// The call whose turn it is runs the next batch even when its own context
// has ended: the others wait on it.
func TestCancelledLeaderStillRuns(t *testing.T) {
	t.Parallel()
	r := stepped()
	g, first := busy(t, r, nil)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	g.mu.Lock() // queue a call with an ended context directly, so it cannot leave before its turn
	c := &call[string, string]{items: []string{"b"}, done: make(chan struct{}), turn: make(chan struct{})}
	g.pending = append(g.pending, c)
	g.mu.Unlock()
	led := make(chan outcome, 1)
	go func() {
		<-c.turn
		g.lead(ctx)
		<-c.done
		led <- outcome{c.res, c.err}
	}()
	other := goDo(g, t.Context(), "c")
	g.waitPending(t, 2)
	r.next()
	require.NoError(t, (<-first).err)
	<-r.started
	r.next()
	require.Equal(t, outcome{res: []string{"B"}}, <-led)
	require.Equal(t, outcome{res: []string{"C"}}, <-other)
}

var errBad = errors.New("bad item")

// With Isolate, one call's bad item fails that call alone.
func TestIsolate(t *testing.T) {
	t.Parallel()
	for _, isolate := range []bool{false, true} {
		t.Run(fmt.Sprint("isolate=", isolate), func(t *testing.T) {
			t.Parallel()
			r := stepped()
			r.fail = func(items []string) error {
				if slices.Contains(items, "bad") {
					return errBad
				}
				return nil
			}
			o := &Options{}
			if isolate {
				o.Isolate = func(err error) bool { return errors.Is(err, errBad) }
			}
			g, first := busy(t, r, o)
			good := goDo(g, t.Context(), "good")
			g.waitPending(t, 1)
			bad := goDo(g, t.Context(), "bad")
			g.waitPending(t, 2)
			go func() { // every batch from here on may go
				for range r.started {
					r.next()
				}
			}()
			r.next()
			require.NoError(t, (<-first).err)
			require.ErrorIs(t, (<-bad).err, errBad)
			if isolate {
				require.Equal(t, outcome{res: []string{"GOOD"}}, <-good)
			} else {
				require.ErrorIs(t, (<-good).err, errBad, "without Isolate the batch's error is everyone's")
			}
			close(r.started)
		})
	}
}

// A panic in the Func reaches the caller that ran the batch; the others of
// the batch get an error, and the group goes on.
func TestPanic(t *testing.T) {
	t.Parallel()
	boom := true
	var mu sync.Mutex
	gate := make(chan struct{})
	started := make(chan struct{}, 4)
	g := New(func(_ context.Context, items []string) ([]string, error) {
		started <- struct{}{}
		mu.Lock()
		b := boom
		mu.Unlock()
		if b && items[0] == "b" {
			panic("boom")
		}
		if items[0] == "a" {
			<-gate
		}
		return items, nil
	}, nil)
	first := goDo(g, t.Context(), "a")
	<-started
	panicked := make(chan any, 1)
	go func() {
		defer func() { panicked <- recover() }()
		_, _ = g.Do(t.Context(), []string{"b"})
	}()
	g.waitPending(t, 1)
	other := goDo(g, t.Context(), "c")
	g.waitPending(t, 2)
	close(gate)
	require.NoError(t, (<-first).err)
	require.Equal(t, "boom", <-panicked)
	require.ErrorContains(t, (<-other).err, "panic: boom")
	mu.Lock()
	boom = false
	mu.Unlock()
	res, err := g.Do(t.Context(), []string{"d"})
	require.NoError(t, err)
	require.Equal(t, []string{"d"}, res)
}

// Many concurrent callers: every one gets exactly its own results.
func TestConcurrentCallers(t *testing.T) {
	t.Parallel()
	r := &recorder{}
	g := New(r.fn, &Options{MaxItems: 7})
	var wg sync.WaitGroup
	for i := range 200 {
		wg.Go(func() {
			a, b := fmt.Sprintf("p%d", i), fmt.Sprintf("q%d", i)
			res, err := g.Do(t.Context(), []string{a, b})
			require.NoError(t, err)
			require.Equal(t, []string{strings.ToUpper(a), strings.ToUpper(b)}, res)
		})
	}
	wg.Wait()
	n := 0
	for _, b := range r.seen() {
		n += len(b)
	}
	require.Equal(t, 400, n)
}

// Callers that give up at random moments, some of them just as it is their
// turn to run a batch, never wedge the group: a later call still returns.
func TestRandomCancellations(t *testing.T) {
	t.Parallel()
	g := New(func(_ context.Context, items []int) ([]int, error) {
		runtime.Gosched() // let callers arrive and give up meanwhile
		return items, nil
	}, &Options{MaxItems: 5})
	var wg sync.WaitGroup
	for i := range 2000 {
		wg.Go(func() {
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			if i%3 != 0 {
				go func() {
					for range i % 7 { // give up at varying moments
						runtime.Gosched()
					}
					cancel()
				}()
			}
			res, err := g.Do(ctx, []int{i})
			if err == nil {
				require.Equal(t, []int{i}, res)
			} else {
				require.ErrorIs(t, err, context.Canceled)
			}
		})
	}
	wg.Wait()
	done := make(chan struct{})
	go func() {
		defer close(done)
		res, err := g.Do(t.Context(), []int{-1})
		require.NoError(t, err)
		require.Equal(t, []int{-1}, res)
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the group is wedged")
	}
}

// The batch runs on a context of its own: the caller that runs it giving
// up does not cancel the others' writes.
func TestBatchOutlivesItsCaller(t *testing.T) {
	t.Parallel()
	started, release := make(chan struct{}), make(chan struct{})
	g := New(func(ctx context.Context, items []string) ([]string, error) {
		close(started)
		<-release
		return items, context.Cause(ctx)
	}, nil)
	ctx, cancel := context.WithCancel(t.Context())
	mine := goDo(g, ctx, "a")
	<-started
	cancel()
	close(release)
	require.Equal(t, outcome{res: []string{"a"}}, <-mine, "the batch's context was not cancelled with the caller's")
}
