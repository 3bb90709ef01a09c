package dispatcher

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/jobfleet/jobfleet/pkg/clock"
	"github.com/jobfleet/jobfleet/pkg/errcode"
	"github.com/jobfleet/jobfleet/pkg/fleet"
	"github.com/jobfleet/jobfleet/pkg/internal/startstop"
	"github.com/jobfleet/jobfleet/pkg/job"
	"github.com/jobfleet/jobfleet/pkg/jobstore"
	"github.com/jobfleet/jobfleet/pkg/metrics"
	"github.com/jobfleet/jobfleet/pkg/queue"
)

// ScalerOptions configure a Scaler. Zero fields take the defaults noted.
type ScalerOptions struct {
	// PerWorker is how many jobs one worker runs at once (its concurrency;
	// default 4).
	PerWorker int
	// Min and Max bound the fleet (defaults 0 and 4).
	Min, Max int
	// Interval is the scaling period (default 1 s); Wake also triggers a
	// check at once.
	Interval time.Duration
	// Grace is how long a just-provisioned worker counts as active even
	// when the fleet's listing does not show it yet (ECS listings are
	// eventually consistent; default 2 min).
	Grace time.Duration
	// Store, when set, is where the scaler notes on queued jobs why they
	// wait while provisioning keeps failing ("waiting for capacity: ...",
	// or "cannot provision workers: ..." when the failure is not worth
	// retrying, in the job's detail), and clears the note once a check
	// falls short no more (it provisioned all it needed, or needs none).
	// Policy builds those writes (default job.DefaultPolicy).
	Store  *jobstore.Store
	Policy job.Policy
	// Elector, when set, makes this scaler provision only while it leads
	// (one active scaler across dispatcher replicas).
	Elector *Elector
	// OnDecision, when set, sees every check's decision (e.g. to publish
	// it to CloudWatch); it must not block.
	OnDecision func(Decision)
	Clock      clock.Clock
	Logger     *slog.Logger
	Metrics    *metrics.Metrics
}

// Scaler provisions workers for the work queue's backlog:
//
//	desired = clamp(ceil((visible + in flight) / PerWorker), Min, Max)
//
// counting running and pending workers (and ones it just started that the
// listing may not show yet) as active, and provisioning the difference.
// Scale-in is the workers' own: they exit after their idle timeout.
// Provisioning failures that are worth retrying back off exponentially (1 s
// doubling to 1 min) and are counted by reason.
type Scaler struct {
	fleet *fleet.Fleet
	work  *queue.Queue
	o     ScalerOptions
	log   *slog.Logger
	m     *metrics.Metrics
	wake  chan struct{}

	mu          sync.Mutex
	recent      map[string]time.Time // provisioned id → when
	retryAt     time.Time
	failBackoff time.Duration
	lastFailure string
	last        Decision // the last check's, for the fleet view

	run startstop.Group
}

// NewScaler returns a scaler for the fleet and work queue.
func NewScaler(f *fleet.Fleet, work *queue.Queue, opts *ScalerOptions) *Scaler {
	var o ScalerOptions
	if opts != nil {
		o = *opts
	}
	if o.PerWorker <= 0 {
		o.PerWorker = 4
	}
	if o.Max == 0 {
		o.Max = 4
	}
	if o.Interval <= 0 {
		o.Interval = time.Second
	}
	if o.Grace <= 0 {
		o.Grace = 2 * time.Minute
	}
	if o.Policy.Lease == 0 {
		o.Policy = job.DefaultPolicy
	}
	o.Clock = clock.Or(o.Clock)
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Metrics == nil {
		o.Metrics = metrics.New()
	}
	return &Scaler{fleet: f, work: work, o: o, log: o.Logger, m: o.Metrics,
		wake: make(chan struct{}, 1), recent: map[string]time.Time{}}
}

// Wake asks for a scaling check now (new work arrived). It never blocks.
func (s *Scaler) Wake() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// Start runs the scaling loop until Stop or ctx ends.
func (s *Scaler) Start(ctx context.Context) error { return s.run.Start(ctx, "scaler", s.loop) }

// Stop stops the loop and waits for it, then gives up the scaler lease.
// Safe twice and before Start.
func (s *Scaler) Stop() {
	if !s.run.Stop() || s.o.Elector == nil {
		return
	}
	// Bounded: a lost release only delays the next leader by the TTL.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.o.Elector.Resign(ctx); err != nil {
		s.log.Warn("resign the scaler lease", "err", err)
	}
}

