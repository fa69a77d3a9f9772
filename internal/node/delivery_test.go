package node_test

import (
	"context"
	"encoding/json"
	"flag"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/encoding/protojson"

	notifyv1 "github.com/maxloyalty/notify/gen/notify/v1"
	"github.com/maxloyalty/notify/internal/channel"
	"github.com/maxloyalty/notify/internal/channel/channeltest"
	"github.com/maxloyalty/notify/internal/node"
	"github.com/maxloyalty/notify/internal/testenv"
)

func jsonField(t *testing.T, b []byte, name string) string {
	t.Helper()
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("%q: %v", b, err)
	}
	var s string
	_ = json.Unmarshal(m[name], &s)
	return s
}

// TestDeliveryWebPushWhenUnseen: a guest with a registered web push
// subscription and no live stream gets a push of a PointsAdded the
// configured delay after it was published; the push service decrypts the
// event; the timeline says scheduled, then sent, no earlier than the delay.
func TestDeliveryWebPushWhenUnseen(t *testing.T) {
	t.Parallel()
	e := startDeliveryNode(t, nil)
	ctx := deliveryCtx(t)
	guest, svc := mint(t, guestID("g1")), mint(t, serviceClaims)
	sub, dev := e.subscribePush(t, ctx, guest)
	if dev.Channel != notifyv1.DeliveryChannel_DELIVERY_CHANNEL_WEB_PUSH || dev.Label != "Firefox on Linux" || dev.Hint != e.push.URL() {
		t.Errorf("device = %v", dev)
	}

	resp := publishAs(t, ctx, e.pub, svc, pointsReq(pointsAdded("g1", "r1", 250)))
	scheduled := e.awaitStep(t, ctx, guest, resp.EventId, "web_push:scheduled")
	sent := e.awaitStep(t, ctx, guest, resp.EventId, "web_push:sent")
	if d := sent.Time.AsTime().Sub(scheduled.Time.AsTime()); d < testUnseenDelay-50*time.Millisecond {
		t.Errorf("sent %v after it was scheduled, before the %v delay", d, testUnseenDelay)
	}
	msgs := e.push.Received()
	if len(msgs) != 1 || msgs[0].SubscriptionID != sub.ID {
		t.Fatalf("push messages = %+v, want one for %s", msgs, sub.ID)
	}
	var payload channel.WebPushPayload
	if err := json.Unmarshal(msgs[0].Plaintext, &payload); err != nil {
		t.Fatalf("decrypted payload %q: %v", msgs[0].Plaintext, err)
	}
	ev := &notifyv1.Event{}
	if err := protojson.Unmarshal(payload.Data, ev); err != nil {
		t.Fatalf("payload data %s: %v", payload.Data, err)
	}
	if ev.Id != resp.EventId || ev.GetPointsAdded().GetAmount() != 250 || ev.Room != "guest:g1" || payload.Type != "EVENT_TYPE_POINTS_ADDED" {
		t.Errorf("decrypted event = %v (%+v)", ev, payload)
	}
	if msgs[0].Topic == "" || msgs[0].TTL <= 0 {
		t.Errorf("push headers: Topic %q, TTL %d", msgs[0].Topic, msgs[0].TTL)
	}
}

