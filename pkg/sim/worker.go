package sim

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/jobfleet/jobfleet/pkg/errcode"
	"github.com/jobfleet/jobfleet/pkg/invariant"
	"github.com/jobfleet/jobfleet/pkg/job"
	"github.com/jobfleet/jobfleet/pkg/jobstore"
	"github.com/jobfleet/jobfleet/pkg/queue"
	"github.com/jobfleet/jobfleet/pkg/work"
	workercore "github.com/jobfleet/jobfleet/pkg/worker"
)

// The worker model.
//
// pkg/worker runs each job in its own goroutine on real timers, which a
// seeded scheduler cannot drive step by step. This model takes the same
// steps, each one scheduler step so that a crash can fall between any two,
// and makes its decisions with the functions the worker core itself calls
// (pkg/worker's decide.go: ResolveStart, AttemptEnd and the context
// causes, RenewalResult, LostCondition, StartLanded, FinishResult,
// Backoff, GiveBackDelay, NearVisibilityCap), with jitter drawn from the
// run's seeded source. What remains here is the sequencing: each function
// names the worker.go function whose steps it follows, and a change to
// those steps must be made here too. Not modelled: uploads (the model's
// commit has none, so a run leaves the running set when its handler
// returns rather than after its commit).

// worker is one simulated worker process.
type worker struct {
	w           *world
	id          string
	offset      time.Duration // its clock is the fake clock plus offset
	concurrency int

	alive, draining bool
	drainAt         time.Time // (fake time) when the drain budget runs out
	handedBack      bool
	stalledUntil    time.Time // (fake time) a stalled worker takes no step before
	ghostUntil      time.Time // (fake time) a crashed worker's long poll is open until

	inbox []*queue.Message // received, not yet started
	runs  []*run           // launched, not yet committed (worker.go's goroutines)
	// running is worker.go's running map, in launch order: the runs whose
	// handler has not returned, which the heartbeat renews and the drain
	// hands back. Like the map, it is keyed by run: two runs of one job
	// (a job re-queued under its old run and started again here) are both
	// in it.
	running       []*run
	nextHeartbeat time.Time // fake time
}

// now is the worker's clock.
func (wk *worker) now() time.Time { return wk.w.clk.Now().Add(wk.offset) }

// stage is how far a run got.
type stage int

const (
	inHandler     stage = iota // the handler runs
	commitOutcome              // write the outcome (fenced)
	commitSend                 // send the next message of a re-queued job
	commitDelete               // delete the received message
)

// script is what a handler will do in one attempt.
type script struct {
	outcome job.Outcome // succeeded, failed, permanent, snoozed or panic
	delay   time.Duration
	dur     time.Duration
}

// run is one running job (worker.go's run).
type run struct {
	msg        *queue.Message
	launchedAt time.Time // fake time
	receivedAt time.Time // the worker's clock
	cur        *job.Job  // the owner's copy of the record
	lost       bool
	msgDeleted bool
	untracked  bool // counted in Notes.Untracked

	script    script
	doneAt    time.Time // fake time the handler returns by itself
	timeoutAt time.Time // fake time its context's deadline passes
	cause     error     // why its context was cancelled, first cause wins
	causeAt   time.Time
	// stopLatency is how long the handler takes to return once its
	// context ends (real handlers notice ctx.Done between units of work;
	// the worker abandons one after AbandonAfter, 5 s).
	stopLatency time.Duration

	stage stage
	end   job.End
	next  *job.Job // the record after a finish that re-queued it
}

// ctxEnd is when the handler's context ends: its deadline, or the first
// cancel.
func (r *run) ctxEnd() time.Time {
	if r.cause != nil && r.causeAt.Before(r.timeoutAt) {
		return r.causeAt
	}
	return r.timeoutAt
}

// returnAt is when the handler returns: done by itself, or a little after
// its context ended.
func (r *run) returnAt() time.Time {
	if t := r.ctxEnd().Add(r.stopLatency); t.Before(r.doneAt) {
		return t
	}
	return r.doneAt
}

func (r *run) cancel(cause error, at time.Time) {
	if r.cause == nil {
		r.cause, r.causeAt = cause, at
	}
}

// inHandler reports whether the handler is still running at fake time t.
func (r *run) inHandler(t time.Time) bool { return r.stage == inHandler && r.returnAt().After(t) }

