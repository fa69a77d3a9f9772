package main

import (
	"os/exec"
	"strings"
	"testing"
)

// TestDependencies keeps notifyctl a client: it links the Go SDK and the
// token signer, never the server, its databases or the REST gateway.
func TestDependencies(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	for _, forbidden := range []string{
		"github.com/maxloyalty/notify/internal/node",
		"github.com/maxloyalty/notify/internal/service",
		"github.com/maxloyalty/notify/internal/store",
		"github.com/maxloyalty/notify/internal/wire",
		"github.com/maxloyalty/notify/internal/gateway",
		"github.com/grpc-ecosystem/grpc-gateway",
		"github.com/redis/go-redis",
		"github.com/jackc/pgx",
		"modernc.org/sqlite",
	} {
		for _, pkg := range strings.Fields(string(out)) {
			if pkg == forbidden || strings.HasPrefix(pkg, forbidden+"/") {
				t.Errorf("notifyctl depends on %s", pkg)
				break
			}
		}
	}
}
