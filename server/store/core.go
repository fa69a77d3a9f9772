package store

import (
	"context"
	"fmt"
	"slices"
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
	// restaurant.
	insertSQL string
	// afterInsert, when set (by tests), runs after the i-th item of an
	// Insert call is written, inside the transaction, with the
	// transaction's context; an error aborts the transaction.
	afterInsert func(ctx context.Context, i int) error
}

func newCore(eng engine, d dialect) core {
	b := &qb{d: d}
	insertSQL := "INSERT INTO inbox_items (owner, event_id, event_type, event, created_at, restaurant_id) VALUES (" +
		b.arg(nil) + ", " + b.arg(nil) + ", " + b.arg(nil) + ", " + b.arg(nil) + ", " + b.arg(nil) + ", " + b.arg(nil) +
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

// fromView is the FROM clause of a viewer's items: each item with the
// viewer's state row for it, if any; u is the user id placeholder.
func fromView(u string) string {
	return "inbox_items i LEFT JOIN inbox_state s ON s.item_id = i.id AND s.user_id = " + u
}

// readExpr is the viewer's read flag of item i.
func readExpr(u string) string {
	return "(CASE WHEN i.owner = " + u + " THEN i.is_read ELSE COALESCE(s.is_read, FALSE) END)"
}

// deletedExpr is the viewer's deleted flag of item i.
func deletedExpr(u string) string {
	return "(CASE WHEN i.owner = " + u + " THEN i.is_deleted ELSE COALESCE(s.is_deleted, FALSE) END)"
}

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
		if _, err := tx.exec(ctx, c.insertSQL, it.Owner, it.EventID, it.EventType, it.Event, c.eng.timeArg(it.CreatedAt), it.Restaurant); err != nil {
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
	after, types, err := checkListQuery(q)
	if err != nil {
		return nil, "", c.wrap("list", err)
	}
	b := c.qb()
	u := b.arg(vw.user)
	sql := "SELECT i.id, i.owner, i.event_id, i.event_type, i.event, " + readExpr(u) + ", i.created_at FROM " +
		fromView(u) + " WHERE " + b.inStrings("i.owner", vw.all) + " AND NOT " + deletedExpr(u)
	if after > 0 {
		sql += " AND i.id < " + b.arg(after)
	}
	if q.UnreadOnly {
		sql += " AND NOT " + readExpr(u)
	}
	if len(types) > 0 {
		sql += " AND " + b.inStrings("i.event_type", types)
	}
	sql += " ORDER BY i.id DESC LIMIT " + b.arg(int64(q.Limit+1))

	r, err := c.eng.reader().query(ctx, sql, b.args...)
	if err != nil {
		return nil, "", c.wrap("list", err)
	}
	defer r.Close()
	items := make([]Item, 0, q.Limit+1)
	var ids []int64
	for r.Next() {
		var (
			it Item
			id int64
			td = c.eng.newTimeDest()
		)
		if err := r.Scan(&id, &it.Owner, &it.EventID, &it.EventType, &it.Event, &it.Read, td.dest()); err != nil {
			return nil, "", c.wrap("list", err)
		}
		it.ID = formatID(id)
		it.CreatedAt = td.value()
		items = append(items, it)
		ids = append(ids, id)
	}
	if err := r.Err(); err != nil {
		return nil, "", c.wrap("list", err)
	}
	next := ""
	if len(items) > q.Limit {
		items = items[:q.Limit]
		next = encodeCursor(ids[q.Limit-1])
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

func (c *core) unreadCount(ctx context.Context, v Viewer) (int64, error) {
	vw, err := checkViewer(v)
	if err != nil {
		return 0, c.wrap("unread count", err)
	}
	b := c.qb()
	u := b.arg(vw.user)
	sql := "SELECT COUNT(*) FROM inbox_items WHERE owner = " + u + " AND NOT is_read AND NOT is_deleted"
	if len(vw.groups) > 0 {
		sql = "SELECT (" + sql + ") + (SELECT COUNT(*) FROM " + fromView(u) + " WHERE " +
			b.inStrings("i.owner", vw.groups) +
			" AND NOT COALESCE(s.is_read, FALSE) AND NOT COALESCE(s.is_deleted, FALSE))"
	}
	n, err := queryInt64(ctx, c.eng.reader(), sql, b.args...)
	return n, c.wrap("unread count", err)
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

// MaxCountUsers bounds the users of one UnreadCounts call.
const MaxCountUsers = 500

// unreadCounts counts the unread, undeleted items of each of users (their
// own items only: no groups) in one query. Users with none are absent from
// the result.
func (c *core) unreadCounts(ctx context.Context, users []string) (map[string]int64, error) {
	switch {
	case len(users) == 0:
		return map[string]int64{}, nil
	case len(users) > MaxCountUsers:
		return nil, c.wrap("unread counts", fmt.Errorf("%w: %d users, at most %d", ErrInvalid, len(users), MaxCountUsers))
	case slices.Contains(users, ""):
		return nil, c.wrap("unread counts", fmt.Errorf("%w: empty user id", ErrInvalid))
	}
	b := c.qb()
	sql := "SELECT owner, COUNT(*) FROM inbox_items WHERE " + b.inStrings("owner", users) +
		" AND NOT is_read AND NOT is_deleted GROUP BY owner"
	r, err := c.eng.reader().query(ctx, sql, b.args...)
	if err != nil {
		return nil, c.wrap("unread counts", err)
	}
	defer r.Close()
	out := make(map[string]int64, len(users))
	for r.Next() {
		var owner string
		var n int64
		if err := r.Scan(&owner, &n); err != nil {
			return nil, c.wrap("unread counts", err)
		}
		out[owner] = n
	}
	return out, c.wrap("unread counts", r.Err())
}

// visible locks and returns the items among ids the viewer sees, split into
// the viewer's own items and shared ones.
func (c *core) visible(ctx context.Context, tx dbtx, vw viewer, ids []int64) (own, shared []int64, err error) {
	b := c.qb()
	u := b.arg(vw.user)
	sql := "SELECT i.id, i.owner FROM " + fromView(u) + " WHERE " + b.inInts("i.id", ids) +
		" AND " + b.inStrings("i.owner", vw.all) + " AND NOT " + deletedExpr(u) + c.d.rowLock
	r, err := tx.query(ctx, sql, b.args...)
	if err != nil {
		return nil, nil, err
	}
	defer r.Close()
	for r.Next() {
		var (
			id    int64
			owner string
		)
		if err := r.Scan(&id, &owner); err != nil {
			return nil, nil, err
		}
		if owner == vw.user {
			own = append(own, id)
		} else {
			shared = append(shared, id)
		}
	}
	if err := r.Err(); err != nil {
		return nil, nil, err
	}
	if len(own)+len(shared) != len(ids) {
		for _, id := range ids {
			if !slices.Contains(own, id) && !slices.Contains(shared, id) {
				return nil, nil, fmt.Errorf("%w: item %s", ErrNotFound, formatID(id))
			}
		}
	}
	return own, shared, nil
}

// setState sets one flag of the viewer's items: col is "is_read" or
// "is_deleted"; own and shared come from visible.
func (c *core) setState(ctx context.Context, tx dbtx, vw viewer, own, shared []int64, col string, val bool) error {
	if len(own) > 0 {
		b := c.qb()
		sql := "UPDATE inbox_items SET " + col + " = " + boolLit(val) + " WHERE " + b.inInts("id", own) +
			" AND owner = " + b.arg(vw.user)
		if _, err := tx.exec(ctx, sql, b.args...); err != nil {
			return err
		}
	}
	if len(shared) > 0 {
		b := c.qb()
		sql := "INSERT INTO inbox_state (user_id, item_id, " + col + ") SELECT CAST(" + b.arg(vw.user) +
			" AS TEXT), i.id, " + boolLit(val) + " FROM inbox_items i WHERE " + b.inInts("i.id", shared) +
			" ON CONFLICT (user_id, item_id) DO UPDATE SET " + col + " = excluded." + col
		if _, err := tx.exec(ctx, sql, b.args...); err != nil {
			return err
		}
	}
	return nil
}

func (c *core) markRead(ctx context.Context, v Viewer, ids []string, read bool) error {
	vw, err := checkViewer(v)
	if err != nil {
		return c.wrap("mark read", err)
	}
	parsed, err := checkIDs(ids)
	if err != nil {
		return c.wrap("mark read", err)
	}
	err = c.eng.inTx(ctx, func(tx dbtx) error {
		own, shared, err := c.visible(ctx, tx, vw, parsed)
		if err != nil {
			return err
		}
		return c.setState(ctx, tx, vw, own, shared, "is_read", read)
	})
	return c.wrap("mark read", err)
}

func (c *core) delete(ctx context.Context, v Viewer, id string) error {
	vw, err := checkViewer(v)
	if err != nil {
		return c.wrap("delete", err)
	}
	parsed, err := parseID(id)
	if err != nil {
		return c.wrap("delete", err)
	}
	err = c.eng.inTx(ctx, func(tx dbtx) error {
		own, shared, err := c.visible(ctx, tx, vw, []int64{parsed})
		if err != nil {
			return err
		}
		return c.setState(ctx, tx, vw, own, shared, "is_deleted", true)
	})
	return c.wrap("delete", err)
}

// setAll sets one flag ("is_read" or "is_deleted") to true on every item
// the viewer sees that does not have it yet, and returns how many changed.
func (c *core) setAll(ctx context.Context, vw viewer, col string) (int64, error) {
	var total int64
	err := c.eng.inTx(ctx, func(tx dbtx) error {
		b := c.qb()
		sql := "UPDATE inbox_items SET " + col + " = TRUE WHERE owner = " + b.arg(vw.user) + " AND NOT is_deleted"
		if col == "is_read" {
			sql += " AND NOT is_read"
		}
		n, err := tx.exec(ctx, sql, b.args...)
		if err != nil {
			return err
		}
		total = n
		if len(vw.groups) == 0 {
			return nil
		}
		b = c.qb()
		u := b.arg(vw.user)
		sql = "INSERT INTO inbox_state (user_id, item_id, " + col + ") SELECT CAST(" + u + " AS TEXT), i.id, TRUE FROM " +
			fromView(u) + " WHERE " + b.inStrings("i.owner", vw.groups) + " AND NOT COALESCE(s.is_deleted, FALSE)"
		if col == "is_read" {
			sql += " AND NOT COALESCE(s.is_read, FALSE)"
		}
		sql += " ON CONFLICT (user_id, item_id) DO UPDATE SET " + col + " = TRUE"
		n, err = tx.exec(ctx, sql, b.args...)
		if err != nil {
			return err
		}
		total += n
		return nil
	})
	if err != nil {
		return 0, err
	}
	return total, nil
}

func (c *core) markAllRead(ctx context.Context, v Viewer) (int64, error) {
	vw, err := checkViewer(v)
	if err != nil {
		return 0, c.wrap("mark all read", err)
	}
	n, err := c.setAll(ctx, vw, "is_read")
	return n, c.wrap("mark all read", err)
}

func (c *core) clear(ctx context.Context, v Viewer) (int64, error) {
	vw, err := checkViewer(v)
	if err != nil {
		return 0, c.wrap("clear", err)
	}
	n, err := c.setAll(ctx, vw, "is_deleted")
	return n, c.wrap("clear", err)
}

func (c *core) preferences(ctx context.Context, userID string) (Preferences, error) {
	if userID == "" {
		return Preferences{}, c.wrap("preferences", fmt.Errorf("%w: empty user id", ErrInvalid))
	}
	b := c.qb()
	sql := "SELECT p.enabled, p.sound, p.email, m.event_type FROM preferences p" +
		" LEFT JOIN preference_muted m ON m.user_id = p.user_id WHERE p.user_id = " + b.arg(userID)
	r, err := c.eng.reader().query(ctx, sql, b.args...)
	if err != nil {
		return Preferences{}, c.wrap("preferences", err)
	}
	defer r.Close()
	p := Preferences{Muted: []string{}}
	found := false
	for r.Next() {
		var muted *string
		if err := r.Scan(&p.Enabled, &p.Sound, &p.Email, &muted); err != nil {
			return Preferences{}, c.wrap("preferences", err)
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
		sql := "INSERT INTO preferences (user_id, enabled, sound, email) VALUES (" + b.arg(userID) + ", " +
			b.arg(p.Enabled) + ", " + b.arg(p.Sound) + ", " + b.arg(p.Email) + ") ON CONFLICT (user_id) DO UPDATE SET" +
			" enabled = excluded.enabled, sound = excluded.sound, email = excluded.email"
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
		// Per-viewer state of the deleted items goes with them: inbox_state
		// references inbox_items ON DELETE CASCADE.
		return nil
	})
	if err != nil {
		return 0, c.wrap("prune", err)
	}
	return total, nil
}
