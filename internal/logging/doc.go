// Package logging holds the gRPC interceptors that log one line per call
// (method, code, duration, caller, never a token) and turn a panic in a
// handler into an Internal status, logged with its stack, so the server
// keeps serving. StreamInterceptor is the node's stream interceptors
// (metrics, this log line, authentication, the caller's tag, recovery) in
// one, so that a live stream's parked goroutine holds one frame for them.
//
// The interceptors are safe for concurrent use.
package logging
