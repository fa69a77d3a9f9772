package service

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	notifyv1 "github.com/maxloyalty/notify/gen/notify/v1"
	"github.com/maxloyalty/notify/server/access"
	"github.com/maxloyalty/notify/server/auth"
	"github.com/maxloyalty/notify/server/broker"
	"github.com/maxloyalty/notify/server/hub"
	"github.com/maxloyalty/notify/server/room"
	"github.com/maxloyalty/notify/server/store"
)

// listener is a broker that must be told which rooms this node wants
// before their messages reach it (a shared broker such as Redis).
type listener interface {
	Listen(ctx context.Context, room string) error
	Unlisten(room string)
}

// subscriptionRooms resolves the rooms a stream asks for, or the caller's
// defaults, and checks the caller may join each.
func (s *Service) subscriptionRooms(c auth.Claims, req *notifyv1.SubscribeRequest) ([]room.Room, error) {
	var rooms []room.Room
	if len(req.Rooms) == 0 {
		r, err := access.DefaultRooms(c)
		if err != nil {
			return nil, invalid("%v", err)
		}
		rooms = r
	} else {
		if len(req.Rooms) > s.cfg.MaxRoomsPerStream {
			s.cfg.Metrics.LimitRejected("rooms")
			return nil, fmt.Errorf("%w: rooms: %d rooms, at most %d per stream", errTooManyRooms, len(req.Rooms), s.cfg.MaxRoomsPerStream)
		}
		r, err := parseRooms(req.Rooms)
		if err != nil {
			return nil, err
		}
		rooms = r
	}
	for _, r := range rooms {
		if err := access.CanSubscribe(c, r); err != nil {
			return nil, err
		}
	}
	return rooms, nil
}

// positions indexes the client's resume positions by room, checking that
// each names a room of the stream.
func positions(rooms []room.Room, ps []*notifyv1.StreamPosition) (map[string]broker.Position, error) {
	if len(ps) == 0 {
		return nil, nil
	}
	out := make(map[string]broker.Position, len(ps))
	for _, p := range ps {
		found := false
		for _, r := range rooms {
			if r.String() == p.Room {
				found = true
				break
			}
		}
		if !found {
			return nil, invalid("positions: room %q is not one of the stream's rooms", truncate(p.Room, 80))
		}
		if len(p.Epoch) > 64 {
			return nil, invalid("positions: epoch of %q longer than 64 bytes", p.Room)
		}
		if _, dup := out[p.Room]; dup {
			return nil, invalid("positions: room %q given twice", p.Room)
		}
		out[p.Room] = broker.Position{Offset: p.Offset, Epoch: p.Epoch}
	}
	return out, nil
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}

