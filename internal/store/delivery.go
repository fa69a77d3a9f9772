package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// Delivery channels as the store names them.
const (
	ChannelWebPush = "webpush"
	ChannelFCM     = "fcm"
	ChannelAPNs    = "apns"
	ChannelEmail   = "email"
	ChannelWebhook = "webhook"
	// ChannelLive is the live stream: a status row of this channel records
	// that an event was delivered to one of the user's streams.
	ChannelLive = "live"
)

// DeviceChannels are the channels whose targets are devices.
var DeviceChannels = []string{ChannelWebPush, ChannelFCM, ChannelAPNs}

// Bounds of delivery data.
const (
	// MaxDevicesPerUser bounds one user's registered devices.
	MaxDevicesPerUser = 20
	// MaxTokenLen bounds a device token or web push endpoint.
	MaxTokenLen = 4096
	// MaxStatusEvents bounds the events of one Statuses call.
	MaxStatusEvents = 100
	// maxRules bounds a delivery policy's rules.
	maxRules = 64
)

// Device is a user's web push subscription or mobile device token.
type Device struct {
	// ID is assigned by the store: opaque and stable while the token is
	// registered.
	ID string
	// UserID owns the device.
	UserID string
	// Channel is ChannelWebPush, ChannelFCM or ChannelAPNs.
	Channel string
	// Token is the web push endpoint URL, the FCM registration token or
	// the APNs device token.
	Token string
	// P256dh and Auth are a web push subscription's keys (base64url).
	P256dh, Auth string
	// Label names the device for its user ("Firefox on Linux").
	Label string
	// CreatedAt and UpdatedAt are when it was first and last registered.
	CreatedAt, UpdatedAt time.Time
}

// Profile is how to reach a user outside the live stream.
type Profile struct {
	UserID string
	// Email is the user's address; "" when none.
	Email string
	// Locale is a BCP 47 language tag; "" is the server's default.
	Locale string
	// Admin records that the user's own token said admin, so that the admin
	// group's notifications reach them.
	Admin bool
}

// ProfileUpdate changes some of a profile's fields: nil fields keep their
// value (a new profile gets "" and false).
type ProfileUpdate struct {
	UserID string
	Email  *string
	Locale *string
	Admin  *bool
}

// DeliveryRule is a user's choice for one event type.
type DeliveryRule struct {
	// EventType is the store's name of the type ("points_added").
	EventType string `json:"type"`
	// On and Off list channels turned on and off for the type; channels in
	// neither keep the server's default.
	On  []string `json:"on,omitempty"`
	Off []string `json:"off,omitempty"`
	// UnseenDelay, when set, sends only if the user has not seen the
	// notification this long after it was published; zero sends at once.
	// Nil keeps the server's default.
	UnseenDelay *time.Duration `json:"unseen_delay,omitempty"`
}

// Status is one step of a delivery's timeline.
type Status struct {
	// ID is unique; empty on input gets a new one.
	ID string
	// EventID is the delivered event's id.
	EventID string
	// UserID is the recipient; "" for the operator's webhooks.
	UserID string
	// Channel is a delivery channel, or ChannelLive.
	Channel string
	// Target names where it went: a device id, a masked address, a webhook.
	Target string
	// State is queued, scheduled, sent, delivered, retrying, failed or
	// cancelled.
	State string
	// At is when the step happened; zero is now.
	At time.Time
	// Attempt is the send attempt the step is about, from 1; 0 before any.
	Attempt int
	// Detail is the provider's answer or the reason, bounded.
	Detail string
	// ProviderID is the provider's id of an accepted message.
	ProviderID string
}

// maxStatusDetail bounds Status.Detail.
const maxStatusDetail = 512

// ItemState is a viewer's state of one inbox notification, as a delayed
// delivery checks it.
type ItemState struct {
	// Found is false when the notification is not stored (pruned, expired).
	Found bool
	// Seen, Read, Archived, Deleted and Snoozed (now) are the viewer's.
	Seen, Read, Archived, Deleted, Snoozed bool
}

// Handled reports whether the user did anything with the notification:
// saw, read, archived, deleted or snoozed it, or it is gone.
func (s ItemState) Handled() bool {
	return !s.Found || s.Seen || s.Read || s.Archived || s.Deleted || s.Snoozed
}

