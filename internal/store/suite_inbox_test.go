package store

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"
)

// The inbox's states (seen, read, archived, snoozed), bulk actions,
// filters, priority order, expiry and the wake-up queries, run on every
// Store implementation by runSuite.

func stateCases() []suiteCase {
	return []suiteCase{
		{"SeenReadTimes", testSeenReadTimes},
		{"Archive", testArchive},
		{"Snooze", testSnooze},
		{"BulkActions", testBulkActions},
		{"FiltersAndPriorityOrder", testFiltersAndPriorityOrder},
		{"Metadata", testMetadata},
		{"SharedStates", testSharedStates},
		{"Expiry", testExpiry},
		{"WakeQueries", testWakeQueries},
		{"StatesConcurrent", testStatesConcurrent},
		{"InvalidStateCalls", testInvalidStateCalls},
	}
}

// ---- helpers ----

// clockAt makes the store's clock read t0 and returns a function that
// moves it on by d and returns the new time.
func clockAt(t *testing.T, s Store, t0 time.Time) func(d time.Duration) time.Time {
	t.Helper()
	_, c := rawDB(t, s)
	var mu sync.Mutex
	now := t0
	c.now = func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		return now
	}
	return func(d time.Duration) time.Time {
		mu.Lock()
		defer mu.Unlock()
		now = now.Add(d)
		return now
	}
}

func mustUpdate(t *testing.T, s Store, v Viewer, ch Change, ids ...string) {
	t.Helper()
	if err := s.Update(t.Context(), v, ids, ch); err != nil {
		t.Fatalf("Update(%s, %+v, %v): %v", v.UserID, ch, ids, err)
	}
}

func mustUpdateWhere(t *testing.T, s Store, v Viewer, f Filter, ch Change, want int64) {
	t.Helper()
	n, err := s.UpdateWhere(t.Context(), v, f, ch)
	if err != nil || n != want {
		t.Fatalf("UpdateWhere(%s, %+v, %+v) = %d, %v; want %d", v.UserID, f, ch, n, err, want)
	}
}

func listState(t *testing.T, s Store, v Viewer, st State) []Item {
	t.Helper()
	got, next := mustList(t, s, v, ListQuery{State: st})
	if next != "" {
		t.Fatalf("List(%v): unexpected next page", st)
	}
	return got
}

func byEvent(its []Item) map[string]Item {
	out := make(map[string]Item, len(its))
	for _, it := range its {
		out[it.EventID] = it
	}
	return out
}

// wantCounts checks Counts against want, and against what List, UnreadCount
// and (for a viewer without groups) UnreadCounts say.
func wantCounts(t *testing.T, s Store, v Viewer, want Counts) {
	t.Helper()
	got, err := s.Counts(t.Context(), v)
	if err != nil {
		t.Fatalf("Counts(%s): %v", v.UserID, err)
	}
	if got != want {
		t.Fatalf("Counts(%s) = %+v, want %+v", v.UserID, got, want)
	}
	inbox := listState(t, s, v, StateInbox)
	var listed Counts
	listed.Inbox = int64(len(inbox))
	for _, it := range inbox {
		if !it.Seen {
			listed.Unseen++
		}
		if !it.Read {
			listed.Unread++
		}
	}
	listed.Archived = int64(len(listState(t, s, v, StateArchived)))
	listed.Snoozed = int64(len(listState(t, s, v, StateSnoozed)))
	if listed != got {
		t.Fatalf("Counts(%s) = %+v, but the lists say %+v", v.UserID, got, listed)
	}
	for st, n := range map[State]int64{StateUnseen: got.Unseen, StateUnread: got.Unread, StateRead: got.Inbox - got.Unread} {
		if k := int64(len(listState(t, s, v, st))); k != n {
			t.Fatalf("List(%s, state %d) has %d items, counts say %d", v.UserID, st, k, n)
		}
	}
	if n := mustCount(t, s, v); n != got.Unread {
		t.Fatalf("UnreadCount(%s) = %d, Counts says %d", v.UserID, n, got.Unread)
	}
	if b, err := s.Badge(t.Context(), v); err != nil || b != (Counts{Unseen: got.Unseen, Unread: got.Unread}) {
		t.Fatalf("Badge(%s) = %+v, %v; Counts says %+v", v.UserID, b, err, got)
	}
	if len(v.Groups) == 0 {
		m, err := s.UnreadCounts(t.Context(), []string{v.UserID})
		if err != nil {
			t.Fatal(err)
		}
		if b := m[v.UserID]; b.Unseen != got.Unseen || b.Unread != got.Unread {
			t.Fatalf("UnreadCounts(%s) = %+v, Counts says %+v", v.UserID, b, got)
		}
	}
}

// ---- cases ----

