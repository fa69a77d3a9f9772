package store

import (
	"errors"
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
		after   int64
		types   []string
		invalid bool
	}{
		{"first page", ListQuery{Limit: 1}, 0, []string{}, false},
		{"cursor and types", ListQuery{Limit: MaxPageSize, Cursor: encodeCursor(7), Types: []string{"b", "a", "b"}}, 7, []string{"a", "b"}, false},
		{"limit 0", ListQuery{}, 0, nil, true},
		{"limit too big", ListQuery{Limit: MaxPageSize + 1}, 0, nil, true},
		{"bad cursor", ListQuery{Limit: 1, Cursor: "!"}, 0, nil, true},
		{"empty type", ListQuery{Limit: 1, Types: []string{""}}, 0, nil, true},
		{"too many types", ListQuery{Limit: 1, Types: many}, 0, nil, true},
	}
	for _, tc := range tests {
		after, types, err := checkListQuery(tc.q)
		if tc.invalid {
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("%s: error %v, want ErrInvalid", tc.name, err)
			}
			continue
		}
		if err != nil || after != tc.after || !slices.Equal(types, tc.types) {
			t.Errorf("%s: got %d, %v, %v; want %d, %v", tc.name, after, types, err, tc.after, tc.types)
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
