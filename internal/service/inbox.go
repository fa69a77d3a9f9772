package service

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	notifyv1 "github.com/maxloyalty/notify/gen/notify/v1"
	"github.com/maxloyalty/notify/internal/access"
	"github.com/maxloyalty/notify/internal/auth"
	"github.com/maxloyalty/notify/internal/broker"
	"github.com/maxloyalty/notify/internal/delivery"
	"github.com/maxloyalty/notify/internal/hub"
	"github.com/maxloyalty/notify/internal/room"
	"github.com/maxloyalty/notify/internal/store"
	"github.com/maxloyalty/notify/internal/tracing"
)

// Inbox is what the service needs from the durable store.
type Inbox interface {
	Insert(ctx context.Context, items []store.NewItem) error
	List(ctx context.Context, v store.Viewer, q store.ListQuery) ([]store.Item, string, error)
	UnreadCount(ctx context.Context, v store.Viewer) (int64, error)
	UnreadCounts(ctx context.Context, users []string) (map[string]store.Counts, error)
	Badge(ctx context.Context, v store.Viewer) (store.Counts, error)
	Counts(ctx context.Context, v store.Viewer) (store.Counts, error)
	MarkRead(ctx context.Context, v store.Viewer, ids []string, read bool) error
	MarkAllRead(ctx context.Context, v store.Viewer) (int64, error)
	Update(ctx context.Context, v store.Viewer, ids []string, ch store.Change) error
	UpdateWhere(ctx context.Context, v store.Viewer, f store.Filter, ch store.Change) (int64, error)
	Delete(ctx context.Context, v store.Viewer, id string) error
	Clear(ctx context.Context, v store.Viewer) (int64, error)
	NextWake(ctx context.Context, after time.Time) (time.Time, bool, error)
	SnoozesEnded(ctx context.Context, after store.SnoozeMark, until time.Time, limit int) ([]store.Returned, error)
	ExpiredOwners(ctx context.Context, after, until time.Time) ([]string, error)
	Preferences(ctx context.Context, userID string) (store.Preferences, error)
	SetPreferences(ctx context.Context, userID string, p store.Preferences) error
	HasEventFrom(ctx context.Context, owner, restaurant string) (bool, error)
}

// adminGroup owns the admin room's inbox rows; every admin sees them with
// state of their own.
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
// owners' counts for refresh.
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
		it := store.NewItem{
			Owner:      owner,
			EventID:    key,
			EventType:  typeName(t),
			Event:      hub.EncodeEvent(broker.Message{Room: pos.Room, Offset: pos.Offset, Epoch: pos.Epoch, Data: p.Data}),
			CreatedAt:  at,
			Restaurant: pr.restaurant,
		}
		pr.inbox.apply(&it)
		items = append(items, it)
	}
	deliver := s.cfg.Deliveries != nil && s.cfg.Deliveries.Enabled() && (len(items) > 0 || s.cfg.Deliveries.WantsEvents())
	if len(items) == 0 && !deliver {
		return nil
	}
	if err := s.insert(ctx, pr, res, key, items, deliver); err != nil {
		s.log.Error("inbox write failed", "event_id", res.EventID, "err", err)
		// The driver's text stays in the log; the publisher learns what to do.
		return fmt.Errorf("%w: event %s was published but not stored; retry with the same idempotency key", ErrInboxWrite, res.EventID)
	}
	for _, it := range items {
		s.unread.mark(it.Owner)
	}
	if !pr.inbox.expires.IsZero() {
		s.wake.changed()
	}
	return nil
}

