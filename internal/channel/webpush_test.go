package channel_test

import (
	"crypto/ecdh"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/maxloyalty/notify/internal/channel"
	"github.com/maxloyalty/notify/internal/channel/channeltest"
)

type vapidKeys struct{ public, private string }

func newVAPID(t *testing.T) vapidKeys {
	t.Helper()
	k, err := ecdh.P256().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return vapidKeys{
		public:  base64.RawURLEncoding.EncodeToString(k.PublicKey().Bytes()),
		private: base64.RawURLEncoding.EncodeToString(k.Bytes()),
	}
}

func newWebPush(t *testing.T, ps *channeltest.PushService, keys vapidKeys, insecure bool) *channel.WebPush {
	t.Helper()
	w, err := channel.NewWebPush(channel.WebPushConfig{
		VAPIDPublicKey:  keys.public,
		VAPIDPrivateKey: channel.Secret(keys.private),
		Subject:         "mailto:ops@maxloyalty.example",
		RootCAs:         ps.CertPool(),
		AllowInsecure:   insecure,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close() })
	return w
}

func target(s *channeltest.PushSubscription) channel.WebPushTarget {
	return channel.WebPushTarget{Endpoint: s.Endpoint, P256dh: s.P256dh, Auth: s.Auth}
}

func TestWebPushDeliversEncryptedMessage(t *testing.T) {
	ps := channeltest.NewPushService(t)
	keys := newVAPID(t)
	w := newWebPush(t, ps, keys, true)
	sub := ps.Subscribe(t, keys.public)
	m := message(t, "en")
	m.Urgency = channel.UrgencyHigh

	res := w.Send(ctx(t), target(sub), m)
	want(t, res, channel.Accepted, http.StatusCreated, 0)
	if !strings.HasPrefix(res.ProviderID, ps.URL()+"/message/") {
		t.Errorf("provider id = %q, want the message's Location", res.ProviderID)
	}
	got := ps.Received()
	if len(got) != 1 {
		t.Fatalf("push service received %d messages, want 1", len(got))
	}
	r := got[0]
	if r.TTL != 3600 || r.Urgency != "high" || r.Subject != "mailto:ops@maxloyalty.example" || r.Audience != ps.URL() {
		t.Errorf("TTL %d, Urgency %q, sub %q, aud %q", r.TTL, r.Urgency, r.Subject, r.Audience)
	}
	if len(r.Topic) != 32 {
		t.Errorf("Topic %q: a topic with ':' must become 32 URL-safe characters", r.Topic)
	}
	if d := time.Until(r.Expires); d <= 0 || d > 24*time.Hour {
		t.Errorf("VAPID exp in %v", d)
	}
	var p channel.WebPushPayload
	if err := json.Unmarshal(r.Plaintext, &p); err != nil {
		t.Fatalf("decrypted payload %q: %v", r.Plaintext, err)
	}
	wantPayload := channel.WebPushPayload{
		EventID: m.EventID, Type: m.Type, Title: "+1,250 points at Chez Max & Fils",
		Body:  "You earned 1,250 points at Chez Max & Fils. Your balance is now 4,600 points.",
		Topic: m.Topic, Data: json.RawMessage(pointsAdded),
	}
	if diff := cmp.Diff(wantPayload, p); diff != "" {
		t.Errorf("decrypted payload (-want +got):\n%s", diff)
	}

	// The same topic collapses the same way on the next message.
	want(t, w.Send(ctx(t), target(sub), m), channel.Accepted, http.StatusCreated, 0)
	if got := ps.Received(); got[1].Topic != r.Topic {
		t.Errorf("second Topic %q, first %q", got[1].Topic, r.Topic)
	}
}

func TestWebPushDefaultsAndShortTopic(t *testing.T) {
	ps := channeltest.NewPushService(t)
	keys := newVAPID(t)
	w := newWebPush(t, ps, keys, true)
	sub := ps.Subscribe(t, keys.public)
	m := &channel.Message{EventID: "e2", Type: "EVENT_TYPE_SYSTEM_ALERT", Topic: "balance-c1",
		Content: channel.Content{Title: "t", Body: "b"}, Data: json.RawMessage(strings.Repeat(`"x`, 1) + strings.Repeat("y", 5000) + `"`)}
	want(t, w.Send(ctx(t), target(sub), m), channel.Accepted, http.StatusCreated, 0)
	r := ps.Received()[0]
	if r.TTL != int(channel.DefaultTTL/time.Second) || r.Urgency != "normal" || r.Topic != "balance-c1" {
		t.Errorf("TTL %d, Urgency %q, Topic %q", r.TTL, r.Urgency, r.Topic)
	}
	var p channel.WebPushPayload
	if err := json.Unmarshal(r.Plaintext, &p); err != nil {
		t.Fatal(err)
	}
	if p.Data != nil || p.EventID != "e2" {
		t.Errorf("an event too large for the record must be left out, id kept: %+v", p)
	}
}

