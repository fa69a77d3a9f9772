package channel

import (
	"bytes"
	"context"
	"crypto/ecdh"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	webpush "github.com/SherClockHolmes/webpush-go"
)

// WebPushConfig configures the web push sender.
type WebPushConfig struct {
	// VAPIDPublicKey is the application server's P-256 public key, uncompressed, base64url:
	// the applicationServerKey browsers subscribe with. Required.
	VAPIDPublicKey string
	// VAPIDPrivateKey is the matching private key, the 32-byte scalar, base64url. Required.
	VAPIDPrivateKey Secret
	// Subject is the contact push services may use, "mailto:ops@example.com" or an https
	// URL (the VAPID JWT's sub, RFC 8292). Required.
	Subject string
	// Timeout bounds one send; zero is 10 s.
	Timeout time.Duration
	// RootCAs replaces the system's trusted roots when set (tests).
	RootCAs *x509.CertPool
	// AllowInsecure allows http endpoints and endpoints on loopback and private addresses
	// (tests only: endpoints come from users' browsers, and must not reach inside).
	AllowInsecure bool
}

// WebPush sends RFC 8030 push messages, encrypted per RFC 8291 (aes128gcm) and signed
// with VAPID (RFC 8292), with TTL, Urgency and Topic from the message.
type WebPush struct {
	cfg     WebPushConfig
	subject string
	client  *http.Client
}

// NewWebPush checks cfg (the key pair must match) and returns a sender.
func NewWebPush(cfg WebPushConfig) (*WebPush, error) {
	priv, err := decodeB64(string(cfg.VAPIDPrivateKey))
	if err != nil || len(priv) != 32 {
		return nil, errors.New("channel: web push: VAPID private key must be 32 bytes, base64url")
	}
	key, err := ecdh.P256().NewPrivateKey(priv)
	if err != nil {
		return nil, errors.New("channel: web push: VAPID private key is not a P-256 key")
	}
	pub, err := decodeB64(cfg.VAPIDPublicKey)
	if err != nil || !bytes.Equal(pub, key.PublicKey().Bytes()) {
		return nil, errors.New("channel: web push: VAPID public key is not the private key's")
	}
	// webpush-go prefixes "mailto:" to any subject that is not an https URL.
	subject, ok := strings.CutPrefix(cfg.Subject, "mailto:")
	if !ok && !strings.HasPrefix(cfg.Subject, "https://") || subject == "" {
		return nil, errors.New(`channel: web push: subject must be "mailto:..." or "https://..."`)
	}
	cfg.Timeout = timeoutOr(cfg.Timeout)
	return &WebPush{
		cfg:     cfg,
		subject: subject,
		client:  newHTTPClient(httpOptions{timeout: cfg.Timeout, rootCAs: cfg.RootCAs, allowPrivate: cfg.AllowInsecure}),
	}, nil
}

// Channel implements Sender.
func (*WebPush) Channel() Channel { return ChannelWebPush }

// Close closes idle connections.
func (w *WebPush) Close() error {
	w.client.CloseIdleConnections()
	return nil
}

// webPushMaxPayload is what fits one 4096-byte aes128gcm record: the record less the
// header (86 bytes), the tag (16) and the padding delimiter (1).
const webPushMaxPayload = 4096 - 86 - 16 - 1

// WebPushPayload is the JSON a service worker receives in a push event.
type WebPushPayload struct {
	EventID  string          `json:"eventId"`
	Type     string          `json:"type"`
	Title    string          `json:"title"`
	Body     string          `json:"body"`
	Topic    string          `json:"topic,omitempty"`
	Critical bool            `json:"critical,omitempty"`
	Data     json.RawMessage `json:"data,omitempty"`
}

