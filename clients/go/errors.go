package notify

import (
	"errors"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// ErrorInfo reasons the server sets (errdetails.ErrorInfo, domain "notify").
const (
	ReasonTokenMissing      = "TOKEN_MISSING"
	ReasonTokenInvalid      = "TOKEN_INVALID"
	ReasonTokenExpired      = "TOKEN_EXPIRED"
	ReasonPermissionDenied  = "PERMISSION_DENIED"
	ReasonInvalidArgument   = "INVALID_ARGUMENT"
	ReasonInvalidRoom       = "INVALID_ROOM"
	ReasonSlowConsumer      = "SLOW_CONSUMER"
	ReasonServerRestart     = "SERVER_RESTART"
	ReasonBrokerUnavailable = "BROKER_UNAVAILABLE"
	// ReasonIdempotencyKeyReused (FAILED_PRECONDITION): the idempotency
	// key (or action id) was used before for a different request; use a
	// new key for a new request.
	ReasonIdempotencyKeyReused = "IDEMPOTENCY_KEY_REUSED"
	// ReasonInboxWriteFailed (UNAVAILABLE): the event was published but
	// its inbox rows were not stored; retry with the same key.
	ReasonInboxWriteFailed = "INBOX_WRITE_FAILED"
)

// ErrClientClosed ends the subscriptions of a closed Client.
var ErrClientClosed = errors.New("notify: client closed")

// ErrorInfo returns the errdetails.ErrorInfo of a status error, or nil.
func ErrorInfo(err error) *errdetails.ErrorInfo {
	st, ok := status.FromError(err)
	if !ok {
		return nil
	}
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok {
			return info
		}
	}
	return nil
}

// ErrorReason returns the ErrorInfo reason of a status error (such as
// TOKEN_EXPIRED or SLOW_CONSUMER), or "".
func ErrorReason(err error) string {
	if info := ErrorInfo(err); info != nil {
		return info.Reason
	}
	return ""
}

// IsPermanent reports whether err is one that retrying the same request
// with the same credentials cannot cure: InvalidArgument, PermissionDenied,
// Unimplemented, or Unauthenticated for any reason but an expired token.
// Subscriptions stop on these.
func IsPermanent(err error) bool {
	switch status.Code(err) {
	case codes.InvalidArgument, codes.PermissionDenied, codes.Unimplemented:
		return true
	case codes.Unauthenticated:
		return ErrorReason(err) != ReasonTokenExpired
	}
	return false
}
