package service

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/durationpb"

	notifyv1 "github.com/maxloyalty/notify/gen/notify/v1"
	"github.com/maxloyalty/notify/internal/auth"
	"github.com/maxloyalty/notify/internal/broker"
	"github.com/maxloyalty/notify/internal/hub"
)

// attacher is a transport stream whose connection's writer goroutine can
// write the stream (internal/wire): after Attach, kick makes the writer
// call pump, at once or as soon as the stream's output waiting for flow
// control is out, never twice at a time, and pump's sends never block.
// The handler keeps the stream open until it returns.
type attacher interface {
	Attach(pump func()) (kick func())
	SendMsg(m any) error
	partsSender
}

// partsSender writes one message from encoded parts, with no codec:
// concatenated frames are one valid SubscribeResponse.
type partsSender interface {
	SendParts(parts [][]byte) error
}

// live prepares the writer for the live phase, once Connected and the
// replay are written, and schedules its heartbeats and token expiry on the
// hub (tick). A transport that can run the pump on its connection's writer
// (attacher) gets it, and the hub's pushes kick it directly: no goroutine
// wakes per push. Otherwise a push starts a sender goroutine, or wakes the
// one running. It runs on the setup goroutine, as everything the stream's
// loop needs does, so that the loop's goroutine stays shallow.
func (w *writer) live(ctx context.Context, s *Service, expiry int64) {
	w.expiry = expiry
	if a, ok := grpc.ServerTransportStreamFromContext(ctx).(attacher); ok {
		// Sends go straight to the transport's stream, not through the
		// interceptors' wrappers (which only change Context): a pointer chase
		// less per write, on ten thousand streams per event.
		w.sender, w.parts = a, a
		w.kick = a.Attach(w.pumpAttached)
	} else {
		w.wakeup, w.quit = make(chan struct{}, 1), make(chan struct{})
	}
	w.sub.Notify(w.notify)
	now := time.Now().UnixNano()
	s.hub.Schedule(w.sub, now+int64(w.next(now, expiry)), w.tick)
	w.poke() // for what was queued before
}

// run waits for the live stream's end and returns its status: its context
// ends, or the writer gives the stream's end (finish): a closed
// subscriber's last message was written, a send failed, or the hub cut a
// slow consumer, at once, even while a send is stuck on a client that
// stopped reading (HTTP/2 flow control holds it, and only the handler's
// return ends the stream).
//
// Nothing else wakes it. The hub's schedule runs tick for heartbeats and
// token expiry; the hub's pushes run or start the pump (notify). Who
// writes is the transport's business: attached (see live), the
// connection's writer runs the pump; otherwise sender goroutines, one at a
// time, each waiting for work itself and exiting after senderIdle without
// any, so that an idle stream costs one goroutine.
//
// The loop's goroutine is the handler's, parked for the stream's life
// under every interceptor's frame: it makes no call here before the
// stream ends, so that its stack keeps its first size.
func (s *Service) run(w *writer) error {
	select {
	case <-w.stream.Context().Done():
		return s.ended(w, nil)
	case err := <-w.mailbox(true):
		return s.ended(w, err)
	}
}

// mailbox returns the result channel; with create it is made if there is
// none yet, and without it is nil until then.
func (w *writer) mailbox(create bool) chan error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.result == nil && create {
		w.result = make(chan error, 1)
	}
	return w.result
}

// ended stops the stream's writer and schedule and returns its status:
// err from the writer, or nil when the stream's context ended.
func (s *Service) ended(w *writer, err error) error {
	s.hub.Unschedule(w.sub)
	if w.quit != nil {
		close(w.quit)
	}
	switch {
	case err == nil:
		return toStatusErr(w.stream.Context().Err())
	case errors.Is(err, errAbandoned):
		return s.abandon(w.sub, w)
	}
	return err
}

// detacher is a transport stream that lets the handler's goroutine go
// while the call goes on (internal/wire's Detach, and grpc-web's over
// HTTP/1.1): the call ends when end is called.
type detacher interface {
	Detach() (end func(error), ok bool)
}

// canceller is a transport stream that tells when its call is
// interrupted more cheaply than context.AfterFunc on its context, which
// makes the context keep a map of children (internal/wire's does, and
// grpc-web's over HTTP/1.1). A later OnCancel replaces an earlier one: the
// setup's, then detach's.
type canceller interface {
	OnCancel(f func())
}

