// Package procfleet is the embedded profile's fleet: worker processes on
// this machine, with the semantics of package fleet (ECS RunTask's, for
// what jobfleet uses).
//
// Provision starts processes from Options.Command; a registry (an SQLite
// file) records every worker, so List in another process — the reaper, a
// restarted dispatcher — sees the same fleet, and every state change is
// published to Options.Events as an "ECS Task State Change" event
// (fleet.Event.Marshal, source fleet.SourceLocal) that the reaper reads
// exactly as it reads ECS's.
//
// # Identity
//
// A worker's ID is "<hostname>/<pid>", the owner the worker writes into the
// jobs it runs. The pid exists only once the process has started, so the
// worker computes the same string itself with SelfID (hostname plus
// os.Getpid()); the fleet passes nothing for it.
//
// # Mapping to ECS
//
//   - Statuses: a started process is RUNNING at once (there is no
//     PROVISIONING or PENDING phase: the process exists when Provision
//     returns). Stop makes it STOPPING with desired status STOPPED; its exit
//     makes it STOPPED.
//   - Stop sends SIGTERM to the process and, if it has not exited after
//     StopTimeout, SIGKILL to its process group (each worker leads its own
//     group, so a terminal's Ctrl-C reaches only the parent), as ECS stops a
//     container.
//   - Exit codes are the container's: the process's exit status, or 128 +
//     the signal number when a signal killed it (SIGKILL: 137, SIGTERM:
//     143), with the signal in the container reason.
//   - Stop codes: UserInitiated after Stop (also for workers Close stops,
//     with reason "fleet closed"); EssentialContainerExited when the process
//     exited by itself (reason "Essential container in task exited").
//   - Events: one per state change (RUNNING, STOPPING, STOPPED), with
//     detail.version counting up from 1 per worker id, so duplicates share
//     it and a reader can order them. A pid reused by a later worker keeps
//     counting from the earlier worker's version.
//   - Failures: Provision beyond MaxWorkers active workers (counted over
//     the registry, all processes) returns a Failure{Retryable: true,
//     Reason: "local capacity: ..."}, as ECS reports missing capacity; a
//     process that cannot be started is a Failure with the error.
//   - Stopped workers stay in List for an hour, as ECS keeps stopped tasks.
//
// # Differences from ECS
//
//   - No PENDING phase, no health checks (Health is ""), no addresses.
//   - Events are written by the process that observes the change: the one
//     that started the worker and waits for it, or the one that called Stop.
//     If the parent has gone (crashed, or Close with KeepRunning), nobody
//     waits for the worker's exit: the next List or Provision in any process
//     finds the registry saying RUNNING while the process is gone (its pid
//     absent, a zombie, or reused — the start time in /proc/<pid>/stat is
//     compared with the recorded one), marks it STOPPED with reason
//     "process gone" (or the reason of an earlier Stop), no exit code, and
//     publishes the event once (a conditional update of the registry row
//     decides who does).
//   - A published event lost to a failed send is sent again by the next
//     List; one lost to a crash between the registry update and the send is
//     not.
//   - MaxWorkers is checked before starting; concurrent Provision calls in
//     several processes may exceed it by their batches.
//   - A worker on another host (a registry on shared storage) can be listed
//     but not stopped or checked from here.
//   - The pid-reuse guard needs /proc (Linux); elsewhere a pid that exists
//     counts as the worker.
//
// # Lifecycle
//
// Close stops watching. By default it first stops every worker this fleet
// started (SIGTERM, SIGKILL after StopTimeout) and waits for them, so tests
// and `make run` leave nothing behind. With Options.KeepRunning it leaves
// them running (a restarting dispatcher must not kill its fleet) and hands
// the detection of their exits to whoever lists next. Close the fleet
// before the events queue: stopping workers publishes events.
package procfleet

import (
	"cmp"
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/oklog/ulid/v2"

	"github.com/jobfleet/jobfleet/pkg/clock"
	"github.com/jobfleet/jobfleet/pkg/errcode"
	"github.com/jobfleet/jobfleet/pkg/fleet"
	"github.com/jobfleet/jobfleet/pkg/internal/sqlitedb"
	"github.com/jobfleet/jobfleet/pkg/queue"
)