// Send implements Sender.
func (w *WebPush) Send(ctx context.Context, to Target, m *Message) Result {
	t, ok := to.(WebPushTarget)
	if !ok {
		return permanent(0, "", ErrWrongTarget)
	}
	if err := t.validate(w.cfg.AllowInsecure); err != nil {
		return gone(0, "", err)
	}
	payload, err := webPushPayload(m)
	if err != nil {
		return permanent(0, "", err)
	}
	ctx, cancel := context.WithTimeout(ctx, w.cfg.Timeout)
	defer cancel()
	resp, err := webpush.SendNotificationWithContext(ctx, payload, &webpush.Subscription{
		Endpoint: t.Endpoint,
		Keys:     webpush.Keys{P256dh: t.P256dh, Auth: t.Auth},
	}, &webpush.Options{
		HTTPClient:      w.client,
		Subscriber:      w.subject,
		Topic:           collapseKey(m.Topic, 32),
		TTL:             int(m.ttl() / time.Second),
		Urgency:         webpush.Urgency(m.urgency()),
		VAPIDPublicKey:  w.cfg.VAPIDPublicKey,
		VAPIDPrivateKey: string(w.cfg.VAPIDPrivateKey),
	})
	if err != nil {
		var ue *url.Error
		if !errors.As(err, &ue) {
			// Encryption or signing failed before any request.
			return permanent(0, "", fmt.Errorf("channel: web push: %w", err))
		}
		return transportResult(ctx, err)
	}
	defer resp.Body.Close()
	body := readBounded(resp.Body, maxResponseBytes)
	return classifyWebPush(resp, body, time.Now())
}

// Validate checks that t is a subscription a push service could accept: an https
// endpoint and well-formed keys. A target that fails it is Gone.
func (t WebPushTarget) Validate() error { return t.validate(false) }

func (t WebPushTarget) validate(allowHTTP bool) error {
	u, err := url.Parse(t.Endpoint)
	if err != nil || u.Host == "" || u.User != nil || len(t.Endpoint) > 2048 {
		return fmt.Errorf("%w: web push endpoint is not a URL", ErrInvalidTarget)
	}
	if u.Scheme != "https" && !(allowHTTP && u.Scheme == "http") {
		return fmt.Errorf("%w: web push endpoint is not https", ErrInvalidTarget)
	}
	pub, err := decodeB64(t.P256dh)
	if err != nil {
		return fmt.Errorf("%w: web push p256dh is not base64url", ErrInvalidTarget)
	}
	if _, err := ecdh.P256().NewPublicKey(pub); err != nil {
		return fmt.Errorf("%w: web push p256dh is not a P-256 public key", ErrInvalidTarget)
	}
	if auth, err := decodeB64(t.Auth); err != nil || len(auth) != 16 {
		return fmt.Errorf("%w: web push auth secret is not 16 bytes, base64url", ErrInvalidTarget)
	}
	return nil
}

func webPushPayload(m *Message) ([]byte, error) {
	p := WebPushPayload{
		EventID: m.EventID, Type: m.Type, Title: m.Title, Body: m.Body,
		Topic: m.Topic, Critical: m.Critical, Data: m.Data,
	}
	b, err := marshalJSON(p)
	if err != nil {
		return nil, err
	}
	if len(b) <= webPushMaxPayload {
		return b, nil
	}
	// The event does not fit: the service worker fetches it from the inbox by id.
	p.Data = nil
	if b, err = marshalJSON(p); err != nil {
		return nil, err
	}
	if len(b) > webPushMaxPayload {
		return nil, fmt.Errorf("%w: web push payload is %d bytes", ErrTooLarge, len(b))
	}
	return b, nil
}

// classifyWebPush maps a push service's answer (RFC 8030 section 5 and 8.4, RFC 8292).
func classifyWebPush(resp *http.Response, body []byte, now time.Time) Result {
	s := resp.StatusCode
	switch {
	case s >= 200 && s < 300:
		return Result{Outcome: Accepted, Status: s, ProviderID: resp.Header.Get("Location")}
	case s == http.StatusNotFound || s == http.StatusGone:
		return gone(s, string(body), providerErr(ChannelWebPush, s, string(body)))
	case s == http.StatusTooManyRequests || s >= 500:
		return retryable(s, string(body), retryAfter(resp.Header, now), providerErr(ChannelWebPush, s, string(body)))
	case s == http.StatusRequestEntityTooLarge:
		return permanent(s, string(body), fmt.Errorf("%w: %w", ErrTooLarge, providerErr(ChannelWebPush, s, string(body))))
	}
	return permanent(s, string(body), providerErr(ChannelWebPush, s, string(body)))
}

// decodeB64 decodes base64url or standard base64, padded or not, as keys are found in
// the wild.
func decodeB64(s string) ([]byte, error) {
	s = strings.TrimRight(s, "=")
	if b, err := base64.RawURLEncoding.DecodeString(s); err == nil {
		return b, nil
	}
	return base64.RawStdEncoding.DecodeString(s)
}
