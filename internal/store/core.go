package store

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"
)

// core implements the store's methods on top of an engine. All SQL lives
// here, in the subset both SQLite and PostgreSQL accept.
type core struct {
	eng engine
	d   dialect
	now func() time.Time
	// gc commits Insert calls in shared transactions; nil (while opening)
	// writes each call in a transaction of its own.
	gc *groupCommit
	// insertSQL inserts one row: owner, event id, type, event, created at,
	// restaurant, priority, category, tags, expires at, action.
	insertSQL string
	// afterInsert, when set (by tests), runs after the i-th item of an
	// Insert call is written, inside the transaction, with the
	// transaction's context; an error aborts the transaction.
	afterInsert func(ctx context.Context, i int) error
}

func newCore(eng engine, d dialect) core {
	b := &qb{d: d}
	ph := make([]string, 11)
	for i := range ph {
		ph[i] = b.arg(nil)
	}
	insertSQL := "INSERT INTO inbox_items (owner, event_id, event_type, event, created_at, restaurant_id," +
		" priority, category, tags, expires_at, action) VALUES (" + strings.Join(ph, ", ") +
		") ON CONFLICT (owner, event_id) DO NOTHING"
	return core{eng: eng, d: d, now: time.Now, insertSQL: insertSQL}
}

// wrap prefixes err with the operation and classifies driver errors.
func (c *core) wrap(op string, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("store: %s: %w", op, c.eng.classify(err))
}

func (c *core) qb() *qb { return &qb{d: c.d} }

// insert validates items and has them written in one transaction, shared
// with concurrent calls (see groupCommit).
func (c *core) insert(ctx context.Context, items []NewItem) error {
	items, err := checkNewItems(items, c.now())
	if err != nil {
		return c.wrap("insert", err)
	}
	if len(items) == 0 {
		return nil
	}
	if c.gc == nil {
		err = c.eng.inTx(ctx, func(tx dbtx) error { return c.writeItems(ctx, tx, items) })
	} else {
		err = c.gc.insert(ctx, items)
	}
	return c.wrap("insert", err)
}

// writeItems writes one Insert call's rows in tx, skipping rows whose owner
// and event id are already stored (also by an earlier call in tx).
func (c *core) writeItems(ctx context.Context, tx dbtx, items []NewItem) error {
	for i, it := range items {
		// One statement text for every row: SQLite prepares it once (see
		// sqliteEngine.stmts), pgx caches it per connection.
		var expires any
		if !it.ExpiresAt.IsZero() {
			expires = c.eng.timeArg(it.ExpiresAt)
		}
		if _, err := tx.exec(ctx, c.insertSQL, it.Owner, it.EventID, it.EventType, it.Event, c.eng.timeArg(it.CreatedAt), it.Restaurant,
			int64(it.Priority), it.Category, strings.Join(it.Tags, ","), expires, it.Action); err != nil {
			return fmt.Errorf("item %d: %w", i, err)
		}
		if c.afterInsert != nil {
			if err := c.afterInsert(ctx, i); err != nil {
				return fmt.Errorf("item %d: %w", i, err)
			}
		}
	}
	return nil
}

