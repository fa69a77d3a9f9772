package service

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/durationpb"

	notifyv1 "github.com/maxloyalty/notify/gen/notify/v1"
	"github.com/maxloyalty/notify/server/auth"
	"github.com/maxloyalty/notify/server/broker"
	"github.com/maxloyalty/notify/server/hub"
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
// replay are written. A transport that can run the pump on its connection's
// writer (attacher) gets it, and the hub's pushes kick it directly: no
// goroutine wakes per push. Otherwise the loop starts sender goroutines.
func (w *writer) live(ctx context.Context) {
	w.exit = make(chan error, 1)
	a, ok := grpc.ServerTransportStreamFromContext(ctx).(attacher)
	if !ok {
		w.wakeup, w.quit = make(chan struct{}, 1), make(chan struct{})
		return
	}
	// Sends go straight to the transport's stream, not through the
	// interceptors' wrappers (which only change Context): a pointer chase
	// less per write, on ten thousand streams per event.
	w.sender, w.parts = a, a
	w.kick = a.Attach(w.pumpAttached)
	w.sub.Notify(w.kick)
	w.kick() // for what was queued before
}

// run serves the live stream until it ends, and returns its status. It
// holds the delivery rules whoever writes: it keeps one timer for the
// heartbeat and the token expiry, and ends the stream when its context
// ends, when the pump gives the stream's end (a closed subscriber's last
// message was written, or a send failed), or at once when the hub cuts a
// slow consumer, even while a send is stuck on a client that stopped
// reading (HTTP/2 flow control holds it, and only the handler's return
// ends the stream).
//
// Who writes is the transport's business. Attached (see live), the
// connection's writer runs the pump whenever the hub kicks it, and the loop
// only kicks it for a heartbeat. Otherwise the loop starts a sender
// goroutine when the subscriber's queue becomes ready and none runs; the
// sender waits on Ready itself, one wake-up per write, and exits after
// senderIdle without work, so that an idle stream costs one goroutine.
//
// The loop's goroutine is the handler's, parked for the stream's life:
// it makes no deep call before the stream ends.
func (s *Service) run(w *writer, expiry int64) error {
	if w.quit != nil {
		defer close(w.quit)
	}
	ctxDone := w.stream.Context().Done()
	sub := w.sub
	timer := time.NewTimer(w.next(time.Now().UnixNano(), expiry))
	defer timer.Stop()
	// exit is the pump's results while a sender runs, and always when
	// attached (the loop then never waits on Ready).
	var exit chan error
	if w.kick != nil {
		exit = w.exit
	}
	done := sub.Done()
	for {
		var ready <-chan struct{}
		if exit == nil {
			ready = sub.Ready()
		}
		select {
		case <-ctxDone:
			return toStatusErr(w.stream.Context().Err())
		case <-timer.C:
			now := time.Now().UnixNano()
			switch {
			case expiry != 0 && now >= expiry:
				// The pump writes what is queued, then Disconnected.
				expiry = 0
				sub.Close(errTokenExpired)
			case now-w.lastWrite.Load() >= int64(w.interval) && !w.beat.Load():
				w.beat.Store(true)
				switch {
				case w.kick != nil:
					w.kick()
				case exit == nil:
					exit = w.start()
				default:
					w.wake()
				}
			}
			timer.Reset(w.next(now, expiry))
		case <-ready:
			exit = w.start()
		case err := <-exit:
			switch {
			case errors.Is(err, errAbandoned):
				return s.abandon(sub, w)
			case err != nil:
				return err
			}
			// A sender went idle.
			exit = nil
			if w.beat.Load() {
				exit = w.start() // a heartbeat came due as it did
			}
		case <-done:
			done = nil
			if errors.Is(sub.Err(), hub.ErrSlowConsumer) {
				// Whether or not a send is stuck, the stream ends now.
				return s.abandon(sub, w)
			}
			// Otherwise the pump is kicked (attached) or Ready signalled:
			// it writes what is queued and the reason, and ends the stream.
		}
	}
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

// next is when the stream's one timer must fire next: the heartbeat and
// the expiry share it. Writes do not reset it (a timer reset per write
// costs more than the write's bookkeeping): it fires at the latest
// heartbeat time and is re-armed for what is left.
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
		w.exit <- err
	}
}

// senderIdle is how long a sender goroutine waits for work before it exits,
// so that idle streams cost one goroutine, not two. It must be well below
// the heartbeat interval, or heartbeats alone would keep it alive.
const senderIdle = 2 * time.Second

// start starts a sender goroutine and returns the channel of its result.
func (w *writer) start() chan error {
	go w.loop()
	return w.exit
}

// loop is a sender goroutine: it writes what the subscriber has queued and
// any heartbeat due, until it has been idle for senderIdle (result nil), the
// stream ends (its final status) or the stream's loop returns. It gives at
// most one result, which the loop takes before it starts another sender.
func (w *writer) loop() {
	var idle *time.Timer
	for {
		if err := w.pump(); err != nil {
			if idle != nil {
				idle.Stop()
			}
			w.exit <- err
			return
		}
		if idle == nil {
			idle = time.NewTimer(senderIdle)
		}
		select {
		case <-w.sub.Ready():
		case <-w.wakeup:
		case <-idle.C:
			// Like the heartbeat, the idle timer is not reset per write.
			if d := time.Duration(time.Now().UnixNano() - w.lastWrite.Load()); d < senderIdle {
				idle.Reset(senderIdle - d)
				continue
			}
			w.exit <- nil
			return
		case <-w.quit:
			idle.Stop()
			return
		}
	}
}

// wake makes a running sender look for work.
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
