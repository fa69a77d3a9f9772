package gateway_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	notifyv1 "github.com/maxloyalty/notify/gen/notify/v1"
	"github.com/maxloyalty/notify/internal/auth"
	"github.com/maxloyalty/notify/internal/gateway"
	"github.com/maxloyalty/notify/internal/node"
	"github.com/maxloyalty/notify/internal/testenv"
)

// testTimeout bounds every blocking step.
const testTimeout = 10 * time.Second

var client = &http.Client{Timeout: testTimeout}

// newGateway serves a gateway over a gRPC server with no services, on a
// real loopback HTTP server.
func newGateway(t *testing.T, cfg gateway.Config) string {
	t.Helper()
	srv := grpc.NewServer()
	conn, err := grpc.NewClient("passthrough:///unused", grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	h, err := gateway.New(context.Background(), cfg, srv, conn, nil)
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(h)
	t.Cleanup(ts.Close)
	return ts.URL
}

// webDir writes a small built app: what vite build leaves in dist/.
func webDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	files := map[string]string{
		"index.html":              `<!doctype html><html><body><div id="root"></div><script type="module" src="/assets/index-abc123.js"></script></body></html>`,
		"assets/index-abc123.js":  `console.log("app");`,
		"assets/index-def456.css": `body{margin:0}`,
		"favicon.svg":             `<svg xmlns="http://www.w3.org/2000/svg"/>`,
		"icon.png":                "\x89PNG\r\n\x1a\n",
		"fonts/x.woff2":           "wOF2",
	}
	for name, body := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

type answer struct {
	code int
	hdr  http.Header
	body string
}

func do(t *testing.T, method, url string, body io.Reader, hdr map[string]string) answer {
	t.Helper()
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return answer{resp.StatusCode, resp.Header, string(b)}
}

func get(t *testing.T, url string) answer { return do(t, http.MethodGet, url, nil, nil) }

func TestWebAppStaticFiles(t *testing.T) {
	dir := webDir(t)
	index, _ := os.ReadFile(filepath.Join(dir, "index.html"))
	base := newGateway(t, gateway.Config{WebDir: dir})

	for _, tc := range []struct {
		path, ctype, cache, body string
	}{
		{"/", "text/html; charset=utf-8", "no-cache", string(index)},
		{"/index.html", "text/html; charset=utf-8", "no-cache", string(index)},
		{"/assets/index-abc123.js", "text/javascript; charset=utf-8", "public, max-age=31536000, immutable", `console.log("app");`},
		{"/assets/index-def456.css", "text/css; charset=utf-8", "public, max-age=31536000, immutable", `body{margin:0}`},
		{"/favicon.svg", "image/svg+xml", "no-cache", `<svg xmlns="http://www.w3.org/2000/svg"/>`},
		{"/icon.png", "image/png", "no-cache", "\x89PNG\r\n\x1a\n"},
		{"/fonts/x.woff2", "font/woff2", "no-cache", "wOF2"},
	} {
		a := get(t, base+tc.path)
		if a.code != http.StatusOK {
			t.Errorf("GET %s: %d, want 200", tc.path, a.code)
			continue
		}
		if got := a.hdr.Get("Content-Type"); got != tc.ctype {
			t.Errorf("GET %s: Content-Type %q, want %q", tc.path, got, tc.ctype)
		}
		if got := a.hdr.Get("Cache-Control"); got != tc.cache {
			t.Errorf("GET %s: Cache-Control %q, want %q", tc.path, got, tc.cache)
		}
		if got := a.hdr.Get("X-Content-Type-Options"); got != "nosniff" {
			t.Errorf("GET %s: X-Content-Type-Options %q, want nosniff", tc.path, got)
		}
		if a.body != tc.body {
			t.Errorf("GET %s: body %q, want %q", tc.path, a.body, tc.body)
		}
	}

	// HEAD answers like GET, without a body.
	if a := do(t, http.MethodHead, base+"/", nil, nil); a.code != http.StatusOK || a.body != "" || !strings.HasPrefix(a.hdr.Get("Content-Type"), "text/html") {
		t.Errorf("HEAD /: %d %q %q", a.code, a.hdr.Get("Content-Type"), a.body)
	}
	// Conditional requests work (ServeContent).
	first := get(t, base+"/assets/index-abc123.js")
	if lm := first.hdr.Get("Last-Modified"); lm == "" {
		t.Error("no Last-Modified on an asset")
	} else if a := do(t, http.MethodGet, base+"/assets/index-abc123.js", nil, map[string]string{"If-Modified-Since": lm}); a.code != http.StatusNotModified {
		t.Errorf("conditional GET: %d, want 304", a.code)
	}
}

func TestWebAppSPAFallback(t *testing.T) {
	dir := webDir(t)
	index, _ := os.ReadFile(filepath.Join(dir, "index.html"))
	base := newGateway(t, gateway.Config{WebDir: dir})

	// The app's client-side routes get index.html.
	for _, p := range []string{"/guest", "/restaurant/dashboard", "/admin/alerts?tab=1", "/assets", "/fonts/"} {
		a := get(t, base+p)
		if a.code != http.StatusOK || a.body != string(index) || a.hdr.Get("Content-Type") != "text/html; charset=utf-8" {
			t.Errorf("GET %s: %d %q %q, want index.html", p, a.code, a.hdr.Get("Content-Type"), a.body)
		}
		if got := a.hdr.Get("Cache-Control"); got != "no-cache" {
			t.Errorf("GET %s: Cache-Control %q, want no-cache", p, got)
		}
	}
	// Missing files are 404, not the app.
	for _, p := range []string{"/assets/gone-123.js", "/missing.png", "/favicon.ico"} {
		if a := get(t, base+p); a.code != http.StatusNotFound {
			t.Errorf("GET %s: %d, want 404", p, a.code)
		}
	}
	// Nothing outside the directory is reachable.
	secret := filepath.Join(filepath.Dir(dir), "secret.txt")
	if err := os.WriteFile(secret, []byte("secret"), 0o644); err == nil {
		t.Cleanup(func() { os.Remove(secret) })
	}
	for _, p := range []string{"/../secret.txt", "/%2e%2e/secret.txt", "/assets/..%2f..%2fsecret.txt"} {
		if a := get(t, base+p); strings.Contains(a.body, "secret") && a.body != string(index) {
			t.Errorf("GET %s escaped the web dir: %d %q", p, a.code, a.body)
		}
	}
	// Only GET and HEAD.
	if a := do(t, http.MethodPost, base+"/guest", strings.NewReader("{}"), nil); a.code != http.StatusMethodNotAllowed {
		t.Errorf("POST /guest: %d, want 405", a.code)
	}
	// The API paths are not the app.
	if a := get(t, base+"/healthz"); a.code != http.StatusOK || a.body != "ok\n" {
		t.Errorf("GET /healthz: %d %q", a.code, a.body)
	}
	if a := get(t, base+"/openapi.json"); a.code != http.StatusOK || a.hdr.Get("Content-Type") != "application/json" {
		t.Errorf("GET /openapi.json: %d %q", a.code, a.hdr.Get("Content-Type"))
	}
	if a := get(t, base+"/v1/no-such-route"); a.code != http.StatusNotFound || a.body == string(index) {
		t.Errorf("GET /v1/no-such-route: %d %q, want the REST gateway's 404", a.code, a.body)
	}
	// A dev-token request on a gateway without a minter is not the app.
	if a := do(t, http.MethodPost, base+"/dev/token", strings.NewReader(`{"role":"guest","sub":"g1"}`), nil); a.code != http.StatusNotFound {
		t.Errorf("POST /dev/token without a minter: %d, want 404", a.code)
	}
}

func TestWebAppNotBuilt(t *testing.T) {
	empty := t.TempDir() // exists, but has no index.html
	for name, dir := range map[string]string{
		"unset":    "",
		"missing":  filepath.Join(t.TempDir(), "no-such-dist"),
		"no index": empty,
	} {
		t.Run(name, func(t *testing.T) {
			base := newGateway(t, gateway.Config{WebDir: dir})
			for _, p := range []string{"/", "/guest"} {
				a := get(t, base+p)
				if a.code != http.StatusNotFound {
					t.Errorf("GET %s: %d, want 404", p, a.code)
				}
				if ct := a.hdr.Get("Content-Type"); ct != "text/plain; charset=utf-8" {
					t.Errorf("GET %s: Content-Type %q", p, ct)
				}
				if !strings.Contains(a.body, "web app is not built") || !strings.Contains(a.body, "make web") {
					t.Errorf("GET %s: body %q does not say how to build the app", p, a.body)
				}
			}
			if a := get(t, base+"/healthz"); a.code != http.StatusOK {
				t.Errorf("GET /healthz: %d", a.code)
			}
		})
	}

	// A build that appears later is served without a restart.
	dir := filepath.Join(t.TempDir(), "dist")
	base := newGateway(t, gateway.Config{WebDir: dir})
	if a := get(t, base+"/"); a.code != http.StatusNotFound {
		t.Fatalf("GET / before the build: %d", a.code)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "index.html"), []byte("<p>built</p>"), 0o644); err != nil {
		t.Fatal(err)
	}
	if a := get(t, base+"/"); a.code != http.StatusOK || a.body != "<p>built</p>" {
		t.Errorf("GET / after the build: %d %q", a.code, a.body)
	}
}

