package node_test

// End-to-end tests of the inbox states (seen, read, archived, snoozed),
// bulk actions, the publisher's inbox options, expiry and calls on behalf
// of a user, over real sockets on 127.0.0.1, through native gRPC, REST and
// grpc-web, on the embedded SQLite store and on PostgreSQL.

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	notifyv1 "github.com/maxloyalty/notify/gen/notify/v1"
	"github.com/maxloyalty/notify/internal/node"
	"github.com/maxloyalty/notify/internal/testenv"
)

var (
	inboxState    = notifyv1.NotificationState_NOTIFICATION_STATE_INBOX
	archivedState = notifyv1.NotificationState_NOTIFICATION_STATE_ARCHIVED
	snoozedState  = notifyv1.NotificationState_NOTIFICATION_STATE_SNOOZED
	allState      = notifyv1.NotificationState_NOTIFICATION_STATE_ALL
)

// statesScenarios run on SQLite (each its own test) and on PostgreSQL
// (TestInboxStatesPostgres), each on a node of its own.
var statesScenarios = []struct {
	name string
	run  func(t *testing.T, n *testNode)
}{
	{"SnoozeReturns", scenarioSnoozeReturns},
	{"TwoClientsCounts", scenarioTwoClientsCounts},
	{"OnBehalf", scenarioOnBehalf},
	{"PublishOptionsAndExpiry", scenarioPublishOptionsAndExpiry},
	{"StatesBadInput", scenarioStatesBadInput},
}

// TestInboxSnoozeReturns: through each door, a notification snoozed for
// two seconds leaves the inbox, comes back unseen and unread at its end,
// and is announced on the user's stream of that door.
func TestInboxSnoozeReturns(t *testing.T) {
	t.Parallel()
	scenarioSnoozeReturns(t, startNode(t, nil))
}

func scenarioSnoozeReturns(t *testing.T, n *testNode) {
	for _, d := range doors(t, n) {
		t.Run(d.name, func(t *testing.T) {
			t.Parallel()
			snoozeThrough(t, n, d, "snz-"+strings.ReplaceAll(d.name, "-", ""))
		})
	}
}

func snoozeThrough(t *testing.T, n *testNode, d door, guest string) {
	ctx := inboxCtx(t)
	c := dial(t, n.GRPCAddr())
	tok := mint(t, guestID(guest))
	evA := publish(t, ctx, c, pointsReq(pointsAdded(guest, "r1", 1))).EventId
	publish(t, ctx, c, pointsReq(pointsAdded(guest, "r1", 2)))
	l := openLive(t, ctx, d, tok)
	l.awaitCounts(t, 2, 2)

	list := callOK(t, ctx, d, tok, "ListNotifications", &notifyv1.ListNotificationsRequest{}, &notifyv1.ListNotificationsResponse{})
	if len(list.Notifications) != 2 {
		t.Fatalf("inbox %v, want 2 notifications", eventIDs(list.Notifications))
	}
	idB, idA := list.Notifications[0].Id, list.Notifications[1].Id
	if list.Notifications[1].Event.GetId() != evA || list.Counts.GetUnseen() != 2 || list.Counts.GetInbox() != 2 {
		t.Fatalf("inbox %v, counts %v", eventIDs(list.Notifications), list.Counts)
	}
	// The list was shown: both seen.
	seen := callOK(t, ctx, d, tok, "MarkSeen", &notifyv1.MarkSeenRequest{Ids: []string{idA, idB}}, &notifyv1.MarkSeenResponse{})
	if seen.Counts.GetUnseen() != 0 || seen.Counts.GetUnread() != 2 {
		t.Fatalf("MarkSeen counts %v", seen.Counts)
	}
	l.awaitCounts(t, 2, 0)

	snoozed := callOK(t, ctx, d, tok, "Snooze", &notifyv1.SnoozeRequest{Ids: []string{idA}, Duration: durationpb.New(2 * time.Second)}, &notifyv1.SnoozeResponse{})
	until := snoozed.Until.AsTime()
	if c := snoozed.Counts; c.GetSnoozed() != 1 || c.GetInbox() != 1 || c.GetUnread() != 1 || c.GetUnseen() != 0 {
		t.Fatalf("Snooze counts %v", c)
	}
	if got := listIDs(t, ctx, d, tok, inboxState); !slices.Equal(got, []string{idB}) {
		t.Errorf("inbox while snoozed %v, want only %s", got, idB)
	}
	sl := callOK(t, ctx, d, tok, "ListNotifications", &notifyv1.ListNotificationsRequest{State: snoozedState}, &notifyv1.ListNotificationsResponse{})
	if len(sl.Notifications) != 1 || sl.Notifications[0].Id != idA || !sl.Notifications[0].SnoozeUntil.AsTime().Equal(until) {
		t.Errorf("snoozed list %v, want %s until %v", sl.Notifications, idA, until)
	}
	l.awaitCounts(t, 1, 0)

	back := l.await(t, "notification "+idA+" back from snooze", func(u *notifyv1.UnreadCount) bool {
		return slices.ContainsFunc(u.Returned, func(r *notifyv1.ReturnedNotification) bool { return r.Id == idA })
	})
	if now := time.Now(); now.Before(until) {
		t.Errorf("announced at %v, before the snooze's end %v", now, until)
	}
	if back.Count != 2 || back.Unseen != 1 {
		t.Errorf("counts with the return: unread %d, unseen %d; want 2 and 1", back.Count, back.Unseen)
	}
	r := back.Returned[slices.IndexFunc(back.Returned, func(r *notifyv1.ReturnedNotification) bool { return r.Id == idA })]
	if r.Event.GetId() != evA || r.Event.GetPointsAdded().GetAmount() != 1 || !r.SnoozeUntil.AsTime().Equal(until) {
		t.Errorf("returned %v, want event %s until %v", r, evA, until)
	}
	list = callOK(t, ctx, d, tok, "ListNotifications", &notifyv1.ListNotificationsRequest{}, &notifyv1.ListNotificationsResponse{})
	if got := notifIDs(list.Notifications); !slices.Equal(got, []string{idB, idA}) {
		t.Fatalf("inbox after the snooze %v, want [%s %s]", got, idB, idA)
	}
	if a := list.Notifications[1]; a.Seen || a.Read || a.SnoozeUntil != nil || a.SeenTime != nil {
		t.Errorf("back from snooze: %v, want unseen and unread", a)
	}
	want := &notifyv1.InboxCounts{Unseen: 1, Unread: 2, Inbox: 2}
	if got := getCounts(t, ctx, d, tok, ""); !proto.Equal(got, want) {
		t.Errorf("GetCounts %v, want %v", got, want)
	}
	if got := inboxCounts(t, ctx, d, tok); !proto.Equal(got, want) {
		t.Errorf("counted from the lists %v, want %v", got, want)
	}
}

