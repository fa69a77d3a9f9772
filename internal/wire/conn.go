package wire

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/stats"
	"google.golang.org/grpc/status"

	"github.com/maxloyalty/notify/internal/poll"
	"github.com/maxloyalty/notify/internal/sched"
)

const (
	// defaultWindow is HTTP/2's initial flow-control window.
	defaultWindow = 65535
	// maxWindow is the largest flow-control window HTTP/2 allows.
	maxWindow = 1<<31 - 1
	// frameSize is the largest frame the server writes and reads: HTTP/2's
	// initial maximum, which every peer accepts whatever it advertises.
	frameSize = 16384
	// headerTableSize is HPACK's initial dynamic table size, the most the
	// header encoder uses (the peer's SETTINGS_HEADER_TABLE_SIZE may lower
	// it).
	headerTableSize = 4096
	// maxControl bounds the control replies (SETTINGS and PING
	// acknowledgements, RST_STREAM) queued and not yet handed to the
	// writer: past it the reader stops reading until the writer has caught
	// up, so that a peer that sends frames and never reads the replies
	// cannot grow the output (grpc-go's transport uses the same bound).
	maxControl = 50
	// maxOutput bounds the bytes queued for writing on a connection: past
	// it the reader stops reading and handlers' sends wait, so that a peer
	// that does not read cannot grow the output without bound.
	maxOutput = 4 << 20
	// recentResets is how many stream ids reset by the server a
	// connection remembers, to ignore the frames the peer had already sent
	// on them (RFC 9113 §5.1) instead of answering each with a reset.
	recentResets = 32
	// lingerTime and lingerBytes bound how long and how much a connection
	// closed for a protocol error keeps reading (and discarding) after its
	// GOAWAY, so that the GOAWAY reaches the peer instead of a TCP reset.
	lingerTime  = time.Second
	lingerBytes = 1 << 20
)

var (
	errConnClosed = errors.New("wire: connection closed")
	errIdle       = errors.New("wire: connection idle")
	errAged       = errors.New("wire: connection reached its maximum age")

	errCanceledByClient = status.Error(codes.Canceled, "stream reset by the client")
)

// conn is one client connection. Its reader goroutine (serve) reads and
// handles every frame; its writer goroutine (writeLoop) exists while there
// is output or a stream to pump. Only serve closes the network connection.
type conn struct {
	srv   *Server
	nc    net.Conn
	rd    lazyReader
	fr    *framer        // the reader's; nil while parked (see framer)
	dec   *hpack.Decoder // the client's header blocks, decoded by fr; nil once the client indexes nothing (noTable)
	peer  *peer.Peer
	ctx   context.Context // the streams' contexts' parent: the peer, the stats tags; never done
	stats []stats.Handler

	lastRead atomic.Int64 // Unix nanoseconds of the last frame read
	sentData atomic.Bool  // data or headers written since the last client ping
	writing  atomic.Bool  // a writer runs or is queued
	raw      *rawWriter   // nc's socket: parked on; written without blocking unless TLS

	inflight atomic.Int32 // unary calls running: more requests are likely
	pe       poll.Entry   // parked: the server's poller waits for the next bytes, not a reader

	qmu    sync.Mutex // guards runq; never held while taking mu
	runq   []*stream  // streams whose pump is due
	spareq []*stream  // the other run queue, while the writer has none

	// Reader goroutine only (the goroutine changes: see readLoop).
	grown       bool      // the reader did deep work since it started
	lastPing    time.Time // the client's last ping
	pingStrikes int
	opened      int         // streams the client opened, counted up to 3, preflights not (see shrinkTable)
	settingsOut int         // SETTINGS frames sent, the handshake's included
	settingsAck int         // their acknowledgements received
	shrinkAck   int         // the acknowledgement after which the client's header table is empty; 0: not asked
	noTable     atomic.Bool // the client's header table was emptied (for tests, from other goroutines)

	mu          sync.Mutex // guards what follows; lock order: a hub subscriber's lock, then mu
	cond        *sync.Cond // on mu: windows, output, streams or handlers changed
	streams     streamSet
	maxID       uint32 // highest stream id seen
	handlers    int    // handlers running, streams reset or not
	buffered    int    // request bytes held by streams whose handler has not taken them
	out         []byte // frames to write
	spare       []byte // the other output buffer
	flushing    int    // bytes the writer is writing now
	control     int    // control replies in out
	flowq       []*stream
	reset       *[recentResets]uint32 // stream ids the server reset, a ring; made at the first reset
	resetNext   int
	closed      bool          // no more output; streams are closed
	goaway      bool          // GOAWAY sent: no new streams
	failed      bool          // a GOAWAY with an error code was sent: linger before closing
	sendWindow  int64         // connection send window
	peerWindow  int64         // the client's initial stream window
	recvWindow  int64         // connection bytes the client may still send
	recvUnacked int64         // connection bytes received and not yet acknowledged
	enc         *blockEncoder // nil until the second header block (see beginBlockLocked)
	tableLimit  uint32        // the client's SETTINGS_HEADER_TABLE_SIZE, for enc
	blocks      uint8         // header blocks begun, counted up to the first that indexes
	pingPending bool          // a keepalive ping awaits any frame
	pingAt      int64
	ka          sched.Entry // in the server's keepalive schedule
	idleSince   time.Time   // the last stream ended; zero while streams run
	idle        *time.Timer // MaxConnectionIdle
	age         *time.Timer // MaxConnectionAge, then its grace
}

