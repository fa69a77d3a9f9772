// Package tracing sets up OpenTelemetry tracing for notifyd: a tracer
// provider and propagator built from the standard OTEL_* environment
// variables (FromEnv, off unless they say where to export), otelgrpc stats
// handlers for the gRPC servers and clients, otelhttp for the HTTP port,
// and the W3C traceparent that work outliving a call (an event's
// deliveries) keeps, so that its spans link to the call that caused it.
//
// Everything here is safe for concurrent use; a nil *Tracing is tracing
// off.
package tracing
