package service

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	notifyv1 "github.com/maxloyalty/notify/gen/notify/v1"
	"github.com/maxloyalty/notify/server/access"
	"github.com/maxloyalty/notify/server/auth"
	"github.com/maxloyalty/notify/server/broker"
	"github.com/maxloyalty/notify/server/hub"
	"github.com/maxloyalty/notify/server/room"
	"github.com/maxloyalty/notify/server/store"
)

// Inbox is what the service needs from the durable store.
type Inbox interface {
	Insert(ctx context.Context, items []store.NewItem) error
	List(ctx context.Context, v store.Viewer, q store.ListQuery) ([]store.Item, string, error)
	UnreadCount(ctx context.Context, v store.Viewer) (int64, error)
	UnreadCounts(ctx context.Context, users []string) (map[string]store.Counts, error)
	MarkRead(ctx context.Context, v store.Viewer, ids []string, read bool) error
	MarkAllRead(ctx context.Context, v store.Viewer) (int64, error)
	Delete(ctx context.Context, v store.Viewer, id string) error
	Clear(ctx context.Context, v store.Viewer) (int64, error)
	Preferences(ctx context.Context, userID string) (store.Preferences, error)
	SetPreferences(ctx context.Context, userID string, p store.Preferences) error
	HasEventFrom(ctx context.Context, owner, restaurant string) (bool, error)
}

// adminGroup owns the admin room's inbox rows; every admin sees them with
// read state of their own.
const adminGroup = "group:admin"

// ErrInboxWrite wraps a failed inbox write after the event was published:
// the publish fails so the publisher retries, with the same idempotency key,
// which then writes the inbox rows without delivering the event again.
var ErrInboxWrite = errors.New("inbox write failed")

// viewer is whose inbox a caller reads: their own, plus the admin group's
// for admins. Only a subject that is a valid id has an inbox: it can then
// never be mistaken for a group such as "group:admin".
func viewer(c auth.Claims) (store.Viewer, bool) {
	if room.ValidID(c.Subject) != nil {
		return store.Viewer{}, false
	}
	v := store.Viewer{UserID: c.Subject}
	if c.Role == notifyv1.Role_ROLE_ADMIN {
		v.Groups = []string{adminGroup}
	}
	return v, true
}

// keys are the hub keys of a caller's streams: user id first, then groups;
// none for a subject that has no inbox.
func keys(c auth.Claims) []string {
	v, ok := viewer(c)
	if !ok {
		return nil
	}
	return append([]string{v.UserID}, v.Groups...)
}

// typeName is the store's name of an event type: EVENT_TYPE_POINTS_ADDED
// is "points_added".
func typeName(t notifyv1.EventType) string {
	return strings.ToLower(strings.TrimPrefix(t.String(), "EVENT_TYPE_"))
}

func typeByName(name string) notifyv1.EventType {
	return notifyv1.EventType(notifyv1.EventType_value["EVENT_TYPE_"+strings.ToUpper(name)])
}

// inboxOwner returns who keeps events of a room in their inbox, if anyone.
func inboxOwner(name string) (string, bool) {
	r, err := room.Parse(name)
	if err != nil {
		return "", false
	}
	switch r.Kind() {
	case room.KindGuest, room.KindUser:
		return r.ID(), true
	case room.KindAdmin:
		return adminGroup, true
	}
	return "", false
}

// record writes the inbox rows of a published event, then marks the
// owners' unread counts for refresh.
func (s *Service) record(ctx context.Context, pr prepared, res broker.Result) error {
	p, t, at := pr.pub, pr.typ, pr.time
	if s.inbox == nil {
		return nil
	}
	// An inbox row is unique per owner and key: the publisher's idempotency
	// key and the request's fingerprint when it gave a key, so that a
	// publish retried after a crash (when the broker may have forgotten the
	// key) is still stored once, while another request reusing the key
	// after the broker forgot it is stored as the new event it is; else
	// the event id.
	key := res.EventID
	if p.IdempotencyKey != "" {
		key = "idem:" + base64.RawURLEncoding.EncodeToString([]byte(p.IdempotencyKey)) + "." + p.Fingerprint
	}
	var items []store.NewItem
	for _, pos := range res.Positions {
		owner, ok := inboxOwner(pos.Room)
		if !ok {
			continue
		}
		items = append(items, store.NewItem{
			Owner:      owner,
			EventID:    key,
			EventType:  typeName(t),
			Event:      hub.EncodeEvent(broker.Message{Room: pos.Room, Offset: pos.Offset, Epoch: pos.Epoch, Data: p.Data}),
			CreatedAt:  at,
			Restaurant: pr.restaurant,
		})
	}
	if len(items) == 0 {
		return nil
	}
	if err := s.inbox.Insert(ctx, items); err != nil {
		s.log.Error("inbox write failed", "event_id", res.EventID, "err", err)
		// The driver's text stays in the log; the publisher learns what to do.
		return fmt.Errorf("%w: event %s was published but not stored; retry with the same idempotency key", ErrInboxWrite, res.EventID)
	}
	for _, it := range items {
		s.unread.mark(it.Owner)
	}
	return nil
}

