package wire

import (
	"bytes"
	"context"
	"encoding/binary"
	"io"
	"strings"
	"sync"
	"sync/atomic"

	"golang.org/x/net/http2/hpack"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
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
	ctx    context.Context // &cctx
	cctx   callContext
	cancel context.CancelFunc

	// Request side.
	req         []byte // unary and server-streaming: the request message
	reqErr      error  // the request cannot be read (too large)
	recvUnacked uint32
	started     bool
	recvd       bool                // RecvMsg returned the request
	rq          *recvQueue          // client-streaming calls
	comp        encoding.Compressor // of compressed request messages; nil: none

	// c.mu
	sendWindow int64
	pending    []byte // output waiting for flow control
	headerSent bool
	header     metadata.MD
	trailer    metadata.MD
	finished   *status.Status // the handler's status, written after pending
	closed     bool           // reset or written out: takes no more output
	remoteDone bool           // the client ended its side
	wantPump   bool           // kicked while output was pending
	inFlowq    bool
	direct     bool
	cork       bool // output waits for the trailers to wake the writer
	pumpFn     func()

	kicked atomic.Bool // on the run queue

	// Detached streams (Detach): the end hooks registered with Later, and
	// the status the call ended with once it has.
	hookMu sync.Mutex
	hooks  []func(error)
	ended  bool
	endErr error
}

func statusError(c codes.Code, format string, args ...any) error {
	return status.Errorf(c, format, args...)
}

const codeResourceExhausted = codes.ResourceExhausted

// start checks a new call's request headers and starts its handler, at
// once or when its request message has arrived.
func (st *stream) start(req request, ended bool) {
	c := st.c
	if req.method != "POST" {
		st.fail(statusError(codes.Unimplemented, "method %q not allowed, want POST", req.method))
		return
	}
	if ct := req.contentType; ct != "application/grpc" && !strings.HasPrefix(ct, "application/grpc+") && !strings.HasPrefix(ct, "application/grpc;") {
		st.fail(statusError(codes.Unimplemented, "content-type %q is not gRPC", ct))
		return
	}
	if e := req.encoding; e != "" && e != "identity" {
		if st.comp = encoding.GetCompressor(e); st.comp == nil {
			st.fail(statusError(codes.Unimplemented, "grpc: Decompressor is not installed for grpc-encoding %q", e))
			return
		}
	}
	m := c.srv.methods[req.path]
	if m == nil {
		svc, name, ok := strings.Cut(strings.TrimPrefix(req.path, "/"), "/")
		if _, known := c.srv.info[svc]; ok && known {
			st.fail(statusError(codes.Unimplemented, "unknown method %v for service %v", name, svc))
		} else {
			st.fail(statusError(codes.Unimplemented, "unknown service %v", svc))
		}
		return
	}
	st.m = m
	ctx := c.ctx
	if req.hasTimeout {
		ctx, st.cancel = context.WithTimeout(ctx, req.timeout)
	} else {
		ctx, st.cancel = context.WithCancel(ctx)
	}
	st.cctx = callContext{Context: ctx, st: st, md: req.md}
	st.ctx = &st.cctx

	if m.stream != nil && m.stream.ClientStreams {
		st.rq = newRecvQueue()
		if ended {
			st.setRemoteDone()
			st.rq.close()
		}
		st.dispatch()
		return
	}
	if ended {
		st.setRemoteDone()
		st.dispatch()
	}
}

func (st *stream) setRemoteDone() {
	st.c.mu.Lock()
	st.remoteDone = true
	st.c.mu.Unlock()
}

