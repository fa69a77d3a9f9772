package wire_test

// HTTP/2 and gRPC protocol tests of the wire server, driven by a raw client
// (http2.Framer and hpack) over loopback sockets: settings, flow control,
// stream states, malformed and non-gRPC requests, the stream quota, floods
// of control frames, responses and headers, compression, stats handlers,
// connection age and keepalive. Every read has a deadline, every loop a
// bound in frames or bytes.

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
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
	"google.golang.org/grpc/stats"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/maxloyalty/notify/internal/testenv"
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

// h2Stream is what a raw client received on one stream.
type h2Stream struct {
	headers  []hpack.HeaderField // the first HEADERS
	trailers []hpack.HeaderField // the second, if any
	data     []byte              // every DATA payload, in order
	credit   int64               // the stream's WINDOW_UPDATE increments
	ended    bool                // END_STREAM received
	reset    bool                // RST_STREAM received
	code     http2.ErrCode       // its code
}

func (s *h2Stream) done() bool { return s.ended || s.reset }

// field returns a trailer field, or a header field.
func (s *h2Stream) field(name string) string {
	for _, fs := range [][]hpack.HeaderField{s.trailers, s.headers} {
		for _, f := range fs {
			if f.Name == name {
				return f.Value
			}
		}
	}
	return ""
}

func (s *h2Stream) header(name string) string {
	for _, f := range s.headers {
		if f.Name == name {
			return f.Value
		}
	}
	return ""
}

// noStatus is grpcCode's answer for a stream without grpc-status.
const noStatus = codes.Code(999)

// grpcCode is the call's grpc-status, or noStatus.
func (s *h2Stream) grpcCode() codes.Code {
	v := s.field("grpc-status")
	n, err := strconv.Atoi(v)
	if err != nil {
		return noStatus
	}
	return codes.Code(n)
}

// messages splits the response into its gRPC messages.
func (s *h2Stream) messages() (flags []byte, msgs [][]byte, err error) {
	b := s.data
	for len(b) > 0 {
		if len(b) < 5 {
			return nil, nil, fmt.Errorf("%d bytes left, not a message prefix", len(b))
		}
		n := int(binary.BigEndian.Uint32(b[1:5]))
		if len(b)-5 < n {
			return nil, nil, fmt.Errorf("message of %d bytes, %d left", n, len(b)-5)
		}
		flags = append(flags, b[0])
		msgs = append(msgs, b[5:5+n])
		b = b[5+n:]
	}
	return flags, msgs, nil
}

func (s *h2Stream) String() string {
	return fmt.Sprintf("status %q grpc-status %q %q, %d data bytes, ended %v, reset %v %v",
		s.header(":status"), s.field("grpc-status"), s.field("grpc-message"), len(s.data), s.ended, s.reset, s.code)
}

// rframe is a copy of a frame read by the raw client (the framer's frames
// are only valid until the next read).
type rframe struct {
	typ      http2.FrameType
	stream   uint32
	end      bool // END_STREAM
	ack      bool
	code     http2.ErrCode // RST_STREAM, GOAWAY
	last     uint32        // GOAWAY's last stream id
	data     []byte        // DATA, PING, GOAWAY debug data
	fields   []hpack.HeaderField
	settings []http2.Setting
	incr     uint32 // WINDOW_UPDATE
}

func (f rframe) String() string {
	switch f.typ {
	case http2.FrameRSTStream:
		return fmt.Sprintf("RST_STREAM stream=%d %v", f.stream, f.code)
	case http2.FrameGoAway:
		return fmt.Sprintf("GOAWAY last=%d %v %q", f.last, f.code, f.data)
	case http2.FrameWindowUpdate:
		return fmt.Sprintf("WINDOW_UPDATE stream=%d +%d", f.stream, f.incr)
	}
	return fmt.Sprintf("%v stream=%d end=%v ack=%v len=%d", f.typ, f.stream, f.end, f.ack, len(f.data))
}

// h2Client is a raw HTTP/2 client. It keeps what each stream received and
// the windows the server gave it; only the test's goroutine uses it,
// except where a test writes from another goroutine with the connection
// alone (never the framer's writer and hpack state).
type h2Client struct {
	t    testing.TB
	nc   *net.TCPConn
	fr   *http2.Framer
	enc  *hpack.Encoder
	hbuf bytes.Buffer
	id   uint32 // last stream id used

	streams  map[uint32]*h2Stream
	sent     map[uint32]int64 // DATA bytes sent per stream
	settings map[http2.SettingID]uint32
	peerIWS  int64 // the server's initial stream window
	connWin  int64 // what the client may still send on the connection
	goaway   *rframe
	pings    uint64
}

// dialH2 connects and writes the preface and the client's settings.
// sockBuf, when positive, is the kernel buffer size of the client's socket.
func dialH2(t testing.TB, addr string, sockBuf int, settings ...http2.Setting) *h2Client {
	t.Helper()
	d := net.Dialer{Control: sockBufControl(sockBuf), Timeout: 10 * time.Second}
	nc, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	_ = nc.SetDeadline(time.Now().Add(20 * time.Second))
	if _, err := nc.Write([]byte(http2.ClientPreface)); err != nil {
		t.Fatal(err)
	}
	c := &h2Client{
		t:        t,
		nc:       nc.(*net.TCPConn),
		fr:       http2.NewFramer(nc, nc),
		streams:  make(map[uint32]*h2Stream),
		sent:     make(map[uint32]int64),
		settings: make(map[http2.SettingID]uint32),
		peerIWS:  65535,
		connWin:  65535,
	}
	c.fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	c.fr.MaxHeaderListSize = 16 << 20
	c.enc = hpack.NewEncoder(&c.hbuf)
	if err := c.fr.WriteSettings(settings...); err != nil {
		t.Fatal(err)
	}
	return c
}

// newID returns the next client stream id.
func (c *h2Client) newID() uint32 {
	if c.id == 0 {
		c.id = 1
	} else {
		c.id += 2
	}
	return c.id
}

