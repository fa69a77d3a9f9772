package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	notifyv1 "github.com/maxloyalty/notify/gen/notify/v1"
	"github.com/maxloyalty/notify/server/node"
)

// TestH1PublishAgainstNode publishes through a real node's REST gateway
// over the h1 client: many callers sharing a few connections, a call of
// several requests, and errors that must match net/http's.
func TestH1PublishAgainstNode(t *testing.T) {
	n := startTestNode(t)
	svc, err := newMinter(node.DevSecret).service()
	if err != nil {
		t.Fatal(err)
	}
	publish, closeConns := h1RESTPublisher(n.HTTPAddr(), svc, 4)
	defer closeConns()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	tmpl := newEventTemplate(128)
	run := strconv.FormatUint(rand.Uint64(), 36)

	t.Run("2000 over 4 connections, 16 callers", func(t *testing.T) {
		room := "restaurant:h1u" + run + ":transactions"
		publishMany(t, ctx, publish, tmpl, room, 16, 2000)
	})

	t.Run("several requests in one call", func(t *testing.T) {
		room := "restaurant:h1b" + run + ":transactions"
		reqs := make([]*notifyv1.PublishRequest, 20)
		for i := range reqs {
			reqs[i] = tmpl.request([]string{room}, time.Now(), "")
		}
		rs, err := publish(ctx, reqs)
		if err != nil || len(rs) != len(reqs) {
			t.Fatalf("%d responses, %v", len(rs), err)
		}
		for i, r := range rs {
			if r.Positions[0].Offset != uint64(i+1) {
				t.Errorf("response %d: offset %d", i, r.Positions[0].Offset)
			}
		}
	})

	t.Run("idempotency key", func(t *testing.T) {
		room := "restaurant:h1i" + run + ":transactions"
		req := tmpl.request([]string{room}, time.Now(), "nb-h1-"+run)
		a, err := publish(ctx, []*notifyv1.PublishRequest{req})
		if err != nil {
			t.Fatal(err)
		}
		b, err := publish(ctx, []*notifyv1.PublishRequest{req})
		if err != nil {
			t.Fatal(err)
		}
		if !b[0].Duplicate || a[0].EventId != b[0].EventId {
			t.Errorf("first %v, second %v", a[0], b[0])
		}
	})

	t.Run("errors as net/http's client reports them", func(t *testing.T) {
		h1bad, closeBad := h1RESTPublisher(n.HTTPAddr(), "not-a-token", 1)
		defer closeBad()
		ref, closeRef := restPublisher(n.HTTPAddr(), svc, 1)
		defer closeRef()
		refBad, closeRefBad := restPublisher(n.HTTPAddr(), "not-a-token", 1)
		defer closeRefBad()
		good := tmpl.request([]string{"restaurant:r1:transactions"}, time.Now(), "")
		cases := []struct {
			name     string
			h1, ref  publishFunc
			reqs     []*notifyv1.PublishRequest
			code     int
			received int // responses before the error
		}{
			{"invalid room", publish, ref, []*notifyv1.PublishRequest{tmpl.request([]string{"nowhere:é"}, time.Now(), "")}, 400, 0},
			{"invalid room second", publish, ref, []*notifyv1.PublishRequest{good, tmpl.request([]string{"restaurant:r1:nothing"}, time.Now(), "")}, 400, 1},
			{"no payload", publish, ref, []*notifyv1.PublishRequest{{Rooms: []string{"restaurant:r1:transactions"}}}, 400, 0},
			{"bad token", h1bad, refBad, []*notifyv1.PublishRequest{good}, 401, 0},
		}
		for _, c := range cases {
			hrs, herr := c.h1(ctx, c.reqs)
			grs, gerr := c.ref(ctx, c.reqs)
			if gerr == nil || !strings.Contains(gerr.Error(), "HTTP "+strconv.Itoa(c.code)+":") {
				t.Errorf("%s: net/http got %v, the test expects HTTP %d", c.name, gerr, c.code)
			}
			var se *h1StatusError
			if !errors.As(herr, &se) || se.Code != c.code {
				t.Errorf("%s: h1 got %v, want HTTP %d", c.name, herr, c.code)
			}
			if herr != nil && gerr != nil && herr.Error() != gerr.Error() {
				t.Errorf("%s: h1 error\n%v\nnet/http error\n%v", c.name, herr, gerr)
			}
			if len(hrs) != c.received || len(grs) != c.received {
				t.Errorf("%s: %d responses from h1, %d from net/http before the error, want %d", c.name, len(hrs), len(grs), c.received)
			}
		}
		// The connections still work after the errors.
		if _, err := h1bad(ctx, []*notifyv1.PublishRequest{good}); err == nil || !strings.Contains(err.Error(), "HTTP 401:") {
			t.Errorf("bad token again: %v", err)
		}
		if _, err := publish(ctx, []*notifyv1.PublishRequest{good}); err != nil {
			t.Fatal(err)
		}
	})
}