// tracked returns the runs in worker.running whose handler still runs at
// fake time t: what the heartbeat renews and the drain hands back.
func (wk *worker) tracked(t time.Time) []*run {
	var out []*run
	for _, r := range wk.running {
		if r.inHandler(t) {
			out = append(out, r)
		}
	}
	return out
}

// stalled reports whether the worker is paused at fake time t.
func (wk *worker) stalled(t time.Time) bool { return t.Before(wk.stalledUntil) }

// nextDue is when the worker next has something to do by itself: now
// when it holds received messages or a commit is under way, else the next
// handler return or heartbeat.
func (wk *worker) nextDue(t time.Time) time.Time {
	if len(wk.inbox) > 0 {
		return t
	}
	next := t.Add(time.Hour)
	for _, r := range wk.runs {
		if r.stage != inHandler {
			return t
		}
		if at := r.returnAt(); at.Before(next) {
			next = at
		}
	}
	if len(wk.tracked(t)) > 0 && wk.nextHeartbeat.Before(next) {
		next = wk.nextHeartbeat
	}
	return next
}

// actions lists what the worker can do now.
func (wk *worker) actions(add adder) {
	t := wk.w.clk.Now()
	if wk.stalled(t) {
		return
	}
	if len(wk.inbox) > 0 {
		add(wk.id, "start", "", 6, wk.startAll)
	} else if !wk.draining && len(wk.runs) < wk.concurrency && wk.w.visible {
		// A long poll returns when a message is visible.
		add(wk.id, "receive", "", 2, wk.receive)
	}
	for _, r := range wk.runs {
		if r.inHandler(t) {
			continue
		}
		switch r.stage {
		case inHandler:
			add(wk.id, "handler returns", r.cur.ID, 4, func() bool { return wk.handlerReturned(r) })
		default:
			add(wk.id, "commit", r.cur.ID, 4, func() bool { return wk.commit(r) })
		}
	}
	if len(wk.tracked(t)) > 0 {
		if !t.Before(wk.nextHeartbeat) {
			add(wk.id, "heartbeat", "", 12, wk.heartbeat)
		} else {
			add(wk.id, "heartbeat early", "", 0.05, wk.heartbeat)
		}
	}
	if wk.draining {
		if !wk.handedBack && !t.Before(wk.drainAt) {
			add(wk.id, "hand back", "", 8, wk.handBack)
		}
		if len(wk.runs) == 0 && len(wk.inbox) == 0 {
			add(wk.id, "exit", "", 4, wk.exit)
		}
	}
}

// receive follows fetchLoop: receive up to the free concurrency.
func (wk *worker) receive() bool {
	n := min(wk.concurrency-len(wk.runs), queue.MaxBatch)
	msgs, err := wk.w.work.Receive(wk.w.ctx, queue.ReceiveOptions{Max: n, Visibility: visibility})
	if err != nil {
		return false // fetchLoop logs and sleeps
	}
	wk.inbox = msgs
	return len(msgs) > 0
}

// startAll follows startAll: one batched start for the messages received;
// conflicts go to conflict. A worker that began draining meanwhile gives
// the messages back at once (fetchLoop's giveBack).
func (wk *worker) startAll() bool {
	w := wk.w
	msgs := wk.inbox
	wk.inbox = nil
	if wk.draining {
		changes := make([]queue.VisibilityChange, len(msgs))
		for i, m := range msgs {
			changes[i] = queue.VisibilityChange{Handle: m.Handle}
		}
		_, _ = w.work.ChangeVisibility(w.ctx, changes...)
		return true
	}
	now := wk.now()
	var changes []job.Change
	var held []*queue.Message
	for _, m := range msgs {
		jm, err := job.DecodeMessage(m.Body)
		if err != nil {
			wk.deadLetter(m, err)
			continue
		}
		changes = append(changes, w.policy.Start(jm, wk.id, now))
		held = append(held, m)
	}
	if len(changes) == 0 {
		return true
	}
	res, err := w.store.Apply(w.ctx, changes...)
	if err != nil {
		res = make([]jobstore.ChangeResult, len(changes))
		for i := range res {
			res[i].Err = err
		}
	}
	var later []*queue.Message
	for i, r := range res {
		m := held[i]
		switch {
		case r.Err == nil:
			wk.launch(r.Job, m)
		case errors.Is(r.Err, errcode.FailedPrecondition):
			wk.conflict(m, r.Job, now)
		case errors.Is(r.Err, errcode.NotFound):
			wk.deleteMessage(m)
		default:
			if j := wk.startedByUs(changes[i].ID, changes[i].Set.Values.Attempt); j != nil {
				wk.launch(j, m)
				continue
			}
			later = append(later, m)
		}
	}
	if len(later) > 0 {
		wk.giveBackLater(later)
	}
	return true
}

