package node_test

// End-to-end tests of the durable inbox (InboxService, the stream's unread
// count, mutes) over real sockets on 127.0.0.1, on the embedded SQLite
// store and, when NOTIFY_TEST_POSTGRES_DSN is set, on PostgreSQL.

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	notifyv1 "github.com/maxloyalty/notify/gen/notify/v1"
	"github.com/maxloyalty/notify/server/auth"
	"github.com/maxloyalty/notify/server/node"
)

// inboxTimeout bounds every inbox test's blocking steps (a stream's whole
// life included); it is longer than testTimeout because one context serves
// a whole scenario, which runs slower under -race.
const inboxTimeout = 30 * time.Second

func inboxCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), inboxTimeout)
	t.Cleanup(cancel)
	return ctx
}

func guestID(id string) auth.Claims { return auth.Claims{Subject: id, Role: notifyv1.Role_ROLE_GUEST} }
func adminID(id string) auth.Claims { return auth.Claims{Subject: id, Role: notifyv1.Role_ROLE_ADMIN} }

// dialInbox opens one client connection to addr and returns both services
// on it; the connection is closed when the test ends.
func dialInbox(t *testing.T, addr string) (notifyv1.NotificationServiceClient, notifyv1.InboxServiceClient) {
	t.Helper()
	conn, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatalf("grpc.NewClient(%s): %v", addr, err)
	}
	t.Cleanup(func() { conn.Close() })
	return notifyv1.NewNotificationServiceClient(conn), notifyv1.NewInboxServiceClient(conn)
}

// ---- stream unread counts ----

// recvWithin receives the stream's next raw message (unread counts left
// on it), failing the test if none comes within testTimeout. After a
// failure the stream must not be read again.
func (s *stream) recvWithin(t *testing.T, what string) *notifyv1.SubscribeResponse {
	t.Helper()
	type result struct {
		m   *notifyv1.SubscribeResponse
		err error
	}
	ch := make(chan result, 1)
	go func() {
		m, err := s.ServerStreamingClient.Recv()
		ch <- result{m, err}
	}()
	select {
	case r := <-ch:
		if r.err != nil {
			t.Fatalf("%s: Recv (last unread count %d): %v", what, s.unread, r.err)
		}
		return r.m
	case <-time.After(testTimeout):
		t.Fatalf("%s: nothing received within %v (last unread count %d)", what, testTimeout, s.unread)
		return nil
	}
}

// firstUnread reads the message right after Connected and requires it to be
// the initial unread count alone.
func (s *stream) firstUnread(t *testing.T) int64 {
	t.Helper()
	m := s.recvWithin(t, "initial unread count")
	if m.GetUnread() == nil || len(m.Events) != 0 {
		t.Fatalf("message after Connected = %v, want the initial unread count alone", m)
	}
	s.unread = m.GetUnread().Count
	return s.unread
}

// nextUnread reads until a message carries an unread count and returns it.
// Events read on the way are kept for next; heartbeats are counted.
func (s *stream) nextUnread(t *testing.T, what string) int64 {
	t.Helper()
	for range 10000 {
		m := s.recvWithin(t, what+": waiting for an unread count")
		s.pending = append(s.pending, m.Events...)
		switch {
		case m.GetUnread() != nil:
			s.unread = m.GetUnread().Count
			return s.unread
		case m.GetHeartbeat() != nil:
			s.heartbeats++
		case m.GetControl() != nil:
			t.Fatalf("%s: unexpected control message while waiting for an unread count: %v", what, m)
		}
	}
	t.Fatalf("%s: no unread count in 10000 messages", what)
	return 0
}

// awaitUnread waits until the stream's last unread count is want (it may
// already be) and returns the counts it read on the way, want included.
// Unread counts only come from the server, so a stream whose last count is
// want has been told want; callers wait for a value other than the last one
// they saw, or for one they know the server sends.
func (s *stream) awaitUnread(t *testing.T, want int64, what string) []int64 {
	t.Helper()
	if s.unread == want {
		return []int64{want}
	}
	var seen []int64
	for range 1000 {
		n := s.nextUnread(t, what)
		seen = append(seen, n)
		if n == want {
			return seen
		}
	}
	t.Fatalf("%s: unread counts %v never reached %d", what, seen, want)
	return nil
}

// ---- gRPC inbox helpers ----

func listAll(t *testing.T, ctx context.Context, ib notifyv1.InboxServiceClient, tok string, req *notifyv1.ListNotificationsRequest) *notifyv1.ListNotificationsResponse {
	t.Helper()
	if req == nil {
		req = &notifyv1.ListNotificationsRequest{}
	}
	if req.PageSize == 0 {
		req.PageSize = 200
	}
	resp, err := ib.ListNotifications(withToken(ctx, tok), req)
	if err != nil {
		t.Fatalf("ListNotifications(%v): %v", req, err)
	}
	if resp.NextPageToken != "" {
		t.Fatalf("ListNotifications(%v) has a next page; the test expects one page", req)
	}
	return resp
}

func unreadCount(t *testing.T, ctx context.Context, ib notifyv1.InboxServiceClient, tok string) int64 {
	t.Helper()
	resp, err := ib.GetUnreadCount(withToken(ctx, tok), &notifyv1.GetUnreadCountRequest{})
	if err != nil {
		t.Fatalf("GetUnreadCount: %v", err)
	}
	return resp.UnreadCount
}

// wantStatus requires err to carry code and a message containing each of
// substrs, and never the opaque "internal error".
func wantStatus(t *testing.T, err error, code codes.Code, what string, substrs ...string) {
	t.Helper()
	st, _ := status.FromError(err)
	if st.Code() != code {
		t.Errorf("%s: code %v (message %q), want %v", what, st.Code(), st.Message(), code)
		return
	}
	for _, s := range substrs {
		if !strings.Contains(st.Message(), s) {
			t.Errorf("%s: message %q does not mention %q", what, st.Message(), s)
		}
	}
}

// eventIDs lists the notifications' event ids.
func eventIDs(ns []*notifyv1.Notification) []string {
	out := make([]string, len(ns))
	for i, n := range ns {
		out[i] = n.GetEvent().GetId()
	}
	return out
}

// notifIDs lists the notifications' ids.
func notifIDs(ns []*notifyv1.Notification) []string {
	out := make([]string, len(ns))
	for i, n := range ns {
		out[i] = n.Id
	}
	return out
}

func findNotif(ns []*notifyv1.Notification, id string) *notifyv1.Notification {
	for _, n := range ns {
		if n.Id == id {
			return n
		}
	}
	return nil
}

// ---- REST inbox helpers ----

// restOK checks for a 200 and decodes the body into m (if not nil). A
// failure is reported without stopping the test, so that a broken REST
// route does not hide what the rest of a scenario checks.
func restOK(t *testing.T, r restResult, what string, m proto.Message) bool {
	t.Helper()
	if r.status != http.StatusOK {
		t.Errorf("%s: HTTP %d %s, want 200", what, r.status, r.body)
		return false
	}
	if m != nil {
		unmarshalJSON(t, r.body, m)
	}
	return true
}

// wantREST requires an error response with the HTTP status, a gRPC code in
// the body matching it, and a message containing each of substrs.
func wantREST(t *testing.T, r restResult, httpStatus int, code codes.Code, what string, substrs ...string) {
	t.Helper()
	if r.status != httpStatus {
		t.Errorf("%s: HTTP %d %s, want %d", what, r.status, r.body, httpStatus)
		return
	}
	e := parseRestError(t, r.body)
	if codes.Code(e.Code) != code {
		t.Errorf("%s: body code %d (%s), want %v", what, e.Code, r.body, code)
	}
	if e.Message == "" || strings.Contains(e.Message, "internal error") {
		t.Errorf("%s: unclear message %q", what, e.Message)
	}
	for _, s := range substrs {
		if !strings.Contains(e.Message, s) {
			t.Errorf("%s: message %q does not mention %q", what, e.Message, s)
		}
	}
}

// restList lists over REST; ok is false (and the test marked failed) when
// the call did not succeed.
func restList(t *testing.T, ctx context.Context, base, tok, query string) (resp *notifyv1.ListNotificationsResponse, raw string, ok bool) {
	t.Helper()
	u := base + "/v1/inbox/notifications"
	if query != "" {
		u += "?" + query
	}
	r := restDo(t, ctx, http.MethodGet, u, tok, "")
	resp = &notifyv1.ListNotificationsResponse{}
	ok = restOK(t, r, "GET /v1/inbox/notifications?"+query, resp)
	return resp, string(r.body), ok
}

// restUnread gets the unread count over REST; ok as for restList.
func restUnread(t *testing.T, ctx context.Context, base, tok string) (n int64, ok bool) {
	t.Helper()
	var resp notifyv1.GetUnreadCountResponse
	ok = restOK(t, restDo(t, ctx, http.MethodGet, base+"/v1/inbox/unread-count", tok, ""), "GET /v1/inbox/unread-count", &resp)
	return resp.UnreadCount, ok
}

func jsonBody(t *testing.T, m proto.Message) string {
	t.Helper()
	b, err := protojson.Marshal(m)
	if err != nil {
		t.Fatalf("protojson.Marshal: %v", err)
	}
	return string(b)
}

