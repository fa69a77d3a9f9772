package gateway_test

// grpc-web calls over HTTP/1.1 that take their connection over: the
// takeover, the client's leaving, Shutdown, parking and detaching.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc/metadata"

	"github.com/maxloyalty/notify/internal/gateway"
	"github.com/maxloyalty/notify/internal/testenv"
)

// TestWebStreamTakesConnectionOver: over HTTP/1.1, plain or TLS, a live
// call owns its connection (the HTTP server sees it hijacked), and ends
// when its client closes the connection or sends anything more.
func TestWebStreamTakesConnectionOver(t *testing.T) {
	plainAndTLS(t, takenOver)
}

// plainAndTLS runs fn against a lean server over plain HTTP/1.1, then
// against one over TLS.
func plainAndTLS(t *testing.T, fn func(t *testing.T, local *gateway.InProcess, ws *webServer, states func() []http.ConnState)) {
	for _, withTLS := range []bool{false, true} {
		name := "plain"
		if withTLS {
			name = "TLS"
		}
		t.Run(name, func(t *testing.T) {
			_, local, ws, states := startLean(t, false, withTLS)
			fn(t, local, ws, states)
		})
	}
}

func takenOver(t *testing.T, _ *gateway.InProcess, ws *webServer, states func() []http.ConnState) {
	c := openWait(t, ws.url, "")
	if got := states(); !slices.Contains(got, http.StateHijacked) {
		t.Errorf("connection states %v, want hijacked", got)
	}
	c.Close()
	if got := ws.waitCalls(t, 1); got[0] != "Canceled" {
		t.Errorf("call ended %s after the client closed, want Canceled", got[0])
	}

	c = openWait(t, ws.url, "")
	_, _ = c.Write([]byte("GET / HTTP/1.1\r\n\r\n"))
	if got := ws.waitCalls(t, 2); got[1] != "Canceled" {
		t.Errorf("call ended %s after the client sent more, want Canceled", got[1])
	}
	// The call closed the connection (reset: what the client sent is
	// unread).
	_ = c.SetReadDeadline(time.Now().Add(testTimeout))
	if _, err := io.Copy(io.Discard, c); err != nil && !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("reading to the connection's end: %v", err)
	}
}

// TestWebStreamClientGoneFirst: a client that leaves before its call's
// response began (the connection not yet taken over) ends the call.
func TestWebStreamClientGoneFirst(t *testing.T) {
	_, _, ws, _ := leanServer(t)
	c, err := net.Dial("tcp", strings.TrimPrefix(ws.url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	body := subscribeBody(t, "silent")
	fmt.Fprintf(c, "POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/grpc-web+proto\r\nContent-Length: %d\r\n\r\n%s", subscribePath, len(body), body)
	testenv.Eventually(t, testTimeout, "the call running", func() bool { return handlers() == 1 })
	c.Close()
	if got := ws.waitCalls(t, 1); got[0] != "Canceled" {
		t.Errorf("call ended %s after the client left, want Canceled", got[0])
	}
}

// TestWebStreamShutdown: InProcess.Shutdown waits for the calls that own
// their connections, and ends them when its context ends first.
func TestWebStreamShutdown(t *testing.T) {
	_, local, ws, _ := leanServer(t)
	c := openWait(t, ws.url, "")

	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	if err := local.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Shutdown = %v, want the context's end", err)
	}
	if d := time.Since(start); d < 100*time.Millisecond {
		t.Errorf("Shutdown returned after %v, before its context ended", d)
	}
	if got := ws.waitCalls(t, 1); got[0] != "Canceled" {
		t.Errorf("call ended %s, want Canceled", got[0])
	}
	// The stream's trailers, then the end of the connection.
	_ = c.SetReadDeadline(time.Now().Add(testTimeout))
	rest, err := io.ReadAll(c)
	if err != nil || !bytes.Contains(rest, []byte("grpc-status: 1\r\n")) || !bytes.HasSuffix(rest, []byte("0\r\n\r\n")) {
		t.Errorf("after Shutdown the client read %q, %v; want the trailers and the last chunk", rest, err)
	}
	// Stopped: a new call runs on the HTTP server's goroutine, and a second
	// Shutdown has nothing to wait for.
	resp := ws.call(t, subscribePath, webHeader(), subscribeBody(t, "ok"))
	if resp.code != http.StatusOK || !bytes.Contains(resp.body, []byte("grpc-status: 0")) {
		t.Errorf("a call after Shutdown: %d %q", resp.code, resp.body)
	}
	if err := local.Shutdown(context.Background()); err != nil {
		t.Errorf("second Shutdown: %v", err)
	}
}

// watchers counts the goroutines waiting for a taken-over connection's
// client.
func watchers() int {
	buf := make([]byte, 4<<20)
	n := 0
	for _, g := range strings.Split(string(buf[:runtime.Stack(buf, true)]), "\n\n") {
		if strings.Contains(g, "gateway.(*webStream).watch") {
			n++
		}
	}
	return n
}

// TestWebStreamsParkTheirConnections: on Linux, the connections taken
// over wait for their clients on one poller, with no goroutine each, over
// TLS too; a client's close or bytes still end its call, before Shutdown
// and while it waits.
func TestWebStreamsParkTheirConnections(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("the poller is Linux's (epoll)")
	}
	plainAndTLS(t, parkedStreams)
}