func testSeenReadTimes(t *testing.T, s Store) {
	t0 := baseTime().Add(time.Hour)
	tick := clockAt(t, s, t0)
	mustInsert(t, s, items("u1", "e", "t", 4)...)
	v := user("u1")
	id := func(e string) string { return idOf(t, s, v, e) }
	wantCounts(t, s, v, Counts{Unseen: 4, Unread: 4, Inbox: 4})

	mustUpdate(t, s, v, Change{Action: ActionSeen}, id("e0"), id("e1"))
	got := byEvent(listAll(t, s, v))
	if it := got["e0"]; !it.Seen || !it.SeenAt.Equal(t0) || it.Read || !it.ReadAt.IsZero() {
		t.Fatalf("e0 after seen: %+v, want seen at %v, unread", it, t0)
	}
	wantCounts(t, s, v, Counts{Unseen: 2, Unread: 4, Inbox: 4})

	// Seeing again keeps the first time; reading sets the read time and
	// keeps the seen one; reading an unseen item sees it then.
	t1 := tick(time.Minute)
	mustUpdate(t, s, v, Change{Action: ActionSeen}, id("e0"))
	mustUpdate(t, s, v, Change{Action: ActionRead}, id("e0"), id("e2"))
	got = byEvent(listAll(t, s, v))
	if it := got["e0"]; !it.SeenAt.Equal(t0) || !it.Read || !it.ReadAt.Equal(t1) {
		t.Fatalf("e0 after read: %+v, want seen at %v, read at %v", it, t0, t1)
	}
	if it := got["e2"]; !it.Seen || !it.SeenAt.Equal(t1) || !it.ReadAt.Equal(t1) {
		t.Fatalf("e2 read unseen: %+v, want seen and read at %v", it, t1)
	}
	wantCounts(t, s, v, Counts{Unseen: 1, Unread: 2, Inbox: 4})

	// MarkRead is ActionRead: times too.
	tick(time.Minute)
	if err := s.MarkRead(t.Context(), v, []string{id("e0")}, true); err != nil {
		t.Fatal(err)
	}
	if it := byEvent(listAll(t, s, v))["e0"]; !it.ReadAt.Equal(t1) {
		t.Fatalf("MarkRead of a read item changed its read time: %v", it.ReadAt)
	}

	// Unseen and unread clear their times, and are independent.
	mustUpdate(t, s, v, Change{Action: ActionUnseen}, id("e0"))
	got = byEvent(listAll(t, s, v))
	if it := got["e0"]; it.Seen || !it.SeenAt.IsZero() || !it.Read || !it.ReadAt.Equal(t1) {
		t.Fatalf("e0 after unseen: %+v, want unseen, still read at %v", it, t1)
	}
	mustUpdate(t, s, v, Change{Action: ActionUnread}, id("e0"), id("e2"))
	got = byEvent(listAll(t, s, v))
	if it := got["e2"]; it.Read || !it.ReadAt.IsZero() || !it.Seen {
		t.Fatalf("e2 after unread: %+v, want unread and still seen", it)
	}
	wantCounts(t, s, v, Counts{Unseen: 2, Unread: 4, Inbox: 4})
}

func testArchive(t *testing.T, s Store) {
	t0 := baseTime().Add(time.Hour)
	tick := clockAt(t, s, t0)
	mustInsert(t, s, items("u1", "e", "t", 4)...)
	v := user("u1")
	id := func(e string) string { return idOf(t, s, v, e) }
	e1, e2 := id("e1"), id("e2")
	mustUpdate(t, s, v, Change{Action: ActionArchive}, e1, e2)
	wantEvents(t, "inbox", listAll(t, s, v), "e3", "e0")
	arch := listState(t, s, v, StateArchived)
	wantEvents(t, "archived", arch, "e2", "e1")
	for _, it := range arch {
		if !it.Archived() || !it.ArchivedAt.Equal(t0) || it.Read {
			t.Errorf("%s: %+v, want archived at %v, unread", it.EventID, it, t0)
		}
	}
	wantEvents(t, "all", listState(t, s, v, StateAll), "e3", "e2", "e1", "e0")
	// Archived items are kept but are not in the badge.
	wantCounts(t, s, v, Counts{Unseen: 2, Unread: 2, Archived: 2, Inbox: 2})

	// Archiving again keeps the time; unarchiving brings them back as they were.
	tick(time.Minute)
	mustUpdate(t, s, v, Change{Action: ActionArchive}, e1)
	if it := byEvent(listState(t, s, v, StateArchived))["e1"]; !it.ArchivedAt.Equal(t0) {
		t.Errorf("archive again moved the time to %v", it.ArchivedAt)
	}
	mustUpdate(t, s, v, Change{Action: ActionUnarchive}, e1)
	wantEvents(t, "inbox after unarchive", listAll(t, s, v), "e3", "e1", "e0")
	if it := byEvent(listAll(t, s, v))["e1"]; it.Archived() || it.Read || it.Seen {
		t.Errorf("unarchived e1: %+v", it)
	}
	// Unarchiving an item in the inbox changes nothing.
	mustUpdate(t, s, v, Change{Action: ActionUnarchive}, e1)
	wantCounts(t, s, v, Counts{Unseen: 3, Unread: 3, Archived: 1, Inbox: 3})
	// Archived items can still be read and deleted by id.
	mustUpdate(t, s, v, Change{Action: ActionRead}, e2)
	if err := s.Delete(t.Context(), v, e2); err != nil {
		t.Fatal(err)
	}
	wantCounts(t, s, v, Counts{Unseen: 3, Unread: 3, Inbox: 3})
}

