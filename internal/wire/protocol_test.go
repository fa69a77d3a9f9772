package wire_test

// HTTP/2 and gRPC protocol tests of the wire server, driven by a raw client
// (h2client_test.go: http2.Framer and hpack) over loopback sockets:
// settings, flow control, stream states, malformed and non-gRPC requests
// here; the stream quota, floods of control frames, responses and headers
// in protocol_limits_test.go; compression, stats handlers, connection age
// and keepalive in protocol_stats_test.go. Every read has a deadline, every
// loop a bound in frames or bytes.

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/encoding"
	_ "google.golang.org/grpc/encoding/gzip" // registers the gzip compressor for both sides
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/maxloyalty/notify/internal/wire"
)

// protoService is the interop test service with calls a test holds: a
// unary or client-streaming call carrying the x-gate header signals
// started once its handler runs, then waits for a release, not for its
// context, so that its handler outlives a reset of its stream.
type protoService struct {
	*testService
	inputDone chan struct{} // a StreamingInputCall handler returned
	started   chan struct{}
	release   chan struct{}
	done      chan struct{} // closed: every held call goes on
	once      sync.Once
}

func gated(ctx context.Context) bool {
	md, _ := metadata.FromIncomingContext(ctx)
	return len(md.Get("x-gate")) > 0
}

func (s *protoService) hold() {
	s.started <- struct{}{}
	select {
	case <-s.release:
	case <-s.done:
	}
}

// releaseOne lets one held call go on.
func (s *protoService) releaseOne(t *testing.T) {
	t.Helper()
	select {
	case s.release <- struct{}{}:
	case <-time.After(10 * time.Second):
		t.Fatal("no held call to release")
	}
}

// releaseAll lets every held call, and every later one, go on.
func (s *protoService) releaseAll() { s.once.Do(func() { close(s.done) }) }

// waitStarted waits for n held calls to start.
func (s *protoService) waitStarted(t *testing.T, n int) {
	t.Helper()
	for i := 0; i < n; i++ {
		select {
		case <-s.started:
		case <-time.After(10 * time.Second):
			t.Fatalf("%d of %d held calls started", i, n)
		}
	}
}

func (s *protoService) UnaryCall(ctx context.Context, req *testpb.SimpleRequest) (*testpb.SimpleResponse, error) {
	if gated(ctx) {
		s.hold()
	}
	return s.testService.UnaryCall(ctx, req)
}

func (s *protoService) StreamingInputCall(stream grpc.ClientStreamingServer[testpb.StreamingInputCallRequest, testpb.StreamingInputCallResponse]) error {
	defer func() {
		select {
		case s.inputDone <- struct{}{}:
		default:
		}
	}()
	if gated(stream.Context()) {
		s.hold()
	}
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

// wireServer is a wire server on a loopback port.
type wireServer struct {
	addr string
	srv  *wire.Server
	svc  *protoService
}

// startWire serves the test service on a loopback port until the test
// ends. sockBuf, when positive, is the kernel send and receive buffer of
// the server's sockets, so that a client that does not read fills them
// quickly. MinPingInterval defaults to a nanosecond, so that the tests can
// synchronise with pings.
func startWire(t *testing.T, cfg wire.Config, sockBuf int) *wireServer {
	t.Helper()
	cfg.Codec = encoding.GetCodecV2("proto")
	if cfg.MinPingInterval == 0 {
		cfg.MinPingInterval = time.Nanosecond
	}
	srv := wire.NewServer(cfg)
	svc := &protoService{
		testService: &testService{cancelled: make(chan struct{})},
		inputDone:   make(chan struct{}, 100),
		started:     make(chan struct{}, 100),
		release:     make(chan struct{}),
		done:        make(chan struct{}),
	}
	testpb.RegisterTestServiceServer(srv, svc)
	lc := net.ListenConfig{Control: sockBufControl(sockBuf)}
	l, err := lc.Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(l) }()
	t.Cleanup(func() {
		svc.releaseAll()
		srv.Stop()
		if err := <-served; !errors.Is(err, wire.ErrServerStopped) {
			t.Errorf("Serve: %v", err)
		}
	})
	return &wireServer{addr: l.Addr().String(), srv: srv, svc: svc}
}

