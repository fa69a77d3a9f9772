package gateway_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/stats"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	notifyv1 "github.com/maxloyalty/notify/gen/notify/v1"
	"github.com/maxloyalty/notify/internal/gateway"
	"github.com/maxloyalty/notify/internal/stack"
)

// scriptService answers Subscribe by the script its first room names.
type scriptService struct {
	notifyv1.UnimplementedNotificationServiceServer
}

func (scriptService) Subscribe(req *notifyv1.SubscribeRequest, stream grpc.ServerStreamingServer[notifyv1.SubscribeResponse]) error {
	ctx := stream.Context()
	msg := func(s string) *notifyv1.SubscribeResponse {
		return &notifyv1.SubscribeResponse{Control: &notifyv1.SubscribeResponse_Connected{Connected: &notifyv1.Connected{ServerId: s}}}
	}
	script := ""
	if len(req.Rooms) > 0 {
		script = req.Rooms[0]
	}
	switch script {
	case "ok":
		if err := grpc.SetHeader(ctx, metadata.Pairs("x-h", "1", "x-h-bin", "\x00\x01")); err != nil {
			return err
		}
		grpc.SetTrailer(ctx, metadata.Pairs("x-t", "2"))
		for i := range 3 {
			if err := stream.Send(msg(fmt.Sprint(i))); err != nil {
				return err
			}
		}
		return nil
	case "send-header":
		if err := stream.SendHeader(metadata.Pairs("x-h", "sent")); err != nil {
			return err
		}
		return stream.Send(msg("after"))
	case "fail-early":
		grpc.SetTrailer(ctx, metadata.Pairs("x-t", "early"))
		st, _ := status.New(codes.ResourceExhausted, "too much: 100% über").WithDetails(&errdetails.ErrorInfo{Reason: "R", Domain: "d"})
		return st.Err()
	case "fail-late":
		if err := stream.Send(msg("one")); err != nil {
			return err
		}
		return status.Error(codes.PermissionDenied, "line1\nline2")
	case "plain-error":
		return errors.New("boom")
	case "metadata":
		md, _ := metadata.FromIncomingContext(ctx)
		var keys []string
		for k, vs := range md {
			keys = append(keys, k+"="+strings.Join(vs, ","))
		}
		slices.Sort(keys)
		_, deadline := ctx.Deadline()
		m, _ := grpc.Method(ctx)
		return stream.Send(msg(fmt.Sprintf("%s deadline=%v method=%s", strings.Join(keys, " "), deadline, m)))
	case "detach":
		// As "wait", with the handler's goroutine gone once it returns:
		// "waiting" is sent after that, and the context's end ends the call.
		d, ok := grpc.ServerTransportStreamFromContext(ctx).(interface {
			Detach() (end func(error), ok bool)
		})
		if !ok {
			return status.Error(codes.Internal, "the transport stream has no Detach")
		}
		end, ok := d.Detach()
		if !ok {
			return status.Error(codes.FailedPrecondition, "not detached")
		}
		returned := make(chan struct{})
		defer close(returned)
		go func() {
			<-returned
			if err := stream.Send(msg("waiting")); err != nil {
				end(err)
			}
		}()
		select {
		case detachedContexts <- ctx:
		default:
		}
		// The client's close ends the call through OnCancel.
		d.(interface{ OnCancel(func()) }).OnCancel(func() { end(status.FromContextError(ctx.Err()).Err()) })
		return stack.ErrDetached
	case "silent":
		// Until the client leaves, sending nothing: the connection is
		// never taken over.
		<-ctx.Done()
		return status.FromContextError(ctx.Err()).Err()
	case "wait":
		// Until the client leaves or the deadline passes.
		if err := stream.Send(msg("waiting")); err != nil {
			return err
		}
		<-ctx.Done()
		return status.FromContextError(ctx.Err()).Err()
	}
	return status.Error(codes.InvalidArgument, "no script")
}

// detachedContexts receives the contexts of "detach" calls, for the tests
// to look into once the handler has returned.
var detachedContexts = make(chan context.Context, 16)

