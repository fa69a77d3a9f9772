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
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"
	"nhooyr.io/websocket"
)

// The known attacks on the websocket transport, each over real sockets on
// loopback against a real grpc-go server (the interop TestService, with
// handlers that can hold a call open or flood the client): each is bounded
// in count and time, asserts that the server's heap stays bounded and that
// another client is still served, and that every call ends.

// wsTestTimeout bounds every blocking step of these tests.
const wsTestTimeout = 15 * time.Second

// Paths of the interop TestService methods.
const (
	wsUnary        = "/grpc.testing.TestService/UnaryCall"
	wsServerStream = "/grpc.testing.TestService/StreamingOutputCall"
	wsClientStream = "/grpc.testing.TestService/StreamingInputCall"
	wsBidi         = "/grpc.testing.TestService/FullDuplexCall"
)

// wsTestService is the interop TestService, with outputs bounded by its
// inputs: replies echo the request's payload, at most wsTestMaxReplies
// times per request. With controls on, a call's metadata can make its
// handler misbehave: "x-hold" makes UnaryCall and StreamingInputCall wait
// for the call to end without answering or reading, and
// StreamingOutputCall wait after its replies; "x-flood: n" makes
// StreamingOutputCall send replies of n bytes until the call ends.
type wsTestService struct {
	testpb.UnimplementedTestServiceServer
	controls bool

	running atomic.Int64 // handlers running

	mu      sync.Mutex
	changed chan struct{} // a token when a handler or a transport call ended, for settled
}

// ended leaves a token for settled: a handler or a transport call ended.
func (s *wsTestService) ended() {
	select {
	case s.changes() <- struct{}{}:
	default: // a token is there already
	}
}

func (s *wsTestService) changes() chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.changed == nil {
		s.changed = make(chan struct{}, 1)
	}
	return s.changed
}

// handlerDone counts a handler's end.
func (s *wsTestService) handlerDone() {
	s.running.Add(-1)
	s.ended()
}

const wsTestMaxReplies = 4

// control returns the call's control metadata value, "" without one.
func (s *wsTestService) control(ctx context.Context, key string) string {
	if !s.controls {
		return ""
	}
	md, _ := metadata.FromIncomingContext(ctx)
	if v := md.Get(key); len(v) > 0 {
		return v[0]
	}
	return ""
}

