package wire

// A connection's output: its writer (a turn on the server's shared
// writers, or a goroutine of its own), the pumps and flow control it
// serves, and the output buffers.

import (
	"runtime"
	"sync"
)

// wakeLocked makes sure a writer goroutine runs.
func (c *conn) wakeLocked() {
	if !c.closed {
		c.startWriter()
	}
}

// startWriter starts the connection's writer unless one runs: a turn on
// the server's shared writers when the connection can be written without
// blocking, a goroutine of its own otherwise.
func (c *conn) startWriter() {
	if c.writing.CompareAndSwap(false, true) {
		if c.raw != nil && !c.raw.tls {
			c.srv.writers.add(c)
		} else {
			go c.writeLoop()
		}
	}
}

// writerExit marks the writer gone; the caller holds mu.
func (c *conn) writerExitLocked() {
	c.writing.Store(false)
	c.cond.Broadcast()
}

// writeLoop is the connection's writer on a goroutine of its own.
func (c *conn) writeLoop() {
	growStack(0)
	c.write(false)
}

// maxTurnWrites bounds the writes of one turn on a shared writer, so that
// a connection with a steady flow of output does not hold it from others.
const maxTurnWrites = 8

// write runs due pumps and writes the output until there is neither; it
// then gives up the writing flag, so that a quiet connection holds no
// writer. Kicks only take the run queue's own lock (qmu), never mu, so
// that a delivery to many streams does not wait behind the writers.
//
// shared is a turn on the server's writers (see writers): the writes do
// not block; one the kernel does not take whole moves the rest of the turn
// to a goroutine of the connection's own, and after maxTurnWrites the
// connection goes back to the queue.
func (c *conn) write(shared bool) {
	yielded := false
	writes := 0
	for {
		// The two run queues alternate: kicks append to one while this
		// goroutine runs the other.
		c.qmu.Lock()
		q := c.runq
		c.runq = c.spareq[:0]
		c.spareq = nil
		c.qmu.Unlock()
		for _, st := range q {
			st.kicked.Store(false) // a kick from now on queues it again
			st.runPump()
		}
		clear(q)
		c.qmu.Lock()
		c.spareq = q[:0]
		c.qmu.Unlock()
		if len(q) > 0 {
			continue
		}

		c.mu.Lock()
		if c.closed {
			last := c.out
			c.out, c.spare = nil, nil
			c.mu.Unlock()
			if shared && len(last) > 0 {
				n, err := c.raw.write(last)
				if err == errWouldBlock {
					c.srv.writers.spills.Add(1)
					go c.finishLast(last[n:])
					return
				}
				last = nil
			}
			c.finishLast(last)
			return
		}
		if len(c.out) == 0 {
			if c.goaway && c.streams.len() == 0 {
				c.writerExitLocked()
				c.mu.Unlock()
				c.close(nil)
				return
			}
			putBuf(c.spare)
			putBuf(c.out)
			c.out, c.spare = nil, nil
			c.writerExitLocked()
			c.mu.Unlock()
			// Work queued after the looks above finds writing true and
			// relies on this writer: look again, and go on if there is
			// some and no other writer took it.
			c.qmu.Lock()
			more := len(c.runq) > 0
			c.qmu.Unlock()
			c.mu.Lock()
			more = more || (len(c.out) > 0 && !c.closed)
			c.mu.Unlock()
			if more && c.writing.CompareAndSwap(false, true) {
				continue
			}
			return
		}
		if shared && writes >= maxTurnWrites {
			c.mu.Unlock()
			c.srv.writers.add(c)
			return
		}
		if !yielded && c.inflight.Load() > 1 {
			// Other calls on this connection are running: let them add
			// their responses, and write them all at once. A write on
			// loopback costs several microseconds, most of a small call.
			yielded = true
			c.mu.Unlock()
			runtime.Gosched()
			continue
		}
		yielded = false
		buf := c.out
		c.out = c.spare[:0]
		c.spare = nil
		c.flushing = len(buf)
		c.control = 0
		c.cond.Broadcast()
		c.mu.Unlock()
		writes++
		var err error
		if shared {
			var n int
			if n, err = c.raw.write(buf); err == errWouldBlock {
				c.srv.writers.spills.Add(1)
				go c.finishWrite(buf, n)
				return
			}
		} else {
			_, err = c.nc.Write(buf)
		}
		if !c.wrote(buf, err) {
			return
		}
	}
}