// giveBackLater follows giveBackLater: messages whose start the store
// refused come back after GiveBackDelay.
func (wk *worker) giveBackLater(msgs []*queue.Message) {
	w := wk.w
	vc := make([]queue.VisibilityChange, len(msgs))
	for i, m := range msgs {
		vc[i] = queue.VisibilityChange{Handle: m.Handle, Timeout: workercore.GiveBackDelay(m.ReceiveCount, visibility)}
		w.notes.GiveBacks++
		w.notes.MaxGiveBackReceives = max(w.notes.MaxGiveBackReceives, m.ReceiveCount)
	}
	_, _ = w.work.ChangeVisibility(w.ctx, vc...)
}

// conflict follows conflict (ResolveStart): take over an expired lease,
// settle a job a takeover would exhaust (or with a cancel pending), or
// drop a stale message.
func (wk *worker) conflict(m *queue.Message, cur *job.Job, now time.Time) {
	w := wk.w
	res, change := workercore.ResolveStart(w.policy, cur, wk.id, now)
	if res == workercore.Stale {
		wk.deleteMessage(m)
		return
	}
	if cur.Owner == wk.id {
		w.notes.SelfTakeovers++ // its own job, whose lease ran out while it ran it
	}
	n, err := w.store.ApplyOne(w.ctx, change)
	if res == workercore.TakeOver && err != nil && !workercore.LostCondition(err) {
		if n = wk.startedByUs(cur.ID, cur.Attempt+1); n != nil {
			err = nil
		}
	}
	switch {
	case res == workercore.TakeOver && err == nil:
		w.tracef("%s took over %s at attempt %d from %s", wk.id, cur.ID, n.Attempt, cur.Owner)
		wk.launch(n, m)
		return
	case res == workercore.Settle && err == nil && n.Status == job.Queued:
		wk.enqueue(n)
	}
	wk.deleteMessage(m) // stale: a lost takeover, or settled
}

// startedByUs follows startedByUs: after a start or takeover that got no
// answer, the job as read if that write landed (StartLanded), else nil.
func (wk *worker) startedByUs(id string, attempt int) *job.Job {
	j, err := wk.w.store.Get(wk.w.ctx, id)
	if err != nil || !workercore.StartLanded(j, wk.id, attempt) {
		return nil
	}
	return j
}

// deadLetter follows deadLetter: an undecodable message goes to the DLQ
// with the reason, then is deleted; if the DLQ refuses it, it stays (and
// reaches the DLQ by redrive).
func (wk *worker) deadLetter(m *queue.Message, reason error) {
	w := wk.w
	why := reason.Error()
	if len(why) > 1024 {
		why = why[:1024]
	}
	res, err := w.dlq.Send(w.ctx, queue.SendEntry{Body: m.Body, Attributes: map[string]string{"reason": why}})
	if err == nil {
		err = res[0].Err
	}
	if err != nil {
		return
	}
	w.rec.Record(invariant.Event{Kind: invariant.DeadLetter, Owner: wk.id, Reason: why})
	wk.deleteMessage(m)
}

func (wk *worker) deleteMessage(m *queue.Message) {
	_, _ = wk.w.work.Delete(wk.w.ctx, m.Handle) // failures are logged by the worker, nothing more
}

// enqueue follows enqueue: send the next message; a failure is left to
// the reaper's resend.
func (wk *worker) enqueue(j *job.Job) {
	_, _ = work.Enqueue(wk.w.ctx, wk.w.work, wk.now(), j)
}