func idsJSON(ids ...string) string {
	q := make([]string, len(ids))
	for i, id := range ids {
		q[i] = strconv.Quote(id)
	}
	return `{"ids":[` + strings.Join(q, ",") + `]}`
}

// ---- events ----

func cardCreated(gid, rid string, initial int64) *notifyv1.PublishRequest {
	return &notifyv1.PublishRequest{Payload: &notifyv1.PublishRequest_CardCreated{CardCreated: &notifyv1.CardCreated{
		GuestId: gid, CardId: "card-" + gid, RestaurantId: rid, RestaurantName: "Chez " + rid, InitialPoints: initial,
	}}}
}

func systemAlert(title string) *notifyv1.PublishRequest {
	return &notifyv1.PublishRequest{Payload: &notifyv1.PublishRequest_SystemAlert{SystemAlert: &notifyv1.SystemAlert{
		Level: notifyv1.AlertLevel_ALERT_LEVEL_WARNING, Title: title, Message: "disk " + title, Source: notifyv1.AlertSource_ALERT_SOURCE_SYSTEM,
	}}}
}

func adminNotification(title string) *notifyv1.PublishRequest {
	return &notifyv1.PublishRequest{Payload: &notifyv1.PublishRequest_AdminNotification{AdminNotification: &notifyv1.AdminNotification{
		NotificationId: "n-" + title, Type: notifyv1.AdminNotificationType_ADMIN_NOTIFICATION_TYPE_FRAUD_DETECTED,
		Title: title, Priority: notifyv1.Priority_PRIORITY_HIGH,
	}}}
}

func publishAs(t *testing.T, ctx context.Context, c notifyv1.NotificationServiceClient, tok string, req *notifyv1.PublishRequest) *notifyv1.PublishResponse {
	t.Helper()
	resp, err := c.Publish(withToken(ctx, tok), req)
	if err != nil {
		t.Fatalf("Publish(%v): %v", req, err)
	}
	return resp
}

// ---- the scenarios, run on SQLite and on PostgreSQL ----

// inboxScenarios are the inbox behaviours every store must show, each on a
// node of its own.
var inboxScenarios = []struct {
	name string
	run  func(t *testing.T, n *testNode)
}{
	{"OfflineGuest", scenarioOfflineGuest},
	{"Isolation", scenarioIsolation},
	{"AdminShared", scenarioAdminShared},
	{"PagingAndFilters", scenarioPagingAndFilters},
	{"Preferences", scenarioPreferences},
	{"BadInput", scenarioBadInput},
}

// TestInboxOfflineGuest: a service publishes over REST to an offline guest;
// the guest's first stream starts with an unread count of 1, the REST inbox
// shows the notification, and marking it read over REST pushes 0 live.
func TestInboxOfflineGuest(t *testing.T) {
	t.Parallel()
	scenarioOfflineGuest(t, startNode(t, nil))
}

func scenarioOfflineGuest(t *testing.T, n *testNode) {
	ctx := inboxCtx(t)
	base := "http://" + n.HTTPAddr()
	c, ib := dialInbox(t, n.GRPCAddr())
	svc := mint(t, serviceClaims)
	g1 := mint(t, guestClaims)

	want := &notifyv1.PointsAdded{
		GuestId: "g1", CardId: "card-g1", Amount: 40, NewBalance: 140, RestaurantId: "r1",
		RestaurantName: "Chez r1", TransactionId: "tx-offline", Description: "offline delivery",
	}
	r := restDo(t, ctx, http.MethodPost, base+"/v1/events", svc, jsonBody(t, pointsReq(want)))
	var pub notifyv1.PublishResponse
	if !restOK(t, r, "POST /v1/events", &pub) {
		t.FailNow()
	}
	if pub.EventId == "" {
		t.Fatalf("publish response %s has no eventId", r.body)
	}

	s, conn := subscribe(t, ctx, c, g1, &notifyv1.SubscribeRequest{})
	if conn.UserId != "g1" {
		t.Errorf("Connected user %q, want g1", conn.UserId)
	}
	if got := s.firstUnread(t); got != 1 {
		t.Fatalf("initial unread count %d, want 1", got)
	}

	if got, ok := restUnread(t, ctx, base, g1); ok && got != 1 {
		t.Errorf("GET /v1/inbox/unread-count = %d, want 1", got)
	}
	list, raw, ok := restList(t, ctx, base, g1, "")
	if !ok {
		// Go on over gRPC, to check the rest of the scenario.
		list = listAll(t, ctx, ib, g1, nil)
		b, _ := protojson.Marshal(list)
		raw = string(b)
	}
	if len(list.Notifications) != 1 {
		t.Fatalf("REST inbox has %d notifications, want 1: %s", len(list.Notifications), raw)
	}
	got := list.Notifications[0]
	switch {
	case got.Id == "":
		t.Errorf("notification has no id: %s", raw)
	case got.Read:
		t.Errorf("notification is read, want unread: %s", raw)
	case got.EventType != notifyv1.EventType_EVENT_TYPE_POINTS_ADDED:
		t.Errorf("eventType %v, want EVENT_TYPE_POINTS_ADDED", got.EventType)
	case got.GetEvent().GetId() != pub.EventId:
		t.Errorf("event id %q, want the published %q", got.GetEvent().GetId(), pub.EventId)
	case got.GetEvent().GetRoom() != "guest:g1":
		t.Errorf("event room %q, want guest:g1", got.GetEvent().GetRoom())
	case got.GetEvent().GetOffset() != position(t, &pub, "guest:g1").Offset || got.GetEvent().GetEpoch() != position(t, &pub, "guest:g1").Epoch:
		t.Errorf("event at %d@%s, want the guest:g1 position %v", got.GetEvent().GetOffset(), got.GetEvent().GetEpoch(), position(t, &pub, "guest:g1"))
	case !proto.Equal(got.GetEvent().GetPointsAdded(), want):
		t.Errorf("payload %v, want %v", got.GetEvent().GetPointsAdded(), want)
	case got.GetCreateTime() == nil || time.Since(got.GetCreateTime().AsTime()).Abs() > time.Minute:
		t.Errorf("create_time %v, want about now", got.GetCreateTime())
	}
	if list.UnreadCount != 1 || list.NextPageToken != "" {
		t.Errorf("list unreadCount %d nextPageToken %q, want 1 and none", list.UnreadCount, list.NextPageToken)
	}
	for _, frag := range []string{`"eventType":"EVENT_TYPE_POINTS_ADDED"`, `"room":"guest:g1"`, `"pointsAdded":{`} {
		if !strings.Contains(strings.ReplaceAll(raw, " ", ""), frag) {
			t.Errorf("REST list body lacks %s: %s", frag, raw)
		}
	}
	// gRPC sees the same inbox.
	if g := listAll(t, ctx, ib, g1, nil); len(g.Notifications) != 1 || !proto.Equal(g.Notifications[0], got) {
		t.Errorf("gRPC list %v, want the REST one %v", g.Notifications, got)
	}

	var mr notifyv1.MarkReadResponse
	if !restOK(t, restDo(t, ctx, http.MethodPost, base+"/v1/inbox/notifications:markRead", g1, idsJSON(got.Id)),
		"POST /v1/inbox/notifications:markRead", &mr) {
		// Go on over gRPC, to check the live count.
		resp, err := ib.MarkRead(withToken(ctx, g1), &notifyv1.MarkReadRequest{Ids: []string{got.Id}})
		if err != nil {
			t.Fatalf("gRPC MarkRead: %v", err)
		}
		mr.UnreadCount = resp.UnreadCount
	}
	if mr.UnreadCount != 0 {
		t.Errorf("markRead unreadCount %d, want 0", mr.UnreadCount)
	}
	s.awaitUnread(t, 0, "after markRead")
	if got, ok := restUnread(t, ctx, base, g1); ok && got != 0 {
		t.Errorf("GET /v1/inbox/unread-count after markRead = %d, want 0", got)
	}
	if after, raw, ok := restList(t, ctx, base, g1, ""); ok && (len(after.Notifications) != 1 || !after.Notifications[0].Read || after.Notifications[0].Id != got.Id) {
		t.Errorf("after markRead the REST inbox is %s, want the one notification, read", raw)
	}
	if after := listAll(t, ctx, ib, g1, nil); len(after.Notifications) != 1 || !after.Notifications[0].Read || after.UnreadCount != 0 {
		t.Errorf("after markRead the inbox is %v (unread %d), want the one notification, read", after.Notifications, after.UnreadCount)
	}
	if len(s.pending) != 0 {
		t.Errorf("the stream, opened after the publish, got events %v", s.pending)
	}
}

// TestInboxIsolation: one guest never sees nor changes another's inbox.
func TestInboxIsolation(t *testing.T) {
	t.Parallel()
	scenarioIsolation(t, startNode(t, nil))
}

