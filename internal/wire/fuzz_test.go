package wire

// FuzzConn feeds arbitrary bytes, after a valid client preface, to one
// connection of a server with a unary, a server-streaming, a
// client-streaming and a bidirectional method, reads what the server
// writes, and requires: no panic, the connection and every handler end,
// no goroutine is left, the output is bounded by the input, the
// connection's internal bounds hold throughout, and the stats handlers see
// each call's events in order. It sits inside the package to see those
// bounds.
//
//	go test -run '^$' -fuzz FuzzConn -fuzztime 60s ./internal/wire/

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/encoding"
	_ "google.golang.org/grpc/encoding/gzip" // a seed's request is compressed
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/stats"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// fuzzMaxResp bounds what the fuzz service sends per message, so that the
// output is bounded by the input.
const fuzzMaxResp = 256

// fuzzService answers within fuzzMaxResp bytes a message and four
// messages a call, and ends when its call's context does.
type fuzzService struct {
	testpb.UnimplementedTestServiceServer
}

func (fuzzService) UnaryCall(ctx context.Context, req *testpb.SimpleRequest) (*testpb.SimpleResponse, error) {
	if st := req.GetResponseStatus(); st != nil {
		return nil, status.Error(codes.Code(st.GetCode()%17), "fuzz")
	}
	n := min(max(req.GetResponseSize(), 0), fuzzMaxResp)
	return &testpb.SimpleResponse{Payload: &testpb.Payload{Body: make([]byte, n)}}, nil
}

func (fuzzService) StreamingOutputCall(req *testpb.StreamingOutputCallRequest, stream grpc.ServerStreamingServer[testpb.StreamingOutputCallResponse]) error {
	for i, p := range req.GetResponseParameters() {
		if i == 4 {
			break
		}
		n := min(max(p.GetSize(), 0), fuzzMaxResp)
		if err := stream.Send(&testpb.StreamingOutputCallResponse{Payload: &testpb.Payload{Body: make([]byte, n)}}); err != nil {
			return err
		}
	}
	return nil
}

func (fuzzService) StreamingInputCall(stream grpc.ClientStreamingServer[testpb.StreamingInputCallRequest, testpb.StreamingInputCallResponse]) error {
	n := 0
	for {
		req, err := stream.Recv()
		if err == io.EOF {
			return stream.SendAndClose(&testpb.StreamingInputCallResponse{AggregatedPayloadSize: int32(n)})
		}
		if err != nil {
			return err
		}
		n += len(req.GetPayload().GetBody())
	}
}

func (fuzzService) FullDuplexCall(stream grpc.BidiStreamingServer[testpb.StreamingOutputCallRequest, testpb.StreamingOutputCallResponse]) error {
	for {
		req, err := stream.Recv()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		body := req.GetPayload().GetBody()
		body = body[:min(len(body), fuzzMaxResp)]
		if err := stream.Send(&testpb.StreamingOutputCallResponse{Payload: &testpb.Payload{Body: body}}); err != nil {
			return err
		}
	}
}

// halfConn is one side of an in-memory connection made of two pipes, one
// each way, so that a side can close its writing half (CloseWrite) and go
// on reading, as on TCP.
type halfConn struct {
	r net.Conn // reads from the peer
	w net.Conn // writes to the peer
}

func (h halfConn) Read(p []byte) (int, error)         { return h.r.Read(p) }
func (h halfConn) Write(p []byte) (int, error)        { return h.w.Write(p) }
func (h halfConn) Close() error                       { h.w.Close(); return h.r.Close() }
func (h halfConn) CloseWrite() error                  { return h.w.Close() }
func (h halfConn) LocalAddr() net.Addr                { return h.r.LocalAddr() }
func (h halfConn) RemoteAddr() net.Addr               { return h.r.RemoteAddr() }
func (h halfConn) SetReadDeadline(t time.Time) error  { return h.r.SetReadDeadline(t) }
func (h halfConn) SetWriteDeadline(t time.Time) error { return h.w.SetWriteDeadline(t) }
func (h halfConn) SetDeadline(t time.Time) error {
	h.w.SetWriteDeadline(t)
	return h.r.SetReadDeadline(t)
}

