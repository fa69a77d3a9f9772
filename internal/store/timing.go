package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"time"

	"github.com/google/uuid"
)

// Time-related state of deliveries: the quiet hours and digest rules in
// preferences (migration 0005), open digest windows and throttle windows.
// The jobs that close digests and flush throttles are River's, inserted by
// the delivery queue in the same transactions.

// QuietHours are a user's quiet hours in their time zone, in minutes after
// midnight. End before Start spans midnight; End equal to Start is none.
type QuietHours struct {
	Start, End int
}

// DigestRule is a user's digest of one event type.
type DigestRule struct {
	// EventType is the store's name of the type ("points_added").
	EventType string `json:"type"`
	// Window is the digest's length; zero turns the server's digest of the
	// type off for the user.
	Window time.Duration `json:"window"`
	// Key is a field of the event (snake_case) whose value splits digests;
	// "" is one per user and type.
	Key string `json:"key,omitempty"`
}

// Bounds of time preferences.
const (
	MinDigestWindow = time.Minute
	MaxDigestWindow = 7 * 24 * time.Hour
	maxDigestRules  = 32
	// maxDigestEventIDs bounds the event ids a digest window keeps; its
	// count goes on.
	maxDigestEventIDs = 100
)

var digestKeyField = regexp.MustCompile(`^[a-z][a-z0-9_]{0,63}$`)

// checkTiming validates the time fields of preferences.
func checkTiming(p Preferences) error {
	if p.TimeZone != "" {
		if len(p.TimeZone) > 64 {
			return fmt.Errorf("%w: time zone: longer than 64 bytes", ErrInvalid)
		}
		if _, err := time.LoadLocation(p.TimeZone); err != nil || p.TimeZone == "Local" {
			return fmt.Errorf("%w: time zone %q: not an IANA time zone (e.g. Europe/Paris)", ErrInvalid, boundText(p.TimeZone, 64))
		}
	}
	if q := p.Quiet; q != nil {
		if q.Start < 0 || q.Start >= 24*60 || q.End < 0 || q.End >= 24*60 {
			return fmt.Errorf("%w: quiet hours: start and end must be 00:00 to 23:59", ErrInvalid)
		}
	}
	if len(p.Digests) > maxDigestRules {
		return fmt.Errorf("%w: digests: %d rules, at most %d", ErrInvalid, len(p.Digests), maxDigestRules)
	}
	seen := map[string]bool{}
	for i, d := range p.Digests {
		switch {
		case d.EventType == "" || seen[d.EventType]:
			return fmt.Errorf("%w: digests[%d]: event type empty or repeated", ErrInvalid, i)
		case d.Window != 0 && (d.Window < MinDigestWindow || d.Window > MaxDigestWindow):
			return fmt.Errorf("%w: digests[%d]: window must be 0 (off) or %v to %v", ErrInvalid, i, MinDigestWindow, MaxDigestWindow)
		case d.Key != "" && !digestKeyField.MatchString(d.Key):
			return fmt.Errorf("%w: digests[%d]: key must be a snake_case field name", ErrInvalid, i)
		}
		seen[d.EventType] = true
	}
	return nil
}

// timingColumns are the preferences columns of migration 0005.
const timingColumns = "time_zone, quiet_start, quiet_end, digests"

// timingArgs returns the values of timingColumns for p.
func timingArgs(p Preferences) ([]any, error) {
	start, end := -1, -1
	if p.Quiet != nil {
		start, end = p.Quiet.Start, p.Quiet.End
	}
	rules := p.Digests
	if rules == nil {
		rules = []DigestRule{}
	}
	js, err := json.Marshal(rules)
	if err != nil {
		return nil, err
	}
	return []any{p.TimeZone, int64(start), int64(end), string(js)}, nil
}

