package store

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"
)

func testDuplicateInsert(t *testing.T, s Store) {
	first := NewItem{Owner: "u1", EventID: "e", EventType: "t", Event: []byte("first"), CreatedAt: baseTime()}
	mustInsert(t, s, first)
	again := first
	again.Event = []byte("second")
	mustInsert(t, s, again)
	// A repeat inside one batch, and the same event for another owner.
	other := first
	other.Owner = "u2"
	mustInsert(t, s, again, other, other)

	got := listAll(t, s, user("u1"))
	if len(got) != 1 || string(got[0].Event) != "first" {
		t.Fatalf("u1 items %+v, want only the first insert", got)
	}
	if got := listAll(t, s, user("u2")); len(got) != 1 {
		t.Fatalf("u2 has %d items, want 1", len(got))
	}
	// Read state survives a duplicate insert.
	v := user("u1")
	if err := s.MarkRead(t.Context(), v, []string{got[0].ID}, true); err != nil {
		t.Fatal(err)
	}
	mustInsert(t, s, first)
	if got := mustCount(t, s, v); got != 0 {
		t.Errorf("duplicate insert reset read state: unread = %d", got)
	}
}

func testTransactionalInsert(t *testing.T, s Store) {
	ctx := t.Context()
	mustInsert(t, s, NewItem{Owner: "u1", EventID: "before", EventType: "t"})
	tests := []struct {
		name   string
		mutate func(*NewItem)
	}{
		{"empty owner", func(it *NewItem) { it.Owner = "" }},
		{"empty event id", func(it *NewItem) { it.EventID = "" }},
		{"empty event type", func(it *NewItem) { it.EventType = "" }},
	}
	for _, tc := range tests {
		batch := items("u1", "b", "t", 4)
		tc.mutate(&batch[2])
		wantErr(t, tc.name, s.Insert(ctx, batch), ErrInvalid)
	}
	wantEvents(t, "after invalid batches", listAll(t, s, user("u1")), "before")

	// A failure inside the transaction, after some rows were written,
	// leaves none of them.
	_, c := rawDB(t, s)
	boom := errors.New("boom")
	c.afterInsert = func(_ context.Context, i int) error {
		if i == 2 {
			return boom
		}
		return nil
	}
	err := s.Insert(ctx, items("u1", "b", "t", 4))
	c.afterInsert = nil
	wantErr(t, "failing batch", err, boom)
	wantEvents(t, "after failed batch", listAll(t, s, user("u1")), "before")

	mustInsert(t, s, items("u1", "b", "t", 2)...)
	wantEvents(t, "after good batch", listAll(t, s, user("u1")), "b1", "b0", "before")
}

func testConstraintsEnforced(t *testing.T, s Store) {
	db, c := rawDB(t, s)
	tests := []struct {
		name                      string
		owner, eventID, eventType any
	}{
		{"empty owner", "", "e", "t"},
		{"empty event id", "u1", "", "t"},
		{"empty event type", "u1", "e", ""},
		{"null owner", nil, "e", "t"},
		{"null event type", "u1", "e", nil},
	}
	for _, tc := range tests {
		b := c.qb()
		q := "INSERT INTO inbox_items (owner, event_id, event_type, event, created_at) VALUES (" +
			b.arg(tc.owner) + ", " + b.arg(tc.eventID) + ", " + b.arg(tc.eventType) + ", " +
			b.arg([]byte("x")) + ", " + b.arg(c.eng.timeArg(baseTime())) + ")"
		if _, err := db.exec(t.Context(), q, b.args...); err == nil {
			t.Errorf("%s: the database accepted the row", tc.name)
		} else if err := c.eng.classify(err); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: classify(%v) is not ErrInvalid", tc.name, err)
		}
	}
	if n := rawCount(t, s, "SELECT COUNT(*) FROM inbox_items"); n != 0 {
		t.Errorf("%d rows stored", n)
	}
}