// statsRecorder records the stats events of Subscribe calls by type.
type statsRecorder struct {
	mu      sync.Mutex
	events  []string
	changed chan struct{} // a token when an event was recorded, for take
}

// changes is the channel HandleRPC leaves a token in.
func (r *statsRecorder) changes() chan struct{} {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.changed == nil {
		r.changed = make(chan struct{}, 1)
	}
	return r.changed
}

func (r *statsRecorder) TagRPC(ctx context.Context, _ *stats.RPCTagInfo) context.Context { return ctx }
func (r *statsRecorder) TagConn(ctx context.Context, _ *stats.ConnTagInfo) context.Context {
	return ctx
}
func (r *statsRecorder) HandleConn(context.Context, stats.ConnStats) {}
func (r *statsRecorder) HandleRPC(_ context.Context, s stats.RPCStats) {
	name := strings.TrimPrefix(fmt.Sprintf("%T", s), "*stats.")
	if e, ok := s.(*stats.End); ok {
		name += ":" + status.Code(e.Error).String()
	}
	r.mu.Lock()
	r.events = append(r.events, name)
	r.mu.Unlock()
	select {
	case r.changes() <- struct{}{}:
	default: // a token is there already
	}
}

// take returns the events recorded, once the call that began has ended
// (grpc-go tells its stats handlers of the end after the client may have
// read it).
func (r *statsRecorder) take() []string {
	timeout := time.After(testTimeout)
	for {
		r.mu.Lock()
		out := r.events
		ended := len(out) == 0 || strings.HasPrefix(out[len(out)-1], "End:")
		if ended {
			r.events = nil
			r.mu.Unlock()
			return out
		}
		r.mu.Unlock()
		select {
		case <-r.changes():
		case <-timeout:
			r.mu.Lock()
			defer r.mu.Unlock()
			out := r.events
			r.events = nil
			return out
		}
	}
}

// webServer is an HTTP port over scriptService: grpc-web's server-streaming
// calls in process (lean) or all through the improbable wrapper and the
// gRPC server.
type webServer struct {
	url   string
	srv   *httptest.Server
	stats *statsRecorder

	mu     *sync.Mutex
	calls  *[]string     // the stream interceptor's log
	logged chan struct{} // a token when the interceptor logged a call, for waitCalls
}

// logCall adds a call's end to the interceptor's log.
func (s *webServer) logCall(end string) {
	s.mu.Lock()
	*s.calls = append(*s.calls, end)
	s.mu.Unlock()
	select {
	case s.logged <- struct{}{}:
	default: // a token is there already
	}
}

const maxRecvTest = 1 << 10

func newWebServer(t *testing.T, lean, h2 bool) *webServer {
	t.Helper()
	rec := &statsRecorder{}
	ws := &webServer{stats: rec, mu: &sync.Mutex{}, calls: new([]string), logged: make(chan struct{}, 1)}
	ic := func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
		err := h(srv, ss)
		ws.logCall(fmt.Sprintf("%s server=%v client=%v %s", info.FullMethod, info.IsServerStream, info.IsClientStream, status.Code(err)))
		return err
	}
	g := grpc.NewServer(grpc.ChainStreamInterceptor(ic), grpc.StatsHandler(rec), grpc.MaxRecvMsgSize(maxRecvTest))
	notifyv1.RegisterNotificationServiceServer(g, scriptService{})
	local := gateway.NewInProcess(&fakeConn{}, maxRecvTest)
	notifyv1.RegisterNotificationServiceServer(local, scriptService{})
	if lean {
		local.ServeStreams(gateway.Streams{Interceptors: []grpc.StreamServerInterceptor{ic}, StatsHandlers: []stats.Handler{rec}})
	}
	h, err := gateway.New(context.Background(), gateway.Config{AllowedOrigins: []string{"https://app.example"}}, g, local, nil)
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewUnstartedServer(h)
	if h2 {
		ts.EnableHTTP2 = true
		ts.StartTLS()
	} else {
		ts.Start()
	}
	t.Cleanup(func() {
		ts.CloseClientConnections()
		ts.Close()
		g.Stop()
		if lean {
			shutdownLocal(t, local)
		}
	})
	ws.url, ws.srv = ts.URL, ts
	return ws
}

