package main

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"strings"
	"testing"

	"github.com/maxloyalty/notify/internal/node"
)

func TestLocalAddr(t *testing.T) {
	for _, tc := range []struct{ listen, want string }{
		{":8080", "127.0.0.1:8080"},
		{"0.0.0.0:8080", "127.0.0.1:8080"},
		{"[::]:8080", "[::1]:8080"},
		{"127.0.0.1:8080", "127.0.0.1:8080"},
		{"10.1.2.3:8080", "10.1.2.3:8080"},
		{"[::1]:8081", "[::1]:8081"},
		{"notifyd:8080", "notifyd:8080"},
	} {
		got, err := localAddr(tc.listen)
		if err != nil || got != tc.want {
			t.Errorf("localAddr(%q) = %q, %v; want %q", tc.listen, got, err, tc.want)
		}
	}
	if _, err := localAddr("8080"); err == nil {
		t.Error(`localAddr("8080") = nil error, want one (no port separator)`)
	}
}

// TestHealthcheck: healthy only on a 200 from /healthz, over HTTP or, with
// a certificate configured, HTTPS.
func TestHealthcheck(t *testing.T) {
	handler := func(status int) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path != "/healthz" {
				http.NotFound(w, r)
				return
			}
			w.WriteHeader(status)
		})
	}
	addr := func(s *httptest.Server) string {
		return strings.TrimPrefix(strings.TrimPrefix(s.URL, "http://"), "https://")
	}
	ctx := context.Background()

	ok := httptest.NewServer(handler(http.StatusOK))
	defer ok.Close()
	if err := healthcheck(ctx, node.Config{HTTPAddr: addr(ok)}); err != nil {
		t.Errorf("200 from /healthz: %v, want healthy", err)
	}
	failing := httptest.NewServer(handler(http.StatusServiceUnavailable))
	defer failing.Close()
	if err := healthcheck(ctx, node.Config{HTTPAddr: addr(failing)}); err == nil {
		t.Error("503 from /healthz: healthy, want an error")
	}
	secure := httptest.NewTLSServer(handler(http.StatusOK))
	defer secure.Close()
	if err := healthcheck(ctx, node.Config{HTTPAddr: addr(secure), TLSCertFile: "cert.pem"}); err != nil {
		t.Errorf("200 over TLS: %v, want healthy", err)
	}
	if err := healthcheck(ctx, node.Config{HTTPAddr: addr(secure)}); err == nil {
		t.Error("plain HTTP to a TLS port: healthy, want an error")
	}
	gone := addr(ok)
	ok.Close()
	if err := healthcheck(ctx, node.Config{HTTPAddr: gone}); err == nil {
		t.Error("nothing listening: healthy, want an error")
	}
}

// TestHealthcheckCommand: `notifyd healthcheck` exits 0 against a running
// notifyd found through NOTIFY_HTTP_ADDR (as in the image), and 1 once it
// has stopped.
func TestHealthcheckCommand(t *testing.T) {
	d := startDaemon(t, t.TempDir())
	run := func() (int, string) {
		t.Helper()
		cmd, out := command(t, []string{"healthcheck"}, "NOTIFY_HTTP_ADDR="+d.httpAddr)
		err := cmd.Run()
		var exit *exec.ExitError
		switch {
		case err == nil:
			return 0, out.String()
		case errors.As(err, &exit):
			return exit.ExitCode(), out.String()
		}
		t.Fatalf("notifyd healthcheck: %v", err)
		return -1, ""
	}
	if code, out := run(); code != 0 {
		t.Errorf("healthcheck of a running notifyd: exit %d, want 0\n%s", code, out)
	}
	d.kill(t)
	if code, out := run(); code != 1 {
		t.Errorf("healthcheck of a stopped notifyd: exit %d, want 1\n%s", code, out)
	}
}
