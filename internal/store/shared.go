package store

import (
	"context"
	"time"
)

// shared is the method set SQLite and Postgres have in common, embedded in
// both: each method runs the core's SQL on the store's engine.
type shared struct {
	c core
}

// Insert stores items in one transaction: all or none. An item whose owner
// and event id are already stored is skipped. An empty Owner, EventID or
// EventType is ErrInvalid and nothing is stored.
//
// The transaction is shared with the Insert calls of other goroutines
// waiting at the same time (group commit): Insert returns nil once it is
// committed (on SQLite, synced to disk), and an error when items were not stored;
// another call's failure never fails this one. When ctx ends while the call
// waits, Insert returns ctx's error at once, and the items are then either
// not stored or stored by the shared transaction that was already under
// way: repeat the call (duplicates are skipped) to know which.
func (s *shared) Insert(ctx context.Context, items []NewItem) error {
	return s.c.insert(ctx, items)
}

// List returns up to q.Limit of the viewer's items matching q, newest
// first or by priority, and the cursor of the next page ("" on the last
// page). Expired items are never listed. A malformed cursor (or one of the
// other order), a limit outside 1..MaxPageSize or a bad filter is
// ErrInvalid.
func (s *shared) List(ctx context.Context, v Viewer, q ListQuery) ([]Item, string, error) {
	return s.c.list(ctx, v, q)
}

// UnreadCount returns how many items of the viewer's inbox (neither
// archived nor snoozed) are unread.
func (s *shared) UnreadCount(ctx context.Context, v Viewer) (int64, error) {
	return s.c.unreadCount(ctx, v)
}

// UnreadCounts counts the unseen and unread items of several users'
// inboxes in one query (Counts.Unseen and Counts.Unread only).
func (s *shared) UnreadCounts(ctx context.Context, users []string) (map[string]Counts, error) {
	return s.c.unreadCounts(ctx, users)
}

// Badge counts the unseen and unread items of the viewer's inbox
// (Counts.Unseen and Counts.Unread only), with the indexes made for it.
func (s *shared) Badge(ctx context.Context, v Viewer) (Counts, error) {
	return s.c.badgeOf(ctx, v)
}

// Counts counts the viewer's items per state.
func (s *shared) Counts(ctx context.Context, v Viewer) (Counts, error) {
	return s.c.counts(ctx, v)
}

// Update applies ch to 1..MaxMarkIDs items at once, in one transaction.
// If any id is not an item the viewer sees, it returns ErrNotFound and
// changes nothing; a malformed id, an unknown action or a snooze that does
// not end after now is ErrInvalid. Items whose state already is what ch
// makes it keep their times.
func (s *shared) Update(ctx context.Context, v Viewer, ids []string, ch Change) error {
	return s.c.update(ctx, "update", v, ids, ch)
}

// UpdateWhere applies ch to every item of the viewer matching f, in one
// transaction, and returns how many changed.
func (s *shared) UpdateWhere(ctx context.Context, v Viewer, f Filter, ch Change) (int64, error) {
	return s.c.updateWhere(ctx, "update where", v, f, ch)
}

// NextWake returns the earliest time after after when a snooze ends or an
// item expires, of any viewer; false when there is none.
func (s *shared) NextWake(ctx context.Context, after time.Time) (time.Time, bool, error) {
	return s.c.nextWake(ctx, after)
}

// SnoozesEnded returns, in (Until, ID, User) order, up to limit
// (1..MaxEnded) snoozes that ended after the mark and at or before until,
// of items still in their viewer's inbox. Page on with the last one's Mark.
func (s *shared) SnoozesEnded(ctx context.Context, after SnoozeMark, until time.Time, limit int) ([]Returned, error) {
	return s.c.snoozesEnded(ctx, after, until, limit)
}

// ExpiredOwners returns the owners of items that expired after after and
// at or before until.
func (s *shared) ExpiredOwners(ctx context.Context, after, until time.Time) ([]string, error) {
	return s.c.expiredOwners(ctx, after, until)
}

// MarkRead sets the viewer's read state of 1..MaxMarkIDs items at once. If
// any id is not an item the viewer sees, it returns ErrNotFound and changes
// nothing; a malformed id is ErrInvalid.
func (s *shared) MarkRead(ctx context.Context, v Viewer, ids []string, read bool) error {
	return s.c.markRead(ctx, v, ids, read)
}

// MarkAllRead marks every item of the viewer's inbox (neither archived nor
// snoozed) read and returns how many changed.
func (s *shared) MarkAllRead(ctx context.Context, v Viewer) (int64, error) {
	return s.c.markAllRead(ctx, v)
}

// Delete removes the item from the viewer's inbox; a shared item is hidden
// for this viewer only. An id the viewer does not see is ErrNotFound.
func (s *shared) Delete(ctx context.Context, v Viewer, id string) error {
	return s.c.delete(ctx, v, id)
}

// Clear removes every item from the viewer's inbox (shared items only for
// this viewer) and returns how many it removed.
func (s *shared) Clear(ctx context.Context, v Viewer) (int64, error) {
	return s.c.clear(ctx, v)
}