const (
	// DefaultStopTimeout is how long Stop waits after SIGTERM before
	// SIGKILL (ECS's default stopTimeout).
	DefaultStopTimeout = 30 * time.Second
	// DefaultCluster names the fleet in events when Options.Cluster is
	// empty.
	DefaultCluster = "local"
	// Retention is how long a stopped worker stays in List.
	Retention = time.Hour

	groupName     = "procfleet"
	reasonGone    = "process gone"
	reasonExited  = "Essential container in task exited"
	reasonStopped = "Task stopped by user"
	reasonClosed  = "fleet closed"
	// dbTimeout bounds registry writes made outside a caller's context
	// (after a process exits, in Close).
	dbTimeout = 30 * time.Second
	// reapInterval is the fallback for a missed SIGCHLD.
	reapInterval = 2 * time.Second
)

// Options configure a fleet. Everything is optional; a fleet without a
// Command can List and Stop but not Provision (a reaper's view).
type Options struct {
	// Command is a worker's argv; Command[0] is looked up in PATH.
	Command []string
	// Env is added to this process's environment for workers.
	Env []string
	// Dir is the workers' working directory; "" means this process's.
	Dir string
	// Events receives every state change as an "ECS Task State Change"
	// event; nil publishes nothing.
	Events *queue.Queue
	// Cluster names the fleet in events (detail.clusterArn); fleets with
	// different names may share one registry. Default DefaultCluster.
	Cluster string
	// MaxWorkers is the most active workers of the cluster, over all
	// processes sharing the registry. Default: the number of CPUs.
	MaxWorkers int
	// StopTimeout is the time between SIGTERM and SIGKILL. Default
	// DefaultStopTimeout.
	StopTimeout time.Duration
	// KeepRunning makes Close leave workers running. Stdout and Stderr must
	// then be files (or nil), which outlive this process.
	KeepRunning bool
	// Stdout and Stderr receive the workers' output; nil means this
	// process's stderr. A writer that is not an *os.File is fed by a
	// goroutine per worker and stream, one write at a time.
	Stdout, Stderr io.Writer
	// Clock stamps the registry and events. Default: the system clock.
	Clock clock.Clock
	// Logger logs what cannot be returned (a failed event send). Default
	// slog.Default().
	Logger *slog.Logger
}

// SelfID returns the fleet id of this process, fleet.LocalID(hostname, pid):
// "<hostname>/<pid>". A worker started by procfleet calls it to learn the id
// the fleet gave it.
func SelfID() string { return fleet.LocalID(hostname(), os.Getpid()) }

func hostname() string {
	h, err := os.Hostname()
	if err != nil || h == "" {
		return "localhost"
	}
	return h
}

// child is a worker process this fleet started and waits for.
type child struct {
	id    string
	pid   int
	start uint64
	proc  *os.Process
	done  chan struct{} // closed once its end is recorded

	mu       sync.Mutex
	recorded bool        // its row is in the registry: it may be reaped
	exited   bool        // reaped; its pid may now be another process's
	kill     *time.Timer // SIGKILL after StopTimeout, once stopping
	x        exit
}

type driver struct {
	o      Options
	reg    *registry
	db     *sql.DB
	clock  clock.Clock
	log    *slog.Logger
	stdout io.Writer
	stderr io.Writer

	host      string
	boot      string
	selfPID   int
	selfStart uint64
	self      string // host/pid of this process: StartedBy
	token     string // this fleet among others in the process

	provMu   sync.Mutex // one Provision at a time; Close waits for it
	mu       sync.Mutex
	closed   bool
	children map[string]*child
	timers   map[*time.Timer]struct{} // SIGKILLs for other processes' workers

	sigchld  chan os.Signal
	kick     chan struct{}
	quit     chan struct{}
	loopDone chan struct{}
	copies   sync.WaitGroup // output copiers
}

var _ fleet.Driver = (*driver)(nil)