func (c *h2Client) stream(id uint32) *h2Stream {
	s := c.streams[id]
	if s == nil {
		s = &h2Stream{}
		c.streams[id] = s
	}
	return s
}

// encode encodes header fields given as name, value pairs.
func (c *h2Client) encode(kv ...string) []byte {
	c.hbuf.Reset()
	for i := 0; i+1 < len(kv); i += 2 {
		_ = c.enc.WriteField(hpack.HeaderField{Name: kv[i], Value: kv[i+1]})
	}
	return bytes.Clone(c.hbuf.Bytes())
}

// writeBlock writes a header block as HEADERS and CONTINUATION frames.
func (c *h2Client) writeBlock(id uint32, end bool, block []byte, prio http2.PriorityParam) {
	c.t.Helper()
	first := block[:min(len(block), 16384)]
	rest := block[len(first):]
	err := c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: first, EndStream: end, EndHeaders: len(rest) == 0, Priority: prio})
	for err == nil && len(rest) > 0 {
		frag := rest[:min(len(rest), 16384)]
		rest = rest[len(frag):]
		err = c.fr.WriteContinuation(id, len(rest) == 0, frag)
	}
	if err != nil {
		c.t.Fatalf("writing headers of stream %d: %v", id, err)
	}
}

// headers writes a HEADERS frame (and CONTINUATIONs) of name, value pairs.
func (c *h2Client) headers(id uint32, end bool, kv ...string) {
	c.t.Helper()
	c.writeBlock(id, end, c.encode(kv...), http2.PriorityParam{})
}

// data writes b as DATA frames, ignoring flow control.
func (c *h2Client) data(id uint32, end bool, b []byte) {
	c.t.Helper()
	for {
		n := min(len(b), 16384)
		last := n == len(b)
		if err := c.fr.WriteData(id, end && last, b[:n]); err != nil {
			c.t.Fatalf("writing data of stream %d: %v", id, err)
		}
		c.connWin -= int64(n)
		c.sent[id] += int64(n)
		b = b[n:]
		if last {
			return
		}
	}
}

// streamWin is what the client may still send on stream id.
func (c *h2Client) streamWin(id uint32) int64 {
	return c.peerIWS + c.stream(id).credit - c.sent[id]
}

// sendFlow writes b as DATA frames within the windows the server gave,
// synchronising with a ping when they are used up; it fails when a ping
// brought no window.
func (c *h2Client) sendFlow(id uint32, end bool, b []byte) error {
	c.t.Helper()
	for pinged := false; ; {
		n := min(int64(len(b)), 16384, c.connWin, c.streamWin(id))
		if n <= 0 && len(b) > 0 {
			if pinged {
				return fmt.Errorf("stream %d: no window to send %d more bytes (connection window %d, stream window %d)", id, len(b), c.connWin, c.streamWin(id))
			}
			// Everything the server queued before its ping
			// acknowledgement, WINDOW_UPDATEs included, is read by then.
			c.ping()
			pinged = true
			continue
		}
		pinged = false
		last := int(n) == len(b)
		if err := c.fr.WriteData(id, end && last, b[:n]); err != nil {
			return fmt.Errorf("writing data of stream %d: %v", id, err)
		}
		c.connWin -= n
		c.sent[id] += n
		b = b[n:]
		if last {
			return nil
		}
	}
}

// next reads one frame and records it.
func (c *h2Client) next() (rframe, error) {
	f, err := c.fr.ReadFrame()
	if err != nil {
		return rframe{}, err
	}
	h := f.Header()
	r := rframe{typ: h.Type, stream: h.StreamID}
	switch f := f.(type) {
	case *http2.MetaHeadersFrame:
		r.end = f.StreamEnded()
		r.fields = append([]hpack.HeaderField(nil), f.Fields...)
		s := c.stream(r.stream)
		if s.headers == nil {
			s.headers = r.fields
		} else {
			s.trailers = r.fields
		}
		s.ended = s.ended || r.end
	case *http2.DataFrame:
		r.end = f.StreamEnded()
		r.data = bytes.Clone(f.Data())
		s := c.stream(r.stream)
		s.data = append(s.data, r.data...)
		s.ended = s.ended || r.end
	case *http2.RSTStreamFrame:
		r.code = f.ErrCode
		s := c.stream(r.stream)
		if !s.done() {
			s.reset, s.code = true, f.ErrCode
		}
	case *http2.SettingsFrame:
		r.ack = f.IsAck()
		_ = f.ForeachSetting(func(s http2.Setting) error {
			r.settings = append(r.settings, s)
			c.settings[s.ID] = s.Val
			if s.ID == http2.SettingInitialWindowSize {
				c.peerIWS = int64(s.Val)
			}
			return nil
		})
	case *http2.WindowUpdateFrame:
		r.incr = f.Increment
		if r.stream == 0 {
			c.connWin += int64(f.Increment)
		} else {
			c.stream(r.stream).credit += int64(f.Increment)
		}
	case *http2.PingFrame:
		r.ack = f.IsAck()
		r.data = f.Data[:]
	case *http2.GoAwayFrame:
		r.code, r.last, r.data = f.ErrCode, f.LastStreamID, bytes.Clone(f.DebugData())
		c.goaway = &r
	}
	return r, nil
}

// ping sends a PING and reads until its acknowledgement, returning the
// frames read before it.
func (c *h2Client) ping() []rframe {
	c.t.Helper()
	c.pings++
	var data [8]byte
	binary.BigEndian.PutUint64(data[:], c.pings)
	if err := c.fr.WritePing(false, data); err != nil {
		c.t.Fatalf("ping: %v", err)
	}
	var seen []rframe
	for i := 0; i < 100_000; i++ {
		f, err := c.next()
		if err != nil {
			c.t.Fatalf("waiting for a ping acknowledgement: %v (read %v)", err, seen)
		}
		if f.typ == http2.FramePing && f.ack && bytes.Equal(f.data, data[:]) {
			return seen
		}
		seen = append(seen, f)
	}
	c.t.Fatal("no ping acknowledgement in 100000 frames")
	return nil
}