// shutdownLocal shuts local's in-process streams down, as a node does
// after its HTTP server: their poller ends with them.
func shutdownLocal(t *testing.T, local *gateway.InProcess) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	if err := local.Shutdown(ctx); err != nil {
		t.Errorf("shutting the in-process streams down: %v", err)
	}
}

// webAnswer is what a grpc-web call got back: status, headers (Date
// dropped, the exposed names as a sorted set), body.
type webAnswer struct {
	code   int
	proto  int
	header http.Header
	body   []byte
}

func frame(flag byte, b []byte) []byte {
	out := make([]byte, 5, 5+len(b))
	out[0] = flag
	binary.BigEndian.PutUint32(out[1:], uint32(len(b)))
	return append(out, b...)
}

func subscribeBody(t *testing.T, rooms ...string) []byte {
	t.Helper()
	b, err := proto.Marshal(&notifyv1.SubscribeRequest{Rooms: rooms})
	if err != nil {
		t.Fatal(err)
	}
	return frame(0, b)
}

func (s *webServer) call(t *testing.T, path string, header http.Header, body []byte) webAnswer {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.url+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header = header.Clone()
	req.Host = "notify.test" // the same :authority on both servers
	resp, err := s.srv.Client().Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("POST %s: reading: %v", path, err)
	}
	h := resp.Header.Clone()
	h.Del("Date")
	if v := h.Get("Access-Control-Expose-Headers"); v != "" {
		names := strings.Split(v, ", ")
		for i := range names {
			names[i] = strings.ToLower(names[i])
		}
		slices.Sort(names)
		h.Set("Access-Control-Expose-Headers", strings.Join(slices.Compact(names), ", "))
	}
	return webAnswer{code: resp.StatusCode, proto: resp.ProtoMajor, header: h, body: b}
}

func webHeader(kv ...string) http.Header {
	h := http.Header{"Content-Type": {"application/grpc-web+proto"}, "X-Grpc-Web": {"1"}, "Origin": {"https://app.example"}}
	for i := 0; i+1 < len(kv); i += 2 {
		if kv[i+1] == "" {
			h.Del(kv[i])
			continue
		}
		h.Set(kv[i], kv[i+1])
	}
	return h
}

const subscribePath = "/notify.v1.NotificationService/Subscribe"