// onData takes n bytes (b without padding) of the request.
func (st *stream) onData(b []byte, n uint32, ended bool) {
	c := st.c
	if !ended {
		st.recvUnacked += n
		if st.recvUnacked >= ackThreshold {
			c.mu.Lock()
			if !st.closed {
				c.out = appendWindowUpdate(c.outBuf(), st.id, st.recvUnacked)
				c.wakeLocked()
			}
			c.mu.Unlock()
			st.recvUnacked = 0
		}
	}
	switch {
	case st.m == nil:
		// Refused before its handler: the data is dropped.
	case st.rq != nil:
		if err := st.rq.add(b, c.srv.cfg.MaxRecvMsgSize); err != nil {
			st.fail(err)
		}
		if ended {
			st.setRemoteDone()
			st.rq.close()
		}
	case !st.started:
		if st.reqErr == nil {
			st.req = append(st.req, b...)
			if len(st.req) >= 5 {
				if size := binary.BigEndian.Uint32(st.req[1:5]); int64(size) > int64(c.srv.cfg.MaxRecvMsgSize) {
					// As grpc-go: the handler runs, and reading its request
					// fails with this.
					st.reqErr = statusError(codes.ResourceExhausted, "grpc: received message larger than max (%d vs. %d)", size, c.srv.cfg.MaxRecvMsgSize)
					st.req = nil
				}
			}
		}
		if ended {
			st.setRemoteDone()
			st.dispatch()
		}
	}
}

// endRecv ends the request side of a client-streaming call.
func (st *stream) endRecv() {
	st.setRemoteDone()
	if st.rq != nil {
		st.rq.close()
	} else if !st.started && st.m != nil {
		st.dispatch()
	}
}

// dispatch starts the handler: unary calls on a worker, streams on a
// goroutine of their own (a fresh, small stack for as long as they last).
func (st *stream) dispatch() {
	st.started = true
	if st.m.unary != nil {
		st.c.inflight.Add(1)
		st.c.srv.run(st)
		return
	}
	go st.runStream()
}

