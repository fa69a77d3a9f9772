package channel_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/maxloyalty/notify/internal/channel"
	"github.com/maxloyalty/notify/internal/channel/channeltest"
)

func newWebhook(t *testing.T, rcv *channeltest.WebhookReceiver, timeout time.Duration) *channel.Webhook {
	t.Helper()
	w, err := channel.NewWebhook(channel.WebhookConfig{RootCAs: rcv.CertPool(), Timeout: timeout})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close() })
	return w
}

func TestWebhookSignedDelivery(t *testing.T) {
	rcv := channeltest.NewWebhookReceiver(t, true)
	w := newWebhook(t, rcv, 0)
	m := message(t, "en")
	to := channel.WebhookTarget{URL: rcv.URL(), Secret: channel.Secret(rcv.Secret)}

	want(t, w.Send(ctx(t), to, m), channel.Accepted, http.StatusNoContent, 0)
	want(t, w.Send(ctx(t), to, m), channel.Accepted, http.StatusNoContent, 0)
	got := rcv.Deliveries()
	if len(got) != 2 {
		t.Fatalf("receiver got %d deliveries", len(got))
	}
	d := got[0]
	if d.Err != nil {
		t.Fatalf("signature check failed: %v", d.Err)
	}
	if d.ID != m.EventID || got[1].ID != m.EventID {
		t.Errorf("webhook-id %q and %q, want the event id on every send", d.ID, got[1].ID)
	}
	if ts, _ := strconv.ParseInt(d.Timestamp, 10, 64); time.Since(time.Unix(ts, 0)).Abs() > time.Minute {
		t.Errorf("webhook-timestamp %q", d.Timestamp)
	}
	if d.Header.Get("Content-Type") != "application/json" || !strings.HasPrefix(d.Header.Get("webhook-signature"), "v1,") {
		t.Errorf("headers %v", d.Header)
	}
	var p channel.WebhookPayload
	if err := json.Unmarshal(d.Body, &p); err != nil {
		t.Fatal(err)
	}
	if p.Type != m.Type || string(p.Data) != pointsAdded {
		t.Errorf("payload type %q data %s", p.Type, p.Data)
	}
	if _, err := time.Parse(time.RFC3339, p.Timestamp); err != nil {
		t.Errorf("payload timestamp %q: %v", p.Timestamp, err)
	}
	noSecret(t, "delivery headers", strings.Join(d.Header.Values("webhook-signature"), " "), strings.TrimPrefix(rcv.Secret, "whsec_"))
}

// TestWebhookReceiverVerification checks the reference verification itself, so that the
// receiver's acceptance of the sender's deliveries means something.
func TestWebhookReceiverVerification(t *testing.T) {
	rcv := channeltest.NewWebhookReceiver(t, false)
	w := newWebhook(t, rcv, 0)
	m := message(t, "en")
	want(t, w.Send(ctx(t), channel.WebhookTarget{URL: rcv.URL(), Secret: channel.Secret(rcv.Secret)}, m),
		channel.Accepted, http.StatusNoContent, 0)
	d := rcv.Deliveries()[0]
	now := time.Now()

	if err := channeltest.VerifyWebhook(rcv.Secret, d.Header, d.Body, now); err != nil {
		t.Fatalf("genuine delivery refused: %v", err)
	}
	tampered := bytes.Replace(d.Body, []byte("1250"), []byte("9250"), 1)
	if err := channeltest.VerifyWebhook(rcv.Secret, d.Header, tampered, now); err != channeltest.ErrWebhookSignature {
		t.Errorf("tampered body: %v", err)
	}
	other := channeltest.NewWebhookReceiver(t, false)
	if err := channeltest.VerifyWebhook(other.Secret, d.Header, d.Body, now); err != channeltest.ErrWebhookSignature {
		t.Errorf("other secret: %v", err)
	}
	h := d.Header.Clone()
	h.Set("webhook-id", "another-id")
	if err := channeltest.VerifyWebhook(rcv.Secret, h, d.Body, now); err != channeltest.ErrWebhookSignature {
		t.Errorf("changed id: %v", err)
	}
	h = d.Header.Clone()
	h.Set("webhook-signature", "v1,bm90IGl0 "+d.Header.Get("webhook-signature"))
	if err := channeltest.VerifyWebhook(rcv.Secret, h, d.Body, now); err != nil {
		t.Errorf("a list with the right signature second: %v", err)
	}
	for _, skew := range []time.Duration{6 * time.Minute, -6 * time.Minute} {
		if err := channeltest.VerifyWebhook(rcv.Secret, d.Header, d.Body, now.Add(skew)); err != channeltest.ErrWebhookTimestamp {
			t.Errorf("clock %v away: %v", skew, err)
		}
	}
	if err := channeltest.VerifyWebhook(rcv.Secret, d.Header, d.Body, now.Add(4*time.Minute)); err != nil {
		t.Errorf("within tolerance: %v", err)
	}

	// A captured delivery replayed after the tolerance is refused by the receiver.
	rcv.Now = func() time.Time { return now.Add(6 * time.Minute) }
	req, _ := http.NewRequest(http.MethodPost, rcv.URL(), bytes.NewReader(d.Body))
	req.Header = d.Header.Clone()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	http.DefaultClient.CloseIdleConnections()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("replay answered %d", resp.StatusCode)
	}
	// And so is a fresh delivery signed with the wrong secret.
	rcv.Now = nil
	res := w.Send(ctx(t), channel.WebhookTarget{URL: rcv.URL(), Secret: channel.Secret(other.Secret)}, m)
	want(t, res, channel.Permanent, http.StatusUnauthorized, 0)
}

