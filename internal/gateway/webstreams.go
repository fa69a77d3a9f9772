package gateway

import (
	"bytes"
	"context"
	"encoding/binary"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/stats"

	"github.com/maxloyalty/notify/internal/grpchdr"
	"github.com/maxloyalty/notify/internal/intercept"
	"github.com/maxloyalty/notify/internal/poll"
	"github.com/maxloyalty/notify/internal/stack"
)

// Streams configures the grpc-web server-streaming calls that run in
// process (InProcess.ServeStreams): what the gRPC server behind grpc-web
// would run them with.
type Streams struct {
	// Interceptors are the gRPC server's stream interceptors, the first
	// outermost.
	Interceptors []grpc.StreamServerInterceptor
	// StatsHandlers are the gRPC server's stats handlers.
	StatsHandlers []stats.Handler
	// Codec encodes responses and decodes requests, as the server's forced
	// codec (grpc.ForceServerCodecV2) does; nil: protobuf.
	Codec encoding.CodecV2
	// Detach lets the handlers of calls that took their HTTP/1.1
	// connection over end their goroutine while the call goes on (the
	// transport stream's Detach, as internal/wire's). Only for
	// interceptors that know of stack.ErrDetached.
	Detach bool
}

// streamMethod is one server-streaming method of a registered service.
type streamMethod struct {
	name    string // "/package.Service/Method"
	impl    any
	handler grpc.StreamHandler
	info    *grpc.StreamServerInfo
}

// webStreams runs grpc-web server-streaming calls in the HTTP handler's
// goroutine, as the improbable wrapper and the gRPC server behind it
// would, without them: the wrapper hands a request to grpc-go's HTTP
// handler transport, which gives every call three goroutines beside the
// HTTP server's (one reading the body, one watching the request's end,
// one running the handler) and a copy of the request's headers, for the
// stream's whole life. Here the call's handler runs on the HTTP server's
// goroutine and writes grpc-web frames to the ResponseWriter itself.
//
// Only the common case runs here: a binary grpc-web request
// (application/grpc-web or application/grpc-web+proto, no grpc-encoding)
// for a server-streaming method, with a valid grpc-timeout if any and
// exactly one message within the size bound. Everything else (text
// format, other methods, compressed or malformed requests) goes on to the
// wrapper, which answers as it always has.
type webStreams struct {
	methods     map[string]*streamMethod
	interceptor grpc.StreamServerInterceptor
	stats       []stats.Handler
	codec       encoding.CodecV2
	maxRecv     int
	detach      bool

	// The calls running on goroutines of their own (HTTP/1.1), which the
	// HTTP server no longer tracks once it has handed their connections
	// over: Shutdown waits for them.
	mu      sync.Mutex
	calls   map[*webStream]struct{}
	idle    chan struct{} // closed when calls empties while stopping
	closing bool

	// poll waits, with one goroutine, for the client of any connection
	// taken over to send or close (see beginLocked).
	poll *poll.Poller
}

// ServeStreams makes the grpc-web server-streaming calls to the services
// registered with c run in process (see New), with cfg's interceptors,
// stats handlers and codec and c's message size bound. Call it before New;
// without it, every grpc-web call goes through the gRPC server.
func (c *InProcess) ServeStreams(cfg Streams) {
	codec := cfg.Codec
	if codec == nil {
		codec = encoding.GetCodecV2("proto")
	}
	c.web = &webStreams{
		calls:       make(map[*webStream]struct{}),
		methods:     c.streams,
		interceptor: intercept.Stream(cfg.Interceptors),
		stats:       slices.Clone(cfg.StatsHandlers),
		codec:       codec,
		maxRecv:     c.maxRecv,
		detach:      cfg.Detach,
		poll:        poll.New(),
	}
}

// Shutdown waits until the grpc-web calls that run on goroutines of their
// own have ended (the HTTP server's Shutdown does not see them: their
// connections are handed over), and refuses to start more; when ctx ends
// first, it ends them (their contexts are cancelled and blocked writes
// cut) and waits for them to return. Call it after the HTTP server's
// Shutdown, once the hub has told the streams to end.
func (c *InProcess) Shutdown(ctx context.Context) error {
	if c.web == nil {
		return nil
	}
	return c.web.shutdown(ctx)
}