// Open opens the fleet whose registry is the SQLite file at path
// (created if needed; share it between the processes that must see the same
// fleet, e.g. <data dir>/fleet.db). opts nil means defaults.
func Open(ctx context.Context, path string, opts *Options) (*fleet.Fleet, error) {
	var o Options
	if opts != nil {
		o = *opts
	}
	bad := func(format string, args ...any) (*fleet.Fleet, error) {
		return nil, errcode.New(errcode.InvalidArgument, "procfleet: "+format, args...)
	}
	switch {
	case path == "":
		return bad("no registry path")
	case len(o.Command) > 0 && o.Command[0] == "":
		return bad("empty command")
	case o.MaxWorkers < 0:
		return bad("MaxWorkers %d is negative", o.MaxWorkers)
	case o.StopTimeout < 0:
		return bad("StopTimeout %s is negative", o.StopTimeout)
	}
	o.Cluster = cmp.Or(o.Cluster, DefaultCluster)
	o.MaxWorkers = cmp.Or(o.MaxWorkers, runtime.NumCPU())
	o.StopTimeout = cmp.Or(o.StopTimeout, DefaultStopTimeout)
	stdout, stderr := o.Stdout, o.Stderr
	if stdout == nil {
		stdout = os.Stderr
	}
	if stderr == nil {
		stderr = os.Stderr
	}
	_, outFile := stdout.(*os.File)
	_, errFile := stderr.(*os.File)
	if o.KeepRunning && (!outFile || !errFile) {
		return bad("KeepRunning needs files (or nil) as Stdout and Stderr")
	}
	// Writers that are not files share one lock (they may be one writer),
	// so that the copiers of several workers never write at once.
	outLock := new(sync.Mutex)
	if !outFile {
		stdout = &lockedWriter{mu: outLock, w: stdout}
	}
	if !errFile {
		stderr = &lockedWriter{mu: outLock, w: stderr}
	}

	db, err := sqlitedb.Open(ctx, path, schema)
	if err != nil {
		return nil, fmt.Errorf("procfleet: %w", err)
	}
	var tok [8]byte
	_, _ = rand.Read(tok[:]) // crypto/rand.Read never fails
	d := &driver{
		o:        o,
		reg:      &registry{db: db},
		db:       db,
		clock:    clock.Or(o.Clock),
		log:      cmp.Or(o.Logger, slog.Default()),
		stdout:   stdout,
		stderr:   stderr,
		host:     hostname(),
		boot:     bootID(),
		selfPID:  os.Getpid(),
		self:     SelfID(),
		token:    hex.EncodeToString(tok[:]),
		children: map[string]*child{},
		timers:   map[*time.Timer]struct{}{},
		sigchld:  make(chan os.Signal, 1),
		kick:     make(chan struct{}, 1),
		quit:     make(chan struct{}),
		loopDone: make(chan struct{}),
	}
	d.selfStart, _, _ = procInfo(d.selfPID)
	signal.Notify(d.sigchld, syscall.SIGCHLD)
	go d.loop()
	return fleet.New(d), nil
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func (d *driver) isClosed() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.closed
}

func closedErr() error { return errcode.New(errcode.Closed, "procfleet: fleet is closed") }

// detach returns a context for registry writes and sends that must not be
// cut short once a state change is under way, bounded on its own.
func detach(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), dbTimeout)
}