// setTiming fills p's time fields from their columns.
func setTiming(p *Preferences, tz string, start, end int64, digests string) error {
	p.TimeZone = tz
	if start >= 0 && end >= 0 {
		p.Quiet = &QuietHours{Start: int(start), End: int(end)}
	}
	p.Digests = []DigestRule{}
	if digests != "" {
		if err := json.Unmarshal([]byte(digests), &p.Digests); err != nil {
			return fmt.Errorf("digest rules: %w", err)
		}
	}
	return nil
}

// PreferencesOf returns the preferences of users who have set some.
func (t *Tx) PreferencesOf(ctx context.Context, users []string) (map[string]Preferences, error) {
	out := map[string]Preferences{}
	if len(users) == 0 {
		return out, nil
	}
	b := t.c.qb()
	r, err := t.db.query(ctx, "SELECT user_id, enabled, sound, email, "+timingColumns+" FROM preferences WHERE "+b.inStrings("user_id", users), b.args...)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	for r.Next() {
		var (
			user, tz, digests string
			start, end        int64
			p                 Preferences
		)
		if err := r.Scan(&user, &p.Enabled, &p.Sound, &p.Email, &tz, &start, &end, &digests); err != nil {
			return nil, err
		}
		if err := setTiming(&p, tz, start, end, digests); err != nil {
			return nil, fmt.Errorf("preferences of %s: %w", user, err)
		}
		out[user] = p
	}
	return out, r.Err()
}

// Digest is an open digest window.
type Digest struct {
	ID string
	// UserID is the recipient; Owner the inbox owner of its events (the
	// user, or the admin group).
	UserID, Owner string
	// EventType is the store's name of the type.
	EventType string
	// Key is the value of the rule's key field; "" without one.
	Key string
	// OpenedAt is the first event's time; ClosesAt when the summary goes.
	OpenedAt, ClosesAt time.Time
	// Count and Points sum the window's events.
	Count, Points int64
	// EventIDs are the first events' ids (at most 100).
	EventIDs []string
	// LastEvent is the last event, encoded as the owner's room has it.
	LastEvent []byte
	// Email and Locale are what the last event's publisher gave for the
	// recipient.
	Email, Locale string
}

// DigestJoin adds one event to the open digest of its user, type and key,
// opening one (closing Window after At) when there is none.
type DigestJoin struct {
	UserID, Owner, EventType, Key string
	At                            time.Time
	Window                        time.Duration
	EventID                       string
	Event                         []byte
	Points                        int64
	Email, Locale                 string
}

const digestCols = "id, user_id, owner, event_type, digest_key, opened_at, closes_at, count, points, event_ids, last_event, email, locale"

func (c *core) scanDigests(ctx context.Context, db dbtx, where string, args []any) ([]Digest, error) {
	r, err := db.query(ctx, "SELECT "+digestCols+" FROM digest_windows "+where, args...)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	var out []Digest
	for r.Next() {
		var (
			d      Digest
			ids    string
			opened = c.eng.newTimeDest()
			closes = c.eng.newTimeDest()
		)
		if err := r.Scan(&d.ID, &d.UserID, &d.Owner, &d.EventType, &d.Key, opened.dest(), closes.dest(), &d.Count, &d.Points,
			&ids, &d.LastEvent, &d.Email, &d.Locale); err != nil {
			return nil, err
		}
		d.OpenedAt, d.ClosesAt = opened.value(), closes.value()
		if err := json.Unmarshal([]byte(ids), &d.EventIDs); err != nil {
			return nil, fmt.Errorf("digest %s: event ids: %w", d.ID, err)
		}
		out = append(out, d)
	}
	return out, r.Err()
}

// rowLockAll is the dialect's lock of the rows a plain SELECT returns
// (PostgreSQL); SQLite's one writer needs none.
func (c *core) rowLockAll() string {
	if c.d.dollar {
		return " FOR UPDATE"
	}
	return ""
}

