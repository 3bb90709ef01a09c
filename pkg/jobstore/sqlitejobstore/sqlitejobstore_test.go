package sqlitejobstore

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/jobfleet/jobfleet/pkg/errcode"
	"github.com/jobfleet/jobfleet/pkg/job"
	"github.com/jobfleet/jobfleet/pkg/jobstore"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

var (
	policy = job.DefaultPolicy
	t0     = time.Date(2099, 1, 2, 3, 4, 5, 0, time.UTC)
)

func newJobs(n int, at time.Time, key string) []*job.Job {
	jobs := make([]*job.Job, n)
	for i := range jobs {
		s := job.Submission{Type: "t", Payload: []byte(fmt.Sprintf(`{"i":%d}`, i))}
		if key != "" {
			s.Key = fmt.Sprintf("%s-%d", key, i)
		}
		jobs[i] = policy.New(&s, job.DefaultLimits, job.NewID(at), at)
	}
	return jobs
}

func openDriver(t testing.TB, path string) *Driver {
	t.Helper()
	d, err := OpenDriver(context.Background(), path, nil)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, d.Close()) })
	return d
}

func mustCreate(t testing.TB, d *Driver, jobs []*job.Job) {
	t.Helper()
	res, err := d.Create(context.Background(), jobs)
	require.NoError(t, err)
	for i, r := range res {
		require.NoError(t, r.Err, "entry %d", i)
	}
}

func TestDurabilitySettings(t *testing.T) {
	t.Parallel()
	d := openDriver(t, filepath.Join(t.TempDir(), "jobs.db"))
	ctx := t.Context()
	// Every pooled connection carries the settings: check several at once.
	conns := make([]*connPragmas, 3)
	for i := range conns {
		c, err := d.db.Conn(ctx)
		require.NoError(t, err)
		defer c.Close()
		conns[i] = &connPragmas{}
		require.NoError(t, c.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&conns[i].journal))
		require.NoError(t, c.QueryRowContext(ctx, "PRAGMA synchronous").Scan(&conns[i].synchronous))
		require.NoError(t, c.QueryRowContext(ctx, "PRAGMA busy_timeout").Scan(&conns[i].busy))
	}
	for _, c := range conns {
		require.Equal(t, connPragmas{journal: "wal", synchronous: 2, busy: 30000}, *c)
	}
}

type connPragmas struct {
	journal     string
	synchronous int // 2 = FULL
	busy        int
}

// TestQueryPlans shows that every query reads an index range: no table
// scan, no sort.
func TestQueryPlans(t *testing.T) {
	t.Parallel()
	d := openDriver(t, filepath.Join(t.TempDir(), "jobs.db"))
	// Some rows, so the plans are not for an empty table.
	mustCreate(t, d, newJobs(50, t0, "k"))
	for _, tc := range []struct {
		name  string
		query string
		args  []any
		index []string // any of these
	}{
		{"get", qGet, []any{"x"}, []string{"sqlite_autoindex_jobs_1"}},
		{"key holder", qKeyHolder, []any{"k"}, []string{"jobs_active_key"}},
		{"due", qDue, []any{"QUEUED", 1, 10}, []string{"jobs_due"}},
		{"owned", qOwned, []any{"w", 10}, []string{"jobs_owned"}},
		{"list", qList, []any{listTop, 10}, []string{"sqlite_autoindex_jobs_1"}},
		{"list by status", qListStatus, []any{"QUEUED", listTop, 10}, []string{"jobs_status_id"}},
		{"list by type", qListType, []any{"t", listTop, 10}, []string{"jobs_type_id"}},
		{"list by status and type", qListStatType, []any{"QUEUED", "t", listTop, 10}, []string{"jobs_status_id", "jobs_type_id"}},
		{"purge", qPurge, []any{1, 10}, []string{"jobs_expires"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rows, err := d.db.QueryContext(t.Context(), "EXPLAIN QUERY PLAN "+tc.query, tc.args...)
			require.NoError(t, err)
			defer rows.Close()
			var plan []string
			for rows.Next() {
				var id, parent, notused int
				var detail string
				require.NoError(t, rows.Scan(&id, &parent, &notused, &detail))
				plan = append(plan, detail)
			}
			require.NoError(t, rows.Err())
			text := strings.Join(plan, "\n")
			t.Logf("plan:\n%s", text)
			require.NotContains(t, text, "TEMP B-TREE", "sorts")
			for _, line := range plan {
				if strings.HasPrefix(line, "SCAN jobs") {
					t.Fatalf("full scan: %s", line)
				}
			}
			require.True(t, slices.ContainsFunc(tc.index, func(ix string) bool {
				return strings.Contains(text, "USING INDEX "+ix) || strings.Contains(text, "USING COVERING INDEX "+ix)
			}), "want one of %v", tc.index)
		})
	}
}

