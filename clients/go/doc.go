// Package notify is the Go client of the notify streaming notification
// server (service notify.v1.NotificationService).
//
// Dial connects to a notifyd gRPC port; the Client publishes events and
// opens subscriptions that survive disconnections.
//
//	c, err := notify.Dial("notify.example.com:443",
//		notify.WithTokenSource(notify.TokenFunc(func(ctx context.Context) (string, error) {
//			return myAuth.Token(ctx) // a fresh JWT whenever asked
//		})))
//	if err != nil { ... }
//	defer c.Close()
//
// # Publishing
//
// Publish takes one of the generated event messages (*notifyv1.PointsAdded,
// *notifyv1.SystemAlert, ...) and sends it to the rooms derived from it, or
// to the rooms named with Rooms. Every publish carries an idempotency key,
// random unless given with IdempotencyKey, so a publish that gRPC retries
// after an UNAVAILABLE (the client's retry policy makes up to four attempts)
// is delivered once. To retry a publish yourself, keep the key and pass it
// again: the server answers the repeat with the first result and
// Duplicate set.
//
// # Subscribing
//
// Subscribe starts a Subscription that runs until its context ends, Close is
// called or a permanent error happens. It delivers events in order, on
// Events or to a Handler, keeps the last position (offset and epoch) of
// every room, and reconnects by itself after any other end of the stream:
// with exponential backoff and full jitter (WithBackoff), after the delay
// the server asks for (Disconnected.reconnect_delay, sent at shutdown), or
// at once with a fresh token when the stream's token expired. It resumes
// from its positions, so events published while it was away are replayed
// and none is delivered twice. When the server cannot replay a room (its
// history was lost, as after a restart of a node with the in-memory broker,
// or the events left the history window), OnGap reports the room: reload
// that room's state from the source of truth.
//
// Permanent errors (PermissionDenied, InvalidArgument, Unimplemented,
// Unauthenticated other than an expired token) stop the subscription; Err
// returns them once Done is closed. A subscription stopped by its context or
// by Close ends with a nil Err.
//
// # Errors
//
// Calls return gRPC status errors (google.golang.org/grpc/status). The
// server attaches an errdetails.ErrorInfo in domain "notify" whose reason
// ErrorReason returns, such as TOKEN_MISSING, TOKEN_INVALID, TOKEN_EXPIRED,
// PERMISSION_DENIED, INVALID_ARGUMENT, INVALID_ROOM, SLOW_CONSUMER,
// SERVER_RESTART or BROKER_UNAVAILABLE. IsPermanent tells the errors that
// retrying cannot cure. docs/clients.md in the repository describes the
// protocol this package implements, for clients in other languages.
package notify