// TestInboxTwoClientsCounts: two clients of one user (REST and gRPC) act
// on the same notifications at the same time; the counts stay right, and
// the user's stream ends on them.
func TestInboxTwoClientsCounts(t *testing.T) {
	t.Parallel()
	scenarioTwoClientsCounts(t, startNode(t, nil))
}

func scenarioTwoClientsCounts(t *testing.T, n *testNode) {
	ctx := inboxCtx(t)
	c := dial(t, n.GRPCAddr())
	const guest, total = "two-clients", 24
	tok := mint(t, guestID(guest))
	for i := range total {
		publish(t, ctx, c, pointsReq(pointsAdded(guest, "r1", int64(i+1))))
	}
	ds := doors(t, n)
	grpcDoor := ds[0]
	l := openLive(t, ctx, grpcDoor, tok)
	l.awaitCounts(t, total, total)
	ids := listIDs(t, ctx, grpcDoor, tok, inboxState)
	if len(ids) != total {
		t.Fatalf("%d notifications, want %d", len(ids), total)
	}

	// Client A (REST) goes through the list one by one; client B (gRPC,
	// its own connection) works in bulk and undoes some of A's work.
	conn, err := grpc.NewClient("passthrough:///"+n.GRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ib := notifyv1.NewInboxServiceClient(conn)
	bctx := withToken(ctx, tok)
	base := "http://" + n.HTTPAddr()
	errs := make(chan error, 4*total)
	var wg sync.WaitGroup
	wg.Go(func() {
		hour := durationpb.New(time.Hour)
		for i, id := range ids {
			var method string
			var req proto.Message
			switch i % 4 {
			case 0:
				method, req = "MarkRead", &notifyv1.MarkReadRequest{Ids: []string{id}}
			case 1:
				method, req = "Archive", &notifyv1.ArchiveRequest{Ids: []string{id}}
			case 2:
				method, req = "MarkSeen", &notifyv1.MarkSeenRequest{Ids: []string{id}}
			case 3:
				method, req = "Snooze", &notifyv1.SnoozeRequest{Ids: []string{id}, Duration: hour}
			}
			if _, err := restInvoke(ctx, base, tok, method, req, newResponseOf(method)); err != nil {
				errs <- fmt.Errorf("client A %s(%s): %w", method, id, err)
			}
		}
	})
	wg.Go(func() {
		for i := range 8 {
			if _, err := ib.BulkUpdate(bctx, &notifyv1.BulkUpdateRequest{Action: notifyv1.InboxAction_INBOX_ACTION_SEEN}); err != nil {
				errs <- fmt.Errorf("client B all seen: %w", err)
			}
			if _, err := ib.BulkUpdate(bctx, &notifyv1.BulkUpdateRequest{
				Filter: &notifyv1.InboxFilter{State: notifyv1.NotificationState_NOTIFICATION_STATE_READ},
				Action: notifyv1.InboxAction_INBOX_ACTION_ARCHIVE,
			}); err != nil {
				errs <- fmt.Errorf("client B archive all read: %w", err)
			}
			if _, err := ib.MarkUnseen(bctx, &notifyv1.MarkUnseenRequest{Ids: []string{ids[3*i%total]}}); err != nil {
				errs <- fmt.Errorf("client B unseen: %w", err)
			}
			if _, err := ib.Unsnooze(bctx, &notifyv1.UnsnoozeRequest{Ids: []string{ids[(4*i+3)%total]}}); err != nil {
				errs <- fmt.Errorf("client B unsnooze: %w", err)
			}
		}
	})
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}

	final := getCounts(t, ctx, grpcDoor, tok, "")
	if listed := inboxCounts(t, ctx, grpcDoor, tok); !proto.Equal(final, listed) {
		t.Fatalf("GetCounts %v, but the lists say %v", final, listed)
	}
	if final.Inbox+final.Archived+final.Snoozed != total {
		t.Fatalf("counts %v do not add up to %d", final, total)
	}
	if u := callOK(t, ctx, grpcDoor, tok, "GetUnreadCount", &notifyv1.GetUnreadCountRequest{}, &notifyv1.GetUnreadCountResponse{}); u.UnreadCount != final.Unread {
		t.Errorf("GetUnreadCount %d, GetCounts says %d", u.UnreadCount, final.Unread)
	}
	// The stream's last counts are the final ones.
	l.awaitCounts(t, final.Unread, final.Unseen)
	for _, d := range ds {
		if got := getCounts(t, ctx, d, tok, ""); !proto.Equal(got, final) {
			t.Errorf("%s GetCounts %v, want %v", d.name, got, final)
		}
	}
}