func newConn(s *Server, nc net.Conn) *conn {
	c := &conn{
		srv:        s,
		nc:         nc,
		sendWindow: defaultWindow,
		peerWindow: defaultWindow,
		recvWindow: defaultWindow,
		tableLimit: headerTableSize,
		stats:      s.cfg.StatsHandlers,
	}
	c.cond = sync.NewCond(&c.mu)
	c.rd.nc = nc
	c.raw = newRawWriter(nc)
	c.rd.busy = &c.inflight
	return c
}

// serve runs the connection's reader until the connection ends, then
// closes it: at once, or after a GOAWAY for a protocol error has been
// written and the peer's input drained for a while.
func (c *conn) serve() {
	err := c.handshake()
	if err == nil {
		var handed bool
		if handed, err = c.readLoop(); handed {
			return
		}
	}
	c.end(err)
}

// resume is the reader on a fresh goroutine (see readLoop): it waits for
// the connection's next bytes a few hundred bytes deep, then reads on. The
// bytes may be there already (a TLS connection's, see tlsQuiet).
func (c *conn) resume() {
	var err error
	if len(c.rd.cur) == 0 {
		err = c.rd.fill()
	}
	if err == nil {
		var handed bool
		if handed, err = c.readLoop(); handed {
			return
		}
	}
	c.end(err)
}

// end closes the connection once its reader has stopped.
func (c *conn) end(err error) {
	c.close(err)
	c.waitWriter()
	c.mu.Lock()
	linger := c.failed
	c.mu.Unlock()
	if linger || errors.Is(err, errBadPreface) {
		c.linger()
	}
	c.nc.Close()
	c.rd.cur = nil
	c.rd.release()
	c.srv.poll.Drop(&c.pe)
	if c.ctx != nil {
		for _, h := range c.stats {
			h.HandleConn(c.ctx, &stats.ConnEnd{})
		}
	}
	c.srv.removeConn(c)
}

var errBadPreface = errors.New("wire: client preface: not HTTP/2")