// QueueStat describes one River queue: jobs per state, and how long the
// oldest job that is due (available or retryable) has been due.
type QueueStat struct {
	Queue string
	// Jobs counts the queue's jobs by state (available, scheduled,
	// retryable, running).
	Jobs map[string]int64
	// OldestDue is the age of the oldest due job; zero when none.
	OldestDue time.Duration
}

// InsertHook runs inside Insert's transaction after the rows are written;
// inserted says, per item, whether its row is new (false: a duplicate was
// skipped). An error rolls the whole call back. The hook may run more than
// once for one call (a shared transaction that failed is retried), each
// time in a new transaction.
type InsertHook func(ctx context.Context, tx *Tx, inserted []bool) error

// Tx is one of the store's write transactions, handed to an InsertHook and
// to InTx's function: what is done through it, River jobs inserted with
// SQL or PGX included, commits or rolls back with the transaction.
type Tx struct {
	c   *core
	db  dbtx
	sql *sql.Tx
	pgx pgx.Tx
}

// SQL is the transaction on SQLite; nil on PostgreSQL.
func (t *Tx) SQL() *sql.Tx { return t.sql }

// PGX is the transaction on PostgreSQL; nil on SQLite.
func (t *Tx) PGX() pgx.Tx { return t.pgx }

func (c *core) newTx(db dbtx) *Tx {
	t := &Tx{c: c, db: db}
	switch r := db.(type) {
	case *sqlTxRunner:
		t.sql = r.tx
	case pgxRunner:
		t.pgx, _ = r.q.(pgx.Tx)
	}
	return t
}

// inTx runs fn in a write transaction of its own.
func (c *core) inTx(ctx context.Context, fn func(ctx context.Context, tx *Tx) error) error {
	return c.wrap("transaction", c.eng.inTx(ctx, func(db dbtx) error { return fn(ctx, c.newTx(db)) }))
}

// insertWith is insert with a hook run in the same transaction; with no
// items the hook still runs, in a transaction of its own or shared.
func (c *core) insertWith(ctx context.Context, items []NewItem, hook InsertHook) error {
	if hook == nil {
		return c.insert(ctx, items)
	}
	items, err := checkNewItems(items, c.now())
	if err != nil {
		return c.wrap("insert", err)
	}
	run := func(ctx context.Context, db dbtx) error {
		inserted, err := c.writeItemsReport(ctx, db, items)
		if err != nil {
			return err
		}
		return hook(ctx, c.newTx(db), inserted)
	}
	if c.gc == nil {
		err = c.eng.inTx(ctx, func(db dbtx) error { return run(ctx, db) })
	} else {
		err = c.gc.insertFunc(ctx, items, run)
	}
	return c.wrap("insert", err)
}

// writeItemsReport is writeItems, saying which rows are new.
func (c *core) writeItemsReport(ctx context.Context, tx dbtx, items []NewItem) ([]bool, error) {
	inserted := make([]bool, len(items))
	for i, it := range items {
		var expires any
		if !it.ExpiresAt.IsZero() {
			expires = c.eng.timeArg(it.ExpiresAt)
		}
		n, err := tx.exec(ctx, c.insertSQL, it.Owner, it.EventID, it.EventType, it.Event, c.eng.timeArg(it.CreatedAt), it.Restaurant,
			int64(it.Priority), it.Category, strings.Join(it.Tags, ","), expires, it.Action)
		if err != nil {
			return nil, fmt.Errorf("item %d: %w", i, err)
		}
		inserted[i] = n > 0
		if c.afterInsert != nil {
			if err := c.afterInsert(ctx, i); err != nil {
				return nil, fmt.Errorf("item %d: %w", i, err)
			}
		}
	}
	return inserted, nil
}

// Devices returns the devices of users, by user then creation.
func (t *Tx) Devices(ctx context.Context, users []string) ([]Device, error) {
	return t.c.devicesOf(ctx, t.db, users)
}

// Device returns one device by id; ErrNotFound when there is none.
func (t *Tx) Device(ctx context.Context, id string) (Device, error) {
	return t.c.device(ctx, t.db, id)
}

// Profiles returns the profiles of users that have one.
func (t *Tx) Profiles(ctx context.Context, users []string) (map[string]Profile, error) {
	return t.c.profilesOf(ctx, t.db, users)
}

