package channel

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	firebase "firebase.google.com/go/v4"
	"firebase.google.com/go/v4/messaging"
	"golang.org/x/oauth2"
	"golang.org/x/oauth2/google"
	"google.golang.org/api/option"
)

// FCMConfig configures the Firebase Cloud Messaging (HTTP v1) sender.
type FCMConfig struct {
	// CredentialsJSON is a service account's JSON key (type "service_account"), whose
	// token_uri the sender exchanges a signed JWT at for an access token. Required.
	CredentialsJSON Secret
	// ProjectID is the Firebase project; "" is the credentials' project_id.
	ProjectID string
	// Endpoint is FCM's API root, to which "/projects/{id}/messages:send" is added; ""
	// is https://fcm.googleapis.com/v1.
	Endpoint string
	// Timeout bounds one send, the access token's exchange included; zero is 10 s.
	Timeout time.Duration
	// RootCAs replaces the system's trusted roots when set (tests).
	RootCAs *x509.CertPool
	// AllowPrivate allows the endpoint and token_uri on loopback and private addresses
	// (tests, or a relay inside the deployment).
	AllowPrivate bool
}

// FCM sends to Android (and iOS) app instances through FCM HTTP v1 with the Firebase
// Admin SDK's messaging client. The SDK retries some failures itself; the sender lets it
// make one request per Send and classifies that request's answer, so that the durable
// queue alone decides on retries.
type FCM struct {
	client  *messaging.Client
	http    *http.Client
	timeout time.Duration
}

// fcmScope is the OAuth 2.0 scope of FCM HTTP v1.
const fcmScope = "https://www.googleapis.com/auth/firebase.messaging"

