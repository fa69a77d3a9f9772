package main

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"fmt"
	"net"
	"strconv"
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

// The h2 transport speaks gRPC over HTTP/2 frames directly: one goroutine
// per connection reads every stream's frames and decodes their messages in
// place, where grpc-go's client wakes one goroutine per stream per message.
// The server sees ordinary gRPC streams; the load generator spends a
// fraction of the CPU per delivery, which leaves more of a shared machine
// to the server being measured.

// h2conn is one HTTP/2 connection carrying many Subscribe streams.
type h2conn struct {
	nc     net.Conn
	window uint32 // per-stream receive window announced in SETTINGS

	wmu    sync.Mutex // guards the writer side: bw, fr's writes, enc, hbuf, nextID
	bw     *bufio.Writer
	fr     *http2.Framer
	enc    *hpack.Encoder
	hbuf   bytes.Buffer
	nextID uint32

	tableSize atomic.Int64 // the header table size the server last set; -1: never set

	mu      sync.Mutex // guards streams and err
	streams map[uint32]*h2stream
	err     error // set once the connection is lost

	authority string
}

// h2stream is one Subscribe stream on an h2conn. Only the connection's
// reader goroutine touches it after it is registered.
type h2stream struct {
	sub      *subscriber
	markOpen func(error)
	buf      []byte // bytes of an incomplete gRPC message
	unacked  uint32 // bytes received since the last stream window update
	status   error  // from the trailers
	done     chan error
}

// dialH2 opens an HTTP/2 connection without TLS (h2c with prior knowledge)
// and starts its reader.
func dialH2(addr string, window, connWindow int32) (*h2conn, error) {
	nc, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return nil, err
	}
	c := &h2conn{
		nc:        nc,
		window:    uint32(window),
		bw:        bufio.NewWriterSize(nc, 32<<10),
		nextID:    1,
		streams:   make(map[uint32]*h2stream),
		authority: addr,
	}
	c.tableSize.Store(-1)
	c.fr = http2.NewFramer(c.bw, bufio.NewReaderSize(nc, 64<<10))
	c.fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	c.fr.MaxHeaderListSize = 1 << 20
	c.enc = hpack.NewEncoder(&c.hbuf)
	if _, err := c.bw.WriteString(http2.ClientPreface); err != nil {
		nc.Close()
		return nil, err
	}
	settings := []http2.Setting{
		{ID: http2.SettingInitialWindowSize, Val: uint32(window)},
		{ID: http2.SettingEnablePush, Val: 0},
	}
	if err := c.fr.WriteSettings(settings...); err != nil {
		nc.Close()
		return nil, err
	}
	if extra := connWindow - 65535; extra > 0 {
		if err := c.fr.WriteWindowUpdate(0, uint32(extra)); err != nil {
			nc.Close()
			return nil, err
		}
	}
	if err := c.bw.Flush(); err != nil {
		nc.Close()
		return nil, err
	}
	go c.read(uint32(connWindow))
	return c, nil
}

// open starts a Subscribe stream for s and returns the channel its end
// arrives on.
func (c *h2conn) open(s *subscriber, markOpen func(error)) (<-chan error, error) {
	req, err := proto.Marshal(&notifyv1.SubscribeRequest{Rooms: []string{s.room}})
	if err != nil {
		return nil, err
	}
	msg := make([]byte, 5+len(req))
	binary.BigEndian.PutUint32(msg[1:], uint32(len(req)))
	copy(msg[5:], req)
	st := &h2stream{sub: s, markOpen: markOpen, done: make(chan error, 1)}

	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.mu.Lock()
	if c.err != nil {
		c.mu.Unlock()
		return nil, c.err
	}
	id := c.nextID
	c.nextID += 2
	c.streams[id] = st
	c.mu.Unlock()
	c.hbuf.Reset()
	for _, f := range [][2]string{
		{":method", "POST"}, {":scheme", "http"}, {":path", subscribeMethod}, {":authority", c.authority},
		{"content-type", "application/grpc"}, {"te", "trailers"}, {"authorization", "Bearer " + s.token},
	} {
		if err := c.enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]}); err != nil {
			return nil, err
		}
	}
	if err := c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: c.hbuf.Bytes(), EndHeaders: true}); err != nil {
		return nil, err
	}
	if err := c.fr.WriteData(id, true, msg); err != nil {
		return nil, err
	}
	return st.done, c.bw.Flush()
}

// write runs fn on the writer side and flushes.
func (c *h2conn) write(fn func() error) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if err := fn(); err != nil {
		return err
	}
	return c.bw.Flush()
}

