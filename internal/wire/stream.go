package wire

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"strconv"
	"sync/atomic"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/stats"
	"google.golang.org/grpc/status"

	"github.com/maxloyalty/notify/internal/stack"
)

// pendingLimit is how much of a stream's output may wait for flow control
// before a handler's SendMsg blocks (an attached pump's sends never block:
// the pump only runs once its stream's output is out).
const pendingLimit = 64 << 10

// stream is one call. The reader goroutine owns the request side until the
// handler starts; the fields marked "c.mu" are shared with the writer and
// the handler.
type stream struct {
	id     uint32
	c      *conn
	m      *method
	ctx    context.Context
	cancel context.CancelFunc // c.mu: set by begin, read by whoever interrupts
	begun  time.Time          // for stats: when the call began

	// Request side.
	req         []byte // unary and server-streaming: the request message
	length      int64  // the request's content-length; -1: none given
	received    int64  // request bytes received
	recvUnacked int64  // c.mu: stream bytes received and not yet acknowledged
	recvWindow  int64  // c.mu: stream bytes the client may still send
	owed        int64  // c.mu: client-streaming bytes whose window waits for the handler to read
	buffered    int    // c.mu: request bytes counted in the connection's buffer
	started     bool
	recvd       bool                // RecvMsg returned the request
	web         bool                // c.mu: a grpc-web call (trailers go in the body)
	rq          *recvQueue          // client-streaming calls
	comp        encoding.Compressor // of the request's messages, and so of the response's; nil: none

	// c.mu
	sendWindow int64
	pending    []byte // output waiting for flow control
	header     metadata.MD
	trailer    metadata.MD
	finished   *status.Status // the handler's status, written after pending
	httpStatus int            // of a call refused before its handler; 0: 200
	headerSent bool
	closed     bool // reset or written out: takes no more output
	remoteDone bool // the client ended its side
	wantPump   bool // kicked while output was pending
	inFlowq    bool
	direct     bool
	cork       bool // output waits for the trailers to wake the writer
	// The call was interrupted (interrupt), and what OnCancel asked to
	// run then. (The bools are together: the struct fits a smaller size
	// class.)
	interrupted bool
	onCancel    func()
	pumpFn      func()

	det *stack.Detached // set by Detach: the handler's goroutine may go before the call ends

	kicked     atomic.Bool // on the run queue
	dispatched atomic.Bool // its handler started: the handler's end is the call's
	statsBegun atomic.Bool // the stats handlers were told the call began (m and ctx are set)
	statsEnded atomic.Bool // the stats handlers were told the call ended
}

// The interfaces a stream offers its handler, and the transport stream in
// its context.
var (
	_ grpc.ServerStream          = (*stream)(nil)
	_ grpc.ServerTransportStream = (*transportStream)(nil)
)