func parkedStreams(t *testing.T, local *gateway.InProcess, ws *webServer, _ func() []http.ConnState) {
	const streams = 8
	var conns []net.Conn
	for range streams {
		conns = append(conns, openWait(t, ws.url, ""))
	}
	// (An earlier test's watchers may still be ending.)
	testenv.Eventually(t, testTimeout, "no goroutine waiting for the streams' clients", func() bool {
		return watchers() == 0
	})

	conns[0].Close()
	_, _ = conns[1].Write([]byte("x"))
	if got := ws.waitCalls(t, 2); got[0] != "Canceled" || got[1] != "Canceled" {
		t.Errorf("calls ended %v after their clients closed or sent, want Canceled", got)
	}

	// Shutdown gives the rest watchers of their own: a client's close
	// still ends its call, and Shutdown returns once every call has.
	done := make(chan error, 1)
	go func() { done <- local.Shutdown(context.Background()) }()
	for _, c := range conns[2:] {
		c.Close()
	}
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Shutdown: %v", err)
		}
	case <-time.After(testTimeout):
		t.Fatal("Shutdown did not return after every client closed")
	}
	if got := ws.waitCalls(t, streams); len(got) != streams {
		t.Errorf("%d calls ended, want %d", len(got), streams)
	}
}

// handlers counts the goroutines running scriptService.Subscribe.
func handlers() int {
	buf := make([]byte, 4<<20)
	n := 0
	for _, g := range strings.Split(string(buf[:runtime.Stack(buf, true)]), "\n\n") {
		if strings.Contains(g, "scriptService.Subscribe") {
			n++
		}
	}
	return n
}

// TestWebStreamDetached: a call that took its connection over may let its
// handler's goroutine go (Streams.Detach): it sends after the handler
// returned, its context no longer holds the request's metadata, its
// client's close still ends it (through the transport stream's OnCancel),
// and the interceptor sees the end when it comes. Without Streams.Detach,
// Detach is refused.
func TestWebStreamDetached(t *testing.T) {
	_, _, ws, _ := leanServerWith(t, true)
	for len(detachedContexts) > 0 {
		<-detachedContexts // an earlier test's
	}
	c := openScript(t, ws.url, "detach", "")
	testenv.Eventually(t, testTimeout, "no goroutine running the detached call's handler", func() bool {
		return handlers() == 0
	})
	ctx := <-detachedContexts
	testenv.Eventually(t, testTimeout, "the detached call's context without the request's metadata", func() bool {
		_, ok := metadata.FromIncomingContext(ctx)
		return !ok
	})
	ws.mu.Lock()
	ended := len(*ws.calls)
	ws.mu.Unlock()
	if ended != 0 {
		t.Fatalf("the interceptor saw the call end while it was open")
	}
	c.Close()
	if got := ws.waitCalls(t, 1); got[0] != "Canceled" {
		t.Errorf("call ended %s after the client closed, want Canceled", got[0])
	}

	_, _, off, _ := leanServerWith(t, false)
	off.call(t, subscribePath, webHeader(), subscribeBody(t, "detach"))
	if got := off.waitCalls(t, 1); got[0] != "FailedPrecondition" {
		t.Errorf("without Streams.Detach the call ended %s, want FailedPrecondition (refused)", got[0])
	}
}