// newResponseOf is the empty response of an InboxService method, for
// goroutines (which cannot stop the test).
func newResponseOf(method string) proto.Message {
	switch method {
	case "MarkRead":
		return &notifyv1.MarkReadResponse{}
	case "Archive":
		return &notifyv1.ArchiveResponse{}
	case "MarkSeen":
		return &notifyv1.MarkSeenResponse{}
	case "Snooze":
		return &notifyv1.SnoozeResponse{}
	}
	panic("no response type for " + method)
}

// TestInboxOnBehalf: a service does a user's actions on the user's behalf
// through every door, and the user's stream sees the counts change; an
// admin acts on another admin's view of the admin inbox only; nobody else
// acts for anyone.
func TestInboxOnBehalf(t *testing.T) {
	t.Parallel()
	scenarioOnBehalf(t, startNode(t, nil))
}

func scenarioOnBehalf(t *testing.T, n *testNode) {
	ctx := inboxCtx(t)
	c := dial(t, n.GRPCAddr())
	ds := doors(t, n)
	const guest = "obo-guest"
	tok, svc := mint(t, guestID(guest)), mint(t, serviceClaims)
	for i := range 3 {
		publish(t, ctx, c, pointsReq(pointsAdded(guest, "r1", int64(i+1))))
	}
	l := openLive(t, ctx, ds[0], tok)
	l.awaitCounts(t, 3, 3)
	ids := listIDs(t, ctx, ds[0], tok, inboxState)

	// The service archives one through REST, marks one seen through gRPC
	// and reads one through grpc-web: the guest's stream follows each.
	steps := []struct {
		d              door
		method         string
		req            proto.Message
		unread, unseen int64
	}{
		{ds[1], "Archive", &notifyv1.ArchiveRequest{Ids: ids[:1], UserId: guest}, 2, 2},
		{ds[0], "MarkSeen", &notifyv1.MarkSeenRequest{Ids: ids[1:2], UserId: guest}, 2, 1},
		{ds[2], "MarkRead", &notifyv1.MarkReadRequest{Ids: ids[2:3], UserId: guest}, 1, 0},
	}
	for _, s := range steps {
		callOK(t, ctx, s.d, svc, s.method, s.req, newResponse(t, s.method))
		l.awaitCounts(t, s.unread, s.unseen)
	}
	// Bulk, on behalf, through REST; the lists and counts on behalf are
	// the guest's own.
	bulk := callOK(t, ctx, ds[1], svc, "BulkUpdate", &notifyv1.BulkUpdateRequest{
		Filter: &notifyv1.InboxFilter{State: archivedState}, Action: notifyv1.InboxAction_INBOX_ACTION_UNARCHIVE, UserId: guest,
	}, &notifyv1.BulkUpdateResponse{})
	if bulk.Changed != 1 {
		t.Errorf("bulk unarchive on behalf changed %d, want 1", bulk.Changed)
	}
	l.awaitCounts(t, 2, 1)
	for _, d := range ds {
		onBehalf := callOK(t, ctx, d, svc, "ListNotifications", &notifyv1.ListNotificationsRequest{UserId: guest}, &notifyv1.ListNotificationsResponse{})
		own := callOK(t, ctx, d, tok, "ListNotifications", &notifyv1.ListNotificationsRequest{}, &notifyv1.ListNotificationsResponse{})
		if !proto.Equal(onBehalf, own) {
			t.Errorf("%s: the service's list for %s differs from the guest's own:\n%v\n%v", d.name, guest, onBehalf, own)
		}
	}

	// Nobody else acts for the guest; another user's id is not found.
	other := mint(t, guestID("obo-other"))
	staff := mint(t, restaurantClaims)
	for _, d := range ds {
		wantCall(t, ctx, d, other, "Archive", &notifyv1.ArchiveRequest{Ids: ids[:1], UserId: guest}, codes.PermissionDenied, "user_id")
		wantCall(t, ctx, d, staff, "ListNotifications", &notifyv1.ListNotificationsRequest{UserId: guest}, codes.PermissionDenied, "user_id")
		wantCall(t, ctx, d, svc, "Archive", &notifyv1.ArchiveRequest{Ids: ids[:1], UserId: "obo-other"}, codes.NotFound, "no such notification")
		wantCall(t, ctx, d, other, "Archive", &notifyv1.ArchiveRequest{Ids: ids[:1]}, codes.NotFound, "no such notification")
		wantCall(t, ctx, d, svc, "MarkSeen", &notifyv1.MarkSeenRequest{Ids: ids[:1], UserId: "not an id"}, codes.InvalidArgument, "user_id")
	}
	l.awaitCounts(t, 2, 1) // unchanged
	if got := getCounts(t, ctx, ds[0], tok, ""); got.Unread != 2 || got.Unseen != 1 {
		t.Errorf("after refused calls: %v", got)
	}

	// Admins: a1 acts for a2 in the admin inbox, never on a2's own
	// notifications; a2's stream follows, a1's counts do not move.
	a1, a2 := mint(t, adminID("obo-a1")), mint(t, adminID("obo-a2"))
	for _, title := range []string{"disk", "cpu"} {
		publish(t, ctx, c, systemAlert(title))
	}
	personal := publish(t, ctx, c, pointsReq(pointsAdded("obo-a2", "r1", 5), "user:obo-a2")).EventId
	la2 := openLive(t, ctx, ds[0], a2)
	la2.awaitCounts(t, 3, 3)
	la1 := openLive(t, ctx, ds[0], a1)
	la1.awaitCounts(t, 2, 2)
	a2list := callOK(t, ctx, ds[1], a1, "ListNotifications", &notifyv1.ListNotificationsRequest{UserId: "obo-a2", State: allState}, &notifyv1.ListNotificationsResponse{})
	if len(a2list.Notifications) != 2 || slices.Contains(eventIDs(a2list.Notifications), personal) {
		t.Fatalf("a1's list for a2: %v, want the 2 alerts only", eventIDs(a2list.Notifications))
	}
	callOK(t, ctx, ds[1], a1, "Archive", &notifyv1.ArchiveRequest{Ids: notifIDs(a2list.Notifications)[:1], UserId: "obo-a2"}, &notifyv1.ArchiveResponse{})
	la2.awaitCounts(t, 2, 2)
	personalID := ""
	for _, nt := range callOK(t, ctx, ds[0], a2, "ListNotifications", &notifyv1.ListNotificationsRequest{}, &notifyv1.ListNotificationsResponse{}).Notifications {
		if nt.Event.GetId() == personal {
			personalID = nt.Id
		}
	}
	wantCall(t, ctx, ds[0], a1, "MarkRead", &notifyv1.MarkReadRequest{Ids: []string{personalID}, UserId: "obo-a2"}, codes.NotFound, "no such notification")
	wantCall(t, ctx, ds[0], a1, "GetPreferences", &notifyv1.GetPreferencesRequest{UserId: "obo-a2"}, codes.PermissionDenied, "user_id")
	if got := getCounts(t, ctx, ds[0], a1, ""); got.Unread != 2 || got.Archived != 0 {
		t.Errorf("a1's own counts after acting for a2: %v", got)
	}
	if got := getCounts(t, ctx, ds[0], a2, ""); got.Unread != 2 || got.Archived != 1 {
		t.Errorf("a2's counts: %v", got)
	}
}

