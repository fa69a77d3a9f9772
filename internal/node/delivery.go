package node

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	notifyv1 "github.com/maxloyalty/notify/gen/notify/v1"
	"github.com/maxloyalty/notify/internal/broker"
	"github.com/maxloyalty/notify/internal/channel"
	"github.com/maxloyalty/notify/internal/delivery"
	"github.com/maxloyalty/notify/internal/hub"
	"github.com/maxloyalty/notify/internal/service"
	"github.com/maxloyalty/notify/internal/store"
)

// DeliveryConfig configures how users are reached outside the live stream
// (web push, FCM, APNs, email) and the operator's webhooks, on the durable
// delivery queue (docs/CHANNELS.md). A channel is on when its key or host
// is given. Every secret is given either as a value (flag or NOTIFY_*
// environment variable, masked by `notifyd config print`) or as a file
// (the -file flag), never both; secrets are never logged.
type DeliveryConfig struct {
	// WebPushVAPIDPublicKey is the VAPID public key (P-256, uncompressed,
	// base64url), given to browsers by GetDeliveryConfig.
	WebPushVAPIDPublicKey string
	// WebPushVAPIDPrivateKey (secret) or WebPushVAPIDPrivateKeyFile is the
	// matching private key (the 32-byte scalar, base64url). Set: web push on.
	WebPushVAPIDPrivateKey, WebPushVAPIDPrivateKeyFile string
	// WebPushSubject is the VAPID contact, "mailto:..." or "https://...".
	// Required with web push.
	WebPushSubject string

	// FCMCredentials (secret) or FCMCredentialsFile is a Firebase service
	// account's JSON key. Set: FCM on.
	FCMCredentials, FCMCredentialsFile string
	// FCMProjectID is the Firebase project. Default: the key's project_id.
	FCMProjectID string
	// FCMEndpoint is FCM's API root. Default https://fcm.googleapis.com/v1.
	FCMEndpoint string

	// APNsKey (secret) or APNsKeyFile is the .p8 token signing key (PEM).
	// Set: APNs on.
	APNsKey, APNsKeyFile string
	// APNsKeyID and APNsTeamID are the key's and team's ids; APNsTopic is
	// the app's bundle id. Required with APNs.
	APNsKeyID, APNsTeamID, APNsTopic string
	// APNsEndpoint is APNs' origin. Default https://api.push.apple.com
	// (https://api.sandbox.push.apple.com for development builds).
	APNsEndpoint string

	// SMTPHost is the SMTP relay (SendGrid, SES, a local MTA). Set: email on.
	SMTPHost string
	// SMTPPort is its port. Default 587 (465 with tls, 25 with none).
	SMTPPort int
	// SMTPSecurity is starttls (the default), tls or none (a local relay).
	SMTPSecurity string
	// SMTPUsername authenticates with AUTH PLAIN when set.
	SMTPUsername string
	// SMTPPassword (secret) or SMTPPasswordFile is its password.
	SMTPPassword, SMTPPasswordFile string
	// EmailFrom is the sender, "Max Loyalty <noreply@example.com>".
	// Required with email.
	EmailFrom string

	// Webhooks are the operator's endpoints, each name=URL (name: 1 to 32
	// of [a-z0-9_-]); each needs a secret in WebhookSecrets.
	Webhooks []string
	// WebhookSecrets (secret; name=whsec_..., comma-separated) or
	// WebhookSecretsFile (one name=whsec_... per line) sign the webhooks.
	WebhookSecrets, WebhookSecretsFile string
	// WebhookSend narrows what a webhook receives, name=events or
	// name=statuses. Default: both, every event and every delivery status.
	WebhookSend []string

	// UnseenDelay is how long after publishing DelayedTypes are sent, only
	// if the user has not seen them by then. Default 60s.
	UnseenDelay time.Duration
	// DelayedTypes are event types (points_added...) sent only if unseen
	// after UnseenDelay; "none" for none. Default: the points events.
	DelayedTypes []string
	// EmailTypes are event types emailed to users with an address (besides
	// users who turned email on, and critical alerts). Default: none.
	EmailTypes []string
	// PushOff are event types not pushed unless a user's rule turns them
	// on. Default: none.
	PushOff []string

	// MaxAttempts bounds one delivery's attempts before it is dead.
	// Default 10.
	MaxAttempts int
	// RetryBase and RetryMax bound the exponential backoff between
	// attempts (±20% jitter). Defaults 5s and 1h.
	RetryBase, RetryMax time.Duration
	// Workers are sends at once per channel on this node, channel=n
	// (webpush, fcm, apns, email, webhook). Default 10 each.
	Workers []string
	// Rates bound sends per second per channel on this node, channel=rate.
	// Default: none.
	Rates []string
	// JobTimeout bounds one attempt. Default 1m.
	JobTimeout time.Duration
	// RescueAfter retries an attempt that never finished (its node died)
	// this long after it started; above JobTimeout. Default 2m.
	RescueAfter time.Duration
	// PollInterval is how often idle workers look for due jobs besides the
	// database's notifications. Default 1s.
	PollInterval time.Duration
	// Retention keeps finished jobs, which keep a retried publish from
	// queueing them again. Default 24h.
	Retention time.Duration

	// CAFile is a PEM file of certificate authorities trusted besides the
	// system's, for providers, relays and webhooks behind a private CA.
	CAFile string
	// AllowPrivate lets web push endpoints and the FCM endpoint be on
	// loopback and private addresses. Endpoints come from users' browsers:
	// only for tests and closed networks. Default false.
	AllowPrivate bool
}

