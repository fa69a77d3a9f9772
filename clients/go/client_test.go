package notify_test

import (
	"context"
	"encoding/hex"
	"errors"
	"log/slog"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	notify "github.com/maxloyalty/notify/clients/go"
	notifyv1 "github.com/maxloyalty/notify/gen/notify/v1"
)

// checkKey fails t unless key looks like a generated idempotency key.
func checkKey(t *testing.T, key string) {
	t.Helper()
	if b, err := hex.DecodeString(key); err != nil || len(b) != 16 {
		t.Errorf("idempotency key %q: want 128 random bits in hex", key)
	}
}

// checkSequence checks events of the guest:g1 room: PointsAdded amounts
// 1..len(events) in order (each delivered exactly once), and within each
// epoch strictly consecutive offsets. It returns the epochs seen, in order.
func checkSequence(t *testing.T, events []*notifyv1.Event) []string {
	t.Helper()
	var epochs []string
	var last uint64
	for i, ev := range events {
		if ev.Room != "guest:g1" {
			t.Fatalf("event %d: room %q, want guest:g1", i, ev.Room)
		}
		if got := ev.GetPointsAdded().GetAmount(); got != int64(i+1) {
			t.Fatalf("event %d: amount %d, want %d (lost, doubled or out of order)", i, got, i+1)
		}
		if len(epochs) == 0 || epochs[len(epochs)-1] != ev.Epoch {
			epochs = append(epochs, ev.Epoch)
			last = ev.Offset - 1
		}
		if ev.Offset != last+1 {
			t.Fatalf("event %d: offset %d in epoch %s, want %d", i, ev.Offset, ev.Epoch, last+1)
		}
		last = ev.Offset
	}
	return epochs
}

func TestPublishAndReceive(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	ctx := testContext(t, 30*time.Second)
	pub := dial(t, srv.GRPCAddr, notify.WithToken(mustMint(t, "loyalty-backend", "service")))
	guest := dial(t, srv.GRPCAddr, notify.WithToken(mustMint(t, "g1", "guest")))

	connected := make(chan *notifyv1.Connected, 4)
	sub := guest.Subscribe(ctx, notify.SubscribeOptions{
		OnConnected: func(c *notifyv1.Connected) { connected <- c },
	})
	defer sub.Close()
	var c *notifyv1.Connected
	select {
	case c = <-connected:
	case <-time.After(10 * time.Second):
		t.Fatal("no Connected within 10s")
	}
	if c.UserId != "g1" || c.Role != notifyv1.Role_ROLE_GUEST || c.ServerId != "sdk-test" || len(c.Rooms) != 2 {
		t.Fatalf("connected = %v", c)
	}
	if sub.Connected() != c {
		t.Errorf("Connected() is not the stream's Connected")
	}

	pa := &notifyv1.PointsAdded{
		GuestId:        "g1",
		CardId:         "c1",
		Amount:         100,
		NewBalance:     600,
		RestaurantId:   "r1",
		RestaurantName: "Chez Max",
		TransactionId:  "t1",
		Description:    "Lunch",
		OccurredAt:     timestamppb.New(time.Date(2025, 3, 1, 12, 30, 0, 0, time.UTC)),
	}
	resp, err := pub.Publish(ctx, pa)
	if err != nil {
		t.Fatal(err)
	}
	if resp.Duplicate || len(resp.Positions) != 2 || resp.Positions[0].Room != "restaurant:r1:points" || resp.Positions[1].Room != "guest:g1" {
		t.Fatalf("publish response = %v", resp)
	}
	epoch := resp.Positions[1].Epoch

	var ev *notifyv1.Event
	select {
	case ev = <-sub.Events():
	case <-time.After(10 * time.Second):
		t.Fatal("no event within 10s")
	}
	if ev.Id != resp.EventId || ev.Room != "guest:g1" || ev.Offset != 1 || ev.Epoch != epoch || ev.PublishTime == nil {
		t.Fatalf("event envelope = id %q room %q offset %d epoch %q time %v; want id %q guest:g1 1 %q",
			ev.Id, ev.Room, ev.Offset, ev.Epoch, ev.PublishTime, resp.EventId, epoch)
	}
	checkKey(t, ev.IdempotencyKey)
	if !proto.Equal(ev.GetPointsAdded(), pa) {
		t.Fatalf("payload = %v, want %v", ev.GetPointsAdded(), pa)
	}

	// A batch: the events may come several to a message; they arrive in order.
	var reqs []*notifyv1.PublishRequest
	for i := 2; i <= 6; i++ {
		r, err := notify.NewPublishRequest(points(i), notify.Rooms("guest:g1"))
		if err != nil {
			t.Fatal(err)
		}
		reqs = append(reqs, r)
	}
	if _, err := pub.PublishBatch(ctx, reqs); err != nil {
		t.Fatal(err)
	}
	for i := 2; i <= 6; i++ {
		select {
		case ev = <-sub.Events():
		case <-time.After(10 * time.Second):
			t.Fatalf("event %d not received within 10s", i)
		}
		if ev.Offset != uint64(i) || ev.GetPointsAdded().GetAmount() != int64(i) || ev.Epoch != epoch {
			t.Fatalf("event %d: offset %d amount %d epoch %s", i, ev.Offset, ev.GetPointsAdded().GetAmount(), ev.Epoch)
		}
	}
	pos := sub.Positions()
	if got := pos["guest:g1"]; got != (notify.Position{Offset: 6, Epoch: epoch}) {
		t.Errorf("Positions()[guest:g1] = %v, want 6@%s", got, epoch)
	}
	if _, ok := pos["user:g1"]; !ok || len(pos) != 2 {
		t.Errorf("Positions() = %v, want guest:g1 and user:g1", pos)
	}

	sub.Close()
	if err := sub.Err(); err != nil {
		t.Errorf("Err after Close = %v, want nil", err)
	}
	if _, open := <-sub.Events(); open {
		t.Errorf("Events still open after Close")
	}
}

