package store

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"
)

// A viewer's state of an item lives in the item's row when the viewer owns
// it, and in the viewer's inbox_state row for a shared item (no row: the
// defaults, unseen and unread, in the inbox). The SQL below reads it
// through a getter: plain columns for the viewer's own rows, or view
// expressions over "inbox_items i LEFT JOIN inbox_state s" (fromView).

// getter returns the SQL of the old value of one state column.
type getter func(col string) string

// plain reads the columns of the row being updated: the viewer's own rows.
func plain(col string) string { return col }

// viewCols reads the viewer's state of item i in fromView(u).
func viewCols(u string) getter {
	return func(col string) string {
		if strings.HasPrefix(col, "is_") {
			return "(CASE WHEN i.owner = " + u + " THEN i." + col + " ELSE COALESCE(s." + col + ", FALSE) END)"
		}
		return "(CASE WHEN i.owner = " + u + " THEN i." + col + " ELSE s." + col + " END)"
	}
}

// ownCols reads the state columns of item i itself: for a viewer without
// groups, whose items are all its own, so that queries can use the
// partial indexes on those columns.
func ownCols(col string) string { return "i." + col }

// from returns the FROM clause and the state getter of a viewer's items:
// the items alone for a viewer without groups, else joined with the
// viewer's state rows.
func (b *qb) from(vw viewer) (string, getter) {
	if len(vw.groups) == 0 {
		return "inbox_items i", ownCols
	}
	u := b.arg(vw.user)
	return fromView(u), viewCols(u)
}

// fromView is the FROM clause of a viewer's items: each item with the
// viewer's state row for it, if any; u is the user id placeholder.
func fromView(u string) string {
	return "inbox_items i LEFT JOIN inbox_state s ON s.item_id = i.id AND s.user_id = " + u
}

// notExpired keeps items whose expiry, if any, is after n; p is the
// items' table prefix ("i." or "").
func notExpired(p, n string) string {
	return "(" + p + "expires_at IS NULL OR " + p + "expires_at > " + n + ")"
}

// inInbox is the condition "neither archived nor snoozed at n".
func inInbox(get getter, n string) string {
	return get("archived_at") + " IS NULL AND (" + get("snoozed_until") + " IS NULL OR " + get("snoozed_until") + " <= " + n + ")"
}

// stateCond is the SQL condition of st at time n.
func stateCond(get getter, st State, n string) string {
	switch st {
	case StateUnseen:
		return inInbox(get, n) + " AND NOT " + get("is_seen")
	case StateUnread:
		return inInbox(get, n) + " AND NOT " + get("is_read")
	case StateRead:
		return inInbox(get, n) + " AND " + get("is_read")
	case StateArchived:
		return get("archived_at") + " IS NOT NULL"
	case StateSnoozed:
		return get("archived_at") + " IS NULL AND " + get("snoozed_until") + " > " + n
	case StateAll:
		return "TRUE"
	}
	return inInbox(get, n)
}

// filterCond adds the conditions of f other than its state on the items'
// own columns (prefix p).
func (b *qb) filterCond(p string, f filter) string {
	var out string
	if len(f.types) > 0 {
		out += " AND " + b.inStrings(p+"event_type", f.types)
	}
	if len(f.categories) > 0 {
		out += " AND " + b.inStrings(p+"category", f.categories)
	}
	if len(f.priorities) > 0 {
		out += " AND " + b.inInts(p+"priority", f.priorities)
	}
	return out
}

// assign is one column of a state change and its new value.
type assign struct{ col, expr string }

// once returns a placeholder of v made on first use: PostgreSQL refuses
// a parameter that the statement never uses.
func (b *qb) once(v any) func() string {
	ph := ""
	return func() string {
		if ph == "" {
			ph = b.arg(v)
		}
		return ph
	}
}

