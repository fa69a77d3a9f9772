package wire

import (
	"errors"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// poller waits for input on idle connections without a goroutine each:
// one goroutine per server waits in epoll_wait on every parked connection
// (see conn.park), and starts a reader for the one that has input. A
// parked connection is registered one-shot: one wake-up per park, and a
// wake-up resumes a connection only if it takes it (parked, swapped to
// false), so a connection is never resumed twice. Events carry a
// connection's poll id, not its descriptor: an id stays the connection's
// until it ends (drop), so an event finds the connection it was armed for,
// or one that reused the id after it, which a spurious wake-up only gives
// a reader that waits.
//
// Go's own network poller keeps its registration of the descriptor; a
// descriptor may be in several epoll sets, and the resumed reader reads it
// as any other.
type poller struct {
	mu     sync.Mutex
	epfd   int              // -1 until the first park
	wakefd int              // an eventfd: stop's signal to the waiting goroutine
	conns  map[uint32]*conn // by poll id: every connection that parked and has not ended
	next   uint32
	closed bool
}

func newPoller() *poller { return &poller{epfd: -1, wakefd: -1} }

// wakeID is the wake eventfd's id; connections' ids start at 1.
const wakeID = 0

// park registers c, whose reader has nothing to read, and reports whether
// the poller took it: its reader goroutine may then exit.
func (p *poller) park(c *conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed || (p.epfd < 0 && !p.startLocked()) {
		return false
	}
	if c.pollID == 0 {
		for p.next++; p.next == wakeID || p.conns[p.next] != nil; p.next++ {
		}
		c.pollID = p.next
	}
	p.conns[c.pollID] = c
	c.parked.Store(true)
	var err error
	cerr := c.raw.rc.Control(func(fd uintptr) {
		ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLRDHUP | unix.EPOLLONESHOT, Fd: int32(c.pollID)}
		op := unix.EPOLL_CTL_MOD
		if !c.polled {
			op = unix.EPOLL_CTL_ADD
		}
		err = unix.EpollCtl(p.epfd, op, int(fd), &ev)
		if err == nil {
			c.polled = true
		}
	})
	if err == nil {
		err = cerr
	}
	if err != nil {
		// Unless its closing took it meanwhile (and resumes it), the
		// reader goes on waiting itself.
		return !c.parked.CompareAndSwap(true, false)
	}
	return true
}

// drop forgets c, which has ended: its id may be given to another
// connection. Its registration ended with its descriptor.
func (p *poller) drop(c *conn) {
	if c.pollID == 0 {
		return // never parked
	}
	p.mu.Lock()
	if p.conns[c.pollID] == c {
		delete(p.conns, c.pollID)
	}
	p.mu.Unlock()
}

// startLocked creates the epoll set and starts the waiting goroutine.
func (p *poller) startLocked() bool {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return false
	}
	wakefd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		unix.Close(epfd)
		return false
	}
	ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: wakeID}
	if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, wakefd, &ev); err != nil {
		unix.Close(wakefd)
		unix.Close(epfd)
		return false
	}
	p.epfd, p.wakefd = epfd, wakefd
	p.conns = make(map[uint32]*conn)
	go p.run(epfd)
	return true
}

// run waits for parked connections' input and resumes their readers,
// until stop.
func (p *poller) run(epfd int) {
	var events [64]unix.EpollEvent
	for {
		n, err := unix.EpollWait(epfd, events[:], -1)
		if err != nil {
			if errors.Is(err, syscall.EINTR) {
				continue
			}
			// Not expected of a valid epoll set: give every parked
			// connection back to a reader of its own.
			p.mu.Lock()
			p.closed = true
			p.mu.Unlock()
			p.release()
			return
		}
		for _, ev := range events[:n] {
			if ev.Fd == wakeID {
				p.release()
				return
			}
			p.mu.Lock()
			c := p.conns[uint32(ev.Fd)]
			p.mu.Unlock()
			if c != nil && c.parked.CompareAndSwap(true, false) {
				go c.resume()
			}
		}
	}
}

// release resumes every parked connection's reader and closes the epoll
// set: the poller is done.
func (p *poller) release() {
	p.mu.Lock()
	conns := p.conns
	p.conns = nil
	unix.Close(p.epfd)
	unix.Close(p.wakefd)
	p.mu.Unlock()
	for _, c := range conns {
		if c.parked.CompareAndSwap(true, false) {
			go c.resume()
		}
	}
}

// stop ends the waiting goroutine, if one runs; connections parked then
// get readers of their own, and later ones are not taken.
func (p *poller) stop() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return
	}
	p.closed = true
	if p.wakefd >= 0 {
		var one = [8]byte{1}
		_, _ = unix.Write(p.wakefd, one[:])
	}
}
