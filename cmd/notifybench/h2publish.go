package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	notifyv1 "github.com/maxloyalty/notify/gen/notify/v1"
)

// The h2 publisher makes unary gRPC calls over HTTP/2 frames directly, as
// the h2 subscribers read their streams (h2.go): each call writes its
// HEADERS and its one DATA frame under the connection's write lock, and the
// connection's one reader goroutine decodes the responses and wakes the
// callers, many calls in flight per connection. grpc-go's client costs
// about 41 µs of CPU per unary call here, which on a shared machine is taken
// from the server being measured.

const (
	publishMethod      = "/notify.v1.NotificationService/Publish"
	publishBatchMethod = "/notify.v1.NotificationService/PublishBatch"

	// h2MaxResponse bounds one response message, as grpc-go's
	// MaxCallRecvMsgSize in dialGRPC.
	h2MaxResponse = 64 << 20
	// h2MaxStreamID is the last client stream id HTTP/2 allows.
	h2MaxStreamID = 1<<31 - 1
)

// dialH2Publisher opens n h2c connections to the gRPC address addr and
// returns a publishFunc over them (see h2Publisher) and the func that
// closes them.
func dialH2Publisher(addr, token string, n int, window, connWindow int32) (publishFunc, func(), error) {
	conns := make([]*h2pubConn, 0, n)
	for range n {
		c, err := dialH2Pub(addr, window, connWindow)
		if err != nil {
			for _, c := range conns {
				c.close()
			}
			return nil, nil, err
		}
		conns = append(conns, c)
	}
	fn, closeAll := h2Publisher(conns, token)
	return fn, closeAll, nil
}

// h2Publisher publishes over h2 connections with the contract of
// grpcPublisher: one call per batch, Publish for a batch of one and
// PublishBatch otherwise, returning the server's positions; calls take the
// connections in turn. The returned func closes the connections.
func h2Publisher(conns []*h2pubConn, token string) (publishFunc, func()) {
	auth := "Bearer " + token
	var next atomic.Uint64
	fn := func(ctx context.Context, reqs []*notifyv1.PublishRequest) ([]*notifyv1.PublishResponse, error) {
		c := conns[next.Add(1)%uint64(len(conns))]
		if len(reqs) == 1 {
			resp := new(notifyv1.PublishResponse)
			if err := c.invoke(ctx, publishMethod, auth, reqs[0], resp); err != nil {
				return nil, err
			}
			return []*notifyv1.PublishResponse{resp}, nil
		}
		var resp notifyv1.PublishBatchResponse
		if err := c.invoke(ctx, publishBatchMethod, auth, &notifyv1.PublishBatchRequest{Requests: reqs}, &resp); err != nil {
			return nil, err
		}
		return resp.Results, nil
	}
	closeAll := func() {
		for _, c := range conns {
			c.close()
		}
	}
	return fn, closeAll
}

// h2pubConn is one HTTP/2 connection carrying unary calls.
type h2pubConn struct {
	nc         net.Conn
	authority  string
	window     uint32 // per-stream receive window announced in SETTINGS
	connWindow uint32 // connection receive window

	// The writer side: frames are appended to out under wmu, and the
	// connection's flusher goroutine writes what has gathered in one
	// system call, outside the lock, while the next frames gather in its
	// other buffer. A write to loopback costs more CPU than a call's own
	// work; under load one write carries many calls.
	wmu    sync.Mutex // guards out, kicked, fr's writes, enc, hbuf, nextID
	out    []byte
	kicked bool          // the flusher was signalled since it last took out
	kick   chan struct{} // the signal (capacity 1)
	fr     *http2.Framer
	enc    *hpack.Encoder
	hbuf   bytes.Buffer
	nextID uint32

	mu   sync.Mutex // guards what follows
	cond sync.Cond  // on mu: a stream slot or send window may be free, or the connection is done
	// waiters counts goroutines waiting on cond.
	waiters int
	calls   map[uint32]*h2call
	// active counts the open streams; maxStreams is the server's
	// MAX_CONCURRENT_STREAMS.
	active, maxStreams uint32
	// Send flow control: the connection's window and the server's initial
	// stream window; maxFrame is the server's MAX_FRAME_SIZE.
	sendWin     int64
	peerInitWin int64
	maxFrame    uint32
	goaway      error // set when the server sent GOAWAY: no new streams
	err         error // set once the connection is lost; fails every call
	closed      bool  // close was called

	ready   chan struct{} // closed at the server's first SETTINGS
	dead    chan struct{} // closed when the reader ends
	dec     *hpack.Decoder
	hs      h2headers // the header block being decoded (reader only)
	hdrID   uint32    // its stream
	hdrEnd  bool      // its END_STREAM flag
	unacked uint32    // connection-level bytes received and not yet given back
}