func TestWebhookAnswers(t *testing.T) {
	rcv := channeltest.NewWebhookReceiver(t, false)
	w := newWebhook(t, rcv, 0)
	to := channel.WebhookTarget{URL: rcv.URL(), Secret: channel.Secret(rcv.Secret)}
	m := message(t, "en")
	for _, tc := range []struct {
		status     int
		retryAfter string
		outcome    channel.Outcome
		after      time.Duration
	}{
		{http.StatusOK, "", channel.Accepted, 0},
		{http.StatusAccepted, "", channel.Accepted, 0},
		{http.StatusGone, "", channel.Permanent, 0},
		{http.StatusTooManyRequests, "7", channel.Retryable, 7 * time.Second},
		{http.StatusServiceUnavailable, "120", channel.Retryable, 2 * time.Minute},
		{http.StatusInternalServerError, "", channel.Retryable, 0},
		{http.StatusRequestTimeout, "", channel.Retryable, 0},
		{http.StatusBadRequest, "", channel.Permanent, 0},
		{http.StatusNotFound, "", channel.Permanent, 0},
		{http.StatusFound, "", channel.Permanent, 0},
	} {
		t.Run(strconv.Itoa(tc.status), func(t *testing.T) {
			rcv.Answer(tc.status, tc.retryAfter, strings.Repeat("a reason. ", 20000))
			res := w.Send(ctx(t), to, m)
			want(t, res, tc.outcome, tc.status, tc.after)
			if tc.outcome != channel.Accepted && (len(res.Reason) == 0 || len(res.Reason) > 512) {
				t.Errorf("reason of %d bytes, want 1 to 512", len(res.Reason))
			}
		})
	}
}

func TestWebhookTimeoutAndBadTargets(t *testing.T) {
	release := make(chan struct{})
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(slow.Close)
	t.Cleanup(func() { close(release) })
	w, err := channel.NewWebhook(channel.WebhookConfig{Timeout: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	secret := channel.Secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
	m := message(t, "en")
	res := w.Send(ctx(t), channel.WebhookTarget{URL: slow.URL + "/hook?token=capability", Secret: secret}, m)
	want(t, res, channel.Retryable, 0, 0)
	noSecret(t, "error", res.Err.Error(), "capability")

	for name, to := range map[string]channel.WebhookTarget{
		"no whsec_ prefix": {URL: slow.URL, Secret: "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"},
		"short secret":     {URL: slow.URL, Secret: "whsec_c2hvcnQ="},
		"not a URL":        {URL: "ftp://example.com/x", Secret: secret},
	} {
		res := w.Send(ctx(t), to, m)
		want(t, res, channel.Permanent, 0, 0)
		isErr(t, res.Err, channel.ErrInvalidTarget)
		noSecret(t, name, res.Err.Error(), "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
	}

	strict, err := channel.NewWebhook(channel.WebhookConfig{RefusePrivate: true})
	if err != nil {
		t.Fatal(err)
	}
	defer strict.Close()
	res = strict.Send(ctx(t), channel.WebhookTarget{URL: slow.URL, Secret: secret}, m)
	want(t, res, channel.Permanent, 0, 0)
	isErr(t, res.Err, channel.ErrRefusedAddress)
}
