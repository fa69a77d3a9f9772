package channel

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Channel names a way of reaching a user outside the live stream.
type Channel string

// The channels of this package.
const (
	ChannelWebPush Channel = "webpush"
	ChannelFCM     Channel = "fcm"
	ChannelAPNs    Channel = "apns"
	ChannelEmail   Channel = "email"
	ChannelWebhook Channel = "webhook"
)

// Sender sends one rendered message to one target over one channel. Send never returns
// before its outcome is known or its bound (the sender's timeout, or ctx) is reached, and
// never retries by itself: retries belong to the caller's durable queue, guided by the
// Result. Every Sender of this package is safe for concurrent use.
type Sender interface {
	// Channel is the channel this sender speaks.
	Channel() Channel
	// Send delivers m to to, whose type must be the sender's target type (WebPushTarget for
	// web push, ...); any other is a Permanent result with ErrWrongTarget.
	Send(ctx context.Context, to Target, m *Message) Result
}

// Target is where one message goes: WebPushTarget, FCMTarget, APNsTarget, EmailTarget or
// WebhookTarget.
type Target interface {
	// Channel is the channel the target belongs to.
	Channel() Channel
}

// WebPushTarget is a browser's push subscription (the PushSubscription's JSON, RFC 8030 and
// RFC 8291): the push service's endpoint URL and the user agent's keys, base64url.
type WebPushTarget struct {
	// Endpoint is the subscription's push resource URL (https).
	Endpoint string `json:"endpoint"`
	// P256dh is the user agent's P-256 public key, uncompressed, base64url.
	P256dh string `json:"p256dh"`
	// Auth is the user agent's 16-byte authentication secret, base64url.
	Auth string `json:"auth"`
}

// FCMTarget is an app instance's Firebase Cloud Messaging registration token.
type FCMTarget struct {
	Token string `json:"token"`
}

// APNsTarget is an Apple device token, hex.
type APNsTarget struct {
	DeviceToken string `json:"deviceToken"`
}

// EmailTarget is a recipient's address, with an optional display name and the link that
// unsubscribes them (List-Unsubscribe, RFC 2369 and RFC 8058).
type EmailTarget struct {
	// Address is the bare address, "guest@example.com".
	Address string `json:"address"`
	// Name is the recipient's display name, or "".
	Name string `json:"name,omitempty"`
	// UnsubscribeURL, when set, is sent as List-Unsubscribe; an https URL also gets
	// List-Unsubscribe-Post (one-click, RFC 8058).
	UnsubscribeURL string `json:"unsubscribeUrl,omitempty"`
}

// WebhookTarget is an operator's endpoint and the secret its deliveries are signed with.
type WebhookTarget struct {
	// URL is the endpoint (https, or http on a trusted network).
	URL string `json:"url"`
	// Secret is the Standard Webhooks signing secret, "whsec_" followed by base64. It is
	// never serialised: a queued job names the webhook and takes the secret from configuration.
	Secret Secret `json:"secret"`
}

// Channel implements Target.
func (WebPushTarget) Channel() Channel { return ChannelWebPush }

// Channel implements Target.
func (FCMTarget) Channel() Channel { return ChannelFCM }

// Channel implements Target.
func (APNsTarget) Channel() Channel { return ChannelAPNs }

// Channel implements Target.
func (EmailTarget) Channel() Channel { return ChannelEmail }

// Channel implements Target.
func (WebhookTarget) Channel() Channel { return ChannelWebhook }

// Urgency is how soon a user should see a message (RFC 8030 section 5.3), mapped to each
// provider's priority.
type Urgency string

// The urgencies of RFC 8030. The zero value means UrgencyNormal.
const (
	UrgencyVeryLow Urgency = "very-low"
	UrgencyLow     Urgency = "low"
	UrgencyNormal  Urgency = "normal"
	UrgencyHigh    Urgency = "high"
)

// DefaultTTL is how long a provider may keep a message for an offline device when the
// message gives no TTL.
const DefaultTTL = 24 * time.Hour

// Content is a message's text in the recipient's locale (see Render).
type Content struct {
	// Title is one short line: the push notification's title and the email's subject.
	Title string `json:"title"`
	// Body is a sentence or two: the push notification's text.
	Body string `json:"body"`
	// Text is the email's text/plain part; "" sends Body.
	Text string `json:"text,omitempty"`
	// HTML is the email's text/html part; "" sends the plain part alone.
	HTML string `json:"html,omitempty"`
}

