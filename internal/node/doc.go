// Package node assembles one notifyd node: the gRPC server with its
// interceptors, health and reflection, the broker, the hub, the service and
// the HTTP front door, and runs them until its context ends, then shuts
// down in order (health NOT_SERVING, streams told to reconnect elsewhere,
// GracefulStop bounded by the drain time, broker closed).
//
// A Node is started once; its methods are safe for concurrent use.
package node