// NewFCM checks cfg and returns a sender. It does not contact Google: the first Send
// fetches the access token.
func NewFCM(ctx context.Context, cfg FCMConfig) (*FCM, error) {
	timeout := timeoutOr(cfg.Timeout)
	base := newHTTPClient(httpOptions{timeout: timeout, rootCAs: cfg.RootCAs, allowPrivate: cfg.AllowPrivate})
	// The token exchange uses its own client (oauth2 takes it from the context it is
	// built with), bounded like the sends.
	tokenCtx := context.WithValue(context.WithoutCancel(ctx), oauth2.HTTPClient, base)
	creds, err := google.CredentialsFromJSONWithType(tokenCtx, []byte(cfg.CredentialsJSON), google.ServiceAccount, fcmScope)
	if err != nil {
		// The parser's error may quote the file; say only what is wrong.
		return nil, errors.New("channel: fcm: credentials are not a service account JSON key")
	}
	project := cfg.ProjectID
	if project == "" {
		project = creds.ProjectID
	}
	if project == "" {
		return nil, errors.New("channel: fcm: no project id in the configuration or the credentials")
	}
	hc := &http.Client{
		Transport: &oneAttempt{next: &oauth2.Transport{Source: creds.TokenSource, Base: base.Transport}},
		Timeout:   timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
	opts := []option.ClientOption{option.WithHTTPClient(hc)}
	if cfg.Endpoint != "" {
		opts = append(opts, option.WithEndpoint(cfg.Endpoint))
	}
	app, err := firebase.NewApp(ctx, &firebase.Config{ProjectID: project}, opts...)
	if err != nil {
		return nil, fmt.Errorf("channel: fcm: %w", err)
	}
	client, err := app.Messaging(ctx)
	if err != nil {
		return nil, fmt.Errorf("channel: fcm: %w", err)
	}
	return &FCM{client: client, http: base, timeout: timeout}, nil
}

// Channel implements Sender.
func (*FCM) Channel() Channel { return ChannelFCM }

// Close closes idle connections.
func (f *FCM) Close() error {
	f.http.CloseIdleConnections()
	return nil
}

// Validate checks that t looks like a registration token. A target that fails it is Gone.
func (t FCMTarget) Validate() error {
	if t.Token == "" || len(t.Token) > 4096 {
		return fmt.Errorf("%w: fcm token is empty or too long", ErrInvalidTarget)
	}
	for i := 0; i < len(t.Token); i++ {
		if c := t.Token[i]; c <= ' ' || c >= 0x7f {
			return fmt.Errorf("%w: fcm token has a character outside printable ASCII", ErrInvalidTarget)
		}
	}
	return nil
}

// fcmMaxEventBytes bounds the event carried in a message's data; FCM takes 4 KB in all.
const fcmMaxEventBytes = 2048

// Send implements Sender.
func (f *FCM) Send(ctx context.Context, to Target, m *Message) Result {
	t, ok := to.(FCMTarget)
	if !ok {
		return permanent(0, "", ErrWrongTarget)
	}
	if err := t.Validate(); err != nil {
		return gone(0, "", err)
	}
	ctx, cancel := context.WithTimeout(ctx, f.timeout)
	defer cancel()
	// The attempt's context ends when the SDK would retry; ctx tells the caller's end.
	actx, stop := context.WithCancel(ctx)
	defer stop()
	rec := &attempt{stop: stop}
	name, err := f.client.Send(withAttempt(actx, rec), fcmMessage(t.Token, m))
	if err == nil {
		return Result{Outcome: Accepted, Status: http.StatusOK, ProviderID: name}
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	switch {
	case rec.resp != nil:
		return classifyFCM(rec.resp, rec.body, time.Now())
	case rec.err != nil:
		return fcmTransportResult(ctx, rec.err)
	}
	// The SDK refused the message before any request.
	return permanent(0, "", fmt.Errorf("channel: fcm: %w", err))
}

func fcmMessage(token string, m *Message) *messaging.Message {
	data := map[string]string{"eventId": m.EventID, "type": m.Type}
	if len(m.Data) > 0 && len(m.Data) <= fcmMaxEventBytes {
		data["event"] = string(m.Data)
	}
	ttl := m.ttl()
	priority, apnsPriority := "normal", "5"
	if u := m.urgency(); u == UrgencyHigh || u == UrgencyNormal {
		apnsPriority = "10"
	}
	if m.urgency() == UrgencyHigh {
		priority = "high"
	}
	collapse := collapseKey(m.Topic, 64)
	apnsHeaders := map[string]string{
		"apns-priority":   apnsPriority,
		"apns-expiration": strconv.FormatInt(time.Now().Add(ttl).Unix(), 10),
	}
	if collapse != "" {
		apnsHeaders["apns-collapse-id"] = collapse
	}
	return &messaging.Message{
		Token:        token,
		Notification: &messaging.Notification{Title: m.Title, Body: m.Body},
		Data:         data,
		Android: &messaging.AndroidConfig{
			CollapseKey:  collapse,
			Priority:     priority,
			TTL:          &ttl,
			Notification: &messaging.AndroidNotification{Tag: collapse},
		},
		APNS: &messaging.APNSConfig{Headers: apnsHeaders},
	}
}

// fcmError is FCM v1's error body: a google.rpc.Status with FcmError details.
type fcmError struct {
	Error struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
		Status  string `json:"status"`
		Details []struct {
			Type            string `json:"@type"`
			ErrorCode       string `json:"errorCode"`
			FieldViolations []struct {
				Field string `json:"field"`
			} `json:"fieldViolations"`
		} `json:"details"`
	} `json:"error"`
}

// classifyFCM maps FCM v1's documented errors (the FcmError code, else the status).
func classifyFCM(resp *http.Response, body []byte, now time.Time) Result {
	s := resp.StatusCode
	var e fcmError
	_ = json.Unmarshal(body, &e)
	code, tokenField := e.Error.Status, false
	for _, d := range e.Error.Details {
		if d.ErrorCode != "" {
			code = d.ErrorCode
		}
		for _, v := range d.FieldViolations {
			if v.Field == "message.token" {
				tokenField = true
			}
		}
	}
	reason := code
	if e.Error.Message != "" {
		reason = code + ": " + e.Error.Message
	}
	if reason == "" {
		reason = string(body)
	}
	err := providerErr(ChannelFCM, s, reason)
	switch {
	case code == "UNREGISTERED":
		return gone(s, reason, err)
	case code == "INVALID_ARGUMENT" && tokenField:
		return gone(s, reason, err)
	case code == "QUOTA_EXCEEDED" || code == "UNAVAILABLE" || code == "INTERNAL" ||
		code == "RESOURCE_EXHAUSTED" || s == http.StatusTooManyRequests || s >= 500:
		return retryable(s, reason, retryAfter(resp.Header, now), err)
	}
	return permanent(s, reason, err)
}

// fcmTransportResult classifies a failure before FCM answered; a refused access token
// (bad or revoked credentials) is permanent.
func fcmTransportResult(ctx context.Context, err error) Result {
	var re *oauth2.RetrieveError
	if errors.As(err, &re) && re.Response != nil {
		s := re.Response.StatusCode
		reason := "token exchange: " + re.ErrorCode
		if s >= 400 && s < 500 && s != http.StatusTooManyRequests {
			return permanent(s, reason, fmt.Errorf("channel: fcm: access token refused (%d %s)", s, re.ErrorCode))
		}
		return retryable(s, reason, retryAfter(re.Response.Header, time.Now()),
			fmt.Errorf("channel: fcm: access token exchange failed (%d)", s))
	}
	// oauth2 flattens the exchange's transport errors into text, URL included.
	if msg := err.Error(); strings.HasPrefix(msg, "oauth2: ") {
		if strings.Contains(msg, ErrRefusedAddress.Error()) {
			return permanent(0, "", fmt.Errorf("channel: fcm: access token exchange: %w", ErrRefusedAddress))
		}
		msg = quotedURL.ReplaceAllString(msg, `"<url>"`)
		if ctx.Err() != nil {
			return retryable(0, "", 0, fmt.Errorf("%w: channel: fcm: %s", ctx.Err(), msg))
		}
		return retryable(0, "", 0, errors.New("channel: fcm: "+msg))
	}
	return transportResult(ctx, err)
}

var quotedURL = regexp.MustCompile(`"https?://[^"]*"`)

// attempt records the one request a Send makes.
type attempt struct {
	stop context.CancelFunc
	mu   sync.Mutex
	done bool
	resp *http.Response
	body []byte
	err  error
}

type attemptKey struct{}

func withAttempt(ctx context.Context, a *attempt) context.Context {
	return context.WithValue(ctx, attemptKey{}, a)
}

// errOneAttempt refuses the SDK's own retries.
var errOneAttempt = errors.New("channel: fcm: one request per send")

// oneAttempt is the FCM client's transport: it lets one request per Send through, reads
// the answer within maxResponseBytes, records it, and ends the Send's context when the
// SDK would retry it (a network error or a 503), so that the SDK returns at once.
type oneAttempt struct {
	next http.RoundTripper
}

func (o *oneAttempt) RoundTrip(req *http.Request) (*http.Response, error) {
	a, _ := req.Context().Value(attemptKey{}).(*attempt)
	if a == nil {
		return nil, errors.New("channel: fcm: request outside a send")
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.done {
		return nil, errOneAttempt
	}
	a.done = true
	resp, err := o.next.RoundTrip(req)
	if err != nil {
		a.err = err
		a.stop()
		return nil, err
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes+1))
	resp.Body.Close()
	if err == nil && len(body) > maxResponseBytes {
		err = fmt.Errorf("%w: fcm answer exceeds %d bytes", ErrProvider, maxResponseBytes)
	}
	if err != nil {
		a.err = err
		a.stop()
		return nil, err
	}
	a.resp, a.body = resp, body
	resp.Body = io.NopCloser(bytes.NewReader(body))
	if resp.StatusCode == http.StatusServiceUnavailable {
		a.stop()
	}
	return resp, nil
}
