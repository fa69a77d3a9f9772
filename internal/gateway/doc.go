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
// grpc-web's server-streaming calls (binary format, the common case) run
// in process too once InProcess.ServeStreams is called (webstreams.go
// accepts and runs them, webstream.go is the call),
// through the gRPC server's stream interceptors and stats handlers,
// answering as the improbable wrapper over the gRPC server does, without
// the three goroutines and the copy of the request that grpc-go's HTTP
// handler transport keeps per call. Over HTTP/2 a call runs on its HTTP
// handler's goroutine; over HTTP/1.1 on a goroutine of its own, taking its
// connection over from net/http once net/http has written the response's
// head, writing its body's chunks itself and closing the connection at its
// end, the connection meanwhile waiting for its client on a poller
// (internal/poll), over TLS too. InProcess.Shutdown waits for these
// calls, which the HTTP server's Shutdown no longer sees. With
// Streams.Detach, such a call's handler may let that goroutine go while
// the call goes on (the transport stream's Detach, as internal/wire's). Every other grpc-web request over HTTP is
// translated by improbable-eng's wrapper; its websocket transport is served here (websocket.go),
// streaming request bytes into the gRPC server so that its message size
// limit is the only one. CORS for grpc-web and REST is this package's own: allowed origins
// only, the methods the routes use, never credentials (tokens travel in
// the Authorization header).
package gateway
