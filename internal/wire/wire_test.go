package wire_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
	"golang.org/x/net/http2"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/encoding/proto"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/maxloyalty/notify/internal/wire"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// testService implements the interop TestService over the wire server.
type testService struct {
	testpb.UnimplementedTestServiceServer
	cancelled chan struct{} // closed when a streaming call sees its context end
	once      sync.Once
}

func (s *testService) UnaryCall(ctx context.Context, req *testpb.SimpleRequest) (*testpb.SimpleResponse, error) {
	if st := req.GetResponseStatus(); st != nil {
		return nil, status.Error(codes.Code(st.Code), st.Message)
	}
	md, _ := metadata.FromIncomingContext(ctx)
	if v := md.Get("x-echo"); len(v) > 0 {
		_ = grpc.SetHeader(ctx, metadata.Pairs("x-echo-header", v[0]))
		_ = grpc.SetTrailer(ctx, metadata.Pairs("x-echo-trailer", v[0], "x-bin", "\x00\x01\xff"))
	}
	if req.GetFillUsername() {
		// The call's method and peer, as the transport put them.
		m, _ := grpc.Method(ctx)
		p, _ := peer.FromContext(ctx)
		return &testpb.SimpleResponse{Username: m + " " + p.Addr.Network()}, nil
	}
	if req.GetResponseSize() == -1 {
		st, _ := status.New(codes.FailedPrecondition, "ünïcode % message\n").WithDetails(&errdetails.ErrorInfo{Reason: "WHY", Domain: "test"})
		return nil, st.Err()
	}
	if d := req.GetResponseSize(); d < 0 {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	return &testpb.SimpleResponse{Payload: &testpb.Payload{Body: bytes.Repeat([]byte{'r'}, int(req.GetResponseSize()))}}, nil
}

func (s *testService) StreamingOutputCall(req *testpb.StreamingOutputCallRequest, stream grpc.ServerStreamingServer[testpb.StreamingOutputCallResponse]) error {
	md, _ := metadata.FromIncomingContext(stream.Context())
	if len(md.Get("x-attach")) > 0 {
		return s.attached(req, stream)
	}
	for i, p := range req.GetResponseParameters() {
		body := make([]byte, p.GetSize())
		copy(body, strconv.Itoa(i))
		if err := stream.Send(&testpb.StreamingOutputCallResponse{Payload: &testpb.Payload{Body: body}}); err != nil {
			return err
		}
	}
	if len(md.Get("x-hold")) > 0 {
		<-stream.Context().Done()
		s.once.Do(func() { close(s.cancelled) })
		return stream.Context().Err()
	}
	return nil
}

// attached sends the responses from a pump run by the connection's writer,
// as the notify service does: each run sends a few and kicks again.
func (s *testService) attached(req *testpb.StreamingOutputCallRequest, stream grpc.ServerStreamingServer[testpb.StreamingOutputCallResponse]) error {
	a, ok := grpc.ServerTransportStreamFromContext(stream.Context()).(interface {
		Attach(pump func()) (kick func())
	})
	if !ok {
		return status.Error(codes.Internal, "stream cannot attach")
	}
	params := req.GetResponseParameters()
	var (
		next    int
		running atomic.Int32
		kick    func()
		done    = make(chan error, 1)
	)
	kick = a.Attach(func() {
		if running.Add(1) != 1 {
			done <- errors.New("pump ran twice at once")
			return
		}
		defer running.Add(-1)
		for k := 0; k < 8 && next < len(params); k++ {
			body := make([]byte, params[next].GetSize())
			copy(body, strconv.Itoa(next))
			if err := stream.Send(&testpb.StreamingOutputCallResponse{Payload: &testpb.Payload{Body: body}}); err != nil {
				done <- err
				return
			}
			next++
		}
		if next == len(params) {
			done <- nil
			return
		}
		kick()
	})
	kick()
	select {
	case err := <-done:
		return err
	case <-stream.Context().Done():
		return stream.Context().Err()
	}
}

func (s *testService) FullDuplexCall(stream grpc.BidiStreamingServer[testpb.StreamingOutputCallRequest, testpb.StreamingOutputCallResponse]) error {
	for {
		req, err := stream.Recv()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		if err := stream.Send(&testpb.StreamingOutputCallResponse{Payload: req.GetPayload()}); err != nil {
			return err
		}
	}
}

// serve starts a wire server on loopback and returns a client connection.
func serve(t *testing.T, cfg wire.Config, opts ...grpc.DialOption) (*wire.Server, *testService, *grpc.ClientConn) {
	t.Helper()
	svc := &testService{cancelled: make(chan struct{})}
	srv, conn := serveService(t, cfg, svc, opts...)
	return srv, svc, conn
}

// serveService starts a wire server on loopback with svc as its
// TestService and returns a client connection.
func serveService(t *testing.T, cfg wire.Config, svc testpb.TestServiceServer, opts ...grpc.DialOption) (*wire.Server, *grpc.ClientConn) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := serveOn(t, cfg, svc, l)
	if len(opts) == 0 {
		opts = []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
	}
	conn, err := grpc.NewClient(l.Addr().String(), opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return srv, conn
}

// serveOn serves svc on l with cfg (and the proto codec) until the test
// ends.
func serveOn(t *testing.T, cfg wire.Config, svc testpb.TestServiceServer, l net.Listener) *wire.Server {
	t.Helper()
	cfg.Codec = encoding.GetCodecV2(proto.Name)
	srv := wire.NewServer(cfg)
	testpb.RegisterTestServiceServer(srv, svc)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(l) }()
	t.Cleanup(func() {
		srv.Stop()
		if err := <-served; !errors.Is(err, wire.ErrServerStopped) {
			t.Errorf("Serve: %v", err)
		}
	})
	return srv
}