// launch follows launch and the start of execute: the run begins, with its
// deadline on the worker's clock turned into time left.
func (wk *worker) launch(j *job.Job, m *queue.Message) {
	w := wk.w
	t := w.clk.Now()
	r := &run{msg: m, launchedAt: t, receivedAt: wk.now(), cur: j, script: wk.draw(j)}
	r.doneAt = t.Add(r.script.dur)
	switch x := w.rnd.Float64(); {
	case x < 0.7:
		r.stopLatency = time.Duration(w.rnd.IntN(200)) * time.Millisecond
	case x < 0.95:
		r.stopLatency = time.Duration(200+w.rnd.IntN(2800)) * time.Millisecond
	default:
		r.stopLatency = time.Duration(3000+w.rnd.IntN(2000)) * time.Millisecond
	}
	deadline := j.StartedAt.Add(time.Duration(j.Timeout))
	r.timeoutAt = t.Add(deadline.Sub(wk.now()))
	for _, x := range wk.running {
		if x.cur.ID == j.ID && x.inHandler(t) {
			w.notes.Overlaps++
			w.tracef("%s: %s attempt %d starts while its attempt %d still runs here", wk.id, j.ID, j.Attempt, x.cur.Attempt)
		}
	}
	if j.CancelRequested {
		// execute does not call the handler of a job whose cancel is
		// pending: its context ends at once, and nothing runs.
		r.cancel(workercore.ErrCancelRequested, t)
		r.stopLatency = 0
		if !r.doneAt.After(t) {
			r.doneAt = t.Add(time.Millisecond)
		}
	}
	wk.runs = append(wk.runs, r)
	wk.running = append(wk.running, r) // w.running[r]
	w.tracef("%s runs %s attempt %d: %s in %s", wk.id, j.ID, j.Attempt, r.script.outcome, r.script.dur)
}

// draw decides what the handler does in this attempt.
func (wk *worker) draw(j *job.Job) script {
	r := wk.w.rnd
	s := script{outcome: job.OutcomeSucceeded}
	x := r.Float64()
	if wk.w.settling {
		switch {
		case x < 0.12:
			s.outcome = job.OutcomeFailed
		case x < 0.16:
			s.outcome = job.OutcomePermanent
		}
		s.dur = time.Duration(100+r.IntN(5000)) * time.Millisecond
		return s
	}
	switch {
	case x < 0.18:
		s.outcome = job.OutcomeFailed
	case x < 0.22:
		s.outcome = job.OutcomePermanent
	case x < 0.30:
		s.outcome = job.OutcomeSnoozed
		if r.IntN(4) == 0 {
			s.delay = time.Duration(16+r.IntN(10)) * time.Minute // past the queue's delay: SCHEDULED
		} else {
			s.delay = time.Duration(1+r.IntN(60)) * time.Second
		}
	case x < 0.33:
		s.outcome = job.OutcomePanic
	}
	switch y := r.Float64(); {
	case y < 0.75:
		s.dur = time.Duration(100+r.IntN(8000)) * time.Millisecond
	case y < 0.95:
		s.dur = time.Duration(8+r.IntN(40)) * time.Second // needs heartbeats; may time out
	default:
		s.dur = time.Duration(60+r.IntN(120)) * time.Second // slow
	}
	return s
}

// handlerReturned follows the rest of execute: what the handler returned
// and its context's cause become the attempt's end (AttemptEnd); the run
// leaves the running map; a lost lease commits nothing.
func (wk *worker) handlerReturned(r *run) bool {
	w := wk.w
	j := r.cur
	// The context ended before the handler returned: by its deadline, or
	// by the first cancel.
	var cause error
	if r.ctxEnd().Before(r.doneAt) {
		cause = workercore.ErrTimeout
		if r.cause != nil && r.causeAt.Before(r.timeoutAt) {
			cause = r.cause
		}
	}
	// A handler that did not notice its context ending in time ran to
	// completion with its scripted return; one that noticed returns the
	// context's error.
	ret := workercore.Return{Err: cause}
	if !r.ctxEnd().Add(r.stopLatency).Before(r.doneAt) {
		ret = wk.scripted(r)
		w.rec.Record(invariant.Event{Kind: invariant.Executed, Job: j.ID, Attempt: j.Attempt, Owner: wk.id, Outcome: r.script.outcome})
	}
	r.end = workercore.AttemptEnd(j, ret, cause, wk.retryDelay(j))
	// delete(w.running, r)
	for i, x := range wk.running {
		if x == r {
			wk.running = append(wk.running[:i], wk.running[i+1:]...)
			break
		}
	}
	wk.checkTracked()
	if r.lost || errors.Is(cause, workercore.ErrLeaseLost) {
		w.tracef("%s: lease of %s lost; committing nothing", wk.id, j.ID)
		wk.noteLost(r)
		if !r.msgDeleted {
			wk.deleteMessage(r.msg)
		}
		wk.remove(r)
		return true
	}
	r.stage = commitOutcome
	return true
}

