package notify

import (
	"context"
	"errors"
	"io"
	"slices"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/status"

	notifyv1 "github.com/maxloyalty/notify/gen/notify/v1"
)

// DefaultBuffer is the size of a subscription's event channel.
const DefaultBuffer = 256

// Position is where a subscriber stands in a room: the offset of the last
// event it received and the epoch of the room's history that offset belongs
// to. The zero Position asks for the room's whole retained history.
type Position struct {
	Offset uint64
	Epoch  string
}

// SubscribeOptions describe a subscription.
type SubscribeOptions struct {
	// Rooms to join. Empty: the token's default rooms (guest: guest:{sub} and
	// user:{sub}; restaurant and cashier: the restaurant's rooms and
	// user:{sub}; admin: admin and user:{sub}).
	Rooms []string
	// Positions to resume from, per room, typically saved from an earlier
	// subscription's Positions. Rooms without one start live.
	Positions map[string]Position
	// Handler, when set, is called with each event, in order, from the
	// subscription's goroutine; Events then delivers nothing. While it runs
	// nothing else is read: a handler slower than the stream makes the
	// server cut the stream (SLOW_CONSUMER), which the subscription resumes.
	Handler func(*notifyv1.Event)
	// Buffer is the size of the Events channel. Default 256.
	Buffer int
	// OnConnected, when set, is called with the first message of every
	// stream, from the subscription's goroutine, before its events.
	OnConnected func(*notifyv1.Connected)
	// OnGap, when set, is called for every room that came back with
	// recovered=false although the subscription gave a position for it: the
	// events since that position cannot be replayed (the room's history was
	// lost or they left its window), so the room's state should be reloaded
	// from the inbox or the REST API. The subscription continues live from
	// state's offset. It runs on the subscription's goroutine, after
	// OnConnected.
	OnGap func(room string, state *notifyv1.RoomState)
	// OnUnread, when set, is called with the caller's inbox unread count,
	// which the server sends after Connected and whenever it changes (when
	// the server has an inbox). It runs on the subscription's goroutine.
	OnUnread func(count int64)
	// OnInbox, when set, is called with every inbox counts message: the
	// unread and unseen counts (Count, Unseen), and the notifications back
	// from snooze since the last message (Returned). It runs on the
	// subscription's goroutine, after OnUnread.
	OnInbox func(*notifyv1.UnreadCount)
}

// Subscription is a running subscription. Its goroutine connects, delivers
// events and reconnects until the context given to Subscribe ends, Close is
// called or a permanent error happens.
type Subscription struct {
	c      *Client
	opts   SubscribeOptions
	cancel context.CancelFunc
	events chan *notifyv1.Event
	done   chan struct{}

	mu        sync.Mutex
	pos       map[string]Position
	rooms     map[string]bool // the stream's rooms, once known
	connected *notifyv1.Connected
	err       error
}

// Subscribe starts a subscription. It returns at once; the subscription runs
// until ctx ends, Close is called or a permanent error stops it.
func (c *Client) Subscribe(ctx context.Context, opts SubscribeOptions) *Subscription {
	ctx, cancel := context.WithCancel(ctx)
	opts.Rooms = slices.Clone(opts.Rooms)
	s := &Subscription{
		c:      c,
		opts:   opts,
		cancel: cancel,
		done:   make(chan struct{}),
		pos:    make(map[string]Position, len(opts.Positions)),
	}
	size := opts.Buffer
	if size <= 0 {
		size = DefaultBuffer
	}
	if opts.Handler != nil {
		size = 0
	}
	s.events = make(chan *notifyv1.Event, size)
	for r, p := range opts.Positions {
		s.pos[r] = p
	}
	if len(opts.Rooms) > 0 {
		s.rooms = make(map[string]bool, len(opts.Rooms))
		for _, r := range opts.Rooms {
			s.rooms[r] = true
		}
	}
	go s.run(ctx)
	return s
}

