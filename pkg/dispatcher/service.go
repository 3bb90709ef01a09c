// Package dispatcher is the dispatcher core: it accepts submissions (HTTP
// API, ingress queue), claims each job in the job store with a conditional
// write (same key → one shared job), enqueues its work message, answers
// queries and cancels, and scales the worker fleet.
//
// Service holds the protocol steps; API serves them over HTTP; Scaler
// provisions workers from the backlog. The services/dispatcher binary wires
// them to a profile's adapters.
//
// # Submit (DESIGN.md, protocol step 1)
//
// Validate (a clear InvalidArgument naming each bad field), move a payload
// above the inline limit to the blob store, then one Create per batch (each
// entry conditional: a new id; for a keyed job, the key unclaimed by any
// active job). A key held by an active job returns that job, deduplicated;
// held with a different payload it is a conflict. Then the work messages go
// out in batches. If the process dies between store and send, the job's
// resend deadline makes the reaper send it, so an acknowledged job is never
// stranded.
//
// With Options.GroupCommit, concurrent Submits share their writes (package
// internal/groupcommit): the creates and the sends that arrive while one is
// in flight go out together in the next (up to jobstore.MaxBatch jobs), so
// single submissions under load cost one store transaction and one send
// transaction for many (a lone one waits for nothing). Each caller still
// gets its own results. The local profile turns it on: there every write
// is a transaction that waits for the disk. On DynamoDB every job is its
// own call anyway, so sharing would only cap their parallelism.
package dispatcher

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/jobfleet/jobfleet/pkg/blob"
	"github.com/jobfleet/jobfleet/pkg/clock"
	"github.com/jobfleet/jobfleet/pkg/errcode"
	"github.com/jobfleet/jobfleet/pkg/internal/groupcommit"
	"github.com/jobfleet/jobfleet/pkg/job"
	"github.com/jobfleet/jobfleet/pkg/jobstore"
	"github.com/jobfleet/jobfleet/pkg/metrics"
	"github.com/jobfleet/jobfleet/pkg/queue"
	"github.com/jobfleet/jobfleet/pkg/work"
	"github.com/jobfleet/jobfleet/pkg/worker"
)

// Options configure a Service. Zero fields take the defaults noted.
type Options struct {
	Policy job.Policy // default job.DefaultPolicy
	Limits job.Limits // default job.DefaultLimits
	// Payloads validates payloads of the types it knows (default: the
	// built-in handlers' decoders).
	Payloads *worker.Registry
	// InlineLimit: payloads above this many bytes go to the blob store
	// (default 8 KiB).
	InlineLimit int
	Clock       clock.Clock
	Logger      *slog.Logger
	Metrics     *metrics.Metrics
	// OnEnqueue is called after work messages were sent (the scaler's
	// wake-up); it must not block.
	OnEnqueue func()
	// GroupCommit shares the writes of concurrent Submits (see the package
	// doc).
	GroupCommit bool
}

// Service is the dispatcher's protocol core.
type Service struct {
	store *jobstore.Store
	work  *queue.Queue
	blob  *blob.Bucket
	o     Options
	log   *slog.Logger
	m     *metrics.Metrics

	creates *groupcommit.Group[*job.Job, jobstore.CreateResult]
	sends   *groupcommit.Group[*job.Job, error]
}

// NewService returns a Service over the job store, the work queue and the
// blob store.
func NewService(store *jobstore.Store, workQ *queue.Queue, bucket *blob.Bucket, opts *Options) *Service {
	var o Options
	if opts != nil {
		o = *opts
	}
	if o.Policy.Lease == 0 {
		o.Policy = job.DefaultPolicy
	}
	if o.Limits.MaxPayload == 0 {
		o.Limits = job.DefaultLimits
	}
	if o.InlineLimit == 0 {
		o.InlineLimit = 8 << 10
	}
	o.Clock = clock.Or(o.Clock)
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Metrics == nil {
		o.Metrics = metrics.New()
	}
	if o.OnEnqueue == nil {
		o.OnEnqueue = func() {}
	}
	s := &Service{store: store, work: workQ, blob: bucket, o: o, log: o.Logger, m: o.Metrics}
	if o.GroupCommit {
		// At most one Create call's batch, so that a batch is one driver
		// call: all of it lands or none.
		s.creates = groupcommit.New(s.createNow, &groupcommit.Options{
			MaxItems: jobstore.MaxBatch,
			// A job the store refuses as invalid fails its own submission only.
			Isolate: func(err error) bool { return errcode.Of(err) == errcode.InvalidArgument },
		})
		s.sends = groupcommit.New(s.sendNow, &groupcommit.Options{MaxItems: jobstore.MaxBatch, Timeout: sendTimeout})
	}
	return s
}

