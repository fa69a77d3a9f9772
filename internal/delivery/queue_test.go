package delivery

import (
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	notifyv1 "github.com/maxloyalty/notify/gen/notify/v1"
	"github.com/maxloyalty/notify/internal/channel"
	"github.com/maxloyalty/notify/internal/channel/channeltest"
	"github.com/maxloyalty/notify/internal/store"
	"github.com/maxloyalty/notify/internal/testenv"
)

func mustMarshal(t *testing.T, m proto.Message) []byte {
	t.Helper()
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// atOnce is a policy that delays nothing.
var atOnce = Policy{DelayedTypes: []string{}}

// TestWebPushDecryptedIsTheEvent: a guest's event is queued with its inbox
// row, sent to the guest's subscription, and the push service's decrypted
// payload carries the event; the timeline says queued then sent.
func TestWebPushDecryptedIsTheEvent(t *testing.T) {
	st := openSQLite(t)
	ps, wp, keys := webPush(t)
	cfg := testConfig(t)
	cfg.Senders = []channel.Sender{wp}
	cfg.Policy = atOnce
	q := startQueue(t, cfg, st)
	sub, _ := registerPush(t, st, ps, keys, "g1")

	ev := pointsAdded("g1", 250)
	publish(t, st, q, publication(ev, "points_added", "restaurant:r1:points", "guest:g1"))
	testenv.Eventually(t, 10*time.Second, "the push message", func() bool { return len(ps.Received()) == 1 })
	msg := ps.Received()[0]
	if msg.SubscriptionID != sub.ID || msg.Status != http.StatusCreated {
		t.Fatalf("push = %+v", msg)
	}
	var payload channel.WebPushPayload
	if err := json.Unmarshal(msg.Plaintext, &payload); err != nil {
		t.Fatalf("payload %q: %v", msg.Plaintext, err)
	}
	got := &notifyv1.Event{}
	if err := protojson.Unmarshal(payload.Data, got); err != nil {
		t.Fatalf("payload data %s: %v", payload.Data, err)
	}
	// The event as the guest's room has it.
	want := proto.Clone(ev).(*notifyv1.Event)
	want.Room, want.Offset, want.Epoch = "guest:g1", 2, "e1"
	if !proto.Equal(got, want) {
		t.Errorf("decrypted event = %v, want %v", got, want)
	}
	if payload.EventID != ev.Id || payload.Type != "EVENT_TYPE_POINTS_ADDED" || !strings.Contains(payload.Body, "250") {
		t.Errorf("payload = %+v", payload)
	}
	if msg.Topic != "points-c-g1" {
		t.Errorf("Topic = %q, want the card's", msg.Topic)
	}
	testenv.Eventually(t, 5*time.Second, "the sent step", func() bool {
		return slices.Equal(states(t, st, ev.Id, "g1"), []string{"webpush:queued", "webpush:sent"})
	})
	// The send is counted once its step is recorded, just after.
	sent := func() float64 { return testutil.ToFloat64(q.metrics.sent.WithLabelValues("webpush")) }
	testenv.Eventually(t, 5*time.Second, "the send counted", func() bool { return sent() >= 1 })
	settled(t, q, 5*time.Second)
	if n := sent(); n != 1 {
		t.Errorf("sent = %v, want 1", n)
	}
}

// TestRetriedPublishQueuesOnce: the same event published twice (the
// publisher retried) is sent once.
func TestRetriedPublishQueuesOnce(t *testing.T) {
	st := openSQLite(t)
	ps, wp, keys := webPush(t)
	hook := channeltest.NewWebhookReceiver(t, false)
	cfg := testConfig(t)
	cfg.Senders = []channel.Sender{wp}
	cfg.Webhook = webhookSender(t)
	cfg.Webhooks = []Webhook{{Name: "ops", URL: hook.URL(), Secret: channel.Secret(hook.Secret), Events: true}}
	cfg.Policy = atOnce
	q, err := New(cfg, st)
	if err != nil {
		t.Fatal(err)
	}
	registerPush(t, st, ps, keys, "g1")
	ev := pointsAdded("g1", 5)
	p := publication(ev, "points_added", "guest:g1")
	publish(t, st, q, p)
	// The second publish finds the inbox row: nothing new for the user;
	// the webhook job is unique.
	publish(t, st, q, p)
	if err := q.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { q.Stop(context.Background()) })
	testenv.Eventually(t, 10*time.Second, "both deliveries", func() bool { return len(ps.Received()) >= 1 && len(hook.Delivered()) >= 1 })
	settled(t, q, 10*time.Second)
	if n := len(ps.Received()); n != 1 {
		t.Errorf("%d push messages, want 1", n)
	}
	if got := hook.Delivered(); got[ev.Id] != 1 || len(got) != 1 {
		t.Errorf("webhook deliveries = %v, want the event once", got)
	}
}

