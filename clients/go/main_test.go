package notify_test

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	notify "github.com/maxloyalty/notify/clients/go"
	notifyv1 "github.com/maxloyalty/notify/gen/notify/v1"
)

// devSecret is node.DevSecret (internal/node/config.go): the HS256 secret a
// notifyd started with --dev accepts. Copied, since the SDK must not depend
// on the server module.
const devSecret = "notify-dev-secret-do-not-use-in-production"

// notifydBin is the server binary TestMain builds, in testDir.
var notifydBin, testDir string

func TestMain(m *testing.M) {
	os.Exit(runTests(m))
}

func runTests(m *testing.M) int {
	flag.Parse()
	dir, err := os.MkdirTemp("", "notify-sdk-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "tempdir:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	testDir = dir
	wd, err := os.Getwd()
	if err != nil {
		fmt.Fprintln(os.Stderr, "getwd:", err)
		return 1
	}
	notifydBin = filepath.Join(dir, "notifyd")
	// ../../cmd/notifyd belongs to the root module, not to this one: build it
	// from the root (-C), with the root's own dependencies.
	build := exec.Command("go", "build", "-C", "../..", "-o", notifydBin, "./cmd/notifyd")
	build.Dir = wd
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	start := time.Now()
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building notifyd:", err)
		return 1
	}
	if testing.Verbose() {
		fmt.Fprintf(os.Stderr, "built notifyd in %v\n", time.Since(start).Round(time.Millisecond))
	}
	return m.Run()
}

// syncBuffer is a bytes.Buffer safe for concurrent writes.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// notifyd is a notifyd process on fixed loopback ports, which it keeps
// across restarts.
type notifyd struct {
	GRPCAddr, HTTPAddr string
	args               []string
	dir                string // working and data directory, kept across restarts
	log                syncBuffer

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan error // receives Wait's result, once
}

// freeAddr returns a loopback address with a port that was free a moment ago.
func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// newNotifyd starts a notifyd on ports that were free a moment ago; when
// another process took one of them meanwhile, it tries again on others,
// up to three times.
func newNotifyd(extra ...string) (*notifyd, error) {
	for attempt := 1; ; attempt++ {
		n, err := tryNotifyd(extra)
		if err != nil && attempt < 3 && strings.Contains(err.Error(), "address already in use") {
			continue
		}
		return n, err
	}
}

func tryNotifyd(extra []string) (*notifyd, error) {
	g, err := freeAddr()
	if err != nil {
		return nil, err
	}
	h, err := freeAddr()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp(testDir, "notifyd-")
	if err != nil {
		return nil, err
	}
	n := &notifyd{GRPCAddr: g, HTTPAddr: h, dir: dir}
	n.args = append([]string{
		"--dev",
		"--grpc-addr", g,
		"--http-addr", h,
		"--shutdown-drain", "2s",
		"--reconnect-delay-min", "50ms",
		"--reconnect-delay-max", "200ms",
		"--server-id", "sdk-test",
		// Streams end at their token's exp, with no clock-skew leeway.
		"--jwt-leeway", "-1s",
		"--log-level", "warn",
	}, extra...)
	if err := n.start(); err != nil {
		n.stop()
		return nil, err
	}
	return n, nil
}