func testSharedGroupRows(t *testing.T, s Store) {
	ctx := t.Context()
	mustInsert(t, s, items("group:admin", "g", "t", 2)...)
	mustInsert(t, s, items("a1", "own", "t", 1)...)
	a1, a2, outsider := user("a1", "group:admin"), user("a2", "group:admin"), user("u3", "group:other")

	wantEvents(t, "a1", listAll(t, s, a1), "own0", "g1", "g0")
	wantEvents(t, "a2", listAll(t, s, a2), "g1", "g0")
	if got := listAll(t, s, outsider); len(got) != 0 {
		t.Fatalf("outsider sees %v", eventIDs(got))
	}
	g0 := idOf(t, s, a1, "g0")
	if g0 != idOf(t, s, a2, "g0") {
		t.Fatal("admins see different ids for the same row")
	}
	for _, it := range listAll(t, s, a1) {
		if it.EventID == "g0" && it.Owner != "group:admin" {
			t.Errorf("shared row owner %q", it.Owner)
		}
	}

	// Read state is per admin.
	if err := s.MarkRead(ctx, a1, []string{g0}, true); err != nil {
		t.Fatal(err)
	}
	if f := readFlags(listAll(t, s, a1)); !f["g0"] || f["g1"] {
		t.Errorf("a1 read flags %v", f)
	}
	if f := readFlags(listAll(t, s, a2)); f["g0"] {
		t.Errorf("a2 sees g0 read after a1 read it")
	}
	if c1, c2 := mustCount(t, s, a1), mustCount(t, s, a2); c1 != 2 || c2 != 2 {
		t.Errorf("unread a1 = %d (want 2), a2 = %d (want 2)", c1, c2)
	}
	got, _ := mustList(t, s, a2, ListQuery{UnreadOnly: true})
	wantEvents(t, "a2 unread", got, "g1", "g0")
	if err := s.MarkRead(ctx, a1, []string{g0}, false); err != nil {
		t.Fatal(err)
	}
	if f := readFlags(listAll(t, s, a1)); f["g0"] {
		t.Errorf("a1 g0 still read after marking unread")
	}

	// Deletion is per admin.
	if err := s.Delete(ctx, a1, g0); err != nil {
		t.Fatal(err)
	}
	wantEvents(t, "a1 after delete", listAll(t, s, a1), "own0", "g1")
	wantEvents(t, "a2 after a1's delete", listAll(t, s, a2), "g1", "g0")
	wantErr(t, "a1 deletes again", s.Delete(ctx, a1, g0), ErrNotFound)
	wantErr(t, "a1 marks deleted", s.MarkRead(ctx, a1, []string{g0}, true), ErrNotFound)
	if err := s.MarkRead(ctx, a2, []string{g0}, true); err != nil {
		t.Errorf("a2 marks g0: %v", err)
	}

	// The group's rows do not belong to a member as a user.
	wantErr(t, "group row without group", s.Delete(ctx, user("a2"), g0), ErrNotFound)
}

func testPreferences(t *testing.T, s Store) {
	ctx := t.Context()
	got, err := s.Preferences(ctx, "u1")
	if err != nil {
		t.Fatal(err)
	}
	if !got.Enabled || !got.Sound || got.Email || got.Muted == nil || len(got.Muted) != 0 {
		t.Fatalf("defaults = %+v, want enabled, sound, no email, empty muted", got)
	}
	tests := []struct {
		name string
		in   Preferences
		want Preferences
	}{
		{"set", Preferences{Enabled: false, Sound: false, Email: true, Muted: []string{"b", "a", "b"}},
			Preferences{Enabled: false, Sound: false, Email: true, Muted: []string{"a", "b"}}},
		{"replace", Preferences{Enabled: true, Sound: false, Email: false, Muted: []string{"z"}},
			Preferences{Enabled: true, Sound: false, Email: false, Muted: []string{"z"}}},
		{"unmute all", Preferences{Enabled: true, Sound: true, Email: true},
			Preferences{Enabled: true, Sound: true, Email: true, Muted: []string{}}},
	}
	for _, tc := range tests {
		if err := s.SetPreferences(ctx, "u1", tc.in); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		got, err := s.Preferences(ctx, "u1")
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if got.Enabled != tc.want.Enabled || got.Sound != tc.want.Sound || got.Email != tc.want.Email ||
			got.Muted == nil || !slices.Equal(got.Muted, tc.want.Muted) {
			t.Errorf("%s: got %+v, want %+v", tc.name, got, tc.want)
		}
	}
	if got, err := s.Preferences(ctx, "u2"); err != nil || !got.Enabled || len(got.Muted) != 0 {
		t.Errorf("u2 = %+v, %v; want defaults", got, err)
	}
	wantErr(t, "empty muted type", s.SetPreferences(ctx, "u1", Preferences{Muted: []string{""}}), ErrInvalid)
	wantErr(t, "set for empty user", s.SetPreferences(ctx, "", Preferences{}), ErrInvalid)
	_, err = s.Preferences(ctx, "")
	wantErr(t, "get for empty user", err, ErrInvalid)
	if got, _ := s.Preferences(ctx, "u1"); !got.Email {
		t.Errorf("a rejected SetPreferences changed the stored ones: %+v", got)
	}
}