func (d *driver) Provision(ctx context.Context, n int) (fleet.Provisioned, error) {
	if err := ctx.Err(); err != nil {
		return fleet.Provisioned{}, fmt.Errorf("provision workers: %w", err)
	}
	if n < 1 {
		return fleet.Provisioned{}, errcode.New(errcode.InvalidArgument, "provision %d workers: need at least 1", n)
	}
	if len(d.o.Command) == 0 {
		return fleet.Provisioned{}, errcode.New(errcode.FailedPrecondition, "provision workers: this fleet has no worker command")
	}
	d.provMu.Lock()
	defer d.provMu.Unlock()
	if d.isClosed() {
		return fleet.Provisioned{}, closedErr()
	}
	rows, err := d.refresh(ctx)
	if err != nil {
		return fleet.Provisioned{}, fmt.Errorf("provision workers: %w", err)
	}
	active := 0
	for _, r := range rows {
		if r.LastStatus != fleet.StatusStopped {
			active++
		}
	}
	k := max(0, min(n, d.o.MaxWorkers-active))
	var out fleet.Provisioned
	for i := range k {
		if err := ctx.Err(); err != nil {
			return out, fmt.Errorf("provision workers: %w", err)
		}
		w, err := d.start(ctx)
		if err != nil {
			out.Failures = append(out.Failures, fleet.Failure{Count: k - i, Reason: err.Error(), Retryable: errcode.Retryable(err)})
			break
		}
		out.Workers = append(out.Workers, w)
	}
	if k < n {
		out.Failures = append(out.Failures, fleet.Failure{
			Count:     n - k,
			Reason:    fmt.Sprintf("local capacity: %d of %d workers active", active, d.o.MaxWorkers),
			Retryable: true,
		})
	}
	return out, nil
}

// output returns the file a worker writes a stream to: w itself, or the
// write end of a pipe whose read end (returned too) feeds w.
func output(w io.Writer) (childEnd, parentEnd *os.File, err error) {
	if f, ok := w.(*os.File); ok {
		return f, nil, nil
	}
	r, wf, err := os.Pipe()
	if err != nil {
		return nil, nil, err
	}
	return wf, r, nil
}

// start starts one worker, records it and publishes its RUNNING event.
func (d *driver) start(ctx context.Context) (fleet.Worker, error) {
	cmd := exec.Command(d.o.Command[0], d.o.Command[1:]...)
	cmd.Env = append(os.Environ(), d.o.Env...)
	cmd.Dir = d.o.Dir
	// Its own process group: signals for this process's terminal do not
	// reach workers, and SIGKILL reaches the worker's own children.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	type copier struct {
		from *os.File // the parent's end of a pipe
		to   io.Writer
	}
	var copiers []copier
	var childEnds []*os.File // closed here once the child has them
	closeAll := func() {
		for _, c := range copiers {
			c.from.Close()
		}
		for _, f := range childEnds {
			f.Close()
		}
	}
	for _, s := range []struct {
		w   io.Writer
		set func(*os.File)
	}{{d.stdout, func(f *os.File) { cmd.Stdout = f }}, {d.stderr, func(f *os.File) { cmd.Stderr = f }}} {
		ce, pe, err := output(s.w)
		if err != nil {
			closeAll()
			return fleet.Worker{}, fmt.Errorf("start worker: output pipe: %w", err)
		}
		s.set(ce)
		if pe != nil {
			copiers, childEnds = append(copiers, copier{pe, s.w}), append(childEnds, ce)
		}
	}
	created := d.clock.Now().UTC()
	if err := cmd.Start(); err != nil {
		closeAll()
		code := errcode.FailedPrecondition
		if errors.Is(err, syscall.EAGAIN) || errors.Is(err, syscall.ENOMEM) {
			code = errcode.ResourceExhausted
		}
		return fleet.Worker{}, errcode.Wrap(code, err, "start worker %q", d.o.Command[0])
	}
	for _, f := range childEnds {
		f.Close()
	}
	for _, c := range copiers {
		// Ends when the worker and any children it gave the pipe exit.
		d.copies.Go(func() {
			_, _ = io.Copy(c.to, c.from)
			c.from.Close()
		})
	}

	pid := cmd.Process.Pid
	start, _, _ := procInfo(pid) // a zombie's stat is still there; 0 if unknown
	c := &child{id: fleet.LocalID(d.host, pid), pid: pid, start: start, proc: cmd.Process, done: make(chan struct{})}
	// Known before its row exists, so List in this process leaves it to us;
	// not reaped before its row exists, so its end is recorded.
	d.mu.Lock()
	d.children[c.id] = c
	d.mu.Unlock()

	r := row{
		ID: c.id, Cluster: d.o.Cluster, Host: d.host, PID: pid, ProcStart: start, BootID: d.boot,
		OwnerPID: d.selfPID, OwnerStart: d.selfStart, OwnerToken: d.token, StartedBy: d.self,
		LastStatus: fleet.StatusRunning, DesiredStatus: fleet.StatusRunning,
		CreatedAt: created, StartedAt: d.clock.Now().UTC(),
	}
	wctx, cancel := detach(ctx)
	defer cancel()
	rows, err := d.reg.insertRunning(wctx, r, r.StartedAt)
	if err != nil {
		// Unrecorded, it must not run: nobody could see or stop it.
		_ = syscall.Kill(-pid, syscall.SIGKILL)
		_, _ = cmd.Process.Wait()
		d.mu.Lock()
		delete(d.children, c.id)
		d.mu.Unlock()
		close(c.done)
		return fleet.Worker{}, fmt.Errorf("start worker: %w", err)
	}
	c.mu.Lock()
	c.recorded = true
	c.mu.Unlock()
	d.wake()
	d.publish(wctx, rows...)
	return rows[len(rows)-1].worker(), nil
}