func scenarioIsolation(t *testing.T, n *testNode) {
	ctx := inboxCtx(t)
	base := "http://" + n.HTTPAddr()
	c, ib := dialInbox(t, n.GRPCAddr())
	g1, g2 := mint(t, guestClaims), mint(t, guestID("g2"))
	a1 := mint(t, adminID("a1"))
	staff := mint(t, restaurantClaims)

	pub := publish(t, ctx, c, pointsReq(pointsAdded("g1", "r1", 5)))
	publish(t, ctx, c, systemAlert("isolation")) // the admins' inbox, not g1's
	mine := listAll(t, ctx, ib, g1, nil)
	if len(mine.Notifications) != 1 || mine.Notifications[0].GetEvent().GetId() != pub.EventId {
		t.Fatalf("g1's inbox %v, want only event %s", mine.Notifications, pub.EventId)
	}
	before := mine.Notifications[0]
	id := before.Id

	other := listAll(t, ctx, ib, g2, nil)
	if len(other.Notifications) != 0 || other.UnreadCount != 0 {
		t.Errorf("g2 sees %v (unread %d), want an empty inbox", other.Notifications, other.UnreadCount)
	}
	if got, _, ok := restList(t, ctx, base, g2, ""); ok && len(got.Notifications) != 0 {
		t.Errorf("g2 sees %v over REST, want nothing", got.Notifications)
	}
	if got, ok := restUnread(t, ctx, base, g2); ok && got != 0 {
		t.Errorf("g2 unread count %d over REST, want 0", got)
	}
	// Staff get no inbox rows from restaurant rooms; admins see only theirs.
	if got := listAll(t, ctx, ib, staff, nil); len(got.Notifications) != 0 {
		t.Errorf("restaurant staff see %v, want nothing (restaurant rooms have no inbox)", got.Notifications)
	}
	if got := listAll(t, ctx, ib, a1, nil); len(got.Notifications) != 1 || got.Notifications[0].EventType != notifyv1.EventType_EVENT_TYPE_SYSTEM_ALERT {
		t.Errorf("admin sees %v, want only the system alert", got.Notifications)
	}

	for who, tok := range map[string]string{"g2": g2, "admin a1": a1, "restaurant": staff} {
		_, err := ib.MarkRead(withToken(ctx, tok), &notifyv1.MarkReadRequest{Ids: []string{id}})
		wantStatus(t, err, codes.NotFound, who+" MarkRead(g1's id)", "no such notification")
		_, err = ib.MarkUnread(withToken(ctx, tok), &notifyv1.MarkUnreadRequest{Ids: []string{id}})
		wantStatus(t, err, codes.NotFound, who+" MarkUnread(g1's id)", "no such notification")
		_, err = ib.DeleteNotification(withToken(ctx, tok), &notifyv1.DeleteNotificationRequest{Id: id})
		wantStatus(t, err, codes.NotFound, who+" DeleteNotification(g1's id)", "no such notification")
	}
	wantREST(t, restDo(t, ctx, http.MethodPost, base+"/v1/inbox/notifications:markRead", g2, idsJSON(id)),
		http.StatusNotFound, codes.NotFound, "g2 REST markRead(g1's id)", "no such notification")
	wantREST(t, restDo(t, ctx, http.MethodPost, base+"/v1/inbox/notifications:markUnread", g2, idsJSON(id)),
		http.StatusNotFound, codes.NotFound, "g2 REST markUnread(g1's id)", "no such notification")
	wantREST(t, restDo(t, ctx, http.MethodDelete, base+"/v1/inbox/notifications/"+id, g2, ""),
		http.StatusNotFound, codes.NotFound, "g2 REST DELETE g1's id", "no such notification")
	// g2's MarkAllRead and Clear touch nothing of g1's.
	if resp, err := ib.MarkAllRead(withToken(ctx, g2), &notifyv1.MarkAllReadRequest{}); err != nil || resp.Marked != 0 {
		t.Errorf("g2 MarkAllRead = %v, %v; want 0 marked", resp, err)
	}
	if resp, err := ib.ClearNotifications(withToken(ctx, g2), &notifyv1.ClearNotificationsRequest{}); err != nil || resp.Deleted != 0 {
		t.Errorf("g2 ClearNotifications = %v, %v; want 0 deleted", resp, err)
	}
	// A mark naming one of g1's ids and an unknown one changes nothing.
	_, err := ib.MarkRead(withToken(ctx, g1), &notifyv1.MarkReadRequest{Ids: []string{id, "999999"}})
	wantStatus(t, err, codes.NotFound, "g1 MarkRead(own id, unknown id)")

	after := listAll(t, ctx, ib, g1, nil)
	if len(after.Notifications) != 1 || !proto.Equal(after.Notifications[0], before) || after.UnreadCount != 1 {
		t.Errorf("g1's inbox after the others' attempts = %v (unread %d), want %v unchanged and unread", after.Notifications, after.UnreadCount, before)
	}

	// An event in both of g1's personal rooms is one notification.
	both := publish(t, ctx, c, pointsReq(pointsAdded("g1", "r1", 6), "guest:g1", "user:g1"))
	after = listAll(t, ctx, ib, g1, nil)
	if got := eventIDs(after.Notifications); !slices.Equal(got, []string{both.EventId, pub.EventId}) {
		t.Errorf("g1's inbox events %v, want [%s %s] (one notification per event)", got, both.EventId, pub.EventId)
	}
	if after.UnreadCount != 2 {
		t.Errorf("g1 unread %d, want 2", after.UnreadCount)
	}

	// A publish repeated with its idempotency key is one notification.
	req := pointsReq(pointsAdded("g1", "r1", 7))
	req.IdempotencyKey = "isolation-once"
	first := publish(t, ctx, c, req)
	again := publish(t, ctx, c, req)
	if !again.Duplicate || again.EventId != first.EventId {
		t.Errorf("repeated publish = %v, want a duplicate of %s", again, first.EventId)
	}
	after = listAll(t, ctx, ib, g1, nil)
	if got := eventIDs(after.Notifications); !slices.Equal(got, []string{first.EventId, both.EventId, pub.EventId}) || after.UnreadCount != 3 {
		t.Errorf("g1's inbox events %v (unread %d) after a repeated publish, want [%s %s %s] (unread 3)", got, after.UnreadCount, first.EventId, both.EventId, pub.EventId)
	}
}

// TestInboxSubjectNamedLikeAGroup: a token whose subject is spelled like the
// admins' shared inbox owner ("group:admin") must not read that inbox. The
// inbox keys a user's own rows by the bare token subject, and the admin
// room's rows by the owner "group:admin", so such a subject must be refused
// (or see only an empty inbox of its own).
func TestInboxSubjectNamedLikeAGroup(t *testing.T) {
	t.Parallel()
	n := startNode(t, nil)
	ctx := inboxCtx(t)
	c, ib := dialInbox(t, n.GRPCAddr())
	alert := publish(t, ctx, c, systemAlert("secret"))
	if l := listAll(t, ctx, ib, mint(t, adminID("a1")), nil); !slices.Equal(eventIDs(l.Notifications), []string{alert.EventId}) {
		t.Fatalf("admin inbox %v, want the alert %s", eventIDs(l.Notifications), alert.EventId)
	}
	for _, role := range []notifyv1.Role{notifyv1.Role_ROLE_GUEST, notifyv1.Role_ROLE_SERVICE} {
		tok := mint(t, auth.Claims{Subject: "group:admin", Role: role})
		resp, err := ib.ListNotifications(withToken(ctx, tok), &notifyv1.ListNotificationsRequest{})
		switch status.Code(err) {
		case codes.OK:
			if len(resp.Notifications) != 0 || resp.UnreadCount != 0 {
				t.Errorf("a %v token with subject \"group:admin\" lists the admins' shared inbox: %v (unread %d)", role, eventIDs(resp.Notifications), resp.UnreadCount)
			}
		case codes.InvalidArgument, codes.PermissionDenied, codes.Unauthenticated:
		default:
			t.Errorf("a %v token with subject \"group:admin\": ListNotifications = %v", role, err)
		}
		if n, err := ib.GetUnreadCount(withToken(ctx, tok), &notifyv1.GetUnreadCountRequest{}); err == nil && n.UnreadCount != 0 {
			t.Errorf("a %v token with subject \"group:admin\" counts %d unread, the admins' shared items", role, n.UnreadCount)
		}
	}
}

// TestInboxAdminShared: admin-room events enter one shared inbox with read
// and deleted state per admin, and each admin's stream gets its own count.
func TestInboxAdminShared(t *testing.T) {
	t.Parallel()
	scenarioAdminShared(t, startNode(t, nil))
}

