package gateway

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/stats"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/maxloyalty/notify/internal/grpchdr"
	"github.com/maxloyalty/notify/internal/poll"
	"github.com/maxloyalty/notify/internal/stack"
)

// runOwn runs the call on a goroutine of its own (see serve), parked under
// the handler for the stream's life: its frame is the smallest there is,
// so that the goroutine's stack keeps its first size.
func (s *webStream) runOwn() {
	s.own = true
	var err error
	if s.ws.interceptor != nil {
		err = s.ws.interceptor(s.m.impl, s, s.m.info, s.m.handler)
	} else {
		err = s.m.handler(s.m.impl, s)
	}
	if s.det != nil {
		if errors.Is(err, stack.ErrDetached) {
			stack.DropIncoming(s.ctx)
		}
		s.det.Returned(err)
		return
	}
	s.end(err)
}

// end ends a call run on a goroutine of its own.
func (s *webStream) end(err error) {
	s.finish(err)
	s.ws.untrack(s)
}

// webStream is one grpc-web server-streaming call: the grpc.ServerStream
// its handler gets, and its grpc.ServerTransportStream (webTransportStream).
//
// Sends come from whichever goroutine writes the stream (its handler, or
// the sender the service starts), one at a time, under mu; the call's end
// (finish) takes mu too and marks the stream done, so that nothing touches
// the ResponseWriter once the HTTP handler has returned.
type webStream struct {
	ws          *webStreams
	m           *streamMethod
	w           http.ResponseWriter
	rc          *http.ResponseController
	ctx         context.Context
	cancel      context.CancelFunc // the grpc-timeout's; nil: none
	contentType string
	msg         []byte // the request message until RecvMsg takes it
	recvd       bool
	begun       time.Time // for stats

	// HTTP/1.1 (see serve): hj takes the connection over when the
	// response begins; released lets the HTTP handler return (closed once
	// the connection is taken over, or at the call's end).
	hj       http.Hijacker
	released chan struct{}

	mu         sync.Mutex
	header     metadata.MD
	trailer    metadata.MD
	headerSent bool
	done       bool
	hdr        [5]byte
	conn       net.Conn // the connection taken over; nil: written through w
	freed      bool     // released is closed

	// For finish to cut a blocked send without mu: the connection taken
	// over, or else the response's controller.
	taken atomic.Value // net.Conn
	cut   atomic.Pointer[http.ResponseController]

	pe poll.Entry // the connection taken over, parked until its client sends or closes

	// The handler's goroutine's alone (runOwn): own is set before the
	// handler runs, det by Detach.
	own bool
	det *stack.Detached

	// A call on a goroutine of its own is interrupted (interrupt) by its
	// client's close, its request's end before the connection was taken
	// over, or Shutdown; what OnCancel asked to run then.
	interrupted atomic.Bool
	onCancel    atomic.Pointer[func()]
}

var (
	_ grpc.ServerStream          = (*webStream)(nil)
	_ grpc.ServerTransportStream = (*webTransportStream)(nil)
	_ grpc.ServerTransportStream = ownTransportStream{}
)

func (s *webStream) Context() context.Context { return s.ctx }

func (s *webStream) SetHeader(md metadata.MD) error {
	if md.Len() == 0 {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.headerSent || s.done {
		return status.Error(codes.Internal, "transport: the stream is done or WriteHeader was already called")
	}
	s.header = metadata.Join(s.header, md)
	return nil
}

func (s *webStream) SendHeader(md metadata.MD) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.headerSent || s.done {
		return status.Error(codes.Internal, "transport: the stream is done or WriteHeader was already called")
	}
	s.header = metadata.Join(s.header, md)
	s.beginLocked()
	if s.conn == nil {
		if err := s.rc.Flush(); err != nil {
			return status.Errorf(codes.Unavailable, "transport: %v", err)
		}
	}
	// Only a header sent by the handler is told (grpc-go's HTTP handler
	// transport does the same).
	if len(s.ws.stats) > 0 {
		out := &stats.OutHeader{Header: md.Copy(), FullMethod: s.m.name}
		for _, h := range s.ws.stats {
			h.HandleRPC(s.ctx, out)
		}
	}
	return nil
}