// JoinDigest adds an event to the open digest of its user, type and key,
// or opens one; created says which. A retried publish's event already in
// the window (by id) is not counted twice.
func (t *Tx) JoinDigest(ctx context.Context, j DigestJoin) (d Digest, created bool, err error) {
	if j.UserID == "" || j.EventType == "" || j.EventID == "" || j.Window <= 0 {
		return Digest{}, false, fmt.Errorf("%w: digest join without user, type, event or window", ErrInvalid)
	}
	at := j.At.UTC().Truncate(time.Microsecond)
	// A concurrent close may remove the window between the insert that
	// found it and the select: try again, a few times.
	for range 3 {
		id := uuid.Must(uuid.NewV7()).String()
		ids, _ := json.Marshal([]string{j.EventID})
		b := t.c.qb()
		n, err := t.db.exec(ctx, "INSERT INTO digest_windows ("+digestCols+") VALUES ("+b.arg(id)+", "+b.arg(j.UserID)+", "+
			b.arg(j.Owner)+", "+b.arg(j.EventType)+", "+b.arg(j.Key)+", "+b.arg(t.c.eng.timeArg(at))+", "+
			b.arg(t.c.eng.timeArg(at.Add(j.Window)))+", 1, "+b.arg(j.Points)+", "+b.arg(string(ids))+", "+b.arg(j.Event)+", "+
			b.arg(j.Email)+", "+b.arg(j.Locale)+") ON CONFLICT (user_id, event_type, digest_key) DO NOTHING", b.args...)
		if err != nil {
			return Digest{}, false, err
		}
		if n == 1 {
			b := t.c.qb()
			ds, err := t.c.scanDigests(ctx, t.db, "WHERE id = "+b.arg(id), b.args)
			if err != nil || len(ds) != 1 {
				return Digest{}, false, errors.Join(err, errors.New("digest window not found after insert"))
			}
			return ds[0], true, nil
		}
		b = t.c.qb()
		ds, err := t.c.scanDigests(ctx, t.db, "WHERE user_id = "+b.arg(j.UserID)+" AND event_type = "+b.arg(j.EventType)+
			" AND digest_key = "+b.arg(j.Key)+t.c.rowLockAll(), b.args)
		if err != nil {
			return Digest{}, false, err
		}
		if len(ds) == 0 {
			continue
		}
		d = ds[0]
		if slices.Contains(d.EventIDs, j.EventID) {
			return d, false, nil
		}
		d.Count++
		d.Points += j.Points
		if len(d.EventIDs) < maxDigestEventIDs {
			d.EventIDs = append(d.EventIDs, j.EventID)
		}
		d.LastEvent, d.Email, d.Locale = j.Event, j.Email, j.Locale
		ids, _ = json.Marshal(d.EventIDs)
		b = t.c.qb()
		if _, err := t.db.exec(ctx, "UPDATE digest_windows SET count = "+b.arg(d.Count)+", points = "+b.arg(d.Points)+
			", event_ids = "+b.arg(string(ids))+", last_event = "+b.arg(d.LastEvent)+", email = "+b.arg(d.Email)+
			", locale = "+b.arg(d.Locale)+" WHERE id = "+b.arg(d.ID), b.args...); err != nil {
			return Digest{}, false, err
		}
		return d, false, nil
	}
	return Digest{}, false, errors.New("digest window: joined and closed concurrently three times")
}

// TakeDigest removes an open digest and returns it, to send its summary;
// found is false when it was already taken (closed or released).
func (t *Tx) TakeDigest(ctx context.Context, id string) (Digest, bool, error) {
	b := t.c.qb()
	ds, err := t.c.scanDigests(ctx, t.db, "WHERE id = "+b.arg(id)+t.c.rowLockAll(), b.args)
	if err != nil || len(ds) == 0 {
		return Digest{}, false, err
	}
	b = t.c.qb()
	if _, err := t.db.exec(ctx, "DELETE FROM digest_windows WHERE id = "+b.arg(id), b.args...); err != nil {
		return Digest{}, false, err
	}
	return ds[0], true, nil
}

// OpenDigests returns a user's open digests, soonest to close first.
func (t *Tx) OpenDigests(ctx context.Context, userID string) ([]Digest, error) {
	b := t.c.qb()
	return t.c.scanDigests(ctx, t.db, "WHERE user_id = "+b.arg(userID)+" ORDER BY closes_at, id", b.args)
}

