package worker

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sort"
	"sync"
	"time"

	"github.com/jobfleet/jobfleet/pkg/errcode"
)

// Job is what a handler sees of the job it runs.
type Job struct {
	ID      string
	Type    string
	Key     string
	Attempt int // the fencing token of this run: 1 for the first start
	// Payload is the job's JSON payload (fetched from the blob store first
	// when it was too large to keep inline).
	Payload json.RawMessage
	// Deadline is when this attempt runs out of time; ctx ends then too.
	Deadline time.Time
	// Log is the attempt's log, stored in the blob store when the attempt
	// ends and served by GET /v1/jobs/{id}/logs.
	Log io.Writer
	// Logger logs with job_id, attempt and type attached.
	Logger *slog.Logger

	progress func(json.RawMessage)
}

// Progress records v (any JSON-encodable value, at most 4 KiB encoded) as
// the job's progress; the worker writes it with its next heartbeat.
func (j *Job) Progress(v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("progress: %w", err)
	}
	if len(b) > MaxProgress {
		return fmt.Errorf("progress is %d bytes; the limit is %d", len(b), MaxProgress)
	}
	if j.progress != nil {
		j.progress(b)
	}
	return nil
}

// MaxProgress is the largest encoded progress value.
const MaxProgress = 4 << 10

// Handler runs jobs of one type. It returns the job's result (any JSON, or
// nil) or an error: a plain error is retried with backoff while attempts
// remain; Permanent(err) fails the job at once; Snooze(d) runs it again
// after d without spending an attempt. ctx ends when the attempt's timeout
// passes, the job is cancelled, the worker loses the lease, or the worker
// hands the job back while draining (context.Cause(ctx) is ErrTimeout,
// ErrCancelRequested, ErrLeaseLost or ErrHandBack); a handler should return
// promptly then.
// A panic is a failed attempt.
type Handler interface {
	Handle(ctx context.Context, j *Job) (json.RawMessage, error)
}

// HandlerFunc adapts a function to Handler.
type HandlerFunc func(ctx context.Context, j *Job) (json.RawMessage, error)

// Handle calls f.
func (f HandlerFunc) Handle(ctx context.Context, j *Job) (json.RawMessage, error) { return f(ctx, j) }

type permanentError struct{ err error }

func (e *permanentError) Error() string { return e.err.Error() }
func (e *permanentError) Unwrap() error { return e.err }

// Permanent marks err as not worth retrying: the job fails now.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &permanentError{err}
}

// IsPermanent reports whether err was marked Permanent.
func IsPermanent(err error) bool {
	var p *permanentError
	return errors.As(err, &p)
}

type snoozeError struct{ d time.Duration }

func (e *snoozeError) Error() string { return fmt.Sprintf("snooze %s", e.d) }

// Snooze asks for the job to run again after d, without spending an
// attempt.
func Snooze(d time.Duration) error { return &snoozeError{max(d, 0)} }

// Validator is implemented by payload types that check themselves after
// decoding (Register calls it, and so does the dispatcher before accepting a
// job of a built-in type).
type Validator interface {
	Validate() error
}

type entry struct {
	h        Handler
	validate func(json.RawMessage) error
}

// Registry maps job types to handlers. It is safe for concurrent use.
type Registry struct {
	mu sync.RWMutex
	m  map[string]entry
}

// NewRegistry returns an empty registry.
func NewRegistry() *Registry { return &Registry{m: map[string]entry{}} }

// Handle registers h for typ, replacing any earlier handler.
func (r *Registry) Handle(typ string, h Handler) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.m[typ] = entry{h: h}
}

// Register registers a typed handler: the payload is decoded into P
// (unknown fields refused; P's Validate method called when it has one) and
// the result R encoded as JSON. A payload that does not decode fails the job
// permanently: retrying cannot fix it.
func Register[P, R any](r *Registry, typ string, fn func(ctx context.Context, j *Job, p P) (R, error)) {
	decode := func(raw json.RawMessage) (P, error) {
		var p P
		if len(raw) == 0 {
			raw = json.RawMessage("null")
		}
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&p); err != nil {
			return p, errcode.Wrap(errcode.InvalidArgument, err, "payload for %s", typ)
		}
		if v, ok := any(&p).(Validator); ok {
			if err := v.Validate(); err != nil {
				return p, errcode.Wrap(errcode.InvalidArgument, err, "payload for %s", typ)
			}
		}
		return p, nil
	}
	h := HandlerFunc(func(ctx context.Context, j *Job) (json.RawMessage, error) {
		p, err := decode(j.Payload)
		if err != nil {
			return nil, Permanent(err)
		}
		res, err := fn(ctx, j, p)
		if err != nil {
			return nil, err
		}
		b, err := json.Marshal(res)
		if err != nil {
			return nil, Permanent(fmt.Errorf("encode result: %w", err))
		}
		return b, nil
	})
	r.mu.Lock()
	defer r.mu.Unlock()
	r.m[typ] = entry{h: h, validate: func(raw json.RawMessage) error { _, err := decode(raw); return err }}
}

// Lookup returns the handler for typ.
func (r *Registry) Lookup(typ string) (Handler, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	e, ok := r.m[typ]
	return e.h, ok
}

// Validate checks a payload for typ the way its typed handler will decode
// it. Types registered with Handle, and unknown types, accept any payload.
func (r *Registry) Validate(typ string, payload json.RawMessage) error {
	r.mu.RLock()
	e, ok := r.m[typ]
	r.mu.RUnlock()
	if !ok || e.validate == nil {
		return nil
	}
	return e.validate(payload)
}

// Types returns the registered types, sorted.
func (r *Registry) Types() []string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	out := make([]string, 0, len(r.m))
	for t := range r.m {
		out = append(out, t)
	}
	sort.Strings(out)
	return out
}
