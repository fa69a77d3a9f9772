package main

// The attack suite's tools: a raw HTTP/2 client that writes exactly the
// frames it is told to (valid or not) with golang.org/x/net/http2's Framer,
// a reader that records what the server answers, a well-behaved grpc-go
// client that measures whether the server keeps serving others during an
// attack, and the server's memory read from /proc.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
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
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"

	notifyv1 "github.com/maxloyalty/notify/gen/notify/v1"
)

const (
	publishPath   = "/notify.v1.NotificationService/Publish"
	subscribePath = "/notify.v1.NotificationService/Subscribe"
	// rawIOTimeout bounds every read and write of a raw connection that a
	// case does not bound more tightly.
	rawIOTimeout = 5 * time.Second
	// readerLimit bounds a raw connection's reader goroutine: it stops
	// reading this long after it started.
	readerLimit = 60 * time.Second
	// maxKeptData bounds the response bytes the reader keeps per stream.
	maxKeptData = 1 << 20
	// defaultFrameSize is HTTP/2's initial SETTINGS_MAX_FRAME_SIZE.
	defaultFrameSize = 16384
)

// rawConn is an HTTP/2 client connection (h2c with prior knowledge) that
// writes what it is told, in order: frames are built with a Framer into a
// pending buffer and sent by flush. One goroutine writes; reading is done
// either synchronously (handshake) or by one reader goroutine (startReader).
type rawConn struct {
	t  *testing.T
	nc net.Conn
	rd *http2.Framer // reads from nc

	wb       bytes.Buffer
	wf       *http2.Framer // writes into wb
	buildErr error         // the first frame the write Framer refused
	enc      *hpack.Encoder
	hb       bytes.Buffer
	sent     int64 // bytes written to nc

	// WriteTimeout bounds each write; a write that makes no progress for
	// this long fails with a timeout (the server stopped reading).
	writeTimeout time.Duration

	server map[http2.SettingID]uint32 // the server's first SETTINGS
	nextID uint32                     // the next client stream id

	readerDone chan struct{} // closed when the reader goroutine ends; nil without one
}

// dialOpts adjusts a raw connection's socket.
type dialOpts struct {
	// bufBytes, when positive, sets SO_RCVBUF and SO_SNDBUF before the
	// connection is made, so that a client that does not read (or a flood
	// that the server stops reading) fills its buffers quickly.
	bufBytes int
	// noPreface leaves the client preface unwritten.
	noPreface bool
}

// dialRaw connects to addr and writes the client connection preface's
// magic string (not its SETTINGS: see handshake). The connection is closed
// and its reader waited for when the test ends.
func dialRaw(t *testing.T, addr string, o dialOpts) *rawConn {
	t.Helper()
	d := net.Dialer{Timeout: rawIOTimeout}
	if o.bufBytes > 0 {
		d.Control = func(_, _ string, rc syscall.RawConn) error {
			var serr error
			err := rc.Control(func(fd uintptr) {
				serr = errors.Join(
					syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, o.bufBytes),
					syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_SNDBUF, o.bufBytes))
			})
			return errors.Join(err, serr)
		}
	}
	nc, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	c := &rawConn{t: t, nc: nc, writeTimeout: rawIOTimeout, nextID: 1}
	c.rd = http2.NewFramer(nil, bufio.NewReader(nc))
	c.rd.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	c.rd.MaxHeaderListSize = 1 << 20
	c.wf = http2.NewFramer(&c.wb, nil)
	c.wf.AllowIllegalWrites = true
	c.enc = hpack.NewEncoder(&c.hb)
	t.Cleanup(func() {
		nc.Close()
		if c.readerDone != nil {
			<-c.readerDone // the reader ends on the closed connection
		}
	})
	if !o.noPreface {
		if err := c.write([]byte(http2.ClientPreface)); err != nil {
			t.Fatalf("writing the client preface: %v", err)
		}
	}
	return c
}

