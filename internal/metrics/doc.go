// Package metrics holds notifyd's Prometheus instruments and serves them.
//
// A Metrics owns its own prometheus.Registry (never the global default one),
// holding the Go and process collectors, the build info and every notify_*
// instrument. Handler serves that registry in the text exposition format.
//
// Sources of the numbers:
//
//   - gRPC calls: UnaryServerInterceptor and StreamServerInterceptor count
//     every call by full method name and status code, and time it; a stream
//     is recorded when it ends, and notify_grpc_streams_open counts the
//     streams in progress.
//   - Connections: OpenConns counts a port's open connections, from its
//     listener's limit.ConnRate (accept to close, taken over or not).
//   - The fan-out path reports through typed methods: EventPublished,
//     SubscriberJoined/SubscriberLeft, Delivered, QueueDropped, SlowConsumer,
//     BrokerError, StoreError, LimitRejected.
//   - Values that already live elsewhere (hub statistics, for example) are
//     read on scrape through Observe.
//
// Label sets are bounded: room kinds are the six of package room (anything
// else is counted as "unknown"), gRPC methods are the registered ones (see
// InitGRPC), codes are gRPC's seventeen, and op, limit and transport labels
// must be constants chosen by the caller, never request data.
//
// Concurrency: every method of Metrics is safe for
// concurrent use. The hot-path methods (EventPublished, SubscriberJoined,
// SubscriberLeft, Delivered, QueueDropped, SlowConsumer) take no lock and do
// not allocate: their label children are resolved once, in New.
package metrics
