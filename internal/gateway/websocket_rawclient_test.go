package gateway

// The websocket attack tests' raw client, which writes frames as given
// (so it can break the protocol), and the heap bound they check.

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"testing"
	"time"

	"nhooyr.io/websocket"
)

// rawWS is a websocket client that writes frames as they are given (so it
// can break the protocol) and reads the server's frames only when asked.
type rawWS struct {
	c  net.Conn
	br *bufio.Reader
}

// dialRawWS opens a websocket to path with the transport's subprotocol.
func dialRawWS(tb testing.TB, addr, path string) *rawWS {
	tb.Helper()
	c, err := net.DialTimeout("tcp", addr, wsTestTimeout)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(wsTestTimeout))
	_, err = io.WriteString(c, "GET "+path+" HTTP/1.1\r\nHost: "+addr+"\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: "+wsProtocol+"\r\n\r\n")
	if err != nil {
		tb.Fatal(err)
	}
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		tb.Fatalf("upgrade %s: %v", path, err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSwitchingProtocols {
		tb.Fatalf("upgrade %s: %s", path, resp.Status)
	}
	_ = c.SetDeadline(time.Time{})
	return &rawWS{c: c, br: br}
}

// Websocket opcodes.
const (
	opContinuation = 0x0
	opText         = 0x1
	opBinary       = 0x2
	opClose        = 0x8
	opPing         = 0x9
)

// appendFrame appends a client frame: masked, with a zero masking key, so
// that the payload is sent as it is.
func appendFrame(dst []byte, fin bool, op byte, p []byte) []byte {
	b0 := op
	if fin {
		b0 |= 0x80
	}
	dst = append(dst, b0)
	switch n := len(p); {
	case n < 126:
		dst = append(dst, 0x80|byte(n))
	case n <= 0xffff:
		dst = binary.BigEndian.AppendUint16(append(dst, 0x80|126), uint16(n))
	default:
		dst = binary.BigEndian.AppendUint64(append(dst, 0x80|127), uint64(n))
	}
	return append(append(dst, 0, 0, 0, 0), p...)
}

// write sends bytes with a deadline.
func (w *rawWS) write(b []byte, d time.Duration) error {
	_ = w.c.SetWriteDeadline(time.Now().Add(d))
	_, err := w.c.Write(b)
	return err
}

// message sends one whole binary message.
func (w *rawWS) message(p []byte) error {
	return w.write(appendFrame(nil, true, opBinary, p), wsTestTimeout)
}

// serverFrame is a frame the server sent.
type serverFrame struct {
	fin     bool
	op      byte
	payload []byte
}

// readFrame reads the server's next frame, refusing one over max bytes.
func (w *rawWS) readFrame(deadline time.Time, max int) (serverFrame, error) {
	_ = w.c.SetReadDeadline(deadline)
	var h [2]byte
	if _, err := io.ReadFull(w.br, h[:]); err != nil {
		return serverFrame{}, err
	}
	f := serverFrame{fin: h[0]&0x80 != 0, op: h[0] & 0x0f}
	n := uint64(h[1] & 0x7f)
	switch n {
	case 126:
		var b [2]byte
		if _, err := io.ReadFull(w.br, b[:]); err != nil {
			return f, err
		}
		n = uint64(binary.BigEndian.Uint16(b[:]))
	case 127:
		var b [8]byte
		if _, err := io.ReadFull(w.br, b[:]); err != nil {
			return f, err
		}
		n = binary.BigEndian.Uint64(b[:])
	}
	if h[1]&0x80 != 0 || n > uint64(max) {
		return f, fmt.Errorf("server frame masked or of %d bytes", n)
	}
	f.payload = make([]byte, n)
	_, err := io.ReadFull(w.br, f.payload)
	return f, err
}

// closedBy reads (and drops) what the server sends until it closes the
// websocket (a close frame, or the end of the connection), and returns the
// close frame's code (-1 without one); it fails the test if the websocket
// is still open at deadline. Like an attacker, it does not answer the close
// frame: the server drops the connection once its close handshake times
// out.
func (w *rawWS) closedBy(tb testing.TB, deadline time.Time) websocket.StatusCode {
	tb.Helper()
	for {
		f, err := w.readFrame(deadline, 1<<20)
		var ne net.Error
		switch {
		case errors.As(err, &ne) && ne.Timeout():
			tb.Fatalf("the server had not closed the websocket by the deadline")
		case err != nil:
			return -1
		case f.op == opClose && len(f.payload) >= 2:
			return websocket.StatusCode(binary.BigEndian.Uint16(f.payload))
		case f.op == opClose:
			return websocket.StatusNoStatusRcvd
		}
	}
}

// heapInuse is the heap in use after a garbage collection.
func heapInuse() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse
}

// heapGuard fails fast when the heap grows past a bound during an attack,
// before an unbounded buffer takes the machine's memory.
type heapGuard struct {
	base, bound uint64
}

func newHeapGuard(bound uint64) *heapGuard {
	return &heapGuard{base: heapInuse(), bound: bound}
}

// over reports whether the heap in use (garbage included, cheap to read)
// has grown past the bound; if so, it collects and checks again.
func (g *heapGuard) over() bool {
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	if m.HeapInuse < g.base+g.bound {
		return false
	}
	return heapInuse() >= g.base+g.bound
}

// check fails the test when the heap in use has grown past the bound.
func (g *heapGuard) check(t *testing.T, when string) {
	t.Helper()
	if now := heapInuse(); now > g.base+g.bound {
		t.Errorf("%s: the heap in use grew by %d KiB, bound %d KiB", when, (now-g.base)>>10, g.bound>>10)
	}
}

// sent is how an attacking client's sending ended.
type sent struct {
	bytes   int
	refused bool // the server stopped taking bytes: a write failed, or took over 2 s
	over    bool // the heap grew past the guard's bound
}

// sendUntil writes chunk (whole frames) again and again until the server
// stops taking them, the heap grows past the guard's bound, total bytes
// went out, or the deadline has passed.
func (w *rawWS) sendUntil(chunk []byte, total int, deadline time.Time, g *heapGuard) sent {
	var s sent
	check := 0
	for s.bytes < total && time.Now().Before(deadline) {
		if err := w.write(chunk, 2*time.Second); err != nil {
			s.refused = true
			return s
		}
		s.bytes += len(chunk)
		if check += len(chunk); check >= 256<<10 {
			check = 0
			if g.over() {
				s.over = true
				return s
			}
		}
	}
	return s
}

// wsHoldBlock is the header block of a call whose handler holds.
const wsHoldBlock = wsHeaderBlock + "x-hold: 1\r\n"

// attack runs send (the attacking client's writes) on another goroutine
// while a well-behaved client is served, and returns how it ended.
func (s *wsTestServer) attack(t *testing.T, send func() sent) sent {
	t.Helper()
	done := make(chan sent, 1)
	go func() { done <- send() }()
	s.checkServed(t, "during the attack")
	return <-done
}
