package wire

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
)

const (
	// defaultWindow is HTTP/2's initial flow-control window.
	defaultWindow = 65535
	// defaultMaxFrame is HTTP/2's initial maximum frame size.
	defaultMaxFrame = 16384
	// maxHeaderList bounds a request's decoded header fields.
	maxHeaderList = 64 << 10
	// ackThreshold: received bytes are acknowledged (WINDOW_UPDATE) once
	// this many have been consumed on a stream or the connection.
	ackThreshold = defaultWindow / 4
)

var errConnClosed = errors.New("wire: connection closed")

// conn is one client connection. Its reader goroutine (serve) reads and
// handles every frame; its writer goroutine (writeLoop) exists while there
// is output or a stream to pump.
type conn struct {
	srv  *Server
	nc   net.Conn
	rd   lazyReader
	fr   *http2.Framer
	peer *peer.Peer
	ctx  context.Context // parent of the streams' contexts
	stop context.CancelFunc

	lastRead atomic.Int64 // Unix nanoseconds of the last frame read
	sentData atomic.Bool  // data or headers written since the last client ping
	writing  atomic.Bool  // a writer goroutine runs
	inflight atomic.Int32 // unary calls running: more requests are likely

	qmu    sync.Mutex // guards runq; never held while taking mu
	runq   []*stream  // streams whose pump is due
	spareq []*stream  // the other run queue, while the writer has none

	// Reader goroutine only.
	hdec        *hpack.Decoder
	fields      []hpack.HeaderField // the header block being read
	hid         uint32              // its stream
	hend        bool                // its HEADERS ended the stream
	hsize       int                 // its size so far
	htrunc      bool                // it exceeded maxHeaderList
	recvUnacked uint32              // connection bytes received and not yet acknowledged
	lastPing    time.Time           // the client's last ping
	pingStrikes int

	mu          sync.Mutex // guards what follows; lock order: a hub subscriber's lock, then mu
	cond        *sync.Cond // on mu: flow-control windows changed or streams closed
	streams     map[uint32]*stream
	maxID       uint32    // highest stream id seen
	out         []byte    // frames to write
	spare       []byte    // the other output buffer
	flowq       []*stream // streams with data waiting for the connection window
	closed      bool      // no more output; streams are closed
	goaway      bool      // GOAWAY sent: no new streams
	sendWindow  int64     // connection send window
	peerWindow  int64     // the client's initial stream window
	peerFrame   int       // the client's maximum frame size
	enc         *hpack.Encoder
	hbuf        bytes.Buffer
	pingPending bool // a keepalive ping awaits any frame
	pingAt      int64
	ka          *time.Timer
}

func newConn(s *Server, nc net.Conn) *conn {
	c := &conn{
		srv:        s,
		nc:         nc,
		streams:    make(map[uint32]*stream),
		sendWindow: defaultWindow,
		peerWindow: defaultWindow,
		peerFrame:  defaultMaxFrame,
	}
	c.cond = sync.NewCond(&c.mu)
	c.enc = hpack.NewEncoder(&c.hbuf)
	c.rd.nc = nc
	c.rd.busy = &c.inflight
	c.ctx, c.stop = context.WithCancel(context.Background())
	return c
}

// serve runs the connection's reader until the connection ends.
func (c *conn) serve() {
	err := c.handshake()
	if err == nil {
		err = c.readLoop()
	}
	c.close(err)
	c.rd.cur = nil
	c.rd.release()
}

