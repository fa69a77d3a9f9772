package store

import (
	"testing"
)

func testMarkReadUnread(t *testing.T, s Store) {
	mustInsert(t, s, items("u1", "e", "t", 5)...)
	v := user("u1")
	ctx := t.Context()
	id := func(e string) string { return idOf(t, s, v, e) }

	if err := s.MarkRead(ctx, v, []string{id("e2")}, true); err != nil {
		t.Fatal(err)
	}
	if f := readFlags(listAll(t, s, v)); !f["e2"] || f["e1"] || f["e3"] {
		t.Fatalf("after marking e2: %v", f)
	}
	// Many at once, with a repeat and an already read one.
	if err := s.MarkRead(ctx, v, []string{id("e0"), id("e1"), id("e2"), id("e0")}, true); err != nil {
		t.Fatal(err)
	}
	if got := mustCount(t, s, v); got != 2 {
		t.Fatalf("UnreadCount = %d, want 2", got)
	}
	if err := s.MarkRead(ctx, v, []string{id("e1")}, false); err != nil {
		t.Fatal(err)
	}
	f := readFlags(listAll(t, s, v))
	want := map[string]bool{"e0": true, "e1": false, "e2": true, "e3": false, "e4": false}
	for k, w := range want {
		if f[k] != w {
			t.Errorf("%s read = %v, want %v", k, f[k], w)
		}
	}
	if err := s.MarkRead(ctx, v, []string{id("e0"), id("e2")}, false); err != nil {
		t.Fatal(err)
	}
	if got := mustCount(t, s, v); got != 5 {
		t.Errorf("UnreadCount after marking all unread = %d, want 5", got)
	}
}

func testMarkReadOtherUser(t *testing.T, s Store) {
	mustInsert(t, s, items("u1", "e", "t", 2)...)
	mustInsert(t, s, items("u2", "f", "t", 1)...)
	mustInsert(t, s, items("group:admin", "g", "t", 1)...)
	u1, u2 := user("u1"), user("u2", "group:admin")
	mine, theirs, shared := idOf(t, s, u1, "e0"), idOf(t, s, u2, "f0"), idOf(t, s, u2, "g0")
	ctx := t.Context()

	tests := []struct {
		name string
		ids  []string
	}{
		{"other user's", []string{theirs}},
		{"mine and other user's", []string{mine, theirs}},
		{"group u1 is not in", []string{mine, shared}},
	}
	for _, tc := range tests {
		wantErr(t, tc.name+": MarkRead", s.MarkRead(ctx, u1, tc.ids, true), ErrNotFound)
	}
	wantErr(t, "Delete other user's", s.Delete(ctx, u1, theirs), ErrNotFound)
	wantErr(t, "Delete group row", s.Delete(ctx, u1, shared), ErrNotFound)
	if got := mustCount(t, s, u1); got != 2 {
		t.Errorf("u1 unread = %d, want 2: a failed MarkRead changed something", got)
	}
	if got := mustCount(t, s, u2); got != 2 {
		t.Errorf("u2 unread = %d, want 2", got)
	}
	wantEvents(t, "u2 after", listAll(t, s, u2), "g0", "f0")
}

func testUnknownAndMalformedIDs(t *testing.T, s Store) {
	mustInsert(t, s, items("u1", "e", "t", 1)...)
	v := user("u1")
	ctx := t.Context()
	real := idOf(t, s, v, "e0")
	many := make([]string, MaxMarkIDs+1)
	for i := range many {
		many[i] = real
	}
	tests := []struct {
		name string
		ids  []string
		want error
	}{
		{"unknown", []string{"999999999"}, ErrNotFound},
		{"known and unknown", []string{real, "999999999"}, ErrNotFound},
		{"max int64", []string{"9223372036854775807"}, ErrNotFound},
		{"empty list", nil, ErrInvalid},
		{"too many", many, ErrInvalid},
		{"letters", []string{"abc"}, ErrInvalid},
		{"negative", []string{"-1"}, ErrInvalid},
		{"zero", []string{"0"}, ErrInvalid},
		{"leading zero", []string{"0" + real}, ErrInvalid},
		{"empty id", []string{""}, ErrInvalid},
		{"overflow", []string{"9223372036854775808"}, ErrInvalid},
	}
	for _, tc := range tests {
		wantErr(t, tc.name+": MarkRead", s.MarkRead(ctx, v, tc.ids, true), tc.want)
		if len(tc.ids) == 1 {
			wantErr(t, tc.name+": Delete", s.Delete(ctx, v, tc.ids[0]), tc.want)
		}
	}
	if got := mustCount(t, s, v); got != 1 {
		t.Errorf("unread = %d, want 1: a failed call changed something", got)
	}
	if err := s.MarkRead(ctx, v, many[:MaxMarkIDs], true); err != nil {
		t.Errorf("MarkRead of %d ids: %v", MaxMarkIDs, err)
	}
}

