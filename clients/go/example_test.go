package notify_test

import (
	"context"
	"fmt"
	"time"

	notify "github.com/maxloyalty/notify/clients/go"
	notifyv1 "github.com/maxloyalty/notify/gen/notify/v1"
)

// A service publishes a PointsAdded; the server derives its rooms from it.
func ExampleClient_Publish() {
	addr, stop := exampleServer() // a local notifyd --dev, for the example
	defer stop()

	c, err := notify.Dial(addr, notify.WithInsecure(), notify.WithToken(exampleToken("loyalty-backend", "service")))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := c.Publish(ctx, &notifyv1.PointsAdded{
		GuestId:      "g1",
		CardId:       "c1",
		RestaurantId: "r1",
		Amount:       100,
		NewBalance:   600,
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, p := range resp.Positions {
		fmt.Println(p.Room, p.Offset)
	}

	// The same publish again, with the same key, is not delivered twice.
	key := notify.NewIdempotencyKey()
	first, _ := c.Publish(ctx, &notifyv1.SystemAlert{Level: notifyv1.AlertLevel_ALERT_LEVEL_CRITICAL, Title: "disk full"}, notify.IdempotencyKey(key))
	again, _ := c.Publish(ctx, &notifyv1.SystemAlert{Level: notifyv1.AlertLevel_ALERT_LEVEL_CRITICAL, Title: "disk full"}, notify.IdempotencyKey(key))
	fmt.Println(first.Positions[0].Room, first.Positions[0].Offset, first.Duplicate)
	fmt.Println(again.Positions[0].Room, again.Positions[0].Offset, again.Duplicate)
	// Output:
	// restaurant:r1:points 1
	// guest:g1 1
	// admin 1 false
	// admin 1 true
}

// A guest watches its room; events come in order with their room, offset
// and epoch.
func ExampleClient_Subscribe() {
	addr, stop := exampleServer()
	defer stop()
	guest, err := notify.Dial(addr, notify.WithInsecure(), notify.WithToken(exampleToken("g1", "guest")))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer guest.Close()
	service, err := notify.Dial(addr, notify.WithInsecure(), notify.WithToken(exampleToken("loyalty-backend", "service")))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer service.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	connected := make(chan *notifyv1.Connected, 1)
	sub := guest.Subscribe(ctx, notify.SubscribeOptions{
		// No Rooms: the guest's default rooms, guest:g1 and user:g1.
		OnConnected: func(c *notifyv1.Connected) {
			select {
			case connected <- c:
			default:
			}
		},
		OnGap: func(room string, st *notifyv1.RoomState) {
			fmt.Println("reload", room, "from the inbox")
		},
	})
	defer sub.Close()
	for _, r := range (<-connected).Rooms {
		fmt.Println("joined", r.Room)
	}

	for i := int64(1); i <= 2; i++ {
		if _, err := service.Publish(ctx, &notifyv1.PointsAdded{GuestId: "g1", RestaurantId: "r1", Amount: 50 * i, NewBalance: 500 + 50*i}); err != nil {
			fmt.Println(err)
			return
		}
	}
	for range 2 {
		select {
		case ev := <-sub.Events():
			fmt.Println(ev.Room, ev.Offset, ev.GetPointsAdded().GetAmount())
		case <-ctx.Done():
			fmt.Println(ctx.Err())
			return
		}
	}
	fmt.Println("saved position:", sub.Positions()["guest:g1"].Offset)
	sub.Close()
	fmt.Println("stopped:", sub.Err())
	// Output:
	// joined guest:g1
	// joined user:g1
	// guest:g1 1 50
	// guest:g1 2 100
	// saved position: 2
	// stopped: <nil>
}

// A subscription resumes from positions saved by an earlier one: what was
// published in between is replayed, nothing twice.
func ExampleSubscribeOptions_positions() {
	addr, stop := exampleServer()
	defer stop()
	guest, _ := notify.Dial(addr, notify.WithInsecure(), notify.WithToken(exampleToken("g1", "guest")))
	defer guest.Close()
	service, _ := notify.Dial(addr, notify.WithInsecure(), notify.WithToken(exampleToken("loyalty-backend", "service")))
	defer service.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	publish := func(amount int64) {
		if _, err := service.Publish(ctx, &notifyv1.PointsAdded{GuestId: "g1", RestaurantId: "r1", Amount: amount}, notify.Rooms("guest:g1")); err != nil {
			fmt.Println(err)
		}
	}
	publish(10)

	// Saved earlier: the guest had seen offset 1 of the room's epoch.
	probe, _ := service.Publish(ctx, &notifyv1.PointsAdded{GuestId: "g1", RestaurantId: "r1", Amount: 20}, notify.Rooms("guest:g1"))
	saved := map[string]notify.Position{"guest:g1": {Offset: 1, Epoch: probe.Positions[0].Epoch}}
	publish(30)

	sub := guest.Subscribe(ctx, notify.SubscribeOptions{
		Rooms:     []string{"guest:g1"},
		Positions: saved,
		OnConnected: func(c *notifyv1.Connected) {
			fmt.Println("recovered:", c.Rooms[0].Recovered)
		},
	})
	defer sub.Close()
	for range 2 {
		select {
		case ev := <-sub.Events():
			fmt.Println(ev.Offset, ev.GetPointsAdded().GetAmount())
		case <-ctx.Done():
			fmt.Println(ctx.Err())
			return
		}
	}
	// Output:
	// recovered: true
	// 2 20
	// 3 30
}

// A backend snoozes a guest's notification on the guest's behalf, then
// archives everything the guest has read.
func ExampleInbox() {
	addr, stop := exampleServer()
	defer stop()
	backend, err := notify.Dial(addr, notify.WithInsecure(), notify.WithToken(exampleToken("loyalty-backend", "service")))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer backend.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	for _, amount := range []int64{10, 20} {
		if _, err := backend.Publish(ctx, &notifyv1.PointsAdded{GuestId: "g1", CardId: "c1", RestaurantId: "r1", Amount: amount, NewBalance: 100},
			notify.WithInbox(&notifyv1.InboxOptions{Category: "points", Tags: []string{"summer"}})); err != nil {
			fmt.Println(err)
			return
		}
	}
	g1 := backend.InboxOf("g1")
	list, err := g1.List(ctx, nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	newest, oldest := list.Notifications[0].Id, list.Notifications[1].Id
	if _, err := g1.MarkRead(ctx, oldest); err != nil {
		fmt.Println(err)
		return
	}
	_, counts, err := g1.Snooze(ctx, time.Hour, newest)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("inbox", counts.Inbox, "snoozed", counts.Snoozed, "unread", counts.Unread)
	archived, counts, err := g1.Bulk(ctx, notifyv1.InboxAction_INBOX_ACTION_ARCHIVE,
		&notifyv1.InboxFilter{State: notifyv1.NotificationState_NOTIFICATION_STATE_READ})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("archived", archived, "inbox", counts.Inbox, "archive", counts.Archived)
	// Output:
	// inbox 1 snoozed 1 unread 0
	// archived 1 inbox 0 archive 1
}

// A service schedules a points-expiry reminder for a later time, under a
// cancel key, lists it, and cancels it before it is published.
func ExampleClient_CancelScheduled() {
	addr, stop := exampleServer()
	defer stop()
	c, err := notify.Dial(addr, notify.WithInsecure(), notify.WithToken(exampleToken("loyalty-backend", "service")))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	resp, err := c.Publish(ctx, &notifyv1.PointsExpired{GuestId: "g1", CardId: "c1", Amount: 200, ExpiryDate: "2026-12-31"},
		notify.DeliverAt(time.Now().Add(7*24*time.Hour)), notify.CancelKey("expiry-g1-c1"))
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(resp.Scheduled.State, resp.Scheduled.CancelKey)

	list, err := c.Schedules().ListScheduled(ctx, &notifyv1.ListScheduledRequest{})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(len(list.Scheduled), list.Scheduled[0].Publisher)

	sp, err := c.CancelScheduled(ctx, "expiry-g1-c1")
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(sp.State)
	// Output:
	// SCHEDULED_STATE_PENDING expiry-g1-c1
	// 1 service:loyalty-backend
	// SCHEDULED_STATE_CANCELLED
}