// handshake completes TLS (with ALPN h2) when the listener gave a TLS
// connection, reads the client preface and sends the server's settings.
func (c *conn) handshake() error {
	cfg := &c.srv.cfg
	deadline := time.Now().Add(cfg.HandshakeTimeout)
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
	ctx := peer.NewContext(context.Background(), p)
	for _, h := range c.stats {
		ctx = h.TagConn(ctx, &stats.ConnTagInfo{RemoteAddr: p.Addr, LocalAddr: p.LocalAddr})
		h.HandleConn(ctx, &stats.ConnBegin{})
	}
	c.ctx = ctx

	var preface [len(http2.ClientPreface)]byte
	if _, err := io.ReadFull(c.nc, preface[:]); err != nil {
		return fmt.Errorf("client preface: %w", err)
	}
	if string(preface[:]) != http2.ClientPreface {
		return errBadPreface
	}
	_ = c.nc.SetDeadline(time.Time{})

	c.dec = hpack.NewDecoder(headerTableSize, nil)
	c.lastRead.Store(time.Now().UnixNano())

	c.mu.Lock()
	settings := []http2.Setting{
		{ID: http2.SettingMaxConcurrentStreams, Val: uint32(cfg.MaxConcurrentStreams)},
		{ID: http2.SettingMaxHeaderListSize, Val: cfg.MaxHeaderListSize},
	}
	if cfg.InitialWindowSize != defaultWindow {
		settings = append(settings, http2.Setting{ID: http2.SettingInitialWindowSize, Val: uint32(cfg.InitialWindowSize)})
	}
	c.out = appendSettings(c.outBuf(), settings...)
	c.settingsOut = 1
	if d := int64(cfg.InitialConnWindowSize) - defaultWindow; d > 0 {
		c.out = appendWindowUpdate(c.out, 0, uint32(d))
		c.recvWindow += d
	}
	c.wakeLocked()
	c.srv.keepalive.Add(&c.ka, time.Now().Add(cfg.KeepaliveTime).UnixNano(), c.keepalive)
	if cfg.MaxConnectionIdle > 0 {
		c.idleSince = time.Now()
		c.idle = time.AfterFunc(cfg.MaxConnectionIdle, c.checkIdle)
	}
	if cfg.MaxConnectionAge > 0 {
		c.age = time.AfterFunc(jitter(cfg.MaxConnectionAge), c.aged)
	}
	c.mu.Unlock()
	c.grown = true // the TLS handshake and the first frames ran deep
	return nil
}

// readLoop reads and handles frames until the connection fails. A
// connection error queues its GOAWAY and ends the loop with it; a stream
// error resets that stream only.
//
// Once the reader has nothing left to read (no bytes buffered, no unary
// call in flight whose client is likely to send more), it parks the
// connection on the server's poller and exits: an idle connection holds no
// goroutine, and the poller starts a reader (resume) for its next bytes. A
// goroutine start per burst of requests, none per frame of a busy
// connection. A TLS connection is parked once crypto/tls holds nothing
// unread (tlsQuiet).
//
// A connection the poller cannot take (an in-memory pipe, or any on a
// system without the poller) keeps a waiting reader. A goroutine's stack grows to its
// deepest call and hardly ever shrinks back: the TLS handshake, a header
// block's decoding and a call's dispatch leave the reader with a stack of
// 8 KiB, which a connection carrying one idle stream would keep for the
// stream's life. So once such a reader has done deep work and has nothing
// left to read, it hands the connection to a fresh goroutine (resume),
// whose wait for the next bytes fits the smallest stack, and reports
// handed.
func (c *conn) readLoop() (handed bool, err error) {
	for {
		if !c.throttle() {
			return false, errConnClosed
		}
		if len(c.rd.cur) == 0 && c.inflight.Load() == 0 {
			c.shrinkTable()
			// Once parked, the connection is the next reader's: nothing
			// of the reader's state is touched after park.
			grown := c.grown
			c.grown = false
			if c.park() {
				return true, nil
			}
			if grown {
				go c.resume()
				return true, nil
			}
		} else if len(c.rd.cur) == 0 && c.raw != nil {
			if err := c.waitBusy(); err != nil {
				return false, err
			}
			continue
		}
		f, err := c.framer().ReadFrame()
		if err == nil {
			c.lastRead.Store(time.Now().UnixNano())
			switch f.(type) {
			case *http2.WindowUpdateFrame, *http2.PingFrame:
			default:
				c.grown = true
			}
			err = c.handle(f)
		}
		if err == nil {
			continue
		}
		var se http2.StreamError
		if errors.As(err, &se) {
			c.mu.Lock()
			if se.StreamID > c.maxID && se.StreamID%2 == 1 {
				c.maxID = se.StreamID // a new stream, refused: its id is used
			}
			c.mu.Unlock()
			c.resetStream(se.StreamID, se.Code)
			continue
		}
		if errors.Is(err, http2.ErrFrameTooLarge) {
			err = http2.ConnectionError(http2.ErrCodeFrameSize)
		}
		var ce http2.ConnectionError
		if errors.As(err, &ce) {
			c.goAway(http2.ErrCode(ce), "")
		}
		return false, err
	}
}

