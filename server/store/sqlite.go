package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"time"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// sqliteBusyTimeout is how long a statement waits for another process's
// lock before failing with ErrUnavailable.
const sqliteBusyTimeout = 5 * time.Second

// sqliteReaders is the size of the read-only connection pool.
const sqliteReaders = 4

// sqliteMigrationsTable creates the table recording applied migrations.
const sqliteMigrationsTable = `CREATE TABLE IF NOT EXISTS schema_migrations (
    version    INTEGER PRIMARY KEY,
    name       TEXT    NOT NULL,
    applied_at TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
) STRICT`

// SQLite is a Store in one SQLite file, using the pure-Go modernc.org/sqlite
// driver. Writes go through a single connection in WAL mode with
// synchronous=FULL; reads use a pool of read-only connections. Concurrent
// Insert calls share transactions, so one fsync commits many of them (group
// commit, see Insert).
type SQLite struct {
	c   core
	eng *sqliteEngine
}

// OpenSQLite opens (creating if needed) the SQLite database at path, creating
// its parent directory, and applies pending migrations.
func OpenSQLite(ctx context.Context, path string) (*SQLite, error) {
	if path == "" {
		return nil, fmt.Errorf("store: open sqlite: %w: empty path", ErrInvalid)
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("store: open sqlite: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(abs), 0o750); err != nil {
		return nil, fmt.Errorf("store: open sqlite: %w", err)
	}
	eng := &sqliteEngine{}
	s := &SQLite{c: newCore(eng, dialect{tsType: "INTEGER"}), eng: eng}
	if err := s.open(ctx, abs); err != nil {
		if cerr := eng.close(); cerr != nil {
			err = errors.Join(err, cerr)
		}
		return nil, fmt.Errorf("store: open sqlite %s: %w", abs, eng.classify(err))
	}
	// One committer: there is one writer connection.
	s.c.gc = newGroupCommit(eng, s.c.writeItems, 1)
	return s, nil
}

func (s *SQLite) open(ctx context.Context, abs string) error {
	var err error
	if s.eng.w, err = sql.Open("sqlite", sqliteDSN(abs, true)); err != nil {
		return err
	}
	// One writer connection serialises writes; it is kept open for good.
	s.eng.w.SetMaxOpenConns(1)
	s.eng.w.SetMaxIdleConns(1)
	s.eng.w.SetConnMaxLifetime(0)
	s.eng.w.SetConnMaxIdleTime(0)
	if err := s.eng.w.PingContext(ctx); err != nil {
		return err
	}
	ms, err := loadMigrations(migrationFiles, "migrations/sqlite")
	if err != nil {
		return err
	}
	if _, err := migrate(ctx, s.eng, s.c.d, sqliteMigrationsTable, ms); err != nil {
		return err
	}
	if err := migrateRiverSQLite(ctx, s.eng.w); err != nil {
		return err
	}
	if err := s.eng.prepare(ctx, s.c.insertSQL); err != nil {
		return err
	}
	if s.eng.r, err = sql.Open("sqlite", sqliteDSN(abs, false)); err != nil {
		return err
	}
	s.eng.r.SetMaxOpenConns(sqliteReaders)
	s.eng.r.SetMaxIdleConns(sqliteReaders)
	return s.eng.r.PingContext(ctx)
}

// sqliteDSN returns the driver's URI for the file at abs: the writer's with
// WAL, FULL sync, foreign keys and BEGIN IMMEDIATE transactions, or a
// reader's, which is read-only.
func sqliteDSN(abs string, writer bool) string {
	q := url.Values{}
	q.Add("_pragma", fmt.Sprintf("busy_timeout(%d)", sqliteBusyTimeout.Milliseconds()))
	q.Add("_pragma", "foreign_keys(1)")
	q.Add("_pragma", "synchronous(FULL)")
	if writer {
		q.Add("_pragma", "journal_mode(WAL)")
		q.Set("_txlock", "immediate")
	} else {
		q.Add("_pragma", "query_only(1)")
	}
	u := url.URL{Path: abs}
	return "file:" + u.EscapedPath() + "?" + q.Encode()
}

// Insert stores items in one transaction: all or none. An item whose owner
// and event id are already stored is skipped. An empty Owner, EventID or
// EventType is ErrInvalid and nothing is stored.
//
// The transaction is shared with the Insert calls of other goroutines
// waiting at the same time (group commit): Insert returns nil once it is
// committed and synced to disk, and an error when items were not stored;
// another call's failure never fails this one. When ctx ends while the call
// waits, Insert returns ctx's error at once, and the items are then either
// not stored or stored by the shared transaction that was already under
// way: repeat the call (duplicates are skipped) to know which.
func (s *SQLite) Insert(ctx context.Context, items []NewItem) error {
	return s.c.insert(ctx, items)
}

// List returns up to q.Limit of the viewer's items matching q, newest
// first or by priority, and the cursor of the next page ("" on the last
// page). Expired items are never listed. A malformed cursor (or one of the
// other order), a limit outside 1..MaxPageSize or a bad filter is
// ErrInvalid.
func (s *SQLite) List(ctx context.Context, v Viewer, q ListQuery) ([]Item, string, error) {
	return s.c.list(ctx, v, q)
}

// UnreadCount returns how many items of the viewer's inbox (neither
// archived nor snoozed) are unread.
func (s *SQLite) UnreadCount(ctx context.Context, v Viewer) (int64, error) {
	return s.c.unreadCount(ctx, v)
}

// UnreadCounts counts the unseen and unread items of several users'
// inboxes in one query (Counts.Unseen and Counts.Unread only).
func (s *SQLite) UnreadCounts(ctx context.Context, users []string) (map[string]Counts, error) {
	return s.c.unreadCounts(ctx, users)
}

// Badge counts the unseen and unread items of the viewer's inbox
// (Counts.Unseen and Counts.Unread only), with the indexes made for it.
func (s *SQLite) Badge(ctx context.Context, v Viewer) (Counts, error) {
	return s.c.badgeOf(ctx, v)
}

// Counts counts the viewer's items per state.
func (s *SQLite) Counts(ctx context.Context, v Viewer) (Counts, error) {
	return s.c.counts(ctx, v)
}

// Update applies ch to 1..MaxMarkIDs items at once, in one transaction.
// If any id is not an item the viewer sees, it returns ErrNotFound and
// changes nothing; a malformed id, an unknown action or a snooze that does
// not end after now is ErrInvalid. Items whose state already is what ch
// makes it keep their times.
func (s *SQLite) Update(ctx context.Context, v Viewer, ids []string, ch Change) error {
	return s.c.update(ctx, "update", v, ids, ch)
}

// UpdateWhere applies ch to every item of the viewer matching f, in one
// transaction, and returns how many changed.
func (s *SQLite) UpdateWhere(ctx context.Context, v Viewer, f Filter, ch Change) (int64, error) {
	return s.c.updateWhere(ctx, "update where", v, f, ch)
}

// NextWake returns the earliest time after after when a snooze ends or an
// item expires, of any viewer; false when there is none.
func (s *SQLite) NextWake(ctx context.Context, after time.Time) (time.Time, bool, error) {
	return s.c.nextWake(ctx, after)
}

// SnoozesEnded returns, in (Until, ID, User) order, up to limit
// (1..MaxEnded) snoozes that ended after the mark and at or before until,
// of items still in their viewer's inbox. Page on with the last one's Mark.
func (s *SQLite) SnoozesEnded(ctx context.Context, after SnoozeMark, until time.Time, limit int) ([]Returned, error) {
	return s.c.snoozesEnded(ctx, after, until, limit)
}

// ExpiredOwners returns the owners of items that expired after after and
// at or before until.
func (s *SQLite) ExpiredOwners(ctx context.Context, after, until time.Time) ([]string, error) {
	return s.c.expiredOwners(ctx, after, until)
}

// MarkRead sets the viewer's read state of 1..MaxMarkIDs items at once. If
// any id is not an item the viewer sees, it returns ErrNotFound and changes
// nothing; a malformed id is ErrInvalid.
func (s *SQLite) MarkRead(ctx context.Context, v Viewer, ids []string, read bool) error {
	return s.c.markRead(ctx, v, ids, read)
}

// MarkAllRead marks every item of the viewer's inbox (neither archived nor
// snoozed) read and returns how many changed.
func (s *SQLite) MarkAllRead(ctx context.Context, v Viewer) (int64, error) {
	return s.c.markAllRead(ctx, v)
}

// Delete removes the item from the viewer's inbox; a shared item is hidden
// for this viewer only. An id the viewer does not see is ErrNotFound.
func (s *SQLite) Delete(ctx context.Context, v Viewer, id string) error {
	return s.c.delete(ctx, v, id)
}

// Clear removes every item from the viewer's inbox (shared items only for
// this viewer) and returns how many it removed.
func (s *SQLite) Clear(ctx context.Context, v Viewer) (int64, error) {
	return s.c.clear(ctx, v)
}

// Preferences returns the user's preferences, or DefaultPreferences if none
// were set.
func (s *SQLite) Preferences(ctx context.Context, userID string) (Preferences, error) {
	return s.c.preferences(ctx, userID)
}

// SetPreferences replaces the user's preferences. Muted is stored sorted and
// without repeats; an empty muted type is ErrInvalid.
func (s *SQLite) SetPreferences(ctx context.Context, userID string, p Preferences) error {
	return s.c.setPreferences(ctx, userID, p)
}

// HasEventFrom reports whether owner has, or had, an item from
// restaurant: one not pruned yet, deleted or not.
func (s *SQLite) HasEventFrom(ctx context.Context, owner, restaurant string) (bool, error) {
	return s.c.hasEventFrom(ctx, owner, restaurant)
}

// Prune deletes items created before now-maxAge, items expired at now
// (unless now is zero) and, per owner, all but the newest maxPerOwner
// items, with their per-viewer state; a zero bound is disabled. It returns
// how many items it deleted.
func (s *SQLite) Prune(ctx context.Context, maxPerOwner int, maxAge time.Duration, now time.Time) (int64, error) {
	return s.c.prune(ctx, maxPerOwner, maxAge, now)
}

// Ping checks that the database file can be read and written.
func (s *SQLite) Ping(ctx context.Context) error {
	if err := s.eng.w.PingContext(ctx); err != nil {
		return s.c.wrap("ping", err)
	}
	return s.c.wrap("ping", s.eng.r.PingContext(ctx))
}

// Close closes the database. Insert calls already queued are committed
// first (for up to 5 s, after which the transaction in progress is aborted
// and the calls left fail with ErrUnavailable); Insert calls after Close
// fail with ErrUnavailable.
func (s *SQLite) Close() error {
	if s.c.gc != nil {
		s.c.gc.close()
	}
	if err := s.eng.close(); err != nil {
		return fmt.Errorf("store: close: %w", err)
	}
	return nil
}

// sqliteEngine runs the core's statements on a writer and a reader pool.
type sqliteEngine struct {
	w *sql.DB // one connection, for every transaction
	r *sql.DB // read-only connections
	// stmts are prepared on the writer, by SQL text: a transaction running
	// one of these texts uses the prepared statement instead of parsing the
	// SQL again. Set while opening, read-only afterwards.
	stmts map[string]*sql.Stmt
}

// prepare prepares queries on the writer for every later transaction.
func (e *sqliteEngine) prepare(ctx context.Context, queries ...string) error {
	if e.stmts == nil {
		e.stmts = make(map[string]*sql.Stmt, len(queries))
	}
	for _, q := range queries {
		st, err := e.w.PrepareContext(ctx, q)
		if err != nil {
			return fmt.Errorf("prepare: %w", err)
		}
		e.stmts[q] = st
	}
	return nil
}

func (e *sqliteEngine) close() error {
	var errs []error
	for _, st := range e.stmts {
		errs = append(errs, st.Close())
	}
	if e.r != nil {
		errs = append(errs, e.r.Close())
	}
	if e.w != nil {
		errs = append(errs, e.w.Close())
	}
	return errors.Join(errs...)
}

func (e *sqliteEngine) reader() dbtx { return sqlRunner{e.r} }

func (e *sqliteEngine) inTx(ctx context.Context, fn func(tx dbtx) error) error {
	tx, err := e.w.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer func() {
		// A panic must not leave the one writer connection in the
		// transaction (pgx.BeginFunc does the same).
		if p := recover(); p != nil {
			_ = tx.Rollback()
			panic(p)
		}
	}()
	if err := fn(&sqlTxRunner{sqlRunner: sqlRunner{tx}, tx: tx, prepared: e.stmts}); err != nil {
		if rerr := tx.Rollback(); rerr != nil && !errors.Is(rerr, sql.ErrTxDone) {
			return errors.Join(err, fmt.Errorf("rollback: %w", rerr))
		}
		return err
	}
	return tx.Commit()
}

// lockMigrations does nothing: transactions begin IMMEDIATE, which already
// takes the database's write lock.
func (e *sqliteEngine) lockMigrations(context.Context, dbtx) error { return nil }

func (e *sqliteEngine) timeArg(t time.Time) any { return t.UnixMicro() }

func (e *sqliteEngine) newTimeDest() timeDest { return &unixMicroDest{} }

func (e *sqliteEngine) newNullTimeDest() timeDest { return &nullUnixMicroDest{} }

func (e *sqliteEngine) classify(err error) error {
	var se *sqlite.Error
	if errors.As(err, &se) {
		switch se.Code() & 0xff {
		case sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED:
			return fmt.Errorf("%w: %w", ErrUnavailable, err)
		case sqlite3.SQLITE_CONSTRAINT:
			return fmt.Errorf("%w: %w", ErrInvalid, err)
		}
	}
	if errors.Is(err, sql.ErrConnDone) {
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	return err
}

// unixMicroDest scans a Unix-microseconds INTEGER column.
type unixMicroDest struct{ v int64 }

func (d *unixMicroDest) dest() any        { return &d.v }
func (d *unixMicroDest) value() time.Time { return time.UnixMicro(d.v).UTC() }

// nullUnixMicroDest scans a nullable Unix-microseconds INTEGER column.
type nullUnixMicroDest struct{ v sql.NullInt64 }

func (d *nullUnixMicroDest) dest() any { return &d.v }
func (d *nullUnixMicroDest) value() time.Time {
	if !d.v.Valid {
		return time.Time{}
	}
	return time.UnixMicro(d.v.Int64).UTC()
}

// sqlQuerier is the part of *sql.DB and *sql.Tx that sqlRunner uses.
type sqlQuerier interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

// sqlRunner adapts database/sql to dbtx.
type sqlRunner struct{ q sqlQuerier }

func (r sqlRunner) exec(ctx context.Context, query string, args ...any) (int64, error) {
	res, err := r.q.ExecContext(ctx, query, args...)
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

func (r sqlRunner) query(ctx context.Context, query string, args ...any) (rows, error) {
	rs, err := r.q.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	return sqlRows{rs}, nil
}

// sqlTxRunner runs a transaction's statements, using the engine's prepared
// statements for the texts it has.
type sqlTxRunner struct {
	sqlRunner
	tx       *sql.Tx
	prepared map[string]*sql.Stmt // the engine's, shared
	own      map[string]*sql.Stmt // prepared ones bound to tx, closed with it
}

func (r *sqlTxRunner) exec(ctx context.Context, query string, args ...any) (int64, error) {
	st := r.own[query]
	if st == nil {
		p, ok := r.prepared[query]
		if !ok {
			return r.sqlRunner.exec(ctx, query, args...)
		}
		st = r.tx.StmtContext(ctx, p)
		if r.own == nil {
			r.own = make(map[string]*sql.Stmt, 1)
		}
		r.own[query] = st
	}
	res, err := st.ExecContext(ctx, args...)
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

// sqlRows adapts *sql.Rows to rows.
type sqlRows struct{ *sql.Rows }

// Close closes the rows; a close error also shows in Err.
func (r sqlRows) Close() { _ = r.Rows.Close() }
