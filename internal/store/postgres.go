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
	shared
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
	s := &Postgres{shared: shared{c: newCore(eng, dialect{dollar: true, rowLock: " FOR NO KEY UPDATE OF i", tsType: "timestamptz"})}, pool: pool}
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
