package wire

// A connection's input: its frame reader, pooled while it is parked, the
// buffered reader under it, and the parking.

import (
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// framer reads a connection's frames with x/net's http2.Framer. A parked
// connection holds none: the Framer (its state, and a buffer as large as
// the largest frame it has read) goes back to a pool the server's
// connections share, and the next reader takes one. Only a Framer between
// frames goes back, so none carries a header block's state from one
// connection to another.
type framer struct {
	*http2.Framer
	src frameSource
}

// frameSource is what a pooled Framer reads: the connection that has it.
type frameSource struct{ rd *lazyReader }

func (s *frameSource) Read(p []byte) (int, error) { return s.rd.Read(p) }

var framers = sync.Pool{New: func() any {
	f := new(framer)
	f.Framer = http2.NewFramer(nil, &f.src)
	f.SetMaxReadFrameSize(frameSize)
	return f
}}

// framer returns the reader's framer, taking one from the pool if the
// connection has none.
func (c *conn) framer() *framer {
	if c.fr == nil {
		f := framers.Get().(*framer)
		f.src.rd = &c.rd
		f.ReadMetaHeaders = c.dec
		if c.dec == nil {
			// The client indexes nothing (see onSettings): a decoder
			// without a table is as good as the one it had, and is gone
			// with the framer while the connection is parked.
			f.ReadMetaHeaders = hpack.NewDecoder(0, nil)
		}
		f.MaxHeaderListSize = c.srv.cfg.MaxHeaderListSize
		c.fr = f
	}
	return c.fr
}

// putFramer gives the connection's framer back to the pool, between
// frames (see framer).
func (c *conn) putFramer() {
	if f := c.fr; f != nil {
		c.fr = nil
		f.src.rd, f.ReadMetaHeaders = nil, nil
		framers.Put(f)
	}
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

var _ io.Reader = (*lazyReader)(nil)

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

// park hands the wait for an idle connection's next bytes to the server's
// poller, and reports whether the reader may exit: the connection is a
// socket, TLS holds nothing unread (tlsQuiet), and the poller took it. A
// connection that waits so holds no goroutine; the poller starts a reader
// (resume) when bytes come, and close starts one to end it.
func (c *conn) park() bool {
	if c.raw == nil || c.raw.tls && !c.tlsQuiet() {
		return false
	}
	c.rd.release()
	c.putFramer()
	if !c.srv.poll.Park(&c.pe, c.raw.rc, c) {
		return false
	}
	// A close that ran before the connection was parked did not see it
	// parked: take it back and end it.
	c.mu.Lock()
	closed := c.closed
	c.mu.Unlock()
	if closed {
		c.unpark()
	}
	return true
}

// tlsQuiet reports whether a TLS connection holds no record it has read
// from its socket and not yet returned: the poller, which waits for the
// socket's next bytes, would not wake for those. It tries a read that
// may not wait (a read deadline in the past): crypto/tls returns what it
// holds without reading the socket, or else fails the read with the
// deadline, keeping any part of a record it read, a failure it does not
// keep once the deadline is lifted (net/http's background reads rely on
// the same). What the read returns is left for the reader (c.rd.cur).
func (c *conn) tlsQuiet() bool {
	_ = c.nc.SetReadDeadline(time.Unix(1, 0))
	err := c.rd.fill()
	_ = c.nc.SetReadDeadline(time.Time{})
	c.mu.Lock()
	closed := c.closed
	c.mu.Unlock()
	if closed {
		// close's read deadline may have been lifted above: set it
		// again, so that the reader's next read ends.
		_ = c.nc.SetReadDeadline(time.Now())
		return false
	}
	// Bytes to handle, or the connection failed (its next read fails the
	// same way): the reader goes on.
	return errors.Is(err, os.ErrDeadlineExceeded)
}

// busyWait bounds waitBusy's wait.
const busyWait = time.Second

// waitBusy waits, between frames, for the next bytes of a connection that
// could park but runs unary calls, whose clients are likely to send more
// soon: at most busyWait, so that a connection whose last call ends with
// nothing more to read is parked then rather than at its next bytes,
// which may be hours away. What it reads is left for the reader
// (c.rd.cur); the wait's end is not an error, close's is.
func (c *conn) waitBusy() error {
	_ = c.nc.SetReadDeadline(time.Now().Add(busyWait))
	err := c.rd.fill()
	_ = c.nc.SetReadDeadline(time.Time{})
	c.mu.Lock()
	closed := c.closed
	c.mu.Unlock()
	switch {
	case closed:
		// close's read deadline may have been lifted above: set it
		// again, so that the connection's reads end.
		_ = c.nc.SetReadDeadline(time.Now())
		return errConnClosed
	case err == nil, errors.Is(err, os.ErrDeadlineExceeded):
		return nil
	}
	return err
}

// unpark takes a parked connection back from the poller for its closing:
// a reader of its own reads until close's read deadline, and ends it.
func (c *conn) unpark() {
	if c.pe.Unpark() {
		go c.resume()
	}
}

// Wake is the poller's: the parked connection has bytes to read, or the
// poller stops. A reader of its own resumes it.
func (c *conn) Wake() { go c.resume() }
