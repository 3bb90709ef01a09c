package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/jobfleet/jobfleet/pkg/dispatcher"
	"github.com/jobfleet/jobfleet/pkg/worker"
)

// submitted is one paced submission.
type submitted struct {
	id               string
	called, returned time.Time
}

func TestSteadyState(t *testing.T) {
	p := sizes(t)
	parallel(t, p)
	dir := t.TempDir()
	cfg := localConfig(t, dir, nil)
	svc := newService(openLocal(t, cfg, nil), cfg)

	// The handler is echo's, plus the moment it began.
	began, done := newMarks(), newMarks()
	reg := worker.NewRegistry()
	reg.Handle("echo", worker.HandlerFunc(func(_ context.Context, j *worker.Job) (json.RawMessage, error) {
		began.mark(j.ID, time.Now())
		return j.Payload, nil
	}))
	for i := range p.steadyWorker {
		w := newWorker(t, openLocal(t, cfg, done), fmt.Sprintf("bench/%d", i+1), reg, cfg, p.steadyConc)
		require.NoError(t, w.Start(t.Context()))
	}
	// Warm up: every worker has received, started and finished jobs.
	warm := 20 * p.steadyWorker
	submitAll(t, svc, echoRequests(warm), 10)
	done.await(t, warm, time.Minute)
	total := warm

	tb := newTable(2, fmt.Sprintf("2. Steady state: single submits at fixed rates, %d workers × %d, local profile", p.steadyWorker, p.steadyConc),
		"offered jobs/s", "jobs", "submitted jobs/s", "submit p50 / p99", "dispatch→start p50", "p99", "max",
		"submit→done p50", "p99", "max")
	for _, r := range p.rates {
		n := int(float64(r) * p.rateFor.Seconds())
		subs, span := paced(t, svc, r, n, p.submitters)
		total += n
		done.await(t, total, 3*time.Minute)
		var submit, toStart, toDone dist
		early := 0
		for _, s := range subs {
			b, ok := began.get(s.id)
			require.True(t, ok, "job %s never began", s.id)
			d, ok := done.get(s.id)
			require.True(t, ok, "job %s never finished", s.id)
			submit = append(submit, s.returned.Sub(s.called))
			toStart = append(toStart, b.Sub(s.returned))
			toDone = append(toDone, d.Sub(s.called))
			if b.Before(s.returned) {
				early++
			}
		}
		tb.add(r, n, fmt.Sprintf("%.0f", rate(n, span)), ms(submit.pct(0.5))+" / "+ms(submit.pct(0.99)),
			ms(toStart.pct(0.5)), ms(toStart.pct(0.99)), ms(toStart.max()),
			ms(toDone.pct(0.5)), ms(toDone.pct(0.99)), ms(toDone.max()))
		if early > 0 {
			tb.note("At %d jobs/s, %d handlers began before their Submit had returned (negative dispatch→start).", r, early)
		}
		p50, p99 := toStart.pct(0.5), toStart.pct(0.99)
		addGoal(goal{rank: 2, what: fmt.Sprintf("dispatch→start at %d jobs/s", r), target: "p50 ≤ 5 ms, p99 ≤ 25 ms",
			measured: fmt.Sprintf("p50 %s, p99 %s", ms(p50), ms(p99)), met: p50 <= 5*time.Millisecond && p99 <= 25*time.Millisecond})
	}
	tb.note("In-process dispatcher.Service (no HTTP) and %d worker.Worker instances, each with its own handles on the data directory, as separate processes have "+
		"(a send does not wake another handle's waiting receive; it polls every 1–10 ms). Each rate runs %s, open loop: job i is due at i/rate, "+
		"and one of %d submitters submits it then or as soon as it is free. "+
		"submit: Service.Submit call → return (one create and one send transaction). dispatch→start: Submit returned → the handler began. "+
		"submit→done: Submit called → the job's SUCCEEDED write returned.", p.steadyWorker, p.rateFor, p.submitters)
	publish(t, tb)
}

// paced submits n echo jobs, job i at start + i/r (or as soon as one of
// the submitters is free), and returns them and the time from start until
// the last Submit returned.
func paced(t *testing.T, svc *dispatcher.Service, r, n, submitters int) ([]submitted, time.Duration) {
	t.Helper()
	reqs := echoRequests(n)
	out := make([]submitted, n)
	next := make(chan int, n)
	errs := make(chan error, submitters)
	var wg sync.WaitGroup
	for range submitters {
		wg.Go(func() {
			for i := range next {
				called := time.Now()
				res, err := svc.Submit(t.Context(), reqs[i])
				returned := time.Now()
				if err == nil {
					err = res[0].Err
				}
				if err != nil {
					errs <- err
					return
				}
				out[i] = submitted{id: res[0].Job.ID, called: called, returned: returned}
			}
		})
	}
	start := time.Now()
	tick := time.NewTicker(time.Millisecond)
	for i := 0; i < n; {
		due := min(int(time.Since(start).Seconds()*float64(r))+1, n)
		for ; i < due; i++ {
			next <- i
		}
		if i < n {
			<-tick.C
		}
	}
	tick.Stop()
	close(next)
	wg.Wait()
	span := time.Since(start)
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	return out, span
}