func (d *DeliveryConfig) bindFlags(b *binder) {
	str, integer, dur, list := b.str, b.integer, b.dur, b.list
	str(&d.WebPushVAPIDPublicKey, "webpush-vapid-public-key", "", "web push: VAPID public key, base64url")
	str(&d.WebPushVAPIDPrivateKey, "webpush-vapid-private-key", "", "web push: VAPID private key, base64url (secret; turns web push on)")
	str(&d.WebPushVAPIDPrivateKeyFile, "webpush-vapid-private-key-file", "", "web push: file holding the VAPID private key")
	str(&d.WebPushSubject, "webpush-subject", "", "web push: VAPID contact, mailto:... or https://...")
	str(&d.FCMCredentials, "fcm-credentials", "", "FCM: service account JSON key (secret; turns FCM on)")
	str(&d.FCMCredentialsFile, "fcm-credentials-file", "", "FCM: file holding the service account JSON key")
	str(&d.FCMProjectID, "fcm-project-id", "", "FCM: Firebase project id (default: the key's)")
	str(&d.FCMEndpoint, "fcm-endpoint", "", "FCM: API root (default https://fcm.googleapis.com/v1)")
	str(&d.APNsKey, "apns-key", "", "APNs: .p8 token signing key, PEM (secret; turns APNs on)")
	str(&d.APNsKeyFile, "apns-key-file", "", "APNs: the .p8 key file")
	str(&d.APNsKeyID, "apns-key-id", "", "APNs: the key's id")
	str(&d.APNsTeamID, "apns-team-id", "", "APNs: the team id")
	str(&d.APNsTopic, "apns-topic", "", "APNs: the app's bundle id")
	str(&d.APNsEndpoint, "apns-endpoint", "", "APNs: origin (default https://api.push.apple.com)")
	str(&d.SMTPHost, "smtp-host", "", "email: SMTP relay host (turns email on)")
	integer(&d.SMTPPort, "smtp-port", 0, "email: SMTP port (default 587; 465 with tls, 25 with none)")
	str(&d.SMTPSecurity, "smtp-security", "starttls", "email: starttls, tls or none")
	str(&d.SMTPUsername, "smtp-username", "", "email: AUTH PLAIN user")
	str(&d.SMTPPassword, "smtp-password", "", "email: AUTH PLAIN password (secret)")
	str(&d.SMTPPasswordFile, "smtp-password-file", "", "email: file holding the SMTP password")
	str(&d.EmailFrom, "email-from", "", `email: sender, "Max Loyalty <noreply@example.com>"`)
	list(&d.Webhooks, "webhooks", "operator webhooks, comma-separated name=URL")
	str(&d.WebhookSecrets, "webhook-secrets", "", "webhook signing secrets, comma-separated name=whsec_... (secret)")
	str(&d.WebhookSecretsFile, "webhook-secrets-file", "", "file of webhook signing secrets, one name=whsec_... per line")
	list(&d.WebhookSend, "webhook-send", "what webhooks receive, comma-separated name=events or name=statuses (default: both)")
	dur(&d.UnseenDelay, "delivery-unseen-delay", 60*time.Second, "delayed types are pushed and emailed only if unseen this long after publishing")
	list(&d.DelayedTypes, "delivery-delayed-types", "event types sent only if unseen after the delay, comma-separated, or none (default points_added,points_redeemed,points_expired)")
	list(&d.EmailTypes, "delivery-email-types", "event types emailed to users with an address (default: none; users who turned email on, and critical alerts, always)")
	list(&d.PushOff, "delivery-push-off", "event types not pushed by default (default: none)")
	integer(&d.MaxAttempts, "delivery-max-attempts", 10, "attempts of one delivery before it is dead")
	dur(&d.RetryBase, "delivery-retry-base", 5*time.Second, "first retry's backoff, doubled per attempt")
	dur(&d.RetryMax, "delivery-retry-max", time.Hour, "longest backoff between attempts")
	list(&d.Workers, "delivery-workers", "sends at once per channel on this node, comma-separated channel=n (default 10 each)")
	list(&d.Rates, "delivery-rates", "sends per second per channel on this node, comma-separated channel=rate (default: none)")
	dur(&d.JobTimeout, "delivery-job-timeout", time.Minute, "longest attempt of one delivery")
	dur(&d.RescueAfter, "delivery-rescue-after", 2*time.Minute, "an attempt whose node died is retried this long after it started")
	dur(&d.PollInterval, "delivery-poll-interval", time.Second, "how often idle workers look for due deliveries")
	dur(&d.Retention, "delivery-retention", 24*time.Hour, "finished deliveries are kept this long")
	str(&d.CAFile, "delivery-ca-file", "", "PEM file of CAs trusted besides the system's, for providers, relays and webhooks")
	b.boolean(&d.AllowPrivate, "delivery-allow-private", false, "let web push endpoints and the FCM endpoint be on loopback and private addresses (tests and closed networks only)")
}