// insert writes a published event's inbox rows and, when deliver, queues
// its deliveries in the same transaction (store.InsertWith): an accepted
// event has its pushes, emails and webhooks queued, or is not accepted.
func (s *Service) insert(ctx context.Context, pr prepared, res broker.Result, key string, items []store.NewItem, deliver bool) error {
	iw, ok := s.inbox.(insertWith)
	if !deliver || !ok {
		return s.inbox.Insert(ctx, items)
	}
	pub := delivery.Publication{
		EventID: res.EventID, Key: key, Type: typeName(pr.typ), Data: pr.pub.Data,
		Critical: pr.critical, Email: pr.email, Time: pr.time,
		// The deliveries' spans link to this publish's.
		TraceParent: tracing.TraceParent(ctx),
	}
	for _, pos := range res.Positions {
		pub.Rooms = append(pub.Rooms, delivery.Room{Name: pos.Room, Offset: pos.Offset, Epoch: pos.Epoch})
	}
	return iw.InsertWith(ctx, items, func(ctx context.Context, tx *store.Tx, inserted []bool) error {
		// The hook may run again in a new transaction: build the owners
		// afresh each time.
		p := pub
		for i, it := range items {
			if inserted[i] {
				p.Owners = append(p.Owners, delivery.Owner{ID: it.Owner, Event: it.Event})
			}
		}
		return s.cfg.Deliveries.Enqueue(ctx, tx, p)
	})
}