// Subscribe implements NotificationService.Subscribe.
//
// The stream joins the hub before reading history, so an event published
// during the replay is both in the replay and in the queue; the per-room
// offset filter in the stream's writer drops the second copy. Hence no gap
// and no duplicate at the seam.
func (s *Service) Subscribe(req *notifyv1.SubscribeRequest, stream grpc.ServerStreamingServer[notifyv1.SubscribeResponse]) error {
	ctx := stream.Context()
	c, err := claims(ctx)
	if err != nil {
		return toStatusErr(err)
	}
	rooms, err := s.subscriptionRooms(c, req)
	if err != nil {
		return toStatusErr(err)
	}
	pos, err := positions(rooms, req.Positions)
	if err != nil {
		return toStatusErr(err)
	}

	if s.cfg.Limits.Streams != nil {
		release, err := s.cfg.Limits.Streams.Acquire(c.Subject)
		if err != nil {
			s.cfg.Metrics.LimitRejected("streams")
			return toStatusErr(err)
		}
		defer release()
	}

	sub := hub.NewSubscriber(s.cfg.QueueBytes)
	names := make([]string, len(rooms))
	for i, r := range rooms {
		names[i] = r.String()
	}
	s.hub.Join(sub, names, keys(c))
	defer s.hub.Leave(sub)
	if v, ok := viewer(c); ok && s.inbox != nil {
		// After Join, so that an update made meanwhile reaches this stream;
		// the writer applies the mutes too, to anything queued before.
		var prefs store.Preferences
		err := onSideStack(func() (err error) {
			prefs, err = s.inbox.Preferences(ctx, v.UserID)
			return err
		})
		if err != nil {
			return toStatusErr(err)
		}
		applyPreferences(sub, prefs)
	}
	for _, r := range rooms {
		s.cfg.Metrics.SubscriberJoined(r.Kind().String())
		defer s.cfg.Metrics.SubscriberLeft(r.Kind().String())
	}
	if l, ok := s.broker.(listener); ok {
		// A shared broker must confirm the node receives a room's messages
		// before its history is read, or the seam could lose events.
		for _, name := range names {
			if err := l.Listen(ctx, name); err != nil {
				s.cfg.Metrics.BrokerError("listen")
				return toStatusErr(err)
			}
			defer l.Unlisten(name)
		}
	}

	w := &writer{
		sub:     sub,
		stream:  stream,
		max:     s.cfg.MaxWriteBytes,
		last:    make(map[string]broker.Position, len(rooms)),
		sent:    make(map[string]broker.Position, len(rooms)),
		metrics: s.cfg.Metrics,
	}
	connected := &notifyv1.Connected{
		UserId:            c.Subject,
		Role:              c.Role,
		ServerId:          s.cfg.ServerID,
		HeartbeatInterval: durationpb.New(s.cfg.HeartbeatInterval),
		Rooms:             make([]*notifyv1.RoomState, len(rooms)),
	}
	var backlog []*hub.Frame
	for i, name := range names {
		p, resume := pos[name]
		h, err := s.broker.History(ctx, name, p)
		if err != nil {
			s.cfg.Metrics.BrokerError("history")
			return toStatusErr(err)
		}
		st := &notifyv1.RoomState{Room: name, Epoch: h.Top.Epoch, Offset: h.Top.Offset}
		switch {
		case resume && h.Complete:
			st.Recovered = true
			st.StartOffset = p.Offset
			w.last[name] = broker.Position{Offset: p.Offset, Epoch: h.Top.Epoch}
			backlog = appendFrames(backlog, h.Messages)
		case resume && p.Epoch != h.Top.Epoch && len(h.Messages) > 0 && h.Messages[0].Offset == 1:
			// The client's epoch is lost (recovered=false), but the room's
			// new epoch is whole from its first event: replay it, so that
			// nothing published since a restart is missed.
			w.last[name] = broker.Position{Epoch: h.Top.Epoch}
			backlog = appendFrames(backlog, h.Messages)
		default:
			// Live from the room's current top: what came before is either
			// not wanted (no position) or lost to this stream (recovered=false).
			w.last[name] = h.Top
			st.StartOffset = h.Top.Offset
		}
		connected.Rooms[i] = st
	}
	maps.Copy(w.sent, w.last)
	if err := stream.Send(&notifyv1.SubscribeResponse{Control: &notifyv1.SubscribeResponse_Connected{Connected: connected}}); err != nil {
		return err
	}
	if err := w.write(backlog, false); err != nil {
		return err
	}
	if v, ok := viewer(c); ok && s.inbox != nil {
		// The badge starts right; later changes arrive as they happen.
		var n int64
		err := onSideStack(func() (err error) {
			n, err = s.inbox.UnreadCount(ctx, v)
			return err
		})
		if err != nil {
			return toStatusErr(err)
		}
		if err := w.write([]*hub.Frame{hub.NewUnreadFrame(n)}, false); err != nil {
			return err
		}
	}
	w.live = true
	defer w.close()
	return s.run(c, sub, w)
}

// onSideStack runs fn on a short-lived goroutine and waits for it. The
// store's drivers (the pure-Go SQLite above all) run deep call stacks; run
// on the stream's goroutine they would grow its stack for the stream's
// whole life, and an idle server runs no garbage collection to shrink it
// back. Measured: about 10 KB per idle stream.
func onSideStack(fn func() error) error {
	done := make(chan error, 1)
	go func() { done <- fn() }()
	return <-done
}

func appendFrames(frames []*hub.Frame, msgs []broker.Message) []*hub.Frame {
	for _, m := range msgs {
		frames = append(frames, hub.NewFrame(m))
	}
	return frames
}