// await reads until stream id has ended or been reset.
func (c *h2Client) await(id uint32) *h2Stream {
	c.t.Helper()
	for i := 0; i < 1_000_000 && !c.stream(id).done(); i++ {
		if _, err := c.next(); err != nil {
			c.t.Fatalf("stream %d: connection ended: %v (GOAWAY %v; so far %v)", id, err, c.goaway, c.stream(id))
		}
	}
	s := c.stream(id)
	if !s.done() {
		c.t.Fatalf("stream %d did not end", id)
	}
	return s
}

// expectRST reads until stream id ends and requires it reset with code.
func (c *h2Client) expectRST(id uint32, code http2.ErrCode) {
	c.t.Helper()
	if s := c.await(id); !s.reset || s.code != code {
		c.t.Fatalf("stream %d: %v, want RST_STREAM %v", id, s, code)
	}
}

// expectCode reads until stream id ends and requires its grpc-status.
func (c *h2Client) expectCode(id uint32, code codes.Code) *h2Stream {
	c.t.Helper()
	s := c.await(id)
	if s.reset || s.grpcCode() != code {
		c.t.Fatalf("stream %d: %v, want grpc-status %d (%v)", id, s, code, code)
	}
	return s
}

// expectGoAway reads until a GOAWAY, requires its code (one of codes),
// then requires the connection to end cleanly: the GOAWAY was not lost to
// a TCP reset.
func (c *h2Client) expectGoAway(codes ...http2.ErrCode) rframe {
	c.t.Helper()
	var g *rframe
	for i := 0; i < 1_000_000 && g == nil; i++ {
		f, err := c.next()
		if err != nil {
			c.t.Fatalf("connection ended without GOAWAY: %v", err)
		}
		if f.typ == http2.FrameGoAway {
			g = &f
		}
	}
	if g == nil {
		c.t.Fatal("no GOAWAY")
	}
	if !slices.Contains(codes, g.code) {
		c.t.Fatalf("%v, want GOAWAY %v", g, codes)
	}
	c.expectEnd()
	return *g
}

// expectEnd reads until the server closes the connection, which must end
// with EOF, not a reset.
func (c *h2Client) expectEnd() {
	c.t.Helper()
	for i := 0; i < 1_000_000; i++ {
		f, err := c.next()
		if err == nil {
			if f.typ == http2.FrameGoAway && c.goaway != nil && f.code != c.goaway.code {
				c.t.Errorf("second GOAWAY %v", f)
			}
			continue
		}
		if !errors.Is(err, io.EOF) {
			c.t.Fatalf("connection ended with %v, want EOF (the server closed it cleanly)", err)
		}
		return
	}
	c.t.Fatal("connection did not end")
}

const testMethod = "/grpc.testing.TestService/"

// callFields are a gRPC request's header fields, then extra pairs.
func callFields(method string, extra ...string) []string {
	return append([]string{
		":method", "POST", ":scheme", "http", ":path", testMethod + method, ":authority", "localhost",
		"content-type", "application/grpc", "te", "trailers",
	}, extra...)
}

// without returns fields without the pairs named name.
func without(fields []string, name string) []string {
	var out []string
	for i := 0; i+1 < len(fields); i += 2 {
		if fields[i] != name {
			out = append(out, fields[i], fields[i+1])
		}
	}
	return out
}

// with returns fields with name's value replaced.
func with(fields []string, name, value string) []string {
	out := append([]string(nil), fields...)
	for i := 0; i+1 < len(out); i += 2 {
		if out[i] == name {
			out[i+1] = value
		}
	}
	return out
}

// frameMsg is m as a gRPC message: flag 0, length, bytes.
func frameMsg(m proto.Message) []byte {
	b, err := proto.Marshal(m)
	if err != nil {
		panic(err)
	}
	return append(binary.BigEndian.AppendUint32([]byte{0}, uint32(len(b))), b...)
}

// unary starts a unary call with the request in one go.
func (c *h2Client) unary(req *testpb.SimpleRequest, extra ...string) uint32 {
	c.t.Helper()
	id := c.newID()
	c.headers(id, false, callFields("UnaryCall", extra...)...)
	c.data(id, true, frameMsg(req))
	return id
}

// goodCall makes a unary call and requires it to succeed: the connection
// still serves.
func (c *h2Client) goodCall() {
	c.t.Helper()
	id := c.unary(&testpb.SimpleRequest{ResponseSize: 3})
	s := c.expectCode(id, codes.OK)
	_, msgs, err := s.messages()
	if err != nil || len(msgs) != 1 {
		c.t.Fatalf("good call: %v, %d messages", err, len(msgs))
	}
	var resp testpb.SimpleResponse
	if err := proto.Unmarshal(msgs[0], &resp); err != nil || len(resp.GetPayload().GetBody()) != 3 {
		c.t.Fatalf("good call: response %v, %v", &resp, err)
	}
}

// rawFrames returns the bytes of the frames fn writes.
func rawFrames(fn func(fr *http2.Framer)) []byte {
	var b bytes.Buffer
	fn(http2.NewFramer(&b, nil))
	return b.Bytes()
}

// writeUntilBlocked writes chunk again and again, max bytes in all, until
// the peer stops taking them: two write deadlines of 300 ms pass with no
// byte taken. It returns the bytes written and whether the writes
// blocked.
func writeUntilBlocked(nc net.Conn, chunk []byte, max int) (written int, blocked bool, err error) {
	pos, stalls := 0, 0
	defer nc.SetWriteDeadline(time.Time{})
	for written < max {
		_ = nc.SetWriteDeadline(time.Now().Add(300 * time.Millisecond))
		end := min(len(chunk), pos+max-written)
		n, err := nc.Write(chunk[pos:end])
		written += n
		pos = (pos + n) % len(chunk)
		var ne net.Error
		switch {
		case err == nil:
			stalls = 0
		case errors.As(err, &ne) && ne.Timeout():
			if n > 0 {
				stalls = 0
				continue
			}
			if stalls++; stalls == 2 {
				return written, true, nil
			}
		default:
			return written, false, err
		}
	}
	return written, false, nil
}

