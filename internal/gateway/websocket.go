package gateway

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/textproto"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"nhooyr.io/websocket"
)

// The grpc-web websocket transport (improbable-eng's "grpc-websockets"
// subprotocol), served by wsTransport:
//
//   - the client's first message is the call's headers, as HTTP header
//     lines; each later one is a control byte, 0 followed by bytes of the
//     gRPC request stream (length-prefixed messages, split anywhere), or a
//     lone 1 when the client has finished sending;
//   - the server sends the grpc-web response stream: a header frame (flag
//     0x80, length, header lines), gRPC messages, and a trailer frame with
//     grpc-status, then closes the websocket normally.
//
// Request bytes are streamed into the gRPC server as they arrive, never
// buffered a whole websocket message at a time: the gRPC server's own
// message size limit (--max-message-bytes) applies, as on every other door,
// and a message over it gets RESOURCE_EXHAUSTED in the trailers instead of
// a websocket close.
//
// Bounds, since every byte here comes from a peer:
//
//   - the headers must arrive within headerTimeout and hold at most
//     headerMax bytes (else close 1008, or 1009);
//   - for a method whose client does not stream (unary, server streaming),
//     the whole request, up to the end of input, must arrive within
//     requestTimeout of the upgrade (else close 1008);
//   - grpc-go's ServeHTTP transport reads a request body ahead of the
//     handler, without flow control, keeping a read buffer (16 KiB) per
//     body read however few bytes it returned. So a body read returns only
//     at the end of a gRPC message, of its prefix when the message will not
//     fit in the buffer (so that the server can refuse its length at
//     once), or when the buffer is full: one-byte frames cost the server no
//     more than the bytes they carry, a small message costs it one buffer.
//     For a method whose client does not stream, the gRPC server itself
//     reads at most two messages (the second is an error). On a
//     client-streaming call, a message may hold at most streamMax bytes
//     (else close 1009), and the buffers held for the handler are bounded
//     by streamMax: with
//     WebsocketStreamInterceptor installed on the gRPC server, the next
//     message waits until the handler has read enough of the previous ones
//     (the websocket is not read meanwhile, and an empty message is sent
//     every probeInterval to notice a client that has gone away); without
//     it, a call that has passed streamMax bytes of buffers on is closed
//     with 1009;
//   - each message the server sends must be written within writeTimeout
//     (a client that stops reading), else the connection is dropped and the
//     call cancelled;
//   - once the call has its status, the rest of the request message being
//     read is dropped for at most drainTimeout.
//
// Control frames (ping, pong, close) are answered by the websocket library
// within its own fixed write timeout; a client that does not read its
// pongs is disconnected by it.

// wsProtocol is the websocket subprotocol of the transport.
const wsProtocol = "grpc-websockets"

// maxWSHeaderBytes bounds the first message, the call's headers; a larger
// one closes the websocket with 1009 (message too big).
const maxWSHeaderBytes = 64 << 10

// Defaults of the transport's bounds (wsTransport's zero values).
const (
	wsHeaderTimeout  = 10 * time.Second
	wsRequestTimeout = 30 * time.Second
	wsWriteTimeout   = 30 * time.Second
	wsDrainTimeout   = 5 * time.Second
	wsStreamMax      = 4 << 20
	wsProbeInterval  = 10 * time.Second
)

// Control bytes that start a client message.
const (
	wsData       = 0
	wsEndOfInput = 1
)

// wsTransport serves grpc-web calls over websockets to a gRPC server's
// ServeHTTP.
type wsTransport struct {
	grpc      http.Handler
	origin    func(*http.Request) bool
	endpoint  func(path string) bool
	passOn    []string // upgrade request headers passed on to the call
	headerMax int64

	// Zero: the defaults above.
	headerTimeout  time.Duration // for the headers, from the upgrade
	requestTimeout time.Duration // for a whole non-client-streaming request, from the upgrade
	writeTimeout   time.Duration // for each message the server sends
	drainTimeout   time.Duration // for the rest of a request message after the status
	streamMax      int64         // bytes of buffers held for a client-streaming call
	probeInterval  time.Duration // of probes while a client stream waits for its handler

	kinds         sync.Once
	clientStreams map[string]bool // "/service/method": the client streams
}

