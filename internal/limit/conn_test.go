package limit_test

import (
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/maxloyalty/notify/internal/limit"
	"github.com/maxloyalty/notify/internal/testenv"
)

// loopback serves a wrapped loopback listener: each admitted connection
// gets "ok" written to it and is handed to the test on the returned
// channel.
type loopback struct {
	addr     string
	accepted chan net.Conn

	mu       sync.Mutex
	rejected []string
}

func (lb *loopback) onReject(reason string) {
	lb.mu.Lock()
	lb.rejected = append(lb.rejected, reason)
	lb.mu.Unlock()
}

func (lb *loopback) rejections() []string {
	lb.mu.Lock()
	defer lb.mu.Unlock()
	return append([]string(nil), lb.rejected...)
}

// serve starts a loopback listener wrapped by the ConnRate newRate builds
// with lb's OnReject.
func serve(t *testing.T, newRate func(onReject limit.Option) *limit.ConnRate) (*loopback, *limit.ConnRate) {
	t.Helper()
	lb := &loopback{accepted: make(chan net.Conn, 16)}
	cr := newRate(limit.OnReject(lb.onReject))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	lb.addr = ln.Addr().String()
	wl := cr.WrapListener(ln)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := wl.Accept()
			if err != nil {
				return
			}
			if _, err := c.Write([]byte("ok")); err != nil {
				c.Close()
				continue
			}
			lb.accepted <- c
		}
	}()
	t.Cleanup(func() {
		wl.Close()
		<-done
		close(lb.accepted)
		for c := range lb.accepted {
			c.Close()
		}
	})
	return lb, cr
}

// dial connects and reports whether the server admitted the connection
// (wrote "ok") or closed it at once.
func dial(t *testing.T, addr string) (net.Conn, bool) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 2)
	_, err = io.ReadFull(c, buf)
	switch {
	case err == nil && string(buf) == "ok":
		return c, true
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), isReset(err):
		return c, false
	default:
		t.Fatalf("dial: read: %q, %v", buf, err)
		return nil, false
	}
}

func isReset(err error) bool {
	var ne *net.OpError
	return errors.As(err, &ne) && !ne.Timeout()
}

// admitted waits for the server's side of the next admitted connection.
func (lb *loopback) admitted(t *testing.T) net.Conn {
	t.Helper()
	select {
	case c := <-lb.accepted:
		return c
	case <-time.After(5 * time.Second):
		t.Fatal("no admitted connection")
		return nil
	}
}

func TestConnRateLimitsNewConnections(t *testing.T) {
	clk := newClock()
	lb, cr := serve(t, func(onReject limit.Option) *limit.ConnRate {
		return limit.NewConnRate(2, 2, onReject, limit.WithClock(clk.now))
	})
	wants := []bool{true, true, false, false}
	for i, want := range wants {
		if _, ok := dial(t, lb.addr); ok != want {
			t.Fatalf("connection %d admitted = %v, want %v", i, ok, want)
		}
		if want {
			lb.admitted(t)
		}
	}
	clk.advance(500 * time.Millisecond) // one token
	if _, ok := dial(t, lb.addr); !ok {
		t.Fatal("connection after refill refused")
	}
	lb.admitted(t)
	if _, ok := dial(t, lb.addr); ok {
		t.Fatal("connection beyond the refill admitted")
	}
	want := []string{limit.ReasonRateLimited, limit.ReasonRateLimited, limit.ReasonRateLimited}
	if got := lb.rejections(); !slices.Equal(got, want) {
		t.Fatalf("rejections %v, want %v", got, want)
	}
	if got := cr.Open(); got != 3 {
		t.Fatalf("Open = %d, want 3", got)
	}
}

func TestConnRateMaxConns(t *testing.T) {
	lb, cr := serve(t, func(onReject limit.Option) *limit.ConnRate {
		return limit.NewConnRate(0, 0, limit.MaxConns(2), onReject)
	})
	var server []net.Conn
	for i := range 2 {
		if _, ok := dial(t, lb.addr); !ok {
			t.Fatalf("connection %d refused under the cap", i)
		}
		server = append(server, lb.admitted(t))
	}
	if got := cr.Open(); got != 2 {
		t.Fatalf("Open = %d, want 2", got)
	}
	if _, ok := dial(t, lb.addr); ok {
		t.Fatal("connection over the cap admitted")
	}
	// Closing twice releases one place, once.
	server[0].Close()
	server[0].Close()
	if got := cr.Open(); got != 1 {
		t.Fatalf("Open after a close = %d, want 1", got)
	}
	if _, ok := dial(t, lb.addr); !ok {
		t.Fatal("connection refused after a close")
	}
	lb.admitted(t)
	if _, ok := dial(t, lb.addr); ok {
		t.Fatal("connection over the cap admitted after a double close")
	}
	want := []string{limit.ReasonTooManyConnections, limit.ReasonTooManyConnections}
	if got := lb.rejections(); !slices.Equal(got, want) {
		t.Fatalf("rejections %v, want %v", got, want)
	}
}

func TestConnRateDisabled(t *testing.T) {
	lb, cr := serve(t, func(onReject limit.Option) *limit.ConnRate {
		return limit.NewConnRate(0, 0, onReject)
	})
	for i := range 10 {
		if _, ok := dial(t, lb.addr); !ok {
			t.Fatalf("connection %d refused with no limits", i)
		}
		lb.admitted(t)
	}
	if got := cr.Open(); got != 10 {
		t.Fatalf("Open = %d, want 10", got)
	}
	if got := lb.rejections(); len(got) != 0 {
		t.Fatalf("rejections %v with no limits", got)
	}
}

