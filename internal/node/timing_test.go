package node_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"

	notifyv1 "github.com/maxloyalty/notify/gen/notify/v1"
	"github.com/maxloyalty/notify/internal/auth"
	"github.com/maxloyalty/notify/internal/channel"
	"github.com/maxloyalty/notify/internal/channel/channeltest"
	"github.com/maxloyalty/notify/internal/node"
	"github.com/maxloyalty/notify/internal/testenv"
)

// End-to-end tests of quiet hours, digests and throttles through a real
// node (REST and native gRPC on loopback ports) with the real protocol
// peers: a web push service that decrypts what it receives, and an SMTP
// server. They wait in real time: minutes of quiet hours and digest
// windows are the node's.

// timingCtx bounds a timing test: a digest's window is at least a minute.
func timingCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// startTimingNode is startDeliveryNode with nothing delayed until unseen
// (deliveries go at once unless time holds them) and mutate applied.
func startTimingNode(t *testing.T, mutate func(*node.Config)) *deliveryEnv {
	t.Helper()
	return startDeliveryNode(t, func(c *node.Config) {
		c.Delivery.DelayedTypes = []string{"none"}
		if mutate != nil {
			mutate(c)
		}
	})
}

// pointsREST is the REST body of a PointsAdded for guest.
func pointsREST(t *testing.T, guest string, amount int64) string {
	t.Helper()
	b, err := protojson.Marshal(&notifyv1.PublishRequest{Payload: &notifyv1.PublishRequest_PointsAdded{PointsAdded: &notifyv1.PointsAdded{
		GuestId: guest, CardId: "card-" + guest, Amount: amount, NewBalance: 1000 + amount, RestaurantId: "r1", RestaurantName: "Chez Max",
		TransactionId: fmt.Sprintf("tx-%s-%d-%d", guest, amount, time.Now().UnixNano()),
	}}})
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// publishREST publishes body over REST as a service and returns the event id.
func (e *deliveryEnv) publishREST(t *testing.T, ctx context.Context, body string) string {
	t.Helper()
	r := restDo(t, ctx, http.MethodPost, "http://"+e.tn.HTTPAddr()+"/v1/events", mint(t, auth.Claims{Subject: "loyalty", Role: notifyv1.Role_ROLE_SERVICE}), body)
	var resp notifyv1.PublishResponse
	if !restOK(t, r, "POST /v1/events", &resp) {
		t.FailNow()
	}
	return resp.EventId
}

// setPreferencesREST replaces the bearer's preferences over REST.
func (e *deliveryEnv) setPreferencesREST(t *testing.T, ctx context.Context, tok, prefs string) {
	t.Helper()
	r := restDo(t, ctx, http.MethodPut, "http://"+e.tn.HTTPAddr()+"/v1/inbox/preferences", tok, `{"preferences":`+prefs+`}`)
	if !restOK(t, r, "PUT /v1/inbox/preferences", &notifyv1.UpdatePreferencesResponse{}) {
		t.FailNow()
	}
}

// pushPayloads decrypts the push messages received so far.
func pushPayloads(t *testing.T, ps *channeltest.PushService) []channel.WebPushPayload {
	t.Helper()
	var out []channel.WebPushPayload
	for _, m := range ps.Received() {
		var p channel.WebPushPayload
		if err := json.Unmarshal(m.Plaintext, &p); err != nil {
			t.Fatalf("push payload %q: %v", m.Plaintext, err)
		}
		out = append(out, p)
	}
	return out
}

// summaryOfPush reads a summary push's count and points.
func summaryOfPush(t *testing.T, p channel.WebPushPayload) (count, points string) {
	t.Helper()
	var d struct {
		Summary struct{ Count, Points string } `json:"summary"`
	}
	if err := json.Unmarshal(p.Data, &d); err != nil {
		t.Fatalf("push data %s: %v", p.Data, err)
	}
	return d.Summary.Count, d.Summary.Points
}

// TestQuietHoursHoldPushUntilTheyEnd: a guest in Asia/Kolkata (UTC+05:30)
// whose quiet hours end at the next minute there gets a points push when
// they end, not before; the live stream and the inbox have it at once.
func TestQuietHoursHoldPushUntilTheyEnd(t *testing.T) {
	t.Parallel()
	ctx := timingCtx(t)
	e := startTimingNode(t, nil)
	guest := mint(t, auth.Claims{Subject: "qh1", Role: notifyv1.Role_ROLE_GUEST})
	kolkata, err := time.LoadLocation("Asia/Kolkata")
	if err != nil {
		t.Fatal(err)
	}
	// The quiet hours began an hour ago and end at the next whole minute
	// at least 15 s away.
	end := time.Now().In(kolkata).Truncate(time.Minute).Add(time.Minute)
	if time.Until(end) < 15*time.Second {
		end = end.Add(time.Minute)
	}
	start := end.Add(-time.Hour)
	e.setPreferencesREST(t, ctx, guest, fmt.Sprintf(`{"enabled":true,"timeZone":"Asia/Kolkata","quietHours":{"start":%q,"end":%q}}`,
		start.Format("15:04"), end.Format("15:04")))
	e.subscribePush(t, ctx, guest)

	id := e.publishREST(t, ctx, pointsREST(t, "qh1", 120))
	items, err := e.inbox.ListNotifications(withToken(ctx, guest), &notifyv1.ListNotificationsRequest{})
	if err != nil || len(items.Notifications) != 1 || items.Notifications[0].Event.Id != id {
		t.Fatalf("inbox at once: %v, %v", items, err)
	}
	held := e.awaitStep(t, ctx, guest, id, "web_push:scheduled")
	if !strings.Contains(held.Detail, "held by quiet hours until "+end.Format("15:04")+" Asia/Kolkata") {
		t.Errorf("held step says %q", held.Detail)
	}
	testenv.Eventually(t, time.Until(end)+40*time.Second, "the push after the quiet hours", func() bool { return len(e.push.Received()) == 1 })
	if now := time.Now(); now.Before(end) {
		t.Fatalf("pushed at %v, before the quiet hours ended at %v", now.In(kolkata), end)
	}
	sent := e.awaitStep(t, ctx, guest, id, "web_push:sent")
	if sent.Time.AsTime().Before(end) {
		t.Errorf("sent step at %v, before %v", sent.Time.AsTime(), end)
	}
	if p := pushPayloads(t, e.push)[0]; p.EventID != id || !strings.Contains(p.Body, "120") {
		t.Errorf("push %+v", p)
	}
}

// TestDigestEmailAndPushNode: with the server's digest of PointsAdded (one
// minute), three PointsAdded enter the guest's inbox at once, and make one
// email (to the real SMTP peer) and one push with the points summed when
// the window closes.
func TestDigestEmailAndPushNode(t *testing.T) {
	t.Parallel()
	ctx := timingCtx(t)
	e := startTimingNode(t, func(c *node.Config) { c.Timing.Digests = []string{"points_added=1m"} })
	guest := mint(t, auth.Claims{Subject: "dg1", Role: notifyv1.Role_ROLE_GUEST})
	e.setPreferencesREST(t, ctx, guest, `{"enabled":true,"email":true}`)
	addr := "dg1@example.com"
	if _, err := e.dl.UpdateDeliveryProfile(withToken(ctx, guest), &notifyv1.UpdateDeliveryProfileRequest{Email: &addr}); err != nil {
		t.Fatal(err)
	}
	e.subscribePush(t, ctx, guest)
	var ids []string
	for _, n := range []int64{100, 150, 200} {
		ids = append(ids, e.publishREST(t, ctx, pointsREST(t, "dg1", n)))
	}
	items, err := e.inbox.ListNotifications(withToken(ctx, guest), &notifyv1.ListNotificationsRequest{})
	if err != nil || len(items.Notifications) != 3 {
		t.Fatalf("inbox: %v, %v; want the three at once", items, err)
	}
	r := restDo(t, ctx, http.MethodGet, "http://"+e.tn.HTTPAddr()+"/v1/digests", guest, "")
	var open notifyv1.ListDigestsResponse
	if !restOK(t, r, "GET /v1/digests", &open) {
		t.FailNow()
	}
	if len(open.Digests) != 1 || open.Digests[0].Count != 3 || open.Digests[0].Points != 450 {
		t.Fatalf("open digests %v", open.Digests)
	}
	for _, id := range ids {
		steps, _ := e.timeline(t, ctx, guest, id, nil)
		if !slices.Contains(steps, "web_push:scheduled") || !slices.Contains(steps, "email:scheduled") {
			t.Errorf("event %s: timeline %v", id, steps)
		}
	}
	// The events' steps name the digest; its summary's steps are the
	// digest's own.
	held := e.awaitStep(t, ctx, guest, ids[0], "email:scheduled")
	_, digestID, ok := strings.Cut(held.Detail, "(digest ")
	digestID, _ = strings.CutSuffix(digestID, ")")
	if !ok || digestID == "" {
		t.Fatalf("scheduled step %q names no digest", held.Detail)
	}
	closes := open.Digests[0].CloseTime.AsTime()
	testenv.Eventually(t, time.Until(closes)+40*time.Second, "one email and one push", func() bool {
		return len(e.smtp.Received()) >= 1 && len(e.push.Received()) >= 1
	})
	// Both summary deliveries are recorded sent: their jobs are done, and
	// the digest, taken when its window closed, queues no more.
	e.awaitStep(t, ctx, guest, digestID, "email:sent")
	e.awaitStep(t, ctx, guest, digestID, "web_push:sent")
	if len(e.smtp.Received()) != 1 || len(e.push.Received()) != 1 {
		t.Fatalf("%d emails and %d pushes, want one of each", len(e.smtp.Received()), len(e.push.Received()))
	}
	m := e.smtp.Received()[0]
	mail, err := channeltest.ParseMail(m.Data)
	if err != nil {
		t.Fatal(err)
	}
	if len(m.To) != 1 || m.To[0] != addr || !strings.Contains(mail.Header.Get("Subject"), "3 visits, +450 points") ||
		!strings.Contains(mail.Text, "You earned 450 points in 3 visits") {
		t.Errorf("email to %v: subject %q, text %q", m.To, mail.Header.Get("Subject"), mail.Text)
	}
	p := pushPayloads(t, e.push)[0]
	if c, pts := summaryOfPush(t, p); c != "3" || pts != "450" || !strings.Contains(p.Title, "+450 points") {
		t.Errorf("push %+v", p)
	}
	if time.Now().Before(closes) {
		t.Errorf("summary sent before the window closed at %v", closes)
	}
}

// TestThrottleFoldsNode: at most one points push per 5 s per device; of
// three at once, the first goes, the next two are held and go as one push
// counting both, with their points.
func TestThrottleFoldsNode(t *testing.T) {
	t.Parallel()
	ctx := timingCtx(t)
	e := startTimingNode(t, func(c *node.Config) { c.Timing.Throttles = []string{"points_added=1/5s"} })
	guest := mint(t, auth.Claims{Subject: "th1", Role: notifyv1.Role_ROLE_GUEST})
	e.subscribePush(t, ctx, guest)
	first := e.publishREST(t, ctx, pointsREST(t, "th1", 10))
	e.awaitStep(t, ctx, guest, first, "web_push:sent")
	second := e.publishREST(t, ctx, pointsREST(t, "th1", 20))
	third := e.publishREST(t, ctx, pointsREST(t, "th1", 30))
	e.awaitStep(t, ctx, guest, second, "web_push:held")
	e.awaitStep(t, ctx, guest, third, "web_push:held")
	if n := len(e.push.Received()); n != 1 {
		t.Fatalf("%d pushes within the window, want 1", n)
	}
	testenv.Eventually(t, 30*time.Second, "the folded push", func() bool { return len(e.push.Received()) == 2 })
	got := pushPayloads(t, e.push)
	// Both held sends are due when the window ends; whichever job runs
	// first carries the fold.
	if c, pts := summaryOfPush(t, got[1]); (got[1].EventID != second && got[1].EventID != third) || c != "2" || pts != "50" {
		t.Errorf("folded push of %s counts %s events, %s points; want %s or %s, 2 and 50", got[1].EventID, c, pts, second, third)
	}
	// The folded push is recorded sent under the event it carries: its job
	// is done, and the other event folded into it has no send of its own
	// to come.
	carrier := got[1].EventID
	e.awaitStep(t, ctx, guest, carrier, "web_push:sent")
	for _, id := range []string{second, third} {
		if steps, _ := e.timeline(t, ctx, guest, id, nil); id != carrier && slices.Contains(steps, "web_push:sent") {
			t.Errorf("event %s, folded into %s, was sent on its own: timeline %v", id, carrier, steps)
		}
	}
	if n := len(e.push.Received()); n != 2 {
		t.Errorf("%d pushes, want 2", n)
	}
}
