package e2e

import (
	"bufio"
	"context"
	"database/sql"
	"encoding/json"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	_ "modernc.org/sqlite"

	"github.com/jobfleet/jobfleet/pkg/errcode"
	"github.com/jobfleet/jobfleet/pkg/invariant"
	"github.com/jobfleet/jobfleet/pkg/job"
)

var (
	chaosJobs     = flag.Int("chaos.jobs", 2500, "jobs the chaos run submits (the aws profile a tenth of them)")
	chaosDuration = flag.Duration("chaos.duration", 25*time.Second, "how long the chaos run kills and restarts things")
)

// TestChaos runs the local system under faults — workers SIGKILLed at
// random, the dispatcher and the reaper killed and restarted — while
// producers submit jobs, then checks the run with the invariant checker.
//
// The history comes from where the truth is: every write the job store
// accepted, recorded by SQLite triggers inside the database (in commit
// order, from every process); every submission the API acknowledged; every
// handler run that completed (the jobs are exec jobs that append a line to
// a file as their last act); and every worker the test killed. It prints the
// figures the README's Guarantees section quotes:
//
//	go test ./e2e -run TestChaos -v -chaos.jobs=5000 -chaos.duration=3m
func TestChaos(t *testing.T) {
	t.Parallel()
	t.Run("local", func(t *testing.T) {
		t.Parallel()
		runChaos(t, options{"JOBFLEET_PROFILE": "local"}, *chaosJobs, *chaosDuration)
	})
	// The aws profile on moto, with 5% of AWS request attempts failing
	// (throttling, timeouts, internal errors): fewer jobs for a shorter
	// time, since moto is slow.
	t.Run("aws", func(t *testing.T) {
		t.Parallel()
		runChaos(t, options{"JOBFLEET_PROFILE": "aws", "JOBFLEET_INJECT_AWS_FAULTS": "0.05"}, *chaosJobs/10, *chaosDuration*3/5)
	})
}