// handshake completes TLS (with ALPN h2) when the listener gave a TLS
// connection, reads the client preface and sends the server's settings.
func (c *conn) handshake() error {
	deadline := time.Now().Add(c.srv.cfg.HandshakeTimeout)
	_ = c.nc.SetDeadline(deadline)
	p := &peer.Peer{Addr: c.nc.RemoteAddr(), LocalAddr: c.nc.LocalAddr()}
	if tc, ok := c.nc.(*tls.Conn); ok {
		if err := tc.Handshake(); err != nil {
			return fmt.Errorf("tls handshake: %w", err)
		}
		cs := tc.ConnectionState()
		if cs.NegotiatedProtocol != "h2" {
			return fmt.Errorf("tls: client did not negotiate h2 (ALPN %q)", cs.NegotiatedProtocol)
		}
		p.AuthInfo = credentials.TLSInfo{State: cs, CommonAuthInfo: credentials.CommonAuthInfo{SecurityLevel: credentials.PrivacyAndIntegrity}}
	}
	c.peer = p
	var preface [len(http2.ClientPreface)]byte
	if _, err := io.ReadFull(c.nc, preface[:]); err != nil {
		return fmt.Errorf("client preface: %w", err)
	}
	if string(preface[:]) != http2.ClientPreface {
		return errors.New("client preface: not HTTP/2")
	}
	_ = c.nc.SetDeadline(time.Time{})

	c.fr = http2.NewFramer(nil, &c.rd)
	c.hdec = hpack.NewDecoder(4096, c.emitField)
	c.hdec.SetMaxStringLength(maxHeaderList)
	c.fr.SetMaxReadFrameSize(defaultMaxFrame)
	c.fr.SetReuseFrames()
	c.lastRead.Store(time.Now().UnixNano())

	c.mu.Lock()
	c.out = appendSettings(c.out,
		http2.Setting{ID: http2.SettingMaxHeaderListSize, Val: maxHeaderList},
	)
	c.wakeLocked()
	c.ka = time.AfterFunc(c.srv.cfg.KeepaliveTime, c.keepalive)
	c.mu.Unlock()
	return nil
}

// readLoop reads and handles frames until the connection fails.
func (c *conn) readLoop() error {
	for {
		f, err := c.fr.ReadFrame()
		if err != nil {
			var se http2.StreamError
			if errors.As(err, &se) {
				c.resetStream(se.StreamID, se.Code)
				continue
			}
			var ce http2.ConnectionError
			if errors.As(err, &ce) {
				c.goAway(http2.ErrCode(ce), "")
			}
			return err
		}
		c.lastRead.Store(time.Now().UnixNano())
		switch f := f.(type) {
		case *http2.HeadersFrame:
			c.hid, c.hend = f.StreamID, f.StreamEnded()
			c.fields, c.hsize, c.htrunc = c.fields[:0], 0, false
			if err := c.headerFragment(f.HeaderBlockFragment(), f.HeadersEnded()); err != nil {
				return err
			}
		case *http2.ContinuationFrame:
			if err := c.headerFragment(f.HeaderBlockFragment(), f.HeadersEnded()); err != nil {
				return err
			}
		case *http2.DataFrame:
			c.onData(f)
		case *http2.WindowUpdateFrame:
			c.onWindowUpdate(f)
		case *http2.SettingsFrame:
			if err := c.onSettings(f); err != nil {
				return err
			}
		case *http2.PingFrame:
			if err := c.onPing(f); err != nil {
				return err
			}
		case *http2.RSTStreamFrame:
			c.onReset(f.StreamID)
		case *http2.GoAwayFrame:
			// The client closes the connection when its calls are done.
		}
	}
}

// headerFragment decodes a piece of a header block (HEADERS, then any
// CONTINUATION: the framer checks their order) into c.fields, reused from
// one block to the next; the last piece handles the block.
func (c *conn) headerFragment(b []byte, last bool) error {
	if _, err := c.hdec.Write(b); err != nil {
		c.goAway(http2.ErrCodeCompression, "")
		return fmt.Errorf("wire: header block: %w", err)
	}
	if !last {
		return nil
	}
	if err := c.hdec.Close(); err != nil {
		c.goAway(http2.ErrCodeCompression, "")
		return fmt.Errorf("wire: header block: %w", err)
	}
	c.onHeaders(c.hid, c.hend)
	clear(c.fields) // the strings live on in the request, not here
	c.fields = c.fields[:0]
	return nil
}

// emitField collects one decoded header field, up to maxHeaderList bytes
// of them (as HTTP/2 counts: name, value and 32 per field).
func (c *conn) emitField(f hpack.HeaderField) {
	c.hsize += int(f.Size())
	if c.hsize > maxHeaderList {
		c.htrunc = true
		return
	}
	c.fields = append(c.fields, f)
}

