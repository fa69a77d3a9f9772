// Package channeltest provides protocol peers for the channel senders' tests, and for the
// tests of whatever builds on them: a web push service (RFC 8030, VAPID per RFC 8292,
// decrypting RFC 8291 payloads with a browser-like subscription's keys), an FCM HTTP v1
// server with its OAuth 2.0 token endpoint, an APNs HTTP/2 server checking provider
// tokens, an SMTP server (emersion/go-smtp) with STARTTLS and AUTH PLAIN, and a webhook
// receiver verifying Standard Webhooks signatures.
//
// Each peer listens on 127.0.0.1 only, is written from its protocol's specification
// rather than from the sender's library, records what it received for the test to check,
// answers as scripted (the error answers each provider documents), and is stopped by the
// test's cleanup. Peers are safe for concurrent use.
package channeltest
