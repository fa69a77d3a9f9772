package wire_test

// The raw HTTP/2 client of the protocol tests (protocol_test.go and
// protocol_stats_test.go): http2.Framer and hpack over a loopback socket,
// what it received per stream, and the expectations on it.

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"runtime"
	"slices"
	"strconv"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
	"google.golang.org/grpc/codes"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/protobuf/proto"
)

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
	g := c.nextGoAway(1_000_000, codes...)
	c.expectEnd()
	return g
}

// nextGoAway reads up to within frames until a GOAWAY, and requires its
// code to be one of codes.
func (c *h2Client) nextGoAway(within int, codes ...http2.ErrCode) rframe {
	c.t.Helper()
	var g *rframe
	for i := 0; i < within && g == nil; i++ {
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
