package service_test

import (
	"context"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	notifyv1 "github.com/maxloyalty/notify/gen/notify/v1"
	"github.com/maxloyalty/notify/internal/auth"
	"github.com/maxloyalty/notify/internal/broker"
	"github.com/maxloyalty/notify/internal/delivery"
	"github.com/maxloyalty/notify/internal/hub"
	"github.com/maxloyalty/notify/internal/service"
	"github.com/maxloyalty/notify/internal/store"
	"github.com/maxloyalty/notify/internal/testenv"
)

// scheduleFixture is the service with the delivery queue as its scheduler
// (SQLite, no channels), behind a real grpc.Server with the JWT
// interceptors, and clients of the three services.
type scheduleFixture struct {
	store    *store.SQLite
	notify   notifyv1.NotificationServiceClient
	inbox    notifyv1.InboxServiceClient
	schedule notifyv1.ScheduleServiceClient
}

// scheduleSetup is what a test may change of newScheduleFixture's server.
type scheduleSetup struct {
	// cfg is the service's configuration: the queue as its Deliveries and
	// Scheduler.
	cfg *service.Config
	// skip names the methods the JWT interceptors let through without a
	// token.
	skip func(fullMethod string) bool
}

func newScheduleFixture(t *testing.T, opts ...func(*scheduleSetup)) *scheduleFixture {
	t.Helper()
	st, err := store.OpenSQLite(context.Background(), filepath.Join(t.TempDir(), "inbox.db"))
	if err != nil {
		t.Fatal(err)
	}
	q, err := delivery.New(delivery.Config{
		ClientID: "test-" + uuid.NewString()[:8], FetchPollInterval: 50 * time.Millisecond, TestOnly: true,
		// One time job at a time: scheduled publishes run in the order of
		// their times (TestCancelScheduledOverTheWire relies on it).
		Timing: delivery.Timing{Horizon: 24 * time.Hour, Workers: 1},
	}, st)
	if err != nil {
		t.Fatal(err)
	}
	h := hub.New()
	mem := broker.NewMemory(broker.MemoryConfig{}, h.Deliver)
	cfg := service.Config{ServerID: "schedule-test", Deliveries: q, Scheduler: q}
	set := scheduleSetup{cfg: &cfg}
	for _, o := range opts {
		o(&set)
	}
	svc := service.New(cfg, mem, h, st, slog.New(slog.DiscardHandler))
	q.SetPublisher(svc)
	v, err := auth.NewVerifier(auth.Config{HMACSecret: rpcSecret, RequireExpiry: true})
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(
		grpc.ForceServerCodecV2(service.NewCodec()),
		grpc.ChainUnaryInterceptor(v.UnaryInterceptor(set.skip)),
		grpc.ChainStreamInterceptor(v.StreamInterceptor(set.skip)),
	)
	notifyv1.RegisterNotificationServiceServer(srv, svc)
	notifyv1.RegisterInboxServiceServer(srv, svc.Inbox())
	notifyv1.RegisterScheduleServiceServer(srv, svc.Schedules())
	lis := bufconn.Listen(1 << 20)
	bg, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { _ = srv.Serve(lis) })
	wg.Go(func() { svc.Run(bg) })
	if err := q.Start(bg); err != nil {
		t.Fatal(err)
	}
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
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := q.Stop(ctx); err != nil {
			t.Errorf("queue Stop: %v", err)
		}
		stop()
		wg.Wait()
		mem.Close()
		st.Close()
	})
	return &scheduleFixture{
		store: st, notify: notifyv1.NewNotificationServiceClient(conn), inbox: notifyv1.NewInboxServiceClient(conn),
		schedule: notifyv1.NewScheduleServiceClient(conn),
	}
}

func expiryReq(guest string) *notifyv1.PublishRequest {
	return &notifyv1.PublishRequest{Payload: &notifyv1.PublishRequest_PointsExpired{PointsExpired: &notifyv1.PointsExpired{
		GuestId: guest, Amount: 200, NewBalance: 0, ExpiryDate: "2026-12-31", CardId: "c1",
	}}}
}

