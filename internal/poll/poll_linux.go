package poll

import (
	"errors"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// Poller is one epoll set and the goroutine that waits on it, started at
// the first Park. A parked connection is registered one-shot: one wake-up
// per park, and a wake-up reaches a Waker only if it takes the Entry
// (parked, swapped to false), so a connection is never woken twice. Events
// carry an Entry's id, not its descriptor: an id stays the Entry's until
// Drop, so an event finds the connection it was armed for, or one that
// took the id after it (a spurious wake-up; see the package comment).
//
// Go's own network poller keeps its registration of the descriptor; a
// descriptor may be in several epoll sets, and whoever is woken reads it
// as any other.
type Poller struct {
	mu      sync.Mutex
	epfd    int               // -1 until the first park
	wakefd  int               // an eventfd: Stop's signal to the waiting goroutine
	entries map[uint32]*Entry // by id: every Entry that parked and was not dropped
	next    uint32
	closed  bool
}

// New returns a Poller; it starts nothing until a connection parks.
func New() *Poller { return &Poller{epfd: -1, wakefd: -1} }

// wakeID is the wake eventfd's id; entries' ids start at 1.
const wakeID = 0

// Park registers the connection of rc, which has nothing buffered to
// read, for one wake-up of w on its next input or its peer's hang-up, and
// reports whether the poller took it: the caller's goroutine may then
// stop waiting. Once parked, the connection is w's (or Unpark's) until
// woken.
func (p *Poller) Park(e *Entry, rc syscall.RawConn, w Waker) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed || (p.epfd < 0 && !p.startLocked()) {
		return false
	}
	if e.id == 0 {
		for p.next++; p.next == wakeID || p.entries[p.next] != nil; p.next++ {
		}
		e.id = p.next
	}
	p.entries[e.id] = e
	e.w = w
	e.parked.Store(true)
	var err error
	cerr := rc.Control(func(fd uintptr) {
		ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLRDHUP | unix.EPOLLONESHOT, Fd: int32(e.id)}
		op := unix.EPOLL_CTL_MOD
		if !e.added {
			op = unix.EPOLL_CTL_ADD
		}
		err = unix.EpollCtl(p.epfd, op, int(fd), &ev)
		if err == nil {
			e.added = true
		}
	})
	if err == nil {
		err = cerr
	}
	if err != nil {
		// Unless an Unpark took it meanwhile (and does what Wake would),
		// the caller goes on waiting itself.
		return !e.parked.CompareAndSwap(true, false)
	}
	return true
}

// Drop forgets e, whose connection is closed: its id may be given to
// another Entry. Its registration ended with its descriptor.
func (p *Poller) Drop(e *Entry) {
	if e.id == 0 {
		return // never parked
	}
	p.mu.Lock()
	if p.entries[e.id] == e {
		delete(p.entries, e.id)
	}
	p.mu.Unlock()
}

// startLocked creates the epoll set and starts the waiting goroutine.
func (p *Poller) startLocked() bool {
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
	p.entries = make(map[uint32]*Entry)
	go p.run(epfd)
	return true
}

// run waits for parked connections' input and wakes them, until Stop.
func (p *Poller) run(epfd int) {
	var events [64]unix.EpollEvent
	for {
		n, err := unix.EpollWait(epfd, events[:], -1)
		if err != nil {
			if errors.Is(err, syscall.EINTR) {
				continue
			}
			// Not expected of a valid epoll set: give every parked
			// connection back.
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
			e := p.entries[uint32(ev.Fd)]
			p.mu.Unlock()
			if e != nil && e.parked.CompareAndSwap(true, false) {
				e.w.Wake()
			}
		}
	}
}

// release wakes every parked connection and closes the epoll set: the
// poller is done.
func (p *Poller) release() {
	p.mu.Lock()
	entries := p.entries
	p.entries = nil
	unix.Close(p.epfd)
	unix.Close(p.wakefd)
	p.mu.Unlock()
	for _, e := range entries {
		if e.parked.CompareAndSwap(true, false) {
			e.w.Wake()
		}
	}
}

// Stop ends the waiting goroutine, if one runs: the connections parked
// then are woken, and later Parks refuse.
func (p *Poller) Stop() {
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

// Len returns how many entries hold an id: every Entry that has parked
// and was not dropped since.
func (p *Poller) Len() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.entries)
}

// Parked returns how many connections are parked now.
func (p *Poller) Parked() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, e := range p.entries {
		if e.parked.Load() {
			n++
		}
	}
	return n
}