// heapInuse is the heap in use after a collection.
func heapInuse() int64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return int64(ms.HeapInuse)
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

// --- the stream quota -----------------------------------------------------

// TestMaxConcurrentStreams: with a quota of 4, a fifth open stream is
// refused; streams the client reset count while their handlers run, so
// that a fifth call starts only once one of them returns.
func TestMaxConcurrentStreams(t *testing.T) {
	s := startWire(t, wire.Config{MaxConcurrentStreams: 4}, 0)
	c := dialH2(t, s.addr, 0)
	var held []uint32
	for i := 0; i < 4; i++ {
		held = append(held, c.unary(&testpb.SimpleRequest{ResponseSize: 1}, "x-gate", "1"))
	}
	s.svc.waitStarted(t, 4)
	refused := c.unary(&testpb.SimpleRequest{ResponseSize: 1})
	c.expectRST(refused, http2.ErrCodeRefusedStream)

	for _, id := range held {
		if err := c.fr.WriteRSTStream(id, http2.ErrCodeCancel); err != nil {
			t.Fatal(err)
		}
	}
	c.ping() // the resets are handled: no stream is open, four handlers run
	next := c.unary(&testpb.SimpleRequest{ResponseSize: 1}, "x-gate", "1")
	// The reader takes next's HEADERS and waits for a place in the quota:
	// past the point where it would have started the handler.
	testenv.Eventually(t, 10*time.Second, "the reader to wait for a place in the quota", readerWaitsForQuota)
	select {
	case <-s.svc.started:
		t.Fatal("a fifth handler started while four ran")
	default:
	}
	s.svc.releaseOne(t)
	s.svc.waitStarted(t, 1)
	s.svc.releaseAll()
	c.expectCode(next, codes.OK)
	c.goodCall()
}

// readerWaitsForQuota reports whether a connection's reader waits, on the
// connection's cond, for a handler's place in the stream quota.
func readerWaitsForQuota() bool {
	buf := make([]byte, 1<<20)
	for _, g := range strings.Split(string(buf[:runtime.Stack(buf, true)]), "\n\n") {
		if strings.Contains(g, "sync.(*Cond).Wait") && strings.Contains(g, "wire.(*conn).onHeaders") {
			return true
		}
	}
	return false
}

// --- floods ---------------------------------------------------------------

// TestControlFlood: a client that sends control frames and never reads
// the replies is no longer read once the replies back up: its writes
// block after a bounded number of bytes, the server's heap stays bounded,
// and other connections are served meanwhile.
func TestControlFlood(t *testing.T) {
	const sockBuf = 32 << 10
	for _, tc := range []struct {
		name  string
		frame func(fr *http2.Framer)
	}{
		{"SETTINGS", func(fr *http2.Framer) { _ = fr.WriteSettings() }},
		{"PING", func(fr *http2.Framer) { _ = fr.WritePing(false, [8]byte{1, 2, 3}) }},
		{"SETTINGS with values", func(fr *http2.Framer) {
			_ = fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 70000}, http2.Setting{ID: http2.SettingHeaderTableSize, Val: 100})
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := startWire(t, wire.Config{}, sockBuf)
			chunk := rawFrames(func(fr *http2.Framer) {
				for i := 0; i < 4096; i++ {
					tc.frame(fr)
				}
			})
			before := heapInuse()
			c := dialH2(t, s.addr, sockBuf)
			const offered, bound = 32 << 20, 4 << 20
			written, blocked, err := writeUntilBlocked(c.nc, chunk, offered)
			if err != nil {
				t.Fatalf("after %d bytes: %v", written, err)
			}
			if !blocked || written > bound {
				t.Fatalf("the server read %d bytes of %s from a client that reads nothing (blocked %v), want it to stop below %d", written, tc.name, blocked, bound)
			}
			if d := heapInuse() - before; d > 16<<20 {
				t.Errorf("heap grew by %d bytes", d)
			}
			other := dialH2(t, s.addr, 0)
			other.goodCall()
			t.Logf("%s: blocked after %d bytes", tc.name, written)
		})
	}
}

// TestUnreadResponses: a client that sends 20,000 calls and reads none of
// their responses is no longer read once the responses back up: its
// writes block after a bounded number of bytes and the server's heap
// stays bounded; other connections are served meanwhile. The server reads
// the calls it takes (MaxConcurrentStreams, 1000, whose handlers then wait
// to send) and the calls it refuses while its tiny refusals still fit in
// the sockets' buffers, some 1.5 MB of the 4.8 MB offered.
func TestUnreadResponses(t *testing.T) {
	const sockBuf = 32 << 10
	s := startWire(t, wire.Config{}, sockBuf)
	before := heapInuse()
	c := dialH2(t, s.addr, sockBuf)
	var calls bytes.Buffer
	fr := http2.NewFramer(&calls, nil)
	msg := frameMsg(&testpb.SimpleRequest{ResponseSize: 10_000, Payload: &testpb.Payload{Body: make([]byte, 200)}})
	for i := 0; i < 20_000; i++ {
		id := c.newID()
		_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: c.encode(callFields("UnaryCall")...), EndHeaders: true})
		_ = fr.WriteData(id, true, msg)
	}
	const bound = 3 << 20
	written, blocked, err := writeUntilBlocked(c.nc, calls.Bytes(), calls.Len())
	if err != nil {
		t.Fatalf("after %d bytes: %v", written, err)
	}
	if !blocked || written > bound {
		t.Fatalf("the server read %d of %d bytes of calls whose responses are not read (blocked %v), want it to stop below %d", written, calls.Len(), blocked, bound)
	}
	if d := heapInuse() - before; d > 48<<20 {
		t.Errorf("heap grew by %d bytes", d)
	}
	other := dialH2(t, s.addr, 0)
	other.goodCall()
	t.Logf("blocked after %d of %d bytes", written, calls.Len())
}

// --- header lists ---------------------------------------------------------

