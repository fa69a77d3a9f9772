package service

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	notifyv1 "github.com/maxloyalty/notify/gen/notify/v1"
	"github.com/maxloyalty/notify/internal/access"
	"github.com/maxloyalty/notify/internal/auth"
	"github.com/maxloyalty/notify/internal/broker"
	"github.com/maxloyalty/notify/internal/hub"
	"github.com/maxloyalty/notify/internal/room"
	"github.com/maxloyalty/notify/internal/stack"
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

// Subscribe implements NotificationService.Subscribe. It returns when the
// stream ends, with the status the client receives, whichever transport
// carries the stream: interceptors and stats handlers see its true end.
//
// The stream joins the hub before reading history, so an event published
// during the replay is both in the replay and in the queue; the per-room
// offset filter in the stream's writer drops the second copy. Hence no gap
// and no duplicate at the seam.
//
// Everything up to the live phase runs on a short-lived goroutine. Live,
// the handler's goroutine exits when the transport lets it (detach);
// otherwise it lives as long as the stream, and a stack grown by a
// deep call shrinks back only at a garbage collection, which an idle server
// rarely runs: run here, the setup (store drivers, history reads, the
// replay's encoding) would leave every idle stream holding a stack twice
// the size it needs to wait.
func (s *Service) Subscribe(req *notifyv1.SubscribeRequest, stream grpc.ServerStreamingServer[notifyv1.SubscribeResponse]) error {
	w, err := s.setup(req, stream)
	if err != nil {
		return err
	}
	if s.detach(w) {
		return stack.ErrDetached
	}
	defer w.undo.run(s)
	return s.run(w)
}

// setup opens the subscription on a short-lived goroutine (see Subscribe)
// and returns its writer, live; on error, what it took is given back. Its
// frame stays off the stream's goroutine while that is parked, and so does
// every wait but one receive: a select here would grow the stream's stack
// past its first size for the stream's whole life.
//
// The setup's context ends when the stream's does, but is not derived from
// it: every context derived from the stream's (the store makes one per
// query) registers in it, which leaves the stream's context a map of
// children for the stream's whole life. The transport stream's OnCancel
// (wire's) ends it instead, or else a watcher goroutine, gone when the
// setup is.
//
//go:noinline
func (s *Service) setup(req *notifyv1.SubscribeRequest, stream grpc.ServerStreamingServer[notifyv1.SubscribeResponse]) (w *writer, err error) {
	u := new(undo)
	stack.Aside(func() {
		streamCtx := stream.Context()
		ctx, cancel := context.WithCancel(context.WithoutCancel(streamCtx))
		defer cancel()
		if c, ok := grpc.ServerTransportStreamFromContext(streamCtx).(canceller); ok {
			// The transport ends the setup with the call, with neither a
			// watcher goroutine nor a done channel kept by the stream's
			// context; detach replaces it once live.
			c.OnCancel(cancel)
		} else {
			opened := make(chan struct{})
			defer close(opened)
			go func() {
				select {
				case <-streamCtx.Done():
					cancel()
				case <-opened:
				}
			}()
		}
		w, err = s.open(ctx, req, stream, u)
	})
	if err != nil {
		u.run(s)
		return nil, err
	}
	w.undo = u
	return w, nil
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

// open checks and joins a subscription, sends its Connected message and
// replay, and readies the writer for the live phase (live), which ends
// when the caller's token expires (see expiry). u collects what to give
// back when the stream ends.
func (s *Service) open(ctx context.Context, req *notifyv1.SubscribeRequest, stream grpc.ServerStreamingServer[notifyv1.SubscribeResponse], u *undo) (w *writer, err error) {
	c, err := claims(ctx)
	if err != nil {
		return nil, toStatusErr(err)
	}
	rooms, err := s.subscriptionRooms(c, req)
	if err != nil {
		return nil, toStatusErr(err)
	}
	pos, err := positions(rooms, req.Positions)
	if err != nil {
		return nil, toStatusErr(err)
	}

	sub, names, err := s.join(ctx, c, rooms, u)
	if err != nil {
		return nil, err
	}
	w = newWriter(s, sub, stream, names)
	connected, replay, err := s.start(ctx, c, w, names, pos)
	if err != nil {
		return nil, err
	}
	for i := range w.rooms {
		w.rooms[i].sent = w.rooms[i].last
	}
	if err := w.send(&notifyv1.SubscribeResponse{Control: &notifyv1.SubscribeResponse_Connected{Connected: connected}}); err != nil {
		return nil, err
	}
	if err := w.replay(replay); err != nil {
		return nil, err
	}
	if v, ok := viewer(c); ok && s.inbox != nil {
		// The badge starts right; later changes arrive as they happen.
		n, err := s.inbox.Badge(ctx, v)
		if err != nil {
			return nil, toStatusErr(err)
		}
		if err := w.write([]*hub.Frame{countsFrame(n, nil)}, false); err != nil {
			return nil, err
		}
	}
	w.live(ctx, s, s.expiry(c))
	return w, nil
}

// join takes a stream slot for the caller, joins the subscriber to its
// rooms with the caller's mutes, and has a shared broker listen to them;
// u records each step for the undo.
func (s *Service) join(ctx context.Context, c auth.Claims, rooms []room.Room, u *undo) (*hub.Subscriber, []string, error) {
	if s.cfg.Limits.Streams != nil {
		release, err := s.cfg.Limits.Streams.Acquire(c.Subject)
		if err != nil {
			s.cfg.Metrics.LimitRejected("streams")
			return nil, nil, toStatusErr(err)
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
			return nil, nil, toStatusErr(err)
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
				return nil, nil, toStatusErr(err)
			}
			u.listened = append(u.listened, name)
		}
	}
	return sub, names, nil
}