// onHeaders starts a stream, or ends a client's sending side.
func (c *conn) onHeaders(id uint32, ended bool) {
	c.mu.Lock()
	if st := c.streams[id]; st != nil {
		c.mu.Unlock()
		// Trailers from the client end its side of the stream.
		if ended {
			st.endRecv()
		}
		return
	}
	if id%2 == 0 || id <= c.maxID {
		c.mu.Unlock()
		c.goAway(http2.ErrCodeProtocol, "bad stream id")
		c.close(errors.New("wire: bad stream id"))
		return
	}
	c.maxID = id
	if c.goaway || c.closed || len(c.streams) >= c.srv.cfg.MaxConcurrentStreams {
		c.out = appendRST(c.out, id, http2.ErrCodeRefusedStream)
		c.wakeLocked()
		c.mu.Unlock()
		return
	}
	st := &stream{id: id, c: c, sendWindow: c.peerWindow}
	c.streams[id] = st
	c.mu.Unlock()
	c.sentData.Store(true) // a new call: the client's pings are legitimate again (as data sent)

	if c.htrunc {
		st.fail(statusError(codeResourceExhausted, "header list larger than %d bytes", maxHeaderList))
		return
	}
	req, err := parseRequest(c.fields)
	if err != nil {
		st.fail(err)
		return
	}
	st.start(req, ended)
}

// onData passes a DATA frame's bytes to its stream and acknowledges them.
func (c *conn) onData(f *http2.DataFrame) {
	n := f.Length // with padding: it counts against the window
	c.recvUnacked += n
	ack := c.recvUnacked >= ackThreshold
	if ack {
		c.mu.Lock()
		c.out = appendWindowUpdate(c.out, 0, c.recvUnacked)
		c.wakeLocked()
		c.mu.Unlock()
		c.recvUnacked = 0
	}
	c.mu.Lock()
	st := c.streams[f.StreamID]
	c.mu.Unlock()
	if st == nil {
		return // a stream already ended: its late data only counts for the connection
	}
	st.onData(f.Data(), n, f.StreamEnded())
}

func (c *conn) onWindowUpdate(f *http2.WindowUpdateFrame) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if f.StreamID == 0 {
		c.sendWindow += int64(f.Increment)
		q := c.flowq
		c.flowq = nil
		for _, st := range q {
			st.inFlowq = false
			c.flushLocked(st)
		}
	} else if st := c.streams[f.StreamID]; st != nil {
		st.sendWindow += int64(f.Increment)
		c.flushLocked(st)
	}
	c.cond.Broadcast()
}