func (s *wsTestService) UnaryCall(ctx context.Context, req *testpb.SimpleRequest) (*testpb.SimpleResponse, error) {
	s.running.Add(1)
	defer s.handlerDone()
	if s.control(ctx, "x-hold") != "" {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	return &testpb.SimpleResponse{Payload: req.GetPayload()}, nil
}

func (s *wsTestService) StreamingOutputCall(req *testpb.StreamingOutputCallRequest, stream grpc.ServerStreamingServer[testpb.StreamingOutputCallResponse]) error {
	s.running.Add(1)
	defer s.handlerDone()
	ctx := stream.Context()
	if n, _ := strconv.Atoi(s.control(ctx, "x-flood")); n > 0 {
		reply := &testpb.StreamingOutputCallResponse{Payload: &testpb.Payload{Body: make([]byte, n)}}
		for {
			if err := stream.Send(reply); err != nil {
				return err
			}
		}
	}
	for range min(len(req.GetResponseParameters()), wsTestMaxReplies) {
		if err := stream.Send(&testpb.StreamingOutputCallResponse{Payload: req.GetPayload()}); err != nil {
			return err
		}
	}
	if s.control(ctx, "x-hold") != "" {
		<-ctx.Done()
		return ctx.Err()
	}
	return nil
}

func (s *wsTestService) StreamingInputCall(stream grpc.ClientStreamingServer[testpb.StreamingInputCallRequest, testpb.StreamingInputCallResponse]) error {
	s.running.Add(1)
	defer s.handlerDone()
	if s.control(stream.Context(), "x-hold") != "" {
		<-stream.Context().Done()
		return stream.Context().Err()
	}
	var n int32
	for {
		req, err := stream.Recv()
		if err == io.EOF {
			return stream.SendAndClose(&testpb.StreamingInputCallResponse{AggregatedPayloadSize: n})
		}
		if err != nil {
			return err
		}
		n += int32(len(req.GetPayload().GetBody()))
	}
}

func (s *wsTestService) FullDuplexCall(stream grpc.BidiStreamingServer[testpb.StreamingOutputCallRequest, testpb.StreamingOutputCallResponse]) error {
	s.running.Add(1)
	defer s.handlerDone()
	for {
		req, err := stream.Recv()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		for range min(len(req.GetResponseParameters()), wsTestMaxReplies) {
			if err := stream.Send(&testpb.StreamingOutputCallResponse{Payload: req.GetPayload()}); err != nil {
				return err
			}
		}
	}
}

// wsTestServer is the websocket transport in front of a grpc-go server
// with a wsTestService, on a loopback HTTP server.
type wsTestServer struct {
	addr   string // host:port
	svc    *wsTestService
	calls  atomic.Int64 // the transport's ServeHTTP calls running
	panics atomic.Value // string: the first panic of the transport's ServeHTTP
}

// wsTestMaxRecv is the gRPC server's bound on a request message.
const wsTestMaxRecv = 256 << 10

// wsTestConfig is the transport of the tests: the gateway's, with timeouts
// short enough for a test to see them pass.
func wsTestConfig(srv *grpc.Server) *wsTransport {
	return &wsTransport{
		grpc:           srv,
		origin:         func(*http.Request) bool { return true },
		endpoint:       grpcEndpoints(srv),
		passOn:         grpcWebHeaders,
		headerMax:      maxWSHeaderBytes,
		headerTimeout:  500 * time.Millisecond,
		requestTimeout: time.Second,
		writeTimeout:   time.Second,
		drainTimeout:   time.Second,
		streamMax:      256 << 10,
		probeInterval:  200 * time.Millisecond,
	}
}

// newWSTestServer starts a server (configure, when set, changes its
// transport; opts are the gRPC server's); it stops with the test, once
// every call has ended.
func newWSTestServer(tb testing.TB, svc *wsTestService, configure func(*wsTransport), opts ...grpc.ServerOption) *wsTestServer {
	tb.Helper()
	s := &wsTestServer{svc: svc}
	srv := grpc.NewServer(append(opts, grpc.MaxRecvMsgSize(wsTestMaxRecv))...)
	testpb.RegisterTestServiceServer(srv, svc)
	tr := wsTestConfig(srv)
	if configure != nil {
		configure(tr)
	}
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.calls.Add(1)
		defer func() {
			s.calls.Add(-1)
			s.svc.ended()
		}()
		// net/http would recover a panic and log it: record it instead.
		defer func() {
			if p := recover(); p != nil {
				s.panics.CompareAndSwap(nil, fmt.Sprintf("%v\n%s", p, debug.Stack()))
			}
		}()
		tr.ServeHTTP(w, r)
	}))
	s.addr = ts.Listener.Addr().String()
	tb.Cleanup(func() {
		ts.Close()
		if err := s.settled(wsTestTimeout); err != nil {
			tb.Errorf("at the end of the test: %v", err)
		}
		if p := s.panics.Load(); p != nil {
			tb.Errorf("the transport panicked: %s", p)
		}
		srv.Stop()
	})
	return s
}

// settled waits until no call runs on the server, for at most d.
func (s *wsTestServer) settled(d time.Duration) error {
	timeout := time.After(d)
	for {
		calls, handlers := s.calls.Load(), s.svc.running.Load()
		if calls == 0 && handlers == 0 {
			return nil
		}
		select {
		case <-s.svc.changes():
		case <-timeout:
			return fmt.Errorf("%d websocket calls and %d handlers still running after %v", calls, handlers, d)
		}
	}
}

// grpcFrame is a gRPC length-prefixed message.
func grpcFrame(m proto.Message) []byte {
	b, err := proto.Marshal(m)
	if err != nil {
		panic(err)
	}
	return append(binary.BigEndian.AppendUint32([]byte{0}, uint32(len(b))), b...)
}

// wsHeaderBlock is the first client message of a call.
const wsHeaderBlock = "content-type: application/grpc-web+proto\r\nx-grpc-web: 1\r\n"

// wsOutcome is what a well-behaved client got from a call.
type wsOutcome struct {
	status   string // grpc-status of the trailers; "" without trailers
	message  string // grpc-message
	messages [][]byte
	close    websocket.StatusCode
	err      error
}