// sockBufControl sets a socket's kernel buffers to n bytes (the kernel
// doubles them); nothing for n <= 0.
func sockBufControl(n int) func(network, address string, rc syscall.RawConn) error {
	if n <= 0 {
		return nil
	}
	return func(network, address string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(fd uintptr) {
			if serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, n); serr == nil {
				serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_SNDBUF, n)
			}
		})
		if err != nil {
			return err
		}
		return serr
	}
}

// --- SETTINGS --------------------------------------------------------------

// TestSettingsValidation: a SETTINGS value outside RFC 9113's range ends
// the connection with GOAWAY and the code the RFC names; the client's
// frames already on their way are drained, so that the GOAWAY reaches it
// instead of a TCP reset, and the connection then closes.
func TestSettingsValidation(t *testing.T) {
	s := startWire(t, wire.Config{}, 0)
	for _, tc := range []struct {
		name    string
		setting http2.Setting
		code    http2.ErrCode
	}{
		{"ENABLE_PUSH=2", http2.Setting{ID: http2.SettingEnablePush, Val: 2}, http2.ErrCodeProtocol},
		{"MAX_FRAME_SIZE=0", http2.Setting{ID: http2.SettingMaxFrameSize, Val: 0}, http2.ErrCodeProtocol},
		{"MAX_FRAME_SIZE=16383", http2.Setting{ID: http2.SettingMaxFrameSize, Val: 16383}, http2.ErrCodeProtocol},
		{"MAX_FRAME_SIZE=2^24", http2.Setting{ID: http2.SettingMaxFrameSize, Val: 1 << 24}, http2.ErrCodeProtocol},
		{"INITIAL_WINDOW_SIZE=2^31", http2.Setting{ID: http2.SettingInitialWindowSize, Val: 1 << 31}, http2.ErrCodeFlowControl},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := dialH2(t, s.addr, 0)
			if err := c.fr.WriteSettings(tc.setting); err != nil {
				t.Fatal(err)
			}
			// Frames the client sent before it read the GOAWAY.
			c.unary(&testpb.SimpleRequest{ResponseSize: 10})
			for i := 0; i < 20; i++ {
				_ = c.fr.WritePing(false, [8]byte{byte(i)})
			}
			c.expectGoAway(tc.code)
		})
	}
	// Valid extremes are taken.
	c := dialH2(t, s.addr, 0, http2.Setting{ID: http2.SettingMaxFrameSize, Val: 1<<24 - 1},
		http2.Setting{ID: http2.SettingInitialWindowSize, Val: 1<<31 - 1}, http2.Setting{ID: http2.SettingEnablePush, Val: 0},
		http2.Setting{ID: http2.SettingHeaderTableSize, Val: 0}, http2.Setting{ID: 0x99, Val: 7})
	c.goodCall()
}

// TestClientHeaderTableSize: the server's header blocks follow the
// client's SETTINGS_HEADER_TABLE_SIZE, taken before any block and applied
// when the connection's encoder is made at its second block: a client
// whose decoder keeps a table of that size decodes every response.
func TestClientHeaderTableSize(t *testing.T) {
	s := startWire(t, wire.Config{}, 0)
	for _, size := range []uint32{0, 64, 100} {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			c := dialH2(t, s.addr, 0, http2.Setting{ID: http2.SettingHeaderTableSize, Val: size})
			c.fr.ReadMetaHeaders = hpack.NewDecoder(size, nil)
			for range 4 {
				id := c.unary(&testpb.SimpleRequest{ResponseSize: 3})
				st := c.expectCode(id, codes.OK)
				if ct := st.header("content-type"); ct != "application/grpc" {
					t.Fatalf("stream %d: content-type %q", id, ct)
				}
			}
		})
	}
}

