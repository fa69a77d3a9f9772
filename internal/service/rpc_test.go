package service_test

import (
	"context"
	"log/slog"
	"net"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"

	notifyv1 "github.com/maxloyalty/notify/gen/notify/v1"
	"github.com/maxloyalty/notify/internal/auth"
	"github.com/maxloyalty/notify/internal/broker"
	"github.com/maxloyalty/notify/internal/hub"
	"github.com/maxloyalty/notify/internal/limit"
	"github.com/maxloyalty/notify/internal/service"
	"github.com/maxloyalty/notify/internal/store"
)

// rpcSecret signs the tokens of the rpc fixture.
var rpcSecret = []byte("service-rpc-test-secret-0123456789-abcdefghijklmnop")

// rpcTimeout bounds every call of the rpc tests.
const rpcTimeout = 10 * time.Second

// The callers of the rpc tests, one per role.
var (
	svcCaller     = auth.Claims{Subject: "svc1", Role: notifyv1.Role_ROLE_SERVICE}
	adminCaller   = auth.Claims{Subject: "a1", Role: notifyv1.Role_ROLE_ADMIN}
	admin2Caller  = auth.Claims{Subject: "a2", Role: notifyv1.Role_ROLE_ADMIN}
	guestCaller   = auth.Claims{Subject: "g1", Role: notifyv1.Role_ROLE_GUEST}
	guest2Caller  = auth.Claims{Subject: "g2", Role: notifyv1.Role_ROLE_GUEST}
	staffCaller   = auth.Claims{Subject: "o1", Role: notifyv1.Role_ROLE_RESTAURANT, RestaurantID: "r1"}
	cashierCaller = auth.Claims{Subject: "c1", Role: notifyv1.Role_ROLE_CASHIER, RestaurantID: "r1"}
)

// rpcFixture is the service (memory broker, SQLite inbox, its background
// work running) behind a real grpc.Server with the JWT interceptors, on an
// in-memory listener, and generated clients of both services.
type rpcFixture struct {
	svc    *service.Service
	store  *store.SQLite
	notify notifyv1.NotificationServiceClient
	inbox  notifyv1.InboxServiceClient
}

func newRPC(t *testing.T, opts ...func(*service.Config)) *rpcFixture {
	t.Helper()
	st, err := store.OpenSQLite(context.Background(), filepath.Join(t.TempDir(), "inbox.db"))
	if err != nil {
		t.Fatal(err)
	}
	h := hub.New()
	mem := broker.NewMemory(broker.MemoryConfig{}, h.Deliver)
	cfg := service.Config{ServerID: "rpc-test"}
	for _, o := range opts {
		o(&cfg)
	}
	svc := service.New(cfg, mem, h, st, slog.New(slog.DiscardHandler))
	v, err := auth.NewVerifier(auth.Config{HMACSecret: rpcSecret, RequireExpiry: true})
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(
		grpc.ForceServerCodecV2(service.NewCodec()),
		grpc.ChainUnaryInterceptor(v.UnaryInterceptor(nil)),
		grpc.ChainStreamInterceptor(v.StreamInterceptor(nil)),
	)
	notifyv1.RegisterNotificationServiceServer(srv, svc)
	notifyv1.RegisterInboxServiceServer(srv, svc.Inbox())
	lis := bufconn.Listen(1 << 20)
	bg, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { _ = srv.Serve(lis) })
	wg.Go(func() { svc.Run(bg) })
	conn, err := grpc.NewClient("passthrough:///service",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		conn.Close()
		h.CloseAll(hub.ErrShutdown)
		srv.Stop()
		stop()
		wg.Wait()
		mem.Close()
		st.Close()
	})
	return &rpcFixture{svc: svc, store: st, notify: notifyv1.NewNotificationServiceClient(conn), inbox: notifyv1.NewInboxServiceClient(conn)}
}