// TestH1PublishNodeStops publishes to a node that stops and starts again
// on the same port: calls fail with a clear error while it is down and
// succeed again, on new connections, once it is back.
func TestH1PublishNodeStops(t *testing.T) {
	dir := t.TempDir()
	start := func(httpAddr string) (*node.Node, func()) {
		ctx, cancel := context.WithCancel(context.Background())
		cfg := node.Config{GRPCAddr: "127.0.0.1:0", HTTPAddr: httpAddr, Dev: true, DataDir: dir, LogLevel: "error",
			GRPCTransport: os.Getenv("NOTIFY_TEST_GRPC_TRANSPORT")} // empty: the default
		n, err := node.New(ctx, cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
		if err != nil {
			cancel()
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- n.Run(ctx) }()
		if err := waitReady(ctx, n.HTTPAddr(), nil); err != nil {
			cancel()
			t.Fatal(err)
		}
		var once sync.Once
		stop := func() {
			once.Do(func() {
				cancel()
				select {
				case <-done:
				case <-time.After(20 * time.Second):
					t.Error("node did not stop")
				}
			})
		}
		t.Cleanup(stop)
		return n, stop
	}
	n, stop := start("127.0.0.1:0")
	addr := n.HTTPAddr()
	svc, err := newMinter(node.DevSecret).service()
	if err != nil {
		t.Fatal(err)
	}
	publish, closeConns := h1RESTPublisher(addr, svc, 2)
	defer closeConns()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	one := []*notifyv1.PublishRequest{newEventTemplate(64).request([]string{"restaurant:r1:transactions"}, time.Now(), "")}
	for range 10 {
		if _, err := publish(ctx, one); err != nil {
			t.Fatal(err)
		}
	}
	stop()
	for range 4 {
		_, err := publish(ctx, one)
		if err == nil || !strings.Contains(err.Error(), "POST /v1/events") {
			t.Fatalf("publish to a stopped node: %v", err)
		}
		t.Logf("node stopped: %v", err)
	}
	start(addr)
	for range 10 {
		if _, err := publish(ctx, one); err != nil {
			t.Fatalf("after the restart: %v", err)
		}
	}
}

// TestH1PublishMode runs the publish mode's rest variant with --transport
// h1 against an in-process node.
func TestH1PublishMode(t *testing.T) {
	n := startTestNode(t)
	o := defaultOptions()
	o.GRPCAddr, o.HTTPAddr = n.GRPCAddr(), n.HTTPAddr()
	o.Duration, o.Quiet, o.Transport = 500*time.Millisecond, true, "h1"
	o.Rate, o.Concurrency, o.Publish = 0, 8, "rest"
	if err := o.validate(); err != nil {
		t.Fatal(err)
	}
	b := &bench{opts: o, minter: newMinter(node.DevSecret), server: &serverMeter{pid: os.Getpid()}}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	rs, err := b.runMode(ctx, "publish")
	if err != nil {
		t.Fatal(err)
	}
	if len(rs) != 1 {
		t.Fatalf("%d rows", len(rs))
	}
	if r := rs[0]; r.Transport != "rest-h1" || r.Connections != 8 || r.Published == 0 || r.PublishErrors != 0 || r.Latency.Count == 0 {
		t.Errorf("%s: %+v", r.Mode, r)
	}
}

// h1Fake is a server for the protocol tests: it accepts connections and
// answers each request with what respond writes (raw HTTP), closing the
// connection when respond says so.
type h1Fake struct {
	addr     string
	accepted atomic.Int32
	requests atomic.Int32
}

func startH1Fake(t *testing.T, respond func(i int, req *http.Request, body []byte, w *bufio.Writer) (closeAfter bool)) *h1Fake {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &h1Fake{addr: ln.Addr().String()}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			f.accepted.Add(1)
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Go(func() {
				defer c.Close()
				br, bw := bufio.NewReader(c), bufio.NewWriter(c)
				for {
					req, err := http.ReadRequest(br)
					if err != nil {
						return
					}
					body, err := io.ReadAll(req.Body)
					if err != nil {
						return
					}
					closeAfter := respond(int(f.requests.Add(1)), req, body, bw)
					if bw.Flush() != nil || closeAfter {
						return
					}
				}
			})
		}
	})
	return f
}