func testSnooze(t *testing.T, s Store) {
	t0 := baseTime().Add(time.Hour)
	tick := clockAt(t, s, t0)
	mustInsert(t, s, items("u1", "e", "t", 4)...)
	v := user("u1")
	id := func(e string) string { return idOf(t, s, v, e) }
	e0, e1, e2 := id("e0"), id("e1"), id("e2")
	// e0 was read and e2 archived before their snooze.
	mustUpdate(t, s, v, Change{Action: ActionRead}, e0)
	mustUpdate(t, s, v, Change{Action: ActionArchive}, e2)
	until := t0.Add(2 * time.Second)
	mustUpdate(t, s, v, Change{Action: ActionSnooze, Until: until}, e0, e2)
	wantEvents(t, "inbox while snoozed", listAll(t, s, v), "e3", "e1")
	snoozed := listState(t, s, v, StateSnoozed)
	wantEvents(t, "snoozed", snoozed, "e2", "e0")
	for _, it := range snoozed {
		if !it.SnoozedUntil.Equal(until) || it.Archived() {
			t.Errorf("%s while snoozed: %+v, want until %v, not archived", it.EventID, it, until)
		}
	}
	wantCounts(t, s, v, Counts{Unseen: 2, Unread: 2, Snoozed: 2, Inbox: 2})

	// Still snoozed a microsecond before the end; back at the end, unseen
	// and unread, whatever they were.
	tick(2*time.Second - time.Microsecond)
	wantCounts(t, s, v, Counts{Unseen: 2, Unread: 2, Snoozed: 2, Inbox: 2})
	tick(time.Microsecond)
	wantEvents(t, "inbox after the snooze", listAll(t, s, v), "e3", "e2", "e1", "e0")
	for _, it := range listAll(t, s, v) {
		if it.Read || it.Seen || !it.SnoozedUntil.IsZero() || it.Archived() {
			t.Errorf("%s back from snooze: %+v, want unseen, unread, no snooze", it.EventID, it)
		}
	}
	wantCounts(t, s, v, Counts{Unseen: 4, Unread: 4, Inbox: 4})

	// Unsnooze ends a snooze now; on an item not snoozed it does nothing.
	t1 := tick(time.Minute)
	mustUpdate(t, s, v, Change{Action: ActionSnooze, Until: t1.Add(time.Hour)}, e1)
	mustUpdate(t, s, v, Change{Action: ActionSnooze, Until: t1.Add(2 * time.Hour)}, e1) // snoozed again: the later end
	if it := byEvent(listState(t, s, v, StateSnoozed))["e1"]; !it.SnoozedUntil.Equal(t1.Add(2 * time.Hour)) {
		t.Fatalf("re-snoozed e1 until %v", it.SnoozedUntil)
	}
	mustUpdate(t, s, v, Change{Action: ActionUnsnooze}, e1, e0)
	wantCounts(t, s, v, Counts{Unseen: 4, Unread: 4, Inbox: 4})
	// Archiving a snoozed item ends its snooze.
	mustUpdate(t, s, v, Change{Action: ActionSnooze, Until: t1.Add(time.Hour)}, e1)
	mustUpdate(t, s, v, Change{Action: ActionArchive}, e1)
	tick(2 * time.Hour)
	wantCounts(t, s, v, Counts{Unseen: 3, Unread: 3, Archived: 1, Inbox: 3})
	// A snooze must end after now.
	err := s.Update(t.Context(), v, []string{e0}, Change{Action: ActionSnooze, Until: t0})
	wantErr(t, "snooze in the past", err, ErrInvalid)
}