// TestDeliveryCancelledWhenSeen: no push when the guest received the event
// on a live stream, or read it in the inbox before the delay.
func TestDeliveryCancelledWhenSeen(t *testing.T) {
	t.Parallel()
	// Long enough for the guest to see the event first on a loaded machine.
	const delay = 8 * time.Second
	e := startDeliveryNode(t, func(c *node.Config) { c.Delivery.UnseenDelay = delay })
	svc := mint(t, serviceClaims)
	t.Cleanup(func() {
		for _, m := range e.push.Received() {
			t.Errorf("push sent although seen: %s", m.Topic)
		}
	})

	// Each subtest's deadline starts when it runs: parallel subtests wait
	// for a free slot after this function returns.
	t.Run("live", func(t *testing.T) {
		t.Parallel()
		ctx := deliveryCtx(t)
		guest := mint(t, guestID("live1"))
		e.subscribePush(t, ctx, guest)
		s, _ := subscribe(t, ctx, e.pub, guest, &notifyv1.SubscribeRequest{})
		resp := publishAs(t, ctx, e.pub, svc, pointsReq(pointsAdded("live1", "r1", 10)))
		if ev := s.next(t); ev.Id != resp.EventId {
			t.Fatalf("stream got %s, want %s", ev.Id, resp.EventId)
		}
		step := e.awaitStep(t, ctx, guest, resp.EventId, "web_push:cancelled")
		if !strings.Contains(step.Detail, "live") {
			t.Errorf("cancelled because %q", step.Detail)
		}
		got, _ := e.timeline(t, ctx, guest, resp.EventId, nil)
		if !slices.Contains(got, "live:delivered") || slices.Contains(got, "web_push:sent") {
			t.Errorf("timeline %v", got)
		}
	})
	t.Run("read", func(t *testing.T) {
		t.Parallel()
		ctx := deliveryCtx(t)
		guest := mint(t, guestID("read1"))
		e.subscribePush(t, ctx, guest)
		resp := publishAs(t, ctx, e.pub, svc, pointsReq(pointsAdded("read1", "r1", 10)))
		list, err := e.inbox.ListNotifications(withToken(ctx, guest), &notifyv1.ListNotificationsRequest{})
		if err != nil || len(list.Notifications) != 1 {
			t.Fatalf("ListNotifications = %v, %v", list, err)
		}
		if _, err := e.inbox.MarkRead(withToken(ctx, guest), &notifyv1.MarkReadRequest{Ids: []string{list.Notifications[0].Id}}); err != nil {
			t.Fatal(err)
		}
		step := e.awaitStep(t, ctx, guest, resp.EventId, "web_push:cancelled")
		if !strings.Contains(step.Detail, "read") {
			t.Errorf("cancelled because %q", step.Detail)
		}
	})
}

// TestDeliveryCriticalAlertEmail: an admin with an address gets an email
// of a CRITICAL SystemAlert at once; a warning is not emailed.
func TestDeliveryCriticalAlertEmail(t *testing.T) {
	t.Parallel()
	e := startDeliveryNode(t, nil)
	ctx := deliveryCtx(t)
	admin, svc := mint(t, adminID("ops1")), mint(t, serviceClaims)
	r := restDo(t, ctx, http.MethodPatch, "http://"+e.tn.HTTPAddr()+"/v1/delivery/profile", admin, `{"email":"ops1@maxloyalty.example","locale":"fr"}`)
	var prof notifyv1.UpdateDeliveryProfileResponse
	if !restOK(t, r, "PATCH /v1/delivery/profile", &prof) || prof.Profile.GetEmail() != "ops1@maxloyalty.example" {
		t.Fatalf("profile = %v", prof.Profile)
	}

	warning := publishAs(t, ctx, e.pub, svc, systemAlert("disk at 80%"))
	critical := systemAlert("database down")
	critical.GetSystemAlert().Level = notifyv1.AlertLevel_ALERT_LEVEL_CRITICAL
	resp := publishAs(t, ctx, e.pub, svc, critical)
	e.awaitStep(t, ctx, admin, resp.EventId, "email:sent")
	msgs := e.smtp.Received()
	if len(msgs) != 1 {
		t.Fatalf("%d emails, want 1 (the critical alert only)", len(msgs))
	}
	if !slices.Equal(msgs[0].To, []string{"ops1@maxloyalty.example"}) {
		t.Errorf("RCPT TO %v", msgs[0].To)
	}
	m, err := channeltest.ParseMail(msgs[0].Data)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(m.Header.Get("Subject"), "database down") || m.Header.Get("Importance") != "high" ||
		!strings.Contains(m.Header.Get("To"), "ops1@maxloyalty.example") || !strings.Contains(m.Header.Get("Message-Id"), "@maxloyalty.example") {
		t.Errorf("header %v", m.Header)
	}
	if !strings.Contains(m.Text, "database down") || !strings.Contains(m.HTML, "database down") {
		t.Errorf("text %q html %q", m.Text, m.HTML)
	}
	if got, _ := e.timeline(t, ctx, admin, warning.EventId, nil); slices.Contains(got, "email:queued") {
		t.Errorf("warning timeline %v: emailed", got)
	}
}