// durationOr returns d, or def when d is zero.
func durationOr(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}

// clientStreaming reports whether the client of a method streams its
// requests. Methods are read from the gRPC server once, on the first call
// (services are registered before New); a method that cannot be found is
// taken as client-streaming, the kind with the stricter buffer bounds and
// no request deadline.
func (t *wsTransport) clientStreaming(path string) bool {
	t.kinds.Do(func() {
		srv, ok := t.grpc.(interface {
			GetServiceInfo() map[string]grpc.ServiceInfo
		})
		if !ok {
			return
		}
		t.clientStreams = map[string]bool{}
		for name, info := range srv.GetServiceInfo() {
			for _, m := range info.Methods {
				t.clientStreams["/"+name+"/"+m.Name] = m.IsClientStream
			}
		}
	})
	cs, ok := t.clientStreams[path]
	return cs || !ok
}

func (t *wsTransport) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !t.origin(r) {
		http.Error(w, "origin not allowed", http.StatusForbidden)
		return
	}
	if !t.endpoint(r.URL.Path) {
		http.Error(w, "unknown method "+r.URL.Path, http.StatusNotFound)
		return
	}
	start := time.Now()
	c, err := websocket.Accept(w, r, &websocket.AcceptOptions{
		InsecureSkipVerify: true, // checked above
		Subprotocols:       []string{wsProtocol},
		CompressionMode:    websocket.CompressionDisabled,
	})
	if err != nil {
		return // Accept has answered
	}
	defer c.Close(websocket.StatusInternalError, "") // a no-op once closed

	// The call ends with the handler, or when the client goes away.
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()

	// The headers, within their time. Deadlines close the websocket from a
	// timer rather than end a read's context: on a read whose context
	// ends, the websocket library spins, starting goroutines, until the
	// connection is closed.
	c.SetReadLimit(t.headerMax)
	late := time.AfterFunc(time.Until(start.Add(durationOr(t.headerTimeout, wsHeaderTimeout))), func() {
		c.Close(websocket.StatusPolicyViolation, "no headers in time")
	})
	typ, b, err := c.Read(ctx)
	if !late.Stop() || err != nil {
		return
	}
	if typ != websocket.MessageBinary {
		c.Close(websocket.StatusUnsupportedData, "the headers must be a binary message")
		return
	}
	hdr, err := textproto.NewReader(bufio.NewReader(io.MultiReader(bytes.NewReader(b), strings.NewReader("\r\n")))).ReadMIMEHeader()
	if err != nil {
		c.Close(websocket.StatusProtocolError, "malformed headers")
		return
	}
	ct := hdr.Get("Content-Type")
	if !strings.HasPrefix(ct, "application/grpc-web") || strings.HasPrefix(ct, "application/grpc-web-text") {
		c.Close(websocket.StatusUnsupportedData, "content-type must be application/grpc-web[+proto]")
		return
	}
	// Each message is streamed (see above): the gRPC server bounds it.
	c.SetReadLimit(math.MaxInt64 - 1)

	h := make(http.Header, len(hdr)+len(t.passOn))
	for _, name := range t.passOn {
		if v := r.Header.Values(name); len(v) > 0 {
			h[http.CanonicalHeaderKey(name)] = v
		}
	}
	for k, v := range hdr {
		h[k] = v
	}
	h.Set("Content-Type", "application/grpc"+strings.TrimPrefix(ct, "application/grpc-web"))
	h.Del("Content-Length")

	resp := &wsResponse{c: c, ctx: ctx, cancel: cancel, timeout: durationOr(t.writeTimeout, wsWriteTimeout), header: http.Header{}}
	body := &wsBody{c: c, ctx: ctx, cancel: cancel, resp: resp, closed: make(chan struct{}),
		drainTimeout: durationOr(t.drainTimeout, wsDrainTimeout), probeInterval: durationOr(t.probeInterval, wsProbeInterval)}
	if t.clientStreaming(r.URL.Path) {
		limit := t.streamMax
		if limit <= 0 {
			limit = wsStreamMax
		}
		body.flow = &wsFlow{max: limit, wake: make(chan struct{}, 1)}
		ctx = context.WithValue(ctx, wsFlowKey{}, body.flow)
	} else {
		// The request must be whole by its deadline.
		body.late = time.AfterFunc(time.Until(start.Add(durationOr(t.requestTimeout, wsRequestTimeout))), func() {
			c.Close(websocket.StatusPolicyViolation, "no whole request in time")
		})
		defer body.late.Stop()
	}
	req := r.Clone(ctx)
	req.Method = http.MethodPost
	req.Proto, req.ProtoMajor, req.ProtoMinor = "HTTP/2.0", 2, 0
	req.Header = h
	req.Body = body
	req.ContentLength = -1
	t.grpc.ServeHTTP(resp, req)
	// The gRPC server closes the body once the status is written, and
	// returns once its reader of the body is done; if it answered without
	// a call (stopping), the body is closed here.
	body.Close()
	body.drain.Stop()
	c.Close(websocket.StatusNormalClosure, "")
}

