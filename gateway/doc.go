// Package gateway serves notifyd's HTTP port: grpc-web (and its websocket
// transport) for browsers, the REST/JSON gateway for publishers, the OpenAPI
// document, and health probes.
//
// The REST gateway calls the services through an [InProcess] channel: unary
// calls run the service's handler directly, through the same unary
// interceptors (authentication, metrics, logging, recovery) and message size
// bound as native gRPC calls, with no second HTTP/2 hop; streams (REST
// subscribe) reach the gRPC server over an in-process connection and its
// stream interceptors. Handler is safe for concurrent use.
//
// grpc-web over HTTP is translated by improbable-eng's wrapper; its
// websocket transport is served here (websocket.go), streaming request
// bytes into the gRPC server so that its message size limit is the only
// one. CORS for grpc-web and REST is this package's own: allowed origins
// only, the methods the routes use, never credentials (tokens travel in
// the Authorization header).
package gateway