func scenarioAdminShared(t *testing.T, n *testNode) {
	ctx := inboxCtx(t)
	base := "http://" + n.HTTPAddr()
	c, ib := dialInbox(t, n.GRPCAddr())
	a1, a2 := mint(t, adminID("a1")), mint(t, adminID("a2"))
	svc := mint(t, serviceClaims)

	s1, _ := subscribe(t, ctx, c, a1, &notifyv1.SubscribeRequest{})
	s2, _ := subscribe(t, ctx, c, a2, &notifyv1.SubscribeRequest{})
	if u1, u2 := s1.firstUnread(t), s2.firstUnread(t); u1 != 0 || u2 != 0 {
		t.Fatalf("initial unread counts a1=%d a2=%d, want 0 and 0", u1, u2)
	}

	// An admin publishes a system alert: both admins get it live and in
	// their inbox.
	alert := publishAs(t, ctx, c, a1, systemAlert("first"))
	for _, s := range []*stream{s1, s2} {
		if ev := s.next(t); ev.Id != alert.EventId || ev.Room != "admin" {
			t.Errorf("live event %v, want alert %s in admin", ev, alert.EventId)
		}
	}
	s1.awaitUnread(t, 1, "a1 after the first alert")
	s2.awaitUnread(t, 1, "a2 after the first alert")
	l1, l2 := listAll(t, ctx, ib, a1, nil), listAll(t, ctx, ib, a2, nil)
	if len(l1.Notifications) != 1 || len(l2.Notifications) != 1 {
		t.Fatalf("inboxes a1=%v a2=%v, want the alert in each", l1.Notifications, l2.Notifications)
	}
	id := l1.Notifications[0].Id
	for who, l := range map[string]*notifyv1.ListNotificationsResponse{"a1": l1, "a2": l2} {
		nt := l.Notifications[0]
		if nt.Id != id || nt.Read || nt.EventType != notifyv1.EventType_EVENT_TYPE_SYSTEM_ALERT ||
			nt.GetEvent().GetRoom() != "admin" || nt.GetEvent().GetSystemAlert().GetTitle() != "first" || l.UnreadCount != 1 {
			t.Errorf("%s's inbox %v (unread %d), want the unread alert %s in admin", who, nt, l.UnreadCount, id)
		}
	}

	// a1 reads it: a2 still has it unread.
	mr, err := ib.MarkRead(withToken(ctx, a1), &notifyv1.MarkReadRequest{Ids: []string{id}})
	if err != nil || mr.UnreadCount != 0 {
		t.Fatalf("a1 MarkRead = %v, %v; want unread 0", mr, err)
	}
	s1.awaitUnread(t, 0, "a1 after reading")
	if l := listAll(t, ctx, ib, a2, nil); len(l.Notifications) != 1 || l.Notifications[0].Read || l.UnreadCount != 1 {
		t.Errorf("a2's inbox after a1 read = %v (unread %d), want the alert unread", l.Notifications, l.UnreadCount)
	}
	if l := listAll(t, ctx, ib, a1, nil); len(l.Notifications) != 1 || !l.Notifications[0].Read {
		t.Errorf("a1's inbox after reading = %v, want the alert read", l.Notifications)
	}

	// A service's admin notification: live counts are each admin's own.
	second := publishAs(t, ctx, c, svc, adminNotification("second"))
	for _, s := range []*stream{s1, s2} {
		if ev := s.next(t); ev.Id != second.EventId {
			t.Errorf("live event %v, want %s", ev, second.EventId)
		}
	}
	// Every count pushed now is the admin's own: a1's 1, a2's 2 (the first
	// alert's pushes were all read above, so nothing older is in flight).
	if seen := s1.awaitUnread(t, 1, "a1 after the second"); slices.ContainsFunc(seen, func(n int64) bool { return n != 1 }) {
		t.Errorf("a1's stream got counts %v, want only its own count 1", seen)
	}
	if seen := s2.awaitUnread(t, 2, "a2 after the second"); slices.ContainsFunc(seen, func(n int64) bool { return n != 2 }) {
		t.Errorf("a2's stream got counts %v, want only its own count 2", seen)
	}

	// a1 deletes the first: a2 still sees it.
	dr, err := ib.DeleteNotification(withToken(ctx, a1), &notifyv1.DeleteNotificationRequest{Id: id})
	if err != nil || dr.UnreadCount != 1 {
		t.Fatalf("a1 Delete = %v, %v; want unread 1", dr, err)
	}
	if got := eventIDs(listAll(t, ctx, ib, a1, nil).Notifications); !slices.Equal(got, []string{second.EventId}) {
		t.Errorf("a1's inbox after delete = %v, want [%s]", got, second.EventId)
	}
	if l := listAll(t, ctx, ib, a2, nil); !slices.Equal(eventIDs(l.Notifications), []string{second.EventId, alert.EventId}) || l.UnreadCount != 2 {
		t.Errorf("a2's inbox after a1 deleted = %v (unread %d), want both unread", eventIDs(l.Notifications), l.UnreadCount)
	}
	if got, _, ok := restList(t, ctx, base, a2, ""); ok && len(got.Notifications) != 2 {
		t.Errorf("a2's REST inbox %v, want 2", got.Notifications)
	}
	if got, ok := restUnread(t, ctx, base, a2); ok && got != 2 {
		t.Errorf("a2's REST unread count %d, want 2", got)
	}
	_, err = ib.MarkRead(withToken(ctx, a1), &notifyv1.MarkReadRequest{Ids: []string{id}})
	wantStatus(t, err, codes.NotFound, "a1 MarkRead of the alert it deleted")

	// An event in a1's own user room is a1's alone.
	own := publishAs(t, ctx, c, svc, &notifyv1.PublishRequest{Rooms: []string{"user:a1"}, Payload: systemAlert("own").Payload})
	if ev := s1.next(t); ev.Id != own.EventId || ev.Room != "user:a1" {
		t.Errorf("a1 live %v, want %s in user:a1", ev, own.EventId)
	}
	s1.awaitUnread(t, 2, "a1 after its own event")
	if got := unreadCount(t, ctx, ib, a2); got != 2 {
		t.Errorf("a2 unread %d after a1's own event, want still 2", got)
	}

	// MarkAllRead and Clear are per admin too.
	ma, err := ib.MarkAllRead(withToken(ctx, a1), &notifyv1.MarkAllReadRequest{})
	if err != nil || ma.Marked != 2 || ma.UnreadCount != 0 {
		t.Errorf("a1 MarkAllRead = %v, %v; want 2 marked, unread 0", ma, err)
	}
	s1.awaitUnread(t, 0, "a1 after MarkAllRead")
	if got := unreadCount(t, ctx, ib, a2); got != 2 {
		t.Errorf("a2 unread %d after a1's MarkAllRead, want 2", got)
	}
	cl, err := ib.ClearNotifications(withToken(ctx, a2), &notifyv1.ClearNotificationsRequest{})
	if err != nil || cl.Deleted != 2 {
		t.Errorf("a2 Clear = %v, %v; want 2 deleted", cl, err)
	}
	s2.awaitUnread(t, 0, "a2 after Clear")
	if l := listAll(t, ctx, ib, a2, nil); len(l.Notifications) != 0 || l.UnreadCount != 0 {
		t.Errorf("a2's inbox after Clear = %v (unread %d), want empty", l.Notifications, l.UnreadCount)
	}
	if got := eventIDs(listAll(t, ctx, ib, a1, nil).Notifications); !slices.Equal(got, []string{own.EventId, second.EventId}) {
		t.Errorf("a1's inbox after a2's Clear = %v, want [%s %s]", got, own.EventId, second.EventId)
	}
	// A third admin who never touched anything sees all shared items unread.
	if l := listAll(t, ctx, ib, mint(t, adminID("a3")), nil); !slices.Equal(eventIDs(l.Notifications), []string{second.EventId, alert.EventId}) || l.UnreadCount != 2 {
		t.Errorf("a3's inbox %v (unread %d), want both shared items unread", eventIDs(l.Notifications), l.UnreadCount)
	}
}

// TestInboxPagingAndFilters pages 25 notifications and exercises the
// filters and every state change over gRPC.
func TestInboxPagingAndFilters(t *testing.T) {
	t.Parallel()
	scenarioPagingAndFilters(t, startNode(t, nil))
}

