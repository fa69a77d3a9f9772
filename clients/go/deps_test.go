package notify_test

import (
	"os/exec"
	"strings"
	"testing"
)

// TestDependencies keeps the SDK small: it compiles the contract's
// messages and gRPC stubs and grpc-go, never the REST gateway's runtime or
// anything of the server.
func TestDependencies(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	for _, pkg := range strings.Fields(string(out)) {
		for _, forbidden := range []string{
			"github.com/grpc-ecosystem/grpc-gateway",
			"github.com/maxloyalty/notify/gen/gw",
			"github.com/maxloyalty/notify/server",
			"github.com/maxloyalty/notify/internal",
			"github.com/redis/go-redis",
			"github.com/jackc/pgx",
			"modernc.org/sqlite",
		} {
			if pkg == forbidden || strings.HasPrefix(pkg, forbidden+"/") {
				t.Errorf("the SDK depends on %s", pkg)
			}
		}
	}
}