// h2headers is what the reader keeps of a decoded header block.
type h2headers struct {
	status, contentType     string
	grpcStatus, grpcMessage string
	hasGrpcStatus           bool
	details                 []string // grpc-status-details-bin values
}

// h2call is one unary call in flight. The reader owns the response fields
// while the call is registered; done hands them to the caller.
type h2call struct {
	sendWin  int64     // stream send window (guarded by h2pubConn.mu)
	deadline time.Time // the caller's deadline, zero if none

	resp       []byte // DATA received
	gotHeaders bool   // response headers seen
	recvUnack  uint32 // stream-level bytes received and not yet given back
	done       chan error
}

var (
	h2callPool = sync.Pool{New: func() any { return &h2call{done: make(chan error, 1)} }}
	h2bufPool  = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}
)

// dialH2Pub opens an HTTP/2 connection without TLS (h2c with prior
// knowledge), starts its reader and waits for the server's SETTINGS.
func dialH2Pub(addr string, window, connWindow int32) (*h2pubConn, error) {
	nc, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return nil, err
	}
	c := &h2pubConn{
		nc:          nc,
		authority:   addr,
		window:      uint32(window),
		connWindow:  uint32(max(connWindow, 65535)),
		kick:        make(chan struct{}, 1),
		nextID:      1,
		calls:       make(map[uint32]*h2call),
		maxStreams:  math.MaxUint32,
		sendWin:     65535,
		peerInitWin: 65535,
		maxFrame:    16384,
		ready:       make(chan struct{}),
		dead:        make(chan struct{}),
	}
	c.cond.L = &c.mu
	c.fr = http2.NewFramer(h2out{c}, bufio.NewReaderSize(nc, 64<<10))
	c.fr.SetReuseFrames()
	c.enc = hpack.NewEncoder(&c.hbuf)
	c.dec = hpack.NewDecoder(4096, c.emit)
	c.dec.SetMaxStringLength(1 << 20)
	werr := func() error {
		c.out = append(c.out, http2.ClientPreface...)
		if err := c.fr.WriteSettings(
			http2.Setting{ID: http2.SettingInitialWindowSize, Val: uint32(window)},
			http2.Setting{ID: http2.SettingEnablePush, Val: 0},
		); err != nil {
			return err
		}
		if extra := c.connWindow - 65535; extra > 0 {
			if err := c.fr.WriteWindowUpdate(0, extra); err != nil {
				return err
			}
		}
		_, err := nc.Write(c.out)
		c.out = c.out[:0]
		return err
	}()
	if werr != nil {
		nc.Close()
		return nil, werr
	}
	go c.readLoop()
	go c.flushLoop()
	timer := time.NewTimer(10 * time.Second)
	defer timer.Stop()
	select {
	case <-c.ready:
		return c, nil
	case <-c.dead:
		c.mu.Lock()
		err := c.err
		c.mu.Unlock()
		return nil, err
	case <-timer.C:
		c.close()
		return nil, fmt.Errorf("h2: no SETTINGS from %s within 10s", addr)
	}
}

// close closes the connection; calls in flight fail.
func (c *h2pubConn) close() {
	c.mu.Lock()
	c.closed = true
	c.mu.Unlock()
	c.nc.Close()
}

// h2out is the framer's writer: it appends to out, under wmu.
type h2out struct{ c *h2pubConn }

func (w h2out) Write(p []byte) (int, error) {
	w.c.out = append(w.c.out, p...)
	return len(p), nil
}

// lockWrite and unlockWrite bracket every write: unlockWrite signals the
// flusher if out has frames it was not told about.
func (c *h2pubConn) lockWrite() {
	c.wmu.Lock()
}

func (c *h2pubConn) unlockWrite(err error) error {
	if err != nil {
		c.writeFailed(err)
	} else if !c.kicked && len(c.out) > 0 {
		c.kicked = true
		select {
		case c.kick <- struct{}{}:
		default:
		}
	}
	c.wmu.Unlock()
	return err
}

// writeFailed ends the connection after a failed write: the reader sees
// the socket closed and fails every call.
func (c *h2pubConn) writeFailed(err error) {
	c.mu.Lock()
	if c.err == nil {
		c.err = status.Errorf(codes.Unavailable, "h2: writing to %s: %v", c.authority, err)
	}
	c.mu.Unlock()
	c.nc.Close()
}

