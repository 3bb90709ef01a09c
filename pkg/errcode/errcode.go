// Package errcode is jobfleet's small set of error codes.
//
// Every adapter maps its backend's errors to these codes once, at its edge (a
// failed DynamoDB condition and a SQLite update that touched no row both become
// FailedPrecondition), so the cores never inspect backend errors. A Code is
// itself an error and the sentinel for errors.Is:
//
//	if errors.Is(err, errcode.FailedPrecondition) { /* lost the race */ }
//
// Errors built with New or Wrap carry a code, a message and an optional cause;
// Of recovers the code from any wrapped chain.
package errcode

import (
	"context"
	"errors"
	"fmt"
)

// Code classifies an error by what the caller can do about it.
type Code uint8

const (
	// Unknown is the code of an error that carries none.
	Unknown Code = iota
	// NotFound: the job, message, object or resource does not exist.
	NotFound
	// AlreadyExists: a create found the id or key taken.
	AlreadyExists
	// FailedPrecondition: a conditional write lost (wrong status, attempt,
	// owner or lease), or the operation does not apply to the current state.
	FailedPrecondition
	// InvalidArgument: the input is malformed or out of range; retrying the
	// same input cannot succeed.
	InvalidArgument
	// ResourceExhausted: a quota, rate limit or capacity ran out; retry later.
	ResourceExhausted
	// Unavailable: the backend could not be reached or is throttling; retry.
	Unavailable
	// Closed: the component was used after Close.
	Closed
	// Internal: a bug or a corrupt record.
	Internal
	// Canceled: the caller's context was canceled or its deadline passed.
	Canceled
)

var names = [...]string{
	Unknown:            "unknown",
	NotFound:           "not found",
	AlreadyExists:      "already exists",
	FailedPrecondition: "failed precondition",
	InvalidArgument:    "invalid argument",
	ResourceExhausted:  "resource exhausted",
	Unavailable:        "unavailable",
	Closed:             "closed",
	Internal:           "internal",
	Canceled:           "canceled",
}

// String returns the code's name.
func (c Code) String() string {
	if int(c) < len(names) {
		return names[c]
	}
	return fmt.Sprintf("code(%d)", uint8(c))
}

// Error makes a Code usable as a sentinel error.
func (c Code) Error() string { return c.String() }

// Error is an error with a code.
type Error struct {
	Code Code
	Msg  string
	Err  error // cause, may be nil
}

func (e *Error) Error() string {
	switch {
	case e.Err == nil:
		return e.Msg
	case e.Msg == "":
		return e.Err.Error()
	default:
		return e.Msg + ": " + e.Err.Error()
	}
}

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.Err }

// Is reports whether target is e's code.
func (e *Error) Is(target error) bool {
	c, ok := target.(Code)
	return ok && c == e.Code
}

// New returns an error with code and a formatted message.
func New(code Code, format string, args ...any) error {
	return &Error{Code: code, Msg: fmt.Sprintf(format, args...)}
}

// Wrap returns err with code and a message saying what was being done.
// Wrap(code, nil, ...) returns nil.
func Wrap(code Code, err error, format string, args ...any) error {
	if err == nil {
		return nil
	}
	return &Error{Code: code, Msg: fmt.Sprintf(format, args...), Err: err}
}

// Of returns the code of the first coded error in err's chain. Context
// cancellation and deadline errors are Canceled; nil is Unknown.
func Of(err error) Code {
	if err == nil {
		return Unknown
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	var c Code
	if errors.As(err, &c) {
		return c
	}
	// Error types that match a code through an Is method.
	for code := NotFound; code <= Canceled; code++ {
		if errors.Is(err, code) {
			return code
		}
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return Canceled
	}
	return Unknown
}

// Retryable reports whether the same call may succeed later.
func Retryable(err error) bool {
	switch Of(err) {
	case Unavailable, ResourceExhausted:
		return true
	}
	return false
}
