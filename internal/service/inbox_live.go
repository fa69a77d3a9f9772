package service

import (
	"context"
	"log/slog"
	"slices"
	"sync"
	"time"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	notifyv1 "github.com/maxloyalty/notify/gen/notify/v1"
	"github.com/maxloyalty/notify/internal/hub"
	"github.com/maxloyalty/notify/internal/store"
)

// Field numbers of SubscribeResponse.unread and of UnreadCount, which
// countsFrame writes directly (a test keeps them in step with the
// contract).
const (
	unreadField   = 5
	countField    = 1
	unseenField   = 2
	returnedField = 3
)

// maxReturnedPerFrame bounds the returned notifications one count frame
// carries, so that a burst of snoozes ending at once cannot overflow a
// stream's queue; the counts still say how many are back, and the client
// reloads its list.
const maxReturnedPerFrame = 50

// countsFrame encodes a SubscribeResponse control carrying a user's inbox
// counts and the notifications back from snooze. Both counts are always
// written, zero included: frames queued together are concatenated, which
// merges them, and the last counts must win; returned lists are appended.
func countsFrame(c store.Counts, returned []*notifyv1.ReturnedNotification) *hub.Frame {
	inner := protowire.AppendTag(nil, countField, protowire.VarintType)
	inner = protowire.AppendVarint(inner, uint64(c.Unread))
	inner = protowire.AppendTag(inner, unseenField, protowire.VarintType)
	inner = protowire.AppendVarint(inner, uint64(c.Unseen))
	for _, r := range returned[:min(len(returned), maxReturnedPerFrame)] {
		b, err := proto.Marshal(r)
		if err != nil {
			continue // a stored event that no longer encodes is left out
		}
		inner = protowire.AppendTag(inner, returnedField, protowire.BytesType)
		inner = protowire.AppendBytes(inner, b)
	}
	b := protowire.AppendTag(make([]byte, 0, len(inner)+4), unreadField, protowire.BytesType)
	return &hub.Frame{Bytes: protowire.AppendBytes(b, inner)}
}

// unreadNotifier refreshes the inbox counts of users with live streams on
// this node, off the publish and inbox paths: owners are marked dirty (and
// users given the notifications back from their snooze), and one goroutine
// counts and pushes, coalescing bursts. Pushes never overtake each other.
type unreadNotifier struct {
	inbox Inbox
	hub   *hub.Hub
	log   *slog.Logger

	mu       sync.Mutex
	dirty    map[string]bool
	returned map[string][]*notifyv1.ReturnedNotification // by user
	kick     chan struct{}
}

func newUnreadNotifier(in Inbox, h *hub.Hub, log *slog.Logger) *unreadNotifier {
	return &unreadNotifier{
		inbox: in, hub: h, log: log,
		dirty: map[string]bool{}, returned: map[string][]*notifyv1.ReturnedNotification{},
		kick: make(chan struct{}, 1),
	}
}

// mark asks for the counts of owner (a user, or a group: each of its
// connected members) to be pushed to their streams.
func (u *unreadNotifier) mark(owner string) {
	if u == nil {
		return
	}
	u.mu.Lock()
	u.dirty[owner] = true
	u.mu.Unlock()
	u.wake()
}

// connected reports whether user has a stream on this node.
func (u *unreadNotifier) connected(user string) bool { return len(u.hub.Keys(user)) > 0 }

// back has r announced to user's streams with user's new counts.
func (u *unreadNotifier) back(user string, r *notifyv1.ReturnedNotification) {
	u.mu.Lock()
	u.dirty[user] = true
	if len(u.returned[user]) < maxReturnedPerFrame {
		u.returned[user] = append(u.returned[user], r)
	}
	u.mu.Unlock()
	u.wake()
}

func (u *unreadNotifier) wake() {
	select {
	case u.kick <- struct{}{}:
	default:
	}
}

// run pushes counts until ctx ends.
func (u *unreadNotifier) run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-u.kick:
		}
		u.mu.Lock()
		owners, returned := u.dirty, u.returned
		u.dirty, u.returned = map[string]bool{}, map[string][]*notifyv1.ReturnedNotification{}
		u.mu.Unlock()
		// Every connected user under owner (one user, or every admin) gets
		// their own counts. Users without groups (guests, staff) are
		// counted together, MaxCountUsers per query; the others one by one.
		var plain []string
		for owner := range owners {
			for _, k := range u.hub.Keys(owner) {
				if len(k) == 1 {
					plain = append(plain, k[0])
					continue
				}
				v := store.Viewer{UserID: k[0], Groups: k[1:]}
				n, err := u.inbox.Badge(ctx, v)
				if err != nil {
					u.warn(ctx, v.UserID, err)
					continue
				}
				u.hub.Notify(v.UserID, countsFrame(n, returned[v.UserID]))
			}
		}
		slices.Sort(plain)
		plain = slices.Compact(plain)
		for len(plain) > 0 {
			batch := plain[:min(len(plain), store.MaxCountUsers)]
			plain = plain[len(batch):]
			counts, err := u.inbox.UnreadCounts(ctx, batch)
			if err != nil {
				u.warn(ctx, batch[0], err)
				continue
			}
			for _, user := range batch {
				u.hub.Notify(user, countsFrame(counts[user], returned[user]))
			}
		}
	}
}