// begin checks a new call's request headers and starts its handler, at
// once or when its request message has arrived. The stream is in the
// connection's map already.
func (st *stream) begin(f *http2.MetaHeadersFrame) {
	c := st.c
	if f.Truncated {
		st.fail(status.Errorf(codes.ResourceExhausted, "header list larger than %d bytes", c.srv.cfg.MaxHeaderListSize))
		return
	}
	req := parseRequest(f.Fields, c.srv.cfg.WebOrigin != nil)
	switch {
	case req.malformed:
		c.resetStream(st.id, http2.ErrCodeProtocol)
		return
	case req.preflight:
		st.preflight(req)
		return
	case req.web:
		// Before anything is written: a refused call's status (415 for
		// grpc-web-text among them) must be readable by the page too.
		cors := c.srv.corsFields(req.md)
		c.mu.Lock()
		st.web = true
		st.header = cors
		c.mu.Unlock()
	}
	if req.abort != nil {
		c.mu.Lock()
		st.httpStatus = req.httpStatus
		c.mu.Unlock()
		st.fail(req.abort)
		return
	}
	st.length = req.length
	if e := req.encoding; e != "" && e != "identity" {
		if st.comp = encoding.GetCompressor(e); st.comp == nil {
			st.fail(status.Errorf(codes.Unimplemented, "grpc: Decompressor is not installed for grpc-encoding %q", e))
			return
		}
	}
	m := c.srv.methods[req.path]
	if m == nil {
		st.fail(unknownMethod(c.srv, req.path))
		return
	}
	st.m = m
	// The call's context is not a child of the connection's: the
	// connection would keep a map of its children for it. The connection's
	// close interrupts each of its streams instead.
	ctx := c.ctx
	var cancel context.CancelFunc
	if req.hasTimeout {
		ctx, cancel = context.WithTimeout(ctx, req.timeout)
	} else {
		ctx, cancel = context.WithCancel(ctx)
	}
	// Under c.mu: the connection's close, on another goroutine, reads it,
	// and may have run already.
	c.mu.Lock()
	st.cancel = cancel
	gone := st.closed || c.closed
	c.mu.Unlock()
	if gone {
		cancel()
	}
	switch {
	case req.md == nil:
	case c.srv.cfg.Detach && m.stream != nil && !m.stream.ClientStreams:
		// A call that may detach: its context may let the metadata go.
		ctx = stack.NewIncoming(ctx, req.md)
	default:
		ctx = metadata.NewIncomingContext(ctx, req.md)
	}
	ctx = grpc.NewContextWithServerTransportStream(ctx, (*transportStream)(st))
	if len(c.stats) > 0 {
		ctx = st.beginStats(ctx, req, int(f.Length))
	}
	st.ctx = ctx
	st.statsBegun.Store(len(c.stats) > 0)

	if m.stream != nil && m.stream.ClientStreams {
		st.rq = newRecvQueue()
		if st.remoteDone {
			st.rq.close()
		}
		st.dispatch()
		return
	}
	if st.remoteDone {
		st.endRequest()
	}
}

// unknownMethod is the status of a call to a method not registered.
func unknownMethod(s *Server, path string) error {
	svc, name, ok := cutPath(path)
	if _, known := s.info[svc]; ok && known {
		return status.Errorf(codes.Unimplemented, "unknown method %v for service %v", clip(name), svc)
	}
	return status.Errorf(codes.Unimplemented, "unknown service %v", clip(svc))
}

func cutPath(path string) (svc, name string, ok bool) {
	if len(path) > 0 && path[0] == '/' {
		path = path[1:]
	}
	for i := len(path) - 1; i >= 0; i-- {
		if path[i] == '/' {
			return path[:i], path[i+1:], true
		}
	}
	return path, "", false
}

// beginStats tells the stats handlers a call began.
func (st *stream) beginStats(ctx context.Context, req request, wireLength int) context.Context {
	c := st.c
	st.begun = time.Now()
	sd := st.m.stream
	begin := &stats.Begin{BeginTime: st.begun, IsClientStream: sd != nil && sd.ClientStreams, IsServerStream: sd != nil && sd.ServerStreams}
	in := &stats.InHeader{FullMethod: req.path, RemoteAddr: c.peer.Addr, LocalAddr: c.peer.LocalAddr, Compression: req.encoding, Header: req.md, WireLength: wireLength}
	for _, h := range c.stats {
		ctx = h.TagRPC(ctx, &stats.RPCTagInfo{FullMethodName: req.path})
	}
	for _, h := range c.stats {
		h.HandleRPC(ctx, in)
		h.HandleRPC(ctx, begin)
	}
	return ctx
}

// onTrailers takes the client's trailers: they end its side of the call.
func (st *stream) onTrailers(f *http2.MetaHeadersFrame) error {
	c := st.c
	c.mu.Lock()
	done := st.remoteDone
	c.mu.Unlock()
	switch {
	case done:
		return http2.StreamError{StreamID: st.id, Code: http2.ErrCodeStreamClosed}
	case !f.StreamEnded() || len(f.PseudoFields()) > 0:
		return http2.StreamError{StreamID: st.id, Code: http2.ErrCodeProtocol}
	}
	st.setRemoteDone()
	if st.rq != nil {
		st.rq.close()
	} else if !st.started && st.m != nil {
		st.endRequest()
	}
	return nil
}

func (st *stream) setRemoteDone() {
	st.c.mu.Lock()
	st.remoteDone = true
	st.c.mu.Unlock()
}