// TestBatchIsOneTransaction checks that a batch's entries commit together:
// a reader on another handle never sees part of a batch.
func TestBatchIsOneTransaction(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "jobs.db")
	d := openDriver(t, path)
	reader := openDriver(t, path)
	ctx := t.Context()

	const n = 60
	var reads atomic.Int64
	var wg sync.WaitGroup
	stop := make(chan struct{})
	var partial []int
	var readErr error
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			p, err := reader.List(ctx, jobstore.ListQuery{Limit: jobstore.MaxListLimit})
			if err != nil {
				readErr = err
				return
			}
			if k := len(p.Jobs); k%n != 0 {
				partial = append(partial, k)
			}
			reads.Add(1)
		}
	})
	// Write until the reader has looked often enough (and at least 3
	// batches), within the 1000 jobs one List returns.
	for i := 0; i < 3 || (reads.Load() < 10 && i < jobstore.MaxListLimit/n); i++ {
		mustCreate(t, d, newJobs(n, t0.Add(time.Duration(i)*time.Second), ""))
	}
	close(stop)
	wg.Wait()
	require.NoError(t, readErr)
	require.Empty(t, partial, "a reader saw part of a batch")
	t.Logf("%d reads", reads.Load())
}

// TestCorruptRecord: a record that does not decode fails its own entry
// with errcode.Internal and nothing else.
func TestCorruptRecord(t *testing.T) {
	t.Parallel()
	d := openDriver(t, filepath.Join(t.TempDir(), "jobs.db"))
	ctx := t.Context()
	jobs := newJobs(2, t0, "")
	mustCreate(t, d, jobs)
	_, err := d.db.ExecContext(ctx, "UPDATE jobs SET record = ? WHERE id = ?", []byte("{not json"), jobs[0].ID)
	require.NoError(t, err)

	_, err = d.Get(ctx, jobs[0].ID)
	require.Equal(t, errcode.Internal, errcode.Of(err), "%v", err)
	res, err := d.Apply(ctx, []job.Change{
		policy.Start(job.Message{ID: jobs[0].ID}, "w", t0),
		policy.Start(job.Message{ID: jobs[1].ID}, "w", t0),
	})
	require.NoError(t, err)
	require.Equal(t, errcode.Internal, errcode.Of(res[0].Err), "%v", res[0].Err)
	require.NoError(t, res[1].Err)
	got, err := d.Get(ctx, jobs[1].ID)
	require.NoError(t, err)
	require.Equal(t, job.Running, got.Status)

	dup := jobs[0].Clone()
	cr, err := d.Create(ctx, []*job.Job{dup})
	require.NoError(t, err)
	require.Equal(t, errcode.Internal, errcode.Of(cr[0].Err), "%v", cr[0].Err)
}

// TestLockedByAnotherWriter: a write that waits for another handle's write
// lock gives up when its context ends, and succeeds once the lock is free.
func TestLockedByAnotherWriter(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "jobs.db")
	d := openDriver(t, path)
	other := openDriver(t, path)
	ctx := t.Context()
	jobs := newJobs(1, t0, "")
	mustCreate(t, d, jobs)

	tx, err := other.db.BeginTx(ctx, nil) // BEGIN IMMEDIATE: holds the write lock
	require.NoError(t, err)
	short, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	_, err = d.Apply(short, []job.Change{policy.Start(job.Message{ID: jobs[0].ID}, "w", t0)})
	require.Error(t, err)
	require.Contains(t, []errcode.Code{errcode.Canceled, errcode.Unavailable}, errcode.Of(err), "%v", err)
	t.Logf("blocked write: %v", err)
	require.NoError(t, tx.Rollback())

	res, err := d.Apply(ctx, []job.Change{policy.Start(job.Message{ID: jobs[0].ID}, "w", t0)})
	require.NoError(t, err)
	require.NoError(t, res[0].Err)
}

