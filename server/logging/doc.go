// Package logging holds the gRPC interceptors that log one line per call
// (method, code, duration, caller, never a token) and turn a panic in a
// handler into an Internal status, logged with its stack, so the server
// keeps serving.
//
// The interceptors are safe for concurrent use.
package logging
