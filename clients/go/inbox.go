package notify

import (
	"context"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	notifyv1 "github.com/maxloyalty/notify/gen/notify/v1"
)

// WithInbox sets how the event is kept in the inboxes it enters: priority,
// category, tags, expiry (ExpireTime or Ttl) and an action. By default the
// server derives priority and category from the event.
func WithInbox(o *notifyv1.InboxOptions) PublishOption {
	return func(r *notifyv1.PublishRequest) { r.Inbox = o }
}

// Inbox is one user's inbox over the client's connection: the caller's own
// (Client.Inbox), or another user's (Client.InboxOf), for services (the
// user's notifications) and admins (another admin's view of the admin
// inbox). Its methods are InboxService calls; errors are gRPC statuses
// (InvalidArgument naming the field, NotFound for an id not in the inbox,
// PermissionDenied for a caller that may not act for the user).
type Inbox struct {
	rpc  notifyv1.InboxServiceClient
	user string // "": the caller's
}

// Inbox returns the caller's own inbox.
func (c *Client) Inbox() *Inbox { return &Inbox{rpc: notifyv1.NewInboxServiceClient(c.conn)} }

// InboxOf returns userID's inbox, for calls on that user's behalf.
func (c *Client) InboxOf(userID string) *Inbox {
	return &Inbox{rpc: notifyv1.NewInboxServiceClient(c.conn), user: userID}
}

// List lists the inbox as req says (its UserId is the Inbox's).
func (in *Inbox) List(ctx context.Context, req *notifyv1.ListNotificationsRequest) (*notifyv1.ListNotificationsResponse, error) {
	if req == nil {
		req = &notifyv1.ListNotificationsRequest{}
	}
	req.UserId = in.user
	return in.rpc.ListNotifications(ctx, req)
}

// Counts counts the inbox's notifications per state.
func (in *Inbox) Counts(ctx context.Context) (*notifyv1.InboxCounts, error) {
	resp, err := in.rpc.GetCounts(ctx, &notifyv1.GetCountsRequest{UserId: in.user})
	return resp.GetCounts(), err
}

// MarkSeen marks notifications seen and returns the new counts.
func (in *Inbox) MarkSeen(ctx context.Context, ids ...string) (*notifyv1.InboxCounts, error) {
	resp, err := in.rpc.MarkSeen(ctx, &notifyv1.MarkSeenRequest{Ids: ids, UserId: in.user})
	return resp.GetCounts(), err
}

// MarkUnseen marks notifications unseen and returns the new counts.
func (in *Inbox) MarkUnseen(ctx context.Context, ids ...string) (*notifyv1.InboxCounts, error) {
	resp, err := in.rpc.MarkUnseen(ctx, &notifyv1.MarkUnseenRequest{Ids: ids, UserId: in.user})
	return resp.GetCounts(), err
}

// MarkRead marks notifications read (and seen) and returns the new unread
// count.
func (in *Inbox) MarkRead(ctx context.Context, ids ...string) (int64, error) {
	resp, err := in.rpc.MarkRead(ctx, &notifyv1.MarkReadRequest{Ids: ids, UserId: in.user})
	return resp.GetUnreadCount(), err
}

// MarkUnread marks notifications unread and returns the new unread count.
func (in *Inbox) MarkUnread(ctx context.Context, ids ...string) (int64, error) {
	resp, err := in.rpc.MarkUnread(ctx, &notifyv1.MarkUnreadRequest{Ids: ids, UserId: in.user})
	return resp.GetUnreadCount(), err
}

// Archive moves notifications out of the inbox, keeping them, and returns
// the new counts.
func (in *Inbox) Archive(ctx context.Context, ids ...string) (*notifyv1.InboxCounts, error) {
	resp, err := in.rpc.Archive(ctx, &notifyv1.ArchiveRequest{Ids: ids, UserId: in.user})
	return resp.GetCounts(), err
}

// Unarchive moves archived notifications back and returns the new counts.
func (in *Inbox) Unarchive(ctx context.Context, ids ...string) (*notifyv1.InboxCounts, error) {
	resp, err := in.rpc.Unarchive(ctx, &notifyv1.UnarchiveRequest{Ids: ids, UserId: in.user})
	return resp.GetCounts(), err
}

// Snooze hides notifications for d (1 s to 366 days); they come back
// unseen and unread, announced on the user's streams (OnInbox). It returns
// when they come back and the new counts.
func (in *Inbox) Snooze(ctx context.Context, d time.Duration, ids ...string) (time.Time, *notifyv1.InboxCounts, error) {
	return in.snooze(ctx, &notifyv1.SnoozeRequest{Ids: ids, Duration: durationpb.New(d), UserId: in.user})
}

// SnoozeUntil hides notifications until t, as Snooze.
func (in *Inbox) SnoozeUntil(ctx context.Context, t time.Time, ids ...string) (time.Time, *notifyv1.InboxCounts, error) {
	return in.snooze(ctx, &notifyv1.SnoozeRequest{Ids: ids, Until: timestamppb.New(t), UserId: in.user})
}

func (in *Inbox) snooze(ctx context.Context, req *notifyv1.SnoozeRequest) (time.Time, *notifyv1.InboxCounts, error) {
	resp, err := in.rpc.Snooze(ctx, req)
	if err != nil {
		return time.Time{}, nil, err
	}
	return resp.Until.AsTime(), resp.Counts, nil
}

// Unsnooze brings snoozed notifications back now and returns the new
// counts.
func (in *Inbox) Unsnooze(ctx context.Context, ids ...string) (*notifyv1.InboxCounts, error) {
	resp, err := in.rpc.Unsnooze(ctx, &notifyv1.UnsnoozeRequest{Ids: ids, UserId: in.user})
	return resp.GetCounts(), err
}

// Bulk applies action to every notification matching filter (nil: the
// inbox) and returns how many changed and the new counts: for example
// INBOX_ACTION_SEEN on the inbox, or INBOX_ACTION_ARCHIVE on
// NOTIFICATION_STATE_READ ("archive all read"). For INBOX_ACTION_SNOOZE,
// use BulkSnooze.
func (in *Inbox) Bulk(ctx context.Context, action notifyv1.InboxAction, filter *notifyv1.InboxFilter) (int64, *notifyv1.InboxCounts, error) {
	resp, err := in.rpc.BulkUpdate(ctx, &notifyv1.BulkUpdateRequest{Filter: filter, Action: action, UserId: in.user})
	return resp.GetChanged(), resp.GetCounts(), err
}

// BulkSnooze snoozes every notification matching filter for d.
func (in *Inbox) BulkSnooze(ctx context.Context, d time.Duration, filter *notifyv1.InboxFilter) (int64, *notifyv1.InboxCounts, error) {
	resp, err := in.rpc.BulkUpdate(ctx, &notifyv1.BulkUpdateRequest{
		Filter: filter, Action: notifyv1.InboxAction_INBOX_ACTION_SNOOZE, SnoozeDuration: durationpb.New(d), UserId: in.user,
	})
	return resp.GetChanged(), resp.GetCounts(), err
}

// Delete removes one notification and returns the new unread count.
func (in *Inbox) Delete(ctx context.Context, id string) (int64, error) {
	resp, err := in.rpc.DeleteNotification(ctx, &notifyv1.DeleteNotificationRequest{Id: id, UserId: in.user})
	return resp.GetUnreadCount(), err
}