// Events delivers the events in order (per room) when the subscription has
// no Handler. It is closed when the subscription stops.
func (s *Subscription) Events() <-chan *notifyv1.Event { return s.events }

// Done is closed when the subscription has stopped.
func (s *Subscription) Done() <-chan struct{} { return s.done }

// Err returns why the subscription stopped, once Done is closed: nil when
// its context ended or Close was called, otherwise the permanent error (a
// gRPC status error, or ErrClientClosed). Before Done is closed it returns
// nil.
func (s *Subscription) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// Close stops the subscription and waits until it has stopped. It must not
// be called from the Handler or a callback, which would wait for
// themselves: cancel the context given to Subscribe there instead.
func (s *Subscription) Close() {
	s.cancel()
	<-s.done
}

// Positions returns a copy of the last position delivered in each room of
// the stream (or, before the first connection, the positions given), to save
// and resume from later.
func (s *Subscription) Positions() map[string]Position {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]Position, len(s.pos))
	for r, p := range s.pos {
		out[r] = p
	}
	return out
}

// Connected returns the first message of the latest stream, or nil before
// the first connection.
func (s *Subscription) Connected() *notifyv1.Connected {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.connected
}

func (s *Subscription) run(ctx context.Context) {
	var err error
	defer func() {
		s.mu.Lock()
		s.err = err
		s.mu.Unlock()
		close(s.events)
		close(s.done)
		s.cancel()
	}()
	log := s.c.log
	_, staticToken := s.c.tokens.(staticToken)
	attempt := 0
	for {
		end := s.stream(ctx)
		if ctx.Err() != nil {
			return
		}
		healthy := end.connected && end.lived >= minHealthyStream
		if healthy {
			attempt = 0
		}
		if s.c.conn.GetState() == connectivity.Shutdown {
			err = ErrClientClosed
			return
		}
		expired := status.Code(end.err) == codes.Unauthenticated && ErrorReason(end.err) == ReasonTokenExpired
		if IsPermanent(end.err) || (expired && staticToken) {
			// A fixed token that expired will not get better either.
			log.Warn("notify: subscription stopped", "err", end.err)
			err = end.err
			return
		}
		var wait time.Duration
		delay := end.disconnected.GetReconnectDelay().AsDuration()
		switch {
		case expired && healthy:
			// The stream's token expired: come back at once with a fresh one.
			// (A stream cut right after it opened means the source handed out
			// an expired token, which the backoff below slows down.)
			wait = 0
		case delay > 0:
			wait = delay
		default:
			wait = s.c.backoff.Delay(attempt)
			attempt++
		}
		attrs := []any{"err", end.err, "connected", end.connected, "wait", wait.Round(time.Millisecond).String()}
		if end.disconnected != nil {
			attrs = append(attrs, "reason", end.disconnected.GetReason().String())
		}
		log.Info("notify: stream ended, reconnecting", attrs...)
		if wait > 0 {
			t := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
		}
	}
}

// minHealthyStream is how long a stream must have lived after Connected for
// its end to reset the backoff, and for an expired token to be renewed at
// once.
const minHealthyStream = 500 * time.Millisecond

// streamEnd is how one stream ended.
type streamEnd struct {
	err          error         // never nil
	connected    bool          // Connected was received
	lived        time.Duration // from Connected to the end
	disconnected *notifyv1.Disconnected
}

