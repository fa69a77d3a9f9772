package node_test

import (
	"context"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	notifyv1 "github.com/maxloyalty/notify/gen/notify/v1"
	"github.com/maxloyalty/notify/internal/auth"
	"github.com/maxloyalty/notify/internal/node"
)

// TestShutdown: cancelling the node's context tells every stream to
// reconnect after a jittered delay, ends them with Unavailable, and Run
// returns within the drain time.
func TestShutdown(t *testing.T) {
	t.Parallel()
	const (
		minDelay = 100 * time.Millisecond
		maxDelay = 300 * time.Millisecond
		drain    = 2 * time.Second
	)
	n := startNode(t, func(c *node.Config) {
		c.ReconnectDelayMin, c.ReconnectDelayMax = minDelay, maxDelay
		c.ShutdownDrain = drain
	})
	ctx := testCtx(t)
	c := dial(t, n.GRPCAddr())

	guest, _ := subscribe(t, ctx, c, mint(t, guestClaims), &notifyv1.SubscribeRequest{})
	staff, _ := subscribe(t, ctx, c, mint(t, restaurantClaims), &notifyv1.SubscribeRequest{})
	resp := publish(t, ctx, c, pointsReq(pointsAdded("g1", "r1", 10)))
	guest.next(t)
	staff.next(t)

	start := time.Now()
	n.cancel()

	for _, s := range []struct {
		name string
		st   *stream
		room string // a room whose last position the Disconnected must carry
	}{{"guest", guest, "guest:g1"}, {"restaurant", staff, "restaurant:r1:points"}} {
		m, err := s.st.Recv()
		if err != nil {
			t.Fatalf("%s: Recv after shutdown: %v, want Disconnected first", s.name, err)
		}
		d := m.GetDisconnected()
		if d == nil {
			t.Fatalf("%s: got %v, want Disconnected", s.name, m)
		}
		if d.Reason != notifyv1.DisconnectReason_DISCONNECT_REASON_SERVER_RESTART {
			t.Errorf("%s: reason %v, want SERVER_RESTART", s.name, d.Reason)
		}
		if got := d.ReconnectDelay.AsDuration(); got < minDelay || got > maxDelay {
			t.Errorf("%s: reconnect_delay %v, want within [%v, %v]", s.name, got, minDelay, maxDelay)
		}
		want := position(t, resp, s.room)
		found := false
		for _, p := range d.Positions {
			if p.Room == s.room {
				found = true
				if p.Offset != want.Offset || p.Epoch != want.Epoch {
					t.Errorf("%s: Disconnected position %v, want %v", s.name, p, want)
				}
			}
		}
		if !found {
			t.Errorf("%s: Disconnected positions %v lack %s", s.name, d.Positions, s.room)
		}
		_, err = s.st.Recv()
		wantCode(t, err, codes.Unavailable, s.name+": stream end after Disconnected")
	}

	select {
	case <-n.done:
		if took := time.Since(start); took > drain {
			t.Errorf("Run returned after %v, want within the drain time %v", took, drain)
		}
		if n.runErr != nil {
			t.Errorf("Run = %v, want nil after cancel", n.runErr)
		}
	case <-time.After(drain + 3*time.Second):
		t.Fatalf("Run did not return within %v of cancel", drain+3*time.Second)
	}
}

