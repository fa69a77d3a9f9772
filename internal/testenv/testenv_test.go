package testenv

import (
	"testing"
	"time"
)

// recorder is a testing.TB that records how Service ended the test.
type recorder struct {
	testing.TB
	skipped, failed bool
}

func (r *recorder) Helper()               {}
func (r *recorder) Skipf(string, ...any)  { r.skipped = true }
func (r *recorder) Fatalf(string, ...any) { r.failed = true }

func TestService(t *testing.T) {
	const v = "NOTIFY_TEST_TESTENV_VARIABLE"
	for _, tc := range []struct {
		name, value, ci string
		want            string
		skipped, failed bool
	}{
		{name: "set", value: "redis://x", want: "redis://x"},
		{name: "set in CI", value: "redis://x", ci: "true", want: "redis://x"},
		{name: "missing", skipped: true},
		{name: "missing in CI", ci: "true", failed: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv(v, tc.value)
			t.Setenv("CI", tc.ci)
			r := &recorder{TB: t}
			got := Service(r, v)
			if got != tc.want || r.skipped != tc.skipped || r.failed != tc.failed {
				t.Errorf("Service = %q, skipped %v, failed %v; want %q, %v, %v", got, r.skipped, r.failed, tc.want, tc.skipped, tc.failed)
			}
		})
	}
}

func TestEventually(t *testing.T) {
	n := 0
	r := &recorder{TB: t}
	Eventually(r, time.Second, "the third check", func() bool { n++; return n == 3 })
	if r.failed || n != 3 {
		t.Errorf("Eventually: failed %v after %d checks; want it to pass on the third", r.failed, n)
	}
	r = &recorder{TB: t}
	start := time.Now()
	Eventually(r, 30*time.Millisecond, "never", func() bool { return false })
	if !r.failed {
		t.Error("Eventually passed on a condition that never holds")
	}
	if waited := time.Since(start); waited < 30*time.Millisecond {
		t.Errorf("Eventually gave up after %v, before its 30ms", waited)
	}
}