// TestWebStreamsAnswerAsTheWrapper: every grpc-web Subscribe call gets
// the same answer (status, headers, frames, trailers), the same
// interceptor and stats events, whether it runs in process or through the
// improbable wrapper and the gRPC server, over HTTP/1.1 and HTTP/2; the
// requests the in-process path leaves to the wrapper included.
func TestWebStreamsAnswerAsTheWrapper(t *testing.T) {
	big := strings.Repeat("x", maxRecvTest)
	cases := []struct {
		name   string
		header http.Header
		body   func(t *testing.T) []byte
	}{
		{"ok", webHeader(), func(t *testing.T) []byte { return subscribeBody(t, "ok") }},
		{"send header", webHeader(), func(t *testing.T) []byte { return subscribeBody(t, "send-header") }},
		{"fail early", webHeader(), func(t *testing.T) []byte { return subscribeBody(t, "fail-early") }},
		{"fail late", webHeader(), func(t *testing.T) []byte { return subscribeBody(t, "fail-late") }},
		{"plain error", webHeader(), func(t *testing.T) []byte { return subscribeBody(t, "plain-error") }},
		{"no script", webHeader("Content-Type", "application/grpc-web"), func(t *testing.T) []byte { return subscribeBody(t) }},
		{"metadata", webHeader("Authorization", "Bearer t", "X-Custom-Bin", base64.StdEncoding.EncodeToString([]byte("bin")), "User-Agent", "ua/1", "Grpc-Timeout", "20S"),
			func(t *testing.T) []byte { return subscribeBody(t, "metadata") }},
		{"deadline passes", webHeader("Grpc-Timeout", "50m"), func(t *testing.T) []byte { return subscribeBody(t, "wait") }},
		{"unsendable", webHeader("X-Custom-Bin", base64.StdEncoding.EncodeToString([]byte{0, 255})), func(t *testing.T) []byte { return subscribeBody(t, "metadata") }},
		// Left to the wrapper.
		{"text format", webHeader("Content-Type", "application/grpc-web-text"),
			func(t *testing.T) []byte { return []byte(base64.StdEncoding.EncodeToString(subscribeBody(t, "ok"))) }},
		{"json subtype", webHeader("Content-Type", "application/grpc-web+json"), func(t *testing.T) []byte { return subscribeBody(t, "ok") }},
		{"compressed", webHeader("Grpc-Encoding", "gzip"), func(t *testing.T) []byte { return subscribeBody(t, "ok") }},
		{"bad timeout", webHeader("Grpc-Timeout", "1x"), func(t *testing.T) []byte { return subscribeBody(t, "ok") }},
		{"bad binary metadata", webHeader("X-Custom-Bin", "!!"), func(t *testing.T) []byte { return subscribeBody(t, "ok") }},
		{"empty body", webHeader(), func(t *testing.T) []byte { return nil }},
		{"two messages", webHeader(), func(t *testing.T) []byte { return append(subscribeBody(t, "ok"), subscribeBody(t, "ok")...) }},
		{"truncated", webHeader(), func(t *testing.T) []byte { b := subscribeBody(t, "ok"); return b[:len(b)-1] }},
		{"too large", webHeader(), func(t *testing.T) []byte { return subscribeBody(t, "ok", big) }},
		{"compressed flag", webHeader(), func(t *testing.T) []byte { b := subscribeBody(t, "ok"); b[0] = 1; return b }},
		{"undecodable", webHeader(), func(t *testing.T) []byte { return frame(0, []byte{0xff, 0xff}) }},
	}
	for _, h2 := range []bool{false, true} {
		t.Run(map[bool]string{false: "HTTP/1.1", true: "HTTP/2"}[h2], func(t *testing.T) {
			lean, wrapped := newWebServer(t, true, h2), newWebServer(t, false, h2)
			for _, c := range cases {
				t.Run(c.name, func(t *testing.T) {
					body := c.body(t)
					want := wrapped.call(t, subscribePath, c.header, body)
					// The stats' End comes after the interceptors returned.
					wantStats := wrapped.stats.take()
					wantCalls := wrapped.takeCalls(t)
					got := lean.call(t, subscribePath, c.header, body)
					gotStats := lean.stats.take()
					gotCalls := lean.takeCalls(t)
					if got.proto != map[bool]int{false: 1, true: 2}[h2] {
						t.Fatalf("answered over HTTP/%d", got.proto)
					}
					if got.code != want.code {
						t.Errorf("HTTP status %d, the wrapper's %d", got.code, want.code)
					}
					if !headersEqual(got.header, want.header) {
						t.Errorf("headers\n%v\nthe wrapper's\n%v", got.header, want.header)
					}
					if !bytes.Equal(got.body, want.body) {
						t.Errorf("body\n%q\nthe wrapper's\n%q", got.body, want.body)
					}
					if !slices.Equal(gotCalls, wantCalls) {
						t.Errorf("interceptor saw %v, with the wrapper %v", gotCalls, wantCalls)
					}
					if !slices.Equal(gotStats, wantStats) {
						t.Errorf("stats events %v, with the wrapper %v", gotStats, wantStats)
					}
				})
			}
		})
	}
}

func headersEqual(a, b http.Header) bool {
	if len(a) != len(b) {
		return false
	}
	for k, va := range a {
		vb, ok := b[k]
		if !ok || !slices.Equal(va, vb) {
			return false
		}
	}
	return true
}