func (c *conn) onSettings(f *http2.SettingsFrame) error {
	if f.IsAck() {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	err := f.ForeachSetting(func(s http2.Setting) error {
		switch s.ID {
		case http2.SettingInitialWindowSize:
			delta := int64(s.Val) - c.peerWindow
			c.peerWindow = int64(s.Val)
			for _, st := range c.streams {
				st.sendWindow += delta
			}
		case http2.SettingMaxFrameSize:
			c.peerFrame = int(s.Val)
		case http2.SettingHeaderTableSize:
			c.enc.SetMaxDynamicTableSizeLimit(s.Val)
		}
		return nil
	})
	if err != nil {
		return err
	}
	c.out = appendSettingsAck(c.out)
	for _, st := range c.streams {
		c.flushLocked(st)
	}
	c.cond.Broadcast()
	c.wakeLocked()
	return nil
}

// onPing answers a ping, and ends a connection whose client pings more
// often than the server allows while nothing is being sent to it.
func (c *conn) onPing(f *http2.PingFrame) error {
	if f.IsAck() {
		return nil
	}
	now := time.Now()
	if c.sentData.Swap(false) {
		c.pingStrikes = 0
	} else if !c.lastPing.IsZero() && now.Sub(c.lastPing) < c.srv.cfg.MinPingInterval {
		c.pingStrikes++
		if c.pingStrikes > 2 {
			c.goAway(http2.ErrCodeEnhanceYourCalm, "too_many_pings")
			return errors.New("wire: client pings too often")
		}
	}
	c.lastPing = now
	c.mu.Lock()
	c.out = appendPing(c.out, true, f.Data)
	c.wakeLocked()
	c.mu.Unlock()
	return nil
}

func (c *conn) onReset(id uint32) {
	c.mu.Lock()
	st := c.streams[id]
	if st != nil {
		c.removeLocked(st)
	}
	c.mu.Unlock()
	if st != nil {
		st.cancel()
	}
}

// resetStream resets a stream the reader found at fault.
func (c *conn) resetStream(id uint32, code http2.ErrCode) {
	c.mu.Lock()
	st := c.streams[id]
	if st != nil {
		c.removeLocked(st)
	}
	c.out = appendRST(c.out, id, code)
	c.wakeLocked()
	c.mu.Unlock()
	if st != nil {
		st.cancel()
	}
}

// removeLocked forgets st: it takes no more output.
func (c *conn) removeLocked(st *stream) {
	st.closed = true
	st.pending = nil
	delete(c.streams, st.id)
	c.cond.Broadcast()
	if c.goaway && len(c.streams) == 0 {
		c.wakeLocked() // the writer closes the drained connection
	}
}

// goAway queues a GOAWAY: the connection takes no new streams.
func (c *conn) goAway(code http2.ErrCode, debug string) {
	c.mu.Lock()
	if !c.closed {
		c.goaway = true
		c.out = appendGoAway(c.out, c.maxID, code, debug)
		c.wakeLocked()
	}
	c.mu.Unlock()
}

// drain sends GOAWAY; the connection closes once its streams have ended.
func (c *conn) drain() {
	c.goAway(http2.ErrCodeNo, "")
}

// keepalive pings a silent connection and closes one that stays silent.
func (c *conn) keepalive() {
	now := time.Now().UnixNano()
	last := c.lastRead.Load()
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	if c.pingPending {
		if last < c.pingAt {
			c.mu.Unlock()
			c.close(errors.New("wire: keepalive ping unanswered"))
			return
		}
		c.pingPending = false
	}
	idle := time.Duration(now - last)
	if idle >= c.srv.cfg.KeepaliveTime {
		c.pingPending = true
		c.pingAt = now
		c.out = appendPing(c.out, false, [8]byte{'k', 'e', 'e', 'p', 'a', 'l', 'v', 'e'})
		c.wakeLocked()
		c.ka.Reset(c.srv.cfg.KeepaliveTimeout)
	} else {
		c.ka.Reset(c.srv.cfg.KeepaliveTime - idle)
	}
	c.mu.Unlock()
}

// close ends the connection and every stream on it.
func (c *conn) close(err error) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	c.closed = true
	if c.ka != nil {
		c.ka.Stop()
	}
	streams := make([]*stream, 0, len(c.streams))
	for _, st := range c.streams {
		streams = append(streams, st)
		st.closed = true
		st.pending = nil
	}
	clear(c.streams)
	c.flowq = nil
	c.cond.Broadcast()
	writing := c.writing.Load()
	c.mu.Unlock()
	c.stop()
	for _, st := range streams {
		st.cancel()
	}
	if writing {
		// The running writer flushes what is queued (a GOAWAY) and closes
		// nc; the deadline bounds a write stuck on a client that does not
		// read.
		_ = c.nc.SetWriteDeadline(time.Now().Add(time.Second))
	} else {
		c.nc.Close()
	}
	c.srv.removeConn(c)
	if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) && !errors.Is(err, ErrServerStopped) {
		c.srv.cfg.Log.Debug("connection closed", "remote", c.nc.RemoteAddr().String(), "err", err)
	}
}

// wakeLocked makes sure a writer goroutine runs.
func (c *conn) wakeLocked() {
	if !c.closed {
		c.startWriter()
	}
}

// startWriter starts a writer goroutine unless one runs.
func (c *conn) startWriter() {
	if c.writing.CompareAndSwap(false, true) {
		go c.writeLoop()
	}
}

// writeLoop runs due pumps and writes the output until there is neither;
// it then exits, so that a quiet connection holds no writer goroutine.
// Kicks only take the run queue's own lock (qmu), never mu, so that a
// delivery to many streams does not wait behind the writers.
func (c *conn) writeLoop() {
	yielded := false
	for {
		// The two run queues alternate: kicks append to one while this
		// goroutine runs the other.
		c.qmu.Lock()
		q := c.runq
		c.runq = c.spareq[:0]
		c.spareq = nil
		c.qmu.Unlock()
		for _, st := range q {
			st.kicked.Store(false) // a kick from now on queues it again
			st.runPump()
		}
		clear(q)
		c.qmu.Lock()
		c.spareq = q[:0]
		c.qmu.Unlock()
		if len(q) > 0 {
			continue
		}

		c.mu.Lock()
		if c.closed {
			last := c.out
			c.out, c.spare = nil, nil
			c.mu.Unlock()
			if len(last) > 0 {
				_, _ = c.nc.Write(last)
			}
			c.nc.Close()
			c.writing.Store(false)
			return
		}
		if len(c.out) == 0 {
			if c.goaway && len(c.streams) == 0 {
				c.mu.Unlock()
				c.writing.Store(false)
				c.close(nil)
				return
			}
			putBuf(c.spare)
			putBuf(c.out)
			c.out, c.spare = nil, nil
			c.mu.Unlock()
			c.writing.Store(false)
			// Work queued after the looks above finds writing true and
			// relies on this goroutine: look again, and go on if there
			// is some and no other writer took it.
			c.qmu.Lock()
			more := len(c.runq) > 0
			c.qmu.Unlock()
			c.mu.Lock()
			more = more || (len(c.out) > 0 && !c.closed)
			c.mu.Unlock()
			if more && c.writing.CompareAndSwap(false, true) {
				continue
			}
			return
		}
		if !yielded && c.inflight.Load() > 1 {
			// Other calls on this connection are running: let them add
			// their responses, and write them all at once. A write on
			// loopback costs several microseconds, most of a small call.
			yielded = true
			c.mu.Unlock()
			runtime.Gosched()
			continue
		}
		yielded = false
		buf := c.out
		c.out = c.spare[:0]
		if c.out == nil {
			c.out = getBuf()
		}
		c.mu.Unlock()
		_, err := c.nc.Write(buf)
		c.mu.Lock()
		c.spare = buf[:0]
		c.mu.Unlock()
		if err != nil {
			c.nc.Close()
			c.writing.Store(false)
			c.close(err)
			return
		}
	}
}