// Message is one notification, rendered, for one recipient.
type Message struct {
	// EventID is the event's id. Senders use it where the provider keeps an id of ours
	// (webhook-id, the email's Message-ID), so that a retried send is recognisable.
	EventID string `json:"eventId"`
	// Type is the event's type as the contract names it ("EVENT_TYPE_POINTS_ADDED"), or
	// another dotted name for messages that are not events ("delivery.status").
	Type string `json:"type"`
	// Content is the text shown to the user.
	Content
	// Data is the event as JSON (the notify.v1.Event envelope in protojson, as REST
	// streams carry it): the webhook's data and the push payload's data when it fits.
	Data json.RawMessage `json:"data,omitempty"`
	// Locale is the recipient's BCP 47 language tag ("fr-FR"); "" is English.
	Locale string `json:"locale,omitempty"`
	// Urgency maps to web push Urgency, APNs apns-priority and FCM's Android priority;
	// "" is UrgencyNormal.
	Urgency Urgency `json:"urgency,omitempty"`
	// TTL is how long a push provider may hold the message for an offline device; zero
	// is DefaultTTL.
	TTL time.Duration `json:"ttl,omitempty"`
	// Topic collapses messages: a newer message with the same topic replaces an older one
	// not yet shown (web push Topic, APNs apns-collapse-id, FCM collapse_key), as a newer
	// points balance replaces an older one. "" collapses nothing.
	Topic string `json:"topic,omitempty"`
	// Critical marks a message that must interrupt: high urgency everywhere, APNs
	// time-sensitive interruption level, email Importance: high.
	Critical bool `json:"critical,omitempty"`
}

func (m *Message) urgency() Urgency {
	if m.Critical {
		return UrgencyHigh
	}
	switch m.Urgency {
	case UrgencyVeryLow, UrgencyLow, UrgencyHigh:
		return m.Urgency
	}
	return UrgencyNormal
}

func (m *Message) ttl() time.Duration {
	if m.TTL <= 0 {
		return DefaultTTL
	}
	return m.TTL
}

// Outcome classifies what a provider did with a message.
type Outcome int

// The outcomes of a send.
const (
	// Accepted: the provider took the message (a push service stored it, an SMTP relay
	// queued it, a webhook answered 2xx). It is not yet known to be displayed.
	Accepted Outcome = iota + 1
	// Retryable: the message was not taken, and trying again later may work (rate limits,
	// provider errors, network failures). Result.RetryAfter says when, if the provider did.
	Retryable
	// Permanent: the provider refused the message and the same send will fail again
	// (bad request, payload too large, bad credentials, a disabled webhook).
	Permanent
	// Gone: the target no longer exists; the caller must remove the subscription or
	// device token at once (web push 404/410, APNs 410 and BadDeviceToken, FCM
	// UNREGISTERED and an invalid token). Never for email or webhooks.
	Gone
)

// String returns the outcome's name.
func (o Outcome) String() string {
	switch o {
	case Accepted:
		return "accepted"
	case Retryable:
		return "retryable"
	case Permanent:
		return "permanent"
	case Gone:
		return "gone"
	}
	return "outcome(" + strconv.Itoa(int(o)) + ")"
}

// Result is the outcome of one Send.
type Result struct {
	Outcome Outcome
	// ProviderID is the provider's id for the accepted message, when it gives one: the
	// web push message's Location, FCM's message name, the APNs apns-id, the SMTP server's
	// answer to DATA, the email's Message-ID otherwise.
	ProviderID string
	// RetryAfter is the delay the provider asked for (Retry-After), when Outcome is
	// Retryable and the provider said; zero otherwise.
	RetryAfter time.Duration
	// Status is the provider's status code: HTTP status, or SMTP reply code; zero when
	// there was no answer (network failure, refused locally).
	Status int
	// Reason is the provider's answer in a few words, bounded and printable: the APNs
	// reason, FCM's error code, the SMTP reply, the start of an HTTP error body.
	Reason string
	// Err says what went wrong, for logs; nil when Accepted. It never holds a secret or a
	// target's URL (push endpoints and webhook URLs may carry credentials).
	Err error
}

// LogValue lets a Result be logged as one slog group.
func (r Result) LogValue() slog.Value {
	attrs := []slog.Attr{slog.String("outcome", r.Outcome.String())}
	if r.Status != 0 {
		attrs = append(attrs, slog.Int("status", r.Status))
	}
	if r.ProviderID != "" {
		attrs = append(attrs, slog.String("provider_id", r.ProviderID))
	}
	if r.Reason != "" {
		attrs = append(attrs, slog.String("reason", r.Reason))
	}
	if r.RetryAfter > 0 {
		attrs = append(attrs, slog.Duration("retry_after", r.RetryAfter))
	}
	if r.Err != nil {
		attrs = append(attrs, slog.String("error", r.Err.Error()))
	}
	return slog.GroupValue(attrs...)
}

// Errors a Result may carry.
var (
	// ErrWrongTarget: the target is not of the sender's channel.
	ErrWrongTarget = errors.New("channel: target is not of this sender's channel")
	// ErrInvalidTarget: the target is malformed (not a URL, bad keys, bad token).
	ErrInvalidTarget = errors.New("channel: invalid target")
	// ErrRefusedAddress: the target's host resolves to an address this sender may not
	// reach (loopback, private, link-local), a defence against targets that point inside.
	ErrRefusedAddress = errors.New("channel: target address refused")
	// ErrTooLarge: the message does not fit the provider's size limit.
	ErrTooLarge = errors.New("channel: message too large for the provider")
	// ErrProvider: the provider refused the message or failed; Result.Status and
	// Result.Reason say how.
	ErrProvider = errors.New("channel: provider refused the message")
)