// TestInboxPublishOptionsAndExpiry: a publisher's priority, category,
// tags, action and expiry reach the inbox; filters and the priority order
// use them; an expired notification leaves the inbox and the stream's
// counts drop.
func TestInboxPublishOptionsAndExpiry(t *testing.T) {
	t.Parallel()
	scenarioPublishOptionsAndExpiry(t, startNode(t, nil))
}

func scenarioPublishOptionsAndExpiry(t *testing.T, n *testNode) {
	ctx := inboxCtx(t)
	c := dial(t, n.GRPCAddr())
	ds := doors(t, n)
	const guest = "opts-guest"
	tok, svc := mint(t, guestID(guest)), mint(t, serviceClaims)
	base := "http://" + n.HTTPAddr()
	plain := publish(t, ctx, c, pointsReq(pointsAdded(guest, "r1", 1))).EventId
	// Over REST, in JSON, as a backend would.
	body := `{"pointsAdded":{"guestId":"` + guest + `","cardId":"c1","amount":2,"newBalance":3,"restaurantId":"r1","transactionId":"t2"},` +
		`"inbox":{"priority":"PRIORITY_HIGH","category":"promo","tags":["summer","vip"],"ttl":"3600s",` +
		`"action":{"label":"Redeem","confirm":{"actionId":"a1","action":"ACTION_TYPE_POINTS_REDEEM","amount":"50","restaurantId":"r1"}}}}`
	r := restDo(t, ctx, http.MethodPost, base+"/v1/events", svc, body)
	var pub notifyv1.PublishResponse
	if !restOK(t, r, "POST /v1/events with inbox options", &pub) {
		t.FailNow()
	}
	linked := publishAs(t, ctx, c, svc, &notifyv1.PublishRequest{
		Payload: pointsReq(pointsAdded(guest, "r1", 3)).Payload,
		Inbox: &notifyv1.InboxOptions{Priority: notifyv1.Priority_PRIORITY_LOW, Category: "points", Action: &notifyv1.NotificationAction{
			Label: "Open", Target: &notifyv1.NotificationAction_Url{Url: "/cards/c1"},
		}},
	}).EventId

	for _, d := range ds {
		list := callOK(t, ctx, d, tok, "ListNotifications", &notifyv1.ListNotificationsRequest{Order: notifyv1.NotificationOrder_NOTIFICATION_ORDER_PRIORITY},
			&notifyv1.ListNotificationsResponse{})
		if got := eventIDs(list.Notifications); !slices.Equal(got, []string{pub.EventId, plain, linked}) {
			t.Fatalf("%s by priority: %v, want high, medium, low", d.name, got)
		}
		hi, mid, lo := list.Notifications[0], list.Notifications[1], list.Notifications[2]
		if hi.Priority != notifyv1.Priority_PRIORITY_HIGH || hi.Category != "promo" || !slices.Equal(hi.Tags, []string{"summer", "vip"}) ||
			hi.ExpireTime == nil || hi.Action.GetConfirm().GetAmount() != 50 || hi.Action.GetLabel() != "Redeem" {
			t.Errorf("%s: notification with options %v", d.name, hi)
		}
		if mid.Priority != notifyv1.Priority_PRIORITY_MEDIUM || mid.Category != "points" || mid.Tags != nil || mid.ExpireTime != nil || mid.Action != nil {
			t.Errorf("%s: notification without options %v", d.name, mid)
		}
		if lo.Action.GetUrl() != "/cards/c1" {
			t.Errorf("%s: action %v", d.name, lo.Action)
		}
		byCat := callOK(t, ctx, d, tok, "ListNotifications", &notifyv1.ListNotificationsRequest{Categories: []string{"promo"}}, &notifyv1.ListNotificationsResponse{})
		if got := eventIDs(byCat.Notifications); !slices.Equal(got, []string{pub.EventId}) {
			t.Errorf("%s by category: %v", d.name, got)
		}
		byPrio := callOK(t, ctx, d, tok, "ListNotifications", &notifyv1.ListNotificationsRequest{
			Priorities: []notifyv1.Priority{notifyv1.Priority_PRIORITY_LOW, notifyv1.Priority_PRIORITY_MEDIUM},
		}, &notifyv1.ListNotificationsResponse{})
		if got := eventIDs(byPrio.Notifications); !slices.Equal(got, []string{linked, plain}) {
			t.Errorf("%s by priority filter: %v", d.name, got)
		}
	}
	// Paging in priority order.
	p1 := callOK(t, ctx, ds[1], tok, "ListNotifications", &notifyv1.ListNotificationsRequest{PageSize: 2, Order: notifyv1.NotificationOrder_NOTIFICATION_ORDER_PRIORITY}, &notifyv1.ListNotificationsResponse{})
	p2 := callOK(t, ctx, ds[1], tok, "ListNotifications", &notifyv1.ListNotificationsRequest{PageSize: 2, PageToken: p1.NextPageToken,
		Order: notifyv1.NotificationOrder_NOTIFICATION_ORDER_PRIORITY}, &notifyv1.ListNotificationsResponse{})
	if got := append(eventIDs(p1.Notifications), eventIDs(p2.Notifications)...); !slices.Equal(got, []string{pub.EventId, plain, linked}) || p2.NextPageToken != "" {
		t.Errorf("paged by priority: %v", got)
	}
	wantCall(t, ctx, ds[0], tok, "ListNotifications", &notifyv1.ListNotificationsRequest{PageToken: p1.NextPageToken}, codes.InvalidArgument, "page_token")

	// An alert's level is its priority in the admin inbox.
	adm := mint(t, adminID("opts-admin"))
	for _, lvl := range []notifyv1.AlertLevel{notifyv1.AlertLevel_ALERT_LEVEL_INFO, notifyv1.AlertLevel_ALERT_LEVEL_CRITICAL} {
		req := systemAlert("level " + lvl.String())
		req.GetSystemAlert().Level = lvl
		publish(t, ctx, c, req)
	}
	al := callOK(t, ctx, ds[0], adm, "ListNotifications", &notifyv1.ListNotificationsRequest{Order: notifyv1.NotificationOrder_NOTIFICATION_ORDER_PRIORITY}, &notifyv1.ListNotificationsResponse{})
	if len(al.Notifications) != 2 || al.Notifications[0].Priority != notifyv1.Priority_PRIORITY_CRITICAL ||
		al.Notifications[1].Priority != notifyv1.Priority_PRIORITY_LOW || al.Notifications[0].Category != "alerts" {
		t.Errorf("admin inbox by priority: %v", al.Notifications)
	}

	// Bad options are refused, naming the field, over gRPC and REST.
	bad := &notifyv1.PublishRequest{Payload: pointsReq(pointsAdded(guest, "r1", 9)).Payload, Inbox: &notifyv1.InboxOptions{Category: "Promo!"}}
	_, err := c.Publish(withToken(ctx, svc), bad)
	wantStatus(t, err, codes.InvalidArgument, "publish with a bad category", "inbox.category")
	wantREST(t, restDo(t, ctx, http.MethodPost, base+"/v1/events", svc,
		`{"pointsAdded":{"guestId":"g","cardId":"c","amount":1,"newBalance":1,"restaurantId":"r1","transactionId":"t"},"inbox":{"action":{"label":"x","url":"javascript:alert(1)"}}}`),
		http.StatusBadRequest, codes.InvalidArgument, "REST publish with a javascript: link", "inbox.action.url")

	// Expiry: a notification that expires in 2 s is counted, then leaves,
	// and the stream's counts drop by themselves.
	l := openLive(t, ctx, ds[1], tok)
	l.awaitCounts(t, 3, 3)
	exp := publishAs(t, ctx, c, svc, &notifyv1.PublishRequest{Payload: pointsReq(pointsAdded(guest, "r1", 4)).Payload,
		Inbox: &notifyv1.InboxOptions{Ttl: durationpb.New(2 * time.Second)}}).EventId
	l.awaitCounts(t, 4, 4)
	var expireAt time.Time
	for _, nt := range callOK(t, ctx, ds[0], tok, "ListNotifications", &notifyv1.ListNotificationsRequest{}, &notifyv1.ListNotificationsResponse{}).Notifications {
		if nt.Event.GetId() == exp {
			expireAt = nt.ExpireTime.AsTime()
		}
	}
	if expireAt.IsZero() {
		t.Fatal("the expiring notification is not listed")
	}
	l.awaitCounts(t, 3, 3)
	if time.Now().Before(expireAt) {
		t.Errorf("counts dropped before the expiry %v", expireAt)
	}
	if got := eventIDs(callOK(t, ctx, ds[2], tok, "ListNotifications", &notifyv1.ListNotificationsRequest{State: allState}, &notifyv1.ListNotificationsResponse{}).Notifications); slices.Contains(got, exp) {
		t.Errorf("expired notification still listed: %v", got)
	}
}