// Admins returns the users whose profile says admin.
func (t *Tx) Admins(ctx context.Context) ([]string, error) {
	return t.c.admins(ctx, t.db)
}

// Policies returns the delivery rules of users that have some.
func (t *Tx) Policies(ctx context.Context, users []string) (map[string][]DeliveryRule, error) {
	return t.c.policiesOf(ctx, t.db, users)
}

// EmailOptIns returns the users who turned email on in their
// preferences (Preferences.Email).
func (t *Tx) EmailOptIns(ctx context.Context, users []string) (map[string]bool, error) {
	out := map[string]bool{}
	if len(users) == 0 {
		return out, nil
	}
	b := t.c.qb()
	r, err := t.db.query(ctx, "SELECT user_id FROM preferences WHERE email = TRUE AND "+b.inStrings("user_id", users), b.args...)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	for r.Next() {
		var u string
		if err := r.Scan(&u); err != nil {
			return nil, err
		}
		out[u] = true
	}
	return out, r.Err()
}

// AddStatuses records timeline steps.
func (t *Tx) AddStatuses(ctx context.Context, st []Status) error {
	return t.c.addStatuses(ctx, t.db, st)
}

// RemoveDevice removes a device by id, whoever owns it; a device already
// gone is not an error.
func (t *Tx) RemoveDevice(ctx context.Context, id string) error {
	b := t.c.qb()
	_, err := t.db.exec(ctx, "DELETE FROM devices WHERE id = "+b.arg(id), b.args...)
	return err
}

// registerDevice stores d for its user: a token already registered (by
// this user or another) is updated and moves to d's user, keeping its id.
func (c *core) registerDevice(ctx context.Context, d Device) (Device, error) {
	if err := checkDevice(d); err != nil {
		return Device{}, c.wrap("register device", err)
	}
	now := c.now().UTC().Truncate(time.Microsecond)
	var out Device
	err := c.eng.inTx(ctx, func(tx dbtx) error {
		b := c.qb()
		n, err := queryInt64(ctx, tx, "SELECT COUNT(*) FROM devices WHERE user_id = "+b.arg(d.UserID)+
			" AND NOT (channel = "+b.arg(d.Channel)+" AND token = "+b.arg(d.Token)+")", b.args...)
		if err != nil {
			return err
		}
		if n >= MaxDevicesPerUser {
			return fmt.Errorf("%w: %s has %d devices, at most %d: remove one first", ErrInvalid, d.UserID, n, MaxDevicesPerUser)
		}
		b = c.qb()
		sql := "INSERT INTO devices (id, user_id, channel, token, p256dh, auth, label, created_at, updated_at) VALUES (" +
			b.arg(uuid.Must(uuid.NewV7()).String()) + ", " + b.arg(d.UserID) + ", " + b.arg(d.Channel) + ", " + b.arg(d.Token) + ", " +
			b.arg(d.P256dh) + ", " + b.arg(d.Auth) + ", " + b.arg(d.Label) + ", " + b.arg(c.eng.timeArg(now)) + ", " + b.arg(c.eng.timeArg(now)) +
			") ON CONFLICT (channel, token) DO UPDATE SET user_id = excluded.user_id, p256dh = excluded.p256dh," +
			" auth = excluded.auth, label = excluded.label, updated_at = excluded.updated_at"
		if _, err := tx.exec(ctx, sql, b.args...); err != nil {
			return err
		}
		b = c.qb()
		ds, err := c.scanDevices(ctx, tx, "WHERE channel = "+b.arg(d.Channel)+" AND token = "+b.arg(d.Token), b.args)
		if err != nil {
			return err
		}
		if len(ds) != 1 {
			return errors.New("registered device not found")
		}
		out = ds[0]
		return nil
	})
	return out, c.wrap("register device", err)
}

func checkDevice(d Device) error {
	switch {
	case d.UserID == "":
		return fmt.Errorf("%w: device has no user", ErrInvalid)
	case !slices.Contains(DeviceChannels, d.Channel):
		return fmt.Errorf("%w: %q is not a device channel", ErrInvalid, d.Channel)
	case d.Token == "" || len(d.Token) > MaxTokenLen:
		return fmt.Errorf("%w: token must be 1 to %d bytes", ErrInvalid, MaxTokenLen)
	case len(d.P256dh) > 256 || len(d.Auth) > 256 || len(d.Label) > 256:
		return fmt.Errorf("%w: keys and label are at most 256 bytes", ErrInvalid)
	}
	return nil
}

