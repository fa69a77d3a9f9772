// Package service implements notify.v1.NotificationService on top of a
// broker (offsets, history, idempotency) and a hub (fan-out to this node's
// streams).
//
// Concurrency: Service is safe for concurrent use. Each Subscribe call runs
// on its own goroutine, which alone sends on its stream; publishers only
// queue frames and never wait for a subscriber.
package service