func inboxOf(t *testing.T, f *scheduleFixture, user string) []*notifyv1.Notification {
	t.Helper()
	resp, err := f.inbox.ListNotifications(as(t, auth.Claims{Subject: user, Role: notifyv1.Role_ROLE_GUEST}), &notifyv1.ListNotificationsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	return resp.Notifications
}

// TestScheduledPublishOverTheWire: a reminder scheduled a second ahead is
// listed as pending, enters the guest's inbox once at its time, and is
// then listed as published with its event's id.
func TestScheduledPublishOverTheWire(t *testing.T) {
	f := newScheduleFixture(t)
	req := expiryReq("g1")
	req.Delay = durationpb.New(time.Second)
	req.CancelKey = "expiry-g1-2026-12-31"
	resp, err := f.notify.Publish(as(t, svcCaller), req)
	if err != nil {
		t.Fatal(err)
	}
	sp := resp.Scheduled
	if sp == nil || resp.EventId != "" || sp.State != notifyv1.ScheduledState_SCHEDULED_STATE_PENDING || sp.Publisher != "service:svc1" ||
		sp.IdempotencyKey == "" || sp.EventType != notifyv1.EventType_EVENT_TYPE_POINTS_EXPIRED || sp.Request.GetDelay() != nil {
		t.Fatalf("response %v", resp)
	}
	// The same request again is the same scheduled publish.
	again, err := f.notify.Publish(as(t, svcCaller), req)
	if err != nil || !again.Duplicate || again.Scheduled.GetId() != sp.Id {
		t.Fatalf("again: %v, %v", again, err)
	}
	if n := len(inboxOf(t, f, "g1")); n != 0 {
		t.Fatalf("%d notifications before the time", n)
	}
	testenv.Eventually(t, 10*time.Second, "the reminder in the inbox", func() bool { return len(inboxOf(t, f, "g1")) == 1 })
	list, err := f.schedule.ListScheduled(as(t, svcCaller), &notifyv1.ListScheduledRequest{IncludeDone: true})
	if err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 5*time.Second, "listed as published", func() bool {
		list, err = f.schedule.ListScheduled(as(t, svcCaller), &notifyv1.ListScheduledRequest{IncludeDone: true})
		return err == nil && len(list.Scheduled) == 1 && list.Scheduled[0].State == notifyv1.ScheduledState_SCHEDULED_STATE_PUBLISHED
	})
	if got := inboxOf(t, f, "g1"); got[0].Event.Id != list.Scheduled[0].EventId || got[0].Event.IdempotencyKey != sp.IdempotencyKey {
		t.Errorf("inbox event %v, scheduled %v", got[0].Event, list.Scheduled[0])
	}
	// The one scheduled publish there is has finished: there is no run
	// left that could publish it again.
	if n := len(inboxOf(t, f, "g1")); n != 1 {
		t.Errorf("%d notifications, want 1", n)
	}
}

// TestScheduleValidation: times in the past, beyond the horizon, both
// kinds at once, bad cancel keys; a time just passed publishes at once.
func TestScheduleValidation(t *testing.T) {
	f := newScheduleFixture(t)
	now := time.Now()
	for _, tc := range []struct {
		name string
		edit func(*notifyv1.PublishRequest)
		msg  string
	}{
		{"past", func(r *notifyv1.PublishRequest) { r.DeliverAt = timestamppb.New(now.Add(-time.Minute)) }, "deliver_at: "},
		{"beyond horizon", func(r *notifyv1.PublishRequest) { r.DeliverAt = timestamppb.New(now.Add(25 * time.Hour)) }, "beyond the scheduling horizon of 24h0m0s"},
		{"delay beyond horizon", func(r *notifyv1.PublishRequest) { r.Delay = durationpb.New(25 * time.Hour) }, "horizon"},
		{"both", func(r *notifyv1.PublishRequest) {
			r.DeliverAt, r.Delay = timestamppb.New(now.Add(time.Minute)), durationpb.New(time.Minute)
		}, "give one, not both"},
		{"negative delay", func(r *notifyv1.PublishRequest) { r.Delay = durationpb.New(-time.Minute) }, "negative"},
		{"bad cancel key", func(r *notifyv1.PublishRequest) {
			r.Delay, r.CancelKey = durationpb.New(time.Minute), "no spaces"
		}, "cancel_key: 1 to 128"},
		{"cancel key alone", func(r *notifyv1.PublishRequest) { r.CancelKey = "k" }, "only for a scheduled publish"},
		{"invalid event", func(r *notifyv1.PublishRequest) {
			r.Delay = durationpb.New(time.Minute)
			r.GetPointsExpired().Amount = -1
		}, "amount"},
	} {
		req := expiryReq("g1")
		tc.edit(req)
		_, err := f.notify.Publish(as(t, svcCaller), req)
		wantStatus(t, tc.name, err, codes.InvalidArgument, tc.msg)
	}
	// A guest may not publish, at a time or now.
	req := expiryReq("g1")
	req.Delay = durationpb.New(time.Minute)
	_, err := f.notify.Publish(as(t, guestCaller), req)
	wantStatus(t, "guest", err, codes.PermissionDenied, "")
	// Just passed: published now.
	req = expiryReq("g1")
	req.DeliverAt, req.CancelKey = timestamppb.New(now.Add(-2*time.Second)), "k1"
	resp, err := f.notify.Publish(as(t, svcCaller), req)
	if err != nil || resp.Scheduled != nil || resp.EventId == "" {
		t.Fatalf("just passed: %v, %v; want published now", resp, err)
	}
	if n := len(inboxOf(t, f, "g1")); n != 1 {
		t.Errorf("%d notifications, want the one published now", n)
	}
	if list, err := f.schedule.ListScheduled(as(t, svcCaller), &notifyv1.ListScheduledRequest{IncludeDone: true}); err != nil || len(list.Scheduled) != 0 {
		t.Errorf("scheduled after refusals: %v, %v", list, err)
	}
}

