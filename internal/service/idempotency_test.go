package service_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	notifyv1 "github.com/maxloyalty/notify/gen/notify/v1"
	"github.com/maxloyalty/notify/internal/auth"
	"github.com/maxloyalty/notify/internal/limit"
	"github.com/maxloyalty/notify/internal/service"
)

// reason returns the ErrorInfo reason of err's status.
func reason(err error) string {
	st, _ := status.FromError(err)
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok {
			return info.Reason
		}
	}
	return ""
}

// wantReused fails unless err is FAILED_PRECONDITION, IDEMPOTENCY_KEY_REUSED.
func wantReused(t *testing.T, err error, what string) {
	t.Helper()
	if status.Code(err) != codes.FailedPrecondition || reason(err) != "IDEMPOTENCY_KEY_REUSED" {
		t.Errorf("%s: %v (reason %q), want FAILED_PRECONDITION IDEMPOTENCY_KEY_REUSED", what, err, reason(err))
	}
}

func keyed(req *notifyv1.PublishRequest, key string) *notifyv1.PublishRequest {
	req.IdempotencyKey = key
	return req
}

// TestIdempotencyKeyFingerprint: a publish repeated with its key is a
// duplicate (the first result, duplicate = true); the key with a different
// request (event or rooms) is FAILED_PRECONDITION and publishes nothing.
// Keys are the caller's own: another publisher, or the same subject with
// another role, has keys of its own.
func TestIdempotencyKeyFingerprint(t *testing.T) {
	f := newPublishFixture(t)
	ctx := auth.NewContext(context.Background(), publisher)

	first, err := f.svc.Publish(ctx, keyed(pointsFor("g1", 5), "k1"))
	if err != nil || first.Duplicate {
		t.Fatalf("first publish: %v, %v", first, err)
	}
	again, err := f.svc.Publish(ctx, keyed(pointsFor("g1", 5), "k1"))
	if err != nil || !again.Duplicate || again.EventId != first.EventId || again.Positions[0].Offset != first.Positions[0].Offset {
		t.Errorf("true repeat: %v, %v; want the first result %v with duplicate = true", again, err, first)
	}
	_, err = f.svc.Publish(ctx, keyed(pointsFor("g1", 500), "k1"))
	wantReused(t, err, "same key, another amount")
	if err != nil && !strings.Contains(status.Convert(err).Message(), first.EventId) {
		t.Errorf("message %q does not name the key's first event %s", status.Convert(err).Message(), first.EventId)
	}
	other := keyed(pointsFor("g1", 5), "k1")
	other.Rooms = []string{"guest:g1"}
	_, err = f.svc.Publish(ctx, other)
	wantReused(t, err, "same key and event, other rooms")

	// The same key of another publisher, and of the same subject with
	// another role, are other keys.
	svc2 := auth.NewContext(context.Background(), auth.Claims{Subject: "svc2", Role: notifyv1.Role_ROLE_SERVICE})
	if r, err := f.svc.Publish(svc2, keyed(pointsFor("g1", 500), "k1")); err != nil || r.Duplicate {
		t.Errorf("another publisher's k1: %v, %v; want a new publish", r, err)
	}
	admin := auth.NewContext(context.Background(), auth.Claims{Subject: publisher.Subject, Role: notifyv1.Role_ROLE_ADMIN})
	alert := &notifyv1.PublishRequest{IdempotencyKey: "k1", Payload: &notifyv1.PublishRequest_SystemAlert{SystemAlert: &notifyv1.SystemAlert{
		Level: notifyv1.AlertLevel_ALERT_LEVEL_INFO, Title: "t", Message: "m"}}}
	if r, err := f.svc.Publish(admin, alert); err != nil || r.Duplicate {
		t.Errorf("an admin with the service's subject, k1: %v, %v; want a new publish", r, err)
	}

	// PublishBatch: a true repeat is all duplicates; one reused key fails
	// the batch at that request, after the ones before it.
	batch := &notifyv1.PublishBatchRequest{Requests: []*notifyv1.PublishRequest{keyed(pointsFor("g2", 1), "b1"), keyed(pointsFor("g2", 2), "b2")}}
	b1, err := f.svc.PublishBatch(ctx, batch)
	if err != nil {
		t.Fatal(err)
	}
	b2, err := f.svc.PublishBatch(ctx, batch)
	if err != nil {
		t.Fatal(err)
	}
	for i := range b2.Results {
		if !b2.Results[i].Duplicate || b2.Results[i].EventId != b1.Results[i].EventId {
			t.Errorf("batch repeat result %d = %v, want a duplicate of %v", i, b2.Results[i], b1.Results[i])
		}
	}
	_, err = f.svc.PublishBatch(ctx, &notifyv1.PublishBatchRequest{Requests: []*notifyv1.PublishRequest{
		keyed(pointsFor("g2", 3), "b3"), keyed(pointsFor("g2", 99), "b2")}})
	wantReused(t, err, "batch reusing b2")
	if err != nil && !strings.HasPrefix(status.Convert(err).Message(), "requests[1]: ") {
		t.Errorf("batch error %q does not name requests[1]", status.Convert(err).Message())
	}

	// What was refused was neither delivered nor stored: g1 has the first
	// event and the other publishers' two.
	if got := len(f.stored(t, "g1")); got != 2 {
		t.Errorf("g1's inbox has %d notifications, want 2 (k1 once, and svc2's)", got)
	}
	if got := len(f.stored(t, "g2")); got != 3 {
		t.Errorf("g2's inbox has %d notifications, want 3 (b1, b2, b3)", got)
	}
}

