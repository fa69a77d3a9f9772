package node_test

import (
	"strings"
	"testing"

	notifyv1 "github.com/maxloyalty/notify/gen/notify/v1"
)

// TestResumeLargeReplay: a resume that misses far more than one write
// (about 400 KB of 2 KB events, against 64 KiB per write) gets every
// missed event once and in order, then live events.
func TestResumeLargeReplay(t *testing.T) {
	t.Parallel()
	n := startNode(t, nil)
	ctx := testCtx(t)
	c := dial(t, n.GRPCAddr())
	const room, missed = "restaurant:r1:transactions", 200
	long := strings.Repeat("x", 1900)
	var ids []string
	var epoch string
	for i := range missed + 1 {
		p := pointsAdded("g1", "r1", int64(i+1))
		p.Description = long
		resp := publish(t, ctx, c, pointsReq(p, room))
		ids = append(ids, resp.EventId)
		epoch = position(t, resp, room).Epoch
	}

	s, conn := subscribe(t, ctx, c, mint(t, restaurantClaims), &notifyv1.SubscribeRequest{
		Rooms:     []string{room},
		Positions: []*notifyv1.StreamPosition{{Room: room, Offset: 1, Epoch: epoch}},
	})
	if len(conn.Rooms) != 1 || !conn.Rooms[0].Recovered || conn.Rooms[0].StartOffset != 1 {
		t.Fatalf("Connected rooms = %v, want %s recovered from offset 1", conn.Rooms, room)
	}
	for i, ev := range s.nextN(t, missed) {
		if ev.Offset != uint64(i+2) || ev.Id != ids[i+1] {
			t.Fatalf("replayed event %d: offset %d id %s, want offset %d id %s", i, ev.Offset, ev.Id, i+2, ids[i+1])
		}
	}
	live := publish(t, ctx, c, pointsReq(pointsAdded("g1", "r1", 9999), room))
	if ev := s.next(t); ev.Offset != missed+2 || ev.Id != live.EventId {
		t.Fatalf("after the replay got offset %d (%s), want live offset %d (%s)", ev.Offset, ev.Id, missed+2, live.EventId)
	}
}
