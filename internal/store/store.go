package store

import (
	"context"
	"errors"
	"strings"
	"time"
)

// MaxPageSize is the largest ListQuery.Limit accepted.
const MaxPageSize = 200

// MaxMarkIDs is the largest number of ids one MarkRead or Update call
// accepts.
const MaxMarkIDs = 1000

// Sentinel errors. Returned errors wrap them; test with errors.Is.
var (
	// ErrNotFound means an item does not exist or is not visible to the viewer.
	ErrNotFound = errors.New("not found")
	// ErrInvalid means an argument was malformed or out of range.
	ErrInvalid = errors.New("invalid argument")
	// ErrUnavailable means the database could not be reached; the error also
	// wraps the driver's cause.
	ErrUnavailable = errors.New("database unavailable")
)

// Item is one stored notification.
type Item struct {
	// ID is assigned by the store: opaque, unique, increasing with insertion.
	ID string
	// Owner is the user id or group the item belongs to.
	Owner string
	// EventID is the event's id, unique per owner.
	EventID string
	// EventType is the event's type, e.g. "points_added".
	EventType string
	// Event is the encoded event, opaque to the store.
	Event []byte
	// Read is the read state for the viewer who listed the item.
	Read bool
	// CreatedAt is when the event happened, in UTC, with microsecond
	// precision.
	CreatedAt time.Time

	// Seen is whether the viewer was shown the item.
	Seen bool
	// SeenAt and ReadAt are when the viewer saw and read the item; zero
	// when not, or when that happened before the store kept the time.
	SeenAt, ReadAt time.Time
	// ArchivedAt is when the viewer archived the item; zero: not archived.
	ArchivedAt time.Time
	// SnoozedUntil is when the item comes back from the viewer's snooze;
	// zero unless the item is snoozed now.
	SnoozedUntil time.Time
	// Priority is 0 (none) to 4 (critical).
	Priority int
	// Category and Tags are the publisher's labels.
	Category string
	Tags     []string
	// ExpiresAt is when the item leaves the inbox; zero: never.
	ExpiresAt time.Time
	// Action is opaque to the store; nil when there is none.
	Action []byte
}

// Archived reports whether the viewer archived the item.
func (it Item) Archived() bool { return !it.ArchivedAt.IsZero() }

// NewItem is one notification to insert.
type NewItem struct {
	// Owner is a user id or a group name; required.
	Owner string
	// EventID is the event's id; required. A second insert with the same
	// Owner and EventID is skipped.
	EventID string
	// EventType is the event's type; required.
	EventType string
	// Event is the encoded event; nil is stored as empty.
	Event []byte
	// CreatedAt is when the event happened; the zero time means now.
	CreatedAt time.Time
	// Restaurant is the restaurant the event is from (its restaurant_id),
	// "" when none; HasEventFrom finds the owner's rows by it.
	Restaurant string
	// Priority is 0 (none) to 4 (critical).
	Priority int
	// Category is a label to filter by, at most MaxLabelLen bytes.
	Category string
	// Tags are up to MaxTags labels, each 1 to MaxLabelLen bytes without
	// a comma.
	Tags []string
	// ExpiresAt is when the item leaves the inbox; zero: never.
	ExpiresAt time.Time
	// Action is stored as is; nil: none.
	Action []byte
}

// Bounds of an item's labels.
const (
	MaxLabelLen = 64
	MaxTags     = 16
	MaxPriority = 4
)

// Viewer says whose inbox is read or changed: the user's own rows plus the
// rows of the listed groups.
type Viewer struct {
	// UserID is the viewing user; required.
	UserID string
	// Groups are the shared owners whose rows the user also sees.
	Groups []string
	// GroupsOnly leaves the user's own rows out: the viewer sees the
	// groups' rows only, with the user's state (someone acting for the
	// user in a shared inbox). Groups must then not be empty.
	GroupsOnly bool
}

// State selects items by the viewer's state of them.
type State int

// States. "The inbox" is the items neither archived nor snoozed.
const (
	// StateInbox is the items in the inbox.
	StateInbox State = iota
	// StateUnseen is the items in the inbox the viewer has not seen.
	StateUnseen
	// StateUnread is the items in the inbox the viewer has not read.
	StateUnread
	// StateRead is the items in the inbox the viewer has read.
	StateRead
	// StateArchived is the items the viewer archived.
	StateArchived
	// StateSnoozed is the items snoozed now.
	StateSnoozed
	// StateAll is every item the viewer sees.
	StateAll
)

// Order is the order of a list.
type Order int

// Orders.
const (
	// OrderNewest lists newest first (by id).
	OrderNewest Order = iota
	// OrderPriority lists highest priority first, newest first within one.
	OrderPriority
)