// statsChecker is a stats handler that checks the order of the events it
// sees: per connection ConnBegin then ConnEnd, once each; per call TagRPC
// first, InHeader right after it, Begin once and before the others, and
// (strict) nothing after End.
type statsChecker struct {
	strict bool // also check what open bugs break: events after End
	mu     sync.Mutex
	conns  int // connections begun and not ended
	calls  []*callEvents
	errs   []string
}

type callEvents struct {
	began, ended bool
	events       []string
}

type checkerCall struct{}

func (s *statsChecker) fail(format string, args ...any) {
	s.errs = append(s.errs, fmt.Sprintf(format, args...))
}

func (s *statsChecker) TagConn(ctx context.Context, _ *stats.ConnTagInfo) context.Context {
	return ctx
}

func (s *statsChecker) HandleConn(_ context.Context, st stats.ConnStats) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch st.(type) {
	case *stats.ConnBegin:
		s.conns++
	case *stats.ConnEnd:
		if s.conns--; s.conns < 0 {
			s.fail("ConnEnd without ConnBegin")
		}
	}
}

func (s *statsChecker) TagRPC(ctx context.Context, _ *stats.RPCTagInfo) context.Context {
	s.mu.Lock()
	defer s.mu.Unlock()
	ce := &callEvents{events: []string{"TagRPC"}}
	s.calls = append(s.calls, ce)
	return context.WithValue(ctx, checkerCall{}, ce)
}

func (s *statsChecker) HandleRPC(ctx context.Context, st stats.RPCStats) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ce, ok := ctx.Value(checkerCall{}).(*callEvents)
	if !ok {
		s.fail("%T without its call's tag", st)
		return
	}
	name := strings.TrimPrefix(fmt.Sprintf("%T", st), "*stats.")
	if ce.ended && s.strict {
		s.fail("%s after End (%v)", name, ce.events)
	}
	ce.events = append(ce.events, name)
	switch st.(type) {
	case *stats.InHeader:
		if len(ce.events) != 2 {
			s.fail("InHeader not right after TagRPC (%v)", ce.events)
		}
	case *stats.Begin:
		if ce.began {
			s.fail("second Begin (%v)", ce.events)
		}
		ce.began = true
	case *stats.End:
		if !ce.began {
			s.fail("End without Begin (%v)", ce.events)
		}
		ce.ended = true
	default:
		if !ce.began {
			s.fail("%s before Begin (%v)", name, ce.events)
		}
	}
}

// check returns the errors seen and (strict) the calls that began and
// never ended.
func (s *statsChecker) check() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	errs := s.errs
	if s.conns != 0 {
		errs = append(errs, fmt.Sprintf("%d connections without ConnEnd", s.conns))
	}
	if s.strict {
		for _, ce := range s.calls {
			if ce.began && !ce.ended {
				errs = append(errs, fmt.Sprintf("a call without End: %v", ce.events))
			}
		}
	}
	if len(errs) == 0 {
		return nil
	}
	return errors.New(strings.Join(errs, "; "))
}