// TestInboxStatesBadInput: every bad request gets InvalidArgument naming
// its field (NotFound for an id that is not the caller's), through every
// door, and changes nothing.
func TestInboxStatesBadInput(t *testing.T) {
	t.Parallel()
	scenarioStatesBadInput(t, startNode(t, nil))
}

func scenarioStatesBadInput(t *testing.T, n *testNode) {
	ctx := inboxCtx(t)
	c := dial(t, n.GRPCAddr())
	const guest = "bad-guest"
	tok := mint(t, guestID(guest))
	publish(t, ctx, c, pointsReq(pointsAdded(guest, "r1", 1)))
	publish(t, ctx, c, pointsReq(pointsAdded("bad-other", "r1", 1)))
	ds := doors(t, n)
	mine := listIDs(t, ctx, ds[0], tok, inboxState)
	theirs := listIDs(t, ctx, ds[0], mint(t, guestID("bad-other")), inboxState)
	past := timestamppb.New(time.Now().Add(-time.Hour))
	inv, nf := codes.InvalidArgument, codes.NotFound
	cases := []struct {
		name   string
		method string
		req    proto.Message
		code   codes.Code
		field  string
		grpc   bool // enum values out of range: REST's JSON decoding refuses them itself
	}{
		{"snooze without an end", "Snooze", &notifyv1.SnoozeRequest{Ids: mine}, inv, "until", false},
		{"snooze for too short", "Snooze", &notifyv1.SnoozeRequest{Ids: mine, Duration: durationpb.New(100 * time.Millisecond)}, inv, "between 1s", false},
		{"snooze in the past", "Snooze", &notifyv1.SnoozeRequest{Ids: mine, Until: past}, inv, "until", false},
		{"snooze with both", "Snooze", &notifyv1.SnoozeRequest{Ids: mine, Until: timestamppb.New(time.Now().Add(time.Hour)), Duration: durationpb.New(time.Hour)}, inv, "not both", false},
		{"snooze for a year and more", "Snooze", &notifyv1.SnoozeRequest{Ids: mine, Duration: durationpb.New(400 * 24 * time.Hour)}, inv, "until", false},
		{"archive no ids", "Archive", &notifyv1.ArchiveRequest{}, inv, "ids", false},
		{"archive a malformed id", "Archive", &notifyv1.ArchiveRequest{Ids: []string{"abc"}}, inv, "ids", false},
		{"archive another's", "Archive", &notifyv1.ArchiveRequest{Ids: append(mine[:1:1], theirs...)}, nf, "no such notification", false},
		{"seen another's", "MarkSeen", &notifyv1.MarkSeenRequest{Ids: theirs}, nf, "no such notification", false},
		{"unsnooze another's", "Unsnooze", &notifyv1.UnsnoozeRequest{Ids: theirs}, nf, "no such notification", false},
		{"bulk without action", "BulkUpdate", &notifyv1.BulkUpdateRequest{}, inv, "action", false},
		{"bulk snooze without end", "BulkUpdate", &notifyv1.BulkUpdateRequest{Action: notifyv1.InboxAction_INBOX_ACTION_SNOOZE}, inv, "snooze_until", false},
		{"bulk read with an end", "BulkUpdate", &notifyv1.BulkUpdateRequest{Action: notifyv1.InboxAction_INBOX_ACTION_READ, SnoozeDuration: durationpb.New(time.Hour)}, inv, "snooze_until", false},
		{"bulk bad category", "BulkUpdate", &notifyv1.BulkUpdateRequest{Action: notifyv1.InboxAction_INBOX_ACTION_READ, Filter: &notifyv1.InboxFilter{Categories: []string{"Bad!"}}}, inv, "filter.categories[0]", false},
		{"list bad category", "ListNotifications", &notifyv1.ListNotificationsRequest{Categories: []string{"x", "bad category"}}, inv, "categories[1]", false},
		{"list bad page size", "ListNotifications", &notifyv1.ListNotificationsRequest{PageSize: 500}, inv, "page_size", false},
		{"list bad page token", "ListNotifications", &notifyv1.ListNotificationsRequest{PageToken: "!!"}, inv, "page_token", false},
		{"bulk unknown action", "BulkUpdate", &notifyv1.BulkUpdateRequest{Action: 99}, inv, "action", true},
		{"bulk unknown state", "BulkUpdate", &notifyv1.BulkUpdateRequest{Action: 1, Filter: &notifyv1.InboxFilter{State: 42}}, inv, "filter.state", true},
		{"list unknown state", "ListNotifications", &notifyv1.ListNotificationsRequest{State: 42}, inv, "state", true},
		{"list unknown order", "ListNotifications", &notifyv1.ListNotificationsRequest{Order: 9}, inv, "order", true},
		{"list unspecified priority", "ListNotifications", &notifyv1.ListNotificationsRequest{Priorities: []notifyv1.Priority{0}}, inv, "priorities", true},
	}
	for _, d := range ds {
		for _, tc := range cases {
			if tc.grpc && d.name == "REST" {
				continue
			}
			wantCall(t, ctx, d, tok, tc.method, tc.req, tc.code, tc.field)
		}
	}
	want := &notifyv1.InboxCounts{Unseen: 1, Unread: 1, Inbox: 1}
	if got := getCounts(t, ctx, ds[0], tok, ""); !proto.Equal(got, want) {
		t.Errorf("after refused calls: %v, want %v", got, want)
	}
	if got := getCounts(t, ctx, ds[0], mint(t, guestID("bad-other")), ""); !proto.Equal(got, want) {
		t.Errorf("the other guest after refused calls: %v, want %v", got, want)
	}
}

