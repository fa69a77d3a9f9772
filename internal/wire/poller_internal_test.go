//go:build linux

package wire

import (
	"bytes"
	"context"
	"crypto/x509"
	"net"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/encoding"
	protocodec "google.golang.org/grpc/encoding/proto"
	testpb "google.golang.org/grpc/interop/grpc_testing"

	"github.com/maxloyalty/notify/internal/testenv"
)

// holdService's streams send one response and wait for their end; its
// unary calls answer at once.
type holdService struct {
	testpb.UnimplementedTestServiceServer
	ended chan struct{}
}

func (s holdService) StreamingOutputCall(_ *testpb.StreamingOutputCallRequest, stream grpc.ServerStreamingServer[testpb.StreamingOutputCallResponse]) error {
	if err := stream.Send(&testpb.StreamingOutputCallResponse{}); err != nil {
		return err
	}
	<-stream.Context().Done()
	s.ended <- struct{}{}
	return stream.Context().Err()
}

func (holdService) UnaryCall(context.Context, *testpb.SimpleRequest) (*testpb.SimpleResponse, error) {
	return &testpb.SimpleResponse{}, nil
}

// readers counts the goroutines waiting for a connection's bytes.
func readers() int {
	buf := make([]byte, 4<<20)
	n := 0
	for _, g := range strings.Split(string(buf[:runtime.Stack(buf, true)]), "\n\n") {
		if strings.Contains(g, "wire.(*lazyReader).fill") {
			n++
		}
	}
	return n
}

// startServer serves svc on a loopback port with cfg (and the proto
// codec) until the test ends, and returns the server and its address.
func startServer(t *testing.T, cfg Config, svc testpb.TestServiceServer) (*Server, string) {
	t.Helper()
	cfg.Codec = encoding.GetCodecV2(protocodec.Name)
	srv := NewServer(cfg)
	testpb.RegisterTestServiceServer(srv, svc)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(l) }()
	t.Cleanup(func() {
		srv.Stop()
		<-served
	})
	return srv, l.Addr().String()
}

// rawClient opens an HTTP/2 connection to addr by hand (preface and
// empty SETTINGS), closed when the test ends.
func rawClient(t *testing.T, addr string) *http2.Framer {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	_ = nc.SetDeadline(time.Now().Add(20 * time.Second))
	if _, err := nc.Write([]byte(http2.ClientPreface)); err != nil {
		t.Fatal(err)
	}
	fr := http2.NewFramer(nc, nc)
	if err := fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	return fr
}

func (s *Server) openConns() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}

// TestParkedConnections: connections whose streams wait hold no reader
// goroutine, over plain TCP and over TLS; the poller resumes each when its
// client sends (a call, a stream's cancel, the connection's close), and
// Stop ends those still parked.
func TestParkedConnections(t *testing.T) {
	t.Run("plain", func(t *testing.T) { testParkedConnections(t, false) })
	t.Run("tls", func(t *testing.T) { testParkedConnections(t, true) })
}