// wsGoodCall makes a call the way improbable-eng's client does (headers,
// each request in a data message, the end of input) and reads the whole
// response until the server closes.
func wsGoodCall(ctx context.Context, addr, path string, reqs ...proto.Message) wsOutcome {
	ctx, cancel := context.WithTimeout(ctx, wsTestTimeout)
	defer cancel()
	c, _, err := websocket.Dial(ctx, "ws://"+addr+path, &websocket.DialOptions{Subprotocols: []string{wsProtocol}})
	if err != nil {
		return wsOutcome{err: err, close: -1}
	}
	defer c.Close(websocket.StatusNormalClosure, "")
	c.SetReadLimit(4 << 20)
	msgs := [][]byte{[]byte(wsHeaderBlock)}
	for _, m := range reqs {
		msgs = append(msgs, append([]byte{wsData}, grpcFrame(m)...))
	}
	msgs = append(msgs, []byte{wsEndOfInput})
	for _, m := range msgs {
		if err := c.Write(ctx, websocket.MessageBinary, m); err != nil {
			break // the server may answer before reading everything
		}
	}
	var out wsOutcome
	var stream []byte
	for {
		_, b, err := c.Read(ctx)
		if err != nil {
			out.err, out.close = err, websocket.CloseStatus(err)
			return out
		}
		stream = append(stream, b...)
		for len(stream) >= 5 {
			n := int(binary.BigEndian.Uint32(stream[1:5]))
			if len(stream) < 5+n {
				break
			}
			flag, body := stream[0], stream[5:5+n]
			stream = stream[5+n:]
			if flag&0x80 == 0 {
				out.messages = append(out.messages, bytes.Clone(body))
				continue
			}
			for _, line := range strings.Split(string(body), "\r\n") {
				k, v, _ := strings.Cut(line, ":")
				switch strings.ToLower(k) {
				case "grpc-status":
					out.status = strings.TrimSpace(v)
				case "grpc-message":
					out.message = strings.TrimSpace(v)
				}
			}
		}
	}
}

// checkServed fails the test unless a well-behaved client's unary call
// gets its echo and OK.
func (s *wsTestServer) checkServed(t *testing.T, when string) {
	t.Helper()
	want := []byte("still served " + when)
	out := wsGoodCall(context.Background(), s.addr, wsUnary, &testpb.SimpleRequest{Payload: &testpb.Payload{Body: want}})
	if out.status != "0" || len(out.messages) != 1 {
		t.Fatalf("%s: another client's unary call got status %q %q, %d messages, close %v (%v); want OK and its echo",
			when, out.status, out.message, len(out.messages), out.close, out.err)
	}
	var resp testpb.SimpleResponse
	if err := proto.Unmarshal(out.messages[0], &resp); err != nil || !bytes.Equal(resp.GetPayload().GetBody(), want) {
		t.Fatalf("%s: another client's echo %x (%v)", when, out.messages[0], err)
	}
}

// rawWS is a websocket client that writes frames as they are given (so it
// can break the protocol) and reads the server's frames only when asked.
type rawWS struct {
	c  net.Conn
	br *bufio.Reader
}

// dialRawWS opens a websocket to path with the transport's subprotocol.
func dialRawWS(tb testing.TB, addr, path string) *rawWS {
	tb.Helper()
	c, err := net.DialTimeout("tcp", addr, wsTestTimeout)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(wsTestTimeout))
	_, err = io.WriteString(c, "GET "+path+" HTTP/1.1\r\nHost: "+addr+"\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: "+wsProtocol+"\r\n\r\n")
	if err != nil {
		tb.Fatal(err)
	}
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		tb.Fatalf("upgrade %s: %v", path, err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSwitchingProtocols {
		tb.Fatalf("upgrade %s: %s", path, resp.Status)
	}
	_ = c.SetDeadline(time.Time{})
	return &rawWS{c: c, br: br}
}

// Websocket opcodes.
const (
	opContinuation = 0x0
	opText         = 0x1
	opBinary       = 0x2
	opClose        = 0x8
	opPing         = 0x9
)

// appendFrame appends a client frame: masked, with a zero masking key, so
// that the payload is sent as it is.
func appendFrame(dst []byte, fin bool, op byte, p []byte) []byte {
	b0 := op
	if fin {
		b0 |= 0x80
	}
	dst = append(dst, b0)
	switch n := len(p); {
	case n < 126:
		dst = append(dst, 0x80|byte(n))
	case n <= 0xffff:
		dst = binary.BigEndian.AppendUint16(append(dst, 0x80|126), uint16(n))
	default:
		dst = binary.BigEndian.AppendUint64(append(dst, 0x80|127), uint64(n))
	}
	return append(append(dst, 0, 0, 0, 0), p...)
}

// write sends bytes with a deadline.
func (w *rawWS) write(b []byte, d time.Duration) error {
	_ = w.c.SetWriteDeadline(time.Now().Add(d))
	_, err := w.c.Write(b)
	return err
}

// message sends one whole binary message.
func (w *rawWS) message(p []byte) error {
	return w.write(appendFrame(nil, true, opBinary, p), wsTestTimeout)
}

// serverFrame is a frame the server sent.
type serverFrame struct {
	fin     bool
	op      byte
	payload []byte
}