func (s *Scaler) loop(ctx context.Context) {
	t := time.NewTicker(s.o.Interval)
	defer t.Stop()
	for {
		if _, err := s.Scale(ctx); err != nil && ctx.Err() == nil {
			s.log.Warn("scale", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-s.wake:
		}
	}
}

// Decision is what one Scale call saw and did.
type Decision struct {
	Backlog     int64 // visible + in flight work messages
	Active      int   // workers running or starting
	Desired     int
	Provisioned int
	Failed      int
	Reason      string // why provisioning failed, if it did
	Follower    bool   // another replica's scaler leads; this one only watched
}

// Desired is the scaling rule: enough workers for the backlog at perWorker
// jobs each, within [min, max].
func Desired(backlog int64, perWorker, minW, maxW int) int {
	n := int((backlog + int64(perWorker) - 1) / int64(perWorker))
	return max(minW, min(n, maxW))
}

// Scale runs one scaling check.
func (s *Scaler) Scale(ctx context.Context) (d Decision, err error) {
	defer func() {
		if err != nil {
			return
		}
		s.mu.Lock()
		s.last = d
		s.mu.Unlock()
		if s.o.OnDecision != nil {
			s.o.OnDecision(d)
		}
	}()
	depth, err := s.work.Depth(ctx)
	if err != nil {
		return d, err
	}
	d.Backlog = depth.Visible + depth.InFlight
	for _, st := range []struct {
		name string
		n    int64
	}{{"visible", depth.Visible}, {"in_flight", depth.InFlight}, {"delayed", depth.Delayed}} {
		s.m.Backlog.WithLabelValues(s.work.Name(), st.name).Set(float64(st.n))
	}
	workers, err := s.fleet.List(ctx)
	if err != nil {
		return d, err
	}
	now := s.o.Clock.Now()
	var pending, running int
	seen := map[string]bool{}
	for _, w := range workers {
		seen[w.ID] = true
		switch {
		case !w.Active():
		case w.Pending():
			pending++
		default:
			running++
		}
	}
	s.mu.Lock()
	for id, at := range s.recent {
		switch {
		case seen[id] || now.Sub(at) > s.o.Grace:
			delete(s.recent, id)
		default:
			pending++ // started, not listed yet
		}
	}
	retryAt := s.retryAt
	s.mu.Unlock()
	d.Active = pending + running
	d.Desired = Desired(d.Backlog, s.o.PerWorker, s.o.Min, s.o.Max)
	s.m.Workers.WithLabelValues("pending").Set(float64(pending))
	s.m.Workers.WithLabelValues("running").Set(float64(running))
	s.m.ScalerDesired.Set(float64(d.Desired))
	s.m.ScalerActual.Set(float64(d.Active))
	s.m.BacklogPerWorker.Set(float64(d.Backlog) / float64(max(d.Active, 1)))

	need := d.Desired - d.Active
	if need <= 0 {
		// Nothing falls short (the backlog drained, its jobs were
		// cancelled, or workers came up): a past failure no longer
		// explains any wait. The backoff stays, for the next need. Only
		// the leader touches the notes, so a replica that led once does
		// not wipe the current leader's.
		if s.LastFailure() != "" {
			lead, err := s.leads(ctx)
			if err != nil || !lead {
				d.Follower = !lead
				return d, err
			}
			s.clearFailure(ctx, now)
		}
		return d, nil
	}
	if now.Before(retryAt) {
		return d, nil
	}
	if lead, err := s.leads(ctx); err != nil || !lead {
		d.Follower = !lead
		return d, err
	}
	p, err := s.fleet.Provision(ctx, need)
	d.Provisioned = len(p.Workers)
	s.m.Provisioned.Add(float64(len(p.Workers)))
	// A failure only an operator can fix is the one to report, whatever
	// else fell short with it.
	retry, fatal := false, ""
	for _, f := range p.Failures {
		d.Failed += f.Count
		d.Reason = f.Reason
		s.m.ProvisionFailures.WithLabelValues(reasonLabel(f.Reason)).Add(float64(f.Count))
		retry = retry || f.Retryable
		if !f.Retryable && fatal == "" {
			fatal = f.Reason
		}
	}
	if err != nil {
		d.Reason = err.Error()
		s.m.ProvisionFailures.WithLabelValues("error").Add(float64(need - d.Provisioned))
		transient := errcode.Retryable(err) || errors.Is(err, context.DeadlineExceeded)
		retry = retry || transient
		if !transient && fatal == "" {
			fatal = d.Reason
		}
	}
	if fatal != "" {
		d.Reason = fatal
	}
	failed := retry || d.Failed > 0 || err != nil
	// The state changes under the lock; the notes (store writes) are
	// written after it, so that Last does not wait for them.
	s.mu.Lock()
	for _, w := range p.Workers {
		s.recent[w.ID] = now
	}
	had := s.lastFailure != ""
	if failed {
		s.failBackoff = min(max(2*s.failBackoff, time.Second), time.Minute)
		s.retryAt = now.Add(s.failBackoff)
		s.lastFailure = d.Reason
	} else {
		s.failBackoff, s.lastFailure = 0, ""
	}
	backoff := s.failBackoff
	s.mu.Unlock()
	switch {
	case failed:
		s.log.Warn("provisioning fell short", "wanted", need, "started", d.Provisioned, "reason", d.Reason, "retryable", fatal == "", "retry_in", backoff.String())
		if fatal == "" {
			s.note(ctx, now, noteWaitingForCapacity+d.Reason)
		} else {
			s.note(ctx, now, noteCannotProvision+d.Reason)
		}
	default:
		if had {
			s.note(ctx, now, "")
		}
		if d.Provisioned > 0 {
			s.log.Info("provisioned workers", "n", d.Provisioned, "backlog", d.Backlog, "active", d.Active, "desired", d.Desired)
		}
	}
	return d, err
}

// leads reports whether this scaler may provision: always without an
// elector, else while it holds the lease.
func (s *Scaler) leads(ctx context.Context) (bool, error) {
	if s.o.Elector == nil {
		return true, nil
	}
	return s.o.Elector.Leader(ctx)
}

// The notes on queued jobs while provisioning falls short, followed by
// the reason: a retryable failure (capacity, ENI, throttling) is waited
// out; another one (e.g. a bad task definition, missing permissions) needs
// an operator. A job that passes its start deadline fails with a
// "provisioner:" error quoting the note.
const (
	noteWaitingForCapacity = "waiting for capacity: "
	noteCannotProvision    = "cannot provision workers: "
)

// clearFailure forgets the last provisioning failure and clears its note.
func (s *Scaler) clearFailure(ctx context.Context, now time.Time) {
	s.mu.Lock()
	had := s.lastFailure != ""
	s.lastFailure = ""
	s.mu.Unlock()
	if had {
		s.note(ctx, now, "")
	}
}

// noteBatch is how many queued jobs (the longest waiting) get the note.
const noteBatch = 100

// note sets detail on the longest-waiting queued jobs whose detail differs
// ("" clears it). Best effort: a job that moved on meanwhile keeps its own
// state (the write is conditional), and errors are only logged.
func (s *Scaler) note(ctx context.Context, now time.Time, detail string) {
	if s.o.Store == nil {
		return
	}
	jobs, err := s.o.Store.Due(ctx, job.Queued, now.AddDate(100, 0, 0), noteBatch)
	if err != nil {
		s.log.Warn("note queued jobs", "err", err)
		return
	}
	var changes []job.Change
	for _, j := range jobs {
		if j.Detail != detail {
			changes = append(changes, s.o.Policy.Note(j, now, detail))
		}
	}
	if len(changes) == 0 {
		return
	}
	if _, err := s.o.Store.Apply(ctx, changes...); err != nil {
		s.log.Warn("note queued jobs", "err", err)
	}
}

// Last returns the last scaling check's decision and why provisioning last
// fell short ("" when it did not).
func (s *Scaler) Last() (Decision, string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.last, s.lastFailure
}

// LastFailure returns why the last provisioning fell short ("" when it did
// not).
func (s *Scaler) LastFailure() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lastFailure
}

// reasonLabel keeps the metric's label set small: the reason's first word
// (ECS reasons look like "RESOURCE:ENI" or "Capacity is unavailable ...").
func reasonLabel(r string) string {
	if i := strings.IndexByte(r, ' '); i > 0 {
		r = r[:i]
	}
	if len(r) > 40 {
		r = r[:40]
	}
	if r == "" {
		return "unknown"
	}
	return r
}