// unreadNotifier refreshes the unread count of users with live streams, off
// the publish path: owners are marked dirty, and one goroutine counts and
// pushes, coalescing bursts.
type unreadNotifier struct {
	inbox Inbox
	hub   *hub.Hub
	log   *slog.Logger

	mu    sync.Mutex
	dirty map[string]bool
	kick  chan struct{}
}

func newUnreadNotifier(in Inbox, h *hub.Hub, log *slog.Logger) *unreadNotifier {
	return &unreadNotifier{inbox: in, hub: h, log: log, dirty: map[string]bool{}, kick: make(chan struct{}, 1)}
}

// mark asks for owner's count to be pushed to its streams.
func (u *unreadNotifier) mark(owner string) {
	if u == nil {
		return
	}
	u.mu.Lock()
	u.dirty[owner] = true
	u.mu.Unlock()
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
		owners := u.dirty
		u.dirty = map[string]bool{}
		u.mu.Unlock()
		// Every connected user under owner (one user, or every admin) gets
		// their own count. Users without groups (guests, staff) are counted
		// together, MaxCountUsers per query; the others one by one.
		var plain []string
		for owner := range owners {
			for _, k := range u.hub.Keys(owner) {
				if len(k) == 1 {
					plain = append(plain, k[0])
					continue
				}
				v := store.Viewer{UserID: k[0], Groups: k[1:]}
				n, err := u.inbox.UnreadCount(ctx, v)
				if err != nil {
					u.warn(ctx, v.UserID, err)
					continue
				}
				u.hub.Notify(v.UserID, hub.NewUnreadFrame(n))
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
				u.hub.Notify(user, hub.NewUnreadFrame(counts[user].Unread))
			}
		}
	}
}

func (u *unreadNotifier) warn(ctx context.Context, user string, err error) {
	if ctx.Err() == nil {
		u.log.Warn("unread count", "user", user, "err", err)
	}
}

// Run runs the service's background work (unread count pushes) until ctx
// ends.
func (s *Service) Run(ctx context.Context) {
	if s.unread != nil {
		s.unread.run(ctx)
	}
}

// applyPreferences mutes a subscriber as its user's preferences say.
func applyPreferences(sub *hub.Subscriber, p store.Preferences) {
	types := make([]int32, 0, len(p.Muted))
	for _, m := range p.Muted {
		types = append(types, int32(typeByName(m)))
	}
	sub.Mute(types, !p.Enabled)
}

// InboxService implements notify.v1.InboxService over the service's store.
type InboxService struct {
	notifyv1.UnimplementedInboxServiceServer
	svc *Service
}

// Inbox returns the InboxService backed by s's store.
func (s *Service) Inbox() *InboxService { return &InboxService{svc: s} }

// DefaultPageSize is the page size of a ListNotifications that names none.
const DefaultPageSize = 50

func (x *InboxService) caller(ctx context.Context) (store.Viewer, error) {
	c, err := claims(ctx)
	if err != nil {
		return store.Viewer{}, err
	}
	v, ok := viewer(c)
	if !ok {
		return store.Viewer{}, fmt.Errorf("%w: this token's subject has no inbox (a subject must be 1-64 characters of [A-Za-z0-9_-])", access.ErrDenied)
	}
	return v, nil
}

