// Package groupcommit runs the calls that arrive while a write is in flight
// as one batch (group commit). A call that finds nothing in flight runs its
// own items at once, so a lone call waits for nothing. Calls that arrive
// while a batch runs queue up; when it ends, the first of them runs the
// items of all that gathered, for them all: under load, one transaction or
// one send serves many callers, and each caller waits for at most the batch
// in flight and its own.
//
// The batch runs on a context of its own: the running caller's values,
// without its cancellation, bounded by Options.Timeout. A caller whose
// context ends before its batch starts leaves the queue with the context's
// error, its items never run; one whose batch is already running returns
// the context's error at once, and the batch goes on for the others (its
// items' outcome is then unknown to it, as with any write whose answer was
// lost). The caller that runs a batch returns when the batch ends, and a
// caller whose turn it is to run the next batch runs it even if its own
// context has ended: the others wait on it.
package groupcommit

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"
)

// Func writes items and returns one result per item, in order, and an error
// for the call as a whole.
type Func[T, R any] func(ctx context.Context, items []T) ([]R, error)

// Options configure a Group. Zero fields take the defaults noted.
type Options struct {
	// MaxItems bounds the items of one batch (default 1000); a call with
	// more runs alone.
	MaxItems int
	// Timeout bounds one batch (default 30 s).
	Timeout time.Duration
	// Isolate, when set, reports whether a batch's error may be caused by
	// one call's items alone (bad input): the calls of a batch that failed
	// so are run again one at a time, so that one caller's bad item does
	// not fail the others.
	Isolate func(error) bool
}

// Group batches the calls of one Func. Its zero value is not usable: see
// New. A Group is safe for concurrent use.
type Group[T, R any] struct {
	fn Func[T, R]
	o  Options

	mu      sync.Mutex
	busy    bool // a batch runs, or a call was told to run the next
	pending []*call[T, R]
}

type call[T, R any] struct {
	items  []T
	res    []R
	err    error
	done   chan struct{} // closed when res and err are set
	turn   chan struct{} // closed when this call must run the next batch
	leader bool          // turn was closed (under Group.mu)
	ran    bool          // taken into a batch (under Group.mu)
}

// New returns a Group running fn.
func New[T, R any](fn Func[T, R], opts *Options) *Group[T, R] {
	var o Options
	if opts != nil {
		o = *opts
	}
	if o.MaxItems <= 0 {
		o.MaxItems = 1000
	}
	if o.Timeout <= 0 {
		o.Timeout = 30 * time.Second
	}
	return &Group[T, R]{fn: fn, o: o}
}

// Do writes items, in a batch with the items of concurrent calls, and
// returns their results in order (see the package doc for cancellation).
func (g *Group[T, R]) Do(ctx context.Context, items []T) ([]R, error) {
	c := &call[T, R]{items: items, done: make(chan struct{}), turn: make(chan struct{})}
	g.mu.Lock()
	g.pending = append(g.pending, c)
	if !g.busy {
		g.busy = true
		c.leader = true
		close(c.turn)
	}
	g.mu.Unlock()

	select {
	case <-c.done:
		return c.res, c.err
	case <-c.turn:
		g.lead(ctx)
		<-c.done
		return c.res, c.err
	case <-ctx.Done():
	}
	g.mu.Lock()
	switch {
	case closed(c.done):
		g.mu.Unlock()
		return c.res, c.err
	case c.leader:
		g.mu.Unlock()
		g.lead(ctx) // the others wait on this call
		<-c.done
		return c.res, c.err
	case !c.ran:
		g.pending = slices.DeleteFunc(g.pending, func(p *call[T, R]) bool { return p == c })
	}
	g.mu.Unlock()
	return nil, context.Cause(ctx)
}

// lead runs the next batch (the pending calls, up to MaxItems items), then
// passes the turn to the first call still pending, if any.
func (g *Group[T, R]) lead(ctx context.Context) {
	g.mu.Lock()
	n, items := 0, 0
	for n < len(g.pending) && (n == 0 || items+len(g.pending[n].items) <= g.o.MaxItems) {
		items += len(g.pending[n].items)
		g.pending[n].ran = true
		n++
	}
	batch := slices.Clone(g.pending[:n])
	g.pending = slices.Delete(g.pending, 0, n)
	g.mu.Unlock()

	defer func() {
		p := recover()
		if p != nil {
			for _, c := range batch {
				if !closed(c.done) {
					c.err = fmt.Errorf("group commit: panic: %v", p)
					close(c.done)
				}
			}
		}
		g.mu.Lock()
		if len(g.pending) > 0 {
			next := g.pending[0]
			next.leader = true
			close(next.turn)
		} else {
			g.busy = false
		}
		g.mu.Unlock()
		if p != nil {
			panic(p)
		}
	}()

	bctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), g.o.Timeout)
	defer cancel()
	err := g.run(bctx, batch)
	if err != nil && len(batch) > 1 && g.o.Isolate != nil && g.o.Isolate(err) {
		for _, c := range batch {
			g.finish(c, g.run(bctx, []*call[T, R]{c}))
		}
		return
	}
	for _, c := range batch {
		g.finish(c, err)
	}
}

// run calls fn with the items of calls and hands each call its results;
// the error is for them all.
func (g *Group[T, R]) run(ctx context.Context, calls []*call[T, R]) error {
	var items []T
	for _, c := range calls {
		items = append(items, c.items...)
	}
	res, err := g.fn(ctx, items)
	if err != nil {
		return err
	}
	if len(res) != len(items) {
		return fmt.Errorf("group commit: %d results for %d items", len(res), len(items))
	}
	for _, c := range calls {
		c.res, res = res[:len(c.items):len(c.items)], res[len(c.items):]
	}
	return nil
}

func (g *Group[T, R]) finish(c *call[T, R], err error) {
	if err != nil {
		c.res = nil
	}
	c.err = err
	close(c.done)
}

func closed(ch chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}
