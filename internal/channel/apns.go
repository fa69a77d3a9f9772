package channel

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"time"

	"github.com/sideshow/apns2"
	"github.com/sideshow/apns2/payload"
	"github.com/sideshow/apns2/token"
	"golang.org/x/net/http2"
)

// APNsConfig configures the Apple Push Notification service sender (token auth).
type APNsConfig struct {
	// AuthKey is the .p8 signing key's contents (PEM, PKCS #8, P-256). Required.
	AuthKey Secret
	// KeyID is the key's 10-character id. Required.
	KeyID string
	// TeamID is the developer team's 10-character id. Required.
	TeamID string
	// Topic is the app's bundle id, sent as apns-topic. Required.
	Topic string
	// Endpoint is APNs' origin; "" is production, https://api.push.apple.com
	// (https://api.sandbox.push.apple.com for development builds).
	Endpoint string
	// Timeout bounds one send; zero is 10 s.
	Timeout time.Duration
	// RootCAs replaces the system's trusted roots when set (tests).
	RootCAs *x509.CertPool
}

// APNs sends alert notifications to Apple devices over HTTP/2 with a provider token
// (ES256 JWT, renewed before it is an hour old) using sideshow/apns2.
type APNs struct {
	client  *apns2.Client
	topic   string
	timeout time.Duration
}

