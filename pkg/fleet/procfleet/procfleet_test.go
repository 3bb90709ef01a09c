//go:build linux

package procfleet_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/stretchr/testify/require"

	"github.com/jobfleet/jobfleet/pkg/clock"
	"github.com/jobfleet/jobfleet/pkg/errcode"
	"github.com/jobfleet/jobfleet/pkg/fleet"
	"github.com/jobfleet/jobfleet/pkg/fleet/procfleet"
	"github.com/jobfleet/jobfleet/pkg/queue"
)

func TestWorkerIDIsSelfID(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	// provision waits for "ready <id>", printed by the worker from SelfID.
	w := b.provision(t, b.fleet, 1)[0]
	host, err := os.Hostname()
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(w.ID, host+"/"), "id %s", w.ID)
	require.NotEqual(t, procfleet.SelfID(), w.ID)
}

func TestRunningEventShape(t *testing.T) {
	t.Parallel()
	b := setup(t, func(o *procfleet.Options) { o.Cluster = "test-cluster" })
	w := b.provision(t, b.fleet, 1)[0]
	e := b.event(t, "RUNNING", func(e fleet.Event) bool { return e.WorkerID == w.ID })
	require.Equal(t, fleet.SourceLocal, e.Source)
	require.Equal(t, fleet.StatusRunning, e.LastStatus)
	require.Equal(t, fleet.StatusRunning, e.DesiredStatus)
	require.Equal(t, "test-cluster", e.Cluster)
	require.Equal(t, "procfleet", e.Group)
	require.Equal(t, procfleet.SelfID(), e.StartedBy)
	require.Equal(t, int64(1), e.Version)
	require.True(t, w.CreatedAt.Equal(e.CreatedAt))
	require.True(t, w.StartedAt.Equal(e.StartedAt))
	require.Nil(t, e.ExitCode)
}

func TestStopExitsCleanly(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	id := b.provision(t, b.fleet, 1)[0].ID
	require.NoError(t, b.fleet.Stop(t.Context(), id, "drain"))
	b.out.await(t, "stopping "+id)
	e := b.event(t, "STOPPED", stoppedOf(id))
	require.NotNil(t, e.ExitCode)
	require.Equal(t, 0, *e.ExitCode)
	require.Equal(t, fleet.StopUserInitiated, e.StopCode)
	require.Equal(t, "drain", e.Reason)
	require.Empty(t, e.ContainerReason)
	require.False(t, e.StoppingAt.IsZero())
	require.False(t, e.StoppedAt.Before(e.StoppingAt))

	// RUNNING v1, STOPPING v2, STOPPED v3.
	b.drainEvents(t)
	var got []string
	for _, e := range b.eventsOf(id) {
		got = append(got, e.LastStatus+"/"+e.DesiredStatus)
		require.Equal(t, int64(len(got)), e.Version)
	}
	require.Equal(t, []string{"RUNNING/RUNNING", "STOPPING/STOPPED", "STOPPED/STOPPED"}, got)

	w := listed(t, b.fleet)[id]
	require.Equal(t, fleet.StatusStopped, w.LastStatus)
	require.Equal(t, "drain", w.Reason)
	require.False(t, w.Active())
}

func TestStopTimeoutKills(t *testing.T) {
	t.Parallel()
	b := setup(t, func(o *procfleet.Options) {
		// Long enough for the worker to print that it ignores SIGTERM on
		// a loaded machine.
		o.StopTimeout = 2 * time.Second
		o.Env = append(o.Env, envIgnoreTerm+"=1")
	})
	id := b.provision(t, b.fleet, 1)[0].ID
	require.NoError(t, b.fleet.Stop(t.Context(), id, "must die"))
	b.out.await(t, "ignoring SIGTERM "+id)
	e := b.event(t, "STOPPED", stoppedOf(id))
	require.NotNil(t, e.ExitCode)
	require.Equal(t, 137, *e.ExitCode, "SIGKILL as a container runtime reports it")
	require.Contains(t, e.ContainerReason, "signal 9")
	require.Equal(t, fleet.StopUserInitiated, e.StopCode)
}