// handshake sends the client's SETTINGS (the rest of its preface), reads
// frames until the server's SETTINGS, and acknowledges them. It fails the
// test when the server does not send its SETTINGS within rawIOTimeout.
func (c *rawConn) handshake(settings ...http2.Setting) {
	c.t.Helper()
	c.settings(settings...)
	if err := c.flush(); err != nil {
		c.t.Fatalf("writing SETTINGS: %v", err)
	}
	c.readServerSettings()
	c.settingsAck()
	if err := c.flush(); err != nil {
		c.t.Fatalf("writing the SETTINGS ACK: %v", err)
	}
}

// readServerSettings reads frames until the server's first SETTINGS and
// records them in c.server.
func (c *rawConn) readServerSettings() {
	c.t.Helper()
	deadline := time.Now().Add(rawIOTimeout)
	_ = c.nc.SetReadDeadline(deadline)
	defer c.nc.SetReadDeadline(time.Time{})
	for range 100 {
		f, err := c.rd.ReadFrame()
		if err != nil {
			c.t.Fatalf("reading the server's SETTINGS: %v", err)
		}
		if sf, ok := f.(*http2.SettingsFrame); ok && !sf.IsAck() {
			c.server = map[http2.SettingID]uint32{}
			_ = sf.ForeachSetting(func(s http2.Setting) error {
				c.server[s.ID] = s.Val
				return nil
			})
			return
		}
	}
	c.t.Fatal("the server sent 100 frames before its SETTINGS")
}

// serverSetting returns one of the server's SETTINGS and whether it sent it.
func (c *rawConn) serverSetting(id http2.SettingID) (uint32, bool) {
	v, ok := c.server[id]
	return v, ok
}

// maxFrame is the largest frame the server accepts: its
// SETTINGS_MAX_FRAME_SIZE, or HTTP/2's default when it sent none.
func (c *rawConn) maxFrame() int {
	if v, ok := c.server[http2.SettingMaxFrameSize]; ok {
		return int(v)
	}
	return defaultFrameSize
}

// newStream returns the next client stream id.
func (c *rawConn) newStream() uint32 {
	id := c.nextID
	c.nextID += 2
	return id
}

// write sends b now, each write bounded by writeTimeout.
func (c *rawConn) write(b []byte) error {
	for len(b) > 0 {
		_ = c.nc.SetWriteDeadline(time.Now().Add(c.writeTimeout))
		n, err := c.nc.Write(b)
		c.sent += int64(n)
		if err != nil {
			return err
		}
		b = b[n:]
	}
	return nil
}

// flush sends the frames built since the last flush.
func (c *rawConn) flush() error {
	if err := c.buildErr; err != nil {
		c.buildErr = nil
		c.wb.Reset()
		return fmt.Errorf("building a frame: %w", err)
	}
	err := c.write(c.wb.Bytes())
	c.wb.Reset()
	return err
}