func scenarioPagingAndFilters(t *testing.T, n *testNode) {
	ctx := inboxCtx(t)
	c, ib := dialInbox(t, n.GRPCAddr())
	g1 := mint(t, guestClaims)
	tctx := withToken(ctx, g1)

	// 25 events, every fifth a CardCreated; newest first is reverse order.
	var published []string
	isCard := func(i int) bool { return i%5 == 4 }
	for i := range 25 {
		req := pointsReq(pointsAdded("g1", "r1", int64(i+1)))
		if isCard(i) {
			req = cardCreated("g1", "r1", int64(i+1))
		}
		published = append(published, publish(t, ctx, c, req).EventId)
	}
	newestFirst := slices.Clone(published)
	slices.Reverse(newestFirst)

	var all []*notifyv1.Notification
	token := ""
	var sizes []int
	for page := 0; ; page++ {
		if page > 5 {
			t.Fatal("more than 5 pages of 10 for 25 notifications")
		}
		resp, err := ib.ListNotifications(tctx, &notifyv1.ListNotificationsRequest{PageSize: 10, PageToken: token})
		if err != nil {
			t.Fatalf("page %d: %v", page, err)
		}
		if resp.UnreadCount != 25 {
			t.Errorf("page %d unread_count %d, want 25", page, resp.UnreadCount)
		}
		sizes = append(sizes, len(resp.Notifications))
		all = append(all, resp.Notifications...)
		if resp.NextPageToken == "" {
			break
		}
		token = resp.NextPageToken
	}
	if !slices.Equal(sizes, []int{10, 10, 5}) {
		t.Errorf("page sizes %v, want [10 10 5]", sizes)
	}
	if got := eventIDs(all); !slices.Equal(got, newestFirst) {
		t.Fatalf("paged events %v, want newest first %v (no gap, no duplicate)", got, newestFirst)
	}
	ids := notifIDs(all)
	if u := slices.Compact(slices.Sorted(slices.Values(ids))); len(u) != 25 {
		t.Errorf("notification ids %v are not 25 distinct ids", ids)
	}
	for i, nt := range all {
		wantType := notifyv1.EventType_EVENT_TYPE_POINTS_ADDED
		if isCard(24 - i) {
			wantType = notifyv1.EventType_EVENT_TYPE_CARD_CREATED
		}
		if nt.EventType != wantType || nt.Read {
			t.Errorf("notification %d: type %v read %v, want %v unread", i, nt.EventType, nt.Read, wantType)
		}
	}
	// The default page size is 50: 25 fit in one page, with no token.
	if resp, err := ib.ListNotifications(tctx, &notifyv1.ListNotificationsRequest{}); err != nil || len(resp.Notifications) != 25 || resp.NextPageToken != "" {
		t.Errorf("default page = %d notifications, token %q, err %v; want 25 and none", len(resp.GetNotifications()), resp.GetNextPageToken(), err)
	}

	// Read the three newest: ids[0] is a CardCreated, ids[1..2] PointsAdded.
	mr, err := ib.MarkRead(tctx, &notifyv1.MarkReadRequest{Ids: ids[:3]})
	if err != nil || mr.UnreadCount != 22 {
		t.Fatalf("MarkRead(3) = %v, %v; want unread 22", mr, err)
	}
	unread := listAll(t, ctx, ib, g1, &notifyv1.ListNotificationsRequest{UnreadOnly: true})
	if got := notifIDs(unread.Notifications); !slices.Equal(got, ids[3:]) || unread.UnreadCount != 22 {
		t.Errorf("unread_only = %v (count %d), want %v", got, unread.UnreadCount, ids[3:])
	}
	for _, nt := range unread.Notifications {
		if nt.Read {
			t.Errorf("unread_only listed read notification %s", nt.Id)
		}
	}
	full := listAll(t, ctx, ib, g1, nil)
	for i, nt := range full.Notifications {
		if nt.Read != (i < 3) {
			t.Errorf("notification %d read=%v, want %v", i, nt.Read, i < 3)
		}
	}
	// unread_only pages too: 10, 10, 2.
	token, sizes = "", nil
	var pagedUnread []string
	for range 5 {
		resp, err := ib.ListNotifications(tctx, &notifyv1.ListNotificationsRequest{PageSize: 10, PageToken: token, UnreadOnly: true})
		if err != nil {
			t.Fatalf("unread_only page: %v", err)
		}
		sizes = append(sizes, len(resp.Notifications))
		pagedUnread = append(pagedUnread, notifIDs(resp.Notifications)...)
		if token = resp.NextPageToken; token == "" {
			break
		}
	}
	if !slices.Equal(sizes, []int{10, 10, 2}) || !slices.Equal(pagedUnread, ids[3:]) {
		t.Errorf("unread_only pages %v listing %v, want [10 10 2] listing %v", sizes, pagedUnread, ids[3:])
	}

	// Event type filters.
	cards := listAll(t, ctx, ib, g1, &notifyv1.ListNotificationsRequest{EventTypes: []notifyv1.EventType{notifyv1.EventType_EVENT_TYPE_CARD_CREATED}})
	var wantCards []string
	for i := 24; i >= 0; i-- {
		if isCard(i) {
			wantCards = append(wantCards, published[i])
		}
	}
	if got := eventIDs(cards.Notifications); !slices.Equal(got, wantCards) {
		t.Errorf("card_created filter = %v, want %v", got, wantCards)
	}
	for _, nt := range cards.Notifications {
		if nt.GetEvent().GetCardCreated() == nil {
			t.Errorf("card_created filter listed %v", nt)
		}
	}
	pa := listAll(t, ctx, ib, g1, &notifyv1.ListNotificationsRequest{UnreadOnly: true, EventTypes: []notifyv1.EventType{notifyv1.EventType_EVENT_TYPE_POINTS_ADDED}})
	if len(pa.Notifications) != 18 {
		t.Errorf("unread points_added = %d, want 18 (20 less the 2 read)", len(pa.Notifications))
	}
	both := listAll(t, ctx, ib, g1, &notifyv1.ListNotificationsRequest{EventTypes: []notifyv1.EventType{
		notifyv1.EventType_EVENT_TYPE_POINTS_ADDED, notifyv1.EventType_EVENT_TYPE_CARD_CREATED, notifyv1.EventType_EVENT_TYPE_CARD_CREATED,
	}})
	if len(both.Notifications) != 25 {
		t.Errorf("points_added+card_created = %d, want 25", len(both.Notifications))
	}
	if none := listAll(t, ctx, ib, g1, &notifyv1.ListNotificationsRequest{EventTypes: []notifyv1.EventType{notifyv1.EventType_EVENT_TYPE_SYSTEM_ALERT}}); len(none.Notifications) != 0 {
		t.Errorf("system_alert filter = %v, want nothing", none.Notifications)
	}
	// A filtered page walk: 20 points_added in pages of 7.
	token, sizes = "", nil
	for range 5 {
		resp, err := ib.ListNotifications(tctx, &notifyv1.ListNotificationsRequest{PageSize: 7, PageToken: token, EventTypes: []notifyv1.EventType{notifyv1.EventType_EVENT_TYPE_POINTS_ADDED}})
		if err != nil {
			t.Fatalf("points_added page: %v", err)
		}
		sizes = append(sizes, len(resp.Notifications))
		if token = resp.NextPageToken; token == "" {
			break
		}
	}
	if !slices.Equal(sizes, []int{7, 7, 6}) {
		t.Errorf("points_added pages of 7 = %v, want [7 7 6]", sizes)
	}

	// Mark unread, and read with a repeated id.
	mu, err := ib.MarkUnread(tctx, &notifyv1.MarkUnreadRequest{Ids: []string{ids[1]}})
	if err != nil || mu.UnreadCount != 23 {
		t.Errorf("MarkUnread = %v, %v; want unread 23", mu, err)
	}
	mu, err = ib.MarkUnread(tctx, &notifyv1.MarkUnreadRequest{Ids: []string{ids[1]}})
	if err != nil || mu.UnreadCount != 23 {
		t.Errorf("MarkUnread again = %v, %v; want unread still 23", mu, err)
	}
	mr, err = ib.MarkRead(tctx, &notifyv1.MarkReadRequest{Ids: []string{ids[5], ids[5]}})
	if err != nil || mr.UnreadCount != 22 {
		t.Errorf("MarkRead(repeated id) = %v, %v; want unread 22", mr, err)
	}
	if got := unreadCount(t, ctx, ib, g1); got != 22 {
		t.Errorf("GetUnreadCount = %d, want 22", got)
	}

	// Mark all read.
	ma, err := ib.MarkAllRead(tctx, &notifyv1.MarkAllReadRequest{})
	if err != nil || ma.Marked != 22 || ma.UnreadCount != 0 {
		t.Errorf("MarkAllRead = %v, %v; want 22 marked, unread 0", ma, err)
	}
	ma, err = ib.MarkAllRead(tctx, &notifyv1.MarkAllReadRequest{})
	if err != nil || ma.Marked != 0 || ma.UnreadCount != 0 {
		t.Errorf("second MarkAllRead = %v, %v; want 0 marked", ma, err)
	}
	if l := listAll(t, ctx, ib, g1, &notifyv1.ListNotificationsRequest{UnreadOnly: true}); len(l.Notifications) != 0 {
		t.Errorf("unread_only after MarkAllRead = %v, want nothing", l.Notifications)
	}

	// Delete.
	mu, err = ib.MarkUnread(tctx, &notifyv1.MarkUnreadRequest{Ids: []string{ids[0], ids[1]}})
	if err != nil || mu.UnreadCount != 2 {
		t.Errorf("MarkUnread(2) = %v, %v; want unread 2", mu, err)
	}
	dr, err := ib.DeleteNotification(tctx, &notifyv1.DeleteNotificationRequest{Id: ids[0]})
	if err != nil || dr.UnreadCount != 1 {
		t.Errorf("Delete(unread) = %v, %v; want unread 1", dr, err)
	}
	dr, err = ib.DeleteNotification(tctx, &notifyv1.DeleteNotificationRequest{Id: ids[10]})
	if err != nil || dr.UnreadCount != 1 {
		t.Errorf("Delete(read) = %v, %v; want unread 1", dr, err)
	}
	left := listAll(t, ctx, ib, g1, nil)
	wantLeft := slices.DeleteFunc(slices.Clone(ids), func(id string) bool { return id == ids[0] || id == ids[10] })
	if got := notifIDs(left.Notifications); !slices.Equal(got, wantLeft) || left.UnreadCount != 1 {
		t.Errorf("after deletes = %v (unread %d), want %v (unread 1)", got, left.UnreadCount, wantLeft)
	}
	_, err = ib.DeleteNotification(tctx, &notifyv1.DeleteNotificationRequest{Id: ids[0]})
	wantStatus(t, err, codes.NotFound, "Delete of a deleted notification", "no such notification")
	_, err = ib.MarkRead(tctx, &notifyv1.MarkReadRequest{Ids: []string{ids[0]}})
	wantStatus(t, err, codes.NotFound, "MarkRead of a deleted notification", "no such notification")

	// Clear.
	cl, err := ib.ClearNotifications(tctx, &notifyv1.ClearNotificationsRequest{})
	if err != nil || cl.Deleted != 23 {
		t.Errorf("Clear = %v, %v; want 23 deleted", cl, err)
	}
	if l := listAll(t, ctx, ib, g1, nil); len(l.Notifications) != 0 || l.UnreadCount != 0 {
		t.Errorf("after Clear = %v (unread %d), want empty", l.Notifications, l.UnreadCount)
	}
	if got := unreadCount(t, ctx, ib, g1); got != 0 {
		t.Errorf("GetUnreadCount after Clear = %d, want 0", got)
	}
	if cl, err := ib.ClearNotifications(tctx, &notifyv1.ClearNotificationsRequest{}); err != nil || cl.Deleted != 0 {
		t.Errorf("second Clear = %v, %v; want 0 deleted", cl, err)
	}
	// The inbox keeps working after a clear.
	fresh := publish(t, ctx, c, pointsReq(pointsAdded("g1", "r1", 99)))
	if l := listAll(t, ctx, ib, g1, nil); !slices.Equal(eventIDs(l.Notifications), []string{fresh.EventId}) || l.UnreadCount != 1 {
		t.Errorf("after a new publish = %v (unread %d), want [%s] unread", eventIDs(l.Notifications), l.UnreadCount, fresh.EventId)
	}
}