// flushLoop is the connection's flusher goroutine: it swaps out for its
// own buffer and writes it, until the reader ends.
func (c *h2pubConn) flushLoop() {
	var b []byte
	for {
		select {
		case <-c.kick:
		case <-c.dead:
			return
		}
		// Let the callers the reader has just woken append their
		// requests first: without this yield nearly every call had a
		// write of its own (0.95 writes per call at 64 in flight, 0.2
		// with it).
		runtime.Gosched()
		c.wmu.Lock()
		b, c.out = c.out, b[:0]
		c.kicked = false
		c.wmu.Unlock()
		if len(b) == 0 {
			continue
		}
		if _, err := c.nc.Write(b); err != nil {
			c.writeFailed(err)
			return
		}
		if cap(b) > 4<<20 {
			b = nil
		}
	}
}

// write runs fn on the writer side.
func (c *h2pubConn) write(fn func() error) error {
	c.lockWrite()
	return c.unlockWrite(fn())
}

// wait waits on cond, woken early when ctx ends. c.mu is held.
func (c *h2pubConn) wait(ctx context.Context) {
	c.waiters++
	stop := context.AfterFunc(ctx, func() {
		c.mu.Lock()
		c.cond.Broadcast()
		c.mu.Unlock()
	})
	c.cond.Wait()
	stop()
	c.waiters--
}

// wake wakes the waiters. c.mu is held.
func (c *h2pubConn) wake() {
	if c.waiters > 0 {
		c.cond.Broadcast()
	}
}

// invoke makes one unary call of method with req and decodes the response
// into resp. Errors are gRPC status errors.
func (c *h2pubConn) invoke(ctx context.Context, method, auth string, req, resp proto.Message) error {
	if err := ctx.Err(); err != nil {
		return status.FromContextError(err).Err()
	}
	bp := h2bufPool.Get().(*[]byte)
	defer func() {
		if cap(*bp) <= 1<<20 {
			h2bufPool.Put(bp)
		}
	}()
	msg, err := proto.MarshalOptions{}.MarshalAppend(append((*bp)[:0], 0, 0, 0, 0, 0), req)
	if err != nil {
		return status.Errorf(codes.Internal, "h2: marshaling the request: %v", err)
	}
	*bp = msg
	binary.BigEndian.PutUint32(msg[1:5], uint32(len(msg)-5))

	call := h2callPool.Get().(*h2call)
	call.resp, call.gotHeaders, call.recvUnack = call.resp[:0], false, 0
	call.deadline, _ = ctx.Deadline()
	id, err := c.send(ctx, call, method, auth, msg)
	if err != nil {
		if id == 0 {
			h2callPool.Put(call)
		}
		return err
	}
	var cerr error
	select {
	case cerr = <-call.done:
	case <-ctx.Done():
		if !c.cancel(id, call) {
			// Completed meanwhile; the call is free again.
			<-call.done
			h2callPool.Put(call)
		}
		return status.FromContextError(ctx.Err()).Err()
	}
	if cerr == nil {
		cerr = decodeUnary(call.resp, resp)
	}
	if cap(call.resp) <= 1<<20 {
		h2callPool.Put(call)
	}
	return cerr
}

