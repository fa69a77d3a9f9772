package gateway

// The websocket attack tests' server: the interop TestService with
// handlers that hold a call open or flood the client, behind the websocket
// transport, and a well-behaved client to check it still serves.

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime/debug"
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
