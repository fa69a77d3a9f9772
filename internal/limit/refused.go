package limit

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// refusedEvery is the shortest time between two log lines of one
// listener's refused connections.
const refusedEvery = time.Second

// LogRefused makes each listener a ConnRate wraps log the connections it
// refuses on log, at Warn: the first refusal at once, then at most one line
// per second per listener, each with the listener's address and the
// connections refused since the previous line, by reason. What is pending
// when the listener closes is logged then. A refused client only sees its
// connection closed: these lines, and OnReject's metric, are what tells an
// operator.
func LogRefused(log *slog.Logger) Option {
	return func(o *options) { o.log = log }
}

// refusedLog counts one listener's refused connections and logs them,
// rate-limited.
type refusedLog struct {
	log  *slog.Logger
	addr string
	now  func() time.Time

	mu      sync.Mutex
	last    time.Time // when the last line was logged
	rate    int       // refused by the rate since then
	max     int       // refused by MaxConns since then
	timer   *time.Timer
	stopped bool
}

func newRefusedLog(log *slog.Logger, addr string, now func() time.Time) *refusedLog {
	if log == nil {
		return nil
	}
	return &refusedLog{log: log, addr: addr, now: now}
}

// refused counts a refusal and logs it, or leaves it to the line due at
// the end of the current second.
func (r *refusedLog) refused(reason string) {
	if r == nil {
		return
	}
	now := r.now()
	r.mu.Lock()
	if r.stopped {
		r.mu.Unlock()
		return
	}
	if reason == ReasonTooManyConnections {
		r.max++
	} else {
		r.rate++
	}
	if r.timer != nil {
		r.mu.Unlock()
		return // the line due covers it
	}
	if wait := r.last.Add(refusedEvery).Sub(now); !r.last.IsZero() && wait > 0 {
		r.timer = time.AfterFunc(wait, r.flush)
		r.mu.Unlock()
		return
	}
	rate, max := r.take(now)
	r.mu.Unlock()
	r.write(rate, max)
}

// flush logs what is pending (the timer's function).
func (r *refusedLog) flush() {
	r.mu.Lock()
	r.timer = nil
	rate, max := r.take(r.now())
	r.mu.Unlock()
	r.write(rate, max)
}

// stop logs what is pending and stops logging (the listener closed).
func (r *refusedLog) stop() {
	if r == nil {
		return
	}
	r.mu.Lock()
	if r.stopped {
		r.mu.Unlock()
		return
	}
	r.stopped = true
	if r.timer != nil {
		r.timer.Stop()
		r.timer = nil
	}
	rate, max := r.take(r.now())
	r.mu.Unlock()
	r.write(rate, max)
}

// take returns and resets the counts; r.mu is held.
func (r *refusedLog) take(now time.Time) (rate, max int) {
	rate, max = r.rate, r.max
	r.rate, r.max = 0, 0
	if rate+max > 0 {
		r.last = now
	}
	return rate, max
}

func (r *refusedLog) write(rate, max int) {
	if rate+max == 0 {
		return
	}
	r.log.LogAttrs(context.Background(), slog.LevelWarn, "connections refused",
		slog.String("addr", r.addr),
		slog.Int("refused", rate+max),
		slog.Int("rate_limited", rate),
		slog.Int("too_many_connections", max),
	)
}
