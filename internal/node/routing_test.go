package node_test

import (
	"slices"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"

	notifyv1 "github.com/maxloyalty/notify/gen/notify/v1"
)

// TestRoutingDerivedFromEvents publishes every payload type without rooms
// and checks the rooms the server derives, as documented in room/route.go.
func TestRoutingDerivedFromEvents(t *testing.T) {
	t.Parallel()
	n := startNode(t, nil)
	ctx := testCtx(t)
	c := dial(t, n.GRPCAddr())

	cases := []struct {
		name  string
		req   *notifyv1.PublishRequest
		rooms []string
	}{
		{"PointsAdded", &notifyv1.PublishRequest{Payload: &notifyv1.PublishRequest_PointsAdded{PointsAdded: &notifyv1.PointsAdded{GuestId: "ga", RestaurantId: "ra", Amount: 1}}},
			[]string{"restaurant:ra:points", "guest:ga"}},
		{"PointsRedeemed", &notifyv1.PublishRequest{Payload: &notifyv1.PublishRequest_PointsRedeemed{PointsRedeemed: &notifyv1.PointsRedeemed{GuestId: "gb", RestaurantId: "rb", Amount: 1}}},
			[]string{"restaurant:rb:points", "guest:gb"}},
		{"PointsExpired/no restaurant", &notifyv1.PublishRequest{Payload: &notifyv1.PublishRequest_PointsExpired{PointsExpired: &notifyv1.PointsExpired{GuestId: "gc", Amount: 1}}},
			[]string{"guest:gc"}},
		{"PointsExpired/restaurant", &notifyv1.PublishRequest{Payload: &notifyv1.PublishRequest_PointsExpired{PointsExpired: &notifyv1.PointsExpired{GuestId: "gd", RestaurantId: "rd", Amount: 1}}},
			[]string{"guest:gd", "restaurant:rd:points"}},
		{"CardCreated", &notifyv1.PublishRequest{Payload: &notifyv1.PublishRequest_CardCreated{CardCreated: &notifyv1.CardCreated{GuestId: "ge", CardId: "ce", RestaurantId: "re"}}},
			[]string{"guest:ge", "restaurant:re"}},
		{"GuestCardUpdated/no restaurant", &notifyv1.PublishRequest{Payload: &notifyv1.PublishRequest_GuestCardUpdated{GuestCardUpdated: &notifyv1.GuestCardUpdated{GuestId: "gf", CardId: "cf", Tier: notifyv1.Tier_TIER_GOLD}}},
			[]string{"guest:gf"}},
		{"GuestCardUpdated/restaurant", &notifyv1.PublishRequest{Payload: &notifyv1.PublishRequest_GuestCardUpdated{GuestCardUpdated: &notifyv1.GuestCardUpdated{GuestId: "gg", CardId: "cg", RestaurantId: "rg", Status: notifyv1.CardStatus_CARD_STATUS_BLOCKED}}},
			[]string{"guest:gg", "restaurant:rg"}},
		{"GuestRegistered", &notifyv1.PublishRequest{Payload: &notifyv1.PublishRequest_GuestRegistered{GuestRegistered: &notifyv1.GuestRegistered{GuestId: "gh", RestaurantId: "rh", GuestName: "H"}}},
			[]string{"guest:gh", "restaurant:rh"}},
		{"RestaurantGuestJoined", &notifyv1.PublishRequest{Payload: &notifyv1.PublishRequest_RestaurantGuestJoined{RestaurantGuestJoined: &notifyv1.RestaurantGuestJoined{GuestId: "gi", RestaurantId: "ri"}}},
			[]string{"restaurant:ri"}},
		{"RestaurantStatusChanged", &notifyv1.PublishRequest{Payload: &notifyv1.PublishRequest_RestaurantStatusChanged{RestaurantStatusChanged: &notifyv1.RestaurantStatusChanged{RestaurantId: "rj", Status: notifyv1.RestaurantStatus_RESTAURANT_STATUS_MAINTENANCE}}},
			[]string{"restaurant:rj"}},
		{"RestaurantTransaction", &notifyv1.PublishRequest{Payload: &notifyv1.PublishRequest_RestaurantTransaction{RestaurantTransaction: &notifyv1.RestaurantTransaction{RestaurantId: "rk", TransactionId: "tk", GuestId: "gk", Type: notifyv1.TransactionType_TRANSACTION_TYPE_PURCHASE, Amount: 5}}},
			[]string{"restaurant:rk:transactions"}},
		{"SystemAlert", &notifyv1.PublishRequest{Payload: &notifyv1.PublishRequest_SystemAlert{SystemAlert: &notifyv1.SystemAlert{Level: notifyv1.AlertLevel_ALERT_LEVEL_WARNING, Title: "t"}}},
			[]string{"admin"}},
		{"AdminNotification", &notifyv1.PublishRequest{Payload: &notifyv1.PublishRequest_AdminNotification{AdminNotification: &notifyv1.AdminNotification{NotificationId: "n1", Type: notifyv1.AdminNotificationType_ADMIN_NOTIFICATION_TYPE_HIGH_VOLUME, Priority: notifyv1.Priority_PRIORITY_LOW, Title: "t"}}},
			[]string{"admin"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			resp := publish(t, ctx, c, tc.req)
			want := slices.Sorted(slices.Values(tc.rooms))
			if got := positionRooms(resp.Positions); !slices.Equal(got, want) {
				t.Fatalf("rooms = %v, want %v", got, want)
			}
			for _, p := range resp.Positions {
				if p.Offset == 0 || p.Epoch == "" {
					t.Errorf("position %v: want an offset and an epoch", p)
				}
			}
		})
	}
}