// TestCancelScheduledOverTheWire: a cancelled reminder never fires; only
// its publisher (or an admin) can cancel it; a key taken by a pending
// publish refuses another request.
func TestCancelScheduledOverTheWire(t *testing.T) {
	f := newScheduleFixture(t)
	// Far enough ahead that the checks below, on a loaded machine with
	// the race detector, end before the reminder falls due.
	at := time.Now().Add(3 * time.Second)
	req := expiryReq("g1")
	req.DeliverAt = timestamppb.New(at)
	req.CancelKey = "expiry-g1"
	if _, err := f.notify.Publish(as(t, svcCaller), req); err != nil {
		t.Fatal(err)
	}
	// A later reminder for g2: once it is in g2's inbox, the queue, which
	// runs one time job at a time in the order of their times, has gone
	// past g1's.
	later := expiryReq("g2")
	later.DeliverAt = timestamppb.New(at.Add(500 * time.Millisecond))
	later.CancelKey = "expiry-g2"
	if _, err := f.notify.Publish(as(t, svcCaller), later); err != nil {
		t.Fatal(err)
	}
	other := proto.Clone(req).(*notifyv1.PublishRequest)
	other.GetPointsExpired().Amount = 300
	_, err := f.notify.Publish(as(t, svcCaller), other)
	wantStatus(t, "another request under a pending key", err, codes.AlreadyExists, "pending")

	svc2 := auth.Claims{Subject: "svc2", Role: notifyv1.Role_ROLE_SERVICE}
	_, err = f.schedule.CancelScheduled(as(t, svc2), &notifyv1.CancelScheduledRequest{CancelKey: "expiry-g1"})
	wantStatus(t, "another service", err, codes.NotFound, "")
	_, err = f.schedule.CancelScheduled(as(t, svc2), &notifyv1.CancelScheduledRequest{CancelKey: "expiry-g1", Publisher: "service:svc1"})
	wantStatus(t, "another service naming the publisher", err, codes.PermissionDenied, "")
	_, err = f.schedule.ListScheduled(as(t, svc2), &notifyv1.ListScheduledRequest{Publisher: "*"})
	wantStatus(t, "a service listing all", err, codes.PermissionDenied, "")
	all, err := f.schedule.ListScheduled(as(t, adminCaller), &notifyv1.ListScheduledRequest{Publisher: "*"})
	if err != nil || len(all.Scheduled) != 2 {
		t.Fatalf("admin's list: %v, %v", all, err)
	}
	resp, err := f.schedule.CancelScheduled(as(t, adminCaller), &notifyv1.CancelScheduledRequest{CancelKey: "expiry-g1", Publisher: "service:svc1"})
	if err != nil || resp.Scheduled.State != notifyv1.ScheduledState_SCHEDULED_STATE_CANCELLED {
		t.Fatalf("admin's cancel: %v, %v", resp, err)
	}
	_, err = f.schedule.CancelScheduled(as(t, svcCaller), &notifyv1.CancelScheduledRequest{Id: resp.Scheduled.Id})
	wantStatus(t, "cancel again", err, codes.FailedPrecondition, "no longer pending")
	_, err = f.schedule.CancelScheduled(as(t, svcCaller), &notifyv1.CancelScheduledRequest{})
	wantStatus(t, "no key", err, codes.InvalidArgument, "give one")
	testenv.Eventually(t, 10*time.Second, "the later reminder in g2's inbox", func() bool { return len(inboxOf(t, f, "g2")) == 1 })
	if n := len(inboxOf(t, f, "g1")); n != 0 {
		t.Errorf("a cancelled reminder reached the inbox")
	}
}

