// Package startstop is the lifecycle every long-lived component shares:
// Start runs its loops in goroutines and returns once they run; Stop cancels
// them and waits; Stop is safe twice and before Start, and a Start after
// Stop (or a second Start) does nothing but say so.
package startstop

import (
	"context"
	"sync"

	"github.com/jobfleet/jobfleet/pkg/errcode"
)

// Group runs a component's loops. The zero value is ready to use.
type Group struct {
	startOnce, stopOnce sync.Once
	cancel              context.CancelFunc
	wg                  sync.WaitGroup
}

// Start runs each loop in its own goroutine with a context that ends at
// Stop or when ctx does. name is for the error a second Start returns.
func (g *Group) Start(ctx context.Context, name string, loops ...func(context.Context)) error {
	started := false
	g.startOnce.Do(func() {
		started = true
		ctx, g.cancel = context.WithCancel(ctx)
		for _, loop := range loops {
			g.wg.Add(1)
			go func() {
				defer g.wg.Done()
				loop(ctx)
			}()
		}
	})
	if !started {
		return errcode.New(errcode.FailedPrecondition, "%s already started", name)
	}
	return nil
}

// Stop cancels the loops and waits for them. It reports whether this call
// stopped the group (false for a second Stop).
func (g *Group) Stop() bool {
	stopped := false
	g.stopOnce.Do(func() {
		stopped = true
		g.startOnce.Do(func() {}) // a later Start does nothing
		if g.cancel != nil {
			g.cancel()
		}
		g.wg.Wait()
	})
	return stopped
}