// flushLocked moves as much of st's pending data into DATA frames as the
// windows allow; once it is all out, it writes the trailers of a finished
// stream or runs the pump of an attached one.
func (c *conn) flushLocked(st *stream) {
	if st.closed {
		return
	}
	for len(st.pending) > 0 {
		n := int64(len(st.pending))
		n = min(n, st.sendWindow, c.sendWindow)
		if n <= 0 {
			if c.sendWindow <= 0 && st.sendWindow > 0 && !st.inFlowq {
				st.inFlowq = true
				c.flowq = append(c.flowq, st)
			}
			return
		}
		c.out = appendData(c.outBuf(), st.id, st.pending[:n], c.peerFrame)
		st.sendWindow -= n
		c.sendWindow -= n
		st.pending = st.pending[n:]
		c.wakeLocked()
	}
	st.pending = nil
	if st.finished != nil {
		c.trailersLocked(st)
		return
	}
	if st.wantPump {
		st.wantPump = false
		st.kick()
	}
	c.cond.Broadcast()
}

// outBuf returns the output buffer, taking one from the pool if there is
// none.
func (c *conn) outBuf() []byte {
	if c.out == nil {
		c.out = getBuf()
	}
	return c.out
}

// Output buffers are pooled: a quiet connection holds none.
var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, 32<<10); return &b }}

func getBuf() []byte { return (*bufPool.Get().(*[]byte))[:0] }

func putBuf(b []byte) {
	if b == nil || cap(b) > 1<<20 {
		return
	}
	b = b[:0]
	bufPool.Put(&b)
}

// lazyReader reads a connection through a pooled buffer while data flows
// and through a small array of its own otherwise: the pooled buffer is
// taken after a read filled the small array (more is likely waiting), or
// while unary calls are in flight (their client is busy), and given back
// otherwise, so that an idle connection (streams only) waits for its next
// frame holding 64 bytes, not 16 KiB. Only the reader goroutine uses it.
type lazyReader struct {
	nc    net.Conn
	small [64]byte
	big   *[]byte       // pooled; nil while the data is sparse
	cur   []byte        // read and not yet consumed
	full  bool          // the last read filled its buffer
	busy  *atomic.Int32 // calls in flight: their client is likely to send more soon
}

var readPool = sync.Pool{New: func() any { b := make([]byte, 16<<10); return &b }}

func (l *lazyReader) Read(p []byte) (int, error) {
	if len(l.cur) == 0 {
		if err := l.fill(); err != nil {
			return 0, err
		}
	}
	n := copy(p, l.cur)
	l.cur = l.cur[n:]
	return n, nil
}

func (l *lazyReader) fill() error {
	var dst []byte
	if l.full || l.busy.Load() > 0 {
		if l.big == nil {
			l.big = readPool.Get().(*[]byte)
		}
		dst = *l.big
	} else {
		l.release()
		dst = l.small[:]
	}
	n, err := l.nc.Read(dst)
	l.full = n == len(dst)
	l.cur = dst[:n]
	if n > 0 {
		return nil
	}
	if err == nil {
		err = io.ErrNoProgress
	}
	return err
}

// release gives the pooled buffer back.
func (l *lazyReader) release() {
	if l.big != nil {
		readPool.Put(l.big)
		l.big = nil
	}
}
