package procfleet_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/jobfleet/jobfleet/pkg/fleet"
	"github.com/jobfleet/jobfleet/pkg/fleet/procfleet"
	"github.com/jobfleet/jobfleet/pkg/queue"
	"github.com/jobfleet/jobfleet/pkg/queue/sqlitequeue"
)

// The test binary doubles as the worker (and as a fleet's parent process):
// an environment variable selects a tiny main instead of the tests.
const (
	envRole       = "PROCFLEET_TEST_ROLE"        // "worker" or "parent"
	envCtl        = "PROCFLEET_TEST_CTL"         // directory of crash files, named by pid
	envExit       = "PROCFLEET_TEST_EXIT"        // exit at once with this code
	envIgnoreTerm = "PROCFLEET_TEST_IGNORE_TERM" // "1": ignore SIGTERM
	envRegistry   = "PROCFLEET_TEST_REGISTRY"    // parent: the registry path
	envOrphanOK   = "PROCFLEET_TEST_ORPHAN_OK"   // "1": keep running when the parent dies
	// maxLife ends a worker whatever happens, so a crashed test run cannot
	// leave one behind for long.
	maxLife = 3 * time.Minute
)

func TestMain(m *testing.M) {
	switch os.Getenv(envRole) {
	case "worker":
		os.Exit(workerMain())
	case "parent":
		os.Exit(parentMain())
	}
	goleak.VerifyTestMain(m)
}

// workerMain runs until SIGTERM (then exits 0, unless told to ignore it),
// or until a crash file names an exit code (checked at start and on
// SIGWINCH, whose default action is to do nothing, so a signal sent before
// Notify is not fatal). It prints "ready <id>" once its signals are set up.
func workerMain() int {
	if c := os.Getenv(envExit); c != "" {
		n, _ := strconv.Atoi(c)
		return n
	}
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGWINCH)
	crashFile := filepath.Join(os.Getenv(envCtl), strconv.Itoa(os.Getpid()))
	crashCode := func() (int, bool) {
		b, err := os.ReadFile(crashFile)
		if err != nil {
			return 0, false
		}
		n, err := strconv.Atoi(strings.TrimSpace(string(b)))
		return n, err == nil
	}
	fmt.Printf("ready %s\n", procfleet.SelfID())
	if n, ok := crashCode(); ok {
		return n
	}
	ppid := os.Getppid()
	orphan := time.NewTicker(100 * time.Millisecond)
	life := time.After(maxLife)
	for {
		select {
		case s := <-sigs:
			if s == syscall.SIGTERM {
				if os.Getenv(envIgnoreTerm) == "1" {
					fmt.Printf("ignoring SIGTERM %s\n", procfleet.SelfID())
					continue
				}
				fmt.Printf("stopping %s\n", procfleet.SelfID())
				return 0
			}
			if n, ok := crashCode(); ok {
				return n
			}
		case <-orphan.C:
			// The test process is gone (a "parent" role's death is
			// expected: its workers then belong to nobody).
			if os.Getppid() != ppid && os.Getenv(envOrphanOK) != "1" {
				return 1
			}
		case <-life:
			return 1
		}
	}
}

// parentMain opens a fleet on the registry, provisions one worker, prints
// "worker <id>" and waits to be killed (or for stdin to close).
func parentMain() int {
	ctx := context.Background()
	self, err := os.Executable()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	f, err := procfleet.Open(ctx, os.Getenv(envRegistry), &procfleet.Options{
		Command: []string{self},
		Env:     []string{envRole + "=worker", envOrphanOK + "=1", envCtl + "=" + os.Getenv(envCtl)},
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	p, err := f.Provision(ctx, 1)
	if err != nil || len(p.Workers) != 1 {
		fmt.Fprintln(os.Stderr, "provision:", err, p.Failures)
		return 2
	}
	fmt.Printf("worker %s\n", p.Workers[0].ID)
	_, _ = io.Copy(io.Discard, os.Stdin)
	return 1
}

// lines is an io.Writer that collects lines and lets a test wait for one.
type lines struct {
	mu      sync.Mutex
	partial []byte
	all     []string
	changed chan struct{}
}

func newLines() *lines { return &lines{changed: make(chan struct{})} }

func (l *lines) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.partial = append(l.partial, p...)
	for {
		i := bytes.IndexByte(l.partial, '\n')
		if i < 0 {
			break
		}
		l.all = append(l.all, string(l.partial[:i]))
		l.partial = l.partial[i+1:]
	}
	close(l.changed)
	l.changed = make(chan struct{})
	return len(p), nil
}

// await waits for the line want.
func (l *lines) await(t *testing.T, want string) {
	t.Helper()
	timeout := time.NewTimer(30 * time.Second)
	defer timeout.Stop()
	for {
		l.mu.Lock()
		for _, s := range l.all {
			if s == want {
				l.mu.Unlock()
				return
			}
		}
		ch := l.changed
		l.mu.Unlock()
		select {
		case <-ch:
		case <-timeout.C:
			t.Fatalf("no line %q from the workers", want)
		case <-t.Context().Done():
			t.Fatalf("test ended waiting for line %q", want)
		}
	}
}

type bundle struct {
	dir      string
	registry string
	ctl      string
	out      *lines
	events   *queue.Queue
	opts     procfleet.Options
	fleet    *fleet.Fleet
	seen     []fleet.Event
}

// setup opens a fleet of test workers with its own registry and events
// queue; edit adjusts the options first.
func setup(t *testing.T, edit func(*procfleet.Options)) *bundle {
	t.Helper()
	dir := t.TempDir()
	b := &bundle{dir: dir, registry: filepath.Join(dir, "fleet.db"), ctl: filepath.Join(dir, "ctl"), out: newLines()}
	require.NoError(t, os.Mkdir(b.ctl, 0o755))

	qdb, err := sqlitequeue.OpenDB(t.Context(), filepath.Join(dir, "queue.db"), nil)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, qdb.Close()) })
	require.NoError(t, qdb.CreateQueue(t.Context(), "fleet-events", sqlitequeue.Config{}))
	b.events, err = qdb.Open(t.Context(), "fleet-events")
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, b.events.Close()) })

	self, err := os.Executable()
	require.NoError(t, err)
	b.opts = procfleet.Options{
		Command: []string{self},
		// Race-enabled workers would wait a second at exit.
		Env:         []string{envRole + "=worker", envCtl + "=" + b.ctl, "GORACE=atexit_sleep_ms=0"},
		Events:      b.events,
		MaxWorkers:  32,
		StopTimeout: 20 * time.Second,
		Stdout:      b.out,
	}
	if edit != nil {
		edit(&b.opts)
	}
	b.fleet = b.open(t, b.opts)
	return b
}