func (ws *webStreams) shutdown(ctx context.Context) error {
	// The connections parked get watchers of their own again: a call's
	// client closing still ends it while Shutdown waits.
	ws.poll.Stop()
	ws.mu.Lock()
	ws.closing = true
	if ws.idle == nil {
		ws.idle = make(chan struct{})
		if len(ws.calls) == 0 {
			close(ws.idle)
		}
	}
	idle := ws.idle
	ws.mu.Unlock()
	select {
	case <-idle:
		return nil
	case <-ctx.Done():
	}
	ws.mu.Lock()
	for s := range ws.calls {
		s.interrupt()
	}
	ws.mu.Unlock()
	<-idle
	return ctx.Err()
}

// track counts s among the calls Shutdown waits for; false once stopping.
func (ws *webStreams) track(s *webStream) bool {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	if ws.closing {
		return false
	}
	ws.calls[s] = struct{}{}
	return true
}

func (ws *webStreams) untrack(s *webStream) {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	delete(ws.calls, s)
	if ws.closing && len(ws.calls) == 0 {
		close(ws.idle)
	}
}

// webStreamsOf returns conn's in-process grpc-web streams, or nil.
func webStreamsOf(conn grpc.ClientConnInterface) *webStreams {
	if c, ok := conn.(*InProcess); ok && c.web != nil && len(c.web.methods) > 0 {
		return c.web
	}
	return nil
}

// grpcWebBinary are the request content-types served in process; the
// response mirrors the request's, as the wrapper makes it.
func grpcWebBinary(ct string) bool {
	return ct == "application/grpc-web" || ct == "application/grpc-web+proto"
}

// serve runs r in process and reports true, or reports false without
// writing anything, leaving r (its body included) for the wrapper.
//
// Over HTTP/1.1 the call runs on a goroutine of its own and, once its
// response has begun, takes the connection over from the HTTP server
// (http.Hijacker): the server's goroutine, its connection buffers and the
// goroutine that watches for the client's close go away, and the call
// writes the chunks of its response body itself, on a connection it
// closes at its end. The server writes the response's head; the call
// writes only the chunked framing of its body and reads nothing (any byte
// from the client ends it). Over HTTP/2 (no hijacking) the call runs on
// the handler's goroutine and writes through the ResponseWriter.
func (ws *webStreams) serve(w http.ResponseWriter, r *http.Request) bool {
	m := ws.methods[r.URL.Path]
	if m == nil || r.Method != http.MethodPost {
		return false
	}
	var s *webStream
	stack.Aside(func() { s = ws.open(w, r, m) })
	if s == nil {
		return false
	}
	if s.hj != nil && ws.track(s) {
		s.released = make(chan struct{})
		go s.runOwn()
		// The request's end (its client gone) interrupts the call until
		// the connection is taken over. Waiting here rather than through
		// context.AfterFunc leaves the request's context, which the call's
		// keeps for its values, no map of children.
		select {
		case <-s.released:
		case <-r.Context().Done():
			s.interrupt()
			<-s.released
		}
		return true
	}
	if s.hj != nil {
		// Stopping: run here, through the ResponseWriter.
		s.hj = nil
		defer context.AfterFunc(r.Context(), s.interrupt)()
	}
	ws.run(s)
	return true
}