// as returns a context bounded by rpcTimeout that calls as c.
func as(t *testing.T, c auth.Claims) context.Context {
	t.Helper()
	tok, err := auth.NewSigner(rpcSecret).Mint(c, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), rpcTimeout)
	t.Cleanup(cancel)
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+tok)
}

// wantStatus fails unless err has code and its message contains msg.
func wantStatus(t *testing.T, what string, err error, code codes.Code, msg string) {
	t.Helper()
	st := status.Convert(err)
	if st.Code() != code || !strings.Contains(st.Message(), msg) {
		t.Errorf("%s: %v %q, want %v containing %q", what, st.Code(), st.Message(), code, msg)
	}
}

func alertReq(rooms ...string) *notifyv1.PublishRequest {
	return &notifyv1.PublishRequest{Rooms: rooms, Payload: &notifyv1.PublishRequest_SystemAlert{SystemAlert: &notifyv1.SystemAlert{
		Level: notifyv1.AlertLevel_ALERT_LEVEL_WARNING, Title: "disk", Message: "almost full"}}}
}

func withRooms(req *notifyv1.PublishRequest, rooms ...string) *notifyv1.PublishRequest {
	req.Rooms = rooms
	return req
}

// roomsOf returns the rooms of a publish's positions, sorted.
func roomsOf(resp *notifyv1.PublishResponse) []string {
	var out []string
	for _, p := range resp.GetPositions() {
		out = append(out, p.Room)
	}
	slices.Sort(out)
	return out
}

// TestPublishValidation: a request that is not a valid publish is
// refused with a status saying what was wrong, and nothing is published:
// every refused request here was for g1, whose inbox stays empty.
func TestPublishValidation(t *testing.T) {
	f := newRPC(t, func(c *service.Config) { c.MaxRoomsPerStream = 3 })
	ctx := as(t, svcCaller)
	noGuest := pointsFor("", 5)
	badAmount := pointsFor("g1", 5)
	badAmount.GetPointsAdded().Amount = -1
	longKey := keyed(pointsFor("g1", 5), strings.Repeat("k", service.MaxIdempotencyKeyLen+1))
	for _, tc := range []struct {
		name string
		req  *notifyv1.PublishRequest
		code codes.Code
		msg  string
	}{
		{"no payload", &notifyv1.PublishRequest{}, codes.InvalidArgument, "payload: exactly one event"},
		{"an empty payload", &notifyv1.PublishRequest{Payload: &notifyv1.PublishRequest_PointsAdded{}}, codes.InvalidArgument, "points_added.guest_id: empty id"},
		{"a missing field", noGuest, codes.InvalidArgument, "guest_id"},
		{"a bad amount", badAmount, codes.InvalidArgument, "amount"},
		{"a long idempotency key", longKey, codes.InvalidArgument, "idempotency_key: longer than 128 bytes"},
		{"a malformed room", withRooms(pointsFor("g1", 5), "guest:g1", "nope"), codes.InvalidArgument, "nope"},
		{"an empty room id", withRooms(pointsFor("g1", 5), "guest:"), codes.InvalidArgument, "invalid room: empty id"},
		{"too many rooms", withRooms(pointsFor("g1", 5), "guest:g1", "user:g1", "restaurant:r1", "restaurant:r2"), codes.ResourceExhausted, "4 rooms, at most 3"},
	} {
		_, err := f.notify.Publish(ctx, tc.req)
		wantStatus(t, tc.name, err, tc.code, tc.msg)
	}

	// A batch is validated whole before anything is published.
	for _, tc := range []struct {
		name string
		reqs []*notifyv1.PublishRequest
		code codes.Code
		msg  string
	}{
		{"an empty batch", nil, codes.InvalidArgument, "requests: at least one request"},
		{"a bad second request", []*notifyv1.PublishRequest{pointsFor("g1", 1), noGuest}, codes.InvalidArgument, "requests[1]: "},
	} {
		_, err := f.notify.PublishBatch(ctx, &notifyv1.PublishBatchRequest{Requests: tc.reqs})
		wantStatus(t, tc.name, err, tc.code, tc.msg)
	}
	if got := f.stored(t, "g1"); len(got) != 0 {
		t.Errorf("g1's inbox has %d notifications after refused publishes, want none", len(got))
	}

	// Repeated rooms count once.
	resp, err := f.notify.Publish(ctx, withRooms(pointsFor("g1", 5), "guest:g1", "guest:g1", "user:g1"))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"guest:g1", "user:g1"}, roomsOf(resp)); diff != "" {
		t.Errorf("rooms of a publish naming guest:g1 twice (-want +got):\n%s", diff)
	}
}