func testMarkAllRead(t *testing.T, s Store) {
	mustInsert(t, s, items("u1", "e", "t", 4)...)
	mustInsert(t, s, items("u2", "e", "t", 2)...)
	mustInsert(t, s, items("group:ops", "g", "t", 2)...)
	v := user("u1", "group:ops")
	ctx := t.Context()
	if err := s.MarkRead(ctx, v, []string{idOf(t, s, v, "e0"), idOf(t, s, v, "g0")}, true); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(ctx, v, idOf(t, s, v, "e1")); err != nil {
		t.Fatal(err)
	}
	n, err := s.MarkAllRead(ctx, v)
	if err != nil || n != 3 {
		t.Fatalf("MarkAllRead = %d, %v; want 3 (e2, e3, g1)", n, err)
	}
	if got := mustCount(t, s, v); got != 0 {
		t.Errorf("unread after MarkAllRead = %d", got)
	}
	for _, it := range listAll(t, s, v) {
		if !it.Read {
			t.Errorf("%s unread after MarkAllRead", it.EventID)
		}
	}
	if n, err := s.MarkAllRead(ctx, v); err != nil || n != 0 {
		t.Errorf("second MarkAllRead = %d, %v; want 0", n, err)
	}
	if got := mustCount(t, s, user("u2", "group:ops")); got != 4 {
		t.Errorf("u2 unread = %d, want 4: u1's MarkAllRead leaked", got)
	}
	// The deleted item stays hidden.
	wantEvents(t, "u1", listAll(t, s, user("u1")), "e3", "e2", "e0")
}

func testDelete(t *testing.T, s Store) {
	mustInsert(t, s, items("u1", "e", "t", 3)...)
	v := user("u1")
	ctx := t.Context()
	id := idOf(t, s, v, "e1")
	if err := s.Delete(ctx, v, id); err != nil {
		t.Fatal(err)
	}
	wantEvents(t, "after delete", listAll(t, s, v), "e2", "e0")
	if got := mustCount(t, s, v); got != 2 {
		t.Errorf("unread = %d, want 2", got)
	}
	wantErr(t, "Delete again", s.Delete(ctx, v, id), ErrNotFound)
	wantErr(t, "MarkRead deleted", s.MarkRead(ctx, v, []string{id}, true), ErrNotFound)
	got, _ := mustList(t, s, v, ListQuery{UnreadOnly: true})
	wantEvents(t, "unread after delete", got, "e2", "e0")
	// A redelivered event stays deleted.
	mustInsert(t, s, items("u1", "e", "t", 2)...)
	wantEvents(t, "after redelivery", listAll(t, s, v), "e2", "e0")
}

func testClear(t *testing.T, s Store) {
	mustInsert(t, s, items("u1", "e", "t", 3)...)
	mustInsert(t, s, items("u2", "e", "t", 2)...)
	mustInsert(t, s, items("group:admin", "g", "t", 2)...)
	a1, a2 := user("u1", "group:admin"), user("u2", "group:admin")
	ctx := t.Context()
	if err := s.Delete(ctx, a1, idOf(t, s, a1, "e0")); err != nil {
		t.Fatal(err)
	}
	if err := s.MarkRead(ctx, a1, []string{idOf(t, s, a1, "g0")}, true); err != nil {
		t.Fatal(err)
	}
	n, err := s.Clear(ctx, a1)
	if err != nil || n != 4 {
		t.Fatalf("Clear = %d, %v; want 4 (e1, e2, g0, g1)", n, err)
	}
	if got := listAll(t, s, a1); len(got) != 0 {
		t.Errorf("after Clear u1 sees %v", eventIDs(got))
	}
	if got := mustCount(t, s, a1); got != 0 {
		t.Errorf("after Clear unread = %d", got)
	}
	if n, err := s.Clear(ctx, a1); err != nil || n != 0 {
		t.Errorf("second Clear = %d, %v; want 0", n, err)
	}
	wantEvents(t, "u2", listAll(t, s, a2), "g1", "g0", "e1", "e0")
}