// open checks r and readies its call, on a short-lived goroutine (the
// HTTP/2 handler's goroutine lives as long as the stream). It returns nil
// when r is left to the wrapper, with what it read of the body put back.
//
//go:noinline
func (ws *webStreams) open(w http.ResponseWriter, r *http.Request, m *streamMethod) *webStream {
	ct := r.Header.Get("Content-Type")
	if !grpcWebBinary(ct) || r.Header.Get("Grpc-Encoding") != "" {
		return nil
	}
	var timeout time.Duration
	if v := r.Header.Get("Grpc-Timeout"); v != "" {
		d, err := grpchdr.ParseTimeout(v)
		if err != nil {
			return nil
		}
		timeout = d
	}
	md, ok := requestMetadata(r, strings.Replace(ct, "application/grpc-web", "application/grpc", 1))
	if !ok {
		return nil
	}
	body, msg, ok := ws.readRequest(r)
	if !ok {
		if len(body) > 0 {
			r.Body = struct {
				io.Reader
				io.Closer
			}{io.MultiReader(bytes.NewReader(body), r.Body), r.Body}
		}
		return nil
	}

	s := &webStream{ws: ws, m: m, w: w, rc: http.NewResponseController(w), contentType: ct, msg: msg}
	s.cut.Store(s.rc)
	ctx := r.Context()
	if hj, ok := w.(http.Hijacker); ok && r.ProtoMajor == 1 && r.ProtoAtLeast(1, 1) {
		// The call may outlive the request (see serve): its context is
		// ended by the request's until the connection is taken over, then
		// by the connection's reader (watch).
		s.hj = hj
		ctx = context.WithoutCancel(ctx)
	}
	switch {
	case timeout > 0:
		ctx, s.cancel = context.WithTimeout(ctx, timeout)
	case s.hj != nil:
		ctx, s.cancel = context.WithCancel(ctx)
	}
	if r.TLS != nil {
		// As grpc-go's HTTP handler transport: the peer's TLS state.
		p, _ := peer.FromContext(ctx)
		np := &peer.Peer{AuthInfo: credentials.TLSInfo{State: *r.TLS, CommonAuthInfo: credentials.CommonAuthInfo{SecurityLevel: credentials.PrivacyAndIntegrity}}}
		if p != nil {
			np.Addr, np.LocalAddr = p.Addr, p.LocalAddr
		}
		ctx = peer.NewContext(ctx, np)
	}
	if ws.detach && s.hj != nil {
		// A call that may detach: its context may let the metadata go.
		ctx = stack.NewIncoming(ctx, md)
	} else {
		ctx = metadata.NewIncomingContext(ctx, md)
	}
	if len(ws.stats) > 0 {
		s.begun = time.Now()
		p, _ := peer.FromContext(ctx)
		in := &stats.InHeader{FullMethod: m.name, Header: md}
		if p != nil {
			in.RemoteAddr, in.LocalAddr = p.Addr, p.LocalAddr
		}
		begin := &stats.Begin{BeginTime: s.begun, IsServerStream: true}
		for _, h := range ws.stats {
			ctx = h.TagRPC(ctx, &stats.RPCTagInfo{FullMethodName: m.name})
			h.HandleRPC(ctx, in)
		}
		for _, h := range ws.stats {
			h.HandleRPC(ctx, begin)
		}
	}
	var ts grpc.ServerTransportStream = (*webTransportStream)(s)
	if s.hj != nil {
		ts = ownTransportStream{(*webTransportStream)(s)}
	}
	s.ctx = grpc.NewContextWithServerTransportStream(ctx, ts)
	return s
}

// readRequest reads r's body: it must be exactly one uncompressed message
// of at most maxRecv bytes. It returns what it read, and the message.
func (ws *webStreams) readRequest(r *http.Request) (read, msg []byte, ok bool) {
	limit := int64(ws.maxRecv) + 5
	if r.ContentLength > limit {
		return nil, nil, false
	}
	b, err := io.ReadAll(io.LimitReader(r.Body, limit+1))
	if err != nil || int64(len(b)) > limit {
		return b, nil, false
	}
	if len(b) < 5 || b[0] != 0 || int(binary.BigEndian.Uint32(b[1:5])) != len(b)-5 || len(b)-5 > ws.maxRecv {
		return b, nil, false
	}
	return b, b[5:], true
}

// requestMetadata is the call's incoming metadata, as grpc-go's HTTP
// handler transport builds it from the request the wrapper hands it: the
// content-type (ct, the gRPC one), :authority, and every header but the
// reserved ones and content-length, binary values decoded. ok is false
// for a malformed binary value.
func requestMetadata(r *http.Request, ct string) (metadata.MD, bool) {
	md := make(metadata.MD, len(r.Header)+2)
	md["content-type"] = []string{ct}
	if r.Host != "" {
		md[":authority"] = []string{r.Host}
	}
	for k, vs := range r.Header {
		k = strings.ToLower(k)
		if k == "content-length" || (reservedHeader(k) && k != "user-agent") {
			continue
		}
		out := make([]string, 0, len(vs))
		for _, v := range vs {
			if strings.HasSuffix(k, "-bin") {
				b, err := grpchdr.DecodeBin(v)
				if err != nil {
					return nil, false
				}
				v = string(b)
			}
			out = append(out, v)
		}
		md[k] = append(md[k], out...)
	}
	return md, true
}

// reservedHeader are the headers grpc-go keeps from the metadata.
func reservedHeader(k string) bool {
	if k != "" && k[0] == ':' {
		return true
	}
	switch k {
	case "content-type", "user-agent", "grpc-message-type", "grpc-encoding",
		"grpc-message", "grpc-status", "grpc-timeout", "te":
		return true
	}
	return false
}

// run runs the call through the interceptors and handler and ends it with
// its status.
func (ws *webStreams) run(s *webStream) {
	var err error
	if ws.interceptor != nil {
		err = ws.interceptor(s.m.impl, s, s.m.info, s.m.handler)
	} else {
		err = s.m.handler(s.m.impl, s)
	}
	s.finish(err)
}