func (d DeliveryConfig) defaults() DeliveryConfig {
	setDur(&d.UnseenDelay, 60*time.Second)
	setStr(&d.SMTPSecurity, "starttls")
	setInt(&d.MaxAttempts, 10)
	setDur(&d.RetryBase, 5*time.Second)
	setDur(&d.RetryMax, time.Hour)
	setDur(&d.JobTimeout, time.Minute)
	setDur(&d.RescueAfter, 2*time.Minute)
	setDur(&d.PollInterval, time.Second)
	setDur(&d.Retention, 24*time.Hour)
	return d
}

// validate checks what can be checked without reading files.
func (d DeliveryConfig) validate() []error {
	var errs []error
	for _, s := range []struct{ flag, value, file string }{
		{"webpush-vapid-private-key", d.WebPushVAPIDPrivateKey, d.WebPushVAPIDPrivateKeyFile},
		{"fcm-credentials", d.FCMCredentials, d.FCMCredentialsFile},
		{"apns-key", d.APNsKey, d.APNsKeyFile},
		{"smtp-password", d.SMTPPassword, d.SMTPPasswordFile},
		{"webhook-secrets", d.WebhookSecrets, d.WebhookSecretsFile},
	} {
		if s.value != "" && s.file != "" {
			errs = append(errs, fmt.Errorf("%s, %s-file: give the secret or its file, not both", s.flag, s.flag))
		}
	}
	if d.webPush() && (d.WebPushVAPIDPublicKey == "" || d.WebPushSubject == "") {
		errs = append(errs, errors.New("webpush-vapid-public-key, webpush-subject: required with a VAPID private key"))
	}
	if d.apns() && (d.APNsKeyID == "" || d.APNsTeamID == "" || d.APNsTopic == "") {
		errs = append(errs, errors.New("apns-key-id, apns-team-id, apns-topic: required with an APNs key"))
	}
	if d.SMTPHost != "" && d.EmailFrom == "" {
		errs = append(errs, errors.New("email-from: required with smtp-host"))
	}
	switch d.SMTPSecurity {
	case "starttls", "tls", "none":
	default:
		errs = append(errs, fmt.Errorf("smtp-security: %q is not starttls, tls or none", d.SMTPSecurity))
	}
	for _, w := range d.Webhooks {
		name, u, ok := strings.Cut(w, "=")
		if !ok || name == "" {
			errs = append(errs, fmt.Errorf("webhooks: %q: want name=URL", w))
			continue
		}
		if p, err := url.Parse(u); err != nil || (p.Scheme != "https" && p.Scheme != "http") || p.Host == "" {
			errs = append(errs, fmt.Errorf("webhooks: %s: the URL must be http or https", name))
		}
	}
	for _, w := range d.WebhookSend {
		name, what, ok := strings.Cut(w, "=")
		if !ok || (what != "events" && what != "statuses") || !slices.ContainsFunc(d.Webhooks, func(s string) bool { return strings.HasPrefix(s, name+"=") }) {
			errs = append(errs, fmt.Errorf("webhook-send: %q: want name=events or name=statuses for a webhook of --webhooks", w))
		}
	}
	if _, err := channelInts(d.Workers, "delivery-workers"); err != nil {
		errs = append(errs, err)
	}
	if _, err := channelRates(d.Rates); err != nil {
		errs = append(errs, err)
	}
	if d.RescueAfter <= d.JobTimeout {
		errs = append(errs, errors.New("delivery-rescue-after: must exceed delivery-job-timeout"))
	}
	for _, list := range []struct {
		flag  string
		types []string
	}{{"delivery-delayed-types", d.DelayedTypes}, {"delivery-email-types", d.EmailTypes}, {"delivery-push-off", d.PushOff}} {
		for _, t := range list.types {
			if t == "none" && list.flag == "delivery-delayed-types" && len(list.types) == 1 {
				continue
			}
			if notifyv1.EventType_value["EVENT_TYPE_"+strings.ToUpper(t)] == 0 {
				errs = append(errs, fmt.Errorf("%s: %q is not an event type such as points_added", list.flag, t))
			}
		}
	}
	return errs
}