// plan returns the condition under which ch changes a row (on old values
// read by get) and the columns it sets. now and until give placeholders of
// times; ts is the dialect's timestamp type, for casts (PostgreSQL needs
// the types of the values it inserts from a SELECT).
func (ch Change) plan(get getter, now, until func() string, ts string) (cond string, set []assign) {
	at := func() string { return "CAST(" + now() + " AS " + ts + ")" }
	null := "CAST(NULL AS " + ts + ")"
	switch ch.Action {
	case ActionSeen:
		return "NOT " + get("is_seen"), []assign{{"is_seen", "TRUE"}, {"seen_at", at()}}
	case ActionUnseen:
		return get("is_seen"), []assign{{"is_seen", "FALSE"}, {"seen_at", null}}
	case ActionRead:
		return "NOT " + get("is_read"), []assign{
			{"is_read", "TRUE"}, {"read_at", at()},
			{"is_seen", "TRUE"}, {"seen_at", "CASE WHEN " + get("is_seen") + " THEN " + get("seen_at") + " ELSE " + at() + " END"},
		}
	case ActionUnread:
		return get("is_read"), []assign{{"is_read", "FALSE"}, {"read_at", null}}
	case ActionArchive:
		return get("archived_at") + " IS NULL", []assign{{"archived_at", at()}, {"snoozed_until", null}}
	case ActionUnarchive:
		return get("archived_at") + " IS NOT NULL", []assign{{"archived_at", null}}
	case ActionSnooze:
		return "TRUE", []assign{
			{"snoozed_until", "CAST(" + until() + " AS " + ts + ")"}, {"archived_at", null},
			{"is_seen", "FALSE"}, {"seen_at", null}, {"is_read", "FALSE"}, {"read_at", null},
		}
	case ActionUnsnooze:
		return get("snoozed_until") + " > " + at(), []assign{{"snoozed_until", null}}
	case ActionDelete:
		return "TRUE", []assign{{"is_deleted", "TRUE"}}
	}
	panic(fmt.Sprintf("store: unchecked action %d", ch.Action))
}

// apply applies ch to the viewer's items selected by where: own rows with
// an UPDATE, shared rows with an upsert of the viewer's state rows. where
// builds the selection's condition (after "WHERE owner-condition") for a
// getter, the items' prefix and the placeholder of now. It returns how many
// items changed.
func (c *core) apply(ctx context.Context, tx dbtx, vw viewer, ch Change, now time.Time,
	where func(b *qb, get getter, p string, n func() string) string, own, shared bool) (int64, error) {
	var total int64
	if own {
		b := c.qb()
		n, until := b.once(c.eng.timeArg(now)), b.once(c.untilArg(ch))
		cond, set := ch.plan(plain, n, until, c.d.tsType)
		cols := make([]string, len(set))
		for i, a := range set {
			cols[i] = a.col + " = " + a.expr
		}
		sql := "UPDATE inbox_items SET " + strings.Join(cols, ", ") + " WHERE owner = " + b.arg(vw.user) +
			where(b, plain, "", n) + " AND " + cond
		k, err := tx.exec(ctx, sql, b.args...)
		if err != nil {
			return 0, err
		}
		total += k
	}
	if shared && len(vw.groups) > 0 {
		b := c.qb()
		u := b.arg(vw.user)
		n, until := b.once(c.eng.timeArg(now)), b.once(c.untilArg(ch))
		get := viewCols(u)
		cond, set := ch.plan(get, n, until, c.d.tsType)
		cols := make([]string, len(set))
		vals := make([]string, len(set))
		upd := make([]string, len(set))
		for i, a := range set {
			cols[i], vals[i], upd[i] = a.col, a.expr, a.col+" = excluded."+a.col
		}
		// The SELECT computes every new value from the viewer's current
		// state (the defaults when there is no state row yet), so the
		// conflict branch only copies them.
		sql := "INSERT INTO inbox_state (user_id, item_id, " + strings.Join(cols, ", ") + ") SELECT CAST(" + u +
			" AS TEXT), i.id, " + strings.Join(vals, ", ") + " FROM " + fromView(u) + " WHERE " +
			b.inStrings("i.owner", vw.groups) + where(b, get, "i.", n) + " AND " + cond +
			" ON CONFLICT (user_id, item_id) DO UPDATE SET " + strings.Join(upd, ", ")
		k, err := tx.exec(ctx, sql, b.args...)
		if err != nil {
			return 0, err
		}
		total += k
	}
	return total, nil
}

// untilArg is the argument of a change's snooze end: the time, or NULL.
func (c *core) untilArg(ch Change) any {
	if ch.Action != ActionSnooze {
		return nil
	}
	return c.eng.timeArg(ch.Until)
}

// update applies ch to the viewer's items with ids: all of them are
// visible to the viewer, or nothing changes and the error is ErrNotFound.
func (c *core) update(ctx context.Context, op string, v Viewer, ids []string, ch Change) error {
	vw, err := checkViewer(v)
	if err != nil {
		return c.wrap(op, err)
	}
	parsed, err := checkIDs(ids)
	if err != nil {
		return c.wrap(op, err)
	}
	now := c.now().UTC().Truncate(time.Microsecond)
	if err := checkChange(ch, now); err != nil {
		return c.wrap(op, err)
	}
	err = c.eng.inTx(ctx, func(tx dbtx) error {
		own, shared, err := c.visible(ctx, tx, vw, parsed, now)
		if err != nil {
			return err
		}
		where := func(ids []int64) func(b *qb, _ getter, p string, _ func() string) string {
			return func(b *qb, _ getter, p string, _ func() string) string { return " AND " + b.inInts(p+"id", ids) }
		}
		if len(own) > 0 {
			if _, err := c.apply(ctx, tx, vw, ch, now, where(own), true, false); err != nil {
				return err
			}
		}
		if len(shared) > 0 {
			if _, err := c.apply(ctx, tx, vw, ch, now, where(shared), false, true); err != nil {
				return err
			}
		}
		return nil
	})
	return c.wrap(op, err)
}

