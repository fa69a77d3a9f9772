package store

import (
	"database/sql"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// The upgrade to the inbox states (migration 0003): a database with the
// schema and data of the version before, opened by this version, keeps
// every notification with its read and deleted state, per viewer too, and
// takes the new actions.

// statesVersion is the migration that added the inbox states.
const statesVersion = 3

// oldRows writes an inbox in the schema before statesVersion: u1's own
// items (one read, one deleted) and two admin-group items with per-admin
// state (a1 read g0, a2 deleted g1).
func oldRows(t *testing.T, db dbtx, c *core) {
	t.Helper()
	ctx := t.Context()
	item := func(owner, eventID, typ string, read, deleted bool, at time.Time) int64 {
		b := c.qb()
		id, err := queryInt64(ctx, db, "INSERT INTO inbox_items (owner, event_id, event_type, event, is_read, is_deleted, created_at, restaurant_id) VALUES ("+
			b.arg(owner)+", "+b.arg(eventID)+", "+b.arg(typ)+", "+b.arg([]byte(owner+"/"+eventID))+", "+b.arg(read)+", "+
			b.arg(deleted)+", "+b.arg(c.eng.timeArg(at))+", "+b.arg("r1")+") RETURNING id", b.args...)
		if err != nil {
			t.Fatalf("old item %s/%s: %v", owner, eventID, err)
		}
		return id
	}
	state := func(user string, item int64, read, deleted bool) {
		b := c.qb()
		if _, err := db.exec(ctx, "INSERT INTO inbox_state (user_id, item_id, is_read, is_deleted) VALUES ("+
			b.arg(user)+", "+b.arg(item)+", "+b.arg(read)+", "+b.arg(deleted)+")", b.args...); err != nil {
			t.Fatalf("old state %s/%d: %v", user, item, err)
		}
	}
	at := func(i int) time.Time { return baseTime().Add(time.Duration(i) * time.Second) }
	item("u1", "e0", "points_added", false, false, at(0))
	item("u1", "e1", "card_created", true, false, at(1))
	item("u1", "e2", "system_alert", false, true, at(2))
	item("u1", "e3", "restaurant_transaction", false, false, at(3))
	g0 := item("group:admin", "g0", "admin_notification", false, false, at(4))
	g1 := item("group:admin", "g1", "system_alert", false, false, at(5))
	state("a1", g0, true, false)
	state("a2", g1, false, true)
}

// checkUpgraded checks s, opened on oldRows, then uses the new states on
// the rows kept.
func checkUpgraded(t *testing.T, s Store) {
	t.Helper()
	dir := "migrations/postgres"
	if isSQLite(s) {
		dir = "migrations/sqlite"
	}
	ms, err := loadMigrations(migrationFiles, dir)
	if err != nil {
		t.Fatal(err)
	}
	if n := rawCount(t, s, "SELECT COUNT(*) FROM schema_migrations"); n != int64(len(ms)) {
		t.Fatalf("schema_migrations has %d rows, want %d", n, len(ms))
	}
	u1, a1, a2 := user("u1"), user("a1", "group:admin"), user("a2", "group:admin")
	got := listAll(t, s, u1)
	wantEvents(t, "u1 after the upgrade", got, "e3", "e1", "e0")
	want := map[string]struct {
		read     bool
		category string
	}{"e0": {false, "points"}, "e1": {true, "card"}, "e3": {false, "transactions"}}
	for _, it := range got {
		w := want[it.EventID]
		// Read before is seen now; the times were not kept.
		if it.Read != w.read || it.Seen != w.read || !it.SeenAt.IsZero() || !it.ReadAt.IsZero() ||
			it.Category != w.category || it.Priority != 2 || it.Archived() || !it.SnoozedUntil.IsZero() ||
			string(it.Event) != "u1/"+it.EventID {
			t.Errorf("upgraded %s = %+v, want read and seen %v, category %s, priority 2", it.EventID, it, w.read, w.category)
		}
	}
	wantCounts(t, s, u1, Counts{Unseen: 2, Unread: 2, Inbox: 3})
	wantCounts(t, s, a1, Counts{Unseen: 1, Unread: 1, Inbox: 2})
	wantCounts(t, s, a2, Counts{Unseen: 1, Unread: 1, Inbox: 1})
	if f := readFlags(listAll(t, s, a1)); !f["g0"] || f["g1"] {
		t.Errorf("a1's read state after the upgrade: %v", f)
	}
	// The deleted row is still a tombstone: a redelivery stays deleted.
	mustInsert(t, s, NewItem{Owner: "u1", EventID: "e2", EventType: "system_alert"})
	wantEvents(t, "u1 after a redelivery", listAll(t, s, u1), "e3", "e1", "e0")
	// Filters reach the old rows.
	cards, _ := mustList(t, s, u1, ListQuery{Categories: []string{"card"}})
	wantEvents(t, "u1's cards", cards, "e1")

	// The new states on old rows.
	clockAt(t, s, time.Now())
	e0, e3 := idOf(t, s, u1, "e0"), idOf(t, s, u1, "e3")
	mustUpdate(t, s, u1, Change{Action: ActionArchive}, e0)
	mustUpdate(t, s, u1, Change{Action: ActionSnooze, Until: time.Now().Add(time.Hour)}, e3)
	mustUpdateWhere(t, s, a1, Filter{}, Change{Action: ActionSeen}, 1)
	wantCounts(t, s, u1, Counts{Archived: 1, Snoozed: 1, Inbox: 1})
	wantCounts(t, s, a1, Counts{Unseen: 0, Unread: 1, Inbox: 2})
	wantCounts(t, s, a2, Counts{Unseen: 1, Unread: 1, Inbox: 1})
	// New rows get ids after the old ones, with their metadata.
	mustInsert(t, s, NewItem{Owner: "u1", EventID: "new", EventType: "t", Priority: 4, Category: "alerts"})
	got = listAll(t, s, u1)
	if got[0].EventID != "new" || got[0].Priority != 4 || slices.Contains(itemIDs(got[1:]), got[0].ID) {
		t.Errorf("new item after the upgrade: %+v", got[0])
	}
}

func isSQLite(s Store) bool {
	_, ok := s.(*SQLite)
	return ok
}

func TestUpgradeSQLite(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "inbox.db")
	db, err := sql.Open("sqlite", sqliteDSN(path, true))
	if err != nil {
		t.Fatal(err)
	}
	db.SetMaxOpenConns(1)
	eng := &sqliteEngine{w: db}
	c := newCore(eng, dialect{tsType: "INTEGER"})
	ms, err := loadMigrations(migrationFiles, "migrations/sqlite")
	if err != nil {
		t.Fatal(err)
	}
	if n, err := migrate(ctx, eng, c.d, sqliteMigrationsTable, ms[:statesVersion-1]); err != nil || n != statesVersion-1 {
		t.Fatalf("old schema: %d migrations, %v", n, err)
	}
	oldRows(t, sqlRunner{db}, &c)
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	checkUpgraded(t, openTestSQLite(t, path))
}

