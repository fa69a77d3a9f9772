package limit_test

import (
	"errors"
	"io"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/maxloyalty/notify/server/limit"
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