// mustFlush flushes, failing the test on an error.
func (c *rawConn) mustFlush() {
	c.t.Helper()
	if err := c.flush(); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

// take returns the frames built since the last flush without sending
// them, for a flood that sends the same bytes many times.
func (c *rawConn) take() []byte {
	c.t.Helper()
	if c.buildErr != nil {
		c.t.Fatalf("building a frame: %v", c.buildErr)
	}
	b := bytes.Clone(c.wb.Bytes())
	c.wb.Reset()
	return b
}

func (c *rawConn) built(err error) {
	if err != nil && c.buildErr == nil {
		c.buildErr = err
	}
}

// The frame builders below append one frame (or a header block's frames)
// to the pending buffer.

func (c *rawConn) settings(s ...http2.Setting) { c.built(c.wf.WriteSettings(s...)) }
func (c *rawConn) settingsAck()                { c.built(c.wf.WriteSettingsAck()) }
func (c *rawConn) ping(ack bool, data [8]byte) { c.built(c.wf.WritePing(ack, data)) }
func (c *rawConn) rst(id uint32, code http2.ErrCode) {
	c.built(c.wf.WriteRSTStream(id, code))
}
func (c *rawConn) windowUpdate(id, incr uint32) { c.built(c.wf.WriteWindowUpdate(id, incr)) }
func (c *rawConn) data(id uint32, end bool, p []byte) {
	c.built(c.wf.WriteData(id, end, p))
}
func (c *rawConn) priority(id, dep uint32, weight uint8) {
	c.built(c.wf.WritePriority(id, http2.PriorityParam{StreamDep: dep, Weight: weight}))
}
func (c *rawConn) raw(typ http2.FrameType, flags http2.Flags, id uint32, payload []byte) {
	c.built(c.wf.WriteRawFrame(typ, flags, id, payload))
}

// block encodes fields as one header block with the connection's encoder.
// Every block encoded must then be sent, in order: the server's decoder
// follows the encoder's dynamic table.
func (c *rawConn) block(fields ...hpack.HeaderField) []byte {
	c.hb.Reset()
	for _, f := range fields {
		c.built(c.enc.WriteField(f))
	}
	return bytes.Clone(c.hb.Bytes())
}

// headers appends a HEADERS frame carrying fields, split into
// CONTINUATION frames when it exceeds the server's maximum frame size.
func (c *rawConn) headers(id uint32, endStream bool, fields ...hpack.HeaderField) {
	c.headerBlock(id, endStream, c.block(fields...))
}

func (c *rawConn) headerBlock(id uint32, endStream bool, b []byte) {
	max := c.maxFrame()
	first := b[:min(len(b), max)]
	b = b[len(first):]
	c.built(c.wf.WriteHeaders(http2.HeadersFrameParam{
		StreamID: id, BlockFragment: first, EndStream: endStream, EndHeaders: len(b) == 0,
	}))
	for len(b) > 0 {
		frag := b[:min(len(b), max)]
		b = b[len(frag):]
		c.built(c.wf.WriteContinuation(id, len(b) == 0, frag))
	}
}

// requestFields are the header fields of a gRPC call of path, authorized
// by tok, with extra fields after them.
func requestFields(authority, path, tok string, extra ...hpack.HeaderField) []hpack.HeaderField {
	f := []hpack.HeaderField{
		{Name: ":method", Value: "POST"},
		{Name: ":scheme", Value: "http"},
		{Name: ":path", Value: path},
		{Name: ":authority", Value: authority},
		{Name: "content-type", Value: "application/grpc"},
		{Name: "te", Value: "trailers"},
		{Name: "authorization", Value: "Bearer " + tok},
	}
	return append(f, extra...)
}

// grpcMessage frames m as one uncompressed gRPC message.
func grpcMessage(m proto.Message) []byte {
	b, err := proto.Marshal(m)
	if err != nil {
		panic(err) // the suite's messages always encode
	}
	return append(grpcPrefix(len(b)), b...)
}

// grpcPrefix is a gRPC message prefix declaring n bytes, uncompressed.
func grpcPrefix(n int) []byte {
	return binary.BigEndian.AppendUint32([]byte{0}, uint32(n))
}

// publishRequest is a small valid event for room.
func publishRequest(room, tx string) *notifyv1.PublishRequest {
	return &notifyv1.PublishRequest{
		Rooms: []string{room},
		Payload: &notifyv1.PublishRequest_PointsAdded{PointsAdded: &notifyv1.PointsAdded{
			GuestId: "g1", RestaurantId: "r1", Amount: 1, NewBalance: 1, TransactionId: tx,
		}},
	}
}

// publish appends a whole unary Publish call to room on a new stream and
// returns its id.
func (c *rawConn) publish(tok, room string) uint32 {
	id := c.newStream()
	c.headers(id, false, requestFields(c.nc.RemoteAddr().String(), publishPath, tok)...)
	c.data(id, true, grpcMessage(publishRequest(room, fmt.Sprintf("tx-%d", id))))
	return id
}

// response is what the server sent on one stream.
type response struct {
	status      string // :status
	grpcStatus  string // grpc-status, from the headers or the trailers
	grpcMessage string
	data        []byte // up to maxKeptData bytes
	dataBytes   int    // all DATA bytes
	ended       bool   // END_STREAM seen
}

// goAway is a GOAWAY the server sent.
type goAway struct {
	code   http2.ErrCode
	lastID uint32
	debug  string
}

// seen is what a reader recorded.
type seen struct {
	frames   int
	settings int // non-ACK SETTINGS
	acks     int // SETTINGS ACKs
	pings    int // non-ACK PINGs
	pingAcks int
	goAways  []goAway
	rst      map[uint32]http2.ErrCode
	resp     map[uint32]*response
	// windowUpdates sums the WINDOW_UPDATE increments per stream (0: the
	// connection).
	windowUpdates map[uint32]int64
	// closed is the error that ended reading: io.EOF or a reset when the
	// server closed the connection; nil while it is open.
	closed error
	// badFrame is a frame from the server the Framer refused (of one
	// stream, or of the connection: then it is also closed).
	badFrame error
}

// serverClosed reports whether the server ended the connection.
func (s *seen) serverClosed() bool {
	var ce http2.ConnectionError
	return s.closed != nil && !isTimeout(s.closed) && !errors.Is(s.closed, net.ErrClosed) && !errors.As(s.closed, &ce)
}

// lastGoAway returns the last GOAWAY, if any.
func (s *seen) lastGoAway() (goAway, bool) {
	if len(s.goAways) == 0 {
		return goAway{}, false
	}
	return s.goAways[len(s.goAways)-1], true
}

func (s *seen) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d frames", s.frames)
	for _, g := range s.goAways {
		fmt.Fprintf(&b, ", GOAWAY %v last stream %d %q", g.code, g.lastID, g.debug)
	}
	if len(s.rst) > 0 {
		n := 0
		for id, code := range s.rst {
			if n++; n > 5 {
				fmt.Fprintf(&b, " (%d RST_STREAM in all)", len(s.rst))
				break
			}
			fmt.Fprintf(&b, ", RST_STREAM %d %v", id, code)
		}
	}
	if len(s.resp) > 0 {
		n := 0
		for id, r := range s.resp {
			if n++; n > 5 {
				fmt.Fprintf(&b, " (%d responses in all)", len(s.resp))
				break
			}
			fmt.Fprintf(&b, ", stream %d: :status %q grpc-status %q %q, %d data bytes, ended %v", id, r.status, r.grpcStatus, r.grpcMessage, r.dataBytes, r.ended)
		}
	}
	if s.badFrame != nil {
		fmt.Fprintf(&b, ", bad frame %v", s.badFrame)
	}
	switch {
	case s.closed == nil:
		b.WriteString(", open")
	case s.serverClosed():
		fmt.Fprintf(&b, ", closed by the server (%v)", s.closed)
	default:
		fmt.Fprintf(&b, ", reading stopped (%v)", s.closed)
	}
	return b.String()
}