func (d *driver) wake() {
	select {
	case d.kick <- struct{}{}:
	default:
	}
}

// loop reaps this fleet's children when they exit.
func (d *driver) loop() {
	defer close(d.loopDone)
	tick := time.NewTicker(reapInterval)
	defer tick.Stop()
	for {
		select {
		case <-d.quit:
			return
		case <-d.sigchld:
		case <-d.kick:
		case <-tick.C:
		}
		d.reapAll()
	}
}

func (d *driver) reapAll() {
	d.mu.Lock()
	kids := make([]*child, 0, len(d.children))
	for _, c := range d.children {
		kids = append(kids, c)
	}
	d.mu.Unlock()
	for _, c := range kids {
		if d.reap(c) {
			d.recordExit(c)
		}
	}
}

// reap collects c's exit status if it has exited.
func (d *driver) reap(c *child) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.exited || !c.recorded {
		return false
	}
	var ws syscall.WaitStatus
	for {
		pid, err := syscall.Wait4(c.pid, &ws, syscall.WNOHANG, nil)
		if errors.Is(err, syscall.EINTR) {
			continue
		}
		if err == nil && pid == 0 {
			return false // still running
		}
		c.exited = true
		if c.kill != nil {
			c.kill.Stop()
		}
		c.x = exit{stopCode: fleet.StopEssentialContainerExited, reason: reasonExited}
		if err == nil {
			switch {
			case ws.Exited():
				code := ws.ExitStatus()
				c.x.code = &code
			case ws.Signaled():
				code := 128 + int(ws.Signal())
				c.x.code = &code
				c.x.containerReason = "killed by signal " + strconv.Itoa(int(ws.Signal())) + " (" + ws.Signal().String() + ")"
			}
		} else {
			// Someone else in this process reaped it: the status is lost.
			c.x.containerReason = "exit status unknown: " + err.Error()
		}
		return true
	}
}

func (d *driver) recordExit(c *child) {
	ctx, cancel := context.WithTimeout(context.Background(), dbTimeout) // the loop has no caller
	defer cancel()
	r, ok, err := d.reg.markStopped(ctx, c.id, c.start, c.x, d.clock.Now().UTC())
	if err != nil {
		d.log.Error("procfleet: record a worker's exit", "owner", c.id, "err", err)
	} else if ok {
		d.publish(ctx, r)
	}
	_ = c.proc.Release()
	d.mu.Lock()
	delete(d.children, c.id)
	d.mu.Unlock()
	close(c.done)
}

// publish sends the events of rows whose publishing the caller claimed,
// and gives the claim back when a send fails.
func (d *driver) publish(ctx context.Context, rows ...row) {
	if d.o.Events == nil {
		return
	}
	for _, r := range rows {
		e := r.event(ulid.Make().String(), d.clock.Now().UTC())
		res, err := d.o.Events.Send(ctx, queue.SendEntry{Body: e.Marshal()})
		if err == nil && len(res) == 1 {
			err = res[0].Err
		}
		if err != nil {
			d.log.Warn("procfleet: publish a worker event; the next List retries", "owner", r.ID, "version", r.Version, "err", err)
			if uerr := d.reg.unclaim(ctx, r); uerr != nil {
				d.log.Error("procfleet: give back a worker event", "owner", r.ID, "err", uerr)
			}
		}
	}
}