// run is the stream's send loop: the only place that sends on the stream
// after the replay.
func (s *Service) run(c auth.Claims, sub *hub.Subscriber, w *writer) error {
	ctx := w.stream.Context()
	heartbeat := time.NewTimer(s.cfg.HeartbeatInterval)
	defer heartbeat.Stop()
	var expired <-chan time.Time
	if !c.ExpiresAt.IsZero() {
		// The verifier accepts a token up to the leeway past exp; the
		// stream lives as long as a new call with the token would.
		t := time.NewTimer(time.Until(c.ExpiresAt.Add(s.cfg.TokenLeeway)))
		defer t.Stop()
		expired = t.C
	}
	var frames []*hub.Frame
	for {
		select {
		case <-ctx.Done():
			return toStatusErr(ctx.Err())
		case <-expired:
			_ = w.disconnected(&notifyv1.Disconnected{
				Reason:    notifyv1.DisconnectReason_DISCONNECT_REASON_TOKEN_EXPIRED,
				Positions: w.positions(),
			})
			return Status(errTokenExpired, nil).Err()
		case <-heartbeat.C:
			if err := w.heartbeat(); err != nil {
				if errors.Is(err, errAbandoned) {
					return s.abandon(sub, w)
				}
				return err
			}
			heartbeat.Reset(s.cfg.HeartbeatInterval)
			continue
		case <-sub.Ready():
		}
		var closed error
		frames, closed = sub.Take(frames[:0])
		if len(frames) > 0 {
			if err := w.write(frames, true); err != nil {
				if errors.Is(err, errAbandoned) {
					return s.abandon(sub, w)
				}
				return err
			}
			clear(frames)
			heartbeat.Reset(s.cfg.HeartbeatInterval)
		}
		if closed != nil {
			if n := sub.Dropped(); n > 0 {
				s.cfg.Metrics.QueueDropped(n)
			}
			return s.end(w, closed)
		}
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
	case errors.Is(reason, hub.ErrSlowConsumer):
		d.Reason = notifyv1.DisconnectReason_DISCONNECT_REASON_SLOW_CONSUMER
		s.cfg.Metrics.SlowConsumer()
	case errors.Is(reason, broker.ErrUnavailable):
		d.Reason = notifyv1.DisconnectReason_DISCONNECT_REASON_BROKER_UNAVAILABLE
		d.ReconnectDelay = durationpb.New(s.jitter())
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

// writer sends frames on one stream, dropping anything at or before the
// last offset already sent in its room and coalescing the rest into writes
// of at most max bytes.
type writer struct {
	sub     *hub.Subscriber
	stream  grpc.ServerStreamingServer[notifyv1.SubscribeResponse]
	max     int
	last    map[string]broker.Position // per room, the last frame taken for sending (dedupe)
	sent    map[string]broker.Position // per room, the last frame gRPC accepted
	batch   []*hub.Frame
	metrics Metrics
	snd     *sender // nil until the first send, and again after it idles out
	live    bool    // sends go through snd (set once the stream is replayed)
}

// errAbandoned ends a stream whose client stopped reading: its send is
// blocked on flow control and the hub cut it for overflowing its queue.
var errAbandoned = fmt.Errorf("%w: the client stopped reading", hub.ErrSlowConsumer)

// senderIdle is how long a sender goroutine waits for work before it exits,
// so that idle streams cost one goroutine, not two. It must be well below
// the heartbeat interval, or heartbeats alone would keep it alive.
const senderIdle = 2 * time.Second

// sender makes a stream's SendMsg calls on a goroutine of its own, one at a
// time, while the handler waits for each result or for the hub to cut the
// stream: a client that stops reading blocks SendMsg on HTTP/2 flow control,
// and the handler must still be able to end the stream.
type sender struct {
	work   chan any
	result chan error
	exited chan struct{} // closed when the goroutine has gone idle and exited
	quit   chan struct{} // closed by the handler when the stream ends
}

func (s *sender) loop(stream grpc.ServerStream) {
	idle := time.NewTimer(senderIdle)
	defer idle.Stop()
	for {
		select {
		case m := <-s.work:
			s.result <- stream.SendMsg(m)
			idle.Reset(senderIdle)
		case <-idle.C:
			close(s.exited)
			return
		case <-s.quit:
			return
		}
	}
}

// send sends m. Before the stream goes live it sends directly; afterwards
// through the sender goroutine, returning errAbandoned as soon as the hub
// cuts a subscriber whose send is stuck.
func (w *writer) send(m any) error {
	if !w.live {
		return w.stream.SendMsg(m)
	}
	for {
		if w.snd == nil {
			w.snd = &sender{work: make(chan any), result: make(chan error, 1), exited: make(chan struct{}), quit: make(chan struct{})}
			go w.snd.loop(w.stream)
		}
		select {
		case w.snd.work <- m:
		case <-w.snd.exited:
			w.snd = nil // it idled out just now: start another
			continue
		}
		break
	}
	select {
	case err := <-w.snd.result:
		return err
	case <-w.sub.Done():
		if errors.Is(w.sub.Err(), hub.ErrSlowConsumer) {
			return errAbandoned
		}
		return <-w.snd.result
	}
}

// close stops the sender goroutine; a send still stuck in it fails once
// the stream has ended.
func (w *writer) close() {
	if w.snd != nil {
		close(w.snd.quit)
	}
}

// write sends frames; live frames count as deliveries, with their latency
// from publish to this write.
func (w *writer) write(frames []*hub.Frame, live bool) error {
	w.batch = w.batch[:0]
	size := 0
	var now int64
	if live {
		now = time.Now().UnixNano()
	}
	for _, f := range frames {
		if !w.sub.Wants(f) {
			continue // muted by the user's preferences
		}
		if f.Room != "" {
			l, ok := w.last[f.Room]
			if ok && f.Epoch == l.Epoch && f.Offset <= l.Offset {
				continue // already sent (the replay/live seam)
			}
			w.last[f.Room] = broker.Position{Offset: f.Offset, Epoch: f.Epoch}
			if live {
				w.metrics.Delivered(1, time.Duration(now-f.Time))
			}
		}
		if size > 0 && size+len(f.Bytes) > w.max {
			if err := w.flush(size); err != nil {
				return err
			}
			size = 0
		}
		w.batch = append(w.batch, f)
		size += len(f.Bytes)
	}
	if size > 0 {
		return w.flush(size)
	}
	return nil
}

func (w *writer) flush(size int) error {
	var buf mem.Buffer
	if len(w.batch) == 1 {
		// The frame is immutable and shared: hand it over as it is.
		buf = mem.SliceBuffer(w.batch[0].Bytes)
	} else {
		pool := mem.DefaultBufferPool()
		b := pool.Get(size)
		n := 0
		for _, f := range w.batch {
			n += copy((*b)[n:], f.Bytes)
		}
		buf = mem.NewBuffer(b, pool)
	}
	err := w.send(&rawResponse{buf: buf})
	if err == nil {
		for _, f := range w.batch {
			if f.Room != "" {
				w.sent[f.Room] = broker.Position{Offset: f.Offset, Epoch: f.Epoch}
			}
		}
	}
	clear(w.batch)
	w.batch = w.batch[:0]
	return err
}

// heartbeat sends a Heartbeat.
func (w *writer) heartbeat() error {
	return w.send(&notifyv1.SubscribeResponse{Control: &notifyv1.SubscribeResponse_Heartbeat{
		Heartbeat: &notifyv1.Heartbeat{Time: timestamppb.Now()},
	}})
}

// disconnected sends d, the stream's last message.
func (w *writer) disconnected(d *notifyv1.Disconnected) error {
	return w.send(&notifyv1.SubscribeResponse{Control: &notifyv1.SubscribeResponse_Disconnected{Disconnected: d}})
}

// positions are the last positions handed to gRPC without error, per room:
// what the client resumes from if the stream ends now.
func (w *writer) positions() []*notifyv1.StreamPosition {
	out := make([]*notifyv1.StreamPosition, 0, len(w.sent))
	for r, p := range w.sent {
		out = append(out, &notifyv1.StreamPosition{Room: r, Offset: p.Offset, Epoch: p.Epoch})
	}
	return out
}
