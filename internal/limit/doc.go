// Package limit refuses work beyond configured rates and counts: publish
// rate per publisher (PublishRate), concurrent streams per user (Streams),
// and the rate and number of connections a listener admits (ConnRate).
//
// Refusals are plain errors of type *Error wrapping ErrLimited, with a
// Reason (ReasonRateLimited, ReasonTooManyStreams,
// ReasonTooManyConnections); errors.Is also matches them against the
// per-reason sentinels ErrRateLimited, ErrTooManyStreams and
// ErrTooManyConnections. The server's edge maps them to gRPC
// RESOURCE_EXHAUSTED with an ErrorInfo carrying that reason, which the
// gateway turns into HTTP 429.
//
// A non-positive limit disables it: the limiter then admits everything.
//
// A connection ConnRate refuses is closed at once, before the client can
// be told anything: OnReject counts it (a metric) and LogRefused logs it,
// at most one line per second per listener with the number refused since.
//
// Memory: PublishRate keeps one token bucket per key and forgets a key once
// its bucket has refilled completely, since a full bucket is the same as a
// new one. It sweeps for such keys at most once a minute, from Allow, so no
// goroutine runs and nothing needs closing; it holds the keys active within
// roughly the last minute (or the time a bucket takes to refill, when that
// is longer). Keys must be authenticated identities (token subjects), never
// unauthenticated request data. Streams holds one entry per user with an
// open stream.
//
// Concurrency: every method is safe for concurrent use. Each limiter has a
// single mutex, and each listener with LogRefused one more for its log
// counts; none is held while calling out (OnReject and logging run
// unlocked) or while taking another, so there is no lock order to respect.
package limit