// TestHeaderLists: a large header value within the bound is served; a
// header list past the bound fails its call only; a CONTINUATION flood is
// cut by a connection error soon after the bound.
func TestHeaderLists(t *testing.T) {
	t.Run("100 KiB value", func(t *testing.T) {
		s := startWire(t, wire.Config{}, 0)
		c := dialH2(t, s.addr, 0)
		id := c.unary(&testpb.SimpleRequest{ResponseSize: 1}, "x-big", strings.Repeat("v", 100<<10))
		if st := c.await(id); !st.reset && st.grpcCode() != codes.OK {
			t.Errorf("a 100 KiB header under the bound: %v", st)
		}
		c.goodCall()
	})
	t.Run("over MaxHeaderListSize", func(t *testing.T) {
		s := startWire(t, wire.Config{MaxHeaderListSize: 32 << 10}, 0)
		c := dialH2(t, s.addr, 0)
		v := strings.Repeat("v", 12<<10)
		id := c.unary(&testpb.SimpleRequest{ResponseSize: 1}, "x-a", v, "x-b", v, "x-c", v)
		c.expectCode(id, codes.ResourceExhausted)
		c.goodCall()
	})
	t.Run("CONTINUATION flood", func(t *testing.T) {
		const limit, sockBuf = 256 << 10, 32 << 10
		s := startWire(t, wire.Config{MaxHeaderListSize: limit}, sockBuf)
		c := dialH2(t, s.addr, sockBuf)
		id := c.newID()
		first := c.encode(callFields("UnaryCall")...)
		var lit bytes.Buffer
		enc := hpack.NewEncoder(&lit)
		for i := 0; i < 15; i++ {
			_ = enc.WriteField(hpack.HeaderField{Name: "x-flood", Value: strings.Repeat("f", 1000), Sensitive: true})
		}
		head := rawFrames(func(fr *http2.Framer) {
			_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: first})
		})
		cont := rawFrames(func(fr *http2.Framer) { _ = fr.WriteContinuation(id, false, lit.Bytes()) })
		var written atomic.Int64
		stop := make(chan struct{})
		wdone := make(chan struct{})
		go func() {
			defer close(wdone)
			n, err := c.nc.Write(head)
			written.Add(int64(n))
			for err == nil && written.Load() < 64<<20 {
				select {
				case <-stop:
					return
				default:
				}
				n, err = c.nc.Write(cont)
				written.Add(int64(n))
			}
		}()
		var at int64
		for i := 0; ; i++ {
			f, err := c.next()
			if err == nil && i == 1_000_000 {
				err = errors.New("a million frames")
			}
			if err != nil {
				close(stop)
				<-wdone
				t.Fatalf("connection ended without GOAWAY after %d bytes: %v", written.Load(), err)
			}
			if f.typ == http2.FrameGoAway {
				at = written.Load()
				if f.code == http2.ErrCodeNo {
					t.Errorf("%v, want a connection error", f)
				}
				break
			}
		}
		close(stop)
		<-wdone
		if at > limit+4<<20 {
			t.Fatalf("the flood was cut after %d bytes, want fewer than %d", at, limit+4<<20)
		}
		t.Logf("cut after %d bytes", at)
	})
}

// TestErrorMessageAmplification: what the server writes stays within a
// small multiple of what the client sends. A grpc-message that repeats
// the :path of an unknown service must not turn the client's HPACK
// references (a byte each) into kilobytes of output per call: here two
// 1940-byte paths alternate, which the client's table holds and the
// server's, holding them with the longer name and prefix, does not.
func TestErrorMessageAmplification(t *testing.T) {
	s := startWire(t, wire.Config{}, 0)
	c := dialH2(t, s.addr, 0)
	const calls = 1000
	var in bytes.Buffer
	fr := http2.NewFramer(&in, nil)
	for i := 0; i < calls; i++ {
		path := "/" + strings.Repeat(string(rune('a'+i%2)), 1940) + "/M"
		block := c.encode(":method", "POST", ":scheme", "http", ":path", path, ":authority", "x", "content-type", "application/grpc")
		_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: c.newID(), BlockFragment: block, EndStream: true, EndHeaders: true})
	}
	werr := make(chan error, 1)
	go func() { _, err := c.nc.Write(in.Bytes()); werr <- err }()
	out := 0
	for ended := 0; ended < calls; {
		f, err := c.fr.ReadFrame()
		if err != nil {
			t.Fatalf("after %d calls: %v", ended, err)
		}
		out += 9 + int(f.Header().Length)
		if h, ok := f.(*http2.MetaHeadersFrame); ok && h.StreamEnded() {
			ended++
		}
	}
	if err := <-werr; err != nil {
		t.Fatal(err)
	}
	if bound := 16*in.Len() + 64<<10; out > bound {
		t.Errorf("the server wrote %d bytes for %d bytes of calls, want at most %d", out, in.Len(), bound)
	}
}

// --- compression ------------------------------------------------------------

// clientStats records what a grpc-go client's stats handler sees.
type clientStats struct {
	mu          sync.Mutex
	compression []string
	payloads    [][2]int // Length, CompressedLength
}

func (s *clientStats) TagRPC(ctx context.Context, _ *stats.RPCTagInfo) context.Context { return ctx }
func (s *clientStats) TagConn(ctx context.Context, _ *stats.ConnTagInfo) context.Context {
	return ctx
}
func (s *clientStats) HandleConn(context.Context, stats.ConnStats) {}
func (s *clientStats) HandleRPC(_ context.Context, st stats.RPCStats) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch st := st.(type) {
	case *stats.InHeader:
		s.compression = append(s.compression, st.Compression)
	case *stats.InPayload:
		s.payloads = append(s.payloads, [2]int{st.Length, st.CompressedLength})
	}
}

