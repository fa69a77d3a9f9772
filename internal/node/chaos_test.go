package node_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	notifyv1 "github.com/maxloyalty/notify/gen/notify/v1"
	"github.com/maxloyalty/notify/internal/node"
	"github.com/maxloyalty/notify/internal/testenv"
)

// privatePostgres is a PostgreSQL cluster of the test's own, so that it can
// be stopped and started without disturbing anything else.
type privatePostgres struct {
	bin, dir, port string
	run            func(name string, args ...string) *exec.Cmd
}

func startPrivatePostgres(t *testing.T) *privatePostgres {
	t.Helper()
	matches, _ := filepath.Glob("/usr/lib/postgresql/*/bin/pg_ctl")
	if len(matches) == 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("PostgreSQL server binaries are required in CI")
		}
		t.Skip("PostgreSQL server binaries not installed")
	}
	p := &privatePostgres{bin: filepath.Dir(matches[len(matches)-1])}
	base, err := os.MkdirTemp("", "notify-pg-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	p.dir = filepath.Join(base, "data")
	p.run = func(name string, args ...string) *exec.Cmd { return exec.Command(filepath.Join(p.bin, name), args...) }
	if os.Geteuid() == 0 {
		// PostgreSQL refuses to run as root: run it as the postgres user.
		u, err := user.Lookup("postgres")
		if err != nil {
			t.Skipf("running as root without a postgres user: %v", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		if err := os.Chown(base, uid, gid); err != nil {
			t.Fatal(err)
		}
		p.run = func(name string, args ...string) *exec.Cmd {
			return exec.Command("runuser", append([]string{"-u", "postgres", "--", filepath.Join(p.bin, name)}, args...)...)
		}
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p.port = strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
	l.Close()
	if out, err := p.run("initdb", "-D", p.dir, "-U", "postgres", "-A", "trust", "--no-sync").CombinedOutput(); err != nil {
		t.Fatalf("initdb: %v\n%s", err, out)
	}
	p.start(t)
	t.Cleanup(func() { _ = p.run("pg_ctl", "-D", p.dir, "-m", "immediate", "stop").Run() })
	return p
}

func (p *privatePostgres) start(t *testing.T) {
	t.Helper()
	opts := fmt.Sprintf("-p %s -c listen_addresses=127.0.0.1 -k %s -c fsync=off", p.port, filepath.Dir(p.dir))
	if out, err := p.run("pg_ctl", "-D", p.dir, "-o", opts, "-w", "-l", filepath.Join(filepath.Dir(p.dir), "log"), "start").CombinedOutput(); err != nil {
		t.Fatalf("pg_ctl start: %v\n%s", err, out)
	}
}

func (p *privatePostgres) stop(t *testing.T) {
	t.Helper()
	if out, err := p.run("pg_ctl", "-D", p.dir, "-m", "immediate", "-w", "stop").CombinedOutput(); err != nil {
		t.Fatalf("pg_ctl stop: %v\n%s", err, out)
	}
}

func (p *privatePostgres) dsn() string {
	return "postgres://postgres@127.0.0.1:" + p.port + "/postgres?sslmode=disable&connect_timeout=2"
}

// TestChaosPostgresStopped: with PostgreSQL stopped mid-run, publishes that
// need the inbox fail with UNAVAILABLE and nothing is half-written; when it
// returns, everything works again without restarting notifyd.
func TestChaosPostgresStopped(t *testing.T) {
	pg := startPrivatePostgres(t)
	n := startNode(t, func(c *node.Config) { c.Store = pg.dsn() })
	ctx := testCtx(t)
	c, ib := dialInbox(t, n.GRPCAddr())
	svc := mint(t, serviceClaims)
	guest := mint(t, guestClaims)

	var stored []string
	pub := func(i int) error {
		pctx, cancel := context.WithTimeout(withToken(ctx, svc), 5*time.Second)
		defer cancel()
		resp, err := c.Publish(pctx, pointsReq(pointsAdded("g1", "r1", int64(i+1))))
		if err == nil {
			stored = append(stored, resp.EventId)
		}
		return err
	}
	for i := range 3 {
		if err := pub(i); err != nil {
			t.Fatalf("publish %d with PostgreSQL up: %v", i, err)
		}
	}

	pg.stop(t)
	failed := 0
	for i := 3; i < 6; i++ {
		err := pub(i)
		if err == nil {
			t.Fatalf("publish %d succeeded with PostgreSQL down", i)
		}
		if status.Code(err) != codes.Unavailable {
			t.Fatalf("publish %d with PostgreSQL down: %v, want Unavailable", i, err)
		}
		failed++
	}
	_, err := ib.ListNotifications(withToken(ctx, guest), &notifyv1.ListNotificationsRequest{})
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("inbox list with PostgreSQL down: %v, want Unavailable", err)
	}
	if r := restDo(t, ctx, "GET", "http://"+n.HTTPAddr()+"/readyz", "", ""); r.status != 503 {
		t.Fatalf("/readyz with PostgreSQL down = %d %s, want 503", r.status, r.body)
	}

	pg.start(t)
	last := errors.New("no publish yet")
	defer func() {
		if last != nil { // Eventually failed the test
			t.Logf("last publish error: %v", last)
		}
	}()
	testenv.Eventually(t, 20*time.Second, "publish to succeed after PostgreSQL came back", func() bool {
		last = pub(6)
		return last == nil
	})
	list, err := ib.ListNotifications(withToken(ctx, guest), &notifyv1.ListNotificationsRequest{PageSize: 50})
	if err != nil {
		t.Fatalf("inbox after PostgreSQL came back: %v", err)
	}
	var got []string
	for _, it := range list.Notifications {
		got = append(got, it.Event.Id)
	}
	// Newest first; exactly the acknowledged publishes, none of the failed.
	for i, j := 0, len(got)-1; i < j; i, j = i+1, j-1 {
		got[i], got[j] = got[j], got[i]
	}
	if strings.Join(got, ",") != strings.Join(stored, ",") {
		t.Fatalf("inbox holds %v, want exactly the %d acknowledged publishes %v (%d failed)", got, len(stored), stored, failed)
	}
}

// inboxProbe publishes PointsAdded events for guest g1 as a service and
// lists g1's inbox, remembering the ids of the publishes acknowledged.
type inboxProbe struct {
	t          *testing.T
	ctx        context.Context
	c          notifyv1.NotificationServiceClient
	ib         notifyv1.InboxServiceClient
	svc, guest string
	acked      []string
}

func newInboxProbe(t *testing.T, n *testNode) *inboxProbe {
	c, ib := dialInbox(t, n.GRPCAddr())
	return &inboxProbe{t: t, ctx: testCtx(t), c: c, ib: ib, svc: mint(t, serviceClaims), guest: mint(t, guestClaims)}
}

// pub publishes the i-th event.
func (p *inboxProbe) pub(i int) error {
	resp, err := p.c.Publish(withToken(p.ctx, p.svc), pointsReq(pointsAdded("g1", "r1", int64(i+1))))
	if err == nil {
		p.acked = append(p.acked, resp.EventId)
	}
	return err
}

// listed returns the event ids in g1's inbox, oldest first.
func (p *inboxProbe) listed() []string {
	p.t.Helper()
	resp, err := p.ib.ListNotifications(withToken(p.ctx, p.guest), &notifyv1.ListNotificationsRequest{PageSize: 200})
	if err != nil {
		p.t.Fatalf("list: %v", err)
	}
	var ids []string
	for i := len(resp.Notifications) - 1; i >= 0; i-- {
		ids = append(ids, resp.Notifications[i].Event.Id)
	}
	return ids
}

// tinyDisk mounts a small tmpfs of the test's own (root only), for a data
// directory that can fill up.
func tinyDisk(t *testing.T, size string) string {
	t.Helper()
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size, "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs here (%v: %s): the full-disk case needs it", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("umount", "-l", dir).Run() })
	return dir
}