// TestInboxPreferences: defaults, mutes applied live to open and new
// streams while the inbox keeps everything, notifications off (counts still
// pushed), and the REST round trip.
func TestInboxPreferences(t *testing.T) {
	t.Parallel()
	scenarioPreferences(t, startNode(t, nil))
}

func scenarioPreferences(t *testing.T, n *testNode) {
	ctx := inboxCtx(t)
	base := "http://" + n.HTTPAddr()
	c, ib := dialInbox(t, n.GRPCAddr())
	g1 := mint(t, guestClaims)
	tctx := withToken(ctx, g1)
	defaults := &notifyv1.Preferences{Enabled: true, Sound: true, Email: false}

	gp, err := ib.GetPreferences(tctx, &notifyv1.GetPreferencesRequest{})
	if err != nil || !proto.Equal(gp.Preferences, defaults) {
		t.Fatalf("default preferences = %v, %v; want %v", gp, err, defaults)
	}
	var rp notifyv1.GetPreferencesResponse
	if restOK(t, restDo(t, ctx, http.MethodGet, base+"/v1/inbox/preferences", g1, ""), "GET /v1/inbox/preferences", &rp) && !proto.Equal(rp.Preferences, defaults) {
		t.Errorf("REST default preferences = %v, want %v", rp.Preferences, defaults)
	}

	open, _ := subscribe(t, ctx, c, g1, &notifyv1.SubscribeRequest{})
	if got := open.firstUnread(t); got != 0 {
		t.Fatalf("initial unread %d, want 0", got)
	}

	// Mute PointsAdded (named twice): the open stream drops them at once.
	muted := &notifyv1.Preferences{Enabled: true, Sound: true, MutedTypes: []notifyv1.EventType{
		notifyv1.EventType_EVENT_TYPE_POINTS_ADDED, notifyv1.EventType_EVENT_TYPE_POINTS_ADDED,
	}}
	up, err := ib.UpdatePreferences(tctx, &notifyv1.UpdatePreferencesRequest{Preferences: muted})
	wantMuted := &notifyv1.Preferences{Enabled: true, Sound: true, MutedTypes: []notifyv1.EventType{notifyv1.EventType_EVENT_TYPE_POINTS_ADDED}}
	if err != nil || !proto.Equal(up.Preferences, wantMuted) {
		t.Fatalf("UpdatePreferences = %v, %v; want %v", up, err, wantMuted)
	}
	if gp, err := ib.GetPreferences(tctx, &notifyv1.GetPreferencesRequest{}); err != nil || !proto.Equal(gp.Preferences, wantMuted) {
		t.Errorf("GetPreferences after update = %v, %v; want %v", gp, err, wantMuted)
	}
	// A stream opened now starts muted.
	later, _ := subscribe(t, ctx, c, g1, &notifyv1.SubscribeRequest{})
	later.firstUnread(t)

	pa := publish(t, ctx, c, pointsReq(pointsAdded("g1", "r1", 1)))
	cc := publish(t, ctx, c, cardCreated("g1", "r1", 2))
	for name, s := range map[string]*stream{"open stream": open, "new stream": later} {
		if ev := s.next(t); ev.Id != cc.EventId || ev.GetCardCreated() == nil {
			t.Errorf("%s: first event %v, want the CardCreated %s (PointsAdded %s muted)", name, ev, cc.EventId, pa.EventId)
		}
		s.awaitUnread(t, 2, name+": muted events still count")
	}
	inbox := listAll(t, ctx, ib, g1, nil)
	if got := eventIDs(inbox.Notifications); !slices.Equal(got, []string{cc.EventId, pa.EventId}) || inbox.UnreadCount != 2 {
		t.Errorf("inbox %v (unread %d), want [%s %s] with the muted one kept", got, inbox.UnreadCount, cc.EventId, pa.EventId)
	}

	// Notifications off: nothing pushed live, unread counts still are.
	off := &notifyv1.Preferences{Enabled: false, Sound: true}
	if up, err := ib.UpdatePreferences(tctx, &notifyv1.UpdatePreferencesRequest{Preferences: off}); err != nil || !proto.Equal(up.Preferences, off) {
		t.Fatalf("UpdatePreferences(off) = %v, %v", up, err)
	}
	publish(t, ctx, c, cardCreated("g1", "r1", 3))
	publish(t, ctx, c, pointsReq(pointsAdded("g1", "r1", 4)))
	for name, s := range map[string]*stream{"open stream": open, "new stream": later} {
		s.awaitUnread(t, 4, name+": counts while disabled")
		if len(s.pending) != 0 {
			t.Errorf("%s: got events %v while notifications were off", name, s.pending)
		}
	}
	// Back on with nothing muted: the next event delivered is a new one, so
	// nothing of the disabled period was queued.
	if _, err := ib.UpdatePreferences(tctx, &notifyv1.UpdatePreferencesRequest{Preferences: defaults}); err != nil {
		t.Fatalf("UpdatePreferences(defaults): %v", err)
	}
	marker := publish(t, ctx, c, pointsReq(pointsAdded("g1", "r1", 5)))
	for name, s := range map[string]*stream{"open stream": open, "new stream": later} {
		if ev := s.next(t); ev.Id != marker.EventId {
			t.Errorf("%s: event %v after re-enabling, want the new PointsAdded %s", name, ev, marker.EventId)
		}
	}
	if got := unreadCount(t, ctx, ib, g1); got != 5 {
		t.Errorf("unread %d, want all 5 kept", got)
	}

	// REST PUT/GET round trip; the mute applies to the open streams too.
	put := `{"preferences":{"enabled":true,"sound":false,"email":true,"mutedTypes":["EVENT_TYPE_SYSTEM_ALERT","EVENT_TYPE_CARD_CREATED"]}}`
	wantREST := &notifyv1.Preferences{Enabled: true, Sound: false, Email: true, MutedTypes: []notifyv1.EventType{
		notifyv1.EventType_EVENT_TYPE_CARD_CREATED, notifyv1.EventType_EVENT_TYPE_SYSTEM_ALERT,
	}}
	var pr notifyv1.UpdatePreferencesResponse
	if restOK(t, restDo(t, ctx, http.MethodPut, base+"/v1/inbox/preferences", g1, put), "PUT /v1/inbox/preferences", &pr) {
		if !proto.Equal(pr.Preferences, wantREST) {
			t.Errorf("PUT response %v, want %v", pr.Preferences, wantREST)
		}
	} else if _, err := ib.UpdatePreferences(tctx, &notifyv1.UpdatePreferencesRequest{Preferences: wantREST}); err != nil {
		// Go on over gRPC, to check the rest of the scenario.
		t.Fatalf("UpdatePreferences: %v", err)
	}
	rp = notifyv1.GetPreferencesResponse{}
	if restOK(t, restDo(t, ctx, http.MethodGet, base+"/v1/inbox/preferences", g1, ""), "GET /v1/inbox/preferences", &rp) && !proto.Equal(rp.Preferences, wantREST) {
		t.Errorf("REST GET after PUT = %v, want %v", rp.Preferences, wantREST)
	}
	if gp, err := ib.GetPreferences(tctx, &notifyv1.GetPreferencesRequest{}); err != nil || !proto.Equal(gp.Preferences, wantREST) {
		t.Errorf("gRPC GetPreferences after REST PUT = %v, %v; want %v", gp, err, wantREST)
	}
	publish(t, ctx, c, cardCreated("g1", "r1", 6))
	pa2 := publish(t, ctx, c, pointsReq(pointsAdded("g1", "r1", 7)))
	if ev := open.next(t); ev.Id != pa2.EventId {
		t.Errorf("after muting CardCreated over REST, event %v, want the PointsAdded %s", ev, pa2.EventId)
	}
	// Preferences are per user.
	if gp, err := ib.GetPreferences(withToken(ctx, mint(t, guestID("g2"))), &notifyv1.GetPreferencesRequest{}); err != nil || !proto.Equal(gp.Preferences, defaults) {
		t.Errorf("g2's preferences = %v, %v; want the defaults", gp, err)
	}
}