const deviceCols = "id, user_id, channel, token, p256dh, auth, label, created_at, updated_at"

func (c *core) scanDevices(ctx context.Context, db dbtx, where string, args []any) ([]Device, error) {
	r, err := db.query(ctx, "SELECT "+deviceCols+" FROM devices "+where, args...)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	var out []Device
	for r.Next() {
		var d Device
		created, updated := c.eng.newTimeDest(), c.eng.newTimeDest()
		if err := r.Scan(&d.ID, &d.UserID, &d.Channel, &d.Token, &d.P256dh, &d.Auth, &d.Label, created.dest(), updated.dest()); err != nil {
			return nil, err
		}
		d.CreatedAt, d.UpdatedAt = created.value(), updated.value()
		out = append(out, d)
	}
	return out, r.Err()
}

func (c *core) devicesOf(ctx context.Context, db dbtx, users []string) ([]Device, error) {
	if len(users) == 0 {
		return nil, nil
	}
	b := c.qb()
	return c.scanDevices(ctx, db, "WHERE "+b.inStrings("user_id", users)+" ORDER BY user_id, created_at, id", b.args)
}

func (c *core) device(ctx context.Context, db dbtx, id string) (Device, error) {
	b := c.qb()
	ds, err := c.scanDevices(ctx, db, "WHERE id = "+b.arg(id), b.args)
	if err != nil {
		return Device{}, err
	}
	if len(ds) == 0 {
		return Device{}, fmt.Errorf("device %q: %w", id, ErrNotFound)
	}
	return ds[0], nil
}

// removeDevice removes the device id of userID ("" for any user).
func (c *core) removeDevice(ctx context.Context, userID, id string) error {
	b := c.qb()
	sql := "DELETE FROM devices WHERE id = " + b.arg(id)
	if userID != "" {
		sql += " AND user_id = " + b.arg(userID)
	}
	var n int64
	err := c.eng.inTx(ctx, func(tx dbtx) error {
		var err error
		n, err = tx.exec(ctx, sql, b.args...)
		return err
	})
	if err == nil && n == 0 {
		err = fmt.Errorf("device %q: %w", id, ErrNotFound)
	}
	return c.wrap("remove device", err)
}

const profileCols = "user_id, email, locale, is_admin"

func (c *core) profilesOf(ctx context.Context, db dbtx, users []string) (map[string]Profile, error) {
	out := map[string]Profile{}
	if len(users) == 0 {
		return out, nil
	}
	b := c.qb()
	r, err := db.query(ctx, "SELECT "+profileCols+" FROM delivery_profiles WHERE "+b.inStrings("user_id", users), b.args...)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	for r.Next() {
		var p Profile
		if err := r.Scan(&p.UserID, &p.Email, &p.Locale, &p.Admin); err != nil {
			return nil, err
		}
		out[p.UserID] = p
	}
	return out, r.Err()
}

func (c *core) admins(ctx context.Context, db dbtx) ([]string, error) {
	r, err := db.query(ctx, "SELECT user_id FROM delivery_profiles WHERE is_admin = TRUE ORDER BY user_id")
	if err != nil {
		return nil, err
	}
	defer r.Close()
	var out []string
	for r.Next() {
		var u string
		if err := r.Scan(&u); err != nil {
			return nil, err
		}
		out = append(out, u)
	}
	return out, r.Err()
}

func (c *core) profile(ctx context.Context, userID string) (Profile, error) {
	if userID == "" {
		return Profile{}, c.wrap("profile", fmt.Errorf("%w: empty user id", ErrInvalid))
	}
	ps, err := c.profilesOf(ctx, c.eng.reader(), []string{userID})
	if err != nil {
		return Profile{}, c.wrap("profile", err)
	}
	p, ok := ps[userID]
	if !ok {
		p.UserID = userID
	}
	return p, nil
}

// MaxEmailLen bounds a profile's address (RFC 5321's path limit).
const MaxEmailLen = 254

