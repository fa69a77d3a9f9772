package store

import (
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestSQLiteIndexesServeTheNewFilters checks SQLite's plans of the inbox's
// hot queries, built from the same pieces as the store's own: each uses
// the index made for it (migration 0003), never a scan of the table.
func TestSQLiteIndexesServeTheNewFilters(t *testing.T) {
	s := openTestSQLite(t, filepath.Join(t.TempDir(), "inbox.db"))
	n := s.c.eng.timeArg(time.Now())
	list := func(st State, extra, order string) string {
		return "SELECT i.id FROM inbox_items i WHERE i.owner IN (?1) AND NOT i.is_deleted AND " + notExpired("i.", "?2") +
			" AND " + stateCond(ownCols, st, "?2") + extra + " ORDER BY " + order + " LIMIT 10"
	}
	tests := []struct {
		name, sql, index string
		args             []any
	}{
		{"badge counts", "SELECT owner, COUNT(*) FROM inbox_items WHERE owner IN (?1)" + badgeOwn("?2") + " GROUP BY owner",
			"inbox_items_owner_badge", []any{"u1", n}},
		{"archived list", list(StateArchived, "", "i.id DESC"), "inbox_items_owner_archived", []any{"u1", n}},
		{"category list", list(StateInbox, " AND i.category IN (?3)", "i.id DESC"), "inbox_items_owner_category", []any{"u1", n, "points"}},
		{"priority order", list(StateInbox, "", "i.priority DESC, i.id DESC"), "inbox_items_owner_priority", []any{"u1", n}},
		{"next snooze end", "SELECT MIN(snoozed_until) FROM inbox_items WHERE snoozed_until > ?1", "inbox_items_snoozed_until", []any{n}},
		{"next shared snooze end", "SELECT MIN(snoozed_until) FROM inbox_state WHERE snoozed_until > ?1", "inbox_state_snoozed_until", []any{n}},
		{"expiry pruning", "DELETE FROM inbox_items WHERE expires_at <= ?1", "inbox_items_expires_at", []any{n}},
	}
	for _, tc := range tests {
		rows, err := s.eng.r.QueryContext(t.Context(), "EXPLAIN QUERY PLAN "+tc.sql, tc.args...)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		var plan []string
		for rows.Next() {
			var id, parent, unused int
			var detail string
			if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
				t.Fatal(err)
			}
			plan = append(plan, detail)
		}
		rows.Close()
		if !slices.ContainsFunc(plan, func(d string) bool { return strings.Contains(d, "INDEX "+tc.index+" ") }) {
			t.Errorf("%s: plan %q does not use %s", tc.name, plan, tc.index)
		}
	}
}

// TestPostgresIndexes checks that migration 0003 made the new indexes.
func TestPostgresIndexes(t *testing.T) {
	s := openTestPostgres(t, newPostgresSchema(t))
	for _, idx := range []string{
		"inbox_items_owner_badge_idx", "inbox_items_owner_archived_idx", "inbox_items_owner_category_idx",
		"inbox_items_owner_priority_idx", "inbox_items_snoozed_until_idx", "inbox_items_expires_at_idx", "inbox_state_snoozed_until_idx",
	} {
		if n := rawCount(t, s, "SELECT COUNT(*) FROM pg_indexes WHERE schemaname = current_schema() AND indexname = '"+idx+"'"); n != 1 {
			t.Errorf("index %s: %d found", idx, n)
		}
	}
}
