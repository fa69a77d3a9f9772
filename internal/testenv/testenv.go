// Package testenv gives tests the addresses of the real services they need
// (Redis, PostgreSQL) from the environment. Without one, a test is skipped,
// except in CI (CI=true), where a missing service is a failure: CI must
// never pass by skipping what it was meant to run.
package testenv

import (
	"os"
	"testing"
	"time"
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