// TestConfirmActionIdempotency: a confirmation repeated is the first one's
// result; the same action id with another action, amount or restaurant is
// FAILED_PRECONDITION and reaches no restaurant; another guest's action ids
// are theirs.
func TestConfirmActionIdempotency(t *testing.T) {
	f := newPublishFixture(t)
	svc := auth.NewContext(context.Background(), publisher)
	// Both restaurants have sent g1 an event (the guest may confirm there).
	for _, rid := range []string{"r1", "r2"} {
		for _, gid := range []string{"g1", "g2"} {
			req := pointsFor(gid, 10)
			req.GetPointsAdded().RestaurantId = rid
			if _, err := f.svc.Publish(svc, req); err != nil {
				t.Fatal(err)
			}
		}
	}
	g1 := auth.NewContext(context.Background(), auth.Claims{Subject: "g1", Role: notifyv1.Role_ROLE_GUEST})
	confirm := func(ctx context.Context, id, rid string, amount int64) (*notifyv1.ConfirmActionResponse, error) {
		return f.svc.ConfirmAction(ctx, &notifyv1.ConfirmActionRequest{ActionId: id, Action: notifyv1.ActionType_ACTION_TYPE_POINTS_REDEEM, Amount: amount, RestaurantId: rid})
	}
	first, err := confirm(g1, "act-1", "r1", 5)
	if err != nil {
		t.Fatal(err)
	}
	again, err := confirm(g1, "act-1", "r1", 5)
	if err != nil || again.EventId != first.EventId || again.Position.GetOffset() != first.Position.GetOffset() {
		t.Errorf("repeat: %v, %v; want the first result %v", again, err, first)
	}
	_, err = confirm(g1, "act-1", "r2", 500)
	wantReused(t, err, "act-1 at r2 for 500")
	_, err = confirm(g1, "act-1", "r1", 500)
	wantReused(t, err, "act-1 at r1 for 500")

	g2 := auth.NewContext(context.Background(), auth.Claims{Subject: "g2", Role: notifyv1.Role_ROLE_GUEST})
	if r, err := confirm(g2, "act-1", "r2", 500); err != nil || r.EventId == first.EventId {
		t.Errorf("g2's act-1: %v, %v; want a confirmation of its own", r, err)
	}
	// A service whose subject is the guest's id, publishing with the key
	// a confirmation uses, does not collide with it.
	sameSub := auth.NewContext(context.Background(), auth.Claims{Subject: "g1", Role: notifyv1.Role_ROLE_SERVICE})
	if r, err := f.svc.Publish(sameSub, keyed(pointsFor("g1", 7), "action:act-1")); err != nil || r.Duplicate {
		t.Errorf("service g1 publishing with key action:act-1: %v, %v; want a new publish", r, err)
	}
}

// TestConfirmActionRateLimited: confirmations count against the guest's
// publish rate, as publishes do against a publisher's.
func TestConfirmActionRateLimited(t *testing.T) {
	f := newPublishFixture(t, func(c *service.Config) { c.Limits.Publish = limit.NewPublishRate(0.001, 3) })
	svc := auth.NewContext(context.Background(), auth.Claims{Subject: "svc-rate", Role: notifyv1.Role_ROLE_SERVICE})
	if _, err := f.svc.Publish(svc, pointsFor("g1", 10)); err != nil {
		t.Fatal(err)
	}
	g1 := auth.NewContext(context.Background(), auth.Claims{Subject: "g1", Role: notifyv1.Role_ROLE_GUEST})
	var err error
	for i := range 4 {
		_, err = f.svc.ConfirmAction(g1, &notifyv1.ConfirmActionRequest{ActionId: fmt.Sprintf("a%d", i), Action: notifyv1.ActionType_ACTION_TYPE_POINTS_REDEEM, Amount: 1, RestaurantId: "r1"})
		if i < 3 && err != nil {
			t.Fatalf("confirmation %d within the burst: %v", i, err)
		}
	}
	if status.Code(err) != codes.ResourceExhausted {
		t.Errorf("confirmation beyond the burst: %v, want RESOURCE_EXHAUSTED", err)
	}
}
