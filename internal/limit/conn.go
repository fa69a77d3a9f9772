package limit

import (
	"errors"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// ConnRate limits how fast the listeners it wraps admit new connections
// and, with MaxConns, how many of their connections are open at once. Every
// listener it wraps shares one budget; wrap listeners with separate
// ConnRates for separate budgets.
type ConnRate struct {
	rate, burst float64
	max         int
	now         func() time.Time
	onReject    func(reason string)
	onOpen      func(delta int)
	log         *slog.Logger

	mu     sync.Mutex
	bucket bucket
	open   int
}

// NewConnRate admits perSecond new connections per second on average and
// burst at once (a burst below 1 is 1); perSecond <= 0 disables the rate
// limit. Options: MaxConns, OnReject, OnOpen, LogRefused, WithClock.
func NewConnRate(perSecond float64, burst int, opts ...Option) *ConnRate {
	o := buildOptions(opts)
	c := &ConnRate{max: o.maxConns, now: o.now, onReject: o.onReject, onOpen: o.onOpen, log: o.log}
	c.rate, c.burst = rateParams(perSecond, burst)
	c.bucket = newBucket(c.now(), c.burst)
	return c
}

// WrapListener returns l admitting connections within c's limits. A
// connection beyond them is accepted and closed at once, reported to
// OnReject and LogRefused, and Accept waits for the next one; so the
// caller's server only ever sees admitted connections. An admitted
// connection counts as open until its first Close.
func (c *ConnRate) WrapListener(l net.Listener) net.Listener {
	return &listener{Listener: l, c: c, refused: newRefusedLog(c.log, l.Addr().String(), c.now)}
}

// Open returns the admitted connections not yet closed.
func (c *ConnRate) Open() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.open
}

// admit counts a new connection, or returns the reason to refuse it.
func (c *ConnRate) admit() string {
	now := c.now()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.max > 0 && c.open >= c.max {
		return ReasonTooManyConnections
	}
	if c.rate > 0 {
		if ok, _ := c.bucket.take(now, c.rate, c.burst, 1); !ok {
			return ReasonRateLimited
		}
	}
	c.open++
	return ""
}

func (c *ConnRate) release() {
	c.mu.Lock()
	c.open--
	c.mu.Unlock()
	if c.onOpen != nil {
		c.onOpen(-1)
	}
}

type listener struct {
	net.Listener
	c       *ConnRate
	refused *refusedLog // nil without LogRefused
}

// Close closes the listener, logging the refusals not yet logged.
func (l *listener) Close() error {
	err := l.Listener.Close()
	l.refused.stop()
	return err
}

// Accept returns the next admitted connection.
func (l *listener) Accept() (net.Conn, error) {
	for {
		nc, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		reason := l.c.admit()
		if reason == "" {
			if l.c.onOpen != nil {
				l.c.onOpen(1)
			}
			return &conn{Conn: nc, c: l.c}, nil
		}
		// Counted before the peer can see the refusal: whoever watches
		// the counts sees every refusal its client has seen.
		if l.c.onReject != nil {
			l.c.onReject(reason)
		}
		l.refused.refused(reason)
		nc.Close()
	}
}

// conn releases its place in its ConnRate on its first Close.
type conn struct {
	net.Conn
	c      *ConnRate
	closed atomic.Bool
}

// Close closes the connection and releases its place.
func (c *conn) Close() error {
	err := c.Conn.Close()
	if c.closed.CompareAndSwap(false, true) {
		c.c.release()
	}
	return err
}

// CloseWrite shuts down the writing side of the connection, when the
// underlying connection can (TCP, TLS), so that a server can finish its
// output and linger before it closes.
func (c *conn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// SyscallConn gives the underlying socket's raw access when it has one,
// so that a server can write to it without blocking (internal/wire).
func (c *conn) SyscallConn() (syscall.RawConn, error) {
	if sc, ok := c.Conn.(syscall.Conn); ok {
		return sc.SyscallConn()
	}
	return nil, errors.ErrUnsupported
}