// start runs the process and waits until /readyz answers 200.
func (n *notifyd) start() error {
	n.mu.Lock()
	if n.cmd != nil {
		n.mu.Unlock()
		return errors.New("notifyd already running")
	}
	cmd := exec.Command(notifydBin, n.args...)
	// The node keeps its data (an embedded inbox database) in ./data by
	// default: give every server its own directory, never the package's.
	cmd.Dir = n.dir
	// and no NOTIFY_* setting of the environment.
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "NOTIFY_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, "NOTIFY_DATA_DIR="+filepath.Join(n.dir, "data"))
	cmd.Stdout, cmd.Stderr = &n.log, &n.log
	if err := cmd.Start(); err != nil {
		n.mu.Unlock()
		return err
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	n.cmd, n.exited = cmd, exited
	n.mu.Unlock()

	client := &http.Client{Timeout: time.Second}
	var exitErr error
	gone := false
	ready := poll(15*time.Second, func() bool {
		select {
		case exitErr = <-exited:
			gone = true
			return true
		default:
		}
		resp, err := client.Get("http://" + n.HTTPAddr + "/readyz")
		if err != nil {
			return false
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	switch {
	case gone:
		n.mu.Lock()
		n.cmd = nil
		n.mu.Unlock()
		return fmt.Errorf("notifyd exited at start (%v):\n%s", exitErr, n.log.String())
	case !ready:
		return fmt.Errorf("notifyd not ready within 15s:\n%s", n.log.String())
	}
	return nil
}

// signal sends sig and waits for the process to exit.
func (n *notifyd) signal(sig syscall.Signal) error {
	n.mu.Lock()
	cmd, exited := n.cmd, n.exited
	n.cmd = nil
	n.mu.Unlock()
	if cmd == nil {
		return nil
	}
	if err := cmd.Process.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return err
	}
	select {
	case <-exited:
		return nil
	case <-time.After(15 * time.Second):
		_ = cmd.Process.Kill()
		<-exited
		return fmt.Errorf("notifyd did not exit within 15s of %v", sig)
	}
}

// kill ends the process with SIGKILL: no goodbye to its clients.
func (n *notifyd) kill() error { return n.signal(syscall.SIGKILL) }

// term ends the process with SIGTERM: a graceful shutdown.
func (n *notifyd) term() error { return n.signal(syscall.SIGTERM) }

// stop kills the process if it runs.
func (n *notifyd) stop() { _ = n.kill() }

// startServer starts a notifyd for t, stopped when t ends.
func startServer(t *testing.T, extra ...string) *notifyd {
	t.Helper()
	n, err := newNotifyd(extra...)
	if err != nil {
		t.Fatalf("starting notifyd: %v", err)
	}
	t.Cleanup(func() {
		n.stop()
		if t.Failed() {
			t.Logf("notifyd log:\n%s", n.log.String())
		}
	})
	return n
}

func (n *notifyd) mustKill(t *testing.T) {
	t.Helper()
	if err := n.kill(); err != nil {
		t.Fatal(err)
	}
}

func (n *notifyd) mustTerm(t *testing.T) {
	t.Helper()
	if err := n.term(); err != nil {
		t.Fatal(err)
	}
}

func (n *notifyd) mustStart(t *testing.T) {
	t.Helper()
	if err := n.start(); err != nil {
		t.Fatal(err)
	}
}

// mint signs a dev token: sub, role and restaurant_id claims, expiring after
// ttl.
func mint(sub, role, restaurantID string, ttl time.Duration) (string, error) {
	return mintWith(devSecret, sub, role, restaurantID, ttl)
}

// jwtWithSecret signs an hour-long token with another secret than the dev one.
func jwtWithSecret(sub, role, secret string) (string, error) {
	return mintWith(secret, sub, role, "", time.Hour)
}

func mintWith(secret, sub, role, restaurantID string, ttl time.Duration) (string, error) {
	claims := jwt.MapClaims{
		"sub":  sub,
		"role": role,
		"exp":  time.Now().Add(ttl).Unix(),
	}
	if restaurantID != "" {
		claims["restaurant_id"] = restaurantID
	}
	return jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString([]byte(secret))
}

// exampleServer starts a notifyd for an example, which stops it; it panics
// when the server does not start.
func exampleServer() (addr string, stop func()) {
	n, err := newNotifyd()
	if err != nil {
		panic(err)
	}
	return n.GRPCAddr, n.stop
}

// exampleToken mints an hour-long dev token for an example.
func exampleToken(sub, role string) string {
	tok, err := mint(sub, role, "", time.Hour)
	if err != nil {
		panic(err)
	}
	return tok
}

func mustMint(t *testing.T, sub, role string) string {
	t.Helper()
	tok, err := mint(sub, role, "", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// dial makes a plaintext client of addr, closed when t ends.
func dial(t *testing.T, addr string, opts ...notify.Option) *notify.Client {
	t.Helper()
	opts = append([]notify.Option{notify.WithInsecure(), notify.WithBackoff(20*time.Millisecond, 300*time.Millisecond)}, opts...)
	c, err := notify.Dial(addr, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func testContext(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// points is the i-th PointsAdded of a test: guest g1 at restaurant r1.
func points(i int) *notifyv1.PointsAdded {
	return &notifyv1.PointsAdded{
		GuestId:       "g1",
		CardId:        "c1",
		RestaurantId:  "r1",
		Amount:        int64(i),
		NewBalance:    int64(1000 + i),
		TransactionId: fmt.Sprintf("t%d", i),
	}
}

// publishRetry publishes with one idempotency key, retrying (for a bounded
// time) while the server is unreachable, as a publisher riding out a
// restart would: the client's connection coming back has no event the
// test can wait on.
func publishRetry(ctx context.Context, t *testing.T, c *notify.Client, p notify.Payload) *notifyv1.PublishResponse {
	t.Helper()
	key := notify.NewIdempotencyKey()
	var (
		resp *notifyv1.PublishResponse
		err  error
	)
	poll(5*time.Second, func() bool {
		resp, err = c.Publish(ctx, p, notify.IdempotencyKey(key))
		return err == nil || status.Code(err) != codes.Unavailable || ctx.Err() != nil
	})
	if err != nil {
		t.Fatalf("publish: %v", err)
	}
	return resp
}

// recorder collects what a subscription reports, through its callbacks.
type recorder struct {
	mu        sync.Mutex
	events    []*notifyv1.Event
	connected []*notifyv1.Connected
	gaps      []*notifyv1.RoomState
	// eventsAt[i] is how many events had arrived when connected[i] did.
	eventsAt []int
}

func (r *recorder) options(rooms ...string) notify.SubscribeOptions {
	return notify.SubscribeOptions{
		Rooms: rooms,
		Handler: func(ev *notifyv1.Event) {
			r.mu.Lock()
			r.events = append(r.events, ev)
			r.mu.Unlock()
		},
		OnConnected: func(c *notifyv1.Connected) {
			r.mu.Lock()
			r.connected = append(r.connected, c)
			r.eventsAt = append(r.eventsAt, len(r.events))
			r.mu.Unlock()
		},
		OnGap: func(room string, st *notifyv1.RoomState) {
			r.mu.Lock()
			r.gaps = append(r.gaps, st)
			r.mu.Unlock()
		},
	}
}

func (r *recorder) snapshot() (events []*notifyv1.Event, connected []*notifyv1.Connected, gaps []*notifyv1.RoomState) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.events), slices.Clone(r.connected), slices.Clone(r.gaps)
}

// replayed counts the reconnections whose room stood past the last event
// delivered before them: the events in between were replayed.
func (r *recorder) replayed(room string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for i := 1; i < len(r.connected); i++ {
		if r.eventsAt[i] == 0 {
			continue
		}
		last := r.events[r.eventsAt[i]-1]
		for _, st := range r.connected[i].Rooms {
			if st.Room == room && st.Recovered && st.Epoch == last.Epoch && st.Offset > last.Offset {
				n++
			}
		}
	}
	return n
}

func (r *recorder) counts() (events, connected, gaps int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.events), len(r.connected), len(r.gaps)
}

// poll checks cond on every tick of a ticker until it holds, and reports
// whether it did within d. It is for state that the spawned notifyd owns
// (or the client's connection to it), where there is no event to wait on.
// It stands for the root module's testenv.Eventually, which this module,
// the SDK's own, cannot import; it is the package's one polling loop.
func poll(d time.Duration, cond func() bool) bool {
	const tick = 10 * time.Millisecond
	deadline := time.Now().Add(d)
	ticker := time.NewTicker(tick)
	defer ticker.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		<-ticker.C
	}
	return true
}

// waitFor polls cond until it holds, failing t when it still does not
// after d.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	if !poll(d, cond) {
		t.Fatalf("timed out after %v waiting for %s", d, what)
	}
}

// proxy is a TCP proxy on 127.0.0.1 whose connections can be cut.
type proxy struct {
	ln     net.Listener
	target string

	mu    sync.Mutex
	down  bool
	conns map[net.Conn]struct{}
	wg    sync.WaitGroup
}

func startProxy(t *testing.T, target string) *proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{ln: ln, target: target, conns: map[net.Conn]struct{}{}}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(func() {
		ln.Close()
		p.cut()
		p.wg.Wait()
	})
	return p
}

func (p *proxy) Addr() string { return p.ln.Addr().String() }

func (p *proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		down := p.down
		p.mu.Unlock()
		if down {
			c.Close()
			continue
		}
		up, err := net.DialTimeout("tcp", p.target, 2*time.Second)
		if err != nil {
			c.Close()
			continue
		}
		p.mu.Lock()
		p.conns[c], p.conns[up] = struct{}{}, struct{}{}
		p.mu.Unlock()
		p.wg.Add(2)
		go p.pipe(c, up)
		go p.pipe(up, c)
	}
}

func (p *proxy) pipe(dst, src net.Conn) {
	defer p.wg.Done()
	_, _ = io.Copy(dst, src)
	dst.Close()
	src.Close()
	p.mu.Lock()
	delete(p.conns, dst)
	delete(p.conns, src)
	p.mu.Unlock()
}

// cut closes every connection and refuses new ones until restore.
func (p *proxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = true
	for c := range p.conns {
		c.Close()
	}
}

func (p *proxy) restore() {
	p.mu.Lock()
	p.down = false
	p.mu.Unlock()
}