// TestTokenGoneRemovesDevice: the providers' "gone" answers (web push 410,
// FCM UNREGISTERED, APNs 410 Unregistered and 400 BadDeviceToken) remove
// the device at once, and the timeline says why.
func TestTokenGoneRemovesDevice(t *testing.T) {
	st := openSQLite(t)
	ps, wp, keys := webPush(t)
	fs := channeltest.NewFCMServer(t)
	fcm, err := channel.NewFCM(t.Context(), channel.FCMConfig{
		CredentialsJSON: channel.Secret(fs.CredentialsJSON()), Endpoint: fs.Endpoint(), RootCAs: fs.CertPool(), AllowPrivate: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	as := channeltest.NewAPNsServer(t)
	apns, err := channel.NewAPNs(channel.APNsConfig{
		AuthKey: channel.Secret(as.AuthKey()), KeyID: channeltest.APNsKeyID, TeamID: channeltest.APNsTeamID,
		Topic: channeltest.APNsTopic, Endpoint: as.URL(), RootCAs: as.CertPool(),
	})
	if err != nil {
		t.Fatal(err)
	}
	cfg := testConfig(t)
	cfg.Senders = []channel.Sender{wp, fcm, apns}
	cfg.Policy = atOnce
	q := startQueue(t, cfg, st)

	sub, _ := registerPush(t, st, ps, keys, "g1")
	ps.Unsubscribe(sub.ID)
	fs.Answer("fcm-gone", channeltest.FCMAnswer{HTTP: 404, Status: "NOT_FOUND", ErrorCode: "UNREGISTERED"})
	as.Answer("aaaa0001", channeltest.APNsAnswer{Status: 410, Reason: "Unregistered"})
	as.Answer("aaaa0002", channeltest.APNsAnswer{Status: 400, Reason: "BadDeviceToken"})
	for _, d := range []store.Device{
		{UserID: "g1", Channel: store.ChannelFCM, Token: "fcm-gone"},
		{UserID: "g1", Channel: store.ChannelFCM, Token: "fcm-ok"},
		{UserID: "g1", Channel: store.ChannelAPNs, Token: "aaaa0001"},
		{UserID: "g1", Channel: store.ChannelAPNs, Token: "aaaa0002"},
	} {
		if _, err := st.RegisterDevice(t.Context(), d); err != nil {
			t.Fatal(err)
		}
	}
	ev := pointsAdded("g1", 1)
	publish(t, st, q, publication(ev, "points_added", "guest:g1"))
	testenv.Eventually(t, 10*time.Second, "only the good token left", func() bool {
		ds, err := st.Devices(t.Context(), "g1")
		return err == nil && len(ds) == 1 && ds[0].Token == "fcm-ok"
	})
	testenv.Eventually(t, 5*time.Second, "the timeline", func() bool {
		got := states(t, st, ev.Id, "g1")
		slices.Sort(got)
		return slices.Equal(got, []string{"apns:failed", "apns:failed", "apns:queued", "apns:queued",
			"fcm:failed", "fcm:queued", "fcm:queued", "fcm:sent", "webpush:failed", "webpush:queued"})
	})
	ss, _ := st.Statuses(t.Context(), []string{ev.Id}, "g1")
	for _, s := range ss {
		if s.State == StateFailed && !strings.Contains(s.Detail, "the device was removed") {
			t.Errorf("failed step %+v does not say the device was removed", s)
		}
	}
	// Each removal is counted once its step is recorded, just after.
	testenv.Eventually(t, 5*time.Second, "a token removal counted on every channel", func() bool {
		for _, ch := range []string{"webpush", "fcm", "apns"} {
			if testutil.ToFloat64(q.metrics.removed.WithLabelValues(ch)) < 1 {
				return false
			}
		}
		return true
	})
}

// TestWebhooksEveryEventAndStatus: the operator's webhook gets every event
// (a room event without inbox rows included) and every status change of
// every user delivery, each signed and verified.
func TestWebhooksEveryEventAndStatus(t *testing.T) {
	st := openSQLite(t)
	ps, wp, keys := webPush(t)
	hook := channeltest.NewWebhookReceiver(t, true)
	wh, err := channel.NewWebhook(channel.WebhookConfig{RootCAs: hook.CertPool()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { wh.Close() })
	cfg := testConfig(t)
	cfg.Senders = []channel.Sender{wp}
	cfg.Webhook = wh
	cfg.Webhooks = []Webhook{{Name: "ops", URL: hook.URL(), Secret: channel.Secret(hook.Secret)}}
	cfg.Policy = atOnce
	q := startQueue(t, cfg, st)
	registerPush(t, st, ps, keys, "g1")

	personal := pointsAdded("g1", 7)
	publish(t, st, q, publication(personal, "points_added", "restaurant:r1:points", "guest:g1"))
	roomOnly := &notifyv1.Event{Id: "room-event-1", Payload: &notifyv1.Event_RestaurantTransaction{RestaurantTransaction: &notifyv1.RestaurantTransaction{RestaurantId: "r1", Amount: 3}}}
	publish(t, st, q, publication(roomOnly, "restaurant_transaction", "restaurant:r1:transactions"))

	// Two events; the web push delivery's queued and sent steps.
	testenv.Eventually(t, 10*time.Second, "four webhooks", func() bool { return len(hook.Delivered()) == 4 })
	byType := map[string][]channeltest.WebhookDelivery{}
	for _, d := range hook.Deliveries() {
		if d.Err != nil {
			t.Fatalf("a webhook failed verification: %v", d.Err)
		}
		var p channel.WebhookPayload
		if err := json.Unmarshal(d.Body, &p); err != nil {
			t.Fatal(err)
		}
		byType[p.Type] = append(byType[p.Type], d)
		switch p.Type {
		case TypeDeliveryStatus:
			var s StatusJSON
			if err := json.Unmarshal(p.Data, &s); err != nil {
				t.Fatal(err)
			}
			if s.EventID != personal.Id || s.Channel != "webpush" || s.UserID != "g1" || d.ID != s.ID {
				t.Errorf("status webhook %+v (id %s)", s, d.ID)
			}
		default:
			var e EventWebhookData
			if err := json.Unmarshal(p.Data, &e); err != nil {
				t.Fatal(err)
			}
			ev := &notifyv1.Event{}
			if err := protojson.Unmarshal(e.Event, ev); err != nil {
				t.Fatal(err)
			}
			if d.ID != ev.Id || len(e.Rooms) == 0 {
				t.Errorf("event webhook id %s for event %s, rooms %v", d.ID, ev.Id, e.Rooms)
			}
		}
	}
	if len(byType["EVENT_TYPE_POINTS_ADDED"]) != 1 || len(byType["EVENT_TYPE_RESTAURANT_TRANSACTION"]) != 1 || len(byType[TypeDeliveryStatus]) != 2 {
		t.Errorf("webhooks by type: %v", byType)
	}
	// The webhook's own deliveries have a timeline (for admins), and send
	// no status webhooks.
	testenv.Eventually(t, 5*time.Second, "the webhook's timeline", func() bool {
		return slices.Equal(states(t, st, roomOnly.Id, ""), []string{"webhook:queued", "webhook:delivered"})
	})
}

// TestUnseenDelay: a points event waits for the unseen delay; it is sent
// when the guest did not see it, and cancelled when they read it in the
// inbox or received it live.
func TestUnseenDelay(t *testing.T) {
	st := openSQLite(t)
	ps, wp, keys := webPush(t)
	clock := newScaledClock(30)
	streams := &fakeStreams{}
	cfg := testConfig(t)
	cfg.Senders = []channel.Sender{wp}
	cfg.Clock = clock
	cfg.Streams = streams
	cfg.RescueAfter, cfg.JobTimeout = time.Hour, time.Minute
	cfg.Policy = Policy{UnseenDelay: 60 * time.Second}
	q := startQueue(t, cfg, st)
	for _, g := range []string{"unseen", "reader", "live"} {
		registerPush(t, st, ps, keys, g)
	}
	streams.set("live", "guest:live")

	evs := map[string]*notifyv1.Event{}
	for _, g := range []string{"unseen", "reader", "live"} {
		evs[g] = pointsAdded(g, 10)
		publish(t, st, q, publication(evs[g], "points_added", "guest:"+g))
		if got := states(t, st, evs[g].Id, g); !slices.Equal(got, []string{"webpush:scheduled"}) {
			t.Fatalf("%s: timeline %v, want scheduled", g, got)
		}
	}
	// The live stream got its event: the broker's handler reports it.
	q.Observe("guest:live", mustMarshal(t, evs["live"]))
	// The reader reads theirs in the inbox.
	items, _, err := st.List(t.Context(), store.Viewer{UserID: "reader"}, store.ListQuery{Limit: 10})
	if err != nil || len(items) != 1 {
		t.Fatalf("List: %v, %v", items, err)
	}
	if err := st.Update(t.Context(), store.Viewer{UserID: "reader"}, []string{items[0].ID}, store.Change{Action: store.ActionRead}); err != nil {
		t.Fatal(err)
	}
	// Nothing goes before the delay: the sent step's time, on the queue's
	// clock, says when the push went (checked at the end).
	testenv.Eventually(t, 30*time.Second, "every delayed delivery done", func() bool {
		return len(states(t, st, evs["unseen"].Id, "unseen")) == 2 && len(states(t, st, evs["reader"].Id, "reader")) == 2 &&
			len(states(t, st, evs["live"].Id, "live")) == 2
	})
	if got := states(t, st, evs["unseen"].Id, "unseen"); !slices.Equal(got, []string{"webpush:scheduled", "webpush:sent"}) {
		t.Errorf("unseen: %v", got)
	}
	for _, g := range []string{"reader", "live"} {
		if got := states(t, st, evs[g].Id, g); !slices.Equal(got, []string{"webpush:scheduled", "webpush:cancelled"}) {
			t.Errorf("%s: %v", g, got)
		}
	}
	if n := len(ps.Received()); n != 1 {
		t.Errorf("%d push messages, want 1 (the unseen one)", n)
	}
	ss, _ := st.Statuses(t.Context(), []string{evs["live"].Id}, "live")
	if last := ss[len(ss)-1]; !strings.Contains(last.Detail, "live") {
		t.Errorf("cancelled step %+v does not say live", last)
	}
	ss, _ = st.Statuses(t.Context(), []string{evs["unseen"].Id}, "unseen")
	if d := ss[1].At.Sub(ss[0].At); d < 60*time.Second {
		t.Errorf("sent %v after scheduling (queue's clock), before the 60 s delay", d)
	}
}

// TestProviderDownForAMinute: web push answers 503 for a minute (of the
// queue's clock, 30 times faster than the wall's); every message is
// retried with backoff and delivered once when the service is back.
func TestProviderDownForAMinute(t *testing.T) {
	st := openSQLite(t)
	ps, wp, keys := webPush(t)
	clock := newScaledClock(30)
	cfg := testConfig(t)
	cfg.Senders = []channel.Sender{wp}
	cfg.Clock = clock
	cfg.MaxAttempts = 20
	cfg.RetryBase, cfg.RetryMax = time.Second, 20*time.Second
	cfg.JobTimeout, cfg.RescueAfter = time.Minute, time.Hour
	cfg.Policy = atOnce
	q := startQueue(t, cfg, st)

	const guests = 5
	var subs []*channeltest.PushSubscription
	for i := range guests {
		sub, _ := registerPush(t, st, ps, keys, "g"+string(rune('a'+i)))
		subs = append(subs, sub)
		ps.Answer(sub.ID, http.StatusServiceUnavailable, "")
	}
	// The service is back after a minute of the queue's clock.
	back := time.NewTimer(time.Duration(float64(time.Minute) / clock.factor))
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		select {
		case <-stop:
			return
		case <-back.C:
		}
		for _, s := range subs {
			ps.Answer(s.ID, http.StatusCreated, "")
		}
	}()
	t.Cleanup(func() { back.Stop(); close(stop); <-done })

	ids := map[string]bool{}
	for i := range guests {
		ev := pointsAdded("g"+string(rune('a'+i)), int64(i))
		ids[ev.Id] = true
		publish(t, st, q, publication(ev, "points_added", "guest:g"+string(rune('a'+i))))
	}
	testenv.Eventually(t, 60*time.Second, "every message delivered", func() bool {
		n := 0
		for _, m := range ps.Received() {
			if m.Status == http.StatusCreated {
				n++
			}
		}
		return n == guests
	})
	settled(t, q, 10*time.Second)
	got := map[string]int{}
	failedBefore := 0
	for _, m := range ps.Received() {
		var p channel.WebPushPayload
		if err := json.Unmarshal(m.Plaintext, &p); err != nil {
			t.Fatal(err)
		}
		if m.Status == http.StatusCreated {
			got[p.EventID]++
		} else {
			failedBefore++
		}
	}
	want := map[string]int{}
	for id := range ids {
		want[id] = 1
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("deliveries per event (-want +got):\n%s", d)
	}
	// How many attempts fit in the minute depends on River's scheduler,
	// which makes retried jobs available every 5 s of the wall's clock
	// (150 s of the queue's): each message was refused at least once.
	if failedBefore < guests {
		t.Errorf("%d refused attempts during the minute, want at least one per message", failedBefore)
	}
	if n := testutil.ToFloat64(q.metrics.retried.WithLabelValues("webpush")); n < guests {
		t.Errorf("retried = %v", n)
	}
	for id := range ids {
		// The sent step is recorded once the push service has answered.
		var ss []store.Status
		testenv.Eventually(t, 5*time.Second, "the sent step of "+id, func() bool {
			ss, _ = st.Statuses(t.Context(), []string{id}, "")
			return len(ss) > 0 && ss[len(ss)-1].State == StateSent
		})
		if ss[1].State != StateRetrying || !strings.Contains(ss[1].Detail, "503") {
			t.Errorf("timeline of %s: %+v", id, ss)
		}
	}
}

// TestDeadAfterMaxAttempts: a provider that never recovers leaves the
// delivery failed after the last attempt, counted dead.
func TestDeadAfterMaxAttempts(t *testing.T) {
	st := openSQLite(t)
	hook := channeltest.NewWebhookReceiver(t, false)
	hook.Answer(http.StatusBadGateway, "", "upstream down")
	cfg := testConfig(t)
	cfg.MaxAttempts = 3
	cfg.Webhook = webhookSender(t)
	cfg.Webhooks = []Webhook{{Name: "ops", URL: hook.URL(), Secret: channel.Secret(hook.Secret), Events: true}}
	q := startQueue(t, cfg, st)
	ev := systemAlert(notifyv1.AlertLevel_ALERT_LEVEL_INFO)
	publish(t, st, q, publication(ev, "system_alert", "admin"))
	testenv.Eventually(t, time.Minute, "the last attempt", func() bool {
		return testutil.ToFloat64(q.metrics.dead.WithLabelValues("webhook")) == 1
	})
	got := states(t, st, ev.Id, "")
	if want := []string{"webhook:queued", "webhook:retrying", "webhook:retrying", "webhook:failed"}; !slices.Equal(got, want) {
		t.Errorf("timeline %v, want %v", got, want)
	}
	if n := len(hook.Deliveries()); n != 3 {
		t.Errorf("%d attempts, want 3", n)
	}
}

// TestCriticalAlertEmailsAdmins: a CRITICAL system alert in the admin room
// reaches every admin with an address by email at once, with the headers
// and both parts; an INFO alert does not (email is off by default).
func TestCriticalAlertEmailsAdmins(t *testing.T) {
	st := openSQLite(t)
	srv := channeltest.NewSMTPServer(t, channeltest.SMTPOptions{})
	em, err := channel.NewEmail(channel.EmailConfig{Host: srv.Host(), Port: srv.Port(), Security: channel.EmailPlain, From: "Max Loyalty <noreply@maxloyalty.example>"})
	if err != nil {
		t.Fatal(err)
	}
	cfg := testConfig(t)
	cfg.Senders = []channel.Sender{em}
	q := startQueue(t, cfg, st)
	yes := true
	for _, a := range []struct{ id, email, locale string }{{"a1", "a1@maxloyalty.example", "en"}, {"a2", "a2@maxloyalty.example", "fr-FR"}} {
		if _, err := st.UpdateProfile(t.Context(), store.ProfileUpdate{UserID: a.id, Email: &a.email, Locale: &a.locale, Admin: &yes}); err != nil {
			t.Fatal(err)
		}
	}
	email := "guest@example.com"
	if _, err := st.UpdateProfile(t.Context(), store.ProfileUpdate{UserID: "g1", Email: &email}); err != nil {
		t.Fatal(err)
	}
	info := systemAlert(notifyv1.AlertLevel_ALERT_LEVEL_INFO)
	publish(t, st, q, publication(info, "system_alert", "admin"))
	crit := systemAlert(notifyv1.AlertLevel_ALERT_LEVEL_CRITICAL)
	p := publication(crit, "system_alert", "admin")
	p.crit = true
	publish(t, st, q, p)
	testenv.Eventually(t, 10*time.Second, "two emails", func() bool { return len(srv.Received()) == 2 })
	settled(t, q, 10*time.Second)
	if n := len(srv.Received()); n != 2 {
		t.Fatalf("%d emails, want 2", n)
	}
	byTo := map[string]channeltest.Mail{}
	for _, m := range srv.Received() {
		mail, err := channeltest.ParseMail(m.Data)
		if err != nil {
			t.Fatal(err)
		}
		if len(m.To) != 1 {
			t.Fatalf("recipients %v", m.To)
		}
		byTo[m.To[0]] = mail
	}
	for to, subject := range map[string]string{"a1@maxloyalty.example": "Critical alert", "a2@maxloyalty.example": "Alerte critique"} {
		m, ok := byTo[to]
		if !ok {
			t.Errorf("no email to %s", to)
			continue
		}
		if !strings.Contains(m.Header.Get("Subject"), subject) || m.Header.Get("Importance") != "high" ||
			!strings.Contains(m.Header.Get("Message-ID"), "maxloyalty.example") || m.Header.Get("To") == "" {
			t.Errorf("%s: headers %v", to, m.Header)
		}
		if !strings.Contains(m.Text, "The primary is unreachable.") || !strings.Contains(m.HTML, "The primary is unreachable.") {
			t.Errorf("%s: parts text %q html %q", to, m.Text, m.HTML)
		}
	}
	// The sent step is recorded once the SMTP server has answered.
	testenv.Eventually(t, 5*time.Second, "a1's timeline: queued, sent", func() bool {
		return slices.Equal(states(t, st, crit.Id, "a1"), []string{"email:queued", "email:sent"})
	})
	if got := states(t, st, info.Id, ""); len(got) != 0 {
		t.Errorf("the info alert was queued: %v", got)
	}
}

// TestStopReturnsInFlightJobs: a queue stopped while a send waits for its
// receiver cancels the attempt at the end of the drain; the job runs again
// on the next start and is delivered once.
func TestStopReturnsInFlightJobs(t *testing.T) {
	st := openSQLite(t)
	hook := channeltest.NewWebhookReceiver(t, false)
	hook.Hold()
	cfg := testConfig(t)
	cfg.Webhook = webhookSender(t)
	cfg.Webhooks = []Webhook{{Name: "ops", URL: hook.URL(), Secret: channel.Secret(hook.Secret), Events: true}}
	q, err := New(cfg, st)
	if err != nil {
		t.Fatal(err)
	}
	if err := q.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	ev := systemAlert(notifyv1.AlertLevel_ALERT_LEVEL_WARNING)
	publish(t, st, q, publication(ev, "system_alert", "admin"))
	testenv.Eventually(t, 10*time.Second, "the send held", func() bool { return hook.Held() == 1 })
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	err = q.Stop(ctx)
	cancel()
	if err != nil {
		t.Fatalf("Stop: %v", err)
	}
	hook.Release()
	if n := len(hook.Delivered()); n != 0 {
		t.Fatalf("delivered while stopped: %d", n)
	}
	q2 := startQueue(t, cfg, st)
	testenv.Eventually(t, 10*time.Second, "delivered after restart", func() bool { return hook.Delivered()[ev.Id] == 1 })
	settled(t, q2, 10*time.Second)
	if got := hook.Delivered(); got[ev.Id] != 1 {
		t.Errorf("deliveries = %v", got)
	}
	// The interrupted attempt did not count: the delivery's only attempt
	// is the one that succeeded.
	ss, _ := st.Statuses(t.Context(), []string{ev.Id}, "")
	if last := ss[len(ss)-1]; last.State != StateDelivered || last.Attempt != 1 {
		t.Errorf("timeline: %+v", ss)
	}
}

// TestMetricsCollect: the queue's collector registers and reports the
// depth of every configured queue.
func TestMetricsCollect(t *testing.T) {
	st := openSQLite(t)
	hook := channeltest.NewWebhookReceiver(t, false)
	hook.Hold()
	cfg := testConfig(t)
	cfg.Webhook = webhookSender(t)
	cfg.Webhooks = []Webhook{{Name: "ops", URL: hook.URL(), Secret: channel.Secret(hook.Secret)}}
	q := startQueue(t, cfg, st)
	t.Cleanup(hook.Release)
	reg := prometheus.NewPedanticRegistry()
	if err := reg.Register(q.Metrics()); err != nil {
		t.Fatal(err)
	}
	publish(t, st, q, publication(systemAlert(notifyv1.AlertLevel_ALERT_LEVEL_INFO), "system_alert", "admin"))
	testenv.Eventually(t, 10*time.Second, "the job running", func() bool { return hook.Held() == 1 })
	n, err := testutil.GatherAndCount(reg, "notify_delivery_queue_jobs", "notify_delivery_queue_oldest_seconds", "notify_delivery_sent_total")
	if err != nil {
		t.Fatal(err)
	}
	if n != 6 { // 4 states and the oldest job's age of the webhook queue, its sent counter
		t.Errorf("%d series, want 6", n)
	}
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	running := -1.0
	for _, f := range fams {
		if f.GetName() != "notify_delivery_queue_jobs" {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "state" && l.GetValue() == "running" {
					running = m.GetGauge().GetValue()
				}
			}
		}
	}
	if running != 1 {
		t.Errorf("running jobs = %v, want 1", running)
	}
}
