package job

import (
	"bytes"
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/jobfleet/jobfleet/pkg/errcode"
)

// Submission is what a producer sends to create a job, over HTTP or the
// ingress queue.
type Submission struct {
	Type        string          `json:"type"`
	Payload     json.RawMessage `json:"payload,omitempty"`
	Key         string          `json:"key,omitempty"`
	MaxAttempts int             `json:"max_attempts,omitempty"`
	Timeout     Duration        `json:"timeout,omitempty"`
	Delay       Duration        `json:"delay,omitempty"`
	RunAt       *time.Time      `json:"run_at,omitempty"`
	// StartWithin fails the job with a "provisioner:" error if it has not
	// started this long after it became runnable (say, no capacity).
	StartWithin Duration `json:"start_within,omitempty"`
	// PayloadRef names a blob already holding the payload (ingress messages
	// over the queue's size limit); the dispatcher checks that it exists.
	PayloadRef string `json:"payload_ref,omitempty"`
}

// Limits bound what a submission may ask for.
type Limits struct {
	// KnownType reports whether a handler type is served; nil accepts any
	// well-formed name.
	KnownType func(string) bool
	// MaxPayload is the largest payload accepted, in bytes.
	MaxPayload int
	// MaxKeyLen is the longest dedup key accepted, in bytes.
	MaxKeyLen int
	// DefaultMaxAttempts applies when a submission leaves max_attempts out;
	// MaxAttempts is the most it may ask for.
	DefaultMaxAttempts, MaxAttempts int
	// DefaultTimeout applies when a submission leaves timeout out;
	// MaxTimeout (the duration cap) is the most it may ask for.
	DefaultTimeout, MaxTimeout time.Duration
	// MaxDelay is the furthest in the future a job may be scheduled.
	MaxDelay time.Duration
}

// DefaultLimits are the limits the services start from.
var DefaultLimits = Limits{
	MaxPayload:         10 << 20,
	MaxKeyLen:          200,
	DefaultMaxAttempts: 5,
	MaxAttempts:        100,
	DefaultTimeout:     4 * time.Hour,
	MaxTimeout:         4 * time.Hour,
	MaxDelay:           365 * 24 * time.Hour,
}

// Problem is one problem with one field of a submission.
type Problem struct {
	Field  string `json:"field"`
	Detail string `json:"detail"`
}

// ValidationError lists everything wrong with a submission. It is an
// errcode.InvalidArgument.
type ValidationError struct {
	Problems []Problem
}

func (e *ValidationError) Error() string {
	parts := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		parts[i] = p.Field + ": " + p.Detail
	}
	return "invalid submission: " + strings.Join(parts, "; ")
}

// Is makes a ValidationError match errcode.InvalidArgument.
func (e *ValidationError) Is(target error) bool { return target == errcode.InvalidArgument }

const maxTypeLen = 64

// ValidType reports whether name is a well-formed handler type name:
// 1-64 characters of letters, digits, '.', '_', '-', starting with a letter.
func ValidType(name string) bool {
	if name == "" || len(name) > maxTypeLen {
		return false
	}
	for i, r := range name {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z':
		case i > 0 && (r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-'):
		default:
			return false
		}
	}
	return true
}

// validKeyChar reports whether r may appear in a dedup key: printable ASCII
// except space, so keys are safe in URLs, logs and every store.
func validKeyChar(r rune) bool { return r > ' ' && r < 0x7f }

