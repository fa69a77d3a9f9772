package gateway_test

import (
	"crypto/tls"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"github.com/maxloyalty/notify/internal/certs"
	"github.com/maxloyalty/notify/internal/gateway"
)

// TestTLSListener: Accept gives only connections whose handshake is
// complete; a client that never handshakes holds nobody else up and is
// closed after the timeout; a failed handshake is never accepted; Close
// ends Accept.
func TestTLSListener(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile, roots, err := certs.SelfSigned(dir, "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	const timeout = 300 * time.Millisecond
	l := gateway.TLSListener(raw, &tls.Config{Certificates: []tls.Certificate{cert}}, timeout)
	addr := raw.Addr().String()

	accepted := make(chan net.Conn, 4)
	acceptErr := make(chan error, 1)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				acceptErr <- err
				return
			}
			accepted <- c
		}
	}()

	// A client that connects and sends nothing.
	silent, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	// A client that does not trust the server: its handshake fails.
	if c, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: nil, ServerName: "127.0.0.1"}); err == nil {
		c.Close()
		t.Fatal("a handshake with an untrusted certificate succeeded")
	}
	// A good client, accepted while the silent one still waits.
	good, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: roots})
	if err != nil {
		t.Fatal(err)
	}
	defer good.Close()
	select {
	case c := <-accepted:
		tc, ok := c.(*tls.Conn)
		if !ok || !tc.ConnectionState().HandshakeComplete {
			t.Fatalf("accepted %T with its handshake not complete", c)
		}
		if _, err := good.Write([]byte("x")); err != nil {
			t.Fatal(err)
		}
		b := make([]byte, 1)
		if _, err := io.ReadFull(c, b); err != nil || b[0] != 'x' {
			t.Fatalf("read %q, %v from the accepted connection", b, err)
		}
		c.Close()
	case <-time.After(testTimeout):
		t.Fatal("the good client was not accepted")
	}

	// The silent client is closed once its handshake times out.
	_ = silent.SetReadDeadline(time.Now().Add(testTimeout))
	if _, err := io.Copy(io.Discard, silent); err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Fatal("the silent client's connection was not closed")
		}
	}
	select {
	case c := <-accepted:
		t.Fatalf("accepted %v, whose handshake failed or never came", c.RemoteAddr())
	default:
	}

	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-acceptErr:
		if !errors.Is(err, net.ErrClosed) {
			t.Errorf("Accept after Close: %v, want net.ErrClosed", err)
		}
	case <-time.After(testTimeout):
		t.Fatal("Accept did not return after Close")
	}
}