func testBulkActions(t *testing.T, s Store) {
	t0 := baseTime().Add(time.Hour)
	clockAt(t, s, t0)
	in := items("u1", "e", "points_added", 6)
	for i := range in {
		in[i].Priority = 1 + i%4 // 1 2 3 4 1 2
		in[i].Category = []string{"points", "card"}[i%2]
	}
	in[5].EventType = "card_created"
	mustInsert(t, s, in...)
	mustInsert(t, s, items("u2", "e", "points_added", 3)...)
	v := user("u1")
	id := func(e string) string { return idOf(t, s, v, e) }
	inbox := Filter{}

	// All seen, then again: nothing left to change.
	mustUpdateWhere(t, s, v, inbox, Change{Action: ActionSeen}, 6)
	mustUpdateWhere(t, s, v, inbox, Change{Action: ActionSeen}, 0)
	wantCounts(t, s, v, Counts{Unseen: 0, Unread: 6, Inbox: 6})
	// Read some, then archive all read.
	mustUpdate(t, s, v, Change{Action: ActionRead}, id("e0"), id("e3"))
	mustUpdateWhere(t, s, v, Filter{State: StateRead}, Change{Action: ActionArchive}, 2)
	wantEvents(t, "archived", listState(t, s, v, StateArchived), "e3", "e0")
	wantCounts(t, s, v, Counts{Unread: 4, Archived: 2, Inbox: 4})
	// All read: the inbox only, not the archive.
	mustUpdateWhere(t, s, v, inbox, Change{Action: ActionUnseen}, 4)
	mustUpdateWhere(t, s, v, Filter{State: StateArchived}, Change{Action: ActionUnread}, 2)
	mustUpdateWhere(t, s, v, inbox, Change{Action: ActionRead}, 4)
	for _, it := range listState(t, s, v, StateArchived) {
		if it.Read {
			t.Errorf("all read reached archived %s", it.EventID)
		}
	}
	wantCounts(t, s, v, Counts{Archived: 2, Inbox: 4})
	// By filter: category, type, priority.
	mustUpdateWhere(t, s, v, Filter{Categories: []string{"card"}}, Change{Action: ActionUnread}, 2) // e1 e5 (e3 archived)
	mustUpdateWhere(t, s, v, Filter{State: StateAll, Types: []string{"card_created"}}, Change{Action: ActionArchive}, 1)
	mustUpdateWhere(t, s, v, Filter{State: StateAll, Priorities: []int{3, 4}}, Change{Action: ActionDelete}, 2) // e2, e3
	wantEvents(t, "all left", listState(t, s, v, StateAll), "e5", "e4", "e1", "e0")
	wantCounts(t, s, v, Counts{Unseen: 0, Unread: 1, Archived: 2, Inbox: 2})
	// Snooze and unsnooze by filter.
	mustUpdateWhere(t, s, v, inbox, Change{Action: ActionSnooze, Until: t0.Add(time.Hour)}, 2)
	wantCounts(t, s, v, Counts{Archived: 2, Snoozed: 2})
	mustUpdateWhere(t, s, v, Filter{State: StateSnoozed}, Change{Action: ActionUnsnooze}, 2)
	mustUpdateWhere(t, s, v, Filter{State: StateArchived}, Change{Action: ActionUnarchive}, 2)
	wantCounts(t, s, v, Counts{Unseen: 2, Unread: 4, Inbox: 4})
	// MarkAllRead and Clear are bulk actions too.
	if n, err := s.MarkAllRead(t.Context(), v); err != nil || n != 4 {
		t.Fatalf("MarkAllRead = %d, %v; want 4", n, err)
	}
	if n, err := s.Clear(t.Context(), v); err != nil || n != 4 {
		t.Fatalf("Clear = %d, %v; want 4", n, err)
	}
	wantCounts(t, s, v, Counts{})
	// u2 was never touched.
	wantCounts(t, s, user("u2"), Counts{Unseen: 3, Unread: 3, Inbox: 3})
}

