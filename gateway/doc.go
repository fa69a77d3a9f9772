// Package gateway serves notifyd's HTTP port: grpc-web (and its websocket
// transport) for browsers, the REST/JSON gateway for publishers, the OpenAPI
// document, and health probes.
//
// The REST gateway reaches the gRPC server over an in-process connection, so
// REST calls pass the same interceptors (authentication, limits) as native
// gRPC ones. Handler is safe for concurrent use.
package gateway
