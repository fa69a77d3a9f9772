// Package delivery reaches users beyond the live stream: it plans an event's
// deliveries (web push, FCM, APNs, email) from the server's policy and each
// user's rules, queues them with the operator's webhooks on River
// (github.com/riverqueue/river) in the inbox's database and transaction,
// and works them with the senders of package channel.
//
// # Queue
//
// Jobs are River's, in the store's database (SQLite through the store's
// one writer connection, or the PostgreSQL pool), inserted by Enqueue in
// the transaction that writes the event's inbox rows (store.InsertWith):
// an accepted event has its deliveries queued, or was not accepted. One
// queue per channel ("webpush", "fcm", "apns", "email", "webhook"), whose
// MaxWorkers bounds sends at once per node, and an optional rate per
// channel per node. Each job is unique by the event's inbox key, the user,
// the channel and the target (webhooks: the event or status id and the
// webhook), in every state River keeps jobs in, so a retried publish
// queues nothing twice. Failed attempts are retried with exponential
// backoff and jitter (RetryBase × 2^(n-1), at most RetryMax, ±20%), or
// after the provider's Retry-After when longer (the worker's NextRetry);
// after MaxAttempts a job is discarded (dead). A provider that refuses a
// message for good cancels its job; one that says the target is gone
// removes the device in the transaction that records it. A job that
// succeeded is completed (JobCompleteTx) in the transaction that records
// its "sent" step. Stop lets running attempts finish within the drain,
// then cancels them: River makes them available again without counting
// the attempt. A node that dies leaves its attempts running; River's
// leader retries them RescueAfter after they started. Sends are at least
// once: an attempt whose provider took the message but whose outcome was
// not committed runs again, with the same webhook-id, email Message-ID and
// push topic, by which receivers recognise a repeat.
//
// # Policy
//
// For each inbox owner whose row is new (a user, or the admin group's
// users), each configured channel is on or off by the user's rule for the
// event type, else by the server's Policy: push channels on, email for
// users who turned email on (and Policy.EmailTypes). A CRITICAL system
// alert goes at once on every channel the user did not turn off. Other
// types go at once, except Policy.DelayedTypes (the points events by
// default) and types the user gave an unseen delay: those are scheduled
// (River's ScheduledAt) and, when they run, the worker cancels them if the
// user has by then seen, read, archived, snoozed or deleted the
// notification, or received it live (see Observe) — the job checks when it
// runs; nothing cancels it earlier.
//
// # Status
//
// Each step of each delivery is a store.Status row: queued or scheduled
// (with the job, in the publish's transaction), then sent (user channels:
// the provider accepted it) or delivered (webhooks: the receiver answered
// 2xx; live streams), retrying (with the provider's answer and the next
// attempt's time), failed (refused, gone, or dead after the last attempt)
// or cancelled (seen in time, device removed). Every step of a user
// delivery is also queued, in the same transaction, as a "delivery.status"
// webhook.
//
// # Time
//
// Scheduled publishes (schedule.go), quiet hours (quiet.go), digests
// (digest.go) and throttles (throttle.go) are jobs of the same client in a
// queue of their own, "schedule" (docs/SCHEDULING.md): a scheduled publish
// is handed back to the service's publish path (Publisher) at its time,
// once, with its idempotency key; a digest gathers a type's events in a
// window (store.Tx.JoinDigest) closed by a job that queues one summary per
// target; quiet hours snooze a delivery until they end in the user's time
// zone (CRITICAL alerts excepted); a throttle holds sends over its limit
// ("held" steps) and folds them into the next one, or into a send at the
// window's end. Their state is in the store's tables, written in the jobs'
// transactions; nothing waits in memory.
//
// # Concurrency
//
// A Queue is safe for concurrent use. Enqueue runs inside the caller's
// transaction; Observe never blocks on the database (live steps are
// buffered and written in batches).
package delivery
