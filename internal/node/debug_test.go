package node_test

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/maxloyalty/notify/internal/node"
)

// TestDebugAddr: profiles are served only on the debug address, a bare
// port binds the loopback address, and the HTTP port has none.
func TestDebugAddr(t *testing.T) {
	tn := startNode(t, func(c *node.Config) { c.DebugAddr = ":0" })
	addr := tn.DebugAddr()
	if !strings.HasPrefix(addr, "127.0.0.1:") {
		t.Fatalf("debug address %q, want 127.0.0.1:port", addr)
	}
	get := func(url string) (int, string) {
		t.Helper()
		resp, err := http.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := get("http://" + addr + "/debug/pprof/"); code != http.StatusOK || !strings.Contains(body, "goroutine") {
		t.Errorf("GET /debug/pprof/ on the debug address: %d %.80q", code, body)
	}
	if code, _ := get("http://" + addr + "/debug/pprof/heap?debug=1"); code != http.StatusOK {
		t.Errorf("GET /debug/pprof/heap: %d", code)
	}
	if code, _ := get("http://" + tn.HTTPAddr() + "/debug/pprof/"); code == http.StatusOK {
		t.Error("the HTTP port serves profiles")
	}

	off := startNode(t, nil)
	if a := off.DebugAddr(); a != "" {
		t.Errorf("no debug address configured, got %q", a)
	}
}