// serveTLS serves svc with cfg over TLS (ALPN h2, a self-signed
// certificate) until the test ends, and returns its address, the pool
// that trusts it and a gRPC client over TLS.
func serveTLS(t *testing.T, cfg wire.Config, svc testpb.TestServiceServer) (string, *x509.CertPool, *grpc.ClientConn) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tl, pool := wire.TLSListener(t, l)
	serveOn(t, cfg, svc, tl)
	conn, err := grpc.NewClient(l.Addr().String(), grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: pool})))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return l.Addr().String(), pool, conn
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return c
}

func TestUnaryMetadataAndInterceptors(t *testing.T) {
	var order []string
	var mu sync.Mutex
	mark := func(name string) grpc.UnaryServerInterceptor {
		return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			mu.Lock()
			order = append(order, name+":"+info.FullMethod)
			mu.Unlock()
			return h(ctx, req)
		}
	}
	_, _, conn := serve(t, wire.Config{UnaryInterceptors: []grpc.UnaryServerInterceptor{mark("outer"), mark("inner")}})
	c := testpb.NewTestServiceClient(conn)
	var header, trailer metadata.MD
	resp, err := c.UnaryCall(metadata.AppendToOutgoingContext(ctx(t), "x-echo", "hello"),
		&testpb.SimpleRequest{ResponseSize: 100_000, Payload: &testpb.Payload{Body: make([]byte, 200_000)}},
		grpc.Header(&header), grpc.Trailer(&trailer))
	if err != nil {
		t.Fatal(err)
	}
	if n := len(resp.GetPayload().GetBody()); n != 100_000 {
		t.Fatalf("response body %d bytes, want 100000", n)
	}
	if got := header.Get("x-echo-header"); len(got) != 1 || got[0] != "hello" {
		t.Errorf("header %v", header)
	}
	if got := trailer.Get("x-echo-trailer"); len(got) != 1 || got[0] != "hello" {
		t.Errorf("trailer %v", trailer)
	}
	if got := trailer.Get("x-bin"); len(got) != 1 || got[0] != "\x00\x01\xff" {
		t.Errorf("binary trailer %q", got)
	}
	resp, err = c.UnaryCall(ctx(t), &testpb.SimpleRequest{FillUsername: true})
	if err != nil {
		t.Fatal(err)
	}
	if want := "/grpc.testing.TestService/UnaryCall tcp"; resp.GetUsername() != want {
		t.Errorf("method and peer %q, want %q", resp.GetUsername(), want)
	}
	mu.Lock()
	defer mu.Unlock()
	want := []string{"outer:/grpc.testing.TestService/UnaryCall", "inner:/grpc.testing.TestService/UnaryCall"}
	if len(order) != 4 || order[0] != want[0] || order[1] != want[1] {
		t.Errorf("interceptors ran %v, want %v twice", order, want)
	}
}

