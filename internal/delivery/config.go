package delivery

import (
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"regexp"
	"slices"
	"time"

	"github.com/riverqueue/river/rivertype"
	"go.opentelemetry.io/otel/trace"

	"github.com/maxloyalty/notify/internal/channel"
	"github.com/maxloyalty/notify/internal/store"
)

// Config configures the delivery queue. Zero values take the defaults in
// each comment.
type Config struct {
	// ClientID names this node's River client: unique per running node,
	// and the same across a node's restarts, so that a restarted node takes
	// its leadership back at once. Required.
	ClientID string

	// Senders are the configured user channels (web push, FCM, APNs,
	// email), one per channel; a channel without a sender is off.
	Senders []channel.Sender
	// Webhook sends to the Webhooks; required when Webhooks is not empty.
	Webhook channel.Sender
	// Webhooks are the operator's endpoints.
	Webhooks []Webhook

	// Policy is the server's default delivery policy.
	Policy Policy
	// Timing configures scheduled publishes, digests and throttles
	// (timing.go).
	Timing Timing
	// Streams tells who on this node receives an event live (HubStreams):
	// Observe records them, which cancels their delayed deliveries. Nil:
	// only the inbox's seen and read states cancel them.
	Streams Streams
	// Tracer, when set, traces each attempt of a delivery or webhook as a
	// span of its own trace, linked to the publish that queued it. Default:
	// none.
	Tracer trace.Tracer

	// MaxAttempts bounds the attempts of one delivery before it is dead.
	// Default 10.
	MaxAttempts int
	// RetryBase and RetryMax bound the exponential backoff between
	// attempts: base × 2^(failures-1), at most max, with ±20% jitter. A
	// provider's Retry-After wins when it is longer. Defaults 5s and 1h.
	RetryBase, RetryMax time.Duration
	// Workers is the number of sends at once per channel on this node
	// (River's MaxWorkers of the channel's queue). Default 10 each.
	Workers map[string]int
	// Rates bounds sends per second per channel on this node; a channel
	// absent or at 0 is not rate limited.
	Rates map[string]float64
	// JobTimeout bounds one attempt, rate-limit wait included. Default 1m.
	JobTimeout time.Duration
	// RescueAfter is how long after it started an attempt that never
	// finished (its node died) is retried. Must exceed JobTimeout.
	// Default 2m.
	RescueAfter time.Duration
	// FetchPollInterval is how often idle queues look for due jobs besides
	// River's notifications. Default 1s.
	FetchPollInterval time.Duration
	// Retention keeps finished jobs (which keep a retried publish from
	// queueing them again) this long. Default 24h.
	Retention time.Duration
	// LiveBuffer bounds the live deliveries waiting to be recorded; more
	// are dropped and counted. Default 8192.
	LiveBuffer int

	// Clock replaces the time for River and the queue (tests); nil is the
	// system's clock.
	Clock Clock
	// Log receives the queue's logs; River's own are kept at warnings and
	// above. Default: discard.
	Log *slog.Logger
	// TestOnly skips River's staggered start of its maintenance services.
	TestOnly bool
}

// Clock is the queue's time.
type Clock interface {
	Now() time.Time
}

// riverTime adapts a Clock to River's time generator.
type riverTime struct{ c Clock }

func (r riverTime) Now() time.Time { return r.c.Now() }

func (r riverTime) NowOrNil() *time.Time {
	t := r.c.Now().UTC()
	return &t
}

var _ rivertype.TimeGenerator = riverTime{}

// Webhook is one of the operator's endpoints.
type Webhook struct {
	// Name identifies the webhook in jobs and timelines: [a-z0-9_-], 1 to
	// 32 characters. Jobs name it, and take its URL and secret from the
	// configuration when they run.
	Name string
	// URL receives the POSTs.
	URL string
	// Secret signs them ("whsec_" and base64).
	Secret channel.Secret
	// Events sends every published event; Statuses sends every change of
	// a delivery's status. Neither set: both.
	Events, Statuses bool
}

var webhookName = regexp.MustCompile(`^[a-z0-9_-]{1,32}$`)

