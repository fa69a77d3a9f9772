package main

// The attack suite's raw HTTP/2 client: a connection that writes exactly
// the frames it is told to (valid or not) with golang.org/x/net/http2's
// Framer, the HPACK and gRPC helpers that build its requests, and a reader
// that records what the server answers. The checks made of what it
// recorded, notifyd's memory and the well-behaved client are in
// attack_checks_test.go; TestAttack and its cases in attack_test.go.

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
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