// onData takes b, a DATA frame's bytes without padding, of the request;
// its flow-control window is taken already.
func (st *stream) onData(b []byte, ended bool) error {
	c := st.c
	n := int64(len(b))
	st.received += n
	if st.length >= 0 && (st.received > st.length || ended && st.received != st.length) {
		return http2.StreamError{StreamID: st.id, Code: http2.ErrCodeProtocol} // §8.1.1
	}
	switch {
	case st.m == nil || st.started && st.rq == nil:
		// Refused, or answered already: nothing takes the data.
		c.mu.Lock()
		st.creditStreamLocked(n)
		c.mu.Unlock()
	case st.rq != nil:
		// The stream's window comes back while no whole message waits for
		// the handler (so that a message larger than the window arrives),
		// and once the handler has read the waiting ones otherwise: the
		// window bounds the queue. A message over the limit fails the
		// handler's next RecvMsg, as on grpc-go, and the handler ends the
		// call.
		waiting, err := st.rq.add(b, c.srv.cfg.MaxRecvMsgSize)
		if err == nil {
			c.mu.Lock()
			if waiting {
				st.owed += n
			} else {
				st.creditStreamLocked(n)
			}
			c.mu.Unlock()
		}
	default:
		if err := st.takeRequest(b); err != nil {
			st.fail(err)
			return nil
		}
	}
	if ended {
		st.setRemoteDone()
		switch {
		case st.rq != nil:
			st.rq.close()
		case !st.started && st.m != nil:
			st.endRequest()
		}
	}
	return nil
}

// takeRequest appends b to the request of a unary or server-streaming
// call. Its bytes are bounded before they are kept: by the message size
// limit (from the length prefix), by one message, and by what the
// connection buffers for all its calls. Within these bounds the window is
// given back as the bytes arrive, so that a message larger than a window
// arrives whole.
func (st *stream) takeRequest(b []byte) error {
	c := st.c
	max := c.srv.cfg.MaxRecvMsgSize
	have := len(st.req) + len(b)
	if have >= 5 {
		var prefix [5]byte
		k := copy(prefix[:], st.req)
		copy(prefix[k:], b)
		size := int64(binary.BigEndian.Uint32(prefix[1:5]))
		if size > int64(max) {
			return status.Errorf(codes.ResourceExhausted, "grpc: received message larger than max (%d vs. %d)", size, max)
		}
		if int64(have) > 5+size {
			return status.Error(codes.Internal, "grpc: more than one request message for a call that takes one")
		}
	}
	n := len(b)
	c.mu.Lock()
	if c.buffered+n > c.srv.budget {
		c.mu.Unlock()
		return status.Errorf(codes.ResourceExhausted, "wire: more than %d bytes of requests waiting on this connection", c.srv.budget)
	}
	c.buffered += n
	st.buffered += n
	st.creditStreamLocked(int64(n))
	c.mu.Unlock()
	st.req = append(st.req, b...)
	return nil
}

// endRequest starts the handler of a unary or server-streaming call whose
// request has arrived whole.
func (st *stream) endRequest() {
	if st.length >= 0 && st.received != st.length {
		st.c.resetStream(st.id, http2.ErrCodeProtocol)
		return
	}
	st.dispatch()
}

// dispatch starts the handler: unary calls on a worker, streams on a
// goroutine of their own (a fresh, small stack for as long as they last).
// The handler counts against the connection's quota until it returns.
func (st *stream) dispatch() {
	c := st.c
	st.started = true
	st.dispatched.Store(true)
	c.mu.Lock()
	c.handlers++
	c.releaseLocked(st) // the request is the handler's now, bounded by the quota
	c.mu.Unlock()
	if st.m.unary != nil {
		c.inflight.Add(1)
		c.srv.run(st)
		return
	}
	go st.runStream()
}

// handlerDone gives the handler's place in the quota back.
func (st *stream) handlerDone() {
	c := st.c
	c.mu.Lock()
	c.handlers--
	c.cond.Broadcast()
	c.mu.Unlock()
}

func (st *stream) runUnary() {
	defer st.c.inflight.Add(-1)
	defer st.handlerDone()
	resp, err := st.m.unary(st.m.impl, st.ctx, st.decode, st.c.srv.unary)
	if err == nil {
		// Corked: the response's headers and message wait for its
		// trailers, and the three go out in one write.
		st.c.mu.Lock()
		st.cork = true
		st.c.mu.Unlock()
		err = st.SendMsg(resp)
	}
	st.finish(err)
}