// wsBody is the call's request body: the bytes of the client's data
// messages, streamed.
type wsBody struct {
	c      *websocket.Conn
	ctx    context.Context // the call's
	cancel context.CancelFunc
	resp   *wsResponse
	flow   *wsFlow     // a client-streaming call's buffers; nil otherwise
	late   *time.Timer // closes the websocket at the request's deadline; nil for a client stream

	msg  io.Reader // the data message being read
	done bool      // the client has finished sending

	// The gRPC message being passed on: its 5-byte prefix, how much of it
	// has been read, and the bytes left of its payload once it has.
	prefix [5]byte
	nfix   int
	left   uint32

	// discard is set once the call has its status: the rest of the
	// message being read is read and dropped, so that a client still
	// sending it can finish and read the status.
	discard      atomic.Bool
	closed       chan struct{} // closed with discard
	drainTimeout time.Duration
	drain        *time.Timer // closes the websocket after drainTimeout of that

	probeInterval time.Duration // of probes while a client stream waits for its handler
	isClosed      bool          // Close ran (on the gRPC server's goroutine)
}

// errWSProtocol is a client message the transport does not define.
var errWSProtocol = errors.New("grpc-websockets: malformed client message")

// errWSStream is a client stream over the transport's bounds.
var errWSStream = errors.New("grpc-websockets: client stream over its bound")

// Read returns the next bytes of the request stream; io.EOF once the client
// has finished sending. A connection that fails or closes cancels the call.
// It fills p across websocket messages and frames, and returns at the end of
// a gRPC message (or of the prefix of one that will not fit in p), so that
// the gRPC server, which keeps a buffer the size of p for each read, holds
// about as many bytes as it was sent.
func (b *wsBody) Read(p []byte) (int, error) {
	n, err := b.fill(p)
	if n > 0 && b.flow != nil {
		b.flow.charge(len(p), b.nfix == 0)
	}
	return n, err
}

func (b *wsBody) fill(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		if b.discard.Load() {
			if b.msg != nil {
				_, _ = io.Copy(io.Discard, b.msg)
				b.msg = nil
			}
			// The close handshake reads what follows.
			return 0, io.EOF
		}
		if b.msg == nil {
			if n > 0 && b.nfix == 0 {
				return n, nil // whole messages: pass them on
			}
			if b.done {
				return n, io.EOF
			}
			if err := b.next(); err != nil {
				return 0, err
			}
			continue
		}
		want := len(p) - n
		if b.nfix < len(b.prefix) {
			want = min(want, len(b.prefix)-b.nfix)
		} else {
			want = min(want, int(min(b.left, math.MaxInt32)))
		}
		k, err := b.msg.Read(p[n : n+want])
		if err == io.EOF {
			b.msg = nil
		} else if err != nil {
			b.cancel()
			return 0, err
		}
		if k == 0 {
			continue
		}
		if b.nfix == 0 && b.flow != nil {
			// The first byte of a new message of a client stream
			// (n is 0 here: a read returns at each message's end).
			switch err := b.flow.admit(b.ctx, b.closed, b.probeInterval, b.probe); {
			case errors.Is(err, errWSStream):
				return 0, b.fail(websocket.StatusMessageTooBig, "request stream over its bound")
			case err == io.EOF:
				continue // closed: discard the rest
			case err != nil:
				return 0, err
			}
		}
		prefixed, err := b.framing(p[n : n+k])
		if err != nil {
			return 0, err
		}
		n += k
		if b.nfix == 0 || prefixed && int64(b.left) > int64(len(p)-n) {
			return n, nil // the end of a message, or a prefix whose message will not fit
		}
		if err := b.ctx.Err(); err != nil {
			return 0, err
		}
	}
	return n, nil
}