// checkTracked counts the runs whose handler still runs but which are no
// longer in the running map (Notes.Untracked): nothing renews their lease
// or hands them back.
func (wk *worker) checkTracked() {
	t := wk.w.clk.Now()
	for _, x := range wk.runs {
		if !x.untracked && x.inHandler(t) && !slices.Contains(wk.running, x) {
			x.untracked = true
			wk.w.notes.Untracked++
			wk.w.tracef("%s: %s attempt %d runs untracked", wk.id, x.cur.ID, x.cur.Attempt)
		}
	}
}

// scripted is what the handler returns when it runs to completion.
func (wk *worker) scripted(r *run) workercore.Return {
	switch r.script.outcome {
	case job.OutcomeSucceeded:
		return workercore.Return{Result: fmt.Appendf(nil, `{"by":%q,"attempt":%d}`, wk.id, r.cur.Attempt)}
	case job.OutcomePanic:
		return workercore.Return{Panic: "panic: simulated"}
	case job.OutcomeSnoozed:
		return workercore.Return{Err: workercore.Snooze(r.script.delay)}
	case job.OutcomePermanent:
		return workercore.Return{Err: workercore.Permanent(errors.New("simulated permanent error"))}
	}
	return workercore.Return{Err: errors.New("simulated error")}
}

// retryDelay follows retryDelay, with the jitter drawn from the run's
// seeded source.
func (wk *worker) retryDelay(j *job.Job) time.Duration {
	return workercore.Backoff(j.Failures+1, retryBase, retryMax, wk.w.rnd.Float64())
}

// commit follows commit, one step per write: the fenced outcome, the next
// message of a re-queued job, the delete of the received message.
func (wk *worker) commit(r *run) bool {
	w := wk.w
	switch r.stage {
	case commitOutcome:
		c := w.policy.Finish(r.cur, wk.now(), r.end)
		n, err := w.store.ApplyOne(w.ctx, c)
		if err != nil && !workercore.LostCondition(err) {
			n, err = wk.resolveFinish(c, err)
		}
		switch {
		case workercore.LostCondition(err):
			w.tracef("%s: lease of %s lost before its outcome was written", wk.id, r.cur.ID)
			wk.noteLost(r)
			r.stage = commitDelete
		case err != nil:
			// Unknown whether it landed: keep the message for redelivery.
			w.tracef("%s: outcome of %s: %v", wk.id, r.cur.ID, err)
			wk.remove(r)
		case n.Status == job.Queued:
			r.next, r.stage = n, commitSend
		default:
			r.stage = commitDelete
		}
	case commitSend:
		wk.enqueue(r.next)
		r.stage = commitDelete
	case commitDelete:
		if !r.msgDeleted {
			wk.deleteMessage(r.msg)
		}
		wk.remove(r)
	}
	return true
}

// resolveFinish follows resolveFinish: read the job after an outcome write
// that got no answer, and go on as FinishResult says.
func (wk *worker) resolveFinish(c job.Change, err error) (*job.Job, error) {
	w := wk.w
	j, gerr := w.store.Get(w.ctx, c.ID)
	if gerr != nil {
		if errors.Is(gerr, errcode.NotFound) {
			return nil, gerr
		}
		return nil, err
	}
	switch workercore.FinishResult(j, c) {
	case workercore.FinishLanded:
		return j, nil
	case workercore.FinishRetry:
		return w.store.ApplyOne(w.ctx, c)
	}
	return nil, errcode.FailedPrecondition
}

// noteLost counts a run that found its attempt lost (Notes.ExpiredUnderOwner)
// when the reaper or another worker ended the attempt as lease_expired:
// its lease ran out while this live worker ran it.
func (wk *worker) noteLost(r *run) {
	j, err := wk.w.truth.Get(wk.w.ctx, r.cur.ID)
	if err != nil {
		return
	}
	for _, h := range j.History {
		if h.Attempt == r.cur.Attempt && h.Outcome == job.OutcomeLeaseExpired {
			wk.w.notes.ExpiredUnderOwner++
			wk.w.tracef("%s: lease of %s attempt %d ran out while it ran here", wk.id, r.cur.ID, r.cur.Attempt)
			return
		}
	}
}

func (wk *worker) remove(r *run) {
	for i, x := range wk.runs {
		if x == r {
			wk.runs = append(wk.runs[:i], wk.runs[i+1:]...)
			return
		}
	}
}