func testFiltersAndPriorityOrder(t *testing.T, s Store) {
	in := items("u1", "e", "points_added", 12)
	for i := range in {
		in[i].Priority = i % 5 // 0 1 2 3 4 0 1 2 3 4 0 1
		in[i].Category = []string{"points", "card", "alerts"}[i%3]
		if i%4 == 0 {
			in[i].EventType = "system_alert"
		}
	}
	mustInsert(t, s, in...)
	v := user("u1")
	byPrio, _ := mustList(t, s, v, ListQuery{Order: OrderPriority})
	var want []string
	for p := 4; p >= 0; p-- {
		for i := len(in) - 1; i >= 0; i-- {
			if in[i].Priority == p {
				want = append(want, in[i].EventID)
			}
		}
	}
	wantEvents(t, "by priority", byPrio, want...)

	// Paging in priority order: no gap, no repeat, whatever the page size.
	for _, size := range []int{1, 2, 5} {
		var got []Item
		cursor := ""
		for page := 0; ; page++ {
			if page > len(in) {
				t.Fatalf("page size %d: paging does not end", size)
			}
			its, next := mustList(t, s, v, ListQuery{Order: OrderPriority, Limit: size, Cursor: cursor})
			got = append(got, its...)
			if next == "" {
				break
			}
			cursor = next
			if page == 0 {
				// A cursor of one order is refused by the other.
				_, _, err := s.List(t.Context(), v, ListQuery{Limit: size, Cursor: next})
				wantErr(t, "priority cursor in newest order", err, ErrInvalid)
			}
		}
		wantEvents(t, fmt.Sprintf("paged by priority, %d a page", size), got, want...)
	}

	filtered := func(q ListQuery, keep func(i int) bool) {
		t.Helper()
		var want []string
		for i := len(in) - 1; i >= 0; i-- {
			if keep(i) {
				want = append(want, in[i].EventID)
			}
		}
		got, _ := mustList(t, s, v, q)
		wantEvents(t, fmt.Sprintf("%+v", q), got, want...)
	}
	filtered(ListQuery{Categories: []string{"card"}}, func(i int) bool { return i%3 == 1 })
	filtered(ListQuery{Categories: []string{"card", "alerts", "card"}}, func(i int) bool { return i%3 != 0 })
	filtered(ListQuery{Priorities: []int{4, 0}}, func(i int) bool { return i%5 == 4 || i%5 == 0 })
	filtered(ListQuery{Types: []string{"system_alert"}, Categories: []string{"points"}}, func(i int) bool { return i%4 == 0 && i%3 == 0 })
	filtered(ListQuery{Categories: []string{"nothing"}}, func(int) bool { return false })
	// Filters combine with states and unread_only.
	if err := s.MarkRead(t.Context(), v, []string{idOf(t, s, v, "e1")}, true); err != nil {
		t.Fatal(err)
	}
	filtered(ListQuery{Categories: []string{"card"}, UnreadOnly: true}, func(i int) bool { return i%3 == 1 && i != 1 })
	filtered(ListQuery{State: StateRead, Categories: []string{"card"}}, func(i int) bool { return i == 1 })
}

func testMetadata(t *testing.T, s Store) {
	t0 := baseTime().Add(time.Hour)
	clockAt(t, s, t0)
	expires := t0.Add(48 * time.Hour)
	mustInsert(t, s, NewItem{
		Owner: "u1", EventID: "m", EventType: "t", Event: []byte("ev"), Priority: 4, Category: "alerts",
		Tags: []string{"billing", "urgent"}, ExpiresAt: expires, Action: []byte{1, 2, 3},
	}, NewItem{Owner: "u1", EventID: "plain", EventType: "t"})
	got := byEvent(listAll(t, s, user("u1")))
	m := got["m"]
	if m.Priority != 4 || m.Category != "alerts" || !slices.Equal(m.Tags, []string{"billing", "urgent"}) ||
		!m.ExpiresAt.Equal(expires) || !bytes.Equal(m.Action, []byte{1, 2, 3}) {
		t.Errorf("item with metadata = %+v", m)
	}
	if p := got["plain"]; p.Priority != 0 || p.Category != "" || p.Tags != nil || !p.ExpiresAt.IsZero() || p.Action != nil {
		t.Errorf("item without metadata = %+v", p)
	}
	for _, bad := range []NewItem{
		{Owner: "u1", EventID: "x", EventType: "t", Priority: 5},
		{Owner: "u1", EventID: "x", EventType: "t", Tags: []string{"a,b"}},
		{Owner: "u1", EventID: "x", EventType: "t", Tags: []string{""}},
	} {
		wantErr(t, fmt.Sprintf("insert %+v", bad), s.Insert(t.Context(), []NewItem{bad}), ErrInvalid)
	}
	// The database refuses a priority out of range even without the checks.
	db, c := rawDB(t, s)
	b := c.qb()
	_, err := db.exec(t.Context(), "INSERT INTO inbox_items (owner, event_id, event_type, event, created_at, priority) VALUES ("+
		b.arg("u1")+", "+b.arg("raw")+", "+b.arg("t")+", "+b.arg([]byte{})+", "+b.arg(c.eng.timeArg(t0))+", "+b.arg(int64(9))+")", b.args...)
	if err == nil {
		t.Error("the database accepted priority 9")
	}
}