func (c *core) list(ctx context.Context, v Viewer, q ListQuery) ([]Item, string, error) {
	vw, err := checkViewer(v)
	if err != nil {
		return nil, "", c.wrap("list", err)
	}
	after, f, err := checkListQuery(q)
	if err != nil {
		return nil, "", c.wrap("list", err)
	}
	now := c.now().UTC().Truncate(time.Microsecond)
	b := c.qb()
	n := b.arg(c.eng.timeArg(now))
	fromSQL, get := b.from(vw)
	sql := "SELECT i.id, i.owner, i.event_id, i.event_type, i.event, " + get("is_read") + ", i.created_at, " +
		get("is_seen") + ", " + get("seen_at") + ", " + get("read_at") + ", " + get("archived_at") + ", " +
		get("snoozed_until") + ", i.priority, i.category, i.tags, i.expires_at, i.action FROM " +
		fromSQL + " WHERE " + b.inStrings("i.owner", vw.all) + " AND NOT " + get("is_deleted") +
		" AND " + notExpired("i.", n) + " AND " + stateCond(get, f.state, n) + b.filterCond("i.", f)
	if q.UnreadOnly {
		sql += " AND NOT " + get("is_read")
	}
	switch {
	case after.id > 0 && q.Order == OrderPriority:
		p, id := b.arg(int64(after.priority)), b.arg(after.id)
		sql += " AND (i.priority < " + p + " OR (i.priority = " + p + " AND i.id < " + id + "))"
	case after.id > 0:
		sql += " AND i.id < " + b.arg(after.id)
	}
	if q.Order == OrderPriority {
		sql += " ORDER BY i.priority DESC, i.id DESC"
	} else {
		sql += " ORDER BY i.id DESC"
	}
	sql += " LIMIT " + b.arg(int64(q.Limit+1))

	r, err := c.eng.reader().query(ctx, sql, b.args...)
	if err != nil {
		return nil, "", c.wrap("list", err)
	}
	defer r.Close()
	items := make([]Item, 0, q.Limit+1)
	var ids []int64
	for r.Next() {
		var (
			it       Item
			id, prio int64
			tags     string
			created  = c.eng.newTimeDest()
			times    = [5]timeDest{c.eng.newNullTimeDest(), c.eng.newNullTimeDest(), c.eng.newNullTimeDest(), c.eng.newNullTimeDest(), c.eng.newNullTimeDest()}
		)
		if err := r.Scan(&id, &it.Owner, &it.EventID, &it.EventType, &it.Event, &it.Read, created.dest(),
			&it.Seen, times[0].dest(), times[1].dest(), times[2].dest(), times[3].dest(),
			&prio, &it.Category, &tags, times[4].dest(), &it.Action); err != nil {
			return nil, "", c.wrap("list", err)
		}
		it.ID = formatID(id)
		it.CreatedAt = created.value()
		it.SeenAt, it.ReadAt, it.ArchivedAt = times[0].value(), times[1].value(), times[2].value()
		if t := times[3].value(); t.After(now) {
			it.SnoozedUntil = t
		}
		it.ExpiresAt = times[4].value()
		it.Priority = int(prio)
		if tags != "" {
			it.Tags = strings.Split(tags, ",")
		}
		if len(it.Action) == 0 {
			it.Action = nil
		}
		items = append(items, it)
		ids = append(ids, id)
	}
	if err := r.Err(); err != nil {
		return nil, "", c.wrap("list", err)
	}
	next := ""
	if len(items) > q.Limit {
		items = items[:q.Limit]
		last := items[q.Limit-1]
		if q.Order == OrderPriority {
			next = encodePriorityCursor(last.Priority, ids[q.Limit-1])
		} else {
			next = encodeCursor(ids[q.Limit-1])
		}
	}
	return items, next, nil
}

// queryInt64 runs a query returning one int64.
func queryInt64(ctx context.Context, db dbtx, sql string, args ...any) (int64, error) {
	r, err := db.query(ctx, sql, args...)
	if err != nil {
		return 0, err
	}
	defer r.Close()
	var n int64
	if !r.Next() {
		if err := r.Err(); err != nil {
			return 0, err
		}
		return 0, fmt.Errorf("query returned no row")
	}
	if err := r.Scan(&n); err != nil {
		return 0, err
	}
	return n, r.Err()
}

// hasEventFrom reports whether owner has a row from restaurant, deleted
// (a tombstone) or not.
func (c *core) hasEventFrom(ctx context.Context, owner, restaurant string) (bool, error) {
	if owner == "" || restaurant == "" {
		return false, c.wrap("has event from", fmt.Errorf("%w: empty owner or restaurant", ErrInvalid))
	}
	b := c.qb()
	sql := "SELECT COUNT(*) FROM (SELECT 1 FROM inbox_items WHERE owner = " + b.arg(owner) +
		" AND restaurant_id = " + b.arg(restaurant) + " LIMIT 1) AS found"
	n, err := queryInt64(ctx, c.eng.reader(), sql, b.args...)
	return n > 0, c.wrap("has event from", err)
}

func (c *core) markRead(ctx context.Context, v Viewer, ids []string, read bool) error {
	ch := Change{Action: ActionRead}
	if !read {
		ch.Action = ActionUnread
	}
	return c.update(ctx, "mark read", v, ids, ch)
}

func (c *core) delete(ctx context.Context, v Viewer, id string) error {
	if _, err := parseID(id); err != nil {
		return c.wrap("delete", err)
	}
	return c.update(ctx, "delete", v, []string{id}, Change{Action: ActionDelete})
}

func (c *core) markAllRead(ctx context.Context, v Viewer) (int64, error) {
	return c.updateWhere(ctx, "mark all read", v, Filter{State: StateInbox}, Change{Action: ActionRead})
}

func (c *core) clear(ctx context.Context, v Viewer) (int64, error) {
	return c.updateWhere(ctx, "clear", v, Filter{State: StateAll}, Change{Action: ActionDelete})
}

