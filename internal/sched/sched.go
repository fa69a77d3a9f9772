// Package sched runs many callbacks, each when it is due, on one runtime
// timer: a heap of entries by due time. What is scheduled embeds an Entry,
// a few fields, instead of keeping a timer of its own, and nothing of it
// wakes before it is due. The hub schedules its streams' heartbeats and
// token expiry on one; the native port's transport, its connections'
// keepalive.
package sched

import (
	"sync"
	"time"
)

// Slack is how long after one firing the schedule's timer may fire again
// at the earliest: entries due within it are served together, so that
// entries added at different moments do not each cost a timer wake-up.
// An entry is never served before its due time, and at most this long
// after it (plus the timer's own latency).
const Slack = 10 * time.Millisecond

// Entry is a place in a Schedule, embedded in what is scheduled. Its zero
// value is ready; the schedule's lock guards it.
type Entry struct {
	due     int64                 // Unix nanoseconds
	tick    func(now int64) int64 // nil once removed
	at      int32                 // the heap index plus one; 0: not in the heap
	removed bool                  // for good
}

// Schedule calls its entries' tick functions when they are due. The zero
// value is ready. Its lock is taken alone, never while calling a tick
// function.
type Schedule struct {
	mu    sync.Mutex
	heap  []*Entry
	timer *time.Timer // armed for when, or stopped; nil until the first use
	when  int64       // Unix nanoseconds the timer fires at; 0: not armed
	last  int64       // when the timer last fired
}

// Add makes the schedule call tick at due (Unix nanoseconds) on a
// goroutine of its own (one for all the entries due together), and again
// at the time tick returns, until e is removed. tick must not block. An
// entry removed is not added again.
func (q *Schedule) Add(e *Entry, due int64, tick func(now int64) (next int64)) {
	q.mu.Lock()
	if !e.removed {
		e.tick = tick
		if e.at != 0 {
			q.removeLocked(int(e.at - 1))
		}
		q.pushLocked(e, due)
		q.armLocked()
	}
	q.mu.Unlock()
}

// Remove stops calling e's tick function, for good: a tick running now is
// its last.
func (q *Schedule) Remove(e *Entry) {
	q.mu.Lock()
	e.removed = true
	e.tick = nil
	if e.at != 0 {
		q.removeLocked(int(e.at - 1))
	}
	q.mu.Unlock()
}

// Len returns the number of entries scheduled.
func (q *Schedule) Len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.heap)
}

func (q *Schedule) pushLocked(e *Entry, due int64) {
	e.due = due
	e.at = int32(len(q.heap)) + 1
	q.heap = append(q.heap, e)
	q.up(len(q.heap) - 1)
}

func (q *Schedule) removeLocked(i int) {
	e := q.heap[i]
	last := len(q.heap) - 1
	q.swap(i, last)
	q.heap[last] = nil
	q.heap = q.heap[:last]
	e.at = 0
	if i < last {
		q.down(i)
		q.up(i)
	}
	if len(q.heap) == 0 {
		q.heap = nil // a large heap's array goes back once idle
	}
}

// armLocked sets the timer for the earliest entry due, no sooner than
// Slack after the last firing.
func (q *Schedule) armLocked() {
	if len(q.heap) == 0 {
		return
	}
	at := max(q.heap[0].due, q.last+int64(Slack))
	if q.when != 0 && q.when <= at {
		return // it fires sooner already, and re-arms then
	}
	q.when = at
	d := time.Duration(at - time.Now().UnixNano())
	if q.timer == nil {
		q.timer = time.AfterFunc(d, q.fire)
		return
	}
	q.timer.Reset(d)
}

// fire runs the tick of every entry due, reschedules them and re-arms the
// timer.
func (q *Schedule) fire() {
	now := time.Now().UnixNano()
	type due struct {
		e    *Entry
		tick func(int64) int64
		next int64
	}
	var ds []due
	q.mu.Lock()
	q.when = 0
	q.last = now
	for len(q.heap) > 0 && q.heap[0].due <= now {
		e := q.heap[0]
		q.removeLocked(0)
		ds = append(ds, due{e: e, tick: e.tick})
	}
	q.mu.Unlock()
	for i, d := range ds {
		ds[i].next = d.tick(now)
	}
	q.mu.Lock()
	for _, d := range ds {
		// Not if it was removed, or added anew, while its tick ran.
		if !d.e.removed && d.e.at == 0 {
			q.pushLocked(d.e, d.next)
		}
	}
	q.armLocked()
	q.mu.Unlock()
}

func (q *Schedule) swap(i, j int) {
	q.heap[i], q.heap[j] = q.heap[j], q.heap[i]
	q.heap[i].at = int32(i) + 1
	q.heap[j].at = int32(j) + 1
}

func (q *Schedule) up(i int) {
	for i > 0 {
		p := (i - 1) / 2
		if q.heap[p].due <= q.heap[i].due {
			return
		}
		q.swap(i, p)
		i = p
	}
}

func (q *Schedule) down(i int) {
	n := len(q.heap)
	for {
		l := 2*i + 1
		if l >= n {
			return
		}
		m := l
		if r := l + 1; r < n && q.heap[r].due < q.heap[l].due {
			m = r
		}
		if q.heap[i].due <= q.heap[m].due {
			return
		}
		q.swap(i, m)
		i = m
	}
}