// TestHeartbeats: an idle stream gets heartbeats at the configured interval.
func TestHeartbeats(t *testing.T) {
	t.Parallel()
	n := startNode(t, func(c *node.Config) { c.HeartbeatInterval = 100 * time.Millisecond })
	ctx, cancel := context.WithTimeout(testCtx(t), 3*time.Second)
	defer cancel()
	c := dial(t, n.GRPCAddr())

	s, conn := subscribe(t, ctx, c, mint(t, guestClaims), &notifyv1.SubscribeRequest{})
	if got := conn.HeartbeatInterval.AsDuration(); got != 100*time.Millisecond {
		t.Errorf("Connected heartbeat_interval = %v, want 100ms", got)
	}
	start := time.Now()
	for i := range 2 {
		m, err := s.Recv()
		if err != nil {
			t.Fatalf("waiting for heartbeat %d: %v", i+1, err)
		}
		hb := m.GetHeartbeat()
		if hb == nil || len(m.Events) != 0 {
			t.Fatalf("message %d = %v, want a bare heartbeat", i+1, m)
		}
		if ht := hb.Time.AsTime(); ht.Before(start.Add(-time.Second)) || ht.After(time.Now().Add(time.Second)) {
			t.Errorf("heartbeat time %v, want about now", ht)
		}
	}
	if took := time.Since(start); took < 150*time.Millisecond || took > time.Second {
		t.Errorf("2 heartbeats after %v, want them about 100ms apart", took)
	}
}

// TestResume: a stream that gives its last position gets what it missed,
// then live events, without duplicates; a wrong epoch gets no replay.
func TestResume(t *testing.T) {
	t.Parallel()
	n := startNode(t, nil)
	ctx := testCtx(t)
	c := dial(t, n.GRPCAddr())
	guestTok := mint(t, guestClaims)

	var epoch string
	for i := range 5 {
		resp := publish(t, ctx, c, pointsReq(pointsAdded("g1", "r1", int64(i+1)), "guest:g1"))
		p := position(t, resp, "guest:g1")
		if p.Offset != uint64(i+1) || (epoch != "" && p.Epoch != epoch) {
			t.Fatalf("publish %d: position %v, want offset %d in one epoch", i+1, p, i+1)
		}
		epoch = p.Epoch
	}

	t.Run("same epoch", func(t *testing.T) {
		s, conn := subscribe(t, ctx, c, guestTok, &notifyv1.SubscribeRequest{
			Rooms:     []string{"guest:g1"},
			Positions: []*notifyv1.StreamPosition{{Room: "guest:g1", Offset: 2, Epoch: epoch}},
		})
		if len(conn.Rooms) != 1 || !conn.Rooms[0].Recovered || conn.Rooms[0].Epoch != epoch || conn.Rooms[0].Offset < 5 {
			t.Fatalf("Connected rooms = %v, want guest:g1 recovered in epoch %s at offset >= 5", conn.Rooms, epoch)
		}
		replay := s.nextN(t, 3)
		if got := offsets(replay); !slices.Equal(got, []uint64{3, 4, 5}) {
			t.Fatalf("replayed offsets %v, want [3 4 5]", got)
		}
		for i, ev := range replay {
			if ev.Epoch != epoch || ev.GetPointsAdded().GetAmount() != int64(i+3) {
				t.Errorf("replayed %v, want amount %d in epoch %s", ev, i+3, epoch)
			}
		}
		live := publish(t, ctx, c, pointsReq(pointsAdded("g1", "r1", 6), "guest:g1"))
		ev := s.next(t)
		if ev.Offset != 6 || ev.Id != live.EventId {
			t.Fatalf("after replay got offset %d (%s), want live offset 6 (%s)", ev.Offset, ev.Id, live.EventId)
		}
		marker := publish(t, ctx, c, pointsReq(pointsAdded("g1", "r1", 7), "guest:g1"))
		if ev := s.next(t); ev.Offset != 7 || ev.Id != marker.EventId {
			t.Errorf("next event offset %d (%s), want 7 (%s): a duplicate or a gap", ev.Offset, ev.Id, marker.EventId)
		}
	})

	t.Run("wrong epoch", func(t *testing.T) {
		s, conn := subscribe(t, ctx, c, guestTok, &notifyv1.SubscribeRequest{
			Rooms:     []string{"guest:g1"},
			Positions: []*notifyv1.StreamPosition{{Room: "guest:g1", Offset: 2, Epoch: "not-" + epoch}},
		})
		if len(conn.Rooms) != 1 || conn.Rooms[0].Recovered || conn.Rooms[0].Epoch != epoch {
			t.Fatalf("Connected rooms = %v, want guest:g1 not recovered, current epoch %s", conn.Rooms, epoch)
		}
		// The client's epoch is lost, but the room's current epoch is
		// whole from offset 1: it is replayed, then the stream goes live.
		top := conn.Rooms[0].Offset
		live := publish(t, ctx, c, pointsReq(pointsAdded("g1", "r1", 99), "guest:g1"))
		evs := s.nextN(t, int(top)+1)
		got := offsets(evs)
		want := make([]uint64, 0, top+1)
		for o := uint64(1); o <= top+1; o++ {
			want = append(want, o)
		}
		if !slices.Equal(got, want) {
			t.Errorf("offsets after an epoch change = %v, want the current epoch replayed then live: %v", got, want)
		}
		if last := evs[len(evs)-1]; last.Id != live.EventId {
			t.Errorf("last event %s, want the live one %s", last.Id, live.EventId)
		}
	})
}

