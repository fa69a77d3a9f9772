// Package testenv gives tests the addresses of the real services they need
// (Redis, PostgreSQL) from the environment. Without one, a test is skipped,
// except in CI (CI=true), where a missing service is a failure: CI must
// never pass by skipping what it was meant to run.
package testenv

import (
	"os"
	"testing"
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
