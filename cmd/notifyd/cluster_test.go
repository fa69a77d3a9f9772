package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	notify "github.com/maxloyalty/notify/clients/go"
	notifyv1 "github.com/maxloyalty/notify/gen/notify/v1"
	"github.com/maxloyalty/notify/internal/auth"
	"github.com/maxloyalty/notify/internal/testenv"
)

// These tests run several real notifyd processes sharing rooms through the
// real Redis (NOTIFY_TEST_REDIS_URL), or through a redis-server of their
// own when they must stop it, and nginx in front when they need a load
// balancer.

func clusterRedisURL(t *testing.T) string {
	t.Helper()
	return testenv.Service(t, testenv.RedisURL)
}

// startNodes starts n notifyd processes on one Redis, with a key prefix of
// their own.
func startNodes(t *testing.T, redisURL string, n int, extra ...string) []*daemon {
	t.Helper()
	prefix := fmt.Sprintf("notify-cluster-%d", rand.Uint64())
	var nodes []*daemon
	for i := range n {
		args := append([]string{"--broker", "redis", "--redis-url", redisURL, "--redis-prefix", prefix,
			"--server-id", fmt.Sprintf("node-%c", 'a'+i), "--reconnect-delay-min", "50ms", "--reconnect-delay-max", "200ms"}, extra...)
		nodes = append(nodes, startDaemon(t, t.TempDir(), args...))
	}
	return nodes
}

// collector records what a subscription delivers.
type collector struct {
	mu     sync.Mutex
	events []*notifyv1.Event
	gaps   []string
}

func (c *collector) handle(ev *notifyv1.Event) {
	c.mu.Lock()
	c.events = append(c.events, ev)
	c.mu.Unlock()
}

func (c *collector) gap(room string, _ *notifyv1.RoomState) {
	c.mu.Lock()
	c.gaps = append(c.gaps, room)
	c.mu.Unlock()
}

func (c *collector) offsets() []uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]uint64, len(c.events))
	for i, ev := range c.events {
		out[i] = ev.Offset
	}
	return out
}

func seq(from, to uint64) []uint64 {
	var out []uint64
	for i := from; i <= to; i++ {
		out = append(out, i)
	}
	return out
}

