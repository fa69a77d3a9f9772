package service

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/maxloyalty/notify/internal/access"
	"github.com/maxloyalty/notify/internal/auth"
	"github.com/maxloyalty/notify/internal/broker"
	"github.com/maxloyalty/notify/internal/hub"
	"github.com/maxloyalty/notify/internal/room"
)

func TestStatusMapping(t *testing.T) {
	tests := []struct {
		err     error
		code    codes.Code
		reason  string
		message string // empty: the error's own text
	}{
		{invalid("payload: missing"), codes.InvalidArgument, "INVALID_ARGUMENT", ""},
		{fmt.Errorf("%w: bad", room.ErrInvalid), codes.InvalidArgument, "INVALID_ROOM", ""},
		{wrapIndex(3, fmt.Errorf("%w: bad", room.ErrInvalid)), codes.InvalidArgument, "INVALID_ROOM", "requests[3]: invalid room: bad"},
		{fmt.Errorf("%w: no", access.ErrDenied), codes.PermissionDenied, "PERMISSION_DENIED", ""},
		{hub.ErrSlowConsumer, codes.ResourceExhausted, "SLOW_CONSUMER", ""},
		{fmt.Errorf("%w (first used for event e1)", errKeyReused), codes.FailedPrecondition, "IDEMPOTENCY_KEY_REUSED", ""},
		{hub.ErrShutdown, codes.Unavailable, "SERVER_RESTART", ""},
		{fmt.Errorf("redis: %w", broker.ErrUnavailable), codes.Unavailable, "BROKER_UNAVAILABLE", ""},
		{broker.ErrClosed, codes.Unavailable, "SERVER_RESTART", ""},
		{context.Canceled, codes.Canceled, "CANCELED", ""},
		{context.DeadlineExceeded, codes.DeadlineExceeded, "DEADLINE_EXCEEDED", ""},
		{auth.ErrMissingToken, codes.Unauthenticated, "TOKEN_MISSING", ""},
		{errTokenExpired, codes.Unauthenticated, "TOKEN_EXPIRED", ""},
		{errors.New("disk on fire at /var/secret"), codes.Internal, "INTERNAL", "internal error"},
	}
	for _, tt := range tests {
		st := Status(tt.err, nil)
		want := tt.message
		if want == "" {
			want = tt.err.Error()
		}
		if st.Code() != tt.code || st.Message() != want || reasonOf(st) != tt.reason {
			t.Errorf("Status(%v) = %v %q reason %q, want %v %q reason %q", tt.err, st.Code(), st.Message(), reasonOf(st), tt.code, want, tt.reason)
		}
	}
	if st := Status(nil, nil); st.Code() != codes.OK {
		t.Errorf("Status(nil) = %v", st.Code())
	}
	pass := status.Error(codes.NotFound, "gone")
	if st := Status(pass, nil); st.Code() != codes.NotFound || st.Message() != "gone" {
		t.Errorf("a status error is not passed through: %v", st)
	}
	st := Status(hub.ErrSlowConsumer, map[string]string{"guest.g1": "e1/7"})
	if info := infoOf(st); info == nil || info.Metadata["guest.g1"] != "e1/7" {
		t.Errorf("metadata lost: %v", st.Details())
	}
}

func infoOf(st *status.Status) *errdetails.ErrorInfo {
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok {
			return info
		}
	}
	return nil
}

func reasonOf(st *status.Status) string {
	if info := infoOf(st); info != nil {
		return info.Reason
	}
	return ""
}