func testSharedStates(t *testing.T, s Store) {
	t0 := baseTime().Add(time.Hour)
	tick := clockAt(t, s, t0)
	mustInsert(t, s, items("group:admin", "g", "system_alert", 4)...)
	mustInsert(t, s, items("a1", "own", "t", 1)...)
	a1, a2 := user("a1", "group:admin"), user("a2", "group:admin")
	id := func(e string) string { return idOf(t, s, a1, e) }
	g0, g1, g2 := id("g0"), id("g1"), id("g2")

	mustUpdate(t, s, a1, Change{Action: ActionSeen}, g0)
	mustUpdate(t, s, a1, Change{Action: ActionArchive}, g1)
	mustUpdate(t, s, a1, Change{Action: ActionSnooze, Until: t0.Add(time.Minute)}, g2)
	wantCounts(t, s, a1, Counts{Unseen: 2, Unread: 3, Archived: 1, Snoozed: 1, Inbox: 3})
	// a2's view of the same rows is untouched.
	wantCounts(t, s, a2, Counts{Unseen: 4, Unread: 4, Inbox: 4})
	if it := byEvent(listAll(t, s, a1))["g0"]; !it.Seen || !it.SeenAt.Equal(t0) {
		t.Errorf("a1's g0: %+v", it)
	}

	// Acting for a1 in the shared inbox only: the group's rows with a1's
	// state, never a1's own rows.
	a1shared := Viewer{UserID: "a1", Groups: []string{"group:admin"}, GroupsOnly: true}
	wantEvents(t, "a1 shared only", listAll(t, s, a1shared), "g3", "g0")
	wantCounts(t, s, a1shared, Counts{Unseen: 1, Unread: 2, Archived: 1, Snoozed: 1, Inbox: 2})
	own := idOf(t, s, user("a1"), "own0")
	wantErr(t, "groups-only on an own row", s.Update(t.Context(), a1shared, []string{own}, Change{Action: ActionRead}), ErrNotFound)
	mustUpdateWhere(t, s, a1shared, Filter{}, Change{Action: ActionRead}, 2)
	if it := byEvent(listAll(t, s, user("a1")))["own0"]; it.Read {
		t.Error("a groups-only bulk read reached a1's own row")
	}
	wantCounts(t, s, a1, Counts{Unseen: 1, Unread: 1, Archived: 1, Snoozed: 1, Inbox: 3})
	_, err := s.Counts(t.Context(), Viewer{UserID: "a1", GroupsOnly: true})
	wantErr(t, "groups-only without groups", err, ErrInvalid)

	// Bulk for a1 with both: own and shared rows.
	mustUpdateWhere(t, s, a1, Filter{State: StateAll}, Change{Action: ActionUnseen}, 2) // g0 and g3 were seen by reading; own0 unseen
	tick(time.Minute)
	wantCounts(t, s, a1, Counts{Unseen: 4, Unread: 2, Archived: 1, Inbox: 4})
	wantCounts(t, s, a2, Counts{Unseen: 4, Unread: 4, Inbox: 4})
}

func testExpiry(t *testing.T, s Store) {
	t0 := baseTime().Add(time.Hour)
	tick := clockAt(t, s, t0)
	in := items("u1", "e", "t", 3)
	in[0].ExpiresAt = t0.Add(time.Minute)
	in[1].ExpiresAt = t0.Add(time.Hour)
	mustInsert(t, s, in...)
	mustInsert(t, s, NewItem{Owner: "group:admin", EventID: "g", EventType: "t", ExpiresAt: t0.Add(time.Minute)})
	v := user("u1", "group:admin")
	e0 := idOf(t, s, v, "e0")
	wantCounts(t, s, v, Counts{Unseen: 4, Unread: 4, Inbox: 4})

	tick(time.Minute)
	// Expired items leave at once: not listed, not counted, not found.
	wantEvents(t, "after expiry", listState(t, s, v, StateAll), "e2", "e1")
	wantCounts(t, s, v, Counts{Unseen: 2, Unread: 2, Inbox: 2})
	wantErr(t, "read an expired item", s.MarkRead(t.Context(), v, []string{e0}, true), ErrNotFound)
	owners, err := s.ExpiredOwners(t.Context(), t0, t0.Add(time.Minute))
	slices.Sort(owners)
	if err != nil || !slices.Equal(owners, []string{"group:admin", "u1"}) {
		t.Fatalf("ExpiredOwners = %v, %v", owners, err)
	}
	if owners, err := s.ExpiredOwners(t.Context(), t0.Add(time.Minute), t0.Add(30*time.Minute)); err != nil || len(owners) != 0 {
		t.Fatalf("ExpiredOwners after the first = %v, %v", owners, err)
	}
	// Pruning removes them; the age and count bounds are not needed.
	n, err := s.Prune(t.Context(), 0, 0, t0.Add(time.Minute))
	if err != nil || n != 2 {
		t.Fatalf("Prune = %d, %v; want the 2 expired", n, err)
	}
	if n := rawCount(t, s, "SELECT COUNT(*) FROM inbox_items"); n != 2 {
		t.Errorf("%d rows after pruning, want 2", n)
	}
}