// NewAPNs checks cfg and returns a sender. It does not connect until the first Send.
func NewAPNs(cfg APNsConfig) (*APNs, error) {
	key, err := token.AuthKeyFromBytes([]byte(cfg.AuthKey))
	if err != nil {
		return nil, errors.New("channel: apns: auth key is not a PKCS #8 P-256 PEM key")
	}
	if cfg.KeyID == "" || cfg.TeamID == "" || cfg.Topic == "" {
		return nil, errors.New("channel: apns: key id, team id and topic are required")
	}
	endpoint := cfg.Endpoint
	if endpoint == "" {
		endpoint = apns2.HostProduction
	}
	if u, err := url.Parse(endpoint); err != nil || u.Scheme != "https" || u.Host == "" || u.Path != "" {
		return nil, errors.New("channel: apns: endpoint must be an https origin")
	}
	timeout := timeoutOr(cfg.Timeout)
	tok := &token.Token{AuthKey: key, KeyID: cfg.KeyID, TeamID: cfg.TeamID}
	if _, err := tok.Generate(); err != nil {
		return nil, fmt.Errorf("channel: apns: signing a provider token: %w", err)
	}
	client := apns2.NewTokenClient(tok)
	client.Host = endpoint
	dialer := &tls.Dialer{
		NetDialer: &net.Dialer{Timeout: timeout, KeepAlive: 30 * time.Second},
		Config:    &tls.Config{RootCAs: cfg.RootCAs, MinVersion: tls.VersionTLS12, NextProtos: []string{"h2"}},
	}
	client.HTTPClient = &http.Client{
		Transport: boundedBody{&http2.Transport{
			DialTLSContext: func(ctx context.Context, network, addr string, _ *tls.Config) (net.Conn, error) {
				return dialer.DialContext(ctx, network, addr)
			},
			ReadIdleTimeout:  15 * time.Second,
			PingTimeout:      timeout,
			WriteByteTimeout: timeout,
		}},
		Timeout: timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
	return &APNs{client: client, topic: cfg.Topic, timeout: timeout}, nil
}

// Channel implements Sender.
func (*APNs) Channel() Channel { return ChannelAPNs }

// Close closes idle connections.
func (a *APNs) Close() error {
	a.client.CloseIdleConnections()
	return nil
}

// Validate checks that t is a device token: hex, as devices report it. A target that
// fails it is Gone.
func (t APNsTarget) Validate() error {
	if len(t.DeviceToken) < 32 || len(t.DeviceToken) > 200 || len(t.DeviceToken)%2 != 0 {
		return fmt.Errorf("%w: apns device token length", ErrInvalidTarget)
	}
	for i := 0; i < len(t.DeviceToken); i++ {
		c := t.DeviceToken[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F') {
			return fmt.Errorf("%w: apns device token is not hex", ErrInvalidTarget)
		}
	}
	return nil
}

// apnsMaxPayload is APNs' limit for an alert notification.
const apnsMaxPayload = 4096

// Send implements Sender.
func (a *APNs) Send(ctx context.Context, to Target, m *Message) Result {
	t, ok := to.(APNsTarget)
	if !ok {
		return permanent(0, "", ErrWrongTarget)
	}
	if err := t.Validate(); err != nil {
		return gone(0, "", err)
	}
	p, err := apnsPayload(m)
	if err != nil {
		return permanent(0, "", err)
	}
	priority := apns2.PriorityLow
	if u := m.urgency(); u == UrgencyHigh || u == UrgencyNormal {
		priority = apns2.PriorityHigh
	}
	ctx, cancel := context.WithTimeout(ctx, a.timeout)
	defer cancel()
	resp, err := a.client.PushWithContext(ctx, &apns2.Notification{
		DeviceToken: t.DeviceToken,
		Topic:       a.topic,
		CollapseID:  collapseKey(m.Topic, 64),
		Expiration:  time.Now().Add(m.ttl()),
		Priority:    priority,
		PushType:    apns2.PushTypeAlert,
		Payload:     p,
	})
	if err != nil {
		return transportResult(ctx, err)
	}
	return classifyAPNs(resp)
}

func apnsPayload(m *Message) (json.RawMessage, error) {
	build := func(withEvent bool) ([]byte, error) {
		p := payload.NewPayload().AlertTitle(m.Title).AlertBody(m.Body).Sound("default").
			Custom("eventId", m.EventID).Custom("type", m.Type)
		if m.Topic != "" {
			p.ThreadID(collapseKey(m.Topic, 64))
		}
		if m.Critical {
			p.InterruptionLevel(payload.InterruptionLevelTimeSensitive)
		}
		if withEvent && len(m.Data) > 0 {
			p.Custom("event", json.RawMessage(m.Data))
		}
		return json.Marshal(p)
	}
	b, err := build(true)
	if err == nil && len(b) > apnsMaxPayload {
		b, err = build(false)
	}
	if err != nil {
		return nil, fmt.Errorf("channel: apns: %w", err)
	}
	if len(b) > apnsMaxPayload {
		return nil, fmt.Errorf("%w: apns payload is %d bytes", ErrTooLarge, len(b))
	}
	return b, nil
}

// classifyAPNs maps APNs' answers ("Handling notification responses from APNs").
func classifyAPNs(r *apns2.Response) Result {
	s := r.StatusCode
	if s == http.StatusOK {
		id := r.ApnsID
		if id == "" {
			id = r.ApnsUniqueID
		}
		return Result{Outcome: Accepted, Status: s, ProviderID: id}
	}
	err := providerErr(ChannelAPNs, s, r.Reason)
	switch {
	case s == http.StatusGone || r.Reason == apns2.ReasonUnregistered || r.Reason == apns2.ReasonBadDeviceToken:
		return gone(s, r.Reason, err)
	case r.Reason == apns2.ReasonExpiredProviderToken || r.Reason == apns2.ReasonTooManyProviderTokenUpdates ||
		s == http.StatusTooManyRequests || s >= 500:
		// An expired provider token is renewed on the next send.
		return retryable(s, r.Reason, 0, err)
	case s == http.StatusRequestEntityTooLarge:
		return permanent(s, r.Reason, fmt.Errorf("%w: %w", ErrTooLarge, err))
	}
	return permanent(s, r.Reason, err)
}

// boundedBody cuts a response body at maxResponseBytes: apns2 decodes whatever it is given.
type boundedBody struct {
	next http.RoundTripper
}

func (b boundedBody) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := b.next.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	resp.Body = limitedBody{Reader: io.LimitReader(resp.Body, maxResponseBytes), Closer: resp.Body}
	return resp, nil
}

func (b boundedBody) CloseIdleConnections() {
	if c, ok := b.next.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}

type limitedBody struct {
	io.Reader
	io.Closer
}