func (d DeliveryConfig) webPush() bool {
	return d.WebPushVAPIDPrivateKey != "" || d.WebPushVAPIDPrivateKeyFile != ""
}

func (d DeliveryConfig) apns() bool { return d.APNsKey != "" || d.APNsKeyFile != "" }

// channelInts parses channel=n lists.
func channelInts(list []string, flag string) (map[string]int, error) {
	out := map[string]int{}
	for _, part := range list {
		ch, v, ok := strings.Cut(part, "=")
		n, err := strconv.Atoi(v)
		if !ok || err != nil || !isQueue(ch) || n < 1 || n > 1000 {
			return nil, fmt.Errorf("%s: %q: want channel=n, channel one of webpush, fcm, apns, email, webhook and n 1 to 1000", flag, part)
		}
		out[ch] = n
	}
	return out, nil
}

// channelRates parses channel=rate lists.
func channelRates(list []string) (map[string]float64, error) {
	out := map[string]float64{}
	for _, part := range list {
		ch, v, ok := strings.Cut(part, "=")
		r, err := strconv.ParseFloat(v, 64)
		if !ok || err != nil || !isQueue(ch) || r <= 0 {
			return nil, fmt.Errorf("delivery-rates: %q: want channel=rate, a positive number per second", part)
		}
		out[ch] = r
	}
	return out, nil
}

func isQueue(ch string) bool {
	return slices.Contains(delivery.UserChannels, ch) || ch == store.ChannelWebhook
}

// secret returns a secret given as a value or in a file. A file's trailing
// newline is dropped.
func secret(value, file string) (channel.Secret, error) {
	if file == "" {
		return channel.Secret(value), nil
	}
	b, err := os.ReadFile(file)
	if err != nil {
		// The path is the operator's; the error holds no content.
		return "", err
	}
	return channel.Secret(strings.TrimRight(string(b), "\r\n")), nil
}

// deliveries is the node's delivery queue with its senders.
type deliveries struct {
	queue   *delivery.Queue
	info    service.DeliveryInfo
	closers []io.Closer
}

func (d *deliveries) close() {
	for _, c := range d.closers {
		c.Close()
	}
}

