package channeltest

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// WebhookTolerance is how far a delivery's timestamp may be from the receiver's clock,
// as the Standard Webhooks reference libraries allow.
const WebhookTolerance = 5 * time.Minute

// Errors of VerifyWebhook.
var (
	ErrWebhookHeaders   = errors.New("webhook: missing webhook-id, webhook-timestamp or webhook-signature")
	ErrWebhookTimestamp = errors.New("webhook: timestamp outside the tolerance")
	ErrWebhookSignature = errors.New("webhook: no matching signature")
)

// VerifyWebhook is the Standard Webhooks reference verification, written from the
// specification: the secret is "whsec_" and base64; the signed content is
// "{webhook-id}.{webhook-timestamp}.{body}"; webhook-signature is a space-separated list
// of "v1,{base64 HMAC-SHA256}", any of which may match (compared in constant time); a
// timestamp further than WebhookTolerance from now, either way, is refused, so that a
// captured delivery cannot be replayed later.
func VerifyWebhook(secret string, h http.Header, body []byte, now time.Time) error {
	id, ts, sigs := h.Get("webhook-id"), h.Get("webhook-timestamp"), h.Get("webhook-signature")
	if id == "" || ts == "" || sigs == "" {
		return ErrWebhookHeaders
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return ErrWebhookTimestamp
	}
	t := time.Unix(sec, 0)
	if t.Before(now.Add(-WebhookTolerance)) || t.After(now.Add(WebhookTolerance)) {
		return ErrWebhookTimestamp
	}
	key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(secret, "whsec_"))
	if err != nil {
		return fmt.Errorf("webhook: secret: %w", err)
	}
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(id + "." + ts + "."))
	mac.Write(body)
	want := mac.Sum(nil)
	for _, s := range strings.Fields(sigs) {
		version, sig, ok := strings.Cut(s, ",")
		if !ok || version != "v1" {
			continue
		}
		got, err := base64.StdEncoding.DecodeString(sig)
		if err != nil {
			continue
		}
		if hmac.Equal(got, want) {
			return nil
		}
	}
	return ErrWebhookSignature
}

// WebhookReceiver is an operator's endpoint on 127.0.0.1 that verifies every delivery
// with VerifyWebhook (401 when it fails) and answers as scripted (204 by default).
type WebhookReceiver struct {
	srv *httptest.Server
	// Secret is the endpoint's signing secret, "whsec_" and 32 random bytes in base64.
	Secret string
	// Now is the receiver's clock; nil is time.Now.
	Now func() time.Time

	mu         sync.Mutex
	deliveries []WebhookDelivery
	status     int
	retryAfter string
	body       string
	gate       chan struct{} // non-nil: genuine deliveries wait for it to close
	held       int
}

// WebhookDelivery is one request the receiver got.
type WebhookDelivery struct {
	ID        string
	Timestamp string
	Header    http.Header
	Body      []byte
	// Err is the verification's result; nil for a genuine delivery.
	Err error
	// Status is what the receiver answered.
	Status int
}

// NewWebhookReceiver starts a receiver (TLS when tls is set) stopped by t's cleanup.
func NewWebhookReceiver(t testing.TB, tls bool) *WebhookReceiver {
	t.Helper()
	key := make([]byte, 32)
	rand.Read(key)
	w := &WebhookReceiver{Secret: "whsec_" + base64.StdEncoding.EncodeToString(key), status: http.StatusNoContent}
	w.srv = httptest.NewUnstartedServer(http.HandlerFunc(w.serve))
	if tls {
		w.srv.EnableHTTP2 = true
		w.srv.StartTLS()
	} else {
		w.srv.Start()
	}
	t.Cleanup(w.srv.Close)
	return w
}

// URL is the endpoint's URL.
func (w *WebhookReceiver) URL() string { return w.srv.URL + "/hooks/notify" }

// CertPool trusts the receiver's certificate (TLS only).
func (w *WebhookReceiver) CertPool() *x509.CertPool {
	pool := x509.NewCertPool()
	if c := w.srv.Certificate(); c != nil {
		pool.AddCert(c)
	}
	return pool
}

// Answer makes the receiver answer genuine deliveries with status, Retry-After and body.
func (w *WebhookReceiver) Answer(status int, retryAfter, body string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.status, w.retryAfter, w.body = status, retryAfter, body
}

// Hold makes genuine deliveries wait, unanswered, until Release or until their
// client goes away (a delivery whose client went away is recorded with Status 0 and
// an error: the sender never learnt of it, so it was not delivered).
func (w *WebhookReceiver) Hold() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.gate == nil {
		w.gate = make(chan struct{})
	}
}

// Release answers the held deliveries and stops holding.
func (w *WebhookReceiver) Release() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.gate != nil {
		close(w.gate)
		w.gate = nil
	}
}

// Held is the number of deliveries waiting for Release.
func (w *WebhookReceiver) Held() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.held
}

// Delivered returns the genuine deliveries answered with a 2xx status, by webhook-id,
// each with how many times it was delivered.
func (w *WebhookReceiver) Delivered() map[string]int {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := map[string]int{}
	for _, d := range w.deliveries {
		if d.Err == nil && d.Status >= 200 && d.Status < 300 {
			out[d.ID]++
		}
	}
	return out
}

// Deliveries returns the requests received so far.
func (w *WebhookReceiver) Deliveries() []WebhookDelivery {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]WebhookDelivery(nil), w.deliveries...)
}

func (w *WebhookReceiver) serve(rw http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(http.MaxBytesReader(rw, r.Body, 1<<20))
	if err != nil {
		http.Error(rw, "body too large", http.StatusRequestEntityTooLarge)
		return
	}
	now := time.Now()
	if w.Now != nil {
		now = w.Now()
	}
	d := WebhookDelivery{
		ID: r.Header.Get("webhook-id"), Timestamp: r.Header.Get("webhook-timestamp"),
		Header: r.Header.Clone(), Body: body,
		Err: VerifyWebhook(w.Secret, r.Header, body, now),
	}
	if r.Method != http.MethodPost || r.URL.Path != "/hooks/notify" {
		d.Err = errors.Join(d.Err, errors.New("not POST /hooks/notify"))
	}
	w.mu.Lock()
	if gate := w.gate; gate != nil && d.Err == nil {
		w.held++
		w.mu.Unlock()
		var gone bool
		select {
		case <-gate:
		case <-r.Context().Done():
			gone = true
		}
		w.mu.Lock()
		w.held--
		if gone {
			d.Err = errors.New("held, and the client went away before an answer")
			w.deliveries = append(w.deliveries, d)
			w.mu.Unlock()
			return
		}
	}
	d.Status = w.status
	if d.Err != nil {
		d.Status = http.StatusUnauthorized
	}
	w.deliveries = append(w.deliveries, d)
	retryAfter, answer := w.retryAfter, w.body
	w.mu.Unlock()
	if d.Err != nil {
		http.Error(rw, d.Err.Error(), d.Status)
		return
	}
	if retryAfter != "" {
		rw.Header().Set("Retry-After", retryAfter)
	}
	rw.WriteHeader(d.Status)
	io.WriteString(rw, answer)
}
