package channel_test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/maxloyalty/notify/internal/channel"
	"github.com/maxloyalty/notify/internal/channel/channeltest"
)

func newFCM(t *testing.T, srv *channeltest.FCMServer, creds []byte) *channel.FCM {
	t.Helper()
	f, err := channel.NewFCM(context.Background(), channel.FCMConfig{
		CredentialsJSON: channel.Secret(creds),
		Endpoint:        srv.Endpoint(),
		RootCAs:         srv.CertPool(),
		AllowPrivate:    true,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

func TestFCMDelivers(t *testing.T) {
	srv := channeltest.NewFCMServer(t)
	f := newFCM(t, srv, srv.CredentialsJSON())
	m := message(t, "fr-FR")
	m.Critical = true

	res := f.Send(ctx(t), channel.FCMTarget{Token: "token-1"}, m)
	want(t, res, channel.Accepted, http.StatusOK, 0)
	if res.ProviderID != "projects/notify-test/messages/0:1" {
		t.Errorf("provider id %q", res.ProviderID)
	}
	want(t, f.Send(ctx(t), channel.FCMTarget{Token: "token-2"}, m), channel.Accepted, http.StatusOK, 0)
	if n := srv.Exchanges(); n != 1 {
		t.Errorf("%d token exchanges for two sends, want 1 (the access token is reused)", n)
	}
	got := srv.Received()
	if len(got) != 2 || got[0].Token != "token-1" || got[1].Token != "token-2" {
		t.Fatalf("received %+v", got)
	}
	msg := got[0].Message
	collapse := msg["android"].(map[string]any)["collapse_key"].(string)
	if len(collapse) != 43 && len(collapse) != 64 {
		t.Errorf("collapse_key %q", collapse)
	}
	wantMsg := map[string]any{
		"token": "token-1",
		"notification": map[string]any{
			"title": "+1 250 points au restaurant Chez Max & Fils",
			"body":  "Vous avez gagné 1 250 points au restaurant Chez Max & Fils. Votre solde est maintenant de 4 600 points.",
		},
		"data": map[string]any{"eventId": m.EventID, "type": m.Type, "event": pointsAdded},
		"android": map[string]any{
			"collapse_key": collapse, "priority": "high", "ttl": "3600s",
			"notification": map[string]any{"tag": collapse},
		},
		"apns": map[string]any{"headers": map[string]any{
			"apns-priority": "10", "apns-collapse-id": collapse,
			"apns-expiration": msg["apns"].(map[string]any)["headers"].(map[string]any)["apns-expiration"],
		}},
	}
	// French groups digits with a no-break space.
	normalise := cmp.Transformer("spaces", spaces)
	if diff := cmp.Diff(wantMsg, msg, normalise); diff != "" {
		t.Errorf("FCM message (-want +got):\n%s", diff)
	}
}

func TestFCMAnswers(t *testing.T) {
	srv := channeltest.NewFCMServer(t)
	f := newFCM(t, srv, srv.CredentialsJSON())
	m := message(t, "en")
	for _, tc := range []struct {
		name    string
		answer  channeltest.FCMAnswer
		outcome channel.Outcome
		after   time.Duration
	}{
		{"unregistered", channeltest.FCMAnswer{HTTP: 404, Status: "NOT_FOUND", ErrorCode: "UNREGISTERED"}, channel.Gone, 0},
		{"invalid token", channeltest.FCMAnswer{HTTP: 400, Status: "INVALID_ARGUMENT", ErrorCode: "INVALID_ARGUMENT", TokenViolation: true}, channel.Gone, 0},
		{"invalid argument", channeltest.FCMAnswer{HTTP: 400, Status: "INVALID_ARGUMENT", ErrorCode: "INVALID_ARGUMENT"}, channel.Permanent, 0},
		{"sender id mismatch", channeltest.FCMAnswer{HTTP: 403, Status: "PERMISSION_DENIED", ErrorCode: "SENDER_ID_MISMATCH"}, channel.Permanent, 0},
		{"unavailable", channeltest.FCMAnswer{HTTP: 503, Status: "UNAVAILABLE", ErrorCode: "UNAVAILABLE", RetryAfter: "30"}, channel.Retryable, 30 * time.Second},
		{"internal", channeltest.FCMAnswer{HTTP: 500, Status: "INTERNAL", ErrorCode: "INTERNAL", RetryAfter: "5"}, channel.Retryable, 5 * time.Second},
		{"quota exceeded", channeltest.FCMAnswer{HTTP: 429, Status: "RESOURCE_EXHAUSTED", ErrorCode: "QUOTA_EXCEEDED", RetryAfter: "60"}, channel.Retryable, time.Minute},
	} {
		t.Run(tc.name, func(t *testing.T) {
			token := "tok-" + strings.ReplaceAll(tc.name, " ", "-")
			srv.Answer(token, tc.answer)
			res := f.Send(ctx(t), channel.FCMTarget{Token: token}, m)
			want(t, res, tc.outcome, tc.answer.HTTP, tc.after)
			if !strings.HasPrefix(res.Reason, tc.answer.ErrorCode) {
				t.Errorf("reason %q, want it to start with %s", res.Reason, tc.answer.ErrorCode)
			}
			n := 0
			for _, r := range srv.Received() {
				if r.Token == token {
					n++
				}
			}
			// The SDK retries 503s by itself; the sender must let exactly one through.
			if n != 1 {
				t.Errorf("FCM received %d requests for one send", n)
			}
		})
	}
}

func TestFCMCredentials(t *testing.T) {
	srv := channeltest.NewFCMServer(t)
	// A service account key the token endpoint does not know.
	var creds map[string]string
	if err := json.Unmarshal(srv.CredentialsJSON(), &creds); err != nil {
		t.Fatal(err)
	}
	other, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	der, _ := x509.MarshalPKCS8PrivateKey(other)
	creds["private_key"] = string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
	b, _ := json.Marshal(creds)
	f := newFCM(t, srv, b)
	res := f.Send(ctx(t), channel.FCMTarget{Token: "token-1"}, message(t, "en"))
	want(t, res, channel.Permanent, http.StatusBadRequest, 0)
	if len(srv.Received()) != 0 {
		t.Error("FCM received a message without a valid access token")
	}
	noSecret(t, "result", res.Err.Error()+res.Reason, creds["private_key"][40:80])

	for name, cfg := range map[string]channel.FCMConfig{
		"not JSON":   {CredentialsJSON: "-----BEGIN PRIVATE KEY-----"},
		"user creds": {CredentialsJSON: `{"type":"authorized_user","client_id":"x","client_secret":"s3cr3t","refresh_token":"r"}`},
		"no project": {CredentialsJSON: channel.Secret(strings.Replace(string(b), `"project_id":"notify-test"`, `"project_id":""`, 1))},
	} {
		_, err := channel.NewFCM(context.Background(), cfg)
		if err == nil {
			t.Errorf("%s: accepted", name)
			continue
		}
		noSecret(t, name, err.Error(), "s3cr3t")
		noSecret(t, name, err.Error(), creds["private_key"][40:80])
	}
}

func TestFCMUnreachable(t *testing.T) {
	srv := channeltest.NewFCMServer(t)
	f, err := channel.NewFCM(context.Background(), channel.FCMConfig{
		CredentialsJSON: channel.Secret(srv.CredentialsJSON()),
		Endpoint:        srv.Endpoint(),
		RootCAs:         srv.CertPool(),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	// Without AllowPrivate the loopback token endpoint is refused before any request.
	res := f.Send(ctx(t), channel.FCMTarget{Token: "token-1"}, message(t, "en"))
	want(t, res, channel.Permanent, 0, 0)
	isErr(t, res.Err, channel.ErrRefusedAddress)
	if srv.Exchanges() != 0 {
		t.Error("token endpoint reached")
	}
}