func TestWebPushAnswers(t *testing.T) {
	ps := channeltest.NewPushService(t)
	keys := newVAPID(t)
	w := newWebPush(t, ps, keys, true)
	m := message(t, "en")
	for _, tc := range []struct {
		name       string
		status     int
		retryAfter string
		outcome    channel.Outcome
		after      time.Duration
	}{
		{"429 with Retry-After", http.StatusTooManyRequests, "120", channel.Retryable, 2 * time.Minute},
		{"500", http.StatusInternalServerError, "", channel.Retryable, 0},
		{"503 with a date", http.StatusServiceUnavailable, time.Now().Add(90 * time.Second).UTC().Format(http.TimeFormat), channel.Retryable, 0},
		{"413", http.StatusRequestEntityTooLarge, "", channel.Permanent, 0},
		{"400", http.StatusBadRequest, "", channel.Permanent, 0},
		{"404", http.StatusNotFound, "", channel.Gone, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sub := ps.Subscribe(t, keys.public)
			ps.Answer(sub.ID, tc.status, tc.retryAfter)
			res := w.Send(ctx(t), target(sub), m)
			if tc.name == "503 with a date" {
				if res.RetryAfter < 60*time.Second || res.RetryAfter > 90*time.Second {
					t.Errorf("Retry-After date gave %v, want about 90s", res.RetryAfter)
				}
				res.RetryAfter = 0
			}
			want(t, res, tc.outcome, tc.status, tc.after)
		})
	}

	t.Run("410 unsubscribed", func(t *testing.T) {
		sub := ps.Subscribe(t, keys.public)
		ps.Unsubscribe(sub.ID)
		want(t, w.Send(ctx(t), target(sub), m), channel.Gone, http.StatusGone, 0)
	})
	t.Run("404 unknown subscription", func(t *testing.T) {
		sub := ps.Subscribe(t, keys.public)
		tg := target(sub)
		tg.Endpoint = ps.URL() + "/push/never-made"
		want(t, w.Send(ctx(t), tg, m), channel.Gone, http.StatusNotFound, 0)
	})
	t.Run("VAPID key of another server", func(t *testing.T) {
		sub := ps.Subscribe(t, newVAPID(t).public)
		want(t, w.Send(ctx(t), target(sub), m), channel.Permanent, http.StatusUnauthorized, 0)
	})
}

func TestWebPushRefusesBadTargets(t *testing.T) {
	ps := channeltest.NewPushService(t)
	keys := newVAPID(t)
	sub := ps.Subscribe(t, keys.public)
	m := message(t, "en")

	// Without AllowInsecure, a subscription pointing at loopback is never contacted.
	strict := newWebPush(t, ps, keys, false)
	res := strict.Send(ctx(t), target(sub), m)
	want(t, res, channel.Permanent, 0, 0)
	isErr(t, res.Err, channel.ErrRefusedAddress)
	if strings.Contains(res.Err.Error(), sub.ID) {
		t.Errorf("error shows the endpoint: %v", res.Err)
	}

	w := newWebPush(t, ps, keys, true)
	for name, tg := range map[string]channel.WebPushTarget{
		"http endpoint": {Endpoint: "http://push.example/x", P256dh: sub.P256dh, Auth: sub.Auth},
		"bad p256dh":    {Endpoint: sub.Endpoint, P256dh: base64.RawURLEncoding.EncodeToString(make([]byte, 65)), Auth: sub.Auth},
		"short auth":    {Endpoint: sub.Endpoint, P256dh: sub.P256dh, Auth: "AAAA"},
	} {
		if name == "http endpoint" {
			if err := tg.Validate(); err == nil {
				t.Errorf("%s: Validate accepted it", name)
			}
			continue
		}
		res := w.Send(ctx(t), tg, m)
		want(t, res, channel.Gone, 0, 0)
		isErr(t, res.Err, channel.ErrInvalidTarget)
	}
	res = w.Send(ctx(t), channel.FCMTarget{Token: "x"}, m)
	isErr(t, res.Err, channel.ErrWrongTarget)
	if n := len(ps.Received()); n != 0 {
		t.Errorf("push service received %d messages for bad targets", n)
	}
}

func TestNewWebPushChecksKeys(t *testing.T) {
	a, b := newVAPID(t), newVAPID(t)
	for name, cfg := range map[string]channel.WebPushConfig{
		"mismatched pair": {VAPIDPublicKey: a.public, VAPIDPrivateKey: channel.Secret(b.private), Subject: "mailto:a@b.c"},
		"bad private key": {VAPIDPublicKey: a.public, VAPIDPrivateKey: "nope", Subject: "mailto:a@b.c"},
		"no subject":      {VAPIDPublicKey: a.public, VAPIDPrivateKey: channel.Secret(a.private)},
		"http subject":    {VAPIDPublicKey: a.public, VAPIDPrivateKey: channel.Secret(a.private), Subject: "http://x"},
	} {
		_, err := channel.NewWebPush(cfg)
		if err == nil {
			t.Errorf("%s: accepted", name)
			continue
		}
		noSecret(t, name, err.Error(), b.private)
		noSecret(t, name, err.Error(), a.private)
	}
}