// Preferences returns the user's preferences, or DefaultPreferences if none
// were set.
func (s *shared) Preferences(ctx context.Context, userID string) (Preferences, error) {
	return s.c.preferences(ctx, userID)
}

// SetPreferences replaces the user's preferences. Muted is stored sorted and
// without repeats; an empty muted type is ErrInvalid.
func (s *shared) SetPreferences(ctx context.Context, userID string, p Preferences) error {
	return s.c.setPreferences(ctx, userID, p)
}

// HasEventFrom reports whether owner has, or had, an item from
// restaurant: one not pruned yet, deleted or not.
func (s *shared) HasEventFrom(ctx context.Context, owner, restaurant string) (bool, error) {
	return s.c.hasEventFrom(ctx, owner, restaurant)
}

// Prune deletes items created before now-maxAge, items expired at now
// (unless now is zero) and, per owner, all but the newest maxPerOwner
// items, with their per-viewer state; a zero bound is disabled. It returns
// how many items it deleted.
func (s *shared) Prune(ctx context.Context, maxPerOwner int, maxAge time.Duration, now time.Time) (int64, error) {
	return s.c.prune(ctx, maxPerOwner, maxAge, now)
}

// InsertWith is Insert with hook run in the same transaction after the
// rows are written, so that what the hook does (River jobs, timeline rows)
// commits with them or not at all. With no items the hook still runs.
func (s *shared) InsertWith(ctx context.Context, items []NewItem, hook InsertHook) error {
	return s.c.insertWith(ctx, items, hook)
}

// InTx runs fn in a write transaction of its own, committed when fn
// returns nil.
func (s *shared) InTx(ctx context.Context, fn func(ctx context.Context, tx *Tx) error) error {
	return s.c.inTx(ctx, fn)
}

// RegisterDevice stores a user's device (see Device); a token registered
// before keeps its id and moves to d's user. A user has at most
// MaxDevicesPerUser devices.
func (s *shared) RegisterDevice(ctx context.Context, d Device) (Device, error) {
	return s.c.registerDevice(ctx, d)
}

// Devices returns a user's devices, oldest first.
func (s *shared) Devices(ctx context.Context, userID string) ([]Device, error) {
	ds, err := s.c.devicesOf(ctx, s.c.eng.reader(), []string{userID})
	return ds, s.c.wrap("devices", err)
}

// Device returns a device by id, ErrNotFound when there is none.
func (s *shared) Device(ctx context.Context, id string) (Device, error) {
	d, err := s.c.device(ctx, s.c.eng.reader(), id)
	return d, s.c.wrap("device", err)
}

// RemoveDevice removes userID's device id ("" userID: whoever owns it);
// ErrNotFound when there is no such device.
func (s *shared) RemoveDevice(ctx context.Context, userID, id string) error {
	return s.c.removeDevice(ctx, userID, id)
}

// Profile returns a user's profile; a user without one gets an empty one.
func (s *shared) Profile(ctx context.Context, userID string) (Profile, error) {
	return s.c.profile(ctx, userID)
}

// UpdateProfile changes the fields of a profile that u sets and returns it.
func (s *shared) UpdateProfile(ctx context.Context, u ProfileUpdate) (Profile, error) {
	return s.c.updateProfile(ctx, u)
}

// DeliveryPolicy returns a user's delivery rules; ok is false when the
// user has set none.
func (s *shared) DeliveryPolicy(ctx context.Context, userID string) ([]DeliveryRule, bool, error) {
	return s.c.deliveryPolicy(ctx, userID)
}

// SetDeliveryPolicy replaces a user's delivery rules.
func (s *shared) SetDeliveryPolicy(ctx context.Context, userID string, rules []DeliveryRule) error {
	return s.c.setDeliveryPolicy(ctx, userID, rules)
}

// AddStatuses records timeline steps in a transaction of their own; a
// second live step for the same event and user is skipped.
func (s *shared) AddStatuses(ctx context.Context, st []Status) error {
	return s.c.wrap("add statuses", s.c.eng.inTx(ctx, func(tx dbtx) error { return s.c.addStatuses(ctx, tx, st) }))
}

// Statuses returns the timelines of 1..MaxStatusEvents events, of one
// user or ("" userID) of everyone, in time order.
func (s *shared) Statuses(ctx context.Context, eventIDs []string, userID string) ([]Status, error) {
	return s.c.statuses(ctx, eventIDs, userID)
}

// LiveDelivered reports whether the event was delivered to one of the
// user's live streams.
func (s *shared) LiveDelivered(ctx context.Context, eventID, userID string) (bool, error) {
	return s.c.liveDelivered(ctx, eventID, userID)
}

// ItemState returns user's state of owner's notification whose row key
// (NewItem.EventID) is key.
func (s *shared) ItemState(ctx context.Context, owner, key, user string) (ItemState, error) {
	return s.c.itemState(ctx, owner, key, user)
}

// QueueStats counts the delivery queue's unfinished jobs per queue.
func (s *shared) QueueStats(ctx context.Context) ([]QueueStat, error) {
	return s.c.queueStats(ctx)
}