func testParkedConnections(t *testing.T, useTLS bool) {
	srv := NewServer(Config{Codec: encoding.GetCodecV2(protocodec.Name)})
	svc := holdService{ended: make(chan struct{}, 100)}
	testpb.RegisterTestServiceServer(srv, svc)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	creds := insecure.NewCredentials()
	if useTLS {
		var pool *x509.CertPool
		l, pool = TLSListener(t, l)
		creds = credentials.NewClientTLSFromCert(pool, "127.0.0.1")
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(l) }()
	stopped := false
	defer func() {
		if !stopped {
			srv.Stop()
			<-served
		}
	}()

	const conns = 20
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var (
		clients []*grpc.ClientConn
		cancels []context.CancelFunc
	)
	for range conns {
		cc, err := grpc.NewClient(l.Addr().String(), grpc.WithTransportCredentials(creds))
		if err != nil {
			t.Fatal(err)
		}
		defer cc.Close()
		sctx, scancel := context.WithCancel(ctx)
		s, err := testpb.NewTestServiceClient(cc).StreamingOutputCall(sctx, &testpb.StreamingOutputCallRequest{})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.Recv(); err != nil {
			t.Fatal(err)
		}
		clients, cancels = append(clients, cc), append(cancels, scancel)
	}
	// When a reader parks is the kernel's and the runtimes' business:
	// there is no event to wait on.
	testenv.Eventually(t, 10*time.Second, "every idle connection parked", func() bool {
		return srv.poll.Parked() == conns
	})
	// (Readers of an earlier test's connections may still be ending.)
	testenv.Eventually(t, 5*time.Second, "no goroutine waiting for the parked connections' bytes", func() bool {
		return readers() == 0
	})
	// Nor a framer: it went back to the pool.
	srv.mu.Lock()
	for c := range srv.conns {
		if c.pe.Parked() && c.fr != nil {
			t.Error("a parked connection holds a framer")
		}
	}
	srv.mu.Unlock()

	// A call on a parked connection: its reader is resumed.
	for i, cc := range clients[:5] {
		if _, err := testpb.NewTestServiceClient(cc).UnaryCall(ctx, &testpb.SimpleRequest{}); err != nil {
			t.Fatalf("a call on parked connection %d: %v", i, err)
		}
	}
	// A cancelled stream: its RST_STREAM reaches the handler.
	for _, c := range cancels[5:10] {
		c()
	}
	for range 5 {
		select {
		case <-svc.ended:
		case <-ctx.Done():
			t.Fatal("a cancelled stream on a parked connection did not end")
		}
	}
	// A closed client connection: the server ends its side.
	for _, cc := range clients[10:15] {
		cc.Close()
	}
	testenv.Eventually(t, 10*time.Second, "the closed connections to end on the server", func() bool {
		return srv.openConns() == conns-5
	})
	ids := srv.poll.Len()
	if ids != conns-5 {
		t.Errorf("the poller holds %d connections' ids, want %d: an ended connection's id is given back", ids, conns-5)
	}

	// Stop ends the connections still parked, and the poller.
	testenv.Eventually(t, 10*time.Second, "the idle connections to park again", func() bool {
		return srv.poll.Parked() >= conns-10
	})
	srv.Stop()
	stopped = true
	if err := <-served; err != ErrServerStopped {
		t.Errorf("Serve: %v", err)
	}
	testenv.Eventually(t, 10*time.Second, "every connection to end after Stop", func() bool {
		return srv.openConns() == 0
	})
	for range conns - 10 {
		select {
		case <-svc.ended:
		case <-ctx.Done():
			t.Fatal("a stream on a parked connection did not end after Stop")
		}
	}
}

