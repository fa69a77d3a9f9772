package gateway

import (
	"context"
	"net/http"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// conflictReasons are the reasons (ErrorInfo, domain "notify") of a
// FAILED_PRECONDITION that REST answers 409 Conflict instead of
// grpc-gateway's 400: the request conflicts with one accepted before.
var conflictReasons = map[string]bool{
	"IDEMPOTENCY_KEY_REUSED": true,
	// A scheduled publish already published, being published or cancelled.
	"SCHEDULED_DONE": true,
}

// restErrorHandler is grpc-gateway's error handler with the statuses of
// conflictReasons changed to 409; the body is the same status.
func restErrorHandler(ctx context.Context, mux *runtime.ServeMux, m runtime.Marshaler, w http.ResponseWriter, r *http.Request, err error) {
	if s, ok := status.FromError(err); ok && s.Code() == codes.FailedPrecondition && conflict(s) {
		w = &statusWriter{ResponseWriter: w, status: http.StatusConflict}
	}
	runtime.DefaultHTTPErrorHandler(ctx, mux, m, w, r, err)
}

func conflict(s *status.Status) bool {
	for _, d := range s.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok && info.Domain == "notify" && conflictReasons[info.Reason] {
			return true
		}
	}
	return false
}

// statusWriter writes status in place of the one its user gives.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(int) { w.ResponseWriter.WriteHeader(w.status) }