// detach lets the live stream's handler goroutine go when its transport
// allows it (an idle stream then costs no goroutine at all): what run
// waits for, the stream's context or the writer's end, ends the call from
// the goroutine that sees it instead, with what run would have returned.
// It reports whether the handler is to return stack.ErrDetached.
func (s *Service) detach(w *writer) bool {
	ctx := w.stream.Context()
	d, ok := grpc.ServerTransportStreamFromContext(ctx).(detacher)
	if !ok {
		return false
	}
	end, ok := d.Detach()
	if !ok {
		return false
	}
	var once atomic.Bool
	done := func(err error) {
		if once.CompareAndSwap(false, true) {
			err = s.ended(w, err)
			w.undo.run(s)
			end(err)
		}
	}
	// The call's interruption (its context's end) runs done on a goroutine
	// of its own; after the call has ended, done does nothing.
	if c, ok := d.(canceller); ok {
		c.OnCancel(func() { done(nil) })
	} else {
		context.AfterFunc(ctx, func() { done(nil) })
	}
	w.detached.Store(&done)
	w.handOff() // an end given before
	return true
}

// finish gives the stream's end to the loop; the first one given wins.
func (w *writer) finish(err error) {
	if w.gave.CompareAndSwap(false, true) {
		w.mailbox(true) <- err
		w.handOff()
	}
}

// handOff ends a detached stream with the end finish gave, on a goroutine
// of its own: finish runs on the hub's and the transport writer's
// goroutines, which must not wait on the stream's undoing. finish and
// detach both call it, and only one takes the end.
func (w *writer) handOff() {
	done := w.detached.Load()
	if done == nil {
		return // run takes it
	}
	select {
	case err := <-w.mailbox(false): // nil, never ready, before an end was given
		go (*done)(err)
	default:
	}
}

// notify is the subscriber's wake-up: frames were queued, or it was
// closed. A slow consumer ends the stream at once, whatever its pump does;
// anything else is the pump's to write.
func (w *writer) notify() {
	if w.sub.Closed() && errors.Is(w.sub.Err(), hub.ErrSlowConsumer) {
		w.finish(errAbandoned)
		return
	}
	w.poke()
}

// poke makes the pump run: kicked on the transport's writer, or on a
// sender goroutine, started unless one runs.
func (w *writer) poke() {
	switch {
	case w.kick != nil:
		w.kick()
	case w.running.CompareAndSwap(false, true):
		go w.loop()
	default:
		w.wake()
	}
}

// tick is the hub's schedule looking at the stream at now: the token
// expired (the subscriber is closed, and the pump writes what is queued,
// then Disconnected), or a heartbeat is due (the pump writes it unless it
// writes anything else first). It returns when to look again. Writes do
// not reschedule the stream (that would cost more than the write's
// bookkeeping): tick runs at the latest time a heartbeat could be due and
// reschedules for what is left.
func (w *writer) tick(now int64) int64 {
	switch {
	case w.expiry != 0 && now >= w.expiry:
		w.expiry = 0
		w.sub.Close(errTokenExpired)
	case now-w.lastWrite.Load() >= int64(w.interval) && !w.beat.Load():
		w.beat.Store(true)
		w.poke()
	}
	return now + int64(w.next(now, w.expiry))
}

// expiry is when c's token stops being accepted, in Unix nanoseconds; 0:
// never. The verifier accepts a token up to the leeway past exp; the stream
// lives as long as a new call with the token would.
func (s *Service) expiry(c auth.Claims) int64 {
	if c.ExpiresAt.IsZero() {
		return 0
	}
	return c.ExpiresAt.Add(s.cfg.TokenLeeway).UnixNano()
}

// next is how long until tick must look at the stream again: the
// heartbeat and the expiry share the one slot.
func (w *writer) next(now, expiry int64) time.Duration {
	interval := int64(w.interval)
	d := w.lastWrite.Load() + interval - now
	if d <= 0 || w.beat.Load() {
		d = interval
	}
	if expiry != 0 && expiry-now < d {
		d = max(expiry-now, 0)
	}
	return time.Duration(d)
}

// errAbandoned ends a stream whose client stopped reading: the hub cut it
// for overflowing its queue, and its send may be blocked on flow control.
var errAbandoned = fmt.Errorf("%w: the client stopped reading", hub.ErrSlowConsumer)

// pump writes the queued frames, or a heartbeat if one is due and nothing
// else was written, and ends the stream if the subscriber was closed.
func (w *writer) pump() error {
	frames, closed := w.sub.Take(w.frames[:0])
	w.frames = frames
	if len(frames) > 0 {
		err := w.write(frames, true)
		clear(frames)
		if err != nil {
			return err
		}
	}
	switch {
	case errors.Is(closed, hub.ErrSlowConsumer):
		return errAbandoned // the loop ends the stream
	case closed != nil:
		return w.end(w, closed)
	case w.beat.Swap(false) && len(frames) == 0:
		return w.heartbeat()
	}
	return nil
}

