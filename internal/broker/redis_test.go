package broker

import (
	"context"
	"errors"
	"fmt"
	"github.com/maxloyalty/notify/internal/testenv"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"testing"
	"time"
)

// redisURL returns the test Redis, skipping without one unless CI=true.
func redisURL(t *testing.T) string {
	t.Helper()
	return testenv.Service(t, testenv.RedisURL)
}

// newTestRedis returns a Redis broker with keys under a prefix of its own.
func newTestRedis(t *testing.T, url string, l Limits, h Handler, lost func(error)) *Redis {
	t.Helper()
	if lost == nil {
		lost = func(error) {}
	}
	r, err := NewRedis(context.Background(), RedisConfig{
		URL:               url,
		Prefix:            fmt.Sprintf("notify-test-%d", rand.Uint64()),
		Limits:            func(string) Limits { return l },
		IdempotencyWindow: time.Minute,
	}, h, lost)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

func (r *Redis) withPrefixOf(o *Redis) *Redis { r.cfg.Prefix = o.cfg.Prefix; return r }

func (rec *recorder) len() int { rec.mu.Lock(); defer rec.mu.Unlock(); return len(rec.msgs) }

func TestRedisOffsetsHistoryAndEpochs(t *testing.T) {
	url := redisURL(t)
	rec := &recorder{}
	r := newTestRedis(t, url, Limits{Size: 3, TTL: time.Hour}, rec.handle, nil)
	ctx := context.Background()
	if err := r.Listen(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	defer r.Unlisten("a")

	var epoch string
	for i := range 5 {
		res, err := r.Publish(ctx, Publication{EventID: fmt.Sprint("e", i), Rooms: []string{"a", "b"}, Data: []byte{byte(i), ':', 0}})
		if err != nil {
			t.Fatal(err)
		}
		if res.Positions[0].Offset != uint64(i+1) || res.Positions[1].Offset != uint64(i+1) {
			t.Fatalf("publish %d positions %+v", i, res.Positions)
		}
		epoch = res.Positions[0].Epoch
	}
	// Only room a is listened to; its messages arrive in order, data intact.
	rec.await(t, 5*time.Second, "5 live messages", count(5))
	for i, m := range rec.msgs {
		if m.Room != "a" || m.Offset != uint64(i+1) || m.Epoch != epoch || string(m.Data) != string([]byte{byte(i), ':', 0}) {
			t.Fatalf("live message %d = %+v", i, m)
		}
	}

	tests := []struct {
		name     string
		since    Position
		want     []uint64
		complete bool
	}{
		{"within window", Position{Offset: 3, Epoch: epoch}, []uint64{4, 5}, true},
		{"at the edge", Position{Offset: 2, Epoch: epoch}, []uint64{3, 4, 5}, true},
		{"older than window", Position{Offset: 1, Epoch: epoch}, []uint64{3, 4, 5}, false},
		{"up to date", Position{Offset: 5, Epoch: epoch}, nil, true},
		{"other epoch", Position{Offset: 3, Epoch: "zzz"}, []uint64{3, 4, 5}, false},
	}
	for _, tt := range tests {
		h, err := r.History(ctx, "a", tt.since)
		if err != nil {
			t.Fatal(err)
		}
		if fmt.Sprint(offsets(h.Messages)) != fmt.Sprint(tt.want) || h.Complete != tt.complete || h.Top != (Position{5, epoch}) {
			t.Errorf("%s: History = %v complete=%v top=%v, want %v complete=%v", tt.name, offsets(h.Messages), h.Complete, h.Top, tt.want, tt.complete)
		}
	}
	if h, _ := r.History(ctx, "never", Position{Offset: 2, Epoch: epoch}); h.Complete || h.Top.Offset != 0 {
		t.Errorf("unknown room: %+v", h)
	}

	// A second node sharing the Redis sees the same positions.
	other := newTestRedis(t, url, Limits{Size: 3, TTL: time.Hour}, func(Message) {}, nil).withPrefixOf(r)
	res, err := other.Publish(ctx, Publication{EventID: "x", Rooms: []string{"a"}, Data: []byte("x")})
	if err != nil {
		t.Fatal(err)
	}
	if res.Positions[0] != (RoomPosition{Room: "a", Position: Position{Offset: 6, Epoch: epoch}}) {
		t.Fatalf("publish from the second node = %+v, want a@6 in the same epoch", res.Positions[0])
	}
	rec.await(t, 5*time.Second, "the second node's message on the first", count(6))
}

func TestRedisIdempotency(t *testing.T) {
	rec := &recorder{}
	r := newTestRedis(t, redisURL(t), Limits{Size: 10, TTL: time.Hour}, rec.handle, nil)
	ctx := context.Background()
	if err := r.Listen(ctx, "r"); err != nil {
		t.Fatal(err)
	}
	p := Publication{EventID: "first", Rooms: []string{"r"}, Data: []byte("d"), IdempotencyKey: "k"}
	first, err := r.Publish(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	p.EventID = "second"
	again, err := r.Publish(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	if !again.Duplicate || again.EventID != "first" || again.Positions[0] != first.Positions[0] {
		t.Fatalf("repeat = %+v, want the first result %+v marked duplicate", again, first)
	}
	// A publish without a key is delivered after the repeat would have
	// been: once it is in, the count is final.
	if _, err := r.Publish(ctx, Publication{EventID: "last", Rooms: []string{"r"}, Data: []byte("last")}); err != nil {
		t.Fatal(err)
	}
	rec.await(t, 5*time.Second, "the last publish", last("last"))
	if n := rec.len(); n != 2 {
		t.Fatalf("delivered %d messages for the keyed publish and the last one, want 2: the repeat delivered too", n)
	}
}

func TestRedisConcurrentPublishersKeepOrder(t *testing.T) {
	url := redisURL(t)
	rec := &recorder{}
	r := newTestRedis(t, url, Limits{Size: 1000, TTL: time.Hour}, rec.handle, nil)
	other := newTestRedis(t, url, Limits{Size: 1000, TTL: time.Hour}, func(Message) {}, nil).withPrefixOf(r)
	ctx := context.Background()
	if err := r.Listen(ctx, "r"); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for _, b := range []*Redis{r, other, r, other} {
		wg.Go(func() {
			for range 50 {
				if _, err := b.Publish(ctx, Publication{EventID: "e", Rooms: []string{"r"}, Data: []byte("d")}); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	rec.await(t, 5*time.Second, "200 messages", count(200))
	for i, m := range rec.msgs {
		if m.Offset != uint64(i+1) {
			t.Fatalf("message %d has offset %d: order broken", i, m.Offset)
		}
	}
}

// privateRedis runs a redis-server of the test's own on a free loopback
// port, so that it can be stopped and started.
type privateRedis struct {
	port string
	cmd  *exec.Cmd
}

func startPrivateRedis(t *testing.T, port string) *privateRedis {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("redis-server is required in CI")
		}
		t.Skip("redis-server not installed")
	}
	if port == "" {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port = strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
		l.Close()
	}
	cmd := exec.Command(bin, "--port", port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", t.TempDir())
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &privateRedis{port: port, cmd: cmd}
	t.Cleanup(p.stop)
	testenv.Eventually(t, 5*time.Second, "redis-server to listen", func() bool {
		c, err := net.Dial("tcp", "127.0.0.1:"+port)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	return p
}

func (p *privateRedis) stop() {
	if p.cmd.ProcessState == nil {
		p.cmd.Process.Kill()
		p.cmd.Wait()
	}
}

func (p *privateRedis) url() string { return "redis://127.0.0.1:" + p.port + "/0" }

func TestRedisDownAndBack(t *testing.T) {
	srv := startPrivateRedis(t, "")
	rec := &recorder{}
	lost := make(chan error, 1)
	r := newTestRedis(t, srv.url(), Limits{Size: 10, TTL: time.Hour}, rec.handle, func(err error) {
		select {
		case lost <- err:
		default:
		}
	})
	ctx := context.Background()
	if err := r.Listen(ctx, "r"); err != nil {
		t.Fatal(err)
	}
	before, err := r.Publish(ctx, Publication{EventID: "e1", Rooms: []string{"r"}, Data: []byte("d")})
	if err != nil {
		t.Fatal(err)
	}

	srv.stop()
	_, err = r.Publish(ctx, Publication{EventID: "e2", Rooms: []string{"r"}, Data: []byte("d")})
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("publish with Redis down = %v, want ErrUnavailable", err)
	}
	select {
	case <-lost:
	case <-time.After(5 * time.Second):
		t.Fatal("no lost callback with Redis down")
	}
	if _, err := r.History(ctx, "r", Position{}); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("history with Redis down = %v, want ErrUnavailable", err)
	}

	startPrivateRedis(t, srv.port) // back, empty
	var after Result
	testenv.Eventually(t, 5*time.Second, "publish to work again", func() bool {
		after, err = r.Publish(ctx, Publication{EventID: "e3", Rooms: []string{"r"}, Data: []byte("d")})
		return err == nil
	})
	if after.Positions[0].Offset != 1 || after.Positions[0].Epoch == before.Positions[0].Epoch {
		t.Fatalf("after Redis lost its data: %+v, want offset 1 in a new epoch", after.Positions[0])
	}
	// The node resubscribed by itself: live messages flow again.
	testenv.Eventually(t, 5*time.Second, "live delivery after reconnect", func() bool {
		rec.mu.Lock()
		defer rec.mu.Unlock()
		for _, m := range rec.msgs {
			if m.Epoch == after.Positions[0].Epoch {
				return true
			}
		}
		_, _ = r.Publish(ctx, Publication{EventID: "e4", Rooms: []string{"r"}, Data: []byte("d")})
		return false
	})
	if h, err := r.History(ctx, "r", before.Positions[0].Position); err != nil || h.Complete {
		t.Fatalf("resume from the lost epoch: %+v %v, want incomplete", h, err)
	}
}
