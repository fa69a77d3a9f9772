package service

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/maxloyalty/notify/server/auth"
	"github.com/maxloyalty/notify/server/hub"
)

// detacher is a stream whose transport (internal/wire) can run it without
// a goroutine of its own: Attach makes the connection's writer goroutine
// call pump whenever kick is called (never twice at once, sends that never
// block), and Detach lets the handler return while the stream goes on
// until end is called.
type detacher interface {
	Attach(pump func()) (kick func())
	Detach() (end func(error), handlerErr error)
	SendMsg(m any) error
	partsSender
}

// partsSender writes one message from encoded parts, with no codec:
// concatenated frames are one valid SubscribeResponse.
type partsSender interface {
	SendParts(parts [][]byte) error
}

// detach hands a stream that is live (Connected and replay sent) to
// callbacks, and returns what its handler must return at once: the hub's
// pushes kick the pump on the connection's writer goroutine, one timer
// keeps heartbeats and token expiry, and the stream's context ending (the
// client gone) ends it. An idle stream then costs no goroutine and no
// stack, only its state.
func (s *Service) detach(ctx context.Context, c auth.Claims, w *writer, u undo, d detacher) error {
	l := &live{s: s, w: w, sub: w.sub, u: u, expiry: s.expiry(c)}
	// Sends go straight to the transport's stream, not through the
	// interceptors' wrappers (which only change Context): a pointer chase
	// less per write, on ten thousand streams per event.
	w.sender, w.parts = d, d
	end, handlerErr := d.Detach()
	l.end = end
	l.kick = d.Attach(l.pump)
	l.timer = time.AfterFunc(time.Hour, l.tick)
	l.timer.Reset(w.next(time.Now().UnixNano(), l.expiry))
	// Also fires when end cancels the context: finish is done by then.
	context.AfterFunc(ctx, func() { l.finish(func() error { return toStatusErr(ctx.Err()) }) })
	l.sub.Notify(l.notify)
	l.kick() // for what was queued before
	return handlerErr
}

// live is a detached stream.
type live struct {
	s      *Service
	w      *writer
	sub    *hub.Subscriber
	u      undo
	kick   func()
	end    func(error)
	timer  *time.Timer
	expiry int64 // Unix nanoseconds, 0: none; only tick uses it
	once   sync.Once
	over   atomic.Bool
}

// pump runs on the connection's writer goroutine.
func (l *live) pump() {
	if l.over.Load() {
		return
	}
	if err := l.w.pump(); err != nil {
		if errors.Is(err, errAbandoned) {
			l.finish(func() error { return l.s.abandon(l.sub, l.w) })
			return
		}
		l.finish(func() error { return err })
	}
}

// notify runs on every push and on the close, outside the subscriber's
// lock but maybe inside the hub's: it only kicks the pump, and ends a slow
// consumer's stream on another goroutine. A client that stopped reading
// leaves the pump unrun (its output waits on flow control), so the stream
// is ended here, at once, with the positions last written.
func (l *live) notify() {
	if l.sub.Closed() && errors.Is(l.sub.Err(), hub.ErrSlowConsumer) {
		go l.finish(func() error { return l.s.abandon(l.sub, l.w) })
		return
	}
	l.kick()
}

// tick is the stream's timer: heartbeats on an idle stream and the end of
// its token.
func (l *live) tick() {
	if l.over.Load() {
		return
	}
	now := time.Now().UnixNano()
	switch {
	case l.expiry != 0 && now >= l.expiry:
		// The pump writes what is queued, then Disconnected.
		l.expiry = 0
		l.sub.Close(errTokenExpired)
	case now-l.w.lastWrite.Load() >= int64(l.w.interval) && !l.w.beat.Load():
		l.w.beat.Store(true)
		l.kick()
	}
	l.timer.Reset(l.w.next(now, l.expiry))
}

// finish ends the stream once, with the error reason gives: the
// subscription is given back, then the status goes after what was written.
func (l *live) finish(reason func() error) {
	l.once.Do(func() {
		l.over.Store(true)
		l.timer.Stop()
		err := reason()
		l.u.run(l.s)
		l.end(err)
	})
}
