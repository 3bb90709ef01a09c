package dispatcher

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"time"

	"github.com/jobfleet/jobfleet/pkg/errcode"
	"github.com/jobfleet/jobfleet/pkg/internal/startstop"
	"github.com/jobfleet/jobfleet/pkg/job"
	"github.com/jobfleet/jobfleet/pkg/metrics"
	"github.com/jobfleet/jobfleet/pkg/queue"
)

// IngressOptions configure an Ingress consumer. Zero fields take the
// defaults noted.
type IngressOptions struct {
	// DLQ receives messages that are malformed or invalid, with the reason
	// in a "reason" attribute (and "code", the problem's errcode name).
	DLQ *queue.Queue
	// Wait is the long-poll wait (default 20 s).
	Wait    time.Duration
	Logger  *slog.Logger
	Metrics *metrics.Metrics
}

// Ingress consumes the ingress queue: producers in any language send the
// same JSON as POST /v1/jobs (see docs/ingress.schema.json), plus an
// optional payload_ref naming a blob that already holds a large payload.
//
// Each message becomes a job whose id is derived from the message (its id
// and send time), so a redelivered message finds its job instead of making
// a second one. A message is deleted only after its job is stored; its work
// message is sent then too, and if that send fails the reaper's resend sweep
// sends it. A malformed or invalid message goes to the DLQ with the reason
// and never stops the consumer; a message that fails for a passing reason
// (the store is unavailable) is left to be received again, and reaches the
// DLQ through the queue's redrive if it keeps failing.
type Ingress struct {
	svc *Service
	q   *queue.Queue
	o   IngressOptions
	log *slog.Logger
	m   *metrics.Metrics

	run startstop.Group
}

// NewIngress returns a consumer of q that submits through svc.
func NewIngress(svc *Service, q *queue.Queue, opts *IngressOptions) *Ingress {
	var o IngressOptions
	if opts != nil {
		o = *opts
	}
	if o.Wait <= 0 {
		o.Wait = queue.MaxWait
	}
	if o.Logger == nil {
		o.Logger = svc.log
	}
	if o.Metrics == nil {
		o.Metrics = svc.m
	}
	return &Ingress{svc: svc, q: q, o: o, log: o.Logger, m: o.Metrics}
}

// Start consumes until Stop or ctx ends.
func (in *Ingress) Start(ctx context.Context) error { return in.run.Start(ctx, "ingress", in.loop) }

// Stop stops consuming and waits. Safe twice and before Start.
func (in *Ingress) Stop() { in.run.Stop() }

func (in *Ingress) loop(ctx context.Context) {
	for ctx.Err() == nil {
		if _, err := in.Poll(ctx); err != nil && ctx.Err() == nil {
			in.m.Errors.WithLabelValues("ingress", "poll").Inc()
			in.log.Error("ingress", "queue", in.q.Name(), "err", err)
			t := time.NewTimer(time.Second)
			select {
			case <-ctx.Done():
			case <-t.C:
			}
			t.Stop()
		}
	}
}

// IngressResult counts what one Poll did.
type IngressResult struct {
	Received, Submitted, Deduplicated, Rejected, Retried int
}

// Poll receives one batch (waiting up to Wait) and handles it.
func (in *Ingress) Poll(ctx context.Context) (IngressResult, error) {
	var res IngressResult
	msgs, err := in.q.Receive(ctx, queue.ReceiveOptions{Max: queue.MaxBatch, Wait: in.o.Wait})
	if err != nil || len(msgs) == 0 {
		return res, err
	}
	res.Received = len(msgs)
	var reqs []Request
	var held []*queue.Message
	var done []string
	for _, m := range msgs {
		sub, rerr := decodeSubmission(m.Body, "the message", true)
		if rerr != nil {
			if in.reject(ctx, m, rerr.p.Detail+details(rerr.p), errcode.InvalidArgument, "malformed") {
				done = append(done, m.Handle)
			}
			res.Rejected++
			continue
		}
		reqs = append(reqs, Request{Submission: sub, ID: job.DerivedID(m.SentAt, []byte(m.ID)), Source: "ingress"})
		held = append(held, m)
	}
	if len(reqs) > 0 {
		results, err := in.svc.Submit(ctx, reqs...)
		if err != nil {
			// Nothing stored: all come back after their visibility timeout.
			in.delete(ctx, done)
			return res, err
		}
		for i, r := range results {
			m := held[i]
			switch {
			case r.Err == nil:
				if r.Deduplicated {
					res.Deduplicated++
				} else {
					res.Submitted++
				}
				done = append(done, m.Handle)
			case RejectReason(r.Err) != "":
				res.Rejected++
				if in.reject(ctx, m, r.Err.Error(), errcode.Of(r.Err), RejectReason(r.Err)) {
					done = append(done, m.Handle)
				}
			default:
				res.Retried++
				in.log.Warn("ingress message will be retried", "message_id", m.ID, "receive_count", m.ReceiveCount, "err", r.Err)
			}
		}
	}
	in.delete(ctx, done)
	return res, nil
}

func details(p *Problem) string {
	if len(p.Errors) == 0 {
		return ""
	}
	parts := make([]string, len(p.Errors))
	for i, e := range p.Errors {
		parts[i] = e.Field + ": " + e.Detail
	}
	return " (" + strings.Join(parts, "; ") + ")"
}

// reject moves a message to the DLQ with the reason; it reports whether the
// original may be deleted (without a DLQ, it is deleted after logging). A
// rejection is counted (under class) once the message has left the queue
// that way, so a message that comes back is not counted twice.
func (in *Ingress) reject(ctx context.Context, m *queue.Message, reason string, code errcode.Code, class string) (gone bool) {
	defer func() {
		if gone {
			in.m.Rejected.WithLabelValues("ingress", class).Inc()
		}
	}()
	in.log.Warn("ingress message rejected", "message_id", m.ID, "reason", reason)
	if in.o.DLQ == nil {
		return true
	}
	if len(reason) > 1024 {
		reason = reason[:1024]
	}
	attrs := map[string]string{"reason": reason, "code": CodeName(code)}
	for k, v := range m.Attributes {
		if len(attrs) >= queue.MaxAttributes {
			break
		}
		if _, taken := attrs[k]; !taken {
			attrs[k] = v
		}
	}
	res, err := in.o.DLQ.Send(ctx, queue.SendEntry{Body: m.Body, Attributes: attrs})
	if err == nil {
		err = res[0].Err
	}
	if err != nil {
		in.log.Error("dead-letter ingress message; leaving it for redrive", "message_id", m.ID, "err", err)
		return false
	}
	return true
}

func (in *Ingress) delete(ctx context.Context, handles []string) {
	if len(handles) == 0 {
		return
	}
	errs, err := in.q.Delete(ctx, handles...)
	if err == nil {
		err = errors.Join(errs...)
	}
	if err != nil {
		in.m.Errors.WithLabelValues("ingress", "delete").Inc()
		in.log.Warn("delete ingress messages; they will be received again and find their jobs", "err", err)
	}
}