func TestPurge(t *testing.T) {
	t.Parallel()
	d := openDriver(t, filepath.Join(t.TempDir(), "jobs.db"))
	ctx := t.Context()
	jobs := newJobs(6, t0, "p")
	mustCreate(t, d, jobs)
	// Finish four of them at t0+i minutes; two stay queued.
	var finished []*job.Job
	for i, j := range jobs[:4] {
		at := t0.Add(time.Duration(i) * time.Minute)
		res, err := d.Apply(ctx, []job.Change{policy.Start(job.Message{ID: j.ID}, "w", at)})
		require.NoError(t, err)
		require.NoError(t, res[0].Err)
		res, err = d.Apply(ctx, []job.Change{policy.Finish(res[0].Job, at, job.End{Outcome: job.OutcomeSucceeded})})
		require.NoError(t, err)
		require.NoError(t, res[0].Err)
		finished = append(finished, res[0].Job)
	}

	_, err := d.Purge(ctx, t0, 0)
	require.Equal(t, errcode.InvalidArgument, errcode.Of(err))
	n, err := d.Purge(ctx, finished[0].ExpiresAt, 10) // nothing is before its own expiry
	require.NoError(t, err)
	require.Zero(t, n)
	n, err = d.Purge(ctx, finished[2].ExpiresAt.Add(time.Millisecond), 2) // three are expired; limit 2
	require.NoError(t, err)
	require.Equal(t, 2, n)
	n, err = d.Purge(ctx, finished[2].ExpiresAt.Add(time.Millisecond), 10)
	require.NoError(t, err)
	require.Equal(t, 1, n)
	for i, j := range jobs {
		_, err := d.Get(ctx, j.ID)
		if i < 3 {
			require.Equal(t, errcode.NotFound, errcode.Of(err), "job %d", i)
		} else {
			require.NoError(t, err, "job %d", i)
		}
	}
	n, err = d.Purge(ctx, t0.Add(100*365*24*time.Hour), 10) // only terminal records ever go
	require.NoError(t, err)
	require.Equal(t, 1, n)
	// A purged job's key is free (it was free once the job finished).
	fresh := policy.New(&job.Submission{Type: "t", Key: jobs[0].Key}, job.DefaultLimits, job.NewID(t0), t0)
	mustCreate(t, d, []*job.Job{fresh})
}

// TestTwoHandlesRace: two *sql.DB handles on one file, several goroutines
// each, race to start the same jobs in batches: each job starts once.
func TestTwoHandlesRace(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "jobs.db")
	handles := []*Driver{openDriver(t, path), openDriver(t, path)}
	ctx := t.Context()
	jobs := newJobs(40, t0, "")
	mustCreate(t, handles[0], jobs)

	const workers = 6
	wins := make([][]string, workers)
	errs := make([]error, workers)
	var wg sync.WaitGroup
	ready := make(chan struct{})
	for w := range workers {
		wg.Go(func() {
			<-ready
			owner := fmt.Sprintf("w%d", w)
			for i := 0; i < len(jobs); i += 8 {
				var batch []job.Change
				for _, j := range jobs[i:min(i+8, len(jobs))] {
					batch = append(batch, policy.Start(job.Message{ID: j.ID}, owner, t0))
				}
				res, err := handles[w%2].Apply(ctx, batch)
				if err != nil {
					errs[w] = err
					return
				}
				for _, r := range res {
					switch {
					case r.Err == nil:
						wins[w] = append(wins[w], r.Job.ID)
					case !errors.Is(r.Err, errcode.FailedPrecondition):
						errs[w] = r.Err
						return
					}
				}
			}
		})
	}
	close(ready)
	wg.Wait()
	owner := map[string]string{}
	for w := range workers {
		require.NoError(t, errs[w])
		for _, id := range wins[w] {
			require.NotContains(t, owner, id, "job %s started twice", id)
			owner[id] = fmt.Sprintf("w%d", w)
		}
	}
	require.Len(t, owner, len(jobs))
	for _, j := range jobs {
		got, err := handles[1].Get(ctx, j.ID)
		require.NoError(t, err)
		require.Equal(t, owner[j.ID], got.Owner)
		require.Equal(t, 1, got.Attempt)
	}
}