// TestSlowConsumer: a stream that stops reading is cut with SLOW_CONSUMER
// and ResourceExhausted, while a reading stream of the same room gets every
// event in order.
func TestSlowConsumer(t *testing.T) {
	t.Parallel()
	const events = 2000
	n := startNode(t, func(c *node.Config) { c.QueueBytes = 4096 })
	ctx, cancel := context.WithTimeout(context.Background(), 45*time.Second)
	defer cancel()
	pub := dial(t, n.GRPCAddr())
	// Fixed 64 KiB flow-control windows (no BDP growth) so that a stream
	// that is not read blocks the server quickly.
	slowConn := dial(t, n.GRPCAddr(), grpc.WithInitialWindowSize(64<<10), grpc.WithInitialConnWindowSize(64<<10))
	fastConn := dial(t, n.GRPCAddr())

	slowCtx, slowCancel := context.WithCancel(ctx)
	defer slowCancel()
	slow, _ := subscribe(t, slowCtx, slowConn, mint(t, guestClaims), &notifyv1.SubscribeRequest{Rooms: []string{"guest:g1"}})
	fast, _ := subscribe(t, ctx, fastConn, mint(t, adminClaims), &notifyv1.SubscribeRequest{Rooms: []string{"guest:g1"}})

	// The reading subscriber runs on its own goroutine; it only reports.
	got := make(chan *notifyv1.Event, events+10)
	readErr := make(chan error, 1)
	go func() {
		for {
			m, err := fast.Recv()
			if err != nil {
				readErr <- err
				return
			}
			for _, ev := range m.Events {
				got <- ev
			}
		}
	}()

	svc := withToken(ctx, mint(t, serviceClaims))
	desc := strings.Repeat("d", 1000)
	ids := make([]string, 0, events)
	for i := range events {
		p := pointsAdded("g1", "r1", int64(i+1))
		p.Description = desc
		resp, err := pub.Publish(svc, pointsReq(p, "guest:g1"))
		if err != nil {
			t.Fatalf("publish %d: %v", i+1, err)
		}
		ids = append(ids, resp.EventId)
		// Lock-step with the reading subscriber, so that its own 4 KiB
		// queue never holds more than one event.
		select {
		case ev := <-got:
			if ev.Offset != uint64(i+1) || ev.Id != resp.EventId {
				t.Fatalf("reading subscriber got offset %d (%s), want %d (%s)", ev.Offset, ev.Id, i+1, resp.EventId)
			}
		case err := <-readErr:
			t.Fatalf("reading subscriber ended after %d events: %v", i, err)
		case <-ctx.Done():
			t.Fatalf("reading subscriber: no event %d: %v", i+1, ctx.Err())
		}
	}

	// Now the slow subscriber reads: some events in order, then
	// Disconnected(SLOW_CONSUMER), then ResourceExhausted. A stream that
	// was never cut would block here, so the reading is bounded.
	stopSlow := time.AfterFunc(10*time.Second, slowCancel)
	defer stopSlow.Stop()
	var (
		last uint64
		disc *notifyv1.Disconnected
		err  error
	)
	for range events + 10 {
		var m *notifyv1.SubscribeResponse
		m, err = slow.Recv()
		if err != nil {
			break
		}
		for _, ev := range m.Events {
			if disc != nil {
				t.Fatalf("event after Disconnected: %v", ev)
			}
			if ev.Offset != last+1 || ev.Id != ids[ev.Offset-1] {
				t.Fatalf("slow subscriber got offset %d after %d (id %s)", ev.Offset, last, ev.Id)
			}
			last = ev.Offset
		}
		if d := m.GetDisconnected(); d != nil {
			disc = d
		}
	}
	wantCode(t, err, codes.ResourceExhausted, "slow subscriber's stream end")
	if last >= events {
		t.Errorf("slow subscriber got all %d events, want it cut off", last)
	}
	// A stream stuck on flow control is cut without a last message: the
	// status alone carries the positions. One that could still be written
	// gets Disconnected first.
	if disc != nil {
		if disc.Reason != notifyv1.DisconnectReason_DISCONNECT_REASON_SLOW_CONSUMER {
			t.Errorf("Disconnected reason %v, want SLOW_CONSUMER", disc.Reason)
		}
		if len(disc.Positions) != 1 || disc.Positions[0].Room != "guest:g1" || disc.Positions[0].Offset != last {
			t.Errorf("Disconnected positions %v, want guest:g1 at the last delivered offset %d", disc.Positions, last)
		}
	}
	if info := errorInfo(err); info == nil || info.Reason != "SLOW_CONSUMER" || !strings.HasSuffix(info.Metadata["guest.g1"], "/"+strconv.FormatUint(last, 10)) {
		t.Errorf("status %v: want reason SLOW_CONSUMER and metadata guest.g1 = epoch/%d", err, last)
	}

	if s := n.Hub().Stats(); s.SlowConsumers != 1 {
		t.Errorf("hub SlowConsumers = %d, want 1", s.SlowConsumers)
	}
	t.Logf("slow subscriber received %d of %d events before being cut", last, events)
}