// TestConfirmAction: a guest's confirmation reaches the restaurant room as
// ActionConfirmed carrying the token's subject; a service may not confirm.
func TestConfirmAction(t *testing.T) {
	t.Parallel()
	n := startNode(t, nil)
	ctx := testCtx(t)
	c := dial(t, n.GRPCAddr())

	staff, _ := subscribe(t, ctx, c, mint(t, cashierClaims), &notifyv1.SubscribeRequest{Rooms: []string{"restaurant:r1"}})
	// A guest confirms only at a restaurant that has sent them an event.
	publish(t, ctx, c, pointsReq(pointsAdded("g1", "r1", 300)))

	req := &notifyv1.ConfirmActionRequest{ActionId: "act-1", Action: notifyv1.ActionType_ACTION_TYPE_POINTS_REDEEM, Amount: 300, RestaurantId: "r1"}
	resp, err := c.ConfirmAction(withToken(ctx, mint(t, guestClaims)), req)
	if err != nil {
		t.Fatalf("guest ConfirmAction: %v", err)
	}
	if resp.EventId == "" || resp.Position.GetRoom() != "restaurant:r1" || resp.Position.GetOffset() != 1 {
		t.Errorf("ConfirmActionResponse = %v, want an event id at restaurant:r1 offset 1", resp)
	}
	ev := staff.next(t)
	got := ev.GetActionConfirmed()
	want := &notifyv1.ActionConfirmed{ActionId: "act-1", Action: notifyv1.ActionType_ACTION_TYPE_POINTS_REDEEM, Amount: 300, GuestId: "g1", RestaurantId: "r1"}
	if got == nil || got.OccurredAt == nil {
		t.Fatalf("delivered %v, want an ActionConfirmed with occurred_at", ev)
	}
	got = proto.CloneOf(got)
	got.OccurredAt = nil
	if !proto.Equal(got, want) || ev.Id != resp.EventId || ev.Room != "restaurant:r1" {
		t.Errorf("delivered %v in %s, want %v as event %s in restaurant:r1", got, ev.Room, want, resp.EventId)
	}
	if resp.Duplicate {
		t.Error("the first confirmation says duplicate")
	}
	// The same confirmation again: the first one's answer, said to be a
	// repeat, and nothing delivered again.
	again, err := c.ConfirmAction(withToken(ctx, mint(t, guestClaims)), req)
	if err != nil {
		t.Fatalf("repeated ConfirmAction: %v", err)
	}
	if !again.Duplicate || again.EventId != resp.EventId || !proto.Equal(again.Position, resp.Position) {
		t.Errorf("repeated ConfirmAction = %v, want duplicate with the first answer %v", again, resp)
	}

	_, err = c.ConfirmAction(withToken(ctx, mint(t, serviceClaims)), &notifyv1.ConfirmActionRequest{
		ActionId: "act-2", Action: notifyv1.ActionType_ACTION_TYPE_POINTS_REDEEM, Amount: 1, RestaurantId: "r1"})
	wantCode(t, err, codes.PermissionDenied, "service ConfirmAction")
}
