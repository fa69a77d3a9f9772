package node_test

// End-to-end tests of the durable inbox (InboxService, the stream's unread
// count, mutes) over real sockets on 127.0.0.1, on the embedded SQLite
// store and, when NOTIFY_TEST_POSTGRES_DSN is set, on PostgreSQL.

import (
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	notifyv1 "github.com/maxloyalty/notify/gen/notify/v1"
	"github.com/maxloyalty/notify/internal/auth"
)

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