// TestServerSettings: the server's first frame is its SETTINGS, with the
// stream quota, the header list bound and (when it is not HTTP/2's
// default) the stream window; a WINDOW_UPDATE raises the connection's
// window to its configured size; the client's SETTINGS are acknowledged.
func TestServerSettings(t *testing.T) {
	for _, tc := range []struct {
		name     string
		cfg      wire.Config
		want     map[http2.SettingID]uint32
		connIncr uint32
	}{
		{"defaults", wire.Config{}, map[http2.SettingID]uint32{
			http2.SettingMaxConcurrentStreams: 1000,
			http2.SettingMaxHeaderListSize:    1 << 20,
			http2.SettingInitialWindowSize:    64 << 10,
		}, 1<<20 - 65535},
		{"configured", wire.Config{MaxConcurrentStreams: 7, MaxHeaderListSize: 10000, InitialWindowSize: 100_000, InitialConnWindowSize: 3 << 20},
			map[http2.SettingID]uint32{
				http2.SettingMaxConcurrentStreams: 7,
				http2.SettingMaxHeaderListSize:    10000,
				http2.SettingInitialWindowSize:    100_000,
			}, 3<<20 - 65535},
		{"HTTP/2's windows", wire.Config{InitialWindowSize: 65535, InitialConnWindowSize: 65535},
			map[http2.SettingID]uint32{
				http2.SettingMaxConcurrentStreams: 1000,
				http2.SettingMaxHeaderListSize:    1 << 20,
			}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := startWire(t, tc.cfg, 0)
			c := dialH2(t, s.addr, 0)
			first, err := c.next()
			if err != nil {
				t.Fatal(err)
			}
			if first.typ != http2.FrameSettings || first.ack {
				t.Fatalf("first frame %v, want SETTINGS", first)
			}
			got := make(map[http2.SettingID]uint32)
			for _, s := range first.settings {
				got[s.ID] = s.Val
			}
			if fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Errorf("settings %v, want %v", got, tc.want)
			}
			var incr uint32
			acked := false
			for _, f := range c.ping() {
				switch {
				case f.typ == http2.FrameWindowUpdate && f.stream == 0:
					incr += f.incr
				case f.typ == http2.FrameSettings && f.ack:
					acked = true
				}
			}
			if incr != tc.connIncr {
				t.Errorf("connection WINDOW_UPDATE +%d, want +%d", incr, tc.connIncr)
			}
			if !acked {
				t.Error("the client's SETTINGS were not acknowledged")
			}
		})
	}
}

// --- receive flow control -------------------------------------------------

// TestRecvStreamWindow: DATA past a stream's window, on a client-streaming
// call whose handler reads nothing yet, resets that stream with
// FLOW_CONTROL_ERROR; the connection goes on.
func TestRecvStreamWindow(t *testing.T) {
	s := startWire(t, wire.Config{}, 0)
	c := dialH2(t, s.addr, 0)
	id := c.newID()
	c.headers(id, false, callFields("StreamingInputCall", "x-gate", "1")...)
	s.svc.waitStarted(t, 1)
	// One whole message, which waits for the handler, then the start of
	// one too large for the window.
	c.data(id, false, frameMsg(&testpb.StreamingInputCallRequest{Payload: &testpb.Payload{Body: make([]byte, 10)}}))
	big := make([]byte, 16384)
	binary.BigEndian.PutUint32(big[1:5], 1<<20)
	c.data(id, false, big)
	for i := 0; i < 4; i++ { // 65536+ bytes: past the 64 KiB window
		if err := c.fr.WriteData(id, false, make([]byte, 16384)); err != nil {
			t.Fatal(err)
		}
	}
	c.expectRST(id, http2.ErrCodeFlowControl)
	s.svc.releaseAll()
	c.goodCall()
}

