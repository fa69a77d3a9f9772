package limit

import (
	"errors"
	"time"
)

// Reasons a limit refuses, as the ErrorInfo reason the edge returns.
const (
	// ReasonRateLimited: more events or connections per second than allowed.
	ReasonRateLimited = "RATE_LIMITED"
	// ReasonTooManyStreams: the user has as many streams open as allowed.
	ReasonTooManyStreams = "TOO_MANY_STREAMS"
	// ReasonTooManyConnections: the listener has as many connections open
	// as allowed.
	ReasonTooManyConnections = "TOO_MANY_CONNECTIONS"
)

// ErrLimited is wrapped by every refusal of this package.
var ErrLimited = errors.New("limit exceeded")

// Sentinels matching, with errors.Is, every refusal of their reason.
var (
	// ErrRateLimited matches refusals with ReasonRateLimited.
	ErrRateLimited = &Error{Reason: ReasonRateLimited, msg: "rate limited"}
	// ErrTooManyStreams matches refusals with ReasonTooManyStreams.
	ErrTooManyStreams = &Error{Reason: ReasonTooManyStreams, msg: "too many streams"}
	// ErrTooManyConnections matches refusals with ReasonTooManyConnections.
	ErrTooManyConnections = &Error{Reason: ReasonTooManyConnections, msg: "too many connections"}
)

// Error is a refusal by a limit. It wraps ErrLimited.
type Error struct {
	// Reason is one of the Reason* constants.
	Reason string
	// RetryAfter is how long until the same request would pass, if nothing
	// else uses the limit meanwhile; zero when unknown.
	RetryAfter time.Duration
	msg        string
}

// Error describes the refusal.
func (e *Error) Error() string { return e.msg }

// Unwrap returns ErrLimited.
func (e *Error) Unwrap() error { return ErrLimited }

// Is reports whether target is an *Error with the same reason, so that
// errors.Is(err, ErrRateLimited) matches every rate refusal.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Reason == e.Reason
}

// Reason returns the reason of the refusal in err's chain, if any.
func Reason(err error) (string, bool) {
	var e *Error
	if errors.As(err, &e) {
		return e.Reason, true
	}
	return "", false
}