func TestSubscriberSurvivesServerRestarts(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	ctx := testContext(t, 120*time.Second)
	var logs syncBuffer
	pub := dial(t, srv.GRPCAddr, notify.WithToken(mustMint(t, "loyalty-backend", "service")))
	guest := dial(t, srv.GRPCAddr, notify.WithToken(mustMint(t, "g1", "guest")),
		notify.WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))

	var rec recorder
	sub := guest.Subscribe(ctx, rec.options())
	defer sub.Close()
	waitFor(t, 10*time.Second, "the first connection", func() bool { _, c, _ := rec.counts(); return c == 1 })

	n := 0
	publish := func(k int) {
		t.Helper()
		want := n + k
		for ; n < want; n++ {
			publishRetry(ctx, t, pub, points(n+1))
		}
		waitFor(t, 20*time.Second, "the published events", func() bool { e, _, _ := rec.counts(); return e == want })
	}
	publish(3)

	restart := func(how string, stop func(*notifyd, *testing.T), gaps int) {
		t.Helper()
		start := time.Now()
		stop(srv, t)
		srv.mustStart(t)
		// The new node's rooms have new epochs: guest:g1 cannot be replayed.
		waitFor(t, 20*time.Second, "the reconnection after "+how, func() bool { _, _, g := rec.counts(); return g == gaps })
		t.Logf("%s: reconnected %v after the stop", how, time.Since(start).Round(time.Millisecond))
		// Everything published from now on arrives, once and in order.
		publish(20)
	}
	restart("SIGKILL", (*notifyd).mustKill, 1)
	restart("SIGTERM", (*notifyd).mustTerm, 2)
	if sub.Err() != nil {
		t.Fatalf("subscription stopped: %v", sub.Err())
	}

	events, connected, gaps := rec.snapshot()
	if epochs := checkSequence(t, events); len(epochs) != 3 {
		t.Errorf("epochs = %v, want 3 (one per server life)", epochs)
	}
	if len(connected) < 3 {
		t.Errorf("%d connections, want at least 3", len(connected))
	}
	for _, g := range gaps {
		if g.Room != "guest:g1" || g.Recovered {
			t.Errorf("gap = %v, want guest:g1 not recovered (user:g1 had no events to lose)", g)
		}
	}
	last := events[len(events)-1]
	if got := sub.Positions()["guest:g1"]; got != (notify.Position{Offset: last.Offset, Epoch: last.Epoch}) {
		t.Errorf("position = %v, want the last event's %d@%s", got, last.Offset, last.Epoch)
	}
	// The graceful stop said when to come back (--reconnect-delay-min/max):
	// the subscription waited that long rather than its own backoff.
	honoured := false
	for _, l := range strings.Split(logs.String(), "\n") {
		if !strings.Contains(l, "reason=DISCONNECT_REASON_SERVER_RESTART") {
			continue
		}
		_, w, _ := strings.Cut(l, " wait=")
		w, _, _ = strings.Cut(w, " ")
		d, err := time.ParseDuration(w)
		honoured = err == nil && d >= 50*time.Millisecond && d <= 200*time.Millisecond
	}
	if !honoured {
		t.Errorf("no reconnection after Disconnected{SERVER_RESTART} waited its reconnect_delay; log:\n%s", logs.String())
	}
}