// Secret is a credential given by the caller as a value (files and the environment are
// configuration's business). It never prints, logs or serialises its value; string(s)
// reveals it.
type Secret string

const redacted = "[redacted]"

// String implements fmt.Stringer without the value.
func (s Secret) String() string {
	if s == "" {
		return ""
	}
	return redacted
}

// GoString implements fmt.GoStringer without the value.
func (s Secret) GoString() string { return s.String() }

// LogValue implements slog.LogValuer without the value.
func (s Secret) LogValue() slog.Value { return slog.StringValue(s.String()) }

// MarshalText implements encoding.TextMarshaler without the value, so that JSON, YAML and
// slog's handlers never write it.
func (s Secret) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// Bounds shared by the senders.
const (
	// defaultTimeout bounds one HTTP send: connect, TLS, request and response.
	defaultTimeout = 10 * time.Second
	// maxResponseBytes bounds what is read of a provider's answer.
	maxResponseBytes = 64 << 10
	// maxReasonBytes bounds Result.Reason.
	maxReasonBytes = 512
	// maxRetryAfter caps a provider's Retry-After.
	maxRetryAfter = 24 * time.Hour
)

func timeoutOr(d time.Duration) time.Duration {
	if d <= 0 {
		return defaultTimeout
	}
	return d
}

// retryable, permanent, gone and accepted build Results.
func retryable(status int, reason string, after time.Duration, err error) Result {
	return Result{Outcome: Retryable, Status: status, Reason: excerpt(reason), RetryAfter: after, Err: err}
}

func permanent(status int, reason string, err error) Result {
	return Result{Outcome: Permanent, Status: status, Reason: excerpt(reason), Err: err}
}

func gone(status int, reason string, err error) Result {
	return Result{Outcome: Gone, Status: status, Reason: excerpt(reason), Err: err}
}

// providerErr describes a provider's refusal.
func providerErr(channel Channel, status int, reason string) error {
	if reason == "" {
		return fmt.Errorf("%w: %s answered %d", ErrProvider, channel, status)
	}
	return fmt.Errorf("%w: %s answered %d %s", ErrProvider, channel, status, excerpt(reason))
}

// transportResult classifies a failure to get an answer at all: the caller's context
// ending, a refused address, a timeout or a broken connection. All are retryable except
// a refused address (the target must change) and a certificate the sender does not trust.
func transportResult(ctx context.Context, err error) Result {
	err = redactURL(err)
	switch {
	case errors.Is(err, ErrRefusedAddress):
		return permanent(0, "", err)
	case isCertificateError(err):
		return permanent(0, "", err)
	case ctx.Err() != nil:
		return retryable(0, "", 0, fmt.Errorf("%w: %w", ctx.Err(), err))
	}
	return retryable(0, "", 0, err)
}

// redactURL drops the URL from net/http's errors: push endpoints and webhook URLs are
// capabilities.
func redactURL(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return fmt.Errorf("%s: %w", strings.ToLower(ue.Op), ue.Err)
	}
	return err
}

// retryAfter parses a Retry-After header: delay-seconds or an HTTP-date, capped.
func retryAfter(h http.Header, now time.Time) time.Duration {
	v := strings.TrimSpace(h.Get("Retry-After"))
	if v == "" {
		return 0
	}
	var d time.Duration
	if n, err := strconv.ParseInt(v, 10, 64); err == nil {
		if n <= 0 {
			return 0
		}
		if n > int64(maxRetryAfter/time.Second) {
			return maxRetryAfter
		}
		d = time.Duration(n) * time.Second
	} else if t, err := http.ParseTime(v); err == nil {
		d = t.Sub(now)
	}
	if d < 0 {
		return 0
	}
	return min(d, maxRetryAfter)
}

// readBounded reads at most limit bytes of r, then drains nothing more: a larger answer is
// cut, which is all a classification needs.
func readBounded(r io.Reader, limit int64) []byte {
	b, _ := io.ReadAll(io.LimitReader(r, limit))
	return b
}

// excerpt makes a provider's answer safe to store and show: valid UTF-8, control
// characters as spaces, at most maxReasonBytes.
func excerpt(s string) string {
	s = strings.ToValidUTF8(strings.TrimSpace(s), "\uFFFD")
	if len(s) > maxReasonBytes {
		n := maxReasonBytes
		for n > 0 && !utf8.RuneStart(s[n]) {
			n--
		}
		s = s[:n]
	}
	return strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, s)
}

// collapseKey returns topic if it is at most max characters of the URL-safe base64
// alphabet, which every provider accepts, or else a digest of it in that alphabet, so that
// any topic the caller chooses collapses the same way on every channel.
func collapseKey(topic string, max int) string {
	if topic == "" {
		return ""
	}
	if len(topic) <= max && strings.IndexFunc(topic, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_')
	}) < 0 {
		return topic
	}
	sum := sha256.Sum256([]byte(topic))
	k := base64.RawURLEncoding.EncodeToString(sum[:])
	if len(k) > max {
		k = k[:max]
	}
	return k
}

// marshalJSON encodes v without escaping <, > and &, so that an event's JSON arrives as
// the publisher wrote it.
func marshalJSON(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n")), nil
}