// TestUnaryLargerThanWindow: a request several times the stream's window
// (and within MaxRecvMsgSize), sent by a client that keeps to the windows,
// arrives whole: the server gives the window back as the bytes arrive.
func TestUnaryLargerThanWindow(t *testing.T) {
	s := startWire(t, wire.Config{}, 0)
	c := dialH2(t, s.addr, 0)
	id := c.newID()
	c.headers(id, false, callFields("UnaryCall")...)
	req := frameMsg(&testpb.SimpleRequest{ResponseSize: 7, Payload: &testpb.Payload{Body: bytes.Repeat([]byte{'q'}, 300<<10)}})
	if err := c.sendFlow(id, true, req); err != nil {
		t.Fatal(err)
	}
	st := c.expectCode(id, codes.OK)
	if st.credit == 0 {
		t.Error("no WINDOW_UPDATE for the stream while its request arrived")
	}
	if _, msgs, _ := st.messages(); len(msgs) != 1 {
		t.Fatalf("%d response messages", len(msgs))
	}
}

// TestDeclaredLengthOverMax: a request whose length prefix declares more
// than MaxRecvMsgSize fails with RESOURCE_EXHAUSTED as soon as the prefix
// arrives, before the message does.
func TestDeclaredLengthOverMax(t *testing.T) {
	s := startWire(t, wire.Config{MaxRecvMsgSize: 1000}, 0)
	c := dialH2(t, s.addr, 0)
	id := c.newID()
	c.headers(id, false, callFields("UnaryCall")...)
	c.data(id, false, []byte{0, 0, 0, 0x07, 0xd0}) // 2000 bytes
	c.expectCode(id, codes.ResourceExhausted)
	c.goodCall()
}

// TestUnaryExtraBytes: bytes past the one message of a unary call fail
// the call; the 10 MiB that follow are not kept: the stream gets no more
// window, the connection's comes back, and the connection goes on.
func TestUnaryExtraBytes(t *testing.T) {
	s := startWire(t, wire.Config{}, 0)
	c := dialH2(t, s.addr, 0)
	id := c.newID()
	c.headers(id, false, callFields("UnaryCall")...)
	msg := frameMsg(&testpb.SimpleRequest{ResponseSize: 1})
	blast := rawFrames(func(fr *http2.Framer) {
		_ = fr.WriteData(id, false, msg)
		chunk := make([]byte, 16384)
		for i := 0; i < 640; i++ {
			_ = fr.WriteData(id, false, chunk)
		}
		_ = fr.WriteData(id, true, nil)
	})
	werr := make(chan error, 1)
	go func() { _, err := c.nc.Write(blast); werr <- err }()
	st := c.await(id)
	if st.reset || st.grpcCode() == codes.OK || st.grpcCode() == noStatus {
		t.Fatalf("call with bytes past its message: %v, want a failed call", st)
	}
	if err := <-werr; err != nil {
		t.Fatalf("the server stopped reading: %v", err)
	}
	c.ping()
	if st.credit > 65536+int64(len(msg)) {
		t.Errorf("the failed stream was credited %d bytes", st.credit)
	}
	if c.goaway != nil {
		t.Fatalf("GOAWAY %v", c.goaway)
	}
	c.goodCall()
}