func TestResumeAfterConnectionDrops(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	px := startProxy(t, srv.GRPCAddr)
	ctx := testContext(t, 60*time.Second)
	pub := dial(t, srv.GRPCAddr, notify.WithToken(mustMint(t, "loyalty-backend", "service")))
	guest := dial(t, px.Addr(), notify.WithToken(mustMint(t, "g1", "guest")))

	var rec recorder
	sub := guest.Subscribe(ctx, rec.options())
	defer sub.Close()
	waitFor(t, 10*time.Second, "the first connection", func() bool { _, c, _ := rec.counts(); return c == 1 })

	// Three times: events delivered live, then the proxy cuts the
	// subscriber's connection while a burst of publishes is under way, more
	// events are published while it is down, and the proxy lets it back.
	n := 0 // events published
	publishN := func(k int) {
		t.Helper()
		for range k {
			n++
			if _, err := pub.Publish(ctx, points(n)); err != nil {
				t.Fatal(err)
			}
		}
	}
	received := func() int { e, _, _ := rec.counts(); return e }
	for cut := 1; cut <= 3; cut++ {
		waitFor(t, 10*time.Second, "a connection", func() bool { _, c, _ := rec.counts(); return c == cut })
		publishN(5)
		waitFor(t, 10*time.Second, "the live events", func() bool { return received() >= n })
		const burst = 20
		var sent atomic.Int32
		burstErr := make(chan error, 1)
		go func(from int) {
			for i := range burst {
				if _, err := pub.Publish(ctx, points(from+i)); err != nil {
					burstErr <- err
					return
				}
				sent.Add(1)
			}
			burstErr <- nil
		}(n + 1)
		waitFor(t, 10*time.Second, "the burst under way", func() bool { return sent.Load() >= 5 })
		px.cut()
		if err := <-burstErr; err != nil {
			t.Fatal(err)
		}
		n += burst
		publishN(5) // missed live: the reconnection replays them
		px.restore()
	}
	waitFor(t, 10*time.Second, "the last reconnection", func() bool { _, c, _ := rec.counts(); return c == 4 })
	// The last event is received last: a duplicate of any before it (a
	// replay overlapping the live events) would have come first.
	publishN(1)
	total := n
	waitFor(t, 20*time.Second, "every event", func() bool { return received() >= total })
	t.Logf("%d events published across 3 cuts", total)

	events, connected, gaps := rec.snapshot()
	if len(events) != total {
		t.Fatalf("%d events, want %d", len(events), total)
	}
	if epochs := checkSequence(t, events); len(epochs) != 1 {
		t.Errorf("epochs = %v, want one", epochs)
	}
	if len(gaps) != 0 {
		t.Errorf("OnGap fired for %v; every room should have been recovered", gaps)
	}
	if len(connected) != 4 {
		t.Errorf("%d connections, want 4 (one per cut)", len(connected))
	}
	for _, c := range connected[1:] {
		for _, r := range c.Rooms {
			if !r.Recovered {
				t.Errorf("reconnection: room %s not recovered", r.Room)
			}
		}
	}
	// Events were published during each cut: the reconnections replayed them.
	if n := rec.replayed("guest:g1"); n != 3 {
		t.Errorf("%d reconnections replayed the events missed during their cut, want 3", n)
	}
}