// Child processes re-execute this test binary with one of these set.
const (
	envCrashChild = "SQLITEJOBSTORE_TEST_CRASH_DB"
	envRaceChild  = "SQLITEJOBSTORE_TEST_RACE" // db path, owner and job ids, space-separated
)

// TestAcknowledgedWritesSurviveKill runs a child process that creates and
// starts jobs and acknowledges each write on stdout, kills it with SIGKILL
// in the middle of its work, and checks that every acknowledged write is in
// the reopened database.
func TestAcknowledgedWritesSurviveKill(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "jobs.db")
	cmd := exec.Command(os.Args[0], "-test.run=^TestChildCrash$", "-test.count=1")
	cmd.Env = append(os.Environ(), envCrashChild+"="+path)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())

	created, started := map[string]bool{}, map[string]bool{}
	lines := bufio.NewScanner(out)
	killed := false
	for lines.Scan() {
		f := strings.Fields(lines.Text())
		if len(f) != 2 {
			continue
		}
		switch f[0] {
		case "created":
			created[f[1]] = true
		case "started":
			started[f[1]] = true
		}
		if !killed && len(started) >= 25 {
			require.NoError(t, cmd.Process.Kill()) // SIGKILL
			killed = true
		}
	}
	require.NoError(t, lines.Err())
	err = cmd.Wait()
	require.True(t, killed, "the child finished before it was killed: %v", err)
	require.Error(t, err, "the child was killed")

	d := openDriver(t, path)
	for id := range created {
		j, err := d.Get(t.Context(), id)
		require.NoError(t, err, "acknowledged job %s lost", id)
		if started[id] {
			require.Equal(t, job.Running, j.Status, "acknowledged start of %s lost", id)
		}
	}
	t.Logf("%d creates and %d starts acknowledged before the kill", len(created), len(started))
}

// TestChildCrash is the child of TestAcknowledgedWritesSurviveKill: it
// writes until it is killed.
func TestChildCrash(t *testing.T) {
	path := os.Getenv(envCrashChild)
	if path == "" {
		t.Skip("child process of TestAcknowledgedWritesSurviveKill")
	}
	ctx := context.Background()
	s, err := Open(ctx, path, nil)
	require.NoError(t, err)
	defer s.Close()
	// A safety stop, in case the parent is gone.
	for i := range 100000 {
		at := t0.Add(time.Duration(i) * time.Millisecond)
		jobs := newJobs(3, at, fmt.Sprintf("crash-%d", i))
		res, err := s.Create(ctx, jobs...)
		require.NoError(t, err)
		for k, r := range res {
			require.NoError(t, r.Err)
			fmt.Printf("created %s\n", jobs[k].ID)
		}
		j, err := s.ApplyOne(ctx, policy.Start(job.Message{ID: jobs[0].ID}, "child", at))
		require.NoError(t, err)
		fmt.Printf("started %s\n", j.ID)
	}
}