// takeCalls returns the interceptor's log: a call's end is logged before
// its status is written, so before the client has read it.
func (s *webServer) takeCalls(*testing.T) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := *s.calls
	*s.calls = nil
	return out
}

// stuckService floods a stream whose client does not read from a sender
// goroutine, as the service's writer does, and ends the call once the
// sender is stuck, as the service does with a slow consumer; ended
// receives the sender's error.
type stuckService struct {
	notifyv1.UnimplementedNotificationServiceServer
	ended chan error
}

func (s stuckService) Subscribe(_ *notifyv1.SubscribeRequest, stream grpc.ServerStreamingServer[notifyv1.SubscribeResponse]) error {
	var mu sync.Mutex
	last := time.Now()
	go func() {
		big := &notifyv1.SubscribeResponse{Control: &notifyv1.SubscribeResponse_Connected{Connected: &notifyv1.Connected{ServerId: strings.Repeat("x", 16<<10)}}}
		for {
			if err := stream.Send(big); err != nil {
				s.ended <- err
				return
			}
			mu.Lock()
			last = time.Now()
			mu.Unlock()
		}
	}()
	for {
		// pacing: a watchdog that looks at the sender's progress now and
		// then; a send stuck for 200 ms is a slow consumer's.
		time.Sleep(20 * time.Millisecond)
		mu.Lock()
		stuck := time.Since(last) > 200*time.Millisecond
		mu.Unlock()
		if stuck {
			return status.Error(codes.ResourceExhausted, "slow consumer")
		}
	}
}

// TestWebStreamStuckSendIsCut: a call whose handler returns while a send
// is blocked on a client that stopped reading ends at once: the blocked
// send fails, and nothing writes after the HTTP handler returned (the
// leak check and the race detector would tell).
func TestWebStreamStuckSendIsCut(t *testing.T) {
	for _, h2 := range []bool{false, true} {
		t.Run(map[bool]string{false: "HTTP/1.1", true: "HTTP/2"}[h2], func(t *testing.T) {
			svc := stuckService{ended: make(chan error, 1)}
			g := grpc.NewServer()
			notifyv1.RegisterNotificationServiceServer(g, svc)
			local := gateway.NewInProcess(&fakeConn{}, maxRecvTest)
			notifyv1.RegisterNotificationServiceServer(local, svc)
			local.ServeStreams(gateway.Streams{})
			h, err := gateway.New(context.Background(), gateway.Config{}, g, local, nil)
			if err != nil {
				t.Fatal(err)
			}
			done := make(chan struct{}, 1)
			ts := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				h.ServeHTTP(w, r)
				done <- struct{}{}
			}))
			if h2 {
				ts.EnableHTTP2 = true
				ts.StartTLS()
			} else {
				ts.Start()
			}
			defer shutdownLocal(t, local)
			defer g.Stop()
			defer ts.Close()
			defer ts.CloseClientConnections()

			ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
			defer cancel()
			req, _ := http.NewRequestWithContext(ctx, http.MethodPost, ts.URL+subscribePath, bytes.NewReader(subscribeBody(t, "x")))
			req.Header = webHeader()
			resp, err := ts.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close() // never read
			select {
			case err := <-svc.ended:
				if status.Code(err) != codes.Unavailable {
					t.Errorf("the stuck send failed with %v, want Unavailable", err)
				}
			case <-ctx.Done():
				t.Fatal("the stuck send never failed")
			}
			select {
			case <-done:
			case <-ctx.Done():
				t.Fatal("the HTTP handler did not return")
			}
		})
	}
}

// leanServer is an HTTP/1.1 server over scriptService with grpc-web's
// streams in process; states records its connections' states.
func leanServer(t *testing.T) (*httptest.Server, *gateway.InProcess, *webServer, func() []http.ConnState) {
	t.Helper()
	return leanServerWith(t, false)
}

// leanServerWith is leanServer, its calls allowed to detach when detach
// is set: its interceptor logs a detached call's end when it comes.
func leanServerWith(t *testing.T, detach bool) (*httptest.Server, *gateway.InProcess, *webServer, func() []http.ConnState) {
	t.Helper()
	return startLean(t, detach, false)
}