// runStream runs a streaming call's handler on the goroutine dispatch
// started for it. A live Subscribe keeps that goroutine parked under the
// handler for the stream's life: the frame here is kept small (what comes
// before and after is in functions of their own), so that the stack keeps
// its first size.
func (st *stream) runStream() {
	sd := st.m.stream
	var err error
	if ic := st.c.srv.stream; ic != nil {
		err = ic(st.m.impl, st, st.info(), sd.Handler)
	} else {
		err = sd.Handler(st.m.impl, st)
	}
	if st.det != nil {
		if errors.Is(err, stack.ErrDetached) {
			stack.DropIncoming(st.ctx)
		}
		st.det.Returned(err)
		return
	}
	st.streamDone(err)
}

//go:noinline
func (st *stream) info() *grpc.StreamServerInfo {
	sd := st.m.stream
	return &grpc.StreamServerInfo{FullMethod: st.m.name, IsClientStream: sd.ClientStreams, IsServerStream: sd.ServerStreams}
}

// streamDone ends a streaming call whose handler returned.
//
//go:noinline
func (st *stream) streamDone(err error) {
	defer st.handlerDone()
	st.finish(err)
}

// decode reads the request message of a unary or server-streaming call.
func (st *stream) decode(v any) error {
	b := st.req
	st.req = nil
	return st.unmarshal(b, v)
}

// unmarshal decodes one length-prefixed message b into v.
func (st *stream) unmarshal(b []byte, v any) error {
	if len(b) < 5 {
		return status.Error(codes.Internal, "grpc: the request has no message")
	}
	n := binary.BigEndian.Uint32(b[1:5])
	switch {
	case uint64(len(b)-5) < uint64(n):
		return status.Error(codes.Internal, "grpc: the request message is truncated")
	case uint64(len(b)-5) > uint64(n):
		return status.Error(codes.Internal, "grpc: more than one request message")
	}
	msg := b[5 : 5+n]
	if b[0] != 0 {
		if st.comp == nil {
			return status.Error(codes.Internal, "grpc: compressed message without a grpc-encoding")
		}
		var err error
		if msg, err = st.inflate(msg); err != nil {
			return err
		}
	}
	if err := st.c.srv.cfg.Codec.Unmarshal(mem.BufferSlice{mem.SliceBuffer(msg)}, v); err != nil {
		return status.Errorf(codes.Internal, "grpc: failed to unmarshal the received message: %v", err)
	}
	if len(st.c.stats) > 0 {
		in := &stats.InPayload{Payload: v, Length: len(msg), CompressedLength: int(n), WireLength: len(b), RecvTime: time.Now()}
		for _, h := range st.c.stats {
			h.HandleRPC(st.ctx, in)
		}
	}
	return nil
}

// inflate decompresses a message, refusing one that inflates past the
// message bound.
func (st *stream) inflate(b []byte) ([]byte, error) {
	max := st.c.srv.cfg.MaxRecvMsgSize
	r, err := st.comp.Decompress(bytes.NewReader(b))
	if err != nil {
		return nil, status.Errorf(codes.Internal, "grpc: failed to decompress the received message: %v", err)
	}
	out, err := io.ReadAll(io.LimitReader(r, int64(max)+1))
	switch {
	case err != nil:
		return nil, status.Errorf(codes.Internal, "grpc: failed to decompress the received message: %v", err)
	case len(out) > max:
		return nil, status.Errorf(codes.ResourceExhausted, "grpc: received message after decompression larger than max (%d)", max)
	}
	return out, nil
}

// fail ends a call before its handler runs.
func (st *stream) fail(err error) {
	st.started = true
	st.finish(err)
}

// statusOK ends every successful call; a status is only read once made.
var statusOK = status.New(codes.OK, "")