// reader records, from its own goroutine, every frame the server sends.
type reader struct {
	mu      sync.Mutex
	s       seen
	changed chan struct{} // a token after each change
}

// startReader starts reading the connection in a goroutine, for at most
// readerLimit; it ends when the connection closes. Call it after the
// handshake and at most once.
func (c *rawConn) startReader() *reader {
	r := &reader{
		s:       seen{rst: map[uint32]http2.ErrCode{}, resp: map[uint32]*response{}, windowUpdates: map[uint32]int64{}},
		changed: make(chan struct{}, 1),
	}
	c.readerDone = make(chan struct{})
	_ = c.nc.SetReadDeadline(time.Now().Add(readerLimit))
	go func() {
		defer close(c.readerDone)
		for {
			f, err := c.rd.ReadFrame()
			r.mu.Lock()
			var se http2.StreamError
			switch {
			case errors.As(err, &se):
				r.s.badFrame = err // a frame the framer refused; its stream only
			case err != nil:
				r.s.closed = err
				var ce http2.ConnectionError
				if errors.As(err, &ce) {
					r.s.badFrame = err // the server broke the protocol
				}
			default:
				r.record(f)
			}
			r.mu.Unlock()
			select {
			case r.changed <- struct{}{}:
			default:
			}
			if err != nil && !errors.As(err, &se) {
				return
			}
		}
	}()
	return r
}

