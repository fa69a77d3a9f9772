package node_test

import (
	"context"
	"encoding/json"
	"flag"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	notifyv1 "github.com/maxloyalty/notify/gen/notify/v1"
	"github.com/maxloyalty/notify/internal/auth"
	"github.com/maxloyalty/notify/internal/node"
)

// TestDevModeRefusesAConfiguredKey: --dev with --jwt-secret made POST
// /dev/token sign admin and service tokens with the real secret, valid on
// every node sharing it. Dev mode with any configured key is a config
// error naming both settings.
func TestDevModeRefusesAConfiguredKey(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		mutate func(*node.Config)
		want   string
	}{
		{"jwt secret", func(c *node.Config) { c.JWTSecret = testSecret }, "dev, jwt-secret: "},
		{"public key file", func(c *node.Config) { c.JWTPublicKeyFile = "keys.pem" }, "dev, jwt-public-key-file: "},
		{"jwks file", func(c *node.Config) { c.JWTJWKSFile = "keys.json" }, "dev, jwt-jwks-file: "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := node.Config{GRPCAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0", DataDir: t.TempDir(), Dev: true}
			tc.mutate(&cfg)
			err := cfg.Defaults().Validate()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Validate: %v, want an error starting %q", err, tc.want)
			}
			ctx, cancel := context.WithCancel(context.Background())
			n, err := node.New(ctx, cfg, slog.New(slog.DiscardHandler))
			if err == nil {
				cancel()
				_ = n.Run(ctx) // releases what New built
				t.Fatal("node.New accepted dev mode with a configured key")
			}
			cancel()
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("node.New: %v, want it to name %q", err, tc.want)
			}
		})
	}
}

// logRecorder is a slog handler keeping every record.
type logRecorder struct {
	mu      sync.Mutex
	records []slog.Record
}

func (r *logRecorder) Enabled(context.Context, slog.Level) bool { return true }
func (r *logRecorder) Handle(_ context.Context, rec slog.Record) error {
	r.mu.Lock()
	r.records = append(r.records, rec.Clone())
	r.mu.Unlock()
	return nil
}
func (r *logRecorder) WithAttrs([]slog.Attr) slog.Handler { return r }
func (r *logRecorder) WithGroup(string) slog.Handler      { return r }

func (r *logRecorder) count(level slog.Level, substr string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, rec := range r.records {
		if rec.Level == level && strings.Contains(rec.Message, substr) {
			n++
		}
	}
	return n
}

// TestDevModeWarnsAndMintsWithTheDevSecret: a dev-mode node says once, at
// Warn, that it accepts and mints tokens signed with the public dev
// secret; its minted tokens verify with that secret and expire.
func TestDevModeWarnsAndMintsWithTheDevSecret(t *testing.T) {
	t.Parallel()
	rec := &logRecorder{}
	cfg := node.Config{GRPCAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0", DataDir: t.TempDir(), Dev: true, GRPCTransport: testGRPCTransport()}
	ctx, cancel := context.WithCancel(context.Background())
	n, err := node.New(ctx, cfg, slog.New(rec))
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- n.Run(ctx) }()
	defer func() {
		cancel()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			t.Error("node did not stop")
		}
	}()
	tn := &testNode{Node: n}
	waitReady(t, tn)
	if got := rec.count(slog.LevelWarn, "dev mode"); got != 1 {
		t.Errorf("%d Warn lines about dev mode at start, want 1", got)
	}

	r := restDo(t, testCtx(t), http.MethodPost, "http://"+n.HTTPAddr()+"/dev/token", "", `{"role":"admin","sub":"a1"}`)
	var body struct {
		Token string `json:"token"`
	}
	if r.status != http.StatusOK || json.Unmarshal(r.body, &body) != nil {
		t.Fatalf("POST /dev/token: %d %s", r.status, r.body)
	}
	v, err := auth.NewVerifier(auth.Config{HMACSecret: []byte(node.DevSecret), RequireExpiry: true})
	if err != nil {
		t.Fatal(err)
	}
	c, err := v.Verify(body.Token)
	if err != nil || c.Role != notifyv1.Role_ROLE_ADMIN || c.ExpiresAt.IsZero() {
		t.Errorf("dev token: %+v, %v; want an admin token with exp, signed with the dev secret", c, err)
	}
}