// fuzzConfig has small bounds, so that inputs reach them.
func fuzzConfig(sh stats.Handler) Config {
	return Config{
		Codec:                 encoding.GetCodecV2("proto"),
		MaxRecvMsgSize:        16 << 10,
		MaxConcurrentStreams:  8,
		InitialWindowSize:     defaultWindow,
		InitialConnWindowSize: defaultWindow,
		MaxHeaderListSize:     16 << 10,
		Workers:               2,
		StatsHandlers:         []stats.Handler{sh},
		WebOrigin:             func(origin, _ string) bool { return origin == "https://app.example" },
		Log:                   slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
}

// connBounds checks a connection's internal bounds. The reader stops
// before a frame while maxControl replies wait, and a frame queues at
// most one; each stream's handler or reset adds at most one more. Output
// past maxOutput comes from what one frame or one send adds: a window
// update may release every stream's pending output (pendingLimit and a
// message each).
func connBounds(c *conn) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	cfg := &c.srv.cfg
	streams := cfg.MaxConcurrentStreams
	outMax := maxOutput + streams*(pendingLimit+cfg.MaxRecvMsgSize+1<<10) + 64<<10
	sum := 0
	for st := range c.streams.all() {
		id := st.id
		sum += st.buffered
		switch {
		case st.buffered < 0:
			return fmt.Errorf("stream %d buffers %d bytes", id, st.buffered)
		case st.recvWindow < 0 || st.recvWindow > maxWindow:
			return fmt.Errorf("stream %d receive window %d", id, st.recvWindow)
		case st.sendWindow > maxWindow:
			return fmt.Errorf("stream %d send window %d", id, st.sendWindow)
		case len(st.pending) > pendingLimit+cfg.MaxRecvMsgSize+64:
			return fmt.Errorf("stream %d has %d bytes pending", id, len(st.pending))
		}
	}
	switch {
	case c.buffered < 0 || c.buffered > c.srv.budget:
		return fmt.Errorf("%d request bytes buffered, budget %d", c.buffered, c.srv.budget)
	case !c.closed && sum != c.buffered:
		return fmt.Errorf("streams buffer %d bytes, the connection counts %d", sum, c.buffered)
	case c.control > maxControl+streams:
		return fmt.Errorf("%d control replies queued, bound %d", c.control, maxControl+streams)
	case c.streams.len() > streams:
		return fmt.Errorf("%d streams open, quota %d", c.streams.len(), streams)
	case c.handlers < 0 || c.handlers > streams:
		return fmt.Errorf("%d handlers running, quota %d", c.handlers, streams)
	case c.recvWindow < 0 || c.recvWindow > maxWindow:
		return fmt.Errorf("connection receive window %d", c.recvWindow)
	case c.sendWindow > maxWindow:
		return fmt.Errorf("connection send window %d", c.sendWindow)
	case len(c.out)+c.flushing > outMax:
		return fmt.Errorf("%d output bytes queued, bound %d", len(c.out)+c.flushing, outMax)
	}
	return nil
}

// fuzzOutputBound bounds what the server writes for an input of n bytes.
// The constant covers the server's settings, window update and a GOAWAY.
// A call costs the client a HEADERS frame of a dozen bytes once its
// fields are in the HPACK table, and the server at most headers,
// fuzzMaxResp-bounded messages and trailers; grpc-message can repeat a
// :path or content-type the client indexed (up to the 4 KiB table),
// which the server's own table usually absorbs.
func fuzzOutputBound(n int) int { return 64*n + 64<<10 }

// serveConn serves c, registered with srv, and returns whether srv has
// forgotten it, which its reader does last (serve itself may return
// earlier, having handed the connection to a new reader goroutine).
func serveConn(srv *Server, c *conn) (forgotten func() bool) {
	go c.serve()
	return func() bool {
		srv.mu.Lock()
		defer srv.mu.Unlock()
		_, ok := srv.conns[c]
		return !ok
	}
}

// runConn runs one connection on in and checks it, in a synctest bubble:
// everything it runs is in memory (net.Pipe), so synctest.Wait tells when
// the connection has done all it will with its input, and the clock the
// connection's timers and deadlines use is fake.
func runConn(t *testing.T, in []byte) {
	synctest.Test(t, func(t *testing.T) { runConnInBubble(t, in) })
}