func runChaos(t *testing.T, opts options, jobs int, duration time.Duration) {
	dir := t.TempDir()
	execLog := filepath.Join(dir, "executions")
	for k, v := range (options{
		"JOBFLEET_MAX_WORKERS": "3", "JOBFLEET_CONCURRENCY": "8",
		"JOBFLEET_HEARTBEAT": "300ms", "JOBFLEET_LEASE": "1500ms", "JOBFLEET_VISIBILITY": "2s",
		"JOBFLEET_SWEEP": "250ms", "JOBFLEET_RESEND_AFTER": "3s", "JOBFLEET_LOG_LEVEL": "info",
		"JOBFLEET_IDLE_TIMEOUT": "30s",
	}) {
		opts[k] = v
	}
	s := start(t, opts)
	// In the local profile the store's own record of every accepted write
	// feeds the checker; DynamoDB's (streams) is not available on moto, so
	// there the checker works from submissions, completions and final reads.
	var audit *auditLog
	if opts["JOBFLEET_PROFILE"] == "local" {
		audit = installAudit(t, filepath.Join(s.Dir, "data", "jobs.db"))
	}

	rec := invariant.NewRecorder(nil)
	var mu sync.Mutex
	var events []invariant.Event // client-side and kill events, merged with the store's below
	add := func(e invariant.Event) {
		mu.Lock()
		defer mu.Unlock()
		events = append(events, e)
	}

	ctx := context.Background()
	stop := make(chan struct{})
	var chaos sync.WaitGroup
	kills, restarts, idle := 0, 0, 0
	killedAt := map[string]time.Time{}
	chaos.Add(1)
	go func() {
		defer chaos.Done()
		rng := rand.New(rand.NewPCG(1, uint64(time.Now().UnixNano())))
		deadline := time.Now().Add(duration)
		for time.Now().Before(deadline) {
			select {
			case <-stop:
				return
			case <-time.After(time.Duration(1000+rng.IntN(1500)) * time.Millisecond):
			}
			switch n := rng.IntN(20); {
			case n < 17: // kill a worker
				pids := s.workerPIDs()
				if len(pids) == 0 {
					idle++
					continue
				}
				pid := pids[rng.IntN(len(pids))]
				host, _ := os.Hostname()
				if syscall.Kill(pid, syscall.SIGKILL) == nil {
					owner := fmt.Sprintf("%s/%d", host, pid)
					add(invariant.Event{Kind: invariant.WorkerDown, Owner: owner, Time: time.Now()})
					mu.Lock()
					killedAt[owner] = time.Now()
					mu.Unlock()
					kills++
				}
			case n < 19: // kill and restart the dispatcher
				s.Disp.signal(syscall.SIGKILL)
				<-s.Disp.done
				s.StartDispatcher()
				restarts++
			default: // restart the reaper
				s.Reaper.signal(syscall.SIGKILL)
				<-s.Reaper.done
				s.Reaper = s.spawn("reaper")
				s.Reaper.find(t, "reaper ready", 30*time.Second)
				restarts++
			}
		}
	}()

	// Producers: exec jobs that sleep a little and append their completion.
	var acked []string
	var producers sync.WaitGroup
	var ackMu sync.Mutex
	per := jobs / 4
	for p := range 4 {
		producers.Add(1)
		go func() {
			defer producers.Done()
			for i := range per {
				ms := (p*per + i) % 7 * 50
				script := fmt.Sprintf(`sleep 0.%03d; echo "$JOBFLEET_JOB_ID $JOBFLEET_ATTEMPT" >> %s`, ms, execLog)
				payload, _ := json.Marshal(map[string]any{"argv": []string{"sh", "-c", script}})
				sub := job.Submission{Type: "exec", Payload: payload, MaxAttempts: 100}
				for {
					c := s.client()
					j, err := c.Submit(ctx, sub)
					if err != nil {
						// The dispatcher may be down or restarting: an
						// unacknowledged submission is the producer's to retry.
						require.True(t, errcode.Retryable(err) || isConnErr(err), "submit: %v", err)
						time.Sleep(50 * time.Millisecond)
						continue
					}
					add(invariant.Event{Kind: invariant.Submitted, Job: j.ID, RunAt: j.RunAt, Time: time.Now()})
					ackMu.Lock()
					acked = append(acked, j.ID)
					ackMu.Unlock()
					break
				}
			}
		}()
	}
	producers.Wait()
	chaos.Wait()
	close(stop)

	// Chaos over: everything acknowledged must finish.
	owners := map[string]map[int]string{}
	for _, id := range acked {
		j := s.wait(id, 3*time.Minute)
		require.Equal(t, job.Succeeded, j.Status, "%s: %+v", id, j)
		owners[id] = map[int]string{}
		for _, a := range j.History {
			owners[id][a.Attempt] = a.Owner
		}
		if audit == nil {
			// Without the store's write record: the attempts from the job's
			// history, and its final state as read.
			for _, a := range j.History {
				// Each attempt in the history is a start write the store accepted.
				events = append(events, invariant.Event{Kind: invariant.Write, Event: job.EventStart, Accepted: true, Status: job.Running,
					Job: id, Attempt: a.Attempt - 1, Owner: a.Owner, Time: a.StartedAt})
			}
			events = append(events, invariant.Event{Kind: invariant.Observed, Job: id, Status: j.Status, Time: time.Now()})
		}
	}
	end := time.Now()

	// Merge the store's accepted writes, the completions and the client's
	// events by time, then check.
	if audit != nil {
		events = append(events, audit.events(t)...)
		if d := audit.reclaimDelays(t, killedAt); len(d) > 0 {
			t.Logf("kill → job re-queued (detection and reclaim): p50 %s, p99 %s, max %s (%d jobs)",
				percentile(d, 50), percentile(d, 99), d[len(d)-1], len(d))
		}
	}
	events = append(events, executions(t, execLog, owners)...)
	sort.SliceStable(events, func(i, k int) bool { return events[i].Time.Before(events[k].Time) })
	for _, e := range events {
		rec.Record(e)
	}
	rep := invariant.Check(rec.History(), end)
	t.Logf("chaos (%s profile): %d jobs, %d workers killed, %d dispatcher/reaper restarts (%d times no worker to kill)", opts["JOBFLEET_PROFILE"], len(acked), kills, restarts, idle)
	double, stale := fmt.Sprint(rep.Count(invariant.DoubleTerminal)+rep.Count(invariant.TerminalChanged)), fmt.Sprint(rep.Count(invariant.Fencing))
	if audit == nil { // no record of the store's writes to check them in
		double, stale = "not observed", "not observed"
	}
	t.Logf("lost %d, double terminal writes %s, stale writes accepted %s, duplicate executions %.1f per 10,000 jobs",
		rep.Count(invariant.Lost), double, stale, rep.DuplicatesPer10k())
	t.Logf("kill → running again: p50 %s, p99 %s, max %s (%d samples)", rep.Recovery.P50, rep.Recovery.P99, rep.Recovery.Max, rep.Recovery.Samples)
	t.Log(rep.String())
	require.NoError(t, rep.Err())
}

func isConnErr(err error) bool {
	msg := err.Error()
	return strings.Contains(msg, "connection refused") || strings.Contains(msg, "EOF") || strings.Contains(msg, "connection reset")
}

// audit records every write the job store commits, with SQLite triggers
// in the database itself, so the writes of every process are seen, in
// commit order.
type auditLog struct {
	db *sql.DB
}