func testPruneByCount(t *testing.T, s Store) {
	ctx := t.Context()
	mustInsert(t, s, items("u1", "e", "t", 10)...)
	mustInsert(t, s, items("u2", "e", "t", 3)...)
	mustInsert(t, s, items("group:admin", "g", "t", 4)...)
	admin := user("a1", "group:admin")
	if n, err := s.MarkAllRead(ctx, admin); err != nil || n != 4 {
		t.Fatalf("MarkAllRead = %d, %v", n, err)
	}
	if n := rawCount(t, s, "SELECT COUNT(*) FROM inbox_state"); n != 4 {
		t.Fatalf("state rows = %d, want 4", n)
	}
	n, err := s.Prune(ctx, 3, 0, time.Now())
	if err != nil || n != 8 {
		t.Fatalf("Prune = %d, %v; want 8 (7 of u1, 1 of the group)", n, err)
	}
	wantEvents(t, "u1", listAll(t, s, user("u1")), "e9", "e8", "e7")
	wantEvents(t, "u2", listAll(t, s, user("u2")), "e2", "e1", "e0")
	wantEvents(t, "admin", listAll(t, s, admin), "g3", "g2", "g1")
	if n := rawCount(t, s, "SELECT COUNT(*) FROM inbox_state"); n != 3 {
		t.Errorf("state rows after prune = %d, want 3: state of pruned rows kept", n)
	}
	if n, err := s.Prune(ctx, 3, 0, time.Now()); err != nil || n != 0 {
		t.Errorf("second Prune = %d, %v; want 0", n, err)
	}
	if n, err := s.Prune(ctx, 0, 0, time.Now()); err != nil || n != 0 {
		t.Errorf("Prune with no bounds = %d, %v; want 0", n, err)
	}
}

func testPruneByAge(t *testing.T, s Store) {
	ctx := t.Context()
	now := baseTime().Add(time.Hour)
	in := []NewItem{
		{Owner: "u1", EventID: "old", EventType: "t", CreatedAt: now.Add(-3 * time.Hour)},
		{Owner: "group:admin", EventID: "oldg", EventType: "t", CreatedAt: now.Add(-2 * time.Hour)},
		{Owner: "u1", EventID: "edge", EventType: "t", CreatedAt: now.Add(-time.Hour)},
		{Owner: "u1", EventID: "new", EventType: "t", CreatedAt: now.Add(-time.Minute)},
	}
	mustInsert(t, s, in...)
	v := user("u1", "group:admin")
	if err := s.Delete(ctx, v, idOf(t, s, v, "oldg")); err != nil {
		t.Fatal(err)
	}
	n, err := s.Prune(ctx, 0, time.Hour, now)
	if err != nil || n != 2 {
		t.Fatalf("Prune = %d, %v; want 2", n, err)
	}
	wantEvents(t, "after prune", listAll(t, s, v), "new", "edge")
	if n := rawCount(t, s, "SELECT COUNT(*) FROM inbox_state"); n != 0 {
		t.Errorf("state rows after prune = %d, want 0", n)
	}
	// Both bounds at once count each row once.
	mustInsert(t, s, items("u2", "e", "t", 3)...) // created at baseTime..baseTime+2s
	n, err = s.Prune(ctx, 1, 30*time.Minute, now)
	if err != nil || n != 4 {
		t.Fatalf("Prune(1, 30m) = %d, %v; want 4 (edge and u2's three by age)", n, err)
	}
	wantEvents(t, "u1 after both", listAll(t, s, v), "new")
}

func testPruneInvalid(t *testing.T, s Store) {
	ctx := t.Context()
	mustInsert(t, s, items("u1", "e", "t", 2)...)
	tests := []struct {
		name   string
		count  int
		age    time.Duration
		now    time.Time
		wanted error
	}{
		{"negative count", -1, 0, time.Now(), ErrInvalid},
		{"negative age", 0, -time.Hour, time.Now(), ErrInvalid},
		{"zero now", 0, time.Hour, time.Time{}, ErrInvalid},
	}
	for _, tc := range tests {
		_, err := s.Prune(ctx, tc.count, tc.age, tc.now)
		wantErr(t, tc.name, err, tc.wanted)
	}
	if got := listAll(t, s, user("u1")); len(got) != 2 {
		t.Errorf("invalid prunes deleted rows: %d left", len(got))
	}
}