// TestConnRateOnOpen: OnOpen sees +1 per admitted connection and -1 on its
// first close only; refused connections are not counted.
func TestConnRateOnOpen(t *testing.T) {
	var open atomic.Int64
	lb, _ := serve(t, func(onReject limit.Option) *limit.ConnRate {
		return limit.NewConnRate(0, 0, limit.MaxConns(2), onReject, limit.OnOpen(func(d int) { open.Add(int64(d)) }))
	})
	var server []net.Conn
	for range 2 {
		if _, ok := dial(t, lb.addr); !ok {
			t.Fatal("connection refused under the cap")
		}
		server = append(server, lb.admitted(t))
	}
	if _, ok := dial(t, lb.addr); ok {
		t.Fatal("connection over the cap admitted")
	}
	if got := open.Load(); got != 2 {
		t.Fatalf("open %d after two admitted and one refused, want 2", got)
	}
	server[0].Close()
	server[0].Close()
	if got := open.Load(); got != 1 {
		t.Fatalf("open %d after closing one twice, want 1", got)
	}
}

// syncBuffer is a log destination safe for concurrent writes.
type syncBuffer struct {
	mu sync.Mutex
	b  []byte
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.b = append(s.b, p...)
	return len(p), nil
}

// lines returns the log lines written so far, parsed.
func (s *syncBuffer) lines(t *testing.T) []map[string]any {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(string(s.b)), "\n") {
		if l == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("log line %q: %v", l, err)
		}
		out = append(out, m)
	}
	return out
}

// TestConnRateLogsRefused: a refused connection is logged, at most one
// line per second per listener, each with the listener's address and the
// number refused since the previous line; the rest is logged when the
// listener closes.
func TestConnRateLogsRefused(t *testing.T) {
	var buf syncBuffer
	log := slog.New(slog.NewJSONHandler(&buf, nil))
	lb, _ := serve(t, func(onReject limit.Option) *limit.ConnRate {
		// One connection admitted, then none for a long time.
		return limit.NewConnRate(0.001, 1, onReject, limit.LogRefused(log))
	})
	if _, ok := dial(t, lb.addr); !ok {
		t.Fatal("first connection refused")
	}
	lb.admitted(t)

	// The first refusal is logged at once.
	if _, ok := dial(t, lb.addr); ok {
		t.Fatal("second connection admitted")
	}
	testenv.Eventually(t, 5*time.Second, "the first line", func() bool { return len(buf.lines(t)) == 1 })
	first := buf.lines(t)[0]
	if first["msg"] != "connections refused" || first["level"] != "WARN" || first["addr"] != lb.addr || first["refused"] != 1.0 || first["rate_limited"] != 1.0 {
		t.Fatalf("first line %v", first)
	}

	// Five more: one line for them, a second after the first.
	for range 5 {
		if _, ok := dial(t, lb.addr); ok {
			t.Fatal("connection admitted")
		}
	}
	testenv.Eventually(t, 5*time.Second, "the second line", func() bool { return len(buf.lines(t)) == 2 })
	second := buf.lines(t)[1]
	if second["refused"] != 5.0 || second["rate_limited"] != 5.0 || second["addr"] != lb.addr {
		t.Fatalf("second line %v, want 5 refused on %s", second, lb.addr)
	}
	t0, _ := time.Parse(time.RFC3339Nano, first["time"].(string))
	t1, _ := time.Parse(time.RFC3339Nano, second["time"].(string))
	if t1.Sub(t0) < 900*time.Millisecond {
		t.Errorf("two lines %v apart, want at most one a second", t1.Sub(t0))
	}
	if got := len(lb.rejections()); got != 6 {
		t.Errorf("OnReject saw %d refusals, want 6", got)
	}
}

// TestConnRateLogsPendingOnClose: refusals not yet logged are logged when
// the listener closes.
func TestConnRateLogsPendingOnClose(t *testing.T) {
	var buf syncBuffer
	log := slog.New(slog.NewJSONHandler(&buf, nil))
	refused := make(chan struct{}, 16)
	cr := limit.NewConnRate(0, 0, limit.MaxConns(1), limit.LogRefused(log), limit.OnReject(func(string) { refused <- struct{}{} }))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	wl := cr.WrapListener(ln)
	accepted := make(chan net.Conn, 4)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := wl.Accept()
			if err != nil {
				return
			}
			accepted <- c
		}
	}()
	for range 4 {
		c, err := net.DialTimeout("tcp", ln.Addr().String(), 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
	}
	for i := range 3 {
		select {
		case <-refused:
		case <-time.After(5 * time.Second):
			t.Fatalf("%d refusals, want 3", i)
		}
	}
	wl.Close()
	<-done
	close(accepted)
	for c := range accepted {
		c.Close()
	}
	total := 0.0
	for _, l := range buf.lines(t) {
		if l["too_many_connections"] != l["refused"] || l["addr"] != ln.Addr().String() {
			t.Errorf("line %v: want every refusal by MaxConns, on %s", l, ln.Addr())
		}
		total += l["refused"].(float64)
	}
	if total != 3 {
		t.Errorf("%v refusals logged, want 3: %v", total, buf.lines(t))
	}
}
