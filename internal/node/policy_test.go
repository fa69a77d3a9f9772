package node_test

import (
	"net/http"
	"strconv"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/encoding/protojson"

	notifyv1 "github.com/maxloyalty/notify/gen/notify/v1"
	"github.com/maxloyalty/notify/internal/auth"
)

// httpFor is the gateway's HTTP status of the codes these tests expect.
var httpFor = map[codes.Code]int{
	codes.OK:               http.StatusOK,
	codes.PermissionDenied: http.StatusForbidden,
	codes.InvalidArgument:  http.StatusBadRequest,
}

// TestAdminAlertsOnlyIntoAdmin: an admin publishes system alerts and admin
// notifications into the admin room (named or routed), never into a
// guest's, user's or restaurant's room; over native gRPC and REST.
func TestAdminAlertsOnlyIntoAdmin(t *testing.T) {
	t.Parallel()
	n := startNode(t, nil)
	ctx := testCtx(t)
	c := dial(t, n.GRPCAddr())
	tok := mint(t, adminClaims)
	alert := func(rooms ...string) *notifyv1.PublishRequest {
		return &notifyv1.PublishRequest{Rooms: rooms, Payload: &notifyv1.PublishRequest_SystemAlert{SystemAlert: &notifyv1.SystemAlert{
			Level: notifyv1.AlertLevel_ALERT_LEVEL_WARNING, Title: "disk", Message: "almost full"}}}
	}
	note := func(rooms ...string) *notifyv1.PublishRequest {
		return &notifyv1.PublishRequest{Rooms: rooms, Payload: &notifyv1.PublishRequest_AdminNotification{AdminNotification: &notifyv1.AdminNotification{
			Type: notifyv1.AdminNotificationType_ADMIN_NOTIFICATION_TYPE_USER_CREATED, Title: "new user", Message: "u9", Priority: notifyv1.Priority_PRIORITY_LOW}}}
	}
	for _, tc := range []struct {
		name string
		req  *notifyv1.PublishRequest
		want codes.Code
	}{
		{"alert routed to admin", alert(), codes.OK},
		{"alert into admin", alert("admin"), codes.OK},
		{"notification routed to admin", note(), codes.OK},
		{"alert into guest:g1", alert("guest:g1"), codes.PermissionDenied},
		{"alert into user:u1", alert("user:u1"), codes.PermissionDenied},
		{"alert into admin and guest:g1", alert("admin", "guest:g1"), codes.PermissionDenied},
		{"notification into restaurant:r1", note("restaurant:r1"), codes.PermissionDenied},
		{"notification into guest:g1", note("guest:g1"), codes.PermissionDenied},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := c.Publish(withToken(ctx, tok), tc.req)
			wantCode(t, err, tc.want, "gRPC Publish")
			body, err := protojson.Marshal(tc.req)
			if err != nil {
				t.Fatal(err)
			}
			if r := restDo(t, ctx, http.MethodPost, "http://"+n.HTTPAddr()+"/v1/events", tok, string(body)); r.status != httpFor[tc.want] {
				t.Errorf("REST POST /v1/events: HTTP %d %s, want %d", r.status, r.body, httpFor[tc.want])
			}
		})
	}
	// The room route of REST, too.
	if r := restDo(t, ctx, http.MethodPost, "http://"+n.HTTPAddr()+"/v1/rooms/guest:g1/events", tok,
		`{"systemAlert":{"level":"ALERT_LEVEL_INFO","title":"t","message":"m"}}`); r.status != http.StatusForbidden {
		t.Errorf("REST POST /v1/rooms/guest:g1/events: HTTP %d %s, want 403", r.status, r.body)
	}
}

// TestConfirmActionOnlyAtKnownRestaurants: a guest confirms an action only
// at a restaurant that has sent them an event (the platform has no
// registry of restaurants); at r999 it is PERMISSION_DENIED (403), with a
// malformed id INVALID_ARGUMENT (400); clearing the inbox does not undo
// the relationship; over native gRPC and REST.
func TestConfirmActionOnlyAtKnownRestaurants(t *testing.T) {
	t.Parallel()
	n := startNode(t, nil)
	ctx := testCtx(t)
	c, ib := dialInbox(t, n.GRPCAddr())
	gid := "policy-g1"
	tok := mint(t, auth.Claims{Subject: gid, Role: notifyv1.Role_ROLE_GUEST})
	// The guest has had an event from r1; another guest one from r2.
	publish(t, ctx, c, pointsReq(pointsAdded(gid, "r1", 10)))
	publish(t, ctx, c, pointsReq(pointsAdded("policy-g2", "r2", 10)))

	seq := 0
	confirm := func(t *testing.T, rid string, want codes.Code) {
		t.Helper()
		seq++
		req := &notifyv1.ConfirmActionRequest{ActionId: "grpc-" + strconv.Itoa(seq), Action: notifyv1.ActionType_ACTION_TYPE_POINTS_REDEEM, Amount: 50, RestaurantId: rid}
		_, err := c.ConfirmAction(withToken(ctx, tok), req)
		wantCode(t, err, want, "gRPC ConfirmAction at "+rid)
		req.ActionId = "rest-" + strconv.Itoa(seq)
		body, err := protojson.Marshal(req)
		if err != nil {
			t.Fatal(err)
		}
		if r := restDo(t, ctx, http.MethodPost, "http://"+n.HTTPAddr()+"/v1/actions:confirm", tok, string(body)); r.status != httpFor[want] {
			t.Errorf("REST ConfirmAction at %q: HTTP %d %s, want %d", rid, r.status, r.body, httpFor[want])
		}
	}
	confirm(t, "r1", codes.OK)
	confirm(t, "r999", codes.PermissionDenied)
	confirm(t, "r2", codes.PermissionDenied)
	confirm(t, "", codes.InvalidArgument)
	confirm(t, "r 1", codes.InvalidArgument)

	if _, err := ib.ClearNotifications(withToken(ctx, tok), &notifyv1.ClearNotificationsRequest{}); err != nil {
		t.Fatal(err)
	}
	confirm(t, "r1", codes.OK)
}