// okJSON is a PublishResponse body of offset i.
func okJSON(i int) string {
	return fmt.Sprintf(`{"eventId":"e%d","positions":[{"room":"r","offset":"%d","epoch":"x"}]}`, i, i)
}

// TestH1PublishProtocol checks the client's reading of responses and its
// handling of closed connections against raw HTTP/1.1 servers.
func TestH1PublishProtocol(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	one := []*notifyv1.PublishRequest{{Rooms: []string{"r"}, IdempotencyKey: "k"}}
	offset := func(t *testing.T, rs []*notifyv1.PublishResponse, err error) uint64 {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		if len(rs) != 1 || len(rs[0].Positions) != 1 {
			t.Fatalf("responses %v", rs)
		}
		return rs[0].Positions[0].Offset
	}

	t.Run("request as sent", func(t *testing.T) {
		var got atomic.Value
		f := startH1Fake(t, func(i int, req *http.Request, body []byte, w *bufio.Writer) bool {
			var pr notifyv1.PublishRequest
			err := protojson.Unmarshal(body, &pr)
			got.Store(fmt.Sprintf("%s %s %s host=%s ct=%s auth=%s len=%d te=%v json=%v/%v",
				req.Method, req.URL.Path, req.Proto, req.Host, req.Header.Get("Content-Type"), req.Header.Get("Authorization"),
				req.ContentLength, req.TransferEncoding, proto.Equal(&pr, one[0]), err))
			fmt.Fprintf(w, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(okJSON(i)), okJSON(i))
			return false
		})
		publish, closeConns := h1RESTPublisher(f.addr, "tok", 1)
		defer closeConns()
		rs, err := publish(ctx, one)
		if offset(t, rs, err) != 1 || rs[0].EventId != "e1" {
			t.Errorf("response %v", rs[0])
		}
		want := "POST /v1/events HTTP/1.1 host=" + f.addr + " ct=application/json auth=Bearer tok len="
		if g := got.Load().(string); !strings.HasPrefix(g, want) || !strings.HasSuffix(g, " te=[] json=true/<nil>") {
			t.Errorf("request seen as\n%s\nwant\n%s... te=[] json=true/<nil>", g, want)
		}
	})

	t.Run("response forms", func(t *testing.T) {
		// Responses to requests 1, 2, ...: each must give offset i.
		forms := []string{
			// Chunked, with an extension and a trailer.
			"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n%x;ext=1\r\n%s\r\n0\r\nX-Trailer: 1\r\n\r\n",
			// 100 Continue first; header names in other cases.
			"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: %d\r\nCONTENT-TYPE: application/json\r\n\r\n%s",
			// 201 with a long reason phrase.
			"HTTP/1.1 201 Created and more words\r\nContent-Length: %d\r\n\r\n%s",
			// Keep-alive HTTP/1.0.
			"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: %d\r\n\r\n%s",
			// Content-Length repeated with the same value.
			"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nContent-Length: %[1]d\r\n\r\n%s",
		}
		f := startH1Fake(t, func(i int, req *http.Request, body []byte, w *bufio.Writer) bool {
			if i <= len(forms) {
				fmt.Fprintf(w, forms[i-1], len(okJSON(i)), okJSON(i))
			}
			return false
		})
		publish, closeConns := h1RESTPublisher(f.addr, "t", 1)
		defer closeConns()
		for i := range forms {
			rs, err := publish(ctx, one)
			if got := offset(t, rs, err); got != uint64(i+1) {
				t.Errorf("form %d: offset %d", i, got)
			}
		}
		if a := f.accepted.Load(); a != 1 {
			t.Errorf("%d connections for keep-alive responses", a)
		}
	})

	t.Run("16 callers over 4 connections", func(t *testing.T) {
		var inflight, most atomic.Int32
		f := startH1Fake(t, func(i int, req *http.Request, body []byte, w *bufio.Writer) bool {
			n := inflight.Add(1)
			defer inflight.Add(-1)
			for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
			}
			time.Sleep(100 * time.Microsecond)
			fmt.Fprintf(w, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(okJSON(i)), okJSON(i))
			return false
		})
		publish, closeConns := h1RESTPublisher(f.addr, "t", 4)
		defer closeConns()
		var mu sync.Mutex
		var offsets []uint64
		var wg sync.WaitGroup
		for range 16 {
			wg.Go(func() {
				for range 25 {
					rs, err := publish(ctx, one)
					if err != nil {
						t.Error(err)
						return
					}
					mu.Lock()
					offsets = append(offsets, rs[0].Positions[0].Offset)
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		checkOffsets(t, offsets, 400)
		if a, m := f.accepted.Load(), most.Load(); a != 4 || m > 4 {
			t.Errorf("%d connections, %d requests at once; want 4 and at most 4", a, m)
		}
	})

	t.Run("chunked response of net/http's server", func(t *testing.T) {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			io.Copy(io.Discard, r.Body)
			w.Header().Set("Content-Type", "application/json")
			body := fmt.Sprintf(`{"eventId":"%s","positions":[{"room":"r","offset":"7"}]}`, strings.Repeat("e", 10000))
			io.WriteString(w, body[:100])
			w.(http.Flusher).Flush()
			io.WriteString(w, body[100:])
		}))
		defer srv.Close()
		publish, closeConns := h1RESTPublisher(srv.Listener.Addr().String(), "t", 1)
		defer closeConns()
		for range 3 {
			rs, err := publish(ctx, one)
			if offset(t, rs, err) != 7 || len(rs[0].EventId) != 10000 {
				t.Fatalf("response %.100v", rs[0])
			}
		}
	})

	t.Run("Connection: close", func(t *testing.T) {
		srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Connection", "close")
			io.WriteString(w, okJSON(5))
		}))
		var conns atomic.Int32
		srv.Config.ConnState = func(c net.Conn, s http.ConnState) {
			if s == http.StateNew {
				conns.Add(1)
			}
		}
		srv.Start()
		defer srv.Close()
		publish, closeConns := h1RESTPublisher(srv.Listener.Addr().String(), "t", 2)
		defer closeConns()
		for range 6 {
			if rs, err := publish(ctx, one); offset(t, rs, err) != 5 {
				t.Fatal(rs)
			}
		}
		if c := conns.Load(); c != 6 {
			t.Errorf("%d connections for 6 requests answered with Connection: close", c)
		}
	})

	t.Run("body up to the connection's end", func(t *testing.T) {
		f := startH1Fake(t, func(i int, req *http.Request, body []byte, w *bufio.Writer) bool {
			fmt.Fprintf(w, "HTTP/1.1 200 OK\r\n\r\n%s", okJSON(i))
			return true
		})
		publish, closeConns := h1RESTPublisher(f.addr, "t", 1)
		defer closeConns()
		for i := range 3 {
			if rs, err := publish(ctx, one); offset(t, rs, err) != uint64(i+1) {
				t.Fatal(rs)
			}
		}
	})

	t.Run("server closes a kept-alive connection after one response", func(t *testing.T) {
		// No Connection: close: the client finds out on its next request,
		// which it sends again on a new connection.
		f := startH1Fake(t, func(i int, req *http.Request, body []byte, w *bufio.Writer) bool {
			fmt.Fprintf(w, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(okJSON(i)), okJSON(i))
			return true
		})
		publish, closeConns := h1RESTPublisher(f.addr, "t", 1)
		defer closeConns()
		for i := range 5 {
			if rs, err := publish(ctx, one); offset(t, rs, err) != uint64(i+1) {
				t.Fatal(rs)
			}
			time.Sleep(10 * time.Millisecond) // the close reaches the client first
		}
		if a := f.accepted.Load(); a != 5 {
			t.Errorf("%d connections", a)
		}
	})

	t.Run("server closes without a response", func(t *testing.T) {
		// A request on a new connection is not sent again.
		var closeFirst atomic.Bool
		closeFirst.Store(true)
		f := startH1Fake(t, func(i int, req *http.Request, body []byte, w *bufio.Writer) bool {
			if closeFirst.Load() {
				return true
			}
			fmt.Fprintf(w, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(okJSON(i)), okJSON(i))
			return false
		})
		publish, closeConns := h1RESTPublisher(f.addr, "t", 1)
		defer closeConns()
		_, err := publish(ctx, one)
		if err == nil || !strings.Contains(err.Error(), "POST /v1/events") || !errors.Is(err, io.EOF) {
			t.Fatalf("got %v, want an EOF", err)
		}
		closeFirst.Store(false)
		if rs, err := publish(ctx, one); offset(t, rs, err) != 2 {
			t.Fatal(rs)
		}
		if r, a := f.requests.Load(), f.accepted.Load(); r != 2 || a != 2 {
			t.Errorf("%d requests on %d connections", r, a)
		}
	})

	t.Run("malformed responses", func(t *testing.T) {
		bad := []string{
			"HTTP/2 200 OK\r\n\r\n",
			"HTTP/1.1 2x0 OK\r\nContent-Length: 0\r\n\r\n",
			"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n",
			"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}",
			"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
			"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
			"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n{}",
			"HTTP/1.1 200 OK\r\nX-Long: " + strings.Repeat("a", 10000) + "\r\nContent-Length: 2\r\n\r\n{}",
			"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nnope!",
		}
		f := startH1Fake(t, func(i int, req *http.Request, body []byte, w *bufio.Writer) bool {
			if i <= len(bad) {
				io.WriteString(w, bad[i-1])
				return true
			}
			return false
		})
		publish, closeConns := h1RESTPublisher(f.addr, "t", 1)
		defer closeConns()
		for _, b := range bad {
			if _, err := publish(ctx, one); err == nil {
				t.Errorf("response %.60q accepted", b)
			} else {
				t.Logf("%.40q: %v", b, err)
			}
		}
	})

	t.Run("non-2xx", func(t *testing.T) {
		f := startH1Fake(t, func(i int, req *http.Request, body []byte, w *bufio.Writer) bool {
			if i == 1 {
				io.WriteString(w, "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 4\r\n\r\nbusy")
			} else {
				fmt.Fprintf(w, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(okJSON(i)), okJSON(i))
			}
			return false
		})
		publish, closeConns := h1RESTPublisher(f.addr, "t", 1)
		defer closeConns()
		_, err := publish(ctx, one)
		var se *h1StatusError
		if !errors.As(err, &se) || se.Code != 503 || se.Body != "busy" || err.Error() != "POST /v1/events: HTTP 503: busy" {
			t.Fatalf("got %v", err)
		}
		if rs, err := publish(ctx, one); offset(t, rs, err) != 2 {
			t.Fatal(rs)
		}
		if a := f.accepted.Load(); a != 1 {
			t.Errorf("%d connections: the error response closed its connection", a)
		}
	})

	t.Run("context ends while waiting", func(t *testing.T) {
		release := make(chan struct{})
		f := startH1Fake(t, func(i int, req *http.Request, body []byte, w *bufio.Writer) bool {
			if i == 1 {
				<-release
				return true
			}
			fmt.Fprintf(w, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(okJSON(i)), okJSON(i))
			return false
		})
		defer close(release)
		publish, closeConns := h1RESTPublisher(f.addr, "t", 1)
		defer closeConns()
		dctx, dcancel := context.WithTimeout(ctx, 100*time.Millisecond)
		defer dcancel()
		_, err := publish(dctx, one)
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("got %v, want DeadlineExceeded", err)
		}
		if rs, err := publish(ctx, one); offset(t, rs, err) != 2 {
			t.Fatal(rs)
		}
	})

	t.Run("close", func(t *testing.T) {
		entered := make(chan struct{}, 1)
		release := make(chan struct{})
		f := startH1Fake(t, func(i int, req *http.Request, body []byte, w *bufio.Writer) bool {
			entered <- struct{}{}
			<-release
			return true
		})
		defer close(release)
		publish, closeConns := h1RESTPublisher(f.addr, "t", 1)
		held := make(chan error, 1)
		go func() {
			_, err := publish(ctx, one)
			held <- err
		}()
		<-entered
		closeConns()
		if err := <-held; !errors.Is(err, errH1Closed) {
			t.Errorf("call in progress at close: %v", err)
		}
		if _, err := publish(ctx, one); !errors.Is(err, errH1Closed) {
			t.Errorf("call after close: %v", err)
		}
	})

	t.Run("dial failure", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		ln.Close()
		publish, closeConns := h1RESTPublisher(addr, "t", 1)
		defer closeConns()
		if _, err := publish(ctx, one); err == nil || !strings.Contains(err.Error(), "POST /v1/events") {
			t.Fatalf("publish to a closed port: %v", err)
		}
	})
}

