package store

import (
	"errors"
	"slices"
	"strconv"
	"testing"
	"time"
)

// baseTime is the creation time of the first test item; later items are a
// second apart.
func baseTime() time.Time { return time.Date(2026, 3, 1, 12, 0, 0, 123456000, time.UTC) }

// suiteCase is one behaviour every Store implementation must have.
type suiteCase struct {
	name string
	run  func(t *testing.T, s Store)
}

// runSuite runs the shared behaviour tests, each on a fresh, empty store
// made by open (which also arranges for it to be closed).
func runSuite(t *testing.T, open func(t *testing.T) Store) {
	t.Helper()
	for _, tc := range suiteCases() {
		t.Run(tc.name, func(t *testing.T) { tc.run(t, open(t)) })
	}
}

func suiteCases() []suiteCase {
	return append([]suiteCase{
		{"InsertListNewestFirst", testInsertListNewestFirst},
		{"Paging", testPaging},
		{"UnreadFilter", testUnreadFilter},
		{"TypeFilter", testTypeFilter},
		{"UnreadCount", testUnreadCount},
		{"UnreadCounts", testUnreadCounts},
		{"MarkReadUnread", testMarkReadUnread},
		{"MarkReadOtherUser", testMarkReadOtherUser},
		{"UnknownAndMalformedIDs", testUnknownAndMalformedIDs},
		{"MarkAllRead", testMarkAllRead},
		{"Delete", testDelete},
		{"Clear", testClear},
		{"DuplicateInsert", testDuplicateInsert},
		{"TransactionalInsert", testTransactionalInsert},
		{"ConstraintsEnforced", testConstraintsEnforced},
		{"SharedGroupRows", testSharedGroupRows},
		{"Preferences", testPreferences},
		{"PruneByCount", testPruneByCount},
		{"PruneByAge", testPruneByAge},
		{"PruneInvalid", testPruneInvalid},
		{"BadCursors", testBadCursors},
		{"BadLimits", testBadLimits},
		{"InvalidViewer", testInvalidViewer},
		{"Concurrent", testConcurrent},
		{"Ping", testPing},
		{"CancelledContext", testCancelledContext},
		{"HasEventFrom", testHasEventFrom},
	}, append(append(append(groupCases(), stateCases()...), deliveryCases()...), timingCases()...)...)
}

// ---- helpers ----

func user(id string, groups ...string) Viewer { return Viewer{UserID: id, Groups: groups} }

// items returns n items for owner with event ids prefix0.. and types typ,
// created a second apart from baseTime.
func items(owner, prefix, typ string, n int) []NewItem {
	out := make([]NewItem, n)
	for i := range out {
		out[i] = NewItem{
			Owner:     owner,
			EventID:   prefix + strconv.Itoa(i),
			EventType: typ,
			Event:     []byte(owner + "/" + prefix + strconv.Itoa(i)),
			CreatedAt: baseTime().Add(time.Duration(i) * time.Second),
		}
	}
	return out
}

func mustInsert(t *testing.T, s Store, its ...NewItem) {
	t.Helper()
	if err := s.Insert(t.Context(), its); err != nil {
		t.Fatalf("Insert: %v", err)
	}
}

func mustList(t *testing.T, s Store, v Viewer, q ListQuery) ([]Item, string) {
	t.Helper()
	if q.Limit == 0 {
		q.Limit = MaxPageSize
	}
	got, next, err := s.List(t.Context(), v, q)
	if err != nil {
		t.Fatalf("List(%+v, %+v): %v", v, q, err)
	}
	return got, next
}

// listAll returns the viewer's whole inbox (at most one full page).
func listAll(t *testing.T, s Store, v Viewer) []Item {
	t.Helper()
	got, next := mustList(t, s, v, ListQuery{})
	if next != "" {
		t.Fatalf("List: unexpected next page %q", next)
	}
	return got
}

func eventIDs(its []Item) []string {
	out := make([]string, len(its))
	for i, it := range its {
		out[i] = it.EventID
	}
	return out
}

func itemIDs(its []Item) []string {
	out := make([]string, len(its))
	for i, it := range its {
		out[i] = it.ID
	}
	return out
}

// readFlags maps event id to read state.
func readFlags(its []Item) map[string]bool {
	out := make(map[string]bool, len(its))
	for _, it := range its {
		out[it.EventID] = it.Read
	}
	return out
}

// idOf returns the id of the viewer's item with the event id.
func idOf(t *testing.T, s Store, v Viewer, eventID string) string {
	t.Helper()
	for _, it := range listAll(t, s, v) {
		if it.EventID == eventID {
			return it.ID
		}
	}
	t.Fatalf("%s does not see event %s", v.UserID, eventID)
	return ""
}

func mustCount(t *testing.T, s Store, v Viewer) int64 {
	t.Helper()
	n, err := s.UnreadCount(t.Context(), v)
	if err != nil {
		t.Fatalf("UnreadCount(%s): %v", v.UserID, err)
	}
	return n
}

func wantErr(t *testing.T, what string, err, want error) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Fatalf("%s: error %v, want %v", what, err, want)
	}
}

func wantEvents(t *testing.T, what string, got []Item, want ...string) {
	t.Helper()
	if ids := eventIDs(got); !slices.Equal(ids, want) {
		t.Fatalf("%s: events %v, want %v", what, ids, want)
	}
}

// rawDB returns direct access to the database behind s, for checks the
// Store interface cannot make.
func rawDB(t *testing.T, s Store) (dbtx, *core) {
	t.Helper()
	switch s := s.(type) {
	case *SQLite:
		return sqlRunner{s.eng.w}, &s.c
	case *Postgres:
		return pgxRunner{s.pool}, &s.c
	}
	t.Fatalf("unknown store %T", s)
	return nil, nil
}

// rawCount runs a SELECT COUNT(*) query without arguments.
func rawCount(t *testing.T, s Store, query string) int64 {
	t.Helper()
	db, _ := rawDB(t, s)
	n, err := queryInt64(t.Context(), db, query)
	if err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return n
}