func (c *core) preferences(ctx context.Context, userID string) (Preferences, error) {
	if userID == "" {
		return Preferences{}, c.wrap("preferences", fmt.Errorf("%w: empty user id", ErrInvalid))
	}
	b := c.qb()
	sql := "SELECT p.enabled, p.sound, p.email, p.time_zone, p.quiet_start, p.quiet_end, p.digests, m.event_type FROM preferences p" +
		" LEFT JOIN preference_muted m ON m.user_id = p.user_id WHERE p.user_id = " + b.arg(userID)
	r, err := c.eng.reader().query(ctx, sql, b.args...)
	if err != nil {
		return Preferences{}, c.wrap("preferences", err)
	}
	defer r.Close()
	p := Preferences{Muted: []string{}}
	found := false
	for r.Next() {
		var (
			muted          *string
			tz, digests    string
			quietS, quietE int64
		)
		if err := r.Scan(&p.Enabled, &p.Sound, &p.Email, &tz, &quietS, &quietE, &digests, &muted); err != nil {
			return Preferences{}, c.wrap("preferences", err)
		}
		if !found {
			if err := setTiming(&p, tz, quietS, quietE, digests); err != nil {
				return Preferences{}, c.wrap("preferences", err)
			}
		}
		found = true
		if muted != nil {
			p.Muted = append(p.Muted, *muted)
		}
	}
	if err := r.Err(); err != nil {
		return Preferences{}, c.wrap("preferences", err)
	}
	if !found {
		return DefaultPreferences(), nil
	}
	slices.Sort(p.Muted)
	return p, nil
}

func (c *core) setPreferences(ctx context.Context, userID string, p Preferences) error {
	p, err := checkPreferences(userID, p)
	if err != nil {
		return c.wrap("set preferences", err)
	}
	err = c.eng.inTx(ctx, func(tx dbtx) error {
		b := c.qb()
		timing, err := timingArgs(p)
		if err != nil {
			return err
		}
		sql := "INSERT INTO preferences (user_id, enabled, sound, email, " + timingColumns + ") VALUES (" + b.arg(userID) + ", " +
			b.arg(p.Enabled) + ", " + b.arg(p.Sound) + ", " + b.arg(p.Email) + ", " + b.arg(timing[0]) + ", " + b.arg(timing[1]) + ", " +
			b.arg(timing[2]) + ", " + b.arg(timing[3]) + ") ON CONFLICT (user_id) DO UPDATE SET" +
			" enabled = excluded.enabled, sound = excluded.sound, email = excluded.email, time_zone = excluded.time_zone," +
			" quiet_start = excluded.quiet_start, quiet_end = excluded.quiet_end, digests = excluded.digests"
		if _, err := tx.exec(ctx, sql, b.args...); err != nil {
			return err
		}
		b = c.qb()
		if _, err := tx.exec(ctx, "DELETE FROM preference_muted WHERE user_id = "+b.arg(userID), b.args...); err != nil {
			return err
		}
		for _, m := range p.Muted {
			b = c.qb()
			sql := "INSERT INTO preference_muted (user_id, event_type) VALUES (" + b.arg(userID) + ", " + b.arg(m) + ")"
			if _, err := tx.exec(ctx, sql, b.args...); err != nil {
				return err
			}
		}
		return nil
	})
	return c.wrap("set preferences", err)
}

func (c *core) prune(ctx context.Context, maxPerOwner int, maxAge time.Duration, now time.Time) (int64, error) {
	if err := checkPrune(maxPerOwner, maxAge); err != nil {
		return 0, c.wrap("prune", err)
	}
	if maxAge > 0 && now.IsZero() {
		return 0, c.wrap("prune", fmt.Errorf("%w: zero now with an age bound", ErrInvalid))
	}
	var total int64
	err := c.eng.inTx(ctx, func(tx dbtx) error {
		total = 0
		if maxAge > 0 {
			b := c.qb()
			cut := now.Add(-maxAge).UTC().Truncate(time.Microsecond)
			n, err := tx.exec(ctx, "DELETE FROM inbox_items WHERE created_at < "+b.arg(c.eng.timeArg(cut)), b.args...)
			if err != nil {
				return err
			}
			total += n
		}
		if !now.IsZero() {
			// Expired items leave the inbox: queries hide them at once,
			// pruning removes them.
			b := c.qb()
			n, err := tx.exec(ctx, "DELETE FROM inbox_items WHERE expires_at <= "+
				b.arg(c.eng.timeArg(now.UTC().Truncate(time.Microsecond))), b.args...)
			if err != nil {
				return err
			}
			total += n
		}
		if maxPerOwner > 0 {
			b := c.qb()
			sql := "DELETE FROM inbox_items WHERE id IN (SELECT id FROM (SELECT id, ROW_NUMBER() OVER" +
				" (PARTITION BY owner ORDER BY id DESC) AS rn FROM inbox_items) ranked WHERE rn > " +
				b.arg(int64(maxPerOwner)) + ")"
			n, err := tx.exec(ctx, sql, b.args...)
			if err != nil {
				return err
			}
			total += n
		}
		if maxAge > 0 {
			// Delivery timelines go with the notifications' age.
			if _, err := c.pruneStatuses(ctx, tx, now.Add(-maxAge).UTC().Truncate(time.Microsecond)); err != nil {
				return err
			}
		}
		// Per-viewer state of the deleted items goes with them: inbox_state
		// references inbox_items ON DELETE CASCADE.
		return nil
	})
	if err != nil {
		return 0, c.wrap("prune", err)
	}
	return total, nil
}