func TestDevTokenHandler(t *testing.T) {
	var got []gateway.DevTokenRequest
	mint := func(req gateway.DevTokenRequest) (string, error) {
		if req.Role == "nobody" {
			return "", io.ErrUnexpectedEOF
		}
		got = append(got, req)
		return "tok-" + req.Role + "-" + req.Sub, nil
	}
	base := newGateway(t, gateway.Config{DevToken: mint})

	a := do(t, http.MethodPost, base+"/dev/token", strings.NewReader(`{"role":"guest","sub":"g1","restaurantId":"r1","ttlSeconds":60}`), map[string]string{"Content-Type": "application/json"})
	if a.code != http.StatusOK || a.hdr.Get("Content-Type") != "application/json" || a.hdr.Get("Cache-Control") != "no-store" {
		t.Fatalf("POST /dev/token: %d %q %q %q", a.code, a.hdr.Get("Content-Type"), a.hdr.Get("Cache-Control"), a.body)
	}
	var out struct{ Token string }
	if err := json.Unmarshal([]byte(a.body), &out); err != nil || out.Token != "tok-guest-g1" {
		t.Fatalf("body %q: %v", a.body, err)
	}
	want := gateway.DevTokenRequest{Role: "guest", Sub: "g1", RestaurantID: "r1", TTLSeconds: 60}
	if len(got) != 1 || got[0] != want {
		t.Fatalf("minter got %+v, want %+v", got, want)
	}

	for _, tc := range []struct {
		method, body string
		code         int
	}{
		{http.MethodGet, "", http.StatusMethodNotAllowed},
		{http.MethodPost, `not json`, http.StatusBadRequest},
		{http.MethodPost, `{"role":"guest","sub":"g1","admin":true}`, http.StatusBadRequest},
		{http.MethodPost, `{"role":"guest","sub":"g1","ttlSeconds":-1}`, http.StatusBadRequest},
		{http.MethodPost, `{"role":"nobody","sub":"x"}`, http.StatusBadRequest},
		{http.MethodPost, `{"role":"guest","sub":"` + strings.Repeat("x", 8<<10) + `"}`, http.StatusBadRequest},
	} {
		a := do(t, tc.method, base+"/dev/token", strings.NewReader(tc.body), nil)
		if a.code != tc.code {
			t.Errorf("%s /dev/token %.40q: %d, want %d (%s)", tc.method, tc.body, a.code, tc.code, a.body)
		}
		if tc.code == http.StatusBadRequest && !strings.Contains(a.body, `"error"`) {
			t.Errorf("%s /dev/token %.40q: body %q has no error", tc.method, tc.body, a.body)
		}
	}
}