// newDeliveries builds the delivery queue of a node from its config: the
// senders of the configured channels, the webhooks, the policy, and River's
// client on the store's database (not started: Run starts it).
func newDeliveries(ctx context.Context, cfg Config, st store.Store, h *hub.Hub, log *slog.Logger) (*deliveries, error) {
	dc := cfg.Delivery
	out := &deliveries{}
	fail := func(err error) (*deliveries, error) {
		out.close()
		return nil, fmt.Errorf("delivery: %w", err)
	}
	var roots *x509.CertPool
	if dc.CAFile != "" {
		pem, err := os.ReadFile(dc.CAFile)
		if err != nil {
			return fail(fmt.Errorf("delivery-ca-file: %w", err))
		}
		if roots, err = x509.SystemCertPool(); err != nil || roots == nil {
			roots = x509.NewCertPool()
		}
		if !roots.AppendCertsFromPEM(pem) {
			return fail(errors.New("delivery-ca-file: no PEM certificate in it"))
		}
	}
	var senders []channel.Sender
	if dc.webPush() {
		key, err := secret(dc.WebPushVAPIDPrivateKey, dc.WebPushVAPIDPrivateKeyFile)
		if err != nil {
			return fail(fmt.Errorf("webpush-vapid-private-key-file: %w", err))
		}
		w, err := channel.NewWebPush(channel.WebPushConfig{
			VAPIDPublicKey: dc.WebPushVAPIDPublicKey, VAPIDPrivateKey: key, Subject: dc.WebPushSubject,
			RootCAs: roots, AllowInsecure: dc.AllowPrivate,
		})
		if err != nil {
			return fail(err)
		}
		senders, out.closers = append(senders, w), append(out.closers, w)
		out.info.VAPIDPublicKey = dc.WebPushVAPIDPublicKey
	}
	if dc.FCMCredentials != "" || dc.FCMCredentialsFile != "" {
		creds, err := secret(dc.FCMCredentials, dc.FCMCredentialsFile)
		if err != nil {
			return fail(fmt.Errorf("fcm-credentials-file: %w", err))
		}
		f, err := channel.NewFCM(ctx, channel.FCMConfig{
			CredentialsJSON: creds, ProjectID: dc.FCMProjectID, Endpoint: dc.FCMEndpoint,
			RootCAs: roots, AllowPrivate: dc.AllowPrivate,
		})
		if err != nil {
			return fail(err)
		}
		senders = append(senders, f)
		if c, ok := any(f).(io.Closer); ok {
			out.closers = append(out.closers, c)
		}
	}
	if dc.apns() {
		key, err := secret(dc.APNsKey, dc.APNsKeyFile)
		if err != nil {
			return fail(fmt.Errorf("apns-key-file: %w", err))
		}
		a, err := channel.NewAPNs(channel.APNsConfig{
			AuthKey: key, KeyID: dc.APNsKeyID, TeamID: dc.APNsTeamID, Topic: dc.APNsTopic,
			Endpoint: dc.APNsEndpoint, RootCAs: roots,
		})
		if err != nil {
			return fail(err)
		}
		senders = append(senders, a)
		if c, ok := any(a).(io.Closer); ok {
			out.closers = append(out.closers, c)
		}
	}
	if dc.SMTPHost != "" {
		pw, err := secret(dc.SMTPPassword, dc.SMTPPasswordFile)
		if err != nil {
			return fail(fmt.Errorf("smtp-password-file: %w", err))
		}
		e, err := channel.NewEmail(channel.EmailConfig{
			Host: dc.SMTPHost, Port: dc.SMTPPort, Security: channel.EmailSecurity(dc.SMTPSecurity),
			Username: dc.SMTPUsername, Password: pw, From: dc.EmailFrom, RootCAs: roots,
		})
		if err != nil {
			return fail(err)
		}
		senders = append(senders, e)
	}
	hooks, err := dc.webhooks()
	if err != nil {
		return fail(err)
	}
	var hookSender channel.Sender
	if len(hooks) > 0 {
		w, err := channel.NewWebhook(channel.WebhookConfig{RootCAs: roots})
		if err != nil {
			return fail(err)
		}
		hookSender, out.closers = w, append(out.closers, w)
	}
	workers, _ := channelInts(dc.Workers, "delivery-workers") // valid: checked by Validate
	rates, _ := channelRates(dc.Rates)
	policy := delivery.Policy{UnseenDelay: dc.UnseenDelay, DelayedTypes: dc.DelayedTypes, EmailTypes: dc.EmailTypes, PushOff: dc.PushOff}
	if len(dc.DelayedTypes) == 1 && dc.DelayedTypes[0] == "none" {
		policy.DelayedTypes = []string{}
	}
	timing, _ := cfg.Timing.delivery() // valid: checked by Validate
	q, err := delivery.New(delivery.Config{
		ClientID:          cfg.ServerID,
		Timing:            timing,
		Senders:           senders,
		Webhook:           hookSender,
		Webhooks:          hooks,
		Policy:            policy,
		Streams:           delivery.HubStreams(h),
		Tracer:            tracer(cfg.Tracing),
		MaxAttempts:       dc.MaxAttempts,
		RetryBase:         dc.RetryBase,
		RetryMax:          dc.RetryMax,
		Workers:           workers,
		Rates:             rates,
		JobTimeout:        dc.JobTimeout,
		RescueAfter:       dc.RescueAfter,
		FetchPollInterval: dc.PollInterval,
		Retention:         dc.Retention,
		Log:               log.With("component", "delivery"),
	}, st)
	if err != nil {
		return fail(err)
	}
	out.queue = q
	out.info.Channels = q.Channels()
	out.info.UnseenDelay = dc.UnseenDelay
	out.info.DelayedTypes = policy.DelayedTypes
	if policy.DelayedTypes == nil {
		out.info.DelayedTypes = delivery.DefaultDelayedTypes
	}
	if q.Enabled() {
		log.Info("delivery queue configured", "channels", strings.Join(q.Channels(), ","), "webhooks", len(hooks))
	}
	return out, nil
}