// runConnInBubble is runConn, in its synctest bubble.
func runConnInBubble(t *testing.T, in []byte) {
	strict := true
	before := bubbleGoroutines()
	sc := &statsChecker{strict: strict}
	srv := NewServer(fuzzConfig(sc))
	testpb.RegisterTestServiceServer(srv, fuzzService{})

	c2s, s2c := net.Pipe() // client to server: the client writes c2s
	s2cw, s2cr := net.Pipe()
	c := newConn(srv, halfConn{r: s2c, w: s2cw})
	srv.mu.Lock()
	srv.conns[c] = struct{}{}
	srv.mu.Unlock()
	forgotten := serveConn(srv, c)

	var out atomic.Int64
	readDone := make(chan struct{})
	go func() {
		defer close(readDone)
		buf := make([]byte, 32<<10)
		for {
			n, err := s2cr.Read(buf)
			out.Add(int64(n))
			if err != nil {
				return
			}
		}
	}()

	var failures []string
	fail := func(format string, args ...any) { failures = append(failures, fmt.Sprintf(format, args...)) }
	_ = c2s.SetWriteDeadline(time.Now().Add(10 * time.Second))
	_, err := c2s.Write([]byte(http2.ClientPreface))
	for rest := in; err == nil && len(rest) > 0; {
		n := min(len(rest), 512)
		_, err = c2s.Write(rest[:n])
		rest = rest[n:]
		if berr := connBounds(c); berr != nil {
			fail("during the input: %v", berr)
			break
		}
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		fail("the server stopped reading its input for 10 seconds")
	}
	synctest.Wait() // the calls of the input are answered before the client closes its side (the server ends a connection whose client does)
	if strict {
		if err := windowKept(c); err != nil {
			fail("%v", err)
		}
	}
	c2s.Close() // the client's half: the server reads EOF

	dump := func() string {
		buf := make([]byte, 1<<20)
		return string(buf[:runtime.Stack(buf, true)])
	}
	// The connection ends on its own; what it waits on for that (the
	// linger of its close) runs on the bubble's clock, all of it within
	// these five seconds.
	time.Sleep(5 * time.Second)
	synctest.Wait()
	if !forgotten() {
		t.Fatalf("the connection did not end 5 seconds after its input:\n%s", dump())
	}
	select {
	case <-readDone:
	default:
		t.Fatalf("the server did not close its side:\n%s", dump())
	}
	c.mu.Lock()
	handlers := c.handlers
	c.mu.Unlock()
	if handlers != 0 {
		t.Fatalf("%d handlers still run 5 seconds after the connection ended:\n%s", handlers, dump())
	}
	srv.Stop()
	s2cr.Close()
	if err := connBounds(c); err != nil {
		fail("after the connection: %v", err)
	}
	c.mu.Lock()
	if !c.closed || c.writing.Load() {
		fail("connection closed %v, writer running %v", c.closed, c.writing.Load())
	}
	c.mu.Unlock()
	if err := sc.check(); err != nil {
		fail("stats: %v", err)
	}
	if n := int(out.Load()); n > fuzzOutputBound(len(in)) {
		fail("the server wrote %d bytes for %d bytes of input, bound %d", n, len(in), fuzzOutputBound(len(in)))
	}
	synctest.Wait() // the connection's and the server's goroutines have ended, or are stuck
	if after := bubbleGoroutines(); after > before {
		t.Fatalf("%d goroutines before, %d after:\n%s", before, after, dump())
	}
	if len(failures) > 0 {
		t.Fatal(strings.Join(failures, "\n"))
	}
}

// bubbleGoroutines counts the goroutines of the caller's synctest bubble
// (the process has others: the fuzzing engine's come and go).
func bubbleGoroutines() int {
	buf := make([]byte, 1<<20)
	all := string(buf[:runtime.Stack(buf, true)])
	// The caller's goroutine comes first: "goroutine 7 [running, synctest bubble 3]:".
	first, _, _ := strings.Cut(all, "\n")
	i := strings.Index(first, "synctest bubble ")
	if i < 0 {
		panic("bubbleGoroutines outside a synctest bubble")
	}
	return strings.Count(all, first[i:])
}

// windowKept checks, on a connection still open and quiet (every
// goroutine of the bubble blocked, so the reader has handled every frame
// it will), that the connection's receive window is whole: the server
// gives back every byte it received, at once or as the handlers read, so
// what the client may still send and what is due back (not yet
// acknowledged) add up to the configured window.
func windowKept(c *conn) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	open := !c.closed && !c.goaway
	got, want := c.recvWindow+c.recvUnacked, int64(c.srv.cfg.InitialConnWindowSize)
	if !open || got == want {
		return nil
	}
	return fmt.Errorf("connection receive window %d (with %d not yet acknowledged), want %d: %d bytes never given back", got, c.recvUnacked, want, want-got)
}

// TestRecvConnWindowOverflow: DATA past the connection's receive window is
// a connection error, FLOW_CONTROL_ERROR. The server gives the window back
// as it reads, so a client cannot pass it from outside; here the window is
// set low before the connection starts.
func TestRecvConnWindowOverflow(t *testing.T) {
	synctest.Test(t, testRecvConnWindowOverflow)
}

