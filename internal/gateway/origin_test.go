package gateway_test

import (
	"testing"

	"github.com/maxloyalty/notify/internal/gateway"
)

// TestNativeWebOrigin: the native port grants configured origins, and
// https pages of the host a call was made to, on any port; nothing else.
func TestNativeWebOrigin(t *testing.T) {
	check := gateway.NativeWebOrigin([]string{"https://app.example"})
	for _, c := range []struct {
		origin, authority string
		want              bool
	}{
		{"https://app.example", "api.example:9090", true},
		{"https://notify.example", "notify.example:9090", true},
		{"https://notify.example:8443", "notify.example:9090", true},
		{"https://NOTIFY.example", "notify.example", true},
		{"https://[::1]:8443", "[::1]:9090", true},
		{"http://notify.example", "notify.example:9090", false}, // not https
		{"https://evil.example", "notify.example:9090", false},
		{"https://notify.example.evil.example", "notify.example:9090", false},
		{"https://notify.example/path", "notify.example:9090", false},
		{"https://user@notify.example", "notify.example:9090", false},
		{"null", "notify.example:9090", false},
		{"https://notify.example", "", false},
	} {
		if got := check(c.origin, c.authority); got != c.want {
			t.Errorf("origin %q calling %q: %v, want %v", c.origin, c.authority, got, c.want)
		}
	}
	if !gateway.NativeWebOrigin([]string{"*"})("http://anything.example", "notify.example") {
		t.Error(`"*" grants any origin`)
	}
}