func TestTokenSourceRefreshesExpiringStreams(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	ctx := testContext(t, 60*time.Second)
	pub := dial(t, srv.GRPCAddr, notify.WithToken(mustMint(t, "loyalty-backend", "service")))
	var calls atomic.Int32
	var logs syncBuffer
	guest := dial(t, srv.GRPCAddr,
		notify.WithTokenSource(notify.TokenFunc(func(context.Context) (string, error) {
			calls.Add(1)
			return mint("g1", "guest", "", 2*time.Second)
		})),
		notify.WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))

	var rec recorder
	sub := guest.Subscribe(ctx, rec.options())
	defer sub.Close()
	waitFor(t, 10*time.Second, "the first connection", func() bool { _, c, _ := rec.counts(); return c == 1 })

	// Events before and after each of three token renewals: the stream's
	// token expires, the source is asked for a new one, and the stream goes
	// on from where it was.
	total := 0
	for renewal := 1; renewal <= 4; renewal++ {
		for range 5 {
			total++
			if _, err := pub.Publish(ctx, points(total)); err != nil {
				t.Fatal(err)
			}
		}
		waitFor(t, 10*time.Second, "the events", func() bool { e, _, _ := rec.counts(); return e >= total })
		if renewal < 4 {
			waitFor(t, 10*time.Second, "a renewed token", func() bool { return calls.Load() > int32(renewal) })
		}
	}
	// The last event is received last: a duplicate would have come first.
	total++
	if _, err := pub.Publish(ctx, points(total)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, "every event", func() bool { e, _, _ := rec.counts(); return e >= total })

	if err := sub.Err(); err != nil {
		t.Fatalf("subscription stopped: %v", err)
	}
	events, connected, gaps := rec.snapshot()
	if len(events) != total {
		t.Fatalf("%d events, want %d", len(events), total)
	}
	checkSequence(t, events)
	if len(gaps) != 0 {
		t.Errorf("OnGap fired for %v", gaps)
	}
	if len(connected) < 4 {
		t.Errorf("%d connections across three token renewals, want at least 4", len(connected))
	}
	if int(calls.Load()) < len(connected) {
		t.Errorf("token source called %d times for %d connections", calls.Load(), len(connected))
	}
	if !strings.Contains(logs.String(), "DISCONNECT_REASON_TOKEN_EXPIRED") {
		t.Errorf("no stream ended with TOKEN_EXPIRED; log:\n%s", logs.String())
	}
}