func testBadCursors(t *testing.T, s Store) {
	mustInsert(t, s, items("u1", "e", "t", 3)...)
	b64 := base64.RawURLEncoding.EncodeToString
	tests := []struct{ name, cursor string }{
		{"not base64", "!!!"},
		{"base64 of garbage", b64([]byte("garbage"))},
		{"base64 of binary", b64([]byte{0xff, 0x00, 0x10})},
		{"negative", b64([]byte("-5"))},
		{"zero", b64([]byte("0"))},
		{"leading zero", b64([]byte("05"))},
		{"plus sign", b64([]byte("+5"))},
		{"space", b64([]byte(" 5"))},
		{"overflow", b64([]byte("9223372036854775808"))},
		{"padded", "NQ=="},
		{"std alphabet", "+/+/"},
		{"too long", b64([]byte("1234567890123456789012345"))},
		{"non-canonical bits", "NR"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := s.List(t.Context(), user("u1"), ListQuery{Cursor: tc.cursor, Limit: 10})
			wantErr(t, fmt.Sprintf("cursor %q", tc.cursor), err, ErrInvalid)
		})
	}
	// A well-formed cursor past every id simply pages from the start.
	got, _ := mustList(t, s, user("u1"), ListQuery{Cursor: encodeCursor(1 << 62)})
	wantEvents(t, "huge cursor", got, "e2", "e1", "e0")
}

func testBadLimits(t *testing.T, s Store) {
	mustInsert(t, s, items("u1", "e", "t", 3)...)
	for _, limit := range []int{0, -1, MaxPageSize + 1, 1 << 30} {
		_, _, err := s.List(t.Context(), user("u1"), ListQuery{Limit: limit})
		wantErr(t, fmt.Sprintf("limit %d", limit), err, ErrInvalid)
	}
	for _, limit := range []int{1, MaxPageSize} {
		got, _ := mustList(t, s, user("u1"), ListQuery{Limit: limit})
		if want := min(limit, 3); len(got) != want {
			t.Errorf("limit %d: %d items, want %d", limit, len(got), want)
		}
	}
}

func testInvalidViewer(t *testing.T, s Store) {
	mustInsert(t, s, items("u1", "e", "t", 1)...)
	ctx := t.Context()
	for _, v := range []Viewer{{}, {Groups: []string{"group:admin"}}, {UserID: "u1", Groups: []string{""}}} {
		_, _, err := s.List(ctx, v, ListQuery{Limit: 1})
		wantErr(t, fmt.Sprintf("List %+v", v), err, ErrInvalid)
		_, err = s.UnreadCount(ctx, v)
		wantErr(t, fmt.Sprintf("UnreadCount %+v", v), err, ErrInvalid)
		wantErr(t, fmt.Sprintf("MarkRead %+v", v), s.MarkRead(ctx, v, []string{"1"}, true), ErrInvalid)
		_, err = s.MarkAllRead(ctx, v)
		wantErr(t, fmt.Sprintf("MarkAllRead %+v", v), err, ErrInvalid)
		wantErr(t, fmt.Sprintf("Delete %+v", v), s.Delete(ctx, v, "1"), ErrInvalid)
		_, err = s.Clear(ctx, v)
		wantErr(t, fmt.Sprintf("Clear %+v", v), err, ErrInvalid)
	}
	if got := mustCount(t, s, user("u1")); got != 1 {
		t.Errorf("unread = %d, want 1", got)
	}
}

func testConcurrent(t *testing.T, s Store) {
	const workers, each = 4, 15
	ctx := t.Context()
	mustInsert(t, s, items("group:all", "g", "t", 5)...)
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			u := "w" + strconv.Itoa(w)
			v := user(u, "group:all")
			for i := range each {
				it := NewItem{Owner: u, EventID: strconv.Itoa(i), EventType: "t"}
				if err := s.Insert(ctx, []NewItem{it, {Owner: "group:all", EventID: "g0", EventType: "t"}}); err != nil {
					errs <- err
					return
				}
				got, _, err := s.List(ctx, v, ListQuery{Limit: 3, UnreadOnly: true})
				if err != nil {
					errs <- err
					return
				}
				if len(got) == 0 {
					errs <- fmt.Errorf("%s: no unread item after inserting one", u)
					return
				}
				if err := s.MarkRead(ctx, v, []string{got[0].ID}, true); err != nil {
					errs <- err
					return
				}
			}
			if _, err := s.MarkAllRead(ctx, v); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	for w := range workers {
		v := user("w"+strconv.Itoa(w), "group:all")
		if got := listAll(t, s, v); len(got) != each+5 {
			t.Errorf("%s sees %d items, want %d", v.UserID, len(got), each+5)
		}
		if n := mustCount(t, s, v); n != 0 {
			t.Errorf("%s unread = %d, want 0", v.UserID, n)
		}
	}
}