func (s *Service) createNow(ctx context.Context, jobs []*job.Job) ([]jobstore.CreateResult, error) {
	return s.store.Create(ctx, jobs...)
}

func (s *Service) sendNow(ctx context.Context, jobs []*job.Job) ([]error, error) {
	return work.Enqueue(ctx, s.work, s.o.Clock.Now(), jobs...)
}

// create stores jobs, in a shared batch with GroupCommit.
func (s *Service) create(ctx context.Context, jobs []*job.Job) ([]jobstore.CreateResult, error) {
	if s.creates == nil {
		return s.createNow(ctx, jobs)
	}
	return s.creates.Do(ctx, jobs)
}

// send sends the work messages of jobs, in a shared batch with GroupCommit.
func (s *Service) send(ctx context.Context, jobs []*job.Job) ([]error, error) {
	if s.sends == nil {
		return s.sendNow(ctx, jobs)
	}
	return s.sends.Do(ctx, jobs)
}

// sendTimeout bounds the send of a submission's work messages, which goes
// out even when the caller has gone.
const sendTimeout = 10 * time.Second

// Store returns the job store (for read paths that need nothing else).
func (s *Service) Store() *jobstore.Store { return s.store }

// Request is one submission. ID is empty for a new id, or set by the
// ingress consumer to an id derived from the message (so a redelivered
// message finds its job instead of making a second).
type Request struct {
	Submission job.Submission
	ID         string
	Source     string // "http" or "ingress", for metrics
}

// Result is the outcome of one submission.
type Result struct {
	Job          *job.Job
	Created      bool // a new job was stored
	Deduplicated bool // an active job already held the key; Job is that job
	Err          error
}

// ErrKeyConflict is returned (wrapped, code AlreadyExists) when a key is
// held by an active job whose payload differs.
var ErrKeyConflict = errors.New("key held by an active job with a different payload")

// KeyConflictError is the error of a submission whose key is held by an
// active job with a different payload: errors.Is matches ErrKeyConflict,
// errcode.Of is AlreadyExists, and errors.As gives the holder's id.
type KeyConflictError struct {
	Key    string
	Holder string // id of the job holding the key
}

func (e *KeyConflictError) Error() string {
	return fmt.Sprintf("key %q is held by job %s with a different payload", e.Key, e.Holder)
}

// Unwrap returns ErrKeyConflict.
func (e *KeyConflictError) Unwrap() error { return ErrKeyConflict }

