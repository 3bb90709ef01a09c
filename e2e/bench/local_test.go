package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/jobfleet/jobfleet/pkg/config"
	"github.com/jobfleet/jobfleet/pkg/dispatcher"
	"github.com/jobfleet/jobfleet/pkg/handlers"
	"github.com/jobfleet/jobfleet/pkg/job"
	"github.com/jobfleet/jobfleet/pkg/jobstore"
	"github.com/jobfleet/jobfleet/pkg/jobstore/sqlitejobstore"
	"github.com/jobfleet/jobfleet/pkg/metrics"
	"github.com/jobfleet/jobfleet/pkg/profile"
	"github.com/jobfleet/jobfleet/pkg/worker"
)

// env is a getenv over a map, for config.Load.
type env map[string]string

func (e env) get(k string) string { return e[k] }

// localConfig is the local profile's configuration over dir: the defaults,
// as the services would load them, plus extra.
func localConfig(t *testing.T, dir string, extra env) config.Config {
	t.Helper()
	e := env{"JOBFLEET_DATA_DIR": dir}
	maps.Copy(e, extra)
	cfg, err := config.Load(e.get)
	require.NoError(t, err)
	return cfg
}

// marks records a time per job id, once (the first), and tells waiters
// when a count is reached.
type marks struct {
	mu      sync.Mutex
	at      map[string]time.Time
	waiters []waiter
}

type waiter struct {
	n  int
	ch chan struct{}
}

func newMarks() *marks { return &marks{at: map[string]time.Time{}} }

func (m *marks) mark(id string, at time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.at[id]; ok {
		return
	}
	m.at[id] = at
	keep := m.waiters[:0]
	for _, w := range m.waiters {
		if len(m.at) >= w.n {
			close(w.ch)
			continue
		}
		keep = append(keep, w)
	}
	m.waiters = keep
}

func (m *marks) get(id string) (time.Time, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	at, ok := m.at[id]
	return at, ok
}

func (m *marks) count() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.at)
}

// reached returns a channel closed once n ids are marked.
func (m *marks) reached(n int) <-chan struct{} {
	m.mu.Lock()
	defer m.mu.Unlock()
	ch := make(chan struct{})
	if len(m.at) >= n {
		close(ch)
		return ch
	}
	m.waiters = append(m.waiters, waiter{n, ch})
	return ch
}

// await waits until n ids are marked, failing the test after d.
func (m *marks) await(t *testing.T, n int, d time.Duration) {
	t.Helper()
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-m.reached(n):
	case <-timer.C:
		t.Fatalf("%d of %d jobs done after %s", m.count(), n, d)
	case <-t.Context().Done():
		t.Fatal(t.Context().Err())
	}
}

// finishRecorder is a job store driver that marks the moment each job's
// SUCCEEDED write returned: when a client reading the store could first see
// the job done.
type finishRecorder struct {
	jobstore.Driver
	done *marks
}

var _ jobstore.Driver = finishRecorder{}

func (d finishRecorder) Apply(ctx context.Context, changes []job.Change) ([]jobstore.ChangeResult, error) {
	res, err := d.Driver.Apply(ctx, changes)
	if err == nil {
		now := time.Now()
		for _, r := range res {
			if r.Err == nil && r.Job != nil && r.Job.Status == job.Succeeded {
				d.done.mark(r.Job.ID, now)
			}
		}
	}
	return res, err
}

// openLocal opens the local profile's backends as one process does. With
// done, the job store marks finished jobs in it.
func openLocal(t *testing.T, cfg config.Config, done *marks) *profile.Backends {
	t.Helper()
	ctx := t.Context()
	b, err := profile.Open(ctx, cfg, metrics.New())
	require.NoError(t, err)
	t.Cleanup(func() { b.Close() })
	if done != nil {
		d, err := sqlitejobstore.OpenDriver(ctx, filepath.Join(b.DataDir(), "jobs.db"), nil)
		require.NoError(t, err)
		require.NoError(t, b.Store.Close())
		b.Store = jobstore.New(finishRecorder{d, done}, nil)
		t.Cleanup(func() { b.Store.Close() })
	}
	return b
}

func newService(b *profile.Backends, cfg config.Config) *dispatcher.Service {
	return dispatcher.NewService(b.Store, b.Work, b.Blob, &dispatcher.Options{
		Policy: cfg.Policy(), Limits: cfg.Limits(), Payloads: handlers.Validator(), InlineLimit: cfg.InlineLimit,
		GroupCommit: true, // as the local profile's dispatcher has it
	})
}

// newWorker makes a worker over b, configured as workermain configures
// the stock worker; the test's cleanup stops it.
func newWorker(t *testing.T, b *profile.Backends, id string, reg *worker.Registry, cfg config.Config, conc int) *worker.Worker {
	t.Helper()
	w, err := worker.New(id, b.Store, b.Work, b.Blob, reg, &worker.Options{
		DLQ:          b.WorkDLQ,
		Policy:       cfg.Policy(),
		Concurrency:  conc,
		Heartbeat:    cfg.Heartbeat,
		Visibility:   cfg.Visibility,
		DrainTimeout: cfg.DrainTimeout,
		InlineLimit:  cfg.InlineLimit,
		RetryBase:    cfg.RetryBase,
		RetryMax:     cfg.RetryMax,
	})
	require.NoError(t, err)
	t.Cleanup(w.Stop)
	return w
}

// stopAll stops workers at once and waits for them.
func stopAll(workers []*worker.Worker) {
	var wg sync.WaitGroup
	for _, w := range workers {
		wg.Go(w.Stop)
	}
	wg.Wait()
}

// echoRequests are n no-op submissions with tiny payloads.
func echoRequests(n int) []dispatcher.Request {
	reqs := make([]dispatcher.Request, n)
	for i := range reqs {
		reqs[i] = dispatcher.Request{Submission: job.Submission{Type: "echo", Payload: json.RawMessage(fmt.Sprintf(`{"n":%d}`, i))}}
	}
	return reqs
}

// submitAll submits reqs in batches and checks that every job was created.
func submitAll(t *testing.T, svc *dispatcher.Service, reqs []dispatcher.Request, batch int) {
	t.Helper()
	for lo := 0; lo < len(reqs); lo += batch {
		res, err := svc.Submit(t.Context(), reqs[lo:min(lo+batch, len(reqs))]...)
		require.NoError(t, err)
		for _, r := range res {
			require.NoError(t, r.Err)
			require.True(t, r.Created)
		}
	}
}