// TestFirstHeaderBlockIndexesNothing: a connection's first response
// headers leave the header encoder's table empty (a connection with one
// long stream keeps none); from the second block on it indexes, and the
// client decodes every block.
func TestFirstHeaderBlockIndexesNothing(t *testing.T) {
	svc := holdService{ended: make(chan struct{}, 10)}
	srv, addr := startServer(t, Config{}, svc)
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// tableSize is the connection's encoder's table size, -1: it has no
	// encoder.
	tableSize := func() int {
		srv.mu.Lock()
		defer srv.mu.Unlock()
		for c := range srv.conns {
			c.mu.Lock()
			defer c.mu.Unlock()
			if c.enc == nil {
				return -1
			}
			return int(c.enc.enc.MaxDynamicTableSize())
		}
		t.Fatal("no connection")
		return 0
	}

	s, err := testpb.NewTestServiceClient(cc).StreamingOutputCall(ctx, &testpb.StreamingOutputCallRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Recv(); err != nil {
		t.Fatal(err)
	}
	if n := tableSize(); n != -1 {
		t.Errorf("after the first header block the connection has an encoder (table %d bytes), want none", n)
	}
	for i := range 3 {
		if _, err := testpb.NewTestServiceClient(cc).UnaryCall(ctx, &testpb.SimpleRequest{}); err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
	}
	if n := tableSize(); n != headerTableSize {
		t.Errorf("after more header blocks the encoder's table is %d bytes, want %d", n, headerTableSize)
	}
}

// TestOneStreamEmptiesHeaderTable: a connection that carries one stream
// asks its client to empty its HPACK table and, once acknowledged, keeps
// none; calls made on it later still decode. A connection that carries
// more streams keeps its table.
func TestOneStreamEmptiesHeaderTable(t *testing.T) {
	svc := holdService{ended: make(chan struct{}, 10)}
	srv, addr := startServer(t, Config{}, svc)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	dial := func() (*grpc.ClientConn, testpb.TestServiceClient) {
		cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cc.Close() })
		return cc, testpb.NewTestServiceClient(cc)
	}
	// shrunk reports, for each connection, whether its table was emptied.
	shrunk := func() (n, of int) {
		srv.mu.Lock()
		defer srv.mu.Unlock()
		for c := range srv.conns {
			of++
			if c.noTable.Load() {
				n++
			}
		}
		return n, of
	}
	open := func(c testpb.TestServiceClient) {
		s, err := c.StreamingOutputCall(ctx, &testpb.StreamingOutputCallRequest{})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.Recv(); err != nil {
			t.Fatal(err)
		}
	}

	_, one := dial()
	open(one)
	testenv.Eventually(t, 10*time.Second, "the one-stream connection's table emptied", func() bool {
		n, of := shrunk()
		return n == 1 && of == 1
	})
	// Later calls carry their headers whole, and decode.
	for i := range 3 {
		if _, err := one.UnaryCall(ctx, &testpb.SimpleRequest{}); err != nil {
			t.Fatalf("call %d after the table was emptied: %v", i, err)
		}
	}
	open(one)

	_, two := dial()
	if _, err := two.UnaryCall(ctx, &testpb.SimpleRequest{}); err != nil {
		t.Fatal(err)
	}
	open(two)
	open(two)
	testenv.Eventually(t, 10*time.Second, "both connections parked", func() bool {
		return srv.poll.Parked() == 2
	})
	if n, of := shrunk(); n != 1 || of != 2 {
		t.Errorf("%d of %d connections emptied their table, want only the one-stream connection's", n, of)
	}
}

// gateService's unary calls wait until released.
type gateService struct {
	testpb.UnimplementedTestServiceServer
	started, release chan struct{}
}

func (s gateService) UnaryCall(ctx context.Context, _ *testpb.SimpleRequest) (*testpb.SimpleResponse, error) {
	s.started <- struct{}{}
	select {
	case <-s.release:
	case <-ctx.Done():
	}
	return &testpb.SimpleResponse{}, nil
}

// TestParkedAfterUnary: a connection whose reader found nothing more to
// read while a unary call ran is parked once the call has ended, though
// its client sends nothing after the response (as a browser's or a
// phone's connection may not, for hours).
func TestParkedAfterUnary(t *testing.T) {
	svc := gateService{started: make(chan struct{}, 1), release: make(chan struct{})}
	srv, addr := startServer(t, Config{}, svc)

	// A client of its own, which sends nothing it is not asked to: no
	// pings, no window updates.
	fr := rawClient(t, addr)
	// next reads the server's frames up to one that match accepts.
	next := func(what string, match func(http2.Frame) bool) {
		t.Helper()
		for range 100 {
			f, err := fr.ReadFrame()
			if err != nil {
				t.Fatalf("waiting for %s: %v", what, err)
			}
			if match(f) {
				return
			}
		}
		t.Fatalf("no %s in 100 frames", what)
	}
	next("the server's SETTINGS", func(f http2.Frame) bool {
		s, ok := f.(*http2.SettingsFrame)
		return ok && !s.IsAck()
	})
	if err := fr.WriteSettingsAck(); err != nil {
		t.Fatal(err)
	}
	var block bytes.Buffer
	enc := hpack.NewEncoder(&block)
	for _, kv := range [][2]string{{":method", "POST"}, {":scheme", "http"}, {":path", "/grpc.testing.TestService/UnaryCall"},
		{":authority", "x"}, {"content-type", "application/grpc"}, {"te", "trailers"}} {
		_ = enc.WriteField(hpack.HeaderField{Name: kv[0], Value: kv[1]})
	}
	if err := fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: block.Bytes(), EndHeaders: true}); err != nil {
		t.Fatal(err)
	}
	if err := fr.WriteData(1, true, []byte{0, 0, 0, 0, 0}); err != nil {
		t.Fatal(err)
	}
	<-svc.started
	// The reader has read the request and waits, the call running.
	testenv.Eventually(t, 10*time.Second, "the reader waiting while the call runs", func() bool {
		return readers() == 1 && srv.poll.Parked() == 0
	})
	close(svc.release)
	next("the response's trailers", func(f http2.Frame) bool {
		h, ok := f.(*http2.HeadersFrame)
		return ok && h.StreamID == 1 && h.StreamEnded()
	})
	testenv.Eventually(t, 10*time.Second, "the connection parked after the call", func() bool {
		return srv.poll.Parked() == 1 && readers() == 0
	})
}

