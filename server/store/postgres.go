package store

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// pgMigrationLockKey is the advisory lock key that serialises migrations of
// one database across processes.
const pgMigrationLockKey = 0x6e6f74696679 // "notify"

// pgCommitters is how many shared Insert transactions may run at once: one
// can be written while another waits for its commit, and the rest of the
// pool stays free for reads and other writes.
const pgCommitters = 2

// pgMigrationsTable creates the table recording applied migrations.
const pgMigrationsTable = `CREATE TABLE IF NOT EXISTS schema_migrations (
    version    bigint      PRIMARY KEY,
    name       text        NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)`

// Postgres is a Store in a PostgreSQL database, through a pgx connection
// pool. Its tables live in the first schema of the connection's search_path.
type Postgres struct {
	c    core
	pool *pgxpool.Pool
}

// OpenPostgres connects to the database named by dsn (a URL or key=value
// connection string understood by pgx) and applies pending migrations. A
// malformed dsn is ErrInvalid; a server that cannot be reached, including
// when ctx expires while connecting, is ErrUnavailable.
func OpenPostgres(ctx context.Context, dsn string) (*Postgres, error) {
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("store: open postgres: %w: %w", ErrInvalid, err)
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("store: open postgres: %w", err)
	}
	eng := &pgEngine{pool: pool}
	// FOR NO KEY UPDATE, not FOR UPDATE: the items are changed but never
	// their key, and a concurrent insert of a viewer's state row takes a
	// KEY SHARE lock on its item (the foreign key), which FOR UPDATE would
	// block, deadlocking an action by id with a bulk one.
	s := &Postgres{c: newCore(eng, dialect{dollar: true, rowLock: " FOR NO KEY UPDATE OF i", tsType: "timestamptz"}), pool: pool}
	if err := s.open(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("store: open postgres: %w", classifyConnect(err))
	}
	s.c.gc = newGroupCommit(eng, s.c.writeItems, pgCommitters)
	return s, nil
}

func (s *Postgres) open(ctx context.Context) error {
	if err := s.pool.Ping(ctx); err != nil {
		return err
	}
	ms, err := loadMigrations(migrationFiles, "migrations/postgres")
	if err != nil {
		return err
	}
	if _, err = migrate(ctx, s.c.eng, s.c.d, pgMigrationsTable, ms); err != nil {
		return err
	}
	return migrateRiverPostgres(ctx, s.pool)
}

// classifyConnect classifies an error met while connecting: besides what
// classifyPG recognises, an expired context then means unavailable.
func classifyConnect(err error) error {
	c := classifyPG(err)
	if !errors.Is(c, ErrUnavailable) && errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	return c
}

// Insert stores items in one transaction: all or none. An item whose owner
// and event id are already stored is skipped. An empty Owner, EventID or
// EventType is ErrInvalid and nothing is stored.
//
// The transaction is shared with the Insert calls of other goroutines
// waiting at the same time (group commit), as for SQLite.Insert: nil once
// committed, an error when items were not stored, and on ctx's end ctx's
// error, the items being stored or not.
func (s *Postgres) Insert(ctx context.Context, items []NewItem) error {
	return s.c.insert(ctx, items)
}

// List returns up to q.Limit of the viewer's items matching q, newest
// first or by priority, and the cursor of the next page ("" on the last
// page). Expired items are never listed. A malformed cursor (or one of the
// other order), a limit outside 1..MaxPageSize or a bad filter is
// ErrInvalid.
func (s *Postgres) List(ctx context.Context, v Viewer, q ListQuery) ([]Item, string, error) {
	return s.c.list(ctx, v, q)
}

// UnreadCount returns how many items of the viewer's inbox (neither
// archived nor snoozed) are unread.
func (s *Postgres) UnreadCount(ctx context.Context, v Viewer) (int64, error) {
	return s.c.unreadCount(ctx, v)
}

// UnreadCounts counts the unseen and unread items of several users'
// inboxes in one query (Counts.Unseen and Counts.Unread only).
func (s *Postgres) UnreadCounts(ctx context.Context, users []string) (map[string]Counts, error) {
	return s.c.unreadCounts(ctx, users)
}