// TestChaosSQLiteDiskFull: with the SQLite file's disk full, publishes to inbox rooms fail with a clear
// UNAVAILABLE and nothing acknowledged is lost; when space returns,
// publishing works again without a restart.
func TestChaosSQLiteDiskFull(t *testing.T) {
	disk := tinyDisk(t, "4m")
	n := startNode(t, func(c *node.Config) { c.DataDir = disk })
	p := newInboxProbe(t, n)
	pub, listed := p.pub, p.listed
	for i := range 3 {
		if err := pub(i); err != nil {
			t.Fatalf("publish %d: %v", i, err)
		}
	}

	// Disk full: fill what is left.
	filler := filepath.Join(disk, "filler")
	_ = exec.Command("dd", "if=/dev/zero", "of="+filler, "bs=64k").Run() // stops at ENOSPC
	full := 0
	for i := 3; i < 40; i++ {
		err := pub(i)
		if err == nil {
			continue // pages free inside the database file can still take a row
		}
		if status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), "not stored") {
			t.Fatalf("publish on a full disk: %v, want Unavailable saying the event was not stored", err)
		}
		full++
	}
	if full == 0 {
		t.Fatal("no publish failed on a full disk")
	}
	if got := listed(); strings.Join(got, ",") != strings.Join(p.acked, ",") {
		t.Fatalf("on a full disk the inbox lists %v, want the acknowledged %v", got, p.acked)
	}
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	if err := pub(100); err != nil {
		t.Fatalf("publish after space came back: %v", err)
	}

	if got := listed(); strings.Join(got, ",") != strings.Join(p.acked, ",") {
		t.Fatalf("at the end the inbox lists %v, want the acknowledged %v", got, p.acked)
	}
}