// TestPreflightDoesNotCount: a browser's connection carries a CORS
// preflight before its grpc-web stream; the preflight counts neither as a
// stream nor as a header block, so that the connection is still asked to
// empty its HPACK table once its one stream is idle.
func TestPreflightDoesNotCount(t *testing.T) {
	svc := holdService{ended: make(chan struct{}, 10)}
	srv, addr := startServer(t, Config{WebOrigin: func(string, string) bool { return true }}, svc)
	fr := rawClient(t, addr)
	// The client's encoder applies the server's table size at once: it
	// indexes nothing.
	var block bytes.Buffer
	enc := hpack.NewEncoder(&block)
	enc.SetMaxDynamicTableSizeLimit(0)
	headers := func(id uint32, end bool, kv ...string) {
		block.Reset()
		for i := 0; i+1 < len(kv); i += 2 {
			_ = enc.WriteField(hpack.HeaderField{Name: kv[i], Value: kv[i+1]})
		}
		if err := fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: block.Bytes(), EndHeaders: true, EndStream: end}); err != nil {
			t.Fatal(err)
		}
	}
	const path = "/grpc.testing.TestService/StreamingOutputCall"
	headers(1, true, ":method", "OPTIONS", ":scheme", "https", ":path", path, ":authority", "x",
		"origin", "https://app.example", "access-control-request-method", "POST")
	headers(3, false, ":method", "POST", ":scheme", "https", ":path", path, ":authority", "x",
		"content-type", "application/grpc-web+proto", "origin", "https://app.example")
	if err := fr.WriteData(3, true, []byte{0, 0, 0, 0, 0}); err != nil {
		t.Fatal(err)
	}
	// The client's side: settings acknowledged, the preflight's answer and
	// the stream's first message read, and the server's ask to empty the
	// table (a SETTINGS_HEADER_TABLE_SIZE of 0) seen.
	var preflight, message, shrink bool
	for !preflight || !message || !shrink {
		f, err := fr.ReadFrame()
		if err != nil {
			t.Fatalf("preflight answered %v, message %v, table size 0 asked %v: %v", preflight, message, shrink, err)
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if f.IsAck() {
				continue
			}
			if v, ok := f.Value(http2.SettingHeaderTableSize); ok && v == 0 {
				shrink = true
			}
			if err := fr.WriteSettingsAck(); err != nil {
				t.Fatal(err)
			}
		case *http2.HeadersFrame:
			preflight = preflight || f.StreamID == 1 && f.StreamEnded()
		case *http2.DataFrame:
			message = message || f.StreamID == 3
		}
	}
	testenv.Eventually(t, 10*time.Second, "the connection's table emptied", func() bool {
		srv.mu.Lock()
		defer srv.mu.Unlock()
		for c := range srv.conns {
			return c.noTable.Load()
		}
		return false
	})
}