func (r *reader) record(f http2.Frame) {
	s := &r.s
	s.frames++
	stream := func(id uint32) *response {
		if s.resp[id] == nil {
			s.resp[id] = &response{}
		}
		return s.resp[id]
	}
	switch f := f.(type) {
	case *http2.SettingsFrame:
		if f.IsAck() {
			s.acks++
		} else {
			s.settings++
		}
	case *http2.PingFrame:
		if f.IsAck() {
			s.pingAcks++
		} else {
			s.pings++
		}
	case *http2.GoAwayFrame:
		s.goAways = append(s.goAways, goAway{code: f.ErrCode, lastID: f.LastStreamID, debug: string(f.DebugData())})
	case *http2.RSTStreamFrame:
		s.rst[f.StreamID] = f.ErrCode
	case *http2.MetaHeadersFrame:
		resp := stream(f.StreamID)
		for _, hf := range f.Fields {
			switch hf.Name {
			case ":status":
				resp.status = hf.Value
			case "grpc-status":
				resp.grpcStatus = hf.Value
			case "grpc-message":
				resp.grpcMessage = hf.Value
			}
		}
		resp.ended = resp.ended || f.StreamEnded()
	case *http2.WindowUpdateFrame:
		s.windowUpdates[f.StreamID] += int64(f.Increment)
	case *http2.DataFrame:
		resp := stream(f.StreamID)
		resp.dataBytes += len(f.Data())
		if keep := maxKeptData - len(resp.data); keep > 0 {
			resp.data = append(resp.data, f.Data()[:min(keep, len(f.Data()))]...)
		}
		resp.ended = resp.ended || f.StreamEnded()
	}
}

// wait waits up to d for cond to hold of what the reader saw, or for the
// connection to end, and reports whether cond held.
func (r *reader) wait(d time.Duration, cond func(*seen) bool) bool {
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	for {
		r.mu.Lock()
		ok, ended := cond(&r.s), r.s.closed != nil
		r.mu.Unlock()
		if ok || ended {
			return ok
		}
		select {
		case <-r.changed:
		case <-deadline.C:
			return false
		}
	}
}

// waitClosed waits up to d for the connection to end.
func (r *reader) waitClosed(d time.Duration) bool {
	r.wait(d, func(*seen) bool { return false })
	return r.snapshot(func(s *seen) bool { return s.closed != nil })
}

// snapshot runs fn on what the reader saw, under its lock.
func snapshotOf[T any](r *reader, fn func(*seen) T) T {
	r.mu.Lock()
	defer r.mu.Unlock()
	return fn(&r.s)
}

func (r *reader) snapshot(fn func(*seen) bool) bool { return snapshotOf(r, fn) }

// describe prints what the reader saw.
func (r *reader) describe() string { return snapshotOf(r, (*seen).String) }

// streamDone reports whether the server ended stream id: its response
// ended, it was reset, or the connection ended.
func streamDone(id uint32) func(*seen) bool {
	return func(s *seen) bool {
		if _, ok := s.rst[id]; ok {
			return true
		}
		resp := s.resp[id]
		return resp != nil && resp.ended
	}
}

// isTimeout reports whether err is a deadline passing.
func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// isClosedByPeer reports whether a write error means the peer closed the
// connection (as opposed to a timeout: the peer stopped reading).
func isClosedByPeer(err error) bool {
	return err != nil && !isTimeout(err) &&
		(errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, io.EOF))
}

// --- Outcome checks -------------------------------------------------------

// expectConnError checks that the server treats what was sent as a
// connection error of type code (RFC 9113 §5.4.1): it closes the
// connection within d, after a GOAWAY that, when it could be read (a
// server may close without one, or the close may discard it), carries
// code.
func expectConnError(t *testing.T, r *reader, code http2.ErrCode, d time.Duration) {
	t.Helper()
	if !r.waitClosed(d) {
		t.Errorf("connection still open %v later, want a connection error %v: %s", d, code, r.describe())
		return
	}
	snapshotOf(r, func(s *seen) bool {
		if !s.serverClosed() {
			t.Errorf("reading stopped (%v) before the server closed, want a connection error %v: %s", s.closed, code, s)
		}
		if g, ok := s.lastGoAway(); ok && g.code != code {
			t.Errorf("GOAWAY %v, want %v: %s", g.code, code, s)
		}
		return true
	})
}