func testWakeQueries(t *testing.T, s Store) {
	t0 := baseTime().Add(time.Hour)
	clockAt(t, s, t0)
	ctx := t.Context()
	if _, ok, err := s.NextWake(ctx, t0); err != nil || ok {
		t.Fatalf("NextWake on an empty store = %v, %v", ok, err)
	}
	mustInsert(t, s, items("u1", "e", "t", 3)...)
	mustInsert(t, s, items("u2", "e", "t", 2)...)
	mustInsert(t, s, items("group:admin", "g", "t", 1)...)
	mustInsert(t, s, NewItem{Owner: "u3", EventID: "x", EventType: "t", ExpiresAt: t0.Add(5 * time.Second)})
	u1, u2 := user("u1"), user("u2")
	a1, a2 := user("a1", "group:admin"), user("a2", "group:admin")
	end := t0.Add(2 * time.Second)
	u1e0, u1e1, u1e2, u2e0, g0 := idOf(t, s, u1, "e0"), idOf(t, s, u1, "e1"), idOf(t, s, u1, "e2"), idOf(t, s, u2, "e0"), idOf(t, s, a1, "g0")
	// Four snoozes ending at the same time, of personal and shared items,
	// one later, and one of an item then deleted.
	mustUpdate(t, s, u1, Change{Action: ActionSnooze, Until: end}, u1e0, u1e1)
	mustUpdate(t, s, u2, Change{Action: ActionSnooze, Until: end}, u2e0)
	mustUpdate(t, s, a1, Change{Action: ActionSnooze, Until: end}, g0)
	mustUpdate(t, s, a2, Change{Action: ActionSnooze, Until: t0.Add(time.Second)}, g0)
	mustUpdate(t, s, u1, Change{Action: ActionSnooze, Until: t0.Add(time.Hour)}, u1e2)
	gone := idOf(t, s, u2, "e1")
	mustUpdate(t, s, u2, Change{Action: ActionSnooze, Until: end}, gone)
	if err := s.Delete(ctx, u2, gone); err != nil {
		t.Fatal(err)
	}

	wakes := []struct {
		after time.Time
		want  time.Time
	}{
		{t0, t0.Add(time.Second)},
		{t0.Add(time.Second), end},
		{end, t0.Add(5 * time.Second)},
		{t0.Add(5 * time.Second), t0.Add(time.Hour)},
	}
	for _, w := range wakes {
		got, ok, err := s.NextWake(ctx, w.after)
		if err != nil || !ok || !got.Equal(w.want) {
			t.Errorf("NextWake(%v) = %v, %v, %v; want %v", w.after, got, ok, err, w.want)
		}
	}
	if _, ok, err := s.NextWake(ctx, t0.Add(time.Hour)); err != nil || ok {
		t.Errorf("NextWake after the last = %v, %v", ok, err)
	}

	// Paging one at a time through the ties, in (until, id, user) order.
	var got []Returned
	mark := SnoozeMark{At: t0}
	for page := 0; page < 10; page++ {
		rs, err := s.SnoozesEnded(ctx, mark, end, 1)
		if err != nil {
			t.Fatal(err)
		}
		if len(rs) == 0 {
			break
		}
		got = append(got, rs...)
		mark = rs[len(rs)-1].Mark()
	}
	var seen []string
	for _, r := range got {
		seen = append(seen, r.User+"/"+r.ID+"@"+strconv.FormatInt(r.Until.Sub(t0).Milliseconds(), 10))
		if len(r.Event) == 0 {
			t.Errorf("returned %+v without its event", r)
		}
	}
	want := []string{
		"a2/" + g0 + "@1000",
		"u1/" + u1e0 + "@2000", "u1/" + u1e1 + "@2000", "u2/" + u2e0 + "@2000", "a1/" + g0 + "@2000",
	}
	if len(seen) != len(want) {
		t.Fatalf("snoozes ended %v, want %v", seen, want)
	}
	for i := 1; i < len(got); i++ {
		p, q := got[i-1], got[i]
		pid, _ := parseID(p.ID)
		qid, _ := parseID(q.ID)
		if p.Until.After(q.Until) || (p.Until.Equal(q.Until) && (pid > qid || (pid == qid && p.User >= q.User))) {
			t.Fatalf("snoozes ended out of order: %v", seen)
		}
	}
	slices.Sort(seen)
	slices.Sort(want)
	if !slices.Equal(seen, want) {
		t.Fatalf("snoozes ended %v, want %v", seen, want)
	}
	// In one page, the same; nothing after the last mark; and an archived
	// one is not back.
	all, err := s.SnoozesEnded(ctx, SnoozeMark{At: t0}, end, MaxEnded)
	if err != nil || len(all) != len(got) {
		t.Fatalf("one page: %d, %v; want %d", len(all), err, len(got))
	}
	if rest, err := s.SnoozesEnded(ctx, mark, end, MaxEnded); err != nil || len(rest) != 0 {
		t.Fatalf("after the last mark: %v, %v", rest, err)
	}
	mustUpdate(t, s, a1, Change{Action: ActionArchive}, g0)
	if all, err := s.SnoozesEnded(ctx, SnoozeMark{At: t0}, end, MaxEnded); err != nil || len(all) != len(got)-1 {
		t.Fatalf("after archiving a1's g0: %d, %v; want %d", len(all), err, len(got)-1)
	}
	for _, lim := range []int{0, MaxEnded + 1} {
		_, err := s.SnoozesEnded(ctx, SnoozeMark{At: t0}, end, lim)
		wantErr(t, fmt.Sprintf("limit %d", lim), err, ErrInvalid)
	}
	_, err = s.SnoozesEnded(ctx, SnoozeMark{At: t0, ID: "x"}, end, 1)
	wantErr(t, "malformed mark", err, ErrInvalid)
}

