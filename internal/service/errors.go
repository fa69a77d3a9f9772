package service

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/maxloyalty/notify/internal/access"
	"github.com/maxloyalty/notify/internal/auth"
	"github.com/maxloyalty/notify/internal/broker"
	"github.com/maxloyalty/notify/internal/delivery"
	"github.com/maxloyalty/notify/internal/hub"
	"github.com/maxloyalty/notify/internal/limit"
	"github.com/maxloyalty/notify/internal/room"
	"github.com/maxloyalty/notify/internal/store"
	"github.com/maxloyalty/notify/internal/validate"
)

// ErrInvalid is wrapped by every error about a caller's bad input.
var ErrInvalid = errors.New("invalid argument")

// ErrNotFound is wrapped when the caller names something it cannot see.
var ErrNotFound = errors.New("not found")

// errKeyReused is an idempotency key repeated with a different request:
// FAILED_PRECONDITION, since the same request would not succeed either
// until the key is forgotten.
var errKeyReused = errors.New("idempotency_key: already used for a different request")

// Limits on one request, answered with RESOURCE_EXHAUSTED.
var (
	errBatchTooLarge = errors.New("batch too large")
	errTooManyRooms  = errors.New("too many rooms")
)

// errTokenExpired ends a stream whose token expired.
var errTokenExpired = fmt.Errorf("%w: stream token expired", auth.ErrTokenExpired)

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, args...))
}

// errorDomain is the ErrorInfo domain of every status this server returns.
const errorDomain = "notify"

// mapping is the one table from internal errors to gRPC codes and reasons.
var mapping = []struct {
	target error
	code   codes.Code
	reason string
}{
	{ErrInboxWrite, codes.Unavailable, "INBOX_WRITE_FAILED"},
	{errKeyReused, codes.FailedPrecondition, "IDEMPOTENCY_KEY_REUSED"},
	{ErrInvalid, codes.InvalidArgument, "INVALID_ARGUMENT"},
	{delivery.ErrScheduleConflict, codes.AlreadyExists, "SCHEDULE_KEY_PENDING"},
	{delivery.ErrScheduledNotFound, codes.NotFound, "NOT_FOUND"},
	{delivery.ErrScheduledDone, codes.FailedPrecondition, "SCHEDULED_DONE"},
	{delivery.ErrNoScheduler, codes.FailedPrecondition, "NO_SCHEDULER"},
	{delivery.ErrBadPageToken, codes.InvalidArgument, "INVALID_ARGUMENT"},
	{errBatchTooLarge, codes.ResourceExhausted, "BATCH_TOO_LARGE"},
	{errTooManyRooms, codes.ResourceExhausted, "TOO_MANY_ROOMS"},
	{limit.ErrRateLimited, codes.ResourceExhausted, limit.ReasonRateLimited},
	{limit.ErrTooManyStreams, codes.ResourceExhausted, limit.ReasonTooManyStreams},
	{limit.ErrTooManyConnections, codes.ResourceExhausted, limit.ReasonTooManyConnections},
	{room.ErrInvalid, codes.InvalidArgument, "INVALID_ROOM"},
	{validate.ErrInvalid, codes.InvalidArgument, "INVALID_ARGUMENT"},
	{access.ErrDenied, codes.PermissionDenied, "PERMISSION_DENIED"},
	{ErrNotFound, codes.NotFound, "NOT_FOUND"},
	{store.ErrNotFound, codes.NotFound, "NOT_FOUND"},
	{store.ErrInvalid, codes.InvalidArgument, "INVALID_ARGUMENT"},
	{store.ErrUnavailable, codes.Unavailable, "STORE_UNAVAILABLE"},
	{hub.ErrSlowConsumer, codes.ResourceExhausted, "SLOW_CONSUMER"},
	{hub.ErrShutdown, codes.Unavailable, "SERVER_RESTART"},
	{broker.ErrUnavailable, codes.Unavailable, "BROKER_UNAVAILABLE"},
	{broker.ErrClosed, codes.Unavailable, "SERVER_RESTART"},
	{context.Canceled, codes.Canceled, "CANCELED"},
	{context.DeadlineExceeded, codes.DeadlineExceeded, "DEADLINE_EXCEEDED"},
}

// Status turns an internal error into the gRPC status the edge returns.
// Unknown errors become Internal without their text.
func Status(err error, meta map[string]string) *status.Status {
	if err == nil {
		return status.New(codes.OK, "")
	}
	if st, ok := status.FromError(err); ok {
		return st
	}
	if errors.Is(err, auth.ErrMissingToken) || errors.Is(err, auth.ErrTokenExpired) || errors.Is(err, auth.ErrInvalidToken) {
		return withInfo(auth.StatusFromError(err), "", meta)
	}
	for _, m := range mapping {
		if errors.Is(err, m.target) {
			return withInfo(status.New(m.code, err.Error()), m.reason, meta)
		}
	}
	return withInfo(status.New(codes.Internal, "internal error"), "INTERNAL", meta)
}

// withInfo attaches an ErrorInfo with reason and meta; an empty reason keeps
// the one st already carries.
func withInfo(st *status.Status, reason string, meta map[string]string) *status.Status {
	if reason == "" {
		for _, d := range st.Details() {
			if info, ok := d.(*errdetails.ErrorInfo); ok {
				reason = info.Reason
			}
		}
		if len(meta) == 0 {
			return st
		}
		st = status.New(st.Code(), st.Message())
	}
	out, err := st.WithDetails(&errdetails.ErrorInfo{Reason: reason, Domain: errorDomain, Metadata: meta})
	if err != nil {
		return st
	}
	return out
}

func toStatusErr(err error) error {
	if err == nil {
		return nil
	}
	return Status(err, nil).Err()
}

// wrapIndex prefixes err with the batch index it belongs to.
func wrapIndex(i int, err error) error { return fmt.Errorf("requests[%d]: %w", i, err) }

func itoa(i int) string { return strconv.Itoa(i) }

func itoa64(u uint64) string { return strconv.FormatUint(u, 10) }

// metaKey turns a room name into an ErrorInfo metadata key, whose alphabet
// has no colon.
func metaKey(room string) string { return strings.ReplaceAll(room, ":", ".") }