// finish ends the call with err's status: the trailers follow any output
// still waiting for flow control.
func (st *stream) finish(err error) {
	s := statusOK
	if err != nil {
		var ok bool
		if s, ok = status.FromError(err); !ok {
			s = status.FromContextError(err)
		}
	}
	c := st.c
	c.mu.Lock()
	if !st.closed && st.finished == nil {
		st.finished = s
		switch {
		case st.web && st.headerSent:
			// grpc-web's trailers are the body's last frame: flow
			// control holds them as it holds messages.
			st.pending = appendWebTrailers(st.pending, s, st.trailer)
			c.flushLocked(st)
		case len(st.pending) == 0:
			c.trailersLocked(st)
		}
	}
	trailer := st.trailer
	cancel := st.cancel
	c.mu.Unlock()
	if cancel != nil {
		cancel()
	}
	if st.rq != nil {
		st.rq.close()
	}
	st.endStats(s, trailer)
}

// endStats tells the stats handlers, once, that a call that began ended
// with s.
func (st *stream) endStats(s *status.Status, trailer metadata.MD) {
	c := st.c
	if !st.statsBegun.Load() || !st.statsEnded.CompareAndSwap(false, true) {
		return
	}
	var err error
	if s.Code() != codes.OK {
		err = s.Err()
	}
	end := &stats.End{BeginTime: st.begun, EndTime: time.Now(), Error: err}
	for _, h := range c.stats {
		h.HandleRPC(st.ctx, &stats.OutTrailer{Trailer: trailer})
		h.HandleRPC(st.ctx, end)
	}
}

// endUnstarted ends, for the stats handlers, a call removed before its
// handler ran; a running handler's end is told when it returns.
func (st *stream) endUnstarted(err error) {
	if !st.statsBegun.Load() || st.dispatched.Load() {
		return
	}
	s, _ := status.FromError(err)
	st.endStats(s, nil)
}

// trailersLocked writes a finished stream's trailers and forgets it.
func (c *conn) trailersLocked(st *stream) {
	c.sentData.Store(true)
	if st.web && st.headerSent {
		// The trailers went out as the body's last frame.
		c.out = appendFrameHeader(c.outBuf(), 0, http2.FrameData, http2.FlagDataEndStream, st.id)
	} else {
		b := c.beginBlockLocked()
		if !st.headerSent {
			// Trailers-Only.
			code := "200"
			if st.httpStatus != 0 {
				code = strconv.Itoa(st.httpStatus)
			}
			b.enc.WriteField(hpack.HeaderField{Name: ":status", Value: code})
			b.enc.WriteField(hpack.HeaderField{Name: "content-type", Value: contentType(st.web)})
			if st.web {
				metadataFields(st.header, b.field)
			}
			st.headerSent = true
		}
		statusFields(st.finished, b.field)
		metadataFields(st.trailer, b.field)
		c.out = appendHeaders(c.outBuf(), st.id, b.buf.Bytes(), true)
		c.endBlockLocked(b)
	}
	remoteDone := st.remoteDone
	c.removeLocked(st)
	if !remoteDone {
		// The client is still sending: it may stop (RFC 9113 §8.1).
		c.rstLocked(st.id, http2.ErrCodeNo)
	}
	c.wakeLocked()
}

// headersLocked writes the response headers. It returns what to tell the
// stats handlers, nil without any: the caller tells them once it has
// released c.mu, so that no handler's code runs under the connection's lock.
func (c *conn) headersLocked(st *stream) *stats.OutHeader {
	b := c.beginBlockLocked()
	b.enc.WriteField(hpack.HeaderField{Name: ":status", Value: "200"})
	b.enc.WriteField(hpack.HeaderField{Name: "content-type", Value: contentType(st.web)})
	if st.comp != nil {
		b.enc.WriteField(hpack.HeaderField{Name: "grpc-encoding", Value: st.comp.Name()})
	}
	metadataFields(st.header, b.field)
	c.out = appendHeaders(c.outBuf(), st.id, b.buf.Bytes(), false)
	c.endBlockLocked(b)
	st.headerSent = true
	var out *stats.OutHeader
	if len(c.stats) > 0 {
		out = &stats.OutHeader{Compression: compName(st.comp), Header: st.header, FullMethod: st.m.name, RemoteAddr: c.peer.Addr, LocalAddr: c.peer.LocalAddr}
	}
	st.header = nil
	if !st.cork {
		c.wakeLocked()
	}
	return out
}