// updateWhere applies ch to every item of the viewer matching f and
// returns how many changed.
func (c *core) updateWhere(ctx context.Context, op string, v Viewer, f Filter, ch Change) (int64, error) {
	vw, err := checkViewer(v)
	if err != nil {
		return 0, c.wrap(op, err)
	}
	cf, err := checkFilter(f)
	if err != nil {
		return 0, c.wrap(op, err)
	}
	now := c.now().UTC().Truncate(time.Microsecond)
	if err := checkChange(ch, now); err != nil {
		return 0, c.wrap(op, err)
	}
	where := func(b *qb, get getter, p string, n func() string) string {
		return " AND NOT " + get("is_deleted") + " AND " + notExpired(p, n()) + " AND " + stateCond(get, cf.state, n()) + b.filterCond(p, cf)
	}
	var total int64
	err = c.eng.inTx(ctx, func(tx dbtx) error {
		k, err := c.apply(ctx, tx, vw, ch, now, where, !vw.groupsOnly, true)
		total = k
		return err
	})
	if err != nil {
		return 0, c.wrap(op, err)
	}
	return total, nil
}

// visible locks and returns the items among ids the viewer sees (not
// deleted, not expired at now), split into the viewer's own items and
// shared ones; any other id is ErrNotFound.
func (c *core) visible(ctx context.Context, tx dbtx, vw viewer, ids []int64, now time.Time) (own, shared []int64, err error) {
	b := c.qb()
	u := b.arg(vw.user)
	n := b.arg(c.eng.timeArg(now))
	sql := "SELECT i.id, i.owner FROM " + fromView(u) + " WHERE " + b.inInts("i.id", ids) +
		" AND " + b.inStrings("i.owner", vw.all) + " AND NOT " + viewCols(u)("is_deleted") +
		" AND " + notExpired("i.", n) + c.d.rowLock
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

// badgeOwn is the condition of a viewer's own rows that badges count; its
// first three terms are those of the partial index inbox_items_owner_badge,
// which the planner uses only when the query repeats them.
func badgeOwn(n string) string {
	return " AND NOT is_deleted AND archived_at IS NULL AND (NOT is_read OR NOT is_seen)" +
		" AND (snoozed_until IS NULL OR snoozed_until <= " + n + ") AND " + notExpired("", n)
}

// badge counts the unseen and unread items of the viewer's inbox.
func (c *core) badge(ctx context.Context, vw viewer) (Counts, error) {
	b := c.qb()
	u := b.arg(vw.user)
	n := b.arg(c.eng.timeArg(c.now().UTC()))
	var parts []string
	if !vw.groupsOnly {
		parts = append(parts, "SELECT is_seen AS seen, is_read AS rd FROM inbox_items WHERE owner = "+u+badgeOwn(n))
	}
	if len(vw.groups) > 0 {
		get := viewCols(u)
		parts = append(parts, "SELECT "+get("is_seen")+" AS seen, "+get("is_read")+" AS rd FROM "+fromView(u)+" WHERE "+
			b.inStrings("i.owner", vw.groups)+" AND NOT "+get("is_deleted")+" AND "+notExpired("i.", n)+
			" AND "+inInbox(get, n)+" AND (NOT "+get("is_read")+" OR NOT "+get("is_seen")+")")
	}
	sql := "SELECT COALESCE(SUM(CASE WHEN seen THEN 0 ELSE 1 END), 0), COALESCE(SUM(CASE WHEN rd THEN 0 ELSE 1 END), 0) FROM (" +
		strings.Join(parts, " UNION ALL ") + ") AS b"
	r, err := c.eng.reader().query(ctx, sql, b.args...)
	if err != nil {
		return Counts{}, err
	}
	defer r.Close()
	var out Counts
	if !r.Next() {
		if err := r.Err(); err != nil {
			return Counts{}, err
		}
		return Counts{}, fmt.Errorf("query returned no row")
	}
	if err := r.Scan(&out.Unseen, &out.Unread); err != nil {
		return Counts{}, err
	}
	return out, r.Err()
}

// badgeOf counts the unseen and unread items of the viewer's inbox.
func (c *core) badgeOf(ctx context.Context, v Viewer) (Counts, error) {
	vw, err := checkViewer(v)
	if err != nil {
		return Counts{}, c.wrap("badge", err)
	}
	n, err := c.badge(ctx, vw)
	return n, c.wrap("badge", err)
}

func (c *core) unreadCount(ctx context.Context, v Viewer) (int64, error) {
	vw, err := checkViewer(v)
	if err != nil {
		return 0, c.wrap("unread count", err)
	}
	n, err := c.badge(ctx, vw)
	return n.Unread, c.wrap("unread count", err)
}

// MaxCountUsers bounds the users of one UnreadCounts call.
const MaxCountUsers = 500

// unreadCounts counts the unseen and unread items of each of users' inboxes
// (their own items only: no groups) in one query. Users with none are
// absent from the result.
func (c *core) unreadCounts(ctx context.Context, users []string) (map[string]Counts, error) {
	switch {
	case len(users) == 0:
		return map[string]Counts{}, nil
	case len(users) > MaxCountUsers:
		return nil, c.wrap("unread counts", fmt.Errorf("%w: %d users, at most %d", ErrInvalid, len(users), MaxCountUsers))
	case slices.Contains(users, ""):
		return nil, c.wrap("unread counts", fmt.Errorf("%w: empty user id", ErrInvalid))
	}
	b := c.qb()
	n := b.arg(c.eng.timeArg(c.now().UTC()))
	sql := "SELECT owner, COALESCE(SUM(CASE WHEN is_seen THEN 0 ELSE 1 END), 0), COALESCE(SUM(CASE WHEN is_read THEN 0 ELSE 1 END), 0)" +
		" FROM inbox_items WHERE " + b.inStrings("owner", users) + badgeOwn(n) + " GROUP BY owner"
	r, err := c.eng.reader().query(ctx, sql, b.args...)
	if err != nil {
		return nil, c.wrap("unread counts", err)
	}
	defer r.Close()
	out := make(map[string]Counts, len(users))
	for r.Next() {
		var (
			owner string
			n     Counts
		)
		if err := r.Scan(&owner, &n.Unseen, &n.Unread); err != nil {
			return nil, c.wrap("unread counts", err)
		}
		out[owner] = n
	}
	return out, c.wrap("unread counts", r.Err())
}

// counts counts the viewer's items per state.
func (c *core) counts(ctx context.Context, v Viewer) (Counts, error) {
	vw, err := checkViewer(v)
	if err != nil {
		return Counts{}, c.wrap("counts", err)
	}
	b := c.qb()
	n := b.arg(c.eng.timeArg(c.now().UTC()))
	fromSQL, get := b.from(vw)
	sum := func(cond string) string { return "COALESCE(SUM(CASE WHEN " + cond + " THEN 1 ELSE 0 END), 0)" }
	sql := "SELECT " + sum(stateCond(get, StateUnseen, n)) + ", " + sum(stateCond(get, StateUnread, n)) + ", " +
		sum(stateCond(get, StateArchived, n)) + ", " + sum(stateCond(get, StateSnoozed, n)) + ", " +
		sum(stateCond(get, StateInbox, n)) + " FROM " + fromSQL + " WHERE " + b.inStrings("i.owner", vw.all) +
		" AND NOT " + get("is_deleted") + " AND " + notExpired("i.", n)
	r, err := c.eng.reader().query(ctx, sql, b.args...)
	if err != nil {
		return Counts{}, c.wrap("counts", err)
	}
	defer r.Close()
	var out Counts
	if !r.Next() {
		return Counts{}, c.wrap("counts", r.Err())
	}
	if err := r.Scan(&out.Unseen, &out.Unread, &out.Archived, &out.Snoozed, &out.Inbox); err != nil {
		return Counts{}, c.wrap("counts", err)
	}
	return out, c.wrap("counts", r.Err())
}

// nextWake returns the earliest snooze end or expiry after t, of items
// and of viewers' states, whether or not they still matter (a deleted
// item's snooze wakes a node for nothing, which is harmless).
func (c *core) nextWake(ctx context.Context, after time.Time) (time.Time, bool, error) {
	b := c.qb()
	a := b.arg(c.eng.timeArg(after.UTC().Truncate(time.Microsecond)))
	sql := "SELECT MIN(t) FROM (" +
		"SELECT MIN(snoozed_until) AS t FROM inbox_items WHERE snoozed_until > " + a +
		" UNION ALL SELECT MIN(snoozed_until) FROM inbox_state WHERE snoozed_until > " + a +
		" UNION ALL SELECT MIN(expires_at) FROM inbox_items WHERE expires_at > " + a + ") AS w"
	r, err := c.eng.reader().query(ctx, sql, b.args...)
	if err != nil {
		return time.Time{}, false, c.wrap("next wake", err)
	}
	defer r.Close()
	if !r.Next() {
		return time.Time{}, false, c.wrap("next wake", r.Err())
	}
	td := c.eng.newNullTimeDest()
	if err := r.Scan(td.dest()); err != nil {
		return time.Time{}, false, c.wrap("next wake", err)
	}
	t := td.value()
	return t, !t.IsZero(), c.wrap("next wake", r.Err())
}

// MaxEnded bounds one SnoozesEnded page.
const MaxEnded = 1000

// snoozesEnded returns, in (Until, ID, User) order, up to limit snoozes
// that ended after mark and at or before until, of items still visible to
// their viewer and not archived.
func (c *core) snoozesEnded(ctx context.Context, after SnoozeMark, until time.Time, limit int) ([]Returned, error) {
	if limit < 1 || limit > MaxEnded {
		return nil, c.wrap("snoozes ended", fmt.Errorf("%w: limit %d not in 1..%d", ErrInvalid, limit, MaxEnded))
	}
	var afterID int64
	if after.ID != "" {
		id, err := parseID(after.ID)
		if err != nil {
			return nil, c.wrap("snoozes ended", err)
		}
		afterID = id
	}
	b := c.qb()
	at := b.arg(c.eng.timeArg(after.At.UTC().Truncate(time.Microsecond)))
	to := b.arg(c.eng.timeArg(until.UTC().Truncate(time.Microsecond)))
	// past is "(t, id, user) after the mark", spelled out for both dialects.
	past := func(t, id, user string) string {
		if afterID == 0 {
			return t + " > " + at
		}
		ida, ua := b.arg(afterID), b.arg(after.User)
		return "(" + t + " > " + at + " OR (" + t + " = " + at + " AND (" + id + " > " + ida + " OR (" + id + " = " + ida +
			" AND " + user + " > CAST(" + ua + " AS TEXT)))))"
	}
	own := "SELECT i.owner AS usr, i.id AS id, i.snoozed_until AS t, i.event AS ev FROM inbox_items i WHERE " +
		past("i.snoozed_until", "i.id", "i.owner") + " AND i.snoozed_until <= " + to +
		" AND NOT i.is_deleted AND i.archived_at IS NULL AND " + notExpired("i.", to)
	shared := "SELECT s.user_id, i.id, s.snoozed_until, i.event FROM inbox_state s JOIN inbox_items i ON i.id = s.item_id WHERE " +
		past("s.snoozed_until", "i.id", "s.user_id") + " AND s.snoozed_until <= " + to +
		" AND NOT s.is_deleted AND s.archived_at IS NULL AND " + notExpired("i.", to)
	sql := "SELECT usr, id, t, ev FROM (" + own + " UNION ALL " + shared + ") AS e ORDER BY t, id, usr LIMIT " + b.arg(int64(limit))
	r, err := c.eng.reader().query(ctx, sql, b.args...)
	if err != nil {
		return nil, c.wrap("snoozes ended", err)
	}
	defer r.Close()
	var out []Returned
	for r.Next() {
		var (
			e  Returned
			id int64
			td = c.eng.newTimeDest()
		)
		if err := r.Scan(&e.User, &id, td.dest(), &e.Event); err != nil {
			return nil, c.wrap("snoozes ended", err)
		}
		e.ID, e.Until = formatID(id), td.value()
		out = append(out, e)
	}
	return out, c.wrap("snoozes ended", r.Err())
}

// expiredOwners returns the owners of items that expired in (after, until].
func (c *core) expiredOwners(ctx context.Context, after, until time.Time) ([]string, error) {
	b := c.qb()
	sql := "SELECT DISTINCT owner FROM inbox_items WHERE expires_at > " + b.arg(c.eng.timeArg(after.UTC().Truncate(time.Microsecond))) +
		" AND expires_at <= " + b.arg(c.eng.timeArg(until.UTC().Truncate(time.Microsecond))) + " AND NOT is_deleted"
	r, err := c.eng.reader().query(ctx, sql, b.args...)
	if err != nil {
		return nil, c.wrap("expired owners", err)
	}
	defer r.Close()
	var out []string
	for r.Next() {
		var o string
		if err := r.Scan(&o); err != nil {
			return nil, c.wrap("expired owners", err)
		}
		out = append(out, o)
	}
	return out, c.wrap("expired owners", r.Err())
}