func dialNode(t *testing.T, addr, tok string) *notify.Client {
	t.Helper()
	c, err := notify.Dial(addr, notify.WithInsecure(), notify.WithToken(tok), notify.WithBackoff(50*time.Millisecond, 500*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func transaction(i int) *notifyv1.RestaurantTransaction {
	return &notifyv1.RestaurantTransaction{
		RestaurantId: "r1", TransactionId: fmt.Sprintf("t%d", i), GuestId: "g1",
		Type: notifyv1.TransactionType_TRANSACTION_TYPE_PURCHASE, Amount: int64(i + 1), TotalToday: int64(i + 1),
	}
}

// TestClusterCrossNode: a subscriber on one node gets what is published on
// the other; it drops from A and resumes on B with exactly what it missed;
// GetStats sees both nodes.
func TestClusterCrossNode(t *testing.T) {
	nodes := startNodes(t, clusterRedisURL(t), 2)
	a, b := nodes[0], nodes[1]
	ctx := testCtx(t)
	guest := token(t, auth.Claims{Subject: "g1", Role: notifyv1.Role_ROLE_GUEST})
	service := token(t, auth.Claims{Subject: "backend", Role: notifyv1.Role_ROLE_SERVICE})

	onA := &collector{}
	subA := dialNode(t, a.grpcAddr, guest).Subscribe(ctx, notify.SubscribeOptions{Rooms: []string{"guest:g1"}, Handler: onA.handle, OnGap: onA.gap})
	testenv.Eventually(t, 5*time.Second, "the subscription on A", func() bool { return subA.Connected() != nil })
	pubB := dialNode(t, b.grpcAddr, service)
	publish := func(from, to int) {
		t.Helper()
		for i := from; i < to; i++ {
			if _, err := pubB.Publish(ctx, &notifyv1.PointsAdded{GuestId: "g1", RestaurantId: "r1", Amount: int64(i + 1), NewBalance: int64(i + 1)}, notify.Rooms("guest:g1")); err != nil {
				t.Fatalf("publish %d on B: %v", i, err)
			}
		}
	}
	publish(0, 10)
	testenv.Eventually(t, 5*time.Second, "10 events on A", func() bool { return len(onA.offsets()) == 10 })
	if got := onA.offsets(); !slices.Equal(got, seq(1, 10)) {
		t.Fatalf("A received offsets %v, want 1..10", got)
	}

	// Drop from A, miss five events, resume on B.
	positions := subA.Positions()
	subA.Close()
	publish(10, 15)
	onB := &collector{}
	var connected *notifyv1.Connected
	subB := dialNode(t, b.grpcAddr, guest).Subscribe(ctx, notify.SubscribeOptions{
		Rooms: []string{"guest:g1"}, Positions: positions, Handler: onB.handle, OnGap: onB.gap,
		OnConnected: func(c *notifyv1.Connected) { connected = c },
	})
	testenv.Eventually(t, 5*time.Second, "the 5 missed events on B", func() bool { return len(onB.offsets()) >= 5 })
	publish(15, 16)
	testenv.Eventually(t, 5*time.Second, "the live event on B", func() bool { return len(onB.offsets()) == 6 })
	if got := onB.offsets(); !slices.Equal(got, seq(11, 16)) || len(onB.gaps) != 0 {
		t.Fatalf("B received %v with gaps %v, want 11..16 and no gap", got, onB.gaps)
	}
	if st := connected.GetRooms()[0]; !st.Recovered || connected.ServerId != "node-b" {
		t.Fatalf("resume on B: %v", connected)
	}

	// The cluster view from either node counts both.
	admin := dialNode(t, a.grpcAddr, "")
	testenv.Eventually(t, 10*time.Second, "both nodes in GetStats", func() bool {
		resp, err := notifyv1.NewNotificationServiceClient(admin.Conn()).GetStats(withAuth(ctx, token(t, auth.Claims{Subject: "ad", Role: notifyv1.Role_ROLE_ADMIN})), &notifyv1.GetStatsRequest{})
		if err != nil {
			t.Fatalf("GetStats: %v", err)
		}
		return len(resp.Nodes) == 2 && resp.Cluster.Streams >= 1 && resp.Node.ServerId == "node-a"
	})
	subB.Close()
}

// TestClusterNodeKilled: subscribers behind nginx are spread over two
// nodes; one node is SIGKILLed while publishing goes on through the other;
// its clients reconnect through nginx to the survivor and miss nothing.
func TestClusterNodeKilled(t *testing.T) {
	nodes := startNodes(t, clusterRedisURL(t), 2)
	a, b := nodes[0], nodes[1]
	lb := startNginx(t, nodes)
	ctx := testCtx(t)
	staff := token(t, auth.Claims{Subject: "cashier1", Role: notifyv1.Role_ROLE_CASHIER, RestaurantID: "r1"})
	const room = "restaurant:r1:transactions"
	const subscribers, events = 6, 300

	cols := make([]*collector, subscribers)
	for i := range cols {
		cols[i] = &collector{}
		// A client of its own per subscriber, so nginx spreads the connections.
		sub := dialNode(t, lb.grpcAddr, staff).Subscribe(ctx, notify.SubscribeOptions{Rooms: []string{room}, Handler: cols[i].handle, OnGap: cols[i].gap})
		testenv.Eventually(t, 5*time.Second, "subscriber connected", func() bool { return sub.Connected() != nil })
	}
	onA := streamsOn(t, ctx, a)
	if onA == 0 || onA == subscribers {
		t.Fatalf("%d of %d streams on node A: the balancer did not spread them", onA, subscribers)
	}

	pub := dialNode(t, b.grpcAddr, token(t, auth.Claims{Subject: "backend", Role: notifyv1.Role_ROLE_SERVICE}))
	for i := range events {
		if i == events/3 {
			a.kill(t)
		}
		if _, err := pub.Publish(ctx, transaction(i)); err != nil {
			t.Fatalf("publish %d: %v", i, err)
		}
		// pacing: the events are spread over the kill, so that some are in
		// flight to the subscribers on A when it dies.
		time.Sleep(2 * time.Millisecond)
	}
	for i, c := range cols {
		testenv.Eventually(t, 15*time.Second, fmt.Sprintf("subscriber %d to catch up", i), func() bool { return len(c.offsets()) >= events })
		if got := c.offsets(); !slices.Equal(got, seq(1, events)) || len(c.gaps) != 0 {
			t.Fatalf("subscriber %d: %d events (first %v), gaps %v; want exactly 1..%d", i, len(got), got[:min(5, len(got))], c.gaps, events)
		}
	}
}

// streamsOn asks a node for its own stream count.
func streamsOn(t *testing.T, ctx context.Context, d *daemon) int64 {
	t.Helper()
	c := dialNode(t, d.grpcAddr, "")
	tok := token(t, auth.Claims{Subject: "ad", Role: notifyv1.Role_ROLE_ADMIN})
	resp, err := notifyv1.NewNotificationServiceClient(c.Conn()).GetStats(withAuth(ctx, tok), &notifyv1.GetStatsRequest{})
	if err != nil {
		t.Fatalf("GetStats: %v", err)
	}
	return resp.Node.Streams
}

// TestClusterRedisRestart: Redis is stopped and started again (empty)
// while two nodes serve subscribers and a publisher keeps publishing. Every
// failed publish is reported to the publisher; the nodes recover without a
// restart; every subscriber gets every event published after the restart,
// once and in order, and any event it misses from before is declared with
// OnGap.
func TestClusterRedisRestart(t *testing.T) {
	redis := startRedisServer(t, "")
	nodes := startNodes(t, redis.url(), 2)
	ctx := testCtx(t)
	staff := token(t, auth.Claims{Subject: "cashier1", Role: notifyv1.Role_ROLE_CASHIER, RestaurantID: "r1"})
	const room = "restaurant:r1:transactions"

	cols := make([]*collector, 4)
	for i := range cols {
		cols[i] = &collector{}
		sub := dialNode(t, nodes[i%2].grpcAddr, staff).Subscribe(ctx, notify.SubscribeOptions{Rooms: []string{room}, Handler: cols[i].handle, OnGap: cols[i].gap})
		testenv.Eventually(t, 5*time.Second, "subscriber connected", func() bool { return sub.Connected() != nil })
	}
	// The raw stub, so that every failure reaches the test (the SDK retries).
	conn := dialNode(t, nodes[1].grpcAddr, "")
	stub := notifyv1.NewNotificationServiceClient(conn.Conn())
	svc := token(t, auth.Claims{Subject: "backend", Role: notifyv1.Role_ROLE_SERVICE})

	type done struct {
		offset uint64
		epoch  string
	}
	var ok []done
	failed := 0
	start := time.Now()
	stopped, restarted := false, false
	for i := 0; time.Since(start) < 4*time.Second; i++ {
		switch {
		case !stopped && time.Since(start) > time.Second:
			redis.stop()
			stopped = true
		case stopped && !restarted && time.Since(start) > 2*time.Second:
			redis = startRedisServer(t, redis.port)
			restarted = true
		}
		pctx, cancel := context.WithTimeout(withAuth(ctx, svc), time.Second)
		resp, err := stub.Publish(pctx, &notifyv1.PublishRequest{Payload: &notifyv1.PublishRequest_RestaurantTransaction{RestaurantTransaction: transaction(i)}})
		cancel()
		if err != nil {
			if c := status.Code(err); c != codes.Unavailable && c != codes.DeadlineExceeded {
				t.Fatalf("publish with Redis down failed with %v, want Unavailable", err)
			}
			failed++
		} else {
			ok = append(ok, done{resp.Positions[0].Offset, resp.Positions[0].Epoch})
		}
		// pacing: publishes spread over the four seconds, before, during
		// and after Redis's outage.
		time.Sleep(10 * time.Millisecond)
	}
	if failed == 0 {
		t.Fatal("no publish failed while Redis was down")
	}
	last := ok[len(ok)-1]
	if last.epoch == ok[0].epoch {
		t.Fatal("no publish succeeded after Redis came back")
	}
	var after []uint64 // offsets published after the restart
	for _, d := range ok {
		if d.epoch == last.epoch {
			after = append(after, d.offset)
		}
	}
	for i, c := range cols {
		testenv.Eventually(t, 15*time.Second, fmt.Sprintf("subscriber %d to catch up", i), func() bool {
			c.mu.Lock()
			defer c.mu.Unlock()
			n := len(c.events)
			return n > 0 && c.events[n-1].Epoch == last.epoch && c.events[n-1].Offset == last.offset
		})
		c.mu.Lock()
		var got, before []uint64
		for _, ev := range c.events {
			if ev.Epoch == last.epoch {
				got = append(got, ev.Offset)
			} else {
				before = append(before, ev.Offset)
			}
		}
		gaps := len(c.gaps)
		c.mu.Unlock()
		if !slices.Equal(got, after) {
			t.Errorf("subscriber %d got %v after the restart, want %v", i, got, after)
		}
		if !slices.Equal(before, seq(1, uint64(len(before)))) {
			t.Errorf("subscriber %d: before the restart %v is not a gapless run", i, before)
		}
		if gaps == 0 {
			t.Errorf("subscriber %d was not told that Redis lost the room's history", i)
		}
	}
	t.Logf("%d publishes succeeded, %d failed and were reported", len(ok), failed)
}

// redisServer is a redis-server of the test's own.
type redisServer struct {
	port string
	cmd  *exec.Cmd
}

func startRedisServer(t *testing.T, port string) *redisServer {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("redis-server is required in CI")
		}
		t.Skip("redis-server not installed")
	}
	if port == "" {
		_, port, _ = net.SplitHostPort(freeAddr(t))
	}
	cmd := exec.Command(bin, "--port", port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", t.TempDir())
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	r := &redisServer{port: port, cmd: cmd}
	t.Cleanup(r.stop)
	testenv.Eventually(t, 5*time.Second, "redis-server", func() bool {
		c, err := net.Dial("tcp", "127.0.0.1:"+port)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	return r
}

func (r *redisServer) url() string { return "redis://127.0.0.1:" + r.port + "/0" }

func (r *redisServer) stop() {
	if r.cmd.ProcessState == nil {
		_ = r.cmd.Process.Kill()
		_ = r.cmd.Wait()
	}
}

// balancer is nginx running deploy/nginx/notify.conf, with the nodes' and
// its own ports substituted.
type balancer struct{ grpcAddr, httpAddr string }

func startNginx(t *testing.T, nodes []*daemon) *balancer {
	t.Helper()
	bin, err := exec.LookPath("nginx")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("nginx is required in CI (make check-deploy installs it)")
		}
		t.Skip("nginx not installed")
	}
	conf, err := os.ReadFile("../../deploy/nginx/notify.conf")
	if err != nil {
		t.Fatal(err)
	}
	lb := &balancer{grpcAddr: freeAddr(t), httpAddr: freeAddr(t)}
	dir := t.TempDir()
	s := string(conf)
	for old, new := range map[string]string{
		"127.0.0.1:9090": nodes[0].grpcAddr, "127.0.0.1:9091": nodes[1].grpcAddr,
		"127.0.0.1:8080": nodes[0].httpAddr, "127.0.0.1:8081": nodes[1].httpAddr,
		"127.0.0.1:9443": lb.grpcAddr, "127.0.0.1:8443": lb.httpAddr,
		"/tmp/notify-nginx.pid":  filepath.Join(dir, "nginx.pid"),
		"worker_processes auto;": "worker_processes 1;\ndaemon off;",
	} {
		if !strings.Contains(s, old) {
			t.Fatalf("deploy/nginx/notify.conf no longer has %q", old)
		}
		s = strings.ReplaceAll(s, old, new)
	}
	path := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-c", path, "-p", dir, "-e", filepath.Join(dir, "error.log"))
	// nginx's master forks its worker: a group of their own, so that
	// nothing of it can outlive the test (a SIGKILLed master leaves its
	// worker running).
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stopNginx(t, cmd) })
	testenv.Eventually(t, 5*time.Second, "nginx to listen", func() bool {
		c, err := net.Dial("tcp", lb.grpcAddr)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	return lb
}

// stopNginx stops nginx as its manual says: TERM to the master, which
// stops its workers and exits. If that takes too long, the whole process
// group is killed. It fails the test if any process of the group is left.
func stopNginx(t *testing.T, cmd *exec.Cmd) {
	t.Helper()
	pgid := cmd.Process.Pid // Setpgid: the master leads the group
	_ = cmd.Process.Signal(syscall.SIGTERM)
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	select {
	case <-exited:
	case <-time.After(10 * time.Second):
		t.Errorf("nginx did not stop within 10s of SIGTERM: killing its process group")
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
		<-exited
	}
	// The master waits for its workers before it exits; check that none
	// is left all the same (signal 0 to the group: ESRCH once it is empty).
	// When the check fails, what is left is killed on the way out.
	defer func() {
		if syscall.Kill(-pgid, 0) == nil {
			_ = syscall.Kill(-pgid, syscall.SIGKILL)
		}
	}()
	testenv.Eventually(t, 5*time.Second, fmt.Sprintf("the nginx processes of group %d to end with their master", pgid),
		func() bool { return syscall.Kill(-pgid, 0) != nil })
}

// withAuth adds a bearer token to an outgoing context.
func withAuth(ctx context.Context, tok string) context.Context {
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+tok)
}