func installAudit(t *testing.T, path string) *auditLog {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(30000)&_pragma=journal_mode(WAL)")
	require.NoError(t, err)
	t.Cleanup(func() { db.Close() })
	const now = `CAST((julianday('now') - 2440587.5) * 86400000000 AS INTEGER)`
	_, err = db.Exec(`CREATE TABLE IF NOT EXISTS audit (seq INTEGER PRIMARY KEY AUTOINCREMENT, at_us INTEGER, op TEXT, id TEXT, old BLOB, new BLOB, result BLOB);
CREATE TRIGGER IF NOT EXISTS audit_insert AFTER INSERT ON jobs BEGIN
	INSERT INTO audit(at_us, op, id, old, new, result) VALUES (` + now + `, 'insert', NEW.id, NULL, NEW.record, NULL);
END;
CREATE TRIGGER IF NOT EXISTS audit_update AFTER UPDATE ON jobs BEGIN
	INSERT INTO audit(at_us, op, id, old, new, result) VALUES (` + now + `, 'update', NEW.id, OLD.record, NEW.record, NEW.result);
END;`)
	require.NoError(t, err)
	return &auditLog{db: db}
}

// events turns the audit rows into the checker's Created and Write events.
func (a *auditLog) events(t *testing.T) []invariant.Event {
	t.Helper()
	rows, err := a.db.Query(`SELECT at_us, op, id, old, new, result FROM audit ORDER BY seq`)
	require.NoError(t, err)
	defer rows.Close()
	var out []invariant.Event
	seen := map[string]bool{}
	for rows.Next() {
		var at int64
		var op, id string
		var oldRec, newRec, result []byte
		require.NoError(t, rows.Scan(&at, &op, &id, &oldRec, &newRec, &result))
		when := time.UnixMicro(at)
		var n job.Job
		require.NoError(t, json.Unmarshal(newRec, &n))
		if op == "insert" {
			out = append(out, invariant.Event{Kind: invariant.Created, Job: id, Key: n.Key, Time: when})
			continue
		}
		var o job.Job
		require.NoError(t, json.Unmarshal(oldRec, &o))
		e := invariant.Event{Kind: invariant.Write, Job: id, Accepted: true, Status: n.Status, Attempt: o.Attempt, Owner: o.Owner, Time: when}
		switch {
		case n.Attempt > o.Attempt && o.Status == job.Queued:
			e.Event, e.Owner = job.EventStart, n.Owner
		case n.Attempt > o.Attempt:
			e.Event, e.Owner = job.EventTakeover, n.Owner
		case n.Status.Terminal():
			e.Event = job.EventFinish
		default:
			e.Event = job.EventRenew
		}
		if e.Event == job.EventStart || e.Event == job.EventTakeover {
			if !seen[n.Owner] {
				seen[n.Owner] = true
				out = append(out, invariant.Event{Kind: invariant.WorkerUp, Owner: n.Owner, Time: when.Add(-time.Microsecond)})
			}
		}
		if n.Status == job.Succeeded {
			e.Result = invariant.Digest(result, n.ResultRef)
		}
		out = append(out, e)
	}
	require.NoError(t, rows.Err())
	return out
}

// reclaimDelays returns, sorted, the time from each kill to the write that
// took each job of the killed worker out of RUNNING (a reclaim: the worker
// itself could not write any more).
func (a *auditLog) reclaimDelays(t *testing.T, killedAt map[string]time.Time) []time.Duration {
	t.Helper()
	rows, err := a.db.Query(`SELECT at_us, old, new FROM audit WHERE op = 'update' ORDER BY seq`)
	require.NoError(t, err)
	defer rows.Close()
	var out []time.Duration
	for rows.Next() {
		var at int64
		var oldRec, newRec []byte
		require.NoError(t, rows.Scan(&at, &oldRec, &newRec))
		var o, n job.Job
		require.NoError(t, json.Unmarshal(oldRec, &o))
		require.NoError(t, json.Unmarshal(newRec, &n))
		k, ok := killedAt[o.Owner]
		when := time.UnixMicro(at)
		if ok && o.Status == job.Running && (n.Status != job.Running || n.Attempt != o.Attempt) && when.After(k) {
			out = append(out, when.Sub(k))
		}
	}
	require.NoError(t, rows.Err())
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

func percentile(sorted []time.Duration, p int) time.Duration {
	return sorted[min(len(sorted)-1, (len(sorted)*p+99)/100-1)]
}

// executions reads the completions the jobs appended ("<id> <attempt>").
func executions(t *testing.T, path string, owners map[string]map[int]string) []invariant.Event {
	t.Helper()
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	st, err := f.Stat()
	require.NoError(t, err)
	var out []invariant.Event
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		id, a, ok := strings.Cut(sc.Text(), " ")
		require.True(t, ok, "bad completion line %q", sc.Text())
		attempt, err := strconv.Atoi(a)
		require.NoError(t, err)
		out = append(out, invariant.Event{Kind: invariant.Executed, Job: id, Attempt: attempt, Owner: owners[id][attempt],
			Outcome: job.OutcomeSucceeded, Time: st.ModTime()})
	}
	require.NoError(t, sc.Err())
	return out
}
