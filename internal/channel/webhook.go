package channel

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// WebhookConfig configures the webhook sender.
type WebhookConfig struct {
	// Timeout bounds one delivery, the receiver's answer included; zero is 10 s.
	Timeout time.Duration
	// RootCAs replaces the system's trusted roots when set (tests, private CAs).
	RootCAs *x509.CertPool
	// UserAgent is sent as User-Agent; "" is "notify-webhooks/1".
	UserAgent string
	// RefusePrivate refuses receivers on loopback, private and link-local addresses.
	// Webhook URLs come from the operator, so the default trusts them; set it when they
	// may come from less trusted hands.
	RefusePrivate bool
}

// Webhook posts events and delivery updates to an operator's endpoints, signed per the
// Standard Webhooks specification: webhook-id, webhook-timestamp and webhook-signature
// "v1,<base64 HMAC-SHA256 of id.timestamp.body>".
type Webhook struct {
	client    *http.Client
	userAgent string
	timeout   time.Duration
	now       func() time.Time
}

// NewWebhook returns a webhook sender.
func NewWebhook(cfg WebhookConfig) (*Webhook, error) {
	timeout := timeoutOr(cfg.Timeout)
	ua := cfg.UserAgent
	if ua == "" {
		ua = "notify-webhooks/1"
	}
	return &Webhook{
		client:    newHTTPClient(httpOptions{timeout: timeout, rootCAs: cfg.RootCAs, allowPrivate: !cfg.RefusePrivate}),
		userAgent: ua,
		timeout:   timeout,
		now:       time.Now,
	}, nil
}

// Channel implements Sender.
func (*Webhook) Channel() Channel { return ChannelWebhook }

// Close closes idle connections.
func (w *Webhook) Close() error {
	w.client.CloseIdleConnections()
	return nil
}

// WebhookPayload is the body of a webhook delivery, the shape the Standard Webhooks
// specification recommends.
type WebhookPayload struct {
	// Type is the message's type ("EVENT_TYPE_POINTS_ADDED", "delivery.status").
	Type string `json:"type"`
	// Timestamp is when the delivery was signed, RFC 3339.
	Timestamp string `json:"timestamp"`
	// Data is the message's data: the event, or the delivery update.
	Data json.RawMessage `json:"data"`
}

// Validate checks the URL and the secret's form.
func (t WebhookTarget) Validate() error {
	u, err := url.Parse(t.URL)
	if err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
		return fmt.Errorf("%w: webhook URL", ErrInvalidTarget)
	}
	if _, err := webhookKey(t.Secret); err != nil {
		return err
	}
	return nil
}

// webhookKey decodes a "whsec_" secret into the HMAC key.
func webhookKey(s Secret) ([]byte, error) {
	b64, ok := strings.CutPrefix(string(s), "whsec_")
	if !ok {
		return nil, fmt.Errorf("%w: webhook secret must start with whsec_", ErrInvalidTarget)
	}
	key, err := base64.StdEncoding.DecodeString(b64)
	if err != nil || len(key) < 16 || len(key) > 64 {
		return nil, fmt.Errorf("%w: webhook secret must be whsec_ and 16 to 64 bytes in base64", ErrInvalidTarget)
	}
	return key, nil
}

// WebhookSignature signs a delivery per the Standard Webhooks specification.
func WebhookSignature(key []byte, id string, timestamp int64, body []byte) string {
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(id))
	mac.Write([]byte{'.'})
	mac.Write([]byte(strconv.FormatInt(timestamp, 10)))
	mac.Write([]byte{'.'})
	mac.Write(body)
	return "v1," + base64.StdEncoding.EncodeToString(mac.Sum(nil))
}

// Send implements Sender. The webhook-id is the message's EventID, the same on every
// retry, so that the receiver can drop a repeat.
func (w *Webhook) Send(ctx context.Context, to Target, m *Message) Result {
	t, ok := to.(WebhookTarget)
	if !ok {
		return permanent(0, "", ErrWrongTarget)
	}
	if err := t.Validate(); err != nil {
		return permanent(0, "", err)
	}
	if m.EventID == "" {
		return permanent(0, "", errors.New("channel: webhook: message has no id"))
	}
	key, _ := webhookKey(t.Secret)
	now := w.now()
	data := m.Data
	if len(data) == 0 {
		data = json.RawMessage("null")
	}
	body, err := marshalJSON(WebhookPayload{Type: m.Type, Timestamp: now.UTC().Format(time.RFC3339), Data: data})
	if err != nil {
		return permanent(0, "", fmt.Errorf("channel: webhook: %w", err))
	}
	ctx, cancel := context.WithTimeout(ctx, w.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, t.URL, bytes.NewReader(body))
	if err != nil {
		return permanent(0, "", fmt.Errorf("%w: webhook URL", ErrInvalidTarget))
	}
	ts := now.Unix()
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", w.userAgent)
	req.Header.Set("webhook-id", m.EventID)
	req.Header.Set("webhook-timestamp", strconv.FormatInt(ts, 10))
	req.Header.Set("webhook-signature", WebhookSignature(key, m.EventID, ts, body))
	resp, err := w.client.Do(req)
	if err != nil {
		return transportResult(ctx, err)
	}
	defer resp.Body.Close()
	answer := readBounded(resp.Body, maxResponseBytes)
	return classifyWebhook(resp, answer, now)
}

// classifyWebhook maps a receiver's answer: 2xx delivered; 410 permanent (the operator
// turned the endpoint off); 408, 429 and 5xx retryable; other 4xx and 3xx permanent.
func classifyWebhook(resp *http.Response, body []byte, now time.Time) Result {
	s := resp.StatusCode
	switch {
	case s >= 200 && s < 300:
		return Result{Outcome: Accepted, Status: s}
	case s == http.StatusRequestTimeout || s == http.StatusTooManyRequests || s >= 500:
		return retryable(s, string(body), retryAfter(resp.Header, now), providerErr(ChannelWebhook, s, string(body)))
	}
	return permanent(s, string(body), providerErr(ChannelWebhook, s, string(body)))
}
