package store

import (
	"context"
	"database/sql"
	"fmt"
	"log/slog"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/riverdriver/riversqlite"
	"github.com/riverqueue/river/rivermigrate"
)

// River's tables (the delivery queue, github.com/riverqueue/river) live in
// the store's database, beside the inbox, so that jobs are inserted in the
// inbox's transactions. The store applies River's migrations after its own
// when it opens; the queue's client is built on the store's handles
// (SQLite.RiverDB, Postgres.RiverPool).

// migrateRiverSQLite applies River's pending migrations on the writer.
func migrateRiverSQLite(ctx context.Context, db *sql.DB) error {
	m, err := rivermigrate.New(riversqlite.New(db), &rivermigrate.Config{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		return fmt.Errorf("river migrations: %w", err)
	}
	if _, err := m.Migrate(ctx, rivermigrate.DirectionUp, nil); err != nil {
		return fmt.Errorf("river migrations: %w", err)
	}
	return nil
}

// pgRiverMigrationLockKey serialises River's migrations across processes
// (River's migrator takes no lock of its own).
const pgRiverMigrationLockKey = pgMigrationLockKey + 1

// migrateRiverPostgres applies River's pending migrations, one process at
// a time: a session advisory lock is held on one connection while the
// migrator works on others.
func migrateRiverPostgres(ctx context.Context, pool *pgxpool.Pool) error {
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return err
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, "SELECT pg_advisory_lock($1)", int64(pgRiverMigrationLockKey)); err != nil {
		return err
	}
	defer func() {
		// A failed unlock ends with the session; the connection is then
		// not reused.
		if _, err := conn.Exec(context.WithoutCancel(ctx), "SELECT pg_advisory_unlock($1)", int64(pgRiverMigrationLockKey)); err != nil {
			_ = conn.Conn().Close(context.WithoutCancel(ctx))
		}
	}()
	m, err := rivermigrate.New(riverpgxv5.New(pool), &rivermigrate.Config{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		return fmt.Errorf("river migrations: %w", err)
	}
	if _, err := m.Migrate(ctx, rivermigrate.DirectionUp, nil); err != nil {
		return fmt.Errorf("river migrations: %w", err)
	}
	return nil
}

// RiverDB is the database River's SQLite driver must use: the store's one
// writer connection, so that River's writes and the inbox's are serialised
// by database/sql instead of contending for SQLite's lock. It stays open
// until Close; River must be stopped first.
func (s *SQLite) RiverDB() *sql.DB { return s.eng.w }

// RiverPool is the pool River's PostgreSQL driver uses: the store's.
func (s *Postgres) RiverPool() *pgxpool.Pool { return s.pool }
