package store

import (
	"encoding/base64"
	"errors"
	"math"
	"slices"
	"strings"
	"testing"
	"testing/fstest"
	"time"
)

func TestCheckViewer(t *testing.T) {
	tests := []struct {
		name    string
		in      Viewer
		groups  []string
		invalid bool
	}{
		{"user only", Viewer{UserID: "u"}, nil, false},
		{"groups", Viewer{UserID: "u", Groups: []string{"g:a", "g:b"}}, []string{"g:a", "g:b"}, false},
		{"repeats and self dropped", Viewer{UserID: "u", Groups: []string{"g:a", "u", "g:a"}}, []string{"g:a"}, false},
		{"no user", Viewer{Groups: []string{"g:a"}}, nil, true},
		{"empty group", Viewer{UserID: "u", Groups: []string{"g:a", ""}}, nil, true},
	}
	for _, tc := range tests {
		got, err := checkViewer(tc.in)
		if tc.invalid {
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("%s: error %v, want ErrInvalid", tc.name, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		if got.user != tc.in.UserID || !slices.Equal(got.groups, tc.groups) ||
			!slices.Equal(got.all, append([]string{tc.in.UserID}, tc.groups...)) {
			t.Errorf("%s: got %+v", tc.name, got)
		}
	}
}

func TestCheckNewItems(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 6789, time.FixedZone("x", 3600))
	got, err := checkNewItems([]NewItem{{Owner: "o", EventID: "e", EventType: "t"}}, now)
	if err != nil {
		t.Fatal(err)
	}
	if got[0].Event == nil || !got[0].CreatedAt.Equal(now.Truncate(time.Microsecond)) || got[0].CreatedAt.Location() != time.UTC {
		t.Errorf("defaults not applied: %+v", got[0])
	}
	tests := []struct {
		name string
		it   NewItem
		msg  string
	}{
		{"owner", NewItem{EventID: "e", EventType: "t"}, "item 1: empty owner"},
		{"event id", NewItem{Owner: "o", EventType: "t"}, "item 1: empty event id"},
		{"event type", NewItem{Owner: "o", EventID: "e"}, "item 1: empty event type"},
	}
	for _, tc := range tests {
		_, err := checkNewItems([]NewItem{{Owner: "o", EventID: "e", EventType: "t"}, tc.it}, now)
		if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("%s: error %v, want ErrInvalid saying %q", tc.name, err, tc.msg)
		}
	}
}

func TestCheckListQuery(t *testing.T) {
	many := make([]string, maxTypes+1)
	for i := range many {
		many[i] = "t"
	}
	tests := []struct {
		name    string
		q       ListQuery
		after   cursor
		types   []string
		invalid bool
	}{
		{"first page", ListQuery{Limit: 1}, cursor{}, []string{}, false},
		{"cursor and types", ListQuery{Limit: MaxPageSize, Cursor: encodeCursor(7), Types: []string{"b", "a", "b"}}, cursor{id: 7}, []string{"a", "b"}, false},
		{"priority cursor", ListQuery{Limit: 1, Order: OrderPriority, Cursor: encodePriorityCursor(3, 9)}, cursor{priority: 3, id: 9}, []string{}, false},
		{"limit 0", ListQuery{}, cursor{}, nil, true},
		{"limit too big", ListQuery{Limit: MaxPageSize + 1}, cursor{}, nil, true},
		{"bad cursor", ListQuery{Limit: 1, Cursor: "!"}, cursor{}, nil, true},
		{"priority cursor, newest order", ListQuery{Limit: 1, Cursor: encodePriorityCursor(3, 9)}, cursor{}, nil, true},
		{"newest cursor, priority order", ListQuery{Limit: 1, Order: OrderPriority, Cursor: encodeCursor(9)}, cursor{}, nil, true},
		{"unknown order", ListQuery{Limit: 1, Order: 7}, cursor{}, nil, true},
		{"unknown state", ListQuery{Limit: 1, State: StateAll + 1}, cursor{}, nil, true},
		{"negative state", ListQuery{Limit: 1, State: -1}, cursor{}, nil, true},
		{"priority out of range", ListQuery{Limit: 1, Priorities: []int{5}}, cursor{}, nil, true},
		{"empty category", ListQuery{Limit: 1, Categories: []string{"a", ""}}, cursor{}, nil, true},
		{"empty type", ListQuery{Limit: 1, Types: []string{""}}, cursor{}, nil, true},
		{"too many types", ListQuery{Limit: 1, Types: many}, cursor{}, nil, true},
		{"too many categories", ListQuery{Limit: 1, Categories: many}, cursor{}, nil, true},
	}
	for _, tc := range tests {
		after, f, err := checkListQuery(tc.q)
		if tc.invalid {
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("%s: error %v, want ErrInvalid", tc.name, err)
			}
			continue
		}
		if err != nil || after != tc.after || !slices.Equal(f.types, tc.types) {
			t.Errorf("%s: got %+v, %v, %v; want %+v, %v", tc.name, after, f.types, err, tc.after, tc.types)
		}
	}
}

