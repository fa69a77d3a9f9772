package hub

import (
	"errors"
	"sync"
	"sync/atomic"

	"github.com/maxloyalty/notify/internal/sched"
)

// Reasons a subscriber is closed by the server.
var (
	// ErrSlowConsumer: the subscriber's queue overflowed its byte bound.
	ErrSlowConsumer = errors.New("subscriber queue overflowed")
	// ErrShutdown: the node is shutting down.
	ErrShutdown = errors.New("server shutting down")
)

// frameOverhead approximates what a queued frame costs beyond its bytes.
const frameOverhead = 16

// Subscriber is one stream's view of the hub: a bounded queue of frames
// from the rooms it joined.
type Subscriber struct {
	maxBytes int
	// muted holds a bit per EventType not to deliver; bit 0 mutes everything.
	muted  atomic.Uint64
	notify atomic.Pointer[func()] // called when frames arrive or the subscriber closes
	closed atomic.Bool            // set when the subscriber is closed

	// The subscriber's place in the hub's schedule (its heartbeats and
	// token expiry).
	entry  sched.Entry
	joined bool // guarded by mu; here so that the struct fits a smaller size class

	mu      sync.Mutex
	queue   []*Frame
	bytes   int
	dropped int // frames dropped when the queue overflowed
	err     error
	rooms   []string
	keys    []string
}

// Mute sets the event types not delivered to this subscriber; all mutes
// every event. Control frames are always delivered.
func (s *Subscriber) Mute(types []int32, all bool) {
	var bits uint64
	if all {
		bits = 1
	}
	for _, t := range types {
		if t > 0 && t < 64 {
			bits |= 1 << t
		}
	}
	s.muted.Store(bits)
}

// Wants reports whether f passes the subscriber's mutes.
func (s *Subscriber) Wants(f *Frame) bool {
	bits := s.muted.Load()
	if bits == 0 || f.Room == "" {
		return true
	}
	return bits&1 == 0 && bits&(1<<f.Type) == 0
}

// NewSubscriber returns a subscriber whose queue holds at most maxBytes of
// frames.
func NewSubscriber(maxBytes int) *Subscriber {
	return &Subscriber{maxBytes: maxBytes}
}

// Notify makes fn be called whenever frames are queued or the subscriber is
// closed, never with the subscriber's lock held, but possibly with the
// hub's (fn must not join or leave rooms itself). Whoever reads the queue
// sets it before looking at it (Take), so that nothing queued is missed.
func (s *Subscriber) Notify(fn func()) { s.notify.Store(&fn) }

// Closed reports whether the subscriber is closed, without its lock.
func (s *Subscriber) Closed() bool { return s.closed.Load() }

// push queues f, or closes the subscriber if f would overflow its bound;
// it reports whether f was queued (the caller then signals the subscriber)
// and whether this push closed it.
func (s *Subscriber) push(f *Frame) (queued, overflowed bool) {
	if !s.Wants(f) {
		return false, false
	}
	s.mu.Lock()
	if s.err != nil {
		s.mu.Unlock()
		return false, false
	}
	size := len(f.Bytes) + frameOverhead
	if s.bytes+size > s.maxBytes {
		s.dropped = len(s.queue) + 1
		s.closeLocked(ErrSlowConsumer)
		s.mu.Unlock()
		s.notifyClosed()
		return false, true
	}
	s.queue = append(s.queue, f)
	s.bytes += size
	s.mu.Unlock()
	return true, false
}

func (s *Subscriber) signal() {
	if fn := s.notify.Load(); fn != nil {
		(*fn)()
	}
}

// notifyClosed tells the Notify function of a close; it runs without the
// subscriber's lock.
func (s *Subscriber) notifyClosed() { s.signal() }

// Take moves the queued frames onto buf and returns it with the reason the
// subscriber was closed, if it was. After ErrSlowConsumer nothing is
// returned: the overflowed queue was dropped and the client must resume.
func (s *Subscriber) Take(buf []*Frame) ([]*Frame, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	buf = append(buf, s.queue...)
	clear(s.queue)
	s.queue = s.queue[:0]
	s.bytes = 0
	return buf, s.err
}

// Close ends the subscriber with err; the first reason wins.
func (s *Subscriber) Close(err error) {
	s.mu.Lock()
	first := s.err == nil
	s.closeLocked(err)
	s.mu.Unlock()
	if first {
		s.notifyClosed()
	}
}

func (s *Subscriber) closeLocked(err error) {
	if s.err != nil {
		return
	}
	s.err = err
	s.closed.Store(true)
	if errors.Is(err, ErrSlowConsumer) {
		clear(s.queue)
		s.queue = nil
		s.bytes = 0
	}
}

// Dropped returns how many queued frames were dropped when the queue
// overflowed (0 if it never did).
func (s *Subscriber) Dropped() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.dropped
}

// Err returns why the subscriber was closed, or nil.
func (s *Subscriber) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}
