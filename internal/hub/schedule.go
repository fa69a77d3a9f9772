package hub

import (
	"sync"
	"time"
)

// scheduleSlack is how long after one firing the schedule's timer may fire
// again at the earliest: subscribers due within it are served together, so
// that streams opened at different moments do not each cost a timer
// wake-up. A subscriber is never served before its due time, and at most
// this long after it (plus the timer's own latency).
const scheduleSlack = 10 * time.Millisecond

// schedule runs the subscribers' tick functions when they are due, on one
// runtime timer for the whole hub: a heap of the subscribers by due time.
// A stream's heartbeat and token expiry cost it a few fields and a heap
// slot, not a timer and its channel, and the goroutine the stream parks
// never wakes for them.
//
// mu guards the heap and each subscriber's due, at and unscheduled; it is
// taken alone, never while calling a tick function.
type schedule struct {
	mu    sync.Mutex
	heap  []*Subscriber
	timer *time.Timer // armed for when, or stopped; nil until the first use
	when  int64       // Unix nanoseconds the timer fires at; 0: not armed
	last  int64       // when the timer last fired
}

// Schedule makes the hub call tick at due (Unix nanoseconds) on a
// goroutine of its own (one for all the subscribers due together), and
// again at the time tick returns, until s is unscheduled. tick must not
// block.
func (h *Hub) Schedule(s *Subscriber, due int64, tick func(now int64) (next int64)) {
	q := &h.sched
	q.mu.Lock()
	if !s.unscheduled {
		s.tick = tick
		q.pushLocked(s, due)
		q.armLocked()
	}
	q.mu.Unlock()
}

// Unschedule stops calling s's tick function, for good: a tick running
// now is its last. Leave unschedules too.
func (h *Hub) Unschedule(s *Subscriber) {
	q := &h.sched
	q.mu.Lock()
	s.unscheduled = true
	s.tick = nil
	if i := s.at; i >= 0 {
		q.removeLocked(i)
	}
	q.mu.Unlock()
}

func (q *schedule) pushLocked(s *Subscriber, due int64) {
	s.due = due
	s.at = len(q.heap)
	q.heap = append(q.heap, s)
	q.up(s.at)
}

func (q *schedule) removeLocked(i int) {
	s := q.heap[i]
	last := len(q.heap) - 1
	q.swap(i, last)
	q.heap[last] = nil
	q.heap = q.heap[:last]
	s.at = -1
	if i < last {
		q.down(i)
		q.up(i)
	}
	if len(q.heap) == 0 {
		q.heap = nil // a large heap's array goes back once idle
	}
}

// armLocked sets the timer for the earliest subscriber due, no sooner than
// scheduleSlack after the last firing.
func (q *schedule) armLocked() {
	if len(q.heap) == 0 {
		return
	}
	at := max(q.heap[0].due, q.last+int64(scheduleSlack))
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

// fire runs the tick of every subscriber due, reschedules them and re-arms
// the timer.
func (q *schedule) fire() {
	now := time.Now().UnixNano()
	type due struct {
		s    *Subscriber
		tick func(int64) int64
		next int64
	}
	var ds []due
	q.mu.Lock()
	q.when = 0
	q.last = now
	for len(q.heap) > 0 && q.heap[0].due <= now {
		s := q.heap[0]
		q.removeLocked(0)
		ds = append(ds, due{s: s, tick: s.tick})
	}
	q.mu.Unlock()
	for i, d := range ds {
		ds[i].next = d.tick(now)
	}
	q.mu.Lock()
	for _, d := range ds {
		if !d.s.unscheduled {
			q.pushLocked(d.s, d.next)
		}
	}
	q.armLocked()
	q.mu.Unlock()
}

func (q *schedule) swap(i, j int) {
	q.heap[i], q.heap[j] = q.heap[j], q.heap[i]
	q.heap[i].at = i
	q.heap[j].at = j
}

func (q *schedule) up(i int) {
	for i > 0 {
		p := (i - 1) / 2
		if q.heap[p].due <= q.heap[i].due {
			return
		}
		q.swap(i, p)
		i = p
	}
}

func (q *schedule) down(i int) {
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
