package store

import (
	"context"
	"errors"
	"strings"
	"time"
)

// MaxPageSize is the largest ListQuery.Limit accepted.
const MaxPageSize = 200

// MaxMarkIDs is the largest number of ids one MarkRead call accepts.
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
}

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
}

// Viewer says whose inbox is read or changed: the user's own rows plus the
// rows of the listed groups.
type Viewer struct {
	// UserID is the viewing user; required.
	UserID string
	// Groups are the shared owners whose rows the user also sees.
	Groups []string
}

// ListQuery selects one page of a viewer's inbox.
type ListQuery struct {
	// Cursor is the next value of a previous page; "" asks for the first page.
	Cursor string
	// Limit is the page size, 1..MaxPageSize.
	Limit int
	// UnreadOnly drops items the viewer has read.
	UnreadOnly bool
	// Types, when not empty, keeps only items of these event types.
	Types []string
}

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
}

// DefaultPreferences returns the preferences of a user who never set any.
func DefaultPreferences() Preferences {
	return Preferences{Enabled: true, Sound: true, Email: false, Muted: []string{}}
}

// Store is the method set shared by *SQLite and *Postgres.
type Store interface {
	// Insert stores items in one transaction, skipping duplicates.
	Insert(ctx context.Context, items []NewItem) error
	// List returns one page of the viewer's inbox, newest first.
	List(ctx context.Context, v Viewer, q ListQuery) (items []Item, next string, err error)
	// UnreadCount counts the viewer's unread, undeleted items.
	UnreadCount(ctx context.Context, v Viewer) (int64, error)
	// UnreadCounts counts the unread, undeleted items of up to
	// MaxCountUsers users, their own items only (viewers without groups),
	// in one query; users with none are absent from the result.
	UnreadCounts(ctx context.Context, users []string) (map[string]int64, error)
	// MarkRead sets the viewer's read state of the items with these ids.
	MarkRead(ctx context.Context, v Viewer, ids []string, read bool) error
	// MarkAllRead marks every item the viewer sees as read.
	MarkAllRead(ctx context.Context, v Viewer) (int64, error)
	// Delete removes one item from the viewer's inbox.
	Delete(ctx context.Context, v Viewer, id string) error
	// Clear removes every item from the viewer's inbox.
	Clear(ctx context.Context, v Viewer) (int64, error)
	// Preferences returns a user's preferences, or the defaults.
	Preferences(ctx context.Context, userID string) (Preferences, error)
	// SetPreferences replaces a user's preferences.
	SetPreferences(ctx context.Context, userID string, p Preferences) error
	// HasEventFrom reports whether owner has, or had, an item from
	// restaurant: one not pruned yet, deleted by the viewer or not.
	HasEventFrom(ctx context.Context, owner, restaurant string) (bool, error)
	// Prune deletes items by age and by count per owner.
	Prune(ctx context.Context, maxPerOwner int, maxAge time.Duration, now time.Time) (int64, error)
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