func (c *core) updateProfile(ctx context.Context, u ProfileUpdate) (Profile, error) {
	switch {
	case u.UserID == "":
		return Profile{}, c.wrap("update profile", fmt.Errorf("%w: empty user id", ErrInvalid))
	case u.Email != nil && len(*u.Email) > MaxEmailLen:
		return Profile{}, c.wrap("update profile", fmt.Errorf("%w: email is longer than %d bytes", ErrInvalid, MaxEmailLen))
	case u.Locale != nil && len(*u.Locale) > 35:
		return Profile{}, c.wrap("update profile", fmt.Errorf("%w: locale is longer than 35 bytes", ErrInvalid))
	}
	now := c.now().UTC().Truncate(time.Microsecond)
	var out Profile
	err := c.eng.inTx(ctx, func(tx dbtx) error {
		ps, err := c.profilesOf(ctx, tx, []string{u.UserID})
		if err != nil {
			return err
		}
		p := ps[u.UserID]
		p.UserID = u.UserID
		if u.Email != nil {
			p.Email = *u.Email
		}
		if u.Locale != nil {
			p.Locale = *u.Locale
		}
		if u.Admin != nil {
			p.Admin = *u.Admin
		}
		b := c.qb()
		sql := "INSERT INTO delivery_profiles (user_id, email, locale, is_admin, updated_at) VALUES (" +
			b.arg(p.UserID) + ", " + b.arg(p.Email) + ", " + b.arg(p.Locale) + ", " + boolLit(p.Admin) + ", " + b.arg(c.eng.timeArg(now)) +
			") ON CONFLICT (user_id) DO UPDATE SET email = excluded.email, locale = excluded.locale," +
			" is_admin = excluded.is_admin, updated_at = excluded.updated_at"
		if _, err := tx.exec(ctx, sql, b.args...); err != nil {
			return err
		}
		out = p
		return nil
	})
	return out, c.wrap("update profile", err)
}

func (c *core) policiesOf(ctx context.Context, db dbtx, users []string) (map[string][]DeliveryRule, error) {
	out := map[string][]DeliveryRule{}
	if len(users) == 0 {
		return out, nil
	}
	b := c.qb()
	r, err := db.query(ctx, "SELECT user_id, rules FROM delivery_policies WHERE "+b.inStrings("user_id", users), b.args...)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	for r.Next() {
		var user, rules string
		if err := r.Scan(&user, &rules); err != nil {
			return nil, err
		}
		var rs []DeliveryRule
		if err := json.Unmarshal([]byte(rules), &rs); err != nil {
			return nil, fmt.Errorf("delivery policy of %s: %w", user, err)
		}
		out[user] = rs
	}
	return out, r.Err()
}

// deliveryPolicy returns a user's rules; ok is false when the user has set
// none.
func (c *core) deliveryPolicy(ctx context.Context, userID string) ([]DeliveryRule, bool, error) {
	if userID == "" {
		return nil, false, c.wrap("delivery policy", fmt.Errorf("%w: empty user id", ErrInvalid))
	}
	m, err := c.policiesOf(ctx, c.eng.reader(), []string{userID})
	if err != nil {
		return nil, false, c.wrap("delivery policy", err)
	}
	rs, ok := m[userID]
	return rs, ok, nil
}

func (c *core) setDeliveryPolicy(ctx context.Context, userID string, rules []DeliveryRule) error {
	if err := checkRules(userID, rules); err != nil {
		return c.wrap("set delivery policy", err)
	}
	if rules == nil {
		rules = []DeliveryRule{}
	}
	js, err := json.Marshal(rules)
	if err != nil {
		return c.wrap("set delivery policy", err)
	}
	now := c.now().UTC().Truncate(time.Microsecond)
	err = c.eng.inTx(ctx, func(tx dbtx) error {
		b := c.qb()
		_, err := tx.exec(ctx, "INSERT INTO delivery_policies (user_id, rules, updated_at) VALUES ("+b.arg(userID)+", "+
			b.arg(string(js))+", "+b.arg(c.eng.timeArg(now))+") ON CONFLICT (user_id) DO UPDATE SET rules = excluded.rules,"+
			" updated_at = excluded.updated_at", b.args...)
		return err
	})
	return c.wrap("set delivery policy", err)
}