// stream runs one stream until it ends.
func (s *Subscription) stream(ctx context.Context) (end streamEnd) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if s.c.tokens != nil {
		tok, err := s.c.tokens.Token(ctx)
		if err != nil {
			end.err = status.Errorf(codes.Unavailable, "notify: token source: %v", err)
			return end
		}
		ctx = withToken(ctx, tok)
	}
	req, sent := s.request()
	st, err := s.c.rpc.Subscribe(ctx, req)
	if err != nil {
		end.err = err
		return end
	}
	var since time.Time
	defer func() {
		if end.connected {
			end.lived = time.Since(since)
		}
	}()
	for {
		msg, err := st.Recv()
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = status.Error(codes.Unavailable, "notify: stream ended by the server")
			}
			end.err = err
			return end
		}
		if c := msg.GetConnected(); c != nil {
			since = time.Now()
			s.onConnected(c, sent)
			end.connected = true
		}
		for _, ev := range msg.Events {
			if !s.deliver(ctx, ev) {
				end.err = ctx.Err()
				return end
			}
		}
		if u := msg.GetUnread(); u != nil {
			if s.opts.OnUnread != nil {
				s.opts.OnUnread(u.Count)
			}
			if s.opts.OnInbox != nil {
				s.opts.OnInbox(u)
			}
		}
		if d := msg.GetDisconnected(); d != nil {
			end.disconnected = d
		}
	}
}

// request builds the SubscribeRequest with the positions of the stream's
// rooms, and returns which rooms it gave a position for.
func (s *Subscription) request() (*notifyv1.SubscribeRequest, map[string]bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	req := &notifyv1.SubscribeRequest{Rooms: s.opts.Rooms}
	sent := make(map[string]bool, len(s.pos))
	for r, p := range s.pos {
		if s.rooms != nil && !s.rooms[r] {
			continue
		}
		sent[r] = true
		req.Positions = append(req.Positions, &notifyv1.StreamPosition{Room: r, Offset: p.Offset, Epoch: p.Epoch})
	}
	slices.SortFunc(req.Positions, func(a, b *notifyv1.StreamPosition) int {
		switch {
		case a.Room < b.Room:
			return -1
		case a.Room > b.Room:
			return 1
		}
		return 0
	})
	return req, sent
}

// onConnected records the stream's rooms and where each stands, and reports
// the rooms whose position could not be honoured.
func (s *Subscription) onConnected(c *notifyv1.Connected, sent map[string]bool) {
	var gaps []*notifyv1.RoomState
	s.mu.Lock()
	s.connected = c
	rooms := make(map[string]bool, len(c.Rooms))
	for _, st := range c.Rooms {
		rooms[st.Room] = true
		switch {
		case !sent[st.Room]:
			// Live from the room's top.
			s.pos[st.Room] = Position{Offset: st.StartOffset, Epoch: st.Epoch}
		case !st.Recovered:
			// From where the server starts (the top, or the first event of
			// a new epoch it replays); what came between is lost.
			s.pos[st.Room] = Position{Offset: st.StartOffset, Epoch: st.Epoch}
			gaps = append(gaps, st)
		}
		// Recovered: the server replays from our position, which stands.
	}
	for r := range s.pos {
		if !rooms[r] {
			delete(s.pos, r)
		}
	}
	s.rooms = rooms
	s.mu.Unlock()

	if s.opts.OnConnected != nil {
		s.opts.OnConnected(c)
	}
	for _, st := range gaps {
		s.c.log.Warn("notify: room not recovered", "room", st.Room, "epoch", st.Epoch, "offset", st.Offset)
		if s.opts.OnGap != nil {
			s.opts.OnGap(st.Room, st)
		}
	}
}

// deliver hands ev over unless it is at or before the room's position in the
// same epoch, then advances the position. It returns false if ctx ended
// first.
func (s *Subscription) deliver(ctx context.Context, ev *notifyv1.Event) bool {
	s.mu.Lock()
	p, ok := s.pos[ev.Room]
	s.mu.Unlock()
	if ok && p.Epoch == ev.Epoch && ev.Offset <= p.Offset {
		s.c.log.Debug("notify: duplicate dropped", "room", ev.Room, "offset", ev.Offset, "epoch", ev.Epoch)
		return true
	}
	if s.opts.Handler != nil {
		s.opts.Handler(ev)
	} else {
		select {
		case s.events <- ev:
		case <-ctx.Done():
			return false
		}
	}
	s.mu.Lock()
	s.pos[ev.Room] = Position{Offset: ev.Offset, Epoch: ev.Epoch}
	s.mu.Unlock()
	return true
}