func TestIdempotentPublishDeliveredOnce(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	ctx := testContext(t, 30*time.Second)
	pub := dial(t, srv.GRPCAddr, notify.WithToken(mustMint(t, "loyalty-backend", "service")))
	guest := dial(t, srv.GRPCAddr, notify.WithToken(mustMint(t, "g1", "guest")))

	var rec recorder
	sub := guest.Subscribe(ctx, rec.options("guest:g1"))
	defer sub.Close()
	waitFor(t, 10*time.Second, "the connection", func() bool { _, c, _ := rec.counts(); return c == 1 })

	first, err := pub.Publish(ctx, points(1), notify.IdempotencyKey("order-42"))
	if err != nil {
		t.Fatal(err)
	}
	again, err := pub.Publish(ctx, points(1), notify.IdempotencyKey("order-42"))
	if err != nil {
		t.Fatal(err)
	}
	if first.Duplicate || !again.Duplicate || again.EventId != first.EventId || !proto.Equal(again.Positions[0], first.Positions[0]) {
		t.Fatalf("first = %v, again = %v: want the first result, marked duplicate", first, again)
	}
	// A marker behind it in the same room: once it is in, any copy of the
	// first would have been too.
	if _, err := pub.Publish(ctx, points(2)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the marker", func() bool { e, _, _ := rec.counts(); return e >= 2 })

	// A batch: missing keys are filled in place, so sending it again is safe.
	var reqs []*notifyv1.PublishRequest
	for i := 3; i <= 4; i++ {
		r := &notifyv1.PublishRequest{Payload: &notifyv1.PublishRequest_PointsAdded{PointsAdded: points(i)}}
		reqs = append(reqs, r)
	}
	b1, err := pub.PublishBatch(ctx, reqs)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range reqs {
		checkKey(t, r.IdempotencyKey)
	}
	if reqs[0].IdempotencyKey == reqs[1].IdempotencyKey {
		t.Fatal("batch requests share a key")
	}
	b2, err := pub.PublishBatch(ctx, reqs)
	if err != nil {
		t.Fatal(err)
	}
	for i := range b2.Results {
		if b1.Results[i].Duplicate || !b2.Results[i].Duplicate || b1.Results[i].EventId != b2.Results[i].EventId {
			t.Fatalf("batch result %d: %v then %v", i, b1.Results[i], b2.Results[i])
		}
	}
	if _, err := pub.Publish(ctx, points(5)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the second marker", func() bool { e, _, _ := rec.counts(); return e >= 5 })

	events, _, _ := rec.snapshot()
	if len(events) != 5 {
		t.Fatalf("%d events, want 5", len(events))
	}
	checkSequence(t, events)
	if events[0].IdempotencyKey != "order-42" {
		t.Errorf("key = %q, want order-42", events[0].IdempotencyKey)
	}
}

func TestResumeFromSavedPositions(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	ctx := testContext(t, 30*time.Second)
	pub := dial(t, srv.GRPCAddr, notify.WithToken(mustMint(t, "loyalty-backend", "service")))
	guest := dial(t, srv.GRPCAddr, notify.WithToken(mustMint(t, "g1", "guest")))

	var first recorder
	sub := guest.Subscribe(ctx, first.options("guest:g1"))
	waitFor(t, 10*time.Second, "the connection", func() bool { _, c, _ := first.counts(); return c == 1 })
	for i := 1; i <= 3; i++ {
		if _, err := pub.Publish(ctx, points(i)); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 10*time.Second, "3 events", func() bool { e, _, _ := first.counts(); return e == 3 })
	sub.Close()
	saved := sub.Positions()

	for i := 4; i <= 6; i++ {
		if _, err := pub.Publish(ctx, points(i)); err != nil {
			t.Fatal(err)
		}
	}
	var second recorder
	opts := second.options("guest:g1")
	opts.Positions = saved
	sub2 := guest.Subscribe(ctx, opts)
	defer sub2.Close()
	waitFor(t, 10*time.Second, "the replay", func() bool { e, _, _ := second.counts(); return e == 3 })
	events, connected, gaps := second.snapshot()
	if len(gaps) != 0 || !connected[0].Rooms[0].Recovered {
		t.Fatalf("resume not recovered: %v, gaps %v", connected[0], gaps)
	}
	all, _, _ := first.snapshot()
	checkSequence(t, append(all, events...))

	// A position from an epoch the server does not know: OnGap, then live.
	var third recorder
	opts = third.options("guest:g1")
	opts.Positions = map[string]notify.Position{"guest:g1": {Offset: 2, Epoch: "0000dead0000"}}
	sub3 := guest.Subscribe(ctx, opts)
	defer sub3.Close()
	waitFor(t, 10*time.Second, "the gap", func() bool { _, _, g := third.counts(); return g == 1 })
	_, _, gaps = third.snapshot()
	if gaps[0].Room != "guest:g1" || gaps[0].Offset != 6 || gaps[0].Epoch != events[0].Epoch {
		t.Errorf("gap = %v, want guest:g1 at 6@%s", gaps[0], events[0].Epoch)
	}
	if got := sub3.Positions()["guest:g1"]; got.Offset != 6 || got.Epoch != events[0].Epoch {
		t.Errorf("position after the gap = %v, want the room's top", got)
	}
}

func TestPermanentErrorsStopTheSubscription(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	ctx := testContext(t, 30*time.Second)
	wrong, err := jwtWithSecret("g1", "guest", "not-the-dev-secret-not-the-dev-secret")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		opts   []notify.Option
		rooms  []string
		code   codes.Code
		reason string
	}{
		{"permission denied", []notify.Option{notify.WithToken(mustMint(t, "g1", "guest"))}, []string{"restaurant:r1"}, codes.PermissionDenied, notify.ReasonPermissionDenied},
		{"invalid room", []notify.Option{notify.WithToken(mustMint(t, "g1", "guest"))}, []string{"nowhere"}, codes.InvalidArgument, notify.ReasonInvalidRoom},
		{"invalid token", []notify.Option{notify.WithToken(wrong)}, nil, codes.Unauthenticated, notify.ReasonTokenInvalid},
		{"missing token", nil, nil, codes.Unauthenticated, notify.ReasonTokenMissing},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := dial(t, srv.GRPCAddr, tc.opts...)
			sub := c.Subscribe(ctx, notify.SubscribeOptions{Rooms: tc.rooms})
			select {
			case <-sub.Done():
			case <-time.After(10 * time.Second):
				t.Fatal("the subscription did not stop")
			}
			err := sub.Err()
			if status.Code(err) != tc.code || notify.ErrorReason(err) != tc.reason || !notify.IsPermanent(err) {
				t.Fatalf("Err = %v (reason %q), want %v %s", err, notify.ErrorReason(err), tc.code, tc.reason)
			}
			if _, open := <-sub.Events(); open {
				t.Error("Events open after a permanent error")
			}
		})
	}
}