// open opens another fleet on the bundle's registry, closed at cleanup.
func (b *bundle) open(t *testing.T, o procfleet.Options) *fleet.Fleet {
	t.Helper()
	f, err := procfleet.Open(t.Context(), b.registry, &o)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, f.Close()) })
	return f
}

// crash makes worker id exit with code: a crash file, then SIGWINCH.
func (b *bundle) crash(t *testing.T, id string, code int) {
	pid := pidOf(t, id)
	name := filepath.Join(b.ctl, strconv.Itoa(pid))
	require.NoError(t, os.WriteFile(name+".tmp", []byte(strconv.Itoa(code)), 0o644))
	require.NoError(t, os.Rename(name+".tmp", name))
	require.NoError(t, syscall.Kill(pid, syscall.SIGWINCH))
}

func pidOf(t *testing.T, id string) int {
	t.Helper()
	_, p, ok := strings.Cut(id, "/")
	require.True(t, ok, "worker id %q is not host/pid", id)
	pid, err := strconv.Atoi(p)
	require.NoError(t, err)
	return pid
}

// provision starts n workers and waits until each has set up its signals.
func (b *bundle) provision(t *testing.T, f *fleet.Fleet, n int) []fleet.Worker {
	t.Helper()
	p, err := f.Provision(t.Context(), n)
	require.NoError(t, err)
	require.Empty(t, p.Failures)
	require.Len(t, p.Workers, n)
	for _, w := range p.Workers {
		b.out.await(t, "ready "+w.ID)
	}
	return p.Workers
}

// event waits for an event matching fn and returns it; it keeps every
// event received in b.seen.
func (b *bundle) event(t *testing.T, what string, fn func(fleet.Event) bool) fleet.Event {
	t.Helper()
	for _, e := range b.seen {
		if fn(e) {
			return e
		}
	}
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		msgs, err := b.events.Receive(t.Context(), queue.ReceiveOptions{Max: 10, Wait: time.Second})
		require.NoError(t, err)
		var found *fleet.Event
		for _, m := range msgs {
			e, err := fleet.ParseEvent(m.Body)
			require.NoError(t, err)
			b.seen = append(b.seen, e)
			if found == nil && fn(e) {
				found = &e
			}
			_, err = b.events.Delete(t.Context(), m.Handle)
			require.NoError(t, err)
		}
		if found != nil {
			return *found
		}
	}
	t.Fatalf("no event: %s", what)
	return fleet.Event{}
}

// drainEvents receives what is left in the queue right now.
func (b *bundle) drainEvents(t *testing.T) {
	t.Helper()
	for {
		msgs, err := b.events.Receive(t.Context(), queue.ReceiveOptions{Max: 10})
		require.NoError(t, err)
		if len(msgs) == 0 {
			return
		}
		for _, m := range msgs {
			e, err := fleet.ParseEvent(m.Body)
			require.NoError(t, err)
			b.seen = append(b.seen, e)
			_, err = b.events.Delete(t.Context(), m.Handle)
			require.NoError(t, err)
		}
	}
}

func (b *bundle) eventsOf(id string) []fleet.Event {
	var out []fleet.Event
	for _, e := range b.seen {
		if e.WorkerID == id {
			out = append(out, e)
		}
	}
	return out
}

func stoppedOf(id string) func(fleet.Event) bool {
	return func(e fleet.Event) bool { return e.WorkerID == id && e.Stopped() }
}

func listed(t *testing.T, f *fleet.Fleet) map[string]fleet.Worker {
	t.Helper()
	ws, err := f.List(t.Context())
	require.NoError(t, err)
	out := map[string]fleet.Worker{}
	for _, w := range ws {
		out[w.ID] = w
	}
	return out
}