func (d *driver) ownChild(id string, start uint64) *child {
	d.mu.Lock()
	defer d.mu.Unlock()
	if c := d.children[id]; c != nil && c.start == start {
		return c
	}
	return nil
}

// alive reports whether the process recorded as (pid, start, boot) still
// runs: it exists, is not a zombie and started when recorded.
func (d *driver) alive(pid int, start uint64, boot string) bool {
	if pid <= 0 || (boot != "" && d.boot != "" && boot != d.boot) {
		return false
	}
	st, state, err := procInfo(pid)
	if err != nil {
		return !errors.Is(err, fs.ErrNotExist) // unreadable: assume it runs
	}
	if state == 'Z' || state == 'X' {
		return false
	}
	return start == 0 || st == 0 || st == start
}

// gone reports whether r's process has ended with nobody left to record it.
func (d *driver) gone(r row) bool {
	if r.LastStatus == fleet.StatusStopped || r.Host != d.host || d.ownChild(r.ID, r.ProcStart) != nil {
		return false
	}
	if d.alive(r.PID, r.ProcStart, r.BootID) {
		return false
	}
	// Another fleet waits for it and will record its exit code.
	if r.OwnerPID != 0 && r.OwnerToken != d.token && d.alive(r.OwnerPID, r.OwnerStart, r.BootID) {
		return false
	}
	return true
}

// markGone records that r's process is gone; it returns the new row, or r
// re-read when another process recorded it first.
func (d *driver) markGone(ctx context.Context, r row) (row, error) {
	wctx, cancel := detach(ctx)
	defer cancel()
	x := exit{stopCode: fleet.StopEssentialContainerExited, reason: reasonGone}
	nr, ok, err := d.reg.markStopped(wctx, r.ID, r.ProcStart, x, d.clock.Now().UTC())
	if err != nil {
		return r, err
	}
	if ok {
		d.publish(wctx, nr)
		return nr, nil
	}
	nr, found, err := d.reg.get(wctx, r.ID)
	if err != nil || !found {
		return r, err
	}
	return nr, nil
}

// refresh prunes old stopped workers, records the ends nobody recorded,
// retries unsent events, and returns the cluster's workers.
func (d *driver) refresh(ctx context.Context) ([]row, error) {
	if err := d.reg.prune(ctx, d.o.Cluster, d.clock.Now().Add(-Retention)); err != nil {
		return nil, err
	}
	rows, err := d.reg.list(ctx, d.o.Cluster)
	if err != nil {
		return nil, err
	}
	for i, r := range rows {
		if d.gone(r) {
			if rows[i], err = d.markGone(ctx, r); err != nil {
				return nil, err
			}
		}
		if r := rows[i]; r.Published < r.Version && d.o.Events != nil {
			ok, err := d.reg.claim(ctx, r)
			if err != nil {
				return nil, err
			}
			if ok {
				wctx, cancel := detach(ctx)
				d.publish(wctx, r)
				cancel()
			}
		}
	}
	return rows, nil
}

func (d *driver) List(ctx context.Context) ([]fleet.Worker, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("list workers: %w", err)
	}
	if d.isClosed() {
		return nil, closedErr()
	}
	rows, err := d.refresh(ctx)
	if err != nil {
		return nil, fmt.Errorf("list workers: %w", err)
	}
	out := make([]fleet.Worker, len(rows))
	for i, r := range rows {
		out[i] = r.worker()
	}
	return out, nil
}