// TestPublishBatchWithScheduled: a batch publishes its requests due now
// and stores the others, each result in its place.
func TestPublishBatchWithScheduled(t *testing.T) {
	f := newScheduleFixture(t)
	later := expiryReq("g2")
	later.Delay = durationpb.New(time.Hour)
	later.CancelKey = "later-g2"
	resp, err := f.notify.PublishBatch(as(t, svcCaller), &notifyv1.PublishBatchRequest{Requests: []*notifyv1.PublishRequest{expiryReq("g1"), later}})
	if err != nil {
		t.Fatal(err)
	}
	if r := resp.Results; len(r) != 2 || r[0].EventId == "" || r[0].Scheduled != nil || r[1].Scheduled.GetCancelKey() != "later-g2" {
		t.Fatalf("results %v", resp.Results)
	}
	// One bad request refuses the whole batch.
	bad := expiryReq("g3")
	bad.Delay = durationpb.New(48 * time.Hour)
	_, err = f.notify.PublishBatch(as(t, svcCaller), &notifyv1.PublishBatchRequest{Requests: []*notifyv1.PublishRequest{expiryReq("g3"), bad}})
	wantStatus(t, "bad batch", err, codes.InvalidArgument, "requests[1]: ")
	if n := len(inboxOf(t, f, "g3")); n != 0 {
		t.Errorf("part of a refused batch was published")
	}
}