// TestProcessesRace: several processes race to start the same jobs; each
// job starts exactly once.
func TestProcessesRace(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "jobs.db")
	d := openDriver(t, path)
	jobs := newJobs(30, t0, "")
	mustCreate(t, d, jobs)
	ids := make([]string, len(jobs))
	for i, j := range jobs {
		ids[i] = j.ID
	}

	const procs = 3
	type child struct {
		cmd   *exec.Cmd
		in    io.WriteCloser
		lines *bufio.Scanner
	}
	children := make([]child, procs)
	for p := range children {
		cmd := exec.Command(os.Args[0], "-test.run=^TestChildRace$", "-test.count=1")
		cmd.Env = append(os.Environ(), envRaceChild+"="+strings.Join(append([]string{path, fmt.Sprintf("p%d", p)}, ids...), " "))
		cmd.Stderr = os.Stderr
		in, err := cmd.StdinPipe()
		require.NoError(t, err)
		out, err := cmd.StdoutPipe()
		require.NoError(t, err)
		require.NoError(t, cmd.Start())
		t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
		children[p] = child{cmd: cmd, in: in, lines: bufio.NewScanner(out)}
	}
	// Wait until every child has opened the store, then let them go at once.
	for _, c := range children {
		require.True(t, c.lines.Scan(), "child did not get ready")
		require.Equal(t, "ready", c.lines.Text())
	}
	for _, c := range children {
		require.NoError(t, c.in.Close())
	}
	owner := map[string]string{}
	for p, c := range children {
		for c.lines.Scan() {
			f := strings.Fields(c.lines.Text())
			if len(f) == 2 && f[0] == "won" {
				require.NotContains(t, owner, f[1], "job %s started by two processes", f[1])
				owner[f[1]] = fmt.Sprintf("p%d", p)
			}
		}
		require.NoError(t, c.cmd.Wait())
	}
	require.Len(t, owner, len(jobs))
	for _, j := range jobs {
		got, err := d.Get(t.Context(), j.ID)
		require.NoError(t, err)
		require.Equal(t, owner[j.ID], got.Owner)
		require.Equal(t, 1, got.Attempt)
	}
}

// TestChildRace is the child of TestProcessesRace.
func TestChildRace(t *testing.T) {
	args := strings.Fields(os.Getenv(envRaceChild))
	if len(args) == 0 {
		t.Skip("child process of TestProcessesRace")
	}
	path, owner, ids := args[0], args[1], args[2:]
	ctx := context.Background()
	s, err := Open(ctx, path, nil)
	require.NoError(t, err)
	defer s.Close()
	fmt.Println("ready")
	_, _ = io.Copy(io.Discard, os.Stdin) // the parent closes stdin to start the race
	for _, id := range ids {
		res, err := s.Apply(ctx, policy.Start(job.Message{ID: id}, owner, t0))
		require.NoError(t, err)
		switch {
		case res[0].Err == nil:
			fmt.Printf("won %s\n", id)
		case errors.Is(res[0].Err, errcode.FailedPrecondition):
			fmt.Printf("lost %s\n", id)
		default:
			t.Fatal(res[0].Err)
		}
	}
}

func BenchmarkCreateBatch(b *testing.B) {
	d := openDriver(b, filepath.Join(b.TempDir(), "jobs.db"))
	ctx := context.Background()
	const batch = jobstore.MaxBatch
	at, n := t0, 0
	for b.Loop() {
		b.StopTimer()
		at = at.Add(time.Millisecond)
		jobs := newJobs(batch, at, "")
		b.StartTimer()
		res, err := d.Create(ctx, jobs)
		if err != nil || res[batch-1].Err != nil {
			b.Fatal(err, res[batch-1].Err)
		}
		n += batch
	}
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "jobs/s")
}

// BenchmarkApplyBatch renews batches of running jobs (a heartbeat), a
// change that always wins, so every iteration does the same work.
func BenchmarkApplyBatch(b *testing.B) {
	d := openDriver(b, filepath.Join(b.TempDir(), "jobs.db"))
	ctx := context.Background()
	const batch = jobstore.MaxBatch
	jobs := newJobs(batch, t0, "")
	mustCreate(b, d, jobs)
	var starts []job.Change
	for _, j := range jobs {
		starts = append(starts, policy.Start(job.Message{ID: j.ID}, "w", t0))
	}
	res, err := d.Apply(ctx, starts)
	require.NoError(b, err)
	renews := make([]job.Change, batch)
	for i, r := range res {
		require.NoError(b, r.Err)
		renews[i] = policy.Renew(r.Job, t0.Add(time.Second), []byte(`{"pct":50}`))
	}
	n := 0
	for b.Loop() {
		res, err := d.Apply(ctx, renews)
		if err != nil || res[batch-1].Err != nil {
			b.Fatal(err, res[batch-1].Err)
		}
		n += batch
	}
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "changes/s")
}
