package hub

// The hub runs the subscribers' tick functions when they are due, on one
// runtime timer for the whole hub (sched.Schedule): a stream's heartbeat
// and token expiry cost it a few fields and a heap slot, not a timer and
// its channel, and the goroutine the stream parks never wakes for them.

// Schedule makes the hub call tick at due (Unix nanoseconds) on a
// goroutine of its own (one for all the subscribers due together), and
// again at the time tick returns, until s is unscheduled. tick must not
// block.
func (h *Hub) Schedule(s *Subscriber, due int64, tick func(now int64) (next int64)) {
	h.sched.Add(&s.entry, due, tick)
}

// Unschedule stops calling s's tick function, for good: a tick running
// now is its last. Leave unschedules too.
func (h *Hub) Unschedule(s *Subscriber) {
	h.sched.Remove(&s.entry)
}