// Validate checks s against l at now and returns a *ValidationError listing
// every problem, or nil. It also normalizes the payload (compact JSON).
func (s *Submission) Validate(l Limits, now time.Time) error {
	var probs []Problem
	add := func(field, format string, args ...any) {
		probs = append(probs, Problem{Field: field, Detail: fmt.Sprintf(format, args...)})
	}
	switch {
	case s.Type == "":
		add("type", "is required")
	case !ValidType(s.Type):
		add("type", "must be 1-%d letters, digits, '.', '_' or '-', starting with a letter", maxTypeLen)
	case l.KnownType != nil && !l.KnownType(s.Type):
		add("type", "no handler is registered for type %q", s.Type)
	}
	if len(s.Payload) > 0 {
		switch {
		case l.MaxPayload > 0 && len(s.Payload) > l.MaxPayload:
			add("payload", "is %d bytes; the limit is %d", len(s.Payload), l.MaxPayload)
		case !utf8.Valid(s.Payload):
			add("payload", "is not valid UTF-8")
		case !json.Valid(s.Payload):
			add("payload", "is not valid JSON")
		default:
			var buf bytes.Buffer
			if err := json.Compact(&buf, s.Payload); err == nil {
				s.Payload = buf.Bytes()
			}
		}
		if s.PayloadRef != "" {
			add("payload_ref", "must not be given together with payload")
		}
	}
	if s.Key != "" {
		switch {
		case l.MaxKeyLen > 0 && len(s.Key) > l.MaxKeyLen:
			add("key", "is %d bytes; the limit is %d", len(s.Key), l.MaxKeyLen)
		case strings.IndexFunc(s.Key, func(r rune) bool { return !validKeyChar(r) }) >= 0:
			add("key", "may contain only printable ASCII characters other than space")
		}
	}
	switch {
	case s.MaxAttempts < 0:
		add("max_attempts", "must be at least 1")
	case l.MaxAttempts > 0 && s.MaxAttempts > l.MaxAttempts:
		add("max_attempts", "is %d; the limit is %d", s.MaxAttempts, l.MaxAttempts)
	}
	switch {
	case s.Timeout < 0:
		add("timeout", "must be positive")
	case s.Timeout > 0 && s.Timeout < Duration(time.Second):
		add("timeout", "must be at least 1s")
	case l.MaxTimeout > 0 && time.Duration(s.Timeout) > l.MaxTimeout:
		add("timeout", "is %s; the duration cap is %s", s.Timeout, l.MaxTimeout)
	}
	if s.Delay != 0 && s.RunAt != nil {
		add("delay", "give either delay or run_at, not both")
	}
	switch {
	case s.Delay < 0:
		add("delay", "must not be negative")
	case l.MaxDelay > 0 && time.Duration(s.Delay) > l.MaxDelay:
		add("delay", "is %s; the limit is %s", s.Delay, l.MaxDelay)
	}
	switch {
	case s.StartWithin < 0:
		add("start_within", "must be positive")
	case s.StartWithin > 0 && s.StartWithin < Duration(time.Second):
		add("start_within", "must be at least 1s")
	case l.MaxDelay > 0 && time.Duration(s.StartWithin) > l.MaxDelay:
		add("start_within", "is %s; the limit is %s", s.StartWithin, l.MaxDelay)
	}
	if s.RunAt != nil && l.MaxDelay > 0 && s.RunAt.Sub(now) > l.MaxDelay {
		add("run_at", "is more than %s ahead", l.MaxDelay)
	}
	if len(probs) > 0 {
		return &ValidationError{Problems: probs}
	}
	return nil
}

// PayloadHash returns the hash that identifies a payload for dedup: two
// submissions with one key and different payloads conflict.
func PayloadHash(payload json.RawMessage, ref string) string {
	h := sha256.New()
	if ref != "" {
		h.Write([]byte("ref:"))
		h.Write([]byte(ref))
	} else {
		h.Write(payload)
	}
	return hex.EncodeToString(h.Sum(nil)[:16])
}

// New builds the record for a validated submission with the given id at
// now. The job starts QUEUED (its message delayed until RunAt), or SCHEDULED
// when RunAt is beyond what the queue can delay.
func (p Policy) New(s *Submission, l Limits, id string, now time.Time) *Job {
	j := &Job{
		ID:          id,
		Type:        s.Type,
		Key:         s.Key,
		Payload:     s.Payload,
		PayloadRef:  s.PayloadRef,
		PayloadHash: PayloadHash(s.Payload, s.PayloadRef),
		PayloadSize: int64(len(s.Payload)),
		Attempt:     0,
		MaxAttempts: cmp.Or(s.MaxAttempts, l.DefaultMaxAttempts, DefaultLimits.DefaultMaxAttempts),
		Timeout:     cmp.Or(s.Timeout, Duration(l.DefaultTimeout), Duration(DefaultLimits.DefaultTimeout)),
		CreatedAt:   now,
		UpdatedAt:   now,
		Rev:         1,
	}
	if l.MaxTimeout > 0 && time.Duration(j.Timeout) > l.MaxTimeout {
		j.Timeout = Duration(l.MaxTimeout)
	}
	delay := time.Duration(s.Delay)
	if s.RunAt != nil {
		delay = s.RunAt.Sub(now)
	}
	var set Patch
	p.queueAt(&set, now, delay)
	set.Apply(j)
	if s.StartWithin > 0 {
		j.StartBy = j.RunAt.Add(time.Duration(s.StartWithin))
		if j.Status == Queued {
			j.DueAt = queuedDue(j.ResendAt, j)
		}
	}
	j.Rev = 1
	return j
}