// Filter selects some of a viewer's items.
type Filter struct {
	// State is the items' state; the zero value is StateInbox.
	State State
	// Types, Categories and Priorities, when not empty, keep only items
	// with one of these values.
	Types      []string
	Categories []string
	Priorities []int
}

// ListQuery selects one page of a viewer's inbox.
type ListQuery struct {
	// Cursor is the next value of a previous page of the same order; ""
	// asks for the first page.
	Cursor string
	// Limit is the page size, 1..MaxPageSize.
	Limit int
	// UnreadOnly drops items the viewer has read.
	UnreadOnly bool
	// Types, when not empty, keeps only items of these event types.
	Types []string
	// State, Categories and Priorities select as in Filter.
	State      State
	Categories []string
	Priorities []int
	// Order is the list's order.
	Order Order
}

func (q ListQuery) filter() Filter {
	return Filter{State: q.State, Types: q.Types, Categories: q.Categories, Priorities: q.Priorities}
}

// Action is a change of the viewer's state of items.
type Action int

// Actions.
const (
	// ActionSeen marks items seen.
	ActionSeen Action = iota + 1
	// ActionUnseen marks items unseen.
	ActionUnseen
	// ActionRead marks items read, and seen.
	ActionRead
	// ActionUnread marks items unread.
	ActionUnread
	// ActionArchive archives items, ending their snooze.
	ActionArchive
	// ActionUnarchive moves archived items back to the inbox.
	ActionUnarchive
	// ActionSnooze hides items until Change.Until, marking them unseen
	// and unread (as they come back) and out of the archive.
	ActionSnooze
	// ActionUnsnooze ends items' snooze now.
	ActionUnsnooze
	// ActionDelete removes items from the viewer's inbox.
	ActionDelete
)

// Change is an action with its argument.
type Change struct {
	Action Action
	// Until is when snoozed items come back: ActionSnooze only, after now.
	Until time.Time
}

// Counts are a viewer's items per state.
type Counts struct {
	// Unseen and Unread count the items in the inbox.
	Unseen, Unread int64
	// Archived and Snoozed count the items out of the inbox.
	Archived, Snoozed int64
	// Inbox counts the items in the inbox.
	Inbox int64
}

// Returned is an item whose snooze ended, for the viewer whose snooze it
// was: its owner, or a member of the group that owns it.
type Returned struct {
	// User is the viewer.
	User string
	// ID is the item's id.
	ID string
	// Until is when the snooze ended.
	Until time.Time
	// Event is the encoded event.
	Event []byte
}

// SnoozeMark is a place in the order of ended snoozes (Until, ID, User),
// for paging through them: the last Returned of a page. A mark with an
// empty ID stands before every snooze that ended after At.
type SnoozeMark struct {
	At   time.Time
	ID   string
	User string
}

// Mark returns the place of r.
func (r Returned) Mark() SnoozeMark { return SnoozeMark{At: r.Until, ID: r.ID, User: r.User} }

// Preferences are one user's notification settings.
type Preferences struct {
	// Enabled turns notifications on.
	Enabled bool
	// Sound plays a sound on arrival.
	Sound bool
	// Email also sends notifications by email.
	Email bool
	// Muted lists muted event types, sorted and unique.
	Muted []string
	// TimeZone is the user's IANA time zone; "" is UTC.
	TimeZone string
	// Quiet are the user's quiet hours in TimeZone; nil: none.
	Quiet *QuietHours
	// Digests are the user's digest rules, by event type (timing.go).
	Digests []DigestRule
}

// DefaultPreferences returns the preferences of a user who never set any.
func DefaultPreferences() Preferences {
	return Preferences{Enabled: true, Sound: true, Email: false, Muted: []string{}, Digests: []DigestRule{}}
}