// TestInboxStatesPostgres runs the states scenarios with PostgreSQL as the
// node's store.
func TestInboxStatesPostgres(t *testing.T) {
	t.Parallel()
	for _, sc := range statesScenarios {
		t.Run(sc.name, func(t *testing.T) {
			t.Parallel()
			dsn := postgresStore(t)
			sc.run(t, startNode(t, func(c *node.Config) { c.Store = dsn }))
		})
	}
}

// TestInboxSnoozeAcrossNodes: two nodes on one Redis and one PostgreSQL.
// A guest's snooze made through node A comes back on the guest's stream on
// node B, which only the shared store told about it, and on node A's.
func TestInboxSnoozeAcrossNodes(t *testing.T) {
	t.Parallel()
	redisURL := testenv.Service(t, testenv.RedisURL)
	dsn := postgresStore(t)
	prefix := fmt.Sprintf("notify-inbox-test-%d", time.Now().UnixNano())
	start := func(id string) *testNode {
		return startNode(t, func(c *node.Config) {
			c.Broker, c.RedisURL, c.RedisPrefix, c.Store, c.ServerID = "redis", redisURL, prefix, dsn, id
		})
	}
	a, b := start("node-a"), start("node-b")
	ctx := inboxCtx(t)
	const guest = "across"
	tok := mint(t, guestID(guest))
	publish(t, ctx, dial(t, a.GRPCAddr()), pointsReq(pointsAdded(guest, "r1", 1)))
	da, db := doors(t, a), doors(t, b)
	onB := openLive(t, ctx, db[0], tok)
	onA := openLive(t, ctx, da[2], tok)
	onB.awaitCounts(t, 1, 1)
	id := listIDs(t, ctx, db[1], tok, inboxState)[0]
	snoozed := callOK(t, ctx, da[1], tok, "Snooze", &notifyv1.SnoozeRequest{Ids: []string{id}, Duration: durationpb.New(2 * time.Second)}, &notifyv1.SnoozeResponse{})
	until := snoozed.Until.AsTime()
	back := func(l *live, where string) {
		l.await(t, "the return on "+where, func(u *notifyv1.UnreadCount) bool {
			return slices.ContainsFunc(u.Returned, func(r *notifyv1.ReturnedNotification) bool { return r.Id == id })
		})
		if time.Now().Before(until) {
			t.Errorf("%s announced the return before %v", where, until)
		}
		if l.last.Count != 1 || l.last.Unseen != 1 {
			t.Errorf("%s: counts with the return %v", where, l.last)
		}
	}
	back(onB, "node B")
	back(onA, "node A")
	if got := listIDs(t, ctx, db[2], tok, inboxState); !slices.Equal(got, []string{id}) {
		t.Errorf("inbox on node B after the return: %v", got)
	}
}