func TestStopByContextAndClientClose(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	guest := dial(t, srv.GRPCAddr, notify.WithToken(mustMint(t, "g1", "guest")))

	ctx, cancel := context.WithCancel(context.Background())
	var rec recorder
	sub := guest.Subscribe(ctx, rec.options())
	waitFor(t, 10*time.Second, "the connection", func() bool { _, c, _ := rec.counts(); return c == 1 })
	cancel()
	select {
	case <-sub.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("not stopped by its context")
	}
	if err := sub.Err(); err != nil {
		t.Errorf("Err after cancel = %v, want nil", err)
	}

	other, err := notify.Dial(srv.GRPCAddr, notify.WithInsecure(), notify.WithToken(mustMint(t, "g1", "guest")))
	if err != nil {
		t.Fatal(err)
	}
	var rec2 recorder
	sub = other.Subscribe(testContext(t, 30*time.Second), rec2.options())
	waitFor(t, 10*time.Second, "the connection", func() bool { _, c, _ := rec2.counts(); return c == 1 })
	other.Close()
	select {
	case <-sub.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("not stopped by Client.Close")
	}
	if err := sub.Err(); !errors.Is(err, notify.ErrClientClosed) {
		t.Errorf("Err after Client.Close = %v, want ErrClientClosed", err)
	}
}

func TestPublishRejectsNonEvents(t *testing.T) {
	t.Parallel()
	c, err := notify.Dial("127.0.0.1:1", notify.WithInsecure())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for _, p := range []notify.Payload{nil, (*notifyv1.PointsAdded)(nil), &notifyv1.Event{}} {
		if _, err := c.Publish(context.Background(), p); status.Code(err) != codes.InvalidArgument {
			t.Errorf("Publish(%T) = %v, want InvalidArgument", p, err)
		}
	}
	if _, err := notify.Dial("127.0.0.1:1", notify.WithBackoff(time.Second, time.Millisecond)); err == nil {
		t.Error("Dial accepted a backoff with max < min")
	}
}

// notifyd accepts tokens up to 5s past their exp (its leeway) but cuts their
// streams at exp at once; a source stuck on such a token must not make the
// subscription spin, and a fixed expired token stops it.
func TestExpiredTokensDoNotSpin(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	ctx := testContext(t, 30*time.Second)
	stale, err := mint("g1", "guest", "", -2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var logs syncBuffer
	c := dial(t, srv.GRPCAddr, notify.WithBackoff(10*time.Millisecond, 100*time.Millisecond),
		notify.WithLogger(slog.New(slog.NewTextHandler(&logs, nil))),
		notify.WithTokenSource(notify.TokenFunc(func(context.Context) (string, error) { return stale, nil })))
	var rec recorder
	sub := c.Subscribe(ctx, rec.options())
	// Every stream ends as it opens. A subscription that spins reconnects
	// at once each time; one that backs off waits a random part of a
	// growing delay: after five reconnections, some wait was not zero.
	reconnections := func() [][]string {
		return regexp.MustCompile(`msg="notify: stream ended, reconnecting".* wait=(\S+)`).FindAllStringSubmatch(logs.String(), -1)
	}
	waitFor(t, 10*time.Second, "five reconnections", func() bool { return len(reconnections()) >= 5 })
	sub.Close()
	waited := false
	var waits []string
	for _, m := range reconnections() {
		waits = append(waits, m[1])
		waited = waited || m[1] != "0s"
	}
	if !waited {
		t.Errorf("reconnections with a stale token waited %v: the subscription spins", waits)
	}

	for _, ttl := range []time.Duration{-2 * time.Second, -time.Minute} {
		tok, err := mint("g1", "guest", "", ttl)
		if err != nil {
			t.Fatal(err)
		}
		c := dial(t, srv.GRPCAddr, notify.WithToken(tok))
		sub := c.Subscribe(ctx, notify.SubscribeOptions{})
		select {
		case <-sub.Done():
		case <-time.After(10 * time.Second):
			t.Fatalf("a fixed token expired %v ago did not stop the subscription", -ttl)
		}
		if notify.ErrorReason(sub.Err()) != notify.ReasonTokenExpired {
			t.Errorf("Err = %v, want TOKEN_EXPIRED", sub.Err())
		}
	}
}