// Submit validates, stores and enqueues the requests; results are in their
// order. The error is for the call as a whole (nothing was stored).
func (s *Service) Submit(ctx context.Context, reqs ...Request) ([]Result, error) {
	now := s.o.Clock.Now()
	out := make([]Result, len(reqs))
	var jobs []*job.Job
	var idx []int
	for i := range reqs {
		r := &reqs[i]
		sub := r.Submission
		if err := s.validate(ctx, &sub, now); err != nil {
			out[i].Err = err
			continue
		}
		id := r.ID
		if id == "" {
			id = job.NewID(now)
		}
		j := s.o.Policy.New(&sub, s.o.Limits, id, now)
		if len(j.Payload) > s.o.InlineLimit {
			key := PayloadKey(id)
			if _, err := s.blob.PutBytes(ctx, key, j.Payload, "application/json"); err != nil {
				out[i].Err = fmt.Errorf("store payload of job %s: %w", id, err)
				continue
			}
			j.Payload, j.PayloadRef = nil, key
		}
		jobs = append(jobs, j)
		idx = append(idx, i)
	}
	if len(jobs) == 0 {
		return out, nil
	}
	res, err := s.create(ctx, jobs)
	if err != nil {
		return nil, fmt.Errorf("store jobs: %w", err)
	}
	var send []*job.Job
	for k, cr := range res {
		i, j := idx[k], jobs[k]
		switch {
		case cr.Err == nil:
			out[i] = Result{Job: j, Created: true}
			s.m.Submitted.WithLabelValues(j.Type).Inc()
			if j.Status == job.Queued {
				send = append(send, j)
			}
		case errors.Is(cr.Err, errcode.AlreadyExists) && cr.Holder == j.ID:
			// The same id again: a redelivered ingress message. Answer with
			// the job, and re-send its message in case the first try died
			// between store and send (a duplicate message is stale at start).
			held, err := s.store.Get(ctx, j.ID)
			if err != nil {
				out[i].Err = err
				continue
			}
			out[i] = Result{Job: held}
			if held.Status == job.Queued {
				send = append(send, held)
			}
		case errors.Is(cr.Err, errcode.AlreadyExists):
			if cr.HolderPayloadHash != j.PayloadHash {
				out[i].Err = errcode.Wrap(errcode.AlreadyExists, &KeyConflictError{Key: j.Key, Holder: cr.Holder}, "")
				s.dropPayload(ctx, j)
				continue
			}
			held, err := s.store.Get(ctx, cr.Holder)
			if err != nil {
				out[i].Err = fmt.Errorf("read job %s holding key %q: %w", cr.Holder, j.Key, err)
				continue
			}
			out[i] = Result{Job: held, Deduplicated: true}
			s.m.Deduplicated.WithLabelValues(j.Type).Inc()
			s.dropPayload(ctx, j)
		default:
			// Unavailable or canceled may mean the write landed without an
			// answer: keep the payload its job would need.
			out[i].Err = cr.Err
			if errcode.Of(cr.Err) == errcode.InvalidArgument {
				s.dropPayload(ctx, j)
			}
		}
	}
	// The jobs are stored: their messages go out even if the caller has
	// gone (bounded; a failed send is the resend sweep's).
	sendCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), sendTimeout)
	defer cancel()
	s.enqueue(sendCtx, send)
	return out, nil
}

// RejectReason says how a submission's error counts in
// jobfleet_submissions_rejected_total: "key_conflict" or "invalid" for a
// refusal the caller must fix, "" for an error worth retrying (not a
// refusal). Callers count where the refusal is answered: the API per
// answered submission, the ingress per dead-lettered message.
func RejectReason(err error) string {
	switch {
	case errors.Is(err, ErrKeyConflict):
		return "key_conflict"
	case errcode.Of(err) == errcode.InvalidArgument:
		return "invalid"
	}
	return ""
}

// validate checks a submission against the limits and, for known types,
// the handler's payload decoder; a payload_ref must name an existing blob.
func (s *Service) validate(ctx context.Context, sub *job.Submission, now time.Time) error {
	if err := sub.Validate(s.o.Limits, now); err != nil {
		return err
	}
	if s.o.Payloads != nil && sub.PayloadRef == "" {
		if err := s.o.Payloads.Validate(sub.Type, sub.Payload); err != nil {
			return &job.ValidationError{Problems: []job.Problem{{Field: "payload", Detail: err.Error()}}}
		}
	}
	if sub.PayloadRef != "" {
		if err := blob.ValidKey(sub.PayloadRef); err != nil {
			return &job.ValidationError{Problems: []job.Problem{{Field: "payload_ref", Detail: err.Error()}}}
		}
		a, err := s.blob.Head(ctx, sub.PayloadRef)
		switch {
		case errors.Is(err, errcode.NotFound):
			return &job.ValidationError{Problems: []job.Problem{{Field: "payload_ref", Detail: fmt.Sprintf("no blob %q", sub.PayloadRef)}}}
		case err != nil:
			return fmt.Errorf("check payload_ref: %w", err)
		case a.Size > int64(s.o.Limits.MaxPayload):
			return &job.ValidationError{Problems: []job.Problem{{Field: "payload_ref", Detail: fmt.Sprintf("blob is %d bytes; the limit is %d", a.Size, s.o.Limits.MaxPayload)}}}
		}
	}
	return nil
}

// dropPayload removes a payload blob written for a job that was not stored.
func (s *Service) dropPayload(ctx context.Context, j *job.Job) {
	if j.PayloadRef == PayloadKey(j.ID) {
		_ = s.blob.Delete(ctx, j.PayloadRef)
	}
}

