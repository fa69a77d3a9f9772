package channel_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/maxloyalty/notify/internal/channel"
	"github.com/maxloyalty/notify/internal/channel/channeltest"
)

const deviceToken = "a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90"

func newAPNs(t *testing.T, srv *channeltest.APNsServer, key []byte) *channel.APNs {
	t.Helper()
	a, err := channel.NewAPNs(channel.APNsConfig{
		AuthKey:  channel.Secret(key),
		KeyID:    channeltest.APNsKeyID,
		TeamID:   channeltest.APNsTeamID,
		Topic:    channeltest.APNsTopic,
		Endpoint: srv.URL(),
		RootCAs:  srv.CertPool(),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	return a
}

func TestAPNsDelivers(t *testing.T) {
	srv := channeltest.NewAPNsServer(t)
	a := newAPNs(t, srv, srv.AuthKey())
	m := message(t, "en")
	m.Critical = true

	res := a.Send(ctx(t), channel.APNsTarget{DeviceToken: deviceToken}, m)
	want(t, res, channel.Accepted, http.StatusOK, 0)
	got := srv.Received()
	if len(got) != 1 {
		t.Fatalf("APNs received %d requests", len(got))
	}
	r := got[0]
	if res.ProviderID == "" || r.DeviceToken != deviceToken {
		t.Errorf("provider id %q, token %q", res.ProviderID, r.DeviceToken)
	}
	h := r.Header
	if h.Get("apns-topic") != channeltest.APNsTopic || h.Get("apns-push-type") != "alert" || h.Get("apns-priority") != "10" {
		t.Errorf("headers %v", h)
	}
	if c := h.Get("apns-collapse-id"); len(c) == 0 || len(c) > 64 || strings.Contains(c, ":") {
		t.Errorf("apns-collapse-id %q", c)
	}
	exp, _ := strconv.ParseInt(h.Get("apns-expiration"), 10, 64)
	if d := time.Until(time.Unix(exp, 0)); d < 58*time.Minute || d > time.Hour {
		t.Errorf("apns-expiration in %v, want the message's hour", d)
	}
	aps := r.Payload["aps"].(map[string]any)
	wantAPS := map[string]any{
		"alert": map[string]any{
			"title": "+1,250 points at Chez Max & Fils",
			"body":  "You earned 1,250 points at Chez Max & Fils. Your balance is now 4,600 points.",
		},
		"sound":              "default",
		"thread-id":          h.Get("apns-collapse-id"),
		"interruption-level": "time-sensitive",
	}
	if diff := cmp.Diff(wantAPS, aps); diff != "" {
		t.Errorf("aps (-want +got):\n%s", diff)
	}
	event, _ := json.Marshal(r.Payload["event"])
	var wantEvent, gotEvent any
	json.Unmarshal([]byte(pointsAdded), &wantEvent)
	json.Unmarshal(event, &gotEvent)
	if r.Payload["eventId"] != m.EventID || r.Payload["type"] != m.Type || !cmp.Equal(wantEvent, gotEvent) {
		t.Errorf("custom keys: eventId %v type %v event %s", r.Payload["eventId"], r.Payload["type"], event)
	}

	m.Critical, m.Urgency, m.Topic = false, channel.UrgencyLow, ""
	want(t, a.Send(ctx(t), channel.APNsTarget{DeviceToken: deviceToken}, m), channel.Accepted, http.StatusOK, 0)
	r = srv.Received()[1]
	if r.Header.Get("apns-priority") != "5" || r.Header.Get("apns-collapse-id") != "" {
		t.Errorf("low urgency, no topic: headers %v", r.Header)
	}
}

func TestAPNsAnswers(t *testing.T) {
	srv := channeltest.NewAPNsServer(t)
	a := newAPNs(t, srv, srv.AuthKey())
	m := message(t, "en")
	for i, tc := range []struct {
		status  int
		reason  string
		outcome channel.Outcome
	}{
		{http.StatusGone, "Unregistered", channel.Gone},
		{http.StatusBadRequest, "DeviceTokenNotForTopic", channel.Permanent},
		{http.StatusTooManyRequests, "TooManyRequests", channel.Retryable},
		{http.StatusInternalServerError, "InternalServerError", channel.Retryable},
		{http.StatusServiceUnavailable, "ServiceUnavailable", channel.Retryable},
		{http.StatusServiceUnavailable, "Shutdown", channel.Retryable},
		{http.StatusRequestEntityTooLarge, "PayloadTooLarge", channel.Permanent},
	} {
		t.Run(tc.reason, func(t *testing.T) {
			token := deviceToken[:62] + strconv.Itoa(10+i)
			srv.Answer(token, channeltest.APNsAnswer{Status: tc.status, Reason: tc.reason})
			res := a.Send(ctx(t), channel.APNsTarget{DeviceToken: token}, m)
			want(t, res, tc.outcome, tc.status, 0)
			if res.Reason != tc.reason {
				t.Errorf("reason %q, want %q", res.Reason, tc.reason)
			}
		})
	}
	t.Run("BadDeviceToken", func(t *testing.T) {
		// Hex, but not a token APNs issued: APNs answers 400 BadDeviceToken.
		res := a.Send(ctx(t), channel.APNsTarget{DeviceToken: deviceToken + "abcd"}, m)
		want(t, res, channel.Gone, http.StatusBadRequest, 0)
	})
	t.Run("not hex", func(t *testing.T) {
		n := len(srv.Received())
		res := a.Send(ctx(t), channel.APNsTarget{DeviceToken: "../../3/device/" + deviceToken}, m)
		want(t, res, channel.Gone, 0, 0)
		isErr(t, res.Err, channel.ErrInvalidTarget)
		if len(srv.Received()) != n {
			t.Error("a malformed token reached APNs")
		}
	})
}

func TestAPNsProviderToken(t *testing.T) {
	srv := channeltest.NewAPNsServer(t)
	other, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, _ := x509.MarshalPKCS8PrivateKey(other)
	key := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	a := newAPNs(t, srv, key)
	res := a.Send(ctx(t), channel.APNsTarget{DeviceToken: deviceToken}, message(t, "en"))
	want(t, res, channel.Permanent, http.StatusForbidden, 0)
	if res.Reason != "InvalidProviderToken" {
		t.Errorf("reason %q", res.Reason)
	}

	for name, cfg := range map[string]channel.APNsConfig{
		"not a key":    {AuthKey: "-----BEGIN PRIVATE KEY-----\nc2VjcmV0\n-----END PRIVATE KEY-----\n", KeyID: "k", TeamID: "t", Topic: "x"},
		"no team":      {AuthKey: channel.Secret(key), KeyID: "k", Topic: "x"},
		"http origin":  {AuthKey: channel.Secret(key), KeyID: "k", TeamID: "t", Topic: "x", Endpoint: "http://127.0.0.1:1"},
		"path in host": {AuthKey: channel.Secret(key), KeyID: "k", TeamID: "t", Topic: "x", Endpoint: "https://a/3/device"},
	} {
		_, err := channel.NewAPNs(cfg)
		if err == nil {
			t.Errorf("%s: accepted", name)
			continue
		}
		noSecret(t, name, err.Error(), "c2VjcmV0")
	}
}