// readFrame reads the server's next frame, refusing one over max bytes.
func (w *rawWS) readFrame(deadline time.Time, max int) (serverFrame, error) {
	_ = w.c.SetReadDeadline(deadline)
	var h [2]byte
	if _, err := io.ReadFull(w.br, h[:]); err != nil {
		return serverFrame{}, err
	}
	f := serverFrame{fin: h[0]&0x80 != 0, op: h[0] & 0x0f}
	n := uint64(h[1] & 0x7f)
	switch n {
	case 126:
		var b [2]byte
		if _, err := io.ReadFull(w.br, b[:]); err != nil {
			return f, err
		}
		n = uint64(binary.BigEndian.Uint16(b[:]))
	case 127:
		var b [8]byte
		if _, err := io.ReadFull(w.br, b[:]); err != nil {
			return f, err
		}
		n = binary.BigEndian.Uint64(b[:])
	}
	if h[1]&0x80 != 0 || n > uint64(max) {
		return f, fmt.Errorf("server frame masked or of %d bytes", n)
	}
	f.payload = make([]byte, n)
	_, err := io.ReadFull(w.br, f.payload)
	return f, err
}

// closedBy reads (and drops) what the server sends until it closes the
// websocket (a close frame, or the end of the connection), and returns the
// close frame's code (-1 without one); it fails the test if the websocket
// is still open at deadline. Like an attacker, it does not answer the close
// frame: the server drops the connection once its close handshake times
// out.
func (w *rawWS) closedBy(tb testing.TB, deadline time.Time) websocket.StatusCode {
	tb.Helper()
	for {
		f, err := w.readFrame(deadline, 1<<20)
		var ne net.Error
		switch {
		case errors.As(err, &ne) && ne.Timeout():
			tb.Fatalf("the server had not closed the websocket by the deadline")
		case err != nil:
			return -1
		case f.op == opClose && len(f.payload) >= 2:
			return websocket.StatusCode(binary.BigEndian.Uint16(f.payload))
		case f.op == opClose:
			return websocket.StatusNoStatusRcvd
		}
	}
}

// heapInuse is the heap in use after a garbage collection.
func heapInuse() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse
}

// heapGuard fails fast when the heap grows past a bound during an attack,
// before an unbounded buffer takes the machine's memory.
type heapGuard struct {
	base, bound uint64
}

func newHeapGuard(bound uint64) *heapGuard {
	return &heapGuard{base: heapInuse(), bound: bound}
}

// over reports whether the heap in use (garbage included, cheap to read)
// has grown past the bound; if so, it collects and checks again.
func (g *heapGuard) over() bool {
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	if m.HeapInuse < g.base+g.bound {
		return false
	}
	return heapInuse() >= g.base+g.bound
}

// check fails the test when the heap in use has grown past the bound.
func (g *heapGuard) check(t *testing.T, when string) {
	t.Helper()
	if now := heapInuse(); now > g.base+g.bound {
		t.Errorf("%s: the heap in use grew by %d KiB, bound %d KiB", when, (now-g.base)>>10, g.bound>>10)
	}
}

// sent is how an attacking client's sending ended.
type sent struct {
	bytes   int
	refused bool // the server stopped taking bytes: a write failed, or took over 2 s
	over    bool // the heap grew past the guard's bound
}

// sendUntil writes chunk (whole frames) again and again until the server
// stops taking them, the heap grows past the guard's bound, total bytes
// went out, or the deadline has passed.
func (w *rawWS) sendUntil(chunk []byte, total int, deadline time.Time, g *heapGuard) sent {
	var s sent
	check := 0
	for s.bytes < total && time.Now().Before(deadline) {
		if err := w.write(chunk, 2*time.Second); err != nil {
			s.refused = true
			return s
		}
		s.bytes += len(chunk)
		if check += len(chunk); check >= 256<<10 {
			check = 0
			if g.over() {
				s.over = true
				return s
			}
		}
	}
	return s
}

// wsHoldBlock is the header block of a call whose handler holds.
const wsHoldBlock = wsHeaderBlock + "x-hold: 1\r\n"

// attack runs send (the attacking client's writes) on another goroutine
// while a well-behaved client is served, and returns how it ended.
func (s *wsTestServer) attack(t *testing.T, send func() sent) sent {
	t.Helper()
	done := make(chan sent, 1)
	go func() { done <- send() }()
	s.checkServed(t, "during the attack")
	return <-done
}