func (s *webStream) SetTrailer(md metadata.MD) {
	if md.Len() == 0 {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.trailer = metadata.Join(s.trailer, md)
}

// RecvMsg gives the request message once, then io.EOF.
func (s *webStream) RecvMsg(v any) error {
	if s.recvd {
		return io.EOF
	}
	s.recvd = true
	msg := s.msg
	s.msg = nil
	var err error
	// Aside: decoding would grow the handler goroutine's stack for the
	// stream's life.
	stack.Aside(func() { err = s.ws.codec.Unmarshal(mem.BufferSlice{mem.SliceBuffer(msg)}, v) })
	if err != nil {
		return status.Errorf(codes.Internal, "grpc: failed to unmarshal the received message: %v", err)
	}
	for _, h := range s.ws.stats {
		h.HandleRPC(s.ctx, &stats.InPayload{Payload: v, Length: len(msg), CompressedLength: len(msg), WireLength: len(msg) + 5, RecvTime: time.Now()})
	}
	return nil
}

// SendMsg writes v in a grpc-web data frame and flushes it.
func (s *webStream) SendMsg(v any) error {
	data, err := s.ws.codec.Marshal(v)
	if err != nil {
		return status.Errorf(codes.Internal, "grpc: error while marshaling: %v", err)
	}
	defer data.Free()
	n := data.Len()
	s.mu.Lock()
	if s.done {
		s.mu.Unlock()
		return status.Error(codes.Unavailable, "transport: the stream is done")
	}
	if !s.headerSent {
		s.beginLocked()
	}
	s.hdr[0] = 0
	binary.BigEndian.PutUint32(s.hdr[1:], uint32(n))
	if s.conn != nil {
		err = s.writeChunkLocked(s.hdr[:], data)
	} else {
		_, err = s.w.Write(s.hdr[:])
		for _, b := range data {
			if err != nil {
				break
			}
			_, err = s.w.Write(b.ReadOnlyData())
		}
		if err == nil {
			err = s.rc.Flush()
		}
	}
	s.mu.Unlock()
	if err != nil {
		return status.Errorf(codes.Unavailable, "transport: %v", err)
	}
	if len(s.ws.stats) > 0 {
		out := &stats.OutPayload{Payload: v, Length: n, CompressedLength: n, WireLength: n + 5, SentTime: time.Now()}
		for _, h := range s.ws.stats {
			h.HandleRPC(s.ctx, out)
		}
	}
	return nil
}

// beginLocked sends the response's headers and, over HTTP/1.1, takes the
// connection over: the HTTP server has written the response's head with
// chunked transfer coding (HTTP/1.1, no Content-Length) and "Connection:
// close", and its handler returns.
func (s *webStream) beginLocked() {
	s.writeHeaderLocked(nil)
	if s.hj == nil {
		return
	}
	conn, brw, err := s.hj.Hijack()
	s.hj = nil
	if err != nil {
		return // written through w, the HTTP handler waiting
	}
	s.conn = conn
	s.taken.Store(conn)
	// Nothing of the HTTP server's stays referenced: its response holds
	// the connection's buffers and the request.
	s.w, s.rc = nil, nil
	s.cut.Store(nil)
	if brw.Reader.Buffered() > 0 {
		s.interrupt() // bytes after the request: not a grpc-web client
	}
	s.freed = true
	close(s.released)
	if !s.park(conn) {
		go s.watch()
	}
}

// park hands the wait for the client of the connection taken over to the
// poller, which watches the socket: a plain one, or the one under a TLS
// connection that holds no record it read and has not returned (tlsQuiet;
// the poller would not wake for those). It reports false when the
// connection must be watched by a goroutine instead.
func (s *webStream) park(conn net.Conn) bool {
	if tc, ok := conn.(*tls.Conn); ok {
		quiet, err := tlsQuiet(tc)
		if !quiet {
			if err != nil {
				// The client sent or closed: what watch would see.
				s.interrupt()
				return true
			}
			return false
		}
		conn = tc.NetConn()
	}
	sc, ok := conn.(syscall.Conn)
	if !ok {
		return false
	}
	rc, err := sc.SyscallConn()
	return err == nil && s.ws.poll.Park(&s.pe, rc, s)
}

// tlsQuiet tries a read that may not wait (a read deadline in the past):
// crypto/tls returns a record it holds without reading the socket, or
// fails the read with the deadline, a failure it does not keep once the
// deadline is lifted. quiet is false with a nil error when the deadline
// could not be set; a grpc-web client sends nothing more, so a byte read
// is returned as an error, as the client's close is.
func tlsQuiet(tc *tls.Conn) (quiet bool, err error) {
	if tc.SetReadDeadline(time.Unix(1, 0)) != nil {
		return false, nil
	}
	var b [1]byte
	n, err := tc.Read(b[:])
	if tc.SetReadDeadline(time.Time{}) != nil {
		return false, errors.New("lifting the read deadline failed")
	}
	var ne net.Error
	switch {
	case n > 0:
		return false, errors.New("the client sent bytes after its request")
	case errors.As(err, &ne) && ne.Timeout():
		return true, nil
	default:
		return false, err
	}
}

// watch ends the call when its client closes the connection it took over
// (or sends anything: a grpc-web client sends nothing more), or when the
// call's end closes it. Its goroutine waits in Read a few hundred bytes
// deep, within its first stack. A plain socket's connection waits on the
// poller instead, with no goroutine, until the poller wakes it.
func (s *webStream) watch() {
	var b [1]byte
	_, _ = s.conn.Read(b[:])
	s.interrupt()
}

// Wake is the poller's: the client sent or closed (or the poller stops).
// watch reads it, so that a wake-up meant for a connection that ended
// before this one took its id cancels nothing.
func (s *webStream) Wake() { go s.watch() }

// chunkBufs are the buffers a chunk is assembled in: one write per
// message, a TLS record rather than several.
var chunkBufs = sync.Pool{New: func() any { return new([]byte) }}

// writeChunkLocked writes one chunk of the response body on the taken-over
// connection: hdr, then data.
func (s *webStream) writeChunkLocked(hdr []byte, data mem.BufferSlice) error {
	n := len(hdr) + data.Len()
	bp := chunkBufs.Get().(*[]byte)
	b := strconv.AppendInt((*bp)[:0], int64(n), 16)
	b = append(b, "\r\n"...)
	b = append(b, hdr...)
	for _, d := range data {
		b = append(b, d.ReadOnlyData()...)
	}
	b = append(b, "\r\n"...)
	_, err := s.conn.Write(b)
	if cap(b) <= 64<<10 {
		*bp = b[:0]
		chunkBufs.Put(bp)
	}
	return err
}

// writeHeaderLocked writes the response's headers as the wrapper does over
// grpc-go's: the content-type mirrored, the header metadata, no Date, and
// every header name exposed to the browser with grpc-status and
// grpc-message. status, when not nil, adds a Trailers-Only answer's
// fields, and the caller sends the headers; otherwise they are sent.
func (s *webStream) writeHeaderLocked(status http.Header) {
	s.headerSent = true
	h := s.w.Header()
	h["Date"] = nil
	h.Set("Content-Type", s.contentType)
	for k, vs := range s.header {
		if reservedHeader(k) {
			continue
		}
		for _, v := range vs {
			h.Add(k, encodeMetadataValue(k, v))
		}
	}
	for k, vs := range status {
		h[k] = vs
	}
	keys := make([]string, 0, len(h)+2)
	for k := range h {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	h.Set("Access-Control-Expose-Headers", strings.Join(append(keys, "grpc-status", "grpc-message"), ", "))
	if s.hj != nil && status == nil {
		h.Set("Connection", "close") // the connection is taken over (beginLocked)
	}
	if status == nil {
		s.w.WriteHeader(http.StatusOK)
	}
}

// finish ends the call with the handler's err: its status in a trailer
// frame, or in the headers of a response with no message (Trailers-Only),
// as the wrapper writes grpc-go's. A send still blocked on a client that
// stopped reading is cut first (write deadline now): the call is over.
func (s *webStream) finish(err error) {
	st, ok := status.FromError(err)
	if !ok {
		st = status.FromContextError(err)
	}
	if !s.mu.TryLock() {
		// A send holds the lock, maybe blocked on a client that stopped
		// reading: cut it.
		if c, ok := s.taken.Load().(net.Conn); ok {
			_ = c.SetWriteDeadline(time.Now())
		} else if rc := s.cut.Load(); rc != nil {
			_ = rc.SetWriteDeadline(time.Now())
		}
		s.mu.Lock()
	}
	defer s.mu.Unlock()
	// What OnCancel registered does not run for a call that ended.
	s.interrupted.Store(true)
	s.onCancel.Store(nil)
	if s.cancel != nil {
		defer s.cancel()
	}
	s.done = true
	fields := statusFields(st, s.trailer)
	switch {
	case !s.headerSent:
		s.writeHeaderLocked(fields)
		s.w.WriteHeader(http.StatusOK)
		_ = s.rc.Flush()
	case s.conn != nil:
		tr := trailerFrame(fields)
		_ = s.writeChunkLocked(tr[:5], mem.BufferSlice{mem.SliceBuffer(tr[5:])})
		_, _ = s.conn.Write([]byte("0\r\n\r\n"))
		_ = s.conn.Close()
		s.ws.poll.Drop(&s.pe)
	default:
		_, _ = s.w.Write(trailerFrame(fields))
		_ = s.rc.Flush()
	}
	if s.released != nil && !s.freed {
		s.freed = true
		close(s.released)
	}
	if len(s.ws.stats) > 0 {
		trailer := &stats.OutTrailer{Trailer: s.trailer.Copy()}
		end := &stats.End{BeginTime: s.begun, EndTime: time.Now()}
		if err != nil && err != io.EOF {
			end.Error = st.Err()
		}
		for _, h := range s.ws.stats {
			h.HandleRPC(s.ctx, trailer)
			h.HandleRPC(s.ctx, end)
		}
	}
}

// trailerFrame is grpc-web's trailer frame of fields: lower-case names,
// as the wrapper writes them.
func trailerFrame(fields http.Header) []byte {
	var b bytes.Buffer
	b.Write([]byte{0x80, 0, 0, 0, 0})
	lower := make(http.Header, len(fields))
	for k, vs := range fields {
		lower[strings.ToLower(k)] = vs
	}
	_ = lower.Write(&b)
	binary.BigEndian.PutUint32(b.Bytes()[1:5], uint32(b.Len()-5))
	return b.Bytes()
}

// statusFields are st's fields and the trailer metadata, as grpc-go's HTTP
// handler transport sets them (canonical names).
func statusFields(st *status.Status, trailer metadata.MD) http.Header {
	h := http.Header{"Grpc-Status": {strconv.Itoa(int(st.Code()))}}
	if m := st.Message(); m != "" {
		h["Grpc-Message"] = []string{grpchdr.EncodeMessage(m)}
	}
	if p := st.Proto(); p != nil && len(p.Details) > 0 {
		if b, err := proto.Marshal(p); err == nil {
			h["Grpc-Status-Details-Bin"] = []string{base64.RawStdEncoding.EncodeToString(b)}
		}
	}
	for k, vs := range trailer {
		if reservedHeader(k) || k == "grpc-status-details-bin" {
			continue
		}
		for _, v := range vs {
			h.Add(k, encodeMetadataValue(k, v))
		}
	}
	return h
}

func encodeMetadataValue(k, v string) string {
	if strings.HasSuffix(k, "-bin") {
		return base64.RawStdEncoding.EncodeToString([]byte(v))
	}
	return v
}

// webTransportStream is a webStream as the grpc.ServerTransportStream in
// its context (grpc.SetHeader, grpc.SendHeader, grpc.SetTrailer).
type webTransportStream webStream

func (t *webTransportStream) Method() string { return t.m.name }

func (t *webTransportStream) SetHeader(md metadata.MD) error {
	return (*webStream)(t).SetHeader(md)
}

func (t *webTransportStream) SendHeader(md metadata.MD) error {
	return (*webStream)(t).SendHeader(md)
}

func (t *webTransportStream) SetTrailer(md metadata.MD) error {
	(*webStream)(t).SetTrailer(md)
	return nil
}

// Detach lets the handler's goroutine go while the call goes on, as
// internal/wire's does: allowed (Streams.Detach) for a call that runs on a
// goroutine of its own (HTTP/1.1), once. The handler then returns
// stack.ErrDetached and the call ends when end is called; until then
// Shutdown waits for it, as for any call running.
func (t *webTransportStream) Detach() (end func(error), ok bool) {
	s := (*webStream)(t)
	if !s.ws.detach || !s.own || s.det != nil {
		return nil, false
	}
	s.det = stack.NewDetached(s.end)
	return s.det.End, true
}

// ownTransportStream is the transport stream of a call that runs on a
// goroutine of its own (HTTP/1.1, see serve), which offers OnCancel too.
// (A struct of one pointer: an interface holds it without allocating.)
type ownTransportStream struct{ *webTransportStream }

// OnCancel runs f on a goroutine of its own once the call is interrupted,
// as internal/wire's: context.AfterFunc on the call's context, less the
// map of children it costs the context. f does not run for a call that
// ended by its handler's or its detached end, and a later call replaces
// what an earlier one registered. A call with a deadline, which the
// context's own timer ends, or run on the HTTP handler's goroutine after
// all (while stopping), uses context.AfterFunc, and both registrations
// run. Over HTTP/2 the transport stream offers no OnCancel: the service
// then watches the context only while a stream opens.
func (t ownTransportStream) OnCancel(f func()) {
	s := (*webStream)(t.webTransportStream)
	if !s.own || hasDeadline(s.ctx) {
		context.AfterFunc(s.ctx, f)
		return
	}
	s.onCancel.Store(&f)
	if s.interrupted.Load() {
		s.runOnCancel()
	}
}

// interrupt cancels the call's context and runs what OnCancel registered.
func (s *webStream) interrupt() {
	s.cancel()
	if s.interrupted.CompareAndSwap(false, true) {
		s.runOnCancel()
	}
}

// runOnCancel runs what OnCancel registered, once.
func (s *webStream) runOnCancel() {
	if f := s.onCancel.Swap(nil); f != nil {
		go (*f)()
	}
}

func hasDeadline(ctx context.Context) bool {
	_, ok := ctx.Deadline()
	return ok
}

// OnEnd registers fn to run at a detached call's end, before its trailers
// (stack.Detached.OnEnd).
func (t *webTransportStream) OnEnd(fn func(error)) bool {
	return (*webStream)(t).det.OnEnd(fn)
}
