package sim

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/jobfleet/jobfleet/pkg/dispatcher"
	"github.com/jobfleet/jobfleet/pkg/errcode"
	"github.com/jobfleet/jobfleet/pkg/fleet"
	"github.com/jobfleet/jobfleet/pkg/invariant"
	"github.com/jobfleet/jobfleet/pkg/job"
	"github.com/jobfleet/jobfleet/pkg/queue"
)

// submission is one producer's request and how far it got.
type submission struct {
	req   dispatcher.Request
	at    time.Time // when the producer sends it (again)
	tries int
	done  bool // answered (acknowledged or refused), or given up
}

// maxTries is how often a producer sends a submission that failed with a
// retryable error before it gives up (the job is then not acknowledged).
const maxTries = 8

// plan draws the run's submissions.
func (w *world) plan(n int) {
	r := w.rnd
	keys := []string{"order-1", "order-2", "order-3", "order/4"}
	for i := range n {
		s := job.Submission{Type: "sim.task", Payload: json.RawMessage(fmt.Sprintf(`{"n":%d}`, i))}
		if r.Float64() < 0.35 {
			s.Key = pick(r, keys)
			if r.Float64() < 0.7 {
				// The same payload for the key: a duplicate submission,
				// answered with the job holding the key.
				s.Payload = json.RawMessage(fmt.Sprintf(`{"key":%q}`, s.Key))
			}
		}
		switch x := r.Float64(); {
		case x < 0.25:
			s.Timeout = job.Duration(time.Duration(3+r.IntN(18)) * time.Second) // shorter than a lease
		case x < 0.35:
			s.Timeout = job.Duration(time.Duration(40+r.IntN(140)) * time.Second) // a few leases
		}
		s.MaxAttempts = 2 + r.IntN(4)
		switch x := r.Float64(); {
		case x < 0.15:
			s.Delay = job.Duration(time.Duration(1+r.IntN(60)) * time.Second)
		case x < 0.22:
			s.Delay = job.Duration(time.Duration(16+r.IntN(15)) * time.Minute) // beyond the queue's delay: SCHEDULED
		}
		if r.Float64() < 0.1 {
			// Fails with a "provisioner:" error unless it starts in time.
			s.StartWithin = job.Duration(time.Duration(20+r.IntN(280)) * time.Second)
		}
		if w.faultsOn && r.Float64() < w.rates.badSubmission {
			w.stats.BadSubmission++
			switch r.IntN(4) {
			case 0:
				s.Type = "9-not-a-type"
			case 1:
				s.MaxAttempts = -1
			case 2:
				s.Payload = json.RawMessage(`{"unterminated":`)
			default:
				s.Key = "has space"
			}
		}
		at := Epoch.Add(time.Duration(r.IntN(45_000)) * time.Millisecond)
		var seed [16]byte
		binary.BigEndian.PutUint64(seed[:8], w.seed)
		binary.BigEndian.PutUint64(seed[8:], uint64(i))
		w.subs = append(w.subs, &submission{
			req: dispatcher.Request{Submission: s, ID: job.DerivedID(at, seed[:]), Source: "ingress"},
			at:  at,
		})
	}
	slices.SortStableFunc(w.subs, func(a, b *submission) int { return a.at.Compare(b.at) })
}

func (w *world) hasDueSubmission(now time.Time) bool {
	for _, s := range w.subs {
		if !s.done && !s.at.After(now) {
			return true
		}
	}
	return false
}

// submit sends up to three due submissions in one call, as the dispatcher's
// batch API or its ingress consumer would.
func (w *world) submit() bool {
	now := w.clk.Now()
	var batch []*submission
	n := 1 + w.rnd.IntN(3)
	for _, s := range w.subs {
		if !s.done && !s.at.After(now) && len(batch) < n {
			batch = append(batch, s)
		}
	}
	reqs := make([]dispatcher.Request, len(batch))
	for i, s := range batch {
		reqs[i] = s.req
		s.tries++
	}
	res, err := w.disp.Submit(w.ctx, reqs...)
	if err != nil {
		w.tracef("submit %d: %v", len(reqs), err)
		for _, s := range batch {
			w.retryLater(s, now)
		}
		return true
	}
	for i, r := range res {
		s := batch[i]
		switch {
		case r.Err == nil:
			s.done = true
			w.ack(r.Job)
		case errcode.Of(r.Err) == errcode.InvalidArgument || errors.Is(r.Err, dispatcher.ErrKeyConflict):
			s.done = true
			w.rec.Record(invariant.Event{Kind: invariant.Rejected, Key: s.req.Submission.Key, Reason: r.Err.Error()})
		default:
			w.tracef("submit %s: %v", s.req.ID, r.Err)
			w.retryLater(s, now)
		}
	}
	return true
}

func (w *world) retryLater(s *submission, now time.Time) {
	if s.tries >= maxTries {
		s.done = true // the producer gives up; the job is not acknowledged
		return
	}
	s.at = now.Add(time.Duration(500+w.rnd.IntN(3000)) * time.Millisecond)
}

func (w *world) ack(j *job.Job) {
	w.rec.Record(invariant.Event{Kind: invariant.Submitted, Job: j.ID, Key: j.Key, RunAt: j.RunAt})
	if !w.ackSet[j.ID] {
		w.ackSet[j.ID] = true
		w.acked = append(w.acked, j.ID)
	}
}

