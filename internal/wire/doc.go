// Package wire serves gRPC over HTTP/2 for the services of a node, in place
// of grpc-go's server on the native gRPC port (--grpc-transport=wire).
//
// grpc-go's server gives every stream a goroutine for its handler and
// another that writes, and wakes a goroutine per stream per message. Here a
// connection has a reader goroutine only while it has bytes to read, and a
// writer only while it has bytes to write. On Linux, an idle connection is
// parked on the server's poller (internal/poll: one epoll set and one
// goroutine per server), which starts a reader when bytes come, and its
// frame reader goes back to a pool meanwhile; a TLS connection once
// crypto/tls holds no record unread (a read with a past deadline tells);
// while unary calls run, whose clients likely send more soon, the reader
// waits for the next bytes itself, checking again every busyWait. A
// connection the poller cannot take waits with a reader of its own, handed
// to a fresh goroutine once it has done deep work so that it keeps the
// smallest stack. Plain-TCP
// connections are written by a few writers the server shares (at most
// GOMAXPROCS), with non-blocking writes; a connection whose peer does not
// take its bytes, and a TLS one, gets a writer of its own. A stream whose
// handler attaches a pump (Attach) is written by its connection's writer:
// a delivery to ten thousand streams over a hundred connections wakes a
// hundred writer turns, each writing its connection's share in one system
// call, instead of ten thousand goroutines. Handlers run until their call
// ends, so interceptors and stats handlers see every call's true end and
// status, unless the server allows detaching (Config.Detach) and a
// server-streaming handler detaches (the transport stream's Detach): its
// goroutine then exits, it returns stack.ErrDetached, and the call ends
// when its end function is called. Interceptors that see ErrDetached
// register their end with the transport stream's OnEnd; it runs before the
// trailers are written, and the stats handlers see the end as always. An
// idle detached stream costs no goroutine, and once its handler has
// returned its context no longer carries the request's metadata. A call's context is not a child
// of its connection's (which is never done): the connection's close and
// the client's reset cancel each call, and run what the transport
// stream's OnCancel registered, which costs less than context.AfterFunc.
//
// A connection's first response header block indexes nothing (a pooled
// encoder without a table writes it; the connection makes its own, with
// the peer's table size, at the second block), and a connection that has
// carried one stream, still open, asks its client to empty its table once
// it has nothing left to read (SETTINGS_HEADER_TABLE_SIZE 0; the server's
// decoder is dropped at the acknowledgement, and a decoder without a table
// comes with the frame reader while there are bytes to read): a phone's
// or a browser's own connection keeps no HPACK state for its stream's
// life. Connections that carry more calls
// index as usual. A client must apply the setting before it acknowledges
// it (RFC 9113 §6.5.3, RFC 7541 §4.2), as grpc-go's, x/net's, OkHttp's and
// Netty's encoders do; one that acknowledges and goes on indexing against
// the old table fails its next request with COMPRESSION_ERROR.
//
// Services register as on a grpc.Server (the generated RegisterXServer
// functions take a Server), and calls run through the same grpc-go unary
// and stream interceptors and stats handlers. A call's context is built
// with grpc-go's public constructors (peer, incoming metadata, the
// grpc.ServerTransportStream), so grpc.Method, grpc.SetHeader and
// grpc.SetTrailer work in handlers.
//
// # What it supports
//
//   - HTTP/2 (RFC 9113) as a server: h2c with prior knowledge on a plain
//     listener, and TLS with ALPN h2. Frames are read by golang.org/x/net's
//     http2.Framer, header blocks decoded by its ReadMetaHeaders within
//     Config.MaxHeaderListSize (which validates field names and values,
//     pseudo-header fields, and cuts CONTINUATION floods). Peer settings
//     are validated; frames are written at 16 KiB.
//   - Stream states, stream ids, and flow control both ways: receive windows
//     (Config.InitialWindowSize, InitialConnWindowSize) are enforced with
//     FLOW_CONTROL_ERROR, and send windows honoured up to 2^31-1.
//   - Bounds on everything a peer can fill: a request is checked against
//     the message limit and one message as it arrives; a connection buffers
//     at most a budget of request bytes for calls not yet started; queued
//     control replies and output are bounded (past them the reader stops
//     reading, as grpc-go's does); running handlers, reset or not, count
//     against MAX_CONCURRENT_STREAMS, which is advertised.
//   - gRPC over HTTP/2 (the gRPC PROTOCOL-HTTP2 document): unary, server-,
//     client- and bidirectional streaming; grpc-timeout; binary metadata;
//     status details; Trailers-Only responses; the HTTP statuses grpc-go
//     gives requests that are not gRPC (415 for another content-type, 405
//     for another method, 400 for bad headers); message compression with
//     any registered compressor (gzip when imported), a request's
//     compressor also compressing the response; decompressed size bounded.
//   - grpc-web (the gRPC PROTOCOL-WEB document) over HTTP/2, when
//     Config.WebOrigin is set: binary requests (application/grpc-web,
//     +proto) run as gRPC calls do, their trailers sent as the body's last
//     frame (flow-controlled as messages are); CORS preflights are
//     answered, and a response is readable by the pages WebOrigin grants.
//     Over TLS this is how a browser's stream reaches a transport that
//     parks its connection. The base64 format (grpc-web-text) gets 415.
//   - Operation: keepalive pings and their enforcement (too_many_pings),
//     connection idle and age limits with jitter and a grace period,
//     graceful stop (GOAWAY, then the calls in flight end), stats.Handler.
//
// # What it does not
//
//   - HTTP/1.1, the h2c upgrade, server push, extended CONNECT, and HTTP/2
//     priorities (PRIORITY frames are checked and ignored); requests other
//     than gRPC and grpc-web calls and their preflights.
//   - grpc-go server options beyond Config: tap handles, channelz, the
//     BDP-estimated dynamic window, custom codecs per call (one
//     encoding.CodecV2 serves every call), SetSendCompressor, and
//     grpc.ServerOption itself.
//   - The ORCA and admin services, and server-side load reporting.
//
// # Concurrency
//
// A connection's state (streams, windows, output buffer, header encoder)
// is guarded by its mutex, taken by the reader, the writer and the
// handlers' sends; the run queue of attached pumps has a lock of its own,
// never held while taking the connection's. Only the reader closes the
// network connection; a parked connection is taken back from the poller
// by one atomic exchange, either by the poller (bytes came) or by its
// closing, which then starts the reader that ends it.
package wire
