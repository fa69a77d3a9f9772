package delivery

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/maxloyalty/notify/internal/hub"
	"github.com/maxloyalty/notify/internal/room"
	"github.com/maxloyalty/notify/internal/store"
)

// Seen live, precisely: an event counts as seen by a user for delayed
// deliveries when a node's hub queued it for a live stream of that user
// that was open, subscribed under the user's id, and not muting the
// event's type, at the moment the node's broker handed the event to the
// hub (Observe, called right after hub.Deliver). Every node observes its
// own hub: with several nodes, the node holding the stream records it.
// The record is a "live" timeline step (store.ChannelLive), written in
// batches a moment later; a delayed delivery checks for it when it runs.

// Observe records the users of this node who received an event live:
// call it with each event the broker delivers to the hub (the room and the
// event's encoded data), after hub.Deliver. It never blocks: the records
// are buffered and written in batches.
func (q *Queue) Observe(roomName string, data []byte) {
	if q.cfg.Streams == nil || len(q.channels) == 0 {
		return
	}
	id, typ := scanEvent(data)
	if id == "" {
		return
	}
	users := q.cfg.Streams.Receivers(roomName, typ)
	if len(users) == 0 {
		return
	}
	now := q.now()
	for _, u := range users {
		q.live.add(store.Status{ID: newStatusID(), EventID: id, UserID: u, Channel: store.ChannelLive, State: StateDelivered, At: now})
	}
}

// Fields of notify.v1.Event that Observe reads.
const (
	eventIDField     = 1
	payloadFieldBase = 9 // field 10 (points_added) is EventType 1, ...
	maxEventType     = 12
)

// scanEvent reads an encoded Event's id and type without decoding it.
func scanEvent(data []byte) (id string, typ int32) {
	for len(data) > 0 {
		num, wt, n := protowire.ConsumeTag(data)
		if n < 0 {
			return "", 0
		}
		data = data[n:]
		switch {
		case num == eventIDField && wt == protowire.BytesType:
			v, m := protowire.ConsumeBytes(data)
			if m < 0 {
				return "", 0
			}
			id = string(v)
			data = data[m:]
			continue
		case num > payloadFieldBase && num <= payloadFieldBase+maxEventType && wt == protowire.BytesType:
			typ = int32(num) - payloadFieldBase
		}
		m := protowire.ConsumeFieldValue(num, wt, data)
		if m < 0 {
			return "", 0
		}
		data = data[m:]
	}
	return id, typ
}

// HubStreams answers Streams from a node's hub: a personal room's owner
// when one of their streams wants the type; for the admin room, each
// connected admin whose stream wants it. A stream is found by the user's
// id (hub keys), so a user's stream counts for both of their personal
// rooms (guest:{id} and user:{id}) whichever it joined.
func HubStreams(h *hub.Hub) Streams { return hubStreams{h} }

type hubStreams struct{ h *hub.Hub }

func (s hubStreams) Receivers(name string, typ int32) []string {
	r, err := room.Parse(name)
	if err != nil {
		return nil
	}
	f := &hub.Frame{Room: name, Type: typ}
	wants := func(user string) bool {
		found := false
		s.h.Each(user, func(sub *hub.Subscriber) {
			if !found && !sub.Closed() && sub.Wants(f) {
				found = true
			}
		})
		return found
	}
	switch r.Kind() {
	case room.KindGuest, room.KindUser:
		if wants(r.ID()) {
			return []string{r.ID()}
		}
	case room.KindAdmin:
		var out []string
		for _, keys := range s.h.Keys(AdminGroup) {
			if len(keys) > 0 && wants(keys[0]) {
				out = append(out, keys[0])
			}
		}
		return out
	}
	return nil
}

// liveRecorder writes live timeline steps in batches: the broker's
// delivery path must not wait for the database. It is a bounded buffer,
// not a queue of work: a step it cannot keep (full, or the store failed)
// is dropped and counted, and its delayed delivery may then be sent
// although the user saw the event live.
type liveRecorder struct {
	st      store.Store
	max     int
	metrics *Metrics
	log     *slog.Logger

	mu  sync.Mutex
	buf []store.Status
	// writing is the batch being written: still pending until written.
	writing []store.Status
	kick    chan struct{}
}

// pending reports whether a live step of eventID for user is buffered or
// being written: a delayed delivery that checks whether its user saw the
// event counts it, so that a slow write does not let it through.
func (l *liveRecorder) pending(eventID, user string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, list := range [][]store.Status{l.buf, l.writing} {
		for _, s := range list {
			if s.EventID == eventID && s.UserID == user {
				return true
			}
		}
	}
	return false
}

// Batching of live steps.
const (
	liveBatch = 256
	liveEvery = 100 * time.Millisecond
)

func newLiveRecorder(st store.Store, max int, m *Metrics, log *slog.Logger) *liveRecorder {
	return &liveRecorder{st: st, max: max, metrics: m, log: log, kick: make(chan struct{}, 1)}
}

func (l *liveRecorder) add(s store.Status) {
	l.mu.Lock()
	if len(l.buf) >= l.max {
		l.mu.Unlock()
		l.metrics.liveDropped.Inc()
		return
	}
	l.buf = append(l.buf, s)
	full := len(l.buf) >= liveBatch
	l.mu.Unlock()
	if full {
		select {
		case l.kick <- struct{}{}:
		default:
		}
	}
}

// run writes the buffer every liveEvery (at once when a batch is full)
// until ctx ends, then writes what is left.
func (l *liveRecorder) run(ctx context.Context) {
	t := time.NewTicker(liveEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			fctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			l.flush(fctx)
			cancel()
			return
		case <-t.C:
		case <-l.kick:
		}
		l.flush(ctx)
	}
}

func (l *liveRecorder) flush(ctx context.Context) {
	for {
		l.mu.Lock()
		n := min(len(l.buf), liveBatch)
		batch := l.buf[:n:n]
		l.buf = l.buf[n:]
		if len(l.buf) == 0 {
			l.buf = nil
		}
		l.writing = batch
		l.mu.Unlock()
		if n == 0 {
			return
		}
		err := l.st.AddStatuses(ctx, batch)
		l.mu.Lock()
		l.writing = nil
		l.mu.Unlock()
		if err != nil {
			l.metrics.liveDropped.Add(float64(n))
			l.log.Warn("delivery: live deliveries not recorded", "n", n, "err", err)
			continue
		}
		l.metrics.liveRecorded.Add(float64(n))
	}
}
