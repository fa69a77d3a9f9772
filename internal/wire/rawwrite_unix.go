//go:build unix

package wire

import (
	"crypto/tls"
	"errors"
	"net"
	"sync"
	"syscall"
)

// rawWriter writes to a socket without blocking: what the kernel takes
// now, and no wait for the rest. It is how a shared writer (see writers)
// writes a connection without ever waiting on its peer. The poller waits
// on its socket for a parked connection's next bytes.
type rawWriter struct {
	rc syscall.RawConn
	// tls: the socket under a TLS connection, which only the poller
	// uses: its records are written through crypto/tls, by a goroutine
	// of its own.
	tls bool
}

// newRawWriter returns a rawWriter for nc's socket, or nil when nc has
// none (in-memory pipes): those are written by a goroutine of their own,
// which may block, and never parked.
func newRawWriter(nc net.Conn) *rawWriter {
	if tc, ok := nc.(*tls.Conn); ok {
		w := newRawWriter(tc.NetConn())
		if w != nil {
			w.tls = true
		}
		return w
	}
	sc, ok := nc.(syscall.Conn)
	if !ok {
		return nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	return &rawWriter{rc: rc}
}

// errWouldBlock is a write the kernel took only part of, or none.
var errWouldBlock = errors.New("wire: write would block")

// write writes b without blocking and returns how much was written:
// all of it, or less with errWouldBlock, or an error of the socket (its
// write deadline passed, it was closed, the peer reset it).
func (w *rawWriter) write(b []byte) (int, error) {
	op := rawWrites.Get().(*rawWrite)
	op.b = b
	cerr := w.rc.Write(op.fn)
	n, err := op.n, op.err
	*op = rawWrite{fn: op.fn}
	rawWrites.Put(op)
	if err == nil {
		err = cerr
	}
	return n, err
}

// rawWrite is one write's state. RawConn.Write takes a function; one that
// captured the write's buffer and results would be allocated on every
// write, and a delivery is one write.
type rawWrite struct {
	b   []byte
	n   int
	err error
	fn  func(fd uintptr) bool // do, bound once
}

var rawWrites = sync.Pool{New: func() any {
	op := new(rawWrite)
	op.fn = op.do
	return op
}}

func (op *rawWrite) do(fd uintptr) bool {
	for op.n < len(op.b) {
		m, e := syscall.Write(int(fd), op.b[op.n:])
		if m > 0 {
			op.n += m
		}
		switch {
		case e == syscall.EINTR:
		case e == syscall.EAGAIN:
			op.err = errWouldBlock
			return true
		case e != nil:
			op.err = &net.OpError{Op: "write", Err: e}
			return true
		case m == 0:
			op.err = errWouldBlock
			return true
		}
	}
	return true
}
