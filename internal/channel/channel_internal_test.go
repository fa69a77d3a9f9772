package channel

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"
)

func TestSecretNeverShows(t *testing.T) {
	const value = "whsec_c2VjcmV0LXNlY3JldC1zZWNyZXQ="
	target := WebhookTarget{URL: "https://example.com/h", Secret: value}
	var logged bytes.Buffer
	slog.New(slog.NewJSONHandler(&logged, nil)).Info("send", "target", target, "secret", target.Secret)
	slog.New(slog.NewTextHandler(&logged, nil)).Info("send", "target", target, "secret", target.Secret)
	js, _ := json.Marshal(target)
	for name, s := range map[string]string{
		"%v": fmt.Sprintf("%v", target), "%+v": fmt.Sprintf("%+v", target), "%#v": fmt.Sprintf("%#v", target),
		"%s": fmt.Sprintf("%s", target.Secret), "%q": fmt.Sprintf("%q", target.Secret), "%x": fmt.Sprintf("%x", target.Secret),
		"json": string(js), "slog": logged.String(),
	} {
		if strings.Contains(s, "c2VjcmV0") || strings.Contains(s, "736563726574") {
			t.Errorf("%s shows the secret: %s", name, s)
		}
	}
	if !strings.Contains(string(js), redacted) || Secret("").String() != "" {
		t.Errorf("json %s", js)
	}
}

func TestRetryAfter(t *testing.T) {
	now := time.Date(2026, 3, 14, 9, 0, 0, 0, time.UTC)
	for in, want := range map[string]time.Duration{
		"":                              0,
		"0":                             0,
		"-5":                            0,
		"120":                           2 * time.Minute,
		"99999999999":                   maxRetryAfter,
		"Sat, 14 Mar 2026 09:01:30 GMT": 90 * time.Second,
		"Sat, 14 Mar 2026 08:00:00 GMT": 0,
		"soon":                          0,
	} {
		if got := retryAfter(http.Header{"Retry-After": {in}}, now); got != want {
			t.Errorf("Retry-After %q = %v, want %v", in, got, want)
		}
	}
}

func TestCollapseKey(t *testing.T) {
	if k := collapseKey("balance-c1_x", 32); k != "balance-c1_x" {
		t.Errorf("valid topic changed to %q", k)
	}
	a, b := collapseKey("points-balance:c1", 32), collapseKey("points-balance:c2", 32)
	if len(a) != 32 || a == b || a != collapseKey("points-balance:c1", 32) {
		t.Errorf("digests %q %q", a, b)
	}
	if k := collapseKey(strings.Repeat("a", 40), 32); len(k) != 32 {
		t.Errorf("long topic gave %q", k)
	}
	if collapseKey("", 32) != "" {
		t.Error("empty topic collapsed")
	}
}

func TestExcerpt(t *testing.T) {
	s := excerpt("bad\x00\x1b[31m\xff" + strings.Repeat("é", 400))
	if len(s) > maxReasonBytes || strings.ContainsAny(s, "\x00\x1b") || !strings.HasPrefix(s, "bad  [31m\uFFFD") {
		t.Errorf("excerpt %q (%d bytes)", s[:20], len(s))
	}
}

func TestPublicAddr(t *testing.T) {
	for in, want := range map[string]bool{
		"8.8.8.8": true, "2001:4860:4860::8888": true,
		"127.0.0.1": false, "10.1.2.3": false, "192.168.0.1": false, "172.16.0.1": false, "169.254.169.254": false,
		"100.64.0.1": false, "::1": false, "fe80::1": false, "fc00::1": false, "0.0.0.0": false, "::ffff:127.0.0.1": false,
		"224.0.0.1": false,
	} {
		if got := publicAddr(netip.MustParseAddr(in)); got != want {
			t.Errorf("publicAddr(%s) = %v", in, got)
		}
	}
}
