// Package testenv gives tests the addresses of the real services they need
// (Redis, PostgreSQL) from the environment. Without one, a test is skipped,
// except in CI (CI=true), where a missing service is a failure: CI must
// never pass by skipping what it was meant to run.
package testenv

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// The variables that name the test services.
const (
	RedisURL    = "NOTIFY_TEST_REDIS_URL"
	PostgresDSN = "NOTIFY_TEST_POSTGRES_DSN"
)

// Service returns the value of the variable, skipping t without it, or
// failing t in CI.
func Service(t testing.TB, variable string) string {
	t.Helper()
	v := os.Getenv(variable)
	if v == "" {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s is required in CI", variable)
		} else {
			t.Skipf("%s is not set", variable)
		}
	}
	return v
}

// PostgresSchema creates a fresh schema on the PostgreSQL server named by
// NOTIFY_TEST_POSTGRES_DSN and returns that DSN with its search_path set to
// the schema. Tests that share one database, in parallel or in runs that
// follow one another, each get tables of their own this way, so none sees
// another's rows or migrations. The schema is dropped, with all it holds,
// when t ends. Without the variable t is skipped, or fails in CI (see
// Service); with it, a server that does not answer fails t.
//
// A postgres:// or postgresql:// URL gets search_path as a query
// parameter, any other DSN is taken as key=value pairs and gets
// " search_path=<schema>" appended.
func PostgresSchema(t testing.TB) string {
	t.Helper()
	const timeout = 30 * time.Second
	dsn := Service(t, PostgresDSN)
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	schema := "notify_test_" + hex.EncodeToString(b[:])
	exec := func(ctx context.Context, sql string) error {
		conn, err := pgx.Connect(ctx, dsn)
		if err != nil {
			return err
		}
		defer conn.Close(ctx)
		_, err = conn.Exec(ctx, sql)
		return err
	}
	ctx, cancel := context.WithTimeout(t.Context(), timeout)
	defer cancel()
	if err := exec(ctx, "CREATE SCHEMA "+pgx.Identifier{schema}.Sanitize()); err != nil {
		t.Fatalf("create schema %s: %v", schema, err)
	}
	t.Cleanup(func() {
		// t.Context() is done by now: the drop gets a context of its own.
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		if err := exec(ctx, "DROP SCHEMA "+pgx.Identifier{schema}.Sanitize()+" CASCADE"); err != nil {
			t.Errorf("drop schema %s: %v", schema, err)
		}
	})
	u, err := url.Parse(dsn)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		return dsn + " search_path=" + schema
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String()
}

// Eventually waits until cond holds, checking it every tick, and fails t
// when it still does not hold after within. It is for state that another
// process or an engine the test does not drive owns (a spawned notifyd, a
// database queue, the kernel's sockets), where there is no event to wait
// on; state the test's own code changes is awaited on that code's signal,
// and time the test controls is faked with testing/synctest.
func Eventually(t testing.TB, within time.Duration, what string, cond func() bool) {
	t.Helper()
	const tick = 10 * time.Millisecond
	deadline := time.Now().Add(within)
	ticker := time.NewTicker(tick)
	defer ticker.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %s", within, what)
			return
		}
		<-ticker.C
	}
}
