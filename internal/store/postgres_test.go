package store

import (
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/maxloyalty/notify/internal/testenv"
)

// newPostgresSchema is testenv.PostgresSchema. It stays as a thin wrapper
// only because postgres_lock_test.go, upgrade_test.go and index_test.go
// also call it by this name; new tests call testenv.PostgresSchema.
func newPostgresSchema(t *testing.T) string {
	t.Helper()
	return testenv.PostgresSchema(t)
}

func openTestPostgres(t *testing.T, dsn string) *Postgres {
	t.Helper()
	s, err := OpenPostgres(t.Context(), dsn)
	if err != nil {
		t.Fatalf("OpenPostgres: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

func TestPostgres(t *testing.T) {
	testenv.Service(t, testenv.PostgresDSN)
	runSuite(t, func(t *testing.T) Store { return openTestPostgres(t, newPostgresSchema(t)) })

	t.Run("Reopen", func(t *testing.T) {
		dsn := newPostgresSchema(t)
		s := openTestPostgres(t, dsn)
		testReopen(t, s, func(t *testing.T) Store { return openTestPostgres(t, dsn) })
	})

	for name, test := range map[string]func(*testing.T, Store, func(*testing.T) Store){
		"GroupClose": testGroupClose, "GroupCloseAbort": testGroupCloseAbort,
	} {
		t.Run(name, func(t *testing.T) {
			dsn := newPostgresSchema(t)
			test(t, openTestPostgres(t, dsn), func(t *testing.T) Store { return openTestPostgres(t, dsn) })
		})
	}

	t.Run("TablesInOwnSchema", func(t *testing.T) {
		dsn := newPostgresSchema(t)
		cfg, err := pgconn.ParseConfig(dsn)
		if err != nil {
			t.Fatal(err)
		}
		want := cfg.RuntimeParams["search_path"]
		s := openTestPostgres(t, dsn)
		var schema string
		err = s.pool.QueryRow(t.Context(),
			"SELECT table_schema FROM information_schema.tables WHERE table_name = 'inbox_items' AND table_schema = current_schema()").
			Scan(&schema)
		if err != nil || want == "" || schema != want {
			t.Fatalf("inbox_items schema = %q, %v; want the DSN's search_path %q", schema, err, want)
		}
	})

	t.Run("ConcurrentOpen", func(t *testing.T) {
		dsn := newPostgresSchema(t)
		errs := make(chan error, 3)
		for range 3 {
			go func() {
				s, err := OpenPostgres(t.Context(), dsn)
				if err == nil {
					s.Close()
				}
				errs <- err
			}()
		}
		for range 3 {
			if err := <-errs; err != nil {
				t.Errorf("concurrent OpenPostgres: %v", err)
			}
		}
		s := openTestPostgres(t, dsn)
		ms, err := loadMigrations(migrationFiles, "migrations/postgres")
		if err != nil {
			t.Fatal(err)
		}
		if n := rawCount(t, s, "SELECT COUNT(*) FROM schema_migrations"); n != int64(len(ms)) {
			t.Errorf("schema_migrations has %d rows, want %d (each migration once)", n, len(ms))
		}
	})
}

func TestPostgresUnavailable(t *testing.T) {
	tests := []struct {
		name string
		dsn  string
	}{
		{"refused", "postgres://postgres@127.0.0.1:1/test?sslmode=disable&connect_timeout=2"},
		{"refused via Open", "postgresql://postgres@127.0.0.1:1/test?sslmode=disable&connect_timeout=2"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
			defer cancel()
			start := time.Now()
			var err error
			if strings.HasSuffix(tc.name, "Open") {
				var s Store
				s, err = Open(ctx, tc.dsn)
				if err == nil {
					s.Close()
				}
			} else {
				var s *Postgres
				s, err = OpenPostgres(ctx, tc.dsn)
				if err == nil {
					s.Close()
				}
			}
			if !errors.Is(err, ErrUnavailable) {
				t.Fatalf("error %v, want ErrUnavailable", err)
			}
			var connErr *pgconn.ConnectError
			if !errors.As(err, &connErr) {
				t.Errorf("error %v does not wrap the driver's ConnectError", err)
			}
			if d := time.Since(start); d > 4*time.Second {
				t.Errorf("took %v", d)
			}
		})
	}

	t.Run("deadline while connecting", func(t *testing.T) {
		// A listener that accepts but never answers: the context
		// expires during the startup handshake.
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		conns := make(chan net.Conn, 16)
		go func() {
			defer close(conns)
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				conns <- c
			}
		}()
		defer func() {
			ln.Close()
			for c := range conns {
				c.Close()
			}
		}()
		ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
		defer cancel()
		s, err := OpenPostgres(ctx, "postgres://postgres@"+ln.Addr().String()+"/test?sslmode=disable")
		if err == nil {
			s.Close()
		}
		if !errors.Is(err, ErrUnavailable) {
			t.Fatalf("error %v, want ErrUnavailable", err)
		}
	})

	t.Run("bad DSN", func(t *testing.T) {
		_, err := OpenPostgres(t.Context(), "postgres://%zz")
		if !errors.Is(err, ErrInvalid) {
			t.Fatalf("error %v, want ErrInvalid", err)
		}
	})
}

func TestClassifyPG(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want error // nil: neither ErrInvalid nor ErrUnavailable
	}{
		{"unique violation", &pgconn.PgError{Code: "23505"}, ErrInvalid},
		{"check violation", &pgconn.PgError{Code: "23514"}, ErrInvalid},
		{"connection failure", &pgconn.PgError{Code: "08006"}, ErrUnavailable},
		{"too many connections", &pgconn.PgError{Code: "53300"}, ErrUnavailable},
		{"admin shutdown", &pgconn.PgError{Code: "57P01"}, ErrUnavailable},
		{"starting up", &pgconn.PgError{Code: "57P03"}, ErrUnavailable},
		{"bad password", &pgconn.PgError{Code: "28P01"}, nil},
		{"query cancelled", &pgconn.PgError{Code: "57014"}, nil},
		{"syntax error", &pgconn.PgError{Code: "42601"}, nil},
		{"conn closed", pgconn.ErrConnClosed, ErrUnavailable},
		{"unexpected EOF", io.ErrUnexpectedEOF, ErrUnavailable},
		{"refused", &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}, ErrUnavailable},
		{"cancelled", context.Canceled, nil},
		{"other", errors.New("x"), nil},
	}
	for _, tc := range tests {
		got := classifyPG(tc.err)
		if !errors.Is(got, tc.err) {
			t.Errorf("%s: %v does not wrap the cause", tc.name, got)
		}
		for _, sentinel := range []error{ErrInvalid, ErrUnavailable} {
			if errors.Is(got, sentinel) != (sentinel == tc.want) {
				t.Errorf("%s: classifyPG = %v, want sentinel %v", tc.name, got, tc.want)
			}
		}
	}
	if got := classifyConnect(context.DeadlineExceeded); !errors.Is(got, ErrUnavailable) || !errors.Is(got, context.DeadlineExceeded) {
		t.Errorf("classifyConnect(deadline) = %v", got)
	}
}