// TestWebsocketEndlessMessage: one data message that never ends (a frame
// without FIN, then continuation frames forever) while the handler holds
// the call. On a unary call the request is one message: what follows it is
// never buffered for the gRPC server, and the websocket is closed. In
// one-byte frames, each byte must not cost the server a read buffer. On a
// client-streaming call whose handler does not read, the bytes held for it
// are bounded. In every case the server closes the websocket and stays
// within its memory bound, and other clients are served.
func TestWebsocketEndlessMessage(t *testing.T) {
	const bound = 24 << 20
	small := grpcFrame(&testpb.StreamingInputCallRequest{Payload: &testpb.Payload{Body: []byte("x")}})
	for _, tc := range []struct {
		name, path string
		first      []byte // the data message's first frame
		frame      []byte // each continuation frame
		code       websocket.StatusCode
	}{
		// The gRPC server refuses a second message (its status is sent);
		// the rest of the message is dropped, then the websocket closed.
		{"unary, after its message", wsUnary, append([]byte{wsData}, grpcFrame(&testpb.SimpleRequest{})...), make([]byte, 16<<10), websocket.StatusNormalClosure},
		{"unary, one-byte frames inside its message", wsUnary, []byte{wsData, 0, 0, 4, 0, 0}, []byte{0}, websocket.StatusNormalClosure},
		{"client stream, one message without end", wsClientStream, []byte{wsData, 0, 0x7f, 0xff, 0xff, 0xff}, make([]byte, 16<<10), websocket.StatusMessageTooBig},
		{"client stream, many messages", wsClientStream, []byte{wsData}, bytes.Repeat(small, (16<<10)/len(small)), websocket.StatusMessageTooBig},
		{"client stream, one-byte frames", wsClientStream, []byte{wsData, 0, 0, 0x10, 0, 0}, []byte{0}, websocket.StatusMessageTooBig},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// The request's deadline is another test's: out of the way.
			s := newWSTestServer(t, &wsTestService{controls: true}, func(tr *wsTransport) { tr.requestTimeout = 2 * wsTestTimeout })
			g := newHeapGuard(bound)
			w := dialRawWS(t, s.addr, tc.path)
			if err := w.message([]byte(wsHoldBlock)); err != nil {
				t.Fatal(err)
			}
			if err := w.write(appendFrame(nil, false, opBinary, tc.first), wsTestTimeout); err != nil {
				t.Fatal(err)
			}
			var chunk []byte // continuation frames, many to a write
			for len(chunk) < 64<<10 {
				chunk = appendFrame(chunk, false, opContinuation, tc.frame)
			}
			// Forever, were the server to take it.
			res := s.attack(t, func() sent { return w.sendUntil(chunk, math.MaxInt, time.Now().Add(2*wsTestTimeout), g) })
			if res.over {
				t.Fatalf("the heap grew past %d MiB after %d KiB sent", bound>>20, res.bytes>>10)
			}
			g.check(t, fmt.Sprintf("after %d KiB sent", res.bytes>>10))
			if !res.refused {
				t.Fatalf("the server was still taking the endless message after %d KiB", res.bytes>>10)
			}
			code := w.closedBy(t, time.Now().Add(wsTestTimeout))
			t.Logf("%d KiB sent; closed with %v", res.bytes>>10, code)
			if code != tc.code {
				t.Errorf("closed with %v, want %v", code, tc.code)
			}
			s.checkServed(t, "after the attack")
		})
	}
}