func TestUpgradePostgres(t *testing.T) {
	ctx := t.Context()
	dsn := newPostgresSchema(t)
	pool, err := pgxpool.New(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	eng := &pgEngine{pool: pool}
	c := newCore(eng, dialect{dollar: true, tsType: "timestamptz"})
	ms, err := loadMigrations(migrationFiles, "migrations/postgres")
	if err != nil {
		t.Fatal(err)
	}
	if n, err := migrate(ctx, eng, c.d, pgMigrationsTable, ms[:statesVersion-1]); err != nil || n != statesVersion-1 {
		pool.Close()
		t.Fatalf("old schema: %d migrations, %v", n, err)
	}
	oldRows(t, pgxRunner{pool}, &c)
	pool.Close()
	checkUpgraded(t, openTestPostgres(t, dsn))
}

// TestMigrationsOrder checks that the states migration is the one the
// upgrade tests stop before.
func TestMigrationsOrder(t *testing.T) {
	for _, dir := range []string{"migrations/sqlite", "migrations/postgres"} {
		ms, err := loadMigrations(migrationFiles, dir)
		if err != nil {
			t.Fatal(err)
		}
		if len(ms) < statesVersion || ms[statesVersion-1].name != "0003_states.sql" {
			t.Fatalf("%s: migration %d is not 0003_states.sql", dir, statesVersion)
		}
	}
}