// testRecvConnWindowOverflow is the test, in its synctest bubble.
func testRecvConnWindowOverflow(t *testing.T) {
	srv := NewServer(fuzzConfig(&statsChecker{}))
	testpb.RegisterTestServiceServer(srv, fuzzService{})
	defer srv.Stop()
	c2s, s2c := net.Pipe()
	s2cw, s2cr := net.Pipe()
	defer c2s.Close()
	defer s2cr.Close()
	c := newConn(srv, halfConn{r: s2c, w: s2cw})
	c.recvWindow = 100 // the handshake adds nothing: the window is HTTP/2's default
	srv.mu.Lock()
	srv.conns[c] = struct{}{}
	srv.mu.Unlock()
	forgotten := serveConn(srv, c)

	s := newSeed()
	s.call(1, "UnaryCall", false)
	_ = s.fr.WriteData(1, false, make([]byte, 101))
	written := make(chan error, 1)
	go func() {
		_ = c2s.SetWriteDeadline(time.Now().Add(10 * time.Second))
		_, err := c2s.Write(append([]byte(http2.ClientPreface), s.bytes()...))
		written <- err
	}()
	_ = s2cr.SetReadDeadline(time.Now().Add(10 * time.Second))
	fr := http2.NewFramer(nil, s2cr)
	for i := 0; ; i++ {
		f, err := fr.ReadFrame()
		if err != nil || i == 100 {
			t.Fatalf("no GOAWAY: %v", err)
		}
		if g, ok := f.(*http2.GoAwayFrame); ok {
			if g.ErrCode != http2.ErrCodeFlowControl {
				t.Fatalf("GOAWAY %v, want FLOW_CONTROL_ERROR", g.ErrCode)
			}
			break
		}
	}
	if err := <-written; err != nil {
		t.Fatal(err)
	}
	c2s.Close()
	time.Sleep(5 * time.Second) // the bubble's clock: the linger of the close has run
	synctest.Wait()
	if !forgotten() {
		t.Fatal("the connection did not end")
	}
}

func FuzzConn(f *testing.F) {
	for _, s := range fuzzSeeds() {
		f.Add(s)
	}
	f.Fuzz(runConn)
}

// seed writes frames as a client would.
type seed struct {
	buf bytes.Buffer
	fr  *http2.Framer
	hb  bytes.Buffer
	enc *hpack.Encoder
}

func newSeed() *seed {
	s := &seed{}
	s.fr = http2.NewFramer(&s.buf, nil)
	s.fr.AllowIllegalWrites = true
	s.enc = hpack.NewEncoder(&s.hb)
	_ = s.fr.WriteSettings()
	return s
}

func (s *seed) block(kv ...string) []byte {
	s.hb.Reset()
	for i := 0; i+1 < len(kv); i += 2 {
		_ = s.enc.WriteField(hpack.HeaderField{Name: kv[i], Value: kv[i+1]})
	}
	return bytes.Clone(s.hb.Bytes())
}

func fuzzFields(method string, extra ...string) []string {
	return append([]string{
		":method", "POST", ":scheme", "http", ":path", "/grpc.testing.TestService/" + method,
		":authority", "fuzz", "content-type", "application/grpc", "te", "trailers",
	}, extra...)
}

// call writes the HEADERS of a call.
func (s *seed) call(id uint32, method string, end bool, extra ...string) {
	_ = s.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: s.block(fuzzFields(method, extra...)...), EndStream: end, EndHeaders: true})
}

// msg writes m as one gRPC message in a DATA frame.
func (s *seed) msg(id uint32, end bool, m proto.Message) {
	_ = s.fr.WriteData(id, end, grpcMsg(m))
}

func grpcMsg(m proto.Message) []byte {
	b, _ := proto.Marshal(m)
	return append(binary.BigEndian.AppendUint32([]byte{0}, uint32(len(b))), b...)
}

func (s *seed) bytes() []byte { return bytes.Clone(s.buf.Bytes()) }