// wrote takes buf back once written and reports whether the writer goes
// on: not after a failed write, which closes the connection.
func (c *conn) wrote(buf []byte, err error) bool {
	c.mu.Lock()
	c.flushing = 0
	if c.spare == nil && cap(buf) <= maxBufCap {
		c.spare = buf[:0]
	}
	c.cond.Broadcast()
	if err != nil {
		c.writerExitLocked()
		c.mu.Unlock()
		c.close(err)
		return false
	}
	c.mu.Unlock()
	return true
}

// finishWrite is a shared writer's turn moved to a goroutine of the
// connection's own: it writes what the kernel did not take of buf (from
// n on), blocking as long as the peer needs, and goes on writing.
func (c *conn) finishWrite(buf []byte, n int) {
	growStack(0)
	_, err := c.nc.Write(buf[n:])
	if c.wrote(buf, err) {
		c.write(false)
	}
}

// finishLast writes a closed connection's last output and ends the
// writer.
func (c *conn) finishLast(last []byte) {
	if len(last) > 0 {
		_, _ = c.nc.Write(last)
	}
	c.mu.Lock()
	c.writerExitLocked()
	c.mu.Unlock()
}

// growStack grows a new writer goroutine's stack at once, past what its
// pumps and writes need (more than the smallest stack): grown with one
// frame on it, the stack is copied for a fraction of what growing it under
// a dozen frames costs, which a writer started for one write (a stream on
// a connection of its own gets one per event) would pay every time.
//
//go:noinline
func growStack(i int) byte {
	var pad [2560]byte
	pad[i] = 1
	return pad[(i+1)%len(pad)]
}

// flushLocked moves as much of st's pending data into DATA frames as the
// windows allow; once it is all out, it writes the trailers of a finished
// stream or runs the pump of an attached one.
func (c *conn) flushLocked(st *stream) {
	if st.closed {
		return
	}
	for len(st.pending) > 0 {
		n := int64(len(st.pending))
		n = min(n, st.sendWindow, c.sendWindow)
		if n <= 0 {
			if c.sendWindow <= 0 && st.sendWindow > 0 && !st.inFlowq {
				st.inFlowq = true
				c.flowq = append(c.flowq, st)
			}
			return
		}
		c.out = appendData(c.outBuf(), st.id, st.pending[:n])
		st.sendWindow -= n
		c.sendWindow -= n
		st.pending = st.pending[n:]
		c.wakeLocked()
	}
	st.pending = nil
	if st.finished != nil {
		c.trailersLocked(st)
		return
	}
	if st.wantPump {
		st.wantPump = false
		st.kick()
	}
	c.cond.Broadcast()
}

// outBuf returns the output buffer, taking one from the pool if there is
// none.
func (c *conn) outBuf() []byte {
	if c.out == nil {
		c.out = getBuf()
	}
	return c.out
}

// maxBufCap is the largest output buffer kept for reuse.
const maxBufCap = 1 << 20

// Output buffers are pooled: a quiet connection holds none. The pool
// holds pointers to slices; the pointers go back and forth through a pool
// of their own, as a connection that goes quiet after every delivery puts
// its buffers back every time and a new pointer for each would be garbage
// on every delivery.
var (
	bufPool  = sync.Pool{New: func() any { b := make([]byte, 0, 32<<10); return &b }}
	bufBoxes = sync.Pool{New: func() any { return new([]byte) }}
)

func getBuf() []byte {
	p := bufPool.Get().(*[]byte)
	b := (*p)[:0]
	*p = nil
	bufBoxes.Put(p)
	return b
}

func putBuf(b []byte) {
	if b == nil || cap(b) > maxBufCap {
		return
	}
	p := bufBoxes.Get().(*[]byte)
	*p = b[:0]
	bufPool.Put(p)
}
