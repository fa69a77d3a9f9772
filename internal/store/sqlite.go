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
	shared
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
	s := &SQLite{shared: shared{c: newCore(eng, dialect{tsType: "INTEGER"})}, eng: eng}
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
