package bench

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/jobfleet/jobfleet/e2e/internal/freeze"
	"github.com/jobfleet/jobfleet/pkg/client"
	"github.com/jobfleet/jobfleet/pkg/job"
)

// failoverPath is one way a worker is lost mid-job.
type failoverPath struct {
	name     string
	signal   syscall.Signal
	settings env
	// goal is how soon the job must run again.
	goal     time.Duration
	goalText string
}

func TestFailover(t *testing.T) {
	p := sizes(t)
	parallel(t, p)
	base := env{
		"JOBFLEET_MIN_WORKERS":    "2", // a warm worker besides the one that dies
		"JOBFLEET_MAX_WORKERS":    "4",
		"JOBFLEET_IDLE_TIMEOUT":   "0",
		"JOBFLEET_SCALE_INTERVAL": "250ms",
		"JOBFLEET_DRAIN_TIMEOUT":  "2s",
		"JOBFLEET_STOP_TIMEOUT":   "5s",
	}
	paths := []failoverPath{
		{
			name: "fleet event", signal: syscall.SIGKILL, goal: 3 * time.Second, goalText: "≤ 3 s",
			// A long lease: only the event can explain a fast recovery.
			settings: env{"JOBFLEET_LEASE": "30s", "JOBFLEET_HEARTBEAT": "10s", "JOBFLEET_VISIBILITY": "40s", "JOBFLEET_SWEEP": "5s", "JOBFLEET_CONCURRENCY": "4"},
		},
		{
			name: "lease expiry", signal: syscall.SIGSTOP, goal: 2500 * time.Millisecond, goalText: "≤ lease + sweep = 2.5 s",
			// The frozen worker lives on (no event) with its one slot taken,
			// so the job must go to the other worker.
			settings: env{"JOBFLEET_LEASE": "2s", "JOBFLEET_HEARTBEAT": "500ms", "JOBFLEET_VISIBILITY": "3s", "JOBFLEET_SWEEP": "500ms", "JOBFLEET_CONCURRENCY": "1"},
		},
	}
	tb := newTable(4, fmt.Sprintf("4. Failover: a worker lost mid-job, %d times per path (real binaries, local profile)", p.kills),
		"path", "signal", "lease / heartbeat / sweep", "p50", "max", "goal", "met")
	for _, fp := range paths {
		settings := env{}
		for k, v := range base {
			settings[k] = v
		}
		for k, v := range fp.settings {
			settings[k] = v
		}
		s := startSystem(t, settings)
		var d dist
		undone := 0
		for range p.kills {
			x, u := failover(t, s, fp.signal)
			d = append(d, x)
			undone += u
		}
		if fp.signal == syscall.SIGSTOP {
			tb.note("%s: %d SIGSTOPs caught the worker holding a SQLite write lock, and were undone and tried again (see below), besides the %d measured.",
				fp.name, undone, p.kills)
		}
		met := d.max() <= fp.goal
		tb.add(fp.name, signalName[fp.signal], settings["JOBFLEET_LEASE"]+" / "+settings["JOBFLEET_HEARTBEAT"]+" / "+settings["JOBFLEET_SWEEP"],
			ms(d.pct(0.5)), ms(d.max()), fp.goalText, yesNo(met))
		addGoal(goal{rank: 4, what: "failover via " + fp.name, target: fp.goalText,
			measured: fmt.Sprintf("p50 %s, max %s", ms(d.pct(0.5)), ms(d.max())), met: met})
		s.stop()
	}
	tb.note("Each time: submit a sleep job of 1 s, wait until it runs (polling GET /v1/jobs/{id} every 5 ms), wait a random 0–500 ms, signal its worker, " +
		"and take the time from the signal to the start of attempt 2 (its history entry's started_at, written by the worker that took it). " +
		"SIGKILL: the dispatcher's local fleet sees the exit and writes a STOPPED event; the reaper reclaims the worker's jobs at once. " +
		"SIGSTOP: the process lives, so there is no event; the job runs again once its lease has expired and a sweep (or a redelivered message) reclaims it. " +
		"The fleet keeps 2 warm workers (JOBFLEET_MIN_WORKERS=2). " +
		"A worker frozen while it holds the SQLite write lock (inside a transaction, e.g. a heartbeat) stalls every process of the local profile: " +
		"they wait for the busy timeout (30 s) and fail, the reaper too, until the frozen process dies. Such stops are undone and retried here, " +
		"so the lease-expiry times are those of a worker frozen outside a transaction.")
	publish(t, tb)
}

// phaseSpread bounds the random wait before the signal: the lease path's
// heartbeat and sweep interval (the job sleeps 1 s, so it still runs then).
const phaseSpread = 500 * time.Millisecond

var signalName = map[syscall.Signal]string{syscall.SIGKILL: "SIGKILL", syscall.SIGSTOP: "SIGSTOP"}

// failover runs one job, loses its worker to sig, and returns the time
// until the job's next attempt started, and how many stops were undone (see
// freeze).
func failover(t *testing.T, s *system, sig syscall.Signal) (d time.Duration, undone int) {
	t.Helper()
	j, err := s.client.Submit(t.Context(), job.Submission{Type: "sleep", Payload: json.RawMessage(`{"seconds":1}`)})
	require.NoError(t, err)
	running := poll(t, s, j.ID, 30*time.Second, func(j *client.Job) bool { return j.Status == job.Running && j.Attempt == 1 })
	pid := ownerPID(t, running.Owner)
	// Lose the worker at a random moment of its heartbeat and of the
	// reaper's sweep, as a real failure would: without this, each round
	// would start in step with the sweep that ended the round before.
	phase := time.NewTimer(rand.N(phaseSpread))
	<-phase.C
	var at time.Time
	if sig == syscall.SIGSTOP {
		at, undone = s.freeze(t, pid)
	} else {
		at = time.Now()
		require.NoError(t, syscall.Kill(pid, sig))
	}
	again := poll(t, s, j.ID, 30*time.Second, func(j *client.Job) bool { return j.Attempt >= 2 })
	var started time.Time
	for _, h := range again.History {
		if h.Attempt == 2 {
			started = h.StartedAt
		}
	}
	require.False(t, started.IsZero(), "attempt 2 of job %s has no history entry: %+v", j.ID, again.History)
	done := poll(t, s, j.ID, 30*time.Second, func(j *client.Job) bool { return j.Status.Terminal() })
	require.Equal(t, job.Succeeded, done.Status, "%+v", done)
	if sig != syscall.SIGKILL {
		require.NoError(t, syscall.Kill(pid, syscall.SIGKILL))
	}
	return started.Sub(at), undone
}

// freeze stops pid with SIGSTOP at a moment it holds no write lock on a file
// of the data directory (see package freeze), and returns when that stop
// was sent and how many earlier stops were undone; the count is reported.
func (s *system) freeze(t *testing.T, pid int) (time.Time, int) {
	t.Helper()
	at, undone, err := freeze.Stop(pid, filepath.Join(s.dir, "data"))
	require.NoError(t, err)
	return at, undone
}

// poll reads the job every 5 ms until cond holds, failing the test after d.
func poll(t *testing.T, s *system, id string, d time.Duration, cond func(*client.Job) bool) *client.Job {
	t.Helper()
	deadline := time.Now().Add(d)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		j, err := s.client.Get(t.Context(), id)
		require.NoError(t, err)
		if cond(j) {
			return j
		}
		if time.Now().After(deadline) {
			t.Fatalf("job %s: condition not met within %s: %+v", id, d, j)
		}
		<-tick.C
	}
}