// shrinkTable asks the client of a connection that carries one stream,
// and has carried no other, to empty its HPACK table (a
// SETTINGS_HEADER_TABLE_SIZE of 0; onSettings drops the server's copy
// once the client acknowledges it). The table holds the client's first
// request headers, its token among them, for the connection's whole life:
// on a phone's or a browser's own connection it is most of what a
// connection costs beside its stream. Later requests on the connection
// carry their headers whole, which only a connection that starts more
// streams pays for, and such a connection is not asked. Called by the
// reader when it has nothing left to read.
func (c *conn) shrinkTable() {
	if c.shrinkAck != 0 || c.opened != 1 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.streams.len() != 1 || c.closed || c.goaway {
		return
	}
	c.out = appendSettings(c.outBuf(), http2.Setting{ID: http2.SettingHeaderTableSize, Val: 0})
	c.wakeLocked()
	c.settingsOut++
	c.shrinkAck = c.settingsOut
}

// throttle waits while the output holds too many control replies or bytes
// for the writer to catch up; false if the connection closed meanwhile.
func (c *conn) throttle() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	for !c.closed && (c.control >= maxControl || len(c.out)+c.flushing > maxOutput) {
		c.cond.Wait()
	}
	return !c.closed
}

// handle handles one frame; the frame's buffers are the framer's until
// the next read.
func (c *conn) handle(f http2.Frame) error {
	switch f := f.(type) {
	case *http2.MetaHeadersFrame:
		return c.onHeaders(f)
	case *http2.DataFrame:
		return c.onData(f)
	case *http2.WindowUpdateFrame:
		return c.onWindowUpdate(f)
	case *http2.SettingsFrame:
		return c.onSettings(f)
	case *http2.PingFrame:
		return c.onPing(f)
	case *http2.RSTStreamFrame:
		return c.onReset(f)
	case *http2.PriorityFrame:
		if f.StreamDep == f.StreamID {
			return http2.StreamError{StreamID: f.StreamID, Code: http2.ErrCodeProtocol}
		}
	case *http2.PushPromiseFrame:
		// Clients cannot push (RFC 9113 §8.4).
		return http2.ConnectionError(http2.ErrCodeProtocol)
	case *http2.GoAwayFrame:
		// The client closes the connection when its calls are done.
	}
	// Unknown frame types are ignored (RFC 9113 §4.1).
	return nil
}