func checkRules(userID string, rules []DeliveryRule) error {
	if userID == "" {
		return fmt.Errorf("%w: empty user id", ErrInvalid)
	}
	if len(rules) > maxRules {
		return fmt.Errorf("%w: %d rules, at most %d", ErrInvalid, len(rules), maxRules)
	}
	seen := map[string]bool{}
	for i, r := range rules {
		if r.EventType == "" || seen[r.EventType] {
			return fmt.Errorf("%w: rule %d: event type empty or repeated", ErrInvalid, i)
		}
		seen[r.EventType] = true
		for _, ch := range append(slices.Clone(r.On), r.Off...) {
			if ch != ChannelWebPush && ch != ChannelFCM && ch != ChannelAPNs && ch != ChannelEmail {
				return fmt.Errorf("%w: rule %d: %q is not a user channel", ErrInvalid, i, ch)
			}
		}
		if r.UnseenDelay != nil && (*r.UnseenDelay < 0 || *r.UnseenDelay > 7*24*time.Hour) {
			return fmt.Errorf("%w: rule %d: unseen delay must be 0 to 7 days", ErrInvalid, i)
		}
	}
	return nil
}

const statusCols = "id, event_id, user_id, channel, target, state, at, attempt, detail, provider_id"

func (c *core) addStatuses(ctx context.Context, db dbtx, st []Status) error {
	now := c.now()
	for _, s := range st {
		if s.EventID == "" || s.Channel == "" || s.State == "" {
			return fmt.Errorf("%w: status without event, channel or state", ErrInvalid)
		}
		if s.ID == "" {
			s.ID = uuid.Must(uuid.NewV7()).String()
		}
		if s.At.IsZero() {
			s.At = now
		}
		b := c.qb()
		sql := "INSERT INTO delivery_status (" + statusCols + ") VALUES (" + b.arg(s.ID) + ", " + b.arg(s.EventID) + ", " +
			b.arg(s.UserID) + ", " + b.arg(s.Channel) + ", " + b.arg(s.Target) + ", " + b.arg(s.State) + ", " +
			b.arg(c.eng.timeArg(s.At.UTC().Truncate(time.Microsecond))) + ", " + b.arg(int64(s.Attempt)) + ", " +
			b.arg(boundText(s.Detail, maxStatusDetail)) + ", " + b.arg(boundText(s.ProviderID, maxStatusDetail)) + ") ON CONFLICT DO NOTHING"
		if _, err := db.exec(ctx, sql, b.args...); err != nil {
			return err
		}
	}
	return nil
}

// boundText cuts s to at most n bytes on a rune boundary.
func boundText(s string, n int) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	if len(s) <= n {
		return s
	}
	for n > 0 && s[n]&0xC0 == 0x80 {
		n--
	}
	return s[:n]
}

// statuses returns the timelines of events, of one user ("" for all), in
// time order.
func (c *core) statuses(ctx context.Context, eventIDs []string, userID string) ([]Status, error) {
	if len(eventIDs) == 0 || len(eventIDs) > MaxStatusEvents {
		return nil, c.wrap("statuses", fmt.Errorf("%w: give 1 to %d event ids", ErrInvalid, MaxStatusEvents))
	}
	b := c.qb()
	sql := "SELECT " + statusCols + " FROM delivery_status WHERE " + b.inStrings("event_id", eventIDs)
	if userID != "" {
		sql += " AND user_id = " + b.arg(userID)
	}
	sql += " ORDER BY event_id, at, id"
	r, err := c.eng.reader().query(ctx, sql, b.args...)
	if err != nil {
		return nil, c.wrap("statuses", err)
	}
	defer r.Close()
	var out []Status
	for r.Next() {
		var s Status
		var attempt int64
		at := c.eng.newTimeDest()
		if err := r.Scan(&s.ID, &s.EventID, &s.UserID, &s.Channel, &s.Target, &s.State, at.dest(), &attempt, &s.Detail, &s.ProviderID); err != nil {
			return nil, c.wrap("statuses", err)
		}
		s.At, s.Attempt = at.value(), int(attempt)
		out = append(out, s)
	}
	return out, c.wrap("statuses", r.Err())
}

