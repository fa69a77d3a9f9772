//go:build unix

package wire

import (
	"errors"
	"net"
	"syscall"
)

// rawWriter writes to a socket without blocking: what the kernel takes
// now, and no wait for the rest. It is how a shared writer (see writers)
// writes a connection without ever waiting on its peer.
type rawWriter struct {
	rc syscall.RawConn
}

// newRawWriter returns a rawWriter for nc, or nil when nc is not a socket
// of its own (TLS, in-memory pipes): those are written by a goroutine of
// their own, which may block.
func newRawWriter(nc net.Conn) *rawWriter {
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
func (w *rawWriter) write(b []byte) (n int, err error) {
	cerr := w.rc.Write(func(fd uintptr) bool {
		for n < len(b) {
			m, e := syscall.Write(int(fd), b[n:])
			if m > 0 {
				n += m
			}
			switch {
			case e == syscall.EINTR:
			case e == syscall.EAGAIN:
				err = errWouldBlock
				return true
			case e != nil:
				err = &net.OpError{Op: "write", Err: e}
				return true
			case m == 0:
				err = errWouldBlock
				return true
			}
		}
		return true
	})
	if err == nil {
		err = cerr
	}
	return n, err
}