// expectStreamError checks that the server treats what was sent on stream
// id as a stream error of type code (RFC 9113 §5.4.2): RST_STREAM with
// code within d, or, as the RFC allows, a connection error of that type.
func expectStreamError(t *testing.T, r *reader, id uint32, code http2.ErrCode, d time.Duration) {
	t.Helper()
	r.wait(d, func(s *seen) bool { _, ok := s.rst[id]; return ok })
	snapshotOf(r, func(s *seen) bool {
		if got, ok := s.rst[id]; ok {
			if got != code {
				t.Errorf("RST_STREAM %d %v, want %v: %s", id, got, code, s)
			}
			return true
		}
		if s.serverClosed() {
			if g, ok := s.lastGoAway(); ok && g.code != code {
				t.Errorf("connection closed with GOAWAY %v, want RST_STREAM %d %v (or GOAWAY %v): %s", g.code, id, code, code, s)
			}
			return true
		}
		t.Errorf("no RST_STREAM %d %v within %v: %s", id, code, d, s)
		return false
	})
}

// expectErrorOrServed accepts, besides the RFC's error of type code (a
// RST_STREAM of stream fault when it is not 0, or a connection error), a
// server that ignores the violation, as grpc-go's does for some, provided
// it goes on serving: the call on stream next succeeds. It reports whether
// the violation was ignored.
func expectErrorOrServed(t *testing.T, r *reader, code http2.ErrCode, fault, next uint32, d time.Duration) (ignored bool) {
	t.Helper()
	r.wait(d, func(s *seen) bool {
		_, rst := s.rst[fault]
		return (fault != 0 && rst) || streamDone(next)(s)
	})
	return snapshotOf(r, func(s *seen) bool {
		if got, ok := s.rst[fault]; ok && fault != 0 {
			if got != code {
				t.Errorf("RST_STREAM %d %v, want %v: %s", fault, got, code, s)
			}
			return false
		}
		if s.serverClosed() {
			if g, ok := s.lastGoAway(); ok && g.code != code {
				t.Errorf("GOAWAY %v, want %v: %s", g.code, code, s)
			}
			return false
		}
		if resp := s.resp[next]; resp == nil || !resp.ended || resp.grpcStatus != "0" {
			t.Errorf("neither %v within %v nor the connection serving the next call: %s", code, d, s)
			return false
		}
		return true
	})
}

// expectCallOK checks that stream id completes within d with grpc-status 0.
func expectCallOK(t *testing.T, r *reader, id uint32, d time.Duration) {
	t.Helper()
	if !r.wait(d, streamDone(id)) {
		t.Errorf("call on stream %d not answered within %v: %s", id, d, r.describe())
		return
	}
	snapshotOf(r, func(s *seen) bool {
		resp := s.resp[id]
		if resp == nil || resp.grpcStatus != "0" {
			t.Errorf("call on stream %d did not succeed: %s", id, s)
		}
		return true
	})
}

// --- Memory ---------------------------------------------------------------

// procMem returns a process's resident set size and its peak (VmRSS and
// VmHWM), in bytes.
func procMem(pid int) (rss, hwm int64, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, err
	}
	field := func(name string) int64 {
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, name+":"); ok {
				kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
				return kb << 10
			}
		}
		return 0
	}
	return field("VmRSS"), field("VmHWM"), nil
}

// memWatch samples a process's RSS from a baseline until stopped.
type memWatch struct {
	pid     int
	base    int64 // VmRSS at the start
	baseHWM int64 // VmHWM at the start
	peak    atomic.Int64
	stopc   chan struct{}
	done    chan struct{}
}

