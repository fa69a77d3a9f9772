package store

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// maxTypes bounds ListQuery.Types.
const maxTypes = 100

// viewer is a validated Viewer.
type viewer struct {
	user       string
	groups     []string // unique, non-empty, never user
	all        []string // the owners whose rows the viewer sees: user (unless groupsOnly), then groups
	groupsOnly bool
}

func checkViewer(v Viewer) (viewer, error) {
	if v.UserID == "" {
		return viewer{}, fmt.Errorf("%w: viewer has no user id", ErrInvalid)
	}
	out := viewer{user: v.UserID, groupsOnly: v.GroupsOnly}
	if !v.GroupsOnly {
		out.all = []string{v.UserID}
	}
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
	if v.GroupsOnly && len(out.groups) == 0 {
		return viewer{}, fmt.Errorf("%w: a groups-only viewer has no group", ErrInvalid)
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
		if err := checkLabels(it); err != nil {
			return nil, fmt.Errorf("%w: item %d: %w", ErrInvalid, i, err)
		}
		if it.Event == nil {
			it.Event = []byte{}
		}
		if !it.ExpiresAt.IsZero() {
			it.ExpiresAt = it.ExpiresAt.UTC().Truncate(time.Microsecond)
		}
		if len(it.Action) == 0 {
			it.Action = nil
		}
		if it.CreatedAt.IsZero() {
			it.CreatedAt = now
		}
		it.CreatedAt = it.CreatedAt.UTC().Truncate(time.Microsecond)
		out[i] = it
	}
	return out, nil
}

// checkLabels checks an item's priority, category and tags.
func checkLabels(it NewItem) error {
	switch {
	case it.Priority < 0 || it.Priority > MaxPriority:
		return fmt.Errorf("priority %d not in 0..%d", it.Priority, MaxPriority)
	case len(it.Category) > MaxLabelLen:
		return fmt.Errorf("category longer than %d bytes", MaxLabelLen)
	case len(it.Tags) > MaxTags:
		return fmt.Errorf("%d tags, at most %d", len(it.Tags), MaxTags)
	}
	for _, t := range it.Tags {
		if t == "" || len(t) > MaxLabelLen || strings.Contains(t, ",") {
			return fmt.Errorf("tag %q is empty, longer than %d bytes or has a comma", t, MaxLabelLen)
		}
	}
	return nil
}

// filter is a validated Filter.
type filter struct {
	state             State
	types, categories []string
	priorities        []int64
}

func checkFilter(f Filter) (filter, error) {
	if f.State < StateInbox || f.State > StateAll {
		return filter{}, fmt.Errorf("%w: unknown state %d", ErrInvalid, f.State)
	}
	if len(f.Types) > maxTypes || len(f.Categories) > maxTypes {
		return filter{}, fmt.Errorf("%w: %d types and %d categories, at most %d of each", ErrInvalid, len(f.Types), len(f.Categories), maxTypes)
	}
	out := filter{state: f.State}
	var err error
	if out.types, err = uniqueNonEmpty(f.Types, "event type"); err != nil {
		return filter{}, err
	}
	if out.categories, err = uniqueNonEmpty(f.Categories, "category"); err != nil {
		return filter{}, err
	}
	for _, p := range f.Priorities {
		if p < 0 || p > MaxPriority {
			return filter{}, fmt.Errorf("%w: priority %d not in 0..%d", ErrInvalid, p, MaxPriority)
		}
		if !slices.Contains(out.priorities, int64(p)) {
			out.priorities = append(out.priorities, int64(p))
		}
	}
	slices.Sort(out.priorities)
	return out, nil
}

// checkChange checks an action and, for a snooze, that it ends after now.
func checkChange(ch Change, now time.Time) error {
	switch {
	case ch.Action < ActionSeen || ch.Action > ActionDelete:
		return fmt.Errorf("%w: unknown action %d", ErrInvalid, ch.Action)
	case ch.Action == ActionSnooze && !ch.Until.After(now):
		return fmt.Errorf("%w: a snooze must end after now", ErrInvalid)
	case ch.Action != ActionSnooze && !ch.Until.IsZero():
		return fmt.Errorf("%w: only a snooze has an end", ErrInvalid)
	}
	return nil
}

func checkListQuery(q ListQuery) (after cursor, f filter, err error) {
	if q.Limit < 1 || q.Limit > MaxPageSize {
		return cursor{}, filter{}, fmt.Errorf("%w: limit %d not in 1..%d", ErrInvalid, q.Limit, MaxPageSize)
	}
	switch q.Order {
	case OrderNewest:
		if q.Cursor != "" {
			if after.id, err = decodeCursor(q.Cursor); err != nil {
				return cursor{}, filter{}, err
			}
		}
	case OrderPriority:
		if q.Cursor != "" {
			if after, err = decodePriorityCursor(q.Cursor); err != nil {
				return cursor{}, filter{}, err
			}
		}
	default:
		return cursor{}, filter{}, fmt.Errorf("%w: unknown order %d", ErrInvalid, q.Order)
	}
	f, err = checkFilter(q.filter())
	return after, f, err
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
	if err := checkTiming(p); err != nil {
		return Preferences{}, err
	}
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
