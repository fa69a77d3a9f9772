package wire

import (
	"runtime"
	"sync"
	"sync/atomic"
)

// writers runs the output of connections that can be written without
// blocking (plain TCP: see rawWriter) on a few goroutines shared by the
// whole server, instead of a goroutine started per connection per burst of
// output. A delivery to thousands of streams each on its own connection
// then costs a queue push per connection, not a goroutine start, a stack
// growth and a scheduling round each.
//
// A connection is queued once per turn (its writing flag is the turn's
// token, as for a goroutine of its own), so the queue holds at most one
// entry per connection. Workers start when there is work and fewer than
// GOMAXPROCS run, and exit when the queue is empty: an idle server holds
// none. A worker never blocks on a peer: a write the kernel does not take
// whole goes on, with the rest of the connection's turn, on a goroutine of
// the connection's own (see conn.write).
type writers struct {
	mu      sync.Mutex
	q       []*conn
	head    int // q[head:] is due
	running int
	max     int // workers at most: GOMAXPROCS, read when the last one exits

	spills atomic.Int64 // turns moved to a goroutine of their own
}

// add queues c for a worker; c's writing flag is set.
func (w *writers) add(c *conn) {
	w.mu.Lock()
	w.q = append(w.q, c)
	if w.max == 0 {
		w.max = runtime.GOMAXPROCS(0)
	}
	start := w.running < w.max
	if start {
		w.running++
	}
	w.mu.Unlock()
	if start {
		go w.run()
	}
}

// run takes connections off the queue and writes them until it is empty.
func (w *writers) run() {
	growStack(0)
	for {
		w.mu.Lock()
		if w.head == len(w.q) {
			w.q, w.head = w.q[:0], 0
			w.running--
			if w.running == 0 {
				w.max = 0 // GOMAXPROCS may have changed
			}
			w.mu.Unlock()
			return
		}
		c := w.q[w.head]
		w.q[w.head] = nil
		w.head++
		if w.head >= 1024 && 2*w.head >= len(w.q) {
			// A queue that never empties: drop what was taken, so
			// that appends do not carry it along.
			n := copy(w.q, w.q[w.head:])
			clear(w.q[n:])
			w.q, w.head = w.q[:n], 0
		}
		w.mu.Unlock()
		c.write(true)
	}
}