// watchMem starts sampling pid's RSS every few milliseconds.
func watchMem(t *testing.T, pid int) *memWatch {
	t.Helper()
	rss, hwm, err := procMem(pid)
	if err != nil {
		t.Fatalf("reading notifyd's memory: %v", err)
	}
	m := &memWatch{pid: pid, base: rss, baseHWM: hwm, stopc: make(chan struct{}), done: make(chan struct{})}
	m.peak.Store(rss)
	go func() {
		defer close(m.done)
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-m.stopc:
				return
			case <-tick.C:
			}
			if rss, _, err := procMem(pid); err == nil && rss > m.peak.Load() {
				m.peak.Store(rss)
			}
		}
	}()
	t.Cleanup(m.stop)
	return m
}

func (m *memWatch) stop() {
	select {
	case <-m.stopc:
	default:
		close(m.stopc)
	}
	<-m.done
}

// growth stops sampling and returns the largest RSS growth over the
// baseline seen during the watch: sampled, or the process's peak when it
// rose during the watch (a spike between samples).
func (m *memWatch) growth() (growth, base int64) {
	m.stop()
	peak := m.peak.Load()
	if rss, hwm, err := procMem(m.pid); err == nil {
		peak = max(peak, rss)
		if hwm > m.baseHWM {
			peak = max(peak, hwm)
		}
	}
	return peak - m.base, m.base
}

func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }

// --- A well-behaved client ------------------------------------------------

const (
	// monitorRoom is the room the well-behaved client publishes to and
	// subscribes to.
	monitorRoom = "restaurant:monitor"
	// monitorCallTimeout bounds each of its calls: a call the server does
	// not answer within it counts as failed.
	monitorCallTimeout = 5 * time.Second
	// monitorPace is the pause between its publishes.
	monitorPace = 20 * time.Millisecond
	// monitorMinSuccess is the share of its calls that must succeed.
	monitorMinSuccess = 0.99
)

// monitor is a well-behaved grpc-go client on a connection of its own: a
// goroutine publishing unary calls in a loop, and one Subscribe stream to
// the room it publishes to, for the whole of an attack.
type monitor struct {
	conn   *grpc.ClientConn
	client notifyv1.NotificationServiceClient
	ctx    context.Context // carries the service token

	calls, fails atomic.Int64
	mu           sync.Mutex
	firstErr     error
	received     map[string]bool // event ids delivered on the stream
	streamErr    error           // why the stream ended, if it did
	gotEvent     chan struct{}   // a token after each delivery

	stopc     chan struct{}
	pubDone   chan struct{}
	subDone   chan struct{}
	cancelSub context.CancelFunc
}

// startMonitor connects a well-behaved client to d, opens its Subscribe
// stream (waiting for its Connected message) and starts publishing.
func startMonitor(t *testing.T, d *daemon, svc string) *monitor {
	t.Helper()
	conn, err := grpc.NewClient("passthrough:///"+d.grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatalf("grpc.NewClient: %v", err)
	}
	m := &monitor{
		conn:     conn,
		client:   notifyv1.NewNotificationServiceClient(conn),
		ctx:      metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+svc),
		received: map[string]bool{},
		gotEvent: make(chan struct{}, 1),
		stopc:    make(chan struct{}),
		pubDone:  make(chan struct{}),
		subDone:  make(chan struct{}),
	}
	subCtx, cancel := context.WithCancel(m.ctx)
	m.cancelSub = cancel
	t.Cleanup(func() {
		m.stopPublishing()
		cancel()
		<-m.subDone
		conn.Close()
	})
	openCtx, openCancel := context.WithTimeout(subCtx, startTimeout)
	defer openCancel()
	st, err := m.client.Subscribe(subCtx, &notifyv1.SubscribeRequest{Rooms: []string{monitorRoom}})
	if err != nil {
		close(m.subDone)
		close(m.pubDone)
		t.Fatalf("monitor Subscribe: %v", err)
	}
	first := make(chan error, 1)
	go func() {
		defer close(m.subDone)
		msg, err := st.Recv()
		if err == nil && msg.GetConnected() == nil {
			err = fmt.Errorf("first message %v, want Connected", msg)
		}
		first <- err
		for err == nil {
			msg, err = st.Recv()
			if err != nil {
				break
			}
			m.mu.Lock()
			for _, ev := range msg.Events {
				m.received[ev.Id] = true
			}
			m.mu.Unlock()
			select {
			case m.gotEvent <- struct{}{}:
			default:
			}
		}
		m.mu.Lock()
		m.streamErr = err
		m.mu.Unlock()
	}()
	select {
	case err := <-first:
		if err != nil {
			close(m.pubDone)
			t.Fatalf("monitor Subscribe: %v", err)
		}
	case <-openCtx.Done():
		close(m.pubDone)
		t.Fatalf("monitor Subscribe: no Connected within %v", startTimeout)
	}
	go m.publishLoop()
	return m
}

