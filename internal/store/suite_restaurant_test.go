package store

import (
	"database/sql"
	"path/filepath"
	"testing"
	"time"
)

// testHasEventFrom: an owner has had an event from a restaurant while one
// of its rows from it is kept: deleted by the viewer (a tombstone) or
// cleared still counts; pruned does not. Other owners' rows and rows
// without a restaurant do not count.
func testHasEventFrom(t *testing.T, s Store) {
	ctx := t.Context()
	from := func(owner, prefix, restaurant string, n int) []NewItem {
		its := items(owner, prefix, "points_added", n)
		for i := range its {
			its[i].Restaurant = restaurant
		}
		return its
	}
	mustInsert(t, s, from("g1", "a", "r1", 2)...)
	mustInsert(t, s, from("g2", "b", "r2", 1)...)
	mustInsert(t, s, from("g1", "c", "", 1)...)
	has := func(owner, restaurant string) bool {
		t.Helper()
		ok, err := s.HasEventFrom(ctx, owner, restaurant)
		if err != nil {
			t.Fatalf("HasEventFrom(%q, %q): %v", owner, restaurant, err)
		}
		return ok
	}
	for _, c := range []struct {
		owner, restaurant string
		want              bool
	}{
		{"g1", "r1", true},
		{"g1", "r2", false}, // g2's restaurant
		{"g2", "r2", true},
		{"g3", "r1", false},
		{"g1", "r", false}, // not a prefix match
	} {
		if got := has(c.owner, c.restaurant); got != c.want {
			t.Errorf("HasEventFrom(%s, %s) = %v, want %v", c.owner, c.restaurant, got, c.want)
		}
	}
	if _, err := s.Clear(ctx, user("g1")); err != nil {
		t.Fatal(err)
	}
	if !has("g1", "r1") {
		t.Error("HasEventFrom(g1, r1) = false after Clear, want true: the guest's relationship outlives their notification center")
	}
	if _, err := s.Prune(ctx, 0, time.Hour, baseTime().Add(2*time.Hour)); err != nil {
		t.Fatal(err)
	}
	if has("g1", "r1") || has("g2", "r2") {
		t.Error("HasEventFrom is true after every row was pruned")
	}
	for _, args := range [][2]string{{"", "r1"}, {"g1", ""}} {
		_, err := s.HasEventFrom(ctx, args[0], args[1])
		wantErr(t, "HasEventFrom("+args[0]+", "+args[1]+")", err, ErrInvalid)
	}
}

// TestSQLiteUpgradeKeepsRows: a database written at schema version 1 (no
// restaurant column) opens at the current version with its rows, which
// have no restaurant, and takes rows with one.
func TestSQLiteUpgradeKeepsRows(t *testing.T) {
	path := filepath.Join(t.TempDir(), "old.db")
	abs, err := filepath.Abs(path)
	if err != nil {
		t.Fatal(err)
	}
	ms, err := loadMigrations(migrationFiles, "migrations/sqlite")
	if err != nil {
		t.Fatal(err)
	}
	eng := &sqliteEngine{}
	if eng.w, err = sql.Open("sqlite", sqliteDSN(abs, true)); err != nil {
		t.Fatal(err)
	}
	if _, err := migrate(t.Context(), eng, dialect{}, sqliteMigrationsTable, ms[:1]); err != nil {
		t.Fatal(err)
	}
	if _, err := eng.w.ExecContext(t.Context(), "INSERT INTO inbox_items (owner, event_id, event_type, event, created_at) VALUES ('g1', 'old', 'points_added', x'', 1)"); err != nil {
		t.Fatal(err)
	}
	if err := eng.w.Close(); err != nil {
		t.Fatal(err)
	}

	s, err := OpenSQLite(t.Context(), path)
	if err != nil {
		t.Fatalf("OpenSQLite on a version 1 database: %v", err)
	}
	defer s.Close()
	wantEvents(t, "after the upgrade", listAll(t, s, user("g1")), "old")
	if ok, err := s.HasEventFrom(t.Context(), "g1", "r1"); err != nil || ok {
		t.Errorf("HasEventFrom(g1, r1) on an old row = %v, %v; want false", ok, err)
	}
	mustInsert(t, s, NewItem{Owner: "g1", EventID: "new", EventType: "points_added", Restaurant: "r1"})
	if ok, err := s.HasEventFrom(t.Context(), "g1", "r1"); err != nil || !ok {
		t.Errorf("HasEventFrom(g1, r1) after a new row = %v, %v; want true", ok, err)
	}
}