func testStatesConcurrent(t *testing.T, s Store) {
	const n = 40
	mustInsert(t, s, items("u1", "e", "t", n)...)
	mustInsert(t, s, items("group:admin", "g", "t", 10)...)
	v := user("u1", "group:admin")
	all := listState(t, s, v, StateAll)
	ctx := t.Context()
	// Two clients of the same user: one reads and archives items one by
	// one, the other sees everything in bulk and archives what is read.
	var wg sync.WaitGroup
	errs := make(chan error, 2*len(all)+100)
	wg.Go(func() {
		for i, it := range all {
			ch := Change{Action: ActionRead}
			if i%3 == 0 {
				ch.Action = ActionArchive
			}
			if err := s.Update(ctx, v, []string{it.ID}, ch); err != nil {
				errs <- err
			}
		}
	})
	wg.Go(func() {
		for range 20 {
			if _, err := s.UpdateWhere(ctx, v, Filter{}, Change{Action: ActionSeen}); err != nil {
				errs <- err
			}
			if _, err := s.UpdateWhere(ctx, v, Filter{State: StateRead}, Change{Action: ActionArchive}); err != nil {
				errs <- err
			}
			if _, err := s.Counts(ctx, v); err != nil {
				errs <- err
			}
		}
	})
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	// Whatever the interleaving, the counts agree with the lists, and
	// every item was read or archived by the first client.
	got, err := s.Counts(ctx, v)
	if err != nil {
		t.Fatal(err)
	}
	wantCounts(t, s, v, got)
	if got.Unread != 0 || got.Archived+got.Inbox != int64(len(all)) {
		t.Fatalf("counts %+v: want nothing unread and %d items in all", got, len(all))
	}
}

func testInvalidStateCalls(t *testing.T, s Store) {
	mustInsert(t, s, items("u1", "e", "t", 1)...)
	v := user("u1")
	ctx := t.Context()
	id := idOf(t, s, v, "e0")
	for _, ch := range []Change{{}, {Action: 99}, {Action: ActionSnooze}, {Action: ActionRead, Until: time.Now().Add(time.Hour)}} {
		wantErr(t, fmt.Sprintf("Update %+v", ch), s.Update(ctx, v, []string{id}, ch), ErrInvalid)
		_, err := s.UpdateWhere(ctx, v, Filter{}, ch)
		wantErr(t, fmt.Sprintf("UpdateWhere %+v", ch), err, ErrInvalid)
	}
	for _, f := range []Filter{{State: -1}, {State: StateAll + 1}, {Priorities: []int{-1}}, {Types: []string{""}}, {Categories: []string{""}}} {
		_, err := s.UpdateWhere(ctx, v, f, Change{Action: ActionRead})
		wantErr(t, fmt.Sprintf("UpdateWhere filter %+v", f), err, ErrInvalid)
	}
	wantErr(t, "Update of another user's id", s.Update(ctx, user("u2"), []string{id}, Change{Action: ActionArchive}), ErrNotFound)
	wantErr(t, "Update without ids", s.Update(ctx, v, nil, Change{Action: ActionArchive}), ErrInvalid)
	_, err := s.Counts(ctx, Viewer{})
	wantErr(t, "Counts without viewer", err, ErrInvalid)
	wantCounts(t, s, v, Counts{Unseen: 1, Unread: 1, Inbox: 1})
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	wantErr(t, "Update cancelled", s.Update(cancelled, v, []string{id}, Change{Action: ActionRead}), context.Canceled)
	wantCounts(t, s, v, Counts{Unseen: 1, Unread: 1, Inbox: 1})
}