func (m *monitor) publishLoop() {
	defer close(m.pubDone)
	for i := 0; ; i++ {
		select {
		case <-m.stopc:
			return
		case <-time.After(monitorPace):
		}
		ctx, cancel := context.WithTimeout(m.ctx, monitorCallTimeout)
		_, err := m.client.Publish(ctx, publishRequest(monitorRoom, fmt.Sprintf("mon-%d", i)))
		cancel()
		m.calls.Add(1)
		if err != nil {
			m.fails.Add(1)
			m.mu.Lock()
			if m.firstErr == nil {
				m.firstErr = err
			}
			m.mu.Unlock()
		}
	}
}

// stopPublishing ends the publishing loop; a call in flight is finished
// (it is bounded by monitorCallTimeout), so a server that stopped
// answering shows as a failed call.
func (m *monitor) stopPublishing() {
	select {
	case <-m.stopc:
	default:
		close(m.stopc)
	}
	<-m.pubDone
}

// check stops publishing and checks that the client was served through
// the attack: enough of its calls succeeded, its stream is still open, and
// one more publish is delivered on that stream.
func (m *monitor) check(t *testing.T) {
	t.Helper()
	m.stopPublishing()
	calls, fails := m.calls.Load(), m.fails.Load()
	m.mu.Lock()
	firstErr := m.firstErr
	m.mu.Unlock()
	if calls > 0 && float64(calls-fails) < monitorMinSuccess*float64(calls) {
		t.Errorf("well-behaved client: %d of %d publishes failed during the attack (first: %v), want at least %.0f%% to succeed",
			fails, calls, firstErr, 100*monitorMinSuccess)
	}
	t.Logf("well-behaved client: %d publishes during the attack, %d failed", calls, fails)

	ctx, cancel := context.WithTimeout(m.ctx, monitorCallTimeout)
	defer cancel()
	resp, err := m.client.Publish(ctx, publishRequest(monitorRoom, "mon-final"))
	if err != nil {
		t.Errorf("well-behaved client: publish after the attack: %v", err)
		return
	}
	for {
		m.mu.Lock()
		got, streamErr := m.received[resp.EventId], m.streamErr
		m.mu.Unlock()
		if got {
			return
		}
		if streamErr != nil {
			t.Errorf("well-behaved client: its Subscribe stream ended: %v", streamErr)
			return
		}
		select {
		case <-m.gotEvent:
		case <-ctx.Done():
			t.Errorf("well-behaved client: event %s published after the attack not delivered on its stream within %v", resp.EventId, monitorCallTimeout)
			return
		}
	}
}

// checkServing checks that d is still running and reports SERVING on its
// native port's health service.
func checkServing(t *testing.T, d *daemon) {
	t.Helper()
	select {
	case <-d.done:
		t.Errorf("notifyd exited during the attack: %v", d.waitErr)
		return
	default:
	}
	conn, err := grpc.NewClient("passthrough:///"+d.grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatalf("grpc.NewClient: %v", err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), monitorCallTimeout)
	defer cancel()
	resp, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
	if err != nil || resp.Status != healthpb.HealthCheckResponse_SERVING {
		t.Errorf("health after the attack: %v, %v; want SERVING", resp, err)
	}
}