// TestGzip: a call compressed with gzip is answered with gzip: the
// response's grpc-encoding says so and its messages are compressed.
func TestGzip(t *testing.T) {
	s := startWire(t, wire.Config{}, 0)
	t.Run("grpc-go client", func(t *testing.T) {
		rec := &clientStats{}
		conn, err := grpc.NewClient(s.addr, grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithStatsHandler(rec))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		c := testpb.NewTestServiceClient(conn)
		cx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		resp, err := c.UnaryCall(cx, &testpb.SimpleRequest{ResponseSize: 10_000, Payload: &testpb.Payload{Body: make([]byte, 5000)}}, grpc.UseCompressor("gzip"))
		if err != nil || len(resp.GetPayload().GetBody()) != 10_000 {
			t.Fatalf("unary: %v", err)
		}
		stream, err := c.StreamingOutputCall(cx, &testpb.StreamingOutputCallRequest{ResponseParameters: []*testpb.ResponseParameters{{Size: 8000}, {Size: 8000}}}, grpc.UseCompressor("gzip"))
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i < 10; i++ {
			if _, err := stream.Recv(); err == io.EOF {
				break
			} else if err != nil {
				t.Fatal(err)
			}
		}
		rec.mu.Lock()
		defer rec.mu.Unlock()
		if fmt.Sprint(rec.compression) != "[gzip gzip]" {
			t.Errorf("response compression %q, want gzip for both calls", rec.compression)
		}
		if len(rec.payloads) != 3 {
			t.Fatalf("%d responses, want 3", len(rec.payloads))
		}
		for _, p := range rec.payloads {
			if p[1] == 0 || p[1] >= p[0] {
				t.Errorf("response of %d bytes arrived as %d compressed bytes", p[0], p[1])
			}
		}
	})
	t.Run("raw", func(t *testing.T) {
		c := dialH2(t, s.addr, 0)
		body, _ := proto.Marshal(&testpb.SimpleRequest{ResponseSize: 4000})
		var z bytes.Buffer
		w := gzip.NewWriter(&z)
		_, _ = w.Write(body)
		_ = w.Close()
		msg := append(binary.BigEndian.AppendUint32([]byte{1}, uint32(z.Len())), z.Bytes()...)
		id := c.newID()
		c.headers(id, false, callFields("UnaryCall", "grpc-encoding", "gzip", "grpc-accept-encoding", "gzip")...)
		c.data(id, true, msg)
		st := c.expectCode(id, codes.OK)
		if got := st.header("grpc-encoding"); got != "gzip" {
			t.Errorf("response grpc-encoding %q, want gzip", got)
		}
		flags, msgs, err := st.messages()
		if err != nil || len(msgs) != 1 || flags[0] != 1 {
			t.Fatalf("response: %v, flags %v", err, flags)
		}
		r, err := gzip.NewReader(bytes.NewReader(msgs[0]))
		if err != nil {
			t.Fatal(err)
		}
		plain, err := io.ReadAll(r)
		var resp testpb.SimpleResponse
		if err != nil || proto.Unmarshal(plain, &resp) != nil || len(resp.GetPayload().GetBody()) != 4000 {
			t.Fatalf("decompressed response: %v", err)
		}
		// A compressor the server lacks.
		id = c.newID()
		c.headers(id, false, callFields("UnaryCall", "grpc-encoding", "snappy")...)
		c.data(id, true, msg)
		c.expectCode(id, codes.Unimplemented)
	})
}

// --- stats handlers -------------------------------------------------------

type (
	rpcTag  struct{}
	connTag struct{}
)

// statsRecorder records the events of a server's stats handler, by call.
type statsRecorder struct {
	mu      sync.Mutex
	conn    []string
	methods []string   // by call, in the order tagged
	events  [][]string // by call
	ends    []error    // by call: End's error
	bad     []string
	changed chan struct{} // a token when an event was recorded, for await
}

func (r *statsRecorder) TagConn(ctx context.Context, _ *stats.ConnTagInfo) context.Context {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.conn = append(r.conn, "TagConn")
	return context.WithValue(ctx, connTag{}, true)
}

func (r *statsRecorder) HandleConn(ctx context.Context, s stats.ConnStats) {
	r.mu.Lock()
	defer r.mu.Unlock()
	defer r.recordedLocked()
	if ctx.Value(connTag{}) == nil {
		r.bad = append(r.bad, fmt.Sprintf("%T without the connection's tag", s))
	}
	switch s.(type) {
	case *stats.ConnBegin:
		r.conn = append(r.conn, "ConnBegin")
	case *stats.ConnEnd:
		r.conn = append(r.conn, "ConnEnd")
	}
}

func (r *statsRecorder) TagRPC(ctx context.Context, info *stats.RPCTagInfo) context.Context {
	r.mu.Lock()
	defer r.mu.Unlock()
	if ctx.Value(connTag{}) == nil {
		r.bad = append(r.bad, "TagRPC without the connection's tag")
	}
	r.methods = append(r.methods, info.FullMethodName)
	r.events = append(r.events, []string{"TagRPC"})
	r.ends = append(r.ends, nil)
	return context.WithValue(ctx, rpcTag{}, len(r.events)-1)
}

func (r *statsRecorder) HandleRPC(ctx context.Context, s stats.RPCStats) {
	r.mu.Lock()
	defer r.mu.Unlock()
	defer r.recordedLocked()
	i, ok := ctx.Value(rpcTag{}).(int)
	if !ok {
		r.bad = append(r.bad, fmt.Sprintf("%T without the call's tag", s))
		return
	}
	if s.IsClient() {
		r.bad = append(r.bad, fmt.Sprintf("%T says it is the client's", s))
	}
	name := strings.TrimPrefix(fmt.Sprintf("%T", s), "*stats.")
	r.events[i] = append(r.events[i], name)
	if e, ok := s.(*stats.End); ok {
		r.ends[i] = e.Error
	}
}

// ended reports whether every call tagged so far has had its End.
func (r *statsRecorder) ended() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, ev := range r.events {
		if ev[len(ev)-1] != "End" {
			return false
		}
	}
	return true
}

func (r *statsRecorder) connEnded() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.conn) > 0 && r.conn[len(r.conn)-1] == "ConnEnd"
}

// recordedLocked wakes await: an event was recorded.
func (r *statsRecorder) recordedLocked() {
	select {
	case r.changedLocked() <- struct{}{}:
	default: // a token is there already
	}
}

func (r *statsRecorder) changedLocked() chan struct{} {
	if r.changed == nil {
		r.changed = make(chan struct{}, 1)
	}
	return r.changed
}