// cancel cancels an acknowledged job through the dispatcher.
func (w *world) cancel() bool {
	id := pick(w.rnd, w.acked)
	j, err := w.disp.Cancel(w.ctx, id)
	w.tracef("cancel %s: %v", id, err)
	return err == nil && j != nil
}

// observe reads an acknowledged job, as a client polling for its result.
func (w *world) observe() bool {
	j, err := w.store.Get(w.ctx, pick(w.rnd, w.acked))
	if err != nil {
		return false
	}
	w.recordObserved(j)
	return false
}

// malformed sends a work message no worker can decode.
func (w *world) malformed() bool {
	w.stats.MalformedMessages++
	_, err := w.work.Send(w.ctx, queue.SendEntry{Body: []byte(`{"job":"not a work message"}`)})
	return err == nil
}

// stopEvent is how a worker stopped, as the fleet reports it.
type stopEvent int

const (
	stopDrained stopEvent = iota // exited by itself after a drain (exit 0)
	stopCrashed                  // essential container exited non-zero
	stopOOM                      // killed for memory
	stopSpot                     // Spot interruption: not the job's fault
)

// emit sends the fleet's STOPPED event for worker id toward the reaper:
// in the active phase it may be late, duplicated or lost.
func (w *world) emit(id string, how stopEvent) {
	now := w.clk.Now()
	w.eventSeq++
	e := fleet.Event{
		EventID: fmt.Sprintf("ev-%d", w.eventSeq), Source: fleet.SourceLocal, Time: now, WorkerID: id,
		LastStatus: fleet.StatusStopped, DesiredStatus: fleet.StatusStopped, StoppedAt: now, Version: 3,
	}
	code := func(c int) *int { return &c }
	switch how {
	case stopDrained:
		e.StopCode, e.ExitCode, e.Reason = fleet.StopEssentialContainerExited, code(0), "Essential container in task exited"
	case stopCrashed:
		e.StopCode, e.ExitCode, e.Reason = fleet.StopEssentialContainerExited, code(2), "Essential container in task exited"
	case stopOOM:
		e.StopCode, e.ExitCode, e.ContainerReason = fleet.StopEssentialContainerExited, code(137), "OutOfMemoryError: Container killed due to memory usage"
	case stopSpot:
		e.StopCode, e.Reason = fleet.StopSpotInterruption, "Your Spot Task was interrupted."
	}
	copies := 1
	delay := time.Second
	if w.faultsOn && !w.settling {
		if w.rnd.Float64() < w.rates.eventLost {
			w.stats.EventsLost++
			return
		}
		if w.rnd.Float64() < w.rates.eventDup {
			w.stats.EventsDuplicated++
			copies = 2
		}
		delay = time.Duration(w.rnd.Int64N(int64(w.rates.eventDelay) + 1))
	}
	for i := range copies {
		ev := e
		if i > 0 {
			w.eventSeq++
			ev.EventID = fmt.Sprintf("ev-%d", w.eventSeq)
		}
		w.schedule(fleetEvent{at: now.Add(delay + time.Duration(i)*time.Second), e: ev})
	}
}

func (w *world) schedule(fe fleetEvent) {
	i, _ := slices.BinarySearchFunc(w.events, fe.at, func(x fleetEvent, t time.Time) int {
		if x.at.After(t) {
			return 1
		}
		return -1 // equal times keep their order
	})
	w.events = slices.Insert(w.events, i, fe)
}

// deliverEvent hands the next due fleet event to the reaper. One it fails
// to handle comes back after the events queue's visibility timeout, as in
// reaper.PollEvents.
func (w *world) deliverEvent(p *reaperProc) bool {
	fe := w.events[0]
	w.events = w.events[1:]
	n, err := p.r.HandleEvent(w.ctx, fe.e)
	w.tracef("fleet event %s for %s: reclaimed %d, err %v", fe.e.EventID, fe.e.WorkerID, n, err)
	if err != nil {
		fe.at = w.clk.Now().Add(time.Minute)
		w.schedule(fe)
	}
	return n > 0
}

// spawn starts a new worker (the fleet replacing one, or scaling up).
func (w *world) spawn() {
	w.nextID++
	wk := &worker{w: w, id: fmt.Sprintf("sim/w%d", w.nextID), alive: true, concurrency: 1 + w.rnd.IntN(4)}
	if w.faultsOn && !w.settling && w.rnd.Float64() < w.rates.skew {
		w.stats.Skewed++
		var off time.Duration
		if w.rnd.IntN(5) < 3 {
			off = time.Duration(100+w.rnd.IntN(4900)) * time.Millisecond // within the lease's margin
		} else {
			off = time.Duration(35+w.rnd.IntN(85)) * time.Second // beyond it
		}
		if w.rnd.IntN(2) == 0 {
			off = -off
		}
		wk.offset = off
	}
	wk.nextHeartbeat = w.clk.Now().Add(heartbeat)
	w.workers = append(w.workers, wk)
	w.rec.Record(invariant.Event{Kind: invariant.WorkerUp, Owner: wk.id})
	w.tracef("spawn %s (clock %+v, concurrency %d)", wk.id, wk.offset, wk.concurrency)
}