func testPing(t *testing.T, s Store) {
	if err := s.Ping(t.Context()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := s.Ping(ctx); err == nil {
		t.Error("Ping with a cancelled context succeeded")
	}
}

func testCancelledContext(t *testing.T, s Store) {
	mustInsert(t, s, items("u1", "e", "t", 2)...)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	v := user("u1")
	_, _, listErr := s.List(ctx, v, ListQuery{Limit: 10})
	_, markErr := s.MarkAllRead(ctx, v)
	errs := map[string]error{
		"List":        listErr,
		"Insert":      s.Insert(ctx, items("u1", "x", "t", 1)),
		"MarkAllRead": markErr,
	}
	for name, err := range errs {
		wantErr(t, name, err, context.Canceled)
		if errors.Is(err, ErrUnavailable) {
			t.Errorf("%s: cancellation reported as ErrUnavailable: %v", name, err)
		}
	}
	wantEvents(t, "after cancelled calls", listAll(t, s, v), "e1", "e0")
	if got := mustCount(t, s, v); got != 2 {
		t.Errorf("unread = %d, want 2", got)
	}
}

// testReopen checks that reopening a store keeps its data and applies no
// migration twice. s is open on an empty database; reopen opens it again.
func testReopen(t *testing.T, s Store, reopen func(t *testing.T) Store) {
	t.Helper()
	ctx := t.Context()
	mustInsert(t, s, items("u1", "e", "t", 3)...)
	v := user("u1")
	if err := s.MarkRead(ctx, v, []string{idOf(t, s, v, "e1")}, true); err != nil {
		t.Fatal(err)
	}
	prefs := Preferences{Enabled: true, Email: true, Muted: []string{"x"}}
	if err := s.SetPreferences(ctx, "u1", prefs); err != nil {
		t.Fatal(err)
	}
	before := listAll(t, s, v)
	migrations := rawCount(t, s, "SELECT COUNT(*) FROM schema_migrations")
	if migrations < 1 {
		t.Fatalf("schema_migrations has %d rows", migrations)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	for round := range 2 {
		s2 := reopen(t)
		if n := rawCount(t, s2, "SELECT COUNT(*) FROM schema_migrations"); n != migrations {
			t.Fatalf("round %d: schema_migrations has %d rows, want %d", round, n, migrations)
		}
		if n := migrateAgain(t, s2); n != 0 {
			t.Fatalf("round %d: migrating again applied %d migrations", round, n)
		}
		after := listAll(t, s2, v)
		if !slices.Equal(itemIDs(after), itemIDs(before)) {
			t.Fatalf("round %d: ids %v, want %v", round, itemIDs(after), itemIDs(before))
		}
		if f := readFlags(after); !f["e1"] || f["e0"] {
			t.Errorf("round %d: read flags %v", round, f)
		}
		got, err := s2.Preferences(ctx, "u1")
		if err != nil || !got.Email || got.Sound || !slices.Equal(got.Muted, []string{"x"}) {
			t.Errorf("round %d: preferences %+v, %v", round, got, err)
		}
		// New ids keep increasing after a reopen.
		mustInsert(t, s2, NewItem{Owner: "u1", EventID: "r" + strconv.Itoa(round), EventType: "t"})
		if got := listAll(t, s2, v); got[0].EventID != "r"+strconv.Itoa(round) {
			t.Errorf("round %d: newest is %s", round, got[0].EventID)
		}
		before = listAll(t, s2, v)
		if err := s2.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

// migrateAgain runs the store's migrations once more and returns how many
// were applied.
func migrateAgain(t *testing.T, s Store) int {
	t.Helper()
	var (
		n   int
		err error
	)
	switch s := s.(type) {
	case *SQLite:
		ms, lerr := loadMigrations(migrationFiles, "migrations/sqlite")
		if lerr != nil {
			t.Fatal(lerr)
		}
		n, err = migrate(t.Context(), s.eng, s.c.d, sqliteMigrationsTable, ms)
	case *Postgres:
		ms, lerr := loadMigrations(migrationFiles, "migrations/postgres")
		if lerr != nil {
			t.Fatal(lerr)
		}
		n, err = migrate(t.Context(), s.c.eng, s.c.d, pgMigrationsTable, ms)
	default:
		t.Fatalf("unknown store %T", s)
	}
	if err != nil {
		t.Fatal(err)
	}
	return n
}