// framing follows the gRPC messages through bytes passed on, read up to
// the next prefix or message boundary (so q is within one of them);
// prefixed: q completed a message's prefix.
func (b *wsBody) framing(q []byte) (prefixed bool, err error) {
	if b.nfix < len(b.prefix) {
		b.nfix += copy(b.prefix[b.nfix:], q)
		if b.nfix < len(b.prefix) {
			return false, nil
		}
		prefixed = true
		b.left = binary.BigEndian.Uint32(b.prefix[1:])
		if b.flow != nil && int64(b.left) > b.flow.max {
			return true, b.fail(websocket.StatusMessageTooBig, "request message over the stream's bound")
		}
	} else {
		b.left -= uint32(len(q))
	}
	if b.left == 0 {
		b.nfix = 0
	}
	return prefixed, nil
}

// next starts the client's next message: a data message becomes b.msg, the
// end of input sets b.done.
func (b *wsBody) next() error {
	typ, r, err := b.c.Reader(b.ctx)
	if err != nil {
		b.cancel() // the client is gone, or the call has ended
		return err
	}
	var ctl [2]byte
	n, err := io.ReadFull(r, ctl[:])
	switch {
	case err != nil && err != io.EOF && err != io.ErrUnexpectedEOF:
		b.cancel()
		return err
	case typ != websocket.MessageBinary || n == 0:
		return b.fail(websocket.StatusUnsupportedData, errWSProtocol.Error())
	case n == 2 && ctl[0] == wsData:
		b.msg = io.MultiReader(bytes.NewReader(ctl[1:]), r)
	case n == 1 && ctl[0] == wsData:
		// An empty data message.
	case n == 1 && ctl[0] == wsEndOfInput:
		b.done = true
		if b.late != nil {
			b.late.Stop()
		}
		// Nothing more is read as the request: watch the connection
		// for the client going away (and answer its pings and close).
		context.AfterFunc(b.c.CloseRead(b.ctx), b.cancel)
	default:
		return b.fail(websocket.StatusProtocolError, errWSProtocol.Error())
	}
	return nil
}

// probe sends the client an empty message, which a grpc-web client reads as
// no bytes of the response stream: a write to a client that has gone away
// fails (at the latest the second after it left), as does one to a client
// that has not read for the write timeout; either ends the call.
func (b *wsBody) probe() error {
	ctx, cancel := context.WithTimeout(b.ctx, b.resp.timeout)
	defer cancel()
	if err := b.c.Write(ctx, websocket.MessageBinary, nil); err != nil {
		b.cancel()
		return err
	}
	return nil
}

// fail closes the websocket with code and ends the call.
func (b *wsBody) fail(code websocket.StatusCode, reason string) error {
	b.c.Close(code, reason)
	b.cancel()
	if code == websocket.StatusMessageTooBig {
		return errWSStream
	}
	return errWSProtocol
}