// TestIdempotency: a repeated idempotency key returns the first result,
// flagged duplicate, and the event is delivered once.
func TestIdempotency(t *testing.T) {
	t.Parallel()
	n := startNode(t, nil)
	ctx := testCtx(t)
	c := dial(t, n.GRPCAddr())

	s, _ := subscribe(t, ctx, c, mint(t, guestClaims), &notifyv1.SubscribeRequest{Rooms: []string{"guest:g1"}})

	req := pointsReq(pointsAdded("g1", "r1", 5), "guest:g1")
	req.IdempotencyKey = "order-42"
	first := publish(t, ctx, c, req)
	second := publish(t, ctx, c, req)
	if first.Duplicate || !second.Duplicate {
		t.Errorf("duplicate flags = %v, %v; want false, true", first.Duplicate, second.Duplicate)
	}
	if second.EventId != first.EventId || len(second.Positions) != 1 ||
		second.Positions[0].Offset != first.Positions[0].Offset || second.Positions[0].Epoch != first.Positions[0].Epoch {
		t.Errorf("second result %v, want the first's %v", second, first)
	}

	// Keys are per publisher: another service's same key is a new event.
	other := auth.Claims{Subject: "svc2", Role: notifyv1.Role_ROLE_SERVICE}
	third, err := c.Publish(withToken(ctx, mint(t, other)), req)
	if err != nil {
		t.Fatalf("Publish by svc2: %v", err)
	}
	if third.Duplicate || third.EventId == first.EventId {
		t.Errorf("svc2 with the same key: %v, want a new event", third)
	}

	evs := s.nextN(t, 2)
	if evs[0].Id != first.EventId || evs[0].Offset != 1 || evs[0].IdempotencyKey != "order-42" {
		t.Errorf("first delivery %v, want %s at offset 1 with its key", evs[0], first.EventId)
	}
	if evs[1].Id != third.EventId || evs[1].Offset != 2 {
		t.Errorf("second delivery %v, want svc2's %s at offset 2 (the duplicate must not be delivered)", evs[1], third.EventId)
	}
}