// Policy is the server's default delivery policy; users refine it per
// event type (store.DeliveryRule).
type Policy struct {
	// UnseenDelay is how long after publishing a notification of one of
	// DelayedTypes is sent on other channels only if the user has not seen
	// it, live or in the inbox. Default 60s.
	UnseenDelay time.Duration
	// DelayedTypes are the event types (the store's names, "points_added")
	// sent only if unseen after UnseenDelay. Default: the points events
	// (points_added, points_redeemed, points_expired).
	DelayedTypes []string
	// EmailTypes are the event types sent by email when the user has an
	// address, besides the users who turned email on in their preferences
	// and critical alerts, which always go. Default: none.
	EmailTypes []string
	// PushOff are the event types not pushed by default (web push, FCM,
	// APNs). Default: none.
	PushOff []string
}

// DefaultDelayedTypes are the event types delayed until unseen by default.
var DefaultDelayedTypes = []string{"points_added", "points_redeemed", "points_expired"}

// UserChannels are the channels a user's devices and address are reached
// on, in the order deliveries are planned.
var UserChannels = []string{store.ChannelWebPush, store.ChannelFCM, store.ChannelAPNs, store.ChannelEmail}

func (c *Config) defaults() {
	if c.MaxAttempts <= 0 {
		c.MaxAttempts = 10
	}
	if c.RetryBase <= 0 {
		c.RetryBase = 5 * time.Second
	}
	if c.RetryMax <= 0 {
		c.RetryMax = time.Hour
	}
	c.RetryMax = max(c.RetryMax, c.RetryBase)
	if c.JobTimeout <= 0 {
		c.JobTimeout = time.Minute
	}
	if c.RescueAfter <= 0 {
		c.RescueAfter = 2 * time.Minute
	}
	if c.FetchPollInterval <= 0 {
		c.FetchPollInterval = time.Second
	}
	if c.Retention <= 0 {
		c.Retention = 24 * time.Hour
	}
	if c.LiveBuffer <= 0 {
		c.LiveBuffer = 8192
	}
	if c.Policy.UnseenDelay <= 0 {
		c.Policy.UnseenDelay = 60 * time.Second
	}
	if c.Policy.DelayedTypes == nil {
		c.Policy.DelayedTypes = DefaultDelayedTypes
	}
	for i := range c.Webhooks {
		if !c.Webhooks[i].Events && !c.Webhooks[i].Statuses {
			c.Webhooks[i].Events, c.Webhooks[i].Statuses = true, true
		}
	}
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	c.Timing.defaults()
}

func (c *Config) validate() error {
	var errs []error
	if c.ClientID == "" {
		errs = append(errs, errors.New("delivery: client id is required"))
	}
	if c.RescueAfter <= c.JobTimeout {
		errs = append(errs, fmt.Errorf("delivery: rescue-after (%v) must exceed the job timeout (%v)", c.RescueAfter, c.JobTimeout))
	}
	seen := map[string]bool{}
	for _, s := range c.Senders {
		ch := string(s.Channel())
		if !slices.Contains(UserChannels, ch) {
			errs = append(errs, fmt.Errorf("delivery: %q is not a user channel", ch))
		}
		if seen[ch] {
			errs = append(errs, fmt.Errorf("delivery: two senders for %s", ch))
		}
		seen[ch] = true
	}
	names := map[string]bool{}
	for _, w := range c.Webhooks {
		if !webhookName.MatchString(w.Name) {
			errs = append(errs, fmt.Errorf("delivery: webhook name %q: want 1 to 32 of [a-z0-9_-]", w.Name))
		}
		if names[w.Name] {
			errs = append(errs, fmt.Errorf("delivery: webhook %q named twice", w.Name))
		}
		names[w.Name] = true
		if err := (channel.WebhookTarget{URL: w.URL, Secret: w.Secret}).Validate(); err != nil {
			// The error names neither the URL nor the secret.
			errs = append(errs, fmt.Errorf("delivery: webhook %q: %w", w.Name, err))
		} else if u, _ := url.Parse(w.URL); u == nil {
			errs = append(errs, fmt.Errorf("delivery: webhook %q: bad URL", w.Name))
		}
	}
	if len(c.Webhooks) > 0 && c.Webhook == nil {
		errs = append(errs, errors.New("delivery: webhooks need a webhook sender"))
	}
	for ch, n := range c.Workers {
		if n < 0 || n > 1000 {
			errs = append(errs, fmt.Errorf("delivery: workers of %s: %d is not 0 to 1000", ch, n))
		}
	}
	for ch, r := range c.Rates {
		if r < 0 {
			errs = append(errs, fmt.Errorf("delivery: rate of %s must not be negative", ch))
		}
	}
	errs = append(errs, c.Timing.validate())
	return errors.Join(errs...)
}