// pumpAttached is the pump as the transport's writer runs it. Its first
// error is the stream's end: it goes to the loop, once, and the pump
// writes nothing more.
func (w *writer) pumpAttached() {
	if w.over {
		return
	}
	if err := w.pump(); err != nil {
		w.over = true
		w.finish(err)
	}
}

// senderIdle is how long a sender goroutine waits for work before it exits,
// so that idle streams cost one goroutine, not two. It must be well below
// the heartbeat interval, or heartbeats alone would keep it alive.
const senderIdle = 2 * time.Second

// loop is a sender goroutine: it writes what the subscriber has queued and
// any heartbeat due, until it has been idle for senderIdle, the stream
// ends (its final status goes to the loop) or the stream's loop returns.
// At most one runs at a time (running).
func (w *writer) loop() {
	var idle *time.Timer
	for {
		if err := w.pump(); err != nil {
			if idle != nil {
				idle.Stop()
			}
			w.finish(err)
			return
		}
		if idle == nil {
			idle = time.NewTimer(senderIdle)
		}
		select {
		case <-w.wakeup:
		case <-idle.C:
			// Like the heartbeat, the idle timer is not reset per write.
			if d := time.Duration(time.Now().UnixNano() - w.lastWrite.Load()); d < senderIdle {
				idle.Reset(senderIdle - d)
				continue
			}
			w.running.Store(false)
			// A push or heartbeat that came as this sender stopped found it
			// running and only woke it: go on, unless another sender
			// started meanwhile.
			if (len(w.wakeup) > 0 || w.beat.Load()) && w.running.CompareAndSwap(false, true) {
				idle.Reset(senderIdle)
				continue
			}
			return
		case <-w.quit:
			idle.Stop()
			return
		}
	}
}

// wake makes the running sender look for work.
func (w *writer) wake() {
	select {
	case w.wakeup <- struct{}{}:
	default:
	}
}

// abandon ends a stream whose client stopped reading. No Disconnected can
// be written (the stream is stuck on flow control): the status carries the
// last positions delivered, and reaches the client after what it buffered.
func (s *Service) abandon(sub *hub.Subscriber, w *writer) error {
	s.cfg.Metrics.SlowConsumer()
	if n := sub.Dropped(); n > 0 {
		s.cfg.Metrics.QueueDropped(n)
	}
	return Status(hub.ErrSlowConsumer, positionsMeta(w.positions())).Err()
}

// positionsMeta carries positions in ErrorInfo metadata: room (with "." for
// ":", which metadata keys cannot hold) -> "epoch/offset".
func positionsMeta(ps []*notifyv1.StreamPosition) map[string]string {
	meta := make(map[string]string, len(ps))
	for _, p := range ps {
		meta[metaKey(p.Room)] = p.Epoch + "/" + itoa64(p.Offset)
	}
	return meta
}

// end tells the client why its stream ends and returns the final status.
func (s *Service) end(w *writer, reason error) error {
	d := &notifyv1.Disconnected{Positions: w.positions()}
	switch {
	case errors.Is(reason, hub.ErrShutdown):
		d.Reason = notifyv1.DisconnectReason_DISCONNECT_REASON_SERVER_RESTART
		d.ReconnectDelay = durationpb.New(s.jitter())
	case errors.Is(reason, broker.ErrUnavailable):
		d.Reason = notifyv1.DisconnectReason_DISCONNECT_REASON_BROKER_UNAVAILABLE
		d.ReconnectDelay = durationpb.New(s.jitter())
	case errors.Is(reason, errTokenExpired):
		d.Reason = notifyv1.DisconnectReason_DISCONNECT_REASON_TOKEN_EXPIRED
	}
	_ = w.disconnected(d)
	return Status(reason, positionsMeta(d.Positions)).Err()
}

// jitter picks a reconnect delay in [ReconnectDelayMin, ReconnectDelayMax]
// so that clients of a stopping node do not all return at once.
func (s *Service) jitter() time.Duration {
	span := s.cfg.ReconnectDelayMax - s.cfg.ReconnectDelayMin
	if span <= 0 {
		return s.cfg.ReconnectDelayMin
	}
	return s.cfg.ReconnectDelayMin + rand.N(span)
}