// startLean is leanServerWith, serving HTTP/1.1 over TLS when withTLS is
// set: its URL is then https, which openScript dials with TLS.
func startLean(t *testing.T, detach, withTLS bool) (*httptest.Server, *gateway.InProcess, *webServer, func() []http.ConnState) {
	t.Helper()
	ws := &webServer{stats: &statsRecorder{}, mu: &sync.Mutex{}, calls: new([]string), logged: make(chan struct{}, 1)}
	ic := func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
		err := h(srv, ss)
		if errors.Is(err, stack.ErrDetached) {
			n := grpc.ServerTransportStreamFromContext(ss.Context()).(interface{ OnEnd(func(error)) bool })
			if n.OnEnd(func(err error) { ws.logCall(status.Code(err).String()) }) {
				return err
			}
		}
		ws.logCall(status.Code(err).String())
		return err
	}
	g := grpc.NewServer()
	notifyv1.RegisterNotificationServiceServer(g, scriptService{})
	local := gateway.NewInProcess(&fakeConn{}, maxRecvTest)
	notifyv1.RegisterNotificationServiceServer(local, scriptService{})
	local.ServeStreams(gateway.Streams{Interceptors: []grpc.StreamServerInterceptor{ic}, Detach: detach})
	h, err := gateway.New(context.Background(), gateway.Config{}, g, local, nil)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var states []http.ConnState
	ts := httptest.NewUnstartedServer(h)
	ts.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		mu.Lock()
		states = append(states, s)
		mu.Unlock()
	}
	if withTLS {
		ts.StartTLS()
	} else {
		ts.Start()
	}
	t.Cleanup(func() {
		ts.CloseClientConnections()
		ts.Close()
		g.Stop()
		shutdownLocal(t, local)
	})
	ws.url, ws.srv = ts.URL, ts
	return ts, local, ws, func() []http.ConnState {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(states)
	}
}

// waitCalls waits until the interceptor logged n call ends.
func (s *webServer) waitCalls(t *testing.T, n int) []string {
	t.Helper()
	timeout := time.After(testTimeout)
	for {
		s.mu.Lock()
		got := slices.Clone(*s.calls)
		s.mu.Unlock()
		if len(got) >= n {
			return got
		}
		select {
		case <-s.logged:
		case <-timeout:
			t.Fatalf("the interceptor logged %v, want %d call ends", got, n)
		}
	}
}

// openWait opens a "wait" stream over a raw connection, reads up to its
// first message, and returns the connection.
func openWait(t *testing.T, url string, extra string) net.Conn {
	t.Helper()
	return openScript(t, url, "wait", extra)
}

// openScript is openWait for a script that sends "waiting" and waits.
func openScript(t *testing.T, url, script, extra string) net.Conn {
	t.Helper()
	var c net.Conn
	var err error
	if addr, ok := strings.CutPrefix(url, "https://"); ok {
		// The test's own server: HTTP/1.1 over TLS.
		c, err = tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"http/1.1"}})
	} else {
		c, err = net.Dial("tcp", strings.TrimPrefix(url, "http://"))
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	body := subscribeBody(t, script)
	fmt.Fprintf(c, "POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/grpc-web+proto\r\nContent-Length: %d\r\n\r\n%s%s", subscribePath, len(body), body, extra)
	_ = c.SetReadDeadline(time.Now().Add(testTimeout))
	buf := make([]byte, 4096)
	var got []byte
	for !bytes.Contains(got, []byte("waiting")) {
		n, err := c.Read(buf)
		if err != nil {
			t.Fatalf("reading the stream's first message: %v (got %q)", err, got)
		}
		got = append(got, buf[:n]...)
	}
	if !bytes.Contains(got, []byte("Transfer-Encoding: chunked")) || !bytes.Contains(got, []byte("Connection: close")) {
		t.Fatalf("response head %q: want chunked, Connection: close", got)
	}
	return c
}