// start reads each room's history from the stream's positions: it returns
// the Connected message, with each room's state, and what to replay, and
// sets where the writer starts in each room.
func (s *Service) start(ctx context.Context, c auth.Claims, w *writer, names []string, pos map[string]broker.Position) (*notifyv1.Connected, [][]broker.Message, error) {
	connected := &notifyv1.Connected{
		UserId:            c.Subject,
		Role:              c.Role,
		ServerId:          s.cfg.ServerID,
		HeartbeatInterval: durationpb.New(s.cfg.HeartbeatInterval),
		Rooms:             make([]*notifyv1.RoomState, len(names)),
	}
	var replay [][]broker.Message // per room, what the stream replays
	for i, name := range names {
		p, resume := pos[name]
		h, err := s.broker.History(ctx, name, p)
		if err != nil {
			s.cfg.Metrics.BrokerError("history")
			return nil, nil, toStatusErr(err)
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
	return connected, replay, nil
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

// writer sends frames on one stream, dropping anything at or before the
// last offset already sent in its room and coalescing the rest into writes
// of at most max bytes. The setup goroutine uses it for the Connected
// message and the replay; live, its pump runs either on sender goroutines
// started by the hub's pushes and schedule or on the transport's
// connection writer (see run), one at a time.
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
	gave      atomic.Bool  // result was given; here so that the struct fits a smaller size class
	// result takes the stream's end to the loop (finish), once (gave): a
	// send's error, the status after the last message, or errAbandoned.
	// Made (mailbox) when finish or run first needs it, under mu: a
	// detached stream keeps none while it is live.
	result chan error
	// ends a detached stream (see detach) with the end given; nil while
	// the handler's goroutine waits for it (run)
	detached atomic.Pointer[func(error)]
	expiry   int64 // when the token expires (0: never); tick's alone once live
	undo     *undo // what the stream gives back when it ends
	// Attached to the transport (attacher), whose writer runs the pump.
	kick func() // makes the transport run the pump
	over bool   // the attached pump gave its result; only the pump uses it
	// Sender goroutines, when the transport cannot run the pump.
	running atomic.Bool   // a sender runs
	wakeup  chan struct{} // wakes the running sender
	quit    chan struct{} // closed when the loop returns

	mu sync.Mutex // guards roomPos.sent (the loop reads it while a send may be stuck) and result
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