// fuzzSeeds are realistic sequences, and a few invalid ones.
func fuzzSeeds() [][]byte {
	var seeds [][]byte
	add := func(fn func(s *seed)) {
		s := newSeed()
		fn(s)
		seeds = append(seeds, s.bytes())
	}
	unary := &testpb.SimpleRequest{ResponseSize: 10, Payload: &testpb.Payload{Body: []byte("hello")}}
	outs := &testpb.StreamingOutputCallRequest{ResponseParameters: []*testpb.ResponseParameters{{Size: 10}, {Size: 20}, {Size: 30}}}
	in := func(n int) *testpb.StreamingInputCallRequest {
		return &testpb.StreamingInputCallRequest{Payload: &testpb.Payload{Body: make([]byte, n)}}
	}
	echo := func(b string) *testpb.StreamingOutputCallRequest {
		return &testpb.StreamingOutputCallRequest{Payload: &testpb.Payload{Body: []byte(b)}}
	}

	// A unary call, its settings acknowledged.
	add(func(s *seed) {
		_ = s.fr.WriteSettingsAck()
		s.call(1, "UnaryCall", false)
		s.msg(1, true, unary)
	})
	// A server-streaming call.
	add(func(s *seed) {
		s.call(1, "StreamingOutputCall", false)
		s.msg(1, true, outs)
	})
	// Client streaming, several messages, then an empty END_STREAM.
	add(func(s *seed) {
		s.call(1, "StreamingInputCall", false)
		for i := 0; i < 4; i++ {
			s.msg(1, false, in(100*i))
		}
		_ = s.fr.WriteData(1, true, nil)
	})
	// Bidi echo, a message split over frames.
	add(func(s *seed) {
		s.call(1, "FullDuplexCall", false, "x-md", "v", "x-bin-bin", "AAEC")
		s.msg(1, false, echo("one"))
		m := grpcMsg(echo("two"))
		_ = s.fr.WriteData(1, false, m[:3])
		_ = s.fr.WriteData(1, true, m[3:])
	})
	// Settings changes around calls, window updates.
	add(func(s *seed) {
		_ = s.fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 10}, http2.Setting{ID: http2.SettingHeaderTableSize, Val: 0},
			http2.Setting{ID: http2.SettingMaxFrameSize, Val: 32768}, http2.Setting{ID: http2.SettingMaxConcurrentStreams, Val: 5})
		s.call(1, "StreamingOutputCall", false)
		s.msg(1, true, outs)
		_ = s.fr.WriteWindowUpdate(1, 100)
		_ = s.fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 65535})
		_ = s.fr.WriteWindowUpdate(0, 1<<20)
		s.call(3, "UnaryCall", false)
		s.msg(3, true, unary)
	})
	// Pings, both ways.
	add(func(s *seed) {
		_ = s.fr.WritePing(false, [8]byte{1})
		_ = s.fr.WritePing(true, [8]byte{'k', 'e', 'e', 'p', 'a', 'l', 'v', 'e'})
		s.call(1, "UnaryCall", false)
		s.msg(1, true, unary)
		_ = s.fr.WritePing(false, [8]byte{2})
	})
	// A header block in HEADERS and two CONTINUATIONs.
	add(func(s *seed) {
		b := s.block(fuzzFields("UnaryCall", "x-long", strings.Repeat("l", 300))...)
		_ = s.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: b[:10]})
		_ = s.fr.WriteContinuation(1, false, b[10:50])
		_ = s.fr.WriteContinuation(1, true, b[50:])
		s.msg(1, true, unary)
	})
	// A stream reset by the client, then another call.
	add(func(s *seed) {
		s.call(1, "StreamingOutputCall", false)
		s.msg(1, false, outs)
		_ = s.fr.WriteRSTStream(1, http2.ErrCodeCancel)
		s.call(3, "StreamingInputCall", false)
		s.msg(3, false, in(5))
		_ = s.fr.WriteRSTStream(3, http2.ErrCodeCancel)
		s.call(5, "UnaryCall", false)
		s.msg(5, true, unary)
	})
	// Padding and priorities.
	add(func(s *seed) {
		_ = s.fr.WritePriority(1, http2.PriorityParam{StreamDep: 0, Weight: 200})
		_ = s.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 3, BlockFragment: s.block(fuzzFields("UnaryCall")...), EndHeaders: true,
			PadLength: 20, Priority: http2.PriorityParam{StreamDep: 1, Exclusive: true, Weight: 5}})
		_ = s.fr.WriteDataPadded(3, true, grpcMsg(unary), make([]byte, 30))
	})
	// Pipelined calls with metadata, timeouts and trailers.
	add(func(s *seed) {
		for i := uint32(0); i < 10; i++ {
			id := 2*i + 1
			s.call(id, "UnaryCall", false, "grpc-timeout", "1S", "x-i", fmt.Sprint(i))
			s.msg(id, i%2 == 0, &testpb.SimpleRequest{ResponseSize: int32(i * 30)})
			if i%2 == 1 {
				_ = s.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: s.block("x-trailer", "t"), EndStream: true, EndHeaders: true})
			}
		}
	})
	// A gzip-compressed request.
	add(func(s *seed) {
		b, _ := proto.Marshal(unary)
		var z bytes.Buffer
		w := gzip.NewWriter(&z)
		_, _ = w.Write(b)
		_ = w.Close()
		s.call(1, "UnaryCall", false, "grpc-encoding", "gzip")
		_ = s.fr.WriteData(1, true, append(binary.BigEndian.AppendUint32([]byte{1}, uint32(z.Len())), z.Bytes()...))
	})
	// A message over the limit, then more streams than the quota, held
	// open.
	add(func(s *seed) {
		s.call(1, "UnaryCall", false)
		_ = s.fr.WriteData(1, false, []byte{0, 0, 1, 0, 0})
		_ = s.fr.WriteData(1, false, make([]byte, 2000))
		for i := uint32(1); i < 13; i++ {
			s.call(2*i+1, "StreamingInputCall", false)
			s.msg(2*i+1, false, in(10))
		}
		_ = s.fr.WriteRSTStream(3, http2.ErrCodeCancel)
	})
	// Not gRPC, unknown methods, a failing handler.
	add(func(s *seed) {
		_ = s.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: s.block(fuzzFields("UnaryCall", "content-type", "text/plain")...), EndStream: true, EndHeaders: true})
		s.call(3, "Nope", true)
		_ = s.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 5, BlockFragment: s.block(":method", "POST", ":scheme", "http", ":path", "/no.Such/M", ":authority", "x", "content-type", "application/grpc"), EndStream: true, EndHeaders: true})
		s.call(7, "UnaryCall", false)
		s.msg(7, true, &testpb.SimpleRequest{ResponseStatus: &testpb.EchoStatus{Code: 5}})
	})
	// grpc-web: a server-streaming call from a granted origin, a unary one
	// from another, a preflight, and the base64 format (refused).
	add(func(s *seed) {
		s.call(1, "StreamingOutputCall", false, "content-type", "application/grpc-web+proto", "origin", "https://app.example")
		s.msg(1, true, outs)
		s.call(3, "UnaryCall", false, "content-type", "application/grpc-web", "origin", "https://other.example")
		s.msg(3, true, unary)
		_ = s.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 5, BlockFragment: s.block(":method", "OPTIONS", ":scheme", "https", ":path", "/grpc.testing.TestService/UnaryCall", ":authority", "x", "origin", "https://app.example", "access-control-request-method", "POST"), EndStream: true, EndHeaders: true})
		s.call(7, "UnaryCall", true, "content-type", "application/grpc-web-text")
	})
	// Invalid: DATA on an idle stream.
	add(func(s *seed) { _ = s.fr.WriteData(1, false, []byte("x")) })
	// Invalid: an even stream, after a good call.
	add(func(s *seed) {
		s.call(1, "UnaryCall", false)
		s.msg(1, true, unary)
		s.call(2, "UnaryCall", true)
	})
	// Invalid: a bad setting.
	add(func(s *seed) { _ = s.fr.WriteSettings(http2.Setting{ID: http2.SettingEnablePush, Val: 2}) })
	// Invalid: a window overflow on a stream, then on the connection.
	add(func(s *seed) {
		s.call(1, "StreamingOutputCall", false)
		_ = s.fr.WriteWindowUpdate(1, 1<<31-1)
		_ = s.fr.WriteWindowUpdate(0, 1<<31-1)
	})
	// Invalid: trailers without END_STREAM; a malformed request.
	add(func(s *seed) {
		s.call(1, "UnaryCall", false)
		_ = s.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: s.block("x-t", "1"), EndHeaders: true})
		_ = s.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 3, BlockFragment: s.block(":method", "POST", "Upper", "x", "connection", "close"), EndStream: true, EndHeaders: true})
	})
	// Invalid: an unknown frame type, a client GOAWAY, then garbage.
	add(func(s *seed) {
		_ = s.fr.WriteRawFrame(0x42, 0x1, 7, []byte("ext"))
		s.call(1, "UnaryCall", false)
		s.msg(1, true, unary)
		_ = s.fr.WriteGoAway(0, http2.ErrCodeNo, nil)
		s.buf.WriteString("\x00\x00\x05\x00\x00\x00\x00\x00\x01garbage and more garbage")
	})
	// Invalid: a CONTINUATION flood past the header list bound.
	add(func(s *seed) {
		_ = s.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: s.block(fuzzFields("UnaryCall")...)})
		for i := 0; i < 6; i++ {
			_ = s.fr.WriteContinuation(1, false, s.block("x-flood", strings.Repeat("f", 5000)))
		}
	})
	return seeds
}