// onHeaders starts a stream, or takes a client's trailers.
func (c *conn) onHeaders(f *http2.MetaHeadersFrame) error {
	id := f.StreamID
	if id%2 == 0 {
		return http2.ConnectionError(http2.ErrCodeProtocol)
	}
	c.mu.Lock()
	if st := c.streams.get(id); st != nil {
		c.mu.Unlock()
		return st.onTrailers(f)
	}
	if id <= c.maxID {
		c.mu.Unlock()
		// A closed stream, or an id lower than one already used: a
		// connection error, as x/net's and grpc-go's servers make it, even
		// on a stream the server reset (unlike DATA, whose late arrival
		// is ignored): gRPC clients send no trailers, and h2spec expects
		// it (§5.1, §8.1).
		return http2.ConnectionError(http2.ErrCodeProtocol)
	}
	c.maxID = id
	c.opened = min(c.opened+1, 3) // 3: one more than shrinkTable asks, so that a preflight's can be taken back
	if f.HasPriority() && f.Priority.StreamDep == id {
		c.mu.Unlock()
		return http2.StreamError{StreamID: id, Code: http2.ErrCodeProtocol}
	}
	max := c.srv.cfg.MaxConcurrentStreams
	if c.goaway || c.closed || c.streams.len() >= max {
		c.rstLocked(id, http2.ErrCodeRefusedStream)
		c.mu.Unlock()
		return nil
	}
	// Handlers of streams the client reset may still run: a client that
	// opens and resets streams in a loop waits here (as with grpc-go's
	// handler quota) instead of starting handlers without bound.
	for c.handlers >= max && !c.closed {
		c.cond.Wait()
	}
	if c.closed {
		c.mu.Unlock()
		return errConnClosed
	}
	st := &stream{id: id, c: c, sendWindow: c.peerWindow, recvWindow: int64(c.srv.cfg.InitialWindowSize), remoteDone: f.StreamEnded()}
	c.streams.put(st)
	c.idleSince = time.Time{}
	c.mu.Unlock()
	c.sentData.Store(true) // a new call: the client's pings are legitimate again (as data sent)
	st.begin(f)
	return nil
}

// onData passes a DATA frame's bytes to its stream, after the flow-control
// checks of both windows. The connection's window is given back as the
// bytes arrive (what streams keep is bounded by the connection's request
// budget and the streams' own windows); a stream's, as it takes them.
func (c *conn) onData(f *http2.DataFrame) error {
	id := f.StreamID
	n := int64(f.Length) // with padding: it counts against the windows
	c.mu.Lock()
	if n > c.recvWindow {
		c.mu.Unlock()
		return http2.ConnectionError(http2.ErrCodeFlowControl)
	}
	c.recvWindow -= n
	c.creditConnLocked(n)
	st := c.streams.get(id)
	var code http2.ErrCode
	switch {
	case st == nil && id > c.maxID:
		c.mu.Unlock()
		return http2.ConnectionError(http2.ErrCodeProtocol) // an idle stream
	case st == nil && c.recentlyResetLocked(id):
		c.mu.Unlock()
		return nil // sent before the client saw the reset
	case st == nil || st.remoteDone:
		code = http2.ErrCodeStreamClosed
	case n > st.recvWindow:
		code = http2.ErrCodeFlowControl
	}
	if code != 0 {
		c.mu.Unlock()
		return http2.StreamError{StreamID: id, Code: code}
	}
	st.recvWindow -= n
	if pad := n - int64(len(f.Data())); pad > 0 {
		st.creditStreamLocked(pad)
	}
	c.mu.Unlock()
	return st.onData(f.Data(), f.StreamEnded())
}

// creditConnLocked gives n bytes of the connection's window back to the
// client, sending WINDOW_UPDATE once a quarter of the window is due.
func (c *conn) creditConnLocked(n int64) {
	if c.closed || n <= 0 {
		return
	}
	c.recvUnacked += n
	if c.recvUnacked >= int64(c.srv.cfg.InitialConnWindowSize)/4 {
		c.out = appendWindowUpdate(c.outBuf(), 0, uint32(c.recvUnacked))
		c.recvWindow += c.recvUnacked
		c.recvUnacked = 0
		c.wakeLocked()
	}
}

