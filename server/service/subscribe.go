package service

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
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
	"github.com/maxloyalty/notify/server/stack"
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
//
// Everything up to the live phase runs on a short-lived goroutine. The
// handler's goroutine lives as long as the stream, and a stack grown by a
// deep call shrinks back only at a garbage collection, which an idle server
// rarely runs: run here, the setup (store drivers, history reads, the
// replay's encoding) would leave every idle stream holding a stack twice
// the size it needs to wait.
func (s *Service) Subscribe(req *notifyv1.SubscribeRequest, stream grpc.ServerStreamingServer[notifyv1.SubscribeResponse]) error {
	var (
		c        auth.Claims
		w        *writer
		u        undo
		detached bool
	)
	defer func() {
		if !detached {
			u.run(s)
		}
	}()
	var err error
	stack.Aside(func() { c, w, err = s.open(req, stream, &u) })
	if err != nil {
		return err
	}
	if d, ok := grpc.ServerTransportStreamFromContext(stream.Context()).(detacher); ok {
		detached = true // the live stream gives back what u holds when it ends
		return s.detach(stream.Context(), c, w, u, d)
	}
	// Served by grpc-go: the writer runs sender goroutines (run).
	w.kick, w.quit = make(chan struct{}, 1), make(chan struct{})
	defer close(w.quit)
	return s.run(c, w.sub, w)
}

// undo is what an opened subscription gives back when it ends.
type undo struct {
	release  func()          // the user's stream count
	sub      *hub.Subscriber // joined to the hub
	kinds    []room.Kind     // counted in the subscriber metrics
	listener listener        // the shared broker listened to
	listened []string        // rooms listened to
}

func (u *undo) run(s *Service) {
	for _, name := range u.listened {
		u.listener.Unlisten(name)
	}
	for _, k := range u.kinds {
		s.cfg.Metrics.SubscriberLeft(k.String())
	}
	if u.sub != nil {
		s.hub.Leave(u.sub)
	}
	if u.release != nil {
		u.release()
	}
}

