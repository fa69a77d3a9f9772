package node_test

// End-to-end tests of the operational features: Prometheus metrics, the
// per-caller and per-port limits, TLS on both ports, CORS and health.
// Every helper of this file is prefixed "ops" so as not to collide with
// the helpers of the other test files of the package.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	notifyv1 "github.com/maxloyalty/notify/gen/notify/v1"
	"github.com/maxloyalty/notify/internal/auth"
)

const (
	opsPublishMethod = "/notify.v1.NotificationService/Publish"
	opsBatchMethod   = "/notify.v1.NotificationService/PublishBatch"
	opsSubMethod     = "/notify.v1.NotificationService/Subscribe"
)

// ---- helpers ----

// opsService returns the claims of a service token with subject sub.
func opsService(sub string) auth.Claims {
	return auth.Claims{Subject: sub, Role: notifyv1.Role_ROLE_SERVICE}
}

// opsGuest returns the claims of a guest token with subject sub.
func opsGuest(sub string) auth.Claims {
	return auth.Claims{Subject: sub, Role: notifyv1.Role_ROLE_GUEST}
}

// opsReq is a PointsAdded for guest gid published in room.
func opsReq(gid, room string, amount int64) *notifyv1.PublishRequest {
	return pointsReq(pointsAdded(gid, "r1", amount), room)
}

// opsBatch is a PublishBatchRequest of n PointsAdded in room.
func opsBatch(gid, room string, n int) *notifyv1.PublishBatchRequest {
	b := &notifyv1.PublishBatchRequest{}
	for i := range n {
		b.Requests = append(b.Requests, opsReq(gid, room, int64(i+1)))
	}
	return b
}

// opsRESTEvent is the REST body of one PointsAdded for guest gid.
func opsRESTEvent(gid string, amount int) string {
	return fmt.Sprintf(`{"pointsAdded":{"guestId":%q,"amount":"%d","restaurantId":"r1"}}`, gid, amount)
}

// opsRESTBatch is the REST body of a batch of n PointsAdded in room.
func opsRESTBatch(gid, room string, n int) string {
	reqs := make([]string, n)
	for i := range reqs {
		reqs[i] = fmt.Sprintf(`{"rooms":[%q],"pointsAdded":{"guestId":%q,"amount":"%d","restaurantId":"r1"}}`, room, gid, i+1)
	}
	return `{"requests":[` + strings.Join(reqs, ",") + `]}`
}

// opsReason returns the reason of the ErrorInfo err's status carries.
func opsReason(err error) string {
	st, ok := status.FromError(err)
	if !ok {
		return ""
	}
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok {
			return info.Reason
		}
	}
	return ""
}

// opsWantExhausted fails unless err is ResourceExhausted with an ErrorInfo
// of reason.
func opsWantExhausted(t *testing.T, err error, reason, what string) {
	t.Helper()
	if status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("%s: %v (code %v), want ResourceExhausted with reason %s", what, err, status.Code(err), reason)
	}
	if got := opsReason(err); got != reason {
		t.Fatalf("%s: ErrorInfo reason %q (err %v), want %q", what, got, err, reason)
	}
}

// opsRESTError is a gateway error body: a google.rpc.Status as JSON, or
// {"error": status} for a stream.
type opsRESTError struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
	Details []struct {
		Type   string `json:"@type"`
		Reason string `json:"reason"`
	} `json:"details"`
}

func opsParseRESTError(b []byte) (opsRESTError, error) {
	var e struct {
		opsRESTError
		Error *opsRESTError `json:"error"`
	}
	if err := json.Unmarshal(b, &e); err != nil {
		return opsRESTError{}, err
	}
	if e.Error != nil {
		return *e.Error, nil
	}
	return e.opsRESTError, nil
}

// opsWantREST fails unless r has httpStatus and, if reason is set, an error
// body with code ResourceExhausted and an ErrorInfo of reason.
func opsWantREST(t *testing.T, r restResult, httpStatus int, reason, what string) {
	t.Helper()
	if r.status != httpStatus {
		t.Fatalf("%s: HTTP %d (%s), want %d", what, r.status, r.body, httpStatus)
	}
	if reason == "" {
		return
	}
	e, err := opsParseRESTError(r.body)
	if err != nil {
		t.Fatalf("%s: error body %q: %v", what, r.body, err)
	}
	if e.Code != int(codes.ResourceExhausted) {
		t.Errorf("%s: error code %d (%s), want %d", what, e.Code, r.body, codes.ResourceExhausted)
	}
	for _, d := range e.Details {
		if strings.HasSuffix(d.Type, "google.rpc.ErrorInfo") && d.Reason == reason {
			return
		}
	}
	t.Errorf("%s: error body %s has no ErrorInfo with reason %s", what, r.body, reason)
}

// opsDo sends an HTTP request with client and reads the whole response.
func opsDo(t *testing.T, ctx context.Context, client *http.Client, method, url, tok string, hdr http.Header, body []byte) (restResult, http.Header) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		t.Fatalf("NewRequest: %v", err)
	}
	for k, vs := range hdr {
		req.Header[k] = vs
	}
	if body != nil && req.Header.Get("Content-Type") == "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		t.Fatalf("%s %s: reading body: %v", method, url, err)
	}
	return restResult{status: resp.StatusCode, body: b}, resp.Header
}