// send opens a stream for call and writes its request, waiting for a stream
// slot and for send window as the server's SETTINGS and WINDOW_UPDATEs
// require. It returns the stream id (0 if the call was not registered).
// When it returns a non-zero id with an error, the call is no longer
// registered but must not be reused: the reader may still hold it.
func (c *h2pubConn) send(ctx context.Context, call *h2call, method, auth string, msg []byte) (uint32, error) {
	// A stream slot.
	c.mu.Lock()
	for c.err == nil && c.goaway == nil && c.active >= c.maxStreams && ctx.Err() == nil {
		c.wait(ctx)
	}
	switch {
	case c.err != nil:
		err := c.err
		c.mu.Unlock()
		return 0, err
	case c.goaway != nil:
		err := c.goaway
		c.mu.Unlock()
		return 0, err
	case ctx.Err() != nil:
		c.mu.Unlock()
		return 0, status.FromContextError(ctx.Err()).Err()
	}
	c.active++
	c.mu.Unlock()

	timeout := ""
	if !call.deadline.IsZero() {
		timeout = grpcTimeout(time.Until(call.deadline))
	}

	// The id, the HEADERS and as much DATA as the windows allow, in one
	// turn of the write lock: ids must reach the server in order.
	c.lockWrite()
	c.mu.Lock()
	if c.err != nil || c.goaway != nil || c.nextID > h2MaxStreamID {
		err := c.err
		if err == nil {
			err = c.goaway
		}
		if err == nil {
			err = status.Errorf(codes.Unavailable, "h2: connection to %s used up its stream ids", c.authority)
			c.goaway = err
		}
		c.active--
		c.wake()
		c.mu.Unlock()
		c.unlockWrite(nil)
		return 0, err
	}
	id := c.nextID
	c.nextID += 2
	call.sendWin = c.peerInitWin
	c.calls[id] = call
	n := c.takeWindow(call, len(msg))
	maxFrame := int(c.maxFrame)
	c.mu.Unlock()

	c.hbuf.Reset()
	c.field(":method", "POST")
	c.field(":scheme", "http")
	c.field(":path", method)
	c.field(":authority", c.authority)
	c.field("content-type", "application/grpc")
	c.field("te", "trailers")
	c.field("authorization", auth)
	c.field("user-agent", "notifybench-h2")
	if timeout != "" {
		// Never indexed: a new value each call would churn the table.
		c.enc.WriteField(hpack.HeaderField{Name: "grpc-timeout", Value: timeout, Sensitive: true})
	}
	err := c.writeHeaders(id, c.hbuf.Bytes(), maxFrame)
	if err == nil && n > 0 {
		err = c.fr.WriteData(id, n == len(msg), msg[:n])
	}
	if err := c.unlockWrite(err); err != nil {
		return id, nil // the reader fails the call
	}

	// The rest of a large request, as WINDOW_UPDATEs allow.
	for rest := msg[n:]; len(rest) > 0; rest = rest[n:] {
		c.mu.Lock()
		for c.calls[id] == call && (c.sendWin <= 0 || call.sendWin <= 0) && ctx.Err() == nil {
			c.wait(ctx)
		}
		if c.calls[id] != call {
			// Ended by the server or the connection's loss: the reader
			// has completed the call.
			c.mu.Unlock()
			return id, nil
		}
		if ctx.Err() != nil {
			c.mu.Unlock()
			c.cancel(id, call)
			return id, status.FromContextError(ctx.Err()).Err()
		}
		n = c.takeWindow(call, len(rest))
		c.mu.Unlock()
		c.lockWrite()
		if err := c.unlockWrite(c.fr.WriteData(id, n == len(rest), rest[:n])); err != nil {
			return id, nil
		}
	}
	return id, nil
}

// takeWindow takes up to want bytes of send window for call, at most one
// frame's worth. c.mu is held.
func (c *h2pubConn) takeWindow(call *h2call, want int) int {
	n := min(int64(want), c.sendWin, call.sendWin, int64(c.maxFrame))
	if n <= 0 {
		return 0
	}
	c.sendWin -= n
	call.sendWin -= n
	return int(n)
}

// field encodes one header field into hbuf. The writer lock is held.
func (c *h2pubConn) field(name, value string) {
	// Writing to a bytes.Buffer does not fail.
	_ = c.enc.WriteField(hpack.HeaderField{Name: name, Value: value})
}

// writeHeaders writes a header block, in CONTINUATION frames past the
// server's frame size. The writer lock is held.
func (c *h2pubConn) writeHeaders(id uint32, block []byte, maxFrame int) error {
	first := block[:min(len(block), maxFrame)]
	block = block[len(first):]
	if err := c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: first, EndHeaders: len(block) == 0}); err != nil {
		return err
	}
	for len(block) > 0 {
		frag := block[:min(len(block), maxFrame)]
		block = block[len(frag):]
		if err := c.fr.WriteContinuation(id, len(block) == 0, frag); err != nil {
			return err
		}
	}
	return nil
}

// cancel ends a call its caller gives up on with RST_STREAM(CANCEL). It
// reports false if the reader completed the call first.
func (c *h2pubConn) cancel(id uint32, call *h2call) bool {
	c.mu.Lock()
	if c.calls[id] != call {
		c.mu.Unlock()
		return false
	}
	c.remove(id)
	c.mu.Unlock()
	c.write(func() error { return c.fr.WriteRSTStream(id, http2.ErrCodeCancel) })
	return true
}

// remove unregisters stream id and frees its slot. c.mu is held.
func (c *h2pubConn) remove(id uint32) {
	delete(c.calls, id)
	c.active--
	c.wake()
}

// complete ends call with err if it is still registered as id.
func (c *h2pubConn) complete(id uint32, call *h2call, err error) {
	c.mu.Lock()
	if c.calls[id] != call {
		c.mu.Unlock()
		return
	}
	c.remove(id)
	c.mu.Unlock()
	call.done <- err
}

// completeReset completes a call the client ends early, and resets its
// stream so that the server stops sending.
func (c *h2pubConn) completeReset(id uint32, call *h2call, err error) error {
	c.complete(id, call, err)
	return c.write(func() error { return c.fr.WriteRSTStream(id, http2.ErrCodeCancel) })
}

func (c *h2pubConn) lookup(id uint32) *h2call {
	c.mu.Lock()
	call := c.calls[id]
	c.mu.Unlock()
	return call
}
