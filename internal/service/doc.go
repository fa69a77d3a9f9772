// Package service implements notify.v1.NotificationService on top of a
// broker (offsets, history, idempotency) and a hub (fan-out to this node's
// streams).
//
// Concurrency: Service is safe for concurrent use; publishers only queue
// frames and never wait for a subscriber. A Subscribe call's handler
// returns when its stream ends, or, when the transport lets its goroutine
// go (Detach: internal/wire's, and grpc-web's over HTTP/1.1 in
// internal/gateway), once the stream is live: the stream's
// context and the writer's result then end the call themselves. The loop
// (heartbeat, token expiry, slow consumer, the end of the stream) does
// not write once the stream is live: exactly one
// writer at a time sends, either a sender goroutine the loop starts, or,
// when the transport offers it (internal/wire's Attach), the connection's
// writer goroutine running the stream's pump, kicked by the hub's pushes.
package service