func TestExitOnItsOwn(t *testing.T) {
	t.Parallel()
	b := setup(t, func(o *procfleet.Options) { o.Env = append(o.Env, envExit+"=5") })
	p, err := b.fleet.Provision(t.Context(), 1)
	require.NoError(t, err)
	id := p.Workers[0].ID
	e := b.event(t, "STOPPED", stoppedOf(id))
	require.Equal(t, 5, *e.ExitCode)
	require.Equal(t, fleet.StopEssentialContainerExited, e.StopCode)
	require.Equal(t, "Essential container in task exited", e.Reason)
	require.Equal(t, fleet.StatusStopped, e.DesiredStatus)
	// Stopping it now is not an error.
	require.NoError(t, b.fleet.Stop(t.Context(), id, "late"))
}

func TestCrashBySignal(t *testing.T) {
	t.Parallel()
	// A Go program dies of SIGHUP or SIGINT (the others it catches), unless
	// it inherited the signal ignored (as under nohup, or SIGINT in a
	// background job of a shell without job control): then so does the
	// worker, and it would not die.
	sig := syscall.SIGHUP
	if signal.Ignored(sig) {
		sig = syscall.SIGINT
	}
	if signal.Ignored(sig) {
		t.Skip("SIGHUP and SIGINT are ignored in this process and so in its workers")
	}
	b := setup(t, nil)
	id := b.provision(t, b.fleet, 1)[0].ID
	require.NoError(t, syscall.Kill(pidOf(t, id), sig))
	e := b.event(t, "STOPPED", stoppedOf(id))
	require.Equal(t, 128+int(sig), *e.ExitCode)
	require.Equal(t, fleet.StopEssentialContainerExited, e.StopCode)
}

func TestCapacity(t *testing.T) {
	t.Parallel()
	b := setup(t, func(o *procfleet.Options) { o.MaxWorkers = 2 })
	p, err := b.fleet.Provision(t.Context(), 3)
	require.NoError(t, err)
	require.Len(t, p.Workers, 2)
	require.Len(t, p.Failures, 1)
	require.Equal(t, 1, p.Failures[0].Count)
	require.True(t, p.Failures[0].Retryable)
	require.True(t, strings.HasPrefix(p.Failures[0].Reason, "local capacity: "), p.Failures[0].Reason)

	p2, err := b.fleet.Provision(t.Context(), 1)
	require.NoError(t, err)
	require.Empty(t, p2.Workers)
	require.Equal(t, []fleet.Failure{{Count: 1, Reason: "local capacity: 2 of 2 workers active", Retryable: true}}, p2.Failures)

	// A stopped worker frees its place.
	id := p.Workers[0].ID
	require.NoError(t, b.fleet.Stop(t.Context(), id, "make room"))
	b.event(t, "STOPPED", stoppedOf(id))
	p3, err := b.fleet.Provision(t.Context(), 1)
	require.NoError(t, err)
	require.Len(t, p3.Workers, 1)
}

func TestStartFailure(t *testing.T) {
	t.Parallel()
	b := setup(t, func(o *procfleet.Options) { o.Command = []string{filepath.Join(t.TempDir(), "no-such-binary")} })
	p, err := b.fleet.Provision(t.Context(), 2)
	require.NoError(t, err)
	require.Empty(t, p.Workers)
	require.Len(t, p.Failures, 1)
	require.Equal(t, 2, p.Failures[0].Count)
	require.False(t, p.Failures[0].Retryable)
	require.Contains(t, p.Failures[0].Reason, "no-such-binary")
	require.Empty(t, listed(t, b.fleet))
}