// ThrottleKey names one throttle window.
type ThrottleKey struct {
	UserID, EventType, Channel, Target string
}

// ThrottleWindow is where one throttle stands.
type ThrottleWindow struct {
	ThrottleKey
	// Start is when the current window began.
	Start time.Time
	// Sent counts the sends in the window.
	Sent int64
	// Held counts the sends held back, not yet folded into a send; their
	// points are HeldPoints, and LastHeld the last one (the queue's own
	// encoding).
	Held, HeldPoints int64
	LastHeld         string
	// Sends are the window's sends, by job.
	Sends []ThrottleSend
}

// ThrottleSend is one send counted in a throttle window.
type ThrottleSend struct {
	// Job is the delivery job that was let through.
	Job int64 `json:"job"`
	// Folded: it was let through as a new job carrying the sends held back.
	Folded bool `json:"folded,omitempty"`
}

// Throttle returns a throttle window, locked until the transaction ends;
// found is false when there is none.
func (t *Tx) Throttle(ctx context.Context, k ThrottleKey) (ThrottleWindow, bool, error) {
	b := t.c.qb()
	r, err := t.db.query(ctx, "SELECT window_start, sent, held, held_points, last_held, sent_jobs FROM delivery_throttles WHERE user_id = "+
		b.arg(k.UserID)+" AND event_type = "+b.arg(k.EventType)+" AND channel = "+b.arg(k.Channel)+" AND target = "+b.arg(k.Target)+
		t.c.rowLockAll(), b.args...)
	if err != nil {
		return ThrottleWindow{}, false, err
	}
	defer r.Close()
	w := ThrottleWindow{ThrottleKey: k}
	if !r.Next() {
		return w, false, r.Err()
	}
	start := t.c.eng.newTimeDest()
	var sends string
	if err := r.Scan(start.dest(), &w.Sent, &w.Held, &w.HeldPoints, &w.LastHeld, &sends); err != nil {
		return ThrottleWindow{}, false, err
	}
	w.Start = start.value()
	if err := json.Unmarshal([]byte(sends), &w.Sends); err != nil {
		return ThrottleWindow{}, false, fmt.Errorf("throttle sends: %w", err)
	}
	return w, true, r.Err()
}

// PutThrottle stores a throttle window.
func (t *Tx) PutThrottle(ctx context.Context, w ThrottleWindow) error {
	sends := w.Sends
	if sends == nil {
		sends = []ThrottleSend{}
	}
	js, err := json.Marshal(sends)
	if err != nil {
		return err
	}
	b := t.c.qb()
	_, err = t.db.exec(ctx, "INSERT INTO delivery_throttles (user_id, event_type, channel, target, window_start, sent, held, held_points, last_held, sent_jobs)"+
		" VALUES ("+b.arg(w.UserID)+", "+b.arg(w.EventType)+", "+b.arg(w.Channel)+", "+b.arg(w.Target)+", "+
		b.arg(t.c.eng.timeArg(w.Start.UTC().Truncate(time.Microsecond)))+", "+b.arg(w.Sent)+", "+b.arg(w.Held)+", "+
		b.arg(w.HeldPoints)+", "+b.arg(w.LastHeld)+", "+b.arg(string(js))+") ON CONFLICT (user_id, event_type, channel, target) DO UPDATE SET"+
		" window_start = excluded.window_start, sent = excluded.sent, held = excluded.held,"+
		" held_points = excluded.held_points, last_held = excluded.last_held, sent_jobs = excluded.sent_jobs", b.args...)
	return err
}

// PruneThrottles removes throttle windows that began before cut and hold
// nothing back.
func (t *Tx) PruneThrottles(ctx context.Context, cut time.Time) (int64, error) {
	b := t.c.qb()
	return t.db.exec(ctx, "DELETE FROM delivery_throttles WHERE held = 0 AND window_start < "+
		b.arg(t.c.eng.timeArg(cut.UTC().Truncate(time.Microsecond))), b.args...)
}