// heartbeat follows heartbeat and extendVisibility: renew every running
// job's lease in one batched write (reading back cancel requests; a lost
// condition means a lost lease), then extend the messages' visibility.
func (wk *worker) heartbeat() bool {
	w := wk.w
	t := w.clk.Now()
	wk.nextHeartbeat = t.Add(heartbeat)
	runs := wk.tracked(t)
	if len(runs) == 0 {
		return false
	}
	now := wk.now()
	changes := make([]job.Change, len(runs))
	for i, r := range runs {
		var progress []byte
		if w.rnd.IntN(3) == 0 {
			progress = fmt.Appendf(nil, `{"step":%d}`, w.step)
		}
		changes[i] = w.policy.Renew(r.cur, now, progress)
	}
	res, err := w.store.Apply(w.ctx, changes...)
	for i, r := range runs {
		rerr := err
		if err == nil {
			rerr = res[i].Err
		}
		switch workercore.RenewalResult(rerr, r.cur, now, heartbeat) {
		case workercore.Renewed:
			r.cur = res[i].Job
			if r.cur.CancelRequested {
				r.cancel(workercore.ErrCancelRequested, t)
			}
		case workercore.LeaseLost:
			r.lost = true
			r.cancel(workercore.ErrLeaseLost, t)
		}
	}
	var vc []queue.VisibilityChange
	for _, r := range runs {
		if r.msgDeleted || r.lost {
			continue
		}
		if workercore.NearVisibilityCap(r.receivedAt, now, visibility, heartbeat) {
			wk.deleteMessage(r.msg)
			r.msgDeleted = true
			continue
		}
		vc = append(vc, queue.VisibilityChange{Handle: r.msg.Handle, Timeout: visibility})
	}
	if len(vc) > 0 {
		_, _ = w.work.ChangeVisibility(w.ctx, vc...)
	}
	return true
}

// ghostReceive is a crashed worker's open long poll taking messages for
// nobody.
func (wk *worker) ghostReceive() bool {
	msgs, err := wk.w.work.Receive(wk.w.ctx, queue.ReceiveOptions{Max: queue.MaxBatch, Visibility: visibility})
	if err == nil && len(msgs) > 0 {
		wk.w.tracef("%s's orphaned poll took %d messages", wk.id, len(msgs))
		wk.ghostUntil = time.Time{} // a long poll returns with what it got
		return true
	}
	return false
}

// stall pauses the worker (a long GC pause, CPU starvation, a frozen VM):
// it takes no step, heartbeats included, for a while; then it goes on
// where it was, as if no time had passed for it.
func (wk *worker) stall() bool {
	wk.stalledUntil = wk.w.clk.Now().Add(time.Duration(5+wk.w.rnd.IntN(85)) * time.Second)
	wk.w.stats.Stalls++
	return true
}

// drain follows Stop's first half: stop receiving, let running jobs go on
// for the drain budget.
func (wk *worker) drain() bool {
	wk.draining = true
	wk.drainAt = wk.w.clk.Now().Add(drainTimeout)
	wk.w.stats.Drains++
	return true
}

// handBack follows Stop once the drain budget is spent: the jobs still
// running are cancelled, to be handed back.
func (wk *worker) handBack() bool {
	wk.handedBack = true
	t := wk.w.clk.Now()
	for _, r := range wk.tracked(t) {
		r.cancel(workercore.ErrHandBack, t)
	}
	return true
}

// exit ends a drained worker; the fleet reports it stopped.
func (wk *worker) exit() bool {
	wk.alive = false
	wk.w.rec.Record(invariant.Event{Kind: invariant.WorkerDown, Owner: wk.id})
	wk.w.emit(wk.id, stopDrained)
	return true
}

// crash kills the worker at once: its local state is gone, its messages
// come back after their visibility timeout, and the fleet reports it
// stopped. Its last long poll may stay open at the queue for a while (SQS
// does not notice a client that went away): messages that arrive meanwhile
// are claimed for nobody and stay invisible for their visibility timeout.
func (wk *worker) crash() bool {
	wk.alive = false
	wk.inbox, wk.runs, wk.running = nil, nil, nil
	wk.w.stats.Crashes++
	if wk.w.rnd.IntN(2) == 0 {
		wk.ghostUntil = wk.w.clk.Now().Add(time.Duration(wk.w.rnd.IntN(int(queue.MaxWait/time.Millisecond))) * time.Millisecond)
	}
	wk.w.rec.Record(invariant.Event{Kind: invariant.WorkerDown, Owner: wk.id})
	wk.w.emit(wk.id, pick(wk.w.rnd, []stopEvent{stopCrashed, stopOOM, stopSpot}))
	return true
}