func TestOpenValidation(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	reg := filepath.Join(dir, "fleet.db")
	for name, c := range map[string]struct {
		path string
		o    *procfleet.Options
	}{
		"no path":            {"", nil},
		"empty command":      {reg, &procfleet.Options{Command: []string{""}}},
		"negative max":       {reg, &procfleet.Options{MaxWorkers: -1}},
		"negative timeout":   {reg, &procfleet.Options{StopTimeout: -time.Second}},
		"keep with a buffer": {reg, &procfleet.Options{KeepRunning: true, Stdout: &bytes.Buffer{}}},
	} {
		_, err := procfleet.Open(t.Context(), c.path, c.o)
		require.ErrorIs(t, err, errcode.InvalidArgument, name)
	}
	// No command: List and Stop work, Provision does not.
	f, err := procfleet.Open(t.Context(), reg, nil)
	require.NoError(t, err)
	defer f.Close()
	_, err = f.Provision(t.Context(), 1)
	require.ErrorIs(t, err, errcode.FailedPrecondition)
	ws, err := f.List(t.Context())
	require.NoError(t, err)
	require.Empty(t, ws)
}

func TestCloseStopsWorkers(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	ws := b.provision(t, b.fleet, 3)
	require.NoError(t, b.fleet.Stop(t.Context(), ws[0].ID, "before close"))
	require.NoError(t, b.fleet.Close())
	for _, w := range ws {
		require.ErrorIs(t, syscall.Kill(pidOf(t, w.ID), 0), syscall.ESRCH, "worker %s still exists", w.ID)
	}
	for i, w := range ws {
		e := b.event(t, "STOPPED", stoppedOf(w.ID))
		require.Equal(t, fleet.StopUserInitiated, e.StopCode)
		require.NotNil(t, e.ExitCode)
		if i == 0 {
			require.Equal(t, "before close", e.Reason)
		} else {
			require.Equal(t, "fleet closed", e.Reason)
		}
	}
	// The registry agrees, seen from a new fleet.
	other := b.open(t, procfleet.Options{})
	for _, w := range ws {
		require.Equal(t, fleet.StatusStopped, listed(t, other)[w.ID].LastStatus)
	}
}

func TestSharedRegistry(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	id := b.provision(t, b.fleet, 1)[0].ID
	// Another process's view: no command, same registry, same events.
	viewer := b.open(t, procfleet.Options{Events: b.events})
	w, ok := listed(t, viewer)[id]
	require.True(t, ok)
	require.True(t, w.Active())

	// It can stop the worker; the owner, which waits for it, records the
	// exit code.
	require.NoError(t, viewer.Stop(t.Context(), id, "from elsewhere"))
	b.out.await(t, "stopping "+id)
	e := b.event(t, "STOPPED", stoppedOf(id))
	require.NotNil(t, e.ExitCode)
	require.Equal(t, 0, *e.ExitCode)
	require.Equal(t, fleet.StopUserInitiated, e.StopCode)
	require.Equal(t, "from elsewhere", e.Reason)
	require.Equal(t, fleet.StatusStopped, listed(t, viewer)[id].LastStatus)

	// A fleet of another cluster on the same registry does not see it.
	stranger := b.open(t, procfleet.Options{Cluster: "other"})
	require.Empty(t, listed(t, stranger))
	require.ErrorIs(t, stranger.Stop(t.Context(), id, "x"), errcode.NotFound)
}

// countStopped counts the STOPPED events of id in the queue, all of them.
func countStopped(t *testing.T, b *bundle, id string) int {
	b.drainEvents(t)
	n := 0
	for _, e := range b.eventsOf(id) {
		if e.Stopped() {
			n++
		}
	}
	return n
}