// TestTokenExpiryRequired: a token without exp is refused (gRPC
// UNAUTHENTICATED, REST 401) unless its role is in
// --jwt-allow-no-expiry-roles; a token issued in the future (beyond the
// leeway) is refused whatever its role.
func TestTokenExpiryRequired(t *testing.T) {
	t.Parallel()
	strict := startNode(t, nil)
	lenient := startNode(t, func(c *node.Config) { c.JWTAllowNoExpiryRoles = []string{"service"} })
	ctx := testCtx(t)
	future := auth.WithIssuedAt(time.Now().Add(time.Hour))
	for _, tc := range []struct {
		name string
		n    *testNode
		tok  string
		want codes.Code
	}{
		{"service with exp (control)", strict, mint(t, serviceClaims), codes.OK},
		{"service without exp", strict, mintWith(t, testSecret, serviceClaims, 0), codes.Unauthenticated},
		{"admin without exp", strict, mintWith(t, testSecret, adminClaims, 0), codes.Unauthenticated},
		{"service without exp, services allowed", lenient, mintWith(t, testSecret, serviceClaims, 0), codes.OK},
		{"admin without exp, services allowed", lenient, mintWith(t, testSecret, adminClaims, 0), codes.Unauthenticated},
		{"issued an hour ahead", strict, mintWith(t, testSecret, serviceClaims, 2*time.Hour, future), codes.Unauthenticated},
		{"issued an hour ahead, no exp, services allowed", lenient, mintWith(t, testSecret, serviceClaims, 0, future), codes.Unauthenticated},
		{"issued within the leeway", strict, mintWith(t, testSecret, serviceClaims, time.Hour, auth.WithIssuedAt(time.Now().Add(2*time.Second))), codes.OK},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// An admin token publishes an alert, a service token points.
			req := pointsReq(pointsAdded("g1", "r1", 1), "guest:g1")
			body := `{"rooms":["guest:g1"],"pointsAdded":{"guestId":"g1","restaurantId":"r1","amount":"1"}}`
			if strings.HasPrefix(tc.name, "admin") {
				req = &notifyv1.PublishRequest{Payload: &notifyv1.PublishRequest_SystemAlert{SystemAlert: &notifyv1.SystemAlert{
					Level: notifyv1.AlertLevel_ALERT_LEVEL_INFO, Title: "t", Message: "m"}}}
				body = `{"systemAlert":{"level":"ALERT_LEVEL_INFO","title":"t","message":"m"}}`
			}
			_, err := dial(t, tc.n.GRPCAddr()).Publish(withToken(ctx, tc.tok), req)
			if got := status.Code(err); got != tc.want {
				t.Errorf("gRPC Publish: %v, want %v", err, tc.want)
			}
			wantHTTP := map[codes.Code]int{codes.OK: http.StatusOK, codes.Unauthenticated: http.StatusUnauthorized}[tc.want]
			if r := restDo(t, ctx, http.MethodPost, "http://"+tc.n.HTTPAddr()+"/v1/events", tc.tok, body); r.status != wantHTTP {
				t.Errorf("REST publish: HTTP %d %s, want %d", r.status, r.body, wantHTTP)
			}
		})
	}
}

// TestNoExpiryRolesFlag: --jwt-allow-no-expiry-roles (and its variable)
// sets the roles; an unknown role is a config error naming the setting.
func TestNoExpiryRolesFlag(t *testing.T) {
	fs := flag.NewFlagSet("notifyd", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var cfg node.Config
	if err := cfg.BindFlags(fs); err != nil {
		t.Fatal(err)
	}
	if err := fs.Parse([]string{"--jwt-allow-no-expiry-roles", "service, admin"}); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(cfg.JWTAllowNoExpiryRoles, ","); got != "service,admin" {
		t.Errorf("JWTAllowNoExpiryRoles = %q, want service,admin", got)
	}
	cfg.JWTSecret = testSecret
	if err := cfg.Defaults().Validate(); err != nil {
		t.Errorf("Validate: %v", err)
	}
	cfg.JWTAllowNoExpiryRoles = []string{"service", "robot"}
	err := cfg.Defaults().Validate()
	if err == nil || !strings.HasPrefix(err.Error(), "jwt-allow-no-expiry-roles: ") || !strings.Contains(err.Error(), `"robot"`) {
		t.Errorf("Validate with role robot: %v, want an error naming jwt-allow-no-expiry-roles and robot", err)
	}
}
