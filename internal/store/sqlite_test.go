package store

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

func openTestSQLite(t *testing.T, path string) *SQLite {
	t.Helper()
	s, err := OpenSQLite(t.Context(), path)
	if err != nil {
		t.Fatalf("OpenSQLite(%s): %v", path, err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

func TestSQLite(t *testing.T) {
	runSuite(t, func(t *testing.T) Store {
		return openTestSQLite(t, filepath.Join(t.TempDir(), "inbox.db"))
	})

	t.Run("Reopen", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "nested", "dir", "inbox.db")
		s := openTestSQLite(t, path)
		testReopen(t, s, func(t *testing.T) Store { return openTestSQLite(t, path) })
	})

	for name, test := range map[string]func(*testing.T, Store, func(*testing.T) Store){
		"GroupClose": testGroupClose, "GroupCloseAbort": testGroupCloseAbort,
	} {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "inbox.db")
			test(t, openTestSQLite(t, path), func(t *testing.T) Store { return openTestSQLite(t, path) })
		})
	}

	t.Run("Pragmas", func(t *testing.T) {
		s := openTestSQLite(t, filepath.Join(t.TempDir(), "inbox.db"))
		ctx := t.Context()
		tests := []struct {
			name   string
			reader bool
			pragma string
			want   string
		}{
			{"writer journal", false, "journal_mode", "wal"},
			{"writer sync FULL", false, "synchronous", "2"},
			{"writer foreign keys", false, "foreign_keys", "1"},
			{"writer busy timeout", false, "busy_timeout", "5000"},
			{"reader journal", true, "journal_mode", "wal"},
			{"reader query only", true, "query_only", "1"},
			{"reader busy timeout", true, "busy_timeout", "5000"},
		}
		for _, tc := range tests {
			db := s.eng.w
			if tc.reader {
				db = s.eng.r
			}
			var got string
			if err := db.QueryRowContext(ctx, "PRAGMA "+tc.pragma).Scan(&got); err != nil {
				t.Fatalf("%s: %v", tc.name, err)
			}
			if got != tc.want {
				t.Errorf("%s: PRAGMA %s = %q, want %q", tc.name, tc.pragma, got, tc.want)
			}
		}
		if _, err := s.eng.r.ExecContext(ctx, "DELETE FROM inbox_items"); err == nil {
			t.Error("the read pool accepted a write")
		}
	})

	t.Run("PathWithURICharacters", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "a dir?x=1#frag%20")
		path := filepath.Join(dir, "inbox.db")
		s := openTestSQLite(t, path)
		mustInsert(t, s, items("u1", "e", "t", 1)...)
		if _, err := os.Stat(path); err != nil {
			t.Fatalf("database not at %s: %v", path, err)
		}
	})

	t.Run("OpenErrors", func(t *testing.T) {
		ctx := t.Context()
		if _, err := OpenSQLite(ctx, ""); err == nil {
			t.Error("OpenSQLite(\"\") succeeded")
		}
		file := filepath.Join(t.TempDir(), "file")
		if err := os.WriteFile(file, []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := OpenSQLite(ctx, filepath.Join(file, "inbox.db")); err == nil {
			t.Error("OpenSQLite under a regular file succeeded")
		}
		notDB := filepath.Join(t.TempDir(), "garbage.db")
		if err := os.WriteFile(notDB, []byte("this is not a database, not at all, no"), 0o600); err != nil {
			t.Fatal(err)
		}
		if s, err := OpenSQLite(ctx, notDB); err == nil {
			s.Close()
			t.Error("OpenSQLite of a garbage file succeeded")
		}
		cancelled, cancel := context.WithCancel(ctx)
		cancel()
		if s, err := OpenSQLite(cancelled, filepath.Join(t.TempDir(), "x.db")); err == nil {
			s.Close()
			t.Error("OpenSQLite with a cancelled context succeeded")
		}
	})
}

func TestOpenChoosesImplementation(t *testing.T) {
	ctx := t.Context()
	s, err := Open(ctx, filepath.Join(t.TempDir(), "inbox.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, ok := s.(*SQLite); !ok {
		t.Errorf("Open(path) = %T, want *SQLite", s)
	}
	tests := []struct {
		dsn      string
		postgres bool
	}{
		{"postgres://u@h/db", true},
		{"postgresql://u@h/db", true},
		{"POSTGRES://u@h/db", true},
		{"/var/lib/notify/inbox.db", false},
		{"postgres.db", false},
		{"postgres:/x", false},
	}
	for _, tc := range tests {
		if got := isPostgresDSN(tc.dsn); got != tc.postgres {
			t.Errorf("isPostgresDSN(%q) = %v, want %v", tc.dsn, got, tc.postgres)
		}
	}
}

// killChildEnv names the database a child process of
// TestSQLiteSurvivesKill writes to before killing itself.
const killChildEnv = "NOTIFY_STORE_TEST_KILL_CHILD_DB"

// TestSQLiteSurvivesKill checks that an Insert that returned is still there
// after the writing process is killed with SIGKILL, without Close.
func TestSQLiteSurvivesKill(t *testing.T) {
	if path := os.Getenv(killChildEnv); path != "" {
		s, err := OpenSQLite(context.Background(), path)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Insert(context.Background(), items("u1", "e", "t", 3)); err != nil {
			t.Fatal(err)
		}
		p, err := os.FindProcess(os.Getpid())
		if err != nil {
			t.Fatal(err)
		}
		_ = p.Kill()
		select {} // wait for the signal
	}

	path := filepath.Join(t.TempDir(), "inbox.db")
	cmd := exec.CommandContext(t.Context(), os.Args[0], "-test.run=^TestSQLiteSurvivesKill$", "-test.count=1")
	cmd.Env = append(os.Environ(), killChildEnv+"="+path)
	out, err := cmd.CombinedOutput()
	var exitErr *exec.ExitError
	if !errors.As(err, &exitErr) || exitErr.ProcessState.Success() || exitErr.ExitCode() != -1 {
		t.Fatalf("child did not die by signal: %v\n%s", err, out)
	}
	s := openTestSQLite(t, path)
	wantEvents(t, "after kill", listAll(t, s, user("u1")), "e2", "e1", "e0")
}