// Run runs the service's background work until ctx ends: pushing inbox
// counts to streams, and announcing snoozes that end and notifications
// that expire.
func (s *Service) Run(ctx context.Context) {
	if s.unread == nil {
		return
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.wake.run(ctx)
	}()
	s.unread.run(ctx)
	<-done
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

// target is the viewer a call is about, as access.InboxFor decides: the
// caller's own inbox when userID is empty or the caller's subject;
// otherwise, on behalf of userID, that user's own notifications for a
// service, and that admin's view of the admin inbox (the shared rows
// only, with that admin's state) for an admin.
func (x *InboxService) target(ctx context.Context, userID string) (store.Viewer, error) {
	c, err := claims(ctx)
	if err != nil {
		return store.Viewer{}, err
	}
	if err := checkUserID(c, userID); err != nil {
		return store.Viewer{}, err
	}
	view, err := access.InboxFor(c, userID)
	if err != nil {
		return store.Viewer{}, err
	}
	switch view {
	case access.UserInbox:
		return store.Viewer{UserID: userID}, nil
	case access.AdminGroupInbox:
		return store.Viewer{UserID: userID, Groups: []string{adminGroup}, GroupsOnly: true}, nil
	}
	v, _ := viewer(c) // InboxFor checked that the subject has an inbox
	return v, nil
}

// checkUserID checks the user_id of a call on behalf of another user.
func checkUserID(c auth.Claims, userID string) error {
	if userID == "" || userID == c.Subject {
		return nil
	}
	if err := room.ValidID(userID); err != nil {
		return invalid("user_id: %v", err)
	}
	return nil
}

// preferencesOf is whose preferences a call is about: the caller's, or
// for services another user's (access.PreferencesUser).
func (x *InboxService) preferencesOf(ctx context.Context, userID string) (string, error) {
	c, err := claims(ctx)
	if err != nil {
		return "", err
	}
	if err := checkUserID(c, userID); err != nil {
		return "", err
	}
	return access.PreferencesUser(c, userID)
}

// changed has v's user's new counts pushed to its streams on this node,
// by the one goroutine that pushes counts (so pushes never overtake each
// other), and returns v's counts.
func (x *InboxService) changed(ctx context.Context, v store.Viewer) (store.Counts, error) {
	x.svc.unread.mark(v.UserID)
	n, err := x.svc.inbox.Counts(ctx, v)
	if err != nil {
		return store.Counts{}, inboxErr(err, "")
	}
	return n, nil
}

func toProtoCounts(c store.Counts) *notifyv1.InboxCounts {
	return &notifyv1.InboxCounts{Unseen: c.Unseen, Unread: c.Unread, Archived: c.Archived, Snoozed: c.Snoozed, Inbox: c.Inbox}
}

// ListNotifications implements InboxService.ListNotifications.
func (x *InboxService) ListNotifications(ctx context.Context, req *notifyv1.ListNotificationsRequest) (*notifyv1.ListNotificationsResponse, error) {
	v, err := x.target(ctx, req.UserId)
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
	f, err := toFilter(req.State, req.EventTypes, req.Categories, req.Priorities, "")
	if err != nil {
		return nil, toStatusErr(err)
	}
	q := store.ListQuery{
		Cursor: req.PageToken, Limit: size, UnreadOnly: req.UnreadOnly,
		State: f.State, Types: f.Types, Categories: f.Categories, Priorities: f.Priorities,
	}
	switch req.Order {
	case notifyv1.NotificationOrder_NOTIFICATION_ORDER_UNSPECIFIED, notifyv1.NotificationOrder_NOTIFICATION_ORDER_NEWEST:
	case notifyv1.NotificationOrder_NOTIFICATION_ORDER_PRIORITY:
		q.Order = store.OrderPriority
	default:
		return nil, toStatusErr(invalid("order: %d is not a known order", req.Order))
	}
	items, next, err := x.svc.inbox.List(ctx, v, q)
	if err != nil {
		return nil, toStatusErr(inboxErr(err, "page_token"))
	}
	out := &notifyv1.ListNotificationsResponse{NextPageToken: next, Notifications: make([]*notifyv1.Notification, 0, len(items))}
	for _, it := range items {
		n, err := toNotification(it)
		if err != nil {
			return nil, toStatusErr(err)
		}
		out.Notifications = append(out.Notifications, n)
	}
	counts, err := x.svc.inbox.Counts(ctx, v)
	if err != nil {
		return nil, toStatusErr(inboxErr(err, ""))
	}
	out.UnreadCount, out.Counts = counts.Unread, toProtoCounts(counts)
	return out, nil
}

// toNotification is the contract's form of a stored item.
func toNotification(it store.Item) (*notifyv1.Notification, error) {
	ev := &notifyv1.Event{}
	if err := proto.Unmarshal(it.Event, ev); err != nil {
		return nil, fmt.Errorf("stored notification %s: %w", it.ID, err)
	}
	n := &notifyv1.Notification{
		Id:          it.ID,
		Event:       ev,
		Read:        it.Read,
		CreateTime:  timestamppb.New(it.CreatedAt),
		EventType:   typeByName(it.EventType),
		Seen:        it.Seen,
		SeenTime:    optTime(it.SeenAt),
		ReadTime:    optTime(it.ReadAt),
		Archived:    it.Archived(),
		ArchiveTime: optTime(it.ArchivedAt),
		SnoozeUntil: optTime(it.SnoozedUntil),
		Priority:    notifyv1.Priority(it.Priority),
		Category:    it.Category,
		Tags:        it.Tags,
		ExpireTime:  optTime(it.ExpiresAt),
	}
	if it.Action != nil {
		a := &notifyv1.NotificationAction{}
		if err := proto.Unmarshal(it.Action, a); err != nil {
			return nil, fmt.Errorf("stored notification %s: action: %w", it.ID, err)
		}
		n.Action = a
	}
	return n, nil
}

// optTime is t as a timestamp, nil for the zero time.
func optTime(t time.Time) *timestamppb.Timestamp {
	if t.IsZero() {
		return nil
	}
	return timestamppb.New(t)
}

// GetUnreadCount implements InboxService.GetUnreadCount.
func (x *InboxService) GetUnreadCount(ctx context.Context, req *notifyv1.GetUnreadCountRequest) (*notifyv1.GetUnreadCountResponse, error) {
	v, err := x.target(ctx, req.UserId)
	if err != nil {
		return nil, toStatusErr(err)
	}
	n, err := x.svc.inbox.UnreadCount(ctx, v)
	if err != nil {
		return nil, toStatusErr(inboxErr(err, ""))
	}
	return &notifyv1.GetUnreadCountResponse{UnreadCount: n}, nil
}

// GetCounts implements InboxService.GetCounts.
func (x *InboxService) GetCounts(ctx context.Context, req *notifyv1.GetCountsRequest) (*notifyv1.GetCountsResponse, error) {
	v, err := x.target(ctx, req.UserId)
	if err != nil {
		return nil, toStatusErr(err)
	}
	n, err := x.svc.inbox.Counts(ctx, v)
	if err != nil {
		return nil, toStatusErr(inboxErr(err, ""))
	}
	return &notifyv1.GetCountsResponse{Counts: toProtoCounts(n)}, nil
}

// update applies ch to ids of userID's inbox and returns the new counts.
func (x *InboxService) update(ctx context.Context, userID string, ids []string, ch store.Change) (store.Counts, error) {
	v, err := x.target(ctx, userID)
	if err != nil {
		return store.Counts{}, err
	}
	if len(ids) == 0 || len(ids) > store.MaxMarkIDs {
		return store.Counts{}, invalid("ids: give 1 to %d ids, not %d", store.MaxMarkIDs, len(ids))
	}
	if err := x.svc.inbox.Update(ctx, v, ids, ch); err != nil {
		return store.Counts{}, inboxErr(err, "ids")
	}
	if ch.Action == store.ActionSnooze || ch.Action == store.ActionUnsnooze {
		x.svc.wake.changed()
	}
	return x.changed(ctx, v)
}

// MarkRead implements InboxService.MarkRead.
func (x *InboxService) MarkRead(ctx context.Context, req *notifyv1.MarkReadRequest) (*notifyv1.MarkReadResponse, error) {
	n, err := x.update(ctx, req.UserId, req.Ids, store.Change{Action: store.ActionRead})
	if err != nil {
		return nil, toStatusErr(err)
	}
	return &notifyv1.MarkReadResponse{UnreadCount: n.Unread}, nil
}

// MarkUnread implements InboxService.MarkUnread.
func (x *InboxService) MarkUnread(ctx context.Context, req *notifyv1.MarkUnreadRequest) (*notifyv1.MarkUnreadResponse, error) {
	n, err := x.update(ctx, req.UserId, req.Ids, store.Change{Action: store.ActionUnread})
	if err != nil {
		return nil, toStatusErr(err)
	}
	return &notifyv1.MarkUnreadResponse{UnreadCount: n.Unread}, nil
}

// MarkSeen implements InboxService.MarkSeen.
func (x *InboxService) MarkSeen(ctx context.Context, req *notifyv1.MarkSeenRequest) (*notifyv1.MarkSeenResponse, error) {
	n, err := x.update(ctx, req.UserId, req.Ids, store.Change{Action: store.ActionSeen})
	if err != nil {
		return nil, toStatusErr(err)
	}
	return &notifyv1.MarkSeenResponse{Counts: toProtoCounts(n)}, nil
}

// MarkUnseen implements InboxService.MarkUnseen.
func (x *InboxService) MarkUnseen(ctx context.Context, req *notifyv1.MarkUnseenRequest) (*notifyv1.MarkUnseenResponse, error) {
	n, err := x.update(ctx, req.UserId, req.Ids, store.Change{Action: store.ActionUnseen})
	if err != nil {
		return nil, toStatusErr(err)
	}
	return &notifyv1.MarkUnseenResponse{Counts: toProtoCounts(n)}, nil
}

// Archive implements InboxService.Archive.
func (x *InboxService) Archive(ctx context.Context, req *notifyv1.ArchiveRequest) (*notifyv1.ArchiveResponse, error) {
	n, err := x.update(ctx, req.UserId, req.Ids, store.Change{Action: store.ActionArchive})
	if err != nil {
		return nil, toStatusErr(err)
	}
	return &notifyv1.ArchiveResponse{Counts: toProtoCounts(n)}, nil
}

// Unarchive implements InboxService.Unarchive.
func (x *InboxService) Unarchive(ctx context.Context, req *notifyv1.UnarchiveRequest) (*notifyv1.UnarchiveResponse, error) {
	n, err := x.update(ctx, req.UserId, req.Ids, store.Change{Action: store.ActionUnarchive})
	if err != nil {
		return nil, toStatusErr(err)
	}
	return &notifyv1.UnarchiveResponse{Counts: toProtoCounts(n)}, nil
}

// Snooze implements InboxService.Snooze.
func (x *InboxService) Snooze(ctx context.Context, req *notifyv1.SnoozeRequest) (*notifyv1.SnoozeResponse, error) {
	until, err := x.svc.snoozeEnd(req.Until, req.Duration, "until", "duration")
	if err != nil {
		return nil, toStatusErr(err)
	}
	n, err := x.update(ctx, req.UserId, req.Ids, store.Change{Action: store.ActionSnooze, Until: until})
	if err != nil {
		return nil, toStatusErr(err)
	}
	return &notifyv1.SnoozeResponse{Until: timestamppb.New(until), Counts: toProtoCounts(n)}, nil
}

// Unsnooze implements InboxService.Unsnooze.
func (x *InboxService) Unsnooze(ctx context.Context, req *notifyv1.UnsnoozeRequest) (*notifyv1.UnsnoozeResponse, error) {
	n, err := x.update(ctx, req.UserId, req.Ids, store.Change{Action: store.ActionUnsnooze})
	if err != nil {
		return nil, toStatusErr(err)
	}
	return &notifyv1.UnsnoozeResponse{Counts: toProtoCounts(n)}, nil
}

// MarkAllRead implements InboxService.MarkAllRead.
func (x *InboxService) MarkAllRead(ctx context.Context, req *notifyv1.MarkAllReadRequest) (*notifyv1.MarkAllReadResponse, error) {
	v, err := x.target(ctx, req.UserId)
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
	return &notifyv1.MarkAllReadResponse{Marked: marked, UnreadCount: n.Unread}, nil
}

// BulkUpdate implements InboxService.BulkUpdate.
func (x *InboxService) BulkUpdate(ctx context.Context, req *notifyv1.BulkUpdateRequest) (*notifyv1.BulkUpdateResponse, error) {
	v, err := x.target(ctx, req.UserId)
	if err != nil {
		return nil, toStatusErr(err)
	}
	fl := req.Filter
	if fl == nil {
		fl = &notifyv1.InboxFilter{}
	}
	f, err := toFilter(fl.State, fl.EventTypes, fl.Categories, fl.Priorities, "filter.")
	if err != nil {
		return nil, toStatusErr(err)
	}
	ch, ok := actions[req.Action]
	if !ok {
		return nil, toStatusErr(invalid("action: %d is not a known action (INBOX_ACTION_SEEN, ...)", req.Action))
	}
	if ch.Action == store.ActionSnooze {
		if ch.Until, err = x.svc.snoozeEnd(req.SnoozeUntil, req.SnoozeDuration, "snooze_until", "snooze_duration"); err != nil {
			return nil, toStatusErr(err)
		}
	} else if req.SnoozeUntil != nil || req.SnoozeDuration != nil {
		return nil, toStatusErr(invalid("snooze_until, snooze_duration: only with INBOX_ACTION_SNOOZE"))
	}
	changed, err := x.svc.inbox.UpdateWhere(ctx, v, f, ch)
	if err != nil {
		return nil, toStatusErr(inboxErr(err, "filter"))
	}
	if ch.Action == store.ActionSnooze || ch.Action == store.ActionUnsnooze {
		x.svc.wake.changed()
	}
	n, err := x.changed(ctx, v)
	if err != nil {
		return nil, toStatusErr(err)
	}
	return &notifyv1.BulkUpdateResponse{Changed: changed, Counts: toProtoCounts(n)}, nil
}

// actions maps the contract's bulk actions onto the store's.
var actions = map[notifyv1.InboxAction]store.Change{
	notifyv1.InboxAction_INBOX_ACTION_SEEN:      {Action: store.ActionSeen},
	notifyv1.InboxAction_INBOX_ACTION_UNSEEN:    {Action: store.ActionUnseen},
	notifyv1.InboxAction_INBOX_ACTION_READ:      {Action: store.ActionRead},
	notifyv1.InboxAction_INBOX_ACTION_UNREAD:    {Action: store.ActionUnread},
	notifyv1.InboxAction_INBOX_ACTION_ARCHIVE:   {Action: store.ActionArchive},
	notifyv1.InboxAction_INBOX_ACTION_UNARCHIVE: {Action: store.ActionUnarchive},
	notifyv1.InboxAction_INBOX_ACTION_SNOOZE:    {Action: store.ActionSnooze},
	notifyv1.InboxAction_INBOX_ACTION_UNSNOOZE:  {Action: store.ActionUnsnooze},
	notifyv1.InboxAction_INBOX_ACTION_DELETE:    {Action: store.ActionDelete},
}

// states maps the contract's states onto the store's.
var states = map[notifyv1.NotificationState]store.State{
	notifyv1.NotificationState_NOTIFICATION_STATE_UNSPECIFIED: store.StateInbox,
	notifyv1.NotificationState_NOTIFICATION_STATE_INBOX:       store.StateInbox,
	notifyv1.NotificationState_NOTIFICATION_STATE_UNSEEN:      store.StateUnseen,
	notifyv1.NotificationState_NOTIFICATION_STATE_UNREAD:      store.StateUnread,
	notifyv1.NotificationState_NOTIFICATION_STATE_READ:        store.StateRead,
	notifyv1.NotificationState_NOTIFICATION_STATE_ARCHIVED:    store.StateArchived,
	notifyv1.NotificationState_NOTIFICATION_STATE_SNOOZED:     store.StateSnoozed,
	notifyv1.NotificationState_NOTIFICATION_STATE_ALL:         store.StateAll,
}

// maxFilterValues bounds the categories of a filter.
const maxFilterValues = 100

// toFilter validates a list's or a bulk action's filter; prefix names its
// fields in errors ("filter." for BulkUpdate).
func toFilter(st notifyv1.NotificationState, types []notifyv1.EventType, categories []string, priorities []notifyv1.Priority, prefix string) (store.Filter, error) {
	s, ok := states[st]
	if !ok {
		return store.Filter{}, invalid("%sstate: %d is not a known state", prefix, st)
	}
	f := store.Filter{State: s}
	for _, t := range types {
		if !known(notifyv1.EventType_name, int32(t)) {
			return store.Filter{}, invalid("%sevent_types: %d is not a known event type", prefix, t)
		}
		f.Types = append(f.Types, typeName(t))
	}
	if len(categories) > maxFilterValues {
		return store.Filter{}, invalid("%scategories: %d categories, at most %d", prefix, len(categories), maxFilterValues)
	}
	for i, c := range categories {
		if err := checkLabel(c); err != nil {
			return store.Filter{}, invalid("%scategories[%d]: %v", prefix, i, err)
		}
		f.Categories = append(f.Categories, c)
	}
	for _, p := range priorities {
		if !known(notifyv1.Priority_name, int32(p)) {
			return store.Filter{}, invalid("%spriorities: %d is not a known priority", prefix, p)
		}
		f.Priorities = append(f.Priorities, storePriority(p))
	}
	return f, nil
}

// Bounds of a snooze, from now.
const (
	minSnooze = time.Second
	maxSnooze = 366 * 24 * time.Hour
)

// snoozeEnd is the end of a snooze given as a time or as a duration from
// now (exactly one), between minSnooze and maxSnooze from now, to the
// microsecond. At least a second ahead, so that its end is in the store
// before any node looks for snoozes ending then.
func (s *Service) snoozeEnd(until *timestamppb.Timestamp, d *durationpb.Duration, untilField, durField string) (time.Time, error) {
	now := s.now()
	var end time.Time
	switch {
	case until != nil && d != nil:
		return time.Time{}, invalid("%s, %s: give one, not both", untilField, durField)
	case until != nil:
		if err := until.CheckValid(); err != nil {
			return time.Time{}, invalid("%s: %v", untilField, err)
		}
		end = until.AsTime()
	case d != nil:
		if err := d.CheckValid(); err != nil {
			return time.Time{}, invalid("%s: %v", durField, err)
		}
		end = now.Add(d.AsDuration())
	default:
		return time.Time{}, invalid("%s: required (or %s)", untilField, durField)
	}
	if left := end.Sub(now); left < minSnooze || left > maxSnooze {
		return time.Time{}, invalid("%s: %s is not between %v and %d days from now", untilField, end.UTC().Format(time.RFC3339Nano), minSnooze, maxSnooze/(24*time.Hour))
	}
	// The store keeps microseconds: answer with the time it keeps.
	return end.UTC().Truncate(time.Microsecond), nil
}

// DeleteNotification implements InboxService.DeleteNotification.
func (x *InboxService) DeleteNotification(ctx context.Context, req *notifyv1.DeleteNotificationRequest) (*notifyv1.DeleteNotificationResponse, error) {
	v, err := x.target(ctx, req.UserId)
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
	return &notifyv1.DeleteNotificationResponse{UnreadCount: n.Unread}, nil
}

// ClearNotifications implements InboxService.ClearNotifications.
func (x *InboxService) ClearNotifications(ctx context.Context, req *notifyv1.ClearNotificationsRequest) (*notifyv1.ClearNotificationsResponse, error) {
	v, err := x.target(ctx, req.UserId)
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
func (x *InboxService) GetPreferences(ctx context.Context, req *notifyv1.GetPreferencesRequest) (*notifyv1.GetPreferencesResponse, error) {
	user, err := x.preferencesOf(ctx, req.UserId)
	if err != nil {
		return nil, toStatusErr(err)
	}
	p, err := x.svc.inbox.Preferences(ctx, user)
	if err != nil {
		return nil, toStatusErr(inboxErr(err, ""))
	}
	return &notifyv1.GetPreferencesResponse{Preferences: toProtoPrefs(p)}, nil
}

// UpdatePreferences implements InboxService.UpdatePreferences. The new
// mutes apply at once to the user's open streams on this node.
func (x *InboxService) UpdatePreferences(ctx context.Context, req *notifyv1.UpdatePreferencesRequest) (*notifyv1.UpdatePreferencesResponse, error) {
	user, err := x.preferencesOf(ctx, req.UserId)
	if err != nil {
		return nil, toStatusErr(err)
	}
	if req.Preferences == nil {
		return nil, toStatusErr(invalid("preferences: required"))
	}
	p := store.Preferences{Enabled: req.Preferences.Enabled, Sound: req.Preferences.Sound, Email: req.Preferences.Email, Muted: []string{}}
	for _, t := range req.Preferences.MutedTypes {
		if !known(notifyv1.EventType_name, int32(t)) {
			return nil, toStatusErr(invalid("preferences.muted_types: %d is not a known event type", t))
		}
		if name := typeName(t); !slices.Contains(p.Muted, name) {
			p.Muted = append(p.Muted, name)
		}
	}
	slices.Sort(p.Muted)
	if err := timingFromProto(req.Preferences, &p); err != nil {
		return nil, toStatusErr(err)
	}
	if err := x.svc.inbox.SetPreferences(ctx, user, p); err != nil {
		return nil, toStatusErr(inboxErr(err, ""))
	}
	x.svc.hub.Each(user, func(sub *hub.Subscriber) { applyPreferences(sub, p) })
	return &notifyv1.UpdatePreferencesResponse{Preferences: toProtoPrefs(p)}, nil
}

func toProtoPrefs(p store.Preferences) *notifyv1.Preferences {
	out := &notifyv1.Preferences{Enabled: p.Enabled, Sound: p.Sound, Email: p.Email}
	for _, m := range p.Muted {
		out.MutedTypes = append(out.MutedTypes, typeByName(m))
	}
	timingToProto(p, out)
	return out
}

// inboxErr names the request field a store's invalid-argument or not-found
// error is about.
func inboxErr(err error, field string) error {
	switch {
	case errors.Is(err, store.ErrInvalid) && field != "":
		return invalid("%s: %v", field, err)
	case errors.Is(err, store.ErrNotFound) && field != "":
		return fmt.Errorf("%w: %s: no such notification in the inbox", ErrNotFound, field)
	}
	return err
}
