//go:build !unix

package wire

import (
	"errors"
	"net"
	"syscall"
)

// rawWriter is not available here: every connection's writer is a
// goroutine of its own, and none is parked.
type rawWriter struct {
	rc  syscall.RawConn
	tls bool
}

func newRawWriter(net.Conn) *rawWriter { return nil }

var errWouldBlock = errors.New("wire: write would block")

func (*rawWriter) write([]byte) (int, error) { return 0, errWouldBlock }