func (st *stream) runUnary() {
	defer st.c.inflight.Add(-1)
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

func (st *stream) runStream() {
	sd := st.m.stream
	var err error
	if ic := st.c.srv.stream; ic != nil {
		info := &grpc.StreamServerInfo{FullMethod: st.m.name, IsClientStream: sd.ClientStreams, IsServerStream: sd.ServerStreams}
		err = ic(st.m.impl, st, info, sd.Handler)
	} else {
		err = sd.Handler(st.m.impl, st)
	}
	if d, ok := err.(*detached); ok && d.st == st {
		return // the call goes on; its end comes through Detach's end
	}
	st.finish(err)
}

// decode reads the request message of a unary or server-streaming call.
func (st *stream) decode(v any) error {
	if st.reqErr != nil {
		return st.reqErr
	}
	b := st.req
	st.req = nil
	return st.unmarshal(b, true, v)
}

// unmarshal decodes one length-prefixed message b into v.
func (st *stream) unmarshal(b []byte, whole bool, v any) error {
	if len(b) < 5 {
		return statusError(codes.Internal, "grpc: the request has no message")
	}
	n := binary.BigEndian.Uint32(b[1:5])
	switch {
	case uint64(len(b)-5) < uint64(n):
		return statusError(codes.Internal, "grpc: the request message is truncated")
	case whole && uint64(len(b)-5) > uint64(n):
		return statusError(codes.Internal, "grpc: more than one request message")
	}
	msg := b[5 : 5+n]
	if b[0] != 0 {
		if st.comp == nil {
			return statusError(codes.Internal, "grpc: compressed message without a grpc-encoding")
		}
		var err error
		if msg, err = st.inflate(msg); err != nil {
			return err
		}
	}
	if err := st.c.srv.cfg.Codec.Unmarshal(mem.BufferSlice{mem.SliceBuffer(msg)}, v); err != nil {
		return statusError(codes.Internal, "grpc: failed to unmarshal the received message: %v", err)
	}
	return nil
}

// inflate decompresses a message, refusing one that inflates past the
// message bound.
func (st *stream) inflate(b []byte) ([]byte, error) {
	max := st.c.srv.cfg.MaxRecvMsgSize
	r, err := st.comp.Decompress(bytes.NewReader(b))
	if err != nil {
		return nil, statusError(codes.Internal, "grpc: failed to decompress the received message: %v", err)
	}
	out, err := io.ReadAll(io.LimitReader(r, int64(max)+1))
	switch {
	case err != nil:
		return nil, statusError(codes.Internal, "grpc: failed to decompress the received message: %v", err)
	case len(out) > max:
		return nil, statusError(codes.ResourceExhausted, "grpc: received message after decompression larger than max (%d)", max)
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
		if len(st.pending) == 0 {
			c.trailersLocked(st)
		}
	}
	c.mu.Unlock()
	if st.cancel != nil {
		st.cancel()
	}
	if st.rq != nil {
		st.rq.close()
	}
}

// trailersLocked writes a finished stream's trailers and forgets it.
func (c *conn) trailersLocked(st *stream) {
	c.hbuf.Reset()
	if !st.headerSent {
		// Trailers-Only.
		c.enc.WriteField(hpack.HeaderField{Name: ":status", Value: "200"})
		c.enc.WriteField(hpack.HeaderField{Name: "content-type", Value: "application/grpc"})
		st.headerSent = true
	}
	statusFields(c.enc, st.finished)
	metadataFields(c.enc, st.trailer)
	c.sentData.Store(true)
	c.out = appendHeaders(c.outBuf(), st.id, c.hbuf.Bytes(), true, c.peerFrame)
	if !st.remoteDone {
		c.out = appendRST(c.out, st.id, 0)
	}
	c.removeLocked(st)
	c.wakeLocked()
}

// headersLocked writes the response headers.
func (c *conn) headersLocked(st *stream) {
	c.hbuf.Reset()
	c.enc.WriteField(hpack.HeaderField{Name: ":status", Value: "200"})
	c.enc.WriteField(hpack.HeaderField{Name: "content-type", Value: "application/grpc"})
	metadataFields(c.enc, st.header)
	c.out = appendHeaders(c.outBuf(), st.id, c.hbuf.Bytes(), false, c.peerFrame)
	st.headerSent = true
	st.header = nil
	if !st.cork {
		c.wakeLocked()
	}
}

// errStreamClosed is what sends on a stream the client reset, or on a
// closed connection, return.
var errStreamClosed = status.Error(codes.Canceled, "wire: stream closed")

// sendParts queues one message whose encoding is the concatenation of
// parts.
func (st *stream) sendParts(parts [][]byte) error {
	n := 0
	for _, p := range parts {
		n += len(p)
	}
	return st.send(n, func(b []byte) []byte {
		for _, p := range parts {
			b = append(b, p...)
		}
		return b
	})
}

// SendMsg implements grpc.ServerStream: it queues one message, blocking
// while more than pendingLimit bytes of the stream's output wait for flow
// control (never for an attached stream).
func (st *stream) SendMsg(v any) error {
	data, err := st.c.srv.cfg.Codec.Marshal(v)
	if err != nil {
		return statusError(codes.Internal, "grpc: error while marshaling: %v", err)
	}
	defer data.Free()
	return st.send(data.Len(), func(b []byte) []byte {
		for _, d := range data {
			b = append(b, d.ReadOnlyData()...)
		}
		return b
	})
}

// send queues one message of n bytes, which fill appends to a buffer.
func (st *stream) send(n int, fill func([]byte) []byte) error {
	c := st.c
	c.mu.Lock()
	defer c.mu.Unlock()
	for !st.direct && len(st.pending) > pendingLimit && !st.closed && st.finished == nil {
		c.cond.Wait()
	}
	if st.closed || st.finished != nil {
		if err := st.ctx.Err(); err != nil {
			return status.FromContextError(err).Err()
		}
		return errStreamClosed
	}
	if !st.headerSent {
		c.headersLocked(st)
	}
	c.sentData.Store(true)
	if len(st.pending) == 0 && int64(n+5) <= min(st.sendWindow, c.sendWindow) {
		// The common case: straight into DATA frames.
		out := c.outBuf()
		if n+5 <= c.peerFrame {
			out = appendFrameHeader(out, n+5, 0, 0, st.id)
			out = fill(appendMessagePrefix(out, n))
		} else {
			msg := fill(appendMessagePrefix(make([]byte, 0, n+5), n))
			out = appendData(out, st.id, msg, c.peerFrame)
		}
		c.out = out
		st.sendWindow -= int64(n + 5)
		c.sendWindow -= int64(n + 5)
		if !st.cork {
			c.wakeLocked()
		}
		return nil
	}
	st.pending = fill(appendMessagePrefix(st.pending, n))
	c.flushLocked(st)
	return nil
}

// RecvMsg implements grpc.ServerStream.
func (st *stream) RecvMsg(v any) error {
	if st.rq == nil {
		if st.recvd {
			return io.EOF
		}
		st.recvd = true
		return st.decode(v)
	}
	b, err := st.rq.next(st.ctx)
	if err != nil {
		return err
	}
	return st.unmarshal(b, true, v)
}

// Context implements grpc.ServerStream.
func (st *stream) Context() context.Context { return st.ctx }

// SetHeader implements grpc.ServerStream.
func (st *stream) SetHeader(md metadata.MD) error {
	st.c.mu.Lock()
	defer st.c.mu.Unlock()
	if st.headerSent {
		return statusError(codes.Internal, "wire: headers already sent")
	}
	st.header = metadata.Join(st.header, md)
	return nil
}

// SendHeader implements grpc.ServerStream.
func (st *stream) SendHeader(md metadata.MD) error {
	c := st.c
	c.mu.Lock()
	defer c.mu.Unlock()
	if st.headerSent || st.closed || st.finished != nil {
		return statusError(codes.Internal, "wire: headers already sent")
	}
	st.header = metadata.Join(st.header, md)
	c.headersLocked(st)
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

// transportStream is the grpc.ServerTransportStream in a call's context
// (grpc.SetHeader, grpc.SetTrailer and grpc.Method use it), and where a
// handler finds Attach.
type transportStream struct{ s *stream }

func (t transportStream) Method() string                  { return t.s.m.name }
func (t transportStream) SetHeader(md metadata.MD) error  { return t.s.SetHeader(md) }
func (t transportStream) SendHeader(md metadata.MD) error { return t.s.SendHeader(md) }
func (t transportStream) SetTrailer(md metadata.MD) error { t.s.SetTrailer(md); return nil }

// SendMsg sends on the stream directly, as the handler's stream would.
func (t transportStream) SendMsg(m any) error { return t.s.SendMsg(m) }

// SendParts sends one message made of parts already encoded, with no codec.
func (t transportStream) SendParts(parts [][]byte) error { return t.s.sendParts(parts) }

// Attach hands the stream's sending to its connection's writer goroutine:
// after it, kick makes the writer call pump, at once or as soon as the
// stream's output waiting for flow control is out, and never twice at a
// time. pump's SendMsg calls never block; a client that stops reading
// leaves the pump uncalled, and whatever feeds it must bound its own
// queue. The handler keeps the stream open until it returns, as always.
func (t transportStream) Attach(pump func()) (kick func()) {
	st := t.s
	st.c.mu.Lock()
	st.pumpFn = pump
	st.direct = true
	st.c.mu.Unlock()
	return st.kick
}

// Detach lets a stream handler return while its call goes on, driven by
// callbacks (an attached pump, timers) instead of a goroutine parked for
// the stream's life: the handler returns the error Detach gives, and the
// call ends when end is called (once; later calls do nothing), with the
// trailers of end's error after whatever output is still pending. Until
// then the call's context stays live; it is cancelled when the client
// resets the stream or the connection closes, and the one who detached
// must then call end.
//
// Interceptors that act when a call ends find the detached error with
// Later and register what they do then.
func (t transportStream) Detach() (end func(error), handlerErr error) {
	st := t.s
	return st.end, &detached{st: st}
}

// end ends a detached call and runs its end hooks, innermost first.
func (st *stream) end(err error) {
	st.hookMu.Lock()
	if st.ended {
		st.hookMu.Unlock()
		return
	}
	st.finish(err)
	st.ended = true
	st.endErr = toStatusErr(err)
	hooks := st.hooks
	st.hooks = nil
	st.hookMu.Unlock()
	for _, h := range hooks {
		h(st.endErr)
	}
}

// detached is the error a detached handler returns.
type detached struct{ st *stream }

func (d *detached) Error() string { return "wire: stream detached from its handler" }

// Later reports whether err is a detached handler's return, and if so
// gives the function that registers a hook to run with the call's final
// error when it ends (at once if it has ended already). An interceptor that
// counts or logs a call when it ends defers that work to a hook:
//
//	err := handler(srv, ss)
//	if later, ok := wire.Later(err); ok {
//		later(func(err error) { record(err) })
//		return err
//	}
//	record(err)
func Later(err error) (func(hook func(error)), bool) {
	d, ok := err.(*detached)
	if !ok {
		return nil, false
	}
	st := d.st
	return func(hook func(error)) {
		st.hookMu.Lock()
		if st.ended {
			err := st.endErr
			st.hookMu.Unlock()
			hook(err)
			return
		}
		st.hooks = append(st.hooks, hook)
		st.hookMu.Unlock()
	}, true
}

// toStatusErr is err as the status error the client receives.
func toStatusErr(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	return status.FromContextError(err).Err()
}

// recvQueue holds the messages of a client-streaming call until its handler
// reads them.
type recvQueue struct {
	mu    sync.Mutex
	ready chan struct{} // signalled when a message arrives or the queue closes
	buf   []byte        // received bytes not yet split into messages
	msgs  [][]byte
	size  int
	done  bool
}

// maxQueued bounds the unread bytes of a client-streaming call.
const maxQueued = 4 << 20

func newRecvQueue() *recvQueue { return &recvQueue{ready: make(chan struct{}, 1)} }

// add takes received bytes and queues the whole messages among them.
func (q *recvQueue) add(b []byte, max int) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.buf = append(q.buf, b...)
	for len(q.buf) >= 5 {
		n := binary.BigEndian.Uint32(q.buf[1:5])
		if int64(n) > int64(max) {
			return statusError(codes.ResourceExhausted, "grpc: received message larger than max (%d vs. %d)", n, max)
		}
		if uint64(len(q.buf)-5) < uint64(n) {
			break
		}
		msg := append([]byte(nil), q.buf[:5+n]...)
		q.buf = q.buf[5+n:]
		q.msgs = append(q.msgs, msg)
		q.size += len(msg)
	}
	if q.size > maxQueued {
		return statusError(codes.ResourceExhausted, "wire: more than %d bytes of unread messages", maxQueued)
	}
	select {
	case q.ready <- struct{}{}:
	default:
	}
	return nil
}

func (q *recvQueue) close() {
	q.mu.Lock()
	q.done = true
	q.mu.Unlock()
	select {
	case q.ready <- struct{}{}:
	default:
	}
}

// next returns the next message, io.EOF after the last one.
func (q *recvQueue) next(ctx context.Context) ([]byte, error) {
	for {
		q.mu.Lock()
		if len(q.msgs) > 0 {
			m := q.msgs[0]
			q.msgs[0] = nil
			q.msgs = q.msgs[1:]
			q.size -= len(m)
			q.mu.Unlock()
			return m, nil
		}
		done := q.done
		q.mu.Unlock()
		if done {
			if err := ctx.Err(); err != nil {
				return nil, status.FromContextError(err).Err()
			}
			return nil, io.EOF
		}
		select {
		case <-q.ready:
		case <-ctx.Done():
			return nil, status.FromContextError(ctx.Err()).Err()
		}
	}
}