// TestPublishBatchLimit: a batch above MaxBatch is RESOURCE_EXHAUSTED.
func TestPublishBatchLimit(t *testing.T) {
	f := newRPC(t, func(c *service.Config) { c.MaxBatch = 2 })
	reqs := []*notifyv1.PublishRequest{pointsFor("g1", 1), pointsFor("g1", 2), pointsFor("g1", 3)}
	_, err := f.notify.PublishBatch(as(t, svcCaller), &notifyv1.PublishBatchRequest{Requests: reqs})
	wantStatus(t, "3 requests, MaxBatch 2", err, codes.ResourceExhausted, "3 requests, at most 2 per batch")
	if resp, err := f.notify.PublishBatch(as(t, svcCaller), &notifyv1.PublishBatchRequest{Requests: reqs[:2]}); err != nil || len(resp.Results) != 2 {
		t.Errorf("a batch of 2: %v, %v", resp, err)
	}
}

// TestPublishPolicy: the access policy applied to publishes over the
// wire: services publish anywhere, into the rooms the event routes to when
// they name none; admins publish alerts into admin only; nobody else
// publishes. A refused publish reaches no inbox.
func TestPublishPolicy(t *testing.T) {
	f := newRPC(t)
	for _, tc := range []struct {
		name   string
		caller auth.Claims
		req    *notifyv1.PublishRequest
		rooms  []string // the rooms published to; nil: PERMISSION_DENIED
	}{
		{"service, routed", svcCaller, pointsFor("g1", 5), []string{"guest:g1", "restaurant:r1:points"}},
		{"service, named rooms", svcCaller, withRooms(pointsFor("g1", 5), "user:g1"), []string{"user:g1"}},
		{"service, an alert to a guest", svcCaller, alertReq("guest:g1"), []string{"guest:g1"}},
		{"admin, an alert, routed", adminCaller, alertReq(), []string{"admin"}},
		{"admin, an alert into admin", adminCaller, alertReq("admin"), []string{"admin"}},
		{"admin, an alert to a guest", adminCaller, alertReq("admin", "guest:g1"), nil},
		{"admin, points", adminCaller, pointsFor("g1", 5), nil},
		{"guest", guestCaller, withRooms(pointsFor("g1", 5), "guest:g1"), nil},
		{"restaurant", staffCaller, withRooms(pointsFor("g1", 5), "restaurant:r1"), nil},
		{"cashier", cashierCaller, alertReq("restaurant:r1"), nil},
	} {
		before := len(f.stored(t, "g1"))
		resp, err := f.notify.Publish(as(t, tc.caller), tc.req)
		if tc.rooms == nil {
			wantStatus(t, tc.name, err, codes.PermissionDenied, "")
			if got := len(f.stored(t, "g1")); got != before {
				t.Errorf("%s: refused, yet g1's inbox went from %d to %d", tc.name, before, got)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		if diff := cmp.Diff(tc.rooms, roomsOf(resp)); diff != "" {
			t.Errorf("%s: rooms (-want +got):\n%s", tc.name, diff)
		}
	}
}

// TestPublishIdempotencyOverTheWire: a repeat with the key is the first
// result with duplicate = true; the key with another request is
// FAILED_PRECONDITION with the reason clients act on.
func TestPublishIdempotencyOverTheWire(t *testing.T) {
	f := newRPC(t)
	ctx := as(t, svcCaller)
	first, err := f.notify.Publish(ctx, keyed(pointsFor("g1", 5), "k1"))
	if err != nil || first.Duplicate {
		t.Fatalf("first: %v, %v", first, err)
	}
	again, err := f.notify.Publish(ctx, keyed(pointsFor("g1", 5), "k1"))
	if err != nil || !again.Duplicate || again.EventId != first.EventId {
		t.Errorf("repeat: %v, %v; want a duplicate of %s", again, err, first.EventId)
	}
	_, err = f.notify.Publish(ctx, keyed(pointsFor("g1", 6), "k1"))
	wantReused(t, err, "the key with another amount")
	if n := len(f.stored(t, "g1")); n != 1 {
		t.Errorf("g1's inbox has %d notifications, want 1", n)
	}
}

// TestPublishRateLimit: a publisher over its rate is RESOURCE_EXHAUSTED
// (RATE_LIMITED) and publishes nothing; a batch counts per event, and one
// larger than the burst passes on a full bucket, leaving it in debt.
func TestPublishRateLimit(t *testing.T) {
	f := newRPC(t, func(c *service.Config) { c.Limits.Publish = limit.NewPublishRate(0.001, 2) })
	ctx := as(t, svcCaller)
	for i := range 2 {
		if _, err := f.notify.Publish(ctx, pointsFor("g1", int64(i+1))); err != nil {
			t.Fatalf("publish %d within the burst: %v", i, err)
		}
	}
	_, err := f.notify.Publish(ctx, pointsFor("g1", 9))
	wantStatus(t, "a third publish", err, codes.ResourceExhausted, "publish rate limited")
	if r := reason(err); r != limit.ReasonRateLimited {
		t.Errorf("reason %q, want %q", r, limit.ReasonRateLimited)
	}
	_, err = f.notify.PublishBatch(ctx, &notifyv1.PublishBatchRequest{Requests: []*notifyv1.PublishRequest{pointsFor("g1", 9)}})
	wantStatus(t, "a batch after the burst", err, codes.ResourceExhausted, "publish rate limited")

	// Another publisher has a bucket of its own: a batch of 3 passes on
	// it, full, and the next publish is refused.
	ctx2 := as(t, auth.Claims{Subject: "svc2", Role: notifyv1.Role_ROLE_SERVICE})
	if _, err := f.notify.PublishBatch(ctx2, &notifyv1.PublishBatchRequest{Requests: []*notifyv1.PublishRequest{
		pointsFor("g1", 1), pointsFor("g1", 2), pointsFor("g1", 3)}}); err != nil {
		t.Errorf("another publisher's batch of 3 on a full bucket: %v", err)
	}
	_, err = f.notify.Publish(ctx2, pointsFor("g1", 4))
	wantStatus(t, "a publish after a batch beyond the burst", err, codes.ResourceExhausted, "publish rate limited")
	if n := len(f.stored(t, "g1")); n != 5 {
		t.Errorf("g1's inbox has %d notifications, want 5", n)
	}
}

// stored returns the event ids in user's own inbox.
func (f *rpcFixture) stored(t *testing.T, user string) []string {
	t.Helper()
	items, _, err := f.store.List(context.Background(), store.Viewer{UserID: user}, store.ListQuery{Limit: store.MaxPageSize})
	if err != nil {
		t.Fatal(err)
	}
	out := make([]string, len(items))
	for i, it := range items {
		out[i] = it.ID
	}
	return out
}

// open opens a stream as c and returns it with its first message, or the
// status the stream ended with.
func (f *rpcFixture) open(t *testing.T, c auth.Claims, req *notifyv1.SubscribeRequest) (notifyv1.NotificationService_SubscribeClient, *notifyv1.Connected, error) {
	t.Helper()
	ctx, cancel := context.WithCancel(as(t, c))
	t.Cleanup(cancel)
	st, err := f.notify.Subscribe(ctx, req)
	if err != nil {
		return nil, nil, err
	}
	m, err := st.Recv()
	if err != nil {
		return nil, nil, err
	}
	if m.GetConnected() == nil {
		t.Fatalf("first message %v, want Connected", m)
	}
	return st, m.GetConnected(), nil
}

// connectedRooms returns the rooms of a Connected, sorted.
func connectedRooms(c *notifyv1.Connected) []string {
	var out []string
	for _, r := range c.GetRooms() {
		out = append(out, r.Room)
	}
	slices.Sort(out)
	return out
}

// TestSubscribeSetup: the rooms of a stream (named, or the role's
// defaults), the access policy, the room bound and the resume positions'
// checks, before anything is sent; and what Connected says.
func TestSubscribeSetup(t *testing.T) {
	f := newRPC(t, func(c *service.Config) { c.MaxRoomsPerStream = 3; c.HeartbeatInterval = 7 * time.Second })
	for _, tc := range []struct {
		name   string
		caller auth.Claims
		req    *notifyv1.SubscribeRequest
		rooms  []string // the stream's rooms; nil: refused with code and msg
		code   codes.Code
		msg    string
	}{
		{"guest, defaults", guestCaller, &notifyv1.SubscribeRequest{}, []string{"guest:g1", "user:g1"}, 0, ""},
		{"cashier, defaults", cashierCaller, &notifyv1.SubscribeRequest{},
			[]string{"restaurant:r1", "restaurant:r1:points", "restaurant:r1:transactions", "user:c1"}, 0, ""},
		{"admin, defaults", adminCaller, &notifyv1.SubscribeRequest{}, []string{"admin", "user:a1"}, 0, ""},
		{"guest, own room named twice", guestCaller, &notifyv1.SubscribeRequest{Rooms: []string{"guest:g1", "guest:g1"}}, []string{"guest:g1"}, 0, ""},
		{"service, named", svcCaller, &notifyv1.SubscribeRequest{Rooms: []string{"guest:g2", "restaurant:r9"}}, []string{"guest:g2", "restaurant:r9"}, 0, ""},
		{"service, defaults", svcCaller, &notifyv1.SubscribeRequest{}, nil, codes.InvalidArgument, "name the rooms"},
		{"guest, another's room", guestCaller, &notifyv1.SubscribeRequest{Rooms: []string{"guest:g1", "guest:g2"}}, nil, codes.PermissionDenied, "guest:g2"},
		{"restaurant, another restaurant", staffCaller, &notifyv1.SubscribeRequest{Rooms: []string{"restaurant:r2"}}, nil, codes.PermissionDenied, "restaurant:r2"},
		{"a malformed room", svcCaller, &notifyv1.SubscribeRequest{Rooms: []string{"guest"}}, nil, codes.InvalidArgument, "guest"},
		{"too many rooms", svcCaller, &notifyv1.SubscribeRequest{Rooms: []string{"admin", "guest:a", "guest:b", "guest:c"}}, nil, codes.ResourceExhausted, "4 rooms, at most 3"},
		{"a position of another room", guestCaller, &notifyv1.SubscribeRequest{Positions: []*notifyv1.StreamPosition{{Room: "guest:g2"}}},
			nil, codes.InvalidArgument, `positions: room "guest:g2" is not one of the stream's rooms`},
		{"a room's position twice", guestCaller, &notifyv1.SubscribeRequest{Positions: []*notifyv1.StreamPosition{{Room: "guest:g1"}, {Room: "guest:g1"}}},
			nil, codes.InvalidArgument, "given twice"},
	} {
		_, conn, err := f.open(t, tc.caller, tc.req)
		if tc.rooms == nil {
			wantStatus(t, tc.name, err, tc.code, tc.msg)
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		if diff := cmp.Diff(tc.rooms, connectedRooms(conn)); diff != "" {
			t.Errorf("%s: rooms (-want +got):\n%s", tc.name, diff)
		}
		if conn.UserId != tc.caller.Subject || conn.Role != tc.caller.Role || conn.ServerId != "rpc-test" || conn.HeartbeatInterval.AsDuration() != 7*time.Second {
			t.Errorf("%s: Connected %v", tc.name, conn)
		}
	}
}

// TestSubscribeResume: a stream resuming from a position in the room's
// epoch gets the events after it (recovered); one from another epoch
// gets none, and Connected says where the room stands.
func TestSubscribeResume(t *testing.T) {
	f := newRPC(t)
	var last *notifyv1.PublishResponse
	for i := range 3 {
		var err error
		if last, err = f.notify.Publish(as(t, svcCaller), withRooms(pointsFor("g1", int64(i+1)), "guest:g1")); err != nil {
			t.Fatal(err)
		}
	}
	top := last.Positions[0]

	st, conn, err := f.open(t, guestCaller, &notifyv1.SubscribeRequest{Rooms: []string{"guest:g1"},
		Positions: []*notifyv1.StreamPosition{{Room: "guest:g1", Offset: top.Offset - 2, Epoch: top.Epoch}}})
	if err != nil {
		t.Fatal(err)
	}
	rs := conn.Rooms[0]
	if !rs.Recovered || rs.Offset != top.Offset || rs.Epoch != top.Epoch || rs.StartOffset != top.Offset-2 {
		t.Errorf("resume in the epoch: %v, want recovered at %d from %d", rs, top.Offset, top.Offset-2)
	}
	var got []uint64
	for len(got) < 2 {
		m, err := st.Recv()
		if err != nil {
			t.Fatalf("replay: %v", err)
		}
		for _, ev := range m.GetEvents() {
			got = append(got, ev.Offset)
		}
	}
	if diff := cmp.Diff([]uint64{top.Offset - 1, top.Offset}, got); diff != "" {
		t.Errorf("replayed offsets (-want +got):\n%s", diff)
	}

	_, conn, err = f.open(t, guestCaller, &notifyv1.SubscribeRequest{Rooms: []string{"guest:g1"},
		Positions: []*notifyv1.StreamPosition{{Room: "guest:g1", Offset: 1, Epoch: "another-epoch"}}})
	if err != nil {
		t.Fatal(err)
	}
	if rs := conn.Rooms[0]; rs.Recovered || rs.Epoch != top.Epoch || rs.Offset != top.Offset {
		t.Errorf("resume from another epoch: %v, want not recovered, at %d in %s", rs, top.Offset, top.Epoch)
	}
}

// TestInboxOnBehalf: who reads and changes whose inbox over the wire, as
// access.InboxFor decides: a user their own; a service any user's own
// rows; an admin another admin's view of the admin group's rows, with
// that admin's state; anyone else nobody's; and preferences, services
// only.
func TestInboxOnBehalf(t *testing.T) {
	f := newRPC(t)
	if _, err := f.notify.Publish(as(t, svcCaller), withRooms(pointsFor("g1", 5), "guest:g1")); err != nil {
		t.Fatal(err)
	}
	if _, err := f.notify.Publish(as(t, adminCaller), alertReq()); err != nil {
		t.Fatal(err)
	}
	list := func(c auth.Claims, user string) ([]*notifyv1.Notification, error) {
		resp, err := f.inbox.ListNotifications(as(t, c), &notifyv1.ListNotificationsRequest{UserId: user})
		return resp.GetNotifications(), err
	}
	types := func(ns []*notifyv1.Notification) []string {
		var out []string
		for _, n := range ns {
			out = append(out, n.EventType.String())
		}
		return out
	}
	const points, alert = "EVENT_TYPE_POINTS_ADDED", "EVENT_TYPE_SYSTEM_ALERT"
	for _, tc := range []struct {
		name   string
		caller auth.Claims
		user   string
		want   []string // nil with code: refused
		code   codes.Code
	}{
		{"guest, own", guestCaller, "", []string{points}, 0},
		{"guest, own by name", guestCaller, "g1", []string{points}, 0},
		{"another guest, own", guest2Caller, "", []string{}, 0},
		{"guest, another's", guest2Caller, "g1", nil, codes.PermissionDenied},
		{"restaurant, a guest's", staffCaller, "g1", nil, codes.PermissionDenied},
		{"service, a guest's", svcCaller, "g1", []string{points}, 0},
		{"service, an admin's own rows", svcCaller, "a1", []string{}, 0},
		{"admin, own", adminCaller, "", []string{alert}, 0},
		{"admin, another admin's", adminCaller, "a2", []string{alert}, 0},
		{"service, a malformed user id", svcCaller, "group:admin", nil, codes.InvalidArgument},
	} {
		got, err := list(tc.caller, tc.user)
		if tc.want == nil {
			wantStatus(t, tc.name, err, tc.code, "user_id")
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		if diff := cmp.Diff(tc.want, append([]string{}, types(got)...)); diff != "" {
			t.Errorf("%s (-want +got):\n%s", tc.name, diff)
		}
	}

	// a1 marks the alert read for a2: a2's state changes, a1's does not.
	ns, err := list(adminCaller, "a2")
	if err != nil || len(ns) != 1 {
		t.Fatalf("a2's view: %v, %v", ns, err)
	}
	if _, err := f.inbox.MarkRead(as(t, adminCaller), &notifyv1.MarkReadRequest{Ids: []string{ns[0].Id}, UserId: "a2"}); err != nil {
		t.Fatal(err)
	}
	unread := func(c auth.Claims) int64 {
		resp, err := f.inbox.GetUnreadCount(as(t, c), &notifyv1.GetUnreadCountRequest{})
		if err != nil {
			t.Fatal(err)
		}
		return resp.UnreadCount
	}
	if a1, a2 := unread(adminCaller), unread(admin2Caller); a1 != 1 || a2 != 0 {
		t.Errorf("unread after a1 read the alert for a2: a1 %d, a2 %d; want 1 and 0", a1, a2)
	}
	// A guest cannot mark another's notification, even knowing its id.
	own, _ := list(guestCaller, "")
	_, err = f.inbox.MarkRead(as(t, guest2Caller), &notifyv1.MarkReadRequest{Ids: []string{own[0].Id}, UserId: "g1"})
	wantStatus(t, "g2 marks g1's notification", err, codes.PermissionDenied, "user_id")

	// Preferences: one's own, or for services anyone's.
	prefs := &notifyv1.Preferences{Enabled: true, MutedTypes: []notifyv1.EventType{notifyv1.EventType_EVENT_TYPE_POINTS_ADDED}}
	if _, err := f.inbox.UpdatePreferences(as(t, svcCaller), &notifyv1.UpdatePreferencesRequest{UserId: "g1", Preferences: prefs}); err != nil {
		t.Errorf("a service sets g1's preferences: %v", err)
	}
	got, err := f.inbox.GetPreferences(as(t, guestCaller), &notifyv1.GetPreferencesRequest{})
	if err != nil || !slices.Equal(got.GetPreferences().GetMutedTypes(), prefs.MutedTypes) {
		t.Errorf("g1's own preferences: %v, %v; want points muted", got, err)
	}
	for _, c := range []auth.Claims{guest2Caller, adminCaller, staffCaller} {
		_, err := f.inbox.GetPreferences(as(t, c), &notifyv1.GetPreferencesRequest{UserId: "g1"})
		wantStatus(t, auth.RoleName(c.Role)+" reads g1's preferences", err, codes.PermissionDenied, "user_id")
	}
}
