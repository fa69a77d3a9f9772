package wire

// A connection's input: its frame reader, pooled while it is parked, and
// the buffered reader under it.

import (
	"io"
	"net"
	"sync"
	"sync/atomic"

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
