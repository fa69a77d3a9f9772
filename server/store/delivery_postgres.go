package store

import "context"

// InsertWith is Insert with hook run in the same transaction after the
// rows are written, so that what the hook does (River jobs, timeline rows)
// commits with them or not at all. With no items the hook still runs.
func (s *Postgres) InsertWith(ctx context.Context, items []NewItem, hook InsertHook) error {
	return s.c.insertWith(ctx, items, hook)
}

// InTx runs fn in a write transaction of its own, committed when fn
// returns nil.
func (s *Postgres) InTx(ctx context.Context, fn func(ctx context.Context, tx *Tx) error) error {
	return s.c.inTx(ctx, fn)
}

// RegisterDevice stores a user's device (see Device); a token registered
// before keeps its id and moves to d's user. A user has at most
// MaxDevicesPerUser devices.
func (s *Postgres) RegisterDevice(ctx context.Context, d Device) (Device, error) {
	return s.c.registerDevice(ctx, d)
}

// Devices returns a user's devices, oldest first.
func (s *Postgres) Devices(ctx context.Context, userID string) ([]Device, error) {
	ds, err := s.c.devicesOf(ctx, s.c.eng.reader(), []string{userID})
	return ds, s.c.wrap("devices", err)
}

// Device returns a device by id, ErrNotFound when there is none.
func (s *Postgres) Device(ctx context.Context, id string) (Device, error) {
	d, err := s.c.device(ctx, s.c.eng.reader(), id)
	return d, s.c.wrap("device", err)
}

// RemoveDevice removes userID's device id ("" userID: whoever owns it);
// ErrNotFound when there is no such device.
func (s *Postgres) RemoveDevice(ctx context.Context, userID, id string) error {
	return s.c.removeDevice(ctx, userID, id)
}

// Profile returns a user's profile; a user without one gets an empty one.
func (s *Postgres) Profile(ctx context.Context, userID string) (Profile, error) {
	return s.c.profile(ctx, userID)
}

// UpdateProfile changes the fields of a profile that u sets and returns it.
func (s *Postgres) UpdateProfile(ctx context.Context, u ProfileUpdate) (Profile, error) {
	return s.c.updateProfile(ctx, u)
}

// DeliveryPolicy returns a user's delivery rules; ok is false when the
// user has set none.
func (s *Postgres) DeliveryPolicy(ctx context.Context, userID string) ([]DeliveryRule, bool, error) {
	return s.c.deliveryPolicy(ctx, userID)
}

// SetDeliveryPolicy replaces a user's delivery rules.
func (s *Postgres) SetDeliveryPolicy(ctx context.Context, userID string, rules []DeliveryRule) error {
	return s.c.setDeliveryPolicy(ctx, userID, rules)
}

// AddStatuses records timeline steps in a transaction of their own; a
// second live step for the same event and user is skipped.
func (s *Postgres) AddStatuses(ctx context.Context, st []Status) error {
	return s.c.wrap("add statuses", s.c.eng.inTx(ctx, func(tx dbtx) error { return s.c.addStatuses(ctx, tx, st) }))
}

// Statuses returns the timelines of 1..MaxStatusEvents events, of one
// user or ("" userID) of everyone, in time order.
func (s *Postgres) Statuses(ctx context.Context, eventIDs []string, userID string) ([]Status, error) {
	return s.c.statuses(ctx, eventIDs, userID)
}

// LiveDelivered reports whether the event was delivered to one of the
// user's live streams.
func (s *Postgres) LiveDelivered(ctx context.Context, eventID, userID string) (bool, error) {
	return s.c.liveDelivered(ctx, eventID, userID)
}

// ItemState returns user's state of owner's notification whose row key
// (NewItem.EventID) is key.
func (s *Postgres) ItemState(ctx context.Context, owner, key, user string) (ItemState, error) {
	return s.c.itemState(ctx, owner, key, user)
}

// QueueStats counts the delivery queue's unfinished jobs per queue.
func (s *Postgres) QueueStats(ctx context.Context) ([]QueueStat, error) {
	return s.c.queueStats(ctx)
}