// Badge counts the unseen and unread items of the viewer's inbox
// (Counts.Unseen and Counts.Unread only), with the indexes made for it.
func (s *Postgres) Badge(ctx context.Context, v Viewer) (Counts, error) {
	return s.c.badgeOf(ctx, v)
}

// Counts counts the viewer's items per state.
func (s *Postgres) Counts(ctx context.Context, v Viewer) (Counts, error) {
	return s.c.counts(ctx, v)
}

// Update applies ch to 1..MaxMarkIDs items at once, in one transaction.
// If any id is not an item the viewer sees, it returns ErrNotFound and
// changes nothing; a malformed id, an unknown action or a snooze that does
// not end after now is ErrInvalid. Items whose state already is what ch
// makes it keep their times.
func (s *Postgres) Update(ctx context.Context, v Viewer, ids []string, ch Change) error {
	return s.c.update(ctx, "update", v, ids, ch)
}

// UpdateWhere applies ch to every item of the viewer matching f, in one
// transaction, and returns how many changed.
func (s *Postgres) UpdateWhere(ctx context.Context, v Viewer, f Filter, ch Change) (int64, error) {
	return s.c.updateWhere(ctx, "update where", v, f, ch)
}

// NextWake returns the earliest time after after when a snooze ends or an
// item expires, of any viewer; false when there is none.
func (s *Postgres) NextWake(ctx context.Context, after time.Time) (time.Time, bool, error) {
	return s.c.nextWake(ctx, after)
}

// SnoozesEnded returns, in (Until, ID, User) order, up to limit
// (1..MaxEnded) snoozes that ended after the mark and at or before until,
// of items still in their viewer's inbox. Page on with the last one's Mark.
func (s *Postgres) SnoozesEnded(ctx context.Context, after SnoozeMark, until time.Time, limit int) ([]Returned, error) {
	return s.c.snoozesEnded(ctx, after, until, limit)
}

// ExpiredOwners returns the owners of items that expired after after and
// at or before until.
func (s *Postgres) ExpiredOwners(ctx context.Context, after, until time.Time) ([]string, error) {
	return s.c.expiredOwners(ctx, after, until)
}

// MarkRead sets the viewer's read state of 1..MaxMarkIDs items at once. If
// any id is not an item the viewer sees, it returns ErrNotFound and changes
// nothing; a malformed id is ErrInvalid.
func (s *Postgres) MarkRead(ctx context.Context, v Viewer, ids []string, read bool) error {
	return s.c.markRead(ctx, v, ids, read)
}

// MarkAllRead marks every item of the viewer's inbox (neither archived nor
// snoozed) read and returns how many changed.
func (s *Postgres) MarkAllRead(ctx context.Context, v Viewer) (int64, error) {
	return s.c.markAllRead(ctx, v)
}

// Delete removes the item from the viewer's inbox; a shared item is hidden
// for this viewer only. An id the viewer does not see is ErrNotFound.
func (s *Postgres) Delete(ctx context.Context, v Viewer, id string) error {
	return s.c.delete(ctx, v, id)
}

// Clear removes every item from the viewer's inbox (shared items only for
// this viewer) and returns how many it removed.
func (s *Postgres) Clear(ctx context.Context, v Viewer) (int64, error) {
	return s.c.clear(ctx, v)
}

// Preferences returns the user's preferences, or DefaultPreferences if none
// were set.
func (s *Postgres) Preferences(ctx context.Context, userID string) (Preferences, error) {
	return s.c.preferences(ctx, userID)
}

// SetPreferences replaces the user's preferences. Muted is stored sorted and
// without repeats; an empty muted type is ErrInvalid.
func (s *Postgres) SetPreferences(ctx context.Context, userID string, p Preferences) error {
	return s.c.setPreferences(ctx, userID, p)
}

// HasEventFrom reports whether owner has, or had, an item from
// restaurant: one not pruned yet, deleted or not.
func (s *Postgres) HasEventFrom(ctx context.Context, owner, restaurant string) (bool, error) {
	return s.c.hasEventFrom(ctx, owner, restaurant)
}

// Prune deletes items created before now-maxAge, items expired at now
// (unless now is zero) and, per owner, all but the newest maxPerOwner
// items, with their per-viewer state; a zero bound is disabled. It returns
// how many items it deleted.
func (s *Postgres) Prune(ctx context.Context, maxPerOwner int, maxAge time.Duration, now time.Time) (int64, error) {
	return s.c.prune(ctx, maxPerOwner, maxAge, now)
}