func TestErrors(t *testing.T) {
	_, _, conn := serve(t, wire.Config{MaxRecvMsgSize: 1000})
	c := testpb.NewTestServiceClient(conn)

	_, err := c.UnaryCall(ctx(t), &testpb.SimpleRequest{ResponseSize: -1})
	st := status.Convert(err)
	if st.Code() != codes.FailedPrecondition || st.Message() != "ünïcode % message\n" {
		t.Errorf("status %v %q", st.Code(), st.Message())
	}
	if d := st.Details(); len(d) != 1 || d[0].(*errdetails.ErrorInfo).GetReason() != "WHY" {
		t.Errorf("details %v", d)
	}

	_, err = c.UnaryCall(ctx(t), &testpb.SimpleRequest{Payload: &testpb.Payload{Body: make([]byte, 2000)}})
	if status.Code(err) != codes.ResourceExhausted {
		t.Errorf("oversized request: %v, want ResourceExhausted", err)
	}

	_, err = c.UnaryCall(ctx(t), &testpb.SimpleRequest{ResponseStatus: &testpb.EchoStatus{Code: int32(codes.NotFound), Message: "no such thing"}})
	if st := status.Convert(err); st.Code() != codes.NotFound || st.Message() != "no such thing" {
		t.Errorf("handler status: %v", err)
	}

	_, err = c.UnimplementedCall(ctx(t), &testpb.Empty{})
	if status.Code(err) != codes.Unimplemented {
		t.Errorf("unimplemented method: %v", err)
	}
	err = conn.Invoke(ctx(t), "/no.Such/Method", &testpb.Empty{}, &testpb.Empty{})
	if st := status.Convert(err); st.Code() != codes.Unimplemented || st.Message() != "unknown service no.Such" {
		t.Errorf("unknown service: %v", err)
	}
	err = conn.Invoke(ctx(t), "/grpc.testing.TestService/Nope", &testpb.Empty{}, &testpb.Empty{})
	if st := status.Convert(err); st.Code() != codes.Unimplemented || st.Message() != "unknown method Nope for service grpc.testing.TestService" {
		t.Errorf("unknown method: %v", err)
	}

	short, cancel := context.WithTimeout(ctx(t), 100*time.Millisecond)
	defer cancel()
	_, err = c.UnaryCall(short, &testpb.SimpleRequest{ResponseSize: -2})
	if status.Code(err) != codes.DeadlineExceeded {
		t.Errorf("deadline: %v", err)
	}

	// The connection still serves.
	if _, err := c.UnaryCall(ctx(t), &testpb.SimpleRequest{ResponseSize: 10}); err != nil {
		t.Errorf("after errors: %v", err)
	}
}

// params asks for n responses of size bytes.
func params(n, size int) []*testpb.ResponseParameters {
	ps := make([]*testpb.ResponseParameters, n)
	for i := range ps {
		ps[i] = &testpb.ResponseParameters{Size: int32(size)}
	}
	return ps
}