func TestKeepRunningThenLostExit(t *testing.T) {
	t.Parallel()
	b := setup(t, func(o *procfleet.Options) { o.KeepRunning = true; o.Stdout = nil })
	w := b.provision2(t)
	pid := pidOf(t, w.ID)
	require.NoError(t, b.fleet.Close())
	// Still running, and shown so by a fleet in "another process".
	require.NoError(t, syscall.Kill(pid, 0))
	a := b.open(t, procfleet.Options{Events: b.events})
	require.True(t, listed(t, a)[w.ID].Active())

	// The worker dies with nobody waiting for it (it stays a zombie of this
	// process, which no longer watches it).
	require.NoError(t, syscall.Kill(pid, syscall.SIGKILL))
	waitZombie(t, pid)
	c := b.open(t, procfleet.Options{Events: b.events})
	var wg sync.WaitGroup
	errs := make(chan error, 2)
	for _, f := range []*fleet.Fleet{a, c} {
		wg.Go(func() {
			ws, err := f.List(t.Context())
			for _, x := range ws {
				if x.ID == w.ID && x.LastStatus != fleet.StatusStopped {
					err = errors.New("still listed as " + x.LastStatus)
				}
			}
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	got := listed(t, a)[w.ID]
	require.Equal(t, fleet.StatusStopped, got.LastStatus)
	require.Equal(t, "process gone", got.Reason)
	require.Equal(t, fleet.StopEssentialContainerExited, got.StopCode)
	require.Equal(t, 1, countStopped(t, b, w.ID), "two listers must publish the STOPPED event once")
	e := b.event(t, "STOPPED", stoppedOf(w.ID))
	require.Nil(t, e.ExitCode, "nobody saw the exit status")

	var ws syscall.WaitStatus
	_, err := syscall.Wait4(pid, &ws, 0, nil)
	require.NoError(t, err)
}

// provision2 provisions one worker for a fleet whose output is not
// watched: it waits for the RUNNING event instead.
func (b *bundle) provision2(t *testing.T) fleet.Worker {
	p, err := b.fleet.Provision(t.Context(), 1)
	require.NoError(t, err)
	require.Len(t, p.Workers, 1)
	b.event(t, "RUNNING", func(e fleet.Event) bool { return e.WorkerID == p.Workers[0].ID })
	return p.Workers[0]
}

// waitZombie waits until the child pid has exited, without reaping it:
// waitid(P_PID, pid, WEXITED|WNOWAIT).
func waitZombie(t *testing.T, pid int) {
	t.Helper()
	const pPID, wNOWAIT = 1, 0x01000000
	var info [128]byte // siginfo_t
	for {
		_, _, errno := syscall.Syscall6(syscall.SYS_WAITID, pPID, uintptr(pid), uintptr(unsafe.Pointer(&info[0])), syscall.WEXITED|wNOWAIT, 0, 0)
		if errno == syscall.EINTR {
			continue
		}
		require.Zero(t, errno, "waitid: %v", errno)
		return
	}
}

func TestParentCrash(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	self, err := os.Executable()
	require.NoError(t, err)
	parent := exec.Command(self)
	parent.Env = append(os.Environ(), envRole+"=parent", envRegistry+"="+b.registry, envCtl+"="+b.ctl, "GORACE=atexit_sleep_ms=0")
	stdin, err := parent.StdinPipe()
	require.NoError(t, err)
	defer stdin.Close()
	stdout, err := parent.StdoutPipe()
	require.NoError(t, err)
	parent.Stderr = os.Stderr
	require.NoError(t, parent.Start())
	line, err := bufio.NewReader(stdout).ReadString('\n')
	require.NoError(t, err)
	id, ok := strings.CutPrefix(strings.TrimSpace(line), "worker ")
	require.True(t, ok, "parent said %q", line)
	pid := pidOf(t, id)
	// If the test fails early: Stop checks the pid's start time first.
	t.Cleanup(func() { _ = b.fleet.Stop(context.Background(), id, "cleanup") })

	// The parent dies; its worker runs on, owned by nobody.
	require.NoError(t, parent.Process.Kill())
	_ = parent.Wait()
	require.True(t, listed(t, b.fleet)[id].Active(), "a live worker of a dead parent is active")

	// Stopped from here: SIGTERM by pid. Its exit is nobody's child exit
	// here, so the next List finds the process gone, keeping the reason.
	require.NoError(t, b.fleet.Stop(t.Context(), id, "orphan"))
	e := b.event(t, "STOPPING", func(e fleet.Event) bool { return e.WorkerID == id && e.Stopping() })
	require.Equal(t, "orphan", e.Reason)
	deadline := time.Now().Add(30 * time.Second)
	for listed(t, b.fleet)[id].LastStatus != fleet.StatusStopped {
		require.True(t, time.Now().Before(deadline), "the orphan's exit was never noticed")
		waitGone(t, pid)
	}
	e = b.event(t, "STOPPED", stoppedOf(id))
	require.Equal(t, fleet.StopUserInitiated, e.StopCode)
	require.Equal(t, "orphan", e.Reason)
	require.Nil(t, e.ExitCode)
}

// waitGone waits until pid no longer runs (gone, or a zombie). The process
// is not this test's child, so it cannot wait for it: it watches /proc.
func waitGone(t *testing.T, pid int) {
	t.Helper()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
		if err != nil {
			return
		}
		if i := bytes.LastIndexByte(b, ')'); i > 0 && len(b) > i+2 && (b[i+2] == 'Z' || b[i+2] == 'X') {
			return
		}
		select {
		case <-tick.C:
		case <-t.Context().Done():
			t.Fatal("test ended waiting for an orphan to exit")
		}
	}
}

func TestRetention(t *testing.T) {
	t.Parallel()
	clk := clock.NewFake(time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC))
	b := setup(t, func(o *procfleet.Options) { o.Clock = clk })
	id := b.provision(t, b.fleet, 1)[0].ID
	require.NoError(t, b.fleet.Stop(t.Context(), id, "done"))
	e := b.event(t, "STOPPED", stoppedOf(id))
	require.True(t, e.StoppedAt.Equal(clk.Now()))
	clk.Advance(procfleet.Retention - time.Second)
	require.Contains(t, listed(t, b.fleet), id, "a stopped worker stays listed for the retention")
	clk.Advance(2 * time.Second)
	require.NotContains(t, listed(t, b.fleet), id)
	require.ErrorIs(t, b.fleet.Stop(t.Context(), id, "gone"), errcode.NotFound)
}

// failingDriver fails the first sends of a queue.
type failingDriver struct {
	queue.Driver
	mu    sync.Mutex
	fails int
}

func (f *failingDriver) Send(ctx context.Context, entries []queue.SendEntry) ([]queue.SendResult, error) {
	f.mu.Lock()
	fail := f.fails > 0
	if fail {
		f.fails--
	}
	f.mu.Unlock()
	if fail {
		return nil, errcode.New(errcode.Unavailable, "injected send failure")
	}
	return f.Driver.Send(ctx, entries)
}

func TestFailedSendIsRetriedByList(t *testing.T) {
	t.Parallel()
	var fd *failingDriver
	b := setup(t, func(o *procfleet.Options) {
		fd = &failingDriver{Driver: o.Events.Driver(), fails: 1}
		o.Events = queue.New(fd)
	})
	p, err := b.fleet.Provision(t.Context(), 1)
	require.NoError(t, err)
	id := p.Workers[0].ID
	b.drainEvents(t)
	require.Empty(t, b.eventsOf(id), "the first send failed")
	_ = listed(t, b.fleet)
	e := b.event(t, "RUNNING", func(e fleet.Event) bool { return e.WorkerID == id })
	require.Equal(t, int64(1), e.Version)
	// Sent once: further Lists do not send it again.
	_ = listed(t, b.fleet)
	b.drainEvents(t)
	require.Len(t, b.eventsOf(id), 1)
}

func TestOutputGoesToWriters(t *testing.T) {
	t.Parallel()
	errOut := newLines()
	b := setup(t, func(o *procfleet.Options) { o.Stderr = errOut })
	id := b.provision(t, b.fleet, 2)[0].ID
	require.NoError(t, b.fleet.Stop(t.Context(), id, "bye"))
	b.out.await(t, "stopping "+id)
	require.NoError(t, b.fleet.Close())
	errOut.mu.Lock()
	defer errOut.mu.Unlock()
	require.Empty(t, errOut.all, "workers wrote to stderr")
}