// TestRequestBudget: requests waiting for the rest of their message are
// bounded per connection: with 24 streams each holding 50,000 bytes of a
// 60,000-byte message, those past the connection's budget fail with
// RESOURCE_EXHAUSTED and the others complete.
func TestRequestBudget(t *testing.T) {
	// The budget: max(InitialConnWindowSize, 2*(MaxRecvMsgSize+5)), 1 MiB.
	const budget, partial, streams = 1 << 20, 50_000, 24
	s := startWire(t, wire.Config{MaxRecvMsgSize: 100_000}, 0)
	c := dialH2(t, s.addr, 0)
	req := frameMsg(&testpb.SimpleRequest{ResponseSize: 1, Payload: &testpb.Payload{Body: make([]byte, 60_000-8)}})
	ids := make([]uint32, streams)
	for i := range ids {
		ids[i] = c.newID()
		c.headers(ids[i], false, callFields("UnaryCall")...)
		if err := c.sendFlow(ids[i], false, req[:partial]); err != nil {
			t.Fatal(err)
		}
	}
	// The stream whose bytes pass the budget, in 16 KiB frames.
	fits := budget / partial
	for i, id := range ids {
		if i < fits {
			if err := c.sendFlow(id, true, req[partial:]); err != nil {
				t.Fatal(err)
			}
		}
	}
	for i, id := range ids {
		want := codes.OK
		if i >= fits {
			want = codes.ResourceExhausted
		}
		c.expectCode(id, want)
	}
	c.goodCall()
}

// TestRecvWindowCreditedForFailedCalls: the connection's window comes back
// for the bytes of calls that failed on them (a length over the limit,
// bytes past the message, a content-length exceeded), so that a client
// making such calls does not run out of window and stall. Each call sends
// one 16 KiB frame; 80 calls are more than the 1 MiB window.
func TestRecvWindowCreditedForFailedCalls(t *testing.T) {
	big := make([]byte, 16384)
	binary.BigEndian.PutUint32(big[1:5], 1<<20)
	extra := make([]byte, 16384)
	binary.BigEndian.PutUint32(extra[1:5], 10)
	for _, tc := range []struct {
		name  string
		extra []string
		data  []byte
		check func(c *h2Client, id uint32)
	}{
		{"length over MaxRecvMsgSize", nil, big, func(c *h2Client, id uint32) { c.expectCode(id, codes.ResourceExhausted) }},
		{"bytes past the message", nil, extra, func(c *h2Client, id uint32) {
			if s := c.await(id); s.reset || s.grpcCode() != codes.Internal {
				c.t.Fatalf("%v, want grpc-status Internal", s)
			}
		}},
		{"content-length exceeded", []string{"content-length", "10"}, extra, func(c *h2Client, id uint32) { c.expectRST(id, http2.ErrCodeProtocol) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := startWire(t, wire.Config{MaxRecvMsgSize: 1000}, 0)
			c := dialH2(t, s.addr, 0)
			for i := 0; i < 80; i++ {
				id := c.newID()
				c.headers(id, false, callFields("UnaryCall", tc.extra...)...)
				if err := c.sendFlow(id, false, tc.data); err != nil {
					t.Fatalf("call %d: %v: the connection's window was not given back", i, err)
				}
				tc.check(c, id)
			}
			c.goodCall()
		})
	}
}