// startNode runs a real node on loopback ports; it stops with the test.
func startNode(t *testing.T, mutate func(*node.Config)) *node.Node {
	t.Helper()
	cfg := node.Config{
		GRPCAddr: "127.0.0.1:0",
		HTTPAddr: "127.0.0.1:0",
		ServerID: "gateway-test",
		LogLevel: "error",
		DataDir:  t.TempDir(),
	}
	mutate(&cfg)
	ctx, cancel := context.WithCancel(context.Background())
	n, err := node.New(ctx, cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		cancel()
		t.Fatalf("node.New: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- n.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			t.Error("node did not stop within 20s")
		}
	})
	testenv.Eventually(t, testTimeout, "the node to be ready", func() bool {
		resp, err := client.Get("http://" + n.HTTPAddr() + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	return n
}

func devToken(t *testing.T, base, body string) answer {
	t.Helper()
	return do(t, http.MethodPost, base+"/dev/token", strings.NewReader(body), map[string]string{"Content-Type": "application/json"})
}

func TestNodeDevTokenAndWebDir(t *testing.T) {
	dir := webDir(t)
	n := startNode(t, func(c *node.Config) {
		c.Dev = true
		c.WebDir = dir
	})
	base := "http://" + n.HTTPAddr()

	// The app is served from --web-dir.
	if a := get(t, base+"/restaurant"); a.code != http.StatusOK || !strings.Contains(a.body, `<div id="root">`) {
		t.Fatalf("GET /restaurant: %d %q", a.code, a.body)
	}

	tokenOf := func(body string) string {
		t.Helper()
		a := devToken(t, base, body)
		if a.code != http.StatusOK {
			t.Fatalf("POST /dev/token %s: %d %s", body, a.code, a.body)
		}
		var out struct {
			Token string `json:"token"`
		}
		if err := json.Unmarshal([]byte(a.body), &out); err != nil || out.Token == "" {
			t.Fatalf("POST /dev/token %s: body %q: %v", body, a.body, err)
		}
		return out.Token
	}

	// The tokens are signed with the dev secret and carry the claims asked for.
	v, err := auth.NewVerifier(auth.Config{HMACSecret: []byte(node.DevSecret)})
	if err != nil {
		t.Fatal(err)
	}
	guest := tokenOf(`{"role":"guest","sub":"g1","restaurantId":"r1"}`)
	c, err := v.Verify(guest)
	if err != nil {
		t.Fatalf("verify the guest token with the dev secret: %v", err)
	}
	if c.Subject != "g1" || c.Role != notifyv1.Role_ROLE_GUEST || c.RestaurantID != "r1" {
		t.Errorf("guest claims %+v", c)
	}
	if ttl := time.Until(c.ExpiresAt); ttl < 50*time.Minute || ttl > 61*time.Minute {
		t.Errorf("default lifetime %v, want about an hour", ttl)
	}
	cashier := tokenOf(`{"role":"cashier","sub":"c1","restaurantId":"r1","ttlSeconds":120}`)
	if c, err := v.Verify(cashier); err != nil || c.Role != notifyv1.Role_ROLE_CASHIER || time.Until(c.ExpiresAt) > 2*time.Minute {
		t.Errorf("cashier token: %+v %v", c, err)
	}

	// The node accepts them: a service publishes over REST, the guest's
	// REST stream receives the event.
	service := tokenOf(`{"role":"service","sub":"loyalty-backend"}`)
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/v1/subscribe?rooms=guest:g1", nil)
	req.Header.Set("Authorization", "Bearer "+guest)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /v1/subscribe with a dev token: %d", resp.StatusCode)
	}
	dec := json.NewDecoder(resp.Body)
	var first map[string]any
	if err := dec.Decode(&first); err != nil || !strings.Contains(toJSON(first), `"connected"`) {
		t.Fatalf("first stream message %v: %v", first, err)
	}
	pub := do(t, http.MethodPost, base+"/v1/events",
		strings.NewReader(`{"pointsAdded":{"guestId":"g1","cardId":"c1","restaurantId":"r1","amount":100,"newBalance":600}}`),
		map[string]string{"Authorization": "Bearer " + service})
	if pub.code != http.StatusOK {
		t.Fatalf("publish with a dev service token: %d %s", pub.code, pub.body)
	}
	for {
		var msg map[string]any
		if err := dec.Decode(&msg); err != nil {
			t.Fatalf("stream ended before the event: %v", err)
		}
		if s := toJSON(msg); strings.Contains(s, `"pointsAdded"`) {
			if !strings.Contains(s, `"newBalance":"600"`) {
				t.Errorf("event %s", s)
			}
			break
		}
	}

	// Bad requests are 400 with the reason.
	for _, body := range []string{
		`{"role":"superuser","sub":"x"}`,
		`{"role":"guest"}`,
		`{"role":"restaurant","sub":"rest1"}`,
	} {
		if a := devToken(t, base, body); a.code != http.StatusBadRequest || !strings.Contains(a.body, `"error"`) {
			t.Errorf("POST /dev/token %s: %d %s, want 400", body, a.code, a.body)
		}
	}
}

func TestNodeWithoutDevHasNoDevToken(t *testing.T) {
	n := startNode(t, func(c *node.Config) {
		c.JWTSecret = "gateway-test-secret-0123456789-abcdefghijklmnop"
		c.WebDir = filepath.Join(t.TempDir(), "absent")
	})
	base := "http://" + n.HTTPAddr()
	for _, m := range []string{http.MethodPost, http.MethodGet} {
		if a := do(t, m, base+"/dev/token", bytes.NewReader([]byte(`{"role":"admin","sub":"a1"}`)), nil); a.code != http.StatusNotFound || strings.Contains(a.body, "token") {
			t.Errorf("%s /dev/token on a node without --dev: %d %q, want 404", m, a.code, a.body)
		}
	}
	if a := get(t, base+"/"); a.code != http.StatusNotFound || !strings.Contains(a.body, "not built") {
		t.Errorf("GET / without a build: %d %q", a.code, a.body)
	}
}

func toJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// TestAppConfig: GET /app.json tells the web app where its grpc-web calls
// go: the configured base URL without a trailing slash, or "" (its page's
// origin).
func TestAppConfig(t *testing.T) {
	for url, want := range map[string]string{
		"":                                 `{"grpcWebUrl":""}`,
		"https://notify.example.com:9090/": `{"grpcWebUrl":"https://notify.example.com:9090"}`,
	} {
		base := newGateway(t, gateway.Config{AppGRPCWebURL: url})
		a := get(t, base+"/app.json")
		if a.code != http.StatusOK || a.body != want || a.hdr.Get("Content-Type") != "application/json" || a.hdr.Get("Cache-Control") != "no-cache" {
			t.Errorf("AppGRPCWebURL %q: GET /app.json: %d %q %v, want 200 %s, JSON, no-cache", url, a.code, a.body, a.hdr, want)
		}
	}
	base := newGateway(t, gateway.Config{})
	if a := do(t, http.MethodPost, base+"/app.json", strings.NewReader("{}"), nil); a.code != http.StatusMethodNotAllowed {
		t.Errorf("POST /app.json: %d, want 405", a.code)
	}
}
