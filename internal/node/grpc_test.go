package node_test

import (
	"slices"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	notifyv1 "github.com/maxloyalty/notify/gen/notify/v1"
	"github.com/maxloyalty/notify/internal/node"
)

// TestGRPCSubscribePublish: a guest and a restaurant user subscribe to their
// default rooms over native gRPC, a service publishes a PointsAdded, and both
// receive it in the right room with the published position and payload.
func TestGRPCSubscribePublish(t *testing.T) {
	t.Parallel()
	n := startNode(t, func(c *node.Config) {
		c.ServerID = "node-a"
		c.HeartbeatInterval = 7 * time.Second
	})
	ctx := testCtx(t)
	c := dial(t, n.GRPCAddr())

	guest, gc := subscribe(t, ctx, c, mint(t, guestClaims), &notifyv1.SubscribeRequest{})
	if gc.UserId != "g1" || gc.Role != notifyv1.Role_ROLE_GUEST || gc.ServerId != "node-a" {
		t.Errorf("guest Connected = user %q role %v server %q, want g1 ROLE_GUEST node-a", gc.UserId, gc.Role, gc.ServerId)
	}
	if got := gc.HeartbeatInterval.AsDuration(); got != 7*time.Second {
		t.Errorf("guest Connected heartbeat_interval = %v, want 7s", got)
	}
	wantRooms := []string{"guest:g1", "user:g1"}
	if got := roomStateNames(gc.Rooms); !slices.Equal(got, wantRooms) {
		t.Errorf("guest Connected rooms = %v, want %v", got, wantRooms)
	}
	for _, rs := range gc.Rooms {
		if rs.Offset != 0 || rs.Recovered {
			t.Errorf("guest room state %v: want offset 0 and not recovered on a fresh node", rs)
		}
	}

	staff, sc := subscribe(t, ctx, c, mint(t, restaurantClaims), &notifyv1.SubscribeRequest{})
	if sc.UserId != "rest1" || sc.Role != notifyv1.Role_ROLE_RESTAURANT || sc.ServerId != "node-a" {
		t.Errorf("restaurant Connected = user %q role %v server %q", sc.UserId, sc.Role, sc.ServerId)
	}
	wantRooms = []string{"restaurant:r1", "restaurant:r1:points", "restaurant:r1:transactions", "user:rest1"}
	if got := roomStateNames(sc.Rooms); !slices.Equal(got, wantRooms) {
		t.Errorf("restaurant Connected rooms = %v, want %v", got, wantRooms)
	}

	occurred := timestamppb.New(time.Date(2025, 3, 4, 5, 6, 7, 0, time.UTC))
	payload := &notifyv1.PointsAdded{
		GuestId: "g1", CardId: "card-7", Amount: 120, NewBalance: 1320,
		RestaurantId: "r1", RestaurantName: "Café Ünïcode", TransactionId: "tx-99",
		Description: "Lunch — 2 × soup", OccurredAt: occurred,
	}
	before := time.Now().Add(-time.Second)
	resp := publish(t, ctx, c, &notifyv1.PublishRequest{Payload: &notifyv1.PublishRequest_PointsAdded{PointsAdded: payload}})
	if resp.EventId == "" || resp.Duplicate {
		t.Fatalf("PublishResponse = %v, want an event id and duplicate=false", resp)
	}
	gpos := position(t, resp, "guest:g1")
	rpos := position(t, resp, "restaurant:r1:points")
	if len(resp.Positions) != 2 {
		t.Errorf("positions = %v, want exactly guest:g1 and restaurant:r1:points", resp.Positions)
	}

	check := func(who string, ev *notifyv1.Event, room string, pos *notifyv1.StreamPosition) {
		t.Helper()
		if ev.Id != resp.EventId || ev.Room != room || ev.Offset != 1 || ev.Epoch != pos.Epoch || pos.Offset != 1 {
			t.Errorf("%s got event id=%q room=%q offset=%d epoch=%q; want id=%q room=%q offset=1 epoch=%q (position %v)",
				who, ev.Id, ev.Room, ev.Offset, ev.Epoch, resp.EventId, room, pos.Epoch, pos)
		}
		if pos.Epoch == "" {
			t.Errorf("%s: empty epoch in position %v", who, pos)
		}
		if !proto.Equal(ev.GetPointsAdded(), payload) {
			t.Errorf("%s payload = %v, want %v", who, ev.GetPointsAdded(), payload)
		}
		if pt := ev.PublishTime.AsTime(); pt.Before(before) || pt.After(time.Now().Add(time.Second)) {
			t.Errorf("%s publish_time = %v, want about now", who, pt)
		}
	}
	check("guest", guest.next(t), "guest:g1", gpos)
	check("restaurant", staff.next(t), "restaurant:r1:points", rpos)
}

func roomStateNames(rs []*notifyv1.RoomState) []string {
	out := make([]string, len(rs))
	for i, r := range rs {
		out[i] = r.Room
	}
	return out
}