// TestOversizedRequestsKeepConnection: a grpc-go client whose requests are
// over MaxRecvMsgSize gets RESOURCE_EXHAUSTED for each, and its connection
// keeps serving (it must not run out of connection window).
func TestOversizedRequestsKeepConnection(t *testing.T) {
	s := startWire(t, wire.Config{MaxRecvMsgSize: 1000}, 0)
	conn, err := grpc.NewClient(s.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	c := testpb.NewTestServiceClient(conn)
	for i := 0; i < 100; i++ {
		cx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, err := c.UnaryCall(cx, &testpb.SimpleRequest{Payload: &testpb.Payload{Body: make([]byte, 20_000)}})
		cancel()
		if status.Code(err) != codes.ResourceExhausted {
			t.Fatalf("oversized call %d: %v, want ResourceExhausted", i, err)
		}
	}
	cx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := c.UnaryCall(cx, &testpb.SimpleRequest{ResponseSize: 1}); err != nil {
		t.Fatalf("after the oversized calls: %v", err)
	}
}

// TestWindowOverflow: a WINDOW_UPDATE that takes the server's send window
// past 2^31-1 is a connection error on the connection, a stream error on
// a stream.
func TestWindowOverflow(t *testing.T) {
	s := startWire(t, wire.Config{}, 0)
	t.Run("connection", func(t *testing.T) {
		c := dialH2(t, s.addr, 0)
		if err := c.fr.WriteWindowUpdate(0, 1<<31-1); err != nil {
			t.Fatal(err)
		}
		c.expectGoAway(http2.ErrCodeFlowControl)
	})
	t.Run("stream", func(t *testing.T) {
		c := dialH2(t, s.addr, 0)
		id := c.newID()
		c.headers(id, false, callFields("UnaryCall")...)
		if err := c.fr.WriteWindowUpdate(id, 1<<31-1); err != nil {
			t.Fatal(err)
		}
		c.expectRST(id, http2.ErrCodeFlowControl)
		c.goodCall()
	})
}

// --- stream states --------------------------------------------------------

// TestStreamStates: frames that RFC 9113's stream states forbid end the
// stream or the connection with the error the RFC names; frames on a
// stream the server reset are ignored.
func TestStreamStates(t *testing.T) {
	s := startWire(t, wire.Config{}, 0)
	goaway := func(codes ...http2.ErrCode) func(c *h2Client) {
		return func(c *h2Client) { c.expectGoAway(codes...) }
	}
	// openReset opens a stream that the server then resets.
	openReset := func(c *h2Client) uint32 {
		id := c.newID()
		c.headers(id, false, callFields("UnaryCall")...)
		if err := c.fr.WriteWindowUpdate(id, 1<<31-1); err != nil {
			c.t.Fatal(err)
		}
		c.expectRST(id, http2.ErrCodeFlowControl)
		return id
	}
	for _, tc := range []struct {
		name   string
		send   func(c *h2Client)
		expect func(c *h2Client) // nil: the connection serves a call after
	}{
		{"DATA on an idle stream", func(c *h2Client) { c.data(1, false, []byte("x")) }, goaway(http2.ErrCodeProtocol)},
		{"WINDOW_UPDATE on an idle stream", func(c *h2Client) { _ = c.fr.WriteWindowUpdate(3, 100) }, goaway(http2.ErrCodeProtocol)},
		{"RST_STREAM on an idle stream", func(c *h2Client) { _ = c.fr.WriteRSTStream(5, http2.ErrCodeCancel) }, goaway(http2.ErrCodeProtocol)},
		{"DATA after the client's END_STREAM", func(c *h2Client) {
			id := c.unary(&testpb.SimpleRequest{ResponseSize: 1}, "x-gate", "1")
			s.svc.waitStarted(c.t.(*testing.T), 1)
			c.data(id, false, []byte("late"))
			c.expectRST(id, http2.ErrCodeStreamClosed)
			s.svc.releaseOne(c.t.(*testing.T))
		}, nil},
		{"DATA on a stream the server reset", func(c *h2Client) {
			id := openReset(c)
			for i := 0; i < 3; i++ {
				c.data(id, false, []byte("ignored"))
			}
			for _, f := range c.ping() {
				if f.typ == http2.FrameRSTStream || f.typ == http2.FrameGoAway {
					c.t.Fatalf("DATA on a reset stream answered with %v", f)
				}
			}
		}, nil},
		{"WINDOW_UPDATE and RST_STREAM on a stream the server reset", func(c *h2Client) {
			id := openReset(c)
			_ = c.fr.WriteWindowUpdate(id, 10)
			_ = c.fr.WriteRSTStream(id, http2.ErrCodeCancel)
			for _, f := range c.ping() {
				if f.typ == http2.FrameRSTStream || f.typ == http2.FrameGoAway {
					c.t.Fatalf("answered with %v", f)
				}
			}
		}, nil},
		// As on x/net's and grpc-go's servers (and as h2spec's §5.1 and
		// §8.1 cases expect), unlike late DATA.
		{"trailers on a stream the server reset", func(c *h2Client) {
			id := openReset(c)
			c.headers(id, true, "x-trailer", "1")
		}, goaway(http2.ErrCodeProtocol)},
		{"HEADERS with a lower stream id", func(c *h2Client) {
			c.headers(5, false, callFields("UnaryCall")...)
			c.headers(3, false, callFields("UnaryCall")...)
		}, goaway(http2.ErrCodeProtocol)},
		{"HEADERS reusing a closed stream", func(c *h2Client) {
			c.goodCall()
			c.headers(c.id, true, callFields("UnaryCall")...)
		}, goaway(http2.ErrCodeProtocol, http2.ErrCodeStreamClosed)},
		{"HEADERS on an even stream", func(c *h2Client) { c.headers(2, true, callFields("UnaryCall")...) }, goaway(http2.ErrCodeProtocol)},
		{"PRIORITY depending on itself", func(c *h2Client) {
			id := c.newID()
			_ = c.fr.WritePriority(id, http2.PriorityParam{StreamDep: id, Weight: 10})
			c.expectRST(id, http2.ErrCodeProtocol)
		}, nil},
		{"HEADERS depending on itself", func(c *h2Client) {
			id := c.newID()
			c.writeBlock(id, true, c.encode(callFields("UnaryCall")...), http2.PriorityParam{StreamDep: id, Weight: 10})
			c.expectRST(id, http2.ErrCodeProtocol)
		}, nil},
		{"PRIORITY on other streams", func(c *h2Client) {
			_ = c.fr.WritePriority(101, http2.PriorityParam{StreamDep: 0, Weight: 10})
			_ = c.fr.WritePriority(103, http2.PriorityParam{StreamDep: 101, Exclusive: true})
			c.ping()
		}, nil},
		{"PUSH_PROMISE", func(c *h2Client) {
			id := c.newID()
			c.headers(id, false, callFields("UnaryCall")...)
			_ = c.fr.WritePushPromise(http2.PushPromiseParam{StreamID: id, PromiseID: 2, BlockFragment: c.encode(":method", "GET"), EndHeaders: true})
		}, goaway(http2.ErrCodeProtocol)},
		{"trailers without END_STREAM", func(c *h2Client) {
			id := c.newID()
			c.headers(id, false, callFields("UnaryCall")...)
			c.data(id, false, []byte{0, 0, 0})
			c.headers(id, false, "x-trailer", "1")
			c.expectRST(id, http2.ErrCodeProtocol)
		}, nil},
		{"trailers with a pseudo-header", func(c *h2Client) {
			id := c.newID()
			c.headers(id, false, callFields("UnaryCall")...)
			c.headers(id, true, ":path", "/x")
			c.expectRST(id, http2.ErrCodeProtocol)
		}, nil},
		{"trailers ending the request", func(c *h2Client) {
			id := c.newID()
			c.headers(id, false, callFields("UnaryCall")...)
			c.data(id, false, frameMsg(&testpb.SimpleRequest{ResponseSize: 2}))
			c.headers(id, true, "x-trailer", "1")
			c.expectCode(id, codes.OK)
		}, nil},
		{"CONTINUATION without HEADERS", func(c *h2Client) {
			_ = c.fr.WriteContinuation(1, true, c.encode("x", "y"))
		}, goaway(http2.ErrCodeProtocol)},
		{"unknown frame type", func(c *h2Client) {
			_ = c.fr.WriteRawFrame(0x42, 0, 1, []byte("extension"))
			c.ping()
		}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := dialH2(t, s.addr, 0)
			tc.send(c)
			if tc.expect != nil {
				tc.expect(c)
				return
			}
			c.goodCall()
		})
	}
}