// Store is the method set shared by *SQLite and *Postgres.
type Store interface {
	// Insert stores items in one transaction, skipping duplicates.
	Insert(ctx context.Context, items []NewItem) error
	// List returns one page of the viewer's inbox.
	List(ctx context.Context, v Viewer, q ListQuery) (items []Item, next string, err error)
	// UnreadCount counts the unread items of the viewer's inbox.
	UnreadCount(ctx context.Context, v Viewer) (int64, error)
	// UnreadCounts counts the unseen and unread items of the inboxes of up
	// to MaxCountUsers users, their own items only (viewers without
	// groups), in one query; users with none are absent from the result.
	UnreadCounts(ctx context.Context, users []string) (map[string]Counts, error)
	// Badge counts the unseen and unread items of the viewer's inbox.
	Badge(ctx context.Context, v Viewer) (Counts, error)
	// Counts counts the viewer's items per state.
	Counts(ctx context.Context, v Viewer) (Counts, error)
	// MarkRead sets the viewer's read state of the items with these ids.
	MarkRead(ctx context.Context, v Viewer, ids []string, read bool) error
	// MarkAllRead marks every item of the viewer's inbox read.
	MarkAllRead(ctx context.Context, v Viewer) (int64, error)
	// Update applies ch to the viewer's items with these ids.
	Update(ctx context.Context, v Viewer, ids []string, ch Change) error
	// UpdateWhere applies ch to the viewer's items matching f.
	UpdateWhere(ctx context.Context, v Viewer, f Filter, ch Change) (int64, error)
	// Delete removes one item from the viewer's inbox.
	Delete(ctx context.Context, v Viewer, id string) error
	// Clear removes every item from the viewer's inbox.
	Clear(ctx context.Context, v Viewer) (int64, error)
	// NextWake returns the earliest snooze end or expiry after t.
	NextWake(ctx context.Context, after time.Time) (time.Time, bool, error)
	// SnoozesEnded returns the snoozes that ended after a mark and by t.
	SnoozesEnded(ctx context.Context, after SnoozeMark, until time.Time, limit int) ([]Returned, error)
	// ExpiredOwners returns the owners of items that expired in (after, until].
	ExpiredOwners(ctx context.Context, after, until time.Time) ([]string, error)
	// Preferences returns a user's preferences, or the defaults.
	Preferences(ctx context.Context, userID string) (Preferences, error)
	// SetPreferences replaces a user's preferences.
	SetPreferences(ctx context.Context, userID string, p Preferences) error
	// HasEventFrom reports whether owner has, or had, an item from
	// restaurant: one not pruned yet, deleted by the viewer or not.
	HasEventFrom(ctx context.Context, owner, restaurant string) (bool, error)
	// Prune deletes items by age, by count per owner, and expired ones.
	Prune(ctx context.Context, maxPerOwner int, maxAge time.Duration, now time.Time) (int64, error)
	// InsertWith is Insert with a hook in the same transaction.
	InsertWith(ctx context.Context, items []NewItem, hook InsertHook) error
	// InTx runs fn in a write transaction of its own.
	InTx(ctx context.Context, fn func(ctx context.Context, tx *Tx) error) error
	// RegisterDevice stores a user's device.
	RegisterDevice(ctx context.Context, d Device) (Device, error)
	// Devices returns a user's devices.
	Devices(ctx context.Context, userID string) ([]Device, error)
	// Device returns a device by id.
	Device(ctx context.Context, id string) (Device, error)
	// RemoveDevice removes a user's device.
	RemoveDevice(ctx context.Context, userID, id string) error
	// Profile returns a user's profile.
	Profile(ctx context.Context, userID string) (Profile, error)
	// UpdateProfile changes some fields of a profile.
	UpdateProfile(ctx context.Context, u ProfileUpdate) (Profile, error)
	// DeliveryPolicy returns a user's delivery rules.
	DeliveryPolicy(ctx context.Context, userID string) ([]DeliveryRule, bool, error)
	// SetDeliveryPolicy replaces a user's delivery rules.
	SetDeliveryPolicy(ctx context.Context, userID string, rules []DeliveryRule) error
	// AddStatuses records delivery timeline steps.
	AddStatuses(ctx context.Context, st []Status) error
	// Statuses returns the timelines of events.
	Statuses(ctx context.Context, eventIDs []string, userID string) ([]Status, error)
	// LiveDelivered reports whether an event reached a user's live stream.
	LiveDelivered(ctx context.Context, eventID, userID string) (bool, error)
	// ItemState returns a user's state of one notification.
	ItemState(ctx context.Context, owner, key, user string) (ItemState, error)
	// QueueStats counts the delivery queue's unfinished jobs.
	QueueStats(ctx context.Context) ([]QueueStat, error)
	// Ping checks that the database answers.
	Ping(ctx context.Context) error
	// Close releases the database.
	Close() error
}

// Compile-time checks that both implementations satisfy Store.
var (
	_ Store = (*SQLite)(nil)
	_ Store = (*Postgres)(nil)
)

// Open opens a PostgreSQL store when dsnOrPath starts with "postgres://" or
// "postgresql://", and otherwise a SQLite store at that file path.
func Open(ctx context.Context, dsnOrPath string) (Store, error) {
	if isPostgresDSN(dsnOrPath) {
		s, err := OpenPostgres(ctx, dsnOrPath)
		if err != nil {
			return nil, err
		}
		return s, nil
	}
	s, err := OpenSQLite(ctx, dsnOrPath)
	if err != nil {
		return nil, err
	}
	return s, nil
}

func isPostgresDSN(s string) bool {
	for _, p := range []string{"postgres://", "postgresql://"} {
		if len(s) >= len(p) && strings.EqualFold(s[:len(p)], p) {
			return true
		}
	}
	return false
}
