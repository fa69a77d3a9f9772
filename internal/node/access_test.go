package node_test

import (
	"context"
	"fmt"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	notifyv1 "github.com/maxloyalty/notify/gen/notify/v1"
	"github.com/maxloyalty/notify/internal/auth"
)

// TestAccessMatrix walks role × room × {subscribe, publish} over real gRPC
// and checks the code of every cell against access.go's policy.
func TestAccessMatrix(t *testing.T) {
	t.Parallel()
	n := startNode(t, nil)
	ctx := testCtx(t)
	c := dial(t, n.GRPCAddr())

	const (
		ok = codes.OK
		no = codes.PermissionDenied
	)
	// Room columns; "user:self" stands for user:{the role's own subject}.
	rooms := []string{
		"admin", "restaurant:r1", "restaurant:r1:points", "restaurant:r1:transactions",
		"restaurant:r2", "restaurant:r2:points", "guest:g1", "guest:g2", "user:self", "user:other",
	}
	type row struct {
		claims    auth.Claims
		subscribe []codes.Code // per room column
		pointsPub codes.Code   // publishing a PointsAdded in any room
		alertPub  codes.Code   // publishing a SystemAlert in any room
	}
	roles := map[string]row{
		"admin": {adminClaims,
			[]codes.Code{ok, ok, ok, ok, ok, ok, ok, ok, ok, ok}, no, ok},
		"service": {serviceClaims,
			[]codes.Code{ok, ok, ok, ok, ok, ok, ok, ok, ok, ok}, ok, ok},
		"restaurant": {restaurantClaims,
			[]codes.Code{no, ok, ok, ok, no, no, no, no, ok, no}, no, no},
		"cashier": {cashierClaims,
			[]codes.Code{no, ok, ok, ok, no, no, no, no, ok, no}, no, no},
		"guest": {guestClaims,
			[]codes.Code{no, no, no, no, no, no, ok, no, ok, no}, no, no},
	}

	for name, r := range roles {
		tok := mint(t, r.claims)
		for i, col := range rooms {
			roomName := col
			if col == "user:self" {
				roomName = "user:" + r.claims.Subject
			}
			t.Run(fmt.Sprintf("%s/subscribe/%s", name, col), func(t *testing.T) {
				sctx, cancel := context.WithCancel(ctx)
				defer cancel()
				s, err := openStream(sctx, c, tok, &notifyv1.SubscribeRequest{Rooms: []string{roomName}})
				if err != nil {
					t.Fatalf("Subscribe: %v", err)
				}
				m, err := s.Recv()
				if got := status.Code(err); got != r.subscribe[i] {
					t.Fatalf("first Recv: code %v (err %v), want %v", got, err, r.subscribe[i])
				}
				if err == nil {
					conn := m.GetConnected()
					if conn == nil || len(conn.Rooms) != 1 || conn.Rooms[0].Room != roomName || conn.UserId != r.claims.Subject {
						t.Errorf("first message = %v, want Connected for %s in %s", m, r.claims.Subject, roomName)
					}
				}
			})
			t.Run(fmt.Sprintf("%s/publish-points/%s", name, col), func(t *testing.T) {
				_, err := c.Publish(withToken(ctx, tok), pointsReq(pointsAdded("g1", "r1", 1), roomName))
				if got := status.Code(err); got != r.pointsPub {
					t.Fatalf("Publish PointsAdded: code %v (err %v), want %v", got, err, r.pointsPub)
				}
			})
			t.Run(fmt.Sprintf("%s/publish-alert/%s", name, col), func(t *testing.T) {
				_, err := c.Publish(withToken(ctx, tok), &notifyv1.PublishRequest{
					Rooms:   []string{roomName},
					Payload: &notifyv1.PublishRequest_SystemAlert{SystemAlert: &notifyv1.SystemAlert{Level: notifyv1.AlertLevel_ALERT_LEVEL_INFO, Title: "hello"}},
				})
				want := r.alertPub
				if name == "admin" && col != "admin" {
					want = no // admins publish alerts into the admin room only
				}
				if got := status.Code(err); got != want {
					t.Fatalf("Publish SystemAlert: code %v (err %v), want %v", got, err, want)
				}
			})
		}
	}
}