// TestMalformedRequests: requests that break HTTP/2's rules for header
// fields (RFC 9113 section 8.2, 8.3) or content-length are reset with
// PROTOCOL_ERROR, and the connection serves a good call after.
func TestMalformedRequests(t *testing.T) {
	s := startWire(t, wire.Config{}, 0)
	good := callFields("UnaryCall")
	msg := frameMsg(&testpb.SimpleRequest{ResponseSize: 1, Payload: &testpb.Payload{Body: make([]byte, 13)}}) // 20 bytes
	for _, tc := range []struct {
		name   string
		fields []string
		data   []byte // with END_STREAM; nil: none, HEADERS ends the stream
	}{
		{"uppercase name", append(good, "X-Upper", "1"), msg},
		{"unknown pseudo-header", append([]string{":foo", "bar"}, good...), msg},
		{"pseudo-header after a regular one", append(without(good, ":authority"), ":authority", "localhost"), msg},
		{"duplicated :path", append([]string{":path", testMethod + "UnaryCall"}, good...), msg},
		{"response pseudo-header", append([]string{":status", "200"}, good...), msg},
		{"connection header", append(good, "connection", "keep-alive"), msg},
		{"transfer-encoding header", append(good, "transfer-encoding", "chunked"), msg},
		{"te: gzip", with(good, "te", "gzip"), msg},
		{"missing :scheme", without(good, ":scheme"), msg},
		{"missing :method", without(good, ":method"), msg},
		{"missing :path", without(good, ":path"), msg},
		{"empty :path", with(good, ":path", ""), msg},
		{":protocol", append([]string{":protocol", "websocket"}, good...), msg},
		{"invalid header value", append(good, "x-bad", "a\x00b"), msg},
		{"content-length below the DATA", append(good, "content-length", "3"), msg},
		{"content-length above the DATA", append(good, "content-length", "100"), msg},
		{"content-length not a number", append(good, "content-length", "ten"), msg},
		{"content-length without DATA", append(good, "content-length", "20"), nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := dialH2(t, s.addr, 0)
			id := c.newID()
			c.headers(id, tc.data == nil, tc.fields...)
			if tc.data != nil {
				c.data(id, true, tc.data)
			}
			c.expectRST(id, http2.ErrCodeProtocol)
			c.goodCall()
		})
	}
	// The content-length, when right, is accepted.
	c := dialH2(t, s.addr, 0)
	id := c.newID()
	c.headers(id, false, append(callFields("UnaryCall"), "content-length", strconv.Itoa(len(msg)))...)
	c.data(id, true, msg)
	c.expectCode(id, codes.OK)
}

