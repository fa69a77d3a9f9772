// Package poll waits for input on idle network connections without a
// goroutine each.
//
// A server whose connections mostly wait (a stream with nothing to send,
// a client that sends nothing more) would otherwise keep a goroutine and
// its stack per connection, blocked in Read. A Poller keeps one goroutine
// per server instead: a connection parks its Entry with the poller and
// its goroutine exits; when the connection's descriptor has input, or its
// peer hangs up, the poller calls the Entry's Waker once. What parks is
// a socket (syscall.RawConn): a TLS connection parks the socket under it,
// and only once crypto/tls holds no record it read and has not returned,
// which the descriptor would no longer show (the callers check).
//
// A wake-up is a hint, not a promise of input: a Waker must cope with
// one that finds nothing to read (an event armed for a connection that
// ended and whose id another Entry took since), typically by starting a
// goroutine that reads as it would without the poller.
//
// On systems other than Linux (no epoll), Park always refuses, and every
// connection waits on a goroutine of its own.
package poll

import "sync/atomic"

// A Waker is told, on the poller's goroutine, that its parked connection
// has input or is being given back (Stop). Wake must not block.
type Waker interface {
	Wake()
}

// Entry is one connection's registration with a Poller, kept in the
// connection: its zero value is ready to park. It holds an id that stays
// the connection's until Drop.
type Entry struct {
	parked atomic.Bool
	w      Waker
	id     uint32 // the Poller's: the connection's id in its events, from its first park
	added  bool   // the Poller's: the descriptor is in its epoll set
}

// Unpark takes a parked connection back, for its closing: it reports
// whether the Entry was parked, in which case the caller does what Wake
// would have (the poller will not). One atomic exchange decides whether
// the poller or Unpark has the connection.
func (e *Entry) Unpark() bool {
	return e.parked.CompareAndSwap(true, false)
}

// Parked reports whether the poller waits for the connection's input.
func (e *Entry) Parked() bool { return e.parked.Load() }