// recvAll reads a stream to its end, checking each response's index.
func recvAll(t *testing.T, s grpc.ServerStreamingClient[testpb.StreamingOutputCallResponse], want, size int, pause func(i int)) {
	t.Helper()
	for i := 0; ; i++ {
		if pause != nil {
			pause(i)
		}
		r, err := s.Recv()
		if err == io.EOF {
			if i != want {
				t.Fatalf("stream ended after %d responses, want %d", i, want)
			}
			return
		}
		if err != nil {
			t.Fatalf("response %d: %v", i, err)
		}
		body := r.GetPayload().GetBody()
		if len(body) != size || !bytes.HasPrefix(body, []byte(strconv.Itoa(i))) {
			t.Fatalf("response %d: %d bytes starting %q", i, len(body), body[:min(8, len(body))])
		}
	}
}

// TestFlowControl: a stream of 6 MB (far past the windows) arrives whole
// and in order while another stream on the same connection is not read:
// one client's stalled stream does not stall the others.
func TestFlowControl(t *testing.T) {
	_, _, conn := serve(t, wire.Config{}, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithInitialWindowSize(64<<10), grpc.WithInitialConnWindowSize(1<<20))
	c := testpb.NewTestServiceClient(conn)
	stalled, err := c.StreamingOutputCall(ctx(t), &testpb.StreamingOutputCallRequest{ResponseParameters: params(100, 32<<10)})
	if err != nil {
		t.Fatal(err)
	}
	for _, attach := range []bool{false, true} {
		cx := ctx(t)
		if attach {
			cx = metadata.AppendToOutgoingContext(cx, "x-attach", "1")
		}
		s, err := c.StreamingOutputCall(cx, &testpb.StreamingOutputCallRequest{ResponseParameters: params(200, 32<<10)})
		if err != nil {
			t.Fatal(err)
		}
		recvAll(t, s, 200, 32<<10, nil)
	}
	recvAll(t, stalled, 100, 32<<10, nil)
}

// TestAttachedPauses: an attached stream whose client pauses reading stops
// being pumped, and resumes where it was when the client reads again.
func TestAttachedPauses(t *testing.T) {
	_, _, conn := serve(t, wire.Config{}, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithInitialWindowSize(64<<10), grpc.WithInitialConnWindowSize(64<<10))
	c := testpb.NewTestServiceClient(conn)
	s, err := c.StreamingOutputCall(metadata.AppendToOutgoingContext(ctx(t), "x-attach", "1"),
		&testpb.StreamingOutputCallRequest{ResponseParameters: params(3000, 1000)})
	if err != nil {
		t.Fatal(err)
	}
	recvAll(t, s, 3000, 1000, func(i int) {
		if i == 10 || i == 1500 {
			// pacing: the client stops reading for a while, long enough for
			// the server to fill the windows and stop pumping.
			time.Sleep(300 * time.Millisecond)
		}
	})
}

