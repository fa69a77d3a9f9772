// Package wire serves gRPC over HTTP/2 for the services of a node, in place
// of grpc-go's server on the native gRPC port.
//
// grpc-go's server gives every stream a goroutine for its handler and
// another that writes, and wakes a goroutine per stream per message. Here a
// connection has one reader goroutine and, only while it has bytes to
// write, one writer goroutine. A stream whose handler attaches a pump
// (Attach) is written by its connection's writer: a delivery to ten
// thousand streams over a hundred connections wakes a hundred goroutines,
// each writing its connection's share in one system call, instead of ten
// thousand.
//
// Services register as on a grpc.Server (the generated RegisterXServer
// functions take a Server), and calls run through the same grpc-go unary
// and stream interceptors, so authentication, metrics, logging and panic
// recovery behave as on grpc-go's server. It speaks h2c (HTTP/2 with prior
// knowledge) on a plain listener and HTTP/2 over TLS (ALPN h2) on a TLS
// listener; HTTP/2 flow control is honoured both ways, a client's pings are
// answered and limited, and an idle connection is probed with pings and
// closed when they go unanswered.
package wire
