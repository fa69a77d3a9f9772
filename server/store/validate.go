package store

import (
	"fmt"
	"slices"
	"time"
)

// maxTypes bounds ListQuery.Types.
const maxTypes = 100

// viewer is a validated Viewer.
type viewer struct {
	user   string
	groups []string // unique, non-empty, never user
	all    []string // user followed by groups
}

func checkViewer(v Viewer) (viewer, error) {
	if v.UserID == "" {
		return viewer{}, fmt.Errorf("%w: viewer has no user id", ErrInvalid)
	}
	out := viewer{user: v.UserID, all: []string{v.UserID}}
	for _, g := range v.Groups {
		if g == "" {
			return viewer{}, fmt.Errorf("%w: viewer has an empty group", ErrInvalid)
		}
		if g == v.UserID || slices.Contains(out.groups, g) {
			continue
		}
		out.groups = append(out.groups, g)
		out.all = append(out.all, g)
	}
	return out, nil
}

// checkNewItems validates a batch and returns it ready to store: Event never
// nil, CreatedAt set and in UTC at microsecond precision.
func checkNewItems(items []NewItem, now time.Time) ([]NewItem, error) {
	out := make([]NewItem, len(items))
	for i, it := range items {
		switch {
		case it.Owner == "":
			return nil, fmt.Errorf("%w: item %d: empty owner", ErrInvalid, i)
		case it.EventID == "":
			return nil, fmt.Errorf("%w: item %d: empty event id", ErrInvalid, i)
		case it.EventType == "":
			return nil, fmt.Errorf("%w: item %d: empty event type", ErrInvalid, i)
		}
		if it.Event == nil {
			it.Event = []byte{}
		}
		if it.CreatedAt.IsZero() {
			it.CreatedAt = now
		}
		it.CreatedAt = it.CreatedAt.UTC().Truncate(time.Microsecond)
		out[i] = it
	}
	return out, nil
}

func checkListQuery(q ListQuery) (after int64, types []string, err error) {
	if q.Limit < 1 || q.Limit > MaxPageSize {
		return 0, nil, fmt.Errorf("%w: limit %d not in 1..%d", ErrInvalid, q.Limit, MaxPageSize)
	}
	if q.Cursor != "" {
		if after, err = decodeCursor(q.Cursor); err != nil {
			return 0, nil, err
		}
	}
	if len(q.Types) > maxTypes {
		return 0, nil, fmt.Errorf("%w: %d types, at most %d", ErrInvalid, len(q.Types), maxTypes)
	}
	types, err = uniqueNonEmpty(q.Types, "event type")
	return after, types, err
}

// checkIDs parses 1..MaxMarkIDs ids and returns them without repeats.
func checkIDs(ids []string) ([]int64, error) {
	if len(ids) == 0 {
		return nil, fmt.Errorf("%w: no ids", ErrInvalid)
	}
	if len(ids) > MaxMarkIDs {
		return nil, fmt.Errorf("%w: %d ids, at most %d", ErrInvalid, len(ids), MaxMarkIDs)
	}
	out := make([]int64, 0, len(ids))
	for _, s := range ids {
		id, err := parseID(s)
		if err != nil {
			return nil, err
		}
		out = append(out, id)
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

func checkPreferences(userID string, p Preferences) (Preferences, error) {
	if userID == "" {
		return Preferences{}, fmt.Errorf("%w: empty user id", ErrInvalid)
	}
	muted, err := uniqueNonEmpty(p.Muted, "muted event type")
	if err != nil {
		return Preferences{}, err
	}
	p.Muted = muted
	return p, nil
}

// uniqueNonEmpty returns ss sorted without repeats, never nil; an empty
// string is an ErrInvalid naming what.
func uniqueNonEmpty(ss []string, what string) ([]string, error) {
	out := make([]string, 0, len(ss))
	for _, s := range ss {
		if s == "" {
			return nil, fmt.Errorf("%w: empty %s", ErrInvalid, what)
		}
		out = append(out, s)
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

func checkPrune(maxPerOwner int, maxAge time.Duration) error {
	if maxPerOwner < 0 {
		return fmt.Errorf("%w: negative maxPerOwner %d", ErrInvalid, maxPerOwner)
	}
	if maxAge < 0 {
		return fmt.Errorf("%w: negative maxAge %v", ErrInvalid, maxAge)
	}
	return nil
}
