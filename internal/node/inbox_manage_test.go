package node_test

// End-to-end tests of the durable inbox (InboxService, the stream's unread
// count, mutes) over real sockets on 127.0.0.1, on the embedded SQLite
// store and, when NOTIFY_TEST_POSTGRES_DSN is set, on PostgreSQL.

import (
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"

	notifyv1 "github.com/maxloyalty/notify/gen/notify/v1"
	"github.com/maxloyalty/notify/internal/node"
)

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