// webhooks reads the webhooks and their secrets.
func (d DeliveryConfig) webhooks() ([]delivery.Webhook, error) {
	if len(d.Webhooks) == 0 {
		return nil, nil
	}
	raw, err := secret(d.WebhookSecrets, d.WebhookSecretsFile)
	if err != nil {
		return nil, fmt.Errorf("webhook-secrets-file: %w", err)
	}
	secrets := map[string]channel.Secret{}
	sep := ","
	if d.WebhookSecretsFile != "" {
		sep = "\n"
	}
	for _, line := range strings.Split(string(raw), sep) {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		name, s, ok := strings.Cut(line, "=")
		if !ok {
			// Never quote the line: it holds a secret.
			return nil, errors.New("webhook-secrets: want name=whsec_... entries")
		}
		secrets[strings.TrimSpace(name)] = channel.Secret(strings.TrimSpace(s))
	}
	var out []delivery.Webhook
	for _, w := range d.Webhooks {
		name, u, _ := strings.Cut(w, "=")
		s, ok := secrets[name]
		if !ok {
			return nil, fmt.Errorf("webhook-secrets: no secret for webhook %q", name)
		}
		hook := delivery.Webhook{Name: name, URL: u, Secret: s}
		for _, sel := range d.WebhookSend {
			if n, what, _ := strings.Cut(sel, "="); n == name {
				hook.Events = hook.Events || what == "events"
				hook.Statuses = hook.Statuses || what == "statuses"
			}
		}
		out = append(out, hook)
	}
	return out, nil
}

// deliver hands a message from the broker to the hub, then records which
// of this node's users received it live: their delayed deliveries of it
// are then cancelled (delivery.Queue.Observe never blocks).
func (n *Node) deliver(m broker.Message) {
	n.hub.Deliver(m)
	n.deliveries.queue.Observe(m.Room, m.Data)
}

// startDeliveries starts the delivery queue, retrying until it starts or
// ctx ends: a database that is down when the node starts delays the
// deliveries (they wait in the queue) but not the node.
func (n *Node) startDeliveries(ctx context.Context) {
	wait := time.Second
	for {
		err := n.deliveries.queue.Start(ctx)
		if err == nil {
			return
		}
		n.log.Warn("delivery queue not started; retrying", "in", wait, "err", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		wait = min(2*wait, 30*time.Second)
	}
}
