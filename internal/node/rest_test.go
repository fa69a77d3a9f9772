package node_test

import (
	"net/http"
	"slices"
	"testing"

	notifyv1 "github.com/maxloyalty/notify/gen/notify/v1"
)

// TestRESTPublish covers the three REST publish routes with a service token.
func TestRESTPublish(t *testing.T) {
	t.Parallel()
	n := startNode(t, nil)
	ctx := testCtx(t)
	c := dial(t, n.GRPCAddr())
	base := "http://" + n.HTTPAddr()
	svc := mint(t, serviceClaims)

	guest, _ := subscribe(t, ctx, c, mint(t, guestClaims), &notifyv1.SubscribeRequest{Rooms: []string{"guest:g1"}})

	t.Run("events", func(t *testing.T) {
		r := restDo(t, ctx, http.MethodPost, base+"/v1/events", svc,
			`{"pointsAdded":{"guestId":"g1","cardId":"c1","amount":"25","newBalance":"125","restaurantId":"r1","description":"rest"}}`)
		if r.status != http.StatusOK {
			t.Fatalf("POST /v1/events: %d %s", r.status, r.body)
		}
		var resp notifyv1.PublishResponse
		unmarshalJSON(t, r.body, &resp)
		if resp.EventId == "" {
			t.Errorf("no eventId in %s", r.body)
		}
		if got, want := positionRooms(resp.Positions), []string{"guest:g1", "restaurant:r1:points"}; !slices.Equal(got, want) {
			t.Errorf("positions rooms = %v, want %v (body %s)", got, want, r.body)
		}
		if p := position(t, &resp, "guest:g1"); p.Offset != 1 || p.Epoch == "" {
			t.Errorf("guest:g1 position = %v, want offset 1 and an epoch", p)
		}
		ev := guest.next(t)
		if ev.Id != resp.EventId || ev.Room != "guest:g1" || ev.GetPointsAdded().GetAmount() != 25 || ev.GetPointsAdded().GetDescription() != "rest" {
			t.Errorf("delivered %v, want event %s in guest:g1 with amount 25", ev, resp.EventId)
		}
	})

	t.Run("room", func(t *testing.T) {
		r := restDo(t, ctx, http.MethodPost, base+"/v1/rooms/guest:g1/events", svc,
			`{"pointsAdded":{"guestId":"g1","amount":"3","restaurantId":"r1"}}`)
		if r.status != http.StatusOK {
			t.Fatalf("POST /v1/rooms/guest:g1/events: %d %s", r.status, r.body)
		}
		var resp notifyv1.PublishResponse
		unmarshalJSON(t, r.body, &resp)
		if got, want := positionRooms(resp.Positions), []string{"guest:g1"}; !slices.Equal(got, want) {
			t.Errorf("positions rooms = %v, want only %v (body %s)", got, want, r.body)
		}
		ev := guest.next(t)
		if ev.Id != resp.EventId || ev.Room != "guest:g1" || ev.Offset != resp.Positions[0].Offset {
			t.Errorf("delivered %v, want event %s at %v", ev, resp.EventId, resp.Positions[0])
		}
	})

	t.Run("batch", func(t *testing.T) {
		r := restDo(t, ctx, http.MethodPost, base+"/v1/events:batchPublish", svc,
			`{"requests":[
				{"rooms":["guest:g1"],"pointsAdded":{"guestId":"g1","amount":"1","restaurantId":"r1"}},
				{"rooms":["guest:g1"],"pointsRedeemed":{"guestId":"g1","amount":"2","restaurantId":"r1","rewardName":"tea"}}
			]}`)
		if r.status != http.StatusOK {
			t.Fatalf("POST /v1/events:batchPublish: %d %s", r.status, r.body)
		}
		var resp notifyv1.PublishBatchResponse
		unmarshalJSON(t, r.body, &resp)
		if len(resp.Results) != 2 {
			t.Fatalf("results = %v, want 2", resp.Results)
		}
		evs := guest.nextN(t, 2)
		for i, ev := range evs {
			res := resp.Results[i]
			if ev.Id != res.EventId || len(res.Positions) != 1 || ev.Offset != res.Positions[0].Offset {
				t.Errorf("event %d delivered = %v, want result %v", i, ev, res)
			}
		}
		if evs[0].GetPointsAdded().GetAmount() != 1 || evs[1].GetPointsRedeemed().GetRewardName() != "tea" {
			t.Errorf("batch delivered out of order or altered: %v", evs)
		}
		if evs[1].Offset != evs[0].Offset+1 {
			t.Errorf("offsets %v, want consecutive", offsets(evs))
		}
	})
}

// TestRESTSubscribe streams newline-delimited JSON from GET /v1/subscribe.
func TestRESTSubscribe(t *testing.T) {
	t.Parallel()
	n := startNode(t, nil)
	ctx := testCtx(t)
	c := dial(t, n.GRPCAddr())

	s := restSubscribe(t, ctx, n.HTTPAddr(), "rooms=guest:g1", mint(t, guestClaims))
	if s.resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /v1/subscribe: status %d", s.resp.StatusCode)
	}
	first := s.next(t)
	conn := first.GetConnected()
	if conn == nil || conn.UserId != "g1" || conn.Role != notifyv1.Role_ROLE_GUEST {
		t.Fatalf("first line = %v, want connected for g1", first)
	}
	if got := roomStateNames(conn.Rooms); !slices.Equal(got, []string{"guest:g1"}) {
		t.Errorf("connected rooms = %v, want [guest:g1]", got)
	}

	resp := publish(t, ctx, c, pointsReq(pointsAdded("g1", "r1", 42)))
	var ev *notifyv1.Event
	for range 100 { // skip heartbeats, if any
		m := s.next(t)
		if len(m.Events) > 0 {
			ev = m.Events[0]
			break
		}
		if m.GetHeartbeat() == nil {
			t.Fatalf("unexpected line %v", m)
		}
	}
	if ev == nil {
		t.Fatal("no event line")
	}
	want := position(t, resp, "guest:g1")
	if ev.Id != resp.EventId || ev.Room != "guest:g1" || ev.Offset != want.Offset || ev.Epoch != want.Epoch ||
		ev.GetPointsAdded().GetAmount() != 42 {
		t.Errorf("event line = %v, want %s at %v with amount 42", ev, resp.EventId, want)
	}
}

func positionRooms(ps []*notifyv1.StreamPosition) []string {
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = p.Room
	}
	slices.Sort(out)
	return out
}
