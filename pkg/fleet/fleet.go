// Package fleet is the worker fleet port: provision workers, list them,
// stop one, and follow their state changes.
//
// Fleet is the portable type the services use; it validates input, splits
// provisioning into calls of at most MaxProvision (ECS RunTask's limit), and
// delegates to a Driver. Adapters implement Driver: procfleet (worker
// processes on this machine, embedded profile) and ecsfleet (ECS Fargate
// tasks, aws profile). The conformance suite fleet/fleettest pins down the
// semantics.
//
// # Events
//
// State changes travel as "ECS Task State Change" events, the JSON that
// EventBridge delivers to an SQS queue. In AWS, ECS emits them and an
// EventBridge rule routes them to the events queue; procfleet writes the
// same JSON to its events queue itself. The reaper reads the events queue
// with ParseEvent and never needs to know which fleet produced them. Events
// can arrive twice and out of order; Event.Version orders one worker's
// events (it grows through the lifecycle: RUNNING, stopping, STOPPED) and
// duplicates share it.
//
// # Identity
//
// A worker's ID is the owner it writes into the jobs it runs: the ECS task
// ARN, or "host/pid" for a local process. A STOPPED event for an ID lets the
// reaper reclaim that owner's jobs at once.
package fleet

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/jobfleet/jobfleet/pkg/errcode"
)

// MaxProvision is the most workers one Driver.Provision call is asked for.
const MaxProvision = 10

// Task statuses, as ECS names them (lastStatus / desiredStatus).
const (
	StatusProvisioning = "PROVISIONING"
	StatusPending      = "PENDING"
	StatusActivating   = "ACTIVATING"
	StatusRunning      = "RUNNING"
	StatusDeactivating = "DEACTIVATING"
	StatusStopping     = "STOPPING"
	StatusStopped      = "STOPPED"
)

// Stop codes, as ECS names them (detail.stopCode).
const (
	StopTaskFailedToStart         = "TaskFailedToStart"
	StopEssentialContainerExited  = "EssentialContainerExited"
	StopUserInitiated             = "UserInitiated"
	StopServiceSchedulerInitiated = "ServiceSchedulerInitiated"
	StopSpotInterruption          = "SpotInterruption"
	StopTerminationNotice         = "TerminationNotice"
	StopInfrastructureHealth      = "InfrastructureHealth"
)

// Worker is one worker as the fleet sees it.
type Worker struct {
	ID            string    `json:"id"`
	LastStatus    string    `json:"last_status"`
	DesiredStatus string    `json:"desired_status"`
	Health        string    `json:"health,omitempty"` // HEALTHY, UNHEALTHY, UNKNOWN, or ""
	Addr          string    `json:"addr,omitempty"`   // private IP, when known
	CreatedAt     time.Time `json:"created_at,omitzero"`
	StartedAt     time.Time `json:"started_at,omitzero"`
	StoppedAt     time.Time `json:"stopped_at,omitzero"`
	StopCode      string    `json:"stop_code,omitempty"`
	Reason        string    `json:"reason,omitempty"`
	// ExitCode and ContainerReason are the first container's that has an
	// exit code (ECS reports an OOM kill there, e.g. "OutOfMemoryError:
	// Container killed due to memory usage").
	ExitCode        *int   `json:"exit_code,omitempty"`
	ContainerReason string `json:"container_reason,omitempty"`
}

// Pending reports whether the worker is starting (counts toward capacity
// but does not run jobs yet).
func (w Worker) Pending() bool {
	switch w.LastStatus {
	case StatusProvisioning, StatusPending, StatusActivating:
		return true
	}
	return false
}

// Active reports whether the worker is starting or running and not told to
// stop.
func (w Worker) Active() bool {
	return (w.Pending() || w.LastStatus == StatusRunning) && w.DesiredStatus != StatusStopped
}

// Failure is a part of a provisioning request that did not start.
type Failure struct {
	Count     int    // how many workers this failure covers
	Reason    string // e.g. "RESOURCE:ENI", "Capacity is unavailable at this time"
	Retryable bool   // capacity, ENI and throttling: try again later
}

// Provisioned is the outcome of a Provision call: workers started and parts
// that failed. Started + failed counts add up to what was asked.
type Provisioned struct {
	Workers  []Worker
	Failures []Failure
}

// Driver is what an adapter implements. Fleet validates first: Provision is
// asked for 1..MaxProvision workers, ids are non-empty.
type Driver interface {
	// Provision starts n workers. A whole-call error means none started
	// (errcode.Unavailable or ResourceExhausted when worth retrying).
	Provision(ctx context.Context, n int) (Provisioned, error)
	// List returns the fleet's workers that are not stopped, plus recently
	// stopped ones where the backend still reports them.
	List(ctx context.Context) ([]Worker, error)
	// Stop asks a worker to stop (SIGTERM, then SIGKILL after the stop
	// timeout). An empty reason gets the backend's default ("Task stopped
	// by user"). Stopping a stopped worker succeeds and keeps the first
	// reason; an unknown id is errcode.NotFound.
	Stop(ctx context.Context, id, reason string) error
	Close() error
}

// Fleet is the portable fleet.
type Fleet struct {
	d      Driver
	closed atomic.Bool
}

// New returns a Fleet over d.
func New(d Driver) *Fleet { return &Fleet{d: d} }

func (f *Fleet) check() error {
	if f.closed.Load() {
		return errcode.New(errcode.Closed, "fleet is closed")
	}
	return nil
}

// Provision starts n workers, in calls of at most MaxProvision. It stops at
// the first whole-call error and returns what it started so far with it.
func (f *Fleet) Provision(ctx context.Context, n int) (Provisioned, error) {
	if err := f.check(); err != nil {
		return Provisioned{}, err
	}
	if n < 1 {
		return Provisioned{}, errcode.New(errcode.InvalidArgument, "provision %d workers: need at least 1", n)
	}
	var out Provisioned
	for n > 0 {
		k := min(n, MaxProvision)
		p, err := f.d.Provision(ctx, k)
		out.Workers = append(out.Workers, p.Workers...)
		out.Failures = append(out.Failures, p.Failures...)
		if err != nil {
			return out, err
		}
		n -= k
	}
	return out, nil
}

// List returns the fleet's workers.
func (f *Fleet) List(ctx context.Context) ([]Worker, error) {
	if err := f.check(); err != nil {
		return nil, err
	}
	return f.d.List(ctx)
}

// Stop asks the worker id to stop.
func (f *Fleet) Stop(ctx context.Context, id, reason string) error {
	if err := f.check(); err != nil {
		return err
	}
	if id == "" {
		return errcode.New(errcode.InvalidArgument, "stop worker: empty id")
	}
	return f.d.Stop(ctx, id, reason)
}

// Close closes the driver. It is safe to call more than once.
func (f *Fleet) Close() error {
	if f.closed.Swap(true) {
		return nil
	}
	return f.d.Close()
}

// LocalID is the identity of a worker process on this machine: "host/pid".
// A local worker computes its own identity this way, and procfleet names the
// processes it starts the same way, so owners in jobs match fleet ids.
func LocalID(host string, pid int) string { return fmt.Sprintf("%s/%d", host, pid) }