// liveDelivered reports whether the event was delivered to one of the
// user's live streams (a ChannelLive status).
func (c *core) liveDelivered(ctx context.Context, eventID, userID string) (bool, error) {
	b := c.qb()
	n, err := queryInt64(ctx, c.eng.reader(), "SELECT COUNT(*) FROM delivery_status WHERE event_id = "+b.arg(eventID)+
		" AND user_id = "+b.arg(userID)+" AND channel = "+b.arg(ChannelLive), b.args...)
	return n > 0, c.wrap("live delivered", err)
}

// itemState returns user's state of the notification of owner with the
// row key key (NewItem.EventID).
func (c *core) itemState(ctx context.Context, owner, key, user string) (ItemState, error) {
	now := c.now().UTC().Truncate(time.Microsecond)
	b := c.qb()
	query := "SELECT i.is_seen, i.is_read, i.is_deleted, i.archived_at, i.snoozed_until," +
		" s.is_seen, s.is_read, s.is_deleted, s.archived_at, s.snoozed_until" +
		" FROM inbox_items i LEFT JOIN inbox_state s ON s.item_id = i.id AND s.user_id = " + b.arg(user) +
		" WHERE i.owner = " + b.arg(owner) + " AND i.event_id = " + b.arg(key) +
		" AND (i.expires_at IS NULL OR i.expires_at > " + b.arg(c.eng.timeArg(now)) + ")"
	r, err := c.eng.reader().query(ctx, query, b.args...)
	if err != nil {
		return ItemState{}, c.wrap("item state", err)
	}
	defer r.Close()
	var st ItemState
	if r.Next() {
		var (
			seen, read, deleted    bool
			sSeen, sRead, sDeleted sql.NullBool
			times                  [4]timeDest
		)
		for i := range times {
			times[i] = c.eng.newNullTimeDest()
		}
		if err := r.Scan(&seen, &read, &deleted, times[0].dest(), times[1].dest(),
			&sSeen, &sRead, &sDeleted, times[2].dest(), times[3].dest()); err != nil {
			return ItemState{}, c.wrap("item state", err)
		}
		st.Found = true
		archived, snoozed := times[0].value(), times[1].value()
		if owner != user {
			// A shared row: the viewer's own state, none when no row.
			seen, read, deleted = sSeen.Bool, sRead.Bool, sDeleted.Bool
			archived, snoozed = times[2].value(), times[3].value()
		}
		st.Seen, st.Read, st.Deleted = seen, read, deleted
		st.Archived = !archived.IsZero()
		st.Snoozed = snoozed.After(now)
	}
	return st, c.wrap("item state", r.Err())
}

// queueStats counts River's unfinished jobs per queue and state.
func (c *core) queueStats(ctx context.Context) ([]QueueStat, error) {
	age := "(julianday('now') - julianday(MIN(scheduled_at))) * 86400.0"
	if c.d.dollar {
		age = "EXTRACT(EPOCH FROM now() - MIN(scheduled_at))::float8"
	}
	query := "SELECT queue, state, COUNT(*), CASE WHEN state IN ('available', 'retryable') THEN " + age +
		" ELSE 0 END FROM river_job WHERE state IN ('available', 'scheduled', 'retryable', 'running')" +
		" GROUP BY queue, state ORDER BY queue, state"
	r, err := c.eng.reader().query(ctx, query)
	if err != nil {
		return nil, c.wrap("queue stats", err)
	}
	defer r.Close()
	var out []QueueStat
	for r.Next() {
		var (
			queue, state string
			n            int64
			secs         sql.NullFloat64
		)
		if err := r.Scan(&queue, &state, &n, &secs); err != nil {
			return nil, c.wrap("queue stats", err)
		}
		if len(out) == 0 || out[len(out)-1].Queue != queue {
			out = append(out, QueueStat{Queue: queue, Jobs: map[string]int64{}})
		}
		q := &out[len(out)-1]
		q.Jobs[state] = n
		if d := time.Duration(secs.Float64 * float64(time.Second)); d > q.OldestDue {
			q.OldestDue = d
		}
	}
	return out, c.wrap("queue stats", r.Err())
}

// pruneStatuses deletes timeline rows older than cut.
func (c *core) pruneStatuses(ctx context.Context, tx dbtx, cut time.Time) (int64, error) {
	b := c.qb()
	return tx.exec(ctx, "DELETE FROM delivery_status WHERE at < "+b.arg(c.eng.timeArg(cut)), b.args...)
}
