package notify_test

import (
	"slices"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	notify "github.com/maxloyalty/notify/clients/go"
	notifyv1 "github.com/maxloyalty/notify/gen/notify/v1"
)

// TestInboxHelpers: a backend publishes with inbox options and manages a
// guest's inbox on the guest's behalf; the guest's subscription sees the
// counts, and a notification back from snooze, through OnInbox.
func TestInboxHelpers(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	ctx := testContext(t, 30*time.Second)
	backend := dial(t, srv.GRPCAddr, notify.WithToken(mustMint(t, "loyalty-backend", "service")))
	guest := dial(t, srv.GRPCAddr, notify.WithToken(mustMint(t, "g1", "guest")))

	inbox := make(chan *notifyv1.UnreadCount, 64)
	sub := guest.Subscribe(ctx, notify.SubscribeOptions{OnInbox: func(u *notifyv1.UnreadCount) { inbox <- u }})
	defer sub.Close()
	await := func(what string, ok func(u *notifyv1.UnreadCount) bool) *notifyv1.UnreadCount {
		t.Helper()
		deadline := time.After(10 * time.Second)
		for {
			select {
			case u := <-inbox:
				if ok(u) {
					return u
				}
			case <-deadline:
				t.Fatalf("no inbox message with %s within 10s", what)
			}
		}
	}
	await("the first counts", func(u *notifyv1.UnreadCount) bool { return u.Count == 0 && u.Unseen == 0 })

	for i, prio := range []notifyv1.Priority{notifyv1.Priority_PRIORITY_LOW, notifyv1.Priority_PRIORITY_HIGH} {
		_, err := backend.Publish(ctx, &notifyv1.PointsAdded{GuestId: "g1", CardId: "c1", RestaurantId: "r1", Amount: int64(i + 1), NewBalance: 10},
			notify.WithInbox(&notifyv1.InboxOptions{Priority: prio, Tags: []string{"sdk"}}))
		if err != nil {
			t.Fatal(err)
		}
	}
	await("two unseen", func(u *notifyv1.UnreadCount) bool { return u.Unseen == 2 })

	mine := guest.Inbox()
	theirs := backend.InboxOf("g1")
	list, err := mine.List(ctx, &notifyv1.ListNotificationsRequest{Order: notifyv1.NotificationOrder_NOTIFICATION_ORDER_PRIORITY})
	if err != nil {
		t.Fatal(err)
	}
	if len(list.Notifications) != 2 || list.Notifications[0].Priority != notifyv1.Priority_PRIORITY_HIGH || !slices.Equal(list.Notifications[0].Tags, []string{"sdk"}) {
		t.Fatalf("guest's list by priority: %v", list.Notifications)
	}
	high, low := list.Notifications[0].Id, list.Notifications[1].Id
	onBehalf, err := theirs.List(ctx, &notifyv1.ListNotificationsRequest{Order: notifyv1.NotificationOrder_NOTIFICATION_ORDER_PRIORITY})
	if err != nil || !proto.Equal(onBehalf, list) {
		t.Fatalf("the backend's list for g1: %v, %v", onBehalf, err)
	}

	if c, err := theirs.MarkSeen(ctx, high, low); err != nil || c.Unseen != 0 || c.Unread != 2 {
		t.Fatalf("MarkSeen on behalf: %v, %v", c, err)
	}
	await("none unseen", func(u *notifyv1.UnreadCount) bool { return u.Unseen == 0 && u.Count == 2 })
	if n, err := theirs.MarkRead(ctx, high); err != nil || n != 1 {
		t.Fatalf("MarkRead on behalf: %d, %v", n, err)
	}
	if c, err := mine.Archive(ctx, high); err != nil || c.Archived != 1 || c.Inbox != 1 {
		t.Fatalf("Archive: %v, %v", c, err)
	}
	until, c, err := theirs.Snooze(ctx, 2*time.Second, low)
	if err != nil || c.Snoozed != 1 || c.Inbox != 0 {
		t.Fatalf("Snooze on behalf: %v, %v", c, err)
	}
	back := await("the snoozed notification back", func(u *notifyv1.UnreadCount) bool {
		return slices.ContainsFunc(u.Returned, func(r *notifyv1.ReturnedNotification) bool { return r.Id == low })
	})
	if time.Now().Before(until) || back.Unseen != 1 || back.Count != 1 {
		t.Fatalf("back at %v (end %v) with counts %v", time.Now(), until, back)
	}
	if n, c, err := mine.Bulk(ctx, notifyv1.InboxAction_INBOX_ACTION_UNARCHIVE, &notifyv1.InboxFilter{State: notifyv1.NotificationState_NOTIFICATION_STATE_ARCHIVED}); err != nil || n != 1 || c.Inbox != 2 {
		t.Fatalf("Bulk unarchive: %d, %v, %v", n, c, err)
	}
	if n, c, err := theirs.BulkSnooze(ctx, time.Hour, nil); err != nil || n != 2 || c.Snoozed != 2 {
		t.Fatalf("BulkSnooze on behalf: %d, %v, %v", n, c, err)
	}
	if c, err := mine.Unsnooze(ctx, high, low); err != nil || c.Snoozed != 0 || c.Unseen != 2 {
		t.Fatalf("Unsnooze: %v, %v", c, err)
	}
	if c, err := mine.Counts(ctx); err != nil || c.Inbox != 2 || c.Unread != 2 {
		t.Fatalf("Counts: %v, %v", c, err)
	}
	if n, err := mine.Delete(ctx, low); err != nil || n != 1 {
		t.Fatalf("Delete: %d, %v", n, err)
	}

	// A guest acts for nobody else; a bad snooze names its field.
	other := dial(t, srv.GRPCAddr, notify.WithToken(mustMint(t, "g2", "guest")))
	if _, err := other.InboxOf("g1").Archive(ctx, high); status.Code(err) != codes.PermissionDenied {
		t.Errorf("g2 archiving for g1: %v, want PermissionDenied", err)
	}
	if _, _, err := mine.Snooze(ctx, time.Millisecond, high); status.Code(err) != codes.InvalidArgument {
		t.Errorf("a 1ms snooze: %v, want InvalidArgument", err)
	}
}