// open checks and joins a subscription, and sends its Connected message
// and replay; u collects what to give back when the stream ends.
func (s *Service) open(req *notifyv1.SubscribeRequest, stream grpc.ServerStreamingServer[notifyv1.SubscribeResponse], u *undo) (auth.Claims, *writer, error) {
	ctx := stream.Context()
	c, err := claims(ctx)
	if err != nil {
		return c, nil, toStatusErr(err)
	}
	rooms, err := s.subscriptionRooms(c, req)
	if err != nil {
		return c, nil, toStatusErr(err)
	}
	pos, err := positions(rooms, req.Positions)
	if err != nil {
		return c, nil, toStatusErr(err)
	}

	if s.cfg.Limits.Streams != nil {
		release, err := s.cfg.Limits.Streams.Acquire(c.Subject)
		if err != nil {
			s.cfg.Metrics.LimitRejected("streams")
			return c, nil, toStatusErr(err)
		}
		u.release = release
	}

	sub := hub.NewSubscriber(s.cfg.QueueBytes)
	names := make([]string, len(rooms))
	for i, r := range rooms {
		names[i] = r.String()
	}
	s.hub.Join(sub, names, keys(c))
	u.sub = sub
	if v, ok := viewer(c); ok && s.inbox != nil {
		// After Join, so that an update made meanwhile reaches this stream;
		// the writer applies the mutes too, to anything queued before.
		prefs, err := s.inbox.Preferences(ctx, v.UserID)
		if err != nil {
			return c, nil, toStatusErr(err)
		}
		applyPreferences(sub, prefs)
	}
	for _, r := range rooms {
		s.cfg.Metrics.SubscriberJoined(r.Kind().String())
		u.kinds = append(u.kinds, r.Kind())
	}
	if l, ok := s.broker.(listener); ok {
		// A shared broker must confirm the node receives a room's messages
		// before its history is read, or the seam could lose events.
		u.listener = l
		for _, name := range names {
			if err := l.Listen(ctx, name); err != nil {
				s.cfg.Metrics.BrokerError("listen")
				return c, nil, toStatusErr(err)
			}
			u.listened = append(u.listened, name)
		}
	}

	w := newWriter(s, sub, stream, names)
	connected := &notifyv1.Connected{
		UserId:            c.Subject,
		Role:              c.Role,
		ServerId:          s.cfg.ServerID,
		HeartbeatInterval: durationpb.New(s.cfg.HeartbeatInterval),
		Rooms:             make([]*notifyv1.RoomState, len(rooms)),
	}
	var replay [][]broker.Message // per room, what the stream replays
	for i, name := range names {
		p, resume := pos[name]
		h, err := s.broker.History(ctx, name, p)
		if err != nil {
			s.cfg.Metrics.BrokerError("history")
			return c, nil, toStatusErr(err)
		}
		st := &notifyv1.RoomState{Room: name, Epoch: h.Top.Epoch, Offset: h.Top.Offset}
		switch {
		case resume && h.Complete:
			st.Recovered = true
			st.StartOffset = p.Offset
			w.rooms[i].last = broker.Position{Offset: p.Offset, Epoch: h.Top.Epoch}
			replay = append(replay, h.Messages)
		case resume && p.Epoch != h.Top.Epoch && len(h.Messages) > 0 && h.Messages[0].Offset == 1:
			// The client's epoch is lost (recovered=false), but the room's
			// new epoch is whole from its first event: replay it, so that
			// nothing published since a restart is missed.
			w.rooms[i].last = broker.Position{Epoch: h.Top.Epoch}
			replay = append(replay, h.Messages)
		default:
			// Live from the room's current top: what came before is either
			// not wanted (no position) or lost to this stream (recovered=false).
			w.rooms[i].last = h.Top
			st.StartOffset = h.Top.Offset
		}
		connected.Rooms[i] = st
	}
	for i := range w.rooms {
		w.rooms[i].sent = w.rooms[i].last
	}
	if err := w.send(&notifyv1.SubscribeResponse{Control: &notifyv1.SubscribeResponse_Connected{Connected: connected}}); err != nil {
		return c, nil, err
	}
	if err := w.replay(replay); err != nil {
		return c, nil, err
	}
	if v, ok := viewer(c); ok && s.inbox != nil {
		// The badge starts right; later changes arrive as they happen.
		n, err := s.inbox.UnreadCount(ctx, v)
		if err != nil {
			return c, nil, toStatusErr(err)
		}
		if err := w.write([]*hub.Frame{hub.NewUnreadFrame(n)}, false); err != nil {
			return c, nil, err
		}
	}
	return c, w, nil
}

// replay writes the rooms' missed messages in order. It frames them a
// write's worth at a time, each chunk written before the next is built:
// framing a whole history at once would hold a copy of every missed event
// per resuming stream (a burst of resumes after a restart is many of them).
func (w *writer) replay(rooms [][]broker.Message) error {
	var frames []*hub.Frame
	for _, msgs := range rooms {
		for len(msgs) > 0 {
			frames = frames[:0]
			size := 0
			for len(msgs) > 0 && (size == 0 || size+len(msgs[0].Data) <= w.max) {
				f := hub.NewFrame(msgs[0])
				frames = append(frames, f)
				size += len(f.Bytes)
				msgs = msgs[1:]
			}
			if err := w.write(frames, false); err != nil {
				return err
			}
			clear(frames)
		}
	}
	return nil
}