func (u *unreadNotifier) warn(ctx context.Context, user string, err error) {
	if ctx.Err() == nil {
		u.log.Warn("inbox counts", "user", user, "err", err)
	}
}

// Wake-up resync periods: how often a node looks for snooze ends and
// expiries it was not told about. Changes made through this node kick it
// at once; another node's are found by looking again.
const (
	// clusterResync is the period with a shared broker: another node may
	// have snoozed an item of a user whose stream is here, and it comes
	// back within about this much after its end.
	clusterResync = time.Second
	// localResync is the period on a node alone, a safety net.
	localResync = 30 * time.Second
)

// waker announces inbox changes that come with time, on this node's
// streams: notifications back from snooze (with the users' new counts)
// and expired ones (new counts). The store keeps every snooze's end and
// every expiry, and its state changes by itself when they pass: each node
// keeps one timer for the next of them (re-armed when this node changes a
// snooze or inserts an expiring item, and at least every resync period),
// and on waking announces what passed since it last looked, to the users
// connected to it. Several nodes on one database announce the same change,
// each to its own streams.
type waker struct {
	inbox  Inbox
	unread *unreadNotifier
	log    *slog.Logger
	resync time.Duration
	now    func() time.Time
	kick   chan struct{}
}

func newWaker(in Inbox, u *unreadNotifier, log *slog.Logger, resync time.Duration, now func() time.Time) *waker {
	return &waker{inbox: in, unread: u, log: log, resync: resync, now: now, kick: make(chan struct{}, 1)}
}

// changed tells the waker that a snooze end or an expiry may be earlier
// than its timer.
func (w *waker) changed() {
	if w == nil {
		return
	}
	select {
	case w.kick <- struct{}{}:
	default:
	}
}

// run wakes and announces until ctx ends. Nothing that ended before it
// started is announced: a stream opened since gets the counts as they are.
func (w *waker) run(ctx context.Context) {
	last := w.now()
	mark := store.SnoozeMark{At: last}
	expired := last
	timer := time.NewTimer(w.resync)
	defer timer.Stop()
	for {
		d := w.resync
		next, ok, err := w.inbox.NextWake(ctx, last)
		switch {
		case err != nil:
			w.warn(ctx, "next wake-up", err)
		case ok:
			d = min(d, max(next.Sub(w.now()), 0))
		}
		timer.Reset(d)
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		case <-w.kick:
			timer.Stop() // Reset above re-arms it; no stale tick is delivered
		}
		to := w.now()
		if m, err := w.returned(ctx, mark, to); err != nil {
			w.warn(ctx, "snoozes ended", err)
			mark = m // retried from there next time
		} else {
			mark = store.SnoozeMark{At: to}
		}
		if owners, err := w.inbox.ExpiredOwners(ctx, expired, to); err != nil {
			w.warn(ctx, "expired", err)
		} else {
			expired = to
			for _, o := range owners {
				w.unread.mark(o)
			}
		}
		last = to
	}
}

// returned announces the snoozes that ended after mark and by to, page by
// page, and returns the mark of the last one announced.
func (w *waker) returned(ctx context.Context, mark store.SnoozeMark, to time.Time) (store.SnoozeMark, error) {
	for {
		rs, err := w.inbox.SnoozesEnded(ctx, mark, to, store.MaxEnded)
		if err != nil {
			return mark, err
		}
		for _, r := range rs {
			mark = r.Mark()
			if !w.unread.connected(r.User) {
				continue // announced by the nodes it is connected to, if any
			}
			ev := &notifyv1.Event{}
			if err := proto.Unmarshal(r.Event, ev); err != nil {
				ev = nil // announced without its event
			}
			w.unread.back(r.User, &notifyv1.ReturnedNotification{Id: r.ID, Event: ev, SnoozeUntil: timestamppb.New(r.Until)})
		}
		if len(rs) < store.MaxEnded {
			return mark, nil
		}
	}
}

func (w *waker) warn(ctx context.Context, what string, err error) {
	if ctx.Err() == nil {
		w.log.Warn("inbox wake-up: "+what, "err", err)
	}
}