func TestBidi(t *testing.T) {
	_, _, conn := serve(t, wire.Config{})
	s, err := testpb.NewTestServiceClient(conn).FullDuplexCall(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 50; i++ {
		body := []byte(strconv.Itoa(i))
		if err := s.Send(&testpb.StreamingOutputCallRequest{Payload: &testpb.Payload{Body: body}}); err != nil {
			t.Fatal(err)
		}
		r, err := s.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(r.GetPayload().GetBody(), body) {
			t.Fatalf("echo %d: %q", i, r.GetPayload().GetBody())
		}
	}
	if err := s.CloseSend(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Recv(); err != io.EOF {
		t.Fatalf("after CloseSend: %v, want EOF", err)
	}
}

// TestCancelAndGracefulStop: a client's cancel reaches the handler;
// GracefulStop waits for a running stream, refuses new calls, and returns
// once the stream has ended.
func TestCancelAndGracefulStop(t *testing.T) {
	srv, svc, conn := serve(t, wire.Config{})
	c := testpb.NewTestServiceClient(conn)
	hold := metadata.AppendToOutgoingContext(ctx(t), "x-hold", "1")
	cctx, cancel := context.WithCancel(hold)
	s, err := c.StreamingOutputCall(cctx, &testpb.StreamingOutputCallRequest{ResponseParameters: params(1, 10)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Recv(); err != nil {
		t.Fatal(err)
	}
	cancel()
	select {
	case <-svc.cancelled:
	case <-time.After(5 * time.Second):
		t.Fatal("the handler did not see the cancel")
	}

	// A stream that runs until its client ends it.
	running, err := c.StreamingOutputCall(hold, &testpb.StreamingOutputCallRequest{ResponseParameters: params(3, 10)})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		if _, err := running.Recv(); err != nil {
			t.Fatal(err)
		}
	}
	stopped := make(chan struct{})
	go func() { srv.GracefulStop(); close(stopped) }()
	// The client leaves READY on the GOAWAY, which GracefulStop sends
	// before it waits for the streams: past the point where it would have
	// returned early.
	wctx, wcancel := context.WithTimeout(ctx(t), 5*time.Second)
	defer wcancel()
	if !conn.WaitForStateChange(wctx, connectivity.Ready) {
		t.Fatal("no GOAWAY from GracefulStop")
	}
	select {
	case <-stopped:
		t.Fatal("GracefulStop returned while a stream ran")
	default:
	}
	if _, err := c.UnaryCall(ctx(t), &testpb.SimpleRequest{}, grpc.WaitForReady(false)); err == nil {
		t.Error("a call during the drain succeeded")
	}
	running.CloseSend()
	// Ending the call on the client resets the stream; the drain ends.
	conn.Close()
	select {
	case <-stopped:
	case <-time.After(5 * time.Second):
		t.Fatal("GracefulStop did not return after the last stream ended")
	}
}

func TestTLS(t *testing.T) {
	_, _, conn := serveTLS(t, wire.Config{}, &testService{})
	resp, err := testpb.NewTestServiceClient(conn).UnaryCall(ctx(t), &testpb.SimpleRequest{ResponseSize: 5})
	if err != nil || len(resp.GetPayload().GetBody()) != 5 {
		t.Fatalf("over TLS: %v", err)
	}
}

// rawConn opens an HTTP/2 connection by hand: preface and settings.
func rawConn(t *testing.T, cfg wire.Config) (*http2.Framer, net.Conn) {
	t.Helper()
	cfg.Codec = encoding.GetCodecV2(proto.Name)
	srv := wire.NewServer(cfg)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(l) }()
	t.Cleanup(func() { srv.Stop(); <-served })
	nc, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	if _, err := nc.Write([]byte(http2.ClientPreface)); err != nil {
		t.Fatal(err)
	}
	fr := http2.NewFramer(nc, nc)
	if err := fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	_ = nc.SetDeadline(time.Now().Add(10 * time.Second))
	return fr, nc
}

// TestTooManyPings: a client pinging faster than allowed gets GOAWAY
// ENHANCE_YOUR_CALM "too_many_pings" and its connection closed.
func TestTooManyPings(t *testing.T) {
	fr, _ := rawConn(t, wire.Config{MinPingInterval: time.Minute})
	for i := 0; i < 5; i++ {
		if err := fr.WritePing(false, [8]byte{byte(i)}); err != nil {
			break // closed already
		}
	}
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			t.Fatalf("no GOAWAY before the connection ended: %v", err)
		}
		if g, ok := f.(*http2.GoAwayFrame); ok {
			if g.ErrCode != http2.ErrCodeEnhanceYourCalm || string(g.DebugData()) != "too_many_pings" {
				t.Fatalf("GOAWAY %v %q", g.ErrCode, g.DebugData())
			}
			break
		}
	}
	if _, err := fr.ReadFrame(); err == nil {
		t.Fatal("connection still open after GOAWAY")
	}
}

// TestKeepalive: a silent connection is pinged, and closed when it does not
// answer.
func TestKeepalive(t *testing.T) {
	fr, _ := rawConn(t, wire.Config{KeepaliveTime: 100 * time.Millisecond, KeepaliveTimeout: 200 * time.Millisecond})
	start := time.Now()
	pinged := false
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			break
		}
		if p, ok := f.(*http2.PingFrame); ok && !p.IsAck() {
			pinged = true
		}
	}
	if !pinged {
		t.Fatal("the server closed the connection without pinging it")
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("closed after %v", d)
	}
}