// TestWebsocketManySmallMessages: many small data messages, each a whole
// small gRPC message, on a client-streaming call. grpc-go's ServeHTTP
// transport reads the request body ahead of the handler into a buffer
// without flow control, a read buffer per body read. With a handler that
// does not read, the buffers held for it stay bounded: with
// WebsocketStreamInterceptor on the gRPC server, the transport stops
// reading the websocket (the call stalls, as HTTP/2 flow control would
// stall it, until the client leaves); without it, the call is closed with
// 1009 once it has passed its bound. A handler that reads is served: with
// the interceptor, a stream of any length; without it, up to the bound.
func TestWebsocketManySmallMessages(t *testing.T) {
	const bound = 24 << 20
	small := &testpb.StreamingInputCallRequest{Payload: &testpb.Payload{Body: []byte("x")}}
	one := appendFrame(nil, true, opBinary, append([]byte{wsData}, grpcFrame(small)...))
	chunk := bytes.Repeat(one, (64<<10)/len(one))
	smalls := func(n int) []proto.Message {
		reqs := make([]proto.Message, n)
		for i := range reqs {
			reqs[i] = small
		}
		return reqs
	}
	for _, tc := range []struct {
		name        string
		interceptor bool
	}{
		{"without the interceptor", false},
		{"with the interceptor", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var opts []grpc.ServerOption
			if tc.interceptor {
				opts = append(opts, grpc.StreamInterceptor(WebsocketStreamInterceptor()))
			}
			s := newWSTestServer(t, &wsTestService{controls: true}, nil, opts...)

			g := newHeapGuard(bound)
			w := dialRawWS(t, s.addr, wsClientStream)
			if err := w.message([]byte(wsHoldBlock)); err != nil {
				t.Fatal(err)
			}
			res := s.attack(t, func() sent { return w.sendUntil(chunk, math.MaxInt, time.Now().Add(2*wsTestTimeout), g) })
			if res.over {
				t.Fatalf("to a handler that does not read: the heap grew past %d MiB after %d small messages", bound>>20, res.bytes/len(one))
			}
			g.check(t, fmt.Sprintf("after %d small messages to a handler that does not read", res.bytes/len(one)))
			t.Logf("%d small messages sent to a handler that does not read", res.bytes/len(one))
			if !res.refused {
				t.Fatalf("the server was still taking small messages after %d", res.bytes/len(one))
			}
			if tc.interceptor {
				// The client leaves: the call ends (s.settled, at the end).
				w.c.Close()
			} else if code := w.closedBy(t, time.Now().Add(wsTestTimeout)); code != websocket.StatusMessageTooBig {
				t.Errorf("closed with %v, want %v", code, websocket.StatusMessageTooBig)
			}

			// The bound is in read buffers (16 KiB each), one per small
			// message: 16 in the test's 256 KiB.
			n, past := 2000, 0
			if !tc.interceptor {
				n, past = 16, 17
			}
			out := wsGoodCall(context.Background(), s.addr, wsClientStream, smalls(n)...)
			var resp testpb.StreamingInputCallResponse
			if out.status != "0" || len(out.messages) != 1 || proto.Unmarshal(out.messages[0], &resp) != nil || resp.GetAggregatedPayloadSize() != int32(n) {
				t.Errorf("%d small messages to a handler that reads: status %q %q, %d replies (close %v, %v); want OK and a count of %d",
					n, out.status, out.message, len(out.messages), out.close, out.err, n)
			}
			if past > 0 {
				out := wsGoodCall(context.Background(), s.addr, wsClientStream, smalls(past)...)
				if out.status != "" || out.close != websocket.StatusMessageTooBig {
					t.Errorf("%d small messages without the interceptor: status %q, close %v (%v); want a close with %v",
						past, out.status, out.close, out.err, websocket.StatusMessageTooBig)
				}
			}
		})
	}
}

// TestWebsocketHeaderBlockLimit: the header block is read whole, up to
// headerMax bytes: one at the limit makes a call, one over it (in one frame
// or in many) closes the websocket with 1009, concurrently on many
// connections, within the memory bound.
func TestWebsocketHeaderBlockLimit(t *testing.T) {
	s := newWSTestServer(t, &wsTestService{controls: true}, nil)
	block := func(size int) []byte {
		b := []byte(wsHeaderBlock + "x-pad: ")
		b = append(b, bytes.Repeat([]byte{'a'}, size-len(b)-2)...)
		return append(b, '\r', '\n')
	}

	t.Run("at the limit", func(t *testing.T) {
		w := dialRawWS(t, s.addr, wsUnary)
		b := block(maxWSHeaderBytes)
		if len(b) != maxWSHeaderBytes {
			t.Fatalf("block of %d bytes", len(b))
		}
		msgs := appendFrame(nil, true, opBinary, b)
		msgs = appendFrame(msgs, true, opBinary, append([]byte{wsData}, grpcFrame(&testpb.SimpleRequest{Payload: &testpb.Payload{Body: []byte("hi")}})...))
		msgs = appendFrame(msgs, true, opBinary, []byte{wsEndOfInput})
		if err := w.write(msgs, wsTestTimeout); err != nil {
			t.Fatal(err)
		}
		var got []byte
		deadline := time.Now().Add(wsTestTimeout)
		for {
			f, err := w.readFrame(deadline, 1<<20)
			if err != nil {
				t.Fatalf("reading the response: %v (got %q)", err, got)
			}
			if f.op == opClose {
				break
			}
			got = append(got, f.payload...)
		}
		if !bytes.Contains(got, []byte("grpc-status: 0\r\n")) || !bytes.Contains(got, []byte("hi")) {
			t.Errorf("a call with a %d-byte header block got %q, want its echo and OK", len(b), got)
		}
	})

	t.Run("over the limit", func(t *testing.T) {
		const conns = 64
		g := newHeapGuard(16 << 20)
		b := block(maxWSHeaderBytes + 1)
		ws := make([]*rawWS, conns)
		for i := range ws {
			ws[i] = dialRawWS(t, s.addr, wsUnary)
			var msg []byte
			if i%2 == 0 {
				msg = appendFrame(nil, true, opBinary, b)
			} else {
				// In 1 KiB fragments.
				for j := 0; j < len(b); j += 1 << 10 {
					op := byte(opContinuation)
					if j == 0 {
						op = opBinary
					}
					msg = appendFrame(msg, j+1<<10 >= len(b), op, b[j:min(j+1<<10, len(b))])
				}
			}
			// The server may close before taking it all.
			_ = ws[i].write(msg, wsTestTimeout)
		}
		g.check(t, fmt.Sprintf("%d header blocks over the limit", conns))
		for i, w := range ws {
			if code := w.closedBy(t, time.Now().Add(wsTestTimeout)); code != websocket.StatusMessageTooBig {
				t.Errorf("connection %d: closed with %v, want %v", i, code, websocket.StatusMessageTooBig)
			}
		}
		s.checkServed(t, "after them")
	})
}