// await waits up to 10 seconds for cond, looking again at every event the
// stats handler records.
func (r *statsRecorder) await(t *testing.T, what string, cond func() bool) {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for !cond() {
		r.mu.Lock()
		changed := r.changedLocked()
		r.mu.Unlock()
		select {
		case <-changed:
		case <-timeout:
			t.Fatalf("timed out waiting: %s", what)
		}
	}
}

// TestStatsHandler: a stats handler sees the connection begin and end and,
// for every call, grpc-go's server events in grpc-go's order, End last
// with the call's status.
func TestStatsHandler(t *testing.T) {
	rec := &statsRecorder{}
	s := startWire(t, wire.Config{StatsHandlers: []stats.Handler{rec}}, 0)
	conn, err := grpc.NewClient(s.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	c := testpb.NewTestServiceClient(conn)
	cx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := c.UnaryCall(cx, &testpb.SimpleRequest{ResponseSize: 5}); err != nil {
		t.Fatal(err)
	}
	_, err = c.UnaryCall(cx, &testpb.SimpleRequest{ResponseStatus: &testpb.EchoStatus{Code: int32(codes.NotFound), Message: "nope"}})
	if status.Code(err) != codes.NotFound {
		t.Fatalf("failing call: %v", err)
	}
	so, err := c.StreamingOutputCall(cx, &testpb.StreamingOutputCallRequest{ResponseParameters: params(3, 10)})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 4; i++ {
		if _, err := so.Recv(); (err == io.EOF) != (i == 3) || err != nil && err != io.EOF {
			t.Fatalf("server stream, response %d: %v", i, err)
		}
	}
	bidi, err := c.FullDuplexCall(cx)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		if err := bidi.Send(&testpb.StreamingOutputCallRequest{Payload: &testpb.Payload{Body: []byte("x")}}); err != nil {
			t.Fatal(err)
		}
		if _, err := bidi.Recv(); err != nil {
			t.Fatal(err)
		}
	}
	_ = bidi.CloseSend()
	if _, err := bidi.Recv(); err != io.EOF {
		t.Fatalf("bidi end: %v", err)
	}
	rec.await(t, "End of every call", rec.ended)
	conn.Close()
	rec.await(t, "ConnEnd", rec.connEnded)

	rec.mu.Lock()
	defer rec.mu.Unlock()
	for _, b := range rec.bad {
		t.Error(b)
	}
	if got := strings.Join(rec.conn, " "); got != "TagConn ConnBegin ConnEnd" {
		t.Errorf("connection events %q", got)
	}
	head := "TagRPC InHeader Begin InPayload "
	want := []struct {
		method, events string
		code           codes.Code
	}{
		{"UnaryCall", head + "OutHeader OutPayload OutTrailer End", codes.OK},
		{"UnaryCall", head + "OutTrailer End", codes.NotFound},
		{"StreamingOutputCall", head + "OutHeader OutPayload OutPayload OutPayload OutTrailer End", codes.OK},
		{"FullDuplexCall", "TagRPC InHeader Begin InPayload OutHeader OutPayload InPayload OutPayload OutTrailer End", codes.OK},
	}
	if len(rec.events) != len(want) {
		t.Fatalf("%d calls seen, want %d: %v", len(rec.events), len(want), rec.methods)
	}
	for i, w := range want {
		if rec.methods[i] != testMethod+w.method {
			t.Errorf("call %d: method %q, want %s", i, rec.methods[i], w.method)
		}
		if got := strings.Join(rec.events[i], " "); got != w.events {
			t.Errorf("call %d (%s):\n got %s\nwant %s", i, w.method, got, w.events)
		}
		if status.Code(rec.ends[i]) != w.code {
			t.Errorf("call %d (%s): End error %v, want %v", i, w.method, rec.ends[i], w.code)
		}
	}
}

// TestStatsEndWithoutHandler: a call that began (its InHeader and Begin
// were seen) and ends before its handler runs, reset by the client or
// with its connection, still gets its End, as on grpc-go's server, so
// that a tracing handler ends its span.
func TestStatsEndWithoutHandler(t *testing.T) {
	rec := &statsRecorder{}
	s := startWire(t, wire.Config{StatsHandlers: []stats.Handler{rec}}, 0)
	c := dialH2(t, s.addr, 0)
	id := c.newID()
	c.headers(id, false, callFields("UnaryCall")...)
	c.ping()
	_ = c.fr.WriteRSTStream(id, http2.ErrCodeCancel)
	id = c.newID()
	c.headers(id, false, callFields("UnaryCall")...)
	c.ping()
	c.nc.Close()
	rec.await(t, "ConnEnd", rec.connEnded)
	rec.await(t, "End of every call", rec.ended)
}

// TestClientStreamMessageOverLimit: a message over MaxRecvMsgSize on a
// client-streaming call, whose handler runs already, fails the call with
// RESOURCE_EXHAUSTED once: the stats handler sees one End, last, and the
// handler reads nothing after it.
func TestClientStreamMessageOverLimit(t *testing.T) {
	rec := &statsRecorder{}
	s := startWire(t, wire.Config{MaxRecvMsgSize: 1000, StatsHandlers: []stats.Handler{rec}}, 0)
	c := dialH2(t, s.addr, 0)
	id := c.newID()
	c.headers(id, false, callFields("StreamingInputCall")...)
	c.data(id, false, frameMsg(&testpb.StreamingInputCallRequest{Payload: &testpb.Payload{Body: []byte("one")}}))
	c.data(id, false, []byte{0, 0, 0, 0x07, 0xd0}) // 2000 bytes
	c.expectCode(id, codes.ResourceExhausted)
	select {
	case <-s.svc.inputDone:
	case <-time.After(10 * time.Second):
		t.Fatal("the handler did not return")
	}
	rec.await(t, "End", rec.ended)
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if len(rec.events) != 1 {
		t.Fatalf("%d calls seen", len(rec.events))
	}
	ev := rec.events[0]
	if n := strings.Count(strings.Join(ev, " "), "End"); n != 1 || ev[len(ev)-2] != "OutTrailer" {
		t.Errorf("events %v, want one OutTrailer and End, last", ev)
	}
	if status.Code(rec.ends[0]) != codes.ResourceExhausted {
		t.Errorf("End error %v, want ResourceExhausted", rec.ends[0])
	}
}