// TestStreamTokenExpiry: a stream whose token expires is told so with
// Disconnected(TOKEN_EXPIRED) and ended with Unauthenticated.
func TestStreamTokenExpiry(t *testing.T) {
	t.Parallel()
	n := startNode(t, nil)
	ctx := testCtx(t)
	c := dial(t, n.GRPCAddr())

	// exp has one-second precision: this token expires 1 to 2 s from now.
	tok := mintWith(t, testSecret, guestClaims, 2*time.Second)
	s, _ := subscribe(t, ctx, c, tok, &notifyv1.SubscribeRequest{})
	start := time.Now()
	m, err := s.Recv()
	if err != nil {
		t.Fatalf("Recv: %v, want Disconnected first", err)
	}
	if d := m.GetDisconnected(); d == nil || d.Reason != notifyv1.DisconnectReason_DISCONNECT_REASON_TOKEN_EXPIRED {
		t.Fatalf("got %v, want Disconnected(TOKEN_EXPIRED)", m)
	}
	// The verifier allows 5s of clock skew past exp; the stream lives
	// exactly as long as a new call with the token would be accepted.
	if took := time.Since(start); took > 8*time.Second {
		t.Errorf("stream cut %v after subscribing, want within the token's 2s plus 5s leeway", took)
	}
	_, err = s.Recv()
	wantCode(t, err, codes.Unauthenticated, "stream end after token expiry")
}

// TestShutdownGRPCWeb: a grpc-web stream is told to reconnect at shutdown
// like a native one, and its trailer frame carries grpc-status 14.
//
// TestShutdownGRPCWeb: grpc-web streams ride on HTTP requests, which the
// node drains before GracefulStop; each gets its Disconnected and status.
// The scenario repeats to catch a race.
func TestShutdownGRPCWeb(t *testing.T) {
	t.Parallel()
	for i := range 20 {
		n := startNode(t, func(c *node.Config) {
			c.ReconnectDelayMin, c.ReconnectDelayMax = 100*time.Millisecond, 300*time.Millisecond
			c.ShutdownDrain = 2 * time.Second
		})
		ctx := testCtx(t)
		resp := webCall(t, ctx, n.HTTPAddr(), "Subscribe", mint(t, guestClaims), &notifyv1.SubscribeRequest{Rooms: []string{"guest:g1"}})
		ws := &webStream{body: resp.Body}
		if m := ws.next(t); m.GetConnected() == nil {
			t.Fatalf("run %d: first message %v, want connected", i, m)
		}
		n.cancel()
		var (
			disc   *notifyv1.Disconnected
			status string
		)
		for range 10 {
			f, err := readWebFrame(resp.Body)
			if err != nil {
				break
			}
			if f.isTrailer() {
				status = webTrailers(t, f.data).Get("Grpc-Status")
				break
			}
			var m notifyv1.SubscribeResponse
			if err := proto.Unmarshal(f.data, &m); err != nil {
				t.Fatalf("run %d: frame: %v", i, err)
			}
			if d := m.GetDisconnected(); d != nil {
				disc = d
			}
		}
		if disc == nil || disc.Reason != notifyv1.DisconnectReason_DISCONNECT_REASON_SERVER_RESTART || status != "14" {
			t.Fatalf("run %d: Disconnected %v and grpc-status %q, want SERVER_RESTART and 14", i, disc, status)
		}
		if err := n.stop(); err != nil {
			t.Fatalf("run %d: stop: %v", i, err)
		}
	}
}

// errorInfo returns the ErrorInfo err's status carries, or nil.
func errorInfo(err error) *errdetails.ErrorInfo {
	st, _ := status.FromError(err)
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok {
			return info
		}
	}
	return nil
}
