package store

import (
	"bytes"
	"fmt"
	"slices"
	"strconv"
	"testing"
	"time"
)

// ---- cases ----

func testInsertListNewestFirst(t *testing.T, s Store) {
	in := items("u1", "e", "points_added", 3)
	in[1].EventType = "level_up"
	mustInsert(t, s, in...)
	mustInsert(t, s, items("u2", "x", "points_added", 2)...)

	got := listAll(t, s, user("u1"))
	wantEvents(t, "u1", got, "e2", "e1", "e0")
	seen := map[string]bool{}
	prev := int64(-1)
	for i, it := range got {
		src := in[len(in)-1-i]
		if it.Owner != "u1" || it.EventType != src.EventType || !bytes.Equal(it.Event, src.Event) || it.Read {
			t.Errorf("item %d = %+v, want from %+v unread", i, it, src)
		}
		if !it.CreatedAt.Equal(src.CreatedAt) || it.CreatedAt.Location() != time.UTC {
			t.Errorf("item %d CreatedAt %v, want %v in UTC", i, it.CreatedAt, src.CreatedAt)
		}
		if it.ID == "" || seen[it.ID] {
			t.Errorf("item %d: empty or repeated id %q", i, it.ID)
		}
		seen[it.ID] = true
		n, err := strconv.ParseInt(it.ID, 10, 64)
		if err != nil {
			t.Fatalf("id %q: %v", it.ID, err)
		}
		if prev >= 0 && n >= prev {
			t.Errorf("ids not descending: %d after %d", n, prev)
		}
		prev = n
	}
	wantEvents(t, "u2", listAll(t, s, user("u2")), "x1", "x0")
	if got := listAll(t, s, user("nobody")); len(got) != 0 {
		t.Errorf("nobody sees %v", eventIDs(got))
	}

	// A nil event and a zero time are stored as empty and now.
	before := time.Now().Add(-time.Second)
	mustInsert(t, s, NewItem{Owner: "u3", EventID: "n", EventType: "t"})
	got = listAll(t, s, user("u3"))
	if len(got) != 1 || len(got[0].Event) != 0 || got[0].CreatedAt.Before(before) {
		t.Errorf("u3 items %+v, want one with empty event created now", got)
	}
	if err := s.Insert(t.Context(), nil); err != nil {
		t.Errorf("Insert(nil): %v", err)
	}
}

func testPaging(t *testing.T, s Store) {
	mustInsert(t, s, items("u1", "e", "t", 25)...)
	mustInsert(t, s, items("u2", "e", "t", 5)...)
	var (
		all    []Item
		cursor string
		sizes  []int
	)
	for page := 0; ; page++ {
		if page > 5 {
			t.Fatal("paging does not end")
		}
		got, next := mustList(t, s, user("u1"), ListQuery{Cursor: cursor, Limit: 10})
		sizes = append(sizes, len(got))
		all = append(all, got...)
		if page == 0 {
			// Items arriving between pages show on a new first page,
			// not in later pages.
			mustInsert(t, s, NewItem{Owner: "u1", EventID: "late", EventType: "t"})
		}
		if next == "" {
			break
		}
		cursor = next
	}
	if !slices.Equal(sizes, []int{10, 10, 5}) {
		t.Fatalf("page sizes %v, want [10 10 5]", sizes)
	}
	var want []string
	for i := 24; i >= 0; i-- {
		want = append(want, "e"+strconv.Itoa(i))
	}
	wantEvents(t, "pages", all, want...)
	ids := itemIDs(all)
	slices.Sort(ids)
	if len(slices.Compact(ids)) != 25 {
		t.Fatalf("duplicate ids across pages: %v", itemIDs(all))
	}

	// An exact multiple of the limit ends with next "" after the last
	// full page or with one empty page; either way no gaps.
	got, next := mustList(t, s, user("u2"), ListQuery{Limit: 5})
	if len(got) != 5 || next != "" {
		t.Fatalf("u2: %d items next %q, want 5 and no next page", len(got), next)
	}
}

func testUnreadFilter(t *testing.T, s Store) {
	mustInsert(t, s, items("u1", "e", "t", 5)...)
	v := user("u1")
	if err := s.MarkRead(t.Context(), v, []string{idOf(t, s, v, "e1"), idOf(t, s, v, "e3")}, true); err != nil {
		t.Fatal(err)
	}
	got, _ := mustList(t, s, v, ListQuery{UnreadOnly: true})
	wantEvents(t, "unread", got, "e4", "e2", "e0")
	for _, it := range got {
		if it.Read {
			t.Errorf("unread list has read item %s", it.EventID)
		}
	}
	flags := readFlags(listAll(t, s, v))
	want := map[string]bool{"e0": false, "e1": true, "e2": false, "e3": true, "e4": false}
	for k, w := range want {
		if flags[k] != w {
			t.Errorf("%s read = %v, want %v", k, flags[k], w)
		}
	}
	// Paging through the unread filter.
	p1, next := mustList(t, s, v, ListQuery{UnreadOnly: true, Limit: 2})
	p2, next2 := mustList(t, s, v, ListQuery{UnreadOnly: true, Limit: 2, Cursor: next})
	wantEvents(t, "unread page 1", p1, "e4", "e2")
	wantEvents(t, "unread page 2", p2, "e0")
	if next == "" || next2 != "" {
		t.Errorf("next cursors %q, %q", next, next2)
	}
}