// ListNotifications implements InboxService.ListNotifications.
func (x *InboxService) ListNotifications(ctx context.Context, req *notifyv1.ListNotificationsRequest) (*notifyv1.ListNotificationsResponse, error) {
	v, err := x.caller(ctx)
	if err != nil {
		return nil, toStatusErr(err)
	}
	size := int(req.PageSize)
	switch {
	case size == 0:
		size = DefaultPageSize
	case size < 0 || size > store.MaxPageSize:
		return nil, toStatusErr(invalid("page_size: %d is not between 1 and %d", req.PageSize, store.MaxPageSize))
	}
	q := store.ListQuery{Cursor: req.PageToken, Limit: size, UnreadOnly: req.UnreadOnly}
	for _, t := range req.EventTypes {
		if t == notifyv1.EventType_EVENT_TYPE_UNSPECIFIED || notifyv1.EventType_name[int32(t)] == "" {
			return nil, toStatusErr(invalid("event_types: %d is not a known event type", t))
		}
		q.Types = append(q.Types, typeName(t))
	}
	items, next, err := x.svc.inbox.List(ctx, v, q)
	if err != nil {
		return nil, toStatusErr(inboxErr(err, "page_token"))
	}
	out := &notifyv1.ListNotificationsResponse{NextPageToken: next, Notifications: make([]*notifyv1.Notification, 0, len(items))}
	for _, it := range items {
		ev := &notifyv1.Event{}
		if err := proto.Unmarshal(it.Event, ev); err != nil {
			return nil, toStatusErr(fmt.Errorf("stored notification %s: %w", it.ID, err))
		}
		out.Notifications = append(out.Notifications, &notifyv1.Notification{
			Id:         it.ID,
			Event:      ev,
			Read:       it.Read,
			CreateTime: timestamppb.New(it.CreatedAt),
			EventType:  typeByName(it.EventType),
		})
	}
	if out.UnreadCount, err = x.svc.inbox.UnreadCount(ctx, v); err != nil {
		return nil, toStatusErr(inboxErr(err, ""))
	}
	return out, nil
}

// GetUnreadCount implements InboxService.GetUnreadCount.
func (x *InboxService) GetUnreadCount(ctx context.Context, _ *notifyv1.GetUnreadCountRequest) (*notifyv1.GetUnreadCountResponse, error) {
	v, err := x.caller(ctx)
	if err != nil {
		return nil, toStatusErr(err)
	}
	n, err := x.svc.inbox.UnreadCount(ctx, v)
	if err != nil {
		return nil, toStatusErr(inboxErr(err, ""))
	}
	return &notifyv1.GetUnreadCountResponse{UnreadCount: n}, nil
}

// mark sets the read state of ids and returns the new unread count.
func (x *InboxService) mark(ctx context.Context, ids []string, read bool) (int64, error) {
	v, err := x.caller(ctx)
	if err != nil {
		return 0, err
	}
	if len(ids) == 0 || len(ids) > store.MaxMarkIDs {
		return 0, invalid("ids: give 1 to %d ids, not %d", store.MaxMarkIDs, len(ids))
	}
	if err := x.svc.inbox.MarkRead(ctx, v, ids, read); err != nil {
		return 0, inboxErr(err, "ids")
	}
	return x.changed(ctx, v)
}

// changed has v's new unread count pushed to its streams, by the one
// goroutine that pushes counts (so pushes never overtake each other), and
// returns it.
func (x *InboxService) changed(ctx context.Context, v store.Viewer) (int64, error) {
	x.svc.unread.mark(v.UserID)
	n, err := x.svc.inbox.UnreadCount(ctx, v)
	if err != nil {
		return 0, inboxErr(err, "")
	}
	return n, nil
}

// MarkRead implements InboxService.MarkRead.
func (x *InboxService) MarkRead(ctx context.Context, req *notifyv1.MarkReadRequest) (*notifyv1.MarkReadResponse, error) {
	n, err := x.mark(ctx, req.Ids, true)
	if err != nil {
		return nil, toStatusErr(err)
	}
	return &notifyv1.MarkReadResponse{UnreadCount: n}, nil
}

// MarkUnread implements InboxService.MarkUnread.
func (x *InboxService) MarkUnread(ctx context.Context, req *notifyv1.MarkUnreadRequest) (*notifyv1.MarkUnreadResponse, error) {
	n, err := x.mark(ctx, req.Ids, false)
	if err != nil {
		return nil, toStatusErr(err)
	}
	return &notifyv1.MarkUnreadResponse{UnreadCount: n}, nil
}

// MarkAllRead implements InboxService.MarkAllRead.
func (x *InboxService) MarkAllRead(ctx context.Context, _ *notifyv1.MarkAllReadRequest) (*notifyv1.MarkAllReadResponse, error) {
	v, err := x.caller(ctx)
	if err != nil {
		return nil, toStatusErr(err)
	}
	marked, err := x.svc.inbox.MarkAllRead(ctx, v)
	if err != nil {
		return nil, toStatusErr(inboxErr(err, ""))
	}
	n, err := x.changed(ctx, v)
	if err != nil {
		return nil, toStatusErr(err)
	}
	return &notifyv1.MarkAllReadResponse{Marked: marked, UnreadCount: n}, nil
}