// TestDeliveryWebhooks: the operator's webhook receives every event (with
// or without an inbox) and each status step of each user delivery, signed.
func TestDeliveryWebhooks(t *testing.T) {
	t.Parallel()
	// Attempts come at most a second apart (deliveryConfig's RetryMax): the
	// default ten would run out within the outage on a busy machine, where
	// seeing every delivery fail once can take seconds.
	e := startDeliveryNode(t, func(c *node.Config) {
		c.Delivery.DelayedTypes = []string{"none"}
		c.Delivery.MaxAttempts = 100
	})
	ctx := deliveryCtx(t)
	guest, svc := mint(t, guestID("g7")), mint(t, serviceClaims)
	e.subscribePush(t, ctx, guest)
	points := publishAs(t, ctx, e.pub, svc, pointsReq(pointsAdded("g7", "r1", 30)))
	status := publishAs(t, ctx, e.pub, svc, &notifyv1.PublishRequest{Payload: &notifyv1.PublishRequest_RestaurantStatusChanged{
		RestaurantStatusChanged: &notifyv1.RestaurantStatusChanged{RestaurantId: "r1", Status: notifyv1.RestaurantStatus_RESTAURANT_STATUS_ACTIVE},
	}})
	e.awaitStep(t, ctx, guest, points.EventId, "web_push:sent")
	svcTimeline := func() []string {
		got, _ := e.timeline(t, ctx, svc, points.EventId, &notifyv1.GetDeliveryStatusRequest{AllRecipients: true})
		return got
	}
	testenv.Eventually(t, deliveryTimeout/2, "the webhook steps of both events", func() bool {
		got, _ := e.timeline(t, ctx, svc, status.EventId, &notifyv1.GetDeliveryStatusRequest{AllRecipients: true})
		return slices.Contains(svcTimeline(), "webhook:delivered") && slices.Contains(got, "webhook:delivered")
	})
	// The web push's steps: queued and sent, each a delivery.status webhook.
	testenv.Eventually(t, deliveryTimeout/2, "the status webhooks", func() bool { return len(webhookTypes(t, e.hook)["delivery.status"]) >= 2 })
	types := webhookTypes(t, e.hook)
	if !slices.Contains(types["EVENT_TYPE_POINTS_ADDED"], points.EventId) || !slices.Contains(types["EVENT_TYPE_RESTAURANT_STATUS_CHANGED"], status.EventId) {
		t.Errorf("event webhooks %v", types)
	}
	var states []string
	for _, d := range e.hook.Deliveries() {
		if d.Err != nil {
			t.Errorf("webhook %s failed verification: %v", d.ID, d.Err)
		}
		if jsonField(t, d.Body, "type") == "delivery.status" {
			var body struct {
				Data delivery `json:"data"`
			}
			if err := json.Unmarshal(d.Body, &body); err != nil {
				t.Fatal(err)
			}
			if body.Data.EventID == points.EventId {
				states = append(states, body.Data.Channel+":"+body.Data.State)
			}
		}
	}
	slices.Sort(states)
	if !slices.Equal(states, []string{"webpush:queued", "webpush:sent"}) {
		t.Errorf("status webhooks of the points event: %v", states)
	}
	if got := svcTimeline(); !slices.Contains(got, "web_push:sent") || !slices.Contains(got, "webhook:delivered") {
		t.Errorf("service's view of every recipient: %v", got)
	}
}

// delivery is a delivery.status webhook's data.
type delivery struct {
	EventID string `json:"eventId"`
	UserID  string `json:"userId"`
	Channel string `json:"channel"`
	State   string `json:"state"`
}