// Ping checks that the server answers.
func (s *Postgres) Ping(ctx context.Context) error {
	if err := s.pool.Ping(ctx); err != nil {
		return fmt.Errorf("store: ping: %w", classifyConnect(err))
	}
	return nil
}

// Close closes the pool, waiting for connections in use to be returned.
// Insert calls already queued are committed first (for up to 5 s, after
// which the transactions in progress are aborted and the calls left fail
// with ErrUnavailable); Insert calls after Close fail with ErrUnavailable.
func (s *Postgres) Close() error {
	if s.c.gc != nil {
		s.c.gc.close()
	}
	s.pool.Close()
	return nil
}

// pgEngine runs the core's statements on a pgx pool.
type pgEngine struct {
	pool *pgxpool.Pool
}

func (e *pgEngine) reader() dbtx { return pgxRunner{e.pool} }

func (e *pgEngine) inTx(ctx context.Context, fn func(tx dbtx) error) error {
	return pgx.BeginFunc(ctx, e.pool, func(tx pgx.Tx) error { return fn(pgxRunner{tx}) })
}

func (e *pgEngine) lockMigrations(ctx context.Context, tx dbtx) error {
	b := &qb{d: dialect{dollar: true}}
	_, err := tx.exec(ctx, "SELECT pg_advisory_xact_lock("+b.arg(int64(pgMigrationLockKey))+")", b.args...)
	return err
}

func (e *pgEngine) timeArg(t time.Time) any { return t }

func (e *pgEngine) newTimeDest() timeDest { return &pgTimeDest{} }

func (e *pgEngine) newNullTimeDest() timeDest { return &pgNullTimeDest{} }

func (e *pgEngine) classify(err error) error { return classifyPG(err) }

// classifyPG wraps err in ErrUnavailable when the server could not be
// reached or went away, and in ErrInvalid when it broke a constraint.
func classifyPG(err error) error {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch {
		case strings.HasPrefix(pgErr.Code, "23"): // integrity constraint violation
			return fmt.Errorf("%w: %w", ErrInvalid, err)
		case strings.HasPrefix(pgErr.Code, "08"), // connection exception
			strings.HasPrefix(pgErr.Code, "53"), // insufficient resources
			pgErr.Code == "57P01",               // admin_shutdown
			pgErr.Code == "57P02",               // crash_shutdown
			pgErr.Code == "57P03":               // cannot_connect_now
			return fmt.Errorf("%w: %w", ErrUnavailable, err)
		}
		// Anything else the server said, such as an authentication
		// failure, is not a matter of reachability.
		return err
	}
	var connErr *pgconn.ConnectError
	var netErr net.Error
	switch {
	case errors.As(err, &connErr),
		errors.Is(err, pgconn.ErrConnClosed),
		errors.Is(err, io.ErrUnexpectedEOF),
		errors.Is(err, io.EOF),
		errors.As(err, &netErr) && !netErr.Timeout():
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	return err
}

// pgTimeDest scans a timestamptz column.
type pgTimeDest struct{ v time.Time }

func (d *pgTimeDest) dest() any        { return &d.v }
func (d *pgTimeDest) value() time.Time { return d.v.UTC() }

// pgNullTimeDest scans a nullable timestamptz column.
type pgNullTimeDest struct{ v *time.Time }

func (d *pgNullTimeDest) dest() any { return &d.v }
func (d *pgNullTimeDest) value() time.Time {
	if d.v == nil {
		return time.Time{}
	}
	return d.v.UTC()
}

// pgxQuerier is the part of *pgxpool.Pool and pgx.Tx that pgxRunner uses.
type pgxQuerier interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

// pgxRunner adapts pgx to dbtx.
type pgxRunner struct{ q pgxQuerier }

func (r pgxRunner) exec(ctx context.Context, query string, args ...any) (int64, error) {
	tag, err := r.q.Exec(ctx, query, args...)
	if err != nil {
		return 0, err
	}
	return tag.RowsAffected(), nil
}

func (r pgxRunner) query(ctx context.Context, query string, args ...any) (rows, error) {
	rs, err := r.q.Query(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	return rs, nil
}