// TestH1PoolWait checks that callers share the connections: with one
// connection, a caller waits for it, and gives up when its context ends.
func TestH1PoolWait(t *testing.T) {
	p := newH1Pool("127.0.0.1:1", "/", "x", 1)
	c, err := p.get(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := p.get(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("second get: %v", err)
	}
	got := make(chan *h1conn)
	go func() {
		c, _ := p.get(context.Background())
		got <- c
	}()
	p.put(c)
	if c2 := <-got; c2 != c {
		t.Fatal("another connection")
	}
}

// BenchmarkH1RESTPublish compares the h1 client with net/http's on
// publishes to a net/http server answering a fixed response, 16 in flight
// over 16 connections: the ns/op and allocs/op cover both ends, which share
// the process.
func BenchmarkH1RESTPublish(b *testing.B) {
	resp := []byte(`{"eventId":"01a207fe-056c-7795-bf16-b4bfbb72bae9","positions":[{"room":"restaurant:r1:transactions","offset":"1","epoch":"865c84fbe148"}]}`)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		w.Write(resp)
	}))
	defer srv.Close()
	addr := srv.Listener.Addr().String()
	tmpl := newEventTemplate(128)
	req := []*notifyv1.PublishRequest{tmpl.request([]string{"restaurant:r1:transactions"}, time.Now(), "")}
	for _, name := range []string{"h1", "nethttp"} {
		b.Run(name, func(b *testing.B) {
			var publish publishFunc
			var closeConns func()
			if name == "h1" {
				publish, closeConns = h1RESTPublisher(addr, "t", 16)
			} else {
				publish, closeConns = restPublisher(addr, "t", 16)
			}
			defer closeConns()
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			b.ReportAllocs()
			b.SetParallelism(8) // 16 goroutines on 2 cores
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := publish(ctx, req); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}