// TestTimePreferences: a guest sets a time zone, quiet hours and digests,
// and reads them back; bad values are refused with what was wrong.
func TestTimePreferences(t *testing.T) {
	f := newScheduleFixture(t)
	p := &notifyv1.Preferences{
		Enabled: true, TimeZone: "Europe/Paris", QuietHours: &notifyv1.QuietHours{Start: "22:00", End: "07:30"},
		Digests: []*notifyv1.DigestRule{{EventType: notifyv1.EventType_EVENT_TYPE_POINTS_ADDED, Window: durationpb.New(time.Hour), Key: "restaurant_id"}},
	}
	if _, err := f.inbox.UpdatePreferences(as(t, guestCaller), &notifyv1.UpdatePreferencesRequest{Preferences: p}); err != nil {
		t.Fatal(err)
	}
	got, err := f.inbox.GetPreferences(as(t, guestCaller), &notifyv1.GetPreferencesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(got.Preferences, p) {
		t.Errorf("read back %v, want %v", got.Preferences, p)
	}
	for name, bad := range map[string]*notifyv1.Preferences{
		"zone":   {TimeZone: "Europe/Atlantis"},
		"hour":   {QuietHours: &notifyv1.QuietHours{Start: "24:00", End: "07:00"}},
		"format": {QuietHours: &notifyv1.QuietHours{Start: "7", End: "08:00"}},
		"window": {Digests: []*notifyv1.DigestRule{{EventType: notifyv1.EventType_EVENT_TYPE_POINTS_ADDED, Window: durationpb.New(time.Second)}}},
		"type":   {Digests: []*notifyv1.DigestRule{{Window: durationpb.New(time.Hour)}}},
	} {
		_, err := f.inbox.UpdatePreferences(as(t, guestCaller), &notifyv1.UpdatePreferencesRequest{Preferences: bad})
		wantStatus(t, name, err, codes.InvalidArgument, "")
	}
	// Digests: the guest's own; another's for services and admins only.
	if _, err := f.schedule.ListDigests(as(t, guestCaller), &notifyv1.ListDigestsRequest{}); err != nil {
		t.Errorf("own digests: %v", err)
	}
	_, err = f.schedule.ListDigests(as(t, guestCaller), &notifyv1.ListDigestsRequest{UserId: "g2"})
	wantStatus(t, "another's digests", err, codes.PermissionDenied, "")
	if _, err := f.schedule.ReleaseDigest(as(t, svcCaller), &notifyv1.ReleaseDigestRequest{UserId: "g2", EventType: notifyv1.EventType_EVENT_TYPE_POINTS_ADDED}); err != nil {
		t.Errorf("service releases: %v", err)
	}
	_, err = f.schedule.ReleaseDigest(as(t, guestCaller), &notifyv1.ReleaseDigestRequest{Key: "r1"})
	wantStatus(t, "key without type", err, codes.InvalidArgument, "only with event_type")
	if st := status.Convert(err); st.Code() != codes.InvalidArgument {
		t.Errorf("%v", st)
	}
}

// offScheduler is a scheduler that keeps no scheduled publishes, as a
// queue whose store has no timing engine.
type offScheduler struct{ service.Scheduler }

func (offScheduler) Scheduling() bool { return false }

// scheduleRPC is a call of method m that sends the empty request, or the
// one a guest may not make when denied, and returns its error.
func scheduleRPC[Req, Resp any](m func(notifyv1.ScheduleServiceClient, context.Context, Req, ...grpc.CallOption) (Resp, error), empty, guestDenied Req) func(context.Context, notifyv1.ScheduleServiceClient, bool) error {
	return func(ctx context.Context, c notifyv1.ScheduleServiceClient, denied bool) error {
		req := empty
		if denied {
			req = guestDenied
		}
		_, err := m(c, ctx, req)
		return err
	}
}

// TestScheduleServicePreamble: every ScheduleService call refuses a caller
// without claims (Unauthenticated) before anything else, then a server
// without a scheduler (FailedPrecondition) before looking at its request,
// then a caller whose role does not allow what it asks (PermissionDenied).
func TestScheduleServicePreamble(t *testing.T) {
	const (
		noToken = "missing bearer token"
		noSched = "keeps no scheduled publishes"
	)
	calls := []struct {
		name string
		call func(context.Context, notifyv1.ScheduleServiceClient, bool) error
	}{
		{"CancelScheduled", scheduleRPC(notifyv1.ScheduleServiceClient.CancelScheduled,
			&notifyv1.CancelScheduledRequest{}, &notifyv1.CancelScheduledRequest{CancelKey: "k", Publisher: "service:svc1"})},
		{"ListScheduled", scheduleRPC(notifyv1.ScheduleServiceClient.ListScheduled,
			&notifyv1.ListScheduledRequest{}, &notifyv1.ListScheduledRequest{Publisher: "*"})},
		{"ListDigests", scheduleRPC(notifyv1.ScheduleServiceClient.ListDigests,
			&notifyv1.ListDigestsRequest{}, &notifyv1.ListDigestsRequest{UserId: "g2"})},
		{"ReleaseDigest", scheduleRPC(notifyv1.ScheduleServiceClient.ReleaseDigest,
			&notifyv1.ReleaseDigestRequest{}, &notifyv1.ReleaseDigestRequest{UserId: "g2"})},
	}
	noScheduler := func(s *scheduleSetup) { s.cfg.Deliveries, s.cfg.Scheduler = nil, nil }
	// The interceptors let every ScheduleService call through: the call
	// itself finds no claims.
	noAuth := func(s *scheduleSetup) {
		s.skip = func(m string) bool {
			return strings.HasPrefix(m, "/"+notifyv1.ScheduleService_ServiceDesc.ServiceName+"/")
		}
	}
	for _, tc := range []struct {
		name  string
		setup []func(*scheduleSetup)
		// caller is who calls: nil, no one (no token).
		caller *auth.Claims
		denied bool
		code   codes.Code
		msg    string
	}{
		{"no token", nil, nil, false, codes.Unauthenticated, noToken},
		// Claims come first: before the missing scheduler.
		{"no claims in the call", []func(*scheduleSetup){noAuth, noScheduler}, nil, false, codes.Unauthenticated, noToken},
		// The scheduler comes before the request (the empty ones are
		// invalid for CancelScheduled) and the caller's role.
		{"no scheduler", []func(*scheduleSetup){noScheduler}, &svcCaller, false, codes.FailedPrecondition, noSched},
		{"scheduling off", []func(*scheduleSetup){func(s *scheduleSetup) { s.cfg.Scheduler = offScheduler{s.cfg.Scheduler} }},
			&guestCaller, true, codes.FailedPrecondition, noSched},
		{"guest's role", nil, &guestCaller, true, codes.PermissionDenied, "guest tokens see their own"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newScheduleFixture(t, tc.setup...)
			var ctx context.Context
			if tc.caller != nil {
				ctx = as(t, *tc.caller)
			} else {
				bare, cancel := context.WithTimeout(context.Background(), rpcTimeout)
				t.Cleanup(cancel)
				ctx = bare
			}
			for _, c := range calls {
				wantStatus(t, c.name, c.call(ctx, f.schedule, tc.denied), tc.code, tc.msg)
			}
		})
	}
}
