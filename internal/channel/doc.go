// Package channel reaches users outside the live stream: web push, mobile push (FCM and
// APNs), email and webhooks. Each channel is a Sender that sends one rendered Message to
// one Target and returns a Result classifying the provider's answer: Accepted (with the
// provider's id), Retryable (with the provider's Retry-After), Permanent (with the
// provider's answer) or Gone (the subscription or device token must be removed). Senders
// never retry and never queue: the durable delivery queue built on them decides, from the
// Result, whether and when to try again, and removes Gone targets.
//
// Render writes a message's Content (push title and body, email text and HTML) from an
// event's JSON with embedded templates per event type, in English and French.
//
// # Channels
//
// Web push (WebPush, github.com/SherClockHolmes/webpush-go): RFC 8030 push messages with
// an RFC 8291 aes128gcm payload (one 4096-byte record; the payload is the JSON of
// WebPushPayload, the event left out when it does not fit) and a VAPID (RFC 8292) ES256
// token; TTL, Urgency and Topic headers from the message (a topic outside RFC 8030's
// 32 URL-safe characters is replaced by a digest of it). 404 and 410 are Gone, 429 and
// 5xx Retryable, 413 and other 4xx Permanent. Endpoints come from browsers, so the sender
// refuses non-https endpoints and endpoints resolving to loopback, private or link-local
// addresses (ErrRefusedAddress), and never follows redirects. Not supported: several
// records per message, the aesgcm (draft) content coding, push message receipts
// (RFC 8030 section 6) and replacing a stored message by its Location.
//
// FCM (FCM, firebase.google.com/go/v4/messaging): HTTP v1 sends to one registration
// token, with a notification, the event in data when it fits in 2 KB, Android collapse
// key, tag, priority and TTL, and the APNs headers for iOS apps registered with FCM. The
// access token comes from a service account key through its token_uri; the endpoint is
// configurable. The SDK would retry 503s and network errors by itself (up to 4 times,
// waiting); the sender lets exactly one request through per Send and classifies its
// answer: UNREGISTERED, and INVALID_ARGUMENT naming message.token, are Gone; UNAVAILABLE,
// INTERNAL, QUOTA_EXCEEDED and other 429 and 5xx Retryable; other errors Permanent, as is
// a refused access token. Not supported: topics, conditions, batch sends, web push through
// FCM.
//
// APNs (APNs, github.com/sideshow/apns2): token-based provider authentication (an ES256
// JWT from the .p8 key, renewed by apns2 before it is an hour old) over HTTP/2; alert
// notifications with apns-topic, apns-push-type, apns-priority (10, or 5 for low urgency),
// apns-expiration (now + TTL) and apns-collapse-id; the time-sensitive interruption level
// for critical messages. 410 Unregistered and 400 BadDeviceToken are Gone; 429, 5xx and
// ExpiredProviderToken Retryable; others Permanent. Not supported: certificate
// authentication, background, VoIP and Live Activity pushes, the critical interruption
// level (it needs Apple's entitlement).
//
// Email (Email, github.com/wneessen/go-mail): one SMTP session per send (STARTTLS by
// default, implicit TLS, or none for a local relay; AUTH PLAIN), a multipart/alternative
// message with the Content's text and HTML, a Message-ID derived from the event and the
// recipient (the same on a retry), Auto-Submitted, List-Unsubscribe (and one-click
// List-Unsubscribe-Post for https links) and Importance: high for critical messages. A
// 4xx reply is Retryable, a 5xx (550 on the recipient included) Permanent, never Gone:
// an address is the user's profile, not a token the sender may remove. Not supported:
// connection reuse across sends, DKIM signing (the relay's business), bounce processing.
//
// Webhooks (Webhook): a JSON WebhookPayload {type, timestamp, data} POSTed to the
// operator's URL and signed per Standard Webhooks (webhook-id is the event id, the same on
// every retry; webhook-timestamp; webhook-signature "v1,<base64 HMAC-SHA256>" with the
// "whsec_" secret). 2xx is Accepted; 410 Permanent (the operator turned the endpoint off);
// 408, 429 and 5xx Retryable; other 4xx and 3xx Permanent (redirects are not followed).
//
// SMS is the next channel: one more HTTP provider behind the same interface, shaped like
// Twilio's Messages resource (POST /2010-04-01/Accounts/{sid}/Messages.json, form fields
// To, From or MessagingServiceSid, Body; HTTP basic auth with the account SID and auth
// token; 201 with the message's sid; errors as {code, message, status}, 429 and 5xx
// retryable), with a phone number as its target.
//
// # Bounds and secrets
//
// Every send is bounded by its sender's timeout (10 s for HTTP channels, 30 s for SMTP) and
// by the caller's context; at most 64 KiB of any answer is read and Result.Reason keeps
// at most 512 bytes of it. Secrets (the VAPID private key, the APNs key, the FCM
// credentials, the SMTP password, webhook secrets) are given as Secret values by the
// caller, which loads them from files or the environment; a Secret never prints, logs or
// serialises its value, and no Result or error holds a secret or a target's URL.
//
// # Concurrency
//
// Senders are safe for concurrent use and hold no lock while sending. Render is safe for
// concurrent use; its templates are parsed once.
package channel