// TestWebsocketSlowloris: many websockets that send only the upgrade, or
// only the header block (and, for a method whose client does not stream,
// part of the request), then wait: the server closes each with 1008 once
// its time for the headers or the request has passed, at the cost of a few
// goroutines; meanwhile the heap stays bounded and other clients are
// served.
func TestWebsocketSlowloris(t *testing.T) {
	const conns = 100
	s := newWSTestServer(t, &wsTestService{controls: true}, nil)
	// What a waiting connection costs (buffers of the connection, the
	// call and the gRPC server's reader), counted once per connection.
	g := newHeapGuard(conns * 256 << 10)
	for _, tc := range []struct {
		name, path string
		send       [][]byte // whole messages sent
		within     time.Duration
	}{
		{"upgrade only", wsUnary, nil, 500 * time.Millisecond},
		{"header block only, unary", wsUnary, [][]byte{[]byte(wsHeaderBlock)}, time.Second},
		{"header block only, server stream", wsServerStream, [][]byte{[]byte(wsHeaderBlock)}, time.Second},
		{"request without its end, unary", wsUnary, [][]byte{[]byte(wsHeaderBlock), append([]byte{wsData}, grpcFrame(&testpb.SimpleRequest{})...)}, time.Second},
		{"half a request, server stream", wsServerStream, [][]byte{[]byte(wsHeaderBlock), {wsData, 0, 0, 0, 0, 9, 1, 2}}, time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			start, created := time.Now(), goroutinesCreated()
			ws := make([]*rawWS, conns)
			for i := range ws {
				ws[i] = dialRawWS(t, s.addr, tc.path)
				for _, m := range tc.send {
					if err := ws[i].message(m); err != nil {
						t.Fatal(err)
					}
				}
			}
			g.check(t, fmt.Sprintf("%d waiting connections", conns))
			s.checkServed(t, "while they wait")
			// The time each had, from the last one's start, and a margin
			// for a loaded machine.
			deadline := time.Now().Add(tc.within + 5*time.Second)
			for i, w := range ws {
				if code := w.closedBy(t, deadline); code != websocket.StatusPolicyViolation {
					t.Errorf("connection %d: closed with %v, want %v", i, code, websocket.StatusPolicyViolation)
				}
			}
			t.Logf("%d connections closed %v after the first opened", conns, time.Since(start).Round(time.Millisecond))
			// They do not answer the close: the server drops them once its
			// close handshake times out.
			if err := s.settled(wsTestTimeout); err != nil {
				t.Fatal(err)
			}
			// Closing a connection at a deadline costs a few goroutines, not
			// a spin of the websocket library's (on a read whose context
			// ends, it starts goroutines until the connection is closed).
			if n := (goroutinesCreated() - created) / conns; n > 50 {
				t.Errorf("%d goroutines started per connection closed at its deadline", n)
			}
		})
	}
}