func (d *driver) Stop(ctx context.Context, id, reason string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("stop worker %s: %w", id, err)
	}
	if d.isClosed() {
		return closedErr()
	}
	if id == "" {
		return errcode.New(errcode.InvalidArgument, "stop worker: empty id")
	}
	reason = cmp.Or(reason, reasonStopped)
	r, found, err := d.reg.get(ctx, id)
	if err != nil {
		return fmt.Errorf("stop worker %s: %w", id, err)
	}
	if !found || r.Cluster != d.o.Cluster {
		return errcode.New(errcode.NotFound, "stop worker %s: no such worker in fleet %s", id, d.o.Cluster)
	}
	if r.LastStatus == fleet.StatusStopped {
		return nil
	}
	if r.Host != d.host {
		return errcode.New(errcode.FailedPrecondition, "stop worker %s: it runs on host %s, not here", id, r.Host)
	}
	if d.gone(r) {
		_, err := d.markGone(ctx, r)
		return err
	}
	wctx, cancel := detach(ctx)
	defer cancel()
	s, ok, err := d.reg.markStopping(wctx, id, reason, d.clock.Now().UTC())
	if err != nil {
		return fmt.Errorf("stop worker %s: %w", id, err)
	}
	if !ok {
		return nil // stopping or stopped already
	}
	d.publish(wctx, s)
	d.signalStop(s, true)
	return nil
}

// signalStop sends SIGTERM (if term) to r's process and arms its SIGKILL.
func (d *driver) signalStop(r row, term bool) {
	if c := d.ownChild(r.ID, r.ProcStart); c != nil {
		c.mu.Lock()
		defer c.mu.Unlock()
		if c.exited {
			return
		}
		if term {
			_ = c.proc.Signal(syscall.SIGTERM) // via pidfd where available: never a reused pid
		}
		if c.kill == nil {
			c.kill = time.AfterFunc(d.o.StopTimeout, func() {
				c.mu.Lock()
				defer c.mu.Unlock()
				if !c.exited { // not reaped: the pid and group are still its own
					_ = syscall.Kill(-c.pid, syscall.SIGKILL)
					_ = c.proc.Signal(syscall.SIGKILL) // if it left its group
				}
			})
		}
		return
	}
	// Another process's worker on this host: signal by pid, checked
	// against the recorded start time first.
	if !d.alive(r.PID, r.ProcStart, r.BootID) {
		return
	}
	if term {
		_ = syscall.Kill(r.PID, syscall.SIGTERM)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	var t *time.Timer
	t = time.AfterFunc(d.o.StopTimeout, func() {
		if d.alive(r.PID, r.ProcStart, r.BootID) {
			_ = syscall.Kill(r.PID, syscall.SIGKILL)
		}
		d.mu.Lock()
		delete(d.timers, t)
		d.mu.Unlock()
	})
	d.timers[t] = struct{}{}
}

func (d *driver) Close() error {
	d.provMu.Lock()
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		d.provMu.Unlock()
		return nil
	}
	d.closed = true
	kids := make([]*child, 0, len(d.children))
	for _, c := range d.children {
		kids = append(kids, c)
	}
	d.mu.Unlock()
	d.provMu.Unlock()

	ctx, cancel := context.WithTimeout(context.Background(), dbTimeout) // Close takes no context
	defer cancel()
	var errs []error
	if d.o.KeepRunning {
		close(d.quit)
		<-d.loopDone
		for _, c := range kids {
			c.mu.Lock()
			if c.kill != nil {
				c.kill.Stop()
			}
			c.mu.Unlock()
			_ = c.proc.Release()
		}
		errs = append(errs, d.reg.disown(ctx, d.token))
	} else {
		for _, c := range kids {
			s, ok, err := d.reg.markStopping(ctx, c.id, reasonClosed, d.clock.Now().UTC())
			if err != nil {
				errs = append(errs, err)
			}
			if ok {
				d.publish(ctx, s)
			}
			// Stopping already (a Stop came first): arm the SIGKILL only.
			d.signalStop(row{ID: c.id, ProcStart: c.start}, ok || err != nil)
		}
		for _, c := range kids {
			<-c.done
		}
		close(d.quit)
		<-d.loopDone
	}
	signal.Stop(d.sigchld)
	d.mu.Lock()
	for t := range d.timers {
		t.Stop()
	}
	d.mu.Unlock()
	d.copies.Wait()
	errs = append(errs, sqlitedb.MapErr(d.db.Close(), "close the fleet registry"))
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("procfleet: close: %w", err)
	}
	return nil
}
