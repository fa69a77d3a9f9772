package node_test

import (
	"testing"
	"time"

	notifyv1 "github.com/maxloyalty/notify/gen/notify/v1"
	"github.com/maxloyalty/notify/internal/node"
)

// TestHeartbeatsOnlyWhenIdle: an idle stream gets a heartbeat about once per interval,
// never sooner; a stream that carries events more often gets none, since
// each write shows the client the stream is alive.
func TestHeartbeatsOnlyWhenIdle(t *testing.T) {
	t.Parallel()
	const interval = time.Second
	n := startNode(t, func(c *node.Config) { c.HeartbeatInterval = interval })
	ctx := testCtx(t)
	c := dial(t, n.GRPCAddr())
	s, _ := subscribe(t, ctx, c, mint(t, guestClaims), &notifyv1.SubscribeRequest{})

	last := time.Now()
	for i := range 3 {
		m, err := s.Recv()
		if err != nil {
			t.Fatalf("idle stream: %v", err)
		}
		if m.GetHeartbeat() == nil {
			t.Fatalf("idle stream got %v, want a heartbeat", m)
		}
		gap := time.Since(last)
		last = time.Now()
		if gap < interval*9/10 || gap > 4*interval {
			t.Errorf("heartbeat %d came %v after the previous write, want about %v", i+1, gap, interval)
		}
	}

	svc := dial(t, n.GRPCAddr())
	const events = 15
	for i := range events {
		publish(t, ctx, svc, pointsReq(pointsAdded("g1", "r1", int64(i+1)), "guest:g1"))
		if ev := s.next(t); ev.GetPointsAdded().GetAmount() != int64(i+1) {
			t.Fatalf("event %d: got %v", i+1, ev)
		}
		time.Sleep(interval / 5) // pacing: an event every fifth of the interval keeps the stream busy
	}
	if s.heartbeats != 0 {
		t.Errorf("stream carrying an event every %v got %d heartbeats, want none", interval/5, s.heartbeats)
	}
}