// --- connection lifetime --------------------------------------------------

// TestMaxConnectionIdle: a connection with no call for MaxConnectionIdle
// gets GOAWAY NO_ERROR and is closed; one with a call running is not.
func TestMaxConnectionIdle(t *testing.T) {
	const idle = 200 * time.Millisecond
	s := startWire(t, wire.Config{MaxConnectionIdle: idle}, 0)
	t.Run("idle", func(t *testing.T) {
		c := dialH2(t, s.addr, 0)
		c.expectGoAway(http2.ErrCodeNo)
	})
	t.Run("busy", func(t *testing.T) {
		c := dialH2(t, s.addr, 0)
		id := c.unary(&testpb.SimpleRequest{ResponseSize: 1}, "x-gate", "1")
		s.svc.waitStarted(t, 1)
		// A connection dialed after this one, idle, gets its GOAWAY once
		// MaxConnectionIdle has passed for it; by then it has for this one.
		dialH2(t, s.addr, 0).expectGoAway(http2.ErrCodeNo)
		for _, f := range c.ping() {
			if f.typ == http2.FrameGoAway {
				t.Fatalf("%v while a call ran", f)
			}
		}
		s.svc.releaseOne(t)
		c.expectCode(id, codes.OK)
		g := c.expectGoAway(http2.ErrCodeNo)
		if g.last != id {
			t.Errorf("GOAWAY's last stream %d, want %d", g.last, id)
		}
	})
}

// TestMaxConnectionAge: a connection past MaxConnectionAge gets GOAWAY
// NO_ERROR naming its last stream; new streams are refused; it is closed
// when its calls end, or when the grace period ends.
func TestMaxConnectionAge(t *testing.T) {
	hold := func(c *h2Client) uint32 {
		id := c.newID()
		c.headers(id, false, callFields("StreamingOutputCall", "x-hold", "1")...)
		c.data(id, true, frameMsg(&testpb.StreamingOutputCallRequest{ResponseParameters: params(1, 5)}))
		return id
	}
	t.Run("grace", func(t *testing.T) {
		s := startWire(t, wire.Config{MaxConnectionAge: 200 * time.Millisecond, MaxConnectionAgeGrace: 300 * time.Millisecond}, 0)
		c := dialH2(t, s.addr, 0)
		id := hold(c)
		var g *rframe
		for i := 0; i < 1000 && g == nil; i++ {
			f, err := c.next()
			if err != nil {
				t.Fatalf("no GOAWAY: %v", err)
			}
			if f.typ == http2.FrameGoAway {
				g = &f
			}
		}
		if g == nil || g.code != http2.ErrCodeNo || g.last != id {
			t.Fatalf("%v, want GOAWAY NO_ERROR last=%d", g, id)
		}
		for i := 0; ; i++ {
			if _, err := c.next(); err != nil {
				break // closed at the end of the grace period
			}
			if i == 1000 {
				t.Fatal("the connection goes on after its grace period")
			}
		}
		if c.stream(id).ended {
			t.Errorf("the held stream ended normally: %v", c.stream(id))
		}
	})
	t.Run("no grace", func(t *testing.T) {
		s := startWire(t, wire.Config{MaxConnectionAge: 200 * time.Millisecond}, 0)
		c := dialH2(t, s.addr, 0)
		id := hold(c)
		var g *rframe
		for i := 0; i < 1000 && g == nil; i++ {
			f, err := c.next()
			if err != nil {
				t.Fatalf("no GOAWAY: %v", err)
			}
			if f.typ == http2.FrameGoAway {
				g = &f
			}
		}
		if g == nil || g.code != http2.ErrCodeNo || g.last != id {
			t.Fatalf("%v, want GOAWAY NO_ERROR last=%d", g, id)
		}
		late := c.unary(&testpb.SimpleRequest{ResponseSize: 1})
		c.expectRST(late, http2.ErrCodeRefusedStream)
		for _, f := range c.ping() {
			if f.typ == http2.FrameGoAway {
				t.Fatalf("second GOAWAY %v", f)
			}
		}
		// The connection stays while its call runs; it closes when the
		// call ends.
		if err := c.fr.WriteRSTStream(id, http2.ErrCodeCancel); err != nil {
			t.Fatal(err)
		}
		c.expectEnd()
	})
}

// TestKeepaliveUnreadClient: a client that sends nothing and reads
// nothing while the server has output for it is closed by keepalive: the
// ping cannot be answered, so it is closed KeepaliveTime+KeepaliveTimeout
// after its last frame (and its stuck write given up).
func TestKeepaliveUnreadClient(t *testing.T) {
	const kt, kto, sockBuf = 300 * time.Millisecond, 300 * time.Millisecond, 32 << 10
	rec := &statsRecorder{}
	s := startWire(t, wire.Config{KeepaliveTime: kt, KeepaliveTimeout: kto, StatsHandlers: []stats.Handler{rec}}, sockBuf)
	c := dialH2(t, s.addr, sockBuf, http2.Setting{ID: http2.SettingInitialWindowSize, Val: 1<<31 - 1})
	if err := c.fr.WriteWindowUpdate(0, 1<<31-1-65535); err != nil {
		t.Fatal(err)
	}
	id := c.newID()
	c.headers(id, false, callFields("StreamingOutputCall")...)
	c.data(id, true, frameMsg(&testpb.StreamingOutputCallRequest{ResponseParameters: params(1000, 32<<10)}))
	start := time.Now()
	rec.await(t, "the connection to close", rec.connEnded)
	// The server's write to a client that reads nothing is given a second
	// after the close; the rest is slack for a loaded machine.
	if d := time.Since(start); d > kt+kto+time.Second+5*time.Second {
		t.Errorf("closed %v after the client's last frame, want about %v", d, kt+kto)
	}
	t.Logf("closed after %v", time.Since(start))
}