// tellHeader tells the stats handlers the response headers were sent.
func (st *stream) tellHeader(out *stats.OutHeader) {
	if out == nil {
		return
	}
	for _, h := range st.c.stats {
		h.HandleRPC(st.ctx, out)
	}
}

func compName(c encoding.Compressor) string {
	if c == nil {
		return ""
	}
	return c.Name()
}

// RecvMsg implements grpc.ServerStream.
func (st *stream) RecvMsg(v any) error {
	if st.rq == nil {
		if st.recvd {
			return io.EOF
		}
		st.recvd = true
		if st.m.stream != nil {
			// A stream's goroutine may live as long as the stream, and a
			// deep call (decoding) would leave its stack grown for that
			// long: decode aside.
			var err error
			stack.Aside(func() { err = st.decode(v) })
			return err
		}
		return st.decode(v)
	}
	b, empty, err := st.rq.next(st.ctx)
	if err != nil {
		return err
	}
	if empty {
		// What waited is the handler's now: its window goes back.
		c := st.c
		c.mu.Lock()
		st.creditStreamLocked(st.owed)
		st.owed = 0
		c.mu.Unlock()
	}
	return st.unmarshal(b, v)
}

// creditStreamLocked gives n bytes of the stream's window back; the caller
// holds c.mu.
func (st *stream) creditStreamLocked(n int64) {
	c := st.c
	if c.closed || st.closed || st.remoteDone {
		return
	}
	st.recvUnacked += n
	if st.recvUnacked >= int64(c.srv.cfg.InitialWindowSize)/4 {
		c.out = appendWindowUpdate(c.outBuf(), st.id, uint32(st.recvUnacked))
		st.recvWindow += st.recvUnacked
		st.recvUnacked = 0
		c.wakeLocked()
	}
}

// Context implements grpc.ServerStream.
func (st *stream) Context() context.Context { return st.ctx }

// SetHeader implements grpc.ServerStream.
func (st *stream) SetHeader(md metadata.MD) error {
	st.c.mu.Lock()
	defer st.c.mu.Unlock()
	if st.headerSent {
		return status.Error(codes.Internal, "wire: headers already sent")
	}
	st.header = metadata.Join(st.header, md)
	return nil
}

// SendHeader implements grpc.ServerStream.
func (st *stream) SendHeader(md metadata.MD) error {
	c := st.c
	c.mu.Lock()
	if st.headerSent || st.closed || st.finished != nil {
		c.mu.Unlock()
		return status.Error(codes.Internal, "wire: headers already sent")
	}
	st.header = metadata.Join(st.header, md)
	out := c.headersLocked(st)
	c.mu.Unlock()
	st.tellHeader(out)
	return nil
}

// SetTrailer implements grpc.ServerStream.
func (st *stream) SetTrailer(md metadata.MD) {
	st.c.mu.Lock()
	st.trailer = metadata.Join(st.trailer, md)
	st.c.mu.Unlock()
}

// kick runs the attached pump on the connection's writer, now or, if
// output waits for flow control, once it is out. It takes only the run
// queue's lock, and none when the stream is queued already.
func (st *stream) kick() {
	if !st.kicked.CompareAndSwap(false, true) {
		return
	}
	c := st.c
	c.qmu.Lock()
	c.runq = append(c.runq, st)
	c.qmu.Unlock()
	c.startWriter()
}

// runPump runs the attached pump, unless the stream ended meanwhile or its
// output waits for flow control (then it runs once that is out).
func (st *stream) runPump() {
	c := st.c
	c.mu.Lock()
	fn := st.pumpFn
	switch {
	case st.closed || st.finished != nil:
		fn = nil
	case len(st.pending) > 0:
		st.wantPump = true
		fn = nil
	}
	c.mu.Unlock()
	if fn != nil {
		fn()
	}
}

// interrupt cancels the call's context from outside its handler (the
// client's reset, the connection's close) and runs what OnCancel asked for.
func (st *stream) interrupt() {
	c := st.c
	c.mu.Lock()
	st.interrupted = true
	cancel, f := st.cancel, st.onCancel
	st.onCancel = nil
	c.mu.Unlock()
	if cancel != nil {
		cancel()
	}
	if f != nil {
		go f()
	}
}