// DeleteNotification implements InboxService.DeleteNotification.
func (x *InboxService) DeleteNotification(ctx context.Context, req *notifyv1.DeleteNotificationRequest) (*notifyv1.DeleteNotificationResponse, error) {
	v, err := x.caller(ctx)
	if err != nil {
		return nil, toStatusErr(err)
	}
	if req.Id == "" {
		return nil, toStatusErr(invalid("id: required"))
	}
	if err := x.svc.inbox.Delete(ctx, v, req.Id); err != nil {
		return nil, toStatusErr(inboxErr(err, "id"))
	}
	n, err := x.changed(ctx, v)
	if err != nil {
		return nil, toStatusErr(err)
	}
	return &notifyv1.DeleteNotificationResponse{UnreadCount: n}, nil
}

// ClearNotifications implements InboxService.ClearNotifications.
func (x *InboxService) ClearNotifications(ctx context.Context, _ *notifyv1.ClearNotificationsRequest) (*notifyv1.ClearNotificationsResponse, error) {
	v, err := x.caller(ctx)
	if err != nil {
		return nil, toStatusErr(err)
	}
	n, err := x.svc.inbox.Clear(ctx, v)
	if err != nil {
		return nil, toStatusErr(inboxErr(err, ""))
	}
	if _, err := x.changed(ctx, v); err != nil {
		return nil, toStatusErr(err)
	}
	return &notifyv1.ClearNotificationsResponse{Deleted: n}, nil
}

// GetPreferences implements InboxService.GetPreferences.
func (x *InboxService) GetPreferences(ctx context.Context, _ *notifyv1.GetPreferencesRequest) (*notifyv1.GetPreferencesResponse, error) {
	v, err := x.caller(ctx)
	if err != nil {
		return nil, toStatusErr(err)
	}
	p, err := x.svc.inbox.Preferences(ctx, v.UserID)
	if err != nil {
		return nil, toStatusErr(inboxErr(err, ""))
	}
	return &notifyv1.GetPreferencesResponse{Preferences: toProtoPrefs(p)}, nil
}

// UpdatePreferences implements InboxService.UpdatePreferences. The new
// mutes apply at once to the caller's open streams on this node.
func (x *InboxService) UpdatePreferences(ctx context.Context, req *notifyv1.UpdatePreferencesRequest) (*notifyv1.UpdatePreferencesResponse, error) {
	v, err := x.caller(ctx)
	if err != nil {
		return nil, toStatusErr(err)
	}
	if req.Preferences == nil {
		return nil, toStatusErr(invalid("preferences: required"))
	}
	p := store.Preferences{Enabled: req.Preferences.Enabled, Sound: req.Preferences.Sound, Email: req.Preferences.Email, Muted: []string{}}
	for _, t := range req.Preferences.MutedTypes {
		if t == notifyv1.EventType_EVENT_TYPE_UNSPECIFIED || notifyv1.EventType_name[int32(t)] == "" {
			return nil, toStatusErr(invalid("preferences.muted_types: %d is not a known event type", t))
		}
		if name := typeName(t); !slices.Contains(p.Muted, name) {
			p.Muted = append(p.Muted, name)
		}
	}
	slices.Sort(p.Muted)
	if err := x.svc.inbox.SetPreferences(ctx, v.UserID, p); err != nil {
		return nil, toStatusErr(inboxErr(err, ""))
	}
	x.svc.hub.Each(v.UserID, func(sub *hub.Subscriber) { applyPreferences(sub, p) })
	return &notifyv1.UpdatePreferencesResponse{Preferences: toProtoPrefs(p)}, nil
}

func toProtoPrefs(p store.Preferences) *notifyv1.Preferences {
	out := &notifyv1.Preferences{Enabled: p.Enabled, Sound: p.Sound, Email: p.Email}
	for _, m := range p.Muted {
		out.MutedTypes = append(out.MutedTypes, typeByName(m))
	}
	return out
}

// inboxErr names the request field a store's invalid-argument or not-found
// error is about.
func inboxErr(err error, field string) error {
	switch {
	case errors.Is(err, store.ErrInvalid) && field != "":
		return invalid("%s: %v", field, err)
	case errors.Is(err, store.ErrNotFound) && field != "":
		return fmt.Errorf("%w: %s: no such notification in your inbox", ErrNotFound, field)
	}
	return err
}