// Close sends the trailers and stops passing request bytes on: the reader
// drops the rest of the message it is in (for at most drainTimeout) and
// ends, so the gRPC server can return and the websocket be closed. The
// gRPC server calls it once the status is written, from the goroutine that
// writes the response.
func (b *wsBody) Close() error {
	if b.isClosed {
		return nil
	}
	b.isClosed = true
	if b.late != nil {
		b.late.Stop() // the call has its status: the drain's time applies
	}
	b.discard.Store(true)
	close(b.closed)
	b.drain = time.AfterFunc(b.drainTimeout, func() { b.c.Close(websocket.StatusNormalClosure, "") })
	b.resp.finish()
	return nil
}

// wsFlowKey is the context key of a client-streaming call's wsFlow.
type wsFlowKey struct{}

// wsFlow bounds the read buffers that the gRPC server holds for a
// client-streaming call, in the bytes of buffer each body read costs it.
// The body charges each read; WebsocketStreamInterceptor reports each
// message the handler has read, which frees the buffers of the oldest.
type wsFlow struct {
	max  int64
	wake chan struct{} // a message was read (capacity 1)

	mu       sync.Mutex
	attached bool    // the interceptor reports reads
	total    int64   // charged since the call began
	held     int64   // charged and not yet read by the handler
	current  int64   // charged to the message being passed on
	whole    []int64 // charged to each whole message not yet read, oldest first
}

// charge accounts for a body read of a buffer of size bytes; end: it ended
// a message.
func (f *wsFlow) charge(size int, end bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.total += int64(size)
	f.held += int64(size)
	f.current += int64(size)
	if end {
		f.whole = append(f.whole, f.current)
		f.current = 0
	}
}

// read is the handler having read a message.
func (f *wsFlow) read() {
	f.mu.Lock()
	f.attached = true
	if len(f.whole) > 0 {
		f.held -= f.whole[0]
		f.whole = f.whole[1:]
	}
	f.mu.Unlock()
	select {
	case f.wake <- struct{}{}:
	default:
	}
}

// attach is the interceptor starting the call.
func (f *wsFlow) attach() {
	f.mu.Lock()
	f.attached = true
	f.mu.Unlock()
}

