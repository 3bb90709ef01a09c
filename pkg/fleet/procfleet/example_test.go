package procfleet_test

import (
	"context"
	"fmt"
	"log"
	"os/signal"
	"syscall"

	"github.com/jobfleet/jobfleet/pkg/fleet/procfleet"
	"github.com/jobfleet/jobfleet/pkg/queue"
)

// A dispatcher runs workers on this machine and publishes their state
// changes to the reaper's events queue.
func ExampleOpen() {
	ctx := context.Background()
	var events *queue.Queue // e.g. sqlitequeue's "fleet-events"
	f, err := procfleet.Open(ctx, "/var/lib/jobfleet/fleet.db", &procfleet.Options{
		Command:     []string{"jobfleet-worker", "-profile", "local"},
		Events:      events,
		MaxWorkers:  4,
		KeepRunning: true, // a restarted dispatcher finds its workers in the registry
	})
	if err != nil {
		log.Fatal(err)
	}
	defer f.Close()
	p, err := f.Provision(ctx, 2)
	if err != nil {
		log.Fatal(err)
	}
	for _, w := range p.Workers {
		fmt.Println("started", w.ID) // host/pid
	}
	for _, fail := range p.Failures {
		fmt.Println("not started:", fail.Count, fail.Reason)
	}
}

// A worker learns the id the fleet knows it by, the owner it writes into
// the jobs it runs.
func ExampleSelfID() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	owner := procfleet.SelfID()
	fmt.Println("worker", owner, "draining on SIGTERM:", ctx.Err() == nil)
}
