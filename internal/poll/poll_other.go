//go:build !linux

package poll

import "syscall"

// Poller is Linux's (epoll) only: elsewhere Park refuses, and every idle
// connection waits on a goroutine of its own.
type Poller struct{}

// New returns a Poller that parks nothing.
func New() *Poller { return &Poller{} }

// Park refuses: see Poller.
func (*Poller) Park(*Entry, syscall.RawConn, Waker) bool { return false }

// Drop does nothing.
func (*Poller) Drop(*Entry) {}

// Stop does nothing.
func (*Poller) Stop() {}

// Len is 0.
func (*Poller) Len() int { return 0 }

// Parked is 0.
func (*Poller) Parked() int { return 0 }