// admit lets a new message be passed on: at once while the buffers held
// are under the bound; otherwise, with the interceptor, once the handler
// has read enough, and without it, never (errWSStream). While it waits,
// the websocket is not read, so a client that has gone away would not be
// noticed: probe runs every interval, and its error ends the wait. It
// returns another error when the call ends or the body is closed
// meanwhile.
func (f *wsFlow) admit(ctx context.Context, closed <-chan struct{}, interval time.Duration, probe func() error) error {
	var tick <-chan time.Time
	for {
		f.mu.Lock()
		attached, held, total := f.attached, f.held, f.total
		f.mu.Unlock()
		switch {
		case attached && held < f.max:
			return nil
		case !attached && total < f.max:
			return nil
		case !attached:
			return errWSStream
		}
		if tick == nil {
			t := time.NewTicker(interval)
			defer t.Stop()
			tick = t.C
		}
		select {
		case <-f.wake:
		case <-tick:
			if err := probe(); err != nil {
				return err
			}
		case <-closed:
			return io.EOF
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// WebsocketStreamInterceptor lets the websocket transport pass a client
// stream's request messages to the gRPC server only as fast as its handler
// reads them. grpc-go's ServeHTTP transport reads a request body ahead of
// the handler, without flow control; with this interceptor on the server
// given to New, the buffers held for a client stream over a websocket stay
// within the transport's bound however long the call runs. Without it, such
// a call may pass that many bytes of buffers in all, then is closed. Calls
// from other transports pass through.
func WebsocketStreamInterceptor() grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		f, ok := ss.Context().Value(wsFlowKey{}).(*wsFlow)
		if !ok || !info.IsClientStream {
			return handler(srv, ss)
		}
		f.attach()
		return handler(srv, &wsFlowStream{ServerStream: ss, flow: f})
	}
}

// wsFlowStream reports each message its handler reads.
type wsFlowStream struct {
	grpc.ServerStream
	flow *wsFlow
}

func (s *wsFlowStream) RecvMsg(m any) error {
	err := s.ServerStream.RecvMsg(m)
	if err == nil {
		s.flow.read()
	}
	return err
}

// wsResponse writes the grpc-web response stream to the websocket. The
// gRPC server writes from one goroutine at a time.
type wsResponse struct {
	c       *websocket.Conn
	ctx     context.Context
	cancel  context.CancelFunc // ends the call when a write fails
	timeout time.Duration      // for each write
	header  http.Header

	sent     map[string]bool // keys of the header frame
	status   int             // the HTTP status, when not 200
	errBody  []byte          // what an HTTP error said
	buf      []byte          // written since the last Flush
	finished bool
	err      error
}

func (w *wsResponse) Header() http.Header { return w.header }

// WriteHeader sends the header frame, once. A status other than 200 is the
// gRPC server refusing the request before any call: it becomes the
// trailers' status.
func (w *wsResponse) WriteHeader(code int) {
	if w.sent != nil || w.status != 0 {
		return
	}
	if code != http.StatusOK {
		w.status = code
		return
	}
	w.sent = map[string]bool{}
	h := make(http.Header, len(w.header))
	for k, v := range w.header {
		if k == "Trailer" || strings.HasPrefix(k, http.TrailerPrefix) {
			continue
		}
		w.sent[k] = true
		h[k] = v
	}
	if ct := h.Get("Content-Type"); strings.HasPrefix(ct, "application/grpc") {
		h.Set("Content-Type", "application/grpc-web"+strings.TrimPrefix(ct, "application/grpc"))
	}
	w.frame(h)
}

func (w *wsResponse) Write(p []byte) (int, error) {
	if w.sent == nil && w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	if w.status != 0 {
		w.errBody = append(w.errBody, p[:min(len(p), 512-len(w.errBody))]...)
		return len(p), nil
	}
	if w.err != nil {
		return 0, w.err
	}
	w.buf = append(w.buf, p...)
	return len(p), nil
}

// Flush sends what was written since the last Flush as one websocket
// message (the gRPC server flushes after each message it writes).
func (w *wsResponse) Flush() {
	if len(w.buf) == 0 || w.err != nil {
		return
	}
	w.send(w.buf)
	if cap(w.buf) > 64<<10 {
		w.buf = nil
	} else {
		w.buf = w.buf[:0]
	}
}

// finish flushes and sends the trailer frame: the headers set since the
// header frame (grpc-status, grpc-message, ...), lower-case. Without a
// header frame it is a trailers-only response holding them all.
func (w *wsResponse) finish() {
	if w.finished {
		return
	}
	w.finished = true
	w.Flush()
	t := http.Header{}
	for k, v := range w.header {
		if k == "Trailer" || w.sent[k] {
			continue
		}
		t[strings.ToLower(strings.TrimPrefix(k, http.TrailerPrefix))] = v
	}
	if w.status != 0 {
		// The gRPC server's HTTP error (a request it cannot serve).
		t = http.Header{"grpc-status": {"13"}, "grpc-message": {fmt.Sprintf("HTTP %d: %s", w.status, strings.TrimSpace(string(w.errBody)))}}
	} else if len(t["grpc-status"]) == 0 && !w.sent["Grpc-Status"] {
		// The gRPC server returned without a call: it is stopping.
		t["grpc-status"] = []string{"14"}
		t["grpc-message"] = []string{"the server is stopping"}
	}
	w.frame(t)
}

// frame sends a header or trailer frame: flag 0x80, the length, the lines.
func (w *wsResponse) frame(h http.Header) {
	var b bytes.Buffer
	b.Write([]byte{1 << 7, 0, 0, 0, 0})
	_ = h.Write(&b)
	binary.BigEndian.PutUint32(b.Bytes()[1:5], uint32(b.Len()-5))
	if w.err == nil {
		w.send(b.Bytes())
	}
}

// send writes one message within the write timeout. A write that fails
// (the client has gone, or has not read for that long: the websocket
// library then drops the connection) ends the call.
func (w *wsResponse) send(p []byte) {
	ctx, cancel := context.WithTimeout(w.ctx, w.timeout)
	defer cancel()
	if err := w.c.Write(ctx, websocket.MessageBinary, p); err != nil {
		w.err = err
		w.cancel()
	}
}