// TestDeliveryTokenGone: a subscription the push service says is gone is
// removed at once, and its delivery fails with the reason.
func TestDeliveryTokenGone(t *testing.T) {
	t.Parallel()
	// Attempts come at most a second apart (deliveryConfig's RetryMax): the
	// default ten would run out within the outage on a busy machine, where
	// seeing every delivery fail once can take seconds.
	e := startDeliveryNode(t, func(c *node.Config) {
		c.Delivery.DelayedTypes = []string{"none"}
		c.Delivery.MaxAttempts = 100
	})
	ctx := deliveryCtx(t)
	guest, svc := mint(t, guestID("g9")), mint(t, serviceClaims)
	sub, dev := e.subscribePush(t, ctx, guest)
	e.push.Unsubscribe(sub.ID)
	resp := publishAs(t, ctx, e.pub, svc, pointsReq(pointsAdded("g9", "r1", 1)))
	step := e.awaitStep(t, ctx, guest, resp.EventId, "web_push:failed")
	if !strings.Contains(step.Detail, "410") || !strings.Contains(step.Detail, "removed") {
		t.Errorf("failed because %q", step.Detail)
	}
	list, err := e.dl.ListDevices(withToken(ctx, guest), &notifyv1.ListDevicesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(list.Devices) != 0 {
		t.Errorf("devices after gone: %v (was %s)", list.Devices, dev.Id)
	}
}

// providerDown is how much longer TestDeliveryProviderDown's providers
// stay down once every delivery has failed once: NOTIFY_TEST_PROVIDER_DOWN
// (a duration, e.g. 1m, for a long outage), else no longer.
func providerDown(t *testing.T) time.Duration {
	v := os.Getenv("NOTIFY_TEST_PROVIDER_DOWN")
	if v == "" {
		return 0
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 || d > 10*time.Minute {
		t.Fatalf("NOTIFY_TEST_PROVIDER_DOWN=%q: want a duration up to 10m", v)
	}
	return d
}

// TestDeliveryProviderDown: a push service and a webhook receiver that
// answer 503 for a while get their deliveries retried, with the answer in
// the timeline, and delivered once each when they are back.
func TestDeliveryProviderDown(t *testing.T) {
	t.Parallel()
	down := providerDown(t)
	// Attempts come at most a second apart (deliveryConfig's RetryMax): the
	// default ten would run out within the outage on a busy machine, where
	// seeing every delivery fail once can take seconds.
	e := startDeliveryNode(t, func(c *node.Config) {
		c.Delivery.DelayedTypes = []string{"none"}
		c.Delivery.MaxAttempts = 100
	})
	ctx, cancel := context.WithTimeout(context.Background(), deliveryTimeout+down)
	defer cancel()
	guest, svc := mint(t, guestID("g3")), mint(t, serviceClaims)
	sub, _ := e.subscribePush(t, ctx, guest)
	e.push.Answer(sub.ID, http.StatusServiceUnavailable, "")
	e.hook.Answer(http.StatusServiceUnavailable, "", "")
	var ids []string
	for i := range 3 {
		ids = append(ids, publishAs(t, ctx, e.pub, svc, pointsReq(pointsAdded("g3", "r1", int64(i+1)))).EventId)
	}
	for _, id := range ids {
		step := e.awaitStep(t, ctx, guest, id, "web_push:retrying")
		if !strings.Contains(step.Detail, "503") {
			t.Errorf("retrying because %q", step.Detail)
		}
	}
	// pacing: NOTIFY_TEST_PROVIDER_DOWN keeps them down longer, for more
	// attempts each (a long outage); by default they come back once every
	// delivery has failed once.
	time.Sleep(down)
	e.push.Answer(sub.ID, http.StatusCreated, "")
	e.hook.Answer(http.StatusNoContent, "", "")
	for _, id := range ids {
		e.awaitStep(t, ctx, guest, id, "web_push:sent")
	}
	testenv.Eventually(t, deliveryTimeout/2, "every event's webhook", func() bool {
		d := e.hook.Delivered()
		for _, id := range ids {
			if d[id] != 1 {
				return false
			}
		}
		return true
	})
	accepted := 0
	for _, m := range e.push.Received() {
		if m.Status == http.StatusCreated {
			accepted++
		}
	}
	if accepted != len(ids) {
		t.Errorf("%d pushes accepted, want %d (one each)", accepted, len(ids))
	}
}

// TestDeliveryServiceAccess: who may act for whom, over gRPC, REST and
// grpc-web.
func TestDeliveryServiceAccess(t *testing.T) {
	t.Parallel()
	e := startDeliveryNode(t, nil)
	ctx := deliveryCtx(t)
	guest, other, svc, admin := mint(t, guestID("g1")), mint(t, guestID("g2")), mint(t, serviceClaims), mint(t, adminID("ops1"))
	base := "http://" + e.tn.HTTPAddr()

	// grpc-web: the configuration and the VAPID key.
	var cfg notifyv1.GetDeliveryConfigResponse
	if code := webDelivery(t, ctx, e.tn.HTTPAddr(), "GetDeliveryConfig", guest, &notifyv1.GetDeliveryConfigRequest{}, &cfg); code != "0" {
		t.Fatalf("grpc-web GetDeliveryConfig: grpc-status %s", code)
	}
	if cfg.VapidPublicKey != e.vapid.public || !slices.Contains(cfg.Channels, notifyv1.DeliveryChannel_DELIVERY_CHANNEL_WEB_PUSH) ||
		!slices.Contains(cfg.Channels, notifyv1.DeliveryChannel_DELIVERY_CHANNEL_EMAIL) || cfg.UnseenDelay.AsDuration() != testUnseenDelay ||
		!slices.Contains(cfg.DelayedTypes, notifyv1.EventType_EVENT_TYPE_POINTS_ADDED) {
		t.Errorf("config = %v", &cfg)
	}

	sub, dev := e.subscribePush(t, ctx, guest)
	// Another guest sees nothing of it and may not act for g1.
	if _, err := e.dl.ListDevices(withToken(ctx, other), &notifyv1.ListDevicesRequest{UserId: "g1"}); err == nil {
		t.Error("g2 listed g1's devices")
	} else {
		wantCode(t, err, codes.PermissionDenied, "g2 lists g1's devices")
	}
	wantREST(t, restDo(t, ctx, http.MethodDelete, base+"/v1/users/g1/delivery/devices/"+dev.Id, admin, ""), http.StatusForbidden, codes.PermissionDenied, "admin removes g1's device")
	wantREST(t, restDo(t, ctx, http.MethodDelete, base+"/v1/delivery/devices/"+dev.Id, other, ""), http.StatusNotFound, codes.NotFound, "g2 removes g1's device")
	// A service acts for g1.
	var list notifyv1.ListDevicesResponse
	if restOK(t, restDo(t, ctx, http.MethodGet, base+"/v1/users/g1/delivery/devices", svc, ""), "service lists g1's devices", &list) &&
		(len(list.Devices) != 1 || list.Devices[0].Id != dev.Id) {
		t.Errorf("g1's devices = %v", list.Devices)
	}
	// Rules: a guest's own, over REST.
	r := restDo(t, ctx, http.MethodPut, base+"/v1/delivery/policy", guest,
		`{"rules":[{"eventType":"EVENT_TYPE_POINTS_ADDED","disabledChannels":["DELIVERY_CHANNEL_EMAIL"],"unseenDelay":"30s"}]}`)
	var pol notifyv1.UpdateDeliveryPolicyResponse
	if restOK(t, r, "PUT /v1/delivery/policy", &pol) && (len(pol.Rules) != 1 || pol.Rules[0].UnseenDelay.AsDuration() != 30*time.Second) {
		t.Errorf("rules = %v", pol.Rules)
	}
	wantREST(t, restDo(t, ctx, http.MethodPut, base+"/v1/delivery/policy", guest, `{"rules":[{"eventType":"EVENT_TYPE_POINTS_ADDED","enabledChannels":["DELIVERY_CHANNEL_LIVE"]}]}`),
		http.StatusBadRequest, codes.InvalidArgument, "a rule for the live channel", "enabled_channels")
	got, err := e.dl.GetDeliveryPolicy(withToken(ctx, svc), &notifyv1.GetDeliveryPolicyRequest{UserId: "g1"})
	if err != nil || len(got.Rules) != 1 || got.Rules[0].DisabledChannels[0] != notifyv1.DeliveryChannel_DELIVERY_CHANNEL_EMAIL {
		t.Errorf("service reads g1's rules: %v, %v", got, err)
	}
	// Bad registrations.
	for _, body := range []string{
		`{"webPush":{"endpoint":"http://push.example/x","keys":{"p256dh":"AAAA","auth":"AAAA"}}}`,
		`{"fcmToken":"abc"}`, // no FCM on this node
		`{"label":"nothing"}`,
	} {
		wantREST(t, restDo(t, ctx, http.MethodPost, base+"/v1/delivery/devices", guest, body), http.StatusBadRequest, codes.InvalidArgument, body)
	}
	// Timelines: a guest reads its own only; an admin reads g1's.
	resp := publishAs(t, ctx, e.pub, svc, pointsReq(pointsAdded("g1", "r1", 5)))
	e.awaitStep(t, ctx, guest, resp.EventId, "web_push:scheduled")
	if steps, _ := e.timeline(t, ctx, other, resp.EventId, nil); len(steps) != 0 {
		t.Errorf("g2 sees g1's steps: %v", steps)
	}
	if _, err := e.dl.GetDeliveryStatus(withToken(ctx, other), &notifyv1.GetDeliveryStatusRequest{EventIds: []string{resp.EventId}, UserId: "g1"}); err == nil {
		t.Error("g2 read g1's timeline")
	}
	var st notifyv1.GetDeliveryStatusResponse
	if restOK(t, restDo(t, ctx, http.MethodGet, base+"/v1/users/g1/delivery/status?eventIds="+resp.EventId, admin, ""), "admin reads g1's timeline", &st) &&
		(len(st.Timelines) != 1 || st.Timelines[0].Steps[0].UserId != "g1") {
		t.Errorf("admin's view of g1: %v", &st)
	}
	// Removal by token (what a browser knows), over REST.
	if restOK(t, restDo(t, ctx, http.MethodPost, base+"/v1/delivery/devices:remove", guest, `{"token":"`+sub.Endpoint+`"}`), "remove by token", nil) {
		left, err := e.dl.ListDevices(withToken(ctx, guest), &notifyv1.ListDevicesRequest{})
		if err != nil || len(left.Devices) != 0 {
			t.Errorf("devices after removal: %v, %v", left, err)
		}
	}
}

// TestDeliveryConfigPrintMasksSecrets: `config print` never shows a
// delivery secret.
func TestDeliveryConfigPrintMasksSecrets(t *testing.T) {
	var cfg node.Config
	fs := flag.NewFlagSet("notifyd", flag.ContinueOnError)
	if err := cfg.BindFlags(fs); err != nil {
		t.Fatal(err)
	}
	secrets := map[string]string{
		"webpush-vapid-private-key": "vapid-private-value",
		"fcm-credentials":           `{"private_key":"fcm-private-value"}`,
		"apns-key":                  "apns-private-value",
		"smtp-password":             "smtp-password-value",
		"webhook-secrets":           "ops=whsec_webhook-secret-value",
	}
	for name, v := range secrets {
		if err := fs.Set(name, v); err != nil {
			t.Fatal(err)
		}
	}
	var out strings.Builder
	node.PrintConfig(&out, fs)
	for name, v := range secrets {
		if strings.Contains(out.String(), v) || strings.Contains(out.String(), strings.TrimPrefix(v, "ops=")) {
			t.Errorf("config print shows %s", name)
		}
		if !strings.Contains(out.String(), name+" = ********") {
			t.Errorf("config print: %s not masked", name)
		}
	}
}

// TestDeliveryMobilePush: FCM and APNs configured from key files reach
// their peers (HTTP/2, the documented APIs); the tokens they say are gone
// (FCM UNREGISTERED, APNs 410 Unregistered) are removed at once.
func TestDeliveryMobilePush(t *testing.T) {
	t.Parallel()
	fcm, apns := channeltest.NewFCMServer(t), channeltest.NewAPNsServer(t)
	dir := t.TempDir()
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	e := startDeliveryNode(t, func(c *node.Config) {
		d := &c.Delivery
		d.DelayedTypes = []string{"none"}
		d.FCMCredentialsFile = write("fcm.json", fcm.CredentialsJSON())
		d.FCMEndpoint = fcm.Endpoint()
		d.APNsKeyFile = write("apns.p8", apns.AuthKey())
		d.APNsKeyID, d.APNsTeamID, d.APNsTopic = channeltest.APNsKeyID, channeltest.APNsTeamID, "com.maxloyalty.app"
		d.APNsEndpoint = apns.URL()
		d.CAFile = certsFile(t, fcm.Endpoint(), apns.URL())
		d.WebPushVAPIDPrivateKey = "" // web push off: its service is not trusted here
	})
	ctx := deliveryCtx(t)
	guest, svc := mint(t, guestID("m1")), mint(t, serviceClaims)
	goneAPNs := strings.Repeat("ab", 32)
	for _, req := range []*notifyv1.RegisterDeviceRequest{
		{Device: &notifyv1.RegisterDeviceRequest_FcmToken{FcmToken: "fcm-live"}, Label: "Pixel"},
		{Device: &notifyv1.RegisterDeviceRequest_FcmToken{FcmToken: "fcm-gone"}},
		{Device: &notifyv1.RegisterDeviceRequest_ApnsToken{ApnsToken: strings.Repeat("cd", 32)}, Label: "iPhone"},
		{Device: &notifyv1.RegisterDeviceRequest_ApnsToken{ApnsToken: goneAPNs}},
	} {
		if _, err := e.dl.RegisterDevice(withToken(ctx, guest), req); err != nil {
			t.Fatalf("RegisterDevice(%v): %v", req, err)
		}
	}
	fcm.Answer("fcm-gone", channeltest.FCMAnswer{HTTP: http.StatusNotFound, Status: "NOT_FOUND", ErrorCode: "UNREGISTERED"})
	apns.Answer(goneAPNs, channeltest.APNsAnswer{Status: http.StatusGone, Reason: "Unregistered"})

	resp := publishAs(t, ctx, e.pub, svc, pointsReq(pointsAdded("m1", "r1", 40)))
	want := []string{"apns:failed", "apns:sent", "fcm:failed", "fcm:sent"}
	var got []string
	testenv.Eventually(t, deliveryTimeout/2, "the mobile deliveries' outcomes", func() bool {
		all, _ := e.timeline(t, ctx, guest, resp.EventId, nil)
		got = nil
		for _, s := range all {
			if strings.HasSuffix(s, ":sent") || strings.HasSuffix(s, ":failed") {
				got = append(got, s)
			}
		}
		slices.Sort(got)
		return slices.Equal(got, want)
	})
	list, err := e.dl.ListDevices(withToken(ctx, guest), &notifyv1.ListDevicesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var labels []string
	for _, d := range list.Devices {
		labels = append(labels, d.Label)
	}
	if !slices.Equal(labels, []string{"Pixel", "iPhone"}) {
		t.Errorf("devices left: %v, want the two live ones", list.Devices)
	}
	if n := len(apns.Received()); n != 2 {
		t.Errorf("APNs got %d requests, want 2", n)
	}
	for _, r := range apns.Received() {
		if r.Header.Get("apns-topic") != "com.maxloyalty.app" || r.Header.Get("apns-collapse-id") == "" {
			t.Errorf("APNs headers %v", r.Header)
		}
	}
}