// TestNonGRPCRequests: well-formed HTTP/2 requests that are not gRPC calls
// are answered as grpc-go answers them: an HTTP status and a grpc-status.
func TestNonGRPCRequests(t *testing.T) {
	s := startWire(t, wire.Config{}, 0)
	good := callFields("UnaryCall")
	for _, tc := range []struct {
		name   string
		fields []string
		status string
		code   codes.Code
	}{
		{"content-type text/plain", with(good, "content-type", "text/plain"), "415", codes.InvalidArgument},
		{"no content-type", without(good, "content-type"), "415", codes.InvalidArgument},
		{"GET", with(good, ":method", "GET"), "405", codes.Internal},
		{"no :authority and no host", without(good, ":authority"), "400", codes.Internal},
		{"bad grpc-timeout", append(good, "grpc-timeout", "forever"), "400", codes.Internal},
		{"host instead of :authority", append(without(good, ":authority"), "host", "localhost"), "200", codes.Unimplemented},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := dialH2(t, s.addr, 0)
			id := c.newID()
			if tc.status == "200" {
				// A valid call to a path the service lacks.
				tc.fields = with(tc.fields, ":path", testMethod+"Nope")
			}
			c.headers(id, true, tc.fields...)
			st := c.await(id)
			if st.reset || st.header(":status") != tc.status || st.grpcCode() != tc.code {
				t.Fatalf("%v, want :status %s grpc-status %d", st, tc.status, tc.code)
			}
			c.goodCall()
		})
	}
}