// PayloadKey names the blob of a job's large payload.
func PayloadKey(id string) string { return "payloads/" + id + ".json" }

// enqueue sends the work messages of queued jobs in batches. A failed send
// is left to the reaper's resend sweep: the job is stored and due.
func (s *Service) enqueue(ctx context.Context, jobs []*job.Job) {
	if len(jobs) == 0 {
		return
	}
	errs, err := s.send(ctx, jobs)
	if err != nil {
		s.m.Errors.WithLabelValues("dispatcher", "send").Inc()
		s.log.Warn("send work messages; the reaper will re-send them", "n", len(jobs), "err", err)
		return
	}
	for i, e := range errs {
		if e != nil {
			s.m.Errors.WithLabelValues("dispatcher", "send").Inc()
			s.log.Warn("send work message; the reaper will re-send it", "job_id", jobs[i].ID, "err", e)
		}
	}
	s.o.OnEnqueue()
}

// Get returns the job with id.
func (s *Service) Get(ctx context.Context, id string) (*job.Job, error) {
	return s.store.Get(ctx, id)
}

// List returns a page of jobs.
func (s *Service) List(ctx context.Context, q jobstore.ListQuery) (jobstore.Page, error) {
	return s.store.List(ctx, q)
}

// Cancel cancels a queued or scheduled job at once, or asks a running job's
// owner to stop (it sees the request at its next heartbeat). A terminal job
// is errcode.FailedPrecondition.
func (s *Service) Cancel(ctx context.Context, id string) (*job.Job, error) {
	for range 5 {
		cur, err := s.store.Get(ctx, id)
		if err != nil {
			return nil, err
		}
		c, ok := s.o.Policy.RequestCancel(cur, s.o.Clock.Now())
		if !ok {
			return cur, errcode.New(errcode.FailedPrecondition, "job %s is already %s", id, cur.Status)
		}
		n, err := s.store.ApplyOne(ctx, c)
		if errors.Is(err, errcode.FailedPrecondition) {
			continue // it moved on meanwhile: read again
		}
		if err != nil {
			return nil, err
		}
		s.log.Info("cancel", "job_id", id, "attempt", n.Attempt, "status", n.Status)
		return n, nil
	}
	return nil, errcode.New(errcode.Unavailable, "cancel job %s: it keeps changing; try again", id)
}

// Result returns a succeeded job's result: inline bytes, or a reader of the
// blob holding it (the caller closes it). Other jobs have no result
// (errcode.FailedPrecondition).
func (s *Service) Result(ctx context.Context, id string) (*job.Job, io.ReadCloser, error) {
	j, err := s.store.Get(ctx, id)
	if err != nil {
		return nil, nil, err
	}
	if j.Status != job.Succeeded {
		return j, nil, errcode.New(errcode.FailedPrecondition, "job %s is %s; only a SUCCEEDED job has a result", id, j.Status)
	}
	if j.ResultRef == "" {
		return j, nil, nil
	}
	rc, _, err := s.blob.Get(ctx, j.ResultRef, blob.All)
	if err != nil {
		return j, nil, fmt.Errorf("read result of job %s: %w", id, err)
	}
	return j, rc, nil
}

// Logs returns a reader of rng of the log of the job's attempt (0: the
// latest attempt) and the log's attributes.
func (s *Service) Logs(ctx context.Context, id string, attempt int, rng blob.Range) (*job.Job, io.ReadCloser, blob.Attrs, error) {
	j, err := s.store.Get(ctx, id)
	if err != nil {
		return nil, nil, blob.Attrs{}, err
	}
	if attempt == 0 {
		attempt = j.Attempt
	}
	if attempt < 1 || attempt > j.Attempt {
		return j, nil, blob.Attrs{}, errcode.New(errcode.NotFound, "job %s has no attempt %d (it has run %d)", id, attempt, j.Attempt)
	}
	rc, a, err := s.blob.Get(ctx, worker.LogKey(id, attempt), rng)
	if errors.Is(err, errcode.NotFound) {
		return j, nil, blob.Attrs{}, errcode.New(errcode.NotFound, "job %s attempt %d has no log (yet)", id, attempt)
	}
	return j, rc, a, err
}