// TestInboxBadInput: every malformed inbox request is a 4xx with a clear
// message, over gRPC and REST, and changes nothing.
func TestInboxBadInput(t *testing.T) {
	t.Parallel()
	scenarioBadInput(t, startNode(t, nil))
}

func scenarioBadInput(t *testing.T, n *testNode) {
	ctx := inboxCtx(t)
	base := "http://" + n.HTTPAddr()
	c, ib := dialInbox(t, n.GRPCAddr())
	g1 := mint(t, guestClaims)
	tctx := withToken(ctx, g1)
	publish(t, ctx, c, pointsReq(pointsAdded("g1", "r1", 1)))
	before := listAll(t, ctx, ib, g1, nil)

	many := make([]string, 1001)
	for i := range many {
		many[i] = strconv.Itoa(900000 + i)
	}
	const inv, nf = codes.InvalidArgument, codes.NotFound

	grpcCases := []struct {
		name string
		call func() error
		code codes.Code
		msg  []string
	}{
		{"MarkRead unknown id", func() error {
			_, err := ib.MarkRead(tctx, &notifyv1.MarkReadRequest{Ids: []string{"999999"}})
			return err
		}, nf, []string{"no such notification"}},
		{"MarkRead largest id", func() error {
			_, err := ib.MarkRead(tctx, &notifyv1.MarkReadRequest{Ids: []string{"9223372036854775807"}})
			return err
		}, nf, nil},
		{"Delete unknown id", func() error {
			_, err := ib.DeleteNotification(tctx, &notifyv1.DeleteNotificationRequest{Id: "999999"})
			return err
		}, nf, []string{"no such notification"}},
		{"MarkRead malformed id", func() error {
			_, err := ib.MarkRead(tctx, &notifyv1.MarkReadRequest{Ids: []string{"abc"}})
			return err
		}, inv, []string{"ids", `"abc"`, "malformed"}},
		{"MarkUnread malformed id", func() error {
			_, err := ib.MarkUnread(tctx, &notifyv1.MarkUnreadRequest{Ids: []string{"abc"}})
			return err
		}, inv, []string{"ids", "malformed"}},
		{"MarkRead zero id", func() error {
			_, err := ib.MarkRead(tctx, &notifyv1.MarkReadRequest{Ids: []string{"0"}})
			return err
		}, inv, []string{"malformed"}},
		{"MarkRead negative id", func() error {
			_, err := ib.MarkRead(tctx, &notifyv1.MarkReadRequest{Ids: []string{"-1"}})
			return err
		}, inv, []string{"malformed"}},
		{"MarkRead id past int64", func() error {
			_, err := ib.MarkRead(tctx, &notifyv1.MarkReadRequest{Ids: []string{"9223372036854775808"}})
			return err
		}, inv, []string{"ids"}},
		{"Delete malformed id", func() error {
			_, err := ib.DeleteNotification(tctx, &notifyv1.DeleteNotificationRequest{Id: "abc"})
			return err
		}, inv, []string{"id", "malformed"}},
		{"Delete empty id", func() error {
			_, err := ib.DeleteNotification(tctx, &notifyv1.DeleteNotificationRequest{})
			return err
		}, inv, []string{"id"}},
		{"List bad page token", func() error {
			_, err := ib.ListNotifications(tctx, &notifyv1.ListNotificationsRequest{PageToken: "!!!"})
			return err
		}, inv, []string{"page_token"}},
		{"List forged page token", func() error {
			_, err := ib.ListNotifications(tctx, &notifyv1.ListNotificationsRequest{PageToken: "MDAx"}) // base64url("001")
			return err
		}, inv, []string{"page_token"}},
		{"List page_size 500", func() error {
			_, err := ib.ListNotifications(tctx, &notifyv1.ListNotificationsRequest{PageSize: 500})
			return err
		}, inv, []string{"page_size", "500"}},
		{"List page_size 201", func() error {
			_, err := ib.ListNotifications(tctx, &notifyv1.ListNotificationsRequest{PageSize: 201})
			return err
		}, inv, []string{"page_size"}},
		{"List page_size -1", func() error {
			_, err := ib.ListNotifications(tctx, &notifyv1.ListNotificationsRequest{PageSize: -1})
			return err
		}, inv, []string{"page_size"}},
		{"MarkRead no ids", func() error {
			_, err := ib.MarkRead(tctx, &notifyv1.MarkReadRequest{})
			return err
		}, inv, []string{"ids"}},
		{"MarkUnread no ids", func() error {
			_, err := ib.MarkUnread(tctx, &notifyv1.MarkUnreadRequest{})
			return err
		}, inv, []string{"ids"}},
		{"MarkRead 1001 ids", func() error {
			_, err := ib.MarkRead(tctx, &notifyv1.MarkReadRequest{Ids: many})
			return err
		}, inv, []string{"ids", "1000"}},
		{"MarkRead 1000 unknown ids", func() error {
			_, err := ib.MarkRead(tctx, &notifyv1.MarkReadRequest{Ids: many[:1000]})
			return err
		}, nf, nil},
		{"List unknown event type", func() error {
			_, err := ib.ListNotifications(tctx, &notifyv1.ListNotificationsRequest{EventTypes: []notifyv1.EventType{99}})
			return err
		}, inv, []string{"event_types", "99"}},
		{"List unspecified event type", func() error {
			_, err := ib.ListNotifications(tctx, &notifyv1.ListNotificationsRequest{EventTypes: []notifyv1.EventType{0}})
			return err
		}, inv, []string{"event_types"}},
		{"Mute unknown event type", func() error {
			_, err := ib.UpdatePreferences(tctx, &notifyv1.UpdatePreferencesRequest{Preferences: &notifyv1.Preferences{Enabled: true, MutedTypes: []notifyv1.EventType{99}}})
			return err
		}, inv, []string{"muted_types", "99"}},
		{"UpdatePreferences without preferences", func() error {
			_, err := ib.UpdatePreferences(tctx, &notifyv1.UpdatePreferencesRequest{})
			return err
		}, inv, []string{"preferences"}},
		{"List without a token", func() error {
			_, err := ib.ListNotifications(ctx, &notifyv1.ListNotificationsRequest{})
			return err
		}, codes.Unauthenticated, nil},
	}
	for _, tc := range grpcCases {
		wantStatus(t, tc.call(), tc.code, "gRPC "+tc.name, tc.msg...)
	}

	body1001 := idsJSON(many...)
	restCases := []struct {
		name, method, path, body string
		status                   int
		code                     codes.Code
		msg                      []string
	}{
		{"DELETE unknown id", http.MethodDelete, "/v1/inbox/notifications/999999", "", 404, nf, []string{"no such notification"}},
		{"markRead unknown id", http.MethodPost, "/v1/inbox/notifications:markRead", idsJSON("999999"), 404, nf, []string{"no such notification"}},
		{"DELETE malformed id", http.MethodDelete, "/v1/inbox/notifications/abc", "", 400, inv, []string{"malformed"}},
		{"markRead malformed id", http.MethodPost, "/v1/inbox/notifications:markRead", idsJSON("abc"), 400, inv, []string{"malformed"}},
		{"markRead no ids", http.MethodPost, "/v1/inbox/notifications:markRead", `{"ids":[]}`, 400, inv, []string{"ids"}},
		{"markRead empty body", http.MethodPost, "/v1/inbox/notifications:markRead", `{}`, 400, inv, []string{"ids"}},
		{"markUnread 1001 ids", http.MethodPost, "/v1/inbox/notifications:markUnread", body1001, 400, inv, []string{"ids"}},
		{"bad page token", http.MethodGet, "/v1/inbox/notifications?page_token=" + url.QueryEscape("!!!"), "", 400, inv, []string{"page_token"}},
		{"page_size 500", http.MethodGet, "/v1/inbox/notifications?page_size=500", "", 400, inv, []string{"page_size"}},
		{"page_size not a number", http.MethodGet, "/v1/inbox/notifications?page_size=ten", "", 400, inv, nil},
		{"unknown event type number", http.MethodGet, "/v1/inbox/notifications?event_types=99", "", 400, inv, nil},
		{"unknown event type name", http.MethodGet, "/v1/inbox/notifications?event_types=EVENT_TYPE_NOPE", "", 400, inv, nil},
		{"unspecified event type", http.MethodGet, "/v1/inbox/notifications?event_types=EVENT_TYPE_UNSPECIFIED", "", 400, inv, []string{"event_types"}},
		{"mute unknown event type", http.MethodPut, "/v1/inbox/preferences", `{"preferences":{"enabled":true,"mutedTypes":[99]}}`, 400, inv, nil},
		{"preferences missing", http.MethodPut, "/v1/inbox/preferences", `{}`, 400, inv, []string{"preferences"}},
		{"malformed JSON", http.MethodPost, "/v1/inbox/notifications:markRead", `{"ids":`, 400, inv, nil},
	}
	for _, tc := range restCases {
		r := restDo(t, ctx, tc.method, base+tc.path, g1, tc.body)
		wantREST(t, r, tc.status, tc.code, "REST "+tc.name, tc.msg...)
	}
	// Without a token: 401.
	wantREST(t, restDo(t, ctx, http.MethodGet, base+"/v1/inbox/notifications", "", ""), 401, codes.Unauthenticated, "REST list without a token")

	after := listAll(t, ctx, ib, g1, nil)
	if !proto.Equal(after, before) {
		t.Errorf("inbox after bad requests = %v, want unchanged %v", after, before)
	}
	if gp, err := ib.GetPreferences(tctx, &notifyv1.GetPreferencesRequest{}); err != nil || len(gp.Preferences.MutedTypes) != 0 || !gp.Preferences.Enabled {
		t.Errorf("preferences after bad updates = %v, %v; want the defaults", gp, err)
	}
}