func (c *conn) onWindowUpdate(f *http2.WindowUpdateFrame) error {
	inc := int64(f.Increment)
	c.mu.Lock()
	defer c.mu.Unlock()
	if f.StreamID == 0 {
		if c.sendWindow+inc > maxWindow {
			return http2.ConnectionError(http2.ErrCodeFlowControl)
		}
		c.sendWindow += inc
		q := c.flowq
		c.flowq = nil
		for _, st := range q {
			st.inFlowq = false
			c.flushLocked(st)
		}
		c.cond.Broadcast()
		return nil
	}
	st := c.streams.get(f.StreamID)
	if st == nil {
		if f.StreamID > c.maxID {
			return http2.ConnectionError(http2.ErrCodeProtocol) // an idle stream
		}
		return nil // a closed stream: late updates are expected
	}
	if st.sendWindow+inc > maxWindow {
		return http2.StreamError{StreamID: f.StreamID, Code: http2.ErrCodeFlowControl}
	}
	st.sendWindow += inc
	c.flushLocked(st)
	c.cond.Broadcast()
	return nil
}

func (c *conn) onSettings(f *http2.SettingsFrame) error {
	if f.IsAck() {
		if c.settingsAck++; c.settingsAck == c.shrinkAck {
			// The client has emptied its header table and indexes no
			// more: the decoder and its table go, and a decoder without
			// a table, made with the framer, reads the next blocks. (A
			// peer that acknowledges SETTINGS it was not sent fails only
			// its own connection's decoding.)
			c.dec = nil
			c.fr.ReadMetaHeaders = hpack.NewDecoder(0, nil)
			c.noTable.Store(true)
		}
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	err := f.ForeachSetting(func(s http2.Setting) error {
		if err := s.Valid(); err != nil {
			return err
		}
		switch s.ID {
		case http2.SettingInitialWindowSize:
			delta := int64(s.Val) - c.peerWindow
			for st := range c.streams.all() {
				if st.sendWindow+delta > maxWindow {
					return http2.ConnectionError(http2.ErrCodeFlowControl)
				}
			}
			c.peerWindow = int64(s.Val)
			for st := range c.streams.all() {
				st.sendWindow += delta
			}
		case http2.SettingHeaderTableSize:
			c.tableLimit = s.Val
			if c.enc != nil {
				c.enc.enc.SetMaxDynamicTableSizeLimit(s.Val)
			}
		}
		// MAX_FRAME_SIZE: frames are written at the initial size, which
		// every peer accepts. The others do not apply to a server.
		return nil
	})
	if err != nil {
		return err
	}
	c.out = appendSettingsAck(c.outBuf())
	c.control++
	for st := range c.streams.all() {
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
	c.out = appendPing(c.outBuf(), true, f.Data)
	c.control++
	c.wakeLocked()
	c.mu.Unlock()
	return nil
}

func (c *conn) onReset(f *http2.RSTStreamFrame) error {
	c.mu.Lock()
	st := c.streams.get(f.StreamID)
	if st == nil {
		idle := f.StreamID > c.maxID
		c.mu.Unlock()
		if idle {
			return http2.ConnectionError(http2.ErrCodeProtocol)
		}
		return nil
	}
	c.removeLocked(st)
	c.mu.Unlock()
	st.interrupt()
	st.endUnstarted(errCanceledByClient)
	return nil
}

// resetStream resets a stream the reader found at fault.
func (c *conn) resetStream(id uint32, code http2.ErrCode) {
	c.mu.Lock()
	st := c.streams.get(id)
	if st != nil {
		c.removeLocked(st)
	}
	c.rstLocked(id, code)
	c.mu.Unlock()
	if st != nil {
		st.interrupt()
		st.endUnstarted(status.Errorf(codes.Internal, "stream reset by the server: %v", code))
	}
}

// rstLocked queues a RST_STREAM and remembers the stream as reset.
func (c *conn) rstLocked(id uint32, code http2.ErrCode) {
	if c.closed {
		return
	}
	c.out = appendRST(c.outBuf(), id, code)
	c.control++
	if c.reset == nil {
		c.reset = new([recentResets]uint32)
	}
	c.reset[c.resetNext] = id
	c.resetNext = (c.resetNext + 1) % recentResets
	c.wakeLocked()
}

// recentlyResetLocked reports whether the server reset stream id lately:
// the client's frames sent before it saw the reset are ignored.
func (c *conn) recentlyResetLocked(id uint32) bool {
	if c.reset == nil {
		return false
	}
	for _, r := range c.reset {
		if r == id {
			return true
		}
	}
	return false
}

// removeLocked forgets st: it takes no more output and no more input.
func (c *conn) removeLocked(st *stream) {
	st.closed = true
	st.pending = nil
	c.releaseLocked(st)
	c.streams.del(st.id)
	c.cond.Broadcast()
	if c.streams.len() == 0 {
		if c.idle != nil {
			c.idleSince = time.Now()
		}
		if c.goaway {
			c.wakeLocked() // the writer ends the drained connection
		}
	}
}

// releaseLocked gives back the connection's request buffer that st holds.
func (c *conn) releaseLocked(st *stream) {
	c.buffered -= st.buffered
	st.buffered = 0
}

// goAway queues a GOAWAY: the connection takes no new streams.
func (c *conn) goAway(code http2.ErrCode, debug string) {
	c.mu.Lock()
	if !c.closed {
		c.goaway = true
		c.failed = c.failed || code != http2.ErrCodeNo
		c.out = appendGoAway(c.outBuf(), c.maxID, code, debug)
		c.wakeLocked()
	}
	c.mu.Unlock()
}

// drain sends GOAWAY; the connection closes once its streams have ended.
func (c *conn) drain() {
	c.goAway(http2.ErrCodeNo, "")
}

// close ends the connection and every stream on it. Output already queued
// (a GOAWAY) is still written; the reader, if it waits for input, is woken
// by a read deadline, and serve closes the network connection.
func (c *conn) close(err error) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	c.closed = true
	c.srv.keepalive.Remove(&c.ka)
	for _, t := range []*time.Timer{c.idle, c.age} {
		if t != nil {
			t.Stop()
		}
	}
	streams := make([]*stream, 0, c.streams.len())
	for st := range c.streams.all() {
		streams = append(streams, st)
		st.closed = true
		st.pending = nil
	}
	c.streams.clear()
	c.flowq = nil
	c.cond.Broadcast()
	if len(c.out) > 0 {
		c.startWriter() // it writes what is queued, then exits
	}
	c.mu.Unlock()
	for _, st := range streams {
		st.interrupt()
		st.endUnstarted(errStreamClosed)
	}
	// Unblock the reader and bound a write stuck on a client that does not
	// read.
	now := time.Now()
	_ = c.nc.SetReadDeadline(now)
	_ = c.nc.SetWriteDeadline(now.Add(time.Second))
	c.unpark()
	if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) && !errors.Is(err, ErrServerStopped) && !errors.Is(err, errConnClosed) {
		c.srv.cfg.Log.Debug("connection closed", "remote", c.nc.RemoteAddr().String(), "err", err)
	}
}

// waitWriter waits until no writer goroutine runs (after close, the last
// one writes what was queued and exits).
func (c *conn) waitWriter() {
	c.mu.Lock()
	for c.writing.Load() {
		c.cond.Wait()
	}
	c.mu.Unlock()
}

// linger half-closes the connection and reads what the peer still sends,
// for a bounded time and size, so that the GOAWAY just written is read by
// the peer rather than lost to a reset from unread input.
func (c *conn) linger() {
	if cw, ok := c.nc.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
	}
	_ = c.nc.SetReadDeadline(time.Now().Add(lingerTime))
	_, _ = io.CopyN(io.Discard, c.nc, lingerBytes)
}
