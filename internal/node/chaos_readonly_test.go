package node_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/maxloyalty/notify/internal/node"
)

// immutable sets or clears the immutable attribute of the SQLite database
// and WAL files in dir. Unlike a permission change, it stops writes through
// descriptors already open, and for root too: the running node's files
// become read-only under it. The shared-memory index (-shm) is left alone:
// SQLite maps it into memory, and a write fault on a mapping the kernel
// refuses to write is a SIGBUS that no process survives, whatever it runs.
func immutable(t *testing.T, dir string, on bool) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	flag := "-i"
	if on {
		flag = "+i"
	}
	for _, e := range entries {
		if e.IsDir() || strings.HasSuffix(e.Name(), "-shm") {
			continue
		}
		p := filepath.Join(dir, e.Name())
		if out, err := exec.Command("chattr", flag, p).CombinedOutput(); err != nil {
			if on {
				t.Skipf("cannot make %s immutable here (%v: %s): the read-only case needs chattr on a filesystem that supports it", p, err, out)
			}
			t.Errorf("chattr -i %s: %v: %s", p, err, out)
		}
	}
}

// TestChaosSQLiteReadOnly: with the SQLite files turned read-only under a
// running node, publishes to inbox rooms fail with a clear UNAVAILABLE, the
// inbox still lists exactly what was acknowledged, and once the files are
// writable again publishing works without a restart.
func TestChaosSQLiteReadOnly(t *testing.T) {
	dir := t.TempDir()
	n := startNode(t, func(c *node.Config) { c.DataDir = dir })
	p := newInboxProbe(t, n)
	pub, listed := p.pub, p.listed
	for i := range 3 {
		if err := pub(i); err != nil {
			t.Fatalf("publish %d: %v", i, err)
		}
	}

	t.Cleanup(func() { immutable(t, dir, false) }) // or TempDir cannot remove them
	immutable(t, dir, true)
	for i := 3; i < 8; i++ {
		err := pub(i)
		if status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), "not stored") {
			t.Fatalf("publish %d with read-only files: %v, want Unavailable saying the event was not stored", i, err)
		}
	}
	if got := listed(); strings.Join(got, ",") != strings.Join(p.acked, ",") {
		t.Fatalf("with read-only files the inbox lists %v, want the acknowledged %v", got, p.acked)
	}

	immutable(t, dir, false)
	for i := 8; i < 11; i++ {
		if err := pub(i); err != nil {
			t.Fatalf("publish %d once the files are writable again: %v", i, err)
		}
	}
	if got := listed(); strings.Join(got, ",") != strings.Join(p.acked, ",") || len(p.acked) != 6 {
		t.Fatalf("at the end the inbox lists %v, want the 6 acknowledged %v", got, p.acked)
	}
}