func testTypeFilter(t *testing.T, s Store) {
	mustInsert(t, s, items("u1", "a", "alpha", 2)...)
	mustInsert(t, s, items("u1", "b", "beta", 2)...)
	mustInsert(t, s, items("u1", "c", "gamma", 2)...)
	v := user("u1")
	if err := s.MarkRead(t.Context(), v, []string{idOf(t, s, v, "a1")}, true); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		q      ListQuery
		events []string
	}{
		{"all", ListQuery{}, []string{"c1", "c0", "b1", "b0", "a1", "a0"}},
		{"one", ListQuery{Types: []string{"beta"}}, []string{"b1", "b0"}},
		{"two", ListQuery{Types: []string{"gamma", "alpha"}}, []string{"c1", "c0", "a1", "a0"}},
		{"repeated", ListQuery{Types: []string{"beta", "beta"}}, []string{"b1", "b0"}},
		{"unknown", ListQuery{Types: []string{"delta"}}, nil},
		{"with unread", ListQuery{Types: []string{"alpha"}, UnreadOnly: true}, []string{"a0"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, _ := mustList(t, s, v, tc.q)
			wantEvents(t, tc.name, got, tc.events...)
		})
	}
	_, _, err := s.List(t.Context(), v, ListQuery{Limit: 10, Types: []string{""}})
	wantErr(t, "empty type", err, ErrInvalid)
}

func testUnreadCount(t *testing.T, s Store) {
	mustInsert(t, s, items("u1", "e", "t", 4)...)
	mustInsert(t, s, items("u2", "e", "t", 2)...)
	mustInsert(t, s, items("group:admin", "g", "t", 3)...)
	u1, admin := user("u1"), user("u1", "group:admin")
	tests := []struct {
		name string
		v    Viewer
		want int64
	}{
		{"own", u1, 4},
		{"own and group", admin, 7},
		{"other", user("u2"), 2},
		{"group repeated", user("u1", "group:admin", "group:admin"), 7},
		{"empty", user("nobody"), 0},
	}
	for _, tc := range tests {
		if got := mustCount(t, s, tc.v); got != tc.want {
			t.Errorf("%s: UnreadCount = %d, want %d", tc.name, got, tc.want)
		}
	}
	if err := s.MarkRead(t.Context(), admin, []string{idOf(t, s, admin, "e0"), idOf(t, s, admin, "g0")}, true); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(t.Context(), admin, idOf(t, s, admin, "g1")); err != nil {
		t.Fatal(err)
	}
	if got := mustCount(t, s, admin); got != 4 {
		t.Errorf("after marking: UnreadCount = %d, want 4", got)
	}
	if got := mustCount(t, s, u1); got != 3 {
		t.Errorf("after marking, own only: UnreadCount = %d, want 3", got)
	}
}

func testUnreadCounts(t *testing.T, s Store) {
	mustInsert(t, s, items("u1", "e", "t", 4)...)
	mustInsert(t, s, items("u2", "e", "t", 2)...)
	mustInsert(t, s, items("group:admin", "g", "t", 3)...)
	u1 := user("u1")
	if err := s.MarkRead(t.Context(), u1, []string{idOf(t, s, u1, "e0")}, true); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(t.Context(), u1, idOf(t, s, u1, "e1")); err != nil {
		t.Fatal(err)
	}
	got, err := s.UnreadCounts(t.Context(), []string{"u1", "u2", "nobody", "group:admin"})
	if err != nil {
		t.Fatal(err)
	}
	// group:admin's own items count for it as an owner; u1 does not see
	// them. Reading e0 saw it too: unseen and unread agree.
	want := map[string]Counts{"u1": {Unseen: 2, Unread: 2}, "u2": {Unseen: 2, Unread: 2}, "group:admin": {Unseen: 3, Unread: 3}}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("UnreadCounts = %v, want %v", got, want)
	}
	for _, u := range []string{"u1", "u2"} {
		if n := mustCount(t, s, user(u)); n != got[u].Unread {
			t.Errorf("UnreadCount(%s) = %d, UnreadCounts says %d", u, n, got[u].Unread)
		}
	}
	if got, err := s.UnreadCounts(t.Context(), nil); err != nil || len(got) != 0 {
		t.Errorf("UnreadCounts(none) = %v, %v", got, err)
	}
	_, err = s.UnreadCounts(t.Context(), []string{"u1", ""})
	wantErr(t, "empty user", err, ErrInvalid)
	_, err = s.UnreadCounts(t.Context(), make([]string, MaxCountUsers+1))
	wantErr(t, "too many users", err, ErrInvalid)
}
