package store

import (
	"cmp"
	"context"
	"embed"
	"fmt"
	"io/fs"
	"path"
	"slices"
	"strconv"
	"strings"
)

// migrationFiles holds the versioned schema of both databases.
//
//go:embed migrations/sqlite/*.sql migrations/postgres/*.sql
var migrationFiles embed.FS

// migration is one versioned schema change.
type migration struct {
	version int64
	name    string
	sql     string
}

// loadMigrations reads dir's NNNN_name.sql files, ordered by version.
func loadMigrations(fsys fs.FS, dir string) ([]migration, error) {
	entries, err := fs.ReadDir(fsys, dir)
	if err != nil {
		return nil, fmt.Errorf("read migrations: %w", err)
	}
	var ms []migration
	for _, e := range entries {
		name := e.Name()
		if e.IsDir() || !strings.HasSuffix(name, ".sql") {
			continue
		}
		prefix, _, ok := strings.Cut(name, "_")
		if !ok {
			return nil, fmt.Errorf("migration %s: name is not NNNN_name.sql", name)
		}
		v, err := strconv.ParseInt(prefix, 10, 64)
		if err != nil || v <= 0 {
			return nil, fmt.Errorf("migration %s: bad version %q", name, prefix)
		}
		body, err := fs.ReadFile(fsys, path.Join(dir, name))
		if err != nil {
			return nil, fmt.Errorf("migration %s: %w", name, err)
		}
		ms = append(ms, migration{version: v, name: name, sql: string(body)})
	}
	slices.SortFunc(ms, func(a, b migration) int { return cmp.Compare(a.version, b.version) })
	for i := 1; i < len(ms); i++ {
		if ms[i].version == ms[i-1].version {
			return nil, fmt.Errorf("migrations %s and %s share version %d", ms[i-1].name, ms[i].name, ms[i].version)
		}
	}
	if len(ms) == 0 {
		return nil, fmt.Errorf("no migrations in %s", dir)
	}
	return ms, nil
}

// migrate creates schema_migrations (with createTable) if needed and applies,
// each in its own transaction, the migrations not recorded there yet. It
// returns how many it applied.
func migrate(ctx context.Context, eng engine, d dialect, createTable string, ms []migration) (int, error) {
	err := eng.inTx(ctx, func(tx dbtx) error {
		if err := eng.lockMigrations(ctx, tx); err != nil {
			return err
		}
		_, err := tx.exec(ctx, createTable)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("create schema_migrations: %w", err)
	}
	applied := 0
	for _, m := range ms {
		did := false
		err := eng.inTx(ctx, func(tx dbtx) error {
			did = false
			if err := eng.lockMigrations(ctx, tx); err != nil {
				return err
			}
			b := &qb{d: d}
			n, err := queryInt64(ctx, tx, "SELECT COUNT(*) FROM schema_migrations WHERE version = "+b.arg(m.version), b.args...)
			if err != nil || n > 0 {
				return err
			}
			if _, err := tx.exec(ctx, m.sql); err != nil {
				return err
			}
			b = &qb{d: d}
			if _, err := tx.exec(ctx, "INSERT INTO schema_migrations (version, name) VALUES ("+
				b.arg(m.version)+", "+b.arg(m.name)+")", b.args...); err != nil {
				return err
			}
			did = true
			return nil
		})
		if err != nil {
			return applied, fmt.Errorf("migration %s: %w", m.name, err)
		}
		if did {
			applied++
		}
	}
	return applied, nil
}