// run serves the live stream until it ends. After the replay every send
// happens on a sender goroutine that the subscriber's Ready wakes directly,
// one wake-up per write. The handler goroutine only starts senders, keeps
// time (heartbeats, token expiry) and ends the stream, even while a send is
// stuck on a client that stopped reading (HTTP/2 flow control blocks
// SendMsg, and only the handler's return ends the stream). A sender exits
// after senderIdle without work, so that an idle stream costs one goroutine.
func (s *Service) run(c auth.Claims, sub *hub.Subscriber, w *writer) error {
	ctx := w.stream.Context()
	expiry := s.expiry(c)
	timer := time.NewTimer(w.next(time.Now().UnixNano(), expiry))
	defer timer.Stop()
	var exited chan error // the running sender's result; nil while none runs
	done := sub.Done()
	for {
		var ready <-chan struct{}
		if exited == nil {
			ready = sub.Ready() // a running sender waits on it itself
		}
		select {
		case <-ctx.Done():
			return toStatusErr(ctx.Err())
		case <-timer.C:
			now := time.Now().UnixNano()
			switch {
			case expiry != 0 && now >= expiry:
				// The sender writes what is queued, then Disconnected.
				expiry = 0
				sub.Close(errTokenExpired)
			case now-w.lastWrite.Load() >= int64(w.interval) && !w.beat.Load():
				w.beat.Store(true)
				if exited == nil {
					exited = w.start()
				} else {
					w.wake()
				}
			}
			timer.Reset(w.next(now, expiry))
		case <-ready:
			exited = w.start()
		case err := <-exited:
			exited = nil
			switch {
			case errors.Is(err, errAbandoned):
				return s.abandon(sub, w)
			case err != nil:
				return err
			case w.beat.Load():
				exited = w.start() // a heartbeat came due as the sender went idle
			}
		case <-done:
			done = nil
			if errors.Is(sub.Err(), hub.ErrSlowConsumer) {
				// Whether or not a send is stuck, the stream ends now.
				return s.abandon(sub, w)
			}
			// Otherwise Ready is signalled too: a sender writes what is
			// queued and the reason, and ends the stream.
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

// writer sends frames on one stream, dropping anything at or before the
// last offset already sent in its room and coalescing the rest into writes
// of at most max bytes. The handler goroutine uses it during the replay,
// then one sender goroutine at a time (see run).
type writer struct {
	sub      *hub.Subscriber
	stream   grpc.ServerStreamingServer[notifyv1.SubscribeResponse]
	sender   interface{ SendMsg(any) error } // stream, or the transport's own stream
	parts    partsSender                     // nil: frames go through sender
	partBuf  [][]byte
	stamp    int64 // Unix nanoseconds at the start of the current write
	max      int
	rooms    []roomPos  // a stream has few rooms: a slice costs less than maps
	one      [1]roomPos // rooms of a one-room stream, in place
	batch    []*hub.Frame
	frames   []*hub.Frame
	metrics  Metrics
	end      func(*writer, error) error // the final message and status of a closed subscriber
	interval time.Duration              // between heartbeats on an idle stream

	lastWrite atomic.Int64 // Unix nanoseconds of the last send
	beat      atomic.Bool  // a heartbeat is due
	// Sender goroutines (grpc-go's transport only; nil on a detached
	// stream, whose pump runs on the connection's writer).
	kick chan struct{} // wakes a running sender for a heartbeat
	quit chan struct{} // closed when the handler returns

	mu sync.Mutex // guards roomPos.sent: the handler reads it while a send may be stuck
}

// roomPos is a stream's position in one of its rooms.
type roomPos struct {
	room string
	last broker.Position // the last frame taken for sending (dedupe)
	sent broker.Position // the last frame gRPC accepted
}

func newWriter(s *Service, sub *hub.Subscriber, stream grpc.ServerStreamingServer[notifyv1.SubscribeResponse], rooms []string) *writer {
	w := &writer{
		sub:      sub,
		stream:   stream,
		sender:   stream,
		max:      s.cfg.MaxWriteBytes,
		metrics:  s.cfg.Metrics,
		end:      s.end,
		interval: s.cfg.HeartbeatInterval,
	}
	if len(rooms) == 1 {
		w.rooms = w.one[:]
	} else {
		w.rooms = make([]roomPos, len(rooms))
	}
	for i, r := range rooms {
		w.rooms[i].room = r
	}
	return w
}

// pos returns the stream's position in room, or nil if room is not one of
// its rooms.
func (w *writer) pos(room string) *roomPos {
	for i := range w.rooms {
		if w.rooms[i].room == room {
			return &w.rooms[i]
		}
	}
	return nil
}

// errAbandoned ends a stream whose client stopped reading: the hub cut it
// for overflowing its queue, and its send may be blocked on flow control.
var errAbandoned = fmt.Errorf("%w: the client stopped reading", hub.ErrSlowConsumer)

// senderIdle is how long a sender goroutine waits for work before it exits,
// so that idle streams cost one goroutine, not two. It must be well below
// the heartbeat interval, or heartbeats alone would keep it alive.
const senderIdle = 2 * time.Second

// start starts a sender goroutine and returns the channel of its result.
func (w *writer) start() chan error {
	exited := make(chan error, 1)
	go w.loop(exited)
	return exited
}

// loop is a sender goroutine: it writes what the subscriber has queued and
// any heartbeat due, until it has been idle for senderIdle (result nil), the
// stream ends (its final status) or the handler returns.
func (w *writer) loop(exit chan<- error) {
	var idle *time.Timer
	for {
		if err := w.pump(); err != nil {
			if idle != nil {
				idle.Stop()
			}
			exit <- err
			return
		}
		if idle == nil {
			idle = time.NewTimer(senderIdle)
		}
		select {
		case <-w.sub.Ready():
		case <-w.kick:
		case <-idle.C:
			// Like the heartbeat, the idle timer is not reset per write.
			if d := time.Duration(time.Now().UnixNano() - w.lastWrite.Load()); d < senderIdle {
				idle.Reset(senderIdle - d)
				continue
			}
			exit <- nil
			return
		case <-w.quit:
			idle.Stop()
			return
		}
	}
}

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
		return errAbandoned // the handler ends the stream
	case closed != nil:
		return w.end(w, closed)
	case w.beat.Swap(false) && len(frames) == 0:
		return w.heartbeat()
	}
	return nil
}

// wake makes a running sender look for work.
func (w *writer) wake() {
	select {
	case w.kick <- struct{}{}:
	default:
	}
}

// send sends m; only the goroutine that owns the writer at the time calls it.
func (w *writer) send(m any) error {
	err := w.sender.SendMsg(m)
	w.lastWrite.Store(time.Now().UnixNano())
	return err
}

// write sends frames; live frames count as deliveries, with their latency
// from publish to this write.
func (w *writer) write(frames []*hub.Frame, live bool) error {
	w.batch = w.batch[:0]
	size := 0
	now := time.Now().UnixNano()
	w.stamp = now
	for _, f := range frames {
		if !w.sub.Wants(f) {
			continue // muted by the user's preferences
		}
		if f.Room != "" {
			if p := w.pos(f.Room); p != nil {
				if f.Epoch == p.last.Epoch && f.Offset <= p.last.Offset {
					continue // already sent (the replay/live seam)
				}
				p.last = broker.Position{Offset: f.Offset, Epoch: f.Epoch}
			}
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
	var err error
	if w.parts != nil {
		for _, f := range w.batch {
			w.partBuf = append(w.partBuf, f.Bytes)
		}
		err = w.parts.SendParts(w.partBuf)
		w.lastWrite.Store(w.stamp)
		clear(w.partBuf)
		w.partBuf = w.partBuf[:0]
	} else {
		err = w.sendBuffer(size)
	}
	if err == nil {
		w.mu.Lock()
		for _, f := range w.batch {
			if p := w.pos(f.Room); p != nil {
				p.sent = broker.Position{Offset: f.Offset, Epoch: f.Epoch}
			}
		}
		w.mu.Unlock()
	}
	clear(w.batch)
	w.batch = w.batch[:0]
	return err
}

// sendBuffer sends the batch through the codec: one frame as it is, several
// copied into one pooled buffer.
func (w *writer) sendBuffer(size int) error {
	var buf mem.Buffer
	if len(w.batch) == 1 {
		// The frame is immutable and shared: hand it over as it is.
		buf = w.batch[0].Buffer()
	} else {
		pool := mem.DefaultBufferPool()
		b := pool.Get(size)
		n := 0
		for _, f := range w.batch {
			n += copy((*b)[n:], f.Bytes)
		}
		buf = mem.NewBuffer(b, pool)
	}
	return w.send(&rawResponse{buf: buf})
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
	w.mu.Lock()
	defer w.mu.Unlock()
	out := make([]*notifyv1.StreamPosition, 0, len(w.rooms))
	for i := range w.rooms {
		// Field by field: a sender may be writing the entry's last.
		p := &w.rooms[i]
		out = append(out, &notifyv1.StreamPosition{Room: p.room, Offset: p.sent.Offset, Epoch: p.sent.Epoch})
	}
	return out
}