// read is the connection's reader goroutine.
func (c *h2conn) read(connWindow uint32) {
	var unacked uint32 // connection-level bytes not yet given back
	err := func() error {
		for {
			f, err := c.fr.ReadFrame()
			if err != nil {
				return err
			}
			switch f := f.(type) {
			case *http2.SettingsFrame:
				if !f.IsAck() {
					if err := c.write(func() error { return c.applySettings(f) }); err != nil {
						return err
					}
				}
			case *http2.PingFrame:
				if !f.IsAck() {
					if err := c.write(func() error { return c.fr.WritePing(true, f.Data) }); err != nil {
						return err
					}
				}
			case *http2.GoAwayFrame:
				return fmt.Errorf("h2: server sent GOAWAY (%v)", f.ErrCode)
			case *http2.MetaHeadersFrame:
				c.headers(f)
			case *http2.DataFrame:
				if st := c.stream(f.StreamID); st != nil {
					if err := c.data(f.StreamID, st, f.Data(), f.Length); err != nil {
						return err
					}
				}
				unacked += f.Length
				if unacked > connWindow/2 {
					if err := c.write(func() error { return c.fr.WriteWindowUpdate(0, unacked) }); err != nil {
						return err
					}
					unacked = 0
				}
			case *http2.RSTStreamFrame:
				c.end(f.StreamID, fmt.Errorf("h2: stream reset (%v)", f.ErrCode))
			}
		}
	}()
	c.mu.Lock()
	if c.err == nil {
		c.err = err
	}
	streams := c.streams
	c.streams = map[uint32]*h2stream{}
	c.mu.Unlock()
	for _, st := range streams {
		st.done <- status.Error(codes.Unavailable, err.Error())
	}
}

// applySettings applies the server's SETTINGS and acknowledges them; the
// caller holds wmu. A new header table size binds every header block sent
// after the ACK (RFC 9113 §6.5.3): the server drops its table as soon as it
// reads the ACK, so the encoder must shrink before the ACK is written.
func (c *h2conn) applySettings(f *http2.SettingsFrame) error {
	if v, ok := f.Value(http2.SettingHeaderTableSize); ok {
		c.enc.SetMaxDynamicTableSizeLimit(v)
		c.tableSize.Store(int64(v))
	}
	return c.fr.WriteSettingsAck()
}

func (c *h2conn) stream(id uint32) *h2stream {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.streams[id]
}

// end removes a stream and reports its end.
func (c *h2conn) end(id uint32, err error) {
	c.mu.Lock()
	st := c.streams[id]
	delete(c.streams, id)
	c.mu.Unlock()
	if st != nil {
		st.done <- err
	}
}

// headers handles response headers and trailers: the stream ends with the
// trailers' grpc-status (or a trailers-only response's).
func (c *h2conn) headers(f *http2.MetaHeadersFrame) {
	st := c.stream(f.StreamID)
	if st == nil {
		return
	}
	if s := f.PseudoValue("status"); s != "" && s != "200" {
		c.end(f.StreamID, fmt.Errorf("h2: HTTP status %s", s))
		return
	}
	if !f.StreamEnded() {
		return
	}
	var code, msg string
	for _, h := range f.RegularFields() {
		switch h.Name {
		case "grpc-status":
			code = h.Value
		case "grpc-message":
			msg = h.Value
		}
	}
	if code == "" || code == "0" {
		c.end(f.StreamID, nil)
		return
	}
	n, err := strconv.Atoi(code)
	if err != nil {
		c.end(f.StreamID, fmt.Errorf("h2: bad grpc-status %q", code))
		return
	}
	c.end(f.StreamID, status.Error(codes.Code(n), msg))
}

// data decodes the complete gRPC messages in a DATA frame and gives the
// stream's window back once half of it is used; flow control counts the
// frame's whole length, padding included.
func (c *h2conn) data(id uint32, st *h2stream, b []byte, length uint32) error {
	st.unacked += length
	if len(st.buf) > 0 {
		st.buf = append(st.buf, b...)
		b = st.buf
	}
	for len(b) >= 5 {
		n := int(binary.BigEndian.Uint32(b[1:5]))
		if len(b) < 5+n {
			break
		}
		if err := st.sub.decode(b[5 : 5+n]); err != nil {
			c.end(id, err)
			return nil
		}
		if st.sub.started.Load() {
			st.markOpen(nil)
		}
		b = b[5+n:]
	}
	st.buf = append(st.buf[:0], b...)
	if st.unacked > c.window/2 {
		n := st.unacked
		st.unacked = 0
		return c.write(func() error { return c.fr.WriteWindowUpdate(id, n) })
	}
	return nil
}

func (c *h2conn) close() error {
	return c.nc.Close()
}