func TestPriorityCursor(t *testing.T) {
	for _, c := range []cursor{{0, 1}, {4, math.MaxInt64}, {2, 12345}} {
		s := encodePriorityCursor(c.priority, c.id)
		got, err := decodePriorityCursor(s)
		if err != nil || got != c {
			t.Errorf("decodePriorityCursor(%q) = %+v, %v; want %+v", s, got, err, c)
		}
		if len(s) > maxPriorityCursorLen {
			t.Errorf("cursor %q longer than %d", s, maxPriorityCursorLen)
		}
	}
	b64 := func(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }
	for _, bad := range []string{"", "!!", b64("p5.1"), b64("p2.0"), b64("p2.01"), b64("p21"), b64("q2.1"), b64("p-.1"),
		b64("p2."), b64("12"), encodeCursor(12), b64("p2.9223372036854775808"), b64("p2.1") + "=", b64("p2.12345678901234567890")} {
		if _, err := decodePriorityCursor(bad); !errors.Is(err, ErrInvalid) {
			t.Errorf("decodePriorityCursor(%q): %v, want ErrInvalid", bad, err)
		}
	}
}

func TestCheckChangeAndLabels(t *testing.T) {
	now := baseTime()
	for _, tc := range []struct {
		name string
		ch   Change
		ok   bool
	}{
		{"seen", Change{Action: ActionSeen}, true},
		{"delete", Change{Action: ActionDelete}, true},
		{"snooze", Change{Action: ActionSnooze, Until: now.Add(time.Second)}, true},
		{"zero action", Change{}, false},
		{"unknown action", Change{Action: ActionDelete + 1}, false},
		{"snooze without end", Change{Action: ActionSnooze}, false},
		{"snooze ending now", Change{Action: ActionSnooze, Until: now}, false},
		{"snooze in the past", Change{Action: ActionSnooze, Until: now.Add(-time.Hour)}, false},
		{"end without snooze", Change{Action: ActionRead, Until: now.Add(time.Hour)}, false},
	} {
		if err := checkChange(tc.ch, now); (err == nil) != tc.ok || (err != nil && !errors.Is(err, ErrInvalid)) {
			t.Errorf("%s: checkChange = %v, want ok %v", tc.name, err, tc.ok)
		}
	}
	long := strings.Repeat("x", MaxLabelLen+1)
	for _, tc := range []struct {
		name string
		it   NewItem
		ok   bool
	}{
		{"labels", NewItem{Priority: 4, Category: "points", Tags: []string{"a", "b"}}, true},
		{"negative priority", NewItem{Priority: -1}, false},
		{"priority too high", NewItem{Priority: MaxPriority + 1}, false},
		{"long category", NewItem{Category: long}, false},
		{"empty tag", NewItem{Tags: []string{""}}, false},
		{"comma in tag", NewItem{Tags: []string{"a,b"}}, false},
		{"long tag", NewItem{Tags: []string{long}}, false},
		{"too many tags", NewItem{Tags: make([]string, MaxTags+1)}, false},
	} {
		if err := checkLabels(tc.it); (err == nil) != tc.ok {
			t.Errorf("%s: checkLabels = %v, want ok %v", tc.name, err, tc.ok)
		}
	}
}

func TestCheckIDs(t *testing.T) {
	got, err := checkIDs([]string{"3", "1", "3", "2"})
	if err != nil || !slices.Equal(got, []int64{1, 2, 3}) {
		t.Errorf("checkIDs = %v, %v; want [1 2 3]", got, err)
	}
	for _, ids := range [][]string{nil, {}, {"1", "x"}, make([]string, MaxMarkIDs+1)} {
		if _, err := checkIDs(ids); !errors.Is(err, ErrInvalid) {
			t.Errorf("checkIDs(%d ids) error %v, want ErrInvalid", len(ids), err)
		}
	}
}

func TestLoadMigrations(t *testing.T) {
	file := func(s string) *fstest.MapFile { return &fstest.MapFile{Data: []byte(s)} }
	got, err := loadMigrations(fstest.MapFS{
		"m/0010_ten.sql":   file("ten"),
		"m/0002_two.sql":   file("two"),
		"m/0001_one.sql":   file("one"),
		"m/README.md":      file("not a migration"),
		"m/sub/0003_x.sql": {Mode: 0o755 | 1<<31},
	}, "m")
	if err != nil {
		t.Fatal(err)
	}
	var versions []int64
	for _, m := range got {
		versions = append(versions, m.version)
	}
	if !slices.Equal(versions, []int64{1, 2, 10}) || got[0].sql != "one" || got[2].name != "0010_ten.sql" {
		t.Errorf("loadMigrations = %+v", got)
	}

	bad := []struct {
		name string
		fs   fstest.MapFS
	}{
		{"no underscore", fstest.MapFS{"m/0001.sql": file("x")}},
		{"not a number", fstest.MapFS{"m/abcd_x.sql": file("x")}},
		{"zero", fstest.MapFS{"m/0000_x.sql": file("x")}},
		{"same version", fstest.MapFS{"m/0001_a.sql": file("x"), "m/1_b.sql": file("y")}},
		{"empty", fstest.MapFS{"m/README": file("x")}},
		{"missing dir", fstest.MapFS{}},
	}
	for _, tc := range bad {
		if _, err := loadMigrations(tc.fs, "m"); err == nil {
			t.Errorf("%s: loadMigrations succeeded", tc.name)
		}
	}

	// The embedded migrations load, with matching versions per database.
	sq, err := loadMigrations(migrationFiles, "migrations/sqlite")
	if err != nil {
		t.Fatal(err)
	}
	pg, err := loadMigrations(migrationFiles, "migrations/postgres")
	if err != nil {
		t.Fatal(err)
	}
	if len(sq) != len(pg) {
		t.Fatalf("%d sqlite migrations, %d postgres", len(sq), len(pg))
	}
	for i := range sq {
		if sq[i].name != pg[i].name {
			t.Errorf("migration %d: sqlite %s, postgres %s", i, sq[i].name, pg[i].name)
		}
	}
}