// goroutinesCreated is the count of goroutines the process has started.
func goroutinesCreated() uint64 {
	s := []metrics.Sample{{Name: "/sched/goroutines-created:goroutines"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

// TestWebsocketPingFlood: pings (control frames, answered with pongs) as
// fast as a client can write them, by a client that reads the pongs and by
// one that never does, before the header block and during a call: the heap
// stays bounded, other clients are served, and a client that does not read
// is disconnected.
func TestWebsocketPingFlood(t *testing.T) {
	s := newWSTestServer(t, &wsTestService{controls: true}, nil)
	var pings []byte
	for len(pings) < 64<<10 {
		pings = appendFrame(pings, true, opPing, bytes.Repeat([]byte{'p'}, 125)) // the most a control frame holds
	}
	for _, tc := range []struct {
		name  string
		path  string
		send  [][]byte
		reads bool
	}{
		{"before the headers, pongs read", wsUnary, nil, true},
		{"before the headers, pongs not read", wsUnary, nil, false},
		{"during a call, pongs read", wsServerStream, [][]byte{[]byte(wsHoldBlock), append([]byte{wsData}, grpcFrame(&testpb.StreamingOutputCallRequest{})...), {wsEndOfInput}}, true},
		{"during a call, pongs not read", wsServerStream, [][]byte{[]byte(wsHoldBlock), append([]byte{wsData}, grpcFrame(&testpb.StreamingOutputCallRequest{})...), {wsEndOfInput}}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := newHeapGuard(16 << 20)
			w := dialRawWS(t, s.addr, tc.path)
			for _, m := range tc.send {
				if err := w.message(m); err != nil {
					t.Fatal(err)
				}
			}
			readDone := make(chan struct{})
			var pongs atomic.Int64
			if tc.reads {
				go func() {
					defer close(readDone)
					for {
						f, err := w.readFrame(time.Now().Add(wsTestTimeout), 1<<20)
						if err != nil {
							return
						}
						if f.op == 0xA {
							pongs.Add(1)
						}
					}
				}()
			} else {
				close(readDone)
			}
			res := s.attack(t, func() sent { return w.sendUntil(pings, 16<<20, time.Now().Add(wsTestTimeout), g) })
			if res.over {
				t.Fatalf("the heap grew past its bound after %d KiB of pings", res.bytes>>10)
			}
			g.check(t, fmt.Sprintf("after %d KiB of pings", res.bytes>>10))
			t.Logf("%d KiB of pings sent, %d pongs read", res.bytes>>10, pongs.Load())
			if !tc.reads {
				// Never read: the server's pongs back up and it gives up
				// (reading now would let it go on).
				if err := s.settled(wsTestTimeout); err != nil {
					t.Errorf("a ping flood whose pongs are never read: %v", err)
				}
				w.closedBy(t, time.Now().Add(wsTestTimeout))
			}
			w.c.Close()
			<-readDone
		})
	}
}

// TestWebsocketClientNeverReads: a server-streaming call whose handler
// sends as fast as it can to a client that never reads: the server's
// writes time out, the call ends and the websocket closes; the heap stays
// bounded and other clients are served meanwhile.
func TestWebsocketClientNeverReads(t *testing.T) {
	s := newWSTestServer(t, &wsTestService{controls: true}, nil)
	g := newHeapGuard(16 << 20)
	w := dialRawWS(t, s.addr, wsServerStream)
	for _, m := range [][]byte{
		[]byte(wsHeaderBlock + "x-flood: 16384\r\n"),
		append([]byte{wsData}, grpcFrame(&testpb.StreamingOutputCallRequest{})...),
		{wsEndOfInput},
	} {
		if err := w.message(m); err != nil {
			t.Fatal(err)
		}
	}
	s.checkServed(t, "while the flooded client does not read")
	if err := s.settled(wsTestTimeout); err != nil {
		t.Fatalf("the call to a client that never reads did not end: %v", err)
	}
	g.check(t, "after the call")
	// The client reads now: what the server wrote before giving up, then
	// the end of the connection.
	w.closedBy(t, time.Now().Add(wsTestTimeout))
}

// TestWebsocketMethodKinds: the request deadline and the client-stream
// bounds follow each method's kind, read from the gRPC server; a method it
// does not know gets the stricter buffer bounds of a client stream.
func TestWebsocketMethodKinds(t *testing.T) {
	srv := grpc.NewServer()
	testpb.RegisterTestServiceServer(srv, &wsTestService{})
	tr := wsTestConfig(srv)
	for path, want := range map[string]bool{
		wsUnary:        false,
		wsServerStream: false,
		wsClientStream: true,
		wsBidi:         true,
		"/grpc.testing.TestService/HalfDuplexCall": true,
		"/grpc.testing.TestService/NoSuchMethod":   true,
	} {
		if got := tr.clientStreaming(path); got != want {
			t.Errorf("clientStreaming(%s) = %v, want %v", path, got, want)
		}
	}
	// A handler that is not a grpc.Server: every method is taken as a
	// client stream.
	other := &wsTransport{grpc: http.NotFoundHandler()}
	if !other.clientStreaming(wsUnary) {
		t.Error("clientStreaming without a grpc.Server = false, want true")
	}
}
