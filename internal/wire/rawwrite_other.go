//go:build !unix

package wire

import (
	"errors"
	"net"
)

// rawWriter is not available here: every connection's writer is a
// goroutine of its own.
type rawWriter struct{}

func newRawWriter(net.Conn) *rawWriter { return nil }

var errWouldBlock = errors.New("wire: write would block")

func (*rawWriter) write([]byte) (int, error) { return 0, errWouldBlock }