// TestInboxDurableAcrossRestart: the inbox, its read and deleted state and
// the preferences survive a node restart on the same data directory.
func TestInboxDurableAcrossRestart(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	scenarioRestart(t, func(c *node.Config) { c.DataDir = dir })
}

// scenarioRestart fills an inbox on one node, stops it, and checks a second
// node on the same store (as mutate sets it) sees the same inbox.
func scenarioRestart(t *testing.T, mutate func(*node.Config)) {
	ctx := inboxCtx(t)
	g1, a1, a2 := mint(t, guestClaims), mint(t, adminID("a1")), mint(t, adminID("a2"))

	n1 := startNode(t, mutate)
	c, ib := dialInbox(t, n1.GRPCAddr())
	var pubs []string
	for i := range 3 {
		pubs = append(pubs, publish(t, ctx, c, pointsReq(pointsAdded("g1", "r1", int64(i+1)))).EventId)
	}
	alert := publish(t, ctx, c, systemAlert("restart")).EventId
	l := listAll(t, ctx, ib, g1, nil)
	if len(l.Notifications) != 3 {
		t.Fatalf("g1 has %d notifications before the restart, want 3", len(l.Notifications))
	}
	ids := notifIDs(l.Notifications) // newest first: pubs[2], pubs[1], pubs[0]
	if _, err := ib.MarkRead(withToken(ctx, g1), &notifyv1.MarkReadRequest{Ids: []string{ids[1]}}); err != nil {
		t.Fatalf("MarkRead: %v", err)
	}
	if _, err := ib.DeleteNotification(withToken(ctx, g1), &notifyv1.DeleteNotificationRequest{Id: ids[2]}); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	if _, err := ib.MarkAllRead(withToken(ctx, a1), &notifyv1.MarkAllReadRequest{}); err != nil {
		t.Fatalf("a1 MarkAllRead: %v", err)
	}
	prefs := &notifyv1.Preferences{Enabled: true, Sound: false, Email: true, MutedTypes: []notifyv1.EventType{notifyv1.EventType_EVENT_TYPE_CARD_CREATED}}
	if _, err := ib.UpdatePreferences(withToken(ctx, g1), &notifyv1.UpdatePreferencesRequest{Preferences: prefs}); err != nil {
		t.Fatalf("UpdatePreferences: %v", err)
	}
	want := listAll(t, ctx, ib, g1, nil)
	if err := n1.stop(); err != nil {
		t.Fatalf("stopping the first node: %v", err)
	}

	n2 := startNode(t, mutate)
	c2, ib2 := dialInbox(t, n2.GRPCAddr())
	got := listAll(t, ctx, ib2, g1, nil)
	if !proto.Equal(got, want) {
		t.Errorf("g1's inbox after restart = %v, want %v", got, want)
	}
	if gotIDs := eventIDs(got.Notifications); !slices.Equal(gotIDs, []string{pubs[2], pubs[1]}) || got.UnreadCount != 1 {
		t.Errorf("after restart g1 has events %v (unread %d), want [%s %s] (unread 1)", gotIDs, got.UnreadCount, pubs[2], pubs[1])
	}
	if gp, err := ib2.GetPreferences(withToken(ctx, g1), &notifyv1.GetPreferencesRequest{}); err != nil || !proto.Equal(gp.Preferences, prefs) {
		t.Errorf("preferences after restart = %v, %v; want %v", gp, err, prefs)
	}
	if l := listAll(t, ctx, ib2, a1, nil); !slices.Equal(eventIDs(l.Notifications), []string{alert}) || !l.Notifications[0].Read {
		t.Errorf("a1 after restart = %v, want the alert, read", l.Notifications)
	}
	if l := listAll(t, ctx, ib2, a2, nil); !slices.Equal(eventIDs(l.Notifications), []string{alert}) || l.Notifications[0].Read {
		t.Errorf("a2 after restart = %v, want the alert, unread", l.Notifications)
	}
	s, _ := subscribe(t, ctx, c2, g1, &notifyv1.SubscribeRequest{})
	if u := s.firstUnread(t); u != 1 {
		t.Errorf("initial unread after restart = %d, want 1", u)
	}
	// New notifications go on top of the old ones.
	fresh := publish(t, ctx, c2, pointsReq(pointsAdded("g1", "r1", 4)))
	if gotIDs := eventIDs(listAll(t, ctx, ib2, g1, nil).Notifications); !slices.Equal(gotIDs, []string{fresh.EventId, pubs[2], pubs[1]}) {
		t.Errorf("after a new publish = %v, want [%s %s %s]", gotIDs, fresh.EventId, pubs[2], pubs[1])
	}
	s.awaitUnread(t, 2, "after a publish on the new node")
}

// ---- PostgreSQL ----

// postgresStore returns a DSN for a fresh schema of the server named by
// NOTIFY_TEST_POSTGRES_DSN, dropped when the test ends. Without the
// variable the test is skipped, except in CI (CI=true) where it fails.
func postgresStore(t *testing.T) string {
	t.Helper()
	dsn := os.Getenv("NOTIFY_TEST_POSTGRES_DSN")
	if dsn == "" {
		if os.Getenv("CI") == "true" {
			t.Fatal("NOTIFY_TEST_POSTGRES_DSN is required in CI")
		}
		t.Skip("NOTIFY_TEST_POSTGRES_DSN is not set")
	}
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	schema := "notify_node_test_" + hex.EncodeToString(b[:])
	exec := func(ctx context.Context, sql string) error {
		conn, err := pgx.Connect(ctx, dsn)
		if err != nil {
			return err
		}
		defer conn.Close(ctx)
		_, err = conn.Exec(ctx, sql)
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	if err := exec(ctx, "CREATE SCHEMA "+pgx.Identifier{schema}.Sanitize()); err != nil {
		t.Fatalf("create schema: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := exec(ctx, "DROP SCHEMA "+pgx.Identifier{schema}.Sanitize()+" CASCADE"); err != nil {
			t.Errorf("drop schema %s: %v", schema, err)
		}
	})
	u, err := url.Parse(dsn)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		// A key=value DSN.
		return dsn + " search_path=" + schema
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String()
}

// TestInboxPostgres runs the inbox scenarios, and a restart, with
// PostgreSQL as the node's store.
func TestInboxPostgres(t *testing.T) {
	t.Parallel()
	for _, sc := range inboxScenarios {
		t.Run(sc.name, func(t *testing.T) {
			t.Parallel()
			dsn := postgresStore(t)
			sc.run(t, startNode(t, func(c *node.Config) { c.Store = dsn }))
		})
	}
	t.Run("Restart", func(t *testing.T) {
		t.Parallel()
		dsn := postgresStore(t)
		scenarioRestart(t, func(c *node.Config) { c.Store = dsn })
	})
	t.Run("NoDataDirFile", func(t *testing.T) {
		t.Parallel()
		// With a DSN, the node keeps nothing in its data directory.
		dsn := postgresStore(t)
		dir := t.TempDir()
		n := startNode(t, func(c *node.Config) { c.Store = dsn; c.DataDir = dir })
		ctx := inboxCtx(t)
		c, ib := dialInbox(t, n.GRPCAddr())
		pub := publish(t, ctx, c, pointsReq(pointsAdded("g1", "r1", 1)))
		if got := eventIDs(listAll(t, ctx, ib, mint(t, guestClaims), nil).Notifications); !slices.Equal(got, []string{pub.EventId}) {
			t.Errorf("inbox %v, want [%s]", got, pub.EventId)
		}
		if entries, err := os.ReadDir(dir); err != nil || len(entries) != 0 {
			t.Errorf("data dir holds %v (%v), want nothing with a PostgreSQL store", entries, err)
		}
	})
}
