package gateway

import (
	"crypto/tls"
	"errors"
	"net"
	"sync"
	"time"
)

// TLSListener returns a listener of TLS connections whose handshakes are
// complete: each runs on a short-lived goroutine of its own, within
// timeout, and only connections that completed it are accepted. An HTTP
// server (net/http's HTTP/2 server, which goes on serving a connection on
// the goroutine that did its handshake) otherwise keeps a stack grown by
// the handshake's cryptography for the connection's whole life, though it
// only waits. A connection whose handshake fails or times out is closed
// and never accepted; the listener's own errors (Close included) are
// returned by Accept once every accepted connection has been taken.
func TLSListener(l net.Listener, cfg *tls.Config, timeout time.Duration) net.Listener {
	tl := &tlsListener{
		Listener: l,
		cfg:      cfg,
		timeout:  timeout,
		ready:    make(chan net.Conn),
		done:     make(chan struct{}),
		closed:   make(chan struct{}),
	}
	go tl.accept()
	return tl
}

type tlsListener struct {
	net.Listener
	cfg     *tls.Config
	timeout time.Duration
	ready   chan net.Conn // handshaken connections
	done    chan struct{} // closed when accept has stopped (err is set)
	err     error

	closeOnce sync.Once
	closed    chan struct{} // closed by Close: handshakes give up their connections
}

// accept takes connections and starts their handshakes until the
// underlying listener fails.
func (l *tlsListener) accept() {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				time.Sleep(5 * time.Millisecond)
				continue
			}
			l.err = err
			close(l.done)
			return
		}
		go l.handshake(c)
	}
}

// handshake completes c's handshake and hands it to Accept, or closes it.
func (l *tlsListener) handshake(c net.Conn) {
	tc := tls.Server(c, l.cfg)
	_ = tc.SetDeadline(time.Now().Add(l.timeout))
	if err := tc.Handshake(); err != nil {
		_ = tc.Close()
		return
	}
	_ = tc.SetDeadline(time.Time{})
	select {
	case l.ready <- tc:
	case <-l.closed:
		_ = tc.Close()
	}
}

// Accept returns the next connection whose handshake completed.
func (l *tlsListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ready:
		return c, nil
	case <-l.done:
		return nil, l.err
	}
}

// Close closes the underlying listener; handshakes still running give
// their connections up.
func (l *tlsListener) Close() error {
	err := l.Listener.Close()
	l.closeOnce.Do(func() { close(l.closed) })
	return err
}
